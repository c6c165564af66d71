//! Shared memory: the same physical pages mapped into several processes, so nothing is copied.
//!
//! Three kinds of segment, one type ([`Segment`]):
//! - POSIX named segments (`shm_open`, visible as `/dev/shm/NAME`): [`Segment::create`],
//!   [`Segment::open`].
//! - Anonymous files (`memfd_create`), passed to children as a descriptor, optionally sealed so
//!   no one can shrink or grow them under you: [`Segment::memfd`].
//! - System V segments (`shmget`/`shmat`), by key or `ftok` path: [`Segment::create_sysv`],
//!   [`Segment::open_sysv`].
//!
//! ```
//! # fn main() -> Result<(), procom::Error> {
//! use procom::shm::Segment;
//! let name = format!("/procom-doc-shm-{}", std::process::id());
//! let seg = Segment::create(&name, 4096)?; // mode 0600, removed on drop
//! seg.map()?.write(0, b"shared").map_err(|e| procom::Error::os("write", e))?;
//! // Another process (here: another handle) maps the same pages.
//! let other = Segment::open_read_only(&name)?.map_read_only()?;
//! let mut buf = [0u8; 6];
//! other.read(0, &mut buf).map_err(|e| procom::Error::os("read", e))?;
//! assert_eq!(&buf, b"shared");
//! # Ok(()) }
//! ```
//!
//! A [`Mapping`] is never seen as a Rust slice (another process may write it at any moment);
//! it is read and written with bounds-checked copies and atomics, and it survives a peer
//! truncating the object (the pages read as zeros and [`Mapping::faulted`] says so).
//! [`TypedRegion`] shares a plain-old-data struct between processes without `unsafe` in user
//! code. Structures procom itself keeps in a segment start with a [`Header`] that is validated
//! on open.
//!
//! [`channel`] makes an anonymous channel: the ring of a `shm:` channel in a memfd, whose ends
//! can be handed to other processes as descriptors.
//!
//! Named segments are created with mode 0600 whatever the umask, exclusively (an existing one
//! is never adopted); the creator removes the name on drop unless told to [`Segment::keep`] it.
//! /dev/shm is world-writable, so every open of a name refuses a symbolic link and anything
//! that is not a regular file (a FIFO, a directory), checked on the descriptor, without ever
//! blocking on it; removal by name removes only a segment ([`ErrorKind::WrongType`] otherwise).
//!
//! # References
//! - [`shm_overview(7)`](https://man7.org/linux/man-pages/man7/shm_overview.7.html)
//! - [`memfd_create(2)`](https://man7.org/linux/man-pages/man2/memfd_create.2.html)
//! - [`shmget(2)`](https://man7.org/linux/man-pages/man2/shmget.2.html)

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{Mode, OFlags, SealFlags};

use crate::channel::{Options, Receiver, Sender};
use crate::endpoint::SysvKey;
use crate::error::{Error, ErrorKind, ObjectKind};

mod names;
mod region;

pub(crate) use names::{check_name, check_removable, planted};
use names::{create_name, name_path, open_name};
pub use procom_sys::mapping::Mapping;
pub use region::{HEADER_SIZE, Header, TypedRegion};

/// The mode named segments get unless asked otherwise.
pub const DEFAULT_MODE: u32 = 0o600;

/// What the ends of an anonymous channel ([`channel`]) say for their endpoint: it has no name.
pub const ANONYMOUS: &str = "shm:(anonymous)";

