//! The vector paths against the portable one, bit for bit, and the
//! compensated reductions against an exact sum.

use crate::dtype::{checksum_at, wrapping_dot_at};
use crate::elementwise::{iota_at, power_slice_at, saxpy_at, saxpy_f32_at};
use crate::reduce::{dot_float_at, histogram_at, sum_float_at};
use crate::rng::SplitMix64;
use crate::simd::Level;
use crate::Num;

/// Lengths around every block and lane boundary, and a long one.
const LENS: [usize; 9] = [0, 1, 15, 16, 17, 63, 64, 1000, 100_003];

fn floats<T: Num>(seed: u64, n: usize, spread: bool) -> Vec<T> {
    let mut g = SplitMix64::new(seed);
    (0..n)
        .map(|_| {
            let v = g.next_f64() * 4.0 - 2.0;
            // With `spread`: magnitudes from 2^-40 to 2^40, both signs.
            let e = if spread { (g.below(81) as i32) - 40 } else { 0 };
            T::from_f64(v * 2f64.powi(e))
        })
        .collect()
}

fn ints<T: Num>(seed: u64, n: usize) -> Vec<T> {
    let mut g = SplitMix64::new(seed);
    (0..n).map(|_| T::from_index(g.next_u64())).collect()
}

fn levels() -> Vec<Level> {
    let l = Level::available();
    assert_eq!(l[0].name(), "portable");
    l
}

#[test]
fn current_level_is_available_and_named() {
    let c = Level::current();
    assert!(levels().contains(&c));
    assert!(["portable", "avx2", "avx512"].contains(&c.name()));
}

#[test]
fn reductions_give_the_same_bits_on_every_level() {
    for (seed, &n) in LENS.iter().enumerate() {
        for spread in [false, true] {
            let x64: Vec<f64> = floats(seed as u64, n, spread);
            let y64: Vec<f64> = floats(seed as u64 + 100, n, spread);
            let x32: Vec<f32> = floats(seed as u64 + 200, n, spread);
            let y32: Vec<f32> = floats(seed as u64 + 300, n, spread);
            let xi: Vec<i32> = ints(seed as u64, n);
            let yi: Vec<i32> = ints(seed as u64 + 400, n);
            let (xu, yu): (Vec<u64>, Vec<u64>) =
                (ints(seed as u64 + 500, n), ints(seed as u64 + 600, n));
            let p = Level::available()[0];
            let want = (
                sum_float_at(p, &x64).to_bits(),
                dot_float_at(p, &x64, &y64).to_bits(),
                sum_float_at(p, &x32).to_bits(),
                dot_float_at(p, &x32, &y32).to_bits(),
                sum_float_at(p, &xi).to_bits(),
                wrapping_dot_at(p, &xi, &yi),
                wrapping_dot_at(p, &xu, &yu),
                checksum_at(p, &xu),
                checksum_at(p, &x64),
            );
            // The integer dot is the i64 wrapping dot product.
            let naive = xi.iter().zip(&yi).fold(0i64, |a, (&p, &q)| {
                a.wrapping_add(i64::from(p).wrapping_mul(i64::from(q)))
            });
            assert_eq!(want.5 as i64, naive);
            for l in levels() {
                let got = (
                    sum_float_at(l, &x64).to_bits(),
                    dot_float_at(l, &x64, &y64).to_bits(),
                    sum_float_at(l, &x32).to_bits(),
                    dot_float_at(l, &x32, &y32).to_bits(),
                    sum_float_at(l, &xi).to_bits(),
                    wrapping_dot_at(l, &xi, &yi),
                    wrapping_dot_at(l, &xu, &yu),
                    checksum_at(l, &xu),
                    checksum_at(l, &x64),
                );
                assert_eq!(got, want, "{l} n={n} spread={spread}");
            }
        }
    }
}

