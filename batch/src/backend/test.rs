use super::*;
use crate::Registry;
use shmproc_kernels::rng::SplitMix64;
use std::sync::atomic::AtomicU64;

const N: usize = 3001;

fn random(g: &mut SplitMix64, dtype: Dtype, n: usize) -> Values {
    match dtype {
        Dtype::F64 => Values::F64((0..n).map(|_| g.next_f64() * 3.0 - 1.0).collect()),
        Dtype::F32 => Values::F32((0..n).map(|_| (g.next_f64() * 3.0 - 1.0) as f32).collect()),
        Dtype::Bool => Values::Bool((0..n).map(|_| (g.next_u64() % 3) as u8).collect()),
        Dtype::I8 => Values::I8((0..n).map(|_| g.next_u64() as i8).collect()),
        Dtype::I16 => Values::I16((0..n).map(|_| g.next_u64() as i16).collect()),
        Dtype::I32 => Values::I32((0..n).map(|_| g.next_u64() as i32).collect()),
        Dtype::I64 => Values::I64((0..n).map(|_| g.next_u64() as i64).collect()),
        Dtype::U8 => Values::U8((0..n).map(|_| g.next_u64() as u8).collect()),
        Dtype::U16 => Values::U16((0..n).map(|_| g.next_u64() as u16).collect()),
        Dtype::U32 => Values::U32((0..n).map(|_| g.next_u64() as u32).collect()),
        Dtype::U64 => Values::U64((0..n).map(|_| g.next_u64()).collect()),
    }
}

/// One case: a kernel, its parameters, its inputs (none for generated
/// kernels), the prior contents of the output (in-place kernels), and the
/// shape of the input.
struct Case {
    kernel: KernelRef,
    params: Params,
    x: Option<Values>,
    y: Option<Values>,
    init: Option<Values>,
    shape: Vec<usize>,
}

fn cases() -> Vec<Case> {
    let reg = Registry::builtins();
    let k = |name: &str| reg.find(name).cloned().expect("a built-in kernel");
    let mut g = SplitMix64::new(77);
    let mut out = Vec::new();
    let mut one = |name: &str, dtype: Dtype, params: Params, g: &mut SplitMix64| {
        let kernel = k(name);
        let sig = kernel.kernel().signature();
        let x = Some(random(g, dtype, N));
        let y = (sig.inputs == 2).then(|| random(g, dtype, N));
        let init = (sig.kind == Kind::InPlace).then(|| random(g, dtype, N));
        out.push(Case {
            kernel,
            params,
            x,
            y,
            init,
            shape: vec![N],
        });
    };
    let power = Params::new().with("times", 4);
    for d in [Dtype::U8, Dtype::I32, Dtype::U64, Dtype::F32, Dtype::F64] {
        one("power", d, power.clone(), &mut g);
    }
    for d in [Dtype::I16, Dtype::U32, Dtype::Bool, Dtype::F32, Dtype::F64] {
        one("sum", d, Params::new(), &mut g);
    }
    for d in [Dtype::I64, Dtype::F64] {
        one("dot", d, Params::new(), &mut g);
    }
    let hist = Params::new()
        .with("lo", -1)
        .with("hi", 200)
        .with("bins", 10);
    for d in [Dtype::U8, Dtype::F64] {
        one("histogram", d, hist.clone(), &mut g);
    }
    for d in [Dtype::F32, Dtype::F64] {
        one("saxpy", d, Params::new().with("a", 2), &mut g);
    }
    // A row kernel over a 2-D input: 3001 = 3 x 1000 + 1 does not factor
    // nicely, so use 30 rows of 100.
    out.push(Case {
        kernel: k("normalize_rows"),
        params: Params::new(),
        x: Some(random(&mut g, Dtype::F64, 3000)),
        y: None,
        init: None,
        shape: vec![30, 100],
    });
    let mb = Params::new()
        .with("width", 61)
        .with("height", 49)
        .with("max_iter", 100);
    for (name, params) in [
        ("mandelbrot", mb),
        ("monte_carlo_pi", Params::new().with("seed", 42)),
        ("count_primes", Params::new().with("start", 0)),
    ] {
        out.push(Case {
            kernel: k(name),
            params,
            x: None,
            y: None,
            init: None,
            shape: vec![if name == "mandelbrot" { 61 * 49 } else { N }],
        });
    }
    out
}

