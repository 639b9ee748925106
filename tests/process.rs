//! Real multi-process tests of the Process layer: spawn, fork and the fork
//! server, exit codes, signals, timeouts, names, orphans, a forgotten `init()`.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::{assert_no_leftovers, run_with_limit, wait_gone, watchdog, TempDir};
use serde::{Deserialize, Serialize};
use shmproc::process::spawn::{global_server_pid, ChildOptions, Entry, ExitStatus, ForkServer};
use shmproc::process::{
    active_children, current_process, parent_process, Process, ProcessRun, StartMethod,
};
use shmproc::Error;

const LIMIT: Duration = Duration::from_secs(60);
const ROLE_ENV: &str = "SHMPROC_TEST_ROLE";

// ---- targets ------------------------------------------------------------------

/// Writes "name pid parent_name parent_pid" to `path`.
fn report_identity(path: String) {
    let me = current_process();
    let parent = parent_process().expect("a child has a parent");
    let line = format!(
        "{} {} {} {}",
        me.name(),
        me.pid(),
        parent.name(),
        parent.pid()
    );
    std::fs::write(path, line).expect("write report");
}

fn exit_with(code: i32) {
    std::process::exit(code);
}

fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

fn panic_with(msg: String) {
    panic!("{msg}");
}

fn write_sum((path, a, b): (String, u64, u64)) {
    std::fs::write(path, (a + b).to_string()).expect("write");
}

/// Starts a grandchild (default name) that reports its identity, joins it.
fn spawn_grandchild(path: String) {
    let p = Process::new(report_identity, path);
    p.start().expect("grandchild start");
    assert_eq!(p.join().expect("grandchild join"), 0);
}

#[derive(Serialize, Deserialize)]
struct Counter {
    path: String,
    start: u32,
}

impl ProcessRun for Counter {
    fn run(&mut self) {
        self.start += 1;
        let line = format!("{} {}", self.start, current_process().name());
        std::fs::write(&self.path, line).expect("write");
    }
}

/// Writes the real parent pid (the fork server's, for a served child), then
/// exits with `code`.
fn report_ppid_and_exit((path, code): (String, i32)) {
    std::fs::write(path, std::os::unix::process::parent_id().to_string()).expect("write");
    std::process::exit(code);
}

/// Raw boot functions for `ForkServer::start_child`.
fn boot_code(payload: &[u8]) -> i32 {
    payload.first().map_or(-1, |&b| i32::from(b))
}

fn boot_sleep(_: &[u8]) -> i32 {
    std::thread::sleep(Duration::from_secs(120));
    0
}

/// The parent pid of `pid`, from /proc.
fn ppid_of(pid: u32) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read stat");
    let (_, rest) = stat.rsplit_once(')').expect("stat format");
    rest.split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("ppid in stat")
}

fn kill9(pid: u32) {
    let st = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(st.success(), "kill -9 {pid}");
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

// ---- basics -------------------------------------------------------------------

#[test]
fn spawn_runs_target_with_args() {
    let _w = watchdog("spawn_runs_target_with_args", LIMIT);
    let dir = TempDir::new("args");
    let out = dir.file("sum");
    let p = Process::new(write_sum, (out.clone(), 40u64, 2u64));
    assert_eq!(p.start_method(), StartMethod::Spawn);
    assert_eq!(p.exitcode(), None);
    assert!(!p.is_alive());
    p.start().expect("start");
    assert_eq!(p.join().expect("join"), 0);
    assert_eq!(p.exitcode(), Some(0));
    assert!(!p.is_alive());
    assert_eq!(read(&out), "42");
    assert_no_leftovers(&[p.pid().expect("pid")]);
}

#[test]
fn exit_code_travels() {
    let _w = watchdog("exit_code_travels", LIMIT);
    let p = Process::new(exit_with, 7);
    p.start().expect("start");
    assert_eq!(p.join().expect("join"), 7);
    assert_no_leftovers(&[p.pid().expect("pid")]);
}

#[test]
fn child_knows_its_name_pid_and_parent() {
    let _w = watchdog("child_knows_its_name_pid_and_parent", LIMIT);
    let dir = TempDir::new("ident");
    let out = dir.file("id");
    let p = Process::builder(report_identity, out.clone())
        .name("reporter")
        .build();
    p.start().expect("start");
    assert_eq!(p.join().expect("join"), 0);
    let pid = p.pid().expect("pid");
    assert_eq!(
        read(&out),
        format!("reporter {pid} MainProcess {}", std::process::id())
    );
    assert_no_leftovers(&[pid]);
}

#[test]
fn default_names_are_numbered() {
    let ps: Vec<Process> = (0..3).map(|_| Process::new(sleep_ms, 0)).collect();
    let nums: Vec<u32> = ps
        .iter()
        .map(|p| {
            p.name()
                .strip_prefix("Process-")
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("bad default name {}", p.name()))
        })
        .collect();
    // Other tests in this binary number processes too, so only check order.
    assert!(
        nums[0] >= 1 && nums[1] > nums[0] && nums[2] > nums[1],
        "{nums:?}"
    );
}

