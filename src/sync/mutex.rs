//! A robust cross-process mutex protecting a `Pod` value.

use std::cell::UnsafeCell;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use std::time::Duration;

use bytemuck::Pod;

use super::{serde_as_handle, Block, Place, SyncHandle};
use crate::error::{Error, Result};
use crate::segment::Segment;
use crate::sys::mutex as raw;

#[repr(C)]
struct MutexBlock {
    tag: AtomicU32,
    /// Byte offset of the value from the start of the block.
    data_offset: AtomicU32,
    /// size_of::<T>(), checked on attach.
    data_size: AtomicU32,
    _pad: u32,
    raw: UnsafeCell<libc::pthread_mutex_t>,
}

// SAFETY: repr(C), tag first, atomics and a pthread mutex that is only touched
// through raw pointers by the pthread functions; all-zero is a valid
// (uninitialised, unpublished) state.
unsafe impl Block for MutexBlock {
    const TAG: u32 = u32::from_le_bytes(*b"MTX1");
    const NAME: &'static str = "shmproc::Mutex";
}

fn data_offset<T>() -> usize {
    let a = std::mem::align_of::<T>().max(8);
    (std::mem::size_of::<MutexBlock>() + a - 1) & !(a - 1)
}

/// A mutex in shared memory guarding a `T: Pod`, usable from any process that
/// maps its segment. It is robust: if the holder dies, the next locker gets
/// [`LockError::OwnerDied`] carrying the guard, so it can check or repair the
/// value and carry on; the lock itself is already usable again.
///
/// ```
/// use shmproc::sync::Mutex;
///
/// let m = Mutex::new(0u64)?;
/// *m.lock()? += 1;
/// assert_eq!(*m.lock()?, 1);
///
/// // The handle is how another process attaches.
/// let m2 = Mutex::<u64>::attach(&m.handle())?;
/// *m2.lock()? += 1;
/// assert_eq!(*m.lock()?, 2);
/// # Ok::<(), shmproc::Error>(())
/// ```
pub struct Mutex<T: Pod> {
    place: Place,
    _t: PhantomData<T>,
}

// SAFETY: the value is only reached through the process-shared lock, which
// serialises access across threads as well as processes; T: Send because guards
// hand out &mut T on whichever thread locks.
unsafe impl<T: Pod + Send> Send for Mutex<T> {}
// SAFETY: as above.
unsafe impl<T: Pod + Send> Sync for Mutex<T> {}

impl<T: Pod> fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mutex")
            .field("handle", &self.handle())
            .finish()
    }
}

/// Why a lock attempt did not give a plain guard.
pub enum LockError<G> {
    /// The previous holder died while holding the lock. The lock is held now
    /// (the guard is inside) and already consistent; the protected value may be
    /// half-updated.
    OwnerDied(G),
    /// The timeout of [`Mutex::lock_timeout`] passed.
    Timeout,
    /// [`Mutex::try_lock`] found the lock held.
    WouldBlock,
    /// The OS call failed.
    Failed(Error),
}

impl<G> LockError<G> {
    /// The guard, if the lock was obtained (the `OwnerDied` case).
    pub fn into_guard(self) -> Option<G> {
        match self {
            LockError::OwnerDied(g) => Some(g),
            _ => None,
        }
    }

    /// True for [`LockError::OwnerDied`].
    pub fn is_owner_died(&self) -> bool {
        matches!(self, LockError::OwnerDied(_))
    }
}

impl<G> fmt::Debug for LockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::OwnerDied(_) => f.write_str("OwnerDied(..)"),
            LockError::Timeout => f.write_str("Timeout"),
            LockError::WouldBlock => f.write_str("WouldBlock"),
            LockError::Failed(e) => write!(f, "Failed({e:?})"),
        }
    }
}

impl<G> fmt::Display for LockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::OwnerDied(_) => f.write_str("the previous holder of the mutex died"),
            LockError::Timeout => f.write_str("timed out waiting for the mutex"),
            LockError::WouldBlock => f.write_str("the mutex is held"),
            LockError::Failed(e) => write!(f, "mutex operation failed: {e}"),
        }
    }
}

impl<G> std::error::Error for LockError<G> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LockError::Failed(e) => Some(e),
            _ => None,
        }
    }
}

impl<G> From<LockError<G>> for Error {
    fn from(e: LockError<G>) -> Self {
        match e {
            LockError::OwnerDied(_) => Error::Broken,
            LockError::Timeout => Error::Timeout,
            LockError::WouldBlock => Error::Timeout,
            LockError::Failed(e) => e,
        }
    }
}

/// Holds the lock; unlocks on drop. Not `Send`: a pthread mutex must be
/// unlocked by the thread that locked it.
#[must_use = "the mutex unlocks as soon as the guard is dropped"]
pub struct MutexGuard<'a, T: Pod> {
    mutex: &'a Mutex<T>,
    _not_send: PhantomData<*const ()>,
}

impl<T: Pod> Mutex<T> {
    /// A mutex holding `value`, in a new segment of its own.
    pub fn new(value: T) -> Result<Self> {
        Self::create(None, value)
    }

    /// A mutex holding `value`, placed in `seg`.
    pub fn new_in(seg: &Arc<Segment>, value: T) -> Result<Self> {
        Self::create(Some(seg), value)
    }

