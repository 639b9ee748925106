//! Payloads too large for a task slot travel in a segment of their own; the
//! slot holds a [`SpillRef`] to it.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::segment::{Segment, SegmentHandle, HEADER_SIZE};

/// Where a spilled payload lives.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SpillRef {
    pub(crate) handle: SegmentHandle,
    pub(crate) len: u64,
}

/// Writes `bytes` to a new named segment owned by this process, named after
/// `owner` (pid, start time) so that `shmproc clean` keeps it while the owner
/// lives.
pub(crate) fn create_spill(bytes: &[u8], owner: (u32, u64)) -> Result<(Segment, SpillRef)> {
    let name = crate::segment::generate_name_for(owner.0, owner.1)?;
    let seg = Segment::builder().name(name).create(bytes.len())?;
    let off = seg.alloc(bytes.len(), 8)?;
    debug_assert_eq!(off, HEADER_SIZE);
    let dst = seg.region("spill", off as u64, bytes.len() as u64, 1)?;
    // SAFETY: the region was just allocated and checked; nobody else knows the
    // segment yet.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), dst, bytes.len()) };
    let r = SpillRef {
        handle: seg.handle(),
        len: bytes.len() as u64,
    };
    Ok((seg, r))
}

/// Writes `bytes` to a new named segment whose name outlives this value: the
/// reader (`owner`, the pool's parent) unlinks it with [`take_spill`]; if the
/// owner dies first, `shmproc clean` (or the next pool start) removes it.
pub(crate) fn write_spill(bytes: &[u8], owner: (u32, u64)) -> Result<SpillRef> {
    let (seg, r) = create_spill(bytes, owner)?;
    seg.release_ownership();
    Ok(r)
}

/// Copies a spilled payload out.
pub(crate) fn read_spill(r: &SpillRef) -> Result<Vec<u8>> {
    let seg = Arc::new(Segment::open_handle(&r.handle)?);
    let len = usize::try_from(r.len).map_err(|_| Error::Corrupt("spill length".into()))?;
    let src = seg.region("spill", HEADER_SIZE as u64, r.len, 1)?;
    let mut v = vec![0u8; len];
    // SAFETY: `len` bytes at `src` lie inside the mapping (checked above); the
    // writer finished before publishing the reference.
    unsafe { std::ptr::copy_nonoverlapping(src, v.as_mut_ptr(), len) };
    Ok(v)
}

/// Reads a spilled payload and removes its segment.
pub(crate) fn take_spill(r: &SpillRef) -> Result<Vec<u8>> {
    let v = read_spill(r);
    if let SegmentHandle::Shm { name } = &r.handle {
        let _ = crate::segment::unlink(name);
    }
    v
}
