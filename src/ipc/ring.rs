//! The shared byte ring under every queue and pipe.
//!
//! A ring is a power-of-two data area plus a control block, both in one shared
//! segment. Messages are written as *frames*: an 8-byte header and a payload
//! padded to 8 bytes. Two robust, process-shared pthread mutexes split the
//! participants: the *producer lock* serialises writers (it owns `tail`), the
//! *consumer lock* serialises readers (it owns `head`). Between the holder of
//! each lock the ring is single-producer / single-consumer: the writer publishes
//! a frame by storing `tail` (Release), the reader frees it by storing `head`
//! (Release). A message too big for one frame is streamed as
//! `FIRST MIDDLE* LAST` frames while the producer lock is held throughout.
//!
//! See `src/ipc/README.md` for the protocol, the wake-up argument and the
//! recovery proof sketch.

use std::cell::UnsafeCell;
use std::marker::PhantomData;
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::segment::Segment;
use crate::sync::{Block, Place};
use crate::sys::futex;
use crate::sys::mutex as raw;

/// Smallest data area a ring accepts.
pub(crate) const MIN_CAPACITY: usize = 1 << 10;
/// Largest data area a ring accepts (positions are u64 and frames carry a u32
/// length; a quarter of the ring must fit in a u32).
pub(crate) const MAX_CAPACITY: usize = 1 << 34;
/// Largest message a stream may announce; a corrupt total beyond this is
/// rejected before anything is allocated for it.
pub(crate) const MAX_MESSAGE: u64 = 1 << 40;
/// Longest a blocked waiter sleeps before it re-checks liveness and closure.
pub(crate) const TICK: Duration = Duration::from_millis(100);

const HEADER: u64 = 8;

/// Frame kinds (3 bits of the header). Zero is never a valid kind, so a
/// zeroed or half-written header is rejected.
const WHOLE: u32 = 1;
const FIRST: u32 = 2;
const MIDDLE: u32 = 3;
const LAST: u32 = 4;

/// `flags` bits.
const CLOSED: u32 = 1;
/// Set once `CLOSED` is set *and* the producer lock was taken afterwards, so
/// no put can commit any more.
const SEALED: u32 = 2;

/// What a ring is used for, stored in the block and checked on attach.
pub(crate) mod kind {
    pub(crate) const QUEUE: u32 = 1;
    pub(crate) const SIMPLE: u32 = 2;
    pub(crate) const JOINABLE: u32 = 3;
    pub(crate) const PIPE: u32 = 4;
}

/// Walks the parts of a message a frame's worth at a time.
struct Cursor<'a> {
    parts: &'a [&'a [u8]],
    /// Bytes of `parts[0]` already taken.
    at: usize,
}

impl<'a> Cursor<'a> {
    fn new(parts: &'a [&'a [u8]]) -> Self {
        let mut c = Cursor { parts, at: 0 };
        c.skip_empty();
        c
    }

    fn skip_empty(&mut self) {
        while let Some((p, rest)) = self.parts.split_first() {
            if self.at < p.len() {
                break;
            }
            self.parts = rest;
            self.at = 0;
        }
    }

    fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// Appends up to `n` bytes' worth of slices to `out`; returns how many bytes.
    fn take_into(&mut self, n: usize, out: &mut Vec<&'a [u8]>) -> usize {
        let mut taken = 0;
        while taken < n {
            let Some(p) = self.parts.first() else {
                break;
            };
            let k = (p.len() - self.at).min(n - taken);
            out.push(&p[self.at..self.at + k]);
            self.at += k;
            taken += k;
            self.skip_empty();
        }
        taken
    }
}

/// Pads its content to its own 64-byte cache line(s).
#[repr(C, align(64))]
struct Pad<T>(T);

#[repr(C)]
struct Meta {
    tag: AtomicU32,
    kind: AtomicU32,
    /// Data bytes, a power of two.
    capacity: AtomicU64,
    /// Most messages the ring may hold, 0 for no limit.
    maxsize: AtomicU64,
    /// Fingerprint of the message type, checked on attach (0: untyped).
    type_hash: AtomicU64,
    /// [`CLOSED`] | [`SEALED`].
    flags: AtomicU32,
    _r: u32,
}

#[repr(C)]
struct ProdSide {
    lock: UnsafeCell<libc::pthread_mutex_t>,
    /// Messages fully committed (a streamed message counts at its LAST frame).
    put_count: AtomicU64,
    /// The last (tail, put_count) pair known to be fully committed; the
    /// recovery log (see README).
    ok_tail: AtomicU64,
    ok_count: AtomicU64,
    /// The writer's last view of `head`.
    head_cache: AtomicU64,
    /// Sequence number of the last stream started (29 bits, never 0).
    stream_seq: AtomicU64,
    /// Sequence of the stream being written now, 0 if none.
    stream_open: AtomicU64,
}

#[repr(C)]
struct ConsSide {
    lock: UnsafeCell<libc::pthread_mutex_t>,
    /// Messages consumed (delivered or dropped as orphans).
    get_count: AtomicU64,
    ok_head: AtomicU64,
    ok_count: AtomicU64,
    /// The reader's last view of `tail`.
    tail_cache: AtomicU64,
}

/// A futex word: bit 0 is [`ARMED`] (someone is about to sleep or sleeps on
/// it), the other bits an epoch that every wake-up bumps.
///
/// | word | meaning | who moves it |
/// |---|---|---|
/// | `e << 1` | nobody sleeps | a sleeper sets `ARMED` before its last check |
/// | `e << 1 \| ARMED` | sleepers may be in `futex_wait(word)` | the first waker CASes it to `(e + 1) << 1` and calls `futex_wake` |
///
/// Only the *first* waker after a sleeper armed the word pays for a system
/// call; the next ones see `ARMED` clear and return at once. (A waiter count
/// instead would make every waker call `futex_wake` until the sleeper got a
/// CPU back, one system call per message on a busy machine.)
#[repr(C)]
struct WaitWord {
    word: AtomicU32,
    _r: u32,
}