/// A new anonymous shared-memory channel: the ring of a `shm:` channel (the fastest way to
/// move a message between two processes here) in a memfd that has no name anywhere, so no
/// other process can find it, and nothing is left behind when its ends are gone.
///
/// The ring holds `capacity` bytes (rounded up to a power of two, at least 64; a message can
/// be up to 16 bytes less), allocated and mapped at once up to 16 MiB (a ring's first lap
/// through pages not yet there costs more than its copies), the rest of a larger one as it is
/// first used.
/// The receiver sleeps when the ring is empty (as a `shm:` endpoint without `?spin=`).
///
/// Both ends start in this process: use them in two threads, or hand either to another
/// process as a descriptor with [`Sender::into_fd`] or [`Receiver::into_fd`], where
/// [`Sender::from_shm_fd`] or [`Receiver::from_shm_fd`] takes it up again. The descriptor is
/// close-on-exec: give it to a child as one of its standard streams (`Command::stdin` and
/// the like), or send it over a Unix socket.
///
/// Each end watches the other through the kernel: the other end is alive while any
/// descriptor of it is open, in whichever process, and gone once the last is closed. So an
/// end handed to a process that exits or is killed, even before it took the end up, is seen
/// gone (the other side reports [`ErrorKind::PeerGone`] within 50 ms, once the messages
/// already in the ring are read), but only if no other process still holds a copy of its
/// descriptor:
/// - close the parent's copy once the child has it, as with a pipe (a `Command` keeps the
///   descriptors given to it until it is dropped);
/// - a child made by `fork` without `exec` inherits every descriptor and mapping of both
///   ends as the parent held them then (close-on-exec does not apply), and keeps each of
///   them alive until it exits or execs, even an end it never uses.
///
/// A copy kept on purpose lets this process take the end up again once the process that
/// used it is gone. An end that was closed (dropped) is not taken up again.
///
/// ```
/// # fn main() -> Result<(), procom::Error> {
/// let (mut tx, rx) = procom::shm::channel(1 << 20, &procom::Options::default())?;
/// // Hand the receiving end over (here to this very process; a child would inherit it).
/// let fd = rx.into_fd().expect("an anonymous end has a descriptor");
/// let mut rx = procom::Receiver::from_shm_fd(fd, &procom::Options::default())?;
/// tx.send(b"hello").map_err(|e| e.into_error())?;
/// assert_eq!(rx.recv()?, b"hello");
/// drop(tx);
/// assert_eq!(rx.recv().unwrap_err().kind(), procom::ErrorKind::PeerGone);
/// # Ok(()) }
/// ```
pub fn channel(capacity: u64, opts: &Options) -> Result<(Sender, Receiver), Error> {
    let (tx, rx) =
        crate::flavor::shm::anonymous(capacity, opts.max_message, std::time::Duration::ZERO)
            .map_err(|e| e.object_of(ObjectKind::ShmChannel, ANONYMOUS))?;
    Ok((Sender::shm_anonymous(tx, opts), Receiver::shm_anonymous(rx)))
}

/// Which kernel object backs a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `shm_open`.
    Posix,
    /// `memfd_create`.
    Memfd,
    /// `shmget`.
    SysV,
}

/// What `info` reports about a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// The kernel object.
    pub kind: Kind,
    /// Size in bytes.
    pub size: u64,
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
    /// Permission bits.
    pub mode: u32,
    /// Processes attached (System V only).
    pub attached: Option<u64>,
    /// Seals in force (memfd only).
    pub sealed: Option<bool>,
}

/// A shared-memory segment.
#[derive(Debug)]
pub struct Segment {
    kind: Kind,
    label: String,
    name: Option<String>,
    fd: Option<OwnedFd>,
    sysv_id: Option<i32>,
    writable: bool,
    owner: bool,
}

/// Refuses to create a segment of 0 bytes: nothing can map it, so nothing could use it.
fn check_size(size: u64, label: &str) -> Result<(), Error> {
    if size == 0 {
        return Err(Error::new(ErrorKind::InvalidInput)
            .detail("a segment needs at least 1 byte (one of 0 bytes could not be mapped, so nothing could use it)")
            .object(label));
    }
    Ok(())
}

/// The `ftok` project byte of System V segments.
const FTOK_PROJECT: u8 = b'P';

fn key_label(key: &SysvKey) -> String {
    format!("shm key {key}")
}