    fn create(seg: Option<&Arc<Segment>>, value: T) -> Result<Self> {
        let off = data_offset::<T>();
        let place = Place::alloc::<MutexBlock>(
            seg,
            off - std::mem::size_of::<MutexBlock>() + std::mem::size_of::<T>(),
        )?;
        let m: Mutex<T> = Mutex {
            place,
            _t: PhantomData,
        };
        let b = m.block();
        // Relaxed: published by the Release tag store in `publish`.
        b.data_offset
            .store(off as u32, std::sync::atomic::Ordering::Relaxed);
        b.data_size.store(
            std::mem::size_of::<T>() as u32,
            std::sync::atomic::Ordering::Relaxed,
        );
        // SAFETY: the block is freshly allocated, aligned, mapped for as long as
        // `m.place.seg` lives, and nobody else can know of it yet.
        unsafe { raw::init(b.raw.get())? };
        // SAFETY: the value slot lies inside the allocation (extra bytes were
        // reserved for it), aligned for T; nobody else can see it yet.
        unsafe { m.data_ptr().write(value) };
        m.place.publish::<MutexBlock>();
        Ok(m)
    }

    /// Attaches to the mutex a handle names.
    ///
    /// # Errors
    /// [`Error::TypeMismatch`] if the handle names something else, or a value
    /// of another size; errors of [`Segment::open_handle`].
    pub fn attach(handle: &SyncHandle) -> Result<Self> {
        let place = Place::attach::<MutexBlock>(handle)?;
        Self::check(place)
    }

    /// Attaches to a mutex at `offset` in an already open segment.
    pub fn attach_in(seg: Arc<Segment>, offset: u64) -> Result<Self> {
        let place = Place::attach_in::<MutexBlock>(seg, offset, <MutexBlock as Block>::TAG)?;
        Self::check(place)
    }

    fn check(place: Place) -> Result<Self> {
        let m = Mutex {
            place,
            _t: PhantomData,
        };
        let b = m.block();
        // Relaxed: ordered by the Acquire load of the tag in attach.
        let off = b.data_offset.load(std::sync::atomic::Ordering::Relaxed) as usize;
        let size = b.data_size.load(std::sync::atomic::Ordering::Relaxed) as usize;
        if off != data_offset::<T>() || size != std::mem::size_of::<T>() {
            return Err(Error::TypeMismatch {
                expected: format!("Mutex<{}>", std::any::type_name::<T>()),
                found: format!("a mutex of a {size}-byte value at offset {off}"),
            });
        }
        m.place.seg.region(
            "mutex value",
            (m.place.offset + off) as u64,
            size as u64,
            std::mem::align_of::<T>(),
        )?;
        Ok(m)
    }

    /// The handle another process attaches with.
    pub fn handle(&self) -> SyncHandle {
        self.place.handle::<MutexBlock>()
    }

    fn block(&self) -> &MutexBlock {
        self.place.block::<MutexBlock>()
    }

    fn raw(&self) -> *mut libc::pthread_mutex_t {
        self.block().raw.get()
    }

    fn data_ptr(&self) -> *mut T {
        // SAFETY: the value slot was bounds-checked at create/attach time.
        unsafe {
            self.place
                .seg
                .as_ptr()
                .add(self.place.offset + data_offset::<T>())
                .cast()
        }
    }

    fn guard(
        &self,
        how: raw::Locked,
    ) -> std::result::Result<MutexGuard<'_, T>, LockError<MutexGuard<'_, T>>> {
        let g = MutexGuard {
            mutex: self,
            _not_send: PhantomData,
        };
        match how {
            raw::Locked::Ok => Ok(g),
            raw::Locked::OwnerDied => Err(LockError::OwnerDied(g)),
        }
    }

    /// Locks, waiting as long as needed. A dead holder never blocks this: its
    /// death is reported as [`LockError::OwnerDied`].
    #[allow(clippy::type_complexity)]
    pub fn lock(&self) -> std::result::Result<MutexGuard<'_, T>, LockError<MutexGuard<'_, T>>> {
        // SAFETY: the mutex was initialised (its tag is published) and the
        // segment stays mapped while `self` lives.
        match unsafe { raw::lock(self.raw()) } {
            Ok(how) => self.guard(how),
            Err(e) => Err(LockError::Failed(e)),
        }
    }

    /// Locks without waiting: [`LockError::WouldBlock`] if held.
    #[allow(clippy::type_complexity)]
    pub fn try_lock(&self) -> std::result::Result<MutexGuard<'_, T>, LockError<MutexGuard<'_, T>>> {
        // SAFETY: as in `lock`.
        match unsafe { raw::try_lock(self.raw()) } {
            Ok(Some(how)) => self.guard(how),
            Ok(None) => Err(LockError::WouldBlock),
            Err(e) => Err(LockError::Failed(e)),
        }
    }

    /// Locks, giving up after `timeout` with [`LockError::Timeout`].
    #[allow(clippy::type_complexity)]
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> std::result::Result<MutexGuard<'_, T>, LockError<MutexGuard<'_, T>>> {
        let deadline = super::deadline_after(timeout);
        let Some(deadline) = deadline else {
            return self.lock();
        };
        // SAFETY: as in `lock`.
        match unsafe { raw::lock_until(self.raw(), deadline) } {
            Ok(how) => self.guard(how),
            Err(Error::Timeout) => Err(LockError::Timeout),
            Err(e) => Err(LockError::Failed(e)),
        }
    }
}

impl<T: Pod> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock, so no other thread or process
        // accesses the value; the slot is in bounds and aligned.
        unsafe { &*self.mutex.data_ptr() }
    }
}

impl<T: Pod> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `&mut self` makes this the only reference.
        unsafe { &mut *self.mutex.data_ptr() }
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: Pod> Drop for MutexGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: this thread holds the lock (the guard exists and is !Send).
        let _ = unsafe { raw::unlock(self.mutex.raw()) };
    }
}

serde_as_handle!(Mutex<T: Pod>);
