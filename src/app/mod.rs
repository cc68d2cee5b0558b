//! The binary's command layer: clap definitions and one handler per command group.

pub mod cli;
pub mod ops_cmd;
