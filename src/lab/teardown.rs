//! Undo what a run's journal says was created. Idempotent: an absent resource counts as
//! removed, so teardown can run any number of times, after any crash.
//!
//! Order: domains (in parallel: a TCG guest takes 1–2 s to die), then everything else in
//! reverse journal order, so nothing is removed while something newer still uses it. When a
//! domain cannot be removed, nothing else is: the lab stays fenced, never open.

use anyhow::{Context, Result};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::base::cancel::Cancel;
use crate::base::sys;
use crate::base::wait::{self, Poll};
use crate::hv::Hypervisor;
use crate::lab::host::Host;
use crate::lab::journal::RunDir;
use crate::lab::record::Resource;

/// Remove every resource in the run's journal, then the run directory itself.
/// Returns the resources that could not be removed, with the reason.
pub fn teardown(
    hv: Option<&dyn Hypervisor>,
    host: &dyn Host,
    dir: &RunDir,
) -> Result<Vec<(Resource, String)>> {
    let resources = dir.resources()?;
    let mut failures = Vec::new();

    let domains: Vec<&Resource> = resources
        .iter()
        .filter(|r| matches!(r, Resource::Domain { .. }))
        .collect();
    std::thread::scope(|s| {
        let handles: Vec<_> = domains
            .iter()
            .map(|r| s.spawn(move || (*r, undo(hv, host, r))))
            .collect();
        for h in handles {
            let (r, res) = h.join().expect("teardown thread panicked");
            if let Err(e) = res {
                failures.push((r.clone(), format!("{e:#}")));
            }
        }
    });

    // A domain that could not be removed may still run: then nothing else goes. Its network,
    // the bridge's firewall rules and the lab services stay, so the lab stays fenced (never
    // open), and a later `down` or `gc` finishes the job.
    if !failures.is_empty() {
        let running: Vec<String> = failures.iter().map(|(r, _)| r.describe()).collect();
        let why = format!(
            "kept, so the lab stays fenced while {} may still run",
            running.join(", ")
        );
        for r in resources.iter().rev() {
            if !matches!(r, Resource::Domain { .. }) {
                failures.push((r.clone(), why.clone()));
            }
        }
        return Ok(failures);
    }
    for r in resources.iter().rev() {
        if matches!(r, Resource::Domain { .. }) {
            continue;
        }
        if let Err(e) = undo(hv, host, r) {
            failures.push((r.clone(), format!("{e:#}")));
        }
    }
    if failures.is_empty() {
        remove_run_dir(host, dir)?;
    }
    Ok(failures)
}

/// The run directory, then its registration as the owner of the run's resources.
fn remove_run_dir(host: &dyn Host, dir: &RunDir) -> Result<()> {
    remove_dir(&dir.path)?;
    if let Some(run8) = dir.path.file_name().and_then(|f| f.to_str()) {
        host.owner_remove(run8, &dir.path)?;
    }
    Ok(())
}

/// Remove a run whose libvirt daemon cannot be reached and none of whose domains runs on
/// this host (the caller checked: [`Host::vm_process`]): its domains and networks are gone
/// with their daemon (lab objects are transient; a network a restarted daemon brings back
/// is swept by `gc` by its name), `bridges` (their bridges, if left on this host) go, and
/// everything else in reverse journal order, then the run directory.
pub fn teardown_without_daemon(
    host: &dyn Host,
    dir: &RunDir,
    bridges: &[String],
) -> Result<Vec<(Resource, String)>> {
    let resources = dir.resources()?;
    let mut failures = Vec::new();
    for r in resources.iter().rev() {
        if matches!(r, Resource::Domain { .. } | Resource::Network { .. }) {
            continue;
        }
        if let Err(e) = undo(None, host, r) {
            failures.push((r.clone(), format!("{e:#}")));
        }
    }
    for b in bridges {
        let r = Resource::Link { name: b.clone() };
        if let Err(e) = undo(None, host, &r) {
            failures.push((r, format!("{e:#}")));
        }
    }
    if failures.is_empty() {
        remove_run_dir(host, dir)?;
    }
    Ok(failures)
}

/// Undo one resource; already gone is success.
pub fn undo(hv: Option<&dyn Hypervisor>, host: &dyn Host, r: &Resource) -> Result<()> {
    let t = std::time::Instant::now();
    let result = undo_one(hv, host, r);
    tracing::debug!(resource = %r.describe(), ms = t.elapsed().as_millis() as u64, "undone");
    result
}

