//! python3 loads the cdylib with ctypes and runs a pool map and a process in
//! it, with every start method; nothing of python's script runs in a worker.

use std::path::PathBuf;
use std::process::Command;

/// The cdylib cargo built for this test run (target/<profile>/).
fn library() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("deps dir");
    let name = "libshmproc_python_host.so";
    [deps.join(name), deps.join("..").join(name)]
        .into_iter()
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("{name} not built next to {}", exe.display()))
}

const SCRIPT: &str = r#"
import ctypes, sys
print("python main runs", flush=True)
lib = ctypes.CDLL(sys.argv[1])
lib.shmproc_sum_squares.restype = ctypes.c_int64
lib.shmproc_process_exit_code.restype = ctypes.c_int64
err = ctypes.create_string_buffer(512)
for start in (0, 1, 2):
    r = lib.shmproc_sum_squares(ctypes.c_uint64(1000), 2, start)
    if r < 0:
        lib.shmproc_last_error(err, 512)
        print("error", start, err.value.decode(), flush=True)
    else:
        print("sum", start, r, flush=True)
    r = lib.shmproc_process_exit_code(7, start)
    if r < 0:
        lib.shmproc_last_error(err, 512)
        print("error", start, err.value.decode(), flush=True)
    else:
        print("exit", start, r, flush=True)
print("python main ends", flush=True)
"#;

#[test]
fn a_pool_and_a_process_inside_python() {
    let lib = library();
    let out = Command::new("python3")
        .args(["-c", SCRIPT])
        .arg(&lib)
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let want = "python main runs\n\
                sum 0 332833500\nexit 0 7\n\
                sum 1 332833500\nexit 1 7\n\
                sum 2 332833500\nexit 2 7\n\
                python main ends\n";
    assert_eq!(stdout, want, "stderr: {stderr}");
    assert!(stderr.is_empty(), "{stderr}");
}
