//! The slot protocol, as functions over a [`Ring`] of atomic words: every
//! transition of a slot's state word is made here and nowhere else, so the
//! same code runs in the pool (over the control segment) and in the loom
//! model (`tests/loom_pool.rs`, over loom's atomics). The proof sketch is in
//! `src/pool/README.md`.
//!
//! A state word is `ticket << 8 | st`:
//!
//! | st | meaning | who moves it there, from what |
//! |---|---|---|
//! | `FREE` (0) | empty; may receive task `ticket` | parent: collect, cancel or fail of `ticket - capacity` |
//! | `READY` (1) | task `ticket` waits, never run yet | parent: submit (from `FREE`) |
//! | `RETRY` (2) | task `ticket` waits, its last worker died | parent: requeue (from `CLAIMED + w`, `w` dead) |
//! | `CLAIMED + w` (3..=254) | worker `w` runs it | worker `w`: claim (CAS from `READY` or `RETRY`) |
//! | `DONE` (255) | the result is in the slot | the worker that claimed it |
//!
//! Fresh tasks are found through the claim hint (`next_claim`), retried ones
//! only by a scan for `RETRY` states: a worker looking for a retry can never
//! take a fresh ticket, and a worker following the hint can never take a
//! retry, whatever the number of tickets and however often the ring wrapped.

use std::sync::atomic::Ordering;

pub(crate) const FREE: u8 = 0;
pub(crate) const READY: u8 = 1;
pub(crate) const RETRY: u8 = 2;
pub(crate) const CLAIMED: u8 = 3;
pub(crate) const DONE: u8 = 255;
/// Most workers a ring can name in a claim (claim states `3..=254`).
pub(crate) const MAX_CLAIMANTS: usize = (DONE - CLAIMED) as usize;

pub(crate) fn pack(ticket: u64, st: u8) -> u64 {
    ticket << 8 | st as u64
}

pub(crate) fn unpack(w: u64) -> (u64, u8) {
    (w >> 8, w as u8)
}

/// A 64-bit atomic word: `std`'s in shared memory, loom's in the model.
pub(crate) trait Word {
    fn load(&self, o: Ordering) -> u64;
    fn store(&self, v: u64, o: Ordering);
    fn cas(&self, cur: u64, new: u64, s: Ordering, f: Ordering) -> Result<u64, u64>;
    fn fetch_add(&self, v: u64, o: Ordering) -> u64;
    fn fetch_sub(&self, v: u64, o: Ordering) -> u64;
}

/// Implements [`Word`] for an atomic type with `std`'s method names (`std`'s
/// own `AtomicU64` here, loom's in the model).
macro_rules! impl_word {
    ($t:ty) => {
        impl Word for $t {
            fn load(&self, o: Ordering) -> u64 {
                self.load(o)
            }
            fn store(&self, v: u64, o: Ordering) {
                self.store(v, o)
            }
            fn cas(&self, cur: u64, new: u64, s: Ordering, f: Ordering) -> Result<u64, u64> {
                self.compare_exchange(cur, new, s, f)
            }
            fn fetch_add(&self, v: u64, o: Ordering) -> u64 {
                self.fetch_add(v, o)
            }
            fn fetch_sub(&self, v: u64, o: Ordering) -> u64 {
                self.fetch_sub(v, o)
            }
        }
    };
}
#[allow(unused_imports)] // used by the loom model, which includes this file
pub(crate) use impl_word;

impl_word!(std::sync::atomic::AtomicU64);

/// The shared words of a ring of task slots.
pub(crate) trait Ring {
    type W: Word;
    /// Number of slots.
    fn capacity(&self) -> u64;
    /// The state word of the slot `ticket` lives in (`ticket % capacity`).
    fn state(&self, ticket: u64) -> &Self::W;
    /// The state word of slot index `i < capacity`.
    fn slot_state(&self, i: u64) -> &Self::W;
    /// The claim hint: no ticket below it is `READY`.
    fn hint(&self) -> &Self::W;
    /// Number of slots that may be in `RETRY` (an upper bound; see README).
    fn retries_pending(&self) -> &Self::W;
}

/// What a worker found at the claim hint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AtHint {
    /// It claimed ticket `n`.
    Claimed,
    /// Ticket `n` is taken, requeued as a retry, or recycled: move the hint on.
    Passed,
    /// Ticket `n` is not submitted yet (or the claim CAS lost a race).
    NotYet,
}

/// Worker `w` tries to claim the fresh ticket `n` the hint points at.
pub(crate) fn claim_at<R: Ring>(r: &R, w: u8, n: u64) -> AtHint {
    let s = r.state(n);
    // SYNC POINT: Acquire pairs with the parent's Release store of READY, so
    // the task's fields are visible once the claim succeeds.
    let cur = s.load(Ordering::Acquire);
    let (t, st) = unpack(cur);
    if t == n && st == READY {
        // SYNC POINT: AcqRel claim; the supervisor reads CLAIMED + w after
        // the worker's death.
        return match s.cas(
            cur,
            pack(n, CLAIMED + w),
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => AtHint::Claimed,
            Err(_) => AtHint::NotYet,
        };
    }
    if (t == n && st != FREE) || t > n {
        AtHint::Passed
    } else {
        AtHint::NotYet
    }
}

