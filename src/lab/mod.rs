//! The lab lifecycle executor: `check`, `up`, `down`, `status`, `gc`.
//!
//! ```text
//!  lab.toml ──spec──▶ LabSpec ──resolve (reads libvirt, images)──▶ ResolvedVm[]
//!        ──plan (pure)──▶ Plan{steps} ──execute: journal, then create──▶ running lab
//!        ──down / gc / failure──▶ teardown (journal replayed in reverse, idempotent)
//! ```
//!
//! `plan` is pure: it imports only `base`, `spec` types, `xml`, `lab::{record, resolved,
//! services::rules}` and `restore::record`. Everything the executor and teardown do goes through
//! two traits, [`crate::hv::Hypervisor`] (libvirt) and [`host::Host`] (qemu-img, ip, iptables,
//! dnsmasq, /sys): `hv::fake::FakeHv` and `lab::fake::FakeHost` (tests only) let the unit tests in
//! `unwind.rs` fail, crash and unwind a whole run at every step.

mod boot;
mod execute;
#[cfg(any(test, feature = "test-hooks"))]
pub mod fake;
mod gc;
#[cfg(feature = "test-hooks")]
mod hooks;
pub mod host;
pub mod image;
mod isolation;
pub mod journal;
pub mod lock;
pub mod plan;
pub mod record;
pub mod resolve;
pub mod resolved;
pub mod restore_cache;
mod runs;
pub mod services;
pub mod teardown;
#[cfg(test)]
mod unwind;

pub use gc::{GcReport, down, down_held, gc};
pub use isolation::{Isolation, verify_isolation};
pub use runs::{RunStatus, VmStatus, find_run, find_runs, find_vm, status};

use anyhow::{Context, Result};
use serde::Serialize;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::base::names::RunId;
use crate::hv::Hypervisor;
use crate::lab::host::Host;
use crate::lab::journal::RunDir;
use crate::lab::lock::RunLock;
use crate::lab::plan::{Plan, PlanInputs};
use crate::lab::record::{Owner, RunState};
use crate::spec::LabSpec;

/// Options of `up`.
#[derive(Debug, Clone, Default)]
pub struct UpOpts {
    pub ttl: Option<Duration>,
    pub keep_on_failure: bool,
    /// `--at`: which moment to restore (`latest` when `None`).
    pub at: Option<String>,
    /// Time zone for `--at` wall-clock times and messages (the system's when `None`).
    pub tz: Option<String>,
    /// Who owns the run once it is up (recorded in `run.json` for `gc`).
    pub owner: Owner,
}

/// Outcome of `up`, printed by `main` (as text or JSON).
#[derive(Debug, Clone, Serialize)]
pub struct UpReport {
    pub lab: String,
    pub run: String,
    pub run_dir: String,
    pub expires: String,
    pub vms: Vec<VmUp>,
    pub networks: Vec<String>,
    pub changes: Vec<String>,
    pub isolation: Vec<String>,
    pub timings_ms: Vec<(String, u128)>,
    /// `--at` as given and the moment it meant.
    pub at: String,
    pub at_time: Option<String>,
    pub injections: Vec<crate::restore::record::InjectionRecord>,
    /// Images restored from virtnbdbackup chains: cache hit or miss, seconds.
    pub restores: Vec<crate::lab::record::RestoreRecord>,
    /// The step `up` was in when it failed (`boot tier 2`): only in the report of a failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_step: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VmUp {
    pub name: String,
    pub domain: String,
    pub tier: usize,
    pub ready_after_ms: u128,
    pub macs: Vec<String>,
    pub addresses: Vec<String>,
}

