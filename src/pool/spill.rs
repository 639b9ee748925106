//! Payloads too large for a task slot travel in a segment of their own; the
//! slot holds a [`SpillRef`] to it.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::segment::{Segment, SegmentHandle, HEADER_SIZE};

/// Whose spills these are: the pool owner's pid and start time (so `shmproc
/// clean` keeps them while the owner lives) and the pool's tag (so the pool
/// can remove the spills of workers it killed mid-write).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct SpillOwner {
    pub(crate) pid: u32,
    pub(crate) start: u64,
    pub(crate) tag: u32,
}

impl SpillOwner {
    /// This process, with a fresh tag.
    pub(crate) fn new_for_this_process() -> Result<SpillOwner> {
        let (pid, start) = crate::segment::process_identity();
        Ok(SpillOwner {
            pid,
            start,
            tag: crate::segment::random_tag()?,
        })
    }

    /// Removes every spill of this family still in `/dev/shm` (call when no
    /// worker of the pool is left to write one and no result is unread).
    pub(crate) fn remove_leftovers(&self) {
        let prefix = crate::segment::tagged_prefix(self.pid, self.start, self.tag);
        if let Ok(list) = crate::segment::list() {
            for s in list.iter().filter(|s| s.name.starts_with(&prefix)) {
                let _ = crate::segment::unlink(&s.name);
            }
        }
    }
}

/// Where a spilled payload lives.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SpillRef {
    pub(crate) handle: SegmentHandle,
    pub(crate) len: u64,
}

/// Writes `bytes` to a new named segment owned by this process, named after
/// `owner`.
pub(crate) fn create_spill(bytes: &[u8], owner: SpillOwner) -> Result<(Segment, SpillRef)> {
    let name = crate::segment::generate_tagged_name(owner.pid, owner.start, owner.tag)?;
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
pub(crate) fn write_spill(bytes: &[u8], owner: SpillOwner) -> Result<SpillRef> {
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
