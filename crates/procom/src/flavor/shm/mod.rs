//! The shared-memory channel (`shm:/NAME`): the ring of `procom-ring` in a POSIX segment, with
//! futex wake-ups and pidfd peer-death detection around it.
//!
//! # Segment layout (version 2)
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
//! Version 2 is the ring whose consumer polls the next record's header and whose producer
//! writes an end mark after each record (see `procom-ring`); a version 1 peer polled the
//! shared tail, so the two refuse each other's segments (`Corrupted`, naming the version).
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
//! Waiting: an empty receiver spins for its endpoint's `?spin=` (0 by default; a sender facing a full
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
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering, fence};
use std::time::{Duration, Instant};

use procom_sys::mapping::MappedRing;
use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::process::{Pid, PidfdFlags};
use rustix::thread::futex;

use crate::error::{Error, ErrorKind};
use crate::shm::{Header, Mapping};

mod anon;
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) mod check;
mod receiver;
mod sender;

pub(crate) use anon::channel as anonymous;

pub(crate) use receiver::{Probe, ShmReceiver, probe, release, remove_stale};
pub(crate) use sender::ShmSender;

const MAGIC: [u8; 8] = *b"PROCOMCH";
const VERSION: u32 = 2;
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
/// The flags word of an anonymous channel's segment (see `anon`); a named one's is 0.
const FLAG_ANONYMOUS: u32 = 1;
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
#[inline]
fn word(map: &Mapping, off: usize) -> &AtomicU32 {
    map.atomic_u32(off).unwrap_or(&NO_WORD)
}

fn me() -> u32 {
    rustix::process::getpid().as_raw_nonzero().get() as u32
}

/// The other side of a channel, watched for its end: a process through a pidfd (so a recycled
/// pid can never fool us), or, for an anonymous channel, the other end's byte lock.
#[derive(Debug)]
struct Watched {
    target: Target,
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

/// What a [`Watched`] watches.
#[derive(Debug)]
enum Target {
    /// A process, by pid and (where one could be opened) pidfd.
    Process { pid: u32, pidfd: Option<OwnedFd> },
    /// The other end of an anonymous channel (see `anon`): alive while its open file holds the
    /// lock on `byte`, as seen from our own open file of the segment, `ours`.
    Lock { ours: OwnedFd, byte: u64 },
}

impl Watched {
    fn new(pid: u32) -> Watched {
        let pidfd =
            pid_of(pid).and_then(|p| rustix::process::pidfd_open(p, PidfdFlags::empty()).ok());
        Watched::of(Target::Process { pid, pidfd })
    }

    /// The other end of an anonymous channel, whose open file holds the lock on `byte`, seen
    /// from our open file `ours` (which the watch keeps).
    fn lock(ours: OwnedFd, byte: u64) -> Watched {
        Watched::of(Target::Lock { ours, byte })
    }

    fn of(target: Target) -> Watched {
        Watched {
            target,
            checked: AtomicU64::new(0),
            was_dead: AtomicBool::new(false),
        }
    }

    /// A watch of nothing, left behind where a watch was taken apart.
    fn nobody() -> Watched {
        Watched::of(Target::Process {
            pid: 0,
            pidfd: None,
        })
    }

    /// Whether this watches the other end of an anonymous channel.
    fn is_lock(&self) -> bool {
        matches!(self.target, Target::Lock { .. })
    }

    /// Our open file, for an anonymous channel's watch.
    fn into_lock_fd(self) -> Option<OwnedFd> {
        match self.target {
            Target::Lock { ours, .. } => Some(ours),
            Target::Process { .. } => None,
        }
    }

