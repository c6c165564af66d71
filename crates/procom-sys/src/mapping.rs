//! Shared memory mapped into this process, never exposed as a Rust slice.
//!
//! Another process may write the memory at any moment, so it is only ever reached through
//! atomics ([`Mapping::atomic_u32`], [`Mapping::atomic_u64`]), bounds-checked raw copies
//! ([`Mapping::read`], [`Mapping::write`]) or a raw pointer handed to code that follows a
//! protocol (the ring). No `&[u8]` to it is ever created.
//!
//! # Truncation by a peer
//!
//! A peer with write access can shrink a POSIX shared-memory object under us; touching a page
//! past the new end raises SIGBUS, which would kill the process. Every mapping made here is
//! registered with a SIGBUS handler that, for a fault inside a registered mapping, replaces
//! the faulting page with a zero page and records the fault; the access then completes (it
//! reads zeros) and [`Mapping::faulted`] reports it, so callers turn it into a clean
//! "corrupted" error. Faults anywhere else go to the previous handler (or the default action),
//! exactly as if this handler did not exist.
//!
//! # References
//! - [`mmap(2)`](https://man7.org/linux/man-pages/man2/mmap.2.html)
//! - [`shmat(2)`](https://man7.org/linux/man-pages/man2/shmat.2.html)
//! - [`sigaction(2)`](https://man7.org/linux/man-pages/man2/sigaction.2.html)

use std::io;
use std::os::fd::BorrowedFd;
use std::ptr::NonNull;
use std::sync::Once;
use std::sync::atomic::{
    AtomicBool, AtomicPtr, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};

use crate::cvt;

/// How many mappings can be protected at once.
const SLOTS: usize = 256;

struct Slot {
    start: AtomicUsize,
    len: AtomicUsize,
    writable: AtomicBool,
    faulted: AtomicBool,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: Slot = Slot {
    start: AtomicUsize::new(0),
    len: AtomicUsize::new(0),
    writable: AtomicBool::new(false),
    faulted: AtomicBool::new(false),
};
static REGISTRY: [Slot; SLOTS] = [EMPTY; SLOTS];
static PAGE: AtomicUsize = AtomicUsize::new(4096);
static OLD_ACTION: AtomicPtr<libc::sigaction> = AtomicPtr::new(std::ptr::null_mut());
static INSTALL: Once = Once::new();

extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for an SA_SIGINFO handler.
    let code = unsafe { (*info).si_code };
    // Only a fault the kernel raised for an access past the end of a mapped object
    // (BUS_ADRERR) is ours to repair. A SIGBUS sent with kill/sigqueue/tgkill has a code <= 0
    // and an si_addr that means nothing (or was forged to make us zero a page); other kernel
    // codes (misalignment, hardware memory errors) are not truncation.
    if code == libc::BUS_ADRERR && repair(info) {
        return;
    }
    chain(sig, info, ctx, code > 0);
}

/// Maps a zero page over the faulting page if it lies in a registered mapping.
fn repair(info: *mut libc::siginfo_t) -> bool {
    // SAFETY: the kernel passes a valid siginfo, and for a kernel-raised SIGBUS si_addr is the
    // faulting address.
    let addr = unsafe { (*info).si_addr() } as usize;
    let page = PAGE.load(Ordering::Relaxed);
    for slot in &REGISTRY {
        let start = slot.start.load(Ordering::Acquire);
        let len = slot.len.load(Ordering::Acquire);
        if start != 0 && addr >= start && addr - start < len {
            let base = addr & !(page - 1);
            let prot = if slot.writable.load(Ordering::Relaxed) {
                rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE
            } else {
                rustix::mm::ProtFlags::READ
            };
            // SAFETY: `base..base+page` lies inside a mapping this process owns (registered and
            // not yet unmapped); replacing it with a private zero page is what the fault needs.
            // rustix issues the raw syscall, which is async-signal-safe.
            let r = unsafe {
                rustix::mm::mmap_anonymous(
                    base as *mut libc::c_void,
                    page,
                    prot,
                    rustix::mm::MapFlags::FIXED | rustix::mm::MapFlags::PRIVATE,
                )
            };
            if r.is_ok() {
                slot.faulted.store(true, Ordering::Release);
                return true;
            }
        }
    }
    false
}

