//! The process backends: registered kernels on a [`Pool`] of worker processes.
//!
//! * [`ProcessMode::Shared`] (`--backend processes`): the input and output live
//!   in shared memory ([`SharedValues`]: shm segments or memory-mapped files);
//!   a task is only `(kernel id, params, chunk range, input dtype, array
//!   handles)`, and each worker reads and writes its chunk in place through
//!   mappings it keeps between tasks. Reductions return their small partial
//!   accumulator as the task result; the parent combines the partials in chunk
//!   order.
//! * [`ProcessMode::Copy`] (`--backend processes-copy`): the way Python's
//!   `Pool.map` works: each chunk's input travels to the worker as a serialized
//!   `Vec`, and the output chunk comes back as the task result.
//!
//! A generated input ([`Job::iota`](super::Job::iota)) has no handle and no
//! data: the task carries its element type and the worker generates its
//! chunk. Without an output (a map kernel run for its checksum only), the
//! worker runs the chunk into a per-thread scratch buffer it keeps between
//! tasks, and in both modes the task returns only the chunk's checksum. Every
//! map task returns its chunk's checksum; the parent keeps one per chunk index
//! (a task retried after a worker died is counted once) and adds them.
//!
//! One pool per worker count is started on first use and kept (starting a pool
//! costs milliseconds); [`shutdown_pools`] stops them (the CLI calls it before
//! it exits). Chunks are handed out lazily, a few per worker in flight, so
//! uneven kernels balance, the parent can report progress per finished chunk,
//! and an interrupt ([`interrupt`], or SIGINT in the CLI) stops the run between
//! chunks.

#![allow(unsafe_code)] // views of shared arrays, under the task protocol below

use super::chunk::{run_one, Src};
use super::{checksum, chunk_ranges, default_chunk, Job, ProcessMode, RunError, RunOptions};
use crate::kernels::{
    combine, Acc, Dtype, Input, KernelId, KernelInfo, Output, OutputKind, Params, Values,
};
use crate::segment::{ArrayHandle, RawArray, Segment, SharedArray};
use crate::Pool;
use serde::{Deserialize, Serialize};
use std::cell::{Cell, RefCell};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

// ---- pools ------------------------------------------------------------------

static POOLS: Mutex<Vec<(usize, Arc<Pool>)>> = Mutex::new(Vec::new());

/// Pool workers ignore SIGINT: a terminal's Ctrl-C reaches the whole process
/// group, and the parent decides how to stop (between chunks).
fn worker_init(_: ()) {
    crate::sys::signal::ignore_sigint();
}

/// The pool of `workers` processes, started on first use.
///
/// # Errors
/// The pool's start errors.
pub fn pool(workers: usize) -> Result<Arc<Pool>, RunError> {
    let mut pools = POOLS.lock().unwrap_or_else(|p| p.into_inner());
    // A pool that was terminated (or whose workers cannot be replaced) is
    // dropped and started again.
    pools.retain(|(_, p)| !p.is_closed());
    if let Some((_, p)) = pools.iter().find(|(n, _)| *n == workers) {
        return Ok(Arc::clone(p));
    }
    let p = Arc::new(
        Pool::builder()
            .processes(workers)
            .initializer(worker_init, ())?
            .build()?,
    );
    pools.push((workers, Arc::clone(&p)));
    Ok(p)
}

/// Stops every pool the backends started (workers terminated, control
/// segments removed). The next process run starts a new pool.
pub fn shutdown_pools() {
    let pools: Vec<_> = std::mem::take(&mut *POOLS.lock().unwrap_or_else(|p| p.into_inner()));
    for (_, p) in pools {
        p.terminate();
        let _ = p.join();
    }
}

// ---- interruption -----------------------------------------------------------

static INTERRUPT: AtomicBool = AtomicBool::new(false);

/// Asks running and future process runs to stop between chunks with
/// [`RunError::Interrupted`] (until [`clear_interrupt`]).
pub fn interrupt() {
    INTERRUPT.store(true, Ordering::SeqCst);
}

