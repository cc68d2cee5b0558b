//! The drill commands: `verify`, `run`, `history`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;

use crate::app::Ctx;
use crate::drill;
use crate::report::{self, DrillReport};
use crate::spec;

pub fn verify(ctx: &Ctx, out: &mut dyn Write, lab: &str, json: bool) -> Result<ExitCode> {
    let (rep, html) = drill::verify_running(&ctx.state_dir, lab, &|uri| ctx.reopen(uri))?;
    write_report(out, &rep, &html, json)?;
    Ok(ExitCode::from(rep.result.exit_code()))
}

/// The options of `reclab run` as given.
pub struct RunArgs {
    pub ttl: Option<String>,
    pub keep: bool,
    pub metrics_file: Option<PathBuf>,
    pub at: Option<String>,
    pub tz: Option<String>,
    pub json: bool,
}

pub fn run(ctx: &Ctx, out: &mut dyn Write, lab: &Path, args: &RunArgs) -> Result<ExitCode> {
    let spec = spec::load(lab)?;
    let ttl = args.ttl.as_deref().map(super::parse_ttl).transpose()?;
    super::check_moment(args.at.as_deref(), args.tz.as_deref())?;
    let hv = ctx.open_for(&spec)?;
    let opts = drill::RunOpts {
        ttl,
        keep: args.keep,
        at: args.at.clone(),
        tz: args.tz.clone(),
    };
    let (rep, html) = drill::run(&spec, hv.as_ref(), &ctx.state_dir, &opts, &|uri| {
        ctx.reopen(uri)
    })?;
    write_report(out, &rep, &html, args.json)?;
    // Notifications and metrics never change the drill's result.
    let dir = html.parent().map(|p| p.to_path_buf());
    let after = crate::ops::notify::after_drill(
        &spec,
        &rep.summary(dir.as_deref()),
        args.metrics_file.as_deref(),
    );
    for o in &after.notifications {
        eprintln!("reclab: {}", o.line());
    }
    if let Some(e) = &after.metrics_error {
        eprintln!("reclab: metrics not written: {e}");
    }
    Ok(ExitCode::from(rep.result.exit_code()))
}

/// The options of `reclab bisect` as given.
pub struct BisectArgs {
    pub from: Option<String>,
    pub to: Option<String>,
    pub tz: Option<String>,
    pub all: bool,
    pub jobs: usize,
    pub ttl: Option<String>,
    pub json: bool,
}

/// `reclab bisect LAB.toml`: each drilled point on stderr as it is judged, then the result.
pub fn bisect(ctx: &Ctx, out: &mut dyn Write, lab: &Path, args: &BisectArgs) -> Result<ExitCode> {
    use crate::drill::bisect_run;
    let spec = spec::load(lab)?;
    let ttl = args.ttl.as_deref().map(super::parse_ttl).transpose()?;
    if args.jobs == 0 {
        anyhow::bail!("--jobs must be at least 1");
    }
    for (flag, value) in [("--from", &args.from), ("--to", &args.to)] {
        if let Some(v) = value {
            super::check_moment(Some(v), args.tz.as_deref()).map_err(|e| {
                anyhow::anyhow!("{flag}: {}", format!("{e}").trim_start_matches("--at: "))
            })?;
        }
    }
    let opts = bisect_run::BisectOpts {
        from: args.from.clone(),
        to: args.to.clone(),
        tz: args.tz.clone(),
        all: args.all,
        jobs: args.jobs,
        ttl,
    };
    let uri = ctx.connect.clone().unwrap_or_else(|| spec.connect.clone());
    let (rep, html) = bisect_run::bisect_lab(
        &spec,
        &uri,
        &ctx.state_dir,
        &opts,
        &|uri| ctx.open(uri),
        &mut |p| eprintln!("reclab: {}", bisect_run::point_line(p)),
    )?;
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&rep)?)?;
    } else {
        write!(out, "{}", bisect_run::render_terminal(&rep))?;
        writeln!(out, "timeline: {}", html.display())?;
    }
    // The notifications carry the answer; they never change the exit code.
    if let Some(n) = &spec.notify {
        for o in crate::ops::notify::send_all(n, &bisect_summary(&rep, html.parent())) {
            eprintln!("reclab: {}", o.line());
        }
    }
    Ok(ExitCode::from(rep.exit_code()))
}

/// A bisect as a notification: `run` is its id, `at` the newest good point, `result`
/// verified when one was found, `checks` the drills (`checks_failed` those that failed), and
/// `answer` the answer line.
fn bisect_summary(
    rep: &crate::drill::bisect_run::BisectReport,
    dir: Option<&Path>,
) -> report::Summary {
    let failed = rep
        .points
        .iter()
        .filter_map(|p| p.drill.as_ref())
        .filter(|d| d.result != report::DrillResult::Verified)
        .count();
    report::Summary {
        schema: report::HISTORY_SCHEMA.into(),
        lab: rep.lab.clone(),
        run: rep.id.clone(),
        started_at: rep.started_at,
        at: rep.newest_good.map(|i| rep.points[i].at),
        result: match rep.exit_code() {
            0 => report::DrillResult::Verified,
            1 => report::DrillResult::Failed,
            _ => report::DrillResult::Error,
        },
        checks: rep.drills,
        checks_failed: failed,
        recovery_time: None,
        data_age: None,
        report_dir: dir.map(|d| d.display().to_string()),
        answer: Some(rep.answer.clone()),
    }
}

pub fn history(ctx: &Ctx, out: &mut dyn Write, lab: &str, json: bool) -> Result<ExitCode> {
    let h = report::history(&report::history_path(&ctx.state_dir, lab))?;
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&h)?)?;
    } else if h.is_empty() {
        writeln!(out, "no drills recorded for lab {lab}")?;
    } else {
        write!(out, "{}", report::render_history(&h))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// A drill's report: JSON, or the summary table and where the HTML report is.
fn write_report(
    out: &mut dyn Write,
    rep: &DrillReport,
    html: &Path,
    json: bool,
) -> std::io::Result<()> {
    if json {
        writeln!(out, "{}", report::render_json(rep))
    } else {
        write!(out, "{}", report::render_terminal(rep))?;
        writeln!(out, "report: {}", html.display())
    }
}