/// Runs a case with `backend`; the inputs and output are in `SharedValues`
/// when `shared` (zero copy for the process backend), else plain `Vec`s.
fn run_case(
    c: &Case,
    backend: Backend,
    workers: usize,
    chunk: Option<usize>,
    shared: bool,
) -> Values {
    let k = c.kernel.kernel();
    let sh = |v: &Values| SharedValues::from_slice(v.as_slice()).expect("shared values");
    let (xs, ys) = (c.x.as_ref().map(sh), c.y.as_ref().map(sh));
    let x = if shared {
        xs.as_ref().map(SharedValues::as_slice)
    } else {
        c.x.as_ref().map(Values::as_slice)
    };
    let y = if shared {
        ys.as_ref().map(SharedValues::as_slice)
    } else {
        c.y.as_ref().map(Values::as_slice)
    };
    let job = match (x, y) {
        (Some(x), Some(y)) => Job::pair(&c.kernel, c.params.clone(), x, y),
        (Some(x), None) => Job::new(&c.kernel, c.params.clone(), x),
        (None, _) => Job::generated(&c.kernel, c.params.clone(), c.shape[0]),
    };
    let job = job.shape(&c.shape).expect("shape");
    let dtype = k.output_dtype(job.input_dtype());
    let mut out = match &c.init {
        Some(v) => v.clone(),
        None => Values::zeros(dtype, output_len(&job)),
    };
    let opts = RunOptions {
        workers,
        chunk,
        progress: None,
    };
    if shared {
        let mut o = SharedValues::from_slice(out.as_slice()).expect("shared output");
        run(backend, &job, o.as_slice_mut().expect("writable"), &opts)
            .unwrap_or_else(|e| panic!("{} on {backend}: {e}", k.name()));
        out = o.to_values();
    } else {
        run(backend, &job, out.as_slice_mut(), &opts)
            .unwrap_or_else(|e| panic!("{} on {backend}: {e}", k.name()));
    }
    out
}

#[test]
fn in_process_backends_agree_bitwise_for_a_fixed_chunk() {
    for c in cases() {
        let want = run_case(&c, Backend::Sequential, 1, Some(97), false);
        for backend in [Backend::Threads, Backend::Rayon] {
            for workers in [1, 3] {
                let got = run_case(&c, backend, workers, Some(97), false);
                assert_eq!(got, want, "{} {backend} {workers}", c.kernel.name());
            }
        }
    }
}

