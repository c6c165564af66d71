//! POSIX message queues (`mq_open` and friends), which rustix does not wrap. On Linux the
//! queue descriptor is a file descriptor, returned as an `OwnedFd` so it can be polled.
//!
//! # References
//! - [`mq_overview(7)`](https://man7.org/linux/man-pages/man7/mq_overview.7.html)
//! - [`mq_open(3)`](https://man7.org/linux/man-pages/man3/mq_open.3.html)
//! - [`mq_send(3)`](https://man7.org/linux/man-pages/man3/mq_send.3.html)
//! - [`mq_receive(3)`](https://man7.org/linux/man-pages/man3/mq_receive.3.html)

use std::ffi::CString;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::Instant;

use crate::cvt;

/// Priorities run from 0 to `PRIO_MAX - 1` (Linux's `MQ_PRIO_MAX`, fixed in the kernel).
pub const PRIO_MAX: u32 = 32768;

/// A queue's attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MqAttr {
    /// Whether the descriptor is non-blocking (`O_NONBLOCK`).
    pub nonblocking: bool,
    /// Maximum number of messages.
    pub maxmsg: i64,
    /// Maximum message size in bytes.
    pub msgsize: i64,
    /// Messages in the queue now.
    pub curmsgs: i64,
}

fn cname(name: &str) -> io::Result<CString> {
    CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name contains a NUL byte"))
}

