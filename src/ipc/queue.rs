//! `Queue`, `SimpleQueue` and `JoinableQueue`: Python's multiprocessing queues
//! on a shared ring.

use std::borrow::Borrow;
use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::codec::{with_decoded, with_encoded, Message};
use super::ring::{self, type_hash, NoPeer, Ring, Wait};
use crate::error::{Error, Result};
use crate::segment::{kind, Segment, SegmentBuilder, SegmentHandle, HEADER_SIZE};

/// Default ring size: 1 MiB of message bytes.
pub const DEFAULT_RING_BYTES: usize = 1 << 20;

/// How another process finds a queue: small and serializable. Passing the
/// queue itself as a process argument does the same (it serializes as this).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct QueueHandle {
    /// The segment holding the ring.
    pub segment: SegmentHandle,
    /// Offset of the ring's control block.
    pub offset: u64,
    /// The message type's name, for error messages (the segment's type
    /// fingerprint is what is checked).
    pub type_name: String,
}

fn create_ring<T>(ring_bytes: usize, ring_kind: u32, maxsize: u64) -> Result<Ring> {
    let cap = Ring::round_capacity(ring_bytes)?;
    let seg = Arc::new(
        SegmentBuilder::new()
            .kind(kind::QUEUE)
            .memfd()
            .create(Ring::footprint(cap) + 64 + HEADER_SIZE)?,
    );
    Ring::create(
        &seg,
        cap,
        ring_kind,
        maxsize,
        type_hash(std::any::type_name::<T>()),
    )
}

fn attach_ring<T>(h: &QueueHandle, ring_kind: u32) -> Result<Ring> {
    let seg = Arc::new(Segment::open_handle(&h.segment)?);
    seg.expect_kind(kind::QUEUE)?;
    let want = std::any::type_name::<T>();
    Ring::attach(seg, h.offset, ring_kind, type_hash(want)).map_err(|e| match e {
        Error::TypeMismatch { .. } if type_hash(&h.type_name) != type_hash(want) => {
            Error::TypeMismatch {
                expected: format!("a queue of {want}"),
                found: format!("a queue of {}", h.type_name),
            }
        }
        e => e,
    })
}

fn timeout_as(e: Error, as_: Error) -> Error {
    match e {
        Error::Timeout => as_,
        e => e,
    }
}

/// A first-in first-out queue shared by any number of producer and consumer
/// processes, like Python's `multiprocessing.Queue`.
///
/// Values travel as bytes ([`Message`]): serde types through postcard,
/// [`Raw`](super::Raw) / [`Pods`](super::Pods) as their raw bytes. A message
/// larger than a quarter of the ring is *streamed* through it in chunks while
/// the writer holds the producer lock, so any size fits (nothing is
/// truncated) and a big message never interleaves with another.
///
/// The queue lives in a memfd segment owned by the creating process: nothing
/// appears in `/dev/shm`, and nothing is left behind however the process ends.
/// Dropping the creator's last clone closes it (processes already attached keep
/// working; new ones can no longer attach). `Process::start` returns once the
/// child has attached its arguments, so a queue handed to a child may be
/// dropped right after `start`. Clones are cheap handles to the same queue.
///
/// ```
/// use shmproc::ipc::Queue;
/// use shmproc::Error;
/// use std::time::Duration;
///
/// let q = Queue::<String>::with_maxsize(2)?;
/// q.put("a".to_string())?;
/// q.put_nowait("b".to_string())?;
/// assert!(q.full());
/// assert!(matches!(q.put_nowait("c".to_string()), Err(Error::Full)));
/// assert!(matches!(q.put_timeout("c".to_string(), Duration::from_millis(5)), Err(Error::Timeout)));
/// assert_eq!(q.qsize(), 2);
/// assert_eq!(q.get()?, "a");
/// assert_eq!(q.get_timeout(Duration::from_millis(5))?, "b");
/// assert!(q.empty());
/// assert!(matches!(q.get_nowait(), Err(Error::Empty)));
///
/// // Another process attaches through the handle (or by receiving `q` itself
/// // as a serialized argument).
/// let q2 = Queue::<String>::attach(&q.handle())?;
/// q2.put("c".to_string())?;
/// q.close()?;
/// assert!(matches!(q2.put("d".to_string()), Err(Error::Closed)));
/// assert_eq!(q.get()?, "c"); // drained first...
/// assert!(matches!(q.get(), Err(Error::Closed))); // ...then Closed
/// # Ok::<(), shmproc::Error>(())
/// ```
pub struct Queue<T> {
    ring: Ring,
    _t: PhantomData<fn(T) -> T>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue {
            ring: self.ring.clone(),
            _t: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("type", &std::any::type_name::<T>())
            .field("qsize", &self.ring.len())
            .field("maxsize", &self.ring.maxsize())
            .field("ring_bytes", &self.ring.capacity())
            .field("closed", &self.ring.is_closed())
            .finish()
    }
}