#[test]
fn results_match_the_plain_functions() {
    for c in cases() {
        let got = run_case(&c, Backend::Rayon, 2, None, false);
        let name = c.kernel.name();
        match (name, c.x.as_ref(), &got) {
            ("power", Some(Values::U64(x)), Values::U64(o)) => {
                let want: Vec<u64> = x.iter().map(|&v| v.wrapping_pow(16)).collect();
                assert_eq!(o, &want);
            }
            ("power", Some(Values::U8(x)), Values::U8(o)) => {
                let want: Vec<u8> = x.iter().map(|&v| v.wrapping_pow(16)).collect();
                assert_eq!(o, &want);
            }
            ("sum", Some(Values::I16(x)), Values::I64(o)) => {
                assert_eq!(o[0], x.iter().map(|&v| i64::from(v)).sum::<i64>());
            }
            ("sum", Some(Values::U32(x)), Values::U64(o)) => {
                assert_eq!(o[0], x.iter().map(|&v| u64::from(v)).sum::<u64>());
            }
            ("sum", Some(Values::Bool(x)), Values::U64(o)) => {
                assert_eq!(o[0], x.iter().filter(|&&b| b != 0).count() as u64);
            }
            ("sum", Some(Values::F64(x)), Values::F64(o)) => {
                assert!((o[0] - shmproc_kernels::sum(x)).abs() < 1e-9);
            }
            ("saxpy", Some(Values::F64(x)), Values::F64(o)) => {
                let Some(Values::F64(y)) = &c.init else {
                    panic!()
                };
                for i in 0..x.len() {
                    assert_eq!(o[i], 2.0 * x[i] + y[i]);
                }
            }
            ("histogram", Some(x), Values::U64(o)) => {
                assert_eq!(o.iter().sum::<u64>(), x.len() as u64);
            }
            ("normalize_rows", Some(Values::F64(x)), Values::F64(o)) => {
                let mut want = vec![0.0; x.len()];
                shmproc_kernels::normalize_rows(x, &mut want, 100);
                assert_eq!(o, &want);
            }
            ("count_primes", None, Values::U64(o)) => assert_eq!(o, &[430]), // pi(3001)
            ("monte_carlo_pi", None, Values::U64(o)) => assert_eq!(o[1], N as u64),
            _ => {}
        }
    }
}

/// Every process-backend check in one test: the pools are shared by the
/// whole test binary, and this test shuts them down at the end.
#[test]
fn process_backends_agree_with_sequential() {
    a_kernel_defined_outside_the_builtins_runs_on_worker_processes();
    for c in cases() {
        let want = run_case(&c, Backend::Sequential, 1, Some(211), false);
        for backend in [Backend::Processes, Backend::ProcessesCopy] {
            for shared in [true, false] {
                let got = run_case(&c, backend, 2, Some(211), shared);
                assert_eq!(got, want, "{} {backend} shared={shared}", c.kernel.name());
            }
        }
    }
    parts_agree_with_the_whole(&[Backend::Processes, Backend::ProcessesCopy]);
    shutdown_pools();
}

#[test]
fn progress_reports_every_index_once() {
    let done = AtomicU64::new(0);
    let progress = |k: usize| {
        done.fetch_add(k as u64, Ordering::Relaxed);
    };
    let mc = KernelRef::new(shmproc_kernels::MonteCarloPi);
    let job = Job::generated(&mc, mc.defaults(), 10_007);
    for backend in [Backend::Sequential, Backend::Threads, Backend::Rayon] {
        done.store(0, Ordering::Relaxed);
        let opts = RunOptions {
            workers: 2,
            chunk: Some(100),
            progress: Some(&progress),
        };
        let mut acc = [0u64; 2];
        run(backend, &job, SliceMut::U64(&mut acc), &opts).unwrap();
        assert_eq!(done.load(Ordering::Relaxed), 10_007, "{backend}");
        assert_eq!(acc[1], 10_007);
    }
}

