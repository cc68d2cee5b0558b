//! A recording, in-memory fake [`Hypervisor`] for unit tests.
//!
//! [`FakeHv`] keeps the domains and networks created through it (names parsed from the XML),
//! records every trait call in order ([`FakeHv::calls`]) and every guest agent request
//! ([`FakeHv::agent_log`]), and can be told to fail: on the Nth call overall
//! ([`FakeHv::fail_at`]) or on the Nth call of one operation ([`FakeHv::fail_on`]). A failed
//! call is recorded but changes nothing, like a libvirt call that failed.
//!
//! Built for the crate's tests only (`cfg(test)` or the `test-hooks` feature), never into a
//! release binary.
//!
//! Guest agent commands are answered by a responder closure ([`FakeHv::set_agent`]); the
//! default one answers `guest-ping` with `{"return":{}}` and rejects everything else the
//! way libvirt reports an unknown agent command.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, anyhow, bail};
use quick_xml::Reader;
use quick_xml::Writer;
use quick_xml::events::{BytesEnd, BytesStart, Event};
use serde_json::Value;

use super::{ConsoleStream, DomState, DomainInfo, HvError, Hypervisor, NetworkInfo};

/// The fake's serial console: a terminal that echoes what is typed, like a shell prompt with
/// echo on.
struct FakeConsole {
    pending: Vec<u8>,
}

impl ConsoleStream for FakeConsole {
    fn recv(&mut self, buf: &mut [u8]) -> Result<Option<usize>> {
        if self.pending.is_empty() {
            return Ok(None);
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending[..n]);
        self.pending.drain(..n);
        Ok(Some(n))
    }

    fn send(&mut self, data: &[u8]) -> Result<usize> {
        self.pending.extend_from_slice(data);
        Ok(data.len())
    }

    fn close(self: Box<Self>) -> Result<()> {
        Ok(())
    }
}

/// The greeting of the fake's VNC server: an RFB 3.8 banner.
pub const FAKE_RFB_BANNER: &[u8] = b"RFB 003.008\n";

/// Serves one fake graphics client: sends the RFB banner, then echoes every byte back.
fn fake_graphics_server(mut sock: std::os::unix::net::UnixStream) {
    use std::io::{Read, Write};
    if sock.write_all(FAKE_RFB_BANNER).is_err() {
        return;
    }
    let mut buf = [0u8; 4096];
    while let Ok(n) = sock.read(&mut buf) {
        if n == 0 || sock.write_all(&buf[..n]).is_err() {
            break;
        }
    }
}

/// Answers one guest agent request: `(domain, request JSON)` → full response JSON
/// (`{"return": ...}`), or an error as libvirt would raise it.
pub type AgentResponder = Box<dyn FnMut(&str, &Value) -> Result<Value> + Send>;

/// The error injected by [`FakeHv::fail_at`] and [`FakeHv::fail_on`].
#[derive(Debug, thiserror::Error)]
#[error("injected failure of call #{call} ({op})")]
pub struct InjectedFailure {
    pub op: String,
    /// 1-based position of the failed call among all calls.
    pub call: usize,
}

/// One guest agent request as the fake received it.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentCall {
    pub domain: String,
    pub request: Value,
    pub timeout_secs: i32,
}

