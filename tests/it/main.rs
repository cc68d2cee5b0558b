//! Integration tests without VMs, linked into one test binary with one module per area: `check`
//! (the binary on libvirt's `test:///` driver), `cli`, `example_checks` (the example lab's
//! checks on real sqlite databases), `report`, `xml_domain`, `xml_network`. The other files in
//! `tests/` are binaries of their own: the end-to-end tests (`e2e_*`, each with its own
//! sandbox), the libvirt backend (`hv_*`), the lab-file corpora (`spec_*`), the libvirt domain
//! corpus (`corpus_libvirt`), operations (`ops`), `reclab serve` (`serve_cli`), the property
//! tests (`fuzz_props`) and the source invariants (`tidy`).

mod check;
mod cli;
#[path = "../common/mod.rs"]
mod common;
mod example_checks;
mod report;
mod xml_domain;
mod xml_network;
mod xml_runtime;
