//! The lab lifecycle executor: `check`, `up`, `down`, `status`, `gc`.
//!
//! ```text
//!  lab.toml ──spec──▶ LabSpec ──resolve (reads libvirt, images)──▶ ResolvedVm[]
//!        ──plan (pure)──▶ Plan{steps} ──execute: journal, then create──▶ running lab
//!        ──down / gc / failure──▶ teardown (journal replayed in reverse, idempotent)
//! ```

pub mod image;
pub mod journal;
pub mod plan;
pub mod resolve;
pub mod services;
pub mod teardown;

use anyhow::{Context, Result, bail};
use serde::Serialize;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::base::names::{self, RunId};
use crate::base::sys;
use crate::hv::agent;
use crate::hv::{DomState, Hypervisor};
use crate::lab::journal::{Resource, RunDir, RunRecord, RunState, SegmentRecord, VmRecord};
use crate::lab::plan::{Plan, PlanInputs, Step};
use crate::spec::LabSpec;
use crate::xml;

/// Options of `up`.
#[derive(Debug, Clone, Default)]
pub struct UpOpts {
    pub ttl: Option<Duration>,
    pub keep_on_failure: bool,
    /// `--at`: which moment to restore (`latest` when `None`).
    pub at: Option<String>,
    /// Time zone for `--at` wall-clock times and messages (the system's when `None`).
    pub tz: Option<String>,
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
    pub injections: Vec<crate::restore::InjectionRecord>,
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
    let patterns = spec.vms.iter().any(|v| {
        matches!(&v.source, crate::spec::VmSource::Domain { snapshot, .. } if snapshot.contains('*'))
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
    let resolved = resolve::resolve(spec, hv)?;
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
    state_dir: &Path,
    opts: &UpOpts,
) -> Result<UpReport> {
    let t0 = Instant::now();
    let plan = prepare(spec, hv, state_dir, opts)?;
    let mut fingerprints = Vec::new();
    for vm in &plan.vms {
        for o in &vm.overlays {
            // Every layer of the chain is production's; the overlays are ours.
            fingerprints.push(image::fingerprint(&o.backing.path)?);
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
    };
    let result = execute(&plan, hv, &dir, fingerprints, &mut report);
    match result {
        Ok(()) => Ok(report),
        Err(e) => {
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
                match teardown::teardown(Some(hv), &dir) {
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

fn execute(
    plan: &Plan,
    hv: &dyn Hypervisor,
    dir: &RunDir,
    fingerprints: Vec<crate::lab::journal::Fingerprint>,
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

fn progress(msg: String) {
    eprintln!("reclab: {msg}");
}

fn run_step(
    plan: &Plan,
    hv: &dyn Hypervisor,
    dir: &RunDir,
    step: &Step,
    record: &mut RunRecord,
    report: &mut UpReport,
    injections: &mut [crate::restore::inject::PlannedInjection],
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
                Option<crate::restore::inject::PlannedInjection>,
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
            Some(format!(
                "boot tier {} ({:.1}s)",
                tier + 1,
                t.elapsed().as_secs_f64()
            ))
        }
        Step::VerifyIsolation => {
            let found = verify_isolation(record, hv)?;
            report.isolation.extend(found);
            Some("verify isolation".into())
        }
    })
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

/// Addresses of the namespace reclab runs in (the hypervisor side), without loopback.
fn host_addresses() -> Result<Vec<String>> {
    let out = sys::run_stdout("ip", &["-4", "-o", "addr", "show"])?;
    Ok(out
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3))
        .filter_map(|cidr| cidr.split('/').next())
        .filter(|a| !a.starts_with("127."))
        .map(String::from)
        .collect())
}

/// Static and dynamic isolation checks of a running lab; an error if anything reaches outside.
/// Used after boot by `up` and as the built-in `isolation` check of `verify`.
pub fn verify_isolation(rec: &RunRecord, hv: &dyn Hypervisor) -> Result<Vec<String>> {
    let mut found = Vec::new();
    // Only lab interfaces on the bridges: the VMs' taps and reclab's services links.
    let mut ours: Vec<String> = rec
        .segments
        .iter()
        .filter_map(|s| s.services_link.clone())
        .collect();
    for vm in &rec.vms {
        if let Ok(f) = hv
            .domain_xml(&vm.domain, false)
            .and_then(|x| crate::xml::facts::facts(&x))
        {
            ours.extend(f.interfaces.into_iter().filter_map(|i| i.target));
        }
    }
    for s in &rec.segments {
        let live = hv.network_xml(&s.network)?;
        if let Err(problems) = xml::network::check_isolated(&live, &s.bridge) {
            bail!(
                "lab network {} is not isolated: {}",
                s.network,
                problems.join("; ")
            );
        }
        found.push(format!(
            "network {}: no forward, no host address",
            s.network
        ));
        let brif = Path::new("/sys/class/net").join(&s.bridge).join("brif");
        let mut members: Vec<String> = std::fs::read_dir(&brif)
            .with_context(|| {
                format!(
                    "reading {} (is reclab running on the hypervisor?)",
                    brif.display()
                )
            })?
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect();
        members.sort();
        let foreign: Vec<&String> = members.iter().filter(|m| !ours.contains(m)).collect();
        if !foreign.is_empty() {
            bail!(
                "bridge {} has interfaces that are not the lab's: {foreign:?}",
                s.bridge
            );
        }
        found.push(format!(
            "bridge {}: only lab interfaces ({})",
            s.bridge,
            members.join(", ")
        ));
    }
    // From inside the lab: the hypervisor's own addresses must not answer.
    let served: Vec<String> = rec
        .segments
        .iter()
        .filter_map(|s| s.services_address.clone())
        .collect();
    let probes: Vec<String> = host_addresses()?
        .into_iter()
        .filter(|a| !served.contains(a))
        .collect();
    let Some(prober) = rec.vms.first() else {
        return Ok(found);
    };
    for addr in probes {
        let out = agent::sh(
            hv,
            &prober.domain,
            &format!("ping -c 1 -W 2 {addr}"),
            Duration::from_secs(10),
        )
        .with_context(|| format!("probing {addr} from {}", prober.name))?;
        if out.exit_code == 0 {
            bail!(
                "isolation breach: {} reached hypervisor address {addr} from inside the lab",
                prober.name
            );
        }
        found.push(format!(
            "{} cannot reach hypervisor address {addr}",
            prober.name
        ));
    }
    Ok(found)
}

/// Runs matching a lab name or run id (all runs with `None`).
pub fn find_runs(
    state_dir: &Path,
    which: Option<&str>,
) -> Result<Vec<(RunDir, Option<RunRecord>)>> {
    let mut out = Vec::new();
    for dir in RunDir::all(state_dir)? {
        let rec = dir.load_record()?;
        let short = dir
            .path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let matches = match which {
            None => true,
            Some(w) => {
                short == w
                    || rec
                        .as_ref()
                        .is_some_and(|r| r.lab == w || r.run_id.0.starts_with(w))
            }
        };
        if matches {
            out.push((dir, rec));
        }
    }
    Ok(out)
}

/// Find exactly one run by lab name or run id; errors name the way out.
pub fn find_run(state_dir: &Path, which: &str) -> Result<(RunDir, RunRecord)> {
    let runs = find_runs(state_dir, Some(which))?;
    let mut with_record: Vec<(RunDir, RunRecord)> = runs
        .into_iter()
        .filter_map(|(d, r)| r.map(|r| (d, r)))
        .collect();
    match with_record.len() {
        0 => bail!("no running lab {which:?}; see `reclab status`"),
        1 => Ok(with_record.remove(0)),
        _ => bail!("{which:?} names several runs; give a run id (see `reclab status`)"),
    }
}

/// The VM `name` of a run; the error lists the lab's VMs.
pub fn find_vm<'a>(rec: &'a RunRecord, name: &str) -> Result<&'a VmRecord> {
    rec.vms.iter().find(|v| v.name == name).with_context(|| {
        let names: Vec<&str> = rec.vms.iter().map(|v| v.name.as_str()).collect();
        format!(
            "lab {} has no vm {name:?}; its vms: {}",
            rec.lab,
            names.join(", ")
        )
    })
}

/// Tear down runs; returns how many were removed.
pub fn down(
    state_dir: &Path,
    which: &str,
    open: &dyn Fn(&str) -> Result<Box<dyn Hypervisor>>,
) -> Result<usize> {
    let runs = find_runs(state_dir, Some(which))?;
    let mut n = 0;
    for (dir, rec) in runs {
        remove_run(&dir, rec, open)?;
        n += 1;
    }
    Ok(n)
}

fn remove_run(
    dir: &RunDir,
    rec: Option<RunRecord>,
    open: &dyn Fn(&str) -> Result<Box<dyn Hypervisor>>,
) -> Result<()> {
    let uri = rec.as_ref().map(|r| r.uri.clone());
    let needs_hv = dir
        .resources()?
        .iter()
        .any(|r| matches!(r, Resource::Domain { .. } | Resource::Network { .. }));
    let hv = match (&uri, needs_hv) {
        (Some(u), true) => Some(open(u)?),
        (None, true) => Some(open("")?),
        _ => None,
    };
    if let Some(mut r) = rec.clone() {
        r.state = RunState::TearingDown;
        let _ = dir.save_record(&r);
    }
    let left = teardown::teardown(hv.as_deref(), dir)?;
    if !left.is_empty() {
        let msgs: Vec<String> = left
            .iter()
            .map(|(r, w)| format!("{}: {w}", r.describe()))
            .collect();
        bail!(
            "could not remove everything of run {}: {}",
            dir.path.display(),
            msgs.join("; ")
        );
    }
    if let Some(r) = rec {
        let changed = image::changed(&r.fingerprints);
        if !changed.is_empty() {
            bail!("{}", changed.join("; "));
        }
        progress(format!(
            "lab {} run {} removed; production images unchanged",
            r.lab,
            r.run_id.short()
        ));
    }
    Ok(())
}

/// `status` entry for one run.
#[derive(Debug, Clone, Serialize)]
pub struct RunStatus {
    pub lab: String,
    pub run: String,
    pub state: String,
    pub created: String,
    pub expires: String,
    pub seconds_left: i64,
    pub vms: Vec<VmStatus>,
    pub networks: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VmStatus {
    pub name: String,
    pub domain: String,
    pub state: String,
    pub addresses: Vec<String>,
    pub macs: Vec<String>,
    pub console: Option<String>,
}

pub fn status(
    state_dir: &Path,
    which: Option<&str>,
    open: &dyn Fn(&str) -> Result<Box<dyn Hypervisor>>,
) -> Result<Vec<RunStatus>> {
    let now = jiff::Timestamp::now();
    let mut out = Vec::new();
    for (dir, rec) in find_runs(state_dir, which)? {
        let Some(rec) = rec else { continue };
        let hv = open(&rec.uri).ok();
        let mut vms = Vec::new();
        for vm in &rec.vms {
            let (state, console) = match &hv {
                Some(hv) => {
                    let st = match hv.domain_state(&vm.domain) {
                        Ok(Some(DomState::Running)) => "running",
                        Ok(Some(DomState::Paused)) => "paused",
                        Ok(Some(DomState::ShutOff)) => "shut off",
                        Ok(Some(DomState::Crashed)) => "crashed",
                        Ok(Some(DomState::Other)) => "other",
                        Ok(None) => "absent",
                        Err(_) => "unknown",
                    };
                    let console = hv
                        .domain_xml(&vm.domain, false)
                        .ok()
                        .and_then(|x| crate::xml::facts::facts(&x).ok())
                        .and_then(|f| f.graphics.iter().find_map(|g| g.endpoint()));
                    (st.to_string(), console)
                }
                None => ("unreachable".to_string(), None),
            };
            vms.push(VmStatus {
                name: vm.name.clone(),
                domain: vm.domain.clone(),
                state,
                addresses: vm.addresses.clone(),
                macs: vm.macs.clone(),
                console,
            });
        }
        let left = rec
            .expires
            .parse::<jiff::Timestamp>()
            .map(|e| e.as_second() - now.as_second())
            .unwrap_or(0);
        let _ = dir;
        out.push(RunStatus {
            lab: rec.lab.clone(),
            run: rec.run_id.short().to_string(),
            state: format!("{:?}", rec.state).to_lowercase(),
            created: rec.created.clone(),
            expires: rec.expires.clone(),
            seconds_left: left,
            vms,
            networks: rec.networks.clone(),
        });
    }
    Ok(out)
}

/// What `gc` found and did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GcReport {
    pub removed_runs: Vec<String>,
    pub removed_foreign: Vec<String>,
    pub kept: Vec<String>,
}

/// Remove expired and orphaned runs, then sweep tagged leftovers no run knows about.
pub fn gc(
    state_dir: &Path,
    dry_run: bool,
    sweep_uri: Option<&str>,
    open: &dyn Fn(&str) -> Result<Box<dyn Hypervisor>>,
) -> Result<GcReport> {
    let now = jiff::Timestamp::now();
    let mut rep = GcReport::default();
    let mut known = Vec::new();
    for (dir, rec) in find_runs(state_dir, None)? {
        let short = dir
            .path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let why = match &rec {
            None => Some("no run record (crashed while starting)".to_string()),
            Some(r) => {
                let expired = r
                    .expires
                    .parse::<jiff::Timestamp>()
                    .map(|e| e <= now)
                    .unwrap_or(true);
                let owner_alive = sys::process_alive(r.owner_pid, r.owner_start);
                if expired {
                    Some(format!("expired at {}", r.expires))
                } else if matches!(r.state, RunState::Creating | RunState::TearingDown)
                    && !owner_alive
                {
                    Some(format!(
                        "orphaned: its reclab process {} is gone",
                        r.owner_pid
                    ))
                } else {
                    None
                }
            }
        };
        match why {
            Some(why) => {
                let label = format!("run {short} ({why})");
                if !dry_run {
                    remove_run(&dir, rec, open).with_context(|| format!("removing run {short}"))?;
                }
                rep.removed_runs.push(label);
            }
            None => {
                known.push(short.clone());
                rep.kept.push(format!("run {short}"));
            }
        }
    }
    // Sweep: anything carrying reclab's tag or name whose run is unknown.
    if let Some(hv) = sweep_uri.and_then(|uri| open(uri).ok()) {
        {
            for d in hv.list_domains()? {
                let Some(meta) = hv.domain_metadata(&d.name, xml::domain::RECLAB_NS)? else {
                    continue;
                };
                let Some(m) = xml::domain::parse_lab_metadata(&meta) else {
                    continue;
                };
                if known.iter().any(|k| m.run.starts_with(k.as_str())) {
                    continue;
                }
                if !dry_run {
                    teardown::undo(
                        Some(hv.as_ref()),
                        &Resource::Domain {
                            name: d.name.clone(),
                        },
                    )?;
                }
                rep.removed_foreign.push(format!("domain {}", d.name));
            }
            for n in hv.list_networks()? {
                let Some(short) = tagged_short(&n.name) else {
                    continue;
                };
                if known.contains(&short) {
                    continue;
                }
                if !dry_run {
                    hv.destroy_network(&n.name)?;
                }
                rep.removed_foreign.push(format!("network {}", n.name));
            }
        }
    }
    // Network namespaces are not swept by name: /run/netns is shared by every state
    // directory on the host, and each namespace reclab creates is in its run's journal first.
    for program in ["iptables", "ip6tables"] {
        let Ok(rules) = sys::run_stdout(program, &["-w", "-S"]) else {
            continue;
        };
        for line in rules.lines() {
            let Some(pos) = line.find("reclab:") else {
                continue;
            };
            let short: String = line[pos + 7..].chars().take(8).collect();
            if known.contains(&short) || !line.starts_with("-A ") {
                continue;
            }
            let mut parts: Vec<String> = shell_split(&line[3..]);
            if parts.is_empty() {
                continue;
            }
            let chain = parts.remove(0);
            if !dry_run {
                teardown::undo(
                    None,
                    &Resource::Firewall {
                        program: program.into(),
                        chain,
                        rule: parts,
                    },
                )?;
            }
            rep.removed_foreign.push(format!("{program} rule {line}"));
        }
    }
    Ok(rep)
}

/// The run short id in a `reclab-<8 hex>-…` name.
fn tagged_short(name: &str) -> Option<String> {
    let rest = name.strip_prefix(names::PREFIX)?;
    let short = rest.get(..8)?;
    (short.chars().all(|c| c.is_ascii_hexdigit()) && rest.get(8..9) == Some("-"))
        .then(|| short.to_string())
}

/// Split an `iptables -S` line (quotes only appear around comments).
fn shell_split(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '"' => quoted = !quoted,
            ' ' if !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tagged_names_yield_their_run() {
        assert_eq!(
            tagged_short("reclab-0123abcd-lan").as_deref(),
            Some("0123abcd")
        );
        assert_eq!(tagged_short("reclab-sbx-e2e"), None);
        assert_eq!(tagged_short("prod"), None);
    }

    #[test]
    fn iptables_lines_split_with_quoted_comments() {
        assert_eq!(
            shell_split(r#"INPUT -i rl1s0 -m comment --comment "reclab:0123abcd" -j DROP"#),
            vec![
                "INPUT",
                "-i",
                "rl1s0",
                "-m",
                "comment",
                "--comment",
                "reclab:0123abcd",
                "-j",
                "DROP"
            ]
        );
    }

    #[test]
    fn passwords_fit_vnc() {
        let p = random_password();
        assert_eq!(p.len(), 8);
    }
}
