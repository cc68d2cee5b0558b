//! Drill reports: the evidence a drill leaves behind.
//!
//! A [`DrillReport`] is what one drill did and found: the lab and run, the requested moment
//! (`--at`), what each VM got (image and dump, with their times and checksums), per-phase
//! timings, every check's result, and two figures: **recovery time** (from the start of the
//! drill to a verified lab) and **data age** (how far the newest restored data is behind the
//! requested moment). It is written into the run's report directory as:
//!
//! - `report.json`: the report itself, schema [`SCHEMA`] (`"reclab.report/1"`); fields are only
//!   ever added within a schema version;
//! - `junit.xml`: one `<testsuite>` per drill, one `<testcase>` per check (plus one named
//!   `drill` when a phase failed), for CI systems;
//! - `report.html`: one self-contained file (no external resources; screenshots embedded as
//!   `data:` URIs);
//! - `summary.txt`: the terminal summary table.
//!
//! Every file is written atomically (temporary file, then rename). Each drill also appends a
//! one-line [`Summary`] to the lab's `history.jsonl`, which `reclab history LAB` shows as a
//! table with the trend of recovery time and data age.
//!
//! Rendering is pure (`render_*`); only the functions of [`store`] (the report files) and
//! [`history`] (the history file) touch the disk.
//!
//! Layout: this file holds the report model and the formatting helpers the renderers share;
//! [`terminal`], [`junit`] and [`html`] render, [`store`] knows where the files live,
//! [`history`] keeps the history file, [`signoff`] the customers' sign-offs.

pub mod history;
pub mod html;
pub mod junit;
pub mod signoff;
pub mod store;
pub mod terminal;

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::verify::{CheckResult, Status};

pub use history::{append_history, history, render_history};
pub use html::render_html;
pub use junit::render_junit;
pub use store::{
    ReportFiles, claim_report_dir, history_path, read_report, report_dir, write_report,
};
pub use terminal::render_terminal;

/// The JSON report's schema identifier.
pub const SCHEMA: &str = "reclab.report/1";
/// The history line's schema identifier.
pub const HISTORY_SCHEMA: &str = "reclab.history/1";

/// The overall verdict of a drill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DrillResult {
    /// Every check passed.
    Verified,
    /// The lab came up, but a check failed or could not be evaluated.
    Failed,
    /// A phase failed (up, inject, ...): the drill could not verify anything.
    Error,
}

impl DrillResult {
    /// The verdict's name, as in the JSON report.
    pub fn as_str(self) -> &'static str {
        match self {
            DrillResult::Verified => "verified",
            DrillResult::Failed => "failed",
            DrillResult::Error => "error",
        }
    }
}

impl DrillResult {
    /// The process exit code: 0 verified, 1 a check failed, 2 an operational error.
    pub fn exit_code(self) -> u8 {
        match self {
            DrillResult::Verified => 0,
            DrillResult::Failed => 1,
            DrillResult::Error => 2,
        }
    }

    fn label(self) -> &'static str {
        match self {
            DrillResult::Verified => "VERIFIED",
            DrillResult::Failed => "FAILED",
            DrillResult::Error => "ERROR",
        }
    }
}

/// One drill. See the module documentation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrillReport {
    /// Always [`SCHEMA`].
    pub schema: String,
    pub lab: String,
    pub run: String,
    #[serde(default)]
    pub lab_file: Option<String>,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    /// The requested moment (`--at`); `None` means "the latest restore point".
    pub at: Option<Timestamp>,
    /// What each VM got.
    pub restore_points: Vec<VmRestore>,
    /// VM images restored from virtnbdbackup chains for this drill: from the restore cache
    /// (`hit`) or restored (`miss`), and how long it took.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_restores: Vec<ImageRestore>,
    /// Phases in the order they ran.
    pub phases: Vec<Phase>,
    pub checks: Vec<CheckResult>,
    /// From the start of the drill to a verified lab; `None` when the lab was not verified.
    #[serde(rename = "recovery_time_ms", with = "opt_millis")]
    pub recovery_time: Option<Duration>,
    /// Requested moment (or start) minus the newest restored data time; negative if the data is
    /// newer than the requested moment.
    #[serde(rename = "data_age_ms", with = "opt_signed_millis")]
    pub data_age: Option<SignedDuration>,
    pub result: DrillResult,
    /// Operational errors, one per failed phase, with their cause chains.
    #[serde(default)]
    pub errors: Vec<String>,
    /// Customers' sign-offs ("I saw my data") recorded on the lab's page.
    #[serde(default)]
    pub signoffs: Vec<signoff::SignOff>,
}

