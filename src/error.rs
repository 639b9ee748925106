//! Error types.
//!
//! Setup and build operations return [`Error`], one enum for the whole crate whose
//! variants are distinct so that callers (and tests) can tell each failure apart.
//! OS failures keep their `io::Error` (and so the errno) as `source()`.

use std::io;

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in shmproc.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system call failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error, with its errno.
        #[source]
        source: io::Error,
    },

    // ---- segments -------------------------------------------------------------
    /// A segment name that is empty, too long, or contains `/` or NUL.
    #[error("invalid segment name {0:?}: it must be 1-200 characters without '/' or NUL")]
    InvalidName(String),
    /// No segment with this name exists.
    #[error("no shared segment named {0:?}")]
    SegmentNotFound(String),
    /// A segment with this name exists already.
    #[error("a shared segment named {0:?} already exists")]
    SegmentExists(String),
    /// The shared-memory file system cannot hold the requested size.
    #[error("not enough space in shared memory for {requested} bytes ({source})")]
    NoSpace {
        /// Bytes asked for.
        requested: u64,
        /// The OS error (ENOSPC, ENOMEM, EFBIG).
        #[source]
        source: io::Error,
    },
    /// The object is not a shmproc segment (the magic number is wrong), or it is
    /// shorter than a header.
    #[error("{name:?} is not a shmproc segment (bad magic or too short)")]
    BadMagic {
        /// Segment name or path.
        name: String,
    },
    /// The segment was made by an incompatible version of shmproc.
    #[error("segment {name:?} has layout version {found}, this build reads version {expected}")]
    VersionMismatch {
        /// Segment name.
        name: String,
        /// Version found in the header.
        found: u32,
        /// Version this build writes.
        expected: u32,
    },
    /// The segment holds something else than what was asked for.
    #[error("segment {name:?} is of kind {found}, expected kind {expected}")]
    KindMismatch {
        /// Segment name.
        name: String,
        /// Kind tag found.
        found: u32,
        /// Kind tag wanted.
        expected: u32,
    },
    /// The header's size disagrees with the size of the object.
    #[error("segment {name:?} header says {header} bytes but the object has {actual}")]
    SizeMismatch {
        /// Segment name.
        name: String,
        /// Size in the header.
        header: u64,
        /// Size of the object on disk.
        actual: u64,
    },
    /// A handle names a type other than the one it is attached as, or a
    /// message was sent as another type than the one received.
    #[error("type mismatch: expected {expected}, found {found}")]
    TypeMismatch {
        /// What the caller asked for.
        expected: String,
        /// What the handle describes.
        found: String,
    },
    /// A handle or offset points outside its segment, or is misaligned.
    #[error("out of bounds: {what} (offset {offset}, {len} bytes) in a segment of {size} bytes")]
    OutOfBounds {
        /// What was being located.
        what: &'static str,
        /// Byte offset.
        offset: u64,
        /// Byte length.
        len: u64,
        /// Segment size.
        size: u64,
    },
    /// The segment's allocation area is used up.
    #[error("segment {name:?} has no room for {requested} more bytes")]
    SegmentFull {
        /// Segment name.
        name: String,
        /// Bytes asked for.
        requested: u64,
    },
    /// Data read from shared memory failed a consistency check.
    #[error("corrupt shared state: {0}")]
    Corrupt(String),

    // ---- synchronisation ------------------------------------------------------
    /// A timed wait ran out.
    #[error("timed out")]
    Timeout,
    /// A primitive was marked broken (a participant died) and waiters were woken.
    #[error("the primitive is broken: a participant died or it was broken on purpose")]
    Broken,
    /// A bounded semaphore was released more times than it was acquired.
    #[error("semaphore released too many times (bound {bound})")]
    OverRelease {
        /// The semaphore's bound.
        bound: u32,
    },
    /// The previous holder of a mutex died while holding it (converted from
    /// [`LockError::OwnerDied`](crate::sync::LockError), whose guard is dropped).
    #[error("the previous holder of the mutex died while holding it")]
    OwnerDied,
    /// A mutex cannot be used any more: its owner died and the state was never
    /// made consistent.
    #[error(
        "mutex is not recoverable: a previous owner died and its state was not made consistent"
    )]
    NotRecoverable,

    // ---- ipc ------------------------------------------------------------------
    /// The queue or connection was closed.
    #[error("closed")]
    Closed,
    /// A non-blocking put found the queue full.
    #[error("queue is full")]
    Full,
    /// A non-blocking get found the queue empty.
    #[error("queue is empty")]
    Empty,
    /// The other end of a pipe is closed or its process died, and nothing is left
    /// to read (Python's `EOFError`).
    #[error("end of file: the other end is closed")]
    Eof,
    /// A send found the other end of a pipe closed by every process that held
    /// it, or held only by dead processes (Python's `BrokenPipeError`).
    #[error("broken pipe: the other end is closed or its process died")]
    BrokenPipe,
    /// `task_done` called more times than items were put.
    #[error("task_done() called too many times")]
    TooManyTaskDone,
    /// A value could not be encoded or decoded.
    #[error("codec: {0}")]
    Codec(String),

    // ---- processes ------------------------------------------------------------
    /// A spawned child ended without answering the start handshake (its
    /// program has no shmproc worker entry).
    #[error(
        "the child ended before it became a worker (its program has no shmproc worker entry; \
         is shmproc linked into the program that was re-executed?)"
    )]
    InitMissing,
    /// Fork was asked for in a process that has more than one thread.
    #[error(
        "fork refused: the process has {threads} threads; use the spawn start method or force fork"
    )]
    ForkUnsafe {
        /// Threads counted in /proc/self/status.
        threads: usize,
    },
    /// The child runs a different binary than the parent, so function identities
    /// cannot be trusted.
    #[error("build identity mismatch between parent and child: {0}")]
    BuildMismatch(String),
    /// An operation that is not valid in the current state (e.g. starting a
    /// process twice, joining a pool that was not closed).
    #[error("{0}")]
    InvalidState(String),
    /// A worker died while it held a task (after the task's retries, see
    /// [`PoolBuilder::retries`](crate::pool::PoolBuilder::retries)).
    #[error("worker {pid} {} while running a task", death(*signal, *code))]
    WorkerLost {
        /// Pid of the dead worker.
        pid: u32,
        /// The signal that killed it, if any.
        signal: Option<i32>,
        /// Its exit code, if it exited (e.g. `std::process::exit(3)` in a task).
        code: Option<i32>,
    },
    /// A task panicked: the message, where, and for maps which item.
    #[error("task panicked: {0}")]
    TaskPanicked(TaskPanic),
    /// The task was cancelled ([`AsyncResult::cancel`](crate::pool::AsyncResult::cancel),
    /// or an earlier item of the same map failed) before it finished.
    #[error("the task was cancelled: {0}")]
    Cancelled(String),
    /// The task ran longer than its time limit; its worker was killed and
    /// replaced, and the task is not retried.
    #[error("the task ran over its time limit of {limit:?} (worker {pid} was killed)")]
    TimeLimit {
        /// The limit it ran over.
        limit: std::time::Duration,
        /// The worker that ran it.
        pid: u32,
    },
    /// The pool cannot run tasks: its workers keep failing to start (for
    /// example the initializer panics). Every pending and later task fails
    /// with this error.
    #[error("the pool is broken: {0}")]
    PoolBroken(String),
    /// No kernel with this name is registered.
    #[error("unknown kernel {0:?}")]
    UnknownKernel(String),
    /// An argument was out of range or malformed.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

