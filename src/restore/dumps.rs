//! Dump points: the moments a database dump can restore to, and choosing among them.
//!
//! A *dump point* is one database dump file in a VM's dump directory; its time comes from its
//! name, read with a strftime-like [`NamePattern`] such as `erp-%Y%m%d-%H%M.sql`, or from the
//! file's modification time. (Image points are in [`crate::restore::images`].) For a moment
//! `at`, every source gives its newest point at or before `at` ([`select`]).
//!
//! Everything here is pure except [`scan_dumps`] and [`choose_in_dir`], which list one
//! directory (and, only for `time = "mtime"`, read the matching files' metadata). Checksums
//! are in [`crate::restore::manifest`].

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

use crate::base::pattern::{NamePattern, NameTime};
use crate::spec::{DumpTime, DumpsSpec};

/// Anything with a time that can be chosen.
pub trait Timed {
    fn time(&self) -> Timestamp;
    /// How the point is named in messages (a file or snapshot name).
    fn label(&self) -> String;
}

/// One dump file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpPoint {
    /// File name inside the dump directory.
    pub file: String,
    pub time: Timestamp,
}

impl Timed for DumpPoint {
    fn time(&self) -> Timestamp {
        self.time
    }
    fn label(&self) -> String {
        self.file.clone()
    }
}

/// The dump points of one directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpScan {
    pub dir: PathBuf,
    /// Sorted by time, then file name.
    pub points: Vec<DumpPoint>,
    /// Names that do not match the pattern (manifests, checksums, other files).
    pub others: usize,
    /// Names that match the pattern but are no valid time, with the reason (all of them).
    pub invalid: Vec<(String, String)>,
    /// Names whose wall-clock time happens twice in the source's time zone (DST fold); they
    /// were read as the first occurrence.
    pub ambiguous: Vec<String>,
}

/// Reads dump points from file names (pure). `tz` applies to names without `%s` or `%z`.
pub fn dump_points_from_names<S: AsRef<str>>(
    names: impl IntoIterator<Item = S>,
    pattern: &NamePattern,
    tz: &TimeZone,
) -> DumpScan {
    let mut scan = DumpScan {
        dir: PathBuf::new(),
        points: Vec::new(),
        others: 0,
        invalid: Vec::new(),
        ambiguous: Vec::new(),
    };
    for name in names {
        let name = name.as_ref();
        match pattern.name_time(name) {
            Ok(None) => scan.others += 1,
            Err(why) => scan.invalid.push((name.to_string(), why)),
            Ok(Some(time)) => {
                let instant = match time {
                    NameTime::Instant(t) => Ok(t),
                    NameTime::WithOffset(civil, offset) => offset
                        .to_timestamp(civil)
                        .map_err(|e| format!("the time is out of range: {e}")),
                    NameTime::Civil(civil) => {
                        let ambiguous = tz.to_ambiguous_timestamp(civil);
                        if ambiguous.is_ambiguous() {
                            scan.ambiguous.push(name.to_string());
                        }
                        ambiguous
                            .compatible()
                            .map_err(|e| format!("the time is out of range: {e}"))
                    }
                };
                match instant {
                    Ok(time) => scan.points.push(DumpPoint {
                        file: name.to_string(),
                        time,
                    }),
                    Err(why) => scan.invalid.push((name.to_string(), why)),
                }
            }
        }
    }
    sort_points(&mut scan.points);
    scan.ambiguous.sort();
    scan
}

fn sort_points(points: &mut [DumpPoint]) {
    points.sort_unstable_by(|a, b| a.time.cmp(&b.time).then_with(|| a.file.cmp(&b.file)));
}

