//! The libvirt implementation of [`super::Hypervisor`]: the only module that imports `virt`.
//!
//! Every call blocks on the libvirt connection. `virt::connect::Connect` is `Send + Sync`
//! and libvirt connections are thread-safe, so one [`LibvirtHv`] can be shared (for example
//! in an `Arc`) by several worker threads.
//!
//! Error mapping: libvirt's "no such object" errors become [`HvError::NotFound`], attached as
//! context over the original libvirt error, so callers can `downcast_ref::<HvError>()` and the
//! full libvirt message still shows in `{:#}`. Guest agent availability errors (not connected
//! yet, timed out, out of sync) become [`HvError::AgentUnavailable`] carrying libvirt's
//! message and error code. "Agent not configured" (no channel in the domain) is not one of
//! them: waiting does not fix it.

use std::sync::Once;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use virt::connect::Connect;
use virt::domain::{Domain, DomainState};
use virt::error::{Error as VirtError, ErrorNumber};
use virt::network::Network;
use virt::stream::Stream;
use virt::sys;

use super::{ConsoleStream, DomState, DomainInfo, HvError, Hypervisor, NetworkInfo};

/// What `virStreamRecv`/`virStreamSend` return on a non-blocking stream with nothing to do.
const STREAM_WOULD_BLOCK: isize = -2;

/// A serial console over a non-blocking libvirt stream. The process must run libvirt's event
/// loop ([`start_event_loop`], before connecting), or incoming data is only read while reclab
/// sends.
///
/// A blocking stream cannot be used here: the remote driver holds the connection lock while a
/// blocking `virStreamRecv` waits, so keystrokes could not be sent meanwhile.
struct LibvirtConsole {
    stream: Option<Stream>,
    domain: String,
}

impl LibvirtConsole {
    fn stream(&self) -> Result<&Stream> {
        self.stream.as_ref().context("the console is closed")
    }
}

impl ConsoleStream for LibvirtConsole {
    fn recv(&mut self, buf: &mut [u8]) -> Result<Option<usize>> {
        match self.stream()?.recv(buf) {
            Ok(STREAM_WOULD_BLOCK) => Ok(None),
            Ok(n) if n >= 0 => Ok(Some(n as usize)),
            Ok(n) => bail!(
                "unexpected result {n} reading the console of {}",
                self.domain
            ),
            Err(e) => Err(anyhow::Error::new(e))
                .with_context(|| format!("reading the console of {}", self.domain)),
        }
    }

    fn send(&mut self, data: &[u8]) -> Result<usize> {
        match self.stream()?.send(data) {
            Ok(STREAM_WOULD_BLOCK) => Ok(0),
            Ok(n) if n >= 0 => Ok(n as usize),
            Ok(n) => bail!(
                "unexpected result {n} writing to the console of {}",
                self.domain
            ),
            Err(e) => Err(anyhow::Error::new(e))
                .with_context(|| format!("writing to the console of {}", self.domain)),
        }
    }

    fn close(mut self: Box<Self>) -> Result<()> {
        if let Some(stream) = self.stream.take() {
            // The domain may have stopped: its end of the stream is already gone.
            if let Err(e) = stream.finish() {
                tracing::debug!(domain = %self.domain, error = %e, "closing the console stream");
            }
        }
        Ok(())
    }
}

impl Drop for LibvirtConsole {
    fn drop(&mut self) {
        if let Some(stream) = self.stream.take() {
            let _ = stream.abort();
        }
    }
}

/// Screenshots larger than this are refused (a 4K RGB frame is ~25 MiB).
const MAX_SCREENSHOT_BYTES: usize = 64 << 20;

/// How long opening a connection may take. A daemon that takes the connection but never
/// answers (hung, or stopped with SIGSTOP) would otherwise block the open forever.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// Keepalive of every connection: a probe after 5 s without traffic, and the connection is
/// closed after 5 unanswered ones (~30 s, libvirtd's own defaults), so a call in flight on a
/// daemon that stopped answering fails (a closed connection) instead of blocking forever.
const KEEPALIVE_INTERVAL_SECS: i32 = 5;
const KEEPALIVE_COUNT: u32 = 5;

