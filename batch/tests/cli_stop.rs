//! `shmproc run` never leaves a mess: every stop signal on every backend,
//! SIGKILL, outputs that are not regular files, inputs that are not regular
//! files or shrink during the run, options that conflict, exit codes.
//!
//! Runs are synchronised on what they print (`--progress` lines, which
//! appear only while chunks are running), never on sleeps; the small sleeps
//! below only pace polling loops that have deadlines.

mod cli_common;

use cli_common::{alive, children_of, cpu_ticks, listing, mkfifo, npy_header, shm_of};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_shmproc"))
}

fn tmp() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().expect("temp dir");
    let p = d.path().to_owned();
    (d, p)
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Waits (polling, with a deadline) until none of `pids` runs.
fn all_gone(pids: &[u32]) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids.iter().any(|&p| alive(p)) {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    true
}

fn kill(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) on a child this test started.
    let r = unsafe { libc::kill(pid as libc::pid_t, sig) };
    assert_eq!(r, 0, "kill {pid} {sig}");
}

/// A started run whose stderr is read line by line.
struct Running {
    child: Child,
    err: BufReader<std::process::ChildStderr>,
    seen: Vec<String>,
}

impl Running {
    fn start(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut cmd = bin();
        cmd.args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .stdin(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start shmproc");
        let err = BufReader::new(child.stderr.take().expect("stderr"));
        Running {
            child,
            err,
            seen: Vec::new(),
        }
    }

    /// Reads stderr until a `--progress` line: the run's chunks are running.
    fn wait_for_progress(&mut self) {
        loop {
            let mut line = String::new();
            let n = self.err.read_line(&mut line).expect("read stderr");
            assert!(
                n > 0,
                "the run ended before reporting progress: {:?}",
                self.seen
            );
            if line.contains("shmproc: progress:") {
                return;
            }
            self.seen.push(line);
        }
    }

    /// Waits for the exit (at most `limit`, else kills and fails); returns
    /// the exit code, the time it took and the rest of stderr.
    fn finish(mut self, limit: Duration) -> (Option<i32>, Duration, String) {
        let t0 = Instant::now();
        let status = loop {
            if let Some(st) = self.child.try_wait().expect("wait") {
                break st;
            }
            if t0.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("shmproc did not exit within {limit:?}");
            }
            std::thread::sleep(Duration::from_micros(500));
        };
        let took = t0.elapsed();
        let mut rest = String::new();
        self.err.read_to_string(&mut rest).expect("read stderr");
        let rest: String = rest
            .lines()
            .filter(|l| !l.contains("shmproc: progress:"))
            .map(|l| format!("{l}\n"))
            .collect();
        (status.code(), took, rest)
    }
}

/// A run of `backend` whose chunks would each run for minutes (power with
/// 4e9 squarings of each of 1000 elements per chunk), writing `out`.
fn endless<'a>(backend: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "run",
        "power",
        "--n",
        "2000",
        "--chunk",
        "1000",
        "--times",
        "4000000000",
        "--workers",
        "2",
        "--backend",
        backend,
        "--output",
        out,
        "--progress",
    ]
}

/// Stops a run of `backend` with `sig` while its chunks run, and checks the
/// promise: exit within 200 ms with 128 + N and one line, no worker, no
/// temporary output, no segment.
fn stops_cleanly(backend: &str, sig: libc::c_int, name: &str, env: &[(&str, &str)]) {
    let (_d, dir) = tmp();
    let out = dir.join("out.npy");
    let mut run = Running::start(&endless(backend, s(&out)), env);
    let pid = run.child.id();
    run.wait_for_progress();
    let workers = children_of(pid);
    if backend.starts_with("processes") {
        assert_eq!(workers.len(), 2, "two workers run chunks");
    }
    let before = shm_of(pid);
    kill(pid, sig);
    let (code, took, rest) = run.finish(Duration::from_secs(10));
    assert_eq!(code, Some(128 + sig), "{backend} {name}: {rest}");
    assert!(
        took <= Duration::from_millis(200),
        "{backend} {name}: exit took {took:?}"
    );
    assert_eq!(rest.lines().count(), 1, "one line on stderr: {rest:?}");
    assert!(rest.contains(&format!("stopped by {name}")), "{rest}");
    assert!(
        all_gone(&workers),
        "{backend} {name}: workers outlived the run"
    );
    assert_eq!(shm_of(pid), Vec::<String>::new(), "had {before:?}");
    assert_eq!(listing(&dir), Vec::<String>::new(), "{backend} {name}");
}

