//! How a command-line run stops early: the four signals that end it, a
//! mapped input that shrinks under it, and the cleanup both share.
//!
//! # The protocol
//!
//! [`install`] (the CLI, before `run` or `bench` starts anything) opens a
//! close-on-exec pipe, installs the handlers below and starts a *stopper*
//! thread blocked reading the pipe.
//!
//! - **SIGINT, SIGTERM, SIGHUP, SIGQUIT**: the first one is recorded and one
//!   byte is written to the pipe (an atomic store and `write`: both
//!   async-signal-safe). A second one `_exit`s at once with 128 + its number.
//! - **SIGBUS inside a watched mapping** (an input file mapped by this process
//!   that somebody shrank: [`Watched`]): the faulting thread records which
//!   mapping it was, writes to the pipe and then waits in `pause` forever; it
//!   never returns to the instruction that faulted. A SIGBUS anywhere else gets
//!   the default action (the handler restores it and returns, so the fault
//!   repeats and kills the process as it would have).
//!
//! The stopper wakes and calls [`stop`], which any thread may call; the first
//! caller does the work and every later one waits for the exit:
//!
//! 1. SIGKILL every pool worker of this process (chunks are not waited for:
//!    that is what makes the exit prompt however long a chunk runs), on a
//!    helper thread given at most 100 ms (a thread parked by the SIGBUS
//!    handler may hold a pool lock; workers it cannot reach die with this
//!    process through their liveness pipe);
//! 2. remove every file registered with [`remove_on_stop`] (a named
//!    temporary output and its marker; an unnamed `O_TMPFILE` output needs
//!    nothing, the kernel frees it at exit);
//! 3. unlink every `/dev/shm` segment this process created;
//! 4. wait (at most 50 ms) until the killed workers no longer run;
//! 5. print one line on stderr and `_exit` with 128 + N after signal N, or 1
//!    after a shrunk input.
//!
//! No destructor runs after the signal: the main thread may be in the middle
//! of a kernel, which is never interrupted, only abandoned.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The signals that stop a run, with their names.
pub(crate) const STOP_SIGNALS: [(libc::c_int, &str); 4] = [
    (libc::SIGINT, "SIGINT"),
    (libc::SIGTERM, "SIGTERM"),
    (libc::SIGHUP, "SIGHUP"),
    (libc::SIGQUIT, "SIGQUIT"),
];

/// Write end of the stopper's pipe (-1 before [`install`]).
static WAKE: AtomicI32 = AtomicI32::new(-1);
/// The first stop signal caught (0: none).
static CAUGHT: AtomicI32 = AtomicI32::new(0);
/// 1 + the slot of the watched mapping that raised SIGBUS (0: none).
static FAULTED: AtomicUsize = AtomicUsize::new(0);
/// Set by the first caller of [`stop`].
static STOPPING: AtomicBool = AtomicBool::new(false);
/// Who this process is in the stop line (`rank 2: ` in an MPI run).
static WHO: Mutex<String> = Mutex::new(String::new());

/// Set by [`exit_quietly`]: the exit code of a stop that prints nothing.
static QUIET_EXIT: AtomicI32 = AtomicI32::new(0);

/// From now on a stop signal cleans up as usual but prints nothing and
/// exits with `code`: the process is ending for a reason already reported
/// (an MPI rank after a failure that rank 0 printed, which `mpirun` may
/// signal while it exits).
#[cfg_attr(not(feature = "mpi"), allow(dead_code))]
pub(crate) fn exit_quietly(code: i32) {
    QUIET_EXIT.store(code.max(1), Ordering::SeqCst);
}

/// Names this process in the line [`stop`] prints (an MPI rank: `rank 2`).
#[cfg_attr(not(feature = "mpi"), allow(dead_code))]
pub(crate) fn set_who(who: String) {
    *WHO.lock().unwrap_or_else(|p| p.into_inner()) = format!("{who}: ");
}

/// Watched mappings: start address and length per slot (0 length: free).
const SLOTS: usize = 8;
static RANGE_START: [AtomicUsize; SLOTS] = [const { AtomicUsize::new(0) }; SLOTS];
static RANGE_LEN: [AtomicUsize; SLOTS] = [const { AtomicUsize::new(0) }; SLOTS];
/// What each slot maps, for the message (path, size when mapped).
static RANGE_FILE: Mutex<[Option<(PathBuf, u64)>; SLOTS]> = Mutex::new([const { None }; SLOTS]);

/// Files [`stop`] removes.
static REMOVE: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn wake() {
    let fd = WAKE.load(Ordering::SeqCst);
    if fd >= 0 {
        let b = [1u8];
        // SAFETY: write(2) on a pipe we own, from a one-byte buffer on the
        // stack; async-signal-safe. A full pipe (never: one byte per stop)
        // would only drop the byte.
        unsafe {
            libc::write(fd, b.as_ptr().cast(), 1);
        }
    }
}

