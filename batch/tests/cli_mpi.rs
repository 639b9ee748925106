//! `mpirun -np R shmproc run ...` (feature `mpi`) end to end, on this
//! machine, with 2 and 3 ranks: results equal to the single-node run, input
//! and output files, the summary, and failures (a rank with a bad input, a
//! rank killed by every stop signal, or by SIGKILL) that end the job and leave
//! nothing behind. Needs Open MPI's `mpirun` on the PATH (`.ci/run` installs
//! it).
#![cfg(feature = "mpi")]

mod cli_common;

use cli_common::{alive, children_of, listing, npy_header};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_shmproc");

/// `mpirun` as the tests run it (root in CI, 2 vCPUs for 3 ranks). The
/// default binding is kept: a rank pinned to one core by it must still use
/// its workers' CPUs.
fn mpirun(ranks: usize) -> Command {
    let mut c = Command::new("mpirun");
    c.args(["--allow-run-as-root", "--oversubscribe", "-np"])
        .arg(ranks.to_string());
    c
}

fn run_mpi(ranks: usize, args: &[&str]) -> Output {
    mpirun(ranks)
        .arg(BIN)
        .arg("run")
        .args(args)
        .output()
        .expect("run mpirun")
}

fn run_plain(args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("run")
        .args(args)
        .output()
        .expect("run shmproc")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The JSON summary of a successful run (the last line of stdout).
fn summary(o: &Output, what: &str) -> serde_json::Value {
    assert!(
        o.status.success(),
        "{what} failed: {}\n{}",
        text(&o.stderr),
        text(&o.stdout)
    );
    let out = text(&o.stdout);
    let line = out
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("{what}: no JSON summary in {out:?}"));
    serde_json::from_str(line).expect("JSON summary")
}

/// Checksum and result, what must be equal across rank counts.
fn outcome(v: &serde_json::Value) -> (serde_json::Value, serde_json::Value) {
    (v["checksum"].clone(), v["result"].clone())
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// The shmproc entries of /dev/shm.
fn shm_entries() -> Vec<String> {
    listing(Path::new("/dev/shm"))
        .into_iter()
        .filter(|n| n.starts_with("shmproc") || n.starts_with(".shmproc"))
        .collect()
}

/// A .npy v1.0 file: header padded to 64 bytes, then `data`.
fn npy(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
    let mut f = npy_header(descr, false, shape);
    f.extend(data);
    f
}

/// Deterministic pseudo-random f64 values in [-1, 1).
fn values(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 11) as f64 / (1u64 << 52) as f64 - 1.0
        })
        .collect()
}

