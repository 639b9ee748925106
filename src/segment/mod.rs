//! Shared segments: named POSIX shared memory, memfd, and mapped files.
//!
//! A [`Segment`] is a region of memory that several processes map at once. A
//! segment created by shmproc starts with a header (magic, layout
//! version, size, creator pid and start time, kind) that [`Segment::open`]
//! validates, so opening something that is not a shmproc segment, or one written
//! by an incompatible build, is a clear error.
//!
//! - **Named** segments (`/dev/shm/<name>`) can be opened by unrelated processes.
//!   Generated names look like `shmproc.<pid>.<start>.<random>`: they carry the
//!   creator's pid and start time (so [`sweep`] can tell a dead creator's leftovers
//!   from a live one's) and 64 random bits (so nobody can guess them). They are
//!   created with `O_EXCL` and mode 0600.
//! - **memfd** segments have no name in `/dev/shm`; they vanish when the last
//!   process unmaps them, even after `kill -9`. Other processes of the same user
//!   open them through `/proc/<creator>/fd/<fd>` while the creator lives.
//! - **File** mappings map an ordinary file, with or without a shmproc header
//!   (raw files are how `shmproc run` maps its inputs and outputs).
//!
//! Space is reserved with `posix_fallocate` at creation, so a full `/dev/shm` is
//! an [`Error::NoSpace`] at create time, never a SIGBUS later.
//!
//! The creator owns a named segment and unlinks its name when dropped (only in
//! the creating process: a forked child never unlinks its parent's segment).
//!
//! ```
//! use shmproc::segment::Segment;
//!
//! let seg = Segment::create(4096)?;
//! let name = seg.name().expect("named segment").to_owned();
//! assert!(name.starts_with("shmproc."));
//!
//! let other = Segment::open(&name)?; // as another process would
//! assert_eq!(other.len(), seg.len());
//! drop(other);
//! drop(seg); // the creator unlinks the name
//! assert!(matches!(Segment::open(&name), Err(shmproc::Error::SegmentNotFound(_))));
//! # Ok::<(), shmproc::Error>(())
//! ```

mod array;
pub(crate) mod header;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;

use memmap2::MmapRaw;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::sys::shm as sys;

pub use crate::sys::shm::page_size;
pub(crate) use array::RawArray;
pub use array::{ArrayHandle, AtomicElement, SharedArray, SharedView};
use header::Header;
pub use header::{HEADER_SIZE, LAYOUT_VERSION};

/// Prefix of every name shmproc generates, in `/dev/shm` and for memfds.
pub const NAME_PREFIX: &str = "shmproc";

/// Kind tags stored in segment headers: what a segment holds.
pub mod kind {
    /// Plain bytes, allocated with [`Segment::alloc`](super::Segment::alloc).
    pub const RAW: u32 = 1;
    /// A [`SharedArray`](super::SharedArray).
    pub const ARRAY: u32 = 2;
    /// Synchronisation primitives.
    pub const SYNC: u32 = 3;
    /// A queue.
    pub const QUEUE: u32 = 4;
    /// A pipe.
    pub const PIPE: u32 = 5;
    /// A pool's control block.
    pub const POOL: u32 = 6;
    /// The elements of an owned [`SharedArray`](super::SharedArray): no
    /// [`SharedView`](super::SharedView) attaches to it.
    pub const OWNED_ARRAY: u32 = 8;
    /// A pool's spilled payload (arguments or a result too large for a slot).
    pub const SPILL: u32 = 7;
    /// First tag free for applications.
    pub const USER: u32 = 0x1000;
    /// Reported for raw file mappings, which have no header.
    pub const NO_HEADER: u32 = 0;
}

