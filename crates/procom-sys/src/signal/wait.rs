//! [`Subscription::wait`]: a waiting thread takes its signals from the kernel with
//! `sigtimedwait` while it sleeps (see [`super::catch`] for the design and its guarantees).

use std::io;
use std::mem::MaybeUninit;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::catch::{Record, SLOTS, Subscription, WITHDRAWN, deliver, gettid};
use super::sigset;

/// How a [`Subscription::wait`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waited {
    /// A signal taken from the kernel's queue, already handed to the other subscribers.
    Taken(Record),
    /// Records may be waiting in the pipe, or the wait was interrupted or cut short: read the
    /// pipe, then wait again for what is left of the timeout.
    Woken,
    /// The timeout passed with nothing delivered.
    TimedOut,
    /// No signal of the subscription can wake the calling thread from `sigtimedwait`: it
    /// blocks them all, or all but SIGCONT (never a wake-up, see the module docs). Wait on
    /// the pipe instead.
    Blocked,
}

/// The longest sleep of a waiter whose wake-up is a real-time signal, which the kernel refuses
/// to queue past `RLIMIT_SIGPENDING`: how late a record in its pipe may be noticed then.
const REFUSABLE_SLICE: Duration = Duration::from_secs(1);

/// `sigtimedwait` on `set`, EINTR included: the signal taken, as a record, or the error.
pub(super) fn sigtimedwait(
    set: &libc::sigset_t,
    timeout: Option<&libc::timespec>,
) -> io::Result<Record> {
    let mut info = MaybeUninit::<libc::siginfo_t>::zeroed();
    let ts = timeout.map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `set` is initialised, `ts` is null or a valid timespec, `info` is writable.
    let sig = unsafe { libc::sigtimedwait(set, info.as_mut_ptr(), ts) };
    if sig < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: sigtimedwait succeeded, so the kernel filled `info` in for `sig`.
    Ok(unsafe { Record::from_siginfo(sig, info.assume_init_ref()) })
}

