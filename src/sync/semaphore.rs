//! A counting semaphore on a shared futex.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::{
    deadline_after, serde_as_handle, wait_on, wake_if_waiting, Block, Place, SyncHandle, BROKEN,
};
use crate::error::{Error, Result};
use crate::segment::Segment;

/// Largest count a semaphore can hold (the top bit marks "broken").
pub const MAX_COUNT: u32 = BROKEN - 1;

#[repr(C)]
struct SemBlock {
    tag: AtomicU32,
    /// Futex word: the count in the low 31 bits, [`BROKEN`] in the top bit.
    word: AtomicU32,
    /// Processes sleeping (or about to sleep) on `word`.
    waiters: AtomicU32,
    /// 0 for unbounded, else the largest count a release may reach.
    bound: AtomicU32,
}

// SAFETY: repr(C), tag first, only atomics; all-zero is a valid unpublished state.
unsafe impl Block for SemBlock {
    const TAG: u32 = u32::from_le_bytes(*b"SEM1");
    const NAME: &'static str = "shmproc::Semaphore";
}

/// A counting semaphore shared between processes, like Python's
/// `multiprocessing.Semaphore` / `BoundedSemaphore`.
///
/// ```
/// use shmproc::sync::Semaphore;
/// use std::time::Duration;
///
/// let s = Semaphore::new(1)?;
/// s.acquire()?;
/// assert!(!s.try_acquire()?);
/// assert!(matches!(s.acquire_timeout(Duration::from_millis(10)), Err(shmproc::Error::Timeout)));
/// s.release()?;
/// assert_eq!(s.value(), 1);
///
/// let b = Semaphore::bounded(1)?;
/// assert!(matches!(b.release(), Err(shmproc::Error::OverRelease { bound: 1 })));
/// # Ok::<(), shmproc::Error>(())
/// ```
pub struct Semaphore {
    place: Place,
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore")
            .field("value", &self.value())
            .field("broken", &self.is_broken())
            .finish()
    }
}

/// Releases one unit of a [`Semaphore`] on drop.
#[must_use = "the unit is released as soon as the guard is dropped"]
#[derive(Debug)]
pub struct SemaphoreGuard<'a> {
    sem: &'a Semaphore,
}

impl Drop for SemaphoreGuard<'_> {
    fn drop(&mut self) {
        let _ = self.sem.release();
    }
}

impl Semaphore {
    /// An unbounded semaphore with `value` units, in a segment of its own.
    pub fn new(value: u32) -> Result<Self> {
        Self::create(None, value, 0)
    }

    /// A bounded semaphore (releasing past `value` is [`Error::OverRelease`]).
    pub fn bounded(value: u32) -> Result<Self> {
        Self::create(None, value, value.max(1))
    }

    /// An unbounded semaphore placed in `seg`.
    pub fn new_in(seg: &Arc<Segment>, value: u32) -> Result<Self> {
        Self::create(Some(seg), value, 0)
    }

    /// A bounded semaphore placed in `seg`.
    pub fn bounded_in(seg: &Arc<Segment>, value: u32) -> Result<Self> {
        Self::create(Some(seg), value, value.max(1))
    }

    fn create(seg: Option<&Arc<Segment>>, value: u32, bound: u32) -> Result<Self> {
        if value > MAX_COUNT {
            return Err(Error::InvalidArgument(format!(
                "semaphore value {value} exceeds {MAX_COUNT}"
            )));
        }
        let place = Place::alloc::<SemBlock>(seg, 0)?;
        let b = place.block::<SemBlock>();
        // Relaxed: published by the Release tag store.
        b.word.store(value, Ordering::Relaxed);
        b.bound.store(bound, Ordering::Relaxed);
        place.publish::<SemBlock>();
        Ok(Semaphore { place })
    }

    /// Attaches to the semaphore a handle names.
    pub fn attach(handle: &SyncHandle) -> Result<Self> {
        Ok(Semaphore {
            place: Place::attach::<SemBlock>(handle)?,
        })
    }

    /// Attaches to a semaphore at `offset` in an open segment.
    pub fn attach_in(seg: Arc<Segment>, offset: u64) -> Result<Self> {
        Ok(Semaphore {
            place: Place::attach_in::<SemBlock>(seg, offset, SemBlock::TAG)?,
        })
    }

