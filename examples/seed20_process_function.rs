//! The first program of the fourth tutorial: five processes, each running
//! `foo(i)`, each started and joined before the next one starts, so the
//! lines come in order. (Numbered 20: the seed table of DESIGN.md skips it.)
//!
//! Python:
//! ```python
//! def foo(i):
//!     print('called function in process: %s' %i)
//!     return
//! if __name__ == '__main__':
//!     Process_jobs = []
//!     for i in range(5):
//!         p = multiprocessing.Process(target=foo, args=(i, ))
//!         Process_jobs.append(p)
//!         p.start()
//!         p.join()
//! ```

use shmproc::process::Process;

fn foo(i: u32) {
    println!("called function in process: {i}");
}

fn main() -> shmproc::Result<()> {
    let mut process_jobs = Vec::new();
    for i in 0..5 {
        let p = Process::new(foo, i);
        p.start()?;
        p.join()?;
        process_jobs.push(p);
    }
    Ok(())
}
