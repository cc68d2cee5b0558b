//! A [`Hypervisor`] that outlives its connection: when a call fails and the connection turns
//! out closed (the daemon restarted or went away), it opens a new one, waiting at most a
//! bound, and carries on; past the bound it fails with [`HvError::DaemonLost`], which names
//! the daemon and its URI (never the guest agent).
//!
//! Calls that only read, or that are idempotent (destroy, undefine, replace metadata, a
//! guest-ping), are repeated once on the new connection. A call that changes the hypervisor
//! (create, attach, detach, any other agent command) is not: it may have happened before the
//! connection closed. It fails, saying so, and the next call uses the new connection, so an
//! unwind that follows runs on a fresh one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::Result;

use super::{ConsoleStream, DomState, DomainInfo, HvError, Hypervisor, NetworkInfo};
use crate::base::cancel::Cancel;
use crate::base::wait::{self, Poll};

/// Opens a new connection to the same daemon.
pub type Opener = Box<dyn Fn() -> Result<Box<dyn Hypervisor>> + Send + Sync>;

/// How long reclab waits for a daemon that closed its connection to take a new one: a
/// libvirtd restart takes a few seconds.
pub const DEFAULT_BOUND: Duration = Duration::from_secs(30);

pub struct Reconnecting {
    uri: String,
    open: Opener,
    conn: RwLock<Arc<dyn Hypervisor>>,
    bound: Duration,
    /// A reconnect already waited the whole bound in vain: later ones try once, so an unwind
    /// without a daemon does not wait again for every resource.
    gave_up: AtomicBool,
}

/// Whether two connections are the same object.
fn same(a: &Arc<dyn Hypervisor>, b: &Arc<dyn Hypervisor>) -> bool {
    std::ptr::addr_eq(Arc::as_ptr(a), Arc::as_ptr(b))
}

impl Reconnecting {
    /// Open the first connection now (its failure is the caller's error, as without this
    /// wrapper); `open` makes every later one.
    pub fn open(
        uri: &str,
        bound: Duration,
        open: impl Fn() -> Result<Box<dyn Hypervisor>> + Send + Sync + 'static,
    ) -> Result<Reconnecting> {
        let first: Arc<dyn Hypervisor> = Arc::from(open()?);
        Ok(Reconnecting {
            uri: uri.to_string(),
            open: Box::new(open),
            conn: RwLock::new(first),
            bound,
            gave_up: AtomicBool::new(false),
        })
    }

