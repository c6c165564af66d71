//! Semaphores: an integer changed only by two atomic operations, P (wait) and V (post).
//!
//! - **P** ([`Semaphore::wait`]): subtract 1; if that would go below zero, block until it can.
//!   Used *before* touching the shared resource.
//! - **V** ([`Semaphore::post`]): add 1, waking a blocked process. Used *after*.
//!
//! Initial value 1 makes a mutex (at most one process inside; [`Semaphore::acquire`] returns a
//! guard that posts on drop); initial value 0 makes an ordering (B waits until A posts).
//!
//! ```
//! # fn main() -> Result<(), procom::Error> {
//! use procom::sem::Semaphore;
//! let name = format!("/procom-doc-sem-{}", std::process::id());
//! let mutex = Semaphore::create(&name, 1)?; // removed on drop
//! {
//!     let _inside = mutex.acquire()?; // P
//!     assert_eq!(mutex.value()?, 0);
//! } // V on drop
//! assert_eq!(mutex.value()?, 1);
//! # Ok(()) }
//! ```
//!
//! Three kinds:
//! - [`Semaphore`]: POSIX named (`sem_open`), shared by name with any program using the same
//!   name; created 0600 and exclusively, removed by its creator on drop unless kept.
//! - [`SharedSemaphore`]: POSIX unnamed and process-shared (`sem_init`), placed in a shared
//!   [`Mapping`].
//! - [`SemSet`]: System V sets (`semget`/`semop`), several semaphores changed in one atomic
//!   operation, with `SEM_UNDO` so a holder that crashes has its operations undone.
//!
//! Every wait has a try and a timeout form; `EINTR` is retried against the original deadline.
//!
//! # References
//! - [`sem_overview(7)`](https://man7.org/linux/man-pages/man7/sem_overview.7.html)
//! - [`semop(2)`](https://man7.org/linux/man-pages/man2/semop.2.html)

use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use procom_sys::sem::{NamedSemaphore, SemOp, UnnamedSemaphore, Waited};

use crate::endpoint::SysvKey;
use crate::error::{Error, ErrorKind};
use crate::shm::{DEFAULT_MODE, Mapping, check_name};

fn waited(
    w: std::io::Result<Waited>,
    kind_when_blocked: ErrorKind,
    object: &str,
) -> Result<(), Error> {
    match w {
        Ok(Waited::Acquired) => Ok(()),
        Ok(Waited::WouldBlock) => Err(Error::new(kind_when_blocked)
            .detail(if kind_when_blocked == ErrorKind::Timeout {
                "its value stayed at 0 until the deadline"
            } else {
                "its value is 0, so waiting would block"
            })
            .object(object)),
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::IDRM.raw_os_error()) => {
            Err(Error::new(ErrorKind::PeerGone)
                .detail("was removed while waiting")
                .object(object))
        }
        Err(e) => Err(Error::os("wait on it", e).object(object)),
    }
}

/// A named POSIX semaphore.
#[derive(Debug)]
pub struct Semaphore {
    sem: NamedSemaphore,
    name: String,
    label: String,
    owner: bool,
}

impl Semaphore {
    /// Creates `name` (like `/lock`) with `value`, mode 0600, exclusively. The creator
    /// removes the name when dropped unless [`Semaphore::keep`] is called.
    #[doc(alias = "sem_open")]
    pub fn create(name: &str, value: u32) -> Result<Semaphore, Error> {
        Semaphore::create_with_mode(name, value, DEFAULT_MODE)
    }

    /// Creates `name` as [`Semaphore::create`] does, with exactly the permission bits `mode`
    /// (like 0o660: its group may wait and post too), whatever the umask.
    #[doc(alias = "sem_open")]
    pub fn create_with_mode(name: &str, value: u32, mode: u32) -> Result<Semaphore, Error> {
        check_name(name, "semaphore")?;
        let label = format!("semaphore {name}");
        let mode = crate::access::check_mode(mode).map_err(|e| e.object(&label))?;
        // Created 0600 at most (the umask can clear bits, never add any), then set exactly to
        // `mode` through the file glibc keeps in /dev/shm: never more open than asked.
        let sem = NamedSemaphore::create(name, mode & DEFAULT_MODE, value).map_err(|e| match e.raw_os_error() {
            Some(c) if c == rustix::io::Errno::EXIST.raw_os_error() => Error::new(ErrorKind::AlreadyExists)
                .detail("already exists; procom does not adopt an existing semaphore (remove it, or open it instead)")
                .object(&label),
            Some(c) if c == rustix::io::Errno::INVAL.raw_os_error() => Error::new(ErrorKind::InvalidInput)
                .detail(format!("{value} is above the largest semaphore value (SEM_VALUE_MAX)"))
                .object(&label),
            _ => Error::os("create it", e).object(&label),
        })?;
        let sem = Semaphore {
            sem,
            name: name.to_string(),
            label,
            owner: true,
        };
        match set_mode(&sem_path(name), mode) {
            // 0600 is the most the umask could have left: best effort there.
            Err(_) if mode == DEFAULT_MODE => {}
            // Dropping `sem` removes the name again.
            Err(e) => return Err(e.object(&sem.label)),
            Ok(()) => {}
        }
        Ok(sem)
    }