#[test]
fn grandchild_is_named_under_its_parent() {
    let _w = watchdog("grandchild_is_named_under_its_parent", LIMIT);
    let dir = TempDir::new("grand");
    let out = dir.file("id");
    let p = Process::new(spawn_grandchild, out.clone());
    p.start().expect("start");
    assert_eq!(p.join().expect("join"), 0);
    let report = read(&out);
    let f: Vec<&str> = report.split(' ').collect();
    let n = p.name().strip_prefix("Process-").expect("default name");
    assert_eq!(f[0], format!("Process-{n}:1"), "{report}");
    assert_eq!(f[2], p.name(), "{report}");
    assert_eq!(f[3], p.pid().expect("pid").to_string(), "{report}");
    assert_no_leftovers(&[p.pid().expect("pid")]);
}

#[test]
fn run_trait_object_travels() {
    let _w = watchdog("run_trait_object_travels", LIMIT);
    let dir = TempDir::new("run");
    let out = dir.file("run");
    let p = Process::from_run(Counter {
        path: out.clone(),
        start: 41,
    });
    p.start().expect("start");
    assert_eq!(p.join().expect("join"), 0);
    assert_eq!(read(&out), format!("42 {}", p.name()));
    assert_no_leftovers(&[p.pid().expect("pid")]);
}

#[test]
fn lifecycle_errors() {
    let _w = watchdog("lifecycle_errors", LIMIT);
    let p = Process::new(sleep_ms, 0);
    assert!(matches!(p.join(), Err(Error::InvalidState(_))));
    assert!(matches!(p.terminate(), Err(Error::InvalidState(_))));
    assert_eq!(p.pid(), None);
    p.start().expect("start");
    assert!(matches!(p.start(), Err(Error::InvalidState(_))));
    assert_eq!(p.join().expect("join"), 0);
    // Signalling a joined process is a no-op, like Python.
    p.terminate().expect("terminate after join");
    assert_eq!(p.exitcode(), Some(0));
    assert_no_leftovers(&[p.pid().expect("pid")]);
}

// ---- signals and timeouts ---------------------------------------------------------

#[test]
fn kill_gives_minus_9() {
    let _w = watchdog("kill_gives_minus_9", LIMIT);
    let p = Process::new(sleep_ms, 60_000);
    p.start().expect("start");
    assert!(p.is_alive());
    p.kill().expect("kill");
    assert_eq!(p.join().expect("join"), -9);
    assert_eq!(p.exitcode(), Some(-9));
    assert!(!p.is_alive());
    assert_no_leftovers(&[p.pid().expect("pid")]);
}

#[test]
fn terminate_gives_minus_15() {
    let _w = watchdog("terminate_gives_minus_15", LIMIT);
    let p = Process::new(sleep_ms, 60_000);
    p.start().expect("start");
    p.terminate().expect("terminate");
    assert_eq!(p.join().expect("join"), -15);
    assert_no_leftovers(&[p.pid().expect("pid")]);
}

