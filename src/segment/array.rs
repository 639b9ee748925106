//! Typed shared arrays.

use std::fmt;
use std::marker::PhantomData;
use std::ops::Range;
use std::sync::Arc;

use bytemuck::Pod;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{kind, Segment, SegmentBuilder, SegmentHandle};
use crate::error::{Error, Result};

/// Alignment of every array shmproc allocates: a cache line.
const ARRAY_ALIGN: usize = 64;

/// A region of a segment viewed as `[T]`.
///
/// Cloning is cheap (the segment is shared through an `Arc`), and so is sending
/// one to another process: it travels as an [`ArrayHandle`] (segment name,
/// offset, length, element type) and re-attaches on the other side, so handing
/// over a 1 GiB array costs the same as handing over 8 bytes.
///
/// Element access through [`get`](SharedArray::get), [`set`](SharedArray::set),
/// [`to_vec`](SharedArray::to_vec) and [`copy_from_slice`](SharedArray::copy_from_slice)
/// is safe: it uses volatile reads and writes of whole elements and never makes
/// a Rust reference to memory another process may be writing. Slices
/// ([`as_slice`](SharedArray::as_slice), [`as_mut_slice`](SharedArray::as_mut_slice))
/// are `unsafe`: the caller promises that no process writes the same elements
/// meanwhile (the pool's chunk maps guarantee this by handing out disjoint
/// chunks).
///
/// ```
/// use shmproc::SharedArray;
///
/// let a = SharedArray::<u64>::from_slice(&[1, 2, 3])?;
/// a.set(1, 20);
/// assert_eq!(a.to_vec(), vec![1, 20, 3]);
///
/// // What another process would do with the handle:
/// let b = SharedArray::<u64>::attach(&a.handle())?;
/// assert_eq!(b.get(1), Some(20));
///
/// // The wrong element type is refused.
/// assert!(matches!(
///     SharedArray::<f64>::attach(&a.handle()),
///     Err(shmproc::Error::TypeMismatch { .. })
/// ));
/// # Ok::<(), shmproc::Error>(())
/// ```
pub struct SharedArray<T: Pod> {
    seg: Arc<Segment>,
    offset: usize,
    len: usize,
    _t: PhantomData<T>,
}

/// What another process needs to attach to a [`SharedArray`]; every field is
/// checked against the segment and the element type on attach.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ArrayHandle {
    /// The segment holding the array.
    pub segment: SegmentHandle,
    /// Byte offset of element 0 in the segment.
    pub offset: u64,
    /// Number of elements.
    pub len: u64,
    /// `size_of::<T>()`.
    pub elem_size: u32,
    /// `align_of::<T>()`.
    pub elem_align: u32,
    /// `std::any::type_name::<T>()`.
    pub elem_type: String,
}

impl<T: Pod> Clone for SharedArray<T> {
    fn clone(&self) -> Self {
        SharedArray {
            seg: Arc::clone(&self.seg),
            offset: self.offset,
            len: self.len,
            _t: PhantomData,
        }
    }
}

impl<T: Pod> fmt::Debug for SharedArray<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedArray")
            .field("type", &std::any::type_name::<T>())
            .field("len", &self.len)
            .field("offset", &self.offset)
            .field("segment", &self.seg.handle())
            .finish()
    }
}

fn byte_len<T>(len: usize) -> Result<usize> {
    len.checked_mul(std::mem::size_of::<T>())
        .ok_or(Error::InvalidArgument(format!(
            "{len} elements of {} overflow usize",
            std::any::type_name::<T>()
        )))
}

impl<T: Pod> SharedArray<T> {
    /// A zeroed array of `len` elements in a new segment of its own.
    ///
    /// The segment is a memfd: it has no name in `/dev/shm`, so nothing is left
    /// behind whatever way this process ends (even `kill -9`). Other processes
    /// of the same user attach through its handle while this process lives.
    /// For a segment that unrelated processes open by name, use
    /// [`SharedArray::new_in`] with a named [`Segment`].
    ///
    /// # Errors
    /// [`Error::NoSpace`] if shared memory cannot hold it.
    pub fn new(len: usize) -> Result<Self> {
        let bytes = byte_len::<T>(len)?;
        let seg = SegmentBuilder::new()
            .kind(kind::ARRAY)
            .memfd()
            .create(bytes + ARRAY_ALIGN)?;
        Self::new_in(&Arc::new(seg), len)
    }