/// A [`Hypervisor`] backed by a libvirt connection.
pub struct LibvirtHv {
    conn: Connect,
    uri: String,
}

static SILENCE_LIBVIRT: Once = Once::new();
static EVENT_LOOP: Once = Once::new();

/// Start libvirt's default event loop on a background thread (once per process). Call it
/// before opening the connection that carries streams read without blocking (consoles):
/// libvirt's client reads incoming stream data only when it watches the connection's socket
/// through an event loop, or while a call of its own is in flight.
pub fn start_event_loop() -> Result<()> {
    let mut result = Ok(());
    EVENT_LOOP.call_once(|| {
        if let Err(e) = virt::event::event_register_default_impl() {
            result = Err(anyhow::Error::new(e)).context("registering libvirt's event loop");
            return;
        }
        std::thread::Builder::new()
            .name("libvirt-events".into())
            .spawn(|| {
                loop {
                    if let Err(e) = virt::event::event_run_default_impl() {
                        tracing::warn!(error = %e, "libvirt event loop");
                        std::thread::sleep(std::time::Duration::from_millis(100));
                    }
                }
            })
            .map(|_| ())
            .unwrap_or_else(|e| result = Err(e).context("starting libvirt's event loop thread"));
    });
    result
}

impl LibvirtHv {
    /// Open a read-write connection to `uri` (e.g. `qemu:///system?socket=/path/libvirt-sock`
    /// or `test:///default`).
    ///
    /// The open gives up after [`OPEN_TIMEOUT`] ([`HvError::NoAnswer`]); the connection then
    /// keeps itself alive (libvirt's keepalive, on the event loop this starts), so a daemon
    /// that stops answering later closes it within about 30 s.
    pub fn open(uri: &str) -> Result<Self> {
        // libvirt prints every error to stderr by default; reclab reports errors itself.
        SILENCE_LIBVIRT.call_once(virt::error::clear_error_callback);
        // Keepalive needs the event loop, registered before the connection is opened.
        start_event_loop()?;
        let (tx, rx) = mpsc::channel();
        let target = uri.to_string();
        // On a thread, so a daemon that never answers cannot hold reclab: that thread then
        // waits on its own (the connection it gets, if any, is closed when it is dropped).
        std::thread::Builder::new()
            .name("libvirt-open".into())
            .spawn(move || {
                let _ = tx.send(Connect::open(Some(&target)));
            })
            .context("starting a thread to connect to libvirt")?;
        let opened = match rx.recv_timeout(OPEN_TIMEOUT) {
            Ok(opened) => opened,
            Err(_) => {
                return Err(anyhow::Error::new(HvError::NoAnswer {
                    uri: uri.to_string(),
                    secs: OPEN_TIMEOUT.as_secs(),
                }));
            }
        };
        let conn = opened.map_err(|e| {
            anyhow::Error::new(e).context(format!(
                "cannot connect to libvirt at {uri}: is the libvirt daemon running and is its \
                 socket reachable? (for a private daemon pass \
                 qemu:///system?socket=/path/to/libvirt-sock; check with `virsh -c '{uri}' version`)"
            ))
        })?;
        // Drivers without a daemon (test:///) have no keepalive; their calls cannot hang.
        if let Err(e) = conn.set_keep_alive(KEEPALIVE_INTERVAL_SECS, KEEPALIVE_COUNT) {
            tracing::debug!(%uri, error = %e, "no keepalive on this connection");
        }
        Ok(LibvirtHv {
            conn,
            uri: uri.to_string(),
        })
    }

    fn lookup_domain(&self, name: &str) -> Result<Domain> {
        self.conn
            .lookup_domain_by_name(name)
            .map_err(|e| lookup_err(e, "domain", name))
    }

