//! Backends: run a kernel over an index space `0..n` on one thread, on
//! `std::thread`s, on rayon, or on worker processes over shared memory (zero
//! copy with [`SharedValues`], or copying each chunk like Python's
//! `Pool.map`).
//!
//! Every backend cuts `0..n` into the same chunks ([`chunk_ranges`]) and calls
//! the same [`run_chunk`](shmproc_kernels::run_chunk) on each, so outputs are
//! identical across backends; for reductions each chunk writes a partial
//! accumulator and the partials are [`combine`]d in chunk order, so even
//! floating-point sums are bitwise equal across backends and worker counts for
//! a given chunk size.
//!
//! Any [`Kernel`] runs on every backend once it is wrapped in a
//! [`KernelRef`], which also names the worker-side code the process backends
//! call: the kernel value travels to the workers serialized (unit structs
//! cost nothing).
//!
//! Nothing of size `n` needs to exist besides the caller's arrays: a job's
//! input can be generated per chunk ([`Job::iota`]), and [`run_checksum`]
//! without an output runs each map chunk into a small per-thread scratch
//! buffer and keeps only its checksum ([`Slice::checksum`]).
//!
//! ```
//! use shmproc_batch::backend::{run, Backend, Job, KernelRef, RunOptions};
//! use shmproc_kernels::{Params, Power, Slice, SliceMut};
//!
//! let power = KernelRef::new(Power);
//! let input: Vec<u64> = (0..1000).collect();
//! let job = Job::new(&power, power.defaults(), Slice::U64(&input));
//! let mut out = vec![0u64; 1000];
//! let opts = RunOptions { workers: 2, chunk: Some(64), ..RunOptions::default() };
//! run(Backend::Threads, &job, SliceMut::U64(&mut out), &opts)?;
//! assert_eq!(out[3], 3u64.pow(16));
//! # Ok::<(), shmproc_batch::backend::RunError>(())
//! ```

use chunk::Src;
use serde::de::DeserializeOwned;
use serde::Serialize;
use shmproc_kernels::{
    check_inputs, combine, Dtype, Kernel, KernelError, Kind, Layout, Params, Slice, SliceMut,
    Values,
};
use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
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
    /// use shmproc_batch::backend::Backend;
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
    /// Worker count, chunk size, shapes or lengths are inconsistent.
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
    Pool(#[from] shmproc::Error),
    /// A task failed in a worker process.
    #[error("a worker task failed: {0}")]
    Worker(String),
    /// The run was interrupted (a signal, or [`interrupt`]) between chunks.
    #[error("interrupted")]
    Interrupted,
}

/// The entry point of the process backends for one kernel type: the same
/// run, with the worker-side functions monomorphised for that type.
type ProcessRun = fn(
    &Job<'_>,
    Option<SliceMut<'_>>,
    &RunOptions<'_>,
    ProcessMode,
) -> Result<ChunkResults, RunError>;

/// A kernel as the backends run it: the kernel, its serialized value (what
/// a worker process rebuilds it from) and the process backends' entry point
/// for its type. Cheap to clone.
///
/// Any `K: Kernel + Clone + Serialize + DeserializeOwned` makes one; a unit
/// struct with `#[derive(Clone, Serialize, Deserialize)]` is enough. The
/// worker processes run the same executable, so they have the same code for
/// `K`; only the value travels.
#[derive(Clone)]
pub struct KernelRef {
    kernel: Arc<dyn Kernel>,
    wire: Arc<[u8]>,
    processes: ProcessRun,
}

impl KernelRef {
    /// Wraps `kernel` for every backend.
    ///
    /// # Panics
    /// If `kernel` cannot be serialized with postcard (a type whose
    /// `Serialize` fails; derived impls do not).
    pub fn new<K>(kernel: K) -> Self
    where
        K: Kernel + Clone + Serialize + DeserializeOwned,
    {
        let wire = match postcard::to_stdvec(&kernel) {
            Ok(w) => w,
            Err(e) => panic!("kernel {} cannot be serialized: {e}", kernel.name()),
        };
        KernelRef {
            kernel: Arc::new(kernel),
            wire: wire.into(),
            processes: process::run_processes_of::<K>,
        }
    }

