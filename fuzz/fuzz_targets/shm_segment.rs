//! Arbitrary bytes as a shared-memory channel's segment (what a hostile process can leave
//! there): header and segment validation, then both rings, report errors and never panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| procom::fuzz::check_shm_segment(data));
