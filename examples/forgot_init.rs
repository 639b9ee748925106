//! A deliberately broken program: it starts a process but never calls
//! `shmproc::init()`. The child re-runs `main`, is stopped when it tries to
//! start a process of its own, and the parent's `start()` returns
//! `Error::InitMissing`. Used by `tests/process.rs`.

use shmproc::process::Process;

fn hello(_: ()) {
    println!("never printed");
}

fn main() {
    // (no shmproc::init() here — that is the bug being demonstrated)
    println!("forgot_init main starts");
    let p = Process::new(hello, ());
    match p.start() {
        Ok(()) => {
            println!("start succeeded?!");
            let _ = p.join();
        }
        Err(e) => {
            let kind = if matches!(e, shmproc::Error::InitMissing) {
                "InitMissing"
            } else {
                "other"
            };
            println!("start failed: {kind}: {e}");
        }
    }
}
