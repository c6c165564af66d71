//! System V message queues (`msgget`, `msgsnd`, `msgrcv`, `msgctl`), which rustix does not
//! wrap. A queue is named by its kernel id (an `i32`, as `ipcs -q` shows it); it is not a file
//! descriptor and closes nothing when dropped.
//!
//! # References
//! - [`sysvipc(7)`](https://man7.org/linux/man-pages/man7/sysvipc.7.html)
//! - [`msgget(2)`](https://man7.org/linux/man-pages/man2/msgget.2.html)
//! - [`msgop(2)`](https://man7.org/linux/man-pages/man2/msgop.2.html)
//! - [`msgctl(2)`](https://man7.org/linux/man-pages/man2/msgctl.2.html)

use std::io;
use std::mem::MaybeUninit;

use crate::cvt;

/// The project id procom gives `ftok` for message queues (`ftok(path, 'M')` in C).
pub const FTOK_PROJECT: u8 = b'M';

/// Creates the queue for `key` exclusively (`IPC_CREAT | IPC_EXCL`) with permission bits
/// `mode` (System V ignores the umask); returns its id.
///
/// # References
/// - [`msgget(2)`](https://man7.org/linux/man-pages/man2/msgget.2.html)
#[doc(alias = "msgget")]
pub fn create(key: i32, mode: u32) -> io::Result<i32> {
    let flags = libc::IPC_CREAT | libc::IPC_EXCL | (mode & 0o777) as i32;
    // SAFETY: plain integers.
    cvt(unsafe { libc::msgget(key, flags) })
}

/// Opens the existing queue for `key`; returns its id. Asking for `read` and/or `write`
/// makes the kernel check the queue's mode now (`EACCES`) rather than at the first call.
///
/// # References
/// - [`msgget(2)`](https://man7.org/linux/man-pages/man2/msgget.2.html)
#[doc(alias = "msgget")]
pub fn open(key: i32, read: bool, write: bool) -> io::Result<i32> {
    let mut flags = 0;
    if read {
        flags |= 0o400;
    }
    if write {
        flags |= 0o200;
    }
    // SAFETY: plain integers.
    cvt(unsafe { libc::msgget(key, flags) })
}

const TYPE_LEN: usize = std::mem::size_of::<libc::c_long>();

/// Sends `data` with type `mtype` (1 or more). Without `nowait` a full queue blocks until
/// there is room or the queue is removed (`EIDRM`); with it, a full queue is `EAGAIN`. `EINTR`
/// is retried.
///
/// # References
/// - [`msgop(2)`](https://man7.org/linux/man-pages/man2/msgop.2.html)
#[doc(alias = "msgsnd")]
pub fn send(id: i32, mtype: i64, data: &[u8], nowait: bool) -> io::Result<()> {
    // The kernel reads a `long` type followed by the bytes: build that `struct msgbuf`.
    let mut buf = Vec::with_capacity(TYPE_LEN + data.len());
    buf.extend_from_slice(&(mtype as libc::c_long).to_ne_bytes());
    buf.extend_from_slice(data);
    let flags = if nowait { libc::IPC_NOWAIT } else { 0 };
    loop {
        // SAFETY: `buf` holds a long type followed by `data.len()` bytes, as msgsnd expects.
        let rc = unsafe { libc::msgsnd(id, buf.as_ptr().cast(), data.len(), flags) };
        if rc == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

/// Room for one received message (a `struct msgbuf`: the type, then the bytes), kept between
/// receives so a busy receiver does not allocate for each message.
#[derive(Default)]
pub struct RecvBuf {
    buf: Vec<u8>,
}

impl std::fmt::Debug for RecvBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBuf")
            .field("capacity", &self.buf.len().saturating_sub(TYPE_LEN))
            .finish()
    }
}

