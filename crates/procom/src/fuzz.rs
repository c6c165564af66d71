//! The invariant checks the fuzz targets in `fuzz/` run on arbitrary input, one per decoder of
//! what a peer, a user or another program hands procom. Each target is one call to one of
//! these; `cargo test` replays every target's corpus (`fuzz/corpus/TARGET/`) through the same
//! function, so every input that once mattered stays checked without the fuzzing toolchain.

pub use crate::endpoint::check::{check_endpoint_parser, check_sizes_and_durations};
pub use crate::framing::check_decoder as check_framing_decoder;

/// Arbitrary bytes as one message of a typed channel (`procom::typed`), decoded as a range
/// of types: a value or `Malformed`, never a panic or an allocation out of proportion.
pub fn check_typed_decoder(data: &[u8]) {
    crate::typed::check_decoder(data)
}

/// Arbitrary bytes as a whole shared-memory channel segment: header and segment validation,
/// then both sides' rings.
pub fn check_shm_segment(data: &[u8]) {
    crate::flavor::shm::check::check_segment(data)
}

/// Arbitrary bytes as UDP datagrams: procom's header and the per-sender sequence counts.
pub fn check_datagrams(data: &[u8]) {
    crate::flavor::dgram::check_datagrams(data)
}

#[cfg(test)]
mod tests {
    /// Every target's corpus, replayed through the target's check.
    #[test]
    fn every_fuzz_corpus_replays_clean() {
        type Check = fn(&[u8]);
        let targets: [(&str, Check); 6] = [
            ("framing_decode", super::check_framing_decoder),
            ("endpoint_parse", super::check_endpoint_parser),
            ("size_duration_parse", super::check_sizes_and_durations),
            ("typed_decode", super::check_typed_decoder),
            ("shm_segment", super::check_shm_segment),
            ("dgram_header", super::check_datagrams),
        ];
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
        for (target, check) in targets {
            let mut n = 0;
            for entry in std::fs::read_dir(root.join(target))
                .unwrap_or_else(|e| panic!("the {target} corpus is in the repository: {e}"))
            {
                let path = entry.unwrap().path();
                let bytes = std::fs::read(&path).unwrap();
                // A failing input is named, so it can be run again alone.
                let run = std::panic::catch_unwind(|| check(&bytes));
                assert!(run.is_ok(), "{target}: {} fails its check", path.display());
                n += 1;
            }
            assert!(n >= 5, "only {n} files in the {target} corpus");
        }
    }
}