    /// The kernel.
    pub fn kernel(&self) -> &dyn Kernel {
        &*self.kernel
    }

    /// Its name.
    pub fn name(&self) -> &'static str {
        self.kernel.name()
    }

    /// Its parameters, at their defaults.
    pub fn defaults(&self) -> Params {
        Params::defaults(self.kernel.params())
    }

    /// Its parameters: the defaults overridden by `name=value` pairs.
    ///
    /// # Errors
    /// [`KernelError::UnknownParam`] and [`KernelError::BadParam`].
    pub fn params<I, S>(&self, pairs: I) -> Result<Params, KernelError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Params::resolve(self.kernel.params(), pairs)
    }

    pub(crate) fn wire(&self) -> &[u8] {
        &self.wire
    }
}

impl fmt::Debug for KernelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KernelRef")
            .field("name", &self.kernel.name())
            .finish_non_exhaustive()
    }
}

/// One kernel applied to its inputs over the index space `0..n`.
#[derive(Debug, Clone)]
pub struct Job<'a> {
    /// The kernel.
    pub kernel: &'a KernelRef,
    /// Its parameters.
    pub params: Params,
    /// Size of the index space: elements, or rows for a row kernel.
    pub n: usize,
    /// The job's first index: it covers `first..first + n` of a larger index
    /// space (0 for a whole run; see [`Job::at`]). Its arrays hold only those
    /// indices' elements.
    pub first: usize,
    /// Elements per row (the input's last axis) for a kernel of
    /// [`Layout::Rows`]; 1 otherwise.
    pub row_len: usize,
    /// The first input (sliced per chunk by the backend); `None` for a
    /// generated kernel or a generated input ([`Job::iota`]).
    pub x: Option<Slice<'a>>,
    /// The second input of a two-input kernel.
    pub y: Option<Slice<'a>>,
    /// A generated input: the kernel reads `0, 1, ..., n - 1` as elements of
    /// this type (both operands of a two-input kernel), which each chunk
    /// generates for its own range; nothing of size `n` is allocated. Only
    /// without `x`.
    pub iota: Option<Dtype>,
}

impl<'a> Job<'a> {
    /// A job over one input array; `n` is its length. For a row kernel
    /// ([`Layout::Rows`]) the array is one row; [`Job::shape`] gives it rows.
    pub fn new(kernel: &'a KernelRef, params: Params, x: Slice<'a>) -> Self {
        let rows = kernel.kernel().signature().layout == Layout::Rows && !x.is_empty();
        Self {
            kernel,
            params,
            n: if rows { 1 } else { x.len() },
            first: 0,
            row_len: if rows { x.len() } else { 1 },
            x: Some(x),
            y: None,
            iota: None,
        }
    }

    /// A job over two input arrays of one type and length.
    pub fn pair(kernel: &'a KernelRef, params: Params, x: Slice<'a>, y: Slice<'a>) -> Self {
        Self {
            y: Some(y),
            ..Self::new(kernel, params, x)
        }
    }

    /// A job of a generated kernel over `0..n`.
    ///
    /// ```
    /// use shmproc_batch::backend::{run, Backend, Job, KernelRef, RunOptions};
    /// use shmproc_kernels::{CountPrimes, SliceMut};
    /// let primes = KernelRef::new(CountPrimes);
    /// let job = Job::generated(&primes, primes.defaults(), 100);
    /// let mut acc = [0u64];
    /// run(Backend::Rayon, &job, SliceMut::U64(&mut acc), &RunOptions::default())?;
    /// assert_eq!(acc, [25]);
    /// # Ok::<(), shmproc_batch::backend::RunError>(())
    /// ```
    pub fn generated(kernel: &'a KernelRef, params: Params, n: usize) -> Self {
        Self {
            kernel,
            params,
            n,
            first: 0,
            row_len: 1,
            x: None,
            y: None,
            iota: None,
        }
    }

