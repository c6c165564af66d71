//! POSIX message queues: a list of messages kept in the kernel, each with a priority.
//!
//! As the seed says, a queue holds separate messages (boundaries are kept), each message has a
//! maximum size and the queue a maximum count, a message read is removed, and every send and
//! receive copies between user and kernel space. The highest priority comes out first; equal
//! priorities in order. Limits come from the running kernel (`/proc/sys/fs/mqueue`), and a
//! request they refuse is an error naming the limit and the sysctl or rlimit that raises it.
//!
//! **Lifetime.** A queue lives in the kernel until it is removed (or the machine reboots), not
//! as long as a process. [`Queue::create`] returns the owner, which removes the name when
//! dropped, as every procom creator does; call [`Queue::keep`] for the kernel lifetime the seed
//! describes (a process creates and fills a queue, exits, and another reads it later).
//! [`remove`] is always available. Removing the name does not disturb processes that have the
//! queue open: they keep using it until they close it, so a receiver waiting on a removed
//! queue simply goes on waiting (give it a deadline).
//!
//! # References
//! - [`mq_overview(7)`](https://man7.org/linux/man-pages/man7/mq_overview.7.html)

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use procom_sys::mq::{self as sys, Outcome};

use crate::error::{Error, ErrorKind};
use crate::stream::deadline_after;

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

/// Reads the limits of the running kernel.
pub fn limits() -> Limits {
    Limits {
        msg_max: sys::limit("msg_max").unwrap_or(10),
        msgsize_max: sys::limit("msgsize_max").unwrap_or(8192),
        msg_default: sys::limit("msg_default").unwrap_or(10),
        msgsize_default: sys::limit("msgsize_default").unwrap_or(8192),
        queues_max: sys::limit("queues_max").unwrap_or(256),
    }
}

/// A queue's attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attributes {
    /// Messages waiting now.
    pub count: u64,
    /// Maximum number of messages.
    pub capacity: u64,
    /// Maximum message size in bytes.
    pub msgsize: u64,
    /// Whether this descriptor is in non-blocking mode.
    pub nonblocking: bool,
}

/// An open POSIX message queue.
#[derive(Debug)]
pub struct Queue {
    fd: OwnedFd,
    name: String,
    label: String,
    msgsize: usize,
    owner: bool,
}

fn rlimit_msgqueue() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Msgqueue).current
}

impl Queue {
    /// Creates the queue `name` (like `/jobs`), mode 0600, exclusively, with `capacity`
    /// messages of at most `msgsize` bytes (the kernel's defaults where `None`).
    #[doc(alias = "mq_open")]
    pub fn create(name: &str, capacity: Option<u64>, msgsize: Option<u64>) -> Result<Queue, Error> {
        crate::shm::check_name(name, "message queue")?;
        let label = format!("mq:{name}");
        let lim = limits();
        let cap = capacity.map_or(lim.msg_default, |c| c.min(i64::MAX as u64) as i64);
        let size = msgsize.map_or(lim.msgsize_default, |s| s.min(i64::MAX as u64) as i64);
        let fd = sys::create(name, cap, size, 0o600).map_err(|e| {
            match e.raw_os_error() {
                Some(libc_eexist) if libc_eexist == rustix::io::Errno::EXIST.raw_os_error() => Error::new(ErrorKind::AlreadyExists)
                    .detail("already exists; procom does not adopt an existing queue (remove it, or open it instead)"),
                Some(c) if c == rustix::io::Errno::INVAL.raw_os_error() => Error::new(ErrorKind::InvalidInput).detail(format!(
                    "capacity {cap} and message size {size} are refused: the limits are fs.mqueue.msg_max = {} and fs.mqueue.msgsize_max = {} (raise them with sysctl -w fs.mqueue.msg_max=N, or ask for less)",
                    lim.msg_max, lim.msgsize_max
                )),
                Some(c) if c == rustix::io::Errno::MFILE.raw_os_error() => Error::new(ErrorKind::InvalidInput).detail(format!(
                    "this user's message-queue memory limit (RLIMIT_MSGQUEUE, {} bytes) would be exceeded by {cap} messages of {size} bytes; raise it with ulimit -q or prlimit --msgqueue, or ask for less",
                    rlimit_msgqueue().map_or("unknown".to_string(), |l| l.to_string())
                )),
                Some(c) if c == rustix::io::Errno::NOSPC.raw_os_error() => Error::new(ErrorKind::InvalidInput).detail(format!(
                    "the system already has fs.mqueue.queues_max = {} queues; remove some or raise it with sysctl -w fs.mqueue.queues_max=N",
                    lim.queues_max
                )),
                _ => Error::os("create it", e),
            }
            .object(&label)
        })?;
        // mq_open's mode passed through the umask; make it exactly 0600.
        rustix::fs::fchmod(&fd, rustix::fs::Mode::from_raw_mode(0o600))
            .map_err(|e| Error::os("set its mode", e.into()).object(&label))?;
        let q = Queue {
            fd,
            name: name.to_string(),
            label,
            msgsize: size as usize,
            owner: true,
        };
        Ok(q)
    }

    /// Opens the existing queue `name` for sending and receiving.
    pub fn open(name: &str) -> Result<Queue, Error> {
        Queue::open_with(name, true, true)
    }

    /// Opens the existing queue `name` with the given access.
    pub fn open_with(name: &str, read: bool, write: bool) -> Result<Queue, Error> {
        crate::shm::check_name(name, "message queue")?;
        let label = format!("mq:{name}");
        let fd =
            sys::open(name, read, write).map_err(|e| Error::os("open it", e).object(&label))?;
        let attr = sys::getattr(fd.as_fd())
            .map_err(|e| Error::os("read its attributes", e).object(&label))?;
        Ok(Queue {
            fd,
            name: name.to_string(),
            label,
            msgsize: attr.msgsize.max(0) as usize,
            owner: false,
        })
    }