#[derive(Debug, Clone)]
struct FakeDomain {
    uuid: String,
    xml: String,
    persistent: bool,
    active: bool,
    /// Snapshots in creation order: (name, xml).
    snapshots: Vec<(String, String)>,
    /// Attached disks by target dev, with their XML.
    hotplugged: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
struct FakeNetwork {
    xml: String,
    bridge: Option<String>,
    persistent: bool,
    active: bool,
}

#[derive(Default)]
struct State {
    domains: BTreeMap<String, FakeDomain>,
    networks: BTreeMap<String, FakeNetwork>,
    calls: Vec<String>,
    op_counts: BTreeMap<String, usize>,
    fail_at: Vec<usize>,
    fail_on: Vec<(String, usize)>,
    agent_log: Vec<AgentCall>,
    next_uuid: u32,
    /// Bumped when the daemon restarts: connections of an older epoch are closed.
    epoch: u64,
    /// The daemon is not running: every call fails and nothing connects.
    daemon_down: bool,
    /// libvirt's swtpm state directory: as libvirt does, removing a domain with an emulated
    /// TPM removes its state `DIR/<uuid>` (see [`FakeHv::set_swtpm_dir`]).
    swtpm_dir: Option<std::path::PathBuf>,
}

impl State {
    /// Removes domain `name` as libvirt does when it goes for good (a transient one stopped,
    /// an inactive one undefined): with its TPM state, unless kept.
    fn remove_domain(&mut self, name: &str) {
        if let Some(dom) = self.domains.remove(name)
            && let Some(dir) = &self.swtpm_dir
            && dom.xml.contains("<tpm")
        {
            let _ = std::fs::remove_dir_all(dir.join(&dom.uuid));
        }
    }
}

/// The in-memory fake. See the module documentation. A clone is another connection to the
/// same fake hypervisor: it sees and changes the same domains and networks.
#[derive(Clone)]
pub struct FakeHv {
    uri: String,
    state: Arc<Mutex<State>>,
    agent: Arc<Mutex<AgentResponder>>,
    /// The daemon epoch this connection was opened in (see [`FakeHv::restart_daemon`]).
    epoch: u64,
}

impl Default for FakeHv {
    fn default() -> Self {
        Self::new()
    }
}

/// The default agent: `guest-ping` answers, everything else is unknown to it.
pub fn default_agent_responder() -> AgentResponder {
    Box::new(|_dom, req| match req["execute"].as_str() {
        Some("guest-ping") => Ok(serde_json::json!({"return": {}})),
        other => bail!(
            "internal error: unable to execute QEMU agent command '{}': The command {} has not been found",
            other.unwrap_or("?"),
            other.unwrap_or("?")
        ),
    })
}

impl FakeHv {
    pub fn new() -> Self {
        FakeHv {
            uri: "fake:///".to_string(),
            state: Arc::new(Mutex::new(State::default())),
            agent: Arc::new(Mutex::new(default_agent_responder())),
            epoch: 0,
        }
    }

    /// A new connection to the same fake hypervisor, as `LibvirtHv::open` makes one: it
    /// fails while the daemon is down ([`FakeHv::stop_daemon`]).
    pub fn connect(&self) -> Result<FakeHv> {
        let st = self.state();
        if st.daemon_down {
            bail!(
                "Failed to connect socket to '/run/libvirt/libvirt-sock': No such file or directory"
            );
        }
        Ok(FakeHv {
            epoch: st.epoch,
            ..self.clone()
        })
    }

    /// The daemon restarts: every open connection is closed (its calls fail as libvirt's do,
    /// "client socket is closed"); domains and networks live on, and new connections work.
    pub fn restart_daemon(&self) {
        self.state().epoch += 1;
    }

    /// libvirt's swtpm state directory (its `swtpm_state_dir`): a domain with an emulated TPM
    /// that goes for good takes its state `DIR/<uuid>` with it, as with libvirt.
    pub fn set_swtpm_dir(&self, dir: &std::path::Path) {
        self.state().swtpm_dir = Some(dir.to_path_buf());
    }

    /// The daemon stops (`false`) or starts again: while it is down, every call and every
    /// [`FakeHv::connect`] fails.
    pub fn stop_daemon(&self, down: bool) {
        let mut st = self.state();
        st.daemon_down = down;
        if down {
            st.epoch += 1;
        }
    }

    /// Preload a domain (e.g. a "production" VM) without recording a call.
    pub fn add_domain(&self, xml: &str, persistent: bool, active: bool) -> Result<()> {
        let mut st = self.state();
        let name = xml_text(xml, &["domain", "name"])?.context("domain xml has no <name>")?;
        let uuid = match xml_text(xml, &["domain", "uuid"])? {
            Some(u) => u,
            None => st.new_uuid(),
        };
        st.domains.insert(
            name,
            FakeDomain {
                uuid,
                xml: xml.to_string(),
                persistent,
                active,
                snapshots: Vec::new(),
                hotplugged: BTreeMap::new(),
            },
        );
        Ok(())
    }