/// Every kind of resource has its undo here: the `match` names each one (no catch-all arm),
/// so a new kind does not compile until it has one.
fn undo_one(hv: Option<&dyn Hypervisor>, host: &dyn Host, r: &Resource) -> Result<()> {
    match r {
        Resource::Domain { name } => {
            let hv = hv.context("no hypervisor connection to remove a domain")?;
            hv.destroy_domain(name)
                .with_context(|| format!("destroying domain {name}"))?;
            hv.undefine_domain(name)
                .with_context(|| format!("undefining domain {name}"))?;
        }
        Resource::Network { name } => {
            let hv = hv.context("no hypervisor connection to remove a network")?;
            hv.destroy_network(name)
                .with_context(|| format!("destroying network {name}"))?;
        }
        Resource::Process { pidfile, netns } => host.stop_process(pidfile, netns)?,
        Resource::Link { name } => host.link_remove(name)?,
        Resource::Netns { name } => host.netns_remove(name)?,
        Resource::Firewall {
            program,
            chain,
            rule,
        } => {
            // A rule that is not there anymore is fine; delete every copy that is.
            for _ in 0..16 {
                if !host.firewall_present(program, chain, rule)? {
                    break;
                }
                host.firewall_delete(program, chain, rule)?;
            }
        }
        Resource::File { path } => match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
        },
        Resource::Dir { path } => remove_dir(path)?,
    }
    Ok(())
}

fn remove_dir(path: &Path) -> Result<()> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}

/// Stop a daemon reclab started: only if the PID in its pidfile still lives inside the
/// run's own namespace, so a recycled PID is never hit. ([`crate::lab::host::SysHost`]'s.)
pub(crate) fn stop_process(pidfile: &Path, netns: &str) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(pidfile) else {
        return Ok(());
    };
    let Ok(pid) = text.trim().parse::<u32>() else {
        return Ok(());
    };
    // The namespace handle under /run/netns is a bind mount that only the mount namespace
    // which created it may see (e.g. when reclab runs under `ip netns exec`, whose mounts do
    // not propagate back); then the daemon is recognised by its configuration file in the
    // run's own directory instead.
    let ours = netns_pids(netns)?.contains(&pid)
        || pidfile
            .parent()
            .is_some_and(|dir| configured_from(pid, dir));
    if !ours {
        return Ok(());
    }
    kill_and_wait(pid);
    Ok(())
}

/// Whether process `pid` was started with `--conf-file=` a file in `dir`.
fn configured_from(pid: u32, dir: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let want = format!("--conf-file={}/", dir.display());
    cmdline
        .split(|b| *b == 0)
        .any(|arg| arg.starts_with(want.as_bytes()))
}

fn kill_and_wait(pid: u32) {
    let Some(start) = sys::process_start_time(pid) else {
        return;
    };
    // SAFETY: kill(2) with a PID we verified; worst case it is already gone.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    // Two seconds for it to end, SIGKILL after the first; part of an unwind, so not
    // cancellable (not even by a second Ctrl-C).
    let t = Instant::now();
    let mut killed = false;
    let _ = wait::until(
        t + Duration::from_secs(2),
        Poll::every(Duration::from_millis(20)),
        &Cancel::never(),
        || {
            if !sys::process_alive(pid, start) {
                return Ok(Some(()));
            }
            if !killed && t.elapsed() >= Duration::from_secs(1) {
                // SAFETY: as above, the same verified PID, still alive a moment ago.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                killed = true;
            }
            Ok(None)
        },
    );
}

/// PIDs of processes in a named network namespace of reclab's (empty if it does not exist).
///
/// The handle `/run/netns/NAME` is a bind mount of the namespace, but only in the mount
/// namespace that ran `ip netns add`: when reclab runs under `ip netns exec` (as in the test
/// sandboxes), its mounts do not propagate back, and every other process (a later `gc`, a
/// `down`) sees an empty file there while the namespace lives on in the dnsmasq started in it.
/// So a process is in the namespace if its `/proc/PID/ns/net` is the handle's namespace, or,
/// when the handle is no namespace in this mount namespace, if it lives in another network
/// namespace than ours and runs with this namespace's configuration file
/// (`--conf-file=…/RUN8/services-SEGMENT.conf`, which only reclab writes).
pub fn netns_pids(name: &str) -> Result<Vec<u32>> {
    use std::os::unix::fs::MetadataExt;
    let handle = Path::new("/run/netns").join(name);
    let Ok(h) = std::fs::metadata(&handle) else {
        return Ok(Vec::new());
    };
    let handle_id = (h.dev(), h.ino());
    let blind = !is_nsfs(&handle);
    let conf = blind.then(|| services_conf_of(name)).flatten();
    let ours = std::fs::metadata("/proc/self/ns/net")
        .map(|m| (m.dev(), m.ino()))
        .context("reading this process's network namespace")?;
    let mut pids = Vec::new();
    let entries = std::fs::read_dir("/proc").context("reading /proc")?;
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        // A process that ended meanwhile, or a kernel thread, has no readable namespace.
        let Ok(ns) = std::fs::metadata(format!("/proc/{pid}/ns/net")) else {
            continue;
        };
        let id = (ns.dev(), ns.ino());
        let by_handle = !blind && id == handle_id;
        let by_conf = conf
            .as_ref()
            .is_some_and(|(run8, file)| id != ours && configured_with(pid, run8, file));
        if by_handle || by_conf {
            pids.push(pid);
        }
    }
    Ok(pids)
}

/// Whether `path` is a namespace handle (a file of the kernel's nsfs) in this mount namespace.
fn is_nsfs(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    const NSFS_MAGIC: i64 = 0x6e73_6673;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: statfs(2) on a NUL-terminated path into a zeroed buffer we own.
    let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
    (unsafe { libc::statfs(c.as_ptr(), &mut buf) } == 0) && buf.f_type as i64 == NSFS_MAGIC
}

