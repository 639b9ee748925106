//! The pool's promises at the edges: deaths after the ring has wrapped,
//! cancellation, time limits, broken initializers, callbacks on their own
//! thread, errors that explain, statistics.

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{wait_gone, watchdog};
use shmproc::pool::TaskOptions;
use shmproc::{Error, Pool, SharedView};

const LIMIT: Duration = Duration::from_secs(120);

/// SIGKILLs the calling process (a worker) for real.
fn kill_self() -> ! {
    let _ = std::process::Command::new("kill")
        .args(["-9", &std::process::id().to_string()])
        .status();
    // The signal is on its way; never return a result.
    loop {
        std::thread::park();
    }
}

/// `x * 3`; the task for item `at` kills its own worker the first time it
/// runs (`flag[0]` records that it did).
fn triple_or_die((x, at, flag): (u64, u64, SharedView<u64>)) -> u64 {
    if x == at && flag.get(0) == Some(0) {
        flag.set(0, 1);
        kill_self();
    }
    x * 3
}

fn spin_ms(ms: u64) -> u64 {
    let end = Instant::now() + Duration::from_millis(ms);
    let mut acc = 0u64;
    while Instant::now() < end {
        acc = acc.wrapping_add(shmproc_kernels::power_u64(acc | 3, 8));
    }
    acc
}

fn sleep_ms(ms: u64) -> u32 {
    std::thread::sleep(Duration::from_millis(ms));
    std::process::id()
}

fn pid(_: ()) -> u32 {
    std::process::id()
}

fn exit_with(code: i32) -> u32 {
    std::process::exit(code)
}

/// Records its pid in `marks[2i]`, sleeps `ms`, marks `marks[2i+1]`; item 0
/// panics as soon as item 1 has started.
fn mark_and_sleep((i, ms, marks): (u64, u64, SharedView<u64>)) -> u64 {
    if i == 0 {
        let end = Instant::now() + Duration::from_secs(30);
        while marks.get(2) == Some(0) && Instant::now() < end {
            std::thread::yield_now();
        }
        panic!("item zero fails");
    }
    marks.set(2 * i as usize, std::process::id() as u64);
    std::thread::sleep(Duration::from_millis(ms));
    marks.set(2 * i as usize + 1, 1);
    i
}

/// Sets `flag[0]`, then sleeps `ms`.
fn flag_then_sleep((flag, ms): (SharedView<u64>, u64)) -> u32 {
    flag.set(0, 1);
    sleep_ms(ms)
}

/// Waits (with a deadline) until `flag[0]` is set by a task.
fn wait_flag(flag: &SharedView<u64>) {
    let end = Instant::now() + Duration::from_secs(30);
    while flag.get(0) == Some(0) {
        assert!(Instant::now() < end, "the task never started");
        std::thread::yield_now();
    }
}

/// A chunk kernel: the chunk at 0 panics once another chunk has started
/// (`started[0]` set, 30 s deadline), so a sleeping chunk is always running
/// when the map fails; every other chunk sets the flag and sleeps 60 s.
fn panic_or_sleep(i: &[u64], o: &mut [u64], started: &SharedView<u64>) {
    if i.first() == Some(&0) {
        let end = Instant::now() + Duration::from_secs(30);
        while started.get(0) == Some(0) && Instant::now() < end {
            std::thread::yield_now();
        }
        panic!("the first chunk fails");
    }
    started.set(0, 1);
    std::thread::sleep(Duration::from_secs(60));
    o.copy_from_slice(i);
}

/// An in-place kernel whose chunk at 0 kills its own worker (every time).
fn add_one_or_die(d: &mut [u64], _: &()) {
    if d.first() == Some(&0) {
        kill_self();
    }
    d.iter_mut().for_each(|x| *x += 1);
}

/// An initializer that fails on every other start (`starts[0]` counts them).
fn flaky_init(starts: SharedView<u64>) {
    let n = starts.get(0).unwrap_or(0);
    starts.set(0, n + 1);
    if n % 2 == 1 {
        panic!("flaky start {n}");
    }
}

fn failing_init(_: ()) {
    panic!("cannot load the model");
}

