//! The process pool with real worker processes: every method against a
//! sequential run, errors, panics, killed workers, laziness, clean-up.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{child_input, pid_gone, spawn_child, wait_gone, watchdog};
use shmproc::pool::TaskOptions;
use shmproc::{Error, Pool, SharedArray, StartMethod};

const LIMIT: Duration = Duration::from_secs(120);

fn power(x: u64) -> u64 {
    shmproc_kernels::power_u64(x, 4)
}

fn power_times(x: u64, times: u32) -> u64 {
    shmproc_kernels::power_u64(x, times)
}

fn square(x: i64) -> i64 {
    x * x
}

fn boom(x: u32) -> u32 {
    if x == 3 {
        panic!("boom at {x}");
    }
    x
}

fn slow_square(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(20));
    x * x
}

fn sleep_ms(ms: u64) -> u32 {
    std::thread::sleep(Duration::from_millis(ms));
    std::process::id()
}

fn my_pid(_: ()) -> u32 {
    std::process::id()
}

fn big_echo(v: Vec<u8>) -> Vec<u8> {
    v.iter().map(|b| b.wrapping_add(1)).collect()
}

fn assert_pool_gone(pids: &[u32]) {
    for &p in pids {
        assert!(
            wait_gone(p, Duration::from_secs(10)),
            "worker {p} still alive"
        );
    }
}

/// Segments in /dev/shm named after process `pid`.
fn segments_of(pid: u32) -> Vec<String> {
    shmproc::segment::list()
        .unwrap()
        .into_iter()
        .filter(|s| s.creator_pid == Some(pid))
        .map(|s| s.name)
        .collect()
}

/// Runs the `#[ignore]`d test `name` in a process of its own (so that no other
/// test of this binary makes segments meanwhile), then checks that it passed
/// and left no segment behind.
fn isolated(name: &str) {
    let mut kid = spawn_child(name, "isolated", &());
    let pid = kid.pid();
    let st = kid.wait(Duration::from_secs(100));
    assert!(st.success(), "{name} failed in its own process: {st:?}");
    assert_eq!(segments_of(pid), Vec::<String>::new());
}

#[test]
fn every_method_matches_a_sequential_run() {
    let _w = watchdog("every method", LIMIT);
    let pool = Pool::new(3).unwrap();
    let xs: Vec<i64> = (-50..50).collect();
    let want: Vec<i64> = xs.iter().map(|&x| square(x)).collect();

    assert_eq!(pool.apply(power, 2).unwrap(), 65536);
    let rs: Vec<_> = [1u64, 2, 3]
        .iter()
        .map(|&n| pool.apply_async(power, n).unwrap())
        .collect();
    let got: Vec<u64> = rs.iter().map(|r| r.get().unwrap()).collect();
    assert_eq!(got, [1, 65536, 43046721]);
    assert!(rs.iter().all(|r| r.ready() && r.successful().unwrap()));

    assert_eq!(pool.map(square, xs.clone()).unwrap(), want);
    assert_eq!(
        pool.map_opts(square, xs.clone(), TaskOptions::new().chunksize(7))
            .unwrap(),
        want
    );
    assert_eq!(
        pool.map_opts(square, xs.clone(), TaskOptions::new().chunksize(1000))
            .unwrap(),
        want
    );
    assert_eq!(
        pool.map(square, Vec::<i64>::new()).unwrap(),
        Vec::<i64>::new()
    );
    assert_eq!(
        pool.map_async(square, xs.clone()).unwrap().get().unwrap(),
        want
    );
    assert_eq!(
        pool.map_async_opts(square, xs.clone(), TaskOptions::new().chunksize(3))
            .unwrap()
            .get()
            .unwrap(),
        want
    );
    let ordered: Vec<i64> = pool.imap(square, xs.clone()).map(Result::unwrap).collect();
    assert_eq!(ordered, want);
    let ordered: Vec<i64> = pool
        .imap_opts(square, xs.clone(), TaskOptions::new().chunksize(9))
        .map(Result::unwrap)
        .collect();
    assert_eq!(ordered, want);
    let mut unordered: Vec<i64> = pool
        .imap_unordered(square, xs.clone())
        .map(Result::unwrap)
        .collect();
    unordered.sort_unstable();
    let mut sorted = want.clone();
    sorted.sort_unstable();
    assert_eq!(unordered, sorted);

    let pairs: Vec<(u64, u32)> = vec![(1, 4), (2, 4), (3, 4), (2, 1)];
    assert_eq!(
        pool.starmap(power_times, pairs.clone()).unwrap(),
        [1, 65536, 43046721, 4]
    );
    assert_eq!(
        pool.starmap_async(power_times, pairs)
            .unwrap()
            .get()
            .unwrap(),
        [1, 65536, 43046721, 4]
    );
    assert_eq!(
        pool.map_with(power_times, 4u32, [1u64, 2, 3]).unwrap(),
        [1, 65536, 43046721]
    );
    // A closure without captures is a task too.
    assert_eq!(
        pool.apply(|s: String| s.len(), "héllo".to_string())
            .unwrap(),
        6
    );
    pool.close();
    pool.join().unwrap();
}

