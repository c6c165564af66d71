//! The endpoint grammar's invariants on arbitrary input, shared by the fuzz targets
//! (`fuzz/fuzz_targets/endpoint_parse.rs`, `size_duration_parse.rs`) and the corpus replay in
//! `cargo test`.

use std::time::Duration;

use super::{Endpoint, format_duration, parse_duration, parse_seconds, parse_size};
use crate::error::ErrorKind;

/// Any text: parsing never panics; an endpoint that parses is written back as text that
/// parses to the same endpoint and is written the same way again; a refusal is
/// `InvalidEndpoint` and one line when the text is.
pub fn check_endpoint_parser(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match Endpoint::parse(&text) {
        Ok(ep) => {
            let shown = ep.to_string();
            let again = Endpoint::parse(&shown).unwrap_or_else(|e| {
                panic!("{text:?} parsed, but its display {shown:?} did not: {e}")
            });
            assert_eq!(again, ep, "{text:?} displayed as {shown:?}");
            assert_eq!(again.to_string(), shown, "{text:?}: display is not stable");
            let _ = (ep.scheme(), ep.is_byte_stream());
        }
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::InvalidEndpoint, "{text:?}: {e}");
            if !text.contains('\n') {
                assert!(!e.to_string().contains('\n'), "{text:?}: {e}");
            }
        }
    }
}

/// Any text as a size, a duration (`50us`) and a number of seconds (`0.5`): no panic, a
/// refusal is `InvalidInput`, and what parses reads back from its plain form.
pub fn check_sizes_and_durations(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match parse_size(&text) {
        Ok(n) => assert_eq!(parse_size(&n.to_string()).ok(), Some(n), "{text:?}"),
        Err(e) => assert_eq!(e.kind(), ErrorKind::InvalidInput, "{text:?}"),
    }
    match parse_duration(&text) {
        Ok(d) => {
            let nanos = format!("{}ns", d.as_nanos());
            assert_eq!(parse_duration(&nanos).ok(), Some(d), "{text:?}");
            let _ = format_duration(d);
        }
        Err(e) => assert_eq!(e.kind(), ErrorKind::InvalidInput, "{text:?}"),
    }
    match parse_seconds(&text) {
        Ok(d) => {
            assert!(d <= Duration::from_secs(365 * 24 * 3600), "{text:?}: {d:?}");
            // A deadline computed from it cannot overflow.
            assert!(
                std::time::Instant::now().checked_add(d).is_some(),
                "{text:?}"
            );
            let _ = format_duration(d);
        }
        Err(e) => assert_eq!(e.kind(), ErrorKind::InvalidInput, "{text:?}"),
    }
}
