//! A lock-free single-producer, single-consumer ring of variable-size messages, over memory
//! it is given.
//!
//! This crate makes no system calls and knows no names: the shared-memory channel in `procom`
//! maps a segment, hands its bytes to [`Producer`] and [`Consumer`] here, and adds waiting,
//! waking and peer-death detection around them. Keeping the ring pure lets loom model-check
//! every interleaving (`RUSTFLAGS="--cfg loom" cargo test -p procom-ring --test loom`) and miri
//! check every memory access (`cargo +nightly miri test -p procom-ring`).
//!
//! # Layout
//!
//! ```text
//! offset 0    head: u64     bytes consumed so far (written by the consumer only)
//! offset 8    waiting: u64  nonzero while the consumer waits for a message (consumer only)
//! offset 64   tail: u64     bytes produced so far (written by the producer only)
//! offset 128  data: capacity bytes (a power of two, at least 64)
//! ```
//!
//! Positions grow without wrapping; `position % capacity` is the offset in `data`. Each message
//! is a record: an 8-byte record header followed by `len` payload bytes, padded to a multiple
//! of 8. The header is one aligned `u64` word, always accessed atomically: `len` in its low 32
//! bits, a tag in its high 32 bits (`MSG1` for a message, `PAD1` for padding); the word 0 is
//! no record (the *end mark*). A record never wraps: when it does not fit before the end of
//! `data`, the producer first publishes a padding record that runs to the end, and the message
//! starts at offset 0. So a received message is always one contiguous slice, readable in place.
//! The ring always keeps 8 bytes free for the end mark after the last record, so a record
//! holds at most `capacity - 8` bytes and a message at most `capacity - 16`.
//!
//! # Synchronisation
//!
//! The record header at the consumer's position is the flag it polls: it never reads `tail`
//! on the way to a message. To publish a record at position `p` of `n` bytes, the producer
//! writes the payload, stores the end mark 0 into the header word at `p + n` (`Relaxed`), then
//! stores the record's header at `p` with `Release`, then its new position into `tail`
//! (`Release`; read only by a producer that attaches later, see [`Producer::attach`]). The
//! consumer loads the header word at its position with `Acquire`: 0 is an empty ring, anything
//! else a published record whose bytes are visible. Once it has moved past that record, the
//! word it loads next was written no earlier than the end mark the producer stored before
//! publishing it (happens-before, then coherence), so a header left over from an earlier lap
//! is never mistaken for a new record. The consumer reads a record, then stores `head` with
//! `Release`; the producer loads `head` with `Acquire` before reusing those bytes, and only
//! when the room it last saw is not enough. A message that keeps up thus moves its record's
//! cache lines and nothing else: `head` and `tail` each stay in their writer's cache. Each side
//! writes only its own position and keeps its authoritative copy in local memory, so a peer
//! scribbling on the other position cannot move ours.
//!
//! # Hostile peers
//!
//! The other side may be another process that is buggy or malicious. Every control word is
//! read once into a local, validated (positions within one capacity of each other, records
//! inside the ring, known tags), and only then used; anything inconsistent is
//! [`Error::Corrupted`], never an out-of-bounds access or a panic. The producer rereads the
//! consumer's position only when the room it last saw is not enough (or a rewind may be due),
//! so a hostile `head` is reported then, not on every send. The consumer's `waiting` word is a
//! hint, never validated: whatever it holds decides only whether the producer starts over at
//! the front of an empty ring (nonzero: it may), never what the consumer receives.

#![warn(missing_docs)]
#![cfg_attr(not(test), no_std)]

#[cfg(not(loom))]
use core::sync::atomic::{AtomicU64, Ordering};
#[cfg(loom)]
use loom::sync::atomic::{AtomicU64, Ordering};

/// Offset of `head` in the ring's memory.
pub const HEAD_OFFSET: usize = 0;
/// Offset of the consumer's `waiting` word (in `head`'s cache line: the producer reads it
/// only when it reads `head` anyway).
pub const WAITING_OFFSET: usize = 8;
/// Offset of `tail` in the ring's memory (its own cache line, away from `head`).
pub const TAIL_OFFSET: usize = 64;
/// Bytes before the data area.
pub const HEADER_SIZE: usize = 128;
/// Bytes in a record header.
pub const RECORD_HEADER: usize = 8;
/// Bytes the ring keeps free after the last record, for the end mark.
pub const END_MARK: usize = 8;
/// The smallest capacity accepted.
pub const MIN_CAPACITY: usize = 64;

const TAG_MESSAGE: u32 = 0x3147_534d; // "MSG1"
const TAG_PAD: u32 = 0x3144_4150; // "PAD1"

/// What can go wrong with a ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The message does not fit now; try again once the consumer has made room.
    Full,
    /// No message is waiting.
    Empty,
    /// The message can never fit: its record needs more than the whole capacity.
    TooLarge {
        /// The largest payload this ring can carry.
        max: usize,
    },
    /// The shared control words or records are inconsistent: the peer is broken or hostile.
    Corrupted,
    /// The memory given is too small, misaligned, or its capacity is not a power of two.
    BadLayout,
}

/// How far into the ring an empty ring's next message may start before the producer pads
/// back to offset 0 (see [`Producer::reserve`]). A few cache lines: a channel whose consumer
/// keeps up then moves the same lines back and forth, as a mailbox does, instead of lines it
/// has not touched for a while, which cost more to take over (64-byte ping-pongs took 1.7
/// times as long with a 16 KiB window). Messages from [`STREAM_MIN`] to [`STREAM_MAX`] bytes
/// do not start over: see there.
pub const HOT_WINDOW: usize = 256;

/// The shortest message (in payload bytes) that goes on through the ring instead of starting
/// over at offset 0 when the ring is empty, and ([`STREAM_MAX`]) the longest. Between the
/// two, writing into lines the other side has not touched for a while costs less than taking
/// back the ones it just read: a spinning ping-pong through a 4 MiB ring took 18–50% less time than the same
/// ring starting over (and than a single reused mailbox) from 8 KiB to 256 KiB messages, on
/// a 2-core AMD EPYC virtual machine. Below, the few hot lines win (4 KiB messages took 1.3
/// times as long going on through the ring); above, two slots that stay in the caches win
/// (512 KiB and 1 MiB messages took 1.1–1.25 times as long going on).
pub const STREAM_MIN: usize = 8 * 1024;
/// The longest message that goes on through the ring (see [`STREAM_MIN`]).
pub const STREAM_MAX: usize = 256 * 1024;

/// Whether a message of `len` payload bytes may start over at offset 0 (see [`STREAM_MIN`]).
const fn starts_over(len: usize) -> bool {
    len < STREAM_MIN || len > STREAM_MAX
}

/// Bytes a record carrying `len` payload bytes occupies.
///
/// Saturates instead of overflowing (a length near `usize::MAX`, which a peer can hand a
/// 32-bit process, gives `usize::MAX`): such a record never fits in a ring, and callers refuse
/// it by its length anyway.
pub const fn record_size(len: usize) -> usize {
    let padded = match len.checked_add(7) {
        Some(n) => n & !7,
        None => usize::MAX & !7,
    };
    RECORD_HEADER.saturating_add(padded)
}

/// The largest payload a ring of `capacity` data bytes can carry (0 below a record header and
/// an end mark).
pub const fn max_message(capacity: usize) -> usize {
    capacity.saturating_sub(RECORD_HEADER + END_MARK)
}

