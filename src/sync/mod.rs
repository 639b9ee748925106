//! Cross-process synchronisation primitives that live inside shared segments.
//!
//! | type | built on | when a participant dies |
//! |---|---|---|
//! | [`Mutex<T>`] | robust, process-shared pthread mutex | the next locker gets [`LockError::OwnerDied`] with the guard, never a hang |
//! | [`Semaphore`] | shared futex | a supervisor calls [`Semaphore::mark_broken`]: every waiter wakes with [`Error::Broken`] |
//! | [`Event`] | shared futex | [`Event::mark_broken`] |
//! | [`Barrier`] | shared futex | [`Barrier::mark_broken`]; a timed-out wait breaks it too, like Python's |
//!
//! Each primitive can be created in a segment of its own (`new`, a memfd that
//! nothing can leak) or placed in an existing segment (`new_in`, e.g. a named
//! one that unrelated processes open), and reached from another process through its
//! serializable handle ([`SyncHandle`]) or by passing the value itself as a
//! process argument (it serializes as its handle and re-attaches).
//!
//! Waiting spins for a short, configurable time ([`set_spin`], default 20 µs,
//! environment variable `SHMPROC_SPIN_NS`) and then sleeps on a shared futex, so
//! a waiter never burns a core for long on a small machine. Timeouts are
//! measured on the monotonic clock. The protocols are described in
//! `src/sync/README.md`.

mod barrier;
mod event;
mod mutex;
mod semaphore;
#[cfg(test)]
mod test;

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::segment::{kind, Segment, SegmentBuilder, SegmentHandle};
use crate::sys::futex;

pub use barrier::Barrier;
pub use event::Event;
pub use mutex::{LockError, Mutex, MutexGuard};
pub use semaphore::{Semaphore, SemaphoreGuard};

/// High bit of a futex word: the primitive is broken.
pub(crate) const BROKEN: u32 = 1 << 31;

/// How another process finds a primitive: its segment, offset and type tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SyncHandle {
    /// The segment holding the primitive.
    pub segment: SegmentHandle,
    /// Byte offset of the primitive in the segment.
    pub offset: u64,
    /// Type tag, checked on attach.
    pub tag: u32,
}

static SPIN_NS: AtomicU64 = AtomicU64::new(u64::MAX);
const DEFAULT_SPIN_NS: u64 = 20_000;

