//! libFuzzer target `domain_xml`; the invariants are in tests/fuzzing/mod.rs.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/fuzzing/mod.rs"]
mod fuzzing;

fuzz_target!(|data: &[u8]| {
    if let Err(finding) = fuzzing::domain_xml(data) {
        panic!("{finding}");
    }
});