    /// Preload a snapshot of a preloaded domain without recording a call.
    pub fn add_snapshot(&self, domain: &str, name: &str, xml: &str) -> Result<()> {
        let mut st = self.state();
        let dom = st
            .domains
            .get_mut(domain)
            .with_context(|| format!("no fake domain {domain}"))?;
        dom.snapshots.push((name.to_string(), xml.to_string()));
        Ok(())
    }

    /// Preload a network (e.g. a production one) without recording a call.
    pub fn add_network(&self, xml: &str, persistent: bool, active: bool) -> Result<()> {
        let name = xml_text(xml, &["network", "name"])?.context("network xml has no <name>")?;
        let bridge = xml_attr(xml, &["network", "bridge"], "name")?;
        self.state().networks.insert(
            name,
            FakeNetwork {
                xml: xml.to_string(),
                bridge,
                persistent,
                active,
            },
        );
        Ok(())
    }

    /// Make the `n`th call overall (1-based, counting every trait call) fail.
    pub fn fail_at(&self, n: usize) {
        self.state().fail_at.push(n);
    }

    /// Make the `n`th call (1-based) of operation `op` (a trait method name such as
    /// `"create_domain"`) fail.
    pub fn fail_on(&self, op: &str, n: usize) {
        self.state().fail_on.push((op.to_string(), n));
    }

    /// Replace the guest agent responder.
    pub fn set_agent(&self, responder: impl FnMut(&str, &Value) -> Result<Value> + Send + 'static) {
        *self.agent.lock().unwrap() = Box::new(responder);
    }

    /// Every trait call so far, in order, as `"<op> <argument>"` (e.g. `"create_domain db"`,
    /// `"agent_command db guest-ping"`).
    pub fn calls(&self) -> Vec<String> {
        self.state().calls.clone()
    }

    /// Every guest agent request so far, in order (including failed ones).
    pub fn agent_log(&self) -> Vec<AgentCall> {
        self.state().agent_log.clone()
    }

    /// Names of the domains that currently exist (active or defined).
    pub fn domain_names(&self) -> Vec<String> {
        self.state().domains.keys().cloned().collect()
    }

    /// Names of the networks that currently exist (active or defined).
    pub fn network_names(&self) -> Vec<String> {
        self.state().networks.keys().cloned().collect()
    }

    /// Target devs of the disks hot-plugged into `domain` and not detached.
    pub fn attached_disks(&self, domain: &str) -> Vec<String> {
        self.state()
            .domains
            .get(domain)
            .map(|d| d.hotplugged.keys().cloned().collect())
            .unwrap_or_default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panicking test thread must not poison the fake for the rest of the test.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Record a call and apply failure injection.
    fn record(&self, op: &str, arg: &str) -> Result<std::sync::MutexGuard<'_, State>> {
        let mut st = self.state();
        st.calls.push(format!("{op} {arg}"));
        if st.daemon_down || st.epoch != self.epoch {
            bail!("internal error: client socket is closed");
        }
        let call = st.calls.len();
        let count = {
            let c = st.op_counts.entry(op.to_string()).or_default();
            *c += 1;
            *c
        };
        let fail =
            st.fail_at.contains(&call) || st.fail_on.iter().any(|(o, n)| o == op && *n == count);
        if fail {
            return Err(anyhow::Error::new(InjectedFailure {
                op: format!("{op} {arg}"),
                call,
            }));
        }
        Ok(st)
    }
}

impl State {
    fn new_uuid(&mut self) -> String {
        self.next_uuid += 1;
        format!("00000000-0000-4000-8000-{:012x}", self.next_uuid)
    }

