//! Element types: [`Dtype`], the typed [`Element`] and [`Num`] traits, and the
//! type-erased slices a kernel sees ([`Slice`], [`SliceMut`]) and owns
//! ([`Values`]).
//!
//! A `bool` element is one byte, as in numpy (`|b1`); kernels read it as
//! [`Slice::Bool`] over `u8`, any nonzero byte being true, so a file holding
//! other bytes than 0 and 1 is still sound to read.

use std::fmt;
use std::ops::Range;
use std::str::FromStr;

/// The element type of an array.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Dtype {
    /// One byte, nonzero is true (numpy `|b1`).
    Bool,
    /// `i8` (numpy `|i1`).
    I8,
    /// `i16` (numpy `<i2`).
    I16,
    /// `i32` (numpy `<i4`).
    I32,
    /// `i64` (numpy `<i8`).
    I64,
    /// `u8` (numpy `|u1`).
    U8,
    /// `u16` (numpy `<u2`).
    U16,
    /// `u32` (numpy `<u4`).
    U32,
    /// `u64` (numpy `<u8`).
    U64,
    /// `f32` (numpy `<f4`).
    F32,
    /// `f64` (numpy `<f8`).
    F64,
}

impl Dtype {
    /// Every element type.
    pub const ALL: [Dtype; 11] = [
        Dtype::Bool,
        Dtype::I8,
        Dtype::I16,
        Dtype::I32,
        Dtype::I64,
        Dtype::U8,
        Dtype::U16,
        Dtype::U32,
        Dtype::U64,
        Dtype::F32,
        Dtype::F64,
    ];

    /// Every numeric type (all but `bool`).
    pub const NUMERIC: [Dtype; 10] = [
        Dtype::I8,
        Dtype::I16,
        Dtype::I32,
        Dtype::I64,
        Dtype::U8,
        Dtype::U16,
        Dtype::U32,
        Dtype::U64,
        Dtype::F32,
        Dtype::F64,
    ];

    /// The integer types.
    pub const INTEGER: [Dtype; 8] = [
        Dtype::I8,
        Dtype::I16,
        Dtype::I32,
        Dtype::I64,
        Dtype::U8,
        Dtype::U16,
        Dtype::U32,
        Dtype::U64,
    ];

    /// The floating-point types.
    pub const FLOAT: [Dtype; 2] = [Dtype::F32, Dtype::F64];

    /// The Rust name: `"bool"`, `"i8"`, ..., `"f64"`.
    ///
    /// ```
    /// use shmproc_kernels::Dtype;
    /// assert_eq!(Dtype::F32.name(), "f32");
    /// assert_eq!("u16".parse::<Dtype>(), Ok(Dtype::U16));
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            Dtype::Bool => "bool",
            Dtype::I8 => "i8",
            Dtype::I16 => "i16",
            Dtype::I32 => "i32",
            Dtype::I64 => "i64",
            Dtype::U8 => "u8",
            Dtype::U16 => "u16",
            Dtype::U32 => "u32",
            Dtype::U64 => "u64",
            Dtype::F32 => "f32",
            Dtype::F64 => "f64",
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::Bool | Dtype::I8 | Dtype::U8 => 1,
            Dtype::I16 | Dtype::U16 => 2,
            Dtype::I32 | Dtype::U32 | Dtype::F32 => 4,
            Dtype::I64 | Dtype::U64 | Dtype::F64 => 8,
        }
    }

    /// numpy's little-endian type string (`descr`): `"|b1"`, `"<i4"`, `"<f8"`...
    ///
    /// ```
    /// use shmproc_kernels::Dtype;
    /// assert_eq!(Dtype::I32.numpy(), "<i4");
    /// assert_eq!(Dtype::U8.numpy(), "|u1");
    /// ```
    pub fn numpy(self) -> &'static str {
        match self {
            Dtype::Bool => "|b1",
            Dtype::I8 => "|i1",
            Dtype::I16 => "<i2",
            Dtype::I32 => "<i4",
            Dtype::I64 => "<i8",
            Dtype::U8 => "|u1",
            Dtype::U16 => "<u2",
            Dtype::U32 => "<u4",
            Dtype::U64 => "<u8",
            Dtype::F32 => "<f4",
            Dtype::F64 => "<f8",
        }
    }

    /// The type with numpy's kind character (`b`, `i`, `u`, `f`) and size in
    /// bytes, if it is one of ours.
    ///
    /// ```
    /// use shmproc_kernels::Dtype;
    /// assert_eq!(Dtype::from_numpy_kind('f', 4), Some(Dtype::F32));
    /// assert_eq!(Dtype::from_numpy_kind('c', 16), None); // complex
    /// ```
    pub fn from_numpy_kind(kind: char, size: usize) -> Option<Dtype> {
        Dtype::ALL.into_iter().find(|d| {
            d.size() == size
                && match d {
                    Dtype::Bool => kind == 'b',
                    d if d.is_float() => kind == 'f',
                    d if d.is_signed() => kind == 'i',
                    _ => kind == 'u',
                }
        })
    }

    /// Whether this is `f32` or `f64`.
    pub fn is_float(self) -> bool {
        matches!(self, Dtype::F32 | Dtype::F64)
    }

    /// Whether this is a signed integer type.
    pub fn is_signed(self) -> bool {
        matches!(self, Dtype::I8 | Dtype::I16 | Dtype::I32 | Dtype::I64)
    }

    /// Whether this is an integer type (signed or not; not `bool`).
    pub fn is_integer(self) -> bool {
        self != Dtype::Bool && !self.is_float()
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Dtype {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Dtype::ALL
            .into_iter()
            .find(|d| d.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Dtype::ALL.iter().map(|d| d.name()).collect();
                format!(
                    "unknown dtype {s:?} (expected one of: {})",
                    names.join(", ")
                )
            })
    }
}

