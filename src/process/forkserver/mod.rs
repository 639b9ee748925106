//! The fork server: a single-threaded process that forks children on request,
//! so that a multithreaded parent gets fork-started children without forking
//! itself (Python's `forkserver`).
//!
//! Two ways to get one:
//! - the process-wide server behind [`StartMethod::ForkServer`](super::StartMethod),
//!   started lazily by the spawn method (a re-exec through `init()`), so
//!   its children inherit the *server's* fresh memory — statics as at the start
//!   of `main` — and nothing of the parent but what travels in their arguments;
//!   if it dies, the next start makes a new one;
//! - [`ForkServer::fork_from_here`], forked directly from the calling process
//!   while it is still single-threaded: its children inherit the parent's memory
//!   *as it was at that moment*. It cannot be restarted later (the parent is
//!   multithreaded by then): once it is gone, its `start_child` fails.
//!
//! # Protocol
//!
//! One `SOCK_SEQPACKET` socket pair (close-on-exec) per server; messages in
//! `wire`. For each child the parent makes a boot socket and a status pipe,
//! sends their child-side ends to the server with `SCM_RIGHTS` in a `Fork`
//! request, and gets back `Forked { pid }` with a pidfd the server opened
//! before it could reap the child (so it names that very process). The parent
//! then writes the boot message (entry, arguments, `ChildState`) into the boot
//! socket and reads the child's answer (`K`, `X`...) from the status pipe with
//! the same code as for a spawned child: the child writes straight to the
//! parent. When the server reaps a child it sends `Exited { status }`.
//!
//! # The parent side
//!
//! One [`Link`] per server, shared by the server's [`Child`]ren and safe to use
//! from several threads: messages are read only under its mutex; a thread that
//! must block polls the socket as the single *reader* while others wait on a
//! condition variable, and every read wakes them all, so a status read on
//! behalf of one child is never lost for another. A status stays in the link
//! until the child's last handle is dropped, so a `wait` on one clone never
//! misses a status that a `try_wait` on another clone (the registry's, say)
//! read first. Signals go through the
//! child's pidfd (`pidfd_send_signal`), so they never reach a reused pid, and
//! stop once the status is known.
//!
//! # When the server dies
//!
//! Its children die with it (they watch the server's liveness pipe, as any
//! child watches its parent's), but their exit statuses die with it too: a
//! child whose status never came is reported as killed by SIGKILL
//! (`ExitStatus::Signaled(9)`, exit code -9) once its pidfd shows it has exited.

mod server;
mod wire;

use std::collections::{HashMap, HashSet};
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub(crate) use server::server_main;
pub(crate) use wire::ServedBoot;

use super::spawn::{self, Child, ChildOptions, Entry, ExitStatus};
use super::{liveness, registry, worker, StartMethod};
use crate::sys::proc::{self as sys, PollFd};
use crate::{Error, Result};
use wire::{Received, Reply, Request};

/// A fork server and the parent's connection to it. Cheap to clone (clones
/// share the server); usable from several threads at once.
///
/// # Examples
///
/// Parent (a pool, say): fork the server while single-threaded, start workers
/// through it later from any thread.
///
/// ```no_run
/// use shmproc::process::spawn::{ChildOptions, Entry, ForkServer};
///
/// fn worker(payload: &[u8]) -> i32 {
///     i32::from(payload[0])
/// }
///
/// fn main() -> shmproc::Result<()> {
///     let server = ForkServer::fork_from_here(false)?; // still single-threaded
///     let t = std::thread::spawn(move || -> shmproc::Result<i32> {
///         let c = server.start_child(Entry::new(worker), vec![7], &ChildOptions::new())?;
///         Ok(c.wait()?.code())
///     });
///     assert_eq!(t.join().expect("thread")?, 7);
///     Ok(())
/// }
/// ```
#[derive(Debug, Clone)]
pub struct ForkServer {
    link: Arc<Link>,
}

/// How a server came to be (for error messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// The process-wide server, spawned; restarted on demand.
    Global,
    /// `fork_from_here`; cannot be restarted.
    Forked,
}

