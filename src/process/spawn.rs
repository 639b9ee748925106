//! Starting a child: re-exec spawn or fork, the handshake, and the [`Child`]
//! handle. This is the seam `Process` and the pool are built on:
//!
//! ```text
//! start_child(entry: Entry, payload: Vec<u8>, opts: &ChildOptions) -> Result<Child>
//! ```
//!
//! `entry` names a boot function `fn(&[u8]) -> i32` (see [`Entry`]); the child
//! calls it with `payload` and exits with the code it returns.
//!
//! # Spawn protocol
//!
//! 1. The parent makes a close-on-exec socket pair (payload parent→child) and
//!    pipe (status child→parent) and re-execs `/proc/self/exe` with the fixed argv
//!    [`WORKER_ARGV`] and the env marker `SHMPROC_WORKER=<ppid>:<payload fd>:<status fd>:<liveness fd>`;
//!    only the child side of the three fds survives the exec.
//! 2. The parent writes `u64 length (LE) + postcard(Boot)`: the build identity,
//!    the entry offset, name, daemon flag, and the payload.
//! 3. The child (in shmproc's ELF constructor, before `main`) reads it, checks
//!    the build identity, and answers `K`, or `B`/`X` + `u32 length + message`
//!    on failure.
//! 4. EOF or exit of the child without an answer means it never reached the
//!    worker entry: [`Error::InitMissing`].
//!
//! The parent waits on the status pipe *and* the child's pidfd, so a child that
//! dies, or a stray copy of a pipe end, never makes `start` hang; a child that
//! neither answers nor exits is killed after [`ChildOptions::handshake_timeout`].

pub use super::forkserver::{global_server_pid, ForkServer};
pub(crate) use super::task::{raw_call, BuildIdentity, EntryWire, FnId};
pub use super::task::{BootFn, Entry};

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{forkserver, liveness, registry, worker, StartMethod};
use crate::sys::proc::{self as sys, PollFd, WaitStatus};
use crate::{Error, Result};

/// The argv of a spawned child after `argv[0]`. No program ever parses it (the
/// worker entry takes over before `main`); it names the process as a worker in
/// `ps`, and lets a worker whose parent died before it started leave quietly.
pub const WORKER_ARGV: [&str; 1] = ["__shmproc_worker_entry"];

/// Name of the env marker of a spawned child.
pub const MARKER_ENV: &str = "SHMPROC_WORKER";

/// Exit code of a child that has the worker marker but reached `main` and
/// tried to start a process (its program has no worker entry).
pub const EXIT_INIT_MISSING: i32 = 86;

/// Exit code of a spawned child that failed its handshake (bad build identity,
/// unreadable payload).
pub const EXIT_BOOT_FAILED: i32 = 88;

/// How to start one child.
#[derive(Debug, Clone)]
pub struct ChildOptions {
    /// Spawn (re-exec) or fork.
    pub method: StartMethod,
    /// Fork even when this process has more than one thread.
    pub force_fork: bool,
    /// The child's name (`current_process().name` in the child).
    pub name: String,
    /// Daemon children are terminated at the parent's normal exit.
    pub daemon: bool,
    /// The child's identity path, as in Python (`[1]` for `Process-1`, `[1, 2]`
    /// for `Process-1:2`); its own children are numbered under it.
    pub ident: Vec<u32>,
    /// How long `start_child` waits for a spawned child's handshake.
    pub handshake_timeout: Duration,
    /// The entry announces when it is ready (after decoding its arguments,
    /// which attaches the queues, pipes and arrays among them) with
    /// `announce_ready` (crate-internal), and `start_child`
    /// returns only then — so the parent may drop its copies of those handles
    /// as soon as `start` returns. Without it, `start_child` returns once the
    /// child is running its entry (spawn) or at once (fork).
    pub announce: bool,
}

impl ChildOptions {
    /// Options with the global default start method, a fresh `Process-N` name and
    /// identity, not daemon, a 60 s handshake timeout.
    pub fn new() -> Self {
        let ident = worker::next_ident();
        ChildOptions {
            method: super::get_start_method(),
            force_fork: false,
            name: worker::default_name("Process", &ident),
            daemon: false,
            ident,
            handshake_timeout: Duration::from_secs(60),
            announce: false,
        }
    }
}

