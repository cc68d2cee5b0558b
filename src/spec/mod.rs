//! The lab file: what an operator keeps in git to describe one restore lab.
//!
//! Reading happens in two stages. The TOML text is first decoded into private *wire* types that
//! mirror the file (`deny_unknown_fields`, every value carrying its position in the file); then
//! a validation pass turns them into the clean types below ([`LabSpec`], [`SegmentSpec`],
//! [`ServicesSpec`], [`VmSpec`], [`VmSource`]) that the rest of reclab uses. This module does no
//! IO except reading the lab file itself in [`load`] (and the system time zone database, to check
//! a dump source's `tz`): it never talks to libvirt and never looks at the files a lab refers to
//! (`reclab check` and `reclab points` do that later).
//!
//! Every problem is reported as `FILE:LINE:COLUMN: FIELD: WHAT IS WRONG; WHAT TO DO`, one per
//! line, sorted by position (for example
//! `lab.toml:12:8: vm[1].after[0]: unknown vm "dbb"; known vms: db, app`). Problems with the
//! file as a whole have no position (`lab.toml: name: missing lab name; ...`). Field paths
//! count array entries from 0, so `vm[1]` is the second `[[vm]]` table. Reporting happens in
//! rounds: TOML syntax errors first (all of them); then unknown keys and wrong value types (the
//! first one per top-level section, per segment and per VM); then, once the file decodes, every
//! validation problem at once.
//!
//! # Lab file reference
//!
//! A complete example lives in `examples/erp.toml`.
//!
//! ```toml
//! name = "erp"
//! connect = "qemu:///system"
//! ttl = "8h"
//! accel = "kvm"
//!
//! [segment.lan]
//! production = ["prod"]
//! hosts = { "db.prod.example" = "10.20.0.10", "app.prod.example" = "10.20.0.11" }
//!
//! [segment.lan.services]
//! address = "10.20.0.1/24"
//! dns = true
//! dhcp = true
//! domain = "prod.example"
//!
//! [[vm]]
//! name = "db"
//! from = { domain = "prod-db", snapshot = "nightly" }
//! ready = { timeout = "5m", tcp = 5432 }
//! dhcp = { ip = "10.20.0.10" }
//!
//! [[vm]]
//! name = "app"
//! from = { xml = "backups/app.xml", disks = { vda = "backups/app.qcow2" } }
//! after = ["db"]
//! ```
//!
//! ## Top level
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `name` | required | Lab name: 1 to 20 characters, a lowercase letter first, then lowercase letters, digits or `-`. It is part of every libvirt domain, network and volume name reclab derives, which is why it is short. |
//! | `connect` | `"qemu:///system"` | libvirt connection URI (any URI or URI alias libvirt accepts, such as `qemu+ssh://root@hv1/system`). The `RECLAB_CONNECT` environment variable overrides it at run time. |
//! | `ttl` | `"8h"` | How long the lab may live. After that `reclab gc` removes it. A duration (see below). |
//! | `accel` | `"kvm"` | `"kvm"` for hardware virtualization, `"tcg"` for QEMU's software emulation (slow, but works where KVM is unavailable, for example inside another VM). |
//! | `state_dir` | the `--state-dir` option | Directory for run state (journals, overlays, logs). Relative paths are relative to the lab file's directory. |
//! | `max_skew` | none (unbounded) | Largest time allowed between the VM image and the dump chosen for a VM, either way (a duration, e.g. `"26h"`). A larger skew makes `--at` fail, listing the nearest points. |
//! | `[segment.NAME]` | none | Isolated lab networks, see below. |
//! | `[[vm]]` | at least one | The VMs to clone, see below. |
//! | `[notify]` | none | E-mail, webhook and MQTT notifications after every drill (see `spec::ops`). |
//! | `[metrics]` | none | `textfile = "…/reclab.prom"`: a Prometheus textfile updated after every drill. |
//!
//! ## `[segment.NAME]`: isolated segments
//!
//! One isolated segment per production layer-2 segment. Each becomes a libvirt network with no
//! `<forward>` and no host address: guests keep their production IPs, MACs and static
//! configuration and reach nothing outside the lab. `NAME` is 1 to 8 characters, a lowercase
//! letter first, then lowercase letters or digits: it goes into the lab bridge's name, and Linux
//! limits interface names to 15 characters.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `production` | all interfaces, if this is the only segment | Production libvirt network names and/or bridge names. A cloned VM's interface that is attached to one of them lands in this segment. Required when there is more than one segment; a name may appear in only one segment. |
//! | `hosts` | `{}` | Host names for the lab DNS: `{ "db.prod.example" = "10.20.0.10" }`. Several names may share an address. When the segment has services, every address must be inside the services subnet. |
//! | `[segment.NAME.services]` | none | Optional lab services, see below. |
//!
//! A VM interface whose production network matches no segment is an error when the lab is
//! planned; with no segment at all, VMs must not have network interfaces.
//!
//! ## `[segment.NAME.services]`: lab DNS and DHCP
//!
//! Lab services answer at a production address (typically the production gateway or DNS
//! server) from inside the lab, without giving the hypervisor an address on the segment and
//! without forwarding any query outside the lab.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `address` | required | The address the services answer at, in CIDR form (`"10.20.0.1/24"`). It must be a host address of its subnet (not the network or broadcast address); the prefix is 1 to 30. |
//! | `dns` | `true` | Answer DNS for the segment's `hosts`. Unknown names get no answer; nothing is forwarded. |
//! | `dhcp` | `false` | Answer DHCP with the reservations of the VMs on this segment (each VM's `dhcp`). |
//! | `dhcp_range` | none | `["10.20.0.100", "10.20.0.199"]`: also lease addresses from this range to unknown MACs. Needs `dhcp = true`; both ends inside the subnet. |
//! | `domain` | none | Search domain handed out by DHCP and treated as local by DNS. |
//!
//! At least one of `dns` and `dhcp` must be enabled.
//!
//! ## `[[vm]]`: VMs
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `name` | required | 1 to 16 characters, a lowercase letter first, then lowercase letters, digits or `-`; unique in the lab. Part of the lab domain's name, which is why it is short. |
//! | `from` | required | Where the VM comes from, one of two forms (below). |
//! | `tier` | derived | Boot tier, 1 to 999. VMs of a tier start together; tier N+1 starts when tier N is ready. |
//! | `after` | `[]` | Names of VMs that must be ready before this one starts. |
//! | `ready` | `{ timeout = "5m" }` | When the VM counts as ready, below. |
//! | `dhcp` | none | A DHCP reservation answered by the lab services, below. |
//! | `dumps` | none | Database dumps to restore into the VM, see below. |
//!
//! **`from`**, either:
//! - `{ domain = "prod-db", snapshot = "nightly" }`: a libvirt domain on the `connect` host and
//!   one of its external disk-only snapshots; the lab clones the snapshot's frozen backing files,
//!   so production keeps running. Both keys are required. The snapshot may be a pattern with `*`
//!   (`snapshot = "nightly-*"`): every matching snapshot is then an image restore point and
//!   `--at` picks the newest one at or before the moment (`latest`: the newest).
//! - `{ xml = "backups/db.xml", disks = { vda = "backups/db.qcow2" } }`: a domain XML file and
//!   one image per disk target (qcow2 or raw), as a backup tool restores them. Paths are relative
//!   to the lab file's directory; `disks` needs at least one entry.
//!
//! **Boot tiers.** A VM's tier is the larger of its `tier` (default 1) and one more than the tier
//! of every VM in its `after` list. A VM that gives both `tier` and `after` must have a tier above
//! each of those VMs. Cycles in `after` are rejected. Empty tiers are skipped, so tiers 1 and 5
//! boot as two consecutive groups ([`LabSpec::boot_tiers`]).
//!
//! **`ready`**: `{ timeout = "5m", tcp = 80 }`. A VM is ready when its QEMU guest agent answers
//! a ping and, if `tcp` is given (1 to 65535), when that TCP port accepts connections from
//! inside the lab. `timeout` bounds the whole wait (default `"5m"`).
//!
//! **`dhcp`**: `{ ip = "10.20.0.10", mac = "52:54:00:20:00:10", segment = "lan" }`. The lab
//! services of the segment whose subnet contains `ip` hand out `ip` to `mac`. `mac` defaults to
//! the MAC of the VM's interface on that segment, read from the production domain XML when the
//! lab is planned. `segment` is only needed when several DHCP segments contain `ip`. The segment
//! needs `dhcp = true`; within a segment, MACs and IPs are unique, and no reservation may use the
//! services address. The DHCP host name is the segment's `hosts` name for `ip` (if there are
//! several: the one whose first label is the VM name, else the alphabetically first), or else
//! the VM name.
//!
//! ## `[vm.dumps]`: restore points from database dumps
//!
//! ```toml
//! [vm.dumps]
//! dir = "backups/dumps"
//! pattern = "erp-%Y%m%d-%H%M.sql"
//! manifest = "{file}.manifest.json"
//! restore = ["sqlite3 /var/lib/erp/erp.db < {dump}", "sqlite3 {as} < {dump}"]
//! restore_as = "/var/lib/erp/restored.db"
//! ```
//!
//! Written as a `[vm.dumps]` table right after its `[[vm]]`, or inline as `dumps = { ... }`.
//! Every file in `dir` whose whole name matches `pattern` is a restore point; `reclab points`
//! lists them and `--at` picks the newest one at or before the moment asked for. The chosen
//! dump (with its manifest and a `SHA256SUMS`) reaches the guest on a read-only data disk
//! attached through the hypervisor, never over a network.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `dir` | required | The dump directory, relative to the lab file's directory. |
//! | `pattern` | required | Which file names are dumps, and where their time is: strftime-like fields `%Y %m %d %j %H %M %S %s %z`, `*` for any run of characters, `%%` for `%` (see `points`). With the default `time`, it needs a full date (`%Y%m%d`, `%Y%j`) or `%s`. |
//! | `time` | `"name"` | `"name"`: the time comes from the name via the pattern. `"mtime"`: the file's modification time (then the pattern has no time fields). |
//! | `tz` | `"UTC"` | IANA time zone of the wall-clock times in names, such as `"Europe/Berlin"`; times a DST change makes ambiguous take the first occurrence, skipped times move forward. Not with `%s`, `%z` or `time = "mtime"`. |
//! | `manifest` | none | The manifest next to each dump, as a name template with `{file}` (the dump's file name): `"{file}.manifest.json"`. JSON with at least `sha256`; `bytes` and `file` are checked if present, everything else (row counts ...) is kept for the checks and the report. |
//! | `sha256sums` | none | A `sha256sum`-style file in `dir` listing the dumps, such as `"SHA256SUMS"`. With `manifest` too, both must agree with the dump. |
//! | `restore` | `[]` | Shell commands run in the guest (`/bin/sh -c`, through the guest agent) after the dump was verified there, in order; the first failure stops the restore. Placeholders: `{dump}` the dump's path in the guest, `{dir}` the mount point, `{file}` the dump's file name, `{manifest}` the manifest's path in the guest (needs `manifest`), `{as}` the value of `restore_as`. Values are shell-quoted where needed; `{{` and `}}` are literal braces. |
//! | `restore_as` | none | A second database name or path, for restoring the dump next to the database that came with the VM image so that checks can compare the two. Commands refer to it as `{as}`, and at least one must. |
//! | `format` | `"ext4"` | The data disk's file system: `"ext4"` (built without root mounts: `mke2fs` and `debugfs` lay out the files, the bytes are copied straight in at the speed of `cp`) or `"iso"` (ISO 9660 with Rock Ridge and Joliet, built with `xorriso`, for guests without ext4). |
//! | `mount` | `"/mnt/reclab"` | Where the guest mounts the data disk (read-only). |
//! | `attach` | `"boot"` | When the data disk is attached: `"boot"` (in the lab domain from the start) or `"hotplug"` (plugged in once the guest agent answers, so the guest boots with exactly production's disks). |
//! | `timeout` | `"5m"` | Bound for each restore command. |
//!
//! ## Durations
//!
//! `ttl`, `max_skew`, `ready.timeout` and `dumps.timeout` are positive durations in jiff's friendly format: `"90s"`, `"5m"`,
//! `"8h"`, `"1h30m"`, `"1 hour 30 minutes"` (ISO 8601 `"PT5M"` also works). Units above hours
//! are refused; write a week as `"168h"`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{DeserializeOwned, IgnoredAny};
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use crate::base::duration::parse_duration;
use crate::base::pattern::NamePattern;
use crate::base::template::expand;
use crate::base::template::uses;

