//! The child side: `init()` in a spawned worker, the body of a forked child, and
//! the per-process state behind `current_process()` / `parent_process()`.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::spawn::{
    encode_answer, Boot, ChildOptions, Entry, EXIT_BOOT_FAILED, EXIT_INIT_MISSING, MARKER_ENV,
};
use super::{liveness, registry, ProcessInfo};
use crate::sys::proc as sys;
use crate::{Error, Result};

/// What a child knows about itself and its parent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ChildState {
    pub(crate) name: String,
    pub(crate) daemon: bool,
    pub(crate) ident: Vec<u32>,
    pub(crate) parent_name: String,
    pub(crate) parent_pid: u32,
}

/// `None` in the main process.
static CURRENT: Mutex<Option<ChildState>> = Mutex::new(None);
/// Children numbered so far by this process (Python's `_process_counter`).
static COUNTER: AtomicU32 = AtomicU32::new(0);
/// This process is a worker that went through `init()` (or a forked child).
static INITIALIZED: AtomicBool = AtomicBool::new(false);

fn current() -> std::sync::MutexGuard<'static, Option<ChildState>> {
    CURRENT.lock().unwrap_or_else(|p| p.into_inner())
}

/// The next identity path for a child of this process: ours + `[n]`.
pub(crate) fn next_ident() -> Vec<u32> {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed) + 1;
    let mut ident = current()
        .as_ref()
        .map(|c| c.ident.clone())
        .unwrap_or_default();
    ident.push(n);
    ident
}

/// `Process-1`, `Process-1:2`, ...
pub(crate) fn default_name(prefix: &str, ident: &[u32]) -> String {
    let parts: Vec<String> = ident.iter().map(|n| n.to_string()).collect();
    format!("{prefix}-{}", parts.join(":"))
}

/// Information about this process.
pub(crate) fn current_info() -> ProcessInfo {
    let pid = std::process::id();
    match current().as_ref() {
        Some(c) => ProcessInfo {
            name: c.name.clone(),
            pid,
            daemon: c.daemon,
        },
        None => ProcessInfo {
            name: "MainProcess".into(),
            pid,
            daemon: false,
        },
    }
}

/// Information about the parent, `None` in the main process.
pub(crate) fn parent_info() -> Option<ProcessInfo> {
    current().as_ref().map(|c| ProcessInfo {
        name: c.parent_name.clone(),
        pid: c.parent_pid,
        daemon: false,
    })
}

/// The state a new child will have.
pub(crate) fn state_for_child(opts: &ChildOptions) -> ChildState {
    let me = current_info();
    ChildState {
        name: opts.name.clone(),
        daemon: opts.daemon,
        ident: opts.ident.clone(),
        parent_name: me.name,
        parent_pid: me.pid,
    }
}

/// The parsed env marker of a spawned child.
#[derive(Debug)]
struct Marker {
    payload: RawFd,
    status: RawFd,
    live: RawFd,
    /// Set for a fork server: its control socket.
    control: Option<RawFd>,
}

/// The marker, if this process was spawned as a worker by its current parent.
/// A marker left from another ancestor (the parent pid does not match) is ignored.
fn marker() -> Option<Marker> {
    let v = std::env::var(MARKER_ENV).ok()?;
    let mut it = v.split(':').map(|s| s.parse::<i64>().ok());
    let ppid = it.next()??;
    let payload = RawFd::try_from(it.next()??).ok()?;
    let status = RawFd::try_from(it.next()??).ok()?;
    let live = RawFd::try_from(it.next()??).ok()?;
    let control = match it.next() {
        None => None,
        Some(c) => Some(RawFd::try_from(c?).ok()?),
    };
    if ppid != i64::from(sys::getppid()) {
        return None;
    }
    Some(Marker {
        payload,
        status,
        live,
        control,
    })
}

