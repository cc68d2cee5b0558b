//! Restore points of a whole lab: gathering them, choosing a combination for `--at`, and what
//! each moment would pick.
//!
//! For each VM there are *image points* (the VM image the lab clones: see [`images`]) and,
//! with `[vm.dumps]`, *dump points* (see [`dumps`]). For a moment, each source gives its
//! newest point at or before it; `latest` takes each source's newest point. The *skew* of a VM
//! is the chosen dump's time minus the chosen image's time; the lab's `max_skew` bounds it in
//! either direction. A snapshot pattern (`snapshot = "nightly-*"`) makes every matching
//! snapshot an image point; [`with_chosen_snapshots`] then names the chosen one, before
//! anything is resolved.
//!
//! # Layout
//! - this file: [`lab_points`], [`choose`], [`timeline`], the injection record of a choice,
//!   and the host-side verification of a chosen dump ([`verify_chosen`]);
//! - [`images`], [`dumps`] (name patterns → points, selection, skew), [`manifest`]
//!   (checksums), [`commands`] (restore commands);
//! - [`points_cmd`]: `reclab points`;
//! - [`record`]: the pure records (`InjectionRecord`, `PlannedInjection`);
//! - [`datadisk`] and [`inject`]: carrying the dump into the VM and restoring it there.

pub mod commands;
pub mod datadisk;
pub mod dumps;
pub mod images;
pub mod inject;
pub mod manifest;
pub mod points_cmd;
pub mod record;
pub mod virtnbdbackup;

use std::fmt;
use std::time::Duration;

use anyhow::Result;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

use crate::base::duration::format_duration;
use crate::base::when::{At, When, rfc3339, show};
use crate::hv::Hypervisor;
use crate::restore::dumps::DumpPoint;
use crate::restore::dumps::DumpScan;
use crate::restore::dumps::Timed;
use crate::restore::dumps::describe;
use crate::restore::dumps::nearest;
use crate::restore::dumps::scan_dumps;
use crate::restore::dumps::select;
use crate::restore::dumps::show_skew;
use crate::restore::dumps::skew;
use crate::restore::dumps::skew_ok;
use crate::restore::images::{ImagePoint, image_points};

use crate::spec::{LabSpec, VmSource};

use crate::restore::record::{InjectionDurations, InjectionRecord, PointRecord};

/// The restore points of one VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmPoints {
    pub vm: String,
    /// Sorted by time.
    pub images: Vec<ImagePoint>,
    pub dumps: Option<DumpScan>,
}

/// The lab file as a chosen restore point makes it: every VM cloned from a snapshot pattern
/// (`snapshot = "nightly-*"`) gets the snapshot chosen for it, every virtnbdbackup source its
/// checkpoint. Pure.
pub fn with_chosen_snapshots(spec: &LabSpec, choices: &[Choice]) -> LabSpec {
    let mut out = spec.clone();
    for vm in &mut out.vms {
        let Some(choice) = choices.iter().find(|c| c.vm == vm.name) else {
            continue;
        };
        match &mut vm.source {
            VmSource::Domain { snapshot, .. } if snapshot.contains('*') => {
                *snapshot = choice.image.name.clone();
            }
            VmSource::Virtnbdbackup { checkpoint, .. } => {
                *checkpoint = Some(choice.image.name.clone());
            }
            _ => {}
        }
    }
    out
}

/// The restore points of every VM of a lab, in file order.
pub fn lab_points(spec: &LabSpec, hv: Option<&dyn Hypervisor>) -> Result<Vec<VmPoints>> {
    spec.vms
        .iter()
        .map(|vm| {
            let mut images = image_points(vm, hv)?;
            images.sort_by_key(|p| p.time);
            let dumps = vm
                .dumps
                .as_ref()
                .map(|dumps| scan_dumps(dumps, &vm.name))
                .transpose()?;
            Ok(VmPoints {
                vm: vm.name.clone(),
                images,
                dumps,
            })
        })
        .collect()
}

/// What one VM gets for a moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub vm: String,
    pub image: ImagePoint,
    pub dump: Option<DumpPoint>,
    /// Dump time minus image time.
    pub skew: Option<SignedDuration>,
}

/// Why no combination can be chosen: one line per problem, each listing the nearest points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChooseError {
    pub problems: Vec<String>,
}

