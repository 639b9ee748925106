use super::*;
use crate::rng::SplitMix64;

/// Runs `info` over `0..n` cut at random chunk sizes (seeded), the way a backend
/// does: map chunks write their sub-slice, reduce chunks write a partial that is
/// combined in order.
fn run_chunked(
    info: &KernelInfo,
    p: &Params,
    n: usize,
    input: Input<'_>,
    out: &mut Values,
    seed: u64,
) {
    let mut g = SplitMix64::new(seed);
    let mut start = 0;
    let acc_len = info.acc_len(p);
    while start < n || (start == 0 && n == 0) {
        let end = (start + 1 + g.below(n as u64 / 3 + 2) as usize).min(n);
        let sub = input.slice(start..end);
        if info.is_reduction() {
            let mut partial = Values::zeros(out.dtype(), acc_len);
            run_chunk(info, p, start..end, sub, partial.as_output()).unwrap();
            combine(info, out.as_output(), partial.as_acc()).unwrap();
        } else {
            let mut o = out.as_output();
            let (_, rest) = o.reborrow().split_at(start);
            let (mine, _) = rest.split_at(end - start);
            run_chunk(info, p, start..end, sub, mine).unwrap();
        }
        if end == n {
            break;
        }
        start = end;
    }
}

fn random_f64(seed: u64, n: usize) -> Vec<f64> {
    let mut g = SplitMix64::new(seed);
    (0..n).map(|_| g.next_f64() * 2.0 - 0.5).collect()
}

#[test]
fn registry_ids_names_and_params_are_consistent() {
    let mut names = std::collections::HashSet::new();
    for (i, k) in registry().iter().enumerate() {
        assert_eq!(k.id as usize, i, "{}", k.name);
        assert_eq!(KernelId::from_u32(i as u32), Some(k.id));
        assert!(names.insert(k.name), "duplicate {}", k.name);
        assert_eq!(find(k.name), Some(k));
        assert!(!k.summary.is_empty());
        for spec in k.params {
            let mut p = Params::default();
            p.set(spec.name, spec.default).unwrap();
            assert_eq!(p, Params::default(), "{}.{}", k.name, spec.name);
        }
        assert_eq!(k.is_reduction(), k.acc_len(&Params::default()) > 0);
        assert!(k.check_params(&Params::default()).is_ok());
    }
    assert_eq!(registry().len(), 8);
}

#[test]
fn power_chunked_equals_direct() {
    let info = find("power").unwrap();
    let p = Params {
        times: 5,
        ..Params::default()
    };
    let mut g = SplitMix64::new(20);
    let xs: Vec<u64> = (0..5000).map(|_| g.next_u64()).collect();
    let mut out = Values::zeros(Dtype::U64, xs.len());
    run_chunked(info, &p, xs.len(), Input::U64(&xs), &mut out, 1);
    let want: Vec<u64> = xs.iter().map(|&x| x.wrapping_pow(32)).collect();
    assert_eq!(out, Values::U64(want));

    let fs = random_f64(21, 3000);
    let mut out = Values::zeros(Dtype::F64, fs.len());
    run_chunked(info, &p, fs.len(), Input::F64(&fs), &mut out, 2);
    let Values::F64(got) = out else {
        panic!("dtype")
    };
    for (&x, &o) in fs.iter().zip(&got) {
        let want = x.powi(32);
        assert!((o - want).abs() <= 1e-13 * want.abs(), "{x}: {o} vs {want}");
    }
}

#[test]
fn sum_and_dot_chunked_close_to_naive() {
    let x = random_f64(22, 10_000);
    let y = random_f64(23, 10_000);
    let mut acc = Values::zeros(Dtype::F64, 1);
    run_chunked(
        find("sum").unwrap(),
        &Params::default(),
        x.len(),
        Input::F64(&x),
        &mut acc,
        3,
    );
    let naive: f64 = x.iter().sum();
    let Values::F64(s) = &acc else {
        panic!("dtype")
    };
    // Partials are compensated; the chunk combine adds at most one rounding per chunk.
    assert!(
        (s[0] - naive).abs() <= 1e-10 * x.len() as f64,
        "{} vs {naive}",
        s[0]
    );

    let mut acc = Values::zeros(Dtype::F64, 1);
    let dot_info = find("dot").unwrap();
    run_chunked(
        dot_info,
        &Params::default(),
        x.len(),
        Input::F64Pair(&x, &y),
        &mut acc,
        4,
    );
    let naive: f64 = x.iter().zip(&y).map(|(a, b)| a * b).sum();
    let Values::F64(d) = &acc else {
        panic!("dtype")
    };
    assert!(
        (d[0] - naive).abs() <= 1e-10 * x.len() as f64,
        "{} vs {naive}",
        d[0]
    );
}