/// How a worker ended, for messages.
fn death(signal: Option<i32>, code: Option<i32>) -> String {
    match (signal, code) {
        (Some(s), _) => format!("was killed by signal {s}"),
        (None, Some(c)) => format!("exited with code {c}"),
        (None, None) => "died".to_string(),
    }
}

/// What [`Error::TaskPanicked`] carries.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TaskPanic {
    /// The panic message (`panic!("...")`'s text).
    pub message: String,
    /// `file:line:column` of the panic, when known.
    pub location: Option<String>,
    /// For maps: the index of the input item whose call panicked (for
    /// zero-copy chunk maps, the first element of the chunk).
    pub item: Option<u64>,
}

impl std::fmt::Display for TaskPanic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)?;
        if let Some(at) = &self.location {
            write!(f, " (at {at})")?;
        }
        if let Some(i) = self.item {
            write!(f, " (item {i})")?;
        }
        Ok(())
    }
}

impl Error {
    /// Wraps an OS error with what was being done.
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// Wraps the current `errno` with what was being done.
    pub(crate) fn last_os(context: impl Into<String>) -> Self {
        Error::io(context, io::Error::last_os_error())
    }

    /// The errno behind this error, if it came from the OS.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Io { source, .. } | Error::NoSpace { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

impl From<postcard::Error> for Error {
    fn from(e: postcard::Error) -> Self {
        Error::Codec(e.to_string())
    }
}