extern "C" fn on_stop_signal(sig: libc::c_int) {
    if CAUGHT
        .compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst)
        .is_err()
    {
        // A second signal: leave at once.
        // SAFETY: _exit is async-signal-safe and never returns.
        unsafe { libc::_exit(128 + sig) }
    }
    wake();
}

extern "C" fn on_sigbus(_sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo_t to an SA_SIGINFO handler;
    // si_addr is the faulting address for SIGBUS.
    let addr = unsafe { (*info).si_addr() } as usize;
    for slot in 0..SLOTS {
        let len = RANGE_LEN[slot].load(Ordering::SeqCst);
        let start = RANGE_START[slot].load(Ordering::SeqCst);
        if len > 0 && addr >= start && addr - start < len {
            let _ = FAULTED.compare_exchange(0, slot + 1, Ordering::SeqCst, Ordering::SeqCst);
            wake();
            loop {
                // SAFETY: pause(2) is async-signal-safe; the stopper ends the
                // process, this thread never resumes the faulting access.
                unsafe {
                    libc::pause();
                }
            }
        }
    }
    // Not a watched mapping: the default action, when the fault repeats.
    // SAFETY: resetting SIGBUS's disposition is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGBUS, libc::SIG_DFL);
    }
}

fn set_handler(sig: libc::c_int, action: libc::sighandler_t, siginfo: bool) -> std::io::Result<()> {
    // SAFETY: an all-zero sigaction is a valid value (empty mask, no flags).
    let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
    sa.sa_sigaction = action;
    sa.sa_flags = libc::SA_RESTART | if siginfo { libc::SA_SIGINFO } else { 0 };
    // SAFETY: `sa` is fully initialised; the handlers only use atomics,
    // write(2), pause(2), signal(2) and _exit(2), all async-signal-safe.
    if unsafe { libc::sigaction(sig, &sa, std::ptr::null_mut()) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Installs the handlers and starts the stopper thread (see the module docs).
/// Idempotent.
pub(crate) fn install() -> std::io::Result<()> {
    static INSTALLED: Mutex<bool> = Mutex::new(false);
    let mut installed = INSTALLED.lock().unwrap_or_else(|p| p.into_inner());
    if *installed {
        return Ok(());
    }
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into `fds`.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let read_end = fds[0];
    WAKE.store(fds[1], Ordering::SeqCst);
    std::thread::Builder::new()
        .name("shmproc-stopper".into())
        .spawn(move || loop {
            let mut b = [0u8; 1];
            // SAFETY: read(2) into a one-byte buffer from the pipe's read end,
            // which this thread alone uses.
            let r = unsafe { libc::read(read_end, b.as_mut_ptr().cast(), 1) };
            if r == 1 {
                if let Some(reason) = pending() {
                    stop(reason);
                }
            } else if r == 0 {
                return;
            }
        })?;
    for (sig, _) in STOP_SIGNALS {
        set_handler(
            sig,
            on_stop_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
            false,
        )?;
    }
    set_handler(
        libc::SIGBUS,
        on_sigbus as extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void)
            as libc::sighandler_t,
        true,
    )?;
    *installed = true;
    Ok(())
}

/// Why a run stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Signal N arrived.
    Signal(libc::c_int),
    /// The watched mapping in this slot shrank under the run.
    Shrank(usize),
}

/// The stop that is due, if any (a signal first).
pub(crate) fn pending() -> Option<Stop> {
    match CAUGHT.load(Ordering::SeqCst) {
        0 => match FAULTED.load(Ordering::SeqCst) {
            0 => None,
            slot => Some(Stop::Shrank(slot - 1)),
        },
        sig => Some(Stop::Signal(sig)),
    }
}

/// Whether a stop signal arrived since [`install`].
pub(crate) fn interrupted() -> bool {
    CAUGHT.load(Ordering::SeqCst) != 0
}

/// The name of a stop signal.
pub(crate) fn signal_name(sig: libc::c_int) -> String {
    STOP_SIGNALS
        .iter()
        .find(|(s, _)| *s == sig)
        .map_or_else(|| format!("signal {sig}"), |(_, n)| (*n).to_owned())
}

/// Registers a file for [`stop`] to remove.
pub(crate) fn remove_on_stop(path: PathBuf) {
    REMOVE.lock().unwrap_or_else(|p| p.into_inner()).push(path);
}

/// Withdraws a file registered with [`remove_on_stop`].
pub(crate) fn keep_on_stop(path: &std::path::Path) {
    REMOVE
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|p| p != path);
}

/// A mapping of an input file that the SIGBUS handler knows: a fault inside
/// it (the file shrank) becomes [`Stop::Shrank`]. Withdrawn on drop.
#[derive(Debug)]
pub(crate) struct Watched {
    slot: Option<usize>,
}