mod sealed {
    pub trait Sealed {}
}

/// A numeric element type of ours: `i8` to `i64`, `u8` to `u64`, `f32`, `f64`.
/// Sealed: the backends can only hand kernels the types [`Dtype`] names.
///
/// ```
/// use shmproc_kernels::{Element, Dtype, Slice};
/// let x = [1.5f32, 2.5];
/// assert_eq!(f32::DTYPE, Dtype::F32);
/// assert_eq!(f32::of(f32::slice(&x)), Some(&x[..]));
/// assert_eq!(u8::of(Slice::F32(&x)), None);
/// ```
pub trait Element:
    sealed::Sealed + Copy + Default + PartialOrd + fmt::Debug + Send + Sync + 'static
{
    /// The dtype of this type.
    const DTYPE: Dtype;
    /// `x` as a type-erased slice.
    fn slice(x: &[Self]) -> Slice<'_>;
    /// `x` as a type-erased mutable slice.
    fn slice_mut(x: &mut [Self]) -> SliceMut<'_>;
    /// The elements of `s` if it holds this type.
    fn of(s: Slice<'_>) -> Option<&[Self]>;
    /// The elements of `s` if it holds this type.
    fn of_mut(s: SliceMut<'_>) -> Option<&mut [Self]>;
    /// `v` as owned values.
    fn values(v: Vec<Self>) -> Values;
}

/// Arithmetic the generic kernels need, the same for every numeric type:
/// integer arithmetic wraps (like numpy's), conversions are Rust's `as` casts
/// (saturating from floats, truncating between integers).
pub trait Num: Element {
    /// Zero.
    const ZERO: Self;
    /// `self * other`, wrapping for integers.
    fn mul(self, other: Self) -> Self;
    /// `self + other`, wrapping for integers.
    fn add(self, other: Self) -> Self;
    /// `self as f64`.
    fn to_f64(self) -> f64;
    /// `v as Self`.
    fn from_f64(v: f64) -> Self;
    /// `i as Self` (the value of index `i` in a generated `0, 1, 2, ...` input).
    fn from_index(i: u64) -> Self;
}

macro_rules! impl_num {
    ($($t:ty => $v:ident, int: $int:tt;)*) => {$(
        impl sealed::Sealed for $t {}
        impl Element for $t {
            const DTYPE: Dtype = Dtype::$v;
            fn slice(x: &[Self]) -> Slice<'_> { Slice::$v(x) }
            fn slice_mut(x: &mut [Self]) -> SliceMut<'_> { SliceMut::$v(x) }
            fn of(s: Slice<'_>) -> Option<&[Self]> {
                match s { Slice::$v(x) => Some(x), _ => None }
            }
            fn of_mut(s: SliceMut<'_>) -> Option<&mut [Self]> {
                match s { SliceMut::$v(x) => Some(x), _ => None }
            }
            fn values(v: Vec<Self>) -> Values { Values::$v(v) }
        }
        impl Num for $t {
            const ZERO: Self = 0 as $t;
            #[inline]
            fn mul(self, other: Self) -> Self { impl_num!(@mul $int, self, other) }
            #[inline]
            fn add(self, other: Self) -> Self { impl_num!(@add $int, self, other) }
            #[inline]
            fn to_f64(self) -> f64 { self as f64 }
            #[inline]
            fn from_f64(v: f64) -> Self { v as $t }
            #[inline]
            fn from_index(i: u64) -> Self { i as $t }
        }
    )*};
    (@mul true, $a:expr, $b:expr) => { $a.wrapping_mul($b) };
    (@mul false, $a:expr, $b:expr) => { $a * $b };
    (@add true, $a:expr, $b:expr) => { $a.wrapping_add($b) };
    (@add false, $a:expr, $b:expr) => { $a + $b };
}

impl_num! {
    i8 => I8, int: true;
    i16 => I16, int: true;
    i32 => I32, int: true;
    i64 => I64, int: true;
    u8 => U8, int: true;
    u16 => U16, int: true;
    u32 => U32, int: true;
    u64 => U64, int: true;
    f32 => F32, int: false;
    f64 => F64, int: false;
}

/// Runs `$body` with `$x` bound to the typed slice inside a [`Slice`] of any
/// numeric type, and evaluates `$other` for `bool`. The body is compiled once
/// per type, so it can call generic code.
///
/// ```
/// use shmproc_kernels::{for_numeric, Num, Slice};
/// fn total<T: Num>(x: &[T]) -> f64 { x.iter().map(|v| v.to_f64()).sum() }
/// let s = Slice::I16(&[1, 2, 3]);
/// assert_eq!(for_numeric!(s, |x| total(x), bool => 0.0), 6.0);
/// ```
#[macro_export]
macro_rules! for_numeric {
    ($s:expr, |$x:ident| $body:expr, bool => $other:expr) => {
        match $s {
            $crate::Slice::I8($x) => $body,
            $crate::Slice::I16($x) => $body,
            $crate::Slice::I32($x) => $body,
            $crate::Slice::I64($x) => $body,
            $crate::Slice::U8($x) => $body,
            $crate::Slice::U16($x) => $body,
            $crate::Slice::U32($x) => $body,
            $crate::Slice::U64($x) => $body,
            $crate::Slice::F32($x) => $body,
            $crate::Slice::F64($x) => $body,
            $crate::Slice::Bool(_) => $other,
        }
    };
}

/// Runs `$body` with `$x` and `$o` bound to an input [`Slice`] and an output
/// [`SliceMut`] of the same numeric type; evaluates `$other` when the types
/// differ or are `bool`. The body is compiled once per type.
///
/// ```
/// use shmproc_kernels::{for_same_numeric, Num, Slice, SliceMut};
/// fn double<T: Num>(x: &[T], o: &mut [T]) {
///     for (o, &v) in o.iter_mut().zip(x) { *o = v.add(v) }
/// }
/// let mut out = [0u32; 2];
/// for_same_numeric!(Slice::U32(&[1, 2]), SliceMut::U32(&mut out), |x, o| double(x, o), else => panic!());
/// assert_eq!(out, [2, 4]);
/// ```
#[macro_export]
macro_rules! for_same_numeric {
    ($s:expr, $out:expr, |$x:ident, $o:ident| $body:expr, else => $other:expr) => {
        match ($s, $out) {
            ($crate::Slice::I8($x), $crate::SliceMut::I8($o)) => $body,
            ($crate::Slice::I16($x), $crate::SliceMut::I16($o)) => $body,
            ($crate::Slice::I32($x), $crate::SliceMut::I32($o)) => $body,
            ($crate::Slice::I64($x), $crate::SliceMut::I64($o)) => $body,
            ($crate::Slice::U8($x), $crate::SliceMut::U8($o)) => $body,
            ($crate::Slice::U16($x), $crate::SliceMut::U16($o)) => $body,
            ($crate::Slice::U32($x), $crate::SliceMut::U32($o)) => $body,
            ($crate::Slice::U64($x), $crate::SliceMut::U64($o)) => $body,
            ($crate::Slice::F32($x), $crate::SliceMut::F32($o)) => $body,
            ($crate::Slice::F64($x), $crate::SliceMut::F64($o)) => $body,
            _ => $other,
        }
    };
}

macro_rules! erased {
    ($($v:ident($t:ty)),* $(,)?) => {
        /// Read-only elements of any [`Dtype`] (`bool` as bytes).
        #[derive(Debug, Clone, Copy, PartialEq)]
        pub enum Slice<'a> {
            $(#[doc = concat!("`", stringify!($t), "` elements.")] $v(&'a [$t]),)*
        }

        /// Writable elements of any [`Dtype`] (`bool` as bytes).
        #[derive(Debug, PartialEq)]
        pub enum SliceMut<'a> {
            $(#[doc = concat!("`", stringify!($t), "` elements.")] $v(&'a mut [$t]),)*
        }

        /// Owned elements of any [`Dtype`] (`bool` as bytes).
        #[derive(Debug, Clone, PartialEq)]
        #[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
        pub enum Values {
            $(#[doc = concat!("`", stringify!($t), "` elements.")] $v(Vec<$t>),)*
        }

        impl<'a> Slice<'a> {
            /// Number of elements.
            pub fn len(&self) -> usize { match self { $(Slice::$v(s) => s.len(),)* } }
            /// Whether there are no elements.
            pub fn is_empty(&self) -> bool { self.len() == 0 }
            /// Element type.
            pub fn dtype(&self) -> Dtype { match self { $(Slice::$v(_) => Dtype::$v,)* } }
            /// The elements in `range`.
            ///
            /// # Panics
            /// If `range` is out of bounds.
            pub fn slice(&self, range: Range<usize>) -> Slice<'a> {
                match *self { $(Slice::$v(s) => Slice::$v(&s[range]),)* }
            }
            /// A copy of the elements.
            pub fn to_values(&self) -> Values {
                match *self { $(Slice::$v(s) => Values::$v(s.to_vec()),)* }
            }
            /// Wrapping sum of the elements: of the integers (bools as 0 or 1
            /// bytes), of the IEEE-754 bit patterns for floats (`to_bits`, as
            /// `u64`), so equal outputs give equal checksums bit for bit.
            ///
            /// ```
            /// use shmproc_kernels::Slice;
            /// assert_eq!(Slice::U64(&[u64::MAX, 2]).checksum(), 1);
            /// assert_eq!(Slice::I8(&[-1]).checksum(), u64::MAX);
            /// assert_eq!(Slice::F64(&[1.0]).checksum(), 1.0f64.to_bits());
            /// assert_ne!(Slice::F32(&[0.0]).checksum(), Slice::F32(&[-0.0]).checksum());
            /// ```
            pub fn checksum(&self) -> u64 {
                let level = crate::simd::Level::current();
                match *self { $(Slice::$v(s) => checksum_at(level, s),)* }
            }
        }

        impl<'a> SliceMut<'a> {
            /// Number of elements.
            pub fn len(&self) -> usize { match self { $(SliceMut::$v(s) => s.len(),)* } }
            /// Whether there are no elements.
            pub fn is_empty(&self) -> bool { self.len() == 0 }
            /// Element type.
            pub fn dtype(&self) -> Dtype { match self { $(SliceMut::$v(_) => Dtype::$v,)* } }
            /// A shorter-lived `SliceMut` over the same elements.
            pub fn reborrow(&mut self) -> SliceMut<'_> {
                match self { $(SliceMut::$v(s) => SliceMut::$v(s),)* }
            }
            /// A read-only view of the same elements.
            pub fn as_slice(&self) -> Slice<'_> {
                match self { $(SliceMut::$v(s) => Slice::$v(s),)* }
            }
            /// The elements in `range`.
            ///
            /// # Panics
            /// If `range` is out of bounds.
            pub fn into_range(self, range: Range<usize>) -> SliceMut<'a> {
                match self { $(SliceMut::$v(s) => SliceMut::$v(&mut s[range]),)* }
            }
            /// Splits into `[..mid]` and `[mid..]`.
            ///
            /// # Panics
            /// If `mid > self.len()`.
            ///
            /// ```
            /// use shmproc_kernels::SliceMut;
            /// let mut v = [0i32; 5];
            /// let (a, b) = SliceMut::I32(&mut v).split_at(2);
            /// assert_eq!((a.len(), b.len()), (2, 3));
            /// ```
            pub fn split_at(self, mid: usize) -> (SliceMut<'a>, SliceMut<'a>) {
                match self {
                    $(SliceMut::$v(s) => { let (a, b) = s.split_at_mut(mid); (SliceMut::$v(a), SliceMut::$v(b)) })*
                }
            }
            /// Sets every element to zero (false).
            pub fn fill_zero(&mut self) {
                match self { $(SliceMut::$v(s) => s.fill(Default::default()),)* }
            }
            /// Copies `src` in.
            ///
            /// # Errors
            /// A message if `src` has another type or length.
            pub fn copy_from(&mut self, src: Slice<'_>) -> Result<(), String> {
                match (self, src) {
                    $((SliceMut::$v(d), Slice::$v(s)) if d.len() == s.len() => { d.copy_from_slice(s); Ok(()) })*
                    (d, s) => Err(format!("cannot copy {} {} into {} {}", s.len(), s.dtype(), d.len(), d.dtype())),
                }
            }
        }

        impl Values {
            /// `len` zeros (false) of type `dtype`.
            pub fn zeros(dtype: Dtype, len: usize) -> Self {
                match dtype { $(Dtype::$v => Values::$v(vec![Default::default(); len]),)* }
            }
            /// Number of elements.
            pub fn len(&self) -> usize { match self { $(Values::$v(v) => v.len(),)* } }
            /// Whether there are no elements.
            pub fn is_empty(&self) -> bool { self.len() == 0 }
            /// Element type.
            pub fn dtype(&self) -> Dtype { match self { $(Values::$v(_) => Dtype::$v,)* } }
            /// The values as a [`Slice`].
            pub fn as_slice(&self) -> Slice<'_> { match self { $(Values::$v(v) => Slice::$v(v),)* } }
            /// The values as a [`SliceMut`].
            pub fn as_slice_mut(&mut self) -> SliceMut<'_> { match self { $(Values::$v(v) => SliceMut::$v(v),)* } }
        }
    };
}

