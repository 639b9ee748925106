//! `shmproc info` and `shmproc clean`: this user's segments in /dev/shm, and
//! the temporary outputs of runs (found through their markers there).

use super::tempout;
use shmproc::segment;

fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Lists this user's shmproc segments. Exit code 0, or 1 if /dev/shm cannot be read.
pub(crate) fn info() -> i32 {
    match segment::list() {
        Ok(list) if list.is_empty() => {
            println!("no shmproc segments in /dev/shm");
            print_outputs();
            0
        }
        Ok(list) => {
            println!("{:<56} {:>10} {:>8}  state", "name", "size", "creator");
            for s in &list {
                println!(
                    "{:<56} {:>10} {:>8}  {}",
                    s.name,
                    human(s.size),
                    s.creator_pid.map_or("-".to_owned(), |p| p.to_string()),
                    if s.alive { "alive" } else { "stale" }
                );
            }
            let stale = list.iter().filter(|s| !s.alive).count();
            print_outputs();
            println!(
                "{} segment(s), {} stale{}",
                list.len(),
                stale,
                if stale > 0 {
                    " (remove them with `shmproc clean`)"
                } else {
                    ""
                }
            );
            0
        }
        Err(e) => {
            eprintln!("shmproc: error: info: {e}");
            1
        }
    }
}

/// Lists the temporary outputs of runs, if there are any.
fn print_outputs() {
    let Ok(left) = tempout::leftovers() else {
        return;
    };
    for l in &left {
        println!(
            "temporary output {} ({}, run {} {})",
            l.path.display(),
            human(l.size),
            l.pid,
            if l.alive { "alive" } else { "gone: stale" }
        );
    }
}

/// Removes the temporary outputs of dead runs (or lists them with
/// `dry_run`). Returns how many, or a message.
fn clean_outputs(dry_run: bool) -> Result<usize, String> {
    let left = tempout::leftovers().map_err(|e| format!("cannot read /dev/shm: {e}"))?;
    let mut n = 0;
    for l in left.iter().filter(|l| !l.alive) {
        if !dry_run {
            tempout::remove(l).map_err(|e| format!("cannot remove {}: {e}", l.path.display()))?;
        }
        let verb = if dry_run { "would remove" } else { "removed" };
        println!(
            "{verb} temporary output {} ({}, run {} is gone)",
            l.path.display(),
            human(l.size),
            l.pid
        );
        n += 1;
    }
    Ok(n)
}

/// Removes stale segments and the temporary outputs of dead runs (or lists
/// them with `dry_run`). Exit code 0, or 1 on failure.
pub(crate) fn clean(dry_run: bool) -> i32 {
    match clean_outputs(dry_run) {
        Ok(n) if n > 0 => println!(
            "{n} temporary output(s) {}",
            if dry_run {
                "would be removed"
            } else {
                "removed"
            }
        ),
        Ok(_) => {}
        Err(e) => {
            eprintln!("shmproc: error: clean: {e}");
            return 1;
        }
    }
    match segment::sweep(dry_run) {
        Ok(stale) => {
            for s in &stale {
                let verb = if dry_run { "would remove" } else { "removed" };
                println!(
                    "{verb} {} ({}, creator {} is gone)",
                    s.name,
                    human(s.size),
                    s.creator_pid.map_or("-".to_owned(), |p| p.to_string())
                );
            }
            let verb = if dry_run {
                "would be removed"
            } else {
                "removed"
            };
            println!("{} stale segment(s) {verb}", stale.len());
            0
        }
        Err(e) => {
            eprintln!("shmproc: error: clean: {e}");
            1
        }
    }
}
