//! Catching without doing work in a handler: a self-pipe per subscriber, nothing blocked, and
//! a waiter that takes its signals straight from the kernel while it sleeps.
//!
//! # The handler and the pipe
//!
//! [`subscribe`] installs one `SA_SIGINFO | SA_RESTART` handler per signal (saving the previous
//! action) and registers a pipe for the subscriber. No signal is blocked: the kernel delivers
//! each one to whichever thread of the process does not block it, and the handler, in that
//! thread, does only async-signal-safe work. It packs the signal number, the sender's pid and
//! uid, the queued value and the `si_code` into a 24-byte record and `write`s it to every
//! subscribed pipe (a write under `PIPE_BUF` bytes is atomic, so records never interleave),
//! counts it, and wakes the subscriber's waiting thread if one is registered (below);
//! errno is saved and restored around it. Everything else happens when the subscriber reads
//! its pipe, in ordinary code. When the last subscriber of a signal goes away, the saved action
//! is restored — unless another handler was installed over ours in the meantime, which is then
//! left in place.
//!
//! A record that finds its pipe full (more than ~40,000 undelivered signals) is dropped and
//! counted in [`Subscription::lost`].
//!
//! # The waiter: `sigtimedwait` while it sleeps
//!
//! Running a handler costs a signal frame (the whole register state saved on the stack and
//! restored by `rt_sigreturn`), a pipe write and, for the waiter, a second wake-up through the
//! pipe. [`Subscription::wait`] avoids all of it when its thread is the one the signal reaches:
//! it registers its thread in the subscription's slot, checks that no record is waiting, and
//! sleeps in `sigtimedwait`, which takes a signal from the kernel's queue with its `siginfo`,
//! no handler run. It hands that record to every other subscriber of the signal (as the
//! handler would) and returns it. Nothing is blocked, not even in the waiting thread: a thread
//! that blocks a signal makes the kernel wake the process's other threads for it when
//! `sigtimedwait` returns, and other threads keep the handler. So:
//!
//! - A signal the kernel gives to another thread runs the handler there, which writes the
//!   record and, seeing a waiter registered, queues it a wake-up: one of the waiter's signals,
//!   sent to the waiting thread alone (`rt_tgsigqueueinfo`) with a code of procom's own
//!   ([`POKE_CODE`]) and the process's pid, which `sigtimedwait` returns and the waiter
//!   recognises and drops before it reads its pipe.
//! - The registration is published before the check for waiting records, and the handler
//!   counts its record before it looks for a waiter (both sequentially consistent): either the
//!   waiter sees the record, or the handler sees the waiter and wakes it.
//! - A signal (or a wake-up) that reaches the waiting thread itself between its check and its
//!   sleep runs the handler there. The handler blocks the wake-up signal in the context it
//!   returns to (its `sa_mask` blocks everything while it runs) and queues the wake-up to its
//!   own thread, so `sigtimedwait` returns at once; the waiter unblocks it afterwards.
//! - When it is done the waiter marks its registration withdrawn (no handler wakes it any
//!   more), waits until no handler is running, takes every wake-up still queued for it
//!   (`sigtimedwait` with a zero timeout), and only then clears the registration, so no wake-up
//!   outlives the wait to reach a handler later or, once the catcher is gone, the signal's
//!   default action. A wake-up that reaches the handler in the waiting thread meanwhile (the
//!   kernel interrupts the thread for it at once) is queued again, blocked, as in the window
//!   before the sleep; one that reaches a handler with no waiter registered is dropped there.
//!   A real signal taken that way goes to every subscriber's pipe.
//! - Signals that the calling thread blocks are not waited for this way: they stay pending as
//!   the caller asked, and if it blocks all of them [`super::Waited::Blocked`] says to wait on the
//!   pipe instead.
//! - SIGCONT is never the wake-up: sending it, even to one thread, discards every stop signal
//!   pending in the process. A waiter whose only signal its thread does not block is SIGCONT
//!   waits on the pipe ([`super::Waited::Blocked`]), where the handler's record wakes it.
//! - A process with more than `RLIMIT_SIGPENDING` signals queued cannot queue the wake-up's
//!   siginfo. A real-time wake-up is then refused, so a waiter woken by a real-time signal
//!   sleeps a second at most at a time, then looks at its pipe (a record waits that long at
//!   worst, and only then). A standard one is queued bare, as a signal from pid 0 with
//!   `SI_USER` and no uid: the waiter takes such a one for a wake-up while wake-ups are
//!   queued for it, and the handler does in the waiting thread while the waiter is
//!   registered. A genuine signal of that shape (from a sender outside the pid namespace, or
//!   itself bare) arriving at that moment may be taken for a wake-up.
//! - A standard signal sent to the waiting thread alone (`pthread_kill`, `tgkill`) while a
//!   wake-up of the same signal is still queued for that thread is merged with it by the
//!   kernel (standard signals do not queue) and taken for the wake-up: that one delivery is
//!   lost. Signals sent to the process, and real-time signals, are not affected.
//! - A signal that another process crafts with `rt_sigqueueinfo` to carry [`POKE_CODE`] and
//!   this process's pid (only a process allowed to signal this one can) is taken for a
//!   wake-up and not delivered.
//!
//! # References
//! - [`sigaction(2)`](https://man7.org/linux/man-pages/man2/sigaction.2.html)
//! - [`sigtimedwait(2)`](https://man7.org/linux/man-pages/man2/sigtimedwait.2.html)
//! - [`rt_tgsigqueueinfo(2)`](https://man7.org/linux/man-pages/man2/rt_tgsigqueueinfo.2.html)
//! - [`signal-safety(7)`](https://man7.org/linux/man-pages/man7/signal-safety.7.html)

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};