/// How another process finds a segment. Small, serializable, cheap to send.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SegmentHandle {
    /// A named POSIX shared memory object (`/dev/shm/<name>`).
    Shm {
        /// The name, without a leading `/`.
        name: String,
    },
    /// A memfd held open by its creator.
    Memfd {
        /// Creator pid.
        pid: u32,
        /// Creator start time, to reject a recycled pid.
        start_time: u64,
        /// The descriptor number in the creator.
        fd: i32,
        /// Inode number of the memfd: tells it from a later memfd that reuses
        /// the descriptor number.
        ino: u64,
    },
    /// A mapped file.
    File {
        /// Path of the file.
        path: PathBuf,
        /// Whether the file starts with a shmproc header.
        header: bool,
        /// Whether the mapping is writable.
        writable: bool,
    },
    /// A part of a plain file (no header), mapped on its own
    /// ([`Segment::map_file_range`]).
    FileRange {
        /// Path of the file.
        path: PathBuf,
        /// Byte offset of the part in the file (a multiple of the page size).
        offset: u64,
        /// Bytes in the part.
        len: u64,
        /// Whether the mapping is writable.
        writable: bool,
    },
}

#[derive(Debug)]
enum Backing {
    Shm(String),
    Memfd { fd: i32, ino: u64 },
    File { path: PathBuf, header: bool },
    FileRange { path: PathBuf, offset: u64 },
}

/// A mapped shared segment. `Send + Sync`; share it with `Arc`.
#[derive(Debug)]
pub struct Segment {
    map: MmapRaw,
    file: File,
    backing: Backing,
    has_header: bool,
    writable: bool,
    /// Unlink the name on drop (named segments created by this process).
    owner: AtomicBool,
    /// The process that created this value; Drop unlinks only there.
    creator_pid: u32,
    /// Which pages of this mapping have had their page tables filled in (read
    /// and write), so that [`Segment::prefault`] asks the kernel only once per
    /// page. Local to this mapping.
    populated: [OnceLock<Box<[AtomicU64]>>; 2],
}

/// Builds or opens a [`Segment`]: `Segment::builder().kind(k).memfd().create(n)`.
#[derive(Debug, Clone)]
pub struct SegmentBuilder {
    kind: u32,
    name: Option<String>,
    memfd: bool,
}

impl Default for SegmentBuilder {
    fn default() -> Self {
        SegmentBuilder {
            kind: kind::RAW,
            name: None,
            memfd: false,
        }
    }
}

/// A name of the form `shmproc.<pid>.<start>.<random hex>`.
pub(crate) fn generate_name() -> Result<String> {
    let pid = sys::getpid();
    generate_name_for(pid, sys::process_start_time(pid).unwrap_or(0))
}

/// A generated name that ties the segment's lifetime to another process (pid
/// and start time): [`sweep`] removes it once *that* process is gone. Used for
/// segments a worker creates for its parent to read.
pub(crate) fn generate_name_for(pid: u32, start: u64) -> Result<String> {
    Ok(format!(
        "{NAME_PREFIX}.{pid}.{start}.{:016x}",
        sys::random_u64()?
    ))
}

/// Like [`generate_name_for`], with the first 32 of the 64 random bits
/// replaced by `tag`, so that a family of segments (a pool's spills) can be
/// found by [`tagged_prefix`] while the rest stays unguessable.
pub(crate) fn generate_tagged_name(pid: u32, start: u64, tag: u32) -> Result<String> {
    Ok(format!(
        "{}{:08x}",
        tagged_prefix(pid, start, tag),
        sys::random_u64()? as u32
    ))
}

/// The name prefix shared by every [`generate_tagged_name`] of this family.
pub(crate) fn tagged_prefix(pid: u32, start: u64, tag: u32) -> String {
    format!("{NAME_PREFIX}.{pid}.{start}.{tag:08x}")
}

/// A random 32-bit tag for [`generate_tagged_name`].
pub(crate) fn random_tag() -> Result<u32> {
    Ok(sys::random_u64()? as u32)
}

/// This process's pid and start time.
pub(crate) fn process_identity() -> (u32, u64) {
    let pid = sys::getpid();
    (pid, sys::process_start_time(pid).unwrap_or(0))
}

/// Parses the creator pid and start time out of a generated name.
pub(crate) fn parse_name(name: &str) -> Option<(u32, u64)> {
    let mut parts = name.split('.');
    if parts.next()? != NAME_PREFIX {
        return None;
    }
    let pid = parts.next()?.parse().ok()?;
    let start = parts.next()?.parse().ok()?;
    let rand = parts.next()?;
    if rand.len() != 16 || parts.next().is_some() {
        return None;
    }
    Some((pid, start))
}

