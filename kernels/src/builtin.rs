//! The built-in kernels: each a unit struct implementing [`Kernel`], the same
//! trait users implement. [`builtins`] lists them.
//!
//! Accumulator types of the reductions (numpy's for integers; wider than
//! numpy's for `f32`, whose sums numpy keeps in `f32`):
//!
//! | input | [`Sum`], [`Dot`] accumulate in | result |
//! |---|---|---|
//! | `f32`, `f64` | `f64`, compensated (Neumaier) | `f64` |
//! | `i8` to `i64` | `i64`, wrapping | `i64` |
//! | `u8` to `u64` | `u64`, wrapping | `u64` |
//! | `bool` ([`Sum`] only) | the count of true elements | `u64` |

use crate::generated::{count_primes, mandelbrot, monte_carlo_pi, PRIMES_MAX};
use crate::params::bad;
use crate::{
    dot_float, for_same_numeric, histogram, normalize_rows, power_slice, saxpy, saxpy_f32,
    sum_float, Chunk, Dtype, Kernel, KernelError, Kind, ParamSpec, Params, Signature, Slice,
    SliceMut,
};

/// Largest number of histogram bins.
pub const MAX_BINS: u32 = 1 << 16;

/// Numeric and `bool`.
const ANY: [Dtype; 11] = Dtype::ALL;

/// Every built-in kernel, in `shmproc kernels` order.
///
/// ```
/// let names: Vec<_> = shmproc_kernels::builtins().iter().map(|k| k.name()).collect();
/// assert!(names.contains(&"power") && names.contains(&"normalize_rows"));
/// ```
pub fn builtins() -> [&'static dyn Kernel; 9] {
    [
        &Power,
        &Sum,
        &Dot,
        &Saxpy,
        &Histogram,
        &NormalizeRows,
        &Mandelbrot,
        &MonteCarloPi,
        &CountPrimes,
    ]
}

fn mismatch(kernel: &'static str, chunk: &Chunk<'_>) -> KernelError {
    KernelError::WrongDtype {
        kernel,
        expected: "the types its signature declares".to_owned(),
        found: format!(
            "{} input and {} output",
            chunk.x.map_or("no".to_owned(), |x| x.dtype().to_string()),
            chunk.out.dtype()
        ),
    }
}

macro_rules! serde_unit {
    ($($(#[$m:meta])* $name:ident;)*) => {$(
        $(#[$m])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        #[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
        pub struct $name;
    )*};
}

serde_unit! {
    /// Repeated squaring `x -> x * x`, `times` times, of every element: any
    /// numeric type, wrapping for integers ([`crate::power`]).
    Power;
    /// Sum of the elements ([accumulator types](self)).
    Sum;
    /// Dot product of two arrays of one type ([accumulator types](self)).
    Dot;
    /// `y = a * x + y` in place on the output, in the element type (`f32` or `f64`).
    Saxpy;
    /// Counts in `bins` equal bins over `[lo, hi)`, then below, above, NaN,
    /// of any numeric or bool input (compared as `f64`).
    Histogram;
    /// Each row (last axis) scaled to unit Euclidean norm; a row kernel.
    NormalizeRows;
    /// Iteration counts of a `width x height` image of the Mandelbrot set.
    Mandelbrot;
    /// Hits in the quarter disc among `n` counter-based samples.
    MonteCarloPi;
    /// Primes in `[start, start + n)`.
    CountPrimes;
}

const P_TIMES: ParamSpec = ParamSpec::new("times", "4", "number of squarings x -> x*x");

impl Kernel for Power {
    fn name(&self) -> &'static str {
        "power"
    }
    fn summary(&self) -> &'static str {
        "repeated squaring x -> x*x, `times` times (any numeric type; wrapping for integers)"
    }
    fn params(&self) -> &'static [ParamSpec] {
        const P: &[ParamSpec] = &[P_TIMES];
        P
    }
    fn signature(&self) -> Signature {
        Signature::map(&Dtype::NUMERIC)
    }
    fn check(&self, p: &Params) -> Result<(), KernelError> {
        p.uint::<u32>("times").map(drop)
    }
    fn run(&self, p: &Params, c: Chunk<'_>) -> Result<(), KernelError> {
        let times = p.uint::<u32>("times")?;
        let x = c.x()?;
        let err = mismatch(self.name(), &c);
        for_same_numeric!(x, c.out, |x, o| power_slice(x, o, times), else => return Err(err));
        Ok(())
    }
}

