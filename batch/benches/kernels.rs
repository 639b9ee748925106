//! Kernels x every backend (sequential, threads, rayon, processes,
//! processes-copy) at two sizes, on every worker count from 1 to the number of
//! CPUs. Inputs and outputs live in shared memory for all backends (as in
//! `shmproc bench`), so `processes` runs zero copy; the output is reset before
//! each run, untimed. Each result is asserted equal to the sequential one
//! before its time is printed.
//!
//! Before the table: the machine's read bandwidth (one reader per worker,
//! see `shmproc_batch::compare::read_bandwidth`). After each kernel's rows,
//! when python3 with numpy is there: numpy's single-threaded time for the
//! same kernel, size and dtype, and `/numpy` (this time / numpy's) on every
//! row.
//!
//! `cargo bench --bench kernels` (sizes 100k and 1M), or
//! `cargo bench --bench kernels -- --tiny` for a smoke run.

use shmproc_batch::backend::{
    output_len, run, shutdown_pools, Backend, Job, RunOptions, SharedValues,
};
use shmproc_batch::{compare, Registry};
use shmproc_kernels::{rng::SplitMix64, Dtype, Kind, Values};
use std::time::Instant;

const REPEAT: usize = 5;

fn main() {
    let tiny = std::env::args().any(|a| a == "--tiny");
    let sizes: &[usize] = if tiny {
        &[1_000, 10_000]
    } else {
        &[100_000, 1_000_000]
    };
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let probe = if tiny { 8 << 20 } else { compare::PROBE_BYTES };
    let bw: Vec<String> = (1..=cpus)
        .map(|w| {
            let b = compare::read_bandwidth(w, probe, 5).expect("bandwidth probe");
            format!("{:.1} GB/s with {w}", b / 1e9)
        })
        .collect();
    println!(
        "read bandwidth ({} MiB, best of 5): {}",
        probe >> 20,
        bw.join(", ")
    );
    let numpy = compare::numpy_version();
    match &numpy {
        Ok(v) => println!("numpy {v}, one thread; /numpy = this time / numpy's"),
        Err(e) => println!("no numpy column: {e}"),
    }
    println!(
        "{:<15} {:>9} {:<14} {:>7} {:>12} {:>8} {:>8}",
        "kernel", "n", "backend", "workers", "median", "speedup", "/numpy"
    );
    let registry = Registry::builtins();
    for &n in sizes {
        for kr in registry.iter() {
            let k = kr.kernel();
            let sig = k.signature();
            let mut params = kr.defaults();
            let mut n = n;
            if k.natural_len(&params).is_some() {
                let side = (n as f64).sqrt() as u32;
                params
                    .set("width", side)
                    .set("height", side)
                    .set("max_iter", 64);
                n = (side * side) as usize;
            }
            let mut g = SplitMix64::new(1);
            let x: Vec<f64> = (0..n).map(|_| g.next_f64()).collect();
            let y: Vec<f64> = (0..n).map(|_| g.next_f64()).collect();
            let u: Vec<u64> = (0..n as u64).collect();
            let shared = |v: Values| SharedValues::from_slice(v.as_slice()).expect("shared input");
            let (xs, ys, us) = (
                shared(Values::F64(x)),
                shared(Values::F64(y.clone())),
                shared(Values::U64(u)),
            );
            let job = match sig.inputs {
                0 => Job::generated(kr, params.clone(), n),
                2 => Job::pair(kr, params.clone(), xs.as_slice(), ys.as_slice()),
                _ if sig.accepts(Dtype::U64) => Job::new(kr, params.clone(), us.as_slice()),
                _ => Job::new(kr, params.clone(), xs.as_slice()),
            };
            let dtype = k.output_dtype(job.input_dtype());
            let fresh = || match sig.kind {
                Kind::InPlace => Values::F64(y.clone()),
                _ => Values::zeros(dtype, output_len(&job)),
            };
            let numpy_s = match (&numpy, job.input_dtype()) {
                (Ok(_), Some(d)) => {
                    let pairs: Vec<(&str, String)> = k
                        .params()
                        .iter()
                        .map(|p| (p.name, params.get(p.name).unwrap_or_default().to_owned()))
                        .collect();
                    compare::numpy_time(k.name(), n, d, &pairs, REPEAT).expect("numpy run")
                }
                _ => None,
            };
            let mut reference: Option<(Values, f64)> = None;
            let mut out = SharedValues::from_slice(fresh().as_slice()).expect("shared output");
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
                        let init = fresh();
                        out.as_slice_mut()
                            .expect("writable output")
                            .copy_from(init.as_slice())
                            .expect("reset the output");
                        let t = Instant::now();
                        let o = out.as_slice_mut().expect("writable output");
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
                                r,
                                &result,
                                "{} {backend} x{workers} differs from sequential",
                                k.name()
                            );
                            *seq
                        }
                    };
                    println!(
                        "{:<15} {:>9} {:<14} {:>7} {:>9.3} ms {:>7.2}x {:>8}",
                        k.name(),
                        n,
                        backend.name(),
                        workers,
                        median * 1e3,
                        seq / median,
                        numpy_s.map_or("-".to_owned(), |t| format!("{:.2}x", median / t))
                    );
                }
            }
            if let Some(t) = numpy_s {
                println!(
                    "{:<15} {:>9} {:<14} {:>7} {:>9.3} ms",
                    k.name(),
                    n,
                    "numpy",
                    1,
                    t * 1e3
                );
            }
        }
    }
    shutdown_pools();
}
