//! Surgical rewrite of a production domain XML into the XML of its lab clone. Pure: no IO.
//!
//! [`rewrite_domain`] reads the production XML (a `<domain>`, or a `<domainsnapshot>` whose
//! embedded `<domain>` is used) as a tree of quick-xml events, edits only the nodes listed
//! below, and writes everything else back as it was read: unknown elements and attributes,
//! foreign namespaces, comments, processing instructions and layout. Serde structs would drop
//! whatever they do not model; production XML is full of things reclab does not model.
//!
//! # What is modelled (edited)
//!
//! - Identity: `<name>`, `<uuid>` (and the `<sysinfo>` system uuid entry, which libvirt
//!   requires to match `<uuid>`), `<domain type>` from [`Accel`].
//! - `<metadata>`: one `<reclab:lab>` element in [`RECLAB_NS`] replaces any previous one; all
//!   other children are kept.
//! - Disks with `device='disk'`: they write to a planned qcow2 overlay whose full read-only
//!   backing chain is spelled out and ends with `<backingStore/>`, so libvirt probes nothing.
//!   CD-ROM and floppy media are ejected.
//! - Interfaces of every kind (`network`, `bridge`, `ethernet`, `direct` macvtap, `hostdev`
//!   SR-IOV, `user`, `vhostuser`, `vdpa`, socket tunnels) move to a lab network and keep
//!   their production MAC address and `<model>`. What tied them to the host goes: `<source>`,
//!   `<target>`, `<backend tap= vhost=>` or passt, scripts, `<virtualport>`, `<vlan>`, a
//!   hostdev's `vfio` driver and `managed`.
//! - Graphics: VNC and SPICE listen on 127.0.0.1 only, with a fresh password that expires.
//! - Character devices: serials and consoles that reach a host file, device, pipe or socket
//!   become `pty`; such channels and parallels are removed; production log files are never
//!   reused; the guest agent channel gets a fresh socket (or is added).
//! - `<os><nvram>`: points at the lab's own copy (the caller copies the file).
//! - Private copies in [`RewriteOpts::private_dir`], listed in [`Rewritten::copies`] for the
//!   caller to make: a writable pflash `<loader>` (`readonly='no'` or no `readonly`), the
//!   software TPM state a `<backend type='emulator'>` names with `<source>`, and the file of
//!   an `nvdimm` or `virtio-pmem` `<memory>` the guest writes through (not
//!   `access='private'`). A TPM without `<source>` (libvirt ≤ 9 knows no other kind) keeps its
//!   state in libvirt's swtpm directory under the domain uuid: with
//!   [`RewriteOpts::tpm_state_dir`] the lab gets a copy of production's `DIR/<production
//!   uuid>` as `DIR/<lab uuid>` (marked [`PrivateCopy::missing_ok`]: production may never
//!   have started its TPM, and the caller then says the lab's TPM starts empty); without it,
//!   or without a production `<uuid>`, a [`Change`] says so. `persistent_state='yes'` goes, so
//!   that the lab's state does not outlive the lab.
//! - Audio backends other than `none` and `spice` (PulseAudio, JACK, PipeWire, ALSA, OSS,
//!   SDL, a file, D-Bus) become `type='none'`, keeping their `id`.
//! - With [`Accel::Tcg`], a host CPU model (`host-passthrough`, `host-model`) is dropped
//!   (topology and NUMA cells are kept, so the guest sees the same sockets and cores), and so
//!   are the Hyper-V enlightenments QEMU cannot emulate (`vpindex` and those built on it).
//!
//! # What is refused, and why
//!
//! The rewrite fails, naming the device, rather than produce a lab that could touch
//! production: `type='network'` or `type='volume'` disks and other non-file storage (the lab
//! would open production storage), `device='lun'` (SCSI passthrough), encrypted disks, a disk
//! with no overlay planned, an interface without a `<mac>` (production MACs are kept), an
//! interface no [`NetworkMap`] entry covers, an interface type reclab does not know, an
//! `<nvram>` file with no copy planned (the lab would write production's UEFI variables), and
//! a writable loader, named TPM state or written-through pmem file when no `private_dir` is
//! given.
//!
//! # What is removed (and reported as a [`Change`])
//!
//! Everything that could reach outside the lab or touch the host: `<hostdev>`, `<redirdev>`,
//! `<filesystem>`, `<shmem>`, host input devices, smartcard passthrough and host certificate
//! databases, TPM passthrough, RDP, SDL and desktop graphics, D-Bus graphics with an
//! `address`, `<pstore>` (production's store file), `<lease>` (production's lock), security
//! labels that are not dynamic (`static` is production's own label or user, `none` runs
//! unconfined), and `<qemu:commandline>`, `<qemu:override>`, `<qemu:capabilities>`,
//! `<qemu:deprecation>`. An EGD random-number backend becomes `/dev/urandom`; a fixed vsock
//! CID becomes automatic (it would collide with production).
//!
//! Applying the rewrite to its own output with the same options gives the same XML.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use anyhow::{Context, Result, bail};

use super::tree::{self, Elem, Style};

/// The XML namespace of reclab's domain metadata.
pub const RECLAB_NS: &str = "https://reclab.dev/xmlns/lab/1";
/// The prefix reclab uses for [`RECLAB_NS`].
pub const RECLAB_PREFIX: &str = "reclab";
/// The virtio-serial port name of the QEMU guest agent.
pub const GUEST_AGENT_CHANNEL: &str = "org.qemu.guest_agent.0";
/// The libvirt namespace of QEMU passthrough elements (`<qemu:commandline>`).
pub const QEMU_NS: &str = "http://libvirt.org/schemas/domain/qemu/1.0";
/// The only address lab consoles listen on.
pub const LOOPBACK: &str = "127.0.0.1";

/// How the lab runs guests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualization: `<domain type='kvm'>`.
    Kvm,
    /// Software emulation: `<domain type='qemu'>`.
    Tcg,
}

impl Accel {
    /// The value of `<domain type>`.
    pub fn domain_type(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "qemu",
        }
    }
}

/// Whether a backing layer is a regular file or a block device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerKind {
    File,
    Block,
}

/// The image format of a backing layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    Qcow2,
    Raw,
}

impl ImageFormat {
    /// The name libvirt and qemu-img use.
    pub fn as_str(self) -> &'static str {
        match self {
            ImageFormat::Qcow2 => "qcow2",
            ImageFormat::Raw => "raw",
        }
    }
}

/// One read-only layer below a lab overlay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackingLayer {
    pub path: String,
    pub format: ImageFormat,
    pub kind: LayerKind,
}

/// Where one production disk goes in the lab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskPlan {
    /// The qcow2 overlay the lab writes to.
    pub overlay: String,
    /// The read-only chain below the overlay: `chain[0]` is the overlay's backing file (the
    /// production snapshot or backup image), each next layer the backing file of the previous.
    pub chain: Vec<BackingLayer>,
}

/// How production interfaces map to lab networks. Lookups, first match wins: the MAC address,
/// then the production network name (`type='network'`) or the host bridge or host interface
/// it used (`type='bridge'`, a `direct` macvtap's `<source dev>`), then an interface already
/// on one of the lab networks stays there (this makes the rewrite idempotent), then the
/// default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkMap {
    /// Production libvirt network name → lab network name.
    pub networks: BTreeMap<String, String>,
    /// Production host bridge or host interface name (the `dev` of a `direct` interface) →
    /// lab network name.
    pub bridges: BTreeMap<String, String>,
    /// MAC address (any case) → lab network name.
    pub by_mac: BTreeMap<String, String>,
    /// Lab network for everything else; set it only when the lab has exactly one segment.
    pub default: Option<String>,
}

