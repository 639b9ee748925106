//! The pool's control segment: a header, one record per worker, and a ring of
//! task slots. Everything here is shared between the parent and its workers;
//! the protocol is described in `src/pool/README.md`.
//!
//! The slot state words and every transition of them are in `protocol.rs`.

use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use super::protocol::{pack, Ring, FREE, MAX_CLAIMANTS};
use crate::error::{Error, Result};
use crate::segment::{kind, Segment, SegmentBuilder, SegmentHandle};

/// Most workers a pool can have (one claim state each).
pub const MAX_WORKERS: usize = MAX_CLAIMANTS;

/// Bytes of argument or result a slot holds inline; larger payloads spill to a
/// segment of their own and the slot holds its handle.
pub(crate) const INLINE: usize = 448;
/// Number of task slots (tasks in flight at once).
pub(crate) const DEFAULT_CAPACITY: usize = 1024;

pub(crate) const TAG: u32 = u32::from_le_bytes(*b"POOL");

/// Result status written by a worker.
pub(crate) const RES_OK: u32 = 0;
pub(crate) const RES_FAIL: u32 = 1;

/// Slot flags.
pub(crate) const FLAG_ARG_SPILL: u32 = 1;
pub(crate) const FLAG_RES_SPILL: u32 = 2;
/// The task has a time limit: its claimant records when it started.
pub(crate) const FLAG_TIMED: u32 = 4;

#[repr(C, align(64))]
pub(crate) struct Header {
    pub(crate) tag: AtomicU32,
    pub(crate) workers: AtomicU32,
    pub(crate) capacity: AtomicU32,
    /// 1: workers leave as soon as they are idle.
    pub(crate) shutdown: AtomicU32,
    _pad0: [u8; 48],
    /// Futex word idle workers sleep on; bumped on every submission.
    pub(crate) submit_seq: AtomicU32,
    pub(crate) idle_waiters: AtomicU32,
    /// The lowest ticket that may still be unclaimed (a hint; see README).
    pub(crate) next_claim: AtomicU64,
    /// Slots that may be in RETRY state; workers scan for them while non-zero.
    pub(crate) retries_pending: AtomicU64,
    _pad1: [u8; 40],
    /// Futex word parent threads sleep on; bumped on every result.
    pub(crate) doorbell: AtomicU32,
    pub(crate) parent_waiters: AtomicU32,
    _pad2: [u8; 56],
}

/// Bytes of a worker's start-failure message kept in its record.
pub(crate) const WORKER_MSG: usize = 240;

/// `WorkerRec::state` values.
pub(crate) const W_STARTING: u32 = 0;
pub(crate) const W_INITIALIZING: u32 = 1;
pub(crate) const W_SERVING: u32 = 2;
pub(crate) const W_INIT_FAILED: u32 = 3;
pub(crate) const W_LEFT: u32 = 4;

#[repr(C, align(64))]
pub(crate) struct WorkerRec {
    pub(crate) pid: AtomicU32,
    /// `W_*`: how far the worker got; read by the parent after its death.
    pub(crate) state: AtomicU32,
    pub(crate) tasks_done: AtomicU64,
    /// Length of the message in `msg` (set, Release, before `W_INIT_FAILED`).
    pub(crate) msg_len: AtomicU32,
    /// Set by the parent once the worker is in its table: only then does the
    /// worker claim tasks, so a claim `CLAIMED + w` always belongs to the
    /// registered worker `w` or to a dead one (futex word).
    pub(crate) go: AtomicU32,
    pub(crate) go_waiters: AtomicU32,
    msg: [AtomicU8; WORKER_MSG],
}

impl WorkerRec {
    /// Records why this worker could not start (the initializer's error).
    pub(crate) fn set_failure(&self, text: &str) {
        let mut cut = text.len().min(WORKER_MSG);
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        for (cell, b) in self.msg.iter().zip(&text.as_bytes()[..cut]) {
            // Relaxed: published by the Release store of msg_len.
            cell.store(*b, Ordering::Relaxed);
        }
        self.msg_len.store(cut as u32, Ordering::Release);
        self.state.store(W_INIT_FAILED, Ordering::Release);
    }