/// Undoes [`interrupt`].
pub fn clear_interrupt() {
    INTERRUPT.store(false, Ordering::SeqCst);
}

/// Whether [`interrupt`] was called or SIGINT arrived (after the CLI installed
/// its handler).
pub fn is_interrupted() -> bool {
    INTERRUPT.load(Ordering::SeqCst) || crate::sys::signal::interrupted()
}

// ---- shared values ----------------------------------------------------------

/// Segments whose bytes [`run`](super::run) may hand to workers by handle.
static REGISTRY: Mutex<Vec<Weak<Segment>>> = Mutex::new(Vec::new());

fn register(seg: &Arc<Segment>) {
    let mut r = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    r.retain(|w| w.strong_count() > 0);
    if !r.iter().any(|w| w.as_ptr() == Arc::as_ptr(seg)) {
        r.push(Arc::downgrade(seg));
    }
}

/// The region of shared memory that `s` is, if `s` lies in a segment of a
/// [`SharedValues`] (and, for `writable`, a writable one): workers reach the
/// very bytes of `s` through its handle while the caller's borrow of `s`
/// lasts.
pub(super) fn locate<T: bytemuck::Pod>(s: &[T], writable: bool) -> Option<RawArray<T>> {
    let r = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    let (p, bytes) = (s.as_ptr() as usize, std::mem::size_of_val(s));
    r.iter().filter_map(Weak::upgrade).find_map(|seg| {
        let base = seg.as_ptr() as usize;
        let inside = p >= base && p + bytes <= base + seg.len();
        (inside && (!writable || seg.is_writable()))
            .then(|| RawArray::from_region(seg, p - base, s.len()).ok())
            .flatten()
    })
}

/// An array of either element type in shared memory (a shm segment or a
/// memory-mapped file). Its [`as_input`](SharedValues::as_input) and
/// [`as_output`](SharedValues::as_output) views go to [`run`](super::run)
/// like any slice; with the process backend, workers then read and write this
/// very memory: nothing is copied.
#[derive(Debug)]
pub enum SharedValues {
    /// `u64` elements.
    U64(SharedArray<u64>),
    /// `f64` elements.
    F64(SharedArray<f64>),
}

impl SharedValues {
    /// `len` zeros in a new shm segment.
    ///
    /// # Errors
    /// [`crate::Error::NoSpace`] and other segment creation errors.
    pub fn zeros(dtype: Dtype, len: usize) -> crate::Result<Self> {
        let v = match dtype {
            Dtype::U64 => SharedValues::U64(SharedArray::new(len)?),
            Dtype::F64 => SharedValues::F64(SharedArray::new(len)?),
        };
        register(v.segment());
        Ok(v)
    }

    /// A copy of `values` in a new shm segment.
    ///
    /// # Errors
    /// As [`SharedValues::zeros`].
    pub fn from_values(values: &Values) -> crate::Result<Self> {
        let mut v = Self::zeros(values.dtype(), values.len())?;
        v.copy_from(values)?;
        Ok(v)
    }

    /// `len` elements of `dtype` at byte `offset` of `seg` (for example the
    /// data of a memory-mapped `.npy` file).
    ///
    /// # Safety
    /// The contract of [`SharedArray::from_region`]: while the value lives,
    /// nothing else reads or writes these bytes — for a mapped file, no other
    /// program writes or truncates the file (the contract of memmap2's
    /// mappings).
    ///
    /// # Errors
    /// [`crate::Error::OutOfBounds`] for a region outside the segment or a
    /// misaligned offset.
    pub unsafe fn from_region(
        seg: Arc<Segment>,
        offset: usize,
        len: usize,
        dtype: Dtype,
    ) -> crate::Result<Self> {
        register(&seg);
        Ok(match dtype {
            // SAFETY: forwarded to the caller.
            Dtype::U64 => SharedValues::U64(unsafe { SharedArray::from_region(seg, offset, len)? }),
            // SAFETY: forwarded to the caller.
            Dtype::F64 => SharedValues::F64(unsafe { SharedArray::from_region(seg, offset, len)? }),
        })
    }

