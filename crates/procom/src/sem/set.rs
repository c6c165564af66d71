//! System V semaphore sets (`semget`/`semop`): `SemSet`, `Op`, removal by id.

use std::time::{Duration, Instant};

use procom_sys::sem::SemOp;

use super::{SET_VALUE_MAX, waited};
use crate::endpoint::SysvKey;
use crate::error::{Error, ErrorKind};
use crate::shm::DEFAULT_MODE;

/// A System V semaphore set.
#[derive(Debug)]
pub struct SemSet {
    id: i32,
    count: usize,
    label: String,
    owner: bool,
    #[cfg(feature = "tokio")]
    waiter: super::waiter::Lazy<super::waiter::Sysv>,
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
                    .detail("the system has as many semaphore sets or semaphores as kernel.sem allows (SEMMNI, SEMMNS: its fourth and second numbers); remove some (ipcs -s, procom sem rm), or raise them as root with sysctl -w kernel.sem=\"SEMMSL SEMMNS SEMOPM SEMMNI\"")
                    .object(&label)
            }
            _ => Error::os("create it", e).object(&label),
        })?;
        let set = SemSet {
            id,
            count: values.len(),
            label,
            owner: true,
            #[cfg(feature = "tokio")]
            waiter: super::waiter::Lazy::new(),
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
            #[cfg(feature = "tokio")]
            waiter: super::waiter::Lazy::new(),
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
        let raw = self.raw_ops(ops)?;
        self.applied(procom_sys::sem::semop(self.id, &raw, timeout), blocked)
    }

    /// Applies every operation at once, atomically, without blocking the thread (feature
    /// `tokio`; see the [module docs](super) for how). The operations are applied by the
    /// calling process, so `SEM_UNDO` works as with [`SemSet::apply`].
    ///
    /// Cancellation-safe: the operations are applied only in the poll that completes the
    /// future, so a future dropped before it completes changed nothing.
    ///
    /// The waiter thread waits with the operations followed by their inverse: a call of more
    /// than half the kernel's limit of operations per call (`SEMOPM`, the third number of
    /// `kernel.sem`) that has to wait fails.
    ///
    /// ```
    /// # fn main() -> Result<(), procom::Error> {
    /// # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// # rt.block_on(async {
    /// use procom::endpoint::SysvKey;
    /// use procom::sem::{Op, SemSet};
    /// let set = SemSet::create(&SysvKey::Key(0), &[0, 1])?; // 0: IPC_PRIVATE, a new set
    /// set.apply(&[Op::post(0)])?; // a peer's V on member 0
    /// set.apply_async(&[Op::wait(0), Op::wait(1)]).await?; // both at once
    /// assert_eq!((set.value(0)?, set.value(1)?), (0, 0));
    /// # Ok(()) })
    /// # }
    /// ```
    #[cfg(feature = "tokio")]
    pub async fn apply_async(&self, ops: &[Op]) -> Result<(), Error> {
        self.apply_async_until(ops, None).await
    }

    /// [`SemSet::apply_async`] waiting at most `timeout`: [`ErrorKind::Timeout`] if the
    /// operations could not be applied by then (and none was). Cancellation-safe.
    #[cfg(feature = "tokio")]
    pub async fn apply_async_timeout(&self, ops: &[Op], timeout: Duration) -> Result<(), Error> {
        self.apply_async_until(ops, Instant::now().checked_add(timeout))
            .await
    }

    /// [`SemSet::apply_async`] waiting until `deadline` at most: [`ErrorKind::Timeout`] if the
    /// operations could not be applied by then (and none was). Cancellation-safe.
    #[cfg(feature = "tokio")]
    pub async fn apply_async_deadline(&self, ops: &[Op], deadline: Instant) -> Result<(), Error> {
        self.apply_async_until(ops, Some(deadline)).await
    }

    #[cfg(feature = "tokio")]
    async fn apply_async_until(&self, ops: &[Op], deadline: Option<Instant>) -> Result<(), Error> {
        let raw = self.raw_ops(ops)?;
        let waiter = self.waiter.get(|| super::waiter::Sysv(self.id));
        self.applied(waiter.wait(raw, deadline).await, ErrorKind::Timeout)
    }

    /// The operations as the kernel takes them, each checked to name a member of the set.
    fn raw_ops(&self, ops: &[Op]) -> Result<Vec<SemOp>, Error> {
        if let Some(bad) = ops.iter().find(|o| usize::from(o.index) >= self.count) {
            return Err(Error::new(ErrorKind::InvalidInput)
                .detail(format!(
                    "member {} does not exist in a set of {}",
                    bad.index, self.count
                ))
                .object(&self.label));
        }
        Ok(ops
            .iter()
            .map(|o| SemOp {
                index: o.index,
                delta: o.delta,
                undo: o.undo,
            })
            .collect())
    }

    fn applied(
        &self,
        w: std::io::Result<procom_sys::sem::Waited>,
        blocked: ErrorKind,
    ) -> Result<(), Error> {
        match w {
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
