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

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::base::duration::format_duration;
use crate::hv::Hypervisor;
use crate::hv::agent::{self, ExecOpts, ExecOutput};
use crate::spec::{CheckKind, CheckSpec, DEFAULT_CHECK_TIMEOUT, JsonExpectation};

/// Bytes kept of each of a command's stdout and stderr.
pub const OUTPUT_LIMIT: usize = 64 * 1024;
/// Bytes of stdout kept for a `sequence` check (about a million six-digit numbers).
pub const SEQUENCE_OUTPUT_LIMIT: usize = 8 * 1024 * 1024;
/// Lines and characters of output kept in a result's `output_tail`.
const TAIL_LINES: usize = 20;
const TAIL_CHARS: usize = 2000;
/// Ranges and duplicates listed in a sequence message before "and N more".
const LIST_MAX: usize = 20;
/// Differing lines shown per side in a compare diff.
const DIFF_LINES: usize = 10;
/// Largest per-channel spread (0..=255) of a screenshot that still counts as blank.
const BLANK_SPREAD: u8 = 8;

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

// ---------------------------------------------------------------------------------------------
// The runner.

/// Runs one check in the lab and judges it. `domain_of` maps a lab VM name to its libvirt
/// domain. Never fails: problems getting an answer become a result with status `error`.
pub fn run_check(
    hv: &dyn Hypervisor,
    domain_of: &dyn Fn(&str) -> String,
    check: &CheckSpec,
    ctx: &CheckContext,
) -> CheckResult {
    let started = Instant::now();
    let mut result = CheckResult {
        name: check.name.clone(),
        vm: check.vm.clone(),
        kind: check.kind.name().to_string(),
        status: Status::Error,
        duration: Duration::ZERO,
        expected: None,
        got: None,
        details: Vec::new(),
        output_tail: None,
        screenshot: None,
    };
    let outcome = match evaluate(hv, domain_of, check, ctx, &mut result) {
        Ok(outcome) => outcome,
        Err(err) => Outcome::error(format!("{err:#}")),
    };
    result.status = outcome.status;
    result.expected = outcome.expected;
    result.got = outcome.got;
    result.details.splice(0..0, outcome.details);
    result.duration = started.elapsed();
    tracing::info!(check = %check.name, vm = %check.vm, status = %result.status, ms = result.duration.as_millis() as u64, "check done");
    result
}

/// Runs every check in order.
pub fn run_checks(
    hv: &dyn Hypervisor,
    domain_of: &dyn Fn(&str) -> String,
    checks: &[CheckSpec],
    ctx: &CheckContext,
) -> Vec<CheckResult> {
    checks
        .iter()
        .map(|check| run_check(hv, domain_of, check, ctx))
        .collect()
}

fn sh(
    hv: &dyn Hypervisor,
    domain: &str,
    script: &str,
    timeout: Duration,
    limit: usize,
) -> Result<ExecOutput> {
    agent::exec(
        hv,
        domain,
        "/bin/sh",
        &["-c", script],
        &ExecOpts {
            timeout,
            output_limit: limit,
            ..ExecOpts::default()
        },
    )
}

/// Single-quotes a word for `/bin/sh`.
fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