    /// Gives the semaphore (its file in /dev/shm) to group `gid`; its owner and mode stay.
    /// Only its owner may, and only to a group it belongs to unless privileged
    /// ([`ErrorKind::PermissionDenied`]).
    pub fn set_group(&self, gid: u32) -> Result<(), Error> {
        open_file(&sem_path(&self.name))
            .and_then(|fd| crate::access::chown_fd(&fd, gid))
            .map_err(|e| e.object(&self.label))
    }

    /// Opens the existing semaphore `name`.
    pub fn open(name: &str) -> Result<Semaphore, Error> {
        check_name(name, "semaphore")?;
        let label = format!("semaphore {name}");
        // Checked before glibc maps it; a file that is missing or not ours to read is
        // sem_open's to report, in its own words.
        if let Err(e) = open_file(&sem_path(name))
            && matches!(e.kind(), ErrorKind::WrongType | ErrorKind::Corrupted)
        {
            return Err(e.object(&label));
        }
        let sem = NamedSemaphore::open(name).map_err(|e| Error::os("open it", e).object(&label))?;
        Ok(Semaphore {
            sem,
            name: name.to_string(),
            label,
            owner: false,
        })
    }

    /// P: waits until the value is positive, then decrements it.
    #[doc(alias = "P")]
    #[doc(alias = "sem_wait")]
    pub fn wait(&self) -> Result<(), Error> {
        waited(self.sem.wait(None), ErrorKind::Timeout, &self.label)
    }

    /// P without waiting: [`ErrorKind::Empty`] if the value is 0.
    #[doc(alias = "sem_trywait")]
    pub fn try_wait(&self) -> Result<(), Error> {
        waited(
            self.sem.wait(Some(Duration::ZERO)),
            ErrorKind::Empty,
            &self.label,
        )
    }

    /// P waiting at most `timeout`: [`ErrorKind::Timeout`] if the value stayed 0.
    #[doc(alias = "sem_timedwait")]
    pub fn wait_timeout(&self, timeout: Duration) -> Result<(), Error> {
        if timeout.is_zero() {
            return waited(
                self.sem.wait(Some(Duration::ZERO)),
                ErrorKind::Timeout,
                &self.label,
            );
        }
        waited(
            self.sem.wait(Some(timeout)),
            ErrorKind::Timeout,
            &self.label,
        )
    }

    /// P waiting until `deadline` at most: [`ErrorKind::Timeout`] if the value stayed 0.
    pub fn wait_deadline(&self, deadline: Instant) -> Result<(), Error> {
        self.wait_timeout(deadline.saturating_duration_since(Instant::now()))
    }

    /// V: increments the value, waking one waiter.
    #[doc(alias = "V")]
    #[doc(alias = "sem_post")]
    pub fn post(&self) -> Result<(), Error> {
        self.sem
            .post()
            .map_err(|e| post_error(e).object(&self.label))
    }

    /// The current value.
    pub fn value(&self) -> Result<i32, Error> {
        self.sem
            .value()
            .map_err(|e| Error::os("read its value", e).object(&self.label))
    }

    /// P, returning a guard that does V when dropped (mutual exclusion with an initial 1).
    pub fn acquire(&self) -> Result<SemGuard<'_>, Error> {
        self.wait()?;
        Ok(SemGuard { sem: self })
    }

    /// The name, like `/lock`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Leaves the name in place when this handle is dropped (it stays until removed or a
    /// reboot); returns the handle.
    pub fn keep(mut self) -> Semaphore {
        self.owner = false;
        self
    }

    /// Removes the name now (processes that have it open keep using it).
    pub fn remove(mut self) -> Result<(), Error> {
        self.owner = false;
        remove(&self.name)
    }
}

