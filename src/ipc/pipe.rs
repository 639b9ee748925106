//! `Pipe` and `Connection`: Python's `multiprocessing.Pipe` on shared rings.
//!
//! A pipe is one segment holding a [`PipeBlock`] and one ring per direction.
//! Each end keeps a table of the processes that hold it (pid, start time, and
//! how many `Connection` values that process has). The other end reads the
//! table to decide that nobody can ever write again (`recv` returns
//! [`Error::Eof`] once drained) or read again (`send` fails with
//! [`Error::BrokenPipe`]): an end is gone when every holder closed it or died.

use std::cell::UnsafeCell;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::codec::{with_decoded, with_encoded, Message};
use super::ring::{self, Peer, Ring, Wait};
use crate::error::{Error, Result};
use crate::segment::{kind, Segment, SegmentBuilder, SegmentHandle, HEADER_SIZE};
use crate::sync::{Block, Place};
use crate::sys::mutex as raw;
use crate::sys::shm as sys;

/// Most processes that may hold one end at once.
pub const MAX_HOLDERS: usize = 32;

/// Default ring size of each direction: 256 KiB.
pub const DEFAULT_PIPE_BYTES: usize = 1 << 18;

#[repr(C)]
struct Slot {
    /// Holder pid, 0 if the slot is free.
    pid: AtomicU32,
    /// `Connection` values (plus serialized, not yet attached copies) this
    /// process holds.
    refs: AtomicU32,
    /// Holder start time, to tell a recycled pid from the holder.
    start: AtomicU64,
}

#[repr(C)]
struct EndTable {
    slots: [Slot; MAX_HOLDERS],
}

#[repr(C)]
struct PipeBlock {
    tag: AtomicU32,
    duplex: AtomicU32,
    /// Offset of the ring *written* by end i (read by end 1 - i); 0 if none.
    ring_off: [AtomicU64; 2],
    /// Guards the holder tables (robust: a holder dying mid-update leaves a
    /// slot whose pid is dead, which counts as released).
    meta: UnsafeCell<libc::pthread_mutex_t>,
    ends: [EndTable; 2],
}

// SAFETY: repr(C), tag first at offset 0, atomics plus a pthread mutex touched
// only through raw pointers; no pointers; all-zero is a valid unpublished state.
unsafe impl Block for PipeBlock {
    const TAG: u32 = u32::from_le_bytes(*b"PIP1");
    const NAME: &'static str = "shmproc::Pipe";
}

/// This process: pid and start time (cached per pid, so a forked child
/// recomputes its own).
fn me() -> (u32, u64) {
    static PID: AtomicU32 = AtomicU32::new(0);
    static START: AtomicU64 = AtomicU64::new(0);
    let pid = sys::getpid();
    // Relaxed: a cache; a stale pair is detected by the pid comparison and
    // recomputed (both values are derived from the same pid).
    if PID.load(Ordering::Relaxed) == pid {
        return (pid, START.load(Ordering::Relaxed));
    }
    let start = sys::process_start_time(pid).unwrap_or(0);
    START.store(start, Ordering::Relaxed);
    PID.store(pid, Ordering::Relaxed);
    (pid, start)
}

/// The shared state of a pipe as seen from this process.
#[derive(Debug)]
struct Shared {
    place: Place,
    /// `rings[i]`: the ring written by end i.
    rings: [Option<Ring>; 2],
}

struct MetaGuard<'a> {
    shared: &'a Shared,
}

impl Drop for MetaGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: this thread locked the mutex in `Shared::meta`.
        let _ = unsafe { raw::unlock(self.shared.block().meta.get()) };
    }
}

impl Shared {
    fn block(&self) -> &PipeBlock {
        self.place.block::<PipeBlock>()
    }