impl Segment {
    /// Creates the POSIX segment `name` (like `/frame`) of `size` bytes (at least 1), mode
    /// 0600.
    #[doc(alias = "shm_open")]
    pub fn create(name: &str, size: u64) -> Result<Segment, Error> {
        Segment::create_with_mode(name, size, DEFAULT_MODE)
    }

    /// Creates the POSIX segment `name` with exactly `mode`, whatever the umask.
    ///
    /// A `size` of 0 is [`ErrorKind::InvalidInput`].
    pub fn create_with_mode(name: &str, size: u64, mode: u32) -> Result<Segment, Error> {
        check_name(name, "shared-memory")?;
        let label = format!("shm {name}");
        check_size(size, &label)?;
        let fd = create_name(name, mode).map_err(|e| e.object(&label))?;
        let seg = Segment {
            kind: Kind::Posix,
            label,
            name: Some(name.to_string()),
            fd: Some(fd),
            sysv_id: None,
            writable: true,
            owner: true,
        };
        let fd = seg
            .fd
            .as_ref()
            .map(AsFd::as_fd)
            .ok_or_else(|| Error::new(ErrorKind::Io))?;
        rustix::fs::fchmod(fd, Mode::from_raw_mode(mode & 0o777))
            .map_err(|e| Error::os("set its mode", e.into()).object(&seg.label))?;
        rustix::fs::ftruncate(fd, size).map_err(|e| {
            Error::os(&format!("size it to {size} bytes"), e.into()).object(&seg.label)
        })?;
        Ok(seg)
    }

    /// Opens the existing POSIX segment `name` for reading and writing.
    pub fn open(name: &str) -> Result<Segment, Error> {
        Segment::open_with(name, true)
    }

    /// Opens the existing POSIX segment `name` for reading only.
    pub fn open_read_only(name: &str) -> Result<Segment, Error> {
        Segment::open_with(name, false)
    }

    fn open_with(name: &str, writable: bool) -> Result<Segment, Error> {
        check_name(name, "shared-memory")?;
        let label = format!("shm {name}");
        let flags = if writable {
            OFlags::RDWR
        } else {
            OFlags::RDONLY
        };
        let what = if writable {
            "open it for reading and writing"
        } else {
            "open it for reading"
        };
        let fd = open_name(name, flags, what).map_err(|e| e.object(&label))?;
        Ok(Segment {
            kind: Kind::Posix,
            label,
            name: Some(name.to_string()),
            fd: Some(fd),
            sysv_id: None,
            writable,
            owner: false,
        })
    }