/// The parent's end of one server. See the module docs.
#[derive(Debug)]
pub(crate) struct Link {
    sock: OwnedFd,
    /// The server process (our direct child, not in the registry).
    server: Child,
    origin: Origin,
    /// The process that made the server; a forked copy of a `Link` is inert.
    owner: u32,
    next_id: AtomicU64,
    state: Mutex<LinkState>,
    wake: Condvar,
}

#[derive(Debug, Default)]
struct LinkState {
    /// A thread is polling the socket (and will read it).
    reading: bool,
    /// Why the server is gone, once it is.
    dead: Option<String>,
    /// Fork replies not yet taken by their requester: pid + pidfd, or the error.
    forked: HashMap<u64, std::result::Result<(u32, OwnedFd), Error>>,
    /// Exit statuses, kept until the child's last handle is dropped
    /// ([`Link::forget`]): a thread waiting for one must still find it after
    /// another thread's `try_wait` on a clone of the same child read it.
    exited: HashMap<u64, ExitStatus>,
    /// Requests whose requester gave up: kill the child when its reply comes.
    abandoned: HashSet<u64>,
    /// `close` ran.
    closed: bool,
}

/// What [`Link::wait_for`] ended with.
enum Waited<T> {
    Got(T),
    Dead(String),
    TimedOut,
}

/// Why a start failed: the server was gone before the child existed (the
/// global server may then be replaced and the start retried), or anything else.
#[derive(Debug)]
enum StartError {
    ServerGone(Error),
    Other(Error),
}

impl From<StartError> for Error {
    fn from(e: StartError) -> Self {
        match e {
            StartError::ServerGone(e) | StartError::Other(e) => e,
        }
    }
}

impl From<Error> for StartError {
    fn from(e: Error) -> Self {
        StartError::Other(e)
    }
}

fn left(deadline: Option<Instant>) -> Option<Duration> {
    deadline.map(|d| d.saturating_duration_since(Instant::now()))
}