    /// The failure message a worker left (read after its death).
    pub(crate) fn failure(&self) -> String {
        // SYNC POINT: Acquire pairs with the Release in `set_failure`.
        let len = (self.msg_len.load(Ordering::Acquire) as usize).min(WORKER_MSG);
        let bytes: Vec<u8> = self.msg[..len]
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

#[repr(C, align(64))]
pub(crate) struct SlotHeader {
    pub(crate) state: AtomicU64,
    pub(crate) fn_id: AtomicI64,
    pub(crate) arg_len: AtomicU32,
    pub(crate) res_len: AtomicU32,
    pub(crate) res_status: AtomicU32,
    pub(crate) flags: AtomicU32,
    pub(crate) worker_pid: AtomicU32,
    pub(crate) attempts: AtomicU32,
    /// CLOCK_MONOTONIC nanoseconds at which the current claimant started it
    /// (0 until then): the parent's time limits are measured from it.
    pub(crate) started_ns: AtomicU64,
}

pub(crate) const SLOT_SIZE: usize = std::mem::size_of::<SlotHeader>() + INLINE;
const _: () = assert!(SLOT_SIZE.is_multiple_of(64));
const _: () = assert!(std::mem::size_of::<Header>() == 192);

/// A mapped control segment with its layout resolved.
#[derive(Debug, Clone)]
pub(crate) struct Control {
    seg: Arc<Segment>,
    base: usize,
    workers: usize,
    capacity: usize,
    workers_off: usize,
    slots_off: usize,
}

fn layout(workers: usize, capacity: usize) -> (usize, usize, usize) {
    let header = std::mem::size_of::<Header>();
    let workers_off = header;
    let slots_off = workers_off + workers * std::mem::size_of::<WorkerRec>();
    let total = slots_off + capacity * SLOT_SIZE;
    (workers_off, slots_off, total)
}

impl Control {
    /// Creates a control segment (memfd: nothing to leak in /dev/shm, even after
    /// kill -9) for `workers` workers and `capacity` slots.
    pub(crate) fn create(workers: usize, capacity: usize) -> Result<Control> {
        if workers == 0 || workers > MAX_WORKERS {
            return Err(Error::InvalidArgument(format!(
                "a pool needs 1 to {MAX_WORKERS} processes, not {workers}"
            )));
        }
        let (workers_off, slots_off, total) = layout(workers, capacity);
        let seg = SegmentBuilder::new()
            .kind(kind::POOL)
            .memfd()
            .create(total + 64)?;
        let base = seg.alloc(total, 64)?;
        seg.set_root(base as u64);
        let c = Control {
            seg: Arc::new(seg),
            base,
            workers,
            capacity,
            workers_off: base + workers_off,
            slots_off: base + slots_off,
        };
        let h = c.header();
        // Relaxed: published by the Release store of the tag below.
        h.workers.store(workers as u32, Ordering::Relaxed);
        h.capacity.store(capacity as u32, Ordering::Relaxed);
        for i in 0..capacity {
            c.slot(i)
                .state
                .store(pack(i as u64, FREE), Ordering::Relaxed);
        }
        // SYNC POINT: Release publishes the layout to workers (Acquire in attach).
        h.tag.store(TAG, Ordering::Release);
        Ok(c)
    }

    /// Attaches to the control segment a handle names, validating the layout.
    pub(crate) fn attach(handle: &SegmentHandle) -> Result<Control> {
        let seg = Segment::open_handle(handle)?;
        seg.expect_kind(kind::POOL)?;
        let base = seg.root() as usize;
        seg.region(
            "pool header",
            base as u64,
            std::mem::size_of::<Header>() as u64,
            64,
        )?;
        // SAFETY: the region was just checked to hold a Header, aligned; Header
        // is all atomics.
        let h = unsafe { &*(seg.as_ptr().add(base) as *const Header) };
        // SYNC POINT: Acquire pairs with the Release in `create`.
        if h.tag.load(Ordering::Acquire) != TAG {
            return Err(Error::Corrupt("pool control block has no tag".into()));
        }
        let workers = h.workers.load(Ordering::Relaxed) as usize;
        let capacity = h.capacity.load(Ordering::Relaxed) as usize;
        if workers == 0 || workers > MAX_WORKERS || !(2..=1 << 24).contains(&capacity) {
            return Err(Error::Corrupt(format!(
                "pool control block: {workers} workers, {capacity} slots"
            )));
        }
        let (workers_off, slots_off, total) = layout(workers, capacity);
        seg.region("pool control block", base as u64, total as u64, 64)?;
        Ok(Control {
            seg: Arc::new(seg),
            base,
            workers,
            capacity,
            workers_off: base + workers_off,
            slots_off: base + slots_off,
        })
    }

    pub(crate) fn handle(&self) -> SegmentHandle {
        self.seg.handle()
    }

    pub(crate) fn workers(&self) -> usize {
        self.workers
    }

    pub(crate) fn header(&self) -> &Header {
        // SAFETY: the header lies at root, checked (attach) or allocated (create)
        // in bounds and 64-aligned; all atomics; lives as long as `self.seg`.
        unsafe { &*(self.seg.as_ptr().add(self.base) as *const Header) }
    }

    pub(crate) fn worker(&self, w: usize) -> &WorkerRec {
        assert!(w < self.workers, "worker index {w} out of range");
        // SAFETY: w < workers, and the whole block was bounds-checked; all atomics.
        unsafe {
            &*(self
                .seg
                .as_ptr()
                .add(self.workers_off + w * std::mem::size_of::<WorkerRec>())
                as *const WorkerRec)
        }
    }

    /// The slot for position `i % capacity`.
    pub(crate) fn slot(&self, i: usize) -> &SlotHeader {
        let i = i % self.capacity;
        // SAFETY: i < capacity, and the block was bounds-checked; all atomics.
        unsafe { &*(self.seg.as_ptr().add(self.slots_off + i * SLOT_SIZE) as *const SlotHeader) }
    }

    /// Slot for `ticket`.
    pub(crate) fn slot_of(&self, ticket: u64) -> &SlotHeader {
        self.slot((ticket % self.capacity as u64) as usize)
    }

    fn payload_ptr(&self, ticket: u64) -> *mut u8 {
        let i = (ticket % self.capacity as u64) as usize;
        // SAFETY: i < capacity; the payload follows the slot header inside the
        // bounds-checked block.
        unsafe {
            self.seg
                .as_ptr()
                .add(self.slots_off + i * SLOT_SIZE + std::mem::size_of::<SlotHeader>())
        }
    }

    /// Copies `bytes` (at most [`INLINE`]) into the payload of `ticket`'s slot.
    /// The caller owns the slot (FREE for the parent, CLAIMED for a worker).
    pub(crate) fn write_payload(&self, ticket: u64, bytes: &[u8]) {
        assert!(bytes.len() <= INLINE, "payload larger than a slot");
        // SAFETY: the slot's payload has INLINE bytes; the slot state gives the
        // caller exclusive use of it (see the protocol table above).
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.payload_ptr(ticket), bytes.len())
        }
    }