    fn segment(&self) -> &Arc<Segment> {
        match self {
            SharedValues::U64(a) => a.raw().segment(),
            SharedValues::F64(a) => a.raw().segment(),
        }
    }

    /// Element type.
    pub fn dtype(&self) -> Dtype {
        match self {
            SharedValues::U64(_) => Dtype::U64,
            SharedValues::F64(_) => Dtype::F64,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            SharedValues::U64(a) => a.len(),
            SharedValues::F64(a) => a.len(),
        }
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements, read-only.
    pub fn as_input(&self) -> Input<'_> {
        match self {
            SharedValues::U64(a) => Input::U64(a.as_slice()),
            SharedValues::F64(a) => Input::F64(a.as_slice()),
        }
    }

    /// The elements, writable.
    ///
    /// # Errors
    /// [`crate::Error::InvalidState`] for a read-only mapping.
    pub fn as_output(&mut self) -> crate::Result<Output<'_>> {
        if !self.segment().is_writable() {
            return Err(crate::Error::InvalidState(
                "the shared values are read-only".into(),
            ));
        }
        Ok(match self {
            SharedValues::U64(a) => Output::U64(a.as_mut_slice()),
            SharedValues::F64(a) => Output::F64(a.as_mut_slice()),
        })
    }

    /// Overwrites the elements with `values`.
    ///
    /// # Errors
    /// [`crate::Error::InvalidArgument`] for another type or length,
    /// [`crate::Error::InvalidState`] for a read-only mapping.
    pub fn copy_from(&mut self, values: &Values) -> crate::Result<()> {
        if values.dtype() != self.dtype() || values.len() != self.len() {
            return Err(crate::Error::InvalidArgument(format!(
                "cannot copy {} {} into {} {}",
                values.len(),
                values.dtype(),
                self.len(),
                self.dtype()
            )));
        }
        match (self.as_output()?, values) {
            (Output::U64(d), Values::U64(s)) => d.copy_from_slice(s),
            (Output::F64(d), Values::F64(s)) => d.copy_from_slice(s),
            _ => {}
        }
        Ok(())
    }

    /// A copy of the elements.
    pub fn to_values(&self) -> Values {
        match self.as_input() {
            Input::U64(s) => Values::U64(s.to_vec()),
            Input::F64(s) => Values::F64(s.to_vec()),
            _ => Values::U64(Vec::new()),
        }
    }

    fn handle(&self) -> (Dt, ArrayHandle) {
        match self {
            SharedValues::U64(a) => (Dt::U64, a.raw().handle()),
            SharedValues::F64(a) => (Dt::F64, a.raw().handle()),
        }
    }
}

/// `0, 1, 2, ...` (as `u64` or `f64`) in a new shared array, written by the
/// workers of the pool of `workers` processes, chunk by chunk.
///
/// # Errors
/// Segment creation and pool errors.
pub fn iota(dtype: Dtype, n: usize, workers: usize) -> Result<SharedValues, RunError> {
    let out = SharedValues::zeros(dtype, n)?;
    let pool = pool(workers.max(1))?;
    let (dt, h) = out.handle();
    let tasks = chunk_ranges(n, default_chunk(n)).map(|r| FillTask {
        out: (dt, h.clone()),
        range: r.start as u64..r.end as u64,
    });
    for r in pool.map(fill_task, tasks)? {
        r.map_err(RunError::Worker)?;
    }
    Ok(out)
}

// ---- tasks ------------------------------------------------------------------

/// Element type tag of an array handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum Dt {
    U64,
    F64,
}

impl From<Dtype> for Dt {
    fn from(d: Dtype) -> Self {
        match d {
            Dtype::U64 => Dt::U64,
            Dtype::F64 => Dt::F64,
        }
    }
}