impl Link {
    fn new(sock: OwnedFd, server: Child, origin: Origin) -> Self {
        Link {
            sock,
            server,
            origin,
            owner: std::process::id(),
            next_id: AtomicU64::new(1),
            state: Mutex::new(LinkState::default()),
            wake: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, LinkState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads every message waiting on the socket (never blocks). Called with
    /// the state locked, by the reader or when there is none.
    fn drain(&self, st: &mut LinkState) {
        while st.dead.is_none() {
            match wire::recv::<Reply>(self.sock.as_fd(), true) {
                Ok(Received::Message(reply, fds)) => Self::record(st, reply, fds),
                Ok(Received::Empty) => break,
                Ok(Received::Eof) => self.mark_dead(st, "it closed its control socket"),
                Err(e) => self.mark_dead(st, &format!("reading from it failed: {e}")),
            }
        }
        if st.dead.is_none() && matches!(self.server.wait_readable(Some(Duration::ZERO)), Ok(true))
        {
            self.mark_dead(st, "it exited");
        }
    }

    fn record(st: &mut LinkState, reply: Reply, fds: Vec<OwnedFd>) {
        match reply {
            Reply::Forked { id, pid } => {
                let pidfd = fds.into_iter().next();
                if st.abandoned.contains(&id) {
                    if let Some(fd) = &pidfd {
                        let _ = sys::pidfd_send_signal(fd.as_fd(), sys::SIGKILL);
                    }
                    return;
                }
                let r = pidfd.map(|fd| (pid, fd)).ok_or_else(|| {
                    Error::InvalidState(format!(
                        "the fork server sent no pidfd for its child {pid}"
                    ))
                });
                st.forked.insert(id, r);
            }
            Reply::Failed { id, errno, what } => {
                let e = Error::io(
                    format!("the fork server could not start a child: {what}"),
                    io::Error::from_raw_os_error(errno),
                );
                st.forked.insert(id, Err(e));
            }
            Reply::Exited { id, status } => {
                if !st.abandoned.remove(&id) {
                    st.exited.insert(id, status.into());
                }
            }
        }
    }

    fn mark_dead(&self, st: &mut LinkState, why: &str) {
        if st.dead.is_some() {
            return;
        }
        // The socket closes as the server exits; give the exit a moment to
        // complete so the message can say how it ended (and it is reaped).
        let how = match self.server.wait_timeout(Duration::from_millis(200)) {
            Ok(ExitStatus::Signaled(s)) => format!("{why}: killed by signal {s}"),
            Ok(ExitStatus::Exited(c)) => format!("{why}: exited with code {c}"),
            _ => why.to_string(),
        };
        st.dead = Some(how);
        self.wake.notify_all();
    }

    /// Waits until `take` finds what it wants in the state, the server is
    /// gone, or the deadline (None: never) passes.
    fn wait_for<T>(
        &self,
        deadline: Option<Instant>,
        mut take: impl FnMut(&mut LinkState) -> Option<T>,
    ) -> Result<Waited<T>> {
        let mut st = self.lock();
        loop {
            if !st.reading {
                self.drain(&mut st);
            }
            if let Some(v) = take(&mut st) {
                return Ok(Waited::Got(v));
            }
            if let Some(why) = &st.dead {
                return Ok(Waited::Dead(why.clone()));
            }
            let left = left(deadline);
            if left == Some(Duration::ZERO) {
                return Ok(Waited::TimedOut);
            }
            if st.reading {
                st = match left {
                    None => self.wake.wait(st).unwrap_or_else(|p| p.into_inner()),
                    Some(d) => {
                        self.wake
                            .wait_timeout(st, d)
                            .unwrap_or_else(|p| p.into_inner())
                            .0
                    }
                };
                continue;
            }
            // Become the reader: poll without the lock, read with it. Another
            // thread's `try_exit` does not read meanwhile (it sees `reading`),
            // so whatever arrives stays in the socket and wakes this poll.
            st.reading = true;
            drop(st);
            let mut fds = [
                PollFd::readable(self.sock.as_fd()),
                PollFd::readable(self.server.pidfd().unwrap_or(self.sock.as_fd())),
            ];
            let r = sys::poll(&mut fds, left);
            st = self.lock();
            st.reading = false;
            self.drain(&mut st);
            self.wake.notify_all();
            r.map_err(|e| Error::io("poll (fork server socket)", e))?;
        }
    }

    /// Sends a fork request carrying the child's two descriptors.
    fn send_fork(
        &self,
        id: u64,
        boot: BorrowedFd<'_>,
        status: BorrowedFd<'_>,
        deadline: Instant,
    ) -> std::result::Result<(), StartError> {
        let req = Request::Fork { id };
        loop {
            match wire::send(self.sock.as_fd(), &req, &[boot, status], true) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(StartError::Other(Error::Timeout));
                    }
                    let mut fds = [PollFd::writable(self.sock.as_fd())];
                    sys::poll(&mut fds, Some(left))
                        .map_err(|e| Error::io("poll (fork server socket)", e))?;
                }
                Err(e) => {
                    let mut st = self.lock();
                    self.mark_dead(&mut st, &format!("sending it a request failed: {e}"));
                    let why = st.dead.clone().unwrap_or_default();
                    return Err(StartError::ServerGone(self.gone(&why)));
                }
            }
        }
    }

    /// Why the server is gone, if it is (reads waiting messages first).
    fn dead_now(&self) -> Option<String> {
        let mut st = self.lock();
        if !st.reading {
            self.drain(&mut st);
        }
        st.dead.clone()
    }

    fn gone(&self, why: &str) -> Error {
        let pid = self.server.pid();
        Error::InvalidState(match self.origin {
            Origin::Global => format!(
                "the fork server (pid {pid}) is gone ({why}); the next start makes a new one"
            ),
            Origin::Forked => format!(
                "the fork server (pid {pid}) made by fork_from_here is gone ({why}); it \
                 cannot be restarted from this process, which has several threads by \
                 now: start a new pool, or use StartMethod::ForkServer, whose global \
                 server restarts itself"
            ),
        })
    }

    /// The status of child `id` if known, without blocking. A child of a dead
    /// server whose status never came is reported killed by SIGKILL once its
    /// pidfd shows it has exited.
    pub(crate) fn try_exit(
        &self,
        id: u64,
        pidfd: Option<BorrowedFd<'_>>,
    ) -> Result<Option<ExitStatus>> {
        let mut st = self.lock();
        if !st.reading {
            self.drain(&mut st);
        }
        if let Some(&s) = st.exited.get(&id) {
            return Ok(Some(s));
        }
        if st.dead.is_none() {
            return Ok(None);
        }
        drop(st);
        let gone = match pidfd {
            Some(fd) => {
                let mut fds = [PollFd::readable(fd)];
                sys::poll(&mut fds, Some(Duration::ZERO))
                    .map_err(|e| Error::io("poll(pidfd)", e))?
                    > 0
            }
            None => true,
        };
        Ok(gone.then_some(ExitStatus::Signaled(sys::SIGKILL)))
    }

    /// Blocks until [`try_exit`](Link::try_exit) of `id` would give a status,
    /// or the deadline passes. `true` if it would.
    pub(crate) fn wait_exit(
        &self,
        id: u64,
        pidfd: Option<BorrowedFd<'_>>,
        deadline: Option<Instant>,
    ) -> Result<bool> {
        match self.wait_for(deadline, |st| st.exited.contains_key(&id).then_some(()))? {
            Waited::Got(()) => Ok(true),
            Waited::TimedOut => Ok(false),
            Waited::Dead(_) => match pidfd {
                Some(fd) => {
                    let mut fds = [PollFd::readable(fd)];
                    Ok(sys::poll(&mut fds, left(deadline))
                        .map_err(|e| Error::io("poll(pidfd)", e))?
                        > 0)
                }
                None => Ok(true),
            },
        }
    }

    /// Drops what the link keeps about child `id` (its last handle is gone).
    pub(crate) fn forget(&self, id: u64) {
        // In a process that inherited the link by fork, the lock may have been
        // held by another thread at fork time: never wait for it there.
        let st = if self.owner == std::process::id() {
            Some(self.lock())
        } else {
            self.state.try_lock().ok()
        };
        if let Some(mut st) = st {
            st.exited.remove(&id);
        }
    }

    /// Tells the server to exit (end of file on its socket) and reaps it,
    /// SIGKILLing it if it has not gone within a second. Idempotent; a no-op in
    /// a process that inherited the link by fork.
    fn close(&self) {
        if self.owner != std::process::id() {
            return;
        }
        {
            let mut st = self.lock();
            if st.closed {
                return;
            }
            st.closed = true;
            let _ = sys::shutdown_socket(self.sock.as_fd());
            if st.dead.is_none() {
                st.dead = Some("this process stopped it".into());
            }
            self.wake.notify_all();
        }
        if matches!(
            self.server.wait_timeout(Duration::from_secs(1)),
            Err(Error::Timeout)
        ) {
            let _ = self.server.kill();
        }
        let _ = self.server.wait();
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.close();
    }
}

