//! Arbitrary bytes on a framed byte stream: the decoder must refuse or return well-formed frames.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| procom::framing::check_decoder(data));