impl Watched {
    /// Watches `len` bytes at `start`, a mapping of `path`, which had `size`
    /// bytes when it was mapped. Without a free slot the mapping is not
    /// watched (a fault in it is then the default SIGBUS).
    pub(crate) fn new(start: *const u8, len: usize, path: PathBuf, size: u64) -> Self {
        let mut files = RANGE_FILE.lock().unwrap_or_else(|p| p.into_inner());
        let slot = (0..SLOTS).find(|&s| files[s].is_none());
        if let Some(s) = slot {
            files[s] = Some((path, size));
            RANGE_START[s].store(start as usize, Ordering::SeqCst);
            RANGE_LEN[s].store(len, Ordering::SeqCst);
        }
        Watched { slot }
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        if let Some(s) = self.slot {
            RANGE_LEN[s].store(0, Ordering::SeqCst);
            RANGE_FILE.lock().unwrap_or_else(|p| p.into_inner())[s] = None;
        }
    }
}

/// The one-line message for a shrunk input.
pub(crate) fn shrank_message(path: &std::path::Path, was: u64) -> String {
    let now = std::fs::metadata(path)
        .map_or_else(|_| "gone".to_owned(), |m| format!("{} bytes", m.len()));
    format!(
        "{} shrank during the run (it had {was} bytes, now {now}); nothing was written",
        path.display()
    )
}

/// Ends the process for `reason` after the cleanup in the module docs. The
/// first caller does it; any other waits for the exit.
pub(crate) fn stop(reason: Stop) -> ! {
    if STOPPING.swap(true, Ordering::SeqCst) {
        loop {
            std::thread::park();
        }
    }
    // On a helper thread, with a bound: a thread parked in the SIGBUS handler
    // may hold a pool lock that listing the workers needs. Workers not killed
    // here die with this process anyway (their liveness pipe).
    let (tx, rx) = std::sync::mpsc::channel();
    let helper = std::thread::Builder::new()
        .name("shmproc-stop".into())
        .spawn(move || {
            let _ = tx.send(crate::backend::kill_workers());
        });
    let killed = match helper {
        Ok(_) => rx
            .recv_timeout(Duration::from_millis(100))
            .unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    let files: Vec<PathBuf> = match REMOVE.try_lock() {
        Ok(g) => g.clone(),
        Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner().clone(),
        Err(std::sync::TryLockError::WouldBlock) => Vec::new(),
    };
    for f in files {
        let _ = std::fs::remove_file(f);
    }
    let me = std::process::id();
    if let Ok(list) = shmproc::segment::list() {
        for s in list.iter().filter(|s| s.creator_pid == Some(me)) {
            let _ = shmproc::segment::unlink(&s.name);
        }
    }
    let deadline = Instant::now() + Duration::from_millis(50);
    while killed.iter().any(|&p| runs(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    let who = match WHO.try_lock() {
        Ok(g) => g.clone(),
        Err(_) => String::new(),
    };
    let (line, code) = match reason {
        Stop::Signal(sig) => (
            format!(
                "shmproc: {who}stopped by {}; the run's workers, temporary output and segments are removed\n",
                signal_name(sig)
            ),
            128 + sig,
        ),
        Stop::Shrank(slot) => {
            let file = match RANGE_FILE.try_lock() {
                Ok(g) => g[slot].clone(),
                Err(_) => None,
            };
            let msg = file.map_or_else(
                || "an input file shrank during the run; nothing was written".to_owned(),
                |(p, was)| shrank_message(&p, was),
            );
            (format!("shmproc: {who}error: {msg}\n"), 1)
        }
    };
    let (line, code) = match QUIET_EXIT.load(Ordering::SeqCst) {
        0 => (line, code),
        quiet => (String::new(), quiet),
    };
    // SAFETY: write(2) of a valid buffer to stderr, then _exit: no destructor
    // or atexit handler runs (another thread may be inside a kernel).
    unsafe {
        libc::write(2, line.as_ptr().cast(), line.len());
        libc::_exit(code)
    }
}

/// Whether `pid` still runs (gone or a zombie: no).
fn runs(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with(['Z', 'X'])
    })
}

/// Pool workers ignore the terminal's signals (SIGINT, SIGQUIT, SIGHUP go to
/// the whole foreground process group): the parent decides how the run stops.
/// SIGTERM keeps its default, so the pool's own shutdown stays prompt.
pub(crate) fn ignore_terminal_signals() {
    for sig in [libc::SIGINT, libc::SIGQUIT, libc::SIGHUP] {
        // SAFETY: setting a disposition to SIG_IGN has no preconditions.
        unsafe {
            libc::signal(sig, libc::SIG_IGN);
        }
    }
}
