//! Messages that prove their own integrity, for the chaos and soak tests: each carries the
//! stream it belongs to, a sequence number, its length and a checksum, so a receiver can tell
//! a torn, altered, duplicated, reordered or lost message from a good one; plus the small
//! tools those tests share (a reproducible random source, counts of what was seen, figures).

use std::sync::OnceLock;
use std::time::Duration;

/// Bytes before the payload: magic, stream, sequence number, total length, checksum.
pub const HEADER: usize = 28;
const MAGIC: [u8; 4] = *b"PCTM";
/// The largest payload a message takes from the shared random block.
const BLOCK: usize = 512 << 10;

/// What a checked message said about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub stream: u32,
    pub seq: u64,
}

/// 512 KiB of fixed pseudo-random bytes: payloads are windows of it, so making a message
/// costs a copy, not a generator run.
fn block() -> &'static [u8] {
    static BLOCK_BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BLOCK_BYTES.get_or_init(|| {
        let mut r = Rng::new(0x9e37_79b9_7f4a_7c15);
        let mut v = Vec::with_capacity(BLOCK + 8);
        while v.len() < BLOCK {
            v.extend_from_slice(&r.next().to_le_bytes());
        }
        v.truncate(BLOCK);
        v
    })
}

/// A 64-bit FNV-1a over 8-byte words (a trailing part word zero-padded): any changed,
/// missing or extra byte changes it, with overwhelming probability.
fn checksum(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        let mut words = part.chunks_exact(8);
        for w in &mut words {
            let w = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
            h = (h ^ w).wrapping_mul(0x0000_0100_0000_01b3);
        }
        let rest = words.remainder();
        let mut last = [0u8; 8];
        last[..rest.len()].copy_from_slice(rest);
        h = (h ^ u64::from_le_bytes(last) ^ ((rest.len() as u64) << 56))
            .wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The size of message `seq` of a stream whose messages are at most `max` bytes: mostly small
/// (up to 512 bytes), every fourth one anywhere up to `max`.
pub fn size_of(seq: u64, max: usize) -> usize {
    let max = max.clamp(HEADER, HEADER + BLOCK);
    let spread = if seq % 4 == 3 {
        max - HEADER
    } else {
        512.min(max - HEADER)
    };
    let mix = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 17;
    HEADER + (mix % (spread as u64 + 1)) as usize
}

/// Message `seq` of `stream`, `len` bytes long (at least [`HEADER`]).
pub fn message(stream: u32, seq: u64, len: usize) -> Vec<u8> {
    let payload_len = len.clamp(HEADER, HEADER + BLOCK) - HEADER;
    let off =
        (seq.wrapping_mul(4099) ^ (u64::from(stream) * 131)) as usize % (BLOCK - payload_len + 1);
    let payload = &block()[off..off + payload_len];
    let mut m = Vec::with_capacity(HEADER + payload_len);
    m.extend_from_slice(&MAGIC);
    m.extend_from_slice(&stream.to_le_bytes());
    m.extend_from_slice(&seq.to_le_bytes());
    m.extend_from_slice(&((HEADER + payload_len) as u32).to_le_bytes());
    let sum = checksum(&[&m[..20], payload]);
    m.extend_from_slice(&sum.to_le_bytes());
    m.extend_from_slice(payload);
    m
}

/// Checks a received message: its magic, its length and its checksum.
pub fn check(m: &[u8]) -> Result<Seen, String> {
    if m.len() < HEADER || m[..4] != MAGIC {
        return Err(format!(
            "a torn or foreign {}-byte message (no header): {:02x?}",
            m.len(),
            &m[..m.len().min(16)]
        ));
    }
    let word = |r: std::ops::Range<usize>| {
        let mut b = [0u8; 8];
        b[..r.len()].copy_from_slice(&m[r]);
        u64::from_le_bytes(b)
    };
    let (stream, seq, len, sum) = (word(4..8) as u32, word(8..16), word(16..20), word(20..28));
    if len != m.len() as u64 {
        return Err(format!(
            "message {seq} of stream {stream} says it has {len} bytes but {} arrived",
            m.len()
        ));
    }
    if checksum(&[&m[..20], &m[HEADER..]]) != sum {
        return Err(format!(
            "message {seq} of stream {stream} ({len} bytes) fails its checksum"
        ));
    }
    Ok(Seen { stream, seq })
}

/// The order of one stream's messages as they arrive.
#[derive(Debug, Default)]
pub struct Order {
    next: Option<u64>,
    /// Messages checked.
    pub count: u64,
    /// Sequence numbers skipped (only where loss is allowed).
    pub lost: u64,
}

impl Order {
    /// A stream whose first message must be number `first`.
    pub fn starting_at(first: u64) -> Order {
        Order {
            next: Some(first),
            ..Order::default()
        }
    }

    /// A reliable stream: after the first message (whatever its number: a receiver may join
    /// late), each one is the next, exactly: nothing lost, duplicated or reordered.
    pub fn reliable(&mut self, seq: u64) -> Result<(), String> {
        if let Some(next) = self.next
            && seq != next
        {
            return Err(if seq < next {
                format!("message {seq} arrived again or late (expected {next})")
            } else {
                format!("messages {next} to {} were lost (got {seq})", seq - 1)
            });
        }
        self.next = Some(seq + 1);
        self.count += 1;
        Ok(())
    }

    /// A lossy stream (UDP): numbers only go up; each gap is counted as lost.
    pub fn lossy(&mut self, seq: u64) -> Result<(), String> {
        if let Some(next) = self.next {
            if seq < next {
                return Err(format!(
                    "datagram {seq} arrived again or out of order (expected {next} or later)"
                ));
            }
            self.lost += seq - next;
        }
        self.next = Some(seq + 1);
        self.count += 1;
        Ok(())
    }
}

/// xorshift64*: a small reproducible random source (tests take no dependency for this).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(start: u64) -> Rng {
        Rng(start | 1)
    }

    /// A fresh source, different on every run; returns the value that reproduces it too.
    pub fn fresh() -> (Rng, u64) {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let start = nanos ^ u64::from(std::process::id()).rotate_left(32);
        (Rng::new(start), start)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `lo..=hi`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// "median M ms, max X ms" of some durations (or that there were none).
pub fn spread(times: &[Duration]) -> String {
    if times.is_empty() {
        return "none measured".into();
    }
    let mut t = times.to_vec();
    t.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "median {:.2} ms, max {:.2} ms over {}",
        ms(t[t.len() / 2]),
        ms(t[t.len() - 1]),
        t.len()
    )
}
