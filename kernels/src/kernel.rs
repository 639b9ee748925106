//! The kernel API: the [`Kernel`] trait every backend runs, built-in kernels
//! and users' alike.
//!
//! A run of a kernel over an index space `0..n` is cut into chunks. For each
//! chunk a backend calls [`run_chunk`] with the chunk's sub-slices:
//!
//! * a **map** kernel ([`Kind::Map`]) writes one output element per input
//!   element into the chunk's output sub-slice; an **in-place** map
//!   ([`Kind::InPlace`]) reads that sub-slice first (saxpy's `y`);
//! * a **reduce** kernel ([`Kind::Reduce`]) writes a fixed-length partial
//!   accumulator ([`Kernel::acc_len`]), zeroed before the call; the backend
//!   folds the partials into a zeroed accumulator with [`combine`], in chunk
//!   order, so the result depends only on how the index space was cut.
//!
//! The index space counts elements ([`Layout::Elements`]) or, for a kernel
//! that declares [`Layout::Rows`], whole rows of an n-D array (its last axis):
//! such a kernel gets whole rows per chunk.
//!
//! Nothing here knows about threads or processes: a worker process given the
//! sub-slices of shared arrays for its chunk runs exactly the same code.
//!
//! # Writing a kernel
//!
//! ```
//! use shmproc_kernels::{
//!     for_same_numeric, run_chunk, Chunk, Dtype, Kernel, KernelError, Num, ParamSpec, Params,
//!     Signature, Slice, SliceMut,
//! };
//!
//! /// Clamps every element into [lo, hi].
//! struct Clamp;
//!
//! fn clamp<T: Num>(x: &[T], out: &mut [T], lo: f64, hi: f64) {
//!     let (lo, hi) = (T::from_f64(lo), T::from_f64(hi));
//!     for (o, &v) in out.iter_mut().zip(x) {
//!         *o = if v < lo { lo } else if v > hi { hi } else { v };
//!     }
//! }
//!
//! impl Kernel for Clamp {
//!     fn name(&self) -> &'static str { "clamp" }
//!     fn summary(&self) -> &'static str { "clamps each element into [lo, hi]" }
//!     fn params(&self) -> &'static [ParamSpec] {
//!         const P: &[ParamSpec] = &[ParamSpec::new("lo", "0", "lower bound"), ParamSpec::new("hi", "1", "upper bound")];
//!         P
//!     }
//!     fn signature(&self) -> Signature { Signature::map(&Dtype::NUMERIC) }
//!     fn run(&self, p: &Params, chunk: Chunk<'_>) -> Result<(), KernelError> {
//!         let (lo, hi) = (p.float("lo")?, p.float("hi")?);
//!         let x = chunk.x()?;
//!         for_same_numeric!(x, chunk.out, |x, o| clamp(x, o, lo, hi), else => unreachable!())
//!         ; Ok(())
//!     }
//! }
//!
//! let p = Params::resolve(Clamp.params(), ["hi=10"])?;
//! let mut out = [0i32; 3];
//! run_chunk(&Clamp, &p, Chunk::map(0..3, Slice::I32(&[-5, 5, 50]), SliceMut::I32(&mut out)))?;
//! assert_eq!(out, [0, 5, 10]);
//! # Ok::<(), KernelError>(())
//! ```
//!
//! (`run_chunk` has checked the element types against the signature before
//! `run` is called, so the `else` arm is never taken.)

use crate::{Dtype, KernelError, ParamSpec, Params, Slice, SliceMut};
use std::fmt;
use std::ops::Range;

/// What a kernel writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// One output element per input element (or per index, for a generated
    /// kernel).
    Map,
    /// Like [`Kind::Map`], and the output's prior contents are an operand
    /// (saxpy's `y`): the kernel updates the output in place.
    InPlace,
    /// A fixed-length accumulator ([`Kernel::acc_len`]); partials are folded
    /// with [`Kernel::combine`].
    Reduce,
}

/// What one index of the index space stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layout {
    /// One element: chunks are any run of elements (of the flattened, C-order
    /// array), and the output has the input's shape.
    Elements,
    /// One row: the last axis of an n-D C-order array (a 1-D array is one
    /// row). Chunks are whole rows; the output has the input's shape.
    Rows,
}

