//! Backends: run a registered kernel over an index space `0..n` on one thread,
//! on `std::thread`s, on rayon, or on worker processes over shared memory
//! (zero copy with [`SharedValues`], or copying each chunk like Python's
//! `Pool.map`).
//!
//! Every backend cuts `0..n` into the same chunks ([`chunk_ranges`]) and calls
//! the same [`run_chunk`] on each, so outputs are identical across backends; for
//! reductions each chunk writes a partial accumulator and the partials are
//! [`combine`]d in chunk order, so even floating-point sums are bitwise equal
//! across backends and worker counts for a given chunk size.
//!
//! ```
//! use shmproc::backend::{run, Backend, Job, RunOptions};
//! use shmproc::kernels::{find, Input, Output, Params};
//!
//! let input: Vec<u64> = (0..1000).collect();
//! let job = Job::new(find("power").unwrap(), Params::default(), Input::U64(&input));
//! let mut out = vec![0u64; 1000];
//! let opts = RunOptions { workers: 2, chunk: Some(64), ..RunOptions::default() };
//! run(Backend::Threads, &job, Output::U64(&mut out), &opts)?;
//! assert_eq!(out[3], 3u64.pow(16));
//! # Ok::<(), shmproc::backend::RunError>(())
//! ```

use crate::kernels::{combine, run_chunk, Input, KernelError, KernelInfo, Output, Params, Values};
use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// Where the chunks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// One thread, the caller's.
    Sequential,
    /// `std::thread::scope` workers taking chunks from a shared counter.
    Threads,
    /// A dedicated rayon pool with `workers` threads.
    Rayon,
    /// shmproc worker processes reading and writing shared arrays in place.
    Processes,
    /// shmproc worker processes, with the input copied to each task (the way
    /// Python's `Pool.map` pickles its arguments).
    ProcessesCopy,
}

impl Backend {
    /// Every backend, in table order.
    pub const ALL: [Backend; 5] = [
        Backend::Sequential,
        Backend::Threads,
        Backend::Rayon,
        Backend::Processes,
        Backend::ProcessesCopy,
    ];

    /// The name used on the command line.
    ///
    /// ```
    /// use shmproc::backend::Backend;
    /// assert_eq!(Backend::ProcessesCopy.name(), "processes-copy");
    /// assert_eq!("rayon".parse::<Backend>(), Ok(Backend::Rayon));
    /// assert!("gpu".parse::<Backend>().is_err());
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sequential => "sequential",
            Backend::Threads => "threads",
            Backend::Rayon => "rayon",
            Backend::Processes => "processes",
            Backend::ProcessesCopy => "processes-copy",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Backend {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Backend::ALL
            .into_iter()
            .find(|b| b.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Backend::ALL.iter().map(|b| b.name()).collect();
                format!(
                    "unknown backend {s:?} (expected one of: {})",
                    names.join(", ")
                )
            })
    }
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The kernel rejected its parameters, input or output.
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// The backend is not built yet.
    #[error("backend {0} is not available yet: the process pool is not wired in (use --backend sequential, threads or rayon)")]
    Unavailable(Backend),
    /// Worker count, chunk size or lengths are inconsistent.
    #[error("invalid run: {0}")]
    Invalid(String),
    /// The rayon pool could not be built.
    #[error("could not build a rayon pool of {workers} threads: {message}")]
    ThreadPool {
        /// Threads asked for.
        workers: usize,
        /// rayon's message.
        message: String,
    },
    /// A worker panicked (a bug: kernels validate before they compute).
    #[error("a worker panicked: {0}")]
    Panicked(String),
    /// The process pool failed.
    #[error(transparent)]
    Pool(#[from] crate::Error),
    /// A task failed in a worker process.
    #[error("a worker task failed: {0}")]
    Worker(String),
    /// The run was interrupted (SIGINT or [`interrupt`]) between chunks.
    #[error("interrupted")]
    Interrupted,
}

/// One kernel applied to one input over the index space `0..n`.
#[derive(Debug, Clone, Copy)]
pub struct Job<'a> {
    /// The kernel.
    pub kernel: &'static KernelInfo,
    /// Its parameters.
    pub params: Params,
    /// Size of the index space (the input length for array kernels).
    pub n: usize,
    /// The whole input (sliced per chunk by the backend).
    pub input: Input<'a>,
}

