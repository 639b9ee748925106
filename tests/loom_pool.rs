//! Model check of the pool's slot protocol (`src/pool/protocol.rs`) with loom.
//!
//! The protocol file is compiled into this test as it is (`#[path]` include):
//! every transition of a slot's state word below is a call of the real
//! function, over loom's atomics (`impl Word for loom::sync::atomic::AtomicU64`)
//! wrapped in an operation counter.
//!
//! # Actors
//! - **Workers**, index `w`, as `src/pool/worker.rs`: loop { read
//!   `submit_seq`; leave on `shutdown`; `claim`; on `Some(t)` read the task's
//!   argument from the slot payload, write the result into the same payload,
//!   `finish`, bump the `doorbell`; on `None` sleep until `submit_seq` moves }.
//!   The payload is a `loom::cell::UnsafeCell`, so loom checks that the state
//!   word hands it over without a data race. The futex sleeps are modelled
//!   by re-checking the word around a `loom::sync::Notify` per sleeper.
//!   A worker may **die**: worker 0 gets a budget of `k` operations on ring
//!   words (state words, hint, `retries_pending`); before its operation
//!   `k + 1` it stops dead (a `Killed` panic caught at the top of its thread:
//!   it writes nothing more, as with SIGKILL); then its `dead` flag (the
//!   pidfd) is set and the doorbell bumped (the supervisor's tick). Each `k`
//!   is a loom model of its own.
//! - **Parent** (the main model thread: collector, supervisor and submitter
//!   under one `Mutex<Parent>`, the real `inner` lock), as `src/pool/core.rs`:
//!   collect: load the doorbell (SeqCst), and if it moved since the last
//!   scan, take every pending ticket in `head..tail` whose `state_of` is
//!   `DONE` (check the result, `recycle`, deliver); supervise: once it sees a
//!   worker's `dead` flag (set after the worker's last operation), a forced
//!   collect, then every pending ticket in `CLAIMED + w`: a doomed one (see
//!   below) is `recycle`d and delivered `Cancelled`; else its attempts go up
//!   and it is rewritten and `requeue`d while attempts <= retries, else
//!   `recycle`d and delivered `WorkerLost`; then (with `respawn`) a new worker
//!   starts in the same index (it does not die); submit: ticket `t` while
//!   `is_free_for` (argument into the payload, `publish`, bump `submit_seq`).
//!   Then it sleeps until the doorbell moves from the value its collect saw.
//!   When everything is delivered it sets `shutdown` and bumps `submit_seq`.
//! - **Canceller** (optional; a thread taking the parent's lock, as
//!   `cancel_tickets`): once its ticket is submitted, `withdraw`s it; on
//!   `true` delivers `Cancelled` and bumps the doorbell; else, if the ticket
//!   is `CLAIMED + w`, marks it doomed (the real pool then SIGKILLs `w`; here
//!   only worker 0 dies, at every point, so a doomed ticket whose worker
//!   finishes is delivered as its result: "the cancel came too late").
//!
//! # Properties (asserted in every execution)
//! - every ticket is delivered exactly once: a result, or `WorkerLost` (only
//!   after a death, attempts exhausted), or `Cancelled` (only the cancelled
//!   ticket);
//! - results are correct: the worker saw its own ticket's argument, and the
//!   parent read the result of the current attempt's argument;
//! - no ticket runs after it is delivered: a ticket is claimed at most (its
//!   lost attempts + 1 for a result) times, exactly that often without a
//!   death; it is finished once if delivered as a result, never otherwise
//!   (never after a successful withdraw, never after `WorkerLost`);
//! - no data race on the payloads (loom's `UnsafeCell` causality check);
//! - at the end every slot is `FREE` for its next ticket (`is_free_for`);
//! - `retries_pending` never goes below zero (checked at every `fetch_sub`)
//!   and ends at 0 (or 1 if the dead worker died between its retry claim and
//!   the decrement: the over-count `requeue` allows);
//! - no lost wake-up, no stranded ticket: every execution ends with all
//!   tickets delivered (loom fails an execution that deadlocks).
//!
//! # Configurations and bounds
//! Capacity 2 and 3 tickets (the ring wraps: ticket 2 reuses slot 0) unless
//! said otherwise, real memory orderings (loom's C11 model), preemption
//! bound 1 or 2 per test (`LOOM_MAX_PREEMPTIONS` overrides it for all):
//!
//! | test | workers | death of worker 0 before op `k + 1` | bound |
//! |---|---|---|---|
//! | `loom_two_workers` | 2 (2 tickets submitted before they start) | none | 1 |
//! | `loom_two_workers_death` | 2, 2 tickets, no replacement | `k` in 0..20 | 1 |
//! | `loom_death_retried` | 1 + replacement, retries 1 | `k` in 0..20 | 1 |
//! | `loom_death_retried_pb2` | same | `k` in 9..12 (holding ticket 1 while ticket 2 wraps onto slot 0) | 2 |
//! | `loom_death_lost` | 1 + replacement, retries 0 | `k` in 0..20 | 1 |
//! | `loom_cancel` | 1 + canceller of ticket 2 | none | 1 |
//! | `loom_cancel_death` | 1 + replacement + canceller of ticket 0 | `k` in 0..20 | 1 |
//!
//! `k` in 0..20 covers a death at every point of the worker's first three
//! tasks (6 ring operations each) or of its idle claims (7 each). The
//! executions reach the case this protocol fixes (a ticket requeued as
//! `RETRY` while a fresh ticket waits `READY` after the wrap) tens of
//! thousands of times (`--nocapture` prints what each test reached).
//! `loom_mutant_requeue_as_ready` (ignored) requeues with `publish`, i.e.
//! `READY` below the hint as the old protocol did, and loom finds the
//! stranded ticket (`deadlock`).
//!
//! Not modelled: more than one death, a kill by the pool of a worker other
//! than worker 0, time limits, `terminate`, the broken-pool logic; two
//! workers racing with a death *and* a replacement (too many executions).
//!
//! `smoke_std_threads` runs the same actors on std threads: 3000 runs of
//! random sizes (capacity 2..=4, 3..=8 tickets, 2..=3 workers, 0..=2 retries),
//! death points, replacement and cancels.
//!
//! Run: `cargo test --release --test loom_pool` (about 3 CPU-minutes; the
//! tests run 2 at a time; `.ci/run` does). In a debug build (`cargo test
//! --workspace`) the loom tests are ignored (unoptimised, they take far too
//! long) and only `smoke_std_threads` runs. A failing execution prints its interleaving with
//! `LOOM_LOG=1 LOOM_LOCATION=1`.

