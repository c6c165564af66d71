//! The receiving side of the shm channel: creates and owns the segment, reclaims a stale one.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering, fence};
use std::time::{Duration, Instant};

use procom_ring::Consumer;
use procom_sys::mapping::MappedRing;

use super::anon::{self, Role};
use super::{
    DEFAULT_CAPACITY, FLAG_ANONYMOUS, Fixed, MAGIC, OFF_CAPACITY, OFF_DATA_SEQ, OFF_RECEIVER,
    OFF_RX_WAITING, OFF_SPACE_SEQ, OFF_STATE, OFF_VERSION, POPULATE_MAX, RING_OFFSET, RX_LOCK,
    SPIN_BURST, STATE_RECEIVER_CLOSED, STATE_SENDER_CLOSED, Sleep, TX_LOCK, VERSION, Watched,
    corrupted, load_sender, load_state, lock_byte, me, own, release_slot, ring, ring_error,
    spin_burst, validate, wake, wake_sender, word,
};
use crate::access::Access;
use crate::error::{Error, ErrorKind};
use crate::flavor::{RecvFlavor, Wait};
use crate::shm::{Header, Mapping, Segment};

pub(super) fn capacity_for(requested: u64) -> Result<usize, Error> {
    let c = requested
        .max(procom_ring::MIN_CAPACITY as u64)
        .checked_next_power_of_two();
    match c
        .and_then(|c| usize::try_from(c).ok())
        .filter(|c| *c <= u32::MAX as usize)
    {
        Some(c) => Ok(c),
        None => Err(Error::new(ErrorKind::InvalidInput)
            .detail(format!("a capacity of {requested} bytes is too large"))),
    }
}

/// Makes sure the filesystem holding a new channel's segment (`/dev/shm`, a tmpfs) has room
/// for it, and allocates the part populated at creation: otherwise the ring's first pages past
/// the room left would fault in the sender, and the channel would report itself truncated.
/// The rest stays unallocated until used, as the populated prefix is bounded.
fn reserve(segment: &Segment, len: u64) -> Result<(), Error> {
    let fd = segment
        .fd()
        .ok_or_else(|| Error::new(ErrorKind::Io).detail("has no descriptor to size"))?;
    let full = |free: u64, total: u64| {
        Error::new(ErrorKind::LimitReached).detail(format!(
            "the filesystem of shared memory (/dev/shm, {total} bytes) has {free} bytes free, and this channel needs {len}; remove unused segments (procom ls shm), or ask for a smaller ?capacity="
        ))
    };
    // A tmpfs without a size (`size=0`) reports no blocks at all: nothing to check.
    if let Ok(fs) = rustix::fs::fstatvfs(fd)
        && fs.f_blocks > 0
    {
        let free = fs.f_bavail.saturating_mul(fs.f_frsize);
        if len > free {
            return Err(full(free, fs.f_blocks.saturating_mul(fs.f_frsize)));
        }
    }
    let prefix = len.min(POPULATE_MAX as u64);
    match rustix::fs::fallocate(fd, rustix::fs::FallocateFlags::empty(), 0, prefix) {
        Err(rustix::io::Errno::NOSPC) => {
            let fs = rustix::fs::fstatvfs(fd)
                .map_err(|e| Error::os("check its filesystem", e.into()))?;
            Err(full(
                fs.f_bavail.saturating_mul(fs.f_frsize),
                fs.f_blocks.saturating_mul(fs.f_frsize),
            ))
        }
        // Another error (a filesystem without fallocate): the populate below is best effort.
        _ => Ok(()),
    }
}

/// The receiving side: creates and owns the segment, or is one end of an anonymous channel.
#[derive(Debug)]
pub(crate) struct ShmReceiver {
    consumer: Consumer<MappedRing>,
    map: Arc<Mapping>,
    /// A named channel's segment: holds the owner's lock (an exclusive `flock`) until dropped.
    /// (An anonymous channel's open file is the sender's watch, `Target::Lock`.)
    segment: Option<Segment>,
    fixed: Fixed,
    /// The sender watched, by its lock, from our own open file (`None` once handed over).
    sender: Option<Watched>,
    /// An anonymous channel's end: the private open file holding its use lock (see
    /// `anon::take_up`), kept until the end is closed or handed over.
    claim: Option<OwnedFd>,
    /// Handed over (`into_fd`): dropping it then closes nothing.
    handed_over: bool,
    spin: Duration,
    max: usize,
    broken: bool,
}