use super::{is_fault, sigaction_of, uncatchable};
use crate::cvt;

/// One delivery, as the handler recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    /// The signal number.
    pub signo: i32,
    /// The sender's pid (0 if the kernel sent it).
    pub pid: i32,
    /// The sender's real uid.
    pub uid: u32,
    /// The value queued with sigqueue (meaningful when `code` is SI_QUEUE).
    pub value: i32,
    /// `si_code`: SI_USER for kill, SI_QUEUE for sigqueue, SI_KERNEL, ...
    pub code: i32,
}

/// `si_code` of a signal sent with sigqueue.
pub const SI_QUEUE: i32 = libc::SI_QUEUE;

/// `si_code` of the wake-up a handler queues to a thread waiting in [`Subscription::wait`]: a
/// negative code (as user-sent signals have) that neither the kernel nor the C library uses.
pub const POKE_CODE: i32 = -0x7063;

/// Bytes of one record in a subscriber's pipe.
pub const RECORD_SIZE: usize = 24;

impl Record {
    /// Decodes a record read from a subscription pipe.
    pub fn decode(b: &[u8; RECORD_SIZE]) -> Record {
        let word =
            |i: usize| i32::from_ne_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]]);
        Record {
            signo: word(0),
            pid: word(1),
            uid: word(2) as u32,
            value: word(3),
            code: word(4),
        }
    }

    fn encode(&self) -> [u8; RECORD_SIZE] {
        let mut rec = [0u8; RECORD_SIZE];
        let words = [self.signo, self.pid, self.uid as i32, self.value, self.code];
        for (i, w) in words.iter().enumerate() {
            rec[4 * i..4 * i + 4].copy_from_slice(&w.to_ne_bytes());
        }
        rec
    }

    /// # Safety
    /// `info` is a siginfo the kernel filled in for signal `signo`.
    pub(super) unsafe fn from_siginfo(signo: i32, info: &libc::siginfo_t) -> Record {
        // SAFETY: the kernel's siginfo for a delivered signal carries these fields; for the
        // codes that carry no sender they read as zero.
        let (pid, uid, value) = unsafe {
            (
                info.si_pid(),
                info.si_uid(),
                info.si_value().sival_ptr as isize as i32,
            )
        };
        Record {
            signo,
            pid,
            uid,
            value,
            code: info.si_code,
        }
    }

    /// A wake-up queued by a handler of this process, not a delivery.
    pub(super) fn is_poke(&self) -> bool {
        // SAFETY: getpid takes nothing and cannot fail; it is async-signal-safe.
        self.code == POKE_CODE && self.pid == unsafe { libc::getpid() }
    }

    /// A signal `sig` the kernel queued without its siginfo (over `RLIMIT_SIGPENDING`): what
    /// a standard signal's wake-up arrives as when the process has no room for its record.
    pub(super) fn is_bare(&self, sig: i32) -> bool {
        self.signo == sig && self.code == libc::SI_USER && self.pid == 0 && self.uid == 0
    }
}