#[allow(dead_code)]
#[path = "../src/pool/protocol.rs"]
mod protocol;

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed as R};
use std::sync::Once;

use protocol::Word;

protocol::impl_word!(loom::sync::atomic::AtomicU64);

/// The panic payload of a worker whose operation budget ran out.
struct Killed;

/// A ring word as one actor sees it: each operation spends one unit of the
/// actor's budget; with none left the actor dies before the operation.
struct Counted<'a, A> {
    a: &'a A,
    budget: Rc<Cell<u64>>,
}

impl<A> Counted<'_, A> {
    fn tick(&self) {
        let n = self.budget.get();
        if n == 0 {
            std::panic::panic_any(Killed);
        }
        self.budget.set(n - 1);
    }
}

impl<A: Word> Word for Counted<'_, A> {
    fn load(&self, o: Ordering) -> u64 {
        self.tick();
        self.a.load(o)
    }
    fn store(&self, v: u64, o: Ordering) {
        self.tick();
        self.a.store(v, o)
    }
    fn cas(&self, cur: u64, new: u64, s: Ordering, f: Ordering) -> Result<u64, u64> {
        self.tick();
        self.a.cas(cur, new, s, f)
    }
    fn fetch_add(&self, v: u64, o: Ordering) -> u64 {
        self.tick();
        let prev = self.a.fetch_add(v, o);
        assert!(prev < 1 << 62, "counter overflow: {prev} + {v}");
        prev
    }
    fn fetch_sub(&self, v: u64, o: Ordering) -> u64 {
        self.tick();
        let prev = self.a.fetch_sub(v, o);
        // Only `retries_pending` is ever decremented.
        assert!(prev >= v, "retries_pending underflow: {prev} - {v}");
        prev
    }
}