impl From<Dt> for Dtype {
    fn from(d: Dt) -> Self {
        match d {
            Dt::U64 => Dtype::U64,
            Dt::F64 => Dtype::F64,
        }
    }
}

/// Values as they travel in tasks and results.
#[derive(Debug, Serialize, Deserialize)]
pub(super) enum Data {
    U64(Vec<u64>),
    F64(Vec<f64>),
}

impl From<Values> for Data {
    fn from(v: Values) -> Self {
        match v {
            Values::U64(v) => Data::U64(v),
            Values::F64(v) => Data::F64(v),
        }
    }
}

impl From<Data> for Values {
    fn from(d: Data) -> Self {
        match d {
            Data::U64(v) => Values::U64(v),
            Data::F64(v) => Values::F64(v),
        }
    }
}

fn data_of(input: Input<'_>) -> Option<Data> {
    match input {
        Input::U64(s) => Some(Data::U64(s.to_vec())),
        Input::F64(s) => Some(Data::F64(s.to_vec())),
        _ => None,
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct FillTask {
    out: (Dt, ArrayHandle),
    range: Range<u64>,
}

/// Worker side of [`iota`].
fn fill_task(t: FillTask) -> Result<(), String> {
    let r = t.range.start as usize..t.range.end as usize;
    let err = |e: crate::Error| e.to_string();
    match t.out.0 {
        Dt::U64 => {
            let a = crate::pool::attach_cached::<u64>(&t.out.1).map_err(err)?;
            check_range(&r, a.len())?;
            // Disjoint ranges of a fresh array nothing else uses meanwhile.
            for (x, i) in chunk_of_mut(&a, &r).iter_mut().zip(r.start as u64..) {
                *x = i;
            }
        }
        Dt::F64 => {
            let a = crate::pool::attach_cached::<f64>(&t.out.1).map_err(err)?;
            check_range(&r, a.len())?;
            for (x, i) in chunk_of_mut(&a, &r).iter_mut().zip(r.start..) {
                *x = i as f64;
            }
        }
    }
    Ok(())
}

fn check_range(r: &Range<usize>, len: usize) -> Result<(), String> {
    if r.start > r.end || r.end > len {
        return Err(format!("chunk {r:?} out of bounds for {len} elements"));
    }
    Ok(())
}

/// One chunk of a zero-copy run.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct SharedTask {
    pub(super) kernel: u32,
    pub(super) params: Params,
    pub(super) index: u64,
    pub(super) range: Range<u64>,
    pub(super) x: Option<(Dt, ArrayHandle)>,
    pub(super) y: Option<ArrayHandle>,
    /// A generated input of this type (no `x`): the chunk generates `range`.
    pub(super) iota: Option<Dt>,
    /// The whole output array (map kernels); the chunk writes `out[range]`.
    /// `None` for a map kernel: scratch, checksum only.
    pub(super) out: Option<(Dt, ArrayHandle)>,
}

/// One chunk of a copying run: the input travels with the task.
#[derive(Debug, Serialize, Deserialize)]
struct CopyTask {
    kernel: u32,
    params: Params,
    index: u64,
    range: Range<u64>,
    x: Option<Data>,
    y: Option<Data>,
    /// A generated input of this type (no `x`; nothing to copy).
    iota: Option<Dt>,
    /// Prior contents of the output chunk (in-place kernels: saxpy's `y`).
    out: Option<Data>,
    out_dtype: Dt,
    /// Whether the output chunk comes back (there is an output to write);
    /// otherwise only its checksum does.
    want_data: bool,
}

/// A task's result.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Done {
    /// The chunk's index.
    index: u64,
    /// A reduction's partial accumulator; a copying map task's output chunk.
    data: Option<Data>,
    /// A map chunk's checksum (0 for reductions).
    checksum: u64,
}

/// Chunks kept in flight: eight per worker, so a worker never waits for the
/// parent to hand out its next chunk (a parked parent takes tens of
/// microseconds to wake on this VM), while the pool's shared queue still
/// balances uneven chunks across workers.
fn in_flight(workers: usize) -> usize {
    8 * workers.max(1)
}

