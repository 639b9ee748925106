//! The `shmproc` command line: `run` maps a kernel over a file of numbers,
//! `bench` compares backends, `kernels` lists the registry, `info` and `clean`
//! list and remove shared segments.

mod bench;
mod files;
mod mapped;
#[cfg(feature = "mpi")]
mod mpirun;
mod npy;
mod run;
mod segments;
mod svg;
mod tempout;

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Exit code of a run that failed at run time (bad input, I/O, kernel error).
const EXIT_FAILURE: i32 = 1;
/// Exit code of a command line that does not parse.
const EXIT_USAGE: i32 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "shmproc",
    version,
    about = "Map numeric kernels over files with worker processes on shared memory, and compare backends",
    after_help = "Exit status: 0 success; 1 run-time error (bad input, I/O, a kernel or worker failure); \
2 usage error (bad options); 128+N after signal N (SIGINT, SIGTERM, SIGHUP and SIGQUIT stop a run at once and \
remove its workers, temporary output and segments). Errors are one line on stderr."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one kernel over an input file (or a generated 0..n) and write the output.
    Run(RunArgs),
    /// Time kernels on every backend and worker count; check the results agree.
    Bench(BenchArgs),
    /// List the registered kernels and their parameters.
    Kernels,
    /// List this user's shmproc segments in /dev/shm (name, size, creator, alive or stale).
    Info,
    /// Remove shmproc segments whose creator process is dead, and the temporary outputs of dead runs.
    Clean {
        /// Only list what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
}

/// Arguments of `shmproc run`.
#[derive(Debug, Args)]
struct RunArgs {
    /// Kernel name (see `shmproc kernels`).
    kernel: String,
    /// Input file: .npy (any dtype and shape, C order), text (.txt/.csv: one number per line), else raw little-endian.
    #[arg(long)]
    input: Option<PathBuf>,
    /// Second input of a two-input kernel such as `dot` (y); defaults to the first.
    #[arg(long)]
    input2: Option<PathBuf>,
    /// Input format, overriding the extension.
    #[arg(long, value_enum)]
    input_format: Option<files::Format>,
    /// Element type of raw or text input, and of the generated 0..n: bool, i8, i16, i32, i64,
    /// u8, u16, u32, u64, f32, f64. Without it, raw input is u64 (or the kernel's type) and
    /// text is u64 if every line is a non-negative integer, i64 if they are integers, else f64.
    #[arg(long)]
    dtype: Option<shmproc_kernels::Dtype>,
    /// Output file (written whole, through a temporary file and a rename).
    #[arg(long)]
    output: Option<PathBuf>,
    /// Output format, overriding the extension.
    #[arg(long, value_enum)]
    format: Option<files::Format>,
    /// Size of the index space when there is no input file (default: the
    /// kernel's natural size, else 10000000).
    #[arg(long)]
    n: Option<usize>,
    /// Workers (default: the number of CPUs).
    #[arg(long)]
    workers: Option<usize>,
    /// Indices per chunk (default: about n/64).
    #[arg(long)]
    chunk: Option<usize>,
    /// Backend.
    #[arg(long, default_value = "processes")]
    backend: crate::backend::Backend,
    /// power: number of squarings (same as --param times=N).
    #[arg(long)]
    times: Option<u32>,
    /// Kernel parameter as name=value (repeatable).
    #[arg(long = "param", value_name = "NAME=VALUE")]
    params: Vec<String>,
    /// Print nothing on success except with --json.
    #[arg(long, short)]
    quiet: bool,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
    /// Without a terminal, print a progress line to stderr every 2 seconds
    /// (on a terminal the bar shows progress anyway).
    #[arg(long)]
    progress: bool,
    /// Under mpirun: how the chunks are shared out among the ranks, `static`
    /// (equal blocks) or `dynamic` (batches handed out by rank 0 on request).
    #[cfg(feature = "mpi")]
    #[arg(long)]
    schedule: Option<crate::mpi::Schedule>,
}

