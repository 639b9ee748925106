//! `shmproc info` and `shmproc clean` against real segments.

// The library's multi-process test helpers, shared rather than copied.
#[path = "../../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{child_input, spawn_child, Watchdog};
use shmproc::segment::Segment;

fn shmproc(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_shmproc"))
        .args(args)
        .output()
        .expect("run shmproc");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
#[ignore]
fn child_make_segment() {
    let Some(()) = child_input::<()>("make") else {
        return;
    };
    let seg = Segment::create(100).unwrap();
    println!("name {}", seg.name().unwrap());
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn info_and_clean_tell_live_from_stale() {
    let _w = Watchdog::new("cli segments", Duration::from_secs(60));
    let live = Segment::create(100).unwrap();
    let live_name = live.name().unwrap().to_owned();
    let mut kid = spawn_child("child_make_segment", "make", &());
    let stale_name = kid.read_until("name ");
    kid.kill9();

    let (code, out) = shmproc(&["info"]);
    assert_eq!(code, 0);
    let line = |n: &str| out.lines().find(|l| l.starts_with(n)).map(str::to_owned);
    assert!(line(&live_name).unwrap().ends_with("alive"), "{out}");
    assert!(line(&stale_name).unwrap().ends_with("stale"), "{out}");

    let (code, out) = shmproc(&["clean", "--dry-run"]);
    assert_eq!(code, 0);
    assert!(out.contains(&format!("would remove {stale_name}")), "{out}");
    assert!(!out.contains(&live_name));
    assert!(Path::new("/dev/shm").join(&stale_name).exists());

    let (code, out) = shmproc(&["clean"]);
    assert_eq!(code, 0);
    assert!(out.contains(&format!("removed {stale_name}")), "{out}");
    assert!(!Path::new("/dev/shm").join(&stale_name).exists());
    assert!(Path::new("/dev/shm").join(&live_name).exists());
}

#[test]
fn unknown_command_fails_with_usage() {
    let out = Command::new(env!("CARGO_BIN_EXE_shmproc"))
        .arg("frobnicate")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unrecognized subcommand"));
}
