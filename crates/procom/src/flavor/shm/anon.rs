//! Anonymous shared-memory channels: the ring of a `shm:` channel in a memfd that has no name
//! anywhere, its two ends held by two open files of it, so either end can be handed to
//! another process as a descriptor.
//!
//! The segment is laid out as a named channel's, with [`FLAG_ANONYMOUS`] in its flags word,
//! sealed at its size (no process can shrink or grow it). The creator opens the memfd twice
//! (the second time through `/proc/self/fd`): the receiving end's open file holds the lock on
//! byte [`RX_LOCK`] of it, the sending end's on byte [`TX_LOCK`], and each end watches the
//! other's as a named channel's ends do (see the parent module): an end handed to a child is
//! seen gone when the child exits or is killed, even before it ever used the end, and not
//! while any process still holds the descriptor. (A mapping holds the open file it was made
//! through, so each end maps the segment through its own.)
//!
//! The process using an end holds a third open file of the memfd, private to it, with the lock
//! on the end's use byte ([`RX_USE`], [`TX_USE`]): one process at a time takes an end up,
//! whoever holds copies of its descriptor, and an end whose user died can be taken up again
//! from a copy (its private open file, and the lock, went with it). The pid slot in the header
//! says which process that is. A use lock held while the slot is empty (an end just handed
//! over whose private open file a forking child still holds, until it executes its program)
//! is asked for again for up to a second before the end is refused as in use.
//!
//! An end handed over with `into_fd` closes its private open file and keeps its lock (the
//! descriptor carries it); an end attached from a descriptor checks that it is a memfd sealed
//! as a channel's is (its size fixed, no seal to be added), that its open file does not hold
//! the other end's lock (it would be that end's descriptor), that the descriptor's open file
//! holds its role's lock (or that no other does), then takes the use lock. (The private open
//! file is opened first, and serves as the fresh open file of the mix-up check: a process out
//! of descriptors is refused before anything is locked.) Closing an end
//! (dropping it) sets its closed flag for good: a closed end is not attached again.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::receiver::capacity_for;
use super::{
    FLAG_ANONYMOUS, Fixed, MAGIC, OFF_CAPACITY, OFF_FLAGS, OFF_RECEIVER, OFF_SENDER, OFF_VERSION,
    POPULATE_MAX, RING_OFFSET, RX_LOCK, STATE_RECEIVER_CLOSED, STATE_SENDER_CLOSED, ShmReceiver,
    ShmSender, TX_LOCK, VERSION, load_state, lock_byte, take_end_lock, take_slot, validate, word,
};
use crate::error::{Error, ErrorKind};
use crate::shm::{Header, Mapping};

/// The byte whose lock a private open file of the process using the receiving end holds:
/// one process at a time takes an end up, whoever holds copies of its descriptor.
const RX_USE: u64 = 2;
/// The same for the sending end.
const TX_USE: u64 = 3;

/// One end of an anonymous channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Sender,
    Receiver,
}

impl Role {
    /// The byte whose lock this end's open file holds.
    pub(super) fn lock(self) -> u64 {
        match self {
            Role::Sender => TX_LOCK,
            Role::Receiver => RX_LOCK,
        }
    }

    /// The other end's byte.
    pub(super) fn peer_lock(self) -> u64 {
        match self {
            Role::Sender => RX_LOCK,
            Role::Receiver => TX_LOCK,
        }
    }

    /// The byte whose lock the process using this end holds (see [`RX_USE`]).
    fn use_byte(self) -> u64 {
        match self {
            Role::Sender => TX_USE,
            Role::Receiver => RX_USE,
        }
    }

    fn slot(self) -> usize {
        match self {
            Role::Sender => OFF_SENDER,
            Role::Receiver => OFF_RECEIVER,
        }
    }

    fn closed(self) -> u32 {
        match self {
            Role::Sender => STATE_SENDER_CLOSED,
            Role::Receiver => STATE_RECEIVER_CLOSED,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Role::Sender => "sender",
            Role::Receiver => "receiver",
        }
    }

    /// The other end's name.
    fn peer_name(self) -> &'static str {
        match self {
            Role::Sender => "receiver",
            Role::Receiver => "sender",
        }
    }
}

/// The memfd of a new channel of `len` bytes, sealed at that size.
fn create(len: usize) -> Result<OwnedFd, Error> {
    let err = |what: &str, e: rustix::io::Errno| Error::os(what, e.into());
    let fd = rustix::fs::memfd_create(
        "procom-channel",
        rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::ALLOW_SEALING,
    )
    .map_err(|e| err("create its memfd", e))?;
    rustix::fs::ftruncate(&fd, len as u64).map_err(|e| match e {
        rustix::io::Errno::NOSPC | rustix::io::Errno::FBIG => Error::new(ErrorKind::LimitReached)
            .detail(format!(
                "no room for its {len}-byte ring (the memory of shared files, or RLIMIT_FSIZE); ask for a smaller capacity"
            )),
        e => err("size its memfd", e),
    })?;
    rustix::fs::fcntl_add_seals(
        &fd,
        rustix::fs::SealFlags::SHRINK | rustix::fs::SealFlags::GROW | rustix::fs::SealFlags::SEAL,
    )
    .map_err(|e| err("seal its memfd", e))?;
    Ok(fd)
}