    /// Creates an anonymous shared-memory file of `size` bytes. With `seal`, its size is sealed
    /// (no process can shrink or grow it), so a peer it is passed to cannot pull memory out
    /// from under a mapping.
    #[doc(alias = "memfd_create")]
    pub fn memfd(label: &str, size: u64, seal: bool) -> Result<Segment, Error> {
        let name = format!("memfd {label}");
        let fd = rustix::fs::memfd_create(
            label,
            rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::ALLOW_SEALING,
        )
        .map_err(|e| Error::os("create it", e.into()).object(&name))?;
        rustix::fs::ftruncate(&fd, size)
            .map_err(|e| Error::os(&format!("size it to {size} bytes"), e.into()).object(&name))?;
        if seal {
            rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL)
                .map_err(|e| Error::os("seal its size", e.into()).object(&name))?;
        }
        Ok(Segment {
            kind: Kind::Memfd,
            label: name,
            name: None,
            fd: Some(fd),
            sysv_id: None,
            writable: true,
            owner: false,
        })
    }

    /// Adopts a shared-memory descriptor received from another process (a memfd, say).
    pub fn from_fd(fd: OwnedFd, writable: bool) -> Segment {
        Segment {
            kind: Kind::Memfd,
            label: "received shared memory".into(),
            name: None,
            fd: Some(fd),
            sysv_id: None,
            writable,
            owner: false,
        }
    }

    /// Creates a System V segment of `size` bytes for `key` (a number or an `ftok` path),
    /// exclusively, mode 0600. A `size` of 0 is [`ErrorKind::InvalidInput`].
    pub fn create_sysv(key: &SysvKey, size: usize) -> Result<Segment, Error> {
        Segment::create_sysv_with_mode(key, size, DEFAULT_MODE)
    }

    /// Creates a System V segment as [`Segment::create_sysv`] does, with the permission bits
    /// `mode` (System V ignores the umask).
    pub fn create_sysv_with_mode(key: &SysvKey, size: usize, mode: u32) -> Result<Segment, Error> {
        let label = key_label(key);
        check_size(size as u64, &label)?;
        let mode = crate::access::check_mode(mode).map_err(|e| e.object(&label))?;
        let k = key
            .resolve(FTOK_PROJECT)
            .map_err(|e| e.object(key_label(key)))?;
        let id = procom_sys::mapping::sysv_shmget(k, size, true, mode).map_err(|e| match e.raw_os_error() {
            Some(code) if code == rustix::io::Errno::EXIST.raw_os_error() => Error::new(ErrorKind::AlreadyExists)
                .detail("already exists; procom does not adopt an existing segment")
                .object(&label),
            Some(code) if code == rustix::io::Errno::INVAL.raw_os_error() => Error::new(ErrorKind::LimitReached)
                .detail(format!("{size} bytes is outside the kernel's limits (see /proc/sys/kernel/shmmax and shmall)"))
                .object(&label),
            Some(code) if code == rustix::io::Errno::NOSPC.raw_os_error() => Error::new(ErrorKind::LimitReached)
                .detail(format!(
                    "the system has as many System V segments as kernel.shmmni allows ({}), or no room for {size} more bytes under kernel.shmall; remove unused ones (ipcs -m, procom shm rm), or raise them as root with sysctl -w kernel.shmmni=N kernel.shmall=N",
                    std::fs::read_to_string("/proc/sys/kernel/shmmni").map_or_else(|_| "?".to_string(), |s| s.trim().to_string())
                ))
                .object(&label),
            _ => Error::os("create it", e).object(&label),
        })?;
        Ok(Segment::sysv(label, id, true))
    }

    /// Gives the segment (POSIX or System V) to group `gid`; its owner and mode stay. Only
    /// its owner may ([`ErrorKind::PermissionDenied`]): a POSIX segment only to a group the
    /// owner belongs to unless privileged; a System V one to any group, so a program acting
    /// for a user checks membership first ([`crate::access::is_member`]).
    pub fn set_group(&self, gid: u32) -> Result<(), Error> {
        let r = match (self.sysv_id, self.fd()) {
            (Some(id), _) => procom_sys::mapping::sysv_shm_set_group(id, gid)
                .map_err(|e| crate::access::group_error(e, gid)),
            (None, Some(fd)) => crate::access::chown_fd(fd, gid),
            (None, None) => Err(Error::new(ErrorKind::Io)),
        };
        r.map_err(|e| e.object(&self.label))
    }

    /// Opens the existing System V segment for `key` (which needs read permission on it: the
    /// kernel checks it now, so a user who may not read the segment is refused here).
    pub fn open_sysv(key: &SysvKey) -> Result<Segment, Error> {
        let label = key_label(key);
        let k = key.resolve(FTOK_PROJECT).map_err(|e| e.object(&label))?;
        // Asking for read permission makes the kernel check it now: a user who may not read
        // the segment is refused here, not only when mapping it.
        let id = procom_sys::mapping::sysv_shmget(k, 0, false, 0o400)
            .map_err(|e| Error::os("open it", e).object(&label))?;
        Ok(Segment::sysv(label, id, false))
    }

    /// The handle of System V segment `id`; `owner` removes it on drop.
    fn sysv(label: String, id: i32, owner: bool) -> Segment {
        Segment {
            kind: Kind::SysV,
            label,
            name: None,
            fd: None,
            sysv_id: Some(id),
            writable: true,
            owner,
        }
    }

    /// Which kernel object backs the segment.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The segment's descriptor (POSIX and memfd), to pass to a child.
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.fd.as_ref().map(AsFd::as_fd)
    }

    /// The POSIX name of a segment this process created and will remove, for removal from
    /// another thread; `None` for the rest.
    pub(crate) fn cleanup(&self) -> Option<crate::Cleanup> {
        let (name, fd) = (self.name.as_ref()?, self.fd()?);
        let st = rustix::fs::fstat(fd).ok()?;
        self.owner
            .then(|| crate::Cleanup::new(format!("/dev/shm{name}").into(), (st.st_dev, st.st_ino)))
    }

    /// Size, owner, mode (and attach count for System V, seals for memfd).
    pub fn info(&self) -> Result<Info, Error> {
        if let Some(id) = self.sysv_id {
            let st = procom_sys::mapping::sysv_shm_stat(id)
                .map_err(|e| Error::os("read its status", e).object(&self.label))?;
            return Ok(Info {
                kind: Kind::SysV,
                size: st.size as u64,
                uid: st.uid,
                gid: st.gid,
                mode: st.mode,
                attached: Some(st.attached),
                sealed: None,
            });
        }
        let fd = self
            .fd()
            .ok_or_else(|| Error::new(ErrorKind::Io).object(&self.label))?;
        let st = rustix::fs::fstat(fd)
            .map_err(|e| Error::os("read its status", e.into()).object(&self.label))?;
        let sealed = (self.kind == Kind::Memfd).then(|| {
            rustix::fs::fcntl_get_seals(fd)
                .map(|s| s.contains(SealFlags::SHRINK))
                .unwrap_or(false)
        });
        Ok(Info {
            kind: self.kind,
            size: st.st_size as u64,
            uid: st.st_uid,
            gid: st.st_gid,
            mode: st.st_mode & 0o777,
            attached: None,
            sealed,
        })
    }

    /// Maps the whole segment, read-write if it was opened so.
    pub fn map(&self) -> Result<Mapping, Error> {
        self.map_with(self.writable)
    }

    /// Maps the whole segment read-only.
    pub fn map_read_only(&self) -> Result<Mapping, Error> {
        self.map_with(false)
    }

    fn map_with(&self, writable: bool) -> Result<Mapping, Error> {
        let size = self.info()?.size;
        let len = usize::try_from(size)
            .map_err(|_| Error::new(ErrorKind::TooLarge).object(&self.label))?;
        if len == 0 {
            return Err(Error::new(ErrorKind::InvalidInput)
                .detail("is empty (0 bytes), so there is nothing to map")
                .object(&self.label));
        }
        let r = match (self.sysv_id, self.fd()) {
            (Some(id), _) => Mapping::attach_sysv(id, len, writable),
            (None, Some(fd)) => Mapping::map_fd(fd, len, writable),
            (None, None) => return Err(Error::new(ErrorKind::Io).object(&self.label)),
        };
        r.map_err(|e| {
            if e.raw_os_error() == Some(rustix::io::Errno::NOMEM.raw_os_error()) {
                return Error::new(ErrorKind::LimitReached)
                    .detail(format!(
                        "could not map its {len} bytes: this process's address space (RLIMIT_AS, ulimit -v), its count of mappings (vm.max_map_count) or the system's memory has no room for them; raise the limit, or make it smaller"
                    ))
                    .object(&self.label);
            }
            Error::os("map it", e).object(&self.label)
        })
    }

    /// Leaves the named object in place when this handle is dropped (it stays until removed
    /// or a reboot); returns the handle.
    pub fn keep(mut self) -> Segment {
        self.owner = false;
        self
    }

    /// Removes the object now (the name for POSIX; the segment, once detached, for System V).
    ///
    /// A POSIX name is removed only while it still refers to this segment: if it was removed
    /// and re-created by someone else, the new segment is left in place and this is
    /// `NotFound`.
    pub fn remove(mut self) -> Result<(), Error> {
        self.owner = false;
        self.remove_object()
    }

    /// Removes the name now, if it still names this segment, and disarms removal on drop.
    pub(crate) fn remove_name_now(&mut self) -> Result<(), Error> {
        self.owner = false;
        self.remove_object()
    }

    /// Whether the POSIX name still refers to the object behind our descriptor (compared by
    /// device and inode): someone may have removed it and another process created a new
    /// segment under the same name, which is not ours to remove.
    fn still_named(&self, name: &str, fd: BorrowedFd<'_>) -> Result<bool, Error> {
        let ours = rustix::fs::fstat(fd)
            .map_err(|e| Error::os("read its status", e.into()).object(&self.label))?;
        // `stat` needs no permission on the file itself.
        match rustix::fs::statat(
            rustix::fs::CWD,
            name_path(name),
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        ) {
            Ok(st) => Ok(st.st_dev == ours.st_dev && st.st_ino == ours.st_ino),
            Err(rustix::io::Errno::NOENT) => Ok(false),
            Err(e) => Err(Error::os("look up its name", e.into()).object(&self.label)),
        }
    }

    fn remove_object(&self) -> Result<(), Error> {
        if let Some(name) = &self.name {
            // The inode is pinned by our descriptor, so it cannot be recycled for an impostor
            // while we compare. (Only someone outside procom removing the name and creating a
            // new one between this check and the unlink could still lose theirs.)
            if let Some(fd) = self.fd()
                && !self.still_named(name, fd)?
            {
                return Err(Error::new(ErrorKind::NotFound)
                    .detail("its name was removed or now refers to another segment; that one is left alone")
                    .object(&self.label));
            }
            return rustix::fs::unlink(name_path(name))
                .map_err(|e| Error::os("remove it", e.into()).object(&self.label));
        }
        if let Some(id) = self.sysv_id {
            return procom_sys::mapping::sysv_shm_remove(id)
                .map_err(|e| Error::os("remove it", e).object(&self.label));
        }
        Ok(())
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        if self.owner {
            let _ = self.remove_object();
        }
    }
}