/// The options of a server process: named, daemon, not numbered as a `Process`.
fn server_options() -> ChildOptions {
    ChildOptions {
        method: StartMethod::Spawn,
        force_fork: false,
        name: "ForkServer".into(),
        daemon: true,
        ident: Vec::new(),
        handshake_timeout: Duration::from_secs(60),
        announce: false,
    }
}

/// The boot message of a served child: `u64` LE length + postcard.
fn encode_boot(entry: Entry, payload: Vec<u8>, opts: &ChildOptions) -> Result<Vec<u8>> {
    let boot = ServedBoot {
        entry: entry.into(),
        announce: opts.announce,
        state: worker::state_for_child(opts),
        args: payload,
    };
    spawn::length_prefixed(&boot)
}

/// A served child exited (or closed its status pipe) before answering.
fn served_silence(child: &Child) -> Error {
    spawn::startup_silence(child, "worker", " (forked by the fork server)")
}

impl ForkServer {
    /// Forks a fork server from this process, now. Children it starts later
    /// inherit this process's memory *as it is at this moment* (like the fork
    /// start method at this moment), whatever threads this process has by then.
    /// The server lives until the last clone of this handle and of the
    /// [`Child`]ren it started is dropped, or until this process dies.
    ///
    /// # Errors
    /// - [`Error::ForkUnsafe`]: this process has several threads and
    ///   `force_fork` is false (see
    ///   [`ProcessBuilder::force_fork`](crate::process::ProcessBuilder::force_fork));
    /// - [`Error::Io`]: the socket pair, the liveness pipe or `fork` failed.
    pub fn fork_from_here(force_fork: bool) -> Result<ForkServer> {
        worker::check_may_start_children();
        spawn::check_fork_allowed(force_fork)?;
        // The server watches this process's liveness pipe: make it exist.
        liveness::read_end_for_children()?;
        let (mine, theirs) = sys::seqpacket_pair()
            .map_err(|e| Error::io("creating the fork server's socket pair", e))?;
        let _ = io::stdout().flush();
        let _ = io::stderr().flush();
        // SAFETY: the child branch only runs `worker::become_fork_server`, which
        // takes no lock another thread could hold, and the server loop, which
        // takes none unless fork was forced (the caller's explicit choice, as
        // for `StartMethod::Fork`); it leaves with `_exit`.
        match unsafe { sys::fork() }.map_err(|e| Error::io("fork (fork server)", e))? {
            sys::Forked::Child => {
                drop(mine);
                let live = worker::become_fork_server();
                server::serve(theirs, live)
            }
            sys::Forked::Parent(pid) => {
                drop(theirs);
                let server = Child::direct(pid, &server_options());
                Ok(ForkServer {
                    link: Arc::new(Link::new(mine, server, Origin::Forked)),
                })
            }
        }
    }