    fn current(&self) -> Arc<dyn Hypervisor> {
        self.conn.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replace the closed connection `dead` (unless another thread already did).
    fn reconnect(&self, dead: &Arc<dyn Hypervisor>) -> Result<Arc<dyn Hypervisor>> {
        let mut slot = self.conn.write().unwrap_or_else(|e| e.into_inner());
        if !same(&slot, dead) {
            return Ok(slot.clone());
        }
        let bound = if self.gave_up.load(Ordering::Relaxed) {
            Duration::ZERO
        } else {
            self.bound
        };
        tracing::warn!(uri = %self.uri, "the connection to libvirtd closed; reconnecting");
        let mut last = None;
        // Not cancellable: an unwind reconnects too, and the bound is short. A daemon that
        // takes the connection but does not answer is hung, not restarting: no more tries.
        let fresh = wait::until(
            Instant::now() + bound,
            Poll::every(Duration::from_millis(200)),
            &Cancel::never(),
            || match (self.open)() {
                Ok(c) => Ok(Some(Some(c))),
                Err(e) => {
                    let hung = HvError::is_no_answer(&e);
                    last = Some(e);
                    Ok(hung.then_some(None))
                }
            },
        )?
        .flatten();
        match fresh {
            Some(c) => {
                let c: Arc<dyn Hypervisor> = Arc::from(c);
                *slot = c.clone();
                self.gave_up.store(false, Ordering::Relaxed);
                tracing::warn!(uri = %self.uri, "reconnected to libvirtd");
                Ok(c)
            }
            None => {
                self.gave_up.store(true, Ordering::Relaxed);
                Err(anyhow::Error::new(HvError::DaemonLost {
                    uri: self.uri.clone(),
                    secs: bound.as_secs(),
                    message: last
                        .map(|e| format!("{e:#}"))
                        .unwrap_or_else(|| "the connection closed".into()),
                }))
            }
        }
    }

    /// Run `f` on the connection; if it fails on a closed connection, reconnect and (when
    /// `repeat`) run it once more there.
    fn call<T>(&self, repeat: bool, f: impl Fn(&dyn Hypervisor) -> Result<T>) -> Result<T> {
        let conn = self.current();
        let err = match f(conn.as_ref()) {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        if conn.is_alive() {
            return Err(err);
        }
        let fresh = self.reconnect(&conn)?;
        if repeat {
            f(fresh.as_ref())
        } else {
            Err(err.context(format!(
                "the connection to libvirtd at {} closed during this call; reconnected, but a \
                 call that changes the hypervisor is not repeated",
                self.uri
            )))
        }
    }
}

/// Agent commands that only ask, so repeating one is harmless.
fn agent_query(json: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(json).is_ok_and(|v| {
        matches!(
            v["execute"].as_str(),
            Some("guest-ping" | "guest-info" | "guest-get-osinfo" | "guest-get-host-name")
        )
    })
}

impl Hypervisor for Reconnecting {
    fn uri(&self) -> String {
        self.uri.clone()
    }
    fn is_alive(&self) -> bool {
        self.current().is_alive()
    }
    fn list_domains(&self) -> Result<Vec<DomainInfo>> {
        self.call(true, |h| h.list_domains())
    }
    fn domain_xml(&self, name: &str, inactive: bool) -> Result<String> {
        self.call(true, |h| h.domain_xml(name, inactive))
    }
    fn list_snapshots(&self, domain: &str) -> Result<Vec<String>> {
        self.call(true, |h| h.list_snapshots(domain))
    }
    fn snapshot_xml(&self, domain: &str, snapshot: &str) -> Result<String> {
        self.call(true, |h| h.snapshot_xml(domain, snapshot))
    }
    fn create_domain(&self, xml: &str) -> Result<()> {
        self.call(false, |h| h.create_domain(xml))
    }
    fn destroy_domain(&self, name: &str) -> Result<bool> {
        self.call(true, |h| h.destroy_domain(name))
    }
    fn undefine_domain(&self, name: &str) -> Result<bool> {
        self.call(true, |h| h.undefine_domain(name))
    }
    fn domain_state(&self, name: &str) -> Result<Option<DomState>> {
        self.call(true, |h| h.domain_state(name))
    }
    fn domain_metadata(&self, name: &str, namespace_uri: &str) -> Result<Option<String>> {
        self.call(true, |h| h.domain_metadata(name, namespace_uri))
    }
    fn set_domain_metadata(
        &self,
        name: &str,
        namespace_uri: &str,
        prefix: &str,
        xml: &str,
    ) -> Result<()> {
        self.call(true, |h| {
            h.set_domain_metadata(name, namespace_uri, prefix, xml)
        })
    }
    fn agent_command(&self, domain: &str, json: &str, timeout_secs: i32) -> Result<String> {
        self.call(agent_query(json), |h| {
            h.agent_command(domain, json, timeout_secs)
        })
    }
    fn screenshot(&self, domain: &str) -> Result<Vec<u8>> {
        self.call(true, |h| h.screenshot(domain))
    }
    fn attach_disk(&self, domain: &str, disk_xml: &str, live: bool) -> Result<()> {
        self.call(false, |h| h.attach_disk(domain, disk_xml, live))
    }
    fn detach_disk(&self, domain: &str, disk_xml: &str) -> Result<bool> {
        self.call(false, |h| h.detach_disk(domain, disk_xml))
    }
    fn open_console(&self, domain: &str) -> Result<Box<dyn ConsoleStream>> {
        self.call(true, |h| h.open_console(domain))
    }
    fn open_graphics(&self, domain: &str, skip_auth: bool) -> Result<std::os::fd::OwnedFd> {
        self.call(true, |h| h.open_graphics(domain, skip_auth))
    }
    fn list_networks(&self) -> Result<Vec<NetworkInfo>> {
        self.call(true, |h| h.list_networks())
    }
    fn network_xml(&self, name: &str) -> Result<String> {
        self.call(true, |h| h.network_xml(name))
    }
    fn create_network(&self, xml: &str) -> Result<()> {
        self.call(false, |h| h.create_network(xml))
    }
    fn destroy_network(&self, name: &str) -> Result<bool> {
        self.call(true, |h| h.destroy_network(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hv::agent;
    use crate::hv::fake::FakeHv;
    use std::sync::atomic::AtomicUsize;

    fn wrapped(hv: &FakeHv, bound: Duration) -> Reconnecting {
        counted(hv, bound, Arc::default())
    }

    /// Like [`wrapped`], counting the attempts to connect in `tries`.
    fn counted(hv: &FakeHv, bound: Duration, tries: Arc<AtomicUsize>) -> Reconnecting {
        let daemon = hv.clone();
        Reconnecting::open("fake:///", bound, move || {
            tries.fetch_add(1, Ordering::Relaxed);
            Ok(Box::new(daemon.connect()?) as Box<dyn Hypervisor>)
        })
        .unwrap()
    }

    #[test]
    fn a_daemon_restart_is_ridden_out_and_reads_carry_on() {
        let hv = FakeHv::new();
        hv.create_domain("<domain><name>db</name></domain>")
            .unwrap();
        let r = wrapped(&hv, Duration::from_secs(5));
        assert_eq!(r.list_domains().unwrap().len(), 1);
        hv.restart_daemon();
        assert!(!r.is_alive(), "the old connection is closed");
        assert_eq!(r.domain_state("db").unwrap(), Some(DomState::Running));
        assert!(r.is_alive(), "a new connection");
        agent::wait_ready(
            &r,
            "db",
            Duration::from_secs(5),
            Duration::from_millis(5),
            &Cancel::new(),
        )
        .unwrap();
    }

    #[test]
    fn a_call_that_changes_the_hypervisor_is_not_repeated_but_the_next_one_works() {
        let hv = FakeHv::new();
        let r = wrapped(&hv, Duration::from_secs(5));
        hv.restart_daemon();
        let err = r
            .create_domain("<domain><name>db</name></domain>")
            .unwrap_err();
        assert!(format!("{err:#}").contains("not repeated"), "{err:#}");
        assert!(hv.domain_names().is_empty(), "created nowhere");
        r.create_domain("<domain><name>db</name></domain>").unwrap();
        assert_eq!(hv.domain_names(), ["db"]);
    }

    #[test]
    fn a_daemon_that_stays_away_fails_naming_libvirtd_not_the_agent() {
        let hv = FakeHv::new();
        hv.create_domain("<domain><name>db</name></domain>")
            .unwrap();
        let tries = Arc::new(AtomicUsize::new(0));
        let r = counted(&hv, Duration::from_millis(300), tries.clone());
        hv.stop_daemon(true);
        // The boot wait gives the agent a minute; a lost daemon ends it (not a timeout).
        let err = agent::wait_ready(
            &r,
            "db",
            Duration::from_secs(60),
            Duration::from_millis(5),
            &Cancel::new(),
        )
        .unwrap_err();
        let msg = format!("{err:#}");
        assert!(HvError::is_daemon_lost(&err), "{msg}");
        assert!(
            msg.contains("lost the connection to libvirtd at fake:///"),
            "{msg}"
        );
        assert!(!msg.contains("qemu-ga"), "the agent is not blamed: {msg}");
        assert!(!msg.contains("did not answer"), "not a timeout: {msg}");
        // Once it gave up, a later call (an unwind's) tries to connect once, not for the
        // whole bound again; when the daemon is back, calls work on a fresh connection.
        let before = tries.load(Ordering::Relaxed);
        assert!(HvError::is_daemon_lost(
            &r.destroy_domain("db").unwrap_err()
        ));
        assert_eq!(tries.load(Ordering::Relaxed), before + 1);
        hv.stop_daemon(false);
        assert!(r.destroy_domain("db").unwrap());
        assert!(hv.domain_names().is_empty());
    }

    #[test]
    fn a_daemon_that_takes_the_connection_but_never_answers_is_not_waited_for() {
        let hv = FakeHv::new();
        hv.create_domain("<domain><name>db</name></domain>")
            .unwrap();
        let tries = Arc::new(AtomicUsize::new(0));
        let hung = Arc::new(AtomicBool::new(false));
        let r = {
            let (daemon, tries, hung) = (hv.clone(), tries.clone(), hung.clone());
            // A minute's bound: a hung daemon must not be retried for all of it.
            Reconnecting::open("fake:///", Duration::from_secs(60), move || {
                tries.fetch_add(1, Ordering::Relaxed);
                if hung.load(Ordering::Relaxed) {
                    return Err(anyhow::Error::new(HvError::NoAnswer {
                        uri: "fake:///".into(),
                        secs: 10,
                    }));
                }
                Ok(Box::new(daemon.connect()?) as Box<dyn Hypervisor>)
            })
            .unwrap()
        };
        // Keepalive closed the connection to a daemon that stopped answering.
        hung.store(true, Ordering::Relaxed);
        hv.restart_daemon();
        let err = r.domain_state("db").unwrap_err();
        let msg = format!("{err:#}");
        assert!(HvError::is_daemon_lost(&err), "{msg}");
        assert!(
            msg.contains("took the connection but did not answer within 10s"),
            "{msg}"
        );
        assert_eq!(
            tries.load(Ordering::Relaxed),
            2,
            "the first open and one retry"
        );
        // The unwind that follows still tries a fresh connection, once.
        assert!(HvError::is_daemon_lost(
            &r.destroy_domain("db").unwrap_err()
        ));
        assert_eq!(tries.load(Ordering::Relaxed), 3);
        hung.store(false, Ordering::Relaxed);
        assert!(r.destroy_domain("db").unwrap());
    }
}
