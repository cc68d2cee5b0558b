//! The judges: pure functions from a check command's captured output (and the restore point,
//! the dump manifest) to an [`Outcome`]. One `eval_*` per kind that runs a command.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::Value;

use super::Outcome;
use crate::base::duration::format_duration;
use crate::base::text::last_line;
use crate::hv::agent::ExecOutput;
use crate::spec::JsonExpectation;

/// Ranges and duplicates listed in a sequence message before "and N more".
const LIST_MAX: usize = 20;
/// Differing lines shown per side in a compare diff.
const DIFF_LINES: usize = 10;

pub fn eval_ping(out: &ExecOutput, host: &str) -> Outcome {
    let summary = out
        .stdout_lossy()
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .map(str::trim)
        .map(str::to_string);
    if out.success() {
        Outcome::pass(
            format!("{host} answers ping"),
            summary.unwrap_or_else(|| "it answered".into()),
        )
    } else {
        Outcome::fail(
            format!("{host} answers ping"),
            summary
                .or_else(|| last_line(&out.stderr_lossy()).map(str::to_string))
                .unwrap_or_else(|| describe_exit(out)),
        )
    }
}

/// `nc HOST PORT -e /bin/true`: exit code 0 means the connection was accepted.
pub fn eval_tcp(out: &ExecOutput, host: &str, port: u16) -> Outcome {
    let expected = format!("{host}:{port} accepts tcp connections");
    if out.success() {
        Outcome::pass(expected, "connected")
    } else {
        Outcome::fail(expected, describe_exit(out))
    }
}

/// The HTTP status in busybox `wget -S` stderr: the last `HTTP/x.y NNN` line (after redirects).
pub fn http_status(stderr: &str) -> Option<(u16, String)> {
    stderr.lines().rev().find_map(|line| {
        let at = line.find("HTTP/")?;
        let rest = &line[at..];
        let mut parts = rest.splitn(3, ' ');
        let _version = parts.next()?;
        let code: u16 = parts.next()?.trim().parse().ok()?;
        Some((code, rest.trim().to_string()))
    })
}

/// An HTTP response: status, then body contains / matches.
pub fn eval_http(
    stderr: &str,
    body: &str,
    status: u16,
    contains: Option<&str>,
    matches: Option<&str>,
) -> Outcome {
    let Some((got_status, status_line)) = http_status(stderr) else {
        return Outcome::fail(
            format!("http status {status}"),
            format!(
                "no http response: {}",
                last_line(stderr).unwrap_or("wget printed nothing")
            ),
        );
    };
    if got_status != status {
        return Outcome::fail(format!("http status {status}"), status_line)
            .detail(format!("body starts: {}", first_chars(body, 200)));
    }
    if let Some(text) = contains
        && !body.contains(text)
    {
        return Outcome::fail(
            format!("the body contains {text:?}"),
            format!("a body without it: {}", first_chars(body, 200)),
        );
    }
    if let Some(pattern) = matches {
        let re = match regex::Regex::new(pattern) {
            Ok(re) => re,
            Err(err) => return Outcome::error(format!("invalid regular expression: {err}")),
        };
        if !re.is_match(body) {
            return Outcome::fail(
                format!("the body matches /{pattern}/"),
                format!("a body that does not: {}", first_chars(body, 200)),
            );
        }
    }
    let mut expected = format!("http status {status}");
    if let Some(text) = contains {
        let _ = write!(expected, ", body contains {text:?}");
    }
    if let Some(pattern) = matches {
        let _ = write!(expected, ", body matches /{pattern}/");
    }
    Outcome::pass(expected, status_line)
}

fn first_chars(text: &str, n: usize) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > n {
        format!("{}...", flat.chars().take(n).collect::<String>())
    } else if flat.is_empty() {
        "(empty)".into()
    } else {
        flat
    }
}

