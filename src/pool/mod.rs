//! The process pool: Python's `multiprocessing.Pool` on shared memory.
//!
//! A [`Pool`] starts N worker processes (spawn or fork, see
//! [`StartMethod`]) that share a control segment
//! with the parent. A task is a function (a `fn` item or non-capturing closure,
//! named by its offset in the binary) plus its encoded arguments; it travels in
//! a slot of the control segment, and the result comes back the same way. No
//! pipe, no per-task system call beyond the futex wake-ups that are needed:
//! idle workers and waiting parents spin briefly before they sleep.
//!
//! | Python | shmproc |
//! |---|---|
//! | `Pool(3)` | [`Pool::new(3)`](Pool::new), [`Pool::builder()`](Pool::builder) |
//! | `apply(f, (x,))` | [`pool.apply(f, x)`](Pool::apply) |
//! | `apply_async(f, (x,), callback=cb)` | [`apply_async`](Pool::apply_async), [`apply_async_with`](Pool::apply_async_with) |
//! | `map(f, xs, chunksize)` | [`map`](Pool::map), [`map_opts`](Pool::map_opts) ([`TaskOptions::chunksize`]), [`map_async`](Pool::map_async) |
//! | `imap`, `imap_unordered` | [`imap`](Pool::imap), [`imap_unordered`](Pool::imap_unordered) (lazy, bounded) |
//! | `starmap(f, [(x, t)])` | [`starmap`](Pool::starmap), [`starmap_async`](Pool::starmap_async) |
//! | `map(partial(f, time=4), xs)` | [`map_with(f, 4, xs)`](Pool::map_with) |
//! | — | [`map_slices`](Pool::map_slices): zero-copy kernels over [`SharedArray`]s |
//!
//! # Supervision
//!
//! A supervisor thread watches every worker. When one dies (SIGKILL, abort,
//! OOM) the tasks it held are found exactly (a claim records the claimant in the
//! slot), retried on another worker ([`PoolBuilder::retries`], default 1) or
//! failed with [`Error::WorkerLost`], and the worker is replaced. A task that
//! panics returns [`Error::TaskPanicked`] with the message and the worker keeps
//! serving. Nothing hangs: Python's `Pool` waits forever for a killed worker's
//! task; this pool does not.
//!
//! ```no_run
//! fn power(x: u64) -> u64 {
//!     shmproc_kernels::power_u64(x, 4)
//! }
//!
//! fn main() -> shmproc::Result<()> {
//!     let pool = shmproc::Pool::new(3)?;
//!     assert_eq!(pool.map(power, [1, 2, 3])?, vec![1, 65536, 43046721]);
//!     let r = pool.apply_async(power, 2)?;
//!     assert_eq!(r.get()?, 65536);
//!     pool.close();
//!     pool.join()
//! }
//! ```

mod chunk;
mod control;
mod core;
mod imap;
mod protocol;
mod result;
mod spill;
mod worker;

use std::marker::PhantomData;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytemuck::Pod;
use serde::de::DeserializeOwned;
use serde::Serialize;

use self::core::{lock, Callback, Cell, Config, Outcome, Shared, Sink, State, Stream, TaskMeta};
use crate::error::{Error, Result};
use crate::process::spawn::{raw_call, FnId};
use crate::process::task::{assert_zero_sized, conjure};
use crate::process::StartMethod;
use crate::segment::SharedArray;

pub use control::MAX_WORKERS;
pub use imap::IMap;
#[cfg(feature = "async")]
pub use imap::IMapStream;
pub use result::AsyncResult;
use result::{decode_chunks, Kind};

/// A pool of worker processes.
///
/// Dropping a pool terminates it (like leaving Python's `with Pool() as p:`):
/// workers are stopped, unfinished tasks fail, segments are removed.
pub struct Pool {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("processes", &self.shared.config.processes)
            .field("state", &self.shared.state())
            .finish()
    }
}

/// Configures a [`Pool`]: `Pool::builder().processes(4).build()`.
#[derive(Debug, Clone)]
pub struct PoolBuilder {
    processes: Option<usize>,
    method: Option<StartMethod>,
    force_fork: bool,
    initializer: Option<(FnId, Vec<u8>)>,
    /// Why the initializer's argument could not be encoded (reported by `build`).
    initializer_error: Option<String>,
    maxtasks: u64,
    retries: u32,
    capacity: usize,
    time_limit: Option<Duration>,
    max_start_failures: u32,
}

impl Default for PoolBuilder {
    fn default() -> Self {
        PoolBuilder {
            processes: None,
            method: None,
            force_fork: false,
            initializer: None,
            initializer_error: None,
            maxtasks: 0,
            retries: 1,
            capacity: control::DEFAULT_CAPACITY,
            time_limit: None,
            max_start_failures: 3,
        }
    }
}

