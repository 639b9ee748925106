//! Kernels whose input is the index range itself: the `i`-th output (or sample)
//! depends only on `i` and the parameters, so any chunking gives the same result.

use crate::rng::keyed;
use std::ops::Range;

/// Largest number [`count_primes`] accepts as the end of its range (2^40): its
/// base sieve holds the primes up to the square root (2^20 bytes).
pub const PRIMES_MAX: u64 = 1 << 40;

/// Iterations of `z -> z^2 + c` from `z = 0` before `|z| > 2`, capped at `max_iter`
/// (a point that never escapes gives `max_iter`).
///
/// ```
/// use shmproc_kernels::mandelbrot_point;
/// assert_eq!(mandelbrot_point(0.0, 0.0, 100), 100); // inside
/// assert_eq!(mandelbrot_point(2.0, 2.0, 100), 1); // escapes at once
/// ```
#[inline]
pub fn mandelbrot_point(cx: f64, cy: f64, max_iter: u32) -> u64 {
    let (mut x, mut y) = (0.0f64, 0.0f64);
    let mut i = 0;
    while i < max_iter {
        let (x2, y2) = (x * x, y * y);
        if x2 + y2 > 4.0 {
            break;
        }
        y = 2.0 * x * y + cy;
        x = x2 - y2 + cx;
        i += 1;
    }
    u64::from(i)
}

/// The point of the complex plane at the centre of pixel `(col, row)` of a
/// `width` x `height` image of the rectangle `[-2, 1] x [-1.5, 1.5]`.
///
/// ```
/// assert_eq!(shmproc_kernels::mandelbrot_coords(1, 1, 2, 2), (0.25, 0.75));
/// ```
#[inline]
pub fn mandelbrot_coords(col: usize, row: usize, width: usize, height: usize) -> (f64, f64) {
    let cx = -2.0 + 3.0 * (col as f64 + 0.5) / width as f64;
    let cy = -1.5 + 3.0 * (row as f64 + 0.5) / height as f64;
    (cx, cy)
}

/// Mandelbrot iteration counts of pixels `first .. first + out.len()` of a
/// `width` x `height` image, pixels numbered row-major. Rows near the set cost
/// up to `max_iter` iterations per pixel and rows far from it one or two, so
/// contiguous chunks have very uneven cost.
///
/// ```
/// let mut img = [0u64; 4 * 3];
/// shmproc_kernels::mandelbrot(4, 3, 50, 0, &mut img);
/// let mut tail = [0u64; 4];
/// shmproc_kernels::mandelbrot(4, 3, 50, 8, &mut tail); // the last row alone
/// assert_eq!(img[8..], tail);
/// ```
///
/// # Panics
/// If `width` or `height` is 0, or the pixels run past the image.
pub fn mandelbrot(width: usize, height: usize, max_iter: u32, first: usize, out: &mut [u64]) {
    assert!(width > 0 && height > 0, "empty image");
    assert!(
        first
            .checked_add(out.len())
            .is_some_and(|end| end <= width.saturating_mul(height)),
        "pixels past the end of the image"
    );
    let (mut row, mut col) = (first / width, first % width);
    for o in out.iter_mut() {
        let (cx, cy) = mandelbrot_coords(col, row, width, height);
        *o = mandelbrot_point(cx, cy, max_iter);
        col += 1;
        if col == width {
            col = 0;
            row += 1;
        }
    }
}

/// Whether sample `index` of the stream `seed` falls inside the quarter disc.
///
/// The sample is `(a, b) / 2^32` with `a` and `b` the two 32-bit halves of
/// [`keyed(seed, index)`](crate::rng::keyed); the test `a^2 + b^2 < 2^64` is done
/// in exact integer arithmetic.
#[inline]
pub fn monte_carlo_hit(seed: u64, index: u64) -> bool {
    let r = keyed(seed, index);
    let (a, b) = (u128::from(r >> 32), u128::from(r & 0xffff_ffff));
    a * a + b * b < 1u128 << 64
}

