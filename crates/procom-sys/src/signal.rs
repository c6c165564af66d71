//! Signals: sending (kill, sigqueue, pidfd), dispositions, thread masks, and catching
//! without doing work in a handler.
//!
//! # How catching works: a self-pipe, nothing blocked
//!
//! [`subscribe`] installs one `SA_SIGINFO | SA_RESTART` handler per signal (saving the previous
//! action) and registers a pipe for the subscriber. No signal is blocked: the kernel delivers
//! each one to whichever thread of the process does not block it, and the handler, in that
//! thread, does only async-signal-safe work. It packs the signal number, the sender's pid and
//! uid, the queued value and the `si_code` into a 24-byte record and `write`s it to every
//! subscribed pipe (a write under `PIPE_BUF` bytes is atomic, so records never interleave);
//! errno is saved and restored around it. Everything else happens when the subscriber reads
//! its pipe, in ordinary code. When the last subscriber of a signal goes away, the saved action
//! is restored — unless another handler was installed over ours in the meantime, which is
//! then left in place.
//!
//! A record that finds its pipe full (more than ~40,000 undelivered signals) is dropped and
//! counted in [`Subscription::lost`].
//!
//! # Why not signalfd, and why not signal-hook
//!
//! signalfd receives a signal only while it is blocked in *every* thread; a signal left
//! unblocked in one thread (any thread created before the catcher, or by another library) is
//! delivered there with its old action instead. A library cannot control other threads'
//! masks, while a handler receives the signal whichever thread the kernel picks.
//! signal-hook's iterator reports the sender's pid and uid but not the `sigqueue` value, and
//! never restores the previous action.
//!
//! # Signals that are refused
//!
//! SIGKILL and SIGSTOP can be neither caught nor ignored (the kernel refuses). SIGSEGV, SIGBUS,
//! SIGILL and SIGFPE are refused too (as tokio and signal-hook refuse them): when the kernel
//! raises one for a fault of this process, a handler that records it and returns makes the
//! faulting instruction run again, forever; procom's shared memory also relies on its own
//! SIGBUS handler ([`crate::mapping`]).
//!
//! # Why libc rather than rustix for sending
//!
//! rustix's `Signal` names the standard signals safely, but a real-time signal needs its
//! `unsafe` `from_raw_unchecked`; `kill`, `sigqueue` and `pidfd_send_signal` here take
//! any number and let the kernel validate it.
//!
//! # References
//! - [`signal(7)`](https://man7.org/linux/man-pages/man7/signal.7.html)
//! - [`sigaction(2)`](https://man7.org/linux/man-pages/man2/sigaction.2.html)
//! - [`signal-safety(7)`](https://man7.org/linux/man-pages/man7/signal-safety.7.html)
//! - [`signalfd(2)`](https://man7.org/linux/man-pages/man2/signalfd.2.html)

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};

use crate::{cvt, cvt_pthread};

/// The first real-time signal usable by programs (glibc reserves the two below it).
///
/// # References
/// - [`signal(7)`](https://man7.org/linux/man-pages/man7/signal.7.html)
#[doc(alias = "SIGRTMIN")]
pub fn sigrtmin() -> i32 {
    libc::SIGRTMIN()
}

/// The last real-time signal.
///
/// # References
/// - [`signal(7)`](https://man7.org/linux/man-pages/man7/signal.7.html)
#[doc(alias = "SIGRTMAX")]
pub fn sigrtmax() -> i32 {
    libc::SIGRTMAX()
}

/// The signals a process can neither catch nor ignore.
pub fn uncatchable(sig: i32) -> bool {
    sig == libc::SIGKILL || sig == libc::SIGSTOP
}

/// The signals the kernel raises for a fault of the process itself (a bad memory access, an
/// illegal instruction, an arithmetic error), which a handler that returns cannot handle.
pub fn is_fault(sig: i32) -> bool {
    [libc::SIGSEGV, libc::SIGBUS, libc::SIGILL, libc::SIGFPE].contains(&sig)
}