    /// Copies `len` payload bytes of `ticket`'s slot out.
    ///
    /// # Errors
    /// [`Error::Corrupt`] if `len` exceeds the slot (a length read from shared
    /// memory is never trusted).
    pub(crate) fn read_payload(&self, ticket: u64, len: usize) -> Result<Vec<u8>> {
        if len > INLINE {
            return Err(Error::Corrupt(format!(
                "slot payload length {len} exceeds {INLINE}"
            )));
        }
        let mut v = vec![0u8; len];
        // SAFETY: len <= INLINE bytes lie in the payload; the state protocol
        // makes the writer finish before the reader starts.
        unsafe { std::ptr::copy_nonoverlapping(self.payload_ptr(ticket), v.as_mut_ptr(), len) };
        Ok(v)
    }
}

impl Ring for Control {
    type W = AtomicU64;

    fn capacity(&self) -> u64 {
        self.capacity as u64
    }

    fn state(&self, ticket: u64) -> &AtomicU64 {
        &self.slot_of(ticket).state
    }

    fn slot_state(&self, i: u64) -> &AtomicU64 {
        &self.slot(i as usize).state
    }

    fn hint(&self) -> &AtomicU64 {
        &self.header().next_claim
    }

    fn retries_pending(&self) -> &AtomicU64 {
        &self.header().retries_pending
    }
}