/// Total bytes of memory a ring with `capacity` data bytes needs (saturating).
pub const fn bytes_needed(capacity: usize) -> usize {
    HEADER_SIZE.saturating_add(capacity)
}

/// The memory a ring lives in: two positions and a data area.
///
/// # Safety
///
/// Implementations must return the same positions and data area on every call, and `load` and
/// `store` must access exactly the `capacity()` data bytes (callers stay in bounds). `word`
/// must return the same atomic for the same offset on every call: the 8 data bytes at that
/// offset, or, where a region cannot view bytes as a word (the loom model), a word of its own
/// that only `word` reaches (record headers are accessed through `word` alone).
pub unsafe trait Region {
    /// The consumer's position.
    fn head(&self) -> &AtomicU64;
    /// The producer's position.
    fn tail(&self) -> &AtomicU64;
    /// The consumer's `waiting` word: nonzero while it waits for a message.
    fn waiting(&self) -> &AtomicU64;
    /// The data word at `off`, a multiple of 8 below `capacity()`: a record header.
    fn word(&self, off: usize) -> &AtomicU64;
    /// Data bytes; a power of two.
    fn capacity(&self) -> usize;
    /// Copies `dst.len()` data bytes starting at `off` into `dst`.
    ///
    /// # Safety
    /// `off + dst.len() <= capacity()`, and the protocol must guarantee that the producer is
    /// not writing these bytes now.
    unsafe fn load(&self, off: usize, dst: &mut [u8]);
    /// Copies `src` into the data bytes starting at `off`.
    ///
    /// # Safety
    /// `off + src.len() <= capacity()`, and the protocol must guarantee that the consumer is
    /// not reading these bytes now.
    unsafe fn store(&self, off: usize, src: &[u8]);
    /// A pointer to data byte `off`, for in-place access, or null where the region cannot
    /// offer one (the loom model).
    fn data_ptr(&self, off: usize) -> *mut u8;
}

/// A region whose [`Region::data_ptr`] is a real pointer into the data area, so messages can
/// be read and written in place.
///
/// # Safety
///
/// For every offset below `capacity()`, `data_ptr(off)` must point to that data byte, valid
/// for reads and writes as long as the region is.
pub unsafe trait InPlace: Region {}

/// A ring in raw memory, such as a mapped shared-memory segment.
#[derive(Debug, Clone, Copy)]
pub struct RawRegion {
    base: *mut u8,
    capacity: usize,
}

// SAFETY: the region is only a pointer; all access goes through atomics for the positions and
// through the ring protocol (one writer per byte range at a time) for the data.
unsafe impl Send for RawRegion {}
// SAFETY: as above.
unsafe impl Sync for RawRegion {}

impl RawRegion {
    /// Views `len` bytes at `base` as a ring whose data area fills everything after the
    /// header, rounded down to a power of two.
    ///
    /// # Safety
    ///
    /// `base` must be valid for reads and writes of `len` bytes for as long as the region and
    /// anything made from it are used, initialised (the consumer may read published bytes no
    /// record defines, such as padding; a fresh mapping reads as zeros), and aligned to 64
    /// bytes. Other processes may access the
    /// memory, but only through this protocol (a misbehaving one can corrupt messages, which the
    /// consumer detects where it can, but cannot make this side access memory out of bounds).
    pub unsafe fn new(base: *mut u8, len: usize) -> Result<RawRegion, Error> {
        if base.is_null() || !(base as usize).is_multiple_of(64) || len < bytes_needed(MIN_CAPACITY)
        {
            return Err(Error::BadLayout);
        }
        let room = len - HEADER_SIZE;
        let capacity = 1usize << (usize::BITS - 1 - room.leading_zeros());
        Ok(RawRegion { base, capacity })
    }
}

// SAFETY: `new`'s contract makes `base..base+HEADER_SIZE+capacity` valid and 64-aligned, so the
// positions are aligned u64s inside it and the data area follows them.
unsafe impl Region for RawRegion {
    #[inline]
    fn head(&self) -> &AtomicU64 {
        // SAFETY: in bounds and 8-aligned (see the impl's safety note); AtomicU64 has the size
        // and alignment of u64, and shared access through atomics is what it is for.
        unsafe { &*(self.base.add(HEAD_OFFSET) as *const AtomicU64) }
    }
    #[inline]
    fn tail(&self) -> &AtomicU64 {
        // SAFETY: as for `head`.
        unsafe { &*(self.base.add(TAIL_OFFSET) as *const AtomicU64) }
    }
    #[inline]
    fn waiting(&self) -> &AtomicU64 {
        // SAFETY: as for `head`.
        unsafe { &*(self.base.add(WAITING_OFFSET) as *const AtomicU64) }
    }
    #[inline]
    fn word(&self, off: usize) -> &AtomicU64 {
        // Clamped into the data area, so even a caller's mistake cannot leave it.
        let off = (off & !7).min(self.capacity - 8);
        // SAFETY: `HEADER_SIZE + off + 8 <= HEADER_SIZE + capacity`, inside the valid memory,
        // and 8-aligned (the base is 64-aligned, `HEADER_SIZE` and `off` multiples of 8).
        unsafe { &*(self.base.add(HEADER_SIZE + off) as *const AtomicU64) }
    }
    #[inline]
    fn capacity(&self) -> usize {
        self.capacity
    }
    #[inline]
    unsafe fn load(&self, off: usize, dst: &mut [u8]) {
        // SAFETY: the caller keeps `off + dst.len()` within the data area, which is valid; the
        // bytes are not being written (protocol), and `dst` is a distinct local buffer.
        unsafe {
            core::ptr::copy_nonoverlapping(
                self.base.add(HEADER_SIZE + off),
                dst.as_mut_ptr(),
                dst.len(),
            )
        }
    }
    #[inline]
    unsafe fn store(&self, off: usize, src: &[u8]) {
        // SAFETY: the caller keeps `off + src.len()` within the data area, which is valid; the
        // bytes are not being read (protocol), and `src` is a distinct local buffer.
        unsafe {
            core::ptr::copy_nonoverlapping(
                src.as_ptr(),
                self.base.add(HEADER_SIZE + off),
                src.len(),
            )
        }
    }
    #[inline]
    fn data_ptr(&self, off: usize) -> *mut u8 {
        self.base.wrapping_add(HEADER_SIZE + off)
    }
}

// SAFETY: `data_ptr` is `base + HEADER_SIZE + off`, inside the memory `new`'s contract makes
// valid.
unsafe impl InPlace for RawRegion {}

/// Resets a ring's positions to zero and writes the end mark at offset 0. Only the creator
/// calls this, before any peer attaches.
pub fn init<R: Region>(region: &R) {
    region.head().store(0, Ordering::Relaxed);
    region.waiting().store(0, Ordering::Relaxed);
    region.word(0).store(0, Ordering::Relaxed);
    region.tail().store(0, Ordering::Release);
}

fn check_capacity<R: Region>(region: &R) -> Result<usize, Error> {
    let c = region.capacity();
    if c < MIN_CAPACITY || !c.is_power_of_two() || c > u32::MAX as usize {
        return Err(Error::BadLayout);
    }
    Ok(c)
}

