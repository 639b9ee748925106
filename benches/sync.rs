//! Sync primitives: shmproc against raw_sync (and std as a reference).
//!
//! 1. Uncontended lock + unlock, ns per pair.
//! 2. Cross-process event round trip (parent and a forked child ping-pong),
//!    median and p99 in µs.
//!
//! `cargo bench --bench sync` (add `-- --quick` for a smoke run). Each figure is
//! the median over several runs; compare within one run, the machine is noisy.

use std::sync::Arc;
use std::time::{Duration, Instant};

use raw_sync::events::{Event as RsEvent, EventInit, EventState};
use raw_sync::locks::{LockInit, Mutex as RsMutex};
use raw_sync::Timeout;
use shmproc::segment::Segment;
use shmproc::sync::{Event, Mutex};

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p) as usize]
}

fn time_ns(iters: u64, mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    for _ in 0..iters {
        f();
    }
    t.elapsed().as_nanos() as f64 / iters as f64
}

fn uncontended(runs: usize, iters: u64) {
    println!("uncontended lock+unlock (ns per pair, median of {runs} runs of {iters})");
    let m = Mutex::new(0u64).expect("shmproc mutex");
    let mut ours: Vec<f64> = (0..runs)
        .map(|_| time_ns(iters, || *m.lock().expect("lock") += 1))
        .collect();

    let seg = Segment::create(4096).expect("segment");
    let base = seg.as_ptr();
    // SAFETY: the segment is 4096 bytes past a 128-byte header, freshly zeroed,
    // and outlives the lock; raw_sync needs its lock + data area there.
    let (rs, _) = unsafe { RsMutex::new(base.add(256), base.add(1024)) }.expect("raw_sync mutex");
    let mut theirs: Vec<f64> = (0..runs)
        .map(|_| time_ns(iters, || drop(rs.lock().expect("lock"))))
        .collect();

    let sm = std::sync::Mutex::new(0u64);
    let mut std_: Vec<f64> = (0..runs)
        .map(|_| {
            time_ns(iters, || {
                *sm.lock().expect("lock") += 1;
            })
        })
        .collect();
    println!(
        "  {:<28} {:>8.1}",
        "shmproc::sync::Mutex (robust)",
        median(&mut ours)
    );
    println!(
        "  {:<28} {:>8.1}",
        "raw_sync::locks::Mutex",
        median(&mut theirs)
    );
    println!(
        "  {:<28} {:>8.1}",
        "std::sync::Mutex (in-process)",
        median(&mut std_)
    );
}

/// Forks a child that runs `child` and leaves with `_exit`; returns its pid.
fn fork_child(child: impl FnOnce()) -> libc::pid_t {
    // SAFETY: the bench is single-threaded at this point (no pools, no helper
    // threads), so the child may run ordinary Rust code; it leaves via _exit
    // and never returns into the parent's stack frames.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        child();
        // SAFETY: _exit ends the child without running the parent's destructors.
        unsafe { libc::_exit(0) };
    }
    pid
}

fn reap(pid: libc::pid_t) {
    let mut st = 0;
    // SAFETY: pid is our child; st is a valid out-parameter.
    unsafe { libc::waitpid(pid, &mut st, 0) };
}

fn roundtrip_shmproc(rounds: usize) -> Vec<f64> {
    let seg = Arc::new(Segment::builder().memfd().create(4096).expect("segment"));
    let ping = Event::new_in(&seg).expect("event");
    let pong = Event::new_in(&seg).expect("event");
    let pid = fork_child(|| {
        for _ in 0..rounds {
            ping.wait().expect("wait");
            ping.clear();
            pong.set();
        }
    });
    let mut out = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        ping.set();
        pong.wait().expect("wait");
        pong.clear();
        out.push(t.elapsed().as_nanos() as f64 / 1000.0);
    }
    reap(pid);
    out
}

fn roundtrip_raw_sync(rounds: usize) -> Vec<f64> {
    let seg = Segment::builder().memfd().create(4096).expect("segment");
    let base = seg.as_ptr();
    // SAFETY: two event areas inside the 4 KiB data region, each 1 KiB apart
    // (raw_sync's event needs ~96 bytes); the segment outlives both.
    let (ping, _) = unsafe { RsEvent::new(base.add(256), true) }.expect("event");
    // SAFETY: as above.
    let (pong, _) = unsafe { RsEvent::new(base.add(1280), true) }.expect("event");
    let pid = fork_child(|| {
        for _ in 0..rounds {
            ping.wait(Timeout::Infinite).expect("wait");
            pong.set(EventState::Signaled).expect("set");
        }
    });
    let mut out = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        ping.set(EventState::Signaled).expect("set");
        pong.wait(Timeout::Infinite).expect("wait");
        out.push(t.elapsed().as_nanos() as f64 / 1000.0);
    }
    reap(pid);
    out
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (runs, iters, rounds) = if quick {
        (3, 10_000, 500)
    } else {
        (7, 2_000_000, 20_000)
    };
    uncontended(runs, iters);

    println!("\ncross-process event round trip, {rounds} rounds (µs)");
    println!("  {:<40} {:>8} {:>8}", "", "p50", "p99");
    for (name, f) in [
        (
            format!("shmproc Event (futex, spin {:?})", shmproc::sync::spin()),
            roundtrip_shmproc as fn(usize) -> Vec<f64>,
        ),
        (
            "raw_sync Event (pthread cond)".to_owned(),
            roundtrip_raw_sync,
        ),
    ] {
        let mut v = f(rounds);
        println!(
            "  {:<40} {:>8.2} {:>8.2}",
            name,
            median(&mut v),
            pct(&mut v, 0.99)
        );
    }
    shmproc::sync::set_spin(Duration::ZERO);
    let mut v = roundtrip_shmproc(rounds);
    println!(
        "  {:<40} {:>8.2} {:>8.2}",
        "shmproc Event (futex, no spin)",
        median(&mut v),
        pct(&mut v, 0.99)
    );
}
