//! Stress tests of the pool with real SIGKILLs (issue 10, item 3).
//!
//! 20,000 tasks go through a pool of two workers with `capacity(4)`,
//! `capacity(16)` and the default capacity, by `map` (chunk size 1),
//! `imap_unordered`, `apply_async` and `map_slices` (20,000 chunks), while a
//! killer thread SIGKILLs a random live worker at random moments, at least
//! [`MIN_KILLS`] times per run.
//!
//! - With `retries(100)`: every result arrives exactly once and is right
//!   (compared with a sequential computation).
//! - With `retries(0)`: exactly the tasks whose worker was killed under them
//!   fail with `WorkerLost`, every other result is right; a map fails as a
//!   whole with `WorkerLost`.
//!
//! Every task records in a shared array how often it started, when it
//! finished and which worker ran it; the checks compare that record with the
//! results and with the kills. Every run prints one line of figures (tasks,
//! kills, lost, duplicated, run time) to stderr:
//! `cargo test --release --test pool_stress -- --nocapture --test-threads=1`.
//!
//! The runs take turns (a lock): two workers per run already fill the two
//! CPUs of the test machine, and a watchdog must time one run only.

mod common;

use std::collections::{HashMap, HashSet};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::{assert_no_leftovers, wait_gone, watchdog};
use shmproc::pool::TaskOptions;
use shmproc::segment::ArrayHandle;
use shmproc::{Error, Pool, SharedArray, SharedView};

/// Tasks per run.
const TASKS: usize = 20_000;
/// Squarings per task (about 50 µs of CPU, so that kills land mid-task).
const WORK: u32 = if cfg!(debug_assertions) {
    // Unoptimised code runs the loop about 20 times slower, and the parent's
    // side of each task too: a few times as long per task as in release, so
    // that kills still land mid-task when the parent is slow to refill.
    12_000
} else {
    60_000
};
/// Elements per `map_slices` task; `TASKS * CHUNK` elements in all.
const CHUNK: usize = 8;
/// Kills a run must deliver.
const MIN_KILLS: usize = 20;
/// Kills a run aims at, spread over its progress.
const TARGET_KILLS: usize = 40;
/// Retries of the runs where every task must succeed.
const RETRIES: u32 = 100;
const LIMIT: Duration = Duration::from_secs(120);

/// One run at a time (see the module comment).
static SERIAL: Mutex<()> = Mutex::new(());

// ---- what the tasks do -------------------------------------------------------

/// CLOCK_MONOTONIC in ns: one clock for the parent and every worker.
fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The record of the tasks, one shared array of `3 * TASKS` elements:
/// `[0, T)` how many times task i started, `[T, 2T)` when it finished (ns,
/// 0: never), `[2T, 3T)` the pid of the worker that last started it.
const STARTED: usize = 0;
const FINISHED: usize = TASKS;
const RUNNER: usize = 2 * TASKS;

/// The record array in a worker, attached once per worker process (a task
/// gets its handle), so that no mapping is made or dropped around a task.
static MARKS: Mutex<Option<(ArrayHandle, SharedView<u64>)>> = Mutex::new(None);

fn marks_of(h: &ArrayHandle) -> SharedView<u64> {
    let mut m = MARKS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((hh, a)) = m.as_ref() {
        if hh == h {
            return a.clone();
        }
    }
    let a = SharedView::<u64>::attach(h).expect("attach the record array");
    *m = Some((h.clone(), a.clone()));
    a
}

fn mark_start(m: &SharedView<u64>, i: usize) {
    m.set(RUNNER + i, u64::from(std::process::id()));
    m.set(STARTED + i, m.get(STARTED + i).expect("in bounds") + 1);
}

/// Last thing a task does before it returns.
fn mark_finish(m: &SharedView<u64>, i: usize) {
    m.set(FINISHED + i, now_ns());
}

fn value(i: u64) -> u64 {
    shmproc_kernels::power_u64(black_box(2 * i + 1), WORK) ^ i
}

fn elem_value(x: u64) -> u64 {
    shmproc_kernels::power_u64(black_box(2 * x + 1), WORK / CHUNK as u32) ^ x
}

