//! `reclab bisect`: the newest good restore point of a lab, found with real drills.
//!
//! The candidates are the distinct restore-point combinations of the window (what `reclab
//! points` lists as "what each moment picks"), oldest first; each drill is [`super::run`] at
//! the moment a combination starts (up, restore, checks, report, down: every drill keeps its
//! own report and history line). [`super::bisect`] decides which points to drill. The result,
//! [`BisectReport`] (`reclab.bisect/1`), is stored as JSON, a terminal summary and an HTML
//! timeline in `STATE/labs/LAB/reports/bisect-TIME/`, next to the drills' reports it links.
//!
//! Drills of one round run at once with `jobs > 1`: every run has its own run id, and every
//! name a lab gets (domains, networks, bridges, namespaces, files) derives from it, so labs of
//! the same lab file never collide.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::bisect::{self, Outcome};
use super::{RunOpts, run};
use crate::base::text::html_escape;
use crate::base::when::{At, parse_when, rfc3339};
use crate::hv::Hypervisor;
use crate::report::{self, DrillReport, DrillResult};
use crate::restore::{Moment, lab_points, timeline};
use crate::spec::LabSpec;
use crate::verify::Status;

/// The schema of a bisect report.
pub const SCHEMA: &str = "reclab.bisect/1";

/// Options of `reclab bisect`.
#[derive(Debug, Clone, Default)]
pub struct BisectOpts {
    /// The oldest moment of the window (the point in effect then is the oldest candidate).
    pub from: Option<String>,
    /// The newest moment of the window (default: the newest point).
    pub to: Option<String>,
    pub tz: Option<String>,
    /// Drill every candidate instead of searching.
    pub all: bool,
    /// Drills at once.
    pub jobs: usize,
    /// Time to live of each drill's lab.
    pub ttl: Option<Duration>,
}

/// What one VM gets at a candidate point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointChoice {
    pub vm: String,
    pub image: String,
    pub image_time: Timestamp,
    pub dump: Option<String>,
    pub dump_time: Option<Timestamp>,
}

/// A failing check of a drill, with what it found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailingCheck {
    pub name: String,
    pub vm: String,
    pub status: Status,
    pub message: String,
}

/// One drill of a candidate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointDrill {
    /// 1 for the first drill of the bisect, …
    pub order: usize,
    /// The search round (several drills share one with `--jobs`).
    pub round: usize,
    pub run: String,
    pub result: DrillResult,
    pub failing: Vec<FailingCheck>,
    pub errors: Vec<String>,
    /// The drill's HTML report.
    pub report: String,
    #[serde(rename = "duration_ms", with = "crate::verify::millis")]
    pub duration: Duration,
}

/// Whether a candidate passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PointStatus {
    Good,
    Bad,
    Untested,
}

/// A candidate restore point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointReport {
    pub index: usize,
    /// The moment its combination starts (the `--at` of its drill).
    pub at: Timestamp,
    pub choices: Vec<PointChoice>,
    pub status: PointStatus,
    pub drill: Option<PointDrill>,
}

/// An older point that failed while a newer one passed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContradictionReport {
    pub older_bad: usize,
    pub newer_good: usize,
    pub message: String,
}

/// The result of a bisect. See the module documentation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BisectReport {
    /// Always [`SCHEMA`].
    pub schema: String,
    pub lab: String,
    pub id: String,
    pub lab_file: String,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    /// `bisect` or `all`.
    pub mode: String,
    pub jobs: usize,
    pub from: Option<String>,
    pub to: Option<String>,
    pub points: Vec<PointReport>,
    /// Moments of the window left out (over max_skew).
    pub skipped: Vec<String>,
    pub drills: usize,
    /// `ceil(log2 n) + 1` for `n` candidates: the most drills a search with one job makes.
    pub budget: usize,
    pub newest_good: Option<usize>,
    pub first_bad: Option<usize>,
    /// What is wrong at the first bad point: its failing checks and errors.
    pub first_bad_wrong: Vec<String>,
    pub contradictions: Vec<ContradictionReport>,
    /// The answer in one line.
    pub answer: String,
}

