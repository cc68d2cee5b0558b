//! The access commands: `console` and `serve`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};

use crate::access::{console, forward, serve};
use crate::app::Ctx;
use crate::hv::Hypervisor;
use crate::hv::libvirt::LibvirtHv;

/// What `console` does.
pub enum Console {
    /// `--link`: print the lab page's link on `reclab serve` at `base`.
    Link { base: String },
    /// `--vnc`: proxy the VM's graphics to a loopback port (0: any free one).
    Vnc { port: u16 },
    /// Attach the VM's serial console to this terminal.
    Serial,
}

pub fn console(
    ctx: &Ctx,
    out: &mut dyn Write,
    lab: &str,
    vm: Option<&str>,
    how: Console,
) -> Result<ExitCode> {
    let (dir, rec) = console::find_run(&ctx.state_dir, lab)?;
    console::ensure_alive(&rec, jiff::Timestamp::now())?;
    let vnc_port = match how {
        Console::Link { base } => {
            let token = console::access_token(&dir)?;
            writeln!(
                out,
                "{}",
                console::lab_link(&base, rec.run_id.short(), &token)
            )?;
            return Ok(ExitCode::SUCCESS);
        }
        Console::Vnc { port } => Some(port),
        Console::Serial => None,
    };
    let vm = vm.context("give the vm whose console to open")?;
    console::find_vm(&rec, vm)?;
    if vnc_port.is_none() {
        // The serial console is a non-blocking libvirt stream: it needs the event loop.
        crate::hv::libvirt::start_event_loop()?;
    }
    let hv = ctx.reopen(&rec.uri)?;
    match vnc_port {
        Some(port) => console::serve_vnc(hv.as_ref(), &dir, &rec, vm, port)?,
        None => console::attach_serial(hv.as_ref(), &dir, &rec, vm)?,
    }
    Ok(ExitCode::SUCCESS)
}

pub fn serve(
    ctx: &Ctx,
    listen: std::net::SocketAddr,
    tls: Option<(PathBuf, PathBuf)>,
    novnc: Option<PathBuf>,
    publish_domain: String,
) -> Result<ExitCode> {
    let opener: serve::Opener =
        Arc::new(|uri: &str| Ok(Arc::new(LibvirtHv::open(uri)?) as Arc<dyn Hypervisor>));
    let opts = serve::ServeOpts {
        listen,
        tls,
        novnc,
        publish_domain,
    };
    serve::run(&ctx.state_dir, &opts, opener)?;
    Ok(ExitCode::SUCCESS)
}

/// `reclab forward LAB VM:PORT`.
pub fn forward(
    ctx: &Ctx,
    lab: &str,
    target: &str,
    listen: std::net::SocketAddr,
) -> Result<ExitCode> {
    let (vm, port) = forward::parse_target(target)?;
    let (dir, rec) = console::find_run(&ctx.state_dir, lab)?;
    console::ensure_alive(&rec, jiff::Timestamp::now())?;
    let t = forward::target(&rec, &vm, port)?;
    forward::forward(&dir, &rec, &t, listen)?;
    Ok(ExitCode::SUCCESS)
}
