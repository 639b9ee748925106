//! The parent side of a pool: submission, collection, supervision.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::control::{
    pack, unpack, Control, CLAIMED, DONE, FLAG_ARG_SPILL, FLAG_RES_SPILL, FREE, INLINE, READY,
    RES_OK,
};
use super::spill::{create_spill, take_spill, SpillOwner, SpillRef};
use super::worker::{task_error, worker_main, WorkerBoot};
use crate::error::{Error, Result};
use crate::process::spawn::{start_child, Child, ChildOptions, Entry, ExitStatus, FnId};
use crate::process::StartMethod;
use crate::segment::Segment;
use crate::sync::{wait_on, wake_if_waiting};

/// Bytes of a finished task: the encoded result, or the error.
pub(crate) type Outcome = Result<Vec<u8>>;

/// A callback run (in whichever parent thread collects the result) when a
/// single task finishes.
pub(crate) type Callback = Box<dyn FnOnce(&Outcome) + Send>;

/// Where a finished task's outcome goes.
pub(crate) enum Sink {
    /// One task, one result (apply_async).
    Cell(Arc<Cell>),
    /// Chunk `index` of a stream of chunks (map, imap).
    Stream(Arc<Stream>, usize),
}

/// The result of one task.
pub(crate) struct Cell {
    pub(crate) value: Mutex<Option<Outcome>>,
    callback: Mutex<Option<Callback>>,
}

impl Cell {
    pub(crate) fn new(callback: Option<Callback>) -> Arc<Cell> {
        Arc::new(Cell {
            value: Mutex::new(None),
            callback: Mutex::new(callback),
        })
    }

    pub(crate) fn is_ready(&self) -> bool {
        lock(&self.value).is_some()
    }

    fn deliver(&self, o: Outcome) {
        let cb = lock(&self.callback).take();
        if let Some(cb) = cb {
            cb(&o);
        }
        *lock(&self.value) = Some(o);
    }
}

/// Results of the chunks of a map, by chunk index.
#[derive(Default)]
pub(crate) struct StreamState {
    pub(crate) done: BTreeMap<usize, Outcome>,
    /// Number of chunks, once the input is exhausted.
    pub(crate) total: Option<usize>,
    /// Chunks delivered so far.
    pub(crate) delivered: usize,
}

/// The shared sink of a map or imap.
#[derive(Default)]
pub(crate) struct Stream {
    pub(crate) state: Mutex<StreamState>,
}

impl Sink {
    fn has_callback(&self) -> bool {
        matches!(self, Sink::Cell(c) if lock(&c.callback).is_some())
    }
}

impl Stream {
    fn deliver(&self, index: usize, o: Outcome) {
        let mut st = lock(&self.state);
        st.done.insert(index, o);
        st.delivered += 1;
    }

    /// Records the number of chunks (the input is exhausted).
    pub(crate) fn set_total(&self, total: usize) {
        lock(&self.state).total = Some(total);
    }

    pub(crate) fn is_complete(&self) -> bool {
        let st = lock(&self.state);
        st.total == Some(st.delivered)
    }
}

/// Locks a std mutex, ignoring poisoning (every critical section here leaves
/// the data consistent before anything that can panic).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct Task {
    fn_id: FnId,
    args: Vec<u8>,
    /// Keeps a spilled argument's segment alive until the task ends.
    arg_spill: Option<(Segment, Vec<u8>)>,
    attempts: u32,
    sink: Sink,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Running,
    Closed,
    Terminated,
}

pub(crate) struct Inner {
    /// Next ticket to submit.
    tail: u64,
    /// Oldest ticket not yet collected.
    head: u64,
    /// Tasks by `ticket - head`; `None` once collected.
    pending: VecDeque<Option<Task>>,
    pub(crate) outstanding: usize,
    /// Unfinished tasks with a callback: while there are any, the supervisor
    /// wakes on every result to run them promptly.
    callbacks_pending: usize,
    pub(crate) state: State,
    workers: Vec<Option<Child>>,
    /// Doorbell value at the last full scan.
    last_scan: u32,
    stop_supervisor: bool,
    /// Error of the last failed respawn, reported to tasks if no worker is left.
    spawn_error: Option<String>,
}

