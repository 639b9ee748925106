//! The process backends: kernels on a [`Pool`] of worker processes.
//!
//! * [`ProcessMode::Shared`] (`--backend processes`): the inputs and output
//!   live in shared memory ([`SharedValues`]: shm segments or memory-mapped
//!   files); a task is only `(kernel, params, chunk range, array handles)`,
//!   and each worker reads and writes its chunk in place through mappings it
//!   keeps between tasks ([`SharedView::attach_cached`]). Reductions return
//!   their small partial accumulator as the task result; the parent combines
//!   the partials in chunk order.
//! * [`ProcessMode::Copy`] (`--backend processes-copy`): the way Python's
//!   `Pool.map` works: each chunk's input travels to the worker as a
//!   serialized `Vec`, and the output chunk comes back as the task result.
//!
//! The kernel itself travels serialized in every task (a unit struct is no
//! bytes at all); the task function is `shared_task::<K>` / `copy_task::<K>`
//! for the kernel's type `K`, which the worker has because it runs the same
//! executable ([`KernelRef`] records both).
//!
//! A generated input ([`Job::iota`](super::Job::iota)) has no handle and no
//! data: the task carries its element type and the worker generates its
//! chunk. Without an output (a map kernel run for its checksum only), the
//! worker runs the chunk into a per-thread scratch buffer it keeps between
//! tasks, and in both modes the task returns only the chunk's checksum. The
//! parent keeps one checksum per chunk index (a task retried after a worker
//! died is counted once) and adds them.
//!
//! One pool per worker count is started on first use and kept (starting a
//! pool costs milliseconds); [`shutdown_pools`] stops them (the CLI calls it
//! before it exits). Chunks are handed out lazily, a few per worker in flight,
//! so uneven kernels balance, the parent can report progress per finished
//! chunk, and an interrupt ([`interrupt`]) stops the run between chunks. (The
//! CLI does not wait for chunks: on a stop signal it kills the workers and
//! exits, see `crate::signal`.)

#![allow(unsafe_code)] // views of shared arrays, under the task protocol below

use super::chunk::{run_one, Src};
use super::{job_chunk, ChunkResults, Job, KernelRef, ProcessMode, RunError, RunOptions};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use shmproc::segment::ArrayHandle;
use shmproc::{Pool, Segment, SharedArray, SharedView};
use shmproc_kernels::{Dtype, Kernel, Kind, Params, Slice, SliceMut, Values};
use std::cell::{Cell, RefCell};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

// ---- pools ------------------------------------------------------------------

static POOLS: Mutex<Vec<(usize, Arc<Pool>)>> = Mutex::new(Vec::new());

/// Pool workers ignore the terminal's signals: a terminal's Ctrl-C reaches
/// the whole process group, and the parent decides how to stop.
fn worker_init(_: ()) {
    crate::signal::ignore_terminal_signals();
}