/// Hands a SIGBUS that is not ours to whatever had it before, as if this handler did not
/// exist. `fault` says the kernel raised it for the instruction we return to.
fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void, fault: bool) {
    let old = OLD_ACTION.load(Ordering::Acquire);
    if old.is_null() {
        return;
    }
    // SAFETY: `old` points to the leaked sigaction saved at installation, never freed.
    let old = unsafe { &*old };
    if old.sa_flags & libc::SA_SIGINFO != 0 && old.sa_sigaction > libc::SIG_IGN {
        // SAFETY: with SA_SIGINFO the saved handler has the three-argument signature.
        let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            unsafe { std::mem::transmute(old.sa_sigaction) };
        f(sig, info, ctx);
    } else if old.sa_sigaction > libc::SIG_IGN {
        // SAFETY: without SA_SIGINFO the saved handler has the one-argument signature.
        let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(old.sa_sigaction) };
        f(sig);
    } else if fault {
        // Default or ignored: put that disposition back; returning re-executes the faulting
        // access, which then takes the default action (terminate with a core dump; the kernel
        // does not let a fault be ignored), as without this handler.
        // SAFETY: `old` is a valid sigaction; a null old-action pointer is allowed.
        unsafe { libc::sigaction(libc::SIGBUS, old, std::ptr::null_mut()) };
    } else if old.sa_sigaction == libc::SIG_DFL {
        // A sent SIGBUS whose default action is to terminate: there is no access to
        // re-execute, so restore the default and raise it again (SIGBUS is not blocked here:
        // the handler runs with SA_NODEFER).
        // SAFETY: as above; raise is async-signal-safe.
        unsafe {
            libc::sigaction(libc::SIGBUS, old, std::ptr::null_mut());
            libc::raise(libc::SIGBUS);
        }
    }
    // A sent SIGBUS the process ignored: ignored.
}

fn install() -> io::Result<()> {
    let mut result = Ok(());
    INSTALL.call_once(|| {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if page > 0 {
            PAGE.store(page as usize, Ordering::Relaxed);
        }
        // SAFETY: an all-zero sigaction is valid; the fields are set below.
        let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
        act.sa_sigaction = on_sigbus as *const () as usize;
        act.sa_flags = libc::SA_SIGINFO | libc::SA_NODEFER | libc::SA_ONSTACK;
        let old = Box::into_raw(Box::new(
            // SAFETY: as above, all-zero is a valid sigaction to be overwritten.
            unsafe { std::mem::zeroed::<libc::sigaction>() },
        ));
        // SAFETY: `act` is initialised and `old` points to writable memory for the previous
        // action, which is leaked so the handler can read it for the life of the process.
        let rc = unsafe { libc::sigaction(libc::SIGBUS, &act, old) };
        if rc == -1 {
            result = Err(io::Error::last_os_error());
        } else {
            OLD_ACTION.store(old, Ordering::Release);
        }
    });
    result
}

/// A region of memory shared with other processes, unmapped on drop.
#[derive(Debug)]
#[must_use = "dropping the mapping unmaps it at once"]
pub struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
    writable: bool,
    sysv: bool,
    slot: Option<usize>,
}

// SAFETY: the mapping is process-wide memory reached only through atomics and raw copies;
// moving or sharing the handle between threads is as safe as between processes.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

fn out_of_range(offset: usize, n: usize, len: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{n} bytes at offset {offset} are outside the {len}-byte mapping"),
    )
}

