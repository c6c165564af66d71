//! The sending side of the shm channel: attaches to a receiver's segment, one sender at a time.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering, fence};
use std::time::{Duration, Instant};

use procom_ring::Producer;
use procom_sys::mapping::MappedRing;

use super::anon::{self, Role};
use super::{
    Backoff, FLAG_ANONYMOUS, Fixed, OFF_DATA_SEQ, OFF_RECEIVER, OFF_RX_WAITING, OFF_SENDER,
    OFF_SPACE_SEQ, OFF_STATE, OFF_TX_WAITING, POPULATE_MAX, RX_LOCK, STATE_RECEIVER_CLOSED,
    STATE_SENDER_CLOSED, Sleep, TX_LOCK, Watched, corrupted, header_corrupted, load_state, me, own,
    pid_of, release_slot, ring, ring_error, spin_burst, take_end_lock, take_slot, validate, wake,
    wake_receiver, word,
};
use crate::error::{Error, ErrorKind};
use crate::flavor::streamed::{Pieces, mismatch_why};
use crate::flavor::{SendFlavor, Wait};
use crate::shm::{Mapping, Segment};

/// How long a sender gives a receiver to finish setting up a channel whose name it found.
const SETUP_GRACE: Duration = Duration::from_secs(1);

/// Opens and maps the channel `name` once its receiver has set it up: sized it and published
/// its header. The name appears first, and nothing signals the rest (a few milliseconds), so a
/// sender that comes in between tries again, 1 to 10 ms apart, for up to [`SETUP_GRACE`] before
/// it reports what it found (a segment abandoned half-made, or one that is no channel).
fn open_ready(name: &str) -> Result<(Segment, Mapping, usize), Error> {
    let mut patience = Backoff::within(SETUP_GRACE);
    loop {
        let segment = Segment::open(name).map_err(|e| match e.kind() {
            ErrorKind::NotFound => {
                Error::new(ErrorKind::NotFound).detail("no receiver has created this channel")
            }
            _ => e,
        })?;
        let ready = segment
            .map()
            .and_then(|map| validate(&map).map(|capacity| (map, capacity)));
        match ready {
            Ok((map, capacity)) => return Ok((segment, map, capacity)),
            Err(e) => {
                drop(segment);
                // No notification exists for "set up".
                if !patience.pause() {
                    return Err(e);
                }
            }
        }
    }
}

/// Takes the sender byte's lock for our open file `fd` of the channel mapped at `map`, or says
/// who holds it ([`take_end_lock`]): a sender is named as attached while its pid is in the slot
/// and its closed flag is clear.
fn take_sender_lock(fd: BorrowedFd<'_>, map: &Mapping) -> Result<(), Error> {
    let closed = || Ok::<_, Error>(load_state(map, Ordering::Acquire)? & STATE_SENDER_CLOSED != 0);
    take_end_lock(
        fd,
        TX_LOCK,
        "its sender byte",
        || {
            let pid = word(map, OFF_SENDER).load(Ordering::Acquire);
            Ok((pid != 0 && !closed()?).then_some(pid))
        },
        |pid| {
            let why = match pid {
                Some(pid) => format!("already has a sender (pid {pid})"),
                None if closed().unwrap_or(false) => "its last sender closed, but another process still holds that sender's open file of the segment (a child forked without executing a program, say)".to_string(),
                None => "another process holds its sender lock without having attached as a sender (a process that is not procom's, or one that died attaching and left its open file to a child)".to_string(),
            };
            Error::new(ErrorKind::AlreadyExists).detail(format!(
                "{why}; a shared-memory channel has one sender at a time"
            ))
        },
    )
}

