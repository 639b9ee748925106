//! Reductions: a slice in, a small fixed-size accumulator out.

use crate::Num;

use crate::multiversion;
use crate::simd::{accumulate, Lanes, Level, LANES};
use crate::Slice;

/// Compensated sum of `x`: the error does not grow with the length, and the
/// result depends only on the order of `x` (the same bits on every CPU).
///
/// Summation order: element `i` is added into lane `i % 16` of 16 running
/// sums, each compensated (the exact rounding error of every addition,
/// Knuth's TwoSum, accumulates beside it); then the 16 sums are added in lane
/// order, compensated, and the 16 error terms in lane order, and the two
/// results added. An infinity, NaN or overflow gives what a plain sum gives.
///
/// ```
/// let x = [1e16, 1.0, -1e16, 1.0];
/// assert_eq!(shmproc_kernels::sum(&x), 2.0);
/// assert_eq!(x.iter().sum::<f64>(), 1.0); // the naive sum loses a 1.0
/// ```
pub fn sum(x: &[f64]) -> f64 {
    sum_float(x)
}

/// Compensated sum of any numeric values, in `f64` (each value is converted
/// exactly for `f32` and integers up to 2^53), in the order [`sum`] states.
///
/// ```
/// assert_eq!(shmproc_kernels::sum_float(&[0.5f32, 0.25]), 0.75);
/// ```
pub fn sum_float<T: Num>(x: &[T]) -> f64 {
    sum_float_at(Level::current(), x)
}

pub(crate) fn sum_float_at<T: Num>(level: Level, x: &[T]) -> f64 {
    let mut lanes = Lanes::new();
    match T::slice(x) {
        Slice::F64(x) => accumulate(level, x, None, &mut lanes),
        Slice::F32(x) => accumulate(level, x, None, &mut lanes),
        _ => {
            for (i, v) in x.iter().enumerate() {
                lanes.add(i % LANES, v.to_f64());
            }
        }
    }
    lanes.total()
}

/// Compensated dot product of any numeric values, in `f64`: the products
/// `x[i] * y[i]` (each rounded once in `f64`; exact for `f32` inputs) summed
/// in the order [`sum`] states.
///
/// # Panics
/// If the slices differ in length.
pub fn dot_float<T: Num>(x: &[T], y: &[T]) -> f64 {
    dot_float_at(Level::current(), x, y)
}

pub(crate) fn dot_float_at<T: Num>(level: Level, x: &[T], y: &[T]) -> f64 {
    assert_eq!(x.len(), y.len(), "x and y lengths differ");
    let mut lanes = Lanes::new();
    match (T::slice(x), T::slice(y)) {
        (Slice::F64(x), Slice::F64(y)) => accumulate(level, x, Some(y), &mut lanes),
        (Slice::F32(x), Slice::F32(y)) => accumulate(level, x, Some(y), &mut lanes),
        _ => {
            for (i, (a, b)) in x.iter().zip(y).enumerate() {
                lanes.add(i % LANES, a.to_f64() * b.to_f64());
            }
        }
    }
    lanes.total()
}

/// Compensated dot product `sum(x[i] * y[i])`, in the order [`dot_float`]
/// states.
///
/// ```
/// assert_eq!(shmproc_kernels::dot(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]), 32.0);
/// ```
///
/// # Panics
/// If the slices differ in length.
pub fn dot(x: &[f64], y: &[f64]) -> f64 {
    dot_float(x, y)
}

/// Slot of values below `lo` in a histogram accumulator of `bins` bins.
pub const fn hist_under(bins: usize) -> usize {
    bins
}

/// Slot of values at or above `hi` (and `+inf`) in a histogram accumulator.
pub const fn hist_over(bins: usize) -> usize {
    bins + 1
}

/// Slot of NaN values in a histogram accumulator.
pub const fn hist_nan(bins: usize) -> usize {
    bins + 2
}

