//! Scheduled drills as systemd timers: `reclab schedule install | list | remove`.
//!
//! A schedule named NAME is two unit files in the unit directory (`/etc/systemd/system` by
//! default), rendered from `templates/reclab-drill.service.in` and
//! `templates/reclab-drill.timer.in` (compiled into the binary):
//!
//! - `reclab-drill-NAME.service`: a one-shot `reclab run LAB.toml [--at …]`, output to the
//!   journal (`journalctl -u reclab-drill-NAME`);
//! - `reclab-drill-NAME.timer`: `OnCalendar=` the schedule, `Persistent=true` (a drill missed
//!   while the host was down runs at the next boot) and `RandomizedDelaySec=`.
//!
//! `--on` takes systemd calendar expressions (`"Sun *-*-* 03:00:00"`, `"daily"`, `"weekly"`,
//! `"Mon..Fri 02:30"`) and a few friendly forms: `"Sun 03:00"`, `"daily 02:30"`,
//! `"weekdays 02:30"`, `"weekends 04:00"`. Every expression is checked (and normalized) with
//! `systemd-analyze calendar` when that program is installed.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::base::fs::write_atomic;

/// The default unit directory.
pub const DEFAULT_UNIT_DIR: &str = "/etc/systemd/system";
/// Unit names are `reclab-drill-NAME.{service,timer}`.
pub const UNIT_PREFIX: &str = "reclab-drill-";
/// Longest schedule name.
pub const MAX_NAME: usize = 40;

const SERVICE_TEMPLATE: &str = include_str!("../../templates/reclab-drill.service.in");
const TIMER_TEMPLATE: &str = include_str!("../../templates/reclab-drill.timer.in");

/// What `schedule install` needs.
#[derive(Debug, Clone)]
pub struct InstallOpts {
    /// The lab file (made absolute).
    pub lab_file: PathBuf,
    /// The schedule name (default: the lab's name).
    pub name: String,
    /// `--on` as given.
    pub on: String,
    /// `--at` passed through to `reclab run`.
    pub at: Option<String>,
    pub unit_dir: PathBuf,
    /// The reclab binary the service runs (absolute).
    pub reclab_bin: PathBuf,
    /// `--state-dir` to pass to the drill, if not the default.
    pub state_dir: Option<PathBuf>,
    /// `RandomizedDelaySec=` value, such as `15m`.
    pub randomized_delay: String,
    /// A scheduled bisect instead of a drill: `reclab bisect LAB --from WHEN`.
    pub bisect_from: Option<String>,
}

/// A schedule as installed.
#[derive(Debug, Clone, Serialize)]
pub struct Schedule {
    pub name: String,
    /// The `OnCalendar=` value written.
    pub on_calendar: String,
    /// The service's `ExecStart=`.
    pub command: String,
    pub service: PathBuf,
    pub timer: PathBuf,
    /// When it runs next (from `systemd-analyze calendar`), if known.
    pub next: Option<String>,
}

/// A checked `--on` expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Calendar {
    /// What goes into `OnCalendar=`.
    pub on_calendar: String,
    /// The next elapse, when `systemd-analyze` was there to say.
    pub next: Option<String>,
    /// Whether `systemd-analyze calendar` checked it.
    pub validated: bool,
}

/// Whether `name` may be a schedule name (it becomes part of unit names).
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z' | '0'..='9'))
        && name.len() <= MAX_NAME
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// Rewrites the friendly forms into systemd calendar syntax; anything else is returned as is.
pub fn translate(on: &str) -> String {
    let on = on.split_whitespace().collect::<Vec<_>>().join(" ");
    let lower = on.to_ascii_lowercase();
    let time_like = |t: &str| {
        let parts: Vec<&str> = t.split(':').collect();
        (2..=3).contains(&parts.len())
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.len() <= 2 && p.chars().all(|c| c.is_ascii_digit()))
    };
    match lower.split_once(' ') {
        Some(("daily", t)) if time_like(t) => format!("*-*-* {t}"),
        Some(("weekdays", t)) if time_like(t) => format!("Mon..Fri *-*-* {t}"),
        Some(("weekends", t)) if time_like(t) => format!("Sat,Sun *-*-* {t}"),
        _ => on,
    }
}

/// Translates and checks `--on`. With `systemd-analyze` installed, an expression it refuses
/// is an error; without it, the expression is used as written and `validated` is false.
pub fn calendar(on: &str) -> Result<Calendar> {
    let expr = translate(on);
    if expr.is_empty() {
        bail!(
            "the schedule --on is empty; write it like \"Sun 03:00\", \"daily 02:30\" or \"weekly\""
        );
    }
    if expr.contains(['\n', '\r']) {
        bail!("the schedule --on {on:?} contains a line break");
    }
    let output = match Command::new("systemd-analyze")
        .args(["calendar", &expr])
        .output()
    {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::warn!(
                "systemd-analyze is not installed; using --on {expr:?} without checking it"
            );
            return Ok(Calendar {
                on_calendar: expr,
                next: None,
                validated: false,
            });
        }
        Err(e) => return Err(e).context("running systemd-analyze calendar"),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let why = stderr.trim().lines().last().unwrap_or("refused");
        bail!(
            "bad schedule --on {on:?}: systemd-analyze calendar says: {why}; write a systemd \
             calendar expression (see `man systemd.time`) or a form like \"Sun 03:00\", \
             \"daily 02:30\", \"weekdays 02:30\", \"weekly\""
        );
    }
    let field = |name: &str| {
        stdout.lines().find_map(|l| {
            l.trim()
                .strip_prefix(name)
                .map(|v| v.trim_start_matches(':').trim().to_string())
        })
    };
    Ok(Calendar {
        on_calendar: field("Normalized form").unwrap_or(expr),
        next: field("Next elapse"),
        validated: true,
    })
}

