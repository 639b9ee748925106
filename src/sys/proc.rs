//! Process-level OS calls: pipes and fd flags, pidfd, poll, signals, wait, fork,
//! `_exit`, `atexit`, thread count and the identity of the running executable.
//!
//! Everything here is a thin, checked wrapper; the policy lives in `crate::process`.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

/// Converts a `-1` return into the current errno.
fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// A pipe whose both ends are close-on-exec: `(read, write)`.
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1 as libc::c_int; 2];
    // SAFETY: `fds` is a valid, writable array of two c_ints, as pipe2 requires.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 succeeded, so both fds are open and owned by nobody else.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((r, w))
}

/// A connected `AF_UNIX` stream socket pair, both ends close-on-exec.
pub(crate) fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1 as libc::c_int; 2];
    // SAFETY: `fds` is a valid, writable array of two c_ints, as socketpair requires.
    cvt(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    // SAFETY: socketpair succeeded, so both fds are open and owned by nobody else.
    let (a, b) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((a, b))
}

/// `send(fd, buf, MSG_DONTWAIT | MSG_NOSIGNAL)`: never blocks, and a peer that
/// went away gives `EPIPE` instead of killing us with SIGPIPE (whatever the
/// host program did with SIGPIPE).
pub(crate) fn send_nonblocking(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for reads of `buf.len()` bytes.
    let ret = unsafe {
        libc::send(
            fd.as_raw_fd(),
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    usize::try_from(ret).map_err(|_| io::Error::last_os_error())
}

/// Sets or clears `FD_CLOEXEC`.
pub(crate) fn set_cloexec(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    // SAFETY: F_GETFD/F_SETFD on a borrowed (so open) fd; no memory is passed.
    unsafe {
        let flags = cvt(libc::fcntl(fd.as_raw_fd(), libc::F_GETFD))?;
        let new = if on {
            flags | libc::FD_CLOEXEC
        } else {
            flags & !libc::FD_CLOEXEC
        };
        if new != flags {
            cvt(libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, new))?;
        }
    }
    Ok(())
}

/// Sets or clears `O_NONBLOCK`.
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    // SAFETY: F_GETFL/F_SETFL on a borrowed (so open) fd; no memory is passed.
    unsafe {
        let flags = cvt(libc::fcntl(fd.as_raw_fd(), libc::F_GETFL))?;
        let new = if on {
            flags | libc::O_NONBLOCK
        } else {
            flags & !libc::O_NONBLOCK
        };
        if new != flags {
            cvt(libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, new))?;
        }
    }
    Ok(())
}

/// Takes ownership of an fd number inherited across `exec` (named in the worker
/// marker), after checking that it is open.
///
/// # Safety
/// - `raw` must not be owned by any other object in this process: it was handed
///   over to us by our parent and nothing else has adopted it.
pub(crate) unsafe fn adopt_inherited_fd(raw: RawFd) -> io::Result<OwnedFd> {
    if raw < 3 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    // SAFETY: F_GETFD only queries the flags of a descriptor number; it fails
    // with EBADF if the number is not open.
    cvt(unsafe { libc::fcntl(raw, libc::F_GETFD) })?;
    // SAFETY: the fd is open (checked above) and, by the caller's contract,
    // owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Closes a descriptor number that this process does not track as an object
/// (an inherited copy in a forked child). Errors are ignored.
///
/// # Safety
/// - No live `OwnedFd`/`File` in this process may refer to `raw`, or it must be
///   leaked (never used or dropped) afterwards.
pub(crate) unsafe fn close_raw(raw: RawFd) {
    // SAFETY: closing a number is memory-safe; the caller guarantees no owner uses it.
    unsafe {
        libc::close(raw);
    }
}

/// `pidfd_open(pid, 0)`: a descriptor that becomes readable when the process
/// exits. `ENOSYS` on kernels older than 5.3.
pub(crate) fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
    // SAFETY: the pidfd_open syscall takes a pid and a flags word; no memory.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0 as libc::c_uint) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = RawFd::try_from(ret).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // pidfd_open sets O_CLOEXEC on the new descriptor itself.
    // SAFETY: the syscall returned a fresh descriptor that nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Readiness asked for / reported by [`poll`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct PollFd<'a> {
    /// The descriptor.
    pub(crate) fd: BorrowedFd<'a>,
    /// `true`: wait for readability (or hang-up); `false`: for writability.
    pub(crate) read: bool,
    /// Set by `poll` when the descriptor is ready (including hang-up or error).
    pub(crate) ready: bool,
}

