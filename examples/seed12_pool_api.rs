//! Seed 12: the whole Pool API over a generator that prints `yield x` as it is
//! consumed: `apply`, `apply_async` with a callback, `map` with a chunk size,
//! `map_async`, `imap` and `imap_unordered`.
//!
//! Python (2):
//! ```python
//! def gen_list(l):
//!     for x in l:
//!         print 'yield', x
//!         yield x
//! def pool_test(x):
//!     print 'f2', x
//!     time.sleep(1)
//! for x in gen_list(l):
//!     result = pool.apply(pool_test, (x,))
//!     print 'main process'
//! [x.get() for x in [pool.apply_async(pool_test, (x,)) for x in gen_list(l)]]
//! pool.map(pool_test, gen_list(l), chunksize)
//! pool.map_async(pool_test, gen_list(l))
//! for x in pool.imap(pool_test, gen_list(l)):
//!     pass
//! pool.imap_unordered(pool_test, gen_list(l))
//! ```
//!
//! What the output shows:
//! - `apply` blocks: `yield x`, `f2 x`, `main process x` in lockstep.
//! - `apply_async` does not: all three are submitted at once; each callback
//!   prints before its `get` returns.
//! - `map` and `map_async` collect the whole input first (every `yield` comes
//!   before any `f2`), as the tutorial observed for Python.
//! - `imap` and `imap_unordered` are lazy: they pull only about two items per
//!   worker ahead of the consumer, so later `yield` lines come after the first
//!   results. (CPython's `imap` drains the generator in a background thread.)
//!
//! Sleeps are multiplied by the float in `SHMPROC_SLEEP_SCALE` (default 1).

mod util;
use util::scaled;

use shmproc::pool::TaskOptions;
use shmproc::Pool;

/// Python's `gen_list`: yields the items of `l`, printing each as it goes.
fn gen_list(l: std::ops::Range<u64>) -> impl Iterator<Item = u64> {
    l.inspect(|x| println!("yield {x}"))
}

/// The task: prints, sleeps a second (scaled) and returns `x * x`.
fn pool_test(x: u64) -> u64 {
    println!("f2 {x}");
    std::thread::sleep(scaled(1.0));
    x * x
}

fn main() -> shmproc::Result<()> {
    let pool = Pool::new(3)?;

    println!("--- apply");
    for x in gen_list(0..3) {
        let result = pool.apply(pool_test, x)?;
        println!("main process {result}");
    }

    println!("--- apply_async with a callback");
    let mut pending = Vec::new();
    for x in gen_list(0..3) {
        pending.push(pool.apply_async_with(
            pool_test,
            x,
            |r: &u64| println!("callback {r}"),
            |e: &shmproc::Error| println!("error callback {e}"),
        )?);
        println!("main process");
    }
    let results = pending
        .iter()
        .map(|r| r.get())
        .collect::<shmproc::Result<Vec<u64>>>()?;
    println!("apply_async results {results:?}");

    println!("--- map chunksize=3");
    let results = pool.map_opts(pool_test, gen_list(0..10), TaskOptions::new().chunksize(3))?;
    println!("map results {results:?}");

    println!("--- map_async");
    let async_result = pool.map_async(pool_test, gen_list(0..5))?;
    println!("map_async submitted");
    println!("map_async results {:?}", async_result.get()?);

    println!("--- imap");
    for r in pool.imap(pool_test, gen_list(0..10)) {
        println!("imap result {}", r?);
    }

    println!("--- imap_unordered");
    for r in pool.imap_unordered(pool_test, gen_list(0..10)) {
        println!("imap_unordered result {}", r?);
    }

    pool.close();
    pool.join()?;
    println!("--- done");
    Ok(())
}