#[derive(Clone, Copy, Debug)]
struct Cfg {
    cap: u64,
    tickets: u64,
    workers: u8,
    retries: u32,
    /// Worker `.0` dies before its ring operation number `.1 + 1`.
    die: Option<(u8, u64)>,
    /// The canceller cancels this ticket.
    cancel: Option<u64>,
    /// A dead worker is replaced (by one that does not die).
    respawn: bool,
    /// The parent submits what fits before it starts the workers.
    presubmit: bool,
    /// A broken protocol, to show the model catches it: requeue by `publish`.
    mutant_requeue_ready: bool,
}

impl Cfg {
    const fn base() -> Cfg {
        Cfg {
            cap: 2,
            tickets: 3,
            workers: 1,
            retries: 1,
            die: None,
            cancel: None,
            respawn: true,
            presubmit: false,
            mutant_requeue_ready: false,
        }
    }
}

/// The argument of ticket `t`, attempt `a`.
fn arg(t: u64, a: u32) -> u64 {
    t * 16 + a as u64 + 1
}
/// What a worker adds to the argument: its result.
const RES: u64 = 1 << 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Result,
    WorkerLost,
    Cancelled,
}

#[derive(Clone, Copy, Debug)]
enum Ev {
    Claimed(u64),
    Finished(u64),
}

/// What the executions of one test reached (printed with `--nocapture`).
#[derive(Debug)]
struct Stats {
    executions: AtomicUsize,
    deaths: AtomicUsize,
    requeues: AtomicUsize,
    lost: AtomicUsize,
    withdrawn: AtomicUsize,
    doomed: AtomicUsize,
    doomed_cancelled: AtomicUsize,
    retry_beside_wrapped_fresh: AtomicUsize,
}

impl Stats {
    const fn new() -> Stats {
        Stats {
            executions: AtomicUsize::new(0),
            deaths: AtomicUsize::new(0),
            requeues: AtomicUsize::new(0),
            lost: AtomicUsize::new(0),
            withdrawn: AtomicUsize::new(0),
            doomed: AtomicUsize::new(0),
            doomed_cancelled: AtomicUsize::new(0),
            retry_beside_wrapped_fresh: AtomicUsize::new(0),
        }
    }
    fn report(&self, name: &str, start: std::time::Instant) {
        eprintln!(
            "{name}: {} executions in {:.1?}; deaths {}, requeues {}, lost {}, withdrawn {}, \
             doomed {} (delivered cancelled {}), requeue beside a fresh READY after the wrap {}",
            self.executions.load(R),
            start.elapsed(),
            self.deaths.load(R),
            self.requeues.load(R),
            self.lost.load(R),
            self.withdrawn.load(R),
            self.doomed.load(R),
            self.doomed_cancelled.load(R),
            self.retry_beside_wrapped_fresh.load(R),
        );
    }
}

/// Keeps the deaths of the model out of the test output.
fn quiet_kills() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !info.payload().is::<Killed>() {
                prev(info)
            }
        }));
    });
}