/// What one VM was restored from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmRestore {
    pub vm: String,
    pub image: Option<RestoredImage>,
    pub dump: Option<RestoredDump>,
}

/// A VM image restored from a backup chain before the lab was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageRestore {
    pub vm: String,
    /// The backup directory.
    pub backup: String,
    pub checkpoint: String,
    /// `hit`: reused from the restore cache; `miss`: restored now.
    pub cache: String,
    pub seconds: f64,
    /// The restore cache entry.
    pub entry: String,
}

/// The disk image (snapshot or backup file) a VM was cloned from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoredImage {
    /// A snapshot (`prod-db@nightly`) or a backup file path.
    pub source: String,
    pub taken_at: Option<Timestamp>,
    /// A checksum or fingerprint of the image, as the restore-point code knows it.
    pub checksum: Option<String>,
}

/// The database dump injected into a VM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoredDump {
    pub file: String,
    pub sha256: Option<String>,
    pub bytes: Option<u64>,
    pub taken_at: Option<Timestamp>,
    /// The dump's manifest as read (rows, max invoice number, ...).
    #[serde(default)]
    pub manifest: Option<serde_json::Value>,
    /// How the data disk reached the VM: `boot` (in the domain from the start) or `hotplug`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attach: Option<String>,
}

/// One phase of a drill (`resolve`, `up`, `inject`, `verify`, `report`, `down`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Phase {
    pub name: String,
    pub started_at: Timestamp,
    #[serde(rename = "duration_ms", with = "crate::verify::millis")]
    pub duration: Duration,
    /// `false` if the phase failed (its error is in [`DrillReport::errors`]).
    pub ok: bool,
}

mod opt_millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<u64>::deserialize(d).map(|ms| ms.map(Duration::from_millis))
    }
}

mod opt_signed_millis {
    use jiff::SignedDuration;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<SignedDuration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<SignedDuration>, D::Error> {
        Option::<i64>::deserialize(d).map(|ms| ms.map(SignedDuration::from_millis))
    }
}

impl DrillReport {
    /// A report for a drill that starts now; fill in restore points, phases and checks, then
    /// call [`DrillReport::finish`].
    pub fn new(lab: &str, run: &str, started_at: Timestamp, at: Option<Timestamp>) -> Self {
        DrillReport {
            schema: SCHEMA.to_string(),
            lab: lab.to_string(),
            run: run.to_string(),
            lab_file: None,
            started_at,
            finished_at: started_at,
            at,
            restore_points: Vec::new(),
            image_restores: Vec::new(),
            phases: Vec::new(),
            checks: Vec::new(),
            recovery_time: None,
            data_age: None,
            result: DrillResult::Error,
            errors: Vec::new(),
            signoffs: Vec::new(),
        }
    }

    /// Sets the result and the two figures. `verified_at` is when the last check finished.
    pub fn finish(&mut self, finished_at: Timestamp, verified_at: Option<Timestamp>) {
        self.finished_at = finished_at;
        self.result = if !self.errors.is_empty() || self.checks.is_empty() {
            DrillResult::Error
        } else if self.checks.iter().all(|c| c.status == Status::Pass) {
            DrillResult::Verified
        } else {
            DrillResult::Failed
        };
        self.recovery_time = match (self.result, verified_at) {
            (DrillResult::Verified, Some(done)) => {
                Duration::try_from(done.duration_since(self.started_at)).ok()
            }
            _ => None,
        };
        self.data_age = self
            .newest_data()
            .map(|newest| self.at.unwrap_or(self.started_at).duration_since(newest));
    }

    /// The newest time of any restored image or dump.
    pub fn newest_data(&self) -> Option<Timestamp> {
        self.restore_points
            .iter()
            .flat_map(|r| {
                [
                    r.image.as_ref().and_then(|i| i.taken_at),
                    r.dump.as_ref().and_then(|d| d.taken_at),
                ]
            })
            .flatten()
            .max()
    }

    /// Checks by status: (passed, failed, errors).
    pub fn counts(&self) -> (usize, usize, usize) {
        let count = |s: Status| self.checks.iter().filter(|c| c.status == s).count();
        (
            count(Status::Pass),
            count(Status::Fail),
            count(Status::Error),
        )
    }