impl SegmentBuilder {
    /// A builder for a named segment of kind [`kind::RAW`] with a generated name.
    pub fn new() -> Self {
        Self::default()
    }

    /// The kind tag written in the header and checked by [`SegmentBuilder::open`].
    pub fn kind(mut self, kind: u32) -> Self {
        self.kind = kind;
        self
    }

    /// Uses this name instead of a generated one (named segments only).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Backs the segment with a memfd instead of a name in `/dev/shm`.
    pub fn memfd(mut self) -> Self {
        self.memfd = true;
        self
    }

    /// Creates the segment with `capacity` usable bytes after the header.
    ///
    /// # Errors
    /// [`Error::InvalidName`], [`Error::SegmentExists`], [`Error::NoSpace`] when
    /// shared memory cannot hold it, or [`Error::Io`].
    pub fn create(self, capacity: usize) -> Result<Segment> {
        let total = (HEADER_SIZE as u64)
            .checked_add(capacity as u64)
            .ok_or_else(|| Error::NoSpace {
                requested: u64::MAX,
                source: std::io::Error::from_raw_os_error(libc::EFBIG),
            })?;
        let (file, backing) = if self.memfd {
            let name = generate_name()?;
            let file = sys::memfd_create(&name, total)?;
            use std::os::fd::AsRawFd;
            use std::os::unix::fs::MetadataExt;
            let fd = file.as_raw_fd();
            let ino = file
                .metadata()
                .map_err(|e| Error::io("fstat memfd", e))?
                .ino();
            (file, Backing::Memfd { fd, ino })
        } else {
            let name = match self.name {
                Some(n) => n,
                None => generate_name()?,
            };
            let file = sys::shm_create(&name, total)?;
            (file, Backing::Shm(name))
        };
        let seg = match sys::map(&file, "segment") {
            Ok(map) => Segment {
                map,
                file,
                backing,
                has_header: true,
                writable: true,
                owner: AtomicBool::new(true),
                creator_pid: sys::getpid(),
                populated: Default::default(),
            },
            Err(e) => {
                if let Backing::Shm(name) = &backing {
                    let _ = sys::shm_unlink(name);
                }
                return Err(e);
            }
        };
        let pid = sys::getpid();
        seg.header().init(
            self.kind,
            total,
            pid,
            sys::process_start_time(pid).unwrap_or(0),
        );
        Ok(seg)
    }

    /// Opens the named segment `name` and checks that it is of this builder's kind.
    pub fn open(self, name: &str) -> Result<Segment> {
        let seg = Segment::open(name)?;
        seg.expect_kind(self.kind)?;
        Ok(seg)
    }
}

impl Segment {
    /// A builder, for a kind, a chosen name or memfd backing.
    pub fn builder() -> SegmentBuilder {
        SegmentBuilder::new()
    }

    /// Creates a named segment (generated name, kind [`kind::RAW`]) with
    /// `capacity` usable bytes after the header.
    pub fn create(capacity: usize) -> Result<Segment> {
        SegmentBuilder::new().create(capacity)
    }

    /// Opens an existing named segment and validates its header.
    ///
    /// # Errors
    /// [`Error::SegmentNotFound`], [`Error::InvalidName`], [`Error::BadMagic`],
    /// [`Error::VersionMismatch`], [`Error::SizeMismatch`].
    pub fn open(name: &str) -> Result<Segment> {
        let file = sys::shm_open(name)?;
        Self::from_file(file, Backing::Shm(name.to_owned()), name)
    }

    /// Opens the segment `handle` names through this process's cache of
    /// mappings (16 segments), reusing a mapping from an earlier call while
    /// the handle still refers to the same object (one `stat`). On a miss,
    /// entries whose objects are gone are dropped first, so a process never
    /// pins memory another has freed for longer than until it opens
    /// something new. Meant for workers that attach the same arrays task after
    /// task.
    ///
    /// # Errors
    /// As [`Segment::open_handle`].
    pub fn open_cached(handle: &SegmentHandle) -> Result<std::sync::Arc<Segment>> {
        use std::sync::{Arc, Mutex};
        const CACHE_SLOTS: usize = 16;
        type CacheEntry = (SegmentHandle, Arc<Segment>);
        static CACHE: Mutex<Vec<CacheEntry>> = Mutex::new(Vec::new());
        let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = cache.iter().position(|(hh, _)| hh == handle) {
            if cache[i].1.still_named_by(handle) {
                return Ok(Arc::clone(&cache[i].1));
            }
            cache.remove(i);
        }
        cache.retain(|(hh, seg)| seg.still_named_by(hh));
        let seg = Arc::new(Segment::open_handle(handle)?);
        if cache.len() >= CACHE_SLOTS {
            cache.remove(0);
        }
        cache.push((handle.clone(), Arc::clone(&seg)));
        Ok(seg)
    }

