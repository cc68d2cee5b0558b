//! reclab: prove backups can really be restored.
//!
//! # Layout
//! The folders follow a lab's lifecycle; each depends only on those above it in this list
//! (`tests/tidy.rs` checks it; `ARCHITECTURE.md` has the map and the invariants).
//! - [`base`]: the leaf vocabulary (durations, `--at` moments, names, patterns, templates,
//!   text, atomic files, host commands, the one wait loop, cancellation).
//! - [`spec`]: the lab file: decode, validate, the pure model.
//! - [`xml`]: the surgical rewrite of production domain XML, lab networks, read-only facts.
//! - [`hv`]: the hypervisor trait; `hv::libvirt` is the only module that names `virt`;
//!   the guest-agent client.
//! - [`restore`]: restore points (images, dumps, manifests), the choice for `--at`, `reclab
//!   points`, data disks and the injection.
//! - [`lab`]: resolve → plan (pure) → execute (journal first) → boot → teardown; `status`,
//!   `down`, `gc`; host side effects behind `lab::host::Host`.
//! - [`verify`]: the lab file's checks: the runner and its pure judges.
//! - [`report`]: drill reports (JSON, JUnit, HTML, terminal), their store, the history,
//!   sign-offs.
//! - [`drill`]: `verify` and `run` (up, verify, report, down).
//! - [`ops`]: notifications, metrics, schedules, MQTT drills, expiry.
//! - [`access`]: consoles and `reclab serve`, for people.
//! - [`app`]: the command layer the binary calls.

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
