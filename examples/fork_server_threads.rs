//! A fork server forked by a single-threaded program (as a pool with the fork
//! start method does in `Pool::start`), then used from a thread started
//! afterwards: 50 children in a row, each reaped with the right status.
//! Run by `tests/process.rs`.

use shmproc::process::spawn::{ChildOptions, Entry, ExitStatus, ForkServer};

fn boot_code(payload: &[u8]) -> i32 {
    payload.first().map_or(-1, |&b| i32::from(b))
}

fn main() -> shmproc::Result<()> {
    // Still single-threaded: no forcing needed.
    let server = ForkServer::fork_from_here(false)?;
    let t = std::thread::spawn(move || -> shmproc::Result<usize> {
        for i in 0..50u8 {
            let c = server.start_child(Entry::new(boot_code), vec![i], &ChildOptions::new())?;
            let st = c.wait()?;
            assert_eq!(st, ExitStatus::Exited(i32::from(i)), "child {i}");
        }
        Ok(50)
    });
    let n = t.join().expect("the starting thread panicked")?;
    println!("served {n} children");
    Ok(())
}
