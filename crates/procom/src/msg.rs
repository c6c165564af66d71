//! System V message queues: messages with a type, selected by type on receipt.
//!
//! A queue is named by a numeric key (as `ipcs -q` shows it) or by a path `ftok` turns into a
//! key. Each message carries a type (> 0). A receiver picks with a selector: 0 takes the first
//! message, a positive n the first of type n, a negative n the first of the lowest type at most
//! |n|. The kernel's limits are the seed's MSGMAX (largest message, `kernel.msgmax`) and MSGMNB
//! (bytes a queue holds, `kernel.msgmnb`), plus `kernel.msgmni` queues; a message over them is
//! an error naming the limit and the sysctl that raises it.
//!
//! **Lifetime** is the kernel's, as for POSIX queues: [`MsgQueue::create`] returns the owner,
//! which removes the queue when dropped unless [`MsgQueue::keep`] is called. Removing a queue
//! wakes every process waiting on it, which then gets [`ErrorKind::PeerGone`].
//!
//! System V has no timed receive or send: the deadline forms retry a non-blocking call with a
//! backoff from 0.5 ms up to 10 ms; the blocking forms sleep in the kernel.
//!
//! # References
//! - [`sysvipc(7)`](https://man7.org/linux/man-pages/man7/sysvipc.7.html)
//! - [`msgop(2)`](https://man7.org/linux/man-pages/man2/msgop.2.html)

use std::time::{Duration, Instant};

use procom_sys::msg as sys;

use crate::endpoint::MsgKey;
use crate::error::{Error, ErrorKind};
use crate::stream::deadline_after;

/// The kernel's System V queue limits, read now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest message (`kernel.msgmax`, the seed's MSGMAX).
    pub msgmax: i64,
    /// Default byte limit of a queue (`kernel.msgmnb`, the seed's MSGMNB).
    pub msgmnb: i64,
    /// Queues allowed system-wide (`kernel.msgmni`).
    pub msgmni: i64,
}

/// Reads the limits of the running kernel.
pub fn limits() -> Limits {
    Limits {
        msgmax: sys::limit("msgmax").unwrap_or(8192),
        msgmnb: sys::limit("msgmnb").unwrap_or(16384),
        msgmni: sys::limit("msgmni").unwrap_or(32000),
    }
}

/// A queue's status (`msgctl(IPC_STAT)`).
pub type Stat = sys::Stat;

/// An open System V message queue.
#[derive(Debug)]
pub struct MsgQueue {
    id: i32,
    label: String,
    owner: bool,
}

fn label(key: &MsgKey) -> String {
    match key {
        MsgKey::Key(k) => format!("msg:{:#x}", *k as u32),
        MsgKey::Path(p) => format!("msg:{}", p.display()),
    }
}

fn key_of(key: &MsgKey) -> Result<i32, Error> {
    match key {
        MsgKey::Key(k) => Ok(*k),
        MsgKey::Path(p) => procom_sys::mapping::ftok(p, b'M')
            .map_err(|e| Error::os("derive a key from it with ftok", e).object(p.display())),
    }
}

const POLL_START: Duration = Duration::from_micros(500);

impl MsgQueue {
    /// Creates the queue for `key`, mode 0600, exclusively.
    #[doc(alias = "msgget")]
    pub fn create(key: &MsgKey) -> Result<MsgQueue, Error> {
        let label = label(key);
        let id = sys::get(key_of(key)?, true, 0o600).map_err(|e| {
            match e.raw_os_error() {
                Some(c) if c == rustix::io::Errno::EXIST.raw_os_error() => Error::new(ErrorKind::AlreadyExists)
                    .detail("already exists; procom does not adopt an existing queue (remove it, or open it instead)"),
                Some(c) if c == rustix::io::Errno::NOSPC.raw_os_error() => Error::new(ErrorKind::InvalidInput).detail(format!(
                    "the system already has kernel.msgmni = {} queues; remove some or raise it with sysctl -w kernel.msgmni=N",
                    limits().msgmni
                )),
                _ => Error::os("create it", e),
            }
            .object(&label)
        })?;
        Ok(MsgQueue {
            id,
            label,
            owner: true,
        })
    }

