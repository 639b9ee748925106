//! Seed 16: `Producer` and `Consumer` processes (Python subclasses of
//! `Process`; here structs implementing [`ProcessRun`]) share a queue;
//! `qsize()` and `empty()` inspect it.
//!
//! Python:
//! ```python
//! class Producer(multiprocessing.Process):
//!     def __init__(self, queue):
//!         multiprocessing.Process.__init__(self)
//!         self.queue = queue
//!     def run(self):
//!         for i in range(10):
//!             item = random.randint(0,256)
//!             self.queue.put(item)
//!             print("Process Producer:item %d appended to queue %s" %(item, self.name))
//!             time.sleep(1)
//!             print("The size of queue is %s" % self.queue.qsize())
//! class Consumer(multiprocessing.Process):
//!     def __init__(self, queue):
//!         multiprocessing.Process.__init__(self)
//!         self.queue = queue
//!     def run(self):
//!         while True:
//!             if self.queue.empty():
//!                 print("The queue is empty")
//!                 break
//!             else:
//!                 time.sleep(2)
//!                 item = self.queue.get()
//!                 print("Process Consumer:item %d popped from by %s \n" %(item, self.name))
//!                 time.sleep(1)
//! if __name__ == "__main__":
//!     queue = multiprocessing.Queue()
//!     process_producer = Producer(queue)
//!     process_consumer = Consumer(queue)
//!     process_producer.start()
//!     process_consumer.start()
//!     process_producer.join()
//!     process_consumer.join()
//! ```
//!
//! Python names a subclass's process after the class (`Producer-1`,
//! `Consumer-2`); here the names are given to the builder. The consumer takes
//! one item every 3 s while the producer puts one every second, so it drains
//! all ten and then finds the queue empty. Its very first `empty()` check
//! would end it at once if it came before the producer's first put: Python
//! wins that race because starting a process is slow; here the parent starts
//! the consumer only once the first item is in the queue.
//!
//! Sleeps are multiplied by the float in `SHMPROC_SLEEP_SCALE` (default 1).

mod util;
use util::scaled;

use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shmproc::process::{current_process, Process, ProcessRun};
use shmproc::Queue;

/// A random integer in `0..=256`, like Python's `random.randint(0, 256)`.
fn randint(seed: u64) -> u32 {
    (RandomState::new().hash_one(seed) % 257) as u32
}

#[derive(Serialize, Deserialize)]
struct Producer {
    queue: Queue<u32>,
}

impl ProcessRun for Producer {
    fn run(&mut self) {
        let name = current_process().name().to_string();
        for i in 0..10 {
            let item = randint(i);
            self.queue.put(item).expect("put");
            println!("Process Producer:item {item} appended to queue {name}");
            std::thread::sleep(scaled(1.0));
            println!("The size of queue is {}", self.queue.qsize());
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Consumer {
    queue: Queue<u32>,
}

impl ProcessRun for Consumer {
    fn run(&mut self) {
        let name = current_process().name().to_string();
        loop {
            if self.queue.empty() {
                println!("The queue is empty");
                break;
            } else {
                std::thread::sleep(scaled(2.0));
                let item = self.queue.get().expect("get");
                println!("Process Consumer:item {item} popped from by {name} \n");
                std::thread::sleep(scaled(1.0));
            }
        }
    }
}

fn main() -> shmproc::Result<()> {
    let queue = Queue::<u32>::new()?;
    let process_producer = Process::run_builder(Producer {
        queue: queue.clone(),
    })
    .name("Producer-1")
    .build();
    let process_consumer = Process::run_builder(Consumer {
        queue: queue.clone(),
    })
    .name("Consumer-2")
    .build();
    process_producer.start()?;
    // Python gets this from a slow process start (see above).
    while queue.empty() && process_producer.is_alive() {
        std::thread::sleep(Duration::from_millis(1));
    }
    process_consumer.start()?;
    process_producer.join()?;
    process_consumer.join()?;
    Ok(())
}