    /// The handle another process attaches with.
    pub fn handle(&self) -> SyncHandle {
        self.place.handle::<SemBlock>()
    }

    fn block(&self) -> &SemBlock {
        self.place.block::<SemBlock>()
    }

    fn take(word: &AtomicU32, v: u32) -> Option<Result<bool>> {
        if v & BROKEN != 0 {
            return Some(Err(Error::Broken));
        }
        if v == 0 {
            return None;
        }
        // SYNC POINT: SeqCst pairs with release()'s SeqCst RMW (see wait_on).
        match word.compare_exchange(v, v - 1, Ordering::SeqCst, Ordering::Relaxed) {
            Ok(_) => Some(Ok(true)),
            // Lost a race: re-check with a fresh value.
            Err(now) => Self::take(word, now),
        }
    }

    /// Takes one unit, waiting as long as needed.
    ///
    /// # Errors
    /// [`Error::Broken`] if the semaphore is (or becomes) broken.
    pub fn acquire(&self) -> Result<()> {
        let b = self.block();
        wait_on(&b.word, &b.waiters, None, |v| Self::take(&b.word, v)).map(|_| ())
    }

    /// Takes one unit and returns a guard that releases it on drop.
    pub fn acquire_guard(&self) -> Result<SemaphoreGuard<'_>> {
        self.acquire()?;
        Ok(SemaphoreGuard { sem: self })
    }

    /// Takes one unit if one is free now; `Ok(false)` otherwise.
    pub fn try_acquire(&self) -> Result<bool> {
        let b = self.block();
        // Acquire: pairs with release()'s RMW before we read protected data.
        let v = b.word.load(Ordering::Acquire);
        Self::take(&b.word, v).unwrap_or(Ok(false))
    }

    /// Takes one unit, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`Error::Timeout`] if it passed; [`Error::Broken`] if broken.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<()> {
        let b = self.block();
        wait_on(&b.word, &b.waiters, deadline_after(timeout), |v| {
            Self::take(&b.word, v)
        })
        .map(|_| ())
    }

    /// Returns one unit and wakes a waiter.
    ///
    /// # Errors
    /// [`Error::OverRelease`] for a bounded semaphore already at its bound,
    /// [`Error::Broken`] if broken.
    pub fn release(&self) -> Result<()> {
        let b = self.block();
        // Relaxed: the bound is immutable after publication.
        let bound = b.bound.load(Ordering::Relaxed);
        let mut err = None;
        // SYNC POINT: SeqCst RMW, paired with the waiter's SeqCst loads (wait_on).
        let r = b
            .word
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| {
                if v & BROKEN != 0 {
                    err = Some(Error::Broken);
                    return None;
                }
                if (bound != 0 && v >= bound) || v >= MAX_COUNT {
                    err = Some(Error::OverRelease {
                        bound: if bound != 0 { bound } else { MAX_COUNT },
                    });
                    return None;
                }
                Some(v + 1)
            });
        if r.is_err() {
            return Err(err.unwrap_or(Error::Broken));
        }
        wake_if_waiting(&b.word, &b.waiters, 1);
        Ok(())
    }

    /// The number of free units now (Python's `get_value`).
    pub fn value(&self) -> u32 {
        // Relaxed: a snapshot for display.
        self.block().word.load(Ordering::Relaxed) & !BROKEN
    }

    /// Marks the semaphore broken and wakes every waiter with [`Error::Broken`].
    /// For supervisors, when a process that held units died.
    pub fn mark_broken(&self) {
        let b = self.block();
        // SYNC POINT: SeqCst RMW, paired with wait_on's SeqCst loads.
        b.word.fetch_or(BROKEN, Ordering::SeqCst);
        crate::sys::futex::wake_all(&b.word);
    }

    /// Whether the semaphore was marked broken.
    pub fn is_broken(&self) -> bool {
        // Relaxed: a status snapshot.
        self.block().word.load(Ordering::Relaxed) & BROKEN != 0
    }
}

serde_as_handle!(Semaphore);