/// Quotes one argument for a systemd `ExecStart=` line: `%` and `$` are escaped always; an
/// argument with whitespace, quotes or backslashes is double-quoted with C-style escapes.
pub fn systemd_quote(arg: &str) -> String {
    let escaped = arg.replace('%', "%%").replace('$', "$$");
    if !escaped.is_empty()
        && !escaped
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '\\' | ';'))
    {
        return escaped;
    }
    let mut out = String::from("\"");
    for c in escaped.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The drill command line the service runs.
pub fn command_line(opts: &InstallOpts) -> Vec<String> {
    let mut args = vec![opts.reclab_bin.display().to_string()];
    if let Some(dir) = &opts.state_dir {
        args.push("--state-dir".into());
        args.push(dir.display().to_string());
    }
    if let Some(from) = &opts.bisect_from {
        args.extend(["bisect".into(), opts.lab_file.display().to_string()]);
        args.extend(["--from".into(), from.clone()]);
        return args;
    }
    args.push("run".into());
    args.push(opts.lab_file.display().to_string());
    if let Some(at) = &opts.at {
        args.push("--at".into());
        args.push(at.clone());
    }
    args
}

fn render(template: &str, vars: &[(&str, &str)]) -> String {
    let mut out = template.to_string();
    for (k, v) in vars {
        out = out.replace(&format!("{{{{{k}}}}}"), v);
    }
    debug_assert!(!out.contains("{{"), "unrendered placeholder in {out}");
    out
}

/// The two unit files' contents: (service, timer).
pub fn render_units(opts: &InstallOpts, cal: &Calendar) -> (String, String) {
    let unit = format!("{UNIT_PREFIX}{}", opts.name);
    let exec = command_line(opts)
        .iter()
        .map(|a| systemd_quote(a))
        .collect::<Vec<_>>()
        .join(" ");
    // The lab file path is shown in comments and the description; keep it on one line.
    let lab_file = opts
        .lab_file
        .display()
        .to_string()
        .replace(['\n', '\r'], " ")
        .replace('%', "%%");
    let vars = [
        ("name", opts.name.as_str()),
        ("unit", unit.as_str()),
        ("lab_file", lab_file.as_str()),
        ("exec_start", exec.as_str()),
        ("environment", ""),
        ("timeout", "6h"),
        ("on_calendar", cal.on_calendar.as_str()),
        ("randomized_delay", opts.randomized_delay.as_str()),
    ];
    (
        render(SERVICE_TEMPLATE, &vars),
        render(TIMER_TEMPLATE, &vars),
    )
}

fn unit_paths(unit_dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let base = format!("{UNIT_PREFIX}{name}");
    (
        unit_dir.join(format!("{base}.service")),
        unit_dir.join(format!("{base}.timer")),
    )
}

/// Whether systemd manages this machine (so `systemctl` can load the units).
pub fn systemd_running() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// Writes the service and timer. Replaces a schedule of the same name.
pub fn install(opts: &InstallOpts) -> Result<Schedule> {
    if !valid_name(&opts.name) {
        bail!(
            "{:?} cannot name a schedule; use up to {MAX_NAME} lowercase letters, digits, '-' or '_' (it becomes part of the unit names), e.g. --name erp-weekly",
            opts.name
        );
    }
    if let Some(at) = &opts.at
        && (at.trim().is_empty() || at.contains(['\n', '\r']))
    {
        bail!(
            "--at {at:?} is empty or spans lines; write it like \"2h ago\" or \"2026-11-01T03:00:00Z\""
        );
    }
    crate::base::duration::parse_duration(&opts.randomized_delay)
        .map_err(|e| anyhow::anyhow!("--randomized-delay: {e}"))?;
    let cal = calendar(&opts.on)?;
    let (service_text, timer_text) = render_units(opts, &cal);
    std::fs::create_dir_all(&opts.unit_dir)
        .with_context(|| format!("creating the unit directory {}", opts.unit_dir.display()))?;
    let (service, timer) = unit_paths(&opts.unit_dir, &opts.name);
    write_atomic(&service, service_text.as_bytes(), 0o644)
        .with_context(|| format!("writing {}", service.display()))?;
    write_atomic(&timer, timer_text.as_bytes(), 0o644)
        .with_context(|| format!("writing {}", timer.display()))?;
    Ok(Schedule {
        name: opts.name.clone(),
        on_calendar: cal.on_calendar,
        command: command_line(opts)
            .iter()
            .map(|a| systemd_quote(a))
            .collect::<Vec<_>>()
            .join(" "),
        service,
        timer,
        next: cal.next,
    })
}