/// A command: exit code, then stdout equals / matches / JSON value.
pub fn eval_exec(
    out: &ExecOutput,
    exit_code: i32,
    stdout_equals: Option<&str>,
    stdout_matches: Option<&str>,
    json: Option<&JsonExpectation>,
) -> Outcome {
    if out.exit_code != exit_code || out.signal.is_some() {
        return Outcome::fail(format!("exit code {exit_code}"), describe_exit(out));
    }
    let stdout = out.stdout_lossy();
    if let Some(want) = stdout_equals
        && chomp(&stdout) != chomp(want)
    {
        return Outcome::fail(
            format!("stdout {:?}", chomp(want)),
            format!("{:?}", chomp(&stdout)),
        );
    }
    if let Some(pattern) = stdout_matches {
        let re = match regex::Regex::new(pattern) {
            Ok(re) => re,
            Err(err) => return Outcome::error(format!("invalid regular expression: {err}")),
        };
        if !re.is_match(&stdout) {
            return Outcome::fail(
                format!("stdout matches /{pattern}/"),
                format!("{:?}", first_chars(&stdout, 200)),
            );
        }
    }
    if let Some(JsonExpectation { pointer, equals }) = json {
        let doc: Value = match serde_json::from_str(&stdout) {
            Ok(doc) => doc,
            Err(err) => {
                return Outcome::fail(
                    format!("JSON with {equals} at {pointer:?}"),
                    format!(
                        "output that is not JSON ({err}): {}",
                        first_chars(&stdout, 200)
                    ),
                );
            }
        };
        match doc.pointer(pointer) {
            None => {
                return Outcome::fail(
                    format!("{equals} at {pointer:?}"),
                    format!(
                        "nothing at {pointer:?} in {}",
                        first_chars(&doc.to_string(), 200)
                    ),
                );
            }
            Some(value) if value != equals => {
                let mut outcome =
                    Outcome::fail(format!("{equals} at {pointer:?}"), value.to_string());
                if value.to_string().trim_matches('"') == equals.to_string().trim_matches('"') {
                    outcome = outcome
                        .detail("the values look alike but differ in type (string vs number)");
                }
                return outcome;
            }
            Some(_) => {}
        }
    }
    let mut expected = format!("exit code {exit_code}");
    if let Some(want) = stdout_equals {
        let _ = write!(expected, ", stdout {:?}", chomp(want));
    }
    if let Some(pattern) = stdout_matches {
        let _ = write!(expected, ", stdout matches /{pattern}/");
    }
    if let Some(JsonExpectation { pointer, equals }) = json {
        let _ = write!(expected, ", {equals} at {pointer:?}");
    }
    Outcome::pass(expected.clone(), expected)
}

/// Numbers as compressed ranges: `[1, 2, 3, 5]` → `"1-3, 5"`, at most [`LIST_MAX`] ranges.
pub fn compress_ranges(sorted: &[i64]) -> String {
    let mut ranges: Vec<(i64, i64)> = Vec::new();
    for &n in sorted {
        match ranges.last_mut() {
            Some((_, end)) if n == *end + 1 => *end = n,
            _ => ranges.push((n, n)),
        }
    }
    let shown: Vec<String> = ranges
        .iter()
        .take(LIST_MAX)
        .map(|&(start, end)| {
            if start == end {
                start.to_string()
            } else {
                format!("{start}-{end}")
            }
        })
        .collect();
    let mut text = shown.join(", ");
    if ranges.len() > LIST_MAX {
        let _ = write!(text, " and {} more ranges", ranges.len() - LIST_MAX);
    }
    text
}

