//! The executor: runs a plan's steps in order, journaling each resource before it is created.

use anyhow::{Context, Result, bail};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::base::names::{self};
use crate::base::sys;
use crate::hv::Hypervisor;
use crate::lab::boot::boot_tier;
use crate::lab::isolation::verify_isolation;
use crate::lab::journal::RunDir;
use crate::lab::plan::{Plan, Step};
use crate::lab::record::{Resource, RunRecord, RunState, SegmentRecord, VmRecord};
use crate::lab::{UpReport, image, services};
use crate::xml;

pub(super) fn execute(
    plan: &Plan,
    hv: &dyn Hypervisor,
    dir: &RunDir,
    fingerprints: Vec<crate::lab::record::Fingerprint>,
    report: &mut UpReport,
) -> Result<()> {
    let me = std::process::id();
    let mut record = RunRecord {
        schema: 1,
        lab: plan.lab.clone(),
        run_id: plan.run.clone(),
        lab_file: plan.lab_file.clone(),
        uri: plan.uri.clone(),
        created: plan.created.to_string(),
        expires: plan.expires.to_string(),
        state: RunState::Creating,
        owner_pid: me,
        owner_start: sys::process_start_time(me).unwrap_or(0),
        vms: plan
            .vms
            .iter()
            .map(|v| VmRecord {
                name: v.name.clone(),
                domain: v.domain.clone(),
                tier: v.tier,
                macs: v.macs.clone(),
                addresses: v.addresses.iter().map(|a| a.to_string()).collect(),
                serial_log: v.serial_log.clone(),
                console_password: v.console_password.clone(),
            })
            .collect(),
        networks: plan.segments.iter().map(|s| s.network.clone()).collect(),
        segments: plan
            .segments
            .iter()
            .map(|s| SegmentRecord {
                name: s.name.clone(),
                network: s.network.clone(),
                bridge: s.bridge.clone(),
                services_link: s.services.as_ref().map(|x| x.link.clone()),
                services_address: s.services.as_ref().map(|x| x.address.to_string()),
            })
            .collect(),
        fingerprints,
        changes: report.changes.clone(),
        injections: Vec::new(),
        at: Some(report.at.clone()),
        at_time: report.at_time.clone(),
    };
    let mut injections = plan.injections.clone();
    // Test hook: fail right after step N (1-based) has created its resources, to prove that
    // unwinding from every step leaves nothing behind.
    let fault_after: Option<usize> = std::env::var("RECLAB_FAULT_AFTER_STEP")
        .ok()
        .and_then(|v| v.parse().ok());
    // Test hook: after step N (1-based), write `paused-after-step` into the run directory and
    // sleep, so that a crash test can SIGKILL reclab at exactly that point (tests/e2e_crash.rs).
    let pause_after: Option<usize> = std::env::var("RECLAB_PAUSE_AFTER_STEP")
        .ok()
        .and_then(|v| v.parse().ok());
    for (k, step) in plan.steps.iter().enumerate() {
        let t = Instant::now();
        let label = run_step(plan, hv, dir, step, &mut record, report, &mut injections)?;
        if pause_after == Some(k + 1) {
            pause_for_crash_test(dir, k + 1)?;
        }
        if fault_after == Some(k + 1) {
            bail!(
                "injected fault after step {} of {} ({step:?})",
                k + 1,
                plan.steps.len()
            );
        }
        if let Some(label) = label {
            tracing::info!(step = %label, ms = t.elapsed().as_millis() as u64, "step done");
            report.timings_ms.push((label, t.elapsed().as_millis()));
        }
    }
    let changed = image::changed(&record.fingerprints);
    if !changed.is_empty() {
        bail!("{}", changed.join("; "));
    }
    record.state = RunState::Up;
    dir.save_record(&record)?;
    Ok(())
}

/// The `RECLAB_PAUSE_AFTER_STEP` test hook: announce the step in the run directory, then
/// wait to be killed (for at most ten minutes, so a forgotten test does not leave it forever).
fn pause_for_crash_test(dir: &RunDir, step: usize) -> Result<()> {
    let marker = dir.path.join("paused-after-step");
    std::fs::write(&marker, step.to_string())
        .with_context(|| format!("writing {}", marker.display()))?;
    eprintln!("reclab: test hook: paused after step {step}");
    std::thread::sleep(Duration::from_secs(600));
    Ok(())
}

