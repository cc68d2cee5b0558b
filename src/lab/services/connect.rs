//! Connections into a lab from the lab side of its lab-services namespace.
//!
//! A published port (`[[publish]]`) is reached the way the lab's DNS answers are sent: from the
//! segment's lab-services namespace, over its veth on the lab bridge. [`connect`] opens the
//! TCP socket on a short-lived thread that has joined that namespace (`setns`), and hands the
//! connected socket back to the caller, which keeps running in reclab's own namespace. The host
//! never gets an address on a lab segment or a route into it, and nothing listens in the
//! namespace: a lab VM can answer a connection reclab opens, but cannot open one itself.

use anyhow::{Context, Result, bail};
use std::fs::File;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The namespace handle: `/run/netns/<netns>` where it is the namespace itself, else (the
/// handle was created in another mount namespace, where `ip netns add` bind-mounted it) the
/// namespace of the segment's dnsmasq, found by its pidfile in the run directory.
fn open_netns(run_dir: &Path, netns: &str, segment: &str) -> Result<File> {
    let ours = std::fs::metadata("/proc/self/ns/net")
        .context("reading this process's network namespace")?;
    let not_ours = |f: &File| {
        f.metadata()
            .map(|m| (m.dev(), m.ino()) != (ours.dev(), ours.ino()))
            .unwrap_or(false)
    };
    let handle = Path::new("/run/netns").join(netns);
    if let Ok(f) = File::open(&handle)
        && is_nsfs(&f)
        && not_ours(&f)
    {
        return Ok(f);
    }
    let pidfile: PathBuf = run_dir.join(format!("services-{segment}.pid"));
    let pid = std::fs::read_to_string(&pidfile)
        .with_context(|| {
            format!(
                "lab services of segment {segment} are not running (no {} and no {}): is the \
                 lab up?",
                handle.display(),
                pidfile.display()
            )
        })?
        .trim()
        .parse::<u32>()
        .with_context(|| format!("reading {}", pidfile.display()))?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if comm.trim() != "dnsmasq" {
        bail!(
            "lab services of segment {segment} are not running (pid {pid} of {} is no \
             dnsmasq): is the lab up?",
            pidfile.display()
        );
    }
    let f = File::open(format!("/proc/{pid}/ns/net"))
        .with_context(|| format!("opening the network namespace of dnsmasq {pid}"))?;
    if !not_ours(&f) {
        bail!("dnsmasq {pid} of segment {segment} runs in reclab's own namespace, not the lab's");
    }
    Ok(f)
}

fn is_nsfs(f: &File) -> bool {
    const NSFS_MAGIC: i64 = 0x6e73_6673;
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: fstatfs writes into `st`, a properly sized statfs; the fd is open.
    let rc = unsafe { libc::fstatfs(f.as_raw_fd(), &mut st) };
    rc == 0 && st.f_type as i64 == NSFS_MAGIC
}

/// A TCP connection to `to` opened from inside the lab-services namespace `netns` of segment
/// `segment` of the run in `run_dir`.
pub fn connect(
    run_dir: &Path,
    netns: &str,
    segment: &str,
    to: SocketAddr,
    timeout: Duration,
) -> Result<TcpStream> {
    let ns = open_netns(run_dir, netns, segment)?;
    let netns_name = netns.to_string();
    // The socket belongs to the namespace it was created in; the thread that created it ends.
    let joined = std::thread::Builder::new()
        .name("reclab-netns".into())
        .spawn(move || -> Result<TcpStream> {
            // SAFETY: setns on an open namespace fd changes only this thread's namespace.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error()).with_context(|| {
                    format!("entering the lab-services namespace {netns_name} (needs root)")
                });
            }
            TcpStream::connect_timeout(&to, timeout)
                .with_context(|| format!("connecting to {to} from {netns_name}"))
        })
        .context("starting a thread")?;
    joined
        .join()
        .map_err(|_| anyhow::anyhow!("the connecting thread panicked"))?
}

/// A TCP connection to a published port of the run in `run_dir`, from inside its segment's
/// lab-services namespace.
pub fn connect_published(
    run_dir: &Path,
    p: &crate::lab::record::PublishedPort,
    timeout: Duration,
) -> Result<TcpStream> {
    let to: SocketAddr = format!("{}:{}", p.address, p.port)
        .parse()
        .with_context(|| format!("published port {}: address {}", p.name, p.address))?;
    connect(run_dir, &p.netns, &p.segment, to, timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_lab_services_nothing_is_connected_from_reclabs_own_namespace() {
        let run = tempfile::tempdir().unwrap();
        let err = connect(
            run.path(),
            "reclab-00000000-none",
            "lan",
            "127.0.0.1:9".parse().unwrap(),
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("lab services of segment lan are not running"),
            "{err:#}"
        );
        // A pidfile naming a process that is no dnsmasq (this test) is refused too.
        std::fs::write(
            run.path().join("services-lan.pid"),
            std::process::id().to_string(),
        )
        .unwrap();
        let err = connect(
            run.path(),
            "reclab-00000000-none",
            "lan",
            "127.0.0.1:9".parse().unwrap(),
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("is no dnsmasq"), "{err:#}");
    }
}