impl PoolBuilder {
    /// Number of worker processes (default: [`cpu_count`](crate::process::cpu_count)).
    pub fn processes(mut self, n: usize) -> Self {
        self.processes = Some(n);
        self
    }

    /// Spawn or fork (default: the global start method).
    pub fn start_method(mut self, m: StartMethod) -> Self {
        self.method = Some(m);
        self
    }

    /// Fork even if this process has several threads (see
    /// [`StartMethod::Fork`](crate::process::StartMethod)).
    pub fn force_fork(mut self, yes: bool) -> Self {
        self.force_fork = yes;
        self
    }

    /// Runs `f(arg)` in every worker when it starts (Python's `initializer`
    /// and `initargs`). A worker whose initializer panics exits and is
    /// replaced; after [`max_start_failures`](PoolBuilder::max_start_failures)
    /// such failures in a row the pool is broken: every pending and later task
    /// fails with [`Error::PoolBroken`], carrying the initializer's panic.
    /// An argument that cannot be encoded is reported by
    /// [`build`](PoolBuilder::build) ([`Error::Codec`]).
    pub fn initializer<F, A>(mut self, f: F, arg: A) -> Self
    where
        F: Fn(A) + Copy + Send + 'static,
        A: Serialize + DeserializeOwned,
    {
        assert_zero_sized::<F>();
        let _ = f;
        match postcard::to_stdvec(&arg) {
            Ok(bytes) => {
                self.initializer = Some((FnId::of(raw_call::<F, A, ()>()), bytes));
                self.initializer_error = None;
            }
            Err(e) => self.initializer_error = Some(format!("the initializer's argument: {e}")),
        }
        self
    }

    /// Replace a worker after it has run `n` tasks (0: never; Python's
    /// `maxtasksperchild`).
    pub fn maxtasksperchild(mut self, n: u64) -> Self {
        self.maxtasks = n;
        self
    }

    /// How many times a task whose worker died is run again before it fails
    /// with [`Error::WorkerLost`] (default 1). With 0 a task runs at most
    /// once. A task whose worker the pool killed to cancel or time out
    /// *another* task (the worker had moved on to it) is run again without
    /// counting an attempt, unless retries is 0. Chunks of
    /// [`Pool::map_slices_in_place`] are never run again.
    pub fn retries(mut self, n: u32) -> Self {
        self.retries = n;
        self
    }

    /// Tasks that can be in flight at once: the slots of the pool's control
    /// segment (default 1024, clamped to 2..=2^20; more tasks wait in the
    /// parent). Named `capacity` before 0.2.
    pub fn tasks_in_flight(mut self, n: usize) -> Self {
        self.capacity = n.clamp(2, 1 << 20);
        self
    }

    /// A time limit for every task of the pool (default: none). A task that
    /// runs longer has its worker killed and replaced, and fails with
    /// [`Error::TimeLimit`]; it is not retried. One call can set its own
    /// limit with [`TaskOptions::time_limit`]. The supervisor checks the ages
    /// of running tasks every 5 ms while any task has a limit, so a task runs
    /// a little over its limit (one check period, more on a loaded machine).
    pub fn task_time_limit(mut self, limit: Duration) -> Self {
        self.time_limit = Some(limit);
        self
    }

    /// How many worker starts may fail in a row (the initializer panics, the
    /// worker cannot be started) before the pool is broken (default 3, at
    /// least 1).
    pub fn max_start_failures(mut self, n: u32) -> Self {
        self.max_start_failures = n.max(1);
        self
    }

    /// Starts the workers: as many as asked for, or by default
    /// [`cpu_count`](crate::process::cpu_count) clamped to [`MAX_WORKERS`].
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for 0 or more than [`MAX_WORKERS`] processes
    /// asked for; [`Error::Codec`] if the initializer's argument could not
    /// be encoded;
    /// [`Error::InitMissing`], [`Error::ForkUnsafe`] and the other start errors
    /// of [`Process`](crate::Process).
    pub fn build(self) -> Result<Pool> {
        if let Some(e) = self.initializer_error {
            return Err(Error::Codec(e));
        }
        let processes = self
            .processes
            .unwrap_or_else(|| crate::process::cpu_count().min(MAX_WORKERS));
        let config = Config {
            processes,
            method: self.method.unwrap_or_else(crate::process::get_start_method),
            force_fork: self.force_fork,
            initializer: self.initializer,
            maxtasks: self.maxtasks,
            retries: self.retries,
            capacity: self.capacity,
            time_limit: self.time_limit,
            max_start_failures: self.max_start_failures,
        };
        Ok(Pool {
            shared: Shared::start(config)?,
        })
    }
}

// ---- trampolines ------------------------------------------------------------

use crate::process::task::{catch_task_panic, TaskFailure};

type Answer = std::result::Result<Vec<u8>, TaskFailure>;