const SIGNALS: [(libc::c_int, &str); 4] = [
    (libc::SIGINT, "SIGINT"),
    (libc::SIGTERM, "SIGTERM"),
    (libc::SIGHUP, "SIGHUP"),
    (libc::SIGQUIT, "SIGQUIT"),
];

#[test]
fn every_stop_signal_ends_a_process_run_at_once_and_leaves_nothing() {
    for (sig, name) in SIGNALS {
        stops_cleanly("processes", sig, name, &[]);
    }
}

#[test]
fn every_stop_signal_ends_a_named_temporary_run_and_removes_it() {
    for (sig, name) in SIGNALS {
        stops_cleanly("processes", sig, name, &[("SHMPROC_NO_TMPFILE", "1")]);
    }
}

#[test]
fn a_signal_ends_every_backend_mid_chunk() {
    for backend in ["sequential", "threads", "rayon", "processes-copy"] {
        stops_cleanly(backend, libc::SIGTERM, "SIGTERM", &[]);
        stops_cleanly(backend, libc::SIGINT, "SIGINT", &[]);
    }
}

#[test]
fn a_run_without_output_of_any_size_stops_on_the_first_signal() {
    let mut run = Running::start(
        &[
            "run",
            "power",
            "--n",
            "1000000000000000000",
            "--workers",
            "2",
            "--progress",
        ],
        &[],
    );
    let pid = run.child.id();
    run.wait_for_progress();
    let workers = children_of(pid);
    kill(pid, libc::SIGINT);
    let (code, took, rest) = run.finish(Duration::from_secs(10));
    assert_eq!(code, Some(130), "{rest}");
    assert!(took <= Duration::from_millis(200), "took {took:?}");
    assert!(all_gone(&workers));
    assert_eq!(shm_of(pid), Vec::<String>::new());
}

#[test]
fn a_signal_stops_a_bench() {
    let run = Running::start(
        &[
            "bench",
            "--kernel",
            "power",
            "--n",
            "64",
            "--param",
            "times=4000000000",
            "--workers",
            "2",
            "--backend",
            "processes",
        ],
        &[],
    );
    let pid = run.child.id();
    // The bench prints nothing before its first row: wait until the
    // sequential reference has used CPU for a while (it is running a kernel).
    let deadline = Instant::now() + Duration::from_secs(30);
    while cpu_ticks(pid) < 10 {
        assert!(Instant::now() < deadline, "the bench never ran");
        std::thread::sleep(Duration::from_millis(5));
    }
    kill(pid, libc::SIGTERM);
    let (code, took, rest) = run.finish(Duration::from_secs(10));
    assert_eq!(code, Some(143), "{rest}");
    assert!(took <= Duration::from_millis(200), "took {took:?}");
    assert_eq!(shm_of(pid), Vec::<String>::new());
}

// ---- SIGKILL and `shmproc clean` ---------------------------------------------

#[test]
fn sigkill_leaves_no_unnamed_output_and_clean_removes_a_named_one() {
    for named in [false, true] {
        let (_d, dir) = tmp();
        let out = dir.join("out.npy");
        let env: &[(&str, &str)] = if named {
            &[("SHMPROC_NO_TMPFILE", "1")]
        } else {
            &[]
        };
        let mut run = Running::start(&endless("processes", s(&out)), env);
        let pid = run.child.id();
        run.wait_for_progress();
        let workers = children_of(pid);
        let during = listing(&dir);
        kill(pid, libc::SIGKILL);
        let (code, _, _) = run.finish(Duration::from_secs(10));
        assert_eq!(code, None, "killed");
        assert!(all_gone(&workers), "workers die with their parent");
        if !named {
            assert_eq!(during, Vec::<String>::new(), "the output has no name");
            assert_eq!(listing(&dir), Vec::<String>::new());
            assert_eq!(shm_of(pid), Vec::<String>::new());
            continue;
        }
        assert_eq!(during.len(), 1, "{during:?}");
        assert!(during[0].starts_with(&format!(".shmproc-out.{pid}.")));
        assert_eq!(listing(&dir), during, "SIGKILL leaves the named temporary");
        assert_eq!(shm_of(pid), during, "and its marker");
        let info = bin().arg("info").output().unwrap();
        let info = String::from_utf8_lossy(&info.stdout);
        assert!(
            info.contains(&during[0]) && info.contains("stale"),
            "{info}"
        );
        let dry = bin().args(["clean", "--dry-run"]).output().unwrap();
        assert!(String::from_utf8_lossy(&dry.stdout).contains("would remove temporary output"));
        assert_eq!(listing(&dir), during, "a dry run removes nothing");
        let clean = bin().arg("clean").output().unwrap();
        assert!(clean.status.success());
        let text = String::from_utf8_lossy(&clean.stdout);
        assert!(
            text.contains(&format!(
                "removed temporary output {}",
                s(&dir.join(&during[0]))
            )),
            "{text}"
        );
        assert_eq!(listing(&dir), Vec::<String>::new());
        assert_eq!(shm_of(pid), Vec::<String>::new());
    }
}

