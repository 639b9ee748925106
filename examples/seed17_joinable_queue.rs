//! Seed 17: a `JoinableQueue` with three daemon consumers; the producer waits
//! with `join` until every item has been marked done.
//!
//! Python:
//! ```python
//! def consumer(name, q):
//!     while True:
//!         time.sleep(1)
//!         get_res = q.get()
//!         print("%s got %s" %(name, get_res))
//!         q.task_done()
//! def producer(seq, q):
//!     for item in seq:
//!         q.put(item)
//!         print("Produced %s" %item)
//!     q.join()
//! if __name__ == "__main__":
//!     q = JoinableQueue()
//!     seq = ("item-%s" %i for i in range(10))
//!     c1 = Process(target=consumer, args=("c1", q))
//!     c2 = Process(target=consumer, args=("c2", q))
//!     c3 = Process(target=consumer, args=("c3", q))
//!     c1.daemon = True
//!     c2.daemon = True
//!     c3.daemon = True
//!     c1.start()
//!     c2.start()
//!     c3.start()
//!     producer(seq,q)
//!     print("Ended")
//! ```
//!
//! Prints `Produced item-0` .. `Produced item-9`, one `cX got item-i` per item
//! (which consumer gets which item varies), then `Ended`. The consumers never
//! return: as daemons they are terminated when the main program exits.
//!
//! Sleeps are multiplied by the float in `SHMPROC_SLEEP_SCALE` (default 1).

mod util;
use util::scaled;

use shmproc::{JoinableQueue, Process};

fn consumer((name, q): (String, JoinableQueue<String>)) {
    loop {
        std::thread::sleep(scaled(1.0));
        let get_res = q.get().expect("get");
        println!("{name} got {get_res}");
        q.task_done().expect("task_done");
    }
}

fn producer(seq: impl Iterator<Item = String>, q: &JoinableQueue<String>) -> shmproc::Result<()> {
    for item in seq {
        q.put(&item)?;
        println!("Produced {item}");
    }
    // Blocks until every item has been marked done.
    q.join()
}

fn main() -> shmproc::Result<()> {
    let q = JoinableQueue::<String>::new()?;
    let seq = (0..10).map(|i| format!("item-{i}"));

    let consumers: Vec<Process> = ["c1", "c2", "c3"]
        .into_iter()
        .map(|name| {
            Process::builder(consumer, (name.to_string(), q.clone()))
                .daemon(true)
                .build()
        })
        .collect();
    for c in &consumers {
        c.start()?;
    }

    producer(seq, &q)?;

    // Runs once every item has been consumed.
    println!("Ended");
    Ok(())
}
