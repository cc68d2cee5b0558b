//! The runner: what each check kind asks of the lab ([`ask`]), getting the answer through the
//! guest agent or the hypervisor, and judging it ([`judge`]) with the pure `eval_*` functions.
//! Around the judge it keeps the bookkeeping a result shows: timing, the end of the output, and
//! notes about output the cap cut off.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use jiff::Timestamp;
use serde_json::Value;

use super::eval::{
    describe_exit, eval_checksums, eval_compare, eval_exec, eval_expect_from_manifest,
    eval_freshness, eval_http, eval_ping, eval_sequence, eval_tcp,
};
use super::screen::eval_blank_png;
use super::{CheckContext, CheckResult, OUTPUT_LIMIT, Outcome, SEQUENCE_OUTPUT_LIMIT, Status};
use crate::base::template::sh_quote;
use crate::base::text::tail_block;
use crate::hv::Hypervisor;
use crate::hv::agent::{self, ExecOpts, ExecOutput};
use crate::spec::{CheckKind, CheckSpec};

/// Lines and bytes of output kept in a result's `output_tail`.
const TAIL_LINES: usize = 20;
const TAIL_BYTES: usize = 2000;

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

/// How a check gets its answer.
#[derive(Debug, PartialEq)]
enum Ask {
    /// The guest agent's ping.
    Agent,
    /// A screenshot through the hypervisor.
    Screen,
    /// Commands for `/bin/sh -c` in the lab's VMs, run in order.
    Run(Vec<GuestCommand>),
    /// Nothing to ask: the verdict is already known.
    Known(Outcome),
}

/// One command of a check: where it runs and how much of its output is kept.
#[derive(Debug, PartialEq)]
struct GuestCommand {
    vm: String,
    script: String,
    limit: usize,
}

fn command(vm: &str, script: impl Into<String>) -> GuestCommand {
    GuestCommand {
        vm: vm.to_string(),
        script: script.into(),
        limit: OUTPUT_LIMIT,
    }
}

/// What a check asks of the lab. Pure.
fn ask(check: &CheckSpec, ctx: &CheckContext) -> Ask {
    let vm = check.vm.as_str();
    let run = |script: String| Ask::Run(vec![command(vm, script)]);
    match &check.kind {
        CheckKind::Heartbeat => Ask::Agent,
        CheckKind::Screenshot => Ask::Screen,
        CheckKind::Ping { host } => run(format!("ping -c 3 -W 2 {}", sh_quote(host))),
        CheckKind::Tcp { host, port } => run(crate::base::guestsh::tcp_connect(host, *port, 5)),
        CheckKind::Http { url, .. } => run(crate::base::guestsh::http_get(url)),
        CheckKind::Exec { command, .. } | CheckKind::Freshness { command, .. } => {
            run(command.clone())
        }
        CheckKind::Sequence { command } => Ask::Run(vec![GuestCommand {
            vm: vm.to_string(),
            script: command.clone(),
            limit: SEQUENCE_OUTPUT_LIMIT,
        }]),
        CheckKind::Checksums { manifest } => {
            let path = Path::new(manifest);
            let dir = path
                .parent()
                .map(|p| p.display().to_string())
                .filter(|d| !d.is_empty())
                .unwrap_or_else(|| "/".into());
            let file = path
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            run(format!(
                "cd {} && sha256sum -c {}",
                sh_quote(&dir),
                sh_quote(&file)
            ))
        }
        CheckKind::Compare { a, b } => Ask::Run(vec![
            command(&a.vm, a.command.clone()),
            command(&b.vm, b.command.clone()),
        ]),
        CheckKind::ExpectFromManifest {
            command,
            manifest_vm,
            ..
        } => match manifest_of(ctx, manifest_vm) {
            Ok(_) => run(command.clone()),
            Err(no_manifest) => Ask::Known(no_manifest),
        },
    }
}

/// The dump manifest restored into `vm`; without one, the error outcome that says so.
fn manifest_of<'a>(ctx: &'a CheckContext, vm: &str) -> Result<&'a Value, Outcome> {
    ctx.manifests.get(vm).ok_or_else(|| {
        Outcome::error(format!(
            "no dump manifest for vm {vm}: this drill restored no dump into it"
        ))
    })
}

