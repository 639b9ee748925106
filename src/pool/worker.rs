//! The worker process: claims task slots, runs them, writes results back.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::control::{
    pack, unpack, Control, CLAIMED, DONE, FLAG_ARG_SPILL, FLAG_RES_SPILL, INLINE, READY, RES_OK,
    RES_PANIC,
};
use super::spill::{read_spill, write_spill, SpillOwner, SpillRef};
use crate::error::{Error, Result};
use crate::process::spawn::FnId;
use crate::segment::SegmentHandle;
use crate::sync::{wait_on, wake_if_waiting};

/// What a pool worker is started with.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct WorkerBoot {
    pub(crate) control: SegmentHandle,
    pub(crate) index: u32,
    pub(crate) initializer: Option<(FnId, Vec<u8>)>,
    pub(crate) maxtasks: u64,
    pub(crate) spin_ns: u64,
    /// The pool owner's identity: result spills are named after it.
    pub(crate) owner: SpillOwner,
}

/// Exit code of a worker whose initializer failed.
pub(crate) const EXIT_INIT_FAILED: i32 = 3;
/// Exit code of a worker that could not attach to its pool.
pub(crate) const EXIT_ATTACH_FAILED: i32 = 4;

/// Boot function of every pool worker (see `process::spawn::Entry`).
pub(crate) fn worker_main(bytes: &[u8]) -> i32 {
    let boot: WorkerBoot = match postcard::from_bytes(bytes) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("shmproc pool worker: bad boot message: {e}");
            crate::process::announce_failure(&crate::Error::Codec(e.to_string()));
            return EXIT_ATTACH_FAILED;
        }
    };
    crate::sync::set_spin(Duration::from_nanos(boot.spin_ns));
    let ctl = match Control::attach(&boot.control) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("shmproc pool worker: cannot attach to the pool: {e}");
            crate::process::announce_failure(&e);
            return EXIT_ATTACH_FAILED;
        }
    };
    crate::process::announce_ready();
    let w = boot.index as usize;
    if w >= ctl.workers() {
        eprintln!("shmproc pool worker: index {w} out of range");
        return EXIT_ATTACH_FAILED;
    }
    let rec = ctl.worker(w);
    // Relaxed: informational fields read by the parent after it saw the pid.
    rec.pid.store(std::process::id(), Ordering::Relaxed);
    rec.alive.store(1, Ordering::Relaxed);

    if let Some((fid, args)) = boot.initializer {
        // SAFETY: the id was made by the parent, which runs this same image
        // (checked by the spawn handshake, or shared by fork).
        let f = unsafe { fid.resolve() };
        if let Err(msg) = f(&args) {
            eprintln!("shmproc pool worker: initializer failed: {msg}");
            return EXIT_INIT_FAILED;
        }
    }

    let mut done = 0u64;
    while let Some(ticket) = claim(&ctl, w) {
        run(&ctl, ticket, boot.owner);
        done += 1;
        // Relaxed: a statistic.
        rec.tasks_done.fetch_add(1, Ordering::Relaxed);
        if boot.maxtasks > 0 && done >= boot.maxtasks {
            break;
        }
    }
    rec.alive.store(0, Ordering::Relaxed);
    0
}

/// Tries to take task `n` if it is READY; `Err(())` when the hint must move on.
fn try_take(ctl: &Control, w: usize, n: u64) -> std::result::Result<bool, ()> {
    let slot = ctl.slot_of(n);
    // SYNC POINT: Acquire pairs with the parent's Release store of READY, so
    // the task's fields are visible once the claim succeeds.
    let cur = slot.state.load(Ordering::Acquire);
    let (t, st) = unpack(cur);
    if t == n && st == READY {
        let claimed = pack(n, CLAIMED + w as u8);
        // SYNC POINT: AcqRel claim; the supervisor reads CLAIMED+w after our death.
        if slot
            .state
            .compare_exchange(cur, claimed, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            return Ok(true);
        }
        return Ok(false); // lost the race; look again
    }
    if (t == n && st != 0) || t > n {
        // Taken by someone else, or already recycled: move the hint on.
        return Err(());
    }
    Ok(false) // not submitted yet
}

