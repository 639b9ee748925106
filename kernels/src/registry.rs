//! The named-kernel registry: one uniform chunk entry point for every backend.
//!
//! A run of kernel `k` over an index space `0..n` is cut into chunks. For each
//! chunk `range`, a backend calls [`run_chunk`] with the chunk's sub-slices:
//!
//! * **map** kernels ([`OutputKind::Map`]) write one output per index into the
//!   chunk's output sub-slice;
//! * **reduce** kernels ([`OutputKind::Reduce`]) overwrite a fixed-length partial
//!   accumulator ([`KernelInfo::acc_len`]) with the chunk's result; the backend
//!   then folds the partials into a zeroed accumulator with [`combine`], in chunk
//!   order, so the result depends only on how the index space was cut.
//!
//! Nothing here knows about threads or processes: a worker process given the
//! sub-slices of shared arrays for its chunk runs exactly the same code.

use crate::generated::{count_primes, mandelbrot, monte_carlo_pi, PRIMES_MAX};
use crate::params::{
    bad, P_A, P_BINS, P_HEIGHT, P_HI, P_LO, P_MAX_ITER, P_SEED, P_START, P_TIMES, P_WIDTH,
};
use crate::{dot, histogram, power_f64_slice, power_u64_slice, saxpy, sum};
use crate::{KernelError, ParamSpec, Params, MAX_BINS};
use std::fmt;
use std::ops::Range;

/// Element type of an array.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dtype {
    /// `u64`, little-endian in files (`<u8` in numpy).
    U64,
    /// `f64`, little-endian in files (`<f8` in numpy).
    F64,
}

impl Dtype {
    /// `"u64"` or `"f64"`.
    ///
    /// ```
    /// assert_eq!(shmproc_kernels::Dtype::F64.name(), "f64");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            Dtype::U64 => "u64",
            Dtype::F64 => "f64",
        }
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a kernel reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// One array of one of these element types; one element per index.
    Array(&'static [Dtype]),
    /// Two `f64` arrays of the same length (`x`, `y`).
    F64Pair,
    /// Nothing: the output is a function of the index (and parameters); `n` is
    /// the size of the index space.
    Generated,
}

/// What a kernel writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    /// One output per index.
    Map {
        /// Output element type; `None` means the same as the input's.
        dtype: Option<Dtype>,
        /// The output's prior contents are an operand (saxpy's `y`), updated in place.
        in_place: bool,
    },
    /// A fixed-length accumulator of this element type ([`KernelInfo::acc_len`]);
    /// partials are combined by elementwise addition.
    Reduce {
        /// Accumulator element type.
        dtype: Dtype,
    },
}

/// Stable identity of a registered kernel; its `u32` value is its index in
/// [`registry()`], so it can travel to another process as a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum KernelId {
    /// [`crate::power_u64`] / [`crate::power_f64`] per element.
    Power = 0,
    /// [`crate::sum`].
    Sum = 1,
    /// [`crate::dot`].
    Dot = 2,
    /// [`crate::saxpy`].
    Saxpy = 3,
    /// [`crate::histogram`].
    Histogram = 4,
    /// [`crate::mandelbrot`].
    Mandelbrot = 5,
    /// [`crate::monte_carlo_pi`].
    MonteCarloPi = 6,
    /// [`crate::count_primes`].
    CountPrimes = 7,
}

impl KernelId {
    /// The id with this number, if any.
    ///
    /// ```
    /// use shmproc_kernels::KernelId;
    /// assert_eq!(KernelId::from_u32(KernelId::Dot as u32), Some(KernelId::Dot));
    /// assert_eq!(KernelId::from_u32(1000), None);
    /// ```
    pub fn from_u32(v: u32) -> Option<Self> {
        registry().get(v as usize).map(|k| k.id)
    }

    /// The registry entry of this kernel.
    ///
    /// ```
    /// use shmproc_kernels::KernelId;
    /// assert_eq!(KernelId::Histogram.info().name, "histogram");
    /// ```
    pub fn info(self) -> &'static KernelInfo {
        &REGISTRY[self as usize]
    }
}

