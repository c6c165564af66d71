//! The shared-memory channel (`shm:/NAME`): the ring of `procom-ring` in a POSIX segment, with
//! futex wake-ups and pidfd peer-death detection around it.
//!
//! # Segment layout (version 1)
//!
//! ```text
//!   0  magic "PROCOMCH"        8  version u32 (written last, Release: the header is complete)
//!  12  flags u32 (0)           16  layout_size u64 = 256 + capacity
//!  24  capacity u64           32  receiver pid u32      36  sender pid u32
//!  40  data_seq u32 (futex: bumped after each message)  44  space_seq u32 (futex: after each release)
//!  48  receiver waiting u32   52  sender waiting u32    56  state u32 (1: receiver closed, 2: sender closed)
//! 128  the ring: head u64 @0, tail u64 @64, data @128 (capacity bytes, a power of two)
//! ```
//!
//! The receiver creates and owns the segment (mode 0600, exclusive) and removes its name on
//! drop. It holds an exclusive `flock` on the segment (the owner lock) from before its header is
//! complete until after it has removed its name; the kernel releases it if the receiver dies.
//! A segment whose owner lock is free is stale: the next receiver takes the lock, checks that
//! the name still refers to that segment, removes the name and creates its own. Because the
//! closing receiver removes its name *before* letting the lock go (and only if the name is
//! still its segment's), a new receiver can never reclaim a segment that is half-closed, and an
//! old receiver can never remove the name of the segment that replaced its own. One sender
//! attaches at a time by claiming the sender-pid slot; a slot whose process is dead is
//! reclaimed, so a new sender can attach after one was killed.
//!
//! Waiting: an empty receiver spins for `Options::spin` (0 by default; a sender facing a full
//! ring spins as long before it sleeps the same way), then announces itself
//! in "receiver waiting", issues a SeqCst fence, reads `data_seq`, checks the ring (and the
//! sender-closed flag) once more and sleeps on `data_seq` with `futex_wait`. Whenever the
//! sender's ring position moves — a commit, and also a padding record published by a `reserve`
//! that then finds no room — it issues a SeqCst fence and, only if a receiver is announced,
//! bumps `data_seq` and wakes it: by the two fences, either the sender sees the announcement
//! or the receiver sees the new position, so no wake-up is lost, and a busy channel writes no
//! shared word beyond the ring itself. A full sender mirrors this on `space_seq`: it sleeps
//! only if `Producer::would_block` (the exact condition under which `reserve` can do nothing,
//! padding included) still holds after its fence, and the receiver wakes it whenever its
//! position moves: a released message, and also padding skipped by a `peek` that then finds
//! the ring empty. Closing either side sets its flag, then bumps the other side's sequence
//! word and wakes it. Sleeps last at most 50 ms, after which the sleeper checks the peer's
//! pidfd: a SIGKILLed peer is noticed within 50 ms, and a message it had not committed is
//! never seen. No wake-up depends on that period (a test sets it to seconds and counts the
//! sleeps that end by it: `crate::shm::debug`).
//!
//! The header is read as if a hostile process wrote it: a pid slot holds 0 or a pid (at most
//! `PID_MAX_LIMIT`), the state word only the two closed flags, and the words fixed at set-up
//! (magic, version, flags, sizes, receiver pid; the waiting flags are 0 or 1) are compared
//! with what this side knows whenever it asks the kernel about its peer (after every sleep,
//! and at most every `RECHECK` on a busy channel) and before it reports the peer gone.
//! Anything else is `Corrupted` on either side, never `PeerGone` (which would end a receiving
//! program as cleanly as a sender that closed). The sequence words may hold any value.

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering, fence};
use std::time::{Duration, Instant};

use std::sync::Arc;

use procom_ring::{Consumer, Producer};
use procom_sys::mapping::MappedRing;
use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::process::{Pid, PidfdFlags};
use rustix::thread::futex;

use crate::error::{Error, ErrorKind};
use crate::flavor::{RecvFlavor, SendFlavor, Wait};
use crate::shm::{Header, Mapping, Segment};

