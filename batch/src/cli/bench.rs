//! `shmproc bench`: every kernel on every backend and worker count, timed,
//! with the results checked equal to the sequential run before anything is
//! printed.

use super::files::raw_default;
use super::svg::{speedup_plot, Panel, Series};
use super::{BenchArgs, CliError};
use crate::backend::{self, Backend, Job, KernelRef, RunError, RunOptions, SharedValues};
use crate::{compare, Registry};
use shmproc_kernels::{rng::SplitMix64, Dtype, Kind, Params, Slice, Values};
use std::time::Instant;

/// Relative tolerance for floating-point reductions across backends (they are
/// in fact bitwise equal for a fixed chunk size; the tolerance is a guard).
const REDUCTION_RTOL: f64 = 1e-9;

/// One measured point.
#[derive(Debug, Clone, serde::Serialize)]
struct Point {
    kernel: &'static str,
    n: usize,
    backend: &'static str,
    workers: usize,
    /// Median of the timed runs, seconds.
    median_s: f64,
    min_s: f64,
    max_s: f64,
    /// The untimed-for-median warm-up run (cold start: pool creation, page faults).
    first_s: f64,
    items_per_s: f64,
    /// Sequential median / this median.
    speedup: f64,
    /// This median / rayon's median at the same worker count.
    vs_rayon: Option<f64>,
    /// Bytes read and written per second (inputs read, a map's output
    /// written, an in-place output read and written).
    bytes_per_s: f64,
    /// `bytes_per_s` over the probed read bandwidth at this worker count.
    of_bandwidth: Option<f64>,
    /// This median / numpy's median (`--vs-numpy`, when numpy has the kernel).
    vs_numpy: Option<f64>,
}

/// numpy's time for one kernel (`--vs-numpy`).
#[derive(Debug, Clone, serde::Serialize)]
struct NumpyPoint {
    kernel: &'static str,
    n: usize,
    dtype: String,
    /// Median seconds, one thread; `None` when numpy has no equivalent.
    median_s: Option<f64>,
}

/// The probed read bandwidth at one worker count.
#[derive(Debug, Clone, serde::Serialize)]
struct Bandwidth {
    workers: usize,
    bytes_per_s: f64,
}

#[derive(Debug, serde::Serialize)]
struct Machine {
    cpu: String,
    cores: usize,
    rustc: &'static str,
    commit: &'static str,
}

fn machine() -> Machine {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown cpu".to_owned());
    Machine {
        cpu,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        rustc: option_env!("SHMPROC_RUSTC_VERSION").unwrap_or("rustc (unknown version)"),
        commit: option_env!("SHMPROC_GIT_COMMIT").unwrap_or("unknown"),
    }
}

/// `n` test values of `dtype`: uniform in [0, 1) for floats, uniformly random
/// bits for integers and bools.
fn random_values(g: &mut SplitMix64, dtype: Dtype, n: usize) -> Values {
    macro_rules! ints {
        ($($v:ident($t:ty)),*) => {
            match dtype {
                Dtype::F64 => Values::F64((0..n).map(|_| g.next_f64()).collect()),
                Dtype::F32 => Values::F32((0..n).map(|_| g.next_f64() as f32).collect()),
                Dtype::Bool => Values::Bool((0..n).map(|_| (g.next_u64() & 1) as u8).collect()),
                $(Dtype::$v => Values::$v((0..n).map(|_| g.next_u64() as $t).collect()),)*
            }
        };
    }
    ints!(
        I8(i8),
        I16(i16),
        I32(i32),
        I64(i64),
        U8(u8),
        U16(u16),
        U32(u32),
        U64(u64)
    )
}

/// Inputs of one kernel: the job's arrays and the output's initial contents.
/// Inputs and output live in shared memory, allocated once and used by every
/// backend (so all of them read the same pages, and the process backend works
/// on them in place); the output is reset before each run, untimed.
struct Workload<'k> {
    kernel: &'k KernelRef,
    params: Params,
    n: usize,
    x: Option<SharedValues>,
    y: Option<SharedValues>,
    out_init: Values,
    out: SharedValues,
    /// Element type of the inputs (`None`: generated kernel).
    in_dtype: Option<Dtype>,
    /// Bytes one run moves (see [`compare::bytes_moved`]).
    bytes: usize,
}

