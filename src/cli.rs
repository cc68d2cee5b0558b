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
    /// Attach to a lab VM's serial console (Ctrl-] quits), or with --vnc proxy its graphics
    /// to a loopback port for a VNC viewer; with --link print the lab's page link for
    /// `reclab serve`. Consoles close when the lab expires.
    Console {
        /// Lab name or run id.
        lab: String,
        /// VM name as in the lab file (not needed with --link).
        #[arg(required_unless_present = "link")]
        vm: Option<String>,
        /// Proxy the VM's VNC graphics to 127.0.0.1 instead of attaching the serial console.
        #[arg(long, conflicts_with = "link")]
        vnc: bool,
        /// Port of the VNC proxy (0: any free port).
        #[arg(long, default_value_t = 0, requires = "vnc")]
        port: u16,
        /// Print the link to the lab's page on `reclab serve` (with its access token).
        #[arg(long)]
        link: bool,
        /// Base URL of `reclab serve` for --link.
        #[arg(long, default_value = "http://127.0.0.1:8443", requires = "link")]
        base: String,
    },
    /// Serve lab pages for customers: VMs, check results, browser consoles (noVNC) and
    /// sign-off, each lab behind its own access token that expires with the lab.
    Serve {
        /// Address to listen on (a non-loopback address needs TLS).
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: std::net::SocketAddr,
        /// TLS certificate chain (PEM).
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// TLS private key (PEM).
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// noVNC package directory (default: where scripts/novnc puts it).
        #[arg(long, env = "RECLAB_NOVNC_DIR")]
        novnc: Option<PathBuf>,
    },
}
