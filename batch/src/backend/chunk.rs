//! One chunk of a run, the same code on every backend (threads, rayon and
//! worker processes): its input is the chunk's sub-slices of the job's arrays
//! or is generated (`0..n`, see [`Job::iota`](super::Job::iota)); a map
//! kernel's output goes into the chunk's output sub-slice or, when nobody
//! needs the elements, into a small per-thread scratch buffer; either way the
//! chunk returns the wrapping checksum of what it computed.
//!
//! Map chunks run through scratch in pieces of [`PIECE`] indices, so the
//! scratch stays small and in cache; map kernels are elementwise (one output
//! per index, a function of the index and its input element), so the pieces
//! compute exactly what one call over the whole chunk would. Reductions are
//! not cut (a floating-point partial depends on how its chunk was cut): with
//! a generated input the whole chunk's input is generated into scratch.

use super::checksum;
use crate::kernels::{
    run_chunk, Dtype, Input, InputKind, KernelError, KernelInfo, Output, OutputKind, Params,
};
use std::cell::RefCell;
use std::ops::Range;

/// Indices per piece of a map chunk (64 KiB of input and of output scratch).
const PIECE: usize = 8 * 1024;

/// A chunk's input.
#[derive(Debug, Clone, Copy)]
pub(super) enum Src<'i> {
    /// The chunk's sub-slices of the job's arrays, or [`Input::Generated`]
    /// for kernels that generate their own input.
    Slices(Input<'i>),
    /// The chunk's indices themselves, as elements of this type.
    Iota(Dtype),
}

impl Src<'_> {
    /// Element type of the input (`None` for generated kernels).
    pub(super) fn dtype(&self) -> Option<Dtype> {
        match self {
            Src::Slices(i) => i.dtype(),
            Src::Iota(d) => Some(*d),
        }
    }
}

/// Per-thread buffers, reused across chunks and runs. `f64` elements live in
/// the same `u64` words (`bytemuck` casts; both are 8-byte `Pod`).
#[derive(Default)]
struct Scratch {
    input: Vec<u64>,
    output: Vec<u64>,
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

/// `r` as `dtype` elements in the first `r.len()` words of `buf`.
fn iota_into(buf: &mut Vec<u64>, dtype: Dtype, r: Range<usize>) -> &[u64] {
    let len = r.len();
    if buf.len() < len {
        buf.resize(len, 0);
    }
    let words = &mut buf[..len];
    match dtype {
        Dtype::U64 => {
            for (x, i) in words.iter_mut().zip(r.start as u64..) {
                *x = i;
            }
        }
        Dtype::F64 => {
            let xs: &mut [f64] = bytemuck::cast_slice_mut(words);
            for (x, i) in xs.iter_mut().zip(r) {
                *x = i as f64;
            }
        }
    }
    words
}

/// The kernel's input over generated `words` of type `dtype` (both operands
/// of a pair kernel, as `shmproc run dot --n` without `--input2`).
fn iota_input<'a>(info: &KernelInfo, dtype: Dtype, words: &'a [u64]) -> Input<'a> {
    match dtype {
        Dtype::U64 => Input::U64(words),
        Dtype::F64 => {
            let xs: &[f64] = bytemuck::cast_slice(words);
            if info.input == InputKind::F64Pair {
                Input::F64Pair(xs, xs)
            } else {
                Input::F64(xs)
            }
        }
    }
}

/// `len` scratch elements of `dtype`, zeroed if `zero`.
fn scratch_output(buf: &mut Vec<u64>, dtype: Dtype, len: usize, zero: bool) -> Output<'_> {
    if buf.len() < len {
        buf.resize(len, 0);
    }
    let words = &mut buf[..len];
    if zero {
        // All-zero bits are 0.0 as well.
        words.fill(0);
    }
    match dtype {
        Dtype::U64 => Output::U64(words),
        Dtype::F64 => Output::F64(bytemuck::cast_slice_mut(words)),
    }
}