impl<'a> PollFd<'a> {
    /// Waits for `fd` to be readable.
    pub(crate) fn readable(fd: BorrowedFd<'a>) -> Self {
        PollFd {
            fd,
            read: true,
            ready: false,
        }
    }
    /// Waits for `fd` to be writable.
    pub(crate) fn writable(fd: BorrowedFd<'a>) -> Self {
        PollFd {
            fd,
            read: false,
            ready: false,
        }
    }
}

/// `poll(2)` with an optional timeout (None = forever). Restarts on `EINTR`
/// with the remaining time. Returns the number of ready descriptors (0 = timeout).
pub(crate) fn poll(fds: &mut [PollFd<'_>], timeout: Option<Duration>) -> io::Result<usize> {
    let mut raw: Vec<libc::pollfd> = fds
        .iter()
        .map(|p| libc::pollfd {
            fd: p.fd.as_raw_fd(),
            events: if p.read { libc::POLLIN } else { libc::POLLOUT },
            revents: 0,
        })
        .collect();
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let ms: libc::c_int = match deadline {
            None => -1,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                // Round up so that a sub-millisecond remainder still waits.
                let ms = left.as_micros().div_ceil(1000);
                libc::c_int::try_from(ms).unwrap_or(libc::c_int::MAX)
            }
        };
        let nfds = libc::nfds_t::try_from(raw.len())
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: `raw` is a valid array of `nfds` pollfd structs that poll may write.
        let ret = unsafe { libc::poll(raw.as_mut_ptr(), nfds, ms) };
        if ret < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for (p, r) in fds.iter_mut().zip(&raw) {
            p.ready = r.revents != 0;
        }
        return Ok(usize::try_from(ret).unwrap_or(0));
    }
}

/// SIGTERM.
pub(crate) const SIGTERM: i32 = libc::SIGTERM;
/// SIGKILL.
pub(crate) const SIGKILL: i32 = libc::SIGKILL;
/// "No such process".
pub(crate) const ESRCH: i32 = libc::ESRCH;
/// "Invalid argument".
pub(crate) const EINVAL: i32 = libc::EINVAL;
/// "Input/output error".
pub(crate) const EIO: i32 = libc::EIO;

/// Sends `sig` to `pid`.
pub(crate) fn kill(pid: u32, sig: i32) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
    // SAFETY: kill takes plain integers.
    cvt(unsafe { libc::kill(pid, sig) })?;
    Ok(())
}

/// How a child ended, from `waitpid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WaitStatus {
    /// Normal exit with this code.
    Exited(i32),
    /// Killed by this signal.
    Signaled(i32),
}

/// `waitpid(pid, WNOHANG?)`, restarted on `EINTR`. `Ok(None)`: still running
/// (only with `nohang`).
pub(crate) fn waitpid(pid: u32, nohang: bool) -> io::Result<Option<WaitStatus>> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::ECHILD))?;
    let flags = if nohang { libc::WNOHANG } else { 0 };
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: `status` is a valid out-pointer for waitpid.
        let ret = unsafe { libc::waitpid(pid, &mut status, flags) };
        if ret < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if ret == 0 {
            return Ok(None);
        }
        if libc::WIFEXITED(status) {
            return Ok(Some(WaitStatus::Exited(libc::WEXITSTATUS(status))));
        }
        if libc::WIFSIGNALED(status) {
            return Ok(Some(WaitStatus::Signaled(libc::WTERMSIG(status))));
        }
        // Stopped/continued are not asked for (no WUNTRACED); loop defensively.
        if nohang {
            return Ok(None);
        }
    }
}