/// Integers one per line: every number from the lowest to the highest exactly once.
pub fn eval_sequence(stdout: &str) -> Outcome {
    let mut numbers: Vec<i64> = Vec::new();
    for (index, line) in stdout.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match line.parse() {
            Ok(n) => numbers.push(n),
            Err(_) => {
                return Outcome::fail(
                    "integers, one per line",
                    format!("line {} is {:?}", index + 1, first_chars(line, 80)),
                );
            }
        }
    }
    numbers.sort_unstable();
    let (Some(&low), Some(&high)) = (numbers.first(), numbers.last()) else {
        return Outcome::fail("at least one number", "no numbers");
    };
    let mut counts: BTreeMap<i64, usize> = BTreeMap::new();
    for &n in &numbers {
        *counts.entry(n).or_default() += 1;
    }
    let mut missing: Vec<i64> = Vec::new();
    let mut previous = low;
    for &n in counts.keys() {
        missing.extend(previous + 1..n);
        previous = n;
    }
    let duplicated: Vec<(i64, usize)> = counts
        .iter()
        .filter(|(_, c)| **c > 1)
        .map(|(n, c)| (*n, *c))
        .collect();
    let expected = format!("every number from {low} to {high} exactly once");
    let got = format!(
        "{} numbers, {} distinct, from {low} to {high}",
        numbers.len(),
        counts.len()
    );
    if missing.is_empty() && duplicated.is_empty() {
        return Outcome::pass(expected, got);
    }
    let mut outcome = Outcome::fail(expected, got);
    if !missing.is_empty() {
        outcome = outcome.detail(format!(
            "missing {} number{}: {}",
            missing.len(),
            if missing.len() == 1 { "" } else { "s" },
            compress_ranges(&missing)
        ));
    }
    if !duplicated.is_empty() {
        let mut list: Vec<String> = duplicated
            .iter()
            .take(LIST_MAX)
            .map(|(n, c)| format!("{n} ({c} times)"))
            .collect();
        if duplicated.len() > LIST_MAX {
            list.push(format!("and {} more", duplicated.len() - LIST_MAX));
        }
        outcome = outcome.detail(format!(
            "duplicated {} number{}: {}",
            duplicated.len(),
            if duplicated.len() == 1 { "" } else { "s" },
            list.join(", ")
        ));
    }
    outcome
}

/// Reads a timestamp: RFC 3339 (`2026-01-31T05:00:00Z`, any offset) or `YYYY-MM-DD HH:MM:SS`
/// (also with `T`, optionally with fractional seconds) read as UTC.
pub fn parse_timestamp(text: &str) -> Result<Timestamp, String> {
    let text = text.trim();
    if let Ok(ts) = text.parse::<Timestamp>() {
        return Ok(ts);
    }
    text.parse::<jiff::civil::DateTime>()
        .ok()
        .and_then(|dt| jiff::tz::TimeZone::UTC.to_timestamp(dt).ok())
        .ok_or_else(|| {
            format!(
                "{text:?} is not a timestamp (expected RFC 3339 or \"YYYY-MM-DD HH:MM:SS\" in UTC)"
            )
        })
}

fn age(from: Timestamp, to: Timestamp) -> String {
    let secs = to.as_second() - from.as_second();
    let text = format_duration(Duration::from_secs(secs.unsigned_abs()));
    if secs < 0 { format!("-{text}") } else { text }
}

/// The newest record's time must be no older than `reference - max_age` (the boundary passes).
pub fn eval_freshness(stdout: &str, reference: Timestamp, max_age: Duration) -> Outcome {
    let Some(line) = stdout.lines().map(str::trim).find(|l| !l.is_empty()) else {
        return Outcome::fail("a timestamp", "no output (an empty table prints nothing)");
    };
    let newest = match parse_timestamp(line) {
        Ok(ts) => ts,
        Err(why) => return Outcome::fail("a timestamp", why),
    };
    let Ok(oldest_ok) = jiff::SignedDuration::try_from(max_age).map(|d| reference - d) else {
        return Outcome::error("max_age is out of range");
    };
    let expected = format!(
        "newest record at or after {oldest_ok} (restore point {reference} minus {})",
        format_duration(max_age)
    );
    let got = format!(
        "newest record at {newest}, {} before the restore point",
        age(newest, reference)
    );
    let mut outcome = if newest >= oldest_ok {
        Outcome::pass(expected, got)
    } else {
        Outcome::fail(expected, got).detail(format!(
            "the data is {} staler than allowed",
            age(newest, oldest_ok)
        ))
    };
    if newest > reference {
        outcome = outcome.detail(
            "the newest record is newer than the restore point; check the restore point time and the guest clock",
        );
    }
    outcome
}