fn evaluate(
    hv: &dyn Hypervisor,
    domain_of: &dyn Fn(&str) -> String,
    check: &CheckSpec,
    ctx: &CheckContext,
    result: &mut CheckResult,
) -> Result<Outcome> {
    let domain = domain_of(&check.vm);
    let timeout = check.timeout;
    // Runs a script in a VM, records the output's tail and cut notes, and hands it back.
    let mut run = |vm: &str, script: &str, limit: usize| -> Result<ExecOutput> {
        let out = sh(hv, &domain_of(vm), script, timeout, limit)
            .with_context(|| format!("running the check command in {vm}"))?;
        append_tail(&mut result.output_tail, &out);
        result.details.extend(cut_notes(&out, limit));
        Ok(out)
    };
    let outcome = match &check.kind {
        CheckKind::Heartbeat => {
            agent::ping(hv, &domain, timeout)
                .with_context(|| format!("pinging the guest agent of {}", check.vm))?;
            Outcome::pass("the guest agent answers", "it answered")
        }
        CheckKind::Ping { host } => {
            let out = run(
                &check.vm,
                &format!("ping -c 3 -W 2 {}", quote(host)),
                OUTPUT_LIMIT,
            )?;
            eval_ping(&out, host)
        }
        CheckKind::Tcp { host, port } => {
            let script = format!("nc -w 5 {} {port} -e /bin/true", quote(host));
            let out = run(&check.vm, &script, OUTPUT_LIMIT)?;
            eval_tcp(&out, host, *port)
        }
        CheckKind::Http {
            url,
            status,
            contains,
            matches,
        } => {
            let out = run(
                &check.vm,
                &format!("wget -S -q -O - {}", quote(url)),
                OUTPUT_LIMIT,
            )?;
            let outcome = eval_http(
                &out.stderr_lossy(),
                &out.stdout_lossy(),
                *status,
                contains.as_deref(),
                matches.as_deref(),
            );
            if outcome.status == Status::Fail && out.stdout_truncated {
                Outcome::error(format!(
                    "the body was cut at {} KiB before the expected text was found",
                    OUTPUT_LIMIT / 1024
                ))
            } else {
                outcome
            }
        }
        CheckKind::Exec {
            command,
            exit_code,
            stdout_equals,
            stdout_matches,
            json,
        } => {
            let out = run(&check.vm, command, OUTPUT_LIMIT)?;
            let needs_all = stdout_equals.is_some() || json.is_some();
            if needs_all && out.stdout_truncated {
                return Ok(whole_output_needed());
            }
            eval_exec(
                &out,
                *exit_code,
                stdout_equals.as_deref(),
                stdout_matches.as_deref(),
                json.as_ref(),
            )
        }
        CheckKind::Sequence { command } => {
            let out = run(&check.vm, command, SEQUENCE_OUTPUT_LIMIT)?;
            match exit_failure(&out) {
                Some(failed) => failed,
                None if out.stdout_truncated => whole_output_needed(),
                None => eval_sequence(&out.stdout_lossy()),
            }
        }
        CheckKind::Freshness { command, max_age } => {
            let out = run(&check.vm, command, OUTPUT_LIMIT)?;
            if let Some(failed) = exit_failure(&out) {
                return Ok(failed);
            }
            match ctx.restore_point {
                Some(point) => eval_freshness(&out.stdout_lossy(), point, *max_age),
                None => eval_freshness(&out.stdout_lossy(), Timestamp::now(), *max_age).detail(
                    "no restore point time is known for this lab, so the age is measured against the time of the check",
                ),
            }
        }
        CheckKind::Checksums { manifest } => {
            let path = Path::new(manifest);
            let dir = path
                .parent()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "/".into());
            let file = path
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            let script = format!(
                "cd {} && sha256sum -c {}",
                quote(if dir.is_empty() { "/" } else { &dir }),
                quote(&file)
            );
            let out = run(&check.vm, &script, OUTPUT_LIMIT)?;
            eval_checksums(&out, manifest)
        }
        CheckKind::Compare { a, b } => {
            let out_a = run(&a.vm, &a.command, OUTPUT_LIMIT)?;
            let out_b = run(&b.vm, &b.command, OUTPUT_LIMIT)?;
            if let Some(failed) = exit_failure(&out_a) {
                return Ok(failed.detail(format!("side a ({}) failed", a.vm)));
            }
            if let Some(failed) = exit_failure(&out_b) {
                return Ok(failed.detail(format!("side b ({}) failed", b.vm)));
            }
            if out_a.stdout_truncated || out_b.stdout_truncated {
                return Ok(whole_output_needed().detail(
                    "compare digests instead, for example by piping both commands through sha256sum",
                ));
            }
            eval_compare(
                &out_a.stdout_lossy(),
                &out_b.stdout_lossy(),
                &format!("a ({}: {})", a.vm, a.command),
                &format!("b ({}: {})", b.vm, b.command),
            )
        }
        CheckKind::ExpectFromManifest {
            command,
            field,
            manifest_vm,
        } => {
            let Some(manifest) = ctx.manifests.get(manifest_vm) else {
                return Ok(Outcome::error(format!(
                    "no dump manifest for vm {manifest_vm}: this drill restored no dump into it"
                )));
            };
            let out = run(&check.vm, command, OUTPUT_LIMIT)?;
            match exit_failure(&out) {
                Some(failed) => failed,
                None if out.stdout_truncated => whole_output_needed(),
                None => eval_expect_from_manifest(&out.stdout_lossy(), manifest, field),
            }
        }
        CheckKind::Screenshot => {
            let png = hv
                .screenshot(&domain)
                .with_context(|| format!("taking a screenshot of {}", check.vm))?;
            let path = ctx.screenshot_dir.join(format!("{}.png", check.name));
            std::fs::create_dir_all(&ctx.screenshot_dir).with_context(|| {
                format!(
                    "creating the screenshot directory {}",
                    ctx.screenshot_dir.display()
                )
            })?;
            crate::base::fs::write_atomic(&path, &png, 0o644)
                .with_context(|| format!("saving the screenshot {}", path.display()))?;
            result.screenshot = Some(path);
            eval_blank_png(&png)
        }
    };
    Ok(outcome)
}