const SUBSCRIBERS: usize = 32;
pub(super) const NSIG: usize = 65;

pub(super) struct Slot {
    pub(super) mask: AtomicU64,
    pub(super) fd: AtomicI32,
    pub(super) lost: AtomicU64,
    /// Handlers currently using `fd` or `waiter`: the subscription waits for zero before
    /// closing the descriptor, so a handler never writes to a descriptor number that was closed
    /// and reused, and a waiter waits for zero before it takes the wake-ups queued for it.
    pub(super) busy: AtomicU32,
    /// Records written into the pipe.
    pub(super) written: AtomicU64,
    /// The thread sleeping in [`Subscription::wait`] (its tid, shifted left 8 bits, or'ed with
    /// the signal to wake it with and, once it stops sleeping, [`WITHDRAWN`]), 0 when none.
    pub(super) waiter: AtomicU64,
    /// Wake-ups queued for the waiter.
    pub(super) pokes: AtomicU64,
    /// A handler running in the waiter's own thread blocked the wake-up signal there, so
    /// that its wake-up waits for `sigtimedwait`: the waiter unblocks it when it is done.
    pub(super) masked: AtomicU32,
}

impl Slot {
    /// Returns once no handler is using the slot (`busy` is zero): after a few polls, with the
    /// CPU given up between polls, so a handler that was descheduled mid-delivery on a busy
    /// machine gets to finish instead of competing with a spinning thread.
    pub(super) fn wait_out_handlers(&self) {
        let mut polls = 0u32;
        while self.busy.load(Ordering::SeqCst) != 0 {
            if polls < 64 {
                polls += 1;
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }
}

#[allow(clippy::declare_interior_mutable_const)]
const FREE: Slot = Slot {
    mask: AtomicU64::new(0),
    fd: AtomicI32::new(-1),
    lost: AtomicU64::new(0),
    busy: AtomicU32::new(0),
    written: AtomicU64::new(0),
    waiter: AtomicU64::new(0),
    pokes: AtomicU64::new(0),
    masked: AtomicU32::new(0),
};
pub(super) static SLOTS: [Slot; SUBSCRIBERS] = [FREE; SUBSCRIBERS];

/// Per signal: how many subscriptions want it, and the action to restore after the last.
pub(super) struct Installed {
    pub(super) count: [u32; NSIG],
    saved: [Option<libc::sigaction>; NSIG],
}

// SAFETY: sigaction values are plain data (function pointers as integers); they are only
// touched under the mutex.
unsafe impl Send for Installed {}

pub(super) static INSTALLED: Mutex<Installed> = Mutex::new(Installed {
    count: [0; NSIG],
    saved: [None; NSIG],
});

/// The handler: records the delivery into every pipe subscribed to `sig` and wakes their
/// waiters (or, for a wake-up, passes it on to `sigtimedwait`), nothing else.
extern "C" fn on_signal(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: errno is thread-local and this handler must leave it as it found it.
    let errno = unsafe { *libc::__errno_location() };
    // SAFETY: the kernel passes a valid siginfo for `sig` to an SA_SIGINFO handler.
    let rec = unsafe { Record::from_siginfo(sig, &*info) };
    let ctx = ctx.cast::<libc::ucontext_t>();
    // The waiter registered in this thread, looked for only when the signal may be a wake-up:
    // one of procom's, or one the kernel queued without its siginfo (see the module docs).
    let here = (rec.is_poke() || rec.is_bare(sig))
        .then(|| {
            SLOTS.iter().find_map(|s| {
                let waiter = s.waiter.load(Ordering::SeqCst);
                waits_here(waiter).then_some((s, waiter))
            })
        })
        .flatten();
    let poke = rec.is_poke() || here.is_some_and(|(_, w)| rec.is_bare(wake_signal(w)));
    if !poke {
        deliver(&rec, None, ctx);
    } else if let Some((slot, waiter)) = here {
        // A wake-up sent to this thread while it was not yet (or no longer) asleep in
        // `sigtimedwait`: queue it again for `sigtimedwait` to take.
        wake_here(slot, waiter, ctx);
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

/// The bit of a waiter's registration that says it no longer sleeps: handlers stop waking it,
/// and the handler in its own thread still knows its wake-ups while it takes those queued.
pub(super) const WITHDRAWN: u64 = 0x80;

/// Whether the registration `waiter` names the calling thread (withdrawn or not).
fn waits_here(waiter: u64) -> bool {
    waiter != 0 && (waiter >> 8) as libc::pid_t == gettid()
}

/// The signal that wakes the waiter a registration names.
fn wake_signal(waiter: u64) -> i32 {
    (waiter & (WITHDRAWN - 1)) as i32
}

/// Wakes a waiter whose own thread runs this handler, between its check for records and its
/// sleep (or after it): blocks the wake-up signal for the rest of the window — in the context
/// the kernel restores when the handler returns — and queues it to this thread, so that
/// `sigtimedwait` returns it at once. Every signal is blocked while the handler runs (its
/// `sa_mask` is full), so the wake-up stays queued until then.
fn wake_here(slot: &Slot, waiter: u64, ctx: *mut libc::ucontext_t) {
    slot.pokes.fetch_add(1, Ordering::SeqCst);
    slot.masked.store(1, Ordering::SeqCst);
    // SAFETY: `ctx` is the ucontext the kernel passed to this SA_SIGINFO handler; its signal
    // mask is the one `rt_sigreturn` installs; sigaddset is async-signal-safe.
    unsafe { libc::sigaddset(&mut (*ctx).uc_sigmask, wake_signal(waiter)) };
    poke(waiter);
}

/// Writes `rec` into every pipe subscribed to its signal but `skip`'s, and wakes their
/// waiters. Async-signal-safe: the handler's body (`ctx` its context), and a waiter's
/// hand-over of what it took (`ctx` null).
pub(super) fn deliver(rec: &Record, skip: Option<usize>, ctx: *mut libc::ucontext_t) {
    let bytes = rec.encode();
    let bit = 1u64 << (rec.signo as u32 % 64);
    for (i, slot) in SLOTS.iter().enumerate() {
        // A slot not subscribed to the signal is skipped before it is marked busy.
        if skip == Some(i) || slot.mask.load(Ordering::Relaxed) & bit == 0 {
            continue;
        }
        // SeqCst pairs with the SeqCst store of -1 and load of `busy` in Subscription::drop:
        // either the drop sees this handler busy, or this handler sees the slot cleared.
        slot.busy.fetch_add(1, Ordering::SeqCst);
        let fd = slot.fd.load(Ordering::SeqCst);
        // Acquire pairs with the Release store of the mask in subscribe.
        if fd >= 0 && slot.mask.load(Ordering::Acquire) & bit != 0 {
            // SAFETY: write(2) is async-signal-safe; `bytes` is a valid 24-byte buffer; `fd`
            // stays open while `busy` is non-zero (see Subscription::drop).
            let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), RECORD_SIZE) };
            if n == RECORD_SIZE as isize {
                // Counted before the waiter is looked for: see the module docs.
                slot.written.fetch_add(1, Ordering::SeqCst);
            } else {
                slot.lost.fetch_add(1, Ordering::Relaxed);
            }
            let waiter = slot.waiter.load(Ordering::SeqCst);
            if waiter == 0 || waiter & WITHDRAWN != 0 {
                // No waiter sleeps: the record waits in the pipe.
            } else if !ctx.is_null() && waits_here(waiter) {
                wake_here(slot, waiter, ctx);
            } else {
                slot.pokes.fetch_add(1, Ordering::SeqCst);
                poke(waiter);
            }
        }
        slot.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The siginfo of a wake-up: the kernel's layout up to the sender's pid and uid, zeros after.
#[repr(C)]
struct PokeInfo {
    signo: i32,
    errno: i32,
    code: i32,
    #[cfg(target_pointer_width = "64")]
    _align: i32,
    pid: i32,
    uid: u32,
    #[cfg(target_pointer_width = "64")]
    _rest: [u8; 104],
    #[cfg(not(target_pointer_width = "64"))]
    _rest: [u8; 108],
}

const _: () = assert!(std::mem::size_of::<PokeInfo>() == std::mem::size_of::<libc::siginfo_t>());

/// Queues a wake-up to the thread `waiter` names (tid << 8 | signal). Async-signal-safe.
fn poke(waiter: u64) {
    let (tid, sig) = ((waiter >> 8) as libc::pid_t, wake_signal(waiter));
    // SAFETY: getpid and getuid take nothing and cannot fail.
    let (pid, uid) = unsafe { (libc::getpid(), libc::getuid()) };
    // SAFETY: PokeInfo is plain integers, for which all-zero is a value.
    let mut info: PokeInfo = unsafe { std::mem::zeroed() };
    (info.signo, info.code, info.pid, info.uid) = (sig, POKE_CODE, pid, uid);
    // SAFETY: rt_tgsigqueueinfo reads a siginfo-sized struct from `info`, which has the
    // kernel's layout for the fields set and zeros elsewhere; a thread that has exited since
    // gives ESRCH, which is fine (it no longer waits).
    unsafe {
        libc::syscall(
            libc::SYS_rt_tgsigqueueinfo,
            pid,
            tid,
            sig,
            &info as *const PokeInfo,
        )
    };
}

/// This thread's id (asked every time: a cached one would be the parent's after `fork`).
pub(super) fn gettid() -> libc::pid_t {
    // SAFETY: gettid takes nothing and cannot fail.
    unsafe { libc::gettid() }
}

/// A registration for some signals: their deliveries arrive as records on [`Subscription::fd`],
/// or through [`Subscription::wait`].
#[derive(Debug)]
pub struct Subscription {
    pub(super) slot: usize,
    pub(super) signals: Vec<i32>,
    read: OwnedFd,
    write: OwnedFd,
    /// The slot's `written` count when a read last found the pipe empty: every record counted
    /// by then has been read. (Not a count of records read: after `fork` a child's handler may
    /// write into the same pipe and count in its own copy of the slot.)
    consumed: u64,
}

fn pipe_nonblocking() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) })?;
    // SAFETY: pipe2 returned two fresh descriptors that nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Starts catching `signals` (numbers 1..=64). `EINVAL` for SIGKILL, SIGSTOP and the fault
