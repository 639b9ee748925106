//! Seed 8: run a function in a child process and print both pids.
//!
//! Python:
//! ```python
//! def run_proc(name):
//!     print('Run child process %s (%s)...' % (name, os.getpid()))
//! if __name__ == '__main__':
//!     print('Parent process %s.' % os.getpid())
//!     p = Process(target=run_proc, args=('test',))
//!     print('Child process will start.')
//!     p.start(); p.join()
//!     print('Child process end.')
//! ```

use shmproc::process::Process;

fn run_proc(name: String) {
    println!("Run child process {name}({})", std::process::id());
}

fn main() -> shmproc::Result<()> {
    shmproc::init();
    println!("Run parent process {}", std::process::id());
    let p = Process::new(run_proc, "test".to_string());
    println!("Child process will start!");
    p.start()?;
    p.join()?;
    println!("Child process end!");
    Ok(())
}