    /// Spawns a server (re-exec through `init()`): the global server.
    fn spawn() -> Result<ForkServer> {
        let (mine, theirs) = sys::seqpacket_pair()
            .map_err(|e| Error::io("creating the fork server's socket pair", e))?;
        let server = spawn::spawn_server(
            Entry::new(server_main),
            &server_options(),
            theirs.as_raw_fd(),
        )?;
        drop(theirs);
        // So that the server is stopped at exit (see `stop_global`).
        registry::ensure_exit_handler();
        Ok(ForkServer {
            link: Arc::new(Link::new(mine, server, Origin::Global)),
        })
    }

    /// The server's pid.
    pub fn pid(&self) -> u32 {
        self.link.server.pid()
    }

    /// Whether the server is still there.
    pub fn is_alive(&self) -> bool {
        self.link.dead_now().is_none()
    }

    /// Starts a child forked by this server that runs `entry(&payload)`, as
    /// [`start_child`](spawn::start_child) does; `opts.method` and
    /// `opts.force_fork` are ignored. Returns once the child answered (with
    /// `opts.announce`: once its entry announced it is ready).
    ///
    /// # Errors
    /// - [`Error::InvalidState`]: the server is gone (the message says why), or
    ///   the child ended before it was ready;
    /// - [`Error::Timeout`]: no answer within `opts.handshake_timeout`;
    /// - [`Error::Io`], [`Error::Codec`]: sockets, pipes, fork in the server, encoding.
    pub fn start_child(
        &self,
        entry: Entry,
        payload: Vec<u8>,
        opts: &ChildOptions,
    ) -> Result<Child> {
        worker::check_may_start_children();
        let msg = encode_boot(entry, payload, opts)?;
        Ok(self.start_encoded(&msg, opts)?)
    }