fn random_password() -> String {
    use rand::RngExt;
    const CHARS: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    (0..8)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

/// Resolve and plan without creating anything (`reclab check`, and the first half of `up`):
/// resolve the sources, choose the restore point for `--at`, verify the chosen dumps.
pub fn prepare(
    spec: &LabSpec,
    hv: &dyn Hypervisor,
    state_dir: &Path,
    opts: &UpOpts,
) -> Result<Plan> {
    let now =
        crate::base::when::now_in(opts.tz.as_deref()).map_err(|e| anyhow::anyhow!("--tz: {e}"))?;
    let tz = now.time_zone().clone();
    let when = crate::base::when::parse_when(opts.at.as_deref().unwrap_or("latest"), &now)
        .map_err(|e| anyhow::anyhow!("--at: {e}"))?;
    let patterns = spec.vms.iter().any(|v| match &v.source {
        crate::spec::VmSource::Domain { snapshot, .. } => snapshot.contains('*'),
        crate::spec::VmSource::Virtnbdbackup { .. } => true,
        crate::spec::VmSource::Files { .. } => false,
    });
    let wants_points = opts.at.is_some() || patterns || spec.vms.iter().any(|v| v.dumps.is_some());
    let (choices, injections) = if wants_points {
        crate::restore::inject::choose_injections(spec, hv, &when, now.timestamp(), &tz)?
    } else {
        (Vec::new(), Vec::new())
    };
    // Snapshot patterns become the snapshot chosen for the moment.
    let chosen = crate::restore::with_chosen_snapshots(spec, &choices);
    let spec = &chosen;
    let resolved = resolve::resolve(spec, hv, &resolve::restore_cache_dir(state_dir))?;
    let run = RunId::new();
    let run_dir = RunDir::new(state_dir, &run).path;
    let passwords: Vec<String> = spec.vms.iter().map(|_| random_password()).collect();
    plan::plan(&PlanInputs {
        spec,
        resolved: &resolved,
        run: &run,
        uri: &hv.uri(),
        run_dir: &run_dir,
        now: now.timestamp(),
        ttl: opts.ttl.unwrap_or(spec.ttl),
        passwords: &passwords,
        injections: &injections,
    })
}

/// Bring a lab up. On failure everything created is removed (unless `keep_on_failure`).
pub fn up(
    spec: &LabSpec,
    hv: &dyn Hypervisor,
    host: &dyn Host,
    state_dir: &Path,
    opts: &UpOpts,
) -> Result<UpReport> {
    up_held(spec, hv, host, state_dir, opts, &mut None).map(|(report, _lock)| report)
}

/// [`up`], keeping the run's lock (taken when its directory was created) for the caller:
/// `reclab run` holds it for the whole drill and hands it to [`down_held`]. On failure,
/// `partial` says how far it got: the restore points it chose (and verified on the host), the
/// steps it finished with their times, and the step it failed in (`None` when `up` failed
/// before it had a plan).
pub fn up_held(
    spec: &LabSpec,
    hv: &dyn Hypervisor,
    host: &dyn Host,
    state_dir: &Path,
    opts: &UpOpts,
    partial: &mut Option<UpReport>,
) -> Result<(UpReport, RunLock)> {
    #[cfg(feature = "test-hooks")]
    let mut after_step = hooks::from_env();
    #[cfg(not(feature = "test-hooks"))]
    let mut after_step = |_: &RunDir, _: execute::StepNo, _: &plan::Step| Ok(());
    let t0 = Instant::now();
    let plan = prepare(spec, hv, state_dir, opts)?;
    bring_up_held(&plan, hv, host, opts, t0, &mut after_step, partial)
}

/// Carry out a plan: execute its steps, running `after_step` after each (an error from it
/// fails `up` right there); on failure, unwind (unless `keep_on_failure`).
#[cfg(test)]
fn bring_up(
    plan: &Plan,
    hv: &dyn Hypervisor,
    host: &dyn Host,
    opts: &UpOpts,
    t0: Instant,
    after_step: &mut execute::AfterStep,
    partial: &mut Option<UpReport>,
) -> Result<UpReport> {
    bring_up_held(plan, hv, host, opts, t0, after_step, partial).map(|(report, _lock)| report)
}

/// [`bring_up`], returning the run's lock: held from the run directory's creation on, also
/// while a failure unwinds.
fn bring_up_held(
    plan: &Plan,
    hv: &dyn Hypervisor,
    host: &dyn Host,
    opts: &UpOpts,
    t0: Instant,
    after_step: &mut execute::AfterStep,
    partial: &mut Option<UpReport>,
) -> Result<(UpReport, RunLock)> {
    let mut fingerprints = Vec::new();
    for vm in &plan.vms {
        match &vm.backup {
            // The restored image is ours (the cache's); the backup store's files are not.
            Some(b) => {
                for path in &b.reads {
                    fingerprints.push(image::fingerprint(path)?);
                }
            }
            None => {
                for o in &vm.overlays {
                    // Every layer of the chain is production's; the overlays are ours.
                    fingerprints.push(image::fingerprint(&o.backing.path)?);
                }
            }
        }
    }
    let dir = RunDir {
        path: plan.run_dir.clone(),
    };
    let mut report = UpReport {
        lab: plan.lab.clone(),
        run: plan.run.short().to_string(),
        run_dir: plan.run_dir.display().to_string(),
        expires: plan.expires.to_string(),
        vms: Vec::new(),
        networks: plan
            .segments
            .iter()
            .map(|s| format!("{} (bridge {})", s.network, s.bridge))
            .collect(),
        changes: plan
            .vms
            .iter()
            .flat_map(|v| v.changes.iter().map(move |c| format!("{}: {c}", v.name)))
            .collect(),
        isolation: Vec::new(),
        timings_ms: vec![("resolve+plan".into(), t0.elapsed().as_millis())],
        at: opts.at.clone().unwrap_or_else(|| "latest".into()),
        at_time: plan
            .injections
            .first()
            .and_then(|p| p.record.at_time.clone()),
        injections: Vec::new(),
        restores: Vec::new(),
        failed_step: None,
    };
    // From here on SIGINT/SIGTERM unwind (below) instead of ending the process.
    let _signals = crate::base::cancel::catch_signals();
    let mut claim = execute::Claim::new(opts.owner, fingerprints);
    let result = execute::execute(plan, hv, host, &dir, &mut claim, &mut report, after_step);
    match result {
        Ok(()) => Ok((
            report,
            claim.lock.context("up finished without its run's lock")?,
        )),
        Err(e) => {
            // What was chosen is known before anything was created: the report of a failed
            // drill shows it even when no VM got as far as its restore.
            if report.injections.is_empty() {
                report.injections = plan.injections.iter().map(|p| p.record.clone()).collect();
            }
            *partial = Some(report);
            if opts.keep_on_failure {
                if let Ok(Some(mut rec)) = dir.load_record() {
                    rec.state = RunState::Failed;
                    let _ = dir.save_record(&rec);
                }
                Err(e.context(format!(
                    "lab {} (run {}) failed and was kept for inspection; remove it with \
                     `reclab down {}`",
                    plan.lab,
                    plan.run.short(),
                    plan.run.short()
                )))
            } else {
                eprintln!("reclab: up failed, removing what was created");
                match teardown::teardown(Some(hv), host, &dir) {
                    Ok(left) if left.is_empty() => {}
                    Ok(left) => {
                        for (r, why) in left {
                            eprintln!("reclab: could not remove {}: {why}", r.describe());
                        }
                    }
                    Err(te) => eprintln!("reclab: teardown failed too: {te:#}"),
                }
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_fit_vnc() {
        let p = random_password();
        assert_eq!(p.len(), 8);
    }
}
