//! Zero-copy chunk maps: a task names a kernel, two shared arrays and a range;
//! the worker attaches the arrays (once, then from a cache) and calls the
//! kernel on `&[T]` / `&mut [U]` for its chunk. No element crosses a pipe.

use std::ops::Range;

use bytemuck::Pod;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::process::task::{catch_task_panic, conjure, TaskFailure};
use crate::segment::{ArrayHandle, RawArray, Segment};

/// Attaches the array `h` names through the worker's mapping cache (also
/// used by `crate::backend`'s process tasks). Worker side only: the parent
/// sent `h` for a chunk of a map that borrows the array for the whole call.
pub(crate) fn attach<T: Pod>(h: &ArrayHandle) -> Result<RawArray<T>> {
    let seg = Segment::open_cached(&h.segment)?;
    RawArray::attach_in(seg, h)
}

/// Arguments of one chunk task.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ChunkArgs<P> {
    pub(crate) input: ArrayHandle,
    pub(crate) output: Option<ArrayHandle>,
    pub(crate) range: Range<u64>,
    pub(crate) params: P,
}

type Answer = std::result::Result<Vec<u8>, TaskFailure>;

fn range_of(r: &Range<u64>, len: usize) -> std::result::Result<Range<usize>, TaskFailure> {
    let (s, e) = (r.start as usize, r.end as usize);
    if s > e || e > len {
        return Err(TaskFailure::Codec(format!(
            "chunk {r:?} out of bounds for {len} elements"
        )));
    }
    Ok(s..e)
}

/// Runs a kernel on the chunk starting at element `start`; a panic names it.
fn run_guarded<R>(start: usize, f: impl FnOnce() -> R) -> std::result::Result<R, TaskFailure> {
    catch_task_panic(f).map_err(|mut p| {
        p.item = Some(start as u64);
        TaskFailure::Panic(p)
    })
}

fn decode_args<P: DeserializeOwned>(
    bytes: &[u8],
) -> std::result::Result<ChunkArgs<P>, TaskFailure> {
    postcard::from_bytes(bytes).map_err(|e| TaskFailure::codec("decoding chunk arguments", e))
}

fn attach_err<T: Pod>(h: &ArrayHandle) -> std::result::Result<RawArray<T>, TaskFailure> {
    attach::<T>(h).map_err(|e| TaskFailure::Codec(format!("attaching a shared array: {e}")))
}

/// Trampoline of `map_slices`: `kernel(&input[chunk], &mut output[chunk], &params)`.
pub(crate) fn map_trampoline<F, T, U, P>(bytes: &[u8]) -> Answer
where
    F: Fn(&[T], &mut [U], &P) + Copy + 'static,
    T: Pod,
    U: Pod,
    P: DeserializeOwned,
{
    let a: ChunkArgs<P> = decode_args(bytes)?;
    let out_h = a
        .output
        .as_ref()
        .ok_or_else(|| TaskFailure::Codec("chunk task without an output array".into()))?;
    let input = attach_err::<T>(&a.input)?;
    let output = attach_err::<U>(out_h)?;
    let r = range_of(&a.range, input.len().min(output.len()))?;
    input.prefault(r.clone(), false);
    output.prefault(r.clone(), true);
    let f = conjure::<F>();
    run_guarded(r.start, || {
        // SAFETY: the parent's `map_slices` borrows the input shared and the
        // output exclusively (`&SharedArray`, `&mut SharedArray`: owned
        // arrays, of which no view or handle exists elsewhere) until every
        // chunk is finished or its worker dead, and hands out disjoint chunk
        // ranges of the output, which cannot overlap the input (two owned
        // arrays never share bytes). So nobody writes `src` and nobody else
        // touches `dst` while this task runs.
        let (src, dst) = unsafe {
            (
                &input.slice()[r.clone()],
                &mut output.slice_mut()[r.clone()],
            )
        };
        f(src, dst, &a.params)
    })?;
    Ok(Vec::new())
}

/// Trampoline of `map_slices_in_place`: `kernel(&mut data[chunk], &params)`.
pub(crate) fn in_place_trampoline<F, T, P>(bytes: &[u8]) -> Answer
where
    F: Fn(&mut [T], &P) + Copy + 'static,
    T: Pod,
    P: DeserializeOwned,
{
    let a: ChunkArgs<P> = decode_args(bytes)?;
    let data = attach_err::<T>(&a.input)?;
    let r = range_of(&a.range, data.len())?;
    data.prefault(r.clone(), true);
    let f = conjure::<F>();
    run_guarded(r.start, || {
        // SAFETY: `map_slices_in_place` borrows the array exclusively for the
        // whole call and chunk ranges are disjoint (see map_trampoline).
        let chunk = unsafe { &mut data.slice_mut()[r.clone()] };
        f(chunk, &a.params)
    })?;
    Ok(Vec::new())
}

/// Trampoline of `reduce_slices`: `kernel(&input[chunk], chunk_start, &params) -> R`.
pub(crate) fn reduce_trampoline<F, T, P, R>(bytes: &[u8]) -> Answer
where
    F: Fn(&[T], usize, &P) -> R + Copy + 'static,
    T: Pod,
    P: DeserializeOwned,
    R: Serialize,
{
    let a: ChunkArgs<P> = decode_args(bytes)?;
    let input = attach_err::<T>(&a.input)?;
    let r = range_of(&a.range, input.len())?;
    input.prefault(r.clone(), false);
    let f = conjure::<F>();
    let out = run_guarded(r.start, || {
        // SAFETY: `reduce_slices` borrows the owned input shared for the whole
        // call: nobody writes it meanwhile.
        let src = unsafe { &input.slice()[r.clone()] };
        f(src, r.start, &a.params)
    })?;
    postcard::to_stdvec(&out).map_err(|e| TaskFailure::codec("encoding result", e))
}

/// Splits `len` items into chunks of `chunk` (or about 4 per worker).
pub(crate) fn chunk_ranges(len: usize, chunk: Option<usize>, workers: usize) -> Vec<Range<u64>> {
    let size = match chunk {
        Some(c) => c.max(1),
        None => len.div_ceil(4 * workers.max(1)).max(1),
    };
    (0..len)
        .step_by(size)
        .map(|s| s as u64..(s + size).min(len) as u64)
        .collect()
}
