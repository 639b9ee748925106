//! The parent side of a pool: submission, collection, supervision,
//! cancellation and time limits. Every change of a slot's state word goes
//! through `protocol.rs`; the proof sketch is in `src/pool/README.md`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::task::Waker;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::control::{
    Control, FLAG_ARG_SPILL, FLAG_RES_SPILL, FLAG_TIMED, INLINE, RES_OK, W_INIT_FAILED, W_LEFT,
    W_SERVING,
};
use super::protocol::{self, CLAIMED, DONE};
use super::spill::{create_spill, take_spill_of, SpillOwner, SpillRef};
use super::worker::{decode_failure, worker_main, WorkerBoot};
use crate::error::{Error, Result};
use crate::process::spawn::{
    start_child, Child, ChildOptions, Entry, ExitStatus, FnId, ForkServer,
};
use crate::process::StartMethod;
use crate::segment::Segment;
use crate::sync::{wait_on, wake_if_waiting};

/// Bytes of a finished task: the encoded result, or the error.
pub(crate) type Outcome = Result<Vec<u8>>;

/// A callback run on the pool's callback thread when a single task finishes.
pub(crate) type Callback = Box<dyn FnOnce(&Outcome) + Send>;

/// Where a finished task's outcome goes.
pub(crate) enum Sink {
    /// One task, one result (apply_async).
    Cell(Arc<Cell>),
    /// Chunk `index` of a stream of chunks (map, imap).
    Stream(Arc<Stream>, usize),
}

/// Held by a future or stream that waits for results (`async` feature):
/// while any is held, the supervisor collects every result as it comes, so
/// a waker fires without a thread blocked in `get`.
#[cfg(feature = "async")]
pub(crate) struct AsyncWaiting {
    shared: Arc<Shared>,
}

#[cfg(feature = "async")]
impl AsyncWaiting {
    pub(crate) fn new(shared: &Arc<Shared>) -> Self {
        shared.async_waiting(true);
        AsyncWaiting {
            shared: Arc::clone(shared),
        }
    }
}

#[cfg(feature = "async")]
impl Drop for AsyncWaiting {
    fn drop(&mut self) {
        self.shared.async_waiting(false);
    }
}

/// No ticket yet.
const NO_TICKET: u64 = u64::MAX;

/// The result of one task.
pub(crate) struct Cell {
    pub(crate) value: Mutex<Option<Outcome>>,
    callback: Mutex<Option<Callback>>,
    /// The task's ticket, once submitted.
    ticket: AtomicU64,
    /// Times the task was run again after its worker died.
    pub(crate) retries: AtomicU32,
    /// The task of a future polled before the result came (`async` feature).
    waker: Mutex<Option<Waker>>,
}

impl Cell {
    pub(crate) fn new(callback: Option<Callback>) -> Arc<Cell> {
        Arc::new(Cell {
            value: Mutex::new(None),
            callback: Mutex::new(callback),
            ticket: AtomicU64::new(NO_TICKET),
            retries: AtomicU32::new(0),
            waker: Mutex::new(None),
        })
    }

    pub(crate) fn is_ready(&self) -> bool {
        lock(&self.value).is_some()
    }

    /// Sets the outcome and wakes a future waiting for it.
    fn set(&self, o: Outcome) {
        *lock(&self.value) = Some(o);
        wake(&self.waker);
    }

    /// Has `w` woken when the outcome is set.
    #[cfg(feature = "async")]
    pub(crate) fn set_waker(&self, w: &Waker) {
        set_waker(&self.waker, w);
    }
}

#[cfg(feature = "async")]
fn set_waker(slot: &Mutex<Option<Waker>>, w: &Waker) {
    let mut g = lock(slot);
    if !g.as_ref().is_some_and(|old| old.will_wake(w)) {
        *g = Some(w.clone());
    }
}