/// Removes the POSIX segment `name`.
///
/// Only a segment (a regular file in /dev/shm) is removed: a symbolic link, FIFO or directory
/// someone planted at the name is [`ErrorKind::WrongType`] and stays.
pub fn remove(name: &str) -> Result<(), Error> {
    check_name(name, "shared-memory")?;
    let label = format!("shm {name}");
    check_removable(&name_path(name), "shared-memory segment").map_err(|e| e.object(&label))?;
    rustix::fs::unlink(name_path(name)).map_err(|e| Error::os("remove it", e.into()).object(&label))
}

/// Removes the System V segment for `key`.
pub fn remove_sysv(key: &SysvKey) -> Result<(), Error> {
    Segment::open_sysv(key)?.remove()
}

/// Removes the System V segment whose id is `id` (the `shmid` ipcs shows), whatever its key:
/// it goes once the last process detaches. Ids are never shared between segments, queues and
/// semaphore sets, so no other kind of object is touched. An id no segment has is
/// [`ErrorKind::NotFound`]; only the segment's owner, its creator or root may remove it
/// ([`ErrorKind::PermissionDenied`]).
#[doc(alias = "IPC_RMID")]
pub fn remove_sysv_id(id: i32) -> Result<(), Error> {
    let object = format!("shmid:{id}");
    if id < 0 {
        return Err(Error::new(ErrorKind::InvalidInput)
            .detail("a segment id is 0 or more")
            .object(object));
    }
    procom_sys::mapping::sysv_shm_remove(id)
        .map_err(|e| crate::error::sysv_removal(e, "shared-memory segment").object(object))
}