mod checks;
mod ops;
pub use checks::{
    CheckKind, CheckSpec, CompareSide, DEFAULT_CHECK_TIMEOUT, JsonExpectation, MAX_CHECK_NAME,
};
pub use ops::{EmailSpec, MetricsSpec, MqttSpec, NotifySpec, WebhookSpec, mqtt_url, topic_problem};

/// The libvirt URI used when the lab file has no `connect`.
pub const DEFAULT_CONNECT: &str = "qemu:///system";
/// The lab lifetime used when the lab file has no `ttl`.
pub const DEFAULT_TTL: Duration = Duration::from_secs(8 * 3600);
/// The readiness timeout used when a VM has no `ready.timeout`.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// Longest lab name; derived libvirt names embed it.
pub const MAX_LAB_NAME: usize = 20;
/// Longest segment name; the lab bridge name embeds it and must fit in 15 characters.
pub const MAX_SEGMENT_NAME: usize = 8;
/// Longest VM name; the lab domain name embeds it.
pub const MAX_VM_NAME: usize = 16;
/// Highest explicit boot tier.
pub const MAX_TIER: u32 = 999;

/// A validated lab file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabSpec {
    /// The lab file as given to [`load`] or [`parse`].
    pub path: PathBuf,
    pub name: String,
    /// libvirt connection URI.
    pub connect: String,
    pub ttl: Duration,
    pub accel: Accel,
    /// Run state directory, already joined to the lab file's directory if it was relative.
    pub state_dir: Option<PathBuf>,
    /// Segments by name.
    pub segments: BTreeMap<String, SegmentSpec>,
    /// VMs in file order.
    pub vms: Vec<VmSpec>,
    /// Checks in file order (`[[check]]`); empty means "use the default checks".
    pub checks: Vec<CheckSpec>,
    /// Largest allowed time between a VM's chosen image and its chosen dump (either way).
    pub max_skew: Option<Duration>,
    /// `[notify]`: channels tried after every drill (see `spec::ops`).
    pub notify: Option<NotifySpec>,
    /// `[metrics]`: the Prometheus textfile updated after every drill.
    pub metrics: Option<MetricsSpec>,
}

/// Hardware acceleration for the lab domains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// KVM: libvirt domain type `kvm`.
    Kvm,
    /// QEMU's software emulation: libvirt domain type `qemu`.
    Tcg,
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        })
    }
}

/// One isolated lab segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentSpec {
    pub name: String,
    /// Production libvirt network or bridge names whose interfaces land here. Empty only when
    /// this is the lab's single segment, which then takes every interface.
    pub production: Vec<String>,
    /// Host names for the lab DNS.
    pub hosts: BTreeMap<String, Ipv4Addr>,
    pub services: Option<ServicesSpec>,
}

/// Lab DNS/DHCP answered at a production address inside one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicesSpec {
    /// The address the services answer at, with the segment's prefix.
    pub address: Ipv4Cidr,
    pub dns: bool,
    pub dhcp: bool,
    /// Inclusive range leased to unknown MACs.
    pub dhcp_range: Option<(Ipv4Addr, Ipv4Addr)>,
    pub domain: Option<String>,
}

/// One VM to clone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmSpec {
    pub name: String,
    pub source: VmSource,
    /// Final boot tier (1 or more), derived from `tier` and `after`.
    pub tier: u32,
    /// VM names that must be ready first.
    pub after: Vec<String>,
    pub ready: ReadySpec,
    pub dhcp: Option<DhcpReservation>,
    /// Database dumps restored into this VM, if any.
    pub dumps: Option<DumpsSpec>,
}

/// A VM's database dumps: where they are, how their times are read, how they are restored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpsSpec {
    /// The dump directory, already joined to the lab file's directory if it was relative.
    pub dir: PathBuf,
    /// Which file names are dumps (and, unless `time` is `Mtime`, their times).
    pub pattern: NamePattern,
    pub time: DumpTime,
    /// Manifest file name template with `{file}`, relative to `dir`.
    pub manifest: Option<String>,
    /// A `sha256sum`-style checksum file in `dir`.
    pub sha256sums: Option<String>,
    /// Shell commands run in the guest, with placeholders (see the lab file reference).
    pub restore: Vec<String>,
    /// A second database name or path to restore under, for `{as}`.
    pub restore_as: Option<String>,
    /// File system of the data disk that carries the dumps into the guest.
    pub format: DiskFormat,
    /// Where the guest mounts the data disk.
    pub mount: String,
    /// When the data disk is attached: in the domain from boot, or hot-plugged once the
    /// guest's agent answers.
    pub attach: DiskAttach,
    /// Bound for each restore command.
    pub timeout: Duration,
}

/// Where a dump's time comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DumpTime {
    /// From the file name, read with the pattern; wall-clock times are in `tz` (an IANA time
    /// zone name), UTC when `None`.
    Name { tz: Option<String> },
    /// The file's modification time.
    Mtime,
}

/// File system of a data disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskFormat {
    /// ext4, laid out by `mke2fs -d` and `debugfs`, the data copied in (no root mount needed).
    Ext4,
    /// ISO 9660 with Rock Ridge and Joliet (`xorriso`), for guests without ext4.
    Iso,
}

impl fmt::Display for DiskFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DiskFormat::Ext4 => "ext4",
            DiskFormat::Iso => "iso",
        })
    }
}

/// When a data disk is attached to its lab VM.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskAttach {
    /// Part of the lab domain's XML from the start (cold-plugged).
    #[default]
    Boot,
    /// Hot-plugged once the guest's agent answers: the guest boots with exactly the disks of
    /// production, for guests whose boot an extra disk would disturb.
    Hotplug,
}

impl fmt::Display for DiskAttach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DiskAttach::Boot => "boot",
            DiskAttach::Hotplug => "hotplug",
        })
    }
}

/// Where a guest mounts the data disk when `dumps.mount` is not given.
pub const DEFAULT_MOUNT: &str = "/mnt/reclab";
/// The bound for each restore command when `dumps.timeout` is not given.
pub const DEFAULT_RESTORE_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// Where a VM comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmSource {
    /// A libvirt domain and one of its external disk-only snapshots.
    Domain { domain: String, snapshot: String },
    /// A domain XML file and one image per disk target, paths joined to the lab file's directory.
    Files {
        xml: PathBuf,
        disks: BTreeMap<String, PathBuf>,
    },
}

/// When a VM counts as ready: the guest agent answers, then optionally a TCP port accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadySpec {
    pub timeout: Duration,
    pub tcp: Option<u16>,
}

/// A DHCP reservation answered by a segment's lab services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpReservation {
    pub segment: String,
    /// `None`: the MAC of the VM's interface on `segment`, taken from the production XML.
    pub mac: Option<MacAddr>,
    pub ip: Ipv4Addr,
    /// The segment's host name for `ip`, or the VM name.
    pub hostname: String,
}

impl LabSpec {
    /// VM names grouped by boot tier, lowest tier first, file order within a tier.
    pub fn boot_tiers(&self) -> Vec<Vec<String>> {
        let tiers: BTreeSet<u32> = self.vms.iter().map(|vm| vm.tier).collect();
        tiers
            .into_iter()
            .map(|tier| {
                self.vms
                    .iter()
                    .filter(|vm| vm.tier == tier)
                    .map(|vm| vm.name.clone())
                    .collect()
            })
            .collect()
    }

    /// The VM with this name.
    pub fn vm(&self, name: &str) -> Option<&VmSpec> {
        self.vms.iter().find(|vm| vm.name == name)
    }

    /// The segment that takes interfaces attached to this production network or bridge.
    pub fn segment_for_production(&self, network_or_bridge: &str) -> Option<&SegmentSpec> {
        if self.segments.len() == 1 {
            let only = self.segments.values().next()?;
            if only.production.is_empty() {
                return Some(only);
            }
        }
        self.segments
            .values()
            .find(|segment| segment.production.iter().any(|p| p == network_or_bridge))
    }

    /// The DHCP reservations a segment's lab services answer, with their VMs.
    pub fn dhcp_reservations(&self, segment: &str) -> Vec<(&VmSpec, &DhcpReservation)> {
        self.vms
            .iter()
            .filter_map(|vm| vm.dhcp.as_ref().map(|dhcp| (vm, dhcp)))
            .filter(|(_, dhcp)| dhcp.segment == segment)
            .collect()
    }
}

/// An IPv4 address with its prefix length, such as `10.20.0.1/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Cidr {
    pub address: Ipv4Addr,
    pub prefix: u8,
}

impl Ipv4Cidr {
    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.mask())
    }

    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.address) & self.mask())
    }

    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.address) | !self.mask())
    }

    /// Whether `ip` is in this subnet (network and broadcast addresses included).
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.network())
    }

    fn mask(&self) -> u32 {
        match self.prefix {
            0 => 0,
            p => u32::MAX << (32 - u32::from(p.min(32))),
        }
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

/// An Ethernet MAC address, displayed as `52:54:00:20:00:10`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MacAddr({self})")
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl FromStr for MacAddr {
    type Err = ();

    /// Reads six colon-separated pairs of hex digits, in either case.
    fn from_str(text: &str) -> Result<Self, ()> {
        let mut bytes = [0u8; 6];
        let mut parts = text.split(':');
        for byte in &mut bytes {
            let part = parts.next().ok_or(())?;
            if part.len() != 2 {
                return Err(());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| ())?;
        }
        match parts.next() {
            Some(_) => Err(()),
            None => Ok(MacAddr(bytes)),
        }
    }
}

/// Everything wrong with a lab file; displays one problem per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    pub problems: Vec<Problem>,
}

/// One problem in a lab file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    /// 1-based line and column (in characters), when the problem has a place in the file.
    pub location: Option<(usize, usize)>,
    /// Field path such as `vm[1].after[0]`; empty for problems with the file as a whole.
    pub field: String,
    /// What is wrong and what to do, lowercase, no trailing period.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((line, column)) = self.location {
            write!(f, ":{line}:{column}")?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecError {}