/// The accumulator type of [`Sum`] and [`Dot`] for inputs of `d`.
fn acc_dtype(d: Option<Dtype>) -> Dtype {
    match d {
        Some(d) if d.is_float() => Dtype::F64,
        Some(d) if d.is_signed() => Dtype::I64,
        _ => Dtype::U64,
    }
}

impl Kernel for Sum {
    fn name(&self) -> &'static str {
        "sum"
    }
    fn summary(&self) -> &'static str {
        "sum of the elements: f64 (compensated) for floats, wrapping i64 / u64 for integers, count for bool"
    }
    fn signature(&self) -> Signature {
        Signature::reduce(&ANY)
    }
    fn output_dtype(&self, input: Option<Dtype>) -> Dtype {
        acc_dtype(input)
    }
    fn run(&self, _: &Params, c: Chunk<'_>) -> Result<(), KernelError> {
        let x = c.x()?;
        match (x, c.out) {
            (Slice::F32(x), SliceMut::F64(acc)) => acc[0] = sum_float(x),
            (Slice::F64(x), SliceMut::F64(acc)) => acc[0] = sum_float(x),
            (Slice::Bool(x), SliceMut::U64(acc)) => {
                acc[0] = x.iter().filter(|&&b| b != 0).count() as u64
            }
            // The checksum of integers is their wrapping sum, each value
            // sign- or zero-extended to 64 bits: the i64 / u64 wrapping sum.
            (x, SliceMut::I64(acc)) if x.dtype().is_signed() => acc[0] = x.checksum() as i64,
            (x, SliceMut::U64(acc)) if x.dtype().is_integer() => acc[0] = x.checksum(),
            (x, out) => {
                return Err(KernelError::WrongDtype {
                    kernel: "sum",
                    expected: format!("a {} accumulator", acc_dtype(Some(x.dtype()))),
                    found: format!("{}", out.dtype()),
                })
            }
        }
        Ok(())
    }
}

impl Kernel for Dot {
    fn name(&self) -> &'static str {
        "dot"
    }
    fn summary(&self) -> &'static str {
        "dot product of x and y (one numeric type): f64 (compensated) for floats, wrapping i64 / u64 for integers"
    }
    fn signature(&self) -> Signature {
        Signature::reduce(&Dtype::NUMERIC).pair()
    }
    fn output_dtype(&self, input: Option<Dtype>) -> Dtype {
        acc_dtype(input)
    }
    fn run(&self, _: &Params, c: Chunk<'_>) -> Result<(), KernelError> {
        let (x, y) = (c.x()?, c.y()?);
        let level = crate::simd::Level::current();
        macro_rules! int_dot {
            ($($v:ident),*) => {
                match (x, y) {
                    $((Slice::$v(x), Slice::$v(y)) => crate::dtype::wrapping_dot_at(level, x, y),)*
                    _ => 0,
                }
            };
        }
        match (x, y, c.out) {
            (Slice::F32(x), Slice::F32(y), SliceMut::F64(acc)) => acc[0] = dot_float(x, y),
            (Slice::F64(x), Slice::F64(y), SliceMut::F64(acc)) => acc[0] = dot_float(x, y),
            (_, _, SliceMut::I64(acc)) => acc[0] = int_dot!(I8, I16, I32, I64) as i64,
            (_, _, SliceMut::U64(acc)) => acc[0] = int_dot!(U8, U16, U32, U64),
            (x, _, out) => {
                return Err(KernelError::WrongDtype {
                    kernel: "dot",
                    expected: format!("a {} accumulator", acc_dtype(Some(x.dtype()))),
                    found: format!("{}", out.dtype()),
                })
            }
        }
        Ok(())
    }
}

