//! Arbitrary bytes as UDP datagrams: procom's header is recognised exactly, and hostile
//! sequence numbers never break the loss, reorder and duplicate counts.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| procom::fuzz::check_datagrams(data));
