//! Robust, process-shared pthread mutexes.
//!
//! The mutex lives in shared memory. It is initialised with
//! `PTHREAD_PROCESS_SHARED` and `PTHREAD_MUTEX_ROBUST`: when the holder dies, the
//! kernel's robust-futex list hands the lock to the next locker with `EOWNERDEAD`.
//! [`lock`] then calls `pthread_mutex_consistent` at once, so the mutex can never
//! become `ENOTRECOVERABLE` through this API, and reports the death to the caller.

use std::time::Instant;

use crate::error::{Error, Result};

extern "C" {
    // glibc >= 2.30; not declared by the libc crate.
    fn pthread_mutex_clocklock(
        mutex: *mut libc::pthread_mutex_t,
        clock: libc::clockid_t,
        abstime: *const libc::timespec,
    ) -> libc::c_int;
}

/// How a successful lock was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Locked {
    /// Normal acquisition.
    Ok,
    /// The previous holder died while holding the lock; the mutex has already
    /// been made consistent, but the protected data may be half-updated.
    OwnerDied,
}

fn check(r: libc::c_int, what: &str) -> Result<()> {
    if r == 0 {
        Ok(())
    } else {
        Err(Error::io(what, std::io::Error::from_raw_os_error(r)))
    }
}

/// Initialises a robust, process-shared mutex at `m`.
///
/// # Safety
/// - `m` must be valid for writes, aligned for `pthread_mutex_t`, and live in
///   memory that stays mapped while any process uses the mutex;
/// - no process may be using a mutex at `m` (this is a fresh initialisation).
pub(crate) unsafe fn init(m: *mut libc::pthread_mutex_t) -> Result<()> {
    let mut attr = std::mem::MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
    // SAFETY: attr is a local we own; pthread_mutexattr_init initialises it.
    let r = unsafe { libc::pthread_mutexattr_init(attr.as_mut_ptr()) };
    check(r, "pthread_mutexattr_init")?;
    let attr_ptr = attr.as_mut_ptr();
    let result = (|| {
        // SAFETY: attr_ptr points to an initialised attribute object.
        let r =
            unsafe { libc::pthread_mutexattr_setpshared(attr_ptr, libc::PTHREAD_PROCESS_SHARED) };
        check(r, "pthread_mutexattr_setpshared")?;
        // SAFETY: as above.
        let r = unsafe { libc::pthread_mutexattr_setrobust(attr_ptr, libc::PTHREAD_MUTEX_ROBUST) };
        check(r, "pthread_mutexattr_setrobust")?;
        // SAFETY: the caller guarantees `m` is valid, aligned and unused.
        let r = unsafe { libc::pthread_mutex_init(m, attr_ptr) };
        check(r, "pthread_mutex_init")
    })();
    // SAFETY: attr_ptr was initialised above and is destroyed exactly once.
    unsafe { libc::pthread_mutexattr_destroy(attr_ptr) };
    result
}

fn after_lock(m: *mut libc::pthread_mutex_t, r: libc::c_int, what: &str) -> Result<Locked> {
    match r {
        0 => Ok(Locked::Ok),
        libc::EOWNERDEAD => {
            // SAFETY: we hold the lock (EOWNERDEAD grants it); `m` is valid per
            // the caller's contract.
            let c = unsafe { libc::pthread_mutex_consistent(m) };
            check(c, "pthread_mutex_consistent")?;
            Ok(Locked::OwnerDied)
        }
        libc::ETIMEDOUT => Err(Error::Timeout),
        libc::ENOTRECOVERABLE => Err(Error::NotRecoverable),
        e => Err(Error::io(what, std::io::Error::from_raw_os_error(e))),
    }
}

/// Locks the mutex, waiting as long as it takes (a dead holder never blocks).
///
/// # Safety
/// `m` must point to a mutex initialised by [`init`], mapped for the call.
pub(crate) unsafe fn lock(m: *mut libc::pthread_mutex_t) -> Result<Locked> {
    // SAFETY: forwarded caller contract.
    let r = unsafe { libc::pthread_mutex_lock(m) };
    after_lock(m, r, "pthread_mutex_lock")
}

/// Tries to lock without waiting; `Ok(None)` when the mutex is held.
///
/// # Safety
/// As [`lock`].
pub(crate) unsafe fn try_lock(m: *mut libc::pthread_mutex_t) -> Result<Option<Locked>> {
    // SAFETY: forwarded caller contract.
    let r = unsafe { libc::pthread_mutex_trylock(m) };
    if r == libc::EBUSY {
        return Ok(None);
    }
    after_lock(m, r, "pthread_mutex_trylock").map(Some)
}

/// Locks, giving up at `deadline` (CLOCK_MONOTONIC) with [`Error::Timeout`].
///
/// # Safety
/// As [`lock`].
pub(crate) unsafe fn lock_until(
    m: *mut libc::pthread_mutex_t,
    deadline: Instant,
) -> Result<Locked> {
    let abs = monotonic_deadline(deadline);
    // SAFETY: forwarded caller contract; `abs` is a normalised timespec.
    let r = unsafe { pthread_mutex_clocklock(m, libc::CLOCK_MONOTONIC, &abs) };
    after_lock(m, r, "pthread_mutex_clocklock")
}

/// Unlocks the mutex.
///
/// # Safety
/// As [`lock`], and the calling thread must hold the lock.
pub(crate) unsafe fn unlock(m: *mut libc::pthread_mutex_t) -> Result<()> {
    // SAFETY: forwarded caller contract.
    check(
        unsafe { libc::pthread_mutex_unlock(m) },
        "pthread_mutex_unlock",
    )
}

/// Converts an `Instant` deadline into an absolute CLOCK_MONOTONIC timespec.
///
/// `Instant` is CLOCK_MONOTONIC on Linux, so "now" on both clocks is compared
/// and the remaining time is added to the raw clock reading, normalised so that
/// `tv_nsec < 1e9` (raw_sync's timeout bug came from skipping that step).
pub(crate) fn monotonic_deadline(deadline: Instant) -> libc::timespec {
    let remaining = deadline.saturating_duration_since(Instant::now());
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid out-parameter; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    let total_ns = now.tv_nsec as u128 + remaining.subsec_nanos() as u128;
    let secs = (now.tv_sec as u64)
        .saturating_add(remaining.as_secs())
        .saturating_add((total_ns / 1_000_000_000) as u64)
        .min(i64::MAX as u64 / 2);
    libc::timespec {
        tv_sec: secs as libc::time_t,
        tv_nsec: (total_ns % 1_000_000_000) as libc::c_long,
    }
}