impl NetworkMap {
    /// A lab with one segment: every interface goes to `lab_network`.
    pub fn single(lab_network: &str) -> NetworkMap {
        NetworkMap {
            default: Some(lab_network.to_string()),
            ..NetworkMap::default()
        }
    }

    fn lab_networks(&self) -> BTreeSet<&str> {
        self.networks
            .values()
            .chain(self.bridges.values())
            .chain(self.by_mac.values())
            .chain(self.default.iter())
            .map(String::as_str)
            .collect()
    }

    /// The lab network for an interface, if the map covers it.
    pub fn resolve(&self, mac: &str, source: &IfaceSource) -> Option<&str> {
        let mac = mac.to_ascii_lowercase();
        if let Some((_, lab)) = self
            .by_mac
            .iter()
            .find(|(m, _)| m.to_ascii_lowercase() == mac)
        {
            return Some(lab);
        }
        let by_source = match source {
            IfaceSource::Network(name) => self
                .networks
                .get(name)
                .map(String::as_str)
                .or_else(|| self.lab_networks().get(name.as_str()).copied()),
            IfaceSource::Bridge(name) | IfaceSource::Direct(name) => {
                self.bridges.get(name).map(String::as_str)
            }
            IfaceSource::Ethernet | IfaceSource::Other { .. } => None,
        };
        by_source.or(self.default.as_deref())
    }
}

/// What a production interface is attached to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfaceSource {
    Network(String),
    Bridge(String),
    /// A tap device with no libvirt-managed attachment.
    Ethernet,
    /// A macvtap on this host interface (`type='direct'`).
    Direct(String),
    /// Any other kind of interface (`user`, `vhostuser`, `hostdev`, `vdpa`, a socket tunnel):
    /// mapped by MAC or the default only. `detail` names what it was attached to.
    Other {
        kind: String,
        detail: String,
    },
}

impl fmt::Display for IfaceSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IfaceSource::Network(n) => write!(f, "network '{n}'"),
            IfaceSource::Bridge(b) => write!(f, "bridge '{b}'"),
            IfaceSource::Ethernet => write!(f, "ethernet"),
            IfaceSource::Direct(dev) => write!(f, "direct '{dev}'"),
            IfaceSource::Other { kind, detail } if detail.is_empty() => write!(f, "{kind}"),
            IfaceSource::Other { kind, detail } => write!(f, "{kind} {detail}"),
        }
    }
}

/// What reclab records about the lab in each domain's `<metadata>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabMetadata {
    pub lab: String,
    pub run: String,
    pub vm: String,
    /// RFC 3339 timestamp.
    pub created: String,
    /// RFC 3339 timestamp after which a sweeper may remove the domain.
    pub expires: String,
}

/// Everything the rewrite needs; the plan decides all of it.
#[derive(Debug, Clone)]
pub struct RewriteOpts {
    /// The lab domain name.
    pub name: String,
    /// The lab domain uuid.
    pub uuid: String,
    pub accel: Accel,
    /// By target dev (`vda`, `sda`): the overlay of every `device='disk'` disk.
    pub disks: BTreeMap<String, DiskPlan>,
    pub networks: NetworkMap,
    /// At most 8 characters (libvirt ≥ 8 rejects longer VNC passwords).
    pub graphics_password: String,
    /// When the console password expires; written in UTC as libvirt wants it
    /// (`YYYY-MM-DDTHH:MM:SS`, libvirt 9 rejects a trailing `Z`).
    pub graphics_valid_to: jiff::Timestamp,
    /// Host file that receives the first serial port's output.
    pub serial_log: Option<String>,
    /// Where the lab's copy of the UEFI variable store goes, if the domain has `<nvram>`.
    pub nvram_path: Option<String>,
    /// The run directory, where private copies of other production state go: a writable
    /// firmware image, software TPM state, persistent-memory backing files. The rewrite names
    /// each copy after [`LabMetadata::vm`] and lists it in [`Rewritten::copies`]; `None`
    /// refuses a domain that needs one.
    pub private_dir: Option<String>,
    /// The directory where the hypervisor's libvirt keeps each domain's software TPM state by
    /// uuid (`/var/lib/libvirt/swtpm` for `qemu:///system`), as the caller sees it: a TPM
    /// without `<source>` gets a private copy of production's state there, under the lab
    /// uuid. `None`: the lab's TPM starts empty, and the changes say so.
    pub tpm_state_dir: Option<String>,
    pub metadata: LabMetadata,
    /// The lab VM's memory in bytes (the lab file's `memory`), instead of production's.
    pub memory: Option<u64>,
    /// The lab VM's virtual CPUs (the lab file's `vcpus`), instead of production's.
    pub vcpus: Option<u32>,
}

/// The kind of a [`Change`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Removed,
    Modified,
    Added,
}

/// One edit worth telling the user about, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub kind: ChangeKind,
    pub what: String,
    pub why: String,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = match self.kind {
            ChangeKind::Removed => "removed",
            ChangeKind::Modified => "changed",
            ChangeKind::Added => "added",
        };
        write!(f, "{verb} {}: {}", self.what, self.why)
    }
}

/// A lab interface: the production MAC and the lab network it is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabInterface {
    /// Lower case.
    pub mac: String,
    pub network: String,
}

/// The result of [`rewrite_domain`].
#[derive(Debug, Clone)]
pub struct Rewritten {
    /// The lab domain XML.
    pub xml: String,
    pub changes: Vec<Change>,
    /// Every interface of the lab domain, in document order.
    pub interfaces: Vec<LabInterface>,
    /// The production UEFI variable store the caller must copy to `nvram_path` before the lab
    /// starts; `None` when the domain has no nvram file or already points at `nvram_path`.
    pub nvram_source: Option<String>,
    /// The private copies (other than the nvram) the caller must make, in `private_dir`,
    /// before the lab starts; empty when the domain already uses its copies.
    pub copies: Vec<PrivateCopy>,
}

/// A production file or directory the lab domain uses only through a private copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivateCopy {
    /// What it is, for messages and the journal: `firmware`, `tpm state`, `pmem 0`.
    pub what: String,
    /// The production path; copied, never opened for writing.
    pub from: String,
    /// The copy in `private_dir` the lab domain uses.
    pub to: String,
    /// A directory (copied recursively) rather than a file.
    pub dir: bool,
    /// Production may not have this state (a TPM that never ran keeps none): when `from` is
    /// absent the caller makes no copy and says that the lab starts without it.
    pub missing_ok: bool,
}

const REACH_OUT: &str = "could reach outside the lab";
const TOUCH_HOST: &str = "could touch the host or production";

/// Character device types that stay inside QEMU or libvirt.
const SAFE_CHARDEV: &[&str] = &[
    "pty",
    "null",
    "vc",
    "stdio",
    "spicevmc",
    "spiceport",
    "qemu-vdagent",
    "dbus",
];

