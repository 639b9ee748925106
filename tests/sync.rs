//! Cross-process tests of the sync primitives with real processes: this test
//! binary re-executes itself to run the `#[ignore]`d `child_*` tests.

mod common;

use std::time::{Duration, Instant};

use common::{child_input, spawn_child, ChildTest, Watchdog};
use shmproc::sync::{Barrier, Event, LockError, Mutex, Semaphore, SyncHandle};
use shmproc::Error;

const LONG: Duration = Duration::from_secs(60);

// ---- 2 processes x 1,000,000 increments ------------------------------------

#[test]
#[ignore]
fn child_increment() {
    let Some((h, n)) = child_input::<(SyncHandle, u64)>("increment") else {
        return;
    };
    let m = Mutex::<u64>::attach(&h).unwrap();
    for _ in 0..n {
        *m.lock().unwrap() += 1;
    }
}

#[test]
fn mutex_two_processes_million_increments_each() {
    let _w = Watchdog::new("mutex increments", Duration::from_secs(240));
    let m = Mutex::new(0u64).unwrap();
    let n = 1_000_000u64;
    let mut kids: Vec<ChildTest> = (0..2)
        .map(|_| spawn_child("child_increment", "increment", &(m.handle(), n)))
        .collect();
    for k in &mut kids {
        assert!(k.wait(Duration::from_secs(200)).success());
    }
    assert_eq!(*m.lock().unwrap(), 2 * n);
}

// ---- a holder killed with SIGKILL ------------------------------------------

#[test]
#[ignore]
fn child_hold_lock() {
    let Some(h) = child_input::<SyncHandle>("hold") else {
        return;
    };
    let m = Mutex::<u64>::attach(&h).unwrap();
    let mut g = m.lock().unwrap();
    *g = 41; // half-way through an update
    println!("locked");
    std::thread::sleep(LONG);
}

#[test]
fn mutex_holder_killed_gives_owner_died_not_a_hang() {
    let _w = Watchdog::new("owner died", Duration::from_secs(60));
    let m = Mutex::new(0u64).unwrap();
    let mut kid = spawn_child("child_hold_lock", "hold", &m.handle());
    kid.read_until("locked");
    assert!(matches!(m.try_lock(), Err(LockError::WouldBlock)));

    // A waiter already blocked in lock() when the holder dies is released too.
    let h = m.handle();
    let waiter = std::thread::spawn(move || {
        let m = Mutex::<u64>::attach(&h).unwrap();
        let died = match m.lock() {
            Err(LockError::OwnerDied(mut g)) => {
                assert_eq!(*g, 41, "sees the dead holder's half-done value");
                *g = 100; // repair
                true
            }
            Ok(_) => false,
            Err(e) => panic!("{e}"),
        };
        died
    });
    std::thread::sleep(Duration::from_millis(50));
    let st = kid.kill9();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&st), Some(9));
    assert!(waiter.join().unwrap(), "the blocked waiter got OwnerDied");
    // The lock is consistent again: plain locks from now on.
    let g = m.lock().unwrap();
    assert_eq!(*g, 100);
}

#[test]
fn mutex_holder_killed_then_locked_reports_owner_died_once() {
    let _w = Watchdog::new("owner died later", Duration::from_secs(60));
    let m = Mutex::new(0u64).unwrap();
    let mut kid = spawn_child("child_hold_lock", "hold", &m.handle());
    kid.read_until("locked");
    kid.kill9();
    let r = m.lock_timeout(Duration::from_secs(10));
    let g = r.err().and_then(LockError::into_guard).expect("OwnerDied");
    assert_eq!(*g, 41);
    drop(g);
    assert!(m.lock().is_ok());
}

// ---- Semaphore(2) with 3 processes -----------------------------------------

#[test]
#[ignore]
fn child_semaphore_user() {
    let Some((s, stats)) = child_input::<(SyncHandle, SyncHandle)>("sem") else {
        return;
    };
    let s = Semaphore::attach(&s).unwrap();
    let stats = Mutex::<[u64; 3]>::attach(&stats).unwrap(); // [inside, max, total]
    for _ in 0..30 {
        s.acquire_timeout(LONG).unwrap();
        {
            let mut st = stats.lock().unwrap();
            st[0] += 1;
            st[1] = st[1].max(st[0]);
            st[2] += 1;
        }
        std::thread::sleep(Duration::from_micros(500));
        stats.lock().unwrap()[0] -= 1;
        s.release().unwrap();
    }
}

#[test]
fn semaphore_two_never_lets_three_in() {
    let _w = Watchdog::new("semaphore", Duration::from_secs(120));
    let s = Semaphore::new(2).unwrap();
    let stats = Mutex::new([0u64; 3]).unwrap();
    let mut kids: Vec<_> = (0..3)
        .map(|_| spawn_child("child_semaphore_user", "sem", &(s.handle(), stats.handle())))
        .collect();
    for k in &mut kids {
        assert!(k.wait(Duration::from_secs(100)).success());
    }
    let st = *stats.lock().unwrap();
    assert_eq!(st[0], 0);
    assert!(st[1] <= 2, "{} processes were inside at once", st[1]);
    assert!(st[1] >= 1);
    assert_eq!(st[2], 90);
    assert_eq!(s.value(), 2);
}

#[test]
fn semaphore_timeout_returns_within_a_sane_bound() {
    let s = Semaphore::new(0).unwrap();
    let t = Instant::now();
    assert!(matches!(
        s.acquire_timeout(Duration::from_millis(200)),
        Err(Error::Timeout)
    ));
    let e = t.elapsed();
    assert!(e >= Duration::from_millis(195), "returned early: {e:?}");
    assert!(e < Duration::from_secs(10), "returned far too late: {e:?}");
}

