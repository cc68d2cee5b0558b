//! Prometheus metrics as a textfile, for node_exporter's textfile collector.
//!
//! One gauge family per figure, one sample per lab (label `lab`), from the lab's latest drill
//! [`Summary`]:
//!
//! | metric | meaning |
//! |---|---|
//! | `reclab_last_run_timestamp_seconds` | when the last drill started (Unix seconds) |
//! | `reclab_last_run_success` | 1 if the last drill was verified, else 0 |
//! | `reclab_recovery_time_seconds` | recovery time of the last drill (absent if not verified) |
//! | `reclab_data_age_seconds` | data age of the last drill (absent if unknown; may be negative) |
//! | `reclab_checks_failed` | checks that failed or errored in the last drill |
//!
//! The file is written atomically (a temporary file in the same directory, then a rename), so
//! the collector never reads half a file. [`write`] writes exactly the labs given; [`update`]
//! replaces one lab's samples and keeps the other labs already in the file.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::base::fs::write_atomic;
use crate::report::{DrillResult, Summary};

/// The metric families, in output order: name and help text.
pub const FAMILIES: [(&str, &str); 5] = [
    (
        "reclab_last_run_timestamp_seconds",
        "Start time of the lab's last drill, in Unix seconds.",
    ),
    (
        "reclab_last_run_success",
        "1 if the lab's last drill was verified, else 0.",
    ),
    (
        "reclab_recovery_time_seconds",
        "Recovery time of the lab's last verified drill: from its start to a verified lab.",
    ),
    (
        "reclab_data_age_seconds",
        "How far the newest restored data of the lab's last drill is behind the requested moment.",
    ),
    (
        "reclab_checks_failed",
        "Checks that failed or could not be evaluated in the lab's last drill.",
    ),
];

/// One sample: metric name, the `lab` label, value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub metric: String,
    pub lab: String,
    pub value: f64,
}

/// The samples of one lab's latest drill.
pub fn samples(summary: &Summary) -> Vec<Sample> {
    let sample = |metric: &str, value: f64| Sample {
        metric: metric.to_string(),
        lab: summary.lab.clone(),
        value,
    };
    let mut out = vec![
        sample(
            "reclab_last_run_timestamp_seconds",
            summary.started_at.as_millisecond() as f64 / 1000.0,
        ),
        sample(
            "reclab_last_run_success",
            if summary.result == DrillResult::Verified {
                1.0
            } else {
                0.0
            },
        ),
    ];
    if let Some(d) = summary.recovery_time {
        out.push(sample("reclab_recovery_time_seconds", d.as_secs_f64()));
    }
    if let Some(d) = summary.data_age {
        out.push(sample("reclab_data_age_seconds", d.as_secs_f64()));
    }
    out.push(sample("reclab_checks_failed", summary.checks_failed as f64));
    out
}

/// The latest summary per lab (by start time; the later one wins a tie).
fn latest_per_lab(summaries: &[Summary]) -> BTreeMap<&str, &Summary> {
    let mut latest: BTreeMap<&str, &Summary> = BTreeMap::new();
    for s in summaries {
        match latest.get(s.lab.as_str()) {
            Some(old) if old.started_at > s.started_at => {}
            _ => {
                latest.insert(&s.lab, s);
            }
        }
    }
    latest
}

/// Renders samples in the Prometheus text exposition format (version 0.0.4): each family
/// once, with its `# HELP` and `# TYPE` lines, samples sorted by lab.
pub fn render(samples: &[Sample]) -> String {
    let mut out = String::new();
    for (name, help) in FAMILIES {
        let mut family: Vec<&Sample> = samples.iter().filter(|s| s.metric == name).collect();
        if family.is_empty() {
            continue;
        }
        family.sort_by(|a, b| a.lab.cmp(&b.lab));
        let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(out, "# TYPE {name} gauge");
        for s in family {
            let _ = writeln!(
                out,
                "{name}{{lab=\"{}\"}} {}",
                escape_label(&s.lab),
                format_value(s.value)
            );
        }
    }
    out
}

/// Writes the metrics of the latest drill of every lab in `summaries` to `path`, atomically,
/// replacing the file (labs not in `summaries` are dropped).
pub fn write(path: &Path, summaries: &[Summary]) -> Result<()> {
    let all: Vec<Sample> = latest_per_lab(summaries)
        .values()
        .flat_map(|s| samples(s))
        .collect();
    write_samples(path, &all)
}

