//! The header at the start of every shmproc segment.
//!
//! | offset | field | meaning |
//! |---|---|---|
//! | 0 | magic | `SHMPROC1` in little-endian; written last, with Release |
//! | 8 | version | [`LAYOUT_VERSION`] |
//! | 12 | kind | what the segment holds (see [`kind`](super::kind)) |
//! | 16 | size | total size of the segment in bytes, header included |
//! | 24 | creator_pid | pid of the creating process |
//! | 28 | header_len | [`HEADER_SIZE`] |
//! | 32 | creator_start | start time of the creator (clock ticks since boot) |
//! | 40 | alloc_cursor | next free byte for [`Segment::alloc`](super::Segment::alloc) |
//! | 48 | root | offset of the segment's root object, 0 if none |
//!
//! Every field is an atomic: another process may write the memory at any time,
//! so nothing here is read through a plain reference. The magic is published
//! last with Release and read first with Acquire, so a reader that sees it also
//! sees every other field as the creator wrote it.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// The magic number: the bytes `SHMPROC1`.
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"SHMPROC1");
/// Version of the segment layout written by this build.
pub const LAYOUT_VERSION: u32 = 1;
/// Bytes reserved for the header; data starts here. A multiple of 64.
pub const HEADER_SIZE: usize = 128;

#[repr(C)]
pub(crate) struct Header {
    pub(crate) magic: AtomicU64,
    pub(crate) version: AtomicU32,
    pub(crate) kind: AtomicU32,
    pub(crate) size: AtomicU64,
    pub(crate) creator_pid: AtomicU32,
    pub(crate) header_len: AtomicU32,
    pub(crate) creator_start: AtomicU64,
    pub(crate) alloc_cursor: AtomicU64,
    pub(crate) root: AtomicU64,
}

const _: () = assert!(std::mem::size_of::<Header>() <= HEADER_SIZE);
const _: () = assert!(std::mem::align_of::<Header>() <= 8);

impl Header {
    /// Fills in a fresh header. The magic goes last (SYNC POINT: pairs with the
    /// Acquire load in [`Header::magic`]).
    pub(crate) fn init(&self, kind: u32, size: u64, pid: u32, start: u64) {
        // Relaxed: published by the Release store of the magic below.
        self.version.store(LAYOUT_VERSION, Ordering::Relaxed);
        self.kind.store(kind, Ordering::Relaxed);
        self.size.store(size, Ordering::Relaxed);
        self.creator_pid.store(pid, Ordering::Relaxed);
        self.header_len.store(HEADER_SIZE as u32, Ordering::Relaxed);
        self.creator_start.store(start, Ordering::Relaxed);
        self.alloc_cursor
            .store(HEADER_SIZE as u64, Ordering::Relaxed);
        self.root.store(0, Ordering::Relaxed);
        // SYNC POINT: Release publishes the fields above to `Header::magic`.
        self.magic.store(MAGIC, Ordering::Release);
    }

    /// The magic, read with Acquire (SYNC POINT: pairs with [`Header::init`]).
    pub(crate) fn magic(&self) -> u64 {
        self.magic.load(Ordering::Acquire)
    }
}
