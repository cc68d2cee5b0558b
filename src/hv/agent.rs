//! The QEMU guest agent (qemu-ga) protocol on top of [`Hypervisor::agent_command`].
//!
//! Pure protocol code: JSON requests in, typed answers out. Every agent call carries a
//! timeout (libvirt's "block forever" mode is never used), so a hung agent costs at most that
//! timeout. Guest output is untrusted: it is capped ([`ExecOpts::output_limit`]) and file reads
//! take a size limit.
//!
//! Known qemu-ga limits this module respects:
//! - a single `guest-file-write` larger than ~160 KiB raw never completes through libvirt 9.0
//!   (seen on the Debian 12 test bed: one command above ~210 KB of JSON never answers), so
//!   writes go in chunks of [`FILE_CHUNK`] bytes;
//! - `guest-exec` is asynchronous and cannot be cancelled: a command that overruns its timeout
//!   (or whose wait is cancelled, [`ExecOpts::cancel`]) may keep running in the guest;
//! - a failed transfer leaves the guest file handle open unless it is closed, so
//!   `guest-file-close` runs on every path.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::base::cancel::Cancel;
use crate::base::wait::{self, Poll};
use crate::hv::{HvError, Hypervisor};

/// Raw bytes per `guest-file-write`/`guest-file-read` call (base64 makes it 128 KiB of JSON).
pub const FILE_CHUNK: usize = 96 * 1024;
/// Default cap on the captured stdout and stderr of one command, each.
pub const DEFAULT_OUTPUT_LIMIT: usize = 1 << 20;
/// Agent timeout of single protocol calls that should answer quickly (open, write a chunk, ...).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest single `guest-exec-status` wait; the overall deadline is checked between calls.
const STATUS_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Agent timeout of one readiness probe.
const PING_TIMEOUT: Duration = Duration::from_secs(1);
const POLL_START: Duration = Duration::from_millis(20);
const POLL_MAX: Duration = Duration::from_millis(200);

/// What the guest agent says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentInfo {
    pub version: String,
    /// Commands the agent both knows and has enabled.
    pub supported: BTreeSet<String>,
}

/// Options of [`exec`].
#[derive(Debug, Clone)]
pub struct ExecOpts {
    /// Overall time limit, from starting the command to collecting its status.
    pub timeout: Duration,
    /// Bytes fed to the command's standard input.
    pub stdin: Option<Vec<u8>>,
    /// Extra environment, as `NAME=value` entries.
    pub env: Vec<String>,
    /// Bytes of stdout and of stderr kept, each; the rest is dropped and flagged.
    pub output_limit: usize,
    /// Stops waiting for the command (which may go on in the guest); by default only a caught
    /// signal does.
    pub cancel: Cancel,
}

impl Default for ExecOpts {
    fn default() -> Self {
        ExecOpts {
            timeout: Duration::from_secs(60),
            stdin: None,
            env: Vec::new(),
            output_limit: DEFAULT_OUTPUT_LIMIT,
            cancel: Cancel::new(),
        }
    }
}

impl ExecOpts {
    /// Default options with the given overall timeout.
    pub fn with_timeout(timeout: Duration) -> Self {
        ExecOpts {
            timeout,
            ..Self::default()
        }
    }

    /// These options, waiting only as long as `cancel` is not cancelled.
    pub fn cancelled_by(self, cancel: &Cancel) -> Self {
        ExecOpts {
            cancel: cancel.clone(),
            ..self
        }
    }
}

/// The result of a command run in the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// The exit status; `128 + signal` when the command was killed by a signal.
    pub exit_code: i32,
    /// The signal that killed the command, if any.
    pub signal: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Output was cut, by qemu-ga (16 MiB) or by [`ExecOpts::output_limit`].
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
}

impl ExecOutput {
    pub fn success(&self) -> bool {
        self.exit_code == 0 && self.signal.is_none()
    }

