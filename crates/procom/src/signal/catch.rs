//! Catching: `Signals`, `Delivery`, and `AsyncSignals` (feature `tokio`).

use std::io;
#[cfg(feature = "tokio")]
use std::os::fd::OwnedFd;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use rustix::event::PollFlags;

use super::Signal;
#[cfg(doc)]
use super::block;
use super::dispositions::refused;
use super::names::invalid;
use crate::error::{Error, ErrorKind};
use crate::stream::{deadline_after, wait};

/// One signal delivered to a [`Signals`] catcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// The signal.
    pub signal: Signal,
    /// The sender's pid (0 when the kernel sent it, e.g. a keyboard signal).
    pub sender_pid: i32,
    /// The sender's real uid.
    pub sender_uid: u32,
    /// The value sent with `sigqueue`, if it was.
    pub value: Option<i32>,
}

/// Catches signals and hands them out as [`Delivery`] values, by iterator or by `wait` calls.
///
/// ```no_run
/// use procom::signal::{Signal, Signals};
/// # fn main() -> Result<(), procom::Error> {
/// for d in Signals::catch([Signal::USR1, Signal::TERM])? {
///     println!("{} from pid {} (uid {})", d.signal, d.sender_pid, d.sender_uid);
///     if d.signal == Signal::TERM {
///         break; // shut down cleanly
///     }
/// }
/// # Ok(()) }
/// ```
///
/// # How delivery works
///
/// No signal is blocked. While a `Signals` lives, each caught signal has a process-wide
/// handler (`sigaction`, `SA_SIGINFO | SA_RESTART`). The kernel runs it in whichever thread
/// does not block the signal — any thread, created before or after the catcher. The handler
/// only writes a 24-byte record (signal, sender pid and uid, value) to a pipe, the self-pipe
/// this catcher reads, and wakes a thread waiting in `wait`; it runs no code of yours, takes no
/// lock, allocates nothing. A thread sleeping in `wait` (or `wait_timeout`, the iterator)
/// takes the signals the kernel hands to it directly with `sigtimedwait`, without a handler
/// or the pipe, and passes them on to the other catchers of the same signal. signalfd is not
/// used because it only receives a signal blocked in every thread of the process, which a
/// library cannot arrange for threads it did not create.
///
/// Consequences:
/// - A signal blocked in every thread (see [`block`]) stays pending and reaches the catcher
///   when some thread unblocks it.
/// - Standard signals sent while one is still pending coalesce into one delivery; real-time
///   signals queue, each with its value, in order — as the catcher sees them only when one
///   thread takes them all: two threads that do not block the signal may handle two of them
///   at the same moment, and their records may arrive in either order.
/// - Several catchers of the same signal each receive every delivery.
/// - A system call interrupted in another thread is restarted where the kernel allows
///   (`SA_RESTART`); a few (`poll`, `sleep`, ...) return `EINTR` as with any handler.
/// - The handler replaces the signal's previous action, which comes back when the last
///   catcher of that signal is dropped.
#[derive(Debug)]
pub struct Signals {
    sub: procom_sys::signal::Subscription,
    pending: Vec<u8>,
    signals: Vec<Signal>,
}

impl Signals {
    /// Starts catching `signals`. Until this is dropped they no longer take their default
    /// action (or the action they had); afterwards the previous action is restored.
    ///
    /// Refused with [`ErrorKind::InvalidInput`]: SIGKILL and SIGSTOP, which can be neither
    /// caught nor ignored, and the fault signals SIGSEGV, SIGBUS, SIGILL and SIGFPE (as tokio and
    /// signal-hook refuse them): when the kernel raises one for a fault of this process, a
    /// handler that records it and returns makes the faulting instruction run again, forever.
    ///
    /// # References
    /// - [`sigaction(2)`](https://man7.org/linux/man-pages/man2/sigaction.2.html)
    /// - [`signal-safety(7)`](https://man7.org/linux/man-pages/man7/signal-safety.7.html)
    #[doc(alias = "sigaction")]
    pub fn catch(signals: impl IntoIterator<Item = Signal>) -> Result<Signals, Error> {
        let signals: Vec<Signal> = signals.into_iter().collect();
        if let Some(e) = signals.iter().find_map(|s| refused(*s)) {
            return Err(e);
        }
        if signals.is_empty() {
            return Err(invalid("name at least one signal to catch"));
        }
        let nums: Vec<i32> = signals.iter().map(|s| s.0).collect();
        let sub = procom_sys::signal::subscribe(&nums)
            .map_err(|e| Error::os("install a signal catcher", e))?;
        Ok(Signals {
            sub,
            pending: Vec::new(),
            signals,
        })
    }

