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

/// `(st_dev, st_ino)` of the running executable (`/proc/self/exe`).
pub(crate) fn exe_identity() -> io::Result<(u64, u64)> {
    let m = std::fs::metadata("/proc/self/exe")?;
    Ok((m.dev(), m.ino()))
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

/// Number of online CPUs (`sysconf(_SC_NPROCESSORS_ONLN)`), at least 1.
pub(crate) fn cpu_count() -> usize {
    // SAFETY: sysconf takes an integer name and has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).ok().filter(|&n| n > 0).unwrap_or(1)
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