impl<T: Message> Queue<T> {
    /// An unbounded queue with a [`DEFAULT_RING_BYTES`] ring, in a new segment.
    ///
    /// # Errors
    /// Segment creation errors ([`Error::NoSpace`], [`Error::Io`]).
    pub fn new() -> Result<Self> {
        Self::with_ring_bytes(0, DEFAULT_RING_BYTES)
    }

    /// A queue that holds at most `maxsize` messages (0: unbounded); `put`
    /// blocks while it is full.
    pub fn with_maxsize(maxsize: usize) -> Result<Self> {
        Self::with_ring_bytes(maxsize, DEFAULT_RING_BYTES)
    }

    /// A queue with at most `maxsize` messages (0: unbounded) and a ring of
    /// `ring_bytes` (rounded up to a power of two, at least 1 KiB).
    pub fn with_ring_bytes(maxsize: usize, ring_bytes: usize) -> Result<Self> {
        Self::with_kind(maxsize, ring_bytes, ring::kind::QUEUE)
    }

    fn with_kind(maxsize: usize, ring_bytes: usize, k: u32) -> Result<Self> {
        Ok(Queue {
            ring: create_ring::<T>(ring_bytes, k, maxsize as u64)?,
            _t: PhantomData,
        })
    }

    /// Attaches to the queue a handle names (in this or another process).
    ///
    /// # Errors
    /// [`Error::SegmentNotFound`] if its creator dropped it;
    /// [`Error::TypeMismatch`] if it is not a `Queue<T>` of this `T`;
    /// [`Error::OutOfBounds`] / [`Error::Corrupt`] for a damaged segment.
    pub fn attach(handle: &QueueHandle) -> Result<Self> {
        Self::attach_kind(handle, ring::kind::QUEUE)
    }

    fn attach_kind(handle: &QueueHandle, k: u32) -> Result<Self> {
        Ok(Queue {
            ring: attach_ring::<T>(handle, k)?,
            _t: PhantomData,
        })
    }

    /// The handle another process attaches with.
    pub fn handle(&self) -> QueueHandle {
        QueueHandle {
            segment: self.ring.segment().handle(),
            offset: self.ring.offset(),
            type_name: std::any::type_name::<T>().to_string(),
        }
    }

    fn put_wait(&self, v: &T, wait: Wait) -> Result<()> {
        with_encoded(v, |bytes| self.ring.send(bytes, wait, &NoPeer))
    }

    fn get_wait(&self, wait: Wait) -> Result<T> {
        with_decoded(|buf| self.ring.recv(buf, wait, &NoPeer))
    }

    /// Puts `v` at the back, waiting as long as the queue is full.
    ///
    /// # Errors
    /// [`Error::Closed`] if the queue is (or becomes, while waiting) closed;
    /// [`Error::Codec`] if `v` cannot be encoded.
    pub fn put(&self, v: impl Borrow<T>) -> Result<()> {
        self.put_wait(v.borrow(), Wait::Forever)
    }

    /// Puts `v`, waiting at most `timeout` for room.
    ///
    /// # Errors
    /// [`Error::Timeout`] when the time runs out (a message being streamed
    /// is then dropped whole: no reader gets a part of it); as [`Queue::put`].
    pub fn put_timeout(&self, v: impl Borrow<T>, timeout: Duration) -> Result<()> {
        self.put_wait(v.borrow(), Wait::after(timeout))
    }

    /// Puts `v` only if there is room now.
    ///
    /// # Errors
    /// [`Error::Full`]; as [`Queue::put`].
    pub fn put_nowait(&self, v: impl Borrow<T>) -> Result<()> {
        self.put_wait(v.borrow(), Wait::Never)
            .map_err(|e| timeout_as(e, Error::Full))
    }

    /// Takes the value at the front, waiting as long as the queue is empty.
    ///
    /// # Errors
    /// [`Error::Closed`] once the queue is closed and drained;
    /// [`Error::Codec`] if the bytes do not decode as `T`.
    pub fn get(&self) -> Result<T> {
        self.get_wait(Wait::Forever)
    }

