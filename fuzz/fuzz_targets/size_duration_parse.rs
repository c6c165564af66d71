//! Arbitrary text as a size (`64KiB`), a duration (`50us`) and a number of seconds (the
//! command line's timeouts): values or errors, never a panic or an overflow.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| procom::fuzz::check_sizes_and_durations(data));
