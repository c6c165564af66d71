//! [`TypedRegion`] (a plain-old-data value in a mapping) and the [`Header`] procom's own
//! structures in a segment start with.

use std::marker::PhantomData;

use super::Mapping;
use crate::error::{Error, ErrorKind};

/// A plain-old-data value of type `T` at a fixed offset of a mapping, shared between processes
/// without `unsafe` in user code.
///
/// `load` and `store` copy the whole value; a value another process is writing at the same
/// moment may be read half-old, half-new, so guard multi-field updates with a semaphore (see
/// [`crate::sem`]) — shared memory needs that protection, since nothing in it is ordered or exclusive by itself.
#[derive(Debug)]
pub struct TypedRegion<'m, T> {
    mapping: &'m Mapping,
    offset: usize,
    _t: PhantomData<T>,
}

impl<'m, T: bytemuck::Pod> TypedRegion<'m, T> {
    /// The `T` at `offset` in `mapping` (which must hold it entirely).
    pub fn new(mapping: &'m Mapping, offset: usize) -> Result<TypedRegion<'m, T>, Error> {
        let size = std::mem::size_of::<T>();
        if offset
            .checked_add(size)
            .is_none_or(|end| end > mapping.len())
        {
            return Err(Error::new(ErrorKind::InvalidInput).detail(format!(
                "a {size}-byte value at offset {offset} does not fit in the {}-byte mapping",
                mapping.len()
            )));
        }
        Ok(TypedRegion {
            mapping,
            offset,
            _t: PhantomData,
        })
    }

    /// Copies the value out.
    pub fn load(&self) -> Result<T, Error> {
        let mut v = T::zeroed();
        self.mapping
            .read(self.offset, bytemuck::bytes_of_mut(&mut v))
            .map_err(|e| Error::os("read the shared value", e))?;
        if self.mapping.faulted() {
            return Err(Error::new(ErrorKind::Corrupted)
                .detail("the segment was truncated under the mapping"));
        }
        Ok(v)
    }

    /// Copies `value` in.
    pub fn store(&self, value: &T) -> Result<(), Error> {
        self.mapping
            .write(self.offset, bytemuck::bytes_of(value))
            .map_err(|e| Error::os("write the shared value", e))?;
        if self.mapping.faulted() {
            return Err(Error::new(ErrorKind::Corrupted)
                .detail("the segment was truncated under the mapping"));
        }
        Ok(())
    }

    /// Loads, applies `f`, stores; returns what `f` returned. Not atomic: hold a lock.
    pub fn update<R>(&self, f: impl FnOnce(&mut T) -> R) -> Result<R, Error> {
        let mut v = self.load()?;
        let r = f(&mut v);
        self.store(&v)?;
        Ok(r)
    }
}

/// The header at the start of every segment that carries a procom structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
pub struct Header {
    /// `PROCOMSH` for a segment, other values for specific structures.
    pub magic: [u8; 8],
    /// Layout version of the structure.
    pub version: u32,
    /// Reserved, zero.
    pub flags: u32,
    /// Bytes the structure occupies, header included.
    pub layout_size: u64,
}

/// Bytes of [`Header`].
pub const HEADER_SIZE: usize = std::mem::size_of::<Header>();

impl Header {
    /// Checks a header read from a segment of `segment_len` bytes against what `magic` and
    /// `version` promise; the error names what is wrong.
    pub fn validate(&self, magic: &[u8; 8], version: u32, segment_len: usize) -> Result<(), Error> {
        let bad = |why: String| Err(Error::new(ErrorKind::Corrupted).detail(why));
        if &self.magic != magic {
            return bad(format!(
                "it does not start with procom's {} header (found {:?}); it belongs to another program",
                String::from_utf8_lossy(magic),
                String::from_utf8_lossy(&self.magic)
            ));
        }
        if self.version != version {
            return bad(format!(
                "its layout version is {}, and this procom reads version {version}",
                self.version
            ));
        }
        if self.layout_size as usize != segment_len {
            return bad(format!(
                "its header says {} bytes but the segment has {segment_len} (truncated or resized)",
                self.layout_size
            ));
        }
        Ok(())
    }
}