/// Bit 0 of a [`WaitWord`]: a sleeper is (about to be) parked.
const ARMED: u32 = 1;

#[repr(C)]
struct JoinSide {
    /// `task_done` calls so far (never more than `put_count`).
    done: AtomicU64,
    wait: WaitWord,
}

/// The control block. Every field another process writes is an atomic or a
/// pthread mutex reached only through raw pointers.
#[repr(C)]
pub(crate) struct RingBlock {
    meta: Pad<Meta>,
    prod: Pad<ProdSide>,
    tail: Pad<AtomicU64>,
    cons: Pad<ConsSide>,
    head: Pad<AtomicU64>,
    data_wait: Pad<WaitWord>,
    space_wait: Pad<WaitWord>,
    join: Pad<JoinSide>,
}

const _: () = assert!(std::mem::size_of::<RingBlock>().is_multiple_of(64));
const _: () = assert!(std::mem::align_of::<RingBlock>() == 64);

// SAFETY: repr(C) all the way down; the tag (an AtomicU32) is the first field
// of the first field, at offset 0; the rest are atomics and pthread mutexes
// touched only through raw pointers by the pthread functions; no pointers; an
// all-zero block is a valid unpublished state.
unsafe impl Block for RingBlock {
    const TAG: u32 = u32::from_le_bytes(*b"RNG1");
    const NAME: &'static str = "shmproc::ipc ring";
}

/// FNV-1a of a type name: a cheap check that both sides agree on `T`.
pub(crate) fn type_hash(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h | 1
}

#[inline]
fn pad8(n: u64) -> u64 {
    (n + 7) & !7
}

#[inline]
fn frame_size(len: u64) -> u64 {
    HEADER + pad8(len)
}

#[inline]
fn header(len: u32, kind: u32, seq: u64) -> u64 {
    len as u64 | (kind as u64) << 32 | (seq & SEQ_MASK) << 35
}

const SEQ_MASK: u64 = (1 << 29) - 1;

/// How long an operation may block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// As long as it takes.
    Forever,
    /// Until this instant, then [`Error::Timeout`].
    Until(Instant),
    /// Not at all (the `_nowait` variants): locks still get a short grace
    /// ([`LOCK_GRACE`]) so that another process in the middle of a put or get
    /// is not mistaken for a full or empty queue.
    Never,
}

/// How long a `Wait::Never` operation waits for a lock held by a peer that is
/// in the middle of an operation.
pub(crate) const LOCK_GRACE: Duration = Duration::from_millis(10);

impl Wait {
    /// `Until(now + d)`, or `Forever` if that overflows.
    pub(crate) fn after(d: Duration) -> Wait {
        match Instant::now().checked_add(d) {
            Some(t) => Wait::Until(t),
            None => Wait::Forever,
        }
    }

    fn lock_deadline(self) -> Option<Instant> {
        match self {
            Wait::Forever => None,
            Wait::Until(t) => Some(t),
            Wait::Never => Instant::now().checked_add(LOCK_GRACE),
        }
    }
}

/// Slow-path checks a ring calls while it waits: is the other side gone?
pub(crate) trait Peer {
    /// Called (rarely) by a blocked reader: `Err(Error::Eof)` if nobody can
    /// ever write again.
    fn check_readable(&self) -> Result<()> {
        Ok(())
    }
    /// Called on every send (keep it cheap): `Err(Error::BrokenPipe)` if every
    /// reader has closed.
    fn check_writable_fast(&self) -> Result<()> {
        Ok(())
    }
    /// Called (rarely) by a blocked writer: `Err(Error::BrokenPipe)` if nobody
    /// can ever read again.
    fn check_writable(&self) -> Result<()> {
        Ok(())
    }
}

/// No peer tracking (queues: any process may come and read or write).
pub(crate) struct NoPeer;
impl Peer for NoPeer {}

/// A ring attached in this process.
#[derive(Debug, Clone)]
pub(crate) struct Ring {
    place: Place,
    cap: u64,
    mask: u64,
    /// Offset of the data area in the segment (bounds-checked at attach).
    data_off: usize,
    maxsize: u64,
}

/// Holds a ring's pthread lock; unlocks on drop. Not `Send`: a pthread mutex
/// is unlocked by the thread that locked it.
struct LockGuard<'a> {
    m: *mut libc::pthread_mutex_t,
    _ring: PhantomData<&'a Ring>,
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: this thread locked `m` when the guard was made; the ring (and
        // so the mapping) outlives the guard.
        let _ = unsafe { raw::unlock(self.m) };
    }
}

/// Locks `m`; `Ok(None)` when `deadline` passed first.
fn lock_raw<'a>(
    m: *mut libc::pthread_mutex_t,
    deadline: Option<Instant>,
) -> Result<Option<(LockGuard<'a>, raw::Locked)>> {
    // SAFETY: `m` points to a mutex initialised by `Ring::create` (the tag was
    // published after init) in a mapping that outlives the guard.
    let r = unsafe {
        match deadline {
            None => raw::lock(m),
            Some(d) => raw::lock_until(m, d),
        }
    };
    match r {
        Ok(how) => Ok(Some((
            LockGuard {
                m,
                _ring: PhantomData,
            },
            how,
        ))),
        Err(Error::Timeout) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Sleeps on `ww` until `ready` gives an answer.
///
/// `ready` is cheap (atomic loads) and is polled while spinning; `slow` may
/// read `/proc` and runs only before each sleep. Sleeps last at most [`TICK`],
/// so `slow` runs at least every 100 ms: a waiter never hangs on a dead peer.
/// Returns `Err(Error::Timeout)` when `wait` runs out.
///
/// No lost wake-up: the waiter sets `ARMED` with a SeqCst RMW, issues a SeqCst
/// fence and then reads the condition; a waker changes the condition, issues a
/// SeqCst fence and reads the word. Between the two fences, either the waker
/// sees `ARMED` (and bumps the word and wakes: the waiter's `futex_wait` on the
/// armed value then returns at once or is woken), or the waiter sees the new
/// condition.
fn park<R>(
    ww: &WaitWord,
    wait: Wait,
    mut ready: impl FnMut() -> Option<Result<R>>,
    mut slow: impl FnMut() -> Option<Result<R>>,
) -> Result<R> {
    let deadline = match wait {
        Wait::Never => return ready().or_else(slow).unwrap_or(Err(Error::Timeout)),
        Wait::Forever => None,
        Wait::Until(t) => Some(t),
    };
    if let Some(r) = spin_then_yield(&mut ready) {
        return r;
    }
    loop {
        // SYNC POINT: arming, paired with the waker's fence in `wake`.
        let v = ww.word.fetch_or(ARMED, Ordering::SeqCst) | ARMED;
        fence(Ordering::SeqCst);
        // Leaving with ARMED still set costs the next waker one spare
        // futex_wake, nothing more.
        if let Some(r) = ready().or_else(&mut slow) {
            return r;
        }
        let timeout = match deadline {
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(Error::Timeout);
                }
                left.min(TICK)
            }
            None => TICK,
        };
        futex::wait(&ww.word, v, Some(timeout));
    }
}

