//! `shmproc bench` end to end with tiny sizes.

use std::process::{Command, Output};

fn shmproc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shmproc"))
        .args(args)
        .output()
        .expect("run the shmproc binary")
}

#[test]
fn json_has_every_point_and_consistent_speedups() {
    let dir = tempfile::tempdir().unwrap();
    let plot = dir.path().join("plot.svg");
    let o = shmproc(&[
        "bench",
        "--kernel",
        "power,sum,mandelbrot,count_primes",
        "--n",
        "4000",
        "--workers",
        "1,2",
        "--repeat",
        "2",
        "--json",
        "--plot",
        plot.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON object");
    assert!(v["machine"]["cores"].as_u64().unwrap() >= 1);
    assert!(v["machine"]["rustc"].as_str().unwrap().starts_with("rustc"));
    let results = v["results"].as_array().unwrap();
    // 4 kernels x (sequential + 4 backends x 2 worker counts): by default
    // every backend, processes against threads included.
    assert_eq!(results.len(), 4 * 9);
    for b in ["threads", "rayon", "processes", "processes-copy"] {
        assert_eq!(
            results.iter().filter(|r| r["backend"] == b).count(),
            4 * 2,
            "{b}"
        );
    }
    for r in results {
        let (med, min, max) = (
            r["median_s"].as_f64().unwrap(),
            r["min_s"].as_f64().unwrap(),
            r["max_s"].as_f64().unwrap(),
        );
        assert!(min <= med && med <= max, "{r}");
        if r["backend"] == "sequential" {
            assert_eq!(r["speedup"].as_f64(), Some(1.0));
        }
        if r["backend"] == "rayon" {
            assert_eq!(r["vs_rayon"].as_f64(), Some(1.0));
        }
    }
    let mandel = results
        .iter()
        .find(|r| r["kernel"] == "mandelbrot")
        .unwrap();
    assert_eq!(mandel["n"], 63 * 63, "square image of about n pixels");
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("</svg>"));
    assert_eq!(
        svg.matches("<polyline").count(),
        4 * 4,
        "threads, rayon, processes and processes-copy per kernel"
    );
}

#[test]
fn table_lists_backends_and_machine() {
    let o = shmproc(&[
        "bench",
        "--kernel",
        "monte_carlo_pi",
        "--n",
        "2000",
        "--workers",
        "2",
        "--repeat",
        "1",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.starts_with("machine: "), "{out}");
    assert!(out.contains("rustc"), "{out}");
    assert!(out.contains("monte_carlo_pi (n = 2000)"), "{out}");
    for b in ["sequential", "threads", "rayon"] {
        assert!(out.lines().any(|l| l.starts_with(b)), "no {b} row in {out}");
    }
}

#[test]
fn process_backends_are_timed_and_checked_against_sequential() {
    let o = shmproc(&[
        "bench",
        "--kernel",
        "power,sum,dot,saxpy,histogram,mandelbrot,monte_carlo_pi,count_primes",
        "--n",
        "3000",
        "--workers",
        "1,2",
        "--repeat",
        "1",
        "--backend",
        "processes,processes-copy",
        "--json",
    ]);
    // bench fails if any backend disagrees with sequential.
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON object");
    let results = v["results"].as_array().unwrap();
    // 8 kernels x (sequential + 2 backends x 2 worker counts).
    assert_eq!(results.len(), 8 * 5);
    for b in ["processes", "processes-copy"] {
        assert_eq!(results.iter().filter(|r| r["backend"] == b).count(), 16);
    }
}

#[test]
fn bad_arguments_fail_with_one_line() {
    for args in [
        &["bench", "--kernel", "nope"][..],
        &["bench", "--workers", "0"],
        &["bench", "--backend", "gpu"],
        &["bench", "--param", "bins=0", "--kernel", "histogram"],
    ] {
        let o = shmproc(args);
        assert!(!o.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    }
}