/// The writing side. There must be exactly one producer per ring at a time.
#[derive(Debug)]
pub struct Producer<R: Region> {
    region: R,
    capacity: usize,
    /// Our authoritative tail; the shared one is only ever written from it.
    tail: u64,
    /// The consumer's position as last read (validated then): it only grows, so the room it
    /// leaves is always there. `reserve` rereads the shared word only when this is not enough,
    /// which keeps the consumer's cache line out of the send path of a channel that keeps up.
    seen_head: u64,
    /// Whether an empty ring past the hot window may start over (see [`Producer::set_rewind`]).
    rewind: bool,
    /// Whether the consumer had taken everything when we last read its position. Only then
    /// does a send past the hot window read it again to see whether it may start over: a
    /// consumer that lags behind a stream is not asked on every send.
    caught_up: bool,
}

/// The reading side. There must be exactly one consumer per ring at a time.
#[derive(Debug)]
pub struct Consumer<R: Region> {
    region: R,
    capacity: usize,
    /// Our authoritative head; the shared one is only ever written from it.
    head: u64,
    /// What we last wrote into the shared `waiting` word.
    waiting: bool,
}

/// The data offset of `position` in a ring of `capacity` bytes (a power of two, checked when
/// the producer or consumer attaches): a mask, not a division, on every send and poll.
fn wrap(position: u64, capacity: usize) -> usize {
    (position & (capacity as u64 - 1)) as usize
}

/// A record header word: `len` in the low 32 bits, `tag` in the high ones.
fn encode(len: usize, tag: u32) -> u64 {
    (len as u32 as u64) | ((tag as u64) << 32)
}

/// A record header word's length and tag.
fn decode(h: u64) -> (usize, u32) {
    ((h as u32) as usize, (h >> 32) as u32)
}

/// Space reserved in the ring for one message, written in place and then committed.
#[derive(Debug)]
pub struct Slot<'a, R: Region> {
    producer: &'a mut Producer<R>,
    /// Data offset of the payload.
    off: usize,
    len: usize,
}

impl<R: Region> Producer<R> {
    /// Takes the producer role over a ring whose positions are already initialised, resuming
    /// at the shared tail (a new producer may replace one that died).
    ///
    /// A producer that died between publishing a record's header and storing `tail` left that
    /// record behind the shared tail, and the consumer may already have read it: the new
    /// producer resumes after every record published at the shared tail, up to the first end
    /// mark.
    pub fn attach(region: R) -> Result<Producer<R>, Error> {
        let capacity = check_capacity(&region)?;
        // Acquire pairs with the previous producer's Release of tail.
        let mut tail = region.tail().load(Ordering::Acquire);
        let head = region.head().load(Ordering::Acquire);
        if !tail.is_multiple_of(8) {
            return Err(Error::Corrupted);
        }
        // Each step moves at least 8 bytes and stays within one capacity of `head`, so this
        // ends after at most capacity / 8 steps whatever the memory holds.
        loop {
            let off = wrap(tail, capacity);
            // Acquire pairs with the previous producer's Release of the header.
            let (len, tag) = decode(region.word(off).load(Ordering::Acquire));
            let size = match tag {
                0 if len == 0 => break,
                // Padding always runs to the end of the data (as the consumer requires): a
                // shorter one would leave the position off the 8-byte grid.
                TAG_PAD => len
                    .checked_add(RECORD_HEADER)
                    .filter(|n| *n == capacity - off),
                TAG_MESSAGE if len <= max_message(capacity) => Some(record_size(len)),
                _ => None,
            };
            match size {
                Some(n) if n <= capacity - off => tail = tail.wrapping_add(n as u64),
                _ => return Err(Error::Corrupted),
            }
            if tail.wrapping_sub(head) > capacity as u64 {
                return Err(Error::Corrupted);
            }
        }
        if tail.wrapping_sub(head) > capacity as u64 {
            return Err(Error::Corrupted);
        }
        Ok(Producer {
            region,
            capacity,
            tail,
            seen_head: head,
            rewind: true,
            caught_up: true,
        })
    }

    /// The largest payload this ring carries.
    pub fn max_message(&self) -> usize {
        max_message(self.capacity)
    }

    /// Bytes the consumer has not released yet, as seen now. A hostile consumer can make this
    /// exceed the capacity (a `head` ahead of our tail reads as a huge number); use
    /// [`Producer::would_block`] to decide whether to wait.
    pub fn in_flight(&self) -> u64 {
        self.tail
            .wrapping_sub(self.region.head().load(Ordering::Acquire))
    }

    /// Bytes published so far (messages and padding): the position the consumer catches up
    /// with. It moves on every commit and on every padding record [`Producer::reserve`]
    /// publishes, even when `reserve` then reports `Full`; a caller that lets a consumer sleep
    /// must wake it whenever this moves.
    pub fn position(&self) -> u64 {
        self.tail
    }

    /// Whether [`Producer::reserve`] of `len` bytes would return `Full` without changing
    /// anything, given the consumer's position now: the exact condition to sleep on (after
    /// announcing the wait and a fence, so the consumer's next release is either seen here or
    /// sees the announcement).
    ///
    /// `false` means `reserve` would succeed or make progress (publish a padding record). A
    /// consumer position that cannot be right (more than one capacity behind, or ahead of our
    /// tail) is `Corrupted`; a length that can never fit is `TooLarge`.
    pub fn would_block(&self, len: usize) -> Result<bool, Error> {
        if len > self.max_message() {
            return Err(Error::TooLarge {
                max: self.max_message(),
            });
        }
        let need = record_size(len);
        // Acquire pairs with the consumer's Release of head, as in `reserve`.
        let head = self.region.head().load(Ordering::Acquire);
        let used = self.tail.wrapping_sub(head);
        if used > self.capacity as u64 {
            return Err(Error::Corrupted);
        }
        let free = self.capacity - used as usize;
        let to_end = self.capacity - wrap(self.tail, self.capacity);
        // The same two `Full` exits as `reserve`: no room for the record (and the end mark
        // after it) where it would go, or none for the padding that would move it to the start.
        Ok(if need <= to_end {
            need + END_MARK > free
        } else {
            to_end + END_MARK > free
        })
    }

    /// Allows or forbids starting over at offset 0 when the ring is found empty past
    /// [`HOT_WINDOW`] (allowed by default; messages from [`STREAM_MIN`] to [`STREAM_MAX`] bytes
    /// never start over, and neither does anything while the consumer does not say it waits,
    /// [`Consumer::set_waiting`]). Starting over pads the rest of the ring, and until the
    /// consumer has skipped that padding the producer can use only the bytes before it: worth
    /// it for a consumer that keeps up (the ring's working set stays in the caches), a trap for
    /// one that is away (three 64-byte messages, then `Full` until it looks again) or asleep (a
    /// 1 MiB message just past the window leaves room for one more message, and the producer
    /// waits for a wake-up). A caller that knows the consumer sleeps forbids it for that send.
    pub fn set_rewind(&mut self, allowed: bool) {
        self.rewind = allowed;
    }

