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

use std::marker::PhantomData;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{FileType, Mode, OFlags, SealFlags};
use rustix::io::Errno;

use crate::endpoint::{IPC_NAME_MAX, SysvKey};
use crate::error::{Error, ErrorKind};

pub use procom_sys::mapping::Mapping;

/// The mode named segments get unless asked otherwise.
pub const DEFAULT_MODE: u32 = 0o600;

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

pub(crate) fn check_name(name: &str, what: &str) -> Result<(), Error> {
    let bad = |why: &str| {
        Err(Error::new(ErrorKind::InvalidInput)
            .detail(format!("`{name}` is not a valid {what} name: {why}")))
    };
    if !name.starts_with('/') {
        return bad("it must start with '/' (like /jobs)");
    }
    if name.len() < 2 || name[1..].contains('/') || name.contains('\0') {
        return bad("it needs at least one character after '/', and no other '/' or NUL");
    }
    if name.len() - 1 > IPC_NAME_MAX {
        return bad("it is longer than 255 bytes after the '/'");
    }
    if name == "/." || name == "/.." {
        return bad("`.` and `..` name directories");
    }
    Ok(())
}

/// Where `shm_open` keeps the POSIX name `name` (glibc and rustix both use `/dev/shm`).
fn name_path(name: &str) -> String {
    format!("/dev/shm{name}")
}

/// The refusal of something that is not a shared-memory segment at a name: /dev/shm is
/// world-writable, so it may have been planted by another user.
fn not_a_segment(ft: FileType) -> Error {
    planted(ft, "shared-memory segment")
}

/// The refusal of `ft` found in /dev/shm where a `kind` (a regular file) was expected.
pub(crate) fn planted(ft: FileType, kind: &str) -> Error {
    let what = match ft {
        FileType::Symlink => {
            return Error::new(ErrorKind::WrongType).detail(
                "is a symbolic link; procom never follows a link in /dev/shm (someone may have planted it): remove it if it is not yours",
            );
        }
        FileType::Fifo => "a FIFO",
        FileType::Directory => "a directory",
        FileType::Socket => "a socket",
        FileType::CharacterDevice | FileType::BlockDevice => "a device",
        _ => "not a regular file",
    };
    Error::new(ErrorKind::WrongType).detail(format!(
        "is {what}, not a {kind} (someone may have planted it): remove it if it is not yours"
    ))
}

/// Checks, without following a symbolic link, that `path` (in /dev/shm) is a regular file, so
/// that removing it by name removes a `kind` and never a link, FIFO or directory someone
/// planted. (/dev/shm is sticky: only the owner of what is there could swap it between this
/// check and the removal, and a removal never follows a link.)
pub(crate) fn check_removable(path: &str, kind: &str) -> Result<(), Error> {
    let st = rustix::fs::statat(rustix::fs::CWD, path, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| Error::os("look it up", e.into()))?;
    match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => Ok(()),
        other => Err(planted(other, kind)),
    }
}

/// Opens the existing segment `name` as `shm_open` would, except that it never follows a
/// symbolic link, never blocks (a FIFO planted at the name would block an open for reading
/// until a writer came), and accepts only a regular file, as checked on the descriptor.
fn open_name(name: &str, access: OFlags, what: &str) -> Result<OwnedFd, Error> {
    let flags = access | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY;
    let fd = loop {
        match rustix::fs::open(name_path(name), flags, Mode::empty()) {
            Ok(fd) => break fd,
            Err(Errno::INTR) => continue,
            Err(Errno::LOOP) => return Err(not_a_segment(FileType::Symlink)),
            Err(Errno::ISDIR) => return Err(not_a_segment(FileType::Directory)),
            // What open(2) says of a socket (or of a device with nothing behind it).
            Err(Errno::NXIO) => return Err(not_a_segment(FileType::Socket)),
            Err(e) => return Err(Error::os(what, e.into())),
        }
    };
    let st = rustix::fs::fstat(&fd).map_err(|e| Error::os("read its status", e.into()))?;
    match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => {}
        other => return Err(not_a_segment(other)),
    }
    // Without O_NONBLOCK from here on, as a plain shm_open would leave it (on a regular file
    // it changes nothing today, but the descriptor may be handed to other code).
    let fl = rustix::fs::fcntl_getfl(&fd).map_err(|e| Error::os("read its flags", e.into()))?;
    rustix::fs::fcntl_setfl(&fd, fl - OFlags::NONBLOCK)
        .map_err(|e| Error::os("make it blocking", e.into()))?;
    Ok(fd)
}

