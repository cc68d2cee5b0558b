//! reclab: prove backups can really be restored.
//!
//! # Layout
//! - `cli`: clap definitions.
//! - `spec`: the lab file (parse, then validate).
//! - `plan`: pure; names, MACs, paths, boot tiers, every step with its undo.
//! - `xml`: surgical rewrite of production domain XML; lab network XML.
//! - `hv`: the hypervisor trait; `hv::libvirt` is the only module that imports `virt`.
//! - `agent`: QEMU guest agent protocol on top of `hv`.
//! - `verify`: the lab file's checks: pure evaluations of captured output, and the runner.
//! - `report`: drill reports (JSON, JUnit, HTML, terminal) and the per-lab history.
//! - `when`: `--at` moments (RFC 3339, "2h ago", wall-clock times), DST-aware.
//! - `points`: restore points: dump name patterns, selection, skew, manifests, checksums.
//! - `restore`: a lab's restore points, choosing for `--at`, `reclab points`, injection records.
//! - `datadisk`: read-only ext4/iso data disks that carry dumps into a VM (no root mounts).
//! - `notify`, `metrics`, `schedule`, `listen`, `expiry`: operations (see docs/operations.md);
//!   `ops_cmd` runs their subcommands.

pub mod access;
pub mod app;
pub mod base;
pub mod drill;
pub mod hv;
pub mod lab;
pub mod ops;
pub mod report;
pub mod restore;
pub mod spec;
pub mod verify;
pub mod xml;
