//! Semaphores: POSIX named (`sem_open`), POSIX unnamed in shared memory (`sem_init` with
//! `pshared`), and System V semaphore sets (`semget`/`semop`).
//!
//! glibc's POSIX semaphores live in `/dev/shm/sem.NAME`, so any program using `sem_open` with
//! the same name meets the same semaphore.
//!
//! # References
//! - [`sem_overview(7)`](https://man7.org/linux/man-pages/man7/sem_overview.7.html)
//! - [`sem_open(3)`](https://man7.org/linux/man-pages/man3/sem_open.3.html)
//! - [`sem_timedwait(3)`](https://man7.org/linux/man-pages/man3/sem_timedwait.3.html)
//! - [`semop(2)`](https://man7.org/linux/man-pages/man2/semop.2.html)

use std::ffi::CString;
use std::io;
use std::ptr::NonNull;
use std::time::Duration;

use crate::cvt;

fn cname(name: &str) -> io::Result<CString> {
    CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name contains a NUL byte"))
}

/// The outcome of a wait that may give up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waited {
    /// The semaphore was decremented.
    Acquired,
    /// It was zero and the caller asked not to wait, or the deadline passed.
    WouldBlock,
}

/// An absolute CLOCK_REALTIME deadline `timeout` from now, as sem_timedwait wants it.
fn realtime_deadline(timeout: Duration) -> libc::timespec {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
    let mut sec = now
        .tv_sec
        .saturating_add(timeout.as_secs().min(i64::MAX as u64 / 2) as i64);
    let mut nsec = now.tv_nsec + i64::from(timeout.subsec_nanos());
    if nsec >= 1_000_000_000 {
        sec = sec.saturating_add(1);
        nsec -= 1_000_000_000;
    }
    libc::timespec {
        tv_sec: sec,
        tv_nsec: nsec,
    }
}

/// Waits on `sem`: forever (`None`), not at all (`Some(ZERO)`), or up to a timeout.
///
/// # Safety
/// `sem` must point to a live, initialised semaphore.
unsafe fn wait_raw(sem: *mut libc::sem_t, timeout: Option<Duration>) -> io::Result<Waited> {
    let deadline = timeout.filter(|t| !t.is_zero()).map(realtime_deadline);
    loop {
        // SAFETY: the caller guarantees `sem` is live; `deadline` is a valid timespec.
        let rc = unsafe {
            match (timeout, &deadline) {
                (None, _) => libc::sem_wait(sem),
                (Some(_), None) => libc::sem_trywait(sem),
                (Some(_), Some(d)) => libc::sem_timedwait(sem, d),
            }
        };
        if rc == 0 {
            return Ok(Waited::Acquired);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue, // retried against the same absolute deadline
            Some(libc::EAGAIN) | Some(libc::ETIMEDOUT) => return Ok(Waited::WouldBlock),
            _ => return Err(e),
        }
    }
}

/// A named POSIX semaphore, closed (not removed) on drop.
#[derive(Debug)]
pub struct NamedSemaphore {
    sem: NonNull<libc::sem_t>,
}

// SAFETY: a sem_t handle is usable from any thread; every operation is a thread-safe libc call.
unsafe impl Send for NamedSemaphore {}
// SAFETY: as above.
unsafe impl Sync for NamedSemaphore {}

impl NamedSemaphore {
    /// Creates `name` (like `/lock`) exclusively with `mode` and initial `value`.
    #[doc(alias = "sem_open")]
    pub fn create(name: &str, mode: u32, value: u32) -> io::Result<NamedSemaphore> {
        let c = cname(name)?;
        // SAFETY: valid C string; O_CREAT|O_EXCL takes the mode and value varargs as unsigned ints.
        let sem = unsafe {
            libc::sem_open(
                c.as_ptr(),
                libc::O_CREAT | libc::O_EXCL,
                mode as libc::c_uint,
                value as libc::c_uint,
            )
        };
        NamedSemaphore::from_raw(sem)
    }

    /// Opens the existing semaphore `name`.
    pub fn open(name: &str) -> io::Result<NamedSemaphore> {
        let c = cname(name)?;
        // SAFETY: valid C string; without O_CREAT no varargs are read.
        let sem = unsafe { libc::sem_open(c.as_ptr(), 0) };
        NamedSemaphore::from_raw(sem)
    }

    fn from_raw(sem: *mut libc::sem_t) -> io::Result<NamedSemaphore> {
        if sem == libc::SEM_FAILED {
            return Err(io::Error::last_os_error());
        }
        NonNull::new(sem)
            .map(|sem| NamedSemaphore { sem })
            .ok_or_else(io::Error::last_os_error)
    }