erased! {
    Bool(u8), I8(i8), I16(i16), I32(i32), I64(i64), U8(u8), U16(u16), U32(u32), U64(u64), F32(f32), F64(f64),
}

/// How a value enters a checksum: integers sign- or zero-extended to 64
/// bits (so wrapping sums and products of these are the `i64` / `u64`
/// wrapping results), floats as their IEEE-754 bits.
pub(crate) trait Checksum: Copy {
    fn bits(self) -> u64;
}

#[inline(always)]
fn checksum_body<T: Checksum>(s: &[T]) -> u64 {
    s.iter().fold(0u64, |a, &x| a.wrapping_add(x.bits()))
}

crate::multiversion!(pub(crate) fn checksum_at<T: Checksum>(s: &[T]) -> u64 => checksum_body);

#[inline(always)]
fn wrapping_dot_body<T: Checksum>(x: &[T], y: &[T]) -> u64 {
    x.iter().zip(y).fold(0u64, |a, (&p, &q)| {
        a.wrapping_add(p.bits().wrapping_mul(q.bits()))
    })
}

crate::multiversion!(
    /// Wrapping sum of the products of the 64-bit extensions of `x[i]` and
    /// `y[i]` (for integers: the `i64` / `u64` wrapping dot product).
    pub(crate) fn wrapping_dot_at<T: Checksum>(x: &[T], y: &[T]) -> u64 => wrapping_dot_body
);

macro_rules! checksum_int {
    ($($t:ty),*) => {$(impl Checksum for $t { #[inline(always)] fn bits(self) -> u64 { self as u64 } })*};
}
checksum_int!(i8, i16, i32, i64, u8, u16, u32, u64);

impl Checksum for f32 {
    #[inline(always)]
    fn bits(self) -> u64 {
        u64::from(self.to_bits())
    }
}

impl Checksum for f64 {
    #[inline(always)]
    fn bits(self) -> u64 {
        self.to_bits()
    }
}