/// Replaces the samples of `summary.lab` in the textfile at `path` and keeps the other labs'
/// samples (a missing file counts as empty). Atomic like [`write`].
pub fn update(path: &Path, summary: &Summary) -> Result<()> {
    let mut all = match std::fs::read_to_string(path) {
        Ok(text) => parse(&text)
            .with_context(|| format!("reading the existing metrics file {}", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            return Err(e).with_context(|| format!("reading the metrics file {}", path.display()));
        }
    };
    all.retain(|s| s.lab != summary.lab && FAMILIES.iter().any(|(n, _)| *n == s.metric));
    all.extend(samples(summary));
    write_samples(path, &all)
}

fn write_samples(path: &Path, samples: &[Sample]) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the metrics directory {}", dir.display()))?;
    }
    // A bare file name has an empty parent; `write_atomic` needs a directory to put its temp
    // file in.
    let path = if path.parent().is_some_and(|d| d.as_os_str().is_empty()) {
        Path::new(".").join(path)
    } else {
        path.to_path_buf()
    };
    // node_exporter runs as its own user: the file must be world-readable.
    write_atomic(&path, render(samples).as_bytes(), 0o644)
        .with_context(|| format!("writing the metrics file {}", path.display()))
}

fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

fn escape_label(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        // Rust's shortest round-trip representation is valid in the exposition format.
        format!("{v}")
    }
}

