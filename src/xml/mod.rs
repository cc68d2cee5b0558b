//! XML reclab reads and writes: the surgical rewrite of production domain XML and the lab
//! network definitions.

pub mod facts;

pub mod disk;
pub mod domain;
pub mod network;
pub mod runtime;
mod tree;
