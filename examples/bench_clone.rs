//! Times cloning a source image into a thin overlay through the code path of `up` (read the
//! backing chain, create the overlay), for `scripts/bench`:
//!
//! ```text
//! cargo run --release --example bench_clone -- [--format FORMAT] SRC DST
//! ```
//!
//! SRC is opened read-only; DST is the overlay to create; FORMAT is SRC's declared format
//! (default qcow2). Prints `{"layers":N,"ms":T}`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;

const USAGE: &str = "usage: bench_clone [--format FORMAT] SRC DST; for example bench_clone --format raw /tmp/src.raw /tmp/clone.qcow2";

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench_clone: error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

fn run() -> anyhow::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let format = match args.iter().position(|a| a == "--format") {
        Some(i) if i + 1 < args.len() => {
            let f = args.remove(i + 1);
            args.remove(i);
            f
        }
        Some(_) => anyhow::bail!("--format needs a value; {USAGE}"),
        None => "qcow2".to_string(),
    };
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
