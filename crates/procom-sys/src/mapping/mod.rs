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
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};

mod ring;
mod sigbus;
mod sysv;
#[cfg(test)]
mod tests;

pub use ring::MappedRing;
use sigbus::{REGISTRY, install};
pub use sysv::{
    SysvShmStat, ftok, sysv_shm_remove, sysv_shm_set_group, sysv_shm_stat, sysv_shmget,
};

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
    #[inline]
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
    #[inline]
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
    #[inline]
    pub fn atomic_u64(&self, offset: usize) -> Option<&AtomicU64> {
        if !self.writable || !offset.is_multiple_of(8) || offset.checked_add(8)? > self.len {
            return None;
        }
        // SAFETY: as for `atomic_u32`, with 8-byte alignment.
        Some(unsafe { &*(self.ptr.as_ptr().add(offset) as *const AtomicU64) })
    }

    /// Atomically loads the 32-bit word at `offset` (writable or read-only mapping), if
    /// aligned and in bounds.
    #[inline]
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
    #[inline]
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
