//! The hypervisor boundary. Only `hv::libvirt` imports `virt`; everything else in reclab
//! talks to the [`Hypervisor`] trait. Calls block; callers run them on worker threads.

pub mod agent;

#[cfg(any(test, feature = "test-hooks"))]
pub mod fake;
pub mod libvirt;
pub mod ppm;
pub mod reconnect;

use anyhow::Result;
use std::os::fd::OwnedFd;

/// A VM's serial console, attached through the hypervisor. Non-blocking: callers poll.
pub trait ConsoleStream: Send {
    /// Reads what the console printed: `Ok(None)` when nothing is waiting, `Ok(Some(0))` when
    /// the console closed (the domain stopped, say).
    fn recv(&mut self, buf: &mut [u8]) -> Result<Option<usize>>;
    /// Sends keystrokes; returns how many bytes the console took (0 when it would block).
    fn send(&mut self, data: &[u8]) -> Result<usize>;
    /// Detaches from the console.
    fn close(self: Box<Self>) -> Result<()>;
}

/// What reclab needs to know about a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainInfo {
    pub name: String,
    pub uuid: String,
    pub active: bool,
    /// Persistent (defined) or transient.
    pub persistent: bool,
}

/// What reclab needs to know about a network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkInfo {
    pub name: String,
    pub bridge: Option<String>,
    pub active: bool,
    pub persistent: bool,
}

/// Coarse domain run state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DomState {
    Running,
    Paused,
    ShutOff,
    Crashed,
    Other,
}

/// Error kinds callers branch on. Everything else is an opaque `anyhow::Error`.
#[derive(Debug, thiserror::Error)]
pub enum HvError {
    #[error("{kind} '{name}' not found")]
    NotFound { kind: &'static str, name: String },
    #[error("guest agent of '{domain}' is not responding: {message}")]
    AgentUnavailable { domain: String, message: String },
    /// The connection to the daemon closed and no new one could be opened in time.
    #[error(
        "lost the connection to libvirtd at {uri} and could not reconnect within {secs}s: {message}; is the libvirt daemon running?"
    )]
    DaemonLost {
        uri: String,
        secs: u64,
        message: String,
    },
    /// The daemon took the connection but never answered the request to open it (it is hung,
    /// or stopped with SIGSTOP): waiting longer does not help.
    #[error(
        "libvirtd at {uri} took the connection but did not answer within {secs}s (is the libvirt daemon hung or stopped?)"
    )]
    NoAnswer { uri: String, secs: u64 },
}

impl HvError {
    /// Whether `err` (anywhere in its context chain) is [`HvError::NotFound`].
    pub fn is_not_found(err: &anyhow::Error) -> bool {
        matches!(
            err.downcast_ref::<HvError>(),
            Some(HvError::NotFound { .. })
        )
    }

    /// Whether `err` (anywhere in its context chain) is [`HvError::DaemonLost`].
    pub fn is_daemon_lost(err: &anyhow::Error) -> bool {
        matches!(
            err.downcast_ref::<HvError>(),
            Some(HvError::DaemonLost { .. })
        )
    }

    /// Whether `err` (anywhere in its context chain) is [`HvError::NoAnswer`].
    pub fn is_no_answer(err: &anyhow::Error) -> bool {
        matches!(
            err.downcast_ref::<HvError>(),
            Some(HvError::NoAnswer { .. })
        )
    }

    /// Whether `err` (anywhere in its context chain) is [`HvError::AgentUnavailable`].
    pub fn is_agent_unavailable(err: &anyhow::Error) -> bool {
        matches!(
            err.downcast_ref::<HvError>(),
            Some(HvError::AgentUnavailable { .. })
        )
    }
}

/// The small surface reclab uses of a hypervisor. Every method that creates something is
/// matched by one that removes it; removal of something already gone returns `Ok(false)`.
pub trait Hypervisor: Send + Sync {
    /// The URI this connection was opened with.
    fn uri(&self) -> String;