impl BisectReport {
    /// 0 a good point was found, 1 none of the window is good, 2 every drill was an
    /// operational error (nothing could be judged).
    pub fn exit_code(&self) -> u8 {
        if self.newest_good.is_some() {
            return 0;
        }
        let drilled: Vec<&PointDrill> = self
            .points
            .iter()
            .filter_map(|p| p.drill.as_ref())
            .collect();
        if !drilled.is_empty() && drilled.iter().all(|d| d.result == DrillResult::Error) {
            2
        } else {
            1
        }
    }
}

/// One point for people: `2026-11-26T13:00:00Z (db: nightly + erp-20261126-1300.sql)`.
pub fn point_label(p: &PointReport) -> String {
    let what = p
        .choices
        .iter()
        .map(|c| match &c.dump {
            Some(d) => format!("{}: {} + {d}", c.vm, c.image),
            None => format!("{}: {}", c.vm, c.image),
        })
        .collect::<Vec<_>>()
        .join("; ");
    format!("{} ({what})", crate::base::when::for_people_utc(p.at))
}

/// The candidates of the window, oldest first, and the moments left out.
pub fn candidates(
    spec: &LabSpec,
    hv: Option<&dyn Hypervisor>,
    opts: &BisectOpts,
) -> Result<(Vec<PointReport>, Vec<String>)> {
    let now =
        crate::base::when::now_in(opts.tz.as_deref()).map_err(|e| anyhow::anyhow!("--tz: {e}"))?;
    let bound = |text: &Option<String>, flag: &str| -> Result<Option<Timestamp>> {
        let Some(text) = text else { return Ok(None) };
        match parse_when(text, &now)
            .map_err(|e| anyhow::anyhow!("{flag}: {e}"))?
            .at
        {
            At::Moment(t) => Ok(Some(t)),
            At::Latest if flag == "--to" => Ok(None),
            At::Latest => bail!("{flag} latest names no window; write a moment, e.g. \"48h ago\""),
        }
    };
    let from = bound(&opts.from, "--from")?;
    let to = bound(&opts.to, "--to")?;
    if let (Some(f), Some(t)) = (from, to)
        && f > t
    {
        bail!("--from is after --to: the window is empty; swap them");
    }
    let points = lab_points(spec, hv)?;
    let moments = timeline(&points, spec.max_skew);
    Ok(window(&moments, from, to))
}

/// The moments of `[from, to]`: the one in effect at `from` and every later one up to `to`,
/// without repeats of the same combination, leaving out those over max_skew.
fn window(
    moments: &[Moment],
    from: Option<Timestamp>,
    to: Option<Timestamp>,
) -> (Vec<PointReport>, Vec<String>) {
    let start = from
        .and_then(|f| moments.iter().rposition(|m| m.from <= f))
        .unwrap_or(0);
    let mut out: Vec<PointReport> = Vec::new();
    let mut skipped = Vec::new();
    for m in &moments[start..] {
        if to.is_some_and(|t| m.from > t) {
            break;
        }
        let choices: Vec<PointChoice> = m
            .choices
            .iter()
            .map(|c| PointChoice {
                vm: c.vm.clone(),
                image: c.image.name.clone(),
                image_time: c.image.time,
                dump: c.dump.as_ref().map(|d| d.file.clone()),
                dump_time: c.dump.as_ref().map(|d| d.time),
            })
            .collect();
        if !m.over_max_skew.is_empty() {
            skipped.push(format!(
                "{}: over max_skew for {}",
                rfc3339(m.from),
                m.over_max_skew.join(", ")
            ));
            continue;
        }
        let same = |p: &PointReport| {
            p.choices
                .iter()
                .zip(&choices)
                .all(|(a, b)| (&a.image, &a.dump) == (&b.image, &b.dump))
        };
        if out.last().is_some_and(same) {
            continue;
        }
        out.push(PointReport {
            index: out.len(),
            at: m.from,
            choices,
            status: PointStatus::Untested,
            drill: None,
        });
    }
    (out, skipped)
}

/// The failing checks of a drill, with their messages.
fn failing(rep: &DrillReport) -> Vec<FailingCheck> {
    rep.checks
        .iter()
        .filter(|c| c.status != Status::Pass)
        .map(|c| FailingCheck {
            name: c.name.clone(),
            vm: c.vm.clone(),
            status: c.status,
            message: if !c.details.is_empty() {
                c.details.join("; ")
            } else {
                c.got
                    .clone()
                    .or_else(|| c.expected.as_ref().map(|e| format!("expected {e}")))
                    .unwrap_or_default()
            },
        })
        .collect()
}