/// What `fork` returned in this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Forked {
    /// We are the parent; this is the child's pid.
    Parent(u32),
    /// We are the child.
    Child,
}

/// `fork()`.
///
/// # Safety
/// - If the calling process has more than one thread, the child may only call
///   async-signal-safe functions until it execs or `_exit`s: any lock another
///   thread held at fork time stays locked forever in the child.
/// - The child must leave through [`exit_now`] (never unwind or return into code
///   that runs destructors owned by the parent's state).
pub(crate) unsafe fn fork() -> io::Result<Forked> {
    // SAFETY: the caller upholds the post-fork obligations stated above.
    let pid = cvt(unsafe { libc::fork() })?;
    if pid == 0 {
        Ok(Forked::Child)
    } else {
        Ok(Forked::Parent(pid.unsigned_abs()))
    }
}

/// `_exit(code)`: leaves at once, without atexit handlers, destructors or flushing.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit is always safe to call; it never returns.
    unsafe { libc::_exit(code) }
}

/// `getppid()`.
pub(crate) fn getppid() -> u32 {
    // SAFETY: getppid has no preconditions and cannot fail.
    let p = unsafe { libc::getppid() };
    p.unsigned_abs()
}

/// Number of threads of this process, from the `Threads:` line of /proc/self/status.
pub(crate) fn thread_count() -> io::Result<usize> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no Threads: line"))
}

/// A file mapped into this process, as `/proc/self/maps` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MappedFile {
    /// Device of the file, `(major, minor)`.
    pub dev: (u32, u32),
    /// Inode of the file.
    pub ino: u64,
    /// Its path when it was mapped (`" (deleted)"` appended if it was since
    /// removed or replaced).
    pub path: std::path::PathBuf,
}

/// The file whose mapping holds `addr` (code of this process: the executable,
/// or the shared object a function was loaded from).
pub(crate) fn mapped_file_at(addr: usize) -> io::Result<MappedFile> {
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    maps.lines()
        .find_map(|l| parse_maps_line(l).filter(|(lo, hi, _)| (*lo..*hi).contains(&addr)))
        .and_then(|(_, _, f)| f)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no file mapping holds address {addr:#x} in /proc/self/maps"),
            )
        })
}

/// `start-end perms offset major:minor inode path` of one maps line.
fn parse_maps_line(l: &str) -> Option<(usize, usize, Option<MappedFile>)> {
    let mut it = l.splitn(6, ' ');
    let (lo, hi) = it.next()?.split_once('-')?;
    let lo = usize::from_str_radix(lo, 16).ok()?;
    let hi = usize::from_str_radix(hi, 16).ok()?;
    let _perms = it.next()?;
    let _offset = it.next()?;
    let (major, minor) = it.next()?.split_once(':')?;
    let dev = (
        u32::from_str_radix(major, 16).ok()?,
        u32::from_str_radix(minor, 16).ok()?,
    );
    let ino: u64 = it.next()?.parse().ok()?;
    let path = it.next().map(str::trim_start).unwrap_or("");
    let file = (ino != 0 && path.starts_with('/')).then(|| MappedFile {
        dev,
        ino,
        path: path.into(),
    });
    Some((lo, hi, file))
}

/// `(major, minor)` of a `st_dev`.
pub(crate) fn dev_parts(dev: u64) -> (u32, u32) {
    (libc::major(dev), libc::minor(dev))
}

/// `((major, minor), st_ino)` of the running executable (`/proc/self/exe`).
pub(crate) fn exe_identity() -> io::Result<((u32, u32), u64)> {
    let m = std::fs::metadata("/proc/self/exe")?;
    Ok((dev_parts(m.dev()), m.ino()))
}