impl ShmReceiver {
    pub(crate) fn bind(
        name: &str,
        capacity: Option<u64>,
        spin: Duration,
        max: usize,
        access: Access,
    ) -> Result<ShmReceiver, Error> {
        let cap = capacity_for(capacity.unwrap_or(DEFAULT_CAPACITY))?;
        let len = (RING_OFFSET + procom_ring::bytes_needed(cap)) as u64;
        let mut reclaimed = 0;
        let segment = loop {
            match Segment::create_with_mode(name, len, access.mode) {
                Ok(s) => break s,
                // Another binder may win the name between our reclaim and our create: a few
                // rounds, then its AlreadyExists stands.
                Err(e) if e.kind() == ErrorKind::AlreadyExists && reclaimed < 3 => {
                    reclaim_if_stale(name)?;
                    reclaimed += 1;
                }
                Err(e) => return Err(e),
            }
        };
        if let Some(gid) = access.group {
            segment.set_group(gid)?;
        }
        // The owner's lock, held until this receiver has removed its name (see the module
        // docs). Taken before the version is published, so whoever sees a complete header
        // either finds the lock held or the owner gone; nobody else takes a lock on a segment
        // whose header is incomplete, so this never waits for a procom process.
        // The receiver's byte lock, which senders watch (a pid can be handed to another
        // process once this one is dead; the lock goes with the last descriptor of our open
        // file). Taken before the version is published, as the owner's lock is.
        let fd = segment
            .fd()
            .ok_or_else(|| Error::new(ErrorKind::Io).detail("has no descriptor to lock"))?;
        let locked = lock_owner(&segment)? && lock_byte(fd, RX_LOCK, "its receiver byte")?;
        if !locked {
            return Err(Error::new(ErrorKind::AlreadyExists)
                .detail("another process locked the segment this receiver just created"));
        }
        let watch = Watched::lock(own(fd)?, TX_LOCK);
        reserve(&segment, len)?;
        let map = Arc::new(segment.map()?);
        // The ring's pages allocated and mapped now rather than by faults during the first lap
        // (streaming 64 KiB messages through a 4 MiB ring, the faults cost more than the
        // copies), up to POPULATE_MAX: a huge ring is not committed whole up front (a small
        // /dev/shm or a memory limit would pay for pages it may never use). Best effort:
        // without it the ring works the same, only slower at first.
        let _ = map.populate_prefix(POPULATE_MAX);
        let region = ring(&map)?;
        let header = Header {
            magic: MAGIC,
            version: 0,
            flags: 0,
            layout_size: len,
        };
        map.write(0, bytemuck::bytes_of(&header))
            .map_err(|e| Error::os("write its header", e))?;
        map.write(OFF_CAPACITY, &(cap as u64).to_le_bytes())
            .map_err(|e| Error::os("write its header", e))?;
        let fixed = Fixed {
            layout_size: len,
            capacity: cap as u64,
            receiver: Some(me()),
            flags: 0,
        };
        word(&map, OFF_RECEIVER).store(me(), Ordering::Relaxed);
        procom_ring::init(&region);
        // Release: everything above is visible to whoever sees the version.
        word(&map, OFF_VERSION).store(VERSION, Ordering::Release);
        let consumer = Consumer::attach(region).map_err(ring_error)?;
        Ok(ShmReceiver {
            consumer,
            map,
            segment: Some(segment),
            fixed,
            sender: Some(watch),
            claim: None,
            handed_over: false,
            spin,
            max,
            broken: false,
        })
    }

    /// The receiving end of an anonymous channel mapped at `map`, whose open file `ours` holds
    /// the receiver's lock and which this process took up (`claim`, see `anon::take_up`).
    pub(super) fn anonymous(
        map: Arc<Mapping>,
        ours: OwnedFd,
        claim: OwnedFd,
        fixed: Fixed,
        spin: Duration,
        max: usize,
    ) -> Result<ShmReceiver, Error> {
        let consumer = Consumer::attach(ring(&map)?).map_err(ring_error)?;
        Ok(ShmReceiver {
            consumer,
            map,
            segment: None,
            fixed,
            sender: Some(Watched::lock(ours, Role::Receiver.peer_lock())),
            claim: Some(claim),
            handed_over: false,
            spin,
            max,
            broken: false,
        })
    }

    /// Attaches the receiving end of an anonymous channel handed over as `fd`.
    pub(crate) fn from_fd(fd: OwnedFd, max: usize, spin: Duration) -> Result<ShmReceiver, Error> {
        let (map, fixed, claim) = anon::attach(&fd, Role::Receiver)?;
        let claimed = Arc::clone(&map);
        ShmReceiver::anonymous(map, fd, claim, fixed, spin, max)
            .inspect_err(|_| release_slot(&claimed, OFF_RECEIVER))
    }

