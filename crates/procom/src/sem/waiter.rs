//! The waiter thread behind the async semaphore calls (feature `tokio`).
//!
//! The kernel gives no descriptor for a semaphore, so a task cannot be woken by the reactor
//! when one is posted. Each async-capable handle owns at most one waiter thread, started by
//! its first async call that has to wait and ended when the handle is dropped. A call that
//! cannot complete at once puts a request in the handle's queue and returns `Pending`; the
//! thread blocks in the kernel (`sem_timedwait`, `semtimedop`) for the oldest request (see
//! below for requests asking different things) and wakes its task through the task's `Waker`.
//!
//! What the thread obtains depends on the object ([`Waitable`]):
//! - POSIX semaphores: the thread takes the unit itself and hands it to the request; if the
//!   request is gone by then (its future was dropped), the unit goes to the next request of
//!   the same handle or is posted back at once. A unit is never kept.
//! - System V sets: the thread waits until the request's operations *could* be applied,
//!   without applying them (the operations followed by their inverse, in one `semtimedop`),
//!   and the task then applies them without waiting. The thread never holds anything, and
//!   `SEM_UNDO` is recorded for the process exactly as with the blocking call.
//!
//! The thread's waits last at most [`SLICE`]: a request that is abandoned, or a handle that is
//! dropped, while the thread is blocked is noticed at the end of the slice (the kernel's
//! semaphore waits can be interrupted only by a signal, which a library cannot own). A post
//! ends the wait at once whatever the slice. When a slice passes, the next one goes to the
//! next younger request asking something else, in turn: requests of one set asking different
//! things (one for member 0, another for member 1) are each waited for, a slice at a time, so
//! one that cannot complete holds up the others at most a slice per request ahead of them.
//! Requests asking the same are served in the order they came.

use std::collections::BTreeMap;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use procom_sys::sem::Waited;

/// The longest single wait of a waiter thread.
pub(crate) const SLICE: Duration = Duration::from_millis(100);

/// An object a waiter thread can wait on.
pub(crate) trait Waitable: Send + Sync + 'static {
    /// What one call asks for (nothing for a POSIX semaphore; the operations for a set).
    type Req: Clone + PartialEq + Send + 'static;
    /// Completes `req` now if possible, without waiting.
    fn try_take(&self, req: &Self::Req) -> io::Result<Waited>;
    /// Blocks at most `timeout` until `req` may complete (on the waiter thread).
    fn block(&self, req: &Self::Req, timeout: Duration) -> io::Result<Waited>;
    /// Completes `req` after [`Waitable::block`] succeeded for it, without waiting:
    /// `Acquired` if it did, `WouldBlock` if it must wait again.
    fn claim(&self, req: &Self::Req) -> io::Result<Waited>;
    /// Gives back what [`Waitable::block`] obtained for a request that is gone.
    fn release(&self, req: &Self::Req);
}

enum Phase {
    /// The thread should wait for it.
    Waiting,
    /// [`Waitable::block`] succeeded for it; its task has not claimed it yet.
    Ready,
    /// Its deadline passed.
    TimedOut,
    /// The wait failed.
    Failed(io::Error),
}

struct Slot<R> {
    req: R,
    deadline: Option<Instant>,
    waker: Waker,
    phase: Phase,
}

struct State<R> {
    next: u64,
    /// Requests by arrival: the thread serves the oldest waiting one.
    slots: BTreeMap<u64, Slot<R>>,
    stopped: bool,
    thread: bool,
}

struct Shared<W: Waitable> {
    object: W,
    state: Mutex<State<W::Req>>,
    cond: Condvar,
}

impl<W: Waitable> Shared<W> {
    fn lock(&self) -> MutexGuard<'_, State<W::Req>> {
        // A panic while holding the lock cannot leave the state half-changed in a way that
        // matters more than losing the process's semaphore calls: carry on with it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Gives what `block` obtained for `req` to the oldest waiting request asking the same,
    /// or back to the object.
    fn hand_over(&self, st: &mut State<W::Req>, req: &W::Req) {
        let next = st
            .slots
            .values_mut()
            .find(|s| matches!(s.phase, Phase::Waiting) && s.req == *req);
        match next {
            Some(slot) => {
                slot.phase = Phase::Ready;
                slot.waker.wake_by_ref();
            }
            None => self.object.release(req),
        }
    }
}

/// The waiter of one handle: the queue, and the thread once started.
pub(crate) struct Waiter<W: Waitable> {
    shared: Arc<Shared<W>>,
}

impl<W: Waitable> std::fmt::Debug for Waiter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.shared.lock();
        f.debug_struct("Waiter")
            .field("pending", &st.slots.len())
            .field("thread", &st.thread)
            .finish()
    }
}