#[test]
fn invalid_runs_are_rejected_before_any_work() {
    let input = [1u64, 2, 3];
    let power = KernelRef::new(shmproc_kernels::Power);
    let job = Job::new(&power, power.defaults(), Slice::U64(&input));
    let mut out = [9u64; 3];
    let opts = |workers, chunk| RunOptions {
        workers,
        chunk,
        progress: None,
    };
    for backend in [Backend::Sequential, Backend::Threads, Backend::Rayon] {
        let e = run(backend, &job, SliceMut::U64(&mut out), &opts(0, None)).unwrap_err();
        assert!(e.to_string().contains("worker count"), "{e}");
        let e = run(backend, &job, SliceMut::U64(&mut out), &opts(1, Some(0))).unwrap_err();
        assert!(e.to_string().contains("chunk size"), "{e}");
        let e = run(backend, &job, SliceMut::U64(&mut out[..2]), &opts(1, None)).unwrap_err();
        assert!(matches!(e, RunError::Invalid(_)), "{e}");
        let e = run(backend, &job, SliceMut::F64(&mut [0.0; 3]), &opts(1, None)).unwrap_err();
        assert!(e.to_string().contains("writes u64"), "{e}");
    }
    assert_eq!(out, [9; 3]);
    // A type the kernel does not take.
    let saxpy = KernelRef::new(shmproc_kernels::Saxpy);
    let e = run(
        Backend::Threads,
        &Job::new(&saxpy, saxpy.defaults(), Slice::U64(&input)),
        SliceMut::U64(&mut [0; 3]),
        &opts(2, None),
    )
    .unwrap_err();
    assert!(
        matches!(e, RunError::Kernel(KernelError::WrongDtype { .. })),
        "{e}"
    );
    // Two inputs of different types.
    let dot = KernelRef::new(shmproc_kernels::Dot);
    let e = run(
        Backend::Threads,
        &Job::pair(
            &dot,
            dot.defaults(),
            Slice::U64(&input),
            Slice::I64(&[1, 2, 3]),
        ),
        SliceMut::U64(&mut [0]),
        &opts(2, None),
    )
    .unwrap_err();
    assert!(e.to_string().contains("different types"), "{e}");
    // A shape that does not hold the input.
    assert!(Job::new(&power, power.defaults(), Slice::U64(&input))
        .shape(&[2, 2])
        .is_err());
    // A generated kernel past its parameters' limit.
    let mb = KernelRef::new(shmproc_kernels::Mandelbrot);
    let small = mb.params(["width=4", "height=4"]).unwrap();
    let e = run(
        Backend::Rayon,
        &Job::generated(&mb, small, 17),
        SliceMut::U64(&mut [0; 17]),
        &opts(2, None),
    )
    .unwrap_err();
    assert!(
        matches!(e, RunError::Kernel(KernelError::RangeTooLarge { .. })),
        "{e}"
    );
}

#[test]
fn empty_index_space_gives_zero_accumulator() {
    let sum = KernelRef::new(shmproc_kernels::Sum);
    let job = Job::new(&sum, sum.defaults(), Slice::F64(&[]));
    for backend in [Backend::Sequential, Backend::Threads, Backend::Rayon] {
        let mut acc = [7.0];
        run(
            backend,
            &job,
            SliceMut::F64(&mut acc),
            &RunOptions::default(),
        )
        .unwrap();
        assert_eq!(acc, [0.0], "{backend}");
    }
}

#[test]
fn checksums_agree_with_and_without_output_and_for_generated_inputs() {
    let power = KernelRef::new(shmproc_kernels::Power);
    let opts = RunOptions {
        workers: 2,
        chunk: Some(1000),
        progress: None,
    };
    for dtype in [Dtype::U64, Dtype::I16, Dtype::F32, Dtype::F64] {
        let n = 5003;
        let mut iota = Values::zeros(dtype, n);
        // The generated input, materialised.
        run(
            Backend::Sequential,
            &Job::iota(&KernelRef::new(Identity), Params::new(), n, dtype),
            iota.as_slice_mut(),
            &opts,
        )
        .unwrap();
        let job = Job::new(&power, power.defaults(), iota.as_slice());
        let mut out = Values::zeros(dtype, n);
        let with = run_checksum(Backend::Threads, &job, Some(out.as_slice_mut()), &opts).unwrap();
        assert_eq!(with, out.as_slice().checksum(), "{dtype}");
        let without = run_checksum(Backend::Rayon, &job, None, &opts).unwrap();
        let generated = run_checksum(
            Backend::Sequential,
            &Job::iota(&power, power.defaults(), n, dtype),
            None,
            &opts,
        )
        .unwrap();
        assert_eq!((without, generated), (with, with), "{dtype}");
    }
}