impl Mapping {
    /// Maps `len` bytes of `fd` from offset 0, shared with every other process mapping it.
    #[doc(alias = "mmap")]
    pub fn map_fd(fd: BorrowedFd<'_>, len: usize, writable: bool) -> io::Result<Mapping> {
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cannot map 0 bytes",
            ));
        }
        install()?;
        let prot = if writable {
            rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE
        } else {
            rustix::mm::ProtFlags::READ
        };
        // SAFETY: a null address lets the kernel choose where; MAP_SHARED of a file we hold.
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                rustix::mm::MapFlags::SHARED,
                fd,
                0,
            )
        }?;
        Ok(Mapping::registered(ptr.cast(), len, writable, false))
    }

    /// Attaches the System V shared-memory segment `id`, to be accessed as `len` bytes.
    ///
    /// `len` is checked against the segment's real size (`shm_segsz`, read once attached, so it
    /// is the size of the segment we hold): asking for more is `InvalidInput`, since the bytes
    /// past the end are not there to read or write.
    #[doc(alias = "shmat")]
    pub fn attach_sysv(id: i32, len: usize, writable: bool) -> io::Result<Mapping> {
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cannot map 0 bytes",
            ));
        }
        install()?;
        let flags = if writable { 0 } else { libc::SHM_RDONLY };
        // SAFETY: a null address lets the kernel choose where; shmat validates `id`.
        let ptr = unsafe { libc::shmat(id, std::ptr::null(), flags) };
        if ptr as isize == -1 {
            return Err(io::Error::last_os_error());
        }
        // While attached, the segment cannot go away, so `id` names the one we hold.
        let size = match sysv_shm_stat(id) {
            Ok(st) if len <= st.size => None,
            Ok(st) => Some(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{len} bytes asked of a System V segment of {} bytes",
                    st.size
                ),
            )),
            Err(e) => Some(e),
        };
        if let Some(e) = size {
            // SAFETY: the address came from the shmat above and is detached once, here; no
            // Mapping was made from it.
            unsafe { libc::shmdt(ptr) };
            return Err(e);
        }
        Ok(Mapping::registered(ptr.cast(), len, writable, true))
    }

    fn registered(ptr: *mut u8, len: usize, writable: bool, sysv: bool) -> Mapping {
        let mut slot = None;
        for (i, s) in REGISTRY.iter().enumerate() {
            if s.len
                .compare_exchange(0, len, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                s.writable.store(writable, Ordering::Relaxed);
                s.faulted.store(false, Ordering::Relaxed);
                s.start.store(ptr as usize, Ordering::Release);
                slot = Some(i);
                break;
            }
        }
        Mapping {
            // SAFETY: mmap and shmat never return null on success.
            ptr: unsafe { NonNull::new_unchecked(ptr) },
            len,
            writable,
            sysv,
            slot,
        }
    }

    /// Bytes mapped.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Faults every page of a writable mapping in now, allocating what the object has not
    /// allocated yet (`MADV_POPULATE_WRITE`, Linux 5.14), so that later accesses take no page
    /// fault: a channel's ring is then as fast on its first lap as on its next ones. A
    /// read-only mapping, an older kernel or a memory limit make this an error; the mapping is
    /// as usable as before.
    #[doc(alias = "madvise")]
    pub fn populate(&self) -> io::Result<()> {
        self.populate_prefix(self.len)
    }

    /// [`Mapping::populate`] for the first `len` bytes only (all of them if `len` is larger),
    /// rounded up to whole pages.
    pub fn populate_prefix(&self, len: usize) -> io::Result<()> {
        let len = len.min(self.len);
        if len == 0 {
            return Ok(());
        }
        if !self.writable {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a read-only mapping cannot be populated for writing",
            ));
        }
        // SAFETY: the range starts at this mapping's (page-aligned) start and lies inside it
        // (`len <= self.len`; the kernel rounds the length up to the page, which the mapping
        // covers), and the mapping stays mapped while `self` lives; populating changes no
        // contents (it writes nothing; pages not yet in the object are allocated as zeros,
        // which is what a first access would do), and a range the object no longer covers is
        // reported as an error (EFAULT), not a signal.
        unsafe {
            rustix::mm::madvise(
                self.ptr.as_ptr().cast(),
                len,
                rustix::mm::Advice::LinuxPopulateWrite,
            )
        }
        .map_err(Into::into)
    }

    /// Whether nothing is mapped (never true: mappings are at least one byte).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the mapping may be written.
    pub fn is_writable(&self) -> bool {
        self.writable
    }

    /// Whether an access touched memory the object no longer has (it was truncated by
    /// someone): the pages concerned now read as zeros, and the contents cannot be trusted.
    /// Also true if this mapping could not be registered for that protection.
    pub fn faulted(&self) -> bool {
        match self.slot {
            Some(i) => REGISTRY[i].faulted.load(Ordering::Acquire),
            None => false,
        }
    }

    /// Whether truncation faults are caught for this mapping (false only when more than 256
    /// mappings are alive at once).
    pub fn is_protected(&self) -> bool {
        self.slot.is_some()
    }

    /// The first byte, for protocol code (the ring) that does its own bounds checks.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Copies `dst.len()` bytes at `offset` into `dst`.
    pub fn read(&self, offset: usize, dst: &mut [u8]) -> io::Result<()> {
        if offset
            .checked_add(dst.len())
            .is_none_or(|end| end > self.len)
        {
            return Err(out_of_range(offset, dst.len(), self.len));
        }
        // SAFETY: in bounds of the live mapping (checked above); `dst` is private memory. The
        // source may change concurrently (that is the caller's protocol to manage); the copy
        // is of plain bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.ptr.as_ptr().add(offset),
                dst.as_mut_ptr(),
                dst.len(),
            )
        };
        Ok(())
    }

    /// Copies `src` into the mapping at `offset`.
    pub fn write(&self, offset: usize, src: &[u8]) -> io::Result<()> {
        if !self.writable {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "the mapping is read-only",
            ));
        }
        if offset
            .checked_add(src.len())
            .is_none_or(|end| end > self.len)
        {
            return Err(out_of_range(offset, src.len(), self.len));
        }
        // SAFETY: in bounds of the live, writable mapping (checked above); `src` is private.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.as_ptr().add(offset), src.len())
        };
        Ok(())
    }

    /// The 32-bit word at `offset` as an atomic, if aligned, in bounds, and the mapping is
    /// writable. A read-only mapping gives `None` (an atomic lets anyone store, and a store to
    /// read-only pages would kill the process with SIGSEGV): use [`Mapping::load_u32`].
    pub fn atomic_u32(&self, offset: usize) -> Option<&AtomicU32> {
        if !self.writable || !offset.is_multiple_of(4) || offset.checked_add(4)? > self.len {
            return None;
        }
        // SAFETY: aligned (the mapping is page-aligned and `offset` a multiple of 4), in
        // bounds and writable; AtomicU32 may alias memory other processes access atomically.
        Some(unsafe { &*(self.ptr.as_ptr().add(offset) as *const AtomicU32) })
    }

    /// The 64-bit word at `offset` as an atomic, if aligned, in bounds, and the mapping is
    /// writable (see [`Mapping::atomic_u32`]; read-only: [`Mapping::load_u64`]).
    pub fn atomic_u64(&self, offset: usize) -> Option<&AtomicU64> {
        if !self.writable || !offset.is_multiple_of(8) || offset.checked_add(8)? > self.len {
            return None;
        }
        // SAFETY: as for `atomic_u32`, with 8-byte alignment.
        Some(unsafe { &*(self.ptr.as_ptr().add(offset) as *const AtomicU64) })
    }

    /// Atomically loads the 32-bit word at `offset` (writable or read-only mapping), if
    /// aligned and in bounds.
    pub fn load_u32(&self, offset: usize, order: Ordering) -> Option<u32> {
        if !offset.is_multiple_of(4) || offset.checked_add(4)? > self.len {
            return None;
        }
        // SAFETY: aligned and in bounds as in `atomic_u32`; the atomic reference never leaves
        // this function and is only loaded from, which read-only pages allow.
        Some(unsafe { &*(self.ptr.as_ptr().add(offset) as *const AtomicU32) }.load(order))
    }

    /// Atomically loads the 64-bit word at `offset` (writable or read-only mapping), if
    /// aligned and in bounds.
    pub fn load_u64(&self, offset: usize, order: Ordering) -> Option<u64> {
        if !offset.is_multiple_of(8) || offset.checked_add(8)? > self.len {
            return None;
        }
        // SAFETY: as for `load_u32`, with 8-byte alignment.
        Some(unsafe { &*(self.ptr.as_ptr().add(offset) as *const AtomicU64) }.load(order))
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            REGISTRY[i].start.store(0, Ordering::Release);
        }
        if self.sysv {
            // SAFETY: the address came from shmat and is detached once, here.
            unsafe { libc::shmdt(self.ptr.as_ptr().cast()) };
        } else {
            // SAFETY: the range came from mmap and is unmapped once, here; no reference into it
            // outlives `self` (accessors borrow `self`).
            let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
        }
        if let Some(i) = self.slot {
            REGISTRY[i].len.store(0, Ordering::Release);
        }
    }
}

