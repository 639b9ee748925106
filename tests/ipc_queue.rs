//! Queues between real processes: this test binary re-executes itself to run
//! the `#[ignore]`d `child_*` tests, which receive the queues as serialized
//! arguments (handles) and attach.

mod common;

use std::time::{Duration, Instant};

use common::{child_input, spawn_child, ChildTest, Watchdog};
use shmproc::ipc::{JoinableQueue, Pods, Queue};
use shmproc::Error;

const LONG: Duration = Duration::from_secs(120);

/// A self-checking message: its payload is derived from (producer, seq), and
/// every 5th one is large enough to be streamed through a 64 KiB ring.
type Msg = (u8, u32, Vec<u8>);

fn payload(p: u8, seq: u32) -> Vec<u8> {
    let len = if seq % 5 == 4 {
        40_000 + (seq as usize * 97) % 50_000
    } else {
        (seq as usize * 13) % 200
    };
    (0..len)
        .map(|i| (i as u32).wrapping_mul(31).wrapping_add(seq) as u8 ^ p)
        .collect()
}

fn check(m: &Msg) {
    assert!(
        m.2 == payload(m.0, m.1),
        "message ({}, {}) of {} bytes is torn",
        m.0,
        m.1,
        m.2.len()
    );
}

// ---- FIFO per producer, and the handle travelling to a child ----------------

#[test]
#[ignore]
fn child_producer() {
    let Some((q, id, n)) = child_input::<(Queue<Msg>, u8, u32)>("producer") else {
        return;
    };
    for i in 0..n {
        q.put((id, i, payload(id, i))).unwrap();
    }
    println!("produced");
}

#[test]
fn fifo_order_from_a_producer_process() {
    let _w = Watchdog::new("fifo", LONG);
    let q = Queue::<Msg>::with_ring_bytes(0, 64 << 10).unwrap();
    let n = 3000;
    let mut kid = spawn_child("child_producer", "producer", &(&q, 7u8, n));
    for i in 0..n {
        let m = q.get_timeout(Duration::from_secs(60)).unwrap();
        assert_eq!((m.0, m.1), (7, i));
        check(&m);
    }
    assert!(kid.wait(LONG).success());
    assert!(q.empty());
    assert_eq!(q.qsize(), 0);
}

// ---- 3 producers x 3 consumers ------------------------------------------------

#[test]
#[ignore]
fn child_consumer() {
    let Some((q, results)) = child_input::<(Queue<Option<Msg>>, Queue<(u64, u64)>)>("consumer")
    else {
        return;
    };
    let (mut count, mut sum) = (0u64, 0u64);
    let mut last = [None::<u32>; 3];
    while let Some(m) = q.get().unwrap() {
        check(&m);
        let p = m.0 as usize;
        assert!(last[p].is_none_or(|l| m.1 > l), "FIFO per producer");
        last[p] = Some(m.1);
        count += 1;
        sum += (m.0 as u64 + 1) * 1_000_000 + m.1 as u64;
    }
    results.put((count, sum)).unwrap();
}

#[test]
#[ignore]
fn child_opt_producer() {
    let Some((q, id, n)) = child_input::<(Queue<Option<Msg>>, u8, u32)>("opt_producer") else {
        return;
    };
    for i in 0..n {
        q.put(Some((id, i, payload(id, i)))).unwrap();
    }
}

#[test]
fn three_by_three_processes_deliver_every_message_exactly_once() {
    let _w = Watchdog::new("3x3", Duration::from_secs(240));
    let q = Queue::<Option<Msg>>::with_ring_bytes(0, 64 << 10).unwrap();
    let results = Queue::<(u64, u64)>::new().unwrap();
    let n = 2000u32;
    let mut consumers: Vec<ChildTest> = (0..3)
        .map(|_| spawn_child("child_consumer", "consumer", &(&q, &results)))
        .collect();
    let mut producers: Vec<ChildTest> = (0..3u8)
        .map(|p| spawn_child("child_opt_producer", "opt_producer", &(&q, p, n)))
        .collect();
    for p in &mut producers {
        assert!(p.wait(Duration::from_secs(200)).success());
    }
    for _ in 0..3 {
        q.put(None).unwrap();
    }
    let (mut count, mut sum) = (0, 0);
    for _ in 0..3 {
        let (c, s) = results.get_timeout(Duration::from_secs(200)).unwrap();
        count += c;
        sum += s;
    }
    for c in &mut consumers {
        assert!(c.wait(LONG).success());
    }
    let n64 = n as u64;
    let expect: u64 = (1..=3u64)
        .map(|p| p * 1_000_000 * n64 + n64 * (n64 - 1) / 2)
        .sum();
    assert_eq!(count, 3 * n64);
    assert_eq!(sum, expect);
    assert!(q.empty());
}

