//! `shmproc run KERNEL`: one kernel over a file (or a generated `0..n`).

use super::files::{load, Loaded, Sink};
use super::{parse_params, CliError, RunArgs};
use crate::backend::{self, Job, RunOptions};
use crate::kernels::{lookup, Acc, Dtype, Input, InputKind};
use std::io::IsTerminal;
use std::time::Instant;

/// Index-space size of `shmproc run` without an input file or `--n`.
const DEFAULT_N: usize = 10_000_000;

pub(super) fn run(args: RunArgs) -> Result<(), CliError> {
    let kernel = lookup(&args.kernel)?;
    let mut params = parse_params(&args.params)?;
    if let Some(t) = args.times {
        params.times = t;
    }
    kernel.check_params(&params)?;
    let dtype_arg = args.dtype.map(Dtype::from);
    if let Some(d) = dtype_arg {
        if kernel.input != InputKind::Generated {
            // Errors when the kernel does not take `d`.
            kernel.output_dtype(Some(d))?;
        }
    }

    let workers = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |w| w.get()));

    // Inputs: files (binary ones mapped, and mapped by worker processes too:
    // zero copy), or 0..n, which no one materialises: each chunk generates
    // its own range (`iota`), on every backend.
    let mut iota = None;
    let (x, y): (Option<Loaded>, Option<Loaded>) = match (kernel.input, &args.input) {
        (InputKind::Generated, Some(_)) => {
            return Err(CliError::usage(format!(
                "kernel {} generates its input from the index range; use --n instead of --input",
                kernel.name
            )))
        }
        (InputKind::Generated, None) => (None, None),
        (_, Some(path)) => {
            let x = load(path, args.input_format, dtype_arg, kernel)?;
            let y = match &args.input2 {
                Some(p) => Some(load(p, args.input_format, dtype_arg, kernel)?),
                None => None,
            };
            (Some(x), y)
        }
        (_, None) => {
            iota = Some(dtype_arg.unwrap_or(if kernel.accepts(Dtype::U64) {
                Dtype::U64
            } else {
                Dtype::F64
            }));
            (None, None)
        }
    };
    if args.input2.is_some() && kernel.input != InputKind::F64Pair {
        return Err(CliError::usage(format!(
            "--input2 is only for kernels with two inputs (dot), not {}",
            kernel.name
        )));
    }
    if let Some(x) = &x {
        // Errors when the kernel does not take this element type.
        kernel.output_dtype(Some(x.dtype()))?;
    }
    let input = match (kernel.input, &x, &y) {
        (InputKind::Generated, ..) => Input::Generated,
        (InputKind::F64Pair, Some(x), y) => {
            let xs = x
                .f64s()
                .ok_or_else(|| CliError::new("dot takes f64 inputs"))?;
            let ys = match y {
                Some(y) => y
                    .f64s()
                    .ok_or_else(|| CliError::new("dot takes f64 inputs (--input2)"))?,
                None => xs,
            };
            if xs.len() != ys.len() {
                return Err(CliError::new(format!(
                    "--input has {} elements but --input2 has {}",
                    xs.len(),
                    ys.len()
                )));
            }
            Input::F64Pair(xs, ys)
        }
        (_, Some(x), _) => x.as_input(),
        (_, None, _) => Input::Generated,
    };
    let n = match (&x, kernel.natural_len(&params)) {
        (Some(x), _) => x.len(),
        (None, natural) => args.n.or(natural).unwrap_or(DEFAULT_N),
    };
    let job = Job {
        kernel,
        params,
        n,
        input,
        iota,
    };

    // Output: created before the work so that an unwritable path fails early.
    // Without --output, a map kernel's results are only checksummed, chunk by
    // chunk (nothing of size n is allocated); a reduction's accumulator is
    // kept for the summary.
    let out_dtype = kernel.output_dtype(job.input_dtype())?;
    let mut sink = match (&args.output, kernel.is_reduction()) {
        (None, false) => None,
        (dest, reduction) => Some(Sink::create(
            dest.as_deref(),
            args.format,
            out_dtype,
            if reduction {
                kernel.acc_len(&params)
            } else {
                n
            },
        )?),
    };

    let show_bar = !args.quiet && !args.json && std::io::stderr().is_terminal();
    let bar = show_bar.then(|| {
        let bar = indicatif::ProgressBar::with_draw_target(
            Some(n as u64),
            indicatif::ProgressDrawTarget::stderr(),
        );
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} items {per_sec} eta {eta}",
        ) {
            bar.set_style(style);
        }
        bar
    });
    let progress = |k: usize| {
        if let Some(bar) = &bar {
            bar.inc(k as u64);
        }
    };
    let opts = RunOptions {
        workers,
        chunk: args.chunk,
        progress: Some(&progress),
    };
    let started = Instant::now();
    let output = sink.as_mut().map(Sink::output).transpose()?;
    let sum = backend::run_checksum(args.backend, &job, output, &opts)?;
    let elapsed = started.elapsed().as_secs_f64();
    if backend::is_interrupted() {
        // Dropping the sink removes the temporary output file.
        return Err(backend::RunError::Interrupted.into());
    }
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }

    let result = match &sink {
        Some(sink) if kernel.is_reduction() => Some(match sink.values() {
            Acc::U64(v) => serde_json::json!(v),
            Acc::F64(v) => serde_json::json!(v),
        }),
        _ => None,
    };
    if let Some(sink) = sink {
        sink.finish()?;
    }

    let items_per_s = if elapsed > 0.0 {
        n as f64 / elapsed
    } else {
        0.0
    };
    if args.json {
        let mut obj = serde_json::json!({
            "kernel": kernel.name,
            "items": n,
            "backend": args.backend.name(),
            "workers": workers,
            "elapsed_s": elapsed,
            "items_per_s": items_per_s,
            "checksum": sum,
        });
        if let (Some(r), Some(map)) = (result, obj.as_object_mut()) {
            map.insert("result".into(), r);
        }
        println!("{obj}");
    } else if !args.quiet {
        println!("kernel:   {}", kernel.name);
        println!("items:    {n}");
        println!("backend:  {}", args.backend);
        println!("workers:  {workers}");
        println!("elapsed:  {elapsed:.6} s");
        println!("items/s:  {items_per_s:.4e}");
        println!("checksum: {sum}");
        if let Some(r) = result {
            println!("result:   {r}");
        }
        if let Some(out) = &args.output {
            println!("output:   {}", out.display());
        }
    }
    Ok(())
}