/// What is wrong at a point, one line each.
fn wrong(d: &PointDrill) -> Vec<String> {
    let mut out: Vec<String> = d
        .failing
        .iter()
        .map(|f| format!("{} ({}): {}", f.name, f.vm, f.message))
        .collect();
    out.extend(d.errors.iter().cloned());
    out
}

/// Drills of one round, at once; `None` where the drill was interrupted.
type Opener<'a> = dyn Fn(&str) -> Result<Box<dyn Hypervisor>> + Sync + 'a;

fn drill_round(
    spec: &LabSpec,
    uri: &str,
    state_dir: &Path,
    opts: &BisectOpts,
    open: &Opener<'_>,
    ats: &[Timestamp],
) -> Vec<Result<(DrillReport, PathBuf, Duration)>> {
    let one = |at: Timestamp| -> Result<(DrillReport, PathBuf, Duration)> {
        let t = Instant::now();
        let hv = open(uri)?;
        let (rep, html) = run(
            spec,
            hv.as_ref(),
            state_dir,
            &RunOpts {
                ttl: opts.ttl,
                at: Some(rfc3339(at)),
                tz: None,
                keep: false,
            },
            open,
        )?;
        Ok((rep, html, t.elapsed()))
    };
    if ats.len() == 1 {
        return vec![one(ats[0])];
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = ats.iter().map(|&at| s.spawn(move || one(at))).collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a drill thread panicked")))
            })
            .collect()
    })
}