/// The actors, written once over the names `AtomicU64`, `AtomicBool`, `Arc`,
/// `Mutex`, `Notify`, `spawn`, `JoinHandle` and `UnsafeCell` of the
/// enclosing module (loom's or std's).
macro_rules! actors {
    () => {
        use super::protocol::{self, Ring, Word, CLAIMED, DONE, READY};
        use super::{arg, Cfg, Counted, Ev, Killed, Outcome, Stats, R, RES};
        use std::cell::Cell;
        use std::rc::Rc;
        use std::sync::atomic::Ordering::{Acquire, SeqCst};

        struct Payload(UnsafeCell<u64>);
        // SAFETY: accesses are ordered by the slot protocol, which is what is
        // under test (loom reports any access the protocol does not order).
        unsafe impl Sync for Payload {}
        impl Payload {
            fn read(&self) -> u64 {
                // SAFETY: see `impl Sync`.
                self.0.with(|p| unsafe { *p })
            }
            fn write(&self, v: u64) {
                // SAFETY: see `impl Sync`.
                self.0.with_mut(|p| unsafe { *p = v })
            }
        }

        struct Parent {
            head: u64,
            tail: u64,
            last_scan: u64,
            attempts: Vec<u32>,
            doomed: Vec<bool>,
            outcome: Vec<Option<Outcome>>,
            handled: Vec<bool>,
        }

        struct Shared {
            cfg: Cfg,
            slots: Vec<AtomicU64>,
            hint: AtomicU64,
            retries: AtomicU64,
            payload: Vec<Payload>,
            submit_seq: AtomicU64,
            doorbell: AtomicU64,
            /// The futex sleeps: one per waiting thread.
            worker_wake: Vec<Notify>,
            cancel_wake: Notify,
            parent_wake: Notify,
            shutdown: AtomicBool,
            dead: Vec<AtomicBool>,
            parent: Mutex<Parent>,
        }

        impl Shared {
            fn payload(&self, t: u64) -> &Payload {
                &self.payload[(t % self.cfg.cap) as usize]
            }
            /// `sync::wait_on`: sleeps until `word` moves from `seen`.
            fn wait(word: &AtomicU64, seen: u64, sleep: &Notify) {
                while word.load(SeqCst) == seen {
                    sleep.wait();
                }
            }
            /// `kick_workers`: bumps `submit_seq`, wakes its sleepers.
            fn kick(&self) {
                self.submit_seq.fetch_add(1, SeqCst);
                self.worker_wake.iter().for_each(Notify::notify);
                self.cancel_wake.notify();
            }
            /// `ring`: bumps the doorbell, wakes the parent.
            fn ring(&self) {
                self.doorbell.fetch_add(1, SeqCst);
                self.parent_wake.notify();
            }
        }

        /// One actor's view of the ring.
        struct View<'a> {
            cap: u64,
            slots: Vec<Counted<'a, AtomicU64>>,
            hint: Counted<'a, AtomicU64>,
            retries: Counted<'a, AtomicU64>,
        }

        impl<'a> View<'a> {
            fn new(sh: &'a Shared, budget: u64) -> View<'a> {
                let b = Rc::new(Cell::new(budget));
                let c = |a: &'a AtomicU64| Counted {
                    a,
                    budget: b.clone(),
                };
                View {
                    cap: sh.cfg.cap,
                    slots: sh.slots.iter().map(c).collect(),
                    hint: c(&sh.hint),
                    retries: c(&sh.retries),
                }
            }
        }

        impl<'a> Ring for View<'a> {
            type W = Counted<'a, AtomicU64>;
            fn capacity(&self) -> u64 {
                self.cap
            }
            fn state(&self, ticket: u64) -> &Self::W {
                &self.slots[(ticket % self.cap) as usize]
            }
            fn slot_state(&self, i: u64) -> &Self::W {
                &self.slots[i as usize]
            }
            fn hint(&self) -> &Self::W {
                &self.hint
            }
            fn retries_pending(&self) -> &Self::W {
                &self.retries
            }
        }

        fn worker(sh: &Shared, w: u8, budget: u64, log: &mut Vec<Ev>) {
            let ring = View::new(sh, budget);
            loop {
                let seen = sh.submit_seq.load(SeqCst);
                if sh.shutdown.load(SeqCst) {
                    return;
                }
                let Some(t) = protocol::claim(&ring, w) else {
                    Shared::wait(&sh.submit_seq, seen, &sh.worker_wake[w as usize]);
                    continue;
                };
                log.push(Ev::Claimed(t));
                let p = sh.payload(t);
                let a = p.read();
                assert_eq!(
                    (a - 1) / 16,
                    t,
                    "worker {w} ran ticket {t} with another's args"
                );
                p.write(a + RES);
                protocol::finish(&ring, t);
                log.push(Ev::Finished(t));
                sh.ring();
            }
        }

        fn spawn_worker(
            sh: &Arc<Shared>,
            w: u8,
            budget: u64,
            stats: &'static Stats,
        ) -> JoinHandle<Vec<Ev>> {
            let sh = sh.clone();
            spawn(move || {
                let mut log = Vec::new();
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    worker(&sh, w, budget, &mut log)
                }));
                if let Err(e) = r {
                    if !e.is::<Killed>() {
                        std::panic::resume_unwind(e);
                    }
                    stats.deaths.fetch_add(1, R);
                    // The pidfd is readable once the process is gone; the
                    // supervisor's tick notices it.
                    sh.dead[w as usize].store(true, SeqCst);
                    sh.ring();
                }
                log
            })
        }

        /// `collect_locked`.
        fn collect(sh: &Shared, ring: &View<'_>, p: &mut Parent, force: bool) {
            let bell = sh.doorbell.load(SeqCst);
            if !force && bell == p.last_scan {
                return;
            }
            p.last_scan = bell;
            for t in p.head..p.tail {
                if p.outcome[t as usize].is_some() || protocol::state_of(ring, t) != Some(DONE) {
                    continue;
                }
                let got = sh.payload(t).read();
                assert_eq!(
                    got,
                    arg(t, p.attempts[t as usize]) + RES,
                    "wrong result of {t}"
                );
                protocol::recycle(ring, t);
                p.outcome[t as usize] = Some(Outcome::Result);
            }
        }

        /// `worker_died`, for every worker whose death is visible; returns
        /// the workers to replace.
        fn supervise(sh: &Shared, ring: &View<'_>, p: &mut Parent, stats: &Stats) -> Vec<u8> {
            let cfg = sh.cfg;
            let mut replace = Vec::new();
            for w in 0..cfg.workers {
                if p.handled[w as usize] || !sh.dead[w as usize].load(SeqCst) {
                    continue;
                }
                p.handled[w as usize] = true;
                if cfg.respawn {
                    replace.push(w);
                }
                collect(sh, ring, p, true);
                let mut requeued = false;
                let mut wrapped_ready = false;
                for t in p.head..p.tail {
                    if p.outcome[t as usize].is_some() {
                        continue;
                    }
                    let st = protocol::state_of(ring, t);
                    if st == Some(READY) && t >= cfg.cap {
                        wrapped_ready = true;
                    }
                    if st != Some(CLAIMED + w) {
                        continue;
                    }
                    if p.doomed[t as usize] {
                        protocol::recycle(ring, t);
                        p.outcome[t as usize] = Some(Outcome::Cancelled);
                        stats.doomed_cancelled.fetch_add(1, R);
                        continue;
                    }
                    let a = &mut p.attempts[t as usize];
                    *a += 1;
                    if *a <= cfg.retries {
                        sh.payload(t).write(arg(t, *a));
                        if cfg.mutant_requeue_ready {
                            protocol::publish(ring, t);
                        } else {
                            protocol::requeue(ring, t);
                        }
                        stats.requeues.fetch_add(1, R);
                        requeued = true;
                    } else {
                        protocol::recycle(ring, t);
                        p.outcome[t as usize] = Some(Outcome::WorkerLost);
                        stats.lost.fetch_add(1, R);
                    }
                }
                if requeued {
                    sh.kick();
                    if wrapped_ready {
                        stats.retry_beside_wrapped_fresh.fetch_add(1, R);
                    }
                }
            }
            replace
        }

        fn submit(sh: &Shared, ring: &View<'_>, p: &mut Parent) {
            while p.tail < sh.cfg.tickets && protocol::is_free_for(ring, p.tail) {
                let t = p.tail;
                sh.payload(t).write(arg(t, 0));
                protocol::publish(ring, t);
                sh.kick();
                p.tail += 1;
            }
        }

        /// `cancel_tickets` for one ticket, once it is submitted.
        fn canceller(sh: &Shared, t: u64, stats: &Stats) {
            let ring = View::new(sh, u64::MAX);
            loop {
                let seen = sh.submit_seq.load(SeqCst);
                {
                    let mut p = sh.parent.lock().unwrap();
                    if p.tail > t {
                        if p.outcome[t as usize].is_none() {
                            if protocol::withdraw(&ring, t) {
                                p.outcome[t as usize] = Some(Outcome::Cancelled);
                                stats.withdrawn.fetch_add(1, R);
                                drop(p);
                                sh.ring();
                            } else if let Some(st) = protocol::state_of(&ring, t) {
                                if (CLAIMED..DONE).contains(&st) {
                                    p.doomed[t as usize] = true;
                                    stats.doomed.fetch_add(1, R);
                                }
                            }
                        }
                        return;
                    }
                }
                Shared::wait(&sh.submit_seq, seen, &sh.cancel_wake);
            }
        }

        /// One execution of the scenario, with its final checks.
        pub(super) fn run(cfg: Cfg, stats: &'static Stats) {
            stats.executions.fetch_add(1, R);
            let n = cfg.tickets as usize;
            let sh = Arc::new(Shared {
                cfg,
                slots: (0..cfg.cap)
                    .map(|i| AtomicU64::new(protocol::pack(i, protocol::FREE)))
                    .collect(),
                hint: AtomicU64::new(0),
                retries: AtomicU64::new(0),
                payload: (0..cfg.cap).map(|_| Payload(UnsafeCell::new(0))).collect(),
                submit_seq: AtomicU64::new(0),
                doorbell: AtomicU64::new(0),
                worker_wake: (0..cfg.workers).map(|_| Notify::new()).collect(),
                cancel_wake: Notify::new(),
                parent_wake: Notify::new(),
                shutdown: AtomicBool::new(false),
                dead: (0..cfg.workers).map(|_| AtomicBool::new(false)).collect(),
                parent: Mutex::new(Parent {
                    head: 0,
                    tail: 0,
                    last_scan: 0,
                    attempts: vec![0; n],
                    doomed: vec![false; n],
                    outcome: vec![None; n],
                    handled: vec![false; cfg.workers as usize],
                }),
            });
            let ring = View::new(&sh, u64::MAX);
            if cfg.presubmit {
                submit(&sh, &ring, &mut sh.parent.lock().unwrap());
            }
            let mut workers: Vec<_> = (0..cfg.workers)
                .map(|w| {
                    let budget = match cfg.die {
                        Some((d, k)) if d == w => k,
                        _ => u64::MAX,
                    };
                    spawn_worker(&sh, w, budget, stats)
                })
                .collect();
            let cancel = cfg.cancel.map(|t| {
                let sh = sh.clone();
                spawn(move || canceller(&sh, t, stats))
            });
            loop {
                let (seen, replace) = {
                    let mut p = sh.parent.lock().unwrap();
                    collect(&sh, &ring, &mut p, false);
                    let replace = supervise(&sh, &ring, &mut p, stats);
                    submit(&sh, &ring, &mut p);
                    while p.head < p.tail && p.outcome[p.head as usize].is_some() {
                        p.head += 1;
                    }
                    if p.head == cfg.tickets {
                        break;
                    }
                    (p.last_scan, replace)
                };
                // `replace`: after the death was handled, a new worker in the
                // same index (it does not die).
                for w in replace {
                    workers.push(spawn_worker(&sh, w, u64::MAX, stats));
                }
                Shared::wait(&sh.doorbell, seen, &sh.parent_wake);
            }
            sh.shutdown.store(true, SeqCst);
            sh.kick();
            if let Some(c) = cancel {
                c.join().unwrap();
            }
            let logs: Vec<Vec<Ev>> = workers.into_iter().map(|h| h.join().unwrap()).collect();

            // Final checks.
            let p = sh.parent.lock().unwrap();
            let died = cfg
                .die
                .is_some_and(|(d, _)| sh.dead[d as usize].load(Acquire));
            let mut claims = vec![0u32; n];
            let mut finishes = vec![0u32; n];
            for ev in logs.iter().flatten() {
                match *ev {
                    Ev::Claimed(t) => claims[t as usize] += 1,
                    Ev::Finished(t) => finishes[t as usize] += 1,
                }
            }
            for t in 0..n {
                let o = p.outcome[t].expect("every ticket is delivered");
                let a = p.attempts[t];
                match o {
                    Outcome::Result => assert_eq!(finishes[t], 1, "ticket {t}: finishes"),
                    Outcome::WorkerLost => {
                        assert!(died, "ticket {t} lost without a death");
                        assert_eq!(a, cfg.retries + 1, "ticket {t} lost with attempts left");
                        assert_eq!(finishes[t], 0, "ticket {t}: lost but finished");
                    }
                    Outcome::Cancelled => {
                        assert_eq!(cfg.cancel, Some(t as u64), "ticket {t} cancelled");
                        assert_eq!(finishes[t], 0, "ticket {t}: cancelled but finished");
                    }
                }
                // The dead worker may have died between its claim CAS and
                // the claim's return, so its last claim may be missing from
                // its log: hence <= after a death.
                let allowed = a + (o == Outcome::Result) as u32;
                let doomed_claim = (o == Outcome::Cancelled && p.doomed[t]) as u32;
                assert!(
                    claims[t] <= allowed + doomed_claim,
                    "ticket {t} ({o:?}, {a} lost attempts) claimed {} times",
                    claims[t]
                );
                if !died {
                    assert_eq!(claims[t], allowed, "ticket {t}: claims");
                }
            }
            for i in 0..cfg.cap {
                let next = (cfg.tickets + cfg.cap - 1 - i) / cfg.cap * cfg.cap + i;
                assert!(
                    protocol::is_free_for(&ring, next),
                    "slot {i} is not free for ticket {next}: {:?}",
                    protocol::unpack(ring.slot_state(i).load(Acquire))
                );
            }
            let rp = ring.retries_pending().load(Acquire);
            assert!(rp == 0 || (died && rp == 1), "retries_pending ends at {rp}");
        }
    };
}