impl ChildOptions {
    /// As [`new`](ChildOptions::new), named `<prefix>-N` (e.g. a pool's
    /// `SpawnPoolWorker-3`), numbered with the same counter as `Process-N`.
    pub fn with_name_prefix(prefix: &str) -> Self {
        let mut o = Self::new();
        o.name = worker::default_name(prefix, &o.ident);
        o
    }
}

impl Default for ChildOptions {
    fn default() -> Self {
        Self::new()
    }
}

/// What the parent sends a spawned child.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Boot {
    pub(crate) build: BuildIdentity,
    pub(crate) entry: EntryWire,
    /// The entry answers the handshake itself (see `ChildOptions::announce`).
    pub(crate) announce: bool,
    pub(crate) state: worker::ChildState,
    pub(crate) args: Vec<u8>,
}

/// `u64` LE length + postcard of `v`: a boot message.
pub(crate) fn length_prefixed<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    let body = postcard::to_stdvec(v)?;
    let mut msg = Vec::with_capacity(8 + body.len());
    msg.extend_from_slice(&(body.len() as u64).to_le_bytes());
    msg.extend_from_slice(&body);
    Ok(msg)
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExitStatus {
    /// It exited with this code.
    Exited(i32),
    /// It was killed by this signal.
    Signaled(i32),
}

impl ExitStatus {
    /// Python's `exitcode`: the exit code, or `-signal`.
    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Exited(c) => c,
            ExitStatus::Signaled(s) => -s,
        }
    }

    /// Exited with code 0.
    pub fn success(self) -> bool {
        self == ExitStatus::Exited(0)
    }

    /// The signal that killed the child, if any.
    pub fn signal(self) -> Option<i32> {
        match self {
            ExitStatus::Signaled(s) => Some(s),
            ExitStatus::Exited(_) => None,
        }
    }
}

impl From<WaitStatus> for ExitStatus {
    fn from(w: WaitStatus) -> Self {
        match w {
            WaitStatus::Exited(c) => ExitStatus::Exited(c),
            WaitStatus::Signaled(s) => ExitStatus::Signaled(s),
        }
    }
}

/// A child forked by a fork server: its status comes from the server.
#[derive(Debug)]
struct Served {
    link: Arc<forkserver::Link>,
    /// The parent's number for it in the server's messages.
    id: u64,
}

#[derive(Debug)]
struct ChildInner {
    pid: u32,
    owner: u32,
    pidfd: Option<OwnedFd>,
    /// `None`: our own child, reaped with `waitpid`.
    served: Option<Served>,
    /// Set once the child is reaped. Held while signalling, so that a signal is
    /// never sent to a pid that was reaped (and maybe reused) meanwhile.
    status: Mutex<Option<ExitStatus>>,
    name: String,
    daemon: bool,
}

impl Drop for ChildInner {
    fn drop(&mut self) {
        if let Some(sv) = &self.served {
            sv.link.forget(sv.id);
        }
    }
}

/// A started child process. Cheap to clone (all clones share the state); every
/// method takes `&self` and is safe to call from several threads.
#[derive(Debug, Clone)]
pub struct Child {
    inner: Arc<ChildInner>,
}

impl Child {
    /// A child of this very process (spawned or forked).
    pub(super) fn direct(pid: u32, opts: &ChildOptions) -> Self {
        Child {
            inner: Arc::new(ChildInner {
                pid,
                owner: std::process::id(),
                // ENOSYS on kernels before 5.3: fall back to polling waitpid.
                pidfd: sys::pidfd_open(pid).ok(),
                served: None,
                status: Mutex::new(None),
                name: opts.name.clone(),
                daemon: opts.daemon,
            }),
        }
    }

    /// A child forked by the fork server behind `link`, with the pidfd the
    /// server opened for it.
    pub(super) fn served(
        pid: u32,
        pidfd: OwnedFd,
        opts: &ChildOptions,
        link: Arc<forkserver::Link>,
        id: u64,
    ) -> Self {
        Child {
            inner: Arc::new(ChildInner {
                pid,
                owner: std::process::id(),
                pidfd: Some(pidfd),
                served: Some(Served { link, id }),
                status: Mutex::new(None),
                name: opts.name.clone(),
                daemon: opts.daemon,
            }),
        }
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.inner.pid
    }

