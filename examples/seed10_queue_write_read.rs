//! Seed 10: a writer and a reader share a queue; the reader loops forever and
//! the parent terminates it.
//!
//! Python:
//! ```python
//! def write(q):
//!     print('Process write to: %s' % os.getpid())
//!     for value in ['A', 'B', 'C']:
//!         print('Put %s to queue...' % value)
//!         q.put(value)
//!         time.sleep(random.random())
//! def read(q):
//!     print('Proecss to read: %s' % os.getpid())
//!     while True:
//!         value = q.get(True)
//!         print('Get %s from queue' % value)
//! if __name__ == '__main__':
//!     q = Queue()
//!     pw = Process(target=write, args=(q, ))
//!     pr = Process(target=read, args=(q, ))
//!     pw.start()
//!     pr.start()
//!     pw.join()
//!     pr.terminate()
//! ```
//!
//! In Python, `terminate` can come before the reader has printed the last
//! value (it only usually does not, because the writer sleeps after its last
//! put). Here the queue is a [`JoinableQueue`]: the reader marks each value
//! done after printing it, and the parent waits for that (`q.join()`) before
//! it terminates the reader, so `Get C from queue` is never lost. The parent
//! then joins the terminated reader (exit code -15), leaving nothing behind.
//!
//! Sleeps are multiplied by the float in `SHMPROC_SLEEP_SCALE` (default 1).

mod util;
use util::{random, scaled};

use shmproc::{JoinableQueue, Process};

fn write(q: JoinableQueue<String>) {
    println!("Process write to: {}", std::process::id());
    for (i, value) in ["A", "B", "C"].into_iter().enumerate() {
        println!("Put {value} to queue...");
        q.put(value.to_string()).expect("put");
        std::thread::sleep(scaled(random(i as u64)));
    }
}

fn read(q: JoinableQueue<String>) {
    // "Proecss": the seed's own spelling.
    println!("Proecss to read: {}", std::process::id());
    loop {
        let value = q.get().expect("get");
        println!("Get {value} from queue");
        q.task_done().expect("task_done");
    }
}

fn main() -> shmproc::Result<()> {
    let q = JoinableQueue::<String>::new()?;
    let pw = Process::new(write, q.clone());
    let pr = Process::new(read, q.clone());
    pw.start()?;
    pr.start()?;
    pw.join()?;
    // Every value put has been read and printed.
    q.join()?;
    // The reader loops forever: stop it.
    pr.terminate()?;
    pr.join()?;
    Ok(())
}