/// Receives a message selected by `mtype` (0: the first; > 0: the first of that type; < 0: the
/// first of the lowest type at most |mtype|) into `buf`, taking at most `max` bytes; returns
/// its type and bytes. With `nowait`, no matching message is `ENOMSG`; without, the call
/// waits, and a removal of the queue wakes it with `EIDRM`. A message over `max` is `E2BIG`
/// and stays in the queue. `EINTR` is retried.
///
/// # References
/// - [`msgop(2)`](https://man7.org/linux/man-pages/man2/msgop.2.html)
#[doc(alias = "msgrcv")]
pub fn receive(
    id: i32,
    buf: &mut RecvBuf,
    max: usize,
    mtype: i64,
    nowait: bool,
) -> io::Result<(i64, &[u8])> {
    let need = TYPE_LEN.saturating_add(max);
    if buf.buf.len() < need {
        buf.buf.resize(need, 0);
    }
    let flags = if nowait { libc::IPC_NOWAIT } else { 0 };
    loop {
        // SAFETY: `buf.buf` has room for the type and `max` bytes.
        let n = unsafe {
            libc::msgrcv(
                id,
                buf.buf.as_mut_ptr().cast(),
                max,
                mtype as libc::c_long,
                flags,
            )
        };
        if n >= 0 {
            let mut t = [0u8; TYPE_LEN];
            t.copy_from_slice(&buf.buf[..TYPE_LEN]);
            let len = (n as usize).min(max);
            #[allow(clippy::unnecessary_cast)] // c_long is i32 on 32-bit targets
            return Ok((
                libc::c_long::from_ne_bytes(t) as i64,
                &buf.buf[TYPE_LEN..TYPE_LEN + len],
            ));
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

/// What `msgctl(IPC_STAT)` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// Messages in the queue.
    pub count: u64,
    /// Bytes in the queue.
    pub bytes: u64,
    /// The queue's byte limit (`msg_qbytes`; `kernel.msgmnb` when created).
    pub max_bytes: u64,
    /// Pid of the last msgsnd (0 if none).
    pub last_sender: i32,
    /// Pid of the last msgrcv (0 if none).
    pub last_receiver: i32,
    /// Time of the last msgsnd (seconds since the epoch; 0 if none).
    pub send_time: i64,
    /// Time of the last msgrcv (0 if none).
    pub receive_time: i64,
    /// Time of the last change (creation, or `IPC_SET`).
    pub change_time: i64,
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
    /// Permission bits.
    pub mode: u32,
    /// The key the queue was created with (as `ipcs -q` shows it; 0 for `IPC_PRIVATE`).
    pub key: i32,
}

fn stat_raw(id: i32) -> io::Result<libc::msqid_ds> {
    let mut ds = MaybeUninit::<libc::msqid_ds>::uninit();
    // SAFETY: IPC_STAT writes one msqid_ds into the buffer.
    cvt(unsafe { libc::msgctl(id, libc::IPC_STAT, ds.as_mut_ptr()) })?;
    // SAFETY: msgctl succeeded, so it filled the buffer in.
    Ok(unsafe { ds.assume_init() })
}

/// The queue's status: counts, byte limit, last sender and receiver, times, owner, mode.
/// Needs read permission on the queue.
///
/// # References
/// - [`msgctl(2)`](https://man7.org/linux/man-pages/man2/msgctl.2.html), `IPC_STAT`
#[doc(alias = "msgctl")]
#[doc(alias = "IPC_STAT")]
pub fn stat(id: i32) -> io::Result<Stat> {
    let ds = stat_raw(id)?;
    Ok(Stat {
        count: ds.msg_qnum as u64,
        bytes: ds.__msg_cbytes as u64,
        max_bytes: ds.msg_qbytes as u64,
        last_sender: ds.msg_lspid,
        last_receiver: ds.msg_lrpid,
        send_time: ds.msg_stime,
        receive_time: ds.msg_rtime,
        change_time: ds.msg_ctime,
        uid: ds.msg_perm.uid,
        gid: ds.msg_perm.gid,
        mode: u32::from(ds.msg_perm.mode) & 0o777,
        key: ds.msg_perm.__key,
    })
}

/// Sets the queue's byte limit (`msg_qbytes`). Only the owner, the creator or a privileged
/// process may; raising it above `kernel.msgmnb` needs `CAP_SYS_RESOURCE` (`EPERM`).
///
/// # References
/// - [`msgctl(2)`](https://man7.org/linux/man-pages/man2/msgctl.2.html), `IPC_SET`
#[doc(alias = "msgctl")]
#[doc(alias = "IPC_SET")]
pub fn set_max_bytes(id: i32, bytes: u64) -> io::Result<()> {
    let mut ds = stat_raw(id)?;
    ds.msg_qbytes = bytes as _;
    // SAFETY: IPC_SET reads the msqid_ds we pass.
    cvt(unsafe { libc::msgctl(id, libc::IPC_SET, &mut ds) }).map(drop)
}

/// Gives the queue to group `gid` (`msg_perm.gid`), keeping its owner and mode. Only the
/// owner, the creator or a privileged process may (`EPERM`); the kernel does not check that
/// the caller belongs to the group.
///
/// # References
/// - [`msgctl(2)`](https://man7.org/linux/man-pages/man2/msgctl.2.html), `IPC_SET`
#[doc(alias = "msgctl")]
#[doc(alias = "IPC_SET")]
pub fn set_group(id: i32, gid: u32) -> io::Result<()> {
    let mut ds = stat_raw(id)?;
    ds.msg_perm.gid = gid;
    // SAFETY: IPC_SET reads the msqid_ds we pass.
    cvt(unsafe { libc::msgctl(id, libc::IPC_SET, &mut ds) }).map(drop)
}

/// Removes the queue and every message in it; processes waiting on it wake with `EIDRM`.
/// Only the owner, the creator or a privileged process may.
///
/// # References
/// - [`msgctl(2)`](https://man7.org/linux/man-pages/man2/msgctl.2.html), `IPC_RMID`
#[doc(alias = "msgctl")]
#[doc(alias = "IPC_RMID")]
pub fn remove(id: i32) -> io::Result<()> {
    // SAFETY: IPC_RMID takes no buffer.
    cvt(unsafe { libc::msgctl(id, libc::IPC_RMID, std::ptr::null_mut()) }).map(drop)
}

/// A System V limit from `/proc/sys/kernel` (`msgmax`, `msgmnb`, `msgmni`), or `None` where
/// the file is missing or unreadable.
///
/// # References
/// - [`proc_sys_kernel(5)`](https://man7.org/linux/man-pages/man5/proc_sys_kernel.5.html)
pub fn limit(name: &str) -> Option<i64> {
    std::fs::read_to_string(format!("/proc/sys/kernel/{name}"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_stat_and_removal() {
        // IPC_PRIVATE: a fresh queue no other test can collide with.
        let id = create(libc::IPC_PRIVATE, 0o600).expect("msgget");
        for (t, m) in [(3, &b"three"[..]), (1, b"one"), (2, b"two")] {
            send(id, t, m, true).unwrap();
        }
        let st = stat(id).unwrap();
        assert_eq!((st.count, st.bytes, st.mode), (3, 11, 0o600));
        assert_eq!(st.last_sender, std::process::id() as i32);
        let mut buf = RecvBuf::default();
        assert_eq!(
            receive(id, &mut buf, 64, -2, true).unwrap(),
            (1, &b"one"[..])
        );
        assert_eq!(
            receive(id, &mut buf, 64, 2, true).unwrap(),
            (2, &b"two"[..])
        );
        let e = receive(id, &mut buf, 2, 0, true).unwrap_err();
        assert_eq!(
            e.raw_os_error(),
            Some(libc::E2BIG),
            "a message over max stays"
        );
        assert_eq!(
            receive(id, &mut buf, 64, 0, true).unwrap(),
            (3, &b"three"[..])
        );
        let e = receive(id, &mut buf, 64, 0, true).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOMSG));
        set_max_bytes(id, 4).unwrap();
        assert_eq!(stat(id).unwrap().max_bytes, 4);
        let e = send(id, 1, b"12345", true).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EAGAIN));
        remove(id).unwrap();
        assert!(stat(id).is_err());
    }
}