/// Polls `ready` for the spin budget ([`crate::sync::spin`]): a few
/// microseconds of pure spinning, then with `sched_yield` between polls, so
/// that a peer waiting for a CPU (same core, or a busy machine) can run and
/// answer instead of us burning the time slice it needs.
#[inline]
fn spin_then_yield<R>(ready: &mut impl FnMut() -> Option<R>) -> Option<R> {
    // The same bounded spin-then-yield every waiter in the crate uses.
    crate::sync::spin_for(ready)
}

/// Wakes the sleepers of `ww` if the word is armed. The caller has just
/// published a change of condition with a Release store or RMW.
#[inline]
fn wake(ww: &WaitWord) {
    // SYNC POINT: pairs with the fence after arming in `park`.
    fence(Ordering::SeqCst);
    // Relaxed: ordered by the fence above.
    let w = ww.word.load(Ordering::Relaxed);
    if w & ARMED != 0 {
        wake_cold(ww, w);
    }
}

#[cold]
fn wake_cold(ww: &WaitWord, mut w: u32) {
    while w & ARMED != 0 {
        // SYNC POINT: the new epoch makes a sleeper's futex_wait on the armed
        // value fail with EAGAIN if it has not slept yet.
        match ww.word.compare_exchange(
            w,
            (w & !ARMED).wrapping_add(2),
            Ordering::SeqCst,
            Ordering::Relaxed,
        ) {
            Ok(_) => {
                futex::wake_all(&ww.word);
                return;
            }
            // Another waker disarmed it (done), or the epoch moved: re-check.
            Err(now) => w = now,
        }
    }
}

/// Unconditional wake (close, pipe end release, abandoned stream).
fn wake_always(ww: &WaitWord) {
    // SYNC POINT: SeqCst bump after the caller's change of condition.
    ww.word.fetch_add(2, Ordering::SeqCst);
    futex::wake_all(&ww.word);
}

/// Progress of a reader through a streamed message.
struct Assembly {
    seq: u64,
    total: u64,
}

enum StreamWait {
    /// More frames are available.
    More,
    /// The writer gave up or died; the partial message is dropped.
    Abandoned,
}

impl Ring {
    /// Bytes a ring of `capacity` needs in a segment (block + data).
    pub(crate) fn footprint(capacity: usize) -> usize {
        std::mem::size_of::<RingBlock>() + capacity
    }

    /// Rounds a requested capacity to a valid one.
    pub(crate) fn round_capacity(capacity: usize) -> Result<usize> {
        let c = capacity
            .max(MIN_CAPACITY)
            .checked_next_power_of_two()
            .filter(|&c| c <= MAX_CAPACITY)
            .ok_or_else(|| {
                Error::InvalidArgument(format!("ring capacity {capacity} is too large"))
            })?;
        Ok(c)
    }

    /// Makes a ring of `capacity` data bytes (a power of two, see
    /// [`Ring::round_capacity`]) in `seg`.
    pub(crate) fn create(
        seg: &Arc<Segment>,
        capacity: usize,
        kind: u32,
        maxsize: u64,
        type_hash: u64,
    ) -> Result<Ring> {
        let capacity = Self::round_capacity(capacity)?;
        let place = Place::alloc::<RingBlock>(Some(seg), capacity)?;
        let b = place.block::<RingBlock>();
        // Relaxed: published by the Release tag store in `publish`.
        b.meta.0.kind.store(kind, Ordering::Relaxed);
        b.meta.0.capacity.store(capacity as u64, Ordering::Relaxed);
        b.meta.0.maxsize.store(maxsize, Ordering::Relaxed);
        b.meta.0.type_hash.store(type_hash, Ordering::Relaxed);
        // SAFETY: the block was just allocated (zeroed, aligned, mapped while
        // `place.seg` lives) and is not published yet, so nobody else uses it.
        unsafe {
            raw::init(b.prod.0.lock.get())?;
            raw::init(b.cons.0.lock.get())?;
        }
        place.publish::<RingBlock>();
        Self::from_place(place, kind, type_hash)
    }

    /// Attaches to the ring at `offset` in `seg`, checking its kind and type.
    pub(crate) fn attach(
        seg: Arc<Segment>,
        offset: u64,
        kind: u32,
        type_hash: u64,
    ) -> Result<Ring> {
        let place = Place::attach_in::<RingBlock>(seg, offset, RingBlock::TAG)?;
        Self::from_place(place, kind, type_hash)
    }

