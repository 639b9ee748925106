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

#[test]
fn every_point_has_its_bandwidth_share_and_the_probe_is_printed() {
    let o = shmproc(&[
        "bench",
        "--kernel",
        "sum,saxpy,mandelbrot",
        "--n",
        "5000",
        "--workers",
        "1,2",
        "--repeat",
        "1",
        "--backend",
        "rayon,processes",
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON object");
    let bw = v["read_bandwidth"].as_array().unwrap();
    let workers: Vec<u64> = bw.iter().map(|b| b["workers"].as_u64().unwrap()).collect();
    assert_eq!(workers, [1, 2]);
    assert!(
        bw.iter().all(|b| b["bytes_per_s"].as_f64().unwrap() > 1e8),
        "{bw:?}"
    );
    assert!(["portable", "avx2", "avx512"].contains(&v["simd"].as_str().unwrap()));
    for r in v["results"].as_array().unwrap() {
        let rate = r["bytes_per_s"].as_f64().unwrap();
        let share = r["of_bandwidth"].as_f64();
        match r["kernel"].as_str().unwrap() {
            // 5000 f64 read, or 5000 read and 5000 read and written.
            "sum" | "saxpy" => {
                let bytes = if r["kernel"] == "sum" {
                    5000.0 * 8.0
                } else {
                    3.0 * 5000.0 * 8.0
                };
                let want = bytes / r["median_s"].as_f64().unwrap();
                assert!((rate - want).abs() <= 1e-6 * want, "{r}");
                assert!(share.unwrap() > 0.0, "{r}");
            }
            // Generated: its u64 output written.
            _ => assert!(rate > 0.0 && share.is_some(), "{r}"),
        }
        assert!(r["vs_numpy"].is_null(), "no numpy without --vs-numpy: {r}");
    }
    let table = shmproc(&[
        "bench",
        "--kernel",
        "sum",
        "--n",
        "1000",
        "--workers",
        "1",
        "--repeat",
        "1",
    ]);
    let out = String::from_utf8_lossy(&table.stdout);
    assert!(
        out.lines()
            .any(|l| l.starts_with("read bandwidth (u64 sum over 256 MiB")),
        "{out}"
    );
    assert!(out.contains("%bw") && out.contains("GB/s"), "{out}");
}

/// Needs python3 with numpy, as `cli_numpy.rs` does (`.ci/run` installs it).
#[test]
fn vs_numpy_times_numpy_on_the_kernels_it_has() {
    let o = shmproc(&[
        "bench",
        "--kernel",
        "power,sum,dot,saxpy,histogram,normalize_rows,mandelbrot",
        "--n",
        "20000",
        "--workers",
        "1",
        "--repeat",
        "3",
        "--backend",
        "processes",
        "--dtype",
        "f32",
        "--vs-numpy",
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON object");
    assert!(v["numpy_version"]
        .as_str()
        .unwrap()
        .starts_with(char::is_numeric));
    let np = v["numpy"].as_array().unwrap();
    for k in ["power", "sum", "dot", "saxpy", "histogram"] {
        let p = np
            .iter()
            .find(|p| p["kernel"] == k)
            .unwrap_or_else(|| panic!("no numpy {k}"));
        assert_eq!(p["dtype"], "f32");
        assert_eq!(p["n"], 20000);
        assert!(p["median_s"].as_f64().unwrap() > 0.0, "{p}");
    }
    let rows = np.iter().find(|p| p["kernel"] == "normalize_rows").unwrap();
    assert!(rows["median_s"].is_null(), "no numpy equivalent: {rows}");
    assert!(
        np.iter().all(|p| p["kernel"] != "mandelbrot"),
        "generated: no input to give numpy"
    );
    for r in v["results"].as_array().unwrap() {
        let has =
            ["power", "sum", "dot", "saxpy", "histogram"].contains(&r["kernel"].as_str().unwrap());
        assert_eq!(r["vs_numpy"].as_f64().is_some(), has, "{r}");
    }
    let t = shmproc(&[
        "bench",
        "--kernel",
        "sum",
        "--n",
        "1000",
        "--workers",
        "1",
        "--repeat",
        "1",
        "--vs-numpy",
    ]);
    let out = String::from_utf8_lossy(&t.stdout);
    assert!(
        out.lines()
            .any(|l| l.starts_with("numpy ") && l.contains("one thread")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("numpy") && l.contains("items/s")),
        "{out}"
    );
}

#[test]
fn vs_numpy_without_python_is_a_clear_error() {
    let o = Command::new(env!("CARGO_BIN_EXE_shmproc"))
        .args([
            "bench",
            "--kernel",
            "sum",
            "--n",
            "100",
            "--repeat",
            "1",
            "--vs-numpy",
        ])
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("python3") && err.contains("numpy"), "{err}");
    assert!(
        o.stdout.is_empty(),
        "nothing timed: {}",
        String::from_utf8_lossy(&o.stdout)
    );
}

#[test]
fn shmproc_simd_caps_the_level_the_kernels_use() {
    let level = |cap: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_shmproc"));
        c.args([
            "bench",
            "--kernel",
            "sum",
            "--n",
            "100",
            "--workers",
            "1",
            "--repeat",
            "1",
        ])
        .args(["--backend", "sequential", "--json"]);
        if let Some(cap) = cap {
            c.env("SHMPROC_SIMD", cap);
        }
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["simd"].as_str().unwrap().to_owned()
    };
    let best = level(None);
    assert_eq!(level(Some("portable")), "portable");
    // A cap above what the CPU has gives what it has; an unknown one is ignored.
    assert_eq!(level(Some("avx512")), best);
    assert_eq!(level(Some("sse9")), best);
    let avx2 = level(Some("avx2"));
    assert!(
        avx2 == "avx2" || (best == "portable" && avx2 == "portable"),
        "{avx2} / {best}"
    );
}