// ---- maxsize blocks a producer process ----------------------------------------

#[test]
#[ignore]
fn child_bounded_producer() {
    let Some(q) = child_input::<Queue<u32>>("bounded") else {
        return;
    };
    for i in 0..5 {
        q.put(i).unwrap();
        println!("put {i}");
    }
}

#[test]
fn maxsize_blocks_a_producer_process_until_a_get() {
    let _w = Watchdog::new("maxsize", LONG);
    let q = Queue::<u32>::with_maxsize(2).unwrap();
    let mut kid = spawn_child("child_bounded_producer", "bounded", &q);
    kid.read_until("put 1");
    // The third put blocks: nothing more is printed while the queue is full.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(q.qsize(), 2);
    assert!(q.full());
    assert!(matches!(
        q.put_timeout(99, Duration::from_millis(50)),
        Err(Error::Timeout)
    ));
    for i in 0..5 {
        assert_eq!(q.get_timeout(Duration::from_secs(60)).unwrap(), i);
    }
    assert!(kid.wait(LONG).success());
    assert!(matches!(q.get_nowait(), Err(Error::Empty)));
}

// ---- close wakes a consumer blocked in another process -------------------------

#[test]
#[ignore]
fn child_blocked_getter() {
    let Some(q) = child_input::<Queue<u32>>("getter") else {
        return;
    };
    assert_eq!(q.get().unwrap(), 1);
    println!("waiting");
    match q.get() {
        Err(Error::Closed) => std::process::exit(7),
        other => panic!("expected Closed, got {other:?}"),
    }
}

#[test]
fn close_wakes_a_blocked_get_in_another_process_after_draining() {
    let _w = Watchdog::new("close", LONG);
    let q = Queue::<u32>::new().unwrap();
    q.put(1).unwrap();
    let mut kid = spawn_child("child_blocked_getter", "getter", &q);
    kid.read_until("waiting");
    std::thread::sleep(Duration::from_millis(50));
    q.close().unwrap();
    assert!(matches!(q.put(2), Err(Error::Closed)));
    assert_eq!(kid.wait(LONG).code(), Some(7));
}

// ---- JoinableQueue with consumer processes (seed 17) ----------------------------

#[test]
#[ignore]
fn child_task_worker() {
    let Some((q, done)) = child_input::<(JoinableQueue<u32>, Queue<u32>)>("worker") else {
        return;
    };
    // A daemon consumer: loops until it is killed.
    loop {
        let item = q.get().unwrap();
        std::thread::sleep(Duration::from_millis(2));
        done.put(item * 2).unwrap();
        q.task_done().unwrap();
    }
}

#[test]
fn joinable_queue_join_returns_when_worker_processes_are_done() {
    let _w = Watchdog::new("joinable", LONG);
    let q = JoinableQueue::<u32>::new().unwrap();
    let done = Queue::<u32>::new().unwrap();
    let mut workers: Vec<ChildTest> = (0..3)
        .map(|_| spawn_child("child_task_worker", "worker", &(&q, &done)))
        .collect();
    for i in 0..30 {
        q.put(i).unwrap();
    }
    q.join_timeout(Duration::from_secs(100)).unwrap();
    assert_eq!(q.unfinished(), 0);
    // Every task was processed before join returned.
    let mut got: Vec<u32> = (0..30).map(|_| done.get_nowait().unwrap()).collect();
    got.sort();
    assert_eq!(got, (0..30).map(|i| i * 2).collect::<Vec<_>>());
    assert!(matches!(q.task_done(), Err(Error::TooManyTaskDone)));
    for w in &mut workers {
        w.kill9();
    }
}

// ---- a 64 MiB message round trip ---------------------------------------------

#[test]
#[ignore]
fn child_echo_big() {
    let Some((inq, outq)) = child_input::<(Queue<Pods<u64>>, Queue<Pods<u64>>)>("echo_big") else {
        return;
    };
    let m = inq.get().unwrap();
    outq.put(&m).unwrap();
}

#[test]
fn a_64_mib_message_round_trips_intact() {
    let _w = Watchdog::new("64 MiB", Duration::from_secs(180));
    let inq = Queue::<Pods<u64>>::new().unwrap();
    let outq = Queue::<Pods<u64>>::new().unwrap();
    let n = (64 << 20) / 8;
    let data: Vec<u64> = (0..n as u64)
        .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .collect();
    let mut kid = spawn_child("child_echo_big", "echo_big", &(&inq, &outq));
    inq.put(Pods(data.clone())).unwrap();
    let back = outq.get_timeout(Duration::from_secs(150)).unwrap();
    assert_eq!(back.0.len(), n);
    assert!(back.0 == data, "64 MiB message came back different");
    assert!(kid.wait(LONG).success());
}

