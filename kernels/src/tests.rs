//! The kernel API as a backend uses it: every built-in kernel over every
//! element type it takes, chunked against whole, literal references (the
//! values numpy gives, worked out by hand), what `run_chunk` refuses, and a
//! kernel written outside the built-ins.

use crate::rng::SplitMix64;
use crate::*;

/// `n` values of `dtype` from a seed: small signed and unsigned integers that
/// overflow under `power`, floats in [-2, 2), bools.
fn random(dtype: Dtype, n: usize, seed: u64) -> Values {
    let mut r = SplitMix64::new(seed);
    let mut v = Values::zeros(dtype, n);
    match v.as_slice_mut() {
        SliceMut::Bool(b) => b.iter_mut().for_each(|x| *x = (r.next_u64() & 1) as u8),
        out => fill(out, &mut r),
    }
    v
}

fn fill(out: SliceMut<'_>, r: &mut SplitMix64) {
    fn go<T: Num>(o: &mut [T], r: &mut SplitMix64, float: bool) {
        for x in o {
            *x = if float {
                T::from_f64(r.next_f64() * 4.0 - 2.0)
            } else {
                T::from_index(r.next_u64() % 1000)
            };
        }
    }
    let float = out.dtype().is_float();
    match out {
        SliceMut::I8(o) => go(o, r, float),
        SliceMut::I16(o) => go(o, r, float),
        SliceMut::I32(o) => go(o, r, float),
        SliceMut::I64(o) => go(o, r, float),
        SliceMut::U8(o) => go(o, r, float),
        SliceMut::U16(o) => go(o, r, float),
        SliceMut::U32(o) => go(o, r, float),
        SliceMut::U64(o) => go(o, r, float),
        SliceMut::F32(o) => go(o, r, float),
        SliceMut::F64(o) => go(o, r, float),
        SliceMut::Bool(_) => {}
    }
}

/// Runs `k` over indices `0..n` (rows of `row_len` elements for a row kernel) in the chunks
/// that `cuts` gives, the way a backend does: a map writes each chunk's part
/// of the output, an in-place kernel updates its part of `out`, a reduction
/// folds each chunk's partial accumulator with `combine` in index order.
fn run_in_chunks(
    k: &dyn Kernel,
    p: &Params,
    x: Option<Slice<'_>>,
    y: Option<Slice<'_>>,
    out: &mut Values,
    (n, row_len): (usize, usize),
    cuts: &[usize],
) -> Result<(), KernelError> {
    let sig = k.signature();
    let mut bounds = vec![0];
    bounds.extend(cuts.iter().copied().filter(|&c| c > 0 && c < n));
    bounds.push(n);
    bounds.dedup();
    let acc_len = k.acc_len(p);
    let out_dtype = out.dtype();
    for w in bounds.windows(2) {
        let range = w[0]..w[1];
        let elems = range.start * row_len..range.end * row_len;
        let xs = x.map(|s| s.slice(elems.clone()));
        let ys = y.map(|s| s.slice(elems.clone()));
        if sig.kind == Kind::Reduce {
            let mut partial = Values::zeros(out_dtype, acc_len);
            run_chunk(
                k,
                p,
                Chunk {
                    range,
                    row_len,
                    x: xs,
                    y: ys,
                    out: partial.as_slice_mut(),
                },
            )?;
            combine(k, out.as_slice_mut(), partial.as_slice())?;
        } else {
            let part = out.as_slice_mut().into_range(elems);
            run_chunk(
                k,
                p,
                Chunk {
                    range,
                    row_len,
                    x: xs,
                    y: ys,
                    out: part,
                },
            )?;
        }
    }
    Ok(())
}

/// The output (or accumulator) of `k` over inputs of `dtype`, run whole or
/// in chunks.
fn output(k: &dyn Kernel, p: &Params, dtype: Option<Dtype>, n: usize, cuts: &[usize]) -> Values {
    let sig = k.signature();
    let row_len = if sig.layout == Layout::Rows { 5 } else { 1 };
    let xs = dtype.map(|d| random(d, n * row_len, 1));
    let ys = dtype
        .filter(|_| sig.inputs == 2)
        .map(|d| random(d, n * row_len, 2));
    let out_dtype = k.output_dtype(dtype);
    let mut out = match sig.kind {
        Kind::Reduce => Values::zeros(out_dtype, k.acc_len(p)),
        Kind::InPlace => random(out_dtype, n * row_len, 3),
        Kind::Map => Values::zeros(out_dtype, n * row_len),
    };
    run_in_chunks(
        k,
        p,
        xs.as_ref().map(Values::as_slice),
        ys.as_ref().map(Values::as_slice),
        &mut out,
        (n, row_len),
        cuts,
    )
    .unwrap_or_else(|e| panic!("{} on {dtype:?}: {e}", k.name()));
    out
}

