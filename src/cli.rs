//! Command line definitions (clap derive). `main` turns these into calls of `lab::*`.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Prove backups can really be restored: clone production VMs into an isolated lab that keeps
/// their IPs, MACs and hostnames, boot them in order, verify, tear down.
///
/// Exit codes: 0 success (verified), 1 verification failed, 2 operational error.
#[derive(Debug, Parser)]
#[command(name = "reclab", version, about, long_about = None)]
pub struct Cli {
    /// Directory for run state (journals, overlays, logs).
    #[arg(
        long,
        global = true,
        env = "RECLAB_STATE_DIR",
        default_value = "/var/lib/reclab"
    )]
    pub state_dir: PathBuf,
    /// libvirt URI; overrides the lab file's `connect` (default qemu:///system).
    #[arg(long, global = true, env = "RECLAB_CONNECT")]
    pub connect: Option<String>,
    /// More logging (-v info, -vv debug); RUST_LOG works too.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate a lab file and resolve every source without creating anything.
    Check {
        /// The lab file.
        lab: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Bring a lab up: clone, isolate, boot in tiers, wait until every VM is ready.
    Up {
        /// The lab file.
        lab: PathBuf,
        /// Time to live, overriding the lab file's `ttl` (e.g. 2h, 30m).
        #[arg(long)]
        ttl: Option<String>,
        /// On failure keep what was created, for inspection (remove it with `reclab down`).
        #[arg(long)]
        keep_on_failure: bool,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Tear a lab down: a lab name (all its runs) or a run id. Idempotent.
    Down {
        /// Lab name or run id.
        lab: String,
    },
    /// Show running labs: VMs, state, addresses, console endpoint, time left.
    Status {
        /// Lab name or run id (all labs when omitted).
        lab: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Run a shell command in a lab VM through its guest agent (nothing goes over a network).
    Exec {
        /// Lab name or run id.
        lab: String,
        /// VM name as in the lab file.
        vm: String,
        /// Seconds to wait for the command.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
        /// The command (run by /bin/sh -c in the guest).
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Remove expired and orphaned labs (also those of a killed `reclab up`), and anything in
    /// libvirt that carries reclab's tag but belongs to no known run.
    Gc {
        /// Only list what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
    /// Benchmark hook (`scripts/bench`): clone SRC into a thin overlay DST through the code
    /// path of `up` (read the backing chain, create the overlay); prints the time in ms.
    #[command(hide = true)]
    BenchClone {
        /// Source image (production's, opened read-only).
        src: PathBuf,
        /// Overlay to create.
        dst: PathBuf,
        /// Declared format of the source.
        #[arg(long, default_value = "qcow2")]
        format: String,
    },
    /// Benchmark hook (`scripts/bench`): resolve and plan a lab without creating anything, and
    /// print the generated domain and network XML and the overlays as JSON, so that a plain
    /// script can start the very same VMs (the baseline of reclab's overhead).
    #[command(hide = true)]
    BenchPlan {
        /// The lab file.
        lab: PathBuf,
    },
    /// Benchmark hook (`scripts/bench`): write FILE to GUEST_PATH in DOMAIN through the guest
    /// agent (`guest-file-write`, as injection without a data disk would); prints the time in ms.
    #[command(hide = true)]
    BenchPush {
        /// libvirt domain name.
        domain: String,
        /// Host file to send.
        file: PathBuf,
        /// Destination path in the guest.
        guest_path: String,
    },
}
