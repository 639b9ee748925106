//! Segments and shared arrays across real processes.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{child_input, spawn_child, Watchdog};
use shmproc::segment::{self, ArrayHandle, Segment};
use shmproc::SharedView;

#[test]
#[ignore]
fn child_create_and_wait() {
    let Some(()) = child_input::<()>("creator") else {
        return;
    };
    let seg = Segment::create(4096).unwrap();
    println!("name {}", seg.name().unwrap());
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn sweep_removes_segment_of_killed_creator_and_keeps_live_ones() {
    let _w = Watchdog::new("sweep", Duration::from_secs(60));
    let live = Segment::create(64).unwrap();
    let live_name = live.name().unwrap().to_owned();
    let mut kid = spawn_child("child_create_and_wait", "creator", &());
    let dead_name = kid.read_until("name ");
    let path = Path::new("/dev/shm").join(&dead_name);
    assert!(path.exists());

    // While the creator lives, its segment is not stale.
    let infos = segment::list().unwrap();
    let info = infos.iter().find(|s| s.name == dead_name).unwrap();
    assert!(info.alive);
    assert_eq!(info.creator_pid, Some(kid.pid()));

    kid.kill9();
    assert!(path.exists(), "kill -9 leaks the name until a sweep");
    let removed = segment::sweep(false).unwrap();
    assert!(removed.iter().any(|s| s.name == dead_name));
    assert!(!path.exists());
    assert!(Path::new("/dev/shm").join(&live_name).exists());
    assert!(!removed.iter().any(|s| s.name == live_name));
}

#[test]
#[ignore]
fn child_square_in_place() {
    let Some(h) = child_input::<ArrayHandle>("square") else {
        return;
    };
    let a = SharedView::<u64>::attach(&h).unwrap();
    for i in 0..a.len() {
        let v = a.get(i).unwrap();
        a.set(i, v * v);
    }
}

#[test]
fn a_child_writes_a_shared_array_in_place() {
    let _w = Watchdog::new("array", Duration::from_secs(60));
    let a = SharedView::<u64>::from_slice(&(0..1000).collect::<Vec<_>>()).unwrap();
    let mut kid = spawn_child("child_square_in_place", "square", &a.handle());
    assert!(kid.wait(Duration::from_secs(30)).success());
    assert_eq!(a.to_vec(), (0..1000u64).map(|x| x * x).collect::<Vec<_>>());
}
