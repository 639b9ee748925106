//! No orphans: a child dies when its parent dies.
//!
//! Every process that starts children creates, once, a *liveness pipe*. It keeps
//! the write end (close-on-exec, so spawned children never hold it) and never
//! writes to it; every child gets the read end and runs a tiny watcher thread
//! blocked in `read`. When the parent process dies, for any reason including
//! SIGKILL, the kernel closes its last write end, the read returns EOF and the
//! watcher `_exit`s the child with [`EXIT_PARENT_DIED`]. Grandchildren watch their
//! own parent the same way, so a whole tree unwinds.
//!
//! `PR_SET_PDEATHSIG` is not used: it fires when the *thread* that spawned the
//! child exits, which would kill children started from short-lived threads (such
//! as cargo-test threads).
//!
//! A forked child inherits a copy of the write end and must close it at once
//! ([`after_fork_in_child`]), or it would keep its own parent "alive".
//!
//! A fork server (see `forkserver`) is the one process that must stay
//! single-threaded: it has no watcher thread, but polls its parent's read end in
//! its own loop, and its children watch the server's pipe. So parent death →
//! server exit → children exit; and a server killed alone takes its children
//! with it.

use std::io::Read;
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use std::sync::Mutex;

use crate::sys::proc as sys;
use crate::{Error, Result};

/// Exit code of a child whose parent died.
pub const EXIT_PARENT_DIED: i32 = 87;

// The pipe is kept as raw numbers so that a forked child can close the write end
// without taking any lock another thread might have held at fork time.
// Relaxed is enough for all three: they are written under CREATE (or in a
// single-threaded fork child) and read under CREATE or after a prior read of
// OWNER_PID in the same thread.
static OWNER_PID: AtomicU32 = AtomicU32::new(0);
static READ_FD: AtomicI32 = AtomicI32::new(-1);
static WRITE_FD: AtomicI32 = AtomicI32::new(-1);
static CREATE: Mutex<()> = Mutex::new(());

/// The read end to hand to a new child, creating the pipe on first use in this
/// process. The descriptor stays open (close-on-exec) for the life of the process.
pub(crate) fn read_end_for_children() -> Result<RawFd> {
    let me = std::process::id();
    let _g = CREATE.lock().unwrap_or_else(|p| p.into_inner());
    if OWNER_PID.load(Ordering::Relaxed) == me {
        return Ok(READ_FD.load(Ordering::Relaxed));
    }
    let (r, w) = sys::pipe().map_err(|e| Error::io("creating the liveness pipe", e))?;
    // Leaked on purpose: the pipe lives as long as the process.
    READ_FD.store(r.into_raw_fd(), Ordering::Relaxed);
    WRITE_FD.store(w.into_raw_fd(), Ordering::Relaxed);
    OWNER_PID.store(me, Ordering::Relaxed);
    Ok(READ_FD.load(Ordering::Relaxed))
}

/// In a fork server, which is single-threaded and may be a fork of a process
/// where another thread held `CREATE` at fork time: creates this process's own
/// pipe (the one its children watch) without taking the lock.
pub(crate) fn create_unlocked() -> Result<()> {
    let me = std::process::id();
    if OWNER_PID.load(Ordering::Relaxed) == me {
        return Ok(());
    }
    let (r, w) = sys::pipe().map_err(|e| Error::io("creating the liveness pipe", e))?;
    // Leaked on purpose: the pipe lives as long as the process.
    READ_FD.store(r.into_raw_fd(), Ordering::Relaxed);
    WRITE_FD.store(w.into_raw_fd(), Ordering::Relaxed);
    OWNER_PID.store(me, Ordering::Relaxed);
    Ok(())
}

/// In a freshly forked child: close the inherited write end and forget the
/// parent's pipe (a new one is made if this child starts children). Returns the
/// inherited read end, which the child watches.
pub(crate) fn after_fork_in_child() -> Option<OwnedFd> {
    let w = WRITE_FD.swap(-1, Ordering::Relaxed);
    let r = READ_FD.swap(-1, Ordering::Relaxed);
    OWNER_PID.store(0, Ordering::Relaxed);
    if w >= 0 {
        // SAFETY: the write end is only ever held as a raw number in WRITE_FD,
        // which we just cleared, so nothing else uses or closes it.
        unsafe { sys::close_raw(w) };
    }
    if r >= 0 {
        // SAFETY: the read end is only held as a raw number in READ_FD, which we
        // just cleared; adopting it makes the watcher its single owner.
        unsafe { sys::adopt_inherited_fd(r) }.ok()
    } else {
        None
    }
}

/// Starts the watcher thread on the read end of the parent's liveness pipe.
pub(crate) fn watch_parent(fd: OwnedFd) -> Result<()> {
    let raw = fd.as_raw_fd();
    std::thread::Builder::new()
        .name("shmproc-liveness".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            let mut f = sys::file(fd);
            let mut buf = [0u8; 16];
            loop {
                match f.read(&mut buf) {
                    Ok(0) => sys::exit_now(EXIT_PARENT_DIED),
                    Ok(_) => continue,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => sys::exit_now(EXIT_PARENT_DIED),
                }
            }
        })
        .map_err(|e| Error::io(format!("starting the liveness watcher on fd {raw}"), e))?;
    Ok(())
}
