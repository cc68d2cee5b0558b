//! A recording fake hypervisor for unit tests (filled in by the hv work).