mod lm {
    use loom::cell::UnsafeCell;
    use loom::sync::atomic::{AtomicBool, AtomicU64};
    use loom::sync::{Arc, Mutex, Notify};
    use loom::thread::{spawn, JoinHandle};
    actors!();
}

mod sm {
    use std::sync::atomic::{AtomicBool, AtomicU64};
    use std::sync::{Arc, Condvar, Mutex};
    use std::thread::{spawn, JoinHandle};

    /// `loom::sync::Notify` (a wake-up permit) over std.
    #[derive(Default)]
    struct Notify(Mutex<bool>, Condvar);
    impl Notify {
        fn new() -> Self {
            Self::default()
        }
        fn notify(&self) {
            *self.0.lock().unwrap() = true;
            self.1.notify_one();
        }
        fn wait(&self) {
            let mut g = self.0.lock().unwrap();
            while !*g {
                g = self.1.wait(g).unwrap();
            }
            *g = false;
        }
    }

    /// `loom::cell::UnsafeCell`'s interface over std's.
    struct UnsafeCell<T>(std::cell::UnsafeCell<T>);
    impl<T> UnsafeCell<T> {
        fn new(v: T) -> Self {
            UnsafeCell(std::cell::UnsafeCell::new(v))
        }
        fn with<X>(&self, f: impl FnOnce(*const T) -> X) -> X {
            f(self.0.get())
        }
        fn with_mut<X>(&self, f: impl FnOnce(*mut T) -> X) -> X {
            f(self.0.get())
        }
    }
    actors!();
}