#[test]
fn clean_leaves_a_live_runs_temporary_output() {
    let (_d, dir) = tmp();
    let out = dir.join("out.npy");
    let mut run = Running::start(
        &endless("processes", s(&out)),
        &[("SHMPROC_NO_TMPFILE", "1")],
    );
    let pid = run.child.id();
    run.wait_for_progress();
    let during = listing(&dir);
    let clean = bin().arg("clean").output().unwrap();
    assert!(clean.status.success());
    assert_eq!(listing(&dir), during, "the run is alive: nothing removed");
    kill(pid, libc::SIGTERM);
    let (code, _, _) = run.finish(Duration::from_secs(10));
    assert_eq!(code, Some(143));
    assert_eq!(listing(&dir), Vec::<String>::new());
    assert_eq!(shm_of(pid), Vec::<String>::new());
}

// ---- outputs ------------------------------------------------------------------

fn run_output(o: &Output) -> (Option<i32>, String) {
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn outputs_that_are_not_regular_files_are_refused_and_left_as_they_were() {
    let (_d, dir) = tmp();
    let fifo = dir.join("fifo.npy");
    mkfifo(&fifo);
    let sub = dir.join("sub.npy");
    std::fs::create_dir(&sub).unwrap();
    let sock = dir.join("sock.npy");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let target = dir.join("target.npy");
    std::fs::write(&target, b"keep").unwrap();
    let link = dir.join("link.npy");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let before = listing(&dir);
    for (path, what) in [
        (&fifo, "is a FIFO"),
        (&sub, "is a directory"),
        (&sock, "is a socket"),
        (&link, "is a symbolic link"),
        (&PathBuf::from("/dev/null"), "is a character device"),
    ] {
        for backend in ["sequential", "processes"] {
            let o = bin()
                .args([
                    "run",
                    "power",
                    "--n",
                    "10",
                    "--backend",
                    backend,
                    "--output",
                    s(path),
                ])
                .output()
                .unwrap();
            let (code, err) = run_output(&o);
            assert_eq!(code, Some(1), "{path:?}: {err}");
            assert_eq!(err.lines().count(), 1, "{err}");
            assert!(
                err.starts_with("shmproc: error: --output") && err.contains(what),
                "{err}"
            );
        }
    }
    assert_eq!(listing(&dir), before);
    assert_eq!(std::fs::read(&target).unwrap(), b"keep");
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::symlink_metadata(&fifo)
        .unwrap()
        .file_type()
        .is_fifo());
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(std::fs::metadata("/dev/null")
        .unwrap()
        .file_type()
        .is_char_device());
}

// ---- inputs -------------------------------------------------------------------

#[test]
fn inputs_that_are_not_regular_files_are_refused_without_blocking() {
    let (_d, dir) = tmp();
    let fifo = dir.join("fifo.npy");
    mkfifo(&fifo);
    let text_fifo = dir.join("fifo.txt");
    mkfifo(&text_fifo);
    let sub = dir.join("adir.npy");
    std::fs::create_dir(&sub).unwrap();
    for (path, what) in [
        (&fifo, "is a FIFO"),
        (&text_fifo, "is a FIFO"),
        (&sub, "is a directory"),
        (&PathBuf::from("/dev/zero"), "is a character device"),
    ] {
        let mut child = bin()
            .args(["run", "sum", "--input", s(path)])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let code = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("--input {path:?} hangs");
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert_eq!(code, Some(1), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains(what) && err.contains("regular files only"),
            "{err}"
        );
    }
}

fn npy_u64(path: &Path, n: u64) {
    let mut bytes = npy_header("<u8", false, &format!("({n},)"));
    for i in 0..n {
        bytes.extend_from_slice(&i.to_le_bytes());
    }
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn an_input_that_shrinks_during_the_run_is_one_error_on_every_backend() {
    for backend in [
        "sequential",
        "threads",
        "rayon",
        "processes",
        "processes-copy",
    ] {
        let (_d, dir) = tmp();
        let input = dir.join("in.npy");
        npy_u64(&input, 4_000_000);
        let out = dir.join("out.npy");
        let mut run = Running::start(
            &[
                "run",
                "power",
                "--input",
                s(&input),
                "--times",
                "20000",
                "--chunk",
                "4096",
                "--workers",
                "2",
                "--backend",
                backend,
                "--output",
                s(&out),
                "--progress",
            ],
            &[],
        );
        let pid = run.child.id();
        run.wait_for_progress();
        let workers = children_of(pid);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&input)
            .unwrap()
            .set_len(4096)
            .unwrap();
        let (code, _, rest) = run.finish(Duration::from_secs(60));
        assert_eq!(code, Some(1), "{backend}: {rest}");
        assert_eq!(rest.lines().count(), 1, "{backend}: {rest:?}");
        assert!(
            rest.starts_with("shmproc: error: ") && rest.contains("shrank during the run"),
            "{backend}: {rest}"
        );
        assert_eq!(listing(&dir), ["in.npy"], "{backend}: nothing written");
        assert!(all_gone(&workers));
        assert_eq!(shm_of(pid), Vec::<String>::new());
    }
}