/// The verdict on the outputs of the commands [`ask`] gave, in their order. Pure, except
/// that `freshness` without a restore point measures against the current time.
fn judge(kind: &CheckKind, outs: &[ExecOutput], ctx: &CheckContext) -> Outcome {
    match (kind, outs) {
        (CheckKind::Ping { host }, [out]) => eval_ping(out, host),
        (CheckKind::Tcp { host, port }, [out]) => eval_tcp(out, host, *port),
        (
            CheckKind::Http {
                status,
                contains,
                matches,
                ..
            },
            [out],
        ) => {
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
        (
            CheckKind::Exec {
                exit_code,
                stdout_equals,
                stdout_matches,
                json,
                ..
            },
            [out],
        ) => {
            let needs_all = stdout_equals.is_some() || json.is_some();
            if needs_all && out.stdout_truncated {
                return whole_output_needed();
            }
            eval_exec(
                out,
                *exit_code,
                stdout_equals.as_deref(),
                stdout_matches.as_deref(),
                json.as_ref(),
            )
        }
        (CheckKind::Sequence { .. }, [out]) => {
            complete_output(out).unwrap_or_else(|| eval_sequence(&out.stdout_lossy()))
        }
        (CheckKind::Freshness { max_age, .. }, [out]) => {
            if let Some(failed) = exit_failure(out) {
                return failed;
            }
            match ctx.restore_point {
                Some(point) => eval_freshness(&out.stdout_lossy(), point, *max_age),
                None => eval_freshness(&out.stdout_lossy(), Timestamp::now(), *max_age).detail(
                    "no restore point time is known for this lab, so the age is measured against the time of the check",
                ),
            }
        }
        (CheckKind::Checksums { manifest }, [out]) => eval_checksums(out, manifest),
        (CheckKind::Compare { a, b }, [out, out_b]) => {
            if let Some(failed) = exit_failure(out) {
                return failed.detail(format!("side a ({}) failed", a.vm));
            }
            if let Some(failed) = exit_failure(out_b) {
                return failed.detail(format!("side b ({}) failed", b.vm));
            }
            if out.stdout_truncated || out_b.stdout_truncated {
                return whole_output_needed().detail(
                    "compare digests instead, for example by piping both commands through sha256sum",
                );
            }
            eval_compare(
                &out.stdout_lossy(),
                &out_b.stdout_lossy(),
                &format!("a ({}: {})", a.vm, a.command),
                &format!("b ({}: {})", b.vm, b.command),
            )
        }
        (
            CheckKind::ExpectFromManifest {
                field, manifest_vm, ..
            },
            [out],
        ) => match manifest_of(ctx, manifest_vm) {
            Err(no_manifest) => no_manifest,
            Ok(manifest) => complete_output(out)
                .unwrap_or_else(|| eval_expect_from_manifest(&out.stdout_lossy(), manifest, field)),
        },
        (kind, outs) => Outcome::error(format!(
            "a {} check has no verdict on {} command outputs",
            kind.name(),
            outs.len()
        )),
    }
}

/// Gets the answer a check asks for and judges it, recording the output's tail, cut notes and
/// screenshot in `result`.
fn evaluate(
    hv: &dyn Hypervisor,
    domain_of: &dyn Fn(&str) -> String,
    check: &CheckSpec,
    ctx: &CheckContext,
    result: &mut CheckResult,
) -> Result<Outcome> {
    match ask(check, ctx) {
        Ask::Known(outcome) => Ok(outcome),
        Ask::Agent => {
            agent::ping(hv, &domain_of(&check.vm), check.timeout)
                .with_context(|| format!("pinging the guest agent of {}", check.vm))?;
            Ok(Outcome::pass("the guest agent answers", "it answered"))
        }
        Ask::Screen => {
            let png = hv
                .screenshot(&domain_of(&check.vm))
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
            Ok(eval_blank_png(&png))
        }
        Ask::Run(commands) => {
            let mut outs = Vec::with_capacity(commands.len());
            for c in &commands {
                let out = sh(hv, &domain_of(&c.vm), &c.script, check.timeout, c.limit)
                    .with_context(|| format!("running the check command in {}", c.vm))?;
                append_tail(&mut result.output_tail, &out);
                result.details.extend(cut_notes(&out, c.limit));
                outs.push(out);
            }
            Ok(judge(&check.kind, &outs, ctx))
        }
    }
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

fn whole_output_needed() -> Outcome {
    Outcome::error(format!(
        "the output was cut at its size limit, and this check needs all of it; make the command print less (limit {} KiB, {} MiB for sequence checks)",
        OUTPUT_LIMIT / 1024,
        SEQUENCE_OUTPUT_LIMIT / (1024 * 1024)
    ))
}

/// The verdict when a command's output cannot be judged: it exited non-zero, or it was cut.
fn complete_output(out: &ExecOutput) -> Option<Outcome> {
    exit_failure(out).or_else(|| out.stdout_truncated.then(whole_output_needed))
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
        text.push_str(&tail_block(&lossy, TAIL_LINES, TAIL_BYTES));
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
#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;
    use std::sync::{Arc, Mutex};

    use base64::Engine;
    use base64::engine::general_purpose::STANDARD as B64;
    use serde_json::json;

    use super::*;
    use crate::hv::fake::FakeHv;
    use crate::spec::CompareSide;
    use crate::verify::eval::tests::{WGET_OK, numbers, ts};

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
    fn network_checks_run_from_the_vm_with_its_own_tools() {
        let hv = lab();
        let scripts: Arc<Mutex<Vec<String>>> = Arc::default();
        let seen = scripts.clone();
        scripted(&hv, move |_, script| {
            seen.lock().unwrap().push(script.to_string());
            if script.contains("wget -S") {
                (0, "erp-web 2.4.1\n".into(), WGET_OK.into())
            } else if script.contains("/dev/tcp") {
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
                "ping -c 3 -W 2 db.prod.example".to_string(),
                crate::base::guestsh::tcp_connect("app.prod.example", 8080, 5),
                crate::base::guestsh::http_get("http://app.prod.example/cgi-bin/latest"),
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
    fn each_kind_asks_for_its_command_quoted_for_the_shell() {
        let ctx = CheckContext::default();
        let asked = |kind: CheckKind| ask(&check("c", "db", kind), &ctx);
        assert_eq!(
            asked(CheckKind::Checksums {
                manifest: "/var/backups/erp & co/SHA256SUMS".into()
            }),
            Ask::Run(vec![command(
                "db",
                "cd '/var/backups/erp & co' && sha256sum -c SHA256SUMS"
            )])
        );
        assert_eq!(
            asked(CheckKind::Checksums {
                manifest: "SHA256SUMS".into()
            }),
            Ask::Run(vec![command("db", "cd / && sha256sum -c SHA256SUMS")])
        );
        assert_eq!(
            asked(CheckKind::Http {
                url: "http://app/?a=1&b=it's".into(),
                status: 200,
                contains: None,
                matches: None,
            }),
            Ask::Run(vec![command(
                "db",
                crate::base::guestsh::http_get("http://app/?a=1&b=it's")
            )])
        );
        match asked(CheckKind::Sequence {
            command: "seq 3".into(),
        }) {
            Ask::Run(commands) => assert_eq!(commands[0].limit, SEQUENCE_OUTPUT_LIMIT),
            other => panic!("{other:?}"),
        }
        assert_eq!(asked(CheckKind::Heartbeat), Ask::Agent);
        assert_eq!(asked(CheckKind::Screenshot), Ask::Screen);
    }

    #[test]
    fn a_judge_given_the_wrong_number_of_outputs_errs_instead_of_guessing() {
        let outcome = judge(
            &CheckKind::Ping { host: "db".into() },
            &[],
            &CheckContext::default(),
        );
        assert_eq!(outcome.status, Status::Error);
        assert_eq!(
            outcome.got.as_deref(),
            Some("a ping check has no verdict on 0 command outputs")
        );
    }
}