/// `sha256sum -c` output: every line `FILE: OK`; lists the files that are not.
pub fn eval_checksums(out: &ExecOutput, manifest: &str) -> Outcome {
    let stdout = out.stdout_lossy();
    let mut ok = 0usize;
    let mut failing: Vec<String> = Vec::new();
    for line in stdout.lines() {
        if line.ends_with(": OK") {
            ok += 1;
        } else if let Some((file, status)) = line.rsplit_once(": ") {
            failing.push(format!("{file} ({})", status.to_lowercase()));
        }
    }
    let stderr = out.stderr_lossy();
    let unreadable: Vec<String> = stderr
        .lines()
        .filter(|l| l.contains("can't open") || l.contains("No such file"))
        .map(|l| l.trim().to_string())
        .collect();
    let expected = format!("every file in {manifest} matches its sha256");
    if out.success() && failing.is_empty() && ok > 0 {
        return Outcome::pass(expected, format!("{ok} files OK"));
    }
    if ok == 0 && failing.is_empty() {
        return Outcome::fail(expected, describe_exit(out));
    }
    let mut outcome = Outcome::fail(
        expected,
        format!("{} of {} files fail", failing.len(), failing.len() + ok),
    );
    for file in failing.iter().take(LIST_MAX) {
        outcome = outcome.detail(format!("failing: {file}"));
    }
    if failing.len() > LIST_MAX {
        outcome = outcome.detail(format!(
            "and {} more failing files",
            failing.len() - LIST_MAX
        ));
    }
    for line in unreadable.iter().take(5) {
        outcome = outcome.detail(line.clone());
    }
    outcome
}

/// Two outputs must be equal; a difference shows a unified-style hunk of the differing lines.
pub fn eval_compare(a: &str, b: &str, a_label: &str, b_label: &str) -> Outcome {
    let expected = "both sides print the same".to_string();
    if a == b {
        let lines = a.lines().count();
        return Outcome::pass(expected, format!("both print the same {lines} lines"));
    }
    let got = format!(
        "a prints {} lines, b prints {} lines, first difference at line {}",
        a.lines().count(),
        b.lines().count(),
        first_difference(a, b) + 1
    );
    Outcome::fail(expected, got).detail(short_diff(a, b, a_label, b_label))
}

fn first_difference(a: &str, b: &str) -> usize {
    let (a, b): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    a.iter().zip(&b).take_while(|(x, y)| x == y).count()
}

/// One unified-diff hunk around the differing middle (after the common head and tail), with up
/// to 2 lines of context and at most [`DIFF_LINES`] lines per side.
pub fn short_diff(a: &str, b: &str, a_label: &str, b_label: &str) -> String {
    let a: Vec<&str> = a.lines().collect();
    let b: Vec<&str> = b.lines().collect();
    let head = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let tail = a[head..]
        .iter()
        .rev()
        .zip(b[head..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let context = head.min(2);
    let (a_mid, b_mid) = (&a[head..a.len() - tail], &b[head..b.len() - tail]);
    let after = tail.min(2);
    let mut out = format!("--- {a_label}\n+++ {b_label}\n");
    let _ = writeln!(
        out,
        "@@ -{},{} +{},{} @@",
        head - context + 1,
        context + a_mid.len() + after,
        head - context + 1,
        context + b_mid.len() + after
    );
    for line in &a[head - context..head] {
        let _ = writeln!(out, " {line}");
    }
    for (sign, side) in [('-', a_mid), ('+', b_mid)] {
        for line in side.iter().take(DIFF_LINES) {
            let _ = writeln!(out, "{sign}{line}");
        }
        if side.len() > DIFF_LINES {
            let _ = writeln!(out, "{sign}... {} more lines", side.len() - DIFF_LINES);
        }
    }
    let tail_start = a.len() - tail;
    for line in &a[tail_start..tail_start + after] {
        let _ = writeln!(out, " {line}");
    }
    out.trim_end().to_string()
}

/// The value at a dotted path (`rows.invoices`) of a manifest.
pub fn manifest_field<'a>(manifest: &'a Value, field: &str) -> Option<&'a Value> {
    field
        .split('.')
        .try_fold(manifest, |value, key| match value {
            Value::Object(map) => map.get(key),
            Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        })
}

