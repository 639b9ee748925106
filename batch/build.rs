//! Records the rustc version and the git commit for `shmproc bench`'s header.
use std::process::Command;

fn output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn main() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = output(&rustc, &["--version"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=SHMPROC_RUSTC_VERSION={version}");
    let commit = output("git", &["rev-parse", "--short=12", "HEAD"]);
    if let Some(commit) = commit {
        println!("cargo:rustc-env=SHMPROC_GIT_COMMIT={commit}");
        if let Some(git_dir) = output("git", &["rev-parse", "--git-dir"]) {
            println!("cargo:rerun-if-changed={git_dir}/HEAD");
            println!("cargo:rerun-if-changed={git_dir}/logs/HEAD");
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