    /// Opens the segment a handle describes (as another process does).
    pub fn open_handle(handle: &SegmentHandle) -> Result<Segment> {
        match handle {
            SegmentHandle::Shm { name } => Segment::open(name),
            SegmentHandle::Memfd {
                pid,
                start_time,
                fd,
                ino,
            } => {
                use std::os::unix::fs::MetadataExt;
                let gone = || {
                    Error::SegmentNotFound(format!(
                        "memfd {fd} (inode {ino}) of process {pid}, which has exited or closed it"
                    ))
                };
                if *pid != sys::getpid() && !sys::process_alive(*pid, *start_time) {
                    return Err(gone());
                }
                let path = PathBuf::from(format!("/proc/{pid}/fd/{fd}"));
                let file = sys::open_path(&path, true).map_err(|_| gone())?;
                if file.metadata().map(|m| m.ino()).ok() != Some(*ino) {
                    return Err(gone());
                }
                let what = path.display().to_string();
                Self::from_file(file, Backing::Memfd { fd: *fd, ino: *ino }, &what)
            }
            SegmentHandle::File {
                path,
                header,
                writable,
            } => {
                if *header {
                    Segment::open_file(path)
                } else {
                    Segment::map_file(path, *writable)
                }
            }
            SegmentHandle::FileRange {
                path,
                offset,
                len,
                writable,
            } => {
                let len = usize::try_from(*len).map_err(|_| {
                    Error::InvalidArgument(format!(
                        "a part of {len} bytes of {} does not fit in this address space",
                        path.display()
                    ))
                })?;
                Segment::map_file_range(path, *offset, len, *writable)
            }
        }
    }

    /// Opens a file that holds a shmproc segment (header included).
    pub fn open_file(path: &Path) -> Result<Segment> {
        let file = sys::open_path(path, true)?;
        let what = path.display().to_string();
        Self::from_file(
            file,
            Backing::File {
                path: path.to_owned(),
                header: true,
            },
            &what,
        )
    }

    /// Creates (or truncates) `path` as a shmproc segment file with a header and
    /// `capacity` usable bytes. The file is not removed on drop.
    pub fn create_file(path: &Path, kind: u32, capacity: usize) -> Result<Segment> {
        let total = HEADER_SIZE as u64 + capacity as u64;
        let file = create_truncate(path)?;
        sys::reserve(&file, total)?;
        let map = sys::map(&file, "segment file")?;
        let seg = Segment {
            map,
            file,
            backing: Backing::File {
                path: path.to_owned(),
                header: true,
            },
            has_header: true,
            writable: true,
            owner: AtomicBool::new(false),
            creator_pid: sys::getpid(),
            populated: Default::default(),
        };
        let pid = sys::getpid();
        seg.header()
            .init(kind, total, pid, sys::process_start_time(pid).unwrap_or(0));
        Ok(seg)
    }

    /// Maps a plain file (no header) shared, read-write or read-only. Every
    /// byte of it is data; [`SharedArray::from_region`] views a part of it.
    pub fn map_file(path: &Path, writable: bool) -> Result<Segment> {
        let file = sys::open_path(path, writable)?;
        let what = path.display().to_string();
        let map = if writable {
            sys::map(&file, &what)?
        } else {
            sys::map_read_only(&file, &what)?
        };
        Ok(Segment {
            map,
            file,
            backing: Backing::File {
                path: path.to_owned(),
                header: false,
            },
            has_header: false,
            writable,
            owner: AtomicBool::new(false),
            creator_pid: sys::getpid(),
            populated: Default::default(),
        })
    }

