//! Layer 0 of procom: the only crate that calls C directly.
//!
//! Everything rustix covers comes from rustix; this crate wraps, thinly and safely, the few
//! calls it does not, and holds every `unsafe` operation of procom: the signal-mask dance that
//! keeps a write to a dead pipe from killing the process ([`sigpipe`]), shared-memory mappings
//! that are never exposed as slices and survive truncation by a peer ([`mapping`]), POSIX
//! and System V semaphores ([`sem`]), POSIX and System V message queues ([`mq`], [`msg`]), and
//! the peer credentials of a Unix socket ([`peercred`]), which rustix reads into a type that
//! cannot hold the pid 0 the kernel may report.
//! Byte locks held by an open file, not a process ([`ofd_lock`]), which rustix does not take.
//! Group names ([`ids`]). Zeroed buffers whose allocation may fail ([`zeroed`]). Large blocks
//! the C allocator gives back to the system when freed ([`alloc`]).
//! Signals ([`signal`]): sending by pid, group, `sigqueue` or pidfd, and catching through a
//! handler that only writes a record to a pipe.
//! Every function returns `io::Result` and never panics.
//!
//! Every `unsafe` block here carries a `// SAFETY:` comment; the lint
//! `clippy::undocumented_unsafe_blocks` enforces it.

#![warn(missing_docs)]

pub mod alloc;
#[cfg(feature = "tokio")]
pub mod async_fd;
pub mod ids;
pub mod mapping;
pub mod mq;
pub mod msg;
pub mod ofd_lock;
pub mod peercred;
pub mod sem;
pub mod signal;
pub mod sigpipe;
pub mod zeroed;

use std::io;

/// Turns a C return code into `io::Result`: `-1` becomes the thread's `errno`.
pub(crate) fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Turns a pthread-style return code (0 or an error number) into `io::Result`.
pub(crate) fn cvt_pthread(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}
