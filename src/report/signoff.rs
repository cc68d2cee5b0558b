//! Customer sign-offs: "I saw my data", recorded from the lab page of `reclab serve`.
//!
//! A sign-off is kept twice: in the run directory (`signoffs.json`, a JSON array rewritten
//! atomically, shown on the lab page while the lab lives) and as one line of the lab's history
//! (`STATE/labs/LAB/history.jsonl`, `"kind": "signoff"`, written through [`super::history`]),
//! which outlives the run. History readers skip lines of other kinds.

use anyhow::{Context, Result, bail};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::path::Path;

use super::history::{append_line, read_text};
use super::store;
use crate::base::fs::write_atomic;

/// The file in a run directory that holds its sign-offs.
pub const SIGNOFFS_FILE: &str = "signoffs.json";
/// The schema of a sign-off line in the history.
pub const SIGNOFF_SCHEMA: &str = "reclab.signoff/1";
/// Longest name accepted, in characters.
pub const MAX_NAME: usize = 200;
/// Longest comment accepted, in characters.
pub const MAX_COMMENT: usize = 4000;

/// One sign-off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignOff {
    pub name: String,
    pub comment: String,
    pub at: Timestamp,
    /// The VM the customer looked at, if they named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm: Option<String>,
}

impl SignOff {
    /// A sign-off from form input: trims, requires a name, bounds the lengths.
    pub fn new(name: &str, comment: &str, vm: Option<&str>, at: Timestamp) -> Result<SignOff> {
        let name = name.trim();
        let comment = comment.trim();
        if name.is_empty() {
            bail!("a sign-off needs the name of the person signing");
        }
        if name.chars().count() > MAX_NAME {
            bail!("the name is longer than {MAX_NAME} characters");
        }
        if comment.chars().count() > MAX_COMMENT {
            bail!("the comment is longer than {MAX_COMMENT} characters");
        }
        Ok(SignOff {
            name: name.to_string(),
            comment: comment.to_string(),
            at,
            vm: vm
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(String::from),
        })
    }
}

