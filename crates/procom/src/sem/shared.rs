//! POSIX unnamed semaphores in a shared mapping (`sem_init` with `pshared`):
//! `SharedSemaphore` borrows its mapping, `OwnedSharedSemaphore` shares it (and waits
//! asynchronously too).

use std::sync::Arc;
use std::time::{Duration, Instant};

use procom_sys::sem::{OwnedUnnamedSemaphore, UnnamedSemaphore};

use super::{post_error, waited};
use crate::error::{Error, ErrorKind};
use crate::shm::Mapping;

/// An unnamed process-shared semaphore living in a shared mapping.
#[derive(Debug)]
pub struct SharedSemaphore<'m> {
    sem: UnnamedSemaphore<'m>,
}

/// Bytes a [`SharedSemaphore`] occupies in a mapping, and its alignment.
pub const SHARED_SEMAPHORE_SIZE: usize = procom_sys::sem::SEM_T_SIZE;

/// The blocking P and V of an unnamed semaphore, the same for the borrowing and the owning
/// handle (both hold the semaphore in `self.sem`).
macro_rules! blocking_ops {
    () => {
        /// P.
        #[doc(alias = "P")]
        pub fn wait(&self) -> Result<(), Error> {
            waited(self.sem.wait(None), ErrorKind::Timeout, "shared semaphore")
        }

        /// P without waiting.
        pub fn try_wait(&self) -> Result<(), Error> {
            waited(
                self.sem.wait(Some(Duration::ZERO)),
                ErrorKind::Empty,
                "shared semaphore",
            )
        }

        /// P waiting at most `timeout`.
        pub fn wait_timeout(&self, timeout: Duration) -> Result<(), Error> {
            waited(
                self.sem.wait(Some(timeout)),
                ErrorKind::Timeout,
                "shared semaphore",
            )
        }

        /// P waiting until `deadline` at most.
        pub fn wait_deadline(&self, deadline: Instant) -> Result<(), Error> {
            self.wait_timeout(deadline.saturating_duration_since(Instant::now()))
        }

        /// V.
        #[doc(alias = "V")]
        pub fn post(&self) -> Result<(), Error> {
            self.sem
                .post()
                .map_err(|e| post_error(e).object("shared semaphore"))
        }

        /// The current value.
        pub fn value(&self) -> Result<i32, Error> {
            self.sem
                .value()
                .map_err(|e| Error::os("read a shared semaphore", e))
        }
    };
}

impl<'m> SharedSemaphore<'m> {
    /// Initialises a semaphore with `value` at `offset` of `mapping` (once, by one process).
    #[doc(alias = "sem_init")]
    pub fn init(
        mapping: &'m Mapping,
        offset: usize,
        value: u32,
    ) -> Result<SharedSemaphore<'m>, Error> {
        UnnamedSemaphore::init(mapping, offset, value)
            .map(|sem| SharedSemaphore { sem })
            .map_err(|e| Error::os("initialise a shared semaphore", e))
    }

    /// Uses the semaphore another process initialised at `offset`.
    pub fn existing(mapping: &'m Mapping, offset: usize) -> Result<SharedSemaphore<'m>, Error> {
        UnnamedSemaphore::existing(mapping, offset)
            .map(|sem| SharedSemaphore { sem })
            .map_err(|e| Error::os("use a shared semaphore", e))
    }

    blocking_ops!();
}

/// An unnamed process-shared semaphore in a mapping it shares ownership of (an
/// `Arc<Mapping>`): the same semaphore as [`SharedSemaphore`], with the async waits
/// (feature `tokio`).
///
/// The async waits hand the semaphore to a waiter thread (see the [module docs](super)) that
/// may outlive a borrow, so this form keeps the mapping alive itself: it stays mapped until
/// this handle and its waiter thread are gone.
#[derive(Debug)]
pub struct OwnedSharedSemaphore {
    sem: Arc<OwnedUnnamedSemaphore>,
    #[cfg(feature = "tokio")]
    waiter: super::waiter::Lazy<super::waiter::Posix<OwnedUnnamedSemaphore>>,
}

impl OwnedSharedSemaphore {
    fn new(sem: OwnedUnnamedSemaphore) -> OwnedSharedSemaphore {
        OwnedSharedSemaphore {
            sem: Arc::new(sem),
            #[cfg(feature = "tokio")]
            waiter: super::waiter::Lazy::new(),
        }
    }

    /// Initialises a semaphore with `value` at `offset` of `mapping` (once, by one process).
    #[doc(alias = "sem_init")]
    pub fn init(
        mapping: Arc<Mapping>,
        offset: usize,
        value: u32,
    ) -> Result<OwnedSharedSemaphore, Error> {
        OwnedUnnamedSemaphore::init(mapping, offset, value)
            .map(OwnedSharedSemaphore::new)
            .map_err(|e| Error::os("initialise a shared semaphore", e))
    }

    /// Uses the semaphore another process initialised at `offset`.
    pub fn existing(mapping: Arc<Mapping>, offset: usize) -> Result<OwnedSharedSemaphore, Error> {
        OwnedUnnamedSemaphore::existing(mapping, offset)
            .map(OwnedSharedSemaphore::new)
            .map_err(|e| Error::os("use a shared semaphore", e))
    }

    /// The mapping the semaphore lies in.
    pub fn mapping(&self) -> &Arc<Mapping> {
        self.sem.mapping()
    }

    /// P without blocking the thread (feature `tokio`; see the [module docs](super) for how).
    ///
    /// Cancellation-safe: if the future is dropped before it completes, nothing was taken.
    ///
    /// ```
    /// # fn main() -> Result<(), procom::Error> {
    /// # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// # rt.block_on(async {
    /// use std::sync::Arc;
    /// use procom::sem::OwnedSharedSemaphore;
    /// use procom::shm::Segment;
    /// let seg = Segment::memfd("doc", 4096, true)?; // pass seg.fd() to a child
    /// let sem = OwnedSharedSemaphore::init(Arc::new(seg.map()?), 0, 0)?;
    /// sem.post()?; // a peer's V
    /// sem.wait_async().await?;
    /// assert_eq!(sem.value()?, 0);
    /// # Ok(()) })
    /// # }
    /// ```
    #[cfg(feature = "tokio")]
    pub async fn wait_async(&self) -> Result<(), Error> {
        self.wait_async_until(None).await
    }

    async_waits!("shared semaphore");

    blocking_ops!();
}