/// The run short id and configuration file name of a lab-services namespace
/// `reclab-RUN8-SEGMENT` (see `lab::services::start`).
fn services_conf_of(netns: &str) -> Option<(String, String)> {
    let rest = netns.strip_prefix(crate::base::names::PREFIX)?;
    let (run8, seg) = (rest.get(..8)?, rest.get(8..)?.strip_prefix('-')?);
    (run8.chars().all(|c| c.is_ascii_hexdigit()) && !seg.is_empty())
        .then(|| (run8.to_string(), format!("services-{seg}.conf")))
}

/// Whether process `pid` was started with `--conf-file=…/RUN8/FILE`.
fn configured_with(pid: u32, run8: &str, file: &str) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let tail = format!("/{run8}/{file}");
    cmdline.split(|b| *b == 0).any(|arg| {
        arg.strip_prefix(b"--conf-file=")
            .is_some_and(|p| p.ends_with(tail.as_bytes()))
    })
}

/// Delete a network namespace reclab created, ending every process still inside it first
/// (they can only be reclab's: nothing else knows the namespace). ([`crate::lab::host::SysHost`]'s.)
pub(crate) fn remove_netns(name: &str) -> Result<()> {
    for pid in netns_pids(name)? {
        kill_and_wait(pid);
    }
    if Path::new("/run/netns").join(name).exists() {
        sys::run("ip", &["netns", "del", name])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::names::RunId;
    use crate::lab::host::SysHost;

    #[test]
    fn files_and_dirs_are_removed_and_a_second_teardown_is_a_no_op() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = RunDir::new(tmp.path(), &RunId::new());
        dir.create().unwrap();
        let f = dir.file("overlay.qcow2");
        dir.journal(&Resource::File { path: f.clone() }).unwrap();
        std::fs::write(&f, b"x").unwrap();
        dir.journal(&Resource::File {
            path: dir.file("never-created"),
        })
        .unwrap();
        assert!(teardown(None, &SysHost, &dir).unwrap().is_empty());
        assert!(!dir.path.exists());
        assert!(teardown(None, &SysHost, &dir).unwrap().is_empty());
    }

    #[test]
    fn a_pidfile_naming_a_foreign_process_outside_the_namespace_is_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let pidfile = tmp.path().join("x.pid");
        std::fs::write(&pidfile, std::process::id().to_string()).unwrap();
        // The namespace does not exist, so our own PID is not "inside" it: must survive.
        stop_process(&pidfile, "reclab-does-not-exist").unwrap();
    }

    #[test]
    fn a_services_namespace_names_its_run_and_configuration_file() {
        assert_eq!(
            services_conf_of("reclab-0123abcd-lan"),
            Some(("0123abcd".to_string(), "services-lan.conf".to_string()))
        );
        assert_eq!(services_conf_of("reclab-sbx-e2e"), None);
        assert_eq!(services_conf_of("reclab-0123abcd-"), None);
        assert_eq!(services_conf_of("prod"), None);
    }

    #[test]
    fn a_daemon_is_recognised_by_its_run_and_segment_without_the_run_directory() {
        // The configuration file of a lost run directory: the path need not exist.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 30; true", "sh"])
            .arg("--conf-file=/var/lost/runs/0123abcd/services-lan.conf")
            .spawn()
            .unwrap();
        let pid = child.id();
        wait::until(
            Instant::now() + Duration::from_secs(2),
            Poll::every(Duration::from_millis(10)),
            &Cancel::never(),
            || {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                Ok(cmdline.starts_with(b"sh\0").then_some(()))
            },
        )
        .unwrap();
        let this = configured_with(pid, "0123abcd", "services-lan.conf");
        let other_segment = configured_with(pid, "0123abcd", "services-wan.conf");
        let other_run = configured_with(pid, "99999999", "services-lan.conf");
        let _ = child.kill();
        let _ = child.wait();
        assert!(this);
        assert!(!other_segment);
        assert!(!other_run);
    }

    #[test]
    fn a_daemon_is_recognised_by_a_configuration_file_in_the_run_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let conf = tmp.path().join("services-lan.conf");
        // A stand-in daemon whose command line names the configuration file (the trailing
        // `true` keeps the shell from exec'ing sleep, so its command line stays).
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 30; true", "sh"])
            .arg(format!("--conf-file={}", conf.display()))
            .spawn()
            .unwrap();
        let pid = child.id();
        // Until the child has exec'd, its command line is still this test's.
        wait::until(
            Instant::now() + Duration::from_secs(2),
            Poll::every(Duration::from_millis(10)),
            &Cancel::never(),
            || {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                Ok(cmdline.starts_with(b"sh\0").then_some(()))
            },
        )
        .unwrap();
        let other = tempfile::tempdir().unwrap();
        let from_other = configured_from(pid, other.path());
        let from_run = configured_from(pid, tmp.path());
        let _ = child.kill();
        let _ = child.wait();
        assert!(!from_other);
        assert!(from_run);
    }
}
