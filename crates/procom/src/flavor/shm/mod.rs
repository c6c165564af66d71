//! The shared-memory channel (`shm:/NAME`): the ring of `procom-ring` in a POSIX segment, with
//! futex wake-ups and byte-lock peer-death detection around it.
//!
//! # Segment layout (version 3)
//!
//! ```text
//!   0  magic "PROCOMCH"        8  version u32 (written last, Release: the header is complete)
//!  12  flags u32 (0)           16  layout_size u64 = 256 + capacity
//!  24  capacity u64           32  receiver pid u32      36  sender pid u32
//!  40  data_seq u32 (futex: bumped after each message)  44  space_seq u32 (futex: after each release)
//!  48  receiver waiting u32   52  sender waiting u32    56  state u32 (1: receiver closed, 2: sender closed)
//! 128  the ring: head u64 @0, consumer waiting u64 @8, tail u64 @64, data @128 (capacity
//!      bytes, a power of two)
//! ```
//!
//! Version 3 is the ring whose consumer polls the next record's header and whose producer
//! writes an end mark after each record (see `procom-ring`), with each end's liveness in a
//! byte lock (below). Version 1 polled the shared tail; version 2 watched the ends by pid.
//! Peers of different versions refuse each other's segments (`Corrupted`, naming the version).
//! The ring's consumer-waiting word (ring offset 8, 0 from creation) only decides whether the
//! sender starts over at the front of an empty ring (see `procom_ring::Consumer::set_waiting`),
//! and nothing else reads it. A receiver clears it when it takes the ring up (one killed while
//! it waited may have left it set), so a receiver that never says it waits (one that only
//! polls: `try_recv`, the async receiver) is never started over for.
//!
//! # Liveness
//!
//! Each end is watched by an open-file-description lock (`F_OFD_SETLK`, `procom_sys::ofd_lock`)
//! that its open file of the segment holds: the receiver's on byte 0 ([`RX_LOCK`]), the
//! sender's on byte 1 ([`TX_LOCK`]). The other end asks, from its own open file, whether the
//! byte is still locked (`F_OFD_GETLK`). The kernel releases such a lock when the last
//! descriptor or mapping of its open file goes, in whichever process: a killed end is seen
//! gone whatever became of its pid (pids are reused once the kernel has gone round its pid
//! space, 32768 by default), and an end is alive while any process holds a descriptor of its
//! open file (a child forked without executing a program, say). The sender's lock is also
//! what makes it the only one: a second sender's open file cannot take it. The pid slots
//! only say which process holds an end (and, for the sender, that one is attached).
//!
//! An open file can outlive the end that closed it for a moment: a child that another thread
//! of its process was forking holds copies of every descriptor until it executes its program.
//! So a sender that finds the sender lock held while no sender is attached (the slot empty,
//! or the closed flag set) asks again, 1 to 10 ms apart, for up to a second (`LINGER_GRACE`),
//! and then says that another process holds the lock, not that a sender is attached.
//! A process that can open the segment (its owner's, mode 0600 by default) can also lock
//! these bytes itself and pass for an end, as it could by attaching as one: a sender is then
//! refused with that said, and a sender whose receiver died waits as if it lived (its sends
//! time out or block, as towards a receiver that does not read); a planted lock never makes
//! anyone report `PeerGone`.
//!
//! The receiver creates and owns the segment (mode 0600, exclusive) and removes its name on
//! drop. It holds an exclusive `flock` on the segment (the owner lock) from before its header is
//! complete until after it has removed its name; the kernel releases it if the receiver dies.
//! A segment whose owner lock is free is stale: the next receiver takes the lock, checks that
//! the name still refers to that segment, removes the name and creates its own. Because the
//! closing receiver removes its name *before* letting the lock go (and only if the name is
//! still its segment's), a new receiver can never reclaim a segment that is half-closed, and an
//! old receiver can never remove the name of the segment that replaced its own. One sender
//! attaches at a time by taking the sender byte's lock; a killed sender's goes with it, so a
//! new sender can attach after one was killed, and a closed one's once its open file is
//! closed everywhere (a new sender of the same process included: the closed flag is cleared
//! before the slot names it, and a dead answer is never taken from the liveness cache).
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
//! lock: a SIGKILLed peer is noticed within 50 ms, and a message it had not committed is
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

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering, fence};
use std::time::{Duration, Instant};

use procom_sys::mapping::MappedRing;
use rustix::event::Timespec;
use rustix::process::Pid;
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
const VERSION: u32 = 3;
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

/// The other side of a channel, watched for its end: alive while its open file holds the lock
/// on its byte of the segment (see [`RX_LOCK`]). The kernel releases the lock when the last
/// descriptor (or mapping) of that open file goes, in whichever process that is, so a recycled
/// pid can never make a dead end look alive.
#[derive(Debug)]
struct Watched {
    ours: OwnedFd,
    byte: u64,
    /// When `dead` was last asked of the kernel ([`coarse_now`]): a busy sender or a spinning
    /// receiver asks at most every [`RECHECK`], not once per message. Nanoseconds of the
    /// coarse clock at that moment; 0: never. Relaxed: a cache read and written by the one
    /// thread using the endpoint (atomic only so the endpoint is `Sync`).
    checked: AtomicU64,
    /// The answer then. Relaxed, as `checked`.
    dead: AtomicBool,
}

