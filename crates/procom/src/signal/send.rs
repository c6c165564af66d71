//! Sending: `Target`, `send`, `send_group`, `send_to`, `probe`, `queue`, and `Process` (a
//! pidfd).

use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use super::Signal;
use super::names::invalid;
use crate::error::{Error, ErrorKind, ObjectKind};

fn send_error(target: &str, e: std::io::Error) -> Error {
    match e.raw_os_error() {
        Some(c) if c == rustix::io::Errno::SRCH.raw_os_error() => Error::new(ErrorKind::NotFound)
            .detail("no such process (it does not exist, or has exited)")
            .object_of(ObjectKind::Process, target),
        Some(c) if c == rustix::io::Errno::PERM.raw_os_error() => {
            Error::new(ErrorKind::PermissionDenied)
                .detail("it is not ours: it belongs to another user, and only root may signal it")
                .object_of(ObjectKind::Process, target)
        }
        _ => Error::os("signal it", e).object_of(ObjectKind::Process, target),
    }
}

fn check_pid(pid: i32) -> Result<(), Error> {
    if pid <= 0 {
        return Err(invalid(format!(
            "pid {pid} would reach a whole process group or every process (kill(2)); give a positive pid, or name the group with Target::group, Target::OWN_GROUP or Target::EVERYONE"
        )));
    }
    Ok(())
}

/// Who a signal goes to: one process, one process group, or — only when named as such — the
/// caller's own process group or every process the caller may signal.
///
/// kill(2) packs all four into one integer (a positive pid, `-pgid`, `0`, `-1`), and killpg(3)
/// turns group 1 into `kill(-1)`, every process: a computed number can broadcast by accident.
/// A `Target` cannot: [`Target::process`] takes only a positive pid, [`Target::group`] only a
/// group above 1, and the two that reach many processes are the constants
/// [`Target::OWN_GROUP`] and [`Target::EVERYONE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target(Reach);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    Process(i32),
    Group(i32),
    OwnGroup,
    Everyone,
}

impl Target {
    /// The caller's own process group (kill(2) with pid 0), the caller included.
    pub const OWN_GROUP: Target = Target(Reach::OwnGroup);
    /// Every process the caller may signal, except init and the caller itself (kill(2) with
    /// pid -1): as root, every process on the machine (in its PID namespace).
    pub const EVERYONE: Target = Target(Reach::Everyone);

    /// The one process `pid`, which must be positive.
    pub fn process(pid: i32) -> Result<Target, Error> {
        check_pid(pid)?;
        Ok(Target(Reach::Process(pid)))
    }

    /// Every member of process group `pgid`. Group 1 is refused: killpg(3) sends to group 1
    /// as `kill(-1)`, which reaches every process ([`Target::EVERYONE`] says that on purpose);
    /// 0 and negative numbers are refused too ([`Target::OWN_GROUP`] is the caller's group).
    pub fn group(pgid: i32) -> Result<Target, Error> {
        match pgid {
            2.. => Ok(Target(Reach::Group(pgid))),
            1 => Err(invalid(
                "process group 1 cannot be signalled as a group: kill(2) reads it as -1, every process the caller may signal; use Target::EVERYONE if that is what is meant",
            )),
            _ => Err(invalid(format!(
                "process group {pgid} does not exist: a group is named by its leader's positive pid (Target::OWN_GROUP is the caller's own)"
            ))),
        }
    }

    /// Whether this target reaches more than one process group: the caller's own group or
    /// every process. Callers that take a target from a person should ask for confirmation.
    pub fn is_broadcast(self) -> bool {
        matches!(self.0, Reach::OwnGroup | Reach::Everyone)
    }