    fn from_place(place: Place, want_kind: u32, want_hash: u64) -> Result<Ring> {
        let b = place.block::<RingBlock>();
        // Relaxed: ordered after the Acquire tag load in attach (or written by
        // this thread in create).
        let kind = b.meta.0.kind.load(Ordering::Relaxed);
        let hash = b.meta.0.type_hash.load(Ordering::Relaxed);
        let cap = b.meta.0.capacity.load(Ordering::Relaxed);
        let maxsize = b.meta.0.maxsize.load(Ordering::Relaxed);
        if kind != want_kind || hash != want_hash {
            return Err(Error::TypeMismatch {
                expected: format!("ring kind {want_kind} of type {want_hash:#x}"),
                found: format!("ring kind {kind} of type {hash:#x}"),
            });
        }
        if !cap.is_power_of_two() || cap < MIN_CAPACITY as u64 || cap > MAX_CAPACITY as u64 {
            return Err(Error::Corrupt(format!("ring capacity {cap}")));
        }
        let data_off = place.offset + std::mem::size_of::<RingBlock>();
        place.seg.region("ring data", data_off as u64, cap, 8)?;
        Ok(Ring {
            place,
            cap,
            mask: cap - 1,
            data_off,
            maxsize,
        })
    }

    /// Offset of the ring's block in its segment.
    pub(crate) fn offset(&self) -> u64 {
        self.place.offset as u64
    }

    /// The segment holding the ring.
    pub(crate) fn segment(&self) -> &Arc<Segment> {
        &self.place.seg
    }

    /// Data capacity in bytes.
    pub(crate) fn capacity(&self) -> usize {
        self.cap as usize
    }

    /// The message-count bound (0: none).
    pub(crate) fn maxsize(&self) -> u64 {
        self.maxsize
    }

    #[inline]
    fn block(&self) -> &RingBlock {
        self.place.block::<RingBlock>()
    }

    /// Largest frame: a quarter of the ring, so a writer never waits for
    /// more than a quarter of the ring to drain.
    #[inline]
    fn max_frame(&self) -> u64 {
        self.cap / 4
    }

    #[inline]
    fn data(&self) -> *mut u8 {
        // SAFETY: data_off..data_off+cap was bounds-checked at attach and the
        // segment stays mapped while `self.place.seg` lives.
        unsafe { self.place.seg.as_ptr().add(self.data_off) }
    }