    /// P: decrements, waiting per `timeout` (see [`Waited`]).
    pub fn wait(&self, timeout: Option<Duration>) -> io::Result<Waited> {
        // SAFETY: `self.sem` stays open until drop.
        unsafe { wait_raw(self.sem.as_ptr(), timeout) }
    }

    /// V: increments, waking one waiter.
    #[doc(alias = "sem_post")]
    pub fn post(&self) -> io::Result<()> {
        // SAFETY: `self.sem` stays open until drop.
        cvt(unsafe { libc::sem_post(self.sem.as_ptr()) }).map(drop)
    }

    /// The current value.
    #[doc(alias = "sem_getvalue")]
    pub fn value(&self) -> io::Result<i32> {
        let mut v = 0;
        // SAFETY: `self.sem` stays open until drop; `v` is writable.
        cvt(unsafe { libc::sem_getvalue(self.sem.as_ptr(), &mut v) })?;
        Ok(v)
    }
}

impl Drop for NamedSemaphore {
    fn drop(&mut self) {
        // SAFETY: opened by sem_open and closed once, here.
        unsafe { libc::sem_close(self.sem.as_ptr()) };
    }
}

/// Removes the named semaphore `name` (processes that have it open keep using it).
pub fn sem_unlink(name: &str) -> io::Result<()> {
    let c = cname(name)?;
    // SAFETY: valid C string.
    cvt(unsafe { libc::sem_unlink(c.as_ptr()) }).map(drop)
}

/// Bytes an unnamed semaphore occupies in shared memory.
pub const SEM_T_SIZE: usize = std::mem::size_of::<libc::sem_t>();
/// Alignment an unnamed semaphore needs.
pub const SEM_T_ALIGN: usize = std::mem::align_of::<libc::sem_t>();

/// An unnamed process-shared POSIX semaphore inside a [`crate::mapping::Mapping`].
///
/// It refers to memory in the mapping, so it borrows it.
#[derive(Debug)]
pub struct UnnamedSemaphore<'m> {
    sem: NonNull<libc::sem_t>,
    _mapping: &'m crate::mapping::Mapping,
}

// SAFETY: a process-shared sem_t is designed for concurrent use from any thread or process.
unsafe impl Send for UnnamedSemaphore<'_> {}
// SAFETY: as above.
unsafe impl Sync for UnnamedSemaphore<'_> {}

impl<'m> UnnamedSemaphore<'m> {
    fn at(mapping: &'m crate::mapping::Mapping, offset: usize) -> io::Result<NonNull<libc::sem_t>> {
        if !offset.is_multiple_of(SEM_T_ALIGN)
            || offset
                .checked_add(SEM_T_SIZE)
                .is_none_or(|e| e > mapping.len())
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no room for a semaphore at that offset",
            ));
        }
        if !mapping.is_writable() {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "a semaphore needs a writable mapping",
            ));
        }
        // SAFETY: in bounds (checked above) of a live mapping.
        NonNull::new(unsafe { mapping.as_ptr().add(offset) }.cast())
            .ok_or_else(|| io::Error::other("null mapping"))
    }

    /// Initialises a process-shared semaphore at `offset` with `value`.
    #[doc(alias = "sem_init")]
    pub fn init(
        mapping: &'m crate::mapping::Mapping,
        offset: usize,
        value: u32,
    ) -> io::Result<UnnamedSemaphore<'m>> {
        let sem = UnnamedSemaphore::at(mapping, offset)?;
        // SAFETY: `sem` points to SEM_T_SIZE aligned writable bytes in shared memory.
        cvt(unsafe { libc::sem_init(sem.as_ptr(), 1, value) })?;
        Ok(UnnamedSemaphore {
            sem,
            _mapping: mapping,
        })
    }

    /// Uses the semaphore another process initialised at `offset`.
    ///
    /// If those bytes are not an initialised semaphore, operations fail or misbehave (glibc
    /// reads them as a counter and a waiter count), but stay inside the mapping.
    pub fn existing(
        mapping: &'m crate::mapping::Mapping,
        offset: usize,
    ) -> io::Result<UnnamedSemaphore<'m>> {
        Ok(UnnamedSemaphore {
            sem: UnnamedSemaphore::at(mapping, offset)?,
            _mapping: mapping,
        })
    }

    /// P: decrements, waiting per `timeout`.
    pub fn wait(&self, timeout: Option<Duration>) -> io::Result<Waited> {
        // SAFETY: the semaphore lies in the mapping borrowed for 'm.
        unsafe { wait_raw(self.sem.as_ptr(), timeout) }
    }

    /// V: increments, waking one waiter.
    pub fn post(&self) -> io::Result<()> {
        // SAFETY: as for `wait`.
        cvt(unsafe { libc::sem_post(self.sem.as_ptr()) }).map(drop)
    }

    /// The current value.
    pub fn value(&self) -> io::Result<i32> {
        let mut v = 0;
        // SAFETY: as for `wait`; `v` is writable.
        cvt(unsafe { libc::sem_getvalue(self.sem.as_ptr(), &mut v) })?;
        Ok(v)
    }
}