fn encode<T: Serialize>(v: &T) -> Answer {
    postcard::to_stdvec(v).map_err(|e| TaskFailure::codec("encoding result", e))
}

fn decode<T: DeserializeOwned>(b: &[u8]) -> std::result::Result<T, TaskFailure> {
    postcard::from_bytes(b).map_err(|e| TaskFailure::codec("decoding arguments", e))
}

/// Calls `f` on every item in order; a panic names the item (its index in
/// the batch; the parent adds the batch's offset in the whole input).
fn run_batch<A, R>(
    items: Vec<A>,
    mut f: impl FnMut(A) -> R,
) -> std::result::Result<Vec<R>, TaskFailure> {
    let mut done = 0u64;
    let mut out = Vec::with_capacity(items.len());
    catch_task_panic(|| {
        for a in items {
            out.push(f(a));
            done += 1;
        }
    })
    .map_err(|mut p| {
        p.item = Some(done);
        TaskFailure::Panic(p)
    })?;
    Ok(out)
}

/// `f` over a batch of items.
fn batch_trampoline<F, A, R>(bytes: &[u8]) -> Answer
where
    F: Fn(A) -> R + Copy + 'static,
    A: DeserializeOwned,
    R: Serialize,
{
    let items: Vec<A> = decode(bytes)?;
    let f = conjure::<F>();
    encode(&run_batch(items, f)?)
}

/// `f(a, b)` over a batch of pairs.
fn star_trampoline<F, A, B, R>(bytes: &[u8]) -> Answer
where
    F: Fn(A, B) -> R + Copy + 'static,
    A: DeserializeOwned,
    B: DeserializeOwned,
    R: Serialize,
{
    let items: Vec<(A, B)> = decode(bytes)?;
    let f = conjure::<F>();
    encode(&run_batch(items, |(a, b)| f(a, b))?)
}

/// `f(item, fixed.clone())` over a batch: `functools.partial`.
fn with_trampoline<F, A, P, R>(bytes: &[u8]) -> Answer
where
    F: Fn(A, P) -> R + Copy + 'static,
    A: DeserializeOwned,
    P: DeserializeOwned + Clone,
    R: Serialize,
{
    let (fixed, items): (P, Vec<A>) = decode(bytes)?;
    let f = conjure::<F>();
    encode(&run_batch(items, |a| f(a, fixed.clone()))?)
}

/// Python's default chunk size for `map`: about four chunks per worker.
fn default_chunksize(len: usize, workers: usize) -> usize {
    len.div_ceil(4 * workers.max(1)).max(1)
}

/// Per-call settings: `pool.apply_async_opts(f, x, TaskOptions::new().time_limit(d))`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaskOptions {
    time_limit: Option<Duration>,
    chunksize: Option<usize>,
}

impl TaskOptions {
    /// The pool's defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Each task of the call fails with [`Error::TimeLimit`] (its worker
    /// killed and replaced, never retried) if it runs longer than `limit`;
    /// overrides [`PoolBuilder::task_time_limit`]. For a map the limit holds
    /// for each chunk.
    pub fn time_limit(mut self, limit: Duration) -> Self {
        self.time_limit = Some(limit);
        self
    }

    /// Items per task of a map (default: about four chunks per worker for
    /// `map`, `starmap`, `map_with` and the slice maps; 1 for `imap`).
    pub fn chunksize(mut self, n: usize) -> Self {
        self.chunksize = Some(n.max(1));
        self
    }

    fn chunksize_for(&self, len: usize, workers: usize) -> usize {
        self.chunksize
            .unwrap_or_else(|| default_chunksize(len, workers))
    }
}

/// What a pool has done so far ([`Pool::stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStats {
    /// Tasks submitted (a map submits one per chunk).
    pub tasks_submitted: u64,
    /// Tasks that returned a value.
    pub tasks_completed: u64,
    /// Tasks that ended with an error (panic, lost worker, cancel, time limit...).
    pub tasks_failed: u64,
    /// Runs started again because the task's worker died.
    pub tasks_retried: u64,
    /// Tasks cancelled (by [`AsyncResult::cancel`] or a failing map item).
    pub tasks_cancelled: u64,
    /// Tasks stopped at their time limit.
    pub tasks_timed_out: u64,
    /// Worker processes started, the first ones included.
    pub workers_started: u64,
    /// Workers started in place of ones that died or left.
    pub workers_replaced: u64,
    /// Worker starts that failed (spawn error, initializer error).
    pub worker_start_failures: u64,
    /// Callbacks that panicked (caught; the pool went on).
    pub callback_panics: u64,
}

impl Pool {
    /// A pool of `processes` workers with default settings.
    pub fn new(processes: usize) -> Result<Pool> {
        PoolBuilder::default().processes(processes).build()
    }