/// A `procom-ring` ring living inside a shared mapping, which it keeps alive.
#[derive(Debug, Clone)]
pub struct MappedRing {
    map: std::sync::Arc<Mapping>,
    raw: procom_ring::RawRegion,
}

impl MappedRing {
    /// The ring starting at `offset` of `map` and filling the rest of it (its data area rounded
    /// down to a power of two). `offset` must be a multiple of 64 and leave room for a ring.
    pub fn new(map: std::sync::Arc<Mapping>, offset: usize) -> Option<MappedRing> {
        if !offset.is_multiple_of(64) || offset >= map.len() || !map.is_writable() {
            return None;
        }
        // SAFETY: the range `offset..len` lies in the live mapping (page-aligned, so `offset`
        // keeps 64-byte alignment); the Arc keeps it mapped as long as this region exists.
        // Other processes reach it only through the ring protocol, which is the contract.
        let raw =
            unsafe { procom_ring::RawRegion::new(map.as_ptr().add(offset), map.len() - offset) }
                .ok()?;
        Some(MappedRing { map, raw })
    }

    /// The mapping the ring lives in.
    pub fn mapping(&self) -> &Mapping {
        &self.map
    }
}

// SAFETY: delegates to a RawRegion built over memory that the Arc'd mapping keeps valid.
unsafe impl procom_ring::Region for MappedRing {
    fn head(&self) -> &AtomicU64 {
        self.raw.head()
    }
    fn tail(&self) -> &AtomicU64 {
        self.raw.tail()
    }
    fn capacity(&self) -> usize {
        self.raw.capacity()
    }
    unsafe fn load(&self, off: usize, dst: &mut [u8]) {
        // SAFETY: the caller upholds `load`'s contract, which is the same for `raw`.
        unsafe { self.raw.load(off, dst) }
    }
    unsafe fn store(&self, off: usize, src: &[u8]) {
        // SAFETY: the caller upholds `store`'s contract, which is the same for `raw`.
        unsafe { self.raw.store(off, src) }
    }
    fn data_ptr(&self, off: usize) -> *mut u8 {
        self.raw.data_ptr(off)
    }
}

