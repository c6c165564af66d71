//! [`Cleanup`]: the name of an object this process created, removable from another thread.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

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
        match std::fs::symlink_metadata(&self.path) {
            Ok(m) if (m.dev(), m.ino()) == self.id => std::fs::remove_file(&self.path).is_ok(),
            _ => false,
        }
    }
}
