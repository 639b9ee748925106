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
//! The Python program prints four 0 only if `put_it` has put all four powers
//! before `get_it` takes its first value: if `get_it` got ahead, it would take
//! back a 0 it had put itself and leave a power in the queue. Python wins that
//! race because starting a process is slow. Here it is not left to timing:
//! `put_it` is joined before `get_it` starts (its messages stay in the shared
//! queue after it has exited). The two functions are the seed's.

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
    shmproc::init();
    let q = Queue::<u64>::new()?;
    let p1 = Process::new(put_it, (2u64, q.clone()));
    let p2 = Process::new(get_it, q.clone());
    p1.start()?;
    p1.join()?;
    p2.start()?;
    p2.join()?;
    for _ in 0..4 {
        println!("{}", q.get()?);
    }
    Ok(())
}