// SAFETY: `raw`'s data pointers stay valid while the Arc keeps the mapping alive.
unsafe impl procom_ring::InPlace for MappedRing {}

/// Creates a System V shared-memory segment (or opens it, without `create`).
#[doc(alias = "shmget")]
pub fn sysv_shmget(key: i32, size: usize, create: bool, mode: u32) -> io::Result<i32> {
    let flags = if create {
        libc::IPC_CREAT | libc::IPC_EXCL
    } else {
        0
    } | (mode & 0o777) as i32;
    // SAFETY: shmget takes plain integers.
    cvt(unsafe { libc::shmget(key, size, flags) })
}

/// What `shmctl(IPC_STAT)` reports about a System V segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SysvShmStat {
    /// Size in bytes.
    pub size: usize,
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
    /// Permission bits.
    pub mode: u32,
    /// Processes attached now.
    pub attached: u64,
    /// Creator's pid.
    pub creator_pid: i32,
    /// Pid of the last shmat/shmdt.
    pub last_pid: i32,
}

/// Reads a System V segment's status.
#[doc(alias = "shmctl")]
pub fn sysv_shm_stat(id: i32) -> io::Result<SysvShmStat> {
    let mut ds = std::mem::MaybeUninit::<libc::shmid_ds>::uninit();
    // SAFETY: IPC_STAT writes a shmid_ds into the buffer we own.
    cvt(unsafe { libc::shmctl(id, libc::IPC_STAT, ds.as_mut_ptr()) })?;
    // SAFETY: shmctl succeeded, so it filled `ds` in.
    let ds = unsafe { ds.assume_init() };
    Ok(SysvShmStat {
        size: ds.shm_segsz,
        uid: ds.shm_perm.uid,
        gid: ds.shm_perm.gid,
        mode: u32::from(ds.shm_perm.mode) & 0o777,
        attached: ds.shm_nattch,
        creator_pid: ds.shm_cpid,
        last_pid: ds.shm_lpid,
    })
}

