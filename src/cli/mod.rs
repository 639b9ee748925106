//! The `shmproc` command line.

mod segments;

use clap::{Parser, Subcommand};

/// shmproc: Python's multiprocessing on shared memory.
#[derive(Debug, Parser)]
#[command(name = "shmproc", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List this user's shmproc segments in /dev/shm (name, size, creator, alive or stale).
    Info,
    /// Remove shmproc segments whose creator process is dead.
    Clean {
        /// Only list what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
}

/// Runs the command line and returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    match cli.command {
        Command::Info => segments::info(),
        Command::Clean { dry_run } => segments::clean(dry_run),
    }
}