type ChunkResult = Result<Done, String>;

fn kernel_of(id: u32) -> Result<&'static KernelInfo, String> {
    KernelId::from_u32(id)
        .map(KernelId::info)
        .ok_or_else(|| format!("unknown kernel id {id}"))
}

enum Attached {
    U64(RawArray<u64>),
    F64(RawArray<f64>),
}

fn attach(dt: Dt, h: &ArrayHandle, range: &Range<usize>) -> Result<Attached, String> {
    let a = match dt {
        Dt::U64 => Attached::U64(crate::pool::attach_cached(h).map_err(|e| e.to_string())?),
        Dt::F64 => Attached::F64(crate::pool::attach_cached(h).map_err(|e| e.to_string())?),
    };
    let len = match &a {
        Attached::U64(a) => a.len(),
        Attached::F64(a) => a.len(),
    };
    check_range(range, len)?;
    Ok(a)
}

/// A task's view of its chunk of an input array (`r` bounds-checked by
/// [`attach`]).
fn chunk_of<'a, T: bytemuck::Pod>(a: &'a RawArray<T>, r: &Range<usize>) -> &'a [T] {
    a.prefault(r.clone(), false);
    // SAFETY: the task protocol: the parent neither writes an input array
    // nor lets anything else write it while the run lasts (`run` holds a
    // shared borrow of it), and outputs are different arrays from inputs (a
    // `&mut` output never aliases a `&` input in the caller).
    unsafe { &a.slice()[r.clone()] }
}

/// A task's view of its chunk of the output array.
#[allow(clippy::mut_from_ref)]
fn chunk_of_mut<'a, T: bytemuck::Pod>(a: &'a RawArray<T>, r: &Range<usize>) -> &'a mut [T] {
    a.prefault(r.clone(), true);
    // SAFETY: the task protocol: every task of a run gets a distinct range
    // of the output, the parent does not touch the output while the run lasts
    // (`run` holds its `&mut`), and it waits for the tasks in flight before
    // it returns, even on failure. A retried task rewrites the same range.
    unsafe { &mut a.slice_mut()[r.clone()] }
}

/// The chunk's input: sub-slices of the attached arrays, generated, or none.
fn src_of<'a>(
    x: &'a Option<Attached>,
    y: &'a Option<Attached>,
    iota: Option<Dt>,
    r: &Range<usize>,
) -> Src<'a> {
    match (x, y) {
        (None, _) => match iota {
            Some(d) => Src::Iota(d.into()),
            None => Src::Slices(Input::Generated),
        },
        (Some(Attached::F64(x)), Some(Attached::F64(y))) => {
            Src::Slices(Input::F64Pair(chunk_of(x, r), chunk_of(y, r)))
        }
        (Some(Attached::U64(x)), _) => Src::Slices(Input::U64(chunk_of(x, r))),
        (Some(Attached::F64(x)), _) => Src::Slices(Input::F64(chunk_of(x, r))),
    }
}

/// Worker side of a zero-copy chunk.
pub(super) fn shared_task(t: SharedTask) -> ChunkResult {
    let info = kernel_of(t.kernel)?;
    let r = t.range.start as usize..t.range.end as usize;
    let x = t.x.as_ref().map(|(d, h)| attach(*d, h, &r)).transpose()?;
    let y = t.y.as_ref().map(|h| attach(Dt::F64, h, &r)).transpose()?;
    let out = t.out.as_ref().map(|(d, h)| attach(*d, h, &r)).transpose()?;
    let src = src_of(&x, &y, t.iota, &r);
    if info.is_reduction() {
        let dtype = info.output_dtype(src.dtype()).map_err(|e| e.to_string())?;
        let mut acc = Values::zeros(dtype, info.acc_len(&t.params));
        run_one(info, &t.params, r, src, Some(acc.as_output())).map_err(|e| e.to_string())?;
        return Ok(Done {
            index: t.index,
            data: Some(acc.into()),
            checksum: 0,
        });
    }
    let output = match &out {
        Some(Attached::U64(o)) => Some(Output::U64(chunk_of_mut(o, &r))),
        Some(Attached::F64(o)) => Some(Output::F64(chunk_of_mut(o, &r))),
        None => None,
    };
    let sum = run_one(info, &t.params, r, src, output).map_err(|e| e.to_string())?;
    Ok(Done {
        index: t.index,
        data: None,
        checksum: sum,
    })
}