fn whole_output_needed() -> Outcome {
    Outcome::error(format!(
        "the output was cut at its size limit, and this check needs all of it; make the command print less (limit {} KiB, {} MiB for sequence checks)",
        OUTPUT_LIMIT / 1024,
        SEQUENCE_OUTPUT_LIMIT / (1024 * 1024)
    ))
}

/// Notes about output the cap cut off.
fn cut_notes(out: &ExecOutput, limit: usize) -> Vec<String> {
    let size = if limit >= 1024 * 1024 {
        format!("{} MiB", limit / (1024 * 1024))
    } else {
        format!("{} KiB", limit / 1024)
    };
    let mut notes = Vec::new();
    if out.stdout_truncated {
        notes.push(format!("stdout was cut at {size}"));
    }
    if out.stderr_truncated {
        notes.push(format!("stderr was cut at {size}"));
    }
    notes
}

/// Adds the last lines of a command's output to a result's tail.
fn append_tail(tail: &mut Option<String>, out: &ExecOutput) {
    let mut text = String::new();
    for (label, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        let lossy = String::from_utf8_lossy(bytes);
        if lossy.trim().is_empty() {
            continue;
        }
        let _ = writeln!(text, "[{label}]");
        text.push_str(&last_lines(&lossy, TAIL_LINES, TAIL_CHARS));
        if !text.ends_with('\n') {
            text.push('\n');
        }
    }
    if text.is_empty() {
        return;
    }
    match tail {
        Some(existing) => existing.push_str(&text),
        None => *tail = Some(text),
    }
}

/// At most `lines` lines and about `chars` characters from the end of `text`.
pub fn last_lines(text: &str, lines: usize, chars: usize) -> String {
    let all: Vec<&str> = text.trim_end_matches('\n').lines().collect();
    let start = all.len().saturating_sub(lines);
    let mut kept = all[start..].join("\n");
    let count = kept.chars().count();
    let mut cut = start > 0;
    if count > chars {
        kept = kept.chars().skip(count - chars).collect();
        cut = true;
    }
    if cut { format!("...\n{kept}") } else { kept }
}

/// A command that exited non-zero fails the check, naming its exit code and last error line.
fn exit_failure(out: &ExecOutput) -> Option<Outcome> {
    if out.success() {
        return None;
    }
    Some(Outcome::fail(
        "the command exits with 0",
        describe_exit(out),
    ))
}