    /// Whether the connection to the daemon is still open (libvirt's keepalive notices a
    /// daemon that went away within seconds; a failed call checks it).
    fn is_alive(&self) -> bool {
        true
    }

    fn list_domains(&self) -> Result<Vec<DomainInfo>>;
    /// Live XML of a domain (`inactive` for the persistent definition). Never includes secrets.
    fn domain_xml(&self, name: &str, inactive: bool) -> Result<String>;
    /// Names of the domain's snapshots.
    fn list_snapshots(&self, domain: &str) -> Result<Vec<String>>;
    /// XML of one snapshot (`<domainsnapshot>`, including the embedded `<domain>`).
    fn snapshot_xml(&self, domain: &str, snapshot: &str) -> Result<String>;
    /// Create and start a transient domain.
    fn create_domain(&self, xml: &str) -> Result<()>;
    /// Force off a domain (transient ones vanish); `Ok(false)` if it does not exist.
    fn destroy_domain(&self, name: &str) -> Result<bool>;
    /// Remove the persistent definition of a domain, if any; `Ok(false)` if it does not exist.
    fn undefine_domain(&self, name: &str) -> Result<bool>;
    fn domain_state(&self, name: &str) -> Result<Option<DomState>>;
    /// Reclab's namespaced metadata element of a domain, if present.
    fn domain_metadata(&self, name: &str, namespace_uri: &str) -> Result<Option<String>>;
    /// Replaces the namespaced metadata element of a running domain (live only): `xml` is the
    /// element, written with `prefix` for `namespace_uri`. Implementations that cannot do this
    /// keep the default, which says so.
    fn set_domain_metadata(
        &self,
        name: &str,
        _namespace_uri: &str,
        _prefix: &str,
        _xml: &str,
    ) -> Result<()> {
        anyhow::bail!("this hypervisor connection cannot update the metadata of domain {name}")
    }
    /// Raw QEMU guest agent command (JSON in, JSON out) with a timeout in seconds (never blocking).
    fn agent_command(&self, domain: &str, json: &str, timeout_secs: i32) -> Result<String>;
    /// A PNG screenshot of the domain's first screen (QEMU sends PPM; implementations convert).
    fn screenshot(&self, domain: &str) -> Result<Vec<u8>>;
    /// Hot-plug a disk (`<disk>` device XML) into a domain. `live` affects the running domain
    /// only (what reclab does with its transient lab domains); otherwise the persistent
    /// definition only.
    fn attach_disk(&self, domain: &str, disk_xml: &str, live: bool) -> Result<()>;
    /// Hot-unplug a disk from a running domain, matched by the `<target dev=...>` in
    /// `disk_xml`. `Ok(false)` if the domain or the disk is already gone. The guest may finish
    /// the unplug asynchronously after this returns.
    fn detach_disk(&self, domain: &str, disk_xml: &str) -> Result<bool>;
    /// Attach to the domain's first serial console or `<console>` (an error when it has none,
    /// or when another session holds it).
    fn open_console(&self, domain: &str) -> Result<Box<dyn ConsoleStream>>;
    /// A socket connected to the domain's first graphics (VNC) server, as a new client. The
    /// hypervisor hands it over, so it works wherever the graphics listen (another network
    /// namespace, a UNIX socket). With `skip_auth` the server asks no password: the caller
    /// has authenticated the user. Each call is a new client connection.
    fn open_graphics(&self, domain: &str, skip_auth: bool) -> Result<OwnedFd>;

    fn list_networks(&self) -> Result<Vec<NetworkInfo>>;
    fn network_xml(&self, name: &str) -> Result<String>;
    /// Create and start a transient network.
    fn create_network(&self, xml: &str) -> Result<()>;
    /// Stop a network (transient ones vanish) and undefine it if persistent; `Ok(false)` if absent.
    fn destroy_network(&self, name: &str) -> Result<bool>;
}