/// Worker side of a copying chunk.
fn copy_task(t: CopyTask) -> ChunkResult {
    let info = kernel_of(t.kernel)?;
    let r = t.range.start as usize..t.range.end as usize;
    let src = match (&t.x, &t.y, t.iota) {
        (None, _, Some(d)) => Src::Iota(d.into()),
        (None, _, None) => Src::Slices(Input::Generated),
        (Some(Data::F64(x)), Some(Data::F64(y)), _) => Src::Slices(Input::F64Pair(x, y)),
        (Some(Data::U64(x)), _, _) => Src::Slices(Input::U64(x)),
        (Some(Data::F64(x)), _, _) => Src::Slices(Input::F64(x)),
    };
    let dtype = Dtype::from(t.out_dtype);
    if !info.is_reduction() && !t.want_data {
        let sum = run_one(info, &t.params, r, src, None).map_err(|e| e.to_string())?;
        return Ok(Done {
            index: t.index,
            data: None,
            checksum: sum,
        });
    }
    let mut out: Values = match t.out {
        Some(d) => d.into(),
        None if info.is_reduction() => Values::zeros(dtype, info.acc_len(&t.params)),
        None => Values::zeros(dtype, r.len()),
    };
    let sum = run_one(info, &t.params, r, src, Some(out.as_output())).map_err(|e| e.to_string())?;
    Ok(Done {
        index: t.index,
        data: Some(out.into()),
        checksum: sum,
    })
}

// ---- the parent's side ------------------------------------------------------

/// Shared arrays for an input or output slice: the registered segment it lies
/// in, or else a temporary copy (which `run` then copies back for outputs).
fn share_slice<T: bytemuck::Pod>(
    s: &[T],
    writable: bool,
    temp: &mut bool,
) -> crate::Result<Shared<T>> {
    if let Some(a) = locate(s, writable) {
        return Ok(Shared::Located(a));
    }
    *temp = true;
    Ok(Shared::Copy(SharedArray::from_slice(s)?))
}

/// An input or output of a run as workers reach it: the caller's own bytes
/// (borrowed for the run), or a temporary copy.
enum Shared<T: bytemuck::Pod> {
    Located(RawArray<T>),
    Copy(SharedArray<T>),
}

impl<T: bytemuck::Pod> Shared<T> {
    fn handle(&self) -> ArrayHandle {
        match self {
            Shared::Located(a) => a.handle(),
            Shared::Copy(a) => a.raw().handle(),
        }
    }

    /// The temporary copy's elements (an output copied back at the end).
    fn copied(&self) -> Option<&[T]> {
        match self {
            Shared::Located(_) => None,
            Shared::Copy(a) => Some(a.as_slice()),
        }
    }
}

/// A shared input or output of either element type.
enum SharedIo {
    U64(Shared<u64>),
    F64(Shared<f64>),
}

impl SharedIo {
    fn handle(&self) -> (Dt, ArrayHandle) {
        match self {
            SharedIo::U64(a) => (Dt::U64, a.handle()),
            SharedIo::F64(a) => (Dt::F64, a.handle()),
        }
    }
}

