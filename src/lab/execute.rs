//! The executor: runs a plan's steps in order, journaling each resource before it is created.
//! A caught SIGINT/SIGTERM is noticed between steps (and by the waits inside a step), and
//! ends the run with [`Interrupted`](crate::base::cancel::Interrupted), which the caller
//! unwinds like any failure.

use anyhow::{Context, Result, bail};
use std::path::Path;
use std::time::Instant;

use crate::base::cancel;
use crate::base::names::{self};
use crate::base::sys;
use crate::hv::Hypervisor;
use crate::lab::boot::boot_tier;
use crate::lab::host::Host;
use crate::lab::isolation::verify_isolation;
use crate::lab::journal::RunDir;
use crate::lab::lock::{RunLock, StateLock};
use crate::lab::plan::{Plan, Step};
use crate::lab::record::{Owner, Resource, RunRecord, RunState, SegmentRecord, VmRecord};
use crate::lab::{UpReport, image, services};
use crate::xml;

/// What runs after each step of `up`: an error stops `up` there, and it
/// unwinds like after a failed step. `up` passes one that does nothing (or, built with the
/// `test-hooks` feature, the `RECLAB_*_AFTER_STEP` hooks of `lab::hooks`).
pub(crate) type AfterStep<'a> = dyn FnMut(&RunDir, StepNo, &Step) -> Result<()> + 'a;

/// A step's place in its plan: `number` (1-based) of `of`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StepNo {
    pub number: usize,
    pub of: usize,
}

/// What a run is started with and holds: who owns it, the fingerprints of production's
/// images, and (once step 1 made the run directory) the run's lock.
pub(super) struct Claim {
    pub(super) owner: Owner,
    pub(super) fingerprints: Vec<crate::lab::record::Fingerprint>,
    pub(super) lock: Option<RunLock>,
}

impl Claim {
    pub(super) fn new(owner: Owner, fingerprints: Vec<crate::lab::record::Fingerprint>) -> Claim {
        Claim {
            owner,
            fingerprints,
            lock: None,
        }
    }
}

pub(super) fn execute(
    plan: &Plan,
    hv: &dyn Hypervisor,
    host: &dyn Host,
    dir: &RunDir,
    claim: &mut Claim,
    report: &mut UpReport,
    after_step: &mut AfterStep,
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
        owner: claim.owner,
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
        fingerprints: std::mem::take(&mut claim.fingerprints),
        changes: report.changes.clone(),
        injections: Vec::new(),
        at: Some(report.at.clone()),
        at_time: report.at_time.clone(),
        restores: Vec::new(),
        publish: plan.publish.clone(),
    };
    let mut injections = plan.injections.clone();
    let on = On {
        plan,
        hv,
        host,
        dir,
    };
    for (k, step) in plan.steps.iter().enumerate() {
        cancel::check_signals()?;
        let t = Instant::now();
        let label = run_step(
            &on,
            step,
            &mut record,
            report,
            &mut injections,
            &mut claim.lock,
        )
        .inspect_err(|_| report.failed_step = Some(step_name(plan, step)))?;
        let number = StepNo {
            number: k + 1,
            of: plan.steps.len(),
        };
        after_step(dir, number, step)?;
        if let Some(label) = label {
            tracing::info!(step = %label, ms = t.elapsed().as_millis() as u64, "step done");
            report.timings_ms.push((label, t.elapsed().as_millis()));
        }
    }
    cancel::check_signals()?;
    let changed = image::changed(&record.fingerprints);
    if !changed.is_empty() {
        bail!("{}", changed.join("; "));
    }
    record.state = RunState::Up;
    dir.save_record(&record)?;
    Ok(())
}

/// A step as people read it, for the report of a failed `up`: `clone db/vda`, `boot tier 2`.
fn step_name(plan: &Plan, step: &Step) -> String {
    let segment = |s: &usize| plan.segments[*s].name.clone();
    match step {
        Step::CreateRunDir => "create the run directory".into(),
        Step::CreateOverlay(o) => format!("clone {}/{}", o.vm, o.target),
        Step::RestoreImage(r) => format!("restore the image of {}", r.vm),
        Step::CopyNvram { vm, .. } => format!("copy the nvram of {vm}"),
        Step::CopyPrivate { vm, what, .. } => format!("copy the {what} of {vm}"),
        Step::BuildDataDisk { injection } => {
            format!("build the data disk of {}", plan.injections[*injection].vm)
        }
        Step::CreateNetwork { segment: s } => format!("create network {}", segment(s)),
        Step::HardenBridge { segment: s } => format!("harden the bridge of {}", segment(s)),
        Step::StartServices { segment: s } => format!("start the services of {}", segment(s)),
        Step::VerifyNetworks => "verify the networks".into(),
        Step::BootTier { tier, .. } => format!("boot tier {}", tier + 1),
        Step::VerifyIsolation => "verify isolation".into(),
    }
}

