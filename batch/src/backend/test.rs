use super::process::{locate, shared_task, SharedTask};
use super::*;
use crate::kernels::{find, registry, rng::SplitMix64, Dtype, InputKind};
use std::sync::atomic::AtomicU64;

fn inputs(n: usize) -> (Vec<u64>, Vec<f64>, Vec<f64>) {
    let mut g = SplitMix64::new(77);
    let u = (0..n).map(|_| g.next_u64()).collect();
    let f = (0..n).map(|_| g.next_f64() * 3.0 - 1.0).collect();
    let f2 = (0..n).map(|_| g.next_f64()).collect();
    (u, f, f2)
}

/// Runs every kernel with `backend` and returns its outputs (f64 inputs for
/// array kernels that take them, u64 for power).
fn run_all(backend: Backend, workers: usize, chunk: Option<usize>) -> Vec<Values> {
    let n = 3001;
    let (u, f, f2) = inputs(n);
    let params = Params {
        width: 61,
        height: 49,
        max_iter: 100,
        bins: 10,
        ..Params::default()
    };
    let mut results = Vec::new();
    for k in registry() {
        let job = match k.input {
            InputKind::Generated => Job::generated(k, params, k.natural_len(&params).unwrap_or(n)),
            InputKind::F64Pair => Job::new(k, params, Input::F64Pair(&f, &f2)),
            InputKind::Array(ds) if ds.contains(&Dtype::U64) => Job::new(k, params, Input::U64(&u)),
            InputKind::Array(_) => Job::new(k, params, Input::F64(&f)),
        };
        let dtype = k.output_dtype(job.input.dtype()).unwrap();
        let len = if k.is_reduction() {
            k.acc_len(&params)
        } else {
            job.n
        };
        // saxpy updates in place: start from y = f2.
        let mut out = if k.name == "saxpy" {
            Values::F64(f2.clone())
        } else {
            Values::zeros(dtype, len)
        };
        let opts = RunOptions {
            workers,
            chunk,
            progress: None,
        };
        run(backend, &job, out.as_output(), &opts)
            .unwrap_or_else(|e| panic!("{backend} {}: {e}", k.name));
        results.push(out);
    }
    results
}

#[test]
fn all_backends_agree_bitwise_for_a_fixed_chunk() {
    for chunk in [Some(7), Some(1000), None] {
        let want = run_all(Backend::Sequential, 1, chunk);
        for backend in [Backend::Threads, Backend::Rayon] {
            for workers in [1, 2, 3] {
                assert_eq!(
                    run_all(backend, workers, chunk),
                    want,
                    "{backend} x{workers} {chunk:?}"
                );
            }
        }
    }
}

#[test]
fn results_match_the_plain_functions() {
    let results = run_all(Backend::Threads, 2, Some(100));
    let (u, f, f2) = inputs(3001);
    let by_name = |name: &str| &results[find(name).unwrap().id as usize];
    let power: Vec<u64> = u.iter().map(|&x| crate::kernels::power_u64(x, 4)).collect();
    assert_eq!(by_name("power"), &Values::U64(power));
    let Values::F64(s) = by_name("sum") else {
        panic!("dtype")
    };
    let naive: f64 = f.iter().sum();
    assert!((s[0] - naive).abs() < 1e-9, "{} vs {naive}", s[0]);
    let Values::F64(d) = by_name("dot") else {
        panic!("dtype")
    };
    assert!((d[0] - crate::kernels::dot(&f, &f2)).abs() < 1e-9);
    let mut y = f2.clone();
    crate::kernels::saxpy(2.0, &f, &mut y);
    assert_eq!(by_name("saxpy"), &Values::F64(y));
    let mut counts = vec![0; 13];
    crate::kernels::histogram(&f, 0.0, 1.0, &mut counts);
    assert_eq!(by_name("histogram"), &Values::U64(counts));
    let mut img = vec![0; 61 * 49];
    crate::kernels::mandelbrot(61, 49, 100, 0, &mut img);
    assert_eq!(by_name("mandelbrot"), &Values::U64(img));
    let hits = crate::kernels::monte_carlo_pi(42, 0..3001);
    assert_eq!(by_name("monte_carlo_pi"), &Values::U64(vec![hits, 3001]));
    assert_eq!(by_name("count_primes"), &Values::U64(vec![430])); // pi(3001) = 430
}

