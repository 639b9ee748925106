//! Processes: [`Process`], start methods, task identity, [`init`].
//!
//! # Start methods
//!
//! - [`StartMethod::Spawn`] (default): the child re-execs `/proc/self/exe` — the
//!   very same file, even if it was rebuilt on disk since — with a marker in its
//!   environment, and becomes a worker **before `main`**: shmproc's ELF
//!   constructor sees the marker and runs the worker, so no code of the
//!   program runs in it but its tasks. The parent's argv is not forwarded. The
//!   child starts single-threaded, with nothing inherited but the standard
//!   streams and three pipe ends. When shmproc lives in a shared object loaded
//!   by another program (a `cdylib` opened by python's `ctypes`), the child is
//!   the dynamic loader running that program with the very same shared object
//!   preloaded, whose constructor takes over the same way.
//! - [`StartMethod::Fork`]: `fork()` without exec, for single-threaded parents.
//!   It is refused with [`Error::ForkUnsafe`](crate::Error::ForkUnsafe) when the
//!   process has more than one thread (a lock held by another thread at fork
//!   time stays locked forever in the child), unless forced with
//!   [`ProcessBuilder::force_fork`]. A forked child leaves with `_exit`: no
//!   destructor of state inherited from the parent ever runs in it.
//! - [`StartMethod::ForkServer`]: the child is forked by this process's *fork
//!   server*, a single-threaded process started on first use with the spawn
//!   method (so [`init`] is needed) and kept until exit. It works from a
//!   multithreaded parent, and a start costs a fork instead of an exec. As in
//!   Python, the child inherits **the server's memory, not the parent's**: the
//!   server is a fresh copy of the program that ran nothing of `main`, so
//!   statics are as at the start of `main`; everything the child needs
//!   travels in its arguments, as with spawn. `current_process()` and
//!   `parent_process()` in the child name the parent that started it (its real
//!   parent pid, the server's, is not used).
//!
//! A private server can also be forked from a still single-threaded process
//! (`spawn::ForkServer::fork_from_here`, meant for a pool with
//! [`StartMethod::Fork`], before its supervisor thread exists): the children it
//! starts later, from any thread, inherit the parent's memory as it was at that
//! moment.
//!
//! # No ceremony
//!
//! Programs, test binaries, doctests and examples need nothing to start
//! processes: a spawned worker never runs `main` (or libtest's), so a
//! `println!`, a file write or argument parsing before the first pool runs
//! once, in the parent. [`init`] is kept as a call that does nothing, for
//! programs written for earlier versions, and so is
//! [`worker_test_entry!`](crate::worker_test_entry).
//!
//! A child that exits without answering the start handshake gives
//! [`Error::InitMissing`](crate::Error::InitMissing) (its program has no
//! shmproc worker entry, which cannot happen for a program linked with this
//! crate).
//!
//! # Lifetime
//!
//! - `start` returns once the child has decoded its arguments — so every
//!   queue, pipe end, shared array and lock among them is attached in the child
//!   — or with the error that stopped it (a handle whose segment is gone, an
//!   argument that does not decode).
//! - A child dies when its parent dies, however the parent dies (see the
//!   liveness pipe: the child `_exit`s with code 87).
//! - At normal exit of the parent (return from `main`, `std::process::exit`),
//!   daemon children still running get SIGTERM (then SIGKILL after 1 s), and all
//!   children are joined, like Python; then the fork server, if any, is stopped.
//! - Children of a fork server die when the server dies, and the server dies
//!   with its parent. A server killed on its own takes its children with it;
//!   their exit statuses are lost with it and are reported as death by SIGKILL
//!   (`exitcode() == Some(-9)`). The global server is then replaced on the next
//!   start; a pool's private server cannot be (its starts fail with
//!   [`Error::InvalidState`](crate::Error::InvalidState) saying so).
//! - The fork server is not a child in [`active_children`]; the children it
//!   forked are.
//!
//! # Examples
//!
//! ```no_run
//! use shmproc::process::{current_process, Process};
//!
//! fn work(n: u64) {
//!     println!("{} got {n}", current_process().name());
//! }
//!
//! fn main() -> shmproc::Result<()> {
//!     let ps: Vec<Process> = (0..3).map(|n| Process::new(work, n)).collect();
//!     for p in &ps {
//!         p.start()?;
//!     }
//!     for p in &ps {
//!         assert_eq!(p.join()?, 0);
//!     }
//!     Ok(())
//! }
//! ```

mod forkserver;
mod handle;
mod liveness;
mod registry;
pub mod spawn;
pub(crate) mod task;
#[cfg(test)]
mod test;
mod worker;

use std::sync::atomic::{AtomicU8, Ordering};

