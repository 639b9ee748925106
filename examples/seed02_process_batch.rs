//! Seed 2: a batch of processes over `nums = [1, 2, 3]`, joined in a loop; the
//! results come back through a shared array instead of a `Queue`.
//!
//! Python:
//! ```python
//! def power(x, res):
//!     for _ in range(4):
//!         x *= x
//!     res.put(x)
//! if __name__ == '__main__':
//!     res = Queue()
//!     nums = [1, 2, 3]
//!     processes = []
//!     for num in nums:
//!         p = Process(target=power, args=(num, res))
//!         p.start()
//!         processes.append(p)
//!     for name in processes:
//!         name.join()
//!     for i in range(len(nums)):
//!         print(res.get())
//! ```
//!
//! Each child writes its own element of a `SharedView<u64>` (the array travels
//! as a handle and re-attaches in the child), so the parent prints the results
//! in the order of `nums` after joining all children.

use shmproc::{Process, SharedView};

/// `x` squared four times, stored at `res[i]`.
fn power((x, i, res): (u64, usize, SharedView<u64>)) {
    res.set(i, shmproc_kernels::power_u64(x, 4));
}

fn main() -> shmproc::Result<()> {
    let nums = [1u64, 2, 3];
    let res = SharedView::<u64>::new(nums.len())?;
    let mut processes = Vec::new();
    for (i, &num) in nums.iter().enumerate() {
        let p = Process::new(power, (num, i, res.clone()));
        p.start()?;
        processes.push(p);
    }
    for p in &processes {
        p.join()?;
    }
    for v in res.to_vec() {
        println!("{v}");
    }
    Ok(())
}
