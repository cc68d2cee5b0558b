//! The binary's command layer: [`run`] dispatches a parsed command line to one handler per
//! command group (`lab_cmd`, `drill_cmd`, `ops_cmd`, `access_cmd`). Handlers call the library
//! and render its results on [`out::Out`]; they return the exit code of a finished command
//! (0 verified, 1 verification failed), errors are the binary's to map (2).

pub mod access_cmd;
pub mod cli;
pub mod drill_cmd;
pub mod lab_cmd;
pub mod ops_cmd;
pub mod out;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use crate::hv::Hypervisor;
use crate::hv::libvirt::LibvirtHv;
use crate::hv::reconnect::{self, Reconnecting};
use crate::spec::LabSpec;
use cli::{Cli, Command};

/// What every command may need from the global options.
pub struct Ctx {
    pub state_dir: PathBuf,
    /// Whether `--state-dir` (or `RECLAB_STATE_DIR`) was given rather than defaulted.
    pub state_dir_given: bool,
    /// `--connect`: overrides the lab file's `connect`.
    pub connect: Option<String>,
}

impl Ctx {
    /// Opens the hypervisor at `uri`.
    /// Opens the hypervisor at `uri`; a connection its daemon closes (libvirtd restarted)
    /// is replaced within [`reconnect::DEFAULT_BOUND`], or the call fails naming libvirtd.
    pub fn open(&self, uri: &str) -> Result<Box<dyn Hypervisor>> {
        let target = uri.to_string();
        Ok(Box::new(Reconnecting::open(
            uri,
            reconnect::DEFAULT_BOUND,
            move || Ok(Box::new(LibvirtHv::open(&target)?) as Box<dyn Hypervisor>),
        )?))
    }

    /// Opens the hypervisor of a lab file: `--connect` beats the lab file's `connect`.
    pub fn open_for(&self, spec: &LabSpec) -> Result<Box<dyn Hypervisor>> {
        self.open(self.connect.as_deref().unwrap_or(&spec.connect))
    }

    /// The URI when no lab file names one: `--connect`, `LIBVIRT_DEFAULT_URI`, qemu:///system.
    pub fn default_uri(&self) -> String {
        self.connect
            .clone()
            .or_else(|| std::env::var("LIBVIRT_DEFAULT_URI").ok())
            .unwrap_or_else(|| "qemu:///system".into())
    }

    /// Reopens the hypervisor a run record names (an empty URI: the default one).
    pub fn reopen(&self, uri: &str) -> Result<Box<dyn Hypervisor>> {
        if uri.is_empty() {
            self.open(&self.default_uri())
        } else {
            self.open(uri)
        }
    }
}

/// `--at` and `--tz` checked before anything connects to libvirt (with the messages the
/// commands give later for them).
fn check_moment(at: Option<&str>, tz: Option<&str>) -> Result<()> {
    let now = crate::base::when::now_in(tz).map_err(|e| anyhow::anyhow!("--tz: {e}"))?;
    crate::base::when::parse_when(at.unwrap_or("latest"), &now)
        .map_err(|e| anyhow::anyhow!("--at: {e}"))?;
    Ok(())
}

/// `--ttl` of `up` and `run`.
fn parse_ttl(s: &str) -> Result<std::time::Duration> {
    crate::base::duration::parse_duration(s)
        .map_err(|e| anyhow::anyhow!("--ttl {s:?}: {e}; write e.g. 2h, 30m, 1h30m"))
}

/// Runs a parsed command line; output goes to stdout.
pub fn run(cli: Cli) -> Result<ExitCode> {
    let ctx = Ctx {
        // Absolute from the start: overlays and logs in it are named to libvirt.
        state_dir: std::path::absolute(&cli.state_dir).unwrap_or(cli.state_dir),
        state_dir_given: cli.state_dir_given,
        connect: cli.connect,
    };
    let mut out = out::Out::stdout();
    let code = dispatch(&ctx, cli.command, &mut out)?;
    out.flush()?;
    Ok(code)
}

