//! The test hooks of `up`, compiled only with the `test-hooks` feature (which the crate's own
//! tests turn on through a dev-dependency on itself; `cargo build --release` leaves it off):
//!
//! - `RECLAB_FAULT_AFTER_STEP=N`: fail right after step N has created its resources, to prove
//!   that unwinding from every step leaves nothing behind (`tests/e2e_lab.rs`);
//! - `RECLAB_PAUSE_AFTER_STEP=N`: after step N, write `paused-after-step` into the run
//!   directory and sleep, so that a crash test can SIGKILL reclab at exactly that point
//!   (`tests/e2e_crash.rs`).

use anyhow::{Context, Result, bail};
use std::time::Duration;

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