/// A kernel's data shape: how many inputs, of which element types, what it
/// writes, and what an index is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signature {
    /// Number of input arrays: 0 (a generated kernel: the output is a
    /// function of the index), 1, or 2 (of the same element type and
    /// shape).
    pub inputs: usize,
    /// The input element types accepted (ignored without inputs).
    pub dtypes: &'static [Dtype],
    /// What it writes.
    pub kind: Kind,
    /// What an index stands for.
    pub layout: Layout,
}

impl Signature {
    /// A map over one input of these element types.
    pub const fn map(dtypes: &'static [Dtype]) -> Self {
        Signature {
            inputs: 1,
            dtypes,
            kind: Kind::Map,
            layout: Layout::Elements,
        }
    }

    /// An in-place map: `out = f(x, out)`.
    pub const fn in_place(dtypes: &'static [Dtype]) -> Self {
        Signature {
            kind: Kind::InPlace,
            ..Signature::map(dtypes)
        }
    }

    /// A reduction over one input of these element types.
    pub const fn reduce(dtypes: &'static [Dtype]) -> Self {
        Signature {
            kind: Kind::Reduce,
            ..Signature::map(dtypes)
        }
    }

    /// A kernel of the index alone: no input.
    pub const fn generated(kind: Kind) -> Self {
        Signature {
            inputs: 0,
            dtypes: &[],
            kind,
            layout: Layout::Elements,
        }
    }

    /// The same with two inputs of one element type (`x` and `y`).
    pub const fn pair(self) -> Self {
        Signature { inputs: 2, ..self }
    }

    /// The same over whole rows ([`Layout::Rows`]).
    pub const fn rows(self) -> Self {
        Signature {
            layout: Layout::Rows,
            ..self
        }
    }

    /// Whether the kernel accepts inputs of `dtype`.
    pub fn accepts(&self, dtype: Dtype) -> bool {
        self.inputs > 0 && self.dtypes.contains(&dtype)
    }
}

/// One chunk of a run, as a kernel sees it.
#[derive(Debug)]
pub struct Chunk<'a> {
    /// The chunk's indices in the run's index space (elements, or rows for
    /// [`Layout::Rows`]).
    pub range: Range<usize>,
    /// Elements per row for [`Layout::Rows`] (the last axis); 1 for
    /// [`Layout::Elements`].
    pub row_len: usize,
    /// The first input's elements for the chunk (`None` for a generated kernel).
    pub x: Option<Slice<'a>>,
    /// The second input's elements (two-input kernels).
    pub y: Option<Slice<'a>>,
    /// The chunk's output elements (maps) or its zeroed partial accumulator
    /// (reductions).
    pub out: SliceMut<'a>,
}

impl<'a> Chunk<'a> {
    /// A chunk of a one-input element kernel.
    pub fn map(range: Range<usize>, x: Slice<'a>, out: SliceMut<'a>) -> Self {
        Chunk {
            range,
            row_len: 1,
            x: Some(x),
            y: None,
            out,
        }
    }

    /// A chunk of a generated kernel.
    pub fn generated(range: Range<usize>, out: SliceMut<'a>) -> Self {
        Chunk {
            range,
            row_len: 1,
            x: None,
            y: None,
            out,
        }
    }

    /// The first input, or an error for a chunk without one.
    ///
    /// # Errors
    /// [`KernelError::WrongDtype`] ("no input").
    pub fn x(&self) -> Result<Slice<'a>, KernelError> {
        self.x.ok_or_else(|| no_input("an input"))
    }

    /// The second input, or an error for a chunk without one.
    ///
    /// # Errors
    /// [`KernelError::WrongDtype`] ("no second input").
    pub fn y(&self) -> Result<Slice<'a>, KernelError> {
        self.y.ok_or_else(|| no_input("a second input"))
    }

    /// Number of elements in the chunk's input: `range.len() * row_len`.
    pub fn elements(&self) -> usize {
        self.range.len().saturating_mul(self.row_len)
    }
}

fn no_input(what: &str) -> KernelError {
    KernelError::WrongDtype {
        kernel: "?",
        expected: what.to_owned(),
        found: "no input".to_owned(),
    }
}

