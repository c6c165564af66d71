//! POSIX message queues: a list of messages kept in the kernel, each with a priority.
//!
//! A queue holds separate messages (boundaries are kept), each message has a
//! maximum size and the queue a maximum count, a message read is removed, and every send and
//! receive copies between user and kernel space. The highest priority (0 to
//! [`PRIORITY_MAX`]) comes out first; equal priorities in the order sent. Limits come from
//! the running kernel (`/proc/sys/fs/mqueue`, see [`limits`]); a request they refuse is an
//! error naming the limit and the sysctl or rlimit that raises it.
//!
//! ```
//! # fn main() -> Result<(), procom::Error> {
//! let name = format!("/procom-doc-mq-{}", std::process::id());
//! let q = procom::mq::Queue::create(&name, Some(4), Some(64))?; // removed on drop
//! q.send(b"routine", 1)?;
//! q.send(b"urgent", 9)?;
//! assert_eq!(q.recv()?, (b"urgent".to_vec(), 9));
//! assert_eq!(q.attributes()?.count, 1);
//! # Ok(()) }
//! ```
//!
//! **Lifetime.** A queue lives in the kernel until it is removed (or the machine reboots), not
//! as long as a process. [`Queue::create`] returns the owner, which removes the name when
//! dropped, as every procom creator does, so a test or a crashed tool does not litter the
//! kernel by default; call [`Queue::keep`] for the kernel lifetime of a classic queue (a
//! process creates and fills a queue, exits, and another reads it later — `procom mq create`
//! does this). [`Queue::open`] never removes anything, and [`remove`] is always available.
//!
//! **Removal under a waiting process.** POSIX lets processes that have a queue open go on
//! using it after its name is removed, but no other process can open it any more. procom
//! treats such a queue as finished: a receiver drains what is left, then gets
//! [`ErrorKind::PeerGone`] instead of waiting forever, and a sender waiting for room in it
//! gets `PeerGone` too. A blocking call notices within [`REMOVAL_CHECK`].
//!
//! **As a channel** (`mq:/NAME` with [`Sender`](crate::Sender) and
//! [`Receiver`](crate::Receiver)): `bind` creates and owns the queue (`?capacity=` and
//! `?msgsize=` apply), `connect` opens an existing one. A sender gives every message the
//! priority its endpoint names (`mq:/NAME?priority=P`, 0 by default); a receiver takes
//! the highest priority first and drops the priority. Use [`Queue`] to see priorities.
//!
//! # References
//! - [`mq_overview(7)`](https://man7.org/linux/man-pages/man7/mq_overview.7.html)

use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use procom_sys::mq::{self as sys, Outcome};
use rustix::io::Errno;

use crate::error::{Error, ErrorKind, ObjectKind};
use crate::stream::deadline_after;
use crate::wait::Wait;

/// The highest message priority (Linux's `MQ_PRIO_MAX - 1`).
pub const PRIORITY_MAX: u32 = sys::PRIO_MAX - 1;

/// The mode queues are created with unless another is asked for.
pub const DEFAULT_MODE: u32 = 0o600;

/// How soon a process waiting on a queue notices that the queue was removed.
pub const REMOVAL_CHECK: Duration = Duration::from_millis(100);

/// The kernel's limits for POSIX queues, read now from `/proc/sys/fs/mqueue`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest capacity an unprivileged process may ask for (`fs.mqueue.msg_max`).
    pub msg_max: i64,
    /// Largest message size an unprivileged process may ask for (`fs.mqueue.msgsize_max`).
    pub msgsize_max: i64,
    /// Capacity when none is given (`fs.mqueue.msg_default`).
    pub msg_default: i64,
    /// Message size when none is given (`fs.mqueue.msgsize_default`).
    pub msgsize_default: i64,
    /// Queues allowed system-wide (`fs.mqueue.queues_max`).
    pub queues_max: i64,
}

/// Reads the limits of the running kernel (Linux's documented defaults where a file cannot
/// be read).
pub fn limits() -> Limits {
    Limits {
        msg_max: sys::limit("msg_max").unwrap_or(10),
        msgsize_max: sys::limit("msgsize_max").unwrap_or(8192),
        msg_default: sys::limit("msg_default").unwrap_or(10),
        msgsize_default: sys::limit("msgsize_default").unwrap_or(8192),
        queues_max: sys::limit("queues_max").unwrap_or(256),
    }
}

/// The memory this user's queues may hold together (`RLIMIT_MSGQUEUE`), if limited.
pub fn rlimit_msgqueue() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Msgqueue).current
}