/// Called before starting any child: a process spawned as a worker whose
/// worker entry did not run (it cannot happen in a program linked with this
/// crate, whose constructor takes over first) is running `main` and must not
/// spawn (that would recurse). It exits with [`EXIT_INIT_MISSING`]; its
/// parent's `start()` then returns [`Error::InitMissing`].
pub(crate) fn check_may_start_children() {
    if INITIALIZED.load(Ordering::Relaxed) || marker().is_none() {
        return;
    }
    eprintln!(
        "shmproc: this process was started as a worker (pid {}, parent {}) but \
         reached main without becoming one; exiting",
        std::process::id(),
        sys::getppid()
    );
    let _ = std::io::stderr().flush();
    sys::exit_now(EXIT_INIT_MISSING);
}

/// The worker entry, run by the dynamic loader before `main` (an ELF
/// constructor in `.init_array`, which glibc calls with `argc, argv, envp`,
/// for the executable and for shared objects alike). In a process spawned as a
/// worker it runs the worker and never returns, so no user code but the
/// worker's tasks ever runs in it; in any other process it returns at once.
///
/// Written by hand rather than with the `ctor` crate: it is one static, and
/// the attribute form keeps it visible to the safety lints of this module.
#[used]
#[link_section = ".init_array"]
static WORKER_ENTRY: extern "C" fn(
    libc::c_int,
    *const *const libc::c_char,
    *const *const libc::c_char,
) = before_main;

extern "C" fn before_main(
    argc: libc::c_int,
    argv: *const *const libc::c_char,
    _envp: *const *const libc::c_char,
) {
    if std::env::var_os(MARKER_ENV).is_none() {
        return;
    }
    let first = if argc >= 2 && !argv.is_null() {
        // SAFETY: the loader passes the program's argv: `argc` valid pointers
        // to NUL-terminated strings (index 1 exists since argc >= 2).
        let p = unsafe { *argv.add(1) };
        if p.is_null() {
            None
        } else {
            // SAFETY: p is one of argv's NUL-terminated strings.
            Some(unsafe { std::ffi::CStr::from_ptr(p) }.to_bytes().to_vec())
        }
    } else {
        None
    };
    // Nothing may unwind out of an `extern "C"` constructor.
    let r = catch_unwind(|| {
        if let Some(m) = marker() {
            run_spawned(m);
        }
        if first.as_deref() == Some(super::spawn::WORKER_ARGV[0].as_bytes()) {
            // Spawned as a worker, but the parent is gone already (the marker
            // names another parent pid): leave quietly, as the liveness
            // watcher would have.
            sys::exit_now(super::EXIT_PARENT_DIED);
        }
        // Otherwise a program started by a worker inherited the marker: it is
        // not a worker of ours.
    });
    if r.is_err() {
        sys::exit_now(EXIT_BOOT_FAILED);
    }
}

/// Keeps the constructor referenced from the spawn path (it is `#[used]`;
/// this makes doubly sure the object holding it is linked wherever workers
/// can be started).
pub(crate) fn entry_linked() {
    std::hint::black_box(&WORKER_ENTRY);
}

/// See [`crate::init`].
pub(crate) fn init() {
    if INITIALIZED.load(Ordering::Relaxed) {
        return;
    }
    if let Some(m) = marker() {
        run_spawned(m);
    }
}

fn fail_boot(what: &str, e: impl std::fmt::Display) -> ! {
    eprintln!("shmproc worker {}: {what}: {e}", std::process::id());
    let _ = std::io::stderr().flush();
    sys::exit_now(EXIT_BOOT_FAILED)
}

fn adopt(raw: RawFd) -> OwnedFd {
    // SAFETY: `raw` was named in the marker by our parent, which kept it open
    // across exec for us alone; INITIALIZED (set before this) ensures it is
    // adopted once.
    let fd = match unsafe { sys::adopt_inherited_fd(raw) } {
        Ok(fd) => fd,
        Err(e) => fail_boot(&format!("inherited fd {raw}"), e),
    };
    // Grandchildren must not inherit it.
    if let Err(e) = sys::set_cloexec(fd.as_fd(), true) {
        fail_boot("FD_CLOEXEC", e);
    }
    fd
}

fn read_boot<T: serde::de::DeserializeOwned>(fd: OwnedFd) -> Result<T> {
    let mut f = sys::file(fd);
    let mut len = [0u8; 8];
    f.read_exact(&mut len)
        .map_err(|e| Error::io("reading the boot message", e))?;
    let len = u64::from_le_bytes(len);
    let len =
        usize::try_from(len).map_err(|_| Error::Codec(format!("boot message of {len} bytes")))?;
    let mut body = vec![0u8; len];
    f.read_exact(&mut body)
        .map_err(|e| Error::io("reading the boot message", e))?;
    Ok(postcard::from_bytes(&body)?)
}