/// Reads and validates a lab file.
pub fn load(path: &Path) -> Result<LabSpec, SpecError> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, path),
        Err(err) => Err(SpecError {
            problems: vec![Problem {
                file: path.to_path_buf(),
                location: None,
                field: String::new(),
                message: if err.kind() == std::io::ErrorKind::InvalidData {
                    "the lab file is not UTF-8 text; save it as UTF-8".to_string()
                } else {
                    format!("cannot read the lab file: {err}; check the path and its permissions")
                },
            }],
        }),
    }
}

/// Validates lab file text; `path` names the file in messages and anchors relative paths.
pub fn parse(text: &str, path: &Path) -> Result<LabSpec, SpecError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut report = Report {
        file: path,
        text,
        problems: Vec::new(),
    };
    let lab = decode(text, &mut report).and_then(|wire| validate(wire, path, &mut report));
    match lab {
        Some(lab) if report.problems.is_empty() => Ok(lab),
        _ => Err(report.finish()),
    }
}

// ---------------------------------------------------------------------------------------------
// Wire types: the file as written. Every field is optional so that missing keys get reclab's
// own messages; `Spanned` keeps positions for messages about values.

type Text = Spanned<String>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a lab file")]
struct WireTop {
    name: Option<Text>,
    connect: Option<Text>,
    ttl: Option<Text>,
    accel: Option<Text>,
    state_dir: Option<Text>,
    max_skew: Option<Text>,
    // Decoded piece by piece in `decode`, so that problems in several VMs show together.
    #[serde(rename = "segment")]
    _segment: Option<BTreeMap<String, IgnoredAny>>,
    #[serde(rename = "vm")]
    _vm: Option<Vec<IgnoredAny>>,
    #[serde(rename = "check")]
    _check: Option<Vec<IgnoredAny>>,
    #[serde(rename = "notify")]
    _notify: Option<IgnoredAny>,
    #[serde(rename = "metrics")]
    _metrics: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a segment table")]
struct WireSegment {
    production: Option<Vec<Text>>,
    hosts: Option<BTreeMap<Text, Text>>,
    services: Option<Spanned<WireServices>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a services table")]
struct WireServices {
    address: Option<Text>,
    dns: Option<bool>,
    dhcp: Option<bool>,
    dhcp_range: Option<Spanned<Vec<Text>>>,
    domain: Option<Text>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a vm table")]
struct WireVm {
    name: Option<Text>,
    from: Option<Spanned<WireFrom>>,
    tier: Option<Spanned<i64>>,
    after: Option<Vec<Text>>,
    ready: Option<WireReady>,
    dhcp: Option<Spanned<WireDhcp>>,
    dumps: Option<Spanned<WireDumps>>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a dumps table like { dir = \"backups/dumps\", pattern = \"erp-%Y%m%d-%H%M.sql\" }"
)]
struct WireDumps {
    dir: Option<Text>,
    pattern: Option<Text>,
    time: Option<Text>,
    tz: Option<Text>,
    manifest: Option<Text>,
    sha256sums: Option<Text>,
    restore: Option<Vec<Text>>,
    restore_as: Option<Text>,
    format: Option<Text>,
    mount: Option<Text>,
    attach: Option<Text>,
    timeout: Option<Text>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a source table like { domain = \"prod-db\", snapshot = \"nightly\" }"
)]
struct WireFrom {
    domain: Option<Text>,
    snapshot: Option<Text>,
    xml: Option<Text>,
    disks: Option<Spanned<BTreeMap<Text, Text>>>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a ready table like { timeout = \"5m\", tcp = 80 }"
)]
struct WireReady {
    timeout: Option<Text>,
    tcp: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a dhcp table like { ip = \"10.20.0.10\" }"
)]
struct WireDhcp {
    ip: Option<Text>,
    mac: Option<Text>,
    segment: Option<Text>,
}

struct WireLab {
    top: WireTop,
    segments: Vec<(Text, Spanned<WireSegment>)>,
    vms: Vec<Spanned<WireVm>>,
    checks: Vec<Spanned<checks::WireCheck>>,
    notify: Option<Spanned<ops::WireNotify>>,
    metrics: Option<Spanned<ops::WireMetrics>>,
}

// ---------------------------------------------------------------------------------------------
// Problem collection.

struct Report<'a> {
    file: &'a Path,
    text: &'a str,
    problems: Vec<Problem>,
}

impl Report<'_> {
    fn at(&mut self, span: Range<usize>, field: impl Into<String>, message: impl Into<String>) {
        let location = Some(line_column(self.text, span.start));
        self.push(location, field.into(), message.into());
    }

    fn push(&mut self, location: Option<(usize, usize)>, field: String, message: String) {
        self.problems.push(Problem {
            file: self.file.to_path_buf(),
            location,
            field,
            message,
        });
    }

    /// Reports a TOML syntax or decoding error; `root` locates the field it is about.
    fn toml_error(
        &mut self,
        err: &toml::de::Error,
        root: &Spanned<DeValue>,
        fallback: Range<usize>,
    ) {
        let span = err.span().unwrap_or(fallback);
        let field = field_at(root, span.start);
        let key = self.text.get(span.clone()).unwrap_or_default().trim();
        let message = tidy_toml_message(err.message(), &field, key);
        self.at(span, field, message);
    }

    fn finish(mut self) -> SpecError {
        // Problems read top to bottom like compiler output; the order within a place is kept.
        self.problems
            .sort_by_key(|p| p.location.map_or((usize::MAX, usize::MAX), |l| l));
        SpecError {
            problems: self.problems,
        }
    }
}

/// 1-based line and character column of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// Makes serde/toml messages fit reclab's style: one line, plain words, a hint where useful.
fn tidy_toml_message(message: &str, field: &str, key: &str) -> String {
    let mut message = message
        .trim()
        .trim_end_matches('.')
        .replace('\n', "; ")
        .replace("invalid type: map", "invalid type: table")
        .replace("invalid type: sequence", "invalid type: array")
        .replace("expected a map", "expected a table")
        .replace("expected a sequence", "expected an array")
        .replace("expected i64", "expected an integer");
    if let Some(rest) = message.strip_prefix("unknown field") {
        message = format!("unknown key{rest}; remove it or fix its spelling");
    }
    if message == "duplicate key" {
        message =
            format!("duplicate key {key:?}; a key may appear only once in a table, remove one");
    }
    if (field == "ttl"
        || field == "max_skew"
        || field.ends_with(".timeout")
        || field.ends_with(".max_age"))
        && message.ends_with("expected a string")
    {
        message.push_str("; write durations as strings, like \"8h\" or \"5m\"");
    }
    if field == "vm" && message.contains("expected an array") {
        message.push_str("; write each vm as its own [[vm]] table");
    }
    if field == "check" && message.contains("expected an array") {
        message.push_str("; write each check as its own [[check]] table");
    }
    message
}

/// The field path (`vm[1].ready.tcp`) of the innermost value containing `offset`.
///
/// Tables written as `[header]` sections are spanned by their header only, so a value's reach
/// is its own span joined with the spans of everything inside it (keys included). An offset on
/// a key (such as an unknown key) therefore names the table holding that key.
fn field_at(root: &Spanned<DeValue>, offset: usize) -> String {
    let mut path = String::new();
    let mut value = root;
    'descend: loop {
        match value.get_ref() {
            DeValue::Table(table) => {
                for (key, child) in table.iter() {
                    if reach(child).contains(&offset) {
                        path_push_key(&mut path, key.get_ref());
                        value = child;
                        continue 'descend;
                    }
                }
            }
            DeValue::Array(array) => {
                for (i, child) in array.iter().enumerate() {
                    if reach(child).contains(&offset) {
                        path.push_str(&format!("[{i}]"));
                        value = child;
                        continue 'descend;
                    }
                }
            }
            _ => {}
        }
        return path;
    }
}

fn reach(value: &Spanned<DeValue>) -> Range<usize> {
    let join = |a: Range<usize>, b: Range<usize>| a.start.min(b.start)..a.end.max(b.end);
    match value.get_ref() {
        DeValue::Table(table) => table.iter().fold(value.span(), |acc, (key, child)| {
            join(join(acc, key.span()), reach(child))
        }),
        DeValue::Array(array) => array
            .iter()
            .fold(value.span(), |acc, child| join(acc, reach(child))),
        _ => value.span(),
    }
}

fn path_push_key(path: &mut String, key: &str) {
    if !path.is_empty() {
        path.push('.');
    }
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        path.push_str(key);
    } else {
        path.push_str(&format!("{key:?}"));
    }
}

fn join_key(parent: &str, key: &str) -> String {
    let mut path = parent.to_string();
    path_push_key(&mut path, key);
    path
}

// ---------------------------------------------------------------------------------------------
// Decoding.

fn decode(text: &str, report: &mut Report) -> Option<WireLab> {
    let (root, syntax_errors) = DeTable::parse_recoverable(text);
    let span = root.span();
    let root = Spanned::new(span.clone(), DeValue::Table(root.into_inner()));
    if !syntax_errors.is_empty() {
        for err in &syntax_errors {
            report.toml_error(err, &root, 0..0);
        }
        return None;
    }
    let DeValue::Table(table) = root.get_ref() else {
        unreachable!("a document is a table")
    };

    let top = decode_piece::<WireTop>(&root, &root, report);
    let mut segments = Vec::new();
    let mut vms = Vec::new();
    let mut checks = Vec::new();
    let mut notify = None;
    let mut metrics = None;
    for (key, value) in table.iter() {
        match (key.get_ref().as_ref(), value.get_ref()) {
            ("segment", DeValue::Table(entries)) => {
                for (name, segment) in entries.iter() {
                    if let Some(wire) = decode_piece::<WireSegment>(&root, segment, report) {
                        let name = Spanned::new(name.span(), name.get_ref().to_string());
                        segments.push((name, Spanned::new(segment.span(), wire)));
                    }
                }
            }
            ("vm", DeValue::Array(entries)) => {
                for vm in entries.iter() {
                    if let Some(wire) = decode_piece::<WireVm>(&root, vm, report) {
                        vms.push(Spanned::new(vm.span(), wire));
                    }
                }
            }
            ("check", DeValue::Array(entries)) => {
                for check in entries.iter() {
                    if let Some(wire) = decode_piece::<checks::WireCheck>(&root, check, report) {
                        checks.push(Spanned::new(check.span(), wire));
                    }
                }
            }
            ("notify", _) => {
                notify = decode_piece::<ops::WireNotify>(&root, value, report)
                    .map(|wire| Spanned::new(value.span(), wire));
            }
            ("metrics", _) => {
                metrics = decode_piece::<ops::WireMetrics>(&root, value, report)
                    .map(|wire| Spanned::new(value.span(), wire));
            }
            _ => {}
        }
    }
    if !report.problems.is_empty() {
        return None;
    }
    // Segments come in key order from the parser; file order reads better in messages.
    segments.sort_by_key(|(name, _)| name.span().start);
    Some(WireLab {
        top: top?,
        segments,
        vms,
        checks,
        notify,
        metrics,
    })
}