/// The pool of `workers` processes, started on first use.
fn pool(workers: usize) -> Result<Arc<Pool>, RunError> {
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
            .initializer(worker_init, ())
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

/// Kills the workers of every pool the backends started, at once (SIGKILL,
/// no chunk is waited for), then terminates the pools so that none is
/// replaced, waiting at most 50 ms for that. Returns the pids killed. For
/// the CLI's stop path ([`crate::signal::stop`]); the process exits next.
pub(crate) fn kill_workers() -> Vec<u32> {
    let pools: Vec<Arc<Pool>> = {
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(50);
        loop {
            match POOLS.try_lock() {
                Ok(g) => break g.iter().map(|(_, p)| Arc::clone(p)).collect(),
                Err(std::sync::TryLockError::Poisoned(p)) => {
                    break p.into_inner().iter().map(|(_, p)| Arc::clone(p)).collect()
                }
                Err(std::sync::TryLockError::WouldBlock)
                    if std::time::Instant::now() < deadline =>
                {
                    std::thread::yield_now()
                }
                Err(std::sync::TryLockError::WouldBlock) => break Vec::new(),
            }
        }
    };
    let mut killed = Vec::new();
    for p in &pools {
        for pid in p.worker_pids() {
            if let Ok(pid_t) = libc::pid_t::try_from(pid) {
                // SAFETY: kill(2) has no memory-safety preconditions; the pid
                // is a worker of our own pool, not yet reaped (the pool reaps
                // its workers and is still alive).
                unsafe {
                    libc::kill(pid_t, libc::SIGKILL);
                }
                killed.push(pid);
            }
        }
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let terminating = std::thread::Builder::new().spawn(move || {
        for p in pools {
            p.terminate();
        }
        let _ = tx.send(());
    });
    if terminating.is_ok() {
        let _ = rx.recv_timeout(std::time::Duration::from_millis(50));
    }
    killed
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

/// Whether [`interrupt`] was called or a stop signal arrived (after the CLI installed
/// its handler).
pub fn is_interrupted() -> bool {
    INTERRUPT.load(Ordering::SeqCst) || crate::signal::interrupted()
}

// ---- shared arrays of any dtype ------------------------------------------------

macro_rules! any_view {
    ($($v:ident($t:ty)),* $(,)?) => {
        /// A [`SharedView`] of any element type (`bool` as bytes).
        #[derive(Debug, Clone)]
        pub(super) enum AnyView {
            $($v(SharedView<$t>),)*
        }

        impl AnyView {
            fn zeros(dtype: Dtype, len: usize) -> shmproc::Result<Self> {
                Ok(match dtype { $(Dtype::$v => AnyView::$v(SharedView::new(len)?),)* })
            }

            fn from_slice(s: Slice<'_>) -> shmproc::Result<Self> {
                Ok(match s { $(Slice::$v(s) => AnyView::$v(SharedArray::from_slice(s)?.into_view()),)* })
            }

            fn from_region(dtype: Dtype, seg: Arc<Segment>, offset: usize, len: usize) -> shmproc::Result<Self> {
                Ok(match dtype { $(Dtype::$v => AnyView::$v(SharedView::from_region(seg, offset, len)?),)* })
            }

            fn attach(dtype: Dtype, h: &ArrayHandle) -> shmproc::Result<Self> {
                Ok(match dtype { $(Dtype::$v => AnyView::$v(SharedView::attach_cached(h)?),)* })
            }

            fn dtype(&self) -> Dtype {
                match self { $(AnyView::$v(_) => Dtype::$v,)* }
            }

            fn len(&self) -> usize {
                match self { $(AnyView::$v(a) => a.len(),)* }
            }

            fn segment(&self) -> &Arc<Segment> {
                match self { $(AnyView::$v(a) => a.segment(),)* }
            }

            fn handle(&self) -> (Dtype, ArrayHandle) {
                (self.dtype(), match self { $(AnyView::$v(a) => a.handle(),)* })
            }

            fn prefault(&self, r: Range<usize>, write: bool) {
                match self { $(AnyView::$v(a) => a.prefault(r, write),)* }
            }

            /// The elements in `r`.
            ///
            /// # Safety
            /// While the slice lives, nobody (in any process) writes them.
            unsafe fn slice(&self, r: Range<usize>) -> Slice<'_> {
                // SAFETY: forwarded to the caller; `r` is bounds-checked by
                // the slice indexing.
                match self { $(AnyView::$v(a) => Slice::$v(unsafe { &a.as_slice()[r] }),)* }
            }

            /// The elements in `r`, writable.
            ///
            /// # Safety
            /// While the slice lives, nobody else (in any process) reads or
            /// writes them, and the mapping is writable.
            #[allow(clippy::mut_from_ref)]
            unsafe fn slice_mut(&self, r: Range<usize>) -> SliceMut<'_> {
                // SAFETY: forwarded to the caller.
                match self { $(AnyView::$v(a) => SliceMut::$v(unsafe { &mut a.as_mut_slice()[r] }),)* }
            }
        }
    };
}

any_view! {
    Bool(u8), I8(i8), I16(i16), I32(i32), I64(i64), U8(u8), U16(u16), U32(u32), U64(u64), F32(f32), F64(f64),
}

/// Segments whose bytes a process run may hand to workers by handle: those
/// of live [`SharedValues`].
static REGISTRY: Mutex<Vec<Weak<Segment>>> = Mutex::new(Vec::new());

fn register(seg: &Arc<Segment>) {
    let mut r = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    r.retain(|w| w.strong_count() > 0);
    if !r.iter().any(|w| w.as_ptr() == Arc::as_ptr(seg)) {
        r.push(Arc::downgrade(seg));
    }
}

/// The shared array that `s` is, if `s` lies in a segment of a
/// [`SharedValues`] (and, for `writable`, a writable one): workers reach the
/// very bytes of `s` through its handle while the caller's borrow of `s`
/// lasts.
pub(super) fn locate(s: Slice<'_>, writable: bool) -> Option<AnyView> {
    let (p, bytes) = slice_bytes(s);
    let r = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    r.iter().filter_map(Weak::upgrade).find_map(|seg| {
        let base = seg.as_ptr() as usize;
        let inside = p >= base && p + bytes <= base + seg.len();
        (inside && (!writable || seg.is_writable()))
            .then(|| AnyView::from_region(s.dtype(), seg, p - base, s.len()).ok())
            .flatten()
    })
}

/// Address and byte length of a slice's elements.
fn slice_bytes(s: Slice<'_>) -> (usize, usize) {
    macro_rules! addr {
        ($($v:ident),*) => {
            match s { $(Slice::$v(x) => (x.as_ptr() as usize, std::mem::size_of_val(x)),)* }
        };
    }
    addr!(Bool, I8, I16, I32, I64, U8, U16, U32, U64, F32, F64)
}

/// An array of any element type in shared memory (a shm segment or a
/// memory-mapped file). Its [`as_slice`](SharedValues::as_slice) and
/// [`as_slice_mut`](SharedValues::as_slice_mut) views go to
/// [`run`](super::run) like any slice; with the process backend, workers then
/// read and write this very memory: nothing is copied.
///
/// The value is the only way to these elements: nothing else holds a view of
/// them (workers get handles only for the length of a run that borrows the
/// slices), so its slices follow the borrow rules like a `Vec`'s.
#[derive(Debug)]
pub struct SharedValues {
    view: AnyView,
}

impl SharedValues {
    fn wrap(view: AnyView) -> Self {
        register(view.segment());
        SharedValues { view }
    }

    /// `len` zeros in a new shared segment.
    ///
    /// # Errors
    /// [`shmproc::Error::NoSpace`] and other segment creation errors.
    pub fn zeros(dtype: Dtype, len: usize) -> shmproc::Result<Self> {
        Ok(Self::wrap(AnyView::zeros(dtype, len)?))
    }

    /// A copy of `values` in a new shared segment.
    ///
    /// # Errors
    /// As [`SharedValues::zeros`].
    pub fn from_slice(values: Slice<'_>) -> shmproc::Result<Self> {
        Ok(Self::wrap(AnyView::from_slice(values)?))
    }

    /// `len` elements of `dtype` at byte `offset` of `seg` (for example the
    /// data of a memory-mapped `.npy` file).
    ///
    /// # Safety
    /// While the value lives, nothing else reads or writes these bytes: no
    /// other view of the region, and for a mapped file, no other program
    /// writes or truncates the file (the contract of memmap2's mappings).
    ///
    /// # Errors
    /// [`shmproc::Error::OutOfBounds`] for a region outside the segment or a
    /// misaligned offset.
    pub unsafe fn from_region(
        seg: Arc<Segment>,
        offset: usize,
        len: usize,
        dtype: Dtype,
    ) -> shmproc::Result<Self> {
        Ok(Self::wrap(AnyView::from_region(dtype, seg, offset, len)?))
    }

    /// Element type.
    pub fn dtype(&self) -> Dtype {
        self.view.dtype()
    }

    /// The current size of the file or segment behind the values (a mapped
    /// input that shrank is smaller than when it was mapped).
    pub(crate) fn segment_file_len(&self) -> Option<u64> {
        self.view.segment().file().metadata().ok().map(|m| m.len())
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.view.len()
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements, read-only.
    pub fn as_slice(&self) -> Slice<'_> {
        // SAFETY: this value is the only access to the elements (see the
        // type's docs); `&self` excludes writes through it while the slice
        // lives, and `from_region`'s caller excluded everything else.
        unsafe { self.view.slice(0..self.len()) }
    }

    /// The elements, writable.
    ///
    /// # Errors
    /// [`shmproc::Error::InvalidState`] for a read-only mapping.
    pub fn as_slice_mut(&mut self) -> shmproc::Result<SliceMut<'_>> {
        if !self.view.segment().is_writable() {
            return Err(shmproc::Error::InvalidState(
                "the shared values are read-only".into(),
            ));
        }
        // SAFETY: as in `as_slice`, with `&mut self` excluding every other
        // access through this value; the mapping is writable (checked).
        Ok(unsafe { self.view.slice_mut(0..self.len()) })
    }

    /// A copy of the elements.
    pub fn to_values(&self) -> Values {
        self.as_slice().to_values()
    }
}

