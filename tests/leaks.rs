//! Where things live, checked against the README ("Lifetime, failure and
//! clean-up"): everything a process creates for its own use is a memfd, so a
//! `kill -9` leaves nothing in `/dev/shm`; only named segments (for unrelated
//! processes) have a name there, and their creator unlinks it on drop.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{child_input, decode, encode, spawn_child, Watchdog};
use shmproc::ipc::{Connection, Pipe, Queue};
use shmproc::segment::{self, Segment, SegmentHandle};
use shmproc::sync::{Barrier, Event, LockError, Mutex, Semaphore};
use shmproc::{Error, Pool, SharedView};

const LONG: Duration = Duration::from_secs(120);

/// One of each primitive, as a child holds them.
type Set = (
    Mutex<u64>,
    Semaphore,
    Event,
    Barrier,
    Queue<u64>,
    Connection,
);

fn square(x: u64) -> u64 {
    x * x
}

/// Names in `/dev/shm` whose generated name says `pid` created them.
fn names_of(pid: u32) -> Vec<String> {
    segment::list()
        .unwrap()
        .into_iter()
        .filter(|s| s.creator_pid == Some(pid))
        .map(|s| s.name)
        .collect()
}

/// Whether descriptor `fd` of this process is a memfd.
fn is_memfd(fd: i32) -> bool {
    std::fs::read_link(format!("/proc/self/fd/{fd}"))
        .is_ok_and(|p| p.to_string_lossy().starts_with("/memfd:"))
}

/// Asserts that `h` is a memfd of this process.
fn assert_own_memfd(what: &str, h: &SegmentHandle) {
    match h {
        SegmentHandle::Memfd { pid, fd, .. } => {
            assert_eq!(*pid, std::process::id(), "{what}: creator pid");
            assert!(is_memfd(*fd), "{what}: fd {fd} is not a memfd");
        }
        other => panic!("{what} lives in {other:?}, not a memfd"),
    }
}

/// Uses every primitive of a set whose other user was SIGKILLed while it held
/// them: the mutex (held at 41) reports OwnerDied; the semaphore unit it took
/// is gone but the semaphore works; the event it set stays set; the barrier it
/// waited on is broken by us as its supervisor; the queue delivers its message;
/// the pipe delivers its message and then reports Eof.
fn use_after_death(set: &Set, who: &str) {
    let (m, s, e, b, q, c) = set;
    match m.lock_timeout(LONG) {
        Err(LockError::OwnerDied(mut g)) => {
            assert_eq!(*g, 41, "{who}: the dead holder's value");
            *g = 42;
        }
        other => panic!("{who}: expected OwnerDied, got {:?}", other.map(|_| ())),
    }
    assert_eq!(
        *m.lock().unwrap(),
        42,
        "{who}: the mutex is consistent again"
    );
    assert_eq!(s.value(), 0, "{who}: the dead process's unit");
    s.release().unwrap();
    s.acquire_timeout(LONG).expect("semaphore usable");
    assert!(e.is_set(), "{who}: event set by the dead process");
    e.clear();
    e.set();
    e.wait_timeout(LONG).expect("event set");
    b.mark_broken();
    assert!(matches!(b.wait_timeout(LONG), Err(Error::Broken)), "{who}");
    b.reset();
    assert!(!b.is_broken(), "{who}: barrier reset");
    assert_eq!(q.get_timeout(LONG).unwrap(), 7, "{who}: queued message");
    q.put(8u64).unwrap();
    assert_eq!(q.get_timeout(LONG).unwrap(), 8, "{who}: queue usable");
    assert_eq!(
        c.recv_timeout::<u64>(LONG).unwrap(),
        9,
        "{who}: piped message"
    );
    assert!(
        matches!(c.recv_timeout::<u64>(LONG), Err(Error::Eof)),
        "{who}: a dead pipe peer is Eof"
    );
}

/// Holds `set` as the README's victim does: the mutex locked at 41 (the
/// returned guard), a unit of the semaphore, the event set, a thread waiting
/// on the barrier, a message in the queue and one in the pipe (whose writing
/// end `pipe_end` it keeps).
fn hold<'a>(set: &'a Set, pipe_end: &Connection) -> shmproc::sync::MutexGuard<'a, u64> {
    let (m, s, e, b, q, _) = set;
    let mut g = m.lock().unwrap();
    *g = 41;
    s.acquire().unwrap();
    e.set();
    let b = Barrier::attach(&b.handle()).unwrap();
    std::thread::spawn(move || {
        let _ = b.wait();
    });
    q.put(7u64).unwrap();
    pipe_end.send(&9u64).unwrap();
    g
}

fn new_set() -> (Set, Connection) {
    let (r, w) = Pipe::new(false).unwrap();
    (
        (
            Mutex::new(0u64).unwrap(),
            Semaphore::new(1).unwrap(),
            Event::new().unwrap(),
            Barrier::new(2).unwrap(),
            Queue::new().unwrap(),
            r,
        ),
        w,
    )
}