/// A queue's attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attributes {
    /// Messages waiting now.
    pub count: u64,
    /// Maximum number of messages.
    pub max_messages: u64,
    /// Maximum message size in bytes.
    pub msgsize: u64,
    /// Whether this descriptor is in non-blocking mode.
    pub nonblocking: bool,
}

/// An open POSIX message queue. Its descriptor ([`AsFd`]) can be polled: readable when a
/// message is waiting, writable when there is room.
pub struct Queue {
    fd: OwnedFd,
    name: String,
    label: String,
    msgsize: usize,
    owner: bool,
    /// Receive buffer of `msgsize` bytes, reused between receives.
    scratch: Mutex<Vec<u8>>,
}

impl fmt::Debug for Queue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("name", &self.name)
            .field("fd", &self.fd)
            .field("msgsize", &self.msgsize)
            .field("owner", &self.owner)
            .finish()
    }
}

/// Checks a queue name: `/` then 1 to 255 bytes without `/` or NUL, not `.` or `..`.
fn check_name(name: &str) -> Result<(), Error> {
    crate::shm::check_name(name, "message queue")
        .map_err(|e| e.object_of(ObjectKind::PosixQueue, format!("mq:{name}")))
}

fn is(e: &std::io::Error, errno: Errno) -> bool {
    e.raw_os_error() == Some(errno.raw_os_error())
}

/// Whether this process has as many descriptors open as RLIMIT_NOFILE allows (the other
/// reason mq_open gives EMFILE).
fn fd_table_full() -> bool {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
    match std::fs::read_dir("/proc/self/fd") {
        // Reading the directory takes a descriptor of its own (counted in it): no room for
        // that one is a full table too.
        Ok(dir) => matches!(limit, Some(l) if dir.count() as u64 >= l),
        Err(e) => is(&e, Errno::MFILE),
    }
}

