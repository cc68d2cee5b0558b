//! Booting a tier: domains started back to back, then awaited together until their agents
//! (and optional TCP ports) answer, with the in-guest injection of each.

use anyhow::{Context, Result, bail};
use std::time::{Duration, Instant};

use crate::base::sys;
use crate::hv::Hypervisor;
use crate::hv::agent;
use crate::lab::execute::progress;
use crate::lab::journal::RunDir;
use crate::lab::plan::Plan;
use crate::lab::record::{Resource, RunRecord};
use crate::lab::{UpReport, VmUp, plan};

/// Starts the domains of one boot tier, waits until each is ready and runs its in-guest
/// injection; the step's label for the timings.
#[allow(clippy::too_many_arguments)]
pub(super) fn boot_tier(
    plan: &Plan,
    hv: &dyn Hypervisor,
    dir: &RunDir,
    tier: &usize,
    vms: &[usize],
    record: &mut RunRecord,
    report: &mut UpReport,
    injections: &mut [crate::restore::record::PlannedInjection],
) -> Result<Option<String>> {
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
    let results: Vec<Ready> = std::thread::scope(|sc| {
        let hs: Vec<_> = vms
            .iter()
            .map(|&i| {
                let vm = &plan.vms[i];
                let mut inj = injections.iter().find(|p| p.vm == vm.name).cloned();
                sc.spawn(move || {
                    let ready = wait_ready(hv, vm).and_then(|d| {
                        if let Some(p) = inj.as_mut() {
                            progress(format!(
                                "{}: restoring {} in the guest",
                                vm.name, p.record.dump.name
                            ));
                            crate::restore::inject::inject_in_guest(
                                hv,
                                &vm.domain,
                                vm.hotplug_disk.as_deref(),
                                p,
                            )?;
                        }
                        Ok(d)
                    });
                    (ready, inj)
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("ready thread panicked"))
            .collect()
    });
    spinner.finish_and_clear();
    let mut first_error = None;
    let mut readies = Vec::new();
    for (k, (r, inj)) in results.into_iter().enumerate() {
        if let Some(done) = inj
            && let Some(slot) = injections.iter_mut().find(|p| p.vm == done.vm)
        {
            *slot = done;
        }
        match r {
            Ok(d) => readies.push((k, d)),
            Err(e) => {
                first_error.get_or_insert(e);
            }
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

/// Wait until a VM's agent answers, then (optionally) its TCP port accepts from inside the lab.
fn wait_ready(hv: &dyn Hypervisor, vm: &plan::VmPlan) -> Result<Duration> {
    let t = Instant::now();
    let fail = |what: &str, e: anyhow::Error| {
        let serial = std::fs::read_to_string(&vm.serial_log).unwrap_or_default();
        anyhow::anyhow!(
            "vm {} ({}) not ready after {}s: {what}: {e:#}; last serial console lines: {}",
            vm.name,
            vm.domain,
            vm.ready_timeout.as_secs(),
            if serial.trim().is_empty() {
                "(none)".into()
            } else {
                sys::tail(&serial, 8)
            }
        )
    };
    if let Err(e) = agent::wait_ready(hv, &vm.domain, vm.ready_timeout, Duration::from_millis(250))
    {
        return Err(fail("waiting for the guest agent (guest-ping)", e));
    }
    if let Some(port) = vm.ready_tcp {
        let host = vm
            .addresses
            .first()
            .map(|a| a.to_string())
            .unwrap_or_else(|| "127.0.0.1".into());
        // OpenBSD/GNU nc know -z; busybox nc does not, but connects and exits 0 on EOF.
        let script = format!(
            "command -v nc >/dev/null || exit 127; nc -z -w 2 {host} {port} 2>/dev/null && exit 0; \
             nc -w 2 {host} {port} </dev/null >/dev/null 2>&1"
        );
        loop {
            let left = vm.ready_timeout.saturating_sub(t.elapsed());
            if left.is_zero() {
                return Err(fail(
                    &format!("waiting for tcp {host}:{port}"),
                    anyhow::anyhow!("timed out"),
                ));
            }
            match agent::sh(hv, &vm.domain, &script, Duration::from_secs(5)) {
                Ok(out) if out.exit_code == 0 => break,
                Ok(out) if out.exit_code == 127 => {
                    return Err(fail(
                        &format!("probing tcp {host}:{port}"),
                        anyhow::anyhow!("the guest has no nc; remove ready.tcp or install netcat"),
                    ));
                }
                Ok(_) => {}
                Err(e) => return Err(fail(&format!("probing tcp {host}:{port}"), e)),
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    Ok(t.elapsed())
}