    /// The name, like `/jobs`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The largest message the queue takes.
    pub fn msgsize(&self) -> usize {
        self.msgsize
    }

    /// Current count, capacity, message size, mode.
    #[doc(alias = "mq_getattr")]
    pub fn attributes(&self) -> Result<Attributes, Error> {
        let a = sys::getattr(self.fd.as_fd())
            .map_err(|e| Error::os("read its attributes", e).object(&self.label))?;
        Ok(Attributes {
            count: a.curmsgs as u64,
            capacity: a.maxmsg as u64,
            msgsize: a.msgsize as u64,
            nonblocking: a.nonblocking,
        })
    }

    /// Puts this descriptor in non-blocking mode: every blocking call then behaves like its
    /// `try_` form.
    pub fn set_nonblocking(&self, nonblocking: bool) -> Result<(), Error> {
        sys::set_nonblocking(self.fd.as_fd(), nonblocking)
            .map_err(|e| Error::os("change its mode", e).object(&self.label))
    }

    pub(crate) fn send_deadline_prio(
        &self,
        msg: &[u8],
        prio: u32,
        deadline: Option<Instant>,
        is_try: bool,
    ) -> Result<(), Error> {
        if msg.len() > self.msgsize {
            return Err(Error::too_large(msg.len() as u64, self.msgsize as u64)
                .detail(format!(
                    "a {}-byte message is over this queue's message size of {} bytes (new queues may have up to fs.mqueue.msgsize_max)",
                    msg.len(),
                    self.msgsize
                ))
                .object(&self.label));
        }
        match sys::send(self.fd.as_fd(), msg, prio, deadline) {
            Ok(Outcome::Done(())) => Ok(()),
            Ok(Outcome::WouldBlock) if is_try => Err(Error::new(ErrorKind::Full)
                .detail("the queue is full")
                .object(&self.label)),
            Ok(Outcome::WouldBlock) => Err(Error::new(ErrorKind::Timeout)
                .detail("the queue stayed full until the deadline")
                .object(&self.label)),
            Err(e) => Err(Error::os("send to it", e).object(&self.label)),
        }
    }

    /// Sends `msg` with priority `prio` (higher first), waiting for room.
    #[doc(alias = "mq_send")]
    pub fn send(&self, msg: &[u8], prio: u32) -> Result<(), Error> {
        self.send_deadline_prio(msg, prio, None, false)
    }

    /// Sends if there is room now; otherwise [`ErrorKind::Full`].
    pub fn try_send(&self, msg: &[u8], prio: u32) -> Result<(), Error> {
        self.send_deadline_prio(msg, prio, Some(Instant::now()), true)
    }

    /// Sends, waiting at most `timeout` for room.
    #[doc(alias = "mq_timedsend")]
    pub fn send_timeout(&self, msg: &[u8], prio: u32, timeout: Duration) -> Result<(), Error> {
        self.send_deadline_prio(
            msg,
            prio,
            deadline_after(timeout).or(Some(Instant::now())),
            false,
        )
    }

    pub(crate) fn recv_deadline(
        &self,
        deadline: Option<Instant>,
        is_try: bool,
    ) -> Result<(Vec<u8>, u32), Error> {
        let mut buf = vec![0u8; self.msgsize.max(1)];
        match sys::receive(self.fd.as_fd(), &mut buf, deadline) {
            Ok(Outcome::Done((n, prio))) => {
                buf.truncate(n);
                Ok((buf, prio))
            }
            Ok(Outcome::WouldBlock) if is_try => Err(Error::new(ErrorKind::Empty)
                .detail("the queue is empty")
                .object(&self.label)),
            Ok(Outcome::WouldBlock) => Err(Error::new(ErrorKind::Timeout)
                .detail("no message arrived before the deadline")
                .object(&self.label)),
            Err(e) => Err(Error::os("receive from it", e).object(&self.label)),
        }
    }

    /// Receives the oldest message of the highest priority, with its priority.
    #[doc(alias = "mq_receive")]
    pub fn recv(&self) -> Result<(Vec<u8>, u32), Error> {
        self.recv_deadline(None, false)
    }

    /// Receives if a message is waiting; otherwise [`ErrorKind::Empty`].
    pub fn try_recv(&self) -> Result<(Vec<u8>, u32), Error> {
        self.recv_deadline(Some(Instant::now()), true)
    }

    /// Receives, waiting at most `timeout`.
    #[doc(alias = "mq_timedreceive")]
    pub fn recv_timeout(&self, timeout: Duration) -> Result<(Vec<u8>, u32), Error> {
        self.recv_deadline(deadline_after(timeout).or(Some(Instant::now())), false)
    }

    /// Gives up the handle and returns a descriptor for the queue (the queue is kept).
    pub fn into_fd(mut self) -> Option<OwnedFd> {
        self.owner = false;
        self.fd.try_clone().ok()
    }

    /// Leaves the queue in the kernel when this handle is dropped (the seed's kernel lifetime).
    pub fn keep(mut self) -> Queue {
        self.owner = false;
        self
    }

    /// Removes the queue's name now.
    pub fn remove(mut self) -> Result<(), Error> {
        self.owner = false;
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
        if self.owner {
            let _ = sys::unlink(&self.name);
        }
    }
}

/// Removes the queue `name`.
#[doc(alias = "mq_unlink")]
pub fn remove(name: &str) -> Result<(), Error> {
    crate::shm::check_name(name, "message queue")?;
    sys::unlink(name).map_err(|e| Error::os("remove it", e).object(format!("mq:{name}")))
}