impl Drop for Semaphore {
    fn drop(&mut self) {
        if self.owner {
            let _ = procom_sys::sem::sem_unlink(&self.name);
        }
    }
}

/// The largest value of a POSIX semaphore (`SEM_VALUE_MAX`, `INT_MAX` on Linux).
pub const VALUE_MAX: u32 = i32::MAX as u32;

/// The largest value of a member of a System V set (`SEMVMX`).
pub const SET_VALUE_MAX: u16 = 32767;

/// Why a V failed: `EOVERFLOW` is a semaphore at its maximum, which is said as such.
fn post_error(e: std::io::Error) -> Error {
    if e.raw_os_error() == Some(rustix::io::Errno::OVERFLOW.raw_os_error()) {
        return Error::new(ErrorKind::LimitReached).detail(format!(
            "is at its maximum value ({VALUE_MAX}, SEM_VALUE_MAX), so it cannot be posted; nothing was added"
        ));
    }
    Error::os("post to it", e)
}

/// Where glibc keeps the named semaphore `name` (`/lock` is `/dev/shm/sem.lock`).
fn sem_path(name: &str) -> String {
    format!("/dev/shm/sem.{}", name.strip_prefix('/').unwrap_or(name))
}

/// Opens the semaphore file at `path` without following a symbolic link or blocking, and
/// checks that it is a regular file large enough to hold a semaphore: glibc's `sem_open` maps
/// the file as it is, and a shorter one (an empty file planted by another user) would kill
/// the process with SIGBUS at the first `sem_post`.
fn open_file(path: &str) -> Result<OwnedFd, Error> {
    use rustix::fs::{FileType, Mode, OFlags};
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
    )
    .map_err(|e| match e {
        rustix::io::Errno::LOOP => crate::shm::planted(FileType::Symlink, "semaphore"),
        rustix::io::Errno::ISDIR => crate::shm::planted(FileType::Directory, "semaphore"),
        rustix::io::Errno::NXIO => crate::shm::planted(FileType::Socket, "semaphore"),
        e => Error::os("open its file", e.into()),
    })?;
    let st = rustix::fs::fstat(&fd).map_err(|e| Error::os("read its status", e.into()))?;
    let ft = FileType::from_raw_mode(st.st_mode);
    if ft != FileType::RegularFile {
        return Err(crate::shm::planted(ft, "semaphore"));
    }
    let need = procom_sys::sem::SEM_T_SIZE;
    if u64::try_from(st.st_size).is_ok_and(|size| size < need as u64) {
        return Err(Error::new(ErrorKind::Corrupted).detail(format!(
            "its file is {} bytes, too small to hold a semaphore ({need} bytes); someone may have planted it: remove it if it is not yours",
            st.st_size
        )));
    }
    Ok(fd)
}

/// Sets the mode of the semaphore file at `path` through a descriptor that followed no
/// symbolic link and is a regular file.
fn set_mode(path: &str, mode: u32) -> Result<(), Error> {
    let fd = open_file(path)?;
    rustix::fs::fchmod(&fd, rustix::fs::Mode::from_raw_mode(mode))
        .map_err(|e| Error::os("set its mode", e.into()))
}

/// Removes the named semaphore `name`.
///
/// Only a semaphore (a regular file in /dev/shm) is removed: a symbolic link, FIFO or
/// directory someone planted at its place is [`ErrorKind::WrongType`] and stays.
#[doc(alias = "sem_unlink")]
pub fn remove(name: &str) -> Result<(), Error> {
    check_name(name, "semaphore")?;
    let label = format!("semaphore {name}");
    crate::shm::check_removable(&sem_path(name), "semaphore").map_err(|e| e.object(&label))?;
    procom_sys::sem::sem_unlink(name).map_err(|e| Error::os("remove it", e).object(&label))
}

/// Holds a semaphore taken with `acquire`; posts it back on drop.
#[derive(Debug)]
#[must_use = "dropping the guard releases the semaphore at once"]
pub struct SemGuard<'a> {
    sem: &'a Semaphore,
}

impl Drop for SemGuard<'_> {
    fn drop(&mut self) {
        let _ = self.sem.post();
    }
}