/// Rewrites a production domain XML (or a `<domainsnapshot>`, using its embedded `<domain>`)
/// into the XML of its lab clone. See the module documentation for the rules.
pub fn rewrite_domain(xml: &str, opts: &RewriteOpts) -> Result<Rewritten> {
    validate_opts(opts)?;
    let doc = tree::parse(xml).context("parsing the production domain xml")?;
    let style = doc.style();
    let mut out = match doc.root.name().as_str() {
        "domain" => doc,
        "domainsnapshot" => snapshot_domain(doc, &style)?,
        other => bail!("expected a <domain> or <domainsnapshot> document, found <{other}>"),
    };
    // New elements blend into the domain itself: a snapshot's layout can differ from that of
    // the domain it embeds (and the rewrite of the result must not change it again).
    let style = out.style();
    let mut cx = Cx {
        opts,
        style,
        changes: Vec::new(),
        interfaces: Vec::new(),
        nvram_source: None,
        copies: Vec::new(),
        production_uuid: None,
    };
    cx.rewrite(&mut out.root)?;
    Ok(Rewritten {
        xml: out.to_xml(),
        changes: cx.changes,
        interfaces: cx.interfaces,
        nvram_source: cx.nvram_source,
        copies: cx.copies,
    })
}

fn validate_opts(opts: &RewriteOpts) -> Result<()> {
    if opts.name.is_empty() || opts.name.contains('/') {
        bail!("invalid lab domain name '{}'", opts.name);
    }
    uuid::Uuid::parse_str(&opts.uuid)
        .with_context(|| format!("invalid lab domain uuid '{}'", opts.uuid))?;
    let len = opts.graphics_password.chars().count();
    if !(1..=8).contains(&len) {
        bail!(
            "the console password must have 1 to 8 characters (libvirt rejects longer ones), got {len}"
        );
    }
    for (dev, plan) in &opts.disks {
        if !plan.overlay.starts_with('/') {
            bail!(
                "overlay '{}' of disk {dev} is not an absolute path",
                plan.overlay
            );
        }
        if plan.chain.is_empty() {
            bail!("disk plan for {dev} has no backing chain");
        }
        for (i, layer) in plan.chain.iter().enumerate() {
            if !layer.path.starts_with('/') {
                bail!(
                    "backing layer '{}' of disk {dev} is not an absolute path",
                    layer.path
                );
            }
            if layer.format == ImageFormat::Raw && i + 1 != plan.chain.len() {
                bail!(
                    "backing layer '{}' of disk {dev} is raw but is not the last layer",
                    layer.path
                );
            }
        }
    }
    for path in opts
        .serial_log
        .iter()
        .chain(opts.nvram_path.iter())
        .chain(opts.private_dir.iter())
        .chain(opts.tpm_state_dir.iter())
    {
        if !path.starts_with('/') {
            bail!("'{path}' is not an absolute path");
        }
    }
    Ok(())
}

/// Lifts the `<domain>` out of a `<domainsnapshot>`, keeping the namespaces it relies on.
fn snapshot_domain(doc: tree::Doc, style: &Style) -> Result<tree::Doc> {
    let outer_decls = doc.root.ns_decls();
    let mut domain = doc
        .root
        .elems()
        .find(|e| e.name() == "domain")
        .cloned()
        .context("the domain snapshot xml has no embedded <domain>")?;
    let own: Vec<String> = domain.ns_decls().into_iter().map(|(p, _)| p).collect();
    for (prefix, uri) in outer_decls {
        if !own.contains(&prefix) {
            let key = if prefix.is_empty() {
                "xmlns".to_string()
            } else {
                format!("xmlns:{prefix}")
            };
            domain.set_attr(&key, &uri);
        }
    }
    if let Some(unit) = &style.unit {
        domain.dedent(unit);
    }
    let mut out = tree::parse("<x/>\n").expect("constant xml parses");
    out.root = domain;
    Ok(out)
}

struct Cx<'a> {
    opts: &'a RewriteOpts,
    style: Style,
    changes: Vec<Change>,
    interfaces: Vec<LabInterface>,
    nvram_source: Option<String>,
    copies: Vec<PrivateCopy>,
    /// Production's `<uuid>` (lower case), read before the lab's replaces it.
    production_uuid: Option<String>,
}

/// A compact description of an element for messages: its start tag without secrets, plus its
/// `<source>` and `<mac>` if it has them.
fn describe(e: &Elem) -> String {
    fn tag(e: &Elem) -> String {
        let mut s = format!("<{}", e.name());
        for (k, v) in e.attrs() {
            if k != "passwd" {
                s.push_str(&format!(" {k}='{v}'"));
            }
        }
        s.push('>');
        s
    }
    let mut s = tag(e);
    for child in ["mac", "source"] {
        if let Some(c) = e.child(child) {
            s.push(' ');
            s.push_str(&tag(c));
            // A host device is named by what is inside its source (PCI address, USB ids).
            for inner in c.elems() {
                s.push_str(&tag(inner));
            }
        }
    }
    s
}