/// A registered kernel: its name, parameters and data shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelInfo {
    /// Identity (index in [`registry()`]).
    pub id: KernelId,
    /// Name used by the CLI and [`find`].
    pub name: &'static str,
    /// One-line description.
    pub summary: &'static str,
    /// The fields of [`Params`] this kernel reads.
    pub params: &'static [ParamSpec],
    /// What it reads.
    pub input: InputKind,
    /// What it writes.
    pub output: OutputKind,
}

static REGISTRY: [KernelInfo; 8] = [
    KernelInfo {
        id: KernelId::Power,
        name: "power",
        summary: "repeated squaring x -> x*x, `times` times (wrapping for u64)",
        params: &[P_TIMES],
        input: InputKind::Array(&[Dtype::U64, Dtype::F64]),
        output: OutputKind::Map {
            dtype: None,
            in_place: false,
        },
    },
    KernelInfo {
        id: KernelId::Sum,
        name: "sum",
        summary: "compensated sum of f64 values (accumulator: [sum])",
        params: &[],
        input: InputKind::Array(&[Dtype::F64]),
        output: OutputKind::Reduce { dtype: Dtype::F64 },
    },
    KernelInfo {
        id: KernelId::Dot,
        name: "dot",
        summary: "compensated dot product of two f64 arrays (accumulator: [dot])",
        params: &[],
        input: InputKind::F64Pair,
        output: OutputKind::Reduce { dtype: Dtype::F64 },
    },
    KernelInfo {
        id: KernelId::Saxpy,
        name: "saxpy",
        summary: "y = a*x + y, in place on the output",
        params: &[P_A],
        input: InputKind::Array(&[Dtype::F64]),
        output: OutputKind::Map {
            dtype: Some(Dtype::F64),
            in_place: true,
        },
    },
    KernelInfo {
        id: KernelId::Histogram,
        name: "histogram",
        summary: "counts in `bins` bins over [lo, hi), then under, over, NaN",
        params: &[P_LO, P_HI, P_BINS],
        input: InputKind::Array(&[Dtype::F64]),
        output: OutputKind::Reduce { dtype: Dtype::U64 },
    },
    KernelInfo {
        id: KernelId::Mandelbrot,
        name: "mandelbrot",
        summary: "iteration counts of a width x height image, one per pixel (row-major)",
        params: &[P_WIDTH, P_HEIGHT, P_MAX_ITER],
        input: InputKind::Generated,
        output: OutputKind::Map {
            dtype: Some(Dtype::U64),
            in_place: false,
        },
    },
    KernelInfo {
        id: KernelId::MonteCarloPi,
        name: "monte_carlo_pi",
        summary:
            "hits in the quarter disc among n counter-based samples (accumulator: [hits, samples])",
        params: &[P_SEED],
        input: InputKind::Generated,
        output: OutputKind::Reduce { dtype: Dtype::U64 },
    },
    KernelInfo {
        id: KernelId::CountPrimes,
        name: "count_primes",
        summary: "number of primes in [start, start + n) by segmented sieve (accumulator: [count])",
        params: &[P_START],
        input: InputKind::Generated,
        output: OutputKind::Reduce { dtype: Dtype::U64 },
    },
];

/// Every registered kernel, in [`KernelId`] order.
///
/// ```
/// let names: Vec<_> = shmproc_kernels::registry().iter().map(|k| k.name).collect();
/// assert!(names.contains(&"power") && names.contains(&"mandelbrot"));
/// ```
pub fn registry() -> &'static [KernelInfo] {
    &REGISTRY
}

/// The kernel called `name`.
///
/// ```
/// use shmproc_kernels::{find, KernelId};
/// assert_eq!(find("sum").map(|k| k.id), Some(KernelId::Sum));
/// assert!(find("nope").is_none());
/// ```
pub fn find(name: &str) -> Option<&'static KernelInfo> {
    REGISTRY.iter().find(|k| k.name == name)
}