fn describe_exit(out: &ExecOutput) -> String {
    let mut got = match out.signal {
        Some(sig) => format!("killed by signal {sig}"),
        None => format!("exit code {}", out.exit_code),
    };
    if let Some(line) = last_line(&out.stderr_lossy()) {
        let _ = write!(got, ": {line}");
    }
    got
}

fn last_line(text: &str) -> Option<String> {
    text.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_string)
}

/// Text without its trailing newlines (and carriage returns), as commands print it.
fn chomp(text: &str) -> &str {
    text.trim_end_matches(['\n', '\r'])
}

// ---------------------------------------------------------------------------------------------
// Pure evaluations.

/// `ping -c 3`: any answer passes.
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
                .or_else(|| last_line(&out.stderr_lossy()))
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
                last_line(stderr).unwrap_or_else(|| "wget printed nothing".into())
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
        if let Some(file) = line.strip_suffix(": OK") {
            let _ = file;
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

/// A screenshot is blank when every channel of every pixel is within [`BLANK_SPREAD`] of the
/// others (a black console, a one-color error screen).
pub fn eval_blank_png(png_bytes: &[u8]) -> Outcome {
    match png_spread(png_bytes) {
        Err(err) => Outcome::error(format!("the screenshot is not a readable PNG: {err:#}")),
        Ok((width, height, spread, color)) => {
            let expected = "a screen with content (not one color)".to_string();
            let got = format!("{width}x{height}, color spread {spread} of 255");
            if spread > BLANK_SPREAD {
                Outcome::pass(expected, got)
            } else {
                Outcome::fail(expected, got).detail(format!(
                    "every pixel is about #{:02x}{:02x}{:02x}",
                    color[0], color[1], color[2]
                ))
            }
        }
    }
}

/// Width, height, the largest per-channel spread and the first pixel's color.
fn png_spread(png_bytes: &[u8]) -> Result<(u32, u32, u8, [u8; 3])> {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().context("reading the png header")?;
    let mut buf = vec![
        0;
        reader
            .output_buffer_size()
            .ok_or_else(|| anyhow!("png too large"))?
    ];
    let info = reader.next_frame(&mut buf).context("decoding the png")?;
    let bytes = &buf[..info.buffer_size()];
    let channels = match info.color_type {
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        png::ColorType::Indexed => anyhow::bail!("indexed png was not expanded"),
    };
    let color_channels = if channels <= 2 { 1 } else { 3 };
    let mut low = [255u8; 3];
    let mut high = [0u8; 3];
    for pixel in bytes.chunks_exact(channels) {
        for c in 0..color_channels {
            low[c] = low[c].min(pixel[c]);
            high[c] = high[c].max(pixel[c]);
        }
    }
    let spread = (0..color_channels)
        .map(|c| high[c].saturating_sub(low[c]))
        .max()
        .unwrap_or(0);
    let first = bytes.get(..channels).unwrap_or(&[0, 0, 0]);
    let color = if color_channels == 1 {
        [first[0]; 3]
    } else {
        [first[0], first[1], first[2]]
    };
    Ok((info.width, info.height, spread, color))
}

/// Names of the VMs the checks run in, for the lead's wiring (which domains must be up).
pub fn vms_used(checks: &[CheckSpec]) -> BTreeSet<String> {
    let mut vms = BTreeSet::new();
    for check in checks {
        vms.insert(check.vm.clone());
        if let CheckKind::Compare { a, b } = &check.kind {
            vms.insert(a.vm.clone());
            vms.insert(b.vm.clone());
        }
    }
    vms
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use base64::Engine;
    use base64::engine::general_purpose::STANDARD as B64;
    use serde_json::json;

    use super::*;
    use crate::hv::fake::FakeHv;
    use crate::hv::ppm::{Rgb, encode_png};
    use crate::spec::CompareSide;

    fn output(exit_code: i32, stdout: &str, stderr: &str) -> ExecOutput {
        ExecOutput {
            exit_code,
            signal: None,
            stdout: stdout.as_bytes().to_vec(),
            stderr: stderr.as_bytes().to_vec(),
            stdout_truncated: false,
            stderr_truncated: false,
        }
    }

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn numbers(list: impl IntoIterator<Item = i64>) -> String {
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

    const WGET_OK: &str = "Connecting to app.prod.example (10.20.0.11:80)\n  HTTP/1.1 200 OK\n  Content-Type: text/html\n  \nwriting to stdout\n";

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

    // Compare, manifests, checksums, screenshots.

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

    fn png(width: u32, height: u32, pixel: impl Fn(u32, u32) -> [u8; 3]) -> Vec<u8> {
        let mut pixels = Vec::new();
        for y in 0..height {
            for x in 0..width {
                pixels.extend(pixel(x, y));
            }
        }
        encode_png(&Rgb {
            width,
            height,
            pixels,
        })
        .unwrap()
    }

    #[test]
    fn a_one_color_screen_is_blank_and_text_on_it_is_not() {
        let black = eval_blank_png(&png(64, 48, |_, _| [0, 0, 0]));
        assert_eq!(black.status, Status::Fail);
        assert_eq!(black.details, ["every pixel is about #000000"]);
        let noisy_blue = eval_blank_png(&png(64, 48, |x, y| [0, 0, 170 + ((x + y) % 4) as u8]));
        assert_eq!(
            noisy_blue.status,
            Status::Fail,
            "slight noise is still blank"
        );
        let console = eval_blank_png(&png(64, 48, |x, y| {
            if y == 10 && x < 30 {
                [170, 170, 170]
            } else {
                [0, 0, 0]
            }
        }));
        assert_eq!(console.status, Status::Pass);
        assert_eq!(
            console.got.as_deref(),
            Some("64x48, color spread 170 of 255")
        );
        assert_eq!(eval_blank_png(b"not a png").status, Status::Error);
    }

    // The runner, on the fake hypervisor with a scripted guest.

    /// A guest that answers `/bin/sh -c SCRIPT` with `answer(domain, script)`.
    fn scripted(
        hv: &FakeHv,
        answer: impl Fn(&str, &str) -> (i32, String, String) + Send + 'static,
    ) {
        let started: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        hv.set_agent(move |domain, req| {
            let mut started = started.lock().unwrap();
            match req["execute"].as_str().unwrap() {
                "guest-ping" => Ok(json!({ "return": {} })),
                "guest-exec" => {
                    assert_eq!(req["arguments"]["path"], "/bin/sh");
                    let script = req["arguments"]["arg"][1].as_str().unwrap().to_string();
                    started.push((domain.to_string(), script));
                    Ok(json!({ "return": { "pid": started.len() } }))
                }
                "guest-exec-status" => {
                    let pid = req["arguments"]["pid"].as_u64().unwrap() as usize;
                    let (domain, script) = &started[pid - 1];
                    let (code, stdout, stderr) = answer(domain, script);
                    Ok(json!({ "return": {
                        "exited": true, "exitcode": code,
                        "out-data": B64.encode(stdout), "err-data": B64.encode(stderr)
                    } }))
                }
                other => panic!("unexpected agent command {other}"),
            }
        });
    }

    fn lab() -> FakeHv {
        let hv = FakeHv::new();
        for vm in ["db", "app", "client"] {
            hv.create_domain(&format!("<domain><name>lab-{vm}</name></domain>"))
                .unwrap();
        }
        hv
    }

    fn domain_of(vm: &str) -> String {
        format!("lab-{vm}")
    }

    fn check(name: &str, vm: &str, kind: CheckKind) -> CheckSpec {
        CheckSpec {
            name: name.into(),
            vm: vm.into(),
            timeout: Duration::from_secs(5),
            kind,
        }
    }

    #[test]
    fn a_missing_invoice_is_named_by_the_sequence_check_run_in_the_vm() {
        let hv = lab();
        scripted(&hv, |domain, script| {
            assert_eq!(domain, "lab-db");
            assert!(script.starts_with("sqlite3 "), "{script}");
            (0, numbers((1..=100).filter(|n| *n != 57)), String::new())
        });
        let seq = check(
            "invoices-no-gaps",
            "db",
            CheckKind::Sequence {
                command: "sqlite3 /var/lib/erp/erp.db 'select no from invoices order by no'".into(),
            },
        );
        let result = run_check(&hv, &domain_of, &seq, &CheckContext::default());
        assert_eq!(result.status, Status::Fail);
        assert_eq!(result.kind, "sequence");
        assert_eq!(result.details, ["missing 1 number: 57"]);
        let tail = result.output_tail.unwrap();
        assert!(tail.starts_with("[stdout]\n...\n81\n"), "{tail}");
        assert!(tail.ends_with("100\n"), "{tail}");
    }

    #[test]
    fn output_beyond_64_kib_is_cut_and_said_so() {
        let hv = lab();
        scripted(&hv, |_, _| (0, "x".repeat(100 * 1024), String::new()));
        let loose = check(
            "big",
            "db",
            CheckKind::Exec {
                command: "cat big".into(),
                exit_code: 0,
                stdout_equals: None,
                stdout_matches: None,
                json: None,
            },
        );
        let result = run_check(&hv, &domain_of, &loose, &CheckContext::default());
        assert_eq!(result.status, Status::Pass);
        assert_eq!(result.details, ["stdout was cut at 64 KiB"]);
        assert!(
            result.output_tail.unwrap().len() < 2100,
            "the tail stays short"
        );

        let exact = check(
            "big-exact",
            "db",
            CheckKind::Exec {
                command: "cat big".into(),
                exit_code: 0,
                stdout_equals: Some("x".into()),
                stdout_matches: None,
                json: None,
            },
        );
        let result = run_check(&hv, &domain_of, &exact, &CheckContext::default());
        assert_eq!(result.status, Status::Error);
        assert!(
            result
                .got
                .unwrap()
                .starts_with("the output was cut at its size limit")
        );
    }

    #[test]
    fn network_checks_run_busybox_from_the_vm() {
        let hv = lab();
        let scripts: Arc<Mutex<Vec<String>>> = Arc::default();
        let seen = scripts.clone();
        scripted(&hv, move |_, script| {
            seen.lock().unwrap().push(script.to_string());
            if script.starts_with("wget") {
                (0, "erp-web 2.4.1\n".into(), WGET_OK.into())
            } else if script.starts_with("nc") {
                (
                    1,
                    String::new(),
                    "nc: can't connect to remote host (10.20.0.11): Connection refused\n".into(),
                )
            } else {
                (
                    0,
                    "3 packets transmitted, 3 packets received, 0% packet loss\n".into(),
                    String::new(),
                )
            }
        });
        let checks = [
            check(
                "ping",
                "client",
                CheckKind::Ping {
                    host: "db.prod.example".into(),
                },
            ),
            check(
                "port",
                "client",
                CheckKind::Tcp {
                    host: "app.prod.example".into(),
                    port: 8080,
                },
            ),
            check(
                "version",
                "client",
                CheckKind::Http {
                    url: "http://app.prod.example/cgi-bin/latest".into(),
                    status: 200,
                    contains: Some("erp-web 2.4.1".into()),
                    matches: None,
                },
            ),
        ];
        let results = run_checks(&hv, &domain_of, &checks, &CheckContext::default());
        let statuses: Vec<Status> = results.iter().map(|r| r.status).collect();
        assert_eq!(statuses, [Status::Pass, Status::Fail, Status::Pass]);
        assert_eq!(
            results[1].got.as_deref(),
            Some("exit code 1: nc: can't connect to remote host (10.20.0.11): Connection refused")
        );
        assert_eq!(
            *scripts.lock().unwrap(),
            [
                "ping -c 3 -W 2 'db.prod.example'",
                "nc -w 5 'app.prod.example' 8080 -e /bin/true",
                "wget -S -q -O - 'http://app.prod.example/cgi-bin/latest'",
            ]
        );
    }

    #[test]
    fn compare_runs_each_side_in_its_own_vm() {
        let hv = lab();
        scripted(&hv, |domain, _| {
            (
                0,
                if domain == "lab-db" { "120\n" } else { "119\n" }.into(),
                String::new(),
            )
        });
        let cmp = check(
            "same-count",
            "db",
            CheckKind::Compare {
                a: CompareSide {
                    vm: "db".into(),
                    command: "count".into(),
                },
                b: CompareSide {
                    vm: "app".into(),
                    command: "count".into(),
                },
            },
        );
        let result = run_check(&hv, &domain_of, &cmp, &CheckContext::default());
        assert_eq!(result.status, Status::Fail);
        assert_eq!(
            result.details[0],
            "--- a (db: count)\n+++ b (app: count)\n@@ -1,1 +1,1 @@\n-120\n+119"
        );
    }

    #[test]
    fn an_unanswering_agent_or_a_missing_manifest_is_an_error_not_a_failure() {
        let hv = lab();
        hv.set_agent(|_, _| {
            anyhow::bail!("Guest agent is not responding: QEMU guest agent is not connected")
        });
        let result = run_check(
            &hv,
            &domain_of,
            &check("db-agent", "db", CheckKind::Heartbeat),
            &CheckContext::default(),
        );
        assert_eq!(result.status, Status::Error);
        assert!(
            result
                .got
                .unwrap()
                .starts_with("pinging the guest agent of db: ")
        );

        let expect = check(
            "count",
            "db",
            CheckKind::ExpectFromManifest {
                command: "count".into(),
                field: "rows.invoices".into(),
                manifest_vm: "db".into(),
            },
        );
        let result = run_check(&hv, &domain_of, &expect, &CheckContext::default());
        assert_eq!(result.status, Status::Error);
        assert_eq!(
            result.got.as_deref(),
            Some("no dump manifest for vm db: this drill restored no dump into it")
        );
    }

    #[test]
    fn freshness_and_manifest_checks_use_the_drill_context() {
        let hv = lab();
        scripted(&hv, |_, script| {
            let out = if script.contains("max(created_at)") {
                "2026-01-31T05:00:00Z\n"
            } else {
                "100\n"
            };
            (0, out.into(), String::new())
        });
        let ctx = CheckContext {
            restore_point: Some(ts("2026-01-31T06:00:00Z")),
            manifests: BTreeMap::from([("db".to_string(), json!({ "rows": { "invoices": 100 } }))]),
            screenshot_dir: PathBuf::new(),
        };
        let fresh = check(
            "fresh",
            "db",
            CheckKind::Freshness {
                command: "sqlite3 db 'select max(created_at) from invoices'".into(),
                max_age: Duration::from_secs(1800),
            },
        );
        let result = run_check(&hv, &domain_of, &fresh, &ctx);
        assert_eq!(
            result.status,
            Status::Fail,
            "a dump 1h older than the restore point, 30m allowed"
        );
        assert_eq!(result.details, ["the data is 30m staler than allowed"]);
        let count = check(
            "count",
            "db",
            CheckKind::ExpectFromManifest {
                command: "count".into(),
                field: "rows.invoices".into(),
                manifest_vm: "db".into(),
            },
        );
        assert_eq!(
            run_check(&hv, &domain_of, &count, &ctx).status,
            Status::Pass
        );
    }

    #[test]
    fn a_screenshot_is_saved_for_the_report() {
        let hv = lab();
        let dir = tempfile::tempdir().unwrap();
        let ctx = CheckContext {
            screenshot_dir: dir.path().join("shots"),
            ..CheckContext::default()
        };
        let result = run_check(
            &hv,
            &domain_of,
            &check("app-screen", "app", CheckKind::Screenshot),
            &ctx,
        );
        // The fake's screen is one black and one white pixel: not blank.
        assert_eq!(result.status, Status::Pass, "{result:?}");
        let saved = result.screenshot.unwrap();
        assert_eq!(saved, dir.path().join("shots/app-screen.png"));
        assert!(std::fs::read(&saved).unwrap().starts_with(b"\x89PNG"));
    }

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