/// A numeric kernel over chunks of an index space, run the same way by every
/// backend (sequential, threads, rayon, worker processes). See the
/// [module docs](self) for an example.
///
/// Implement [`name`](Kernel::name), [`summary`](Kernel::summary),
/// [`signature`](Kernel::signature) and [`run`](Kernel::run); the rest have
/// defaults for an element-wise map whose output has the input's type.
/// `run` is only called through [`run_chunk`], after the element types and
/// lengths were checked against the signature.
pub trait Kernel: Send + Sync + 'static {
    /// The name on the command line (`shmproc run NAME`).
    fn name(&self) -> &'static str;

    /// One line for `shmproc kernels`.
    fn summary(&self) -> &'static str;

    /// The parameters the kernel reads, with defaults.
    fn params(&self) -> &'static [ParamSpec] {
        const P: &[ParamSpec] = &[];
        P
    }

    /// Inputs, element types, output kind, layout.
    fn signature(&self) -> Signature;

    /// Element type of the output (map) or accumulator (reduce) for inputs of
    /// `input` (`None` for a generated kernel). Default: the input's type,
    /// `u64` without input.
    fn output_dtype(&self, input: Option<Dtype>) -> Dtype {
        input.unwrap_or(Dtype::U64)
    }

    /// Checks the parameters (before any chunk runs).
    ///
    /// # Errors
    /// [`KernelError::BadParam`] naming the first bad parameter.
    fn check(&self, params: &Params) -> Result<(), KernelError> {
        let _ = params;
        Ok(())
    }

    /// Length of a reduction's accumulator (1 by default; ignored for maps).
    fn acc_len(&self, params: &Params) -> usize {
        let _ = params;
        1
    }

    /// The index-space size the parameters imply, if they do (a generated
    /// image: `width * height`).
    fn natural_len(&self, params: &Params) -> Option<usize> {
        let _ = params;
        None
    }

    /// The largest index-space size the parameters allow.
    fn max_len(&self, params: &Params) -> usize {
        let _ = params;
        usize::MAX
    }

    /// Runs one chunk (see [`Chunk`]).
    ///
    /// # Errors
    /// A [`KernelError`]; nothing should be written then.
    fn run(&self, params: &Params, chunk: Chunk<'_>) -> Result<(), KernelError>;

    /// Folds a chunk's `partial` accumulator into `acc`. Default: elementwise
    /// addition, wrapping for integers.
    ///
    /// # Errors
    /// [`KernelError::WrongDtype`] for mismatched types or lengths.
    fn combine(&self, acc: SliceMut<'_>, partial: Slice<'_>) -> Result<(), KernelError> {
        add_into(self.name(), acc, partial)
    }
}

impl fmt::Debug for dyn Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kernel")
            .field("name", &self.name())
            .field("signature", &self.signature())
            .finish()
    }
}

/// Elementwise `acc += partial`, wrapping for integers, for accumulators of
/// one type and length.
///
/// # Errors
/// [`KernelError::WrongDtype`] for another type, [`KernelError::LengthMismatch`].
pub fn add_into(
    kernel: &'static str,
    acc: SliceMut<'_>,
    partial: Slice<'_>,
) -> Result<(), KernelError> {
    if acc.len() != partial.len() {
        return Err(KernelError::LengthMismatch {
            kernel,
            what: "partial accumulator",
            expected: acc.len(),
            found: partial.len(),
        });
    }
    let (ad, pd) = (acc.dtype(), partial.dtype());
    crate::for_same_numeric!(partial, acc, |p, a| {
        for (a, &p) in a.iter_mut().zip(p) {
            *a = crate::Num::add(*a, p);
        }
        Ok(())
    }, else => Err(KernelError::WrongDtype {
        kernel,
        expected: format!("{ad} partials"),
        found: format!("a {pd} partial"),
    }))
}

/// Why the data of a chunk or run does not fit `kernel`'s signature, if it
/// does not: `inputs` the input element type (`None`: no input) and `count`
/// how many inputs.
///
/// # Errors
/// [`KernelError::WrongDtype`] describing what the kernel takes.
pub fn check_inputs(
    kernel: &dyn Kernel,
    input: Option<Dtype>,
    count: usize,
) -> Result<(), KernelError> {
    let sig = kernel.signature();
    let ok = count == sig.inputs && input.is_none_or(|d| sig.accepts(d));
    if ok && (count == 0) == input.is_none() {
        return Ok(());
    }
    let expected = match sig.inputs {
        0 => "no input".to_owned(),
        n => {
            let names: Vec<_> = sig.dtypes.iter().map(|d| d.name()).collect();
            let what = if n == 1 {
                "input"
            } else {
                "two inputs of one type"
            };
            format!("{} {what}", names.join(" or "))
        }
    };
    let found = match (input, count) {
        (None, _) | (_, 0) => "no input".to_owned(),
        (Some(d), 1) => format!("{d} input"),
        (Some(d), n) => format!("{n} {d} inputs"),
    };
    Err(KernelError::WrongDtype {
        kernel: kernel.name(),
        expected,
        found,
    })
}