/// The case from the issue: 3,000 single-item tasks through the default
/// capacity... and a capacity of 4, both after the ring has wrapped.
#[test]
fn a_death_after_the_ring_wrapped_does_not_hang() {
    let _w = watchdog("wrapped death", LIMIT);
    for (capacity, n, at) in [(1024usize, 3000u64, 1500u64), (4, 3000, 1500), (4, 16, 10)] {
        let pool = Pool::builder()
            .processes(2)
            .tasks_in_flight(capacity)
            .retries(3)
            .build()
            .unwrap();
        let flag = SharedView::<u64>::new(1).unwrap();
        let items: Vec<(u64, u64, SharedView<u64>)> =
            (0..n).map(|x| (x, at, flag.clone())).collect();
        let t0 = Instant::now();
        let r = pool
            .map_async_opts(triple_or_die, items, TaskOptions::new().chunksize(1))
            .unwrap();
        let got = r.get_timeout(Duration::from_secs(60)).unwrap();
        assert_eq!(got, (0..n).map(|x| x * 3).collect::<Vec<_>>());
        assert_eq!(flag.get(0), Some(1), "the task killed its worker");
        assert_eq!(r.retries(), 1);
        let st = pool.stats();
        assert_eq!(st.tasks_retried, 1, "{st:?}");
        assert_eq!(st.workers_replaced, 1, "{st:?}");
        eprintln!(
            "capacity {capacity}: {n} tasks, one death, {:?}",
            t0.elapsed()
        );

        // The same with apply_async handles.
        flag.set(0, 0);
        let hs: Vec<_> = (0..n.min(64))
            .map(|x| {
                pool.apply_async(triple_or_die, (x, at.min(10), flag.clone()))
                    .unwrap()
            })
            .collect();
        for (x, h) in hs.iter().enumerate() {
            assert_eq!(
                h.get_timeout(Duration::from_secs(60)).unwrap(),
                x as u64 * 3
            );
        }
        assert_eq!(hs[at.min(10) as usize].retries(), 1);
    }
}

#[test]
fn a_task_that_exits_reports_its_exit_code() {
    let _w = watchdog("exit code", LIMIT);
    let pool = Pool::builder().processes(1).retries(0).build().unwrap();
    match pool.apply(exit_with, 3) {
        Err(Error::WorkerLost { signal, code, .. }) => {
            assert_eq!(signal, None);
            assert_eq!(code, Some(3));
        }
        other => panic!("expected WorkerLost, got {other:?}"),
    }
    let e = pool.apply(exit_with, 5).unwrap_err();
    assert!(e.to_string().contains("exited with code 5"), "{e}");
    assert_eq!(pool.apply(pid, ()).map(|_| ()).ok(), Some(()));
}

#[test]
fn a_broken_initializer_breaks_the_pool_once() {
    let _w = watchdog("broken init", LIMIT);
    let pool = Pool::builder()
        .processes(2)
        .initializer(failing_init, ())
        .build()
        .unwrap();
    let t0 = Instant::now();
    let r = pool.apply(pid, ());
    match &r {
        Err(Error::PoolBroken(why)) => {
            assert!(why.contains("cannot load the model"), "{why}");
            assert!(why.contains("initializer"), "{why}");
        }
        other => panic!("expected PoolBroken, got {other:?}"),
    }
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    // Later tasks fail at once, and no worker is started any more.
    let started = pool.stats().workers_started;
    assert!(started <= 2 + 3, "{started} workers started");
    for _ in 0..3 {
        assert!(matches!(pool.apply(pid, ()), Err(Error::PoolBroken(_))));
        assert!(matches!(
            pool.map(sleep_ms, [1, 2]),
            Err(Error::PoolBroken(_))
        ));
    }
    let pids = pool.worker_pids();
    drop(pool);
    for p in pids {
        assert!(wait_gone(p, Duration::from_secs(10)));
    }
}

#[test]
fn callbacks_run_on_their_own_thread_and_may_panic_or_block() {
    let _w = watchdog("callbacks", LIMIT);
    let pool = Pool::builder().processes(2).retries(1).build().unwrap();
    // A panicking callback is caught; the result is still delivered.
    let r = pool
        .apply_async_with(
            sleep_ms,
            1,
            |_: &u32| panic!("callback bug"),
            |_: &Error| {},
        )
        .unwrap();
    assert!(r.get().is_ok());
    // A callback runs on the callback thread, not this one.
    let (tx, rx) = mpsc::channel();
    let r = pool
        .apply_async_with(
            sleep_ms,
            1,
            move |_: &u32| {
                let _ = tx.send(std::thread::current().name().map(str::to_owned));
            },
            |_: &Error| {},
        )
        .unwrap();
    r.get().unwrap();
    let name = rx.recv().unwrap();
    assert_eq!(name.as_deref(), Some("shmproc-pool-callbacks"));
    assert_eq!(pool.stats().callback_panics, 1);

    // A blocking callback does not stop supervision: a worker killed while
    // the callback blocks is still replaced and its task retried.
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let blocked = pool
        .apply_async_with(
            sleep_ms,
            1,
            move |_: &u32| {
                let _ = release_rx.recv();
            },
            |_: &Error| {},
        )
        .unwrap();
    let victim = pool.apply_async(sleep_ms, 30_000).unwrap();
    // Wait until some worker runs the long task, then kill that worker.
    let t0 = Instant::now();
    let pids = pool.worker_pids();
    let _ = std::process::Command::new("kill")
        .args(["-9", &pids[0].to_string(), &pids[1].to_string()])
        .status();
    // Both workers died; the tasks they held are retried on replacements.
    assert_eq!(pool.apply(pid, ()).map(|_| ()).ok(), Some(()));
    let end = Instant::now() + Duration::from_secs(20);
    while pool.stats().workers_replaced < 2 {
        assert!(Instant::now() < end, "{:?}", pool.stats());
        std::thread::yield_now();
    }
    assert!(t0.elapsed() < Duration::from_secs(20));
    assert!(!blocked.ready(), "the callback still blocks");
    victim.cancel();
    release_tx.send(()).unwrap();
    blocked.get().unwrap();
}

