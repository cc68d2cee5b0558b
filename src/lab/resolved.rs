//! The resolver's output: each VM's source as read from libvirt or files, and the backing
//! chains of its disks. Plain types, no IO (`lab::resolve` and `lab::image` do the reading).

use std::path::PathBuf;

use crate::xml::facts::DomainFacts;

/// One layer of a source's backing chain, top first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    pub path: PathBuf,
    pub format: String,
    pub block: bool,
    pub virtual_size: u64,
}

/// A source disk of a VM with its read-only backing chain (top first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedDisk {
    pub target: String,
    pub chain: Vec<Layer>,
}

/// A VM's source as read from libvirt or files (by `resolve`, which does the IO).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedVm {
    pub name: String,
    /// Where it came from, for messages (`domain prod-db snapshot nightly`).
    pub origin: String,
    /// Production domain XML (or the snapshot XML embedding it).
    pub xml: String,
    pub facts: DomainFacts,
    pub disks: Vec<ResolvedDisk>,
    /// nvram file of the production domain, if it has one.
    pub nvram: Option<PathBuf>,
}