const MAGIC: [u8; 8] = *b"PROCOMCH";
const VERSION: u32 = 1;
const OFF_VERSION: usize = 8;
const OFF_FLAGS: usize = 12;
const OFF_LAYOUT: usize = 16;
const OFF_CAPACITY: usize = 24;
const OFF_RECEIVER: usize = 32;
const OFF_SENDER: usize = 36;
const OFF_DATA_SEQ: usize = 40;
const OFF_SPACE_SEQ: usize = 44;
const OFF_RX_WAITING: usize = 48;
const OFF_TX_WAITING: usize = 52;
const OFF_STATE: usize = 56;
const RING_OFFSET: usize = 128;
const STATE_RECEIVER_CLOSED: u32 = 1;
const STATE_SENDER_CLOSED: u32 = 2;
/// The largest pid Linux hands out (`PID_MAX_LIMIT` on 64-bit systems; `kernel.pid_max` can
/// be raised up to it, never past it).
const PID_MAX_LIMIT: u32 = 4 << 20;
/// The longest a sleeper goes without checking that its peer is alive.
const LIVENESS: Duration = Duration::from_millis(50);
/// The ring capacity when the endpoint does not say.
pub const DEFAULT_CAPACITY: u64 = 1 << 20;

static NO_WORD: AtomicU32 = AtomicU32::new(0);

/// A control word of the header. Offsets are constants below 256 and every mapping here is
/// validated to be larger, so the fallback is never used; it exists so no path can panic.
fn word(map: &Mapping, off: usize) -> &AtomicU32 {
    map.atomic_u32(off).unwrap_or(&NO_WORD)
}

fn me() -> u32 {
    rustix::process::getpid().as_raw_nonzero().get() as u32
}

/// A process we watch through a pidfd, so a recycled pid can never fool us.
#[derive(Debug)]
struct Watched {
    pid: u32,
    pidfd: Option<OwnedFd>,
    /// When `dead` was last asked of the kernel ([`coarse_now`]), and its answer: a busy
    /// sender or a spinning receiver asks at most every [`RECHECK`], not once per message.
    /// Nanoseconds of the coarse clock at that moment; 0: never. Relaxed: a cache read and
    /// written by the one thread using the endpoint (atomic only so the endpoint is `Sync`).
    checked: AtomicU64,
    /// Relaxed, as `checked`.
    was_dead: AtomicBool,
}

/// How much of a ring is allocated and mapped when a channel is created or attached.
const POPULATE_MAX: usize = 16 << 20;

/// Polls of the ring between two clock and liveness checks of a spinning endpoint.
const SPIN_BURST: u32 = 128;

/// How long a spinning endpoint keeps its CPU to itself; after that, it offers the CPU to
/// other runnable threads between bursts (`sched_yield`), so that a process spinning on an
/// idle channel does not halve the speed of one with work on the same CPU.
const SPIN_ALONE: Duration = Duration::from_micros(50);

/// One burst of a spinning endpoint that started spinning at `start`: polls `ready` up to
/// [`SPIN_BURST`] times, and if it never held and the endpoint has spun for [`SPIN_ALONE`],
/// offers the CPU to other threads before the caller's next clock and liveness check.
fn spin_burst(now: Instant, start: Instant, mut ready: impl FnMut() -> bool) {
    for _ in 0..SPIN_BURST {
        if ready() {
            return;
        }
        std::hint::spin_loop();
    }
    if now.saturating_duration_since(start) >= SPIN_ALONE {
        std::thread::yield_now();
    }
}

/// How stale a cached liveness answer may be on the hot paths (plus [`coarse_now`]'s
/// resolution, a few milliseconds).
const RECHECK: Duration = Duration::from_millis(2);

/// The coarse monotonic clock: read from memory the kernel updates every tick, with no
/// timestamp counter read, so checking the liveness cache on every send costs a few
/// nanoseconds rather than a fine clock's tens.
fn coarse_now() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0).min(999_999_999),
    )
}

impl Watched {
    fn new(pid: u32) -> Watched {
        let pidfd =
            pid_of(pid).and_then(|p| rustix::process::pidfd_open(p, PidfdFlags::empty()).ok());
        Watched {
            pid,
            pidfd,
            checked: AtomicU64::new(0),
            was_dead: AtomicBool::new(false),
        }
    }