impl Inner {
    /// Book-keeping for a task that leaves `pending`.
    fn finished(&mut self, task: &Task) {
        self.outstanding -= 1;
        if task.sink.has_callback() {
            self.callbacks_pending -= 1;
        }
    }
}

/// Pool settings.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) processes: usize,
    pub(crate) method: StartMethod,
    pub(crate) force_fork: bool,
    pub(crate) initializer: Option<(FnId, Vec<u8>)>,
    pub(crate) maxtasks: u64,
    pub(crate) retries: u32,
    pub(crate) capacity: usize,
}

/// Everything the pool handle, its results and its supervisor thread share.
pub(crate) struct Shared {
    pub(crate) ctl: Control,
    /// Names of this pool's spilled payloads.
    spill_owner: SpillOwner,
    pub(crate) inner: Mutex<Inner>,
    pub(crate) config: Config,
    supervisor: Mutex<Option<JoinHandle<()>>>,
}

type Delivery = (Sink, Outcome);

fn deliver_all(ds: Vec<Delivery>) {
    for (sink, o) in ds {
        match sink {
            Sink::Cell(c) => c.deliver(o),
            Sink::Stream(s, i) => s.deliver(i, o),
        }
    }
}

impl Shared {
    /// Creates the control segment, starts the workers and the supervisor.
    pub(crate) fn start(config: Config) -> Result<Arc<Shared>> {
        // Leftovers of dead creators go first (DESIGN: "and automatically when
        // a pool starts").
        let _ = crate::segment::sweep(false);
        let ctl = Control::create(config.processes, config.capacity)?;
        let shared = Arc::new(Shared {
            ctl,
            spill_owner: SpillOwner::new_for_this_process()?,
            inner: Mutex::new(Inner {
                tail: 0,
                head: 0,
                pending: VecDeque::new(),
                outstanding: 0,
                callbacks_pending: 0,
                state: State::Running,
                workers: (0..config.processes).map(|_| None).collect(),
                last_scan: 0,
                stop_supervisor: false,
                spawn_error: None,
            }),
            config,
            supervisor: Mutex::new(None),
        });
        for w in 0..shared.config.processes {
            let child = match shared.spawn_worker(w) {
                Ok(c) => c,
                Err(e) => {
                    shared.terminate();
                    return Err(e);
                }
            };
            lock(&shared.inner).workers[w] = Some(child);
        }
        let s2 = Arc::clone(&shared);
        let handle = std::thread::Builder::new()
            .name("shmproc-pool-supervisor".into())
            .spawn(move || s2.supervise())
            .map_err(|e| Error::io("spawn pool supervisor thread", e))?;
        *lock(&shared.supervisor) = Some(handle);
        Ok(shared)
    }

    fn spawn_worker(&self, w: usize) -> Result<Child> {
        let boot = WorkerBoot {
            control: self.ctl.handle(),
            index: w as u32,
            initializer: self.config.initializer.clone(),
            maxtasks: self.config.maxtasks,
            spin_ns: crate::sync::spin().as_nanos() as u64,
            owner: self.spill_owner,
        };
        let mut opts = ChildOptions::new();
        opts.method = self.config.method;
        opts.force_fork = self.config.force_fork;
        opts.daemon = true;
        // `worker_main` announces once it has attached the control segment.
        opts.announce = true;
        let prefix = match self.config.method {
            StartMethod::Fork => "ForkPoolWorker",
            StartMethod::Spawn => "SpawnPoolWorker",
            StartMethod::ForkServer => "ForkServerPoolWorker",
        };
        opts.name = format!("{prefix}-{}", opts.ident.last().copied().unwrap_or(0));
        // Relaxed: cleared before the worker exists; it sets it itself.
        self.ctl.worker(w).alive.store(0, Ordering::Relaxed);
        start_child(Entry::new(worker_main), postcard::to_stdvec(&boot)?, &opts)
    }

