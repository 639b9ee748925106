//! Cost of starting a process that runs a trivial function, and joining it:
//! spawn (re-exec `/proc/self/exe` + handshake) versus fork versus the fork
//! server (a fork by the already running server, warmed up first), from a
//! single-threaded `main`. Prints the median and spread over N runs.
//!
//! `cargo bench --bench spawn [-- RUNS]` (default 30 runs per method).

use std::time::{Duration, Instant};

use shmproc::process::{Process, StartMethod};

fn trivial(x: u64) -> u64 {
    x.wrapping_mul(3)
}

fn measure(method: StartMethod, runs: usize) -> Vec<Duration> {
    let mut times = Vec::with_capacity(runs);
    for i in 0..runs {
        let t = Instant::now();
        let p = Process::builder(trivial, i as u64)
            .start_method(method)
            .build();
        p.start().expect("start");
        let code = p.join().expect("join");
        times.push(t.elapsed());
        assert_eq!(code, 0);
    }
    times.sort_unstable();
    times
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let runs: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(30)
        .max(1);
    // One warm-up of each (page cache, first exec).
    measure(StartMethod::Spawn, 1);
    measure(StartMethod::Fork, 1);
    // Also starts the fork server, which is not part of the timed runs.
    measure(StartMethod::ForkServer, 1);
    println!(
        "spawn+join of a trivial fn, {runs} runs each, {} CPUs",
        shmproc::process::cpu_count()
    );
    println!(
        "{:<8} {:>10} {:>10} {:>10} {:>10}",
        "method", "min ms", "median ms", "p90 ms", "max ms"
    );
    for (name, m) in [
        ("spawn", StartMethod::Spawn),
        ("fork", StartMethod::Fork),
        ("fserver", StartMethod::ForkServer),
    ] {
        let t = measure(m, runs);
        let p90 = t[(t.len() * 9 / 10).min(t.len() - 1)];
        println!(
            "{:<8} {:>10.3} {:>10.3} {:>10.3} {:>10.3}",
            name,
            ms(t[0]),
            ms(t[t.len() / 2]),
            ms(p90),
            ms(t[t.len() - 1])
        );
    }
}
