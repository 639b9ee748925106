//! The example's kernels through `run` and `bench`, on every backend.

use std::process::Command;

fn run(args: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_custom-kernel"))
        .args(args)
        .output()
        .expect("run the example binary");
    assert!(
        o.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn steps(mut n: u64) -> u64 {
    let mut s = 0;
    while n > 1 && s < 255 {
        n = if n.is_multiple_of(2) {
            n / 2
        } else {
            3 * n + 1
        };
        s += 1;
    }
    s
}

fn checksum(out: &str) -> u64 {
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("checksum: "))
        .expect("a checksum line");
    line.trim().parse().expect("a number")
}

#[test]
fn collatz_runs_on_every_backend_with_the_same_result() {
    let want = (0..20_000u64).map(steps).sum::<u64>();
    for backend in [
        "sequential",
        "threads",
        "rayon",
        "processes",
        "processes-copy",
    ] {
        for dtype in ["u32", "u64"] {
            let out = run(&[
                "run",
                "collatz",
                "--n",
                "20000",
                "--dtype",
                dtype,
                "--backend",
                backend,
                "--workers",
                "2",
                "--chunk",
                "999",
            ]);
            assert_eq!(checksum(&out), want, "{backend} {dtype}: {out}");
        }
    }
}

#[test]
fn user_kernels_are_listed_benched_and_checked_against_each_other() {
    let list = run(&["kernels"]);
    assert!(list.contains("collatz") && list.contains("user_power") && list.contains("power"));
    let out = run(&[
        "bench",
        "--kernel",
        "collatz,user_power,power",
        "--n",
        "5000",
        "--workers",
        "1,2",
        "--repeat",
        "1",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("bench JSON");
    let results = v["results"].as_array().expect("results");
    for kernel in ["collatz", "user_power", "power"] {
        let backends: Vec<_> = results
            .iter()
            .filter(|r| r["kernel"] == kernel)
            .map(|r| r["backend"].as_str().unwrap_or("").to_owned())
            .collect();
        for b in [
            "sequential",
            "threads",
            "rayon",
            "processes",
            "processes-copy",
        ] {
            assert!(
                backends.iter().any(|x| x == b),
                "{kernel} on {b}: {backends:?}"
            );
        }
    }
    // The user's power computes what the built-in one does.
    let a = run(&["run", "user_power", "--n", "100000", "--param", "times=5"]);
    let b = run(&["run", "power", "--n", "100000", "--param", "times=5"]);
    assert_eq!(checksum(&a), checksum(&b));
}
