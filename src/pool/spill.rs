//! Payloads too large for a task slot travel in a segment of their own; the
//! slot holds a [`SpillRef`] to it.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::segment::{self, kind, Segment, SegmentHandle, HEADER_SIZE};

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
        let (pid, start) = segment::process_identity();
        Ok(SpillOwner {
            pid,
            start,
            tag: segment::random_tag()?,
        })
    }

    /// Removes every spill of this family still in `/dev/shm` (call when no
    /// worker of the pool is left to write one and no result is unread).
    pub(crate) fn remove_leftovers(&self) {
        let prefix = segment::tagged_prefix(self.pid, self.start, self.tag);
        if let Ok(list) = segment::list() {
            for s in list.iter().filter(|s| s.name.starts_with(&prefix)) {
                let _ = segment::unlink(&s.name);
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
    let name = segment::generate_tagged_name(owner.pid, owner.start, owner.tag)?;
    let seg = Segment::builder()
        .kind(kind::SPILL)
        .name(name)
        .create(bytes.len())?;
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

/// Checks that `r`, read from a task slot (memory any worker can scribble
/// on), names a spill of `owner`'s pool: a named shm segment whose name is
/// `owner`'s tagged prefix followed by 8 hex digits. Nothing is opened or
/// unlinked. Returns the name.
fn check_name<'r>(r: &'r SpillRef, owner: Option<&SpillOwner>) -> Result<&'r str> {
    let bad = |why: &str| Error::Corrupt(format!("spill reference {:?}: {why}", r.handle));
    let SegmentHandle::Shm { name } = &r.handle else {
        return Err(bad("not a named shm segment"));
    };
    if segment::parse_name(name).is_none() {
        return Err(bad("not a generated segment name"));
    }
    if let Some(o) = owner {
        let prefix = segment::tagged_prefix(o.pid, o.start, o.tag);
        let rest = name.strip_prefix(&prefix);
        let hex8 = |s: &str| s.len() == 8 && s.bytes().all(|b| b.is_ascii_hexdigit());
        if !rest.is_some_and(hex8) {
            return Err(bad("not a spill of this pool"));
        }
    }
    Ok(name)
}

/// Opens the spill `r` names (checked by [`check_name`]) and copies its
/// payload out, after checking the segment's kind and the length.
fn read_checked(r: &SpillRef, name: &str) -> Result<Vec<u8>> {
    let seg = Segment::builder().kind(kind::SPILL).open(name)?;
    let src = seg.region("spill", HEADER_SIZE as u64, r.len, 1)?;
    // region() bounded r.len by the mapping's size, so it fits a usize.
    let len = r.len as usize;
    let mut v = vec![0u8; len];
    // SAFETY: `len` bytes at `src` lie inside the mapping (checked above); the
    // writer finished before publishing the reference.
    unsafe { std::ptr::copy_nonoverlapping(src, v.as_mut_ptr(), len) };
    Ok(v)
}

/// Copies out the payload of a spill of `owner`'s pool.
///
/// # Errors
/// [`Error::Corrupt`] unless `r` names a named shm segment with `owner`'s
/// tagged prefix (never a file, a memfd or another name);
/// [`Error::KindMismatch`] unless the segment is of kind [`kind::SPILL`];
/// [`Error::OutOfBounds`] if `r.len` runs past it; open errors. Checked
/// before anything is mapped.
pub(crate) fn read_spill_of(r: &SpillRef, owner: SpillOwner) -> Result<Vec<u8>> {
    let name = check_name(r, Some(&owner))?;
    read_checked(r, name)
}

/// [`read_spill_of`], then removes the segment's name. Nothing is unlinked
/// when a check fails: a malformed spill of this pool is removed by
/// [`SpillOwner::remove_leftovers`] at shutdown.
pub(crate) fn take_spill_of(r: &SpillRef, owner: SpillOwner) -> Result<Vec<u8>> {
    let name = check_name(r, Some(&owner))?;
    let v = read_checked(r, name)?;
    let _ = segment::unlink(name);
    Ok(v)
}

#[cfg(test)]
mod test;
