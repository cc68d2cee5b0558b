//! Drills: `verify` (run the checks on a running lab) and `run` (up, verify, report, down in
//! one go, for schedules), and `history`.
//!
//! Reports outlive their lab: they go to `STATE/labs/<lab>/reports/<run8>/` (JSON, JUnit, HTML
//! with screenshots, terminal summary), and every drill appends a line to the lab's history.

pub mod bisect;
pub mod bisect_run;

use anyhow::{Context, Result};
use jiff::Timestamp;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::base::cancel::{self, Interrupted};
use crate::hv::Hypervisor;
use crate::lab::record::{Owner, RunRecord};
use crate::lab::{self, UpOpts};
use crate::report::{self, DrillReport, Phase};
use crate::restore::record::InjectionRecord;
use crate::spec::{self, LabSpec};
use crate::verify::{self, CheckContext, CheckResult, Status};

/// The built-in isolation check of a running lab, as a check result.
fn isolation_result(rec: &RunRecord, hv: &dyn Hypervisor) -> CheckResult {
    let t = Instant::now();
    let (status, details, got) = match lab::verify_isolation(rec, hv, &lab::host::SysHost) {
        Ok(found) if found.probed.is_empty() => (
            Status::Error,
            found.found,
            Some("not tested: no address outside the lab could be probed from inside".into()),
        ),
        Ok(found) => (Status::Pass, found.found, None),
        Err(e) => (Status::Fail, vec![], Some(format!("{e:#}"))),
    };
    let mut details = details;
    details.push(published_words(rec));
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

/// What the lab publishes, for the isolation check's details: every published port is entered
/// only from the lab-services namespace, towards the VM; nothing listens inside the lab.
fn published_words(rec: &RunRecord) -> String {
    if rec.publish.is_empty() {
        return "published: nothing (no [[publish]] in the lab file)".into();
    }
    let list: Vec<String> = rec
        .publish
        .iter()
        .map(|p| {
            format!(
                "{} ({} {}:{} at {})",
                p.name, p.kind, p.vm, p.port, p.address
            )
        })
        .collect();
    format!(
        "published: {}; reached only by reclab serve/forward from the lab-services namespace \
         towards the vm, nothing in the lab can use them to connect out",
        list.join(", ")
    )
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
                .and_then(|x| crate::xml::facts::facts(&x).ok())
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

/// Write the report files into `dir` (claimed by [`report::claim_report_dir`]), append the
/// history line; returns the HTML path.
pub fn publish(state_dir: &Path, rep: &DrillReport, dir: &Path) -> Result<PathBuf> {
    let mut rep = rep.clone();
    let run_dir =
        crate::lab::journal::RunDir::new(state_dir, &crate::base::names::RunId(rep.run.clone()));
    if let Ok(signoffs) = crate::report::signoff::load(&run_dir.path) {
        rep.signoffs = signoffs;
    }
    let rep = &rep;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let files = report::write_report(dir, rep)?;
    // A lab that keeps running shows its latest report on its `reclab serve` page.
    if run_dir.path.is_dir() {
        report::write_report(&run_dir.path.join("report"), rep)?;
    }
    let hist = report::history_path(state_dir, &rep.lab);
    report::append_history(&hist, &rep.summary(Some(dir)))?;
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

/// The moment `--at` asks for (`None` for latest).
fn requested_moment(at: Option<&str>, tz: Option<&str>) -> Option<Timestamp> {
    let now = crate::base::when::now_in(tz).ok()?;
    match crate::base::when::parse_when(at?, &now).ok()?.at {
        crate::base::when::At::Moment(t) => Some(t),
        crate::base::when::At::Latest => None,
    }
}

/// The images restored from backup chains, for the report.
fn image_restores(restores: &[lab::record::RestoreRecord]) -> Vec<report::ImageRestore> {
    restores
        .iter()
        .map(|r| report::ImageRestore {
            vm: r.vm.clone(),
            backup: r.backup.clone(),
            checkpoint: r.checkpoint.clone(),
            cache: r.cache.clone(),
            seconds: r.seconds,
            entry: r.entry.clone(),
        })
        .collect()
}

/// What each VM got, for the report.
fn restore_points(injections: &[InjectionRecord]) -> Vec<report::VmRestore> {
    injections
        .iter()
        .map(|r| report::VmRestore {
            vm: r.vm.clone(),
            image: Some(report::RestoredImage {
                source: format!("{} {}", r.image.source, r.image.name),
                taken_at: r.image.time.parse().ok(),
                checksum: None,
            }),
            dump: Some(report::RestoredDump {
                file: r.dump.name.clone(),
                sha256: Some(r.sha256.clone()),
                bytes: Some(r.bytes),
                taken_at: r.dump.time.parse().ok(),
                manifest: r.manifest.clone(),
                attach: Some(r.attach.to_string()),
            }),
        })
        .collect()
}

/// The report of a drill whose `up` failed shows how far it got: the restore point chosen for
/// every VM with dumps, and each step of `up` that finished (`up: clone db/vda`, with its time)
/// followed by the one it stopped in (`ok: false`).
fn how_far_up_got(rep: &mut DrillReport, partial: &lab::UpReport, started: Timestamp) {
    rep.restore_points = restore_points(&partial.injections);
    rep.image_restores = image_restores(&partial.restores);
    let mut at = started;
    for (label, ms) in &partial.timings_ms {
        let took = Duration::from_millis(u64::try_from(*ms).unwrap_or(u64::MAX));
        rep.phases.push(Phase {
            name: format!("up: {label}"),
            started_at: at,
            duration: took,
            ok: true,
        });
        at = at.checked_add(took).unwrap_or(at);
    }
    if let Some(step) = &partial.failed_step {
        rep.phases.push(Phase {
            name: format!("up: {step}"),
            started_at: at,
            duration: Duration::ZERO,
            ok: false,
        });
    }
}

/// Check context: freshness is measured against the requested moment (now for latest), and
/// `expect_from_manifest` reads the manifest of the dump each VM got.
fn context(rec: &RunRecord, at: Option<Timestamp>, screenshot_dir: PathBuf) -> CheckContext {
    CheckContext {
        restore_point: Some(at.unwrap_or_else(Timestamp::now)),
        manifests: rec
            .injections
            .iter()
            .filter_map(|r| r.manifest.clone().map(|m| (r.vm.clone(), m)))
            .collect(),
        screenshot_dir,
    }
}

/// `reclab verify LAB`: re-run the checks on a running lab and report.
pub fn verify_running(
    state_dir: &Path,
    which: &str,
    open: &dyn Fn(&str) -> Result<Box<dyn Hypervisor>>,
) -> Result<(DrillReport, PathBuf)> {
    let (_, rec) = lab::find_run(state_dir, which)?;
    let spec = spec::load(&rec.lab_file)?;
    let hv = open(&rec.uri)?;
    let started = Timestamp::now();
    // Verified again, the lab gets another report (RUN8-2, …).
    let (id, dir) = report::claim_report_dir(state_dir, &rec.lab, rec.run_id.short())?;
    let mut rep = DrillReport::new(&rec.lab, &id, started, None);
    rep.lab_file = Some(rec.lab_file.display().to_string());
    let at = rec.at_time.as_deref().and_then(|t| t.parse().ok());
    rep.at = at;
    rep.restore_points = restore_points(&rec.injections);
    let ctx = context(&rec, at, dir.join("screenshots"));
    let t = Instant::now();
    rep.checks = run_checks(&spec, &rec, hv.as_ref(), &ctx);
    phase(&mut rep, "verify", started, t, true);
    rep.finish(Timestamp::now(), None);
    let html = publish(state_dir, &rep, &dir)?;
    Ok((rep, html))
}

/// Options of `reclab run`.
#[derive(Debug, Clone, Default)]
pub struct RunOpts {
    pub ttl: Option<Duration>,
    pub at: Option<String>,
    pub tz: Option<String>,
    /// Keep the lab running after the drill (for people to look at).
    pub keep: bool,
}

/// `reclab run LAB.toml`: up, verify, report, down. Never fails after the report exists: an
/// operational error becomes the report's `error` result (exit code 2). The one exception is
/// a SIGINT/SIGTERM during the drill: the lab is removed (even with `keep`), the report is
/// written, and the error is [`Interrupted`] (exit code 130/143).
pub fn run(
    spec: &LabSpec,
    hv: &dyn Hypervisor,
    state_dir: &Path,
    opts: &RunOpts,
    open: &dyn Fn(&str) -> Result<Box<dyn Hypervisor>>,
) -> Result<(DrillReport, PathBuf)> {
    // For the whole drill, so that a signal during verify still removes the lab.
    let _signals = cancel::catch_signals();
    let started = Timestamp::now();
    let t0 = Instant::now();
    // The drill owns its lab until its `down` finishes: it holds the run's lock throughout, and
    // `run.json` names it (`owner: run`), so a drill that dies leaves a lab `gc` collects.
    let mut partial = None;
    let up = lab::up_held(
        spec,
        hv,
        &lab::host::SysHost,
        state_dir,
        &UpOpts {
            ttl: opts.ttl,
            keep_on_failure: false,
            at: opts.at.clone(),
            tz: opts.tz.clone(),
            owner: Owner::Run,
        },
        &mut partial,
    );
    let run_id = match &up {
        Ok((u, _)) => u.run.clone(),
        Err(_) => format!("failed-{}", started.as_second()),
    };
    // A failed drill's id is made unique here (failed-SECONDS-2, …); a run's is its own.
    let (run_id, dir) = report::claim_report_dir(state_dir, &spec.name, &run_id)?;
    let at = requested_moment(opts.at.as_deref(), opts.tz.as_deref());
    let mut rep = DrillReport::new(&spec.name, &run_id, started, at);
    rep.lab_file = Some(spec.path.display().to_string());
    let (up, lock) = match up {
        Ok(u) => {
            phase(&mut rep, "up", started, t0, true);
            u
        }
        Err(e) => {
            if let Some(partial) = &partial {
                how_far_up_got(&mut rep, partial, started);
            }
            phase(&mut rep, "up", started, t0, false);
            rep.errors.push(format!("{e:#}"));
            rep.finish(Timestamp::now(), None);
            let html = publish(state_dir, &rep, &dir)?;
            if Interrupted::find(&e).is_some() {
                return Err(e);
            }
            return Ok((rep, html));
        }
    };
    let runs = lab::find_runs(state_dir, Some(&up.run))?;
    let rec = runs
        .into_iter()
        .find_map(|(_, r)| r)
        .with_context(|| format!("run {} vanished", up.run))?;
    rep.restore_points = restore_points(&rec.injections);
    rep.image_restores = image_restores(&up.restores);
    let ctx = context(&rec, at, dir.join("screenshots"));
    let vstart = Timestamp::now();
    let t = Instant::now();
    rep.checks = run_checks(spec, &rec, hv, &ctx);
    phase(&mut rep, "verify", vstart, t, true);
    let verified_at = Timestamp::now();
    let interrupted = cancel::received().map(|signal| Interrupted { signal });
    if !opts.keep || interrupted.is_some() {
        let dstart = Timestamp::now();
        let t = Instant::now();
        match lab::down_held(lock, &lab::host::SysHost, open) {
            Ok(_) => phase(&mut rep, "down", dstart, t, true),
            Err(e) => {
                phase(&mut rep, "down", dstart, t, false);
                rep.errors.push(format!("tearing the lab down: {e:#}"));
            }
        }
    } else {
        // Kept for people to look at: the drill hands the lab over, as `up` does; it stays
        // until `down` or its expiry.
        let dir = lock.dir();
        let handed = dir.load_record().and_then(|r| {
            let mut r = r.with_context(|| format!("run {} vanished", up.run))?;
            r.owner = Owner::Up;
            dir.save_record(&r)
        });
        if let Err(e) = handed {
            rep.errors.push(format!("handing the lab over: {e:#}"));
        }
        drop(lock);
    }
    rep.finish(Timestamp::now(), Some(verified_at));
    let html = publish(state_dir, &rep, &dir)?;
    if let Some(i) = interrupted.or_else(|| cancel::received().map(|signal| Interrupted { signal }))
    {
        return Err(anyhow::Error::new(i).context(format!(
            "drill of lab {} (run {}) stopped; report: {}",
            spec.name,
            up.run,
            html.display()
        )));
    }
    Ok((rep, html))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hv::fake::FakeHv;

    #[test]
    fn drills_that_fail_early_keep_a_report_each() {
        let state = tempfile::tempdir().unwrap();
        let spec = spec::parse(
            "name = \"erp\"\n[segment.lan]\n[[vm]]\nname = \"db\"\n\
             from = { domain = \"prod-db\", snapshot = \"nightly\" }\n",
            Path::new("/labs/erp.toml"),
        )
        .unwrap();
        // The fake has no prod-db: `up` fails before a run exists, three times in a row
        // (within one second, most likely: the old `failed-SECONDS` id was shared).
        let hv = FakeHv::new();
        let open = |_: &str| -> Result<Box<dyn Hypervisor>> { Ok(Box::new(FakeHv::new())) };
        let reports: Vec<(DrillReport, PathBuf)> = (0..3)
            .map(|_| run(&spec, &hv, state.path(), &RunOpts::default(), &open).unwrap())
            .collect();
        let mut ids: Vec<&str> = reports.iter().map(|(r, _)| &r.run[..]).collect();
        for (rep, html) in &reports {
            assert!(rep.run.starts_with("failed-"), "{}", rep.run);
            assert!(rep.errors[0].contains("prod-db"), "{:?}", rep.errors);
            let json = html.with_file_name("report.json");
            let stored = report::read_report(&json).unwrap();
            assert_eq!((&stored.run, stored.started_at), (&rep.run, rep.started_at));
        }
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 3, "{ids:?}");
        let history = report::history(&report::history_path(state.path(), "erp")).unwrap();
        assert_eq!(history.len(), 3);
    }
}
