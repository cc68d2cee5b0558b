//! A small qemu-guest-agent client for the scripts (`scripts/estate`, `scripts/estate-selftest`):
//! reclab's own agent protocol (`reclab::hv::agent`) over its libvirt backend, so the test bed
//! speaks to guests exactly as reclab does.
//!
//! ```text
//! agent URI wait TIMEOUT DOM...          poll guest-ping every 200 ms until every DOM answers;
//!                                        prints "DOM SECONDS" per domain
//! agent URI push DOM LOCAL REMOTE        write a host file into the guest
//! agent URI exec DOM [-t S] CMD ARG...   run CMD (absolute path) in the guest (timeout S seconds,
//!                                        default 60); passes stdout, stderr and the exit code
//!                                        through
//! agent URI cat DOM REMOTE               print a guest file
//! agent URI set-time DOM EPOCH_SECONDS   set the guest's clock (guest-set-time; the agent also
//!                                        writes it to the guest's RTC)
//! ```
//!
//! Exit codes: that of the command for `exec`, 0 on success otherwise, 1 when the agent fails,
//! 2 on a usage error. Built by `scripts/estate` (`cargo build --release --example agent`).

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use reclab::base::cancel::Cancel;
use reclab::hv::Hypervisor;
use reclab::hv::agent::{self, ExecOpts};
use reclab::hv::libvirt::LibvirtHv;

const USAGE: &str = "usage: agent URI wait TIMEOUT DOM...
       agent URI push DOM LOCAL REMOTE
       agent URI exec DOM [-t SECONDS] CMD ARG...
       agent URI cat DOM REMOTE
       agent URI set-time DOM EPOCH_SECONDS";

/// Poll interval of `wait`.
const POLL: Duration = Duration::from_millis(200);
/// qemu-ga caps captured output at 16 MiB; keep all of it.
const OUTPUT_LIMIT: usize = 16 << 20;
/// Largest file `cat` prints.
const CAT_LIMIT: usize = 1 << 30;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(code) => code,
        Err(e) if e.is::<Usage>() => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("agent: {e:#}");
            ExitCode::from(1)
        }
    }
}

#[derive(Debug)]
struct Usage;

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("usage")
    }
}

impl std::error::Error for Usage {}

fn seconds(text: &str) -> Result<Duration> {
    let s: f64 = text
        .parse()
        .with_context(|| format!("'{text}' is not a number of seconds"))?;
    Duration::try_from_secs_f64(s).with_context(|| format!("'{text}' is not a number of seconds"))
}

fn run(args: &[String]) -> Result<ExitCode> {
    let [uri, command, rest @ ..] = args else {
        return Err(Usage.into());
    };
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    match (command.as_str(), rest.as_slice()) {
        ("wait", [timeout, doms @ ..]) if !doms.is_empty() => wait(uri, seconds(timeout)?, doms),
        ("push", [dom, local, remote]) => {
            let bytes = std::fs::read(local).with_context(|| format!("cannot read {local}"))?;
            let hv = LibvirtHv::open(uri)?;
            agent::write_file(&hv, dom, remote, &bytes, None)
                .with_context(|| format!("{dom}: writing {remote}"))?;
            Ok(ExitCode::SUCCESS)
        }
        ("cat", [dom, remote]) => {
            let hv = LibvirtHv::open(uri)?;
            let data = agent::read_file(&hv, dom, remote, CAT_LIMIT)
                .with_context(|| format!("{dom}: reading {remote}"))?;
            std::io::stdout().write_all(&data)?;
            Ok(ExitCode::SUCCESS)
        }
        ("set-time", [dom, epoch]) => {
            let secs: i64 = epoch
                .parse()
                .with_context(|| format!("'{epoch}' is not a number of seconds since the epoch"))?;
            let nanos = secs
                .checked_mul(1_000_000_000)
                .with_context(|| format!("{epoch} s since the epoch is out of range"))?;
            let hv = LibvirtHv::open(uri)?;
            let req =
                serde_json::json!({ "execute": "guest-set-time", "arguments": { "time": nanos } });
            let raw = hv
                .agent_command(dom, &req.to_string(), 30)
                .with_context(|| format!("{dom}: guest-set-time"))?;
            let resp: serde_json::Value = serde_json::from_str(&raw)
                .with_context(|| format!("{dom}: guest-set-time answered invalid json"))?;
            if let Some(err) = resp.get("error") {
                bail!(
                    "{dom}: the guest agent rejected guest-set-time: {}",
                    err["desc"]
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ("exec", [dom, argv @ ..]) => {
            let (timeout, argv) = match argv {
                ["-t", t, argv @ ..] => (seconds(t)?, argv),
                _ => (Duration::from_secs(60), argv),
            };
            let [path, args @ ..] = argv else {
                return Err(Usage.into());
            };
            let opts = ExecOpts {
                output_limit: OUTPUT_LIMIT,
                ..ExecOpts::with_timeout(timeout)
            };
            let hv = LibvirtHv::open(uri)?;
            let out = agent::exec(&hv, dom, path, args, &opts).with_context(|| dom.to_string())?;
            std::io::stdout().write_all(&out.stdout)?;
            std::io::stderr().write_all(&out.stderr)?;
            // Exit statuses are 0..=255 (128 + signal for a killed command).
            Ok(ExitCode::from(u8::try_from(out.exit_code).unwrap_or(255)))
        }
        _ => Err(Usage.into()),
    }
}

/// Waits for every domain's agent at once; prints "DOM SECONDS" for each that answered.
fn wait(uri: &str, timeout: Duration, doms: &[&str]) -> Result<ExitCode> {
    let hv = LibvirtHv::open(uri)?;
    let results: Vec<Result<Duration>> = std::thread::scope(|s| {
        let handles: Vec<_> = doms
            .iter()
            .map(|dom| {
                let hv = &hv;
                s.spawn(move || agent::wait_ready(hv, dom, timeout, POLL, &Cancel::never()))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a wait thread panicked"))
            .collect()
    });
    let mut failed = Vec::new();
    for (dom, r) in doms.iter().zip(results) {
        match r {
            Ok(took) => println!("{dom} {:.2}", took.as_secs_f64()),
            Err(e) => failed.push(format!("{dom}: {e:#}")),
        }
    }
    if !failed.is_empty() {
        bail!("{}", failed.join("\nagent: "));
    }
    Ok(ExitCode::SUCCESS)
}
