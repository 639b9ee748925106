//! Seed 13: process names — one named `foo_process`, one with the default name.
//!
//! Python:
//! ```python
//! def foo():
//!     name = multiprocessing.current_process().name
//!     print("Starting %s " % name); time.sleep(3); print("Exiting %s " % name)
//! process_with_name = multiprocessing.Process(name='foo_process', target=foo)
//! process_with_default_name = multiprocessing.Process(target=foo)
//! ```

use std::time::Duration;

use shmproc::process::{current_process, Process};

fn foo(pause_ms: u64) {
    let name = current_process().name().to_string();
    println!("Starting {name}");
    std::thread::sleep(Duration::from_millis(pause_ms));
    println!("Exiting {name}");
}

fn main() -> shmproc::Result<()> {
    shmproc::init();
    let with_name = Process::builder(foo, 300).name("foo_process").build();
    let with_default_name = Process::new(foo, 300);
    with_name.start()?;
    with_default_name.start()?;
    with_name.join()?;
    with_default_name.join()?;
    Ok(())
}
