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