    /// Reserves room for a `len`-byte message at a contiguous place in the ring.
    pub fn reserve(&mut self, len: usize) -> Result<Slot<'_, R>, Error> {
        if len > self.max_message() {
            return Err(Error::TooLarge {
                max: self.max_message(),
            });
        }
        let need = record_size(len);
        loop {
            let off = wrap(self.tail, self.capacity);
            let to_end = self.capacity - off;
            // The fast path: the room the last head we read leaves (never more than there
            // is), where no rewind is due (inside the hot window, rewinding off, a message
            // from STREAM_MIN to STREAM_MAX bytes, or a consumer that lagged at our last look).
            let seen_free =
                (self.capacity as u64).saturating_sub(self.tail.wrapping_sub(self.seen_head));
            let may_rewind = self.rewind && starts_over(len);
            if (off < HOT_WINDOW || !may_rewind || !self.caught_up)
                && need <= to_end
                && (need + END_MARK) as u64 <= seen_free
            {
                return Ok(Slot {
                    producer: self,
                    off: off + RECORD_HEADER,
                    len,
                });
            }
            // Acquire pairs with the consumer's Release of head: the bytes it released are
            // no longer read once we see the new head.
            let head = self.region.head().load(Ordering::Acquire);
            let used = self.tail.wrapping_sub(head);
            if used > self.capacity as u64 {
                return Err(Error::Corrupted);
            }
            self.seen_head = head;
            self.caught_up = used == 0;
            let free = self.capacity - used as usize;
            // An empty ring past the hot window goes back to the start (through a padding
            // record, as at the end), so a channel whose consumer keeps up touches the same
            // few lines again and again instead of streaming through the whole ring (not for
            // a message from STREAM_MIN to STREAM_MAX bytes, see there).
            // Only when the record then fits before where we are: otherwise it would wait for
            // the consumer to skip the padding first.
            let rewind = may_rewind
                && used == 0
                && off >= HOT_WINDOW
                && need + END_MARK <= off
                && self.region.waiting().load(Ordering::Relaxed) != 0;
            if need <= to_end && !rewind {
                if need + END_MARK > free {
                    return Err(Error::Full);
                }
                return Ok(Slot {
                    producer: self,
                    off: off + RECORD_HEADER,
                    len,
                });
            }
            // Not enough room before the end (or rewinding): pad to the end, publish the pad,
            // go round.
            if to_end + END_MARK > free {
                return Err(Error::Full);
            }
            self.publish(to_end, encode(to_end - RECORD_HEADER, TAG_PAD));
        }
    }

    /// Publishes the record of `size` bytes at our position, whose payload is written: the end
    /// mark after it, then its `header`, then the new position.
    fn publish(&mut self, size: usize, header: u64) {
        let off = wrap(self.tail, self.capacity);
        let next = (off + size) & (self.capacity - 1);
        // Relaxed: the header's Release below orders it before the consumer can reach it. The
        // callers checked that `size + END_MARK` bytes are free, so the consumer is not there.
        self.region.word(next).store(0, Ordering::Relaxed);
        // Release: the record's bytes and the end mark are written before the consumer, which
        // polls this word, can see the header.
        self.region.word(off).store(header, Ordering::Release);
        self.tail = self.tail.wrapping_add(size as u64);
        // Release: read by a producer that attaches later.
        self.region.tail().store(self.tail, Ordering::Release);
    }

    /// Copies `msg` into the ring as one message.
    pub fn push(&mut self, msg: &[u8]) -> Result<(), Error> {
        let mut slot = self.reserve(msg.len())?;
        slot.write(0, msg);
        slot.commit();
        Ok(())
    }
}

impl<R: Region> Slot<'_, R> {
    /// The payload size reserved.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the reserved payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies `bytes` into the payload at `at`, clipped to the reserved size.
    pub fn write(&mut self, at: usize, bytes: &[u8]) {
        if at >= self.len {
            return;
        }
        let n = bytes.len().min(self.len - at);
        // SAFETY: `off + at + n <= off + len`, inside the reserved record, which lies in the
        // data area and is free space the consumer does not read until commit.
        unsafe { self.producer.region.store(self.off + at, &bytes[..n]) };
    }

    /// A pointer to the reserved payload, for writing in place (null in the loom model). The
    /// bytes are this producer's alone until [`Slot::commit`].
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.producer.region.data_ptr(self.off)
    }

    /// Publishes the message, shrunk to `len` bytes if smaller than reserved.
    pub fn commit_len(self, len: usize) {
        let len = len.min(self.len);
        let record = record_size(len);
        // The bytes between the payload and the record's end, zeroed: every word of the record
        // is then written whole (a header or end mark left there from an earlier lap is never
        // half overwritten), and no byte of an earlier message shows through.
        let tail = record - RECORD_HEADER - len;
        if tail > 0 {
            // SAFETY: `off + len + tail = off - 8 + record`, inside the reserved record, which
            // lies in the data area and is free space the consumer does not read until commit.
            unsafe {
                self.producer
                    .region
                    .store(self.off + len, &[0u8; 8][..tail])
            };
        }
        // The reserved record starts at the producer's position, with room for its end mark.
        self.producer.publish(record, encode(len, TAG_MESSAGE));
    }

    /// Publishes the message.
    pub fn commit(self) {
        let len = self.len;
        self.commit_len(len);
    }
}

/// A message in the ring, readable in place until dropped (then its space is released).
#[derive(Debug)]
pub struct Message<'a, R: Region> {
    consumer: &'a mut Consumer<R>,
    off: usize,
    len: usize,
    record: usize,
}

impl<R: Region> Consumer<R> {
    /// Takes the consumer role over a ring whose positions are already initialised, not
    /// waiting (it clears the `waiting` word, see [`Consumer::set_waiting`]).
    pub fn attach(region: R) -> Result<Consumer<R>, Error> {
        let capacity = check_capacity(&region)?;
        let head = region.head().load(Ordering::Acquire);
        // A peer may have written head: offsets are only ever multiples of 8.
        if !head.is_multiple_of(8) {
            return Err(Error::Corrupted);
        }
        // A consumer before us (killed while it waited) may have left its `waiting` word set:
        // we are not waiting yet, and a consumer that never says so (one that only polls now
        // and then) must not be started over for.
        if region.waiting().load(Ordering::Relaxed) != 0 {
            region.waiting().store(0, Ordering::Relaxed);
        }
        Ok(Consumer {
            region,
            capacity,
            head,
            waiting: false,
        })
    }

    /// Says whether this consumer is waiting for a message (polling or asleep until one comes)
    /// or away (it returned, or only looks now and then): the producer starts over at the
    /// front of an empty ring only for a consumer that waits, because until the consumer
    /// skips the padding that starting over leaves, the producer can use only the bytes before
    /// it (a few messages). A consumer that never says so is never started over for: the
    /// producer goes on through the whole ring. Writes the shared word only when the answer
    /// changes.
    pub fn set_waiting(&mut self, waiting: bool) {
        if self.waiting != waiting {
            self.waiting = waiting;
            // Relaxed: a hint; the room the producer counts on comes from `head` alone.
            self.region
                .waiting()
                .store(u64::from(waiting), Ordering::Relaxed);
        }
    }

    /// Bytes consumed so far (messages and padding): the position the producer waits on. It
    /// moves when a message is released and whenever [`Consumer::peek`] skips a padding
    /// record, even when `peek` then reports `Empty`; a caller that lets a producer sleep must
    /// wake it whenever this moves.
    pub fn position(&self) -> u64 {
        self.head
    }

    /// Whether a message (or padding) is waiting, as seen now: whether the header word at our
    /// position is still the end mark.
    pub fn is_empty(&self) -> bool {
        let off = wrap(self.head, self.capacity);
        // Acquire pairs with the producer's Release of the header.
        self.region.word(off).load(Ordering::Acquire) == 0
    }