/// A loom model: `cfg` at preemption bound `pb` (`LOOM_MAX_PREEMPTIONS`
/// overrides it), for each death step `k` in `deaths` (worker 0 dies before its
/// ring operation `k + 1`), or once without a death.
fn check(name: &str, cfg: Cfg, pb: usize, deaths: Option<std::ops::Range<u64>>) {
    quiet_kills();
    let stats: &'static Stats = Box::leak(Box::new(Stats::new()));
    let start = std::time::Instant::now();
    let ks: Vec<Option<u64>> = match deaths {
        Some(r) => r.map(Some).collect(),
        None => vec![None],
    };
    for k in ks {
        let cfg = Cfg {
            die: k.map(|k| (0, k)),
            ..cfg
        };
        let mut b = loom::model::Builder::new();
        if b.preemption_bound.is_none() {
            b.preemption_bound = Some(pb);
        }
        b.check(move || lm::run(cfg, stats));
    }
    stats.report(name, start);
}

/// Worker 0 dies before each of its first `DEATH_STEPS` ring operations: every
/// point of its first three tasks (6 operations each when it finds work at
/// once), or of its idle claims (7 operations each).
const DEATH_STEPS: u64 = 20;

/// Two workers racing for claims and hint advances; the ring wraps.
#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "a model check: run it optimised, cargo test --release --test loom_pool"
)]
fn loom_two_workers() {
    let cfg = Cfg {
        workers: 2,
        presubmit: true,
        ..Cfg::base()
    };
    check("loom_two_workers", cfg, 1, None);
}