    /// `dead`, answered from a cache no older than [`RECHECK`] unless `fresh`. Whenever the
    /// kernel is asked, `check` (the header check) runs first, so a busy endpoint checks the
    /// header at the pace it checks its peer, with no clock read of its own.
    fn dead_within(
        &self,
        fresh: bool,
        check: impl FnOnce() -> Result<(), Error>,
    ) -> Result<bool, Error> {
        if self.was_dead.load(Ordering::Relaxed) {
            return Ok(true);
        }
        let checked = self.checked.load(Ordering::Relaxed);
        if !fresh
            && checked != 0
            && coarse_now().saturating_sub(Duration::from_nanos(checked)) < RECHECK
        {
            return Ok(false);
        }
        check()?;
        let dead = self.dead();
        let now = u64::try_from(coarse_now().as_nanos())
            .unwrap_or(u64::MAX)
            .max(1);
        self.checked.store(now, Ordering::Relaxed);
        self.was_dead.store(dead, Ordering::Relaxed);
        Ok(dead)
    }

    /// Whether the process has exited (a pidfd becomes readable then; no pidfd: it was gone).
    fn dead(&self) -> bool {
        match &self.pidfd {
            // No pidfd: only "no such process" means dead; another failure (EMFILE, a sandbox
            // refusing pidfd_open) must not make a live peer look gone.
            None => pid_of(self.pid).is_none_or(|p| {
                rustix::process::test_kill_process(p) == Err(rustix::io::Errno::SRCH)
            }),
            Some(fd) => {
                let mut fds = [PollFd::new(fd, PollFlags::IN)];
                matches!(rustix::event::poll(&mut fds, Some(&Timespec { tv_sec: 0, tv_nsec: 0 })), Ok(n) if n > 0)
            }
        }
    }
}

fn alive(pid: u32) -> bool {
    pid != 0 && !Watched::new(pid).dead()
}

/// `raw` as a pid, if Linux could have handed it out (1 to [`PID_MAX_LIMIT`]): a pid slot
/// holding anything else was not written by a procom process.
fn pid_of(raw: u32) -> Option<Pid> {
    if raw > PID_MAX_LIMIT {
        return None;
    }
    Pid::from_raw(raw as i32)
}

/// The error for a header word that no procom process would have written.
fn header_corrupted(what: &str) -> Error {
    corrupted(&format!(
        "its header was overwritten ({what}); the channel is corrupted and no longer used"
    ))
}

/// The state word, checked: procom only ever sets the two closed flags in it.
fn load_state(map: &Mapping, order: Ordering) -> Result<u32, Error> {
    let state = word(map, OFF_STATE).load(order);
    if state & !(STATE_RECEIVER_CLOSED | STATE_SENDER_CLOSED) != 0 {
        return Err(header_corrupted(&format!(
            "its state word is {state:#x}, which no procom process writes"
        )));
    }
    Ok(state)
}

/// The sender-pid slot, checked: 0 (no sender) or a pid.
fn load_sender(map: &Mapping, order: Ordering) -> Result<u32, Error> {
    let pid = word(map, OFF_SENDER).load(order);
    if pid != 0 && pid_of(pid).is_none() {
        return Err(header_corrupted(&format!(
            "its sender pid is {pid}, which is not a pid"
        )));
    }
    Ok(pid)
}

/// The header words fixed once a channel is set up, as this side knows them; the header is
/// read again and compared with them whenever an endpoint checks on its peer, and before it
/// reports the peer gone (a header overwritten by another process is `Corrupted`, never a
/// clean end).
#[derive(Debug, Clone, Copy)]
struct Fixed {
    layout_size: u64,
    capacity: u64,
    receiver: u32,
}

