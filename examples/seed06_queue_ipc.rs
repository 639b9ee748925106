//! Seed 6: `put_it` and `get_it` share one `Queue`; the parent prints four 0.
//!
//! Python:
//! ```python
//! def put_it(x, q):
//!     for _ in range(4):
//!         x *= x
//!         q.put(x)
//! def get_it(q):
//!     for _ in range(4):
//!         value = q.get()
//!         q.put(value-value)
//! if __name__ == '__main__':
//!     q = Queue()
//!     p1 = Process(target=put_it, args=(2, q))
//!     p2 = Process(target=get_it, args=(q,))
//!     p1.start()
//!     p2.start()
//!     p1.join()
//!     p2.join()
//!     for _ in range(4):
//!         print(q.get())
//! ```
//!
//! As in the seed, both children are started before either is joined, so
//! they run at the same time and the output depends on timing, as the
//! seed's does. It prints four 0 when `put_it` has put all four powers
//! before `get_it` takes its first value (what the seed shows, and what
//! happens here almost always: `put_it` is running before `get_it` starts).
//! Otherwise `get_it` takes back some of its own 0s, and the parent prints
//! the powers it left. What the program guarantees: four lines, at least
//! one 0 (`get_it`'s first value is always the power 4), and the powers left
//! are the last ones put, in order.

use shmproc::{Process, Queue};

/// Puts `x` squared once, twice, three and four times: 4, 16, 256, 65536.
fn put_it((mut x, q): (u64, Queue<u64>)) {
    for _ in 0..4 {
        x = x.wrapping_mul(x);
        q.put(x).expect("put");
    }
}

/// Takes four values and puts back `value - value` for each.
fn get_it(q: Queue<u64>) {
    for _ in 0..4 {
        let value = q.get().expect("get");
        // The seed's `value-value`: always 0, whatever was taken.
        #[allow(clippy::eq_op)]
        q.put(value - value).expect("put");
    }
}

fn main() -> shmproc::Result<()> {
    let q = Queue::<u64>::new()?;
    let p1 = Process::new(put_it, (2u64, q.clone()));
    let p2 = Process::new(get_it, q.clone());
    p1.start()?;
    p2.start()?;
    p1.join()?;
    p2.join()?;
    for _ in 0..4 {
        println!("{}", q.get()?);
    }
    Ok(())
}