    /// Whether the sender has gone: closed cleanly, or its process is dead. `Corrupted` if
    /// the header was overwritten: checked whenever the sender's liveness is asked of the
    /// kernel, on every `fresh` call, and before the sender is reported gone.
    fn sender_gone(&mut self, fresh: bool) -> Result<bool, Error> {
        let pid = load_sender(&self.map, Ordering::Acquire)?;
        let (map, fixed) = (&self.map, self.fixed);
        let gone = if load_state(map, Ordering::Acquire)? & STATE_SENDER_CLOSED != 0 {
            true
        } else if pid == 0 && fixed.flags & FLAG_ANONYMOUS == 0 {
            // A named channel no sender is attached to (yet, or again): wait for one.
            if fresh {
                fixed.check(map)?;
            }
            false
        } else {
            // The sender's open file decides, whichever process holds it (an anonymous end's
            // slot is 0 while it is handed over). Only a live answer is cached, so a sender
            // that replaced a dead one (from the same pid, even) is never taken for it.
            match &self.sender {
                Some(w) => w.dead_within(fresh, || fixed.check(map))?,
                None => false,
            }
        };
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

    /// Hands the next message to `f` where it lies in the ring, and releases it after. While
    /// it waits for one (not `try_recv`), it says so in the ring (`Consumer::set_waiting`),
    /// and unsays it on every way out.
    fn recv_in_ring<T>(
        &mut self,
        wait: Wait,
        f: impl FnOnce(&procom_ring::Message<'_, MappedRing>) -> T,
    ) -> Result<T, Error> {
        // The deadline is read only once the first attempt found nothing to do.
        let is_try = wait.is_try();
        if self.broken {
            return Err(corrupted(
                "the channel was found corrupted earlier and is no longer read",
            ));
        }
        // When spinning started, and until when it may go on: read from the clock once the
        // first burst of polls found nothing, so a message that is on its way when the call
        // starts is taken without waiting for a clock read.
        // A spin too long to represent spins until the deadline, if any (never overflows).
        let mut spin: Option<(Instant, Option<Instant>)> = None;
        let mut polled = false;
        let mut f = Some(f);
        // Returns from the call, no longer waiting.
        macro_rules! leave {
            ($r:expr) => {{
                self.consumer.set_waiting(false);
                return $r;
            }};
        }
        loop {
            if self.map.faulted() {
                self.broken = true;
                leave!(Err(corrupted(
                    "the segment was truncated under the receiver"
                )));
            }
            let before = self.consumer.position();
            let taken = match self.consumer.peek() {
                Ok(msg) => {
                    let len = msg.len();
                    // `f` is taken once: this arm always returns below. A panic in it goes on
                    // once the message is released and the wait unsaid, as any return does.
                    let out = (len <= self.max)
                        .then(|| {
                            f.take().map(|f| {
                                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&msg)))
                            })
                        })
                        .flatten();
                    drop(msg); // releases the record (head, Release)
                    Ok((len, out))
                }
                Err(e) => Err(e),
            };
            match taken {
                Ok((len, out)) => {
                    self.consumer.set_waiting(false);
                    wake_sender(&self.map);
                    let out = match out {
                        Some(Err(panic)) => std::panic::resume_unwind(panic),
                        Some(Ok(out)) => Some(out),
                        None => None,
                    };
                    if self.map.faulted() {
                        self.broken = true;
                        return Err(corrupted("the segment was truncated under the receiver"));
                    }
                    return out.ok_or_else(|| Error::too_large(len as u64, self.max as u64));
                }
                Err(procom_ring::Error::Empty) => {}
                Err(e) => {
                    self.broken = true;
                    leave!(Err(ring_error(e)));
                }
            }
            // Empty, but skipping padding releases room too: a sender may be asleep waiting
            // for exactly that.
            if self.consumer.position() != before {
                wake_sender(&self.map);
            }
            // Waiting for the next message from here on: a sender that finds the ring empty
            // may start over at its front, as this side will skip the padding at once.
            if !is_try {
                self.consumer.set_waiting(true);
            }
            if !polled && !is_try && !self.spin.is_zero() {
                polled = true;
                for _ in 0..SPIN_BURST {
                    if !self.consumer.is_empty() {
                        break;
                    }
                    std::hint::spin_loop();
                }
                continue;
            }
            let now = Instant::now();
            let spin = (!self.spin.is_zero())
                .then(|| *spin.get_or_insert_with(|| (now, now.checked_add(self.spin))));
            // Since when we have been spinning, while the spin lasts.
            let spinning_since =
                spin.and_then(|(start, until)| until.is_none_or(|u| now < u).then_some(start));
            let spinning = spinning_since.is_some();
            // Asking the kernel whether the sender lives costs a system call: while spinning
            // (or polling with try_recv) the answer may be a couple of milliseconds old.
            let gone = match self.sender_gone(!spinning && !is_try) {
                Ok(gone) => gone,
                Err(e) => leave!(Err(self.broke(e))),
            };
            if gone && self.consumer.is_empty() {
                leave!(Err(Error::new(ErrorKind::PeerGone)));
            }
            if is_try {
                return Err(Error::new(ErrorKind::Empty));
            }
            if wait.deadline().is_some_and(|d| now >= d) {
                leave!(Err(
                    Error::new(ErrorKind::Timeout).detail("no message arrived before the deadline")
                ));
            }
            if let Some(start) = spinning_since {
                // Poll the ring alone for a while before the next clock and liveness check:
                // those take longer than a message takes to cross between two cores, and a
                // message that lands during them waits for them to finish.
                spin_burst(now, start, || !self.consumer.is_empty());
                continue;
            }
            let sleep = match self.arm() {
                Ok(sleep) => sleep,
                Err(e) => leave!(Err(e)),
            };
            if let Some(sleep) = sleep {
                sleep.take(wait.deadline());
            }
            self.disarm();
        }
    }

    /// Announces this receiver as waiting and returns the sleep it may take, or `None` when a
    /// message or the sender's close is already visible (look again now). The announcement
    /// stands until [`ShmReceiver::disarm`]: the sender wakes the sleep for every message.
    pub(crate) fn arm(&mut self) -> Result<Option<Sleep>, Error> {
        let waiting = word(&self.map, OFF_RX_WAITING);
        let seq = word(&self.map, OFF_DATA_SEQ);
        waiting.store(1, Ordering::SeqCst);
        // Pairs with the sender's fence after its commit: either it sees us waiting (and
        // bumps data_seq, so the futex wait returns), or we see its message.
        fence(Ordering::SeqCst);
        let seen = seq.load(Ordering::SeqCst);
        // A sender that closed bumped data_seq after setting its flag: if `seen` already
        // includes that bump, the flag is visible here, and we must not sleep past it.
        let closed = match load_state(&self.map, Ordering::SeqCst) {
            Ok(state) => state & STATE_SENDER_CLOSED != 0,
            Err(e) => {
                waiting.store(0, Ordering::SeqCst);
                return Err(self.broke(e));
            }
        };
        Ok((self.consumer.is_empty() && !closed).then(|| Sleep {
            map: Arc::clone(&self.map),
            off: OFF_DATA_SEQ,
            seen,
        }))
    }

    /// Withdraws the announcement [`ShmReceiver::arm`] made.
    pub(crate) fn disarm(&self) {
        word(&self.map, OFF_RX_WAITING).store(0, Ordering::SeqCst);
    }
}

