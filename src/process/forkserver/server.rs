//! The fork server's loop: one thread, one `poll` over the control socket, the
//! parent's liveness pipe and a pidfd per child; no other thread is ever
//! started in it, so every `fork` it makes is a fork of a single-threaded
//! process.
//!
//! Each iteration:
//! 1. the parent's liveness pipe at end of file → `_exit(EXIT_PARENT_DIED)`
//!    (the children then see the server's own pipe close and exit too);
//! 2. reap every exited child (`waitpid(-1, WNOHANG)`) and queue `Exited`;
//! 3. read requests without blocking; fork one child per request, open its
//!    pidfd before anything can reap it, queue `Forked` (with a copy of the
//!    pidfd) or `Failed`; end of file on the socket → `_exit(0)`;
//! 4. send queued replies without blocking (the rest waits for `POLLOUT`), so a
//!    parent that reads late never blocks the server.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, OwnedFd};

use super::wire::{self, Received, Reply, Request, MAX_MESSAGE};
use crate::process::liveness::{self, EXIT_PARENT_DIED};
use crate::process::spawn::EXIT_BOOT_FAILED;
use crate::process::worker;
use crate::sys::proc::{self as sys, PollFd};

/// A child of the server, not yet reaped.
#[derive(Debug)]
struct Kid {
    pid: u32,
    id: u64,
    pidfd: OwnedFd,
}

#[derive(Debug)]
struct Server {
    ctl: OwnedFd,
    parent_live: Option<OwnedFd>,
    kids: Vec<Kid>,
    outbox: VecDeque<(Reply, Option<OwnedFd>)>,
}

fn die(what: &str, e: impl std::fmt::Display) -> ! {
    eprintln!("shmproc fork server {}: {what}: {e}", std::process::id());
    sys::exit_now(EXIT_BOOT_FAILED)
}

/// Boot function of the spawned (global) server: takes the control socket and
/// the parent's liveness pipe that `init()` kept for it, and serves.
pub(crate) fn server_main(_args: &[u8]) -> i32 {
    match worker::take_server_fds() {
        Some((ctl, live)) => serve(ctl, Some(live)),
        None => {
            eprintln!("shmproc: the fork server entry ran in a process not started as one");
            EXIT_BOOT_FAILED
        }
    }
}

/// Runs the server until the parent closes the socket or dies. Never returns.
pub(super) fn serve(ctl: OwnedFd, parent_live: Option<OwnedFd>) -> ! {
    sys::default_sigchld();
    if let Err(e) = liveness::create_unlocked() {
        die("creating its liveness pipe", e);
    }
    if let Err(e) = sys::set_nonblocking(ctl.as_fd(), true) {
        die("O_NONBLOCK on the control socket", e);
    }
    let mut s = Server {
        ctl,
        parent_live,
        kids: Vec::new(),
        outbox: VecDeque::new(),
    };
    loop {
        s.wait();
        s.reap();
        while let Some((id, boot, status)) = s.next_request() {
            // SAFETY: this process is single-threaded (see the module docs), so
            // no lock is held by anyone else at fork time; the child branch
            // drops the server's state and runs `run_served`, which leaves
            // with `_exit`.
            match unsafe { sys::fork() } {
                Ok(sys::Forked::Child) => {
                    // The control socket, the parent's liveness pipe, the
                    // siblings' pidfds and queued replies are the server's.
                    drop(s);
                    worker::run_served(boot, status)
                }
                Ok(sys::Forked::Parent(pid)) => s.forked(id, pid),
                Err(e) => s.failed(id, &e, "fork"),
            }
            // `boot` and `status` are the child's now: closed here.
        }
        s.flush();
    }
}

impl Server {
    /// Blocks until something happened; leaves if the parent died.
    fn wait(&self) {
        let mut fds = Vec::with_capacity(3 + self.kids.len());
        fds.push(PollFd::readable(self.ctl.as_fd()));
        if !self.outbox.is_empty() {
            fds.push(PollFd::writable(self.ctl.as_fd()));
        }
        let live_at = fds.len();
        if let Some(l) = &self.parent_live {
            fds.push(PollFd::readable(l.as_fd()));
        }
        fds.extend(self.kids.iter().map(|k| PollFd::readable(k.pidfd.as_fd())));
        if let Err(e) = sys::poll(&mut fds, None) {
            die("poll", e);
        }
        if self.parent_live.is_some() && fds[live_at].ready {
            // The parent is gone; our children follow when our pipe closes.
            sys::exit_now(EXIT_PARENT_DIED);
        }
    }

    fn reap(&mut self) {
        loop {
            match sys::wait_any_nohang() {
                Ok(Some((pid, st))) => {
                    if let Some(i) = self.kids.iter().position(|k| k.pid == pid) {
                        let k = self.kids.swap_remove(i);
                        let status = wire::WireStatus::from(st);
                        self.outbox
                            .push_back((Reply::Exited { id: k.id, status }, None));
                    }
                }
                Ok(None) => return,
                Err(e) => die("waitpid", e),
            }
        }
    }

    /// The next fork request, if one is waiting.
    fn next_request(&mut self) -> Option<(u64, OwnedFd, OwnedFd)> {
        loop {
            match wire::recv::<Request>(self.ctl.as_fd(), true) {
                Ok(Received::Message(Request::Fork { id }, fds)) => {
                    let mut it = fds.into_iter();
                    match (it.next(), it.next(), it.next()) {
                        (Some(boot), Some(status), None) => return Some((id, boot, status)),
                        _ => {
                            let e = io::Error::from_raw_os_error(sys::EINVAL);
                            self.failed(id, &e, "a fork request without its two descriptors");
                        }
                    }
                }
                Ok(Received::Empty) => return None,
                // The parent closed its end: it is done with us.
                Ok(Received::Eof) => sys::exit_now(0),
                Err(e) => die("reading a request", e),
            }
        }
    }

    fn forked(&mut self, id: u64, pid: u32) {
        // Before any waitpid: the pid cannot have been reused, so the pidfd
        // names this very child.
        let pidfd = sys::pidfd_open(pid).and_then(|fd| Ok((fd.try_clone()?, fd)));
        match pidfd {
            Ok((copy, mine)) => {
                self.kids.push(Kid {
                    pid,
                    id,
                    pidfd: mine,
                });
                self.outbox
                    .push_back((Reply::Forked { id, pid }, Some(copy)));
            }
            Err(e) => {
                // Our own unreaped child: its pid is still its own.
                let _ = sys::kill(pid, sys::SIGKILL);
                let _ = sys::waitpid(pid, false);
                self.failed(id, &e, "pidfd_open of the new child (needs Linux 5.3)");
            }
        }
    }

    fn failed(&mut self, id: u64, e: &io::Error, what: &str) {
        let mut what = format!("{what}: {e}");
        let mut cut = what.len().min(MAX_MESSAGE / 2);
        while !what.is_char_boundary(cut) {
            cut -= 1;
        }
        what.truncate(cut);
        let errno = e.raw_os_error().unwrap_or(sys::EIO);
        self.outbox
            .push_back((Reply::Failed { id, errno, what }, None));
    }

    /// Sends what it can without blocking.
    fn flush(&mut self) {
        while let Some((msg, fd)) = self.outbox.front() {
            let fds: Vec<_> = fd.iter().map(|f| f.as_fd()).collect();
            match wire::send(self.ctl.as_fd(), msg, &fds, true) {
                Ok(()) => {
                    self.outbox.pop_front();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // EPIPE and the like: the parent is gone.
                Err(_) => sys::exit_now(0),
            }
        }
    }
}