/// The input's arrays as shared arrays (kept alive by the caller for the run).
fn share_input(input: Input<'_>) -> crate::Result<(Option<SharedIo>, Option<SharedIo>)> {
    let mut temp = false;
    Ok(match input {
        Input::Generated => (None, None),
        Input::U64(s) => (Some(SharedIo::U64(share_slice(s, false, &mut temp)?)), None),
        Input::F64(s) => (Some(SharedIo::F64(share_slice(s, false, &mut temp)?)), None),
        Input::F64Pair(x, y) => (
            Some(SharedIo::F64(share_slice(x, false, &mut temp)?)),
            Some(SharedIo::F64(share_slice(y, false, &mut temp)?)),
        ),
    })
}

/// Runs `job` on worker processes (see the module docs). `super::run` has
/// validated the job and the output shape. `output` is `None` for a map kernel
/// run for its checksum only. Returns the checksum of the results (see
/// [`run_checksum`](super::run_checksum)).
pub(super) fn run_processes(
    job: &Job<'_>,
    mut output: Option<Output<'_>>,
    opts: &RunOptions<'_>,
    mode: ProcessMode,
) -> Result<u64, RunError> {
    let k = job.kernel;
    let chunk = opts.chunk.unwrap_or_else(|| default_chunk(job.n));
    let ranges: Vec<Range<usize>> = chunk_ranges(job.n, chunk).collect();
    let acc_len = k.acc_len(&job.params);
    let out_dt = Dt::from(k.output_dtype(job.input_dtype())?);
    let iota = job.iota.map(Dt::from);
    let in_place = matches!(k.output, OutputKind::Map { in_place: true, .. });
    let mut partials: Vec<Option<Values>> = (0..ranges.len()).map(|_| None).collect();
    // One checksum per chunk index: a chunk that comes back twice is counted
    // once.
    let mut sums: Vec<Option<u64>> = vec![None; ranges.len()];
    if is_interrupted() {
        return Err(RunError::Interrupted);
    }
    let pool = pool(opts.workers)?;
    // Set on the first failure: no more chunks are handed out, the ones in
    // flight are waited for (they write into memory the caller owns).
    let stop = Cell::new(false);
    let mut first_err: Option<RunError> = None;
    let mut on_result = |item: crate::Result<ChunkResult>, output: Option<&mut Output<'_>>| {
        let done = match item {
            Ok(Ok(d)) => d,
            Ok(Err(msg)) => {
                stop.set(true);
                first_err.get_or_insert(RunError::Worker(msg));
                return;
            }
            Err(e) => {
                stop.set(true);
                first_err.get_or_insert(RunError::Pool(e));
                return;
            }
        };
        let i = done.index as usize;
        let Some(range) = ranges.get(i).cloned() else {
            stop.set(true);
            first_err.get_or_insert(RunError::Worker(format!("unknown chunk {i}")));
            return;
        };
        match (done.data.map(Values::from), output) {
            (Some(v), _) if k.is_reduction() => partials[i] = Some(v),
            (Some(v), Some(output)) => match (output.reborrow(), v) {
                (Output::U64(o), Values::U64(v)) if v.len() == range.len() => {
                    o[range.clone()].copy_from_slice(&v)
                }
                (Output::F64(o), Values::F64(v)) if v.len() == range.len() => {
                    o[range.clone()].copy_from_slice(&v)
                }
                _ => {
                    stop.set(true);
                    first_err.get_or_insert(RunError::Worker(format!(
                        "chunk {i} came back with the wrong shape"
                    )));
                    return;
                }
            },
            (Some(_), None) => {
                stop.set(true);
                first_err.get_or_insert(RunError::Worker(format!(
                    "chunk {i} came back with data nobody asked for"
                )));
                return;
            }
            (None, _) => {}
        }
        sums[i] = Some(done.checksum);
        if let Some(progress) = opts.progress {
            progress(range.len());
        }
        if is_interrupted() {
            stop.set(true);
            first_err.get_or_insert(RunError::Interrupted);
        }
    };
    let live = || !stop.get();
    match mode {
        ProcessMode::Shared => {
            let (xa, ya) = share_input(job.input)?;
            let x = xa.as_ref().map(SharedIo::handle);
            let y = ya.as_ref().map(|a| a.handle().1);
            let mut temp_out = false;
            let out_arr = match &output {
                _ if k.is_reduction() => None,
                None => None,
                Some(Output::U64(s)) => Some(SharedIo::U64(share_slice(s, true, &mut temp_out)?)),
                Some(Output::F64(s)) => Some(SharedIo::F64(share_slice(s, true, &mut temp_out)?)),
            };
            let out_h = out_arr.as_ref().map(SharedIo::handle);
            let tasks = ranges
                .iter()
                .enumerate()
                .take_while(|_| live())
                .map(|(i, r)| SharedTask {
                    kernel: k.id as u32,
                    params: job.params,
                    index: i as u64,
                    range: r.start as u64..r.end as u64,
                    x: x.clone(),
                    y: y.clone(),
                    iota,
                    out: out_h.clone(),
                });
            for item in pool
                .imap_unordered(shared_task, tasks)
                .window(in_flight(opts.workers))
            {
                on_result(item, output.as_mut());
            }
            if let (true, Some(tmp), Some(output)) = (temp_out, &out_arr, output.as_mut()) {
                match (tmp, output.reborrow()) {
                    (SharedIo::U64(s), Output::U64(d)) => {
                        if let Some(s) = s.copied() {
                            d.copy_from_slice(s)
                        }
                    }
                    (SharedIo::F64(s), Output::F64(d)) => {
                        if let Some(s) = s.copied() {
                            d.copy_from_slice(s)
                        }
                    }
                    _ => {}
                }
            }
        }
        ProcessMode::Copy => {
            // The task iterator reads in-place operands from the output while
            // results are written into it: both run on this thread, in turn
            // (the pool pulls a task only inside `next`).
            let want_data = output.is_some() && !k.is_reduction();
            let out_cell = RefCell::new(output);
            let tasks = ranges
                .iter()
                .enumerate()
                .take_while(|_| live())
                .map(|(i, r)| CopyTask {
                    kernel: k.id as u32,
                    params: job.params,
                    index: i as u64,
                    range: r.start as u64..r.end as u64,
                    x: data_of(match job.input {
                        Input::F64Pair(x, _) => Input::F64(&x[r.clone()]),
                        other => other.slice(r.clone()),
                    }),
                    y: match job.input {
                        Input::F64Pair(_, y) => Some(Data::F64(y[r.clone()].to_vec())),
                        _ => None,
                    },
                    iota,
                    out: match &*out_cell.borrow() {
                        Some(Output::U64(o)) if in_place => Some(Data::U64(o[r.clone()].to_vec())),
                        Some(Output::F64(o)) if in_place => Some(Data::F64(o[r.clone()].to_vec())),
                        _ => None,
                    },
                    out_dtype: out_dt,
                    want_data,
                });
            for item in pool
                .imap_unordered(copy_task, tasks)
                .window(in_flight(opts.workers))
            {
                on_result(item, out_cell.borrow_mut().as_mut());
            }
            output = out_cell.into_inner();
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    if !k.is_reduction() {
        let mut total = 0u64;
        for s in &sums {
            let Some(s) = s else {
                return Err(RunError::Worker("a chunk result is missing".into()));
            };
            total = total.wrapping_add(*s);
        }
        return Ok(total);
    }
    let Some(mut output) = output else {
        return Err(RunError::Invalid("a reduction needs an accumulator".into()));
    };
    match &mut output {
        Output::U64(s) => s.fill(0),
        Output::F64(s) => s.fill(0.0),
    }
    for p in &partials {
        let Some(p) = p else {
            return Err(RunError::Worker("a chunk result is missing".into()));
        };
        if p.len() != acc_len {
            return Err(RunError::Worker(
                "a partial accumulator has the wrong length".into(),
            ));
        }
        let acc = match p {
            Values::U64(v) => Acc::U64(v),
            Values::F64(v) => Acc::F64(v),
        };
        combine(k, output.reborrow(), acc)?;
    }
    Ok(checksum(output.as_acc()))
}