/// Like [`find`], with an error for an unknown name.
///
/// # Errors
/// [`KernelError::UnknownKernel`].
///
/// ```
/// assert!(shmproc_kernels::lookup("dot").is_ok());
/// assert_eq!(shmproc_kernels::lookup("x").unwrap_err().to_string(), "unknown kernel \"x\"");
/// ```
pub fn lookup(name: &str) -> Result<&'static KernelInfo, KernelError> {
    find(name).ok_or_else(|| KernelError::UnknownKernel(name.to_owned()))
}

impl KernelInfo {
    /// Checks that `range` is increasing and within the kernel's index space
    /// for `params`; returns its length.
    ///
    /// # Errors
    /// [`KernelError::RangeTooLarge`].
    pub fn check_range(&self, params: &Params, range: &Range<usize>) -> Result<usize, KernelError> {
        let len = range
            .end
            .checked_sub(range.start)
            .ok_or(KernelError::RangeTooLarge {
                kernel: self.name,
                end: range.end,
                limit: range.start,
            })?;
        if range.end > self.max_len(params) {
            return Err(KernelError::RangeTooLarge {
                kernel: self.name,
                end: range.end,
                limit: self.max_len(params),
            });
        }
        Ok(len)
    }

    /// Whether this is a reduction.
    pub fn is_reduction(&self) -> bool {
        matches!(self.output, OutputKind::Reduce { .. })
    }

    /// Whether the kernel accepts input elements of this type (`false` for
    /// generated kernels, which take no input).
    ///
    /// ```
    /// use shmproc_kernels::{find, Dtype};
    /// let power = find("power").unwrap();
    /// assert!(power.accepts(Dtype::U64) && power.accepts(Dtype::F64));
    /// assert!(!find("sum").unwrap().accepts(Dtype::U64));
    /// ```
    pub fn accepts(&self, dtype: Dtype) -> bool {
        match self.input {
            InputKind::Array(ds) => ds.contains(&dtype),
            InputKind::F64Pair => dtype == Dtype::F64,
            InputKind::Generated => false,
        }
    }

    /// Element type of the output (map) or accumulator (reduce), given the input
    /// element type (`None` for generated kernels).
    ///
    /// # Errors
    /// [`KernelError::WrongDtype`] if the kernel does not take that input.
    ///
    /// ```
    /// use shmproc_kernels::{find, Dtype};
    /// let power = find("power").unwrap();
    /// assert_eq!(power.output_dtype(Some(Dtype::F64)), Ok(Dtype::F64));
    /// assert_eq!(find("mandelbrot").unwrap().output_dtype(None), Ok(Dtype::U64));
    /// assert!(find("sum").unwrap().output_dtype(Some(Dtype::U64)).is_err());
    /// ```
    pub fn output_dtype(&self, input: Option<Dtype>) -> Result<Dtype, KernelError> {
        let ok = match (self.input, input) {
            (InputKind::Generated, None) => true,
            (InputKind::Generated, Some(_)) | (_, None) => false,
            (_, Some(d)) => self.accepts(d),
        };
        if !ok {
            return Err(
                self.wrong_dtype(&input.map_or("no input".to_owned(), |d| format!("{d} input")))
            );
        }
        Ok(match (self.output, input) {
            (OutputKind::Map { dtype: Some(d), .. }, _) | (OutputKind::Reduce { dtype: d }, _) => d,
            (OutputKind::Map { dtype: None, .. }, Some(d)) => d,
            // Unreachable with the registry's entries: a same-as-input map
            // always has an array input, checked above.
            (OutputKind::Map { dtype: None, .. }, None) => Dtype::U64,
        })
    }

    /// Length of the accumulator of a reduction (0 for map kernels).
    ///
    /// ```
    /// use shmproc_kernels::{find, Params};
    /// let p = Params { bins: 10, ..Params::default() };
    /// assert_eq!(find("histogram").unwrap().acc_len(&p), 13);
    /// assert_eq!(find("monte_carlo_pi").unwrap().acc_len(&p), 2);
    /// assert_eq!(find("power").unwrap().acc_len(&p), 0);
    /// ```
    pub fn acc_len(&self, p: &Params) -> usize {
        match self.id {
            KernelId::Sum | KernelId::Dot | KernelId::CountPrimes => 1,
            KernelId::MonteCarloPi => 2,
            KernelId::Histogram => p.bins as usize + 3,
            KernelId::Power | KernelId::Saxpy | KernelId::Mandelbrot => 0,
        }
    }

