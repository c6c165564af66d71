//! [`Cleanup`]: the name of an object this process created, removable from another thread.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use rustix::fd::OwnedFd;
use rustix::fs::{AtFlags, Mode, OFlags, Stat};

/// A name in one directory, the directory opened once (following the links the path names at
/// that moment). Looking the name up and removing it through this one descriptor act on one
/// directory: someone who may write a directory higher up the path cannot swap it for a link
/// between the check and the removal, and so redirect the removal into a directory of their
/// choice (for root, any file on the machine).
#[derive(Debug)]
pub(crate) struct DirEntry {
    dir: OwnedFd,
    name: OsString,
}

impl DirEntry {
    /// The last name of `path` in its directory; a path without one (`/`, `..`) is `EISDIR`.
    pub(crate) fn of(path: &Path) -> rustix::io::Result<DirEntry> {
        let name = match path.file_name() {
            Some(n)
                if path
                    .components()
                    .next_back()
                    .is_some_and(|c| c.as_os_str() == n) =>
            {
                n
            }
            _ => return Err(rustix::io::Errno::ISDIR),
        };
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let dir = rustix::fs::open(
            parent,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(DirEntry {
            dir,
            name: name.to_os_string(),
        })
    }

    /// What is at the name, without following a link.
    pub(crate) fn stat(&self) -> rustix::io::Result<Stat> {
        rustix::fs::statat(&self.dir, &self.name, AtFlags::SYMLINK_NOFOLLOW)
    }

    /// Removes the name (never a directory, never through a link).
    pub(crate) fn unlink(&self) -> rustix::io::Result<()> {
        rustix::fs::unlinkat(&self.dir, &self.name, AtFlags::empty())
    }
}

/// The name of an object this process created — a Unix socket file, a FIFO, a POSIX
/// shared-memory segment — that another thread can remove.
///
/// The object's owner (a [`Receiver`](crate::Receiver), a
/// [`Listener`](crate::socket::Listener)) removes the name when it is dropped. A program that
/// ends from a signal-watching thread (`std::process::exit` on SIGTERM) never runs that drop:
/// it takes a `Cleanup` beforehand and calls [`Cleanup::remove`] on the way out, so nothing is
/// left behind.
///
/// Removal compares the device and inode behind the name (without following a symlink) with
/// the object's own: a name that was removed and taken by someone else since is left alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cleanup {
    path: PathBuf,
    id: (u64, u64),
}

impl Cleanup {
    /// The object at `path` whose device and inode are `id`.
    pub(crate) fn new(path: PathBuf, id: (u64, u64)) -> Cleanup {
        Cleanup { path, id }
    }

    /// The path whose name is removed (`/dev/shm/NAME` for a POSIX shared-memory segment).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the name if it still refers to the object this process created; otherwise, or
    /// if it is gone already, does nothing. Returns whether it removed it.
    pub fn remove(&self) -> bool {
        let Ok(entry) = DirEntry::of(&self.path) else {
            return false;
        };
        match entry.stat() {
            Ok(st) if (st.st_dev, st.st_ino) == self.id => entry.unlink().is_ok(),
            _ => false,
        }
    }
}
