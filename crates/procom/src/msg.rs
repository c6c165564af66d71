//! System V message queues: messages with a type, selected by type on receipt.
//!
//! A queue is named by a numeric key (as `ipcs -q` shows it) or by a path that
//! `ftok(path, 'M')` turns into a key ([`procom_sys::msg::FTOK_PROJECT`]; a C program using
//! the same call finds the same queue). Each message carries a type (1 or more). A receiver
//! picks with a selector: 0 takes the first message, a positive n the first of type n, a
//! negative n the first of the lowest type at most |n|. The kernel's limits are the classic
//! MSGMAX (the largest message, `kernel.msgmax`) and MSGMNB (the bytes a queue holds,
//! `kernel.msgmnb` for a new queue; see [`MsgQueue::set_max_bytes`]), plus `kernel.msgmni`
//! queues; a message or a queue over them is an error naming the limit and the sysctl that
//! raises it.
//!
//! ```
//! # fn main() -> Result<(), procom::Error> {
//! use procom::endpoint::SysvKey;
//! let key = SysvKey::Key(0x7d00_0000 | (std::process::id() as i32 & 0xffff));
//! let q = procom::msg::MsgQueue::create(&key)?; // removed on drop
//! q.send(b"three", 3)?; // the message, then its type (as mq's send(msg, priority))
//! q.send(b"one", 1)?;
//! assert_eq!(q.recv(-2)?, (b"one".to_vec(), 1)); // the lowest type at most 2
//! assert_eq!(q.recv(0)?, (b"three".to_vec(), 3)); // the first in the queue
//! # Ok(()) }
//! ```
//!
//! **Lifetime** is the kernel's, as for POSIX queues: [`MsgQueue::create`] returns the owner,
//! which removes the queue when dropped unless [`MsgQueue::keep`] is called (so that tests and
//! crashed tools do not litter the kernel; `procom msg create` keeps). [`MsgQueue::open`]
//! never removes anything; [`remove`] and [`MsgQueue::remove`] are always available. Removing
//! a queue destroys the messages in it and wakes every process waiting on it, which then gets
//! [`ErrorKind::PeerGone`].
//!
//! System V has no timed receive or send: the deadline and timeout forms retry a
//! non-blocking call with a backoff from 0.5 ms up to 10 ms; the blocking forms sleep in the
//! kernel.
//!
//! **As a channel** (`msg:KEY` or `msg:PATH` with [`Sender`](crate::Sender) and
//! [`Receiver`](crate::Receiver)): `bind` creates and owns the queue, `connect` opens an
//! existing one. The endpoint's `?type=N` is the type a sender stamps on every message (1
//! when absent; it must be 1 or more) and the selector a receiver uses (0, the first message,
//! when absent). Use [`MsgQueue`] to see types.
//!
//! # References
//! - [`sysvipc(7)`](https://man7.org/linux/man-pages/man7/sysvipc.7.html)
//! - [`msgop(2)`](https://man7.org/linux/man-pages/man2/msgop.2.html)
//! - [`msgctl(2)`](https://man7.org/linux/man-pages/man2/msgctl.2.html)

use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use procom_sys::msg as sys;
use rustix::io::Errno;

use crate::endpoint::SysvKey;
use crate::error::{Error, ErrorKind, ObjectKind};
use crate::stream::deadline_after;
use crate::wait::Wait;

/// The kernel's System V queue limits, read now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest message (`kernel.msgmax`, MSGMAX).
    pub msgmax: i64,
    /// Byte limit of a new queue (`kernel.msgmnb`, MSGMNB).
    pub msgmnb: i64,
    /// Queues allowed system-wide (`kernel.msgmni`).
    pub msgmni: i64,
}

/// Reads the limits of the running kernel (Linux's defaults where a file cannot be read).
pub fn limits() -> Limits {
    Limits {
        msgmax: sys::limit("msgmax").unwrap_or(8192),
        msgmnb: sys::limit("msgmnb").unwrap_or(16384),
        msgmni: sys::limit("msgmni").unwrap_or(32000),
    }
}

/// The mode queues are created with unless another is asked for.
pub const DEFAULT_MODE: u32 = 0o600;

/// A queue's status (`msgctl(IPC_STAT)`): count, bytes, byte limit, last sender and receiver
/// pids, times, owner, mode, key.
pub type Stat = sys::Stat;

/// An open System V message queue.
pub struct MsgQueue {
    id: i32,
    label: String,
    owner: bool,
    /// `kernel.msgmax` when opened: the receive buffer's size (it grows if a larger message
    /// turns up) and the size above which a send reads the limit again before refusing.
    msgmax: usize,
    /// Receive buffer, reused between receives.
    scratch: Mutex<sys::RecvBuf>,
}