    /// The next message, in place. Dropping it releases its space.
    pub fn peek(&mut self) -> Result<Message<'_, R>, Error> {
        loop {
            let off = wrap(self.head, self.capacity);
            // Acquire pairs with the producer's Release of the header: the record's bytes are
            // visible once we see it.
            let h = self.region.word(off).load(Ordering::Acquire);
            if h == 0 {
                return Err(Error::Empty);
            }
            let (len, tag) = decode(h);
            let to_end = self.capacity - off;
            match tag {
                TAG_PAD => {
                    // Padding runs to the end, and never starts at offset 0 (no record is too
                    // long for a whole ring): so a `peek` skips at most one before it finds a
                    // message or the end mark, whatever the memory holds.
                    if len.checked_add(RECORD_HEADER) != Some(to_end) || off == 0 {
                        return Err(Error::Corrupted);
                    }
                    self.head = self.head.wrapping_add(to_end as u64);
                    // Release: we are done reading the pad before the producer reuses it.
                    self.region.head().store(self.head, Ordering::Release);
                }
                TAG_MESSAGE => {
                    // The length first: only then is the record size small enough to compute.
                    if len > max_message(self.capacity) {
                        return Err(Error::Corrupted);
                    }
                    let record = record_size(len);
                    if record > to_end {
                        return Err(Error::Corrupted);
                    }
                    return Ok(Message {
                        consumer: self,
                        off: off + RECORD_HEADER,
                        len,
                        record,
                    });
                }
                _ => return Err(Error::Corrupted),
            }
        }
    }

    /// Copies the next message into `out` and releases it; returns its length. A message
    /// longer than `out` is left in the ring and reported as `TooLarge`.
    pub fn pop_into(&mut self, out: &mut [u8]) -> Result<usize, Error> {
        let msg = self.peek()?;
        let n = msg.len();
        if out.len() < n {
            core::mem::forget(msg); // not released: it stays for a larger buffer
            return Err(Error::TooLarge { max: out.len() });
        }
        msg.copy_to(&mut out[..n]);
        Ok(n)
    }
}

impl<R: Region> Message<'_, R> {
    /// The payload size.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies the payload into `dst` (which must be exactly `len()` bytes; extra is ignored).
    pub fn copy_to(&self, dst: &mut [u8]) {
        let n = dst.len().min(self.len);
        // SAFETY: `off + len <= capacity` was validated in `peek`; the record is published
        // and not yet released, so the producer does not write it.
        unsafe { self.consumer.region.load(self.off, &mut dst[..n]) };
    }

    /// A pointer to the payload in place (null in the loom model). Valid, and not written by a
    /// well-behaved producer, until this message is dropped.
    pub fn as_ptr(&self) -> *const u8 {
        self.consumer.region.data_ptr(self.off)
    }
}

impl<R: InPlace> Message<'_, R> {
    /// The payload in place, as atomic bytes: the zero-copy path.
    ///
    /// Another process can write this memory (a peer that breaks the protocol), so it is never
    /// exposed as `&[u8]`: atomic bytes stay sound whatever the peer does, and a relaxed load
    /// compiles to a plain read.
    pub fn as_atomic_bytes(&self) -> &[core::sync::atomic::AtomicU8] {
        // SAFETY: `off + len <= capacity` was validated in `peek`, so the range lies in the
        // region's data area, which `InPlace` promises is valid; AtomicU8 has the size and
        // alignment of u8, and concurrent writes by a peer are allowed through atomics; the
        // slice borrows `self`, so it ends before the record is released.
        unsafe {
            core::slice::from_raw_parts(self.consumer.region.data_ptr(self.off).cast(), self.len)
        }
    }
}

impl<R: InPlace> Slot<'_, R> {
    /// The reserved payload in place, as atomic bytes, to write without a copy (see
    /// [`Message::as_atomic_bytes`] for why not `&mut [u8]`).
    pub fn as_atomic_bytes(&mut self) -> &[core::sync::atomic::AtomicU8] {
        // SAFETY: the reserved record lies in the data area (`reserve` checked it fits before
        // the end); AtomicU8 has the layout of u8 and tolerates a misbehaving peer's accesses.
        unsafe {
            core::slice::from_raw_parts(self.producer.region.data_ptr(self.off).cast(), self.len)
        }
    }
}

impl<R: Region> Drop for Message<'_, R> {
    fn drop(&mut self) {
        let c = &mut *self.consumer;
        c.head = c.head.wrapping_add(self.record as u64);
        // Release: our reads of the record happen before the producer may reuse its bytes.
        c.region.head().store(c.head, Ordering::Release);
    }
}