/// Takes the owner's exclusive lock on a segment without waiting: `Ok(false)` if another open
/// of it holds the lock.
fn lock_owner(segment: &Segment) -> Result<bool, Error> {
    let fd = segment
        .fd()
        .ok_or_else(|| Error::new(ErrorKind::Io).detail("has no descriptor to lock"))?;
    match rustix::fs::flock(fd, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(false),
        Err(e) => Err(Error::os("lock it", e.into())),
    }
}

impl Drop for ShmReceiver {
    fn drop(&mut self) {
        if self.handed_over {
            return;
        }
        // The name goes first, while we still hold the owner's lock: a new receiver can only
        // reclaim a segment whose lock it gets, so it never finds ours half-closed and never
        // has its own name removed by us. (The removal checks the name still refers to our
        // segment, in case someone removed it and made a new one.)
        if let Some(segment) = &mut self.segment {
            let _ = segment.remove_name_now();
        }
        word(&self.map, OFF_STATE).fetch_or(STATE_RECEIVER_CLOSED, Ordering::SeqCst);
        let space = word(&self.map, OFF_SPACE_SEQ);
        space.fetch_add(1, Ordering::SeqCst);
        wake(space);
        // Dropping `segment` then closes its descriptor, which releases the lock.
    }
}

/// What the owner lock says of a procom channel segment that was opened.
pub(crate) enum Probe {
    /// Not a complete procom channel (not ours, or still being set up): why.
    NotAChannel(Error),
    /// Its receiver, this pid, holds the owner lock.
    Live(u32),
    /// Its owner lock was free: the receiver (this pid, as its header says) is gone. We hold
    /// the lock until `Probe` is dropped, with the segment it was taken on.
    Stale(u32, Segment),
}

