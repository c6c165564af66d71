//! Signals: the only asynchronous IPC mechanism.
//!
//! A signal can reach a process at any moment — from the keyboard (Ctrl+C is SIGINT, Ctrl+Z
//! SIGTSTP) or from software (`kill -9 PID`). For each signal a process takes the default
//! action, catches it, or ignores it; SIGKILL and SIGSTOP can be neither caught nor ignored,
//! so any process can always be stopped.
//!
//! - [`Signal`]: every Linux signal with the number and name `kill -l` shows and the C
//!   library's description, real-time ones included (`RTMIN+3`, `RTMAX-2`, numbered from this
//!   system's `SIGRTMIN`), parsed from `TERM`, `SIGTERM`, `term`, `15` or `RTMIN+3`.
//! - Sending: [`send`] (a pid), [`send_group`], [`queue`] (with a value, `sigqueue`), and
//!   [`Process`] (a pidfd: no race with pid reuse). Errors tell a process that does not exist
//!   ([`ErrorKind::NotFound`]) from one that is not ours ([`ErrorKind::PermissionDenied`]).
//! - Catching: [`Signals::catch`] delivers each signal as a [`Delivery`] (the signal, the
//!   sender's pid and uid, the queued value) through an iterator, with `wait`, `wait_timeout`
//!   and `try_wait` forms, and `AsyncSignals` as a tokio `Stream` (feature `tokio`). No user
//!   code runs in a signal handler; see [`Signals`] for how delivery works in multi-threaded
//!   programs.
//! - [`ignore`], [`restore_default`], [`disposition`], and [`block`] (hold signals pending in
//!   this thread).
//!
//! ```
//! use procom::signal::{self, Signal, Signals};
//! # fn main() -> Result<(), procom::Error> {
//! let usr1 = Signal::USR1;
//! let mut caught = Signals::catch([usr1])?;
//! signal::queue(std::process::id() as i32, usr1, 42)?; // to ourselves, with a value
//! let d = caught.wait_timeout(std::time::Duration::from_secs(10))?;
//! assert_eq!((d.signal, d.value), (usr1, Some(42)));
//! assert_eq!(d.sender_pid, std::process::id() as i32);
//! # Ok(()) }
//! ```
//!
//! # References
//! - [`signal(7)`](https://man7.org/linux/man-pages/man7/signal.7.html)
//! - [`kill(1)`](https://man7.org/linux/man-pages/man1/kill.1.html)

mod catch;
mod dispositions;
mod names;
mod send;

#[cfg(feature = "tokio")]
pub use catch::AsyncSignals;
pub use catch::{Delivery, Signals};
pub use dispositions::{BlockGuard, Disposition, block, disposition, ignore, restore_default};
pub use names::{Action, Signal};
pub use send::{Process, Target, probe, queue, send, send_group, send_to};

#[cfg(doc)]
use crate::error::ErrorKind;

/// Held by every unit test that changes this process's signal state.
#[cfg(test)]
static SIGNAL_STATE: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[cfg(test)]
fn lock() -> std::sync::MutexGuard<'static, ()> {
    SIGNAL_STATE.lock().unwrap_or_else(|p| p.into_inner())
}