    /// Copies `src` into the ring at position `pos`, wrapping around.
    ///
    /// Only the producer-lock holder calls this, for bytes between `tail` and
    /// `head + cap`, which no reader touches until `tail` moves past them.
    #[inline]
    fn write_at(&self, pos: u64, src: &[u8]) {
        debug_assert!(src.len() as u64 <= self.cap);
        let off = (pos & self.mask) as usize;
        let first = src.len().min(self.cap as usize - off);
        // SAFETY: off < cap and off + first <= cap, so both copies stay in the
        // bounds-checked data area; the protocol gives this writer exclusive
        // access to these bytes (see the doc comment); src is local memory and
        // cannot overlap shared memory it does not alias.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), self.data().add(off), first);
            std::ptr::copy_nonoverlapping(src.as_ptr().add(first), self.data(), src.len() - first);
        }
    }

    /// Copies `len` bytes at position `pos` out of the ring to `dst`, wrapping
    /// around.
    ///
    /// Only the consumer-lock holder calls this, for bytes between `head` and
    /// `tail`, which no writer touches until `head` moves past them.
    ///
    /// # Safety
    /// `dst` must be valid for writes of `len` bytes, `len <= cap`.
    #[inline]
    unsafe fn read_raw(&self, pos: u64, dst: *mut u8, len: usize) {
        debug_assert!(len as u64 <= self.cap);
        let off = (pos & self.mask) as usize;
        let first = len.min(self.cap as usize - off);
        // SAFETY: off + first <= cap and len - first <= cap, so both reads stay
        // in the bounds-checked data area; the protocol gives this reader
        // exclusive access to these bytes; `dst` is valid per the caller and
        // is process-local memory, so it does not overlap the ring.
        unsafe {
            std::ptr::copy_nonoverlapping(self.data().add(off), dst, first);
            std::ptr::copy_nonoverlapping(self.data(), dst.add(first), len - first);
        }
    }

    /// Copies bytes at position `pos` out of the ring into `dst`.
    #[inline]
    fn read_at(&self, pos: u64, dst: &mut [u8]) {
        // SAFETY: `dst` is a live exclusive slice of its own length.
        unsafe { self.read_raw(pos, dst.as_mut_ptr(), dst.len()) }
    }

    /// Appends `len` bytes at `pos` to `out` (no zero-filling first).
    #[inline]
    fn read_append(&self, pos: u64, len: usize, out: &mut Vec<u8>) {
        out.reserve(len);
        let start = out.len();
        // SAFETY: `reserve` made room for `len` more bytes after `start`; the
        // copy initialises exactly those bytes before `set_len` exposes them.
        unsafe {
            self.read_raw(pos, out.as_mut_ptr().add(start), len);
            out.set_len(start + len);
        }
    }

    // ---- flags -----------------------------------------------------------------

    #[inline]
    fn flags(&self) -> u32 {
        // SYNC POINT: Acquire pairs with the SeqCst fetch_or in close/seal.
        self.block().meta.0.flags.load(Ordering::Acquire)
    }

    /// Whether `close` was called.
    pub(crate) fn is_closed(&self) -> bool {
        self.flags() & CLOSED != 0
    }

    /// Closes the ring: puts fail with [`Error::Closed`] from now on, blocked
    /// puts wake with it, and gets return it once the ring is drained.
    pub(crate) fn close(&self) -> Result<()> {
        let b = self.block();
        // SYNC POINT: SeqCst, read by every put under the producer lock.
        b.meta.0.flags.fetch_or(CLOSED, Ordering::SeqCst);
        wake_always(&b.space_wait.0);
        wake_always(&b.data_wait.0);
        self.seal(None)?;
        Ok(())
    }

    /// Takes the producer lock once after `CLOSED` is set: whatever put was in
    /// flight has committed or given up, and none can commit again. Then sets
    /// `SEALED` so readers may report `Closed` on an empty ring.
    fn seal(&self, lock_deadline: Option<Instant>) -> Result<bool> {
        let b = self.block();
        let Some((g, how)) = lock_raw(b.prod.0.lock.get(), lock_deadline)? else {
            return Ok(false);
        };
        if how == raw::Locked::OwnerDied {
            self.recover_prod();
        }
        // SYNC POINT: SeqCst; readers Acquire-load the flags.
        b.meta.0.flags.fetch_or(SEALED, Ordering::SeqCst);
        drop(g);
        wake_always(&b.data_wait.0);
        Ok(true)
    }

    // ---- counts ----------------------------------------------------------------

    /// Messages committed and not yet consumed (approximate while others work).
    pub(crate) fn len(&self) -> u64 {
        let b = self.block();
        // Relaxed: a snapshot of two counters that only grow; no data is read
        // on the strength of it.
        let got = b.cons.0.get_count.load(Ordering::Relaxed);
        let put = b.prod.0.put_count.load(Ordering::Relaxed);
        put.saturating_sub(got)
    }

    /// Messages committed so far.
    pub(crate) fn put_count(&self) -> u64 {
        // Relaxed is enough: a caller that took a message has already
        // Acquire-loaded the `tail` that was Release-stored after this count
        // was bumped, so it sees at least that count (happens-before).
        self.block().prod.0.put_count.load(Ordering::Relaxed)
    }

    // ---- producer side ---------------------------------------------------------

    /// Rolls the producer side back to its last fully committed state after a
    /// writer died holding the lock (the caller holds the lock now).
    fn recover_prod(&self) {
        let p = &self.block().prod.0;
        // Relaxed: all these are owned by the producer-lock holder (us), and the
        // lock orders them against the dead holder's writes.
        let tail = self.block().tail.0.load(Ordering::Relaxed);
        if tail == p.ok_tail.load(Ordering::Relaxed) {
            // The dead writer never committed its last frame: undo a count
            // bump it may have made just before.
            p.put_count
                .store(p.ok_count.load(Ordering::Relaxed), Ordering::Relaxed);
        } else {
            // It committed the frame (count first, then tail) but died before
            // updating the log.
            p.ok_tail.store(tail, Ordering::Relaxed);
            p.ok_count
                .store(p.put_count.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        // SYNC POINT: Release; a reader assembling this stream Acquire-loads it.
        p.stream_open.store(0, Ordering::Release);
        // Bytes past `tail` are an uncommitted partial frame: they are simply
        // overwritten by the next frame. A stream's committed frames without
        // its LAST are dropped by readers (they see it abandoned).
        wake_always(&self.block().data_wait.0);
    }

    fn lock_prod(&self, wait: Wait) -> Result<LockGuard<'_>> {
        match lock_raw(self.block().prod.0.lock.get(), wait.lock_deadline())? {
            Some((g, how)) => {
                if how == raw::Locked::OwnerDied {
                    self.recover_prod();
                }
                Ok(g)
            }
            None => Err(Error::Timeout),
        }
    }

    /// Free bytes as the producer sees them; reloads `head` only when the
    /// cached view is not enough for `need`.
    #[inline]
    fn free_for(&self, tail: u64, need: u64) -> Result<bool> {
        let b = self.block();
        let p = &b.prod.0;
        // Relaxed: owned by the producer-lock holder.
        let cached = p.head_cache.load(Ordering::Relaxed);
        if self.cap - tail.wrapping_sub(cached).min(self.cap) >= need {
            return Ok(true);
        }
        // SYNC POINT: Acquire pairs with the reader's Release head store: the
        // bytes before `head` are no longer read.
        let head = b.head.0.load(Ordering::Acquire);
        let used = tail.wrapping_sub(head);
        if used > self.cap {
            return Err(Error::Corrupt(format!(
                "ring head {head} and tail {tail} are {used} bytes apart (capacity {})",
                self.cap
            )));
        }
        p.head_cache.store(head, Ordering::Relaxed);
        Ok(self.cap - used >= need)
    }

    /// Waits (holding the producer lock) until `need` bytes are free.
    fn wait_space(&self, tail: u64, need: u64, wait: Wait, peer: &dyn Peer) -> Result<()> {
        if self.free_for(tail, need)? {
            return Ok(());
        }
        park(
            &self.block().space_wait.0,
            wait,
            || {
                if self.flags() & CLOSED != 0 {
                    return Some(Err(Error::Closed));
                }
                match self.free_for(tail, need) {
                    Ok(true) => Some(Ok(())),
                    Ok(false) => None,
                    Err(e) => Some(Err(e)),
                }
            },
            || peer.check_writable().err().map(Err),
        )
    }

    /// Waits (holding the producer lock) until fewer than `maxsize` messages
    /// are in the ring.
    fn wait_count(&self, wait: Wait, peer: &dyn Peer) -> Result<()> {
        let ok = || self.len() < self.maxsize;
        if ok() {
            return Ok(());
        }
        park(
            &self.block().space_wait.0,
            wait,
            || {
                if self.flags() & CLOSED != 0 {
                    Some(Err(Error::Closed))
                } else if ok() {
                    Some(Ok(()))
                } else {
                    None
                }
            },
            || peer.check_writable().err().map(Err),
        )
    }

    /// Writes one frame at `tail` (space already checked) and returns the new tail.
    #[inline]
    fn put_frame(&self, tail: u64, kind: u32, seq: u64, parts: &[&[u8]]) -> u64 {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        self.write_at(tail, &header(len as u32, kind, seq).to_le_bytes());
        let mut pos = tail + HEADER;
        for p in parts {
            self.write_at(pos, p);
            pos += p.len() as u64;
        }
        tail + frame_size(len as u64)
    }

    /// Publishes everything up to `new_tail`; counts a message if `complete`.
    #[inline]
    fn commit_tail(&self, new_tail: u64, complete: bool) {
        let b = self.block();
        let p = &b.prod.0;
        // Relaxed: owned by the producer-lock holder; published to readers by
        // the Release tail store below.
        let count = p.put_count.load(Ordering::Relaxed) + complete as u64;
        if complete {
            p.put_count.store(count, Ordering::Relaxed);
        }
        // SYNC POINT: Release publishes the frame bytes and put_count to the
        // reader's Acquire load of `tail`.
        b.tail.0.store(new_tail, Ordering::Release);
        // Relaxed: the recovery log is read only by a later lock holder.
        p.ok_count.store(count, Ordering::Relaxed);
        p.ok_tail.store(new_tail, Ordering::Relaxed);
        wake(&b.data_wait.0);
    }

    /// Sends one message (whole or streamed), waiting for room until `deadline`.
    ///
    /// # Errors
    /// [`Error::Timeout`] at the deadline (a partly streamed message is then
    /// abandoned: readers drop it whole); [`Error::Closed`] if the ring is
    /// closed; the peer's errors ([`Error::BrokenPipe`]); [`Error::Corrupt`].
    pub(crate) fn send(&self, msg: &[u8], wait: Wait, peer: &dyn Peer) -> Result<()> {
        self.send_parts(&[msg], wait, peer)
    }

    /// As [`send`](Ring::send), the message being the concatenation of
    /// `parts` (a body and a type tag, without copying them together).
    pub(crate) fn send_parts(&self, parts: &[&[u8]], wait: Wait, peer: &dyn Peer) -> Result<()> {
        let len = parts.iter().map(|p| p.len() as u64).sum::<u64>();
        if len > MAX_MESSAGE {
            return Err(Error::InvalidArgument(format!(
                "message of {len} bytes exceeds the {MAX_MESSAGE}-byte limit"
            )));
        }
        let _g = self.lock_prod(wait)?;
        if self.flags() & CLOSED != 0 {
            return Err(Error::Closed);
        }
        peer.check_writable_fast()?;
        if self.maxsize > 0 {
            self.wait_count(wait, peer)?;
        }
        let b = self.block();
        // Relaxed: the producer lock makes us the only writer of `tail`.
        let tail = b.tail.0.load(Ordering::Relaxed);
        let size = frame_size(len);
        if size <= self.max_frame() {
            self.wait_space(tail, size, wait, peer)?;
            let new_tail = self.put_frame(tail, WHOLE, 0, parts);
            self.commit_tail(new_tail, true);
            return Ok(());
        }
        let r = self.send_stream(tail, parts, len, wait, peer);
        // SYNC POINT: Release; a reader Acquire-loads it after draining.
        b.prod.0.stream_open.store(0, Ordering::Release);
        if r.is_err() {
            // Let an assembling reader notice the abandoned stream now.
            wake_always(&b.data_wait.0);
        }
        r
    }

    #[cold]
    fn send_stream(
        &self,
        mut tail: u64,
        parts: &[&[u8]],
        len: u64,
        wait: Wait,
        peer: &dyn Peer,
    ) -> Result<()> {
        let p = &self.block().prod.0;
        // Relaxed: owned by the producer-lock holder.
        let seq = (p.stream_seq.load(Ordering::Relaxed) % SEQ_MASK) + 1;
        p.stream_seq.store(seq, Ordering::Relaxed);
        // Relaxed: published by the Release tail store of the FIRST frame.
        p.stream_open.store(seq, Ordering::Relaxed);
        let room = (self.max_frame() - HEADER) as usize;
        let total = len.to_le_bytes();
        let mut rest = Cursor::new(parts);
        self.wait_space(tail, self.max_frame(), wait, peer)?;
        let mut first = vec![&total[..]];
        rest.take_into(room - total.len(), &mut first);
        tail = self.put_frame(tail, FIRST, seq, &first);
        self.commit_tail(tail, false);
        let mut chunk = Vec::new();
        while !rest.is_empty() {
            chunk.clear();
            let n = rest.take_into(room, &mut chunk);
            let kind = if rest.is_empty() { LAST } else { MIDDLE };
            self.wait_space(tail, frame_size(n as u64), wait, peer)?;
            if self.flags() & CLOSED != 0 {
                return Err(Error::Closed);
            }
            tail = self.put_frame(tail, kind, seq, &chunk);
            self.commit_tail(tail, kind == LAST);
        }
        Ok(())
    }

    // ---- consumer side ---------------------------------------------------------

    fn recover_cons(&self) {
        let b = self.block();
        let c = &b.cons.0;
        // Relaxed: owned by the consumer-lock holder (us).
        let head = b.head.0.load(Ordering::Relaxed);
        if head == c.ok_head.load(Ordering::Relaxed) {
            c.get_count
                .store(c.ok_count.load(Ordering::Relaxed), Ordering::Relaxed);
        } else {
            c.ok_head.store(head, Ordering::Relaxed);
            c.ok_count
                .store(c.get_count.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        // A frame the dead reader was copying is still before `tail` and after
        // `head`: the next reader reads it again. Frames of a stream it had
        // partly consumed are orphans now and are dropped by the next reader.
    }

    fn lock_cons(&self, wait: Wait) -> Result<LockGuard<'_>> {
        match lock_raw(self.block().cons.0.lock.get(), wait.lock_deadline())? {
            Some((g, how)) => {
                if how == raw::Locked::OwnerDied {
                    self.recover_cons();
                }
                Ok(g)
            }
            None => Err(Error::Timeout),
        }
    }

    /// Bytes committed and not yet consumed, as the reader sees them.
    #[inline]
    fn avail(&self, head: u64) -> Result<u64> {
        let b = self.block();
        let c = &b.cons.0;
        // Relaxed: owned by the consumer-lock holder.
        let cached = c.tail_cache.load(Ordering::Relaxed);
        if cached != head {
            return Ok(cached.wrapping_sub(head));
        }
        // SYNC POINT: Acquire pairs with the writer's Release tail store: the
        // frame bytes before `tail` are visible.
        let tail = b.tail.0.load(Ordering::Acquire);
        let n = tail.wrapping_sub(head);
        if n > self.cap {
            return Err(Error::Corrupt(format!(
                "ring head {head} and tail {tail} are {n} bytes apart (capacity {})",
                self.cap
            )));
        }
        c.tail_cache.store(tail, Ordering::Relaxed);
        Ok(n)
    }

    /// Whether some committed frame is waiting (lock-free peek).
    #[inline]
    fn has_data(&self) -> bool {
        let b = self.block();
        // SYNC POINT: Acquire pairs with the Release stores of tail and head.
        b.tail.0.load(Ordering::Acquire) != b.head.0.load(Ordering::Acquire)
    }

    #[inline]
    fn commit_head(&self, new_head: u64, complete: bool) {
        let b = self.block();
        let c = &b.cons.0;
        // Relaxed: owned by the consumer-lock holder.
        let count = c.get_count.load(Ordering::Relaxed) + complete as u64;
        if complete {
            c.get_count.store(count, Ordering::Relaxed);
        }
        // SYNC POINT: Release: our reads of the frame happen before the writer
        // (Acquire-loading head) reuses its bytes.
        b.head.0.store(new_head, Ordering::Release);
        c.ok_count.store(count, Ordering::Relaxed);
        c.ok_head.store(new_head, Ordering::Relaxed);
        wake(&b.space_wait.0);
    }

    /// Reads and validates the frame header at `head` given `avail` bytes.
    #[inline]
    fn frame_at(&self, head: u64, avail: u64) -> Result<(u64, u32, u64)> {
        let mut h = [0u8; 8];
        self.read_at(head, &mut h);
        let h = u64::from_le_bytes(h);
        let len = h & 0xffff_ffff;
        let kind = ((h >> 32) & 7) as u32;
        let seq = h >> 35;
        let size = frame_size(len);
        if !(WHOLE..=LAST).contains(&kind) || size > avail || size > self.max_frame() {
            return Err(Error::Corrupt(format!(
                "bad frame header {h:#018x} at {head} ({avail} bytes committed)"
            )));
        }
        Ok((len, kind, seq))
    }

    /// Receives one message into `out`, waiting until `deadline` for one to
    /// start. A streamed message, once begun, is read to its end (or until
    /// its writer is found gone); the deadline does not cut it.
    ///
    /// # Errors
    /// [`Error::Timeout`]; [`Error::Closed`] (closed and drained); the peer's
    /// [`Error::Eof`]; [`Error::Corrupt`].
    pub(crate) fn recv(&self, out: &mut Vec<u8>, wait: Wait, peer: &dyn Peer) -> Result<()> {
        loop {
            {
                let _g = self.lock_cons(wait)?;
                if self.take_locked(out)? {
                    return Ok(());
                }
            }
            self.wait_data(wait, peer)?;
        }
    }

    /// Waits without any lock until a frame is committed.
    fn wait_data(&self, wait: Wait, peer: &dyn Peer) -> Result<()> {
        park(
            &self.block().data_wait.0,
            wait,
            || {
                if self.has_data() {
                    Some(Ok(()))
                } else if self.flags() & SEALED != 0 {
                    // Sealed: no commit can follow, so empty stays empty.
                    (!self.has_data()).then_some(Err(Error::Closed))
                } else {
                    None
                }
            },
            || {
                if self.flags() & CLOSED != 0 {
                    // Closed by a process that has not sealed (yet, or ever:
                    // it may have died): seal it ourselves.
                    return match self.seal(wait.lock_deadline()) {
                        Ok(_) => None,
                        Err(e) => Some(Err(e)),
                    };
                }
                match peer.check_readable() {
                    // Re-check: the last message may have landed just before
                    // the peer left.
                    Err(e) => Some(if self.has_data() { Ok(()) } else { Err(e) }),
                    Ok(()) => None,
                }
            },
        )
    }

    /// With the consumer lock held: takes the next complete message into `out`
    /// (`Ok(true)`), or finds nothing to take (`Ok(false)`).
    fn take_locked(&self, out: &mut Vec<u8>) -> Result<bool> {
        let b = self.block();
        // Relaxed: the consumer lock makes us the only writer of `head`.
        let mut head = b.head.0.load(Ordering::Relaxed);
        let mut asm: Option<Assembly> = None;
        out.clear();
        loop {
            let avail = self.avail(head)?;
            if avail == 0 {
                let Some(a) = &asm else {
                    return Ok(false);
                };
                match self.wait_stream(a.seq, head)? {
                    StreamWait::More => continue,
                    StreamWait::Abandoned => {
                        asm = None;
                        out.clear();
                        continue;
                    }
                }
            }
            let (len, kind, seq) = self.frame_at(head, avail)?;
            let payload = head + HEADER;
            let next = head + frame_size(len);
            match kind {
                WHOLE => {
                    // A WHOLE frame while assembling: that stream was abandoned.
                    out.clear();
                    self.read_append(payload, len as usize, out);
                    self.commit_head(next, true);
                    return Ok(true);
                }
                FIRST => {
                    out.clear();
                    if len < 8 {
                        return Err(Error::Corrupt(format!("stream head of {len} bytes")));
                    }
                    let mut t = [0u8; 8];
                    self.read_at(payload, &mut t);
                    let total = u64::from_le_bytes(t);
                    if total > MAX_MESSAGE || total < len - 8 {
                        return Err(Error::Corrupt(format!(
                            "stream announces {total} bytes, first frame has {}",
                            len - 8
                        )));
                    }
                    // Reserve what was announced, bounded: a corrupt total
                    // must not make us allocate wildly.
                    out.reserve(total.min(1 << 30) as usize);
                    self.read_append(payload + 8, (len - 8) as usize, out);
                    asm = Some(Assembly { seq, total });
                    self.commit_head(next, false);
                }
                _ => match &asm {
                    Some(a) if a.seq == seq => {
                        if out.len() as u64 + len > a.total
                            || (kind == LAST && out.len() as u64 + len != a.total)
                        {
                            return Err(Error::Corrupt(format!(
                                "stream frames exceed or miss the announced {} bytes",
                                a.total
                            )));
                        }
                        self.read_append(payload, len as usize, out);
                        self.commit_head(next, kind == LAST);
                        if kind == LAST {
                            return Ok(true);
                        }
                    }
                    _ => {
                        // An orphan: the rest of a stream whose reader died
                        // (or, with a mismatched seq, of an abandoned one).
                        // Dropped; its LAST still counts as consumed.
                        self.commit_head(next, kind == LAST);
                        if asm.is_some() {
                            asm = None;
                            out.clear();
                        }
                    }
                },
            }
            head = next;
        }
    }

    /// With the consumer lock held, mid-stream and with nothing committed:
    /// waits for the stream's writer to commit more, or finds it gone.
    #[cold]
    fn wait_stream(&self, seq: u64, head: u64) -> Result<StreamWait> {
        let b = self.block();
        let more = || self.avail(head).map(|n| n > 0);
        park(
            &b.data_wait.0,
            Wait::Forever,
            || match more() {
                Ok(true) => Some(Ok(StreamWait::More)),
                Ok(false) => None,
                Err(e) => Some(Err(e)),
            },
            || {
                // SYNC POINT: Acquire pairs with the writer's Release store of
                // 0 after its last commit; the re-check below then sees that
                // commit.
                let open = b.prod.0.stream_open.load(Ordering::Acquire);
                if open != seq {
                    return Some(match more() {
                        Ok(true) => Ok(StreamWait::More),
                        Ok(false) => Ok(StreamWait::Abandoned),
                        Err(e) => Err(e),
                    });
                }
                // Is the writer alive? A robust try-lock answers: EBUSY means a
                // live holder; OwnerDied means it died (we recover for it).
                // SAFETY: the mutex was initialised before the tag was
                // published; the mapping outlives this call.
                match unsafe { raw::try_lock(b.prod.0.lock.get()) } {
                    Ok(None) => None,
                    Ok(Some(how)) => {
                        let g = LockGuard {
                            m: b.prod.0.lock.get(),
                            _ring: PhantomData,
                        };
                        if how == raw::Locked::OwnerDied {
                            self.recover_prod();
                        }
                        drop(g);
                        Some(match more() {
                            Ok(true) => Ok(StreamWait::More),
                            Ok(false) => Ok(StreamWait::Abandoned),
                            Err(e) => Err(e),
                        })
                    }
                    Err(e) => Some(Err(e)),
                }
            },
        )
    }

    /// Waits until a message can be read without blocking (`Ok(true)`), the
    /// peer is gone or the ring sealed (`Ok(true)`: recv would not block), or
    /// `deadline` passes (`Ok(false)`).
    pub(crate) fn poll(&self, wait: Wait, peer: &dyn Peer) -> Result<bool> {
        match self.wait_data(wait, peer) {
            Ok(()) | Err(Error::Eof) | Err(Error::Closed) => Ok(true),
            Err(Error::Timeout) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Wakes every blocked reader (they re-check their peer).
    pub(crate) fn wake_readers(&self) {
        wake_always(&self.block().data_wait.0);
    }

    /// Wakes every blocked writer (they re-check their peer).
    pub(crate) fn wake_writers(&self) {
        wake_always(&self.block().space_wait.0);
    }

    // ---- joinable ----------------------------------------------------------------

    /// Marks one message done.
    ///
    /// # Errors
    /// [`Error::TooManyTaskDone`] if every message put is already done.
    pub(crate) fn task_done(&self) -> Result<()> {
        let b = self.block();
        let j = &b.join.0;
        // Relaxed initial read: the CAS below validates it.
        let mut done = j.done.load(Ordering::Relaxed);
        loop {
            if done >= self.put_count() {
                return Err(Error::TooManyTaskDone);
            }
            // SYNC POINT: AcqRel; join() Acquire-loads `done`.
            match j
                .done
                .compare_exchange_weak(done, done + 1, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(d) => done = d,
            }
        }
        if done + 1 >= self.put_count() {
            wake(&j.wait);
        }
        Ok(())
    }

    /// Messages put and not yet marked done.
    pub(crate) fn unfinished(&self) -> u64 {
        // SYNC POINT: Acquire pairs with task_done's AcqRel CAS.
        let done = self.block().join.0.done.load(Ordering::Acquire);
        self.put_count().saturating_sub(done)
    }

    /// Waits until every message put has been marked done.
    pub(crate) fn join(&self, wait: Wait) -> Result<()> {
        let j = &self.block().join.0;
        park(
            &j.wait,
            wait,
            || (self.unfinished() == 0).then_some(Ok(())),
            || None,
        )
    }
}

#[cfg(test)]
pub(crate) mod test_hooks {
    //! Fault injection for unit tests: leave the ring as a dead writer would.

    use super::*;

    /// Takes the producer lock and writes a frame without committing it; the
    /// caller then "dies" (forgets the guard, as a killed process would not
    /// unlock: in tests, a thread that exits while holding a robust mutex).
    pub(crate) fn write_uncommitted(ring: &Ring, bytes: &[u8]) {
        let b = ring.block();
        let g = ring.lock_prod(Wait::Forever).expect("lock");
        let tail = b.tail.0.load(Ordering::Relaxed);
        let p = &b.prod.0;
        p.put_count
            .store(p.put_count.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        ring.put_frame(tail, WHOLE, 0, &[bytes]);
        std::mem::forget(g);
    }

    /// Starts a stream of `total` bytes, commits its FIRST frame, and "dies".
    pub(crate) fn start_stream_and_die(ring: &Ring, total: usize) {
        let b = ring.block();
        let g = ring.lock_prod(Wait::Forever).expect("lock");
        let tail = b.tail.0.load(Ordering::Relaxed);
        let p = &b.prod.0;
        p.stream_open.store(77, Ordering::Relaxed);
        let room = (ring.max_frame() - HEADER - 8) as usize;
        let data = vec![0xAB; room];
        let t = ring.put_frame(tail, FIRST, 77, &[&(total as u64).to_le_bytes(), &data]);
        ring.commit_tail(t, false);
        std::mem::forget(g);
    }

    /// Overwrites the header of the frame at `head` with `h`.
    pub(crate) fn scribble_head_frame(ring: &Ring, h: u64) {
        let b = ring.block();
        let head = b.head.0.load(Ordering::Relaxed);
        ring.write_at(head, &h.to_le_bytes());
    }
}
