//! Seed 13: process names — one named `foo_process`, one with the default name.
//!
//! Python:
//! ```python
//! def foo():
//!     name = multiprocessing.current_process().name
//!     print("Starting %s \n" %name)
//!     time.sleep(3)
//!     print("Exiting %s \n" %name)
//! if __name__ == '__main__':
//!     process_with_name = multiprocessing.Process(name='foo_process', target=foo)
//!     process_with_default_name = multiprocessing.Process(target=foo)
//!     process_with_name.start()
//!     process_with_default_name.start()
//! ```
//!
//! Each line ends with a space and is followed by an empty line, as the
//! seed's `"... \n"` with print's own newline. As in the seed, the children
//! are not joined explicitly: a program joins its non-daemon children when
//! it returns from `main`. The 3 s sleep is multiplied by the float in
//! `SHMPROC_SLEEP_SCALE` (default 1).

mod util;
use util::scaled;

use shmproc::process::{current_process, Process};

fn foo(_: ()) {
    let name = current_process().name().to_string();
    println!("Starting {name} \n");
    std::thread::sleep(scaled(3.0));
    println!("Exiting {name} \n");
}

fn main() -> shmproc::Result<()> {
    let process_with_name = Process::builder(foo, ()).name("foo_process").build();
    let process_with_default_name = Process::new(foo, ());
    process_with_name.start()?;
    process_with_default_name.start()?;
    Ok(())
}
