//! shmproc inside a shared library that another program loads: python's
//! `ctypes` here. Pools and processes work as in a Rust program; their
//! workers are the host program (python) started by the dynamic loader with
//! this very library preloaded, whose worker entry takes over before python's
//! `main` runs.
//!
//! ```text
//! import ctypes
//! lib = ctypes.CDLL("target/debug/libshmproc_python_host.so")
//! lib.shmproc_sum_squares.restype = ctypes.c_int64
//! print(lib.shmproc_sum_squares(ctypes.c_uint64(1000), 2, 0))  # 332833500
//! ```
//!
//! Every function returns a negative number on failure and keeps the error's
//! text for [`shmproc_last_error`].

use std::cell::RefCell;
use std::ffi::c_char;

use shmproc::process::{Process, StartMethod};
use shmproc::{Pool, Result};

thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

fn method(m: u32) -> Result<StartMethod> {
    match m {
        0 => Ok(StartMethod::Spawn),
        1 => Ok(StartMethod::ForkServer),
        2 => Ok(StartMethod::Fork),
        other => Err(shmproc::Error::InvalidState(format!(
            "start method {other}: 0 spawn, 1 fork server, 2 fork"
        ))),
    }
}

fn report(r: Result<i64>) -> i64 {
    match r {
        Ok(v) => v,
        Err(e) => {
            LAST_ERROR.with(|l| *l.borrow_mut() = e.to_string());
            -1
        }
    }
}

fn square(x: u64) -> u64 {
    x * x
}

fn sum_squares(n: u64, workers: u32, start: u32) -> Result<i64> {
    let pool = Pool::builder()
        .processes(workers as usize)
        .start_method(method(start)?)
        .build()?;
    let squares = pool.map(square, 0..n)?;
    pool.close();
    pool.join()?;
    Ok(squares.iter().sum::<u64>() as i64)
}

fn exit_with(code: i32) {
    std::process::exit(code)
}

fn process_exit_code(code: i32, start: u32) -> Result<i64> {
    let p = Process::builder(exit_with, code)
        .start_method(method(start)?)
        .spawn()?;
    Ok(i64::from(p.join()?))
}

/// The sum of `x * x` for `x` in `0..n`, computed by a pool of `workers`
/// processes started with method `start` (0 spawn, 1 fork server, 2 fork).
#[no_mangle]
pub extern "C" fn shmproc_sum_squares(n: u64, workers: u32, start: u32) -> i64 {
    report(sum_squares(n, workers, start))
}

/// Starts a process that exits with `code` and returns the exit code it
/// reported.
#[no_mangle]
pub extern "C" fn shmproc_process_exit_code(code: i32, start: u32) -> i64 {
    report(process_exit_code(code, start))
}

/// Copies the last error's text of this thread into `buf` (NUL-terminated,
/// cut to `len - 1` bytes); returns its full length.
///
/// # Safety
/// `buf` must point to `len` writable bytes (or be null with `len` 0).
#[no_mangle]
pub unsafe extern "C" fn shmproc_last_error(buf: *mut c_char, len: usize) -> usize {
    LAST_ERROR.with(|l| {
        let l = l.borrow();
        if !buf.is_null() && len > 0 {
            let n = l.len().min(len - 1);
            // SAFETY: the caller gives `len` writable bytes at `buf`; n < len.
            unsafe {
                std::ptr::copy_nonoverlapping(l.as_ptr().cast::<c_char>(), buf, n);
                *buf.add(n) = 0;
            }
        }
        l.len()
    })
}
