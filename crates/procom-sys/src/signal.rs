//! Signals: sending (kill, sigqueue, pidfd), dispositions, thread masks, and catching
//! without doing work in a handler.
//!
//! # How catching works
//!
//! A handler writes a record of each delivery to a pipe per subscriber; a thread waiting for
//! its subscription takes its signals straight from the kernel with `sigtimedwait` while it
//! sleeps, so the handler runs only where the kernel hands the signal to another thread. See
//! [`catch`] for the details and why no delivery is lost or left waiting.
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
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::Mutex;

use crate::{cvt, cvt_pthread};

pub mod catch;
mod wait;
use catch::{INSTALLED, NSIG};
pub use catch::{POKE_CODE, RECORD_SIZE, Record, SI_QUEUE, Subscription, subscribe};
pub use wait::Waited;

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
/// [`block`]) and takes it without running a handler: its record, or `None` on timeout. A
/// handler of another signal that interrupts the wait does not start the timeout over.
///
/// # References
/// - [`sigtimedwait(2)`](https://man7.org/linux/man-pages/man2/sigtimedwait.2.html)
#[doc(alias = "sigtimedwait")]
pub fn timed_wait(signals: &[i32], timeout: std::time::Duration) -> io::Result<Option<Record>> {
    let set = sigset(signals)?;
    let deadline = std::time::Instant::now().checked_add(timeout);
    let mut left = timeout;
    loop {
        match wait::sigtimedwait(&set, Some(&wait::timespec(left))) {
            Ok(rec) => return Ok(Some(rec)),
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => return Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => {
                // A deadline too far to represent: the whole timeout again (it is that long).
                if let Some(d) = deadline {
                    left = d.saturating_duration_since(std::time::Instant::now());
                }
            }
            Err(e) => return Err(e),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_uses_the_c_library() {
        assert_eq!(describe(libc::SIGINT), "Interrupt");
        assert_eq!(describe(sigrtmin() + 3), "Real-time signal 3");
    }

    /// A handled signal that interrupts the wait does not start its timeout over: interrupted
    /// every few milliseconds from another thread, the wait still ends when its timeout passes.
    #[test]
    fn timed_wait_keeps_its_timeout_through_interruptions() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        let (waited, interrupting) = (sigrtmin() + 12, sigrtmin() + 13);
        // A handler for the interrupting signal (not blocked here): it ends each sigtimedwait
        // with EINTR.
        let _caught = subscribe(&[interrupting]).unwrap();
        let _held = block(&[waited]).unwrap();
        // SAFETY: getpid and gettid take nothing and cannot fail.
        let (pid, tid) = unsafe { (libc::getpid(), libc::gettid()) };
        let done = Arc::new(AtomicBool::new(false));
        let interrupter = std::thread::spawn({
            let done = done.clone();
            move || {
                // Far more interruptions than the timeout spans: a wait that starts over at
                // each one outlasts them all.
                for sent in 0..500 {
                    if done.load(Ordering::SeqCst) {
                        return Ok(sent);
                    }
                    // SAFETY: tgkill takes plain integers; the thread waits until `done`.
                    if unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, interrupting) } != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(io::Error::other(
                    "the wait outlasted 500 interruptions 10 ms apart",
                ))
            }
        });
        let got = timed_wait(&[waited], std::time::Duration::from_millis(200));
        done.store(true, Ordering::SeqCst);
        assert_eq!(got.unwrap(), None);
        let sent = interrupter.join().unwrap().unwrap();
        assert!(
            sent >= 2,
            "only {sent} interruptions: the wait was not interrupted"
        );
    }

    /// A blocked signal sent to this thread alone is taken with its sender, once; then the
    /// wait times out.
    #[test]
    fn timed_wait_takes_a_blocked_signal_once() {
        let sig = sigrtmin() + 11;
        let _held = block(&[sig]).unwrap();
        // SAFETY: getpid, gettid and tgkill take plain integers; the thread is this one.
        let (pid, rc) = unsafe {
            let pid = libc::getpid();
            (
                pid,
                libc::syscall(libc::SYS_tgkill, pid, libc::gettid(), sig),
            )
        };
        assert_eq!(rc, 0, "tgkill: {}", io::Error::last_os_error());
        let rec = timed_wait(&[sig], std::time::Duration::from_secs(20))
            .unwrap()
            .expect("the pending signal");
        // SAFETY: getuid takes nothing and cannot fail.
        let uid = unsafe { libc::getuid() };
        assert_eq!((rec.signo, rec.pid, rec.uid), (sig, pid, uid));
        // glibc's sigtimedwait reports tgkill's SI_TKILL as SI_USER.
        assert!(
            matches!(rec.code, libc::SI_TKILL | libc::SI_USER),
            "code {}",
            rec.code
        );
        assert_eq!(
            timed_wait(&[sig], std::time::Duration::from_millis(1)).unwrap(),
            None
        );
    }
}