#[test]
fn join_timeout_returns_none_while_running() {
    let _w = watchdog("join_timeout_returns_none_while_running", LIMIT);
    let p = Process::new(sleep_ms, 60_000);
    p.start().expect("start");
    assert!(matches!(
        p.join_timeout(Duration::from_millis(100)),
        Err(Error::Timeout)
    ));
    assert_eq!(p.exitcode(), None);
    assert!(p.is_alive());
    p.kill().expect("kill");
    assert_eq!(
        p.join_timeout(Duration::from_secs(30))
            .expect("join_timeout"),
        -9
    );
    assert_no_leftovers(&[p.pid().expect("pid")]);
}

// ---- fork -------------------------------------------------------------------------

#[test]
fn fork_refused_in_multithreaded_parent() {
    let _w = watchdog("fork_refused_in_multithreaded_parent", LIMIT);
    // The test harness runs this on a thread of its own (and the watchdog is
    // another), so the process has several threads.
    let p = Process::builder(sleep_ms, 0)
        .start_method(StartMethod::Fork)
        .build();
    match p.start() {
        Err(Error::ForkUnsafe { threads }) => assert!(threads > 1),
        other => panic!("expected ForkUnsafe, got {other:?}"),
    }
    assert_eq!(p.pid(), None);
}

#[test]
fn forced_fork_runs_target() {
    let _w = watchdog("forced_fork_runs_target", LIMIT);
    let dir = TempDir::new("fork");
    let out = dir.file("id");
    let p = Process::builder(report_identity, out.clone())
        .start_method(StartMethod::Fork)
        .force_fork(true)
        .name("forked")
        .build();
    p.start().expect("start");
    assert_eq!(p.join().expect("join"), 0);
    let pid = p.pid().expect("pid");
    assert_eq!(
        read(&out),
        format!("forked {pid} MainProcess {}", std::process::id())
    );

    let p = Process::builder(exit_with, 3)
        .start_method(StartMethod::Fork)
        .force_fork(true)
        .build();
    p.start().expect("start");
    assert_eq!(p.join().expect("join"), 3);

    let p = Process::builder(sleep_ms, 60_000)
        .start_method(StartMethod::Fork)
        .force_fork(true)
        .build();
    p.start().expect("start");
    p.kill().expect("kill");
    assert_eq!(p.join().expect("join"), -9);
    assert_no_leftovers(&[pid, p.pid().expect("pid")]);
}

// ---- fork server ------------------------------------------------------------------

fn served<F, A, R>(target: F, args: A) -> Process
where
    F: Fn(A) -> R + Copy + 'static,
    A: Serialize + serde::de::DeserializeOwned,
{
    Process::builder(target, args)
        .start_method(StartMethod::ForkServer)
        .build()
}