/// Looks at the opened segment `seg` by the rule that decides reclaiming: a complete procom
/// channel header, then the owner lock, taken without waiting.
///
/// The lock decides, not the pid or the state word: a receiver holds it from before its header
/// is complete until after it has removed its name, and the kernel drops it when the receiver
/// dies. A stale answer holds the lock until dropped, so nobody else (another binder
/// reclaiming the same segment) can remove the name meanwhile.
pub(crate) fn probe(seg: Segment) -> Result<Probe, Error> {
    let map = match seg.map_read_only() {
        Ok(map) => map,
        Err(e) => return Ok(Probe::NotAChannel(e)),
    };
    if let Err(e) = validate(&map) {
        return Ok(Probe::NotAChannel(e));
    }
    let owner = map.load_u32(OFF_RECEIVER, Ordering::Acquire).unwrap_or(0);
    drop(map);
    Ok(if lock_owner(&seg)? {
        Probe::Stale(owner, seg)
    } else {
        Probe::Live(owner)
    })
}

/// Lets go of the owner lock [`probe`] took on a stale segment. Explicitly, not by closing the
/// descriptor: a child this process forks meanwhile shares the open file, and with it the lock,
/// until it executes its program.
pub(crate) fn release(seg: &Segment) {
    if let Some(fd) = seg.fd() {
        let _ = rustix::fs::flock(fd, rustix::fs::FlockOperation::Unlock);
    }
}

/// Removes the name of a segment [`probe`] found stale, if the name still refers to it. (If
/// it was removed or replaced meanwhile, there is nothing of ours to remove: `NotFound`.)
pub(crate) fn remove_stale(mut seg: Segment) -> Result<(), Error> {
    seg.remove_name_now()
}

/// A segment named `name` exists: remove its name if its receiver is gone (the segment's
/// owner lock is free), refuse otherwise. `Ok` means "try creating again".
fn reclaim_if_stale(name: &str) -> Result<(), Error> {
    let label = format!("shm {name}");
    let seg = match Segment::open(name) {
        Ok(seg) => seg,
        // Gone since our create failed: try again.
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let in_use = || Error::new(ErrorKind::AlreadyExists).object(&label);
    match probe(seg)? {
        Probe::NotAChannel(e) => Err(in_use().detail(format!(
            "exists and is not a procom channel, or is still being set up ({e}); procom does not adopt it"
        ))),
        Probe::Live(owner) => Err(in_use().detail(format!(
            "is a live channel owned by pid {owner}; it has one receiver at a time"
        ))),
        // Stale: its receiver died without removing it. If the name was removed or replaced
        // meanwhile, the next create tells.
        Probe::Stale(_, seg) => match remove_stale(seg) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        },
    }
}

impl RecvFlavor for ShmReceiver {
    fn recv_into(&mut self, wait: Wait, buf: &mut Vec<u8>) -> Result<usize, Error> {
        self.recv_in_ring(wait, |m| {
            // Only bytes beyond the old length are zeroed before the copy overwrites them.
            buf.resize(m.len(), 0);
            m.copy_to(buf);
            m.len()
        })
    }

    fn recv(&mut self, wait: Wait) -> Result<Vec<u8>, Error> {
        self.recv_in_ring(wait, |m| {
            let mut v = vec![0u8; m.len()];
            m.copy_to(&mut v);
            v
        })
    }

    /// Read where the message lies in the ring: the zero-copy path.
    fn recv_with<T>(&mut self, wait: Wait, f: impl FnOnce(&[AtomicU8]) -> T) -> Result<T, Error> {
        self.recv_in_ring(wait, |m| f(m.as_atomic_bytes()))
    }

    fn cleanup(&self) -> Option<crate::Cleanup> {
        self.segment.as_ref().and_then(Segment::cleanup)
    }

    /// An anonymous channel's end: its open file, the end released for another process to
    /// attach (its lock stays with the descriptor). A named channel's receiver has none.
    fn into_fd(mut self) -> Option<OwnedFd> {
        if self.fixed.flags & FLAG_ANONYMOUS == 0 {
            return None;
        }
        release_slot(&self.map, OFF_RECEIVER);
        // The use lock goes with the private open file: another process may take the end up.
        self.claim = None;
        self.handed_over = true;
        self.sender.take().map(Watched::into_fd)
    }
}