impl Fixed {
    fn check(&self, map: &Mapping) -> Result<(), Error> {
        let r = Ordering::Relaxed;
        let magic = map.load_u64(0, r).map(u64::to_ne_bytes);
        let fields = [
            ("magic", magic == Some(MAGIC)),
            ("version", map.load_u32(OFF_VERSION, r) == Some(VERSION)),
            ("flags", map.load_u32(OFF_FLAGS, r) == Some(0)),
            (
                "layout size",
                map.load_u64(OFF_LAYOUT, r) == Some(self.layout_size),
            ),
            (
                "ring capacity",
                map.load_u64(OFF_CAPACITY, r).map(u64::from_le) == Some(self.capacity),
            ),
            (
                "receiver pid",
                map.load_u32(OFF_RECEIVER, r) == Some(self.receiver),
            ),
            (
                "receiver-waiting flag",
                map.load_u32(OFF_RX_WAITING, r).is_some_and(|w| w <= 1),
            ),
            (
                "sender-waiting flag",
                map.load_u32(OFF_TX_WAITING, r).is_some_and(|w| w <= 1),
            ),
        ];
        // A truncated segment reads as zeros: say what happened, not which field it hit.
        if map.faulted() {
            return Err(corrupted("the segment was truncated under the channel"));
        }
        if let Some((field, _)) = fields.iter().find(|(_, ok)| !ok) {
            return Err(header_corrupted(&format!(
                "its {field} changed since the channel was set up"
            )));
        }
        load_state(map, r)?;
        load_sender(map, r)?;
        Ok(())
    }
}

/// A liveness period set by procom's own tests (milliseconds; 0: [`LIVENESS`]).
static LIVENESS_OVERRIDE_MS: AtomicU64 = AtomicU64::new(0);
/// Sleeps, in this process, that ended because the liveness period ran out rather than by a
/// wake-up or the caller's deadline (a debug statistic for tests: with a live, active peer, each
/// one is a lost wake-up).
static LIVENESS_TICKS: AtomicU64 = AtomicU64::new(0);

/// See `crate::test_hooks`.
#[cfg(feature = "test-hooks")]
pub(crate) fn set_liveness_period(period: Duration) {
    let ms = u64::try_from(period.as_millis()).unwrap_or(u64::MAX);
    LIVENESS_OVERRIDE_MS.store(ms, Ordering::Relaxed);
}

/// See `crate::test_hooks`.
#[cfg(feature = "test-hooks")]
pub(crate) fn liveness_ticks() -> u64 {
    LIVENESS_TICKS.load(Ordering::Relaxed)
}

fn liveness() -> Duration {
    match LIVENESS_OVERRIDE_MS.load(Ordering::Relaxed) {
        0 => LIVENESS,
        ms => Duration::from_millis(ms),
    }
}