/// Lists the dump points of a VM's dump source. Only lists the directory: no file is opened,
/// and no file is stat'ed unless the time is the modification time. `vm` names the VM in
/// messages. A missing directory, or one where nothing matches, is an error.
pub fn scan_dumps(dumps: &DumpsSpec, vm: &str) -> Result<DumpScan> {
    let dir = &dumps.dir;
    let entries = std::fs::read_dir(dir).map_err(|err| {
        let what = match err.kind() {
            std::io::ErrorKind::NotFound => "does not exist".to_string(),
            std::io::ErrorKind::PermissionDenied => "is not readable".to_string(),
            _ => format!("cannot be listed ({err})"),
        };
        anyhow::anyhow!(
            "vm {vm}: dump directory {} {what}; check dumps.dir in the lab file",
            dir.display()
        )
    })?;
    let mut names = Vec::new();
    let mut unreadable_names = 0usize;
    for entry in entries {
        let entry =
            entry.with_context(|| format!("vm {vm}: listing dump directory {}", dir.display()))?;
        // The file type comes with the directory entry on Linux; no stat is needed.
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        match entry.file_name().into_string() {
            Ok(name) => names.push(name),
            Err(_) => unreadable_names += 1,
        }
    }
    let mut scan = match &dumps.time {
        DumpTime::Name { tz } => {
            let zone = match tz {
                None => TimeZone::UTC,
                Some(name) => TimeZone::get(name)
                    .with_context(|| format!("vm {vm}: reading time zone {name:?}"))?,
            };
            dump_points_from_names(&names, &dumps.pattern, &zone)
        }
        DumpTime::Mtime => {
            let mut scan = DumpScan {
                dir: PathBuf::new(),
                points: Vec::new(),
                others: 0,
                invalid: Vec::new(),
                ambiguous: Vec::new(),
            };
            for name in &names {
                if !dumps.pattern.matches(name) {
                    scan.others += 1;
                    continue;
                }
                let path = dir.join(name);
                let modified = std::fs::metadata(&path)
                    .and_then(|m| m.modified())
                    .with_context(|| {
                        format!(
                            "vm {vm}: reading the modification time of {}",
                            path.display()
                        )
                    })?;
                let time = Timestamp::try_from(modified).with_context(|| {
                    format!(
                        "vm {vm}: the modification time of {} is out of range",
                        path.display()
                    )
                })?;
                scan.points.push(DumpPoint {
                    file: name.clone(),
                    time,
                });
            }
            sort_points(&mut scan.points);
            scan
        }
    };
    scan.dir = dir.clone();
    scan.others += unreadable_names;
    if scan.points.is_empty() {
        let mut sample: Vec<&String> = names.iter().collect();
        sample.sort();
        let mut message = format!(
            "vm {vm}: no dump in {} matches the pattern {:?}",
            dir.display(),
            dumps.pattern.as_str()
        );
        if let Some((name, why)) = scan.invalid.first() {
            message.push_str(&format!(
                "; {} names match it but are no valid time, like {name} ({why})",
                scan.invalid.len()
            ));
        } else if sample.is_empty() {
            message.push_str("; the directory is empty");
        } else {
            let shown: Vec<&str> = sample.iter().take(5).map(|s| s.as_str()).collect();
            message.push_str(&format!(
                "; it holds {} files, like {}",
                names.len(),
                shown.join(", ")
            ));
        }
        message.push_str("; check dumps.pattern and dumps.dir in the lab file");
        bail!(message);
    }
    if !scan.invalid.is_empty() {
        tracing::warn!(
            vm,
            count = scan.invalid.len(),
            example = %scan.invalid[0].0,
            "dump names that match the pattern but are no valid time are ignored"
        );
    }
    Ok(scan)
}

/// The newest point at or before `at`, from points sorted by time (the last one on ties).
/// Lists `dir`, reads every name with `pattern` (times in UTC) and picks the newest point at
/// or before `at`: what `--at` costs for one dump source, as `scan_dumps` + [`select`] do it.
pub fn choose_in_dir(
    dir: &Path,
    pattern: &NamePattern,
    at: Timestamp,
) -> Result<Option<DumpPoint>> {
    let names: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    let scan = dump_points_from_names(&names, pattern, &TimeZone::UTC);
    Ok(select(&scan.points, at).cloned())
}

pub fn select<T: Timed>(points: &[T], at: Timestamp) -> Option<&T> {
    let after = points.partition_point(|p| p.time() <= at);
    after.checked_sub(1).map(|i| &points[i])
}

/// Up to `n` points on each side of `at` (closest first): those at or before, those after.
pub fn nearest<T: Timed>(points: &[T], at: Timestamp, n: usize) -> (Vec<&T>, Vec<&T>) {
    let split = points.partition_point(|p| p.time() <= at);
    let before = points[..split].iter().rev().take(n).collect();
    let after = points[split..].iter().take(n).collect();
    (before, after)
}