/// The C library's description of `sig` ("Interrupt", "Real-time signal 3"), as `strsignal`
/// gives it in the C locale.
///
/// # References
/// - [`strsignal(3)`](https://man7.org/linux/man-pages/man3/strsignal.3.html)
#[doc(alias = "strsignal")]
pub fn describe(sig: i32) -> String {
    // strsignal may format into a static buffer for some numbers: serialise our calls.
    static LOCK: Mutex<()> = Mutex::new(());
    let _held = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    // SAFETY: strsignal accepts any number and returns a NUL-terminated string (or null),
    // valid until the next call, which the lock keeps from happening before it is copied.
    let p = unsafe { libc::strsignal(sig) };
    if p.is_null() {
        return String::new();
    }
    // SAFETY: `p` is a non-null NUL-terminated string, see above.
    unsafe { std::ffi::CStr::from_ptr(p) }
        .to_string_lossy()
        .into_owned()
}

/// Sends `sig` to process `pid` (or, for pid 0 / negative, the group semantics of kill(2)).
///
/// # References
/// - [`kill(2)`](https://man7.org/linux/man-pages/man2/kill.2.html)
#[doc(alias = "kill")]
pub fn send(pid: i32, sig: i32) -> io::Result<()> {
    // SAFETY: kill takes plain integers.
    cvt(unsafe { libc::kill(pid, sig) }).map(drop)
}

/// Queues `sig` with an integer `value` for process `pid` (real-time signals queue; standard
/// ones still coalesce).
///
/// # References
/// - [`sigqueue(3)`](https://man7.org/linux/man-pages/man3/sigqueue.3.html)
#[doc(alias = "sigqueue")]
pub fn queue(pid: i32, sig: i32, value: i32) -> io::Result<()> {
    // The union's int member overlays the low bytes of the pointer (little-endian Linux).
    let val = libc::sigval {
        sival_ptr: value as isize as *mut libc::c_void,
    };
    // SAFETY: sigqueue takes plain integers and a sigval by value.
    cvt(unsafe { libc::sigqueue(pid, sig, val) }).map(drop)
}

/// Waits up to `timeout` for one of `signals` (which must be blocked in this thread, see
/// [`block`]) and takes it without running a handler: its record, or `None` on timeout.
///
/// # References
/// - [`sigtimedwait(2)`](https://man7.org/linux/man-pages/man2/sigtimedwait.2.html)
#[doc(alias = "sigtimedwait")]
pub fn timed_wait(signals: &[i32], timeout: std::time::Duration) -> io::Result<Option<Record>> {
    let set = sigset(signals)?;
    let ts = libc::timespec {
        tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
    };
    let mut info = MaybeUninit::<libc::siginfo_t>::zeroed();
    loop {
        // SAFETY: `set` and `ts` are initialised; `info` is writable and receives the siginfo.
        let sig = unsafe { libc::sigtimedwait(&set, info.as_mut_ptr(), &ts) };
        if sig >= 0 {
            // SAFETY: sigtimedwait succeeded, so it filled `info` in (it was zeroed before).
            let i = unsafe { info.assume_init() };
            // SAFETY: the kernel's siginfo for a queued signal carries these fields; for the
            // codes that carry no sender they read as zero.
            let (pid, uid, value) = unsafe {
                (
                    i.si_pid(),
                    i.si_uid(),
                    i.si_value().sival_ptr as isize as i32,
                )
            };
            return Ok(Some(Record {
                signo: sig,
                pid,
                uid,
                value,
                code: i.si_code,
            }));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EAGAIN) => return Ok(None),
            Some(libc::EINTR) => {}
            _ => return Err(e),
        }
    }
}

/// Sends `sig` to the process a pidfd refers to: no race with pid reuse.
///
/// # References
/// - [`pidfd_send_signal(2)`](https://man7.org/linux/man-pages/man2/pidfd_send_signal.2.html)
#[doc(alias = "pidfd_send_signal")]
pub fn send_pidfd(pidfd: BorrowedFd<'_>, sig: i32) -> io::Result<()> {
    // SAFETY: the raw syscall takes a descriptor, a signal, a null siginfo and zero flags.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// What a process does with a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// The default action.
    Default,
    /// Ignored.
    Ignore,
    /// A handler runs.
    Handled,
}

fn sigaction_of(sig: i32) -> io::Result<libc::sigaction> {
    let mut old = MaybeUninit::<libc::sigaction>::uninit();
    // SAFETY: a null new action only reads the current one into `old`.
    cvt(unsafe { libc::sigaction(sig, std::ptr::null(), old.as_mut_ptr()) })?;
    // SAFETY: sigaction succeeded, so it filled `old` in.
    Ok(unsafe { old.assume_init() })
}