/// The sending side: attaches to a receiver's segment, or is one end of an anonymous channel.
#[derive(Debug)]
pub(crate) struct ShmSender {
    producer: Producer<MappedRing>,
    map: Arc<Mapping>,
    /// A named channel's segment, kept open while attached (an anonymous channel's open file
    /// is the receiver's watch, `Target::Lock`).
    _segment: Option<Segment>,
    fixed: Fixed,
    /// The receiver watched, by its lock, from our own open file (`None` once handed over).
    receiver: Option<Watched>,
    /// An anonymous channel's end: the private open file holding its use lock (see
    /// `anon::take_up`), kept until the end is closed or handed over.
    claim: Option<OwnedFd>,
    /// Handed over (`into_fd`): dropping it then closes nothing.
    handed_over: bool,
    max: usize,
    broken: bool,
    /// How long a send facing a full ring busy-polls before it sleeps (the endpoint's `?spin=`).
    spin: Duration,
}

impl ShmSender {
    pub(crate) fn connect(name: &str, max: usize, spin: Duration) -> Result<ShmSender, Error> {
        let (segment, map, capacity) = open_ready(name)?;
        let map = Arc::new(map);
        // The receiver allocated the pages; this maps them into our page tables (see the
        // receiver's `populate_prefix`).
        let _ = map.populate_prefix(POPULATE_MAX);
        let receiver_pid = word(&map, OFF_RECEIVER).load(Ordering::Acquire);
        if pid_of(receiver_pid).is_none() {
            return Err(header_corrupted(&format!(
                "its receiver pid is {receiver_pid}, which is not a pid"
            )));
        }
        let fixed = Fixed {
            layout_size: map.len() as u64,
            capacity: capacity as u64,
            receiver: Some(receiver_pid),
            flags: 0,
        };
        fixed.check(&map)?;
        // The receiver is watched by its byte lock, not its pid: a dead receiver's pid may
        // belong to another process by now.
        let fd = segment
            .fd()
            .ok_or_else(|| Error::new(ErrorKind::Io).detail("has no descriptor to lock"))?;
        let receiver = Watched::lock(own(fd)?, RX_LOCK);
        if receiver.dead() || load_state(&map, Ordering::Acquire)? & STATE_RECEIVER_CLOSED != 0 {
            return Err(Error::new(ErrorKind::PeerGone)
                .detail("its receiver is gone (the segment is stale)"));
        }
        // One sender at a time: the sender byte's lock, which our open file holds until its
        // last descriptor closes (a killed sender's goes with it, whoever has its pid now).
        take_sender_lock(fd, &map)?;
        // The closed flag cleared before the slot names us: a receiver that sees our pid
        // does not take the last sender's close for ours.
        word(&map, OFF_STATE).fetch_and(!STATE_SENDER_CLOSED, Ordering::SeqCst);
        take_slot(&map, OFF_SENDER);
        let slot = word(&map, OFF_SENDER);
        let producer = match ring(&map).and_then(|r| Producer::attach(r).map_err(ring_error)) {
            Ok(p) => p,
            Err(e) => {
                slot.store(0, Ordering::Release);
                return Err(e);
            }
        };
        Ok(ShmSender {
            producer,
            map,
            _segment: Some(segment),
            fixed,
            receiver: Some(receiver),
            claim: None,
            handed_over: false,
            max,
            broken: false,
            spin,
        })
    }

    /// The sending end of an anonymous channel mapped at `map`, whose open file `ours` holds
    /// the sender's lock and which this process took up (`claim`, see `anon::take_up`).
    pub(super) fn anonymous(
        map: Arc<Mapping>,
        ours: OwnedFd,
        claim: OwnedFd,
        fixed: Fixed,
        spin: Duration,
        max: usize,
    ) -> Result<ShmSender, Error> {
        let producer = ring(&map).and_then(|r| Producer::attach(r).map_err(ring_error))?;
        Ok(ShmSender {
            producer,
            map,
            _segment: None,
            fixed,
            receiver: Some(Watched::lock(ours, Role::Sender.peer_lock())),
            claim: Some(claim),
            handed_over: false,
            max,
            broken: false,
            spin,
        })
    }

