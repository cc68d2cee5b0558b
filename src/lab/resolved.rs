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
    /// Boot files the lab gets private copies of (`kernel`, `initrd`: the copies a backup tool
    /// saved), with the file copied; the plan points the domain at the copies.
    pub boot_files: Vec<(String, PathBuf)>,
    /// The restore of its image from a virtnbdbackup chain, if it comes from one.
    pub backup: Option<BackupRestore>,
}

/// A VM image restored from a virtnbdbackup chain into the restore cache (by a plan step),
/// the VM's disks then sitting on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupRestore {
    /// The backup directory (only ever read).
    pub dir: PathBuf,
    pub checkpoint: String,
    /// The cache entry's name (see `restore::virtnbdbackup::cache_key`).
    pub key: String,
    /// The restore cache (`STATE/restore-cache`).
    pub cache: PathBuf,
    /// Per disk: its target and the data files restored into `cache/key/target`, in order.
    pub disks: Vec<(String, Vec<String>)>,
    /// Bytes of backup data up to the checkpoint (a bound for the restored images' size).
    pub bytes: u64,
    /// The backup store's files this restore reads (fingerprinted like production images).
    pub reads: Vec<PathBuf>,
}

impl BackupRestore {
    /// The cache entry (a directory holding one image per disk target).
    pub fn entry(&self) -> PathBuf {
        self.cache.join(&self.key)
    }
}