#[test]
fn cancel_drops_a_queued_task_and_kills_a_running_one() {
    let _w = watchdog("cancel", LIMIT);
    let pool = Pool::builder().processes(1).build().unwrap();
    let before = pool.worker_pids();
    let flag = SharedView::<u64>::new(1).unwrap();
    let running = pool
        .apply_async(flag_then_sleep, (flag.clone(), 60_000))
        .unwrap();
    let queued = pool.apply_async(sleep_ms, 60_000).unwrap();
    // The queued one never runs.
    assert!(queued.cancel());
    assert!(matches!(queued.get(), Err(Error::Cancelled(_))));
    wait_flag(&flag);
    let t0 = Instant::now();
    assert!(running.cancel());
    let cancel_took = t0.elapsed();
    assert!(matches!(running.get(), Err(Error::Cancelled(_))));
    // Its worker was killed and replaced; the replacement serves.
    let served = pool.apply(pid, ()).unwrap();
    let to_serving = t0.elapsed();
    assert!(!before.contains(&served), "a new worker serves");
    assert!(wait_gone(before[0], Duration::from_secs(5)));
    assert!(cancel_took < Duration::from_secs(5), "{cancel_took:?}");
    eprintln!(
        "cancel of a running task: {cancel_took:?}; replacement serving after {to_serving:?}"
    );
    let st = pool.stats();
    assert_eq!(st.tasks_cancelled, 2, "{st:?}");
    assert_eq!(st.tasks_retried, 0, "{st:?}");
    // A finished task cannot be cancelled.
    let done = pool.apply_async(pid, ()).unwrap();
    done.wait().unwrap();
    assert!(!done.cancel());
    assert!(done.get().is_ok());
}

#[test]
fn time_limits_kill_and_replace_and_are_never_retried() {
    let _w = watchdog("time limit", LIMIT);
    let pool = Pool::builder()
        .processes(2)
        .retries(3)
        .task_time_limit(Duration::from_millis(300))
        .build()
        .unwrap();
    let t0 = Instant::now();
    match pool.apply(spin_ms, 60_000) {
        Err(Error::TimeLimit { limit, .. }) => assert_eq!(limit, Duration::from_millis(300)),
        other => panic!("expected TimeLimit, got {other:?}"),
    }
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    // Tasks within the limit are fine.
    assert!(pool.apply(spin_ms, 10).is_ok());
    // A per-call limit overrides the pool's.
    let r = pool
        .apply_async_opts(
            spin_ms,
            1_000,
            TaskOptions::new().time_limit(Duration::from_secs(30)),
        )
        .unwrap();
    assert!(r.get().is_ok());
    let r = pool
        .apply_async_opts(
            spin_ms,
            60_000,
            TaskOptions::new().time_limit(Duration::from_millis(50)),
        )
        .unwrap();
    assert!(matches!(r.get(), Err(Error::TimeLimit { .. })));
    let st = pool.stats();
    assert_eq!(st.tasks_timed_out, 2, "{st:?}");
    assert_eq!(st.tasks_retried, 0, "{st:?}");
    assert!(st.workers_replaced >= 2, "{st:?}");
    // Maps: a chunk over its limit fails the map.
    let r = pool.map_async_opts(
        spin_ms,
        [10, 60_000, 10, 10],
        TaskOptions::new()
            .chunksize(1)
            .time_limit(Duration::from_millis(200)),
    );
    assert!(matches!(r.unwrap().get(), Err(Error::TimeLimit { .. })));
}