    /// Takes the front value, waiting at most `timeout` for one to arrive. A
    /// streamed (large) message that has begun to arrive is read to its end
    /// even past the timeout, so that it is never split or lost.
    ///
    /// # Errors
    /// [`Error::Timeout`] when the time runs out; as [`Queue::get`].
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        self.get_wait(Wait::after(timeout))
    }

    /// Takes the front value if there is one now.
    ///
    /// # Errors
    /// [`Error::Empty`]; as [`Queue::get`].
    pub fn get_nowait(&self) -> Result<T> {
        self.get_wait(Wait::Never)
            .map_err(|e| timeout_as(e, Error::Empty))
    }
}

impl<T> Queue<T> {
    /// Messages in the queue now (approximate while others put and get, as in
    /// Python).
    pub fn qsize(&self) -> usize {
        self.ring.len() as usize
    }

    /// Whether the queue holds no message now.
    pub fn empty(&self) -> bool {
        self.ring.len() == 0
    }

    /// Whether the queue holds `maxsize` messages now (never, if unbounded).
    pub fn full(&self) -> bool {
        self.ring.maxsize() > 0 && self.ring.len() >= self.ring.maxsize()
    }

    /// The bound given at creation (0: unbounded).
    pub fn maxsize(&self) -> usize {
        self.ring.maxsize() as usize
    }

    /// Bytes of the ring.
    pub fn ring_bytes(&self) -> usize {
        self.ring.capacity()
    }

    /// Closes the queue for every process: `put` fails with
    /// [`Error::Closed`] from now on (blocked puts wake with it), and `get`
    /// returns the messages still queued, then [`Error::Closed`].
    pub fn close(&self) -> Result<()> {
        self.ring.close()
    }

    #[cfg(test)]
    pub(crate) fn ring_for_tests(&self) -> &Ring {
        &self.ring
    }

    /// Whether [`Queue::close`] was called (by any process).
    pub fn is_closed(&self) -> bool {
        self.ring.is_closed()
    }
}

impl<T: Message> Serialize for Queue<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.handle().serialize(s)
    }
}

impl<'de, T: Message> Deserialize<'de> for Queue<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let h = QueueHandle::deserialize(d)?;
        Self::attach(&h).map_err(serde::de::Error::custom)
    }
}

/// A queue without a bound, like Python's `multiprocessing.SimpleQueue`:
/// `put`, `get`, `empty`, `close`.
///
/// ```
/// use shmproc::ipc::SimpleQueue;
///
/// let q = SimpleQueue::<(u32, String)>::new()?;
/// assert!(q.empty());
/// q.put((1, "one".into()))?;
/// assert!(!q.empty());
/// assert_eq!(q.get()?, (1, "one".into()));
/// q.close()?;
/// assert!(matches!(q.get(), Err(shmproc::Error::Closed)));
/// # Ok::<(), shmproc::Error>(())
/// ```
pub struct SimpleQueue<T> {
    q: Queue<T>,
}

impl<T> Clone for SimpleQueue<T> {
    fn clone(&self) -> Self {
        SimpleQueue { q: self.q.clone() }
    }
}

impl<T> fmt::Debug for SimpleQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SimpleQueue").field(&self.q).finish()
    }
}

impl<T: Message> SimpleQueue<T> {
    /// A new queue with a [`DEFAULT_RING_BYTES`] ring.
    pub fn new() -> Result<Self> {
        Self::with_ring_bytes(DEFAULT_RING_BYTES)
    }

    /// A new queue with a ring of `ring_bytes`.
    pub fn with_ring_bytes(ring_bytes: usize) -> Result<Self> {
        Ok(SimpleQueue {
            q: Queue::with_kind(0, ring_bytes, ring::kind::SIMPLE)?,
        })
    }

    /// Attaches to the queue a handle names.
    pub fn attach(handle: &QueueHandle) -> Result<Self> {
        Ok(SimpleQueue {
            q: Queue::attach_kind(handle, ring::kind::SIMPLE)?,
        })
    }

    /// The handle another process attaches with.
    pub fn handle(&self) -> QueueHandle {
        self.q.handle()
    }

    /// Puts `v` (waits only while the ring has no room for its bytes).
    ///
    /// # Errors
    /// [`Error::Closed`], [`Error::Codec`].
    pub fn put(&self, v: impl Borrow<T>) -> Result<()> {
        self.q.put(v)
    }

    /// Takes the front value, waiting as long as needed.
    ///
    /// # Errors
    /// [`Error::Closed`] once closed and drained, [`Error::Codec`].
    pub fn get(&self) -> Result<T> {
        self.q.get()
    }