    /// A job of an array kernel over the generated input `0, 1, ..., n - 1`
    /// (as elements of `dtype`; `bool`: odd indices are true), the same as an
    /// input array holding those values but never materialised: each chunk
    /// generates its own range.
    ///
    /// ```
    /// use shmproc_batch::backend::{run_checksum, Backend, Job, KernelRef, RunOptions};
    /// use shmproc_kernels::{Dtype, Power};
    /// let power = KernelRef::new(Power);
    /// let job = Job::iota(&power, power.defaults(), 1000, Dtype::U64);
    /// let want = (0..1000u64).fold(0u64, |a, x| a.wrapping_add(x.wrapping_pow(16)));
    /// assert_eq!(run_checksum(Backend::Rayon, &job, None, &RunOptions::default())?, want);
    /// # Ok::<(), shmproc_batch::backend::RunError>(())
    /// ```
    pub fn iota(kernel: &'a KernelRef, params: Params, n: usize, dtype: Dtype) -> Self {
        Self {
            iota: Some(dtype),
            ..Self::generated(kernel, params, n)
        }
    }

    /// Takes the input's shape (C order, elements in total: `n`) into
    /// account: a row kernel ([`Layout::Rows`]) then runs over `n / last
    /// axis` rows of the last axis' length. Element kernels ignore it.
    ///
    /// # Errors
    /// [`RunError::Invalid`] if the shape does not hold `n` elements.
    pub fn shape(mut self, shape: &[usize]) -> Result<Self, RunError> {
        let elems = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if elems != Some(self.n * self.row_len) {
            return Err(RunError::Invalid(format!(
                "shape {shape:?} does not hold the {} elements of the input",
                self.n * self.row_len
            )));
        }
        if self.kernel.kernel().signature().layout == Layout::Rows {
            let row_len = shape.last().copied().unwrap_or(1);
            let total = self.n * self.row_len;
            self.row_len = row_len.max(1);
            self.n = total.checked_div(row_len).unwrap_or(0);
        }
        Ok(self)
    }

    /// The same job as the part `first..first + n` of a larger index space:
    /// a generated kernel or input computes those indices, and the job's
    /// arrays (input and output) hold those indices' elements only. The
    /// chunks are cut from `first` on, so with `first` a multiple of the
    /// chunk size they are chunks of the whole run, and a run of every part
    /// computes what one run of the whole computes (how ranks of an MPI run
    /// share the work out).
    ///
    /// ```
    /// use shmproc_batch::backend::{run_chunks, Backend, Job, KernelRef, RunOptions};
    /// use shmproc_kernels::{Dtype, Power};
    /// let power = KernelRef::new(Power);
    /// let opts = RunOptions { workers: 2, chunk: Some(100), ..RunOptions::default() };
    /// let whole = Job::iota(&power, power.defaults(), 1000, Dtype::U64);
    /// let all = run_chunks(Backend::Threads, &whole, None, &opts)?;
    /// let part = Job::iota(&power, power.defaults(), 300, Dtype::U64).at(500);
    /// let some = run_chunks(Backend::Threads, &part, None, &opts)?;
    /// assert_eq!(some.checksums, all.checksums[5..8]);
    /// # Ok::<(), shmproc_batch::backend::RunError>(())
    /// ```
    pub fn at(mut self, first: usize) -> Self {
        self.first = first;
        self
    }

    /// Element type of the input, array or generated (`None` for generated
    /// kernels).
    pub fn input_dtype(&self) -> Option<Dtype> {
        self.x.map(|x| x.dtype()).or(self.iota)
    }

    /// Number of input arrays the job has (a generated input counts as what
    /// the kernel takes).
    fn input_count(&self) -> usize {
        match (self.x, self.y, self.iota) {
            (None, _, Some(_)) => self.kernel.kernel().signature().inputs.max(1),
            (x, y, _) => usize::from(x.is_some()) + usize::from(y.is_some()),
        }
    }

    /// Elements in the whole input (and output of a map).
    pub fn elements(&self) -> usize {
        self.n.saturating_mul(self.row_len)
    }

    /// The elements of the job's arrays that the chunk `r` (of the index
    /// space) covers.
    fn local(&self, r: &Range<usize>) -> Range<usize> {
        (r.start - self.first) * self.row_len..(r.end - self.first) * self.row_len
    }

