//! `reclab points`: every VM's restore points, what each moment picks, and the choice for
//! `--at`, as text or JSON.

use std::io::Write;

use anyhow::{Context, Result};
use jiff::ZonedDateTime;
use serde::Serialize;

use crate::base::duration::format_duration;
use crate::base::when::{At, When, parse_when, rfc3339, show};
use crate::hv::Hypervisor;
use crate::restore::dumps::show_skew;
use crate::restore::{Choice, ChooseError, Moment, VmPoints, choose, lab_points, timeline};
use crate::spec::LabSpec;

#[derive(Serialize)]
struct PointsReport {
    lab: String,
    now: String,
    time_zone: String,
    max_skew_seconds: Option<u64>,
    vms: Vec<VmPointsReport>,
    at: AtReport,
    timeline: Vec<MomentReport>,
}

#[derive(Serialize)]
struct VmPointsReport {
    name: String,
    images: Vec<PointReport>,
    dumps: Option<DumpsReport>,
}

#[derive(Serialize)]
struct DumpsReport {
    dir: String,
    pattern: String,
    points: Vec<PointReport>,
    other_files: usize,
    invalid: Vec<InvalidReport>,
    ambiguous: Vec<String>,
}

#[derive(Serialize)]
struct InvalidReport {
    file: String,
    reason: String,
}

#[derive(Serialize)]
struct PointReport {
    name: String,
    time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<String>,
}

#[derive(Serialize)]
struct AtReport {
    text: String,
    time: Option<String>,
    note: Option<String>,
    choices: Vec<ChoiceReport>,
    error: Option<String>,
}

#[derive(Serialize)]
struct ChoiceReport {
    vm: String,
    image: String,
    image_time: String,
    dump: Option<String>,
    dump_time: Option<String>,
    skew_seconds: Option<i64>,
}

#[derive(Serialize)]
struct MomentReport {
    from: String,
    choices: Vec<ChoiceReport>,
    over_max_skew: Vec<String>,
}

fn choice_report(choice: &Choice) -> ChoiceReport {
    ChoiceReport {
        vm: choice.vm.clone(),
        image: choice.image.name.clone(),
        image_time: rfc3339(choice.image.time),
        dump: choice.dump.as_ref().map(|d| d.file.clone()),
        dump_time: choice.dump.as_ref().map(|d| rfc3339(d.time)),
        skew_seconds: choice.skew.map(|s| s.as_secs()),
    }
}

/// How many dumps and timeline entries the text output shows (the JSON has all).
const TEXT_LIMIT: usize = 12;

/// `reclab points`: lists every VM's restore points, what each moment picks, and the choice
/// for `at` (default `latest`), as text or JSON, to `out`. `now` carries the time zone for
/// wall-clock `--at` forms and for display. An `--at` that picks nothing (in the future,
/// before the oldest point, over `max_skew`) is an error after the listing.
pub fn run_points(
    spec: &LabSpec,
    hv: Option<&dyn Hypervisor>,
    at: Option<&str>,
    now: &ZonedDateTime,
    json: bool,
    out: &mut dyn Write,
) -> Result<()> {
    let when = parse_when(at.unwrap_or("latest"), now).map_err(|e| anyhow::anyhow!("--at: {e}"))?;
    let points = lab_points(spec, hv)?;
    let tz = now.time_zone().clone();
    let chosen = choose(&points, &when, now.timestamp(), spec.max_skew, &tz);
    let moments = timeline(&points, spec.max_skew);
    if json {
        let report = PointsReport {
            lab: spec.name.clone(),
            now: rfc3339(now.timestamp()),
            time_zone: tz.iana_name().unwrap_or("local").to_string(),
            max_skew_seconds: spec.max_skew.map(|d| d.as_secs()),
            vms: points
                .iter()
                .map(|vm| VmPointsReport {
                    name: vm.vm.clone(),
                    images: vm
                        .images
                        .iter()
                        .map(|p| PointReport {
                            name: p.name.clone(),
                            time: rfc3339(p.time),
                            source: Some(p.source.clone()),
                        })
                        .collect(),
                    dumps: vm.dumps.as_ref().map(|d| DumpsReport {
                        dir: d.dir.display().to_string(),
                        pattern: spec
                            .vm(&vm.vm)
                            .and_then(|v| v.dumps.as_ref())
                            .map(|s| s.pattern.to_string())
                            .unwrap_or_default(),
                        points: d
                            .points
                            .iter()
                            .map(|p| PointReport {
                                name: p.file.clone(),
                                time: rfc3339(p.time),
                                source: None,
                            })
                            .collect(),
                        other_files: d.others,
                        invalid: d
                            .invalid
                            .iter()
                            .map(|(file, reason)| InvalidReport {
                                file: file.clone(),
                                reason: reason.clone(),
                            })
                            .collect(),
                        ambiguous: d.ambiguous.clone(),
                    }),
                })
                .collect(),
            at: AtReport {
                text: when.text.clone(),
                time: match when.at {
                    At::Latest => None,
                    At::Moment(t) => Some(rfc3339(t)),
                },
                note: when.note.clone(),
                choices: chosen
                    .as_ref()
                    .map(|c| c.iter().map(choice_report).collect())
                    .unwrap_or_default(),
                error: chosen.as_ref().err().map(|e| e.to_string()),
            },
            timeline: moments
                .iter()
                .map(|m| MomentReport {
                    from: rfc3339(m.from),
                    choices: m.choices.iter().map(choice_report).collect(),
                    over_max_skew: m.over_max_skew.clone(),
                })
                .collect(),
        };
        serde_json::to_writer_pretty(&mut *out, &report).context("writing the json report")?;
        writeln!(out).context("writing the json report")?;
    } else {
        write_text(spec, &points, &moments, &when, &chosen, now, out)
            .context("writing the points report")?;
    }
    chosen.map(|_| ()).map_err(anyhow::Error::new)
}

