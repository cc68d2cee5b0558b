//! The `reclab` binary: parse the command line, run, map errors to exit codes
//! (0 success/verified, 1 verification failed, 2 operational error).

use anyhow::{Context, Result};
use clap::Parser;
use std::io::Write;
use std::process::ExitCode;

use reclab::app::cli::{Cli, Command};
use reclab::drill;
use reclab::hv::Hypervisor;
use reclab::hv::libvirt::LibvirtHv;
use reclab::lab;
use reclab::report;
use reclab::spec;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("reclab: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn open_hv(uri: &str) -> Result<Box<dyn Hypervisor>> {
    Ok(Box::new(LibvirtHv::open(uri)?))
}

fn load_spec(path: &std::path::Path) -> Result<spec::LabSpec> {
    spec::load(path).map_err(|e| anyhow::anyhow!("{e}"))
}

fn uri_for(cli_uri: &Option<String>, spec: &spec::LabSpec) -> String {
    cli_uri.clone().unwrap_or_else(|| spec.connect.clone())
}

fn default_uri(cli_uri: &Option<String>) -> String {
    cli_uri
        .clone()
        .or_else(|| std::env::var("LIBVIRT_DEFAULT_URI").ok())
        .unwrap_or_else(|| "qemu:///system".into())
}

fn parse_ttl(s: &str) -> Result<std::time::Duration> {
    reclab::base::duration::parse_duration(s)
        .map_err(|e| anyhow::anyhow!("--ttl {s:?}: {e}; write e.g. 2h, 30m, 1h30m"))
}

fn print_report(rep: &report::DrillReport, html: &std::path::Path, json: bool) -> Result<()> {
    if json {
        println!("{}", report::render_json(rep));
    } else {
        print!("{}", report::render_terminal(rep));
        println!("report: {}", html.display());
    }
    Ok(())
}

