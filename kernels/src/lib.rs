//! Pure numeric kernels over slices. This crate knows nothing of processes or
//! shared memory: every function takes plain `&[T]` / `&mut [T]`.
//!
//! * Elementwise: [`power_u64_slice`], [`power_f64_slice`], [`saxpy`].
//! * Reductions: [`sum`], [`dot`], [`histogram`].
//! * Generated from the index: [`mandelbrot`], [`monte_carlo_pi`], [`count_primes`].
//! * The [registry](registry()) of named kernels with one chunk entry point,
//!   [`run_chunk`], and [`combine`] for reductions, used by every backend
//!   (sequential, threads, rayon, worker processes on shared memory).
//!
//! ```
//! use shmproc_kernels::{find, run_chunk, Input, Output, Params};
//! let power = find("power").unwrap();
//! let params = Params::from_pairs(["times=4"])?;
//! let input = [1u64, 2, 3];
//! let mut out = [0u64; 3];
//! run_chunk(power, &params, 0..3, Input::U64(&input), Output::U64(&mut out))?;
//! assert_eq!(out, [1, 65536, 43046721]);
//! # Ok::<(), shmproc_kernels::KernelError>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod elementwise;
mod error;
mod generated;
mod params;
mod reduce;
mod registry;
pub mod rng;

pub use elementwise::{power_f64, power_f64_slice, power_u64, power_u64_slice, saxpy};
pub use error::KernelError;
pub use generated::{
    count_primes, mandelbrot, mandelbrot_coords, mandelbrot_point, monte_carlo_hit, monte_carlo_pi,
    PRIMES_MAX,
};
pub use params::{ParamSpec, Params, ALL_PARAMS, MAX_BINS};
pub use reduce::{dot, hist_nan, hist_over, hist_under, histogram, sum};
pub use registry::{
    combine, find, lookup, registry, run_chunk, Acc, Dtype, Input, InputKind, KernelId, KernelInfo,
    Output, OutputKind, Values,
};