#[test]
fn reductions_keep_infinities_and_nan_on_every_level() {
    for l in levels() {
        let mut x = vec![1.0f64; 40];
        x[17] = f64::INFINITY;
        assert_eq!(sum_float_at(l, &x), f64::INFINITY, "{l}");
        x[33] = f64::NEG_INFINITY;
        assert!(sum_float_at(l, &x).is_nan(), "{l}");
        let big = vec![f64::MAX; 64];
        assert_eq!(sum_float_at(l, &big), f64::INFINITY, "{l}");
        x[33] = f64::NAN;
        assert!(sum_float_at(l, &x).is_nan(), "{l}");
    }
}

fn elementwise_same<T: Num + PartialEq + std::fmt::Debug>(x: &[T]) {
    let p = Level::available()[0];
    for times in [0u32, 1, 4, 7] {
        let mut want = vec![T::ZERO; x.len()];
        power_slice_at(p, x, &mut want, times);
        for l in levels() {
            let mut got = vec![T::ZERO; x.len()];
            power_slice_at(l, x, &mut got, times);
            // Compare bit patterns through the checksum's view: equal values
            // of equal types; NaN is not produced from these inputs.
            assert_eq!(got, want, "{l} {} times={times}", T::DTYPE);
        }
    }
    let mut want = vec![T::ZERO; x.len()];
    iota_at(p, &mut want, u64::MAX - 7);
    for l in levels() {
        let mut got = vec![T::ZERO; x.len()];
        iota_at(l, &mut got, u64::MAX - 7);
        assert_eq!(got, want, "{l} {} iota", T::DTYPE);
    }
}

#[test]
fn elementwise_kernels_give_the_same_values_on_every_level() {
    for &n in &LENS {
        elementwise_same::<i8>(&ints(1, n));
        elementwise_same::<i16>(&ints(2, n));
        elementwise_same::<i32>(&ints(3, n));
        elementwise_same::<i64>(&ints(4, n));
        elementwise_same::<u8>(&ints(5, n));
        elementwise_same::<u16>(&ints(6, n));
        elementwise_same::<u32>(&ints(7, n));
        elementwise_same::<u64>(&ints(8, n));
        elementwise_same::<f32>(&floats(9, n, false));
        elementwise_same::<f64>(&floats(10, n, false));
        let (x, y0): (Vec<f64>, Vec<f64>) = (floats(11, n, true), floats(12, n, true));
        let (x32, y32): (Vec<f32>, Vec<f32>) = (floats(13, n, true), floats(14, n, true));
        let p = Level::available()[0];
        let (mut want, mut want32) = (y0.clone(), y32.clone());
        saxpy_at(p, 2.5, &x, &mut want);
        saxpy_f32_at(p, 2.5, &x32, &mut want32);
        for l in levels() {
            let (mut got, mut got32) = (y0.clone(), y32.clone());
            saxpy_at(l, 2.5, &x, &mut got);
            saxpy_f32_at(l, 2.5, &x32, &mut got32);
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            let bits32 = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "{l} saxpy n={n}");
            assert_eq!(bits32(&got32), bits32(&want32), "{l} saxpy_f32 n={n}");
        }
    }
}

#[test]
fn histogram_and_checksum_agree_on_every_level() {
    let mut x: Vec<f64> = floats(20, 100_003, false);
    x.extend([
        f64::NAN,
        f64::INFINITY,
        -f64::INFINITY,
        1.0,
        -1.0,
        0.999_999_999,
    ]);
    let p = Level::available()[0];
    for bins in [1usize, 7, 16, 4093, 65536] {
        let mut want = vec![0u64; bins + 3];
        histogram_at(p, &x, -1.0, 1.0, &mut want);
        assert_eq!(want.iter().sum::<u64>(), x.len() as u64);
        for l in levels() {
            let mut got = vec![0u64; bins + 3];
            histogram_at(l, &x, -1.0, 1.0, &mut got);
            assert_eq!(got, want, "{l} bins={bins}");
        }
    }
    // The checksum runs at the current level; every level's power output
    // above was equal, so one comparison with a plain fold is enough here.
    let v: Vec<u64> = ints(21, 100_003);
    let plain = v.iter().fold(0u64, |a, &b| a.wrapping_add(b));
    assert_eq!(crate::Slice::U64(&v).checksum(), plain);
}

