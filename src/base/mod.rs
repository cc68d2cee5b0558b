//! The leaf vocabulary every other part of reclab speaks: durations, `--at` moments, derived
//! names, host commands. Nothing here imports anything else from the crate.

pub mod duration;
pub mod names;
pub mod sys;
pub mod when;
