//! POSIX shared memory objects, memfd, space reservation, mapping, names and
//! process liveness.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;

use memmap2::MmapRaw;

use crate::error::{Error, Result};

/// Directory where Linux exposes POSIX shared memory objects.
pub(crate) const SHM_DIR: &str = "/dev/shm";

fn c_name(name: &str) -> Result<CString> {
    if name.is_empty() || name.len() > 200 || name.contains('/') || name.contains('\0') {
        return Err(Error::InvalidName(name.to_owned()));
    }
    CString::new(format!("/{name}")).map_err(|_| Error::InvalidName(name.to_owned()))
}

/// Creates a new POSIX shm object `name` (O_EXCL, mode 0600) of `size` bytes and
/// reserves its space. On any failure after creation the name is unlinked again.
pub(crate) fn shm_create(name: &str, size: u64) -> Result<File> {
    let cname = c_name(name)?;
    // SAFETY: cname is a valid NUL-terminated string; flags and mode are plain ints.
    let fd = unsafe {
        libc::shm_open(
            cname.as_ptr(),
            libc::O_CREAT | libc::O_EXCL | libc::O_RDWR | libc::O_CLOEXEC,
            0o600 as libc::mode_t,
        )
    };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::EEXIST) => Error::SegmentExists(name.to_owned()),
            Some(libc::EINVAL) | Some(libc::ENAMETOOLONG) => Error::InvalidName(name.to_owned()),
            _ => Error::io(format!("shm_open({name}) for create"), e),
        });
    }
    // SAFETY: fd is a freshly opened descriptor that nothing else owns.
    let file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    match reserve(&file, size) {
        Ok(()) => Ok(file),
        Err(e) => {
            let _ = shm_unlink(name);
            Err(e)
        }
    }
}

/// Opens an existing POSIX shm object read-write.
pub(crate) fn shm_open(name: &str) -> Result<File> {
    let cname = c_name(name)?;
    // SAFETY: cname is a valid NUL-terminated string.
    let fd = unsafe { libc::shm_open(cname.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC, 0) };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::ENOENT) => Error::SegmentNotFound(name.to_owned()),
            Some(libc::EINVAL) | Some(libc::ENAMETOOLONG) => Error::InvalidName(name.to_owned()),
            _ => Error::io(format!("shm_open({name})"), e),
        });
    }
    // SAFETY: fd is a freshly opened descriptor that nothing else owns.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Removes the name of a POSIX shm object. Existing mappings stay valid.
pub(crate) fn shm_unlink(name: &str) -> Result<()> {
    let cname = c_name(name)?;
    // SAFETY: cname is a valid NUL-terminated string.
    if unsafe { libc::shm_unlink(cname.as_ptr()) } != 0 {
        let e = io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::ENOENT) => Error::SegmentNotFound(name.to_owned()),
            _ => Error::io(format!("shm_unlink({name})"), e),
        });
    }
    Ok(())
}

/// Creates an anonymous memory file (memfd, close-on-exec) of `size` bytes with
/// its pages allocated. Other processes of the same user can open it through
/// `/proc/<pid>/fd/<fd>` while the creator keeps it open.
///
/// A memfd lives on the kernel's internal tmpfs mount, which has no size
/// limit, so `posix_fallocate` there never fails for lack of room: it
/// allocates until memory runs out (and would wake the OOM killer for an
/// absurd size). So the size is first checked against the memory the system
/// has available, and only then are the pages allocated, up front: a first
/// write fault on a shared-memory page costs several times one on anonymous
/// memory on this VM, and allocating at creation keeps that cost out of the
/// kernels that run on the segment.
pub(crate) fn memfd_create(name: &str, size: u64) -> Result<File> {
    let available = memory_available();
    if size > available {
        return Err(Error::NoSpace {
            requested: size,
            source: io::Error::from_raw_os_error(libc::ENOMEM),
        });
    }
    let cname = CString::new(name).map_err(|_| Error::InvalidName(name.to_owned()))?;
    // SAFETY: cname is a valid NUL-terminated string; flags are plain ints.
    let fd = unsafe { libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(Error::last_os("memfd_create"));
    }
    // SAFETY: fd is a freshly created descriptor that nothing else owns.
    let file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    reserve(&file, size)?;
    Ok(file)
}