    /// The pid argument of kill(2) for this target.
    fn kill_pid(self) -> i32 {
        match self.0 {
            Reach::Process(pid) => pid,
            Reach::Group(pgid) => -pgid,
            Reach::OwnGroup => 0,
            Reach::Everyone => -1,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Reach::Process(pid) => write!(f, "pid {pid}"),
            Reach::Group(pgid) => write!(f, "process group {pgid}"),
            Reach::OwnGroup => f.write_str("our process group"),
            Reach::Everyone => f.write_str("every process we may signal"),
        }
    }
}

/// Sends `sig` to process `pid` (which must be positive: a group or every process is
/// [`send_to`] with a [`Target`], so it is never an accident).
///
/// [`ErrorKind::NotFound`] if no such process exists, [`ErrorKind::PermissionDenied`] if it is
/// not ours (another user's, and we are not root).
///
/// # References
/// - [`kill(2)`](https://man7.org/linux/man-pages/man2/kill.2.html)
#[doc(alias = "kill")]
pub fn send(pid: i32, sig: Signal) -> Result<(), Error> {
    send_to(Target::process(pid)?, sig)
}

/// Sends `sig` to every process in group `pgid` (above 1: see [`Target::group`]).
///
/// # References
/// - [`killpg(3)`](https://man7.org/linux/man-pages/man3/killpg.3.html)
#[doc(alias = "killpg")]
pub fn send_group(pgid: i32, sig: Signal) -> Result<(), Error> {
    send_to(Target::group(pgid)?, sig)
}

/// Sends `sig` to `target`: one process, one group, the caller's group or every process.
///
/// # References
/// - [`kill(2)`](https://man7.org/linux/man-pages/man2/kill.2.html)
#[doc(alias = "kill")]
pub fn send_to(target: Target, sig: Signal) -> Result<(), Error> {
    procom_sys::signal::send(target.kill_pid(), sig.0)
        .map_err(|e| send_error(&target.to_string(), e))
}

/// Whether process `pid` exists and this process may signal it: kill(2) with signal 0, which
/// checks both and delivers nothing (`kill -0`). `Ok(())` if so; [`ErrorKind::NotFound`] if no
/// such process exists (a zombie not yet reaped still does); [`ErrorKind::PermissionDenied`] if
/// it exists but belongs to another user.
///
/// # References
/// - [`kill(2)`](https://man7.org/linux/man-pages/man2/kill.2.html)
#[doc(alias = "kill")]
pub fn probe(pid: i32) -> Result<(), Error> {
    let target = Target::process(pid)?;
    procom_sys::signal::send(target.kill_pid(), 0).map_err(|e| send_error(&target.to_string(), e))
}

/// Queues `sig` with `value` for process `pid` (`sigqueue`): real-time signals queue one per
/// send, in order, each with its value; standard ones still coalesce while pending.
///
/// # References
/// - [`sigqueue(3)`](https://man7.org/linux/man-pages/man3/sigqueue.3.html)
#[doc(alias = "sigqueue")]
pub fn queue(pid: i32, sig: Signal, value: i32) -> Result<(), Error> {
    check_pid(pid)?;
    procom_sys::signal::queue(pid, sig.0, value).map_err(|e| send_error(&format!("pid {pid}"), e))
}

/// A process held by a pidfd: signals sent through it can never reach another process that
/// later reuses the pid.
///
/// Open it while the process is known to be the one meant — for a child, any time before it
/// is reaped (`Child::wait`) — and from then on it means that process only.
#[derive(Debug)]
pub struct Process {
    pid: i32,
    fd: OwnedFd,
}

