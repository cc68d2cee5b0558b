//! What the benchmark examples share: the exit code of a failed run.

use std::process::ExitCode;

/// Runs `run`; an error is printed as `NAME: error: …` and exits 2.
pub fn main_of(name: &str, run: impl FnOnce() -> anyhow::Result<()>) -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