/// The main program of this process (the file at `AT_PHDR`), which is not
/// `/proc/self/exe` when the dynamic loader was run as the command
/// (`ld.so ./prog`).
pub(crate) fn main_program() -> io::Result<MappedFile> {
    // SAFETY: getauxval reads the auxiliary vector; it has no preconditions.
    let phdr = unsafe { libc::getauxval(libc::AT_PHDR) };
    let phdr = usize::try_from(phdr)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "AT_PHDR out of range"))?;
    mapped_file_at(phdr)
}

/// The path of the dynamic loader of this process: the mapping at `AT_BASE`,
/// or `/proc/self/exe` itself when the loader was run as the command. `None`
/// in a statically linked executable.
pub(crate) fn dynamic_loader() -> io::Result<Option<std::path::PathBuf>> {
    // SAFETY: getauxval reads the auxiliary vector; it has no preconditions.
    let base = unsafe { libc::getauxval(libc::AT_BASE) };
    if base != 0 {
        let base = usize::try_from(base)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "AT_BASE out of range"))?;
        return Ok(Some(mapped_file_at(base)?.path));
    }
    let prog = main_program()?;
    let (dev, ino) = exe_identity()?;
    if (prog.dev, prog.ino) != (dev, ino) {
        return Ok(Some(std::fs::read_link("/proc/self/exe")?));
    }
    Ok(None)
}

/// Arranges for `fds` to survive the `exec` of `cmd` (clears `FD_CLOEXEC` in the
/// child only, between fork and exec), so that a concurrent spawn from another
/// thread never inherits them.
pub(crate) fn keep_fds_on_exec(cmd: &mut Command, fds: Vec<RawFd>) {
    let hook = move || -> io::Result<()> {
        for &fd in &fds {
            // SAFETY: fcntl is async-signal-safe; F_GETFD/F_SETFD take no memory.
            unsafe {
                let flags = cvt(libc::fcntl(fd, libc::F_GETFD))?;
                cvt(libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC))?;
            }
        }
        Ok(())
    };
    // SAFETY: the hook only calls fcntl, which is async-signal-safe, allocates
    // nothing and takes no lock, as pre_exec requires.
    unsafe {
        cmd.pre_exec(hook);
    }
}

/// Registers `f` with `atexit(3)`; `false` on failure (errno set).
pub(crate) fn atexit(f: extern "C" fn()) -> bool {
    // SAFETY: `f` is a plain `extern "C" fn()` with 'static lifetime.
    unsafe { libc::atexit(f) == 0 }
}

/// The CPUs this process may use: the online CPUs, narrowed by its affinity
/// mask (`taskset`, `sched_setaffinity`) and by a cgroup CPU quota (v2
/// `cpu.max`, or v1 `cpu.cfs_quota_us`, rounded up), at least 1.
pub(crate) fn cpu_count() -> usize {
    // SAFETY: sysconf takes an integer name and has no preconditions.
    let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    let mut n = usize::try_from(online).ok().filter(|&n| n > 0).unwrap_or(1);
    if let Some(a) = affinity_count() {
        n = n.min(a);
    }
    if let Some(q) = cgroup_quota_cpus() {
        n = n.min(q);
    }
    n.max(1)
}

/// The number of CPUs in this process's affinity mask.
fn affinity_count() -> Option<usize> {
    // SAFETY: cpu_set_t is plain bits; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid cpu_set_t of the size passed; pid 0 is this thread.
    let r = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if r != 0 {
        return None;
    }
    // SAFETY: `set` was filled by the kernel.
    let n = unsafe { libc::CPU_COUNT(&set) };
    usize::try_from(n).ok().filter(|&n| n > 0)
}