#[test]
fn progress_reports_every_index_once() {
    let done = AtomicU64::new(0);
    let progress = |k: usize| {
        done.fetch_add(k as u64, Ordering::Relaxed);
    };
    let job = Job::generated(find("monte_carlo_pi").unwrap(), Params::default(), 10_007);
    for backend in [Backend::Sequential, Backend::Threads, Backend::Rayon] {
        done.store(0, Ordering::Relaxed);
        let opts = RunOptions {
            workers: 2,
            chunk: Some(100),
            progress: Some(&progress),
        };
        let mut acc = [0u64; 2];
        run(backend, &job, Output::U64(&mut acc), &opts).unwrap();
        assert_eq!(done.load(Ordering::Relaxed), 10_007, "{backend}");
        assert_eq!(acc[1], 10_007);
    }
}

#[test]
fn invalid_runs_are_rejected_before_any_work() {
    let input = [1u64, 2, 3];
    let power = find("power").unwrap();
    let job = Job::new(power, Params::default(), Input::U64(&input));
    let mut out = [9u64; 3];
    let bad = |workers, chunk| RunOptions {
        workers,
        chunk,
        progress: None,
    };
    for backend in [Backend::Sequential, Backend::Threads, Backend::Rayon] {
        let e = run(backend, &job, Output::U64(&mut out), &bad(0, None)).unwrap_err();
        assert!(e.to_string().contains("worker count"), "{e}");
        let e = run(backend, &job, Output::U64(&mut out), &bad(1, Some(0))).unwrap_err();
        assert!(e.to_string().contains("chunk size"), "{e}");
        let e = run(backend, &job, Output::U64(&mut out[..2]), &bad(1, None)).unwrap_err();
        assert!(matches!(e, RunError::Invalid(_)), "{e}");
        let e = run(backend, &job, Output::F64(&mut [0.0; 3]), &bad(1, None)).unwrap_err();
        assert!(e.to_string().contains("writes u64"), "{e}");
    }
    assert_eq!(out, [9; 3]);
    let sum = find("sum").unwrap();
    let e = run(
        Backend::Threads,
        &Job::new(sum, Params::default(), Input::U64(&input)),
        Output::F64(&mut [0.0]),
        &bad(2, None),
    )
    .unwrap_err();
    assert!(
        matches!(e, RunError::Kernel(KernelError::WrongDtype { .. })),
        "{e}"
    );
    let mb = find("mandelbrot").unwrap();
    let small = Params {
        width: 4,
        height: 4,
        ..Params::default()
    };
    let e = run(
        Backend::Rayon,
        &Job::generated(mb, small, 17),
        Output::U64(&mut [0; 17]),
        &bad(2, None),
    )
    .unwrap_err();
    assert!(
        matches!(e, RunError::Kernel(KernelError::RangeTooLarge { .. })),
        "{e}"
    );
}