/// A handle's waiter, made on first use.
pub(crate) struct Lazy<W: Waitable>(OnceLock<Waiter<W>>);

impl<W: Waitable> Lazy<W> {
    pub(crate) fn new() -> Lazy<W> {
        Lazy(OnceLock::new())
    }

    pub(crate) fn get(&self, object: impl FnOnce() -> W) -> &Waiter<W> {
        self.0.get_or_init(|| Waiter {
            shared: Arc::new(Shared {
                object: object(),
                state: Mutex::new(State {
                    next: 0,
                    slots: BTreeMap::new(),
                    stopped: false,
                    thread: false,
                }),
                cond: Condvar::new(),
            }),
        })
    }
}

impl<W: Waitable> std::fmt::Debug for Lazy<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.get() {
            Some(w) => w.fmt(f),
            None => f.write_str("Waiter(not started)"),
        }
    }
}

impl<W: Waitable> Drop for Waiter<W> {
    fn drop(&mut self) {
        // No request can be left (each borrows the handle); the thread ends within a slice.
        self.shared.lock().stopped = true;
        self.shared.cond.notify_all();
    }
}

impl<W: Waitable> Waiter<W> {
    /// Completes `req`, waiting until `deadline` at most (`None`: as long as it takes).
    /// `WouldBlock` means the deadline passed.
    pub(crate) fn wait(&self, req: W::Req, deadline: Option<Instant>) -> Wait<'_, W> {
        Wait {
            waiter: self,
            req,
            deadline,
            id: None,
            done: false,
        }
    }

    fn enqueue(&self, req: &W::Req, deadline: Option<Instant>, waker: &Waker) -> io::Result<u64> {
        let mut st = self.shared.lock();
        if !st.thread {
            let shared = Arc::clone(&self.shared);
            let running = waiters::Running::start();
            std::thread::Builder::new()
                .name("procom-sem-waiter".into())
                .spawn(move || {
                    let _running = running;
                    run(&shared)
                })?;
            st.thread = true;
        }
        let id = st.next;
        st.next += 1;
        st.slots.insert(
            id,
            Slot {
                req: req.clone(),
                deadline,
                waker: waker.clone(),
                phase: Phase::Waiting,
            },
        );
        drop(st);
        self.shared.cond.notify_all();
        Ok(id)
    }
}

/// The waiter thread's loop.
fn run<W: Waitable>(shared: &Shared<W>) {
    let mut st = shared.lock();
    // The request whose slice just passed: the next slice goes to the one after it, so that
    // a request that cannot complete does not hold up younger ones asking something else.
    let mut passed: Option<u64> = None;
    loop {
        if st.stopped {
            return;
        }
        let now = Instant::now();
        let mut earliest: Option<Instant> = None;
        for slot in st.slots.values_mut() {
            if !matches!(slot.phase, Phase::Waiting) {
                continue;
            }
            match slot.deadline {
                Some(d) if d <= now => {
                    slot.phase = Phase::TimedOut;
                    slot.waker.wake_by_ref();
                }
                Some(d) => earliest = Some(earliest.map_or(d, |e| e.min(d))),
                None => {}
            }
        }
        let waiting = |(_, s): &(&u64, &Slot<W::Req>)| matches!(s.phase, Phase::Waiting);
        // After a slice, the next request asking something else (requests asking the same
        // are served in the order they came).
        let next = passed.and_then(|p| {
            let req = &st.slots.get(&p)?.req;
            st.slots
                .range(p + 1..)
                .find(|e| waiting(e) && e.1.req != *req)
        });
        let head = next
            .or_else(|| st.slots.iter().find(waiting))
            .map(|(id, s)| (*id, s.req.clone()));
        let Some((id, req)) = head else {
            st = shared.cond.wait(st).unwrap_or_else(|p| p.into_inner());
            continue;
        };
        let bound = earliest.map_or(SLICE, |d| d.saturating_duration_since(now).min(SLICE));
        drop(st);
        let got = shared.object.block(&req, bound);
        st = shared.lock();
        passed = matches!(got, Ok(Waited::WouldBlock)).then_some(id);
        match got {
            Ok(Waited::Acquired) => match st.slots.get_mut(&id) {
                Some(slot) if matches!(slot.phase, Phase::Waiting) => {
                    slot.phase = Phase::Ready;
                    // Woken outside the lock, which the task takes at once.
                    let waker = slot.waker.clone();
                    drop(st);
                    waker.wake();
                    st = shared.lock();
                }
                // Abandoned while the thread waited: the next request asking the same gets
                // it, or it goes back.
                _ => shared.hand_over(&mut st, &req),
            },
            Ok(Waited::WouldBlock) => {} // a slice or a deadline passed: look again
            Err(e) => {
                if let Some(slot) = st.slots.get_mut(&id)
                    && matches!(slot.phase, Phase::Waiting)
                {
                    slot.phase = Phase::Failed(e);
                    slot.waker.wake_by_ref();
                }
            }
        }
    }
}

