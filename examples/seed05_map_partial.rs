//! Seed 5, second way: a bound parameter, like `functools.partial`.
//!
//! Python:
//! ```python
//! def power(x, time):
//!     for _ in range(time):
//!         x *= x
//!     return x
//! if __name__ == '__main__':
//!     nums = [1, 2, 3]
//!     p = Pool(processes=3)
//!     res = p.map(partial(power, time=4), nums)
//!     p.close()
//!     p.join()
//!     for result in res:
//!         print(result)
//! ```
//!
//! `map_with(f, fixed, items)` calls `f(item, fixed)`: the bound value travels
//! once per chunk, not once per item.

use shmproc::Pool;

fn power(x: u64, time: u32) -> u64 {
    shmproc_kernels::power_u64(x, time)
}

fn main() -> shmproc::Result<()> {
    let nums = vec![1u64, 2, 3];
    let p = Pool::new(3)?;
    let res = p.map_with(power, 4u32, nums)?;
    p.close();
    p.join()?;
    for result in res {
        println!("{result}");
    }
    Ok(())
}