/// Creates the queue `name` exclusively (`O_CREAT | O_EXCL`), open for reading and writing,
/// close-on-exec, with room for `maxmsg` messages of at most `msgsize` bytes. `mode` passes
/// through the umask, as for `open`.
///
/// # References
/// - [`mq_open(3)`](https://man7.org/linux/man-pages/man3/mq_open.3.html)
#[doc(alias = "mq_open")]
pub fn create(name: &str, maxmsg: i64, msgsize: i64, mode: u32) -> io::Result<OwnedFd> {
    let c = cname(name)?;
    // SAFETY: all-zero is a valid mq_attr; the fields mq_open reads are set below.
    let mut attr: libc::mq_attr = unsafe { std::mem::zeroed() };
    attr.mq_maxmsg = maxmsg;
    attr.mq_msgsize = msgsize;
    let flags = libc::O_CREAT | libc::O_EXCL | libc::O_RDWR | libc::O_CLOEXEC;
    // SAFETY: valid C string; with O_CREAT, mq_open reads the mode and the attr pointer, both
    // valid for the call.
    let fd = unsafe {
        libc::mq_open(
            c.as_ptr(),
            flags,
            mode as libc::mode_t,
            &mut attr as *mut libc::mq_attr,
        )
    };
    // SAFETY: on success mq_open returns a fresh descriptor owned by no one else.
    cvt(fd).map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens the existing queue `name` for receiving (`read`), sending (`write`) or both,
/// close-on-exec. The queue's mode is checked now, against the access asked for.
///
/// # References
/// - [`mq_open(3)`](https://man7.org/linux/man-pages/man3/mq_open.3.html)
#[doc(alias = "mq_open")]
pub fn open(name: &str, read: bool, write: bool) -> io::Result<OwnedFd> {
    let c = cname(name)?;
    let access = match (read, write) {
        (true, true) => libc::O_RDWR,
        (false, true) => libc::O_WRONLY,
        _ => libc::O_RDONLY,
    };
    // SAFETY: valid C string; without O_CREAT no further arguments are read.
    let fd = unsafe { libc::mq_open(c.as_ptr(), access | libc::O_CLOEXEC) };
    // SAFETY: on success mq_open returns a fresh descriptor owned by no one else.
    cvt(fd).map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Removes the name `name`. Processes that have the queue open keep using it; the queue goes
/// when the last descriptor is closed.
///
/// # References
/// - [`mq_unlink(3)`](https://man7.org/linux/man-pages/man3/mq_unlink.3.html)
#[doc(alias = "mq_unlink")]
pub fn unlink(name: &str) -> io::Result<()> {
    let c = cname(name)?;
    // SAFETY: valid C string.
    cvt(unsafe { libc::mq_unlink(c.as_ptr()) }).map(drop)
}

/// The queue's attributes: capacity, message size, messages waiting, and whether this
/// descriptor is non-blocking.
///
/// # References
/// - [`mq_getattr(3)`](https://man7.org/linux/man-pages/man3/mq_getattr.3.html)
#[doc(alias = "mq_getattr")]
pub fn getattr(fd: BorrowedFd<'_>) -> io::Result<MqAttr> {
    let mut a = MaybeUninit::<libc::mq_attr>::uninit();
    // SAFETY: `a` is writable storage for one mq_attr.
    cvt(unsafe { libc::mq_getattr(fd.as_raw_fd(), a.as_mut_ptr()) })?;
    // SAFETY: mq_getattr succeeded and filled it in.
    let a = unsafe { a.assume_init() };
    Ok(MqAttr {
        nonblocking: a.mq_flags & libc::O_NONBLOCK as i64 != 0,
        maxmsg: a.mq_maxmsg,
        msgsize: a.mq_msgsize,
        curmsgs: a.mq_curmsgs,
    })
}

/// Makes the descriptor non-blocking (or blocking again): a send to a full queue or a
/// receive from an empty one then fails at once with `EAGAIN`.
///
/// # References
/// - [`mq_setattr(3)`](https://man7.org/linux/man-pages/man3/mq_setattr.3.html)
#[doc(alias = "mq_setattr")]
pub fn set_nonblocking(fd: BorrowedFd<'_>, nonblocking: bool) -> io::Result<()> {
    // SAFETY: all-zero is a valid mq_attr; only mq_flags is read by mq_setattr.
    let mut a: libc::mq_attr = unsafe { std::mem::zeroed() };
    a.mq_flags = if nonblocking {
        libc::O_NONBLOCK as i64
    } else {
        0
    };
    // SAFETY: `a` is a valid mq_attr; a null old-attributes pointer is allowed.
    cvt(unsafe { libc::mq_setattr(fd.as_raw_fd(), &a, std::ptr::null_mut()) }).map(drop)
}

/// The outcome of an operation that may give up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome<T> {
    /// It happened.
    Done(T),
    /// The descriptor is non-blocking and the queue was full (send) or empty (receive).
    WouldBlock,
    /// The deadline passed with the queue still full (send) or empty (receive). A deadline
    /// already past tries once, without waiting.
    TimedOut,
}

/// CLOCK_REALTIME time at `deadline` (which the mq calls want), from a monotonic Instant.
fn realtime_at(deadline: Instant) -> libc::timespec {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
    let left = deadline.saturating_duration_since(Instant::now());
    let mut sec = now
        .tv_sec
        .saturating_add(left.as_secs().min(i64::MAX as u64 / 4) as i64);
    let mut nsec = now.tv_nsec + i64::from(left.subsec_nanos());
    if nsec >= 1_000_000_000 {
        sec = sec.saturating_add(1);
        nsec -= 1_000_000_000;
    }
    libc::timespec {
        tv_sec: sec,
        tv_nsec: nsec,
    }
}

/// Runs `op` (a C call returning -1 and errno on failure), retrying on EINTR against the same
/// deadline, which is converted to the realtime clock afresh on each try.
fn retry<T>(
    deadline: Option<Instant>,
    mut op: impl FnMut(Option<&libc::timespec>) -> isize,
    done: impl Fn(isize) -> T,
) -> io::Result<Outcome<T>> {
    loop {
        let ts = deadline.map(realtime_at);
        let rc = op(ts.as_ref());
        if rc >= 0 {
            return Ok(Outcome::Done(done(rc)));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::ETIMEDOUT) => return Ok(Outcome::TimedOut),
            Some(libc::EAGAIN) => return Ok(Outcome::WouldBlock),
            _ => return Err(e),
        }
    }
}

/// Sends `msg` with priority `prio` (below [`PRIO_MAX`]), waiting for room until `deadline`
/// (forever with `None`; an instant already past sends only if there is room now).
///
/// # References
/// - [`mq_send(3)`](https://man7.org/linux/man-pages/man3/mq_send.3.html)
#[doc(alias = "mq_send")]
#[doc(alias = "mq_timedsend")]
pub fn send(
    fd: BorrowedFd<'_>,
    msg: &[u8],
    prio: u32,
    deadline: Option<Instant>,
) -> io::Result<Outcome<()>> {
    retry(
        deadline,
        |ts| {
            // SAFETY: `msg` is valid for its length; `ts` is a valid timespec or absent.
            (unsafe {
                match ts {
                    Some(t) => {
                        libc::mq_timedsend(fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), prio, t)
                    }
                    None => libc::mq_send(fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), prio),
                }
            }) as isize
        },
        |_| (),
    )
}