/// Adds the histogram of `x` into `counts`.
///
/// `counts` has `bins + 3` slots: `bins` equal-width bins covering the half-open
/// range `[lo, hi)`, then the number of values below `lo` ([`hist_under`]), at or
/// above `hi` ([`hist_over`]), and NaN ([`hist_nan`]). Nothing is clamped: every
/// value lands in exactly one slot, so the slots add up to `x.len()`.
///
/// ```
/// use shmproc_kernels::{histogram, hist_under, hist_over, hist_nan};
/// let mut counts = [0u64; 2 + 3]; // two bins: [0, 0.5) and [0.5, 1)
/// histogram(&[0.1, 0.7, 0.9, -3.0, 1.0, f64::NAN], 0.0, 1.0, &mut counts);
/// assert_eq!(counts[..2], [1, 2]);
/// assert_eq!(counts[hist_under(2)], 1);
/// assert_eq!(counts[hist_over(2)], 1);
/// assert_eq!(counts[hist_nan(2)], 1);
/// ```
///
/// # Panics
/// If `counts` has fewer than 4 slots, or `lo < hi` does not hold with both finite.
pub fn histogram<T: Num>(x: &[T], lo: f64, hi: f64, counts: &mut [u64]) {
    assert!(counts.len() >= 4, "a histogram needs at least one bin");
    assert!(
        lo.is_finite() && hi.is_finite() && lo < hi,
        "histogram range must be finite with lo < hi"
    );
    histogram_at(Level::current(), x, lo, hi, counts);
}

/// Sub-histograms the counting alternates between, when the histogram is
/// small enough to keep that many copies in cache: consecutive values in one
/// bin then do not wait on each other's increments.
const SUB: usize = 4;

/// Copies for histograms of at most [`SMALL`] slots (16 bins: 19 slots),
/// where a run of values in one bin is likeliest.
const SUB_SMALL: usize = 16;

/// Largest histogram (slots) counted in [`SUB_SMALL`] copies: 16 copies of
/// 259 slots fit in 33 KiB, inside a 48 KiB L1 cache.
const SMALL: usize = 259;

/// Elements whose slots are computed together (a loop the compiler
/// vectorizes) before they are counted.
const HIST_BLOCK: usize = 64;

/// 2^52: adding it to a value in [0, 2^52) leaves that value rounded to an
/// integer in the low mantissa bits.
const MAGIC: f64 = 4_503_599_627_370_496.0;

#[inline(always)]
fn histogram_body<T: Num>(x: &[T], lo: f64, hi: f64, counts: &mut [u64]) {
    let slots = counts.len();
    let bins = slots - 3;
    let scale = bins as f64 / (hi - lo);
    let last = (bins - 1) as f64;
    let (over, under, nan) = (
        hist_over(bins) as u32,
        hist_under(bins) as u32,
        hist_nan(bins) as u32,
    );
    let slot = |v: T| -> u32 {
        let v = v.to_f64();
        // v in [lo, hi): t >= 0; rounding may give `bins` for v just below
        // hi, hence the min. The integer part of t (below 2^16) is read off
        // the bits of t + 2^52 (rounded to nearest, then one less if that
        // rounded up) instead of a cast, and the rest is written as selects,
        // so that the whole of it vectorizes.
        // (No `floor`: without SSE4.1, the baseline's, it is a call.)
        let t = ((v - lo) * scale).max(0.0).min(last);
        let r = t + MAGIC; // t rounded to an integer, in the low bits
        let k = (r.to_bits() as u32).wrapping_sub(u32::from(r - MAGIC > t));
        let s = if v >= hi { over } else { k };
        let s = if v < lo { under } else { s };
        if v.is_nan() {
            nan
        } else {
            s
        }
    };
    // Element i of a block is counted in copy i % sub (copy 0 is `counts`).
    let sub = if slots <= SMALL {
        SUB_SMALL
    } else if slots <= 4096 {
        SUB
    } else {
        1
    };
    let mut copies = vec![0u64; slots * (sub - 1)];
    let mut idx = [0u32; HIST_BLOCK];
    let mut blocks = x.chunks_exact(HIST_BLOCK);
    for b in &mut blocks {
        for (i, &v) in idx.iter_mut().zip(b) {
            *i = slot(v);
        }
        match sub {
            1 => {
                for &i in &idx {
                    counts[i as usize] += 1;
                }
            }
            _ => {
                for q in idx.chunks_exact(sub) {
                    counts[q[0] as usize] += 1;
                    for (j, &i) in q.iter().enumerate().skip(1) {
                        copies[(j - 1) * slots + i as usize] += 1;
                    }
                }
            }
        }
    }
    for &v in blocks.remainder() {
        counts[slot(v) as usize] += 1;
    }
    for c in copies.chunks_exact(slots) {
        for (a, b) in counts.iter_mut().zip(c) {
            *a += b;
        }
    }
}