#[test]
fn fork_server_exit_codes_signals_and_timeouts() {
    let _w = watchdog("fork_server_exit_codes_signals_and_timeouts", LIMIT);
    let dir = TempDir::new("fsrv");
    let me = std::process::id();
    let mut pids = Vec::new();

    let out = dir.file("id");
    let p = Process::builder(report_identity, out.clone())
        .start_method(StartMethod::ForkServer)
        .name("served")
        .build();
    assert_eq!(p.start_method(), StartMethod::ForkServer);
    p.start().expect("start");
    assert_eq!(p.join().expect("join"), 0);
    let pid = p.pid().expect("pid");
    // The logical parent is this process, though the server forked it.
    assert_eq!(read(&out), format!("served {pid} MainProcess {me}"));
    pids.push(pid);

    let out = dir.file("ppid");
    let p = served(report_ppid_and_exit, (out.clone(), 7));
    p.start().expect("start");
    assert_eq!(p.join().expect("join"), 7);
    assert_eq!(p.exitcode(), Some(7));
    let server = global_server_pid().expect("the global server runs");
    assert_ne!(server, me);
    assert_eq!(read(&out), server.to_string(), "forked by the server");
    assert!(
        !active_children().iter().any(|c| c.pid() == server),
        "the server is not an active child"
    );
    pids.push(p.pid().expect("pid"));

    let p = served(panic_with, "served-panic-marker".to_string());
    p.start().expect("start");
    assert_eq!(p.join().expect("join"), 1);
    pids.push(p.pid().expect("pid"));

    let p = served(sleep_ms, 60_000);
    p.start().expect("start");
    assert!(p.is_alive());
    assert!(matches!(
        p.join_timeout(Duration::from_millis(100)),
        Err(Error::Timeout)
    ));
    assert_eq!(p.exitcode(), None);
    p.terminate().expect("terminate");
    assert_eq!(p.join().expect("join"), -15);
    assert!(!p.is_alive());
    // Signals after the status is known are no-ops.
    p.kill().expect("kill after join");
    pids.push(p.pid().expect("pid"));

    let p = served(sleep_ms, 60_000);
    p.start().expect("start");
    p.kill().expect("kill");
    assert_eq!(p.join_timeout(Duration::from_secs(30)).expect("join"), -9);
    pids.push(p.pid().expect("pid"));

    assert_no_leftovers(&pids);
}