#[test]
fn reductions_are_deterministic_for_a_given_chunking() {
    let x = random_f64(24, 20_000);
    let info = find("sum").unwrap();
    let run = |seed| {
        let mut acc = Values::zeros(Dtype::F64, 1);
        run_chunked(
            info,
            &Params::default(),
            x.len(),
            Input::F64(&x),
            &mut acc,
            seed,
        );
        acc
    };
    assert_eq!(run(5), run(5));
}

#[test]
fn saxpy_chunked_updates_in_place() {
    let x = random_f64(25, 4321);
    let y0 = random_f64(26, 4321);
    let p = Params {
        a: -1.25,
        ..Params::default()
    };
    let mut y = Values::F64(y0.clone());
    run_chunked(
        find("saxpy").unwrap(),
        &p,
        x.len(),
        Input::F64(&x),
        &mut y,
        6,
    );
    let want: Vec<f64> = x.iter().zip(&y0).map(|(a, b)| -1.25 * a + b).collect();
    assert_eq!(y, Values::F64(want));
}

#[test]
fn histogram_chunked_equals_whole() {
    let mut x = random_f64(27, 9000);
    x.push(f64::NAN);
    let p = Params {
        lo: 0.0,
        hi: 1.0,
        bins: 8,
        ..Params::default()
    };
    let info = find("histogram").unwrap();
    let mut acc = Values::zeros(Dtype::U64, info.acc_len(&p));
    run_chunked(info, &p, x.len(), Input::F64(&x), &mut acc, 7);
    let mut want = vec![0u64; 11];
    crate::histogram(&x, 0.0, 1.0, &mut want);
    assert_eq!(acc, Values::U64(want.clone()));
    assert_eq!(want[crate::hist_nan(8)], 1);
    assert!(want[crate::hist_under(8)] > 0 && want[crate::hist_over(8)] > 0);
}

#[test]
fn generated_kernels_chunked_equal_direct() {
    let p = Params {
        width: 40,
        height: 30,
        max_iter: 80,
        seed: 9,
        start: 1000,
        ..Params::default()
    };
    let mb = find("mandelbrot").unwrap();
    let n = mb.natural_len(&p).unwrap();
    let mut img = Values::zeros(Dtype::U64, n);
    run_chunked(mb, &p, n, Input::Generated, &mut img, 8);
    let mut want = vec![0u64; n];
    crate::mandelbrot(40, 30, 80, 0, &mut want);
    assert_eq!(img, Values::U64(want));

    let mc = find("monte_carlo_pi").unwrap();
    let mut acc = Values::zeros(Dtype::U64, 2);
    run_chunked(mc, &p, 50_000, Input::Generated, &mut acc, 9);
    assert_eq!(
        acc,
        Values::U64(vec![crate::monte_carlo_pi(9, 0..50_000), 50_000])
    );

    let cp = find("count_primes").unwrap();
    let mut acc = Values::zeros(Dtype::U64, 1);
    run_chunked(cp, &p, 100_000, Input::Generated, &mut acc, 10);
    assert_eq!(acc, Values::U64(vec![crate::count_primes(1000, 101_000)]));
}

