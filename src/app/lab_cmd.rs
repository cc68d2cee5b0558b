//! The lab commands: `check`, `points`, `up`, `down`, `status`, `exec`, `gc`, and their
//! terminal and JSON output.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use serde::Serialize;

use crate::app::Ctx;
use crate::lab::plan::{Plan, Step};
use crate::lab::{self, RunStatus, UpReport};
use crate::spec;

pub fn check(ctx: &Ctx, out: &mut dyn Write, lab: &Path, json: bool) -> Result<ExitCode> {
    let spec = spec::load(lab)?;
    let hv = ctx.open_for(&spec)?;
    let plan = lab::prepare(&spec, hv.as_ref(), &ctx.state_dir, &lab::UpOpts::default())?;
    if json {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&CheckWire::of(&plan))?
        )?;
    } else {
        write_check(out, &plan)?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn points(
    ctx: &Ctx,
    out: &mut dyn Write,
    lab: &Path,
    at: Option<&str>,
    tz: Option<&str>,
    json: bool,
) -> Result<ExitCode> {
    let spec = spec::load(lab)?;
    super::check_moment(at, tz)?;
    let now = crate::base::when::now_in(tz).map_err(|e| anyhow::anyhow!("--tz: {e}"))?;
    // Only snapshot sources need the hypervisor; backup files are dated on disk.
    let needs_hv = spec
        .vms
        .iter()
        .any(|vm| matches!(vm.source, spec::VmSource::Domain { .. }));
    let hv = match needs_hv {
        true => Some(ctx.open_for(&spec)?),
        false => None,
    };
    crate::restore::points_cmd::run_points(&spec, hv.as_deref(), at, &now, json, out)?;
    Ok(ExitCode::SUCCESS)
}

/// `up`; `opts` without the ttl, which is `ttl` parsed.
pub fn up(
    ctx: &Ctx,
    out: &mut dyn Write,
    lab: &Path,
    ttl: Option<&str>,
    mut opts: lab::UpOpts,
    json: bool,
) -> Result<ExitCode> {
    let spec = spec::load(lab)?;
    opts.ttl = ttl.map(super::parse_ttl).transpose()?;
    super::check_moment(opts.at.as_deref(), opts.tz.as_deref())?;
    let hv = ctx.open_for(&spec)?;
    let report = lab::up(
        &spec,
        hv.as_ref(),
        &lab::host::SysHost,
        &ctx.state_dir,
        &opts,
    )?;
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        write_up(out, &report)?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn down(ctx: &Ctx, out: &mut dyn Write, lab: &str) -> Result<ExitCode> {
    let n = lab::down(&ctx.state_dir, lab, &lab::host::SysHost, &|uri| {
        ctx.reopen(uri)
    })?;
    if n == 0 {
        writeln!(out, "nothing to tear down for {lab}")?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn status(ctx: &Ctx, out: &mut dyn Write, lab: Option<&str>, json: bool) -> Result<ExitCode> {
    let runs = lab::status(&ctx.state_dir, lab, &|uri| ctx.reopen(uri))?;
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&runs)?)?;
    } else {
        write_status(out, &runs)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `exec`: the guest command's stdout and stderr, exit 1 when it failed.
pub fn exec(
    ctx: &Ctx,
    out: &mut dyn Write,
    lab: &str,
    vm: &str,
    timeout: u64,
    command: &[String],
) -> Result<ExitCode> {
    let (_, rec) = lab::find_run(&ctx.state_dir, lab)?;
    let vmrec = lab::find_vm(&rec, vm)?;
    let hv = ctx.reopen(&rec.uri)?;
    let done = crate::hv::agent::sh(
        hv.as_ref(),
        &vmrec.domain,
        &command.join(" "),
        std::time::Duration::from_secs(timeout),
    )?;
    out.write_all(&done.stdout)?;
    std::io::stderr().write_all(&done.stderr)?;
    Ok(if done.exit_code == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub fn gc(ctx: &Ctx, out: &mut dyn Write, dry_run: bool) -> Result<ExitCode> {
    let uri = ctx.default_uri();
    let rep = lab::gc(
        &ctx.state_dir,
        dry_run,
        Some(&uri),
        &lab::host::SysHost,
        &|u| ctx.reopen(u),
    )?;
    let verb = if dry_run { "would remove" } else { "removed" };
    for r in rep.removed_runs.iter().chain(&rep.removed_foreign) {
        writeln!(out, "{verb} {r}")?;
    }
    for k in &rep.kept {
        writeln!(out, "kept {k}")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `check`: the lab, each VM with its disks and what the rewrite changes.
fn write_check(out: &mut dyn Write, plan: &Plan) -> std::io::Result<()> {
    writeln!(
        out,
        "lab {}: ok ({} vms, {} segments) on {}",
        plan.lab,
        plan.vms.len(),
        plan.segments.len(),
        plan.uri
    )?;
    for v in &plan.vms {
        writeln!(out, "  tier {} {}:", v.tier + 1, v.name)?;
        for o in &v.overlays {
            writeln!(
                out,
                "    disk {} <- {} ({}, {} bytes virtual)",
                o.target,
                o.backing.path.display(),
                o.backing.format,
                o.backing.virtual_size
            )?;
        }
        for c in &v.changes {
            writeln!(out, "    change: {c}")?;
        }
    }
    Ok(())
}

/// `up`: the run, its VMs, networks, restores and isolation checks.
fn write_up(out: &mut dyn Write, report: &UpReport) -> std::io::Result<()> {
    writeln!(
        out,
        "lab {} run {} is up (expires {})",
        report.lab, report.run, report.expires
    )?;
    for v in &report.vms {
        writeln!(
            out,
            "  tier {} {:<10} {:<32} ready in {:>5.1}s  {} {}",
            v.tier,
            v.name,
            v.domain,
            v.ready_after_ms as f64 / 1000.0,
            v.addresses.join(","),
            v.macs.join(",")
        )?;
    }
    for n in &report.networks {
        writeln!(out, "  network {n}")?;
    }
    for r in &report.injections {
        writeln!(
            out,
            "  restore {}: image {} ({}) + dump {} ({}), skew {}, sha256 {}…",
            r.vm,
            r.image.name,
            r.image.time,
            r.dump.name,
            r.dump.time,
            r.skew,
            &r.sha256[..12.min(r.sha256.len())]
        )?;
    }
    for r in &report.restores {
        writeln!(
            out,
            "  image {}: checkpoint {} of {} (restore cache {}, {:.1} s)",
            r.vm, r.checkpoint, r.backup, r.cache, r.seconds
        )?;
    }
    for c in &report.changes {
        writeln!(out, "  removed/changed: {c}")?;
    }
    for i in &report.isolation {
        writeln!(out, "  isolation: {i}")?;
    }
    writeln!(out, "  tear down with: reclab down {}", report.run)
}

/// `status`: each run with its VMs.
fn write_status(out: &mut dyn Write, runs: &[RunStatus]) -> std::io::Result<()> {
    if runs.is_empty() {
        return writeln!(out, "no labs");
    }
    for r in runs {
        writeln!(
            out,
            "lab {} run {} {} ({}m left, expires {})",
            r.lab,
            r.run,
            r.state,
            r.seconds_left.max(0) / 60,
            r.expires
        )?;
        for v in &r.vms {
            writeln!(
                out,
                "  {:<10} {:<10} {:<16} console {}",
                v.name,
                v.state,
                v.addresses.join(","),
                v.console.as_deref().unwrap_or("-")
            )?;
        }
    }
    Ok(())
}

/// `check --json`. Fields in alphabetical order: the output has always listed keys that way.
#[derive(Serialize)]
struct CheckWire<'a> {
    lab: &'a str,
    segments: Vec<SegmentWire<'a>>,
    steps: Vec<String>,
    uri: &'a str,
    vms: Vec<VmWire<'a>>,
}

#[derive(Serialize)]
struct SegmentWire<'a> {
    name: &'a str,
    /// `ADDRESS/PREFIX` of the lab services, when the segment has them.
    services: Option<String>,
}

#[derive(Serialize)]
struct VmWire<'a> {
    changes: &'a [String],
    disks: Vec<DiskWire<'a>>,
    macs: &'a [String],
    name: &'a str,
    /// 1-based, as in the terminal output.
    tier: usize,
}

#[derive(Serialize)]
struct DiskWire<'a> {
    format: &'a str,
    source: &'a Path,
    target: &'a str,
    virtual_size: u64,
}

impl<'a> CheckWire<'a> {
    fn of(plan: &'a Plan) -> Self {
        CheckWire {
            lab: &plan.lab,
            segments: plan
                .segments
                .iter()
                .map(|s| SegmentWire {
                    name: &s.name,
                    services: s
                        .services
                        .as_ref()
                        .map(|x| format!("{}/{}", x.address, x.prefix)),
                })
                .collect(),
            steps: plan.steps.iter().map(step_label).collect(),
            uri: &plan.uri,
            vms: plan
                .vms
                .iter()
                .map(|v| VmWire {
                    changes: &v.changes,
                    disks: v
                        .overlays
                        .iter()
                        .map(|o| DiskWire {
                            format: &o.backing.format,
                            source: &o.backing.path,
                            target: &o.target,
                            virtual_size: o.backing.virtual_size,
                        })
                        .collect(),
                    macs: &v.macs,
                    name: &v.name,
                    tier: v.tier + 1,
                })
                .collect(),
        }
    }
}

/// A step as `check --json` names it, e.g. `BootTier { tier: 0, vms: [0, 1] }`. The
/// format is the one these labels have always had (they were once the steps' `Debug`); it is
/// spelled out here so that changing a plan type's `Debug` cannot change the output.
fn step_label(step: &Step) -> String {
    fn q(s: &str) -> String {
        format!("{s:?}")
    }
    fn p(path: &Path) -> String {
        q(&path.to_string_lossy())
    }
    match step {
        Step::CreateRunDir => "CreateRunDir".into(),
        Step::RestoreImage(r) => format!(
            "RestoreImage {{ vm: {}, backup: {}, checkpoint: {}, entry: {} }}",
            q(&r.vm),
            p(&r.restore.dir),
            q(&r.restore.checkpoint),
            p(&r.restore.entry())
        ),
        Step::CreateOverlay(o) => format!(
            "CreateOverlay(OverlayPlan {{ vm: {}, target: {}, path: {}, backing: Layer {{ \
             path: {}, format: {}, block: {}, virtual_size: {} }} }})",
            q(&o.vm),
            q(&o.target),
            p(&o.path),
            p(&o.backing.path),
            q(&o.backing.format),
            o.backing.block,
            o.backing.virtual_size
        ),
        Step::CopyNvram { vm, from, to } => format!(
            "CopyNvram {{ vm: {}, from: {}, to: {} }}",
            q(vm),
            p(from),
            p(to)
        ),
        Step::CopyPrivate {
            vm,
            what,
            from,
            to,
            dir,
            missing_ok,
        } => format!(
            "CopyPrivate {{ vm: {}, what: {}, from: {}, to: {}, dir: {dir}, missing_ok: {missing_ok} }}",
            q(vm),
            q(what),
            p(from),
            p(to)
        ),
        Step::BuildDataDisk { injection } => format!("BuildDataDisk {{ injection: {injection} }}"),
        Step::CreateNetwork { segment } => format!("CreateNetwork {{ segment: {segment} }}"),
        Step::HardenBridge { segment } => format!("HardenBridge {{ segment: {segment} }}"),
        Step::StartServices { segment } => format!("StartServices {{ segment: {segment} }}"),
        Step::VerifyNetworks => "VerifyNetworks".into(),
        Step::BootTier { tier, vms } => format!("BootTier {{ tier: {tier}, vms: {vms:?} }}"),
        Step::VerifyIsolation => "VerifyIsolation".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::plan::OverlayPlan;
    use crate::lab::resolved::Layer;

    fn overlay() -> OverlayPlan {
        OverlayPlan {
            vm: "db".into(),
            target: "vda".into(),
            path: "/var/lib/reclab/runs/r1/db-vda.qcow2".into(),
            backing: Layer {
                path: "/srv/backups/db \"nightly\".qcow2".into(),
                format: "qcow2".into(),
                block: false,
                virtual_size: 10737418240,
            },
        }
    }

    #[test]
    fn step_labels_keep_their_wire_spelling() {
        let cases = [
            (Step::CreateRunDir, "CreateRunDir"),
            (
                Step::CreateOverlay(overlay()),
                r#"CreateOverlay(OverlayPlan { vm: "db", target: "vda", path: "/var/lib/reclab/runs/r1/db-vda.qcow2", backing: Layer { path: "/srv/backups/db \"nightly\".qcow2", format: "qcow2", block: false, virtual_size: 10737418240 } })"#,
            ),
            (
                Step::CopyNvram {
                    vm: "app".into(),
                    from: "/nvram/app_VARS.fd".into(),
                    to: "/runs/r1/app_VARS.fd".into(),
                },
                r#"CopyNvram { vm: "app", from: "/nvram/app_VARS.fd", to: "/runs/r1/app_VARS.fd" }"#,
            ),
            (
                Step::BuildDataDisk { injection: 1 },
                "BuildDataDisk { injection: 1 }",
            ),
            (
                Step::CreateNetwork { segment: 0 },
                "CreateNetwork { segment: 0 }",
            ),
            (
                Step::HardenBridge { segment: 2 },
                "HardenBridge { segment: 2 }",
            ),
            (
                Step::StartServices { segment: 0 },
                "StartServices { segment: 0 }",
            ),
            (Step::VerifyNetworks, "VerifyNetworks"),
            (
                Step::BootTier {
                    tier: 1,
                    vms: vec![0, 2],
                },
                "BootTier { tier: 1, vms: [0, 2] }",
            ),
            (Step::VerifyIsolation, "VerifyIsolation"),
        ];
        for (step, label) in cases {
            assert_eq!(step_label(&step), label);
        }
    }
}
