//! `shmproc run KERNEL`: one kernel over a file (or a generated `0..n`).

use super::files::{load, raw_default, Loaded, Sink};
use super::{CliError, RunArgs};
use crate::backend::{self, Job, RunOptions};
use crate::Registry;
use shmproc_kernels::{Dtype, Kind, Slice};
use std::io::IsTerminal;
use std::time::Instant;

/// Index-space size of `shmproc run` without an input file or `--n`.
pub(super) const DEFAULT_N: usize = 10_000_000;

pub(super) fn run(args: RunArgs, kernels: &Registry) -> Result<(), CliError> {
    let kr = kernels.lookup(&args.kernel)?;
    let kernel = kr.kernel();
    let sig = kernel.signature();
    let params = check_args(&args, kr)?;
    let dtype_arg = args.dtype;
    let workers = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |w| w.get()));

    // Inputs: files (binary ones mapped, and mapped by worker processes too:
    // zero copy), or 0..n, which no one materialises: each chunk generates
    // its own range (`iota`), on every backend.
    let (x, y): (Option<Loaded>, Option<Loaded>) = match &args.input {
        Some(path) if sig.inputs > 0 => {
            let x = load(path, args.input_format, dtype_arg, kernel)?;
            // The second input takes the first's type unless it is a .npy.
            let y = match &args.input2 {
                Some(p) => Some(load(
                    p,
                    args.input_format,
                    dtype_arg.or(Some(x.dtype())),
                    kernel,
                )?),
                None => None,
            };
            (Some(x), y)
        }
        _ => (None, None),
    };
    if let Some(x) = &x {
        if !sig.accepts(x.dtype()) {
            return Err(CliError::new(format!(
                "{}: {} (use --dtype to read the file as another type)",
                args.input
                    .as_deref()
                    .map_or("input".into(), |p| p.display().to_string()),
                shmproc_kernels::check_inputs(kernel, Some(x.dtype()), sig.inputs)
                    .err()
                    .map_or_else(String::new, |e| e.to_string())
            )));
        }
    }
    let xs: Option<Slice<'_>> = x.as_ref().map(Loaded::as_slice);
    let ys: Option<Slice<'_>> = match (sig.inputs, &y, xs) {
        (2, Some(y), _) => Some(y.as_slice()),
        (2, None, xs) => xs,
        _ => None,
    };
    if let (Some(a), Some(b)) = (xs, ys) {
        if a.len() != b.len() || a.dtype() != b.dtype() {
            return Err(CliError::new(format!(
                "--input has {} {} elements but --input2 has {} {}",
                a.len(),
                a.dtype(),
                b.len(),
                b.dtype()
            )));
        }
    }
    let job = match (xs, ys) {
        (Some(x), Some(y)) => Job::pair(kr, params.clone(), x, y),
        (Some(x), None) => Job::new(kr, params.clone(), x),
        (None, _) if sig.inputs == 0 => Job::generated(
            kr,
            params.clone(),
            args.n.or(kernel.natural_len(&params)).unwrap_or(DEFAULT_N),
        ),
        (None, _) => Job::iota(
            kr,
            params.clone(),
            args.n.unwrap_or(DEFAULT_N),
            dtype_arg.unwrap_or_else(|| raw_default(kernel)),
        ),
    };
    let in_shape = match &x {
        Some(x) => x.shape.clone(),
        None => vec![job.n],
    };
    let job = job.shape(&in_shape)?;
    let n = job.elements();
    let in_dtype = job.input_dtype();

    // Output: created before the work so that an unwritable path fails early.
    // Without --output, a map kernel's results are only checksummed, chunk by
    // chunk (nothing of size n is allocated); a reduction's accumulator is
    // kept for the summary. A map's output has the input's shape.
    let reduce = sig.kind == Kind::Reduce;
    let out_dtype = kernel.output_dtype(in_dtype);
    let out_shape = if reduce {
        vec![kernel.acc_len(&params)]
    } else {
        in_shape.clone()
    };
    let mut sink = match (&args.output, reduce) {
        (None, false) => None,
        (dest, _) => Some(Sink::create(
            dest.as_deref(),
            args.format,
            out_dtype,
            &out_shape,
        )?),
    };

    // Progress: a bar on a terminal (drawn from the start, with elapsed time,
    // items, rate and ETA), or with --progress and no terminal, a line on
    // stderr every PROGRESS_EVERY.
    let tty = std::io::stderr().is_terminal();
    let show_bar = tty && !args.quiet && !args.json;
    let bar = show_bar.then(|| {
        let bar = indicatif::ProgressBar::with_draw_target(
            Some(job.n as u64),
            indicatif::ProgressDrawTarget::stderr(),
        );
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{elapsed_precise} {bar:40} {human_pos}/{human_len} items {per_sec} eta {eta}",
        ) {
            bar.set_style(style);
        }
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        bar
    });
    let done = std::sync::atomic::AtomicU64::new(0);
    let progress = |k: usize| {
        done.fetch_add(k as u64, std::sync::atomic::Ordering::Relaxed);
        if let Some(bar) = &bar {
            bar.inc(k as u64);
        }
    };
    let (stop_lines, lines_stopped) = std::sync::mpsc::channel::<()>();
    let opts = RunOptions {
        workers,
        chunk: args.chunk,
        progress: Some(&progress),
    };
    let started = Instant::now();
    let output = sink.as_mut().map(Sink::output).transpose()?;
    let total = job.n as u64;
    let sum = std::thread::scope(|scope| {
        if args.progress && !show_bar {
            let done = &done;
            scope.spawn(move || progress_lines(done, total, started, &lines_stopped));
        }
        let sum = backend::run_checksum(args.backend, &job, output, &opts);
        drop(stop_lines);
        sum
    });
    let elapsed = started.elapsed().as_secs_f64();
    if let Some(stop) = crate::signal::pending() {
        crate::signal::stop(stop);
    }
    // An input that shrank explains any failure (a worker that faulted on
    // it), and voids a success.
    for input in [&x, &y].into_iter().flatten() {
        input.check_intact()?;
    }
    let sum = sum?;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }

    let result = match &sink {
        Some(sink) if reduce => Some((json_values(sink.values()), text_values(sink.values()))),
        _ => None,
    };
    if let Some(sink) = sink {
        sink.finish()?;
    }

    print_summary(
        &args,
        &Summary {
            kernel: kernel.name(),
            items: n,
            in_dtype,
            in_shape: &in_shape,
            out_dtype,
            reduce,
            workers_json: serde_json::json!(workers),
            workers_text: workers.to_string(),
            placement: None,
            elapsed,
            checksum: sum,
            result,
        },
    );
    Ok(())
}

