//! Pure numeric kernels over slices, and the [`Kernel`] trait every shmproc
//! backend runs. This crate knows nothing of processes or shared memory:
//! every function takes plain slices.
//!
//! * The kernel API: [`Kernel`], its [`Signature`], the [`Chunk`] it runs on,
//!   [`run_chunk`] (checks, then runs) and [`combine`] (folds partial
//!   accumulators of reductions).
//! * Element types: [`Dtype`] (`bool`, `i8` to `i64`, `u8` to `u64`, `f32`,
//!   `f64`), the type-erased [`Slice`], [`SliceMut`] and [`Values`], and the
//!   typed [`Element`] / [`Num`] traits with the [`for_numeric!`] and
//!   [`for_same_numeric!`] macros for writing a kernel once for every type.
//! * Parameters: [`Params`], declared with [`ParamSpec`].
//! * The built-in kernels ([`builtins`]): [`Power`], [`Sum`], [`Dot`],
//!   [`Saxpy`], [`Histogram`], [`NormalizeRows`], [`Mandelbrot`],
//!   [`MonteCarloPi`], [`CountPrimes`], and the plain functions under them
//!   ([`power`], [`sum`], [`dot`], [`histogram`], ...).
//!
//! ```
//! use shmproc_kernels::{run_chunk, Chunk, Kernel, Params, Power, Slice, SliceMut};
//! let params = Params::resolve(Power.params(), ["times=4"])?;
//! let mut out = [0u64; 3];
//! run_chunk(&Power, &params, Chunk::map(0..3, Slice::U64(&[1, 2, 3]), SliceMut::U64(&mut out)))?;
//! assert_eq!(out, [1, 65536, 43046721]);
//! # Ok::<(), shmproc_kernels::KernelError>(())
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod builtin;
mod dtype;
mod elementwise;
mod error;
mod generated;
pub mod kernel;
mod params;
mod reduce;
pub mod rng;
pub mod simd;
#[cfg(test)]
mod simd_tests;
#[cfg(test)]
mod tests;

pub use builtin::{
    builtins, CountPrimes, Dot, Histogram, Mandelbrot, MonteCarloPi, NormalizeRows, Power, Saxpy,
    Sum, MAX_BINS,
};
pub use dtype::{Dtype, Element, Num, Slice, SliceMut, Values};
pub use elementwise::{
    iota, normalize_rows, power, power_f64, power_f64_slice, power_slice, power_u64,
    power_u64_slice, saxpy, saxpy_f32,
};
pub use error::KernelError;
pub use generated::{
    count_primes, mandelbrot, mandelbrot_coords, mandelbrot_point, monte_carlo_hit, monte_carlo_pi,
    PRIMES_MAX,
};
pub use kernel::{
    add_into, check_inputs, combine, run_chunk, Chunk, Kernel, Kind, Layout, Signature,
};
pub use params::{bad, ParamSpec, Params};
pub use reduce::{dot, dot_float, hist_nan, hist_over, hist_under, histogram, sum, sum_float};