/// Bytes of memory the system can still give: `MemAvailable` plus free swap
/// from `/proc/meminfo` (unlimited if it cannot be read).
pub(crate) fn memory_available() -> u64 {
    let Ok(info) = std::fs::read_to_string("/proc/meminfo") else {
        return u64::MAX;
    };
    let field = |key: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kb| kb.parse::<u64>().ok())
            .map(|kb| kb.saturating_mul(1024))
    };
    match field("MemAvailable:") {
        Some(mem) => mem.saturating_add(field("SwapFree:").unwrap_or(0)),
        None => u64::MAX,
    }
}

/// Sets the size of `file` and reserves every byte with `posix_fallocate`, so
/// that running out of room is an error now instead of a SIGBUS on first touch.
pub(crate) fn reserve(file: &File, size: u64) -> Result<()> {
    let len = libc::off_t::try_from(size).map_err(|_| Error::NoSpace {
        requested: size,
        source: io::Error::from_raw_os_error(libc::EFBIG),
    })?;
    file.set_len(size).map_err(|e| match e.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EFBIG) | Some(libc::ENOMEM) => Error::NoSpace {
            requested: size,
            source: e,
        },
        _ => Error::io("ftruncate", e),
    })?;
    if size == 0 {
        return Ok(());
    }
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor is open for the duration of the call.
    let r = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
    match r {
        0 => Ok(()),
        libc::ENOSPC | libc::EFBIG | libc::ENOMEM => Err(Error::NoSpace {
            requested: size,
            source: io::Error::from_raw_os_error(r),
        }),
        e => Err(Error::io(
            "posix_fallocate",
            io::Error::from_raw_os_error(e),
        )),
    }
}

/// Maps the whole of `file` shared and read-write. A map of at least 2 MiB
/// asks for transparent huge pages (`MADV_HUGEPAGE`): fewer TLB misses when
/// a kernel streams through it. The kernel honours the advice for shared
/// memory only where `/sys/kernel/mm/transparent_hugepage/shmem_enabled` is
/// `advise`, `within_size` or `always`; elsewhere (`never`, the setting on
/// the machine the benchmarks ran on) it is a no-op and the pages stay 4 KiB.
pub(crate) fn map(file: &File, what: &str) -> Result<MmapRaw> {
    let map = MmapRaw::map_raw(file).map_err(|e| Error::io(format!("mmap {what}"), e))?;
    if map.len() >= HUGE_PAGE {
        // SAFETY: MADV_HUGEPAGE on the whole of a mapping we just made
        // changes how its pages are backed, never their contents. Best
        // effort: an error (a kernel without THP) leaves the mapping as it is.
        unsafe {
            libc::madvise(map.as_mut_ptr().cast(), map.len(), libc::MADV_HUGEPAGE);
        }
    }
    Ok(map)
}

/// Size of a transparent huge page on x86_64 and most 64-bit Linux targets.
const HUGE_PAGE: usize = 2 << 20;

/// Fills in the page tables for `[addr, addr + len)` of a shared mapping in
/// one call (MADV_POPULATE_WRITE or _READ, Linux 5.14+) instead of one page
/// fault per page on first touch. Best effort: on older kernels, or for a
/// range the kernel refuses, the pages simply fault in as usual.
pub(crate) fn prefault(addr: *mut u8, len: usize, write: bool) {
    const MADV_POPULATE_READ: libc::c_int = 22;
    const MADV_POPULATE_WRITE: libc::c_int = 23;
    if len == 0 {
        return;
    }
    let page = 4096usize;
    let start = addr as usize & !(page - 1);
    let end = (addr as usize).saturating_add(len);
    let advice = if write {
        MADV_POPULATE_WRITE
    } else {
        MADV_POPULATE_READ
    };
    // SAFETY: madvise with a POPULATE advice only faults in pages of an
    // existing mapping (the caller passes a range inside one); it changes no
    // memory contents. The start is rounded down to a page boundary, which
    // stays inside the same mapping because mappings are page-aligned.
    unsafe {
        libc::madvise(start as *mut libc::c_void, end - start, advice);
    }
}