pub(super) fn progress(msg: String) {
    eprintln!("reclab: {msg}");
}

fn run_step(
    plan: &Plan,
    hv: &dyn Hypervisor,
    dir: &RunDir,
    step: &Step,
    record: &mut RunRecord,
    report: &mut UpReport,
    injections: &mut [crate::restore::record::PlannedInjection],
) -> Result<Option<String>> {
    for r in plan.resources(step) {
        // Firewall rules and services journal themselves next to each command.
        if !matches!(r, Resource::Firewall { .. })
            && !matches!(step, Step::StartServices { .. } | Step::BootTier { .. })
        {
            dir.journal(&r)?;
        }
    }
    Ok(match step {
        Step::CreateRunDir => {
            std::fs::create_dir_all(dir.path.parent().context("run dir has a parent")?)
                .with_context(|| format!("creating state directory {}", dir.path.display()))?;
            dir.create()?;
            dir.save_record(record)?;
            progress(format!(
                "lab {} run {}: {}",
                plan.lab,
                plan.run.short(),
                dir.path.display()
            ));
            None
        }
        Step::CreateOverlay(o) => {
            image::create_overlay(&o.path, &o.backing)
                .with_context(|| format!("vm {}: cloning disk {}", o.vm, o.target))?;
            Some(format!("clone {}/{}", o.vm, o.target))
        }
        Step::CopyNvram { vm, from, to } => {
            std::fs::copy(from, to)
                .with_context(|| format!("vm {vm}: copying nvram {}", from.display()))?;
            Some(format!("nvram {vm}"))
        }
        Step::BuildDataDisk { injection } => {
            let p = &mut injections[*injection];
            let vm = plan
                .vms
                .iter()
                .find(|v| v.name == p.vm)
                .expect("planned vm");
            let image = vm.data_disk.clone().expect("planned data disk");
            crate::restore::inject::build_disk(p, &image)?;
            progress(format!(
                "{}: restore point {} ({}) + dump {} ({}), skew {}",
                p.vm,
                p.record.image.name,
                p.record.image.time,
                p.record.dump.name,
                p.record.dump.time,
                p.record.skew
            ));
            Some(format!("data disk {}", p.vm))
        }
        Step::CreateNetwork { segment } => {
            let s = &plan.segments[*segment];
            if hv.list_networks()?.iter().any(|n| n.name == s.network) {
                bail!(
                    "network {} already exists and is not this run's; refusing to touch it",
                    s.network
                );
            }
            if Path::new("/sys/class/net").join(&s.bridge).exists() {
                bail!(
                    "interface {} already exists; refusing to reuse it",
                    s.bridge
                );
            }
            hv.create_network(&s.network_xml)
                .with_context(|| format!("creating lab network {}", s.network))?;
            progress(format!(
                "segment {}: network {} bridge {}",
                s.name, s.network, s.bridge
            ));
            Some(format!("network {}", s.name))
        }
        Step::HardenBridge { segment } => {
            let s = &plan.segments[*segment];
            services::harden_bridge(dir, &s.bridge, &names::firewall_tag(&plan.run))?;
            None
        }
        Step::StartServices { segment } => {
            let s = plan.segments[*segment].services.as_ref().expect("planned");
            services::start(dir, s)?;
            progress(format!(
                "segment {}: lab services at {}/{} (dns {}, dhcp {})",
                s.segment, s.address, s.prefix, s.dns, s.dhcp
            ));
            Some(format!("services {}", s.segment))
        }
        Step::VerifyNetworks => {
            for s in &plan.segments {
                let live = hv.network_xml(&s.network)?;
                if let Err(problems) = xml::network::check_isolated(&live, &s.bridge) {
                    bail!(
                        "lab network {} is not isolated: {}",
                        s.network,
                        problems.join("; ")
                    );
                }
                report.isolation.push(format!(
                    "network {}: no forward, no host address",
                    s.network
                ));
            }
            None
        }
        Step::BootTier { tier, vms } => {
            boot_tier(plan, hv, dir, tier, vms, record, report, injections)?
        }
        Step::VerifyIsolation => {
            let found = verify_isolation(record, hv)?;
            report.isolation.extend(found);
            Some("verify isolation".into())
        }
    })
}