    /// `Ok(None)` when the domain does not exist.
    fn find_domain(&self, name: &str) -> Result<Option<Domain>> {
        match self.conn.lookup_domain_by_name(name) {
            Ok(d) => Ok(Some(d)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(lookup_err(e, "domain", name)),
        }
    }

    fn find_network(&self, name: &str) -> Result<Option<Network>> {
        match self.conn.lookup_network_by_name(name) {
            Ok(n) => Ok(Some(n)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(lookup_err(e, "network", name)),
        }
    }

    fn screenshot_bytes(&self, dom: &Domain, name: &str) -> Result<(String, Vec<u8>)> {
        let stream = Stream::new(&self.conn, 0)
            .map_err(anyhow::Error::new)
            .context("creating a libvirt stream")?;
        let mime = match dom.screenshot(&stream, 0, 0) {
            Ok(m) => m,
            Err(e) => {
                let _ = stream.abort();
                return Err(map_err(e, "domain", name)).context("requesting the screenshot");
            }
        };
        let mut data = Vec::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = match stream.recv(&mut buf) {
                Ok(n) => n as usize,
                Err(e) => {
                    let _ = stream.abort();
                    return Err(anyhow::Error::new(e)).context("receiving the screenshot");
                }
            };
            if n == 0 {
                break;
            }
            data.extend_from_slice(&buf[..n]);
            if data.len() > MAX_SCREENSHOT_BYTES {
                let _ = stream.abort();
                bail!("screenshot is larger than {MAX_SCREENSHOT_BYTES} bytes");
            }
        }
        stream
            .finish()
            .map_err(anyhow::Error::new)
            .context("finishing the screenshot stream")?;
        Ok((mime, data))
    }
}

/// libvirt error codes that mean "the object does not exist".
fn is_not_found(e: &VirtError) -> bool {
    e.code().is_any(vec![
        ErrorNumber::NoDomain,
        ErrorNumber::NoNetwork,
        ErrorNumber::NoDomainSnapshot,
        ErrorNumber::NoStorageVolume,
    ])
}

/// libvirt error codes that mean "the guest agent cannot be talked to right now".
fn is_agent_unavailable(e: &VirtError) -> bool {
    e.code().is_any(vec![
        ErrorNumber::AgentUnresponsive,
        ErrorNumber::AgentUnsynced,
        ErrorNumber::AgentCommandTimeout,
    ])
}

/// Wrap a libvirt error, tagging not-found errors as [`HvError::NotFound`] of `kind`/`name`.
fn map_err(e: VirtError, kind: &'static str, name: &str) -> anyhow::Error {
    if is_not_found(&e) {
        let tag = HvError::NotFound {
            kind,
            name: name.to_string(),
        };
        anyhow::Error::new(e).context(tag)
    } else {
        anyhow::Error::new(e)
    }
}

/// Like [`map_err`] for lookups: a not-found error already names the object; anything else
/// (a broken connection, say) gets "looking up <kind> <name>" as context.
fn lookup_err(e: VirtError, kind: &'static str, name: &str) -> anyhow::Error {
    if is_not_found(&e) {
        map_err(e, kind, name)
    } else {
        anyhow::Error::new(e).context(format!("looking up {kind} {name}"))
    }
}

fn dom_state(state: DomainState) -> DomState {
    match state {
        DomainState::Running | DomainState::Blocked => DomState::Running,
        DomainState::Paused | DomainState::PMSuspended => DomState::Paused,
        DomainState::Shutoff => DomState::ShutOff,
        DomainState::Crashed => DomState::Crashed,
        DomainState::NoState | DomainState::Shutdown => DomState::Other,
    }
}

impl Hypervisor for LibvirtHv {
    fn uri(&self) -> String {
        self.uri.clone()
    }

    fn is_alive(&self) -> bool {
        self.conn.is_alive().unwrap_or(false)
    }

    fn list_domains(&self) -> Result<Vec<DomainInfo>> {
        let doms = self
            .conn
            .list_all_domains(0)
            .map_err(anyhow::Error::new)
            .context("listing domains")?;
        let mut out = Vec::with_capacity(doms.len());
        for d in doms {
            let info = (|| -> Result<DomainInfo, VirtError> {
                Ok(DomainInfo {
                    name: d.name()?,
                    uuid: d.uuid_string()?,
                    active: d.is_active()?,
                    persistent: d.is_persistent()?,
                })
            })();
            match info {
                Ok(i) => out.push(i),
                // The domain vanished while listing (a transient domain was destroyed).
                Err(e) if is_not_found(&e) => continue,
                Err(e) => return Err(anyhow::Error::new(e)).context("reading a listed domain"),
            }
        }
        Ok(out)
    }