impl Kernel for Saxpy {
    fn name(&self) -> &'static str {
        "saxpy"
    }
    fn summary(&self) -> &'static str {
        "y = a*x + y, in place on the output (f32 or f64, computed in that type)"
    }
    fn params(&self) -> &'static [ParamSpec] {
        const P: &[ParamSpec] = &[ParamSpec::new("a", "2", "scalar a in y = a*x + y")];
        P
    }
    fn signature(&self) -> Signature {
        Signature::in_place(&Dtype::FLOAT)
    }
    fn check(&self, p: &Params) -> Result<(), KernelError> {
        p.float("a").map(drop)
    }
    fn run(&self, p: &Params, c: Chunk<'_>) -> Result<(), KernelError> {
        let a = p.float("a")?;
        let x = c.x()?;
        let err = mismatch(self.name(), &c);
        match (x, c.out) {
            (Slice::F64(x), SliceMut::F64(y)) => saxpy(a, x, y),
            (Slice::F32(x), SliceMut::F32(y)) => saxpy_f32(a as f32, x, y),
            _ => return Err(err),
        }
        Ok(())
    }
}

impl Kernel for Histogram {
    fn name(&self) -> &'static str {
        "histogram"
    }
    fn summary(&self) -> &'static str {
        "counts in `bins` bins over [lo, hi), then under, over, NaN (any numeric or bool input, compared as f64)"
    }
    fn params(&self) -> &'static [ParamSpec] {
        const P: &[ParamSpec] = &[
            ParamSpec::new("lo", "0", "lower edge of the first bin (inclusive)"),
            ParamSpec::new("hi", "1", "upper edge of the last bin (exclusive)"),
            ParamSpec::new("bins", "16", "number of equal-width bins (1 to 65536)"),
        ];
        P
    }
    fn signature(&self) -> Signature {
        Signature::reduce(&ANY)
    }
    fn output_dtype(&self, _: Option<Dtype>) -> Dtype {
        Dtype::U64
    }
    fn check(&self, p: &Params) -> Result<(), KernelError> {
        let (lo, hi) = (p.float("lo")?, p.float("hi")?);
        if lo >= hi {
            return Err(bad("hi", &hi.to_string(), "need lo < hi"));
        }
        if !(hi - lo).is_finite() {
            return Err(bad("hi", &hi.to_string(), "hi - lo overflows"));
        }
        let bins = p.uint::<u32>("bins")?;
        if bins == 0 || bins > MAX_BINS {
            return Err(bad("bins", &bins.to_string(), "need 1 to 65536 bins"));
        }
        Ok(())
    }
    fn acc_len(&self, p: &Params) -> usize {
        p.uint::<u32>("bins").map_or(0, |b| b as usize + 3)
    }
    fn run(&self, p: &Params, c: Chunk<'_>) -> Result<(), KernelError> {
        let (lo, hi) = (p.float("lo")?, p.float("hi")?);
        let x = c.x()?;
        let SliceMut::U64(counts) = c.out else {
            return Err(mismatch(self.name(), &c));
        };
        match x {
            Slice::Bool(x) => {
                let ones: Vec<u8> = x.iter().map(|&b| u8::from(b != 0)).collect();
                histogram(&ones, lo, hi, counts)
            }
            x => crate::for_numeric!(x, |x| histogram(x, lo, hi, counts), bool => {}),
        }
        Ok(())
    }
}

impl Kernel for NormalizeRows {
    fn name(&self) -> &'static str {
        "normalize_rows"
    }
    fn summary(&self) -> &'static str {
        "each row (last axis) scaled to unit Euclidean norm, zero rows kept (f32 or f64; whole rows per chunk)"
    }
    fn signature(&self) -> Signature {
        Signature::map(&Dtype::FLOAT).rows()
    }
    fn run(&self, _: &Params, c: Chunk<'_>) -> Result<(), KernelError> {
        let x = c.x()?;
        let row_len = c.row_len;
        let err = mismatch(self.name(), &c);
        match (x, c.out) {
            (Slice::F64(x), SliceMut::F64(o)) => normalize_rows(x, o, row_len),
            (Slice::F32(x), SliceMut::F32(o)) => normalize_rows(x, o, row_len),
            _ => return Err(err),
        }
        Ok(())
    }
}

fn image_len(p: &Params) -> usize {
    let w = p.uint::<u32>("width").unwrap_or(0) as usize;
    let h = p.uint::<u32>("height").unwrap_or(0) as usize;
    w.saturating_mul(h)
}

