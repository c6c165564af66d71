//! Names in /dev/shm: their syntax, and opening, creating and removing by name without being
//! fooled by whatever another user planted there (a symbolic link, a FIFO, a directory).

use std::os::fd::OwnedFd;

use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::endpoint::IPC_NAME_MAX;
use crate::error::{Error, ErrorKind};

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
pub(super) fn name_path(name: &str) -> String {
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
pub(super) fn open_name(name: &str, access: OFlags, what: &str) -> Result<OwnedFd, Error> {
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
pub(super) fn create_name(name: &str, mode: u32) -> Result<OwnedFd, Error> {
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