    /// A new array holding a copy of `data`.
    pub fn from_slice(data: &[T]) -> Result<Self> {
        let a = Self::new(data.len())?;
        a.copy_from_slice(data);
        Ok(a)
    }

    /// A zeroed array of `len` elements allocated in `seg`.
    ///
    /// # Errors
    /// [`Error::SegmentFull`] if `seg` has no room left.
    pub fn new_in(seg: &Arc<Segment>, len: usize) -> Result<Self> {
        if !seg.is_writable() {
            return Err(Error::InvalidState("segment is read-only".into()));
        }
        let bytes = byte_len::<T>(len)?;
        let align = ARRAY_ALIGN.max(std::mem::align_of::<T>());
        let offset = seg.alloc(bytes, align)?;
        Self::from_region(Arc::clone(seg), offset, len)
    }

    /// Views `len` elements at byte `offset` of `seg` (for example the data of a
    /// mapped `.npy` file). The region must lie in the segment and `offset` must
    /// be a multiple of `align_of::<T>()`.
    ///
    /// # Errors
    /// [`Error::OutOfBounds`] otherwise.
    pub fn from_region(seg: Arc<Segment>, offset: usize, len: usize) -> Result<Self> {
        let bytes = byte_len::<T>(len)?;
        seg.region(
            "shared array",
            offset as u64,
            bytes as u64,
            std::mem::align_of::<T>(),
        )?;
        Ok(SharedArray {
            seg,
            offset,
            len,
            _t: PhantomData,
        })
    }

    /// Attaches to the array a handle describes, checking the element type,
    /// size, alignment, offset and bounds.
    ///
    /// # Errors
    /// [`Error::TypeMismatch`] for another element type, [`Error::OutOfBounds`]
    /// for a region outside the segment, or any error of [`Segment::open_handle`].
    pub fn attach(handle: &ArrayHandle) -> Result<Self> {
        Self::check_type(handle)?;
        let seg = Segment::open_handle(&handle.segment)?;
        Self::attach_in(Arc::new(seg), handle)
    }

    /// Like [`attach`](SharedArray::attach), with the segment already open.
    pub fn attach_in(seg: Arc<Segment>, handle: &ArrayHandle) -> Result<Self> {
        Self::check_type(handle)?;
        let len = usize::try_from(handle.len).map_err(|_| Error::OutOfBounds {
            what: "shared array",
            offset: handle.offset,
            len: handle.len,
            size: seg.len() as u64,
        })?;
        let offset = usize::try_from(handle.offset).map_err(|_| Error::OutOfBounds {
            what: "shared array",
            offset: handle.offset,
            len: handle.len,
            size: seg.len() as u64,
        })?;
        let bytes = len
            .checked_mul(std::mem::size_of::<T>())
            .ok_or(Error::OutOfBounds {
                what: "shared array",
                offset: handle.offset,
                len: handle.len,
                size: seg.len() as u64,
            })?;
        seg.region(
            "shared array",
            offset as u64,
            bytes as u64,
            std::mem::align_of::<T>(),
        )?;
        Ok(SharedArray {
            seg,
            offset,
            len,
            _t: PhantomData,
        })
    }

    fn check_type(handle: &ArrayHandle) -> Result<()> {
        let expected = std::any::type_name::<T>();
        if handle.elem_type != expected
            || handle.elem_size as usize != std::mem::size_of::<T>()
            || handle.elem_align as usize != std::mem::align_of::<T>()
        {
            return Err(Error::TypeMismatch {
                expected: format!(
                    "{expected} (size {}, align {})",
                    std::mem::size_of::<T>(),
                    std::mem::align_of::<T>()
                ),
                found: format!(
                    "{} (size {}, align {})",
                    handle.elem_type, handle.elem_size, handle.elem_align
                ),
            });
        }
        Ok(())
    }

