//! Seed 14: terminate a process; `is_alive` and `exitcode` along the way.
//!
//! Python:
//! ```python
//! p = multiprocessing.Process(target=foo)
//! print('Process before execution:', p, p.is_alive())
//! p.start();      print('Process running:', p, p.is_alive())
//! p.terminate();  print('Process terminated:', p, p.is_alive())
//! p.join();       print('Process joined:', p, p.is_alive())
//! print('Process exit code:', p.exitcode)
//! ```

use std::time::Duration;

use shmproc::process::Process;

fn foo(_: ()) {
    println!("Starting function");
    std::thread::sleep(Duration::from_secs(10));
    println!("Finished function");
}

fn main() -> shmproc::Result<()> {
    shmproc::init();
    let p = Process::new(foo, ());
    println!(
        "Process before execution: {} is_alive: {}",
        p.name(),
        p.is_alive()
    );
    p.start()?;
    println!("Process running: {} is_alive: {}", p.name(), p.is_alive());
    p.terminate()?;
    // Like Python, the child may not have died yet right after the signal.
    println!(
        "Process terminated: {} is_alive: {}",
        p.name(),
        p.is_alive()
    );
    p.join()?;
    println!("Process joined: {} is_alive: {}", p.name(), p.is_alive());
    match p.exitcode() {
        Some(code) => println!("Process exit code: {code}"),
        None => println!("Process exit code: None"),
    }
    Ok(())
}