/// An unnamed process-shared POSIX semaphore inside a mapping it shares ownership of: unlike
/// [`UnnamedSemaphore`] it borrows nothing, so another thread may hold it for as long as it
/// needs (the mapping stays mapped until the last holder drops it).
#[derive(Debug)]
pub struct OwnedUnnamedSemaphore {
    sem: NonNull<libc::sem_t>,
    mapping: std::sync::Arc<crate::mapping::Mapping>,
}

// SAFETY: a process-shared sem_t is designed for concurrent use from any thread or process,
// and the Arc keeps the memory it lies in mapped.
unsafe impl Send for OwnedUnnamedSemaphore {}
// SAFETY: as above.
unsafe impl Sync for OwnedUnnamedSemaphore {}

impl OwnedUnnamedSemaphore {
    /// Initialises a process-shared semaphore at `offset` of `mapping` with `value`.
    #[doc(alias = "sem_init")]
    pub fn init(
        mapping: std::sync::Arc<crate::mapping::Mapping>,
        offset: usize,
        value: u32,
    ) -> io::Result<OwnedUnnamedSemaphore> {
        let sem = UnnamedSemaphore::at(&mapping, offset)?;
        // SAFETY: `sem` points to SEM_T_SIZE aligned writable bytes in shared memory.
        cvt(unsafe { libc::sem_init(sem.as_ptr(), 1, value) })?;
        Ok(OwnedUnnamedSemaphore { sem, mapping })
    }

    /// Uses the semaphore another process initialised at `offset` (see
    /// [`UnnamedSemaphore::existing`]).
    pub fn existing(
        mapping: std::sync::Arc<crate::mapping::Mapping>,
        offset: usize,
    ) -> io::Result<OwnedUnnamedSemaphore> {
        let sem = UnnamedSemaphore::at(&mapping, offset)?;
        Ok(OwnedUnnamedSemaphore { sem, mapping })
    }

    /// The mapping the semaphore lies in.
    pub fn mapping(&self) -> &std::sync::Arc<crate::mapping::Mapping> {
        &self.mapping
    }

    /// The semaphore as one borrowing the mapping this value keeps alive (a mapping's address
    /// never changes while it is mapped).
    fn borrowed(&self) -> UnnamedSemaphore<'_> {
        UnnamedSemaphore {
            sem: self.sem,
            _mapping: &self.mapping,
        }
    }

    /// P: decrements, waiting per `timeout`.
    pub fn wait(&self, timeout: Option<Duration>) -> io::Result<Waited> {
        self.borrowed().wait(timeout)
    }

    /// V: increments, waking one waiter.
    pub fn post(&self) -> io::Result<()> {
        self.borrowed().post()
    }

    /// The current value.
    pub fn value(&self) -> io::Result<i32> {
        self.borrowed().value()
    }
}

/// Creates a System V semaphore set of `count` semaphores (or opens it, without `create`).
pub fn semget(key: i32, count: usize, create: bool, mode: u32) -> io::Result<i32> {
    let flags = if create {
        libc::IPC_CREAT | libc::IPC_EXCL
    } else {
        0
    } | (mode & 0o777) as i32;
    // SAFETY: plain integers.
    cvt(unsafe { libc::semget(key, count as i32, flags) })
}

/// One operation of a `semop` call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SemOp {
    /// Which semaphore of the set.
    pub index: u16,
    /// How much to add (negative: P, positive: V, zero: wait for zero).
    pub delta: i16,
    /// Undo this operation if the process exits (SEM_UNDO).
    pub undo: bool,
}