    fn domain_xml(&self, name: &str, inactive: bool) -> Result<String> {
        let dom = self.lookup_domain(name)?;
        let flags = if inactive {
            sys::VIR_DOMAIN_XML_INACTIVE
        } else {
            0
        };
        dom.xml_desc(flags)
            .map_err(|e| map_err(e, "domain", name))
            .with_context(|| format!("reading the xml of domain {name}"))
    }

    fn list_snapshots(&self, domain: &str) -> Result<Vec<String>> {
        let dom = self.lookup_domain(domain)?;
        let snaps = dom
            .list_all_snapshots(0)
            .map_err(|e| map_err(e, "domain", domain))
            .with_context(|| format!("listing snapshots of domain {domain}"))?;
        snaps
            .iter()
            .map(|s| {
                s.name()
                    .map_err(anyhow::Error::new)
                    .with_context(|| format!("reading a snapshot name of domain {domain}"))
            })
            .collect()
    }

    fn snapshot_xml(&self, domain: &str, snapshot: &str) -> Result<String> {
        let dom = self.lookup_domain(domain)?;
        let snap = Domain::lookup_snapshot_by_name(&dom, snapshot, 0)
            .map_err(|e| lookup_err(e, "snapshot", snapshot))
            .with_context(|| format!("reading snapshots of domain {domain}"))?;
        snap.xml_desc(0)
            .map_err(|e| map_err(e, "snapshot", snapshot))
            .with_context(|| format!("reading snapshot {snapshot} of domain {domain}"))
    }

    fn create_domain(&self, xml: &str) -> Result<()> {
        let dom = self
            .conn
            .create_domain_xml(xml, 0)
            .map_err(anyhow::Error::new)
            .context("creating a transient domain")?;
        tracing::debug!(domain = %dom.name().unwrap_or_default(), "created transient domain");
        Ok(())
    }

    fn destroy_domain(&self, name: &str) -> Result<bool> {
        let Some(dom) = self.find_domain(name)? else {
            return Ok(false);
        };
        if !dom.is_active().unwrap_or(true) {
            return Ok(false);
        }
        match dom.destroy() {
            Ok(()) => Ok(true),
            // Gone or shut off between the lookup and the destroy: nothing left to do.
            Err(e) if is_not_found(&e) || e.code().is(ErrorNumber::OperationInvalid) => Ok(false),
            Err(e) => {
                Err(anyhow::Error::new(e)).with_context(|| format!("destroying domain {name}"))
            }
        }
    }

    fn undefine_domain(&self, name: &str) -> Result<bool> {
        let Some(dom) = self.find_domain(name)? else {
            return Ok(false);
        };
        let persistent = dom
            .is_persistent()
            .map_err(|e| map_err(e, "domain", name))
            .with_context(|| format!("checking whether domain {name} is persistent"))?;
        if !persistent {
            return Ok(false);
        }
        // No flags: undefining a domain that still has snapshot metadata or NVRAM fails
        // rather than deleting them.
        match dom.undefine() {
            Ok(()) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => {
                Err(anyhow::Error::new(e)).with_context(|| format!("undefining domain {name}"))
            }
        }
    }

    fn domain_state(&self, name: &str) -> Result<Option<DomState>> {
        let Some(dom) = self.find_domain(name)? else {
            return Ok(None);
        };
        match dom.state() {
            Ok((state, _reason)) => Ok(Some(
                state.known().map(dom_state).unwrap_or(DomState::Other),
            )),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(anyhow::Error::new(e))
                .with_context(|| format!("reading the state of domain {name}")),
        }
    }