/// Arguments of `shmproc bench`.
#[derive(Debug, Args)]
struct BenchArgs {
    /// Kernels to time (comma-separated; default: every registered kernel).
    #[arg(long = "kernel", value_delimiter = ',')]
    kernels: Vec<String>,
    /// Size of the index space (mandelbrot: a square image of about n pixels).
    #[arg(long, default_value_t = 1_000_000)]
    n: usize,
    /// Worker counts (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    workers: Vec<usize>,
    /// Timed runs per point (after one untimed warm-up run); the median is reported.
    #[arg(long, default_value_t = 5)]
    repeat: usize,
    /// Backends (comma-separated); sequential is always run as the reference.
    #[arg(
        long = "backend",
        value_delimiter = ',',
        default_value = "sequential,threads,rayon,processes,processes-copy"
    )]
    backends: Vec<crate::backend::Backend>,
    /// Indices per chunk (default: about n/64).
    #[arg(long)]
    chunk: Option<usize>,
    /// Element type of the generated inputs (default: u64 if the kernel takes it, else f64).
    #[arg(long)]
    dtype: Option<shmproc_kernels::Dtype>,
    /// Kernel parameter as name=value (repeatable; each goes to the kernels that take it).
    #[arg(long = "param", value_name = "NAME=VALUE")]
    params: Vec<String>,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    json: bool,
    /// Write an SVG plot of speed-up against workers.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    /// Also time numpy on each kernel it has (same size and dtype, one
    /// thread, in a python3 subprocess) and print /numpy ratios.
    #[arg(long)]
    vs_numpy: bool,
}

/// Runs the command line with these kernels and returns the process exit
/// code.
pub(crate) fn main(kernels: &crate::Registry) -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion)
                || e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            {
                let _ = e.print();
                return if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                    EXIT_USAGE
                } else {
                    0
                };
            }
            // One line: clap's first line, without the usage block.
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("error: bad command line");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("shmproc: error: {first} (see shmproc --help)");
            return EXIT_USAGE;
        }
    };
    // Under mpirun, MPI starts first: its own signal handlers are then
    // replaced by the run's below.
    #[cfg(feature = "mpi")]
    let cluster = match &cli.command {
        Command::Run(_) if crate::mpi::launched() => match crate::mpi::Cluster::init() {
            Ok(c) => {
                if c.size() > 1 {
                    crate::signal::set_who(format!("rank {}", c.rank()));
                }
                Some(c)
            }
            Err(e) => {
                eprintln!("shmproc: error: {e}");
                return EXIT_FAILURE;
            }
        },
        _ => None,
    };
    #[cfg(not(feature = "mpi"))]
    if matches!(cli.command, Command::Run(_)) && launched_by_mpirun() {
        eprintln!(
            "shmproc: error: started by mpirun with several ranks, but this shmproc was built \
             without MPI: build it with `cargo build --release --features mpi` (each rank would \
             otherwise run the whole job)"
        );
        return EXIT_USAGE;
    }
    if matches!(cli.command, Command::Run(_) | Command::Bench(_)) {
        // SIGINT, SIGTERM, SIGHUP and SIGQUIT stop the run at once: workers
        // killed, temporary output and segments removed, exit 128 + N (see
        // `signal`).
        let installed = crate::signal::install()
            .map_err(|e| format!("cannot install the signal handlers: {e}"));
        // Under mpirun every rank learns whether every rank could.
        #[cfg(feature = "mpi")]
        let installed = match &cluster {
            Some(c) => {
                let agreed = c.agree(installed).map_err(|e| e.to_string());
                if let Err(e) = &agreed {
                    crate::signal::exit_quietly(EXIT_FAILURE);
                    if c.is_root() {
                        eprintln!("shmproc: error: {e}");
                    }
                    c.barrier();
                    return EXIT_FAILURE;
                }
                agreed
            }
            None => installed,
        };
        if let Err(e) = installed {
            eprintln!("shmproc: error: {e}");
            return EXIT_FAILURE;
        }
    }
    #[cfg(feature = "mpi")]
    if let (Some(cluster), Command::Run(args)) = (&cluster, &cli.command) {
        let result = mpirun::run(args, kernels, cluster);
        if let Some(stop) = crate::signal::pending() {
            crate::signal::stop(stop);
        }
        crate::backend::shutdown_pools();
        if let Some(stop) = crate::signal::pending() {
            crate::signal::stop(stop);
        }
        return match result {
            Ok(()) => 0,
            Err(e) => {
                // Every rank has the same error (see mpirun.rs): rank 0 says
                // it. The ranks leave together, so that mpirun, which stops
                // the others when one exits non-zero, finds nothing to stop.
                crate::signal::exit_quietly(e.exit_code());
                if cluster.is_root() {
                    eprintln!("shmproc: error: {}", one_line(&e));
                }
                cluster.barrier();
                e.exit_code()
            }
        };
    }
    let result = match cli.command {
        Command::Run(args) => run::run(args, kernels),
        Command::Bench(args) => bench::bench(args, kernels),
        Command::Kernels => {
            list_kernels(kernels);
            Ok(())
        }
        Command::Info => return segments::info(),
        Command::Clean { dry_run } => return segments::clean(dry_run),
    };
    // A signal (or a shrunk input) that arrived while the command ran ends
    // it the same way whatever the command returned.
    if let Some(stop) = crate::signal::pending() {
        crate::signal::stop(stop);
    }
    crate::backend::shutdown_pools();
    if let Some(stop) = crate::signal::pending() {
        crate::signal::stop(stop);
    }
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("shmproc: error: {}", one_line(&e));
            e.exit_code()
        }
    }
}

