//! The operations subcommands: `extend`, `schedule`, `listen`, `metrics`. `main` hands them
//! here so that its own match stays small.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

use crate::app::cli::{Cli, Command, ScheduleCommand};
use crate::hv::Hypervisor;
use crate::ops::expiry;
use crate::ops::listen;
use crate::ops::metrics;
use crate::ops::schedule;
use crate::report;
use crate::spec;

fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("making {} absolute", path.display()))
}

/// Runs one of the operations subcommands.
pub fn run(cli: &Cli, open: &dyn Fn(&str) -> Result<Box<dyn Hypervisor>>) -> Result<ExitCode> {
    match &cli.command {
        Command::Extend {
            lab,
            duration,
            json,
        } => {
            let by = crate::base::duration::parse_duration(duration)
                .map_err(|e| anyhow::anyhow!("extend by {duration:?}: {e}"))?;
            let done = expiry::extend(&cli.state_dir, lab, by, jiff::Timestamp::now(), open)?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&done)?);
            } else {
                println!(
                    "lab {} run {} now expires {} (was {})",
                    done.lab, done.run, done.new_expires, done.old_expires
                );
                for f in &done.metadata_failed {
                    eprintln!(
                        "reclab: warning: domain metadata not updated (run.json is what counts): {f}"
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Schedule { action } => schedule_cmd(cli, action),
        Command::Listen {
            mqtt,
            topic,
            ca_file,
            user,
            password_file,
            labs_dir,
            queue,
            parallel,
        } => {
            let (tls, host, port) =
                spec::mqtt_url(mqtt).map_err(|e| anyhow::anyhow!("--mqtt: {e}"))?;
            if let Some(why) = spec::topic_problem(topic) {
                bail!("--topic: {why}");
            }
            if ca_file.is_some() && !tls {
                bail!("--ca-file needs TLS; use an mqtts:// URL");
            }
            let opts = listen::ListenOpts {
                mqtt: spec::MqttSpec {
                    url: mqtt.clone(),
                    host,
                    port,
                    tls,
                    topic: topic.clone(),
                    ca_file: ca_file.as_deref().map(absolute).transpose()?,
                    user: user.clone(),
                    password_file: password_file.as_deref().map(absolute).transpose()?,
                },
                labs_dir: absolute(labs_dir)?,
                state_dir: Some(absolute(&cli.state_dir)?),
                queue: *queue,
                parallel: *parallel,
            };
            listen::run(&opts)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Metrics { metrics_file } => {
            let labs = cli.state_dir.join("labs");
            let mut latest = Vec::new();
            let entries = match std::fs::read_dir(&labs) {
                Ok(e) => e
                    .collect::<std::io::Result<Vec<_>>>()
                    .with_context(|| format!("reading {}", labs.display()))?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(e).with_context(|| format!("reading {}", labs.display())),
            };
            for entry in entries {
                let lab = entry.file_name().to_string_lossy().into_owned();
                let history = report::history(&report::history_path(&cli.state_dir, &lab))?;
                if let Some(last) = history.into_iter().max_by_key(|s| s.started_at) {
                    latest.push(last);
                }
            }
            metrics::write(metrics_file, &latest)?;
            println!("wrote {} ({} labs)", metrics_file.display(), latest.len());
            Ok(ExitCode::SUCCESS)
        }
        _ => unreachable!("main only hands operations subcommands here"),
    }
}

fn schedule_cmd(cli: &Cli, action: &ScheduleCommand) -> Result<ExitCode> {
    match action {
        ScheduleCommand::Install {
            lab,
            on,
            at,
            name,
            unit_dir,
            randomized_delay,
        } => {
            let lab_spec = spec::load(lab).map_err(|e| anyhow::anyhow!("{e}"))?;
            let state_dir = (cli.state_dir != Path::new("/var/lib/reclab"))
                .then(|| absolute(&cli.state_dir))
                .transpose()?;
            let opts = schedule::InstallOpts {
                lab_file: absolute(lab)?,
                name: name.clone().unwrap_or(lab_spec.name.clone()),
                on: on.clone(),
                at: at.clone(),
                unit_dir: unit_dir.clone(),
                reclab_bin: std::env::current_exe().context("finding the reclab binary")?,
                state_dir,
                randomized_delay: randomized_delay.clone(),
            };
            let s = schedule::install(&opts)?;
            println!(
                "schedule {} installed: {} (OnCalendar={}{})",
                s.name,
                s.timer.display(),
                s.on_calendar,
                s.next
                    .as_deref()
                    .map(|n| format!(", next {n}"))
                    .unwrap_or_default()
            );
            println!("  runs: {}", s.command);
            let timer_unit = format!("{}{}.timer", schedule::UNIT_PREFIX, s.name);
            if unit_dir == Path::new(schedule::DEFAULT_UNIT_DIR) && schedule::systemd_running() {
                schedule::systemctl(&["daemon-reload"])?;
                schedule::systemctl(&["enable", "--now", &timer_unit])?;
                println!("  enabled {timer_unit}");
            } else {
                println!(
                    "  enable it with: systemctl daemon-reload && systemctl enable --now {timer_unit}"
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ScheduleCommand::List { unit_dir, json } => {
            let all = schedule::list(unit_dir)?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else if all.is_empty() {
                println!("no schedules in {}", unit_dir.display());
            } else {
                for s in &all {
                    println!(
                        "{:<20} {:<28} next {:<28} {}",
                        s.name,
                        s.on_calendar,
                        s.next.as_deref().unwrap_or("-"),
                        s.command
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ScheduleCommand::Remove { name, unit_dir } => {
            let timer_unit = format!("{}{name}.timer", schedule::UNIT_PREFIX);
            let managed =
                unit_dir == Path::new(schedule::DEFAULT_UNIT_DIR) && schedule::systemd_running();
            if managed && schedule::list(unit_dir)?.iter().any(|s| &s.name == name) {
                schedule::systemctl(&["disable", "--now", &timer_unit])?;
            }
            let s = schedule::remove(unit_dir, name)?;
            if managed {
                schedule::systemctl(&["daemon-reload"])?;
            }
            println!(
                "schedule {} removed ({} and {})",
                s.name,
                s.timer.display(),
                s.service.display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