    /// The child's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Whether the child is a daemon.
    pub fn daemon(&self) -> bool {
        self.inner.daemon
    }

    pub(crate) fn owner(&self) -> u32 {
        self.inner.owner
    }

    /// The pidfd (readable once the child has exited), if the kernel has pidfds.
    pub fn pidfd(&self) -> Option<BorrowedFd<'_>> {
        self.inner.pidfd.as_ref().map(|f| f.as_fd())
    }

    fn status(&self) -> std::sync::MutexGuard<'_, Option<ExitStatus>> {
        self.inner.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn check_owner(&self) -> Result<()> {
        if self.inner.owner != std::process::id() {
            return Err(Error::InvalidState(format!(
                "process {} is not a child of this process",
                self.inner.pid
            )));
        }
        Ok(())
    }

    /// Reaps the child if it has exited; `None` while it runs.
    ///
    /// A child forked by a fork server is reaped by the server, which sends its
    /// status; `None` until that message is read (a call may also read and
    /// record the statuses of the server's other children). If the server died,
    /// the child's status died with it: it is reported as
    /// `ExitStatus::Signaled(9)` (killed by SIGKILL) once the child is gone.
    pub fn try_wait(&self) -> Result<Option<ExitStatus>> {
        let mut st = self.status();
        if let Some(s) = *st {
            return Ok(Some(s));
        }
        self.check_owner()?;
        let r = match &self.inner.served {
            None => sys::waitpid(self.inner.pid, true)
                .map_err(|e| Error::io(format!("waitpid({})", self.inner.pid), e))?
                .map(ExitStatus::from),
            Some(sv) => sv.link.try_exit(sv.id, self.pidfd())?,
        };
        if let Some(s) = r {
            *st = Some(s);
            drop(st);
            registry::unregister(self.inner.pid);
            return Ok(Some(s));
        }
        Ok(None)
    }

    /// Waits until the child has exited or `timeout` passed (None: forever),
    /// without reaping it. `true` if it has exited.
    pub fn wait_readable(&self, timeout: Option<Duration>) -> Result<bool> {
        if self.status().is_some() {
            return Ok(true);
        }
        match &self.inner.pidfd {
            Some(fd) => {
                let mut fds = [PollFd::readable(fd.as_fd())];
                let n = sys::poll(&mut fds, timeout).map_err(|e| Error::io("poll(pidfd)", e))?;
                Ok(n > 0)
            }
            None => {
                let deadline = timeout.map(|t| Instant::now() + t);
                let mut nap = Duration::from_micros(200);
                loop {
                    if self.try_wait()?.is_some() {
                        return Ok(true);
                    }
                    let now = Instant::now();
                    if deadline.is_some_and(|d| now >= d) {
                        return Ok(false);
                    }
                    let left = deadline.map_or(nap, |d| d - now);
                    std::thread::sleep(nap.min(left));
                    nap = (nap * 2).min(Duration::from_millis(20));
                }
            }
        }
    }

    /// Blocks until [`try_wait`](Child::try_wait) would return a status, or
    /// the deadline passes (None: never). For our own children: the pidfd; for
    /// served ones: the server's message (a pidfd is readable before it comes).
    fn wait_status(&self, deadline: Option<Instant>) -> Result<()> {
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        match &self.inner.served {
            None => self.wait_readable(left).map(drop),
            Some(sv) => {
                self.check_owner()?;
                sv.link.wait_exit(sv.id, self.pidfd(), deadline).map(drop)
            }
        }
    }

    /// Waits for the child to exit and reaps it.
    pub fn wait(&self) -> Result<ExitStatus> {
        loop {
            if let Some(s) = self.try_wait()? {
                return Ok(s);
            }
            self.wait_status(None)?;
        }
    }

    /// Waits at most `timeout` for the child to exit, and reaps it.
    ///
    /// # Errors
    /// [`Error::Timeout`] if it is still running.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_wait()? {
                return Ok(s);
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout);
            }
            self.wait_status(Some(deadline))?;
        }
    }

    /// Sends `sig`; a no-op once the child has been reaped. A child forked by a
    /// fork server is signalled through its pidfd, which can never reach
    /// another process that reused its pid.
    pub fn signal(&self, sig: i32) -> Result<()> {
        let st = self.status();
        if st.is_some() {
            return Ok(());
        }
        self.check_owner()?;
        let r = match (&self.inner.served, self.pidfd()) {
            (Some(_), Some(fd)) => sys::pidfd_send_signal(fd, sig),
            // Our own child: not reaped (the status lock is held), so the pid
            // is still its own.
            _ => sys::kill(self.inner.pid, sig),
        };
        match r {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(sys::ESRCH) => Ok(()),
            Err(e) => Err(Error::io(format!("kill({}, {sig})", self.inner.pid), e)),
        }
    }

    /// SIGTERM.
    pub fn terminate(&self) -> Result<()> {
        self.signal(sys::SIGTERM)
    }

    /// SIGKILL.
    pub fn kill(&self) -> Result<()> {
        self.signal(sys::SIGKILL)
    }

    /// Kills and reaps (used on failed starts).
    pub(super) fn discard(&self) {
        let _ = self.kill();
        let _ = self.wait();
    }
}