// ---- a producer SIGKILLed in a loop of puts -------------------------------------

#[test]
#[ignore]
fn child_endless_producer() {
    let Some((q, id)) = child_input::<(Queue<Msg>, u8)>("endless") else {
        return;
    };
    let mut i = 0u32;
    loop {
        q.put((id, i, payload(id, i))).unwrap();
        if i == 50 {
            println!("running");
        }
        i += 1;
    }
}

#[test]
fn a_producer_killed_mid_put_never_wedges_or_tears() {
    let _w = Watchdog::new("producer killed", Duration::from_secs(240));
    for round in 0..3u64 {
        let q = Queue::<Msg>::with_ring_bytes(0, 64 << 10).unwrap();
        let mut victim = spawn_child("child_endless_producer", "endless", &(&q, 0u8));
        let n = 1500u32;
        let mut steady = spawn_child("child_producer", "producer", &(&q, 1u8, n));
        let mut next = [0u32; 2];
        let mut killed = false;
        let start = Instant::now();
        while next[1] < n {
            let m = q.get_timeout(Duration::from_secs(60)).unwrap();
            check(&m);
            let p = m.0 as usize;
            // FIFO and nothing skipped: every message the victim committed
            // arrives, in order, and none is torn.
            assert_eq!(m.1, next[p], "producer {p} out of order");
            next[p] += 1;
            // Kill at different points in different rounds.
            if !killed && next[0] > 200 + 37 * round as u32 {
                victim.kill9();
                killed = true;
            }
        }
        assert!(killed || start.elapsed() > Duration::ZERO);
        if !killed {
            victim.kill9();
        }
        assert!(steady.wait(LONG).success());
        // Drain what the victim committed before it died; then the queue is
        // empty and fully usable.
        loop {
            match q.get_timeout(Duration::from_millis(500)) {
                Ok(m) => {
                    check(&m);
                    assert_eq!(m.1, next[m.0 as usize]);
                    next[m.0 as usize] += 1;
                }
                Err(Error::Timeout) => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(q.qsize(), 0, "counts stay consistent");
        q.put((9, 4, payload(9, 4))).unwrap();
        check(&q.get().unwrap());
    }
}

// ---- a consumer SIGKILLed mid-get -------------------------------------------------

#[test]
#[ignore]
fn child_endless_consumer() {
    let Some(q) = child_input::<Queue<Msg>>("eater") else {
        return;
    };
    let mut n = 0;
    loop {
        let m = q.get().unwrap();
        check(&m);
        n += 1;
        if n == 20 {
            println!("eating");
        }
        // A slow consumer, so the producer fills the ring and blocks on it.
        if n % 4 == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

#[test]
fn a_consumer_killed_mid_get_never_wedges_producers() {
    let _w = Watchdog::new("consumer killed", Duration::from_secs(240));
    let q = Queue::<Msg>::with_ring_bytes(0, 64 << 10).unwrap();
    let mut eater = spawn_child("child_endless_consumer", "eater", &q);
    let n = 1500u32;
    let qp = q.clone();
    let producer = std::thread::spawn(move || {
        for i in 0..n {
            qp.put((3, i, payload(3, i))).unwrap();
        }
    });
    eater.read_until("eating");
    eater.kill9();
    // We take over as the consumer: whatever is left arrives whole and in
    // order, and the producer is not blocked by the dead consumer.
    let mut last = None::<u32>;
    let mut got = 0;
    loop {
        match q.get_timeout(Duration::from_secs(5)) {
            Ok(m) => {
                check(&m);
                assert!(last.is_none_or(|l| m.1 > l));
                last = Some(m.1);
                got += 1;
            }
            Err(Error::Timeout) => break,
            Err(e) => panic!("{e}"),
        }
    }
    producer.join().unwrap();
    assert!(got > 0);
    assert_eq!(last, Some(n - 1), "the last message arrives");
    assert_eq!(q.qsize(), 0);
}

#[test]
fn attaching_as_another_type_names_both_types() {
    let q = shmproc::Queue::<u64>::new().unwrap();
    match shmproc::Queue::<String>::attach(&q.handle()) {
        Err(shmproc::Error::TypeMismatch { expected, found }) => {
            assert_eq!(expected, "a queue of alloc::string::String");
            assert_eq!(found, "a queue of u64");
        }
        other => panic!("expected a type mismatch, got {other:?}"),
    }
}