    fn domain(&self, name: &str) -> Result<&FakeDomain> {
        self.domains
            .get(name)
            .ok_or_else(|| not_found("domain", name))
    }
}

fn not_found(kind: &'static str, name: &str) -> anyhow::Error {
    anyhow::Error::new(HvError::NotFound {
        kind,
        name: name.to_string(),
    })
}

/// Text of the element at `path` (from the root), e.g. `["domain", "name"]`.
fn xml_text(xml: &str, path: &[&str]) -> Result<Option<String>> {
    let mut reader = Reader::from_str(xml);
    let mut stack: Vec<String> = Vec::new();
    let mut text: Option<String> = None;
    loop {
        match reader.read_event().context("parsing xml")? {
            Event::Start(e) => {
                stack.push(e.local_name().as_ref().to_string());
                if stack == path {
                    text = Some(String::new());
                }
            }
            Event::Text(t) if stack == path => {
                text.get_or_insert_with(String::new)
                    .push_str(&t.xml10_content());
            }
            Event::End(_) => {
                if stack == path {
                    return Ok(text.map(|t| t.trim().to_string()));
                }
                stack.pop();
            }
            Event::Eof => return Ok(None),
            _ => {}
        }
    }
}

/// Attribute `attr` of the first element at `path` (from the root).
fn xml_attr(xml: &str, path: &[&str], attr: &str) -> Result<Option<String>> {
    let mut reader = Reader::from_str(xml);
    let mut stack: Vec<String> = Vec::new();
    loop {
        let (e, empty) = match reader.read_event().context("parsing xml")? {
            Event::Start(e) => (e, false),
            Event::Empty(e) => (e, true),
            Event::End(_) => {
                stack.pop();
                continue;
            }
            Event::Eof => return Ok(None),
            _ => continue,
        };
        stack.push(e.local_name().as_ref().to_string());
        if stack == path {
            return match e.try_get_attribute(attr).context("parsing xml attribute")? {
                Some(a) => Ok(Some(
                    a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                        .context("parsing xml attribute")?
                        .into_owned(),
                )),
                None => Ok(None),
            };
        }
        if empty {
            stack.pop();
        }
    }
}

/// The first child element of `<metadata>` in namespace `ns`, returned the way libvirt does:
/// without the namespace prefix and declaration (`<reclab:run xmlns:reclab=...>` comes back
/// as `<run>`).
fn metadata_element(xml: &str, ns: &str) -> Result<Option<String>> {
    let mut reader = Reader::from_str(xml);
    let mut depth = 0usize;
    let mut in_metadata = false;
    loop {
        let ev = reader.read_event().context("parsing domain xml")?;
        match ev {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(ev, Event::Empty(_));
                let prefix = e.attributes().flatten().find_map(|a| {
                    let key = a.key.as_ref();
                    if a.value.as_ref() != ns {
                        None
                    } else if key == "xmlns" {
                        Some(String::new())
                    } else {
                        key.strip_prefix("xmlns:").map(str::to_string)
                    }
                });
                if in_metadata
                    && depth == 2
                    && let Some(prefix) = prefix
                {
                    return copy_stripped(&mut reader, e, empty, &prefix).map(Some);
                }
                if !empty {
                    depth += 1;
                    if depth == 2 && e.local_name().as_ref() == "metadata" {
                        in_metadata = true;
                    }
                }
            }
            Event::End(_) => {
                if depth == 2 {
                    in_metadata = false;
                }
                depth = depth.saturating_sub(1);
            }
            Event::Eof => return Ok(None),
            _ => {}
        }
    }
}

