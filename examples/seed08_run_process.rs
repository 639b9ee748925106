//! Seed 8: run a function in a child process and print both pids.
//!
//! Python:
//! ```python
//! def run_process(name):
//!     print('Run child process %s(%s)' % (name, os.getpid()))
//! if __name__ == '__main__':
//!     print('Run parent process %s' % os.getpid())
//!     p = Process(target=run_process, args=('test', ))
//!     print('Child process will start!')
//!     p.start()
//!     p.join()
//!     print('Child process end!')
//! ```

use shmproc::process::Process;

fn run_process(name: String) {
    println!("Run child process {name}({})", std::process::id());
}

fn main() -> shmproc::Result<()> {
    println!("Run parent process {}", std::process::id());
    let p = Process::new(run_process, "test".to_string());
    println!("Child process will start!");
    p.start()?;
    p.join()?;
    println!("Child process end!");
    Ok(())
}