/// Starts a child that runs `entry(&payload)` and exits with its return value.
/// Returns once the child is running its entry (spawn: after the handshake).
///
/// # Errors
/// - [`Error::ForkUnsafe`]: fork asked for in a multithreaded process, not forced;
/// - [`Error::InvalidState`]: the fork server died and a new one died as well;
/// - [`Error::InitMissing`]: the spawned child ended without answering;
/// - [`Error::BuildMismatch`]: the spawned child runs another build;
/// - [`Error::Timeout`]: no handshake within `opts.handshake_timeout`;
/// - [`Error::Io`]: pipes, exec, fork.
pub fn start_child(entry: Entry, payload: Vec<u8>, opts: &ChildOptions) -> Result<Child> {
    worker::entry_linked();
    worker::check_may_start_children();
    match opts.method {
        StartMethod::Spawn => spawn_child(entry, payload, opts, BuildIdentity::current()?),
        StartMethod::Fork => fork_child(entry, payload, opts),
        StartMethod::ForkServer => forkserver::start_with_global(entry, payload, opts),
    }
}

fn argv0() -> std::ffi::OsString {
    std::env::args_os()
        .next()
        .or_else(|| std::env::current_exe().ok().map(|p| p.into_os_string()))
        .unwrap_or_else(|| "shmproc-worker".into())
}

/// The command that starts a spawned worker, and the files it needs kept
/// open until it has started (their fds are added to `keep`).
///
/// - shmproc in the executable: `/proc/self/exe` (the very file, even if it
///   was rebuilt on disk since).
/// - shmproc in a shared object another program loaded (a `cdylib` opened by
///   python's ctypes): the dynamic loader runs the host program with that
///   very shared object preloaded (`ld.so --preload /proc/self/fd/L
///   /proc/self/fd/P`); the object's constructor becomes the worker before the
///   host's `main` could run.
fn worker_command(keep: &mut Vec<RawFd>) -> Result<(Command, Vec<File>)> {
    let image = super::task::image()?;
    let exe = sys::exe_identity().map_err(|e| Error::io("stat /proc/self/exe", e))?;
    if (image.dev, image.ino) == exe {
        let mut cmd = Command::new("/proc/self/exe");
        cmd.arg0(argv0());
        return Ok((cmd, Vec::new()));
    }
    let loader = sys::dynamic_loader()
        .map_err(|e| Error::io("finding the dynamic loader", e))?
        .ok_or_else(|| {
            Error::InvalidState(
                "shmproc's code is not in the executable and the program has no dynamic \
                 loader to start a worker with; use StartMethod::Fork"
                    .into(),
            )
        })?;
    let program = sys::main_program().map_err(|e| Error::io("finding the main program", e))?;
    let open_same = |f: &sys::MappedFile, what: &str| -> Result<File> {
        let file = File::open(&f.path).map_err(|e| {
            Error::io(
                format!(
                    "opening {what} {} to start a worker (was it removed or replaced?)",
                    f.path.display()
                ),
                e,
            )
        })?;
        let m = file
            .metadata()
            .map_err(|e| Error::io(format!("stat {}", f.path.display()), e))?;
        if (sys::dev_parts(m.dev()), m.ino()) != (f.dev, f.ino) {
            return Err(Error::BuildMismatch(format!(
                "{what} {} was replaced on disk after it was loaded; a worker cannot run \
                 the same code (restart the program)",
                f.path.display()
            )));
        }
        Ok(file)
    };
    let prog = open_same(&program, "the program")?;
    let mut cmd = Command::new(loader);
    cmd.arg("--argv0").arg(argv0());
    let mut files = Vec::new();
    if (image.dev, image.ino) != (program.dev, program.ino) {
        let lib = open_same(&image, "shmproc's shared object")?;
        cmd.arg("--preload")
            .arg(format!("/proc/self/fd/{}", lib.as_raw_fd()));
        keep.push(lib.as_raw_fd());
        files.push(lib);
    }
    cmd.arg(format!("/proc/self/fd/{}", prog.as_raw_fd()));
    keep.push(prog.as_raw_fd());
    files.push(prog);
    Ok((cmd, files))
}

