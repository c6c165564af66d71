//! System V shared memory by id (`shmget`, `shmctl`), and `ftok` for System V keys.

use std::io;

use crate::cvt;

/// Creates a System V shared-memory segment (or opens it, without `create`).
#[doc(alias = "shmget")]
pub fn sysv_shmget(key: i32, size: usize, create: bool, mode: u32) -> io::Result<i32> {
    let flags = if create {
        libc::IPC_CREAT | libc::IPC_EXCL
    } else {
        0
    } | (mode & 0o777) as i32;
    // SAFETY: shmget takes plain integers.
    cvt(unsafe { libc::shmget(key, size, flags) })
}

/// What `shmctl(IPC_STAT)` reports about a System V segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SysvShmStat {
    /// Size in bytes.
    pub size: usize,
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
    /// Permission bits.
    pub mode: u32,
    /// Processes attached now.
    pub attached: u64,
    /// Creator's pid.
    pub creator_pid: i32,
    /// Pid of the last shmat/shmdt.
    pub last_pid: i32,
}

/// Reads a System V segment's status.
#[doc(alias = "shmctl")]
pub fn sysv_shm_stat(id: i32) -> io::Result<SysvShmStat> {
    let mut ds = std::mem::MaybeUninit::<libc::shmid_ds>::uninit();
    // SAFETY: IPC_STAT writes a shmid_ds into the buffer we own.
    cvt(unsafe { libc::shmctl(id, libc::IPC_STAT, ds.as_mut_ptr()) })?;
    // SAFETY: shmctl succeeded, so it filled `ds` in.
    let ds = unsafe { ds.assume_init() };
    Ok(SysvShmStat {
        size: ds.shm_segsz,
        uid: ds.shm_perm.uid,
        gid: ds.shm_perm.gid,
        mode: u32::from(ds.shm_perm.mode) & 0o777,
        attached: ds.shm_nattch,
        creator_pid: ds.shm_cpid,
        last_pid: ds.shm_lpid,
    })
}

/// Gives a System V segment to group `gid` (`shm_perm.gid`), keeping its owner and mode.
/// Only the owner, the creator or a privileged process may (`EPERM`).
#[doc(alias = "shmctl")]
pub fn sysv_shm_set_group(id: i32, gid: u32) -> io::Result<()> {
    let mut ds = std::mem::MaybeUninit::<libc::shmid_ds>::uninit();
    // SAFETY: IPC_STAT writes a shmid_ds into the buffer we own.
    cvt(unsafe { libc::shmctl(id, libc::IPC_STAT, ds.as_mut_ptr()) })?;
    // SAFETY: shmctl succeeded, so it filled `ds` in.
    let mut ds = unsafe { ds.assume_init() };
    ds.shm_perm.gid = gid;
    // SAFETY: IPC_SET reads the shmid_ds we pass (uid, gid and mode of shm_perm).
    cvt(unsafe { libc::shmctl(id, libc::IPC_SET, &mut ds) }).map(drop)
}

/// Marks a System V segment for removal (it goes once the last process detaches).
pub fn sysv_shm_remove(id: i32) -> io::Result<()> {
    // SAFETY: IPC_RMID takes no buffer.
    cvt(unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) }).map(drop)
}

/// `ftok`: the System V key derived from an existing path and a project id.
pub fn ftok(path: &std::path::Path, project: u8) -> io::Result<i32> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    let key = unsafe { libc::ftok(c.as_ptr(), i32::from(project)) };
    if key == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(key)
    }
}