fn le_f64(v: &[f64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[test]
fn every_kernel_gives_the_single_node_result_on_2_and_3_ranks() {
    let dir = tempfile::tempdir().unwrap();
    let x = dir.path().join("x.npy");
    // Not a multiple of the chunk size, so the last chunk is short.
    std::fs::write(&x, npy("<f8", "(200003,)", &le_f64(&values(200_003, 1)))).unwrap();
    let rows = dir.path().join("rows.npy");
    std::fs::write(
        &rows,
        npy("<f8", "(1001, 37)", &le_f64(&values(1001 * 37, 2))),
    )
    .unwrap();
    let (x, rows) = (path_str(&x), path_str(&rows));
    let runs: Vec<Vec<&str>> = vec![
        vec!["power", "--n", "300007", "--times", "7"],
        vec!["power", "--input", x, "--times", "3"],
        vec!["sum", "--input", x],
        vec!["sum", "--n", "100003", "--dtype", "f32"],
        vec!["dot", "--input", x],
        vec!["saxpy", "--input", x],
        vec!["histogram", "--input", x],
        vec!["normalize_rows", "--input", rows],
        vec![
            "mandelbrot",
            "--param",
            "width=300",
            "--param",
            "height=211",
        ],
        vec!["monte_carlo_pi", "--n", "1000003"],
        vec!["count_primes", "--n", "1000003"],
        // A chunk size of its own: the same chunks on every rank count.
        vec!["sum", "--input", x, "--chunk", "777"],
    ];
    let mut kernels_seen = std::collections::BTreeSet::new();
    for args in &runs {
        kernels_seen.insert(args[0]);
        let mut a = args.clone();
        a.push("--json");
        let plain = outcome(&summary(&run_plain(&a), &format!("{a:?}")));
        for ranks in [2, 3] {
            for schedule in ["static", "dynamic"] {
                let mut m = a.clone();
                m.extend(["--schedule", schedule]);
                let s = summary(&run_mpi(ranks, &m), &format!("{ranks} ranks {m:?}"));
                assert_eq!(
                    outcome(&s),
                    plain,
                    "{ranks} ranks, {schedule}: {m:?} differs from the single-node run"
                );
                assert_eq!(s["ranks"], ranks);
            }
        }
    }
    // Every built-in kernel is among them.
    let listed = Command::new(BIN).arg("kernels").output().unwrap();
    for line in text(&listed.stdout).lines().filter(|l| !l.starts_with(' ')) {
        let name = line.split_whitespace().next().unwrap_or("");
        assert!(kernels_seen.contains(name), "kernel {name} is not tested");
    }
    assert!(shm_entries().is_empty(), "{:?}", shm_entries());
}

#[test]
fn input_and_output_files_are_those_of_a_single_node_run() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let x = d.join("x.npy");
    std::fs::write(&x, npy("<f8", "(123457,)", &le_f64(&values(123_457, 3)))).unwrap();
    let raw = d.join("x.bin");
    std::fs::write(&raw, le_f64(&values(50_001, 4))).unwrap();
    let txt = d.join("x.txt");
    let lines: String = (0..20_001u64)
        .map(|i| format!("{}\n", i * 7 % 1000))
        .collect();
    std::fs::write(&txt, lines).unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["power".into(), "--input".into(), path_str(&x).into()],
            "npy",
        ),
        (
            vec!["power".into(), "--input".into(), path_str(&x).into()],
            "bin",
        ),
        (
            vec!["power".into(), "--input".into(), path_str(&x).into()],
            "txt",
        ),
        (
            vec![
                "saxpy".into(),
                "--input".into(),
                path_str(&raw).into(),
                "--dtype".into(),
                "f64".into(),
            ],
            "npy",
        ),
        (
            vec!["power".into(), "--input".into(), path_str(&txt).into()],
            "npy",
        ),
        (
            vec!["histogram".into(), "--input".into(), path_str(&x).into()],
            "txt",
        ),
        (
            vec!["sum".into(), "--input".into(), path_str(&x).into()],
            "npy",
        ),
    ];
    for (i, (args, ext)) in cases.iter().enumerate() {
        let want = d.join(format!("want{i}.{ext}"));
        let mut a: Vec<&str> = args.iter().map(String::as_str).collect();
        a.extend(["--output", path_str(&want), "--quiet"]);
        let o = run_plain(&a);
        assert!(o.status.success(), "{a:?}: {}", text(&o.stderr));
        for ranks in [2, 3] {
            let got = d.join(format!("got{i}_{ranks}.{ext}"));
            let mut m: Vec<&str> = args.iter().map(String::as_str).collect();
            m.extend(["--output", path_str(&got), "--quiet"]);
            let o = run_mpi(ranks, &m);
            assert!(
                o.status.success(),
                "{ranks} ranks {m:?}: {}",
                text(&o.stderr)
            );
            assert_eq!(
                std::fs::read(&got).unwrap(),
                std::fs::read(&want).unwrap(),
                "{ranks} ranks: {m:?} wrote another file than the single-node run"
            );
        }
    }
    // Nothing but inputs and outputs: no temporary file is left.
    for name in listing(d) {
        assert!(
            name.starts_with("x.") || name.starts_with("want") || name.starts_with("got"),
            "left in the output folder: {name}"
        );
    }
    assert!(shm_entries().is_empty(), "{:?}", shm_entries());
}