impl<'k> Workload<'k> {
    fn new(
        kr: &'k KernelRef,
        params: Params,
        n: usize,
        dtype: Option<Dtype>,
        explicit: &[String],
    ) -> Result<Self, CliError> {
        let kernel = kr.kernel();
        let sig = kernel.signature();
        let mut params = params;
        let mut n = n;
        if kernel.natural_len(&params).is_some() {
            // mandelbrot: a square image of about n pixels unless sized by --param.
            let sized = explicit
                .iter()
                .any(|p| p.starts_with("width=") || p.starts_with("height="));
            if !sized {
                let side = ((n as f64).sqrt() as u32).max(1);
                params.set("width", side).set("height", side);
            }
            n = kernel.natural_len(&params).unwrap_or(n);
        }
        let in_dtype = match dtype {
            Some(d) if sig.inputs > 0 => {
                shmproc_kernels::check_inputs(kernel, Some(d), sig.inputs)?;
                d
            }
            _ => raw_default(kernel),
        };
        let mut g = SplitMix64::new(0x5eed);
        let (x, y) = match sig.inputs {
            0 => (None, None),
            1 => (Some(random_values(&mut g, in_dtype, n)), None),
            _ => (
                Some(random_values(&mut g, in_dtype, n)),
                Some(random_values(&mut g, in_dtype, n)),
            ),
        };
        let out_dtype = kernel.output_dtype(x.as_ref().map(Values::dtype));
        let out_init = match sig.kind {
            // saxpy's y.
            Kind::InPlace => random_values(&mut g, out_dtype, n),
            Kind::Reduce => Values::zeros(out_dtype, kernel.acc_len(&params)),
            Kind::Map => Values::zeros(out_dtype, n),
        };
        let bytes = compare::bytes_moved(
            &[x.as_ref(), y.as_ref()],
            (sig.kind != Kind::Reduce).then_some(&out_init),
            sig.kind == Kind::InPlace,
        );
        let shm = |v: &Values| {
            SharedValues::from_slice(v.as_slice())
                .map_err(|e| CliError::new(format!("cannot allocate shared memory: {e}")))
        };
        Ok(Self {
            kernel: kr,
            params,
            n,
            x: x.as_ref().map(shm).transpose()?,
            y: y.as_ref().map(shm).transpose()?,
            out: shm(&out_init)?,
            in_dtype: x.as_ref().map(Values::dtype),
            out_init,
            bytes,
        })
    }

    /// Runs once; returns the elapsed seconds (the output stays in `self.out`).
    fn run_once(
        &mut self,
        backend: Backend,
        workers: usize,
        chunk: Option<usize>,
    ) -> Result<f64, RunError> {
        self.out
            .as_slice_mut()?
            .copy_from(self.out_init.as_slice())
            .map_err(RunError::Invalid)?;
        let opts = RunOptions {
            workers,
            chunk,
            progress: None,
        };
        let job = match (&self.x, &self.y) {
            (Some(x), Some(y)) => {
                Job::pair(self.kernel, self.params.clone(), x.as_slice(), y.as_slice())
            }
            (Some(x), None) => Job::new(self.kernel, self.params.clone(), x.as_slice()),
            (None, _) => Job::generated(self.kernel, self.params.clone(), self.n),
        };
        let out = self.out.as_slice_mut()?;
        let t = Instant::now();
        backend::run(backend, &job, out, &opts)?;
        Ok(t.elapsed().as_secs_f64())
    }
}

/// Checks `got` against the sequential reference: bit for bit, except
/// floating-point reductions, within a relative tolerance.
fn check_equal(reduce: bool, reference: Slice<'_>, got: Slice<'_>) -> Result<(), String> {
    if reference.dtype() != got.dtype() || reference.len() != got.len() {
        return Err("different shape or element type".to_owned());
    }
    let (a, b) = (reference.to_values(), got.to_values());
    let floats: Option<(Vec<f64>, Vec<f64>)> = match (&a, &b) {
        (Values::F64(a), Values::F64(b)) => Some((a.clone(), b.clone())),
        (Values::F32(a), Values::F32(b)) => Some((
            a.iter().map(|&v| f64::from(v)).collect(),
            b.iter().map(|&v| f64::from(v)).collect(),
        )),
        _ => None,
    };
    match floats {
        Some((a, b)) => {
            for (i, (&x, &y)) in a.iter().zip(&b).enumerate() {
                let ok = if reduce {
                    (x - y).abs() <= REDUCTION_RTOL * x.abs().max(1.0)
                } else {
                    x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan())
                };
                if !ok {
                    return Err(format!("element {i}: {y} instead of {x}"));
                }
            }
            Ok(())
        }
        None if a == b => Ok(()),
        None => {
            let i = (0..reference.len())
                .find(|&i| reference.slice(i..i + 1) != got.slice(i..i + 1))
                .unwrap_or(0);
            Err(format!(
                "element {i}: {:?} instead of {:?}",
                got.slice(i..i + 1),
                reference.slice(i..i + 1)
            ))
        }
    }
}

