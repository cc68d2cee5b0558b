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

pub mod agent;
pub mod cli;
pub mod console;
pub mod datadisk;
pub mod drill;
pub mod duration;
pub mod expiry;
pub mod hv;
pub mod image;
pub mod inject;
pub mod inspect;
pub mod journal;
pub mod lab;
pub mod listen;
pub mod metrics;
pub mod names;
pub mod notify;
pub mod ops_cmd;
pub mod plan;
pub mod points;
pub mod report;
pub mod resolve;
pub mod restore;
pub mod schedule;
pub mod serve;
pub mod services;
pub mod signoff;
pub mod spec;
pub mod sys;
pub mod teardown;
pub mod verify;
pub mod when;
pub mod xml;