#[test]
fn fork_server_serves_several_threads_at_once() {
    let _w = watchdog("fork_server_serves_several_threads_at_once", LIMIT);
    let dir = Arc::new(TempDir::new("fsrv-threads"));
    let (threads, each) = (4, 6);
    let go = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (dir, go) = (Arc::clone(&dir), Arc::clone(&go));
            std::thread::spawn(move || {
                go.wait();
                let ps: Vec<(Process, String, i32)> = (0..each)
                    .map(|i| {
                        let out = dir.file(&format!("ppid-{t}-{i}"));
                        let code = (t * 10 + i) as i32;
                        let p = served(report_ppid_and_exit, (out.clone(), code));
                        p.start().expect("start");
                        (p, out, code)
                    })
                    .collect();
                ps.into_iter()
                    .map(|(p, out, code)| {
                        assert_eq!(p.join().expect("join"), code);
                        (p.pid().expect("pid"), read(&out))
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.join().expect("thread"));
    }
    assert_eq!(all.len(), threads * each);
    let parents: std::collections::HashSet<&String> = all.iter().map(|(_, pp)| pp).collect();
    // One server, unless another test killed... none does in this process.
    assert_eq!(parents.len(), 1, "{parents:?}");
    assert!(!parents.contains(&std::process::id().to_string()));
    assert_no_leftovers(&all.iter().map(|(p, _)| *p).collect::<Vec<_>>());
}

#[test]
fn fork_server_children_attach_and_decode_like_spawned_ones() {
    let _w = watchdog("fork server attach", LIMIT);
    dropped_handles_after_start(StartMethod::ForkServer);
}

#[test]
fn fork_from_here_refused_in_multithreaded_process() {
    let _w = watchdog("fork_from_here_refused_in_multithreaded_process", LIMIT);
    match ForkServer::fork_from_here(false) {
        Err(Error::ForkUnsafe { threads }) => assert!(threads > 1),
        other => panic!("expected ForkUnsafe, got {other:?}"),
    }
}

#[test]
fn fork_from_here_serves_a_thread_started_afterwards() {
    let _w = watchdog("fork_from_here_serves_a_thread_started_afterwards", LIMIT);
    // Forced: a test binary is multithreaded already (the single-threaded
    // case runs in the `fork_server_threads` example below).
    let server = ForkServer::fork_from_here(true).expect("fork the server");
    let spid = server.pid();
    assert!(server.is_alive());
    assert!(!active_children().iter().any(|c| c.pid() == spid));
    let t = std::thread::spawn(move || {
        let mut pids = Vec::new();
        for i in 0..50u8 {
            let c = server
                .start_child(Entry::new(boot_code), vec![i], &ChildOptions::new())
                .expect("start");
            assert_eq!(c.wait().expect("wait"), ExitStatus::Exited(i32::from(i)));
            assert_eq!(
                c.try_wait().expect("try_wait"),
                Some(ExitStatus::Exited(i32::from(i)))
            );
            pids.push(c.pid());
        }
        let c = server
            .start_child(Entry::new(boot_sleep), vec![], &ChildOptions::new())
            .expect("start");
        assert_eq!(ppid_of(c.pid()), spid);
        assert_eq!(c.try_wait().expect("try_wait"), None);
        c.terminate().expect("terminate");
        assert_eq!(c.wait().expect("wait"), ExitStatus::Signaled(15));
        pids.push(c.pid());

        // The server SIGKILLed: its child dies, its status is reported as
        // SIGKILL, and the server cannot be restarted.
        let c = server
            .start_child(Entry::new(boot_sleep), vec![], &ChildOptions::new())
            .expect("start");
        kill9(spid);
        assert_eq!(
            c.wait_timeout(Duration::from_secs(30)).expect("wait"),
            ExitStatus::Signaled(9)
        );
        assert!(wait_gone(c.pid(), Duration::from_secs(5)));
        pids.push(c.pid());
        assert!(!server.is_alive());
        match server.start_child(Entry::new(boot_code), vec![0], &ChildOptions::new()) {
            Err(Error::InvalidState(m)) => {
                assert!(
                    m.contains("fork_from_here") && m.contains("signal 9"),
                    "{m}"
                )
            }
            other => panic!("expected InvalidState, got {other:?}"),
        }
        pids
    });
    let pids = t.join().expect("thread");
    assert_no_leftovers(&pids);
    assert!(
        wait_gone(spid, Duration::from_secs(5)),
        "server {spid} left"
    );
}

#[test]
fn fork_from_here_in_a_single_threaded_program() {
    let _w = watchdog("fork_from_here_in_a_single_threaded_program", LIMIT);
    let out = run_with_limit(
        &mut Command::new(common::example("fork_server_threads")),
        LIMIT,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("served 50 children"), "{stdout}\n{stderr}");
}

/// Helper: kills its own global fork server under a running child.
#[test]
#[ignore = "helper run by fork_server_killed_is_replaced"]
fn helper_fork_server_killed() {
    if !role_is("fs-kill") {
        return;
    }
    let p = served(sleep_ms, 120_000);
    p.start().expect("start");
    let child = p.pid().expect("pid");
    let server = global_server_pid().expect("server");
    assert_eq!(ppid_of(child), server);
    kill9(server);
    // Its status died with the server: reported as SIGKILL.
    assert_eq!(p.join().expect("join"), -9);
    assert!(
        wait_gone(child, Duration::from_secs(5)),
        "child outlived its server"
    );
    assert!(
        wait_gone(server, Duration::from_secs(5)),
        "server not reaped"
    );

    let dir = TempDir::new("fs-kill");
    let out = dir.file("ppid");
    let q = served(report_ppid_and_exit, (out.clone(), 5));
    q.start().expect("start after the server died");
    assert_eq!(q.join().expect("join"), 5);
    let new_server = global_server_pid().expect("a new server");
    assert_ne!(new_server, server);
    assert_eq!(read(&out), new_server.to_string());
    assert_no_leftovers(&[child, q.pid().expect("pid")]);
    println!("FS-KILL-OK {new_server}");
}

#[test]
fn fork_server_killed_is_replaced() {
    let _w = watchdog("fork_server_killed_is_replaced", LIMIT);
    let out = run_with_limit(&mut helper("fs-kill", "helper_fork_server_killed"), LIMIT);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let new_server: u32 = stdout
        .lines()
        .find_map(|l| l.split_once("FS-KILL-OK ").map(|(_, p)| p))
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no FS-KILL-OK in {stdout}\n{stderr}"));
    // Stopped and reaped by the helper at exit.
    assert!(wait_gone(new_server, Duration::from_secs(5)));
}

// ---- helpers run as subprocesses ----------------------------------------------------

fn helper(role: &str, test: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().expect("current_exe"));
    cmd.args([
        "--exact",
        test,
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(ROLE_ENV, role);
    cmd
}

fn role_is(role: &str) -> bool {
    std::env::var(ROLE_ENV).is_ok_and(|r| r == role)
}

/// Helper: a spawned (or forced-fork) child panics; prints its exit code.
#[test]
#[ignore = "helper run by panicking_target_gives_1_and_message_on_stderr"]
fn helper_panicking_child() {
    for (role, method) in [
        ("panic-spawn", StartMethod::Spawn),
        ("panic-fork", StartMethod::Fork),
        ("panic-forkserver", StartMethod::ForkServer),
    ] {
        if role_is(role) {
            let p = Process::builder(panic_with, "boom-marker-4242".to_string())
                .start_method(method)
                .force_fork(true)
                .build();
            p.start().expect("start");
            println!("EXITCODE {}", p.join().expect("join"));
        }
    }
}

#[test]
fn panicking_target_gives_1_and_message_on_stderr() {
    let _w = watchdog("panicking_target_gives_1_and_message_on_stderr", LIMIT);
    for role in ["panic-spawn", "panic-fork", "panic-forkserver"] {
        let out = run_with_limit(&mut helper(role, "helper_panicking_child"), LIMIT);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{role}: {stdout}\n{stderr}");
        assert!(stdout.contains("EXITCODE 1"), "{role}: {stdout}\n{stderr}");
        assert!(stderr.contains("boom-marker-4242"), "{role}: {stderr}");
        assert!(stderr.contains("panicked"), "{role}: {stderr}");
    }
}

/// Helper: starts a long-sleeping child, prints its pid, sleeps.
#[test]
#[ignore = "helper run by child_dies_with_killed_parent"]
fn helper_orphan_parent() {
    for (role, method) in [
        ("orphan-spawn", StartMethod::Spawn),
        ("orphan-fork", StartMethod::Fork),
        ("orphan-forkserver", StartMethod::ForkServer),
    ] {
        if role_is(role) {
            let p = Process::builder(sleep_ms, 120_000)
                .start_method(method)
                .force_fork(true)
                .build();
            p.start().expect("start");
            println!("CHILD_PID {}", p.pid().expect("pid"));
            std::thread::sleep(Duration::from_secs(120));
        }
    }
}

#[test]
fn child_dies_with_killed_parent() {
    let _w = watchdog("child_dies_with_killed_parent", LIMIT);
    for role in ["orphan-spawn", "orphan-fork", "orphan-forkserver"] {
        let mut parent = helper(role, "helper_orphan_parent")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn intermediate parent");
        let stdout = parent.stdout.take().expect("stdout");
        let mut child_pid = None;
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("read line");
            // libtest may have printed "test name ... " on the same line.
            if let Some((_, p)) = line.split_once("CHILD_PID ") {
                child_pid = Some(p.trim().parse::<u32>().expect("pid"));
                break;
            }
        }
        let child_pid = child_pid.unwrap_or_else(|| {
            let _ = parent.kill();
            let _ = parent.wait();
            panic!("{role}: intermediate parent printed no child pid")
        });
        assert!(!common::pid_gone(child_pid), "{role}: child not running");
        // A served child's real parent is the fork server, which must go too.
        let mut watched = vec![child_pid];
        let real_parent = ppid_of(child_pid);
        if role == "orphan-forkserver" {
            assert_ne!(real_parent, parent.id(), "{role}: not forked by a server");
            watched.push(real_parent);
        }
        parent.kill().expect("SIGKILL the intermediate parent");
        parent.wait().expect("reap the intermediate parent");
        for pid in watched {
            let gone = wait_gone(pid, Duration::from_secs(5));
            if !gone {
                // Do not leave it behind even when failing.
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
            assert!(gone, "{role}: {pid} outlived its SIGKILLed parent");
        }
    }
}

/// Helper: starts a daemon child that sleeps and a non-daemon child that
/// writes a file after a pause, then returns (the harness exits normally).
#[test]
#[ignore = "helper run by exit_terminates_daemons_and_joins_others"]
fn helper_exit_with_children() {
    if let Ok(path) = std::env::var("SHMPROC_TEST_OUT") {
        if role_is("exit") || role_is("exit-forkserver") {
            if role_is("exit-forkserver") {
                shmproc::process::set_start_method(StartMethod::ForkServer);
            }
            let d = Process::builder(sleep_ms, 120_000).daemon(true).build();
            d.start().expect("start daemon");
            let n = Process::new(write_sum, (path, 1u64, 2u64));
            n.start().expect("start non-daemon");
            println!("DAEMON_PID {}", d.pid().expect("pid"));
            println!("SERVER_PID {}", global_server_pid().unwrap_or(0));
        }
    }
}

#[test]
fn exit_terminates_daemons_and_joins_others() {
    let _w = watchdog("exit_terminates_daemons_and_joins_others", LIMIT);
    for role in ["exit", "exit-forkserver"] {
        let dir = TempDir::new("exit");
        let out = dir.file("sum");
        let res = run_with_limit(
            helper(role, "helper_exit_with_children").env("SHMPROC_TEST_OUT", &out),
            LIMIT,
        );
        let stdout = String::from_utf8_lossy(&res.stdout);
        assert!(res.status.success(), "{role}: {stdout}");
        let pid_after = |tag: &str| -> u32 {
            stdout
                .lines()
                .find_map(|l| l.split_once(tag).map(|(_, p)| p))
                .and_then(|p| p.trim().parse().ok())
                .unwrap_or_else(|| panic!("{role}: no {tag} in {stdout}"))
        };
        let daemon = pid_after("DAEMON_PID ");
        // The non-daemon child was joined before the helper exited.
        assert_eq!(read(&out), "3", "{role}");
        // The daemon was terminated (and reaped) before the helper exited.
        assert!(
            wait_gone(daemon, Duration::from_secs(5)),
            "{role}: daemon {daemon} left behind"
        );
        let server = pid_after("SERVER_PID ");
        assert_eq!(server != 0, role == "exit-forkserver", "{role}");
        // The fork server was stopped at exit, after its children.
        assert!(
            server == 0 || wait_gone(server, Duration::from_secs(5)),
            "{role}: fork server {server} left behind"
        );
    }
}

#[test]
fn workers_never_run_main() {
    let _w = watchdog("workers_never_run_main", LIMIT);
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("log");
    let exe = common::example("no_init");
    let out = run_with_limit(Command::new(exe).arg(&log), LIMIT);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // main's print, argument parsing and file write happened once, in the
    // parent, although two pool workers and a process were spawned.
    assert_eq!(stdout.matches("no_init main starts").count(), 1, "{stdout}");
    assert!(
        stdout.contains(&format!("{:?}", [log.display().to_string()])),
        "{stdout}"
    );
    assert_eq!(std::fs::read_to_string(&log).expect("log"), "main ran\n");
    assert!(stdout.contains("[1, 4, 9, 16]"), "{stdout}");
    assert!(stdout.contains("hello from Process-"), "{stdout}");
    assert!(
        !stdout.contains("running 1 test") && stderr.is_empty(),
        "{stdout}\n{stderr}"
    );
}

/// This test binary has no `worker_test_entry!()`: a spawned child of a test
/// binary becomes a worker before libtest's main, so it lists no extra test
/// and prints nothing of libtest's.
#[test]
fn test_binaries_need_no_entry() {
    let _w = watchdog("test_binaries_need_no_entry", LIMIT);
    let pool = shmproc::Pool::new(2).expect("pool");
    assert_eq!(
        pool.map(|x: u32| x + 1, 0..4u32).expect("map"),
        [1, 2, 3, 4]
    );
    drop(pool);
    let out = Command::new(std::env::current_exe().expect("exe"))
        .args(["--list", "--format", "terse"])
        .output()
        .expect("list");
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(!list.contains("__shmproc_worker_entry"), "{list}");
}

// ---- start() returns once the child has attached its arguments -------------

fn echo_one((inbox, outbox): (shmproc::Queue<u64>, shmproc::Queue<u64>)) {
    let v = inbox
        .get_timeout(Duration::from_secs(30))
        .expect("a value from the parent");
    outbox.put(v + 1).expect("put the answer");
}

fn dropped_handles_after_start(method: StartMethod) {
    let inbox = shmproc::Queue::<u64>::new().unwrap();
    let outbox = shmproc::Queue::<u64>::new().unwrap();
    let p = Process::builder(echo_one, (inbox.clone(), outbox.clone()))
        .start_method(method)
        .force_fork(true)
        .build();
    p.start().unwrap();
    // The child has attached both queues by now: the parent may let go of the
    // one it only writes to after a last put... and of its own inbox copy
    // entirely (the queue lives on in the child).
    inbox.put(41).unwrap();
    drop(inbox);
    assert_eq!(outbox.get_timeout(Duration::from_secs(30)).unwrap(), 42);
    assert_eq!(p.join().unwrap(), 0);
    assert_no_leftovers(&[p.pid().unwrap()]);
}

#[test]
fn start_returns_after_the_child_attached_its_arguments_spawn() {
    let _w = watchdog(
        "attach before start returns (spawn)",
        Duration::from_secs(60),
    );
    dropped_handles_after_start(StartMethod::Spawn);
}

#[test]
fn start_returns_after_the_child_attached_its_arguments_fork() {
    let _w = watchdog(
        "attach before start returns (fork)",
        Duration::from_secs(60),
    );
    dropped_handles_after_start(StartMethod::Fork);
}

/// Serializes fine, never deserializes: a child that cannot decode its arguments.
#[derive(Debug)]
struct Undecodable;

impl Serialize for Undecodable {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(0)
    }
}

impl<'de> Deserialize<'de> for Undecodable {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom("this value never decodes"))
    }
}

