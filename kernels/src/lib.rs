//! Pure numeric kernels over slices. This crate knows nothing of processes or
//! shared memory: every function takes plain `&[T]` / `&mut [T]`.
#![forbid(unsafe_code)]

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
/// # Panics
/// If the slices differ in length.
pub fn power_u64_slice(input: &[u64], output: &mut [u64], times: u32) {
    assert_eq!(input.len(), output.len(), "input and output lengths differ");
    for (o, &x) in output.iter_mut().zip(input) {
        *o = power_u64(x, times);
    }
}

/// Applies [`power_f64`] to every element of `input`, writing into `output`.
///
/// # Panics
/// If the slices differ in length.
pub fn power_f64_slice(input: &[f64], output: &mut [f64], times: u32) {
    assert_eq!(input.len(), output.len(), "input and output lengths differ");
    for (o, &x) in output.iter_mut().zip(input) {
        *o = power_f64(x, times);
    }
}
