//! The leaf vocabulary every other part of reclab speaks: durations, `--at` moments, derived
//! names, host commands, the one poll loop and its cancellation. Nothing here imports anything
//! else from the crate.

pub mod cancel;
pub mod duration;
pub mod fs;
pub mod guestsh;
pub mod names;
pub mod pattern;
pub mod sys;
pub mod template;
pub mod text;
pub mod wait;
pub mod when;
