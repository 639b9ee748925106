//! `shmproc run` end to end: the built binary on files in temporary directories,
//! with expected values computed here, independently of the crate.

mod cli_common;

use cli_common::{alive, children_of, cpu_ticks};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn shmproc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shmproc"))
        .args(args)
        .output()
        .expect("run the shmproc binary")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(args: &[&str]) -> String {
    let o = shmproc(args);
    assert!(o.status.success(), "{args:?} failed: {}", stderr(&o));
    stdout(&o)
}

/// Runs a command that must fail; returns its single stderr line.
fn fails(args: &[&str]) -> String {
    let o = shmproc(args);
    assert!(!o.status.success(), "{args:?} succeeded: {}", stdout(&o));
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "one line on stderr, got {err:?}");
    assert!(err.starts_with("shmproc: error: "), "{err}");
    err
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// Repeated squaring, written out here rather than taken from the crate.
fn power(mut x: u64, times: u32) -> u64 {
    for _ in 0..times {
        x = x.wrapping_mul(x);
    }
    x
}

/// A .npy v1.0 file written by hand: magic, version, header padded to 64.
fn npy_bytes(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
    let dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    let mut header = dict.into_bytes();
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(b' ');
    }
    header.push(b'\n');
    let mut f = b"\x93NUMPY\x01\x00".to_vec();
    f.extend((header.len() as u16).to_le_bytes());
    f.extend(header);
    f.extend(data);
    f
}

