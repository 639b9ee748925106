//! One chunk of a run, the same code on every backend (threads, rayon and
//! worker processes): its input is the chunk's sub-slices of the job's arrays
//! or is generated (`0..n`, see [`Job::iota`](super::Job::iota)); a map
//! kernel's output goes into the chunk's output sub-slice or, when nobody
//! needs the elements, into a small per-thread scratch buffer; either way the
//! chunk returns the wrapping checksum of what it computed.
//!
//! Map chunks run through scratch in pieces of about [`PIECE`] elements
//! (whole rows for a row kernel), so the scratch stays small and in cache;
//! map kernels are element-wise or row-wise, so the pieces compute exactly
//! what one call over the whole chunk would. Reductions are not cut (a
//! floating-point partial depends on how its chunk was cut): with a
//! generated input the whole chunk's input is generated into scratch.

use shmproc_kernels::{
    iota, run_chunk, Chunk, Dtype, Kernel, KernelError, Kind, Params, Slice, SliceMut, Values,
};
use std::cell::RefCell;
use std::ops::Range;

/// Elements per piece of a map chunk (64 KiB of 8-byte input and output).
pub(super) const PIECE: usize = 8 * 1024;

/// A chunk's input.
#[derive(Debug, Clone, Copy)]
pub(super) enum Src<'i> {
    /// The chunk's sub-slices of the job's arrays (`None`: a generated
    /// kernel, no input).
    Slices(Option<Slice<'i>>, Option<Slice<'i>>),
    /// The chunk's element indices themselves, as elements of this type (both
    /// operands of a two-input kernel).
    Iota(Dtype),
}

impl Src<'_> {
    /// Element type of the input (`None` for generated kernels).
    pub(super) fn dtype(&self) -> Option<Dtype> {
        match self {
            Src::Slices(x, _) => x.map(|x| x.dtype()),
            Src::Iota(d) => Some(*d),
        }
    }
}

/// Per-thread buffers, reused across chunks and runs.
struct Scratch {
    input: Values,
    output: Values,
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch {
            input: Values::U64(Vec::new()),
            output: Values::U64(Vec::new()),
        }
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with(|s| match s.try_borrow_mut() {
        Ok(mut s) => f(&mut s),
        // Not reached (a chunk does not run another chunk on its thread);
        // a fresh buffer keeps it correct anyway.
        Err(_) => f(&mut Scratch::default()),
    })
}

/// `buf` as at least `len` elements of `dtype` (reallocated when the type
/// changes or it is too short).
fn sized(buf: &mut Values, dtype: Dtype, len: usize) -> SliceMut<'_> {
    if buf.dtype() != dtype || buf.len() < len {
        *buf = Values::zeros(dtype, len.max(buf.len()));
    }
    buf.as_slice_mut().into_range(0..len)
}

/// Elements `r` of the generated input `0, 1, 2, ...` as `dtype` values
/// (`bool`: index `i` is true when odd).
fn iota_into(buf: &mut Values, dtype: Dtype, r: Range<usize>) -> Slice<'_> {
    let mut s = sized(buf, dtype, r.len());
    match s.reborrow() {
        SliceMut::Bool(x) => {
            for (v, i) in x.iter_mut().zip(r.start..) {
                *v = (i & 1) as u8;
            }
        }
        SliceMut::I8(x) => iota(x, r.start as u64),
        SliceMut::I16(x) => iota(x, r.start as u64),
        SliceMut::I32(x) => iota(x, r.start as u64),
        SliceMut::I64(x) => iota(x, r.start as u64),
        SliceMut::U8(x) => iota(x, r.start as u64),
        SliceMut::U16(x) => iota(x, r.start as u64),
        SliceMut::U32(x) => iota(x, r.start as u64),
        SliceMut::U64(x) => iota(x, r.start as u64),
        SliceMut::F32(x) => iota(x, r.start as u64),
        SliceMut::F64(x) => iota(x, r.start as u64),
    }
    buf.as_slice().slice(0..r.len())
}