/// A command's output must equal a manifest value (strings as they are, numbers as written).
pub fn eval_expect_from_manifest(stdout: &str, manifest: &Value, field: &str) -> Outcome {
    let Some(value) = manifest_field(manifest, field) else {
        let keys: Vec<String> = manifest
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        return Outcome::error(format!(
            "the dump manifest has no {field:?} (its keys: {})",
            keys.join(", ")
        ));
    };
    let want = match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let got = stdout.trim();
    let expected = format!("{want} (manifest {field})");
    if got == want {
        Outcome::pass(expected, got)
    } else {
        let mut outcome = Outcome::fail(
            expected,
            if got.is_empty() {
                "no output".into()
            } else {
                got.to_string()
            },
        );
        if let (Ok(w), Ok(g)) = (want.parse::<i64>(), got.parse::<i64>()) {
            outcome = outcome.detail(format!("off by {}", g - w));
        }
        outcome
    }
}

/// How a command ended, with its last line of stderr: `exit code 1: no such table`.
pub(super) fn describe_exit(out: &ExecOutput) -> String {
    let mut got = match out.signal {
        Some(sig) => format!("killed by signal {sig}"),
        None => format!("exit code {}", out.exit_code),
    };
    if let Some(line) = last_line(&out.stderr_lossy()) {
        let _ = write!(got, ": {line}");
    }
    got
}

/// Text without its trailing newlines (and carriage returns), as commands print it.
fn chomp(text: &str) -> &str {
    text.trim_end_matches(['\n', '\r'])
}

#[cfg(test)]
pub(crate) mod tests {
    use serde_json::json;

    use super::*;
    use crate::verify::Status;

    pub(crate) fn output(exit_code: i32, stdout: &str, stderr: &str) -> ExecOutput {
        ExecOutput {
            exit_code,
            signal: None,
            stdout: stdout.as_bytes().to_vec(),
            stderr: stderr.as_bytes().to_vec(),
            stdout_truncated: false,
            stderr_truncated: false,
        }
    }

    pub(crate) fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    pub(crate) fn numbers(list: impl IntoIterator<Item = i64>) -> String {
        list.into_iter().map(|n| format!("{n}\n")).collect()
    }

    // Sequences.

    #[test]
    fn a_complete_sequence_passes_in_any_order() {
        let outcome = eval_sequence("3\n1\n2\n\n4\n");
        assert_eq!(outcome.status, Status::Pass);
        assert_eq!(
            outcome.got.as_deref(),
            Some("4 numbers, 4 distinct, from 1 to 4")
        );
    }

    #[test]
    fn gaps_are_named_as_compressed_ranges() {
        let printed = numbers((100..=120).filter(|n| !(105..=107).contains(n) && *n != 110));
        let outcome = eval_sequence(&printed);
        assert_eq!(outcome.status, Status::Fail);
        assert_eq!(
            outcome.expected.as_deref(),
            Some("every number from 100 to 120 exactly once")
        );
        assert_eq!(outcome.details, ["missing 4 numbers: 105-107, 110"]);
    }

    #[test]
    fn duplicates_are_named_with_their_count() {
        let outcome = eval_sequence(&numbers([1, 2, 2, 3, 4, 4, 4, 6]));
        assert_eq!(outcome.status, Status::Fail);
        assert_eq!(
            outcome.details,
            [
                "missing 1 number: 5",
                "duplicated 2 numbers: 2 (2 times), 4 (3 times)"
            ]
        );
        assert_eq!(
            outcome.got.as_deref(),
            Some("8 numbers, 5 distinct, from 1 to 6")
        );
    }

