//! Runtime dispatch to vector instructions, and the compensated lanes the
//! reductions accumulate in.
//!
//! Every hot kernel has one body, written once, compiled three times: for
//! the baseline target (any x86_64, or any other architecture), with AVX2,
//! and with AVX-512 (`#[target_feature]`). [`Level::current`] picks the best
//! the CPU has, detected once (`is_x86_feature_detected!`); the environment
//! variable `SHMPROC_SIMD=portable|avx2|avx512` caps it (to compare the
//! paths, or to rule one out).
//!
//! **The paths compute the same bits.** Element-wise kernels do the same
//! operations per element whatever the vector width. The floating-point
//! reductions fix their order independently of the width: element `i` of a
//! chunk goes to lane `i % 16` of [`LANES`] compensated lanes, and the
//! AVX2 (4 x 4 lanes) and AVX-512 (2 x 8 lanes) paths perform, per lane,
//! exactly the additions the portable loop performs (no fused multiply-add,
//! no reassociation). Tests compare every path bit for bit.
//!
//! Checked in the assembly (`objdump -d` of the release build): the AVX-512
//! `power` over `u64` is `vpmullq` on `zmm` registers, the AVX2 one the
//! `vpmuludq` sequence on `ymm`; the portable one is scalar `imul`, which is
//! why the vector paths exist. The reductions' lane loops are written with
//! intrinsics because the compiler's own vectorization of 16 compensated
//! lanes was partial and spilled (measured 3x slower than this code).
#![allow(unsafe_code)]

use std::sync::OnceLock;

/// Number of compensated lanes of the floating-point reductions.
pub const LANES: usize = 16;

/// An instruction-set level the kernels run at. Only levels the CPU
/// supports can be obtained ([`Level::current`], [`Level::available`]), so
/// a `Level` in hand is proof that its instructions may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Level(Isa);

/// The instruction sets behind a [`Level`]; public only for
/// [`multiversion!`](crate::multiversion), which matches on it. Holding an
/// `Isa` proves nothing: only a `Level` does.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Level {
    /// The level the kernels use: the best the CPU supports, capped by
    /// `SHMPROC_SIMD` (`portable`, `avx2` or `avx512`; anything else is
    /// ignored). Detected once per process.
    ///
    /// ```
    /// let level = shmproc_kernels::simd::Level::current();
    /// assert!(shmproc_kernels::simd::Level::available().contains(&level));
    /// ```
    pub fn current() -> Level {
        static CURRENT: OnceLock<Level> = OnceLock::new();
        *CURRENT.get_or_init(|| {
            let best = Level::best();
            let cap = std::env::var("SHMPROC_SIMD").ok();
            let capped = Level::available()
                .into_iter()
                .rfind(|l| Some(l.name()) == cap.as_deref());
            capped.map_or(best, |c| c.min(best))
        })
    }

    /// Every level this CPU can run, lowest first (`portable` always).
    pub fn available() -> Vec<Level> {
        let mut v = vec![Level(Isa::Portable)];
        #[cfg(target_arch = "x86_64")]
        {
            if avx2() {
                v.push(Level(Isa::Avx2));
            }
            if avx512() {
                v.push(Level(Isa::Avx512));
            }
        }
        v
    }

    fn best() -> Level {
        Level::available()
            .last()
            .copied()
            .unwrap_or(Level(Isa::Portable))
    }

    /// `portable`, `avx2` or `avx512`.
    pub fn name(self) -> &'static str {
        match self.0 {
            Isa::Portable => "portable",
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => "avx2",
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => "avx512",
        }
    }

    /// The instruction set (for [`multiversion!`](crate::multiversion)).
    #[doc(hidden)]
    pub fn isa(self) -> Isa {
        self.0
    }
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(target_arch = "x86_64")]
fn avx2() -> bool {
    is_x86_feature_detected!("avx2")
}

#[cfg(target_arch = "x86_64")]
fn avx512() -> bool {
    is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512dq")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl")
        && avx2()
}