impl Cx<'_> {
    fn record(&mut self, kind: ChangeKind, what: impl Into<String>, why: impl Into<String>) {
        self.changes.push(Change {
            kind,
            what: what.into(),
            why: why.into(),
        });
    }

    fn rewrite(&mut self, domain: &mut Elem) -> Result<()> {
        let kind = domain.attr("type").unwrap_or_default();
        if kind != "kvm" && kind != "qemu" {
            bail!("domain type '{kind}' is not supported: reclab clones qemu/kvm domains only");
        }
        domain.set_attr("type", self.opts.accel.domain_type());
        self.identity(domain)?;
        self.metadata(domain);
        self.sizing(domain)?;
        self.cpu(domain);
        self.hyperv(domain);
        self.os(domain)?;
        self.sysinfo(domain);
        self.qemu_commandline(domain);
        self.seclabels(domain);
        self.devices(domain)
    }

    fn identity(&mut self, domain: &mut Elem) -> Result<()> {
        let name = domain
            .child_mut("name")
            .context("the domain xml has no <name>")?;
        name.set_text(&self.opts.name);
        if let Some(uuid) = domain.child_mut("uuid") {
            let production = uuid.text().trim().to_ascii_lowercase();
            self.production_uuid = Some(production).filter(|u| !u.is_empty());
            uuid.set_text(&self.opts.uuid);
        } else {
            let at = domain
                .position(|e| e.name() == "name")
                .expect("name exists");
            let uuid = Elem::new("uuid").with_text(&self.opts.uuid);
            domain.insert_after(at, uuid, 0, &self.style);
        }
        Ok(())
    }

    fn metadata(&mut self, domain: &mut Elem) {
        if domain.child("metadata").is_none() {
            let after = ["description", "title", "genid", "uuid", "name"]
                .iter()
                .find_map(|n| domain.position(|e| e.name() == *n))
                .expect("name exists");
            domain.insert_after(after, Elem::new("metadata"), 0, &self.style);
        }
        let mut inherited = domain.ns_decls();
        let metadata = domain.child_mut("metadata").expect("metadata exists");
        inherited.extend(metadata.ns_decls());
        metadata.remove_where(|e| e.namespace(&inherited).as_deref() == Some(RECLAB_NS));
        let m = &self.opts.metadata;
        let p = RECLAB_PREFIX;
        let mut lab = Elem::new(&format!("{p}:lab")).with_attr(&format!("xmlns:{p}"), RECLAB_NS);
        for (field, value) in [
            ("name", &m.lab),
            ("run", &m.run),
            ("vm", &m.vm),
            ("created", &m.created),
            ("expires", &m.expires),
        ] {
            lab.append(
                Elem::new(&format!("{p}:{field}")).with_text(value),
                2,
                &self.style,
            );
        }
        metadata.append(lab, 1, &self.style);
    }

    /// The lab file's `memory` and `vcpus`: `<memory>`, `<currentMemory>`, `<vcpu>` and
    /// what must agree with them (the cpu topology, per-vcpu pins and states). A domain with
    /// NUMA cells or memory hot-plug (`<maxMemory>`) keeps production's memory layout and is
    /// refused a memory override.
    fn sizing(&mut self, domain: &mut Elem) -> Result<()> {
        let why = "the lab file sizes this vm for the lab host";
        if let Some(bytes) = self.opts.memory {
            let numa = domain
                .child("cpu")
                .is_some_and(|c| c.child("numa").is_some());
            if numa || domain.child("maxMemory").is_some() {
                bail!(
                    "the domain has NUMA cells or <maxMemory>, whose sizes must add up to its memory; remove `memory` from this vm in the lab file"
                );
            }
            let kib = (bytes / 1024).to_string();
            let memory = domain
                .child_mut("memory")
                .context("the domain xml has no <memory>")?;
            let old = format!(
                "{}{}",
                memory.text().trim(),
                memory.attr("unit").unwrap_or_else(|| "KiB".into())
            );
            memory.set_attr("unit", "KiB");
            memory.set_text(&kib);
            if let Some(current) = domain.child_mut("currentMemory") {
                current.set_attr("unit", "KiB");
                current.set_text(&kib);
            }
            self.record(
                ChangeKind::Modified,
                format!("<memory> {old} to {kib}KiB"),
                why,
            );
        }
        if let Some(n) = self.opts.vcpus {
            let vcpu = domain
                .child_mut("vcpu")
                .context("the domain xml has no <vcpu>")?;
            let old = vcpu.text().trim().to_string();
            vcpu.set_text(&n.to_string());
            vcpu.remove_attr("current");
            domain.remove_where(|e| e.name() == "vcpus");
            if let Some(cpu) = domain.child_mut("cpu")
                && let Some(topology) = cpu.child_mut("topology")
            {
                for (attr, value) in [
                    ("sockets", n.to_string()),
                    ("cores", "1".into()),
                    ("threads", "1".into()),
                ] {
                    topology.set_attr(attr, &value);
                }
                for attr in ["dies", "clusters"] {
                    if topology.attr(attr).is_some() {
                        topology.set_attr(attr, "1");
                    }
                }
            }
            if let Some(tune) = domain.child_mut("cputune") {
                tune.remove_where(|e| {
                    e.name() == "vcpupin"
                        && e.attr("vcpu")
                            .and_then(|v| v.parse::<u32>().ok())
                            .is_none_or(|v| v >= n)
                });
            }
            self.record(ChangeKind::Modified, format!("<vcpu> {old} to {n}"), why);
        }
        Ok(())
    }

    fn cpu(&mut self, domain: &mut Elem) {
        if self.opts.accel != Accel::Tcg {
            return;
        }
        let Some(cpu) = domain.child_mut("cpu") else {
            return;
        };
        let mode = cpu.attr("mode").unwrap_or_default();
        if mode != "host-passthrough" && mode != "host-model" {
            return;
        }
        let why = "software emulation (tcg) cannot provide the host cpu model";
        if cpu.child("topology").is_some() || cpu.child("numa").is_some() {
            for attr in ["mode", "check", "migratable"] {
                cpu.remove_attr(attr);
            }
            cpu.remove_where(|e| {
                ["model", "vendor", "feature", "cache", "maxphysaddr"].contains(&e.name().as_str())
            });
            self.record(
                ChangeKind::Modified,
                format!("<cpu mode='{mode}'> to the default cpu model, keeping topology and numa"),
                why,
            );
        } else {
            domain.remove_where(|e| e.name() == "cpu");
            self.record(ChangeKind::Removed, format!("<cpu mode='{mode}'>"), why);
        }
    }

    /// QEMU 7.2 under TCG refuses `hv-vpindex` ("kernel doesn't allow setting HyperV
    /// VP_INDEX"), and the enlightenments built on it need it; the others work.
    fn hyperv(&mut self, domain: &mut Elem) {
        if self.opts.accel != Accel::Tcg {
            return;
        }
        let Some(hyperv) = domain
            .child_mut("features")
            .and_then(|f| f.child_mut("hyperv"))
        else {
            return;
        };
        let removed = hyperv.remove_where(|e| {
            ["vpindex", "synic", "stimer", "ipi", "tlbflush"].contains(&e.name().as_str())
        });
        if !removed.is_empty() {
            let names: Vec<String> = removed.iter().map(Elem::name).collect();
            self.record(
                ChangeKind::Removed,
                format!("hyper-v enlightenments {}", names.join(", ")),
                "qemu cannot provide them under software emulation (tcg)",
            );
        }
    }

    /// The path of the private copy of `from` named `file` in `private_dir`, recorded in
    /// [`Rewritten::copies`]; `from` itself when it already is that copy.
    fn private_copy(
        &mut self,
        what: &str,
        from: &str,
        file: &str,
        dir: bool,
        changes: &mut Vec<Change>,
    ) -> Result<String> {
        let Some(private_dir) = &self.opts.private_dir else {
            bail!(
                "the domain has {what} {from} but no private copy was planned: the lab would write production's file"
            );
        };
        let to = format!(
            "{}/{}-{file}",
            private_dir.trim_end_matches('/'),
            self.opts.metadata.vm
        );
        if from != to {
            self.copies.push(PrivateCopy {
                what: what.to_string(),
                from: from.to_string(),
                to: to.clone(),
                dir,
                missing_ok: false,
            });
            changes.push(Change {
                kind: ChangeKind::Modified,
                what: format!("{what} {from} to the private copy {to}"),
                why: "the lab must not write production's files".to_string(),
            });
        }
        Ok(to)
    }

    /// A pflash loader QEMU may write (`readonly='no'`, or no `readonly` at all) is a
    /// production file the guest writes: the lab uses a copy.
    fn loader(&mut self, domain: &mut Elem) -> Result<()> {
        let Some(loader) = domain.child("os").and_then(|os| os.child("loader")) else {
            return Ok(());
        };
        let readonly = loader.attr("readonly");
        let writable = readonly.as_deref() == Some("no")
            || (loader.attr("type").as_deref() == Some("pflash") && readonly.is_none());
        let path = loader.text().trim().to_string();
        if !writable || path.is_empty() {
            return Ok(());
        }
        let mut changes = Vec::new();
        let copy = self.private_copy(
            "writable firmware <loader>",
            &path,
            "loader.fd",
            false,
            &mut changes,
        )?;
        self.changes.append(&mut changes);
        let loader = domain
            .child_mut("os")
            .and_then(|os| os.child_mut("loader"))
            .expect("loader exists");
        loader.set_text(&copy);
        Ok(())
    }

    fn os(&mut self, domain: &mut Elem) -> Result<()> {
        self.loader(domain)?;
        let Some(nvram) = domain.child_mut("os").and_then(|os| os.child_mut("nvram")) else {
            return Ok(());
        };
        if nvram.attr("type").is_some_and(|t| t != "file") {
            bail!(
                "<nvram type='{}'> is not supported yet: the lab would use production's uefi variable store",
                nvram.attr("type").unwrap_or_default()
            );
        }
        let current = match nvram.child("source") {
            Some(source) => source.attr("file").unwrap_or_default(),
            None => nvram.text().trim().to_string(),
        };
        if current.is_empty() {
            // Only a template: libvirt creates a fresh store named after the lab domain.
            return Ok(());
        }
        let Some(copy) = &self.opts.nvram_path else {
            bail!(
                "the domain has <nvram> {current} but no nvram copy was planned: the lab would write production's uefi variables"
            );
        };
        if current == *copy {
            return Ok(());
        }
        match nvram.child_mut("source") {
            Some(source) => source.set_attr("file", copy),
            None => nvram.set_text(copy),
        }
        self.nvram_source = Some(current.clone());
        self.record(
            ChangeKind::Modified,
            format!("<nvram> {current} to the copy {copy}"),
            "the lab must not write production's uefi variables",
        );
        Ok(())
    }

    fn sysinfo(&mut self, domain: &mut Elem) {
        let uuid = self.opts.uuid.clone();
        let mut changed = false;
        for sysinfo in domain.elems_mut().filter(|e| e.name() == "sysinfo") {
            for system in sysinfo.elems_mut().filter(|e| e.name() == "system") {
                for entry in system
                    .elems_mut()
                    .filter(|e| e.name() == "entry" && e.attr("name").as_deref() == Some("uuid"))
                {
                    if !entry.text().trim().eq_ignore_ascii_case(&uuid) {
                        entry.set_text(&uuid);
                        changed = true;
                    }
                }
            }
        }
        if changed {
            self.record(
                ChangeKind::Modified,
                "<sysinfo> system uuid to the lab uuid",
                "libvirt refuses a sysinfo uuid that differs from <uuid>",
            );
        }
    }

    /// `<qemu:commandline>`, `<qemu:override>`, `<qemu:capabilities>` and
    /// `<qemu:deprecation>` hand QEMU options libvirt does not check.
    fn qemu_commandline(&mut self, domain: &mut Elem) {
        let inherited = domain.ns_decls();
        let removed = domain.remove_where(|e| {
            ["commandline", "override", "capabilities", "deprecation"]
                .contains(&e.local_name().as_str())
                && e.namespace(&inherited).as_deref() == Some(QEMU_NS)
        });
        for e in removed {
            if e.local_name() == "commandline" {
                let args: Vec<String> = e.elems().filter_map(|a| a.attr("value")).collect();
                self.record(
                    ChangeKind::Removed,
                    format!("<{}> ({})", e.name(), args.join(" ")),
                    "raw qemu arguments could reach outside the lab",
                );
            } else {
                self.record(
                    ChangeKind::Removed,
                    format!("<{}>", e.name()),
                    "unchecked qemu options could reach outside the lab",
                );
            }
        }
    }

    /// Only dynamic security labels stay: a static label is production's own (the lab would
    /// be allowed production's files), a static DAC label runs QEMU as another user, and
    /// `type='none'` runs it unconfined. libvirt gives the lab its default dynamic labels.
    fn seclabels(&mut self, domain: &mut Elem) {
        let removed = domain.remove_where(|e| {
            e.name() == "seclabel" && e.attr("type").is_some_and(|t| t != "dynamic")
        });
        for e in removed {
            let label = e.child("label").map(|l| l.text().trim().to_string());
            self.record(
                ChangeKind::Removed,
                match label {
                    Some(l) => format!("{} ({l})", describe(&e)),
                    None => describe(&e),
                },
                "a fixed or absent security label would give the lab production's rights",
            );
        }
    }

    fn devices(&mut self, domain: &mut Elem) -> Result<()> {
        if domain.child("devices").is_none() {
            domain.append(Elem::new("devices"), 0, &self.style);
        }
        let devices = domain.child_mut("devices").expect("devices exists");
        let mut state = DeviceState::default();
        let mut pending: Vec<Change> = Vec::new();
        let result = devices.retain_elems(|dev| self.device(dev, &mut state, &mut pending));
        self.changes.append(&mut pending);
        result?;
        if self.opts.serial_log.is_some() && !state.seen_serial {
            let log = self.opts.serial_log.clone().expect("checked");
            let mut serial = Elem::new("serial").with_attr("type", "pty");
            serial.append(
                Elem::new("log")
                    .with_attr("file", &log)
                    .with_attr("append", "off"),
                2,
                &self.style,
            );
            devices.append(serial, 1, &self.style);
            self.record(
                ChangeKind::Added,
                format!("<serial type='pty'> logging to {log}"),
                "the lab records the boot console",
            );
        }
        if !state.seen_agent {
            let mut channel = Elem::new("channel").with_attr("type", "unix");
            channel.append(
                Elem::new("target")
                    .with_attr("type", "virtio")
                    .with_attr("name", GUEST_AGENT_CHANNEL),
                2,
                &self.style,
            );
            devices.append(channel, 1, &self.style);
            self.record(
                ChangeKind::Added,
                format!("guest agent <channel> {GUEST_AGENT_CHANNEL}"),
                "reclab talks to lab guests through the guest agent",
            );
        }
        Ok(())
    }

    /// Edits one device in place; `Ok(false)` removes it.
    fn device(
        &mut self,
        dev: &mut Elem,
        state: &mut DeviceState,
        changes: &mut Vec<Change>,
    ) -> Result<bool> {
        fn remove(dev: &Elem, why: &str, changes: &mut Vec<Change>) -> Result<bool> {
            changes.push(Change {
                kind: ChangeKind::Removed,
                what: describe(dev),
                why: why.to_string(),
            });
            Ok(false)
        }
        let kind = dev.attr("type").unwrap_or_default();
        match dev.name().as_str() {
            "disk" => {
                state.disks += 1;
                self.disk(dev, state.disks, changes)?;
            }
            "interface" => {
                state.interfaces += 1;
                return self.interface(dev, state.interfaces, changes);
            }
            "graphics" => match kind.as_str() {
                "vnc" | "spice" => self.graphics(dev),
                "rdp" => return remove(dev, REACH_OUT, changes),
                "sdl" | "desktop" => {
                    return remove(dev, "opens a window on a host display", changes);
                }
                "dbus" if dev.has_attr("address") => {
                    return remove(dev, "connects to a d-bus outside the lab", changes);
                }
                _ => {}
            },
            "audio" => self.audio(dev, changes),
            "memory" => self.memory(dev, state, changes)?,
            "pstore" => {
                return remove(
                    dev,
                    "writes production's persistent store (a host file)",
                    changes,
                );
            }
            "lease" => return remove(dev, "the lab would take production's lock", changes),
            "hostdev" | "redirdev" => return remove(dev, TOUCH_HOST, changes),
            "filesystem" => return remove(dev, "shares a host directory with the guest", changes),
            "shmem" => {
                return remove(
                    dev,
                    "shares memory with host processes or other vms",
                    changes,
                );
            }
            "input" if kind == "passthrough" || kind == "evdev" => {
                return remove(dev, "passes a host input device through", changes);
            }
            "smartcard" if matches!(dev.attr("mode").as_deref(), Some("passthrough" | "host")) => {
                return remove(dev, TOUCH_HOST, changes);
            }
            "smartcard" if dev.attr("mode").as_deref() == Some("host-certificates") => {
                return remove(dev, "uses the host's certificate database", changes);
            }
            "tpm" => {
                let backend = dev
                    .child("backend")
                    .and_then(|b| b.attr("type"))
                    .unwrap_or_default();
                if backend == "passthrough" || backend == "external" {
                    return remove(dev, "uses the host's tpm", changes);
                }
                if backend == "emulator" {
                    self.tpm_state(dev, changes)?;
                }
            }
            "rng" => self.rng(dev, changes),
            "vsock" => self.vsock(dev, changes),
            "serial" | "console" => self.serial_or_console(dev, state, changes),
            "channel" | "parallel" => return Ok(self.channel_or_parallel(dev, state, changes)),
            _ => {}
        }
        Ok(true)
    }

    fn disk(&mut self, disk: &mut Elem, n: usize, changes: &mut Vec<Change>) -> Result<()> {
        let device = disk.attr("device").unwrap_or_else(|| "disk".to_string());
        let kind = disk.attr("type").unwrap_or_else(|| "file".to_string());
        let target = disk
            .child("target")
            .and_then(|t| t.attr("dev"))
            .with_context(|| format!("disk {n} has no <target dev>"))?;
        let source = disk.child("source");
        let source_attr = |k: &str| source.and_then(|s| s.attr(k)).unwrap_or_default();
        match device.as_str() {
            "disk" => {}
            "cdrom" | "floppy" => {
                let had_media = source.is_some();
                disk.remove_where(|e| {
                    ["source", "backingStore", "auth"].contains(&e.name().as_str())
                });
                disk.set_attr("type", "file");
                if had_media {
                    changes.push(Change {
                        kind: ChangeKind::Removed,
                        what: format!("the media of {device} {target}"),
                        why: "the lab does not open production media".to_string(),
                    });
                }
                return Ok(());
            }
            "lun" => bail!(
                "disk {target} has device 'lun' (scsi passthrough of a host device), which reclab does not support"
            ),
            other => bail!("disk {target} has device '{other}', which reclab does not know"),
        }
        match kind.as_str() {
            "file" | "block" => {}
            "network" => bail!(
                "disk {target} has type 'network' ({} '{}'), which reclab does not support yet: the lab would open production storage over the network",
                source_attr("protocol"),
                source_attr("name")
            ),
            "volume" => bail!(
                "disk {target} has type 'volume' (pool '{}', volume '{}'), which reclab does not support yet: plan it by its file path",
                source_attr("pool"),
                source_attr("volume")
            ),
            other => bail!("disk {target} has type '{other}', which reclab does not support yet"),
        }
        if disk.child("encryption").is_some()
            || source.is_some_and(|s| s.child("encryption").is_some())
        {
            bail!("disk {target} is encrypted, which reclab does not support yet");
        }
        let Some(plan) = self.opts.disks.get(&target) else {
            let path = source
                .and_then(|s| s.attr("file").or_else(|| s.attr("dev")))
                .unwrap_or_else(|| "no source".to_string());
            bail!("disk {target} ({path}) has no overlay planned");
        };
        let before = disk.to_xml();
        let production = source
            .and_then(|s| s.attr("file").or_else(|| s.attr("dev")))
            .unwrap_or_default();
        disk.set_attr("type", "file");
        disk.remove_where(|e| ["backingStore", "mirror", "shareable"].contains(&e.name().as_str()));
        let source = Elem::new("source").with_attr("file", &plan.overlay);
        match disk.position(|e| e.name() == "source") {
            Some(at) => {
                disk.replace_at(at, source, &self.style);
                let mut first = true;
                disk.remove_where(|e| {
                    if e.name() != "source" {
                        return false;
                    }
                    let extra = !first;
                    first = false;
                    extra
                });
            }
            None => {
                let at = disk
                    .position(|e| e.name() == "driver")
                    .or_else(|| disk.position(|e| e.name() == "target"))
                    .expect("target exists");
                disk.insert_before(at, source, 2, &self.style);
            }
        }
        let at = disk
            .position(|e| e.name() == "source")
            .expect("source exists");
        match disk.child_mut("driver") {
            Some(driver) => {
                driver.set_attr("name", "qemu");
                driver.set_attr("type", "qcow2");
            }
            None => {
                let driver = Elem::new("driver")
                    .with_attr("name", "qemu")
                    .with_attr("type", "qcow2");
                disk.insert_before(at, driver, 2, &self.style);
            }
        }
        let at = disk
            .position(|e| e.name() == "source")
            .expect("source exists");
        let chain = backing_chain(&plan.chain, 1, 3, &self.style);
        disk.insert_after(at, chain, 2, &self.style);
        if disk.to_xml() != before {
            changes.push(Change {
                kind: ChangeKind::Modified,
                what: format!(
                    "disk {target} from {production} to the overlay {}",
                    plan.overlay
                ),
                why: format!(
                    "the lab writes only to its overlay, over the read-only {}",
                    plan.chain[0].path
                ),
            });
        }
        Ok(())
    }

    fn interface(&mut self, iface: &mut Elem, n: usize, changes: &mut Vec<Change>) -> Result<bool> {
        let kind = iface.attr("type").unwrap_or_default();
        let source = iface.child("source");
        let source_attr = |k: &str| source.and_then(|s| s.attr(k)).unwrap_or_default();
        let source = match kind.as_str() {
            "network" => IfaceSource::Network(source_attr("network")),
            "bridge" => IfaceSource::Bridge(source_attr("bridge")),
            "ethernet" => IfaceSource::Ethernet,
            "direct" => IfaceSource::Direct(source_attr("dev")),
            "user" | "vhostuser" | "hostdev" | "vdpa" | "server" | "client" | "mcast" | "udp"
            | "null" | "vds" => {
                let detail = match kind.as_str() {
                    "vhostuser" => source_attr("path"),
                    "vdpa" => source_attr("dev"),
                    "hostdev" => source
                        .and_then(|s| s.child("address"))
                        .map(host_address)
                        .unwrap_or_default(),
                    "server" | "client" | "mcast" | "udp" => {
                        let (a, p) = (source_attr("address"), source_attr("port"));
                        if a.is_empty() && p.is_empty() {
                            String::new()
                        } else {
                            format!("{a}:{p}")
                        }
                    }
                    _ => String::new(),
                };
                let detail = if detail.is_empty() {
                    detail
                } else {
                    format!("'{detail}'")
                };
                IfaceSource::Other { kind, detail }
            }
            other => bail!(
                "interface {n} has type '{other}', which reclab does not know: refusing rather than risk a path outside the lab"
            ),
        };
        let Some(mac) = iface.child("mac").and_then(|m| m.attr("address")) else {
            bail!(
                "interface {n} ({source}) has no <mac>: the lab keeps production mac addresses, so the domain xml must carry them (use the xml libvirt reports for the domain)"
            );
        };
        let mac = mac.to_ascii_lowercase();
        let Some(network) = self.opts.networks.resolve(&mac, &source) else {
            bail!("interface {mac} ({source}) is not mapped to a lab network");
        };
        let network = network.to_string();
        let before = iface.to_xml();
        iface.set_attr("type", "network");
        // A hostdev interface is a managed PCI device; a lab network port is not.
        iface.remove_attr("managed");
        let new_source = Elem::new("source").with_attr("network", &network);
        match iface.position(|e| e.name() == "source") {
            Some(at) => iface.replace_at(at, new_source, &self.style),
            None => {
                let at = iface.position(|e| e.name() == "mac").expect("mac exists");
                iface.insert_after(at, new_source, 2, &self.style);
            }
        }
        let mut first_source = true;
        iface.remove_where(|e| match e.name().as_str() {
            "source" => !std::mem::replace(&mut first_source, false),
            // `<backend tap= vhost=>` names host device nodes, `<backend type='passt'>` a
            // user-mode helper: a lab network port uses libvirt's own.
            "target" | "virtualport" | "vlan" | "ip" | "route" | "script" | "downscript"
            | "portForward" | "backend" => true,
            _ => false,
        });
        if let Some(driver) = iface.child_mut("driver") {
            // `vfio` or `kvm` drive a host PCI function; a network port takes qemu or vhost.
            if driver
                .attr("name")
                .is_some_and(|d| d != "qemu" && d != "vhost")
            {
                driver.remove_attr("name");
                if driver.attrs().is_empty() && driver.elems().next().is_none() {
                    iface.remove_where(|e| e.name() == "driver");
                }
            }
        }
        if iface.to_xml() != before {
            changes.push(Change {
                kind: ChangeKind::Modified,
                what: format!("interface {mac} ({source}) to lab network '{network}'"),
                why: "lab guests keep their production mac on an isolated network".to_string(),
            });
        }
        self.interfaces.push(LabInterface { mac, network });
        Ok(true)
    }

    fn graphics(&mut self, g: &mut Elem) {
        g.set_attr("autoport", "yes");
        for attr in ["port", "tlsPort", "websocket", "socket"] {
            g.remove_attr(attr);
        }
        g.set_attr("listen", LOOPBACK);
        g.set_attr("passwd", &self.opts.graphics_password);
        let valid_to = self
            .opts
            .graphics_valid_to
            .strftime("%Y-%m-%dT%H:%M:%S")
            .to_string();
        g.set_attr("passwdValidTo", &valid_to);
        let listen = Elem::new("listen")
            .with_attr("type", "address")
            .with_attr("address", LOOPBACK);
        match g.position(|e| e.name() == "listen") {
            Some(at) => {
                g.replace_at(at, listen, &self.style);
                let mut first = true;
                g.remove_where(|e| e.name() == "listen" && !std::mem::replace(&mut first, false));
            }
            None => g.append(listen, 2, &self.style),
        }
    }

    /// Audio stays inside QEMU (`none`) or goes to the lab's own console (`spice`); every
    /// other backend reaches a host sound server, device, file or the network.
    fn audio(&mut self, audio: &mut Elem, changes: &mut Vec<Change>) {
        let kind = audio.attr("type").unwrap_or_default();
        if kind == "none" || kind == "spice" {
            return;
        }
        let what = describe(audio);
        for (key, _) in audio.attrs() {
            if key != "id" && key != "timerPeriod" {
                audio.remove_attr(&key);
            }
        }
        audio.set_attr("type", "none");
        audio.remove_where(|e| e.name() == "input" || e.name() == "output");
        changes.push(Change {
            kind: ChangeKind::Modified,
            what: format!("{what} to type 'none'"),
            why: "the audio backend reaches a host sound server, device, file or the network"
                .to_string(),
        });
    }

    /// A persistent-memory device backed by a file the guest writes through (`nvdimm`,
    /// `virtio-pmem`, unless `access='private'`) uses a private copy.
    fn memory(
        &mut self,
        mem: &mut Elem,
        state: &mut DeviceState,
        changes: &mut Vec<Change>,
    ) -> Result<()> {
        let model = mem.attr("model").unwrap_or_default();
        if model != "nvdimm" && model != "virtio-pmem" {
            return Ok(());
        }
        let Some(path) = mem
            .child("source")
            .and_then(|s| s.child("path"))
            .map(|p| p.text().trim().to_string())
            .filter(|p| !p.is_empty())
        else {
            return Ok(());
        };
        let n = state.pmem;
        state.pmem += 1;
        if mem.attr("access").as_deref() == Some("private") {
            return Ok(());
        }
        let copy = self.private_copy(
            &format!("<memory model='{model}'> {n}"),
            &path,
            &format!("pmem{n}.img"),
            false,
            changes,
        )?;
        let p = mem
            .child_mut("source")
            .and_then(|s| s.child_mut("path"))
            .expect("path exists");
        p.set_text(&copy);
        Ok(())
    }

    /// Software TPM state named in the XML (`<backend type='emulator'><source type='dir'
    /// path=…>` in newer libvirt) is production's: the lab uses a copy. Without a `<source>`
    /// libvirt keeps the state under the domain uuid: the lab's copy of production's goes
    /// under the lab's uuid ([`Cx::default_tpm_state`]).
    fn tpm_state(&mut self, tpm: &mut Elem, changes: &mut Vec<Change>) -> Result<()> {
        if let Some(backend) = tpm.child_mut("backend")
            && backend.attr("persistent_state").as_deref() == Some("yes")
        {
            // libvirt would keep the lab's state on the host after the lab is gone.
            backend.remove_attr("persistent_state");
            changes.push(Change {
                kind: ChangeKind::Modified,
                what: "tpm persistent_state='yes' to the default".to_string(),
                why: "the lab's tpm state goes with the lab".to_string(),
            });
        }
        let Some(source) = tpm.child("backend").and_then(|b| b.child("source")) else {
            self.default_tpm_state(changes);
            return Ok(());
        };
        let Some(path) = source.attr("path").filter(|p| !p.is_empty()) else {
            return Ok(());
        };
        let dir = source.attr("type").as_deref() != Some("file");
        let file = if dir { "tpm" } else { "tpm.state" };
        let copy = self.private_copy("tpm state", &path, file, dir, changes)?;
        tpm.child_mut("backend")
            .and_then(|b| b.child_mut("source"))
            .expect("source exists")
            .set_attr("path", &copy);
        Ok(())
    }

    /// libvirt keeps the state of a TPM without `<source>` in `<swtpm dir>/<domain uuid>/`
    /// (`tpm2/` or `tpm1.2/` inside): the lab domain, with its own uuid, would start with an
    /// empty TPM, and a guest that sealed its disk key to production's TPM (BitLocker, LUKS
    /// with TPM) would not unlock. The lab gets a copy of production's directory under its own
    /// uuid, which libvirt then uses as it is.
    fn default_tpm_state(&mut self, changes: &mut Vec<Change>) {
        let fresh = |why: &str| Change {
            kind: ChangeKind::Modified,
            what: "tpm state to an empty one".to_string(),
            why: format!(
                "{why}; a guest that seals secrets to its tpm (bitlocker, luks with tpm) will not unlock"
            ),
        };
        let Some(dir) = &self.opts.tpm_state_dir else {
            changes.push(fresh("where the hypervisor keeps tpm state is not known"));
            return;
        };
        let Some(production) = self.production_uuid.clone() else {
            changes.push(fresh(
                "the production domain has no <uuid>, so its tpm state cannot be found",
            ));
            return;
        };
        let dir = dir.trim_end_matches('/');
        let lab = self.opts.uuid.to_ascii_lowercase();
        if production == lab {
            // Already the lab's own state (the rewrite of a lab domain).
            return;
        }
        let (from, to) = (format!("{dir}/{production}"), format!("{dir}/{lab}"));
        changes.push(Change {
            kind: ChangeKind::Modified,
            what: format!("tpm state {from} to the private copy {to}"),
            why: "the lab must not write production's files".to_string(),
        });
        self.copies.push(PrivateCopy {
            what: "tpm state".to_string(),
            from,
            to,
            dir: true,
            missing_ok: true,
        });
    }

    fn rng(&mut self, rng: &mut Elem, changes: &mut Vec<Change>) {
        let Some(backend) = rng.child_mut("backend") else {
            return;
        };
        if backend.attr("model").as_deref() != Some("egd") {
            return;
        }
        let what = describe(backend);
        backend.remove_attr("type");
        backend.set_attr("model", "random");
        backend.set_text("/dev/urandom");
        changes.push(Change {
            kind: ChangeKind::Modified,
            what: format!("rng {what} to /dev/urandom"),
            why: "an egd backend is a socket that could reach outside the lab".to_string(),
        });
    }

    fn vsock(&mut self, vsock: &mut Elem, changes: &mut Vec<Change>) {
        let Some(cid) = vsock.child_mut("cid") else {
            return;
        };
        if cid.attr("auto").as_deref() == Some("yes") && !cid.has_attr("address") {
            return;
        }
        cid.set_attr("auto", "yes");
        cid.remove_attr("address");
        changes.push(Change {
            kind: ChangeKind::Modified,
            what: "<vsock> cid to automatic".to_string(),
            why: "a fixed cid collides with the running production vm".to_string(),
        });
    }

    /// Removes production log files from a character device and, for the first serial, logs
    /// to `serial_log`.
    fn chardev_logs(&mut self, dev: &mut Elem, first_serial: bool, changes: &mut Vec<Change>) {
        let wanted = self.opts.serial_log.as_ref().filter(|_| first_serial);
        match wanted {
            Some(path) => {
                let mut first = true;
                dev.remove_where(|e| e.name() == "log" && !std::mem::replace(&mut first, false));
                match dev.child_mut("log") {
                    Some(log) => {
                        log.set_attr("file", path);
                        log.set_attr("append", "off");
                    }
                    None => {
                        let log = Elem::new("log")
                            .with_attr("file", path)
                            .with_attr("append", "off");
                        match dev.position(|e| e.name() == "target") {
                            Some(at) => dev.insert_before(at, log, 2, &self.style),
                            None => dev.append(log, 2, &self.style),
                        }
                    }
                }
            }
            None => {
                for log in dev.remove_where(|e| e.name() == "log") {
                    changes.push(Change {
                        kind: ChangeKind::Removed,
                        what: format!(
                            "<log file='{}'> of <{}>",
                            log.attr("file").unwrap_or_default(),
                            dev.name()
                        ),
                        why: "the lab must not write production's log files".to_string(),
                    });
                }
            }
        }
    }

    fn serial_or_console(
        &mut self,
        dev: &mut Elem,
        state: &mut DeviceState,
        changes: &mut Vec<Change>,
    ) {
        let first_serial = dev.name() == "serial" && !state.seen_serial;
        if dev.name() == "serial" {
            state.seen_serial = true;
        }
        let kind = dev.attr("type").unwrap_or_else(|| "pty".to_string());
        if !SAFE_CHARDEV.contains(&kind.as_str()) {
            let what = describe(dev);
            dev.set_attr("type", "pty");
            dev.remove_where(|e| e.name() == "source" || e.name() == "protocol");
            changes.push(Change {
                kind: ChangeKind::Modified,
                what: format!("{what} to type 'pty'"),
                why: chardev_risk(&kind).to_string(),
            });
        }
        if dev.attr("type").as_deref() == Some("pty") {
            forget_pty(dev);
        }
        self.chardev_logs(dev, first_serial, changes);
    }

    /// `Ok(false)` removes the device.
    fn channel_or_parallel(
        &mut self,
        dev: &mut Elem,
        state: &mut DeviceState,
        changes: &mut Vec<Change>,
    ) -> bool {
        let kind = dev.attr("type").unwrap_or_else(|| "pty".to_string());
        let is_agent = dev.name() == "channel"
            && kind == "unix"
            && dev.child("target").is_some_and(|t| {
                t.attr("type").as_deref() == Some("virtio")
                    && t.attr("name").as_deref() == Some(GUEST_AGENT_CHANNEL)
            });
        if is_agent {
            state.seen_agent = true;
            let has_path = dev.child("source").is_some_and(|s| s.has_attr("path"));
            if has_path {
                let what = describe(dev);
                dev.remove_where(|e| e.name() == "source");
                changes.push(Change {
                    kind: ChangeKind::Modified,
                    what: format!("guest agent {what}: dropped the socket path"),
                    why: "libvirt picks a fresh socket; production's would collide".to_string(),
                });
            }
        } else {
            let safe = SAFE_CHARDEV.contains(&kind.as_str())
                || (kind == "unix" && !dev.child("source").is_some_and(|s| s.has_attr("path")));
            if !safe {
                changes.push(Change {
                    kind: ChangeKind::Removed,
                    what: describe(dev),
                    why: chardev_risk(&kind).to_string(),
                });
                return false;
            }
            if kind == "pty" {
                forget_pty(dev);
            }
        }
        self.chardev_logs(dev, false, changes);
        true
    }
}

