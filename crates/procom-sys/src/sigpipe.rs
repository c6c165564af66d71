//! Writing to a pipe whose reader is gone without dying of SIGPIPE.
//!
//! A write to a pipe or FIFO with no reader raises SIGPIPE, whose default action kills the
//! process. Rust binaries ignore SIGPIPE by default, but a library cannot count on that (a C
//! host, `-Zon-broken-pipe=kill`, or a program that restored the default). Sockets have
//! `MSG_NOSIGNAL`; pipes have nothing, so [`without_sigpipe`] blocks SIGPIPE in the calling
//! thread for the duration of a write and consumes the signal the write raised, the way
//! libcurl and OpenSSL do. The write then fails with `EPIPE` instead.
//!
//! # References
//! - [`pipe(7)`](https://man7.org/linux/man-pages/man7/pipe.7.html)
//! - [`pthread_sigmask(3)`](https://man7.org/linux/man-pages/man3/pthread_sigmask.3.html)
//! - [`sigtimedwait(2)`](https://man7.org/linux/man-pages/man2/sigtimedwait.2.html)

use std::io;
use std::mem::MaybeUninit;

use crate::{cvt, cvt_pthread};

/// Whether SIGPIPE's disposition in this process is "ignore" right now.
///
/// When it is, a write to a dead pipe already fails with `EPIPE` and [`without_sigpipe`] is
/// unnecessary.
#[doc(alias = "sigaction")]
pub fn sigpipe_ignored() -> io::Result<bool> {
    let mut old = MaybeUninit::<libc::sigaction>::uninit();
    // SAFETY: with a null new action, sigaction only stores the current action into `old`,
    // which points to writable memory of the right type.
    cvt(unsafe { libc::sigaction(libc::SIGPIPE, std::ptr::null(), old.as_mut_ptr()) })?;
    // SAFETY: sigaction returned 0, so it filled `old` in.
    let old = unsafe { old.assume_init() };
    Ok(old.sa_sigaction == libc::SIG_IGN)
}

/// Sets SIGPIPE's disposition back to the default action (terminate the process), as a C
/// program starts with. Rust programs ignore SIGPIPE from the start; this is for programs that
/// want the classic behaviour, and for tests proving procom survives it.
#[doc(alias = "signal")]
pub fn restore_default_sigpipe() -> io::Result<()> {
    // SAFETY: an all-zero sigaction is a valid value (empty mask, no flags); the handler is
    // then set to SIG_DFL, which installs no code of ours.
    let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
    act.sa_sigaction = libc::SIG_DFL;
    // SAFETY: `act` is fully initialised and a null old-action pointer is allowed.
    cvt(unsafe { libc::sigaction(libc::SIGPIPE, &act, std::ptr::null_mut()) })?;
    Ok(())
}

/// A signal set holding SIGPIPE alone.
fn sigpipe_set() -> io::Result<libc::sigset_t> {
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the set `set` points to.
    cvt(unsafe { libc::sigemptyset(set.as_mut_ptr()) })?;
    // SAFETY: the set was initialised by sigemptyset just above.
    let mut set = unsafe { set.assume_init() };
    // SAFETY: `set` is an initialised sigset_t and SIGPIPE a valid signal number.
    cvt(unsafe { libc::sigaddset(&mut set, libc::SIGPIPE) })?;
    Ok(set)
}

/// Whether SIGPIPE is pending for this thread or the process.
fn sigpipe_pending() -> io::Result<bool> {
    let mut pending = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigpending fills the set `pending` points to.
    cvt(unsafe { libc::sigpending(pending.as_mut_ptr()) })?;
    // SAFETY: sigpending returned 0, so the set is initialised.
    let pending = unsafe { pending.assume_init() };
    // SAFETY: `pending` is an initialised set and SIGPIPE a valid signal number.
    Ok(unsafe { libc::sigismember(&pending, libc::SIGPIPE) } == 1)
}

/// Restores the calling thread's signal mask when dropped, even if the closure panics.
struct MaskGuard {
    old: libc::sigset_t,
    /// The mask is per thread: the guard must not move to another one.
    _this_thread: std::marker::PhantomData<*const ()>,
}

impl Drop for MaskGuard {
    fn drop(&mut self) {
        // SAFETY: `old` is the mask pthread_sigmask returned earlier on this same thread.
        // Restoring it cannot fail with a valid `how` and set, so the result is ignored.
        unsafe {
            libc::pthread_sigmask(libc::SIG_SETMASK, &self.old, std::ptr::null_mut());
        }
    }
}

/// Runs `write` with SIGPIPE blocked in the calling thread.
///
/// If `write` raised SIGPIPE (it failed with `EPIPE`, or a blocking write wrote part of its
/// bytes and then found the reader gone, which returns the count *and* raises the signal) and
/// SIGPIPE was not already pending before, the signal is taken off the pending set, so the
/// process never sees it. The outcome is returned unchanged. The thread's signal mask is
/// restored afterwards.
#[doc(alias = "pthread_sigmask")]
pub fn without_sigpipe<R>(write: impl FnOnce() -> io::Result<R>) -> io::Result<R> {
    let set = sigpipe_set()?;
    let was_pending = sigpipe_pending()?;
    let mut old = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: `set` is initialised; `old` points to writable memory for the previous mask.
    cvt_pthread(unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, old.as_mut_ptr()) })?;
    let _guard = MaskGuard {
        // SAFETY: pthread_sigmask returned 0, so it stored the previous mask in `old`.
        old: unsafe { old.assume_init() },
        _this_thread: std::marker::PhantomData,
    };
    let result = write();
    let raised = matches!(&result, Err(e) if e.raw_os_error() == Some(libc::EPIPE))
        || sigpipe_pending().unwrap_or(true);
    if !was_pending && raised {
        let zero = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        loop {
            // SAFETY: `set` is initialised, a null info pointer is allowed, and `zero` is a
            // valid timespec: this only dequeues a pending SIGPIPE, without waiting.
            let rc = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &zero) };
            if rc == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            break;
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_to_closed_pipe() -> io::Result<libc::ssize_t> {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
        // SAFETY: fds[0] was just returned by pipe2 and is owned here alone.
        unsafe { libc::close(fds[0]) };
        let result = without_sigpipe(|| {
            // SAFETY: fds[1] is open and the buffer is valid for 1 byte.
            let n = unsafe { libc::write(fds[1], b"x".as_ptr().cast(), 1) };
            if n < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(n)
            }
        });
        // SAFETY: fds[1] is owned here alone and not used afterwards.
        unsafe { libc::close(fds[1]) };
        result
    }

    #[test]
    fn write_to_dead_pipe_is_epipe_and_leaves_nothing_pending() {
        // The test harness runs with SIGPIPE ignored (Rust's default), so this checks that the
        // error surfaces and no SIGPIPE is left pending; the default-disposition case is
        // exercised across processes by the integration tests.
        let err = write_to_closed_pipe().unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPIPE));
        assert!(!sigpipe_pending().unwrap());
    }

    #[test]
    fn rust_test_binaries_ignore_sigpipe() {
        assert!(sigpipe_ignored().unwrap());
    }
}
