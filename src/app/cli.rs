//! Command line definitions (clap derive); [`parse`] reads them, `app::run` dispatches them.

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use std::path::PathBuf;

/// Where run state lives unless `--state-dir` (or `RECLAB_STATE_DIR`) says otherwise.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/reclab";

/// Parses the process's command line (exits with clap's message and code 2 on a bad one, as
/// `Cli::parse` does), remembering whether the state directory was given.
pub fn parse() -> Cli {
    parse_from(std::env::args_os())
}

/// [`parse`] of `args` (the program name first).
pub fn parse_from<I, T>(args: I) -> Cli
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let mut matches = Cli::command().get_matches_from(args);
    let given = matches
        .value_source("state_dir")
        .is_some_and(|source| source != ValueSource::DefaultValue);
    let mut cli = Cli::from_arg_matches_mut(&mut matches)
        .unwrap_or_else(|e| e.format(&mut Cli::command()).exit());
    cli.state_dir_given = given;
    cli
}

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
        default_value = DEFAULT_STATE_DIR
    )]
    pub state_dir: PathBuf,
    /// Whether `state_dir` came from the command line or the environment (not the default);
    /// set by [`parse`].
    #[arg(skip)]
    pub state_dir_given: bool,
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
    /// List every restore point (VM images and dumps with their times), what each moment
    /// would pick, and the combination chosen for --at, with the image-to-dump skews.
    Points {
        /// The lab file.
        lab: PathBuf,
        /// The moment: latest (default), now, RFC 3339, "2h ago", "yesterday 18:00",
        /// "2026-11-26 13:00" (local time).
        #[arg(long)]
        at: Option<String>,
        /// IANA time zone for wall-clock --at forms and for display (default: TZ, else the
        /// system's).
        #[arg(long)]
        tz: Option<String>,
        /// Machine-readable output (every point, the whole timeline).
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
        /// Which moment to restore: latest (default), RFC 3339, "2h ago", "yesterday 18:00".
        #[arg(long)]
        at: Option<String>,
        /// Time zone for --at wall-clock times (default: the system's).
        #[arg(long)]
        tz: Option<String>,
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
    /// Re-run the checks on a running lab and write a report (exit 0 verified, 1 failed).
    Verify {
        /// Lab name or run id.
        lab: String,
        /// Print the report as JSON instead of the summary table.
        #[arg(long)]
        json: bool,
    },
    /// One-shot drill for schedules: up, verify, report, down (exit 0 verified, 1 a check
    /// failed, 2 an operational error).
    Run {
        /// The lab file.
        lab: PathBuf,
        /// Time to live of the lab while the drill runs (and after it, with --keep).
        #[arg(long)]
        ttl: Option<String>,
        /// Keep the lab running after the drill, e.g. for a customer to look at.
        #[arg(long)]
        keep: bool,
        /// Prometheus textfile to update (overrides the lab file's `[metrics] textfile`).
        #[arg(long)]
        metrics_file: Option<PathBuf>,
        /// Which moment to restore: latest (default), RFC 3339, "2h ago", "yesterday 18:00".
        #[arg(long)]
        at: Option<String>,
        /// Time zone for --at wall-clock times (default: the system's).
        #[arg(long)]
        tz: Option<String>,
        /// Print the report as JSON instead of the summary table.
        #[arg(long)]
        json: bool,
    },
    /// Find the newest good restore point with real drills: binary search over the distinct
    /// restore-point combinations of the window (about log2(n) + 1 drills), then confirm the
    /// boundary; contradictions are reported (exit 0 a good point found, 1 none good, 2 an
    /// operational error).
    Bisect {
        /// The lab file.
        lab: PathBuf,
        /// Oldest moment of the window (the point in effect then is the oldest candidate),
        /// e.g. "48h ago" (default: the oldest restore point).
        #[arg(long)]
        from: Option<String>,
        /// Newest moment of the window (default: the newest restore point).
        #[arg(long)]
        to: Option<String>,
        /// Time zone for wall-clock --from/--to forms (default: the system's).
        #[arg(long)]
        tz: Option<String>,
        /// Drill every candidate (a full timeline) instead of searching.
        #[arg(long)]
        all: bool,
        /// How many drills run at once.
        #[arg(long, default_value_t = 1)]
        jobs: usize,
        /// Time to live of each drill's lab.
        #[arg(long)]
        ttl: Option<String>,
        /// Print the result as JSON (reclab.bisect/1).
        #[arg(long)]
        json: bool,
    },
    /// Every drill of a lab, with recovery time and data age trends.
    History {
        /// Lab name.
        lab: String,
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
        /// noVNC package directory (default: /usr/share/novnc, where the novnc package puts it).
        #[arg(long, env = "RECLAB_NOVNC_DIR")]
        novnc: Option<PathBuf>,
        /// Published web apps ([[publish]] kind = "http") are served at
        /// <name>-<run>.<DOMAIN> on the same port (browsers resolve *.localhost themselves;
        /// elsewhere give a domain with a wildcard DNS entry and certificate).
        #[arg(long, default_value = "localhost")]
        publish_domain: String,
    },
    /// Carry TCP from a loopback port to a lab VM's port (psql, ssh, a web app), entering the
    /// lab from its lab-services namespace; closed when the lab expires or is torn down.
    Forward {
        /// Lab name or run id.
        lab: String,
        /// The VM and its port, e.g. db:5432.
        target: String,
        /// Loopback address to listen on (port 0: any free port).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: std::net::SocketAddr,
    },
    /// Move a running lab's expiry later: `reclab extend erp 2h` adds two hours.
    Extend {
        /// Lab name or run id.
        lab: String,
        /// How much longer, e.g. 2h, 30m, 1h30m.
        duration: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Scheduled drills as systemd timers (install, list, remove).
    Schedule {
        #[command(subcommand)]
        action: ScheduleCommand,
    },
    /// Long-running service: start a drill when an MQTT message asks for one, reply with the
    /// result on TOPIC/result; several listeners form a fleet (docs/fleet.md).
    Listen {
        /// Broker URL: mqtt://host[:port] or mqtts://host[:port].
        #[arg(long)]
        mqtt: String,
        /// Request topic; replies go to TOPIC/result, statuses to TOPIC/status/HOST.
        #[arg(long)]
        topic: String,
        /// PEM CA certificates to trust for mqtts:// (default: the system's).
        #[arg(long)]
        ca_file: Option<PathBuf>,
        /// Broker user (needs --password-file).
        #[arg(long, requires = "password_file")]
        user: Option<String>,
        /// File whose first line is the broker password.
        #[arg(long, requires = "user")]
        password_file: Option<PathBuf>,
        /// Where lab names (NAME.toml) and relative lab paths are looked up; requests cannot
        /// name a lab file outside it.
        #[arg(long, default_value = ".")]
        labs_dir: PathBuf,
        /// Drill slots: how many drills (of different labs) may run at once; the broker
        /// hands this host no more unfinished requests than that.
        #[arg(long, default_value_t = 1)]
        parallel: usize,
        /// This host's name in the fleet (default: RECLAB_HOST or the host name).
        #[arg(long)]
        host: Option<String>,
        /// Shared-subscription group: each request goes to one listener of the group.
        #[arg(long, default_value = crate::ops::listen::DEFAULT_GROUP)]
        group: String,
        /// Memory this host keeps for itself; a lab is admitted only into what is free
        /// beyond it (e.g. 2GiB).
        #[arg(long, default_value = "1GiB")]
        reserve: String,
        /// How long (seconds) the broker keeps this host's unfinished requests while it is
        /// gone; they run when it comes back.
        #[arg(long, default_value_t = crate::ops::listen::DEFAULT_SESSION_EXPIRY)]
        session_expiry: u32,
        /// The program that runs each drill as `PROGRAM --state-dir S run LAB` (and `gc` at
        /// start), default this reclab; e.g. a wrapper that enters a namespace.
        #[arg(long)]
        drill_program: Option<PathBuf>,
    },
    /// Show the fleet of listeners on a broker: their retained statuses on TOPIC/status/+.
    Fleet {
        /// Broker URL: mqtt://host[:port] or mqtts://host[:port].
        #[arg(long)]
        mqtt: String,
        /// Request topic of the fleet.
        #[arg(long)]
        topic: String,
        /// PEM CA certificates to trust for mqtts:// (default: the system's).
        #[arg(long)]
        ca_file: Option<PathBuf>,
        /// Broker user (needs --password-file).
        #[arg(long, requires = "password_file")]
        user: Option<String>,
        /// File whose first line is the broker password.
        #[arg(long, requires = "user")]
        password_file: Option<PathBuf>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Write the Prometheus textfile (latest drill of every lab in the state directory).
    Metrics {
        /// The textfile, e.g. /var/lib/node_exporter/textfile/reclab.prom.
        #[arg(long)]
        metrics_file: PathBuf,
    },
}

/// `reclab schedule ...`.
#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Write a systemd service and timer that run `reclab run LAB.toml` on a schedule.
    Install {
        /// The lab file.
        lab: PathBuf,
        /// When: a systemd calendar expression ("Sun *-*-* 03:00:00", "weekly") or
        /// "Sun 03:00", "daily 02:30", "weekdays 02:30", "weekends 04:00".
        #[arg(long)]
        on: String,
        /// Restore moment passed to `reclab run --at` (e.g. "2h ago").
        #[arg(long)]
        at: Option<String>,
        /// Schedule name (default: the lab's name); units are reclab-drill-NAME.{service,timer}.
        #[arg(long)]
        name: Option<String>,
        /// Where the unit files go.
        #[arg(long, default_value = crate::ops::schedule::DEFAULT_UNIT_DIR)]
        unit_dir: PathBuf,
        /// RandomizedDelaySec= of the timer.
        #[arg(long, default_value = "15m")]
        randomized_delay: String,
        /// Schedule `reclab bisect LAB.toml --from WHEN` (the newest good restore point of the
        /// window) instead of a drill, e.g. "48h ago".
        #[arg(long, conflicts_with = "at")]
        bisect_from: Option<String>,
    },
    /// List installed schedules.
    List {
        #[arg(long, default_value = crate::ops::schedule::DEFAULT_UNIT_DIR)]
        unit_dir: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Remove a schedule (stops and disables its timer when systemd runs here).
    Remove {
        /// Schedule name as shown by `schedule list`.
        name: String,
        #[arg(long, default_value = crate::ops::schedule::DEFAULT_UNIT_DIR)]
        unit_dir: PathBuf,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_dir_is_given_only_when_named_on_the_command_line() {
        // RECLAB_STATE_DIR would count as given too; the tests do not set it.
        if std::env::var_os("RECLAB_STATE_DIR").is_some() {
            return;
        }
        let default = parse_from(["reclab", "schedule", "list"]);
        assert_eq!(default.state_dir, PathBuf::from(DEFAULT_STATE_DIR));
        assert!(!default.state_dir_given);
        // Given as the default's own value, it is still given.
        let same = parse_from([
            "reclab",
            "--state-dir",
            DEFAULT_STATE_DIR,
            "schedule",
            "list",
        ]);
        assert!(same.state_dir_given);
        // A global option after the subcommand.
        let after = parse_from(["reclab", "schedule", "list", "--state-dir", "/srv/reclab"]);
        assert_eq!(after.state_dir, PathBuf::from("/srv/reclab"));
        assert!(after.state_dir_given);
    }

    #[test]
    fn there_are_no_benchmark_subcommands() {
        let cmd = Cli::command();
        let names: Vec<&str> = cmd.get_subcommands().map(|c| c.get_name()).collect();
        assert!(names.contains(&"check"), "{names:?}");
        assert!(!names.iter().any(|n| n.starts_with("bench")), "{names:?}");
    }
}