/// A second open file of the memfd `fd` (through `/proc/self/fd`), checked to be the same file.
fn reopen(fd: &OwnedFd) -> Result<OwnedFd, Error> {
    use std::os::fd::AsRawFd;
    let what = "open its memfd a second time through /proc/self/fd";
    let err = |e: rustix::io::Errno| Error::os(what, e.into());
    let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    let again = rustix::fs::open(
        path.as_str(),
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| match e {
        // Not "does not exist": the memfd does; the path to it does not.
        rustix::io::Errno::NOENT => Error::new(ErrorKind::Io).detail(format!(
            "could not {what}: /proc is not mounted in this process"
        )),
        e => err(e),
    })?;
    let (a, b) = (
        rustix::fs::fstat(fd).map_err(err)?,
        rustix::fs::fstat(&again).map_err(err)?,
    );
    if (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino) {
        return Err(Error::new(ErrorKind::Io)
            .detail("/proc/self/fd gave another file than its memfd; no anonymous channel here"));
    }
    Ok(again)
}

/// Takes `role`'s lock for the open file `fd`: `Ok(false)` if another open file holds it.
fn lock(fd: &OwnedFd, role: Role) -> Result<bool, Error> {
    lock_byte(fd, role.lock(), &format!("its {} byte", role.name()))
}

/// Takes the end `role` of the channel mapped at `map` up for this process: `private`, a
/// fresh open file of its memfd (see [`reopen`]), takes `role`'s use lock and is kept by the
/// end until it is closed or handed over; then this process's pid goes in the end's slot
/// (which says who holds it). `AlreadyExists` if another process (or another end here) uses
/// it: its open file holds the lock whatever became of pids since; a lock held while the slot
/// names nobody is waited for a moment ([`take_end_lock`]). (The caller opens `private` before
/// it changes anything, so that running out of descriptors fails with nothing taken.)
pub(super) fn take_up(private: OwnedFd, role: Role, map: &Mapping) -> Result<OwnedFd, Error> {
    take_end_lock(
        &private,
        role.use_byte(),
        &format!("its {} use byte", role.name()),
        || {
            let pid = map.load_u32(role.slot(), Ordering::Acquire).unwrap_or(0);
            Ok((pid != 0).then_some(pid))
        },
        |pid| {
            let who = match pid {
                Some(pid) => format!("already has a {} (pid {pid})", role.name()),
                None => format!(
                    "another process still holds the {} end's use lock though none is named in its header (a child forked without executing a program, say, by the process that used the end last)",
                    role.name()
                ),
            };
            Error::new(ErrorKind::AlreadyExists).detail(format!(
                "{who}; an end of a shared-memory channel is used by one process at a time"
            ))
        },
    )?;
    take_slot(map, role.slot());
    Ok(private)
}

/// A new anonymous channel whose ring holds `capacity` bytes (rounded up to a power of two):
/// its two ends, in this process.
pub(crate) fn channel(
    capacity: u64,
    max: usize,
    spin: Duration,
) -> Result<(ShmSender, ShmReceiver), Error> {
    let cap = capacity_for(capacity)?;
    let len = RING_OFFSET + procom_ring::bytes_needed(cap);
    let rx_fd = create(len)?;
    let tx_fd = reopen(&rx_fd)?;
    if !lock(&rx_fd, Role::Receiver)? || !lock(&tx_fd, Role::Sender)? {
        return Err(Error::new(ErrorKind::Io)
            .detail("another open file locked the memfd this channel just created"));
    }
    let map = Arc::new(
        Mapping::map_fd(rx_fd.as_fd(), len, true).map_err(|e| Error::os("map its memfd", e))?,
    );
    let _ = map.populate_prefix(POPULATE_MAX);
    let header = Header {
        magic: MAGIC,
        version: 0,
        flags: 0,
        layout_size: len as u64,
    };
    let io = |e| Error::os("write its header", e);
    map.write(0, bytemuck::bytes_of(&header)).map_err(io)?;
    map.write(OFF_CAPACITY, &(cap as u64).to_le_bytes())
        .map_err(io)?;
    word(&map, OFF_FLAGS).store(FLAG_ANONYMOUS, Ordering::Relaxed);
    let region = super::ring(&map)?;
    procom_ring::init(&region);
    // Release: everything above is visible to whoever sees the version.
    word(&map, OFF_VERSION).store(VERSION, Ordering::Release);
    let fixed = fixed(&map, cap);
    let rx_use = take_up(reopen(&rx_fd)?, Role::Receiver, &map)?;
    let tx_use = take_up(reopen(&tx_fd)?, Role::Sender, &map)?;
    // Each end maps the segment through its own open file: a mapping holds its open file
    // (and so the lock) as long as it lasts, so an end handed over and dropped here must leave
    // no mapping of its open file behind.
    let tx_map = Arc::new(
        Mapping::map_fd(tx_fd.as_fd(), len, true).map_err(|e| Error::os("map its memfd", e))?,
    );
    let rx = ShmReceiver::anonymous(map, rx_fd, rx_use, fixed, spin, max)?;
    let tx = ShmSender::anonymous(tx_map, tx_fd, tx_use, fixed, spin, max)?;
    Ok((tx, rx))
}