    fn meta(&self) -> Result<MetaGuard<'_>> {
        // SAFETY: initialised before the tag was published; the mapping lives
        // as long as `self`. An owner that died only leaves slots whose pid is
        // dead, which every reader treats as released, so OwnerDied needs no
        // repair beyond the consistent() that `raw::lock` already did.
        unsafe { raw::lock(self.block().meta.get())? };
        Ok(MetaGuard { shared: self })
    }

    /// Adds one reference held by `who` on end `e`.
    fn register(&self, e: usize, who: (u32, u64)) -> Result<()> {
        let _g = self.meta()?;
        let slots = &self.block().ends[e].slots;
        // Relaxed: under the meta lock.
        if let Some(s) = slots.iter().find(|s| {
            s.pid.load(Ordering::Relaxed) == who.0 && s.start.load(Ordering::Relaxed) == who.1
        }) {
            s.refs.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        let free = slots.iter().find(|s| {
            let pid = s.pid.load(Ordering::Relaxed);
            pid == 0
                || s.refs.load(Ordering::Relaxed) == 0
                || !sys::process_alive(pid, s.start.load(Ordering::Relaxed))
        });
        let Some(s) = free else {
            return Err(Error::InvalidState(format!(
                "more than {MAX_HOLDERS} processes hold one end of this pipe"
            )));
        };
        // Order for lock-free readers (`open_fast`): clear, then fill, pid last.
        s.pid.store(0, Ordering::Relaxed);
        s.start.store(who.1, Ordering::Relaxed);
        s.refs.store(1, Ordering::Relaxed);
        // SYNC POINT: Release; `open_fast` Acquire-loads pid.
        s.pid.store(who.0, Ordering::Release);
        Ok(())
    }

    /// Drops one reference held by `who` on end `e`.
    fn unregister(&self, e: usize, who: (u32, u64)) -> Result<()> {
        let _g = self.meta()?;
        for s in &self.block().ends[e].slots {
            // Relaxed: under the meta lock.
            if s.pid.load(Ordering::Relaxed) == who.0 && s.start.load(Ordering::Relaxed) == who.1 {
                let r = s.refs.load(Ordering::Relaxed).saturating_sub(1);
                // SYNC POINT: Release; `open_fast` reads refs lock-free.
                s.refs.store(r, Ordering::Release);
                if r == 0 {
                    s.pid.store(0, Ordering::Release);
                }
                break;
            }
        }
        Ok(())
    }

    /// Lock-free and cheap: does any slot of end `e` hold a reference?
    /// (Does not notice dead holders; [`Shared::alive`] does.)
    fn open_fast(&self, e: usize) -> bool {
        self.block().ends[e].slots.iter().any(|s| {
            // SYNC POINT: Acquire pairs with the Release stores in (un)register.
            s.pid.load(Ordering::Acquire) != 0 && s.refs.load(Ordering::Acquire) > 0
        })
    }

    /// Is end `e` held by a live process? Reads `/proc` for other processes.
    fn alive(&self, e: usize) -> Result<bool> {
        if !self.open_fast(e) {
            return Ok(false);
        }
        let _g = self.meta()?;
        let mine = me();
        Ok(self.block().ends[e].slots.iter().any(|s| {
            // Relaxed: under the meta lock.
            let pid = s.pid.load(Ordering::Relaxed);
            let start = s.start.load(Ordering::Relaxed);
            pid != 0
                && s.refs.load(Ordering::Relaxed) > 0
                && ((pid, start) == mine || sys::process_alive(pid, start))
        }))
    }
}

/// The liveness checks a connection's rings run while they wait.
struct EndPeer<'a> {
    shared: &'a Shared,
    /// The other end.
    other: usize,
}

impl Peer for EndPeer<'_> {
    fn check_readable(&self) -> Result<()> {
        if self.shared.alive(self.other)? {
            Ok(())
        } else {
            Err(Error::Eof)
        }
    }
    fn check_writable_fast(&self) -> Result<()> {
        if self.shared.open_fast(self.other) {
            Ok(())
        } else {
            Err(Error::BrokenPipe)
        }
    }
    fn check_writable(&self) -> Result<()> {
        if self.shared.alive(self.other)? {
            Ok(())
        } else {
            Err(Error::BrokenPipe)
        }
    }
}

/// How another process finds a pipe end (what a [`Connection`] serializes as).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ConnectionHandle {
    /// The pipe's segment.
    pub segment: SegmentHandle,
    /// Offset of the pipe block.
    pub offset: u64,
    /// Which end (0 or 1).
    pub end: u8,
    /// The process that serialized it, which holds a reference on its behalf
    /// until it is attached.
    pub from_pid: u32,
    /// Start time of `from_pid`.
    pub from_start: u64,
}

