//! The children of this process, and what happens to them at normal exit.
//!
//! Like Python's `multiprocessing`, at normal exit of a parent (return from
//! `main` or `std::process::exit`, through an `atexit(3)` handler registered when
//! the first child starts):
//! 1. daemon children still running get SIGTERM, and SIGKILL if they have not
//!    ended one second later;
//! 2. all children, daemon or not, are then joined: the parent waits for its
//!    non-daemon children to finish;
//! 3. the global fork server is stopped and reaped (children forked by a server
//!    are registered here like the others: the server's status messages reap
//!    them, so it must outlive step 2; the server itself is never registered).
//!
//! On abnormal exit (a signal, `_exit`), nothing runs here; the children notice
//! through the liveness pipe and exit (see `liveness`).

use std::sync::{Mutex, Once};
use std::time::Duration;

use super::spawn::Child;

static CHILDREN: Mutex<Vec<Child>> = Mutex::new(Vec::new());
static ATEXIT: Once = Once::new();

fn children() -> std::sync::MutexGuard<'static, Vec<Child>> {
    CHILDREN.lock().unwrap_or_else(|p| p.into_inner())
}

/// Registers the exit handler (once per process).
pub(crate) fn ensure_exit_handler() {
    ATEXIT.call_once(|| {
        if !crate::sys::proc::atexit(at_exit) {
            let e = crate::Error::last_os(
                "registering the exit handler (children will not be joined at exit)",
            );
            eprintln!("shmproc: {e}");
        }
    });
}

/// Records a started child of this process.
pub(crate) fn register(child: &Child) {
    ensure_exit_handler();
    children().push(child.clone());
}

/// Forgets a child (after it was reaped).
pub(crate) fn unregister(pid: u32) {
    children().retain(|c| c.pid() != pid);
}

/// The children of this process that have not been reaped. Those that have
/// exited are reaped (and dropped from the list) on the way.
pub(crate) fn live_children() -> Vec<Child> {
    let me = std::process::id();
    let snapshot: Vec<Child> = children()
        .iter()
        .filter(|c| c.owner() == me)
        .cloned()
        .collect();
    snapshot
        .into_iter()
        .filter(|c| matches!(c.try_wait(), Ok(None)))
        .collect()
}

/// In a forked child: the parent's children are not ours.
pub(crate) fn after_fork_in_child() {
    // try_lock: in a (forced) fork of a multithreaded parent, another thread may
    // have held the lock at fork time; entries are also filtered by owner pid.
    if let Ok(mut g) = CHILDREN.try_lock() {
        g.clear();
    }
}

/// Terminates daemon children and joins all children (see the module docs).
pub(crate) fn shutdown_children() {
    let kids = live_children();
    for c in kids.iter().filter(|c| c.daemon()) {
        let _ = c.terminate();
    }
    for c in kids.iter().filter(|c| c.daemon()) {
        if matches!(
            c.wait_timeout(Duration::from_secs(1)),
            Err(crate::Error::Timeout)
        ) {
            let _ = c.kill();
        }
    }
    for c in &kids {
        let _ = c.wait();
    }
    // Last: the fork server reports the statuses of the children above.
    super::forkserver::stop_global();
}

extern "C" fn at_exit() {
    // Never unwind across the C boundary.
    let _ = std::panic::catch_unwind(shutdown_children);
}