/// Re-serialize the element starting with `first` without namespace prefix `prefix`
/// (empty: a default namespace) and without its declaration.
fn copy_stripped(
    reader: &mut Reader<&[u8]>,
    first: &BytesStart,
    empty: bool,
    prefix: &str,
) -> Result<String> {
    let strip = |name: &str| -> String {
        match name.split_once(':') {
            Some((p, local)) if p == prefix => local.to_string(),
            _ => name.to_string(),
        }
    };
    let decl = if prefix.is_empty() {
        "xmlns".to_string()
    } else {
        format!("xmlns:{prefix}")
    };
    let start = |e: &BytesStart| -> BytesStart<'static> {
        let mut out = BytesStart::new(strip(e.name().as_ref()));
        for a in e.attributes().flatten() {
            if a.key.as_ref() != decl {
                out.push_attribute((strip(a.key.as_ref()).as_str(), a.value.as_ref()));
            }
        }
        out
    };
    let mut w = Writer::new(Vec::new());
    if empty {
        w.write_event(Event::Empty(start(first)))?;
    } else {
        w.write_event(Event::Start(start(first)))?;
        let mut depth = 1;
        while depth > 0 {
            match reader.read_event().context("parsing domain metadata")? {
                Event::Start(e) => {
                    depth += 1;
                    w.write_event(Event::Start(start(&e)))?;
                }
                Event::Empty(e) => w.write_event(Event::Empty(start(&e)))?,
                Event::End(e) => {
                    depth -= 1;
                    w.write_event(Event::End(BytesEnd::new(strip(e.name().as_ref()))))?;
                }
                Event::Eof => bail!("unterminated metadata element"),
                other => w.write_event(other)?,
            }
        }
    }
    String::from_utf8(w.into_inner()).context("metadata is not utf-8")
}

/// The `<target dev=...>` of a `<disk>` device XML.
fn disk_target(disk_xml: &str) -> Result<String> {
    xml_attr(disk_xml, &["disk", "target"], "dev")?.context("disk xml has no <target dev=...>")
}

impl Hypervisor for FakeHv {
    fn uri(&self) -> String {
        self.uri.clone()
    }

    fn is_alive(&self) -> bool {
        let st = self.state();
        !st.daemon_down && st.epoch == self.epoch
    }

    fn list_domains(&self) -> Result<Vec<DomainInfo>> {
        let st = self.record("list_domains", "")?;
        Ok(st
            .domains
            .iter()
            .map(|(name, d)| DomainInfo {
                name: name.clone(),
                uuid: d.uuid.clone(),
                active: d.active,
                persistent: d.persistent,
            })
            .collect())
    }

    fn domain_xml(&self, name: &str, _inactive: bool) -> Result<String> {
        let st = self.record("domain_xml", name)?;
        Ok(st.domain(name)?.xml.clone())
    }

    fn list_snapshots(&self, domain: &str) -> Result<Vec<String>> {
        let st = self.record("list_snapshots", domain)?;
        Ok(st
            .domain(domain)?
            .snapshots
            .iter()
            .map(|(n, _)| n.clone())
            .collect())
    }

    fn snapshot_xml(&self, domain: &str, snapshot: &str) -> Result<String> {
        let st = self.record("snapshot_xml", &format!("{domain} {snapshot}"))?;
        let dom = st.domain(domain)?;
        dom.snapshots
            .iter()
            .find(|(n, _)| n == snapshot)
            .map(|(_, x)| x.clone())
            .ok_or_else(|| not_found("snapshot", snapshot))
    }

    fn create_domain(&self, xml: &str) -> Result<()> {
        let name = xml_text(xml, &["domain", "name"])?.context("domain xml has no <name>")?;
        let mut st = self.record("create_domain", &name)?;
        if st.domains.contains_key(&name) {
            bail!("operation failed: domain '{name}' already exists");
        }
        let uuid = match xml_text(xml, &["domain", "uuid"])? {
            Some(u) => u,
            None => st.new_uuid(),
        };
        st.domains.insert(
            name,
            FakeDomain {
                uuid,
                xml: xml.to_string(),
                persistent: false,
                active: true,
                snapshots: Vec::new(),
                hotplugged: BTreeMap::new(),
            },
        );
        Ok(())
    }

    fn destroy_domain(&self, name: &str) -> Result<bool> {
        let mut st = self.record("destroy_domain", name)?;
        let Some(dom) = st.domains.get_mut(name) else {
            return Ok(false);
        };
        if !dom.active {
            return Ok(false);
        }
        if dom.persistent {
            dom.active = false;
            dom.hotplugged.clear();
        } else {
            st.remove_domain(name);
        }
        Ok(true)
    }

