//! Unit tests of the seam the pool uses: `start_child` with raw entries,
//! `FnId` across a real spawn, the identity check in the handshake.

use std::time::Duration;

use super::spawn::{
    spawn_child, start_child, BuildIdentity, ChildOptions, Entry, ExitStatus, FnId,
};
use super::{active_children, StartMethod};
use crate::Error;

fn boot_len(bytes: &[u8]) -> i32 {
    i32::try_from(bytes.len() % 200).unwrap_or(-1)
}

fn boot_checksum(bytes: &[u8]) -> i32 {
    let s = bytes
        .iter()
        .fold(0u32, |a, &b| a.wrapping_mul(31).wrapping_add(u32::from(b)));
    i32::try_from(s % 251).unwrap_or(-1)
}

fn boot_sleep(_: &[u8]) -> i32 {
    std::thread::sleep(Duration::from_secs(60));
    0
}

fn add_one(x: u8) -> u8 {
    x + 1
}

/// What a pool worker does: payload = (FnId, argument bytes); the result comes
/// back as the exit code here.
fn boot_call(bytes: &[u8]) -> i32 {
    let Ok((id, arg)) = postcard::from_bytes::<(FnId, Vec<u8>)>(bytes) else {
        return 101;
    };
    // SAFETY: the id was made by the parent, and the handshake checked that we
    // run the same image.
    let call = unsafe { id.resolve() };
    match call(&arg) {
        Ok(out) => postcard::from_bytes::<u8>(&out).map_or(102, i32::from),
        Err(_) => 103,
    }
}

fn opts(method: StartMethod) -> ChildOptions {
    let mut o = ChildOptions::with_name_prefix("TestWorker");
    assert!(o.name.starts_with("TestWorker-"), "{}", o.name);
    o.method = method;
    o.force_fork = true;
    o
}

#[test]
fn raw_entry_exit_code() {
    for m in [
        StartMethod::Spawn,
        StartMethod::Fork,
        StartMethod::ForkServer,
    ] {
        let c = start_child(Entry::new(boot_len), vec![0; 77], &opts(m)).expect("start");
        assert_eq!(c.wait().expect("wait"), ExitStatus::Exited(77), "{m:?}");
        assert_eq!(
            c.try_wait().expect("try_wait"),
            Some(ExitStatus::Exited(77))
        );
    }
}

#[test]
fn large_payload_travels() {
    let payload: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let want = boot_checksum(&payload);
    for m in [StartMethod::Spawn, StartMethod::ForkServer] {
        let c = start_child(Entry::new(boot_checksum), payload.clone(), &opts(m)).expect("start");
        assert_eq!(c.wait().expect("wait").code(), want, "{m:?}");
    }
}

#[test]
fn fn_id_across_spawn() {
    let id = FnId::of_fn(add_one);
    let payload =
        postcard::to_stdvec(&(id, postcard::to_stdvec(&41u8).expect("arg"))).expect("payload");
    let c = start_child(Entry::new(boot_call), payload, &opts(StartMethod::Spawn)).expect("start");
    assert_eq!(c.wait().expect("wait"), ExitStatus::Exited(42));
}

#[test]
fn build_mismatch_is_an_error() {
    let mut wrong = BuildIdentity::current().expect("identity");
    wrong.ino ^= 1;
    let o = opts(StartMethod::Spawn);
    match spawn_child(Entry::new(boot_len), vec![], &o, wrong) {
        Err(Error::BuildMismatch(m)) => assert!(m.contains("inode"), "{m}"),
        other => panic!("expected BuildMismatch, got {other:?}"),
    }
}

#[test]
fn wait_readable_and_signals() {
    for m in [StartMethod::Spawn, StartMethod::ForkServer] {
        wait_readable_and_signals_with(m);
    }
}

fn wait_readable_and_signals_with(m: StartMethod) {
    let c = start_child(Entry::new(boot_sleep), vec![], &opts(m)).expect("start");
    assert!(c.pidfd().is_some(), "kernel without pidfd?");
    assert!(!c
        .wait_readable(Some(Duration::from_millis(50)))
        .expect("poll"));
    assert!(matches!(
        c.wait_timeout(Duration::from_millis(50)),
        Err(Error::Timeout)
    ));
    c.kill().expect("kill");
    assert!(c
        .wait_readable(Some(Duration::from_secs(30)))
        .expect("poll"));
    let s = c.wait().expect("wait");
    assert_eq!(s, ExitStatus::Signaled(9));
    assert_eq!(s.code(), -9);
    assert_eq!(s.signal(), Some(9));
    // After reaping, signals are no-ops.
    c.terminate().expect("terminate after reap");
}

#[test]
fn fork_server_is_not_an_active_child_and_reports_its_children() {
    let c = start_child(
        Entry::new(boot_sleep),
        vec![],
        &opts(StartMethod::ForkServer),
    )
    .expect("start");
    let server = super::spawn::global_server_pid().expect("the global server runs");
    let active: Vec<u32> = active_children().iter().map(|p| p.pid()).collect();
    assert!(active.contains(&c.pid()), "{active:?}");
    assert!(
        !active.contains(&server),
        "server {server} listed in {active:?}"
    );
    c.terminate().expect("terminate");
    assert_eq!(c.wait().expect("wait"), ExitStatus::Signaled(15));
}