/// Every process-backend check in one test: the pools are shared by the
/// whole test binary, and this test shuts them down at the end.
#[test]
fn process_backends_agree_with_sequential() {
    for chunk in [Some(7), None] {
        let want = run_all(Backend::Sequential, 1, chunk);
        for backend in [Backend::Processes, Backend::ProcessesCopy] {
            for workers in [1, 2] {
                assert_eq!(
                    run_all(backend, workers, chunk),
                    want,
                    "{backend} x{workers} {chunk:?}"
                );
            }
        }
    }

    // Zero copy: input and output in SharedValues are used in place.
    let power = find("power").unwrap();
    let x = SharedValues::from_values(&Values::U64((0..5000).collect())).unwrap();
    let mut out = SharedValues::zeros(Dtype::U64, 5000).unwrap();
    let job = Job::new(power, Params::default(), x.as_input());
    let done = AtomicU64::new(0);
    let progress = |k: usize| {
        done.fetch_add(k as u64, Ordering::Relaxed);
    };
    let opts = RunOptions {
        workers: 2,
        chunk: Some(300),
        progress: Some(&progress),
    };
    run(Backend::Processes, &job, out.as_output().unwrap(), &opts).unwrap();
    let want: Vec<u64> = (0..5000).map(|i| crate::kernels::power_u64(i, 4)).collect();
    assert_eq!(out.to_values(), Values::U64(want.clone()));
    let want_power = want;
    assert_eq!(done.load(Ordering::Relaxed), 5000);
    assert!(locate(&[0u64; 3], false).is_none());
    let Input::U64(xs) = x.as_input() else {
        panic!("dtype")
    };
    assert!(locate(&xs[10..20], false).is_some_and(|a| a.len() == 10));

    // Workers fill generated inputs.
    let g = iota(Dtype::F64, 3000, 2).unwrap();
    assert_eq!(
        g.to_values(),
        Values::F64((0..3000).map(|i| i as f64).collect())
    );

    // Errors in a worker come back as errors.
    let k = find("histogram").unwrap();
    let e = shared_task(SharedTask {
        kernel: k.id as u32,
        params: Params::default(),
        index: 0,
        range: 0..10,
        x: None,
        y: None,
        iota: None,
        out: None,
    })
    .unwrap_err();
    assert!(e.contains("histogram"), "{e}");

    // Checksums: with and without an output, generated input or the same
    // values in an array, equal to the in-process backends'.
    let want = checksums_of(Backend::Sequential);
    for backend in [Backend::Processes, Backend::ProcessesCopy] {
        assert_eq!(checksums_of(backend), want, "{backend}");
    }
    // Zero copy from a shared input, checksum only (no output array).
    let sum = run_checksum(Backend::Processes, &job, None, &opts).unwrap();
    assert_eq!(sum, want_sum(&want_power));

    // An interrupt stops a run between chunks.
    interrupt();
    let e = run(Backend::Processes, &job, out.as_output().unwrap(), &opts).unwrap_err();
    clear_interrupt();
    assert!(matches!(e, RunError::Interrupted), "{e}");

    let pids = pool(2).unwrap().worker_pids();
    assert_eq!(pids.len(), 2);
    shutdown_pools();
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(
            stat.is_empty() || stat.contains(") Z "),
            "worker {pid} still runs: {stat}"
        );
    }
}

#[test]
fn empty_index_space_gives_zero_accumulator() {
    let job = Job::new(find("sum").unwrap(), Params::default(), Input::F64(&[]));
    let mut acc = [5.0];
    run(
        Backend::Threads,
        &job,
        Output::F64(&mut acc),
        &RunOptions::default(),
    )
    .unwrap();
    assert_eq!(acc, [0.0]);
}

fn want_sum(v: &[u64]) -> u64 {
    v.iter().fold(0u64, |a, &x| a.wrapping_add(x))
}

