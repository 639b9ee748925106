//! Runs each seed example as a subprocess and checks its output.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{example, run_with_limit, watchdog};

const LIMIT: Duration = Duration::from_secs(60);

fn run(name: &str) -> String {
    let out = run_with_limit(&mut Command::new(example(name)), LIMIT);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{name} failed: {:?}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn seed08_run_process() {
    let _w = watchdog("seed08_run_process", LIMIT);
    let out = run("seed08_run_process");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    let parent: u32 = lines[0]
        .strip_prefix("Run parent process ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(lines[1], "Child process will start!");
    let child: u32 = lines[2]
        .strip_prefix("Run child process test(")
        .and_then(|p| p.strip_suffix(')'))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert_ne!(parent, child);
    assert_eq!(lines[3], "Child process end!");
}

#[test]
fn seed13_process_names() {
    let _w = watchdog("seed13_process_names", LIMIT);
    let out = run("seed13_process_names");
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort_unstable();
    // The named process took number 1, so the default one is Process-2 (as in Python).
    assert_eq!(
        lines,
        [
            "Exiting Process-2",
            "Exiting foo_process",
            "Starting Process-2",
            "Starting foo_process"
        ],
        "{out}"
    );
    for name in ["foo_process", "Process-2"] {
        let s = out.find(&format!("Starting {name}")).expect("start line");
        let e = out.find(&format!("Exiting {name}")).expect("exit line");
        assert!(s < e, "{out}");
    }
}

#[test]
fn seed14_terminate() {
    let _w = watchdog("seed14_terminate", LIMIT);
    let out = run("seed14_terminate");
    // The child may print "Starting function" before it is terminated, or not.
    let lines: Vec<&str> = out.lines().filter(|l| *l != "Starting function").collect();
    assert_eq!(lines.len(), 5, "{out}");
    assert_eq!(
        lines[0],
        "Process before execution: Process-1 is_alive: false"
    );
    assert_eq!(lines[1], "Process running: Process-1 is_alive: true");
    // Right after the signal the child may or may not be dead yet (as in Python).
    assert!(
        lines[2].starts_with("Process terminated: Process-1 is_alive: "),
        "{out}"
    );
    assert_eq!(lines[3], "Process joined: Process-1 is_alive: false");
    assert_eq!(lines[4], "Process exit code: -15");
    assert!(!out.contains("Finished function"), "{out}");
}

#[test]
fn seed15_process_subclass() {
    let _w = watchdog("seed15_process_subclass", LIMIT);
    let out = run("seed15_process_subclass");
    let want: Vec<String> = (1..=5)
        .map(|i| format!("called run method in process: Process-{i}"))
        .collect();
    let got: Vec<&str> = out.lines().collect();
    assert_eq!(got, want, "{out}");
}
