//! Semaphores: an integer changed only by two atomic operations, P (wait) and V (post).
//!
//! - **P** ([`Semaphore::wait`]): subtract 1; if that would go below zero, block until it can.
//!   Used *before* touching the shared resource.
//! - **V** ([`Semaphore::post`]): add 1, waking a blocked process. Used *after*.
//!
//! Initial value 1 makes a mutex (at most one process inside; [`Semaphore::acquire`] returns a
//! guard that posts on drop); initial value 0 makes an ordering (B waits until A posts).
//!
//! ```
//! # fn main() -> Result<(), procom::Error> {
//! use procom::sem::Semaphore;
//! let name = format!("/procom-doc-sem-{}", std::process::id());
//! let mutex = Semaphore::create(&name, 1)?; // removed on drop
//! {
//!     let _inside = mutex.acquire()?; // P
//!     assert_eq!(mutex.value()?, 0);
//! } // V on drop
//! assert_eq!(mutex.value()?, 1);
//! # Ok(()) }
//! ```
//!
//! Three kinds:
//! - [`Semaphore`]: POSIX named (`sem_open`), shared by name with any program using the same
//!   name; created 0600 and exclusively, removed by its creator on drop unless kept.
//! - [`SharedSemaphore`]: POSIX unnamed and process-shared (`sem_init`), placed in a shared
//!   [`Mapping`](crate::shm::Mapping).
//! - [`SemSet`]: System V sets (`semget`/`semop`), several semaphores changed in one atomic
//!   operation, with `SEM_UNDO` so a holder that crashes has its operations undone.
//!
//! Every wait has a try and a timeout form; `EINTR` is retried against the original deadline.
//!
//! # Async (feature `tokio`)
//!
//! [`Semaphore`], [`OwnedSharedSemaphore`] and [`SemSet`] also wait asynchronously:
//! [`Semaphore::wait_async`](Semaphore#method.wait_async) and
//! [`Semaphore::acquire_async`](Semaphore#method.acquire_async) (the same [`SemGuard`] as
//! [`Semaphore::acquire`]),
//! [`OwnedSharedSemaphore::wait_async`](OwnedSharedSemaphore#method.wait_async),
//! [`SemSet::apply_async`](SemSet#method.apply_async), each with `_timeout` and `_deadline`
//! forms that fail with [`ErrorKind::Timeout`] as the blocking ones do (examples on each).
//! No runtime thread ever blocks, and nothing busy-polls.
//!
//! **How procom waits.** The kernel gives no descriptor for a semaphore, so the reactor cannot
//! be told to watch one. An async call first tries without waiting, on the task's own thread;
//! if the semaphore is at 0 it queues a request with its handle and returns `Pending`. Each
//! handle has at most one *waiter thread*, started by its first async call that has to wait
//! and ended when the handle is dropped; it blocks in the kernel (`sem_timedwait`,
//! `semtimedop`) for the oldest request and wakes that request's task through its `Waker` (so
//! the futures work on any executor, not only tokio). Calls on one handle asking the same are
//! served in the order they started; calls on one set asking different things (different
//! members, say) are waited for in turn, a slice of 100 ms each, so a younger call may wait up
//! to that long per older call that cannot complete: tasks that want to wait on one set's
//! members independently and at once open one handle each.
//!
//! - POSIX semaphores: the waiter thread takes the unit and hands it to the request.
//! - System V sets: the waiter thread waits until the operations *could* be applied, without
//!   applying them (the operations followed by their inverse, in one atomic `semtimedop`);
//!   the task then applies them without waiting, on its own thread, and waits again if
//!   someone else was faster. `SEM_UNDO` is per process, so the kernel undoes an async
//!   call's operations when the process dies, exactly as a blocking call's.
//!
//! **What it costs.** One thread per handle that has waited asynchronously (a small stack,
//! asleep in the kernel), and one extra thread wake-up per wait: the waiter thread wakes, then
//! wakes the task. The waiter thread's waits last at most 100 ms: a wait the caller abandoned,
//! or a handle that was dropped, is noticed at the end of that slice (the kernel's semaphore
//! waits can be interrupted only by a signal, which a library cannot own), so a thread may
//! outlive its handle by that much. A post ends a wait at once, whatever the slice.
//!
//! Measured on a shared 2-core virtual machine (AMD EPYC, Linux 6.18) while other builds
//! loaded it (load average about 20), with `cargo run --release -p procom --features tokio
//! --example sem_wakeup` (a round trip between two processes through two named semaphores;
//! only this side's wait changes): blocking round trip p50 4.8 µs, so one blocking wake-up is
//! about 2.4 µs; async round trip p50 5.4 µs in some runs and 11.4 µs in others (where the
//! scheduler puts the waiter thread decides), so one async wake-up is about 3 to 9 µs. Under
//! that load the async p99 ranged from 23 µs to a few milliseconds (blocking: 6 to 85 µs).
//!
//! **Cancellation.** Every async wait is cancellation-safe: dropping its future before it
//! completes takes nothing from the semaphore. If the waiter thread took a POSIX unit for a
//! call whose future is gone, the unit goes to the next call waiting on the same handle, or is
//! posted back at once: it is never kept. A System V call applies its operations only inside
//! the `poll` that returns `Ready`, so a dropped one applied nothing. Deadlines are kept by
//! the waiter thread; when several calls with deadlines wait on one handle at once, a later
//! call's shorter deadline may be noticed up to 100 ms late.
//!
//! # References
//! - [`sem_overview(7)`](https://man7.org/linux/man-pages/man7/sem_overview.7.html)
//! - [`semop(2)`](https://man7.org/linux/man-pages/man2/semop.2.html)