// ---- tasks ------------------------------------------------------------------

/// One chunk of a zero-copy run.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct SharedTask {
    /// The kernel value, serialized.
    pub(super) kernel: Vec<u8>,
    pub(super) params: Params,
    pub(super) index: u64,
    /// The chunk in the index space.
    pub(super) range: Range<u64>,
    /// The index the arrays start at (the job's `first`).
    pub(super) base: u64,
    pub(super) row_len: u64,
    pub(super) x: Option<(Dtype, ArrayHandle)>,
    pub(super) y: Option<(Dtype, ArrayHandle)>,
    /// A generated input of this type (no `x`): the chunk generates its range.
    pub(super) iota: Option<Dtype>,
    /// The whole output array (map kernels); the chunk writes its elements.
    /// `None` for a map kernel: scratch, checksum only.
    pub(super) out: Option<(Dtype, ArrayHandle)>,
}

/// One chunk of a copying run: the input travels with the task.
#[derive(Debug, Serialize, Deserialize)]
struct CopyTask {
    kernel: Vec<u8>,
    params: Params,
    index: u64,
    range: Range<u64>,
    row_len: u64,
    x: Option<Values>,
    y: Option<Values>,
    /// A generated input of this type (no `x`; nothing to copy).
    iota: Option<Dtype>,
    /// Prior contents of the output chunk (in-place kernels: saxpy's `y`).
    out: Option<Values>,
    out_dtype: Dtype,
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
    data: Option<Values>,
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

pub(super) type ChunkResult = Result<Done, String>;

fn kernel_of<K: DeserializeOwned>(wire: &[u8]) -> Result<K, String> {
    postcard::from_bytes(wire).map_err(|e| format!("the kernel does not decode: {e}"))
}

fn attach(
    h: &Option<(Dtype, ArrayHandle)>,
    elems: &Range<usize>,
) -> Result<Option<AnyView>, String> {
    let Some((d, h)) = h else { return Ok(None) };
    let a = AnyView::attach(*d, h).map_err(|e| e.to_string())?;
    if elems.start > elems.end || elems.end > a.len() {
        return Err(format!(
            "chunk {elems:?} out of bounds for {} elements",
            a.len()
        ));
    }
    Ok(Some(a))
}

/// A task's view of its chunk of an input array (`r` bounds-checked by
/// [`attach`]).
fn chunk_of<'a>(a: &'a AnyView, r: &Range<usize>) -> Slice<'a> {
    a.prefault(r.clone(), false);
    // SAFETY: the task protocol: the parent neither writes an input array
    // nor lets anything else write it while the run lasts (`run` holds a
    // shared borrow of it), and outputs are different arrays from inputs (a
    // `&mut` output never aliases a `&` input in the caller).
    unsafe { a.slice(r.clone()) }
}

