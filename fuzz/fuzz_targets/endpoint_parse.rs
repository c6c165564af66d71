//! Arbitrary text as an endpoint: parse → display → parse round-trips, refusals are errors.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| procom::fuzz::check_endpoint_parser(data));