    /// Maps `len` bytes of a plain file from byte `offset` on, shared,
    /// read-write or read-only: only that part of the file is mapped (by this
    /// process and by every process that opens the [`handle`](Self::handle)),
    /// so each of several processes can map just its own part of a large
    /// file. Byte 0 of the segment is byte `offset` of the file.
    ///
    /// ```
    /// # fn main() -> shmproc::Result<()> {
    /// use shmproc::{Segment, SharedView};
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("data.bin");
    /// let values: Vec<u64> = (0..2048).collect();
    /// std::fs::write(&path, bytemuck::cast_slice::<u64, u8>(&values)).unwrap();
    /// // The second page of the file: elements 512..1024.
    /// let seg = Segment::map_file_range(&path, 4096, 4096, false)?;
    /// let part = SharedView::<u64>::from_region(std::sync::Arc::new(seg), 0, 512)?;
    /// // SAFETY: nothing writes the file meanwhile.
    /// assert_eq!(unsafe { part.as_slice() }[0], 512);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `offset` is not a multiple of the page
    /// size ([`page_size`]), [`Error::OutOfBounds`] if the part goes past the
    /// end of the file; open and mmap errors.
    pub fn map_file_range(path: &Path, offset: u64, len: usize, writable: bool) -> Result<Segment> {
        let file = sys::open_path(path, writable)?;
        let what = path.display().to_string();
        let page = sys::page_size();
        if !offset.is_multiple_of(page as u64) {
            return Err(Error::InvalidArgument(format!(
                "offset {offset} into {what} is not a multiple of the page size {page}"
            )));
        }
        let (size, _) = sys::stat(&file)?;
        if offset.checked_add(len as u64).is_none_or(|end| end > size) {
            return Err(Error::OutOfBounds {
                what: "a mapped part of a file",
                offset,
                len: len as u64,
                size,
            });
        }
        let map = sys::map_range(&file, offset, len, writable, &what)?;
        Ok(Segment {
            map,
            file,
            backing: Backing::FileRange {
                path: path.to_owned(),
                offset,
            },
            has_header: false,
            writable,
            owner: AtomicBool::new(false),
            creator_pid: sys::getpid(),
            populated: Default::default(),
        })
    }

    /// Creates (or truncates) a plain file of `size` bytes, space reserved, and
    /// maps it read-write.
    pub fn create_raw_file(path: &Path, size: u64) -> Result<Segment> {
        let file = create_truncate(path)?;
        sys::reserve(&file, size)?;
        drop(file);
        Segment::map_file(path, true)
    }

    fn from_file(file: File, backing: Backing, what: &str) -> Result<Segment> {
        let (size, _) = sys::stat(&file)?;
        if size < HEADER_SIZE as u64 {
            return Err(Error::BadMagic {
                name: what.to_owned(),
            });
        }
        let map = sys::map(&file, what)?;
        let seg = Segment {
            map,
            file,
            backing,
            has_header: true,
            writable: true,
            owner: AtomicBool::new(false),
            creator_pid: sys::getpid(),
            populated: Default::default(),
        };
        let h = seg.header();
        if h.magic() != header::MAGIC {
            return Err(Error::BadMagic {
                name: what.to_owned(),
            });
        }
        // Relaxed: the Acquire load of the magic above orders these reads.
        let version = h.version.load(Ordering::Relaxed);
        if version != LAYOUT_VERSION {
            return Err(Error::VersionMismatch {
                name: what.to_owned(),
                found: version,
                expected: LAYOUT_VERSION,
            });
        }
        let hsize = h.size.load(Ordering::Relaxed);
        let hlen = h.header_len.load(Ordering::Relaxed);
        if hsize != size || hlen as usize != HEADER_SIZE {
            return Err(Error::SizeMismatch {
                name: what.to_owned(),
                header: hsize,
                actual: size,
            });
        }
        Ok(seg)
    }

    fn header(&self) -> &Header {
        debug_assert!(self.has_header && self.map.len() >= HEADER_SIZE);
        // SAFETY: segments with a header are at least HEADER_SIZE bytes long
        // (checked on open, guaranteed on create), the map is page-aligned, and
        // Header consists only of atomics, which tolerate concurrent access from
        // other processes. The reference lives no longer than `self.map`.
        unsafe { &*(self.map.as_mut_ptr() as *const Header) }
    }