/// Applies all `ops` atomically: forever (`None`), not at all (`Some(ZERO)`) or with a timeout.
#[doc(alias = "semtimedop")]
pub fn semop(id: i32, ops: &[SemOp], timeout: Option<Duration>) -> io::Result<Waited> {
    let nowait = timeout.is_some_and(|t| t.is_zero());
    let mut raw: Vec<libc::sembuf> = ops
        .iter()
        .map(|o| libc::sembuf {
            sem_num: o.index,
            sem_op: o.delta,
            sem_flg: ((if o.undo { libc::SEM_UNDO } else { 0 })
                | (if nowait { libc::IPC_NOWAIT } else { 0 })) as i16,
        })
        .collect();
    let start = std::time::Instant::now();
    loop {
        let left = timeout
            .filter(|t| !t.is_zero())
            .map(|t| t.saturating_sub(start.elapsed()));
        let ts = left.map(|l| libc::timespec {
            tv_sec: l.as_secs() as i64,
            tv_nsec: i64::from(l.subsec_nanos()),
        });
        // SAFETY: `raw` holds `raw.len()` valid sembufs; `ts` is a valid relative timeout or null.
        // (glibc's semtimedop wrapper is not in the libc crate; this is the same system call.)
        let rc = unsafe {
            libc::syscall(
                libc::SYS_semtimedop,
                id,
                raw.as_mut_ptr(),
                raw.len(),
                ts.as_ref()
                    .map_or(std::ptr::null(), |t| t as *const libc::timespec),
            )
        };
        if rc == 0 {
            return Ok(Waited::Acquired);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue, // the remaining time is recomputed from the start
            Some(libc::EAGAIN) => return Ok(Waited::WouldBlock),
            _ => return Err(e),
        }
    }
}

/// Sets semaphore `index` of the set to `value`.
pub fn semctl_setval(id: i32, index: u16, value: i32) -> io::Result<()> {
    // SAFETY: SETVAL takes the value as an int-sized variadic argument.
    cvt(unsafe { libc::semctl(id, i32::from(index), libc::SETVAL, value) }).map(drop)
}

/// Reads semaphore `index` of the set.
pub fn semctl_getval(id: i32, index: u16) -> io::Result<i32> {
    // SAFETY: GETVAL takes no extra argument.
    cvt(unsafe { libc::semctl(id, i32::from(index), libc::GETVAL) })
}

/// What `semctl(IPC_STAT)` reports about a System V semaphore set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SemStat {
    /// How many semaphores the set has.
    pub count: usize,
    /// The key it was created with (0 for `IPC_PRIVATE`).
    pub key: i32,
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
    /// Permission bits.
    pub mode: u32,
    /// Time of the last `semop` (seconds since the epoch; 0 if none).
    pub op_time: i64,
    /// Time of the last change (creation, `IPC_SET`).
    pub change_time: i64,
}

fn semctl_stat_raw(id: i32) -> io::Result<libc::semid_ds> {
    let mut ds = std::mem::MaybeUninit::<libc::semid_ds>::uninit();
    // SAFETY: IPC_STAT takes a `union semun` whose `buf` member points to a semid_ds; the
    // union is pointer-sized, so the pointer is passed as it; the kernel fills the buffer in.
    cvt(unsafe { libc::semctl(id, 0, libc::IPC_STAT, ds.as_mut_ptr()) })?;
    // SAFETY: semctl succeeded, so it filled `ds` in.
    Ok(unsafe { ds.assume_init() })
}

/// Reads the set's status: its size, key, owner, mode and times. Needs read permission.
#[doc(alias = "semctl")]
#[doc(alias = "IPC_STAT")]
pub fn semctl_stat(id: i32) -> io::Result<SemStat> {
    let ds = semctl_stat_raw(id)?;
    Ok(SemStat {
        count: ds.sem_nsems as usize,
        key: ds.sem_perm.__key,
        uid: ds.sem_perm.uid,
        gid: ds.sem_perm.gid,
        mode: u32::from(ds.sem_perm.mode) & 0o777,
        op_time: ds.sem_otime,
        change_time: ds.sem_ctime,
    })
}

/// Gives the set to group `gid`, keeping its owner and mode. Only the owner, the creator or a
/// privileged process may (`EPERM`).
#[doc(alias = "semctl")]
#[doc(alias = "IPC_SET")]
pub fn semctl_set_group(id: i32, gid: u32) -> io::Result<()> {
    let mut ds = semctl_stat_raw(id)?;
    ds.sem_perm.gid = gid;
    // SAFETY: IPC_SET takes a `union semun` whose `buf` points to the semid_ds we pass (the
    // kernel reads its uid, gid and mode).
    cvt(unsafe { libc::semctl(id, 0, libc::IPC_SET, &mut ds as *mut libc::semid_ds) }).map(drop)
}

/// Removes the set (waiters wake with EIDRM).
pub fn semctl_remove(id: i32) -> io::Result<()> {
    // SAFETY: IPC_RMID takes no extra argument.
    cvt(unsafe { libc::semctl(id, 0, libc::IPC_RMID) }).map(drop)
}
