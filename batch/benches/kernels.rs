//! Kernels x every backend (sequential, threads, rayon, processes,
//! processes-copy) at two sizes, on every worker count from 1 to the number of
//! CPUs. Inputs and outputs live in shared memory for all backends (as in
//! `shmproc bench`), so `processes` runs zero copy; the output is reset before
//! each run, untimed. Each result is asserted equal to the sequential one
//! before its time is printed.
//!
//! `cargo bench --bench kernels` (sizes 100k and 1M), or
//! `cargo bench --bench kernels -- --tiny` for a smoke run.

use shmproc::backend::{run, shutdown_pools, Backend, Job, RunOptions, SharedValues};
use shmproc::kernels::{
    registry, rng::SplitMix64, Dtype, Input, InputKind, OutputKind, Params, Values,
};
use std::time::Instant;

const REPEAT: usize = 5;

fn main() {
    shmproc::init();
    let tiny = std::env::args().any(|a| a == "--tiny");
    let sizes: &[usize] = if tiny {
        &[1_000, 10_000]
    } else {
        &[100_000, 1_000_000]
    };
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "{:<15} {:>9} {:<14} {:>7} {:>12} {:>8}",
        "kernel", "n", "backend", "workers", "median", "speedup"
    );
    for &n in sizes {
        for k in registry() {
            let mut params = Params::default();
            let mut n = n;
            if k.natural_len(&params).is_some() {
                let side = (n as f64).sqrt() as u32;
                params.width = side;
                params.height = side;
                params.max_iter = 64;
                n = (side * side) as usize;
            }
            let mut g = SplitMix64::new(1);
            let x: Vec<f64> = (0..n).map(|_| g.next_f64()).collect();
            let y: Vec<f64> = (0..n).map(|_| g.next_f64()).collect();
            let u: Vec<u64> = (0..n as u64).collect();
            let shared = |v: Values| SharedValues::from_values(&v).expect("shared input");
            let (xs, ys, us) = (
                shared(Values::F64(x)),
                shared(Values::F64(y.clone())),
                shared(Values::U64(u)),
            );
            let job = match k.input {
                InputKind::Generated => Job::generated(k, params, n),
                InputKind::F64Pair => match (xs.as_input(), ys.as_input()) {
                    (Input::F64(a), Input::F64(b)) => Job::new(k, params, Input::F64Pair(a, b)),
                    _ => unreachable!("x and y are f64 arrays"),
                },
                InputKind::Array(ds) if ds.contains(&Dtype::U64) => {
                    Job::new(k, params, us.as_input())
                }
                InputKind::Array(_) => Job::new(k, params, xs.as_input()),
            };
            let dtype = k.output_dtype(job.input.dtype()).expect("registry dtypes");
            let fresh = || match k.output {
                OutputKind::Map { in_place: true, .. } => Values::F64(y.clone()),
                _ if k.is_reduction() => Values::zeros(dtype, k.acc_len(&params)),
                _ => Values::zeros(dtype, n),
            };
            let mut reference: Option<(Values, f64)> = None;
            let mut out = SharedValues::from_values(&fresh()).expect("shared output");
            for backend in Backend::ALL {
                let counts: Vec<usize> = if backend == Backend::Sequential {
                    vec![1]
                } else {
                    (1..=cpus).collect()
                };
                for workers in counts {
                    let opts = RunOptions {
                        workers,
                        ..RunOptions::default()
                    };
                    let mut times = Vec::new();
                    for _ in 0..=REPEAT {
                        out.copy_from(&fresh()).expect("reset the output");
                        let t = Instant::now();
                        let o = out.as_output().expect("writable output");
                        run(backend, &job, o, &opts).expect("bench run");
                        times.push(t.elapsed().as_secs_f64());
                    }
                    let result = out.to_values();
                    times.remove(0); // warm-up
                    times.sort_by(f64::total_cmp);
                    let median = times[times.len() / 2];
                    let seq = match &reference {
                        None => {
                            reference = Some((result, median));
                            median
                        }
                        Some((r, seq)) => {
                            assert_eq!(
                                r, &result,
                                "{} {backend} x{workers} differs from sequential",
                                k.name
                            );
                            *seq
                        }
                    };
                    println!(
                        "{:<15} {:>9} {:<14} {:>7} {:>9.3} ms {:>7.2}x",
                        k.name,
                        n,
                        backend.name(),
                        workers,
                        median * 1e3,
                        seq / median
                    );
                }
            }
        }
    }
    shutdown_pools();
}
