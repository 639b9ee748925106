//! The process pool against its targets, with rayon as the threads baseline.
//!
//! 1. `map_slices` of the power kernel (times = 4) over N u64 in shared arrays,
//!    2 workers, versus rayon with 2 threads over plain `Vec`s (same kernel,
//!    same chunks): items/s and the ratio.
//! 2. `apply_async` round trip (submit one trivial task, `get`): median and p99,
//!    with the default spin-then-sleep waits and with spinning off (futex only).
//! 3. 100,000 trivial `apply_async` submissions, then gather all: tasks/s.
//! 4. `Pool(2)` start to first result, spawn and fork: median ms.
//!
//! `cargo bench --bench pool [-- --quick]` (`--quick`: a smoke run with small
//! sizes and few repetitions; its map_slices ratio is dominated by per-map
//! overhead and means nothing). The Python counterpart is `benches/python_pool.py`;
//! results in `docs/POOL_BENCH.md`.

use std::time::{Duration, Instant};

use rayon::prelude::*;
use shmproc::{Pool, SharedArray, StartMethod, TaskOptions};
use shmproc_kernels::{power_u64, power_u64_slice};

const TIMES: u32 = 4;
const WORKERS: usize = 2;

struct Sizes {
    /// Elements of the map_slices arrays.
    items: usize,
    /// Repetitions of the map_slices comparison.
    map_runs: usize,
    /// apply_async round trips.
    rounds: usize,
    /// Tasks in the throughput test.
    tasks: usize,
    /// Repetitions of the throughput test.
    task_runs: usize,
    /// Pools started per start method.
    starts: usize,
}

const FULL: Sizes = Sizes {
    items: 10_000_000,
    map_runs: 9,
    rounds: 2_000,
    tasks: 100_000,
    task_runs: 5,
    starts: 10,
};

const QUICK: Sizes = Sizes {
    items: 200_000,
    map_runs: 3,
    rounds: 200,
    tasks: 5_000,
    task_runs: 2,
    starts: 3,
};

fn trivial(x: u64) -> u64 {
    x.wrapping_add(1)
}