/// What a run's summary says.
pub(super) struct Summary<'a> {
    pub(super) kernel: &'static str,
    pub(super) items: usize,
    pub(super) in_dtype: Option<Dtype>,
    pub(super) in_shape: &'a [usize],
    pub(super) out_dtype: Dtype,
    pub(super) reduce: bool,
    /// `"workers"` in `--json`.
    pub(super) workers_json: serde_json::Value,
    /// The `workers:` line.
    pub(super) workers_text: String,
    /// An MPI run: more JSON fields and the `ranks:` line.
    pub(super) placement: Option<(serde_json::Map<String, serde_json::Value>, String)>,
    pub(super) elapsed: f64,
    pub(super) checksum: u64,
    /// A reduction's accumulator, as JSON and as text.
    pub(super) result: Option<(serde_json::Value, String)>,
}

/// Prints the summary: one JSON object with `--json`, else the text lines
/// (nothing with `--quiet`).
pub(super) fn print_summary(args: &RunArgs, s: &Summary<'_>) {
    let items_per_s = if s.elapsed > 0.0 {
        s.items as f64 / s.elapsed
    } else {
        0.0
    };
    if args.json {
        let mut obj = serde_json::json!({
            "kernel": s.kernel,
            "items": s.items,
            "dtype": s.in_dtype.map(Dtype::name),
            "shape": s.in_shape,
            "output_dtype": s.out_dtype.name(),
            "backend": args.backend.name(),
            "workers": s.workers_json,
            "elapsed_s": s.elapsed,
            "items_per_s": items_per_s,
            "checksum": s.checksum,
        });
        if let Some(map) = obj.as_object_mut() {
            if let Some((r, _)) = &s.result {
                map.insert("result".into(), r.clone());
            }
            if let Some((more, _)) = &s.placement {
                map.extend(more.clone());
            }
        }
        println!("{obj}");
    } else if !args.quiet {
        println!("kernel:   {}", s.kernel);
        println!("items:    {}", s.items);
        if let Some(d) = s.in_dtype {
            println!("dtype:    {d}");
        }
        if s.in_shape.len() > 1 {
            println!("shape:    {:?}", s.in_shape);
        }
        println!(
            "output:   {}{}",
            s.out_dtype,
            if s.reduce { " accumulator" } else { "" }
        );
        println!("backend:  {}", args.backend);
        if let Some((_, line)) = &s.placement {
            println!("ranks:    {line}");
        }
        println!("workers:  {}", s.workers_text);
        println!("elapsed:  {:.6} s", s.elapsed);
        println!("items/s:  {items_per_s:.4e}");
        println!("checksum: {}", s.checksum);
        if let Some((_, r)) = &s.result {
            println!("result:   {r}");
        }
        if let Some(out) = &args.output {
            println!("written:  {}", out.display());
        }
    }
}