pub(crate) fn spawn_child(
    entry: Entry,
    payload: Vec<u8>,
    opts: &ChildOptions,
    build: BuildIdentity,
) -> Result<Child> {
    spawn_with(entry, payload, opts, build, None)
}

/// Spawns a fork server: a worker whose marker also names `control` (kept
/// open across the exec), which keeps its liveness pipe for its own loop
/// instead of starting a watcher thread. Not registered as a child.
pub(super) fn spawn_server(entry: Entry, opts: &ChildOptions, control: RawFd) -> Result<Child> {
    spawn_with(
        entry,
        Vec::new(),
        opts,
        BuildIdentity::current()?,
        Some(control),
    )
}

fn spawn_with(
    entry: Entry,
    payload: Vec<u8>,
    opts: &ChildOptions,
    build: BuildIdentity,
    control: Option<RawFd>,
) -> Result<Child> {
    let live_r = liveness::read_end_for_children()?;
    // A socket rather than a pipe for the payload: `send(MSG_NOSIGNAL)` cannot
    // raise SIGPIPE in the parent if the child is gone.
    let (pay_r, pay_w) =
        sys::socketpair().map_err(|e| Error::io("creating the payload socket", e))?;
    let (st_r, st_w) = sys::pipe().map_err(|e| Error::io("creating the status pipe", e))?;
    let boot = Boot {
        build,
        entry: entry.into(),
        announce: opts.announce,
        state: worker::state_for_child(opts),
        args: payload,
    };
    let msg = length_prefixed(&boot)?;

    let mut marker = format!(
        "{}:{}:{}:{}",
        std::process::id(),
        pay_r.as_raw_fd(),
        st_w.as_raw_fd(),
        live_r
    );
    let mut keep = vec![pay_r.as_raw_fd(), st_w.as_raw_fd(), live_r];
    if let Some(c) = control {
        marker.push_str(&format!(":{c}"));
        keep.push(c);
    }
    let (mut cmd, _image_files) = worker_command(&mut keep)?;
    cmd.args(WORKER_ARGV).env(MARKER_ENV, marker);
    sys::keep_fds_on_exec(&mut cmd, keep);
    let spawned = cmd
        .spawn()
        .map_err(|e| Error::io("starting a worker (re-executing shmproc's program)", e))?;
    let pid = spawned.id();
    // std's handle neither waits nor kills on drop; our Child owns the pid now.
    drop(spawned);
    drop(pay_r);
    drop(st_w);
    let child = Child::direct(pid, opts);
    if control.is_none() {
        registry::register(&child);
    }
    let deadline = Instant::now() + opts.handshake_timeout;
    match handshake(&child, pay_w, st_r, &msg, deadline, no_answer) {
        Ok(()) => Ok(child),
        Err(e) => {
            child.discard();
            Err(e)
        }
    }
}

