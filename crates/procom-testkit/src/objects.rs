//! Named objects as the kernel shows them ([`Seen`]): to check the mode procom gave what it
//! created, and that an object someone else planted is unchanged after procom met it.

use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

/// One object's identity and state: its inode (or System V id), type and permission bits,
/// owner, and content (a regular file's bytes, a System V object's whole line in
/// `/proc/sysvipc`, a POSIX queue's message count). Two equal values mean nothing was
/// replaced, re-owned, chmodded or written in between.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// Inode number, or the System V id.
    pub ino: u64,
    /// File type and permission bits (`st_mode`), or a System V object's permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// What it holds (see [`Seen`]).
    pub content: Vec<u8>,
}

impl Seen {
    /// The permission bits alone.
    pub fn perms(&self) -> u32 {
        self.mode & 0o7777
    }
}

/// The file at `path`, never following a link (`None`: nothing there). A regular file's bytes
/// are read through `O_NOFOLLOW|O_NONBLOCK`.
pub fn path_seen(path: &Path) -> Option<Seen> {
    let m = std::fs::symlink_metadata(path).ok()?;
    let mut content = Vec::new();
    if m.file_type().is_file() {
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc_flags())
            .open(path)
            .ok()?;
        f.read_to_end(&mut content).ok()?;
    } else if m.file_type().is_symlink() {
        content = std::fs::read_link(path)
            .ok()?
            .into_os_string()
            .into_encoded_bytes();
    }
    Some(Seen {
        ino: m.ino(),
        mode: m.mode(),
        uid: m.uid(),
        content,
    })
}

fn libc_flags() -> i32 {
    (rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32
}

/// Which System V table an object is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sysv {
    /// Message queues (`/proc/sysvipc/msg`).
    Msg,
    /// Shared-memory segments (`/proc/sysvipc/shm`).
    Shm,
    /// Semaphore sets (`/proc/sysvipc/sem`).
    Sem,
}

/// The System V object with `key`, from `/proc/sysvipc` (`None`: there is none).
pub fn sysv_seen(table: Sysv, key: i32) -> Option<Seen> {
    let file = match table {
        Sysv::Msg => "/proc/sysvipc/msg",
        Sysv::Shm => "/proc/sysvipc/shm",
        Sysv::Sem => "/proc/sysvipc/sem",
    };
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().skip(1).find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.first()?.parse::<i32>().ok()? != key {
            return None;
        }
        // key, id, perms, then the sizes; the uid is the column after the pids.
        let uid_col = match table {
            Sysv::Msg => 7,
            Sysv::Shm => 7,
            Sysv::Sem => 4,
        };
        Some(Seen {
            ino: cols.get(1)?.parse().ok()?,
            mode: u32::from_str_radix(cols.get(2)?, 8).ok()?,
            uid: cols.get(uid_col)?.parse().ok()?,
            content: line.as_bytes().to_vec(),
        })
    })
}

/// The POSIX message queue `name` (like `/jobs`), opened by name for nothing but `fstat` and
/// its attributes (`None`: there is none).
pub fn queue_seen(name: &str) -> Option<Seen> {
    let q = procom::mq::Queue::open_with(name, true, false).ok()?;
    let count = q.attributes().ok()?.count;
    let fd = q.into_fd()?;
    let st = rustix::fs::fstat(&fd).ok()?;
    Some(Seen {
        ino: st.st_ino,
        mode: st.st_mode,
        uid: st.st_uid,
        content: count.to_string().into_bytes(),
    })
}