/// One async call: completes with `Acquired`, `WouldBlock` (the deadline passed) or the
/// error of the wait. Dropping it before it completes takes nothing (see the module docs).
pub(crate) struct Wait<'a, W: Waitable> {
    waiter: &'a Waiter<W>,
    req: W::Req,
    deadline: Option<Instant>,
    /// Its place in the queue while it has one.
    id: Option<u64>,
    done: bool,
}

impl<W: Waitable> Future for Wait<'_, W>
where
    W::Req: Unpin,
{
    type Output = io::Result<Waited>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<Waited>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(Err(io::Error::other("polled after completion")));
        }
        let r = this.step(cx);
        this.done = r.is_ready();
        r
    }
}

impl<W: Waitable> Wait<'_, W> {
    fn step(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Waited>> {
        let this = self;
        let shared = &this.waiter.shared;
        let Some(id) = this.id else {
            // First poll: without waiting if possible, else queued for the thread.
            match shared.object.try_take(&this.req) {
                Ok(Waited::WouldBlock) => {}
                done => return Poll::Ready(done),
            }
            if this.deadline.is_some_and(|d| d <= Instant::now()) {
                return Poll::Ready(Ok(Waited::WouldBlock));
            }
            return match this.waiter.enqueue(&this.req, this.deadline, cx.waker()) {
                Ok(id) => {
                    this.id = Some(id);
                    Poll::Pending
                }
                Err(e) => Poll::Ready(Err(e)),
            };
        };
        let mut st = shared.lock();
        let Some(slot) = st.slots.get_mut(&id) else {
            return Poll::Ready(Err(io::Error::other("polled after completion")));
        };
        match &slot.phase {
            Phase::Waiting => {
                if !slot.waker.will_wake(cx.waker()) {
                    slot.waker = cx.waker().clone();
                }
                return Poll::Pending;
            }
            Phase::Ready => {
                let claimed = shared.object.claim(&this.req);
                let expired = this.deadline.is_some_and(|d| d <= Instant::now());
                if matches!(claimed, Ok(Waited::WouldBlock)) && !expired {
                    // Someone else took it first: wait again.
                    slot.phase = Phase::Waiting;
                    if !slot.waker.will_wake(cx.waker()) {
                        slot.waker = cx.waker().clone();
                    }
                    drop(st);
                    shared.cond.notify_all();
                    return Poll::Pending;
                }
                st.slots.remove(&id);
                this.id = None;
                return Poll::Ready(claimed);
            }
            Phase::TimedOut | Phase::Failed(_) => {}
        }
        let slot = st.slots.remove(&id);
        this.id = None;
        Poll::Ready(match slot.map(|s| s.phase) {
            Some(Phase::Failed(e)) => Err(e),
            _ => Ok(Waited::WouldBlock),
        })
    }
}

impl<W: Waitable> Drop for Wait<'_, W> {
    fn drop(&mut self) {
        let Some(id) = self.id else { return };
        let shared = &self.waiter.shared;
        let mut st = shared.lock();
        if let Some(slot) = st.slots.remove(&id)
            && matches!(slot.phase, Phase::Ready)
        {
            // Obtained for this call, which is gone: to the next caller, or back.
            shared.hand_over(&mut st, &slot.req);
        }
    }
}

/// The count of running waiter threads, which procom's tests read (feature `test-hooks`).
pub(crate) mod waiters {
    use std::sync::{Condvar, Mutex};

    static RUNNING: Mutex<usize> = Mutex::new(0);
    static CHANGED: Condvar = Condvar::new();

    fn lock() -> std::sync::MutexGuard<'static, usize> {
        RUNNING.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts one thread from its start to its end (the drop, on return or panic).
    pub(crate) struct Running(());

    impl Running {
        pub(crate) fn start() -> Running {
            *lock() += 1;
            Running(())
        }
    }

    impl Drop for Running {
        fn drop(&mut self) {
            let mut n = lock();
            *n = n.saturating_sub(1);
            CHANGED.notify_all();
        }
    }

    #[cfg(feature = "test-hooks")]
    pub(crate) fn running() -> usize {
        *lock()
    }

    #[cfg(feature = "test-hooks")]
    pub(crate) fn gone(timeout: std::time::Duration) -> bool {
        let (n, _) = CHANGED
            .wait_timeout_while(lock(), timeout, |n| *n > 0)
            .unwrap_or_else(|p| p.into_inner());
        *n == 0
    }
}

/// What a POSIX semaphore offers its waiter thread.
pub(crate) trait PosixSem: Send + Sync + 'static {
    fn wait(&self, timeout: Option<Duration>) -> io::Result<Waited>;
    fn post(&self) -> io::Result<()>;
}