    /// Whether no message is queued now.
    pub fn empty(&self) -> bool {
        self.q.empty()
    }

    /// Closes the queue (see [`Queue::close`]).
    pub fn close(&self) -> Result<()> {
        self.q.close()
    }
}

impl<T: Message> Serialize for SimpleQueue<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.handle().serialize(s)
    }
}

impl<'de, T: Message> Deserialize<'de> for SimpleQueue<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let h = QueueHandle::deserialize(d)?;
        Self::attach(&h).map_err(serde::de::Error::custom)
    }
}

/// A [`Queue`] that also counts unfinished tasks, like Python's
/// `multiprocessing.JoinableQueue`: every message put is a task; consumers call
/// [`task_done`](JoinableQueue::task_done) when they finish one, and
/// [`join`](JoinableQueue::join) waits until all are done. Every `Queue`
/// method is available through `Deref`.
///
/// A task whose consumer died after taking it is never marked done, so
/// `join` would wait for it: use [`join_timeout`](JoinableQueue::join_timeout)
/// where consumers may die.
///
/// ```
/// use shmproc::ipc::JoinableQueue;
/// use std::time::Duration;
///
/// let q = JoinableQueue::<u32>::new()?;
/// q.put(1)?;
/// q.put(2)?;
/// assert_eq!(q.unfinished(), 2);
/// assert!(matches!(q.join_timeout(Duration::from_millis(5)), Err(shmproc::Error::Timeout)));
/// for _ in 0..2 {
///     let _task = q.get()?;
///     q.task_done()?;
/// }
/// q.join()?; // returns at once: everything is done
/// assert!(matches!(q.task_done(), Err(shmproc::Error::TooManyTaskDone)));
/// # Ok::<(), shmproc::Error>(())
/// ```
pub struct JoinableQueue<T> {
    q: Queue<T>,
}

impl<T> Clone for JoinableQueue<T> {
    fn clone(&self) -> Self {
        JoinableQueue { q: self.q.clone() }
    }
}

impl<T> fmt::Debug for JoinableQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinableQueue")
            .field("queue", &self.q)
            .field("unfinished", &self.q.ring.unfinished())
            .finish()
    }
}

impl<T> Deref for JoinableQueue<T> {
    type Target = Queue<T>;
    fn deref(&self) -> &Queue<T> {
        &self.q
    }
}

impl<T: Message> JoinableQueue<T> {
    /// An unbounded joinable queue with a [`DEFAULT_RING_BYTES`] ring.
    pub fn new() -> Result<Self> {
        Self::with_ring_bytes(0, DEFAULT_RING_BYTES)
    }

    /// A joinable queue holding at most `maxsize` messages (0: unbounded).
    pub fn with_maxsize(maxsize: usize) -> Result<Self> {
        Self::with_ring_bytes(maxsize, DEFAULT_RING_BYTES)
    }

    /// A joinable queue with a message bound and a ring size.
    pub fn with_ring_bytes(maxsize: usize, ring_bytes: usize) -> Result<Self> {
        Ok(JoinableQueue {
            q: Queue::with_kind(maxsize, ring_bytes, ring::kind::JOINABLE)?,
        })
    }

    /// Attaches to the queue a handle names.
    pub fn attach(handle: &QueueHandle) -> Result<Self> {
        Ok(JoinableQueue {
            q: Queue::attach_kind(handle, ring::kind::JOINABLE)?,
        })
    }

    /// Marks one task (a message taken by `get`) as done.
    ///
    /// # Errors
    /// [`Error::TooManyTaskDone`] when called more times than messages were put.
    pub fn task_done(&self) -> Result<()> {
        self.q.ring.task_done()
    }

    /// Messages put and not yet marked done.
    pub fn unfinished(&self) -> u64 {
        self.q.ring.unfinished()
    }

    /// Waits until every message put so far has been marked done.
    pub fn join(&self) -> Result<()> {
        self.q.ring.join(Wait::Forever)
    }

    /// As [`join`](JoinableQueue::join), giving up after `timeout`.
    ///
    /// # Errors
    /// [`Error::Timeout`].
    pub fn join_timeout(&self, timeout: Duration) -> Result<()> {
        self.q.ring.join(Wait::after(timeout))
    }
}

impl<T: Message> Serialize for JoinableQueue<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.q.handle().serialize(s)
    }
}

impl<'de, T: Message> Deserialize<'de> for JoinableQueue<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let h = QueueHandle::deserialize(d)?;
        Self::attach(&h).map_err(serde::de::Error::custom)
    }
}
