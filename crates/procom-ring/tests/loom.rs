//! Loom models of the ring: every interleaving of one producer and one consumer, with loom
//! tracking each data byte so a missing happens-before edge is reported as a data race.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p procom-ring --test loom --release`.
//!
//! Record headers are atomic words in the ring; loom cannot view its byte cells as a word, so
//! the model keeps one atomic per 8 data bytes beside them, reached only through
//! [`Region::word`] (the ring accesses headers through it alone, and payload bytes never
//! through it).
#![cfg(loom)]

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::sync::atomic::AtomicU64;
use procom_ring::{Consumer, Error, Producer, Region, init};

struct Model {
    head: AtomicU64,
    tail: AtomicU64,
    waiting: AtomicU64,
    data: Vec<UnsafeCell<u8>>,
    words: Vec<AtomicU64>,
}

#[derive(Clone)]
struct Shared(Arc<Model>);

impl Shared {
    fn new(capacity: usize) -> Shared {
        Shared(Arc::new(Model {
            head: AtomicU64::new(0),
            tail: AtomicU64::new(0),
            waiting: AtomicU64::new(0),
            data: (0..capacity).map(|_| UnsafeCell::new(0)).collect(),
            words: (0..capacity / 8).map(|_| AtomicU64::new(0)).collect(),
        }))
    }
}

// SAFETY: the same atomics and cells on every call; load/store stay within `data`; `word` is
// a separate atomic per 8 data bytes, reached through it alone.
unsafe impl Region for Shared {
    fn head(&self) -> &AtomicU64 {
        &self.0.head
    }
    fn tail(&self) -> &AtomicU64 {
        &self.0.tail
    }
    fn waiting(&self) -> &AtomicU64 {
        &self.0.waiting
    }
    fn word(&self, off: usize) -> &AtomicU64 {
        &self.0.words[off / 8]
    }
    fn capacity(&self) -> usize {
        self.0.data.len()
    }
    unsafe fn load(&self, off: usize, dst: &mut [u8]) {
        for (i, d) in dst.iter_mut().enumerate() {
            // SAFETY: loom checks that no write to this cell races with this read.
            *d = self.0.data[off + i].with(|p| unsafe { *p });
        }
    }
    unsafe fn store(&self, off: usize, src: &[u8]) {
        for (i, s) in src.iter().enumerate() {
            // SAFETY: loom checks that no other access to this cell races with this write.
            self.0.data[off + i].with_mut(|p| unsafe { *p = *s });
        }
    }
    fn data_ptr(&self, _off: usize) -> *mut u8 {
        std::ptr::null_mut()
    }
}

fn msg(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|b| (b + 31 * i) as u8).collect()
}

/// Pushes each message, yielding while the ring is full; pops them all in the other thread.
fn stream(capacity: usize, lens: &'static [usize]) {
    stream_with(capacity, lens, false)
}

/// As `stream`; with `wait_on_would_block`, a producer that finds the ring full waits until
/// `would_block` says `reserve` can make progress again, the condition the shared-memory
/// channel sleeps on: it must become false once the consumer has released (or skipped
/// padding) enough, never stay true while the consumer is done.
fn stream_with(capacity: usize, lens: &'static [usize], wait_on_would_block: bool) {
    loom::model(move || {
        let shared = Shared::new(capacity);
        init(&shared);
        let mut p = Producer::attach(shared.clone()).unwrap();
        let mut c = Consumer::attach(shared).unwrap();
        let producer = loom::thread::spawn(move || {
            for (i, len) in lens.iter().enumerate() {
                let m = msg(i, *len);
                loop {
                    match p.push(&m) {
                        Ok(()) => break,
                        Err(Error::Full) if wait_on_would_block => {
                            while p.would_block(m.len()).unwrap() {
                                loom::thread::yield_now();
                            }
                        }
                        Err(Error::Full) => loom::thread::yield_now(),
                        Err(e) => panic!("push: {e:?}"),
                    }
                }
            }
        });
        for (i, len) in lens.iter().enumerate() {
            let got = loop {
                match c.peek() {
                    Ok(m) => {
                        let mut v = vec![0u8; m.len()];
                        m.copy_to(&mut v);
                        break v;
                    }
                    Err(Error::Empty) => loom::thread::yield_now(),
                    Err(e) => panic!("peek: {e:?}"),
                }
            };
            assert_eq!(got, msg(i, *len), "message {i}");
        }
        producer.join().unwrap();
        assert!(c.is_empty());
    });
}

#[test]
fn push_pop_in_order() {
    stream(64, &[5, 3]);
}

#[test]
fn wrap_around_with_padding() {
    // Records of 32 and 40 bytes in a 64-byte ring: the second needs a pad to the end.
    stream(64, &[20, 28, 12]);
}

#[test]
fn full_then_room() {
    // Each record takes 48 of 64 bytes: the second push is Full until the first is consumed.
    stream(64, &[40, 40]);
}

#[test]
fn empty_messages() {
    stream(64, &[0, 0, 0]);
}

#[test]
fn producer_waits_on_would_block_across_padding() {
    // A 32-byte record, then a 56-byte one: it does not fit before the end, so the producer
    // pads the last 32 bytes and waits until the consumer has released the first record and
    // skipped the padding.
    stream_with(64, &[20, 48], true);
}
