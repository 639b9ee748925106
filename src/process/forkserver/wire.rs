//! The messages between a parent and its fork server: one postcard value per
//! `SOCK_SEQPACKET` record, with descriptors attached as `SCM_RIGHTS`.
//!
//! | direction | message | descriptors |
//! |---|---|---|
//! | parent → server | [`Request::Fork`] | the child's boot socket (read end), its status pipe (write end) |
//! | server → parent | [`Reply::Forked`] | a pidfd of the new child |
//! | server → parent | [`Reply::Failed`] | none |
//! | server → parent | [`Reply::Exited`] | none |
//!
//! The parent closing (or shutting down) its end tells the server to exit.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::super::spawn::{EntryWire, ExitStatus};
use super::super::worker::ChildState;
use crate::sys::proc as sys;

/// Largest record either side sends (a `Failed` text is cut to fit).
pub(super) const MAX_MESSAGE: usize = 1024;

/// Parent → server.
#[derive(Debug, Serialize, Deserialize)]
pub(super) enum Request {
    /// Fork a child. Descriptors: `[boot read end, status write end]`.
    Fork {
        /// The parent's number for this child, echoed in every reply about it.
        id: u64,
    },
}

/// Server → parent.
#[derive(Debug, Serialize, Deserialize)]
pub(super) enum Reply {
    /// The child runs. Descriptor: a pidfd of it, opened before it could be
    /// reaped, so it names this very process.
    Forked {
        /// As in the request.
        id: u64,
        /// The child's pid.
        pid: u32,
    },
    /// The server could not fork (or open the child's pidfd).
    Failed {
        /// As in the request.
        id: u64,
        /// The errno.
        errno: i32,
        /// What failed.
        what: String,
    },
    /// The child was reaped.
    Exited {
        /// As in the request.
        id: u64,
        /// How it ended.
        status: WireStatus,
    },
}

/// [`ExitStatus`] on the wire.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(super) enum WireStatus {
    /// Exit code.
    Exited(i32),
    /// Killed by this signal.
    Signaled(i32),
}

impl From<sys::WaitStatus> for WireStatus {
    fn from(w: sys::WaitStatus) -> Self {
        match w {
            sys::WaitStatus::Exited(c) => WireStatus::Exited(c),
            sys::WaitStatus::Signaled(s) => WireStatus::Signaled(s),
        }
    }
}

impl From<WireStatus> for ExitStatus {
    fn from(w: WireStatus) -> Self {
        match w {
            WireStatus::Exited(c) => ExitStatus::Exited(c),
            WireStatus::Signaled(s) => ExitStatus::Signaled(s),
        }
    }
}

/// What a server-forked child reads from its boot socket (`u64` LE length +
/// postcard): the same as a spawned child's boot message minus the build
/// identity (a fork runs its parent's image).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ServedBoot {
    pub(crate) entry: EntryWire,
    pub(crate) announce: bool,
    pub(crate) state: ChildState,
    pub(crate) args: Vec<u8>,
}

/// Sends one message with `fds` attached.
pub(super) fn send<T: Serialize>(
    sock: BorrowedFd<'_>,
    msg: &T,
    fds: &[BorrowedFd<'_>],
    nonblocking: bool,
) -> io::Result<()> {
    let bytes = postcard::to_stdvec(msg)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    let n = sys::send_with_fds(sock, &bytes, fds, nonblocking)?;
    if n != bytes.len() {
        // SOCK_SEQPACKET sends a record whole or not at all.
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "short write on a SOCK_SEQPACKET socket",
        ));
    }
    Ok(())
}

/// What [`recv`] got.
#[derive(Debug)]
pub(super) enum Received<T> {
    /// A message and its descriptors.
    Message(T, Vec<OwnedFd>),
    /// The peer closed its end.
    Eof,
    /// Nothing to read now (non-blocking only).
    Empty,
}

/// Receives one message.
pub(super) fn recv<T: DeserializeOwned>(
    sock: BorrowedFd<'_>,
    nonblocking: bool,
) -> io::Result<Received<T>> {
    let mut buf = [0u8; MAX_MESSAGE];
    loop {
        return match sys::recv_with_fds(sock, &mut buf, nonblocking) {
            Ok((0, _)) => Ok(Received::Eof),
            Ok((n, fds)) => {
                let msg = postcard::from_bytes(&buf[..n])
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                Ok(Received::Message(msg, fds))
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Received::Empty),
            Err(e) => Err(e),
        };
    }
}
