//! Shared helpers for the multi-process tests.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Aborts the whole test binary (its children die with it through the liveness
/// pipe) if the guard is not dropped within `limit`: a hang fails, never hangs.
pub struct Watchdog {
    done: Option<mpsc::Sender<()>>,
}

impl Watchdog {
    /// Same as [`watchdog`].
    pub fn new(name: &'static str, limit: Duration) -> Watchdog {
        watchdog(name, limit)
    }
}

pub fn watchdog(name: &'static str, limit: Duration) -> Watchdog {
    let (tx, rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
            eprintln!("watchdog: test {name} still running after {limit:?}; aborting");
            std::process::abort();
        }
    });
    Watchdog { done: Some(tx) }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        if let Some(tx) = self.done.take() {
            let _ = tx.send(());
        }
    }
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

static DIRS: AtomicU32 = AtomicU32::new(0);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let n = DIRS.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("shmproc-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn file(&self, name: &str) -> String {
        self.0.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `true` if `pid` no longer exists (or is a zombie nobody reaps).
pub fn pid_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']))
            .unwrap_or(false),
    }
}

/// Polls until `pid` is gone or `limit` passed; returns whether it is gone.
pub fn wait_gone(pid: u32, limit: Duration) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if pid_gone(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    pid_gone(pid)
}

/// Asserts that none of `pids` is an active child of this process any more and
/// that none exists (no zombie left behind).
pub fn assert_no_leftovers(pids: &[u32]) {
    let active: Vec<u32> = shmproc::process::active_children()
        .iter()
        .map(|c| c.pid())
        .collect();
    for pid in pids {
        assert!(!active.contains(pid), "child {pid} still active");
        assert!(pid_gone(*pid), "child {pid} left behind");
    }
}

/// Runs `cmd` with a time limit; kills it if it runs over.
pub fn run_with_limit(cmd: &mut Command, limit: Duration) -> Output {
    run_with_limit_pid(cmd, limit).1
}

/// [`run_with_limit`], also returning the pid the command ran as.
pub fn run_with_limit_pid(cmd: &mut Command, limit: Duration) -> (u32, Output) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn helper");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let end = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if Instant::now() > end {
            let _ = child.kill();
            let s = child.wait().expect("wait");
            panic!("helper {cmd:?} ran over {limit:?} (killed: {s:?})");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let out = Output {
        status,
        stdout: t_out.join().expect("stdout reader"),
        stderr: t_err.join().expect("stderr reader"),
    };
    (child.id(), out)
}

/// Path of a built example; builds it with cargo if missing (a plain
/// `cargo test` builds all examples first).
pub fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile dir>/deps/<test> -> target/<profile dir>/examples/<name>
    let profile_dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = profile_dir.join("examples").join(name);
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => "dev",
            Some(other) => other,
        };
        let st = Command::new(cargo)
            .args([
                "build",
                "-p",
                "shmproc",
                "--profile",
                profile,
                "--example",
                name,
            ])
            .status()
            .expect("cargo build --example");
        assert!(st.success(), "building example {name}");
    }
    path
}

// ---- re-exec of `#[ignore]`d child tests (the rayon crash-test pattern) ----

use std::io::{BufRead, BufReader};
use std::process::{Child, ExitStatus};

/// Environment variable that tells a child test it was started by a parent.
pub const ROLE: &str = "SHMPROC_TEST_ROLE";
/// Environment variable carrying the child's input.
pub const INPUT: &str = "SHMPROC_TEST_INPUT";

/// Encodes a serializable value for an environment variable (postcard + hex).
pub fn encode<T: serde::Serialize>(v: &T) -> String {
    let bytes = postcard::to_allocvec(v).expect("encode test input");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Decodes [`encode`]'s output.
pub fn decode<T: serde::de::DeserializeOwned>(s: &str) -> T {
    let bytes: Vec<u8> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect();
    postcard::from_bytes(&bytes).expect("decode test input")
}

/// The input of a child test, or `None` when the test runs on its own (then
/// the child test returns at once and passes trivially, doing nothing).
pub fn child_input<T: serde::de::DeserializeOwned>(role: &str) -> Option<T> {
    if std::env::var(ROLE).ok()? != role {
        return None;
    }
    Some(decode(&std::env::var(INPUT).ok()?))
}

/// A running child test; killed and reaped on drop.
pub struct ChildTest {
    pub child: Child,
    lines: Option<BufReader<std::process::ChildStdout>>,
}

/// Starts the `#[ignore]`d test `name` of this binary in a new process with the
/// given role and input; its stdout is piped (read it with `read_line`).
pub fn spawn_child<T: serde::Serialize>(name: &str, role: &str, input: &T) -> ChildTest {
    let exe = std::env::current_exe().expect("current_exe");
    let mut child = Command::new(exe)
        .args([
            name,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
            "-q",
        ])
        .env(ROLE, role)
        .env(INPUT, encode(input))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn child test");
    let lines = child.stdout.take().map(BufReader::new);
    ChildTest { child, lines }
}

impl ChildTest {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Reads stdout lines until one starts with `prefix`; returns the rest of it.
    /// Panics if the child closes stdout first. (Bounded by the caller's watchdog.)
    pub fn read_until(&mut self, prefix: &str) -> String {
        let r = self.lines.as_mut().expect("stdout piped");
        let mut line = String::new();
        loop {
            line.clear();
            let n = r.read_line(&mut line).expect("read child stdout");
            assert!(n > 0, "child closed stdout before printing {prefix:?}");
            if let Some(rest) = line.trim_end().strip_prefix(prefix) {
                return rest.to_owned();
            }
        }
    }

    /// Waits for the child to exit, at most `limit`; panics (after killing it)
    /// if it does not.
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                return st;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("child {} did not exit within {limit:?}", self.pid());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Sends SIGKILL and reaps the child.
    pub fn kill9(&mut self) -> ExitStatus {
        let _ = self.child.kill();
        self.child.wait().expect("wait after kill")
    }
}

impl Drop for ChildTest {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Exit code of a child test that returned normally (libtest exits 0 on pass,
/// 101 on a failed assertion).
pub fn code(st: ExitStatus) -> Option<i32> {
    st.code()
}