/// An unnamed process-shared semaphore living in a shared mapping.
#[derive(Debug)]
pub struct SharedSemaphore<'m> {
    sem: UnnamedSemaphore<'m>,
}

/// Bytes a [`SharedSemaphore`] occupies in a mapping, and its alignment.
pub const SHARED_SEMAPHORE_SIZE: usize = procom_sys::sem::SEM_T_SIZE;

impl<'m> SharedSemaphore<'m> {
    /// Initialises a semaphore with `value` at `offset` of `mapping` (once, by one process).
    #[doc(alias = "sem_init")]
    pub fn init(
        mapping: &'m Mapping,
        offset: usize,
        value: u32,
    ) -> Result<SharedSemaphore<'m>, Error> {
        UnnamedSemaphore::init(mapping, offset, value)
            .map(|sem| SharedSemaphore { sem })
            .map_err(|e| Error::os("initialise a shared semaphore", e))
    }

    /// Uses the semaphore another process initialised at `offset`.
    pub fn existing(mapping: &'m Mapping, offset: usize) -> Result<SharedSemaphore<'m>, Error> {
        UnnamedSemaphore::existing(mapping, offset)
            .map(|sem| SharedSemaphore { sem })
            .map_err(|e| Error::os("use a shared semaphore", e))
    }

    /// P.
    #[doc(alias = "P")]
    pub fn wait(&self) -> Result<(), Error> {
        waited(self.sem.wait(None), ErrorKind::Timeout, "shared semaphore")
    }

    /// P without waiting.
    pub fn try_wait(&self) -> Result<(), Error> {
        waited(
            self.sem.wait(Some(Duration::ZERO)),
            ErrorKind::Empty,
            "shared semaphore",
        )
    }

    /// P waiting at most `timeout`.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<(), Error> {
        waited(
            self.sem.wait(Some(timeout)),
            ErrorKind::Timeout,
            "shared semaphore",
        )
    }

    /// P waiting until `deadline` at most.
    pub fn wait_deadline(&self, deadline: Instant) -> Result<(), Error> {
        self.wait_timeout(deadline.saturating_duration_since(Instant::now()))
    }

    /// V.
    #[doc(alias = "V")]
    pub fn post(&self) -> Result<(), Error> {
        self.sem
            .post()
            .map_err(|e| post_error(e).object("shared semaphore"))
    }

    /// The current value.
    pub fn value(&self) -> Result<i32, Error> {
        self.sem
            .value()
            .map_err(|e| Error::os("read a shared semaphore", e))
    }
}

/// A System V semaphore set.
#[derive(Debug)]
pub struct SemSet {
    id: i32,
    count: usize,
    label: String,
    owner: bool,
}

/// What [`SemSet::stat`] reports: how many semaphores, the key, owner, mode and times.
pub type SetStat = procom_sys::sem::SemStat;

/// One operation on a member of a [`SemSet`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Op {
    /// Which member.
    pub index: u16,
    /// What to add: negative is P, positive is V, zero waits until the value is zero.
    pub delta: i16,
    /// Undo the operation if this process exits without undoing it (SEM_UNDO).
    pub undo: bool,
}

impl Op {
    /// P on member `index`, undone if the process dies.
    pub fn wait(index: u16) -> Op {
        Op {
            index,
            delta: -1,
            undo: true,
        }
    }

    /// V on member `index`, undone if the process dies.
    pub fn post(index: u16) -> Op {
        Op {
            index,
            delta: 1,
            undo: true,
        }
    }
}

fn set_label(key: &SysvKey) -> String {
    format!("semaphore set {key}")
}

/// The `ftok` project byte of semaphore sets.
const FTOK_PROJECT: u8 = b'S';

impl SemSet {
    /// Creates a set for `key` with the given initial values, mode 0600, exclusively. The
    /// creator removes it on drop unless kept.
    #[doc(alias = "semget")]
    pub fn create(key: &SysvKey, values: &[u16]) -> Result<SemSet, Error> {
        SemSet::create_with_mode(key, values, DEFAULT_MODE)
    }