/// Worker 0 dies while worker 1 keeps claiming: retries taken by the scan of
/// a live worker racing the dead one's leftovers.
#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "a model check: run it optimised, cargo test --release --test loom_pool"
)]
fn loom_two_workers_death() {
    let cfg = Cfg {
        workers: 2,
        tickets: 2,
        respawn: false,
        presubmit: true,
        ..Cfg::base()
    };
    check("loom_two_workers_death", cfg, 1, Some(0..DEATH_STEPS));
}

/// A death at every step, then a replacement; the retried ticket waits as
/// `RETRY` while fresh tickets are submitted after the wrap.
#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "a model check: run it optimised, cargo test --release --test loom_pool"
)]
fn loom_death_retried() {
    check("loom_death_retried", Cfg::base(), 1, Some(0..DEATH_STEPS));
}

/// `loom_death_retried` at preemption bound 2, for deaths while holding the
/// second ticket (claimed by operations 7..=10, finished by 12) while the
/// third, wrapped onto slot 0, is submitted.
#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "a model check: run it optimised, cargo test --release --test loom_pool"
)]
fn loom_death_retried_pb2() {
    check("loom_death_retried_pb2", Cfg::base(), 2, Some(9..12));
}

/// As `loom_death_retried` with no retries: `WorkerLost`.
#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "a model check: run it optimised, cargo test --release --test loom_pool"
)]
fn loom_death_lost() {
    let cfg = Cfg {
        retries: 0,
        ..Cfg::base()
    };
    check("loom_death_lost", cfg, 1, Some(0..DEATH_STEPS));
}

