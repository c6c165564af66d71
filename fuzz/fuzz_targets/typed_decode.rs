//! Arbitrary bytes as a typed (postcard) message: a value or `Malformed`, never a panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| procom::fuzz::check_typed_decoder(data));
