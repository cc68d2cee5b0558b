//! Times building a data disk through the code path of injection (`reclab::restore::datadisk`),
//! for `scripts/bench`:
//!
//! ```text
//! cargo run --release --example bench_datadisk -- [--format ext4|iso] IMAGE FILE...
//! ```
//!
//! Writes IMAGE holding the FILEs (default format ext4). Prints `{"bytes":N,"ms":T}`.

#[path = "common/mod.rs"]
mod common;
#[path = "common/format_opt.rs"]
mod format_opt;

use std::path::PathBuf;
use std::time::Instant;

use reclab::restore::datadisk::{DataDiskFile, build_data_disk};
use reclab::spec::DiskFormat;

const USAGE: &str = "usage: bench_datadisk [--format ext4|iso] IMAGE FILE...; for example bench_datadisk /tmp/data.img /tmp/dump.sql";

fn main() -> std::process::ExitCode {
    common::main_of("bench_datadisk", run)
}

fn run() -> anyhow::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let format = format_opt::take_format(&mut args, "ext4", USAGE)?;
    let format = match format.as_str() {
        "ext4" => DiskFormat::Ext4,
        "iso" => DiskFormat::Iso,
        other => anyhow::bail!("--format {other:?}: use ext4 or iso"),
    };
    let [image, files @ ..] = args.as_slice() else {
        anyhow::bail!(USAGE);
    };
    if files.is_empty() {
        anyhow::bail!(USAGE);
    }
    let files: Vec<DataDiskFile> = files
        .iter()
        .map(PathBuf::from)
        .map(|f| DataDiskFile {
            name: f
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            source: f.clone(),
            // As in a drill: the dump's sha256 is known from the host-side check.
            sha256: Some("0".repeat(64)),
        })
        .collect();
    let t = Instant::now();
    let disk = build_data_disk(&files, format, &PathBuf::from(image))?;
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    println!("{}", serde_json::json!({ "ms": ms, "bytes": disk.bytes }));
    Ok(())
}