fn wake(slot: &Mutex<Option<Waker>>) {
    let w = lock(slot).take();
    if let Some(w) = w {
        w.wake();
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
    /// Ticket of each submitted chunk, by chunk index.
    tickets: Vec<u64>,
    /// The first failure of a chunk, in time (not a cancellation it caused).
    pub(crate) first_error: Option<Error>,
    /// Chunks run again after their worker died.
    pub(crate) retries: u32,
}

/// The shared sink of a map or imap.
pub(crate) struct Stream {
    pub(crate) state: Mutex<StreamState>,
    /// The first failing chunk cancels the others (map, starmap, map_slices;
    /// not imap, whose consumer sees each item's result).
    fail_fast: bool,
    /// The task of a future or stream polled before a chunk came.
    waker: Mutex<Option<Waker>>,
}

impl Sink {
    fn has_callback(&self) -> bool {
        matches!(self, Sink::Cell(c) if lock(&c.callback).is_some())
    }

    fn note_retry(&self) {
        match self {
            Sink::Cell(c) => {
                // Relaxed: a statistic read after the result is delivered.
                c.retries.fetch_add(1, Ordering::Relaxed);
            }
            Sink::Stream(s, _) => lock(&s.state).retries += 1,
        }
    }
}

impl Stream {
    pub(crate) fn new(fail_fast: bool) -> Arc<Stream> {
        Arc::new(Stream {
            state: Mutex::new(StreamState::default()),
            fail_fast,
            waker: Mutex::new(None),
        })
    }

    /// Records chunk `index`; `true` if this is the stream's first real
    /// failure and the stream fails fast (the caller cancels the rest).
    fn deliver(&self, index: usize, o: Outcome) -> bool {
        let mut st = lock(&self.state);
        let first_failure = match &o {
            Err(Error::Cancelled(_)) | Ok(_) => false,
            Err(e) => {
                let first = st.first_error.is_none();
                if first {
                    st.first_error = Some(super::result::clone_error(e));
                }
                first && self.fail_fast
            }
        };
        st.done.insert(index, o);
        st.delivered += 1;
        drop(st);
        wake(&self.waker);
        first_failure
    }

    /// Has `w` woken when the next chunk is delivered.
    #[cfg(feature = "async")]
    pub(crate) fn set_waker(&self, w: &Waker) {
        set_waker(&self.waker, w);
    }

    /// Records the number of chunks (the input is exhausted).
    pub(crate) fn set_total(&self, total: usize) {
        lock(&self.state).total = Some(total);
    }

    pub(crate) fn is_complete(&self) -> bool {
        let st = lock(&self.state);
        st.total == Some(st.delivered)
    }

    /// Whether a chunk failed and the stream fails fast: no more chunks
    /// should be submitted.
    pub(crate) fn is_failed(&self) -> bool {
        self.fail_fast && lock(&self.state).first_error.is_some()
    }
}

/// Locks a std mutex, ignoring poisoning (every critical section here leaves
/// the data consistent before anything that can panic).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Why the pool killed the worker running a task.
enum Doom {
    Cancelled(String),
    TimedOut(Duration),
}

/// What a task is submitted with besides its function and arguments.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TaskMeta {
    /// Index of the task's first item in its map's input (panics name the
    /// item as this plus the index within the batch).
    pub(crate) first_item: Option<u64>,
    /// The task fails with [`Error::TimeLimit`] if it runs longer.
    pub(crate) limit: Option<Duration>,
    /// Whether the task may run again after its worker died: not for an
    /// in-place chunk, which may have half updated its data.
    pub(crate) retryable: bool,
}

impl TaskMeta {
    pub(crate) fn new() -> Self {
        TaskMeta {
            first_item: None,
            limit: None,
            retryable: true,
        }
    }
}

struct Task {
    fn_id: FnId,
    args: Vec<u8>,
    /// Keeps a spilled argument's segment alive until the task ends.
    /// (Boxed: rare, and keeps `Task` small to move.)
    arg_spill: Option<Box<(Segment, Vec<u8>)>>,
    /// Runs that ended with the death of their worker.
    attempts: u32,
    sink: Sink,
    meta: TaskMeta,
    /// Boxed: rare, and a small `Task` is cheap to move on the hot path.
    doom: Option<Box<Doom>>,
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
    /// Unfinished tasks with a time limit: while there are any, the
    /// supervisor checks running tasks' ages on every tick.
    limited: usize,
    pub(crate) state: State,
    workers: Vec<Option<Child>>,
    /// Workers the pool is killing (cancel, time limit): the other task such
    /// a worker may hold by then is run again without counting an attempt.
    killing: Vec<bool>,
    /// Indices being handled: a dead worker's claims are being sorted out, or
    /// a replacement is starting. No other thread starts a worker there.
    reserved: Vec<bool>,
    /// Workers started since they last reached `W_SERVING`: the first time
    /// one does, the run of start failures is over.
    fresh: Vec<bool>,
    /// Doorbell value at the last scan.
    last_scan: u32,
    stop_supervisor: bool,
    /// Futures and streams (`async` feature) waiting for results: the
    /// supervisor then collects every result as it comes.
    async_waiting: usize,
    /// Worker starts that failed in a row (spawn error, initializer error).
    start_failures: u32,
    /// Why the last worker start failed.
    last_start_error: Option<String>,
    /// Set once the pool is broken: every task fails with it.
    broken: Option<String>,
    /// Tasks submitted (a statistic kept under the lock that submit holds).
    pub(crate) submitted: u64,
}

impl Inner {
    /// Book-keeping for a task that leaves `pending`.
    fn finished(&mut self, task: &Task) {
        self.outstanding -= 1;
        if task.sink.has_callback() {
            self.callbacks_pending -= 1;
        }
        if task.meta.limit.is_some() {
            self.limited -= 1;
        }
    }

    /// Index of ticket `t` in `pending`.
    fn index(&self, t: u64) -> Option<usize> {
        Some(t.checked_sub(self.head)? as usize)
    }

    fn task_mut(&mut self, t: u64) -> Option<&mut Task> {
        let idx = self.index(t)?;
        self.pending.get_mut(idx)?.as_mut()
    }

    fn task_ref(&self, t: u64) -> Option<&Task> {
        self.pending.get(self.index(t)?)?.as_ref()
    }

    fn take_task(&mut self, t: u64) -> Option<Task> {
        let idx = self.index(t)?;
        let task = self.pending.get_mut(idx)?.take()?;
        self.finished(&task);
        Some(task)
    }

    fn compact(&mut self) {
        while let Some(None) = self.pending.front() {
            self.pending.pop_front();
            self.head += 1;
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
    /// Default time limit of every task.
    pub(crate) time_limit: Option<Duration>,
    /// Consecutive worker start failures that break the pool.
    pub(crate) max_start_failures: u32,
}

/// Counters behind [`PoolStats`](super::PoolStats).
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) completed: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) retried: AtomicU64,
    pub(crate) cancelled: AtomicU64,
    pub(crate) timed_out: AtomicU64,
    pub(crate) workers_started: AtomicU64,
    pub(crate) workers_replaced: AtomicU64,
    pub(crate) start_failures: AtomicU64,
    pub(crate) callback_panics: AtomicU64,
}

