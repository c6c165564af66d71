//! Open-file-description locks on single bytes (`F_OFD_SETLK`, `F_OFD_GETLK`).
//!
//! rustix's `fcntl_lock` takes process-associated locks on the whole file: those are dropped
//! when the process closes any descriptor of the file and are not inherited by a child. An
//! open-file-description lock belongs to the open file (the object `open` or `memfd_create`
//! made, shared by every `dup` of it, in this process or in a child that inherited or was
//! sent it) and is released only when the last descriptor of that open file is closed, or the
//! last process holding one exits. Held on a byte of a shared file, it says "this open file is
//! still alive somewhere" to anyone who asks from another open file of the same file.
//!
//! # References
//! - [`fcntl(2)`](https://man7.org/linux/man-pages/man2/fcntl.2.html) ("Open file description locks")

use std::io;
use std::os::fd::{AsFd, AsRawFd};

use crate::cvt;

/// A write lock on the one byte at `byte`, as the kernel takes it.
fn byte_lock(byte: u64, kind: libc::c_int) -> io::Result<libc::flock> {
    let start = libc::off_t::try_from(byte)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "lock offset out of range"))?;
    Ok(libc::flock {
        l_type: kind as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: start,
        l_len: 1,
        // Must be 0 for open-file-description locks.
        l_pid: 0,
    })
}

/// Takes a write lock on the byte at `byte` for the open file behind `fd`, without waiting:
/// `Ok(true)` once it is held (also if this open file held it already), `Ok(false)` if another
/// open file holds a lock there.
#[doc(alias = "F_OFD_SETLK")]
pub fn lock_byte(fd: impl AsFd, byte: u64) -> io::Result<bool> {
    let lock = byte_lock(byte, libc::F_WRLCK)?;
    // SAFETY: `lock` is a valid `flock` the call only reads; the descriptor is borrowed for the
    // duration of the call.
    match cvt(unsafe { libc::fcntl(fd.as_fd().as_raw_fd(), libc::F_OFD_SETLK, &lock) }) {
        Ok(_) => Ok(true),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether an open file other than the one behind `fd` holds a lock on the byte at `byte`.
#[doc(alias = "F_OFD_GETLK")]
pub fn byte_locked_elsewhere(fd: impl AsFd, byte: u64) -> io::Result<bool> {
    let mut lock = byte_lock(byte, libc::F_WRLCK)?;
    // SAFETY: `lock` is a valid `flock` the call reads and overwrites in place; the descriptor
    // is borrowed for the duration of the call.
    cvt(unsafe { libc::fcntl(fd.as_fd().as_raw_fd(), libc::F_OFD_GETLK, &mut lock) })?;
    Ok(lock.l_type != libc::F_UNLCK as libc::c_short)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two open files of one memfd: each sees the other's byte lock and not its own; a dup
    /// keeps the lock alive; closing the last descriptor of the open file releases it.
    #[test]
    fn a_byte_lock_lives_as_long_as_its_open_file() {
        let a = rustix::fs::memfd_create("ofd-lock-test", rustix::fs::MemfdFlags::CLOEXEC)
            .expect("memfd_create");
        let path = format!("/proc/self/fd/{}", a.as_raw_fd());
        let b = rustix::fs::open(
            path.as_str(),
            rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .expect("reopen");
        assert!(lock_byte(&a, 0).unwrap());
        assert!(
            lock_byte(&a, 0).unwrap(),
            "taking it again from the same open file"
        );
        assert!(!lock_byte(&b, 0).unwrap());
        assert!(lock_byte(&b, 1).unwrap());
        assert!(byte_locked_elsewhere(&b, 0).unwrap());
        assert!(!byte_locked_elsewhere(&a, 0).unwrap(), "its own lock");
        assert!(byte_locked_elsewhere(&a, 1).unwrap());
        let a2 = a.try_clone().expect("dup");
        drop(a);
        assert!(byte_locked_elsewhere(&b, 0).unwrap(), "a dup keeps it");
        drop(a2);
        assert!(
            !byte_locked_elsewhere(&b, 0).unwrap(),
            "released with the open file"
        );
    }
}