fn takes_undecodable(_: Undecodable) {}

#[test]
fn arguments_the_child_cannot_decode_fail_start() {
    let _w = watchdog("undecodable arguments", Duration::from_secs(60));
    for method in [
        StartMethod::Spawn,
        StartMethod::Fork,
        StartMethod::ForkServer,
    ] {
        let p = Process::builder(takes_undecodable, Undecodable)
            .start_method(method)
            .force_fork(true)
            .build();
        match p.start() {
            Err(Error::InvalidState(m)) => {
                assert!(m.contains("could not decode its arguments"), "{m}")
            }
            other => panic!("{method:?}: expected a start error, got {other:?}"),
        }
        assert!(!p.is_alive());
    }
}

// ---- cpu_count honours the affinity mask ------------------------------------

#[test]
#[ignore]
fn child_report_cpu_count() {
    if std::env::var("SHMPROC_TEST_ROLE").as_deref() != Ok("cpu-count") {
        return;
    }
    let pool = shmproc::Pool::new(1).expect("pool");
    drop(pool);
    println!(
        "CPU_COUNT {} DEFAULT_POOL {}",
        shmproc::cpu_count(),
        shmproc::Pool::builder()
            .build()
            .expect("default pool")
            .processes()
    );
}

#[test]
fn cpu_count_honours_the_affinity_mask() {
    let _w = watchdog("cpu_count_honours_the_affinity_mask", LIMIT);
    let exe = std::env::current_exe().expect("current_exe");
    let out = run_with_limit(
        Command::new("taskset")
            .args(["-c", "0"])
            .arg(exe)
            .args([
                "child_report_cpu_count",
                "--exact",
                "--ignored",
                "--nocapture",
            ])
            .env("SHMPROC_TEST_ROLE", "cpu-count"),
        LIMIT,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    // One CPU allowed: cpu_count is 1, and so is a default pool.
    assert!(stdout.contains("CPU_COUNT 1 DEFAULT_POOL 1"), "{stdout}");
}
