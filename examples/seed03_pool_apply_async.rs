//! Seed 3: `Pool(3).apply_async(power)` for each number, `get`, then `close`
//! and `join`.
//!
//! Python:
//! ```python
//! def power(x):
//!     for _ in range(4):
//!         x *= x
//!     return x
//! if __name__ == '__main__':
//!     res = []
//!     nums = [1, 2, 3]
//!     p = Pool(processes=3)
//!     for num in nums:
//!         temp = p.apply_async(power, args=(num,))
//!         res.append(temp.get())
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
    let mut res = Vec::new();
    let nums = [1u64, 2, 3];
    let p = Pool::new(3)?;
    for num in nums {
        let temp = p.apply_async(power, num)?;
        res.push(temp.get()?);
    }
    p.close();
    p.join()?;
    for result in res {
        println!("{result}");
    }
    Ok(())
}
