//! A reusable n-party barrier on a shared futex.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::{deadline_after, serde_as_handle, wait_on, Block, Place, SyncHandle, BROKEN};
use crate::error::{Error, Result};
use crate::segment::Segment;
use crate::sys::futex;

#[repr(C)]
struct BarrierBlock {
    tag: AtomicU32,
    /// Futex word: the generation in the low 31 bits, [`BROKEN`] in the top bit.
    generation: AtomicU32,
    /// Parties arrived in the current generation.
    arrived: AtomicU32,
    /// Number of parties.
    parties: AtomicU32,
    waiters: AtomicU32,
    _pad: u32,
}

// SAFETY: repr(C), tag first, only atomics; all-zero is a valid unpublished state.
unsafe impl Block for BarrierBlock {
    const TAG: u32 = u32::from_le_bytes(*b"BAR1");
    const NAME: &'static str = "shmproc::Barrier";
}

/// A barrier for `n` processes, like Python's `multiprocessing.Barrier`:
/// every `wait` blocks until `n` parties have called it, then all return. It
/// can be reused. If a party times out, or a supervisor calls
/// [`mark_broken`](Barrier::mark_broken) because a party died, every waiter
/// (present and future) gets [`Error::Broken`] until [`reset`](Barrier::reset)
/// (the party whose `wait_timeout` ran out gets [`Error::Timeout`]).
///
/// ```
/// use shmproc::sync::Barrier;
/// use std::time::Duration;
///
/// let b = Barrier::new(1)?;
/// assert!(b.wait()?); // the only party is the leader
/// let b2 = Barrier::new(2)?;
/// assert!(matches!(b2.wait_timeout(Duration::from_millis(5)), Err(shmproc::Error::Timeout)));
/// assert!(b2.is_broken()); // for every other party too
/// # Ok::<(), shmproc::Error>(())
/// ```
pub struct Barrier {
    place: Place,
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barrier")
            .field("parties", &self.parties())
            .field("broken", &self.is_broken())
            .finish()
    }
}

impl Barrier {
    /// A barrier for `parties` (at least 1) in a segment of its own.
    pub fn new(parties: u32) -> Result<Self> {
        Self::create(None, parties)
    }

    /// A barrier for `parties` placed in `seg`.
    pub fn new_in(seg: &Arc<Segment>, parties: u32) -> Result<Self> {
        Self::create(Some(seg), parties)
    }

    fn create(seg: Option<&Arc<Segment>>, parties: u32) -> Result<Self> {
        if parties == 0 || parties >= BROKEN {
            return Err(Error::InvalidArgument(format!(
                "a barrier needs 1 to {} parties, not {parties}",
                BROKEN - 1
            )));
        }
        let place = Place::alloc::<BarrierBlock>(seg, 0)?;
        // Relaxed: published by the Release tag store.
        place
            .block::<BarrierBlock>()
            .parties
            .store(parties, Ordering::Relaxed);
        place.publish::<BarrierBlock>();
        Ok(Barrier { place })
    }

    /// Attaches to the barrier a handle names.
    pub fn attach(handle: &SyncHandle) -> Result<Self> {
        Ok(Barrier {
            place: Place::attach::<BarrierBlock>(handle)?,
        })
    }

    /// Attaches to a barrier at `offset` in an open segment.
    pub fn attach_in(seg: Arc<Segment>, offset: u64) -> Result<Self> {
        Ok(Barrier {
            place: Place::attach_in::<BarrierBlock>(seg, offset, BarrierBlock::TAG)?,
        })
    }

    /// The handle another process attaches with.
    pub fn handle(&self) -> SyncHandle {
        self.place.handle::<BarrierBlock>()
    }

    fn block(&self) -> &BarrierBlock {
        self.place.block::<BarrierBlock>()
    }

    /// Number of parties.
    pub fn parties(&self) -> u32 {
        // Relaxed: immutable after publication.
        self.block().parties.load(Ordering::Relaxed)
    }

    /// Waits for all parties. Returns `true` in exactly one party per
    /// generation (the last to arrive).
    ///
    /// # Errors
    /// [`Error::Broken`] if the barrier is or becomes broken.
    pub fn wait(&self) -> Result<bool> {
        self.wait_deadline(None)
    }

    /// Like [`wait`](Barrier::wait), but gives up after `timeout` with
    /// [`Error::Timeout`]; the barrier is then broken for every other party
    /// (they get [`Error::Broken`], as in Python).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        self.wait_deadline(deadline_after(timeout))
    }

    fn wait_deadline(&self, deadline: Option<std::time::Instant>) -> Result<bool> {
        let b = self.block();
        // SYNC POINT: SeqCst, so the generation read here is ordered before our
        // arrival below in the total order the leader also takes part in.
        let gen = b.generation.load(Ordering::SeqCst);
        if gen & BROKEN != 0 {
            return Err(Error::Broken);
        }
        let parties = self.parties();
        // SYNC POINT: SeqCst arrival, paired with the leader's reset + bump.
        let arrived = b.arrived.fetch_add(1, Ordering::SeqCst) + 1;
        if arrived >= parties {
            // Leader: reset the count for the next generation, then release
            // everyone by bumping the generation (keeping the broken bit).
            b.arrived.store(0, Ordering::SeqCst);
            b.generation.store((gen + 1) & !BROKEN, Ordering::SeqCst);
            futex::wake_all(&b.generation);
            return Ok(true);
        }
        let r = wait_on(&b.generation, &b.waiters, deadline, |v| {
            if v & BROKEN != 0 {
                Some(Err(Error::Broken))
            } else if v != gen {
                Some(Ok(false))
            } else {
                None
            }
        });
        match r {
            Err(Error::Timeout) => {
                self.mark_broken();
                Err(Error::Timeout)
            }
            r => r,
        }
    }

    /// Breaks the barrier and wakes every waiter with [`Error::Broken`].
    pub fn mark_broken(&self) {
        let b = self.block();
        // SYNC POINT: SeqCst RMW, paired with wait_on's loads.
        b.generation.fetch_or(BROKEN, Ordering::SeqCst);
        futex::wake_all(&b.generation);
    }

    /// Whether the barrier is broken.
    pub fn is_broken(&self) -> bool {
        // Relaxed: a status snapshot.
        self.block().generation.load(Ordering::Relaxed) & BROKEN != 0
    }

    /// Returns a broken barrier to its initial state. Only call it when no
    /// party is waiting.
    pub fn reset(&self) {
        let b = self.block();
        b.arrived.store(0, Ordering::SeqCst);
        // SYNC POINT: SeqCst; a new generation number without the broken bit.
        let g = b.generation.load(Ordering::SeqCst);
        b.generation.store((g + 1) & !BROKEN, Ordering::SeqCst);
        futex::wake_all(&b.generation);
    }
}

serde_as_handle!(Barrier);
