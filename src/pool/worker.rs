//! The worker process: claims task slots, runs them, writes results back.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::control::{
    Control, FLAG_ARG_SPILL, FLAG_RES_SPILL, FLAG_TIMED, INLINE, RES_FAIL, RES_OK, W_INITIALIZING,
    W_LEFT, W_SERVING,
};
use super::protocol;
use super::spill::{read_spill_of, write_spill, SpillOwner, SpillRef};
use crate::error::{Error, Result};
use crate::process::spawn::FnId;
use crate::process::task::TaskFailure;
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
    crate::process::task::install_panic_hook();
    let w = boot.index as usize;
    if w >= ctl.workers() {
        eprintln!("shmproc pool worker: index {w} out of range");
        return EXIT_ATTACH_FAILED;
    }
    let rec = ctl.worker(w);
    // Relaxed: informational; the parent reads it after the worker's death
    // (the process exit orders it).
    rec.pid.store(std::process::id(), Ordering::Relaxed);
    rec.state.store(W_INITIALIZING, Ordering::Release);

    if let Some((fid, args)) = boot.initializer {
        // SAFETY: the id was made by the parent, which runs this same image
        // (checked by the spawn handshake, or shared by fork).
        let f = unsafe { fid.resolve() };
        if let Err(failure) = f(&args) {
            // The parent reads this after our exit and breaks the pool if
            // workers keep failing to start.
            rec.set_failure(&format!("the initializer {failure}"));
            return EXIT_INIT_FAILED;
        }
    }
    rec.state.store(W_SERVING, Ordering::Release);
    // Claim nothing before the parent has this worker in its table (it may
    // also never let it: a terminated or broken pool kills it instead).
    let h = ctl.header();
    loop {
        // SYNC POINT: SeqCst pairs with the parent's store and wake.
        if rec.go.load(Ordering::SeqCst) != 0 {
            break;
        }
        if h.shutdown.load(Ordering::SeqCst) != 0 {
            rec.state.store(W_LEFT, Ordering::Release);
            return 0;
        }
        let _ = wait_on(
            &rec.go,
            &rec.go_waiters,
            Instant::now().checked_add(Duration::from_millis(100)),
            |v| (v != 0).then_some(Ok(())),
        );
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
    rec.state.store(W_LEFT, Ordering::Release);
    0
}

/// Claims the next task, waiting for one; `None` when the pool shuts down.
fn claim(ctl: &Control, w: usize) -> Option<u64> {
    let h = ctl.header();
    loop {
        // SYNC POINT: SeqCst read of the futex word before looking at slots
        // (see the proof in README.md: a submission or requeue after this
        // read bumps it).
        let seen = h.submit_seq.load(Ordering::SeqCst);
        if h.shutdown.load(Ordering::SeqCst) != 0 {
            return None;
        }
        if let Some(t) = protocol::claim(ctl, w as u8) {
            let slot = ctl.slot_of(t);
            // Relaxed: published by the READY Release, acquired by the claim.
            if slot.flags.load(Ordering::Relaxed) & FLAG_TIMED != 0 {
                // Relaxed: read by the parent only after it saw CLAIMED + w
                // (a time limit measured a few ns late is harmless).
                slot.started_ns
                    .store(crate::sys::proc::monotonic_ns(), Ordering::Relaxed);
            }
            return Some(t);
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

fn load_args(ctl: &Control, ticket: u64, owner: SpillOwner) -> Result<Vec<u8>> {
    let slot = ctl.slot_of(ticket);
    // Relaxed: published by the READY Release, acquired by our claim.
    let len = slot.arg_len.load(Ordering::Relaxed) as usize;
    let flags = slot.flags.load(Ordering::Relaxed);
    let inline = ctl.read_payload(ticket, len)?;
    if flags & FLAG_ARG_SPILL != 0 {
        let r: SpillRef = postcard::from_bytes(&inline)?;
        read_spill_of(&r, owner)
    } else {
        Ok(inline)
    }
}

fn run(ctl: &Control, ticket: u64, owner: SpillOwner) {
    let slot = ctl.slot_of(ticket);
    // Relaxed: published by the READY Release, acquired by our claim.
    let fid = FnId(slot.fn_id.load(Ordering::Relaxed));
    let outcome = match load_args(ctl, ticket, owner) {
        Ok(args) => {
            // SAFETY: the id was written by the parent, which runs this same
            // image (handshake identity check, or fork); see the trust model
            // in process::task.
            let f = unsafe { fid.resolve() };
            f(&args)
        }
        Err(e) => Err(TaskFailure::codec("reading task arguments", e)),
    };
    let (status, bytes) = match outcome {
        Ok(b) => (RES_OK, b),
        Err(failure) => (RES_FAIL, encode_failure(&failure)),
    };
    let mut flags = 0;
    let inline = if bytes.len() <= INLINE {
        bytes
    } else {
        match write_spill(&bytes, owner).and_then(|r| Ok(postcard::to_stdvec(&r)?)) {
            Ok(r) => {
                flags |= FLAG_RES_SPILL;
                r
            }
            Err(e) => {
                let msg = encode_failure(&TaskFailure::Codec(format!(
                    "cannot return a {}-byte result: {e}",
                    bytes.len()
                )));
                ctl.write_payload(ticket, &msg);
                // Relaxed: published by the DONE Release.
                slot.res_len.store(msg.len() as u32, Ordering::Relaxed);
                slot.res_status.store(RES_FAIL, Ordering::Relaxed);
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

/// A failure as slot bytes, cut to fit inline (a failure never spills).
fn encode_failure(f: &TaskFailure) -> Vec<u8> {
    let bytes = postcard::to_stdvec(f).unwrap_or_default();
    if bytes.len() <= INLINE {
        return bytes;
    }
    let short = match f {
        TaskFailure::Panic(p) => TaskFailure::Panic(crate::error::TaskPanic {
            message: truncate(&p.message, INLINE / 2),
            location: p.location.as_deref().map(|l| truncate(l, INLINE / 4)),
            item: p.item,
        }),
        TaskFailure::Codec(m) => TaskFailure::Codec(truncate(m, INLINE - 16)),
    };
    postcard::to_stdvec(&short).unwrap_or_default()
}

fn truncate(s: &str, max: usize) -> String {
    let mut cut = s.len().min(max);
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s[..cut].to_string()
}

fn publish_done(ctl: &Control, ticket: u64) {
    let h = ctl.header();
    protocol::finish(ctl, ticket);
    // SYNC POINT: SeqCst bump + waiter check (see sync::wait_on).
    h.doorbell.fetch_add(1, Ordering::SeqCst);
    wake_if_waiting(&h.doorbell, &h.parent_waiters, u32::MAX);
}

/// Decodes the failure a worker wrote.
pub(crate) fn decode_failure(bytes: &[u8]) -> Error {
    match postcard::from_bytes::<TaskFailure>(bytes) {
        Ok(f) => f.into_error(),
        Err(e) => Error::Corrupt(format!("undecodable task failure from a worker: {e}")),
    }
}