/// How long waiters spin before they sleep on a futex.
pub fn spin() -> Duration {
    // Relaxed: a tuning knob; any recent value will do.
    let mut ns = SPIN_NS.load(Ordering::Relaxed);
    if ns == u64::MAX {
        ns = std::env::var("SHMPROC_SPIN_NS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_SPIN_NS);
        SPIN_NS.store(ns, Ordering::Relaxed);
    }
    Duration::from_nanos(ns)
}

/// Sets how long waiters in this process spin before sleeping (0: never spin).
pub fn set_spin(d: Duration) {
    // Relaxed: see `spin`.
    SPIN_NS.store(
        d.as_nanos().min(u64::MAX as u128 - 1) as u64,
        Ordering::Relaxed,
    );
}

/// Spins until `check` returns `Some` or the spin budget is used up.
#[inline]
pub(crate) fn spin_for<R>(mut check: impl FnMut() -> Option<R>) -> Option<R> {
    if let Some(r) = check() {
        return Some(r);
    }
    let budget = spin();
    if budget.is_zero() {
        return None;
    }
    spin_cold(budget, check)
}

#[cold]
fn spin_cold<R>(budget: Duration, mut check: impl FnMut() -> Option<R>) -> Option<R> {
    // Spin on the CPU for a couple of microseconds, then yield between checks:
    // when the process we wait for shares our CPU, pure spinning would burn
    // the whole budget while it cannot run (on a 2-vCPU machine this turned a
    // 1 µs round trip into 50 µs); a yield lets it run at once.
    const PURE_SPIN: Duration = Duration::from_nanos(500);
    let start = Instant::now();
    loop {
        for _ in 0..32 {
            std::hint::spin_loop();
            if let Some(r) = check() {
                return Some(r);
            }
        }
        let elapsed = start.elapsed();
        if elapsed >= budget {
            return None;
        }
        if elapsed >= PURE_SPIN {
            std::thread::yield_now();
            if let Some(r) = check() {
                return Some(r);
            }
        }
    }
}

/// The wait loop every futex primitive shares.
///
/// `check` sees the current value of `word` and returns `Some(result)` to stop
/// (success, or an error such as [`Error::Broken`]) or `None` to keep waiting.
/// The waiter spins first, then registers in `waiters` and sleeps on `word`.
/// Returns `Err(Error::Timeout)` at the deadline.
///
/// Lost wake-ups are impossible: the waiter increments `waiters` and then reads
/// `word` (both SeqCst); a waker changes `word` and then reads `waiters` (both
/// SeqCst). In the single total order of SeqCst operations, either the waker
/// sees the waiter registered and wakes it, or the waiter sees the new value
/// (directly, or as EAGAIN from the futex call) and does not sleep.
pub(crate) fn wait_on<R>(
    word: &AtomicU32,
    waiters: &AtomicU32,
    deadline: Option<Instant>,
    mut check: impl FnMut(u32) -> Option<Result<R>>,
) -> Result<R> {
    // SYNC POINT: Acquire pairs with the waker's SeqCst RMW on `word`.
    if let Some(r) = spin_for(|| check(word.load(Ordering::Acquire))) {
        return r;
    }
    loop {
        // SYNC POINT: SeqCst registration, see the function docs.
        waiters.fetch_add(1, Ordering::SeqCst);
        let v = word.load(Ordering::SeqCst);
        if let Some(r) = check(v) {
            waiters.fetch_sub(1, Ordering::SeqCst);
            return r;
        }
        let timeout = match deadline {
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    waiters.fetch_sub(1, Ordering::SeqCst);
                    return Err(Error::Timeout);
                }
                Some(left)
            }
            None => None,
        };
        futex::wait(word, v, timeout);
        waiters.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Wakes `n` waiters of `word` if anyone is registered in `waiters`.
#[inline]
pub(crate) fn wake_if_waiting(word: &AtomicU32, waiters: &AtomicU32, n: u32) {
    // SYNC POINT: SeqCst, after the caller's SeqCst RMW on `word` (see wait_on).
    if waiters.load(Ordering::SeqCst) > 0 {
        futex::wake(word, n);
    }
}

pub(crate) fn deadline_after(d: Duration) -> Option<Instant> {
    Instant::now().checked_add(d)
}

/// A primitive's place: its segment and the byte offset of its block.
#[derive(Debug, Clone)]
pub(crate) struct Place {
    pub(crate) seg: Arc<Segment>,
    pub(crate) offset: usize,
}

/// Implemented by the `#[repr(C)]` blocks the primitives keep in shared memory.
///
/// # Safety
/// The type must be `#[repr(C)]`, consist only of atomics and plain integers (or
/// memory only touched through raw pointers), contain no pointers, and start
/// with its tag word (`AtomicU32`) at offset 0. All-zero bytes must be a valid
/// value.
pub(crate) unsafe trait Block: Sized {
    /// Tag stored in the first word once the block is initialised.
    const TAG: u32;
    /// Human-readable type name for errors.
    const NAME: &'static str;
}

impl Place {
    /// A fresh, zeroed place for `B` (plus `extra` trailing bytes) in `seg`, or
    /// in a new segment of its own when `seg` is `None`.
    pub(crate) fn alloc<B: Block>(seg: Option<&Arc<Segment>>, extra: usize) -> Result<Place> {
        let size = std::mem::size_of::<B>() + extra;
        let align = std::mem::align_of::<B>().max(64);
        let seg = match seg {
            Some(s) => {
                check_writable::<B>(s)?;
                Arc::clone(s)
            }
            // A memfd: no name in /dev/shm to leak when this process is killed;
            // other processes open it through /proc/<pid>/fd while we live.
            None => Arc::new(
                SegmentBuilder::new()
                    .kind(kind::SYNC)
                    .memfd()
                    .create(size + align)?,
            ),
        };
        let offset = seg.alloc(size, align)?;
        Ok(Place { seg, offset })
    }

    /// The block at this place.
    pub(crate) fn block<B: Block>(&self) -> &B {
        // SAFETY: the offset was bounds- and alignment-checked for B when this
        // Place was made (alloc or attach); B is a Block, so it is made of
        // atomics and tolerates concurrent access from other processes; the
        // reference cannot outlive `self.seg`, which keeps the mapping alive.
        unsafe { &*(self.seg.as_ptr().add(self.offset) as *const B) }
    }

    /// Publishes an initialised block by storing its tag (Release).
    pub(crate) fn publish<B: Block>(&self) {
        let tag = self.tag_word();
        // SYNC POINT: Release publishes the block's initial state to attachers,
        // which load the tag with Acquire in `attach`.
        tag.store(B::TAG, Ordering::Release);
    }

    fn tag_word(&self) -> &AtomicU32 {
        // SAFETY: every Block starts with an AtomicU32 tag at offset 0 (trait
        // contract); the offset is in bounds and aligned (see `block`).
        unsafe { &*(self.seg.as_ptr().add(self.offset) as *const AtomicU32) }
    }

    /// Opens the place a handle names and checks its tag.
    pub(crate) fn attach<B: Block>(h: &SyncHandle) -> Result<Place> {
        let seg = Arc::new(Segment::open_handle(&h.segment)?);
        Self::attach_in::<B>(seg, h.offset, h.tag)
    }

    pub(crate) fn attach_in<B: Block>(seg: Arc<Segment>, offset: u64, tag: u32) -> Result<Place> {
        if tag != B::TAG {
            return Err(Error::TypeMismatch {
                expected: B::NAME.into(),
                found: format!("tag {tag:#x}"),
            });
        }
        // Every primitive writes its block with atomic RMWs (and the mutex
        // through pthread calls): in a read-only mapping the first one would
        // be a SIGSEGV, so refuse here.
        check_writable::<B>(&seg)?;
        seg.region(
            B::NAME,
            offset,
            std::mem::size_of::<B>() as u64,
            std::mem::align_of::<B>(),
        )?;
        let place = Place {
            seg,
            offset: offset as usize,
        };
        // SYNC POINT: Acquire pairs with the Release in `publish`.
        let found = place.tag_word().load(Ordering::Acquire);
        if found != B::TAG {
            return Err(Error::TypeMismatch {
                expected: B::NAME.into(),
                found: format!("tag {found:#x} in shared memory"),
            });
        }
        Ok(place)
    }

    pub(crate) fn handle<B: Block>(&self) -> SyncHandle {
        SyncHandle {
            segment: self.seg.handle(),
            offset: self.offset as u64,
            tag: B::TAG,
        }
    }
}

/// Fails unless `seg` is mapped writable: a primitive's block is written with
/// atomic read-modify-writes, which fault in a read-only mapping.
fn check_writable<B: Block>(seg: &Segment) -> Result<()> {
    if seg.is_writable() {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "{} needs a writable mapping, but {:?} is mapped read-only",
            B::NAME,
            seg.handle()
        )))
    }
}

/// Implements Serialize (as the handle) and Deserialize (attach) for a primitive.
macro_rules! serde_as_handle {
    ($ty:ident $(<$g:ident : $b:path>)?) => {
        impl$(<$g: $b>)? serde::Serialize for $ty$(<$g>)? {
            fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                self.handle().serialize(s)
            }
        }
        impl<'de $(, $g: $b)?> serde::Deserialize<'de> for $ty$(<$g>)? {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let h = crate::sync::SyncHandle::deserialize(d)?;
                Self::attach(&h).map_err(serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use serde_as_handle;