// ---- Event across processes -------------------------------------------------

#[test]
#[ignore]
fn child_event_waiter() {
    let Some(h) = child_input::<SyncHandle>("event") else {
        return;
    };
    let e = Event::attach(&h).unwrap();
    println!("waiting");
    let set = e.wait_timeout(LONG).is_ok();
    std::process::exit(if set { 7 } else { 8 });
}

#[test]
fn event_wakes_a_waiter_in_another_process() {
    let _w = Watchdog::new("event", Duration::from_secs(90));
    let e = Event::new().unwrap();
    let mut kid = spawn_child("child_event_waiter", "event", &e.handle());
    kid.read_until("waiting");
    std::thread::sleep(Duration::from_millis(50));
    e.set();
    assert_eq!(kid.wait(Duration::from_secs(60)).code(), Some(7));
}

// ---- Barrier across processes -----------------------------------------------

#[test]
#[ignore]
fn child_barrier_party() {
    let Some((b, arrived)) = child_input::<(SyncHandle, SyncHandle)>("barrier") else {
        return;
    };
    let b = Barrier::attach(&b).unwrap();
    let arrived = Mutex::<u64>::attach(&arrived).unwrap();
    *arrived.lock().unwrap() += 1;
    println!("arrived");
    match b.wait_timeout(LONG) {
        Ok(_) => {
            // Nobody is released before every party has arrived.
            let n = *arrived.lock().unwrap();
            std::process::exit(if n as u32 == b.parties() { 0 } else { 3 });
        }
        Err(Error::Broken) => std::process::exit(42),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn barrier_releases_n_processes_together() {
    let _w = Watchdog::new("barrier", Duration::from_secs(90));
    let b = Barrier::new(3).unwrap();
    let arrived = Mutex::new(0u64).unwrap();
    let mut kids: Vec<_> = (0..3)
        .map(|_| {
            spawn_child(
                "child_barrier_party",
                "barrier",
                &(b.handle(), arrived.handle()),
            )
        })
        .collect();
    for k in &mut kids {
        assert_eq!(k.wait(Duration::from_secs(60)).code(), Some(0));
    }
}

#[test]
fn broken_barrier_wakes_the_rest_when_a_party_dies() {
    let _w = Watchdog::new("broken barrier", Duration::from_secs(90));
    let b = Barrier::new(3).unwrap();
    let arrived = Mutex::new(0u64).unwrap();
    let mut kids: Vec<_> = (0..2)
        .map(|_| {
            spawn_child(
                "child_barrier_party",
                "barrier",
                &(b.handle(), arrived.handle()),
            )
        })
        .collect();
    for k in &mut kids {
        k.read_until("arrived");
    }
    // The third party is a process that dies before reaching the barrier; its
    // supervisor (this test) sees the death and breaks the barrier.
    let mut third = spawn_child("child_hold_lock", "none", &0u8);
    third.kill9();
    b.mark_broken();
    for k in &mut kids {
        assert_eq!(k.wait(Duration::from_secs(60)).code(), Some(42));
    }
}

// ---- read-only mappings ---------------------------------------------------------

/// A primitive in a read-only mapping would fault on its first atomic RMW:
/// attaching must fail with an error instead (through a handle or in place).
#[test]
fn attach_to_a_read_only_mapping_is_an_error_not_a_sigsegv() {
    use shmproc::segment::{kind, Segment, SegmentHandle};
    use std::sync::Arc;

    let dir = common::TempDir::new("sync-ro");
    let path = dir.path().join("prims.seg");
    let seg = Arc::new(Segment::create_file(&path, kind::SYNC, 1 << 16).unwrap());
    let prims = [
        Mutex::new_in(&seg, 5u64).unwrap().handle(),
        Semaphore::new_in(&seg, 1).unwrap().handle(),
        Event::new_in(&seg).unwrap().handle(),
        Barrier::new_in(&seg, 2).unwrap().handle(),
    ];
    let ro = Arc::new(Segment::map_file(&path, false).unwrap());
    assert!(!ro.is_writable());
    let via_handle = |h: &SyncHandle| SyncHandle {
        segment: SegmentHandle::File {
            path: path.clone(),
            header: false,
            writable: false,
        },
        ..h.clone()
    };
    let (m, s, e, b) = (&prims[0], &prims[1], &prims[2], &prims[3]);
    let errs = [
        Mutex::<u64>::attach(&via_handle(m)).err(),
        Semaphore::attach(&via_handle(s)).err(),
        Event::attach(&via_handle(e)).err(),
        Barrier::attach(&via_handle(b)).err(),
        Mutex::<u64>::attach_in(Arc::clone(&ro), m.offset).err(),
        Semaphore::attach_in(Arc::clone(&ro), s.offset).err(),
        Event::attach_in(Arc::clone(&ro), e.offset).err(),
        Barrier::attach_in(Arc::clone(&ro), b.offset).err(),
    ];
    for e in errs {
        let e = e.expect("attached to a read-only mapping");
        assert!(e.to_string().contains("read-only"), "{e}");
    }
    // Nothing placed into a read-only mapping either.
    assert!(Event::new_in(&ro).is_err());
    // The writable mapping still works.
    let m = Mutex::<u64>::attach_in(Arc::clone(&seg), prims[0].offset).unwrap();
    assert_eq!(*m.lock().unwrap(), 5);
}