    /// Submits one task; blocks while all slots are in use.
    pub(crate) fn submit(&self, fn_id: FnId, args: Vec<u8>, sink: Sink) -> Result<()> {
        let mut inner = lock(&self.inner);
        loop {
            if inner.state != State::Running {
                return Err(Error::InvalidState(match inner.state {
                    State::Closed => "the pool is closed".into(),
                    _ => "the pool was terminated".into(),
                }));
            }
            let t = inner.tail;
            // SYNC POINT: Acquire pairs with the Release that recycled the slot.
            let st = self.ctl.slot_of(t).state.load(Ordering::Acquire);
            if st == pack(t, FREE) {
                break;
            }
            // Every slot is in flight: collect what is done, or wait for it.
            let seen = self.ctl.header().doorbell.load(Ordering::SeqCst);
            let ds = self.collect_locked(&mut inner, true);
            if !ds.is_empty() {
                drop(inner);
                deliver_all(ds);
                self.ring();
                inner = lock(&self.inner);
                continue;
            }
            drop(inner);
            self.wait_doorbell(seen, Some(Instant::now() + Duration::from_millis(50)));
            inner = lock(&self.inner);
        }
        let t = inner.tail;
        let mut task = Task {
            fn_id,
            args,
            arg_spill: None,
            attempts: 0,
            sink,
        };
        self.write_task(t, &mut task)?;
        let has_callback = task.sink.has_callback();
        if has_callback {
            inner.callbacks_pending += 1;
        }
        inner.pending.push_back(Some(task));
        inner.tail += 1;
        inner.outstanding += 1;
        self.publish(t);
        drop(inner);
        self.kick_workers(false);
        if has_callback {
            // Switch the supervisor to waking on results.
            if let Some(h) = lock(&self.supervisor).as_ref() {
                h.thread().unpark();
            }
        }
        Ok(())
    }

    /// Writes a task's fields into its slot (the slot is FREE or held by a dead
    /// worker, so the parent owns it).
    fn write_task(&self, t: u64, task: &mut Task) -> Result<()> {
        let slot = self.ctl.slot_of(t);
        let mut flags = 0;
        if task.args.len() > INLINE {
            if task.arg_spill.is_none() {
                let (seg, r) = create_spill(&task.args, self.spill_owner)?;
                task.arg_spill = Some((seg, postcard::to_stdvec(&r)?));
            }
            let (_, r) = task.arg_spill.as_ref().expect("invariant: spill set above");
            self.ctl.write_payload(t, r);
            slot.arg_len.store(r.len() as u32, Ordering::Relaxed);
            flags |= FLAG_ARG_SPILL;
        } else {
            self.ctl.write_payload(t, &task.args);
            slot.arg_len
                .store(task.args.len() as u32, Ordering::Relaxed);
        }
        // Relaxed: published by the READY Release in `publish`.
        slot.fn_id.store(task.fn_id.0, Ordering::Relaxed);
        slot.flags.store(flags, Ordering::Relaxed);
        slot.res_len.store(0, Ordering::Relaxed);
        slot.attempts.store(task.attempts, Ordering::Relaxed);
        Ok(())
    }

    fn publish(&self, t: u64) {
        // SYNC POINT: Release publishes the task fields to the claiming worker.
        self.ctl
            .slot_of(t)
            .state
            .store(pack(t, READY), Ordering::Release);
    }

    /// Tells idle workers there is work (or that they should leave).
    fn kick_workers(&self, all: bool) {
        let h = self.ctl.header();
        // SYNC POINT: SeqCst bump + waiter check (see sync::wait_on).
        h.submit_seq.fetch_add(1, Ordering::SeqCst);
        wake_if_waiting(
            &h.submit_seq,
            &h.idle_waiters,
            if all { u32::MAX } else { 1 },
        );
    }

    /// Wakes parent threads waiting on the doorbell (after deliveries).
    fn ring(&self) {
        let h = self.ctl.header();
        h.doorbell.fetch_add(1, Ordering::SeqCst);
        wake_if_waiting(&h.doorbell, &h.parent_waiters, u32::MAX);
    }