/// The sign-offs of a run, oldest first (none when the file does not exist).
pub fn load(run_dir: &Path) -> Result<Vec<SignOff>> {
    let path = run_dir.join(SIGNOFFS_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .with_context(|| format!("parsing the sign-offs {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("reading the sign-offs {}", path.display())),
    }
}

/// Adds a sign-off to the run's `signoffs.json` (atomically) and to the lab's history. Callers
/// serialize concurrent calls for one run.
pub fn record(
    state_dir: &Path,
    run_dir: &Path,
    lab: &str,
    run8: &str,
    signoff: &SignOff,
) -> Result<()> {
    let mut all = load(run_dir)?;
    all.push(signoff.clone());
    let text = serde_json::to_string_pretty(&all).context("serializing the sign-offs")?;
    write_atomic(&run_dir.join(SIGNOFFS_FILE), text.as_bytes(), 0o600)
        .context("writing the sign-offs")?;
    // The run's latest report carries the sign-offs too (JSON, JUnit, HTML rewritten).
    let report_dir = store::report_dir(state_dir, lab, run8);
    let json = report_dir.join(store::REPORT_JSON);
    if json.exists() {
        let mut rep = store::read_report(&json)?;
        rep.signoffs = all.clone();
        store::write_report(&report_dir, &rep)?;
    }
    append_signoff(&store::history_path(state_dir, lab), lab, run8, signoff)
}

/// Appends a sign-off line (`"kind": "signoff"`) to a lab's history file.
pub fn append_signoff(path: &Path, lab: &str, run8: &str, signoff: &SignOff) -> Result<()> {
    let line = serde_json::json!({
        "kind": "signoff",
        "schema": SIGNOFF_SCHEMA,
        "lab": lab,
        "run": run8,
        "name": signoff.name,
        "comment": signoff.comment,
        "at": signoff.at,
        "vm": signoff.vm,
    })
    .to_string();
    append_line(path, line)
}

/// The sign-off lines of a history file, oldest first: `(run8, sign-off)`.
pub fn history_signoffs(path: &Path) -> Result<Vec<(String, SignOff)>> {
    let mut out = Vec::new();
    for line in read_text(path)?.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v["kind"] != "signoff" || v["schema"] != SIGNOFF_SCHEMA {
            continue;
        }
        if let (Some(run), Ok(s)) = (
            v["run"].as_str(),
            serde_json::from_value::<SignOff>(v.clone()),
        ) {
            out.push((run.to_string(), s));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::journal::RunDir;

    #[test]
    fn a_sign_off_goes_into_the_runs_report() {
        let state = tempfile::tempdir().unwrap();
        let run = crate::base::names::RunId("0123abcd0123abcd0123abcd0123abcd".into());
        let dir = RunDir::new(state.path(), &run);
        dir.create().unwrap();
        let report_dir = crate::report::report_dir(state.path(), "erp", "0123abcd");
        let rep = crate::report::DrillReport::new("erp", "0123abcd", Timestamp::now(), None);
        crate::report::write_report(&report_dir, &rep).unwrap();
        let so = SignOff {
            name: "Ada Customer".into(),
            comment: "invoices of last week are all there".into(),
            at: Timestamp::now(),
            vm: Some("client".into()),
        };
        record(state.path(), &dir.path, "erp", "0123abcd", &so).unwrap();
        let back = crate::report::read_report(&report_dir.join("report.json")).unwrap();
        assert_eq!(back.signoffs, vec![so]);
        let html = std::fs::read_to_string(report_dir.join("report.html")).unwrap();
        assert!(
            html.contains("Ada Customer") && html.contains("Sign-off"),
            "{html}"
        );
    }

    #[test]
    fn a_signoff_needs_a_name_and_bounded_text() {
        let at = Timestamp::UNIX_EPOCH;
        assert!(SignOff::new("  ", "ok", None, at).is_err());
        assert!(SignOff::new(&"x".repeat(MAX_NAME + 1), "", None, at).is_err());
        assert!(SignOff::new("Ann", &"x".repeat(MAX_COMMENT + 1), None, at).is_err());
        let s = SignOff::new(" Ann Smith ", " invoices of May are there ", Some(" "), at).unwrap();
        assert_eq!(s.name, "Ann Smith");
        assert_eq!(s.comment, "invoices of May are there");
        assert_eq!(s.vm, None, "a blank vm means the whole lab");
    }

    #[test]
    fn signoffs_are_kept_in_the_run_and_in_the_lab_history() {
        let state = tempfile::tempdir().unwrap();
        let dir = RunDir {
            path: state.path().join("runs").join("0123abcd"),
        };
        dir.create().unwrap();
        // A drill summary is already in the history; the sign-off is added beside it.
        let history = crate::report::history_path(state.path(), "erp");
        std::fs::create_dir_all(history.parent().unwrap()).unwrap();
        std::fs::write(
            &history,
            "{\"schema\":\"reclab.history/1\",\"lab\":\"erp\"}\n",
        )
        .unwrap();

        let first = SignOff::new(
            "Ann",
            "all invoices there",
            Some("client"),
            Timestamp::UNIX_EPOCH,
        )
        .unwrap();
        let second = SignOff::new("Bob", "", None, Timestamp::UNIX_EPOCH).unwrap();
        record(state.path(), &dir.path, "erp", "0123abcd", &first).unwrap();
        record(state.path(), &dir.path, "erp", "0123abcd", &second).unwrap();

        assert_eq!(
            load(&dir.path).unwrap(),
            vec![first.clone(), second.clone()]
        );
        let lines = std::fs::read_to_string(&history).unwrap();
        assert_eq!(lines.lines().count(), 3, "{lines}");
        assert!(lines.lines().next().unwrap().contains("reclab.history/1"));
        assert_eq!(
            history_signoffs(&history).unwrap(),
            vec![
                ("0123abcd".to_string(), first),
                ("0123abcd".to_string(), second)
            ]
        );
    }

    #[test]
    fn drill_history_readers_skip_signoff_lines() {
        let state = tempfile::tempdir().unwrap();
        let path = crate::report::history_path(state.path(), "erp");
        let drill = crate::report::DrillReport::new("erp", "0123abcd", Timestamp::UNIX_EPOCH, None);
        crate::report::append_history(&path, &drill.summary(None)).unwrap();
        let s = SignOff::new("Ann", "fine", None, Timestamp::UNIX_EPOCH).unwrap();
        append_signoff(&path, "erp", "0123abcd", &s).unwrap();
        let drills = crate::report::history(&path).unwrap();
        assert_eq!(drills.len(), 1);
        assert_eq!(drills[0].run, "0123abcd");
        assert_eq!(history_signoffs(&path).unwrap().len(), 1);
    }

    #[test]
    fn no_file_means_no_signoffs() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = RunDir {
            path: tmp.path().to_path_buf(),
        };
        assert!(load(&dir.path).unwrap().is_empty());
        assert!(
            history_signoffs(&tmp.path().join("history.jsonl"))
                .unwrap()
                .is_empty()
        );
    }
}