/// The status pipe of a child whose entry announces its own readiness.
static ANSWER: std::sync::Mutex<Option<std::fs::File>> = std::sync::Mutex::new(None);

fn lock_answer() -> std::sync::MutexGuard<'static, Option<std::fs::File>> {
    ANSWER.lock().unwrap_or_else(|p| p.into_inner())
}

/// Tells the parent that this child is ready (see `ChildOptions::announce`):
/// its `start` returns. Does nothing the second time, or in a child whose
/// parent does not wait for it.
pub(crate) fn announce_ready() {
    // try_lock: only this thread of a starting child ever takes it (a forced
    // fork must not wait on a lock another parent thread held).
    let f = ANSWER.try_lock().ok().and_then(|mut g| g.take());
    if let Some(mut f) = f {
        let _ = f.write_all(&encode_answer(None));
    }
}

/// Tells the parent that this child failed to start: its `start` returns the
/// error.
pub(crate) fn announce_failure(e: &crate::Error) {
    let f = ANSWER.try_lock().ok().and_then(|mut g| g.take());
    if let Some(mut f) = f {
        let _ = f.write_all(&encode_answer(Some(e)));
    }
}

/// The control socket and the parent's liveness pipe of a spawned fork server,
/// kept by `init()` for the server's entry (which polls the pipe itself: no
/// watcher thread in a fork server).
static SERVER_FDS: Mutex<Option<(OwnedFd, OwnedFd)>> = Mutex::new(None);

/// In a spawned fork server: its control socket and its parent's liveness pipe.
pub(crate) fn take_server_fds() -> Option<(OwnedFd, OwnedFd)> {
    SERVER_FDS.lock().unwrap_or_else(|p| p.into_inner()).take()
}

fn run_spawned(m: Marker) -> ! {
    INITIALIZED.store(true, Ordering::Relaxed);
    // This runs before main, single-threaded. The marker is for this process
    // only, not for the programs it runs.
    std::env::remove_var(MARKER_ENV);
    sys::ignore_sigpipe();
    let mut inherited = vec![m.payload, m.status, m.live];
    inherited.extend(m.control);
    sys::cloexec_all_but(&inherited);
    let payload = adopt(m.payload);
    let status = adopt(m.status);
    let live = adopt(m.live);
    match m.control {
        Some(c) => {
            let control = adopt(c);
            *SERVER_FDS.lock().unwrap_or_else(|p| p.into_inner()) = Some((control, live));
        }
        None => {
            if let Err(e) = liveness::watch_parent(live) {
                fail_boot("liveness watcher", e);
            }
        }
    }
    let mut status = sys::file(status);
    let boot = match read_boot::<Boot>(payload).and_then(|b| b.build.check().map(|()| b)) {
        Ok(b) => b,
        Err(e) => {
            let _ = status.write_all(&encode_answer(Some(&e)));
            fail_boot("handshake", e);
        }
    };
    *current() = Some(boot.state);
    if boot.announce {
        // The entry answers once it has decoded its arguments.
        *lock_answer() = Some(status);
    } else {
        if let Err(e) = status.write_all(&encode_answer(None)) {
            fail_boot("answering the handshake", e);
        }
        drop(status);
    }
    // SAFETY: the build identity was checked above: this process runs the very
    // same executable image as the parent that computed the entry offset.
    let entry = unsafe { Entry::from(boot.entry).resolve() };
    finish(run_entry(entry, &boot.args))
}

/// Runs a child's boot function; a panic is exit code 1. An entry that ended
/// before it announced (it failed first) tells the parent so, rather than
/// looking like a child that never ran `init()`.
fn run_entry(entry: super::task::BootFn, args: &[u8]) -> i32 {
    let code = catch_unwind(AssertUnwindSafe(|| entry(args))).unwrap_or(1);
    announce_failure(&crate::Error::InvalidState(format!(
        "the child ended (code {code}) before it was ready"
    )));
    code
}

