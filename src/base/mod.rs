//! The leaf vocabulary every other part of reclab speaks: durations, `--at` moments, derived
//! names, host commands. Nothing here imports anything else from the crate.

pub mod duration;
pub mod fs;
pub mod names;
pub mod pattern;
pub mod sys;
pub mod template;
pub mod text;
pub mod when;