impl fmt::Debug for MsgQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MsgQueue")
            .field("id", &self.id)
            .field("label", &self.label)
            .field("owner", &self.owner)
            .finish()
    }
}

fn label(key: &SysvKey) -> String {
    format!("msg:{key}")
}

fn key_of(key: &SysvKey) -> Result<i32, Error> {
    key.resolve(sys::FTOK_PROJECT)
        .map_err(|e| e.object_of(ObjectKind::KeyFile, label(key)))
}

fn is(e: &std::io::Error, errno: Errno) -> bool {
    e.raw_os_error() == Some(errno.raw_os_error())
}

const POLL_START: Duration = Duration::from_micros(500);
const POLL_CAP: Duration = Duration::from_millis(10);

/// Waits a little before the next non-blocking try, never past `deadline`; false once it
/// has passed.
fn back_off(backoff: &mut Duration, deadline: Instant) -> bool {
    let now = Instant::now();
    if now >= deadline {
        return false;
    }
    std::thread::sleep((*backoff).min(deadline - now));
    *backoff = (*backoff * 2).min(POLL_CAP);
    true
}

impl MsgQueue {
    fn new(id: i32, label: String, owner: bool) -> MsgQueue {
        MsgQueue {
            id,
            label,
            owner,
            msgmax: limits().msgmax.max(1) as usize,
            scratch: Mutex::new(sys::RecvBuf::default()),
        }
    }

    /// Another handle on the same queue that owns nothing (an async endpoint's waiter
    /// thread blocks in it).
    #[cfg(feature = "tokio")]
    pub(crate) fn handle(&self) -> MsgQueue {
        MsgQueue::new(self.id, self.label.clone(), false)
    }

    /// Creates the queue for `key`, mode 0600, exclusively (an existing queue is
    /// [`ErrorKind::AlreadyExists`], never adopted). The returned owner removes the queue when
    /// dropped; see [`MsgQueue::keep`].
    #[doc(alias = "msgget")]
    pub fn create(key: &SysvKey) -> Result<MsgQueue, Error> {
        MsgQueue::create_with_mode(key, DEFAULT_MODE)
    }

    /// Creates the queue for `key` as [`MsgQueue::create`] does, with the permission bits
    /// `mode` (like 0o660: its group may send and receive too; System V ignores the umask).
    #[doc(alias = "msgget")]
    pub fn create_with_mode(key: &SysvKey, mode: u32) -> Result<MsgQueue, Error> {
        let label = label(key);
        let mode = crate::access::check_mode(mode)
            .map_err(|e| e.object_of(ObjectKind::SysvQueue, &label))?;
        let id = sys::create(key_of(key)?, mode).map_err(|e| {
            if is(&e, Errno::EXIST) {
                Error::new(ErrorKind::AlreadyExists)
                    .detail("already exists; procom does not adopt an existing queue (remove it, or open it instead)")
            } else if is(&e, Errno::NOSPC) {
                Error::new(ErrorKind::LimitReached).detail(format!(
                    "the system already has kernel.msgmni = {} queues; remove some (ipcs -q, procom msg rm), or raise it as root with sysctl -w kernel.msgmni=N",
                    limits().msgmni
                ))
            } else {
                Error::os("create it", e)
            }
            .object_of(ObjectKind::SysvQueue, &label)
        })?;
        Ok(MsgQueue::new(id, label, true))
    }

    /// Gives the queue to group `gid` (its owner and mode stay). Only its owner or creator
    /// may ([`ErrorKind::PermissionDenied`]); the kernel lets them name any group, so a
    /// program acting for a user checks membership first ([`crate::access::is_member`]).
    #[doc(alias = "msgctl")]
    #[doc(alias = "IPC_SET")]
    pub fn set_group(&self, gid: u32) -> Result<(), Error> {
        sys::set_group(self.id, gid).map_err(|e| {
            crate::access::group_error(e, gid).object_of(ObjectKind::SysvQueue, &self.label)
        })
    }

    /// Opens the existing queue for `key` for sending and receiving.
    #[doc(alias = "msgget")]
    pub fn open(key: &SysvKey) -> Result<MsgQueue, Error> {
        MsgQueue::open_with(key, true, true)
    }

