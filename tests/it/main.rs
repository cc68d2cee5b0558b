//! reclab's integration tests, one binary (see style.md): one module per area.

mod check;
mod cli;
mod example_checks;
mod report;
mod xml_domain;
mod xml_network;