impl PosixSem for procom_sys::sem::NamedSemaphore {
    fn wait(&self, timeout: Option<Duration>) -> io::Result<Waited> {
        procom_sys::sem::NamedSemaphore::wait(self, timeout)
    }
    fn post(&self) -> io::Result<()> {
        procom_sys::sem::NamedSemaphore::post(self)
    }
}

impl PosixSem for procom_sys::sem::OwnedUnnamedSemaphore {
    fn wait(&self, timeout: Option<Duration>) -> io::Result<Waited> {
        procom_sys::sem::OwnedUnnamedSemaphore::wait(self, timeout)
    }
    fn post(&self) -> io::Result<()> {
        procom_sys::sem::OwnedUnnamedSemaphore::post(self)
    }
}

/// A POSIX semaphore shared with the waiter thread: the thread takes the unit (P) and hands
/// it over, or posts it back.
pub(crate) struct Posix<S>(pub(crate) Arc<S>);

impl<S: PosixSem> Waitable for Posix<S> {
    type Req = ();

    fn try_take(&self, _: &()) -> io::Result<Waited> {
        self.0.wait(Some(Duration::ZERO))
    }

    fn block(&self, _: &(), timeout: Duration) -> io::Result<Waited> {
        self.0.wait(Some(timeout))
    }

    fn claim(&self, _: &()) -> io::Result<Waited> {
        Ok(Waited::Acquired) // the thread took it already
    }

    fn release(&self, _: &()) {
        // Fails only if peers posted the semaphore up to its maximum since the unit was taken
        // (EOVERFLOW): it is then full, and nobody is waiting on it.
        let _ = self.0.post();
    }
}

/// A System V set: the thread only learns when the operations could be applied.
pub(crate) struct Sysv(pub(crate) i32);

impl Waitable for Sysv {
    type Req = Vec<procom_sys::sem::SemOp>;

    fn try_take(&self, ops: &Self::Req) -> io::Result<Waited> {
        procom_sys::sem::semop(self.0, ops, Some(Duration::ZERO))
    }

    fn block(&self, ops: &Self::Req, timeout: Duration) -> io::Result<Waited> {
        removed_while_waiting(procom_sys::sem::semop(self.0, &probe(ops), Some(timeout)))
    }

    fn claim(&self, ops: &Self::Req) -> io::Result<Waited> {
        removed_while_waiting(self.try_take(ops))
    }

    fn release(&self, _: &Self::Req) {} // nothing was applied
}

/// A set that no longer exists once the call is waiting (`EINVAL`: the id names no set, the
/// operations having been checked) was removed while it waited, as `EIDRM` says when the
/// removal comes during the system call.
fn removed_while_waiting(r: io::Result<Waited>) -> io::Result<Waited> {
    match r {
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => Err(
            io::Error::from_raw_os_error(rustix::io::Errno::IDRM.raw_os_error()),
        ),
        r => r,
    }
}

/// `ops` followed by their inverse in reverse order, none with `SEM_UNDO`: one `semop` of it
/// waits exactly as long as `ops` would, then changes nothing. (The kernel applies a call's
/// operations in order, atomically: each inverse restores the value its operation found, so
/// none of them can block or overflow.)
fn probe(ops: &[procom_sys::sem::SemOp]) -> Vec<procom_sys::sem::SemOp> {
    let forward = ops
        .iter()
        .map(|o| procom_sys::sem::SemOp { undo: false, ..*o });
    let back = ops.iter().rev().map(|o| procom_sys::sem::SemOp {
        // -32768 can never be applied (a value is at most 32767), so its inverse is never
        // reached; i16::MAX stands in for the unrepresentable 32768.
        delta: o.delta.checked_neg().unwrap_or(i16::MAX),
        undo: false,
        ..*o
    });
    forward.chain(back).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use procom_sys::sem::SemOp;

    #[test]
    fn the_probe_undoes_what_it_does_in_reverse() {
        let ops = [
            SemOp {
                index: 0,
                delta: -2,
                undo: true,
            },
            SemOp {
                index: 1,
                delta: 0,
                undo: false,
            },
            SemOp {
                index: 2,
                delta: 3,
                undo: true,
            },
        ];
        let p = probe(&ops);
        let got: Vec<(u16, i16, bool)> = p.iter().map(|o| (o.index, o.delta, o.undo)).collect();
        assert_eq!(
            got,
            [
                (0, -2, false),
                (1, 0, false),
                (2, 3, false),
                (2, -3, false),
                (1, 0, false),
                (0, 2, false)
            ]
        );
        let min = probe(&[SemOp {
            index: 0,
            delta: i16::MIN,
            undo: false,
        }]);
        assert_eq!(min[1].delta, i16::MAX);
    }
}