/// Runs a consumer and a producer over `bytes` taken as a ring's memory (header, then a
/// 256-byte data area): whatever the bytes, they must return errors, never panic or touch
/// memory outside the ring. Shared by the fuzz target (`fuzz/fuzz_targets/ring_consumer.rs`)
/// and the corpus replay in `cargo test`.
#[cfg(any(all(test, not(loom)), feature = "fuzzing"))]
#[doc(hidden)]
pub fn check_hostile_memory(bytes: &[u8]) {
    extern crate std;
    use std::vec;
    let len = bytes_needed(256);
    let mut mem = vec![0u64; len / 8 + 8];
    let base = mem.as_mut_ptr() as *mut u8;
    let base = base.wrapping_add(base.align_offset(64));
    let n = bytes.len().min(len);
    // SAFETY: `base..base+len` lies inside `mem` (it has 64 bytes of slack for the alignment),
    // and `bytes[..n]` is a distinct allocation.
    unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), base, n) };
    // SAFETY: as above, valid and 64-aligned for `len` bytes while `mem` lives (to the end of
    // this function), and nothing else accesses it.
    let Ok(region) = (unsafe { RawRegion::new(base, len) }) else {
        return;
    };
    if let Ok(mut c) = Consumer::attach(region) {
        for _ in 0..64 {
            match c.peek() {
                Ok(m) => {
                    let mut out = vec![0u8; m.len()];
                    m.copy_to(&mut out);
                    assert_eq!(m.as_atomic_bytes().len(), m.len());
                }
                Err(_) => break,
            }
        }
    }
    if let Ok(mut p) = Producer::attach(region) {
        let _ = p.push(b"fuzz");
    }
    drop(mem);
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// A heap-backed ring region for tests (and miri).
    struct Heap {
        mem: Vec<u64>,
        capacity: usize,
    }

    impl Heap {
        fn new(capacity: usize) -> Heap {
            Heap {
                mem: vec![0u64; bytes_needed(capacity).div_ceil(8) + 8],
                capacity,
            }
        }
        fn region(&mut self) -> RawRegion {
            let ptr = self.mem.as_mut_ptr() as *mut u8;
            let aligned = ptr.wrapping_add(ptr.align_offset(64));
            // SAFETY: the allocation has room for the header, the data and the alignment slack,
            // and outlives every use in these tests.
            unsafe {
                RawRegion::new(
                    aligned,
                    bytes_needed(self.capacity).min(self.mem.len() * 8 - 64),
                )
            }
            .unwrap()
        }
        /// A fresh ring here, with a producer and a consumer attached.
        fn ends(&mut self) -> (Producer<RawRegion>, Consumer<RawRegion>) {
            let r = self.region();
            init(&r);
            (Producer::attach(r).unwrap(), Consumer::attach(r).unwrap())
        }
    }

    fn pop(c: &mut Consumer<RawRegion>) -> Result<Vec<u8>, Error> {
        let m = c.peek()?;
        let mut v = vec![0u8; m.len()];
        m.copy_to(&mut v);
        Ok(v)
    }

    #[test]
    fn an_empty_ring_starts_over_past_the_hot_window() {
        // Sixteen hot windows long.
        let cap = 16 * HOT_WINDOW;
        let mut heap = Heap::new(cap);
        let r = heap.region();
        assert_eq!(r.capacity(), cap);
        init(&r);
        let mut p = Producer::attach(r).unwrap();
        let mut c = Consumer::attach(r).unwrap();
        c.set_waiting(true);
        // Ping-pong: the ring is empty before every push, so no message ends past the hot
        // window plus one record.
        for i in 0..64u32 {
            let msg = vec![i as u8; 64];
            p.push(&msg).unwrap();
            let end = (p.position() % cap as u64) as usize;
            assert!(
                end <= HOT_WINDOW + record_size(64),
                "message {i} ends at {end}"
            );
            assert_eq!(pop(&mut c).unwrap(), msg);
        }
        // Streaming (never empty) still goes round the whole ring.
        let mut furthest = 0;
        p.push(&[0xee; 64]).unwrap();
        for i in 0..24u32 {
            p.push(&[i as u8; 64]).unwrap();
            furthest = furthest.max((p.position() % cap as u64) as usize);
            assert_eq!(pop(&mut c).unwrap().len(), 64);
        }
        assert!(furthest > 2 * HOT_WINDOW, "{furthest}");
    }

    /// Whether `rounds` of ping-pong with `len`-byte messages (the ring empty before every
    /// push) kept starting over: starting over, the messages alternate between the front and
    /// the slot after it.
    fn starts_over_in_ping_pong(len: usize, rounds: u32) -> bool {
        let cap = 4 << 20;
        let mut heap = Heap::new(cap);
        let (mut p, mut c) = heap.ends();
        c.set_waiting(true);
        let mut furthest = 0;
        for i in 0..rounds {
            let msg = vec![i as u8; len];
            p.push(&msg).unwrap();
            furthest = furthest.max((p.position() % cap as u64) as usize);
            assert_eq!(pop(&mut c).unwrap(), msg);
        }
        furthest.div_ceil(record_size(len)) <= 2
    }

    /// A 4 KiB message starts over at the front, a 16 KiB one goes on through the ring, a
    /// 300 KiB one starts over again.
    #[test]
    fn only_small_and_huge_messages_start_over() {
        for (len, rewinds) in [(4 << 10, true), (16 << 10, false), (300 << 10, true)] {
            assert_eq!(starts_over_in_ping_pong(len, 40), rewinds, "{len} bytes");
        }
    }

    /// The bounds are message sizes, as documented and measured: a message of exactly
    /// [`STREAM_MIN`] or [`STREAM_MAX`] bytes goes on through the ring (its record, with its
    /// header, is a little larger), one a byte shorter or longer than the range starts over.
    #[test]
    fn messages_of_the_range_bounds_go_on_and_those_just_outside_start_over() {
        for (len, rewinds) in [
            (STREAM_MIN - 1, true),
            (STREAM_MIN, false),
            (STREAM_MAX, false),
            (STREAM_MAX + 1, true),
        ] {
            assert_eq!(starts_over_in_ping_pong(len, 6), rewinds, "{len} bytes");
        }
    }

    #[test]
    fn a_producer_told_not_to_rewind_goes_on_past_the_hot_window() {
        let cap = 16 * HOT_WINDOW;
        let mut heap = Heap::new(cap);
        let (mut p, mut c) = heap.ends();
        c.set_waiting(true);
        p.set_rewind(false);
        let mut furthest = 0;
        for i in 0..24u32 {
            let msg = vec![i as u8; 64];
            p.push(&msg).unwrap();
            furthest = furthest.max((p.position() % cap as u64) as usize);
            assert_eq!(pop(&mut c).unwrap(), msg);
        }
        // Empty before every push, yet it never started over: the whole ring was used, and
        // the room left after each message was the whole ring less that message.
        assert!(furthest > 2 * HOT_WINDOW, "{furthest}");
        p.set_rewind(true);
        p.push(&[1; 64]).unwrap();
        assert_eq!(p.position() % cap as u64, record_size(64) as u64, "rewound");
    }

    /// A consumer that caught up and then went away (it does not wait for the next message)
    /// is not started over for: the producer keeps the whole ring, where starting over would
    /// have left it the few bytes before the padding until the consumer looks again.
    #[test]
    fn a_consumer_that_does_not_wait_leaves_the_producer_the_whole_ring() {
        let cap = 16 * HOT_WINDOW;
        let mut heap = Heap::new(cap);
        let (mut p, mut c) = heap.ends();
        let fill = |p: &mut Producer<RawRegion>| {
            let mut n = 0;
            while p.push(&[5; 64]).is_ok() {
                n += 1;
            }
            n
        };
        let whole = (cap - END_MARK) / record_size(64);
        for waiting in [false, true] {
            c.set_waiting(waiting);
            // Caught up past the hot window, and then not taking anything.
            while (p.position() % cap as u64) < HOT_WINDOW as u64 {
                p.push(&[6; 64]).unwrap();
                pop(&mut c).unwrap();
            }
            let n = fill(&mut p);
            if waiting {
                // A consumer that says it waits is started over for, and until it skips the
                // padding only the bytes before it are left (it would, being there to wait).
                assert!(n < whole / 4, "{n} of {whole}");
            } else {
                assert!(n >= whole - 1, "{n} of {whole}");
            }
            while pop(&mut c).is_ok() {}
        }
    }

    /// A consumer that attaches where one before it was killed while it waited (or where a
    /// peer wrote the word) is not waiting: the producer keeps the whole ring for it.
    #[test]
    fn a_consumer_attached_over_a_waiting_word_left_set_does_not_wait() {
        let cap = 16 * HOT_WINDOW;
        let mut heap = Heap::new(cap);
        let (mut p, mut c) = heap.ends();
        c.set_waiting(true);
        while (p.position() % cap as u64) < HOT_WINDOW as u64 {
            p.push(&[6; 64]).unwrap();
            pop(&mut c).unwrap();
        }
        let whole = (cap - END_MARK) / record_size(64);
        for left in [1, u64::MAX] {
            let r = heap.region();
            r.waiting().store(left, Ordering::Relaxed);
            let mut c = Consumer::attach(r).unwrap();
            assert_eq!(r.waiting().load(Ordering::Relaxed), 0, "{left:#x} left set");
            let mut n = 0;
            while p.push(&[5; 64]).is_ok() {
                n += 1;
            }
            assert!(n >= whole - 1, "{n} of {whole}");
            for _ in 0..n {
                assert_eq!(pop(&mut c).unwrap(), [5; 64]);
            }
            assert_eq!(pop(&mut c), Err(Error::Empty));
        }
    }

    /// The `waiting` word lies in memory the other side can write: whatever it holds (flipped
    /// between every send and receive), it decides only whether a message that finds the
    /// ring empty past the hot window starts over at the front (never while the word is 0);
    /// every message arrives once, whole and in order.
    #[test]
    fn any_waiting_word_decides_only_where_messages_go() {
        let cap = 16 * HOT_WINDOW;
        let mut heap = Heap::new(cap);
        let (mut p, mut c) = heap.ends();
        let r = heap.region();
        let values = [0, 1, u64::MAX, 1 << 63, 0x5555_5555_5555_5555, 2, 0];
        let sizes = [64, 0, 300, 8, 1000, 64, 2000, 64];
        let msg = |i: u32| {
            let len = sizes[i as usize % sizes.len()];
            (0..len)
                .map(|k| (k as u32 * 31 + i * 7) as u8)
                .collect::<Vec<u8>>()
        };
        let (mut sent, mut got, mut flips) = (0u32, 0u32, 0usize);
        let mut flip = || {
            flips += 1;
            let v = values[flips % values.len()];
            r.waiting().store(v, Ordering::Relaxed);
            v
        };
        let (mut started_over, mut went_on) = (0, 0);
        // Fewer under miri, which runs each access a thousand times slower.
        let rounds = if cfg!(miri) { 300 } else { 3000 };
        for round in 0..rounds {
            for _ in 0..=round % 3 {
                let word = flip();
                let m = msg(sent);
                let off = (p.position() % cap as u64) as usize;
                let empty = p.position() == c.position();
                match p.push(&m) {
                    Ok(()) => sent += 1,
                    Err(Error::Full) => break,
                    Err(e) => panic!("push {sent}: {e:?}"),
                }
                let need = record_size(m.len());
                if empty && off >= HOT_WINDOW && need <= cap - off {
                    let end = (p.position() % cap as u64) as usize;
                    if end == need && off + need != cap {
                        assert!(word != 0 && need + END_MARK <= off, "message {}", sent - 1);
                        started_over += 1;
                    } else {
                        assert_eq!(end, (off + need) % cap, "message {} moved", sent - 1);
                        went_on += 1;
                    }
                }
            }
            // Now and then the consumer lags; otherwise it takes everything.
            let take = if round % 5 == 4 { 1 } else { usize::MAX };
            for _ in 0..take {
                flip();
                match pop(&mut c) {
                    Ok(m) => {
                        assert_eq!(m, msg(got), "message {got}");
                        got += 1;
                    }
                    Err(Error::Empty) => break,
                    Err(e) => panic!("pop {got}: {e:?}"),
                }
            }
        }
        while let Ok(m) = pop(&mut c) {
            assert_eq!(m, msg(got), "message {got}");
            got += 1;
        }
        assert_eq!(got, sent);
        assert!(
            started_over > rounds / 30 && went_on > rounds / 30,
            "{started_over} {went_on}"
        );
    }

    #[test]
    fn a_stream_past_the_hot_window_does_not_ask_a_lagging_consumer_on_every_send() {
        let cap = 16 * HOT_WINDOW;
        let mut heap = Heap::new(cap);
        let r = heap.region();
        init(&r);
        let mut p = Producer::attach(r).unwrap();
        // Nothing is consumed: the first send past the window reads the consumer's position
        // (it may start over only if the ring is empty) and finds it behind.
        while (p.position() as usize) < HOT_WINDOW {
            p.push(&[3; 64]).unwrap();
        }
        p.push(&[4; 64]).unwrap();
        assert!(
            p.position() as usize > HOT_WINDOW + 64,
            "it did not start over"
        );
        // From then on it does not look again while the room it saw lasts: a hostile
        // position is met only by a message that needs more.
        r.head().store(u64::MAX / 2, Ordering::Release);
        p.push(&[5; 64]).unwrap();
        let max = p.max_message();
        assert_eq!(p.push(&vec![0; max]), Err(Error::Corrupted));
    }

    #[test]
    fn push_pop_wrap_full_empty() {
        let mut heap = Heap::new(256);
        let r = heap.region();
        assert_eq!(r.capacity(), 256);
        init(&r);
        let mut p = Producer::attach(r).unwrap();
        let mut c = Consumer::attach(r).unwrap();
        assert_eq!(pop(&mut c), Err(Error::Empty));
        for round in 0..50u8 {
            let a = vec![round; 80];
            let b = vec![round ^ 0xff; 53];
            p.push(&a).unwrap();
            p.push(&b).unwrap();
            assert_eq!(p.push(&[0; 100]), Err(Error::Full));
            assert_eq!(pop(&mut c).unwrap(), a);
            assert_eq!(pop(&mut c).unwrap(), b);
            assert_eq!(pop(&mut c), Err(Error::Empty));
        }
        assert_eq!(p.push(&[0; 241]), Err(Error::TooLarge { max: 240 }));
        p.push(&[]).unwrap();
        assert_eq!(pop(&mut c).unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn largest_message_fits_after_wrap() {
        let mut heap = Heap::new(256);
        let (mut p, mut c) = heap.ends();
        p.push(&[1; 40]).unwrap();
        assert_eq!(pop(&mut c).unwrap(), vec![1; 40]);
        // Position 48: the largest message needs the whole ring but its end mark. The producer
        // publishes a pad to the end, and must wait until the consumer has skipped it.
        assert_eq!(p.push(&[2; 240]), Err(Error::Full));
        assert_eq!(pop(&mut c), Err(Error::Empty));
        p.push(&[2; 240]).unwrap();
        assert_eq!(pop(&mut c).unwrap(), vec![2; 240]);
    }

    #[test]
    fn hostile_control_words_are_corrupted_not_ub() {
        let mut heap = Heap::new(256);
        let (mut p, mut c) = heap.ends();
        let r = heap.region();
        p.push(b"hello").unwrap();
        // The consumer never reads the shared tail on its way to a message.
        r.tail().store(1 << 40, Ordering::Release);
        assert_eq!(pop(&mut c).unwrap(), b"hello");
        assert_eq!(pop(&mut c), Err(Error::Empty));
        // The test plays the hostile producer, writing the header at the consumer's position.
        let at = (c.position() % 256) as usize;
        r.word(at)
            .store(encode(10_000, TAG_MESSAGE), Ordering::Release);
        assert_eq!(pop(&mut c), Err(Error::Corrupted));
        r.word(at).store(encode(3, 0xdead_beef), Ordering::Release);
        assert_eq!(pop(&mut c), Err(Error::Corrupted));
        // A message that would run past the end of the ring.
        r.word(at)
            .store(encode(256 - at, TAG_MESSAGE), Ordering::Release);
        assert_eq!(pop(&mut c), Err(Error::Corrupted));
        // Padding that does not run exactly to the end.
        r.word(at).store(encode(8, TAG_PAD), Ordering::Release);
        assert_eq!(pop(&mut c), Err(Error::Corrupted));
        // A producer attaching over a tail this far from the consumer's position refuses.
        assert_eq!(Producer::attach(r).err(), Some(Error::Corrupted));
        r.head().store(u64::MAX / 2, Ordering::Release);
        // The producer rereads the consumer's position only when the room it last saw is not
        // enough: a message that needs more room meets the hostile head.
        let max = p.max_message();
        assert_eq!(p.push(&vec![0; max]), Err(Error::Corrupted));
    }

    #[test]
    fn a_new_producer_refuses_padding_that_does_not_run_to_the_end() {
        for len in [3, 8, 100] {
            let mut heap = Heap::new(256);
            let r = heap.region();
            init(&r);
            // A hostile header at the position a new producer resumes from.
            r.word(0).store(encode(len, TAG_PAD), Ordering::Release);
            assert_eq!(Producer::attach(r).err(), Some(Error::Corrupted), "{len}");
        }
        let mut heap = Heap::new(256);
        let r = heap.region();
        init(&r);
        r.head().store(64, Ordering::Release);
        r.tail().store(64, Ordering::Release);
        r.word(64)
            .store(encode(256 - 64 - 8, TAG_PAD), Ordering::Release);
        let p = Producer::attach(r).expect("padding to the end is a record");
        assert_eq!(p.position(), 256);
    }

    #[test]
    fn a_new_producer_resumes_after_a_record_published_behind_the_shared_tail() {
        let mut heap = Heap::new(256);
        let (mut p, mut c) = heap.ends();
        let r = heap.region();
        p.push(b"one").unwrap();
        let before = p.position();
        p.push(&[2; 40]).unwrap();
        // The producer died after publishing the second header, before storing its tail; the
        // consumer has read both messages already.
        r.tail().store(before, Ordering::Release);
        assert_eq!(pop(&mut c).unwrap(), b"one");
        assert_eq!(pop(&mut c).unwrap(), vec![2; 40]);
        let mut p = Producer::attach(r).unwrap();
        assert_eq!(p.position(), c.position());
        p.push(b"three").unwrap();
        assert_eq!(pop(&mut c).unwrap(), b"three");
        assert_eq!(pop(&mut c), Err(Error::Empty));
    }

    #[test]
    fn a_header_left_from_an_earlier_lap_is_never_read_as_a_new_message() {
        // Lengths that shift the record boundaries on every lap, so the word the consumer
        // polls has often held a header (or payload bytes shaped like one) on an earlier lap.
        let mut heap = Heap::new(256);
        let (mut p, mut c) = heap.ends();
        let rounds = if cfg!(miri) { 100 } else { 2000 };
        for i in 0..rounds {
            let len = (i * 13) % 120;
            // A payload made of valid-looking headers for every length.
            let mut msg = vec![0u8; len];
            for (k, chunk) in msg.chunks_mut(8).enumerate() {
                let h = encode(k * 8, TAG_MESSAGE).to_ne_bytes();
                chunk.copy_from_slice(&h[..chunk.len()]);
            }
            p.push(&msg).unwrap();
            assert_eq!(pop(&mut c).unwrap(), msg, "message {i}");
            assert_eq!(pop(&mut c), Err(Error::Empty), "after message {i}");
            assert!(c.is_empty());
        }
    }

    #[test]
    fn record_size_saturates_instead_of_overflowing() {
        // A 32-bit process can be handed a length this close to usize::MAX by a peer.
        assert_eq!(record_size(usize::MAX), usize::MAX);
        assert_eq!(record_size(usize::MAX - 7), usize::MAX);
        assert_eq!(record_size(0), 8);
        assert_eq!(record_size(9), 24);
        assert_eq!(max_message(0), 0);
        assert_eq!(max_message(64), 48);
        assert_eq!(bytes_needed(usize::MAX), usize::MAX);
    }

    #[test]
    fn would_block_is_exactly_when_reserve_can_do_nothing() {
        // Every consistent (head, tail) pair of a 256-byte ring, at positions a lap in, and
        // every length: `would_block` is true exactly when `reserve` returns Full and
        // publishes nothing (no padding either).
        // Under miri (thousands of times slower) a sample of the same grid.
        let (step, len_step) = if cfg!(miri) { (24, 31) } else { (8, 1) };
        for used in (0..=256u64).step_by(step) {
            for tail_off in (0..256u64).step_by(step) {
                for len in (0..=240usize).step_by(len_step) {
                    let mut heap = Heap::new(256);
                    let r = heap.region();
                    let tail = 256 + tail_off;
                    r.tail().store(tail, Ordering::Release);
                    r.head().store(tail - used, Ordering::Release);
                    let mut p = Producer::attach(r).unwrap();
                    let predicted = p.would_block(len).unwrap();
                    let before = p.position();
                    let blocked = match p.reserve(len) {
                        Ok(_) => false,
                        Err(Error::Full) => p.position() == before,
                        Err(e) => panic!("{e:?}"),
                    };
                    assert_eq!(
                        predicted, blocked,
                        "used {used}, tail offset {tail_off}, len {len}"
                    );
                }
            }
        }
    }

    #[test]
    fn hostile_head_ahead_of_tail_is_corrupted_when_deciding_to_wait() {
        let mut heap = Heap::new(256);
        let r = heap.region();
        init(&r);
        let mut p = Producer::attach(r).unwrap();
        p.push(&[7; 16]).unwrap();
        // The consumer claims to have read past what was ever written.
        r.head().store(p.position() + 64, Ordering::Release);
        assert_eq!(p.would_block(100), Err(Error::Corrupted));
        assert_eq!(p.would_block(1000), Err(Error::TooLarge { max: 240 }));
        // Within the room the last head it read left, the producer does not look again: a
        // message that needs more does, and meets the hostile head.
        assert!(p.reserve(100).is_ok());
        assert_eq!(p.reserve(240).err(), Some(Error::Corrupted));
    }

    #[test]
    fn positions_move_on_padding_even_when_full_or_empty() {
        let mut heap = Heap::new(256);
        let (mut p, mut c) = heap.ends();
        p.push(&[1; 64]).unwrap(); // record 72: tail 72
        p.push(&[2; 64]).unwrap(); // tail 144
        assert_eq!(pop(&mut c).unwrap(), vec![1; 64]); // head 72
        // 200 bytes need a 208-byte record: not before the end (112 left), so the producer
        // pads to the end (free 184 >= 112 + the end mark) and is then Full (72 free at the
        // start).
        assert_eq!(p.reserve(200).err(), Some(Error::Full));
        assert_eq!(p.position(), 256, "the padding was published");
        assert_eq!(p.would_block(200), Ok(true));
        assert_eq!(pop(&mut c).unwrap(), vec![2; 64]); // head 144
        assert_eq!(
            p.would_block(200),
            Ok(true),
            "the padding still holds 112 bytes"
        );
        // The consumer skips the padding and finds nothing: Empty, but its position moved,
        // and that is what the producer was waiting for.
        assert_eq!(pop(&mut c), Err(Error::Empty));
        assert_eq!(c.position(), 256);
        assert_eq!(p.would_block(200), Ok(false));
        p.push(&[3; 200]).unwrap();
        assert_eq!(pop(&mut c).unwrap(), vec![3; 200]);
    }

    #[test]
    fn fuzz_corpus_replays_clean() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fuzz/corpus/ring_consumer");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).expect("the fuzz corpus is in the repository") {
            check_hostile_memory(&std::fs::read(entry.unwrap().path()).unwrap());
            n += 1;
        }
        assert!(n >= 4, "only {n} corpus files");
    }

    #[test]
    fn threads_stream_in_order() {
        let mut heap = Heap::new(256);
        let (mut p, mut c) = heap.ends();
        let n: u32 = if cfg!(miri) { 200 } else { 20_000 };
        std::thread::scope(|s| {
            s.spawn(move || {
                for i in 0..n {
                    let msg: Vec<u8> = (0..(i % 97) as u8).map(|b| b ^ i as u8).collect();
                    loop {
                        match p.push(&msg) {
                            Ok(()) => break,
                            Err(Error::Full) => std::thread::yield_now(),
                            Err(e) => panic!("{e:?}"),
                        }
                    }
                }
            });
            for i in 0..n {
                let got = loop {
                    match pop(&mut c) {
                        Ok(m) => break m,
                        Err(Error::Empty) => std::thread::yield_now(),
                        Err(e) => panic!("{e:?}"),
                    }
                };
                let want: Vec<u8> = (0..(i % 97) as u8).map(|b| b ^ i as u8).collect();
                assert_eq!(got, want, "message {i}");
            }
        });
    }
}
