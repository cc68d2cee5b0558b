//! Times choosing a restore point among the dump files of a directory, for `scripts/bench`:
//!
//! ```text
//! cargo run --release --example bench_choose -- DIR PATTERN [AT]
//! ```
//!
//! Prints `files=N chosen=NAME ms=T` (best of five runs; AT defaults to now, RFC 3339).

#[path = "common/mod.rs"]
mod common;

use std::time::Instant;

use anyhow::Context;

fn main() -> std::process::ExitCode {
    common::main_of("bench_choose", run)
}

fn run() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, pattern, rest @ ..] = args.as_slice() else {
        anyhow::bail!(
            "usage: bench_choose DIR PATTERN [AT]; for example bench_choose /tmp/dumps 'erp-%Y%m%d-%H%M.sql' 2026-11-26T13:00:00Z"
        );
    };
    let at: jiff::Timestamp = match rest.first() {
        Some(text) => text
            .parse()
            .map_err(|e| anyhow::anyhow!("AT {text:?} is not an RFC 3339 time: {e}"))?,
        None => jiff::Timestamp::now(),
    };
    let dir = std::path::Path::new(dir);
    let files = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .count();
    let pattern = reclab::base::pattern::NamePattern::parse(pattern, true)
        .map_err(|e| anyhow::anyhow!("PATTERN {pattern:?}: {e}"))?;
    let mut best = f64::MAX;
    let mut chosen = None;
    for _ in 0..5 {
        let began = Instant::now();
        chosen = reclab::restore::dumps::choose_in_dir(dir, &pattern, at)?;
        best = best.min(began.elapsed().as_secs_f64() * 1000.0);
    }
    println!(
        "files={files} chosen={} ms={best:.1}",
        chosen.map_or("none".to_string(), |p| p.file)
    );
    Ok(())
}
