//! `shmproc bench`: every kernel on every backend and worker count, timed,
//! with the results checked equal to the sequential run before anything is
//! printed.

use super::svg::{speedup_plot, Panel, Series};
use super::{parse_params, BenchArgs, CliError};
use crate::backend::{self, Backend, Job, RunError, RunOptions, SharedValues};
use crate::kernels::{lookup, rng::SplitMix64, Dtype, InputKind, KernelInfo, Params, Values};
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

/// Inputs of one kernel: the job's arrays and the output's initial contents.
/// Inputs and output live in shared memory, allocated once and used by every
/// backend (so all of them read the same pages, and the process backend works
/// on them in place); the output is reset before each run, untimed.
struct Workload {
    kernel: &'static KernelInfo,
    params: Params,
    n: usize,
    x: Option<SharedValues>,
    y: Option<SharedValues>,
    out_init: Values,
    out: SharedValues,
}

impl Workload {
    fn new(
        kernel: &'static KernelInfo,
        params: Params,
        n: usize,
        explicit: &[String],
    ) -> Result<Self, CliError> {
        let mut params = params;
        let mut n = n;
        if kernel.natural_len(&params).is_some() {
            // mandelbrot: a square image of about n pixels unless sized by --param.
            let sized = explicit
                .iter()
                .any(|p| p.starts_with("width=") || p.starts_with("height="));
            if !sized {
                let side = ((n as f64).sqrt() as u32).max(1);
                params.width = side;
                params.height = side;
            }
            n = kernel.natural_len(&params).unwrap_or(n);
        }
        let mut g = SplitMix64::new(0x5eed);
        let mut uniform = |n: usize| Values::F64((0..n).map(|_| g.next_f64()).collect());
        let (x, y) = match kernel.input {
            InputKind::Generated => (None, None),
            InputKind::F64Pair => (Some(uniform(n)), Some(uniform(n))),
            InputKind::Array(ds) if ds.contains(&Dtype::U64) => {
                (Some(Values::U64((0..n as u64).collect())), None)
            }
            InputKind::Array(_) => (Some(uniform(n)), None),
        };
        let dtype = kernel
            .output_dtype(x.as_ref().map(Values::dtype))
            .unwrap_or(Dtype::U64);
        let out_init = match kernel.output {
            // saxpy's y.
            crate::kernels::OutputKind::Map { in_place: true, .. } => uniform(n),
            _ if kernel.is_reduction() => Values::zeros(dtype, kernel.acc_len(&params)),
            _ => Values::zeros(dtype, n),
        };
        let shm = |v: &Values| {
            SharedValues::from_values(v)
                .map_err(|e| CliError::new(format!("cannot allocate shared memory: {e}")))
        };
        Ok(Self {
            kernel,
            params,
            n,
            x: x.as_ref().map(shm).transpose()?,
            y: y.as_ref().map(shm).transpose()?,
            out: shm(&out_init)?,
            out_init,
        })
    }

    fn job_of<'a>(
        kernel: &'static KernelInfo,
        params: Params,
        n: usize,
        x: &'a Option<SharedValues>,
        y: &'a Option<SharedValues>,
    ) -> Job<'a> {
        use crate::kernels::Input;
        let input = match (x.as_ref().map(SharedValues::as_input), y) {
            (Some(Input::F64(x)), Some(y)) => match y.as_input() {
                Input::F64(y) => Input::F64Pair(x, y),
                _ => Input::F64(x),
            },
            (Some(x), _) => x,
            (None, _) => Input::Generated,
        };
        Job {
            kernel,
            params,
            n,
            input,
            iota: None,
        }
    }

    /// Runs once; returns the elapsed seconds (the output stays in `self.out`).
    fn run_once(
        &mut self,
        backend: Backend,
        workers: usize,
        chunk: Option<usize>,
    ) -> Result<f64, RunError> {
        self.out.copy_from(&self.out_init)?;
        let opts = RunOptions {
            workers,
            chunk,
            progress: None,
        };
        let job = Self::job_of(self.kernel, self.params, self.n, &self.x, &self.y);
        let out = self.out.as_output()?;
        let t = Instant::now();
        backend::run(backend, &job, out, &opts)?;
        Ok(t.elapsed().as_secs_f64())
    }
}