/// CPUs allowed by the cgroup quota of this process (the smallest along its
/// cgroup path), `None` without a quota.
pub(crate) fn cgroup_quota_cpus() -> Option<usize> {
    let groups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let mut best: Option<usize> = None;
    let mut take = |q: Option<usize>| {
        if let Some(q) = q {
            best = Some(best.map_or(q, |b| b.min(q)));
        }
    };
    for line in groups.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let (root, v2) = if controllers.is_empty() {
            ("/sys/fs/cgroup".to_string(), true)
        } else if controllers.split(',').any(|c| c == "cpu") {
            (format!("/sys/fs/cgroup/{controllers}"), false)
        } else {
            continue;
        };
        let mut dir = std::path::PathBuf::from(format!("{root}{path}"));
        loop {
            take(if v2 {
                std::fs::read_to_string(dir.join("cpu.max"))
                    .ok()
                    .and_then(|t| quota_cpus_v2(&t))
            } else {
                let quota = std::fs::read_to_string(dir.join("cpu.cfs_quota_us")).ok();
                let period = std::fs::read_to_string(dir.join("cpu.cfs_period_us")).ok();
                quota
                    .zip(period)
                    .and_then(|(q, p)| quota_cpus(q.trim(), p.trim()))
            });
            if dir.as_os_str().len() <= root.len() || !dir.pop() {
                break;
            }
        }
    }
    best
}

/// `cpu.max` of cgroup v2: `max 100000` (no quota) or `QUOTA PERIOD`.
pub(crate) fn quota_cpus_v2(text: &str) -> Option<usize> {
    let (q, p) = text.trim().split_once(' ')?;
    quota_cpus(q, p)
}

/// `ceil(quota / period)`, `None` for no quota (`max` or a negative quota).
fn quota_cpus(quota: &str, period: &str) -> Option<usize> {
    let q: i64 = quota.parse().ok()?;
    let p: i64 = period.parse().ok()?;
    if q <= 0 || p <= 0 {
        return None;
    }
    usize::try_from((q + p - 1) / p).ok().filter(|&n| n > 0)
}

/// A pipe end as a `File`, for std's `Read`/`Write`.
pub(crate) fn file(fd: OwnedFd) -> File {
    File::from(fd)
}

/// CLOCK_MONOTONIC in nanoseconds: one clock for every process of the machine,
/// so a time stamp written by one process can be compared in another.
pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer; with
    // CLOCK_MONOTONIC it cannot fail.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// A connected `AF_UNIX` `SOCK_SEQPACKET` pair (message boundaries kept, both
/// ends close-on-exec): the fork server's control channel.
pub(crate) fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1 as libc::c_int; 2];
    // SAFETY: `fds` is a valid, writable array of two c_ints, as socketpair requires.
    cvt(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    // SAFETY: socketpair succeeded, so both fds are open and owned by nobody else.
    let (a, b) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((a, b))
}

/// Most descriptors one message carries (see [`send_with_fds`]).
pub(crate) const MAX_FDS: usize = 4;

/// Room for the control message of [`MAX_FDS`] descriptors, suitably aligned.
#[repr(C, align(8))]
struct CmsgBuf([u8; 64]);

