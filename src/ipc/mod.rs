//! Queues and pipes over shared-memory rings.
//!
//! | type | Python | notes |
//! |---|---|---|
//! | [`Queue<T>`] | `multiprocessing.Queue` | any number of producer and consumer processes; optional `maxsize` |
//! | [`SimpleQueue<T>`] | `multiprocessing.SimpleQueue` | `put`, `get`, `empty`, `close` |
//! | [`JoinableQueue<T>`] | `multiprocessing.JoinableQueue` | `task_done`, `join` |
//! | [`Pipe`] / [`Connection`] | `multiprocessing.Pipe` | duplex or one-way; [`Error::Eof`](crate::Error::Eof) when the writer is gone |
//!
//! Every one of them serializes as a small handle (segment name + offset) and
//! re-attaches when deserialized, so passing one as a process argument is all
//! it takes to share it.
//!
//! **Messages.** A value becomes bytes through [`Message`]: serde types via
//! postcard, [`Raw<T>`] and [`Pods<T>`] as raw `Pod` bytes. A message larger
//! than a quarter of the ring is **streamed** through the ring in chunks (the
//! writer holds the producer lock until its last chunk, so streams never
//! interleave); nothing is ever truncated, and a 64 MiB message passes
//! through a 1 MiB ring.
//!
//! **Ring.** One data area per queue (per pipe direction) with `head` and
//! `tail` byte counters on their own cache lines; a robust pthread mutex
//! serialises producers and another serialises consumers, so the two sides
//! never contend with each other. A writer publishes a frame with one Release
//! store of `tail`; a reader frees it with one Release store of `head`. No
//! system call happens per message: a waiter spins for a while
//! ([`sync::set_spin`](crate::sync::set_spin)) before it registers and sleeps
//! on a shared futex, and a writer only calls `futex_wake` when it sees a
//! registered sleeper. Sleeps last at most 100 ms, after which the waiter
//! re-checks closure and the liveness of its peer: nothing waits forever on a
//! dead process.
//!
//! **Crashes.**
//! - A writer killed mid-put never delivers a torn message: the bytes it wrote
//!   past `tail` are not committed, and the next process to take the producer
//!   lock gets `OwnerDied` and rolls the producer side back to its last
//!   committed state (`put_count` included). A streamed message whose writer
//!   died (or timed out) after some chunks were committed is dropped whole by
//!   the reader; everything the dead writer committed before is delivered.
//! - A reader killed mid-get before it committed `head` leaves the message in
//!   the ring for the next reader (nothing lost). A reader killed after
//!   committing loses that one message, as in any queue; a reader killed half-way
//!   through a streamed message loses that message (the next reader drops the
//!   orphaned rest). Other readers and writers are never blocked by it: the
//!   next locker gets `OwnerDied`.
//!
//! The protocol and the proof sketch are in `src/ipc/README.md`.

pub(crate) mod codec;
mod pipe;
mod queue;
pub(crate) mod ring;
#[cfg(test)]
mod test;

pub use codec::{Message, Pods, Raw};
pub use pipe::{pipe, Connection, ConnectionHandle, Pipe, DEFAULT_PIPE_BYTES, MAX_HOLDERS};
pub use queue::{JoinableQueue, Queue, QueueHandle, SimpleQueue, DEFAULT_RING_BYTES};