    /// The line `history.jsonl` keeps for this drill.
    pub fn summary(&self, report_dir: Option<&Path>) -> Summary {
        let (passed, failed, errors) = self.counts();
        Summary {
            schema: HISTORY_SCHEMA.to_string(),
            lab: self.lab.clone(),
            run: self.run.clone(),
            started_at: self.started_at,
            at: self.at,
            result: self.result,
            checks: passed + failed + errors,
            checks_failed: failed + errors,
            recovery_time: self.recovery_time,
            data_age: self.data_age,
            report_dir: report_dir.map(|d| d.display().to_string()),
            answer: None,
        }
    }
}

/// One drill in a lab's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Always [`HISTORY_SCHEMA`].
    pub schema: String,
    pub lab: String,
    pub run: String,
    pub started_at: Timestamp,
    pub at: Option<Timestamp>,
    pub result: DrillResult,
    pub checks: usize,
    pub checks_failed: usize,
    #[serde(rename = "recovery_time_ms", with = "opt_millis")]
    pub recovery_time: Option<Duration>,
    #[serde(rename = "data_age_ms", with = "opt_signed_millis")]
    pub data_age: Option<SignedDuration>,
    pub report_dir: Option<String>,
    /// The answer of a `reclab bisect` (newest good point, first bad and what is wrong there)
    /// when the notification is about one; never in a drill's history line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Formatting helpers.

/// A duration for people: whole seconds from a minute, tenths below (rounded).
pub fn human(d: Duration) -> String {
    crate::base::duration::for_people(d)
}

fn human_signed(d: SignedDuration) -> String {
    let text = human(d.unsigned_abs());
    if d.is_negative() {
        format!("-{text}")
    } else {
        text
    }
}

fn opt_human(d: Option<Duration>) -> String {
    d.map(human).unwrap_or_else(|| "-".into())
}

fn opt_human_signed(d: Option<SignedDuration>) -> String {
    d.map(human_signed).unwrap_or_else(|| "-".into())
}

fn opt_time(t: Option<Timestamp>) -> String {
    t.map(crate::base::when::for_people_utc)
        .unwrap_or_else(|| "-".into())
}

/// Columns padded to their widest cell, separated by two spaces.
fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}  ", width = widths[c]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn indent(text: &str, prefix: &str) -> String {
    text.lines().map(|l| format!("{prefix}{l}\n")).collect()
}

