//! Drills: `verify` (run the checks on a running lab) and `run` (up, verify, report, down in
//! one go, for schedules), and `history`.
//!
//! Reports outlive their lab: they go to `STATE/labs/<lab>/reports/<run8>/` (JSON, JUnit, HTML
//! with screenshots, terminal summary), and every drill appends a line to the lab's history.

use anyhow::{Context, Result, bail};
use jiff::Timestamp;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::hv::Hypervisor;
use crate::journal::RunRecord;
use crate::lab::{self, UpOpts};
use crate::report::{self, DrillReport, Phase};
use crate::spec::{self, LabSpec};
use crate::verify::{self, CheckContext, CheckResult, Status};

/// Where a run's report goes.
pub fn report_dir(state_dir: &Path, lab: &str, run: &str) -> PathBuf {
    state_dir.join("labs").join(lab).join("reports").join(run)
}

/// The built-in isolation check of a running lab, as a check result.
fn isolation_result(rec: &RunRecord, hv: &dyn Hypervisor) -> CheckResult {
    let t = Instant::now();
    let (status, details, got) = match lab::verify_isolation(rec, hv) {
        Ok(found) => (Status::Pass, found, None),
        Err(e) => (Status::Fail, vec![], Some(format!("{e:#}"))),
    };
    CheckResult {
        name: "isolation".into(),
        vm: rec.vms.first().map(|v| v.name.clone()).unwrap_or_default(),
        kind: "isolation".into(),
        status,
        duration: t.elapsed(),
        expected: Some(
            "nothing outside the lab reachable; only lab interfaces on the bridges".into(),
        ),
        got,
        details,
        output_tail: None,
        screenshot: None,
    }
}

/// Run the lab file's checks (or the defaults) plus the isolation check on a running lab.
pub fn run_checks(
    spec: &LabSpec,
    rec: &RunRecord,
    hv: &dyn Hypervisor,
    ctx: &CheckContext,
) -> Vec<CheckResult> {
    let domain_of = |vm: &str| {
        rec.vms
            .iter()
            .find(|v| v.name == vm)
            .map(|v| v.domain.clone())
            .unwrap_or_default()
    };
    let checks = if spec.checks.is_empty() {
        let names: Vec<String> = rec.vms.iter().map(|v| v.name.clone()).collect();
        let has_screen = |vm: &str| {
            hv.domain_xml(&domain_of(vm), false)
                .ok()
                .and_then(|x| crate::inspect::facts(&x).ok())
                .is_some_and(|f| !f.graphics.is_empty())
        };
        verify::default_checks(&names, &has_screen)
    } else {
        spec.checks.clone()
    };
    let mut results = vec![isolation_result(rec, hv)];
    results.extend(verify::run_checks(hv, &domain_of, &checks, ctx));
    results
}

/// Write the report files, append the history line; returns the HTML path.
pub fn publish(state_dir: &Path, rep: &DrillReport) -> Result<PathBuf> {
    let dir = report_dir(state_dir, &rep.lab, &rep.run);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let files = report::write_report(&dir, rep)?;
    let hist = report::history_path(state_dir, &rep.lab);
    report::append_history(&hist, &rep.summary(Some(&dir)))?;
    Ok(files.html)
}

fn phase(rep: &mut DrillReport, name: &str, started: Timestamp, t: Instant, ok: bool) {
    rep.phases.push(Phase {
        name: name.into(),
        started_at: started,
        duration: t.elapsed(),
        ok,
    });
}

/// `reclab verify LAB`: re-run the checks on a running lab and report.
pub fn verify_running(
    state_dir: &Path,
    which: &str,
    open: &dyn Fn(&str) -> Result<Box<dyn Hypervisor>>,
) -> Result<(DrillReport, PathBuf)> {
    let runs = lab::find_runs(state_dir, Some(which))?;
    let rec = match runs.as_slice() {
        [(_, Some(rec))] => rec.clone(),
        [] => bail!("no running lab {which:?}; see `reclab status`"),
        _ => bail!("{which:?} names several runs; give a run id (see `reclab status`)"),
    };
    let spec = spec::load(&rec.lab_file).map_err(|e| anyhow::anyhow!("{e}"))?;
    let hv = open(&rec.uri)?;
    let started = Timestamp::now();
    let mut rep = DrillReport::new(&rec.lab, rec.run_id.short(), started, None);
    rep.lab_file = Some(rec.lab_file.display().to_string());
    let ctx = CheckContext {
        restore_point: None,
        manifests: Default::default(),
        screenshot_dir: report_dir(state_dir, &rec.lab, rec.run_id.short()).join("screenshots"),
    };
    let t = Instant::now();
    rep.checks = run_checks(&spec, &rec, hv.as_ref(), &ctx);
    phase(&mut rep, "verify", started, t, true);
    rep.finish(Timestamp::now(), None);
    let html = publish(state_dir, &rep)?;
    Ok((rep, html))
}

/// Options of `reclab run`.
#[derive(Debug, Clone, Default)]
pub struct RunOpts {
    pub ttl: Option<Duration>,
    /// Keep the lab running after the drill (for people to look at).
    pub keep: bool,
}

/// `reclab run LAB.toml`: up, verify, report, down. Never fails after the report exists: an
/// operational error becomes the report's `error` result (exit code 2).
pub fn run(
    spec: &LabSpec,
    hv: &dyn Hypervisor,
    state_dir: &Path,
    opts: &RunOpts,
    open: &dyn Fn(&str) -> Result<Box<dyn Hypervisor>>,
) -> Result<(DrillReport, PathBuf)> {
    let started = Timestamp::now();
    let t0 = Instant::now();
    let up = lab::up(
        spec,
        hv,
        state_dir,
        &UpOpts {
            ttl: opts.ttl,
            keep_on_failure: false,
        },
    );
    let run_id = match &up {
        Ok(u) => u.run.clone(),
        Err(_) => format!("failed-{}", started.as_second()),
    };
    let mut rep = DrillReport::new(&spec.name, &run_id, started, None);
    rep.lab_file = Some(spec.path.display().to_string());
    let up = match up {
        Ok(u) => {
            phase(&mut rep, "up", started, t0, true);
            u
        }
        Err(e) => {
            phase(&mut rep, "up", started, t0, false);
            rep.errors.push(format!("{e:#}"));
            rep.finish(Timestamp::now(), None);
            let html = publish(state_dir, &rep)?;
            return Ok((rep, html));
        }
    };
    let runs = lab::find_runs(state_dir, Some(&up.run))?;
    let rec = runs
        .into_iter()
        .find_map(|(_, r)| r)
        .with_context(|| format!("run {} vanished", up.run))?;
    let ctx = CheckContext {
        restore_point: None,
        manifests: Default::default(),
        screenshot_dir: report_dir(state_dir, &spec.name, &up.run).join("screenshots"),
    };
    let vstart = Timestamp::now();
    let t = Instant::now();
    rep.checks = run_checks(spec, &rec, hv, &ctx);
    phase(&mut rep, "verify", vstart, t, true);
    let verified_at = Timestamp::now();
    if !opts.keep {
        let dstart = Timestamp::now();
        let t = Instant::now();
        match lab::down(state_dir, &up.run, open) {
            Ok(_) => phase(&mut rep, "down", dstart, t, true),
            Err(e) => {
                phase(&mut rep, "down", dstart, t, false);
                rep.errors.push(format!("tearing the lab down: {e:#}"));
            }
        }
    }
    rep.finish(Timestamp::now(), Some(verified_at));
    let html = publish(state_dir, &rep)?;
    Ok((rep, html))
}