/// Defines `$name(level, args) -> ret`, which runs the `#[inline(always)]`
/// function `$body(args)` compiled for `level`: AVX-512, AVX2 or the
/// baseline target. The body is the same code in all three, so it computes
/// the same results as long as it does not depend on the vector width
/// itself (plain Rust never does: the compiler neither reassociates
/// floating-point operations nor fuses them).
///
/// This is how the built-in kernels reach vector speed, and a user's kernel
/// can do the same: write the loop as a generic `#[inline(always)]`
/// function (without the attribute the body is called, not compiled for
/// the level), and call the generated function with [`Level::current`].
///
/// ```
/// use shmproc_kernels::{multiversion, simd::Level, Num};
///
/// #[inline(always)]
/// fn triple_body<T: Num>(x: &[T], out: &mut [T]) {
///     for (o, &v) in out.iter_mut().zip(x) {
///         *o = v.add(v).add(v);
///     }
/// }
/// multiversion!(fn triple<T: Num>(x: &[T], out: &mut [T]) => triple_body);
///
/// let mut out = [0u64; 3];
/// triple(Level::current(), &[1, 2, 3], &mut out);
/// assert_eq!(out, [3, 6, 9]);
/// ```
#[macro_export]
macro_rules! multiversion {
    ($(#[$m:meta])* $vis:vis fn $name:ident $(<$($g:ident : $bound:path),*>)?
        ($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? => $body:ident) => {
        $(#[$m])*
        #[allow(unsafe_code)]
        $vis fn $name $(<$($g: $bound),*>)? (level: $crate::simd::Level, $($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                fn avx2 $(<$($g: $bound),*>)? ($($arg: $ty),*) $(-> $ret)? { $body($($arg),*) }
                #[target_feature(enable = "avx2,avx512f,avx512dq,avx512bw,avx512vl")]
                fn avx512 $(<$($g: $bound),*>)? ($($arg: $ty),*) $(-> $ret)? { $body($($arg),*) }
                match level.isa() {
                    // SAFETY: a `Level` is only made for instruction sets the
                    // CPU was detected to support (see `Level::available`).
                    $crate::simd::Isa::Avx512 => return unsafe { avx512($($arg),*) },
                    // SAFETY: as above.
                    $crate::simd::Isa::Avx2 => return unsafe { avx2($($arg),*) },
                    $crate::simd::Isa::Portable => {}
                }
            }
            #[cfg(not(target_arch = "x86_64"))]
            let _ = level;
            $body($($arg),*)
        }
    };
}

/// [`LANES`] compensated running sums: lane `k` holds a sum `s[k]` and the
/// accumulated rounding errors `c[k]` of its additions.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lanes {
    s: [f64; LANES],
    c: [f64; LANES],
}

/// Knuth's TwoSum: `s + v` rounded into `s`, its exact rounding error added
/// into `c`. The same error Neumaier's branch computes, without a branch.
#[inline(always)]
fn two_sum(s: &mut f64, c: &mut f64, v: f64) {
    let t = *s + v;
    let z = t - *s;
    let e = (*s - (t - z)) + (v - z);
    *c += e;
    *s = t;
}

impl Lanes {
    pub(crate) fn new() -> Lanes {
        Lanes {
            s: [0.0; LANES],
            c: [0.0; LANES],
        }
    }

    /// Adds `v` into lane `k`.
    #[inline(always)]
    pub(crate) fn add(&mut self, k: usize, v: f64) {
        two_sum(&mut self.s[k], &mut self.c[k], v);
    }

    /// The total: lanes' sums `s[0], ..., s[15]` added in that order with
    /// compensation, then the compensation terms `c[0], ..., c[15]` added in
    /// that order, then both. When the sum of the lanes' sums is not finite
    /// (an infinity or NaN in the input, or an overflow) it is returned as
    /// is, as a plain sum would be.
    pub(crate) fn total(&self) -> f64 {
        let (mut s, mut c) = (0.0, 0.0);
        for &v in &self.s {
            two_sum(&mut s, &mut c, v);
        }
        if !s.is_finite() {
            return s;
        }
        for &v in &self.c {
            c += v;
        }
        s + c
    }
}

/// How a reduction reads an element: `f64` or `f32` (converted exactly).
pub(crate) trait Float: Copy {
    fn f64(self) -> f64;
}

impl Float for f64 {
    #[inline(always)]
    fn f64(self) -> f64 {
        self
    }
}

impl Float for f32 {
    #[inline(always)]
    fn f64(self) -> f64 {
        f64::from(self)
    }
}

/// Lane-wise compensated sum of `x` (`y = None`) or of the products
/// `x[i] * y[i]` into `lanes`, element `i` into lane `i % 16`.
pub(crate) fn accumulate<T: FloatSimd>(level: Level, x: &[T], y: Option<&[T]>, lanes: &mut Lanes) {
    let done = match level.isa() {
        Isa::Portable => 0,
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the level proves AVX2 is supported.
        Isa::Avx2 => unsafe { T::lanes_avx2(x, y, lanes) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the level proves AVX-512 F/DQ/BW/VL are supported.
        Isa::Avx512 => unsafe { T::lanes_avx512(x, y, lanes) },
    };
    // The rest (all of it on the portable path) element by element; `done`
    // is a multiple of LANES, so element i still goes to lane i % LANES.
    match y {
        None => {
            for (i, v) in x.iter().enumerate().skip(done) {
                lanes.add(i % LANES, v.f64());
            }
        }
        Some(y) => {
            for (i, (a, b)) in x.iter().zip(y).enumerate().skip(done) {
                lanes.add(i % LANES, a.f64() * b.f64());
            }
        }
    }
}

/// The vector lane loops of one element type.
pub(crate) trait FloatSimd: Float {
    /// Runs whole blocks of [`LANES`] elements through the lanes with AVX2;
    /// returns how many elements it took.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[cfg(target_arch = "x86_64")]
    unsafe fn lanes_avx2(x: &[Self], y: Option<&[Self]>, lanes: &mut Lanes) -> usize;
    /// As [`lanes_avx2`](Self::lanes_avx2) with AVX-512.
    ///
    /// # Safety
    /// The CPU must support AVX-512 F.
    #[cfg(target_arch = "x86_64")]
    unsafe fn lanes_avx512(x: &[Self], y: Option<&[Self]>, lanes: &mut Lanes) -> usize;
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Lanes, LANES};
    use std::arch::x86_64::*;

    /// How far ahead of the lane loop the input is prefetched, in elements.
    const PREFETCH: usize = 128;

    /// Loads of `$w` elements as f64.
    ///
    /// # Safety
    /// `p` must be valid for reading that many elements; the CPU must
    /// support the instructions.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn ld4_f64(p: *const f64) -> __m256d {
        // SAFETY: the caller's contract.
        unsafe { _mm256_loadu_pd(p) }
    }
    /// As [`ld4_f64`], four `f32` converted exactly.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn ld4_f32(p: *const f32) -> __m256d {
        // SAFETY: the caller's contract.
        unsafe { _mm256_cvtps_pd(_mm_loadu_ps(p)) }
    }
    /// As [`ld4_f64`], eight elements.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn ld8_f64(p: *const f64) -> __m512d {
        // SAFETY: the caller's contract.
        unsafe { _mm512_loadu_pd(p) }
    }
    /// As [`ld8_f64`], eight `f32` converted exactly.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn ld8_f32(p: *const f32) -> __m512d {
        // SAFETY: the caller's contract.
        unsafe { _mm512_cvtps_pd(_mm256_loadu_ps(p)) }
    }

    /// Defines the lane loop for one vector width: `$w` f64 per register,
    /// `LANES / $w` registers of sums and as many of errors.
    macro_rules! lane_loop {
        ($fn:ident, $feat:literal, $v:ty, $w:literal, $t:ty, $load:ident,
         $zero:ident, $add:ident, $sub:ident, $mul:ident, $loadu:ident, $storeu:ident) => {
            #[target_feature(enable = $feat)]
            pub(super) fn $fn(x: &[$t], y: Option<&[$t]>, lanes: &mut Lanes) -> usize {
                const R: usize = LANES / $w;
                let blocks = match y {
                    Some(y) => x.len().min(y.len()) / LANES,
                    None => x.len() / LANES,
                };
                let mut s: [$v; R] = [$zero(); R];
                let mut c: [$v; R] = [$zero(); R];
                for r in 0..R {
                    // SAFETY: lanes.s and lanes.c hold LANES = R * $w f64.
                    unsafe {
                        s[r] = $loadu(lanes.s.as_ptr().add(r * $w));
                        c[r] = $loadu(lanes.c.as_ptr().add(r * $w));
                    }
                }
                for b in 0..blocks {
                    // Every cache line of the next blocks, ahead of the
                    // hardware prefetcher (measured on 256 MiB, one thread: 34 -> 21 ms;
                    // 128 elements ahead did best of 32 to 2048).
                    let at = b * LANES + PREFETCH;
                    for line in (0..LANES).step_by(64 / std::mem::size_of::<$t>()) {
                        _mm_prefetch::<_MM_HINT_T0>(x.as_ptr().wrapping_add(at + line) as *const i8);
                        if let Some(y) = y {
                            _mm_prefetch::<_MM_HINT_T0>(y.as_ptr().wrapping_add(at + line) as *const i8);
                        }
                    }
                    for r in 0..R {
                        let at = b * LANES + r * $w;
                        // SAFETY: at + $w <= blocks * LANES <= the length
                        // of x (and of y, when given).
                        let v = unsafe {
                            let a = $load(x.as_ptr().add(at));
                            match y {
                                Some(y) => $mul(a, $load(y.as_ptr().add(at))),
                                None => a,
                            }
                        };
                        // TwoSum, as `super::two_sum`, on $w lanes at once.
                        let t = $add(s[r], v);
                        let z = $sub(t, s[r]);
                        let e = $add($sub(s[r], $sub(t, z)), $sub(v, z));
                        c[r] = $add(c[r], e);
                        s[r] = t;
                    }
                }
                for r in 0..R {
                    // SAFETY: as for the loads above.
                    unsafe {
                        $storeu(lanes.s.as_mut_ptr().add(r * $w), s[r]);
                        $storeu(lanes.c.as_mut_ptr().add(r * $w), c[r]);
                    }
                }
                blocks * LANES
            }
        };
    }

    lane_loop!(
        f64_avx2,
        "avx2",
        __m256d,
        4,
        f64,
        ld4_f64,
        _mm256_setzero_pd,
        _mm256_add_pd,
        _mm256_sub_pd,
        _mm256_mul_pd,
        _mm256_loadu_pd,
        _mm256_storeu_pd
    );
    lane_loop!(
        f32_avx2,
        "avx2",
        __m256d,
        4,
        f32,
        ld4_f32,
        _mm256_setzero_pd,
        _mm256_add_pd,
        _mm256_sub_pd,
        _mm256_mul_pd,
        _mm256_loadu_pd,
        _mm256_storeu_pd
    );
    lane_loop!(
        f64_avx512,
        "avx512f",
        __m512d,
        8,
        f64,
        ld8_f64,
        _mm512_setzero_pd,
        _mm512_add_pd,
        _mm512_sub_pd,
        _mm512_mul_pd,
        _mm512_loadu_pd,
        _mm512_storeu_pd
    );
    lane_loop!(
        f32_avx512,
        "avx512f",
        __m512d,
        8,
        f32,
        ld8_f32,
        _mm512_setzero_pd,
        _mm512_add_pd,
        _mm512_sub_pd,
        _mm512_mul_pd,
        _mm512_loadu_pd,
        _mm512_storeu_pd
    );
}