    /// The signals being caught.
    pub fn signals(&self) -> &[Signal] {
        &self.signals
    }

    /// Deliveries dropped because more than ~40,000 were waiting unread.
    pub fn lost(&self) -> u64 {
        self.sub.lost()
    }

    /// The next delivery, waiting as long as it takes.
    pub fn wait(&mut self) -> Result<Delivery, Error> {
        self.next_deadline(None, false)
    }

    /// The next delivery if one has arrived, else [`ErrorKind::Empty`].
    pub fn try_wait(&mut self) -> Result<Delivery, Error> {
        self.next_deadline(Some(Instant::now()), true)
    }

    /// The next delivery, waiting at most `timeout` ([`ErrorKind::Timeout`] after it).
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Delivery, Error> {
        self.next_deadline(deadline_after(timeout), false)
    }

    /// The next delivery, waiting until `deadline` at most ([`ErrorKind::Timeout`] after it).
    pub fn wait_deadline(&mut self, deadline: Instant) -> Result<Delivery, Error> {
        self.next_deadline(Some(deadline), false)
    }

    /// The deliveries that have arrived, without waiting.
    pub fn try_iter(&mut self) -> impl Iterator<Item = Delivery> + '_ {
        std::iter::from_fn(move || self.try_wait().ok())
    }

    fn next_deadline(
        &mut self,
        deadline: Option<Instant>,
        is_try: bool,
    ) -> Result<Delivery, Error> {
        use procom_sys::signal::{RECORD_SIZE, Record, Waited};
        // The pipe polled readable: read it whatever the count says (a forked child's handler
        // may have written into it, counting in its own copy).
        let mut readable = false;
        loop {
            if self.pending.len() >= RECORD_SIZE {
                let mut r = [0u8; RECORD_SIZE];
                r.copy_from_slice(&self.pending[..RECORD_SIZE]);
                self.pending.drain(..RECORD_SIZE);
                match delivery(Record::decode(&r)) {
                    Some(d) => return Ok(d),
                    None => continue,
                }
            }
            // A waiting thread knows without a read whether the pipe holds anything; a
            // `try_wait` after the pipe polled readable must read it whatever the count says.
            if is_try || std::mem::take(&mut readable) || self.sub.unread() {
                let mut buf = [0u8; RECORD_SIZE * 64];
                match self.sub.read(&mut buf) {
                    Ok(n) if n > 0 => {
                        self.pending.extend_from_slice(&buf[..n]);
                        continue;
                    }
                    Ok(_) => {}
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                        ) => {}
                    Err(e) => return Err(Error::os("read delivered signals", e)),
                }
            }
            if is_try {
                return Err(Error::new(ErrorKind::Empty).detail("no signal has arrived"));
            }
            let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            match self
                .sub
                .wait(timeout)
                .map_err(|e| Error::os("wait for signals", e))?
            {
                Waited::Taken(rec) => {
                    if let Some(d) = delivery(rec) {
                        return Ok(d);
                    }
                }
                Waited::Woken => {}
                Waited::TimedOut => return Err(timed_out()),
                // Every signal of ours is blocked in this thread (or all but SIGCONT, which
                // cannot wake it): whatever arrives comes through the pipe, once a handler in
                // another thread (or this one) takes it.
                // `wait` retries EINTR against the same deadline.
                Waited::Blocked => {
                    if !wait(self.sub.fd(), PollFlags::IN, deadline)
                        .map_err(|e| Error::os("wait for signals", e))?
                    {
                        return Err(timed_out());
                    }
                    readable = true;
                }
            }
        }
    }
}

fn timed_out() -> Error {
    Error::new(ErrorKind::Timeout).detail("no signal arrived before the deadline")
}

/// The delivery a record describes (`None` for a signal number this system does not have).
fn delivery(rec: procom_sys::signal::Record) -> Option<Delivery> {
    let signal = Signal::from_number(rec.signo).ok()?;
    Some(Delivery {
        signal,
        sender_pid: rec.pid,
        sender_uid: rec.uid,
        value: (rec.code == procom_sys::signal::SI_QUEUE).then_some(rec.value),
    })
}