/// Scans every slot for a retried task (READY below the claim hint).
fn take_retry(ctl: &Control, w: usize) -> Option<u64> {
    let h = ctl.header();
    // Relaxed: a hint; the slot states are the truth.
    if h.retries_pending.load(Ordering::Relaxed) == 0 {
        return None;
    }
    for i in 0..ctl.capacity() {
        let slot = ctl.slot(i);
        // SYNC POINT: Acquire, as in try_take.
        let cur = slot.state.load(Ordering::Acquire);
        let (t, st) = unpack(cur);
        if st == READY
            && slot
                .state
                .compare_exchange(
                    cur,
                    pack(t, CLAIMED + w as u8),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
        {
            h.retries_pending.fetch_sub(1, Ordering::Relaxed);
            return Some(t);
        }
    }
    None
}

/// Claims the next task, waiting for one; `None` when the pool shuts down.
fn claim(ctl: &Control, w: usize) -> Option<u64> {
    let h = ctl.header();
    loop {
        // SYNC POINT: SeqCst read of the futex word before looking at slots
        // (see the proof in README.md: a submission after this read bumps it).
        let seen = h.submit_seq.load(Ordering::SeqCst);
        if h.shutdown.load(Ordering::SeqCst) != 0 {
            return None;
        }
        if let Some(t) = take_retry(ctl, w) {
            return Some(t);
        }
        // Follow the hint.
        let mut spins = 0;
        loop {
            // Acquire: pairs with other workers' advances of the hint.
            let n = h.next_claim.load(Ordering::Acquire);
            match try_take(ctl, w, n) {
                Ok(true) => {
                    let _ = h.next_claim.compare_exchange(
                        n,
                        n + 1,
                        Ordering::AcqRel,
                        Ordering::Relaxed,
                    );
                    return Some(n);
                }
                Ok(false) => {
                    spins += 1;
                    if spins > 2 {
                        break; // nothing submitted at the hint: wait below
                    }
                }
                Err(()) => {
                    let _ = h.next_claim.compare_exchange(
                        n,
                        n + 1,
                        Ordering::AcqRel,
                        Ordering::Relaxed,
                    );
                }
            }
        }
        // Wait for a submission (or shutdown), spinning briefly first.
        let _ = wait_on(
            &h.submit_seq,
            &h.idle_waiters,
            Instant::now().checked_add(Duration::from_secs(1)),
            |v| (v != seen || h.shutdown.load(Ordering::Relaxed) != 0).then_some(Ok(())),
        );
    }
}

fn load_args(ctl: &Control, ticket: u64) -> Result<Vec<u8>> {
    let slot = ctl.slot_of(ticket);
    // Relaxed: published by the READY Release, acquired by our claim.
    let len = slot.arg_len.load(Ordering::Relaxed) as usize;
    let flags = slot.flags.load(Ordering::Relaxed);
    let inline = ctl.read_payload(ticket, len)?;
    if flags & FLAG_ARG_SPILL != 0 {
        let r: SpillRef = postcard::from_bytes(&inline)?;
        read_spill(&r)
    } else {
        Ok(inline)
    }
}

fn run(ctl: &Control, ticket: u64, owner: SpillOwner) {
    let slot = ctl.slot_of(ticket);
    // Relaxed: published by the READY Release, acquired by our claim.
    let fid = FnId(slot.fn_id.load(Ordering::Relaxed));
    let outcome = match load_args(ctl, ticket) {
        Ok(args) => {
            // SAFETY: the id was written by the parent, which runs this same
            // image (handshake identity check, or fork); see the trust model
            // in process::task.
            let f = unsafe { fid.resolve() };
            f(&args)
        }
        Err(e) => Err(format!("reading task arguments: {e}")),
    };
    let (status, bytes) = match outcome {
        Ok(b) => (RES_OK, b),
        Err(msg) => (RES_PANIC, msg.into_bytes()),
    };
    let mut flags = 0;
    let inline = if bytes.len() <= INLINE {
        bytes
    } else {
        match write_spill(&bytes, owner) {
            Ok(r) => {
                flags |= FLAG_RES_SPILL;
                postcard::to_stdvec(&r).unwrap_or_default()
            }
            Err(e) => {
                let msg = format!("cannot return a {}-byte result: {e}", bytes.len()).into_bytes();
                let msg = msg[..msg.len().min(INLINE)].to_vec();
                ctl.write_payload(ticket, &msg);
                slot.res_len.store(msg.len() as u32, Ordering::Relaxed);
                slot.res_status.store(RES_PANIC, Ordering::Relaxed);
                publish_done(ctl, ticket);
                return;
            }
        }
    };
    ctl.write_payload(ticket, &inline);
    // Relaxed: published by the DONE Release below.
    slot.res_len.store(inline.len() as u32, Ordering::Relaxed);
    slot.res_status.store(status, Ordering::Relaxed);
    slot.flags.fetch_or(flags, Ordering::Relaxed);
    slot.worker_pid.store(std::process::id(), Ordering::Relaxed);
    publish_done(ctl, ticket);
}

fn publish_done(ctl: &Control, ticket: u64) {
    let h = ctl.header();
    // SYNC POINT: Release publishes the result to the parent's Acquire scan.
    ctl.slot_of(ticket)
        .state
        .store(pack(ticket, DONE), Ordering::Release);
    // SYNC POINT: SeqCst bump + waiter check (see sync::wait_on).
    h.doorbell.fetch_add(1, Ordering::SeqCst);
    wake_if_waiting(&h.doorbell, &h.parent_waiters, u32::MAX);
}

/// Maps a worker's error string to an [`Error`].
pub(crate) fn task_error(msg: String) -> Error {
    match msg.strip_prefix("panic: ") {
        Some(m) => Error::TaskPanicked(m.to_owned()),
        None => Error::Codec(msg),
    }
}