/// The checks of `shmproc run`'s options that need no file: returns the
/// kernel's parameters.
pub(super) fn check_args(
    args: &RunArgs,
    kr: &crate::backend::KernelRef,
) -> Result<shmproc_kernels::Params, CliError> {
    let kernel = kr.kernel();
    let sig = kernel.signature();
    let mut pairs = args.params.clone();
    if let Some(t) = args.times {
        if pairs
            .iter()
            .any(|p| p.split_once('=').is_some_and(|(n, _)| n.trim() == "times"))
        {
            return Err(CliError::usage(
                "--times and --param times=... both given; give the number of squarings once",
            ));
        }
        pairs.push(format!("times={t}"));
    }
    if args.workers == Some(0) {
        return Err(CliError::usage("--workers must be at least 1"));
    }
    if args.chunk == Some(0) {
        return Err(CliError::usage("--chunk must be at least 1"));
    }
    if args.input.is_none() {
        if args.input2.is_some() {
            return Err(CliError::usage("--input2 needs --input (the first input)"));
        }
        if args.input_format.is_some() {
            return Err(CliError::usage("--input-format needs --input"));
        }
    }
    if args.format.is_some() && args.output.is_none() {
        return Err(CliError::usage(
            "--format needs --output (it is the output's format)",
        ));
    }
    if args.n.is_some() && args.input.is_some() {
        return Err(CliError::usage(
            "--n and --input both given: the input file decides the size; drop --n",
        ));
    }
    let params = kr.params(&pairs)?;
    kernel.check(&params)?;
    let dtype_arg = args.dtype;
    if let Some(d) = dtype_arg {
        if sig.inputs > 0 && !sig.accepts(d) {
            shmproc_kernels::check_inputs(kernel, Some(d), sig.inputs)?;
        }
    }

    if sig.inputs == 0 && args.input.is_some() {
        return Err(CliError::usage(format!(
            "kernel {} generates its input from the index range; use --n instead of --input",
            kernel.name()
        )));
    }
    if args.input2.is_some() && sig.inputs != 2 {
        return Err(CliError::usage(format!(
            "--input2 is only for kernels with two inputs (dot), not {}",
            kernel.name()
        )));
    }
    Ok(params)
}