    /// Sleeps until the doorbell moves from `seen` (a result came in) or the
    /// deadline passes. Spins briefly first.
    pub(crate) fn wait_doorbell(&self, seen: u32, deadline: Option<Instant>) {
        let h = self.ctl.header();
        let _ = wait_on(&h.doorbell, &h.parent_waiters, deadline, |v| {
            (v != seen).then_some(Ok(()))
        });
    }

    /// Reads the outcome of a DONE slot.
    fn read_outcome(&self, t: u64) -> Outcome {
        let slot = self.ctl.slot_of(t);
        // Relaxed: published by the worker's DONE Release, acquired by the scan.
        let len = slot.res_len.load(Ordering::Relaxed) as usize;
        let status = slot.res_status.load(Ordering::Relaxed);
        let flags = slot.flags.load(Ordering::Relaxed);
        let inline = self.ctl.read_payload(t, len)?;
        let bytes = if flags & FLAG_RES_SPILL != 0 {
            let r: SpillRef = postcard::from_bytes(&inline)?;
            take_spill(&r)?
        } else {
            inline
        };
        if status == RES_OK {
            Ok(bytes)
        } else {
            Err(task_error(String::from_utf8_lossy(&bytes).into_owned()))
        }
    }

    /// Collects every DONE slot. With `force`, scans even if no result was
    /// signalled since the last scan.
    fn collect_locked(&self, inner: &mut Inner, force: bool) -> Vec<Delivery> {
        let h = self.ctl.header();
        // SYNC POINT: SeqCst pairs with the workers' doorbell bumps.
        let bell = h.doorbell.load(Ordering::SeqCst);
        if !force && bell == inner.last_scan {
            return Vec::new();
        }
        inner.last_scan = bell;
        let cap = self.ctl.capacity() as u64;
        // Workers claim tickets in order and move the claim hint past a ticket
        // before they run it, so every finished ticket lies below the hint
        // (retried tickets too). Only a forced scan looks further.
        // SYNC POINT: Acquire; the doorbell load above ordered this after the
        // hint advances of the results it announced.
        let hint = h.next_claim.load(Ordering::Acquire);
        let end = if force {
            inner.tail
        } else {
            inner.tail.min(hint)
        };
        let mut out = Vec::new();
        for t in inner.head..end.max(inner.head) {
            let idx = (t - inner.head) as usize;
            if inner.pending[idx].is_none() {
                continue;
            }
            let slot = self.ctl.slot_of(t);
            // SYNC POINT: Acquire pairs with the worker's DONE Release.
            if slot.state.load(Ordering::Acquire) != pack(t, DONE) {
                continue;
            }
            let o = self.read_outcome(t);
            // SYNC POINT: Release hands the slot back for ticket t + capacity.
            slot.state.store(pack(t + cap, FREE), Ordering::Release);
            if let Some(task) = inner.pending[idx].take() {
                inner.finished(&task);
                out.push((task.sink, o));
            }
        }
        while let Some(None) = inner.pending.front() {
            inner.pending.pop_front();
            inner.head += 1;
        }
        out
    }

    /// Collects and delivers finished tasks; returns how many.
    pub(crate) fn collect(&self, force: bool) -> usize {
        let ds = {
            let mut inner = lock(&self.inner);
            self.collect_locked(&mut inner, force)
        };
        let n = ds.len();
        if n > 0 {
            deliver_all(ds);
            self.ring();
        }
        n
    }

    /// Waits until `ready()` holds, collecting results meanwhile.
    pub(crate) fn wait_until(
        &self,
        deadline: Option<Instant>,
        mut ready: impl FnMut() -> bool,
    ) -> Result<()> {
        loop {
            if ready() {
                return Ok(());
            }
            let seen = self.ctl.header().doorbell.load(Ordering::SeqCst);
            if self.collect(false) > 0 {
                continue;
            }
            if ready() {
                return Ok(());
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Err(Error::Timeout);
            }
            // Wake at least every 50 ms to look again (a death is handled by
            // the supervisor, which rings the doorbell).
            let tick = now + Duration::from_millis(50);
            let until = deadline.map_or(tick, |d| d.min(tick));
            self.wait_doorbell(seen, Some(until));
        }
    }