/// Checks `got` against the sequential reference.
fn check_equal(kernel: &KernelInfo, reference: &Values, got: &Values) -> Result<(), String> {
    match (reference, got) {
        (Values::U64(a), Values::U64(b)) if a == b => Ok(()),
        (Values::F64(a), Values::F64(b)) if a.len() == b.len() => {
            for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
                let ok = if kernel.is_reduction() {
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
        (Values::U64(a), Values::U64(b)) if a.len() == b.len() => {
            let i = a.iter().zip(b).position(|(x, y)| x != y).unwrap_or(0);
            Err(format!("element {i}: {} instead of {}", b[i], a[i]))
        }
        _ => Err("different shape or element type".to_owned()),
    }
}

fn median(times: &mut [f64]) -> f64 {
    times.sort_by(f64::total_cmp);
    let m = times.len() / 2;
    if times.len() % 2 == 0 {
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

pub(super) fn bench(args: BenchArgs) -> Result<(), CliError> {
    if args.repeat == 0 {
        return Err(CliError::usage("--repeat must be at least 1"));
    }
    if args.workers.contains(&0) {
        return Err(CliError::usage("--workers values must be at least 1"));
    }
    let base = parse_params(&args.params)?;
    let kernels = args
        .kernels
        .iter()
        .map(|k| lookup(k.trim()))
        .collect::<Result<Vec<_>, _>>()?;
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

    let mut points: Vec<Point> = Vec::new();
    for &kernel in &kernels {
        kernel.check_params(&base)?;
        let mut w = Workload::new(kernel, base, args.n, &args.params)?;
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
                    Some(r) => check_equal(kernel, r, &last).map_err(|e| {
                        CliError::new(format!(
                            "{} on {backend} with {nw} workers disagrees with sequential: {e}",
                            kernel.name
                        ))
                    })?,
                }
                let med = median(&mut times);
                kernel_points.push(Point {
                    kernel: kernel.name,
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
        for p in &mut kernel_points {
            p.speedup = seq / p.median_s;
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
            "results": points,
        });
        println!("{obj}");
    } else {
        print_tables(&m, &kernels, &points, args.repeat);
    }
    if let Some(path) = &args.plot {
        let panels: Vec<Panel> = kernels
            .iter()
            .map(|k| Panel {
                title: format!(
                    "{} (n = {})",
                    k.name,
                    points
                        .iter()
                        .find(|p| p.kernel == k.name)
                        .map_or(0, |p| p.n)
                ),
                series: backends
                    .iter()
                    .filter(|&&b| b != Backend::Sequential)
                    .map(|b| Series {
                        name: b.name().to_owned(),
                        points: points
                            .iter()
                            .filter(|p| p.kernel == k.name && p.backend == b.name())
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

fn print_tables(m: &Machine, kernels: &[&'static KernelInfo], points: &[Point], repeat: usize) {
    println!(
        "machine: {} ({} CPUs) | {} | commit {} | median of {repeat} runs after 1 warm-up",
        m.cpu, m.cores, m.rustc, m.commit
    );
    for k in kernels {
        let rows: Vec<&Point> = points.iter().filter(|p| p.kernel == k.name).collect();
        let Some(first) = rows.first() else { continue };
        println!();
        println!("{} (n = {})", k.name, first.n);
        println!(
            "{:<16} {:>7} {:>11} {:>11} {:>11} {:>11} {:>11} {:>8} {:>8}",
            "backend", "workers", "median", "min", "max", "first", "items/s", "speedup", "/rayon"
        );
        for p in rows {
            println!(
                "{:<16} {:>7} {:>11} {:>11} {:>11} {:>11} {:>11.3e} {:>7.2}x {:>8}",
                p.backend,
                p.workers,
                fmt_time(p.median_s),
                fmt_time(p.min_s),
                fmt_time(p.max_s),
                fmt_time(p.first_s),
                p.items_per_s,
                p.speedup,
                p.vs_rayon.map_or("-".to_owned(), |r| format!("{r:.2}x"))
            );
        }
    }
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
        let power = lookup("power").unwrap();
        let sum = lookup("sum").unwrap();
        assert!(check_equal(power, &Values::U64(vec![1, 2]), &Values::U64(vec![1, 2])).is_ok());
        let e = check_equal(power, &Values::U64(vec![1, 2]), &Values::U64(vec![1, 3])).unwrap_err();
        assert_eq!(e, "element 1: 3 instead of 2");
        let a = Values::F64(vec![1.0]);
        let b = Values::F64(vec![1.0 + 1e-12]);
        assert!(check_equal(sum, &a, &b).is_ok());
        assert!(check_equal(power, &a, &b).is_err());
        assert!(check_equal(sum, &a, &Values::F64(vec![1.001])).is_err());
        assert!(check_equal(sum, &a, &Values::U64(vec![1])).is_err());
    }
}