use procom_sys::sem::Waited;

use crate::error::{Error, ErrorKind};

/// The deadline forms of a POSIX semaphore's async P, and the wait they share, for the named
/// and the shared semaphore alike (both hold the semaphore in `self.sem` and its waiter thread
/// in `self.waiter`); the semaphore is named in errors by its `label` field, or by a fixed
/// label.
macro_rules! async_waits {
    (label) => {
        async_waits!(@ self, &self.label);
    };
    ($label:literal) => {
        async_waits!(@ self, $label);
    };
    (@ $self:ident, $label:expr) => {
        /// P without blocking the thread, waiting at most `timeout`: [`ErrorKind::Timeout`] if
        /// the value stayed 0. Cancellation-safe.
        #[cfg(feature = "tokio")]
        pub async fn wait_async_timeout(&$self, timeout: Duration) -> Result<(), Error> {
            $self.wait_async_until(Instant::now().checked_add(timeout))
                .await
        }

        /// P without blocking the thread, waiting until `deadline` at most:
        /// [`ErrorKind::Timeout`] if the value stayed 0. Cancellation-safe.
        #[cfg(feature = "tokio")]
        pub async fn wait_async_deadline(&$self, deadline: Instant) -> Result<(), Error> {
            $self.wait_async_until(Some(deadline)).await
        }

        #[cfg(feature = "tokio")]
        async fn wait_async_until(&$self, deadline: Option<Instant>) -> Result<(), Error> {
            let waiter = $self
                .waiter
                .get(|| super::waiter::Posix(Arc::clone(&$self.sem)));
            waited(waiter.wait((), deadline).await, ErrorKind::Timeout, $label)
        }
    };
}

mod named;
mod set;
mod shared;
#[cfg(feature = "tokio")]
mod waiter;
#[cfg(all(feature = "tokio", feature = "test-hooks"))]
pub(crate) use waiter::waiters;

pub use named::{SemGuard, Semaphore, remove};
pub use set::{Op, SemSet, SetStat, remove_set_id};
pub use shared::{OwnedSharedSemaphore, SHARED_SEMAPHORE_SIZE, SharedSemaphore};

fn waited(
    w: std::io::Result<Waited>,
    kind_when_blocked: ErrorKind,
    object: &str,
) -> Result<(), Error> {
    match w {
        Ok(Waited::Acquired) => Ok(()),
        Ok(Waited::WouldBlock) => Err(Error::new(kind_when_blocked)
            .detail(if kind_when_blocked == ErrorKind::Timeout {
                "its value stayed at 0 until the deadline"
            } else {
                "its value is 0, so waiting would block"
            })
            .object(object)),
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::IDRM.raw_os_error()) => {
            Err(Error::new(ErrorKind::PeerGone)
                .detail("was removed while waiting")
                .object(object))
        }
        Err(e) => Err(Error::os("wait on it", e).object(object)),
    }
}

/// The largest value of a POSIX semaphore (`SEM_VALUE_MAX`, `INT_MAX` on Linux).
pub const VALUE_MAX: u32 = i32::MAX as u32;

/// The largest value of a member of a System V set (`SEMVMX`).
pub const SET_VALUE_MAX: u16 = 32767;

/// Why a V failed: `EOVERFLOW` is a semaphore at its maximum, which is said as such.
fn post_error(e: std::io::Error) -> Error {
    if e.raw_os_error() == Some(rustix::io::Errno::OVERFLOW.raw_os_error()) {
        return Error::new(ErrorKind::LimitReached).detail(format!(
            "is at its maximum value ({VALUE_MAX}, SEM_VALUE_MAX), so it cannot be posted; nothing was added"
        ));
    }
    Error::os("post to it", e)
}