#[test]
fn callbacks_run_in_the_parent() {
    let _w = watchdog("callbacks", LIMIT);
    let pool = Pool::new(2).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(Mutex::new(Vec::new()));
    for i in 0..6u32 {
        let (s, e) = (Arc::clone(&seen), Arc::clone(&errors));
        pool.apply_async_with(
            boom,
            i,
            move |r: &u32| {
                if *r == 0 {
                    // A slow callback: join() must still wait for it.
                    std::thread::sleep(Duration::from_millis(200));
                }
                s.lock().unwrap().push(*r)
            },
            move |err: &Error| e.lock().unwrap().push(err.to_string()),
        )
        .unwrap();
    }
    pool.close();
    pool.join().unwrap(); // join returns after every callback ran
    let mut s = seen.lock().unwrap().clone();
    s.sort_unstable();
    assert_eq!(s, [0, 1, 2, 4, 5]);
    let e = errors.lock().unwrap().clone();
    assert_eq!(e.len(), 1);
    assert!(e[0].contains("boom at 3"), "{e:?}");
}

#[test]
fn zero_copy_chunk_maps() {
    let _w = watchdog("chunk maps", LIMIT);
    let pool = Pool::new(2).unwrap();
    let n = 100_003;
    let input = SharedArray::<u64>::from_slice(&(0..n as u64).collect::<Vec<_>>()).unwrap();
    let mut output = SharedArray::<u64>::new(n).unwrap();
    pool.map_slices(
        |i: &[u64], o: &mut [u64], t: &u32| shmproc_kernels::power_u64_slice(i, o, *t),
        &input,
        &mut output,
        4u32,
        TaskOptions::new(),
    )
    .unwrap();
    let want: Vec<u64> = (0..n as u64).map(power).collect();
    assert_eq!(output.to_vec(), want);

    // In place, with an explicit chunk size that does not divide n.
    pool.map_slices_in_place(
        |d: &mut [u64], add: &u64| d.iter_mut().for_each(|x| *x = x.wrapping_add(*add)),
        &mut output,
        5u64,
        TaskOptions::new().chunksize(999),
    )
    .unwrap();
    assert_eq!(
        output.to_vec(),
        want.iter().map(|x| x.wrapping_add(5)).collect::<Vec<_>>()
    );

    // A reduction: partial sums per chunk, combined in order.
    let parts: Vec<u64> = pool
        .reduce_slices(
            |d: &[u64], _start: usize, _: &()| d.iter().fold(0u64, |a, &b| a.wrapping_add(b)),
            &input,
            (),
            TaskOptions::new().chunksize(10_000),
        )
        .unwrap();
    assert_eq!(parts.len(), 11);
    assert_eq!(
        parts.iter().fold(0u64, |a, &b| a.wrapping_add(b)),
        (0..n as u64).sum::<u64>()
    );

    // Errors: lengths differ. (Overlapping input and output cannot be
    // written: the output is borrowed exclusively.)
    let mut short = SharedArray::<u64>::new(10).unwrap();
    assert!(matches!(
        pool.map_slices(
            |i: &[u64], o: &mut [u64], _: &()| o.copy_from_slice(i),
            &input,
            &mut short,
            (),
            TaskOptions::new()
        ),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn a_panicking_task_is_an_error_and_the_worker_keeps_serving() {
    let _w = watchdog("panic", LIMIT);
    let pool = Pool::new(1).unwrap();
    let before = pool.worker_pids();
    let r = pool.apply(boom, 3);
    match r {
        Err(Error::TaskPanicked(p)) => {
            assert!(p.message.contains("boom at 3"), "{p}");
            let at = p.location.as_deref().unwrap_or("");
            assert!(at.starts_with("tests/pool.rs:"), "location {at:?}");
            assert_eq!(p.item, None, "apply has no item index");
        }
        other => panic!("expected TaskPanicked, got {other:?}"),
    }
    let a = pool.apply_async(boom, 3).unwrap();
    a.wait().unwrap();
    assert!(!a.successful().unwrap());
    // The same worker serves the next task.
    assert_eq!(pool.apply(boom, 4).unwrap(), 4);
    assert_eq!(pool.worker_pids(), before);
    // A map with one panicking item fails as a whole, naming the item.
    match pool.map_opts(boom, 0..6u32, TaskOptions::new().chunksize(2)) {
        Err(Error::TaskPanicked(p)) => assert_eq!(p.item, Some(3), "{p}"),
        other => panic!("expected TaskPanicked, got {other:?}"),
    }
    let mut it = pool.imap(boom, 0..6u32);
    let got: Vec<_> = it.by_ref().take(3).map(Result::unwrap).collect();
    assert_eq!(got, [0, 1, 2]);
    assert!(matches!(it.next(), Some(Err(Error::TaskPanicked(_)))));
}

#[test]
fn lifecycle_errors_are_clear() {
    let _w = watchdog("lifecycle", LIMIT);
    assert!(matches!(Pool::new(0), Err(Error::InvalidArgument(_))));
    let pool = Pool::new(1).unwrap();
    assert!(matches!(pool.join(), Err(Error::InvalidState(_))));
    let slow = pool.apply_async(sleep_ms, 300).unwrap();
    assert!(matches!(slow.successful(), Err(Error::InvalidState(_))));
    assert!(matches!(
        slow.get_timeout(Duration::from_millis(10)),
        Err(Error::Timeout)
    ));
    assert!(matches!(
        slow.wait_timeout(Duration::from_millis(1)),
        Err(Error::Timeout)
    ));
    pool.close();
    assert!(pool.is_closed());
    assert!(matches!(pool.apply(power, 1), Err(Error::InvalidState(_))));
    assert!(matches!(
        pool.map(power, [1u64]),
        Err(Error::InvalidState(_))
    ));
    pool.join().unwrap();
    // Closed and joined: the submitted task still finished.
    assert!(slow.get().is_ok());
}

#[test]
fn terminate_fails_pending_tasks_instead_of_hanging() {
    let _w = watchdog("terminate", LIMIT);
    let pool = Pool::new(2).unwrap();
    let pids = pool.worker_pids();
    let rs: Vec<_> = (0..6)
        .map(|_| pool.apply_async(sleep_ms, 5_000).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    pool.terminate();
    for r in &rs {
        assert!(matches!(r.get(), Err(Error::InvalidState(_))));
    }
    assert!(t.elapsed() < Duration::from_secs(60));
    pool.join().unwrap();
    assert_pool_gone(&pids);
}

#[test]
fn large_arguments_and_results_spill_to_segments() {
    let _w = watchdog("spill", LIMIT);
    isolated("child_spill");
}

#[test]
#[ignore]
fn child_spill() {
    let Some(()) = child_input::<()>("isolated") else {
        return;
    };
    let pool = Pool::new(2).unwrap();
    let v: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let back = pool.apply(big_echo, v.clone()).unwrap();
    assert_eq!(back.len(), v.len());
    assert!(back.iter().zip(&v).all(|(b, a)| *b == a.wrapping_add(1)));
    // Spilled segments exist while tasks are in flight, and are gone after.
    let many: Vec<Vec<u8>> = (0..8).map(|i| vec![i as u8; 100_000]).collect();
    let outs = pool
        .map_opts(big_echo, many, TaskOptions::new().chunksize(1))
        .unwrap();
    assert!(outs
        .iter()
        .enumerate()
        .all(|(i, o)| o.iter().all(|&b| b == i as u8 + 1)));
    drop(pool);
    assert_eq!(segments_of(std::process::id()), Vec::<String>::new());
}

#[test]
fn a_worker_killed_mid_map_is_replaced_and_its_task_retried() {
    let _w = watchdog("kill mid map", LIMIT);
    let pool = Pool::new(2).unwrap();
    let victim = pool.worker_pids()[0];
    let items: Vec<u64> = (0..200).collect();
    let r = pool
        .map_async_opts(slow_square, items.clone(), TaskOptions::new().chunksize(2))
        .unwrap();
    std::thread::sleep(Duration::from_millis(150));
    // SIGKILL through the OS, as an OOM killer would.
    std::process::Command::new("kill")
        .args(["-9", &victim.to_string()])
        .status()
        .unwrap();
    let got = r.get().unwrap();
    assert_eq!(got, items.iter().map(|x| x * x).collect::<Vec<_>>());
    assert!(pid_gone(victim));
    let now = pool.worker_pids();
    assert_eq!(now.len(), 2, "the dead worker was replaced");
    assert!(!now.contains(&victim));
    // The pool keeps working.
    assert_eq!(pool.apply(power, 2).unwrap(), 65536);
}

#[test]
fn without_retries_a_killed_workers_task_fails_with_worker_lost() {
    let _w = watchdog("worker lost", LIMIT);
    let pool = Pool::builder().processes(1).retries(0).build().unwrap();
    let victim = pool.worker_pids()[0];
    let r = pool.apply_async(sleep_ms, 20_000).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    std::process::Command::new("kill")
        .args(["-9", &victim.to_string()])
        .status()
        .unwrap();
    match r.get_timeout(Duration::from_secs(30)) {
        Err(Error::WorkerLost { pid, signal, code }) => {
            assert_eq!(pid, victim);
            assert_eq!(signal, Some(9));
            assert_eq!(code, None);
        }
        other => panic!("expected WorkerLost, got {other:?}"),
    }
    assert_eq!(pool.apply(power, 3).unwrap(), 43046721);
}

#[test]
fn imap_consumes_its_input_lazily_with_bounded_memory() {
    let _w = watchdog("imap lazy", Duration::from_secs(600));
    let pool = Pool::new(2).unwrap();
    let pulled = Arc::new(AtomicUsize::new(0));
    let p2 = Arc::clone(&pulled);
    // An endless input: only what the consumer asks for may be pulled.
    let endless = (0u64..).inspect(move |_| {
        p2.fetch_add(1, Ordering::SeqCst);
    });
    let chunk = 1000;
    let mut it = pool.imap_opts(power, endless, TaskOptions::new().chunksize(chunk));
    let mut taken = 0usize;
    let mut max_ahead = 0;
    for (i, r) in it.by_ref().take(1_000_000).enumerate() {
        assert_eq!(r.unwrap(), power(i as u64));
        taken += 1;
        max_ahead = max_ahead.max(pulled.load(Ordering::SeqCst) - taken);
    }
    assert_eq!(taken, 1_000_000);
    // At most two chunks per worker in flight (plus the one being consumed).
    assert!(
        max_ahead <= (2 * 2 + 1) * chunk,
        "pulled {max_ahead} items ahead"
    );
    assert!(it.in_flight() <= 4);
}

#[test]
fn imap_tiny_tasks_one_per_slot() {
    let _w = watchdog("imap tiny", Duration::from_secs(600));
    let pool = Pool::new(2).unwrap();
    let n = 20_000u64;
    let sum: u64 = pool
        .imap(power, 0..n)
        .map(Result::unwrap)
        .fold(0, u64::wrapping_add);
    assert_eq!(sum, (0..n).map(power).fold(0, u64::wrapping_add));
}

#[test]
fn maxtasksperchild_recycles_workers() {
    let _w = watchdog("maxtasks", LIMIT);
    let pool = Pool::builder()
        .processes(1)
        .maxtasksperchild(2)
        .build()
        .unwrap();
    let pids: Vec<u32> = (0..6).map(|_| pool.apply(my_pid, ()).unwrap()).collect();
    assert_eq!(pids[0], pids[1]);
    assert_eq!(pids[2], pids[3]);
    assert_eq!(pids[4], pids[5]);
    assert_ne!(pids[0], pids[2]);
    assert_ne!(pids[2], pids[4]);
}

static INIT_VALUE: AtomicUsize = AtomicUsize::new(0);

fn set_init(v: usize) {
    INIT_VALUE.store(v, Ordering::SeqCst);
}

fn read_init(_: ()) -> usize {
    INIT_VALUE.load(Ordering::SeqCst)
}

#[test]
fn initializer_runs_in_every_worker() {
    let _w = watchdog("initializer", LIMIT);
    let pool = Pool::builder()
        .processes(2)
        .initializer(set_init, 42usize)
        .build()
        .unwrap();
    let vals = pool
        .map_opts(read_init, vec![(); 8], TaskOptions::new().chunksize(1))
        .unwrap();
    assert_eq!(vals, vec![42; 8]);
    assert_eq!(INIT_VALUE.load(Ordering::SeqCst), 0, "not in the parent");
}

#[test]
fn fork_start_method_works_when_forced() {
    let _w = watchdog("fork pool", LIMIT);
    // The test harness is multithreaded, so fork is refused unless forced.
    assert!(matches!(
        Pool::builder()
            .processes(1)
            .start_method(StartMethod::Fork)
            .build(),
        Err(Error::ForkUnsafe { .. })
    ));
    let pool = Pool::builder()
        .processes(2)
        .start_method(StartMethod::Fork)
        .force_fork(true)
        .build()
        .unwrap();
    assert_eq!(pool.map(power, [1u64, 2, 3]).unwrap(), [1, 65536, 43046721]);
}

#[test]
fn fork_pools_heal_through_the_fork_server() {
    let _w = watchdog("fork pools heal", LIMIT);
    for method in [StartMethod::Fork, StartMethod::ForkServer] {
        // The test harness is multithreaded: Fork must be forced here; the
        // fork server it forks stays single-threaded and forks every worker.
        let pool = Pool::builder()
            .processes(2)
            .start_method(method)
            .force_fork(true)
            .maxtasksperchild(1)
            .build()
            .unwrap();
        let want: Vec<u64> = (0..20u64).map(power).collect();
        assert_eq!(
            pool.map_opts(power, 0..20u64, TaskOptions::new().chunksize(1))
                .unwrap(),
            want,
            "{method:?}"
        );
        assert!(
            pool.stats().workers_replaced >= 18,
            "{method:?}: {:?}",
            pool.stats()
        );
        // A killed worker is replaced too: the pool keeps its size.
        let victim = pool.worker_pids()[0];
        std::process::Command::new("kill")
            .args(["-9", &victim.to_string()])
            .status()
            .unwrap();
        assert!(wait_gone(victim, Duration::from_secs(10)));
        assert_eq!(
            pool.map_opts(power, 0..20u64, TaskOptions::new().chunksize(1))
                .unwrap(),
            want,
            "{method:?}"
        );
        let end = Instant::now() + Duration::from_secs(10);
        while pool.worker_pids().len() < 2 {
            assert!(Instant::now() < end, "{method:?}: the pool shrank");
            std::thread::yield_now();
        }
        let pids = pool.worker_pids();
        drop(pool);
        assert_pool_gone(&pids);
    }
}

#[test]
fn drop_terminates_and_cleans_up() {
    let _w = watchdog("drop", LIMIT);
    isolated("child_drop");
}

#[test]
#[ignore]
fn child_drop() {
    let Some(()) = child_input::<()>("isolated") else {
        return;
    };
    let pool = Pool::new(2).unwrap();
    let pids = pool.worker_pids();
    let _pending = pool.apply_async(sleep_ms, 10_000).unwrap();
    // A spilled argument in flight too.
    let _big = pool.apply_async(big_echo, vec![7u8; 50_000]).unwrap();
    drop(pool);
    assert_pool_gone(&pids);
    assert_eq!(segments_of(std::process::id()), Vec::<String>::new());
}

// ---- the parent panics, or dies ----------------------------------------------

#[test]
#[ignore]
fn child_pool_owner() {
    let Some(mode) = child_input::<String>("pool-owner") else {
        return;
    };
    let pool = Pool::new(2).unwrap();
    let pids = pool.worker_pids();
    println!("pids {} {}", pids[0], pids[1]);
    let _r = pool.apply_async(sleep_ms, 60_000).unwrap();
    if mode == "panic" {
        panic!("the parent panics with a pool alive");
    }
    std::thread::sleep(Duration::from_secs(60));
}

fn worker_pids_of(kid: &mut common::ChildTest) -> Vec<u32> {
    kid.read_until("pids ")
        .split(' ')
        .map(|p| p.parse().unwrap())
        .collect()
}

#[test]
fn workers_are_gone_after_the_parent_panics() {
    let _w = watchdog("parent panic", LIMIT);
    let mut kid = spawn_child("child_pool_owner", "pool-owner", &"panic".to_string());
    let pids = worker_pids_of(&mut kid);
    let st = kid.wait(Duration::from_secs(60));
    assert!(!st.success());
    assert_pool_gone(&pids);
}

#[test]
fn workers_are_gone_after_the_parent_is_killed() {
    let _w = watchdog("parent killed", LIMIT);
    let mut kid = spawn_child("child_pool_owner", "pool-owner", &"sleep".to_string());
    let pids = worker_pids_of(&mut kid);
    kid.kill9();
    assert_pool_gone(&pids);
}