    /// Opens the existing queue for `key`, checking now that its mode allows receiving
    /// (`read`) and/or sending (`write`).
    #[doc(alias = "msgget")]
    pub fn open_with(key: &SysvKey, read: bool, write: bool) -> Result<MsgQueue, Error> {
        let label = label(key);
        let what = match (read, write) {
            (true, true) => "open it for sending and receiving",
            (false, true) => "open it for sending",
            (true, false) => "open it for receiving",
            (false, false) => "open it",
        };
        let id = sys::open(key_of(key)?, read, write)
            .map_err(|e| Error::os(what, e).object_of(ObjectKind::SysvQueue, &label))?;
        Ok(MsgQueue::new(id, label, false))
    }

    /// The kernel's id for the queue (as `ipcs -q` shows it).
    pub fn id(&self) -> i32 {
        self.id
    }

    fn error(&self, what: &str, e: std::io::Error) -> Error {
        // A removed queue's id is no longer valid (EINVAL), or the removal woke us (EIDRM).
        if is(&e, Errno::IDRM) || is(&e, Errno::INVAL) {
            return Error::new(ErrorKind::PeerGone)
                .detail("the queue was removed")
                .object_of(ObjectKind::SysvQueue, &self.label);
        }
        Error::os(what, e).object_of(ObjectKind::SysvQueue, &self.label)
    }

    /// Why a message cannot go into the queue now: over msgmax or the queue's byte limit
    /// (TooLarge), or just no room yet (None).
    fn never_fits(&self, len: usize) -> Result<Option<Error>, Error> {
        let st = match self.stat() {
            Ok(st) => st,
            // A sender may write to a queue it may not read the status of: it cannot tell.
            Err(e) if e.kind() == ErrorKind::PermissionDenied => return Ok(None),
            Err(e) => return Err(e),
        };
        if len as u64 > st.max_bytes {
            return Ok(Some(
                Error::too_large(len as u64, st.max_bytes)
                    .detail(format!(
                        "a {len}-byte message can never fit: the queue holds at most {} bytes (MSGMNB; new queues get kernel.msgmnb = {}); its owner or creator can raise the limit (msgctl IPC_SET, MsgQueue::set_max_bytes), above kernel.msgmnb only as root",
                        st.max_bytes,
                        limits().msgmnb,
                    ))
                    .object_of(ObjectKind::SysvQueue, &self.label),
            ));
        }
        Ok(None)
    }

