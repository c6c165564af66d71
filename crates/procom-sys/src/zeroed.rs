//! Zeroed buffers whose allocation may fail.
//!
//! `vec![0; n]` aborts the process when the allocator says no, and `Vec::try_reserve` followed
//! by a resize writes every byte, touching every page at once. A receiver sizes a buffer from
//! a length a peer announced: it takes the buffer from here, as memory the allocator zeroed
//! (`calloc`, whose large blocks are fresh pages mapped on first touch), or an error.

use std::alloc::{Layout, alloc_zeroed};
use std::io;

/// `len` zero bytes, or an `io::ErrorKind::OutOfMemory` error when the allocator (or the
/// process's address-space limit) has no room for them.
pub fn try_zeroed(len: usize) -> io::Result<Vec<u8>> {
    if len == 0 {
        return Ok(Vec::new());
    }
    let refused = || io::Error::from(io::ErrorKind::OutOfMemory);
    let layout = Layout::array::<u8>(len).map_err(|_| refused())?;
    // SAFETY: `layout` has a non-zero size (`len > 0`).
    let ptr = unsafe { alloc_zeroed(layout) };
    if ptr.is_null() {
        return Err(refused());
    }
    // SAFETY: `ptr` comes from the global allocator with `layout`, which has the alignment of
    // `u8` and a size of `len` bytes, all initialised (zeroed): a `Vec<u8>` of length and
    // capacity `len` owns exactly that allocation.
    Ok(unsafe { Vec::from_raw_parts(ptr, len, len) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeroed_or_refused() {
        assert!(try_zeroed(0).unwrap().is_empty());
        let v = try_zeroed(1 << 20).unwrap();
        assert_eq!((v.len(), v.capacity()), (1 << 20, 1 << 20));
        assert!(v.iter().all(|b| *b == 0));
        // More than any address space holds: refused, not an abort.
        let e = try_zeroed(usize::MAX / 2).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::OutOfMemory);
        let e = try_zeroed(usize::MAX).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::OutOfMemory);
    }
}
