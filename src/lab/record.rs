//! What a run records about itself: `run.json` ([`RunRecord`]) and the journal's entries
//! ([`Resource`]). Plain serde types, no IO: `lab::plan` names the resources its steps create,
//! `lab::journal` reads and writes them.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

use crate::base::names::RunId;
/// What a published port carries (the lab file's `kind`), for the access commands.
pub use crate::spec::model::PublishKind;

/// Something reclab creates, with enough information to remove it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Resource {
    /// A directory reclab created (removed recursively).
    Dir { path: PathBuf },
    /// A file reclab created (overlay, nvram copy, data disk).
    File { path: PathBuf },
    /// A transient libvirt network.
    Network { name: String },
    /// A transient libvirt domain.
    Domain { name: String },
    /// A network namespace (lab services).
    Netns { name: String },
    /// A network link in reclab's own namespace (host side of a veth).
    Link { name: String },
    /// A daemon reclab started inside one of its own namespaces; its PID is read from `pidfile`.
    Process { pidfile: PathBuf, netns: String },
    /// An iptables/ip6tables rule: `program` (`iptables` or `ip6tables`) and the rule spec
    /// after the chain, inserted into `chain` of table `filter`.
    Firewall {
        program: String,
        chain: String,
        rule: Vec<String>,
    },
}

impl Resource {
    /// One-line human description.
    pub fn describe(&self) -> String {
        match self {
            Resource::Dir { path } => format!("directory {}", path.display()),
            Resource::File { path } => format!("file {}", path.display()),
            Resource::Network { name } => format!("network {name}"),
            Resource::Domain { name } => format!("domain {name}"),
            Resource::Netns { name } => format!("network namespace {name}"),
            Resource::Link { name } => format!("link {name}"),
            Resource::Process { pidfile, .. } => format!("process of {}", pidfile.display()),
            Resource::Firewall {
                program,
                chain,
                rule,
            } => {
                format!("{program} rule {chain} {}", rule.join(" "))
            }
        }
    }
}

/// Lifecycle state of a run, as recorded in `run.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// `up` is in progress (or was killed: then the creating PID is gone).
    Creating,
    /// All VMs ready.
    Up,
    /// `up` failed and kept its resources (`--keep-on-failure`).
    Failed,
    /// Being torn down.
    TearingDown,
}

impl RunState {
    /// The state's name as people read it and `run.json` stores it (`tearing_down`).
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Creating => "creating",
            RunState::Up => "up",
            RunState::Failed => "failed",
            RunState::TearingDown => "tearing_down",
        }
    }
}

/// Which kind of process owns a run: `gc` removes a run only once it is expired or its owner
/// is gone, and what "gone" means depends on the kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Owner {
    /// `reclab up`: owns the run while it creates it, then hands the lab over; an up lab
    /// stays until `down` or its expiry. (Records written before `owner` existed.)
    #[default]
    Up,
    /// `reclab run`: owns the lab until its `down` finishes, so once that process is gone
    /// its lab is collected by the next `gc`, whatever the state.
    Run,
}

/// One VM of a run as recorded for `status`, consoles and teardown.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VmRecord {
    pub name: String,
    pub domain: String,
    pub tier: usize,
    pub macs: Vec<String>,
    pub addresses: Vec<String>,
    pub serial_log: PathBuf,
    /// One-time console password (run.json is mode 0600).
    pub console_password: String,
}

/// One lab segment of a run, for status and the isolation checks.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SegmentRecord {
    pub name: String,
    pub network: String,
    pub bridge: String,
    /// Host side of the lab-services veth, if the segment has lab services.
    pub services_link: Option<String>,
    /// Address the lab services answer at.
    pub services_address: Option<String>,
}

/// Fingerprint of a production image taken before the run and checked after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub path: PathBuf,
    pub size: u64,
    pub mtime_ns: i128,
    pub inode: u64,
    /// sha256 of the first 1 MiB (the qcow2 header and tables live there).
    pub head_sha256: String,
}

/// `run.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub schema: u32,
    pub lab: String,
    pub run_id: RunId,
    pub lab_file: PathBuf,
    pub uri: String,
    pub created: String,
    pub expires: String,
    pub state: RunState,
    /// PID and start time of the reclab process that is creating the run (and, for
    /// [`Owner::Run`], keeps it).
    pub owner_pid: u32,
    pub owner_start: u64,
    #[serde(default)]
    pub owner: Owner,
    pub vms: Vec<VmRecord>,
    pub networks: Vec<String>,
    #[serde(default)]
    pub segments: Vec<SegmentRecord>,
    pub fingerprints: Vec<Fingerprint>,
    /// What the domain rewrite removed or changed, per VM, for the output.
    pub changes: Vec<String>,
    /// The restore point: which image and dump each VM got, checksums, skew, durations.
    #[serde(default)]
    pub injections: Vec<crate::restore::record::InjectionRecord>,
    /// `--at` as given, and the moment it meant (RFC 3339; none for `latest`).
    #[serde(default)]
    pub at: Option<String>,
    #[serde(default)]
    pub at_time: Option<String>,
    /// Images restored from virtnbdbackup chains (or reused from the restore cache).
    #[serde(default)]
    pub restores: Vec<RestoreRecord>,
    /// The lab's published ports (`[[publish]]`) and where each one enters the lab.
    #[serde(default)]
    pub publish: Vec<PublishedPort>,
}

/// A published port of a run: a VM's port that `reclab serve` and `reclab forward` connect to
/// from inside the lab-services namespace `netns` of the VM's segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedPort {
    pub name: String,
    pub vm: String,
    pub port: u16,
    pub kind: PublishKind,
    /// The VM's address on that segment.
    pub address: String,
    /// The VM's names in the lab DNS (`hosts`, DHCP reservations): links and redirects of
    /// a web app that name them are rewritten to the published host.
    #[serde(default)]
    pub names: Vec<String>,
    pub segment: String,
    pub netns: String,
}

/// One VM image restored from a virtnbdbackup chain for a run, or reused from the cache.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreRecord {
    pub vm: String,
    /// The backup directory.
    pub backup: String,
    pub checkpoint: String,
    /// The restore cache entry the lab's overlays sit on.
    pub entry: String,
    /// `hit` (reused) or `miss` (restored by this run).
    pub cache: String,
    /// How long the step took (the whole restore on a miss).
    pub seconds: f64,
    /// Bytes of backup data up to the checkpoint.
    pub bytes: u64,
}