/// `d` as a `timespec` (seconds saturated).
pub(super) fn timespec(d: Duration) -> libc::timespec {
    libc::timespec {
        tv_sec: libc::time_t::try_from(d.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::from(d.subsec_nanos() as i32),
    }
}

impl Subscription {
    /// Waits up to `timeout` (`None`: as long as it takes) for a signal of this subscription,
    /// taking it from the kernel while the calling thread sleeps: see the module docs.
    ///
    /// # References
    /// - [`sigtimedwait(2)`](https://man7.org/linux/man-pages/man2/sigtimedwait.2.html)
    /// - [`pthread_sigmask(3)`](https://man7.org/linux/man-pages/man3/pthread_sigmask.3.html)
    #[doc(alias = "sigtimedwait")]
    pub fn wait(&mut self, timeout: Option<Duration>) -> io::Result<Waited> {
        let mut old = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: a null new set only reads this thread's mask into `old`.
        crate::cvt_pthread(unsafe {
            libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), old.as_mut_ptr())
        })?;
        // SAFETY: pthread_sigmask succeeded, so `old` is filled in.
        let old = unsafe { old.assume_init() };
        // The signals the caller had not blocked in this thread: the others stay pending.
        let mut wanted = sigset(&[])?;
        let mut poke_with = 0;
        for s in &self.signals {
            // SAFETY: `old` is initialised; sigismember and sigaddset take a valid number.
            if unsafe { libc::sigismember(&old, *s) } == 0 {
                // SAFETY: as above.
                unsafe { libc::sigaddset(&mut wanted, *s) };
                if poke_with == 0 && *s != libc::SIGCONT {
                    poke_with = *s;
                }
            }
        }
        if poke_with == 0 {
            return Ok(Waited::Blocked);
        }
        let result = self.sleep(&wanted, poke_with, timeout);
        if SLOTS[self.slot].masked.swap(0, Ordering::SeqCst) != 0 {
            // A handler in this thread blocked the wake-up signal (see `wake_here`); its
            // wake-ups are taken, so it goes back to what the caller had: unblocked, as every
            // signal of `wanted` was (and nothing here can fail and lose a record taken).
            // SAFETY: `wanted` is initialised; no old mask is asked for.
            unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &wanted, std::ptr::null_mut()) };
        }
        if let Ok(Waited::Taken(rec)) = &result {
            deliver(rec, Some(self.slot), std::ptr::null_mut());
        }
        result
    }

    /// The registered part of `wait`: check, sleep, withdraw, take the wake-ups.
    fn sleep(
        &self,
        wanted: &libc::sigset_t,
        poke_with: i32,
        timeout: Option<Duration>,
    ) -> io::Result<Waited> {
        let slot = &SLOTS[self.slot];
        let tid = gettid();
        // Loaded before the registration: every wake-up queued for it comes after.
        let pokes = slot.pokes.load(Ordering::SeqCst);
        // Wake-ups taken that came without their siginfo.
        let mut bare_taken = 0;
        let registration = ((tid as u64) << 8) | poke_with as u64;
        slot.waiter.store(registration, Ordering::SeqCst);
        let result = if self.unread() {
            Ok(Waited::Woken)
        } else {
            #[cfg(test)]
            tests::IN_WINDOW.with(|f| f.get().map(|f| f()));
            // A real-time wake-up can be refused (see the module docs): then the sleep ends
            // after a slice at most, and the caller checks the pipe and sleeps again.
            let slice = (poke_with >= super::sigrtmin())
                .then_some(REFUSABLE_SLICE)
                .filter(|s| timeout.is_none_or(|t| t > *s));
            let ts = slice.or(timeout).map(timespec);
            match sigtimedwait(wanted, ts.as_ref()) {
                Ok(r) if r.is_poke() => Ok(Waited::Woken),
                // A wake-up queued without its siginfo (see the module docs).
                Ok(r) if r.is_bare(poke_with) && slot.pokes.load(Ordering::SeqCst) != pokes => {
                    bare_taken = 1;
                    Ok(Waited::Woken)
                }
                Ok(r) => Ok(Waited::Taken(r)),
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) && slice.is_some() => {
                    Ok(Waited::Woken)
                }
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => Ok(Waited::TimedOut),
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => Ok(Waited::Woken),
                Err(e) => Err(e),
            }
        };
        // Withdraw, let every handler that may have seen the registration finish, take the
        // wake-ups they queued (the handler here queues again, blocked, one that reaches it
        // meanwhile), then clear the registration.
        slot.waiter
            .store(registration | WITHDRAWN, Ordering::SeqCst);
        slot.wait_out_handlers();
        if slot.pokes.load(Ordering::SeqCst) != pokes {
            // Wake-ups without their siginfo taken here.
            let mut bare_dropped = 0;
            let now = timespec(Duration::ZERO);
            loop {
                match sigtimedwait(wanted, Some(&now)) {
                    Ok(r) => {
                        // Those of the wake-ups queued so far that may come without their
                        // siginfo and are not taken yet.
                        let queued = slot.pokes.load(Ordering::SeqCst).wrapping_sub(pokes);
                        if r.is_bare(poke_with) && queued > bare_taken + bare_dropped {
                            bare_dropped += 1;
                        } else if !r.is_poke() {
                            // A real delivery queued since: into every pipe, this one's too.
                            deliver(&r, None, std::ptr::null_mut());
                        }
                    }
                    Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                    Err(_) => break,
                }
            }
        }
        slot.waiter.store(0, Ordering::SeqCst);
        result
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::signal::catch::RECORD_SIZE;
    use crate::signal::subscribe;

    thread_local! {
        /// Run by `sleep` between its check for records and `sigtimedwait`.
        pub(super) static IN_WINDOW: std::cell::Cell<Option<fn()>> =
            const { std::cell::Cell::new(None) };
    }

    fn signal_to_this_thread(sig: i32) {
        // SAFETY: tgkill takes plain integers; the thread is this one.
        let rc = unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), gettid(), sig) };
        assert_eq!(rc, 0, "tgkill: {}", io::Error::last_os_error());
    }

    fn blocked_or_pending_here(sig: i32) -> (bool, bool) {
        let mut mask = MaybeUninit::<libc::sigset_t>::uninit();
        let mut pending = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: a null new set only reads the mask; sigpending fills its argument in.
        unsafe {
            libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), mask.as_mut_ptr());
            libc::sigpending(pending.as_mut_ptr());
            (
                libc::sigismember(mask.as_ptr(), sig) == 1,
                libc::sigismember(pending.as_ptr(), sig) == 1,
            )
        }
    }

    /// The handler runs in the waiting thread after its check and before its sleep: the
    /// wait must not sleep through the record, and leaves no mask or wake-up behind.
    #[test]
    fn a_signal_handled_by_the_waiter_before_it_sleeps_wakes_it() {
        let sig = super::super::sigrtmin() + 7;
        let mut sub = subscribe(&[sig]).unwrap();
        IN_WINDOW.with(|f| f.set(Some(|| signal_to_this_thread(super::super::sigrtmin() + 7))));
        let waited = sub.wait(Some(Duration::from_secs(20)));
        IN_WINDOW.with(|f| f.set(None));
        assert_eq!(waited.unwrap(), Waited::Woken);
        let mut buf = [0u8; RECORD_SIZE * 2];
        assert_eq!(sub.read(&mut buf).unwrap(), RECORD_SIZE);
        let rec = Record::decode(buf[..RECORD_SIZE].try_into().unwrap());
        assert_eq!((rec.signo, rec.code), (sig, libc::SI_TKILL));
        assert_eq!(blocked_or_pending_here(sig), (false, false));
        assert!(!sub.unread());
    }
}