impl fmt::Display for ChooseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.problems.join("\n"))
    }
}

impl std::error::Error for ChooseError {}

/// Picks every VM's image and dump for `when`. `now` bounds `--at`; `tz` is for messages.
pub fn choose(
    points: &[VmPoints],
    when: &When,
    now: Timestamp,
    max_skew: Option<Duration>,
    tz: &TimeZone,
) -> Result<Vec<Choice>, ChooseError> {
    let moment = match when.at {
        At::Latest => None,
        At::Moment(t) => Some(t),
    };
    let asked = |t: Timestamp| format!("{} (--at {:?})", show(t, tz), when.text);
    if let Some(at) = moment
        && at > now
    {
        let newest: Vec<String> = points
            .iter()
            .map(|p| {
                let image = p.images.last().map(|i| i.label()).unwrap_or_default();
                match p.dumps.as_ref().and_then(|d| d.points.last()) {
                    Some(dump) => format!(
                        "{}: {image} + {} ({})",
                        p.vm,
                        dump.file,
                        show(dump.time, tz)
                    ),
                    None => format!("{}: {image}", p.vm),
                }
            })
            .collect();
        return Err(ChooseError {
            problems: vec![format!(
                "{} is in the future (now is {}); the newest points are {}; use latest or a past moment",
                asked(at),
                show(now, tz),
                newest.join("; ")
            )],
        });
    }
    let mut problems = Vec::new();
    let mut choices = Vec::new();
    for vm in points {
        let image = pick(&vm.images, moment, "image", &vm.vm, &asked, tz);
        let dump = vm
            .dumps
            .as_ref()
            .map(|d| pick(&d.points, moment, "dump", &vm.vm, &asked, tz))
            .transpose();
        let (image, dump) = match (image, dump) {
            (Ok(image), Ok(dump)) => (image, dump),
            (image, dump) => {
                problems.extend(image.err());
                problems.extend(dump.err());
                continue;
            }
        };
        let skew = dump.map(|d| skew(image.time, d.time));
        if let (Some(skew), Some(dump)) = (skew, dump)
            && !skew_ok(skew, max_skew)
        {
            let max = max_skew.map(format_duration).unwrap_or_default();
            let around = |t: Timestamp| {
                let (before, after) = nearest(&vm.images, t, 2);
                let mut all: Vec<&ImagePoint> = before.into_iter().rev().collect();
                all.extend(after);
                describe(&all, tz)
            };
            problems.push(format!(
                "vm {}: image {} ({}) and dump {} ({}) are {} apart, more than max_skew {max}; images near the dump: {}; pick a moment with an image closer to a dump, or raise max_skew",
                vm.vm,
                image.name,
                show(image.time, tz),
                dump.file,
                show(dump.time, tz),
                show_skew(skew),
                around(dump.time)
            ));
            continue;
        }
        choices.push(Choice {
            vm: vm.vm.clone(),
            image: image.clone(),
            dump: dump.cloned(),
            skew,
        });
    }
    if problems.is_empty() {
        Ok(choices)
    } else {
        Err(ChooseError { problems })
    }
}

fn pick<'a, T: Timed>(
    points: &'a [T],
    moment: Option<Timestamp>,
    kind: &str,
    vm: &str,
    asked: &dyn Fn(Timestamp) -> String,
    tz: &TimeZone,
) -> Result<&'a T, String> {
    let Some(at) = moment else {
        return points
            .last()
            .ok_or_else(|| format!("vm {vm}: there is no {kind} at all"));
    };
    select(points, at).ok_or_else(|| {
        let (_, after) = nearest(points, at, 3);
        format!(
            "vm {vm}: no {kind} at or before {}; the oldest {kind}s are {}; pick a later moment",
            asked(at),
            describe(&after, tz)
        )
    })
}

/// From `from` on (until the next entry), these are the choices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moment {
    pub from: Timestamp,
    pub choices: Vec<Choice>,
    /// VMs whose skew at this moment is over `max_skew`.
    pub over_max_skew: Vec<String>,
}