/// A withdraw racing the claims (of the ticket that wraps onto slot 0).
#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "a model check: run it optimised, cargo test --release --test loom_pool"
)]
fn loom_cancel() {
    let cfg = Cfg {
        cancel: Some(2),
        ..Cfg::base()
    };
    check("loom_cancel", cfg, 1, None);
}

/// A withdraw or a doom racing the claims, the death and the requeue.
#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "a model check: run it optimised, cargo test --release --test loom_pool"
)]
fn loom_cancel_death() {
    let cfg = Cfg {
        cancel: Some(0),
        ..Cfg::base()
    };
    check("loom_cancel_death", cfg, 1, Some(0..DEATH_STEPS));
}

/// The model has teeth: requeued as `READY` (below the hint, as the old
/// protocol did) instead of `RETRY`, the retried ticket is never claimed
/// again and loom reports `deadlock` (then aborts the test process while
/// unwinding, hence `ignore`: run it alone with `-- --ignored`).
#[test]
#[ignore = "fails on purpose; loom aborts the process"]
fn loom_mutant_requeue_as_ready() {
    let cfg = Cfg {
        mutant_requeue_ready: true,
        ..Cfg::base()
    };
    check("loom_mutant_requeue_as_ready", cfg, 1, Some(5..6));
}

/// The same actors on std threads, many times, with random death points.
#[test]
fn smoke_std_threads() {
    static S: Stats = Stats::new();
    quiet_kills();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let start = std::time::Instant::now();
    for i in 0..3000u64 {
        let r = rnd();
        let cfg = Cfg {
            cap: 2 + r % 3,
            tickets: 3 + (r >> 8) % 6,
            workers: 2 + ((r >> 16) % 2) as u8,
            retries: ((r >> 20) % 3) as u32,
            die: (i % 4 != 0).then_some((((r >> 24) % 2) as u8, (r >> 32) % 40)),
            cancel: (i % 3 == 0).then_some((r >> 40) % 3),
            respawn: r >> 44 & 1 == 1,
            presubmit: r >> 45 & 1 == 1,
            mutant_requeue_ready: false,
        };
        sm::run(cfg, &S);
    }
    S.report("smoke_std_threads", start);
}