/// `a (time), b (time)` for messages; `none` when empty.
pub fn describe<T: Timed>(points: &[&T], tz: &TimeZone) -> String {
    if points.is_empty() {
        return "none".to_string();
    }
    points
        .iter()
        .map(|p| format!("{} ({})", p.label(), crate::base::when::show(p.time(), tz)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The time between an image and a dump: positive when the dump is newer than the image.
pub fn skew(image: Timestamp, dump: Timestamp) -> SignedDuration {
    dump.duration_since(image)
}

/// Whether a skew is within `max` (either direction). No bound: always.
pub fn skew_ok(skew: SignedDuration, max: Option<std::time::Duration>) -> bool {
    match max {
        None => true,
        Some(max) => skew.unsigned_abs() <= max,
    }
}

/// A skew for people: `11h 30m`, `dump 2h older than the image` etc.
pub fn show_skew(skew: SignedDuration) -> String {
    let magnitude = crate::base::duration::for_people(skew.unsigned_abs());
    if skew.is_zero() {
        "0s".to_string()
    } else if skew.is_negative() {
        format!("{magnitude} (dump older than image)")
    } else {
        magnitude
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::time::Duration;

    fn pattern(text: &str) -> NamePattern {
        NamePattern::parse(text, true).unwrap_or_else(|e| panic!("{e}"))
    }

    fn utc(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn points(times: &[&str]) -> Vec<DumpPoint> {
        times
            .iter()
            .map(|t| DumpPoint {
                file: format!("d-{t}"),
                time: utc(t),
            })
            .collect()
    }

    #[test]
    fn select_takes_the_newest_point_at_or_before_the_moment() {
        let p = points(&[
            "2026-11-26T11:00:00Z",
            "2026-11-26T12:00:00Z",
            "2026-11-26T13:00:00Z",
        ]);
        let pick = |at: &str| select(&p, utc(at)).map(|p| p.file.as_str());
        assert_eq!(pick("2026-11-26T12:00:00Z"), Some("d-2026-11-26T12:00:00Z"));
        assert_eq!(pick("2026-11-26T12:59:59Z"), Some("d-2026-11-26T12:00:00Z"));
        assert_eq!(pick("2027-01-01T00:00:00Z"), Some("d-2026-11-26T13:00:00Z"));
        assert_eq!(pick("2026-11-26T10:59:59Z"), None);
        let (before, after) = nearest(&p, utc("2026-11-26T12:30:00Z"), 5);
        assert_eq!(before.len(), 2);
        assert_eq!(before[0].file, "d-2026-11-26T12:00:00Z");
        assert_eq!(after[0].file, "d-2026-11-26T13:00:00Z");
        let (before, after) = nearest(&p, utc("2026-11-26T10:00:00Z"), 1);
        assert!(before.is_empty());
        assert_eq!(
            describe(&after, &TimeZone::UTC),
            "d-2026-11-26T11:00:00Z (2026-11-26 11:00:00 UTC)"
        );
    }

    #[test]
    fn skew_is_signed_and_bounded_either_way() {
        let image = utc("2026-11-26T02:00:00Z");
        let later = skew(image, utc("2026-11-26T13:00:00Z"));
        assert_eq!(later, SignedDuration::from_hours(11));
        assert_eq!(show_skew(later), "11h");
        let earlier = skew(image, utc("2026-11-25T00:00:00Z"));
        assert_eq!(show_skew(earlier), "26h (dump older than image)");
        let bound = Some(Duration::from_secs(26 * 3600));
        assert!(skew_ok(later, bound));
        assert!(skew_ok(earlier, bound));
        assert!(!skew_ok(skew(image, utc("2026-11-27T04:00:01Z")), bound));
        assert!(!skew_ok(skew(image, utc("2026-11-24T23:59:59Z")), bound));
        assert!(skew_ok(SignedDuration::from_hours(10_000), None));
    }

    #[test]
    fn choosing_among_100_000_dump_files_takes_the_newest_at_or_before_the_moment() {
        let dir = tempfile::tempdir().unwrap();
        let start = utc("2015-01-01T00:00:00Z");
        for i in 0..100_000i64 {
            let t = start.checked_add(SignedDuration::from_hours(i)).unwrap();
            let name = t.strftime("erp-%Y%m%d-%H%M.sql").to_string();
            File::create(dir.path().join(name)).unwrap();
        }
        // Noise that must not match.
        File::create(dir.path().join("SHA256SUMS")).unwrap();
        let at = utc("2020-06-15T12:34:00Z");
        // Its speed is measured by scripts/bench (examples/bench_choose), not asserted here.
        let chosen = choose_in_dir(dir.path(), &pattern("erp-%Y%m%d-%H%M.sql"), at).unwrap();
        assert_eq!(chosen.unwrap().file, "erp-20200615-1200.sql");
    }

    #[test]
    fn modification_times_date_dumps_when_the_names_carry_none() {
        let dir = tempfile::tempdir().unwrap();
        for (name, at) in [
            ("app-b.tar", "2026-11-26T10:00:00Z"),
            ("app-a.tar", "2026-11-26T12:00:00Z"),
        ] {
            let file = File::create(dir.path().join(name)).unwrap();
            let secs = u64::try_from(utc(at).as_second()).unwrap();
            file.set_modified(std::time::UNIX_EPOCH + Duration::from_secs(secs))
                .unwrap();
        }
        File::create(dir.path().join("notes.txt")).unwrap();
        let text = format!(
            "name = \"x\"\n[[vm]]\nname = \"app\"\nfrom = {{ domain = \"d\", snapshot = \"s\" }}\ndumps = {{ dir = {:?}, pattern = \"app-*.tar\", time = \"mtime\" }}\n",
            dir.path().display().to_string()
        );
        let spec = crate::spec::parse(&text, Path::new("lab.toml")).unwrap();
        let scan = scan_dumps(spec.vms[0].dumps.as_ref().unwrap(), "app").unwrap();
        let files: Vec<&str> = scan.points.iter().map(|p| p.file.as_str()).collect();
        assert_eq!(files, ["app-b.tar", "app-a.tar"]);
        assert_eq!(scan.points[1].time, utc("2026-11-26T12:00:00Z"));
        assert_eq!(scan.others, 1);
    }

    #[test]
    fn names_that_match_but_are_no_time_are_kept_apart_with_the_reason() {
        let scan = dump_points_from_names(
            [
                "erp-20261301-1300.sql",
                "erp-20261126-2500.sql",
                "erp-20261126-1300.sql",
                "erp-20230229-0000.sql",
            ],
            &pattern("erp-%Y%m%d-%H%M.sql"),
            &TimeZone::UTC,
        );
        assert_eq!(scan.points.len(), 1);
        let reasons: Vec<&str> = scan.invalid.iter().map(|(_, why)| why.as_str()).collect();
        assert_eq!(
            reasons,
            [
                "2026-13-01 is not a date",
                "25:00:00 is not a time of day",
                "2023-02-29 is not a date"
            ]
        );
        let doy = dump_points_from_names(["2025366.sql"], &pattern("%Y%j.sql"), &TimeZone::UTC);
        assert_eq!(doy.invalid[0].1, "2025 has no day 366");
    }

    #[test]
    fn names_in_a_local_time_zone_follow_its_dst_rules() {
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        let p = pattern("erp-%Y%m%d-%H%M.sql");
        let scan = dump_points_from_names(
            [
                "erp-20261126-1400.sql",
                "erp-20260726-1500.sql",
                "erp-20261025-0230.sql",
                "erp-20260329-0230.sql",
            ],
            &p,
            &berlin,
        );
        let times: Vec<(&str, Timestamp)> = scan
            .points
            .iter()
            .map(|p| (p.file.as_str(), p.time))
            .collect();
        assert_eq!(
            times,
            [
                // Skipped by spring forward: moved forward into CEST.
                ("erp-20260329-0230.sql", utc("2026-03-29T01:30:00Z")),
                ("erp-20260726-1500.sql", utc("2026-07-26T13:00:00Z")),
                // Repeated by fall back: the first (CEST) occurrence.
                ("erp-20261025-0230.sql", utc("2026-10-25T00:30:00Z")),
                ("erp-20261126-1400.sql", utc("2026-11-26T13:00:00Z")),
            ]
        );
        assert_eq!(
            scan.ambiguous,
            ["erp-20260329-0230.sql", "erp-20261025-0230.sql"]
        );
    }
}