// ---- options and exit codes ----------------------------------------------------

#[test]
fn conflicting_or_ignored_options_are_usage_errors() {
    let (_d, dir) = tmp();
    let input = dir.join("in.npy");
    npy_u64(&input, 10);
    let inp = s(&input);
    for args in [
        vec!["run", "power", "--n", "10", "--param", "bins=3"],
        vec!["run", "sum", "--n", "10", "--times", "3"],
        vec!["run", "power", "--input", inp, "--n", "10"],
        vec![
            "run", "power", "--n", "10", "--times", "5", "--param", "times=3",
        ],
        vec![
            "run", "power", "--n", "10", "--param", "times=5", "--param", "times=3",
        ],
        vec!["run", "power", "--n", "10", "--workers", "0"],
        vec!["run", "power", "--n", "10", "--chunk", "0"],
        vec!["run", "power", "--n", "10", "--format", "npy"],
        vec!["run", "dot", "--n", "10", "--input2", inp],
        vec!["run", "sum", "--n", "10", "--input-format", "raw"],
        vec!["run", "power", "--n", "ten"],
        vec!["run", "nosuch"],
        vec!["bench", "--chunk", "0"],
        vec!["bench", "--repeat", "0"],
        vec!["frobnicate"],
    ] {
        let o = bin().args(&args).output().unwrap();
        let (code, err) = run_output(&o);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err:?}");
        assert!(err.starts_with("shmproc: error: "), "{err}");
    }
    assert_eq!(listing(&dir), ["in.npy"]);
}

#[test]
fn help_states_the_exit_codes() {
    let o = bin().arg("--help").output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    let help = String::from_utf8_lossy(&o.stdout);
    for part in [
        "0 success",
        "1 run-time error",
        "2 usage error",
        "128+N after signal N",
    ] {
        assert!(help.contains(part), "{part}: {help}");
    }
}

#[test]
fn nan_and_infinities_print_as_numpy_prints_them() {
    let (_d, dir) = tmp();
    for (lines, want) in [
        ("1.5\nnan\n", "nan"),
        ("1.5\ninf\n", "inf"),
        ("1.5\n-inf\n", "-inf"),
        ("inf\n-inf\n", "nan"),
    ] {
        let input = dir.join("x.txt");
        std::fs::write(&input, lines).unwrap();
        let o = bin()
            .args([
                "run",
                "sum",
                "--input",
                s(&input),
                "--backend",
                "sequential",
            ])
            .output()
            .unwrap();
        assert!(o.status.success());
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(text.contains(&format!("result:   [{want}]")), "{text}");
        let o = bin()
            .args([
                "run",
                "sum",
                "--input",
                s(&input),
                "--backend",
                "sequential",
                "--json",
            ])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("valid JSON");
        assert_eq!(v["result"][0], want, "{v}");
        let out = dir.join("o.txt");
        let o = bin()
            .args([
                "run",
                "power",
                "--times",
                "1",
                "--input",
                s(&input),
                "--output",
                s(&out),
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let written = std::fs::read_to_string(&out).unwrap();
        assert!(
            written.lines().all(|l| ["2.25", "nan", "inf"].contains(&l)),
            "{written}"
        );
    }
}

#[test]
fn progress_lines_report_items_rate_and_eta() {
    let mut run = Running::start(
        &[
            "run",
            "power",
            "--n",
            "4",
            "--chunk",
            "1",
            "--times",
            "4000000000",
            "--workers",
            "2",
            "--progress",
        ],
        &[],
    );
    let pid = run.child.id();
    let mut line = String::new();
    run.err.read_line(&mut line).unwrap();
    assert!(
        line.starts_with("shmproc: progress: 0/4 items (0.0%)")
            && line.contains("items/s")
            && line.contains("eta"),
        "{line}"
    );
    kill(pid, libc::SIGTERM);
    let (code, _, _) = run.finish(Duration::from_secs(10));
    assert_eq!(code, Some(143));
}