/// For every kernel and input type, checks with `backend` that the checksum
/// of a run with an output, without one, and over the generated input `0..n`
/// (with and without an output) are all the checksum of the output values
/// (and the generated run's output the array run's); returns the checksums.
fn checksums_of(backend: Backend) -> Vec<u64> {
    let n = 20_011;
    let params = Params {
        width: 150,
        height: 101,
        max_iter: 60,
        lo: 0.0,
        hi: 15_000.0,
        bins: 9,
        ..Params::default()
    };
    let us: Vec<u64> = (0..n as u64).collect();
    let fs: Vec<f64> = (0..n).map(|i| i as f64).collect();
    let mut sums = Vec::new();
    for chunk in [Some(997), None] {
        let opts = RunOptions {
            workers: 2,
            chunk,
            progress: None,
        };
        for k in registry() {
            let what = format!("{backend} {} {chunk:?}", k.name);
            if k.input == InputKind::Generated {
                let job = Job::generated(k, params, k.natural_len(&params).unwrap_or(n));
                let dtype = k.output_dtype(None).unwrap();
                let len = if k.is_reduction() {
                    k.acc_len(&params)
                } else {
                    job.n
                };
                let mut out = Values::zeros(dtype, len);
                let with = run_checksum(backend, &job, Some(out.as_output()), &opts).unwrap();
                let without = run_checksum(backend, &job, None, &opts).unwrap();
                assert_eq!((with, without), (checksum(out.as_acc()), with), "{what}");
                sums.push(with);
                continue;
            }
            for dtype in [Dtype::U64, Dtype::F64] {
                if !k.accepts(dtype) {
                    continue;
                }
                let input = match (k.input, dtype) {
                    (InputKind::F64Pair, _) => Input::F64Pair(&fs, &fs),
                    (_, Dtype::U64) => Input::U64(&us),
                    (_, Dtype::F64) => Input::F64(&fs),
                };
                let array = Job::new(k, params, input);
                let iota = Job::iota(k, params, n, dtype);
                let out_dtype = k.output_dtype(Some(dtype)).unwrap();
                let len = if k.is_reduction() {
                    k.acc_len(&params)
                } else {
                    n
                };
                let mut out = Values::zeros(out_dtype, len);
                let with = run_checksum(backend, &array, Some(out.as_output()), &opts).unwrap();
                assert_eq!(with, checksum(out.as_acc()), "{what} {dtype}");
                let without = run_checksum(backend, &array, None, &opts).unwrap();
                let mut out2 = Values::zeros(out_dtype, len);
                let gen_with = run_checksum(backend, &iota, Some(out2.as_output()), &opts).unwrap();
                let gen_without = run_checksum(backend, &iota, None, &opts).unwrap();
                assert_eq!(out2, out, "{what} {dtype}: generated vs array output");
                assert_eq!(
                    [without, gen_with, gen_without],
                    [with; 3],
                    "{what} {dtype}: without output, generated, generated without output"
                );
                sums.push(with);
            }
        }
    }
    sums
}

#[test]
fn checksums_agree_with_and_without_output_and_for_generated_inputs() {
    let want = checksums_of(Backend::Sequential);
    // power u64 + f64, sum, dot, saxpy, histogram, then the generated kernels.
    assert_eq!(want.len(), 2 * 9);
    assert_eq!(
        want[0],
        want_sum(
            &(0..20_011u64)
                .map(|i| crate::kernels::power_u64(i, 4))
                .collect::<Vec<_>>()
        )
    );
    for backend in [Backend::Threads, Backend::Rayon] {
        assert_eq!(checksums_of(backend), want, "{backend}");
    }
}

#[test]
fn a_generated_input_is_checked_like_an_array() {
    let opts = RunOptions::default();
    let sum = find("sum").unwrap();
    let e = run_checksum(
        Backend::Threads,
        &Job::iota(sum, Params::default(), 10, Dtype::U64),
        None,
        &opts,
    )
    .unwrap_err();
    assert!(
        matches!(e, RunError::Kernel(KernelError::WrongDtype { .. })),
        "{e}"
    );
    let mb = find("mandelbrot").unwrap();
    let e = run_checksum(
        Backend::Rayon,
        &Job::iota(mb, Params::default(), 10, Dtype::U64),
        None,
        &opts,
    )
    .unwrap_err();
    assert!(
        matches!(e, RunError::Kernel(KernelError::WrongDtype { .. })),
        "{e}"
    );
    let power = find("power").unwrap();
    let mut both = Job::iota(power, Params::default(), 2, Dtype::U64);
    both.input = Input::U64(&[1, 2]);
    let e = run_checksum(Backend::Sequential, &both, None, &opts).unwrap_err();
    assert!(matches!(e, RunError::Invalid(_)), "{e}");
}
