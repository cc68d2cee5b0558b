//! Verification: running the lab file's checks in the lab VMs and judging what they print.
//!
//! The judging is pure: every kind has an `eval_*` function from captured output (and the
//! restore point, the dump manifest, the screenshot bytes) to an [`Outcome`]. [`run_check`]
//! does the IO: it runs the kind's command in the VM through the guest agent (`/bin/sh -c`),
//! takes a screenshot through the hypervisor, and turns the outcome into a [`CheckResult`] with
//! its timing and the end of the output.
//!
//! Statuses: `pass`; `fail` when the lab answered and the answer is wrong (a gap in the
//! invoice numbers, a command that exits non-zero, an unreachable port); `error` when reclab
//! could not get an answer (the guest agent did not respond, the command overran its timeout,
//! output needed in full was cut, no dump manifest to compare with).
//!
//! Guest commands use only busybox applets and the commands the check names: `ping -c 3 -W 2`,
//! `nc -w 5 HOST PORT -e /bin/true` (busybox nc has no `-z`), `wget -S -q -O - URL` (headers on
//! stderr; busybox 1.35's `wget -T` crashes, so the check's timeout bounds it instead) and
//! `sha256sum -c`.
//!
//! Output capping: each of stdout and stderr keeps at most [`OUTPUT_LIMIT`] bytes
//! ([`SEQUENCE_OUTPUT_LIMIT`] for `sequence`, whose numbers are parsed, not stored). A check
//! whose verdict needs the whole output errors when it was cut; the others say so in their
//! details.

//!
//! Layout: this file holds the result model and the default checks; [`run`] the runner, [`eval`]
//! the judges of command output, [`screen`] the blank-screen judge.

pub mod eval;
pub mod run;
pub mod screen;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::spec::{CheckKind, CheckSpec, DEFAULT_CHECK_TIMEOUT};

pub use run::{run_check, run_checks};
pub use screen::eval_blank_png;

/// Bytes kept of each of a command's stdout and stderr.
pub const OUTPUT_LIMIT: usize = 64 * 1024;
/// Bytes of stdout kept for a `sequence` check (about a million six-digit numbers).
pub const SEQUENCE_OUTPUT_LIMIT: usize = 8 * 1024 * 1024;

/// A check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    Error,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Pass => "pass",
            Status::Fail => "FAIL",
            Status::Error => "ERROR",
        })
    }
}

/// The verdict of a pure evaluation, before timing and output are attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub status: Status,
    pub expected: Option<String>,
    pub got: Option<String>,
    /// One explanation per entry: the missing numbers, the failing files, the diff lines.
    pub details: Vec<String>,
}

impl Outcome {
    pub fn pass(expected: impl Into<String>, got: impl Into<String>) -> Self {
        Self::new(Status::Pass, expected, got)
    }

    pub fn fail(expected: impl Into<String>, got: impl Into<String>) -> Self {
        Self::new(Status::Fail, expected, got)
    }

    pub fn error(why: impl Into<String>) -> Self {
        Outcome {
            status: Status::Error,
            expected: None,
            got: Some(why.into()),
            details: Vec::new(),
        }
    }

    fn new(status: Status, expected: impl Into<String>, got: impl Into<String>) -> Self {
        Outcome {
            status,
            expected: Some(expected.into()),
            got: Some(got.into()),
            details: Vec::new(),
        }
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.details.push(detail.into());
        self
    }
}

/// One check's result, as the reports show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    pub name: String,
    pub vm: String,
    pub kind: String,
    pub status: Status,
    #[serde(rename = "duration_ms", with = "millis")]
    pub duration: Duration,
    pub expected: Option<String>,
    pub got: Option<String>,
    #[serde(default)]
    pub details: Vec<String>,
    /// The last lines of the command's output (stdout, then stderr), if it printed anything.
    pub output_tail: Option<String>,
    /// The PNG a screenshot check saved.
    #[serde(default)]
    pub screenshot: Option<PathBuf>,
}

/// Durations as whole milliseconds in JSON.
pub(crate) mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// What checks need besides the lab: the restore point, the dump manifests, where to save
/// screenshots.
#[derive(Debug, Clone, Default)]
pub struct CheckContext {
    /// When the restored data was taken; `freshness` measures against it (else against now).
    pub restore_point: Option<Timestamp>,
    /// The manifest of the dump restored into each VM, by VM name.
    pub manifests: BTreeMap<String, Value>,
    /// Directory for screenshot PNGs (created when needed).
    pub screenshot_dir: PathBuf,
}

/// The checks of a lab file without `[[check]]`: a heartbeat for every VM, and a screenshot of
/// every VM for which `has_screen` says it has graphics.
pub fn default_checks(vms: &[String], has_screen: &dyn Fn(&str) -> bool) -> Vec<CheckSpec> {
    let mut checks: Vec<CheckSpec> = vms
        .iter()
        .map(|vm| CheckSpec {
            name: format!("{vm}-heartbeat"),
            vm: vm.clone(),
            timeout: DEFAULT_CHECK_TIMEOUT,
            kind: CheckKind::Heartbeat,
        })
        .collect();
    checks.extend(vms.iter().filter(|vm| has_screen(vm)).map(|vm| CheckSpec {
        name: format!("{vm}-screenshot"),
        vm: vm.clone(),
        timeout: DEFAULT_CHECK_TIMEOUT,
        kind: CheckKind::Screenshot,
    }));
    checks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_written_checks_every_vm_gets_a_heartbeat_and_screens_a_screenshot() {
        let vms = ["db".to_string(), "app".to_string()];
        let checks = default_checks(&vms, &|vm| vm == "app");
        let names: Vec<(&str, &str)> = checks
            .iter()
            .map(|c| (c.name.as_str(), c.kind.name()))
            .collect();
        assert_eq!(
            names,
            [
                ("db-heartbeat", "heartbeat"),
                ("app-heartbeat", "heartbeat"),
                ("app-screenshot", "screenshot")
            ]
        );
    }
}