impl<'a> Job<'a> {
    /// A job over an array input; `n` is the input's length.
    ///
    /// # Panics
    /// If `input` is [`Input::Generated`] (use [`Job::generated`]).
    pub fn new(kernel: &'static KernelInfo, params: Params, input: Input<'a>) -> Self {
        let n = input
            .len()
            .expect("Job::new takes an array input; use Job::generated");
        Self {
            kernel,
            params,
            n,
            input,
        }
    }

    /// A job of a generated kernel over `0..n`.
    ///
    /// ```
    /// use shmproc::backend::{run, Backend, Job, RunOptions};
    /// use shmproc::kernels::{find, Output, Params};
    /// let job = Job::generated(find("count_primes").unwrap(), Params::default(), 100);
    /// let mut acc = [0u64];
    /// run(Backend::Rayon, &job, Output::U64(&mut acc), &RunOptions::default())?;
    /// assert_eq!(acc, [25]);
    /// # Ok::<(), shmproc::backend::RunError>(())
    /// ```
    pub fn generated(kernel: &'static KernelInfo, params: Params, n: usize) -> Self {
        Self {
            kernel,
            params,
            n,
            input: Input::Generated,
        }
    }
}

/// How to run: worker count, chunk size, progress callback.
#[derive(Clone, Copy)]
pub struct RunOptions<'p> {
    /// Workers (threads or processes); at least 1. Ignored by `Sequential`.
    pub workers: usize,
    /// Indices per chunk; `None` for [`default_chunk`]. The chunking alone
    /// decides how floating-point reductions round.
    pub chunk: Option<usize>,
    /// Called after each chunk with the number of indices it covered (from
    /// worker threads: must be `Sync`).
    pub progress: Option<&'p (dyn Fn(usize) + Sync)>,
}

impl Default for RunOptions<'_> {
    fn default() -> Self {
        Self {
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            chunk: None,
            progress: None,
        }
    }
}

impl fmt::Debug for RunOptions<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunOptions")
            .field("workers", &self.workers)
            .field("chunk", &self.chunk)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

/// The default chunk size for `n` indices: about 64 chunks (enough to balance
/// uneven kernels over a few workers), at least 1024 indices each. It depends
/// on `n` only, never on the worker count, so results do not either.
///
/// ```
/// assert_eq!(shmproc::backend::default_chunk(10), 1024);
/// assert_eq!(shmproc::backend::default_chunk(6_400_000), 100_000);
/// ```
pub fn default_chunk(n: usize) -> usize {
    n.div_ceil(64).max(1024)
}

/// The chunks of `0..n`: consecutive ranges of `chunk` indices, the last one
/// shorter. No chunk for `n == 0`.
///
/// ```
/// let c: Vec<_> = shmproc::backend::chunk_ranges(10, 4).collect();
/// assert_eq!(c, [0..4, 4..8, 8..10]);
/// ```
///
/// # Panics
/// If `chunk == 0`.
pub fn chunk_ranges(n: usize, chunk: usize) -> impl Iterator<Item = Range<usize>> {
    assert!(chunk > 0, "chunk size 0");
    (0..n.div_ceil(chunk)).map(move |i| i * chunk..((i + 1) * chunk).min(n))
}

/// One chunk's work: its range, input sub-slices, and output sub-slice or
/// partial accumulator.
struct Task<'i, 'o> {
    range: Range<usize>,
    input: Input<'i>,
    output: Output<'o>,
}

impl Task<'_, '_> {
    fn run(self, job: &Job<'_>, opts: &RunOptions<'_>) -> Result<(), KernelError> {
        let len = self.range.len();
        run_chunk(job.kernel, &job.params, self.range, self.input, self.output)?;
        if let Some(progress) = opts.progress {
            progress(len);
        }
        Ok(())
    }
}

