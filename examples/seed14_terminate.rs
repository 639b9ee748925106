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
//!
//! `p` prints as Python's repr (`<Process name='Process-1' parent=41
//! initial>` ...) and booleans as `True`/`False`. The child sleeps 10 s,
//! not the seed's 0.1 s, so that "Finished function" never appears however
//! late the signal comes (in Python it practically never does).

use std::time::Duration;

use shmproc::process::Process;

fn foo(_: ()) {
    println!("Starting function");
    std::thread::sleep(Duration::from_secs(10));
    println!("Finished function");
}

/// Python's `print` of a bool.
fn py(b: bool) -> &'static str {
    if b {
        "True"
    } else {
        "False"
    }
}

fn main() -> shmproc::Result<()> {
    let p = Process::new(foo, ());
    println!("Process before execution: {p} {}", py(p.is_alive()));
    p.start()?;
    println!("Process running: {p} {}", py(p.is_alive()));
    p.terminate()?;
    // Like Python, the child may not have died yet right after the signal.
    println!("Process terminated: {p} {}", py(p.is_alive()));
    p.join()?;
    println!("Process joined: {p} {}", py(p.is_alive()));
    match p.exitcode() {
        Some(code) => println!("Process exit code: {code}"),
        None => println!("Process exit code: None"),
    }
    Ok(())
}