/// The task of `map`, `imap_unordered` and `apply_async`.
fn task((i, h): (u64, ArrayHandle)) -> (u64, u64) {
    let m = marks_of(&h);
    mark_start(&m, i as usize);
    let v = value(i);
    mark_finish(&m, i as usize);
    (i, v)
}

/// The kernel of `map_slices`: chunk `c` holds the elements
/// `c * CHUNK .. (c + 1) * CHUNK`, whose values are their indices.
fn chunk_kernel(input: &[u64], out: &mut [u64], h: &ArrayHandle) {
    let m = marks_of(h);
    let c = input[0] as usize / CHUNK;
    mark_start(&m, c);
    for (o, &x) in out.iter_mut().zip(input) {
        *o = elem_value(x);
    }
    mark_finish(&m, c);
}

fn digest(chunk: &[u64]) -> u64 {
    chunk.iter().fold(0, |a, &x| a.rotate_left(7) ^ x)
}

/// The sequential computation, once per test binary.
struct Expected {
    values: Vec<u64>,
    elems: Vec<u64>,
    digests: Vec<u64>,
}

fn expected() -> &'static Expected {
    static E: OnceLock<Expected> = OnceLock::new();
    E.get_or_init(|| {
        let t = Instant::now();
        let values = (0..TASKS as u64).map(value).collect();
        let elems: Vec<u64> = (0..(TASKS * CHUNK) as u64).map(elem_value).collect();
        let digests = elems.chunks(CHUNK).map(digest).collect();
        eprintln!(
            "pool_stress: sequential reference computed in {:.2} s",
            t.elapsed().as_secs_f64()
        );
        Expected {
            values,
            elems,
            digests,
        }
    })
}

// ---- the killer ----------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
struct Kill {
    /// Clock just before and just after `kill(2)`.
    before: u64,
    after: u64,
}

#[derive(Default)]
struct Killer {
    /// Kills delivered (kill returned 0 on a live worker), by pid.
    kills: HashMap<u32, Kill>,
    /// Every worker pid seen.
    seen: HashSet<u32>,
}

