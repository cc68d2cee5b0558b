//! Times cloning a source image into a thin overlay through the code path of `up` (read the
//! backing chain, create the overlay), for `scripts/bench`:
//!
//! ```text
//! cargo run --release --example bench_clone -- [--format FORMAT] SRC DST
//! ```
//!
//! SRC is opened read-only; DST is the overlay to create; FORMAT is SRC's declared format
//! (default qcow2). Prints `{"layers":N,"ms":T}`.

#[path = "common/mod.rs"]
mod common;
#[path = "common/format_opt.rs"]
mod format_opt;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;

const USAGE: &str = "usage: bench_clone [--format FORMAT] SRC DST; for example bench_clone --format raw /tmp/src.raw /tmp/clone.qcow2";

fn main() -> std::process::ExitCode {
    common::main_of("bench_clone", run)
}

fn run() -> anyhow::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let format = format_opt::take_format(&mut args, "qcow2", USAGE)?;
    let [src, dst] = args.as_slice() else {
        anyhow::bail!(USAGE);
    };
    let (src, dst) = (PathBuf::from(src), PathBuf::from(dst));
    let t = Instant::now();
    let layers = reclab::lab::image::chain(&src, Some(&format))?;
    let top = layers
        .first()
        .with_context(|| format!("{} has no image layer", src.display()))?;
    reclab::lab::image::create_overlay(&dst, top)?;
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    println!(
        "{}",
        serde_json::json!({ "ms": ms, "layers": layers.len() })
    );
    Ok(())
}