impl Process {
    /// Refers to process `pid` from now on.
    ///
    /// # References
    /// - [`pidfd_open(2)`](https://man7.org/linux/man-pages/man2/pidfd_open.2.html)
    #[doc(alias = "pidfd_open")]
    pub fn open(pid: i32) -> Result<Process, Error> {
        check_pid(pid)?;
        let p =
            rustix::process::Pid::from_raw(pid).ok_or_else(|| invalid("pid 0 is not a process"))?;
        let fd = rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty())
            .map_err(|e| send_error(&format!("pid {pid}"), e.into()))?;
        Ok(Process { pid, fd })
    }

    /// The pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Sends `sig`; [`ErrorKind::NotFound`] once the process has exited.
    ///
    /// # References
    /// - [`pidfd_send_signal(2)`](https://man7.org/linux/man-pages/man2/pidfd_send_signal.2.html)
    #[doc(alias = "pidfd_send_signal")]
    pub fn send(&self, sig: Signal) -> Result<(), Error> {
        procom_sys::signal::send_pidfd(self.fd.as_fd(), sig.0)
            .map_err(|e| send_error(&format!("pid {} (pidfd)", self.pid), e))
    }

    /// Waits until the process has exited, without blocking the thread (feature `tokio`; must
    /// run inside a tokio runtime with I/O enabled): the reactor wakes the task when the pidfd
    /// becomes readable. Works for any process, not only a child; it reaps nothing (a child
    /// is reaped by its parent's wait, [`crate::child::wait_async`]).
    ///
    /// Cancellation-safe: it only watches.
    #[cfg(feature = "tokio")]
    pub async fn exited(&self) -> Result<(), Error> {
        let object = format!("pid {} (pidfd)", self.pid);
        let dup = self.fd.try_clone().map_err(|e| {
            Error::os("duplicate its pidfd", e).object_of(ObjectKind::Process, &object)
        })?;
        let fd =
            procom_sys::async_fd::register(dup, tokio::io::Interest::READABLE).map_err(|e| {
                Error::os("register its pidfd with the tokio runtime", e)
                    .object_of(ObjectKind::Process, &object)
            })?;
        // A pidfd is readable exactly when its process has exited, and stays so.
        let _ready = fd.readable().await.map_err(|e| {
            Error::os("wait for it to exit", e).object_of(ObjectKind::Process, &object)
        })?;
        Ok(())
    }
}

impl AsFd for Process {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_that_reach_many_are_only_named_on_purpose() {
        for pid in [0, -1, -5, i32::MIN] {
            assert_eq!(
                Target::process(pid).unwrap_err().kind(),
                ErrorKind::InvalidInput
            );
        }
        for pgid in [1, 0, -1, i32::MIN] {
            assert_eq!(
                Target::group(pgid).unwrap_err().kind(),
                ErrorKind::InvalidInput
            );
        }
        let one = Target::group(1).unwrap_err().to_string();
        assert!(one.contains("every process"), "{one}");
        // killpg(1) is kill(-1): refused before any system call, so it reaches nobody.
        assert_eq!(
            send_group(1, Signal::CONT).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            send(-1, Signal::CONT).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        assert_eq!(Target::process(7).unwrap().kill_pid(), 7);
        assert_eq!(Target::group(7).unwrap().kill_pid(), -7);
        assert_eq!(Target::OWN_GROUP.kill_pid(), 0);
        assert_eq!(Target::EVERYONE.kill_pid(), -1);
        assert!(Target::EVERYONE.is_broadcast() && Target::OWN_GROUP.is_broadcast());
        assert!(!Target::group(7).unwrap().is_broadcast());
        // kill -0 of this very process: it exists and we may signal it.
        probe(std::process::id() as i32).unwrap();
    }

    #[test]
    fn broadcast_pids_are_refused_by_send() {
        for pid in [0, -1, -5] {
            assert_eq!(
                send(pid, Signal::TERM).unwrap_err().kind(),
                ErrorKind::InvalidInput
            );
            assert_eq!(
                send_group(pid, Signal::TERM).unwrap_err().kind(),
                ErrorKind::InvalidInput
            );
            assert_eq!(
                queue(pid, Signal::USR1, 1).unwrap_err().kind(),
                ErrorKind::InvalidInput
            );
            assert_eq!(
                Process::open(pid).unwrap_err().kind(),
                ErrorKind::InvalidInput
            );
        }
    }
}