    #[test]
    fn long_gap_lists_stop_after_twenty_ranges() {
        let every_other: Vec<i64> = (1..=60).filter(|n| n % 2 == 0).collect();
        let text = compress_ranges(&every_other);
        assert!(text.starts_with("2, 4, 6,"), "{text}");
        assert!(text.ends_with("40 and 10 more ranges"), "{text}");
    }

    #[test]
    fn a_sequence_with_garbage_or_nothing_fails() {
        let outcome = eval_sequence("1\n2\nError: no such table: invoices\n");
        assert_eq!(outcome.status, Status::Fail);
        assert_eq!(
            outcome.got.as_deref(),
            Some("line 3 is \"Error: no such table: invoices\"")
        );
        assert_eq!(eval_sequence("\n").got.as_deref(), Some("no numbers"));
    }

    // Freshness.

    #[test]
    fn freshness_passes_exactly_at_the_boundary_and_fails_one_second_past_it() {
        let point = ts("2026-01-31T08:00:00Z");
        let two_hours = Duration::from_secs(7200);
        let at_boundary = eval_freshness("2026-01-31 06:00:00\n", point, two_hours);
        assert_eq!(at_boundary.status, Status::Pass, "{at_boundary:?}");
        let past = eval_freshness("2026-01-31T05:59:59Z\n", point, two_hours);
        assert_eq!(past.status, Status::Fail);
        assert_eq!(
            past.expected.as_deref(),
            Some(
                "newest record at or after 2026-01-31T06:00:00Z (restore point 2026-01-31T08:00:00Z minus 2h)"
            )
        );
        assert_eq!(
            past.got.as_deref(),
            Some("newest record at 2026-01-31T05:59:59Z, 2h 1s before the restore point")
        );
        assert_eq!(past.details, ["the data is 1s staler than allowed"]);
    }

    #[test]
    fn freshness_reads_offsets_and_flags_data_newer_than_the_restore_point() {
        let point = ts("2026-01-31T08:00:00Z");
        let outcome = eval_freshness(
            "2026-01-31T10:30:00+02:00",
            point,
            Duration::from_secs(3600),
        );
        assert_eq!(outcome.status, Status::Pass);
        assert!(outcome.got.unwrap().contains("30m before"));
        let future = eval_freshness("2026-01-31T09:00:00Z", point, Duration::from_secs(60));
        assert_eq!(future.status, Status::Pass);
        assert!(future.details[0].contains("newer than the restore point"));
    }

    #[test]
    fn freshness_without_a_timestamp_fails() {
        let point = ts("2026-01-31T08:00:00Z");
        let hour = Duration::from_secs(3600);
        assert_eq!(eval_freshness("", point, hour).status, Status::Fail);
        let outcome = eval_freshness("yesterday", point, hour);
        assert_eq!(outcome.status, Status::Fail);
        assert!(
            outcome
                .got
                .unwrap()
                .contains("\"yesterday\" is not a timestamp")
        );
    }

    // HTTP.

    pub(crate) const WGET_OK: &str = "Connecting to app.prod.example (10.20.0.11:80)\n  HTTP/1.1 200 OK\n  Content-Type: text/html\n  \nwriting to stdout\n";

    #[test]
    fn http_passes_on_status_text_and_pattern() {
        let body = "<h1>erp-web 2.4.1</h1>\ninvoice 120\n";
        let outcome = eval_http(
            WGET_OK,
            body,
            200,
            Some("erp-web 2.4.1"),
            Some(r"invoice \d+"),
        );
        assert_eq!(outcome.status, Status::Pass, "{outcome:?}");
        assert_eq!(outcome.got.as_deref(), Some("HTTP/1.1 200 OK"));
    }

