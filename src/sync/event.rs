//! A settable flag with waiters, on a shared futex.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::{deadline_after, serde_as_handle, wait_on, Block, Place, SyncHandle, BROKEN};
use crate::error::{Error, Result};
use crate::segment::Segment;
use crate::sys::futex;

const SET: u32 = 1;

#[repr(C)]
struct EventBlock {
    tag: AtomicU32,
    /// Futex word: [`SET`] in bit 0, [`BROKEN`] in the top bit.
    word: AtomicU32,
    waiters: AtomicU32,
    _pad: u32,
}

// SAFETY: repr(C), tag first, only atomics; all-zero is a valid unpublished state.
unsafe impl Block for EventBlock {
    const TAG: u32 = u32::from_le_bytes(*b"EVT1");
    const NAME: &'static str = "shmproc::Event";
}

/// A flag that processes can wait for, like Python's `multiprocessing.Event`.
///
/// ```
/// use shmproc::sync::Event;
/// use std::time::Duration;
///
/// let e = Event::new()?;
/// assert!(!e.is_set());
/// // Nobody set it:
/// assert!(matches!(e.wait_timeout(Duration::from_millis(5)), Err(shmproc::Error::Timeout)));
/// e.set();
/// e.wait_timeout(Duration::from_millis(5))?;
/// e.clear();
/// assert!(!e.is_set());
/// # Ok::<(), shmproc::Error>(())
/// ```
pub struct Event {
    place: Place,
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("set", &self.is_set())
            .field("broken", &self.is_broken())
            .finish()
    }
}

impl Event {
    /// A cleared event in a segment of its own.
    pub fn new() -> Result<Self> {
        Self::create(None)
    }

    /// A cleared event placed in `seg`.
    pub fn new_in(seg: &Arc<Segment>) -> Result<Self> {
        Self::create(Some(seg))
    }

    fn create(seg: Option<&Arc<Segment>>) -> Result<Self> {
        let place = Place::alloc::<EventBlock>(seg, 0)?;
        place.publish::<EventBlock>();
        Ok(Event { place })
    }

    /// Attaches to the event a handle names.
    pub fn attach(handle: &SyncHandle) -> Result<Self> {
        Ok(Event {
            place: Place::attach::<EventBlock>(handle)?,
        })
    }

    /// Attaches to an event at `offset` in an open segment.
    pub fn attach_in(seg: Arc<Segment>, offset: u64) -> Result<Self> {
        Ok(Event {
            place: Place::attach_in::<EventBlock>(seg, offset, EventBlock::TAG)?,
        })
    }

    /// The handle another process attaches with.
    pub fn handle(&self) -> SyncHandle {
        self.place.handle::<EventBlock>()
    }

    fn block(&self) -> &EventBlock {
        self.place.block::<EventBlock>()
    }

    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        let b = self.block();
        // SYNC POINT: SeqCst RMW (Release for data written before set), paired
        // with wait_on's SeqCst/Acquire loads.
        let old = b.word.fetch_or(SET, Ordering::SeqCst);
        if old & SET == 0 {
            super::wake_if_waiting(&b.word, &b.waiters, u32::MAX);
        }
    }

    /// Clears the flag.
    pub fn clear(&self) {
        // SYNC POINT: SeqCst like `set`; keeps the broken bit.
        self.block().word.fetch_and(!SET, Ordering::SeqCst);
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        // SYNC POINT: Acquire pairs with `set`, so data written before `set` is
        // visible after `is_set()` returns true.
        self.block().word.load(Ordering::Acquire) & SET != 0
    }

    fn check(v: u32) -> Option<Result<bool>> {
        if v & BROKEN != 0 {
            Some(Err(Error::Broken))
        } else if v & SET != 0 {
            Some(Ok(true))
        } else {
            None
        }
    }

    /// Waits until the flag is set.
    ///
    /// # Errors
    /// [`Error::Broken`] if the event is (or becomes) broken.
    pub fn wait(&self) -> Result<()> {
        let b = self.block();
        wait_on(&b.word, &b.waiters, None, Self::check).map(|_| ())
    }

    /// Waits at most `timeout` for the flag.
    ///
    /// # Errors
    /// [`Error::Timeout`] if it passed; [`Error::Broken`] if broken.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<()> {
        let b = self.block();
        wait_on(&b.word, &b.waiters, deadline_after(timeout), Self::check).map(|_| ())
    }

    /// Marks the event broken and wakes every waiter with [`Error::Broken`].
    pub fn mark_broken(&self) {
        let b = self.block();
        // SYNC POINT: SeqCst RMW, paired with wait_on's loads.
        b.word.fetch_or(BROKEN, Ordering::SeqCst);
        futex::wake_all(&b.word);
    }

    /// Whether the event was marked broken.
    pub fn is_broken(&self) -> bool {
        // Relaxed: a status snapshot.
        self.block().word.load(Ordering::Relaxed) & BROKEN != 0
    }
}

serde_as_handle!(Event);