/// A CLI failure: its message and whether it is a usage error.
/// Whether an MPI launcher started this process as one of several ranks.
#[cfg(not(feature = "mpi"))]
fn launched_by_mpirun() -> bool {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE"].iter().any(|v| {
        std::env::var(v)
            .ok()
            .and_then(|n| n.parse::<usize>().ok())
            .is_some_and(|n| n > 1)
    })
}

#[derive(Debug)]
struct CliError {
    message: String,
    usage: bool,
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl CliError {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            usage: false,
        }
    }

    fn usage(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            usage: true,
        }
    }

    fn exit_code(&self) -> i32 {
        if self.usage {
            EXIT_USAGE
        } else {
            EXIT_FAILURE
        }
    }
}

impl From<shmproc_kernels::KernelError> for CliError {
    fn from(e: shmproc_kernels::KernelError) -> Self {
        use shmproc_kernels::KernelError as K;
        let usage = matches!(
            e,
            K::UnknownKernel(_) | K::UnknownParam { .. } | K::BadParam { .. }
        );
        Self {
            message: e.to_string(),
            usage,
        }
    }
}

impl From<crate::backend::RunError> for CliError {
    fn from(e: crate::backend::RunError) -> Self {
        match e {
            crate::backend::RunError::Kernel(k) => k.into(),
            other => Self::new(other.to_string()),
        }
    }
}

fn one_line(e: &CliError) -> String {
    e.message.replace('\n', " ")
}

fn list_kernels(kernels: &crate::Registry) {
    for kr in kernels.iter() {
        let k = kr.kernel();
        let sig = k.signature();
        println!("{:<16} {}", k.name(), k.summary());
        let types: Vec<_> = sig.dtypes.iter().map(|d| d.name()).collect();
        let inputs = match sig.inputs {
            0 => "no input (generated from the index)".to_owned(),
            1 => format!("one input of {}", types.join(", ")),
            n => format!("{n} inputs of one type: {}", types.join(", ")),
        };
        let rows = if sig.layout == shmproc_kernels::Layout::Rows {
            ", whole rows"
        } else {
            ""
        };
        println!("    takes: {inputs}{rows}");
        for p in k.params() {
            println!("    {:<10} (default {:<5}) {}", p.name, p.default, p.help);
        }
    }
}

impl From<shmproc::Error> for CliError {
    fn from(e: shmproc::Error) -> Self {
        Self::new(e.to_string())
    }
}
