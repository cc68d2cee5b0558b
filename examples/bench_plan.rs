//! Resolves and plans a lab without creating anything, for `scripts/bench`: prints the
//! generated domain and network XML and the overlays as JSON, so that a plain script can start
//! the very same VMs (the baseline of reclab's overhead).
//!
//! ```text
//! RECLAB_CONNECT=URI cargo run --release --example bench_plan -- LAB STATE_DIR
//! ```
//!
//! The hypervisor is `RECLAB_CONNECT`, else the lab file's `connect`; STATE_DIR is where the
//! plan puts the run (as `reclab --state-dir`).

#[path = "common/mod.rs"]
mod common;

use std::path::PathBuf;

use reclab::hv::libvirt::LibvirtHv;

const USAGE: &str = "usage: bench_plan LAB STATE_DIR (the hypervisor: RECLAB_CONNECT, else the lab file's connect); for example bench_plan erp.toml /tmp/state";

fn main() -> std::process::ExitCode {
    common::main_of("bench_plan", run)
}

fn run() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [lab, state_dir] = args.as_slice() else {
        anyhow::bail!(USAGE);
    };
    let spec = reclab::spec::load(&PathBuf::from(lab))?;
    let uri = std::env::var("RECLAB_CONNECT").unwrap_or_else(|_| spec.connect.clone());
    let hv = LibvirtHv::open(&uri)?;
    let plan = reclab::lab::prepare(
        &spec,
        &hv,
        &PathBuf::from(state_dir),
        &reclab::lab::UpOpts::default(),
    )?;
    let v = serde_json::json!({
        "run_dir": plan.run_dir,
        "networks": plan.segments.iter().map(|s| serde_json::json!({
            "name": s.network, "bridge": s.bridge, "xml": s.network_xml,
        })).collect::<Vec<_>>(),
        "vms": plan.vms.iter().map(|v| serde_json::json!({
            "name": v.name, "domain": v.domain, "tier": v.tier, "xml": v.xml,
            "overlays": v.overlays.iter().map(|o| serde_json::json!({
                "path": o.path, "backing": o.backing.path, "format": o.backing.format,
                "virtual_size": o.backing.virtual_size,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    });
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}
