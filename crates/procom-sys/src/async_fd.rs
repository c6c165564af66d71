//! Registering a descriptor with the tokio reactor (feature `tokio`).
//!
//! tokio's `AsyncFd::register` is `unsafe` because a borrowed descriptor could be closed while
//! registered. An `OwnedFd` moved into the `AsyncFd` cannot be: that is the whole argument, so
//! the one `unsafe` call lives here and the rest of procom stays safe.

use std::io;
use std::os::fd::OwnedFd;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// Registers `fd` with the current tokio runtime for `interest`. Fails, rather than panicking
/// as tokio would, outside a runtime. Inside a runtime built without I/O (no `enable_io` or
/// `enable_all`) tokio itself panics, and tokio offers no way to ask first: every async call
/// of procom needs a runtime with I/O enabled.
pub fn register(fd: OwnedFd, interest: Interest) -> io::Result<AsyncFd<OwnedFd>> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(io::Error::other(
            "not inside a tokio runtime (with I/O enabled)",
        ));
    }
    // SAFETY: the AsyncFd owns `fd`: it stays open, refers to the same file description and
    // returns the same number from as_raw_fd until the AsyncFd is dropped or gives it back.
    unsafe { AsyncFd::register_with_interest(fd, interest) }.map_err(io::Error::from)
}
