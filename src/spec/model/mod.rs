//! The validated lab file: the types the rest of reclab reads.
//!
//! Pure data: nothing here does IO, parses TOML or knows about positions in the file; the types
//! are built by `spec::validate` only, and this module imports nothing of reclab but `base`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::base::pattern::NamePattern;

pub mod check;
pub mod notify;

pub(in crate::spec) use check::KINDS;
pub use check::{
    CheckKind, CheckSpec, CompareSide, DEFAULT_CHECK_TIMEOUT, JsonExpectation, MAX_CHECK_NAME,
};
pub use notify::{EmailSpec, MetricsSpec, MqttSpec, NotifySpec, WebhookSpec};

/// The libvirt URI used when the lab file has no `connect`.
pub const DEFAULT_CONNECT: &str = "qemu:///system";
/// Where `qemu:///system` keeps software TPM state (`<uuid>/tpm2/` per domain).
pub const DEFAULT_TPM_STATE_DIR: &str = "/var/lib/libvirt/swtpm";
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
/// Longest publish name; `reclab serve` names the published service's host `<name>-<run8>`.
pub const MAX_PUBLISH_NAME: usize = 20;

/// A validated lab file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabSpec {
    /// The lab file as given to [`load`](crate::spec::load) or [`parse`](crate::spec::parse).
    pub path: PathBuf,
    pub name: String,
    /// libvirt connection URI.
    pub connect: String,
    pub ttl: Duration,
    pub accel: Accel,
    /// Run state directory, already joined to the lab file's directory if it was relative.
    pub state_dir: Option<PathBuf>,
    /// Where the hypervisor's libvirt keeps software TPM state by domain uuid, as reclab sees
    /// it ([`DEFAULT_TPM_STATE_DIR`] unless given).
    pub tpm_state_dir: PathBuf,
    /// Segments by name.
    pub segments: BTreeMap<String, SegmentSpec>,
    /// VMs in file order.
    pub vms: Vec<VmSpec>,
    /// Checks in file order (`[[check]]`); empty means "use the default checks".
    pub checks: Vec<CheckSpec>,
    /// Largest allowed time between a VM's chosen image and its chosen dump (either way).
    pub max_skew: Option<Duration>,
    /// `[notify]`: channels tried after every drill (see [`notify`]).
    pub notify: Option<NotifySpec>,
    /// `[metrics]`: the Prometheus textfile updated after every drill.
    pub metrics: Option<MetricsSpec>,
    /// `[[publish]]`: ports of lab VMs that people reach through `reclab serve` or
    /// `reclab forward`, in file order.
    pub publish: Vec<PublishSpec>,
}

/// A port of a lab VM opened for people (`[[publish]]`). Connections to it enter the lab from
/// the lab side of the VM's segment's lab-services namespace; nothing in the lab can use it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PublishSpec {
    /// Unique in the lab; the link people open ("open erp").
    pub name: String,
    pub vm: String,
    pub port: u16,
    pub kind: PublishKind,
}

/// What a published port carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PublishKind {
    /// A web application: `reclab serve` proxies HTTP and websockets to it.
    Http,
    /// Any TCP service: `reclab forward` carries it to a loopback port.
    Tcp,
}

impl fmt::Display for PublishKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PublishKind::Http => "http",
            PublishKind::Tcp => "tcp",
        })
    }
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
    /// The lab VM's memory in bytes (`memory = "2GiB"`), instead of production's.
    pub memory: Option<u64>,
    /// The lab VM's virtual CPUs (`vcpus = 1`), instead of production's.
    pub vcpus: Option<u32>,
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
        /// When the images were taken (`taken`); `None`: the newest disk file's modification
        /// time.
        taken: Option<jiff::Timestamp>,
    },
    /// A virtnbdbackup backup directory (one checkpoint chain), joined to the lab file's
    /// directory: every checkpoint is a restore point.
    Virtnbdbackup {
        dir: PathBuf,
        /// IANA zone of the backup host, whose local time the stream headers' dates are in;
        /// `None`: the system's zone.
        zone: Option<String>,
        /// The checkpoint chosen for the moment (set by `restore::with_chosen_snapshots`);
        /// `None`: the newest.
        checkpoint: Option<String>,
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

/// Text that is not six colon-separated pairs of hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a MAC address; write it like \"52:54:00:20:00:10\"")]
pub struct MacAddrError;

impl FromStr for MacAddr {
    type Err = MacAddrError;

    /// Reads six colon-separated pairs of hex digits, in either case.
    fn from_str(text: &str) -> Result<Self, MacAddrError> {
        let mut bytes = [0u8; 6];
        let mut parts = text.split(':');
        for byte in &mut bytes {
            let part = parts.next().ok_or(MacAddrError)?;
            if part.len() != 2 {
                return Err(MacAddrError);
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| MacAddrError)?;
        }
        match parts.next() {
            Some(_) => Err(MacAddrError),
            None => Ok(MacAddr(bytes)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