/// The current disposition of `sig`.
///
/// # References
/// - [`sigaction(2)`](https://man7.org/linux/man-pages/man2/sigaction.2.html)
#[doc(alias = "sigaction")]
pub fn disposition(sig: i32) -> io::Result<Disposition> {
    let act = sigaction_of(sig)?;
    Ok(match act.sa_sigaction {
        libc::SIG_DFL => Disposition::Default,
        libc::SIG_IGN => Disposition::Ignore,
        _ => Disposition::Handled,
    })
}

/// Sets `sig` to `handler` (SIG_DFL or SIG_IGN), unless a [`Subscription`] catches it: that
/// is `EBUSY`, since the subscription would stop receiving it and later restore the action it
/// saved, undoing this one.
fn set_simple_action(sig: i32, handler: libc::sighandler_t) -> io::Result<()> {
    if !(1..NSIG as i32).contains(&sig) {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let installed = INSTALLED.lock().unwrap_or_else(|p| p.into_inner());
    if installed.count[sig as usize] > 0 {
        return Err(io::Error::from_raw_os_error(libc::EBUSY));
    }
    // SAFETY: all-zero is a valid sigaction (empty mask, no flags); the handler is set below.
    let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
    act.sa_sigaction = handler;
    // SAFETY: `act` is initialised; a null old-action pointer is allowed.
    cvt(unsafe { libc::sigaction(sig, &act, std::ptr::null_mut()) }).map(drop)
}

/// Makes the process ignore `sig` (`EINVAL` for SIGKILL and SIGSTOP, `EBUSY` while a
/// [`Subscription`] catches it).
///
/// # References
/// - [`sigaction(2)`](https://man7.org/linux/man-pages/man2/sigaction.2.html)
#[doc(alias = "sigaction")]
#[doc(alias = "SIG_IGN")]
pub fn ignore(sig: i32) -> io::Result<()> {
    set_simple_action(sig, libc::SIG_IGN)
}

/// Gives `sig` its default action back (`EINVAL` for SIGKILL and SIGSTOP, `EBUSY` while a
/// [`Subscription`] catches it).
///
/// # References
/// - [`sigaction(2)`](https://man7.org/linux/man-pages/man2/sigaction.2.html)
#[doc(alias = "sigaction")]
#[doc(alias = "SIG_DFL")]
pub fn restore_default(sig: i32) -> io::Result<()> {
    set_simple_action(sig, libc::SIG_DFL)
}

fn sigset(signals: &[i32]) -> io::Result<libc::sigset_t> {
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the set.
    cvt(unsafe { libc::sigemptyset(set.as_mut_ptr()) })?;
    // SAFETY: initialised just above.
    let mut set = unsafe { set.assume_init() };
    for s in signals {
        // SAFETY: `set` is initialised; sigaddset validates the number.
        cvt(unsafe { libc::sigaddset(&mut set, *s) })?;
    }
    Ok(set)
}

/// Restores the calling thread's signal mask when dropped.
///
/// The mask is per thread, so the guard must be dropped on the thread that made it: it is
/// neither `Send` nor `Sync` (dropped elsewhere, it would overwrite that thread's mask).
///
/// ```compile_fail
/// fn send<T: Send>(_: T) {}
/// send(procom_sys::signal::block(&[libc::SIGUSR1]).unwrap());
/// ```
#[derive(Debug)]
pub struct MaskGuard {
    old: libc::sigset_t,
    _this_thread: std::marker::PhantomData<*const ()>,
}

impl Drop for MaskGuard {
    fn drop(&mut self) {
        // SAFETY: `old` is the mask saved by `block` on this thread.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.old, std::ptr::null_mut()) };
    }
}

/// Blocks `signals` in the calling thread until the guard is dropped: they stay pending
/// (standard signals coalescing, real-time ones queueing) and are delivered on unblocking.
///
/// # References
/// - [`pthread_sigmask(3)`](https://man7.org/linux/man-pages/man3/pthread_sigmask.3.html)
#[doc(alias = "pthread_sigmask")]
pub fn block(signals: &[i32]) -> io::Result<MaskGuard> {
    let set = sigset(signals)?;
    let mut old = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: `set` is initialised; `old` receives the previous mask.
    cvt_pthread(unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, old.as_mut_ptr()) })?;
    // SAFETY: pthread_sigmask succeeded, so `old` is filled in.
    let old = unsafe { old.assume_init() };
    Ok(MaskGuard {
        old,
        _this_thread: std::marker::PhantomData,
    })
}

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
}

const SUBSCRIBERS: usize = 32;
const NSIG: usize = 65;