    /// Attaches the sending end of an anonymous channel handed over as `fd`.
    pub(crate) fn from_fd(fd: OwnedFd, max: usize, spin: Duration) -> Result<ShmSender, Error> {
        let (map, fixed, claim) = anon::attach(&fd, Role::Sender)?;
        let claimed = Arc::clone(&map);
        ShmSender::anonymous(map, fd, claim, fixed, spin, max)
            .inspect_err(|_| release_slot(&claimed, OFF_SENDER))
    }

    /// Whether the receiver closed or died; `fresh` asks the kernel now, otherwise the answer
    /// may be up to [`RECHECK`](super::RECHECK) old (a busy sender does not make a system call
    /// per message). `Corrupted` if the header was overwritten: checked whenever the kernel is
    /// asked, and before the receiver is reported gone.
    fn receiver_gone(&self, fresh: bool) -> Result<bool, Error> {
        let closed = load_state(&self.map, Ordering::Acquire)? & STATE_RECEIVER_CLOSED != 0;
        let gone = closed
            || match &self.receiver {
                Some(w) => w.dead_within(fresh, || self.fixed.check(&self.map))?,
                None => false,
            };
        if gone {
            self.fixed.check(&self.map)?;
        }
        Ok(gone)
    }

    /// Whether the receiver is known to be gone without asking the kernel or the clock: it
    /// closed its end (the state word), or the last liveness check found its process dead.
    /// `Corrupted` if the header was overwritten, checked before the receiver is reported gone.
    fn receiver_known_gone(&self) -> Result<bool, Error> {
        let gone = load_state(&self.map, Ordering::Acquire)? & STATE_RECEIVER_CLOSED != 0
            || self.receiver.as_ref().is_some_and(Watched::known_dead);
        if gone {
            self.fixed.check(&self.map)?;
        }
        Ok(gone)
    }

    /// Marks the channel broken (every later call is `Corrupted`) and hands `e` back.
    fn broke(&mut self, e: Error) -> Error {
        self.broken = true;
        e
    }