/// Waits for `fd` readable/writable, or the child's exit, or the deadline.
/// Returns `(fd ready, child exited)`.
fn wait_fd_or_exit(
    child: &Child,
    fd: BorrowedFd<'_>,
    read: bool,
    deadline: Instant,
) -> Result<(bool, bool)> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(Error::Timeout);
    }
    let want = if read {
        PollFd::readable(fd)
    } else {
        PollFd::writable(fd)
    };
    match child.pidfd() {
        Some(pfd) => {
            let mut fds = [want, PollFd::readable(pfd)];
            sys::poll(&mut fds, Some(left)).map_err(|e| Error::io("poll (handshake)", e))?;
            Ok((fds[0].ready, fds[1].ready))
        }
        None => {
            let mut fds = [want];
            sys::poll(&mut fds, Some(left.min(Duration::from_millis(20))))
                .map_err(|e| Error::io("poll (handshake)", e))?;
            let exited = child.wait_readable(Some(Duration::ZERO))?;
            Ok((fds[0].ready, exited))
        }
    }
}

/// Sends the boot message `msg` on `pay_w`, then reads the answer from `st_r`
/// (see [`await_answer`]; `on_silence` makes the error of a child that exits
/// without one).
pub(super) fn handshake(
    child: &Child,
    pay_w: OwnedFd,
    st_r: OwnedFd,
    msg: &[u8],
    deadline: Instant,
    on_silence: fn(&Child) -> Error,
) -> Result<()> {
    let io_err =
        |ctx: &str, e: io::Error| Error::io(format!("handshake with {}: {ctx}", child.pid()), e);

    // 1. Send the boot message (non-blocking, so a child that never reads
    //    cannot block us past the deadline).
    let mut off = 0;
    while off < msg.len() {
        match sys::send_nonblocking(pay_w.as_fd(), &msg[off..]) {
            Ok(n) => off += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let (_, exited) = wait_fd_or_exit(child, pay_w.as_fd(), false, deadline)?;
                if exited {
                    break;
                }
            }
            // EPIPE / ECONNRESET: the child closed its end (exited without reading).
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
                ) =>
            {
                break
            }
            Err(e) => return Err(io_err("writing the payload", e)),
        }
    }
    drop(pay_w);

    // 2. Wait for the answer.
    await_answer(child, st_r, deadline, on_silence)
}

/// Reads the child's answer from the status pipe: `Ok` for `K`, the error it
/// reports, `on_silence(child)` if it exits (or closes the pipe) without one,
/// or [`Error::Timeout`] at the deadline.
fn await_answer(
    child: &Child,
    st_r: OwnedFd,
    deadline: Instant,
    on_silence: fn(&Child) -> Error,
) -> Result<()> {
    let io_err =
        |ctx: &str, e: io::Error| Error::io(format!("handshake with {}: {ctx}", child.pid()), e);
    sys::set_nonblocking(st_r.as_fd(), true).map_err(|e| io_err("O_NONBLOCK", e))?;
    let mut inp = File::from(st_r);
    let mut buf = [0u8; 4096];
    let mut got = Vec::new();
    // Set once the child is seen to have exited: one more read then decides,
    // since an answer written before the exit is in the pipe by then (poll may
    // see the status pipe empty, then the answer and the exit, then the pidfd).
    let mut exited = false;
    loop {
        match inp.read(&mut buf) {
            Ok(0) => return Err(on_silence(child)),
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                if let Some(r) = parse_answer(&got) {
                    return r;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if exited {
                    // Exited without answering; a stray copy of the write end
                    // (held by a forked sibling) may keep EOF from coming.
                    return Err(on_silence(child));
                }
                exited = wait_fd_or_exit(child, inp.as_fd(), true, deadline)?.1;
            }
            Err(e) => return Err(io_err("reading the status", e)),
        }
    }
}

