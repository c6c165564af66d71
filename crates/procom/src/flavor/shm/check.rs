//! The segment checks on arbitrary bytes, as a hostile process could leave them in a channel's
//! segment: shared by the fuzz target (`fuzz/fuzz_targets/shm_segment.rs`) and the corpus
//! replay in `cargo test`.

use std::io::Write;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use procom_ring::{Consumer, Producer};

use super::{
    Fixed, OFF_FLAGS, OFF_RECEIVER, RING_OFFSET, load_sender, load_state, ring, validate, word,
};
use crate::shm::Mapping;

/// Segments larger than this are checked on their first bytes only.
const MAX_SEGMENT: usize = 1 << 16;

/// `bytes` as a whole segment (in a memfd, mapped as a channel's is): the header checks of
/// both sides and their rings report errors, never panic or read outside the mapping; a
/// header that passes promises a ring that fills the segment exactly.
pub(crate) fn check_segment(bytes: &[u8]) {
    let bytes = &bytes[..bytes.len().min(MAX_SEGMENT)];
    if bytes.is_empty() {
        return; // nothing to map
    }
    let fd = rustix::fs::memfd_create("procom-check", rustix::fs::MemfdFlags::CLOEXEC)
        .expect("memfd_create");
    let mut file = std::fs::File::from(fd);
    file.write_all(bytes).expect("write the segment");
    let map = Arc::new(Mapping::map_fd(file.as_fd(), bytes.len(), true).expect("map it"));
    let Ok(capacity) = validate(&map) else {
        return;
    };
    assert!(capacity.is_power_of_two() && capacity >= procom_ring::MIN_CAPACITY);
    assert_eq!(
        RING_OFFSET + procom_ring::bytes_needed(capacity),
        map.len(),
        "a valid header promises a ring that fills the segment"
    );
    // What a sender checks once it has found a set-up channel, and then on every liveness
    // check: the header words fixed at set-up, the state word, the sender slot.
    let fixed = Fixed {
        layout_size: map.len() as u64,
        capacity: capacity as u64,
        receiver: Some(word(&map, OFF_RECEIVER).load(Ordering::Relaxed)),
        flags: word(&map, OFF_FLAGS).load(Ordering::Relaxed),
    };
    if fixed.check(&map).is_ok() {
        assert!(load_state(&map, Ordering::Relaxed).is_ok());
        assert!(load_sender(&map, Ordering::Relaxed).is_ok());
    }
    let Ok(region) = ring(&map) else {
        return;
    };
    if let Ok(mut consumer) = Consumer::attach(region) {
        let mut out = Vec::new();
        for _ in 0..64 {
            let Ok(m) = consumer.peek() else { break };
            assert!(m.len() <= procom_ring::max_message(capacity));
            out.resize(m.len(), 0);
            m.copy_to(&mut out);
        }
    }
    if let Ok(region) = ring(&map)
        && let Ok(mut producer) = Producer::attach(region)
    {
        let _ = producer.would_block(4);
        let _ = producer.push(b"check");
    }
}
