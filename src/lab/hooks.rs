//! The test hooks of `up` and `gc`, compiled only with the `test-hooks` feature (which the crate's own
//! tests turn on through a dev-dependency on itself; `cargo build --release` leaves it off):
//!
//! - `RECLAB_FAULT_AFTER_STEP=N`: fail right after step N has created its resources, to prove
//!   that unwinding from every step leaves nothing behind (`tests/e2e_lab.rs`);
//! - `RECLAB_PAUSE_AFTER_STEP=N`: after step N, write `paused-after-step` into the run
//!   directory and sleep, so that a crash test can SIGKILL reclab at exactly that point
//!   (`tests/e2e_crash.rs`);
//! - `RECLAB_PAUSE_BEFORE_SWEEP=1`: `gc`, once it has removed the runs it decided on and before
//!   its sweep, writes `gc-paused-before-sweep` into the state directory and waits until that
//!   file is gone, so that a test can start an `up` while `gc` is busy (`tests/e2e_crash.rs`).

use anyhow::{Context, Result, bail};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::lab::execute::StepNo;
use crate::lab::journal::RunDir;
use crate::lab::plan::Step;

/// The hooks the environment asks for, as an `after_step` of the executor.
pub(crate) fn from_env() -> impl FnMut(&RunDir, StepNo, &Step) -> Result<()> {
    let fault_after = step_var("RECLAB_FAULT_AFTER_STEP");
    let pause_after = step_var("RECLAB_PAUSE_AFTER_STEP");
    move |dir, at, step| {
        if pause_after == Some(at.number) {
            pause_for_crash_test(dir, at.number)?;
        }
        if fault_after == Some(at.number) {
            bail!(
                "injected fault after step {} of {} ({step:?})",
                at.number,
                at.of
            );
        }
        Ok(())
    }
}

fn step_var(name: &str) -> Option<usize> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Announce the step in the run directory, then wait to be killed (for at most ten minutes,
/// so a forgotten test does not leave it forever), or interrupted (SIGINT/SIGTERM unwind).
fn pause_for_crash_test(dir: &RunDir, step: usize) -> Result<()> {
    let marker = dir.path.join("paused-after-step");
    std::fs::write(&marker, step.to_string())
        .with_context(|| format!("writing {}", marker.display()))?;
    eprintln!("reclab: test hook: paused after step {step}");
    crate::base::wait::sleep(
        Duration::from_secs(600),
        &crate::base::cancel::Cancel::new(),
    )
}

/// `gc` between removing its runs and sweeping: with `RECLAB_PAUSE_BEFORE_SWEEP=1`, announce
/// it in the state directory and wait (at most ten minutes) until the test removes the marker.
pub(crate) fn gc_before_sweep(state_dir: &Path) -> Result<()> {
    if std::env::var("RECLAB_PAUSE_BEFORE_SWEEP").as_deref() != Ok("1") {
        return Ok(());
    }
    let marker = state_dir.join("gc-paused-before-sweep");
    std::fs::write(&marker, std::process::id().to_string())
        .with_context(|| format!("writing {}", marker.display()))?;
    eprintln!("reclab: test hook: gc paused before its sweep");
    let end = Instant::now() + Duration::from_secs(600);
    while marker.exists() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}