multiversion!(pub(crate) fn histogram_at<T: Num>(x: &[T], lo: f64, hi: f64, counts: &mut [u64]) => histogram_body);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    /// Values k / 2^20 for |k| < 2^30: exactly representable, with an exact sum
    /// computable in integers.
    fn dyadic(seed: u64, n: usize) -> (Vec<f64>, i64) {
        let mut g = SplitMix64::new(seed);
        let mut exact = 0i64;
        let xs = (0..n)
            .map(|_| {
                let k = g.below(1 << 31) as i64 - (1 << 30);
                exact += k;
                k as f64 / (1u64 << 20) as f64
            })
            .collect();
        (xs, exact)
    }

    #[test]
    fn sum_is_exact_on_dyadic_input_and_close_to_naive() {
        for (seed, n) in [(1, 0), (2, 1), (3, 1000), (4, 100_003)] {
            let (xs, exact) = dyadic(seed, n);
            let want = exact as f64 / (1u64 << 20) as f64;
            let got = sum(&xs);
            // Every partial sum is a dyadic value below 2^53 ulps: exact.
            assert_eq!(got, want, "n={n}");
            let naive: f64 = xs.iter().sum();
            let tol = 1e-9 * xs.iter().map(|v| v.abs()).sum::<f64>().max(1.0);
            assert!((got - naive).abs() <= tol, "n={n}: {got} vs naive {naive}");
        }
    }

    #[test]
    fn sum_beats_naive_on_cancellation() {
        let mut g = SplitMix64::new(9);
        let mut xs = Vec::new();
        for _ in 0..1000 {
            let big = g.next_f64() * 1e16;
            xs.extend([big, 1.0, -big]);
        }
        assert_eq!(sum(&xs), 1000.0);
    }

    #[test]
    fn dot_matches_naive_within_tolerance() {
        let mut g = SplitMix64::new(5);
        let x: Vec<f64> = (0..10_001).map(|_| g.next_f64() * 2.0 - 1.0).collect();
        let y: Vec<f64> = (0..10_001).map(|_| g.next_f64() * 2.0 - 1.0).collect();
        let mut naive = 0.0;
        let mut scale = 0.0;
        for i in 0..x.len() {
            naive += x[i] * y[i];
            scale += (x[i] * y[i]).abs();
        }
        let got = dot(&x, &y);
        assert!((got - naive).abs() <= 1e-12 * scale, "{got} vs {naive}");
    }

    #[test]
    fn histogram_matches_edge_comparisons() {
        // 16 bins over [0, 1): bin edges k/16 are exact, so a reference that
        // compares against the edges must agree exactly.
        let mut g = SplitMix64::new(6);
        let mut xs: Vec<f64> = (0..5000).map(|_| g.next_f64() * 1.5 - 0.25).collect();
        xs.extend([
            0.0,
            1.0,
            0.5,
            1.0 / 16.0,
            f64::NAN,
            f64::INFINITY,
            -f64::INFINITY,
        ]);
        let bins = 16;
        let mut counts = vec![0u64; bins + 3];
        histogram(&xs, 0.0, 1.0, &mut counts);
        let mut want = vec![0u64; bins + 3];
        for &v in &xs {
            let slot = (0..bins)
                .find(|&k| v >= k as f64 / 16.0 && v < (k + 1) as f64 / 16.0)
                .unwrap_or(if v.is_nan() {
                    hist_nan(bins)
                } else if v < 0.0 {
                    hist_under(bins)
                } else {
                    hist_over(bins)
                });
            want[slot] += 1;
        }
        assert_eq!(counts, want);
        assert_eq!(counts.iter().sum::<u64>(), xs.len() as u64);
    }

    #[test]
    fn histogram_accumulates_and_conserves_counts() {
        let mut g = SplitMix64::new(7);
        let xs: Vec<f64> = (0..3000).map(|_| g.next_f64() * 20.0 - 10.0).collect();
        let mut whole = vec![0u64; 7 + 3];
        histogram(&xs, -3.3, 4.1, &mut whole);
        let mut parts = vec![0u64; 7 + 3];
        for c in xs.chunks(123) {
            histogram(c, -3.3, 4.1, &mut parts);
        }
        assert_eq!(whole, parts);
        assert_eq!(whole.iter().sum::<u64>(), 3000);
    }
}