/// Runs `kernel` on one chunk after checking it against the signature: the
/// parameters ([`Kernel::check`]), the number and element types of the inputs,
/// the output's type ([`Kernel::output_dtype`]), and the lengths (inputs of
/// `range.len() * row_len` elements; the output as long for a map, of
/// [`Kernel::acc_len`] for a reduction, zeroed first). Nothing is written when
/// an error is returned.
///
/// # Errors
/// [`KernelError::BadParam`], [`KernelError::WrongDtype`],
/// [`KernelError::LengthMismatch`], [`KernelError::RangeTooLarge`], and the
/// kernel's own errors.
pub fn run_chunk(
    kernel: &dyn Kernel,
    params: &Params,
    chunk: Chunk<'_>,
) -> Result<(), KernelError> {
    let Chunk {
        range,
        row_len,
        x,
        y,
        mut out,
    } = chunk;
    let name = kernel.name();
    let sig = kernel.signature();
    kernel.check(params)?;
    if range.start > range.end || range.end > kernel.max_len(params) {
        return Err(KernelError::RangeTooLarge {
            kernel: name,
            end: range.end,
            limit: kernel.max_len(params).min(range.start.max(range.end)),
        });
    }
    let row_len = match sig.layout {
        Layout::Elements => 1,
        Layout::Rows => row_len,
    };
    let count = usize::from(x.is_some()) + usize::from(y.is_some());
    let input = x.map(|s| s.dtype());
    check_inputs(kernel, input, count)?;
    if let (Some(x), Some(y)) = (x, y) {
        if x.dtype() != y.dtype() {
            return Err(KernelError::WrongDtype {
                kernel: name,
                expected: format!("a second input of {}", x.dtype()),
                found: format!("{} elements", y.dtype()),
            });
        }
    }
    let want = kernel.output_dtype(input);
    if out.dtype() != want {
        return Err(KernelError::WrongDtype {
            kernel: name,
            expected: format!("{want} output"),
            found: format!("{} output", out.dtype()),
        });
    }
    let elements = range.len().saturating_mul(row_len);
    for (what, s) in [("input", x), ("second input", y)] {
        if let Some(s) = s {
            length(name, what, elements, s.len())?;
        }
    }
    if sig.kind == Kind::Reduce {
        length(name, "accumulator", kernel.acc_len(params), out.len())?;
        out.fill_zero();
    } else {
        length(name, "output", elements, out.len())?;
    }
    kernel.run(
        params,
        Chunk {
            range,
            row_len,
            x,
            y,
            out,
        },
    )
}

fn length(
    kernel: &'static str,
    what: &'static str,
    expected: usize,
    found: usize,
) -> Result<(), KernelError> {
    if expected == found {
        Ok(())
    } else {
        Err(KernelError::LengthMismatch {
            kernel,
            what,
            expected,
            found,
        })
    }
}

/// Folds a chunk's `partial` accumulator into `acc` with the kernel's
/// [`combine`](Kernel::combine), after checking that it is a reduction and the
/// types agree. Call it for the chunks in index order, starting from a zeroed
/// `acc`, and the result is a function of the chunking alone.
///
/// # Errors
/// [`KernelError::WrongDtype`] for a map kernel or mismatched element types,
/// [`KernelError::LengthMismatch`] for mismatched lengths.
pub fn combine(
    kernel: &dyn Kernel,
    acc: SliceMut<'_>,
    partial: Slice<'_>,
) -> Result<(), KernelError> {
    if kernel.signature().kind != Kind::Reduce {
        return Err(KernelError::WrongDtype {
            kernel: kernel.name(),
            expected: "a reduction".to_owned(),
            found: "a map kernel".to_owned(),
        });
    }
    if acc.dtype() != partial.dtype() {
        return Err(KernelError::WrongDtype {
            kernel: kernel.name(),
            expected: format!("{} partials", acc.dtype()),
            found: format!("a {} partial", partial.dtype()),
        });
    }
    kernel.combine(acc, partial)
}