/// Checks the job against the output before any work starts.
fn validate(job: &Job<'_>, output: &Output<'_>, opts: &RunOptions<'_>) -> Result<usize, RunError> {
    let k = job.kernel;
    k.check_params(&job.params)?;
    if opts.workers == 0 {
        return Err(RunError::Invalid("worker count must be at least 1".into()));
    }
    let chunk = opts.chunk.unwrap_or_else(|| default_chunk(job.n));
    if chunk == 0 {
        return Err(RunError::Invalid("chunk size must be at least 1".into()));
    }
    if let Some(len) = job.input.len() {
        if len != job.n {
            return Err(RunError::Invalid(format!(
                "input has {len} elements but the job covers {} indices",
                job.n
            )));
        }
    }
    if job.n > k.max_len(&job.params) {
        return Err(KernelError::RangeTooLarge {
            kernel: k.name,
            end: job.n,
            limit: k.max_len(&job.params),
        }
        .into());
    }
    let want = k.output_dtype(job.input.dtype())?;
    if output.dtype() != want {
        return Err(RunError::Invalid(format!(
            "kernel {} writes {want}, the output holds {}",
            k.name,
            output.dtype()
        )));
    }
    let want_len = if k.is_reduction() {
        k.acc_len(&job.params)
    } else {
        job.n
    };
    if output.len() != want_len {
        return Err(RunError::Invalid(format!(
            "kernel {} needs an output of {want_len} elements, got {}",
            k.name,
            output.len()
        )));
    }
    Ok(chunk)
}

/// Runs `job` with `backend`, writing the elementwise result (map kernels,
/// `output.len() == job.n`) or the combined accumulator (reductions,
/// `output.len() == acc_len`, overwritten) into `output`.
///
/// # Errors
/// [`RunError::Invalid`] or [`RunError::Kernel`] for inconsistent shapes,
/// parameters or dtypes (checked before any work starts),
/// [`RunError::Unavailable`] for the process backends until the pool is wired
/// in, [`RunError::ThreadPool`] and [`RunError::Panicked`].
pub fn run(
    backend: Backend,
    job: &Job<'_>,
    mut output: Output<'_>,
    opts: &RunOptions<'_>,
) -> Result<(), RunError> {
    let chunk = validate(job, &output, opts)?;
    let ranges: Vec<Range<usize>> = chunk_ranges(job.n, chunk).collect();
    match backend {
        Backend::Processes => return run_processes(job, output, opts, ProcessMode::Shared),
        Backend::ProcessesCopy => return run_processes(job, output, opts, ProcessMode::Copy),
        _ => {}
    }
    if !job.kernel.is_reduction() {
        let tasks = split_tasks(job.input, output, &ranges, |r| r.len());
        return execute(backend, job, opts, tasks);
    }
    // Reductions: one partial accumulator per chunk, combined in chunk order.
    let acc_len = job.kernel.acc_len(&job.params);
    let mut partials = Values::zeros(output.dtype(), acc_len * ranges.len());
    let tasks = split_tasks(job.input, partials.as_output(), &ranges, |_| acc_len);
    execute(backend, job, opts, tasks)?;
    fill_zero(&mut output);
    let all = partials.as_acc();
    for i in 0..ranges.len() {
        let part = match all {
            crate::kernels::Acc::U64(p) => crate::kernels::Acc::U64(&p[i * acc_len..][..acc_len]),
            crate::kernels::Acc::F64(p) => crate::kernels::Acc::F64(&p[i * acc_len..][..acc_len]),
        };
        combine(job.kernel, output.reborrow(), part)?;
    }
    Ok(())
}

fn fill_zero(output: &mut Output<'_>) {
    match output {
        Output::U64(s) => s.fill(0),
        Output::F64(s) => s.fill(0.0),
    }
}

/// Cuts `output` into consecutive pieces of `piece_len(range)` elements, one
/// per range, paired with the range's input.
fn split_tasks<'i, 'o>(
    input: Input<'i>,
    mut output: Output<'o>,
    ranges: &[Range<usize>],
    piece_len: impl Fn(&Range<usize>) -> usize,
) -> Vec<Task<'i, 'o>> {
    let mut tasks = Vec::with_capacity(ranges.len());
    for r in ranges {
        let (mine, rest) = output.split_at(piece_len(r));
        output = rest;
        tasks.push(Task {
            range: r.clone(),
            input: input.slice(r.clone()),
            output: mine,
        });
    }
    tasks
}