fn kernel(input: &[u64], output: &mut [u64], times: &u32) {
    power_u64_slice(input, output, *times);
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Median ms from `Pool::builder()` to the first `apply` result, over `runs`.
/// The pool is dropped (terminated) outside the timed part.
fn start_to_first_result(method: StartMethod, runs: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(runs);
    for i in 0..runs {
        let t = Instant::now();
        let pool = Pool::builder()
            .processes(WORKERS)
            .start_method(method)
            .build()
            .expect("start pool");
        let r = pool.apply(trivial, i as u64).expect("apply");
        out.push(ms(t.elapsed()));
        assert_eq!(r, i as u64 + 1);
        pool.close();
        pool.join().expect("join");
    }
    out
}

/// Chunk size of `map_slices`' default split (about four chunks per worker),
/// used for rayon too so both run the same chunks.
fn chunk_len(n: usize) -> usize {
    n.div_ceil(4 * WORKERS).max(1)
}

struct MapResult {
    shm: f64,
    rayon: f64,
    seq: f64,
}

fn map_chunks_vs_rayon(s: &Sizes) -> MapResult {
    let n = s.items;
    let data: Vec<u64> = (0..n as u64).collect();
    let want: Vec<u64> = data.iter().map(|&x| power_u64(x, TIMES)).collect();

    // shmproc: the pool is started once, outside the timed part.
    let pool = Pool::new(WORKERS).expect("pool");
    let input = SharedArray::<u64>::from_slice(&data).expect("input array");
    let mut output = SharedArray::<u64>::new(n).expect("output array");
    let opts = TaskOptions::new().chunksize(chunk_len(n));
    let mut shm = Vec::new();
    for run in 0..=s.map_runs {
        let t = Instant::now();
        pool.map_slices(kernel, &input, &mut output, TIMES, opts)
            .expect("map_slices");
        if run > 0 {
            shm.push(t.elapsed().as_secs_f64());
        }
    }
    assert!(output.to_vec() == want, "map_slices gave a wrong result");
    pool.close();
    pool.join().expect("join");
    drop((input, output));

    // rayon, 2 threads, the same chunks, over heap memory.
    let rp = rayon::ThreadPoolBuilder::new()
        .num_threads(WORKERS)
        .build()
        .expect("rayon pool");
    let mut out = vec![0u64; n];
    let mut ray = Vec::new();
    for run in 0..=s.map_runs {
        let t = Instant::now();
        rp.install(|| {
            data.par_chunks(chunk_len(n))
                .zip(out.par_chunks_mut(chunk_len(n)))
                .for_each(|(i, o)| power_u64_slice(i, o, TIMES));
        });
        if run > 0 {
            ray.push(t.elapsed().as_secs_f64());
        }
    }
    assert!(out == want, "rayon gave a wrong result");

    // One thread, for scale.
    let mut seq = Vec::new();
    for run in 0..=s.map_runs {
        let t = Instant::now();
        power_u64_slice(&data, &mut out, TIMES);
        std::hint::black_box(&mut out);
        if run > 0 {
            seq.push(t.elapsed().as_secs_f64());
        }
    }
    MapResult {
        shm: n as f64 / median(&mut shm),
        rayon: n as f64 / median(&mut ray),
        seq: n as f64 / median(&mut seq),
    }
}

/// Round trip of one trivial task: microseconds, sorted.
fn round_trips(pool: &Pool, rounds: usize) -> Vec<f64> {
    for i in 0..100 {
        pool.apply_async(trivial, i)
            .and_then(|r| r.get())
            .expect("warm-up");
    }
    let mut us = Vec::with_capacity(rounds);
    for i in 0..rounds as u64 {
        let t = Instant::now();
        let r = pool.apply_async(trivial, i).expect("submit");
        let v = r.get().expect("get");
        us.push(t.elapsed().as_secs_f64() * 1e6);
        assert_eq!(v, i + 1);
    }
    us.sort_by(f64::total_cmp);
    us
}

/// `tasks` trivial submissions then gather all: tasks per second per run.
fn throughput(pool: &Pool, tasks: usize, runs: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        let results: Vec<_> = (0..tasks as u64)
            .map(|i| pool.apply_async(trivial, i).expect("submit"))
            .collect();
        let mut sum = 0u64;
        for r in &results {
            sum = sum.wrapping_add(r.get().expect("get"));
        }
        out.push(tasks as f64 / t.elapsed().as_secs_f64());
        let n = tasks as u64;
        assert_eq!(sum, n * (n + 1) / 2);
    }
    out
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let s = if quick { &QUICK } else { &FULL };
    println!(
        "shmproc pool bench{}: {} CPUs, {} workers",
        if quick { " (--quick)" } else { "" },
        shmproc::cpu_count(),
        WORKERS
    );

    // Fork first, while main is the only thread (a pool's supervisor thread
    // and rayon's threads would make fork refuse). One warm-up each.
    start_to_first_result(StartMethod::Fork, 1);
    let mut fork = start_to_first_result(StartMethod::Fork, s.starts);
    start_to_first_result(StartMethod::Spawn, 1);
    let mut spawn = start_to_first_result(StartMethod::Spawn, s.starts);

    let pool = Pool::new(WORKERS).expect("pool");
    let rt = round_trips(&pool, s.rounds);
    let mut tput = throughput(&pool, s.tasks, s.task_runs);
    pool.close();
    pool.join().expect("join");
    drop(pool);

    // The same round trip with spinning off (parent and workers sleep on the
    // futex at once): the cost when the spin window does not cover the wait,
    // e.g. when other processes compete for the CPUs.
    let spin = shmproc::sync::spin();
    shmproc::sync::set_spin(Duration::ZERO);
    let pool = Pool::new(WORKERS).expect("pool");
    let rt_nospin = round_trips(&pool, s.rounds);
    pool.close();
    pool.join().expect("join");
    drop(pool);
    shmproc::sync::set_spin(spin);

    let map = map_chunks_vs_rayon(s);

    let rt_med = percentile(&rt, 0.5);
    let rt_p99 = percentile(&rt, 0.99);
    let tput_med = median(&mut tput);
    let spawn_med = median(&mut spawn);
    let fork_med = median(&mut fork);
    let ratio = map.shm / map.rayon;

    println!();
    println!("{:<52} {:>16} {:>16}", "measure", "result", "target");
    println!(
        "{:<52} {:>16} {:>16}",
        format!("map_slices power, {} u64, 2 workers (items/s)", s.items),
        format!("{:.3e}", map.shm),
        ""
    );
    println!(
        "{:<52} {:>16} {:>16}",
        "rayon 2 threads, same kernel and chunks (items/s)",
        format!("{:.3e}", map.rayon),
        ""
    );
    println!(
        "{:<52} {:>16} {:>16}",
        "one thread, for scale (items/s)",
        format!("{:.3e}", map.seq),
        ""
    );
    println!(
        "{:<52} {:>16} {:>16}",
        "map_slices / rayon",
        format!("{ratio:.2}x"),
        format!(">= 0.9x {}", verdict(ratio >= 0.9))
    );
    println!(
        "{:<52} {:>16} {:>16}",
        format!("apply_async round trip, {} rounds: median (us)", s.rounds),
        format!("{rt_med:.1}"),
        format!("<= 20 {}", verdict(rt_med <= 20.0))
    );
    println!(
        "{:<52} {:>16} {:>16}",
        "apply_async round trip: p99 (us)",
        format!("{rt_p99:.1}"),
        ""
    );
    println!(
        "{:<52} {:>16} {:>16}",
        "round trip, spinning off: median / p99 (us)",
        format!(
            "{:.1} / {:.1}",
            percentile(&rt_nospin, 0.5),
            percentile(&rt_nospin, 0.99)
        ),
        ""
    );
    println!(
        "{:<52} {:>16} {:>16}",
        format!("{} apply_async then gather (tasks/s)", s.tasks),
        format!("{tput_med:.0}"),
        format!(">= 200000 {}", verdict(tput_med >= 200_000.0))
    );
    println!(
        "{:<52} {:>16} {:>16}",
        format!(
            "Pool(2) start to first result, spawn (ms, {} runs)",
            s.starts
        ),
        format!("{spawn_med:.2}"),
        format!("< 20 {}", verdict(spawn_med < 20.0))
    );
    println!(
        "{:<52} {:>16} {:>16}",
        format!(
            "Pool(2) start to first result, fork (ms, {} runs)",
            s.starts
        ),
        format!("{fork_med:.2}"),
        ""
    );
}