pub use handle::{Process, ProcessBuilder, ProcessRun};
pub use liveness::EXIT_PARENT_DIED;
pub(crate) use worker::{announce_failure, announce_ready};

/// How a child process is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum StartMethod {
    /// Re-exec the running executable (`/proc/self/exe`), which becomes a
    /// worker before `main`.
    #[default]
    Spawn,
    /// `fork()` without exec; refused in a multithreaded process unless forced.
    Fork,
    /// Forked by this process's fork server (started on first use with the
    /// spawn method); works from a multithreaded parent. The child inherits
    /// the server's fresh memory, not the parent's.
    ForkServer,
}

static DEFAULT_METHOD: AtomicU8 = AtomicU8::new(0);

/// Sets the default start method of processes created from now on in this process.
///
/// # Examples
///
/// ```
/// use shmproc::process::{get_start_method, set_start_method, StartMethod};
/// set_start_method(StartMethod::Fork);
/// assert_eq!(get_start_method(), StartMethod::Fork);
/// set_start_method(StartMethod::Spawn);
/// assert_eq!(get_start_method(), StartMethod::Spawn);
/// ```
pub fn set_start_method(method: StartMethod) {
    let v = match method {
        StartMethod::Spawn => 0,
        StartMethod::Fork => 1,
        StartMethod::ForkServer => 2,
    };
    // Relaxed: a plain setting, no other memory depends on it.
    DEFAULT_METHOD.store(v, Ordering::Relaxed);
}

/// The default start method ([`StartMethod::Spawn`] unless set).
pub fn get_start_method() -> StartMethod {
    // Relaxed: see set_start_method.
    match DEFAULT_METHOD.load(Ordering::Relaxed) {
        1 => StartMethod::Fork,
        2 => StartMethod::ForkServer,
        _ => StartMethod::Spawn,
    }
}

/// Does nothing; kept for programs written for versions that needed it as the
/// first line of `main`. Spawned workers now start before `main` (see
/// [the module docs](crate::process#no-ceremony)).
///
/// # Examples
///
/// ```
/// shmproc::init(); // harmless, and not needed
/// ```
pub fn init() {
    worker::init();
}

/// Name, pid and daemon flag of a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    name: String,
    pid: u32,
    daemon: bool,
}

impl ProcessInfo {
    /// The name: `MainProcess` for the main process, else the name given at
    /// creation (`Process-N` by default).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }
    /// Whether the process is a daemon.
    pub fn daemon(&self) -> bool {
        self.daemon
    }
}

/// This process: `MainProcess` in the main program, the child's name in a child.
///
/// # Examples
///
/// ```
/// let me = shmproc::process::current_process();
/// assert_eq!(me.name(), "MainProcess");
/// assert_eq!(me.pid(), std::process::id());
/// ```
pub fn current_process() -> ProcessInfo {
    worker::current_info()
}

/// The parent of this process if it was started by shmproc, else `None`.
///
/// # Examples
///
/// ```
/// assert!(shmproc::process::parent_process().is_none());
/// ```
pub fn parent_process() -> Option<ProcessInfo> {
    worker::parent_info()
}

/// The children of this process that are still running (as in Python, finished
/// ones are reaped on the way).
///
/// # Examples
///
/// ```
/// assert!(shmproc::process::active_children().is_empty());
/// ```
pub fn active_children() -> Vec<ProcessInfo> {
    registry::live_children()
        .into_iter()
        .map(|c| ProcessInfo {
            name: c.name().to_string(),
            pid: c.pid(),
            daemon: c.daemon(),
        })
        .collect()
}

/// The number of online CPUs.
///
/// # Examples
///
/// ```
/// assert!(shmproc::process::cpu_count() >= 1);
/// ```
pub fn cpu_count() -> usize {
    crate::sys::proc::cpu_count()
}

/// The CPUs the cgroup quota of this process allows (`cpu.max`, or
/// `cpu.cfs_quota_us` / `cpu.cfs_period_us` on cgroup v1, rounded up; the
/// smallest along its cgroup path), `None` without a quota. Unlike
/// [`cpu_count`] it ignores the affinity mask, so a launcher that pinned
/// this process to one core (`mpirun --bind-to core`) does not change it.
///
/// ```
/// if let Some(q) = shmproc::process::cpu_quota() {
///     assert!(q >= 1);
/// }
/// ```
pub fn cpu_quota() -> Option<usize> {
    crate::sys::proc::cgroup_quota_cpus()
}

/// Expands to nothing; kept so that test files written for versions that
/// needed it still compile. Test binaries need no entry: a spawned worker
/// never runs libtest's `main`.
#[macro_export]
macro_rules! worker_test_entry {
    () => {};
}