/// Number of samples in `range` that fall inside the quarter disc (see
/// [`monte_carlo_hit`]); `4 * hits / samples` estimates pi. Counter-based: the
/// count over a range is the sum of the counts over any split of it.
///
/// ```
/// use shmproc_kernels::monte_carlo_pi;
/// let whole = monte_carlo_pi(42, 0..10_000);
/// assert_eq!(whole, monte_carlo_pi(42, 0..3_000) + monte_carlo_pi(42, 3_000..10_000));
/// let pi = 4.0 * whole as f64 / 10_000.0;
/// assert!((pi - std::f64::consts::PI).abs() < 0.1);
/// ```
pub fn monte_carlo_pi(seed: u64, range: Range<u64>) -> u64 {
    range.filter(|&i| monte_carlo_hit(seed, i)).count() as u64
}

/// Integer square root: the largest `r` with `r * r <= n`.
fn isqrt(n: u64) -> u64 {
    let mut r = (n as f64).sqrt() as u64;
    while r.checked_mul(r).is_none_or(|sq| sq > n) {
        r -= 1;
    }
    while (r + 1).checked_mul(r + 1).is_some_and(|sq| sq <= n) {
        r += 1;
    }
    r
}

/// The primes below `limit`, by the sieve of Eratosthenes.
fn small_primes(limit: u64) -> Vec<u64> {
    let limit = limit as usize;
    let mut composite = vec![false; limit];
    let mut primes = Vec::new();
    for i in 2..limit {
        if !composite[i] {
            primes.push(i as u64);
            let mut j = i * i;
            while j < limit {
                composite[j] = true;
                j += i;
            }
        }
    }
    primes
}

/// Numbers per segment of the segmented sieve (fits in L1/L2).
const SEGMENT: u64 = 1 << 15;

