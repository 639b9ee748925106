//! Elementwise kernels: one output per input element.

use crate::multiversion;
use crate::simd::Level;
use crate::Num;

/// Elements squared together in a block: the squarings run over a block held
/// in registers, so the compiler vectorizes across elements (a loop over
/// `times` inside the loop over elements would not vectorize).
const BLOCK: usize = 64;

/// Repeated squaring of one value of any numeric type: `x -> x * x`, `times`
/// times, wrapping for integers.
///
/// ```
/// assert_eq!(shmproc_kernels::power(3u8, 1), 9);
/// assert_eq!(shmproc_kernels::power(3u8, 2), 81);
/// assert_eq!(shmproc_kernels::power(3u8, 3), 161); // 6561 mod 256
/// assert_eq!(shmproc_kernels::power(-1.5f32, 1), 2.25);
/// ```
#[inline]
pub fn power<T: Num>(mut x: T, times: u32) -> T {
    for _ in 0..times {
        x = x.mul(x);
    }
    x
}

/// Applies [`power`] to every element of `input`, writing into `output`,
/// with the vector instructions of [`Level::current`] (the same results on
/// every level: each element is squared `times` times in its own type).
///
/// # Panics
/// If the slices differ in length.
pub fn power_slice<T: Num>(input: &[T], output: &mut [T], times: u32) {
    assert_eq!(input.len(), output.len(), "input and output lengths differ");
    power_slice_at(Level::current(), input, output, times);
}

#[inline(always)]
fn power_body<T: Num>(input: &[T], output: &mut [T], times: u32) {
    let mut blocks = output.chunks_exact_mut(BLOCK);
    for (o, x) in (&mut blocks).zip(input.chunks_exact(BLOCK)) {
        let mut v = [T::ZERO; BLOCK];
        v.copy_from_slice(x);
        for _ in 0..times {
            for e in &mut v {
                *e = e.mul(*e);
            }
        }
        o.copy_from_slice(&v);
    }
    let done = input.len() - blocks.into_remainder().len();
    for (o, &x) in output[done..].iter_mut().zip(&input[done..]) {
        *o = power(x, times);
    }
}

multiversion!(pub(crate) fn power_slice_at<T: Num>(input: &[T], output: &mut [T], times: u32) => power_body);

/// Fills `x` with the generated input `first, first + 1, ...` converted to
/// `T` (`i as T`, wrapping for narrow integers; the indices wrap at 2^64), with the vector
/// instructions of [`Level::current`].
///
/// ```
/// let mut x = [0u8; 3];
/// shmproc_kernels::iota(&mut x, 255);
/// assert_eq!(x, [255, 0, 1]);
/// ```
pub fn iota<T: Num>(x: &mut [T], first: u64) {
    iota_at(Level::current(), x, first);
}

#[inline(always)]
fn iota_body<T: Num>(x: &mut [T], first: u64) {
    for (v, k) in x.iter_mut().zip(0u64..) {
        *v = T::from_index(first.wrapping_add(k));
    }
}

multiversion!(pub(crate) fn iota_at<T: Num>(x: &mut [T], first: u64) => iota_body);

/// `y = a * x + y` in `f32`, elementwise, without fused multiply-add.
///
/// ```
/// let mut y = [1.0f32, 2.0];
/// shmproc_kernels::saxpy_f32(2.0, &[10.0, 20.0], &mut y);
/// assert_eq!(y, [21.0, 42.0]);
/// ```
///
/// # Panics
/// If the slices differ in length.
pub fn saxpy_f32(a: f32, x: &[f32], y: &mut [f32]) {
    assert_eq!(x.len(), y.len(), "x and y lengths differ");
    saxpy_f32_at(Level::current(), a, x, y);
}

#[inline(always)]
fn saxpy_f32_body(a: f32, x: &[f32], y: &mut [f32]) {
    for (yi, &xi) in y.iter_mut().zip(x) {
        *yi += a * xi;
    }
}

multiversion!(pub(crate) fn saxpy_f32_at(a: f32, x: &[f32], y: &mut [f32]) => saxpy_f32_body);

/// Scales every row of `rows` (consecutive runs of `row_len` elements) to unit
/// Euclidean norm, writing into `out`; the norm is computed in `f64`. A row of
/// zeros stays zeros.
///
/// ```
/// let mut out = [0.0f64; 4];
/// shmproc_kernels::normalize_rows(&[3.0, 4.0, 0.0, 0.0], &mut out, 2);
/// assert_eq!(out, [0.6, 0.8, 0.0, 0.0]);
/// ```
///
/// # Panics
/// If the slices differ in length or `row_len` is 0 and they are not empty,
/// or the length is not a multiple of `row_len`.
pub fn normalize_rows<T: Num>(rows: &[T], out: &mut [T], row_len: usize) {
    assert_eq!(rows.len(), out.len(), "input and output lengths differ");
    if rows.is_empty() {
        return;
    }
    assert!(
        row_len > 0 && rows.len().is_multiple_of(row_len),
        "length is not a whole number of rows"
    );
    for (r, o) in rows
        .chunks_exact(row_len)
        .zip(out.chunks_exact_mut(row_len))
    {
        let norm = r
            .iter()
            .map(|v| v.to_f64() * v.to_f64())
            .sum::<f64>()
            .sqrt();
        for (o, &v) in o.iter_mut().zip(r) {
            *o = if norm > 0.0 {
                T::from_f64(v.to_f64() / norm)
            } else {
                T::ZERO
            };
        }
    }
}