struct Slot {
    mask: AtomicU64,
    fd: AtomicI32,
    lost: AtomicU64,
    /// Handlers currently using `fd`: the subscription waits for zero before closing it, so a
    /// handler never writes to a descriptor number that was closed and reused.
    busy: AtomicU32,
}

#[allow(clippy::declare_interior_mutable_const)]
const FREE: Slot = Slot {
    mask: AtomicU64::new(0),
    fd: AtomicI32::new(-1),
    lost: AtomicU64::new(0),
    busy: AtomicU32::new(0),
};
static SLOTS: [Slot; SUBSCRIBERS] = [FREE; SUBSCRIBERS];

/// Per signal: how many subscriptions want it, and the action to restore after the last.
struct Installed {
    count: [u32; NSIG],
    saved: [Option<libc::sigaction>; NSIG],
}

// SAFETY: sigaction values are plain data (function pointers as integers); they are only
// touched under the mutex.
unsafe impl Send for Installed {}

static INSTALLED: Mutex<Installed> = Mutex::new(Installed {
    count: [0; NSIG],
    saved: [None; NSIG],
});

/// The handler: records the delivery into every pipe subscribed to `sig`, nothing else.
extern "C" fn on_signal(sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: errno is thread-local and this handler must leave it as it found it.
    let errno = unsafe { *libc::__errno_location() };
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler; for the codes that
    // carry no sender these fields read as zero.
    let (pid, uid, value, code) = unsafe {
        let i = &*info;
        (
            i.si_pid(),
            i.si_uid(),
            i.si_value().sival_ptr as isize as i32,
            i.si_code,
        )
    };
    let mut rec = [0u8; RECORD_SIZE];
    for (i, w) in [sig, pid, uid as i32, value, code].iter().enumerate() {
        rec[4 * i..4 * i + 4].copy_from_slice(&w.to_ne_bytes());
    }
    let bit = 1u64 << (sig as u32 % 64);
    for slot in &SLOTS {
        // SeqCst pairs with the SeqCst store of -1 and load of `busy` in Subscription::drop:
        // either the drop sees this handler busy, or this handler sees the slot cleared.
        slot.busy.fetch_add(1, Ordering::SeqCst);
        let fd = slot.fd.load(Ordering::SeqCst);
        // Acquire pairs with the Release store of the mask in subscribe.
        if fd >= 0 && slot.mask.load(Ordering::Acquire) & bit != 0 {
            // SAFETY: write(2) is async-signal-safe; `rec` is a valid 24-byte buffer; `fd`
            // stays open while `busy` is non-zero (see Subscription::drop).
            let n = unsafe { libc::write(fd, rec.as_ptr().cast(), RECORD_SIZE) };
            if n != RECORD_SIZE as isize {
                slot.lost.fetch_add(1, Ordering::Relaxed);
            }
        }
        slot.busy.fetch_sub(1, Ordering::SeqCst);
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

/// A registration for some signals: their deliveries arrive as records on [`Subscription::fd`].
#[derive(Debug)]
pub struct Subscription {
    slot: usize,
    signals: Vec<i32>,
    read: OwnedFd,
    write: OwnedFd,
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
    // Release pairs with the handler's Acquire load: a handler that sees the bit sees the fd.
    SLOTS[slot].mask.store(mask, Ordering::Release);
    let mut sub = Subscription {
        slot,
        signals: Vec::new(),
        read,
        write,
    };
    for s in signals {
        let i = *s as usize;
        if installed.count[i] == 0 {
            // SAFETY: all-zero is a valid sigaction; the fields are set below.
            let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
            act.sa_sigaction = on_signal as *const () as usize;
            act.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
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
        while SLOTS[self.slot].busy.load(Ordering::SeqCst) != 0 {
            std::hint::spin_loop();
        }
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
    fn describe_uses_the_c_library() {
        assert_eq!(describe(libc::SIGINT), "Interrupt");
        assert_eq!(describe(sigrtmin() + 3), "Real-time signal 3");
    }

    #[test]
    fn records_round_trip() {
        let mut b = [0u8; RECORD_SIZE];
        for (i, w) in [34i32, 1234, 65534, -7, SI_QUEUE].iter().enumerate() {
            b[4 * i..4 * i + 4].copy_from_slice(&w.to_ne_bytes());
        }
        let r = Record::decode(&b);
        assert_eq!(
            (r.signo, r.pid, r.uid, r.value, r.code),
            (34, 1234, 65534, -7, SI_QUEUE)
        );
    }
}
