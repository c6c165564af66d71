//! Named pipes (FIFOs): `mkfifo myPipe`, then `echo hello > myPipe` and `cat < myPipe`.
//!
//! A FIFO is a pipe with a name in the filesystem, so unrelated processes can use it. As the
//! classic tour of Linux IPC shows, opening one for writing waits until some process opens it for reading (and the
//! other way round); [`open_write`] keeps that behaviour, while [`try_open_write`] and
//! [`open_write_timeout`] fail with a clear "no reader" error instead of waiting forever.
//!
//! ```
//! # fn main() -> Result<(), procom::Error> {
//! use std::io::{Read, Write};
//! let path = std::env::temp_dir().join(format!("procom-doc-fifo-{}", std::process::id()));
//! let fifo = procom::fifo::Fifo::create(&path)?; // mode 0600, removed on drop
//! let writer = std::thread::spawn({
//!     let path = path.clone();
//!     move || -> Result<(), procom::Error> {
//!         let mut w = procom::fifo::open_write(&path)?; // waits for the reader
//!         w.write_all(b"hello").map_err(|e| procom::Error::os("write", e))
//!     }
//! });
//! let mut r = procom::fifo::open_read(&path)?;
//! let mut got = String::new();
//! r.read_to_string(&mut got).map_err(|e| procom::Error::os("read", e))?;
//! writer.join().unwrap()?;
//! assert_eq!(got, "hello");
//! drop(fifo);
//! # Ok(()) }
//! ```
//!
//! Safety rules, all enforced here:
//! - A FIFO is created with mode 0600 whatever the umask (it is `fchmod`ed after creation),
//!   and creation never adopts an existing file: an existing path is
//!   [`ErrorKind::AlreadyExists`].
//! - Opening never follows a symbolic link, and a path that is not a FIFO (a regular file, a
//!   directory, a socket…) is [`ErrorKind::WrongType`]; nothing is opened, truncated or
//!   removed.
//! - The creator ([`Fifo`]) removes the FIFO when dropped, unless told to [`Fifo::keep`] it,
//!   and only if the path still names the FIFO it created. Openers never remove.
//!
//! One reader at a time, from the start: a FIFO is one byte stream shared by everyone who opens
//! it. When a reader stops (it exits, or is killed) while the FIFO is still open elsewhere —
//! another writer, or a child a writer is spawning that has not yet closed its inherited
//! descriptors — the bytes it had not read stay in the FIFO for the next reader, and they may
//! begin inside a message: the part of one the old reader had already taken, or one a writer
//! was cut off in when the reader went. Framing cannot find a boundary in the middle of a
//! byte stream, so the next reader would take them for the start of a message. After a reader
//! dies, remove the FIFO and create it again (a new FIFO starts empty) rather than opening it
//! again with a new reader.
//!
//! # References
//! - [`mkfifo(3)`](https://man7.org/linux/man-pages/man3/mkfifo.3.html)
//! - [`fifo(7)`](https://man7.org/linux/man-pages/man7/fifo.7.html)

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::fs::{AtFlags, CWD, FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::cleanup::{Cleanup, DirEntry};
use crate::ends::{PipeReader, PipeWriter};
use crate::error::{Error, ErrorKind, ObjectKind};
use crate::stream::deadline_after;

/// The mode FIFOs are created with unless another is asked for.
pub const DEFAULT_MODE: u32 = 0o600;

fn object(path: &Path) -> String {
    format!("fifo:{}", path.display())
}

fn describe(ft: FileType) -> &'static str {
    match ft {
        FileType::RegularFile => "is a regular file, not a FIFO",
        FileType::Directory => "is a directory, not a FIFO",
        FileType::Symlink => "is a symbolic link, which procom never follows to a FIFO",
        FileType::Socket => "is a socket, not a FIFO (use a unix: endpoint)",
        FileType::CharacterDevice | FileType::BlockDevice => "is a device, not a FIFO",
        _ => "is not a FIFO",
    }
}

/// Checks, without following a symlink, that `path` names a FIFO; returns its (dev, ino).
fn check(path: &Path) -> Result<(u64, u64), Error> {
    let st = rustix::fs::statat(CWD, path, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| Error::os("look it up", e.into()).object_of(ObjectKind::Fifo, object(path)))?;
    match FileType::from_raw_mode(st.st_mode) {
        FileType::Fifo => Ok((st.st_dev, st.st_ino)),
        other => Err(Error::new(ErrorKind::WrongType)
            .detail(describe(other))
            .object_of(ObjectKind::Fifo, object(path))),
    }
}

