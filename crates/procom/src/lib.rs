//! procom: every Linux inter-process communication mechanism, real and fast, behind one safe
//! API.
//!
//! - [`Sender`] / [`Receiver`]: byte messages over any [`endpoint`] — `-`, `fifo:`,
//!   `mq:`, `msg:`, `shm:`, `unix:`, `unixgram:`, `tcp:`, `udp:` — with blocking, `try_`,
//!   `_timeout` and `_deadline` forms; [`typed`] for serde types; [`framing`] defines how
//!   messages travel over byte streams.
//! - One module per mechanism: [`pipe`] (anonymous pipes, children wired to them,
//!   pipelines), [`fifo`] (named pipes), [`mq`] and [`msg`] (POSIX and System V message
//!   queues), [`shm`] (shared memory) and [`sem`] (semaphores), [`signal`], [`socket`]; and
//!   [`child`] for waiting on a peer process with a deadline; [`stale`] for telling and
//!   removing what a dead process left behind.
//! - With the `tokio` feature, `AsyncSender` / `AsyncReceiver` (module `aio`): the same
//!   endpoints, async and cancellation safe, with no runtime thread ever blocked.
//!
//! ```
//! # fn main() -> Result<(), procom::Error> {
//! let dir = std::env::temp_dir().join(format!("procom-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! let ep = format!("fifo:{}/jobs", dir.display());
//! let mut rx = procom::Receiver::bind(&ep)?;        // creates the FIFO, removes it on drop
//! let writer = std::thread::spawn(move || -> Result<(), procom::Error> {
//!     let mut tx = procom::Sender::connect(&ep)?;   // waits for the reader, as a FIFO writer does
//!     tx.send(b"hello").map_err(|e| e.into_error())
//! });
//! assert_eq!(rx.recv()?, b"hello");
//! writer.join().unwrap()?;
//! drop(rx);
//! std::fs::remove_dir(&dir).unwrap();
//! # Ok(()) }
//! ```
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod access;
#[cfg(feature = "tokio")]
pub mod aio;
mod budget;
mod channel;
pub mod child;
mod cleanup;
pub mod endpoint;
mod ends;
pub mod error;
pub mod fifo;
mod flavor;
pub mod framing;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzz;
mod kind;
pub mod mq;
pub mod msg;
mod net;
pub mod pipe;
pub mod sem;
pub mod shm;
pub mod signal;
pub mod socket;
pub mod stale;
mod stream;
pub mod typed;
mod wait;

#[cfg(feature = "tokio")]
pub use aio::{AsyncReceiver, AsyncSender};
pub use budget::Budget;
pub use channel::{Options, Receiver, Sender, ToEndpoint};
pub use cleanup::Cleanup;
pub use endpoint::Endpoint;
pub use error::{Error, ErrorKind, ObjectKind, SendError};
pub use flavor::MessageMeta;
pub use framing::Framing;

/// Internal statistics and knobs of the shared-memory channel (`shm:`), for procom's own
/// tests (feature `test-hooks`, which only procom-testkit turns on). Not part of the API.
#[doc(hidden)]
#[cfg(feature = "test-hooks")]
pub mod test_hooks {
    use std::time::Duration;

    /// How many sleeps of a `shm:` sender or receiver in this process ended because the
    /// liveness period ran out, not because the peer woke the sleeper (or the caller's
    /// deadline passed). With a live peer that keeps sending or receiving, every one of them
    /// is a lost wake-up.
    pub fn liveness_ticks() -> u64 {
        crate::flavor::shm::liveness_ticks()
    }

    /// Sets how long a sleeper goes without checking its peer is alive (default 50 ms), for
    /// every `shm:` channel of this process. A test that sets it long makes a lost wake-up
    /// impossible to hide behind the periodic check.
    pub fn set_liveness_period(period: Duration) {
        crate::flavor::shm::set_liveness_period(period)
    }

    /// How many semaphore waiter threads (feature `tokio`) are running in this process.
    #[cfg(feature = "tokio")]
    pub fn sem_waiters() -> usize {
        crate::sem::waiters::running()
    }

    /// Waits at most `timeout` until no semaphore waiter thread is running in this process;
    /// whether none is.
    #[cfg(feature = "tokio")]
    pub fn sem_waiters_gone(timeout: Duration) -> bool {
        crate::sem::waiters::gone(timeout)
    }
}