    fn undefine_domain(&self, name: &str) -> Result<bool> {
        let mut st = self.record("undefine_domain", name)?;
        let Some(dom) = st.domains.get_mut(name) else {
            return Ok(false);
        };
        if !dom.persistent {
            return Ok(false);
        }
        if !dom.snapshots.is_empty() {
            bail!(
                "operation invalid: cannot undefine domain with {} snapshots",
                dom.snapshots.len()
            );
        }
        if dom.active {
            dom.persistent = false;
        } else {
            st.remove_domain(name);
        }
        Ok(true)
    }

    fn domain_state(&self, name: &str) -> Result<Option<DomState>> {
        let st = self.record("domain_state", name)?;
        Ok(st.domains.get(name).map(|d| {
            if d.active {
                DomState::Running
            } else {
                DomState::ShutOff
            }
        }))
    }

    fn domain_metadata(&self, name: &str, namespace_uri: &str) -> Result<Option<String>> {
        let st = self.record("domain_metadata", name)?;
        metadata_element(&st.domain(name)?.xml, namespace_uri)
    }

    fn agent_command(&self, domain: &str, json: &str, timeout_secs: i32) -> Result<String> {
        let request: Value =
            serde_json::from_str(json).context("fake agent: request is not json")?;
        let execute = request["execute"].as_str().unwrap_or("?").to_string();
        {
            let mut st = self.state();
            st.agent_log.push(AgentCall {
                domain: domain.to_string(),
                request: request.clone(),
                timeout_secs,
            });
        }
        {
            let st = self.record("agent_command", &format!("{domain} {execute}"))?;
            if timeout_secs < 1 {
                bail!("guest agent timeout must be at least 1 second, got {timeout_secs}");
            }
            if !st.domain(domain)?.active {
                bail!("operation invalid: domain is not running");
            }
        }
        // The responder runs without the state lock, so it may inspect the fake.
        let response = (self.agent.lock().unwrap_or_else(|e| e.into_inner()))(domain, &request)?;
        Ok(response.to_string())
    }

    fn screenshot(&self, domain: &str) -> Result<Vec<u8>> {
        let st = self.record("screenshot", domain)?;
        if !st.domain(domain)?.active {
            bail!("operation invalid: domain is not running");
        }
        // A 2x1 image: one black and one white pixel.
        let img = super::ppm::Rgb {
            width: 2,
            height: 1,
            pixels: vec![0, 0, 0, 255, 255, 255],
        };
        super::ppm::encode_png(&img)
    }

    fn attach_disk(&self, domain: &str, disk_xml: &str, live: bool) -> Result<()> {
        let mut st = self.record("attach_disk", domain)?;
        let target = disk_target(disk_xml)?;
        let dom = st
            .domains
            .get_mut(domain)
            .ok_or_else(|| not_found("domain", domain))?;
        if live && !dom.active {
            bail!("operation invalid: domain is not running");
        }
        if dom.hotplugged.contains_key(&target) {
            bail!("operation failed: target {target} already exists");
        }
        dom.hotplugged.insert(target, disk_xml.to_string());
        Ok(())
    }

    fn detach_disk(&self, domain: &str, disk_xml: &str) -> Result<bool> {
        let mut st = self.record("detach_disk", domain)?;
        let target = disk_target(disk_xml)?;
        let Some(dom) = st.domains.get_mut(domain) else {
            return Ok(false);
        };
        Ok(dom.hotplugged.remove(&target).is_some())
    }

    fn open_console(&self, domain: &str) -> Result<Box<dyn ConsoleStream>> {
        let st = self.record("open_console", domain)?;
        let dom = st.domain(domain)?;
        if !dom.active {
            bail!("operation invalid: domain is not running");
        }
        if !dom.xml.contains("<serial") && !dom.xml.contains("<console") {
            bail!("internal error: cannot find character device <null>");
        }
        Ok(Box::new(FakeConsole {
            pending: Vec::new(),
        }))
    }