fn create_error(e: std::io::Error, cap: i64, size: i64) -> Error {
    let lim = limits();
    if is(&e, Errno::EXIST) {
        return Error::new(ErrorKind::AlreadyExists).detail(
            "already exists; procom does not adopt an existing queue (remove it, or open it instead)",
        );
    }
    if is(&e, Errno::INVAL) {
        let mut over = Vec::new();
        if cap > lim.msg_max {
            over.push(format!(
                "a capacity of {cap} messages is over fs.mqueue.msg_max = {}",
                lim.msg_max
            ));
        }
        if size > lim.msgsize_max {
            over.push(format!(
                "a message size of {size} bytes is over fs.mqueue.msgsize_max = {}",
                lim.msgsize_max
            ));
        }
        let detail = if over.is_empty() {
            format!(
                "a capacity of {cap} messages of {size} bytes is over the kernel's hard limits \
                 (65536 messages, 16 MiB each); ask for less"
            )
        } else {
            let sysctls: Vec<&str> = [
                (cap > lim.msg_max, "fs.mqueue.msg_max"),
                (size > lim.msgsize_max, "fs.mqueue.msgsize_max"),
            ]
            .iter()
            .filter(|(over, _)| *over)
            .map(|(_, s)| *s)
            .collect();
            format!(
                "{}; raise it as root with sysctl -w {}, or ask for less",
                over.join(" and "),
                sysctls
                    .iter()
                    .map(|s| format!("{s}=N"))
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        };
        return Error::new(ErrorKind::LimitReached).detail(detail);
    }
    if is(&e, Errno::MFILE) {
        if fd_table_full() {
            // LimitReached, naming RLIMIT_NOFILE and its value.
            return Error::os("create it", e);
        }
        let rlimit = rlimit_msgqueue().map_or("unlimited".to_string(), |l| l.to_string());
        let need = (cap as i128) * (size as i128);
        return Error::new(ErrorKind::LimitReached).detail(format!(
            "this user's message-queue memory limit (RLIMIT_MSGQUEUE, {rlimit} bytes for all of \
             the user's queues together) has no room for {cap} messages of {size} bytes (at least \
             {need} bytes); remove unused queues, raise the limit with ulimit -q or prlimit \
             --msgqueue, or ask for less"
        ));
    }
    if is(&e, Errno::NOSPC) {
        return Error::new(ErrorKind::LimitReached).detail(format!(
            "the system already has fs.mqueue.queues_max = {} queues; remove some, or raise it as root with sysctl -w fs.mqueue.queues_max=N",
            lim.queues_max
        ));
    }
    Error::os("create it", e)
}

/// What a wait for room or for a message came to.
enum Waited<T> {
    Done(T),
    /// Full or empty now: a `try_` call, or a non-blocking descriptor.
    NotNow,
    TimedOut,
    /// The queue's name was removed, and it is still full or empty.
    Removed,
}

impl Queue {
    /// Creates the queue `name` (like `/jobs`), mode 0600 whatever the umask, exclusively (an
    /// existing queue is [`ErrorKind::AlreadyExists`], never adopted), with room for `max_messages`
    /// messages of at most `msgsize` bytes (`fs.mqueue.msg_default` and
    /// `fs.mqueue.msgsize_default` where `None`). The returned owner removes the queue when
    /// dropped; see [`Queue::keep`].
    #[doc(alias = "mq_open")]
    pub fn create(
        name: &str,
        max_messages: Option<u64>,
        msgsize: Option<u64>,
    ) -> Result<Queue, Error> {
        Queue::create_with_mode(name, max_messages, msgsize, DEFAULT_MODE)
    }

    /// Creates the queue `name` as [`Queue::create`] does, with exactly the permission bits
    /// `mode` (like 0o660: its group may send and receive too), whatever the umask.
    #[doc(alias = "mq_open")]
    pub fn create_with_mode(
        name: &str,
        max_messages: Option<u64>,
        msgsize: Option<u64>,
        mode: u32,
    ) -> Result<Queue, Error> {
        check_name(name)?;
        let label = format!("mq:{name}");
        let mode = crate::access::check_mode(mode)
            .map_err(|e| e.object_of(ObjectKind::PosixQueue, &label))?;
        let lim = limits();
        if max_messages == Some(0) || msgsize == Some(0) {
            return Err(Error::new(ErrorKind::InvalidInput)
                .detail("a queue needs a capacity of at least 1 message of at least 1 byte")
                .object_of(ObjectKind::PosixQueue, &label));
        }
        let cap = max_messages.map_or(lim.msg_default, |c| c.min(i64::MAX as u64) as i64);
        let size = msgsize.map_or(lim.msgsize_default, |s| s.min(i64::MAX as u64) as i64);
        // Created 0600 at most, then opened up: the queue is never more open than asked.
        let fd = sys::create(name, cap, size, mode & 0o600)
            .map_err(|e| create_error(e, cap, size).object_of(ObjectKind::PosixQueue, &label))?;
        let q = Queue {
            fd,
            name: name.to_string(),
            label,
            msgsize: size as usize,
            owner: true,
            scratch: Mutex::new(Vec::new()),
        };
        // mq_open's mode passed through the umask; make it exactly `mode` (the queue is
        // removed again if this fails, as `q` is dropped).
        rustix::fs::fchmod(&q.fd, rustix::fs::Mode::from_raw_mode(mode)).map_err(|e| {
            Error::os("set its mode", e.into()).object_of(ObjectKind::PosixQueue, &q.label)
        })?;
        Ok(q)
    }

    /// Gives the queue to group `gid` (its owner and mode stay): with a mode like 0o660, the
    /// group's members may then open it. Only the owner may, and only to a group it belongs
    /// to unless privileged ([`ErrorKind::PermissionDenied`]).
    #[doc(alias = "fchown")]
    pub fn set_group(&self, gid: u32) -> Result<(), Error> {
        crate::access::chown_fd(&self.fd, gid)
            .map_err(|e| e.object_of(ObjectKind::PosixQueue, &self.label))
    }

    /// Opens the existing queue `name` for sending and receiving.
    #[doc(alias = "mq_open")]
    pub fn open(name: &str) -> Result<Queue, Error> {
        Queue::open_with(name, true, true)
    }

    /// Opens the existing queue `name` for receiving (`read`), sending (`write`) or both; the
    /// queue's mode must allow it.
    #[doc(alias = "mq_open")]
    pub fn open_with(name: &str, read: bool, write: bool) -> Result<Queue, Error> {
        check_name(name)?;
        let label = format!("mq:{name}");
        let what = match (read, write) {
            (true, true) => "open it for sending and receiving",
            (false, true) => "open it for sending",
            _ => "open it for receiving",
        };
        let fd = sys::open(name, read, write)
            .map_err(|e| Error::os(what, e).object_of(ObjectKind::PosixQueue, &label))?;
        let attr = sys::getattr(fd.as_fd()).map_err(|e| {
            Error::os("read its attributes", e).object_of(ObjectKind::PosixQueue, &label)
        })?;
        Ok(Queue {
            fd,
            name: name.to_string(),
            label,
            msgsize: attr.msgsize.max(0) as usize,
            owner: false,
            scratch: Mutex::new(Vec::new()),
        })
    }

    /// The name, like `/jobs`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The largest message the queue takes, in bytes.
    pub fn msgsize(&self) -> usize {
        self.msgsize
    }

    /// Current count, capacity, message size, and this descriptor's mode.
    #[doc(alias = "mq_getattr")]
    pub fn attributes(&self) -> Result<Attributes, Error> {
        let a = sys::getattr(self.fd.as_fd()).map_err(|e| {
            Error::os("read its attributes", e).object_of(ObjectKind::PosixQueue, &self.label)
        })?;
        Ok(Attributes {
            count: a.curmsgs.max(0) as u64,
            max_messages: a.maxmsg.max(0) as u64,
            msgsize: a.msgsize.max(0) as u64,
            nonblocking: a.nonblocking,
        })
    }

    /// Puts this descriptor in non-blocking mode: every call then behaves like its `try_`
    /// form ([`ErrorKind::Full`], [`ErrorKind::Empty`]), which suits a poll loop.
    #[doc(alias = "mq_setattr")]
    pub fn set_nonblocking(&self, nonblocking: bool) -> Result<(), Error> {
        sys::set_nonblocking(self.fd.as_fd(), nonblocking).map_err(|e| {
            Error::os("change its mode", e).object_of(ObjectKind::PosixQueue, &self.label)
        })
    }

    /// Whether the queue's name has been removed (by [`remove`], `mq_unlink`, or its owner
    /// going away): no other process can open it any more.
    pub fn is_removed(&self) -> bool {
        rustix::fs::fstat(&self.fd).is_ok_and(|st| st.st_nlink == 0)
    }

    /// Runs `op` until `deadline`, in slices of [`REMOVAL_CHECK`] so that a removal is seen.
    fn wait<T>(
        &self,
        deadline: Option<Instant>,
        is_try: bool,
        mut op: impl FnMut(Option<Instant>) -> std::io::Result<Outcome<T>>,
    ) -> std::io::Result<Waited<T>> {
        let now_or_never = |r: Outcome<T>, otherwise: Waited<T>| match r {
            Outcome::Done(v) => Waited::Done(v),
            _ => otherwise,
        };
        if is_try {
            return Ok(now_or_never(op(Some(Instant::now()))?, Waited::NotNow));
        }
        loop {
            let slice = Instant::now() + REMOVAL_CHECK;
            let (until, last) = match deadline {
                Some(d) if d <= slice => (d, true),
                _ => (slice, false),
            };
            match op(Some(until))? {
                Outcome::Done(v) => return Ok(Waited::Done(v)),
                Outcome::WouldBlock => return Ok(Waited::NotNow),
                // Also at the deadline: a loop of waits shorter than a slice sees the removal.
                Outcome::TimedOut if self.is_removed() => {
                    // One last look, so that nothing that arrived just before is left behind.
                    return Ok(now_or_never(op(Some(Instant::now()))?, Waited::Removed));
                }
                Outcome::TimedOut if last => return Ok(Waited::TimedOut),
                Outcome::TimedOut => {}
            }
        }
    }

    fn io_error(&self, what: &str, e: std::io::Error, opposite: &str) -> Error {
        if is(&e, Errno::BADF) {
            return Error::new(ErrorKind::InvalidInput)
                .detail(format!("this handle was opened for {opposite} only"))
                .object_of(ObjectKind::PosixQueue, &self.label);
        }
        Error::os(what, e).object_of(ObjectKind::PosixQueue, &self.label)
    }

    pub(crate) fn send_inner(&self, msg: &[u8], prio: u32, wait: Wait) -> Result<(), Error> {
        let (deadline, is_try) = (wait.deadline(), wait.is_try());
        check_priority(prio).map_err(|e| e.object_of(ObjectKind::PosixQueue, &self.label))?;
        if msg.len() > self.msgsize {
            return Err(Error::too_large(msg.len() as u64, self.msgsize as u64)
                .detail(format!(
                    "a {}-byte message is over this queue's message size of {} bytes (set when the queue was created; a new queue may have up to fs.mqueue.msgsize_max = {}, raised as root with sysctl -w fs.mqueue.msgsize_max=N)",
                    msg.len(),
                    self.msgsize,
                    limits().msgsize_max,
                ))
                .object_of(ObjectKind::PosixQueue, &self.label));
        }
        let fd = self.fd.as_fd();
        let waited = self
            .wait(deadline, is_try, |d| sys::send(fd, msg, prio, d))
            .map_err(|e| self.io_error("send to it", e, "receiving"))?;
        let (kind, detail) = match waited {
            Waited::Done(()) => return Ok(()),
            Waited::NotNow => (ErrorKind::Full, "the queue is full"),
            Waited::TimedOut => (
                ErrorKind::Timeout,
                "the queue stayed full until the deadline",
            ),
            Waited::Removed => (
                ErrorKind::PeerGone,
                "the queue was removed while full; no process can open it to make room",
            ),
        };
        Err(Error::new(kind)
            .detail(detail)
            .object_of(ObjectKind::PosixQueue, &self.label))
    }

    /// Sends `msg` with priority `prio` (0 to [`PRIORITY_MAX`]; higher comes out first),
    /// waiting for room.
    #[doc(alias = "mq_send")]
    pub fn send(&self, msg: &[u8], prio: u32) -> Result<(), Error> {
        self.send_inner(msg, prio, Wait::Forever)
    }

    /// Sends if there is room now; otherwise [`ErrorKind::Full`].
    pub fn try_send(&self, msg: &[u8], prio: u32) -> Result<(), Error> {
        self.send_inner(msg, prio, Wait::Never)
    }

    /// Sends, waiting at most `timeout` for room; then [`ErrorKind::Timeout`].
    #[doc(alias = "mq_timedsend")]
    pub fn send_timeout(&self, msg: &[u8], prio: u32, timeout: Duration) -> Result<(), Error> {
        self.send_inner(msg, prio, Wait::until(deadline_after(timeout)))
    }

    /// Sends, waiting until `deadline` at most for room; then [`ErrorKind::Timeout`].
    #[doc(alias = "mq_timedsend")]
    pub fn send_deadline(&self, msg: &[u8], prio: u32, deadline: Instant) -> Result<(), Error> {
        self.send_inner(msg, prio, Wait::Until(deadline))
    }

    pub(crate) fn recv_inner(&self, wait: Wait) -> Result<(Vec<u8>, u32), Error> {
        let (deadline, is_try) = (wait.deadline(), wait.is_try());
        // The kernel wants room for the queue's message size whatever the message's; a buffer
        // kept between calls spares an allocation per message, and the message is copied out
        // at its own size. A second thread receiving meanwhile uses a buffer of its own.
        let mut own = Vec::new();
        let mut kept = self.scratch.try_lock().ok();
        let buf = kept.as_deref_mut().unwrap_or(&mut own);
        if buf.len() < self.msgsize.max(1) {
            buf.resize(self.msgsize.max(1), 0);
        }
        let fd = self.fd.as_fd();
        let waited = self
            .wait(deadline, is_try, |d| sys::receive(fd, buf, d))
            .map_err(|e| self.io_error("receive from it", e, "sending"))?;
        let (kind, detail) = match waited {
            Waited::Done((n, prio)) => return Ok((buf[..n.min(buf.len())].to_vec(), prio)),
            Waited::NotNow => (ErrorKind::Empty, "the queue is empty"),
            Waited::TimedOut => (ErrorKind::Timeout, "no message arrived before the deadline"),
            Waited::Removed => (
                ErrorKind::PeerGone,
                "the queue was removed and is empty; no process can open it to send",
            ),
        };
        Err(Error::new(kind)
            .detail(detail)
            .object_of(ObjectKind::PosixQueue, &self.label))
    }

    /// Receives the oldest message of the highest priority, with its priority, waiting for
    /// one.
    #[doc(alias = "mq_receive")]
    pub fn recv(&self) -> Result<(Vec<u8>, u32), Error> {
        self.recv_inner(Wait::Forever)
    }

    /// Receives if a message is waiting; otherwise [`ErrorKind::Empty`].
    pub fn try_recv(&self) -> Result<(Vec<u8>, u32), Error> {
        self.recv_inner(Wait::Never)
    }

    /// Receives, waiting at most `timeout`; then [`ErrorKind::Timeout`].
    #[doc(alias = "mq_timedreceive")]
    pub fn recv_timeout(&self, timeout: Duration) -> Result<(Vec<u8>, u32), Error> {
        self.recv_inner(Wait::until(deadline_after(timeout)))
    }

    /// Receives, waiting until `deadline` at most; then [`ErrorKind::Timeout`].
    #[doc(alias = "mq_timedreceive")]
    pub fn recv_deadline(&self, deadline: Instant) -> Result<(Vec<u8>, u32), Error> {
        self.recv_inner(Wait::Until(deadline))
    }

    /// Gives up the handle and returns a descriptor for the queue; the queue is kept even if
    /// this handle was its owner.
    pub fn into_fd(mut self) -> Option<OwnedFd> {
        self.owner = false;
        self.fd.try_clone().ok()
    }

    /// Leaves the queue in the kernel when this handle is dropped (the kernel lifetime: it
    /// stays until [`remove`] or a reboot); returns the handle.
    pub fn keep(mut self) -> Queue {
        self.owner = false;
        self
    }

    /// Removes the queue's name now (processes that have it open drain it, then see
    /// [`ErrorKind::PeerGone`]). A queue whose name is already gone is [`ErrorKind::NotFound`]:
    /// the name may belong to another queue by now, which is left alone.
    #[doc(alias = "mq_unlink")]
    pub fn remove(mut self) -> Result<(), Error> {
        self.owner = false;
        if self.is_removed() {
            return Err(Error::new(ErrorKind::NotFound)
                .detail("was removed already")
                .object_of(ObjectKind::PosixQueue, &self.label));
        }
        remove(&self.name)
    }
}

impl AsFd for Queue {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        // A name removed already may have been given to a new queue since: not ours to remove.
        if self.owner && !self.is_removed() {
            let _ = sys::unlink(&self.name);
        }
    }
}