impl Iterator for Signals {
    type Item = Delivery;

    /// Blocks for the next delivery; ends only if reading fails.
    fn next(&mut self) -> Option<Delivery> {
        self.wait().ok()
    }
}

/// The descriptor that becomes readable when a delivery is waiting, for an event loop of
/// your own (poll, epoll, mio); then call [`Signals::try_wait`] until it reports empty.
impl AsFd for Signals {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sub.fd()
    }
}

/// The async form of [`Signals`] (feature `tokio`): a [`futures_core::Stream`] of deliveries,
/// woken by the runtime when the catcher's pipe becomes readable.
///
/// ```no_run
/// # async fn demo() -> Result<(), procom::Error> {
/// use procom::signal::{AsyncSignals, Signal};
/// let mut signals = AsyncSignals::catch([Signal::TERM, Signal::HUP])?;
/// while let Ok(d) = signals.recv().await {
///     if d.signal == Signal::TERM { break }
/// }
/// # Ok(()) }
/// ```
#[cfg(feature = "tokio")]
#[derive(Debug)]
pub struct AsyncSignals {
    inner: Signals,
    fd: tokio::io::unix::AsyncFd<OwnedFd>,
}

#[cfg(feature = "tokio")]
impl AsyncSignals {
    /// Starts catching `signals` (as [`Signals::catch`]); must be called inside a tokio runtime
    /// with I/O enabled.
    pub fn catch(signals: impl IntoIterator<Item = Signal>) -> Result<AsyncSignals, Error> {
        let inner = Signals::catch(signals)?;
        let dup = inner
            .sub
            .fd()
            .try_clone_to_owned()
            .map_err(|e| Error::os("duplicate the catcher's pipe", e))?;
        let fd = procom_sys::async_fd::register(dup, tokio::io::Interest::READABLE)
            .map_err(|e| Error::os("register the catcher with the tokio runtime", e))?;
        Ok(AsyncSignals { inner, fd })
    }

    /// The signals being caught.
    pub fn signals(&self) -> &[Signal] {
        self.inner.signals()
    }

    /// The next delivery.
    pub async fn recv(&mut self) -> Result<Delivery, Error> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Polls for the next delivery: ready with one, or pending until the pipe is readable.
    pub fn poll_recv(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<Delivery, Error>> {
        use std::task::Poll;
        loop {
            match self.inner.try_wait() {
                Ok(d) => return Poll::Ready(Ok(d)),
                Err(e) if e.kind() == ErrorKind::Empty => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            match self.fd.poll_read_ready(cx) {
                // The pipe was drained above; a record written since then set a new readiness
                // tick, which clear_ready leaves alone, and the loop reads it.
                Poll::Ready(Ok(mut guard)) => guard.clear_ready(),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(Error::os("wait for signals", e))),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(feature = "tokio")]
impl futures_core::Stream for AsyncSignals {
    type Item = Delivery;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Delivery>> {
        self.poll_recv(cx).map(Result::ok)
    }
}

#[cfg(all(test, feature = "tokio"))]
mod tests {
    use super::*;
    use crate::signal::{lock, queue};

    #[cfg(feature = "tokio")]
    #[test]
    fn async_signals_arrive_through_the_runtime() {
        let _state = lock();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap();
        rt.block_on(async {
            let rtsig = Signal::rtmin_plus(4).unwrap();
            let mut s = AsyncSignals::catch([rtsig]).unwrap();
            let me = std::process::id() as i32;
            for v in 0..3 {
                queue(me, rtsig, v).unwrap();
            }
            // Each exactly once. Their order is the kernel's only where one thread takes them
            // all: in this multi-threaded test process two may be handled at once.
            let mut values = Vec::new();
            for _ in 0..3 {
                let d = s.recv().await.unwrap();
                assert_eq!((d.signal, d.sender_pid), (rtsig, me));
                values.push(d.value);
            }
            values.sort();
            assert_eq!(values, [Some(0), Some(1), Some(2)]);
        });
    }

    #[cfg(feature = "tokio")]
    #[test]
    fn async_signals_outside_a_runtime_is_an_error() {
        let _state = lock();
        let e = AsyncSignals::catch([Signal::USR2]).unwrap_err();
        assert!(e.to_string().contains("tokio runtime"), "{e}");
    }
}
