//! The datagram flavor (`udp:`, `unixgram:`): one datagram is one message. UDP with length
//! framing carries procom's 16-byte header so loss, reordering and duplicates are counted per
//! sender; a datagram a receiver cannot deliver fails only the receive that met it, and is
//! counted.

use crate::error::{Error, ErrorKind};

mod recv;
mod send;

pub(crate) use recv::{DgramReceiver, bind_dgram};
pub(crate) use send::{DgramSender, connect_dgram};

/// The first bytes of procom's UDP header: `ff 50 43 55` (`\xffPCU`; no text starts with
/// `ff`, and no length prefix a datagram could carry does).
pub const UDP_MAGIC: [u8; 4] = [0xff, b'P', b'C', b'U'];
/// The header version this library writes and reads.
pub const UDP_VERSION: u8 = 1;
/// Bytes of procom's UDP header (length framing only), before the payload: [`UDP_MAGIC`],
/// [`UDP_VERSION`], three zero bytes (reserved), then the sender's sequence number (8 bytes,
/// big-endian, from 0). In Python: `b"\xffPCU\x01\0\0\0" + struct.pack(">Q", seq) + payload`.
pub const UDP_HEADER_LEN: usize = 16;

/// procom's UDP header for datagram number `seq`.
fn udp_header(seq: u64) -> [u8; UDP_HEADER_LEN] {
    let mut h = [0u8; UDP_HEADER_LEN];
    h[..4].copy_from_slice(&UDP_MAGIC);
    h[4] = UDP_VERSION;
    h[8..].copy_from_slice(&seq.to_be_bytes());
    h
}

/// The sequence number in a datagram that starts with procom's UDP header; anything else is
/// `Malformed` (and is never delivered, whole or in part). Pure, for tests and fuzzing.
fn parse_udp_header(datagram: &[u8]) -> Result<u64, Error> {
    let refused = |why: String| {
        Error::new(ErrorKind::Malformed).detail(format!(
            "a {}-byte datagram {why}, so it was discarded; plain datagrams are received with raw or lines framing (procom recv without --framed)",
            datagram.len()
        ))
    };
    let Some(header) = datagram.first_chunk::<UDP_HEADER_LEN>() else {
        return Err(refused(format!(
            "does not carry procom's {UDP_HEADER_LEN}-byte UDP header (it is shorter than that)"
        )));
    };
    if header[..4] != UDP_MAGIC {
        return Err(refused(format!(
            "does not carry procom's {UDP_HEADER_LEN}-byte UDP header (it starts {:02x?}, not {UDP_MAGIC:02x?})",
            &header[..4]
        )));
    }
    if header[4..8] != [UDP_VERSION, 0, 0, 0] {
        return Err(refused(format!(
            "carries procom's magic but not procom's {UDP_HEADER_LEN}-byte UDP header version {UDP_VERSION} (its version and reserved bytes are {:02x?})",
            &header[4..8]
        )));
    }
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&header[8..]);
    Ok(u64::from_be_bytes(seq))
}

/// What a datagram receiver has seen of its senders' sequence numbers (UDP with length
/// framing; otherwise only `received` counts).
///
/// Each sender (source address) numbers its datagrams from 0, and the receiver follows each
/// one separately, starting from the first datagram it hears from it. A skipped number counts
/// as lost until it arrives late, when it moves to `reordered`; a number heard twice is
/// delivered again and counted in `duplicated` (within the last 64 numbers of that sender;
/// an older straggler counts as late). At most 1024 senders are followed at once: past that,
/// the bookkeeping of an arbitrary one is dropped and it starts afresh.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DatagramStats {
    /// Datagrams delivered.
    pub received: u64,
    /// Sequence numbers skipped (datagrams presumed lost, unless they come late).
    pub lost: u64,
    /// Datagrams that arrived after a later one from the same sender.
    pub reordered: u64,
    /// Datagrams whose sequence number had already been delivered (the network duplicated
    /// them, or a sender resent them).
    pub duplicated: u64,
    /// Datagrams received but not delivered: over the size limit, or (UDP with length
    /// framing) not carrying procom's header. Each was reported by the receive that met it
    /// ([`ErrorKind::TooLarge`], [`ErrorKind::Malformed`]), and the receiver went on. Their
    /// sequence numbers are not read, so a refused procom datagram also leaves a gap that
    /// counts as lost.
    pub refused: u64,
}

/// One sender's sequence numbers as seen so far: the next expected number, and which of the
/// 64 before it arrived (bit `i` is `next - 1 - i`).
#[derive(Debug, Clone, Copy)]
struct SeqWindow {
    next: u64,
    seen: u64,
}

/// How many senders a UDP receiver follows at once.
const MAX_SENDERS: usize = 1024;