fn close(a: &Values, b: &Values) -> bool {
    match (a.as_slice(), b.as_slice()) {
        (Slice::F64(a), Slice::F64(b)) => a
            .iter()
            .zip(b)
            .all(|(x, y)| (x - y).abs() <= 1e-12 * x.abs().max(y.abs()).max(1.0)),
        (Slice::F32(a), Slice::F32(b)) => a
            .iter()
            .zip(b)
            .all(|(x, y)| (x - y).abs() <= 1e-6 * x.abs().max(y.abs()).max(1.0)),
        _ => a == b,
    }
}

#[test]
fn every_builtin_on_every_dtype_it_takes_gives_the_same_in_chunks_as_whole() {
    let mut runs = 0;
    for k in builtins() {
        let sig = k.signature();
        let mut p = Params::defaults(k.params());
        if k.name() == "mandelbrot" {
            p.set("width", 40).set("height", 25);
        }
        let n = k.natural_len(&p).unwrap_or(1000).min(k.max_len(&p));
        let dtypes: Vec<Option<Dtype>> = if sig.inputs == 0 {
            vec![None]
        } else {
            Dtype::ALL
                .iter()
                .copied()
                .filter(|&d| sig.accepts(d))
                .map(Some)
                .collect()
        };
        assert!(!dtypes.is_empty(), "{} takes no type", k.name());
        for d in dtypes {
            let whole = output(k, &p, d, n, &[]);
            for cuts in [&[1usize][..], &[7, 300, 301], &[n / 2], &[999]] {
                let chunked = output(k, &p, d, n, cuts);
                assert_eq!(whole.dtype(), chunked.dtype());
                assert!(
                    close(&whole, &chunked),
                    "{} on {d:?} in chunks {cuts:?} differs from the whole run",
                    k.name()
                );
                runs += 1;
            }
        }
    }
    assert!(runs >= 9 * 4, "{runs}");
}