/// A task's view of its chunk of the output array.
fn chunk_of_mut<'a>(a: &'a AnyView, r: &Range<usize>) -> SliceMut<'a> {
    a.prefault(r.clone(), true);
    // SAFETY: the task protocol: every task of a run gets a distinct range
    // of the output, the parent does not touch the output while the run lasts
    // (`run` holds its `&mut`), and it waits for the tasks in flight before
    // it returns, even on failure. A retried task rewrites the same range.
    unsafe { a.slice_mut(r.clone()) }
}

/// The chunk's indices, the elements of the arrays (which start at index
/// `base`) that it covers, and the row length.
fn ranges_of(range: &Range<u64>, base: u64, row_len: u64) -> (Range<usize>, Range<usize>, usize) {
    let r = range.start as usize..range.end as usize;
    let row_len = row_len.max(1) as usize;
    let b = base as usize;
    let e = r.start.saturating_sub(b).saturating_mul(row_len)
        ..r.end.saturating_sub(b).saturating_mul(row_len);
    (r, e, row_len)
}

/// Worker side of a zero-copy chunk of kernel type `K`.
pub(super) fn shared_task<K: Kernel + DeserializeOwned>(t: SharedTask) -> ChunkResult {
    let k: K = kernel_of(&t.kernel)?;
    if t.range.start < t.base {
        return Err(format!(
            "chunk {:?} starts before the arrays (index {})",
            t.range, t.base
        ));
    }
    let (r, e, row_len) = ranges_of(&t.range, t.base, t.row_len);
    let x = attach(&t.x, &e)?;
    let y = attach(&t.y, &e)?;
    let out = attach(&t.out, &e)?;
    let src = match (&x, t.iota) {
        (None, Some(d)) => Src::Iota(d),
        _ => Src::Slices(
            x.as_ref().map(|a| chunk_of(a, &e)),
            y.as_ref().map(|a| chunk_of(a, &e)),
        ),
    };
    if k.signature().kind == Kind::Reduce {
        let dtype = k.output_dtype(src.dtype());
        let mut acc = Values::zeros(dtype, k.acc_len(&t.params));
        run_one(&k, &t.params, r, row_len, src, Some(acc.as_slice_mut()))
            .map_err(|e| e.to_string())?;
        return Ok(Done {
            index: t.index,
            data: Some(acc),
            checksum: 0,
        });
    }
    let output = out.as_ref().map(|o| chunk_of_mut(o, &e));
    let sum = run_one(&k, &t.params, r, row_len, src, output).map_err(|e| e.to_string())?;
    Ok(Done {
        index: t.index,
        data: None,
        checksum: sum,
    })
}