    /// The handle another process attaches with.
    pub fn handle(&self) -> ArrayHandle {
        ArrayHandle {
            segment: self.seg.handle(),
            offset: self.offset as u64,
            len: self.len as u64,
            elem_size: std::mem::size_of::<T>() as u32,
            elem_align: std::mem::align_of::<T>() as u32,
            elem_type: std::any::type_name::<T>().to_owned(),
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The segment holding the array.
    pub fn segment(&self) -> &Arc<Segment> {
        &self.seg
    }

    /// Byte offset of element 0 in the segment.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Pointer to element 0.
    pub fn as_ptr(&self) -> *mut T {
        // SAFETY: `offset` was bounds-checked against the mapping when this
        // value was made, so the pointer is inside (or one past) the mapping.
        unsafe { self.seg.as_ptr().add(self.offset).cast::<T>() }
    }

    /// A view of the elements in `range`, sharing the same memory.
    ///
    /// # Panics
    /// If the range is out of bounds or decreasing.
    pub fn slice(&self, range: Range<usize>) -> SharedArray<T> {
        assert!(
            range.start <= range.end && range.end <= self.len,
            "range {range:?} out of bounds for a shared array of {} elements",
            self.len
        );
        SharedArray {
            seg: Arc::clone(&self.seg),
            offset: self.offset + range.start * std::mem::size_of::<T>(),
            len: range.end - range.start,
            _t: PhantomData,
        }
    }

    /// Element `i` (a volatile read), or `None` past the end.
    pub fn get(&self, i: usize) -> Option<T> {
        if i >= self.len {
            return None;
        }
        // SAFETY: i < len, so the element lies in the bounds-checked region; the
        // offset is aligned for T; T is Pod so any bit pattern is a valid value.
        Some(unsafe { self.as_ptr().add(i).read_volatile() })
    }

    /// Writes element `i` (a volatile write).
    ///
    /// # Panics
    /// If `i` is out of bounds or the mapping is read-only.
    pub fn set(&self, i: usize, value: T) {
        assert!(
            i < self.len,
            "index {i} out of bounds for a shared array of {} elements",
            self.len
        );
        assert!(self.seg.is_writable(), "shared array is read-only");
        // SAFETY: i < len, so the element lies in the bounds-checked, writable
        // region and is aligned for T.
        unsafe { self.as_ptr().add(i).write_volatile(value) }
    }

    /// Copies the elements out.
    pub fn to_vec(&self) -> Vec<T> {
        (0..self.len)
            // SAFETY: as in `get`, for every i < len.
            .map(|i| unsafe { self.as_ptr().add(i).read_volatile() })
            .collect()
    }

    /// Copies `data` in.
    ///
    /// # Panics
    /// If the lengths differ or the mapping is read-only.
    pub fn copy_from_slice(&self, data: &[T]) {
        assert_eq!(data.len(), self.len, "length mismatch in copy_from_slice");
        assert!(self.seg.is_writable(), "shared array is read-only");
        for (i, v) in data.iter().enumerate() {
            // SAFETY: as in `set`, for every i < len.
            unsafe { self.as_ptr().add(i).write_volatile(*v) }
        }
    }

    /// The elements as a slice.
    ///
    /// # Safety
    /// While the slice lives, no process (this one included) may write any of
    /// its elements.
    pub unsafe fn as_slice(&self) -> &[T] {
        // SAFETY: the region is bounds-checked and aligned; the caller excludes
        // concurrent writes for the slice's lifetime.
        unsafe { std::slice::from_raw_parts(self.as_ptr(), self.len) }
    }

    /// The elements as a mutable slice.
    ///
    /// # Safety
    /// While the slice lives, no other reference to these elements may exist
    /// and no other process may read or write them. The mapping must be
    /// writable.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn as_mut_slice(&self) -> &mut [T] {
        debug_assert!(self.seg.is_writable());
        // SAFETY: the region is bounds-checked and aligned; the caller
        // guarantees exclusive access for the slice's lifetime.
        unsafe { std::slice::from_raw_parts_mut(self.as_ptr(), self.len) }
    }
}

impl<T: Pod> Serialize for SharedArray<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.handle().serialize(s)
    }
}

impl<'de, T: Pod> Deserialize<'de> for SharedArray<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let h = ArrayHandle::deserialize(d)?;
        SharedArray::attach(&h).map_err(serde::de::Error::custom)
    }
}
