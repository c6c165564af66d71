//! Objects left behind by a process that died: telling them from live ones by the rule the
//! code that made them uses, and removing them.
//!
//! - A shared-memory channel (`shm:/NAME`) is abandoned when its owner lock is free: its
//!   receiver holds an exclusive `flock` on the segment from before the header is complete
//!   until after it has removed the name, and the kernel releases the lock when the receiver
//!   dies. This is the test a new receiver makes before it reclaims the name
//!   ([`shm_channel`], [`remove_shm_channel`]).
//! - A Unix socket file is abandoned when nothing is bound to it: a non-blocking connect is
//!   refused, the test a new server makes before it takes the path
//!   ([`remove_unix_socket`]).
//!
//! Asking takes the owner lock of an abandoned channel for an instant; a receiver that binds
//! that very name in that instant is told the channel is live, and succeeds when it tries
//! again.

use std::path::Path;

use crate::error::{Error, ErrorKind, ObjectKind};
use crate::flavor::shm::{Probe, probe, release, remove_stale};
use crate::shm::Segment;

/// What the owner lock says of a procom shared-memory channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShmChannel {
    /// The receiver's pid, as the channel's header says.
    pub receiver: u32,
    /// Whether the receiver still holds the owner lock (it is alive and has not closed).
    pub alive: bool,
}

fn label(name: &str) -> String {
    format!("shm:{name}")
}

/// Whether the POSIX segment `name` (like `/frames`) is a procom channel, and if so whether
/// its receiver is alive: `Ok(None)` for a segment that is not a complete procom channel
/// (another program's, or one being set up).
///
/// The segment is opened read-only, so this needs read permission on it.
pub fn shm_channel(name: &str) -> Result<Option<ShmChannel>, Error> {
    let seg = Segment::open_read_only(name)
        .map_err(|e| e.object_of(ObjectKind::ShmChannel, label(name)))?;
    Ok(match probe(seg)? {
        Probe::NotAChannel(_) => None,
        Probe::Live(receiver) => Some(ShmChannel {
            receiver,
            alive: true,
        }),
        Probe::Stale(receiver, locked) => {
            release(&locked);
            Some(ShmChannel {
                receiver,
                alive: false,
            })
        }
    })
}

/// Removes the channel segment `name` if its receiver is gone (its owner lock is free) and
/// the name still refers to the segment found so; returns the dead receiver's pid.
///
/// A live channel is [`ErrorKind::AlreadyExists`]; a segment that is not a procom channel is
/// [`ErrorKind::WrongType`]; both are left in place.
pub fn remove_shm_channel(name: &str) -> Result<u32, Error> {
    let object = label(name);
    let seg =
        Segment::open_read_only(name).map_err(|e| e.object_of(ObjectKind::ShmChannel, &object))?;
    match probe(seg)? {
        Probe::NotAChannel(e) => Err(Error::new(ErrorKind::WrongType)
            .detail(format!(
                "is not a procom channel, or is still being set up ({e}); procom cannot tell whether it is abandoned"
            ))
            .object_of(ObjectKind::ShmChannel, object)),
        Probe::Live(pid) => Err(Error::new(ErrorKind::AlreadyExists)
            .detail(format!("is a live channel: its receiver, pid {pid}, holds it"))
            .object_of(ObjectKind::ShmChannel, object)),
        Probe::Stale(pid, seg) => remove_stale(seg)
            .map(|()| pid)
            .map_err(|e| e.object_of(ObjectKind::ShmChannel, object)),
    }
}

/// Removes the Unix socket file at `path` only if nothing is bound to it (a connection to it
/// is refused) and it is still the file found so.
///
/// A live server, even one whose backlog is full, is [`ErrorKind::AlreadyExists`]; a socket
/// this user may not connect to cannot be checked ([`ErrorKind::PermissionDenied`]); anything
/// but a socket (a symbolic link included) is [`ErrorKind::WrongType`]. All are left in place.
pub fn remove_unix_socket(path: impl AsRef<Path>) -> Result<(), Error> {
    crate::net::remove_stale(path.as_ref())
}
