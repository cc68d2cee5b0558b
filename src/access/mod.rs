//! People-facing access to a running lab: consoles in the terminal and the web (`serve`).

pub mod console;
pub mod forward;
pub mod serve;
