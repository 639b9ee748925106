//! Reductions: a slice in, a small fixed-size accumulator out.

use crate::Num;

/// Compensated (Neumaier) running sum.
#[derive(Debug, Clone, Copy, Default)]
struct Neumaier {
    sum: f64,
    comp: f64,
}

impl Neumaier {
    #[inline]
    fn add(&mut self, x: f64) {
        let t = self.sum + x;
        if self.sum.abs() >= x.abs() {
            self.comp += (self.sum - t) + x;
        } else {
            self.comp += (x - t) + self.sum;
        }
        self.sum = t;
    }

    #[inline]
    fn value(self) -> f64 {
        self.sum + self.comp
    }
}

/// Compensated (Neumaier) sum of `x`: the error does not grow with the length,
/// and the result depends only on the order of `x`.
///
/// ```
/// let x = [1e16, 1.0, -1e16, 1.0];
/// assert_eq!(shmproc_kernels::sum(&x), 2.0);
/// assert_eq!(x.iter().sum::<f64>(), 1.0); // the naive sum loses a 1.0
/// ```
pub fn sum(x: &[f64]) -> f64 {
    sum_float(x)
}

/// Compensated (Neumaier) sum of any numeric values, in `f64` (each value is
/// converted exactly for `f32` and integers up to 2^53).
///
/// ```
/// assert_eq!(shmproc_kernels::sum_float(&[0.5f32, 0.25]), 0.75);
/// ```
pub fn sum_float<T: Num>(x: &[T]) -> f64 {
    let mut acc = Neumaier::default();
    for &v in x {
        acc.add(v.to_f64());
    }
    acc.value()
}

/// Compensated dot product of any numeric values, in `f64`.
///
/// # Panics
/// If the slices differ in length.
pub fn dot_float<T: Num>(x: &[T], y: &[T]) -> f64 {
    assert_eq!(x.len(), y.len(), "x and y lengths differ");
    let mut acc = Neumaier::default();
    for (&a, &b) in x.iter().zip(y) {
        acc.add(a.to_f64() * b.to_f64());
    }
    acc.value()
}

/// Compensated dot product `sum(x[i] * y[i])`.
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
    let bins = counts.len() - 3;
    let scale = bins as f64 / (hi - lo);
    for v in x {
        let v = v.to_f64();
        let slot = if v.is_nan() {
            hist_nan(bins)
        } else if v < lo {
            hist_under(bins)
        } else if v >= hi {
            hist_over(bins)
        } else {
            // v in [lo, hi): t >= 0; rounding may give `bins` for v just below hi.
            (((v - lo) * scale) as usize).min(bins - 1)
        };
        counts[slot] += 1;
    }
}

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