/// Receives the oldest message of the highest priority into `buf` (which must hold the queue's
/// message size, or the call fails with `EMSGSIZE` and the message stays), waiting until
/// `deadline` as [`send`] does. Returns its length and priority.
///
/// # References
/// - [`mq_receive(3)`](https://man7.org/linux/man-pages/man3/mq_receive.3.html)
#[doc(alias = "mq_receive")]
#[doc(alias = "mq_timedreceive")]
pub fn receive(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    deadline: Option<Instant>,
) -> io::Result<Outcome<(usize, u32)>> {
    let mut prio = 0u32;
    let r = retry(
        deadline,
        |ts| {
            // SAFETY: `buf` is writable for its length; `prio` and `ts` are valid or absent.
            unsafe {
                match ts {
                    Some(t) => libc::mq_timedreceive(
                        fd.as_raw_fd(),
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                        &mut prio,
                        t,
                    ),
                    None => libc::mq_receive(
                        fd.as_raw_fd(),
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                        &mut prio,
                    ),
                }
            }
        },
        |n| n as usize,
    )?;
    Ok(match r {
        Outcome::Done(n) => Outcome::Done((n, prio)),
        Outcome::WouldBlock => Outcome::WouldBlock,
        Outcome::TimedOut => Outcome::TimedOut,
    })
}

/// A limit under `/proc/sys/fs/mqueue` (`msg_max`, `msgsize_max`, `msg_default`,
/// `msgsize_default`, `queues_max`), or `None` where the file is missing or unreadable.
///
/// # References
/// - [`mq_overview(7)`](https://man7.org/linux/man-pages/man7/mq_overview.7.html), "/proc
///   interfaces"
pub fn limit(name: &str) -> Option<i64> {
    std::fs::read_to_string(format!("/proc/sys/fs/mqueue/{name}"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::time::Duration;

    fn name(tag: &str) -> String {
        format!("/procom-sys-mq-{tag}-{}", std::process::id())
    }

    #[test]
    fn send_receive_priorities_and_outcomes() {
        let n = name("basic");
        let fd = create(&n, 2, 16, 0o600).expect("create");
        unlink(&n).expect("unlink"); // the descriptor keeps the queue
        let fd = fd.as_fd();
        let mut buf = [0u8; 16];
        let past = Some(Instant::now());
        assert_eq!(receive(fd, &mut buf, past).unwrap(), Outcome::TimedOut);
        send(fd, b"low", 1, None).unwrap();
        send(fd, b"high", 9, None).unwrap();
        assert_eq!(send(fd, b"x", 0, past).unwrap(), Outcome::TimedOut);
        let a = getattr(fd).unwrap();
        assert_eq!(
            (a.maxmsg, a.msgsize, a.curmsgs, a.nonblocking),
            (2, 16, 2, false)
        );
        assert_eq!(receive(fd, &mut buf, None).unwrap(), Outcome::Done((4, 9)));
        assert_eq!(&buf[..4], b"high");
        set_nonblocking(fd, true).unwrap();
        assert!(getattr(fd).unwrap().nonblocking);
        assert_eq!(receive(fd, &mut buf, None).unwrap(), Outcome::Done((3, 1)));
        assert_eq!(receive(fd, &mut buf, None).unwrap(), Outcome::WouldBlock);
        let later = Some(Instant::now() + Duration::from_millis(1));
        assert_eq!(receive(fd, &mut buf, later).unwrap(), Outcome::WouldBlock);
        // A buffer smaller than the message size is refused by the kernel.
        let e = receive(fd, &mut [0u8; 4], None).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EMSGSIZE));
        let e = send(fd, b"p", PRIO_MAX, None).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
    }

    #[test]
    fn names_are_checked_by_the_kernel() {
        assert!(create("no\0nul", 1, 1, 0o600).is_err());
        let e = open("/procom-sys-mq-missing", true, false).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
    }
}
