//! Seed 9: `Pool(4)` and five long tasks with random sleeps. The pool size
//! bounds the concurrency: task 4 starts only when one of the first four ends.
//!
//! Python (the seed's strings, `'Run task %s()%s'` included):
//! ```python
//! def long_time_task(name):
//!     print('Run task %s()%s' % (name, os.getpid()))
//!     start = time.time()
//!     time.sleep(random.random() * 3)
//!     end = time.time()
//!     print('Task %s run %0.2f seconds' % (name, end - start))
//! if __name__ == '__main__':
//!     print('Parent process %s' % os.getpid())
//!     p = Pool(4)
//!     for i in range(5):
//!         p.apply_async(long_time_task, args=(i, ))
//!     print('Waiting all subprocess done!')
//!     p.close()
//!     p.join()
//!     print('All subprocess done!')
//! ```
//!
//! Sleeps are multiplied by the float in `SHMPROC_SLEEP_SCALE` (default 1).

mod util;
use util::{random, scaled};

use std::time::Instant;

use shmproc::Pool;

fn long_time_task(name: u32) {
    println!("Run task {name}(){}", std::process::id());
    let start = Instant::now();
    std::thread::sleep(scaled(random(name.into()) * 3.0));
    println!(
        "Task {name} run {:.2} seconds",
        start.elapsed().as_secs_f64()
    );
}

fn main() -> shmproc::Result<()> {
    println!("Parent process {}", std::process::id());
    let p = Pool::new(4)?;
    for i in 0..5 {
        // Like Python, the results are not kept: join waits for the tasks.
        p.apply_async(long_time_task, i)?;
    }
    println!("Waiting all subprocess done!");
    p.close();
    p.join()?;
    println!("All subprocess done!");
    Ok(())
}