/// The exact sum of `x`, rounded once to f64: Shewchuk's algorithm (what
/// Python's `math.fsum` does), kept as a list of non-overlapping partials.
fn exact_sum(x: &[f64]) -> f64 {
    let mut partials: Vec<f64> = Vec::new();
    for &v in x {
        let mut v = v;
        let mut i = 0;
        for j in 0..partials.len() {
            let mut y = partials[j];
            if v.abs() < y.abs() {
                std::mem::swap(&mut v, &mut y);
            }
            let hi = v + y;
            let lo = y - (hi - v);
            if lo != 0.0 {
                partials[i] = lo;
                i += 1;
            }
            v = hi;
        }
        partials.truncate(i);
        partials.push(v);
    }
    // Round the partials' exact sum to nearest: add from the top, and look
    // at the next partial for a tie (as fsum does).
    let mut n = partials.len();
    if n == 0 {
        return 0.0;
    }
    n -= 1;
    let mut hi = partials[n];
    let mut lo = 0.0;
    while n > 0 {
        n -= 1;
        let v = hi;
        let y = partials[n];
        hi = v + y;
        let yr = hi - v;
        lo = y - yr;
        if lo != 0.0 {
            break;
        }
    }
    if n > 0 && ((lo < 0.0 && partials[n - 1] < 0.0) || (lo > 0.0 && partials[n - 1] > 0.0)) {
        let y = lo * 2.0;
        let v = hi + y;
        if y == v - hi {
            hi = v;
        }
    }
    hi
}

/// The single compensated (Neumaier) running sum the reductions used before
/// the lanes: the accuracy the lanes must keep.
fn neumaier(x: &[f64]) -> f64 {
    let (mut s, mut c) = (0.0f64, 0.0f64);
    for &v in x {
        let t = s + v;
        if s.abs() >= v.abs() {
            c += (s - t) + v;
        } else {
            c += (v - t) + s;
        }
        s = t;
    }
    s + c
}

#[test]
fn exact_sum_reference_is_exact_where_the_answer_is_known() {
    assert_eq!(exact_sum(&[1e16, 1.0, -1e16, 1.0]), 2.0);
    assert_eq!(exact_sum(&[0.1; 10]), 1.0);
    assert_eq!(exact_sum(&[1e300, 1e300, -1e300, -1e300, 3.0]), 3.0);
}

#[test]
fn sums_are_as_accurate_as_the_single_compensated_sum_against_an_exact_sum() {
    let ulp = |v: f64| f64::from_bits(v.abs().to_bits() + 1) - v.abs();
    let mut worse = 0;
    for seed in 0..60u64 {
        let n = [10, 1000, 50_000][seed as usize % 3];
        let mut x: Vec<f64> = floats(seed, n, true);
        // Ill-conditioned half the time: every value with its negation, and
        // a small remainder, shuffled, so the exact sum is tiny.
        if seed % 2 == 1 {
            let m = x.len();
            for i in 0..m {
                x.push(-x[i]);
            }
            x.extend([1e-3, 3e-7]);
            let mut g = SplitMix64::new(seed);
            for i in (1..x.len()).rev() {
                x.swap(i, g.below(i as u64 + 1) as usize);
            }
        }
        let exact = exact_sum(&x);
        let abs_total: f64 = x.iter().map(|v| v.abs()).sum();
        // The error bound of a compensated sum: the final rounding, plus a
        // second-order term in the length.
        let bound = ulp(exact) + (x.len() as f64) * 2f64.powi(-104) * abs_total;
        for l in levels() {
            let ours = sum_float_at(l, &x);
            let err = (ours - exact).abs();
            assert!(err <= bound, "{l} seed={seed}: {ours} vs exact {exact}");
            let old = (neumaier(&x) - exact).abs();
            assert!(old <= bound, "the old sum breaks the bound: seed={seed}");
            if err > old {
                worse += 1;
            }
        }
    }
    // Both round once at the end, so either may be an ulp closer on some
    // input; the lanes are never outside the bound and rarely the farther.
    assert!(
        worse <= 6,
        "lanes farther from exact than one running sum {worse} times"
    );
}