#[test]
fn results_are_what_numpy_gives() {
    let pow = |times: u32| Params::defaults(Power.params()).with("times", times);
    // np.array([3, -2, 127], np.int8) squared 3 times: 3**8 = 6561 wraps to
    // -95, (-2)**8 = 256 wraps to 0, 127**8 wraps to 1.
    let mut out = [0i8; 3];
    run_chunk(
        &Power,
        &pow(3),
        Chunk::map(0..3, Slice::I8(&[3, -2, 127]), SliceMut::I8(&mut out)),
    )
    .unwrap();
    assert_eq!(out, [-95, 0, 1]);
    // np.array([3, 255], np.uint8) squared twice: 81 and 255**4 wraps to 1.
    let mut out = [0u8; 2];
    run_chunk(
        &Power,
        &pow(2),
        Chunk::map(0..2, Slice::U8(&[3, 255]), SliceMut::U8(&mut out)),
    )
    .unwrap();
    assert_eq!(out, [81, 1]);
    // Floats: 1.5**4 in f32.
    let mut out = [0f32; 1];
    run_chunk(
        &Power,
        &pow(2),
        Chunk::map(0..1, Slice::F32(&[1.5]), SliceMut::F32(&mut out)),
    )
    .unwrap();
    assert_eq!(out, [5.0625]);

    // Sums: u8 input, u64 accumulator (np.sum(a, dtype=np.uint64)); i8 into
    // i64; f32 into f64.
    let sum = |x: Slice<'_>, out: SliceMut<'_>| {
        let n = x.len();
        run_chunk(
            &Sum,
            &Params::new(),
            Chunk {
                range: 0..n,
                row_len: 1,
                x: Some(x),
                y: None,
                out,
            },
        )
        .unwrap()
    };
    let mut acc = [0u64];
    sum(Slice::U8(&[200, 100, 255]), SliceMut::U64(&mut acc));
    assert_eq!(acc, [555]);
    let mut acc = [0i64];
    sum(Slice::I8(&[-128, -128, 1]), SliceMut::I64(&mut acc));
    assert_eq!(acc, [-255]);
    let mut acc = [0f64];
    sum(Slice::F32(&[0.1, 0.2]), SliceMut::F64(&mut acc));
    assert_eq!(acc, [f64::from(0.1f32) + f64::from(0.2f32)]);
    // A compensated sum: 1e16 + 1 - 1e16 is 1 (numpy's pairwise sum gives 0).
    let mut acc = [0f64];
    sum(Slice::F64(&[1e16, 1.0, -1e16]), SliceMut::F64(&mut acc));
    assert_eq!(acc, [1.0]);

    // dot of i32 into i64: 2e9 * 2 does not wrap in the accumulator.
    let mut acc = [0i64];
    run_chunk(
        &Dot,
        &Params::new(),
        Chunk {
            range: 0..2,
            row_len: 1,
            x: Some(Slice::I32(&[2_000_000_000, 3])),
            y: Some(Slice::I32(&[2, -1])),
            out: SliceMut::I64(&mut acc),
        },
    )
    .unwrap();
    assert_eq!(acc, [3_999_999_997]);

    // Histogram: np.histogram([0, 0.5, 0.75, -1, nan], bins=2, range=(0, 1))
    // has counts [1, 2]; ours also counts one below, none above and one NaN.
    // (numpy closes its last bin at `hi`; ours are all half-open, so a value
    // equal to `hi` is counted above, as the docs of `histogram` say.)
    let p = Params::defaults(Histogram.params())
        .with("bins", 2)
        .with("lo", 0)
        .with("hi", 1);
    let mut acc = [0u64; 5];
    run_chunk(
        &Histogram,
        &p,
        Chunk {
            range: 0..5,
            row_len: 1,
            x: Some(Slice::F64(&[0.0, 0.5, 0.75, -1.0, f64::NAN])),
            y: None,
            out: SliceMut::U64(&mut acc),
        },
    )
    .unwrap();
    assert_eq!(&acc[..2], &[1, 2]);
    assert_eq!(acc[hist_under(2)], 1);
    assert_eq!(acc[hist_over(2)], 0);
    assert_eq!(acc[hist_nan(2)], 1);

    // normalize_rows on a (2, 2) f32 array: [3, 4] -> [0.6, 0.8], a zero
    // row stays zero.
    let mut out = [9f32; 4];
    run_chunk(
        &NormalizeRows,
        &Params::new(),
        Chunk {
            range: 0..2,
            row_len: 2,
            x: Some(Slice::F32(&[3.0, 4.0, 0.0, 0.0])),
            y: None,
            out: SliceMut::F32(&mut out),
        },
    )
    .unwrap();
    assert_eq!(out, [0.6, 0.8, 0.0, 0.0]);
}

