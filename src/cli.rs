//! Command line definitions.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Prove backups can really be restored: clone production VMs into an isolated lab,
/// restore a point in time, verify the data, report, tear down.
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
    /// More logging (repeat for more).
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
    },
}
