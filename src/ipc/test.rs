//! Single-process tests of the ring protocol (threads stand in for processes;
//! tests/ipc_queue.rs and tests/ipc_pipe.rs use real ones).

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::ring::{test_hooks, Wait};
use super::*;
use crate::Error;

#[test]
fn fifo_and_wraparound_in_a_small_ring() {
    let q = Queue::<u64>::with_ring_bytes(0, 1024).unwrap();
    assert_eq!(q.ring_bytes(), 1024);
    let mut next = 0u64;
    for round in 0..200u64 {
        for i in 0..20 {
            q.put(round * 100 + i).unwrap();
        }
        for _ in 0..20 {
            let v = q.get().unwrap();
            assert_eq!(v, next / 20 * 100 + next % 20);
            next += 1;
        }
    }
    assert!(q.empty());
}

#[test]
fn strings_of_every_length_around_the_frame_limit() {
    let q = Queue::<Vec<u8>>::with_ring_bytes(0, 1024).unwrap();
    let qc = q.clone();
    let t = thread::spawn(move || {
        for n in 0..700usize {
            qc.put(vec![(n % 251) as u8; n]).unwrap();
        }
    });
    for n in 0..700usize {
        let v = q.get().unwrap();
        assert_eq!(v.len(), n);
        assert!(v.iter().all(|&b| b == (n % 251) as u8));
    }
    t.join().unwrap();
}