#[test]
fn the_summary_names_ranks_nodes_and_workers() {
    let o = run_mpi(2, &["power", "--n", "100000"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(out.contains("ranks:    2 on 1 node ("), "{out}");
    // The node's CPUs divided between its ranks (at least one each).
    let cpus: usize = std::fs::read_to_string("/sys/devices/system/cpu/online")
        .ok()
        .and_then(|t| {
            t.trim()
                .split(',')
                .map(|p| match p.split_once('-') {
                    Some((a, b)) => Some(b.parse::<usize>().ok()? - a.parse::<usize>().ok()? + 1),
                    None => p.parse::<usize>().ok().map(|_| 1),
                })
                .sum()
        })
        .unwrap_or(2);
    let per_rank = (cpus / 2).max(1);
    let total = if cpus >= 2 { cpus } else { 2 };
    assert!(
        out.contains(&format!("workers:  {per_rank} per rank, {total} in all")),
        "{out}"
    );
    let s = summary(&run_mpi(3, &["power", "--n", "1000", "--json"]), "json");
    assert_eq!(
        (s["ranks"].as_u64(), s["nodes"].as_u64()),
        (Some(3), Some(1))
    );
}

#[test]
fn a_hybrid_rank_uses_every_worker_despite_the_default_binding() {
    // One rank bound to one core by Open MPI's default: its two workers must
    // still run at once. The kernel's CPU time over its elapsed time shows it:
    // about 2 on 2 free CPUs, at most 1 if both workers shared a core.
    let o = mpirun(1)
        .args(["bash", "-c"])
        .arg(format!(
            "{BIN} run power --n 20000000 --times 40 --workers 2 --json; grep Cpus_allowed_list /proc/self/status"
        ))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    let s: serde_json::Value =
        serde_json::from_str(out.lines().find(|l| l.starts_with('{')).expect("summary")).unwrap();
    assert_eq!(s["workers"], 2);
    // Whether mpirun bound the shell next to it to one core (so the rank
    // was too): then the rank must have widened its mask to run.
    let bound_one = out
        .lines()
        .any(|l| l.starts_with("Cpus_allowed_list") && !l.contains('-') && !l.contains(','));
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if bound_one && cpus >= 2 {
        let threads = run_plain(&[
            "power",
            "--n",
            "20000000",
            "--times",
            "40",
            "--workers",
            "1",
            "--json",
        ]);
        let one = summary(&threads, "one worker")["elapsed_s"]
            .as_f64()
            .unwrap();
        let two = s["elapsed_s"].as_f64().unwrap();
        // Two workers on one core take as long as one worker; on two CPUs
        // (even a busy machine's) clearly less.
        assert!(
            two < one * 0.85,
            "2 workers in {two} s, 1 worker in {one} s"
        );
    }
}

#[test]
fn a_failing_rank_ends_the_job_with_one_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let x = dir.path().join("x.npy");
    std::fs::write(&x, npy("<f8", "(1000,)", &le_f64(&values(1000, 5)))).unwrap();
    let out = dir.path().join("out.npy");
    let missing = dir.path().join("missing.npy");
    // MPMD: rank 0 and 2 read x.npy, rank 1 a file that is not there.
    let o = Command::new("mpirun")
        .args([
            "--allow-run-as-root",
            "--oversubscribe",
            "-np",
            "1",
            BIN,
            "run",
            "power",
            "--input",
        ])
        .arg(&x)
        .arg("--output")
        .arg(&out)
        .args([":", "-np", "1", BIN, "run", "power", "--input"])
        .arg(&missing)
        .arg("--output")
        .arg(&out)
        .args([":", "-np", "1", BIN, "run", "power", "--input"])
        .arg(&x)
        .arg("--output")
        .arg(&out)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = text(&o.stderr);
    let ours: Vec<&str> = err.lines().filter(|l| l.starts_with("shmproc")).collect();
    assert_eq!(ours.len(), 1, "{err}");
    assert!(
        ours[0].starts_with("shmproc: error: rank 1 failed: cannot open ")
            && ours[0].contains("missing.npy"),
        "{err}"
    );
    assert_eq!(listing(dir.path()), ["x.npy"]);
    assert!(shm_entries().is_empty(), "{:?}", shm_entries());

    // The same input missing everywhere is said once, for every rank.
    let o = run_mpi(2, &["sum", "--input", path_str(&missing)]);
    assert!(!o.status.success());
    let err = text(&o.stderr);
    let ours: Vec<&str> = err.lines().filter(|l| l.starts_with("shmproc")).collect();
    assert_eq!(ours.len(), 1, "{err}");
    assert!(ours[0].ends_with("(on every rank)"), "{err}");

    // Ranks that see different inputs (here: different sizes) refuse to
    // share out different chunks.
    let o = Command::new("mpirun")
        .args([
            "--allow-run-as-root",
            "--oversubscribe",
            "-np",
            "1",
            BIN,
            "run",
            "sum",
            "--n",
            "1000",
        ])
        .args([":", "-np", "1", BIN, "run", "sum", "--n", "2000"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = text(&o.stderr);
    let ours: Vec<&str> = err.lines().filter(|l| l.starts_with("shmproc")).collect();
    assert_eq!(ours.len(), 1, "{err}");
    assert!(
        ours[0].contains("the ranks found different inputs"),
        "{err}"
    );

    // A usage error is a usage error (exit 2) on every rank, said once.
    let o = run_mpi(2, &["power", "--workers", "0"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert_eq!(
        err.lines().filter(|l| l.starts_with("shmproc")).count(),
        1,
        "{err}"
    );
}

/// The pids of the ranks of a running job (children of `mpirun`), by rank.
fn ranks_of(mpirun: u32, ranks: usize) -> Option<Vec<u32>> {
    let mut found = vec![0u32; ranks];
    for pid in children_of(mpirun) {
        let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
        let rank = env
            .split(|&b| b == 0)
            .filter_map(|v| v.strip_prefix(b"OMPI_COMM_WORLD_RANK="))
            .find_map(|v| std::str::from_utf8(v).ok()?.parse::<usize>().ok());
        if let Some(r) = rank.filter(|&r| r < ranks) {
            found[r] = pid;
        }
    }
    found.iter().all(|&p| p != 0).then_some(found)
}

/// Polls `cond` until it holds or `limit` passes.
fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

/// Starts a long run with an output on 3 ranks, waits until every rank has
/// its pool's workers and the temporary output exists, sends `sig` to rank
/// `target` (or to mpirun itself), and checks that the job ends non-zero
/// and that no output, temporary file, segment, rank or worker is left.
fn kill_mid_run(sig: libc::c_int, target: Option<usize>) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.npy");
    let before = shm_entries();
    let mut job = mpirun(3)
        .args([
            BIN, "run", "power", "--n", "30000000", "--times", "3000", "--output",
        ])
        .arg(&out)
        .args(["--schedule", "static"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mpid = job.id();
    let mut ranks = Vec::new();
    let mut workers = Vec::new();
    let started = wait_for(Duration::from_secs(60), || {
        let Some(r) = ranks_of(mpid, 3) else {
            return false;
        };
        // Each rank's pool is up (it has worker children) and the
        // temporary output exists.
        let w: Vec<Vec<u32>> = r.iter().map(|&p| children_of(p)).collect();
        let temp = listing(dir.path())
            .iter()
            .any(|n| n.starts_with(".shmproc-out."));
        if temp && w.iter().all(|w| !w.is_empty()) {
            ranks = r;
            workers = w.concat();
            true
        } else {
            false
        }
    });
    assert!(started, "the job did not start its pools");
    let victim = target.map_or(mpid, |r| ranks[r]);
    // SAFETY: kill(2) of a process this test started (a rank, or mpirun).
    unsafe {
        libc::kill(victim as libc::pid_t, sig);
    }
    let ended = wait_for(Duration::from_secs(60), || {
        matches!(job.try_wait(), Ok(Some(_)))
    });
    if !ended {
        let _ = job.kill();
    }
    let status = job.wait().unwrap();
    assert!(
        ended,
        "the job did not end after signal {sig} to {target:?}"
    );
    assert!(
        !status.success(),
        "signal {sig} to {target:?}: the job succeeded"
    );
    let mut err = String::new();
    if let Some(mut e) = job.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut err);
    }
    for p in ranks.iter().chain(&workers) {
        assert!(
            wait_for(Duration::from_secs(10), || !alive(*p)),
            "process {p} is left after signal {sig} to {target:?}\n{err}"
        );
    }
    assert_eq!(listing(dir.path()), Vec::<String>::new(), "{err}");
    assert_eq!(shm_entries(), before, "{err}");
}

/// Bytes of `path` that process `pid` maps (from /proc/<pid>/maps).
fn mapped_bytes(pid: u32, path: &Path) -> u64 {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    let want = path.to_str().unwrap_or("");
    maps.lines()
        .filter(|l| l.ends_with(want))
        .filter_map(|l| {
            let (a, b) = l.split_whitespace().next()?.split_once('-')?;
            Some(u64::from_str_radix(b, 16).ok()? - u64::from_str_radix(a, 16).ok()?)
        })
        .sum()
}

#[test]
fn each_rank_maps_only_its_part_of_the_input() {
    let dir = tempfile::tempdir().unwrap();
    let x = dir.path().join("x.bin");
    let n = 8_000_000usize; // 64 MB of u64
    let bytes: Vec<u8> = (0..n as u64).flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(&x, &bytes).unwrap();
    let x = std::fs::canonicalize(&x).unwrap();
    let size = bytes.len() as u64;
    drop(bytes);
    let mut job = mpirun(2)
        .args([
            BIN,
            "run",
            "power",
            "--times",
            "4000",
            "--schedule",
            "static",
            "--input",
        ])
        .arg(&x)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mpid = job.id();
    // Until every rank and one worker of each maps a part of the file.
    let mut seen: Vec<(u32, u64)> = Vec::new();
    let found = wait_for(Duration::from_secs(60), || {
        let Some(ranks) = ranks_of(mpid, 2) else {
            return false;
        };
        seen.clear();
        for r in ranks {
            seen.push((r, mapped_bytes(r, &x)));
            if let Some(&w) = children_of(r).iter().find(|&&w| mapped_bytes(w, &x) > 0) {
                seen.push((w, mapped_bytes(w, &x)));
            }
        }
        seen.len() == 4 && seen.iter().all(|&(_, b)| b > 0)
    });
    // SAFETY: kill(2) of the mpirun this test started: it stops the ranks.
    unsafe {
        libc::kill(mpid as libc::pid_t, libc::SIGTERM);
    }
    let _ = job.wait();
    assert!(found, "ranks and workers did not map the input: {seen:?}");
    for (pid, b) in &seen {
        // Half the file, and a page more at most.
        assert!(
            *b <= size / 2 + 8192,
            "process {pid} maps {b} bytes of a {size}-byte input shared by 2 ranks"
        );
    }
    let ranks_gone = wait_for(Duration::from_secs(10), || {
        seen.iter().all(|&(p, _)| !alive(p))
    });
    assert!(ranks_gone, "processes left: {seen:?}");
}

#[test]
fn a_rank_killed_mid_run_ends_the_job_and_leaves_nothing() {
    kill_mid_run(libc::SIGKILL, Some(1));
    kill_mid_run(libc::SIGKILL, Some(0));
}

#[test]
fn every_stop_signal_to_a_rank_or_to_mpirun_leaves_nothing() {
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT] {
        kill_mid_run(sig, Some(2));
    }
    kill_mid_run(libc::SIGINT, None);
    kill_mid_run(libc::SIGTERM, None);
}

#[test]
fn mpi_basics_example_runs_on_3_ranks() {
    // target/<profile>/deps/<this test> -> target/<profile>/examples/mpi_basics
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap().to_owned();
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev".to_owned(),
        Some(other) => other.to_owned(),
    };
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let built = Command::new(cargo)
        .args([
            "build",
            "-p",
            "shmproc-batch",
            "--features",
            "mpi",
            "--profile",
        ])
        .arg(&profile)
        .args(["--example", "mpi_basics"])
        .status()
        .unwrap();
    assert!(built.success(), "building the mpi_basics example");
    let o = mpirun(3)
        .arg(profile_dir.join("examples").join("mpi_basics"))
        .output()
        .unwrap();
    let out = text(&o.stdout);
    assert!(o.status.success(), "{}\n{out}", text(&o.stderr));
    for want in [
        "rank 1 received {'a': 7, 'b': 3.14} from rank 0",
        "broadcast: every rank has n = 3000000, times = 4",
        "scatter: rank 0 takes chunks 0..22, rank 1 22..43, rank 2 43..64",
        "gather: 3 partial checksums",
        "reduce: primes below 3000000 = 216816, as one pool counts them",
        "checksum equals the single-pool run: true",
    ] {
        assert!(out.contains(want), "missing {want:?} in\n{out}");
    }
}

/// Seconds in a `times` line of bash (`0m1.255s 0m0.041s`): user + sys.
fn times_line(line: &str) -> Option<f64> {
    let secs = |t: &str| -> Option<f64> {
        let (m, s) = t.strip_suffix('s')?.split_once('m')?;
        Some(m.parse::<f64>().ok()? * 60.0 + s.parse::<f64>().ok()?)
    };
    let mut it = line.split_whitespace();
    Some(secs(it.next()?)? + secs(it.next()?)?)
}

#[test]
fn a_waiting_rank_sleeps_instead_of_spinning() {
    // Static blocks of mandelbrot on 3 ranks: the middle rank has the set
    // and works several times longer than the others, which wait for it in
    // the agreement. Waiting ranks that spun in MPI's progress loop would
    // use as much CPU as the middle one.
    let o = mpirun(3)
        .args(["bash", "-c"])
        .arg(format!(
            "{BIN} run mandelbrot --param width=3000 --param height=2000 --backend sequential \
             --schedule static -q && echo rank $OMPI_COMM_WORLD_RANK && times"
        ))
        .output()
        .unwrap();
    let out = text(&o.stdout);
    assert!(o.status.success(), "{}\n{out}", text(&o.stderr));
    let mut cpu = [0.0f64; 3];
    let lines: Vec<&str> = out.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        if let Some(r) = l
            .strip_prefix("rank ")
            .and_then(|r| r.parse::<usize>().ok())
        {
            // `times`: the shell's own line, then its children's (the rank).
            cpu[r] = lines
                .get(i + 2)
                .and_then(|l| times_line(l))
                .expect("times output");
        }
    }
    let waiting = cpu[0].max(cpu[2]);
    assert!(
        waiting < 0.5 * cpu[1],
        "CPU seconds by rank: {cpu:?}: the waiting ranks used more than half the working one's"
    );
}

#[test]
fn a_binding_asked_for_is_kept_with_a_warning() {
    let o = Command::new("mpirun")
        .args(["--allow-run-as-root", "--bind-to", "core", "-np", "1"])
        .args(["bash", "-c"])
        .arg(format!(
            "{BIN} run power --n 100000 --workers 2 && grep Cpus_allowed_list /proc/self/status"
        ))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus >= 2 {
        assert!(
            err.contains("a rank is bound to fewer CPUs than its workers"),
            "{err}"
        );
    }
}
