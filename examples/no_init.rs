//! A program with no `shmproc::init()` and side effects before its first pool:
//! the line printed, the argument parsed and the file appended before
//! `Pool::new` happen once, in the parent; the workers run only their tasks.
//! Used by `tests/process.rs`.
//!
//! `cargo run --example no_init -- FILE` appends one line to FILE.

use shmproc::process::{current_process, Process};
use shmproc::Pool;
use std::io::Write;

fn square(x: u64) -> u64 {
    x * x
}

fn hello(_: ()) {
    println!("hello from {}", current_process().name());
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    println!("no_init main starts with {args:?}");
    if let Some(path) = args.first() {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        writeln!(f, "main ran")?;
    }
    let pool = Pool::new(2)?;
    println!("{:?}", pool.map(square, 1..=4u64)?);
    pool.close();
    pool.join()?;
    let p = Process::new(hello, ());
    p.start()?;
    p.join()?;
    Ok(())
}
