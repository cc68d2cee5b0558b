//! A lab's history (`history.jsonl`): one line per drill (a [`Summary`]) and one per sign-off
//! (`"kind": "signoff"`, see [`super::signoff`]), appended with one short `O_APPEND` write each
//! so that concurrent writers keep their lines whole. Readers of one kind skip the others.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

use super::{HISTORY_SCHEMA, Summary, human, opt_human, opt_human_signed, table};

/// Appends one line to a history file (created with its directory if needed).
pub(super) fn append_line(path: &Path, mut line: String) -> Result<()> {
    use std::io::Write as _;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the history directory {}", dir.display()))?;
    }
    line.push('\n');
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening the history file {}", path.display()))?
        .write_all(line.as_bytes())
        .with_context(|| format!("appending to the history file {}", path.display()))
}

/// The text of a history file; no file means no text.
pub(super) fn read_text(path: &Path) -> Result<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(err) => Err(err).with_context(|| format!("reading the history {}", path.display())),
    }
}

/// Appends one summary line to a history file (created with its directory if needed).
pub fn append_history(path: &Path, summary: &Summary) -> Result<()> {
    let line = serde_json::to_string(summary).context("serializing the history line")?;
    append_line(path, line)
}

/// Every summary in a history file, oldest first; no file means no history. Lines that do
/// not parse (a torn write, another schema) are skipped with a warning.
pub fn history(path: &Path) -> Result<Vec<Summary>> {
    let text = read_text(path)?;
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
    use jiff::SignedDuration;

    use super::*;
    use crate::report::history_path;
    use crate::report::tests::{drill, ts};
    use crate::verify::Status;

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