    /// The name in `/dev/shm`, for named segments.
    pub fn name(&self) -> Option<&str> {
        match &self.backing {
            Backing::Shm(n) => Some(n),
            _ => None,
        }
    }

    /// A handle another process can open with [`Segment::open_handle`].
    pub fn handle(&self) -> SegmentHandle {
        match &self.backing {
            Backing::Shm(name) => SegmentHandle::Shm { name: name.clone() },
            Backing::Memfd { fd, ino } => {
                let pid = if self.has_header {
                    // Relaxed: set once at creation, before the handle exists.
                    self.header().creator_pid.load(Ordering::Relaxed)
                } else {
                    sys::getpid()
                };
                SegmentHandle::Memfd {
                    pid,
                    start_time: self.header().creator_start.load(Ordering::Relaxed),
                    fd: *fd,
                    ino: *ino,
                }
            }
            Backing::File { path, header } => SegmentHandle::File {
                path: path.clone(),
                header: *header,
                writable: self.writable,
            },
            Backing::FileRange { path, offset } => SegmentHandle::FileRange {
                path: path.clone(),
                offset: *offset,
                len: self.map.len() as u64,
                writable: self.writable,
            },
        }
    }

    /// Total size in bytes, header included.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True if the segment has no bytes at all.
    pub fn is_empty(&self) -> bool {
        self.map.len() == 0
    }

    /// Whether the segment starts with a shmproc header.
    pub fn has_header(&self) -> bool {
        self.has_header
    }

    /// Whether the mapping can be written.
    pub fn is_writable(&self) -> bool {
        self.writable
    }

    /// The kind tag in the header ([`kind::NO_HEADER`] for raw files).
    pub fn kind(&self) -> u32 {
        if self.has_header {
            // Relaxed: immutable after creation, published by the magic.
            self.header().kind.load(Ordering::Relaxed)
        } else {
            kind::NO_HEADER
        }
    }

    /// Changes the kind tag (an owned array becoming a view).
    pub(crate) fn set_kind(&self, kind: u32) {
        if self.has_header && self.writable {
            // Relaxed: other processes learn of the new kind only through a
            // handle sent after this store (a synchronising message).
            self.header().kind.store(kind, Ordering::Relaxed);
        }
    }

    /// Fails with [`Error::KindMismatch`] unless the segment is of `expected` kind.
    pub fn expect_kind(&self, expected: u32) -> Result<()> {
        let found = self.kind();
        if found != expected {
            return Err(Error::KindMismatch {
                name: self.describe(),
                found,
                expected,
            });
        }
        Ok(())
    }

    /// Pid of the process that created the segment (from the header).
    pub fn creator_pid(&self) -> Option<u32> {
        // Relaxed: immutable after creation, published by the magic.
        self.has_header
            .then(|| self.header().creator_pid.load(Ordering::Relaxed))
    }

    /// Offset of the segment's root object (0 if none was set).
    pub fn root(&self) -> u64 {
        if self.has_header {
            // SYNC POINT: pairs with the Release store in `set_root`.
            self.header().root.load(Ordering::Acquire)
        } else {
            0
        }
    }

    /// Records `offset` as the segment's root object, for openers to find.
    pub fn set_root(&self, offset: u64) {
        if self.has_header {
            // SYNC POINT: Release publishes the object initialised at `offset`.
            self.header().root.store(offset, Ordering::Release);
        }
    }

    /// Base address of the mapping. Writing through it is only sound under a
    /// protocol that excludes concurrent access to the same bytes.
    pub fn as_ptr(&self) -> *mut u8 {
        self.map.as_mut_ptr()
    }