/// Maps the whole of `file` shared and read-only.
/// The page size: what the offset of a file mapping
/// ([`Segment::map_file_range`](crate::Segment::map_file_range)) is a
/// multiple of.
pub fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(p).ok().filter(|&p| p > 0).unwrap_or(4096)
}

/// Maps `len` bytes of `file` from byte `offset` (page-aligned) on.
pub(crate) fn map_range(
    file: &File,
    offset: u64,
    len: usize,
    writable: bool,
    what: &str,
) -> Result<MmapRaw> {
    let mut o = memmap2::MmapOptions::new();
    o.offset(offset).len(len);
    let map = if writable {
        o.map_raw(file)
    } else {
        o.map_raw_read_only(file)
    };
    map.map_err(|e| Error::io(format!("mmap {what} from byte {offset}"), e))
}

pub(crate) fn map_read_only(file: &File, what: &str) -> Result<MmapRaw> {
    memmap2::MmapOptions::new()
        .map_raw_read_only(file)
        .map_err(|e| Error::io(format!("mmap {what}"), e))
}

/// Size and permission bits of an open file.
pub(crate) fn stat(file: &File) -> Result<(u64, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let m = file.metadata().map_err(|e| Error::io("fstat", e))?;
    Ok((m.len(), m.permissions().mode() & 0o7777))
}

/// Opens a file by path (for file-backed and memfd segments).
pub(crate) fn open_path(path: &Path, writable: bool) -> Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(writable)
        .open(path)
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::SegmentNotFound(path.display().to_string()),
            _ => Error::io(format!("open {}", path.display()), e),
        })
}

/// 64 random bits from the kernel (getrandom), for unguessable names.
pub(crate) fn random_u64() -> Result<u64> {
    let mut buf = [0u8; 8];
    let mut filled = 0;
    while filled < buf.len() {
        // SAFETY: the pointer and length describe the unfilled tail of `buf`.
        let r =
            unsafe { libc::getrandom(buf[filled..].as_mut_ptr().cast(), buf.len() - filled, 0) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(Error::io("getrandom", e));
        }
        filled += r as usize;
    }
    Ok(u64::from_ne_bytes(buf))
}

/// The start time of process `pid` (field 22 of `/proc/<pid>/stat`, in clock
/// ticks since boot), or `None` if there is no such process.
///
/// Together with the pid this names a process uniquely: a recycled pid has a
/// later start time.
pub(crate) fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces or ')';
    // the fields after the last ')' are plain numbers.
    let rest = &stat[stat.rfind(')')? + 1..];
    // After ')' come field 3 (state) onwards; start time is field 22.
    rest.split_ascii_whitespace().nth(22 - 3)?.parse().ok()
}

/// True if process `pid` exists and started at `start_time` (not a recycled pid).
/// A zombie counts as dead.
pub(crate) fn process_alive(pid: u32, start_time: u64) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let Some(close) = stat.rfind(')') else {
        return false;
    };
    let mut fields = stat[close + 1..].split_ascii_whitespace();
    let state = fields.next();
    if state == Some("Z") || state == Some("X") {
        return false;
    }
    fields.nth(22 - 4).and_then(|s| s.parse::<u64>().ok()) == Some(start_time)
}

/// Names and sizes of the entries of /dev/shm that start with `prefix`.
pub(crate) fn list_shm(prefix: &str) -> Result<Vec<(String, u64)>> {
    let dir = std::fs::read_dir(SHM_DIR).map_err(|e| Error::io(format!("read {SHM_DIR}"), e))?;
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with(prefix) {
            continue;
        }
        let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
        out.push((name, size));
    }
    out.sort();
    Ok(out)
}

/// The pid of this process.
pub(crate) fn getpid() -> u32 {
    std::process::id()
}