/// The byte of a segment whose lock the receiving end's open file holds, from creation (a
/// named channel's receiver) or hand-over (an anonymous channel's end) until it is closed.
const RX_LOCK: u64 = 0;
/// The byte whose lock the sending end's open file holds.
const TX_LOCK: u64 = 1;

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
    /// The end whose open file holds the lock on `byte`, seen from our own open file of the
    /// segment, `ours` (which the watch keeps).
    fn lock(ours: OwnedFd, byte: u64) -> Watched {
        Watched {
            ours,
            byte,
            checked: AtomicU64::new(0),
            dead: AtomicBool::new(false),
        }
    }

    /// Our open file (an anonymous channel's end, handed over).
    fn into_fd(self) -> OwnedFd {
        self.ours
    }

    /// What the last check found, without asking again.
    fn known_dead(&self) -> bool {
        self.dead.load(Ordering::Relaxed)
    }

    /// `dead`, answered from a cache no older than [`RECHECK`] unless `fresh`. Whenever the
    /// kernel is asked, `check` (the header check) runs first, so a busy endpoint checks the
    /// header at the pace it checks its peer, with no clock read of its own.
    ///
    /// Only a live answer is cached: a dead one is asked again every time. A named channel's
    /// sender can be replaced by a new one from the same process (the same pid in the slot), and
    /// a dead answer cached just before it attached must not report it gone.
    fn dead_within(
        &self,
        fresh: bool,
        check: impl FnOnce() -> Result<(), Error>,
    ) -> Result<bool, Error> {
        let checked = self.checked.load(Ordering::Relaxed);
        if !fresh
            && checked != 0
            && !self.dead.load(Ordering::Relaxed)
            && coarse_now().saturating_sub(Duration::from_nanos(checked)) < RECHECK
        {
            return Ok(false);
        }
        check()?;
        let dead = self.dead();
        let now = u64::try_from(coarse_now().as_nanos())
            .unwrap_or(u64::MAX)
            .max(1);
        self.dead.store(dead, Ordering::Relaxed);
        self.checked.store(now, Ordering::Relaxed);
        Ok(dead)
    }

    /// Whether the other end's open file was closed everywhere (its lock is gone). A failure
    /// to ask must not make a live peer look gone.
    fn dead(&self) -> bool {
        matches!(
            procom_sys::ofd_lock::byte_locked_elsewhere(&self.ours, self.byte),
            Ok(false)
        )
    }
}

/// Takes the lock on `byte` for the open file `fd`: `Ok(false)` if another open file holds it.
fn lock_byte(fd: impl AsFd, byte: u64, what: &str) -> Result<bool, Error> {
    procom_sys::ofd_lock::lock_byte(fd, byte).map_err(|e| Error::os(&format!("lock {what}"), e))
}

/// A descriptor of the open file `fd` (the same open file, so the same locks), ours to keep.
fn own(fd: BorrowedFd<'_>) -> Result<OwnedFd, Error> {
    fd.try_clone_to_owned()
        .map_err(|e| Error::os("duplicate its descriptor", e))
}

/// Pauses between the attempts of a wait that has no notification to wait for: 1 ms, doubling
/// up to 10 ms, until a deadline.
struct Backoff {
    deadline: Instant,
    pause: Duration,
}

impl Backoff {
    /// A wait of up to `within` from now.
    fn within(within: Duration) -> Backoff {
        Backoff {
            deadline: Instant::now() + within,
            pause: Duration::from_millis(1),
        }
    }

    /// Pauses before the next attempt; `false` (at once) once the deadline has passed.
    fn pause(&mut self) -> bool {
        if Instant::now() >= self.deadline {
            return false;
        }
        std::thread::sleep(self.pause);
        self.pause = (self.pause * 2).min(Duration::from_millis(10));
        true
    }
}

/// How long taking an end's lock waits for one held while no process is named as that end
/// (see [`take_end_lock`]).
const LINGER_GRACE: Duration = Duration::from_secs(1);

/// Takes the lock on an end's `byte` for the open file `fd`. While another open file holds
/// it, `named()` says which process the header names as that end, if any: a named one is
/// refused at once. A lock held while none is named is one about to go, in a well-behaved
/// program: the open file of an end that was closed or handed over, still held by a child
/// another thread of its process was forking (until that child executes its program), or a
/// taker between taking the lock and writing its pid. So it is asked for again, 1 to 10 ms
/// apart (no notification exists for "a lock was released"), for up to [`LINGER_GRACE`].
/// `refused(pid)` is the error either way, `pid` the one named (`None`: none).
fn take_end_lock(
    fd: impl AsFd,
    byte: u64,
    what: &str,
    named: impl Fn() -> Result<Option<u32>, Error>,
    refused: impl FnOnce(Option<u32>) -> Error,
) -> Result<(), Error> {
    let mut patience = Backoff::within(LINGER_GRACE);
    loop {
        if lock_byte(&fd, byte, what)? {
            return Ok(());
        }
        let holder = named()?;
        if holder.is_some() || !patience.pause() {
            return Err(refused(holder));
        }
    }
}

/// Writes this process's pid into the slot at `off`: the end is ours (its lock decided that).
fn take_slot(map: &Mapping, off: usize) {
    word(map, off).store(me(), Ordering::Release);
}

/// Lets go of the pid slot at `off` if this process holds it.
fn release_slot(map: &Mapping, off: usize) {
    let _ = word(map, off).compare_exchange(me(), 0, Ordering::AcqRel, Ordering::Relaxed);
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
    /// slot names the process using that end, like the sender's (0 while it is handed over).
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
