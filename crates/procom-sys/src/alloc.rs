//! The C allocator's one setting a long-running server needs: large blocks that go back to the
//! system when they are freed.
//!
//! glibc serves large blocks from their own mappings at first, but every time one is freed it
//! raises the size from which it does so (up to 32 MiB), and later blocks of that size come
//! from its heaps, which keep freed memory resident (one heap per thread that allocated). A
//! server that budgets the messages it buffers (`procom listen --memory`) then holds several
//! times its budget after a few large messages. A fixed size turns that adjustment off.

/// Makes every block of at least `bytes` its own mapping, unmapped when freed (glibc's
/// `M_MMAP_THRESHOLD`, which also stops it from raising that size by itself). Returns whether
/// the allocator took it: `false` for a size it refuses (over 32 MiB) and with a C library
/// other than glibc, whose allocator this does not concern.
///
/// # References
/// - [`mallopt(3)`](https://man7.org/linux/man-pages/man3/mallopt.3.html), `M_MMAP_THRESHOLD`
#[doc(alias = "mallopt")]
pub fn map_blocks_from(bytes: usize) -> bool {
    #[cfg(target_env = "gnu")]
    {
        let Ok(bytes) = libc::c_int::try_from(bytes) else {
            return false;
        };
        // SAFETY: mallopt only sets a parameter of the allocator; it checks the value itself
        // and returns 0 for one it refuses.
        unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, bytes) == 1 }
    }
    #[cfg(not(target_env = "gnu"))]
    {
        let _ = bytes;
        false
    }
}
