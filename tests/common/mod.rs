//! Test harness for multi-process tests: re-exec this test binary to run one
//! `#[ignore]`d child test (as rayon's crash tests do), pass it data through
//! environment variables, wait for it with a deadline, and never leave a child
//! behind.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

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

/// Aborts the whole test process if it is still alive after `limit`, so that a
/// hang fails the suite instead of blocking it. Disarmed on drop.
pub struct Watchdog {
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Watchdog {
    pub fn new(what: &'static str, limit: Duration) -> Watchdog {
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let d = done.clone();
        std::thread::spawn(move || {
            let deadline = Instant::now() + limit;
            while Instant::now() < deadline {
                if d.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            eprintln!("watchdog: {what} still running after {limit:?}; aborting");
            std::process::abort();
        });
        Watchdog { done }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.done.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Exit code of a child test that returned normally (libtest exits 0 on pass,
/// 101 on a failed assertion).
pub fn code(st: ExitStatus) -> Option<i32> {
    st.code()
}
