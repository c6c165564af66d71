//! How an async endpoint waits: readiness of the flavor's descriptor from tokio's reactor, or
//! a waiter thread of its own that sleeps on the ring's futex or blocks in a System V call,
//! and a timer descriptor for deadlines. Nothing here spins or sleeps in a loop.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use crate::error::{Error, ErrorKind};
use crate::flavor::shm::Sleep;

/// A value a waiter thread hands to the task that waits for it. Kept by the endpoint while
/// the task is away, so a future dropped meanwhile loses nothing: the next call takes it.
#[derive(Debug)]
pub(crate) struct Handoff<T> {
    state: Mutex<(Option<T>, Option<Waker>)>,
}

impl<T> Handoff<T> {
    pub(crate) fn new() -> Arc<Handoff<T>> {
        Arc::new(Handoff {
            state: Mutex::new((None, None)),
        })
    }

    /// Hands `value` over and wakes the task waiting for it.
    pub(crate) fn put(&self, value: T) {
        let waker = {
            let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            s.0 = Some(value);
            s.1.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// The value, once it is there.
    pub(crate) fn poll_take(&self, cx: &mut Context<'_>) -> Poll<T> {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match s.0.take() {
            Some(v) => Poll::Ready(v),
            None => {
                if !s.1.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    s.1 = Some(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }

    /// Forgets the waiting task: a waiter thread that outlives its endpoint then holds
    /// nothing of the runtime (a waker keeps its I/O driver alive).
    pub(crate) fn abandon(&self) {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).1 = None;
    }

    /// The value if it is there, without waiting.
    pub(crate) fn try_take(&self) -> Option<T> {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .0
            .take()
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// One thread per async endpoint that needs one (shared memory, System V queues), started on
/// its first wait and ended when the endpoint is dropped (after the job it is running). Jobs
/// run one at a time, in order.
#[derive(Debug, Default)]
pub(crate) struct Waiter {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// A job may block for as long as the kernel call it makes (a System V receive): the
    /// thread is left to end on its own rather than joined.
    detach: bool,
}

impl Waiter {
    /// Runs `job` on the thread, starting it if need be.
    pub(crate) fn run(&mut self, job: Job) -> Result<(), Error> {
        let jobs = match &self.jobs {
            Some(j) => j,
            None => {
                let (tx, rx) = mpsc::channel::<Job>();
                let thread = std::thread::Builder::new()
                    .name("procom-waiter".into())
                    .spawn(move || {
                        while let Ok(job) = rx.recv() {
                            job();
                        }
                    })
                    .map_err(|e| Error::os("start a waiter thread", e))?;
                self.thread = Some(thread);
                self.jobs.insert(tx)
            }
        };
        jobs.send(job)
            .map_err(|_| Error::new(ErrorKind::Io).detail("the waiter thread has gone"))
    }
}

impl Waiter {
    /// Leaves the thread to end on its own when the endpoint is dropped (a job may be
    /// blocked in a kernel call nothing can interrupt).
    pub(crate) fn detach(&mut self) {
        self.detach = true;
    }
}

impl Drop for Waiter {
    /// Ends the thread: it finishes its jobs (a futex sleep is ended first by `Sleeping`'s
    /// drop) and returns, and is joined, so that it holds nothing of the runtime after its
    /// endpoint is gone.
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(t) = self.thread.take()
            && !self.detach
        {
            let _ = t.join();
        }
    }
}

/// A futex sleep running on the waiter thread.
#[derive(Debug)]
pub(crate) struct Sleeping {
    sleep: Arc<Sleep>,
    done: Arc<Handoff<()>>,
}

impl Sleeping {
    /// Starts `sleep` on `waiter`'s thread.
    pub(crate) fn start(waiter: &mut Waiter, sleep: Sleep) -> Result<Sleeping, Error> {
        let sleep = Arc::new(sleep);
        let done = Handoff::new();
        let (s, d) = (Arc::clone(&sleep), Arc::clone(&done));
        waiter.run(Box::new(move || {
            s.take(None);
            d.put(());
        }))?;
        Ok(Sleeping { sleep, done })
    }

    pub(crate) fn poll_done(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.done.poll_take(cx)
    }
}

impl Drop for Sleeping {
    /// Ends the sleep, so the thread is free for the next one or ends.
    fn drop(&mut self) {
        if self.done.try_take().is_none() {
            self.done.abandon();
            self.sleep.interrupt();
        }
    }
}

/// A flavor's descriptor registered with the reactor: a duplicate (the same open file, so
/// the same readiness) that the registration owns. Registered again if the flavor's
/// descriptor changes (a bound `tcp:`/`unix:` receiver: its listener, then its connection).
#[derive(Debug)]
pub(crate) struct Registered {
    fd: Option<(AsyncFd<OwnedFd>, RawFd)>,
    interest: Interest,
}

impl Registered {
    pub(crate) fn new(interest: Interest) -> Registered {
        Registered { fd: None, interest }
    }

    /// Whether `raw` is the descriptor registered (a first wait, or a changed descriptor,
    /// tries the operation before it asks the reactor).
    pub(crate) fn is(&self, raw: RawFd) -> bool {
        self.fd.as_ref().is_some_and(|(_, r)| *r == raw)
    }

    /// Registers `fd` unless it is the one registered.
    pub(crate) fn ensure(&mut self, fd: BorrowedFd<'_>) -> io::Result<()> {
        let raw = fd.as_raw_fd();
        if !self.is(raw) {
            self.fd = None;
            let dup = rustix::io::fcntl_dupfd_cloexec(fd, 0)?;
            self.fd = Some((procom_sys::async_fd::register(dup, self.interest)?, raw));
        }
        Ok(())
    }

    /// tokio's readiness pattern: waits until the registered descriptor is reported ready,
    /// then runs `op`; only if `op` finds nothing to do (`Empty` or `Full`) is the readiness
    /// cleared (`Ready(Ok(None))`: wait again), so an edge that arrived meanwhile is never
    /// lost. No system call at all while the reactor says nothing changed. `op` also says
    /// whether it emptied the descriptor (a stream's short read): then the readiness is
    /// cleared after a success too, as tokio's own streams do, so the next call waits for
    /// the next edge instead of making a read that finds nothing (the guard clears only the
    /// readiness it saw: an edge the reactor reports meanwhile stays).
    pub(crate) fn poll_op<T>(
        &mut self,
        cx: &mut Context<'_>,
        op: impl FnOnce() -> (Result<T, Error>, bool),
    ) -> Poll<io::Result<Option<Result<T, Error>>>> {
        let mut guard = match self.poll_interest(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Ready(Ok(guard)) => guard,
        };
        match op() {
            (Err(e), _) if matches!(e.kind(), ErrorKind::Empty | ErrorKind::Full) => {
                guard.clear_ready();
                Poll::Ready(Ok(None))
            }
            (r, drained) => {
                if drained {
                    guard.clear_ready();
                }
                Poll::Ready(Ok(Some(r)))
            }
        }
    }

    /// The registered descriptor's readiness for this registration's interest.
    fn poll_interest(
        &self,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<tokio::io::unix::AsyncFdReadyGuard<'_, OwnedFd>>> {
        let Some((afd, _)) = &self.fd else {
            return Poll::Ready(Err(io::Error::other("not registered")));
        };
        if self.interest.is_readable() {
            afd.poll_read_ready(cx)
        } else {
            afd.poll_write_ready(cx)
        }
    }

    /// Waits until `fd` may be ready again (readiness is then cleared: the caller tries its
    /// operation, and a failure waits for the next edge).
    pub(crate) fn poll_ready(
        &mut self,
        cx: &mut Context<'_>,
        fd: BorrowedFd<'_>,
    ) -> Poll<io::Result<()>> {
        self.ensure(fd)?;
        match self.poll_interest(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Ready(Ok(mut guard)) => {
                guard.clear_ready();
                Poll::Ready(Ok(()))
            }
        }
    }
}

/// A deadline for the `_timeout`/`_deadline` forms: a timer descriptor registered with the
/// reactor, so they need no time driver in the runtime.
#[derive(Debug)]
pub(crate) struct Timer {
    fd: Option<AsyncFd<OwnedFd>>,
}

impl Timer {
    /// A timer that expires at `deadline` (`None`: never).
    pub(crate) fn at(deadline: Option<Instant>) -> Result<Timer, Error> {
        let Some(deadline) = deadline else {
            return Ok(Timer { fd: None });
        };
        use rustix::time::{
            Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec, timerfd_create,
            timerfd_settime,
        };
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_nanos(1)); // zero would disarm the timer
        let fd = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )
        .map_err(|e| Error::os("create a timer", e.into()))?;
        let spec = Itimerspec {
            it_interval: Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: Timespec {
                tv_sec: i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
                tv_nsec: i64::from(left.subsec_nanos()),
            },
        };
        timerfd_settime(&fd, TimerfdTimerFlags::empty(), &spec)
            .map_err(|e| Error::os("set a timer", e.into()))?;
        let fd = procom_sys::async_fd::register(fd, Interest::READABLE)
            .map_err(|e| Error::os("register a timer", e))?;
        Ok(Timer { fd: Some(fd) })
    }

    /// Whether the deadline has passed.
    pub(crate) fn poll_expired(&self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(fd) = &self.fd else {
            return Poll::Pending;
        };
        match fd.poll_read_ready(cx) {
            Poll::Ready(_) => Poll::Ready(()),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Runs `op` (a cancellation-safe operation) until `deadline`; then `Timeout` saying `what`.
pub(crate) async fn until<T>(
    deadline: Option<Instant>,
    what: &'static str,
    mut op: impl FnMut(&mut Context<'_>) -> Poll<Result<T, Error>>,
) -> Result<T, Error> {
    let timer = Timer::at(deadline)?;
    std::future::poll_fn(|cx| {
        if let Poll::Ready(r) = op(cx) {
            return Poll::Ready(r);
        }
        match timer.poll_expired(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Error::new(ErrorKind::Timeout).detail(what))),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}