/// signals (SIGSEGV, SIGBUS, SIGILL, SIGFPE): see the module documentation.
///
/// # References
/// - [`sigaction(2)`](https://man7.org/linux/man-pages/man2/sigaction.2.html)
/// - [`pipe(7)`](https://man7.org/linux/man-pages/man7/pipe.7.html)
#[doc(alias = "sigaction")]
pub fn subscribe(signals: &[i32]) -> io::Result<Subscription> {
    let mut mask = 0u64;
    for s in signals {
        if !(1..NSIG as i32).contains(s) || uncatchable(*s) || is_fault(*s) {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        mask |= 1u64 << (*s as u32 % 64);
    }
    let (read, write) = pipe_nonblocking()?;
    // Room for ~40,000 records before any is dropped (best effort: the limit may be lower).
    // SAFETY: F_SETPIPE_SZ takes an int; failure leaves the default size.
    unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20) };
    let mut installed = INSTALLED.lock().unwrap_or_else(|p| p.into_inner());
    let slot = SLOTS
        .iter()
        .position(|s| {
            s.fd.compare_exchange(-1, write.as_raw_fd(), Ordering::SeqCst, Ordering::Relaxed)
                .is_ok()
        })
        .ok_or_else(|| io::Error::other("too many signal subscriptions at once (32)"))?;
    SLOTS[slot].lost.store(0, Ordering::Relaxed);
    SLOTS[slot].written.store(0, Ordering::SeqCst);
    // Release pairs with the handler's Acquire load: a handler that sees the bit sees the fd.
    SLOTS[slot].mask.store(mask, Ordering::Release);
    let mut sub = Subscription {
        slot,
        signals: Vec::new(),
        read,
        write,
        consumed: 0,
    };
    for s in signals {
        let i = *s as usize;
        if installed.count[i] == 0 {
            // SAFETY: all-zero is a valid sigaction; the fields are set below.
            let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
            act.sa_sigaction = on_signal as *const () as usize;
            act.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            // Nothing interrupts the handler, so a wake-up it queues to its own thread stays
            // queued until it returns (see `wake_here`).
            // SAFETY: `act.sa_mask` is a valid sigset to fill.
            unsafe { libc::sigfillset(&mut act.sa_mask) };
            let mut old = MaybeUninit::<libc::sigaction>::uninit();
            // SAFETY: `act` is initialised and `old` receives the previous action.
            let rc = unsafe { libc::sigaction(*s, &act, old.as_mut_ptr()) };
            if rc == -1 {
                let e = io::Error::last_os_error();
                drop(installed);
                drop(sub); // undoes what was installed so far
                return Err(e);
            }
            // SAFETY: sigaction succeeded, so `old` is filled in.
            installed.saved[i] = Some(unsafe { old.assume_init() });
        }
        installed.count[i] += 1;
        sub.signals.push(*s);
    }
    Ok(sub)
}