#[test]
fn run_chunk_refuses_what_does_not_fit_the_signature_and_writes_nothing() {
    let p = Params::defaults(Power.params());
    let err = |r: Result<(), KernelError>| r.unwrap_err().to_string();
    // Another output type.
    let mut out = [7u32; 2];
    let e = err(run_chunk(
        &Power,
        &p,
        Chunk::map(0..2, Slice::U64(&[1, 2]), SliceMut::U32(&mut out)),
    ));
    assert!(
        e.contains("power") && e.contains("u64 output") && e.contains("u32"),
        "{e}"
    );
    assert_eq!(out, [7, 7]);
    // A type the kernel does not take.
    let mut out = [7u8; 2];
    let e = err(run_chunk(
        &Power,
        &p,
        Chunk::map(0..2, Slice::Bool(&[1, 0]), SliceMut::Bool(&mut out)),
    ));
    assert!(e.contains("not bool input"), "{e}");
    assert_eq!(out, [7, 7]);
    // Lengths that disagree with the range.
    let mut out = [7u64; 3];
    let e = err(run_chunk(
        &Power,
        &p,
        Chunk::map(0..3, Slice::U64(&[1, 2]), SliceMut::U64(&mut out)),
    ));
    assert!(e.contains("input has 2 elements, expected 3"), "{e}");
    assert_eq!(out, [7, 7, 7]);
    // A missing second input, and two inputs of different types.
    let mut acc = [5u64];
    let e = err(run_chunk(
        &Dot,
        &Params::new(),
        Chunk::map(0..1, Slice::U64(&[1]), SliceMut::U64(&mut acc)),
    ));
    assert!(e.contains("two inputs of one type"), "{e}");
    let e = err(run_chunk(
        &Dot,
        &Params::new(),
        Chunk {
            range: 0..1,
            row_len: 1,
            x: Some(Slice::U64(&[1])),
            y: Some(Slice::U32(&[1])),
            out: SliceMut::U64(&mut acc),
        },
    ));
    assert!(e.contains("a second input of u64"), "{e}");
    assert_eq!(acc, [5]);
    // Bad parameters, before anything runs.
    let bad = Params::defaults(Histogram.params())
        .with("lo", 1)
        .with("hi", 0);
    let mut acc = vec![0u64; Histogram.acc_len(&bad)];
    let e = err(run_chunk(
        &Histogram,
        &bad,
        Chunk::map(0..1, Slice::F64(&[0.5]), SliceMut::U64(&mut acc)),
    ));
    assert!(e.contains("need lo < hi"), "{e}");
    let e = Params::resolve(Power.params(), ["tims=3"])
        .unwrap_err()
        .to_string();
    assert!(e.contains("\"tims\"") && e.contains("times"), "{e}");
    // A range past what the parameters allow (a 4x4 image has 16 pixels).
    let mp = Params::defaults(Mandelbrot.params())
        .with("width", 4)
        .with("height", 4);
    let mut img = vec![0u64; 20];
    let e = err(run_chunk(
        &Mandelbrot,
        &mp,
        Chunk::generated(0..20, SliceMut::U64(&mut img)),
    ));
    assert!(e.contains("past the limit 16"), "{e}");
    // combine is for reductions, of one accumulator type.
    let mut acc = [0u64; 1];
    let e = err(combine(&Power, SliceMut::U64(&mut acc), Slice::U64(&[1])));
    assert!(e.contains("a reduction"), "{e}");
    let e = err(combine(&Sum, SliceMut::U64(&mut acc), Slice::I64(&[1])));
    assert!(e.contains("u64 partials"), "{e}");
}

/// A kernel written as a user would: clamp every numeric type to `[0, hi]`.
#[derive(Clone, Copy)]
struct Clamp;

impl Kernel for Clamp {
    fn name(&self) -> &'static str {
        "clamp"
    }
    fn summary(&self) -> &'static str {
        "x clamped to [0, hi]"
    }
    fn params(&self) -> &'static [ParamSpec] {
        const P: &[ParamSpec] = &[ParamSpec::new("hi", "10", "upper bound")];
        P
    }
    fn signature(&self) -> Signature {
        Signature::map(&Dtype::NUMERIC)
    }
    fn run(&self, p: &Params, c: Chunk<'_>) -> Result<(), KernelError> {
        fn clamp<T: Num>(x: &[T], o: &mut [T], hi: f64) {
            let hi = T::from_f64(hi);
            for (o, &v) in o.iter_mut().zip(x) {
                *o = if v < T::ZERO {
                    T::ZERO
                } else if v > hi {
                    hi
                } else {
                    v
                };
            }
        }
        let hi = p.float("hi")?;
        for_same_numeric!(c.x()?, c.out, |x, o| clamp(x, o, hi), else => unreachable!("checked by run_chunk"));
        Ok(())
    }
}

#[test]
fn a_kernel_from_outside_runs_on_every_type_and_in_chunks() {
    let p = Params::resolve(Clamp.params(), ["hi=3"]).unwrap();
    let mut out = [0i16; 4];
    run_chunk(
        &Clamp,
        &p,
        Chunk::map(0..4, Slice::I16(&[-5, 2, 3, 900]), SliceMut::I16(&mut out)),
    )
    .unwrap();
    assert_eq!(out, [0, 2, 3, 3]);
    for d in Dtype::NUMERIC {
        let whole = output(&Clamp, &p, Some(d), 500, &[]);
        let chunked = output(&Clamp, &p, Some(d), 500, &[3, 250]);
        assert!(close(&whole, &chunked), "{d}");
    }
    // It is refused what its signature does not name.
    let mut b = [0u8; 1];
    assert!(run_chunk(
        &Clamp,
        &p,
        Chunk::map(0..1, Slice::Bool(&[1]), SliceMut::Bool(&mut b))
    )
    .is_err());
}