/// Marks a System V segment for removal (it goes once the last process detaches).
pub fn sysv_shm_remove(id: i32) -> io::Result<()> {
    // SAFETY: IPC_RMID takes no buffer.
    cvt(unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) }).map(drop)
}

/// `ftok`: the System V key derived from an existing path and a project id.
pub fn ftok(path: &std::path::Path, project: u8) -> io::Result<i32> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    let key = unsafe { libc::ftok(c.as_ptr(), i32::from(project)) };
    if key == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(key)
    }
}

/// Views an exclusively borrowed byte buffer as atomic bytes, without copying: what the
/// unstable `AtomicU8::from_mut_slice` does. procom lends every received message as
/// `&[AtomicU8]` (shared memory must be, since a peer may write it); a message read into a
/// private buffer is lent through this view at no cost.
pub fn atomic_bytes(bytes: &mut [u8]) -> &[AtomicU8] {
    // SAFETY: `AtomicU8` has the size and alignment of `u8` (documented), so the slice layout is
    // the same; the exclusive borrow means nothing else reads or writes the bytes while the
    // returned shared borrow, which keeps it, lives.
    unsafe { &*(bytes as *mut [u8] as *const [AtomicU8]) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_faults_become_zeros_and_a_flag() {
        let fd = rustix::fs::memfd_create("procom-test", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        rustix::fs::ftruncate(&fd, 8192).unwrap();
        let m = Mapping::map_fd(std::os::fd::AsFd::as_fd(&fd), 8192, true).unwrap();
        m.write(4096, b"hello").unwrap();
        assert!(!m.faulted());
        rustix::fs::ftruncate(&fd, 100).unwrap();
        let mut buf = [1u8; 5];
        m.read(4096, &mut buf).unwrap(); // past the new end: would be SIGBUS
        assert_eq!(buf, [0; 5]);
        assert!(m.faulted());
    }

    #[test]
    fn accessors_check_bounds_and_alignment() {
        let fd = rustix::fs::memfd_create("procom-test", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        rustix::fs::ftruncate(&fd, 64).unwrap();
        let m = Mapping::map_fd(std::os::fd::AsFd::as_fd(&fd), 64, false).unwrap();
        assert!(m.read(60, &mut [0; 8]).is_err());
        assert!(m.write(0, b"x").is_err());
        assert!(m.atomic_u32(2).is_none());
        assert!(m.atomic_u64(64).is_none());
        assert_eq!(m.load_u64(56, Ordering::Relaxed), Some(0));
        assert_eq!(m.load_u32(2, Ordering::Relaxed), None);
        assert_eq!(m.load_u64(64, Ordering::Relaxed), None);
        let w = Mapping::map_fd(std::os::fd::AsFd::as_fd(&fd), 64, true).unwrap();
        assert!(w.atomic_u64(56).is_some());
        w.atomic_u32(8).unwrap().store(7, Ordering::Relaxed);
        assert_eq!(m.load_u32(8, Ordering::Relaxed), Some(7));
    }

    #[test]
    fn read_only_mappings_hand_out_no_atomics() {
        // A store through such an atomic would be SIGSEGV, which nothing catches.
        let fd = rustix::fs::memfd_create("procom-test", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        rustix::fs::ftruncate(&fd, 4096).unwrap();
        let m = Mapping::map_fd(std::os::fd::AsFd::as_fd(&fd), 4096, false).unwrap();
        assert!(m.atomic_u32(0).is_none());
        assert!(m.atomic_u64(0).is_none());
        assert_eq!(m.load_u32(0, Ordering::Acquire), Some(0));
    }

    #[test]
    fn sysv_attach_refuses_more_than_the_segment_has() {
        let id = sysv_shmget(libc::IPC_PRIVATE, 4096, true, 0o600).unwrap();
        let too_long = Mapping::attach_sysv(id, 3 * 4096, true).map(drop);
        let exact = Mapping::attach_sysv(id, 4096, true).map(|m| m.len());
        let shorter = Mapping::attach_sysv(id, 100, false).map(|m| m.len());
        sysv_shm_remove(id).unwrap();
        let e = too_long.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
        assert_eq!(exact.unwrap(), 4096);
        assert_eq!(shorter.unwrap(), 100);
    }

    /// How a forked child ended: `Ok(exit code)` or `Err(signal)`.
    ///
    /// The child runs `f` and exits with its result; `f` must only do async-signal-safe work
    /// (system calls, plain memory), since other test threads may hold locks at the fork.
    fn in_child(f: impl FnOnce() -> i32) -> Result<i32, i32> {
        // SAFETY: fork has no preconditions; the child only runs `f` (see above) and _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", io::Error::last_os_error());
        if pid == 0 {
            let code = f();
            // SAFETY: ends the child without running the parent's exit handlers.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waits for the child forked above; `status` is ours to write.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(rc, pid);
        if libc::WIFEXITED(status) {
            Ok(libc::WEXITSTATUS(status))
        } else {
            Err(libc::WTERMSIG(status))
        }
    }

    /// A sigaction with `handler` (SIG_DFL or SIG_IGN), leaked so a child can point the
    /// chain at it.
    fn leaked_action(handler: libc::sighandler_t) -> *mut libc::sigaction {
        // SAFETY: all-zero is a valid sigaction; the handler is set below.
        let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
        act.sa_sigaction = handler;
        Box::into_raw(Box::new(act))
    }

    #[test]
    fn a_sent_sigbus_takes_the_previous_default_action() {
        let fd = rustix::fs::memfd_create("procom-test", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        rustix::fs::ftruncate(&fd, 4096).unwrap();
        let m = Mapping::map_fd(std::os::fd::AsFd::as_fd(&fd), 4096, true).unwrap();
        let dfl = leaked_action(libc::SIG_DFL);
        let ended = in_child(|| {
            // As if SIGBUS had its default disposition when the handler was installed.
            OLD_ACTION.store(dfl, Ordering::Release);
            // SAFETY: kill to ourselves with a valid signal number.
            unsafe { libc::kill(libc::getpid(), libc::SIGBUS) };
            if m.faulted() { 2 } else { 0 }
        });
        assert_eq!(
            ended,
            Err(libc::SIGBUS),
            "a SIGBUS sent with kill must end the process as without the handler"
        );
    }

    #[test]
    fn a_forged_sigbus_address_zeroes_nothing() {
        let fd = rustix::fs::memfd_create("procom-test", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        rustix::fs::ftruncate(&fd, 8192).unwrap();
        let m = Mapping::map_fd(std::os::fd::AsFd::as_fd(&fd), 8192, true).unwrap();
        m.write(4096, b"hello").unwrap();
        let target = m.as_ptr().wrapping_add(4096);
        // A queued SIGBUS (si_code SI_QUEUE) whose si_addr points into the mapping: the
        // address field follows three ints, aligned for a pointer.
        // SAFETY: all-zero is a valid siginfo; the fields are set below.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        info.si_signo = libc::SIGBUS;
        info.si_code = libc::SI_QUEUE;
        let align = std::mem::align_of::<usize>();
        let at = (3 * std::mem::size_of::<libc::c_int>()).div_ceil(align) * align;
        // SAFETY: `at + size_of::<usize>()` lies inside the siginfo (128 bytes), aligned.
        unsafe {
            ((&mut info as *mut libc::siginfo_t as *mut u8).add(at) as *mut usize)
                .write(target as usize)
        };
        // SAFETY: reading the union field back through libc's accessor.
        assert_eq!(unsafe { info.si_addr() } as usize, target as usize);
        let ign = leaked_action(libc::SIG_IGN);
        let ended = in_child(|| {
            // As if SIGBUS was ignored when the handler was installed: the sent signal is then
            // simply ignored, and the child can report what it did to the mapping.
            OLD_ACTION.store(ign, Ordering::Release);
            // SAFETY: rt_sigqueueinfo to ourselves with a valid siginfo we own.
            unsafe {
                libc::syscall(
                    libc::SYS_rt_sigqueueinfo,
                    libc::getpid(),
                    libc::SIGBUS,
                    &info as *const libc::siginfo_t,
                )
            };
            let mut got = [0u8; 5];
            if m.read(4096, &mut got).is_err() {
                return 3;
            }
            match (m.faulted(), &got == b"hello") {
                (false, true) => 0,
                (true, _) => 1,
                (false, false) => 2,
            }
        });
        assert_eq!(
            ended,
            Ok(0),
            "a forged SIGBUS must neither flag the mapping (1) nor zero its page (2)"
        );
    }

    #[test]
    fn populate_allocates_every_page_of_the_object() {
        let fd =
            rustix::fs::memfd_create("procom-populate", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        rustix::fs::ftruncate(&fd, 1 << 20).unwrap();
        let blocks = |fd: &std::os::fd::OwnedFd| rustix::fs::fstat(fd).unwrap().st_blocks;
        let m = Mapping::map_fd(std::os::fd::AsFd::as_fd(&fd), 1 << 20, true).unwrap();
        assert_eq!(blocks(&fd), 0, "a fresh object has no pages yet");
        m.populate().unwrap();
        // st_blocks counts 512-byte units.
        assert_eq!(blocks(&fd) * 512, 1 << 20);
        // A prefix allocates that much (of a second object) and no more.
        let fd2 =
            rustix::fs::memfd_create("procom-populate", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        rustix::fs::ftruncate(&fd2, 1 << 20).unwrap();
        let m2 = Mapping::map_fd(std::os::fd::AsFd::as_fd(&fd2), 1 << 20, true).unwrap();
        m2.populate_prefix(64 << 10).unwrap();
        assert_eq!(blocks(&fd2) * 512, 64 << 10);
        let r = Mapping::map_fd(std::os::fd::AsFd::as_fd(&fd), 4096, false).unwrap();
        assert_eq!(
            r.populate().unwrap_err().kind(),
            std::io::ErrorKind::InvalidInput
        );
    }
}
