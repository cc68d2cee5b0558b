//! The operations commands: `extend`, `schedule`, `listen`, `fleet`, `metrics`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

use crate::app::Ctx;
use crate::app::cli::ScheduleCommand;
use crate::ops::expiry;
use crate::ops::listen;
use crate::ops::metrics;
use crate::ops::schedule;
use crate::report;
use crate::spec;

fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("making {} absolute", path.display()))
}

pub fn extend(
    ctx: &Ctx,
    out: &mut dyn Write,
    lab: &str,
    duration: &str,
    json: bool,
) -> Result<ExitCode> {
    let by = crate::base::duration::parse_duration(duration)
        .map_err(|e| anyhow::anyhow!("extend by {duration:?}: {e}"))?;
    let done = expiry::extend(&ctx.state_dir, lab, by, jiff::Timestamp::now(), &|uri| {
        ctx.reopen(uri)
    })?;
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&done)?)?;
    } else {
        writeln!(
            out,
            "lab {} run {} now expires {} (was {})",
            done.lab, done.run, done.new_expires, done.old_expires
        )?;
        for f in &done.metadata_failed {
            eprintln!(
                "reclab: warning: domain metadata not updated (run.json is what counts): {f}"
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The broker options of `reclab listen` and `reclab fleet` as given.
pub struct BrokerArgs {
    pub mqtt: String,
    pub topic: String,
    pub ca_file: Option<PathBuf>,
    pub user: Option<String>,
    pub password_file: Option<PathBuf>,
}

impl BrokerArgs {
    fn spec(&self) -> Result<spec::MqttSpec> {
        let (tls, host, port) =
            spec::mqtt_url(&self.mqtt).map_err(|e| anyhow::anyhow!("--mqtt: {e}"))?;
        if let Some(why) = spec::topic_problem(&self.topic) {
            bail!("--topic: {why}");
        }
        if self.ca_file.is_some() && !tls {
            bail!("--ca-file needs TLS; use an mqtts:// URL");
        }
        Ok(spec::MqttSpec {
            url: self.mqtt.clone(),
            host,
            port,
            tls,
            topic: self.topic.clone(),
            ca_file: self.ca_file.as_deref().map(absolute).transpose()?,
            user: self.user.clone(),
            password_file: self.password_file.as_deref().map(absolute).transpose()?,
        })
    }
}

/// The options of `reclab listen` as given.
pub struct ListenArgs {
    pub broker: BrokerArgs,
    pub labs_dir: PathBuf,
    pub parallel: usize,
    pub host: Option<String>,
    pub group: String,
    pub reserve: String,
    pub session_expiry: u32,
    pub drill_program: Option<PathBuf>,
}

/// `listen`: runs until the process is stopped; each drill is `reclab run` of this binary.
pub fn listen(ctx: &Ctx, args: &ListenArgs) -> Result<ExitCode> {
    let reserve = spec::parse_size(&args.reserve).with_context(|| {
        format!(
            "--reserve {:?} is not a size; write one like 2GiB or 512MiB",
            args.reserve
        )
    })?;
    let opts = listen::ListenOpts {
        mqtt: args.broker.spec()?,
        labs_dir: absolute(&args.labs_dir)?,
        state_dir: absolute(&ctx.state_dir)?,
        parallel: args.parallel,
        reclab: match &args.drill_program {
            Some(p) => absolute(p)?,
            None => std::env::current_exe().context("finding the reclab binary")?,
        },
        host: args
            .host
            .clone()
            .unwrap_or_else(crate::ops::fleet::this_host),
        group: args.group.clone(),
        reserve,
        session_expiry: args.session_expiry,
    };
    listen::run(&opts)?;
    Ok(ExitCode::SUCCESS)
}

/// `fleet`: the listeners' retained statuses.
pub fn fleet(out: &mut dyn Write, args: &BrokerArgs, json: bool) -> Result<ExitCode> {
    let mqtt = args.spec()?;
    let statuses = crate::ops::fleet::collect(
        &mqtt,
        std::time::Duration::from_millis(700),
        std::time::Duration::from_secs(15),
    )?;
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&statuses)?)?;
    } else {
        write!(out, "{}", crate::ops::fleet::render(&statuses))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `metrics`: the latest drill of every lab in the state directory.
pub fn metrics(ctx: &Ctx, out: &mut dyn Write, metrics_file: &Path) -> Result<ExitCode> {
    let labs = ctx.state_dir.join("labs");
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
        let history = report::history(&report::history_path(&ctx.state_dir, &lab))?;
        if let Some(last) = history.into_iter().max_by_key(|s| s.started_at) {
            latest.push(last);
        }
    }
    metrics::write(metrics_file, &latest)?;
    writeln!(
        out,
        "wrote {} ({} labs)",
        metrics_file.display(),
        latest.len()
    )?;
    Ok(ExitCode::SUCCESS)
}

/// `schedule install|list|remove`.
pub fn schedule(ctx: &Ctx, out: &mut dyn Write, action: ScheduleCommand) -> Result<ExitCode> {
    match &action {
        ScheduleCommand::Install {
            lab,
            on,
            at,
            name,
            unit_dir,
            randomized_delay,
            bisect_from,
        } => {
            let lab_spec = spec::load(lab)?;
            // The units name the state directory only when one was given.
            let state_dir = ctx
                .state_dir_given
                .then(|| absolute(&ctx.state_dir))
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
                bisect_from: bisect_from.clone(),
            };
            let s = schedule::install(&opts)?;
            writeln!(
                out,
                "schedule {} installed: {} (OnCalendar={}{})",
                s.name,
                s.timer.display(),
                s.on_calendar,
                s.next
                    .as_deref()
                    .map(|n| format!(", next {n}"))
                    .unwrap_or_default()
            )?;
            writeln!(out, "  runs: {}", s.command)?;
            let timer_unit = format!("{}{}.timer", schedule::UNIT_PREFIX, s.name);
            if unit_dir == Path::new(schedule::DEFAULT_UNIT_DIR) && schedule::systemd_running() {
                schedule::systemctl(&["daemon-reload"])?;
                schedule::systemctl(&["enable", "--now", &timer_unit])?;
                writeln!(out, "  enabled {timer_unit}")?;
            } else {
                writeln!(
                    out,
                    "  enable it with: systemctl daemon-reload && systemctl enable --now {timer_unit}"
                )?;
            }
            Ok(ExitCode::SUCCESS)
        }
        ScheduleCommand::List { unit_dir, json } => {
            let all = schedule::list(unit_dir)?;
            if *json {
                writeln!(out, "{}", serde_json::to_string_pretty(&all)?)?;
            } else if all.is_empty() {
                writeln!(out, "no schedules in {}", unit_dir.display())?;
            } else {
                for s in &all {
                    writeln!(
                        out,
                        "{:<20} {:<28} next {:<28} {}",
                        s.name,
                        s.on_calendar,
                        s.next.as_deref().unwrap_or("-"),
                        s.command
                    )?;
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
            writeln!(
                out,
                "schedule {} removed ({} and {})",
                s.name,
                s.timer.display(),
                s.service.display()
            )?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
