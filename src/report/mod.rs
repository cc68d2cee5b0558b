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
//! Rendering is pure (`render_*`); only [`write_report`], [`append_history`] and [`history`]
//! touch the disk.

pub mod signoff;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::base::duration::format_duration;
use crate::base::fs::write_atomic;
use crate::verify::{CheckResult, Status};

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
    pub signoffs: Vec<crate::report::signoff::SignOff>,
}

/// What one VM was restored from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmRestore {
    pub vm: String,
    pub image: Option<RestoredImage>,
    pub dump: Option<RestoredDump>,
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
}

// ---------------------------------------------------------------------------------------------
// Formatting helpers.

/// A duration for people: whole seconds above a minute, tenths below.
pub fn human(d: Duration) -> String {
    if d < Duration::from_secs(60) {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format_duration(Duration::from_secs(d.as_secs()))
    }
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
    t.map(|t| t.to_string()).unwrap_or_else(|| "-".into())
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

// ---------------------------------------------------------------------------------------------
// Terminal.

/// The summary table printed at the end of a drill.
pub fn render_terminal(report: &DrillReport) -> String {
    let (passed, failed, errors) = report.counts();
    let mut out = format!(
        "drill {} (run {}): {} ({passed} passed, {failed} failed, {errors} errors)\n",
        report.lab,
        report.run,
        report.result.label()
    );
    let _ = writeln!(
        out,
        "requested moment {}; recovery time {}; data age {}",
        report
            .at
            .map(|t| t.to_string())
            .unwrap_or_else(|| "latest".into()),
        opt_human(report.recovery_time),
        opt_human_signed(report.data_age)
    );
    for error in &report.errors {
        let _ = writeln!(out, "error: {error}");
    }
    if !report.checks.is_empty() {
        out.push('\n');
        let mut rows = vec![vec![
            "CHECK".to_string(),
            "VM".into(),
            "KIND".into(),
            "RESULT".into(),
            "TIME".into(),
        ]];
        for c in &report.checks {
            rows.push(vec![
                c.name.clone(),
                c.vm.clone(),
                c.kind.clone(),
                c.status.to_string(),
                human(c.duration),
            ]);
        }
        out.push_str(&table(&rows));
        for c in report.checks.iter().filter(|c| c.status != Status::Pass) {
            let _ = writeln!(out, "\n{} {}:", c.status, c.name);
            if let Some(expected) = &c.expected {
                let _ = writeln!(out, "    expected: {expected}");
            }
            if let Some(got) = &c.got {
                let _ = writeln!(out, "    got:      {got}");
            }
            for detail in &c.details {
                out.push_str(&indent(detail, "    "));
            }
            if let Some(tail) = &c.output_tail {
                let _ = writeln!(out, "    output (end):");
                out.push_str(&indent(tail, "      "));
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// JSON.

/// The report as pretty JSON.
pub fn render_json(report: &DrillReport) -> String {
    serde_json::to_string_pretty(report).unwrap_or_else(|err| format!("{{\"error\": \"{err}\"}}"))
}

// ---------------------------------------------------------------------------------------------
// JUnit XML.

/// One `<testsuite>` for the drill, one `<testcase>` per check (class `reclab.LAB.VM`).
pub fn render_junit(report: &DrillReport) -> Result<String> {
    use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

    let mut suite = TestSuite::new(format!("reclab drill {} (run {})", report.lab, report.run));
    suite.set_time(
        Duration::try_from(report.finished_at.duration_since(report.started_at))
            .unwrap_or_default(),
    );
    suite.add_property(("run", report.run.as_str()));
    suite.add_property((
        "requested_moment",
        report
            .at
            .map(|t| t.to_string())
            .unwrap_or_else(|| "latest".into())
            .as_str(),
    ));
    suite.add_property(("result", report.result.label()));
    suite.add_property(("recovery_time", opt_human(report.recovery_time).as_str()));
    suite.add_property(("data_age", opt_human_signed(report.data_age).as_str()));
    for check in &report.checks {
        let mut status = match check.status {
            Status::Pass => TestCaseStatus::success(),
            Status::Fail => TestCaseStatus::non_success(NonSuccessKind::Failure),
            Status::Error => TestCaseStatus::non_success(NonSuccessKind::Error),
        };
        if check.status != Status::Pass {
            let message = match (&check.expected, &check.got) {
                (Some(e), Some(g)) => format!("expected {e}, got {g}"),
                (None, Some(g)) => g.clone(),
                (Some(e), None) => format!("expected {e}"),
                (None, None) => "failed".into(),
            };
            status.set_message(message);
            status.set_type(check.kind.as_str());
            let mut description = check.details.join("\n");
            if let Some(tail) = &check.output_tail {
                let _ = write!(description, "\n\noutput (end):\n{tail}");
            }
            if !description.trim().is_empty() {
                status.set_description(description.trim().to_string());
            }
        }
        let mut case = TestCase::new(check.name.as_str(), status);
        case.set_classname(format!("reclab.{}.{}", report.lab, check.vm));
        case.set_time(check.duration);
        if let Some(tail) = &check.output_tail {
            case.set_system_out(tail.as_str());
        }
        suite.add_test_case(case);
    }
    if !report.errors.is_empty() {
        let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
        status.set_message(report.errors[0].clone());
        status.set_type("drill");
        status.set_description(report.errors.join("\n"));
        let mut case = TestCase::new("drill", status);
        case.set_classname(format!("reclab.{}", report.lab));
        suite.add_test_case(case);
    }
    let mut junit = Report::new("reclab");
    junit.add_test_suite(suite);
    let xml = junit.to_string().context("serializing the junit report")?;
    Ok(drop_root_skipped(&xml))
}

/// Removes the `skipped` attribute quick-junit puts on `<testsuites>`: the Jenkins JUnit schema
/// (junit-4/junit-10 XSD) does not allow it there, and reclab never skips a check.
fn drop_root_skipped(xml: &str) -> String {
    let Some(start) = xml.find("<testsuites") else {
        return xml.to_string();
    };
    let end = xml[start..].find('>').map_or(xml.len(), |i| start + i);
    let skipped = regex::Regex::new(r#" skipped="\d+""#).expect("a valid regex");
    format!(
        "{}{}{}",
        &xml[..start],
        skipped.replace(&xml[start..end], ""),
        &xml[end..]
    )
}

// ---------------------------------------------------------------------------------------------
// HTML.

fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const CSS: &str = "
body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#1d232a;background:#f4f6f8}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:26px;margin:0 0 4px}h2{font-size:19px;margin:28px 0 10px}
.sub{color:#5a6570}
.verdict{display:inline-block;padding:6px 16px;border-radius:6px;font-weight:700;font-size:22px;color:#fff;margin:12px 0}
.verified{background:#1e7d32}.failed{background:#c62828}.error{background:#b26a00}
.figures{display:flex;gap:16px;flex-wrap:wrap}
.figure{background:#fff;border:1px solid #d8dee4;border-radius:8px;padding:12px 18px;min-width:180px}
.figure b{display:block;font-size:24px}
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #d8dee4}
th,td{text-align:left;padding:7px 10px;border-bottom:1px solid #e4e8ec;vertical-align:top}
th{background:#eef1f4;font-weight:600}
.pill{display:inline-block;min-width:52px;text-align:center;padding:2px 8px;border-radius:10px;font-weight:700;color:#fff;font-size:13px}
.pass{background:#1e7d32}.fail{background:#c62828}.err{background:#b26a00}
tr.bad td{background:#fff4f4}
pre{white-space:pre-wrap;margin:6px 0;font:13px/1.35 ui-monospace,Menlo,Consolas,monospace;background:#f6f8fa;padding:6px 8px;border-radius:4px}
.bar{height:10px;background:#4a78b5;border-radius:3px}
.shots{display:flex;flex-wrap:wrap;gap:16px}
figure{margin:0;background:#fff;border:1px solid #d8dee4;border-radius:8px;padding:8px}
figure img{max-width:480px;display:block;image-rendering:pixelated}
.errors li{color:#b71c1c}
";

/// The single-file HTML report. `screenshots` maps check names to PNG bytes.
pub fn render_html(report: &DrillReport, screenshots: &BTreeMap<String, Vec<u8>>) -> String {
    let (passed, failed, errors) = report.counts();
    let verdict_class = match report.result {
        DrillResult::Verified => "verified",
        DrillResult::Failed => "failed",
        DrillResult::Error => "error",
    };
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>reclab drill {lab} {run}: {verdict}</title><style>{CSS}</style></head><body><main>\n",
        lab = esc(&report.lab),
        run = esc(&report.run),
        verdict = report.result.label()
    );
    let _ = write!(
        h,
        "<h1>Restore drill: {}</h1><div class=\"sub\">run {} &middot; started {} &middot; finished {}</div>\n\
         <div class=\"verdict {verdict_class}\">{}</div> <span class=\"sub\">{passed} passed, {failed} failed, {errors} errors</span>\n",
        esc(&report.lab),
        esc(&report.run),
        report.started_at,
        report.finished_at,
        report.result.label()
    );
    let _ = writeln!(
        h,
        "<div class=\"figures\">\
         <div class=\"figure\">recovery time<b>{}</b><span class=\"sub\">start to verified lab</span></div>\
         <div class=\"figure\">data age<b>{}</b><span class=\"sub\">requested moment minus newest data</span></div>\
         <div class=\"figure\">requested moment<b>{}</b><span class=\"sub\">newest data {}</span></div></div>",
        esc(&report
            .recovery_time
            .map(human)
            .unwrap_or_else(|| "not reached".into())),
        esc(&opt_human_signed(report.data_age)),
        esc(&report
            .at
            .map(|t| t.to_string())
            .unwrap_or_else(|| "latest".into())),
        esc(&opt_time(report.newest_data()))
    );
    if !report.errors.is_empty() {
        h.push_str("<h2>Errors</h2><ul class=\"errors\">");
        for error in &report.errors {
            let _ = write!(h, "<li>{}</li>", esc(error));
        }
        h.push_str("</ul>\n");
    }

    if !report.signoffs.is_empty() {
        h.push_str("<h2>Sign-off</h2><ul class=\"signoffs\">");
        for so in &report.signoffs {
            let _ = write!(
                h,
                "<li><b>{}</b> at {}{}: {}</li>",
                esc(&so.name),
                esc(&so.at.to_string()),
                so.vm
                    .as_deref()
                    .map(|v| format!(" (vm {})", esc(v)))
                    .unwrap_or_default(),
                esc(&so.comment)
            );
        }
        h.push_str("</ul>\n");
    }
    h.push_str("<h2>Checks</h2><table><tr><th>result</th><th>check</th><th>vm</th><th>kind</th><th>time</th><th>expected / got</th></tr>\n");
    for c in &report.checks {
        let (class, pill) = match c.status {
            Status::Pass => ("pass", "PASS"),
            Status::Fail => ("fail", "FAIL"),
            Status::Error => ("err", "ERROR"),
        };
        let row = if c.status == Status::Pass {
            ""
        } else {
            " class=\"bad\""
        };
        let _ = write!(
            h,
            "<tr{row}><td><span class=\"pill {class}\">{pill}</span></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>",
            esc(&c.name),
            esc(&c.vm),
            esc(&c.kind),
            esc(&human(c.duration))
        );
        if let Some(expected) = &c.expected {
            let _ = write!(h, "<div><b>expected</b> {}</div>", esc(expected));
        }
        if let Some(got) = &c.got {
            let _ = write!(h, "<div><b>got</b> {}</div>", esc(got));
        }
        for detail in &c.details {
            let _ = write!(h, "<pre>{}</pre>", esc(detail));
        }
        if let Some(tail) = &c.output_tail {
            let _ = write!(
                h,
                "<details><summary>end of output</summary><pre>{}</pre></details>",
                esc(tail)
            );
        }
        h.push_str("</td></tr>\n");
    }
    h.push_str("</table>\n");

    if !screenshots.is_empty() {
        h.push_str("<h2>Screens</h2><div class=\"shots\">\n");
        for (name, png) in screenshots {
            let vm = report
                .checks
                .iter()
                .find(|c| &c.name == name)
                .map(|c| c.vm.as_str())
                .unwrap_or("");
            let _ = writeln!(
                h,
                "<figure><img alt=\"screen of {vm}\" src=\"data:image/png;base64,{}\"><figcaption>{} ({vm})</figcaption></figure>",
                B64.encode(png),
                esc(name),
                vm = esc(vm)
            );
        }
        h.push_str("</div>\n");
    }

    h.push_str("<h2>Restore point</h2><table><tr><th>vm</th><th>image</th><th>image taken</th><th>dump</th><th>dump taken</th><th>checksums</th></tr>\n");
    for r in &report.restore_points {
        let image = r.image.as_ref();
        let dump = r.dump.as_ref();
        let mut sums = Vec::new();
        if let Some(sum) = image.and_then(|i| i.checksum.as_ref()) {
            sums.push(format!("image {sum}"));
        }
        if let Some(sum) = dump.and_then(|d| d.sha256.as_ref()) {
            sums.push(format!("dump sha256 {sum}"));
        }
        let dump_text = dump
            .map(|d| match d.bytes {
                Some(bytes) => format!("{} ({bytes} bytes)", d.file),
                None => d.file.clone(),
            })
            .unwrap_or_else(|| "-".into());
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><pre>{}</pre></td></tr>",
            esc(&r.vm),
            esc(image.map(|i| i.source.as_str()).unwrap_or("-")),
            esc(&opt_time(image.and_then(|i| i.taken_at))),
            esc(&dump_text),
            esc(&opt_time(dump.and_then(|d| d.taken_at))),
            esc(&sums.join("\n"))
        );
    }
    h.push_str("</table>\n");

    let total: f64 = report
        .phases
        .iter()
        .map(|p| p.duration.as_secs_f64())
        .sum::<f64>()
        .max(0.001);
    h.push_str("<h2>Timings</h2><table><tr><th>phase</th><th>started</th><th>duration</th><th style=\"width:40%\"></th></tr>\n");
    for p in &report.phases {
        let width = (p.duration.as_secs_f64() / total * 100.0).clamp(0.5, 100.0);
        let _ = writeln!(
            h,
            "<tr{}><td>{}{}</td><td>{}</td><td>{}</td><td><div class=\"bar\" style=\"width:{width:.1}%\"></div></td></tr>",
            if p.ok { "" } else { " class=\"bad\"" },
            esc(&p.name),
            if p.ok { "" } else { " (failed)" },
            p.started_at,
            esc(&human(p.duration))
        );
    }
    h.push_str("</table>\n");
    let _ = write!(
        h,
        "<p class=\"sub\">report schema {SCHEMA}{}</p>\n</main></body></html>\n",
        report
            .lab_file
            .as_ref()
            .map(|f| format!(" &middot; lab file {}", esc(f)))
            .unwrap_or_default()
    );
    h
}

// ---------------------------------------------------------------------------------------------
// Files.

/// Paths of the files [`write_report`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportFiles {
    pub dir: PathBuf,
    pub json: PathBuf,
    pub junit: PathBuf,
    pub html: PathBuf,
    pub text: PathBuf,
}

/// Writes every form of the report into `dir` (created if needed), each file atomically.
/// Screenshots are read from the paths in the check results and embedded in the HTML.
pub fn write_report(dir: &Path, report: &DrillReport) -> Result<ReportFiles> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating the report directory {}", dir.display()))?;
    let mut screenshots = BTreeMap::new();
    for check in &report.checks {
        if let Some(path) = &check.screenshot {
            let png = std::fs::read(path)
                .with_context(|| format!("reading the screenshot {}", path.display()))?;
            screenshots.insert(check.name.clone(), png);
        }
    }
    let files = ReportFiles {
        dir: dir.to_path_buf(),
        json: dir.join("report.json"),
        junit: dir.join("junit.xml"),
        html: dir.join("report.html"),
        text: dir.join("summary.txt"),
    };
    write_atomic(&files.json, render_json(report).as_bytes(), 0o644)
        .context("writing the json report")?;
    write_atomic(&files.junit, render_junit(report)?.as_bytes(), 0o644)
        .context("writing the junit report")?;
    write_atomic(
        &files.html,
        render_html(report, &screenshots).as_bytes(),
        0o644,
    )
    .context("writing the html report")?;
    write_atomic(&files.text, render_terminal(report).as_bytes(), 0o644)
        .context("writing the summary")?;
    Ok(files)
}

/// Reads a `report.json`, refusing other schemas.
pub fn read_report(path: &Path) -> Result<DrillReport> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the report {}", path.display()))?;
    let report: DrillReport = serde_json::from_str(&text)
        .with_context(|| format!("parsing the report {}", path.display()))?;
    anyhow::ensure!(
        report.schema == SCHEMA,
        "{} has schema {:?}; this reclab reads {SCHEMA}",
        path.display(),
        report.schema
    );
    Ok(report)
}

/// Where a run's report goes: `STATE_DIR/labs/LAB/reports/RUN8`.
pub fn report_dir(state_dir: &Path, lab: &str, run: &str) -> PathBuf {
    state_dir.join("labs").join(lab).join("reports").join(run)
}

/// The history file of a lab: `STATE_DIR/labs/LAB/history.jsonl`.
pub fn history_path(state_dir: &Path, lab: &str) -> PathBuf {
    state_dir.join("labs").join(lab).join("history.jsonl")
}

/// Appends one summary line to a history file (created with its directory if needed).
pub fn append_history(path: &Path, summary: &Summary) -> Result<()> {
    use std::io::Write as _;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the history directory {}", dir.display()))?;
    }
    let mut line = serde_json::to_string(summary).context("serializing the history line")?;
    line.push('\n');
    // One write of a short line with O_APPEND keeps concurrent drills' lines whole.
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening the history file {}", path.display()))?;
    file.write_all(line.as_bytes())
        .with_context(|| format!("appending to the history file {}", path.display()))
}

/// Every summary in a history file, oldest first; no file means no history. Lines that do
/// not parse (a torn write, another schema) are skipped with a warning.
pub fn history(path: &Path) -> Result<Vec<Summary>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => {
            return Err(err).with_context(|| format!("reading the history {}", path.display()));
        }
    };
    let mut summaries = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Summary>(line) {
            Ok(s) if s.schema == HISTORY_SCHEMA => summaries.push(s),
            Ok(s) => {
                tracing::warn!(line = index + 1, schema = %s.schema, "skipping a history line of another schema")
            }
            // Other kinds of lines (sign-offs, `"kind": "signoff"`) live in the same file.
            Err(_) if line_kind(line).is_some_and(|k| k != "drill") => {}
            Err(err) => {
                tracing::warn!(line = index + 1, cause = %err, "skipping an unreadable history line")
            }
        }
    }
    Ok(summaries)
}

/// The `kind` of a history line, if it has one (drill summaries have none).
fn line_kind(line: &str) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(line)
        .ok()?
        .get("kind")?
        .as_str()
        .map(String::from)
}

fn trend(now: Option<i128>, before: Option<i128>) -> String {
    match (now, before) {
        (Some(now), Some(before)) => {
            let delta = now - before;
            let text = human(Duration::from_millis(delta.unsigned_abs() as u64));
            match delta.signum() {
                1 => format!("+{text}"),
                -1 => format!("-{text}"),
                _ => "=".into(),
            }
        }
        _ => String::new(),
    }
}

/// `reclab history LAB`: one row per drill, oldest first, with the change of recovery time and
/// data age against the previous drill that had them.
pub fn render_history(summaries: &[Summary]) -> String {
    if summaries.is_empty() {
        return "no drills recorded yet\n".into();
    }
    let mut rows = vec![vec![
        "RUN".to_string(),
        "STARTED".into(),
        "REQUESTED".into(),
        "RESULT".into(),
        "CHECKS".into(),
        "RECOVERY".into(),
        "TREND".into(),
        "DATA AGE".into(),
        "TREND".into(),
    ]];
    let mut last_recovery: Option<i128> = None;
    let mut last_age: Option<i128> = None;
    for s in summaries {
        let recovery = s.recovery_time.map(|d| d.as_millis() as i128);
        let age = s.data_age.map(|d| d.as_millis());
        rows.push(vec![
            s.run.clone(),
            s.started_at.strftime("%Y-%m-%d %H:%M").to_string(),
            s.at.map(|t| t.strftime("%Y-%m-%d %H:%M").to_string())
                .unwrap_or_else(|| "latest".into()),
            s.result.label().to_string(),
            format!("{}/{}", s.checks - s.checks_failed, s.checks),
            opt_human(s.recovery_time),
            if recovery.is_some() {
                trend(recovery, last_recovery)
            } else {
                String::new()
            },
            opt_human_signed(s.data_age),
            if age.is_some() {
                trend(age, last_age)
            } else {
                String::new()
            },
        ]);
        last_recovery = recovery.or(last_recovery);
        last_age = age.or(last_age);
    }
    table(&rows)
}

#[cfg(test)]
mod tests {
    use quick_xml::Reader;
    use quick_xml::events::Event;

    use super::*;
    use crate::hv::ppm::{Rgb, encode_png};

    fn ts(text: &str) -> Timestamp {
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
    fn drill() -> DrillReport {
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
    fn a_report_of_another_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.json");
        std::fs::write(
            &path,
            render_json(&drill()).replace("reclab.report/1", "reclab.report/9"),
        )
        .unwrap();
        let err = read_report(&path).unwrap_err();
        assert!(
            format!("{err:#}").contains("has schema \"reclab.report/9\""),
            "{err:#}"
        );
    }

    /// (testsuites tests/failures/errors, testcase names, failure messages) read back.
    fn read_junit(xml: &str) -> (Vec<(String, String)>, Vec<String>, Vec<String>) {
        let mut reader = Reader::from_str(xml);
        let mut suite_attrs = Vec::new();
        let mut cases = Vec::new();
        let mut messages = Vec::new();
        loop {
            match reader.read_event().unwrap() {
                Event::Eof => break,
                Event::Start(e) | Event::Empty(e) => {
                    let attr = |name: &str| {
                        e.attributes()
                            .flatten()
                            .find(|a| a.key.as_ref() == name)
                            .map(|a| {
                                quick_xml::escape::unescape(a.value.as_ref())
                                    .unwrap()
                                    .into_owned()
                            })
                    };
                    match e.name().as_ref() {
                        "testsuite" => {
                            for key in ["tests", "failures", "errors"] {
                                suite_attrs.push((key.to_string(), attr(key).unwrap()));
                            }
                        }
                        "testcase" => cases.push(attr("name").unwrap()),
                        "failure" | "error" => messages.push(attr("message").unwrap()),
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        (suite_attrs, cases, messages)
    }

    #[test]
    fn junit_has_one_case_per_check_with_the_right_counts_and_messages() {
        let xml = render_junit(&drill()).unwrap();
        let (suite, cases, messages) = read_junit(&xml);
        assert_eq!(
            suite,
            [
                ("tests".into(), "3".into()),
                ("failures".into(), "1".into()),
                ("errors".into(), "1".into())
            ]
        );
        assert_eq!(cases, ["db-heartbeat", "invoices-no-gaps", "app-version"]);
        assert_eq!(
            messages[0],
            "expected every number from 1 to 100 exactly once, got 99 numbers, 99 distinct, from 1 to 100"
        );
        assert!(xml.contains("classname=\"reclab.erp.db\""), "{xml}");
        assert!(xml.contains("missing 1 number: 57"), "{xml}");
    }

    #[test]
    fn a_failed_phase_is_one_more_error_case() {
        let mut report = DrillReport::new("erp", "run1", ts("2026-01-31T10:00:00Z"), None);
        report
            .errors
            .push("up: vm db did not become ready within 5m".into());
        report.finish(ts("2026-01-31T10:05:00Z"), None);
        let (suite, cases, messages) = read_junit(&render_junit(&report).unwrap());
        assert_eq!(suite[0], ("tests".into(), "1".into()));
        assert_eq!(cases, ["drill"]);
        assert_eq!(messages, ["up: vm db did not become ready within 5m"]);
    }

    #[test]
    fn html_embeds_screenshots_and_escapes_guest_text() {
        let mut report = drill();
        report.checks[0].got = Some("<script>alert(1)</script>".into());
        let png = encode_png(&Rgb {
            width: 2,
            height: 1,
            pixels: vec![0, 0, 0, 255, 255, 255],
        })
        .unwrap();
        let html = render_html(
            &report,
            &BTreeMap::from([("app-screen".to_string(), png.clone())]),
        );
        assert!(html.contains(&format!(
            "src=\"data:image/png;base64,{}\"",
            B64.encode(&png)
        )));
        assert!(
            !html.contains("<script>"),
            "guest output must not become markup"
        );
        assert!(html.contains("&lt;script&gt;"));
        assert!(html.contains("<div class=\"verdict failed\">FAILED</div>"));
        assert!(html.contains("<td>inject</td>"), "per-phase timing table");
        assert!(html.contains("prod-db@nightly"));
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "no external resources"
        );
    }

    #[test]
    fn the_terminal_summary_explains_failures() {
        let text = render_terminal(&drill());
        assert!(
            text.starts_with("drill erp (run 1a2b3c4d): FAILED (1 passed, 1 failed, 1 errors)\n"),
            "{text}"
        );
        assert!(
            text.contains("requested moment 2026-01-31T08:00:00Z; recovery time -; data age 1h\n"),
            "{text}"
        );
        assert!(
            text.contains("CHECK             VM      KIND       RESULT  TIME\n"),
            "{text}"
        );
        assert!(
            text.contains("invoices-no-gaps  db      sequence   FAIL    0.4s\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "\nFAIL invoices-no-gaps:\n    expected: every number from 1 to 100 exactly once\n"
            ),
            "{text}"
        );
        assert!(text.contains("    missing 1 number: 57\n"), "{text}");
    }

    #[test]
    fn report_files_are_written_together_with_the_screenshots_inside() {
        let dir = tempfile::tempdir().unwrap();
        let shot = dir.path().join("app-screen.png");
        let png = encode_png(&Rgb {
            width: 1,
            height: 1,
            pixels: vec![9, 9, 9],
        })
        .unwrap();
        std::fs::write(&shot, &png).unwrap();
        let mut report = drill();
        report.checks[0].screenshot = Some(shot);
        let files = write_report(&dir.path().join("report"), &report).unwrap();
        assert_eq!(read_report(&files.json).unwrap(), report);
        let html = std::fs::read_to_string(&files.html).unwrap();
        assert!(html.contains(&B64.encode(&png)));
        assert!(
            std::fs::read_to_string(&files.junit)
                .unwrap()
                .starts_with("<?xml")
        );
        assert_eq!(
            std::fs::read_to_string(&files.text).unwrap(),
            render_terminal(&report)
        );
    }

    #[test]
    fn history_keeps_every_drill_and_shows_the_trend() {
        let dir = tempfile::tempdir().unwrap();
        let path = history_path(dir.path(), "erp");
        assert!(history(&path).unwrap().is_empty(), "no file, no history");
        let mut report = drill();
        for c in &mut report.checks {
            c.status = Status::Pass;
        }
        let runs = [("r1", 115, 1), ("r2", 100, 3), ("r3", 100, 2)];
        for (run, recovery, age_hours) in runs {
            report.run = run.into();
            report.finish(
                ts("2026-01-31T10:02:10Z"),
                Some(ts("2026-01-31T10:00:00Z") + SignedDuration::from_secs(recovery)),
            );
            report.data_age = Some(SignedDuration::from_hours(age_hours));
            append_history(&path, &report.summary(Some(Path::new("/r")))).unwrap();
        }
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(&mut file, b"{\"torn\n").unwrap();
        let summaries = history(&path).unwrap();
        assert_eq!(summaries.len(), 3, "the torn line is skipped");
        assert_eq!(summaries[1].recovery_time, Some(Duration::from_secs(100)));
        let table = render_history(&summaries);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            [
                "RUN",
                "STARTED",
                "REQUESTED",
                "RESULT",
                "CHECKS",
                "RECOVERY",
                "TREND",
                "DATA",
                "AGE",
                "TREND"
            ]
        );
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            [
                "r1",
                "2026-01-31",
                "10:00",
                "2026-01-31",
                "08:00",
                "VERIFIED",
                "3/3",
                "1m",
                "55s",
                "1h"
            ]
        );
        let words = |line: &str| line.split_whitespace().collect::<Vec<&str>>().join(" ");
        assert!(
            words(lines[2]).ends_with("3/3 1m 40s -15.0s 3h +2h"),
            "{table}"
        );
        assert!(words(lines[3]).ends_with("3/3 1m 40s = 2h -1h"), "{table}");
    }
}