/// What each moment picks: one entry per change of any VM's choice, oldest first, starting
/// when every source has a point.
pub fn timeline(points: &[VmPoints], max_skew: Option<Duration>) -> Vec<Moment> {
    let mut times: Vec<Timestamp> = Vec::new();
    let mut start: Option<Timestamp> = None;
    for vm in points {
        times.extend(vm.images.iter().map(|p| p.time));
        start = start.max(vm.images.first().map(|p| p.time));
        if let Some(dumps) = &vm.dumps {
            times.extend(dumps.points.iter().map(|p| p.time));
            start = start.max(dumps.points.first().map(|p| p.time));
        }
    }
    let Some(start) = start else {
        return Vec::new();
    };
    times.retain(|t| *t >= start);
    times.sort_unstable();
    times.dedup();
    times
        .into_iter()
        .filter_map(|t| {
            let mut choices = Vec::new();
            let mut over = Vec::new();
            for vm in points {
                let image = select(&vm.images, t)?;
                let dump = match &vm.dumps {
                    Some(d) => Some(select(&d.points, t)?),
                    None => None,
                };
                let skew = dump.map(|d| skew(image.time, d.time));
                if skew.is_some_and(|s| !skew_ok(s, max_skew)) {
                    over.push(vm.vm.clone());
                }
                choices.push(Choice {
                    vm: vm.vm.clone(),
                    image: image.clone(),
                    dump: dump.cloned(),
                    skew,
                });
            }
            Some(Moment {
                from: t,
                choices,
                over_max_skew: over,
            })
        })
        .collect()
}

impl InjectionRecord {
    /// The host-side part of a record: the choice and the verified dump. The guest-side
    /// fields (`data_disk`, `commands`, most durations) are filled in as injection proceeds.
    pub fn planned(
        choice: &Choice,
        when: &When,
        dumps: &crate::spec::DumpsSpec,
        digest: &crate::restore::manifest::FileDigest,
        verified_against: Vec<String>,
        manifest: Option<serde_json::Value>,
        max_skew: Option<Duration>,
    ) -> Option<InjectionRecord> {
        let dump = choice.dump.as_ref()?;
        let skew = choice.skew?;
        Some(InjectionRecord {
            vm: choice.vm.clone(),
            at: when.text.clone(),
            at_time: match when.at {
                At::Latest => None,
                At::Moment(t) => Some(rfc3339(t)),
            },
            at_note: when.note.clone(),
            image: PointRecord {
                name: choice.image.name.clone(),
                time: rfc3339(choice.image.time),
                source: choice.image.source.clone(),
            },
            dump: PointRecord {
                name: dump.file.clone(),
                time: rfc3339(dump.time),
                source: dumps.dir.display().to_string(),
            },
            sha256: digest.sha256.clone(),
            bytes: digest.bytes,
            verified_against,
            manifest,
            skew_seconds: skew.as_secs(),
            skew: show_skew(skew),
            max_skew_seconds: max_skew.map(|d| d.as_secs()),
            data_disk: None,
            mount: dumps.mount.clone(),
            attach: dumps.attach,
            restore_as: dumps.restore_as.clone(),
            commands: Vec::new(),
            durations: InjectionDurations::default(),
        })
    }
}