fn bump(c: &AtomicU64) {
    // Relaxed: statistics, read without ordering.
    c.fetch_add(1, Ordering::Relaxed);
}

type Job = Box<dyn FnOnce() + Send>;

/// Everything the pool handle, its results and its supervisor thread share.
pub(crate) struct Shared {
    pub(crate) ctl: Control,
    /// Names of this pool's spilled payloads.
    spill_owner: SpillOwner,
    pub(crate) inner: Mutex<Inner>,
    pub(crate) config: Config,
    supervisor: Mutex<Option<JoinHandle<()>>>,
    /// The callback thread's queue (started on the first callback).
    callbacks: Mutex<Option<mpsc::Sender<Job>>>,
    /// The callback thread, joined by `join()` so that it returns after
    /// every callback ran.
    callback_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// With the fork start method: the fork server, forked before the
    /// supervisor thread exists, that forks every worker (the first ones and
    /// replacements) from a single-threaded process.
    server: Mutex<Option<ForkServer>>,
    pub(crate) counters: Arc<Counters>,
}

type Delivery = (Sink, Outcome);

impl Shared {
    /// Creates the control segment, starts the workers and the supervisor.
    pub(crate) fn start(config: Config) -> Result<Arc<Shared>> {
        // Leftovers of dead creators go first (DESIGN: "and automatically when
        // a pool starts").
        let _ = crate::segment::sweep(false);
        let ctl = Control::create(config.processes, config.capacity)?;
        let server = match config.method {
            StartMethod::Fork => Some(ForkServer::fork_from_here(config.force_fork)?),
            _ => None,
        };
        let shared = Arc::new(Shared {
            ctl,
            spill_owner: SpillOwner::new_for_this_process()?,
            inner: Mutex::new(Inner {
                tail: 0,
                head: 0,
                pending: VecDeque::new(),
                outstanding: 0,
                callbacks_pending: 0,
                limited: 0,
                state: State::Running,
                workers: (0..config.processes).map(|_| None).collect(),
                killing: vec![false; config.processes],
                fresh: vec![true; config.processes],
                reserved: vec![false; config.processes],
                last_scan: 0,
                stop_supervisor: false,
                async_waiting: 0,
                start_failures: 0,
                last_start_error: None,
                broken: None,
                submitted: 0,
            }),
            config,
            supervisor: Mutex::new(None),
            callbacks: Mutex::new(None),
            callback_thread: Mutex::new(None),
            server: Mutex::new(server),
            counters: Arc::new(Counters::default()),
        });
        // Spawned workers start side by side: each start is an exec and a
        // handshake (about 2 ms), and a pool of n waited for them in turn.
        // Fork and fork-server starts stay in turn: a fork wants a
        // single-threaded parent, and the server answers one request at a time.
        let n = shared.config.processes;
        let started: Vec<Result<Child>> = if shared.config.method == StartMethod::Spawn && n > 1 {
            std::thread::scope(|s| {
                let handles: Vec<_> = (0..n)
                    .map(|w| {
                        let sh = &shared;
                        std::thread::Builder::new()
                            .name("shmproc-pool-start".into())
                            .spawn_scoped(s, move || sh.spawn_worker(w))
                    })
                    .collect();
                handles
                    .into_iter()
                    .enumerate()
                    .map(|(w, h)| match h {
                        Ok(h) => h.join().unwrap_or_else(|_| {
                            Err(Error::InvalidState(format!(
                                "the thread starting pool worker {w} panicked"
                            )))
                        }),
                        // No thread: start this one from here.
                        Err(_) => shared.spawn_worker(w),
                    })
                    .collect()
            })
        } else {
            (0..n).map(|w| shared.spawn_worker(w)).collect()
        };
        let mut first_error = None;
        for (w, r) in started.into_iter().enumerate() {
            match r {
                Ok(child) => lock(&shared.inner).workers[w] = Some(child),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_error {
            shared.terminate();
            return Err(e);
        }
        for w in 0..n {
            shared.let_serve(w);
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
        let rec = self.ctl.worker(w);
        // Relaxed: cleared before the worker exists; it sets them itself.
        rec.state
            .store(super::control::W_STARTING, Ordering::Relaxed);
        rec.msg_len.store(0, Ordering::Relaxed);
        // The gate is shut again for a replacement: the dead worker it
        // replaces had it open, and a replacement must claim nothing before
        // `let_serve` (it did, and a pool's statistics could then miss a
        // worker that had already run a task). The child is created after
        // this store, so it reads it.
        rec.go.store(0, Ordering::Relaxed);
        let payload = postcard::to_stdvec(&boot)?;
        let server = lock(&self.server).clone();
        let child = match server {
            Some(s) => s.start_child(Entry::new(worker_main), payload, &opts)?,
            None => start_child(Entry::new(worker_main), payload, &opts)?,
        };
        bump(&self.counters.workers_started);
        Ok(child)
    }

    /// Lets worker `w`, now in the table, claim tasks.
    fn let_serve(&self, w: usize) {
        let rec = self.ctl.worker(w);
        // SYNC POINT: SeqCst store + waiter check (see sync::wait_on).
        rec.go.store(1, Ordering::SeqCst);
        wake_if_waiting(&rec.go, &rec.go_waiters, u32::MAX);
    }

    /// Submits one task; blocks while all slots are in use.
    pub(crate) fn submit(
        &self,
        fn_id: FnId,
        args: Vec<u8>,
        sink: Sink,
        meta: TaskMeta,
    ) -> Result<u64> {
        let mut inner = lock(&self.inner);
        loop {
            if let Some(why) = &inner.broken {
                return Err(Error::PoolBroken(why.clone()));
            }
            if inner.state != State::Running {
                return Err(Error::InvalidState(match inner.state {
                    State::Closed => "the pool is closed".into(),
                    _ => "the pool was terminated".into(),
                }));
            }
            let t = inner.tail;
            if protocol::is_free_for(&self.ctl, t) {
                break;
            }
            // Every slot is in flight: collect what is done, or wait for it.
            let seen = self.ctl.header().doorbell.load(Ordering::SeqCst);
            let ds = self.collect_locked(&mut inner, true);
            if !ds.is_empty() {
                drop(inner);
                self.deliver(ds);
                self.ring();
                inner = lock(&self.inner);
                continue;
            }
            drop(inner);
            self.wait_doorbell(seen, Some(Instant::now() + Duration::from_millis(50)));
            inner = lock(&self.inner);
        }
        let t = inner.tail;
        let meta = TaskMeta {
            limit: meta.limit.or(self.config.time_limit),
            ..meta
        };
        let mut task = Task {
            fn_id,
            args,
            arg_spill: None,
            attempts: 0,
            sink,
            meta,
            doom: None,
        };
        self.write_task(t, &mut task)?;
        match &task.sink {
            Sink::Cell(c) => c.ticket.store(t, Ordering::Relaxed),
            Sink::Stream(s, i) => {
                let mut st = lock(&s.state);
                if st.tickets.len() <= *i {
                    st.tickets.resize(*i + 1, NO_TICKET);
                }
                st.tickets[*i] = t;
            }
        }
        let has_callback = task.sink.has_callback();
        if has_callback {
            inner.callbacks_pending += 1;
        }
        if task.meta.limit.is_some() {
            inner.limited += 1;
        }
        inner.pending.push_back(Some(task));
        inner.tail += 1;
        inner.outstanding += 1;
        protocol::publish(&self.ctl, t);
        inner.submitted += 1;
        drop(inner);
        self.kick_workers(false);
        if has_callback || meta.limit.is_some() {
            // Switch the supervisor to waking on results / checking ages.
            if let Some(h) = lock(&self.supervisor).as_ref() {
                h.thread().unpark();
            }
        }
        Ok(t)
    }

    /// Writes a task's fields into its slot (the slot is FREE or held by a dead
    /// worker, so the parent owns it).
    fn write_task(&self, t: u64, task: &mut Task) -> Result<()> {
        let slot = self.ctl.slot_of(t);
        let mut flags = 0;
        if task.args.len() > INLINE {
            if task.arg_spill.is_none() {
                let (seg, r) = create_spill(&task.args, self.spill_owner)?;
                task.arg_spill = Some(Box::new((seg, postcard::to_stdvec(&r)?)));
            }
            let (_, r) = &**task.arg_spill.as_ref().expect("invariant: spill set above");
            self.ctl.write_payload(t, r);
            slot.arg_len.store(r.len() as u32, Ordering::Relaxed);
            flags |= FLAG_ARG_SPILL;
        } else {
            self.ctl.write_payload(t, &task.args);
            slot.arg_len
                .store(task.args.len() as u32, Ordering::Relaxed);
        }
        if task.meta.limit.is_some() {
            flags |= FLAG_TIMED;
        }
        // Relaxed: published by the READY / RETRY Release in `protocol`.
        slot.fn_id.store(task.fn_id.0, Ordering::Relaxed);
        slot.flags.store(flags, Ordering::Relaxed);
        slot.res_len.store(0, Ordering::Relaxed);
        slot.attempts.store(task.attempts, Ordering::Relaxed);
        slot.started_ns.store(0, Ordering::Relaxed);
        Ok(())
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

    /// A future or stream starts (`true`) or stops waiting for results
    /// collected by the supervisor.
    #[cfg(feature = "async")]
    pub(crate) fn async_waiting(&self, on: bool) {
        let mut inner = lock(&self.inner);
        if on {
            inner.async_waiting += 1;
        } else {
            inner.async_waiting = inner.async_waiting.saturating_sub(1);
        }
        drop(inner);
        if on {
            // Switch the supervisor to waking on results.
            if let Some(h) = lock(&self.supervisor).as_ref() {
                h.thread().unpark();
            }
        }
    }

    /// Wakes parent threads waiting on the doorbell (after deliveries).
    fn ring(&self) {
        ring(&self.ctl);
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
    fn read_outcome(&self, t: u64, meta: TaskMeta) -> Outcome {
        let slot = self.ctl.slot_of(t);
        // Relaxed: published by the worker's DONE Release, acquired by the scan.
        let len = slot.res_len.load(Ordering::Relaxed) as usize;
        let status = slot.res_status.load(Ordering::Relaxed);
        let flags = slot.flags.load(Ordering::Relaxed);
        let inline = self.ctl.read_payload(t, len)?;
        let bytes = if flags & FLAG_RES_SPILL != 0 {
            let r: SpillRef = postcard::from_bytes(&inline)?;
            take_spill_of(&r, self.spill_owner)?
        } else {
            inline
        };
        if status == RES_OK {
            Ok(bytes)
        } else {
            Err(match decode_failure(&bytes) {
                Error::TaskPanicked(mut p) => {
                    if let (Some(first), Some(i)) = (meta.first_item, p.item) {
                        p.item = Some(first + i);
                    }
                    Error::TaskPanicked(p)
                }
                other => other,
            })
        }
    }

    /// Collects every DONE slot. Without `force`, only if a result was
    /// signalled since the last scan.
    ///
    /// A worker stores DONE (Release) and then bumps the doorbell (SeqCst); a
    /// scan loads the doorbell (SeqCst) first and then looks at every
    /// uncollected ticket. So a scan that consumed a doorbell value sees
    /// every result announced up to it, and a result announced later moves
    /// the doorbell past `last_scan`: no hint is involved, none can be missed.
    fn collect_locked(&self, inner: &mut Inner, force: bool) -> Vec<Delivery> {
        let h = self.ctl.header();
        // SYNC POINT: SeqCst pairs with the workers' doorbell bumps.
        let bell = h.doorbell.load(Ordering::SeqCst);
        if !force && bell == inner.last_scan {
            return Vec::new();
        }
        inner.last_scan = bell;
        let mut out = Vec::new();
        for t in inner.head..inner.tail {
            let idx = (t - inner.head) as usize;
            let Some(task) = &inner.pending[idx] else {
                continue;
            };
            if protocol::state_of(&self.ctl, t) != Some(DONE) {
                continue;
            }
            let meta = task.meta;
            let o = self.read_outcome(t, meta);
            protocol::recycle(&self.ctl, t);
            if let Some(task) = inner.take_task(t) {
                out.push((task.sink, o));
            }
        }
        inner.compact();
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
            self.deliver(ds);
            self.ring();
        }
        n
    }

    /// Hands outcomes to their sinks: results with a callback go to the
    /// callback thread; a map's first failure cancels the rest of the map.
    fn deliver(&self, ds: Vec<Delivery>) {
        let mut failed_streams = Vec::new();
        let failures = ds.iter().filter(|(_, o)| o.is_err()).count() as u64;
        // Relaxed: statistics (one update per batch, not per task).
        self.counters
            .completed
            .fetch_add(ds.len() as u64 - failures, Ordering::Relaxed);
        if failures > 0 {
            self.counters.failed.fetch_add(failures, Ordering::Relaxed);
        }
        for (sink, o) in ds {
            match sink {
                Sink::Cell(c) => self.deliver_cell(c, o),
                Sink::Stream(s, i) => {
                    if s.deliver(i, o) {
                        failed_streams.push(s);
                    }
                }
            }
        }
        for s in failed_streams {
            self.cancel_stream(&s, "an earlier item of the same map failed");
        }
    }

    fn deliver_cell(&self, c: Arc<Cell>, o: Outcome) {
        let cb = lock(&c.callback).take();
        let Some(cb) = cb else {
            c.set(o);
            return;
        };
        let ctl = self.ctl.clone();
        let counters = Arc::clone(&self.counters);
        let job: Job = Box::new(move || {
            // Python runs the callback before the result is ready; so do we:
            // `get()` returns after the callback's effects.
            let caught = crate::process::task::catch_task_panic(|| cb(&o));
            if let Err(p) = caught {
                bump(&counters.callback_panics);
                eprintln!("shmproc: a pool callback panicked (the pool goes on): {p}");
            }
            c.set(o);
            ring(&ctl);
        });
        if let Err(job) = self.send_callback(job) {
            job();
        }
    }

    /// Queues `job` on the callback thread, starting it on first use; gives
    /// the job back if no thread can run it.
    fn send_callback(&self, job: Job) -> std::result::Result<(), Job> {
        let mut tx = lock(&self.callbacks);
        if tx.is_none() {
            let (s, r) = mpsc::channel::<Job>();
            let started = std::thread::Builder::new()
                .name("shmproc-pool-callbacks".into())
                .spawn(move || {
                    while let Ok(job) = r.recv() {
                        job();
                    }
                });
            match started {
                Ok(h) => *lock(&self.callback_thread) = Some(h),
                Err(_) => return Err(job),
            }
            *tx = Some(s);
        }
        match tx.as_ref() {
            Some(s) => s.send(job).map_err(|e| e.0),
            None => Err(job),
        }
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

    /// The supervisor thread: collects results (for callbacks), watches the
    /// workers, retries or fails the tasks of dead ones, replaces them,
    /// enforces time limits.
    fn supervise(self: Arc<Self>) {
        loop {
            let seen = self.ctl.header().doorbell.load(Ordering::SeqCst);
            self.supervise_once();
            let (stop, callbacks, limited) = {
                let inner = lock(&self.inner);
                (
                    inner.stop_supervisor,
                    inner.callbacks_pending > 0 || inner.async_waiting > 0,
                    inner.limited > 0,
                )
            };
            if stop {
                return;
            }
            let tick = Duration::from_millis(if limited { 5 } else { 20 });
            if callbacks {
                // Results have callbacks to run: wake on every result.
                self.wait_doorbell(seen, Some(Instant::now() + tick));
            } else {
                // Nobody needs the supervisor for results (waiting threads
                // collect their own): look at the workers every tick without
                // making every result pay for a wake-up.
                std::thread::park_timeout(tick);
            }
        }
    }

    /// One round of the supervisor's work: collect, reap, time limits, refill.
    fn supervise_once(&self) {
        self.collect(false);
        self.reap();
        self.enforce_time_limits();
        self.refill();
    }

    /// Handles every worker that has exited. Each death is taken out of
    /// `workers` under the lock, so exactly one thread handles it.
    pub(crate) fn reap(&self) {
        // One death at a time: handling one may deliver a failure that
        // cancels the rest of a map, which waits for tasks of other dead
        // workers; those must still be in the table for that wait's own
        // reaping to take them.
        while let Some((w, c, st)) = self.take_one_death() {
            self.worker_died(w, c.pid(), st);
        }
    }

    /// Takes the first worker that has exited out of the table (reserving its
    /// index), and notes workers that reached `W_SERVING`.
    fn take_one_death(&self) -> Option<(usize, Child, ExitStatus)> {
        let mut inner = lock(&self.inner);
        for w in 0..inner.workers.len() {
            let exited = match &inner.workers[w] {
                Some(c) => c.try_wait().ok().flatten(),
                None => continue,
            };
            match exited {
                Some(st) => {
                    if let Some(c) = inner.workers[w].take() {
                        // Nobody starts a worker in this index before the
                        // dead one's claims are handled (`worker_died`).
                        inner.reserved[w] = true;
                        return Some((w, c, st));
                    }
                }
                None => {
                    // SYNC POINT: Acquire pairs with the worker's Release.
                    if inner.fresh[w]
                        && self.ctl.worker(w).state.load(Ordering::Acquire) == W_SERVING
                    {
                        inner.fresh[w] = false;
                        inner.start_failures = 0;
                    }
                }
            }
        }
        None
    }

    fn worker_died(&self, w: usize, pid: u32, status: ExitStatus) {
        let mut inner = lock(&self.inner);
        let killed_by_pool = std::mem::take(&mut inner.killing[w]);
        let signal = status.signal();
        let code = match status {
            ExitStatus::Exited(c) => Some(c),
            ExitStatus::Signaled(_) => None,
        };
        let rec = self.ctl.worker(w);
        // SYNC POINT: Acquire pairs with the worker's Release (it is dead:
        // nothing changes any more).
        match rec.state.load(Ordering::Acquire) {
            W_INIT_FAILED => {
                inner.start_failures += 1;
                inner.last_start_error = Some(rec.failure());
                bump(&self.counters.start_failures);
            }
            // It got past its initializer: the run of failed starts is over.
            W_SERVING | W_LEFT => {
                inner.start_failures = 0;
                inner.fresh[w] = false;
            }
            _ => {}
        }
        let mut failed = Vec::new();
        let mut requeued = 0;
        // Results it finished before dying are good: collect them first.
        let mut ds = self.collect_locked(&mut inner, true);
        let terminated = inner.state == State::Terminated;
        for t in inner.head..inner.tail {
            if protocol::state_of(&self.ctl, t) != Some(CLAIMED + w as u8) {
                continue;
            }
            let retries = self.config.retries;
            let Some(task) = inner.task_mut(t) else {
                continue;
            };
            let err = match task.doom.take().map(|d| *d) {
                Some(Doom::Cancelled(why)) => {
                    bump(&self.counters.cancelled);
                    Some(Error::Cancelled(why))
                }
                Some(Doom::TimedOut(limit)) => {
                    bump(&self.counters.timed_out);
                    Some(Error::TimeLimit { limit, pid })
                }
                None => {
                    // A task whose worker the pool killed for another task
                    // does not lose an attempt, unless it may run only once
                    // (retries 0) or cannot run twice (an in-place chunk
                    // half done).
                    if !killed_by_pool || retries == 0 || !task.meta.retryable {
                        task.attempts += 1;
                    }
                    if terminated || !task.meta.retryable || task.attempts > retries {
                        Some(Error::WorkerLost { pid, signal, code })
                    } else {
                        // Retry: the dead worker may have scribbled on the
                        // payload, so write the task again from our copy.
                        let idx = (t - inner.head) as usize;
                        let mut task = inner.pending[idx]
                            .take()
                            .expect("invariant: task_mut found it");
                        match self.write_task(t, &mut task) {
                            Ok(()) => {
                                task.sink.note_retry();
                                inner.pending[idx] = Some(task);
                                protocol::requeue(&self.ctl, t);
                                bump(&self.counters.retried);
                                requeued += 1;
                                None
                            }
                            Err(e) => {
                                inner.pending[idx] = Some(task);
                                Some(e)
                            }
                        }
                    }
                }
            };
            if let Some(e) = err {
                protocol::recycle(&self.ctl, t);
                if let Some(task) = inner.take_task(t) {
                    failed.push((task.sink, Err(e)));
                }
            }
        }
        inner.compact();
        let killed = self.maybe_break(&mut inner, &mut failed);
        let replace = inner.broken.is_none()
            && (inner.state == State::Running
                || (inner.state == State::Closed && inner.outstanding > 0));
        if !replace {
            inner.reserved[w] = false;
        }
        drop(inner);
        wait_gone(&killed);
        if replace {
            self.replace(w);
        }
        if requeued > 0 {
            self.kick_workers(true);
        }
        ds.extend(failed);
        if !ds.is_empty() {
            self.deliver(ds);
        }
        self.ring();
    }

    /// Breaks the pool once worker starts have failed too often in a row:
    /// every pending task fails, and so will every later one.
    ///
    /// Returns the workers it killed (they held tasks): wait for them to be
    /// gone before delivering, so that no task of a failed zero-copy map
    /// still runs when its call returns.
    #[must_use]
    fn maybe_break(&self, inner: &mut Inner, out: &mut Vec<Delivery>) -> Vec<Child> {
        if inner.broken.is_some() || inner.start_failures < self.config.max_start_failures {
            return Vec::new();
        }
        let why = format!(
            "{} worker starts failed in a row; the last one: {}",
            inner.start_failures,
            inner
                .last_start_error
                .as_deref()
                .unwrap_or("no reason given")
        );
        inner.broken = Some(why.clone());
        let (ds, killed) = self.fail_all_locked(inner, || Error::PoolBroken(why.clone()));
        out.extend(ds);
        killed
    }

    /// Starts a worker in index `w` (empty). On failure the index stays empty
    /// and [`refill`](Shared::refill) tries again on a later tick.
    ///
    /// The caller holds the index's reservation (`reserved[w]`): no other
    /// thread starts a worker in it meanwhile, and the dead worker's claims
    /// (`CLAIMED + w`) were all handled before. The reservation ends here.
    fn replace(&self, w: usize) {
        match self.spawn_worker(w) {
            Ok(c) => {
                let mut inner = lock(&self.inner);
                inner.reserved[w] = false;
                if inner.state == State::Terminated || inner.broken.is_some() {
                    // It never got the go: it claimed nothing.
                    drop(inner);
                    let _ = c.kill();
                    let _ = c.wait();
                } else {
                    inner.workers[w] = Some(c);
                    inner.fresh[w] = true;
                    // In the table first, then the go (under the lock, so a
                    // failing or cancelling thread sees the worker it may
                    // have to kill).
                    self.let_serve(w);
                    drop(inner);
                    bump(&self.counters.workers_replaced);
                }
            }
            Err(e) => {
                bump(&self.counters.start_failures);
                let mut inner = lock(&self.inner);
                inner.reserved[w] = false;
                inner.start_failures += 1;
                inner.last_start_error = Some(e.to_string());
                let mut failed = Vec::new();
                let killed = self.maybe_break(&mut inner, &mut failed);
                drop(inner);
                wait_gone(&killed);
                if !failed.is_empty() {
                    self.deliver(failed);
                    self.ring();
                }
            }
        }
    }

    /// Starts workers in empty indices (after failed starts), while tasks may
    /// still come or wait.
    fn refill(&self) {
        let empty: Vec<usize> = {
            let mut inner = lock(&self.inner);
            let wanted = inner.broken.is_none()
                && (inner.state == State::Running
                    || (inner.state == State::Closed && inner.outstanding > 0));
            if !wanted {
                return;
            }
            let empty: Vec<usize> = (0..inner.workers.len())
                .filter(|&w| inner.workers[w].is_none() && !inner.reserved[w])
                .collect();
            for &w in &empty {
                inner.reserved[w] = true;
            }
            empty
        };
        for w in empty {
            self.replace(w);
        }
    }

    /// Kills the workers of running tasks that are over their time limit.
    fn enforce_time_limits(&self) {
        let mut inner = lock(&self.inner);
        if inner.limited == 0 {
            return;
        }
        let now = crate::sys::proc::monotonic_ns();
        for t in inner.head..inner.tail {
            let Some(st) = protocol::state_of(&self.ctl, t) else {
                continue;
            };
            if !(CLAIMED..DONE).contains(&st) {
                continue;
            }
            let w = (st - CLAIMED) as usize;
            // Relaxed: written by the claimant after its claim, which we saw.
            let started = self.ctl.slot_of(t).started_ns.load(Ordering::Relaxed);
            let Some(task) = inner.task_mut(t) else {
                continue;
            };
            let Some(limit) = task.meta.limit else {
                continue;
            };
            if started == 0
                || task.doom.is_some()
                || now.saturating_sub(started) < limit.as_nanos() as u64
            {
                continue;
            }
            task.doom = Some(Box::new(Doom::TimedOut(limit)));
            self.kill_worker_locked(&mut inner, w);
        }
    }

    /// SIGKILLs worker `w` on the pool's behalf.
    fn kill_worker_locked(&self, inner: &mut Inner, w: usize) -> Option<Child> {
        let c = inner.workers.get(w)?.as_ref()?.clone();
        inner.killing[w] = true;
        let _ = c.kill();
        Some(c)
    }

    /// Cancels the tasks `tickets` (those still pending): a queued one is
    /// withdrawn; a running one has its worker killed (and replaced) if
    /// `kill`, else it runs to its end. Returns once every one of them is
    /// delivered.
    fn cancel_tickets(&self, tickets: &[u64], why: &str, kill: bool) {
        let mut killed = Vec::new();
        let mut withdrawn = Vec::new();
        {
            let mut inner = lock(&self.inner);
            for &t in tickets {
                if inner.task_mut(t).is_none() {
                    continue;
                }
                if protocol::withdraw(&self.ctl, t) {
                    if let Some(task) = inner.take_task(t) {
                        bump(&self.counters.cancelled);
                        withdrawn.push((task.sink, Err(Error::Cancelled(why.to_string()))));
                    }
                    continue;
                }
                match protocol::state_of(&self.ctl, t) {
                    Some(st) if kill && (CLAIMED..DONE).contains(&st) => {
                        let w = (st - CLAIMED) as usize;
                        if let Some(task) = inner.task_mut(t) {
                            if task.doom.is_none() {
                                task.doom = Some(Box::new(Doom::Cancelled(why.to_string())));
                            }
                        }
                        if let Some(c) = self.kill_worker_locked(&mut inner, w) {
                            killed.push(c);
                        }
                    }
                    // DONE: collected normally, the cancel came too late.
                    _ => {}
                }
            }
            inner.compact();
        }
        if !withdrawn.is_empty() {
            self.deliver(withdrawn);
            self.ring();
        }
        wait_gone(&killed);
        if !killed.is_empty() {
            self.reap();
        }
        // Every ticket is delivered once it left the table: a withdrawn or
        // killed one by now (or very soon, if the supervisor handles the
        // death), a running one when it finishes.
        self.wait_supervising(|| {
            let inner = lock(&self.inner);
            tickets.iter().all(|&t| inner.task_ref(t).is_none())
        });
    }

    /// Waits until `ready()` holds, doing the supervisor's work meanwhile
    /// (collect, reap, time limits, refill): this may run on the supervisor
    /// thread itself (a failing map cancels the rest of it from there), and
    /// the tasks waited for may need a death handled to end.
    fn wait_supervising(&self, mut ready: impl FnMut() -> bool) {
        loop {
            if ready() {
                return;
            }
            let seen = self.ctl.header().doorbell.load(Ordering::SeqCst);
            self.supervise_once();
            if ready() {
                return;
            }
            self.wait_doorbell(seen, Some(Instant::now() + Duration::from_millis(5)));
        }
    }

    /// Cancels one task.
    pub(crate) fn cancel_cell(&self, c: &Cell, why: &str) {
        // Relaxed: set at submission, before the handle was returned.
        let t = c.ticket.load(Ordering::Relaxed);
        if t != NO_TICKET {
            self.cancel_tickets(&[t], why, true);
        }
    }

    /// Cancels every chunk of a stream that is not delivered yet (running ones
    /// have their workers killed).
    pub(crate) fn cancel_stream(&self, s: &Stream, why: &str) {
        self.stop_stream(s, why, true)
    }

    /// Withdraws the queued chunks of a stream and waits for the running ones
    /// to finish.
    pub(crate) fn drain_stream(&self, s: &Stream, why: &str) {
        self.stop_stream(s, why, false)
    }

    fn stop_stream(&self, s: &Stream, why: &str, kill: bool) {
        let tickets: Vec<u64> = {
            let st = lock(&s.state);
            st.tickets
                .iter()
                .enumerate()
                .filter(|(i, &t)| t != NO_TICKET && !st.done.contains_key(i))
                .map(|(_, &t)| t)
                .collect()
        };
        self.cancel_tickets(&tickets, why, kill);
    }

    /// Fails every pending task; returns the deliveries and the workers it
    /// killed because they were running one.
    fn fail_all_locked(
        &self,
        inner: &mut Inner,
        err: impl Fn() -> Error,
    ) -> (Vec<Delivery>, Vec<Child>) {
        let mut out = Vec::new();
        let mut killed = Vec::new();
        for t in inner.head..inner.tail {
            let idx = (t - inner.head) as usize;
            let Some(meta) = inner.pending[idx].as_ref().map(|task| task.meta) else {
                continue;
            };
            // A finished spilled result would leak its segment: remove it.
            if protocol::state_of(&self.ctl, t) == Some(DONE) {
                let _ = self.read_outcome(t, meta);
            }
            // Withdrawn if queued; recycled if done; a running task's worker
            // is killed, and its slot stays with it (the pool is broken or
            // terminated: nothing is submitted any more).
            if !protocol::withdraw(&self.ctl, t) {
                match protocol::state_of(&self.ctl, t) {
                    Some(st) if (CLAIMED..DONE).contains(&st) => {
                        killed.extend(self.kill_worker_locked(inner, (st - CLAIMED) as usize));
                    }
                    _ => protocol::recycle(&self.ctl, t),
                }
            }
            if let Some(task) = inner.take_task(t) {
                out.push((task.sink, Err(err())));
            }
        }
        inner.compact();
        (out, killed)
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
            let (ds, _killed) = self.fail_all_locked(&mut inner, || {
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
            if c.wait_timeout(Duration::from_secs(2)).is_err() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        // A worker stopped half-way through returning a large result leaves
        // its spill behind: no worker is left, so every spill is an orphan.
        self.spill_owner.remove_leftovers();
        lock(&self.server).take();
        self.deliver(ds);
        self.ring();
        self.stop_supervisor();
    }

    fn stop_supervisor(&self) {
        lock(&self.inner).stop_supervisor = true;
        // The callback thread ends once it has run what is queued.
        lock(&self.callbacks).take();
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
                self.join_callback_thread();
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
            if c.wait_timeout(Duration::from_secs(10)).is_err() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        self.spill_owner.remove_leftovers();
        lock(&self.server).take();
        self.stop_supervisor();
        self.join_callback_thread();
        Ok(())
    }

    /// Waits for the callback thread to run what is queued and end (its
    /// sender is gone once the supervisor stopped). A callback that calls
    /// join() itself does not wait for its own thread.
    fn join_callback_thread(&self) {
        let h = lock(&self.callback_thread).take();
        if let Some(h) = h {
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
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

/// Waits (a bounded time) until SIGKILLed workers are gone.
fn wait_gone(killed: &[Child]) {
    for c in killed {
        // A SIGKILLed process is gone within milliseconds.
        let _ = c.wait_readable(Some(Duration::from_secs(10)));
    }
}

/// Wakes parent threads waiting on the doorbell of `ctl`.
fn ring(ctl: &Control) {
    let h = ctl.header();
    // SYNC POINT: SeqCst bump + waiter check (see sync::wait_on).
    h.doorbell.fetch_add(1, Ordering::SeqCst);
    wake_if_waiting(&h.doorbell, &h.parent_waiters, u32::MAX);
}