    #[test]
    fn http_fails_on_the_wrong_version_status_or_no_answer() {
        let wrong = eval_http(
            WGET_OK,
            "<h1>erp-web 2.3.9</h1>",
            200,
            Some("erp-web 2.4.1"),
            None,
        );
        assert_eq!(wrong.status, Status::Fail);
        assert_eq!(
            wrong.expected.as_deref(),
            Some("the body contains \"erp-web 2.4.1\"")
        );
        assert_eq!(
            wrong.got.as_deref(),
            Some("a body without it: <h1>erp-web 2.3.9</h1>")
        );

        let missing = eval_http(
            "  HTTP/1.1 404 Not Found\nwget: server returned error: HTTP/1.1 404 Not Found\n",
            "",
            200,
            None,
            None,
        );
        assert_eq!(missing.status, Status::Fail);
        assert_eq!(missing.got.as_deref(), Some("HTTP/1.1 404 Not Found"));

        let refused = eval_http(
            "wget: can't connect to remote host (10.20.0.11): Connection refused\n",
            "",
            200,
            None,
            None,
        );
        assert_eq!(
            refused.got.as_deref(),
            Some(
                "no http response: wget: can't connect to remote host (10.20.0.11): Connection refused"
            )
        );
        let pattern = eval_http(WGET_OK, "hello", 200, None, Some(r"^\d+$"));
        assert_eq!(pattern.status, Status::Fail);
    }

    #[test]
    fn the_status_after_a_redirect_counts() {
        let stderr = "  HTTP/1.1 302 Found\n  Location: /new\n  HTTP/1.1 200 OK\n";
        assert_eq!(http_status(stderr), Some((200, "HTTP/1.1 200 OK".into())));
    }

    // Exec.

    #[test]
    fn exec_checks_exit_code_then_stdout() {
        let out = output(0, "2.4.1\n", "");
        assert_eq!(
            eval_exec(&out, 0, Some("2.4.1"), None, None).status,
            Status::Pass
        );
        assert_eq!(
            eval_exec(&out, 0, None, Some(r"^2\.4\.\d+$"), None).status,
            Status::Fail,
            "^$ without multiline needs an exact line"
        );
        assert_eq!(
            eval_exec(&out, 0, None, Some(r"2\.4\.\d+"), None).status,
            Status::Pass
        );
        let wrong = eval_exec(&out, 0, Some("2.4.2"), None, None);
        assert_eq!(wrong.expected.as_deref(), Some("stdout \"2.4.2\""));
        assert_eq!(wrong.got.as_deref(), Some("\"2.4.1\""));
        let failed = eval_exec(
            &output(1, "", "sqlite3: unable to open database\n"),
            0,
            None,
            None,
            None,
        );
        assert_eq!(failed.status, Status::Fail);
        assert_eq!(
            failed.got.as_deref(),
            Some("exit code 1: sqlite3: unable to open database")
        );
        assert_eq!(
            eval_exec(&output(3, "", ""), 3, None, None, None).status,
            Status::Pass
        );
    }