    /// Creates a set as [`SemSet::create`] does, with the permission bits `mode` (like 0o660:
    /// its group may wait and post too; System V ignores the umask).
    #[doc(alias = "semget")]
    pub fn create_with_mode(key: &SysvKey, values: &[u16], mode: u32) -> Result<SemSet, Error> {
        let label = set_label(key);
        let mode = crate::access::check_mode(mode).map_err(|e| e.object(&label))?;
        if values.is_empty() {
            return Err(Error::new(ErrorKind::InvalidInput)
                .detail("a set needs at least one semaphore")
                .object(&label));
        }
        if let Some(v) = values.iter().find(|v| **v > SET_VALUE_MAX) {
            return Err(Error::new(ErrorKind::InvalidInput)
                .detail(format!(
                    "{v} is above the largest value of a System V semaphore ({SET_VALUE_MAX}, SEMVMX)"
                ))
                .object(&label));
        }
        let id = procom_sys::sem::semget(
            key.resolve(FTOK_PROJECT)
                .map_err(|e| e.object(set_label(key)))?,
            values.len(),
            true,
            mode,
        )
        .map_err(|e| match e.raw_os_error() {
            Some(c) if c == rustix::io::Errno::EXIST.raw_os_error() => {
                Error::new(ErrorKind::AlreadyExists)
                    .detail("already exists; procom does not adopt an existing set")
                    .object(&label)
            }
            Some(c) if c == rustix::io::Errno::INVAL.raw_os_error() => {
                Error::new(ErrorKind::LimitReached)
                    .detail(format!(
                        "a set of {} semaphores is more than the kernel allows (SEMMSL, the first number of kernel.sem)",
                        values.len()
                    ))
                    .object(&label)
            }
            Some(c) if c == rustix::io::Errno::NOSPC.raw_os_error() => {
                Error::new(ErrorKind::LimitReached)
                    .detail("the system has as many semaphore sets or semaphores as kernel.sem allows (SEMMNI, SEMMNS); remove some (ipcs -s)")
                    .object(&label)
            }
            _ => Error::os("create it", e).object(&label),
        })?;
        let set = SemSet {
            id,
            count: values.len(),
            label,
            owner: true,
        };
        for (i, v) in values.iter().enumerate() {
            procom_sys::sem::semctl_setval(id, i as u16, i32::from(*v))
                .map_err(|e| Error::os("set its initial values", e).object(&set.label))?;
        }
        Ok(set)
    }

    /// Opens the existing set for `key` with `count` members (which needs read permission on
    /// it: the kernel checks it now, so a user who may not use the set is refused here).
    pub fn open(key: &SysvKey, count: usize) -> Result<SemSet, Error> {
        let label = set_label(key);
        let id = procom_sys::sem::semget(
            key.resolve(FTOK_PROJECT)
                .map_err(|e| e.object(set_label(key)))?,
            0,
            false,
            0o400,
        )
        .map_err(|e| Error::os("open it", e).object(&label))?;
        Ok(SemSet {
            id,
            count,
            label,
            owner: false,
        })
    }

    /// Opens the existing set for `key` with as many members as the kernel says it has (which
    /// needs read permission on it).
    pub fn open_all(key: &SysvKey) -> Result<SemSet, Error> {
        let mut set = SemSet::open(key, 0)?;
        set.count = set.stat()?.count;
        Ok(set)
    }

    /// The kernel's id for the set (as `ipcs -s` shows it).
    pub fn id(&self) -> i32 {
        self.id
    }

    /// How many semaphores the set has (as created, or as given to [`SemSet::open`]).
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the set has no semaphore (never, for a set the kernel made).
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The set's size, key, owner, mode and times (`semctl(IPC_STAT)`; needs read
    /// permission).
    #[doc(alias = "IPC_STAT")]
    pub fn stat(&self) -> Result<SetStat, Error> {
        procom_sys::sem::semctl_stat(self.id)
            .map_err(|e| Error::os("read its status", e).object(&self.label))
    }

    /// Gives the set to group `gid` (its owner and mode stay). Only its owner or creator may
    /// ([`ErrorKind::PermissionDenied`]); the kernel lets them name any group, so a program
    /// acting for a user checks membership first ([`crate::access::is_member`]).
    #[doc(alias = "IPC_SET")]
    pub fn set_group(&self, gid: u32) -> Result<(), Error> {
        procom_sys::sem::semctl_set_group(self.id, gid)
            .map_err(|e| crate::access::group_error(e, gid).object(&self.label))
    }

    /// Applies every operation at once, atomically, waiting as long as it takes.
    #[doc(alias = "semop")]
    pub fn apply(&self, ops: &[Op]) -> Result<(), Error> {
        self.apply_with(ops, None, ErrorKind::Timeout)
    }