    /// A builder for the other settings.
    pub fn builder() -> PoolBuilder {
        PoolBuilder::default()
    }

    /// Number of worker processes.
    pub fn processes(&self) -> usize {
        self.shared.config.processes
    }

    /// Pids of the workers now alive.
    pub fn worker_pids(&self) -> Vec<u32> {
        self.shared.worker_pids()
    }

    /// Counts of what the pool has done: tasks retried, workers replaced,
    /// tasks cancelled and timed out...
    pub fn stats(&self) -> PoolStats {
        let c = &self.shared.counters;
        // Relaxed: statistics.
        let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        PoolStats {
            tasks_submitted: lock(&self.shared.inner).submitted,
            tasks_completed: get(&c.completed),
            tasks_failed: get(&c.failed),
            tasks_retried: get(&c.retried),
            tasks_cancelled: get(&c.cancelled),
            tasks_timed_out: get(&c.timed_out),
            workers_started: get(&c.workers_started),
            workers_replaced: get(&c.workers_replaced),
            worker_start_failures: get(&c.start_failures),
            callback_panics: get(&c.callback_panics),
        }
    }

    // ---- single tasks ---------------------------------------------------------

    fn submit_cell<R>(
        &self,
        fn_id: FnId,
        args: Vec<u8>,
        cb: Option<Callback>,
        opts: TaskOptions,
    ) -> Result<AsyncResult<R>> {
        let cell = Cell::new(cb);
        let meta = TaskMeta {
            limit: opts.time_limit,
            ..TaskMeta::new()
        };
        self.shared
            .submit(fn_id, args, Sink::Cell(Arc::clone(&cell)), meta)?;
        Ok(AsyncResult {
            shared: Arc::clone(&self.shared),
            kind: Kind::Cell(cell),
            #[cfg(feature = "async")]
            waiting: None,
            _r: PhantomData,
        })
    }

