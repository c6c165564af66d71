//! Dispositions and masks: ignoring a signal, giving it its default action back, reading what
//! it does now, and blocking signals in this thread.

use super::Signal;
#[cfg(any(doc, test))]
use super::Signals;
use crate::error::{Error, ErrorKind};

/// Why procom refuses to catch, ignore or change the action of `sig`, if it does.
pub(super) fn refused(sig: Signal) -> Option<Error> {
    let detail = if !sig.can_be_caught() {
        "it can be neither caught nor ignored: the kernel keeps it so that any process can always be stopped"
    } else if sig.is_fault() {
        "it reports a fault of this process itself (a bad memory access, an illegal instruction, an arithmetic error), which a catcher cannot handle since the faulting instruction would run again forever; procom neither catches nor ignores it"
    } else {
        return None;
    };
    Some(
        Error::new(ErrorKind::InvalidInput)
            .detail(detail)
            .object(sig),
    )
}

fn action_error(sig: Signal, what: &str, e: std::io::Error) -> Error {
    if e.raw_os_error() == Some(rustix::io::Errno::BUSY.raw_os_error()) {
        return Error::new(ErrorKind::InvalidInput)
            .detail(format!(
                "a Signals catcher in this process catches it, so it cannot be {what}; drop the catcher first (it then restores the action it replaced)"
            ))
            .object(sig);
    }
    Error::os(&format!("make it {what}"), e).object(sig)
}

/// Ignores `sig` from now on: the kernel discards it on arrival.
///
/// Refused ([`ErrorKind::InvalidInput`]) for SIGKILL and SIGSTOP, which cannot be ignored, for
/// the fault signals (see [`Signal::is_fault`]), and while a [`Signals`] in this process
/// catches `sig`.
///
/// # References
/// - [`sigaction(2)`](https://man7.org/linux/man-pages/man2/sigaction.2.html)
#[doc(alias = "sigaction")]
#[doc(alias = "SIG_IGN")]
pub fn ignore(sig: Signal) -> Result<(), Error> {
    if let Some(e) = refused(sig) {
        return Err(e);
    }
    procom_sys::signal::ignore(sig.0).map_err(|e| action_error(sig, "ignored", e))
}

/// Gives `sig` its default action back (see [`Signal::default_action`]).
///
/// SIGKILL and SIGSTOP always have theirs, so this does nothing for them. Refused
/// ([`ErrorKind::InvalidInput`]) for the fault signals and while a [`Signals`] in this process
/// catches `sig` (dropping it restores what it replaced).
///
/// # References
/// - [`sigaction(2)`](https://man7.org/linux/man-pages/man2/sigaction.2.html)
#[doc(alias = "sigaction")]
#[doc(alias = "SIG_DFL")]
pub fn restore_default(sig: Signal) -> Result<(), Error> {
    if !sig.can_be_caught() {
        return Ok(());
    }
    if let Some(e) = refused(sig) {
        return Err(e);
    }
    procom_sys::signal::restore_default(sig.0)
        .map_err(|e| action_error(sig, "given its default action", e))
}

/// What this process does with a signal now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Its default action ([`Signal::default_action`]).
    Default,
    /// It is ignored.
    Ignore,
    /// A handler runs: a [`Signals`] catcher, or one installed by other code.
    Caught,
}

/// What this process does with `sig` now.
///
/// # References
/// - [`sigaction(2)`](https://man7.org/linux/man-pages/man2/sigaction.2.html)
#[doc(alias = "sigaction")]
pub fn disposition(sig: Signal) -> Result<Disposition, Error> {
    use procom_sys::signal::Disposition as D;
    match procom_sys::signal::disposition(sig.0) {
        Ok(D::Default) => Ok(Disposition::Default),
        Ok(D::Ignore) => Ok(Disposition::Ignore),
        Ok(D::Handled) => Ok(Disposition::Caught),
        Err(e) => Err(Error::os("read its disposition", e).object(sig)),
    }
}

/// While the guard lives, `signals` are blocked in the calling thread: they stay pending
/// (standard signals coalescing into one, real-time ones queueing) and are delivered when it
/// is dropped.
///
/// The mask is per thread. A signal sent to the process goes to any thread that does not block
/// it, so to hold a signal for the whole process, block it in every thread — simplest, before
/// spawning any (new threads inherit the mask of the thread that spawns them).
///
/// # References
/// - [`pthread_sigmask(3)`](https://man7.org/linux/man-pages/man3/pthread_sigmask.3.html)
#[doc(alias = "pthread_sigmask")]
#[doc(alias = "sigprocmask")]
pub fn block(signals: &[Signal]) -> Result<BlockGuard, Error> {
    let nums: Vec<i32> = signals.iter().map(|s| s.0).collect();
    procom_sys::signal::block(&nums)
        .map(BlockGuard)
        .map_err(|e| Error::os("block signals", e))
}

/// Unblocks the signals [`block`] blocked when dropped.
#[derive(Debug)]
#[must_use = "dropping the guard unblocks the signals at once (`let _guard = block(..)?;`)"]
pub struct BlockGuard(#[allow(dead_code)] procom_sys::signal::MaskGuard);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::lock;
    use std::time::Duration;

    #[test]
    fn kill_stop_and_faults_are_refused() {
        for s in [Signal::KILL, Signal::STOP] {
            let e = Signals::catch([Signal::USR1, s]).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput);
            assert!(
                e.to_string().contains("can be neither caught nor ignored"),
                "{e}"
            );
            assert_eq!(ignore(s).unwrap_err().kind(), ErrorKind::InvalidInput);
            restore_default(s).unwrap(); // they always have it
        }
        for s in [Signal::SEGV, Signal::BUS, Signal::ILL, Signal::FPE] {
            let e = Signals::catch([s]).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput);
            assert!(e.to_string().contains("fault of this process"), "{e}");
            assert_eq!(ignore(s).unwrap_err().kind(), ErrorKind::InvalidInput);
            assert_eq!(
                restore_default(s).unwrap_err().kind(),
                ErrorKind::InvalidInput
            );
        }
        assert_eq!(
            Signals::catch([]).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
    }

    #[test]
    fn ignore_while_caught_is_refused_and_the_action_comes_back() {
        let _state = lock();
        let sig = Signal::rtmin_plus(5).unwrap();
        assert_eq!(disposition(sig).unwrap(), Disposition::Default);
        ignore(sig).unwrap();
        assert_eq!(disposition(sig).unwrap(), Disposition::Ignore);
        {
            let mut caught = Signals::catch([sig]).unwrap();
            assert_eq!(disposition(sig).unwrap(), Disposition::Caught);
            let e = restore_default(sig).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput);
            assert!(e.to_string().contains("drop the catcher first"), "{e}");
            assert_eq!(caught.try_wait().unwrap_err().kind(), ErrorKind::Empty);
            assert_eq!(
                caught
                    .wait_timeout(Duration::from_millis(1))
                    .unwrap_err()
                    .kind(),
                ErrorKind::Timeout
            );
        }
        assert_eq!(disposition(sig).unwrap(), Disposition::Ignore);
        restore_default(sig).unwrap();
        assert_eq!(disposition(sig).unwrap(), Disposition::Default);
    }
}