/// Worker side of a copying chunk of kernel type `K`.
fn copy_task<K: Kernel + DeserializeOwned>(t: CopyTask) -> ChunkResult {
    let k: K = kernel_of(&t.kernel)?;
    let (r, _, row_len) = ranges_of(&t.range, 0, t.row_len);
    let e = 0..r.len() * row_len;
    let src = match (&t.x, t.iota) {
        (None, Some(d)) => Src::Iota(d),
        _ => Src::Slices(
            t.x.as_ref().map(Values::as_slice),
            t.y.as_ref().map(Values::as_slice),
        ),
    };
    let reduce = k.signature().kind == Kind::Reduce;
    if !reduce && !t.want_data {
        let sum = run_one(&k, &t.params, r, row_len, src, None).map_err(|e| e.to_string())?;
        return Ok(Done {
            index: t.index,
            data: None,
            checksum: sum,
        });
    }
    let mut out = match t.out {
        Some(v) => v,
        None if reduce => Values::zeros(t.out_dtype, k.acc_len(&t.params)),
        None => Values::zeros(t.out_dtype, e.len()),
    };
    let sum = run_one(&k, &t.params, r, row_len, src, Some(out.as_slice_mut()))
        .map_err(|e| e.to_string())?;
    Ok(Done {
        index: t.index,
        data: Some(out),
        checksum: sum,
    })
}