    /// The chunks of the job: `chunk` indices each, from `first` on.
    fn ranges(&self, chunk: usize) -> Vec<Range<usize>> {
        let first = self.first;
        chunk_ranges(self.n, chunk)
            .map(|r| r.start + first..r.end + first)
            .collect()
    }

    /// The input of the chunk `r` (of the index space).
    fn src(&self, r: Range<usize>) -> Src<'a> {
        let e = self.local(&r);
        match self.iota {
            Some(d) => Src::Iota(d),
            None => Src::Slices(
                self.x.map(|x| x.slice(e.clone())),
                self.y.map(|y| y.slice(e)),
            ),
        }
    }
}

/// How to run: worker count, chunk size, progress callback.
#[derive(Clone, Copy)]
pub struct RunOptions<'p> {
    /// Workers (threads or processes); at least 1. Ignored by `Sequential`.
    pub workers: usize,
    /// Indices per chunk (rows for a row kernel); `None` for
    /// [`default_chunk`]. The chunking alone decides how floating-point
    /// reductions round.
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
/// assert_eq!(shmproc_batch::backend::default_chunk(10), 1024);
/// assert_eq!(shmproc_batch::backend::default_chunk(6_400_000), 100_000);
/// ```
pub fn default_chunk(n: usize) -> usize {
    n.div_ceil(64).max(1024)
}

/// The chunks of `0..n`: consecutive ranges of `chunk` indices, the last one
/// shorter. No chunk for `n == 0`.
///
/// ```
/// let c: Vec<_> = shmproc_batch::backend::chunk_ranges(10, 4).collect();
/// assert_eq!(c, [0..4, 4..8, 8..10]);
/// ```
///
/// # Panics
/// If `chunk == 0`.
pub fn chunk_ranges(n: usize, chunk: usize) -> impl Iterator<Item = Range<usize>> {
    assert!(chunk > 0, "chunk size 0");
    (0..n.div_ceil(chunk)).map(move |i| i * chunk..((i + 1) * chunk).min(n))
}

/// The default chunk of a job: [`default_chunk`] of its elements, in rows of
/// `row_len` for a row kernel (at least one row).
fn job_chunk(job: &Job<'_>, opts: &RunOptions<'_>) -> usize {
    opts.chunk
        .unwrap_or_else(|| (default_chunk(job.elements()) / job.row_len.max(1)).max(1))
}

/// One chunk's work: its range, input, and output sub-slice (map kernels;
/// `None`: scratch, checksum only) or partial accumulator (reductions).
struct Task<'i, 'o> {
    range: Range<usize>,
    src: Src<'i>,
    output: Option<SliceMut<'o>>,
}

impl Task<'_, '_> {
    /// Returns the chunk's checksum (0 for reductions).
    fn run(self, job: &Job<'_>, opts: &RunOptions<'_>) -> Result<u64, KernelError> {
        let len = self.range.len();
        let sum = chunk::run_one(
            job.kernel.kernel(),
            &job.params,
            self.range,
            job.row_len,
            self.src,
            self.output,
        )?;
        if let Some(progress) = opts.progress {
            progress(len);
        }
        Ok(sum)
    }
}