#[test]
fn run_chunk_rejects_bad_calls_without_writing() {
    let p = Params::default();
    let power = find("power").unwrap();
    let mut out = [7u64; 3];
    // Length mismatch between range, input and output.
    let e = run_chunk(power, &p, 0..3, Input::U64(&[1, 2]), Output::U64(&mut out)).unwrap_err();
    assert!(
        matches!(e, KernelError::LengthMismatch { what: "input", .. }),
        "{e}"
    );
    let e = run_chunk(power, &p, 0..2, Input::U64(&[1, 2]), Output::U64(&mut out)).unwrap_err();
    assert!(
        matches!(e, KernelError::LengthMismatch { what: "output", .. }),
        "{e}"
    );
    // Output dtype differs from input dtype.
    let e = run_chunk(
        power,
        &p,
        0..3,
        Input::U64(&[1, 2, 3]),
        Output::F64(&mut [0.0; 3]),
    )
    .unwrap_err();
    assert!(matches!(e, KernelError::WrongDtype { .. }), "{e}");
    // Generated input to an array kernel.
    assert!(run_chunk(power, &p, 0..3, Input::Generated, Output::U64(&mut out)).is_err());
    assert_eq!(out, [7; 3], "nothing written on error");

    let sum_k = find("sum").unwrap();
    let e = run_chunk(sum_k, &p, 0..1, Input::U64(&[1]), Output::F64(&mut [0.0])).unwrap_err();
    assert_eq!(e.to_string(), "kernel sum takes f64 input, not u64 input");
    // Accumulator of the wrong length.
    let e = run_chunk(
        sum_k,
        &p,
        0..1,
        Input::F64(&[1.0]),
        Output::F64(&mut [0.0; 2]),
    )
    .unwrap_err();
    assert!(matches!(
        e,
        KernelError::LengthMismatch {
            what: "accumulator",
            ..
        }
    ));
    // dot needs a pair, and the pair must match in length.
    let dot_k = find("dot").unwrap();
    assert!(run_chunk(dot_k, &p, 0..1, Input::F64(&[1.0]), Output::F64(&mut [0.0])).is_err());
    let e = run_chunk(
        dot_k,
        &p,
        0..1,
        Input::F64Pair(&[1.0], &[]),
        Output::F64(&mut [0.0]),
    )
    .unwrap_err();
    assert!(matches!(
        e,
        KernelError::LengthMismatch {
            what: "second input",
            ..
        }
    ));

    // Bad parameters and ranges past the image.
    let mb = find("mandelbrot").unwrap();
    let small = Params {
        width: 2,
        height: 2,
        ..p
    };
    let e = run_chunk(mb, &small, 3..5, Input::Generated, Output::U64(&mut [0; 2])).unwrap_err();
    assert_eq!(
        e,
        KernelError::RangeTooLarge {
            kernel: "mandelbrot",
            end: 5,
            limit: 4
        }
    );
    let zero = Params { width: 0, ..p };
    assert!(matches!(
        run_chunk(mb, &zero, 0..0, Input::Generated, Output::U64(&mut [])),
        Err(KernelError::BadParam { .. })
    ));
    let hist = find("histogram").unwrap();
    let e = run_chunk(
        hist,
        &Params { bins: 0, ..p },
        0..0,
        Input::F64(&[]),
        Output::U64(&mut [0; 3]),
    );
    assert!(matches!(e, Err(KernelError::BadParam { .. })));
    let mut acc = [5u64; 19];
    let reversed = std::ops::Range { start: 2, end: 1 };
    assert!(run_chunk(hist, &p, reversed, Input::F64(&[]), Output::U64(&mut acc)).is_err());
    assert_eq!(acc, [5; 19]);
}

#[test]
fn combine_rejects_mismatches() {
    let sum_k = find("sum").unwrap();
    let mut acc = [0.0];
    assert!(combine(sum_k, Output::F64(&mut acc), Acc::F64(&[1.0, 2.0])).is_err());
    assert!(combine(sum_k, Output::F64(&mut acc), Acc::U64(&[1])).is_err());
    let mut uacc = [0u64];
    assert!(combine(sum_k, Output::U64(&mut uacc), Acc::U64(&[1])).is_err());
    let hist = find("histogram").unwrap();
    let mut h = [u64::MAX, 1];
    combine(hist, Output::U64(&mut h), Acc::U64(&[2, 3])).unwrap();
    assert_eq!(h, [1, 4], "u64 accumulators wrap");
}

#[test]
fn empty_ranges_are_fine() {
    let p = Params::default();
    for k in registry() {
        let mut acc = Values::zeros(
            k.output_dtype(match k.input {
                InputKind::Generated => None,
                _ => Some(Dtype::F64),
            })
            .unwrap_or(Dtype::U64),
            k.acc_len(&p),
        );
        let input = match k.input {
            InputKind::Generated => Input::Generated,
            InputKind::F64Pair => Input::F64Pair(&[], &[]),
            InputKind::Array(_) => Input::F64(&[]),
        };
        run_chunk(k, &p, 0..0, input, acc.as_output())
            .unwrap_or_else(|e| panic!("{}: {e}", k.name));
    }
}