fn decode_piece<T: DeserializeOwned>(
    root: &Spanned<DeValue>,
    piece: &Spanned<DeValue>,
    report: &mut Report,
) -> Option<T> {
    let deserializer = ValueDeserializer::from(piece.clone());
    match T::deserialize(deserializer) {
        Ok(value) => Some(value),
        Err(err) => {
            report.toml_error(&err, root, piece.span());
            None
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Validation.

const LAB_NAME_RULE: &str = "use 1 to 20 characters: a lowercase letter, then lowercase letters, digits or '-' (the lab name is part of every libvirt domain, network and volume name reclab derives)";
const SEGMENT_NAME_RULE: &str = "use 1 to 8 characters: a lowercase letter, then lowercase letters or digits (the segment name goes into the lab bridge name, and Linux limits interface names to 15 characters)";
const VM_NAME_RULE: &str = "use 1 to 16 characters: a lowercase letter, then lowercase letters, digits or '-' (the vm name is part of the lab domain name)";

fn valid_name(name: &str, max: usize, dash: bool) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z'))
        && name.len() <= max
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || (dash && c == '-'))
}

/// A DNS name: dot-separated labels of letters, digits and inner '-', at most 253 characters.
fn valid_dns_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

fn parse_cidr(text: &str) -> Result<Ipv4Cidr, String> {
    let Some((address, prefix)) = text.split_once('/') else {
        return Err(format!(
            "{text:?} has no prefix length; write the address in CIDR form, like \"10.20.0.1/24\""
        ));
    };
    let address: Ipv4Addr = address.parse().map_err(|_| {
        format!("{address:?} is not an IPv4 address; write the address in CIDR form, like \"10.20.0.1/24\"")
    })?;
    let prefix: u8 = match prefix.parse() {
        Ok(p @ 1..=30) => p,
        _ => {
            return Err(format!(
                "prefix length {prefix:?} is not usable; use 1 to 30 so the subnet has host addresses"
            ));
        }
    };
    let cidr = Ipv4Cidr { address, prefix };
    if address == cidr.network() {
        return Err(format!(
            "{address} is the network address of {}/{prefix}; give the host address the lab services answer at (usually the production gateway or DNS server)",
            cidr.network()
        ));
    }
    if address == cidr.broadcast() {
        return Err(format!(
            "{address} is the broadcast address of {}/{prefix}; give the host address the lab services answer at (usually the production gateway or DNS server)",
            cidr.network()
        ));
    }
    Ok(cidr)
}

fn parse_ipv4(report: &mut Report, value: &Text, field: &str) -> Option<Ipv4Addr> {
    match value.get_ref().trim().parse() {
        Ok(ip) => Some(ip),
        Err(_) => {
            report.at(
                value.span(),
                field,
                format!(
                    "{:?} is not an IPv4 address; write it like \"10.20.0.10\"",
                    value.get_ref()
                ),
            );
            None
        }
    }
}

fn duration_field(report: &mut Report, value: &Text, field: &str) -> Option<Duration> {
    match parse_duration(value.get_ref()) {
        Ok(duration) => Some(duration),
        Err(err) => {
            report.at(value.span(), field, err.to_string());
            None
        }
    }
}

/// A nonempty string without whitespace: libvirt object and bridge names, paths' components.
fn plain_name(report: &mut Report, value: &Text, field: &str, what: &str) -> Option<String> {
    let text = value.get_ref();
    if text.trim().is_empty() {
        report.at(
            value.span(),
            field,
            format!("{what} is empty; give the name"),
        );
        None
    } else if text.chars().any(char::is_whitespace) {
        report.at(
            value.span(),
            field,
            format!(
                "{what} {text:?} contains whitespace; libvirt names have none, check for a typo"
            ),
        );
        None
    } else {
        Some(text.clone())
    }
}

fn list(names: impl IntoIterator<Item = impl AsRef<str>>) -> String {
    let names: Vec<String> = names.into_iter().map(|n| n.as_ref().to_string()).collect();
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

/// A close spelling among `known`, as a "did you mean" hint.
fn suggestion<'a>(wrong: &str, known: impl IntoIterator<Item = &'a str>) -> String {
    known
        .into_iter()
        .map(|k| (edit_distance(wrong, k), k))
        .filter(|(d, k)| *d <= 2 && *d < k.len())
        .min()
        .map(|(_, k)| format!(" (did you mean \"{k}\"?)"))
        .unwrap_or_default()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (diagonal + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            diagonal = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

fn validate(wire: WireLab, path: &Path, report: &mut Report) -> Option<LabSpec> {
    let base = path.parent().unwrap_or(Path::new(""));
    let top = &wire.top;

    let name = match &top.name {
        None => {
            report.push(
                None,
                "name".into(),
                "missing lab name; add a line like name = \"erp\" at the top of the lab file"
                    .into(),
            );
            None
        }
        Some(name) if !valid_name(name.get_ref(), MAX_LAB_NAME, true) => {
            report.at(
                name.span(),
                "name",
                format!(
                    "{:?} is not a valid lab name; {LAB_NAME_RULE}",
                    name.get_ref()
                ),
            );
            None
        }
        Some(name) => Some(name.get_ref().clone()),
    };

    let connect = match &top.connect {
        None => Some(DEFAULT_CONNECT.to_string()),
        Some(uri) => {
            let text = uri.get_ref();
            if text.trim().is_empty() || text.chars().any(char::is_whitespace) {
                report.at(
                    uri.span(),
                    "connect",
                    format!(
                        "{text:?} is not a libvirt URI; write one like \"qemu:///system\" or \"qemu+ssh://root@hv1/system\", or drop the key for the default"
                    ),
                );
                None
            } else {
                Some(text.clone())
            }
        }
    };

    let ttl = match &top.ttl {
        None => Some(DEFAULT_TTL),
        Some(ttl) => duration_field(report, ttl, "ttl"),
    };

    let accel = match &top.accel {
        None => Some(Accel::Kvm),
        Some(accel) => match accel.get_ref().as_str() {
            "kvm" => Some(Accel::Kvm),
            "tcg" => Some(Accel::Tcg),
            other => {
                report.at(
                    accel.span(),
                    "accel",
                    format!(
                        "unknown accelerator {other:?}; use \"kvm\" (hardware virtualization) or \"tcg\" (software emulation, where kvm is unavailable)"
                    ),
                );
                None
            }
        },
    };

    let state_dir = match &top.state_dir {
        None => None,
        Some(dir) if dir.get_ref().trim().is_empty() => {
            report.at(
                dir.span(),
                "state_dir",
                "state directory is empty; give a directory or drop the key to use --state-dir",
            );
            None
        }
        Some(dir) => Some(base.join(dir.get_ref())),
    };

    let max_skew = match &top.max_skew {
        None => Some(None),
        Some(skew) => duration_field(report, skew, "max_skew").map(Some),
    };

    let (segments, segments_ok) = validate_segments(&wire.segments, report);
    let vm_names = validate_vm_names(&wire, report);
    let mut vms = Vec::new();
    for (index, vm) in wire.vms.iter().enumerate() {
        vms.push(validate_vm(index, vm, base, &segments, segments_ok, report));
    }
    check_reservations(&wire, &vms, report);
    let tiers = derive_tiers(&wire, &vm_names, report);
    let checks = checks::validate_checks(&wire.checks, &vm_names, report);
    let notify = wire
        .notify
        .as_ref()
        .map(|n| ops::validate_notify(n, base, report));
    let metrics = wire
        .metrics
        .as_ref()
        .map(|m| ops::validate_metrics(m, base, report));

    if wire.vms.is_empty() {
        report.push(
            None,
            "vm".into(),
            "the lab has no vms; add at least one [[vm]] table with a name and a from".into(),
        );
    }

    if !report.problems.is_empty() {
        return None;
    }
    let tiers = tiers?;
    let vms = vms
        .into_iter()
        .zip(wire.vms.iter())
        .zip(tiers)
        .map(|((vm, wire_vm), tier)| {
            let vm = vm?;
            let after = wire_vm
                .get_ref()
                .after
                .iter()
                .flatten()
                .map(|a| a.get_ref().clone())
                .collect();
            Some(VmSpec {
                name: vm.name,
                source: vm.source,
                tier,
                after,
                ready: vm.ready,
                dhcp: vm.dhcp,
                dumps: vm.dumps,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(LabSpec {
        path: path.to_path_buf(),
        name: name?,
        connect: connect?,
        ttl: ttl?,
        accel: accel?,
        state_dir,
        segments: segments.into_iter().map(|s| (s.name.clone(), s)).collect(),
        vms,
        checks: checks?,
        max_skew: max_skew?,
        notify: notify.map(|n| n.expect("no problems, so notify is valid")),
        metrics: metrics.map(|m| m.expect("no problems, so metrics is valid")),
    })
}

/// Checks the segments; the flag says whether all of them are valid.
fn validate_segments(
    wire: &[(Text, Spanned<WireSegment>)],
    report: &mut Report,
) -> (Vec<SegmentSpec>, bool) {
    let mut all_ok = true;
    let several = wire.len() > 1;
    // Production name -> (segment, field) of its first use.
    let mut owners: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut segments = Vec::new();
    for (name, segment) in wire {
        let field = join_key("segment", name.get_ref());
        let mut ok = true;
        if !valid_name(name.get_ref(), MAX_SEGMENT_NAME, false) {
            report.at(
                name.span(),
                &field,
                format!(
                    "{:?} is not a valid segment name; {SEGMENT_NAME_RULE}",
                    name.get_ref()
                ),
            );
            ok = false;
        }
        let wire_segment = segment.get_ref();

        let mut production = Vec::new();
        match &wire_segment.production {
            None if several => {
                report.at(
                    name.span(),
                    format!("{field}.production"),
                    "missing production networks; with more than one segment, list the production libvirt networks or bridges whose interfaces land here, like production = [\"prod\"]",
                );
                ok = false;
            }
            Some(list) if list.is_empty() && several => {
                report.at(
                    segment.span(),
                    format!("{field}.production"),
                    "empty production list; with more than one segment, list the production libvirt networks or bridges whose interfaces land here, like production = [\"prod\"]",
                );
                ok = false;
            }
            _ => {}
        }
        for (i, entry) in wire_segment.production.iter().flatten().enumerate() {
            let entry_field = format!("{field}.production[{i}]");
            let Some(network) = plain_name(report, entry, &entry_field, "production network")
            else {
                ok = false;
                continue;
            };
            if let Some((owner, owner_field)) = owners.get(&network) {
                let message = if *owner == *name.get_ref() {
                    format!(
                        "production network {network:?} is listed twice (also at {owner_field}); list it once"
                    )
                } else {
                    format!(
                        "production network {network:?} is already mapped to segment {owner:?} ({owner_field}); an interface can land in only one segment, so remove one of them"
                    )
                };
                report.at(entry.span(), entry_field, message);
                ok = false;
                continue;
            }
            owners.insert(network.clone(), (name.get_ref().clone(), entry_field));
            production.push(network);
        }

        let services = match &wire_segment.services {
            None => None,
            Some(services) => {
                let result = validate_services(services, &format!("{field}.services"), report);
                ok &= result.is_some();
                result
            }
        };

        let mut hosts = BTreeMap::new();
        for (host, address) in wire_segment.hosts.iter().flatten() {
            let host_field = join_key(&format!("{field}.hosts"), host.get_ref());
            if !valid_dns_name(host.get_ref()) {
                report.at(
                    host.span(),
                    &host_field,
                    format!(
                        "{:?} is not a valid host name; use letters, digits and '-' in dot-separated labels, like \"db.prod.example\"",
                        host.get_ref()
                    ),
                );
                ok = false;
            }
            let Some(ip) = parse_ipv4(report, address, &host_field) else {
                ok = false;
                continue;
            };
            if let Some(services) = &services
                && !services.address.contains(ip)
            {
                report.at(
                    address.span(),
                    &host_field,
                    format!(
                        "{ip} is outside the services subnet {}/{}; fix the address, or the services prefix if the production subnet is larger",
                        services.address.network(),
                        services.address.prefix
                    ),
                );
                ok = false;
            }
            hosts.insert(host.get_ref().trim_end_matches('.').to_string(), ip);
        }

        // Invalid segments still go into the list so that VM checks can name them.
        all_ok &= ok;
        segments.push(SegmentSpec {
            name: name.get_ref().clone(),
            production,
            hosts,
            services,
        });
    }
    (segments, all_ok)
}

fn validate_services(
    wire: &Spanned<WireServices>,
    field: &str,
    report: &mut Report,
) -> Option<ServicesSpec> {
    let services = wire.get_ref();
    let dns = services.dns.unwrap_or(true);
    let dhcp = services.dhcp.unwrap_or(false);
    let mut ok = true;
    if !dns && !dhcp {
        report.at(
            wire.span(),
            field,
            "services with neither dns nor dhcp do nothing; set dns = true or dhcp = true, or remove the services table",
        );
        ok = false;
    }
    let address = match &services.address {
        None => {
            report.at(
                wire.span(),
                format!("{field}.address"),
                "missing services address; give the production gateway or DNS address with its prefix, like address = \"10.20.0.1/24\"",
            );
            None
        }
        Some(text) => match parse_cidr(text.get_ref().trim()) {
            Ok(cidr) => Some(cidr),
            Err(message) => {
                report.at(text.span(), format!("{field}.address"), message);
                None
            }
        },
    };
    let domain = match &services.domain {
        None => None,
        Some(domain) if !valid_dns_name(domain.get_ref()) => {
            report.at(
                domain.span(),
                format!("{field}.domain"),
                format!(
                    "{:?} is not a valid domain name; use letters, digits and '-' in dot-separated labels, like \"prod.example\"",
                    domain.get_ref()
                ),
            );
            ok = false;
            None
        }
        Some(domain) => Some(domain.get_ref().trim_end_matches('.').to_string()),
    };
    let mut dhcp_range = None;
    if let Some(range) = &services.dhcp_range {
        let range_field = format!("{field}.dhcp_range");
        if !dhcp {
            report.at(
                range.span(),
                &range_field,
                "a dhcp range needs dhcp = true in the same services table; enable dhcp or remove the range",
            );
            ok = false;
        }
        match range.get_ref().as_slice() {
            [start, end] => {
                let start_ip = parse_ipv4(report, start, &format!("{range_field}[0]"));
                let end_ip = parse_ipv4(report, end, &format!("{range_field}[1]"));
                match (start_ip, end_ip) {
                    (Some(start_ip), Some(end_ip)) => {
                        if u32::from(start_ip) > u32::from(end_ip) {
                            report.at(
                                range.span(),
                                &range_field,
                                format!(
                                    "range starts at {start_ip} after it ends at {end_ip}; put the lower address first"
                                ),
                            );
                            ok = false;
                        }
                        if let Some(address) = address {
                            for (i, (ip, at)) in
                                [(start_ip, start), (end_ip, end)].into_iter().enumerate()
                            {
                                if !address.contains(ip)
                                    || ip == address.network()
                                    || ip == address.broadcast()
                                {
                                    report.at(
                                        at.span(),
                                        format!("{range_field}[{i}]"),
                                        format!(
                                            "{ip} is not a host address of the services subnet {}/{}; keep the range inside it",
                                            address.network(),
                                            address.prefix
                                        ),
                                    );
                                    ok = false;
                                }
                            }
                            let (low, high) = (u32::from(start_ip), u32::from(end_ip));
                            if (low..=high).contains(&u32::from(address.address)) {
                                report.at(
                                    range.span(),
                                    &range_field,
                                    format!(
                                        "the range includes the services address {}; start the range above it or end it below",
                                        address.address
                                    ),
                                );
                                ok = false;
                            }
                        }
                        dhcp_range = Some((start_ip, end_ip));
                    }
                    _ => ok = false,
                }
            }
            _ => {
                report.at(
                    range.span(),
                    &range_field,
                    "a dhcp range is two addresses, like dhcp_range = [\"10.20.0.100\", \"10.20.0.199\"]",
                );
                ok = false;
            }
        }
    }
    let address = address?;
    ok.then_some(ServicesSpec {
        address,
        dns,
        dhcp,
        dhcp_range,
        domain,
    })
}

/// Checks VM names and their uniqueness; returns the names by index (`None` if invalid).
fn validate_vm_names(wire: &WireLab, report: &mut Report) -> Vec<Option<String>> {
    let mut first_use: BTreeMap<&str, usize> = BTreeMap::new();
    let mut names = Vec::new();
    for (index, vm) in wire.vms.iter().enumerate() {
        let field = format!("vm[{index}].name");
        let name = match &vm.get_ref().name {
            None => {
                report.at(
                    vm.span(),
                    field,
                    "missing vm name; add a line like name = \"db\" to this [[vm]] table",
                );
                None
            }
            Some(name) if !valid_name(name.get_ref(), MAX_VM_NAME, true) => {
                report.at(
                    name.span(),
                    field,
                    format!(
                        "{:?} is not a valid vm name; {VM_NAME_RULE}",
                        name.get_ref()
                    ),
                );
                None
            }
            Some(name) => {
                if let Some(first) = first_use.get(name.get_ref().as_str()) {
                    report.at(
                        name.span(),
                        field,
                        format!(
                            "duplicate vm name {:?} (also vm[{first}]); give every vm a unique name",
                            name.get_ref()
                        ),
                    );
                } else {
                    first_use.insert(name.get_ref(), index);
                }
                Some(name.get_ref().clone())
            }
        };
        names.push(name);
    }
    names
}

/// A VM without its boot tier and `after` list, which need the whole lab.
struct PartialVm {
    name: String,
    source: VmSource,
    ready: ReadySpec,
    dhcp: Option<DhcpReservation>,
    dumps: Option<DumpsSpec>,
}

fn validate_vm(
    index: usize,
    wire: &Spanned<WireVm>,
    base: &Path,
    segments: &[SegmentSpec],
    segments_ok: bool,
    report: &mut Report,
) -> Option<PartialVm> {
    let vm = wire.get_ref();
    let field = format!("vm[{index}]");
    let name = vm.name.as_ref().map(|n| n.get_ref().clone());

    let source = match &vm.from {
        None => {
            report.at(
                wire.span(),
                format!("{field}.from"),
                "missing source; add from = { domain = \"prod-db\", snapshot = \"nightly\" } or from = { xml = \"db.xml\", disks = { vda = \"db.qcow2\" } }",
            );
            None
        }
        Some(from) => validate_source(from, &format!("{field}.from"), base, report),
    };

    let ready = match &vm.ready {
        None => Some(ReadySpec {
            timeout: DEFAULT_READY_TIMEOUT,
            tcp: None,
        }),
        Some(ready) => {
            let timeout = match &ready.timeout {
                None => Some(DEFAULT_READY_TIMEOUT),
                Some(t) => duration_field(report, t, &format!("{field}.ready.timeout")),
            };
            let tcp = match &ready.tcp {
                None => Some(None),
                Some(port) => match u16::try_from(*port.get_ref()) {
                    Ok(p) if p > 0 => Some(Some(p)),
                    _ => {
                        report.at(
                            port.span(),
                            format!("{field}.ready.tcp"),
                            format!(
                                "tcp port {} is out of range; use a port from 1 to 65535",
                                port.get_ref()
                            ),
                        );
                        None
                    }
                },
            };
            Some(ReadySpec {
                timeout: timeout?,
                tcp: tcp?,
            })
        }
    };

    if let Some(tier) = &vm.tier
        && !(1..=i64::from(MAX_TIER)).contains(tier.get_ref())
    {
        report.at(
            tier.span(),
            format!("{field}.tier"),
            format!(
                "tier {} is out of range; use 1 to {MAX_TIER} (tier 1 boots first)",
                tier.get_ref()
            ),
        );
    }

    let dhcp = match &vm.dhcp {
        None => Some(None),
        Some(dhcp) => validate_dhcp(
            dhcp,
            &format!("{field}.dhcp"),
            name.as_deref(),
            segments_ok.then_some(segments),
            report,
        )
        .map(Some),
    };

    let dumps = match &vm.dumps {
        None => Some(None),
        Some(dumps) => validate_dumps(dumps, &format!("{field}.dumps"), base, report).map(Some),
    };

    Some(PartialVm {
        name: name?,
        source: source?,
        ready: ready?,
        dhcp: dhcp?,
        dumps: dumps?,
    })
}

fn validate_source(
    wire: &Spanned<WireFrom>,
    field: &str,
    base: &Path,
    report: &mut Report,
) -> Option<VmSource> {
    let from = wire.get_ref();
    let domain_form = from.domain.is_some() || from.snapshot.is_some();
    let files_form = from.xml.is_some() || from.disks.is_some();
    if domain_form && files_form {
        report.at(
            wire.span(),
            field,
            "source mixes both forms; use either { domain, snapshot } for a libvirt domain or { xml, disks } for backup files, not both",
        );
        return None;
    }
    if !domain_form && !files_form {
        report.at(
            wire.span(),
            field,
            "empty source; use { domain = \"prod-db\", snapshot = \"nightly\" } or { xml = \"db.xml\", disks = { vda = \"db.qcow2\" } }",
        );
        return None;
    }
    if domain_form {
        let domain = match &from.domain {
            None => {
                report.at(
                    wire.span(),
                    format!("{field}.domain"),
                    "missing domain; name the production libvirt domain whose snapshot the lab clones",
                );
                None
            }
            Some(d) => plain_name(report, d, &format!("{field}.domain"), "domain name"),
        };
        let snapshot = match &from.snapshot {
            None => {
                report.at(
                    wire.span(),
                    format!("{field}.snapshot"),
                    "missing snapshot; name the external disk-only snapshot whose frozen backing files the lab clones (virsh snapshot-list DOMAIN lists them)",
                );
                None
            }
            Some(s) => plain_name(report, s, &format!("{field}.snapshot"), "snapshot name"),
        };
        return Some(VmSource::Domain {
            domain: domain?,
            snapshot: snapshot?,
        });
    }

    let xml = match &from.xml {
        None => {
            report.at(
                wire.span(),
                format!("{field}.xml"),
                "missing xml; give the domain XML file that goes with the disks, like xml = \"backups/db.xml\"",
            );
            None
        }
        Some(xml) if xml.get_ref().trim().is_empty() => {
            report.at(
                xml.span(),
                format!("{field}.xml"),
                "empty xml path; give the domain XML file, like xml = \"backups/db.xml\"",
            );
            None
        }
        Some(xml) => Some(base.join(xml.get_ref())),
    };
    let disks = match &from.disks {
        None => {
            report.at(
                wire.span(),
                format!("{field}.disks"),
                "missing disks; map each disk target to its image, like disks = { vda = \"backups/db.qcow2\" }",
            );
            None
        }
        Some(disks) if disks.get_ref().is_empty() => {
            report.at(
                disks.span(),
                format!("{field}.disks"),
                "no disks; map each disk target to its image, like disks = { vda = \"backups/db.qcow2\" }",
            );
            None
        }
        Some(disks) => {
            let mut ok = true;
            let mut map = BTreeMap::new();
            for (target, image) in disks.get_ref() {
                let disk_field = join_key(&format!("{field}.disks"), target.get_ref());
                let valid_target = {
                    let mut chars = target.get_ref().chars();
                    matches!(chars.next(), Some('a'..='z'))
                        && target.get_ref().len() <= 16
                        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
                };
                if !valid_target {
                    report.at(
                        target.span(),
                        &disk_field,
                        format!(
                            "{:?} is not a disk target; use the target dev from the domain XML, like vda or sdb",
                            target.get_ref()
                        ),
                    );
                    ok = false;
                }
                if image.get_ref().trim().is_empty() {
                    report.at(
                        image.span(),
                        &disk_field,
                        "empty image path; give the disk image file, like \"backups/db.qcow2\"",
                    );
                    ok = false;
                }
                map.insert(target.get_ref().clone(), base.join(image.get_ref()));
            }
            ok.then_some(map)
        }
    };
    Some(VmSource::Files {
        xml: xml?,
        disks: disks?,
    })
}

fn validate_dhcp(
    wire: &Spanned<WireDhcp>,
    field: &str,
    vm_name: Option<&str>,
    segments: Option<&[SegmentSpec]>,
    report: &mut Report,
) -> Option<DhcpReservation> {
    let dhcp = wire.get_ref();
    let mac = match &dhcp.mac {
        None => Some(None),
        Some(text) => match text.get_ref().trim().parse::<MacAddr>() {
            Ok(mac) if mac.0[0] & 1 == 1 || mac.0 == [0; 6] => {
                report.at(
                    text.span(),
                    format!("{field}.mac"),
                    format!(
                        "{mac} is not a unicast MAC address; copy the interface's MAC from the production domain XML"
                    ),
                );
                None
            }
            Ok(mac) => Some(Some(mac)),
            Err(()) => {
                report.at(
                    text.span(),
                    format!("{field}.mac"),
                    format!(
                        "{:?} is not a MAC address; write it like \"52:54:00:20:00:10\", or drop it to use the MAC from the production domain XML",
                        text.get_ref()
                    ),
                );
                None
            }
        },
    };
    let ip_text = match &dhcp.ip {
        None => {
            report.at(
                wire.span(),
                format!("{field}.ip"),
                "missing ip; give the address the lab DHCP hands to this vm, like ip = \"10.20.0.10\"",
            );
            return None;
        }
        Some(ip) => ip,
    };
    let ip = parse_ipv4(report, ip_text, &format!("{field}.ip"))?;
    // With a broken segment, finding the reservation's segment would only repeat its problems.
    let segments = segments?;

    let serves = |segment: &SegmentSpec| {
        segment
            .services
            .as_ref()
            .is_some_and(|s| s.dhcp && s.address.contains(ip))
    };
    let segment = match &dhcp.segment {
        Some(name) => {
            let Some(segment) = segments.iter().find(|s| s.name == *name.get_ref()) else {
                report.at(
                    name.span(),
                    format!("{field}.segment"),
                    format!(
                        "unknown segment {:?}{}; known segments: {}",
                        name.get_ref(),
                        suggestion(name.get_ref(), segments.iter().map(|s| s.name.as_str())),
                        list(segments.iter().map(|s| &s.name))
                    ),
                );
                return None;
            };
            match &segment.services {
                Some(services) if services.dhcp && services.address.contains(ip) => segment,
                Some(services) if services.dhcp => {
                    report.at(
                        ip_text.span(),
                        format!("{field}.ip"),
                        format!(
                            "{ip} is outside the subnet {}/{} of segment {:?}; fix the address or the segment",
                            services.address.network(),
                            services.address.prefix,
                            segment.name
                        ),
                    );
                    return None;
                }
                _ => {
                    report.at(
                        name.span(),
                        format!("{field}.segment"),
                        format!(
                            "segment {:?} has no lab dhcp; add dhcp = true to [segment.{}.services]",
                            segment.name, segment.name
                        ),
                    );
                    return None;
                }
            }
        }
        None => {
            let candidates: Vec<&SegmentSpec> = segments.iter().filter(|s| serves(s)).collect();
            match candidates.as_slice() {
                [segment] => *segment,
                [] => {
                    let without_dhcp = segments
                        .iter()
                        .find(|s| s.services.as_ref().is_some_and(|s| s.address.contains(ip)));
                    let message = match without_dhcp {
                        Some(segment) => format!(
                            "segment {:?} contains {ip} but its services have no dhcp; add dhcp = true to [segment.{}.services]",
                            segment.name, segment.name
                        ),
                        None => format!(
                            "no segment with lab dhcp contains {ip}; add a [segment.NAME.services] table with dhcp = true and a subnet containing it"
                        ),
                    };
                    report.at(ip_text.span(), format!("{field}.ip"), message);
                    return None;
                }
                several => {
                    report.at(
                        ip_text.span(),
                        format!("{field}.ip"),
                        format!(
                            "{ip} is in the dhcp subnets of segments {}; add segment = \"NAME\" to say which one",
                            list(several.iter().map(|s| &s.name))
                        ),
                    );
                    return None;
                }
            }
        }
    };
    let services = segment.services.as_ref()?;
    if ip == services.address.address {
        report.at(
            ip_text.span(),
            format!("{field}.ip"),
            format!(
                "{ip} is the services address of segment {:?}, where the lab services answer; a vm cannot use it",
                segment.name
            ),
        );
        return None;
    }
    if ip == services.address.network() || ip == services.address.broadcast() {
        report.at(
            ip_text.span(),
            format!("{field}.ip"),
            format!(
                "{ip} is the network or broadcast address of {}/{}; give a host address",
                services.address.network(),
                services.address.prefix
            ),
        );
        return None;
    }
    // Prefer the host name that starts with the vm name, then the alphabetically first one.
    let names_for_ip: Vec<&String> = segment
        .hosts
        .iter()
        .filter(|(_, host_ip)| **host_ip == ip)
        .map(|(host, _)| host)
        .collect();
    let hostname = names_for_ip
        .iter()
        .find(|host| vm_name.is_some_and(|vm| host.split('.').next() == Some(vm)))
        .or(names_for_ip.first())
        .map(|host| host.to_string())
        .or_else(|| vm_name.map(str::to_string))?;
    Some(DhcpReservation {
        segment: segment.name.clone(),
        mac: mac?,
        ip,
        hostname,
    })
}

/// A relative path inside the dump directory: not empty, not absolute, no `..`.
fn relative_inside(text: &str) -> Result<(), &'static str> {
    if text.trim().is_empty() {
        Err("is empty")
    } else if text.starts_with('/') {
        Err("is absolute; give a name relative to dumps.dir")
    } else if text.split('/').any(|part| part == "..") {
        Err("leaves dumps.dir with '..'; give a name inside it")
    } else {
        Ok(())
    }
}

fn validate_dumps(
    wire: &Spanned<WireDumps>,
    field: &str,
    base: &Path,
    report: &mut Report,
) -> Option<DumpsSpec> {
    let dumps = wire.get_ref();
    let mut ok = true;

    let dir = match &dumps.dir {
        None => {
            report.at(
                wire.span(),
                format!("{field}.dir"),
                "missing dump directory; give the directory the dumps are in, relative to the lab file, like dir = \"backups/dumps\"",
            );
            None
        }
        Some(dir) if dir.get_ref().trim().is_empty() => {
            report.at(
                dir.span(),
                format!("{field}.dir"),
                "empty dump directory; give the directory the dumps are in, like dir = \"backups/dumps\"",
            );
            None
        }
        Some(dir) => Some(base.join(dir.get_ref())),
    };

    let time = match &dumps.time {
        None => Some(DumpTime::Name { tz: None }),
        Some(time) => match time.get_ref().as_str() {
            "name" => Some(DumpTime::Name { tz: None }),
            "mtime" => Some(DumpTime::Mtime),
            other => {
                report.at(
                    time.span(),
                    format!("{field}.time"),
                    format!(
                        "unknown time source {other:?}; use \"name\" (read the time from the file name with the pattern, the default) or \"mtime\" (the file's modification time)"
                    ),
                );
                None
            }
        },
    };
    let from_mtime = matches!(time, Some(DumpTime::Mtime));

    let pattern = match &dumps.pattern {
        None => {
            report.at(
                wire.span(),
                format!("{field}.pattern"),
                "missing pattern; give the dump file names with their time fields, like pattern = \"erp-%Y%m%d-%H%M.sql\"",
            );
            None
        }
        Some(text) => match NamePattern::parse(text.get_ref(), !from_mtime) {
            Ok(pattern) => Some(pattern),
            Err(err) => {
                report.at(text.span(), format!("{field}.pattern"), err.to_string());
                None
            }
        },
    };

    let time = match (time, &dumps.tz) {
        (time, None) => time,
        (Some(DumpTime::Mtime), Some(tz)) => {
            report.at(
                tz.span(),
                format!("{field}.tz"),
                "tz applies to times read from file names, but time = \"mtime\"; drop tz (modification times are absolute)",
            );
            None
        }
        (time, Some(tz)) => {
            if pattern.as_ref().is_some_and(NamePattern::has_zone) {
                report.at(
                    tz.span(),
                    format!("{field}.tz"),
                    "the pattern's %s or %z already fixes the time zone of the names; drop tz",
                );
                None
            } else if jiff::tz::TimeZone::get(tz.get_ref()).is_err() {
                report.at(
                    tz.span(),
                    format!("{field}.tz"),
                    format!(
                        "unknown time zone {:?}; use an IANA name like \"Europe/Berlin\" (the names are in /usr/share/zoneinfo), or drop tz for UTC",
                        tz.get_ref()
                    ),
                );
                None
            } else {
                time.map(|_| DumpTime::Name {
                    tz: Some(tz.get_ref().clone()),
                })
            }
        }
    };

    let manifest = match &dumps.manifest {
        None => None,
        Some(text) => {
            let template = text.get_ref();
            let problem = match relative_inside(template) {
                Err(why) => Some(format!("manifest {why}")),
                Ok(()) => match expand(template, &[("file", "x")]) {
                    Err(why) => Some(format!("manifest {why}")),
                    Ok(_) if !uses(template, "file") => Some(
                        "manifest has no {file}, so every dump would share one manifest; write it like \"{file}.manifest.json\""
                            .to_string(),
                    ),
                    Ok(_) => None,
                },
            };
            if let Some(problem) = problem {
                report.at(text.span(), format!("{field}.manifest"), problem);
                ok = false;
            }
            Some(template.clone())
        }
    };

    let sha256sums = match &dumps.sha256sums {
        None => None,
        Some(text) => {
            if let Err(why) = relative_inside(text.get_ref()) {
                report.at(
                    text.span(),
                    format!("{field}.sha256sums"),
                    format!("checksum file {why}"),
                );
                ok = false;
            }
            Some(text.get_ref().clone())
        }
    };

    let restore_as = match &dumps.restore_as {
        None => None,
        Some(text) if text.get_ref().trim().is_empty() || text.get_ref().contains('\n') => {
            report.at(
                text.span(),
                format!("{field}.restore_as"),
                "restore_as is empty or spans lines; give the second database name or path, like \"/var/lib/erp/restored.db\"",
            );
            ok = false;
            None
        }
        Some(text) => Some(text.get_ref().clone()),
    };

    // Every placeholder a command may use, and the ones this source offers.
    let all = [
        ("dump", "x"),
        ("dir", "x"),
        ("file", "x"),
        ("manifest", "x"),
        ("as", "x"),
    ];
    let offered: Vec<(&str, &str)> = all
        .iter()
        .copied()
        .filter(|(name, _)| match *name {
            "manifest" => manifest.is_some(),
            "as" => dumps.restore_as.is_some(),
            _ => true,
        })
        .collect();
    let mut restore = Vec::new();
    for (i, command) in dumps.restore.iter().flatten().enumerate() {
        let command_field = format!("{field}.restore[{i}]");
        let text = command.get_ref();
        let problem = if text.trim().is_empty() {
            Some("restore command is empty; give a shell command or remove the entry".to_string())
        } else if let Err(why) = expand(text, &all) {
            Some(format!("restore command {why}"))
        } else if let Err(why) = expand(text, &offered) {
            if uses(text, "as") && dumps.restore_as.is_none() {
                Some("restore command uses {as}, but the dumps have no restore_as; add restore_as = \"NAME\" or drop {as}".to_string())
            } else if uses(text, "manifest") && manifest.is_none() {
                Some("restore command uses {manifest}, but the dumps have no manifest; add manifest = \"{file}.manifest.json\" or drop {manifest}".to_string())
            } else {
                Some(format!("restore command {why}"))
            }
        } else {
            None
        };
        if let Some(problem) = problem {
            report.at(command.span(), command_field, problem);
            ok = false;
        }
        restore.push(text.clone());
    }
    if let Some(text) = &dumps.restore_as
        && !restore.iter().any(|command| uses(command, "as"))
    {
        report.at(
            text.span(),
            format!("{field}.restore_as"),
            "no restore command uses {as}; write the commands that restore under the second name with {as}, like \"sqlite3 {as} < {dump}\"",
        );
        ok = false;
    }

    let format = match &dumps.format {
        None => Some(DiskFormat::Ext4),
        Some(text) => match text.get_ref().as_str() {
            "ext4" => Some(DiskFormat::Ext4),
            "iso" => Some(DiskFormat::Iso),
            other => {
                report.at(
                    text.span(),
                    format!("{field}.format"),
                    format!(
                        "unknown data disk format {other:?}; use \"ext4\" (the default) or \"iso\" (for guests without ext4)"
                    ),
                );
                None
            }
        },
    };

    let mount = match &dumps.mount {
        None => Some(DEFAULT_MOUNT.to_string()),
        Some(text) => {
            let mount = text.get_ref();
            let valid = mount.starts_with('/')
                && !mount.trim_end_matches('/').is_empty()
                && !mount
                    .chars()
                    .any(|c| c.is_whitespace() || c == '\'' || c == '"')
                && !mount.split('/').any(|part| part == "..");
            if valid {
                Some(mount.clone())
            } else {
                report.at(
                    text.span(),
                    format!("{field}.mount"),
                    format!(
                        "{mount:?} is not a usable mount point; give an absolute directory other than / without whitespace or quotes, like \"/mnt/reclab\""
                    ),
                );
                None
            }
        }
    };

    let attach = match &dumps.attach {
        None => Some(DiskAttach::Boot),
        Some(text) => match text.get_ref().as_str() {
            "boot" => Some(DiskAttach::Boot),
            "hotplug" => Some(DiskAttach::Hotplug),
            other => {
                report.at(
                    text.span(),
                    format!("{field}.attach"),
                    format!(
                        "unknown attach mode {other:?}; use \"boot\" (the default: the disk is there from boot) or \"hotplug\" (plugged in once the guest agent answers)"
                    ),
                );
                None
            }
        },
    };

    let timeout = match &dumps.timeout {
        None => Some(DEFAULT_RESTORE_TIMEOUT),
        Some(t) => duration_field(report, t, &format!("{field}.timeout")),
    };

    if !ok {
        return None;
    }
    Some(DumpsSpec {
        dir: dir?,
        pattern: pattern?,
        time: time?,
        manifest,
        sha256sums,
        restore,
        restore_as,
        format: format?,
        mount: mount?,
        attach: attach?,
        timeout: timeout?,
    })
}

/// Within a segment, reservation MACs and IPs must be unique.
fn check_reservations(wire: &WireLab, vms: &[Option<PartialVm>], report: &mut Report) {
    let mut macs: BTreeMap<(&str, MacAddr), usize> = BTreeMap::new();
    let mut ips: BTreeMap<(&str, Ipv4Addr), usize> = BTreeMap::new();
    for (index, vm) in vms.iter().enumerate() {
        let Some(dhcp) = vm.as_ref().and_then(|vm| vm.dhcp.as_ref()) else {
            continue;
        };
        let wire_dhcp = wire.vms[index].get_ref().dhcp.as_ref().map(|d| d.get_ref());
        if let Some(mac) = dhcp.mac {
            if let Some(first) = macs.get(&(dhcp.segment.as_str(), mac)) {
                let span = wire_dhcp
                    .and_then(|d| d.mac.as_ref())
                    .map(|m| m.span())
                    .unwrap_or_else(|| wire.vms[index].span());
                report.at(
                    span,
                    format!("vm[{index}].dhcp.mac"),
                    format!(
                        "duplicate mac {mac} in segment {:?} (also vm[{first}]); every interface in a segment needs its own mac",
                        dhcp.segment
                    ),
                );
            } else {
                macs.insert((dhcp.segment.as_str(), mac), index);
            }
        }
        if let Some(first) = ips.get(&(dhcp.segment.as_str(), dhcp.ip)) {
            let span = wire_dhcp
                .and_then(|d| d.ip.as_ref())
                .map(|ip| ip.span())
                .unwrap_or_else(|| wire.vms[index].span());
            report.at(
                span,
                format!("vm[{index}].dhcp.ip"),
                format!(
                    "duplicate dhcp address {} in segment {:?} (also vm[{first}]); give each vm its own address",
                    dhcp.ip, dhcp.segment
                ),
            );
        } else {
            ips.insert((dhcp.segment.as_str(), dhcp.ip), index);
        }
    }
}

/// Checks `after` references and cycles, then derives every VM's boot tier (file order).
fn derive_tiers(wire: &WireLab, names: &[Option<String>], report: &mut Report) -> Option<Vec<u32>> {
    let index_of: BTreeMap<&str, usize> = names
        .iter()
        .enumerate()
        .rev()
        .filter_map(|(i, name)| name.as_deref().map(|n| (n, i)))
        .collect();
    let known: Vec<&str> = names.iter().flatten().map(String::as_str).collect();
    let mut ok = true;
    // Dependencies by VM index, with the span of each `after` entry.
    let mut deps: Vec<Vec<(usize, Range<usize>)>> = vec![Vec::new(); wire.vms.len()];
    for (index, vm) in wire.vms.iter().enumerate() {
        for (j, after) in vm.get_ref().after.iter().flatten().enumerate() {
            let field = format!("vm[{index}].after[{j}]");
            let target = after.get_ref().as_str();
            match index_of.get(target) {
                None => {
                    report.at(
                        after.span(),
                        field,
                        format!(
                            "unknown vm {target:?}{}; known vms: {}",
                            suggestion(target, known.iter().copied()),
                            list(&known)
                        ),
                    );
                    ok = false;
                }
                Some(&dep) if dep == index => {
                    report.at(
                        after.span(),
                        field,
                        format!("vm {target:?} cannot boot after itself; remove it from its own after list"),
                    );
                    ok = false;
                }
                Some(&dep) => {
                    if deps[index].iter().any(|(d, _)| *d == dep) {
                        report.at(
                            after.span(),
                            field,
                            format!("{target:?} is listed twice; list it once"),
                        );
                        ok = false;
                    }
                    deps[index].push((dep, after.span()));
                }
            }
        }
    }
    for cycle in find_cycles(&deps) {
        let path: Vec<&str> = cycle
            .iter()
            .chain(cycle.first())
            .map(|&i| names[i].as_deref().unwrap_or("?"))
            .collect();
        let first = cycle[0];
        let span = deps[first]
            .iter()
            .find(|(d, _)| *d == cycle[1 % cycle.len()])
            .map(|(_, span)| span.clone())
            .unwrap_or_else(|| wire.vms[first].span());
        report.at(
            span,
            format!("vm[{first}].after"),
            format!(
                "after cycle {} (each vm waits for the next); remove one of these after entries",
                path.join(" -> ")
            ),
        );
        ok = false;
    }
    if !ok || names.iter().any(Option::is_none) {
        return None;
    }

    // Levels in dependency order: a VM's tier is at least one above each of its dependencies.
    let explicit: Vec<Option<u32>> = wire
        .vms
        .iter()
        .map(|vm| {
            vm.get_ref()
                .tier
                .as_ref()
                .and_then(|t| u32::try_from(*t.get_ref()).ok())
        })
        .collect();
    let mut tiers: Vec<Option<u32>> = vec![None; wire.vms.len()];
    fn level(
        i: usize,
        deps: &[Vec<(usize, Range<usize>)>],
        explicit: &[Option<u32>],
        tiers: &mut [Option<u32>],
    ) -> u32 {
        if let Some(t) = tiers[i] {
            return t;
        }
        let needed = deps[i]
            .iter()
            .map(|(d, _)| level(*d, deps, explicit, tiers) + 1)
            .max()
            .unwrap_or(1);
        let tier = explicit[i].unwrap_or(1).max(needed);
        tiers[i] = Some(tier);
        tier
    }
    for i in 0..wire.vms.len() {
        level(i, &deps, &explicit, &mut tiers);
    }
    let tiers: Vec<u32> = tiers.into_iter().map(|t| t.unwrap_or(1)).collect();
    for (index, vm) in wire.vms.iter().enumerate() {
        let (Some(tier), Some(wire_tier)) = (explicit[index], vm.get_ref().tier.as_ref()) else {
            continue;
        };
        if let Some((dep, _)) = deps[index].iter().max_by_key(|(d, _)| tiers[*d])
            && tiers[*dep] >= tier
        {
            let dep_name = names[*dep].as_deref().unwrap_or("?");
            report.at(
                wire_tier.span(),
                format!("vm[{index}].tier"),
                format!(
                    "tier {tier} does not come after {dep_name:?}, which boots in tier {}; raise the tier above {} or drop it to derive it from after",
                    tiers[*dep], tiers[*dep]
                ),
            );
            ok = false;
        }
    }
    ok.then_some(tiers)
}

/// Cycles in a dependency graph, each once, as VM indices starting from the lowest.
fn find_cycles(deps: &[Vec<(usize, Range<usize>)>]) -> Vec<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    fn visit(
        node: usize,
        deps: &[Vec<(usize, Range<usize>)>],
        marks: &mut [Mark],
        stack: &mut Vec<usize>,
        cycles: &mut Vec<Vec<usize>>,
    ) {
        marks[node] = Mark::Active;
        stack.push(node);
        for (next, _) in &deps[node] {
            match marks[*next] {
                Mark::New => visit(*next, deps, marks, stack, cycles),
                Mark::Active => {
                    let start = stack.iter().position(|n| n == next).unwrap_or(0);
                    let mut cycle = stack[start..].to_vec();
                    let lowest = (0..cycle.len()).min_by_key(|&i| cycle[i]).unwrap_or(0);
                    cycle.rotate_left(lowest);
                    if !cycles.contains(&cycle) {
                        cycles.push(cycle);
                    }
                }
                Mark::Done => {}
            }
        }
        stack.pop();
        marks[node] = Mark::Done;
    }
    let mut marks = vec![Mark::New; deps.len()];
    let mut cycles = Vec::new();
    for node in 0..deps.len() {
        if marks[node] == Mark::New {
            visit(node, deps, &mut marks, &mut Vec::new(), &mut cycles);
        }
    }
    cycles
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lab with the given `[[vm]]` tables, all cloned from domain snapshots.
    fn lab(vms: &str) -> Result<LabSpec, SpecError> {
        parse(&format!("name = \"t\"\n{vms}"), Path::new("t.toml"))
    }

    fn vm(name: &str, extra: &str) -> String {
        format!(
            "[[vm]]\nname = \"{name}\"\nfrom = {{ domain = \"p-{name}\", snapshot = \"s\" }}\n{extra}\n"
        )
    }

    fn tiers(vms: &[String]) -> Vec<Vec<String>> {
        lab(&vms.concat())
            .unwrap_or_else(|err| panic!("lab should be valid:\n{err}"))
            .boot_tiers()
    }

    fn names(groups: &[&[&str]]) -> Vec<Vec<String>> {
        groups
            .iter()
            .map(|g| g.iter().map(|n| n.to_string()).collect())
            .collect()
    }

    #[test]
    fn the_example_in_the_reference_is_a_valid_lab() {
        let example: String = include_str!("mod.rs")
            .lines()
            .skip_while(|line| *line != "//! ```toml")
            .skip(1)
            .take_while(|line| *line != "//! ```")
            .map(|line| format!("{}\n", line.trim_start_matches("//!").trim_start()))
            .collect();
        let spec =
            parse(&example, Path::new("docs/lab.toml")).unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(spec.boot_tiers(), names(&[&["db"], &["app"]]));
        assert!(
            matches!(&spec.vms[1].source, VmSource::Files { xml, .. } if xml == Path::new("docs/backups/app.xml"))
        );
    }

    #[test]
    fn without_tier_or_after_every_vm_boots_in_tier_one() {
        assert_eq!(
            tiers(&[vm("a", ""), vm("b", ""), vm("c", "")]),
            names(&[&["a", "b", "c"]])
        );
    }

    #[test]
    fn after_chains_become_consecutive_tiers_whatever_the_file_order() {
        assert_eq!(
            tiers(&[
                vm("client", "after = [\"app\"]"),
                vm("app", "after = [\"db\"]"),
                vm("db", ""),
            ]),
            names(&[&["db"], &["app"], &["client"]])
        );
    }

    #[test]
    fn a_diamond_boots_the_join_after_its_deepest_dependency() {
        let spec = lab(&[
            vm("db", ""),
            vm("cache", ""),
            vm("queue", "after = [\"db\"]"),
            vm("app", "after = [\"queue\", \"cache\"]"),
        ]
        .concat())
        .unwrap();
        assert_eq!(
            spec.boot_tiers(),
            names(&[&["db", "cache"], &["queue"], &["app"]])
        );
        assert_eq!(spec.vm("app").unwrap().tier, 3);
        assert_eq!(spec.vm("app").unwrap().after, ["queue", "cache"]);
    }

    #[test]
    fn explicit_tiers_are_kept_and_gaps_do_not_make_empty_groups() {
        let spec = lab(&[
            vm("db", "tier = 1"),
            vm("report", "tier = 5"),
            vm("app", "after = [\"db\"]"),
        ]
        .concat())
        .unwrap();
        assert_eq!(spec.vm("report").unwrap().tier, 5);
        assert_eq!(spec.boot_tiers(), names(&[&["db"], &["app"], &["report"]]));
    }

    #[test]
    fn an_explicit_tier_above_the_derived_one_is_honored() {
        assert_eq!(
            tiers(&[
                vm("db", ""),
                vm("app", "tier = 3\nafter = [\"db\"]"),
                vm("web", "tier = 2"),
            ]),
            names(&[&["db"], &["web"], &["app"]])
        );
    }

    #[test]
    fn a_vm_after_another_is_pushed_above_that_vms_explicit_tier() {
        assert_eq!(
            tiers(&[vm("db", "tier = 4"), vm("app", "after = [\"db\"]")]),
            names(&[&["db"], &["app"]])
        );
        let spec = lab(&[vm("db", "tier = 4"), vm("app", "after = [\"db\"]")].concat()).unwrap();
        assert_eq!(spec.vm("app").unwrap().tier, 5);
    }

    #[test]
    fn an_explicit_tier_at_or_below_a_dependency_is_a_conflict() {
        let err = lab(&[
            vm("db", ""),
            vm("app", "after = [\"db\"]"),
            vm("web", "tier = 2\nafter = [\"app\"]"),
        ]
        .concat())
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "t.toml:13:8: vm[2].tier: tier 2 does not come after \"app\", which boots in tier 2; raise the tier above 2 or drop it to derive it from after"
        );
    }

    #[test]
    fn every_cycle_is_named_once() {
        let err = lab(&[
            vm("a", "after = [\"b\"]"),
            vm("b", "after = [\"a\"]"),
            vm("c", "after = [\"d\"]"),
            vm("d", "after = [\"c\"]"),
        ]
        .concat())
        .unwrap_err();
        let messages: Vec<&str> = err.problems.iter().map(|p| p.message.as_str()).collect();
        assert_eq!(messages.len(), 2, "{err}");
        assert!(messages[0].starts_with("after cycle a -> b -> a "), "{err}");
        assert!(messages[1].starts_with("after cycle c -> d -> c "), "{err}");
    }

    #[test]
    fn defaults_fill_what_the_file_leaves_out() {
        let spec = lab(&vm("db", "")).unwrap();
        assert_eq!(spec.connect, "qemu:///system");
        assert_eq!(spec.ttl, Duration::from_secs(8 * 3600));
        assert_eq!(spec.accel, Accel::Kvm);
        assert_eq!(spec.state_dir, None);
        assert!(spec.segments.is_empty());
        let db = spec.vm("db").unwrap();
        assert_eq!(db.tier, 1);
        assert_eq!(
            db.ready,
            ReadySpec {
                timeout: Duration::from_secs(300),
                tcp: None
            }
        );
        assert_eq!(db.dhcp, None);
    }

    #[test]
    fn problems_carry_file_line_column_and_field() {
        let err = parse(
            "name = \"x\"\n\n[[vm]]\nname = \"db\"\nfrom = { domain = \"d\", snapshot = \"s\" }\nafter = [\"dbb\"]\n",
            Path::new("labs/x.toml"),
        )
        .unwrap_err();
        assert_eq!(
            err.problems,
            [Problem {
                file: PathBuf::from("labs/x.toml"),
                location: Some((6, 10)),
                field: "vm[0].after[0]".into(),
                message: "unknown vm \"dbb\" (did you mean \"db\"?); known vms: db".into(),
            }]
        );
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let text = "# é\nname = \"Überlab\"\n";
        assert_eq!(line_column(text, text.find("\"Ü").unwrap()), (2, 8));
        let err = parse(text, Path::new("l.toml")).unwrap_err();
        assert!(err.to_string().starts_with("l.toml:2:8: name: "), "{err}");
    }

    #[test]
    fn relative_paths_join_the_lab_files_directory_without_touching_the_disk() {
        let text = "name = \"x\"\nstate_dir = \"state\"\n[[vm]]\nname = \"db\"\nfrom = { xml = \"b/db.xml\", disks = { vda = \"b/db.qcow2\", vdb = \"/srv/data.raw\" } }\n";
        let spec = parse(text, Path::new("/nowhere/labs/x.toml")).unwrap();
        assert_eq!(spec.state_dir, Some(PathBuf::from("/nowhere/labs/state")));
        assert_eq!(
            spec.vms[0].source,
            VmSource::Files {
                xml: PathBuf::from("/nowhere/labs/b/db.xml"),
                disks: BTreeMap::from([
                    ("vda".to_string(), PathBuf::from("/nowhere/labs/b/db.qcow2")),
                    ("vdb".to_string(), PathBuf::from("/srv/data.raw")),
                ]),
            }
        );
        let bare = parse(text, Path::new("x.toml")).unwrap();
        assert_eq!(bare.state_dir, Some(PathBuf::from("state")));
    }

    #[test]
    fn cidr_arithmetic() {
        let cidr = parse_cidr("10.20.0.1/24").unwrap();
        assert_eq!(cidr.to_string(), "10.20.0.1/24");
        assert_eq!(cidr.network(), Ipv4Addr::new(10, 20, 0, 0));
        assert_eq!(cidr.broadcast(), Ipv4Addr::new(10, 20, 0, 255));
        assert_eq!(cidr.netmask(), Ipv4Addr::new(255, 255, 255, 0));
        assert!(cidr.contains(Ipv4Addr::new(10, 20, 0, 200)));
        assert!(!cidr.contains(Ipv4Addr::new(10, 20, 1, 1)));
        let wide = parse_cidr("172.16.5.4/12").unwrap();
        assert_eq!(wide.network(), Ipv4Addr::new(172, 16, 0, 0));
        assert!(parse_cidr("10.20.0.1/31").is_err());
        assert!(parse_cidr("10.20.0.1/0").is_err());
        assert!(parse_cidr("10.20.0.1/x").is_err());
        assert!(parse_cidr("10.20.0/24").is_err());
    }

    #[test]
    fn mac_addresses_read_either_case_and_print_lowercase() {
        let mac: MacAddr = "52:54:00:AB:cd:10".parse().unwrap();
        assert_eq!(mac.to_string(), "52:54:00:ab:cd:10");
        for bad in [
            "52:54:00:ab:cd",
            "52:54:00:ab:cd:10:11",
            "52-54-00-ab-cd-10",
            "5:54:00:ab:cd:10",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn host_names() {
        for good in ["db", "db.prod.example", "db.prod.example.", "a-1.b2"] {
            assert!(valid_dns_name(good), "{good}");
        }
        for bad in [
            "",
            ".",
            "-db.example",
            "db-.example",
            "db..example",
            "bad_name",
            "db example",
        ] {
            assert!(!valid_dns_name(bad), "{bad}");
        }
    }
}