    fn start_encoded(
        &self,
        msg: &[u8],
        opts: &ChildOptions,
    ) -> std::result::Result<Child, StartError> {
        let link = &self.link;
        if link.owner != std::process::id() {
            return Err(StartError::Other(Error::InvalidState(format!(
                "the fork server {} belongs to process {}, not to this one",
                link.server.pid(),
                link.owner
            ))));
        }
        if let Some(why) = link.dead_now() {
            return Err(StartError::ServerGone(link.gone(&why)));
        }
        let deadline = Instant::now() + opts.handshake_timeout;
        // A socket for the boot message (any size; `send(MSG_NOSIGNAL)` cannot
        // raise SIGPIPE), a pipe for the answer, as for a spawned child.
        let (boot_r, boot_w) =
            sys::socketpair().map_err(|e| Error::io("creating the payload socket", e))?;
        let (st_r, st_w) = sys::pipe().map_err(|e| Error::io("creating the status pipe", e))?;
        let id = link.next_id.fetch_add(1, Ordering::Relaxed);
        link.send_fork(id, boot_r.as_fd(), st_w.as_fd(), deadline)?;
        drop(boot_r);
        drop(st_w);
        let (pid, pidfd) = match link.wait_for(Some(deadline), |st| st.forked.remove(&id))? {
            Waited::Got(r) => r?,
            Waited::Dead(why) => return Err(StartError::ServerGone(link.gone(&why))),
            Waited::TimedOut => {
                let mut st = link.lock();
                match st.forked.remove(&id) {
                    Some(Ok((_, fd))) => {
                        let _ = sys::pidfd_send_signal(fd.as_fd(), sys::SIGKILL);
                        st.abandoned.insert(id);
                    }
                    Some(Err(_)) => {}
                    None => {
                        st.abandoned.insert(id);
                    }
                }
                return Err(StartError::Other(Error::Timeout));
            }
        };
        let child = Child::served(pid, pidfd, opts, Arc::clone(link), id);
        registry::register(&child);
        match spawn::handshake(&child, boot_w, st_r, msg, deadline, served_silence) {
            Ok(()) => Ok(child),
            Err(e) => {
                child.discard();
                Err(StartError::Other(e))
            }
        }
    }
}

/// The process-wide server of [`StartMethod::ForkServer`].
static GLOBAL: Mutex<Option<ForkServer>> = Mutex::new(None);
/// The pid of the process that put a server in `GLOBAL` (0: none). Read
/// without the lock, so that a forked child — which may have inherited
/// `GLOBAL` locked by another thread of its parent — never waits for it at
/// exit. Relaxed: it is compared with our own pid only; the server itself is
/// reached under the lock.
static GLOBAL_OWNER: AtomicU32 = AtomicU32::new(0);

fn global() -> Result<ForkServer> {
    let mut g = GLOBAL.lock().unwrap_or_else(|p| p.into_inner());
    let me = std::process::id();
    if let Some(s) = g.as_ref() {
        if s.link.owner == me && s.link.dead_now().is_none() {
            return Ok(s.clone());
        }
    }
    // Gone, or inherited by fork from our parent: make our own.
    *g = None;
    let s = ForkServer::spawn()?;
    *g = Some(s.clone());
    GLOBAL_OWNER.store(me, Ordering::Relaxed);
    Ok(s)
}

/// `start_child` for [`StartMethod::ForkServer`]: through the global server,
/// started on first use and replaced if it died (the start is then retried
/// once on the new server).
pub(crate) fn start_with_global(
    entry: Entry,
    payload: Vec<u8>,
    opts: &ChildOptions,
) -> Result<Child> {
    let msg = encode_boot(entry, payload, opts)?;
    let mut retried = false;
    loop {
        match global()?.start_encoded(&msg, opts) {
            Ok(c) => return Ok(c),
            Err(StartError::ServerGone(_)) if !retried => retried = true,
            Err(e) => return Err(e.into()),
        }
    }
}

/// The global server's pid, if it runs.
pub fn global_server_pid() -> Option<u32> {
    let g = GLOBAL.lock().unwrap_or_else(|p| p.into_inner());
    g.as_ref()
        .filter(|s| s.link.owner == std::process::id())
        .map(ForkServer::pid)
}

/// At exit, after the children were joined: stops the global server.
pub(crate) fn stop_global() {
    if GLOBAL_OWNER.load(Ordering::Relaxed) != std::process::id() {
        // None, or our parent's (inherited by fork): not ours to stop.
        return;
    }
    let s = GLOBAL.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(s) = s {
        s.link.close();
    }
}

/// In a freshly forked child: the parent's global server is not ours. Closes
/// our copy of its socket (the `Link` is inert here: see `close`).
pub(crate) fn after_fork_in_child() {
    // try_lock: another thread of a (forced) fork's parent may have held it.
    if let Ok(mut g) = GLOBAL.try_lock() {
        drop(g.take());
    }
}