/// Normal end of a spawned worker: flush, then `exit`, which runs the atexit
/// handler that joins this worker's own children.
fn finish(code: i32) -> ! {
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    std::process::exit(code)
}

/// In a process just forked to become a fork server (`fork_from_here`): forget
/// the parent's children, pipe and servers, without taking a lock another
/// thread may have held at fork time. Returns the parent's liveness read end,
/// which the server polls.
pub(crate) fn become_fork_server() -> Option<OwnedFd> {
    INITIALIZED.store(true, Ordering::Relaxed);
    COUNTER.store(0, Ordering::Relaxed);
    let live = liveness::after_fork_in_child();
    registry::after_fork_in_child();
    super::forkserver::after_fork_in_child();
    live
}

/// The body of a child forked by a fork server: reads its boot message from
/// `boot` (the parent writes it once it knows the pid), answers on `status`
/// like a spawned child, runs the entry, and leaves with `_exit`.
pub(crate) fn run_served(boot: OwnedFd, status: OwnedFd) -> ! {
    INITIALIZED.store(true, Ordering::Relaxed);
    COUNTER.store(0, Ordering::Relaxed);
    // The server's own pipe: this child dies with the server (which dies with
    // its parent).
    if let Some(fd) = liveness::after_fork_in_child() {
        if let Err(e) = liveness::watch_parent(fd) {
            fail_boot("liveness watcher", e);
        }
    }
    registry::after_fork_in_child();
    super::forkserver::after_fork_in_child();
    let mut status = sys::file(status);
    let boot = match read_boot::<super::forkserver::ServedBoot>(boot) {
        Ok(b) => b,
        Err(e) => {
            let _ = status.write_all(&encode_answer(Some(&e)));
            fail_boot("handshake", e);
        }
    };
    // try_lock, as in `run_forked`: the server is single-threaded, but one made
    // by a forced `fork_from_here` may carry a lock another thread of its
    // parent held at fork time.
    if let Ok(mut g) = CURRENT.try_lock() {
        *g = Some(boot.state);
    }
    if boot.announce {
        match ANSWER.try_lock() {
            Ok(mut g) => *g = Some(status),
            Err(_) => {
                let _ = status.write_all(&encode_answer(None));
            }
        }
    } else {
        if let Err(e) = status.write_all(&encode_answer(None)) {
            fail_boot("answering the handshake", e);
        }
        drop(status);
    }
    // SAFETY: a fork server's child runs the server's image, which is the
    // parent's (a fork of it, or a re-exec whose build identity was checked).
    let f = unsafe { Entry::from(boot.entry).resolve() };
    let code = run_entry(f, &boot.args);
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    let _ = catch_unwind(registry::shutdown_children);
    sys::exit_now(code)
}

/// The body of a forked child. Never returns; leaves with `_exit`, so no
/// destructor of state inherited from the parent ever runs.
pub(crate) fn run_forked(
    entry: Entry,
    payload: &[u8],
    state: ChildState,
    answer: Option<OwnedFd>,
) -> ! {
    INITIALIZED.store(true, Ordering::Relaxed);
    COUNTER.store(0, Ordering::Relaxed);
    if let Some(fd) = liveness::after_fork_in_child() {
        if let Err(e) = liveness::watch_parent(fd) {
            eprintln!("shmproc: forked child: {e}");
            sys::exit_now(EXIT_BOOT_FAILED);
        }
    }
    registry::after_fork_in_child();
    super::forkserver::after_fork_in_child();
    // try_lock: see registry::after_fork_in_child.
    if let Ok(mut g) = CURRENT.try_lock() {
        *g = Some(state);
    }
    if let Some(fd) = answer {
        match ANSWER.try_lock() {
            Ok(mut g) => *g = Some(sys::file(fd)),
            // Forced fork while another thread held the lock: answer now.
            Err(_) => {
                let _ = sys::file(fd).write_all(&encode_answer(None));
            }
        }
    }
    // SAFETY: a forked child runs the parent's image, where the entry was made.
    let f = unsafe { entry.resolve() };
    let code = run_entry(f, payload);
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    let _ = catch_unwind(registry::shutdown_children);
    sys::exit_now(code)
}