impl DatagramStats {
    /// Counts datagram `seq` against its sender's window (`None`: the sender's first).
    fn count(&mut self, window: &mut Option<SeqWindow>, seq: u64) {
        self.received += 1;
        let Some(w) = window else {
            *window = Some(SeqWindow {
                next: seq.saturating_add(1),
                seen: 1,
            });
            return;
        };
        if seq >= w.next {
            let gap = seq - w.next;
            self.lost = self.lost.saturating_add(gap);
            w.seen = w.seen.checked_shl((gap + 1).min(64) as u32).unwrap_or(0) | 1;
            w.next = seq.saturating_add(1);
            return;
        }
        let age = w.next - 1 - seq;
        if age < 64 && w.seen & (1 << age) != 0 {
            self.duplicated += 1;
            return;
        }
        if age < 64 {
            w.seen |= 1 << age;
        }
        // It was counted lost when a later one overtook it: it is late, not lost.
        self.reordered += 1;
        self.lost = self.lost.saturating_sub(1);
    }
}

/// The UDP header's and the sequence bookkeeping's invariants on arbitrary bytes, shared by
/// the fuzz target (`fuzz/fuzz_targets/dgram_header.rs`) and the corpus replay in
/// `cargo test`. `data` is taken as one datagram, and as a series of datagrams from one sender
/// (each line of `data` a datagram).
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn check_datagrams(data: &[u8]) {
    for datagram in std::iter::once(data).chain(data.split(|b| *b == b'\n')) {
        match parse_udp_header(datagram) {
            Ok(seq) => assert_eq!(&udp_header(seq)[..], &datagram[..UDP_HEADER_LEN]),
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::Malformed);
                assert!(
                    datagram.len() < UDP_HEADER_LEN
                        || datagram[..4] != UDP_MAGIC
                        || datagram[4..8] != [UDP_VERSION, 0, 0, 0]
                );
            }
        }
    }
    // Hostile sequence numbers: 8 bytes each, from one sender.
    let mut stats = DatagramStats::default();
    let mut window = None;
    for (n, chunk) in data.chunks_exact(8).enumerate() {
        let seq = u64::from_be_bytes(chunk.try_into().expect("8 bytes"));
        let before = stats;
        stats.count(&mut window, seq);
        assert_eq!(stats.received, n as u64 + 1);
        assert!(stats.duplicated + stats.reordered < stats.received);
        assert!(stats.duplicated >= before.duplicated && stats.reordered >= before.reordered);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counted(seqs: &[u64]) -> DatagramStats {
        let mut stats = DatagramStats::default();
        let mut window = None;
        for &s in seqs {
            stats.count(&mut window, s);
        }
        stats
    }

    fn stats(received: u64, lost: u64, reordered: u64, duplicated: u64) -> DatagramStats {
        DatagramStats {
            received,
            lost,
            reordered,
            duplicated,
            refused: 0,
        }
    }

    #[test]
    fn sequence_numbers_count_loss_late_arrivals_and_duplicates() {
        assert_eq!(counted(&[0, 1, 2, 3]), stats(4, 0, 0, 0));
        // Counting starts at the first datagram heard, whatever its number.
        assert_eq!(counted(&[7, 8]), stats(2, 0, 0, 0));
        assert_eq!(counted(&[0, 3]), stats(2, 2, 0, 0));
        assert_eq!(counted(&[0, 2, 1, 3]), stats(4, 0, 1, 0));
        assert_eq!(counted(&[0, 1, 1, 2]), stats(4, 0, 0, 1));
        // A late datagram heard twice is late once, then a duplicate.
        assert_eq!(counted(&[0, 2, 1, 1]), stats(4, 0, 1, 1));
        // Older than the 64-number window: late, and no longer checked for duplicates.
        assert_eq!(counted(&[0, 100, 1]), stats(3, 98, 1, 0));
    }

    #[test]
    fn udp_header_round_trips_and_nothing_else_passes_for_it() {
        for seq in [0, 1, 0x0102_0304_0506_0708, u64::MAX] {
            let mut d = udp_header(seq).to_vec();
            assert_eq!(parse_udp_header(&d).unwrap(), seq);
            d.extend_from_slice(b"payload");
            assert_eq!(parse_udp_header(&d).unwrap(), seq);
        }
        let mut framed = 5u32.to_be_bytes().to_vec();
        framed.extend_from_slice(b"hello");
        let long = [b'x'; 65_535];
        let mut version = udp_header(0);
        version[4] = 2;
        let mut reserved = udp_header(0);
        reserved[6] = 0x80;
        for bad in [
            &b""[..],
            b"raw no frame",
            &framed,
            &long,
            &udp_header(7)[..UDP_HEADER_LEN - 1],
            &version,
            &reserved,
        ] {
            let e = parse_udp_header(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Malformed);
            assert!(
                e.to_string()
                    .contains(&format!("a {}-byte datagram", bad.len())),
                "{e}"
            );
            assert!(e.to_string().contains("without --framed"), "{e}");
        }
    }

    #[test]
    fn hostile_sequence_numbers_do_not_overflow() {
        let s = counted(&[0, u64::MAX, u64::MAX, 5, u64::MAX - 1]);
        assert_eq!(s.received, 5);
        assert_eq!(s.duplicated, 1);
        let s = counted(&[u64::MAX, 0, u64::MAX]);
        assert_eq!(s.received, 3);
    }
}