/// Opens the FIFO at `path` with `flags`, refusing symlinks and anything that is not a FIFO.
fn open(path: &Path, flags: OFlags, what: &str) -> Result<rustix::fd::OwnedFd, Error> {
    let id = check(path)?;
    let fd = loop {
        match rustix::fs::open(
            path,
            flags | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY,
            Mode::empty(),
        ) {
            Ok(fd) => break fd,
            Err(Errno::INTR) => continue,
            Err(Errno::LOOP) => {
                return Err(Error::new(ErrorKind::WrongType)
                    .detail(describe(FileType::Symlink))
                    .object_of(ObjectKind::Fifo, object(path)));
            }
            Err(e) => {
                return Err(Error::os(what, e.into()).object_of(ObjectKind::Fifo, object(path)));
            }
        }
    };
    let st = rustix::fs::fstat(&fd)
        .map_err(|e| Error::os(what, e.into()).object_of(ObjectKind::Fifo, object(path)))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::Fifo || (st.st_dev, st.st_ino) != id {
        return Err(Error::new(ErrorKind::WrongType)
            .detail("was replaced by something else while it was being opened")
            .object_of(ObjectKind::Fifo, object(path)));
    }
    Ok(fd)
}

fn set_blocking(fd: &rustix::fd::OwnedFd, path: &Path) -> Result<(), Error> {
    let flags = rustix::fs::fcntl_getfl(fd).map_err(|e| {
        Error::os("read its flags", e.into()).object_of(ObjectKind::Fifo, object(path))
    })?;
    rustix::fs::fcntl_setfl(fd, flags - OFlags::NONBLOCK).map_err(|e| {
        Error::os("make it blocking", e.into()).object_of(ObjectKind::Fifo, object(path))
    })
}

/// Opens the FIFO for reading, waiting (like `cat < myPipe`) until a writer opens it.
pub fn open_read(path: impl AsRef<Path>) -> Result<PipeReader, Error> {
    let path = path.as_ref();
    open(path, OFlags::RDONLY, "open it for reading").map(PipeReader::from)
}

/// Opens the FIFO for reading at once, without waiting for a writer.
///
/// Until a writer has opened the FIFO, `poll` reports nothing on the returned end; a plain
/// `read` returns end-of-file at once, so wait for readiness first (the channel layer does).
/// The descriptor is left non-blocking.
pub(crate) fn open_read_now(path: &Path) -> Result<rustix::fd::OwnedFd, Error> {
    open(
        path,
        OFlags::RDONLY | OFlags::NONBLOCK,
        "open it for reading",
    )
}

/// Opens the FIFO for writing, waiting (like `echo hello > myPipe`) until a reader opens it.
pub fn open_write(path: impl AsRef<Path>) -> Result<PipeWriter, Error> {
    open(path.as_ref(), OFlags::WRONLY, "open it for writing").map(PipeWriter::from)
}

/// Opens the FIFO for writing if a reader has it open now; otherwise fails with
/// [`ErrorKind::NoReader`] without waiting.
pub fn try_open_write(path: impl AsRef<Path>) -> Result<PipeWriter, Error> {
    open_write_deadline(path.as_ref(), Some(Instant::now()))
}

/// Opens the FIFO for writing, waiting at most `timeout` for a reader; then fails with
/// [`ErrorKind::Timeout`].
///
/// The kernel gives no notification that a reader has arrived, so this retries a
/// non-blocking open with a backoff from 1 ms up to 20 ms.
pub fn open_write_timeout(path: impl AsRef<Path>, timeout: Duration) -> Result<PipeWriter, Error> {
    open_write_deadline(path.as_ref(), deadline_after(timeout))
}