fn unit_value(text: &str, key: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")).map(str::to_string))
}

/// Every schedule in the unit directory, by name.
pub fn list(unit_dir: &Path) -> Result<Vec<Schedule>> {
    let entries = match std::fs::read_dir(unit_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(e)
                .with_context(|| format!("reading the unit directory {}", unit_dir.display()));
        }
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("reading {}", unit_dir.display()))?;
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some(name) = file
            .strip_prefix(UNIT_PREFIX)
            .and_then(|f| f.strip_suffix(".timer"))
        else {
            continue;
        };
        let (service, timer) = unit_paths(unit_dir, name);
        let timer_text = std::fs::read_to_string(&timer)
            .with_context(|| format!("reading {}", timer.display()))?;
        let service_text = std::fs::read_to_string(&service).unwrap_or_default();
        let on_calendar = unit_value(&timer_text, "OnCalendar").unwrap_or_default();
        let next = calendar(&on_calendar).ok().and_then(|c| c.next);
        out.push(Schedule {
            name: name.to_string(),
            on_calendar,
            command: unit_value(&service_text, "ExecStart")
                .unwrap_or_else(|| "(service file missing)".into()),
            service,
            timer,
            next,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Removes a schedule's unit files; an unknown name is an error that lists the known ones.
pub fn remove(unit_dir: &Path, name: &str) -> Result<Schedule> {
    let known = list(unit_dir)?;
    let Some(found) = known.iter().find(|s| s.name == name).cloned() else {
        let names: Vec<&str> = known.iter().map(|s| s.name.as_str()).collect();
        bail!(
            "no schedule {name:?} in {}; installed schedules: {}",
            unit_dir.display(),
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        );
    };
    for path in [&found.timer, &found.service] {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
        }
    }
    Ok(found)
}

/// `systemctl ARGS` when systemd manages this machine; otherwise a note on what to run.
pub fn systemctl(args: &[&str]) -> Result<String> {
    if !systemd_running() {
        return Ok(format!(
            "systemd is not running here; run `systemctl {}` where it is",
            args.join(" ")
        ));
    }
    let status = Command::new("systemctl")
        .args(args)
        .status()
        .with_context(|| format!("running systemctl {}", args.join(" ")))?;
    if !status.success() {
        bail!("systemctl {} failed ({status})", args.join(" "));
    }
    Ok(format!("ran systemctl {}", args.join(" ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scheduled_bisect_runs_reclab_bisect_with_its_window() {
        let opts = InstallOpts {
            lab_file: "/labs/erp.toml".into(),
            name: "erp-bisect".into(),
            on: "daily 06:00".into(),
            at: None,
            unit_dir: "/tmp/units".into(),
            reclab_bin: "/usr/bin/reclab".into(),
            state_dir: None,
            randomized_delay: "15m".into(),
            bisect_from: Some("48h ago".into()),
        };
        assert_eq!(
            command_line(&opts),
            [
                "/usr/bin/reclab",
                "bisect",
                "/labs/erp.toml",
                "--from",
                "48h ago"
            ]
        );
        let (service, _) = render_units(&opts, &calendar("daily 06:00").unwrap());
        assert!(
            service.contains("ExecStart=/usr/bin/reclab bisect /labs/erp.toml --from \"48h ago\""),
            "{service}"
        );
    }

    #[test]
    fn friendly_forms_become_calendar_expressions() {
        assert_eq!(translate("daily 02:30"), "*-*-* 02:30");
        assert_eq!(translate("  weekdays   02:30 "), "Mon..Fri *-*-* 02:30");
        assert_eq!(translate("weekends 04:00:30"), "Sat,Sun *-*-* 04:00:30");
        // Forms systemd reads itself are passed through.
        assert_eq!(translate("Sun 03:00"), "Sun 03:00");
        assert_eq!(translate("weekly"), "weekly");
        assert_eq!(translate("daily 2h"), "daily 2h");
    }

    #[test]
    fn exec_start_arguments_are_quoted_for_systemd() {
        assert_eq!(systemd_quote("/usr/bin/reclab"), "/usr/bin/reclab");
        assert_eq!(systemd_quote("2h ago"), "\"2h ago\"");
        assert_eq!(systemd_quote("/labs/100%/$HOME"), "/labs/100%%/$$HOME");
        assert_eq!(systemd_quote("say \"hi\""), "\"say \\\"hi\\\"\"");
        assert_eq!(systemd_quote(""), "\"\"");
    }

    #[test]
    fn schedule_names_fit_unit_names() {
        assert!(valid_name("erp"));
        assert!(valid_name("erp-weekly_2"));
        assert!(!valid_name("Erp"));
        assert!(!valid_name("erp weekly"));
        assert!(!valid_name("../erp"));
        assert!(!valid_name(""));
        assert!(!valid_name(&"a".repeat(MAX_NAME + 1)));
    }
}