pub(super) fn progress(msg: String) {
    eprintln!("reclab: {msg}");
}

/// What a step runs on.
pub(super) struct On<'a> {
    pub(super) plan: &'a Plan,
    pub(super) hv: &'a dyn Hypervisor,
    pub(super) host: &'a dyn Host,
    pub(super) dir: &'a RunDir,
}

fn run_step(
    on: &On,
    step: &Step,
    record: &mut RunRecord,
    report: &mut UpReport,
    injections: &mut [crate::restore::record::PlannedInjection],
    lock: &mut Option<RunLock>,
) -> Result<Option<String>> {
    let On {
        plan,
        hv,
        host,
        dir,
    } = *on;
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
            // Under the state directory's lock, so that a `gc` listing runs either sees the
            // directory already locked or not at all.
            let state_dir = dir
                .path
                .parent()
                .and_then(Path::parent)
                .context("run dir has a parent")?;
            let state_lock = StateLock::acquire(state_dir)?;
            dir.create()?;
            // Before any resource: a reclab with another state directory now knows that
            // whatever carries this run's tag is owned, and by whom.
            host.owner_register(plan.run.short(), &dir.path)?;
            *lock = Some(
                RunLock::acquire(dir)?
                    .with_context(|| format!("run directory {} vanished", dir.path.display()))?,
            );
            dir.save_record(record)?;
            drop(state_lock);
            progress(format!(
                "lab {} run {}: {}",
                plan.lab,
                plan.run.short(),
                dir.path.display()
            ));
            None
        }
        Step::RestoreImage(r) => {
            let rec = crate::lab::restore_cache::restore(host, r, &plan.uri)?;
            let label = format!("restore {} ({})", r.vm, rec.cache);
            record.restores.push(rec.clone());
            dir.save_record(record)?;
            report.restores.push(rec);
            Some(label)
        }
        Step::CreateOverlay(o) => {
            host.create_overlay(&o.path, &o.backing)
                .with_context(|| format!("vm {}: cloning disk {}", o.vm, o.target))?;
            Some(format!("clone {}/{}", o.vm, o.target))
        }
        Step::CopyNvram { vm, from, to } => {
            host.copy_file(from, to)
                .with_context(|| format!("vm {vm}: copying nvram {}", from.display()))?;
            Some(format!("nvram {vm}"))
        }
        Step::CopyPrivate {
            vm,
            what,
            from,
            to,
            dir,
            missing_ok,
        } => {
            if *missing_ok && !from.exists() {
                let note = format!(
                    "{vm}: production's {what} {} was not found, so the lab's starts empty: a guest that seals secrets to it (bitlocker, luks with tpm) will not unlock",
                    from.display()
                );
                progress(note.clone());
                record.changes.push(note.clone());
                report.changes.push(note);
                return Ok(Some(format!("{what} {vm} (none in production)")));
            }
            let copied = if *dir {
                host.copy_tree(from, to)
            } else {
                host.copy_file(from, to)
            };
            copied.with_context(|| format!("vm {vm}: copying its {what} {}", from.display()))?;
            Some(format!("{what} {vm}"))
        }
        Step::BuildDataDisk { injection } => {
            let p = &mut injections[*injection];
            let vm = plan
                .vms
                .iter()
                .find(|v| v.name == p.vm)
                .expect("planned vm");
            let image = vm.data_disk.clone().expect("planned data disk");
            host.build_data_disk(p, &image)?;
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
            if host.link_exists(&s.bridge)? {
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
            services::harden_bridge(host, dir, &s.bridge, &names::firewall_tag(&plan.run))?;
            None
        }
        Step::StartServices { segment } => {
            let s = plan.segments[*segment].services.as_ref().expect("planned");
            services::start(host, dir, s)?;
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
        Step::BootTier { tier, vms } => boot_tier(on, tier, vms, record, report, injections)?,
        Step::VerifyIsolation => {
            let found = verify_isolation(record, hv, host)?;
            report.isolation.extend(found.found);
            if found.probed.is_empty() {
                report
                    .isolation
                    .push("not tested from inside: no address outside the lab was probed".into());
            }
            Some("verify isolation".into())
        }
    })
}