// ---- the parent's side ------------------------------------------------------

/// An input or output of a run as workers reach it: the caller's own bytes
/// (located in a [`SharedValues`], borrowed for the run), or a temporary copy
/// (which `run` copies back for outputs).
struct Shared {
    view: AnyView,
    temp: bool,
}

fn share(s: Slice<'_>, writable: bool) -> shmproc::Result<Shared> {
    if let Some(view) = locate(s, writable) {
        return Ok(Shared { view, temp: false });
    }
    Ok(Shared {
        view: AnyView::from_slice(s)?,
        temp: true,
    })
}

/// The process backends' entry for kernel type `K` (recorded by
/// [`KernelRef::new`]).
pub(super) fn run_processes_of<K: Kernel + DeserializeOwned>(
    job: &Job<'_>,
    output: Option<SliceMut<'_>>,
    opts: &RunOptions<'_>,
    mode: ProcessMode,
) -> Result<ChunkResults, RunError> {
    run_processes(job, output, opts, mode, shared_task::<K>, copy_task::<K>)
}

/// Runs `job` on worker processes (see the module docs). `super::run` has
/// validated the job and the output shape. `output` is `None` for a map kernel
/// run for its checksum only, and for a reduction. Returns what each chunk
/// computed.
fn run_processes<FS, FC>(
    job: &Job<'_>,
    mut output: Option<SliceMut<'_>>,
    opts: &RunOptions<'_>,
    mode: ProcessMode,
    shared_fn: FS,
    copy_fn: FC,
) -> Result<ChunkResults, RunError>
where
    FS: Fn(SharedTask) -> ChunkResult + Copy + Send + 'static,
    FC: Fn(CopyTask) -> ChunkResult + Copy + Send + 'static,
{
    let kr: &KernelRef = job.kernel;
    let k = kr.kernel();
    let reduce = k.signature().kind == Kind::Reduce;
    let in_place = k.signature().kind == Kind::InPlace;
    let ranges: Vec<Range<usize>> = job.ranges(job_chunk(job, opts));
    let row_len = job.row_len;
    let elems = |r: &Range<usize>| job.local(r);
    let acc_len = k.acc_len(&job.params);
    let out_dtype = k.output_dtype(job.input_dtype());
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
    let mut on_result = |item: shmproc::Result<ChunkResult>, output: Option<&mut SliceMut<'_>>| {
        let mut fail = |e: RunError| {
            stop.set(true);
            first_err.get_or_insert(e);
        };
        let done = match item {
            Ok(Ok(d)) => d,
            Ok(Err(msg)) => return fail(RunError::Worker(msg)),
            Err(e) => return fail(RunError::Pool(e)),
        };
        let i = done.index as usize;
        let Some(range) = ranges.get(i).cloned() else {
            return fail(RunError::Worker(format!("unknown chunk {i}")));
        };
        match (done.data, output) {
            (Some(v), _) if reduce => partials[i] = Some(v),
            (Some(v), Some(output)) => {
                if let Err(e) = output
                    .reborrow()
                    .into_range(elems(&range))
                    .copy_from(v.as_slice())
                {
                    return fail(RunError::Worker(format!(
                        "chunk {i} came back with the wrong shape: {e}"
                    )));
                }
            }
            (Some(_), None) => {
                return fail(RunError::Worker(format!(
                    "chunk {i} came back with data nobody asked for"
                )))
            }
            (None, _) => {}
        }
        sums[i] = Some(done.checksum);
        if let Some(progress) = opts.progress {
            progress(range.len());
        }
        if is_interrupted() {
            fail(RunError::Interrupted);
        }
    };
    let live = || !stop.get();
    match mode {
        ProcessMode::Shared => {
            let xa = job.x.map(|x| share(x, false)).transpose()?;
            let ya = job.y.map(|y| share(y, false)).transpose()?;
            let out_arr = match &output {
                Some(o) if !reduce => Some(share(o.as_slice(), true)?),
                _ => None,
            };
            let handle = |a: &Option<Shared>| a.as_ref().map(|a| a.view.handle());
            let (x, y, out_h) = (handle(&xa), handle(&ya), handle(&out_arr));
            let tasks = ranges
                .iter()
                .enumerate()
                .take_while(|_| live())
                .map(|(i, r)| SharedTask {
                    kernel: kr.wire().to_vec(),
                    params: job.params.clone(),
                    index: i as u64,
                    range: r.start as u64..r.end as u64,
                    base: job.first as u64,
                    row_len: row_len as u64,
                    x: x.clone(),
                    y: y.clone(),
                    iota: job.iota,
                    out: out_h.clone(),
                });
            for item in pool
                .imap_unordered(shared_fn, tasks)
                .window(in_flight(opts.workers))
            {
                on_result(item, output.as_mut());
            }
            if let (Some(tmp), Some(output)) = (&out_arr, output.as_mut()) {
                if tmp.temp {
                    // SAFETY: no task runs any more (the imap is drained), and
                    // the temporary copy is ours alone.
                    let copied = unsafe { tmp.view.slice(0..tmp.view.len()) };
                    output.copy_from(copied).map_err(RunError::Invalid)?;
                }
            }
        }
        ProcessMode::Copy => {
            // The task iterator reads in-place operands from the output while
            // results are written into it: both run on this thread, in turn
            // (the pool pulls a task only inside `next`).
            let want_data = output.is_some() && !reduce;
            let out_cell = RefCell::new(output);
            let tasks = ranges
                .iter()
                .enumerate()
                .take_while(|_| live())
                .map(|(i, r)| CopyTask {
                    kernel: kr.wire().to_vec(),
                    params: job.params.clone(),
                    index: i as u64,
                    range: r.start as u64..r.end as u64,
                    row_len: row_len as u64,
                    x: job.x.map(|x| x.slice(elems(r)).to_values()),
                    y: job.y.map(|y| y.slice(elems(r)).to_values()),
                    iota: job.iota,
                    out: match &*out_cell.borrow() {
                        Some(o) if in_place => Some(o.as_slice().slice(elems(r)).to_values()),
                        _ => None,
                    },
                    out_dtype,
                    want_data,
                });
            for item in pool
                .imap_unordered(copy_fn, tasks)
                .window(in_flight(opts.workers))
            {
                on_result(item, out_cell.borrow_mut().as_mut());
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    let mut checksums = Vec::with_capacity(sums.len());
    for s in &sums {
        let Some(s) = s else {
            return Err(RunError::Worker("a chunk result is missing".into()));
        };
        checksums.push(*s);
    }
    if !reduce {
        return Ok(ChunkResults {
            checksums,
            partials: None,
        });
    }
    let mut all = Values::zeros(out_dtype, acc_len * partials.len());
    let mut rest = all.as_slice_mut();
    for p in &partials {
        let Some(p) = p else {
            return Err(RunError::Worker("a chunk result is missing".into()));
        };
        if p.len() != acc_len || p.dtype() != out_dtype {
            return Err(RunError::Worker(
                "a partial accumulator has the wrong length or type".into(),
            ));
        }
        let (mut mine, later) = rest.split_at(acc_len);
        mine.copy_from(p.as_slice()).map_err(RunError::Invalid)?;
        rest = later;
    }
    Ok(ChunkResults {
        checksums,
        partials: Some(all),
    })
}