impl Kernel for Mandelbrot {
    fn name(&self) -> &'static str {
        "mandelbrot"
    }
    fn summary(&self) -> &'static str {
        "iteration counts of a width x height image, one per pixel (row-major)"
    }
    fn params(&self) -> &'static [ParamSpec] {
        const P: &[ParamSpec] = &[
            ParamSpec::new("width", "1024", "image width in pixels"),
            ParamSpec::new("height", "1024", "image height in pixels"),
            ParamSpec::new("max_iter", "256", "iteration cap per pixel"),
        ];
        P
    }
    fn signature(&self) -> Signature {
        Signature::generated(Kind::Map)
    }
    fn check(&self, p: &Params) -> Result<(), KernelError> {
        for name in ["width", "height"] {
            if p.uint::<u32>(name)? == 0 {
                return Err(bad(name, "0", "need at least 1 pixel"));
            }
        }
        p.uint::<u32>("max_iter").map(drop)
    }
    fn natural_len(&self, p: &Params) -> Option<usize> {
        Some(image_len(p))
    }
    fn max_len(&self, p: &Params) -> usize {
        image_len(p)
    }
    fn run(&self, p: &Params, c: Chunk<'_>) -> Result<(), KernelError> {
        let (w, h) = (p.uint::<u32>("width")?, p.uint::<u32>("height")?);
        let max_iter = p.uint::<u32>("max_iter")?;
        let start = c.range.start;
        let SliceMut::U64(o) = c.out else {
            return Err(mismatch(self.name(), &c));
        };
        mandelbrot(w as usize, h as usize, max_iter, start, o);
        Ok(())
    }
}

impl Kernel for MonteCarloPi {
    fn name(&self) -> &'static str {
        "monte_carlo_pi"
    }
    fn summary(&self) -> &'static str {
        "hits in the quarter disc among n counter-based samples (accumulator: [hits, samples])"
    }
    fn params(&self) -> &'static [ParamSpec] {
        const P: &[ParamSpec] = &[ParamSpec::new(
            "seed",
            "42",
            "seed of the counter-based random stream",
        )];
        P
    }
    fn signature(&self) -> Signature {
        Signature::generated(Kind::Reduce)
    }
    fn check(&self, p: &Params) -> Result<(), KernelError> {
        p.uint::<u64>("seed").map(drop)
    }
    fn acc_len(&self, _: &Params) -> usize {
        2
    }
    fn run(&self, p: &Params, c: Chunk<'_>) -> Result<(), KernelError> {
        let seed = p.uint::<u64>("seed")?;
        let r = c.range.start as u64..c.range.end as u64;
        let SliceMut::U64(acc) = c.out else {
            return Err(mismatch(self.name(), &c));
        };
        acc[0] = monte_carlo_pi(seed, r.clone());
        acc[1] = r.end - r.start;
        Ok(())
    }
}

impl Kernel for CountPrimes {
    fn name(&self) -> &'static str {
        "count_primes"
    }
    fn summary(&self) -> &'static str {
        "number of primes in [start, start + n) by segmented sieve (accumulator: [count])"
    }
    fn params(&self) -> &'static [ParamSpec] {
        const P: &[ParamSpec] = &[ParamSpec::new(
            "start",
            "0",
            "number that index 0 stands for: the range is [start, start + n)",
        )];
        P
    }
    fn signature(&self) -> Signature {
        Signature::generated(Kind::Reduce)
    }
    fn check(&self, p: &Params) -> Result<(), KernelError> {
        let start = p.uint::<u64>("start")?;
        if start >= PRIMES_MAX {
            return Err(bad("start", &start.to_string(), "must be below 2^40"));
        }
        Ok(())
    }
    fn max_len(&self, p: &Params) -> usize {
        let start = p.uint::<u64>("start").unwrap_or(PRIMES_MAX);
        usize::try_from(PRIMES_MAX.saturating_sub(start)).unwrap_or(usize::MAX)
    }
    fn run(&self, p: &Params, c: Chunk<'_>) -> Result<(), KernelError> {
        let lo = p.uint::<u64>("start")? + c.range.start as u64;
        let len = c.range.len() as u64;
        let SliceMut::U64(acc) = c.out else {
            return Err(mismatch(self.name(), &c));
        };
        acc[0] = count_primes(lo, lo + len);
        Ok(())
    }
}