    fn domain_metadata(&self, name: &str, namespace_uri: &str) -> Result<Option<String>> {
        let dom = self.lookup_domain(name)?;
        match dom.metadata(
            sys::VIR_DOMAIN_METADATA_ELEMENT as i32,
            Some(namespace_uri),
            0,
        ) {
            Ok(xml) => Ok(Some(xml)),
            Err(e) if e.code().is(ErrorNumber::NoDomainMetadata) => Ok(None),
            Err(e) => Err(map_err(e, "domain", name))
                .with_context(|| format!("reading metadata {namespace_uri} of domain {name}")),
        }
    }

    fn set_domain_metadata(
        &self,
        name: &str,
        namespace_uri: &str,
        prefix: &str,
        xml: &str,
    ) -> Result<()> {
        let dom = self.lookup_domain(name)?;
        dom.set_metadata(
            sys::VIR_DOMAIN_METADATA_ELEMENT as i32,
            Some(xml),
            Some(prefix),
            Some(namespace_uri),
            sys::VIR_DOMAIN_AFFECT_LIVE,
        )
        .map_err(|e| map_err(e, "domain", name))
        .with_context(|| format!("writing metadata {namespace_uri} of domain {name}"))
    }

    fn agent_command(&self, domain: &str, json: &str, timeout_secs: i32) -> Result<String> {
        // libvirt's special values (0 = no wait, -1 = default, -2 = block forever) are never
        // what reclab wants: a hung guest agent must not hang reclab.
        ensure!(
            timeout_secs >= 1,
            "guest agent timeout must be at least 1 second, got {timeout_secs}"
        );
        let dom = self.lookup_domain(domain)?;
        dom.qemu_agent_command(json, timeout_secs, 0).map_err(|e| {
            if is_agent_unavailable(&e) {
                // libvirt's message already starts with "Guest agent is not responding"; keep
                // only the detail so the error reads once.
                let msg = e.message();
                let detail = msg
                    .strip_prefix("Guest agent is not responding: ")
                    .unwrap_or(msg);
                anyhow::Error::new(HvError::AgentUnavailable {
                    domain: domain.to_string(),
                    message: format!("{detail} [{}]", e.code()),
                })
            } else {
                map_err(e, "domain", domain)
                    .context(format!("running a guest agent command on {domain}"))
            }
        })
    }

    fn screenshot(&self, domain: &str) -> Result<Vec<u8>> {
        let dom = self.lookup_domain(domain)?;
        let (mime, data) = self
            .screenshot_bytes(&dom, domain)
            .with_context(|| format!("taking a screenshot of domain {domain}"))?;
        if mime == "image/png" || data.starts_with(b"\x89PNG") {
            Ok(data)
        } else if data.starts_with(b"P6") {
            super::ppm::ppm_to_png(&data)
                .with_context(|| format!("converting the screenshot of domain {domain} to png"))
        } else {
            bail!("screenshot of domain {domain} has unsupported type {mime}")
        }
    }

    fn attach_disk(&self, domain: &str, disk_xml: &str, live: bool) -> Result<()> {
        let dom = self.lookup_domain(domain)?;
        let flags = if live {
            sys::VIR_DOMAIN_AFFECT_LIVE
        } else {
            sys::VIR_DOMAIN_AFFECT_CONFIG
        };
        dom.attach_device_flags(disk_xml, flags)
            .map_err(|e| map_err(e, "domain", domain))
            .with_context(|| format!("attaching a disk to domain {domain}"))
    }

    fn detach_disk(&self, domain: &str, disk_xml: &str) -> Result<bool> {
        let Some(dom) = self.find_domain(domain)? else {
            return Ok(false);
        };
        match dom.detach_device_flags(disk_xml, sys::VIR_DOMAIN_AFFECT_LIVE) {
            Ok(()) => Ok(true),
            Err(e) if is_not_found(&e) || e.code().is(ErrorNumber::DeviceMissing) => Ok(false),
            Err(e) => Err(anyhow::Error::new(e))
                .with_context(|| format!("detaching a disk from domain {domain}")),
        }
    }