/// Repeated squaring of one value: `x -> x * x`, `times` times, in wrapping
/// 64-bit arithmetic.
///
/// ```
/// assert_eq!(shmproc_kernels::power_u64(2, 4), 65536);
/// assert_eq!(shmproc_kernels::power_u64(3, 4), 43046721);
/// ```
#[inline]
pub fn power_u64(mut x: u64, times: u32) -> u64 {
    for _ in 0..times {
        x = x.wrapping_mul(x);
    }
    x
}

/// Repeated squaring of one `f64`: `x -> x * x`, `times` times.
///
/// ```
/// assert_eq!(shmproc_kernels::power_f64(2.0, 4), 65536.0);
/// ```
#[inline]
pub fn power_f64(mut x: f64, times: u32) -> f64 {
    for _ in 0..times {
        x *= x;
    }
    x
}

/// Applies [`power_u64`] to every element of `input`, writing into `output`.
///
/// ```
/// let mut out = [0u64; 3];
/// shmproc_kernels::power_u64_slice(&[1, 2, 3], &mut out, 4);
/// assert_eq!(out, [1, 65536, 43046721]);
/// ```
///
/// # Panics
/// If the slices differ in length.
pub fn power_u64_slice(input: &[u64], output: &mut [u64], times: u32) {
    power_slice(input, output, times);
}

/// Applies [`power_f64`] to every element of `input`, writing into `output`.
///
/// ```
/// let mut out = [0.0; 2];
/// shmproc_kernels::power_f64_slice(&[1.5, -2.0], &mut out, 1);
/// assert_eq!(out, [2.25, 4.0]);
/// ```
///
/// # Panics
/// If the slices differ in length.
pub fn power_f64_slice(input: &[f64], output: &mut [f64], times: u32) {
    power_slice(input, output, times);
}

/// `y = a * x + y`, elementwise, without fused multiply-add (so the result is the
/// same on every target).
///
/// ```
/// let mut y = [1.0, 2.0];
/// shmproc_kernels::saxpy(2.0, &[10.0, 20.0], &mut y);
/// assert_eq!(y, [21.0, 42.0]);
/// ```
///
/// # Panics
/// If the slices differ in length.
pub fn saxpy(a: f64, x: &[f64], y: &mut [f64]) {
    assert_eq!(x.len(), y.len(), "x and y lengths differ");
    saxpy_at(Level::current(), a, x, y);
}

#[inline(always)]
fn saxpy_body(a: f64, x: &[f64], y: &mut [f64]) {
    for (yi, &xi) in y.iter_mut().zip(x) {
        *yi += a * xi;
    }
}

multiversion!(pub(crate) fn saxpy_at(a: f64, x: &[f64], y: &mut [f64]) => saxpy_body);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    #[test]
    fn power_u64_matches_wrapping_pow() {
        let mut g = SplitMix64::new(1);
        let xs: Vec<u64> = (0..1000).map(|_| g.next_u64()).collect();
        for times in [0u32, 1, 2, 4, 7, 31] {
            let mut out = vec![0; xs.len()];
            power_u64_slice(&xs, &mut out, times);
            for (&x, &o) in xs.iter().zip(&out) {
                // Naive reference: x^(2^times) by the standard library.
                assert_eq!(o, x.wrapping_pow(1u32 << times), "x={x} times={times}");
            }
        }
    }

    #[test]
    fn power_f64_matches_powi_within_tolerance() {
        let mut g = SplitMix64::new(2);
        let xs: Vec<f64> = (0..1000).map(|_| g.next_f64() * 4.0 - 2.0).collect();
        for times in [0u32, 1, 3, 5] {
            let mut out = vec![0.0; xs.len()];
            power_f64_slice(&xs, &mut out, times);
            for (&x, &o) in xs.iter().zip(&out) {
                let want = x.powi(1 << times);
                // Each squaring rounds once: relative error <= times * 2^-52.
                let tol = 1e-13 * want.abs().max(f64::MIN_POSITIVE);
                assert!(
                    (o - want).abs() <= tol,
                    "x={x} times={times}: {o} vs {want}"
                );
            }
        }
    }

    #[test]
    fn saxpy_matches_indexed_loop() {
        let mut g = SplitMix64::new(3);
        let x: Vec<f64> = (0..777).map(|_| g.next_f64() - 0.5).collect();
        let y0: Vec<f64> = (0..777).map(|_| g.next_f64() * 10.0).collect();
        let a = 2.5;
        let mut y = y0.clone();
        saxpy(a, &x, &mut y);
        for i in 0..x.len() {
            // Same operations in the same order: exact.
            assert_eq!(y[i], a * x[i] + y0[i]);
        }
    }

    #[test]
    #[should_panic(expected = "lengths differ")]
    fn saxpy_rejects_length_mismatch() {
        saxpy(1.0, &[1.0], &mut [1.0, 2.0]);
    }
}