/// Checks the job against the output before any work starts; returns the
/// chunk size.
fn validate(
    job: &Job<'_>,
    output: Option<&SliceMut<'_>>,
    opts: &RunOptions<'_>,
) -> Result<usize, RunError> {
    let k = job.kernel.kernel();
    k.check(&job.params)?;
    if opts.workers == 0 {
        return Err(RunError::Invalid("worker count must be at least 1".into()));
    }
    let chunk = job_chunk(job, opts);
    if chunk == 0 {
        return Err(RunError::Invalid("chunk size must be at least 1".into()));
    }
    if job.iota.is_some() && (job.x.is_some() || job.y.is_some()) {
        return Err(RunError::Invalid(
            "a job has input arrays or a generated input, not both".into(),
        ));
    }
    if job.row_len == 0 {
        return Err(RunError::Invalid("rows of 0 elements".into()));
    }
    check_inputs(k, job.input_dtype(), job.input_count())?;
    for (what, s) in [("input", job.x), ("second input", job.y)] {
        if let Some(s) = s {
            if s.len() != job.elements() {
                return Err(RunError::Invalid(format!(
                    "{what} has {} elements but the job covers {}",
                    s.len(),
                    job.elements()
                )));
            }
        }
    }
    if let (Some(x), Some(y)) = (job.x, job.y) {
        if x.dtype() != y.dtype() {
            return Err(RunError::Invalid(format!(
                "the inputs have different types: {} and {}",
                x.dtype(),
                y.dtype()
            )));
        }
    }
    let end = job.first.checked_add(job.n).ok_or_else(|| {
        RunError::Invalid(format!(
            "the job's indices {}.. + {} overflow",
            job.first, job.n
        ))
    })?;
    if end > k.max_len(&job.params) {
        return Err(KernelError::RangeTooLarge {
            kernel: k.name(),
            end,
            limit: k.max_len(&job.params),
        }
        .into());
    }
    let want = k.output_dtype(job.input_dtype());
    let Some(output) = output else {
        return Ok(chunk);
    };
    if output.dtype() != want {
        return Err(RunError::Invalid(format!(
            "kernel {} writes {want}, the output holds {}",
            k.name(),
            output.dtype()
        )));
    }
    let want_len = output_len(job);
    if output.len() != want_len {
        return Err(RunError::Invalid(format!(
            "kernel {} needs an output of {want_len} elements, got {}",
            k.name(),
            output.len()
        )));
    }
    Ok(chunk)
}

/// Elements of the job's output: its accumulator for a reduction, one per
/// input element for a map.
pub fn output_len(job: &Job<'_>) -> usize {
    let k = job.kernel.kernel();
    if k.signature().kind == Kind::Reduce {
        k.acc_len(&job.params)
    } else {
        job.elements()
    }
}

/// Runs `job` with `backend`, writing the elementwise result (map kernels,
/// `output.len() == job.elements()`) or the combined accumulator (reductions,
/// `output.len() == acc_len`, overwritten) into `output`.
///
/// # Errors
/// [`RunError::Invalid`] or [`RunError::Kernel`] for inconsistent shapes,
/// parameters or dtypes (checked before any work starts), [`RunError::Pool`],
/// [`RunError::Worker`] and [`RunError::Interrupted`] for the process
/// backends, [`RunError::ThreadPool`] and [`RunError::Panicked`].
pub fn run(
    backend: Backend,
    job: &Job<'_>,
    output: SliceMut<'_>,
    opts: &RunOptions<'_>,
) -> Result<(), RunError> {
    run_checksum(backend, job, Some(output), opts).map(drop)
}

/// Like [`run`], and returns the checksum ([`Slice::checksum`]) of the
/// output (the elementwise results of a map kernel, the combined accumulator
/// of a reduction). Without an `output`, a map kernel's results are only
/// checksummed: each chunk runs into a small per-thread (per-worker) scratch
/// buffer and returns its checksum, and the chunk checksums are added
/// (wrapping) in chunk order, so nothing of the output's size is allocated;
/// an in-place kernel (saxpy) then updates zeros.
///
/// # Errors
/// As [`run`].
pub fn run_checksum(
    backend: Backend,
    job: &Job<'_>,
    output: Option<SliceMut<'_>>,
    opts: &RunOptions<'_>,
) -> Result<u64, RunError> {
    let k = job.kernel.kernel();
    if k.signature().kind != Kind::Reduce {
        return Ok(run_chunks(backend, job, output, opts)?.checksum());
    }
    let mut acc;
    let output = match output {
        Some(o) => o,
        None => {
            // A reduction's accumulator is small: give it one.
            k.check(&job.params)?;
            acc = Values::zeros(k.output_dtype(job.input_dtype()), k.acc_len(&job.params));
            acc.as_slice_mut()
        }
    };
    validate(job, Some(&output), opts)?;
    run_chunks(backend, job, None, opts)?.combine_into(k, output)
}

