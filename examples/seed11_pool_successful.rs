//! Seed 11: `Pool(3).apply_async(f, i)` for `i` in 11..20, then `close`,
//! `join` and `successful()`. At most three tasks run at once.
//!
//! Python (2):
//! ```python
//! def f(x):
//!     for i in range(10):
//!         print '%s --- %s ' % (i, x)
//!         sleep(1)
//! def main():
//!     pool = Pool(processes=3)
//!     for i in range(11,20):
//!         result = pool.apply_async(f, (i,))
//!     pool.close()
//!     pool.join()
//!     if result.successful():
//!         print 'successful'
//! ```
//!
//! As in the seed, only the last task's result is looked at: one
//! `successful` line at the end. Each line ends with a space, as the seed's
//! format string does. Sleeps are multiplied by the float in `SHMPROC_SLEEP_SCALE` (default 1).

mod util;
use util::scaled;

use shmproc::Pool;

fn f(x: u32) {
    for i in 0..10 {
        println!("{i} --- {x} ");
        std::thread::sleep(scaled(1.0));
    }
}

fn main() -> shmproc::Result<()> {
    let pool = Pool::new(3)?;
    let mut result = None;
    for i in 11..20 {
        result = Some(pool.apply_async(f, i)?);
    }
    pool.close();
    pool.join()?;
    // After join every result is ready, so successful() cannot fail.
    if let Some(result) = result {
        if result.successful()? {
            println!("successful");
        }
    }
    Ok(())
}