/// `Some` once `got` holds a whole answer.
fn parse_answer(got: &[u8]) -> Option<Result<()>> {
    match got.first()? {
        b'K' => Some(Ok(())),
        tag @ (b'B' | b'X') => {
            let len = u32::from_le_bytes(got.get(1..5)?.try_into().ok()?) as usize;
            let text = String::from_utf8_lossy(got.get(5..5 + len)?).into_owned();
            Some(Err(if *tag == b'B' {
                Error::BuildMismatch(text)
            } else {
                Error::InvalidState(format!("the worker failed to start: {text}"))
            }))
        }
        other => Some(Err(Error::InvalidState(format!(
            "bad handshake answer from worker: byte {other:#x}"
        )))),
    }
}

/// A forked child exited before announcing that it was ready.
fn forked_silence(child: &Child) -> Error {
    startup_silence(child, "forked worker", "")
}

/// A child (`what {pid}{how}`) ended or closed its status pipe before it
/// announced that it was ready.
pub(crate) fn startup_silence(child: &Child, what: &str, how: &str) -> Error {
    let pid = child.pid();
    match child.wait_timeout(Duration::from_secs(5)) {
        Ok(st) => Error::InvalidState(format!("{what} {pid}{how} ended during startup ({st:?})")),
        _ => Error::InvalidState(format!(
            "{what} {pid}{how} closed its status pipe during startup"
        )),
    }
}

/// The child closed the status pipe or exited without answering.
fn no_answer(child: &Child) -> Error {
    match child.wait_timeout(Duration::from_secs(5)) {
        Ok(ExitStatus::Signaled(s)) => Error::InvalidState(format!(
            "worker {} was killed by signal {s} during startup",
            child.pid()
        )),
        // Any exit without an answer: it never reached the worker entry.
        _ => Error::InitMissing,
    }
}

/// The answer a spawned child writes: `K`, or a tag + length + message.
pub(crate) fn encode_answer(err: Option<&Error>) -> Vec<u8> {
    match err {
        None => vec![b'K'],
        Some(e) => {
            let tag = if matches!(e, Error::BuildMismatch(_)) {
                b'B'
            } else {
                b'X'
            };
            let text = match e {
                Error::BuildMismatch(m) => m.clone(),
                other => other.to_string(),
            };
            // Short enough for one atomic pipe write.
            let mut cut = text.len().min(2000);
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            let text = &text.as_bytes()[..cut];
            let mut v = Vec::with_capacity(5 + text.len());
            v.push(tag);
            v.extend_from_slice(&(text.len() as u32).to_le_bytes());
            v.extend_from_slice(text);
            v
        }
    }
}

/// [`Error::ForkUnsafe`] if this process has several threads, unless `force`.
pub(super) fn check_fork_allowed(force: bool) -> Result<()> {
    let threads = sys::thread_count().map_err(|e| Error::io("reading /proc/self/status", e))?;
    if threads > 1 && !force {
        return Err(Error::ForkUnsafe { threads });
    }
    Ok(())
}

fn fork_child(entry: Entry, payload: Vec<u8>, opts: &ChildOptions) -> Result<Child> {
    check_fork_allowed(opts.force_fork)?;
    // Make sure the pipe exists before the fork, so the child can watch it.
    liveness::read_end_for_children()?;
    let state = worker::state_for_child(opts);
    let answer = if opts.announce {
        Some(sys::pipe().map_err(|e| Error::io("creating the status pipe", e))?)
    } else {
        None
    };
    let _ = io::stdout().flush();
    let _ = io::stderr().flush();
    // SAFETY: the child branch below only runs `worker::run_forked`, which takes
    // no lock another thread could hold unless fork was forced (the caller's
    // explicit choice, documented on `force_fork`), and it leaves with `_exit`.
    match unsafe { sys::fork() }.map_err(|e| Error::io("fork", e))? {
        sys::Forked::Child => {
            let write_end = answer.map(|(r, w)| {
                drop(r);
                w
            });
            worker::run_forked(entry, &payload, state, write_end)
        }
        sys::Forked::Parent(pid) => {
            let child = Child::direct(pid, opts);
            registry::register(&child);
            if let Some((st_r, st_w)) = answer {
                drop(st_w);
                let deadline = Instant::now() + opts.handshake_timeout;
                if let Err(e) = await_answer(&child, st_r, deadline, forked_silence) {
                    child.discard();
                    return Err(e);
                }
            }
            Ok(child)
        }
    }
}