fn fixed(map: &Mapping, cap: usize) -> Fixed {
    Fixed {
        layout_size: map.len() as u64,
        capacity: cap as u64,
        receiver: None,
        flags: FLAG_ANONYMOUS,
    }
}

/// Whether the open file behind `fd` holds the other end's lock: it is that end's, whether
/// or not the end `role` is open anywhere. An open file never sees its own lock, so this asks
/// from `fd` and from `fresh`, another open file of the memfd that holds no lock yet.
fn holds_peer_lock(fd: &OwnedFd, fresh: &OwnedFd, role: Role) -> bool {
    let byte = role.peer_lock();
    let seen_from_fd = procom_sys::ofd_lock::byte_locked_elsewhere(fd, byte);
    matches!(
        (
            seen_from_fd,
            procom_sys::ofd_lock::byte_locked_elsewhere(fresh, byte)
        ),
        (Ok(false), Ok(true))
    )
}

/// The error for a descriptor that is not `role`'s end of an anonymous channel.
fn not_an_end(role: Role, why: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::WrongType).detail(format!(
        "is not the {} end of an anonymous procom channel: {why}",
        role.name()
    ))
}

/// Maps the end `fd` of an anonymous channel handed over as `role`, checks it, and takes the
/// end up for this process: the mapping, the channel's fixed header words, and the private
/// open file that holds the end's use lock ([`take_up`]).
pub(crate) fn attach(fd: &OwnedFd, role: Role) -> Result<(Arc<Mapping>, Fixed, OwnedFd), Error> {
    let st = rustix::fs::fstat(fd).map_err(|e| Error::os("read its status", e.into()))?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
        return Err(not_an_end(role, "it is not a memfd"));
    }
    // Only a memfd sealed as `create` seals it: a file another holder could shrink would take
    // memory out from under the mapping (reads of zeros, then `Corrupted`), and one on a disk
    // would write every message to it.
    let sealed =
        rustix::fs::SealFlags::SHRINK | rustix::fs::SealFlags::GROW | rustix::fs::SealFlags::SEAL;
    match rustix::fs::fcntl_get_seals(fd) {
        Ok(seals) if seals.contains(sealed) => {}
        Ok(_) => return Err(not_an_end(role, "its size is not sealed")),
        Err(_) => return Err(not_an_end(role, "it is not a memfd")),
    }
    // A channel's size, checked before anything is mapped: a ring of a power of two bytes
    // after the header (a huge file of another size is not mapped at all).
    let len = usize::try_from(st.st_size)
        .ok()
        .filter(|&n| {
            n.checked_sub(RING_OFFSET + procom_ring::bytes_needed(0))
                .is_some_and(|c| c.is_power_of_two() && c >= procom_ring::MIN_CAPACITY)
        })
        .ok_or_else(|| {
            not_an_end(
                role,
                format!("it holds {} bytes, which no channel does", st.st_size),
            )
        })?;
    let map = Arc::new(
        Mapping::map_fd(fd.as_fd(), len, true).map_err(|e| Error::os("map its memfd", e))?,
    );
    let cap = validate(&map).map_err(|e| not_an_end(role, e))?;
    if map.load_u32(OFF_FLAGS, Ordering::Relaxed) != Some(FLAG_ANONYMOUS) {
        return Err(not_an_end(role, "it is a named channel's segment"));
    }
    let fixed = fixed(&map, cap);
    fixed.check(&map)?;
    // The private open file this process will use the end through, opened before any lock is
    // taken: a process out of descriptors is refused with nothing changed.
    let private = reopen(fd)?;
    if holds_peer_lock(fd, &private, role) {
        return Err(not_an_end(
            role,
            format!("it is the {} end's descriptor", role.peer_name()),
        ));
    }
    if !lock(fd, role)? {
        return Err(not_an_end(
            role,
            format!(
                "another open file holds the {} end (is this the other end's descriptor?)",
                role.name()
            ),
        ));
    }
    if load_state(&map, Ordering::Acquire)? & role.closed() != 0 {
        return Err(Error::new(ErrorKind::PeerGone).detail(format!(
            "its {} end was closed, and a closed end is not reopened",
            role.name()
        )));
    }
    let private = take_up(private, role, &map)?;
    let _ = map.populate_prefix(POPULATE_MAX);
    Ok((map, fixed, private))
}