    pub fn stdout_lossy(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_lossy(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

// Wire types: what qemu-ga answers inside `{"return": ...}`.

#[derive(Deserialize)]
struct WireInfo {
    version: String,
    supported_commands: Vec<WireCommand>,
}

#[derive(Deserialize)]
struct WireCommand {
    name: String,
    enabled: bool,
}

#[derive(Deserialize)]
struct WireExecStarted {
    pid: i64,
}

#[derive(Deserialize)]
struct WireExecStatus {
    exited: bool,
    exitcode: Option<i32>,
    signal: Option<i32>,
    #[serde(rename = "out-data")]
    out_data: Option<String>,
    #[serde(rename = "err-data")]
    err_data: Option<String>,
    #[serde(rename = "out-truncated", default)]
    out_truncated: bool,
    #[serde(rename = "err-truncated", default)]
    err_truncated: bool,
}

#[derive(Deserialize)]
struct WireFileWrite {
    count: usize,
}

#[derive(Deserialize)]
struct WireFileRead {
    count: usize,
    #[serde(rename = "buf-b64")]
    buf_b64: String,
    eof: bool,
}

/// Whole seconds for libvirt's agent timeout, rounded up, at least 1.
fn timeout_secs(d: Duration) -> i32 {
    (d.as_millis().div_ceil(1000)).clamp(1, i32::MAX as u128) as i32
}

/// Send one command and decode its `return` value.
fn call<T: DeserializeOwned>(
    hv: &dyn Hypervisor,
    dom: &str,
    execute: &str,
    arguments: Option<Value>,
    timeout: Duration,
) -> Result<T> {
    let mut req = json!({ "execute": execute });
    if let Some(args) = arguments {
        req["arguments"] = args;
    }
    let raw = hv.agent_command(dom, &req.to_string(), timeout_secs(timeout))?;
    let mut resp: Value = serde_json::from_str(&raw).with_context(|| {
        format!("the guest agent of {dom} answered {execute} with invalid json")
    })?;
    if let Some(err) = resp.get("error") {
        let desc = err["desc"].as_str().unwrap_or("no description");
        bail!("the guest agent of {dom} rejected {execute}: {desc}");
    }
    let ret = resp.get_mut("return").map(Value::take).with_context(|| {
        format!("the guest agent of {dom} answered {execute} without a return value")
    })?;
    serde_json::from_value(ret)
        .with_context(|| format!("unexpected answer of the guest agent of {dom} to {execute}"))
}

/// One `guest-ping` with the given agent timeout.
pub fn ping(hv: &dyn Hypervisor, dom: &str, timeout: Duration) -> Result<()> {
    call::<Value>(hv, dom, "guest-ping", None, timeout).map(|_| ())
}

/// The agent's version and enabled commands (`guest-info`).
pub fn info(hv: &dyn Hypervisor, dom: &str) -> Result<AgentInfo> {
    let w: WireInfo = call(hv, dom, "guest-info", None, CALL_TIMEOUT)?;
    Ok(AgentInfo {
        version: w.version,
        supported: w
            .supported_commands
            .into_iter()
            .filter(|c| c.enabled)
            .map(|c| c.name)
            .collect(),
    })
}

/// Fail with an actionable message unless the agent of `dom` allows all of `commands`.
pub fn require(hv: &dyn Hypervisor, dom: &str, commands: &[&str]) -> Result<AgentInfo> {
    let info = info(hv, dom)
        .with_context(|| format!("asking the guest agent of {dom} what it supports"))?;
    let missing: Vec<&str> = commands
        .iter()
        .copied()
        .filter(|c| !info.supported.contains(*c))
        .collect();
    if !missing.is_empty() {
        bail!(
            "the guest agent of {dom} (qemu-ga {}) does not allow {}; enable {} in the guest's qemu-ga \
             configuration (allow-rpcs / block-rpcs, or --allow-rpcs / --block-rpcs on its command line)",
            info.version,
            missing.join(", "),
            if missing.len() == 1 { "it" } else { "them" },
        );
    }
    Ok(info)
}

/// A short human form of a command line for error messages.
fn describe(path: &str, args: &[&str]) -> String {
    let mut s = path.to_string();
    for a in args {
        s.push(' ');
        s.push_str(a);
    }
    const MAX: usize = 80;
    if s.chars().count() > MAX {
        let cut: String = s.chars().take(MAX).collect();
        format!("{cut}...")
    } else {
        s
    }
}

/// Decode base64 output and keep at most `limit` bytes.
fn decode_output(
    data: Option<&str>,
    limit: usize,
    truncated: bool,
    what: &str,
) -> Result<(Vec<u8>, bool)> {
    let mut bytes = match data {
        Some(s) => B64.decode(s).with_context(|| format!("decoding {what}"))?,
        None => Vec::new(),
    };
    let cut = bytes.len() > limit;
    bytes.truncate(limit);
    Ok((bytes, truncated || cut))
}

/// Run `path` with `args` in the guest and collect its exit status and output.
///
/// `path` must be absolute (qemu-ga does not search `PATH` reliably). A non-zero exit is
/// not an error: check [`ExecOutput::success`].
pub fn exec(
    hv: &dyn Hypervisor,
    dom: &str,
    path: &str,
    args: &[&str],
    opts: &ExecOpts,
) -> Result<ExecOutput> {
    let cmd = describe(path, args);
    let started = Instant::now();
    let mut arguments = json!({ "path": path, "arg": args, "capture-output": true });
    if !opts.env.is_empty() {
        arguments["env"] = json!(opts.env);
    }
    if let Some(input) = &opts.stdin {
        arguments["input-data"] = json!(B64.encode(input));
    }
    let pid = call::<WireExecStarted>(
        hv,
        dom,
        "guest-exec",
        Some(arguments),
        opts.timeout.min(CALL_TIMEOUT),
    )
    .with_context(|| format!("starting `{cmd}` on {dom}"))?
    .pid;

    let deadline = started + opts.timeout;
    let status = wait::until(
        deadline,
        Poll::backoff(POLL_START, POLL_MAX),
        &opts.cancel,
        || {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let status: WireExecStatus = call(
                hv,
                dom,
                "guest-exec-status",
                Some(json!({ "pid": pid })),
                remaining.clamp(Duration::from_secs(1), STATUS_CALL_TIMEOUT),
            )?;
            Ok(status.exited.then_some(status))
        },
    )
    .with_context(|| format!("waiting for `{cmd}` (guest pid {pid}) on {dom}"))?;
    let Some(status) = status else {
        bail!(
            "`{cmd}` on {dom} did not finish within {:?} (guest pid {pid}); the guest agent cannot \
             cancel it, so it may still be running in the guest",
            opts.timeout
        );
    };
    let (stdout, stdout_truncated) = decode_output(
        status.out_data.as_deref(),
        opts.output_limit,
        status.out_truncated,
        "stdout",
    )
    .with_context(|| format!("reading the output of `{cmd}` on {dom}"))?;
    let (stderr, stderr_truncated) = decode_output(
        status.err_data.as_deref(),
        opts.output_limit,
        status.err_truncated,
        "stderr",
    )
    .with_context(|| format!("reading the output of `{cmd}` on {dom}"))?;
    let exit_code = match (status.exitcode, status.signal) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        (None, None) => {
            bail!("the guest agent of {dom} reported `{cmd}` as exited without a status")
        }
    };
    Ok(ExecOutput {
        exit_code,
        signal: status.signal,
        stdout,
        stderr,
        stdout_truncated,
        stderr_truncated,
    })
}

/// Run a shell script in the guest: `/bin/sh -c script`.
pub fn sh(hv: &dyn Hypervisor, dom: &str, script: &str, timeout: Duration) -> Result<ExecOutput> {
    sh_opts(hv, dom, script, &ExecOpts::with_timeout(timeout))
}

/// [`sh`] with all the options of [`exec`].
pub fn sh_opts(
    hv: &dyn Hypervisor,
    dom: &str,
    script: &str,
    opts: &ExecOpts,
) -> Result<ExecOutput> {
    exec(hv, dom, "/bin/sh", &["-c", script], opts)
}

fn open_file(hv: &dyn Hypervisor, dom: &str, path: &str, mode: &str) -> Result<i64> {
    call(
        hv,
        dom,
        "guest-file-open",
        Some(json!({ "path": path, "mode": mode })),
        CALL_TIMEOUT,
    )
    .with_context(|| format!("opening {path} on {dom} (mode {mode})"))
}

fn close_file(hv: &dyn Hypervisor, dom: &str, path: &str, handle: i64) -> Result<()> {
    call::<Value>(
        hv,
        dom,
        "guest-file-close",
        Some(json!({ "handle": handle })),
        CALL_TIMEOUT,
    )
    .map(|_| ())
    .with_context(|| format!("closing {path} on {dom}"))
}

/// Run `body` on an open guest file and close it on every path. An error of `body` wins over
/// an error closing the file, which is then only logged.
fn with_file<T>(
    hv: &dyn Hypervisor,
    dom: &str,
    path: &str,
    mode: &str,
    body: impl FnOnce(i64) -> Result<T>,
) -> Result<T> {
    let handle = open_file(hv, dom, path, mode)?;
    let result = body(handle);
    let closed = close_file(hv, dom, path, handle);
    match (result, closed) {
        (Ok(v), Ok(())) => Ok(v),
        (Ok(_), Err(e)) => Err(e),
        (Err(e), Ok(())) => Err(e),
        (Err(e), Err(close_err)) => {
            tracing::warn!(vm = dom, path, cause = %format!("{close_err:#}"), "guest file handle left open");
            Err(e)
        }
    }
}

/// Write `bytes` to `path` in the guest (created or truncated), in chunks of [`FILE_CHUNK`].
/// With `mode`, the file is then `chmod`ed through `guest-exec` (qemu-ga creates files 0600).
pub fn write_file(
    hv: &dyn Hypervisor,
    dom: &str,
    path: &str,
    bytes: &[u8],
    mode: Option<u32>,
) -> Result<()> {
    with_file(hv, dom, path, "w", |handle| {
        let mut offset = 0;
        for chunk in bytes.chunks(FILE_CHUNK) {
            let args =
                json!({ "handle": handle, "buf-b64": B64.encode(chunk), "count": chunk.len() });
            let w: WireFileWrite = call(hv, dom, "guest-file-write", Some(args), CALL_TIMEOUT)
                .with_context(|| format!("writing {path} on {dom} at offset {offset}"))?;
            ensure!(
                w.count == chunk.len(),
                "short write to {path} on {dom} at offset {offset}: {} of {} bytes (guest disk full?)",
                w.count,
                chunk.len()
            );
            offset += chunk.len();
        }
        Ok(())
    })?;
    if let Some(mode) = mode {
        let mode = format!("{mode:o}");
        let out = exec(
            hv,
            dom,
            "/bin/chmod",
            &[&mode, path],
            &ExecOpts::with_timeout(CALL_TIMEOUT),
        )
        .with_context(|| format!("setting mode {mode} on {path} on {dom}"))?;
        ensure!(
            out.success(),
            "chmod {mode} {path} on {dom} failed ({}): {}",
            out.exit_code,
            out.stderr_lossy().trim()
        );
    }
    Ok(())
}

/// Read `path` from the guest; fails if it is larger than `max_bytes`.
pub fn read_file(hv: &dyn Hypervisor, dom: &str, path: &str, max_bytes: usize) -> Result<Vec<u8>> {
    with_file(hv, dom, path, "r", |handle| {
        let mut data = Vec::new();
        loop {
            // Ask for one byte more than allowed, to tell "exactly the limit" from "too big".
            let want = FILE_CHUNK.min(max_bytes + 1 - data.len());
            let args = json!({ "handle": handle, "count": want });
            let r: WireFileRead = call(hv, dom, "guest-file-read", Some(args), CALL_TIMEOUT)
                .with_context(|| format!("reading {path} on {dom} at offset {}", data.len()))?;
            let chunk = B64
                .decode(&r.buf_b64)
                .with_context(|| format!("decoding {path} from {dom}"))?;
            ensure!(
                chunk.len() == r.count && chunk.len() <= want,
                "the guest agent of {dom} returned {} bytes of {path} (announced {}, asked for {want})",
                chunk.len(),
                r.count
            );
            data.extend_from_slice(&chunk);
            ensure!(
                data.len() <= max_bytes,
                "{path} on {dom} is larger than the limit of {max_bytes} bytes"
            );
            if r.eof || chunk.is_empty() {
                return Ok(data);
            }
        }
    })
}

/// Poll `guest-ping` (1 s agent timeout) every `poll` until the agent of `dom` answers;
/// returns how long that took. Stops early if the domain does not exist, or when `cancel` is.
pub fn wait_ready(
    hv: &dyn Hypervisor,
    dom: &str,
    timeout: Duration,
    poll: Duration,
    cancel: &Cancel,
) -> Result<Duration> {
    let started = Instant::now();
    let mut last = None;
    let answered = wait::until(started + timeout, Poll::every(poll), cancel, || match ping(
        hv,
        dom,
        PING_TIMEOUT,
    ) {
        Ok(()) => Ok(Some(started.elapsed())),
        // Gone for good, or the daemon is: waiting longer cannot help, and it is not the agent.
        Err(e) if HvError::is_not_found(&e) || HvError::is_daemon_lost(&e) => {
            Err(e.context(format!("waiting for the guest agent of {dom}")))
        }
        Err(e) => {
            last = Some(e);
            Ok(None)
        }
    })?;
    answered.ok_or_else(|| {
        let msg = format!(
            "the guest agent of {dom} did not answer guest-ping within {timeout:?}; is qemu-ga \
             installed and running in the guest, with an org.qemu.guest_agent.0 channel in the \
             domain?"
        );
        match last {
            Some(e) => e.context(msg),
            None => anyhow::anyhow!(msg),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hv::fake::FakeHv;
    use std::sync::{Arc, Mutex};

    fn vm() -> FakeHv {
        let hv = FakeHv::new();
        hv.create_domain("<domain><name>db</name></domain>")
            .unwrap();
        hv
    }

    fn ok(v: Value) -> Result<Value> {
        Ok(json!({ "return": v }))
    }

    fn executes(hv: &FakeHv) -> Vec<String> {
        hv.agent_log()
            .iter()
            .map(|c| c.request["execute"].as_str().unwrap().to_string())
            .collect()
    }

    /// An agent that runs one command: it reports "still running" `running` times, then `done`.
    fn exec_agent(hv: &FakeHv, running: usize, done: Value) {
        let mut polls = 0;
        hv.set_agent(move |_, req| match req["execute"].as_str().unwrap() {
            "guest-exec" => ok(json!({ "pid": 4242 })),
            "guest-exec-status" => {
                assert_eq!(req["arguments"]["pid"], 4242);
                polls += 1;
                if polls <= running {
                    ok(json!({ "exited": false }))
                } else {
                    ok(done.clone())
                }
            }
            other => panic!("unexpected {other}"),
        });
    }

    #[test]
    fn exec_polls_until_exit_and_decodes_output() {
        let hv = vm();
        exec_agent(
            &hv,
            2,
            json!({ "exited": true, "exitcode": 3, "out-data": B64.encode("hello\n"), "err-data": B64.encode("oops") }),
        );
        let opts = ExecOpts {
            stdin: Some(b"input".to_vec()),
            env: vec!["A=1".into()],
            ..ExecOpts::default()
        };
        let out = exec(
            &hv,
            "db",
            "/usr/bin/sqlite3",
            &["/var/lib/db/prod.db", ".tables"],
            &opts,
        )
        .unwrap();
        assert_eq!(out.exit_code, 3);
        assert!(!out.success());
        assert_eq!(out.stdout_lossy(), "hello\n");
        assert_eq!(out.stderr_lossy(), "oops");
        assert!(!out.stdout_truncated && !out.stderr_truncated);
        assert_eq!(
            executes(&hv),
            [
                "guest-exec",
                "guest-exec-status",
                "guest-exec-status",
                "guest-exec-status"
            ]
        );

        let start = &hv.agent_log()[0].request["arguments"];
        assert_eq!(start["path"], "/usr/bin/sqlite3");
        assert_eq!(start["arg"], json!(["/var/lib/db/prod.db", ".tables"]));
        assert_eq!(start["capture-output"], true);
        assert_eq!(start["env"], json!(["A=1"]));
        assert_eq!(start["input-data"], B64.encode("input"));
    }

    #[test]
    fn exec_output_is_capped_and_agent_truncation_is_reported() {
        let hv = vm();
        exec_agent(
            &hv,
            0,
            json!({ "exited": true, "exitcode": 0, "out-data": B64.encode("0123456789"),
                    "err-data": B64.encode("e"), "err-truncated": true }),
        );
        let opts = ExecOpts {
            output_limit: 4,
            ..ExecOpts::default()
        };
        let out = exec(&hv, "db", "/bin/cat", &["/big"], &opts).unwrap();
        assert_eq!(out.stdout, b"0123");
        assert!(out.stdout_truncated, "cut by our limit");
        assert_eq!(out.stderr, b"e");
        assert!(out.stderr_truncated, "cut by qemu-ga");
    }

    #[test]
    fn exec_killed_by_signal_reports_shell_style_code() {
        let hv = vm();
        exec_agent(&hv, 0, json!({ "exited": true, "signal": 9 }));
        let out = sh(&hv, "db", "kill -9 $$", Duration::from_secs(5)).unwrap();
        assert_eq!((out.exit_code, out.signal), (137, Some(9)));
        assert_eq!(
            hv.agent_log()[0].request["arguments"]["arg"],
            json!(["-c", "kill -9 $$"])
        );
    }

    #[test]
    fn exec_timeout_names_vm_command_and_that_it_may_still_run() {
        let hv = vm();
        exec_agent(&hv, usize::MAX, json!(null));
        let err = sh(&hv, "db", "sleep 1000", Duration::from_millis(150)).unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("`/bin/sh -c sleep 1000` on db did not finish within 150ms"),
            "{msg}"
        );
        assert!(msg.contains("may still be running"), "{msg}");
        // Backoff from 20 ms: a 150 ms budget takes a handful of polls, not hundreds.
        let polls = executes(&hv)
            .iter()
            .filter(|e| *e == "guest-exec-status")
            .count();
        assert!((3..=8).contains(&polls), "{polls} polls");
        assert!(hv.agent_log().iter().all(|c| c.timeout_secs >= 1));
    }

    #[test]
    fn agent_level_errors_become_errors_naming_the_vm() {
        let hv = vm();
        hv.set_agent(|_, _| {
            Ok(json!({ "error": { "class": "GenericError", "desc": "Permission denied" } }))
        });
        let err = exec(&hv, "db", "/bin/true", &[], &ExecOpts::default()).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("starting `/bin/true` on db"), "{msg}");
        assert!(msg.contains("Permission denied"), "{msg}");
    }

    fn info_agent(hv: &FakeHv) {
        hv.set_agent(|_, req| {
            assert_eq!(req["execute"], "guest-info");
            ok(json!({ "version": "7.2.0", "supported_commands": [
                { "name": "guest-ping", "enabled": true, "success-response": true },
                { "name": "guest-exec", "enabled": false, "success-response": true },
                { "name": "guest-exec-status", "enabled": false, "success-response": true },
                { "name": "guest-file-open", "enabled": true, "success-response": true },
            ]}))
        });
    }

    #[test]
    fn info_counts_only_enabled_commands() {
        let hv = vm();
        info_agent(&hv);
        let info = info(&hv, "db").unwrap();
        assert_eq!(info.version, "7.2.0");
        assert_eq!(
            info.supported.iter().collect::<Vec<_>>(),
            ["guest-file-open", "guest-ping"]
        );
    }

    #[test]
    fn require_names_vm_missing_commands_and_the_fix() {
        let hv = vm();
        info_agent(&hv);
        assert!(require(&hv, "db", &["guest-ping", "guest-file-open"]).is_ok());
        let msg = format!(
            "{:#}",
            require(
                &hv,
                "db",
                &["guest-ping", "guest-exec", "guest-exec-status"]
            )
            .unwrap_err()
        );
        assert!(
            msg.starts_with(
                "the guest agent of db (qemu-ga 7.2.0) does not allow guest-exec, guest-exec-status"
            ),
            "{msg}"
        );
        assert!(msg.contains("allow-rpcs / block-rpcs"), "{msg}");
    }

    /// A file agent recording the raw sizes written; `fail_write` makes that write (1-based)
    /// fail, `fail_close` makes the close fail too.
    fn file_agent(
        hv: &FakeHv,
        fail_write: Option<usize>,
        fail_close: bool,
    ) -> Arc<Mutex<Vec<usize>>> {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let seen = sizes.clone();
        hv.set_agent(move |_, req| {
            let args = &req["arguments"];
            match req["execute"].as_str().unwrap() {
                "guest-file-open" => ok(json!(7)),
                "guest-file-write" => {
                    assert_eq!(args["handle"], 7);
                    let raw = B64.decode(args["buf-b64"].as_str().unwrap()).unwrap();
                    let mut s = seen.lock().unwrap();
                    s.push(raw.len());
                    if fail_write == Some(s.len()) {
                        bail!("Guest agent is not responding: Guest agent not available for now");
                    }
                    ok(json!({ "count": raw.len(), "eof": false }))
                }
                "guest-file-close" if fail_close => bail!("close failed"),
                "guest-file-close" => {
                    assert_eq!(args["handle"], 7);
                    ok(json!({}))
                }
                "guest-exec" => ok(json!({ "pid": 1 })),
                "guest-exec-status" => ok(json!({ "exited": true, "exitcode": 0 })),
                other => panic!("unexpected {other}"),
            }
        });
        sizes
    }

    #[test]
    fn write_file_goes_in_chunks_of_at_most_96_kib_then_closes_and_chmods() {
        let hv = vm();
        let sizes = file_agent(&hv, None, false);
        let data = vec![0xab; 2 * FILE_CHUNK + 1000];
        write_file(&hv, "db", "/etc/lab/dump.sql", &data, Some(0o644)).unwrap();
        assert_eq!(*sizes.lock().unwrap(), [FILE_CHUNK, FILE_CHUNK, 1000]);
        assert_eq!(
            executes(&hv),
            [
                "guest-file-open",
                "guest-file-write",
                "guest-file-write",
                "guest-file-write",
                "guest-file-close",
                "guest-exec",
                "guest-exec-status"
            ]
        );
        let log = hv.agent_log();
        assert_eq!(
            log[0].request["arguments"],
            json!({ "path": "/etc/lab/dump.sql", "mode": "w" })
        );
        assert_eq!(log[5].request["arguments"]["path"], "/bin/chmod");
        assert_eq!(
            log[5].request["arguments"]["arg"],
            json!(["644", "/etc/lab/dump.sql"])
        );
    }

    #[test]
    fn write_file_closes_after_a_failed_write_and_reports_the_write_error() {
        let hv = vm();
        file_agent(&hv, Some(2), true);
        let data = vec![1; 3 * FILE_CHUNK];
        let msg = format!(
            "{:#}",
            write_file(&hv, "db", "/tmp/x", &data, None).unwrap_err()
        );
        assert!(
            msg.starts_with(&format!("writing /tmp/x on db at offset {FILE_CHUNK}")),
            "{msg}"
        );
        assert!(
            !msg.contains("close failed"),
            "the close error must not hide the write error: {msg}"
        );
        assert_eq!(
            executes(&hv),
            [
                "guest-file-open",
                "guest-file-write",
                "guest-file-write",
                "guest-file-close"
            ]
        );
    }

    #[test]
    fn empty_file_is_opened_and_closed_without_writes() {
        let hv = vm();
        let sizes = file_agent(&hv, None, false);
        write_file(&hv, "db", "/tmp/empty", b"", None).unwrap();
        assert!(sizes.lock().unwrap().is_empty());
        assert_eq!(executes(&hv), ["guest-file-open", "guest-file-close"]);
    }

    /// A file agent serving `content` from handle 3 in reads of whatever size is asked.
    fn read_agent(hv: &FakeHv, content: Vec<u8>) {
        let mut pos = 0;
        hv.set_agent(move |_, req| match req["execute"].as_str().unwrap() {
            "guest-file-open" => {
                assert_eq!(req["arguments"]["mode"], "r");
                ok(json!(3))
            }
            "guest-file-read" => {
                let count = req["arguments"]["count"].as_u64().unwrap() as usize;
                assert!(count <= FILE_CHUNK);
                let end = (pos + count).min(content.len());
                let chunk = &content[pos..end];
                pos = end;
                ok(json!({ "count": chunk.len(), "buf-b64": B64.encode(chunk), "eof": pos == content.len() }))
            }
            "guest-file-close" => ok(json!({})),
            other => panic!("unexpected {other}"),
        });
    }

    #[test]
    fn read_file_reads_in_chunks_until_eof() {
        let hv = vm();
        let content: Vec<u8> = (0..FILE_CHUNK + 10).map(|i| i as u8).collect();
        read_agent(&hv, content.clone());
        assert_eq!(
            read_file(&hv, "db", "/var/log/x", 1 << 20).unwrap(),
            content
        );
        assert_eq!(
            executes(&hv),
            [
                "guest-file-open",
                "guest-file-read",
                "guest-file-read",
                "guest-file-close"
            ]
        );
    }

    #[test]
    fn read_file_over_the_limit_fails_and_still_closes() {
        let hv = vm();
        read_agent(&hv, vec![b'x'; 100]);
        let msg = format!("{:#}", read_file(&hv, "db", "/etc/passwd", 99).unwrap_err());
        assert_eq!(
            msg,
            "/etc/passwd on db is larger than the limit of 99 bytes"
        );
        assert_eq!(executes(&hv).last().unwrap(), "guest-file-close");
        // Exactly at the limit is fine.
        read_agent(&hv, vec![b'x'; 100]);
        assert_eq!(read_file(&hv, "db", "/etc/passwd", 100).unwrap().len(), 100);
    }

    #[test]
    fn wait_ready_polls_ping_with_a_one_second_timeout_until_it_answers() {
        let hv = vm();
        let mut pings = 0;
        hv.set_agent(move |dom, _| {
            pings += 1;
            if pings < 4 {
                Err(anyhow::Error::new(HvError::AgentUnavailable {
                    domain: dom.to_string(),
                    message: "QEMU guest agent is not connected".into(),
                }))
            } else {
                ok(json!({}))
            }
        });
        let took = wait_ready(
            &hv,
            "db",
            Duration::from_secs(5),
            Duration::from_millis(5),
            &Cancel::new(),
        )
        .unwrap();
        assert!(took >= Duration::from_millis(15), "{took:?}");
        let log = hv.agent_log();
        assert_eq!(log.len(), 4);
        assert!(
            log.iter()
                .all(|c| c.request["execute"] == "guest-ping" && c.timeout_secs == 1)
        );
    }

    #[test]
    fn wait_ready_times_out_naming_vm_and_wait() {
        let hv = vm();
        hv.set_agent(|dom, _| {
            Err(anyhow::Error::new(HvError::AgentUnavailable {
                domain: dom.to_string(),
                message: "not connected".into(),
            }))
        });
        let err = wait_ready(
            &hv,
            "db",
            Duration::from_millis(50),
            Duration::from_millis(10),
            &Cancel::new(),
        )
        .unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.starts_with("the guest agent of db did not answer guest-ping within 50ms"),
            "{msg}"
        );
        assert!(
            HvError::is_agent_unavailable(&err),
            "the cause stays inspectable"
        );
    }

    #[test]
    fn wait_ready_gives_up_at_once_when_the_domain_is_gone() {
        let hv = FakeHv::new();
        let err = wait_ready(
            &hv,
            "ghost",
            Duration::from_secs(60),
            Duration::from_millis(10),
            &Cancel::new(),
        )
        .unwrap_err();
        assert!(HvError::is_not_found(&err), "{err:#}");
        assert_eq!(hv.calls(), ["agent_command ghost guest-ping"]);
    }

    #[test]
    fn a_cancelled_wait_for_the_agent_stops_and_says_so() {
        let hv = vm();
        hv.set_agent(|dom, _| {
            Err(anyhow::Error::new(HvError::AgentUnavailable {
                domain: dom.to_string(),
                message: "not connected".into(),
            }))
        });
        let cancel = Cancel::new();
        cancel.interrupt(libc::SIGINT);
        let err = wait_ready(
            &hv,
            "db",
            Duration::from_secs(600),
            Duration::from_millis(250),
            &cancel,
        )
        .unwrap_err();
        let i = crate::base::cancel::Interrupted::find(&err).expect("typed");
        assert_eq!(i.signal, libc::SIGINT);
        assert!(hv.agent_log().is_empty(), "no ping after the interrupt");
    }

    #[test]
    fn a_cancelled_exec_stops_polling_and_names_the_command() {
        let hv = vm();
        exec_agent(&hv, usize::MAX, json!(null));
        let cancel = Cancel::new();
        let opts = ExecOpts {
            cancel: cancel.clone(),
            ..ExecOpts::with_timeout(Duration::from_secs(600))
        };
        let err = std::thread::scope(|s| {
            s.spawn(|| {
                // Once the command runs and was polled, call the wait off.
                while executes(&hv).len() < 3 {
                    std::thread::sleep(Duration::from_millis(5));
                }
                cancel.cancel();
            });
            exec(&hv, "db", "/bin/sleep", &["1000"], &opts).unwrap_err()
        });
        let msg = format!("{err:#}");
        assert_eq!(
            msg,
            "waiting for `/bin/sleep 1000` (guest pid 4242) on db: cancelled"
        );
        assert!(
            err.downcast_ref::<crate::base::cancel::Cancelled>()
                .is_some()
        );
    }
}