/// `sendmsg(fd, buf + SCM_RIGHTS(fds), MSG_NOSIGNAL [| MSG_DONTWAIT])`: one
/// message with copies of `fds` attached. A peer that went away gives `EPIPE`,
/// never SIGPIPE.
pub(crate) fn send_with_fds(
    fd: BorrowedFd<'_>,
    buf: &[u8],
    fds: &[BorrowedFd<'_>],
    nonblocking: bool,
) -> io::Result<usize> {
    if fds.len() > MAX_FDS {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let mut iov = libc::iovec {
        iov_base: buf.as_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    let mut cbuf = CmsgBuf([0; 64]);
    // SAFETY: an all-zero msghdr is a valid value (null pointers, zero lengths).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        let bytes = std::mem::size_of_val(fds) as libc::c_uint;
        // SAFETY: CMSG_SPACE is pure arithmetic on its argument.
        let space = unsafe { libc::CMSG_SPACE(bytes) } as usize;
        debug_assert!(space <= cbuf.0.len());
        msg.msg_control = cbuf.0.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: msg_control points at `space` writable, 8-aligned bytes, enough
        // for one cmsghdr plus `bytes` of data (CMSG_SPACE above), so
        // CMSG_FIRSTHDR is non-null and CMSG_DATA has room for every fd number.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(bytes) as _;
            let data = libc::CMSG_DATA(c).cast::<libc::c_int>();
            for (i, f) in fds.iter().enumerate() {
                data.add(i).write_unaligned(f.as_raw_fd());
            }
        }
    }
    let mut flags = libc::MSG_NOSIGNAL;
    if nonblocking {
        flags |= libc::MSG_DONTWAIT;
    }
    // SAFETY: `msg` points at `iov` (valid for reads of buf.len() bytes) and at a
    // control buffer initialised above; both outlive the call.
    let ret = unsafe { libc::sendmsg(fd.as_raw_fd(), &msg, flags) };
    usize::try_from(ret).map_err(|_| io::Error::last_os_error())
}

/// `recvmsg(fd, buf, MSG_CMSG_CLOEXEC [| MSG_DONTWAIT])`: one message and the
/// descriptors attached to it (close-on-exec). `Ok((0, []))` is end of file on
/// a `SOCK_SEQPACKET` socket. A message longer than `buf`, or one with more than
/// [`MAX_FDS`] descriptors, is an `EMSGSIZE` error (its descriptors are closed).
pub(crate) fn recv_with_fds(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    nonblocking: bool,
) -> io::Result<(usize, Vec<OwnedFd>)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut cbuf = CmsgBuf([0; 64]);
    // SAFETY: an all-zero msghdr is a valid value (null pointers, zero lengths).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.0.as_mut_ptr().cast();
    msg.msg_controllen = cbuf.0.len() as _;
    let mut flags = libc::MSG_CMSG_CLOEXEC;
    if nonblocking {
        flags |= libc::MSG_DONTWAIT;
    }
    // SAFETY: `msg` points at `iov` (valid for writes of buf.len() bytes) and at
    // a writable control buffer of msg_controllen bytes; both outlive the call.
    let ret = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, flags) };
    let n = usize::try_from(ret).map_err(|_| io::Error::last_os_error())?;
    let mut fds = Vec::new();
    // SAFETY: recvmsg filled msg_control/msg_controllen; CMSG_FIRSTHDR and
    // CMSG_NXTHDR only walk headers inside that buffer.
    let mut c = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    while !c.is_null() {
        // SAFETY: `c` is a non-null header inside the control buffer (above).
        let (level, kind, len) = unsafe { ((*c).cmsg_level, (*c).cmsg_type, (*c).cmsg_len) };
        if level == libc::SOL_SOCKET && kind == libc::SCM_RIGHTS {
            // SAFETY: CMSG_LEN(0) is pure arithmetic.
            let header = unsafe { libc::CMSG_LEN(0) } as usize;
            // `cmsg_len` is a usize on glibc, a u32 on musl.
            #[allow(clippy::unnecessary_cast)]
            let count = (len as usize).saturating_sub(header) / std::mem::size_of::<libc::c_int>();
            // SAFETY: the kernel wrote `count` fd numbers after the header.
            let data = unsafe { libc::CMSG_DATA(c) }.cast::<libc::c_int>();
            for i in 0..count {
                // SAFETY: index within the `count` numbers the kernel wrote; each
                // is a fresh descriptor installed for us, owned by nobody else.
                fds.push(unsafe { OwnedFd::from_raw_fd(data.add(i).read_unaligned()) });
            }
        }
        // SAFETY: `c` is a valid header of `msg`'s control buffer.
        c = unsafe { libc::CMSG_NXTHDR(&msg, c) };
    }
    if msg.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0 || fds.len() > MAX_FDS {
        return Err(io::Error::from_raw_os_error(libc::EMSGSIZE));
    }
    Ok((n, fds))
}