/// How often `--progress` prints a line without a terminal.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// Prints a progress line every [`PROGRESS_EVERY`] until `stopped` hangs up.
fn progress_lines(
    done: &std::sync::atomic::AtomicU64,
    total: u64,
    started: Instant,
    stopped: &std::sync::mpsc::Receiver<()>,
) {
    while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(PROGRESS_EVERY)
    {
        let d = done.load(std::sync::atomic::Ordering::Relaxed);
        let secs = started.elapsed().as_secs_f64();
        let rate = d as f64 / secs.max(1e-9);
        let eta = if d > 0 && rate > 0.0 {
            format!("{:.0} s", (total - d.min(total)) as f64 / rate)
        } else {
            "unknown (no chunk finished yet)".to_owned()
        };
        eprintln!(
            "shmproc: progress: {d}/{total} items ({:.1}%), {secs:.0} s, {rate:.3e} items/s, eta {eta}",
            if total > 0 { 100.0 * d as f64 / total as f64 } else { 100.0 }
        );
    }
}

/// A float as numpy prints it when it is not finite (`nan`, `inf`, `-inf`),
/// else so that it reads back exactly.
pub(super) fn float_text(x: f64) -> String {
    if x.is_nan() {
        "nan".into()
    } else if x.is_infinite() {
        if x > 0.0 { "inf" } else { "-inf" }.into()
    } else {
        format!("{x:?}")
    }
}

/// A reduction's accumulator as a JSON array: finite floats as numbers,
/// NaN and infinities as the strings `"nan"`, `"inf"`, `"-inf"` (JSON has no
/// numbers for them).
pub(super) fn json_values(v: Slice<'_>) -> serde_json::Value {
    fn floats<T: Copy + Into<f64>>(v: &[T]) -> serde_json::Value {
        v.iter()
            .map(|&x| {
                let x: f64 = x.into();
                if x.is_finite() {
                    serde_json::json!(x)
                } else {
                    serde_json::json!(float_text(x))
                }
            })
            .collect()
    }
    match v {
        Slice::Bool(v) => serde_json::json!(v),
        Slice::I8(v) => serde_json::json!(v),
        Slice::I16(v) => serde_json::json!(v),
        Slice::I32(v) => serde_json::json!(v),
        Slice::I64(v) => serde_json::json!(v),
        Slice::U8(v) => serde_json::json!(v),
        Slice::U16(v) => serde_json::json!(v),
        Slice::U32(v) => serde_json::json!(v),
        Slice::U64(v) => serde_json::json!(v),
        Slice::F32(v) => floats(v),
        Slice::F64(v) => floats(v),
    }
}

/// A reduction's accumulator for the text summary: `[a, b, ...]`, floats as
/// [`float_text`] writes them (an f32 as its shortest f32 text).
pub(super) fn text_values(v: Slice<'_>) -> String {
    fn join<T>(v: &[T], f: impl Fn(&T) -> String) -> String {
        let items: Vec<String> = v.iter().map(f).collect();
        format!("[{}]", items.join(", "))
    }
    match v {
        Slice::Bool(v) => join(v, |x| u8::from(*x != 0).to_string()),
        Slice::I8(v) => join(v, ToString::to_string),
        Slice::I16(v) => join(v, ToString::to_string),
        Slice::I32(v) => join(v, ToString::to_string),
        Slice::I64(v) => join(v, ToString::to_string),
        Slice::U8(v) => join(v, ToString::to_string),
        Slice::U16(v) => join(v, ToString::to_string),
        Slice::U32(v) => join(v, ToString::to_string),
        Slice::U64(v) => join(v, ToString::to_string),
        Slice::F32(v) => join(v, |x| {
            if x.is_finite() {
                format!("{x:?}")
            } else {
                float_text(f64::from(*x))
            }
        }),
        Slice::F64(v) => join(v, |x| float_text(*x)),
    }
}
