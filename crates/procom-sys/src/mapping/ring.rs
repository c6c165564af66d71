//! [`MappedRing`]: a `procom-ring` ring inside a shared [`Mapping`].

use std::sync::atomic::AtomicU64;

use super::Mapping;

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
    #[inline]
    fn head(&self) -> &AtomicU64 {
        self.raw.head()
    }
    #[inline]
    fn tail(&self) -> &AtomicU64 {
        self.raw.tail()
    }
    #[inline]
    fn waiting(&self) -> &AtomicU64 {
        self.raw.waiting()
    }
    #[inline]
    fn word(&self, off: usize) -> &AtomicU64 {
        self.raw.word(off)
    }
    #[inline]
    fn capacity(&self) -> usize {
        self.raw.capacity()
    }
    #[inline]
    unsafe fn load(&self, off: usize, dst: &mut [u8]) {
        // SAFETY: the caller upholds `load`'s contract, which is the same for `raw`.
        unsafe { self.raw.load(off, dst) }
    }
    #[inline]
    unsafe fn store(&self, off: usize, src: &[u8]) {
        // SAFETY: the caller upholds `store`'s contract, which is the same for `raw`.
        unsafe { self.raw.store(off, src) }
    }
    #[inline]
    fn data_ptr(&self, off: usize) -> *mut u8 {
        self.raw.data_ptr(off)
    }
}

// SAFETY: `raw`'s data pointers stay valid while the Arc keeps the mapping alive.
unsafe impl procom_ring::InPlace for MappedRing {}