/// What each chunk of a run computed, in chunk order: a map chunk's
/// checksum, a reduction chunk's partial accumulator. [`run_checksum`]
/// combines them; an MPI run gathers them from every rank first, so that
/// they combine in chunk order, as on one node.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ChunkResults {
    /// Each chunk's wrapping checksum of its map outputs (0 for reductions).
    pub checksums: Vec<u64>,
    /// A reduction's partial accumulators, `acc_len` elements per chunk,
    /// chunk after chunk (`None` for a map kernel).
    pub partials: Option<Values>,
}

impl ChunkResults {
    /// The map checksum: the chunk checksums added (wrapping).
    pub fn checksum(&self) -> u64 {
        self.checksums.iter().fold(0u64, |a, &c| a.wrapping_add(c))
    }

    /// Number of chunks.
    pub fn len(&self) -> usize {
        self.checksums.len()
    }

    /// Whether there are no chunks.
    pub fn is_empty(&self) -> bool {
        self.checksums.is_empty()
    }

    /// Appends the chunks of `later` (the chunks that follow these).
    ///
    /// # Errors
    /// [`RunError::Invalid`] if one holds partials and the other does not,
    /// or of different element types.
    pub fn extend(&mut self, later: ChunkResults) -> Result<(), RunError> {
        match (&mut self.partials, later.partials) {
            (None, None) => {}
            (Some(a), Some(b)) if a.dtype() == b.dtype() => {
                let mut joined = Values::zeros(a.dtype(), a.len() + b.len());
                let (mut head, mut tail) = joined.as_slice_mut().split_at(a.len());
                head.copy_from(a.as_slice()).map_err(RunError::Invalid)?;
                tail.copy_from(b.as_slice()).map_err(RunError::Invalid)?;
                *a = joined;
            }
            _ => {
                return Err(RunError::Invalid(
                    "chunk results of a map and of a reduction do not join".into(),
                ))
            }
        }
        self.checksums.extend(later.checksums);
        Ok(())
    }

    /// Combines a reduction's partials into `output` (overwritten), in chunk
    /// order, and returns the output's checksum.
    ///
    /// # Errors
    /// [`RunError::Invalid`] without partials or for an output that does not
    /// hold the kernel's accumulator; the kernel's combine errors.
    pub fn combine_into(
        &self,
        kernel: &dyn Kernel,
        mut output: SliceMut<'_>,
    ) -> Result<u64, RunError> {
        let Some(partials) = &self.partials else {
            return Err(RunError::Invalid(
                "a map run has no partial accumulators to combine".into(),
            ));
        };
        let acc_len = output.len();
        if partials.len() != acc_len * self.checksums.len() {
            return Err(RunError::Invalid(format!(
                "{} partial elements for {} chunks of {acc_len}-element accumulators",
                partials.len(),
                self.checksums.len()
            )));
        }
        output.fill_zero();
        let all = partials.as_slice();
        for i in 0..self.checksums.len() {
            combine(
                kernel,
                output.reborrow(),
                all.slice(i * acc_len..(i + 1) * acc_len),
            )?;
        }
        Ok(output.as_slice().checksum())
    }
}

/// Runs `job` with `backend` and returns what each chunk computed (see
/// [`ChunkResults`]): a map kernel writes `output` (or only checksums
/// without one), a reduction takes no output (`None`) and returns its
/// partials.
///
/// # Errors
/// As [`run`], and [`RunError::Invalid`] for an output given to a
/// reduction.
pub fn run_chunks(
    backend: Backend,
    job: &Job<'_>,
    output: Option<SliceMut<'_>>,
    opts: &RunOptions<'_>,
) -> Result<ChunkResults, RunError> {
    let k = job.kernel.kernel();
    let reduce = k.signature().kind == Kind::Reduce;
    if reduce && output.is_some() {
        return Err(RunError::Invalid(
            "run_chunks returns a reduction's partials: give it no output".into(),
        ));
    }
    let chunk = validate(job, output.as_ref(), opts)?;
    let ranges = job.ranges(chunk);
    match backend {
        Backend::Processes => {
            return (job.kernel.processes)(job, output, opts, ProcessMode::Shared)
        }
        Backend::ProcessesCopy => {
            return (job.kernel.processes)(job, output, opts, ProcessMode::Copy)
        }
        _ => {}
    }
    if !reduce {
        let row_len = job.row_len;
        let tasks = split_tasks(job, output, &ranges, |r| r.len() * row_len);
        let checksums = execute(backend, job, opts, tasks)?;
        return Ok(ChunkResults {
            checksums,
            partials: None,
        });
    }
    // Reductions: one partial accumulator per chunk.
    let acc_len = k.acc_len(&job.params);
    let mut partials = Values::zeros(k.output_dtype(job.input_dtype()), acc_len * ranges.len());
    let tasks = split_tasks(job, Some(partials.as_slice_mut()), &ranges, |_| acc_len);
    let checksums = execute(backend, job, opts, tasks)?;
    Ok(ChunkResults {
        checksums,
        partials: Some(partials),
    })
}