/// Parses a textfile in the exposition format back into samples: every sample line must be
/// `NAME{lab="…"} VALUE` (reclab writes no other labels and no timestamps). Comment lines are
/// checked for the `# HELP`/`# TYPE` shape; a `TYPE` must come before its family's samples
/// and be `gauge`. Used by [`update`] and by the tests.
pub fn parse(text: &str) -> Result<Vec<Sample>> {
    let mut out = Vec::new();
    let mut typed: Vec<String> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("HELP"), Some(_), _) => {}
                (Some("TYPE"), Some(name), Some(kind)) => {
                    if kind != "gauge" {
                        bail!("line {n}: {name} has type {kind:?}, expected gauge");
                    }
                    if typed.iter().any(|t| t == name) {
                        bail!("line {n}: a second TYPE line for {name}");
                    }
                    typed.push(name.to_string());
                }
                _ => bail!("line {n}: unexpected comment {line:?}"),
            }
            continue;
        }
        let (name, rest) = line
            .split_once('{')
            .with_context(|| format!("line {n}: no labels in {line:?}"))?;
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        {
            bail!("line {n}: bad metric name {name:?}");
        }
        if !typed.iter().any(|t| t == name) {
            bail!("line {n}: sample of {name} before its TYPE line");
        }
        let rest = rest
            .strip_prefix("lab=\"")
            .with_context(|| format!("line {n}: expected the label lab=\"…\""))?;
        let mut lab = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => lab.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => lab.push(c),
                    other => bail!("line {n}: bad escape {other:?} in a label value"),
                },
                Some((j, '"')) => break j,
                Some((_, c)) => lab.push(c),
                None => bail!("line {n}: unterminated label value"),
            }
        };
        let rest = rest[end + 1..]
            .strip_prefix("} ")
            .with_context(|| format!("line {n}: expected '}} ' after the label"))?;
        let value = match rest.trim() {
            "NaN" => f64::NAN,
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse::<f64>()
                .with_context(|| format!("line {n}: bad value {v:?}"))?,
        };
        out.push(Sample {
            metric: name.to_string(),
            lab,
            value,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::{SignedDuration, Timestamp};
    use std::time::Duration;

    fn summary(lab: &str, started: &str, result: DrillResult) -> Summary {
        Summary {
            schema: crate::report::HISTORY_SCHEMA.into(),
            lab: lab.into(),
            run: "0123abcd".into(),
            started_at: started.parse::<Timestamp>().unwrap(),
            at: None,
            result,
            checks: 5,
            checks_failed: if result == DrillResult::Verified {
                0
            } else {
                2
            },
            recovery_time: (result == DrillResult::Verified).then(|| Duration::from_millis(83_500)),
            data_age: Some(SignedDuration::from_secs(-90)),
            report_dir: None,
            answer: None,
        }
    }

    fn value(samples: &[Sample], metric: &str, lab: &str) -> Option<f64> {
        samples
            .iter()
            .find(|s| s.metric == metric && s.lab == lab)
            .map(|s| s.value)
    }

    #[test]
    fn latest_drill_per_lab_is_written_and_parses_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reclab.prom");
        let old = summary("erp", "2026-11-01T03:00:00Z", DrillResult::Failed);
        let new = summary("erp", "2026-11-08T03:00:00Z", DrillResult::Verified);
        let other = summary("crm", "2026-11-07T03:00:00Z", DrillResult::Error);
        write(&path, &[new.clone(), old, other]).unwrap();

        let text = std::fs::read_to_string(&path).unwrap();
        let parsed = parse(&text).unwrap();
        let ts = new.started_at.as_second() as f64;
        assert_eq!(
            value(&parsed, "reclab_last_run_timestamp_seconds", "erp"),
            Some(ts)
        );
        assert_eq!(value(&parsed, "reclab_last_run_success", "erp"), Some(1.0));
        assert_eq!(
            value(&parsed, "reclab_recovery_time_seconds", "erp"),
            Some(83.5)
        );
        assert_eq!(
            value(&parsed, "reclab_data_age_seconds", "erp"),
            Some(-90.0)
        );
        assert_eq!(value(&parsed, "reclab_checks_failed", "erp"), Some(0.0));
        assert_eq!(value(&parsed, "reclab_last_run_success", "crm"), Some(0.0));
        assert_eq!(value(&parsed, "reclab_checks_failed", "crm"), Some(2.0));
        // A drill that was not verified has no recovery time, rather than a made-up one.
        assert_eq!(value(&parsed, "reclab_recovery_time_seconds", "crm"), None);
        // Each family is announced once, before its samples.
        for (name, _) in FAMILIES {
            assert_eq!(text.matches(&format!("# TYPE {name} gauge\n")).count(), 1);
        }
        assert_eq!(parsed.len(), 9);
    }

    #[test]
    fn update_replaces_one_lab_and_keeps_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/reclab.prom");
        update(
            &path,
            &summary("crm", "2026-11-07T03:00:00Z", DrillResult::Verified),
        )
        .unwrap();
        update(
            &path,
            &summary("erp", "2026-11-07T04:00:00Z", DrillResult::Verified),
        )
        .unwrap();
        update(
            &path,
            &summary("erp", "2026-11-08T04:00:00Z", DrillResult::Failed),
        )
        .unwrap();
        let parsed = parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(value(&parsed, "reclab_last_run_success", "crm"), Some(1.0));
        assert_eq!(value(&parsed, "reclab_last_run_success", "erp"), Some(0.0));
        assert_eq!(value(&parsed, "reclab_recovery_time_seconds", "erp"), None);
        assert_eq!(
            parsed
                .iter()
                .filter(|s| s.metric == "reclab_last_run_success")
                .count(),
            2
        );
        // Nothing but the file itself is left in the directory (the temp file was renamed).
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("reclab.prom")]);
    }

    #[test]
    fn label_values_are_escaped() {
        let s = Sample {
            metric: "reclab_checks_failed".into(),
            lab: "we\"ird\\lab\nname".into(),
            value: 3.0,
        };
        let text = render(std::slice::from_ref(&s));
        assert!(text.contains(r#"{lab="we\"ird\\lab\nname"} 3"#), "{text}");
        assert_eq!(parse(&text).unwrap(), vec![s]);
    }

    #[test]
    fn parse_refuses_what_is_not_the_exposition_format() {
        for (text, why) in [
            ("reclab_checks_failed{lab=\"a\"} 1\n", "before its TYPE"),
            (
                "# TYPE reclab_checks_failed counter\nreclab_checks_failed{lab=\"a\"} 1\n",
                "expected gauge",
            ),
            (
                "# TYPE reclab_checks_failed gauge\nreclab_checks_failed{lab=\"a\"} one\n",
                "bad value",
            ),
            ("# TYPE x gauge\nx{lab=\"a} 1\n", "unterminated"),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(why), "{text:?}: {err}");
        }
    }
}