    fn open_console(&self, domain: &str) -> Result<Box<dyn ConsoleStream>> {
        let dom = self.lookup_domain(domain)?;
        let stream = Stream::new(&self.conn, sys::VIR_STREAM_NONBLOCK)
            .map_err(anyhow::Error::new)
            .context("creating a libvirt stream")?;
        if let Err(e) = dom.open_console(None, &stream, 0) {
            let _ = stream.abort();
            return Err(map_err(e, "domain", domain))
                .with_context(|| format!("opening the serial console of domain {domain}"));
        }
        Ok(Box::new(LibvirtConsole {
            stream: Some(stream),
            domain: domain.to_string(),
        }))
    }

    fn open_graphics(&self, domain: &str, skip_auth: bool) -> Result<std::os::fd::OwnedFd> {
        use std::os::fd::FromRawFd;
        let dom = self.lookup_domain(domain)?;
        let flags = if skip_auth {
            sys::VIR_DOMAIN_OPEN_GRAPHICS_SKIPAUTH
        } else {
            0
        };
        let fd = dom
            .open_graphics_fd(0, flags)
            .map_err(|e| map_err(e, "domain", domain))
            .with_context(|| format!("opening the graphics of domain {domain}"))?;
        // SAFETY: libvirt returns a new descriptor that the caller owns.
        Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) })
    }

    fn list_networks(&self) -> Result<Vec<NetworkInfo>> {
        let nets = self
            .conn
            .list_all_networks(0)
            .map_err(anyhow::Error::new)
            .context("listing networks")?;
        let mut out = Vec::with_capacity(nets.len());
        for n in nets {
            let info = (|| -> Result<NetworkInfo, VirtError> {
                Ok(NetworkInfo {
                    name: n.name()?,
                    // Networks of some forward modes have no bridge of their own.
                    bridge: n.bridge_name().ok(),
                    active: n.is_active()?,
                    persistent: n.is_persistent()?,
                })
            })();
            match info {
                Ok(i) => out.push(i),
                Err(e) if is_not_found(&e) => continue,
                Err(e) => return Err(anyhow::Error::new(e)).context("reading a listed network"),
            }
        }
        Ok(out)
    }

    fn network_xml(&self, name: &str) -> Result<String> {
        let net = self
            .conn
            .lookup_network_by_name(name)
            .map_err(|e| lookup_err(e, "network", name))?;
        net.xml_desc(0)
            .map_err(|e| map_err(e, "network", name))
            .with_context(|| format!("reading the xml of network {name}"))
    }

    fn create_network(&self, xml: &str) -> Result<()> {
        let net = self
            .conn
            .create_network_xml(xml)
            .map_err(anyhow::Error::new)
            .context("creating a transient network")?;
        tracing::debug!(network = %net.name().unwrap_or_default(), "created transient network");
        Ok(())
    }

    fn destroy_network(&self, name: &str) -> Result<bool> {
        let Some(net) = self.find_network(name)? else {
            return Ok(false);
        };
        let mut changed = false;
        let active = net
            .is_active()
            .map_err(|e| map_err(e, "network", name))
            .with_context(|| format!("checking whether network {name} is active"))?;
        if active {
            match net.destroy() {
                Ok(()) => changed = true,
                // A transient network vanished meanwhile.
                Err(e) if is_not_found(&e) => return Ok(false),
                Err(e) if e.code().is(ErrorNumber::OperationInvalid) => {}
                Err(e) => {
                    return Err(anyhow::Error::new(e))
                        .with_context(|| format!("destroying network {name}"));
                }
            }
        }
        // A transient network is gone once destroyed; only a persistent one is left to undefine.
        match net.is_persistent() {
            Ok(true) => match net.undefine() {
                Ok(()) => changed = true,
                Err(e) if is_not_found(&e) => {}
                Err(e) => {
                    return Err(anyhow::Error::new(e))
                        .with_context(|| format!("undefining network {name}"));
                }
            },
            Ok(false) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => {
                return Err(anyhow::Error::new(e))
                    .with_context(|| format!("checking whether network {name} is persistent"));
            }
        }
        Ok(changed)
    }
}