    /// Runs `f(args)` in a worker and waits for the result.
    ///
    /// # Errors
    /// [`Error::TaskPanicked`] if `f` panicked, [`Error::WorkerLost`] if its
    /// worker died (after the retries), [`Error::InvalidState`] if the pool is
    /// closed.
    pub fn apply<F, A, R>(&self, f: F, args: A) -> Result<R>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.apply_async(f, args)?.get()
    }

    /// Starts `f(args)` in a worker and returns at once.
    pub fn apply_async<F, A, R>(&self, f: F, args: A) -> Result<AsyncResult<R>>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.apply_async_opts(f, args, TaskOptions::new())
    }

    /// [`apply_async`](Pool::apply_async) with per-call settings (a time limit).
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use shmproc::pool::TaskOptions;
    ///
    /// fn spin(n: u64) -> u64 {
    ///     (0..n).fold(0, |a, x| a ^ shmproc_kernels::power_u64(x, 4))
    /// }
    ///
    /// fn main() -> shmproc::Result<()> {
    ///     let pool = shmproc::Pool::new(2)?;
    ///     let r = pool.apply_async_opts(spin, u64::MAX, TaskOptions::new().time_limit(Duration::from_millis(100)))?;
    ///     assert!(matches!(r.get(), Err(shmproc::Error::TimeLimit { .. })));
    ///     Ok(())
    /// }
    /// ```
    pub fn apply_async_opts<F, A, R>(
        &self,
        f: F,
        args: A,
        opts: TaskOptions,
    ) -> Result<AsyncResult<R>>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        assert_zero_sized::<F>();
        let _ = f;
        self.submit_cell(
            FnId::of(raw_call::<F, A, R>()),
            postcard::to_stdvec(&args)?,
            None,
            opts,
        )
    }

    /// Like [`apply_async`](Pool::apply_async), and runs `callback(&result)` or
    /// `error_callback(&error)` in the parent when the task finishes, on the
    /// pool's callback thread (one per pool, started on first use, like
    /// Python's result-handler thread): callbacks run one at a time, in the
    /// order results arrive, and `get()` returns once the callback has run. A
    /// callback that blocks delays the callbacks after it but never the
    /// supervision of the workers; one that panics is reported on stderr and
    /// counted in [`PoolStats::callback_panics`], and the pool goes on.
    pub fn apply_async_with<F, A, R, C, E>(
        &self,
        f: F,
        args: A,
        callback: C,
        error_callback: E,
    ) -> Result<AsyncResult<R>>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
        C: FnOnce(&R) + Send + 'static,
        E: FnOnce(&Error) + Send + 'static,
    {
        assert_zero_sized::<F>();
        let _ = f;
        let cb: Callback = Box::new(move |o: &Outcome| match o {
            Ok(bytes) => match postcard::from_bytes::<R>(bytes) {
                Ok(r) => callback(&r),
                Err(e) => error_callback(&Error::from(e)),
            },
            Err(e) => error_callback(e),
        });
        self.submit_cell(
            FnId::of(raw_call::<F, A, R>()),
            postcard::to_stdvec(&args)?,
            Some(cb),
            TaskOptions::new(),
        )
    }

    // ---- maps -----------------------------------------------------------------

    /// Submits pre-encoded chunks as one stream. `chunks` yields each
    /// chunk's bytes and the index of its first item (`None` when the task
    /// names its items itself, as zero-copy chunks do). On an error part-way,
    /// the chunks already submitted are cancelled and the stream is complete
    /// (nothing of it runs any more) when this returns.
    fn submit_stream(
        &self,
        fn_id: FnId,
        chunks: impl IntoIterator<Item = Result<(Vec<u8>, Option<u64>)>>,
        limit: Option<Duration>,
        retryable: bool,
    ) -> Result<Arc<Stream>> {
        let stream = Stream::new(true);
        let mut n = 0;
        let mut failure = None;
        for c in chunks {
            if stream.is_failed() {
                break; // an earlier chunk failed: the rest is cancelled
            }
            let r = c.and_then(|(bytes, first)| {
                let meta = TaskMeta {
                    first_item: first,
                    limit,
                    retryable,
                };
                self.shared
                    .submit(fn_id, bytes, Sink::Stream(Arc::clone(&stream), n), meta)
            });
            if let Err(e) = r {
                failure = Some(e);
                break;
            }
            n += 1;
        }
        stream.set_total(n);
        match failure {
            None => Ok(stream),
            Some(e) => {
                self.shared
                    .cancel_stream(&stream, "submitting the rest of the map failed");
                let _ = self.shared.wait_until(None, || stream.is_complete());
                Err(e)
            }
        }
    }

    fn map_result<T: DeserializeOwned>(&self, stream: Arc<Stream>) -> AsyncResult<Vec<T>> {
        AsyncResult {
            shared: Arc::clone(&self.shared),
            kind: Kind::Map(stream, decode_chunks::<T>),
            #[cfg(feature = "async")]
            waiting: None,
            _r: PhantomData,
        }
    }

    fn encoded_chunks<T: Serialize>(
        items: Vec<T>,
        chunksize: usize,
        prefix: impl Fn(&[T]) -> Result<Vec<u8>>,
    ) -> Vec<Result<(Vec<u8>, Option<u64>)>> {
        let cs = chunksize.max(1);
        items
            .chunks(cs)
            .enumerate()
            .map(|(i, c)| prefix(c).map(|b| (b, Some((i * cs) as u64))))
            .collect()
    }

    /// `f` over every item, results in order; Python's `map` with its default
    /// chunk size (about four chunks per worker). Every map-like call has an
    /// `_opts` form taking [`TaskOptions`] (chunk size, time limit).
    pub fn map<F, A, R, I>(&self, f: F, items: I) -> Result<Vec<R>>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
        I: IntoIterator<Item = A>,
    {
        self.map_async_opts(f, items, TaskOptions::new())?.get()
    }

    /// [`map`](Pool::map) with per-call options: `chunksize` items per task,
    /// a time limit per chunk.
    ///
    /// ```
    /// use shmproc::pool::TaskOptions;
    /// let pool = shmproc::Pool::new(2)?;
    /// let v = pool.map_opts(|x: u32| x * 2, 0..10u32, TaskOptions::new().chunksize(3))?;
    /// assert_eq!(v, [0, 2, 4, 6, 8, 10, 12, 14, 16, 18]);
    /// # Ok::<(), shmproc::Error>(())
    /// ```
    pub fn map_opts<F, A, R, I>(&self, f: F, items: I, opts: TaskOptions) -> Result<Vec<R>>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
        I: IntoIterator<Item = A>,
    {
        self.map_async_opts(f, items, opts)?.get()
    }

    /// Starts a `map` and returns at once; `get()` gives the `Vec` of results.
    pub fn map_async<F, A, R, I>(&self, f: F, items: I) -> Result<AsyncResult<Vec<R>>>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
        I: IntoIterator<Item = A>,
    {
        self.map_async_opts(f, items, TaskOptions::new())
    }

    /// [`map_async`](Pool::map_async) with per-call settings (chunk size,
    /// time limit per chunk).
    pub fn map_async_opts<F, A, R, I>(
        &self,
        f: F,
        items: I,
        opts: TaskOptions,
    ) -> Result<AsyncResult<Vec<R>>>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
        I: IntoIterator<Item = A>,
    {
        assert_zero_sized::<F>();
        let _ = f;
        let items: Vec<A> = items.into_iter().collect();
        let cs = opts.chunksize_for(items.len(), self.processes());
        let chunks = Self::encoded_chunks(items, cs, |c| Ok(postcard::to_stdvec(c)?));
        let stream = self.submit_stream(
            FnId::of(batch_trampoline::<F, A, R>),
            chunks,
            opts.time_limit,
            true,
        )?;
        Ok(self.map_result(stream))
    }

    /// `f(a, b)` for every pair, results in order (Python's `starmap`).
    pub fn starmap<F, A, B, R, I>(&self, f: F, items: I) -> Result<Vec<R>>
    where
        F: Fn(A, B) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned,
        B: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
        I: IntoIterator<Item = (A, B)>,
    {
        self.starmap_async_opts(f, items, TaskOptions::new())?.get()
    }

    /// [`starmap`](Pool::starmap) with per-call options.
    pub fn starmap_opts<F, A, B, R, I>(&self, f: F, items: I, opts: TaskOptions) -> Result<Vec<R>>
    where
        F: Fn(A, B) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned,
        B: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
        I: IntoIterator<Item = (A, B)>,
    {
        self.starmap_async_opts(f, items, opts)?.get()
    }

    /// Starts a [`starmap`](Pool::starmap) and returns at once.
    pub fn starmap_async<F, A, B, R, I>(&self, f: F, items: I) -> Result<AsyncResult<Vec<R>>>
    where
        F: Fn(A, B) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned,
        B: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
        I: IntoIterator<Item = (A, B)>,
    {
        self.starmap_async_opts(f, items, TaskOptions::new())
    }

    /// [`starmap_async`](Pool::starmap_async) with per-call options.
    pub fn starmap_async_opts<F, A, B, R, I>(
        &self,
        f: F,
        items: I,
        opts: TaskOptions,
    ) -> Result<AsyncResult<Vec<R>>>
    where
        F: Fn(A, B) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned,
        B: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
        I: IntoIterator<Item = (A, B)>,
    {
        assert_zero_sized::<F>();
        let _ = f;
        let items: Vec<(A, B)> = items.into_iter().collect();
        let cs = opts.chunksize_for(items.len(), self.processes());
        let chunks = Self::encoded_chunks(items, cs, |c| Ok(postcard::to_stdvec(c)?));
        let stream = self.submit_stream(
            FnId::of(star_trampoline::<F, A, B, R>),
            chunks,
            opts.time_limit,
            true,
        )?;
        Ok(self.map_result(stream))
    }

    /// `f(item, fixed.clone())` for every item, results in order: a map with a
    /// bound parameter, like `map(functools.partial(f, time=4), items)`.
    pub fn map_with<F, A, P, R, I>(&self, f: F, fixed: P, items: I) -> Result<Vec<R>>
    where
        F: Fn(A, P) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned,
        P: Serialize + DeserializeOwned + Clone,
        R: Serialize + DeserializeOwned,
        I: IntoIterator<Item = A>,
    {
        self.map_with_opts(f, fixed, items, TaskOptions::new())
    }

    /// [`map_with`](Pool::map_with) with per-call options.
    pub fn map_with_opts<F, A, P, R, I>(
        &self,
        f: F,
        fixed: P,
        items: I,
        opts: TaskOptions,
    ) -> Result<Vec<R>>
    where
        F: Fn(A, P) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned,
        P: Serialize + DeserializeOwned + Clone,
        R: Serialize + DeserializeOwned,
        I: IntoIterator<Item = A>,
    {
        assert_zero_sized::<F>();
        let _ = f;
        let items: Vec<A> = items.into_iter().collect();
        let cs = opts.chunksize_for(items.len(), self.processes());
        let chunks = Self::encoded_chunks(items, cs, |c| Ok(postcard::to_stdvec(&(&fixed, c))?));
        let stream = self.submit_stream(
            FnId::of(with_trampoline::<F, A, P, R>),
            chunks,
            opts.time_limit,
            true,
        )?;
        self.map_result(stream).get()
    }

    /// A lazy, ordered map over an iterator (Python's `imap`, chunk size 1).
    /// The input is consumed only as workers need it: at most a few chunks per
    /// worker are in flight, so endless inputs work in bounded memory.
    pub fn imap<F, A, R, I>(&self, f: F, items: I) -> IMap<'_, I::IntoIter, R>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
        I: IntoIterator<Item = A>,
    {
        self.imap_opts(f, items, TaskOptions::new())
    }

    /// [`imap`](Pool::imap) with per-call options (chunk size: default 1).
    pub fn imap_opts<F, A, R, I>(
        &self,
        f: F,
        items: I,
        opts: TaskOptions,
    ) -> IMap<'_, I::IntoIter, R>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
        I: IntoIterator<Item = A>,
    {
        self.imap_impl(f, items, opts, true)
    }

    fn imap_impl<F, A, R, I>(
        &self,
        f: F,
        items: I,
        opts: TaskOptions,
        ordered: bool,
    ) -> IMap<'_, I::IntoIter, R>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
        I: IntoIterator<Item = A>,
    {
        assert_zero_sized::<F>();
        let _ = f;
        IMap::new(
            self,
            items.into_iter(),
            FnId::of(batch_trampoline::<F, A, R>),
            opts.chunksize.unwrap_or(1),
            opts.time_limit,
            ordered,
        )
    }

    /// Like [`imap`](Pool::imap), yielding results as they finish.
    pub fn imap_unordered<F, A, R, I>(&self, f: F, items: I) -> IMap<'_, I::IntoIter, R>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
        I: IntoIterator<Item = A>,
    {
        self.imap_unordered_opts(f, items, TaskOptions::new())
    }

    /// [`imap_unordered`](Pool::imap_unordered) with per-call options (chunk
    /// size: default 1).
    pub fn imap_unordered_opts<F, A, R, I>(
        &self,
        f: F,
        items: I,
        opts: TaskOptions,
    ) -> IMap<'_, I::IntoIter, R>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
        I: IntoIterator<Item = A>,
    {
        self.imap_impl(f, items, opts, false)
    }

    // ---- zero-copy chunk maps ---------------------------------------------------

    /// Runs the chunks of a zero-copy map and waits for all of them. Returns
    /// only when no chunk runs any more — also when submitting fails
    /// part-way, and (through the guard) when this thread unwinds — because
    /// the caller's borrows of the arrays end when this returns.
    #[allow(clippy::too_many_arguments)] // private: one argument per field of the map
    fn run_chunks<P: Serialize>(
        &self,
        fn_id: FnId,
        input: crate::segment::ArrayHandle,
        output: Option<crate::segment::ArrayHandle>,
        len: usize,
        params: &P,
        opts: TaskOptions,
        retryable: bool,
    ) -> Result<Arc<Stream>> {
        let chunks = chunk::chunk_ranges(len, opts.chunksize, self.processes())
            .into_iter()
            .map(|range| {
                // A panic in a chunk kernel names the chunk's first element itself.
                Ok((
                    postcard::to_stdvec(&chunk::ChunkArgs {
                        input: input.clone(),
                        output: output.clone(),
                        range,
                        params,
                    })?,
                    None,
                ))
            });
        let stream = self.submit_stream(fn_id, chunks, opts.time_limit, retryable)?;
        let guard = ScopeGuard {
            shared: &self.shared,
            stream: &stream,
        };
        self.shared.wait_until(None, || stream.is_complete())?;
        std::mem::forget(guard);
        let first_err = lock(&stream.state)
            .first_error
            .as_ref()
            .map(result::clone_error);
        match first_err {
            Some(e) => Err(e),
            None => Ok(stream),
        }
    }

    /// Runs `kernel(&input[c], &mut output[c], &params)` for disjoint chunks `c`
    /// of two shared arrays, in the workers. Only the arrays' handles and the
    /// chunk ranges travel; every worker reads and writes the shared memory in
    /// place. `opts`: elements per task ([`TaskOptions::chunksize`], default about
    /// four chunks per worker) and a time limit per chunk.
    ///
    /// The map borrows `input` shared and `output` exclusively, and returns
    /// only once no chunk of it runs any more — on success, on error (the
    /// first failing chunk cancels the others), and if the calling thread
    /// unwinds — so the borrow checker proves that nothing else touches the
    /// arrays while workers hold slices of them (the shape of rayon's
    /// `par_chunks_mut`).
    ///
    /// ```no_run
    /// use shmproc::pool::TaskOptions;
    /// use shmproc::{Pool, SharedArray};
    ///
    /// fn main() -> shmproc::Result<()> {
    ///     let pool = Pool::new(2)?;
    ///     let input = SharedArray::<u64>::from_slice(&(0..1000).collect::<Vec<_>>())?;
    ///     let mut output = SharedArray::<u64>::new(1000)?;
    ///     pool.map_slices(
    ///         |i: &[u64], o: &mut [u64], t: &u32| shmproc_kernels::power_u64_slice(i, o, *t),
    ///         &input, &mut output, 2u32, TaskOptions::new(),
    ///     )?;
    ///     assert_eq!(output[3], 81);
    ///     Ok(())
    /// }
    /// ```
    ///
    /// An array cannot be both the input and the output (use
    /// [`map_slices_in_place`](Pool::map_slices_in_place)), nor be touched
    /// while the map runs:
    ///
    /// ```compile_fail
    /// # let pool = shmproc::Pool::new(1).unwrap();
    /// let mut a = shmproc::SharedArray::<u64>::new(8).unwrap();
    /// pool.map_slices(|i: &[u64], o: &mut [u64], _: &()| o.copy_from_slice(i), &a, &mut a, (), shmproc::pool::TaskOptions::new());
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the lengths differ or the output is
    /// read-only; the first task error otherwise.
    pub fn map_slices<F, T, U, P>(
        &self,
        kernel: F,
        input: &SharedArray<T>,
        output: &mut SharedArray<U>,
        params: P,
        opts: TaskOptions,
    ) -> Result<()>
    where
        F: Fn(&[T], &mut [U], &P) + Copy + Send + 'static,
        T: Pod,
        U: Pod,
        P: Serialize + DeserializeOwned,
    {
        assert_zero_sized::<F>();
        let _ = kernel;
        if input.len() != output.len() {
            return Err(Error::InvalidArgument(format!(
                "input has {} elements, output {}",
                input.len(),
                output.len()
            )));
        }
        if !output.is_writable() {
            return Err(Error::InvalidArgument(
                "the output array is read-only".into(),
            ));
        }
        self.run_chunks(
            FnId::of(chunk::map_trampoline::<F, T, U, P>),
            input.raw().handle(),
            Some(output.raw().handle()),
            input.len(),
            &params,
            opts,
            true,
        )
        .map(|_| ())
    }

    /// Runs `kernel(&mut data[c], &params)` for disjoint chunks `c` of a shared
    /// array, in place, in the workers. Borrows `data` exclusively until no
    /// chunk runs any more (see [`map_slices`](Pool::map_slices)).
    ///
    /// A chunk whose worker dies is never run again (it may have updated part
    /// of its data): the map fails with [`Error::WorkerLost`], whatever
    /// [`PoolBuilder::retries`] says, and the data is then partly updated.
    pub fn map_slices_in_place<F, T, P>(
        &self,
        kernel: F,
        data: &mut SharedArray<T>,
        params: P,
        opts: TaskOptions,
    ) -> Result<()>
    where
        F: Fn(&mut [T], &P) + Copy + Send + 'static,
        T: Pod,
        P: Serialize + DeserializeOwned,
    {
        assert_zero_sized::<F>();
        let _ = kernel;
        if !data.is_writable() {
            return Err(Error::InvalidArgument("the array is read-only".into()));
        }
        self.run_chunks(
            FnId::of(chunk::in_place_trampoline::<F, T, P>),
            data.raw().handle(),
            None,
            data.len(),
            &params,
            opts,
            false,
        )
        .map(|_| ())
    }

    /// Runs `kernel(&input[c], c.start, &params)` for chunks `c` of a shared
    /// array and returns the per-chunk results in chunk order (a parallel
    /// reduction: combine them in order for a deterministic answer). Borrows
    /// `input` until no chunk runs any more (see [`map_slices`](Pool::map_slices)).
    pub fn reduce_slices<F, T, P, R>(
        &self,
        kernel: F,
        input: &SharedArray<T>,
        params: P,
        opts: TaskOptions,
    ) -> Result<Vec<R>>
    where
        F: Fn(&[T], usize, &P) -> R + Copy + Send + 'static,
        T: Pod,
        P: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        assert_zero_sized::<F>();
        let _ = kernel;
        let stream = self.run_chunks(
            FnId::of(chunk::reduce_trampoline::<F, T, P, R>),
            input.raw().handle(),
            None,
            input.len(),
            &params,
            opts,
            true,
        )?;
        let st = lock(&stream.state);
        st.done
            .values()
            .map(|o| match o {
                Ok(b) => Ok(postcard::from_bytes::<R>(b)?),
                Err(e) => Err(result::clone_error(e)),
            })
            .collect()
    }

    // ---- lifecycle ----------------------------------------------------------------

    /// No more tasks may be submitted; the workers leave once the submitted
    /// ones are done (see [`join`](Pool::join)).
    pub fn close(&self) {
        self.shared.close();
    }

    /// Stops the workers now. Unfinished tasks fail with
    /// [`Error::InvalidState`] (their results never hang).
    pub fn terminate(&self) {
        self.shared.terminate();
    }

    /// Waits for the workers to finish and exit, and for every callback of
    /// [`apply_async_with`](Pool::apply_async_with) to have run.
    ///
    /// # Errors
    /// [`Error::InvalidState`] if the pool was neither closed nor terminated
    /// (Python raises `ValueError`).
    pub fn join(&self) -> Result<()> {
        self.shared.join()
    }

    /// Whether [`close`](Pool::close) or [`terminate`](Pool::terminate) was called.
    pub fn is_closed(&self) -> bool {
        self.shared.state() != State::Running
    }
}

/// Cancels a zero-copy map's chunks and waits for them if the waiting thread
/// unwinds, so no worker touches the arrays after their borrows end.
struct ScopeGuard<'a> {
    shared: &'a Shared,
    stream: &'a Stream,
}

impl Drop for ScopeGuard<'_> {
    fn drop(&mut self) {
        self.shared
            .cancel_stream(self.stream, "the thread waiting for the map unwound");
        let _ = self.shared.wait_until(None, || self.stream.is_complete());
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.terminate();
    }
}