fn le_u64(v: &[u64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn le_f64(v: &[f64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Reads a .npy file: checks its header says `descr` and `len`, returns the data.
fn read_npy(path: &Path, descr: &str, len: usize) -> Vec<u8> {
    let f = std::fs::read(path).expect("read output");
    assert_eq!(&f[..8], b"\x93NUMPY\x01\x00");
    let hlen = u16::from_le_bytes([f[8], f[9]]) as usize;
    let header = std::str::from_utf8(&f[10..10 + hlen]).expect("ascii header");
    assert!(header.contains(&format!("'descr': '{descr}'")), "{header}");
    // Any spacing of the tuple: `(3,)` as numpy writes it, `(3, )` as npyz does.
    let compact: String = header.chars().filter(|c| *c != ' ').collect();
    assert!(compact.contains(&format!("'shape':({len},)")), "{header}");
    assert!(header.contains("'fortran_order': False"), "{header}");
    assert_eq!((10 + hlen) % 64, 0, "data aligned to 64");
    assert_eq!(f.len(), 10 + hlen + 8 * len);
    f[10 + hlen..].to_vec()
}

fn u64s(bytes: &[u8]) -> Vec<u64> {
    bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect()
}

fn f64s(bytes: &[u8]) -> Vec<f64> {
    bytes
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect()
}

fn checksum_line(out: &str) -> u64 {
    out.lines()
        .find_map(|l| l.strip_prefix("checksum:"))
        .expect("a checksum line")
        .trim()
        .parse()
        .expect("checksum is a u64")
}

fn tmp() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().expect("temp dir");
    let p = d.path().to_owned();
    (d, p)
}

#[test]
fn npy_u64_round_trip_for_power() {
    let (_d, dir) = tmp();
    let xs: Vec<u64> = (0..1000u64)
        .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .collect();
    let input = dir.join("in.npy");
    std::fs::write(&input, npy_bytes("<u8", "(1000,)", &le_u64(&xs))).unwrap();
    let output = dir.join("out.npy");
    for backend in [
        "sequential",
        "threads",
        "rayon",
        "processes",
        "processes-copy",
    ] {
        let out = ok(&[
            "run",
            "power",
            "--input",
            path_str(&input),
            "--output",
            path_str(&output),
            "--times",
            "3",
            "--backend",
            backend,
            "--workers",
            "2",
            "--chunk",
            "77",
        ]);
        let want: Vec<u64> = xs.iter().map(|&x| power(x, 3)).collect();
        assert_eq!(u64s(&read_npy(&output, "<u8", 1000)), want, "{backend}");
        let sum = want.iter().fold(0u64, |a, &x| a.wrapping_add(x));
        assert_eq!(checksum_line(&out), sum);
        assert!(out.contains("items:    1000"), "{out}");
    }
}

#[test]
fn npy_f64_round_trip_and_param_flag() {
    let (_d, dir) = tmp();
    let xs: Vec<f64> = (0..257).map(|i| 1.0 + i as f64 / 1000.0).collect();
    let input = dir.join("in.npy");
    std::fs::write(&input, npy_bytes("<f8", "(257,)", &le_f64(&xs))).unwrap();
    let output = dir.join("out.npy");
    ok(&[
        "run",
        "power",
        "--input",
        path_str(&input),
        "--output",
        path_str(&output),
        "--param",
        "times=2",
        "--backend",
        "threads",
        "-q",
    ]);
    let got = f64s(&read_npy(&output, "<f8", 257));
    for (x, y) in xs.iter().zip(&got) {
        let want = (x * x) * (x * x);
        assert_eq!(*y, want, "power of {x}");
    }
}

#[test]
fn raw_round_trip_and_dtype_flag() {
    let (_d, dir) = tmp();
    let xs: Vec<u64> = (1..=100).collect();
    let input = dir.join("in.bin");
    std::fs::write(&input, le_u64(&xs)).unwrap();
    let output = dir.join("out.bin");
    ok(&[
        "run",
        "power",
        "--input",
        path_str(&input),
        "--output",
        path_str(&output),
        "--backend",
        "rayon",
        "--times",
        "1",
    ]);
    let want: Vec<u64> = xs.iter().map(|x| x * x).collect();
    assert_eq!(u64s(&std::fs::read(&output).unwrap()), want);

    // The same bytes read as f64 by --dtype, summed.
    let fs: Vec<f64> = (0..64).map(|i| i as f64 * 0.5).collect();
    std::fs::write(&input, le_f64(&fs)).unwrap();
    let out = ok(&[
        "run",
        "sum",
        "--input",
        path_str(&input),
        "--dtype",
        "f64",
        "--backend",
        "threads",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object");
    assert_eq!(v["result"][0].as_f64(), Some(fs.iter().sum::<f64>()));
    assert_eq!(v["items"], 64);
}

#[test]
fn text_round_trip() {
    let (_d, dir) = tmp();
    let input = dir.join("in.txt");
    std::fs::write(&input, "3\n 5 \n\n7\n").unwrap();
    let output = dir.join("out.txt");
    ok(&[
        "run",
        "power",
        "--input",
        path_str(&input),
        "--output",
        path_str(&output),
        "--backend",
        "sequential",
        "--times",
        "2",
    ]);
    assert_eq!(std::fs::read_to_string(&output).unwrap(), "81\n625\n2401\n");

    // Floats in, floats out: text output round-trips every bit.
    std::fs::write(&input, "0.1\n-2.5\n1e-300\n").unwrap();
    let out_f = dir.join("f.txt");
    ok(&[
        "run",
        "saxpy",
        "--input",
        path_str(&input),
        "--output",
        path_str(&out_f),
        "--param",
        "a=3",
        "--backend",
        "threads",
    ]);
    let got: Vec<f64> = std::fs::read_to_string(&out_f)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(got, [3.0 * 0.1, -7.5, 3.0 * 1e-300]);

    // Text in, npy out (format chosen by --format despite the extension).
    let out_n = dir.join("o.dat");
    std::fs::write(&input, "2\n3\n").unwrap();
    ok(&[
        "run",
        "power",
        "--input",
        path_str(&input),
        "--output",
        path_str(&out_n),
        "--format",
        "npy",
        "--backend",
        "threads",
    ]);
    assert_eq!(u64s(&read_npy(&out_n, "<u8", 2)), [65536, 43046721]);
}

#[test]
fn generated_input_json_summary() {
    let out = ok(&[
        "run",
        "power",
        "--n",
        "100",
        "--backend",
        "sequential",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object");
    for key in [
        "kernel",
        "items",
        "backend",
        "workers",
        "elapsed_s",
        "items_per_s",
        "checksum",
    ] {
        assert!(v.get(key).is_some(), "missing {key} in {v}");
    }
    let want = (0..100u64).fold(0u64, |a, i| a.wrapping_add(power(i, 4)));
    assert_eq!(v["checksum"].as_u64(), Some(want));
    assert_eq!(v["kernel"], "power");
    assert_eq!(v["backend"], "sequential");

    let out = ok(&[
        "run",
        "count_primes",
        "--n",
        "1000",
        "--backend",
        "threads",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["result"][0], 168);

    let out = ok(&[
        "run",
        "mandelbrot",
        "--param",
        "width=8",
        "--param",
        "height=6",
        "--backend",
        "rayon",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["items"], 48);
}

#[test]
fn reduction_output_file_holds_the_accumulator() {
    let (_d, dir) = tmp();
    let xs = [0.1, 0.6, 0.7, -1.0, 2.0, f64::NAN];
    let input = dir.join("x.npy");
    std::fs::write(&input, npy_bytes("<f8", "(6,)", &le_f64(&xs))).unwrap();
    let output = dir.join("h.npy");
    ok(&[
        "run",
        "histogram",
        "--input",
        path_str(&input),
        "--output",
        path_str(&output),
        "--param",
        "bins=2",
        "--backend",
        "threads",
    ]);
    // Two bins [0, .5) [.5, 1), then under, over, NaN.
    assert_eq!(u64s(&read_npy(&output, "<u8", 5)), [1, 2, 1, 1, 1]);
}

#[test]
fn missing_input_file() {
    let e = fails(&[
        "run",
        "power",
        "--input",
        "/no/such/file.npy",
        "--backend",
        "threads",
    ]);
    assert!(e.contains("cannot open /no/such/file.npy"), "{e}");
}

#[test]
fn truncated_and_malformed_npy() {
    let (_d, dir) = tmp();
    let p = dir.join("bad.npy");
    let good = npy_bytes("<u8", "(4,)", &le_u64(&[1, 2, 3, 4]));
    let cases: [(&[u8], &str); 5] = [
        (&good[..40], "truncated .npy header"), // cut inside the header
        (&good[..good.len() - 8], "truncated .npy data"), // one element short
        (
            b"\x93NUMPY\x01\x00\x10\x00{'descr': <u8}  ",
            "malformed .npy header",
        ),
        (
            &npy_bytes("<c16", "(2,)", &[0; 32]),
            "unsupported .npy dtype \"<c16\"",
        ),
        (
            &npy_bytes(">u8", "(2,)", &[0; 16]),
            "big-endian data is not read",
        ),
    ];
    for (bytes, want) in cases {
        std::fs::write(&p, bytes).unwrap();
        let e = fails(&[
            "run",
            "power",
            "--input",
            path_str(&p),
            "--backend",
            "threads",
        ]);
        assert!(e.contains(want), "expected {want:?} in {e}");
    }
}

#[test]
fn dtype_the_kernel_does_not_take() {
    let (_d, dir) = tmp();
    let p = dir.join("u.npy");
    std::fs::write(&p, npy_bytes("<u8", "(2,)", &le_u64(&[1, 2]))).unwrap();
    let e = fails(&[
        "run",
        "saxpy",
        "--input",
        path_str(&p),
        "--backend",
        "threads",
    ]);
    assert!(
        e.contains("kernel saxpy takes f32 or f64 input, not u64 input") && e.contains("--dtype"),
        "{e}"
    );
    let e = fails(&[
        "run",
        "normalize_rows",
        "--dtype",
        "i32",
        "--n",
        "3",
        "--backend",
        "threads",
    ]);
    assert!(e.contains("takes f32 or f64 input"), "{e}");
}

#[test]
fn non_numeric_text_line() {
    let (_d, dir) = tmp();
    let p = dir.join("t.txt");
    std::fs::write(&p, "1.5\n2\n\nthree\n4\n").unwrap();
    let e = fails(&[
        "run",
        "sum",
        "--input",
        path_str(&p),
        "--backend",
        "threads",
    ]);
    assert!(e.contains("line 4: \"three\" is not a number"), "{e}");
}

#[test]
fn unknown_kernel_option_and_parameter() {
    let e = fails(&["run", "powr", "--backend", "threads"]);
    assert!(e.contains("unknown kernel \"powr\""), "{e}");
    let e = fails(&["run", "power", "--frobnicate"]);
    assert!(e.contains("--frobnicate"), "{e}");
    let e = fails(&[
        "run",
        "power",
        "--param",
        "colour=3",
        "--backend",
        "threads",
    ]);
    assert!(e.contains("unknown parameter \"colour\""), "{e}");
    let e = fails(&["run", "power", "--backend", "gpu"]);
    assert!(e.contains("gpu"), "{e}");
    let e = fails(&[
        "run",
        "mandelbrot",
        "--input",
        "x.npy",
        "--backend",
        "threads",
    ]);
    assert!(e.contains("generates its input"), "{e}");
}

#[test]
fn unwritable_output_leaves_nothing_behind() {
    let (_d, dir) = tmp();
    let missing = dir.join("no-such-dir").join("out.npy");
    let e = fails(&[
        "run",
        "power",
        "--n",
        "10",
        "--backend",
        "threads",
        "--output",
        path_str(&missing),
    ]);
    assert!(e.contains("cannot create the output"), "{e}");

    // A run that fails after the output was opened leaves neither the output
    // nor a temporary file.
    let out = dir.join("never.npy");
    let e = fails(&[
        "run",
        "mandelbrot",
        "--n",
        "100",
        "--param",
        "width=2",
        "--param",
        "height=2",
        "--backend",
        "threads",
        "--output",
        path_str(&out),
    ]);
    assert!(e.contains("past the limit"), "{e}");
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn existing_output_is_replaced_whole() {
    let (_d, dir) = tmp();
    let out = dir.join("o.bin");
    std::fs::write(&out, vec![0xffu8; 4096]).unwrap();
    ok(&[
        "run",
        "power",
        "--n",
        "3",
        "--backend",
        "threads",
        "--output",
        path_str(&out),
    ]);
    assert_eq!(u64s(&std::fs::read(&out).unwrap()), [0, 1, 65536]);
}

// ---- process backends -------------------------------------------------------

#[test]
fn every_format_round_trips_with_the_process_backends() {
    let (_d, dir) = tmp();
    let xs: Vec<u64> = (0..3000u64)
        .map(|i| i.wrapping_mul(0x2545_f491_4f6c_dd1d))
        .collect();
    let want: Vec<u64> = xs.iter().map(|&x| power(x, 5)).collect();
    let fs: Vec<f64> = (0..3000).map(|i| (i as f64 / 7.0).sin()).collect();
    let npy_in = dir.join("in.npy");
    std::fs::write(&npy_in, npy_bytes("<u8", "(3000,)", &le_u64(&xs))).unwrap();
    let raw_in = dir.join("in.bin");
    std::fs::write(&raw_in, le_u64(&xs)).unwrap();
    let txt_in = dir.join("in.txt");
    let text: String = xs.iter().map(|x| format!("{x}\n")).collect();
    std::fs::write(&txt_in, text).unwrap();
    let f_in = dir.join("f.npy");
    std::fs::write(&f_in, npy_bytes("<f8", "(3000,)", &le_f64(&fs))).unwrap();
    for backend in ["processes", "processes-copy"] {
        for (input, ext) in [(&npy_in, "npy"), (&raw_in, "bin"), (&txt_in, "txt")] {
            for out_ext in ["npy", "bin", "txt"] {
                let output = dir.join(format!("out-{backend}-{ext}.{out_ext}"));
                let mut args = vec![
                    "run",
                    "power",
                    "--input",
                    path_str(input),
                    "--output",
                    path_str(&output),
                    "--times",
                    "5",
                    "--backend",
                    backend,
                    "--workers",
                    "2",
                    "--chunk",
                    "333",
                ];
                if ext == "bin" {
                    args.extend(["--dtype", "u64"]);
                }
                let out = ok(&args);
                let got = match out_ext {
                    "npy" => u64s(&read_npy(&output, "<u8", 3000)),
                    "bin" => u64s(&std::fs::read(&output).unwrap()),
                    _ => std::fs::read_to_string(&output)
                        .unwrap()
                        .lines()
                        .map(|l| l.parse().unwrap())
                        .collect(),
                };
                assert_eq!(got, want, "{backend} {ext} -> {out_ext}");
                let sum = want.iter().fold(0u64, |a, &x| a.wrapping_add(x));
                assert_eq!(checksum_line(&out), sum);
            }
        }
        // f64 in place (saxpy) and a reduction (sum), against sequential.
        for kernel in ["saxpy", "sum", "histogram", "dot"] {
            let run = |b: &str| {
                let o = ok(&[
                    "run",
                    kernel,
                    "--input",
                    path_str(&f_in),
                    "--backend",
                    b,
                    "--json",
                ]);
                let v: serde_json::Value = serde_json::from_str(o.trim()).unwrap();
                (v["checksum"].as_u64(), v.get("result").cloned())
            };
            assert_eq!(run(backend), run("sequential"), "{kernel} on {backend}");
        }
    }
}

/// The summary's checksum is the same with and without `--output`, for a
/// generated `--n` input and for a file holding the same values, on every
/// backend; and it is the checksum of the output file.
#[test]
fn checksum_is_the_same_with_or_without_output_and_for_generated_or_file_input() {
    let (_d, dir) = tmp();
    let n = 10_007usize;
    let us: Vec<u64> = (0..n as u64).collect();
    let fs: Vec<f64> = (0..n).map(|i| i as f64).collect();
    let u_in = dir.join("u.npy");
    std::fs::write(&u_in, npy_bytes("<u8", &format!("({n},)"), &le_u64(&us))).unwrap();
    let f_in = dir.join("f.npy");
    std::fs::write(&f_in, npy_bytes("<f8", &format!("({n},)"), &le_f64(&fs))).unwrap();
    let n_s = n.to_string();
    let power_sum = us.iter().fold(0u64, |a, &x| a.wrapping_add(power(x, 3)));
    let backends = [
        "sequential",
        "threads",
        "rayon",
        "processes",
        "processes-copy",
    ];
    for (kernel, dtype, input) in [
        ("power", "u64", &u_in),
        ("power", "f64", &f_in),
        ("saxpy", "f64", &f_in),
        ("sum", "f64", &f_in),
        ("dot", "f64", &f_in),
        ("histogram", "f64", &f_in),
    ] {
        let mut seen = Vec::new();
        // Each kernel gets only the parameters it takes.
        let param = match kernel {
            "histogram" => "hi=5000",
            "power" => "times=3",
            "saxpy" => "a=2",
            _ => "",
        };
        for backend in backends {
            let mut base = vec!["run", kernel];
            if !param.is_empty() {
                base.extend(["--param", param]);
            }
            base.extend([
                "--backend",
                backend,
                "--workers",
                "2",
                "--chunk",
                "1000",
                "--json",
            ]);
            let sum_of = |extra: &[&str]| {
                let mut args = base.to_vec();
                args.extend(extra);
                let v: serde_json::Value = serde_json::from_str(ok(&args).trim()).unwrap();
                v["checksum"].as_u64().expect("a checksum")
            };
            let out = dir.join(format!("{kernel}-{dtype}-{backend}.npy"));
            let out_s = path_str(&out);
            let generated = sum_of(&["--n", &n_s, "--dtype", dtype]);
            let file = sum_of(&["--input", path_str(input)]);
            let generated_out = sum_of(&["--n", &n_s, "--dtype", dtype, "--output", out_s]);
            if !matches!(kernel, "sum" | "dot" | "histogram") {
                let descr = if dtype == "u64" { "<u8" } else { "<f8" };
                let bytes = read_npy(&out, descr, n);
                assert_eq!(
                    u64s(&bytes).iter().fold(0u64, |a, &x| a.wrapping_add(x)),
                    generated
                );
            }
            let file_out = sum_of(&["--input", path_str(input), "--output", out_s]);
            assert_eq!(
                [file, generated_out, file_out],
                [generated; 3],
                "{kernel} {dtype} {backend}: file, generated with output, file with output"
            );
            seen.push(generated);
        }
        assert!(
            seen.iter().all(|&s| s == seen[0]),
            "{kernel} {dtype}: {seen:?}"
        );
        if (kernel, dtype) == ("power", "u64") {
            assert_eq!(seen[0], power_sum);
        }
    }
}

/// Waits for `child` to exit, collecting the worker pids seen meanwhile;
/// kills it and fails after `secs` seconds.
fn wait_collecting(
    child: &mut std::process::Child,
    seen: &mut Vec<u32>,
    secs: u64,
) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        for c in children_of(child.id()) {
            if !seen.contains(&c) {
                seen.push(c);
            }
        }
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("shmproc did not finish within {secs} s");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Starts `shmproc args` and waits until it has `n` worker processes.
fn start_with_workers(args: &[&str], n: usize) -> (std::process::Child, Vec<u32>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_shmproc"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start shmproc");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let kids = children_of(child.id());
        if kids.len() >= n {
            return (child, kids);
        }
        if std::time::Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            let _ = child.wait();
            panic!("shmproc never had {n} workers");
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

fn signal(pid: u32, sig: &str) {
    let st = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(st.success(), "kill {sig} {pid}");
}

fn segments_of(pid: u32) -> Vec<String> {
    std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&format!("shmproc.{pid}.")))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_worker_killed_mid_run_does_not_change_the_result() {
    // With 64 or more squarings, x^(2^times) mod 2^64 is 0 for even x and 1
    // for odd x (the odd residues have exponent 2^62): the checksum of 0..n
    // is n/2 however long the run is made.
    let n = 640u64;
    let want = n / 2;
    let n_s = n.to_string();
    let args = [
        "run",
        "power",
        "--n",
        &n_s,
        "--times",
        "6000000",
        "--workers",
        "2",
        "--json",
    ];
    let (mut child, mut seen) = start_with_workers(&args, 2);
    let pid = child.id();
    // A worker is running a chunk once it has used CPU time: kill that one.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let busy = loop {
        if let Some(w) = children_of(pid).into_iter().find(|&w| cpu_ticks(w) >= 3) {
            break w;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before a worker was seen running"
        );
        assert!(std::time::Instant::now() < deadline, "no worker ever ran");
        std::thread::sleep(std::time::Duration::from_millis(2));
    };
    if !seen.contains(&busy) {
        seen.push(busy);
    }
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run ended before the kill"
    );
    signal(busy, "-KILL");
    let status = wait_collecting(&mut child, &mut seen, 120);
    let out = child.wait_with_output().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    assert!(status.success(), "{rest}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON summary");
    assert_eq!(v["checksum"].as_u64(), Some(want));
    assert!(seen.len() >= 3, "the killed worker was replaced: {seen:?}");
    for pid in seen {
        assert!(!alive(pid), "worker {pid} outlived the run");
    }
    assert!(segments_of(pid).is_empty());
}

/// `SHMPROC_SIMD` caps the vector instructions the kernels use; every cap
/// must give the same bits: the same checksum, the same reduction result
/// and the same output file, on the zero-copy process backend.
#[test]
fn every_simd_level_gives_the_same_results_end_to_end() {
    let (_dir, d) = tmp();
    let cases: &[&[&str]] = &[
        &["power", "--dtype", "u64"],
        &["power", "--dtype", "i16"],
        &["power", "--dtype", "f32"],
        &["power", "--dtype", "f64"],
        &["sum", "--dtype", "f64"],
        &["sum", "--dtype", "f32"],
        &["sum", "--dtype", "i8"],
        &["dot", "--dtype", "f64"],
        &["dot", "--dtype", "f32"],
        &["dot", "--dtype", "u32"],
        &["saxpy", "--dtype", "f64"],
        &["saxpy", "--dtype", "f32"],
        &[
            "histogram",
            "--dtype",
            "f64",
            "--param",
            "hi=100000",
            "--param",
            "bins=7",
        ],
        &["mandelbrot"],
    ];
    for case in cases {
        let mut outputs: Vec<(serde_json::Value, Vec<u8>)> = Vec::new();
        for level in ["portable", "avx2", "avx512"] {
            let out = d.join(format!("{}-{level}.npy", case.join("-")));
            let mut args = vec!["run"];
            args.extend_from_slice(case);
            args.extend(["--n", "100003", "--backend", "processes", "--json"]);
            let is_map = !["sum", "dot", "histogram"].contains(&case[0]);
            if is_map {
                args.extend(["--output", path_str(&out)]);
            }
            let o = Command::new(env!("CARGO_BIN_EXE_shmproc"))
                .args(&args)
                .env("SHMPROC_SIMD", level)
                .output()
                .unwrap();
            assert!(o.status.success(), "{args:?} at {level}: {}", stderr(&o));
            let mut v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            let obj = v.as_object_mut().unwrap();
            obj.remove("elapsed_s");
            obj.remove("items_per_s");
            let bytes = if is_map {
                std::fs::read(&out).unwrap()
            } else {
                Vec::new()
            };
            outputs.push((v, bytes));
        }
        for o in &outputs[1..] {
            assert_eq!(o.0, outputs[0].0, "{case:?}");
            assert!(o.1 == outputs[0].1, "{case:?}: output files differ");
        }
    }
}

/// A build without the `mpi` feature started by mpirun as one of several
/// ranks refuses to run the whole job on every rank.
#[cfg(not(feature = "mpi"))]
#[test]
fn a_build_without_mpi_refuses_to_run_as_one_of_several_ranks() {
    let o = Command::new(env!("CARGO_BIN_EXE_shmproc"))
        .args(["run", "power", "--n", "1000"])
        .env("OMPI_COMM_WORLD_SIZE", "2")
        .output()
        .expect("run the shmproc binary");
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("built without MPI") && err.contains("--features mpi"),
        "{err}"
    );
    // One rank is a plain run.
    let o = Command::new(env!("CARGO_BIN_EXE_shmproc"))
        .args(["run", "power", "--n", "1000", "-q"])
        .env("OMPI_COMM_WORLD_SIZE", "1")
        .output()
        .expect("run the shmproc binary");
    assert!(o.status.success(), "{}", stderr(&o));
}