/// Python's `multiprocessing.Pipe`: [`Pipe::new`] returns two connected ends.
///
/// ```
/// use shmproc::ipc::Pipe;
///
/// let (a, b) = Pipe::new(true)?; // duplex
/// a.send(&"hello".to_string())?;
/// assert_eq!(b.recv::<String>()?, "hello");
/// b.send(&42u32)?;
/// assert_eq!(a.recv::<u32>()?, 42);
///
/// let (r, w) = Pipe::new(false)?; // r receives only, w sends only
/// w.send_bytes(b"raw bytes")?;
/// w.close()?;
/// assert_eq!(r.recv_bytes()?, b"raw bytes");
/// assert!(matches!(r.recv_bytes(), Err(shmproc::Error::Eof))); // writer closed
/// # Ok::<(), shmproc::Error>(())
/// ```
#[derive(Debug)]
pub struct Pipe;

impl Pipe {
    /// Makes a pipe with [`DEFAULT_PIPE_BYTES`] of ring per direction. With
    /// `duplex`, both ends send and receive; without, the first end only
    /// receives and the second only sends (as in Python).
    ///
    /// # Errors
    /// Segment creation errors.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(duplex: bool) -> Result<(Connection, Connection)> {
        Self::with_ring_bytes(duplex, DEFAULT_PIPE_BYTES)
    }

    /// As [`Pipe::new`], with `ring_bytes` per direction (rounded up to a
    /// power of two, at least 1 KiB).
    pub fn with_ring_bytes(duplex: bool, ring_bytes: usize) -> Result<(Connection, Connection)> {
        let cap = Ring::round_capacity(ring_bytes)?;
        let rings = if duplex { 2 } else { 1 };
        let size = HEADER_SIZE
            + std::mem::size_of::<PipeBlock>()
            + 64
            + rings * (Ring::footprint(cap) + 64);
        let seg = Arc::new(
            SegmentBuilder::new()
                .kind(kind::PIPE)
                .memfd()
                .create(size)?,
        );
        let place = Place::alloc::<PipeBlock>(Some(&seg), 0)?;
        let b = place.block::<PipeBlock>();
        // SAFETY: freshly allocated, zeroed, aligned, unpublished block.
        unsafe { raw::init(b.meta.get())? };
        let mk = || Ring::create(&seg, cap, ring::kind::PIPE, 0, 0);
        let r1 = mk()?;
        let r0 = if duplex { Some(mk()?) } else { None };
        // Relaxed: published by the Release tag store below.
        b.duplex.store(duplex as u32, Ordering::Relaxed);
        b.ring_off[1].store(r1.offset(), Ordering::Relaxed);
        b.ring_off[0].store(r0.as_ref().map_or(0, Ring::offset), Ordering::Relaxed);
        place.publish::<PipeBlock>();
        let shared = Arc::new(Shared {
            place,
            rings: [r0, Some(r1)],
        });
        let who = me();
        shared.register(0, who)?;
        shared.register(1, who)?;
        Ok((
            Connection::new(Arc::clone(&shared), 0, who),
            Connection::new(shared, 1, who),
        ))
    }
}

/// Makes a pipe: `pipe(true)` is [`Pipe::new(true)`](Pipe::new).
pub fn pipe(duplex: bool) -> Result<(Connection, Connection)> {
    Pipe::new(duplex)
}

/// One end of a [`Pipe`]. Send it to another process as a process argument
/// (it serializes as a [`ConnectionHandle`] and re-attaches there).
///
/// The other end sees this end as *gone* when every process that held it has
/// closed it (explicitly, or by dropping it) or died: then `recv` there
/// returns the messages still buffered and then [`Error::Eof`], and `send`
/// there fails with [`Error::BrokenPipe`]. A dead holder is noticed within
/// about 100 ms by a blocked peer.
///
/// A serialized `Connection` counts as held by the serializing process until
/// it is deserialized (once), so a parent may close its copy right after
/// handing one to a child. The segment's *name*, though, lives only as long as
/// the creating process holds some `Connection` of the pipe: keep one until
/// every child has attached (see `src/ipc/README.md`, "Lifetimes").
///
/// A `Connection` copied into a child by `fork` without going through serde
/// is not registered there; pass connections as (serialized) process
/// arguments.
///
/// ```
/// use shmproc::ipc::{Connection, Pipe};
/// use std::time::Duration;
///
/// let (a, b) = Pipe::new(true)?;
/// assert!(!b.poll(Duration::ZERO)?);
/// a.send(&vec![1u8, 2, 3])?;
/// assert!(b.poll(Duration::from_millis(10))?);
/// assert_eq!(b.recv::<Vec<u8>>()?, vec![1, 2, 3]);
/// assert!(matches!(b.recv_timeout::<u8>(Duration::from_millis(5)), Err(shmproc::Error::Timeout)));
///
/// // As a child process would: serialize, then attach.
/// let bytes = postcard::to_allocvec(&a)?;
/// drop(a);
/// let a2: Connection = postcard::from_bytes(&bytes)?;
/// a2.send(&7u8)?;
/// assert_eq!(b.recv::<u8>()?, 7);
/// drop(a2);
/// assert!(matches!(b.recv::<u8>(), Err(shmproc::Error::Eof)));
/// assert!(matches!(b.send(&1u8), Err(shmproc::Error::BrokenPipe)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Connection {
    shared: Arc<Shared>,
    end: usize,
    /// The identity this value is registered under.
    who: (u32, u64),
    closed: AtomicBool,
    /// Hash of the type of the last message this value sent (its name is
    /// sent again when the type changes).
    last_sent: AtomicU64,
    /// Type names learned from received tags, by hash (for mismatch errors).
    names: std::sync::Mutex<Vec<(u64, String)>>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("end", &self.end)
            .field("readable", &self.readable())
            .field("writable", &self.writable())
            .field("closed", &self.closed.load(Ordering::Relaxed))
            .finish()
    }
}