/// The chunk's inputs from `src` for the element range `elems` of the run
/// (`local`: the same range relative to the chunk's sub-slices).
fn inputs<'a>(
    kernel: &dyn Kernel,
    src: Src<'a>,
    buf: &'a mut Values,
    elems: Range<usize>,
    local: Range<usize>,
) -> (Option<Slice<'a>>, Option<Slice<'a>>) {
    match src {
        Src::Slices(x, y) => (x.map(|x| x.slice(local.clone())), y.map(|y| y.slice(local))),
        Src::Iota(d) => {
            let x = iota_into(buf, d, elems);
            (Some(x), (kernel.signature().inputs == 2).then_some(x))
        }
    }
}

/// Runs `kernel` on the chunk `range` (of the index space: elements, or rows
/// of `row_len` elements): input from `src` (sub-slices of the chunk's
/// elements, or generated), output into `out`: the chunk's output sub-slice
/// for a map kernel (`None`: scratch, the elements are only checksummed; an
/// in-place kernel then starts from zeros), the chunk's partial accumulator
/// for a reduction (required). Returns the wrapping checksum of the chunk's
/// map outputs (0 for a reduction).
///
/// # Errors
/// As [`run_chunk`]; nothing is written when an error is returned.
pub(super) fn run_one(
    kernel: &dyn Kernel,
    params: &Params,
    range: Range<usize>,
    row_len: usize,
    src: Src<'_>,
    out: Option<SliceMut<'_>>,
) -> Result<u64, KernelError> {
    let sig = kernel.signature();
    let elem = |r: &Range<usize>| r.start * row_len..r.end * row_len;
    if sig.kind == Kind::Reduce {
        let Some(acc) = out else {
            return Err(KernelError::LengthMismatch {
                kernel: kernel.name(),
                what: "accumulator",
                expected: kernel.acc_len(params),
                found: 0,
            });
        };
        let elems = elem(&range);
        return with_scratch(|s| {
            let (x, y) = inputs(kernel, src, &mut s.input, elems.clone(), 0..elems.len());
            run_chunk(
                kernel,
                params,
                Chunk {
                    range,
                    row_len,
                    x,
                    y,
                    out: acc,
                },
            )
            .map(|()| 0)
        });
    }
    let mut out = out;
    // Errors that only a later piece would meet are checked before the first
    // piece writes anything; `run_chunk` checks the rest on every piece.
    kernel.check(params)?;
    if range.start > range.end || range.end > kernel.max_len(params) {
        return Err(KernelError::RangeTooLarge {
            kernel: kernel.name(),
            end: range.end,
            limit: kernel.max_len(params),
        });
    }
    let len = range.len() * row_len;
    let length = |what, found| KernelError::LengthMismatch {
        kernel: kernel.name(),
        what,
        expected: len,
        found,
    };
    if let Src::Slices(x, y) = src {
        for (what, s) in [("input", x), ("second input", y)] {
            match s {
                Some(s) if s.len() != len => return Err(length(what, s.len())),
                _ => {}
            }
        }
    }
    if let Some(o) = &out {
        if o.len() != len {
            return Err(length("output", o.len()));
        }
    }
    let out_dtype = kernel.output_dtype(src.dtype());
    let rows_per_piece = (PIECE / row_len.max(1)).max(1);
    with_scratch(|s| {
        let Scratch {
            input: in_buf,
            output: out_buf,
        } = s;
        let mut sum = 0u64;
        let mut start = range.start;
        // One empty piece for an empty chunk, so that it is checked too.
        loop {
            let end = start.saturating_add(rows_per_piece).min(range.end);
            let piece = start..end;
            let local = elem(&(start - range.start..end - range.start));
            let (x, y) = inputs(kernel, src, in_buf, elem(&piece), local.clone());
            let mut o = match &mut out {
                Some(o) => o.reborrow().into_range(local),
                None => {
                    let mut o = sized(out_buf, out_dtype, elem(&piece).len());
                    if sig.kind == Kind::InPlace {
                        o.fill_zero();
                    }
                    o
                }
            };
            run_chunk(
                kernel,
                params,
                Chunk {
                    range: piece,
                    row_len,
                    x,
                    y,
                    out: o.reborrow(),
                },
            )?;
            sum = sum.wrapping_add(o.as_slice().checksum());
            start = end;
            if start >= range.end {
                return Ok(sum);
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use shmproc_kernels::{Mandelbrot, NormalizeRows, Power, Saxpy};

    #[test]
    fn pieces_compute_what_one_call_computes() {
        let n = 3 * PIECE + 17;
        let kernels: [(&dyn Kernel, Dtype); 5] = [
            (&Power, Dtype::U64),
            (&Power, Dtype::F64),
            (&Power, Dtype::I8),
            (&Saxpy, Dtype::F64),
            (&Saxpy, Dtype::F32),
        ];
        for (k, dtype) in kernels {
            let params = Params::defaults(k.params());
            let mut xs = Values::zeros(dtype, 0);
            let xs = iota_into(&mut xs, dtype, 5..n + 5).to_values();
            let mut want = Values::zeros(dtype, n);
            run_chunk(
                k,
                &params,
                Chunk::map(5..n + 5, xs.as_slice(), want.as_slice_mut()),
            )
            .unwrap();
            let want_sum = want.as_slice().checksum();
            // Slices in, slices out.
            let mut got = Values::zeros(dtype, n);
            let s = run_one(
                k,
                &params,
                5..n + 5,
                1,
                Src::Slices(Some(xs.as_slice()), None),
                Some(got.as_slice_mut()),
            )
            .unwrap();
            assert_eq!((&got, s), (&want, want_sum), "{} {dtype}", k.name());
            // Generated in, scratch out.
            let s = run_one(k, &params, 5..n + 5, 1, Src::Iota(dtype), None).unwrap();
            assert_eq!(s, want_sum, "{} {dtype} iota", k.name());
        }
        let params = Params::defaults(Mandelbrot.params())
            .with("width", 300)
            .with("height", 100)
            .with("max_iter", 50);
        let mut want = Values::zeros(Dtype::U64, 30_000 - 100);
        run_chunk(
            &Mandelbrot,
            &params,
            Chunk::generated(100..30_000, want.as_slice_mut()),
        )
        .unwrap();
        let s = run_one(
            &Mandelbrot,
            &params,
            100..30_000,
            1,
            Src::Slices(None, None),
            None,
        )
        .unwrap();
        assert_eq!(s, want.as_slice().checksum());
    }

    #[test]
    fn row_kernels_get_whole_rows_in_every_piece() {
        // Rows longer than a piece, and rows that do not divide it.
        for row_len in [PIECE + 3, 1000, 1] {
            let rows = 2 * PIECE / row_len + 3;
            let xs: Vec<f64> = (0..rows * row_len).map(|i| (i % 7) as f64 - 3.0).collect();
            let mut want = vec![0.0; xs.len()];
            shmproc_kernels::normalize_rows(&xs, &mut want, row_len);
            let mut got = vec![0.0; xs.len()];
            run_one(
                &NormalizeRows,
                &Params::new(),
                0..rows,
                row_len,
                Src::Slices(Some(Slice::F64(&xs)), None),
                Some(SliceMut::F64(&mut got)),
            )
            .unwrap();
            assert_eq!(got, want, "row_len {row_len}");
        }
    }

    #[test]
    fn errors_come_before_any_write() {
        let params = Params::defaults(Mandelbrot.params())
            .with("width", 100)
            .with("height", 200);
        let mut out = vec![7u64; 20_001];
        let e = run_one(
            &Mandelbrot,
            &params,
            0..20_001,
            1,
            Src::Slices(None, None),
            Some(SliceMut::U64(&mut out)),
        )
        .unwrap_err();
        assert!(matches!(e, KernelError::RangeTooLarge { .. }), "{e}");
        assert!(out.iter().all(|&x| x == 7));
        let p = Params::defaults(Power.params());
        let e = run_one(
            &Power,
            &p,
            0..PIECE * 2,
            1,
            Src::Slices(Some(Slice::U64(&[1; PIECE * 2])), None),
            Some(SliceMut::U64(&mut out[..PIECE * 2 - 1])),
        )
        .unwrap_err();
        assert!(matches!(e, KernelError::LengthMismatch { .. }), "{e}");
        assert!(out.iter().all(|&x| x == 7));
        // An empty chunk is still checked.
        assert_eq!(
            run_one(&Power, &p, 0..0, 1, Src::Iota(Dtype::U64), None),
            Ok(0)
        );
        let e = run_one(
            &Power,
            &p,
            0..0,
            1,
            Src::Iota(Dtype::U64),
            Some(SliceMut::F64(&mut [])),
        );
        assert!(e.is_err());
    }
}