    /// The index-space size the parameters imply, if they do (mandelbrot:
    /// `width * height`).
    ///
    /// ```
    /// use shmproc_kernels::{find, Params};
    /// let p = Params { width: 30, height: 20, ..Params::default() };
    /// assert_eq!(find("mandelbrot").unwrap().natural_len(&p), Some(600));
    /// assert_eq!(find("sum").unwrap().natural_len(&p), None);
    /// ```
    pub fn natural_len(&self, p: &Params) -> Option<usize> {
        match self.id {
            KernelId::Mandelbrot => Some((p.width as usize).saturating_mul(p.height as usize)),
            _ => None,
        }
    }

    /// The largest index-space size the parameters allow.
    pub fn max_len(&self, p: &Params) -> usize {
        match self.id {
            KernelId::Mandelbrot => (p.width as usize).saturating_mul(p.height as usize),
            KernelId::CountPrimes => {
                usize::try_from(PRIMES_MAX.saturating_sub(p.start)).unwrap_or(usize::MAX)
            }
            _ => usize::MAX,
        }
    }

    /// Checks the parameters this kernel reads.
    ///
    /// # Errors
    /// [`KernelError::BadParam`] naming the first bad parameter.
    ///
    /// ```
    /// use shmproc_kernels::{find, Params};
    /// let hist = find("histogram").unwrap();
    /// assert!(hist.check_params(&Params::default()).is_ok());
    /// assert!(hist.check_params(&Params { lo: 2.0, hi: 1.0, ..Params::default() }).is_err());
    /// assert!(hist.check_params(&Params { bins: 0, ..Params::default() }).is_err());
    /// ```
    pub fn check_params(&self, p: &Params) -> Result<(), KernelError> {
        match self.id {
            KernelId::Histogram => {
                if !(p.lo.is_finite() && p.hi.is_finite() && p.lo < p.hi) {
                    return Err(bad("hi", &p.hi.to_string(), "need finite lo < hi"));
                }
                if !(p.hi - p.lo).is_finite() {
                    return Err(bad("hi", &p.hi.to_string(), "hi - lo overflows"));
                }
                if p.bins == 0 || p.bins > MAX_BINS {
                    return Err(bad("bins", &p.bins.to_string(), "need 1 to 65536 bins"));
                }
            }
            KernelId::Mandelbrot => {
                if p.width == 0 {
                    return Err(bad("width", "0", "need at least 1 pixel"));
                }
                if p.height == 0 {
                    return Err(bad("height", "0", "need at least 1 pixel"));
                }
            }
            KernelId::CountPrimes if p.start >= PRIMES_MAX => {
                return Err(bad("start", &p.start.to_string(), "must be below 2^40"));
            }
            KernelId::Saxpy if !p.a.is_finite() => {
                return Err(bad("a", &p.a.to_string(), "expected a finite number"));
            }
            _ => {}
        }
        Ok(())
    }

    fn wrong_dtype(&self, found: &str) -> KernelError {
        let expected = match self.input {
            InputKind::Array(ds) => {
                let names: Vec<_> = ds.iter().map(|d| d.name()).collect();
                format!("{} input", names.join(" or "))
            }
            InputKind::F64Pair => "two f64 inputs".to_owned(),
            InputKind::Generated => "no input".to_owned(),
        };
        KernelError::WrongDtype {
            kernel: self.name,
            expected,
            found: found.to_owned(),
        }
    }

    fn length(&self, what: &'static str, expected: usize, found: usize) -> Result<(), KernelError> {
        if expected == found {
            Ok(())
        } else {
            Err(KernelError::LengthMismatch {
                kernel: self.name,
                what,
                expected,
                found,
            })
        }
    }
}