/// Number of primes in `[lo, hi)`, by a segmented sieve of Eratosthenes: the
/// primes up to `sqrt(hi)` are sieved once, then the range is sieved in segments
/// of 32 Ki numbers, so memory stays small for any range.
///
/// ```
/// use shmproc_kernels::count_primes;
/// assert_eq!(count_primes(0, 100), 25);
/// assert_eq!(count_primes(0, 1_000_000), 78_498);
/// assert_eq!(count_primes(10, 20), 4); // 11 13 17 19
/// ```
///
/// # Panics
/// If `hi > PRIMES_MAX`.
pub fn count_primes(lo: u64, hi: u64) -> u64 {
    assert!(hi <= PRIMES_MAX, "count_primes: range end above 2^40");
    let lo = lo.max(2);
    if lo >= hi {
        return 0;
    }
    let base = small_primes(isqrt(hi - 1) + 1);
    let mut marks = vec![false; SEGMENT as usize];
    let mut count = 0;
    let mut seg_lo = lo;
    while seg_lo < hi {
        let seg_hi = (seg_lo + SEGMENT).min(hi);
        let marks = &mut marks[..(seg_hi - seg_lo) as usize];
        marks.fill(false);
        for &p in &base {
            if p * p >= seg_hi {
                break;
            }
            // First multiple of p in the segment that is not p itself.
            let mut m = (p * p).max(seg_lo.div_ceil(p) * p);
            while m < seg_hi {
                marks[(m - seg_lo) as usize] = true;
                m += p;
            }
        }
        count += marks.iter().filter(|&&c| !c).count() as u64;
        seg_lo = seg_hi;
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    #[test]
    fn mandelbrot_matches_naive_complex_loop() {
        let (w, h, max_iter) = (37usize, 23usize, 200u32);
        let mut img = vec![0u64; w * h];
        mandelbrot(w, h, max_iter, 0, &mut img);
        for row in 0..h {
            for col in 0..w {
                // Naive reference: textbook complex iteration, |z| via hypot.
                let cr = -2.0 + 3.0 * (col as f64 + 0.5) / w as f64;
                let ci = -1.5 + 3.0 * (row as f64 + 0.5) / h as f64;
                let (mut zr, mut zi) = (0.0f64, 0.0f64);
                let mut n = 0u64;
                while n < u64::from(max_iter) && zr.hypot(zi) <= 2.0 {
                    (zr, zi) = (zr * zr - zi * zi + cr, 2.0 * zr * zi + ci);
                    n += 1;
                }
                let got = img[row * w + col];
                // hypot and the squared test may differ by one rounding exactly on
                // the |z| = 2 circle: allow one iteration of difference.
                assert!(got.abs_diff(n) <= 1, "pixel ({col},{row}): {got} vs {n}");
            }
        }
        // The image must contain both interior and escaping points.
        assert!(img.contains(&u64::from(max_iter)));
        assert!(img.iter().any(|&v| v < 5));
    }

    #[test]
    fn mandelbrot_any_chunking_gives_the_same_image() {
        let (w, h) = (31usize, 17usize);
        let mut whole = vec![0u64; w * h];
        mandelbrot(w, h, 100, 0, &mut whole);
        let mut g = SplitMix64::new(11);
        let mut pieces = vec![0u64; w * h];
        let mut start = 0;
        while start < w * h {
            let len = (1 + g.below(60) as usize).min(w * h - start);
            mandelbrot(w, h, 100, start, &mut pieces[start..start + len]);
            start += len;
        }
        assert_eq!(whole, pieces);
    }

    #[test]
    fn monte_carlo_is_chunking_independent_and_matches_float_reference() {
        let n = 200_000u64;
        let whole = monte_carlo_pi(3, 0..n);
        let mut g = SplitMix64::new(12);
        let (mut start, mut parts) = (0, 0);
        while start < n {
            let end = (start + 1 + g.below(5000)).min(n);
            parts += monte_carlo_pi(3, start..end);
            start = end;
        }
        assert_eq!(whole, parts);
        // Naive float reference: may differ only for points within 2^-53 of the
        // circle; allow one such point.
        let float = (0..n)
            .filter(|&i| {
                let r = crate::rng::keyed(3, i);
                let x = (r >> 32) as f64 / 4294967296.0;
                let y = (r & 0xffff_ffff) as f64 / 4294967296.0;
                x * x + y * y < 1.0
            })
            .count() as u64;
        assert!(whole.abs_diff(float) <= 1, "{whole} vs {float}");
        // Statistical check, 6 sigma (sigma = sqrt(n p (1-p)) ~ 184).
        let expect = n as f64 * std::f64::consts::FRAC_PI_4;
        assert!((whole as f64 - expect).abs() < 6.0 * 184.0);
    }

    fn is_prime_naive(n: u64) -> bool {
        n >= 2
            && (2..)
                .take_while(|d| d * d <= n)
                .all(|d| !n.is_multiple_of(d))
    }

    #[test]
    fn count_primes_matches_trial_division_on_random_ranges() {
        let mut g = SplitMix64::new(13);
        for _ in 0..40 {
            let lo = g.below(200_000);
            let hi = lo + g.below(70_000);
            let want = (lo..hi).filter(|&n| is_prime_naive(n)).count() as u64;
            assert_eq!(count_primes(lo, hi), want, "[{lo}, {hi})");
        }
        assert_eq!(count_primes(0, 2), 0);
        assert_eq!(count_primes(2, 3), 1);
        assert_eq!(count_primes(5, 5), 0);
        assert_eq!(count_primes(9, 4), 0);
    }

    #[test]
    fn count_primes_known_values() {
        assert_eq!(count_primes(0, 10_000_000), 664_579);
        // Near a large bound: the primes in [10^12, 10^12 + 1000) (37 of them).
        let lo = 1_000_000_000_000;
        let want = (lo..lo + 1000).filter(|&n| is_prime_naive(n)).count() as u64;
        assert_eq!(count_primes(lo, lo + 1000), want);
    }

    #[test]
    fn isqrt_is_exact() {
        for n in [
            0u64,
            1,
            3,
            4,
            15,
            16,
            17,
            u64::MAX,
            (1 << 52) + 1,
            999_999_999_999,
        ] {
            let r = isqrt(n);
            assert!(r * r <= n && (r + 1).checked_mul(r + 1).is_none_or(|s| s > n));
        }
    }
}
