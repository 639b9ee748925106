//! Seed 4: `Pool(3).map(power, nums)` returns the list of results in order.
//!
//! Python:
//! ```python
//! def power(x):
//!     for _ in range(4):
//!         x *= x
//!     return x
//! if __name__ == '__main__':
//!     nums = [1, 2, 3]
//!     p = Pool(processes=3)
//!     res = p.map(power, nums)
//!     p.close()
//!     p.join()
//!     for result in res:
//!         print(result)
//! ```

use shmproc::Pool;

fn power(x: u64) -> u64 {
    shmproc_kernels::power_u64(x, 4)
}

fn main() -> shmproc::Result<()> {
    let nums = vec![1u64, 2, 3];
    let p = Pool::new(3)?;
    let res = p.map(power, nums)?;
    p.close();
    p.join()?;
    for result in res {
        println!("{result}");
    }
    Ok(())
}