fn execute(
    backend: Backend,
    job: &Job<'_>,
    opts: &RunOptions<'_>,
    tasks: Vec<Task<'_, '_>>,
) -> Result<(), RunError> {
    match backend {
        Backend::Sequential => {
            for t in tasks {
                t.run(job, opts)?;
            }
            Ok(())
        }
        Backend::Threads => run_threads(job, opts, tasks),
        Backend::Rayon => {
            use rayon::prelude::*;
            let pool = rayon_pool(opts.workers)?;
            pool.install(|| tasks.into_par_iter().try_for_each(|t| t.run(job, opts)))?;
            Ok(())
        }
        // `run` sends these to `run_processes` before splitting into tasks.
        Backend::Processes | Backend::ProcessesCopy => Err(RunError::Unavailable(backend)),
    }
}

/// `workers` scoped threads; each takes the next chunk from a shared counter
/// until none is left, so uneven chunks balance. The first error stops the
/// others from taking new chunks.
fn run_threads(
    job: &Job<'_>,
    opts: &RunOptions<'_>,
    tasks: Vec<Task<'_, '_>>,
) -> Result<(), RunError> {
    let slots: Vec<Mutex<Option<Task<'_, '_>>>> =
        tasks.into_iter().map(|t| Mutex::new(Some(t))).collect();
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<KernelError>> = Mutex::new(None);
    let workers = opts.workers.min(slots.len()).max(1);
    let worker = || {
        // Relaxed is enough: the counter only hands out distinct indices; the
        // task data is published by the Mutex around each slot and by the
        // scope's spawn/join.
        while !failed.load(Ordering::Relaxed) {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(slot) = slots.get(i) else { break };
            let task = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(task) = task {
                if let Err(e) = task.run(job, opts) {
                    failed.store(true, Ordering::Relaxed);
                    first_error
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get_or_insert(e);
                }
            }
        }
    };
    let panics: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers).map(|_| s.spawn(worker)).collect();
        handles
            .into_iter()
            .filter_map(|h| h.join().err().map(panic_message))
            .collect()
    });
    if let Some(msg) = panics.into_iter().next() {
        return Err(RunError::Panicked(msg));
    }
    match first_error.into_inner().unwrap_or_else(|e| e.into_inner()) {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// The rayon pool with `workers` threads, built once per worker count and kept
/// for the life of the process (so benches do not time pool start-up).
fn rayon_pool(workers: usize) -> Result<Arc<rayon::ThreadPool>, RunError> {
    static POOLS: OnceLock<Mutex<HashMap<usize, Arc<rayon::ThreadPool>>>> = OnceLock::new();
    let mut pools = POOLS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(p) = pools.get(&workers) {
        return Ok(Arc::clone(p));
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(workers)
        .thread_name(|i| format!("shmproc-rayon-{i}"))
        .build()
        .map_err(|e| RunError::ThreadPool {
            workers,
            message: e.to_string(),
        })?;
    let pool = Arc::new(pool);
    pools.insert(workers, Arc::clone(&pool));
    Ok(pool)
}

/// How the process backends hand input to workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessMode {
    /// Input and output live in shared arrays; each worker gets sub-slices of
    /// its chunk, and reductions a per-chunk accumulator slot in a shared array.
    Shared,
    /// Each task carries a copy of its input chunk (the pickling baseline).
    Copy,
}

/// The process-pool hook: runs `job` on `opts.workers` worker processes, same
/// chunking and same in-order combine as [`run`]. `run` has validated the job
/// and the output shape before calling it. Zero copy ([`ProcessMode::Shared`])
/// needs the input and output slices to lie in [`SharedValues`]; other slices
/// are copied into temporary shared arrays (and the output copied back).
///
/// # Errors
/// The pool's errors as [`RunError::Pool`], a failed task as
/// [`RunError::Worker`], [`RunError::Interrupted`].
pub fn run_processes(
    job: &Job<'_>,
    output: Output<'_>,
    opts: &RunOptions<'_>,
    mode: ProcessMode,
) -> Result<(), RunError> {
    process::run_processes(job, output, opts, mode)
}

mod process;
pub use process::{
    clear_interrupt, interrupt, iota, is_interrupted, pool, shutdown_pools, SharedValues,
};

#[cfg(test)]
mod test;
