//! Booting a tier: domains started back to back, then awaited together until their agents
//! (and optional TCP ports) answer, with the in-guest injection of each. The first VM that
//! fails calls off the waits of its siblings (one [`Cancel`] per tier), and its error is the
//! one reported; a caught SIGINT/SIGTERM stops them all the same way.

use anyhow::{Context, Result, bail};
use std::time::{Duration, Instant};

use crate::base::cancel::{Cancel, Cancelled, Interrupted};
use crate::base::text;
use crate::base::wait::{self, Poll};
use crate::hv::agent;
use crate::hv::{HvError, Hypervisor};
use crate::lab::execute::{On, progress};
use crate::lab::record::{Resource, RunRecord};
use crate::lab::{UpReport, VmUp, plan};

/// Starts the domains of one boot tier, waits until each is ready and runs its in-guest
/// injection; the step's label for the timings.
pub(super) fn boot_tier(
    on: &On<'_>,
    tier: &usize,
    vms: &[usize],
    record: &mut RunRecord,
    report: &mut UpReport,
    injections: &mut [crate::restore::record::PlannedInjection],
) -> Result<Option<String>> {
    let (plan, hv, dir) = (on.plan, on.hv, on.dir);
    let names: Vec<&str> = vms.iter().map(|&i| plan.vms[i].name.as_str()).collect();
    progress(format!("tier {}: starting {}", tier + 1, names.join(", ")));
    let t = Instant::now();
    for &i in vms {
        let vm = &plan.vms[i];
        if hv.list_domains()?.iter().any(|d| d.name == vm.domain) {
            bail!(
                "domain {} already exists and is not this run's; refusing to touch it",
                vm.domain
            );
        }
        dir.journal(&Resource::Domain {
            name: vm.domain.clone(),
        })?;
        hv.create_domain(&vm.xml)
            .with_context(|| format!("vm {}: starting domain {}", vm.name, vm.domain))?;
    }
    type Ready = (
        Result<Duration>,
        Option<crate::restore::record::PlannedInjection>,
    );
    // A spinner while the guests boot (hidden when stderr is not a terminal).
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.set_message(format!(
        "tier {}: waiting for {}",
        tier + 1,
        names.join(", ")
    ));
    spinner.enable_steady_tick(Duration::from_millis(120));
    // Progress lines of the threads go past the spinner without garbling it (on a terminal).
    let say = |msg: String| spinner.suspend(|| progress(msg));
    // Shared by the VMs of the tier: the first to fail cancels it, and the others stop waiting.
    let cancel = Cancel::new();
    let results: Vec<Ready> = std::thread::scope(|sc| {
        let hs: Vec<_> = vms
            .iter()
            .map(|&i| {
                let vm = &plan.vms[i];
                let mut inj = injections.iter().find(|p| p.vm == vm.name).cloned();
                let (cancel, say) = (&cancel, &say);
                sc.spawn(move || {
                    let ready = wait_ready(hv, vm, cancel).and_then(|d| {
                        if let Some(p) = inj.as_mut() {
                            say(format!(
                                "{}: restoring {} in the guest",
                                vm.name, p.record.dump.name
                            ));
                            crate::restore::inject::inject_in_guest(
                                hv,
                                &vm.domain,
                                vm.hotplug_disk.as_deref(),
                                p,
                                cancel,
                            )?;
                        }
                        Ok(d)
                    });
                    if ready.is_err() {
                        cancel.cancel();
                    }
                    (ready, inj)
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("ready thread panicked"))
            .collect()
    });
    spinner.finish_and_clear();
    let mut first_error: Option<anyhow::Error> = None;
    let mut readies = Vec::new();
    for (k, (r, inj)) in results.into_iter().enumerate() {
        if let Some(done) = inj
            && let Some(slot) = injections.iter_mut().find(|p| p.vm == done.vm)
        {
            *slot = done;
        }
        match r {
            Ok(d) => readies.push((k, d)),
            // A sibling's "cancelled" only follows the real failure: never report it instead.
            Err(e) => match &first_error {
                Some(f) if !is_cancelled(f) => {}
                Some(_) if is_cancelled(&e) => {}
                _ => first_error = Some(e),
            },
        }
    }
    record.injections = injections
        .iter()
        .filter(|p| p.record.durations.restore_ms.is_some())
        .map(|p| p.record.clone())
        .collect();
    report.injections = record.injections.clone();
    if let Some(e) = first_error {
        return Err(e);
    }
    for (k, took) in readies {
        let vm = &plan.vms[vms[k]];
        progress(format!(
            "{} ready after {:.1}s",
            vm.name,
            took.as_secs_f64()
        ));
        report.vms.push(VmUp {
            name: vm.name.clone(),
            domain: vm.domain.clone(),
            tier: vm.tier + 1,
            ready_after_ms: took.as_millis(),
            macs: vm.macs.clone(),
            addresses: vm.addresses.iter().map(|a| a.to_string()).collect(),
        });
    }
    dir.save_record(record)?;
    Ok(Some(format!(
        "boot tier {} ({:.1}s)",
        tier + 1,
        t.elapsed().as_secs_f64()
    )))
}

/// Whether an error is only a sibling's failure calling this wait off.
fn is_cancelled(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<Cancelled>())
}

/// Wait until a VM's agent answers, then (optionally) its TCP port accepts from inside the lab.
fn wait_ready(hv: &dyn Hypervisor, vm: &plan::VmPlan, cancel: &Cancel) -> Result<Duration> {
    let t = Instant::now();
    let fail = |what: &str, e: anyhow::Error| {
        // Called off (a sibling failed, or a signal), or libvirtd is gone: not this VM's
        // timeout.
        if is_cancelled(&e) || Interrupted::find(&e).is_some() || HvError::is_daemon_lost(&e) {
            return e.context(format!("vm {} ({}): {what}", vm.name, vm.domain));
        }
        let serial = std::fs::read_to_string(&vm.serial_log).unwrap_or_default();
        anyhow::anyhow!(
            "vm {} ({}) not ready after {}s (ready.timeout {}s): {what}: {e:#}; last serial console lines: {}",
            vm.name,
            vm.domain,
            t.elapsed().as_secs(),
            vm.ready_timeout.as_secs(),
            if serial.trim().is_empty() {
                "(none)".into()
            } else {
                text::tail(&serial, 8)
            }
        )
    };
    if let Err(e) = agent::wait_ready(
        hv,
        &vm.domain,
        vm.ready_timeout,
        Duration::from_millis(250),
        cancel,
    ) {
        return Err(fail("waiting for the guest agent (guest-ping)", e));
    }
    if let Some(port) = vm.ready_tcp {
        let host = vm
            .addresses
            .first()
            .map(|a| a.to_string())
            .unwrap_or_else(|| "127.0.0.1".into());
        // bash's /dev/tcp where the guest has bash (a Debian server often has no nc), else nc.
        let script = crate::base::guestsh::tcp_connect(&host, port, 2);
        let probe = agent::ExecOpts::with_timeout(Duration::from_secs(5)).cancelled_by(cancel);
        // The probe ends the wait with `Some(Err)` when it knows the port will not come.
        let probed = wait::until(
            t + vm.ready_timeout,
            Poll::every(Duration::from_millis(500)),
            cancel,
            || {
                Ok(match agent::sh_opts(hv, &vm.domain, &script, &probe) {
                    Ok(out) if out.exit_code == 0 => Some(Ok(())),
                    Ok(out) if out.exit_code == 127 => Some(Err(fail(
                        &format!("probing tcp {host}:{port}"),
                        anyhow::anyhow!(
                            "the guest has neither bash nor nc to probe with; remove ready.tcp or install bash or netcat"
                        ),
                    ))),
                    Ok(_) => None,
                    Err(e) => Some(Err(fail(&format!("probing tcp {host}:{port}"), e))),
                })
            },
        );
        match probed {
            Ok(Some(accepted)) => accepted?,
            Ok(None) => {
                return Err(fail(
                    &format!("waiting for tcp {host}:{port}"),
                    anyhow::anyhow!("timed out"),
                ));
            }
            Err(e) => return Err(fail(&format!("waiting for tcp {host}:{port}"), e)),
        }
    }
    Ok(t.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::names::RunId;
    use crate::hv::HvError;
    use crate::hv::fake::FakeHv;
    use crate::lab::journal::RunDir;
    use crate::lab::plan::{Plan, Step, VmPlan};
    use serde_json::json;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A plan of one boot tier of `vms` (name, `ready.tcp`), in a fresh run of `state`.
    fn one_tier_plan(state: &std::path::Path, vms: &[(&str, Option<u16>)]) -> Plan {
        let run = RunId::new();
        let now = jiff::Timestamp::now();
        let vms: Vec<VmPlan> = vms
            .iter()
            .map(|&(name, ready_tcp)| {
                let domain = format!("reclab-{}-{name}", run.short());
                VmPlan {
                    name: name.into(),
                    xml: format!("<domain><name>{domain}</name></domain>"),
                    domain,
                    tier: 0,
                    overlays: vec![],
                    copies: vec![],
                    backup: None,
                    nvram: None,
                    changes: vec![],
                    macs: vec![],
                    addresses: vec!["10.20.0.10".parse().unwrap()],
                    serial_log: state.join(format!("{name}.serial.log")),
                    console_password: "pw".into(),
                    // Long enough that a test which waited it out would be noticed.
                    ready_timeout: Duration::from_secs(120),
                    ready_tcp,
                    data_disk: None,
                    hotplug_disk: None,
                }
            })
            .collect();
        Plan {
            lab: "tier".into(),
            uri: "fake:///".into(),
            lab_file: state.join("tier.toml"),
            run_dir: RunDir::new(state, &run).path,
            run,
            created: now,
            expires: now,
            segments: vec![],
            publish: vec![],
            steps: vec![
                Step::CreateRunDir,
                Step::BootTier {
                    tier: 0,
                    vms: (0..vms.len()).collect(),
                },
            ],
            vms,
            injections: vec![],
        }
    }

    fn empty_report(plan: &Plan) -> UpReport {
        UpReport {
            lab: plan.lab.clone(),
            run: plan.run.short().into(),
            run_dir: plan.run_dir.display().to_string(),
            expires: plan.expires.to_string(),
            vms: vec![],
            networks: vec![],
            changes: vec![],
            isolation: vec![],
            timings_ms: vec![],
            at: "latest".into(),
            at_time: None,
            injections: vec![],
            restores: vec![],
            failed_step: None,
        }
    }

    #[test]
    fn the_first_vm_to_fail_stops_its_siblings_and_its_error_is_reported() {
        let tmp = tempfile::tempdir().unwrap();
        // `app` (first in the tier) never gets an agent; `db` has one, but no nc for its TCP
        // readiness probe, which fails at once.
        let plan = one_tier_plan(tmp.path(), &[("app", None), ("db", Some(5432))]);
        let app_domain = plan.vms[0].domain.clone();
        let hv = FakeHv::new();
        let host = crate::lab::fake::FakeHost::new();
        let app_pings = Arc::new(AtomicUsize::new(0));
        let counted = app_pings.clone();
        hv.set_agent(move |dom, req| {
            if dom.ends_with("-app") {
                counted.fetch_add(1, Ordering::SeqCst);
                return Err(HvError::AgentUnavailable {
                    domain: dom.into(),
                    message: "QEMU guest agent is not connected".into(),
                }
                .into());
            }
            Ok(match req["execute"].as_str().unwrap() {
                "guest-ping" => json!({ "return": {} }),
                "guest-exec" => json!({ "return": { "pid": 7 } }),
                "guest-exec-status" => json!({ "return": { "exited": true, "exitcode": 127 } }),
                other => panic!("unexpected {other}"),
            })
        });
        let dir = RunDir {
            path: plan.run_dir.clone(),
        };
        let mut report = empty_report(&plan);

        let err = crate::lab::execute::execute(
            &plan,
            &hv,
            &host,
            &dir,
            &mut crate::lab::execute::Claim::new(Default::default(), vec![]),
            &mut report,
            &mut |_, _, _| Ok(()),
        )
        .unwrap_err();

        let msg = format!("{err:#}");
        assert!(
            msg.starts_with("vm db (reclab-"),
            "names the vm that failed: {msg}"
        );
        assert!(
            msg.contains("the guest has neither bash nor nc"),
            "says why: {msg}"
        );
        assert!(!msg.contains("cancelled"), "not the sibling's error: {msg}");
        // `app` would have been pinged every 250 ms for two minutes (480 times); it was called
        // off after its first ping or so.
        let pings = app_pings.load(Ordering::SeqCst);
        assert!(pings <= 3, "app was pinged {pings} times");
        assert!(report.vms.is_empty(), "no vm of a failed tier counts as up");
        // Both domains were journaled before they were started, so the unwind finds them.
        let journaled = dir.resources().unwrap();
        assert!(journaled.contains(&Resource::Domain { name: app_domain }));
        assert_eq!(hv.domain_names().len(), 2);
        assert!(
            crate::lab::teardown::teardown(Some(&hv), &host, &dir)
                .unwrap()
                .is_empty()
        );
        assert!(hv.domain_names().is_empty());
    }

    #[test]
    fn a_tier_whose_vms_all_answer_is_up_with_each_vm_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let plan = one_tier_plan(tmp.path(), &[("app", None), ("db", None)]);
        let hv = FakeHv::new();
        let host = crate::lab::fake::FakeHost::new();
        let dir = RunDir {
            path: plan.run_dir.clone(),
        };
        let mut report = empty_report(&plan);
        crate::lab::execute::execute(
            &plan,
            &hv,
            &host,
            &dir,
            &mut crate::lab::execute::Claim::new(Default::default(), vec![]),
            &mut report,
            &mut |_, _, _| Ok(()),
        )
        .unwrap();
        let up: Vec<&str> = report.vms.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(up, ["app", "db"]);
        assert!(
            report
                .timings_ms
                .iter()
                .any(|(l, _)| l.starts_with("boot tier 1"))
        );
    }
}