/// The parameters of `kernel`: its defaults, overridden by the pairs it
/// declares.
fn params_for(kr: &KernelRef, pairs: &[String]) -> Result<Params, CliError> {
    let names: Vec<_> = kr.kernel().params().iter().map(|p| p.name).collect();
    let mine: Vec<&String> = pairs
        .iter()
        .filter(|p| {
            p.split_once('=')
                .is_some_and(|(k, _)| names.contains(&k.trim()))
        })
        .collect();
    Ok(kr.params(mine)?)
}

fn median(times: &mut [f64]) -> f64 {
    times.sort_by(f64::total_cmp);
    let m = times.len() / 2;
    if times.len().is_multiple_of(2) {
        (times[m - 1] + times[m]) / 2.0
    } else {
        times[m]
    }
}

fn fmt_time(s: f64) -> String {
    if s >= 1.0 {
        format!("{s:.3} s")
    } else if s >= 1e-3 {
        format!("{:.3} ms", s * 1e3)
    } else {
        format!("{:.1} us", s * 1e6)
    }
}

pub(super) fn bench(args: BenchArgs, registry: &Registry) -> Result<(), CliError> {
    if args.repeat == 0 {
        return Err(CliError::usage("--repeat must be at least 1"));
    }
    if args.chunk == Some(0) {
        return Err(CliError::usage("--chunk must be at least 1"));
    }
    if args.workers.contains(&0) {
        return Err(CliError::usage("--workers values must be at least 1"));
    }
    let kernels: Vec<&KernelRef> = if args.kernels.is_empty() {
        registry.iter().collect()
    } else {
        args.kernels
            .iter()
            .map(|k| registry.lookup(k.trim()))
            .collect::<Result<Vec<_>, _>>()?
    };
    // Every --param must belong to at least one of the kernels.
    for pair in &args.params {
        let Some((name, _)) = pair.split_once('=') else {
            return Err(CliError::usage(format!(
                "--param {pair:?}: expected name=value"
            )));
        };
        let name = name.trim();
        if !kernels
            .iter()
            .any(|k| k.kernel().params().iter().any(|p| p.name == name))
        {
            return Err(CliError::usage(format!(
                "--param {name}: none of the kernels takes it (see shmproc kernels)"
            )));
        }
    }
    // Sequential first (the reference), each backend once, in the given order.
    let mut backends = vec![Backend::Sequential];
    for &b in &args.backends {
        if !backends.contains(&b) {
            backends.push(b);
        }
    }
    let mut workers = args.workers.clone();
    workers.sort_unstable();
    workers.dedup();

    let numpy = if args.vs_numpy {
        Some(compare::numpy_version().map_err(CliError::new)?)
    } else {
        None
    };
    let mut bandwidth: Vec<Bandwidth> = Vec::new();
    for nw in std::iter::once(1).chain(workers.iter().copied()) {
        if bandwidth.iter().all(|b| b.workers != nw) {
            let bytes_per_s =
                compare::read_bandwidth(nw, compare::PROBE_BYTES, 5).map_err(CliError::new)?;
            bandwidth.push(Bandwidth {
                workers: nw,
                bytes_per_s,
            });
        }
    }
    let mut points: Vec<Point> = Vec::new();
    let mut numpy_points: Vec<NumpyPoint> = Vec::new();
    for &kr in &kernels {
        let kernel = kr.kernel();
        let params = params_for(kr, &args.params)?;
        kernel.check(&params)?;
        let reduce = kernel.signature().kind == Kind::Reduce;
        let mut w = Workload::new(kr, params, args.n, args.dtype, &args.params)?;
        let mut reference: Option<Values> = None;
        let mut kernel_points: Vec<Point> = Vec::new();
        for &backend in &backends {
            let counts: &[usize] = if backend == Backend::Sequential {
                &[1]
            } else {
                &workers
            };
            for &nw in counts {
                let first = w.run_once(backend, nw, args.chunk)?;
                let mut times = Vec::with_capacity(args.repeat);
                for _ in 0..args.repeat {
                    times.push(w.run_once(backend, nw, args.chunk)?);
                }
                let last = w.out.to_values();
                match &reference {
                    None => reference = Some(last),
                    Some(r) => check_equal(reduce, r.as_slice(), last.as_slice()).map_err(|e| {
                        CliError::new(format!(
                            "{} on {backend} with {nw} workers disagrees with sequential: {e}",
                            kernel.name()
                        ))
                    })?,
                }
                let med = median(&mut times);
                kernel_points.push(Point {
                    kernel: kernel.name(),
                    n: w.n,
                    backend: backend.name(),
                    workers: nw,
                    median_s: med,
                    min_s: times[0],
                    max_s: times[times.len() - 1],
                    first_s: first,
                    items_per_s: if med > 0.0 { w.n as f64 / med } else { 0.0 },
                    speedup: 0.0,
                    vs_rayon: None,
                    bytes_per_s: if med > 0.0 { w.bytes as f64 / med } else { 0.0 },
                    of_bandwidth: None,
                    vs_numpy: None,
                });
            }
        }
        let seq = kernel_points
            .iter()
            .find(|p| p.backend == "sequential")
            .map_or(f64::NAN, |p| p.median_s);
        let rayon: Vec<(usize, f64)> = kernel_points
            .iter()
            .filter(|p| p.backend == "rayon")
            .map(|p| (p.workers, p.median_s))
            .collect();
        let numpy_s = match (&numpy, w.in_dtype) {
            (Some(_), Some(dtype)) => {
                let pairs: Vec<(&str, String)> = kernel
                    .params()
                    .iter()
                    .map(|spec| {
                        (
                            spec.name,
                            w.params.get(spec.name).unwrap_or_default().to_owned(),
                        )
                    })
                    .collect();
                let t = compare::numpy_time(kernel.name(), w.n, dtype, &pairs, args.repeat)
                    .map_err(CliError::new)?;
                numpy_points.push(NumpyPoint {
                    kernel: kernel.name(),
                    n: w.n,
                    dtype: dtype.to_string(),
                    median_s: t,
                });
                t
            }
            _ => None,
        };
        for p in &mut kernel_points {
            p.speedup = seq / p.median_s;
            p.vs_numpy = numpy_s.map(|t| p.median_s / t);
            p.of_bandwidth = bandwidth
                .iter()
                .find(|b| b.workers == p.workers)
                .filter(|_| p.bytes_per_s > 0.0)
                .map(|b| p.bytes_per_s / b.bytes_per_s);
            p.vs_rayon = rayon
                .iter()
                .find(|(nw, _)| *nw == p.workers)
                .map(|(_, r)| p.median_s / r);
        }
        points.extend(kernel_points);
    }

    let m = machine();
    if args.json {
        let obj = serde_json::json!({
            "machine": m,
            "repeat": args.repeat,
            "chunk": args.chunk,
            "simd": shmproc_kernels::simd::Level::current().name(),
            "read_bandwidth": bandwidth,
            "numpy_version": numpy,
            "numpy": numpy_points,
            "results": points,
        });
        println!("{obj}");
    } else {
        let env = Env {
            repeat: args.repeat,
            bandwidth: &bandwidth,
            numpy: numpy.as_deref(),
            numpy_points: &numpy_points,
        };
        print_tables(&m, &kernels, &points, &env);
    }
    if let Some(path) = &args.plot {
        let panels: Vec<Panel> = kernels
            .iter()
            .map(|k| Panel {
                title: format!(
                    "{} (n = {})",
                    k.name(),
                    points
                        .iter()
                        .find(|p| p.kernel == k.name())
                        .map_or(0, |p| p.n)
                ),
                series: backends
                    .iter()
                    .filter(|&&b| b != Backend::Sequential)
                    .map(|b| Series {
                        name: b.name().to_owned(),
                        points: points
                            .iter()
                            .filter(|p| p.kernel == k.name() && p.backend == b.name())
                            .map(|p| (p.workers as f64, p.speedup))
                            .collect(),
                    })
                    .filter(|s| !s.points.is_empty())
                    .collect(),
            })
            .collect();
        let title = format!("speed-up over sequential: {} ({} CPUs)", m.cpu, m.cores);
        std::fs::write(path, speedup_plot(&title, &panels))
            .map_err(|e| CliError::new(format!("cannot write {}: {e}", path.display())))?;
    }
    Ok(())
}