/// `reclab bisect`: searches (or with `all` drills) the window's candidates with real drills,
/// stores the result and returns it with the HTML timeline's path. `uri` is the hypervisor
/// each drill opens through `open`; `progress` sees each drilled point as it is judged.
pub fn bisect_lab(
    spec: &LabSpec,
    uri: &str,
    state_dir: &Path,
    opts: &BisectOpts,
    open: &Opener<'_>,
    progress: &mut dyn FnMut(&PointReport),
) -> Result<(BisectReport, PathBuf)> {
    let started = Timestamp::now();
    let hv = open(uri)?;
    let (mut points, skipped) = candidates(spec, Some(hv.as_ref()), opts)?;
    drop(hv);
    if points.is_empty() {
        bail!(
            "lab {}: no restore point in the window{}{}; see `reclab points {}`",
            spec.name,
            opts.from
                .as_deref()
                .map(|f| format!(" from {f:?}"))
                .unwrap_or_default(),
            opts.to
                .as_deref()
                .map(|t| format!(" to {t:?}"))
                .unwrap_or_default(),
            spec.path.display()
        );
    }
    let jobs = opts.jobs.max(1);
    let n = points.len();
    let mut order = 0;
    let mut round = 0;
    let mut drill = |idx: &[usize]| -> Result<Vec<bool>> {
        round += 1;
        let ats: Vec<Timestamp> = idx.iter().map(|&i| points[i].at).collect();
        let results = drill_round(spec, uri, state_dir, opts, open, &ats);
        let mut verdicts = Vec::new();
        let mut first_err = None;
        for (&i, r) in idx.iter().zip(results) {
            match r {
                Ok((rep, html, took)) => {
                    order += 1;
                    let ok = rep.result == DrillResult::Verified;
                    points[i].status = if ok {
                        PointStatus::Good
                    } else {
                        PointStatus::Bad
                    };
                    points[i].drill = Some(PointDrill {
                        order,
                        round,
                        run: rep.run.clone(),
                        result: rep.result,
                        failing: failing(&rep),
                        errors: rep.errors.clone(),
                        report: html.display().to_string(),
                        duration: took,
                    });
                    progress(&points[i]);
                    verdicts.push(ok);
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(verdicts),
        }
    };
    let outcome: Outcome = if opts.all {
        bisect::all(n, jobs, &mut drill)?
    } else {
        bisect::search(n, jobs, &mut drill)?
    };
    let rep = assemble(spec, opts, started, points, skipped, &outcome);
    let html = store(state_dir, rep)?;
    Ok(html)
}

/// The report of a finished search.
fn assemble(
    spec: &LabSpec,
    opts: &BisectOpts,
    started: Timestamp,
    points: Vec<PointReport>,
    skipped: Vec<String>,
    outcome: &Outcome,
) -> BisectReport {
    let label = |i: usize| point_label(&points[i]);
    let first_bad_wrong = outcome
        .first_bad
        .and_then(|i| points[i].drill.as_ref())
        .map(wrong)
        .unwrap_or_default();
    let contradictions = outcome
        .contradictions
        .iter()
        .map(|c| ContradictionReport {
            older_bad: c.older_bad,
            newer_good: c.newer_good,
            message: format!(
                "not monotonic: {} failed but the newer {} passed; points between them may be \
                 good or bad (drill them all with --all)",
                label(c.older_bad),
                label(c.newer_good)
            ),
        })
        .collect();
    let answer = match (outcome.newest_good, outcome.first_bad) {
        (Some(g), Some(b)) => format!(
            "newest good restore point: {}; first bad: {}: {}",
            label(g),
            label(b),
            first_bad_wrong.join("; ")
        ),
        (Some(g), None) => format!(
            "newest good restore point: {} (the newest of the window)",
            label(g)
        ),
        (None, Some(b)) => format!(
            "no good restore point in the window; the oldest, {}, fails: {}",
            label(b),
            first_bad_wrong.join("; ")
        ),
        (None, None) => "no restore point was drilled".into(),
    };
    BisectReport {
        schema: SCHEMA.into(),
        lab: spec.name.clone(),
        id: String::new(),
        lab_file: spec.path.display().to_string(),
        started_at: started,
        finished_at: Timestamp::now(),
        mode: if opts.all { "all" } else { "bisect" }.into(),
        jobs: opts.jobs.max(1),
        from: opts.from.clone(),
        to: opts.to.clone(),
        budget: bisect::budget(points.len()),
        drills: outcome.drilled.len(),
        points,
        skipped,
        newest_good: outcome.newest_good,
        first_bad: outcome.first_bad,
        first_bad_wrong,
        contradictions,
        answer,
    }
}

/// Stores the report in `STATE/labs/LAB/reports/bisect-TIME/` (bisect.json, bisect.html,
/// summary.txt); returns it with its id and the HTML path.
fn store(state_dir: &Path, mut rep: BisectReport) -> Result<(BisectReport, PathBuf)> {
    let stamp = rep.started_at.strftime("bisect-%Y%m%dT%H%M%SZ").to_string();
    let (id, dir) = report::claim_report_dir(state_dir, &rep.lab, &stamp)?;
    rep.id = id;
    let json = serde_json::to_string_pretty(&rep).context("serializing the bisect report")?;
    crate::base::fs::write_atomic(
        &dir.join("bisect.json"),
        format!("{json}\n").as_bytes(),
        0o644,
    )
    .context("writing bisect.json")?;
    crate::base::fs::write_atomic(
        &dir.join("summary.txt"),
        render_terminal(&rep).as_bytes(),
        0o644,
    )
    .context("writing the bisect summary")?;
    let html = dir.join("bisect.html");
    crate::base::fs::write_atomic(&html, render_html(&rep).as_bytes(), 0o644)
        .context("writing bisect.html")?;
    Ok((rep, html))
}

/// One line per drilled point: `#2 2026-11-26T09:00:00Z db: nightly + erp-….sql  FAILED  …`.
pub fn point_line(p: &PointReport) -> String {
    let Some(d) = &p.drill else {
        return format!("   {}  untested", point_label(p));
    };
    let mut line = format!(
        "#{:<2} {}  {}  ({}, run {})",
        d.order,
        point_label(p),
        d.result.as_str().to_uppercase(),
        report::human(d.duration),
        d.run
    );
    for w in wrong(d) {
        let _ = write!(line, "\n      {w}");
    }
    line
}

/// The terminal form: each drilled point in the order drilled, contradictions, the answer.
pub fn render_terminal(rep: &BisectReport) -> String {
    let mut out = format!(
        "bisect of lab {} ({}): {} candidate points{}{}, {} drills (budget {}), {} at once\n",
        rep.lab,
        rep.mode,
        rep.points.len(),
        rep.from
            .as_deref()
            .map(|f| format!(" from {f:?}"))
            .unwrap_or_default(),
        rep.to
            .as_deref()
            .map(|t| format!(" to {t:?}"))
            .unwrap_or_default(),
        rep.drills,
        rep.budget,
        rep.jobs
    );
    let mut drilled: Vec<&PointReport> = rep.points.iter().filter(|p| p.drill.is_some()).collect();
    drilled.sort_by_key(|p| p.drill.as_ref().map(|d| d.order));
    for p in drilled {
        let _ = writeln!(out, "{}", point_line(p));
    }
    for s in &rep.skipped {
        let _ = writeln!(out, "skipped {s}");
    }
    for c in &rep.contradictions {
        let _ = writeln!(out, "contradiction: {}", c.message);
    }
    let _ = writeln!(out, "{}", rep.answer);
    out
}

/// The HTML timeline: the points on a time axis (good, bad, untested), each drilled one
/// linked to its drill's report, and a table of them.
pub fn render_html(rep: &BisectReport) -> String {
    let (first, last) = match (rep.points.first(), rep.points.last()) {
        (Some(a), Some(b)) => (a.at.as_second(), b.at.as_second()),
        _ => (0, 0),
    };
    let span = (last - first).max(1) as f64;
    let (width, left, right) = (960.0, 40.0, 40.0);
    let x = |t: Timestamp| left + (t.as_second() - first) as f64 / span * (width - left - right);
    let color = |s: PointStatus| match s {
        PointStatus::Good => "#2e7d32",
        PointStatus::Bad => "#c62828",
        PointStatus::Untested => "#9e9e9e",
    };
    let link = |d: &PointDrill| {
        // The drills' reports are siblings of this one.
        let p = Path::new(&d.report);
        match (p.parent().and_then(|d| d.file_name()), p.file_name()) {
            (Some(run), Some(file)) => {
                format!("../{}/{}", run.to_string_lossy(), file.to_string_lossy())
            }
            _ => d.report.clone(),
        }
    };
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"90\" \
         role=\"img\" aria-label=\"restore points on a time axis\">\
         <line x1=\"{left}\" y1=\"40\" x2=\"{}\" y2=\"40\" stroke=\"#555\"/>",
        width - right
    );
    for p in &rep.points {
        let cx = x(p.at);
        let title = html_escape(&format!(
            "{} {}",
            point_label(p),
            match p.status {
                PointStatus::Good => "good",
                PointStatus::Bad => "bad",
                PointStatus::Untested => "untested",
            }
        ));
        let dot = format!(
            "<circle cx=\"{cx:.1}\" cy=\"40\" r=\"{}\" fill=\"{}\"><title>{title}</title></circle>",
            if p.drill.is_some() { 8 } else { 4 },
            color(p.status)
        );
        match &p.drill {
            Some(d) => {
                let _ = write!(
                    svg,
                    "<a href=\"{}\">{dot}<text x=\"{cx:.1}\" y=\"20\" font-size=\"11\" \
                     text-anchor=\"middle\">#{}</text></a>",
                    html_escape(&link(d)),
                    d.order
                );
            }
            None => svg.push_str(&dot),
        }
    }
    for (p, anchor) in [(rep.points.first(), "start"), (rep.points.last(), "end")] {
        if let Some(p) = p {
            let _ = write!(
                svg,
                "<text x=\"{:.1}\" y=\"75\" font-size=\"11\" text-anchor=\"{anchor}\">{}</text>",
                x(p.at),
                html_escape(&crate::base::when::for_people_utc(p.at))
            );
        }
    }
    svg.push_str("</svg>");
    let mut rows = String::new();
    for p in rep.points.iter().rev() {
        let (verdict, detail, run) = match &p.drill {
            Some(d) => (
                format!("#{} {}", d.order, d.result.as_str()),
                wrong(d)
                    .iter()
                    .map(|w| html_escape(w))
                    .collect::<Vec<_>>()
                    .join("<br>"),
                format!(
                    "<a href=\"{}\">{}</a>",
                    html_escape(&link(d)),
                    html_escape(&d.run)
                ),
            ),
            None => ("untested".into(), String::new(), String::new()),
        };
        let mark = if Some(p.index) == rep.newest_good {
            " class=\"answer\""
        } else {
            ""
        };
        let _ = write!(
            rows,
            "<tr{mark}><td>{}</td><td>{}</td><td style=\"color:{}\">{}</td><td>{run}</td><td>{detail}</td></tr>",
            html_escape(&crate::base::when::for_people_utc(p.at)),
            html_escape(
                &p.choices
                    .iter()
                    .map(|c| format!(
                        "{}: {}{}",
                        c.vm,
                        c.image,
                        c.dump
                            .as_deref()
                            .map(|d| format!(" + {d}"))
                            .unwrap_or_default()
                    ))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            color(p.status),
            html_escape(&verdict)
        );
    }
    let contradictions: String = rep
        .contradictions
        .iter()
        .map(|c| {
            format!(
                "<p class=\"contradiction\">contradiction: {}</p>",
                html_escape(&c.message)
            )
        })
        .collect();
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>bisect of {lab}</title><style>body{{font-family:sans-serif;margin:2em}}\
         table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;\
         text-align:left;vertical-align:top}}tr.answer{{background:#e8f5e9}}\
         .contradiction{{color:#c62828;font-weight:bold}}</style></head><body>\
         <h1>bisect of lab {lab}</h1><p class=\"answer\">{answer}</p>{contradictions}\
         <p>{n} candidate points, {drills} drills (budget {budget}), mode {mode}, {jobs} at once; \
         started {started}</p>{svg}<table><tr><th>point</th><th>restores</th><th>verdict</th>\
         <th>drill report</th><th>what failed</th></tr>{rows}</table></body></html>\n",
        lab = html_escape(&rep.lab),
        answer = html_escape(&rep.answer),
        n = rep.points.len(),
        drills = rep.drills,
        budget = rep.budget,
        mode = html_escape(&rep.mode),
        jobs = rep.jobs,
        started = html_escape(&crate::base::when::for_people_utc(rep.started_at)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restore::Choice;
    use crate::restore::dumps::DumpPoint;
    use crate::restore::images::ImagePoint;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn moment(from: &str, dump: &str, over: bool) -> Moment {
        Moment {
            from: t(from),
            choices: vec![Choice {
                vm: "db".into(),
                image: ImagePoint {
                    name: "nightly".into(),
                    time: t("2026-11-25T12:00:00Z"),
                    source: "snapshot prod-db/nightly".into(),
                },
                dump: Some(DumpPoint {
                    file: dump.into(),
                    time: t(from),
                }),
                skew: None,
            }],
            over_max_skew: if over { vec!["db".into()] } else { vec![] },
        }
    }

    #[test]
    fn the_window_starts_at_the_point_in_effect_and_skips_repeats_and_skew() {
        let moments = vec![
            moment("2026-11-26T10:00:00Z", "a.sql", false),
            moment("2026-11-26T11:00:00Z", "b.sql", true),
            moment("2026-11-26T12:00:00Z", "c.sql", false),
            moment("2026-11-26T12:30:00Z", "c.sql", false),
            moment("2026-11-26T13:00:00Z", "d.sql", false),
        ];
        let (points, skipped) = window(&moments, Some(t("2026-11-26T10:15:00Z")), None);
        let dumps: Vec<_> = points
            .iter()
            .map(|p| p.choices[0].dump.clone().unwrap())
            .collect();
        assert_eq!(dumps, ["a.sql", "c.sql", "d.sql"]);
        assert_eq!(
            points.iter().map(|p| p.index).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        assert_eq!(skipped.len(), 1);
        assert!(skipped[0].contains("over max_skew for db"), "{skipped:?}");
        let (points, _) = window(&moments, None, Some(t("2026-11-26T12:00:00Z")));
        assert_eq!(points.len(), 2);
    }

    fn drilled(at: &str, dump: &str, order: usize, result: DrillResult, msg: &str) -> PointReport {
        let mut p = window(&[moment(at, dump, false)], None, None).0.remove(0);
        p.status = if result == DrillResult::Verified {
            PointStatus::Good
        } else {
            PointStatus::Bad
        };
        p.drill = Some(PointDrill {
            order,
            round: order,
            run: format!("run{order}"),
            result,
            failing: if msg.is_empty() {
                vec![]
            } else {
                vec![FailingCheck {
                    name: "invoice-numbers-without-gaps".into(),
                    vm: "db".into(),
                    status: Status::Fail,
                    message: msg.into(),
                }]
            },
            errors: vec![],
            report: format!("/state/labs/erp/reports/run{order}/report.html"),
            duration: Duration::from_secs(30),
        });
        p
    }

    #[test]
    fn the_report_names_the_answer_the_first_bad_and_links_every_drill() {
        let mut points = vec![
            drilled(
                "2026-11-26T08:00:00Z",
                "erp-0800.sql",
                2,
                DrillResult::Verified,
                "",
            ),
            drilled(
                "2026-11-26T09:00:00Z",
                "erp-0900.sql",
                1,
                DrillResult::Failed,
                "missing 30 numbers: 11201-11230",
            ),
        ];
        points[1].index = 1;
        let mut untested = window(
            &[moment("2026-11-26T10:00:00Z", "erp-1000.sql", false)],
            None,
            None,
        )
        .0;
        untested[0].index = 2;
        points.extend(untested);
        let outcome = Outcome {
            drilled: vec![(1, false), (0, true)],
            newest_good: Some(0),
            first_bad: Some(1),
            contradictions: vec![],
        };
        let rep = assemble(
            &crate::spec::parse(
                "name = \"erp\"\n[segment.lan]\n[[vm]]\nname = \"db\"\n\
                 from = { domain = \"prod-db\", snapshot = \"nightly\" }\n",
                Path::new("/labs/erp.toml"),
            )
            .unwrap(),
            &BisectOpts::default(),
            t("2026-11-26T14:00:00Z"),
            points,
            vec![],
            &outcome,
        );
        assert_eq!(rep.exit_code(), 0);
        assert!(rep.answer.starts_with("newest good restore point: 2026-11-26T08:00:00Z (db: nightly + erp-0800.sql); first bad: 2026-11-26T09:00:00Z"), "{}", rep.answer);
        assert!(
            rep.answer.ends_with("missing 30 numbers: 11201-11230"),
            "{}",
            rep.answer
        );
        let text = render_terminal(&rep);
        let lines: Vec<&str> = text.lines().collect();
        // Drills in the order they ran, each with its verdict and what failed.
        assert!(lines[1].starts_with("#1  2026-11-26T09:00:00Z"), "{text}");
        assert!(lines[1].contains("FAILED"), "{text}");
        assert!(
            lines[2].contains("invoice-numbers-without-gaps (db): missing 30 numbers"),
            "{text}"
        );
        assert!(
            lines[3].starts_with("#2  2026-11-26T08:00:00Z") && lines[3].contains("VERIFIED"),
            "{text}"
        );
        let html = render_html(&rep);
        assert!(html.contains("href=\"../run1/report.html\""), "{html}");
        assert!(html.contains("href=\"../run2/report.html\""));
        assert_eq!(html.matches("<circle").count(), 3);
        assert!(html.contains("untested"));
        // The JSON reads back.
        let json = serde_json::to_string(&rep).unwrap();
        let back: BisectReport = serde_json::from_str(&json).unwrap();
        assert_eq!(back, rep);
    }

    #[test]
    fn nothing_good_is_exit_1_and_only_errors_is_exit_2() {
        let spec = crate::spec::parse(
            "name = \"erp\"\n[segment.lan]\n[[vm]]\nname = \"db\"\n\
             from = { domain = \"prod-db\", snapshot = \"nightly\" }\n",
            Path::new("/labs/erp.toml"),
        )
        .unwrap();
        let outcome = Outcome {
            drilled: vec![(0, false)],
            newest_good: None,
            first_bad: Some(0),
            contradictions: vec![],
        };
        let bad = vec![drilled(
            "2026-11-26T08:00:00Z",
            "a.sql",
            1,
            DrillResult::Failed,
            "x",
        )];
        let rep = assemble(
            &spec,
            &BisectOpts::default(),
            Timestamp::now(),
            bad,
            vec![],
            &outcome,
        );
        assert_eq!(rep.exit_code(), 1);
        assert!(
            rep.answer
                .starts_with("no good restore point in the window"),
            "{}",
            rep.answer
        );
        let err = vec![drilled(
            "2026-11-26T08:00:00Z",
            "a.sql",
            1,
            DrillResult::Error,
            "",
        )];
        let rep = assemble(
            &spec,
            &BisectOpts::default(),
            Timestamp::now(),
            err,
            vec![],
            &outcome,
        );
        assert_eq!(rep.exit_code(), 2);
    }
}