/// Why a character device of this type cannot stay as it is.
fn chardev_risk(kind: &str) -> &'static str {
    match kind {
        "tcp" | "udp" => REACH_OUT,
        _ => TOUCH_HOST,
    }
}

/// A host PCI or USB address as text: `0000:03:10.2`, `usb 1.5`.
fn host_address(a: &Elem) -> String {
    let hex = |k: &str| {
        let v = a.attr(k).unwrap_or_default();
        v.trim_start_matches("0x").to_string()
    };
    match a.attr("type").as_deref() {
        Some("usb") => format!("usb {}.{}", hex("bus"), hex("device")),
        _ => format!(
            "{:0>4}:{:0>2}:{:0>2}.{}",
            hex("domain"),
            hex("bus"),
            hex("slot"),
            hex("function")
        ),
    }
}

/// Drops the pseudo-terminal a live XML names (production's); libvirt allocates a new one.
fn forget_pty(dev: &mut Elem) {
    dev.remove_attr("tty");
    dev.remove_where(|e| e.name() == "source");
}

/// Builds `<backingStore>` for `layers`, nested, ending with an empty `<backingStore/>`.
/// `depth` is the depth of the element built.
fn backing_chain(layers: &[BackingLayer], index: usize, depth: usize, style: &Style) -> Elem {
    let Some((layer, rest)) = layers.split_first() else {
        return Elem::new("backingStore");
    };
    let (kind, attr) = match layer.kind {
        LayerKind::File => ("file", "file"),
        LayerKind::Block => ("block", "dev"),
    };
    let mut e = Elem::new("backingStore")
        .with_attr("type", kind)
        .with_attr("index", &index.to_string());
    e.append(
        Elem::new("format").with_attr("type", layer.format.as_str()),
        depth,
        style,
    );
    e.append(
        Elem::new("source").with_attr(attr, &layer.path),
        depth,
        style,
    );
    e.append(
        backing_chain(rest, index + 1, depth + 1, style),
        depth,
        style,
    );
    e
}