/// A chunk's input: sub-slices for the chunk's range, or nothing.
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    /// `u64` elements.
    U64(&'a [u64]),
    /// `f64` elements.
    F64(&'a [f64]),
    /// Two `f64` arrays (`x`, `y`).
    F64Pair(&'a [f64], &'a [f64]),
    /// No input: a generated kernel.
    Generated,
}

impl<'a> Input<'a> {
    /// Number of elements (`None` for [`Input::Generated`]; for a pair, the
    /// length of `x`).
    pub fn len(&self) -> Option<usize> {
        match self {
            Input::U64(s) => Some(s.len()),
            Input::F64(s) | Input::F64Pair(s, _) => Some(s.len()),
            Input::Generated => None,
        }
    }

    /// Whether this is an empty array (`false` for [`Input::Generated`]).
    pub fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }

    /// Element type (`None` for [`Input::Generated`]).
    pub fn dtype(&self) -> Option<Dtype> {
        match self {
            Input::U64(_) => Some(Dtype::U64),
            Input::F64(_) | Input::F64Pair(..) => Some(Dtype::F64),
            Input::Generated => None,
        }
    }

    /// The sub-input for `range` (unchanged for [`Input::Generated`]).
    ///
    /// # Panics
    /// If `range` is out of bounds.
    ///
    /// ```
    /// use shmproc_kernels::Input;
    /// let x = [1u64, 2, 3, 4];
    /// assert!(matches!(Input::U64(&x).slice(1..3), Input::U64(&[2, 3])));
    /// ```
    pub fn slice(&self, range: Range<usize>) -> Input<'a> {
        match *self {
            Input::U64(s) => Input::U64(&s[range]),
            Input::F64(s) => Input::F64(&s[range]),
            Input::F64Pair(x, y) => Input::F64Pair(&x[range.clone()], &y[range]),
            Input::Generated => Input::Generated,
        }
    }

    fn describe(&self) -> String {
        match self {
            Input::F64Pair(..) => "two f64 inputs".to_owned(),
            Input::Generated => "no input".to_owned(),
            other => format!("{} input", other.dtype().map_or("?", Dtype::name)),
        }
    }
}

/// A chunk's output sub-slice (map) or partial accumulator (reduce); also the
/// whole accumulator that [`combine`] folds into.
#[derive(Debug)]
pub enum Output<'a> {
    /// `u64` elements.
    U64(&'a mut [u64]),
    /// `f64` elements.
    F64(&'a mut [f64]),
}

impl<'a> Output<'a> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Output::U64(s) => s.len(),
            Output::F64(s) => s.len(),
        }
    }

    /// Whether it has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element type.
    pub fn dtype(&self) -> Dtype {
        match self {
            Output::U64(_) => Dtype::U64,
            Output::F64(_) => Dtype::F64,
        }
    }

    /// A shorter-lived `Output` over the same elements.
    pub fn reborrow(&mut self) -> Output<'_> {
        match self {
            Output::U64(s) => Output::U64(s),
            Output::F64(s) => Output::F64(s),
        }
    }

    /// Splits into `[..mid]` and `[mid..]`.
    ///
    /// # Panics
    /// If `mid > self.len()`.
    ///
    /// ```
    /// use shmproc_kernels::Output;
    /// let mut v = [0u64; 5];
    /// let (a, b) = Output::U64(&mut v).split_at(2);
    /// assert_eq!((a.len(), b.len()), (2, 3));
    /// ```
    pub fn split_at(self, mid: usize) -> (Output<'a>, Output<'a>) {
        match self {
            Output::U64(s) => {
                let (a, b) = s.split_at_mut(mid);
                (Output::U64(a), Output::U64(b))
            }
            Output::F64(s) => {
                let (a, b) = s.split_at_mut(mid);
                (Output::F64(a), Output::F64(b))
            }
        }
    }

    /// Read-only view of the same elements.
    pub fn as_acc(&self) -> Acc<'_> {
        match self {
            Output::U64(s) => Acc::U64(s),
            Output::F64(s) => Acc::F64(s),
        }
    }

    fn fill_zero(&mut self) {
        match self {
            Output::U64(s) => s.fill(0),
            Output::F64(s) => s.fill(0.0),
        }
    }
}

