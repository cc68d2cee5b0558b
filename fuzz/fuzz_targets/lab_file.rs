//! libFuzzer target `lab_file`; the invariants are in tests/fuzzing/mod.rs.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/fuzzing/mod.rs"]
mod fuzzing;

fuzz_target!(|data: &[u8]| {
    if let Err(finding) = fuzzing::lab_file(data) {
        panic!("{finding}");
    }
});
