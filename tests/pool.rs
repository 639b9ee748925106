//! The process pool with real worker processes.

mod common;

use std::time::Duration;

use common::watchdog;
use shmproc::{Error, Pool, SharedArray};

shmproc::worker_test_entry!();

fn power(x: u64) -> u64 {
    shmproc::kernels::power_u64(x, 4)
}

#[test]
fn smoke_apply_and_map() {
    let _w = watchdog("smoke", Duration::from_secs(60));
    let pool = Pool::new(2).unwrap();
    assert_eq!(pool.apply(power, 2).unwrap(), 65536);
    assert_eq!(pool.map(power, [1u64, 2, 3]).unwrap(), vec![1, 65536, 43046721]);
    let input = SharedArray::<u64>::from_slice(&(0..1000).collect::<Vec<_>>()).unwrap();
    let output = SharedArray::<u64>::new(1000).unwrap();
    pool.map_chunks(
        |i: &[u64], o: &mut [u64], t: &u32| shmproc::kernels::power_u64_slice(i, o, *t),
        &input,
        &output,
        4u32,
        None,
    )
    .unwrap();
    let want: Vec<u64> = (0..1000).map(power).collect();
    assert_eq!(output.to_vec(), want);
    pool.close();
    pool.join().unwrap();
    let _ = Error::Timeout;
}