    /// Reserves `len` bytes in the ring, lets `fill` write them in place, and commits; if
    /// `fill` fails, nothing is published and its error is returned.
    fn send_in_ring(
        &mut self,
        len: usize,
        wait: Wait,
        fill: impl FnOnce(&mut procom_ring::Slot<'_, MappedRing>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        // The deadline is read only once the first attempt found nothing to do.
        let is_try = wait.is_try();
        if self.broken {
            return Err(corrupted(
                "the channel was found corrupted earlier and is no longer written",
            ));
        }
        if len > self.max {
            return Err(Error::too_large(len as u64, self.max as u64));
        }
        let mut waited = false;
        let mut first = true;
        let mut spin_start: Option<Instant> = None;
        let mut fill = Some(fill);
        loop {
            if self.map.faulted() {
                self.broken = true;
                return Err(corrupted("the segment was truncated under the sender"));
            }
            // The first attempt asks only what is known (a receiver that closed, or that the
            // last check found dead, is refused before anything is written); the cached
            // liveness check is refreshed after the commit below, off the path between the
            // caller's call and the message reaching the ring, for the next send. Every later
            // attempt (after a full ring) asks before reserving.
            let gone = if first {
                self.receiver_known_gone()
            } else {
                self.receiver_gone(waited)
            };
            if gone.map_err(|e| self.broke(e))? {
                return Err(Error::new(ErrorKind::PeerGone));
            }
            let before = self.producer.position();
            // Starting over at the front of an empty ring keeps a busy channel in the caches,
            // but leaves a sleeping receiver's padding in the way: only while it is awake.
            let receiver_asleep = word(&self.map, OFF_RX_WAITING).load(Ordering::Relaxed) != 0;
            self.producer.set_rewind(!receiver_asleep);
            match self.producer.reserve(len) {
                Ok(mut slot) => {
                    if let Some(f) = fill.take()
                        && let Err(e) = f(&mut slot)
                    {
                        // A reserved record that is not committed was never published. But
                        // `reserve` may have published padding before it: a receiver asleep
                        // on an empty ring must skip it, or a later send waiting for the room
                        // it holds would wait for the liveness period.
                        if self.producer.position() != before {
                            wake_receiver(&self.map);
                        }
                        return Err(e);
                    }
                    slot.commit(); // publishes tail (Release)
                    // Only a sleeping receiver needs data_seq bumped and a wake-up, so the hot
                    // path touches no shared word but the ring's (see the receiver's fence).
                    wake_receiver(&self.map);
                    if self.map.faulted() {
                        self.broken = true;
                        return Err(corrupted(
                            "the segment was truncated under the sender; the message was lost with it",
                        ));
                    }
                    // The liveness check this attempt skipped, for the next send: the receiver
                    // may already have read this message, so one found dead now is reported by
                    // the next call (a cached answer may be RECHECK old either way). A header
                    // found overwritten breaks the channel and fails this call, as before.
                    if first && let Some(w) = &self.receiver {
                        let (map, fixed) = (&self.map, self.fixed);
                        w.dead_within(false, || fixed.check(map))
                            .map_err(|e| self.broke(e))?;
                    }
                    return Ok(());
                }
                Err(procom_ring::Error::Full) => {
                    // `reserve` may have published padding before finding no room: a receiver
                    // asleep on an empty ring must skip it before we can go on.
                    if self.producer.position() != before {
                        wake_receiver(&self.map);
                    }
                }
                Err(procom_ring::Error::TooLarge { max }) => {
                    return Err(Error::too_large(len as u64, max as u64).detail(format!(
                        "a {len}-byte message does not fit in this channel's ring (at most {max} bytes; create it with a larger ?capacity=)"
                    )));
                }
                Err(e) => {
                    self.broken = true;
                    return Err(ring_error(e));
                }
            }
            // No room: the liveness check the first attempt skipped, before reporting `Full`
            // or waiting (a receiver that died never makes room).
            if std::mem::take(&mut first) && self.receiver_gone(false).map_err(|e| self.broke(e))? {
                return Err(Error::new(ErrorKind::PeerGone));
            }
            if is_try {
                return Err(Error::new(ErrorKind::Full));
            }
            let now = Instant::now();
            if wait.deadline().is_some_and(|d| now >= d) {
                return Err(Error::new(ErrorKind::Timeout)
                    .detail("the receiver did not make room before the deadline"));
            }
            let started = *spin_start.get_or_insert(now);
            if !self.spin.is_zero() && started.checked_add(self.spin).is_none_or(|u| now < u) {
                // Busy-poll the receiver's position alone for a while, as a spinning receiver
                // polls the ring: a full ring is usually drained within microseconds, while a
                // sleep and its wake-up cost tens of them.
                spin_burst(now, started, || {
                    !matches!(self.producer.would_block(len), Ok(true))
                });
                continue;
            }
            if let Some(sleep) = self.arm(len)? {
                sleep.take(wait.deadline());
                waited = true;
            }
            self.disarm();
        }
    }

    /// Announces this sender as waiting for room for a `len`-byte message and returns the
    /// sleep it may take, or `None` when room or the receiver's close is already visible
    /// (look again now). The announcement stands until [`ShmSender::disarm`].
    pub(crate) fn arm(&mut self, len: usize) -> Result<Option<Sleep>, Error> {
        let waiting = word(&self.map, OFF_TX_WAITING);
        let seq = word(&self.map, OFF_SPACE_SEQ);
        waiting.store(1, Ordering::SeqCst);
        fence(Ordering::SeqCst); // pairs with the receiver's fence after a release
        let seen = seq.load(Ordering::SeqCst);
        // Exactly the condition under which `reserve` would fail again without changing
        // anything (padding and the record header counted), read after the fence.
        let blocked = match self.producer.would_block(len) {
            Ok(b) => b,
            Err(e) => {
                waiting.store(0, Ordering::SeqCst);
                self.broken |= e == procom_ring::Error::Corrupted;
                return Err(ring_error(e));
            }
        };
        // A receiver that closed bumped space_seq after setting its flag: if `seen`
        // already includes that bump, the flag is visible here.
        let closed = match load_state(&self.map, Ordering::SeqCst) {
            Ok(state) => state & STATE_RECEIVER_CLOSED != 0,
            Err(e) => {
                waiting.store(0, Ordering::SeqCst);
                return Err(self.broke(e));
            }
        };
        Ok((blocked && !closed).then(|| Sleep {
            map: Arc::clone(&self.map),
            off: OFF_SPACE_SEQ,
            seen,
        }))
    }

    /// Withdraws the announcement [`ShmSender::arm`] made.
    pub(crate) fn disarm(&self) {
        word(&self.map, OFF_TX_WAITING).store(0, Ordering::SeqCst);
    }
}

impl Drop for ShmSender {
    fn drop(&mut self) {
        if self.handed_over {
            return;
        }
        word(&self.map, OFF_STATE).fetch_or(STATE_SENDER_CLOSED, Ordering::SeqCst);
        let _ = word(&self.map, OFF_SENDER).compare_exchange(
            me(),
            0,
            Ordering::AcqRel,
            Ordering::Relaxed,
        );
        let data = word(&self.map, OFF_DATA_SEQ);
        data.fetch_add(1, Ordering::SeqCst);
        wake(data);
    }
}

impl ShmSender {
    /// Sends one `len`-byte message that `encode` hands over piece by piece, each piece copied
    /// straight to its place in the reserved record (no buffer in between). If `encode` fails,
    /// or puts another number of bytes than `len`, nothing is published and the sender stays
    /// usable.
    pub(crate) fn send_streamed(
        &mut self,
        len: usize,
        wait: Wait,
        encode: &mut dyn FnMut(&mut dyn Pieces) -> Result<(), Error>,
    ) -> Result<(), Error> {
        self.send_in_ring(len, wait, |slot| {
            let mut out = InRing { slot, put: 0 };
            encode(&mut out)?;
            if out.put != len {
                return Err(Error::new(ErrorKind::InvalidInput).detail(mismatch_why(len, out.put)));
            }
            Ok(())
        })
    }
}

/// A reserved record filled piece by piece ([`ShmSender::send_streamed`]).
struct InRing<'a, 'r> {
    slot: &'a mut procom_ring::Slot<'r, MappedRing>,
    /// Payload bytes put so far.
    put: usize,
}

impl Pieces for InRing<'_, '_> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let after = self.put.saturating_add(bytes.len());
        if after > self.slot.len() {
            return Err(
                Error::new(ErrorKind::InvalidInput).detail(mismatch_why(self.slot.len(), after))
            );
        }
        self.slot.write(self.put, bytes);
        self.put = after;
        Ok(())
    }
}

impl SendFlavor for ShmSender {
    fn send(&mut self, msg: &[u8], wait: Wait) -> Result<(), Error> {
        self.send_in_ring(msg.len(), wait, |slot| {
            slot.write(0, msg);
            Ok(())
        })
    }

    /// Straight into the ring: the zero-copy path.
    fn send_with(&mut self, len: usize, fill: &mut dyn FnMut(&[AtomicU8])) -> Result<(), Error> {
        self.send_in_ring(len, Wait::Forever, |slot| {
            fill(slot.as_atomic_bytes());
            Ok(())
        })
    }

    fn set_max(&mut self, max: usize) {
        self.max = max;
    }

    /// An anonymous channel's end: its open file, the end released for another process to
    /// attach (its lock stays with the descriptor). A named channel's sender has none.
    fn into_fd(mut self) -> Option<OwnedFd> {
        if self.fixed.flags & FLAG_ANONYMOUS == 0 {
            return None;
        }
        release_slot(&self.map, OFF_SENDER);
        // The use lock goes with the private open file: another process may take the end up.
        self.claim = None;
        self.handed_over = true;
        self.receiver.take().map(Watched::into_fd)
    }
}
