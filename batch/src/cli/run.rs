//! `shmproc run KERNEL`: one kernel over a file (or a generated `0..n`).

use super::files::{load, raw_default, Loaded, Sink};
use super::{CliError, RunArgs};
use crate::backend::{self, Job, RunOptions};
use crate::Registry;
use shmproc_kernels::{Dtype, Kind, Slice};
use std::io::IsTerminal;
use std::time::Instant;

/// Index-space size of `shmproc run` without an input file or `--n`.
const DEFAULT_N: usize = 10_000_000;

pub(super) fn run(args: RunArgs, kernels: &Registry) -> Result<(), CliError> {
    let kr = kernels.lookup(&args.kernel)?;
    let kernel = kr.kernel();
    let sig = kernel.signature();
    let mut pairs = args.params.clone();
    if let Some(t) = args.times {
        pairs.push(format!("times={t}"));
    }
    let params = kr.params(&pairs)?;
    kernel.check(&params)?;
    let dtype_arg = args.dtype;
    if let Some(d) = dtype_arg {
        if sig.inputs > 0 && !sig.accepts(d) {
            shmproc_kernels::check_inputs(kernel, Some(d), sig.inputs)?;
        }
    }

    let workers = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |w| w.get()));

    // Inputs: files (binary ones mapped, and mapped by worker processes too:
    // zero copy), or 0..n, which no one materialises: each chunk generates
    // its own range (`iota`), on every backend.
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

    let show_bar = !args.quiet && !args.json && std::io::stderr().is_terminal();
    let bar = show_bar.then(|| {
        let bar = indicatif::ProgressBar::with_draw_target(
            Some(job.n as u64),
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
        Some(sink) if reduce => Some(json_values(sink.values())),
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
            "kernel": kernel.name(),
            "items": n,
            "dtype": in_dtype.map(Dtype::name),
            "shape": in_shape,
            "output_dtype": out_dtype.name(),
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
        println!("kernel:   {}", kernel.name());
        println!("items:    {n}");
        if let Some(d) = in_dtype {
            println!("dtype:    {d}");
        }
        if in_shape.len() > 1 {
            println!("shape:    {in_shape:?}");
        }
        println!(
            "output:   {out_dtype}{}",
            if reduce { " accumulator" } else { "" }
        );
        println!("backend:  {}", args.backend);
        println!("workers:  {workers}");
        println!("elapsed:  {elapsed:.6} s");
        println!("items/s:  {items_per_s:.4e}");
        println!("checksum: {sum}");
        if let Some(r) = result {
            println!("result:   {r}");
        }
        if let Some(out) = &args.output {
            println!("written:  {}", out.display());
        }
    }
    Ok(())
}

/// A reduction's accumulator as a JSON array.
fn json_values(v: Slice<'_>) -> serde_json::Value {
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
        Slice::F32(v) => serde_json::json!(v),
        Slice::F64(v) => serde_json::json!(v),
    }
}