    /// The pid watched, for a process.
    fn pid(&self) -> Option<u32> {
        match &self.target {
            Target::Process { pid, .. } => Some(*pid),
            Target::Lock { .. } => None,
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

    /// Whether the process has exited (a pidfd becomes readable then; no pidfd: it was gone),
    /// or the other end's open file was closed everywhere (its lock is gone).
    fn dead(&self) -> bool {
        match &self.target {
            // No pidfd: only "no such process" means dead; another failure (EMFILE, a sandbox
            // refusing pidfd_open) must not make a live peer look gone.
            Target::Process { pid, pidfd: None } => pid_of(*pid).is_none_or(|p| {
                rustix::process::test_kill_process(p) == Err(rustix::io::Errno::SRCH)
            }),
            Target::Process {
                pidfd: Some(fd), ..
            } => {
                let mut fds = [PollFd::new(fd, PollFlags::IN)];
                matches!(rustix::event::poll(&mut fds, Some(&Timespec { tv_sec: 0, tv_nsec: 0 })), Ok(n) if n > 0)
            }
            // A failure to ask must not make a live peer look gone either.
            Target::Lock { ours, byte } => {
                matches!(
                    procom_sys::ofd_lock::byte_locked_elsewhere(ours, *byte),
                    Ok(false)
                )
            }
        }
    }
}

/// Claims the pid slot at `off` (the `role` end's) for this process: free (0), or held by a
/// process that died without letting go.
fn claim_slot(map: &Mapping, off: usize, role: &str) -> Result<(), Error> {
    let slot = word(map, off);
    let mine = me();
    loop {
        match slot.compare_exchange(0, mine, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return Ok(()),
            Err(other) if pid_of(other).is_none() => {
                return Err(header_corrupted(&format!(
                    "its {role} pid is {other}, which is not a pid"
                )));
            }
            // Our own pid: another end in this process already holds the slot (one producer
            // and one consumer per ring), never a stale one.
            Err(other) if other == mine || alive(other) => {
                return Err(Error::new(ErrorKind::AlreadyExists).detail(format!(
                    "already has a {role} (pid {other}); a shared-memory channel has one {role} at a time"
                )));
            }
            Err(other) => {
                // The previous holder died without letting go: take its place.
                if slot
                    .compare_exchange(other, mine, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    return Ok(());
                }
            }
        }
    }
}

/// Lets go of the pid slot at `off` if this process holds it.
fn release_slot(map: &Mapping, off: usize) {
    let _ = word(map, off).compare_exchange(me(), 0, Ordering::AcqRel, Ordering::Relaxed);
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

/// The state word, checked: procom only ever sets the two closed flags in it. (Read on every
/// send: inlined, with the error built out of line.)
#[inline]
fn load_state(map: &Mapping, order: Ordering) -> Result<u32, Error> {
    let state = word(map, OFF_STATE).load(order);
    if state & !(STATE_RECEIVER_CLOSED | STATE_SENDER_CLOSED) != 0 {
        return Err(bad_state(state));
    }
    Ok(state)
}

#[cold]
fn bad_state(state: u32) -> Error {
    header_corrupted(&format!(
        "its state word is {state:#x}, which no procom process writes"
    ))
}

/// The sender-pid slot, checked: 0 (no sender) or a pid.
#[inline]
fn load_sender(map: &Mapping, order: Ordering) -> Result<u32, Error> {
    let pid = word(map, OFF_SENDER).load(order);
    if pid != 0 && pid_of(pid).is_none() {
        return Err(bad_sender(pid));
    }
    Ok(pid)
}

#[cold]
fn bad_sender(pid: u32) -> Error {
    header_corrupted(&format!("its sender pid is {pid}, which is not a pid"))
}

/// The header words fixed once a channel is set up, as this side knows them; the header is
/// read again and compared with them whenever an endpoint checks on its peer, and before it
/// reports the peer gone (a header overwritten by another process is `Corrupted`, never a
/// clean end).
#[derive(Debug, Clone, Copy)]
struct Fixed {
    layout_size: u64,
    capacity: u64,
    /// The receiver's pid, fixed at set-up; `None` for an anonymous channel, whose receiver
    /// slot is claimed like the sender's (0, or the pid of the process using that end).
    receiver: Option<u32>,
    /// The flags word: 0, or [`FLAG_ANONYMOUS`].
    flags: u32,
}

impl Fixed {
    fn check(&self, map: &Mapping) -> Result<(), Error> {
        let r = Ordering::Relaxed;
        let magic = map.load_u64(0, r).map(u64::to_ne_bytes);
        let receiver = map.load_u32(OFF_RECEIVER, r);
        let fields = [
            ("magic", magic == Some(MAGIC)),
            ("version", map.load_u32(OFF_VERSION, r) == Some(VERSION)),
            ("flags", map.load_u32(OFF_FLAGS, r) == Some(self.flags)),
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
                match self.receiver {
                    Some(pid) => receiver == Some(pid),
                    None => receiver.is_some_and(|p| p == 0 || pid_of(p).is_some()),
                },
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

/// A sleep an endpoint has announced and may now take (see `arm` on either side): the
/// futex word, the value it was seen with, and the mapping that holds it, so that another
/// thread (an async endpoint's waiter) can take it.
#[derive(Debug)]
pub(crate) struct Sleep {
    map: Arc<Mapping>,
    off: usize,
    seen: u32,
}

impl Sleep {
    /// Sleeps until woken, the deadline, or the liveness period (then the endpoint looks at
    /// its ring and its peer again).
    pub(crate) fn take(&self, deadline: Option<Instant>) {
        sleep_on(word(&self.map, self.off), self.seen, deadline);
    }

    /// Ends this sleep early (an async endpoint that stopped waiting). Its peer's sleeps are
    /// on the other word, so no one else is woken.
    #[cfg(feature = "tokio")]
    pub(crate) fn interrupt(&self) {
        word(&self.map, self.off).fetch_add(1, Ordering::SeqCst);
        wake(word(&self.map, self.off));
    }
}

fn wake(seq: &AtomicU32) {
    let _ = futex::wake(seq, futex::Flags::empty(), i32::MAX as u32);
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
    // Loaded, not through `word`: a read-only mapping (one looked at, not used) has no
    // atomics to hand out.
    if map.load_u32(OFF_VERSION, Ordering::Acquire).unwrap_or(0) == 0 {
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

/// Called by the receiver after its position moved (a message released, padding skipped).
#[inline]
fn wake_sender(map: &Mapping) {
    wake_if_waiting(map, OFF_TX_WAITING, OFF_SPACE_SEQ);
}

/// Called by the sender after its position moved (a message committed, padding published).
#[inline]
fn wake_receiver(map: &Mapping) {
    wake_if_waiting(map, OFF_RX_WAITING, OFF_DATA_SEQ);
}

/// Bumps the sequence word at `seq` and wakes its sleeper, if the other side announced itself
/// at `waiting`.
#[inline]
fn wake_if_waiting(map: &Mapping, waiting: usize, seq: usize) {
    // Pairs with the other side's fence between announcing its wait and checking the ring once
    // more: either it sees what we changed, or we see it waiting and wake it.
    fence(Ordering::SeqCst);
    if word(map, waiting).load(Ordering::Relaxed) != 0 {
        bump_and_wake(word(map, seq));
    }
}

/// Bumps a sequence word and wakes its sleeper (out of the hot path: only for a sleeper).
#[cold]
fn bump_and_wake(seq: &AtomicU32) {
    seq.fetch_add(1, Ordering::SeqCst);
    wake(seq);
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
