//! `AsyncResult` as a `Future` and `imap`/`imap_unordered` as a `Stream`,
//! driven from tokio; the runtime thread never blocks on the pool.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use shmproc::Pool;

fn square(x: u64) -> u64 {
    x * x
}

fn nap_then(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn boom(x: u32) -> u32 {
    if x == 3 {
        panic!("three");
    }
    x
}

#[tokio::test(flavor = "current_thread")]
async fn futures_and_streams_from_a_single_threaded_runtime() {
    let pool = Pool::new(2).expect("pool");
    // Awaited futures: the values, in any order of completion.
    let slow = pool.apply_async(nap_then, 300).expect("submit");
    let fast = pool.apply_async(square, 9).expect("submit");
    assert_eq!(fast.await.expect("fast"), 81);
    assert_eq!(slow.await.expect("slow"), 300);

    // While a task runs, the runtime thread keeps running other tasks: a
    // ticker advances during the wait (it could not if `await` blocked).
    let ticks = tokio::spawn(async {
        let mut n = 0u32;
        let end = Instant::now() + Duration::from_millis(400);
        while Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(10)).await;
            n += 1;
        }
        n
    });
    let r = pool.apply_async(nap_then, 300).expect("submit");
    assert_eq!(r.await.expect("nap"), 300);
    let n = ticks.await.expect("ticker");
    assert!(n >= 10, "the ticker ran {n} times during the wait");

    // map_async as a future.
    let m = pool.map_async(square, 0..100u64).expect("map_async");
    let v = m.await.expect("map");
    assert_eq!(v, (0..100u64).map(|x| x * x).collect::<Vec<_>>());

    // imap as an ordered stream, imap_unordered as an unordered one.
    let got: Vec<u64> = pool
        .imap(square, 0..1000u64)
        .into_stream()
        .map(|r| r.expect("item"))
        .collect()
        .await;
    assert_eq!(got, (0..1000u64).map(|x| x * x).collect::<Vec<_>>());
    let mut got: Vec<u64> = pool
        .imap_unordered(square, 0..1000u64)
        .into_stream()
        .map(|r| r.expect("item"))
        .collect()
        .await;
    got.sort_unstable();
    assert_eq!(got, (0..1000u64).map(|x| x * x).collect::<Vec<_>>());

    // Errors come through both.
    let e = pool
        .apply_async(boom, 3)
        .expect("submit")
        .await
        .unwrap_err();
    assert!(matches!(e, shmproc::Error::TaskPanicked(_)), "{e}");
    let items: Vec<shmproc::Result<u32>> = pool.imap(boom, 0..6u32).into_stream().collect().await;
    assert_eq!(items.len(), 6);
    assert!(items[3].is_err());
    assert_eq!(items[5].as_ref().ok(), Some(&5));

    pool.close();
    pool.join().expect("join");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_futures_at_once_on_a_multi_threaded_runtime() {
    let pool = std::sync::Arc::new(Pool::new(2).expect("pool"));
    // More futures than the pool has slots (1024): most wait in the parent.
    let mut handles = Vec::new();
    for i in 0..3000u64 {
        let r = pool.apply_async(square, i).expect("submit");
        handles.push(tokio::spawn(r));
    }
    for (i, h) in handles.into_iter().enumerate() {
        let i = i as u64;
        assert_eq!(h.await.expect("join").expect("value"), i * i);
    }
    // A timeout around a future: the pending task is still there afterwards.
    let r = pool.apply_async(nap_then, 200).expect("submit");
    let mut r = std::pin::pin!(r);
    assert!(tokio::time::timeout(Duration::from_millis(20), &mut r)
        .await
        .is_err());
    assert_eq!(r.await.expect("nap"), 200);
}