/// Opens the FIFO at `path` for writing, waiting until `deadline` at most for a reader (`None`:
/// as long as it takes); [`ErrorKind::NoReader`] if none came.
pub fn open_write_deadline(
    path: impl AsRef<Path>,
    deadline: Option<Instant>,
) -> Result<PipeWriter, Error> {
    let path = path.as_ref();
    let Some(deadline) = deadline else {
        return open_write(path);
    };
    let started = Instant::now();
    let mut backoff = Duration::from_millis(1);
    loop {
        match open(
            path,
            OFlags::WRONLY | OFlags::NONBLOCK,
            "open it for writing",
        ) {
            Ok(fd) => {
                set_blocking(&fd, path)?;
                return Ok(PipeWriter::from(fd));
            }
            Err(e) if e.kind() == ErrorKind::NoReader => {
                let now = Instant::now();
                if now >= deadline {
                    let waited = now.duration_since(started);
                    return Err(if waited.is_zero() || deadline <= started {
                        Error::new(ErrorKind::NoReader).object_of(ObjectKind::Fifo, object(path))
                    } else {
                        Error::new(ErrorKind::Timeout)
                            .detail(format!(
                                "no process opened it for reading within {}",
                                crate::endpoint::format_duration(deadline - started)
                            ))
                            .object_of(ObjectKind::Fifo, object(path))
                    });
                }
                std::thread::sleep(backoff.min(deadline - now));
                backoff = (backoff * 2).min(Duration::from_millis(20));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Removes the FIFO at `path`, refusing anything that is not a FIFO (a symlink included).
pub fn remove(path: impl AsRef<Path>) -> Result<(), Error> {
    let path = path.as_ref();
    let (entry, _) = fifo_entry(path)?;
    entry
        .unlink()
        .map_err(|e| Error::os("remove it", e.into()).object_of(ObjectKind::Fifo, object(path)))
}

/// The FIFO at `path` as a name in its directory, opened once (see [`DirEntry`]), and its
/// device and inode; anything but a FIFO (a symlink included) is `WrongType`.
fn fifo_entry(path: &Path) -> Result<(DirEntry, (u64, u64)), Error> {
    let fail = |e: rustix::io::Errno| match e {
        rustix::io::Errno::ISDIR => Error::new(ErrorKind::WrongType)
            .detail(describe(FileType::Directory))
            .object_of(ObjectKind::Fifo, object(path)),
        e => Error::os("look it up", e.into()).object_of(ObjectKind::Fifo, object(path)),
    };
    let entry = DirEntry::of(path).map_err(fail)?;
    let st = entry.stat().map_err(fail)?;
    match FileType::from_raw_mode(st.st_mode) {
        FileType::Fifo => Ok((entry, (st.st_dev, st.st_ino))),
        other => Err(Error::new(ErrorKind::WrongType)
            .detail(describe(other))
            .object_of(ObjectKind::Fifo, object(path))),
    }
}

/// A FIFO this process created: removed when dropped, unless [kept](Fifo::keep).
#[derive(Debug)]
pub struct Fifo {
    path: PathBuf,
    id: (u64, u64),
    keep: bool,
    /// The read end opened during creation (to fix the mode through a descriptor, immune to
    /// the path being swapped); kept only for the channel layer's receiver.
    reader: Option<rustix::fd::OwnedFd>,
    /// An `O_PATH` descriptor that keeps the inode (and so its number) from being reused.
    _anchor: rustix::fd::OwnedFd,
}

impl Fifo {
    /// Creates a FIFO at `path` with mode 0600.
    #[doc(alias = "mkfifo")]
    pub fn create(path: impl AsRef<Path>) -> Result<Fifo, Error> {
        Fifo::create_with_mode(path, DEFAULT_MODE)
    }

    /// Creates a FIFO at `path` with exactly `mode` (permission bits only), whatever the umask.
    pub fn create_with_mode(path: impl AsRef<Path>, mode: u32) -> Result<Fifo, Error> {
        let mut fifo = Fifo::create_inner(path.as_ref(), mode)?;
        drop(fifo.reader.take());
        Ok(fifo)
    }

    /// Gives the FIFO to group `gid` (its owner and mode stay): with a mode like 0o660, the
    /// group's members may then open it. Only its owner may, and only to a group it belongs to
    /// unless privileged ([`ErrorKind::PermissionDenied`]).
    #[doc(alias = "fchown")]
    pub fn set_group(&self, gid: u32) -> Result<(), Error> {
        crate::access::chown_fd(&self._anchor, gid)
            .map_err(|e| e.object_of(ObjectKind::Fifo, object(&self.path)))
    }

    /// Creates the FIFO and keeps the read end that was opened to fix its mode.
    pub(crate) fn create_inner(path: &Path, mode: u32) -> Result<Fifo, Error> {
        let path = path.to_path_buf();
        if mode & !0o777 != 0 {
            return Err(Error::new(ErrorKind::InvalidInput)
                .detail(format!(
                    "mode {mode:#o} has bits beyond the permission bits 0777"
                ))
                .object_of(ObjectKind::Fifo, object(&path)));
        }
        let perms = Mode::from_raw_mode(mode);
        // The directory, opened before the FIFO is made: with no descriptor to spare nothing is
        // created, and a FIFO whose anchor below cannot be opened is removed through it.
        let entry = match DirEntry::of(&path) {
            Ok(entry) => Some(entry),
            Err(e @ (Errno::MFILE | Errno::NFILE)) => {
                return Err(
                    Error::os("create it", e.into()).object_of(ObjectKind::Fifo, object(&path))
                );
            }
            // A path with no last name (`/`): mknod below says what is wrong with it.
            Err(_) => None,
        };
        match rustix::fs::mknodat(CWD, &path, FileType::Fifo, perms, 0) {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                return Err(Error::new(ErrorKind::AlreadyExists)
                    .detail("already exists; procom does not adopt an existing file (remove it, or open it instead)")
                    .object_of(ObjectKind::Fifo, object(&path)))
            }
            Err(e) => return Err(Error::os("create it", e.into()).object_of(ObjectKind::Fifo, object(&path))),
        }
        // An O_PATH descriptor pins the inode, so its number cannot be reused by a file that
        // replaces ours at the path: (dev, ino) then identifies our FIFO for as long as we live.
        let anchor = rustix::fs::open(
            &path,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| {
            // Ours, unless someone who may write the directory swapped it already: removed
            // only if it is still a FIFO of this user.
            if let Some(entry) = &entry
                && entry.stat().is_ok_and(|st| {
                    FileType::from_raw_mode(st.st_mode) == FileType::Fifo
                        && st.st_uid == rustix::process::geteuid().as_raw()
                })
            {
                let _ = entry.unlink();
            }
            Error::os("open it after creating it", e.into())
                .object_of(ObjectKind::Fifo, object(&path))
        })?;
        drop(entry);
        let st = rustix::fs::fstat(&anchor).map_err(|e| {
            Error::os("inspect it", e.into()).object_of(ObjectKind::Fifo, object(&path))
        })?;
        if FileType::from_raw_mode(st.st_mode) != FileType::Fifo {
            return Err(Error::new(ErrorKind::WrongType)
                .detail("was replaced by something else right after it was created")
                .object_of(ObjectKind::Fifo, object(&path)));
        }
        let mut fifo = Fifo {
            path,
            id: (st.st_dev, st.st_ino),
            keep: false,
            reader: None,
            _anchor: anchor,
        };
        // From here on it is ours: a failure below removes it on drop.
        let fd = open(
            &fifo.path,
            OFlags::RDONLY | OFlags::NONBLOCK,
            "open it after creating it",
        )?;
        let st = rustix::fs::fstat(&fd).map_err(|e| {
            Error::os("inspect it", e.into()).object_of(ObjectKind::Fifo, object(&fifo.path))
        })?;
        if (st.st_dev, st.st_ino) != fifo.id {
            fifo.keep = true; // not ours any more
            return Err(Error::new(ErrorKind::WrongType)
                .detail("was replaced by something else right after it was created")
                .object_of(ObjectKind::Fifo, object(&fifo.path)));
        }
        rustix::fs::fchmod(&fd, perms).map_err(|e| {
            Error::os("set its mode", e.into()).object_of(ObjectKind::Fifo, object(&fifo.path))
        })?;
        fifo.reader = Some(fd);
        Ok(fifo)
    }

    /// Where the FIFO is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Leaves the FIFO in place when this handle is dropped (it stays until removed); returns
    /// the handle, as every `keep` in procom does.
    pub fn keep(mut self) -> Fifo {
        self.keep = true;
        self
    }

    /// Removes the FIFO now, if the path still names the FIFO this handle created.
    pub fn remove(mut self) -> Result<(), Error> {
        self.keep = true;
        self.remove_if_ours()
    }

    /// Opens the FIFO for reading, waiting until a writer opens it.
    pub fn open_read(&self) -> Result<PipeReader, Error> {
        open_read(&self.path)
    }

    /// Opens the FIFO for writing, waiting for a reader.
    pub fn open_write(&self) -> Result<PipeWriter, Error> {
        open_write(&self.path)
    }

    pub(crate) fn take_reader(&mut self) -> Option<rustix::fd::OwnedFd> {
        self.reader.take()
    }

    fn remove_if_ours(&self) -> Result<(), Error> {
        match fifo_entry(&self.path) {
            Ok((entry, id)) if id == self.id => entry.unlink().map_err(|e| {
                Error::os("remove it", e.into()).object_of(ObjectKind::Fifo, object(&self.path))
            }),
            Ok(_) | Err(_) => Ok(()), // gone or replaced: not ours to remove
        }
    }
}

impl Fifo {
    /// Its name, for removal from another thread; `None` once kept.
    pub(crate) fn cleanup(&self) -> Option<Cleanup> {
        (!self.keep).then(|| Cleanup::new(self.path.clone(), self.id))
    }
}

impl Drop for Fifo {
    fn drop(&mut self) {
        if !self.keep {
            let _ = self.remove_if_ours();
        }
    }
}