/// Moves the hint from `n` to `n + 1` unless someone else did.
pub(crate) fn advance_hint<R: Ring>(r: &R, n: u64) {
    // AcqRel: pairs with the Acquire loads of the hint by other workers.
    let _ = r.hint().cas(n, n + 1, Ordering::AcqRel, Ordering::Relaxed);
}

/// Worker `w` looks for a task in `RETRY` state; only those.
pub(crate) fn claim_retry<R: Ring>(r: &R, w: u8) -> Option<u64> {
    // SYNC POINT: SeqCst; pairs with the SeqCst increment in `requeue`, which
    // comes before the RETRY store.
    if r.retries_pending().load(Ordering::SeqCst) == 0 {
        return None;
    }
    for i in 0..r.capacity() {
        let s = r.slot_state(i);
        // SYNC POINT: Acquire pairs with the parent's Release store of RETRY.
        let cur = s.load(Ordering::Acquire);
        let (t, st) = unpack(cur);
        if st == RETRY
            && s.cas(
                cur,
                pack(t, CLAIMED + w),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
        {
            r.retries_pending().fetch_sub(1, Ordering::SeqCst);
            return Some(t);
        }
    }
    None
}

/// Worker `w` claims a task: a retry first, else the fresh ticket at the hint
/// (following it past taken tickets). `None`: nothing to claim right now.
pub(crate) fn claim<R: Ring>(r: &R, w: u8) -> Option<u64> {
    if let Some(t) = claim_retry(r, w) {
        return Some(t);
    }
    let mut misses = 0;
    loop {
        // Acquire: pairs with other workers' advances of the hint.
        let n = r.hint().load(Ordering::Acquire);
        match claim_at(r, w, n) {
            AtHint::Claimed => {
                advance_hint(r, n);
                return Some(n);
            }
            AtHint::Passed => advance_hint(r, n),
            AtHint::NotYet => {
                misses += 1;
                if misses > 2 {
                    return None;
                }
            }
        }
    }
}

/// The worker that claimed `ticket` publishes its result.
pub(crate) fn finish<R: Ring>(r: &R, ticket: u64) {
    // SYNC POINT: Release publishes the result to the parent's Acquire scan.
    r.state(ticket).store(pack(ticket, DONE), Ordering::Release);
}

/// Parent: whether `ticket` may be submitted (its slot is free for it).
pub(crate) fn is_free_for<R: Ring>(r: &R, ticket: u64) -> bool {
    // SYNC POINT: Acquire pairs with the Release that recycled the slot.
    r.state(ticket).load(Ordering::Acquire) == pack(ticket, FREE)
}

/// Parent: publishes a fresh task (the slot was [`is_free_for`] it).
pub(crate) fn publish<R: Ring>(r: &R, ticket: u64) {
    // SYNC POINT: Release publishes the task fields to the claiming worker.
    r.state(ticket)
        .store(pack(ticket, READY), Ordering::Release);
}

/// Parent: the state of `ticket`'s slot, if it still holds `ticket`.
pub(crate) fn state_of<R: Ring>(r: &R, ticket: u64) -> Option<u8> {
    // SYNC POINT: Acquire pairs with the worker's DONE Release (and, after a
    // death, makes the dead worker's last writes visible).
    let (t, st) = unpack(r.state(ticket).load(Ordering::Acquire));
    (t == ticket).then_some(st)
}

/// Parent: hands `ticket`'s slot over to `ticket + capacity`. Only for a slot
/// the parent owns: `DONE` (collected), or `CLAIMED + w` with `w` dead.
pub(crate) fn recycle<R: Ring>(r: &R, ticket: u64) {
    // SYNC POINT: Release hands the slot back for ticket + capacity (pairs with
    // the Acquire in `is_free_for`).
    r.state(ticket)
        .store(pack(ticket + r.capacity(), FREE), Ordering::Release);
}

/// Parent: puts `ticket`, held by a dead worker, back as a retry.
pub(crate) fn requeue<R: Ring>(r: &R, ticket: u64) {
    // The count goes up first: a claimer that takes the retry decrements it
    // after its claim, so the count never goes below the number of RETRY
    // slots (it may stay above it if a claimer dies between the two).
    r.retries_pending().fetch_add(1, Ordering::SeqCst);
    // SYNC POINT: Release publishes the rewritten task to the claimer.
    r.state(ticket)
        .store(pack(ticket, RETRY), Ordering::Release);
}

/// Parent: withdraws `ticket` if no worker has claimed it (`READY` or `RETRY`),
/// recycling its slot. `true` if withdrawn.
pub(crate) fn withdraw<R: Ring>(r: &R, ticket: u64) -> bool {
    let s = r.state(ticket);
    let free = pack(ticket + r.capacity(), FREE);
    for st in [READY, RETRY] {
        // SYNC POINT: AcqRel; a claimer's CAS from the same value fails.
        if s.cas(pack(ticket, st), free, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            if st == RETRY {
                r.retries_pending().fetch_sub(1, Ordering::SeqCst);
            }
            return true;
        }
    }
    false
}
