//! Queue and pipe benchmarks between two real processes: the bench binary
//! re-executes itself as the child (`SHMPROC_BENCH_ROLE`), which attaches to
//! the queue or pipe through its serialized handle.
//!
//! ```text
//! cargo bench --bench queue            # full run
//! cargo bench --bench queue -- --quick # smoke run with tiny sizes
//! ```
//!
//! Workloads: 1,000,000 small messages (u64) one way; 1 MiB messages one way;
//! pipe ping-pong round trips. Each is repeated and the median and range are
//! printed.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use shmproc::ipc::{Connection, Pipe, Pods, Queue, Raw};

const ROLE: &str = "SHMPROC_BENCH_ROLE";
const INPUT: &str = "SHMPROC_BENCH_INPUT";

fn encode<T: serde::Serialize>(v: &T) -> String {
    let b = postcard::to_allocvec(v).expect("encode");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn decode<T: serde::de::DeserializeOwned>(s: &str) -> T {
    let b: Vec<u8> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect();
    postcard::from_bytes(&b).expect("decode")
}

fn spawn<T: serde::Serialize>(role: &str, input: &T) -> Child {
    Command::new(std::env::current_exe().expect("exe"))
        .env(ROLE, role)
        .env(INPUT, encode(input))
        .spawn()
        .expect("spawn child")
}

fn child(role: &str) {
    let input = std::env::var(INPUT).expect("input");
    match role {
        "u64" => {
            let (q, n): (Queue<u64>, u64) = decode(&input);
            for i in 0..n {
                q.put(i).expect("put");
            }
        }
        "raw" => {
            let (q, n): (Queue<Raw<u64>>, u64) = decode(&input);
            for i in 0..n {
                q.put(Raw(i)).expect("put");
            }
        }
        "mib" => {
            let (q, n, size): (Queue<Pods<u8>>, u64, usize) = decode(&input);
            let msg = Pods(vec![7u8; size]);
            for _ in 0..n {
                q.put(&msg).expect("put");
            }
        }
        "echo" => {
            let c: Connection = decode(&input);
            while let Ok(v) = c.recv::<Raw<u64>>() {
                c.send(&v).expect("send");
            }
        }
        other => panic!("unknown role {other}"),
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    v[v.len() / 2]
}

/// Messages per second for `n` u64s, timed from the first get to the last.
fn small(n: u64, raw: bool) -> f64 {
    if raw {
        let q = Queue::<Raw<u64>>::new().expect("queue");
        let mut c = spawn("raw", &(&q, n));
        let first = q.get().expect("get").0;
        assert_eq!(first, 0);
        let t = Instant::now();
        for i in 1..n {
            assert_eq!(q.get().expect("get").0, i);
        }
        let dt = t.elapsed();
        c.wait().expect("child");
        (n - 1) as f64 / dt.as_secs_f64()
    } else {
        let q = Queue::<u64>::new().expect("queue");
        let mut c = spawn("u64", &(&q, n));
        assert_eq!(q.get().expect("get"), 0);
        let t = Instant::now();
        for i in 1..n {
            assert_eq!(q.get().expect("get"), i);
        }
        let dt = t.elapsed();
        c.wait().expect("child");
        (n - 1) as f64 / dt.as_secs_f64()
    }
}

/// GB/s for `n` messages of `size` bytes.
fn big(n: u64, size: usize) -> f64 {
    let q = Queue::<Pods<u8>>::new().expect("queue");
    let mut c = spawn("mib", &(&q, n, size));
    let m = q.get().expect("get").0;
    assert_eq!(m.len(), size);
    let t = Instant::now();
    for _ in 1..n {
        let m = q.get().expect("get").0;
        assert!(m.len() == size && m[size / 2] == 7);
    }
    let dt = t.elapsed();
    c.wait().expect("child");
    ((n - 1) as f64 * size as f64) / dt.as_secs_f64() / 1e9
}

/// Round-trip times in microseconds (sorted).
fn ping_pong(n: usize) -> Vec<f64> {
    let (a, b) = Pipe::new(true).expect("pipe");
    let mut c = spawn("echo", &b);
    drop(b);
    // Warm up.
    for i in 0..1000u64 {
        a.send(&Raw(i)).expect("send");
        assert_eq!(a.recv::<Raw<u64>>().expect("recv").0, i);
    }
    let mut rtt = Vec::with_capacity(n);
    for i in 0..n as u64 {
        let t = Instant::now();
        a.send(&Raw(i)).expect("send");
        let r = a.recv::<Raw<u64>>().expect("recv").0;
        rtt.push(t.elapsed().as_secs_f64() * 1e6);
        assert_eq!(r, i);
    }
    a.close().expect("close");
    c.wait().expect("child");
    rtt.sort_by(|x, y| x.partial_cmp(y).expect("no NaN"));
    rtt
}

fn row(name: &str, unit: &str, target: &str, mut runs: Vec<f64>) {
    let lo = runs.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = runs.iter().cloned().fold(0.0, f64::max);
    let med = median(&mut runs);
    println!("| {name} | {med:.3} {unit} | {lo:.3} - {hi:.3} | {target} |");
}

fn main() {
    if let Ok(role) = std::env::var(ROLE) {
        child(&role);
        return;
    }
    let quick = std::env::args().any(|a| a == "quick" || a == "--quick");
    let (runs, n_small, n_big, n_pp) = if quick {
        (1, 20_000, 20, 2_000)
    } else {
        (5, 1_000_000, 1_000, 20_000)
    };
    let mib = 1 << 20;
    println!(
        "shmproc ipc bench: {} runs each, spin {:?}, {} CPUs",
        runs,
        shmproc::sync::spin(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("| workload | median | range | target |");
    println!("|---|---|---|---|");
    row(
        &format!("Queue<u64> (postcard), {n_small} msgs"),
        "M msgs/s",
        ">= 5",
        (0..runs).map(|_| small(n_small, false) / 1e6).collect(),
    );
    row(
        &format!("Queue<Raw<u64>>, {n_small} msgs"),
        "M msgs/s",
        ">= 5",
        (0..runs).map(|_| small(n_small, true) / 1e6).collect(),
    );
    row(
        &format!("Queue<Pods<u8>>, {n_big} x 1 MiB"),
        "GB/s",
        ">= 2",
        (0..runs).map(|_| big(n_big, mib)).collect(),
    );
    // Bigger than the caches: memory-bound (the 1 MiB case stays cache-resident).
    let n_huge = if quick { 3 } else { 60 };
    row(
        &format!("Queue<Pods<u8>>, {n_huge} x 16 MiB"),
        "GB/s",
        "-",
        (0..runs).map(|_| big(n_huge, 16 * mib)).collect(),
    );
    let mut all = Vec::new();
    let mut meds = Vec::new();
    for _ in 0..runs {
        let r = ping_pong(n_pp);
        meds.push(r[r.len() / 2]);
        all.extend(r);
    }
    row(
        &format!("Pipe ping-pong RTT median, {n_pp} trips"),
        "us",
        "<= 10",
        meds,
    );
    all.sort_by(|x, y| x.partial_cmp(y).expect("no NaN"));
    let pct = |p: f64| all[((all.len() as f64 - 1.0) * p) as usize];
    println!(
        "ping-pong over all runs: p10 {:.2} us, p50 {:.2} us, p90 {:.2} us, p99 {:.2} us, max {:.1} us",
        pct(0.10),
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(1.0)
    );
    let _ = Duration::ZERO;
}