#[cfg(target_arch = "x86_64")]
impl FloatSimd for f64 {
    unsafe fn lanes_avx2(x: &[f64], y: Option<&[f64]>, lanes: &mut Lanes) -> usize {
        // SAFETY: the caller guarantees AVX2.
        unsafe { x86::f64_avx2(x, y, lanes) }
    }
    unsafe fn lanes_avx512(x: &[f64], y: Option<&[f64]>, lanes: &mut Lanes) -> usize {
        // SAFETY: the caller guarantees AVX-512 F.
        unsafe { x86::f64_avx512(x, y, lanes) }
    }
}

#[cfg(target_arch = "x86_64")]
impl FloatSimd for f32 {
    unsafe fn lanes_avx2(x: &[f32], y: Option<&[f32]>, lanes: &mut Lanes) -> usize {
        // SAFETY: the caller guarantees AVX2.
        unsafe { x86::f32_avx2(x, y, lanes) }
    }
    unsafe fn lanes_avx512(x: &[f32], y: Option<&[f32]>, lanes: &mut Lanes) -> usize {
        // SAFETY: the caller guarantees AVX-512 F.
        unsafe { x86::f32_avx512(x, y, lanes) }
    }
}

#[cfg(not(target_arch = "x86_64"))]
impl FloatSimd for f64 {}
#[cfg(not(target_arch = "x86_64"))]
impl FloatSimd for f32 {}