impl Subscription {
    /// The read end of the pipe the records arrive on (non-blocking).
    pub fn fd(&self) -> BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.read)
    }

    /// Deliveries dropped because the pipe was full.
    pub fn lost(&self) -> u64 {
        SLOTS[self.slot].lost.load(Ordering::Relaxed)
    }

    /// Reads records from the pipe into `buf` (without blocking): the bytes read.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Every record counted before this load is in the pipe before the read begins.
        let written = SLOTS[self.slot].written.load(Ordering::SeqCst);
        // SAFETY: `buf` is writable for its length; the descriptor is ours and open.
        let n = unsafe { libc::read(self.read.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EAGAIN) {
                self.consumed = written;
            }
            return Err(e);
        }
        // A read that did not fill `buf` emptied the pipe.
        if (n as usize) < buf.len() {
            self.consumed = written;
        }
        Ok(n as usize)
    }

    /// Whether a handler has written records that [`Subscription::read`] has not read yet
    /// (without a system call; a record being written at this moment may not be counted yet).
    pub fn unread(&self) -> bool {
        SLOTS[self.slot].written.load(Ordering::SeqCst) != self.consumed
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut installed = INSTALLED.lock().unwrap_or_else(|p| p.into_inner());
        SLOTS[self.slot].mask.store(0, Ordering::Release);
        for s in &self.signals {
            let i = *s as usize;
            installed.count[i] = installed.count[i].saturating_sub(1);
            if installed.count[i] == 0
                && let Some(old) = installed.saved[i].take()
            {
                // Put the saved action back only if ours is still the one installed: a
                // handler installed over ours since then stays.
                let ours = sigaction_of(*s)
                    .is_ok_and(|now| now.sa_sigaction == on_signal as *const () as usize);
                if ours {
                    // SAFETY: `old` is the action saved when the handler was installed.
                    unsafe { libc::sigaction(*s, &old, std::ptr::null_mut()) };
                }
            }
        }
        // Unpublish the descriptor, then wait out any handler that loaded it before: only then
        // may it close (when `self.write` drops, after this).
        SLOTS[self.slot].fd.store(-1, Ordering::SeqCst);
        SLOTS[self.slot].wait_out_handlers();
        let _ = &self.write;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_signals() {
        for s in [
            libc::SIGKILL,
            libc::SIGSTOP,
            libc::SIGSEGV,
            libc::SIGBUS,
            libc::SIGILL,
            libc::SIGFPE,
            0,
            65,
        ] {
            let e = subscribe(&[s]).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "signal {s}");
        }
    }

    #[test]
    fn records_round_trip() {
        let r = Record {
            signo: 34,
            pid: 1234,
            uid: 65534,
            value: -7,
            code: SI_QUEUE,
        };
        assert_eq!(Record::decode(&r.encode()), r);
    }
}