#[test]
fn a_generated_input_is_checked_like_an_array() {
    let opts = RunOptions::default();
    let saxpy = KernelRef::new(shmproc_kernels::Saxpy);
    let e = run_checksum(
        Backend::Threads,
        &Job::iota(&saxpy, saxpy.defaults(), 10, Dtype::U64),
        None,
        &opts,
    )
    .unwrap_err();
    assert!(
        matches!(e, RunError::Kernel(KernelError::WrongDtype { .. })),
        "{e}"
    );
    let mb = KernelRef::new(shmproc_kernels::Mandelbrot);
    let e = run_checksum(
        Backend::Rayon,
        &Job::iota(&mb, mb.defaults(), 10, Dtype::U64),
        None,
        &opts,
    )
    .unwrap_err();
    assert!(
        matches!(e, RunError::Kernel(KernelError::WrongDtype { .. })),
        "{e}"
    );
    let power = KernelRef::new(shmproc_kernels::Power);
    let mut both = Job::iota(&power, power.defaults(), 2, Dtype::U64);
    both.x = Some(Slice::U64(&[1, 2]));
    let e = run_checksum(Backend::Sequential, &both, None, &opts).unwrap_err();
    assert!(matches!(e, RunError::Invalid(_)), "{e}");
}

/// A user kernel defined here: copies its input (used to materialise a
/// generated input).
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
struct Identity;

impl Kernel for Identity {
    fn name(&self) -> &'static str {
        "identity"
    }
    fn summary(&self) -> &'static str {
        "copies its input"
    }
    fn signature(&self) -> shmproc_kernels::Signature {
        shmproc_kernels::Signature::map(&Dtype::ALL)
    }
    fn run(&self, _: &Params, c: shmproc_kernels::Chunk<'_>) -> Result<(), KernelError> {
        let x = c.x()?;
        let mut out = c.out;
        out.copy_from(x).map_err(|message| KernelError::Failed {
            kernel: "identity",
            message,
        })
    }
}

fn a_kernel_defined_outside_the_builtins_runs_on_worker_processes() {
    let id = KernelRef::new(Identity);
    let x: Vec<i16> = (0..4000).map(|i| (i * 7 - 9000) as i16).collect();
    let job = Job::new(&id, Params::new(), Slice::I16(&x));
    for backend in Backend::ALL {
        let mut out = vec![0i16; x.len()];
        let opts = RunOptions {
            workers: 2,
            chunk: Some(333),
            progress: None,
        };
        run(backend, &job, SliceMut::I16(&mut out), &opts).unwrap();
        assert_eq!(out, x, "{backend}");
    }
}