fn write_text(
    spec: &LabSpec,
    points: &[VmPoints],
    moments: &[Moment],
    when: &When,
    chosen: &Result<Vec<Choice>, ChooseError>,
    now: &ZonedDateTime,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let tz = now.time_zone();
    writeln!(
        out,
        "lab {}: restore points (now {}{})",
        spec.name,
        show(now.timestamp(), tz),
        spec.max_skew
            .map(|d| format!(", max_skew {}", format_duration(d)))
            .unwrap_or_default()
    )?;
    for vm in points {
        writeln!(out, "vm {}", vm.vm)?;
        for image in &vm.images {
            writeln!(out, "  image  {}  {}", show(image.time, tz), image.source)?;
        }
        let Some(dumps) = &vm.dumps else {
            writeln!(out, "  dumps  none")?;
            continue;
        };
        let pattern = spec
            .vm(&vm.vm)
            .and_then(|v| v.dumps.as_ref())
            .map(|d| d.pattern.to_string())
            .unwrap_or_default();
        writeln!(
            out,
            "  dumps  {} in {} matching {pattern}",
            dumps.points.len(),
            dumps.dir.display()
        )?;
        for dump in dumps.points.iter().rev().take(TEXT_LIMIT) {
            writeln!(out, "    {}  {}", show(dump.time, tz), dump.file)?;
        }
        if dumps.points.len() > TEXT_LIMIT {
            writeln!(
                out,
                "    ... and {} older (--json lists all)",
                dumps.points.len() - TEXT_LIMIT
            )?;
        }
        if let Some((file, why)) = dumps.invalid.first() {
            writeln!(
                out,
                "  ignored {} names that match the pattern but are no valid time, like {file} ({why})",
                dumps.invalid.len()
            )?;
        }
        if !dumps.ambiguous.is_empty() {
            writeln!(
                out,
                "  {} names have a time that happens twice in their time zone; read as the first, like {}",
                dumps.ambiguous.len(),
                dumps.ambiguous[0]
            )?;
        }
    }
    let line = |choices: &[Choice]| {
        choices
            .iter()
            .map(|c| match (&c.dump, c.skew) {
                (Some(dump), Some(skew)) => format!(
                    "{}: {} + {} (skew {})",
                    c.vm,
                    c.image.name,
                    dump.file,
                    show_skew(skew)
                ),
                _ => format!("{}: {}", c.vm, c.image.name),
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    writeln!(out, "what each moment picks (newest last)")?;
    if moments.len() > TEXT_LIMIT {
        writeln!(
            out,
            "  ... {} earlier changes (--json lists all)",
            moments.len() - TEXT_LIMIT
        )?;
    }
    for moment in moments
        .iter()
        .skip(moments.len().saturating_sub(TEXT_LIMIT))
    {
        let over = if moment.over_max_skew.is_empty() {
            String::new()
        } else {
            format!("  [over max_skew: {}]", moment.over_max_skew.join(", "))
        };
        writeln!(
            out,
            "  from {}  {}{over}",
            show(moment.from, tz),
            line(&moment.choices)
        )?;
    }
    let asked = match when.at {
        At::Latest => "latest".to_string(),
        At::Moment(t) => format!("{:?} = {}", when.text, show(t, tz)),
    };
    if let Some(note) = &when.note {
        writeln!(out, "note: {note}")?;
    }
    match chosen {
        Ok(choices) => {
            writeln!(out, "at {asked}:")?;
            for c in choices {
                match (&c.dump, c.skew) {
                    (Some(dump), Some(skew)) => writeln!(
                        out,
                        "  {}: image {} ({}) + dump {} ({}), skew {}",
                        c.vm,
                        c.image.name,
                        show(c.image.time, tz),
                        dump.file,
                        show(dump.time, tz),
                        show_skew(skew)
                    )?,
                    _ => writeln!(
                        out,
                        "  {}: image {} ({}), no dumps",
                        c.vm,
                        c.image.name,
                        show(c.image.time, tz)
                    )?,
                }
            }
        }
        Err(_) => writeln!(out, "at {asked}: nothing can be chosen (see the error)")?,
    }
    Ok(())
}
