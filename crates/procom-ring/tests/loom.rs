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
use procom_ring::{Consumer, Error, HOT_WINDOW, Producer, Region, init, record_size};

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
    stream_with(capacity, lens, false, false);
}

/// As `stream`; with `wait_on_would_block`, a producer that finds the ring full waits until
/// `would_block` says `reserve` can make progress again, the condition the shared-memory
/// channel sleeps on: it must become false once the consumer has released (or skipped
/// padding) enough, never stay true while the consumer is done. With `consumer_waits`, the
/// consumer says it waits for messages (`Consumer::set_waiting`), so a producer that finds the
/// ring empty past the hot window starts over at the front; without, it never does. Returns
/// in how many of the interleavings explored a message started over.
fn stream_with(
    capacity: usize,
    lens: &'static [usize],
    wait_on_would_block: bool,
    consumer_waits: bool,
) -> usize {
    let started_over = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = std::sync::Arc::clone(&started_over);
    loom::model(move || {
        let counted = std::sync::Arc::clone(&counted);
        let shared = Shared::new(capacity);
        init(&shared);
        let mut p = Producer::attach(shared.clone()).unwrap();
        let mut c = Consumer::attach(shared).unwrap();
        c.set_waiting(consumer_waits);
        let producer = loom::thread::spawn(move || {
            for (i, len) in lens.iter().enumerate() {
                let m = msg(i, *len);
                let before = p.position();
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
                // Padded to the end though the record fitted before it: started over.
                let off = (before % capacity as u64) as usize;
                let need = record_size(*len);
                if need <= capacity - off && p.position() - before == (capacity - off + need) as u64
                {
                    assert!(off >= HOT_WINDOW, "message {i} started over at {off}");
                    assert!(
                        consumer_waits,
                        "message {i} started over for a consumer away"
                    );
                    counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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
    started_over.load(std::sync::atomic::Ordering::Relaxed)
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
    stream_with(64, &[20, 48], true, false);
}

#[test]
fn starting_over_at_the_front_of_an_empty_ring() {
    // Records of 208 and 72 bytes leave the producer at 280, past the 256-byte hot window, in
    // a 512-byte ring: the 16-byte record after them starts over at the front (padding the
    // last 232 bytes) if the producer finds the ring empty, and goes on at 280 otherwise; the
    // 48-byte one after it goes where that leaves it.
    stream(512, &[200, 60, 5, 40]);
    let n = stream_with(512, &[200, 60, 5, 40], false, true);
    assert!(n > 0, "no interleaving started over");
}
