//! Where a drill's reports live and how they are written and read back. The state-directory
//! layout of reports is here and nowhere else:
//!
//! ```text
//! STATE/labs/LAB/reports/RUN8/   the report files of a run (report_dir)
//! STATE/labs/LAB/history.jsonl   one line per drill and per sign-off (history_path)
//! RUN_DIR/report/                the live lab's copy, which `reclab serve` shows (run_report_dir)
//! ```
//!
//! Every file is written atomically (temporary file, then rename).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::{DrillReport, SCHEMA, render_html, render_json, render_junit, render_terminal};
use crate::base::fs::write_atomic;

/// The report file names in a report directory.
pub const REPORT_JSON: &str = "report.json";
pub const REPORT_HTML: &str = "report.html";

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
        json: dir.join(REPORT_JSON),
        junit: dir.join("junit.xml"),
        html: dir.join(REPORT_HTML),
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

/// Claims the directory of a new report `id` of `lab` (see [`report_dir`]): `id`, or `id-2`,
/// `id-3`, … when a report of that id exists already (a lab verified again, two drills that
/// failed in the same second), so that no report is ever overwritten. The directory is
/// created here, exclusively (safe against a concurrent drill); returns the id used and it.
pub fn claim_report_dir(state_dir: &Path, lab: &str, id: &str) -> Result<(String, PathBuf)> {
    let parent = report_dir(state_dir, lab, "");
    std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    let mut n = 1;
    loop {
        let claimed = match n {
            1 => id.to_string(),
            _ => format!("{id}-{n}"),
        };
        let dir = parent.join(&claimed);
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok((claimed, dir)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => n += 1,
            Err(e) => return Err(e).with_context(|| format!("creating {}", dir.display())),
        }
    }
}

/// The history file of a lab: `STATE_DIR/labs/LAB/history.jsonl`.
pub fn history_path(state_dir: &Path, lab: &str) -> PathBuf {
    state_dir.join("labs").join(lab).join("history.jsonl")
}

/// The copy of the report in a live lab's run directory: `RUN_DIR/report`.
pub fn run_report_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("report")
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD as B64;

    use super::*;
    use crate::hv::ppm::{Rgb, encode_png};
    use crate::report::tests::drill;

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
    fn a_claimed_report_directory_is_never_claimed_again() {
        let state = tempfile::tempdir().unwrap();
        let (first, a) = claim_report_dir(state.path(), "erp", "failed-1764600000").unwrap();
        let (second, b) = claim_report_dir(state.path(), "erp", "failed-1764600000").unwrap();
        let (third, c) = claim_report_dir(state.path(), "erp", "failed-1764600000").unwrap();
        assert_eq!(
            [&first[..], &second[..], &third[..]],
            [
                "failed-1764600000",
                "failed-1764600000-2",
                "failed-1764600000-3"
            ]
        );
        assert_eq!(a, report_dir(state.path(), "erp", &first));
        assert_eq!(b, report_dir(state.path(), "erp", &second));
        assert!(a.is_dir() && b.is_dir() && c.is_dir());
        // Another lab's reports are its own.
        let (other, _) = claim_report_dir(state.path(), "crm", "failed-1764600000").unwrap();
        assert_eq!(other, "failed-1764600000");
    }
}