/// xorshift64*
fn next_rand(s: &mut u64) -> u64 {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    s.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

fn finished_count(m: &SharedView<u64>) -> usize {
    (0..TASKS)
        .filter(|&i| m.get(FINISHED + i) != Some(0))
        .count()
}

/// No task finished for this long: the pool is stuck (the watchdog ends it).
const STALL: Duration = Duration::from_secs(20);

/// Says what a stuck run looks like, before the watchdog aborts it.
fn report_stall(pool: &Pool, marks: &SharedView<u64>, k: &Killer) {
    let m = marks.to_vec();
    let unfinished: Vec<String> = (0..TASKS)
        .filter(|&i| m[FINISHED + i] == 0)
        .take(10)
        .map(|i| {
            format!(
                "{i} (started {}x, last on {})",
                m[STARTED + i],
                m[RUNNER + i]
            )
        })
        .collect();
    eprintln!(
        "pool_stress: no task finished for {STALL:?} after {} kills; {} of {TASKS} \
         finished; live workers {:?}; first unfinished tasks: {}",
        k.kills.len(),
        finished_count(marks),
        pool.worker_pids(),
        unfinished.join(", ")
    );
}

/// Kills whenever the run has made another `1 / (TARGET_KILLS + 1)` of its
/// progress, after a random 0–3 ms: one random live worker, or (one time in
/// two) every live worker back to back, so that the pool sometimes has to
/// retry the tasks of two dead workers at once, before a survivor has drained
/// the ring. Stops at `TARGET_KILLS` kills or at `stop`. This paces the kills
/// over the run; it does not synchronise them with the tasks.
fn killer(
    pool: &Pool,
    marks: &SharedView<u64>,
    stop: &AtomicBool,
    seed: u64,
    target: usize,
) -> Killer {
    let mut rng = seed | 1;
    let mut k = Killer::default();
    let mut progress = (0, Instant::now());
    // One kill (a fail-fast map without retries ends at its first loss):
    // somewhere in the first fifth of the run.
    let single_goal = TASKS * (1 + (next_rand(&mut rng) % 20) as usize) / 100;
    while !stop.load(Ordering::SeqCst) && k.kills.len() < target {
        let goal = if target == 1 {
            single_goal
        } else {
            (k.kills.len() + 1) * TASKS / (target + 1)
        };
        let done = finished_count(marks);
        if done != progress.0 {
            progress = (done, Instant::now());
        } else if progress.1.elapsed() > STALL {
            report_stall(pool, marks, &k);
            progress.1 = Instant::now() + LIMIT;
        }
        if done < goal {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        std::thread::sleep(Duration::from_micros(next_rand(&mut rng) % 3000));
        let pids = pool.worker_pids();
        k.seen.extend(&pids);
        let mut live: Vec<u32> = pids
            .into_iter()
            .filter(|p| !k.kills.contains_key(p) && !common::pid_gone(*p))
            .collect();
        if live.is_empty() || stop.load(Ordering::SeqCst) {
            continue;
        }
        if next_rand(&mut rng).is_multiple_of(2) {
            let one = live[(next_rand(&mut rng) % live.len() as u64) as usize];
            live = vec![one];
        }
        for pid in live {
            let before = now_ns();
            // SAFETY: kill(2) with a pid and a signal number; no memory involved.
            let rc = unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            let after = now_ns();
            if rc == 0 {
                k.kills.insert(pid, Kill { before, after });
            }
        }
    }
    k
}

// ---- one run ---------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Map,
    ImapUnordered,
    ApplyAsync,
    MapChunks,
}

/// What a run returned.
enum Got {
    /// One outcome per task, in task order (apply_async).
    Indexed(Vec<shmproc::Result<(u64, u64)>>),
    /// One outcome per task, in any order (imap_unordered).
    Unordered(Vec<shmproc::Result<(u64, u64)>>),
    /// One outcome for all (map, map_slices): `(task, value)` in task order.
    Whole(shmproc::Result<Vec<(u64, u64)>>),
}

fn run_method(pool: &Pool, method: Method, h: &ArrayHandle) -> Got {
    let items = || (0..TASKS as u64).map(|i| (i, h.clone()));
    match method {
        Method::Map => Got::Whole(pool.map_opts(task, items(), TaskOptions::new().chunksize(1))),
        Method::ImapUnordered => Got::Unordered(pool.imap_unordered(task, items()).collect()),
        Method::ApplyAsync => {
            let rs: Vec<_> = items()
                .map(|a| pool.apply_async(task, a).expect("apply_async"))
                .collect();
            Got::Indexed(rs.iter().map(|r| r.get()).collect())
        }
        Method::MapChunks => {
            let n = TASKS * CHUNK;
            let input = SharedArray::<u64>::from_slice(&(0..n as u64).collect::<Vec<_>>())
                .expect("input array");
            let mut output = SharedArray::<u64>::new(n).expect("output array");
            let r = pool.map_slices(
                chunk_kernel,
                &input,
                &mut output,
                h.clone(),
                TaskOptions::new().chunksize(CHUNK),
            );
            Got::Whole(r.map(|()| {
                let out = output.to_vec();
                assert!(
                    out == expected().elems,
                    "map_slices returned Ok but its output differs from the sequential run"
                );
                out.chunks(CHUNK)
                    .enumerate()
                    .map(|(c, ch)| (c as u64, digest(ch)))
                    .collect()
            }))
        }
    }
}

/// The figures of a run.
#[derive(Debug, Default)]
struct Figures {
    /// Tasks whose worker was killed under them (`WorkerLost`, or never
    /// finished when a map failed as a whole).
    tasks_lost: usize,
    /// Tasks without a result.
    results_lost: usize,
    /// Results delivered more than once.
    duplicated: usize,
    /// Starts of a task beyond its first (a retry after a kill).
    reruns: u64,
    /// Lost tasks whose worker was killed after the task had finished but
    /// before its result was published (see [`killed_after_finish`]).
    lost_after_finish: usize,
}

/// Whether a lost task that has a finish stamp was killed after it, between
/// its last statement and the publication of its result: its stamp comes
/// before the end of the `kill(2)` call that killed its worker (1 ms slack
/// for the clock), and not long before its start. On the test VM `kill`
/// takes 5–150 µs and the victim runs on meanwhile, so a few of the ~40 kills
/// of a run land there; the victim may also lose its CPU between its last
/// statement and publishing the result (two vCPUs shared with the killer,
/// the parent and other jobs), hence 50 ms before the kill.
fn killed_after_finish(finished: u64, kill: Kill) -> bool {
    const BEFORE: u64 = 50_000_000;
    const AFTER: u64 = 1_000_000;
    kill.before <= finished + BEFORE && finished <= kill.after + AFTER
}

fn check(method: Method, retries: u32, got: Got, marks: &[u64], k: &Killer) -> Figures {
    let e = expected();
    let want = |i: usize| match method {
        Method::MapChunks => e.digests[i],
        _ => e.values[i],
    };
    let started = &marks[STARTED..STARTED + TASKS];
    let finished = &marks[FINISHED..FINISHED + TASKS];
    let runner = &marks[RUNNER..RUNNER + TASKS];
    let mut fig = Figures {
        reruns: started.iter().map(|s| s.saturating_sub(1)).sum(),
        ..Figures::default()
    };

    let mut delivered = vec![0u32; TASKS];
    // (task if known, pid) of every WorkerLost.
    let mut lost: Vec<(Option<usize>, u32)> = Vec::new();
    let mut whole_failed = false;
    let mut take = |i: Option<usize>, r: shmproc::Result<(u64, u64)>| match r {
        Ok((j, v)) => {
            let j = j as usize;
            assert!(j < TASKS, "result for task {j}, out of range");
            if let Some(i) = i {
                assert_eq!(j, i, "result of task {j} in the place of task {i}");
            }
            assert_eq!(v, want(j), "wrong result for task {j}");
            assert_ne!(finished[j], 0, "task {j} has a result but never finished");
            delivered[j] += 1;
        }
        Err(Error::WorkerLost { pid, signal, .. }) => {
            assert_eq!(signal, Some(libc::SIGKILL), "WorkerLost of {pid}");
            assert!(
                k.kills.contains_key(&pid),
                "WorkerLost names worker {pid}, which was not killed (kills: {:?})",
                k.kills.keys().collect::<Vec<_>>()
            );
            lost.push((i, pid));
        }
        Err(other) => panic!("{method:?}: unexpected error {other:?}"),
    };
    match got {
        Got::Indexed(v) => {
            assert_eq!(v.len(), TASKS, "one outcome per task");
            for (i, r) in v.into_iter().enumerate() {
                take(Some(i), r);
            }
        }
        Got::Unordered(v) => {
            for r in v {
                take(None, r);
            }
        }
        Got::Whole(Ok(v)) => {
            assert_eq!(v.len(), TASKS, "one result per task");
            for (i, r) in v.into_iter().enumerate() {
                take(Some(i), Ok(r));
            }
        }
        Got::Whole(Err(err)) => {
            whole_failed = true;
            take(None, Err(err));
        }
    }
    fig.duplicated = delivered
        .iter()
        .map(|&d| d.saturating_sub(1) as usize)
        .sum();
    fig.results_lost = delivered.iter().filter(|&&d| d == 0).count();
    assert_eq!(fig.duplicated, 0, "{method:?}: results delivered twice");

    if retries > 0 {
        assert!(
            lost.is_empty(),
            "{method:?}: WorkerLost despite retries: {lost:?}"
        );
        assert_eq!(fig.results_lost, 0, "{method:?}: results missing");
        let unfinished = finished.iter().filter(|&&f| f == 0).count();
        assert_eq!(unfinished, 0, "tasks never finished");
        return fig;
    }

    // Without retries nothing runs twice, and every loss is a kill's.
    assert!(
        started.iter().all(|&s| s <= 1),
        "a task started twice without retries"
    );
    let lost_pids: HashSet<u32> = lost.iter().map(|&(_, p)| p).collect();
    assert_eq!(
        lost_pids.len(),
        lost.len(),
        "two tasks lost by one worker, which runs one task at a time: {lost:?}"
    );
    assert!(lost.len() <= k.kills.len(), "more losses than kills");
    // A lost task ran (if it got as far as its first statement) on the worker
    // that was killed, and did not finish, unless the kill came just after
    // its last statement.
    let mut check_lost = |i: usize, pid: Option<u32>| {
        if started[i] != 0 {
            let r = runner[i] as u32;
            match pid {
                Some(p) => assert_eq!(r, p, "task {i} ran on {r} but was lost with {p}"),
                None => assert!(
                    k.kills.contains_key(&r),
                    "task {i} never finished and its worker {r} was not killed"
                ),
            }
        }
        let pid = pid.unwrap_or(runner[i] as u32);
        if finished[i] != 0 {
            assert!(
                killed_after_finish(finished[i], k.kills[&pid]),
                "task {i} finished at {} but was lost with worker {pid} (killed at {:?})",
                finished[i],
                k.kills[&pid]
            );
            fig.lost_after_finish += 1;
        }
    };
    if whole_failed {
        // The map failed as a whole, with a killed worker's WorkerLost, and
        // its first failure cancelled the rest of it: when the call
        // returned, no task of it ran any more. A task that started and did
        // not finish ran on a worker that is gone now (killed by the test,
        // or by the pool's cancellation); one that finished, finished before
        // the cancellation or just before its worker's kill.
        assert_eq!(lost.len(), 1, "{method:?}: one error for the whole map");
        let unfinished: Vec<usize> = (0..TASKS).filter(|&i| finished[i] == 0).collect();
        let ran: Vec<u64> = unfinished
            .iter()
            .filter(|&&i| started[i] != 0)
            .map(|&i| runner[i])
            .collect();
        for &r in &ran {
            assert!(
                common::pid_gone(r as u32),
                "{method:?}: worker {r} still runs a task of the cancelled map"
            );
        }
        assert_eq!(
            ran.iter().collect::<HashSet<_>>().len(),
            ran.len(),
            "two unfinished tasks on one worker: {ran:?}"
        );
        fig.tasks_lost = unfinished.len();
    } else {
        let missing: Vec<usize> = (0..TASKS).filter(|&i| delivered[i] == 0).collect();
        assert_eq!(
            missing.len(),
            lost.len(),
            "{method:?}: tasks without result vs WorkerLost errors"
        );
        match method {
            Method::ApplyAsync => {
                for &(i, pid) in &lost {
                    check_lost(i.expect("indexed"), Some(pid));
                }
            }
            _ => {
                for &i in &missing {
                    if started[i] != 0 {
                        assert!(
                            lost_pids.contains(&(runner[i] as u32)),
                            "task {i} is missing but its worker {} was not lost",
                            runner[i]
                        );
                    }
                    check_lost(i, None);
                }
            }
        }
        fig.tasks_lost = lost.len();
        let unfinished = finished.iter().filter(|&&f| f == 0).count();
        assert!(
            unfinished <= lost.len(),
            "a task never finished yet was not lost"
        );
    }
    fig
}

/// Segments in /dev/shm named after process `pid`.
fn segments_of(pid: u32) -> Vec<String> {
    shmproc::segment::list()
        .expect("list segments")
        .into_iter()
        .filter(|s| s.creator_pid == Some(pid))
        .map(|s| s.name)
        .collect()
}

fn stress(name: &'static str, method: Method, capacity: Option<usize>, retries: u32) {
    let _turn = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let _w = watchdog(name, LIMIT);
    expected();

    let mut b = Pool::builder().processes(2).retries(retries);
    if let Some(c) = capacity {
        b = b.tasks_in_flight(c);
    }
    let pool = b.build().expect("pool");
    // A map without retries fails (and cancels the rest of itself) at its
    // first lost task: it runs in rounds of one kill each until enough kills
    // were delivered; every other case takes all its kills in one run.
    let fail_fast = retries == 0 && matches!(method, Method::Map | Method::MapChunks);
    let mut total_kills = 0;
    let mut seen: HashSet<u32> = HashSet::new();
    let mut rounds = 0;
    let mut hits = 0;
    let t1 = Instant::now();
    while total_kills < MIN_KILLS.max(if fail_fast { 0 } else { 1 }) || rounds == 0 {
        rounds += 1;
        assert!(
            rounds <= 200,
            "{name}: {total_kills} kills after 200 rounds"
        );
        let marks = SharedView::<u64>::new(3 * TASKS).expect("record array");
        let h = marks.handle();
        let seed = now_ns();
        let stop = AtomicBool::new(false);
        let target = if fail_fast { 1 } else { TARGET_KILLS };
        let t_round = Instant::now();
        let (got, k) = std::thread::scope(|s| {
            let killer = s.spawn(|| killer(&pool, &marks, &stop, seed, target));
            let got = run_method(&pool, method, &h);
            stop.store(true, Ordering::SeqCst);
            (got, killer.join().expect("killer thread"))
        });
        let elapsed = t_round.elapsed();
        let fig = check(method, retries, got, &marks.to_vec(), &k);
        let cap = capacity.map_or("default (1024)".to_string(), |c| c.to_string());
        if !fail_fast || rounds == 1 || k.kills.len() + total_kills >= MIN_KILLS {
            eprintln!(
                "pool_stress {name} (round {rounds}): {method:?}, capacity {cap}, retries {retries}: \
                 tasks run {TASKS}, workers killed {}, tasks lost {}, results lost {}, \
                 duplicated {}, re-runs {}, lost after finishing {}, {:.2} s (seed {seed})",
                k.kills.len(),
                fig.tasks_lost,
                fig.results_lost,
                fig.duplicated,
                fig.reruns,
                fig.lost_after_finish,
                elapsed.as_secs_f64(),
            );
        }
        total_kills += k.kills.len();
        seen.extend(k.seen.iter().copied());
        // Some kills hit a worker between two tasks (waiting for the parent
        // to refill a small ring, or just started); some must hit one
        // mid-task. (A task killed before its first statement is not counted.)
        hits += fig.reruns as usize + fig.tasks_lost;
        if !fail_fast {
            break;
        }
    }
    eprintln!(
        "pool_stress {name}: {rounds} round(s), {total_kills} kills in {:.2} s",
        t1.elapsed().as_secs_f64()
    );
    assert!(
        total_kills >= MIN_KILLS,
        "only {total_kills} kills delivered (at least {MIN_KILLS} wanted)"
    );
    assert!(hits >= 1, "no kill landed while a task ran");
    let k = Killer {
        seen,
        ..Killer::default()
    };

    // Leave the process table and /dev/shm as found.
    let mut pids: Vec<u32> = k.seen.iter().copied().collect();
    pids.extend(pool.worker_pids());
    drop(pool);
    for &p in &pids {
        assert!(
            wait_gone(p, Duration::from_secs(10)),
            "worker {p} still alive"
        );
    }
    assert_no_leftovers(&pids);
    assert_eq!(segments_of(std::process::id()), Vec::<String>::new());
}

macro_rules! stress_tests {
    ($($name:ident: $method:ident, $cap:expr, $retries:expr;)*) => {
        $(
            #[test]
            fn $name() {
                stress(stringify!($name), Method::$method, $cap, $retries);
            }
        )*
    };
}

stress_tests! {
    map_cap4_retried: Map, Some(4), RETRIES;
    map_cap16_retried: Map, Some(16), RETRIES;
    map_default_cap_retried: Map, None, RETRIES;
    map_cap4_no_retries: Map, Some(4), 0;
    map_cap16_no_retries: Map, Some(16), 0;
    map_default_cap_no_retries: Map, None, 0;

    imap_unordered_cap4_retried: ImapUnordered, Some(4), RETRIES;
    imap_unordered_cap16_retried: ImapUnordered, Some(16), RETRIES;
    imap_unordered_default_cap_retried: ImapUnordered, None, RETRIES;
    imap_unordered_cap4_no_retries: ImapUnordered, Some(4), 0;
    imap_unordered_cap16_no_retries: ImapUnordered, Some(16), 0;
    imap_unordered_default_cap_no_retries: ImapUnordered, None, 0;

    apply_async_cap4_retried: ApplyAsync, Some(4), RETRIES;
    apply_async_cap16_retried: ApplyAsync, Some(16), RETRIES;
    apply_async_default_cap_retried: ApplyAsync, None, RETRIES;
    apply_async_cap4_no_retries: ApplyAsync, Some(4), 0;
    apply_async_cap16_no_retries: ApplyAsync, Some(16), 0;
    apply_async_default_cap_no_retries: ApplyAsync, None, 0;

    map_chunks_cap4_retried: MapChunks, Some(4), RETRIES;
    map_chunks_cap16_retried: MapChunks, Some(16), RETRIES;
    map_chunks_default_cap_retried: MapChunks, None, RETRIES;
    map_chunks_cap4_no_retries: MapChunks, Some(4), 0;
    map_chunks_cap16_no_retries: MapChunks, Some(16), 0;
    map_chunks_default_cap_no_retries: MapChunks, None, 0;
}