/// The chunk results and outputs of `c` run as three parts (`Job::at`) on
/// `backend`, joined.
fn run_parts(c: &Case, backend: Backend, chunk: usize) -> (ChunkResults, Option<Values>) {
    let k = c.kernel.kernel();
    let whole = match (&c.x, &c.y) {
        (Some(x), Some(y)) => Job::pair(&c.kernel, c.params.clone(), x.as_slice(), y.as_slice()),
        (Some(x), None) => Job::new(&c.kernel, c.params.clone(), x.as_slice()),
        (None, _) => Job::generated(&c.kernel, c.params.clone(), c.shape[0]),
    };
    let whole = whole.shape(&c.shape).expect("shape");
    let (n, row_len) = (whole.n, whole.row_len);
    let chunks = n.div_ceil(chunk);
    let reduce = k.signature().kind == Kind::Reduce;
    let dtype = k.output_dtype(whole.input_dtype());
    let mut joined: Option<ChunkResults> = None;
    let mut out_all = (!reduce).then(|| Values::zeros(dtype, n * row_len));
    for p in 0..3 {
        let (c0, c1) = (chunks * p / 3, chunks * (p + 1) / 3);
        let (i0, i1) = (c0 * chunk, (c1 * chunk).min(n));
        let e = i0 * row_len..i1 * row_len;
        let sh = |v: &Values| SharedValues::from_slice(v.as_slice().slice(e.clone())).unwrap();
        let (xs, ys) = (c.x.as_ref().map(sh), c.y.as_ref().map(sh));
        let job = Job {
            n: i1 - i0,
            x: xs.as_ref().map(SharedValues::as_slice),
            y: ys.as_ref().map(SharedValues::as_slice),
            ..whole.clone()
        }
        .at(i0);
        let opts = RunOptions {
            workers: 2,
            chunk: Some(chunk),
            progress: None,
        };
        let mut out = (!reduce).then(|| match &c.init {
            Some(v) => SharedValues::from_slice(v.as_slice().slice(e.clone())).unwrap(),
            None => SharedValues::zeros(dtype, e.len()).unwrap(),
        });
        let res = run_chunks(
            backend,
            &job,
            out.as_mut().map(|o| o.as_slice_mut().unwrap()),
            &opts,
        )
        .unwrap_or_else(|err| panic!("{} part {p} on {backend}: {err}", k.name()));
        assert_eq!(res.len(), c1 - c0);
        if let (Some(all), Some(o)) = (&mut out_all, &out) {
            all.as_slice_mut()
                .into_range(e.clone())
                .copy_from(o.as_slice())
                .unwrap();
        }
        match &mut joined {
            None => joined = Some(res),
            Some(j) => j.extend(res).unwrap(),
        }
    }
    (joined.expect("three parts"), out_all)
}

#[test]
fn parts_of_a_run_compute_the_chunks_of_the_whole_run() {
    // The process backends are checked in `process_backends_agree_with_sequential`,
    // which owns the shared pools (it shuts them down at its end).
    parts_agree_with_the_whole(&[Backend::Threads]);
}

/// Runs every case in three parts on each of `backends` and checks the
/// parts' chunk results against one sequential run of the whole.
fn parts_agree_with_the_whole(backends: &[Backend]) {
    let chunk = 97;
    for c in cases() {
        let k = c.kernel.kernel();
        let whole = run_case(&c, Backend::Sequential, 1, Some(chunk), false);
        let job = match (&c.x, &c.y) {
            (Some(x), Some(y)) => {
                Job::pair(&c.kernel, c.params.clone(), x.as_slice(), y.as_slice())
            }
            (Some(x), None) => Job::new(&c.kernel, c.params.clone(), x.as_slice()),
            (None, _) => Job::generated(&c.kernel, c.params.clone(), c.shape[0]),
        }
        .shape(&c.shape)
        .unwrap();
        let opts = RunOptions {
            workers: 1,
            chunk: Some(chunk),
            progress: None,
        };
        let reduce = k.signature().kind == Kind::Reduce;
        let mut init = c.init.clone();
        let want = run_chunks(
            Backend::Sequential,
            &job,
            init.as_mut().map(Values::as_slice_mut),
            &opts,
        )
        .unwrap();
        for &backend in backends {
            let (got, out) = run_parts(&c, backend, chunk);
            assert_eq!(got.checksums, want.checksums, "{} on {backend}", k.name());
            let bits = |r: &ChunkResults| {
                r.partials
                    .as_ref()
                    .map(|p| (p.len(), p.as_slice().checksum()))
            };
            assert_eq!(
                bits(&got),
                bits(&want),
                "{} partials on {backend}",
                k.name()
            );
            if reduce {
                let mut acc = Values::zeros(whole.dtype(), whole.len());
                got.combine_into(k, acc.as_slice_mut()).unwrap();
                assert_eq!(acc.as_slice().checksum(), whole.as_slice().checksum());
            } else {
                let out = out.expect("a map's output");
                assert_eq!(
                    out.as_slice().checksum(),
                    whole.as_slice().checksum(),
                    "{} output on {backend}",
                    k.name()
                );
            }
        }
    }
}