#[test]
fn mpmc_threads_deliver_everything_once() {
    let q = Queue::<(u32, u32)>::with_ring_bytes(0, 4096).unwrap();
    let producers = 3u32;
    let per = 20_000u32;
    let sum = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let count = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut hs = Vec::new();
    for p in 0..producers {
        let q = q.clone();
        hs.push(thread::spawn(move || {
            for i in 0..per {
                q.put((p, i)).unwrap();
            }
        }));
    }
    let mut cs = Vec::new();
    for _ in 0..3 {
        let q = q.clone();
        let sum = Arc::clone(&sum);
        let count = Arc::clone(&count);
        cs.push(thread::spawn(move || {
            let mut last = [None::<u32>; 3];
            loop {
                match q.get() {
                    Ok((p, i)) => {
                        // FIFO per producer, as seen by each consumer.
                        if let Some(l) = last[p as usize] {
                            assert!(i > l);
                        }
                        last[p as usize] = Some(i);
                        sum.fetch_add(i as u64, std::sync::atomic::Ordering::Relaxed);
                        count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Err(Error::Closed) => return,
                    Err(e) => panic!("{e}"),
                }
            }
        }));
    }
    for h in hs {
        h.join().unwrap();
    }
    q.close().unwrap();
    for c in cs {
        c.join().unwrap();
    }
    let per64 = per as u64;
    assert_eq!(count.load(std::sync::atomic::Ordering::Relaxed), 3 * per64);
    assert_eq!(
        sum.load(std::sync::atomic::Ordering::Relaxed),
        3 * per64 * (per64 - 1) / 2
    );
}

#[test]
fn maxsize_blocks_and_times_out() {
    let q = Queue::<u8>::with_maxsize(2).unwrap();
    q.put(1).unwrap();
    q.put(2).unwrap();
    assert!(q.full());
    let t = Instant::now();
    assert!(matches!(
        q.put_timeout(3, Duration::from_millis(50)),
        Err(Error::Timeout)
    ));
    assert!(t.elapsed() >= Duration::from_millis(45));
    let qc = q.clone();
    let h = thread::spawn(move || qc.put(3)); // blocks until a get
    thread::sleep(Duration::from_millis(30));
    assert_eq!(q.get().unwrap(), 1);
    h.join().unwrap().unwrap();
    assert_eq!(q.qsize(), 2);
    assert_eq!((q.get().unwrap(), q.get().unwrap()), (2, 3));
}

#[test]
fn empty_full_and_closed() {
    let q = Queue::<u8>::with_maxsize(1).unwrap();
    assert!(matches!(q.get_nowait(), Err(Error::Empty)));
    assert!(matches!(
        q.get_timeout(Duration::from_millis(5)),
        Err(Error::Timeout)
    ));
    q.put_nowait(1).unwrap();
    assert!(matches!(q.put_nowait(2), Err(Error::Full)));
    let qc = q.clone();
    let blocked_put = thread::spawn(move || qc.put(9));
    let q2 = Queue::<u8>::new().unwrap();
    let q2c = q2.clone();
    let blocked_get = thread::spawn(move || q2c.get());
    thread::sleep(Duration::from_millis(30));
    q.close().unwrap();
    q2.close().unwrap();
    assert!(matches!(blocked_put.join().unwrap(), Err(Error::Closed)));
    assert!(matches!(blocked_get.join().unwrap(), Err(Error::Closed)));
    assert!(matches!(q.put(3), Err(Error::Closed)));
    assert_eq!(q.get().unwrap(), 1);
    assert!(matches!(q.get(), Err(Error::Closed)));
    assert!(matches!(q.get_nowait(), Err(Error::Closed)));
}

#[test]
fn big_messages_stream_through_a_small_ring() {
    let q = Queue::<Pods<u32>>::with_ring_bytes(0, 4096).unwrap();
    let qc = q.clone();
    let sizes = [0usize, 1, 255, 256, 1000, 1023, 1024, 5000, 300_000];
    let t = thread::spawn(move || {
        for (k, &n) in sizes.iter().enumerate() {
            let v: Vec<u32> = (0..n as u32).map(|i| i ^ k as u32).collect();
            qc.put(Pods(v)).unwrap();
        }
    });
    for (k, &n) in sizes.iter().enumerate() {
        let v = q.get().unwrap().0;
        assert_eq!(v.len(), n);
        assert!(v.iter().enumerate().all(|(i, &x)| x == i as u32 ^ k as u32));
    }
    t.join().unwrap();
    assert_eq!(q.qsize(), 0);
}

#[test]
fn a_stream_put_that_times_out_is_dropped_whole() {
    let q = Queue::<Pods<u8>>::with_ring_bytes(0, 1024).unwrap();
    // Nobody reads: the stream fills the ring and the put times out.
    assert!(matches!(
        q.put_timeout(Pods(vec![1; 10_000]), Duration::from_millis(30)),
        Err(Error::Timeout)
    ));
    assert_eq!(q.qsize(), 0);
    // The committed chunks of the abandoned stream fill the ring until a
    // reader drops them; it never sees any of them.
    assert!(matches!(q.get_nowait(), Err(Error::Empty)));
    q.put(Pods(vec![2; 10])).unwrap();
    assert_eq!(q.get().unwrap().0, vec![2; 10]);
    assert!(matches!(q.get_nowait(), Err(Error::Empty)));
}

#[test]
fn a_writer_dying_uncommitted_is_rolled_back() {
    let q = Queue::<Raw<u64>>::with_ring_bytes(0, 1024).unwrap();
    q.put(Raw(1)).unwrap();
    let ring = q.ring_for_tests().clone();
    // A thread that exits holding a robust mutex is a dead owner.
    thread::spawn(move || test_hooks::write_uncommitted(&ring, &99u64.to_le_bytes()))
        .join()
        .unwrap();
    // The next put gets OwnerDied, rolls back the count and overwrites the
    // uncommitted frame.
    q.put(Raw(2)).unwrap();
    assert_eq!(q.qsize(), 2);
    assert_eq!(q.get().unwrap().0, 1);
    assert_eq!(q.get().unwrap().0, 2);
    assert!(q.empty());
}

#[test]
fn a_stream_whose_writer_died_is_dropped_and_the_reader_moves_on() {
    let q = Queue::<Pods<u8>>::with_ring_bytes(0, 4096).unwrap();
    q.put(Pods(vec![5; 3])).unwrap();
    let ring = q.ring_for_tests().clone();
    thread::spawn(move || test_hooks::start_stream_and_die(&ring, 100_000))
        .join()
        .unwrap();
    assert_eq!(q.get().unwrap().0, vec![5; 3]);
    // Only the dead stream's first chunk is there: the reader finds the
    // writer dead (robust try-lock), drops the chunk and reports empty.
    assert!(matches!(
        q.get_timeout(Duration::from_millis(300)),
        Err(Error::Timeout)
    ));
    q.put(Pods(vec![6; 3])).unwrap();
    assert_eq!(q.get().unwrap().0, vec![6; 3]);
    assert_eq!(q.qsize(), 0);
}

#[test]
fn joinable_counts_tasks() {
    let q = JoinableQueue::<u32>::new().unwrap();
    assert!(matches!(q.task_done(), Err(Error::TooManyTaskDone)));
    for i in 0..10 {
        q.put(i).unwrap();
    }
    let qc = q.clone();
    let worker = thread::spawn(move || {
        for _ in 0..10 {
            qc.get().unwrap();
            thread::sleep(Duration::from_millis(1));
            qc.task_done().unwrap();
        }
    });
    q.join().unwrap();
    assert_eq!(q.unfinished(), 0);
    worker.join().unwrap();
    assert!(matches!(q.task_done(), Err(Error::TooManyTaskDone)));
}

#[test]
fn handles_reattach_and_check_the_type() {
    let q = Queue::<String>::new().unwrap();
    let bytes = postcard::to_allocvec(&q).unwrap();
    let q2: Queue<String> = postcard::from_bytes(&bytes).unwrap();
    q2.put("x".to_string()).unwrap();
    assert_eq!(q.get().unwrap(), "x");
    assert!(matches!(
        Queue::<u32>::attach(&q.handle()),
        Err(Error::TypeMismatch { .. })
    ));
    assert!(matches!(
        JoinableQueue::<String>::attach(&q.handle()),
        Err(Error::TypeMismatch { .. })
    ));
    // A queue of queues.
    let outer = Queue::<Queue<String>>::new().unwrap();
    outer.put(&q).unwrap();
    let inner = outer.get().unwrap();
    inner.put("y".to_string()).unwrap();
    assert_eq!(q.get().unwrap(), "y");
}

#[test]
fn the_creator_unlinks_its_segment() {
    let q = Queue::<u8>::new().unwrap();
    let h = q.handle();
    let q2 = q.clone();
    drop(q);
    assert!(Queue::<u8>::attach(&h).is_ok(), "a clone keeps it alive");
    drop(q2);
    assert!(matches!(
        Queue::<u8>::attach(&h),
        Err(Error::SegmentNotFound(_))
    ));
}

#[test]
fn a_corrupt_frame_header_is_an_error_not_ub() {
    let q = Queue::<u64>::with_ring_bytes(0, 1024).unwrap();
    q.put(7).unwrap();
    test_hooks::scribble_head_frame(q.ring_for_tests(), u64::MAX);
    assert!(matches!(q.get(), Err(Error::Corrupt(_))));
    test_hooks::scribble_head_frame(q.ring_for_tests(), 0);
    assert!(matches!(q.get(), Err(Error::Corrupt(_))));
}

#[test]
fn pipe_send_recv_eof_and_broken_pipe() {
    let (a, b) = Pipe::with_ring_bytes(true, 1024).unwrap();
    for i in 0..1000u32 {
        a.send(&i).unwrap();
        assert_eq!(b.recv::<u32>().unwrap(), i);
    }
    b.send(&"back".to_string()).unwrap();
    assert_eq!(a.recv::<String>().unwrap(), "back");
    // Big message through a 1 KiB ring, with the reader in another thread.
    let big: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
    let expect = big.clone();
    let reader = thread::spawn(move || {
        let got = b.recv_bytes().unwrap();
        assert_eq!(got, expect);
        // a closes: b drains then sees Eof
        assert_eq!(b.recv::<u8>().unwrap(), 1);
        assert!(matches!(b.recv::<u8>(), Err(Error::Eof)));
        assert!(b.poll(Duration::ZERO).unwrap(), "recv would not block");
        assert!(matches!(b.send(&0u8), Err(Error::BrokenPipe)));
    });
    a.send_bytes(&big).unwrap();
    a.send(&1u8).unwrap();
    a.close().unwrap();
    assert!(matches!(a.send(&1u8), Err(Error::Closed)));
    reader.join().unwrap();
}

#[test]
fn blocked_recv_wakes_with_eof_when_the_writer_closes() {
    let (r, w) = Pipe::new(false).unwrap();
    assert!(matches!(r.send(&1u8), Err(Error::InvalidState(_))));
    assert!(matches!(w.recv::<u8>(), Err(Error::InvalidState(_))));
    let t = thread::spawn(move || r.recv::<u8>());
    thread::sleep(Duration::from_millis(30));
    drop(w);
    assert!(matches!(t.join().unwrap(), Err(Error::Eof)));
}

#[test]
fn serialized_connection_keeps_the_end_open_until_attached() {
    let (r, w) = Pipe::new(false).unwrap();
    let bytes = postcard::to_allocvec(&w).unwrap();
    drop(w); // the pending serialized copy still holds the end
    assert!(!r.poll(Duration::from_millis(20)).unwrap());
    let w2: Connection = postcard::from_bytes(&bytes).unwrap();
    w2.send(&5u8).unwrap();
    assert_eq!(r.recv::<u8>().unwrap(), 5);
    drop(w2);
    assert!(matches!(r.recv::<u8>(), Err(Error::Eof)));
}

#[test]
fn recv_timeout_and_wait_never() {
    let (a, b) = Pipe::new(true).unwrap();
    let t = Instant::now();
    assert!(matches!(
        b.recv_timeout::<u8>(Duration::from_millis(40)),
        Err(Error::Timeout)
    ));
    assert!(t.elapsed() >= Duration::from_millis(35));
    assert!(!a.poll(Duration::ZERO).unwrap());
    let _ = Wait::Never;
}

#[test]
fn a_cloned_connection_keeps_the_end_open_and_shares_it() {
    let (a, b) = Pipe::new(true).unwrap();
    let b2 = b.try_clone().unwrap();
    a.send(&1u32).unwrap();
    assert_eq!(b2.recv::<u32>().unwrap(), 1);
    b.close().unwrap();
    // The clone still holds the end: the peer can send, and it arrives.
    a.send(&2u32).unwrap();
    assert_eq!(b2.recv::<u32>().unwrap(), 2);
    b2.close().unwrap();
    assert!(matches!(b.try_clone(), Err(Error::Closed)));
    // Now nobody holds the end: the peer's send is a broken pipe.
    assert!(matches!(a.send(&3u32), Err(Error::BrokenPipe)));
}