/// A read-only accumulator (a chunk's partial, handed to [`combine`]).
#[derive(Debug, Clone, Copy)]
pub enum Acc<'a> {
    /// `u64` values.
    U64(&'a [u64]),
    /// `f64` values.
    F64(&'a [f64]),
}

/// An owned array of either element type: outputs, accumulators, test data.
///
/// ```
/// use shmproc_kernels::{Dtype, Values};
/// let v = Values::zeros(Dtype::F64, 3);
/// assert_eq!(v, Values::F64(vec![0.0; 3]));
/// assert_eq!(v.dtype(), Dtype::F64);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    /// `u64` values.
    U64(Vec<u64>),
    /// `f64` values.
    F64(Vec<f64>),
}

impl Values {
    /// `len` zeros of type `dtype`.
    pub fn zeros(dtype: Dtype, len: usize) -> Self {
        match dtype {
            Dtype::U64 => Values::U64(vec![0; len]),
            Dtype::F64 => Values::F64(vec![0.0; len]),
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Values::U64(v) => v.len(),
            Values::F64(v) => v.len(),
        }
    }

    /// Whether it has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element type.
    pub fn dtype(&self) -> Dtype {
        match self {
            Values::U64(_) => Dtype::U64,
            Values::F64(_) => Dtype::F64,
        }
    }

    /// The values as an [`Input`].
    pub fn as_input(&self) -> Input<'_> {
        match self {
            Values::U64(v) => Input::U64(v),
            Values::F64(v) => Input::F64(v),
        }
    }

    /// The values as an [`Output`].
    pub fn as_output(&mut self) -> Output<'_> {
        match self {
            Values::U64(v) => Output::U64(v),
            Values::F64(v) => Output::F64(v),
        }
    }

    /// The values as an [`Acc`].
    pub fn as_acc(&self) -> Acc<'_> {
        match self {
            Values::U64(v) => Acc::U64(v),
            Values::F64(v) => Acc::F64(v),
        }
    }
}

/// Runs kernel `info` on one chunk: the indices `range` of the global index
/// space, with `input` the chunk's input sub-slice(s) (length `range.len()`, or
/// [`Input::Generated`]) and `output` either the chunk's output sub-slice (map,
/// length `range.len()`; read first as `y` when the output is `in_place`) or its
/// partial accumulator (reduce, length [`KernelInfo::acc_len`], overwritten).
///
/// # Errors
/// [`KernelError::BadParam`] ([`KernelInfo::check_params`]),
/// [`KernelError::WrongDtype`] for an input or output of the wrong type,
/// [`KernelError::LengthMismatch`], [`KernelError::RangeTooLarge`]. Nothing is
/// written when an error is returned.
///
/// ```
/// use shmproc_kernels::{find, run_chunk, Input, Output, Params};
/// let p = Params::default(); // times = 4
/// let mut out = [0u64; 2];
/// run_chunk(find("power").unwrap(), &p, 10..12, Input::U64(&[2, 3]), Output::U64(&mut out))?;
/// assert_eq!(out, [65536, 43046721]);
///
/// let mut hits = [0u64; 2]; // [hits, samples]
/// run_chunk(find("monte_carlo_pi").unwrap(), &p, 0..1000, Input::Generated, Output::U64(&mut hits))?;
/// assert_eq!(hits[1], 1000);
///
/// let err = run_chunk(find("sum").unwrap(), &p, 0..1, Input::U64(&[1]), Output::F64(&mut [0.0]));
/// assert!(err.is_err()); // sum takes f64
/// # Ok::<(), shmproc_kernels::KernelError>(())
/// ```
pub fn run_chunk(
    info: &KernelInfo,
    params: &Params,
    range: Range<usize>,
    input: Input<'_>,
    mut output: Output<'_>,
) -> Result<(), KernelError> {
    info.check_params(params)?;
    let len = info.check_range(params, &range)?;
    let want_out = info
        .output_dtype(input.dtype())
        .map_err(|_| info.wrong_dtype(&input.describe()))?;
    if matches!(input, Input::F64Pair(..)) != matches!(info.input, InputKind::F64Pair) {
        return Err(info.wrong_dtype(&input.describe()));
    }
    if output.dtype() != want_out {
        return Err(KernelError::WrongDtype {
            kernel: info.name,
            expected: format!("{want_out} output"),
            found: format!("{} output", output.dtype()),
        });
    }
    if let Some(n) = input.len() {
        info.length("input", len, n)?;
    }
    if let Input::F64Pair(_, y) = input {
        info.length("second input", len, y.len())?;
    }
    if info.is_reduction() {
        info.length("accumulator", info.acc_len(params), output.len())?;
        output.fill_zero();
    } else {
        info.length("output", len, output.len())?;
    }

    match (info.id, input, output) {
        (KernelId::Power, Input::U64(x), Output::U64(o)) => power_u64_slice(x, o, params.times),
        (KernelId::Power, Input::F64(x), Output::F64(o)) => power_f64_slice(x, o, params.times),
        (KernelId::Sum, Input::F64(x), Output::F64(acc)) => acc[0] = sum(x),
        (KernelId::Dot, Input::F64Pair(x, y), Output::F64(acc)) => acc[0] = dot(x, y),
        (KernelId::Saxpy, Input::F64(x), Output::F64(y)) => saxpy(params.a, x, y),
        (KernelId::Histogram, Input::F64(x), Output::U64(acc)) => {
            histogram(x, params.lo, params.hi, acc)
        }
        (KernelId::Mandelbrot, Input::Generated, Output::U64(o)) => mandelbrot(
            params.width as usize,
            params.height as usize,
            params.max_iter,
            range.start,
            o,
        ),
        (KernelId::MonteCarloPi, Input::Generated, Output::U64(acc)) => {
            acc[0] = monte_carlo_pi(params.seed, range.start as u64..range.end as u64);
            acc[1] = len as u64;
        }
        (KernelId::CountPrimes, Input::Generated, Output::U64(acc)) => {
            let lo = params.start + range.start as u64;
            acc[0] = count_primes(lo, lo + len as u64);
        }
        (_, input, _) => return Err(info.wrong_dtype(&input.describe())),
    }
    Ok(())
}