/// The one place that maps a command to its handler.
fn dispatch(ctx: &Ctx, command: Command, out: &mut dyn Write) -> Result<ExitCode> {
    match command {
        Command::Check { lab, json } => lab_cmd::check(ctx, out, &lab, json),
        Command::Points { lab, at, tz, json } => {
            lab_cmd::points(ctx, out, &lab, at.as_deref(), tz.as_deref(), json)
        }
        Command::Up {
            lab,
            ttl,
            keep_on_failure,
            at,
            tz,
            json,
        } => {
            // The ttl is parsed once the lab file has loaded, as `run` does.
            let opts = crate::lab::UpOpts {
                ttl: None,
                keep_on_failure,
                at,
                tz,
                // A plain `up` hands the lab over: it stays until `down` or its expiry.
                owner: crate::lab::record::Owner::Up,
            };
            lab_cmd::up(ctx, out, &lab, ttl.as_deref(), opts, json)
        }
        Command::Down { lab } => lab_cmd::down(ctx, out, &lab),
        Command::Status { lab, json } => lab_cmd::status(ctx, out, lab.as_deref(), json),
        Command::Exec {
            lab,
            vm,
            timeout,
            command,
        } => lab_cmd::exec(ctx, out, &lab, &vm, timeout, &command),
        Command::Gc { dry_run } => lab_cmd::gc(ctx, out, dry_run),
        Command::Verify { lab, json } => drill_cmd::verify(ctx, out, &lab, json),
        Command::Run {
            lab,
            ttl,
            keep,
            metrics_file,
            at,
            tz,
            json,
        } => drill_cmd::run(
            ctx,
            out,
            &lab,
            &drill_cmd::RunArgs {
                ttl,
                keep,
                metrics_file,
                at,
                tz,
                json,
            },
        ),
        Command::Bisect {
            lab,
            from,
            to,
            tz,
            all,
            jobs,
            ttl,
            json,
        } => drill_cmd::bisect(
            ctx,
            out,
            &lab,
            &drill_cmd::BisectArgs {
                from,
                to,
                tz,
                all,
                jobs,
                ttl,
                json,
            },
        ),
        Command::History { lab, json } => drill_cmd::history(ctx, out, &lab, json),
        Command::Extend {
            lab,
            duration,
            json,
        } => ops_cmd::extend(ctx, out, &lab, &duration, json),
        Command::Schedule { action } => ops_cmd::schedule(ctx, out, action),
        Command::Listen {
            mqtt,
            topic,
            ca_file,
            user,
            password_file,
            labs_dir,
            parallel,
            host,
            group,
            reserve,
            session_expiry,
            drill_program,
        } => ops_cmd::listen(
            ctx,
            &ops_cmd::ListenArgs {
                broker: ops_cmd::BrokerArgs {
                    mqtt,
                    topic,
                    ca_file,
                    user,
                    password_file,
                },
                labs_dir,
                parallel,
                host,
                group,
                reserve,
                session_expiry,
                drill_program,
            },
        ),
        Command::Fleet {
            mqtt,
            topic,
            ca_file,
            user,
            password_file,
            json,
        } => ops_cmd::fleet(
            out,
            &ops_cmd::BrokerArgs {
                mqtt,
                topic,
                ca_file,
                user,
                password_file,
            },
            json,
        ),
        Command::Metrics { metrics_file } => ops_cmd::metrics(ctx, out, &metrics_file),
        Command::Console {
            lab,
            vm,
            vnc,
            port,
            link,
            base,
        } => {
            let how = match (link, vnc) {
                (true, _) => access_cmd::Console::Link { base },
                (false, true) => access_cmd::Console::Vnc { port },
                (false, false) => access_cmd::Console::Serial,
            };
            access_cmd::console(ctx, out, &lab, vm.as_deref(), how)
        }
        Command::Serve {
            listen,
            tls_cert,
            tls_key,
            novnc,
            publish_domain,
        } => access_cmd::serve(ctx, listen, tls_cert.zip(tls_key), novnc, publish_domain),
        Command::Forward {
            lab,
            target,
            listen,
        } => access_cmd::forward(ctx, &lab, &target, listen),
    }
}