#[test]
fn a_failing_item_cancels_the_rest_of_its_map() {
    let _w = watchdog("map fail fast", LIMIT);
    let pool = Pool::builder().processes(2).build().unwrap();
    let n = 8u64;
    let marks = SharedView::<u64>::new(2 * n as usize).unwrap();
    let items: Vec<_> = (0..n).map(|i| (i, 60_000u64, marks.clone())).collect();
    let t0 = Instant::now();
    match pool.map_opts(mark_and_sleep, items, TaskOptions::new().chunksize(1)) {
        Err(Error::TaskPanicked(p)) => {
            assert_eq!(p.message, "item zero fails");
            assert_eq!(p.item, Some(0));
        }
        other => panic!("expected TaskPanicked, got {other:?}"),
    }
    assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", t0.elapsed());
    // When map returns, no task of it runs any more: the workers that ran
    // the sleeping items were killed and reaped.
    let mut started = 0;
    for i in 1..n as usize {
        assert_eq!(
            marks.get(2 * i + 1),
            Some(0),
            "item {i} cannot have finished"
        );
        let p = marks.get(2 * i).unwrap_or(0) as u32;
        if p != 0 {
            started += 1;
            assert!(
                common::pid_gone(p),
                "worker {p} still runs item {i} of the map"
            );
        }
    }
    assert!(
        started >= 1,
        "a sleeping item ran (the test tests something)"
    );
    assert!(pool.stats().tasks_cancelled >= 1);
    // The pool serves on.
    assert_eq!(pool.map(sleep_ms, [1, 1]).unwrap().len(), 2);
}

#[test]
fn a_failing_chunk_ends_a_zero_copy_map_with_nothing_left_running() {
    let _w = watchdog("map_slices fail fast", LIMIT);
    let pool = Pool::builder().processes(2).build().unwrap();
    let input = shmproc::SharedArray::<u64>::from_slice(&(0..64).collect::<Vec<_>>()).unwrap();
    let mut output = shmproc::SharedArray::<u64>::new(64).unwrap();
    let before = pool.worker_pids();
    let t0 = Instant::now();
    let started = SharedView::<u64>::new(1).unwrap();
    match pool.map_slices(
        panic_or_sleep,
        &input,
        &mut output,
        started.clone(),
        TaskOptions::new().chunksize(8),
    ) {
        Err(Error::TaskPanicked(p)) => {
            assert_eq!(p.message, "the first chunk fails");
            assert_eq!(p.item, Some(0));
        }
        other => panic!("expected TaskPanicked, got {other:?}"),
    }
    assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", t0.elapsed());
    // A worker that was sleeping in a chunk was killed and is gone now: the
    // output is ours again, and nobody writes it.
    assert!(before.iter().any(|&p| common::pid_gone(p)));
    output.fill(7);
    assert!(output.iter().all(|&x| x == 7));
    assert!(pool.stats().tasks_cancelled >= 1);
}

#[test]
fn an_in_place_chunk_is_never_run_twice() {
    let _w = watchdog("in place no retry", LIMIT);
    let pool = Pool::builder().processes(2).retries(3).build().unwrap();
    let mut data = shmproc::SharedArray::<u64>::from_slice(&(0..64).collect::<Vec<_>>()).unwrap();
    match pool.map_slices_in_place(
        add_one_or_die,
        &mut data,
        (),
        TaskOptions::new().chunksize(8),
    ) {
        Err(Error::WorkerLost { signal, .. }) => assert_eq!(signal, Some(9)),
        other => panic!("expected WorkerLost, got {other:?}"),
    }
    assert_eq!(pool.stats().tasks_retried, 0, "{:?}", pool.stats());
    // Out-of-place chunks are retried as usual.
    let flag = SharedView::<u64>::new(1).unwrap();
    let items: Vec<_> = (0..8u64).map(|x| (x, 3, flag.clone())).collect();
    assert_eq!(
        pool.map_opts(triple_or_die, items, TaskOptions::new().chunksize(1))
            .unwrap(),
        (0..8).map(|x| x * 3).collect::<Vec<_>>()
    );
}

#[test]
fn start_failures_that_are_not_in_a_row_do_not_break_the_pool() {
    let _w = watchdog("flaky init", LIMIT);
    let starts = SharedView::<u64>::new(1).unwrap();
    let pool = Pool::builder()
        .processes(1)
        .maxtasksperchild(1)
        .initializer(flaky_init, starts.clone())
        .build()
        .unwrap();
    // Every task needs a new worker, and every other start fails: never
    // three in a row.
    for i in 0..12u64 {
        assert_eq!(pool.apply(sleep_ms, 0).map(|_| i).unwrap(), i);
    }
    let st = pool.stats();
    assert!(st.worker_start_failures >= 5, "{st:?}");
    assert!(starts.get(0).unwrap_or(0) >= 12);
}
