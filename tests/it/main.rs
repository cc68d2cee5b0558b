//! Integration tests of the report and of the XML rewrites, linked into one test binary with one
//! module per area (cli, report, xml_domain, xml_network). The other files in `tests/` are binaries
//! of their own: the end-to-end tests (`e2e_*`, each with its own sandbox), the libvirt backend
//! (`hv_*`), the lab-file corpora (`spec_*`), operations (`ops`), `reclab serve` (`serve_cli`),
//! the property tests (`fuzz_props`) and the source invariants (`tidy`).

mod cli;
#[path = "../common/mod.rs"]
mod common;
mod report;
mod xml_domain;
mod xml_network;