/// Checks a priority for sending: 0 to [`PRIORITY_MAX`].
pub(crate) fn check_priority(prio: u32) -> Result<u32, Error> {
    if prio > PRIORITY_MAX {
        return Err(Error::new(ErrorKind::InvalidInput).detail(format!(
            "priority {prio} is out of range: POSIX queue priorities run from 0 to {PRIORITY_MAX}"
        )));
    }
    Ok(prio)
}

/// Removes the queue `name`. Processes that have it open keep what is in it; see the module
/// documentation.
#[doc(alias = "mq_unlink")]
pub fn remove(name: &str) -> Result<(), Error> {
    check_name(name)?;
    sys::unlink(name).map_err(|e| {
        Error::os("remove it", e).object_of(ObjectKind::PosixQueue, format!("mq:{name}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for bad in ["jobs", "/", "/a/b", "/a\0b"] {
            let e = Queue::create(bad, None, None).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{bad:?}");
            assert!(e.to_string().starts_with(&format!("mq:{bad}: ")), "{e}");
        }
        let long = format!("/{}", "x".repeat(256));
        assert_eq!(
            Queue::open(&long).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
    }

    #[test]
    fn zero_sizes_and_priorities_are_refused_before_the_kernel_sees_them() {
        let e = Queue::create("/procom-unit-zero", Some(0), None).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(check_priority(PRIORITY_MAX).is_ok());
        let e = check_priority(PRIORITY_MAX + 1).unwrap_err();
        assert!(e.to_string().contains("0 to 32767"), "{e}");
    }

    #[test]
    fn an_owner_that_was_removed_leaves_the_name_alone() {
        let name = format!("/procom-unit-mq-{}", std::process::id());
        let q = Queue::create(&name, Some(1), Some(8)).unwrap();
        assert!(!q.is_removed());
        remove(&name).unwrap();
        assert!(q.is_removed());
        let again = Queue::create(&name, Some(1), Some(8)).unwrap().keep();
        assert_eq!(q.remove().unwrap_err().kind(), ErrorKind::NotFound);
        // The second queue is still there: the first owner did not remove it.
        let e = q_send_recv(&again);
        assert_eq!(e, (b"x".to_vec(), 3));
        remove(&name).unwrap();
    }

    /// Waits shorter than a removal-check slice still see the removal (a loop of them would
    /// otherwise time out for ever on a queue nobody can open any more).
    #[test]
    fn short_waits_see_a_removal() {
        let name = format!("/procom-unit-mq-short-{}", std::process::id());
        let q = Queue::create(&name, Some(1), Some(8)).unwrap();
        let short = REMOVAL_CHECK / 10;
        assert_eq!(
            q.recv_timeout(short).unwrap_err().kind(),
            ErrorKind::Timeout
        );
        remove(&name).unwrap();
        assert_eq!(
            q.recv_timeout(short).unwrap_err().kind(),
            ErrorKind::PeerGone
        );
    }

    fn q_send_recv(q: &Queue) -> (Vec<u8>, u32) {
        q.send(b"x", 3).unwrap();
        q.try_recv().unwrap()
    }
}