    fn open_graphics(&self, domain: &str, skip_auth: bool) -> Result<std::os::fd::OwnedFd> {
        let st = self.record(
            "open_graphics",
            &format!("{domain}{}", if skip_auth { " skipauth" } else { "" }),
        )?;
        let dom = st.domain(domain)?;
        if !dom.active {
            bail!("operation invalid: domain is not running");
        }
        if !dom.xml.contains("<graphics") {
            bail!("argument unsupported: No graphics backend with index 0");
        }
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()
            .context("fake graphics: creating a socket pair")?;
        std::thread::spawn(move || fake_graphics_server(theirs));
        Ok(ours.into())
    }

    fn list_networks(&self) -> Result<Vec<NetworkInfo>> {
        let st = self.record("list_networks", "")?;
        Ok(st
            .networks
            .iter()
            .map(|(name, n)| NetworkInfo {
                name: name.clone(),
                bridge: n.bridge.clone(),
                active: n.active,
                persistent: n.persistent,
            })
            .collect())
    }

    fn network_xml(&self, name: &str) -> Result<String> {
        let st = self.record("network_xml", name)?;
        st.networks
            .get(name)
            .map(|n| n.xml.clone())
            .ok_or_else(|| not_found("network", name))
    }

    fn create_network(&self, xml: &str) -> Result<()> {
        let name = xml_text(xml, &["network", "name"])?.context("network xml has no <name>")?;
        let bridge = xml_attr(xml, &["network", "bridge"], "name")?;
        let mut st = self.record("create_network", &name)?;
        if st.networks.contains_key(&name) {
            bail!("operation failed: network '{name}' already exists");
        }
        if let Some(br) = &bridge
            && st
                .networks
                .values()
                .any(|n| n.active && n.bridge.as_ref() == Some(br))
        {
            return Err(anyhow!("internal error: bridge name '{br}' already in use"));
        }
        st.networks.insert(
            name,
            FakeNetwork {
                xml: xml.to_string(),
                bridge,
                persistent: false,
                active: true,
            },
        );
        Ok(())
    }

