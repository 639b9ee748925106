//! What a kernel's time is compared with: the machine's read bandwidth, and
//! numpy running the same kernel in a subprocess. `shmproc bench` prints both
//! (`--vs-numpy` for numpy), and `cargo bench --bench kernels` does too.

use crate::backend::SharedValues;
use shmproc_kernels::{Dtype, Slice, Values};
use std::process::Command;
use std::time::Instant;

/// Bytes the read-bandwidth probe reads per run (256 MiB: far beyond the
/// caches of the machines we measure on).
pub const PROBE_BYTES: usize = 256 << 20;

/// Read bandwidth of shared memory, in bytes per second, with `workers`
/// threads each reading its contiguous part of `bytes` bytes: a wrapping
/// `u64` sum with independent vector accumulators (the checksum the
/// kernels use), best of `runs`. The memory is a shared segment like the
/// ones the backends read, with the same page size.
///
/// # Errors
/// A message when the shared memory cannot be allocated.
///
/// ```no_run
/// let bw = shmproc_batch::compare::read_bandwidth(2, 64 << 20, 3)?;
/// assert!(bw > 0.0);
/// # Ok::<(), String>(())
/// ```
pub fn read_bandwidth(workers: usize, bytes: usize, runs: usize) -> Result<f64, String> {
    let n = (bytes / 8).max(workers.max(1));
    let data: Vec<u64> = (0..n as u64).collect();
    let shared = SharedValues::from_slice(Slice::U64(&data))
        .map_err(|e| format!("cannot allocate {bytes} bytes of shared memory: {e}"))?;
    drop(data);
    let all = shared.as_slice();
    let per = n.div_ceil(workers.max(1));
    let mut best = f64::INFINITY;
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        let sum = std::thread::scope(|s| {
            let parts: Vec<_> = (0..n)
                .step_by(per)
                .map(|start| {
                    let part = all.slice(start..(start + per).min(n));
                    s.spawn(move || part.checksum())
                })
                .collect();
            parts
                .into_iter()
                .map(|h| h.join().unwrap_or(0))
                .fold(0u64, u64::wrapping_add)
        });
        std::hint::black_box(sum);
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok((n * 8) as f64 / best)
}

/// The numpy script: generates an input like the bench's (same size, type
/// and distribution), runs the kernel `repeat` times after a warm-up, and
/// prints the median seconds, or `-` when numpy has no single equivalent.
const SCRIPT: &str = r#"
import json, sys, time
import numpy as np
k, n, dtype, repeat, p = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), json.loads(sys.argv[5])
rng = np.random.default_rng(0x5eed)
def data():
    if dtype == "bool":
        return rng.integers(0, 2, n, dtype=np.uint8).astype(np.bool_)
    t = np.dtype({"f32": "float32", "f64": "float64"}.get(dtype, dtype.replace("i", "int").replace("u", "uint")))
    if t.kind == "f":
        return rng.random(n, dtype=np.float64).astype(t)
    return rng.integers(np.iinfo(t).min, np.iinfo(t).max, n, dtype=t, endpoint=True)
x = data()
if k == "power":
    o = np.empty_like(x)
    times = int(p.get("times", 4))
    def f():
        if times == 0:
            np.copyto(o, x)
            return
        np.multiply(x, x, out=o)
        for _ in range(times - 1):
            np.multiply(o, o, out=o)
elif k == "sum":
    f = lambda: x.sum()
elif k == "dot":
    y = data()
    f = lambda: np.dot(x, y)
elif k == "saxpy":
    y = data()
    a = x.dtype.type(float(p.get("a", 2)))
    def f():
        global y
        y += a * x
elif k == "histogram":
    lo, hi, bins = float(p.get("lo", 0)), float(p.get("hi", 1)), int(p.get("bins", 16))
    f = lambda: np.histogram(x, bins=bins, range=(lo, hi))
else:
    print("-")
    sys.exit(0)
with np.errstate(all="ignore"):
    f()
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
print(sorted(ts)[len(ts) // 2])
"#;

/// Environment that keeps numpy (and the BLAS under `np.dot`) on one thread.
const ONE_THREAD: [&str; 4] = [
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
];

/// The version of numpy that `python3` imports, or why there is none.
///
/// # Errors
/// A message saying how to install numpy.
pub fn numpy_version() -> Result<String, String> {
    let out = Command::new("python3")
        .args(["-c", "import numpy; print(numpy.__version__)"])
        .output()
        .map_err(|e| {
            format!("cannot run python3 ({e}); numpy comparisons need python3 with numpy")
        })?;
    if !out.status.success() {
        return Err(
            "python3 cannot import numpy; install it with `python3 -m pip install numpy`"
                .to_owned(),
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Median seconds numpy takes, on one thread, for `kernel` over `n` elements
/// of `dtype` with `params` (name, value), `repeat` timed runs after a
/// warm-up; `None` when numpy has no single equivalent of the kernel
/// (`normalize_rows` and the generated kernels). The numpy versions: `power`
/// squares in place `times` times, `sum` is `x.sum()`, `dot` is `np.dot`,
/// `saxpy` is `y += a * x`, `histogram` is `np.histogram` with the same bins
/// and range.
///
/// # Errors
/// A message when python3 fails or prints something else than a time.
pub fn numpy_time(
    kernel: &str,
    n: usize,
    dtype: Dtype,
    params: &[(&str, String)],
    repeat: usize,
) -> Result<Option<f64>, String> {
    let p: String = {
        let fields: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{k:?}: {v:?}"))
            .collect();
        format!("{{{}}}", fields.join(", "))
    };
    let mut cmd = Command::new("python3");
    cmd.args(["-c", SCRIPT, kernel])
        .arg(n.to_string())
        .arg(dtype.to_string())
        .arg(repeat.max(1).to_string())
        .arg(p);
    for var in ONE_THREAD {
        cmd.env(var, "1");
    }
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run python3 for the numpy {kernel}: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().last().unwrap_or("no message");
        return Err(format!("numpy {kernel} failed: {last}"));
    }
    match text.trim() {
        "-" => Ok(None),
        t => t
            .parse::<f64>()
            .map(Some)
            .map_err(|_| format!("numpy {kernel} printed {t:?} instead of a time")),
    }
}

/// Bytes a run of a kernel moves through memory: its inputs read, and its
/// output written (read and written for an in-place kernel); an
/// accumulator counts nothing.
pub fn bytes_moved(inputs: &[Option<&Values>], output: Option<&Values>, in_place: bool) -> usize {
    let size = |v: &Values| v.len() * v.dtype().size();
    let read: usize = inputs.iter().flatten().map(|v| size(v)).sum();
    let written = output.map_or(0, size);
    read + if in_place { 2 * written } else { written }
}