fn run(cli: Cli) -> Result<ExitCode> {
    // An explicit per-process override beats the lab file's `connect`.
    let reopen = |uri: &str| -> Result<Box<dyn Hypervisor>> {
        let u = if uri.is_empty() {
            default_uri(&cli.connect)
        } else {
            uri.to_string()
        };
        open_hv(&u)
    };
    let state_dir = cli.state_dir.clone();
    match &cli.command {
        Command::Check { lab, json } => {
            let spec = load_spec(lab)?;
            let hv = open_hv(&uri_for(&cli.connect, &spec))?;
            let plan = lab::prepare(&spec, hv.as_ref(), &state_dir, &lab::UpOpts::default())?;
            if *json {
                let v = serde_json::json!({
                    "lab": plan.lab,
                    "uri": plan.uri,
                    "steps": plan.steps.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>(),
                    "vms": plan.vms.iter().map(|v| serde_json::json!({
                        "name": v.name, "tier": v.tier + 1,
                        "disks": v.overlays.iter().map(|o| serde_json::json!({
                            "target": o.target, "source": o.backing.path, "format": o.backing.format,
                            "virtual_size": o.backing.virtual_size})).collect::<Vec<_>>(),
                        "macs": v.macs, "changes": v.changes,
                    })).collect::<Vec<_>>(),
                    "segments": plan.segments.iter().map(|s| serde_json::json!({
                        "name": s.name, "services": s.services.as_ref().map(|x| format!("{}/{}", x.address, x.prefix)),
                    })).collect::<Vec<_>>(),
                });
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!(
                    "lab {}: ok ({} vms, {} segments) on {}",
                    plan.lab,
                    plan.vms.len(),
                    plan.segments.len(),
                    plan.uri
                );
                for v in &plan.vms {
                    println!("  tier {} {}:", v.tier + 1, v.name);
                    for o in &v.overlays {
                        println!(
                            "    disk {} <- {} ({}, {} bytes virtual)",
                            o.target,
                            o.backing.path.display(),
                            o.backing.format,
                            o.backing.virtual_size
                        );
                    }
                    for c in &v.changes {
                        println!("    change: {c}");
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Points { lab, at, tz, json } => {
            let spec = load_spec(lab)?;
            let now = reclab::base::when::now_in(tz.as_deref())
                .map_err(|e| anyhow::anyhow!("--tz: {e}"))?;
            // Only snapshot sources need the hypervisor; backup files are dated on disk.
            let needs_hv = spec
                .vms
                .iter()
                .any(|vm| matches!(vm.source, spec::VmSource::Domain { .. }));
            let hv = match needs_hv {
                true => Some(open_hv(&uri_for(&cli.connect, &spec))?),
                false => None,
            };
            let mut stdout = std::io::stdout().lock();
            reclab::restore::run_points(
                &spec,
                hv.as_deref(),
                at.as_deref(),
                &now,
                *json,
                &mut stdout,
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Up {
            lab,
            ttl,
            keep_on_failure,
            at,
            tz,
            json,
        } => {
            let spec = load_spec(lab)?;
            let ttl = ttl.as_deref().map(parse_ttl).transpose()?;
            let hv = open_hv(&uri_for(&cli.connect, &spec))?;
            let report = lab::up(
                &spec,
                hv.as_ref(),
                &lab::host::SysHost,
                &state_dir,
                &lab::UpOpts {
                    ttl,
                    keep_on_failure: *keep_on_failure,
                    at: at.clone(),
                    tz: tz.clone(),
                },
            )?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!(
                    "lab {} run {} is up (expires {})",
                    report.lab, report.run, report.expires
                );
                for v in &report.vms {
                    println!(
                        "  tier {} {:<10} {:<32} ready in {:>5.1}s  {} {}",
                        v.tier,
                        v.name,
                        v.domain,
                        v.ready_after_ms as f64 / 1000.0,
                        v.addresses.join(","),
                        v.macs.join(",")
                    );
                }
                for n in &report.networks {
                    println!("  network {n}");
                }
                for r in &report.injections {
                    println!(
                        "  restore {}: image {} ({}) + dump {} ({}), skew {}, sha256 {}…",
                        r.vm,
                        r.image.name,
                        r.image.time,
                        r.dump.name,
                        r.dump.time,
                        r.skew,
                        &r.sha256[..12.min(r.sha256.len())]
                    );
                }
                for c in &report.changes {
                    println!("  removed/changed: {c}");
                }
                for i in &report.isolation {
                    println!("  isolation: {i}");
                }
                println!("  tear down with: reclab down {}", report.run);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Down { lab } => {
            let n = lab::down(&state_dir, lab, &lab::host::SysHost, &reopen)?;
            if n == 0 {
                println!("nothing to tear down for {lab}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { lab, json } => {
            let runs = lab::status(&state_dir, lab.as_deref(), &reopen)?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&runs)?);
            } else if runs.is_empty() {
                println!("no labs");
            } else {
                for r in &runs {
                    println!(
                        "lab {} run {} {} ({}m left, expires {})",
                        r.lab,
                        r.run,
                        r.state,
                        r.seconds_left.max(0) / 60,
                        r.expires
                    );
                    for v in &r.vms {
                        println!(
                            "  {:<10} {:<10} {:<16} console {}",
                            v.name,
                            v.state,
                            v.addresses.join(","),
                            v.console.as_deref().unwrap_or("-")
                        );
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { lab, json } => {
            let (rep, html) = drill::verify_running(&state_dir, lab, &reopen)?;
            print_report(&rep, &html, *json)?;
            Ok(ExitCode::from(rep.result.exit_code()))
        }
        Command::Run {
            lab,
            ttl,
            keep,
            metrics_file,
            at,
            tz,
            json,
        } => {
            let spec = load_spec(lab)?;
            let ttl = ttl.as_deref().map(parse_ttl).transpose()?;
            let hv = open_hv(&uri_for(&cli.connect, &spec))?;
            let opts = drill::RunOpts {
                ttl,
                keep: *keep,
                at: at.clone(),
                tz: tz.clone(),
            };
            let (rep, html) = drill::run(&spec, hv.as_ref(), &state_dir, &opts, &reopen)?;
            print_report(&rep, &html, *json)?;
            // Notifications and metrics never change the drill's result.
            let dir = html.parent().map(|p| p.to_path_buf());
            let after = reclab::ops::notify::after_drill(
                &spec,
                &rep.summary(dir.as_deref()),
                metrics_file.as_deref(),
            );
            for o in &after.notifications {
                eprintln!("reclab: {}", o.line());
            }
            if let Some(e) = &after.metrics_error {
                eprintln!("reclab: metrics not written: {e}");
            }
            Ok(ExitCode::from(rep.result.exit_code()))
        }
        Command::History { lab, json } => {
            let h = report::history(&report::history_path(&state_dir, lab))?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&h)?);
            } else if h.is_empty() {
                println!("no drills recorded for lab {lab}");
            } else {
                print!("{}", report::render_history(&h));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Exec {
            lab,
            vm,
            timeout,
            command,
        } => {
            let (_, rec) = lab::find_run(&state_dir, lab)?;
            let vmrec = lab::find_vm(&rec, vm)?;
            let hv = reopen(&rec.uri)?;
            let out = reclab::hv::agent::sh(
                hv.as_ref(),
                &vmrec.domain,
                &command.join(" "),
                std::time::Duration::from_secs(*timeout),
            )?;
            std::io::stdout().write_all(&out.stdout)?;
            std::io::stderr().write_all(&out.stderr)?;
            Ok(if out.exit_code == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Extend { .. }
        | Command::Schedule { .. }
        | Command::Listen { .. }
        | Command::Metrics { .. } => reclab::app::ops_cmd::run(&cli, &reopen),
        Command::Console {
            lab,
            vm,
            vnc,
            port,
            link,
            base,
        } => {
            let (dir, rec) = reclab::access::console::find_run(&state_dir, lab)?;
            reclab::access::console::ensure_alive(&rec, jiff::Timestamp::now())?;
            if *link {
                let token = reclab::access::console::access_token(&dir)?;
                println!(
                    "{}",
                    reclab::access::console::lab_link(base, rec.run_id.short(), &token)
                );
                return Ok(ExitCode::SUCCESS);
            }
            let vm = vm.as_deref().context("give the vm whose console to open")?;
            reclab::access::console::find_vm(&rec, vm)?;
            if !*vnc {
                // The serial console is a non-blocking libvirt stream: it needs the event loop.
                reclab::hv::libvirt::start_event_loop()?;
            }
            let hv = reopen(&rec.uri)?;
            if *vnc {
                reclab::access::console::serve_vnc(hv.as_ref(), &dir, &rec, vm, *port)?;
            } else {
                reclab::access::console::attach_serial(hv.as_ref(), &dir, &rec, vm)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve {
            listen,
            tls_cert,
            tls_key,
            novnc,
        } => {
            let opener: reclab::access::serve::Opener = std::sync::Arc::new(|uri: &str| {
                Ok(std::sync::Arc::new(LibvirtHv::open(uri)?) as std::sync::Arc<dyn Hypervisor>)
            });
            let opts = reclab::access::serve::ServeOpts {
                listen: *listen,
                tls: tls_cert.clone().zip(tls_key.clone()),
                novnc: novnc.clone(),
            };
            reclab::access::serve::run(&state_dir, &opts, opener)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::BenchClone { src, dst, format } => {
            let t = std::time::Instant::now();
            let layers = reclab::lab::image::chain(src, Some(format))?;
            let top = layers
                .first()
                .with_context(|| format!("{} has no image layer", src.display()))?;
            reclab::lab::image::create_overlay(dst, top)?;
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            println!(
                "{}",
                serde_json::json!({ "ms": ms, "layers": layers.len() })
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::BenchPlan { lab } => {
            let spec = load_spec(lab)?;
            let hv = open_hv(&uri_for(&cli.connect, &spec))?;
            let plan = lab::prepare(&spec, hv.as_ref(), &state_dir, &lab::UpOpts::default())?;
            let v = serde_json::json!({
                "run_dir": plan.run_dir,
                "networks": plan.segments.iter().map(|s| serde_json::json!({
                    "name": s.network, "bridge": s.bridge, "xml": s.network_xml,
                })).collect::<Vec<_>>(),
                "vms": plan.vms.iter().map(|v| serde_json::json!({
                    "name": v.name, "domain": v.domain, "tier": v.tier, "xml": v.xml,
                    "overlays": v.overlays.iter().map(|o| serde_json::json!({
                        "path": o.path, "backing": o.backing.path, "format": o.backing.format,
                        "virtual_size": o.backing.virtual_size,
                    })).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            });
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::BenchPush {
            domain,
            file,
            guest_path,
        } => {
            let bytes =
                std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
            let hv = open_hv(&default_uri(&cli.connect))?;
            let t = std::time::Instant::now();
            reclab::hv::agent::write_file(hv.as_ref(), domain, guest_path, &bytes, None)?;
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            println!("{}", serde_json::json!({ "ms": ms, "bytes": bytes.len() }));
            Ok(ExitCode::SUCCESS)
        }
        Command::BenchDatadisk {
            image,
            files,
            format,
        } => {
            let format = match format.as_str() {
                "ext4" => reclab::spec::DiskFormat::Ext4,
                "iso" => reclab::spec::DiskFormat::Iso,
                other => anyhow::bail!("--format {other:?}: use ext4 or iso"),
            };
            let files: Vec<reclab::restore::datadisk::DataDiskFile> = files
                .iter()
                .map(|f| reclab::restore::datadisk::DataDiskFile {
                    name: f
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    source: f.clone(),
                    // As in a drill: the dump's sha256 is known from the host-side check.
                    sha256: Some("0".repeat(64)),
                })
                .collect();
            let t = std::time::Instant::now();
            let disk = reclab::restore::datadisk::build_data_disk(&files, format, image)?;
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            println!("{}", serde_json::json!({ "ms": ms, "bytes": disk.bytes }));
            Ok(ExitCode::SUCCESS)
        }
        Command::Gc { dry_run } => {
            let uri = default_uri(&cli.connect);
            let rep = lab::gc(
                &state_dir,
                *dry_run,
                Some(&uri),
                &lab::host::SysHost,
                &reopen,
            )?;
            let verb = if *dry_run { "would remove" } else { "removed" };
            for r in rep.removed_runs.iter().chain(&rep.removed_foreign) {
                println!("{verb} {r}");
            }
            for k in &rep.kept {
                println!("kept {k}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