#[derive(Default)]
struct DeviceState {
    disks: usize,
    pmem: usize,
    interfaces: usize,
    seen_serial: bool,
    seen_agent: bool,
}

/// Reads reclab's metadata from a whole domain XML (a `<reclab:lab>` element in [`RECLAB_NS`])
/// or from the fragment `virDomainGetMetadata` returns for [`RECLAB_NS`]: libvirt strips the
/// namespace, so that fragment is a bare `<lab>` with bare children (a `<lab>` in the
/// namespace, under any prefix, is read too). `None` when absent or incomplete.
pub fn parse_lab_metadata(xml: &str) -> Option<LabMetadata> {
    let doc = tree::parse(xml).ok()?;
    let mut found: Option<Elem> = None;
    if doc.root.local_name() == "lab" && doc.root.namespace(&[]).is_none() {
        found = Some(doc.root.clone());
    } else {
        find_lab(&doc.root, &mut Vec::new(), &mut found);
    }
    let lab = found?;
    let field = |name: &str| {
        lab.elems()
            .find(|e| e.local_name() == name)
            .map(|e| e.text().trim().to_string())
    };
    Some(LabMetadata {
        lab: field("name")?,
        run: field("run")?,
        vm: field("vm")?,
        created: field("created")?,
        expires: field("expires")?,
    })
}

fn find_lab(e: &Elem, inherited: &mut Vec<(String, String)>, found: &mut Option<Elem>) {
    if found.is_some() {
        return;
    }
    if e.local_name() == "lab" && e.namespace(inherited).as_deref() == Some(RECLAB_NS) {
        *found = Some(e.clone());
        return;
    }
    let added = e.ns_decls();
    let n = added.len();
    inherited.extend(added);
    for child in e.elems() {
        find_lab(child, inherited, found);
    }
    inherited.truncate(inherited.len() - n);
}
