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
//! - `console`: serial console and VNC proxy through libvirt, access tokens, console expiry.
//! - `serve`: the web server for customers (lab page, noVNC console, sign-off).
//! - `signoff`: customer sign-offs in the run directory and the lab history.

pub mod agent;
pub mod cli;
pub mod console;
pub mod duration;
pub mod hv;
pub mod image;
pub mod inspect;
pub mod journal;
pub mod lab;
pub mod names;
pub mod plan;
pub mod report;
pub mod resolve;
pub mod serve;
pub mod services;
pub mod signoff;
pub mod spec;
pub mod sys;
pub mod teardown;
pub mod verify;
pub mod xml;
