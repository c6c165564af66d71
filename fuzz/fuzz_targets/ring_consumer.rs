//! Arbitrary bytes as a shared ring's memory (what a hostile peer can write): the consumer and
//! producer must report errors, never panic or access memory outside the ring.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| procom_ring::check_hostile_memory(data));