    /// Reserves `size` bytes aligned to `align` (a power of two) in the
    /// segment's data area and returns their offset. The bytes are zero in a
    /// fresh segment. Thread- and process-safe (an atomic bump pointer).
    ///
    /// # Errors
    /// [`Error::SegmentFull`] when the rest of the segment is too small.
    pub fn alloc(&self, size: usize, align: usize) -> Result<usize> {
        if !self.has_header {
            return Err(Error::InvalidState(
                "cannot allocate in a raw file mapping".into(),
            ));
        }
        if !align.is_power_of_two() {
            return Err(Error::InvalidArgument(format!(
                "alignment {align} is not a power of two"
            )));
        }
        let total = self.map.len() as u64;
        let mut start = 0u64;
        // Relaxed is enough: the cursor only hands out disjoint ranges; the
        // contents are published by whatever protocol the caller uses.
        self.header()
            .alloc_cursor
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |cur| {
                // The cursor is in shared memory: a peer may have scribbled a
                // value below the header, which must never be handed out.
                let cur = cur.max(HEADER_SIZE as u64);
                let aligned = cur.checked_add(align as u64 - 1)? & !(align as u64 - 1);
                let end = aligned.checked_add(size as u64)?;
                if end > total {
                    return None;
                }
                start = aligned;
                Some(end)
            })
            .map_err(|_| Error::SegmentFull {
                name: self.describe(),
                requested: size as u64,
            })?;
        Ok(start as usize)
    }

    /// Checks that `[offset, offset + len)` lies in the segment (after the
    /// header, if any) and that `offset` is a multiple of `align`; returns the
    /// address of `offset`.
    pub(crate) fn region(
        &self,
        what: &'static str,
        offset: u64,
        len: u64,
        align: usize,
    ) -> Result<*mut u8> {
        let size = self.map.len() as u64;
        let floor = if self.has_header {
            HEADER_SIZE as u64
        } else {
            0
        };
        let fits = offset
            .checked_add(len)
            .is_some_and(|end| end <= size && offset >= floor);
        let aligned = align.is_power_of_two() && offset.is_multiple_of(align as u64);
        if !fits || !aligned {
            return Err(Error::OutOfBounds {
                what,
                offset,
                len,
                size,
            });
        }
        // SAFETY: offset <= size (checked above), so the result stays within
        // (or one past the end of) the mapping.
        Ok(unsafe { self.as_ptr().add(offset as usize) })
    }

    /// Removes the segment's name now (named segments); mappings stay valid.
    pub fn unlink(&self) -> Result<()> {
        self.owner.store(false, Ordering::Relaxed);
        match &self.backing {
            Backing::Shm(name) => sys::shm_unlink(name),
            _ => Ok(()),
        }
    }

    /// Gives up ownership: the name will not be unlinked on drop.
    pub fn release_ownership(&self) {
        // Relaxed: a local flag read only by Drop of this value.
        self.owner.store(false, Ordering::Relaxed);
    }

    /// Whether dropping this value unlinks the name.
    pub fn is_owner(&self) -> bool {
        self.owner.load(Ordering::Relaxed)
    }

    fn describe(&self) -> String {
        match &self.backing {
            Backing::Shm(n) => n.clone(),
            Backing::Memfd { fd, .. } => format!("memfd {fd}"),
            Backing::File { path, .. } => path.display().to_string(),
            Backing::FileRange { path, offset } => {
                format!("{} from byte {offset}", path.display())
            }
        }
    }

    /// Whether `handle` still names the object this segment maps (the name was
    /// not removed or re-created, the memfd's creator still runs).
    pub(crate) fn still_named_by(&self, handle: &SegmentHandle) -> bool {
        use std::os::unix::fs::MetadataExt;
        let Ok(mine) = self.file.metadata() else {
            return false;
        };
        match handle {
            SegmentHandle::Shm { name } => std::fs::metadata(Path::new(sys::SHM_DIR).join(name))
                .is_ok_and(|m| m.ino() == mine.ino() && m.dev() == mine.dev()),
            SegmentHandle::Memfd {
                pid,
                start_time: _,
                fd,
                ino,
            } => {
                // The creator still holds descriptor `fd` on this very inode.
                // (A recycled pid cannot hold it: while we map the memfd its
                // inode number stays unique.)
                *ino == mine.ino()
                    && std::fs::metadata(format!("/proc/{pid}/fd/{fd}"))
                        .is_ok_and(|m| m.ino() == *ino && m.dev() == mine.dev())
            }
            SegmentHandle::File { path, .. } | SegmentHandle::FileRange { path, .. } => {
                std::fs::metadata(path)
                    .is_ok_and(|m| m.ino() == mine.ino() && m.dev() == mine.dev())
            }
        }
    }

    /// Fills in this process's page tables for `[offset, offset + len)` with
    /// one system call per run of pages not done before (MADV_POPULATE_READ or
    /// _WRITE), instead of one page fault per page on first touch. A worker
    /// calls it for the chunk it is about to process; pages already done cost
    /// a bit test. Best effort (a no-op before Linux 5.14).
    pub(crate) fn prefault(&self, offset: usize, len: usize, write: bool) {
        const PAGE: usize = 4096;
        let end = offset.saturating_add(len).min(self.map.len());
        if offset >= end {
            return;
        }
        let write = write && self.writable;
        let pages = self.map.len().div_ceil(PAGE);
        let bits = self.populated[write as usize]
            .get_or_init(|| (0..pages.div_ceil(64)).map(|_| AtomicU64::new(0)).collect());
        // Relaxed: a hint about this process's own page tables; at worst two
        // threads populate the same pages.
        let done = |p: usize| bits[p / 64].load(Ordering::Relaxed) & (1 << (p % 64)) != 0;
        let (first, last) = (offset / PAGE, end.div_ceil(PAGE));
        let mut p = first;
        while p < last {
            if done(p) {
                p += 1;
                continue;
            }
            let run = p;
            while p < last && !done(p) {
                bits[p / 64].fetch_or(1 << (p % 64), Ordering::Relaxed);
                p += 1;
            }
            let lo = run * PAGE;
            let hi = (p * PAGE).min(self.map.len());
            // SAFETY: lo < hi <= map.len(), so the range lies in the mapping.
            let addr = unsafe { self.as_ptr().add(lo) };
            sys::prefault(addr, hi - lo, write);
        }
    }

    /// The open file behind the mapping.
    pub fn file(&self) -> &File {
        &self.file
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // Only the process that created this value unlinks: a forked child that
        // inherited it must never remove its parent's segment.
        if self.owner.load(Ordering::Relaxed) && self.creator_pid == sys::getpid() {
            if let Backing::Shm(name) = &self.backing {
                let _ = sys::shm_unlink(name);
            }
        }
    }
}