/// Sleeps on `seq` (expected value `seen`) until woken, the deadline, or the liveness period.
fn sleep_on(seq: &AtomicU32, seen: u32, deadline: Option<Instant>) {
    let period = liveness();
    let mut wait = period;
    if let Some(d) = deadline {
        wait = wait.min(d.saturating_duration_since(Instant::now()));
    }
    let ts = Timespec {
        tv_sec: i64::try_from(wait.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(wait.subsec_nanos()),
    };
    // EAGAIN (the value moved on), ETIMEDOUT and EINTR all just mean "look again".
    let r = futex::wait(seq, futex::Flags::empty(), seen, Some(&ts));
    if r == Err(rustix::io::Errno::TIMEDOUT) && wait == period {
        LIVENESS_TICKS.fetch_add(1, Ordering::Relaxed);
    }
}

fn wake(seq: &AtomicU32) {
    let _ = futex::wake(seq, futex::Flags::empty(), i32::MAX as u32);
}

fn capacity_for(requested: u64) -> Result<usize, Error> {
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

/// How long a sender gives a receiver to finish setting up a channel whose name it found.
const SETUP_GRACE: Duration = Duration::from_secs(1);

/// Opens and maps the channel `name` once its receiver has set it up: sized it and published
/// its header. The name appears first, and nothing signals the rest (a few milliseconds), so a
/// sender that comes in between tries again, 1 to 10 ms apart, for up to [`SETUP_GRACE`] before
/// it reports what it found (a segment abandoned half-made, or one that is no channel).
fn open_ready(name: &str) -> Result<(Segment, Mapping, usize), Error> {
    let give_up = Instant::now() + SETUP_GRACE;
    let mut pause = Duration::from_millis(1);
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
            Err(_) if Instant::now() < give_up => {
                drop(segment);
                std::thread::sleep(pause); // no notification exists for "set up"
                pause = (pause * 2).min(Duration::from_millis(10));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Reads and checks the header of a mapped channel; returns its ring capacity.
fn validate(map: &Mapping) -> Result<usize, Error> {
    if map.len() < RING_OFFSET + procom_ring::bytes_needed(procom_ring::MIN_CAPACITY) {
        return Err(Error::new(ErrorKind::Corrupted).detail(format!(
            "is only {} bytes, too small for a procom channel",
            map.len()
        )));
    }
    // Acquire pairs with the creator's Release store of the version: the rest is complete.
    if word(map, OFF_VERSION).load(Ordering::Acquire) == 0 {
        return Err(Error::new(ErrorKind::Corrupted)
            .detail("is still being set up, or was abandoned half-made"));
    }
    let mut header = Header {
        magic: [0; 8],
        version: 0,
        flags: 0,
        layout_size: 0,
    };
    map.read(0, bytemuck::bytes_of_mut(&mut header))
        .map_err(|e| Error::os("read its header", e))?;
    header.validate(&MAGIC, VERSION, map.len())?;
    let mut cap = [0u8; 8];
    map.read(OFF_CAPACITY, &mut cap)
        .map_err(|e| Error::os("read its header", e))?;
    let cap = u64::from_le_bytes(cap);
    // Checked arithmetic: the capacity is a peer's word, and usize may be 32 bits.
    let ok = cap.is_power_of_two()
        && cap >= procom_ring::MIN_CAPACITY as u64
        && usize::try_from(cap)
            .ok()
            .and_then(|c| RING_OFFSET.checked_add(procom_ring::bytes_needed(c)))
            == Some(map.len());
    if !ok || map.faulted() {
        return Err(Error::new(ErrorKind::Corrupted).detail(format!(
            "its header's ring capacity {cap} does not match its {} bytes",
            map.len()
        )));
    }
    Ok(cap as usize)
}

fn ring(map: &Arc<Mapping>) -> Result<MappedRing, Error> {
    MappedRing::new(Arc::clone(map), RING_OFFSET)
        .ok_or_else(|| corrupted("its ring area is malformed"))
}

/// The receiving side: creates and owns the segment.
#[derive(Debug)]
pub(crate) struct ShmReceiver {
    consumer: Consumer<MappedRing>,
    map: Arc<Mapping>,
    /// Holds the owner's lock (an exclusive `flock`) until dropped.
    segment: Segment,
    fixed: Fixed,
    sender: Option<Watched>,
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
    ) -> Result<ShmReceiver, Error> {
        let cap = capacity_for(capacity.unwrap_or(DEFAULT_CAPACITY))?;
        let len = (RING_OFFSET + procom_ring::bytes_needed(cap)) as u64;
        let mut reclaimed = 0;
        let segment = loop {
            match Segment::create(name, len) {
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
        // The owner's lock, held until this receiver has removed its name (see the module
        // docs). Taken before the version is published, so whoever sees a complete header
        // either finds the lock held or the owner gone; nobody else takes a lock on a segment
        // whose header is incomplete, so this never waits for a procom process.
        lock_owner(&segment)?.then_some(()).ok_or_else(|| {
            Error::new(ErrorKind::AlreadyExists)
                .detail("another process locked the segment this receiver just created")
        })?;
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
            receiver: me(),
        };
        word(&map, OFF_RECEIVER).store(fixed.receiver, Ordering::Relaxed);
        procom_ring::init(&region);
        // Release: everything above is visible to whoever sees the version.
        word(&map, OFF_VERSION).store(VERSION, Ordering::Release);
        let consumer = Consumer::attach(region).map_err(ring_error)?;
        Ok(ShmReceiver {
            consumer,
            map,
            segment,
            fixed,
            sender: None,
            spin,
            max,
            broken: false,
        })
    }

    /// Whether the sender has gone: closed cleanly, or its process is dead. `Corrupted` if
    /// the header was overwritten: checked whenever the sender's liveness is asked of the
    /// kernel, on every `fresh` call, and before the sender is reported gone.
    fn sender_gone(&mut self, fresh: bool) -> Result<bool, Error> {
        let pid = load_sender(&self.map, Ordering::Acquire)?;
        let gone = if pid == 0 {
            self.sender = None;
            if fresh {
                self.fixed.check(&self.map)?;
            }
            load_state(&self.map, Ordering::Acquire)? & STATE_SENDER_CLOSED != 0
        } else {
            if self.sender.as_ref().is_none_or(|w| w.pid != pid) {
                self.sender = Some(Watched::new(pid));
            }
            let (map, fixed) = (&self.map, self.fixed);
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

    /// Hands the next message to `f` where it lies in the ring, and releases it after.
    fn recv_in_ring<T>(
        &mut self,
        wait: Wait,
        f: impl FnOnce(&procom_ring::Message<'_, MappedRing>) -> T,
    ) -> Result<T, Error> {
        let (deadline, is_try) = (wait.deadline(), wait.is_try());
        if self.broken {
            return Err(corrupted(
                "the channel was found corrupted earlier and is no longer read",
            ));
        }
        // When spinning started, and until when it may go on.
        // A spin too long to represent spins until the deadline, if any (never overflows).
        let spin = (!self.spin.is_zero()).then(|| {
            let t = Instant::now();
            (t, t.checked_add(self.spin))
        });
        loop {
            if self.map.faulted() {
                self.broken = true;
                return Err(corrupted("the segment was truncated under the receiver"));
            }
            let before = self.consumer.position();
            match self.consumer.peek() {
                Ok(msg) => {
                    let len = msg.len();
                    let out = (len <= self.max).then(|| f(&msg));
                    drop(msg); // releases the record (head, Release)
                    wake_sender(&self.map);
                    if self.map.faulted() {
                        self.broken = true;
                        return Err(corrupted("the segment was truncated under the receiver"));
                    }
                    return out.ok_or_else(|| Error::too_large(len as u64, self.max as u64));
                }
                Err(procom_ring::Error::Empty) => {}
                Err(e) => {
                    self.broken = true;
                    return Err(ring_error(e));
                }
            }
            // Empty, but skipping padding releases room too: a sender may be asleep waiting
            // for exactly that.
            if self.consumer.position() != before {
                wake_sender(&self.map);
            }
            let now = Instant::now();
            // Since when we have been spinning, while the spin lasts.
            let spinning_since =
                spin.and_then(|(start, until)| until.is_none_or(|u| now < u).then_some(start));
            let spinning = spinning_since.is_some();
            // Asking the kernel whether the sender lives costs a system call: while spinning
            // (or polling with try_recv) the answer may be a couple of milliseconds old.
            let gone = self
                .sender_gone(!spinning && !is_try)
                .map_err(|e| self.broke(e))?;
            if gone && self.consumer.is_empty() {
                return Err(Error::new(ErrorKind::PeerGone));
            }
            if is_try {
                return Err(Error::new(ErrorKind::Empty));
            }
            if deadline.is_some_and(|d| now >= d) {
                return Err(
                    Error::new(ErrorKind::Timeout).detail("no message arrived before the deadline")
                );
            }
            if let Some(start) = spinning_since {
                // Poll the ring alone for a while before the next clock and liveness check:
                // those take longer than a message takes to cross between two cores, and a
                // message that lands during them waits for them to finish.
                spin_burst(now, start, || !self.consumer.is_empty());
                continue;
            }
            let waiting = word(&self.map, OFF_RX_WAITING);
            let seq = word(&self.map, OFF_DATA_SEQ);
            waiting.store(1, Ordering::SeqCst);
            // Pairs with the sender's fence after its commit: either it sees us waiting (and
            // bumps data_seq, so the futex wait below returns), or we see its message.
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
            if self.consumer.is_empty() && !closed {
                sleep_on(seq, seen, deadline);
            }
            waiting.store(0, Ordering::SeqCst);
        }
    }
}

/// Called by the receiver after its position moved (a message released, padding skipped).
fn wake_sender(map: &Mapping) {
    wake_if_waiting(map, OFF_TX_WAITING, OFF_SPACE_SEQ);
}

/// Called by the sender after its position moved (a message committed, padding published).
fn wake_receiver(map: &Mapping) {
    wake_if_waiting(map, OFF_RX_WAITING, OFF_DATA_SEQ);
}

/// Bumps the sequence word at `seq` and wakes its sleeper, if the other side announced itself
/// at `waiting`.
fn wake_if_waiting(map: &Mapping, waiting: usize, seq: usize) {
    // Pairs with the other side's fence between announcing its wait and checking the ring once
    // more: either it sees what we changed, or we see it waiting and wake it.
    fence(Ordering::SeqCst);
    if word(map, waiting).load(Ordering::Relaxed) != 0 {
        let seq = word(map, seq);
        seq.fetch_add(1, Ordering::SeqCst);
        wake(seq);
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
        // The name goes first, while we still hold the owner's lock: a new receiver can only
        // reclaim a segment whose lock it gets, so it never finds ours half-closed and never
        // has its own name removed by us. (The removal checks the name still refers to our
        // segment, in case someone removed it and made a new one.)
        let _ = self.segment.remove_name_now();
        word(&self.map, OFF_STATE).fetch_or(STATE_RECEIVER_CLOSED, Ordering::SeqCst);
        let space = word(&self.map, OFF_SPACE_SEQ);
        space.fetch_add(1, Ordering::SeqCst);
        wake(space);
        // Dropping `segment` then closes its descriptor, which releases the lock.
    }
}

/// A segment named `name` exists: remove its name if its receiver is gone (the segment's
/// owner lock is free), refuse otherwise. `Ok` means "try creating again".
///
/// The lock decides, not the pid or the state word: a receiver holds it from before its header
/// is complete until after it has removed its name, and the kernel drops it when the receiver
/// dies. Holding it ourselves, nobody else (another binder reclaiming the same stale segment)
/// can remove this name, so checking that the name still refers to the segment we locked and
/// then removing it is not a race among procom processes.
fn reclaim_if_stale(name: &str) -> Result<(), Error> {
    let label = format!("shm {name}");
    let mut seg = match Segment::open(name) {
        Ok(seg) => seg,
        // Gone since our create failed: try again.
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let in_use = || Error::new(ErrorKind::AlreadyExists).object(&label);
    let not_ours = |e: Error| {
        in_use().detail(format!(
            "exists and is not a procom channel, or is still being set up ({e}); procom does not adopt it"
        ))
    };
    let map = seg.map().map_err(not_ours)?;
    validate(&map).map_err(not_ours)?;
    if !lock_owner(&seg)? {
        let owner = word(&map, OFF_RECEIVER).load(Ordering::Acquire);
        return Err(in_use().detail(format!(
            "is a live channel owned by pid {owner}; it has one receiver at a time"
        )));
    }
    drop(map);
    // Stale: its receiver died without removing it. If the name was removed or replaced
    // meanwhile, there is nothing of ours to remove; the next create tells.
    match seg.remove_name_now() {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// The sending side: attaches to a receiver's segment.
#[derive(Debug)]
pub(crate) struct ShmSender {
    producer: Producer<MappedRing>,
    map: Arc<Mapping>,
    _segment: Segment,
    fixed: Fixed,
    receiver: Watched,
    max: usize,
    broken: bool,
    /// How long a send facing a full ring busy-polls before it sleeps (`Options::spin`).
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
            receiver: receiver_pid,
        };
        fixed.check(&map)?;
        let receiver = Watched::new(receiver_pid);
        if receiver.dead() || load_state(&map, Ordering::Acquire)? & STATE_RECEIVER_CLOSED != 0 {
            return Err(Error::new(ErrorKind::PeerGone)
                .detail("its receiver is gone (the segment is stale)"));
        }
        let slot = word(&map, OFF_SENDER);
        let mine = me();
        loop {
            match slot.compare_exchange(0, mine, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => break,
                // Our own pid: another sender in this process already holds the slot (one
                // producer per ring), never a stale one.
                Err(other) if pid_of(other).is_none() => {
                    return Err(header_corrupted(&format!(
                        "its sender pid is {other}, which is not a pid"
                    )));
                }
                Err(other) if other == mine || alive(other) => {
                    return Err(Error::new(ErrorKind::AlreadyExists)
                        .detail(format!("already has a sender (pid {other}); a shared-memory channel has one sender at a time")));
                }
                Err(other) => {
                    // The previous sender died without letting go: take its place.
                    if slot
                        .compare_exchange(other, mine, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                    {
                        break;
                    }
                }
            }
        }
        word(&map, OFF_STATE).fetch_and(!STATE_SENDER_CLOSED, Ordering::SeqCst);
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
            _segment: segment,
            fixed,
            receiver,
            max,
            broken: false,
            spin,
        })
    }

    /// Whether the receiver closed or died; `fresh` asks the kernel now, otherwise the answer
    /// may be up to [`RECHECK`] old (a busy sender does not make a system call per message).
    /// `Corrupted` if the header was overwritten: checked whenever the kernel is asked, and
    /// before the receiver is reported gone.
    fn receiver_gone(&self, fresh: bool) -> Result<bool, Error> {
        let closed = load_state(&self.map, Ordering::Acquire)? & STATE_RECEIVER_CLOSED != 0;
        let gone = closed
            || self
                .receiver
                .dead_within(fresh, || self.fixed.check(&self.map))?;
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

    /// Reserves `len` bytes in the ring, lets `fill` write them in place, and commits.
    fn send_in_ring(
        &mut self,
        len: usize,
        wait: Wait,
        fill: impl FnOnce(&mut procom_ring::Slot<'_, MappedRing>),
    ) -> Result<(), Error> {
        let (deadline, is_try) = (wait.deadline(), wait.is_try());
        if self.broken {
            return Err(corrupted(
                "the channel was found corrupted earlier and is no longer written",
            ));
        }
        if len > self.max {
            return Err(Error::too_large(len as u64, self.max as u64));
        }
        let mut waited = false;
        let mut spin_start: Option<Instant> = None;
        let mut fill = Some(fill);
        loop {
            if self.map.faulted() {
                self.broken = true;
                return Err(corrupted("the segment was truncated under the sender"));
            }
            if self.receiver_gone(waited).map_err(|e| self.broke(e))? {
                return Err(Error::new(ErrorKind::PeerGone));
            }
            let before = self.producer.position();
            // Starting over at the front of an empty ring keeps a busy channel in the caches,
            // but leaves a sleeping receiver's padding in the way: only while it is awake.
            let receiver_asleep = word(&self.map, OFF_RX_WAITING).load(Ordering::Relaxed) != 0;
            self.producer.set_rewind(!receiver_asleep);
            match self.producer.reserve(len) {
                Ok(mut slot) => {
                    if let Some(f) = fill.take() {
                        f(&mut slot);
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
            if is_try {
                return Err(Error::new(ErrorKind::Full));
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
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
            if blocked && !closed {
                sleep_on(seq, seen, deadline);
                waited = true;
            }
            waiting.store(0, Ordering::SeqCst);
        }
    }
}

impl Drop for ShmSender {
    fn drop(&mut self) {
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

fn corrupted(why: &str) -> Error {
    Error::new(ErrorKind::Corrupted).detail(why.to_string())
}

fn ring_error(e: procom_ring::Error) -> Error {
    match e {
        procom_ring::Error::Full => Error::new(ErrorKind::Full),
        procom_ring::Error::Empty => Error::new(ErrorKind::Empty),
        procom_ring::Error::TooLarge { max } => Error::too_large(max as u64 + 1, max as u64),
        procom_ring::Error::Corrupted => corrupted(
            "the ring's control words or records are inconsistent (a broken or hostile peer)",
        ),
        procom_ring::Error::BadLayout => corrupted("the ring's layout is invalid"),
    }
}

impl SendFlavor for ShmSender {
    fn send(&mut self, msg: &[u8], wait: Wait) -> Result<(), Error> {
        self.send_in_ring(msg.len(), wait, |slot| slot.write(0, msg))
    }

    /// Straight into the ring: the zero-copy path.
    fn send_with(&mut self, len: usize, fill: &mut dyn FnMut(&[AtomicU8])) -> Result<(), Error> {
        self.send_in_ring(len, Wait::Forever, |slot| fill(slot.as_atomic_bytes()))
    }

    fn set_max(&mut self, max: usize) {
        self.max = max;
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
        self.segment.cleanup()
    }
}