/// What the tables print besides the points.
struct Env<'a> {
    repeat: usize,
    bandwidth: &'a [Bandwidth],
    numpy: Option<&'a str>,
    numpy_points: &'a [NumpyPoint],
}

fn print_tables(m: &Machine, kernels: &[&KernelRef], points: &[Point], env: &Env<'_>) {
    println!(
        "machine: {} ({} CPUs) | {} | commit {} | simd {} | median of {} runs after 1 warm-up",
        m.cpu,
        m.cores,
        m.rustc,
        m.commit,
        shmproc_kernels::simd::Level::current(),
        env.repeat
    );
    let bw: Vec<String> = env
        .bandwidth
        .iter()
        .map(|b| format!("{} GB/s with {}", fmt_gbs(b.bytes_per_s), b.workers))
        .collect();
    println!(
        "read bandwidth (u64 sum over {} MiB of shared memory, best of 5): {}",
        compare::PROBE_BYTES >> 20,
        bw.join(", ")
    );
    if let Some(v) = env.numpy {
        println!("numpy {v}, one thread (OPENBLAS_NUM_THREADS=1), same size and dtype; /numpy = this time / numpy's");
    }
    for k in kernels {
        let rows: Vec<&Point> = points.iter().filter(|p| p.kernel == k.name()).collect();
        let Some(first) = rows.first() else { continue };
        println!();
        println!("{} (n = {})", k.name(), first.n);
        println!(
            "{:<16} {:>7} {:>11} {:>11} {:>11} {:>11} {:>11} {:>8} {:>8} {:>7} {:>5} {:>7}",
            "backend",
            "workers",
            "median",
            "min",
            "max",
            "first",
            "items/s",
            "speedup",
            "/rayon",
            "GB/s",
            "%bw",
            "/numpy"
        );
        let ratio = |r: Option<f64>| r.map_or("-".to_owned(), |r| format!("{r:.2}x"));
        for p in rows {
            println!(
                "{:<16} {:>7} {:>11} {:>11} {:>11} {:>11} {:>11.3e} {:>7.2}x {:>8} {:>7} {:>5} {:>7}",
                p.backend,
                p.workers,
                fmt_time(p.median_s),
                fmt_time(p.min_s),
                fmt_time(p.max_s),
                fmt_time(p.first_s),
                p.items_per_s,
                p.speedup,
                ratio(p.vs_rayon),
                if p.bytes_per_s > 0.0 { fmt_gbs(p.bytes_per_s) } else { "-".to_owned() },
                p.of_bandwidth.map_or("-".to_owned(), |f| format!("{:.0}%", f * 100.0)),
                ratio(p.vs_numpy),
            );
        }
        if let Some(np) = env.numpy_points.iter().find(|p| p.kernel == k.name()) {
            match np.median_s {
                Some(t) => println!(
                    "{:<16} {:>7} {:>11}   ({}, {:.3e} items/s)",
                    "numpy",
                    1,
                    fmt_time(t),
                    np.dtype,
                    np.n as f64 / t
                ),
                None => println!(
                    "{:<16} {:>7} {:>11}   (no single numpy equivalent)",
                    "numpy", 1, "-"
                ),
            }
        }
    }
}

fn fmt_gbs(bytes_per_s: f64) -> String {
    format!("{:.1}", bytes_per_s / 1e9)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn check_equal_is_exact_for_integers_and_maps_and_tolerant_for_float_sums() {
        let u = |v: &[u64]| Values::U64(v.to_vec());
        assert!(check_equal(false, u(&[1, 2]).as_slice(), u(&[1, 2]).as_slice()).is_ok());
        let e = check_equal(false, u(&[1, 2]).as_slice(), u(&[1, 3]).as_slice()).unwrap_err();
        assert_eq!(e, "element 1: U64([3]) instead of U64([2])");
        let a = Values::F64(vec![1.0]);
        let b = Values::F64(vec![1.0 + 1e-12]);
        assert!(check_equal(true, a.as_slice(), b.as_slice()).is_ok());
        assert!(check_equal(false, a.as_slice(), b.as_slice()).is_err());
        assert!(check_equal(true, a.as_slice(), Slice::F64(&[1.001])).is_err());
        assert!(check_equal(true, a.as_slice(), Slice::U64(&[1])).is_err());
    }
}