/// Every pipe message ends with its type tag: `name ++ len (u16 LE) ++ hash
/// (u64 LE)`, where `hash` is the FNV-1a hash of the sender's
/// `std::any::type_name`, which the receiver compares with the hash of the
/// type it asks for. The name itself (`len` > 0) travels only with the first
/// message of each run of one type from a sending `Connection`: the
/// receiving end learns it, to name the type in a mismatch, and a message
/// stays small (one more cache line per message cost 50 ns a trip here).
/// `send_bytes` messages have the hash of the empty name.
const TAG_TAIL: usize = 10;

/// The hash of a type name, cached per thread for the last name seen (a
/// `&'static str` compared by address and length: equal keys are equal
/// names, so the cache can only miss, never lie).
fn name_hash(name: &'static str) -> u64 {
    thread_local! {
        static LAST: std::cell::Cell<(usize, usize, u64)> = const { std::cell::Cell::new((0, 0, 0)) };
    }
    let key = (name.as_ptr() as usize, name.len());
    LAST.with(|c| {
        let (p, l, h) = c.get();
        if (p, l) == key {
            return h;
        }
        let h = ring::type_hash(name);
        c.set((key.0, key.1, h));
        h
    })
}

/// The tail of a tag: the name's length (0: not carried) and its hash.
fn tag_tail(name_len: usize, hash: u64) -> Result<[u8; TAG_TAIL]> {
    let len = u16::try_from(name_len)
        .map_err(|_| Error::InvalidArgument(format!("type name of {name_len} bytes")))?;
    let mut t = [0u8; TAG_TAIL];
    t[..2].copy_from_slice(&len.to_le_bytes());
    t[2..].copy_from_slice(&hash.to_le_bytes());
    Ok(t)
}