    #[test]
    fn exec_reads_a_json_value_at_a_pointer() {
        let out = output(0, r#"[{"n": 1, "city": "Berlin"}]"#, "");
        let want = |pointer: &str, equals: Value| JsonExpectation {
            pointer: pointer.into(),
            equals,
        };
        assert_eq!(
            eval_exec(&out, 0, None, None, Some(&want("/0/n", json!(1)))).status,
            Status::Pass
        );
        let other = eval_exec(
            &out,
            0,
            None,
            None,
            Some(&want("/0/city", json!("Hamburg"))),
        );
        assert_eq!(other.status, Status::Fail);
        assert_eq!(other.got.as_deref(), Some("\"Berlin\""));
        let typed = eval_exec(&out, 0, None, None, Some(&want("/0/n", json!("1"))));
        assert_eq!(typed.status, Status::Fail);
        assert_eq!(
            typed.details,
            ["the values look alike but differ in type (string vs number)"]
        );
        let nothing = eval_exec(&out, 0, None, None, Some(&want("/1/n", json!(1))));
        assert!(nothing.got.unwrap().starts_with("nothing at \"/1/n\""));
        let not_json = eval_exec(
            &output(0, "n=1", ""),
            0,
            None,
            None,
            Some(&want("/n", json!(1))),
        );
        assert!(not_json.got.unwrap().starts_with("output that is not JSON"));
    }

    // Compare, manifests, checksums.

    #[test]
    fn compare_shows_a_short_unified_diff_of_the_first_differences() {
        let a =
            "1|Acme|Berlin\n2|Baltic|Hamburg\n3|Cedar|Munich\n4|Delta|Cologne\n5|Elbe|Dresden\n";
        let b =
            "1|Acme|Berlin\n2|Baltic|Hamburg\n3|Cedar|Muenchen\n4|Delta|Cologne\n5|Elbe|Dresden\n";
        assert_eq!(eval_compare(a, a, "a", "b").status, Status::Pass);
        let outcome = eval_compare(a, b, "a (db: image)", "b (db: dump)");
        assert_eq!(outcome.status, Status::Fail);
        assert_eq!(
            outcome.got.as_deref(),
            Some("a prints 5 lines, b prints 5 lines, first difference at line 3")
        );
        assert_eq!(
            outcome.details[0],
            "--- a (db: image)\n+++ b (db: dump)\n@@ -1,5 +1,5 @@\n 1|Acme|Berlin\n 2|Baltic|Hamburg\n-3|Cedar|Munich\n+3|Cedar|Muenchen\n 4|Delta|Cologne\n 5|Elbe|Dresden"
        );
    }

    #[test]
    fn a_diff_of_a_missing_tail_shows_only_the_removed_lines() {
        let a = numbers(1..=30);
        let b = numbers(1..=5);
        let diff = short_diff(&a, &b, "a", "b");
        assert!(
            diff.contains("@@ -4,27 +4,2 @@\n 4\n 5\n-6\n-7\n"),
            "{diff}"
        );
        assert!(diff.ends_with("-15\n-... 15 more lines"), "{diff}");
    }

    #[test]
    fn expect_from_manifest_compares_with_the_dump_manifest() {
        let manifest = json!({
            "schema": 1, "database": "erp", "rows": { "customers": 20, "invoices": 120 },
            "max_invoice_no": 120, "last_invoice_at": "2026-01-31T05:00:00Z"
        });
        assert_eq!(
            eval_expect_from_manifest("120\n", &manifest, "rows.invoices").status,
            Status::Pass
        );
        assert_eq!(
            eval_expect_from_manifest("2026-01-31T05:00:00Z\n", &manifest, "last_invoice_at")
                .status,
            Status::Pass
        );
        let short = eval_expect_from_manifest("119\n", &manifest, "rows.invoices");
        assert_eq!(short.status, Status::Fail);
        assert_eq!(
            short.expected.as_deref(),
            Some("120 (manifest rows.invoices)")
        );
        assert_eq!(short.details, ["off by -1"]);
        let unknown = eval_expect_from_manifest("1", &manifest, "rows.orders");
        assert_eq!(unknown.status, Status::Error);
    }

    #[test]
    fn checksum_failures_name_the_files() {
        let out = output(
            1,
            "erp.sql.gz: OK\nerp.manifest.json: FAILED\nextra.bin: FAILED\n",
            "sha256sum: can't open 'extra.bin': No such file or directory\nsha256sum: WARNING: 2 of 3 computed checksums did NOT match\n",
        );
        let outcome = eval_checksums(&out, "/var/backups/erp/SHA256SUMS");
        assert_eq!(outcome.status, Status::Fail);
        assert_eq!(outcome.got.as_deref(), Some("2 of 3 files fail"));
        assert_eq!(
            outcome.details,
            [
                "failing: erp.manifest.json (failed)",
                "failing: extra.bin (failed)",
                "sha256sum: can't open 'extra.bin': No such file or directory"
            ]
        );
        let good = eval_checksums(&output(0, "a: OK\nb: OK\n", ""), "/m");
        assert_eq!(
            (good.status, good.got.as_deref()),
            (Status::Pass, Some("2 files OK"))
        );
        let no_manifest = eval_checksums(
            &output(1, "", "sh: cd: can't cd to /var/backups/erp\n"),
            "/m",
        );
        assert_eq!(no_manifest.status, Status::Fail);
    }
}