    fn destroy_network(&self, name: &str) -> Result<bool> {
        let mut st = self.record("destroy_network", name)?;
        Ok(st.networks.remove(name).is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DB: &str = r#"<domain type='qemu'>
  <name>db</name>
  <uuid>11111111-2222-3333-4444-555555555555</uuid>
  <metadata>
    <other:x xmlns:other="http://example.com/other"/>
    <reclab:run xmlns:reclab="https://reclab.example/1" id="abc"><reclab:lab>l1</reclab:lab></reclab:run>
  </metadata>
</domain>"#;

    fn lab_net(name: &str, bridge: &str) -> String {
        format!("<network><name>{name}</name><bridge name='{bridge}'/></network>")
    }

    #[test]
    fn created_objects_are_listed_and_destroyed_idempotently() {
        let hv = FakeHv::new();
        hv.create_network(&lab_net("lab-net", "lbr0")).unwrap();
        hv.create_domain("<domain><name>lab-db</name></domain>")
            .unwrap();
        let nets = hv.list_networks().unwrap();
        assert_eq!(nets[0].bridge.as_deref(), Some("lbr0"));
        assert_eq!(hv.domain_state("lab-db").unwrap(), Some(DomState::Running));

        assert!(hv.destroy_domain("lab-db").unwrap());
        assert!(
            !hv.destroy_domain("lab-db").unwrap(),
            "transient domain vanishes on destroy"
        );
        assert!(hv.destroy_network("lab-net").unwrap());
        assert!(!hv.destroy_network("lab-net").unwrap());
        assert!(hv.domain_names().is_empty() && hv.network_names().is_empty());
        assert_eq!(
            hv.calls(),
            [
                "create_network lab-net",
                "create_domain lab-db",
                "list_networks ",
                "domain_state lab-db",
                "destroy_domain lab-db",
                "destroy_domain lab-db",
                "destroy_network lab-net",
                "destroy_network lab-net",
            ]
        );
    }

    #[test]
    fn injected_failures_hit_the_chosen_call_and_change_nothing() {
        let hv = FakeHv::new();
        hv.fail_on("create_domain", 2);
        hv.fail_at(4);
        hv.create_domain("<domain><name>a</name></domain>").unwrap();
        let err = hv
            .create_domain("<domain><name>b</name></domain>")
            .unwrap_err();
        assert_eq!(err.downcast_ref::<InjectedFailure>().unwrap().call, 2);
        hv.create_domain("<domain><name>c</name></domain>").unwrap();
        assert!(hv.destroy_domain("a").is_err(), "fourth call overall fails");
        assert_eq!(hv.domain_names(), ["a", "c"]);
        assert_eq!(hv.calls().len(), 4);
    }

    #[test]
    fn lookups_of_missing_objects_are_not_found() {
        let hv = FakeHv::new();
        hv.add_domain(DB, true, false).unwrap();
        let err = hv.domain_xml("nope", false).unwrap_err();
        assert!(HvError::is_not_found(&err));
        let err = hv.snapshot_xml("db", "nightly").unwrap_err();
        assert!(matches!(
            err.downcast_ref::<HvError>(),
            Some(HvError::NotFound {
                kind: "snapshot",
                ..
            })
        ));
        assert!(HvError::is_not_found(&hv.network_xml("nope").unwrap_err()));
    }

    #[test]
    fn preloaded_production_domain_keeps_snapshots_and_metadata() {
        let hv = FakeHv::new();
        hv.add_domain(DB, true, true).unwrap();
        hv.add_snapshot(
            "db",
            "nightly",
            "<domainsnapshot><name>nightly</name></domainsnapshot>",
        )
        .unwrap();
        assert_eq!(hv.list_snapshots("db").unwrap(), ["nightly"]);
        assert!(
            hv.snapshot_xml("db", "nightly")
                .unwrap()
                .contains("nightly")
        );
        let info = &hv.list_domains().unwrap()[0];
        assert_eq!(info.uuid, "11111111-2222-3333-4444-555555555555");
        assert!(info.persistent && info.active);

        // Like libvirt, the element comes back without its namespace prefix.
        let md = hv
            .domain_metadata("db", "https://reclab.example/1")
            .unwrap();
        assert_eq!(md.as_deref(), Some(r#"<run id="abc"><lab>l1</lab></run>"#));
        assert_eq!(hv.domain_metadata("db", "urn:absent").unwrap(), None);
        // A persistent domain with snapshots is never undefined by accident.
        assert!(hv.undefine_domain("db").is_err());
    }

    #[test]
    fn default_agent_answers_ping_only() {
        let hv = FakeHv::new();
        hv.create_domain("<domain><name>vm</name></domain>")
            .unwrap();
        let pong = hv
            .agent_command("vm", r#"{"execute":"guest-ping"}"#, 1)
            .unwrap();
        assert_eq!(pong, r#"{"return":{}}"#);
        let err = hv
            .agent_command("vm", r#"{"execute":"guest-exec"}"#, 1)
            .unwrap_err();
        assert!(err.to_string().contains("has not been found"), "{err}");
        assert_eq!(hv.agent_log().len(), 2);
    }

    #[test]
    fn disks_attach_and_detach_by_target() {
        let hv = FakeHv::new();
        hv.create_domain("<domain><name>vm</name></domain>")
            .unwrap();
        let disk = "<disk type='file' device='disk'><source file='/x.img'/><target dev='vdb' bus='virtio'/></disk>";
        hv.attach_disk("vm", disk, true).unwrap();
        assert_eq!(hv.attached_disks("vm"), ["vdb"]);
        assert!(hv.detach_disk("vm", disk).unwrap());
        assert!(!hv.detach_disk("vm", disk).unwrap());
        assert!(!hv.detach_disk("gone", disk).unwrap());
    }
}