impl Connection {
    fn new(shared: Arc<Shared>, end: usize, who: (u32, u64)) -> Connection {
        Connection {
            shared,
            end,
            who,
            closed: AtomicBool::new(false),
            last_sent: AtomicU64::new(0),
            names: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Checks and removes the type tag at the end of `buf`. `want`: the
    /// type asked for, `None` to accept any.
    fn untag(&self, buf: &mut Vec<u8>, want: Option<&'static str>) -> Result<()> {
        let n = buf.len();
        let corrupt = || Error::Corrupt(format!("pipe message of {n} bytes without a type tag"));
        let tail_at = n.checked_sub(TAG_TAIL).ok_or_else(corrupt)?;
        let len = usize::from(u16::from_le_bytes([buf[tail_at], buf[tail_at + 1]]));
        let mut h = [0u8; 8];
        h.copy_from_slice(&buf[tail_at + 2..]);
        let hash = u64::from_le_bytes(h);
        let name_at = tail_at.checked_sub(len).ok_or_else(corrupt)?;
        if len > 0 {
            let name = String::from_utf8_lossy(&buf[name_at..tail_at]).into_owned();
            let mut names = self.names.lock().unwrap_or_else(|p| p.into_inner());
            if !names.iter().any(|(k, _)| *k == hash) {
                names.push((hash, name));
            }
        }
        if let Some(want) = want {
            if hash != name_hash(want) {
                let found = if hash == name_hash("") {
                    "raw bytes sent with send_bytes".to_string()
                } else {
                    let names = self.names.lock().unwrap_or_else(|p| p.into_inner());
                    match names.iter().find(|(k, _)| *k == hash) {
                        Some((_, name)) => format!("a message of type {name}"),
                        None => format!("a message of another type (type hash {hash:#018x})"),
                    }
                };
                return Err(Error::TypeMismatch {
                    expected: format!("a message of type {want}"),
                    found,
                });
            }
        }
        buf.truncate(name_at);
        Ok(())
    }

    fn other(&self) -> usize {
        1 - self.end
    }

    fn peer(&self) -> EndPeer<'_> {
        EndPeer {
            shared: &self.shared,
            other: self.other(),
        }
    }

    /// Whether this end can receive.
    pub fn readable(&self) -> bool {
        self.shared.rings[self.other()].is_some()
    }

    /// Whether this end can send.
    pub fn writable(&self) -> bool {
        self.shared.rings[self.end].is_some()
    }

    fn check_open(&self) -> Result<()> {
        // Relaxed: a local flag of this value.
        if self.closed.load(Ordering::Relaxed) {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    fn send_ring(&self) -> Result<&Ring> {
        self.check_open()?;
        self.shared.rings[self.end]
            .as_ref()
            .ok_or_else(|| Error::InvalidState("this end of a one-way pipe only receives".into()))
    }

    fn recv_ring(&self) -> Result<&Ring> {
        self.check_open()?;
        self.shared.rings[self.other()]
            .as_ref()
            .ok_or_else(|| Error::InvalidState("this end of a one-way pipe only sends".into()))
    }

    /// Sends a value ([`Message`]: any serde type, or `Raw`/`Pods`). Waits
    /// while the ring is full.
    ///
    /// # Errors
    /// [`Error::BrokenPipe`] if the other end is gone; [`Error::Closed`] if
    /// this end is closed; [`Error::InvalidState`] on a receive-only end;
    /// [`Error::Codec`].
    pub fn send<T: Message>(&self, v: &T) -> Result<()> {
        let ring = self.send_ring()?;
        let name = std::any::type_name::<T>();
        let hash = name_hash(name);
        // Relaxed: a hint of this value's own; a stale read only sends the
        // name once more.
        let carried = if self.last_sent.load(Ordering::Relaxed) == hash {
            ""
        } else {
            self.last_sent.store(hash, Ordering::Relaxed);
            name
        };
        let tail = tag_tail(carried.len(), hash)?;
        with_encoded(v, |bytes| {
            ring.send_parts(
                &[bytes, carried.as_bytes(), &tail],
                Wait::Forever,
                &self.peer(),
            )
        })
    }

    /// Sends raw bytes as one message (received with
    /// [`recv_bytes`](Connection::recv_bytes); `recv::<T>` of it is an error).
    ///
    /// # Errors
    /// As [`Connection::send`].
    pub fn send_bytes(&self, bytes: &[u8]) -> Result<()> {
        self.send_ring()?.send_parts(
            &[bytes, &tag_tail(0, name_hash(""))?],
            Wait::Forever,
            &self.peer(),
        )
    }

    /// Receives a value, waiting as long as needed.
    ///
    /// # Errors
    /// [`Error::Eof`] when the other end is gone and nothing is left;
    /// [`Error::Closed`] if this end is closed; [`Error::TypeMismatch`]
    /// (naming both types) if the message was sent as another type, or with
    /// `send_bytes`; [`Error::Codec`].
    pub fn recv<T: Message>(&self) -> Result<T> {
        let ring = self.recv_ring()?;
        with_decoded(|buf| {
            ring.recv(buf, Wait::Forever, &self.peer())?;
            self.untag(buf, Some(std::any::type_name::<T>()))
        })
    }

    /// Receives a value, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`Error::Timeout`]; as [`Connection::recv`].
    pub fn recv_timeout<T: Message>(&self, timeout: Duration) -> Result<T> {
        let ring = self.recv_ring()?;
        with_decoded(|buf| {
            ring.recv(buf, Wait::after(timeout), &self.peer())?;
            self.untag(buf, Some(std::any::type_name::<T>()))
        })
    }

    /// Receives one message as raw bytes: what `send_bytes` sent, or the
    /// encoding of what `send` sent (its type is not checked).
    ///
    /// # Errors
    /// As [`Connection::recv`].
    pub fn recv_bytes(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.recv_ring()?
            .recv(&mut out, Wait::Forever, &self.peer())?;
        self.untag(&mut out, None)?;
        Ok(out)
    }

    /// Whether `recv` would return without blocking (a message is waiting, or
    /// the other end is gone), waiting up to `timeout` for that to become
    /// true. `Duration::ZERO` only looks.
    ///
    /// # Errors
    /// [`Error::Closed`] if this end is closed.
    pub fn poll(&self, timeout: Duration) -> Result<bool> {
        let ring = self.recv_ring()?;
        let wait = if timeout.is_zero() {
            Wait::Never
        } else {
            Wait::after(timeout)
        };
        ring.poll(wait, &self.peer())
    }

    /// Closes this process's hold on this end (dropping does the same).
    /// When no live process holds it any more, the other end gets
    /// [`Error::Eof`] after draining and [`Error::BrokenPipe`] on send.
    /// Closing twice is fine.
    pub fn close(&self) -> Result<()> {
        // Relaxed: a local flag; swap makes close idempotent.
        if self.closed.swap(true, Ordering::Relaxed) {
            return Ok(());
        }
        // A copy inherited through fork (not through serialization) holds no
        // reference of its own: never release the parent's.
        if me() == self.who {
            self.shared.unregister(self.end, self.who)?;
        }
        // Blocked readers of what we wrote re-check for EOF; blocked writers
        // into what we read re-check for a broken pipe.
        if let Some(r) = &self.shared.rings[self.end] {
            r.wake_readers();
        }
        if let Some(r) = &self.shared.rings[self.other()] {
            r.wake_writers();
        }
        Ok(())
    }

    /// Another `Connection` on the same end, counted as a holder of its own:
    /// keep one in the parent while a copy travels to a child (a process
    /// argument is encoded, and its value dropped, when the `Process` is made).
    /// Like `os.dup` of a pipe end in Python.
    ///
    /// # Errors
    /// [`Error::Closed`] if this end is closed.
    pub fn try_clone(&self) -> Result<Connection> {
        Connection::attach(&self.handle()?)
    }

    /// The handle another process attaches with. Creating it makes this
    /// process hold one more reference on the end until the handle is
    /// attached (see [`Connection::attach`]).
    pub fn handle(&self) -> Result<ConnectionHandle> {
        self.check_open()?;
        let who = me();
        self.shared.register(self.end, who)?;
        Ok(ConnectionHandle {
            segment: self.shared.place.seg.handle(),
            offset: self.shared.place.offset as u64,
            end: self.end as u8,
            from_pid: who.0,
            from_start: who.1,
        })
    }

    /// Attaches to a pipe end from a handle, and releases the reference its
    /// creator held on the handle's behalf.
    ///
    /// # Errors
    /// [`Error::SegmentNotFound`] if the pipe's creator dropped it;
    /// [`Error::TypeMismatch`], [`Error::OutOfBounds`], [`Error::Corrupt`].
    pub fn attach(h: &ConnectionHandle) -> Result<Connection> {
        let end = h.end as usize;
        if end > 1 {
            return Err(Error::Corrupt(format!("pipe end {end}")));
        }
        let seg = Arc::new(Segment::open_handle(&h.segment)?);
        seg.expect_kind(kind::PIPE)?;
        let place = Place::attach_in::<PipeBlock>(Arc::clone(&seg), h.offset, PipeBlock::TAG)?;
        let b = place.block::<PipeBlock>();
        let ring_at = |i: usize| -> Result<Option<Ring>> {
            // Relaxed: ordered by the Acquire tag load in attach_in.
            match b.ring_off[i].load(Ordering::Relaxed) {
                0 => Ok(None),
                off => Ring::attach(Arc::clone(&seg), off, ring::kind::PIPE, 0).map(Some),
            }
        };
        let rings = [ring_at(0)?, ring_at(1)?];
        if rings[1].is_none() {
            return Err(Error::Corrupt("pipe without a ring".into()));
        }
        let shared = Arc::new(Shared { place, rings });
        let who = me();
        shared.register(end, who)?;
        shared.unregister(end, (h.from_pid, h.from_start))?;
        Ok(Connection::new(shared, end, who))
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

impl Serialize for Connection {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.handle()
            .map_err(serde::ser::Error::custom)?
            .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Connection {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let h = ConnectionHandle::deserialize(d)?;
        Connection::attach(&h).map_err(serde::de::Error::custom)
    }
}