/// Cuts `output` into consecutive pieces of `piece_len(range)` elements, one
/// per range, paired with the range's input (no output pieces without an
/// output).
fn split_tasks<'i, 'o>(
    job: &Job<'i>,
    mut output: Option<SliceMut<'o>>,
    ranges: &[Range<usize>],
    piece_len: impl Fn(&Range<usize>) -> usize,
) -> Vec<Task<'i, 'o>> {
    let mut tasks = Vec::with_capacity(ranges.len());
    for r in ranges {
        let mine = match output.take() {
            Some(o) => {
                let (mine, rest) = o.split_at(piece_len(r));
                output = Some(rest);
                Some(mine)
            }
            None => None,
        };
        tasks.push(Task {
            range: r.clone(),
            src: job.src(r.clone()),
            output: mine,
        });
    }
    tasks
}
/// Runs the tasks; returns their checksums in task order.
fn execute(
    backend: Backend,
    job: &Job<'_>,
    opts: &RunOptions<'_>,
    tasks: Vec<Task<'_, '_>>,
) -> Result<Vec<u64>, RunError> {
    match backend {
        Backend::Sequential => Ok(tasks
            .into_iter()
            .map(|t| t.run(job, opts))
            .collect::<Result<_, _>>()?),
        Backend::Threads => run_threads(job, opts, tasks),
        Backend::Rayon => {
            use rayon::prelude::*;
            let pool = rayon_pool(opts.workers)?;
            Ok(pool.install(|| {
                tasks
                    .into_par_iter()
                    .map(|t| t.run(job, opts))
                    .collect::<Result<Vec<_>, _>>()
            })?)
        }
        // `run_checksum` sends these to the process backend before it splits
        // the work into in-process tasks.
        Backend::Processes | Backend::ProcessesCopy => Err(RunError::Invalid(format!(
            "{backend} runs through the process pool, not in-process tasks"
        ))),
    }
}

/// `workers` scoped threads; each takes the next chunk from a shared counter
/// until none is left, so uneven chunks balance. The first error stops the
/// others from taking new chunks. Returns the checksums in task order.
fn run_threads(
    job: &Job<'_>,
    opts: &RunOptions<'_>,
    tasks: Vec<Task<'_, '_>>,
) -> Result<Vec<u64>, RunError> {
    let slots: Vec<Mutex<Option<Task<'_, '_>>>> =
        tasks.into_iter().map(|t| Mutex::new(Some(t))).collect();
    let sums: Vec<AtomicU64> = slots.iter().map(|_| AtomicU64::new(0)).collect();
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
            if let (Some(task), Some(sum)) = (task, sums.get(i)) {
                match task.run(job, opts) {
                    // Read after the scope has joined this thread.
                    Ok(s) => sum.store(s, Ordering::Relaxed),
                    Err(e) => {
                        failed.store(true, Ordering::Relaxed);
                        first_error
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .get_or_insert(e);
                    }
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
        None => Ok(sums.into_iter().map(AtomicU64::into_inner).collect()),
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

mod chunk;
mod process;
pub(crate) use process::kill_workers;
pub use process::{clear_interrupt, interrupt, is_interrupted, shutdown_pools, SharedValues};

#[cfg(test)]
mod test;