fn sub<'a>(o: &'a mut Output<'_>, r: Range<usize>) -> Output<'a> {
    match o {
        Output::U64(s) => Output::U64(&mut s[r]),
        Output::F64(s) => Output::F64(&mut s[r]),
    }
}

/// Runs `info` on the chunk `range`: input from `src` (sub-slices of length
/// `range.len()`, or generated), output into `out`: the chunk's output
/// sub-slice for a map kernel (`None`: scratch, the elements are only
/// checksummed; an in-place kernel then starts from zeros), the chunk's
/// partial accumulator for a reduction (required). Returns the wrapping
/// checksum of the chunk's map outputs (0 for a reduction).
///
/// # Errors
/// As [`run_chunk`]; nothing is written when an error is returned.
pub(super) fn run_one(
    info: &KernelInfo,
    params: &Params,
    range: Range<usize>,
    src: Src<'_>,
    out: Option<Output<'_>>,
) -> Result<u64, KernelError> {
    if info.is_reduction() {
        let Some(acc) = out else {
            return Err(KernelError::LengthMismatch {
                kernel: info.name,
                what: "accumulator",
                expected: info.acc_len(params),
                found: 0,
            });
        };
        return match src {
            Src::Slices(input) => run_chunk(info, params, range, input, acc).map(|()| 0),
            Src::Iota(dtype) => with_scratch(|s| {
                let words = iota_into(&mut s.input, dtype, range.clone());
                run_chunk(info, params, range, iota_input(info, dtype, words), acc).map(|()| 0)
            }),
        };
    }
    let mut out = out;
    // Errors that only a later piece would meet are checked before the first
    // piece writes anything; `run_chunk` checks the rest on every piece.
    let len = info.check_range(params, &range)?;
    let length = |what, found| KernelError::LengthMismatch {
        kernel: info.name,
        what,
        expected: len,
        found,
    };
    if let Src::Slices(input) = src {
        match input {
            Input::F64Pair(_, y) if y.len() != len => return Err(length("second input", y.len())),
            _ => {}
        }
        match input.len() {
            Some(n) if n != len => return Err(length("input", n)),
            _ => {}
        }
    }
    if let Some(o) = &out {
        if o.len() != len {
            return Err(length("output", o.len()));
        }
    }
    let out_dtype = info.output_dtype(src.dtype())?;
    let in_place = matches!(info.output, OutputKind::Map { in_place: true, .. });
    with_scratch(|s| {
        let Scratch {
            input: in_buf,
            output: out_buf,
        } = s;
        let mut sum = 0u64;
        let mut start = range.start;
        // One empty piece for an empty chunk, so that it is checked too.
        loop {
            let end = start.saturating_add(PIECE).min(range.end);
            let local = start - range.start..end - range.start;
            let input = match src {
                Src::Slices(i) => i.slice(local.clone()),
                Src::Iota(d) => iota_input(info, d, iota_into(in_buf, d, start..end)),
            };
            let mut piece = match &mut out {
                Some(o) => sub(o, local),
                None => scratch_output(out_buf, out_dtype, end - start, in_place),
            };
            run_chunk(info, params, start..end, input, piece.reborrow())?;
            sum = sum.wrapping_add(checksum(piece.as_acc()));
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
    use crate::kernels::{find, Values};

    #[test]
    fn pieces_compute_what_one_call_computes() {
        let params = Params {
            width: 300,
            height: 100,
            max_iter: 50,
            ..Params::default()
        };
        let n = 3 * PIECE + 17;
        for (name, dtype) in [
            ("power", Dtype::U64),
            ("power", Dtype::F64),
            ("saxpy", Dtype::F64),
        ] {
            let k = find(name).unwrap();
            let xs = match dtype {
                Dtype::U64 => Values::U64((5..n as u64 + 5).collect()),
                Dtype::F64 => Values::F64((5..n + 5).map(|i| i as f64).collect()),
            };
            let mut want = Values::zeros(dtype, n);
            run_chunk(k, &params, 5..n + 5, xs.as_input(), want.as_output()).unwrap();
            let want_sum = checksum(want.as_acc());
            // Slices in, slices out.
            let mut got = Values::zeros(dtype, n);
            let s = run_one(
                k,
                &params,
                5..n + 5,
                Src::Slices(xs.as_input()),
                Some(got.as_output()),
            )
            .unwrap();
            assert_eq!((&got, s), (&want, want_sum), "{name} {dtype}");
            // Generated in, scratch out.
            let s = run_one(k, &params, 5..n + 5, Src::Iota(dtype), None).unwrap();
            assert_eq!(s, want_sum, "{name} {dtype} iota");
            // Generated in, slices out.
            let mut got = Values::zeros(dtype, n);
            let s = run_one(
                k,
                &params,
                5..n + 5,
                Src::Iota(dtype),
                Some(got.as_output()),
            )
            .unwrap();
            assert_eq!(
                (&got, s),
                (&want, want_sum),
                "{name} {dtype} iota to slices"
            );
        }
        let mb = find("mandelbrot").unwrap();
        let mut want = Values::zeros(Dtype::U64, 30_000 - 100);
        run_chunk(mb, &params, 100..30_000, Input::Generated, want.as_output()).unwrap();
        let s = run_one(
            mb,
            &params,
            100..30_000,
            Src::Slices(Input::Generated),
            None,
        )
        .unwrap();
        assert_eq!(s, checksum(want.as_acc()));
    }

    #[test]
    fn errors_come_before_any_write() {
        let mb = find("mandelbrot").unwrap();
        let params = Params {
            width: 100,
            height: 200,
            ..Params::default()
        };
        let mut out = vec![7u64; 20_001];
        let e = run_one(
            mb,
            &params,
            0..20_001,
            Src::Slices(Input::Generated),
            Some(Output::U64(&mut out)),
        )
        .unwrap_err();
        assert!(matches!(e, KernelError::RangeTooLarge { .. }), "{e}");
        assert!(out.iter().all(|&x| x == 7));
        let power = find("power").unwrap();
        let e = run_one(
            power,
            &Params::default(),
            0..PIECE * 2,
            Src::Slices(Input::U64(&[1; PIECE * 2])),
            Some(Output::U64(&mut out[..PIECE * 2 - 1])),
        )
        .unwrap_err();
        assert!(matches!(e, KernelError::LengthMismatch { .. }), "{e}");
        assert!(out.iter().all(|&x| x == 7));
        let sum = find("sum").unwrap();
        assert!(run_one(sum, &Params::default(), 0..3, Src::Iota(Dtype::F64), None).is_err());
        // An empty chunk is still checked.
        let e = run_one(power, &Params::default(), 0..0, Src::Iota(Dtype::U64), None);
        assert_eq!(e, Ok(0));
        let e = run_one(
            power,
            &Params::default(),
            0..0,
            Src::Iota(Dtype::U64),
            Some(Output::F64(&mut [])),
        );
        assert!(e.is_err());
    }

    #[test]
    fn generated_reductions_match_materialised_inputs() {
        let n = 3 * PIECE + 5;
        let xs: Vec<f64> = (0..n).map(|i| i as f64).collect();
        let p = Params {
            lo: 0.0,
            hi: n as f64,
            bins: 7,
            ..Params::default()
        };
        for (name, input) in [
            ("sum", Input::F64(&xs)),
            ("dot", Input::F64Pair(&xs, &xs)),
            ("histogram", Input::F64(&xs)),
        ] {
            let k = find(name).unwrap();
            let dtype = k.output_dtype(Some(Dtype::F64)).unwrap();
            let mut want = Values::zeros(dtype, k.acc_len(&p));
            run_chunk(k, &p, 0..n, input, want.as_output()).unwrap();
            let mut got = Values::zeros(dtype, k.acc_len(&p));
            let s = run_one(k, &p, 0..n, Src::Iota(Dtype::F64), Some(got.as_output()));
            assert_eq!((s, got), (Ok(0), want), "{name}");
        }
    }
}
