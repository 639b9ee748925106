//! Single-process tests of the primitives (threads stand in for processes where
//! only the protocol is under test; tests/sync.rs uses real processes).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::*;

#[test]
fn mutex_counts_under_threads_and_attach() {
    let m = Arc::new(Mutex::new(0u64).unwrap());
    let handle = m.handle();
    let hs: Vec<_> = (0..4)
        .map(|_| {
            let h = handle.clone();
            thread::spawn(move || {
                let m = Mutex::<u64>::attach(&h).unwrap();
                for _ in 0..10_000 {
                    *m.lock().unwrap() += 1;
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    assert_eq!(*m.lock().unwrap(), 40_000);
}

#[test]
fn mutex_try_lock_and_timeout() {
    let m = Arc::new(Mutex::new([1u32, 2]).unwrap());
    let g = m.lock().unwrap();
    let m2 = Arc::clone(&m);
    thread::spawn(move || {
        assert!(matches!(m2.try_lock(), Err(LockError::WouldBlock)));
        let t = Instant::now();
        assert!(matches!(
            m2.lock_timeout(Duration::from_millis(50)),
            Err(LockError::Timeout)
        ));
        assert!(t.elapsed() >= Duration::from_millis(45));
    })
    .join()
    .unwrap();
    assert_eq!(*g, [1, 2]);
    drop(g);
    assert!(m.lock_timeout(Duration::from_millis(50)).is_ok());
}

#[test]
fn mutex_rejects_wrong_handles() {
    let m = Mutex::new(5u64).unwrap();
    assert!(matches!(
        Mutex::<u32>::attach(&m.handle()),
        Err(Error::TypeMismatch { .. })
    ));
    let s = Semaphore::new(1).unwrap();
    assert!(matches!(
        Mutex::<u64>::attach(&s.handle()),
        Err(Error::TypeMismatch { .. })
    ));
    let mut bad = m.handle();
    bad.offset += 8;
    assert!(Mutex::<u64>::attach(&bad).is_err());
    bad.offset = 1 << 40;
    assert!(matches!(
        Mutex::<u64>::attach(&bad),
        Err(Error::OutOfBounds { .. })
    ));
}

#[test]
fn semaphore_counts_and_bounds() {
    let s = Semaphore::new(2).unwrap();
    assert!(s.try_acquire().unwrap());
    assert!(s.try_acquire().unwrap());
    assert!(!s.try_acquire().unwrap());
    let t = Instant::now();
    assert!(matches!(
        s.acquire_timeout(Duration::from_millis(30)),
        Err(Error::Timeout)
    ));
    let waited = t.elapsed();
    assert!(waited >= Duration::from_millis(25), "{waited:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    s.release().unwrap();
    {
        let _g = s.acquire_guard().unwrap();
        assert_eq!(s.value(), 0);
    }
    assert_eq!(s.value(), 1);

    let b = Semaphore::bounded(2).unwrap();
    b.acquire().unwrap();
    b.release().unwrap();
    assert!(matches!(b.release(), Err(Error::OverRelease { bound: 2 })));
    assert_eq!(b.value(), 2);
}

#[test]
fn semaphore_wakes_a_sleeping_waiter() {
    let s = Arc::new(Semaphore::new(0).unwrap());
    let s2 = Arc::clone(&s);
    let t = thread::spawn(move || s2.acquire_timeout(Duration::from_secs(20)).unwrap());
    thread::sleep(Duration::from_millis(30));
    s.release().unwrap();
    t.join().unwrap();
}

#[test]
fn broken_semaphore_wakes_every_waiter() {
    let s = Arc::new(Semaphore::new(0).unwrap());
    let woke = Arc::new(AtomicU32::new(0));
    let ts: Vec<_> = (0..3)
        .map(|_| {
            let (s, woke) = (Arc::clone(&s), Arc::clone(&woke));
            thread::spawn(move || {
                let r = s.acquire_timeout(Duration::from_secs(20));
                assert!(matches!(r, Err(Error::Broken)), "{r:?}");
                woke.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(30));
    s.mark_broken();
    for t in ts {
        t.join().unwrap();
    }
    assert_eq!(woke.load(Ordering::SeqCst), 3);
    assert!(s.is_broken());
    assert!(matches!(s.release(), Err(Error::Broken)));
    assert!(matches!(s.try_acquire(), Err(Error::Broken)));
}

#[test]
fn event_set_clear_wait() {
    let e = Arc::new(Event::new().unwrap());
    let t = Instant::now();
    assert!(matches!(
        e.wait_timeout(Duration::from_millis(20)),
        Err(Error::Timeout)
    ));
    assert!(t.elapsed() >= Duration::from_millis(15));
    let e2 = Arc::clone(&e);
    let w = thread::spawn(move || e2.wait_timeout(Duration::from_secs(20)).unwrap());
    thread::sleep(Duration::from_millis(20));
    e.set();
    w.join().unwrap();
    assert!(e.is_set());
    e.wait().unwrap();
    e.clear();
    assert!(!e.is_set());
    e.mark_broken();
    assert!(matches!(e.wait(), Err(Error::Broken)));
}

#[test]
fn barrier_releases_all_parties_each_generation() {
    let b = Arc::new(Barrier::new(3).unwrap());
    let arrived = Arc::new(AtomicU32::new(0));
    let ts: Vec<_> = (0..3)
        .map(|_| {
            let (b, arrived) = (Arc::clone(&b), Arc::clone(&arrived));
            thread::spawn(move || {
                let mut leaders = 0;
                for round in 1..=5u32 {
                    arrived.fetch_add(1, Ordering::SeqCst);
                    if b.wait_timeout(Duration::from_secs(20)).unwrap() {
                        leaders += 1;
                    }
                    // Nobody passes before all three have arrived this round.
                    assert!(arrived.load(Ordering::SeqCst) >= 3 * round);
                }
                leaders
            })
        })
        .collect();
    let leaders: u32 = ts.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(leaders, 5, "exactly one leader per generation");
}

#[test]
fn barrier_timeout_breaks_it_for_everyone_until_reset() {
    let b = Barrier::new(2).unwrap();
    assert!(matches!(
        b.wait_timeout(Duration::from_millis(10)),
        Err(Error::Timeout)
    ));
    assert!(b.is_broken());
    assert!(matches!(b.wait(), Err(Error::Broken)));
    b.reset();
    assert!(!b.is_broken());
    let b = Arc::new(b);
    let b2 = Arc::clone(&b);
    let t = thread::spawn(move || b2.wait_timeout(Duration::from_secs(20)).unwrap());
    let me = b.wait_timeout(Duration::from_secs(20)).unwrap();
    assert!(me ^ t.join().unwrap());
}

#[test]
fn primitives_share_one_segment_and_travel_by_serde() {
    let seg = Arc::new(Segment::create(4096).unwrap());
    let m = Mutex::new_in(&seg, 1u64).unwrap();
    let s = Semaphore::bounded_in(&seg, 1).unwrap();
    let e = Event::new_in(&seg).unwrap();
    let b = Barrier::new_in(&seg, 1).unwrap();
    let bytes = postcard::to_allocvec(&(&m, &s, &e, &b)).unwrap();
    let (m2, s2, e2, b2): (Mutex<u64>, Semaphore, Event, Barrier) =
        postcard::from_bytes(&bytes).unwrap();
    *m2.lock().unwrap() = 7;
    assert_eq!(*m.lock().unwrap(), 7);
    s2.acquire().unwrap();
    assert_eq!(s.value(), 0);
    e2.set();
    assert!(e.is_set());
    assert!(b2.wait().unwrap());
    assert!(Mutex::<u64>::attach_in(Arc::clone(&seg), s.handle().offset).is_err());
}

#[test]
fn bad_constructor_arguments() {
    assert!(matches!(Barrier::new(0), Err(Error::InvalidArgument(_))));
    assert!(matches!(
        Semaphore::new(u32::MAX),
        Err(Error::InvalidArgument(_))
    ));
}
