//! Waiting for a child process with a deadline.
//!
//! `std::process::Child` can wait forever or not at all; IPC code needs the middle: wait until a
//! peer exits or a deadline passes. This waits on a pidfd (readable when the process exits), so
//! it neither polls in a loop nor races with pid reuse.
//!
//! ```
//! # fn main() -> Result<(), procom::Error> {
//! use std::time::Duration;
//! let mut child = std::process::Command::new("sleep").arg("5").spawn().unwrap();
//! assert!(procom::child::wait_timeout(&mut child, Duration::from_millis(10))?.is_none());
//! child.kill().unwrap();
//! let status = procom::child::wait_timeout(&mut child, Duration::from_secs(5))?;
//! assert!(status.is_some_and(|s| !s.success()));
//! # Ok(()) }
//! ```
//!
//! With the `tokio` feature, `wait_async` waits without blocking the runtime: the pidfd is
//! registered with the reactor, which wakes the task when the child exits. For a deadline,
//! wrap it in `tokio::time::timeout`: it is cancellation-safe.
//!
//! # References
//! - [`pidfd_open(2)`](https://man7.org/linux/man-pages/man2/pidfd_open.2.html)

use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};

use crate::error::Error;

/// Waits at most `timeout` for `child` to exit: `Some(status)` if it did (and was reaped),
/// `None` if it is still running. A timeout too long to represent waits as long as it takes.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Result<Option<ExitStatus>, Error> {
    wait_until(child, Instant::now().checked_add(timeout))
}

/// Waits until `deadline` at most for `child` to exit: `Some(status)` if it did (and was
/// reaped), `None` if it is still running.
pub fn wait_deadline(child: &mut Child, deadline: Instant) -> Result<Option<ExitStatus>, Error> {
    wait_until(child, Some(deadline))
}

fn wait_until(child: &mut Child, deadline: Option<Instant>) -> Result<Option<ExitStatus>, Error> {
    let object = format!("child {}", child.id());
    let err = |e: std::io::Error| Error::os("wait for it", e).object(&object);
    let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) else {
        return child.try_wait().map_err(err);
    };
    let pidfd = match rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) {
        Ok(fd) => fd,
        Err(_) => return child.try_wait().map_err(err), // already reaped
    };
    loop {
        if let Some(status) = child.try_wait().map_err(err)? {
            return Ok(Some(status));
        }
        let left = match deadline {
            Some(d) => d.saturating_duration_since(Instant::now()),
            None => Duration::from_secs(3600),
        };
        if left.is_zero() {
            return Ok(None);
        }
        let ts = Timespec {
            tv_sec: left.as_secs() as i64,
            tv_nsec: i64::from(left.subsec_nanos()),
        };
        let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
        match rustix::event::poll(&mut fds, Some(&ts)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(err(e.into())),
        }
    }
}

/// Waits for `child` to exit without blocking the thread (feature `tokio`; must run inside a
/// tokio runtime with I/O enabled), and reaps it: its exit status, as
/// [`std::process::Child::wait`] returns it. The task is woken by the reactor when the
/// child's pidfd becomes readable (when it exits); nothing polls.
///
/// Cancellation-safe: a future dropped before it completes reaped nothing, so the child stays
/// reapable by a later wait of any kind.
///
/// ```
/// # fn main() -> Result<(), procom::Error> {
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_io().build().unwrap();
/// # rt.block_on(async {
/// let mut child = std::process::Command::new("sh").args(["-c", "exit 3"]).spawn().unwrap();
/// let status = procom::child::wait_async(&mut child).await?;
/// assert_eq!(status.code(), Some(3));
/// # Ok(()) })
/// # }
/// ```
#[cfg(feature = "tokio")]
pub async fn wait_async(child: &mut Child) -> Result<ExitStatus, Error> {
    let object = format!("child {}", child.id());
    let err = |e: std::io::Error| Error::os("wait for it", e).object(&object);
    if let Some(status) = child.try_wait().map_err(err)? {
        return Ok(status);
    }
    let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) else {
        return Err(err(std::io::Error::other("it has no valid pid")));
    };
    let pidfd = match rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) {
        Ok(fd) => fd,
        // Reaped since the try_wait above: std returns the status it kept.
        Err(rustix::io::Errno::SRCH) => return child.wait().map_err(err),
        Err(e) => return Err(err(e.into())),
    };
    let fd = procom_sys::async_fd::register(pidfd, tokio::io::Interest::READABLE)
        .map_err(|e| Error::os("register its pidfd with the tokio runtime", e).object(&object))?;
    loop {
        // A pidfd becomes readable once the process has exited and can be reaped, and stays
        // so: try_wait (WNOHANG) then reaps it without blocking. Were it ever not yet
        // reapable, the readiness is kept (the kernel would not signal it again) and the
        // task yields before it looks again.
        let _ready = fd.readable().await.map_err(err)?;
        if let Some(status) = child.try_wait().map_err(err)? {
            return Ok(status);
        }
        tokio::task::yield_now().await;
    }
}