/// `shutdown(fd, SHUT_RDWR)`: the peer sees end of file at once, whatever
/// other copies of `fd` exist.
pub(crate) fn shutdown_socket(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: shutdown takes a borrowed (so open) descriptor and a constant.
    cvt(unsafe { libc::shutdown(fd.as_raw_fd(), libc::SHUT_RDWR) })?;
    Ok(())
}

/// `pidfd_send_signal(pidfd, sig, NULL, 0)`: signals exactly the process the
/// pidfd names, never a later process that reused its pid. `ESRCH` once it
/// has exited. Linux 5.1.
pub(crate) fn pidfd_send_signal(pidfd: BorrowedFd<'_>, sig: i32) -> io::Result<()> {
    // SAFETY: the syscall takes a borrowed (so open) descriptor, a signal
    // number, a null siginfo (allowed: the kernel fills in a default) and flags 0.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0 as libc::c_uint,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `waitpid(-1, WNOHANG)`: one exited child of this process and its status, or
/// `None` if none has exited (or there are no children).
pub(crate) fn wait_any_nohang() -> io::Result<Option<(u32, WaitStatus)>> {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: `status` is a valid out-pointer for waitpid.
        let ret = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if ret < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::ECHILD) => return Ok(None),
                _ => return Err(e),
            }
        }
        if ret == 0 {
            return Ok(None);
        }
        let pid = ret.unsigned_abs();
        if libc::WIFEXITED(status) {
            return Ok(Some((pid, WaitStatus::Exited(libc::WEXITSTATUS(status)))));
        }
        if libc::WIFSIGNALED(status) {
            return Ok(Some((pid, WaitStatus::Signaled(libc::WTERMSIG(status)))));
        }
        // Stopped/continued are not asked for (no WUNTRACED): look again.
    }
}

/// Restores the default disposition of SIGCHLD (an inherited `SIG_IGN` would
/// make the kernel reap children before we can read their status).
pub(crate) fn default_sigchld() {
    // SAFETY: setting SIGCHLD's disposition to SIG_DFL has no preconditions.
    unsafe {
        libc::signal(libc::SIGCHLD, libc::SIG_DFL);
    }
}

/// Ignores SIGPIPE, as Rust's runtime does before `main`: a write to a closed
/// pipe is an `EPIPE` error, not death. For workers, which start before `main`.
pub(crate) fn ignore_sigpipe() {
    // SAFETY: setting SIGPIPE's disposition to SIG_IGN has no preconditions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

/// Sets `FD_CLOEXEC` on every open fd of this process but the standard
/// streams and `except`, so that nothing a spawned worker inherited by
/// accident (from a host program) reaches the programs it runs.
pub(crate) fn cloexec_all_but(except: &[RawFd]) {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<RawFd> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    for fd in fds {
        if fd > 2 && !except.contains(&fd) {
            // SAFETY: F_GETFD/F_SETFD on a possibly closed fd only fail with EBADF.
            unsafe {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags >= 0 {
                    libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
                }
            }
        }
    }
}

#[cfg(test)]
mod cpu_tests {
    use super::*;

    #[test]
    fn cgroup_quota_text() {
        assert_eq!(quota_cpus_v2("max 100000\n"), None);
        assert_eq!(quota_cpus_v2("200000 100000\n"), Some(2));
        // A fractional quota rounds up: 1.5 CPUs is 2 workers.
        assert_eq!(quota_cpus_v2("150000 100000"), Some(2));
        assert_eq!(quota_cpus_v2("50000 100000"), Some(1));
        assert_eq!(quota_cpus("-1", "100000"), None);
        assert_eq!(quota_cpus("garbage", "100000"), None);
        assert!(cpu_count() >= 1);
    }
}
