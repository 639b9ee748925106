//! Seed 15: "subclass Process and override run()" — a struct implementing
//! [`ProcessRun`], five instances, each printing its process name.
//!
//! Python:
//! ```python
//! class MyProcess(multiprocessing.Process):
//!     def run(self):
//!         print('called run method in process: %s' % self.name)
//! for i in range(5):
//!     p = MyProcess(); jobs.append(p); p.start(); p.join()
//! ```

use serde::{Deserialize, Serialize};
use shmproc::process::{current_process, Process, ProcessRun};

#[derive(Serialize, Deserialize)]
struct MyProcess {
    index: usize,
}

impl ProcessRun for MyProcess {
    fn run(&mut self) {
        println!("called run method in process: {}", current_process().name());
    }
}

fn main() -> shmproc::Result<()> {
    for index in 0..5 {
        let p = Process::from_run(MyProcess { index });
        p.start()?;
        p.join()?;
    }
    Ok(())
}