/// Verifies a chosen dump on the host against its manifest and/or `SHA256SUMS`, as the lab
/// file configures. Returns the digest, the files that vouched for it, and the manifest.
pub fn verify_chosen(
    dumps: &crate::spec::DumpsSpec,
    dump: &DumpPoint,
) -> Result<(
    crate::restore::manifest::FileDigest,
    Vec<String>,
    Option<serde_json::Value>,
)> {
    let mut expected = Vec::new();
    let mut manifest = None;
    if let Some(path) = crate::restore::manifest::manifest_path(dumps, &dump.file) {
        let (value, want) = crate::restore::manifest::read_manifest(&path, &dump.file)?;
        manifest = Some(value);
        expected.push(want);
    }
    if let Some(sums) = &dumps.sha256sums {
        expected.push(crate::restore::manifest::read_sha256sums(
            &dumps.dir.join(sums),
            &dump.file,
        )?);
    }
    let digest = crate::restore::manifest::verify_dump(&dumps.dir.join(&dump.file), &expected)?;
    let sources = expected
        .iter()
        .map(|e| e.source.display().to_string())
        .collect();
    Ok((digest, sources, manifest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::when::parse_when;
    use crate::hv::fake::FakeHv;
    use crate::restore::images::{snapshot_creation_time, snapshot_matches};
    use crate::restore::points_cmd::run_points;
    use jiff::ZonedDateTime;
    use std::path::Path;

    const NOW: &str = "2026-11-26T14:30:00+00:00[UTC]";

    fn now() -> ZonedDateTime {
        NOW.parse().unwrap()
    }

    fn utc(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    /// A demo-like estate: `prod-db` with its `nightly` snapshot taken at 02:00 UTC, and
    /// hourly dumps from 2026-11-25 10:00 to 2026-11-26 13:00 UTC with manifests.
    struct Estate {
        dir: tempfile::TempDir,
        hv: FakeHv,
    }

    fn estate() -> Estate {
        let dir = tempfile::tempdir().unwrap();
        let dumps = dir.path().join("backups/dumps");
        std::fs::create_dir_all(&dumps).unwrap();
        let mut sums = String::new();
        for hour in 0..28 {
            let t = utc("2026-11-25T10:00:00Z")
                .checked_add(SignedDuration::from_hours(hour))
                .unwrap();
            let name = t.strftime("erp-%Y%m%d-%H%M.sql").to_string();
            let content = format!("-- dump {hour}\n");
            std::fs::write(dumps.join(&name), &content).unwrap();
            let sha = crate::restore::manifest::sha256_file(&dumps.join(&name))
                .unwrap()
                .sha256;
            std::fs::write(
                dumps.join(format!("{name}.manifest.json")),
                format!(
                    r#"{{"schema":1,"file":"{name}","sha256":"{sha}","bytes":{},"rows":{{"invoices":{hour}}}}}"#,
                    content.len()
                ),
            )
            .unwrap();
            sums.push_str(&format!("{sha}  {name}\n"));
        }
        std::fs::write(dumps.join("SHA256SUMS"), sums).unwrap();
        let hv = FakeHv::new();
        hv.add_domain(
            "<domain type='kvm'><name>prod-db</name></domain>",
            true,
            true,
        )
        .unwrap();
        hv.add_snapshot(
            "prod-db",
            "nightly",
            // 2026-11-26T02:00:00Z
            "<domainsnapshot><name>nightly</name><creationTime>1795658400</creationTime><domain><name>prod-db</name></domain></domainsnapshot>",
        )
        .unwrap();
        Estate { dir, hv }
    }

    fn lab(estate: &Estate, extra: &str) -> LabSpec {
        let text = format!(
            "name = \"erp\"\n{extra}\n[[vm]]\nname = \"db\"\nfrom = {{ domain = \"prod-db\", snapshot = \"nightly\" }}\n[vm.dumps]\ndir = \"backups/dumps\"\npattern = \"erp-%Y%m%d-%H%M.sql\"\nmanifest = \"{{file}}.manifest.json\"\nsha256sums = \"SHA256SUMS\"\nrestore = [\"sqlite3 /var/lib/erp/erp.db < {{dump}}\"]\n"
        );
        crate::spec::parse(&text, &estate.dir.path().join("lab.toml"))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn run(estate: &Estate, spec: &LabSpec, at: &str, json: bool) -> (String, Result<()>) {
        let mut out = Vec::new();
        let result = run_points(spec, Some(&estate.hv), Some(at), &now(), json, &mut out);
        (String::from_utf8(out).unwrap(), result)
    }

    #[test]
    fn snapshot_patterns_match_whole_names() {
        assert!(snapshot_matches("nightly", "nightly"));
        assert!(!snapshot_matches("nightly", "nightly-2"));
        assert!(snapshot_matches("nightly-*", "nightly-20261126"));
        assert!(snapshot_matches("*", "anything"));
        assert!(snapshot_matches("n*-*-db", "nightly-26-db"));
        assert!(!snapshot_matches("n*-*-db", "nightly-26-app"));
        assert!(!snapshot_matches("nightly-*", "weekly-20261126"));
        assert!(!snapshot_matches("a*a", "a"));
        assert!(snapshot_matches("100%-*", "100%-done"));
        assert!(!snapshot_matches("100%-*", "100-done"));
    }

    #[test]
    fn a_snapshot_pattern_offers_every_matching_snapshot_and_the_moment_picks_one() {
        let estate = estate();
        // A second nightly a day earlier, and a snapshot the pattern does not mean.
        for (name, time) in [("nightly-1125", 1795572000), ("manual", 1795660000)] {
            estate
                .hv
                .add_snapshot(
                    "prod-db",
                    name,
                    &format!("<domainsnapshot><name>{name}</name><creationTime>{time}</creationTime></domainsnapshot>"),
                )
                .unwrap();
        }
        let mut spec = lab(&estate, "");
        if let VmSource::Domain { snapshot, .. } = &mut spec.vms[0].source {
            *snapshot = "nightly*".into();
        }
        let points = lab_points(&spec, Some(&estate.hv)).unwrap();
        let names: Vec<&str> = points[0].images.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            ["nightly-1125", "nightly"],
            "oldest first, manual left out"
        );

        let pick = |at: &str| {
            let when = crate::base::when::parse_when(at, &now()).unwrap();
            let choices = choose(&points, &when, now().timestamp(), None, &TimeZone::UTC).unwrap();
            let chosen = with_chosen_snapshots(&spec, &choices);
            match &chosen.vms[0].source {
                VmSource::Domain { snapshot, .. } => snapshot.clone(),
                other => panic!("{other:?}"),
            }
        };
        // 2026-11-26T02:00Z is the newest nightly; at 01:00 the one of the day before counts.
        assert_eq!(pick("latest"), "nightly");
        assert_eq!(pick("2026-11-26T01:00:00Z"), "nightly-1125");

        if let VmSource::Domain { snapshot, .. } = &mut spec.vms[0].source {
            *snapshot = "weekly-*".into();
        }
        let err = format!("{:#}", lab_points(&spec, Some(&estate.hv)).unwrap_err());
        assert!(
            err.contains(
                "has no snapshot matching weekly-*; it has: nightly, nightly-1125, manual"
            ),
            "{err}"
        );
    }

    #[test]
    fn the_snapshot_time_is_its_creation_time() {
        assert_eq!(
            snapshot_creation_time("<domainsnapshot><name>n</name><creationTime> 1764028800 </creationTime></domainsnapshot>").unwrap(),
            utc("2025-11-25T00:00:00Z")
        );
        let err =
            snapshot_creation_time("<domainsnapshot><name>n</name></domainsnapshot>").unwrap_err();
        assert_eq!(err.to_string(), "the snapshot xml has no <creationTime>");
        // A creationTime inside the embedded domain is not the snapshot's.
        assert!(
            snapshot_creation_time(
                "<domainsnapshot><domain><creationTime>1</creationTime></domain></domainsnapshot>"
            )
            .is_err()
        );
    }

    #[test]
    fn two_hours_ago_picks_the_dump_of_two_hours_ago_and_shows_the_skew() {
        let estate = estate();
        let spec = lab(&estate, "max_skew = \"26h\"");
        let (out, result) = run(&estate, &spec, "2h ago", false);
        result.unwrap();
        assert!(
            out.contains("vm db\n  image  2026-11-26 02:00:00 UTC  snapshot prod-db/nightly\n"),
            "{out}"
        );
        assert!(out.contains("  dumps  28 in "), "{out}");
        assert!(out.contains("... and 16 older (--json lists all)"), "{out}");
        assert!(out.contains("at \"2h ago\" = 2026-11-26 12:30:00 UTC:\n  db: image nightly (2026-11-26 02:00:00 UTC) + dump erp-20261126-1200.sql (2026-11-26 12:00:00 UTC), skew 10h\n"), "{out}");
    }

    #[test]
    fn the_json_lists_every_point_the_choice_and_the_timeline() {
        let estate = estate();
        let spec = lab(&estate, "");
        let (out, result) = run(&estate, &spec, "latest", true);
        result.unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["vms"][0]["dumps"]["points"].as_array().unwrap().len(), 28);
        // Manifests and SHA256SUMS are not dumps.
        assert_eq!(v["vms"][0]["dumps"]["other_files"], 29);
        assert_eq!(v["at"]["choices"][0]["dump"], "erp-20261126-1300.sql");
        assert_eq!(v["at"]["choices"][0]["skew_seconds"], 11 * 3600);
        // The timeline starts when both the image and a dump exist: 02:00 to 13:00.
        let timeline = v["timeline"].as_array().unwrap();
        assert_eq!(timeline.len(), 12);
        assert_eq!(timeline[0]["from"], "2026-11-26T02:00:00Z");
        assert_eq!(timeline[0]["choices"][0]["dump"], "erp-20261126-0200.sql");
    }

    #[test]
    fn a_moment_before_the_image_lists_the_oldest_points() {
        let estate = estate();
        let spec = lab(&estate, "");
        let (out, result) = run(&estate, &spec, "2026-11-25T12:00:00Z", false);
        let err = result.unwrap_err().to_string();
        assert_eq!(
            err,
            "vm db: no image at or before 2026-11-25 12:00:00 UTC (--at \"2026-11-25T12:00:00Z\"); the oldest images are nightly (2026-11-26 02:00:00 UTC); pick a later moment"
        );
        assert!(out.contains("nothing can be chosen"), "{out}");
        let (_, result) = run(&estate, &spec, "2026-11-24T12:00:00Z", false);
        let err = result.unwrap_err().to_string();
        assert!(
            err.contains("no dump at or before 2026-11-24 12:00:00 UTC"),
            "{err}"
        );
        assert!(err.contains("the oldest dumps are erp-20261125-1000.sql (2026-11-25 10:00:00 UTC), erp-20261125-1100.sql"), "{err}");
    }

    #[test]
    fn a_moment_in_the_future_is_refused_with_the_newest_points() {
        let estate = estate();
        let spec = lab(&estate, "");
        let (_, result) = run(&estate, &spec, "2026-11-26T15:00:00Z", false);
        let err = result.unwrap_err().to_string();
        assert!(err.starts_with("2026-11-26 15:00:00 UTC (--at \"2026-11-26T15:00:00Z\") is in the future (now is 2026-11-26 14:30:00 UTC)"), "{err}");
        assert!(err.contains("db: nightly + erp-20261126-1300.sql"), "{err}");
    }

    #[test]
    fn a_skew_over_max_skew_is_an_error_naming_both_points() {
        let estate = estate();
        let spec = lab(&estate, "max_skew = \"3h\"");
        let (out, result) = run(&estate, &spec, "latest", false);
        let err = result.unwrap_err().to_string();
        assert_eq!(
            err,
            "vm db: image nightly (2026-11-26 02:00:00 UTC) and dump erp-20261126-1300.sql (2026-11-26 13:00:00 UTC) are 11h apart, more than max_skew 3h; images near the dump: nightly (2026-11-26 02:00:00 UTC); pick a moment with an image closer to a dump, or raise max_skew"
        );
        assert!(out.contains("[over max_skew: db]"), "{out}");
        let (_, ok) = run(&estate, &spec, "2026-11-26T04:59:00Z", false);
        ok.unwrap();
    }

    #[test]
    fn a_missing_snapshot_names_the_ones_there_are() {
        let estate = estate();
        let text = "name = \"erp\"\n[[vm]]\nname = \"db\"\nfrom = { domain = \"prod-db\", snapshot = \"weekly\" }\n";
        let spec = crate::spec::parse(text, Path::new("lab.toml")).unwrap();
        let (_, result) = run(&estate, &spec, "latest", false);
        assert_eq!(
            result.unwrap_err().to_string(),
            "vm db: domain prod-db has no snapshot weekly; it has: nightly"
        );
    }

    #[test]
    fn a_missing_dump_directory_or_no_match_is_clear() {
        let estate = estate();
        let spec = lab(&estate, "");
        let mut gone = spec.clone();
        gone.vms[0].dumps.as_mut().unwrap().dir = estate.dir.path().join("nope");
        let err = lab_points(&gone, Some(&estate.hv)).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "vm db: dump directory {} does not exist; check dumps.dir in the lab file",
                estate.dir.path().join("nope").display()
            )
        );
        let mut other = spec.clone();
        other.vms[0].dumps.as_mut().unwrap().pattern =
            crate::base::pattern::NamePattern::parse("crm-%Y%m%d-%H%M.sql", true).unwrap();
        let err = lab_points(&other, Some(&estate.hv))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no dump in"), "{err}");
        assert!(err.contains("matches the pattern \"crm-%Y%m%d-%H%M.sql\"; it holds 57 files, like SHA256SUMS, erp-20261125-1000.sql"), "{err}");
    }

    #[test]
    fn the_chosen_dump_verifies_and_becomes_a_record() {
        let estate = estate();
        let spec = lab(&estate, "max_skew = \"26h\"");
        let points = lab_points(&spec, Some(&estate.hv)).unwrap();
        let when = parse_when("2h ago", &now()).unwrap();
        let choices = choose(
            &points,
            &when,
            now().timestamp(),
            spec.max_skew,
            &TimeZone::UTC,
        )
        .unwrap();
        let dumps = spec.vms[0].dumps.as_ref().unwrap();
        let (digest, sources, manifest) =
            verify_chosen(dumps, choices[0].dump.as_ref().unwrap()).unwrap();
        assert_eq!(sources.len(), 2);
        let record = InjectionRecord::planned(
            &choices[0],
            &when,
            dumps,
            &digest,
            sources,
            manifest,
            spec.max_skew,
        )
        .unwrap();
        let json = serde_json::to_value(&record).unwrap();
        assert_eq!(json["dump"]["name"], "erp-20261126-1200.sql");
        assert_eq!(json["image"]["time"], "2026-11-26T02:00:00Z");
        assert_eq!(json["at_time"], "2026-11-26T12:30:00Z");
        assert_eq!(json["manifest"]["rows"]["invoices"], 26);
        assert_eq!(json["skew_seconds"], 36000);
        let back: InjectionRecord = serde_json::from_value(json).unwrap();
        assert_eq!(back, record);
        assert_eq!(
            crate::restore::commands::restore_commands(dumps, "erp-20261126-1200.sql").unwrap(),
            ["sqlite3 /var/lib/erp/erp.db < /mnt/reclab/erp-20261126-1200.sql"]
        );
    }

    #[test]
    fn a_corrupt_chosen_dump_fails_verification_naming_the_file() {
        let estate = estate();
        let spec = lab(&estate, "");
        let dumps = spec.vms[0].dumps.as_ref().unwrap();
        let file = dumps.dir.join("erp-20261126-1300.sql");
        std::fs::write(&file, "-- tampered\n").unwrap();
        let dump = DumpPoint {
            file: "erp-20261126-1300.sql".into(),
            time: utc("2026-11-26T13:00:00Z"),
        };
        let err = verify_chosen(dumps, &dump).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("dump {} is corrupt", file.display())),
            "{err}"
        );
    }

    #[test]
    fn backup_files_date_the_image_by_their_newest_modification_time() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("db.qcow2"), "x").unwrap();
        let text = "name = \"erp\"\n[[vm]]\nname = \"db\"\nfrom = { xml = \"db.xml\", disks = { vda = \"db.qcow2\" } }\n";
        let spec = crate::spec::parse(text, &dir.path().join("lab.toml")).unwrap();
        let images = image_points(&spec.vms[0], None).unwrap();
        let mtime = Timestamp::try_from(
            std::fs::metadata(dir.path().join("db.qcow2"))
                .unwrap()
                .modified()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(images[0].time, mtime);
        assert_eq!(images[0].name, "db.qcow2");
        // `taken` in the lab file wins over the modification time.
        let taken = "name = \"erp\"\n[[vm]]\nname = \"db\"\nfrom = { xml = \"db.xml\", disks = { vda = \"db.qcow2\" }, taken = \"2026-11-30T22:00:00+01:00\" }\n";
        let spec = crate::spec::parse(taken, &dir.path().join("lab.toml")).unwrap();
        let images = image_points(&spec.vms[0], None).unwrap();
        assert_eq!(images[0].time, utc("2026-11-30T21:00:00Z"));
        assert!(images[0].source.contains("(taken, from the lab file)"));
        let missing = "name = \"erp\"\n[[vm]]\nname = \"db\"\nfrom = { xml = \"db.xml\", disks = { vda = \"gone.qcow2\" } }\n";
        let spec = crate::spec::parse(missing, &dir.path().join("lab.toml")).unwrap();
        let err = format!("{:#}", image_points(&spec.vms[0], None).unwrap_err());
        assert!(
            err.starts_with("vm db: reading the modification time of disk image"),
            "{err}"
        );
    }
}
