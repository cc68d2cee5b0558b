//! Times writing a file into a running domain through the guest agent (`guest-file-write`, as
//! injection without a data disk would), for `scripts/bench`:
//!
//! ```text
//! RECLAB_CONNECT=URI cargo run --release --example bench_push -- DOMAIN FILE GUEST_PATH
//! ```
//!
//! The hypervisor is `RECLAB_CONNECT`, else `LIBVIRT_DEFAULT_URI`, else qemu:///system.
//! Prints `{"bytes":N,"ms":T}`.

#[path = "common/mod.rs"]
mod common;

use std::time::Instant;

use anyhow::Context;
use reclab::hv::libvirt::LibvirtHv;

const USAGE: &str = "usage: bench_push DOMAIN FILE GUEST_PATH (the hypervisor: RECLAB_CONNECT); for example bench_push lab-db /tmp/blob /root/blob";

fn main() -> std::process::ExitCode {
    common::main_of("bench_push", run)
}

fn run() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [domain, file, guest_path] = args.as_slice() else {
        anyhow::bail!(USAGE);
    };
    let bytes = std::fs::read(file).with_context(|| format!("reading {file}"))?;
    let uri = std::env::var("RECLAB_CONNECT")
        .or_else(|_| std::env::var("LIBVIRT_DEFAULT_URI"))
        .unwrap_or_else(|_| "qemu:///system".into());
    let hv = LibvirtHv::open(&uri)?;
    let t = Instant::now();
    reclab::hv::agent::write_file(&hv, domain, guest_path, &bytes, None)?;
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    println!("{}", serde_json::json!({ "ms": ms, "bytes": bytes.len() }));
    Ok(())
}