    /// The supervisor thread: collects results (running callbacks), watches the
    /// workers, retries or fails the tasks of dead ones, replaces them.
    fn supervise(self: Arc<Self>) {
        loop {
            let seen = self.ctl.header().doorbell.load(Ordering::SeqCst);
            self.collect(false);
            self.check_workers();
            let (stop, callbacks) = {
                let inner = lock(&self.inner);
                (inner.stop_supervisor, inner.callbacks_pending > 0)
            };
            if stop {
                return;
            }
            let tick = Instant::now() + Duration::from_millis(20);
            if callbacks {
                // Results have callbacks to run: wake on every result.
                self.wait_doorbell(seen, Some(tick));
            } else {
                // Nobody needs the supervisor for results (waiting threads
                // collect their own): look at the workers every 20 ms without
                // making every result pay for a wake-up.
                std::thread::park_timeout(Duration::from_millis(20));
            }
        }
    }

    fn check_workers(&self) {
        for w in 0..self.config.processes {
            let status = {
                let inner = lock(&self.inner);
                match &inner.workers[w] {
                    Some(c) => c.try_wait().ok().flatten().map(|s| (s, c.pid())),
                    None => None,
                }
            };
            if let Some((status, pid)) = status {
                self.worker_died(w, pid, status);
            }
        }
    }

    fn worker_died(&self, w: usize, pid: u32, status: ExitStatus) {
        let mut inner = lock(&self.inner);
        inner.workers[w] = None;
        let signal = status.signal();
        let cap = self.ctl.capacity() as u64;
        let mut failed = Vec::new();
        let mut retried = 0;
        // Results it finished before dying are good: collect them first.
        let mut ds = self.collect_locked(&mut inner, true);
        for t in inner.head..inner.tail {
            let idx = (t - inner.head) as usize;
            let slot = self.ctl.slot_of(t);
            // SYNC POINT: Acquire; the dead worker's last writes are visible.
            let (tk, st) = unpack(slot.state.load(Ordering::Acquire));
            if tk != t || st != CLAIMED + w as u8 {
                continue;
            }
            let terminated = inner.state == State::Terminated;
            let Some(task) = inner.pending[idx].as_mut() else {
                continue;
            };
            task.attempts += 1;
            if !terminated && task.attempts <= self.config.retries {
                // Retry: the dead worker may have scribbled on the payload, so
                // write the task again from the parent's copy.
                let mut task = inner.pending[idx].take().expect("invariant: checked above");
                let r = self.write_task(t, &mut task);
                match r {
                    Ok(()) => {
                        inner.pending[idx] = Some(task);
                        self.ctl
                            .header()
                            .retries_pending
                            .fetch_add(1, Ordering::SeqCst);
                        self.publish(t);
                        retried += 1;
                    }
                    Err(e) => {
                        slot.state.store(pack(t + cap, FREE), Ordering::Release);
                        inner.finished(&task);
                        failed.push((task.sink, Err(e)));
                    }
                }
            } else {
                let task = inner.pending[idx].take().expect("invariant: checked above");
                // SYNC POINT: Release hands the slot back.
                slot.state.store(pack(t + cap, FREE), Ordering::Release);
                inner.finished(&task);
                failed.push((task.sink, Err(Error::WorkerLost { pid, signal })));
            }
        }
        while let Some(None) = inner.pending.front() {
            inner.pending.pop_front();
            inner.head += 1;
        }
        let replace = inner.state == State::Running
            || (inner.state == State::Closed && inner.outstanding > 0);
        drop(inner);
        if replace {
            match self.spawn_worker(w) {
                Ok(c) => {
                    let mut inner = lock(&self.inner);
                    if inner.state == State::Terminated {
                        let _ = c.kill();
                        let _ = c.wait();
                    } else {
                        inner.workers[w] = Some(c);
                        inner.spawn_error = None;
                    }
                }
                Err(e) => {
                    let mut inner = lock(&self.inner);
                    inner.spawn_error = Some(e.to_string());
                    if inner.workers.iter().all(Option::is_none) {
                        // No worker left and none can be started: fail
                        // everything instead of hanging.
                        ds.extend(self.fail_all_locked(&mut inner, || {
                            Error::InvalidState(format!("no pool worker can be started: {e}"))
                        }));
                    }
                }
            }
        }
        if retried > 0 {
            self.kick_workers(true);
        }
        ds.extend(failed);
        if !ds.is_empty() {
            deliver_all(ds);
        }
        self.ring();
    }