#[test]
#[ignore]
fn child_hold_everything() {
    let Some((parents, parent_pipe)) = child_input::<(Set, Connection)>("holder") else {
        return;
    };
    let _held = hold(&parents, &parent_pipe);
    // Its own set, created here: the parent attaches to it while we live.
    let (own, own_pipe) = new_set();
    let _held_own = hold(&own, &own_pipe);
    // And the other things the README says are memfds.
    let array = SharedView::<u64>::from_slice(&[1, 2, 3]).unwrap();
    let pool = Pool::new(1).unwrap();
    assert_eq!(pool.map(square, [1u64, 2, 3]).unwrap(), vec![1, 4, 9]);
    println!("ready {}", encode(&(&own, array.handle())));
    std::thread::sleep(LONG);
    drop(pool);
}

#[test]
fn a_sigkilled_holder_leaves_nothing_in_dev_shm_and_every_primitive_usable() {
    let _w = Watchdog::new("kill -9 leaves nothing", LONG);
    let (parents, parent_pipe) = new_set();
    let mut kid = spawn_child("child_hold_everything", "holder", &(&parents, &parent_pipe));
    drop(parent_pipe);
    let ready = kid.read_until("ready ");
    let (own, array): (Set, shmproc::segment::ArrayHandle) = decode(&ready);
    let array = SharedView::<u64>::attach(&array).unwrap();
    let pid = kid.pid();
    assert_eq!(names_of(pid), Vec::<String>::new(), "while it runs");
    for (what, h) in [
        ("mutex", own.0.handle().segment),
        ("semaphore", own.1.handle().segment),
        ("event", own.2.handle().segment),
        ("barrier", own.3.handle().segment),
        ("queue", own.4.handle().segment),
        ("shared array", array.handle().segment),
    ] {
        assert!(
            matches!(h, SegmentHandle::Memfd { pid: p, .. } if p == pid),
            "the child's {what} is in {h:?}"
        );
    }

    let st = kid.kill9();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&st), Some(9));
    // Its pool workers notice the death through their liveness pipe; nothing
    // of the child or of its workers may be left either way.
    assert_eq!(names_of(pid), Vec::<String>::new(), "after kill -9");

    use_after_death(&parents, "created by the parent");
    // Our mappings keep the dead child's memfds alive.
    use_after_death(&own, "created by the dead child");
    assert_eq!(array.to_vec(), vec![1, 2, 3]);
}

#[test]
fn process_private_objects_are_memfds_with_no_name_in_dev_shm() {
    let (set, w) = new_set();
    let (m, s, e, b, q, r) = &set;
    let a = SharedView::<u64>::new(10).unwrap();
    assert_own_memfd("SharedView::new", &a.handle().segment);
    assert_own_memfd("Mutex::new", &m.handle().segment);
    assert_own_memfd("Semaphore::new", &s.handle().segment);
    assert_own_memfd("Event::new", &e.handle().segment);
    assert_own_memfd("Barrier::new", &b.handle().segment);
    assert_own_memfd("Queue::new", &q.handle().segment);
    assert_own_memfd("Pipe::new (read end)", &r.handle().unwrap().segment);
    assert_own_memfd("Pipe::new (write end)", &w.handle().unwrap().segment);
    let sb = Semaphore::bounded(1).unwrap();
    assert_own_memfd("Semaphore::bounded", &sb.handle().segment);
}

#[test]
fn primitives_placed_in_a_named_segment_stay_there() {
    let seg = std::sync::Arc::new(Segment::create(1 << 16).unwrap());
    let name = seg.name().unwrap().to_owned();
    let here = SegmentHandle::Shm { name: name.clone() };
    assert_eq!(Mutex::new_in(&seg, 0u64).unwrap().handle().segment, here);
    assert_eq!(Semaphore::new_in(&seg, 1).unwrap().handle().segment, here);
    assert_eq!(Event::new_in(&seg).unwrap().handle().segment, here);
    assert_eq!(Barrier::new_in(&seg, 2).unwrap().handle().segment, here);
    assert_eq!(
        SharedView::<u64>::new_in(&seg, 4).unwrap().handle().segment,
        here
    );
}

#[test]
fn named_segments_are_unlinked_by_their_creator_on_drop() {
    let path = |n: &str| Path::new("/dev/shm").join(n);
    let seg = Segment::create(4096).unwrap();
    let name = seg.name().unwrap().to_owned();
    assert_eq!(seg.handle(), SegmentHandle::Shm { name: name.clone() });
    assert!(path(&name).exists());
    assert!(names_of(std::process::id()).contains(&name));
    // An opener is not the creator: dropping it keeps the name.
    drop(Segment::open(&name).unwrap());
    assert!(path(&name).exists());
    drop(seg);
    assert!(!path(&name).exists());

    let chosen = format!("shmproc-test-leaks-{}", std::process::id());
    let seg = Segment::builder().name(chosen.clone()).create(64).unwrap();
    assert_eq!(
        seg.handle(),
        SegmentHandle::Shm {
            name: chosen.clone()
        }
    );
    assert!(path(&chosen).exists());
    drop(seg);
    assert!(!path(&chosen).exists());
}