/// The report as pretty JSON (`report.json`).
pub fn render_json(report: &DrillReport) -> String {
    serde_json::to_string_pretty(report).unwrap_or_else(|err| format!("{{\"error\": \"{err}\"}}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn result(name: &str, vm: &str, kind: &str, status: Status) -> CheckResult {
        CheckResult {
            name: name.into(),
            vm: vm.into(),
            kind: kind.into(),
            status,
            duration: Duration::from_millis(420),
            expected: Some("every number from 1 to 100 exactly once".into()),
            got: Some("99 numbers, 99 distinct, from 1 to 100".into()),
            details: if status == Status::Pass {
                vec![]
            } else {
                vec!["missing 1 number: 57".into()]
            },
            output_tail: Some("[stdout]\n...\n99\n100\n".into()),
            screenshot: None,
        }
    }

    /// A drill at "2h ago" of the demo estate with one planted gap.
    pub(super) fn drill() -> DrillReport {
        let mut report = DrillReport::new(
            "erp",
            "1a2b3c4d",
            ts("2026-01-31T10:00:00Z"),
            Some(ts("2026-01-31T08:00:00Z")),
        );
        report.lab_file = Some("examples/erp.toml".into());
        report.restore_points = vec![
            VmRestore {
                vm: "db".into(),
                image: Some(RestoredImage {
                    source: "prod-db@nightly".into(),
                    taken_at: Some(ts("2026-01-31T02:00:00Z")),
                    checksum: Some("fp:4096:ab12".into()),
                }),
                dump: Some(RestoredDump {
                    file: "erp-2026-01-31T0700Z.sql.gz".into(),
                    sha256: Some("e3b0c442".into()),
                    bytes: Some(18_432),
                    taken_at: Some(ts("2026-01-31T07:00:00Z")),
                    manifest: Some(serde_json::json!({ "rows": { "invoices": 100 } })),
                    attach: Some("boot".into()),
                }),
            },
            VmRestore {
                vm: "app".into(),
                image: None,
                dump: None,
            },
        ];
        report.phases = vec![
            Phase {
                name: "up".into(),
                started_at: ts("2026-01-31T10:00:00Z"),
                duration: Duration::from_secs(95),
                ok: true,
            },
            Phase {
                name: "inject".into(),
                started_at: ts("2026-01-31T10:01:35Z"),
                duration: Duration::from_secs(12),
                ok: true,
            },
            Phase {
                name: "verify".into(),
                started_at: ts("2026-01-31T10:01:47Z"),
                duration: Duration::from_secs(8),
                ok: true,
            },
        ];
        report.checks = vec![
            result("db-heartbeat", "db", "heartbeat", Status::Pass),
            result("invoices-no-gaps", "db", "sequence", Status::Fail),
            result("app-version", "client", "http", Status::Error),
        ];
        report.finish(ts("2026-01-31T10:02:10Z"), Some(ts("2026-01-31T10:01:55Z")));
        report
    }

    #[test]
    fn the_result_and_figures_follow_from_the_checks_and_restore_points() {
        let mut report = drill();
        assert_eq!(report.result, DrillResult::Failed);
        assert_eq!(report.result.exit_code(), 1);
        assert_eq!(
            report.recovery_time, None,
            "a failed drill never reached a verified lab"
        );
        assert_eq!(
            report.data_age,
            Some(SignedDuration::from_hours(1)),
            "08:00 requested, newest data 07:00"
        );
        for c in &mut report.checks {
            c.status = Status::Pass;
        }
        report.finish(ts("2026-01-31T10:02:10Z"), Some(ts("2026-01-31T10:01:55Z")));
        assert_eq!(report.result, DrillResult::Verified);
        assert_eq!(report.recovery_time, Some(Duration::from_secs(115)));
        report.errors.push("inject: dump file missing".into());
        report.finish(ts("2026-01-31T10:02:10Z"), None);
        assert_eq!(
            (report.result, report.result.exit_code()),
            (DrillResult::Error, 2)
        );
    }

    #[test]
    fn json_round_trips_with_the_schema_fields() {
        let report = drill();
        let json = render_json(&report);
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["schema"], "reclab.report/1");
        assert_eq!(value["at"], "2026-01-31T08:00:00Z");
        assert_eq!(value["result"], "failed");
        assert_eq!(value["data_age_ms"], 3_600_000);
        assert_eq!(value["recovery_time_ms"], serde_json::Value::Null);
        assert_eq!(value["phases"][0]["duration_ms"], 95_000);
        assert_eq!(value["checks"][1]["status"], "fail");
        assert_eq!(value["checks"][1]["details"][0], "missing 1 number: 57");
        assert_eq!(
            value["restore_points"][0]["dump"]["taken_at"],
            "2026-01-31T07:00:00Z"
        );
        let back: DrillReport = serde_json::from_str(&json).unwrap();
        assert_eq!(back, report);
    }

    #[test]
    fn people_see_rounded_times_and_durations_the_json_keeps_them_whole() {
        let mut report = drill();
        report.started_at = ts("2026-01-31T10:00:00.80633178Z");
        report.phases[0].started_at = ts("2026-01-31T10:00:00.80633178Z");
        report.phases[0].duration = Duration::new(433, 886_639_076);
        report.checks[1].duration = Duration::new(4, 249_000_001);
        report.at = Some(ts("2026-01-31T08:00:00.5Z"));
        let junit = render_junit(&report).unwrap();
        for (form, text) in [
            ("terminal", render_terminal(&report)),
            ("html", render_html(&report, &Default::default())),
            ("junit", junit.clone()),
        ] {
            for precise in ["80633178", "886ms", "639µs", "76ns", "08:00:00.5"] {
                assert!(!text.contains(precise), "{form} shows {precise}:\n{text}");
            }
        }
        let html = render_html(&report, &Default::default());
        assert!(html.contains("started 2026-01-31T10:00:01Z"), "{html}");
        assert!(html.contains("7m 14s"), "{html}");
        assert!(render_terminal(&report).contains("4.2s"));
        assert!(junit.contains("value=\"2026-01-31T08:00:01Z\""), "{junit}");
        let json: serde_json::Value = serde_json::from_str(&render_json(&report)).unwrap();
        assert_eq!(json["started_at"], "2026-01-31T10:00:00.80633178Z");
        assert_eq!(json["phases"][0]["duration_ms"], 433_886);
    }
}