    pub(crate) fn send_inner(&self, data: &[u8], mtype: i64, wait: Wait) -> Result<(), Error> {
        let (deadline, is_try) = (wait.deadline(), wait.is_try());
        check_type(mtype).map_err(|e| e.object_of(ObjectKind::SysvQueue, &self.label))?;
        if data.len() > self.msgmax {
            let max = limits().msgmax.max(0) as usize; // it may have been raised since
            if data.len() > max {
                return Err(Error::too_large(data.len() as u64, max as u64)
                    .detail(format!(
                        "a {}-byte message is over kernel.msgmax = {max} (MSGMAX, the largest System V message); raise it as root with sysctl -w kernel.msgmax=N",
                        data.len()
                    ))
                    .object_of(ObjectKind::SysvQueue, &self.label));
            }
        }
        let mut backoff = POLL_START;
        let mut checked = false;
        loop {
            // Always try without waiting first: a message larger than the queue's byte limit
            // would otherwise wait forever in the kernel.
            let e = match sys::send(self.id, mtype, data, true) {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            if is(&e, Errno::INVAL) && self.stat().is_ok() {
                // The queue exists, so the size was refused: kernel.msgmax was lowered.
                let max = limits().msgmax.max(0) as u64;
                return Err(Error::too_large(data.len() as u64, max)
                    .detail(format!(
                        "a {}-byte message is over kernel.msgmax = {max} (MSGMAX); raise it as root with sysctl -w kernel.msgmax=N",
                        data.len()
                    ))
                    .object_of(ObjectKind::SysvQueue, &self.label));
            }
            if !is(&e, Errno::AGAIN) {
                return Err(self.error("send to it", e));
            }
            if !checked {
                checked = true;
                if let Some(e) = self.never_fits(data.len())? {
                    return Err(e);
                }
            }
            match deadline {
                _ if is_try => {
                    return Err(Error::new(ErrorKind::Full)
                        .detail("the queue is full (its byte limit, MSGMNB, is reached)")
                        .object_of(ObjectKind::SysvQueue, &self.label));
                }
                None => {
                    return sys::send(self.id, mtype, data, false)
                        .map_err(|e| self.error("send to it", e));
                }
                Some(d) => {
                    if !back_off(&mut backoff, d) {
                        return Err(Error::new(ErrorKind::Timeout)
                            .detail("the queue stayed full until the deadline")
                            .object_of(ObjectKind::SysvQueue, &self.label));
                    }
                }
            }
        }
    }

    /// Sends `data` with type `mtype` (1 or more), waiting for room.
    #[doc(alias = "msgsnd")]
    pub fn send(&self, data: &[u8], mtype: i64) -> Result<(), Error> {
        self.send_inner(data, mtype, Wait::Forever)
    }

    /// Sends if there is room now (`IPC_NOWAIT`); otherwise [`ErrorKind::Full`].
    #[doc(alias = "IPC_NOWAIT")]
    pub fn try_send(&self, data: &[u8], mtype: i64) -> Result<(), Error> {
        self.send_inner(data, mtype, Wait::Never)
    }

    /// Sends, waiting at most `timeout` for room; then [`ErrorKind::Timeout`].
    pub fn send_timeout(&self, data: &[u8], mtype: i64, timeout: Duration) -> Result<(), Error> {
        self.send_inner(data, mtype, Wait::until(deadline_after(timeout)))
    }

    /// Sends, waiting until `deadline` at most for room; then [`ErrorKind::Timeout`].
    pub fn send_deadline(&self, data: &[u8], mtype: i64, deadline: Instant) -> Result<(), Error> {
        self.send_inner(data, mtype, Wait::Until(deadline))
    }

    pub(crate) fn recv_inner(&self, selector: i64, wait: Wait) -> Result<(Vec<u8>, i64), Error> {
        let (deadline, is_try) = (wait.deadline(), wait.is_try());
        // A buffer kept between calls spares an allocation per message; the message is copied
        // out at its own size. A second thread receiving meanwhile uses a buffer of its own.
        let mut own = sys::RecvBuf::default();
        let mut kept = self.scratch.try_lock().ok();
        let buf = kept.as_deref_mut().unwrap_or(&mut own);
        let mut max = self.msgmax;
        let mut backoff = POLL_START;
        loop {
            let nowait = is_try || deadline.is_some();
            let e = match sys::receive(self.id, buf, max, selector, nowait) {
                Ok((t, m)) => return Ok((m.to_vec(), t)),
                Err(e) => e,
            };
            if is(&e, Errno::TOOBIG) && max < crate::framing::DEFAULT_MAX_MESSAGE {
                // kernel.msgmax was raised after this handle was opened.
                max = max
                    .saturating_mul(4)
                    .min(crate::framing::DEFAULT_MAX_MESSAGE);
                continue;
            }
            if !is(&e, Errno::NOMSG) {
                return Err(self.error("receive from it", e));
            }
            if is_try {
                return Err(Error::new(ErrorKind::Empty)
                    .detail("no matching message is waiting")
                    .object_of(ObjectKind::SysvQueue, &self.label));
            }
            if let Some(d) = deadline
                && !back_off(&mut backoff, d)
            {
                return Err(Error::new(ErrorKind::Timeout)
                    .detail("no matching message arrived before the deadline")
                    .object_of(ObjectKind::SysvQueue, &self.label));
            }
        }
    }

    /// Receives the message `selector` picks (0: the first; n > 0: the first of type n;
    /// n < 0: the first of the lowest type at most |n|), waiting for one; returns its bytes
    /// and type (message first, as [`crate::mq::Queue::recv`] returns bytes and priority).
    #[doc(alias = "msgrcv")]
    pub fn recv(&self, selector: i64) -> Result<(Vec<u8>, i64), Error> {
        self.recv_inner(selector, Wait::Forever)
    }

    /// Receives if a matching message is waiting (`IPC_NOWAIT`); otherwise
    /// [`ErrorKind::Empty`].
    #[doc(alias = "IPC_NOWAIT")]
    pub fn try_recv(&self, selector: i64) -> Result<(Vec<u8>, i64), Error> {
        self.recv_inner(selector, Wait::Never)
    }

    /// Receives, waiting at most `timeout`; then [`ErrorKind::Timeout`].
    pub fn recv_timeout(&self, selector: i64, timeout: Duration) -> Result<(Vec<u8>, i64), Error> {
        self.recv_inner(selector, Wait::until(deadline_after(timeout)))
    }

    /// Receives, waiting until `deadline` at most; then [`ErrorKind::Timeout`].
    pub fn recv_deadline(&self, selector: i64, deadline: Instant) -> Result<(Vec<u8>, i64), Error> {
        self.recv_inner(selector, Wait::Until(deadline))
    }

    /// Count, bytes, byte limit, last sender and receiver, times, owner, mode.
    #[doc(alias = "msgctl")]
    #[doc(alias = "IPC_STAT")]
    pub fn stat(&self) -> Result<Stat, Error> {
        sys::stat(self.id).map_err(|e| self.error("read its status", e))
    }

    /// Sets the queue's byte limit (MSGMNB for this queue). Only its owner or
    /// creator may ([`ErrorKind::PermissionDenied`]); above `kernel.msgmnb` needs
    /// `CAP_SYS_RESOURCE` ([`ErrorKind::LimitReached`] naming the limit).
    #[doc(alias = "msgctl")]
    #[doc(alias = "IPC_SET")]
    pub fn set_max_bytes(&self, bytes: u64) -> Result<(), Error> {
        if bytes == 0 {
            return Err(Error::new(ErrorKind::InvalidInput)
                .detail("a byte limit of 0 leaves no room for any message; give at least 1")
                .object_of(ObjectKind::SysvQueue, &self.label));
        }
        sys::set_max_bytes(self.id, bytes).map_err(|e| {
            let msgmnb = limits().msgmnb;
            if is(&e, Errno::PERM) && bytes > msgmnb.max(0) as u64 {
                Error::new(ErrorKind::LimitReached)
                    .detail(format!("{bytes} bytes is over kernel.msgmnb = {msgmnb}: only a privileged process (CAP_SYS_RESOURCE) may go above it; raise it as root with sysctl -w kernel.msgmnb=N, or ask for less"))
                    .object_of(ObjectKind::SysvQueue, &self.label)
            } else if is(&e, Errno::PERM) {
                Error::new(ErrorKind::PermissionDenied)
                    .detail("permission denied: only the queue's owner or creator may change its byte limit")
                    .object_of(ObjectKind::SysvQueue, &self.label)
            } else {
                self.error("set its byte limit", e)
            }
        })
    }

    /// Leaves the queue in the kernel when this handle is dropped (the kernel lifetime: it
    /// stays until removed or a reboot); returns the handle.
    pub fn keep(mut self) -> MsgQueue {
        self.owner = false;
        self
    }

    /// Removes the queue and the messages in it now; waiting processes get
    /// [`ErrorKind::PeerGone`].
    #[doc(alias = "IPC_RMID")]
    pub fn remove(mut self) -> Result<(), Error> {
        self.owner = false;
        sys::remove(self.id).map_err(|e| self.error("remove it", e))
    }
}

impl Drop for MsgQueue {
    fn drop(&mut self) {
        // By id, which names this queue only: a new queue under the same key has another id.
        if self.owner {
            let _ = sys::remove(self.id);
        }
    }
}

/// Checks a type for sending: 1 or more.
pub(crate) fn check_type(mtype: i64) -> Result<i64, Error> {
    if mtype <= 0 {
        return Err(Error::new(ErrorKind::InvalidInput).detail(format!(
            "message type {mtype} is invalid: a sent message's type must be 1 or more (0 and negative numbers are receive selectors)"
        )));
    }
    Ok(mtype)
}

/// Removes the queue for `key` (only its owner, its creator or root may).
#[doc(alias = "IPC_RMID")]
pub fn remove(key: &SysvKey) -> Result<(), Error> {
    let q = MsgQueue::open_with(key, false, false)?;
    q.remove()
}

/// Removes the queue whose id is `id` (the `msqid` ipcs shows), whatever its key: ids are
/// never shared between queues, segments and semaphore sets, so no other kind of object is
/// touched. An id no queue has is [`ErrorKind::NotFound`]; only the queue's owner, its creator
/// or root may remove it ([`ErrorKind::PermissionDenied`]).
#[doc(alias = "IPC_RMID")]
pub fn remove_id(id: i32) -> Result<(), Error> {
    let object = format!("msgid:{id}");
    if id < 0 {
        return Err(Error::new(ErrorKind::InvalidInput)
            .detail("a queue id is 0 or more")
            .object_of(ObjectKind::SysvQueue, object));
    }
    sys::remove(id).map_err(|e| {
        crate::error::sysv_removal(e, "message queue").object_of(ObjectKind::SysvQueue, object)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_checked() {
        assert!(check_type(1).is_ok());
        for bad in [0, -1, i64::MIN] {
            assert_eq!(check_type(bad).unwrap_err().kind(), ErrorKind::InvalidInput);
        }
    }

    #[test]
    fn labels_show_keys_as_ipcs_does() {
        assert_eq!(label(&SysvKey::Key(0x5100)), "msg:0x5100");
        assert_eq!(label(&SysvKey::Key(-1)), "msg:0xffffffff");
    }

    #[test]
    fn a_missing_path_is_named() {
        let e = MsgQueue::open(&SysvKey::Path("/procom/no/such/path".into())).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(
            e.to_string().starts_with("msg:/procom/no/such/path: "),
            "{e}"
        );
    }
}