/// Folds a chunk's `partial` accumulator into `acc` (elementwise addition,
/// wrapping for `u64`). Call it for the chunks in index order, starting from a
/// zeroed `acc`, and the result is a function of the chunking alone.
///
/// # Errors
/// [`KernelError::WrongDtype`] for a map kernel or mismatched element types,
/// [`KernelError::LengthMismatch`] for mismatched lengths.
///
/// ```
/// use shmproc_kernels::{combine, find, Acc, Output};
/// let mut acc = [1.0];
/// combine(find("sum").unwrap(), Output::F64(&mut acc), Acc::F64(&[2.5]))?;
/// assert_eq!(acc, [3.5]);
/// assert!(combine(find("power").unwrap(), Output::F64(&mut acc), Acc::F64(&[1.0])).is_err());
/// # Ok::<(), shmproc_kernels::KernelError>(())
/// ```
pub fn combine(info: &KernelInfo, acc: Output<'_>, partial: Acc<'_>) -> Result<(), KernelError> {
    let OutputKind::Reduce { dtype } = info.output else {
        return Err(KernelError::WrongDtype {
            kernel: info.name,
            expected: "a reduction".to_owned(),
            found: "a map kernel".to_owned(),
        });
    };
    if acc.dtype() != dtype {
        return Err(KernelError::WrongDtype {
            kernel: info.name,
            expected: format!("{dtype} accumulators"),
            found: format!("{} accumulator", acc.dtype()),
        });
    }
    match (acc, partial) {
        (Output::U64(a), Acc::U64(p)) => {
            info.length("partial accumulator", a.len(), p.len())?;
            for (a, p) in a.iter_mut().zip(p) {
                *a = a.wrapping_add(*p);
            }
        }
        (Output::F64(a), Acc::F64(p)) => {
            info.length("partial accumulator", a.len(), p.len())?;
            for (a, p) in a.iter_mut().zip(p) {
                *a += *p;
            }
        }
        _ => {
            return Err(KernelError::WrongDtype {
                kernel: info.name,
                expected: format!("{dtype} accumulators"),
                found: "a partial of the other type".to_owned(),
            })
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