/// Removes the name `name` from `/dev/shm` (mappings stay valid).
///
/// # Errors
/// [`Error::SegmentNotFound`] if there is no such name.
pub fn unlink(name: &str) -> Result<()> {
    sys::shm_unlink(name)
}

fn create_truncate(path: &Path) -> Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|e| Error::io(format!("create {}", path.display()), e))
}

/// One shmproc segment found in `/dev/shm`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SegmentInfo {
    /// Name in `/dev/shm`.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Creator pid, from the name.
    pub creator_pid: Option<u32>,
    /// Whether the creator (same pid and start time) still runs.
    pub alive: bool,
}

/// Lists this user's shmproc segments in `/dev/shm` and whether their creator
/// is alive. Segments with names shmproc did not generate count as alive (they
/// are never swept).
pub fn list() -> Result<Vec<SegmentInfo>> {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .map_err(|e| Error::io("stat /proc/self", e))?;
    let mut out = Vec::new();
    for (name, size) in sys::list_shm(NAME_PREFIX)? {
        let path = Path::new(sys::SHM_DIR).join(&name);
        match std::fs::metadata(&path) {
            Ok(m) if m.uid() == uid => {}
            _ => continue,
        }
        let parsed = parse_name(&name);
        let alive = match parsed {
            Some((pid, start)) => sys::process_alive(pid, start),
            None => true,
        };
        out.push(SegmentInfo {
            name,
            size,
            creator_pid: parsed.map(|p| p.0),
            alive,
        });
    }
    Ok(out)
}

/// Removes this user's shmproc segments whose creator is dead (pid gone, or
/// reused by a process with another start time). With `dry_run`, only reports.
/// Returns the stale segments found.
pub fn sweep(dry_run: bool) -> Result<Vec<SegmentInfo>> {
    let stale: Vec<SegmentInfo> = list()?.into_iter().filter(|s| !s.alive).collect();
    if !dry_run {
        for s in &stale {
            match sys::shm_unlink(&s.name) {
                Ok(()) | Err(Error::SegmentNotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(stale)
}

#[cfg(test)]
mod test;