    /// Opens the existing queue for `key`.
    pub fn open(key: &MsgKey) -> Result<MsgQueue, Error> {
        let label = label(key);
        // Asking for read and write access makes msgget check the queue's mode now, rather than
        // letting the first send or receive fail.
        let id = sys::get(key_of(key)?, false, 0o600)
            .map_err(|e| Error::os("open it", e).object(&label))?;
        Ok(MsgQueue {
            id,
            label,
            owner: false,
        })
    }

    /// The kernel's id for the queue (as `ipcs -q` shows it).
    pub fn id(&self) -> i32 {
        self.id
    }

    fn error(&self, what: &str, e: std::io::Error) -> Error {
        match e.raw_os_error() {
            Some(c)
                if c == rustix::io::Errno::IDRM.raw_os_error()
                    || c == rustix::io::Errno::INVAL.raw_os_error() =>
            {
                Error::new(ErrorKind::PeerGone)
                    .detail("the queue was removed")
                    .object(&self.label)
            }
            _ => Error::os(what, e).object(&self.label),
        }
    }

    pub(crate) fn send_deadline(
        &self,
        mtype: i64,
        data: &[u8],
        deadline: Option<Instant>,
        is_try: bool,
    ) -> Result<(), Error> {
        if mtype <= 0 {
            return Err(Error::new(ErrorKind::InvalidInput)
                .detail(format!(
                    "message type {mtype} is invalid: a sent message's type must be 1 or more"
                ))
                .object(&self.label));
        }
        let max = limits().msgmax.max(0) as usize;
        if data.len() > max {
            return Err(Error::too_large(data.len() as u64, max as u64)
                .detail(format!(
                    "a {}-byte message is over kernel.msgmax = {max} (MSGMAX); raise it with sysctl -w kernel.msgmax=N",
                    data.len()
                ))
                .object(&self.label));
        }
        let mut backoff = POLL_START;
        loop {
            let nowait = deadline.is_some();
            match sys::send(self.id, mtype, data, nowait) {
                Ok(()) => return Ok(()),
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::AGAIN.raw_os_error()) => {
                    let now = Instant::now();
                    match deadline {
                        Some(d) if now >= d => {
                            return Err(if is_try {
                                Error::new(ErrorKind::Full).detail(
                                    "the queue is full (its byte limit, MSGMNB, is reached)",
                                )
                            } else {
                                Error::new(ErrorKind::Timeout)
                                    .detail("the queue stayed full until the deadline")
                            }
                            .object(&self.label));
                        }
                        Some(d) => std::thread::sleep(backoff.min(d - now)),
                        None => {}
                    }
                    backoff = (backoff * 2).min(procom_sys::mq::POLL_CAP);
                }
                Err(e)
                    if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error())
                        && self.stat().is_ok() =>
                {
                    let qbytes = self.stat().map(|s| s.max_bytes).unwrap_or(0);
                    return Err(Error::too_large(data.len() as u64, qbytes)
                        .detail(format!("a {}-byte message cannot fit in this queue (its byte limit is {qbytes})", data.len()))
                        .object(&self.label));
                }
                Err(e) => return Err(self.error("send to it", e)),
            }
        }
    }

    /// Sends `data` with type `mtype` (1 or more), waiting for room.
    #[doc(alias = "msgsnd")]
    pub fn send(&self, mtype: i64, data: &[u8]) -> Result<(), Error> {
        self.send_deadline(mtype, data, None, false)
    }

    /// Sends if there is room now (IPC_NOWAIT); otherwise [`ErrorKind::Full`].
    pub fn try_send(&self, mtype: i64, data: &[u8]) -> Result<(), Error> {
        self.send_deadline(mtype, data, Some(Instant::now()), true)
    }

    /// Sends, waiting at most `timeout`.
    pub fn send_timeout(&self, mtype: i64, data: &[u8], timeout: Duration) -> Result<(), Error> {
        self.send_deadline(
            mtype,
            data,
            deadline_after(timeout).or(Some(Instant::now())),
            false,
        )
    }

    pub(crate) fn recv_deadline(
        &self,
        selector: i64,
        deadline: Option<Instant>,
        is_try: bool,
    ) -> Result<(i64, Vec<u8>), Error> {
        let mut max = limits().msgmax.max(1) as usize;
        let mut backoff = POLL_START;
        loop {
            match sys::receive(self.id, max, selector, deadline.is_some()) {
                Ok(r) => return Ok(r),
                Err(e)
                    if e.raw_os_error() == Some(rustix::io::Errno::TOOBIG.raw_os_error())
                        && max < crate::framing::DEFAULT_MAX_MESSAGE =>
                {
                    max = (max * 4).min(crate::framing::DEFAULT_MAX_MESSAGE); // msgmax was raised since the message was sent
                }
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOMSG.raw_os_error()) => {
                    let now = Instant::now();
                    match deadline {
                        Some(d) if now >= d => {
                            return Err(if is_try {
                                Error::new(ErrorKind::Empty).detail("no message matches")
                            } else {
                                Error::new(ErrorKind::Timeout)
                                    .detail("no matching message arrived before the deadline")
                            }
                            .object(&self.label));
                        }
                        Some(d) => std::thread::sleep(backoff.min(d - now)),
                        None => {}
                    }
                    backoff = (backoff * 2).min(procom_sys::mq::POLL_CAP);
                }
                Err(e) => return Err(self.error("receive from it", e)),
            }
        }
    }

    /// Receives the message `selector` picks (0: first; n > 0: first of type n; n < 0: first of
    /// the lowest type at most |n|), waiting for one; returns its type and bytes.
    #[doc(alias = "msgrcv")]
    pub fn recv(&self, selector: i64) -> Result<(i64, Vec<u8>), Error> {
        self.recv_deadline(selector, None, false)
    }

    /// Receives if a matching message is waiting (IPC_NOWAIT); otherwise [`ErrorKind::Empty`].
    pub fn try_recv(&self, selector: i64) -> Result<(i64, Vec<u8>), Error> {
        self.recv_deadline(selector, Some(Instant::now()), true)
    }

    /// Receives, waiting at most `timeout`.
    pub fn recv_timeout(&self, selector: i64, timeout: Duration) -> Result<(i64, Vec<u8>), Error> {
        self.recv_deadline(
            selector,
            deadline_after(timeout).or(Some(Instant::now())),
            false,
        )
    }

    /// Count, bytes, byte limit, last sender and receiver, times, owner, mode.
    #[doc(alias = "msgctl")]
    pub fn stat(&self) -> Result<Stat, Error> {
        sys::stat(self.id).map_err(|e| self.error("read its status", e))
    }

    /// Sets the queue's byte limit (above kernel.msgmnb needs CAP_SYS_RESOURCE).
    pub fn set_max_bytes(&self, bytes: u64) -> Result<(), Error> {
        sys::set_max_bytes(self.id, bytes).map_err(|e| self.error("set its byte limit", e))
    }

    /// Leaves the queue in the kernel when this handle is dropped.
    pub fn keep(mut self) -> MsgQueue {
        self.owner = false;
        self
    }

    /// Removes the queue now; waiting processes get [`ErrorKind::PeerGone`].
    pub fn remove(mut self) -> Result<(), Error> {
        self.owner = false;
        sys::remove(self.id).map_err(|e| self.error("remove it", e))
    }
}

impl Drop for MsgQueue {
    fn drop(&mut self) {
        if self.owner {
            let _ = sys::remove(self.id);
        }
    }
}
