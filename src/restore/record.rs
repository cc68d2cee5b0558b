//! What an injection is and records: the planned injection (which files go on a VM's data
//! disk, which commands run in the guest) and the record of what happened, for `run.json` and
//! reports. Plain types, no IO: `lab::plan` and `lab::record` import this leaf.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

use crate::spec::model::{DiskFormat, DumpsSpec};

/// One VM's planned injection: what goes on its data disk and what runs in the guest.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedInjection {
    pub vm: String,
    pub dumps: DumpsSpec,
    pub files: Vec<DataDiskFile>,
    pub commands: Vec<String>,
    pub record: InjectionRecord,
}

/// A file to put on a data disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDiskFile {
    /// Name on the disk (a plain file name, no directories).
    pub name: String,
    pub source: PathBuf,
    /// The file's sha256 if already known (from the host-side verification), to avoid hashing
    /// it twice.
    pub sha256: Option<String>,
}

/// One file on a built data disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskEntry {
    pub name: String,
    pub sha256: String,
    pub bytes: u64,
}

/// A built data disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataDisk {
    pub path: PathBuf,
    pub format: DiskFormat,
    /// Size of the image file.
    pub bytes: u64,
    /// The files on it, `SHA256SUMS` excluded, by name.
    pub files: Vec<DiskEntry>,
}

/// A point as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointRecord {
    /// Snapshot name or dump file name.
    pub name: String,
    /// RFC 3339, UTC.
    pub time: String,
    /// `snapshot prod-db/nightly`, `files ...`, or the dump directory.
    pub source: String,
}

/// One restore command as it ran in the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandRecord {
    pub command: String,
    pub exit_code: Option<i32>,
    pub duration_ms: u64,
    /// The end of its output (capped).
    pub output_tail: String,
}

/// How long each phase of an injection took; `None` for phases that did not run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InjectionDurations {
    pub verify_host_ms: Option<u64>,
    pub build_disk_ms: Option<u64>,
    pub attach_ms: Option<u64>,
    pub verify_guest_ms: Option<u64>,
    pub restore_ms: Option<u64>,
}

/// Exactly which image and which dump a VM got, their times and checksums, the skew, and how
/// long injection and restore took.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InjectionRecord {
    pub vm: String,
    /// `--at` as given (`latest` by default).
    pub at: String,
    /// The moment `--at` resolved to (RFC 3339); `None` for `latest`.
    pub at_time: Option<String>,
    pub at_note: Option<String>,
    pub image: PointRecord,
    pub dump: PointRecord,
    /// sha256 of the dump (lowercase hex), as verified on the host.
    pub sha256: String,
    pub bytes: u64,
    /// The files that vouched for the checksum (manifest, SHA256SUMS).
    pub verified_against: Vec<String>,
    /// The dump's manifest as written by the dump tool (row counts etc.), if any.
    pub manifest: Option<serde_json::Value>,
    /// Dump time minus image time, in seconds, and for people.
    pub skew_seconds: i64,
    pub skew: String,
    pub max_skew_seconds: Option<u64>,
    pub data_disk: Option<DataDisk>,
    /// Where the guest mounted the data disk.
    pub mount: String,
    /// When the data disk was attached (from boot, or hot-plugged once the agent answered).
    #[serde(default)]
    pub attach: crate::spec::model::DiskAttach,
    pub restore_as: Option<String>,
    pub commands: Vec<CommandRecord>,
    pub durations: InjectionDurations,
}