    /// Applies every operation at once if that is possible now, else [`ErrorKind::Empty`].
    pub fn try_apply(&self, ops: &[Op]) -> Result<(), Error> {
        self.apply_with(ops, Some(Duration::ZERO), ErrorKind::Empty)
    }

    /// Applies every operation at once, waiting at most `timeout`.
    pub fn apply_timeout(&self, ops: &[Op], timeout: Duration) -> Result<(), Error> {
        self.apply_with(ops, Some(timeout), ErrorKind::Timeout)
    }

    /// Applies every operation at once, waiting until `deadline` at most.
    pub fn apply_deadline(&self, ops: &[Op], deadline: Instant) -> Result<(), Error> {
        self.apply_timeout(ops, deadline.saturating_duration_since(Instant::now()))
    }

    fn apply_with(
        &self,
        ops: &[Op],
        timeout: Option<Duration>,
        blocked: ErrorKind,
    ) -> Result<(), Error> {
        if let Some(bad) = ops.iter().find(|o| usize::from(o.index) >= self.count) {
            return Err(Error::new(ErrorKind::InvalidInput)
                .detail(format!(
                    "member {} does not exist in a set of {}",
                    bad.index, self.count
                ))
                .object(&self.label));
        }
        let raw: Vec<SemOp> = ops
            .iter()
            .map(|o| SemOp {
                index: o.index,
                delta: o.delta,
                undo: o.undo,
            })
            .collect();
        match procom_sys::sem::semop(self.id, &raw, timeout) {
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::RANGE.raw_os_error()) => {
                Err(Error::new(ErrorKind::LimitReached)
                    .detail(format!(
                        "the operation would take a semaphore above its maximum value ({SET_VALUE_MAX}, SEMVMX); nothing was changed"
                    ))
                    .object(&self.label))
            }
            w => waited(w, blocked, &self.label),
        }
    }

    /// The value of member `index`.
    pub fn value(&self, index: u16) -> Result<i32, Error> {
        procom_sys::sem::semctl_getval(self.id, index)
            .map_err(|e| Error::os("read a value", e).object(&self.label))
    }

    /// Leaves the set in place when this handle is dropped (it stays until removed or a
    /// reboot); returns the handle.
    pub fn keep(mut self) -> SemSet {
        self.owner = false;
        self
    }

    /// Removes the set now; processes waiting on it wake with [`ErrorKind::PeerGone`].
    pub fn remove(mut self) -> Result<(), Error> {
        self.owner = false;
        procom_sys::sem::semctl_remove(self.id)
            .map_err(|e| Error::os("remove it", e).object(&self.label))
    }
}

impl Drop for SemSet {
    fn drop(&mut self) {
        if self.owner {
            let _ = procom_sys::sem::semctl_remove(self.id);
        }
    }
}

/// Removes the System V semaphore set whose id is `id` (the `semid` ipcs shows), whatever
/// its key; processes waiting on it wake with [`ErrorKind::PeerGone`]. Ids are never shared
/// between sets, queues and segments, so no other kind of object is touched. An id no set has
/// is [`ErrorKind::NotFound`]; only the set's owner, its creator or root may remove it
/// ([`ErrorKind::PermissionDenied`]).
#[doc(alias = "IPC_RMID")]
pub fn remove_set_id(id: i32) -> Result<(), Error> {
    let object = format!("semid:{id}");
    if id < 0 {
        return Err(Error::new(ErrorKind::InvalidInput)
            .detail("a semaphore set id is 0 or more")
            .object(object));
    }
    procom_sys::sem::semctl_remove(id)
        .map_err(|e| crate::error::sysv_removal(e, "semaphore set").object(object))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// P with a deadline: a passed deadline on 0 is a timeout; a posted value is taken.
    #[test]
    fn wait_deadline_times_out_then_takes() {
        let name = format!("/procom-unit-sem-{}", std::process::id());
        let sem = Semaphore::create(&name, 0).unwrap();
        let soon = Instant::now() + Duration::from_millis(10);
        assert_eq!(
            sem.wait_deadline(soon).unwrap_err().kind(),
            ErrorKind::Timeout
        );
        sem.post().unwrap();
        sem.wait_deadline(Instant::now() + Duration::from_secs(5))
            .unwrap();
        assert_eq!(sem.value().unwrap(), 0);
    }
}