    fn fail_all_locked(&self, inner: &mut Inner, err: impl Fn() -> Error) -> Vec<Delivery> {
        let cap = self.ctl.capacity() as u64;
        let mut out = Vec::new();
        for t in inner.head..inner.tail {
            let idx = (t - inner.head) as usize;
            if let Some(task) = inner.pending[idx].take() {
                let slot = self.ctl.slot_of(t);
                // A finished spilled result would leak its segment: remove it.
                if slot.state.load(Ordering::Acquire) == pack(t, DONE) {
                    let _ = self.read_outcome(t);
                }
                slot.state.store(pack(t + cap, FREE), Ordering::Release);
                inner.finished(&task);
                out.push((task.sink, Err(err())));
            }
        }
        inner.pending.clear();
        inner.head = inner.tail;
        out
    }

    pub(crate) fn state(&self) -> State {
        lock(&self.inner).state
    }

    pub(crate) fn close(&self) {
        let mut inner = lock(&self.inner);
        if inner.state == State::Running {
            inner.state = State::Closed;
        }
    }

    /// Stops the workers now; unfinished tasks fail.
    pub(crate) fn terminate(&self) {
        let (ds, children) = {
            let mut inner = lock(&self.inner);
            inner.state = State::Terminated;
            let ds = self.fail_all_locked(&mut inner, || {
                Error::InvalidState("the pool was terminated before the task finished".into())
            });
            let children: Vec<Child> = inner.workers.iter_mut().filter_map(Option::take).collect();
            inner.stop_supervisor = true;
            (ds, children)
        };
        self.ctl.header().shutdown.store(1, Ordering::SeqCst);
        self.kick_workers(true);
        for c in &children {
            let _ = c.terminate();
        }
        for c in &children {
            if !matches!(c.wait_timeout(Duration::from_secs(2)), Ok(Some(_))) {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        // A worker stopped half-way through returning a large result leaves
        // its spill behind: no worker is left, so every spill is an orphan.
        self.spill_owner.remove_leftovers();
        deliver_all(ds);
        self.ring();
        self.stop_supervisor();
    }

    fn stop_supervisor(&self) {
        lock(&self.inner).stop_supervisor = true;
        self.ring();
        let h = lock(&self.supervisor).take();
        if let Some(h) = h {
            h.thread().unpark();
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
    }

    /// Waits for every task to finish and every worker to exit (after close).
    pub(crate) fn join(&self) -> Result<()> {
        match self.state() {
            State::Running => {
                return Err(Error::InvalidState(
                    "join() called on a running pool: call close() or terminate() first".into(),
                ))
            }
            State::Terminated => {
                self.stop_supervisor();
                return Ok(());
            }
            State::Closed => {}
        }
        self.wait_until(None, || lock(&self.inner).outstanding == 0)?;
        self.ctl.header().shutdown.store(1, Ordering::SeqCst);
        self.kick_workers(true);
        // Workers leave when idle; the supervisor must not replace them now.
        let children: Vec<Child> = {
            let mut inner = lock(&self.inner);
            inner.state = State::Terminated;
            inner.workers.iter_mut().filter_map(Option::take).collect()
        };
        for c in &children {
            if !matches!(c.wait_timeout(Duration::from_secs(10)), Ok(Some(_))) {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        self.spill_owner.remove_leftovers();
        self.stop_supervisor();
        Ok(())
    }

    /// Pids of the live workers.
    pub(crate) fn worker_pids(&self) -> Vec<u32> {
        lock(&self.inner)
            .workers
            .iter()
            .flatten()
            .map(Child::pid)
            .collect()
    }
}
