//! System V message queues (`msgget`, `msgsnd`, `msgrcv`, `msgctl`).
//!
//! # References
//! - [`msgget(2)`](https://man7.org/linux/man-pages/man2/msgget.2.html)
//! - [`msgop(2)`](https://man7.org/linux/man-pages/man2/msgop.2.html)
//! - [`msgctl(2)`](https://man7.org/linux/man-pages/man2/msgctl.2.html)

use std::io;
use std::mem::MaybeUninit;

use crate::cvt;

/// Creates the queue for `key` exclusively (or opens it, without `create`).
pub fn get(key: i32, create: bool, mode: u32) -> io::Result<i32> {
    let flags = if create {
        libc::IPC_CREAT | libc::IPC_EXCL
    } else {
        0
    } | (mode & 0o777) as i32;
    // SAFETY: plain integers.
    cvt(unsafe { libc::msgget(key, flags) })
}

const TYPE_LEN: usize = std::mem::size_of::<libc::c_long>();

/// Sends `data` with type `mtype` (> 0). With `nowait`, a full queue is EAGAIN.
pub fn send(id: i32, mtype: i64, data: &[u8], nowait: bool) -> io::Result<()> {
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

/// Receives a message selected by `mtype` (0: the first; > 0: the first of that type; < 0: the
/// first of the lowest type <= |mtype|) into a buffer of `max` bytes; returns its type and
/// bytes. With `nowait`, an empty queue is ENOMSG. A message over `max` is E2BIG and stays.
pub fn receive(id: i32, max: usize, mtype: i64, nowait: bool) -> io::Result<(i64, Vec<u8>)> {
    let mut buf = vec![0u8; TYPE_LEN + max];
    let flags = if nowait { libc::IPC_NOWAIT } else { 0 };
    loop {
        // SAFETY: `buf` has room for the type and `max` bytes.
        let n = unsafe {
            libc::msgrcv(
                id,
                buf.as_mut_ptr().cast(),
                max,
                mtype as libc::c_long,
                flags,
            )
        };
        if n >= 0 {
            let t =
                libc::c_long::from_ne_bytes(buf[..TYPE_LEN].try_into().unwrap_or([0; TYPE_LEN]));
            buf.drain(..TYPE_LEN);
            buf.truncate(n as usize);
            return Ok((t as i64, buf));
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
    /// The queue's byte limit.
    pub max_bytes: u64,
    /// Pid of the last msgsnd.
    pub last_sender: i32,
    /// Pid of the last msgrcv.
    pub last_receiver: i32,
    /// Time of the last msgsnd (seconds since the epoch; 0 if none).
    pub send_time: i64,
    /// Time of the last msgrcv.
    pub receive_time: i64,
    /// Time of the last change.
    pub change_time: i64,
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
    /// Permission bits.
    pub mode: u32,
}

fn stat_raw(id: i32) -> io::Result<libc::msqid_ds> {
    let mut ds = MaybeUninit::<libc::msqid_ds>::uninit();
    // SAFETY: IPC_STAT writes one msqid_ds into the buffer.
    cvt(unsafe { libc::msgctl(id, libc::IPC_STAT, ds.as_mut_ptr()) })?;
    // SAFETY: msgctl succeeded, so it filled the buffer in.
    Ok(unsafe { ds.assume_init() })
}

/// The queue's status.
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
    })
}

/// Sets the queue's byte limit (raising it above msgmnb needs CAP_SYS_RESOURCE).
pub fn set_max_bytes(id: i32, bytes: u64) -> io::Result<()> {
    let mut ds = stat_raw(id)?;
    ds.msg_qbytes = bytes as _;
    // SAFETY: IPC_SET reads the msqid_ds we pass.
    cvt(unsafe { libc::msgctl(id, libc::IPC_SET, &mut ds) }).map(drop)
}

/// Removes the queue; receivers waiting on it wake with EIDRM.
pub fn remove(id: i32) -> io::Result<()> {
    // SAFETY: IPC_RMID takes no buffer.
    cvt(unsafe { libc::msgctl(id, libc::IPC_RMID, std::ptr::null_mut()) }).map(drop)
}

/// A System V limit from /proc/sys/kernel (`msgmax`, `msgmnb`, `msgmni`).
pub fn limit(name: &str) -> Option<i64> {
    std::fs::read_to_string(format!("/proc/sys/kernel/{name}"))
        .ok()?
        .trim()
        .parse()
        .ok()
}
