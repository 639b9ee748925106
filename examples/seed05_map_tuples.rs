//! Seed 5, first way: several arguments packed as `(x, time)` tuples.
//!
//! Python maps a one-argument function over tuples and unpacks them inside;
//! `starmap` (Python's own `Pool.starmap` too) unpacks them for us:
//! ```python
//! def power(para):
//!     x, time = para[0], para[1]
//!     for _ in range(time):
//!         x *= x
//!     return x
//! if __name__ == '__main__':
//!     para = [(1,4), (2,4), (3,4)]
//!     p = Pool(processes=3)
//!     res = p.map(power, para)
//!     p.close()
//!     p.join()
//!     for result in res:
//!         print(result)
//! ```

use shmproc::Pool;

fn power(x: u64, time: u32) -> u64 {
    shmproc_kernels::power_u64(x, time)
}

fn main() -> shmproc::Result<()> {
    let para = vec![(1u64, 4u32), (2, 4), (3, 4)];
    let p = Pool::new(3)?;
    let res = p.starmap(power, para)?;
    p.close();
    p.join()?;
    for result in res {
        println!("{result}");
    }
    Ok(())
}