/// Creates the segment `name` exclusively: anything already at the name (a segment, or
/// whatever someone planted, a dangling symbolic link included) is `AlreadyExists`.
fn create_name(name: &str, mode: u32) -> Result<OwnedFd, Error> {
    let flags = OFlags::CREATE
        | OFlags::EXCL
        | OFlags::RDWR
        | OFlags::NOFOLLOW
        | OFlags::CLOEXEC
        | OFlags::NOCTTY;
    loop {
        match rustix::fs::open(name_path(name), flags, Mode::from_raw_mode(mode & 0o777)) {
            Ok(fd) => return Ok(fd),
            Err(Errno::INTR) => continue,
            Err(Errno::EXIST) => {
                return Err(Error::new(ErrorKind::AlreadyExists).detail(
                    "already exists; procom does not adopt an existing segment (remove it, or open it instead)",
                ));
            }
            Err(e) => return Err(Error::os("create it", e.into())),
        }
    }
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
        let label = key_label(key);
        check_size(size as u64, &label)?;
        let k = key
            .resolve(FTOK_PROJECT)
            .map_err(|e| e.object(key_label(key)))?;
        let id = procom_sys::mapping::sysv_shmget(k, size, true, DEFAULT_MODE).map_err(|e| match e.raw_os_error() {
            Some(code) if code == rustix::io::Errno::EXIST.raw_os_error() => Error::new(ErrorKind::AlreadyExists)
                .detail("already exists; procom does not adopt an existing segment")
                .object(&label),
            Some(code) if code == rustix::io::Errno::INVAL.raw_os_error() => Error::new(ErrorKind::LimitReached)
                .detail(format!("{size} bytes is outside the kernel's limits (see /proc/sys/kernel/shmmax and shmall)"))
                .object(&label),
            _ => Error::os("create it", e).object(&label),
        })?;
        Ok(Segment {
            kind: Kind::SysV,
            label,
            name: None,
            fd: None,
            sysv_id: Some(id),
            writable: true,
            owner: true,
        })
    }

    /// Opens the existing System V segment for `key`.
    pub fn open_sysv(key: &SysvKey) -> Result<Segment, Error> {
        let label = key_label(key);
        let k = key
            .resolve(FTOK_PROJECT)
            .map_err(|e| e.object(key_label(key)))?;
        let id = procom_sys::mapping::sysv_shmget(k, 0, false, 0)
            .map_err(|e| Error::os("open it", e).object(&label))?;
        Ok(Segment {
            kind: Kind::SysV,
            label,
            name: None,
            fd: None,
            sysv_id: Some(id),
            writable: true,
            owner: false,
        })
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
        r.map_err(|e| Error::os("map it", e).object(&self.label))
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

/// A plain-old-data value of type `T` at a fixed offset of a mapping, shared between processes
/// without `unsafe` in user code.
///
/// `load` and `store` copy the whole value; a value another process is writing at the same
/// moment may be read half-old, half-new, so guard multi-field updates with a semaphore (see
/// [`crate::sem`]) — shared memory needs that protection, since nothing in it is ordered or exclusive by itself.
#[derive(Debug)]
pub struct TypedRegion<'m, T> {
    mapping: &'m Mapping,
    offset: usize,
    _t: PhantomData<T>,
}

impl<'m, T: bytemuck::Pod> TypedRegion<'m, T> {
    /// The `T` at `offset` in `mapping` (which must hold it entirely).
    pub fn new(mapping: &'m Mapping, offset: usize) -> Result<TypedRegion<'m, T>, Error> {
        let size = std::mem::size_of::<T>();
        if offset
            .checked_add(size)
            .is_none_or(|end| end > mapping.len())
        {
            return Err(Error::new(ErrorKind::InvalidInput).detail(format!(
                "a {size}-byte value at offset {offset} does not fit in the {}-byte mapping",
                mapping.len()
            )));
        }
        Ok(TypedRegion {
            mapping,
            offset,
            _t: PhantomData,
        })
    }

    /// Copies the value out.
    pub fn load(&self) -> Result<T, Error> {
        let mut v = T::zeroed();
        self.mapping
            .read(self.offset, bytemuck::bytes_of_mut(&mut v))
            .map_err(|e| Error::os("read the shared value", e))?;
        if self.mapping.faulted() {
            return Err(Error::new(ErrorKind::Corrupted)
                .detail("the segment was truncated under the mapping"));
        }
        Ok(v)
    }

    /// Copies `value` in.
    pub fn store(&self, value: &T) -> Result<(), Error> {
        self.mapping
            .write(self.offset, bytemuck::bytes_of(value))
            .map_err(|e| Error::os("write the shared value", e))?;
        if self.mapping.faulted() {
            return Err(Error::new(ErrorKind::Corrupted)
                .detail("the segment was truncated under the mapping"));
        }
        Ok(())
    }

    /// Loads, applies `f`, stores; returns what `f` returned. Not atomic: hold a lock.
    pub fn update<R>(&self, f: impl FnOnce(&mut T) -> R) -> Result<R, Error> {
        let mut v = self.load()?;
        let r = f(&mut v);
        self.store(&v)?;
        Ok(r)
    }
}

/// The header at the start of every segment that carries a procom structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
pub struct Header {
    /// `PROCOMSH` for a segment, other values for specific structures.
    pub magic: [u8; 8],
    /// Layout version of the structure.
    pub version: u32,
    /// Reserved, zero.
    pub flags: u32,
    /// Bytes the structure occupies, header included.
    pub layout_size: u64,
}

/// Bytes of [`Header`].
pub const HEADER_SIZE: usize = std::mem::size_of::<Header>();

impl Header {
    /// Checks a header read from a segment of `segment_len` bytes against what `magic` and
    /// `version` promise; the error names what is wrong.
    pub fn validate(&self, magic: &[u8; 8], version: u32, segment_len: usize) -> Result<(), Error> {
        let bad = |why: String| Err(Error::new(ErrorKind::Corrupted).detail(why));
        if &self.magic != magic {
            return bad(format!(
                "it does not start with procom's {} header (found {:?}); it belongs to another program",
                String::from_utf8_lossy(magic),
                String::from_utf8_lossy(&self.magic)
            ));
        }
        if self.version != version {
            return bad(format!(
                "its layout version is {}, and this procom reads version {version}",
                self.version
            ));
        }
        if self.layout_size as usize != segment_len {
            return bad(format!(
                "its header says {} bytes but the segment has {segment_len} (truncated or resized)",
                self.layout_size
            ));
        }
        Ok(())
    }
}
