//! Seed 1: `power(x, res)` in a `Process`; the result comes back through a
//! `Queue` -> 65536.
//!
//! Python:
//! ```python
//! from multiprocessing import Process, Queue
//! def power(x, res):
//!     for _ in range(4):
//!         x *= x
//!     res.put(x)
//! if __name__ == '__main__':
//!     res = Queue()
//!     p = Process(target=power, args=(2, res))
//!     p.start()
//!     p.join()
//!     result = res.get()
//!     print(result)
//! ```
//!
//! The queue travels to the child as a small handle and re-attaches there. The
//! parent keeps its own `res` until after `join`: the creator's last clone
//! unlinks the segment's name, and the child attaches only after `start`
//! returns.

use shmproc::{Process, Queue};

/// `x` squared four times, put on `res`.
fn power((x, res): (u64, Queue<u64>)) {
    res.put(shmproc_kernels::power_u64(x, 4))
        .expect("put the result");
}

fn main() -> shmproc::Result<()> {
    let res = Queue::<u64>::new()?;
    let p = Process::new(power, (2u64, res.clone()));
    p.start()?;
    p.join()?;
    let result = res.get()?;
    println!("{result}");
    Ok(())
}
