//! [`Process`]: Python's `multiprocessing.Process` in Rust idiom.

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::spawn::{start_child, Child, ChildOptions, Entry};
use super::task::{assert_zero_sized, boot_runnable, boot_target, BootFn};
use super::StartMethod;
use crate::{Error, Result};

/// Python's "subclass `Process` and override `run()`": a value whose state travels
/// to the child (through serde) and whose [`run`](ProcessRun::run) is the body of
/// the process. Start it with [`Process::from_run`].
///
/// # Examples
///
/// ```no_run
/// use serde::{Deserialize, Serialize};
/// use shmproc::process::{current_process, Process, ProcessRun};
///
/// #[derive(Serialize, Deserialize)]
/// struct Greeter { greeting: String }
///
/// impl ProcessRun for Greeter {
///     fn run(&mut self) {
///         println!("{} from {}", self.greeting, current_process().name());
///     }
/// }
///
/// fn main() -> shmproc::Result<()> {
///     let p = Process::from_run(Greeter { greeting: "hello".into() });
///     p.start()?;
///     assert_eq!(p.join()?, 0);
///     Ok(())
/// }
/// ```
pub trait ProcessRun: Serialize + DeserializeOwned + 'static {
    /// The body of the process, run in the child.
    fn run(&mut self);
}

/// A process, not yet started, being configured. Made by [`Process::builder`] or
/// [`Process::run_builder`]; [`build`](ProcessBuilder::build) it, or
/// [`spawn`](ProcessBuilder::spawn) it directly.
#[derive(Debug)]
#[must_use = "a builder does nothing until built or started"]
pub struct ProcessBuilder {
    entry: Entry,
    args: std::result::Result<Vec<u8>, String>,
    name: Option<String>,
    /// The default name's prefix: `Process`, or a [`ProcessRun`] type's name.
    prefix: &'static str,
    daemon: bool,
    method: Option<StartMethod>,
    force_fork: bool,
}

impl ProcessBuilder {
    fn new(boot: BootFn, args: std::result::Result<Vec<u8>, String>) -> Self {
        ProcessBuilder {
            entry: Entry::new(boot),
            args,
            name: None,
            prefix: "Process",
            daemon: false,
            method: None,
            force_fork: false,
        }
    }

    /// The process name (default `Process-N`, numbered from 1 in each parent;
    /// `MyType-N` for a [`ProcessRun`] type `MyType`, as Python names a
    /// subclass's instances).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Daemon processes are terminated when the parent exits normally; others
    /// are joined (like Python).
    pub fn daemon(mut self, daemon: bool) -> Self {
        self.daemon = daemon;
        self
    }

    /// The start method (default: [`get_start_method`](super::get_start_method)).
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.method = Some(method);
        self
    }

    /// With [`StartMethod::Fork`]: fork even if this process has more than one
    /// thread. Only safe if no other thread holds a lock the child will need
    /// (allocator aside); see the crate docs on fork.
    pub fn force_fork(mut self, force: bool) -> Self {
        self.force_fork = force;
        self
    }

    /// The process, not started.
    pub fn build(self) -> Process {
        let mut opts = ChildOptions::with_name_prefix(self.prefix);
        if let Some(n) = self.name {
            opts.name = n;
        }
        opts.daemon = self.daemon;
        if let Some(m) = self.method {
            opts.method = m;
        }
        opts.force_fork = self.force_fork;
        // The boot functions of targets and ProcessRun objects announce once
        // they have decoded (and so attached) their arguments.
        opts.announce = true;
        Process {
            entry: self.entry,
            args: self.args,
            opts,
            kind: self.prefix,
            parent: std::process::id(),
            child: OnceLock::new(),
            starting: Mutex::new(false),
        }
    }

    /// Builds and starts the process (`build()` then
    /// [`Process::start`]; named `start` before 0.2).
    ///
    /// # Errors
    /// As [`Process::start`].
    pub fn spawn(self) -> Result<Process> {
        let p = self.build();
        p.start()?;
        Ok(p)
    }
}

/// `MyProcess` for `my_crate::MyProcess<u8>`: the type's own name, as Python's
/// `type(self).__name__`.
fn short_type_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base)
}

/// A child process running a function (or a [`ProcessRun`] object), like Python's
/// `multiprocessing.Process`.
///
/// The target is any `fn` item or non-capturing closure `Fn(A) -> R`; the
/// argument `A` travels to the child through serde (use a tuple for several).
/// Nothing is needed in `main`: a spawned child becomes a worker before it.
///
/// Its `Display` is Python's `repr`: `<Process name='Process-1' parent=41
/// initial>`, then `... pid=42 parent=41 started>`, then `... stopped
/// exitcode=-SIGTERM>` (the type's name in place of `Process` for a
/// [`ProcessRun`] object, ` daemon` at the end for a daemon).
///
/// Exit codes follow Python: `None` while running, `0` after a normal return,
/// `1` after a panic (whose message the panic hook prints on the child's stderr),
/// `-N` after death by signal `N`. The target's return value is dropped, as
/// Python drops it — a returned `Err` is not a failure; to fail, panic (for
/// instance with `.expect(..)`), which gives exit code 1. Results come back
/// through a [`Queue`](crate::Queue), a [`Pipe`](crate::Pipe) or a
/// [`SharedView`](crate::SharedView), or use a [`Pool`](crate::Pool).
///
/// # Examples
///
/// ```no_run
/// use shmproc::process::Process;
///
/// fn greet((who, times): (String, u32)) {
///     for _ in 0..times {
///         println!("hello {who}");
///     }
/// }
///
/// fn main() -> shmproc::Result<()> {
///     let p = Process::new(greet, ("bob".to_string(), 2));
///     assert_eq!(p.name(), "Process-1");
///     p.start()?;
///     assert_eq!(p.join()?, 0);
///     assert_eq!(p.exitcode(), Some(0));
///     Ok(())
/// }
/// ```
///
/// A capturing closure is rejected at compile time: its state cannot travel as
/// code; pass it as the argument instead.
///
/// ```compile_fail
/// use shmproc::process::Process;
/// let base = 10u32;
/// let p = Process::new(move |x: u32| println!("{}", x + base), 1u32);
/// ```
///
/// The same closure without the capture compiles:
///
/// ```no_run
/// use shmproc::process::Process;
/// let p = Process::new(move |x: u32| println!("{}", x + 10), 1u32);
/// ```
#[derive(Debug)]
pub struct Process {
    entry: Entry,
    args: std::result::Result<Vec<u8>, String>,
    opts: ChildOptions,
    /// `Process`, or the [`ProcessRun`] type's name (for `Display`).
    kind: &'static str,
    /// The pid of the process that made it (Python's `parent=`).
    parent: u32,
    child: OnceLock<Child>,
    starting: Mutex<bool>,
}

impl std::fmt::Display for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<{} name='{}'", self.kind, self.opts.name)?;
        let code = match self.child.get() {
            None => {
                write!(f, " parent={} initial", self.parent)?;
                None
            }
            Some(c) => {
                write!(f, " pid={} parent={}", c.pid(), self.parent)?;
                let code = self.exitcode();
                f.write_str(if code.is_some() {
                    " stopped"
                } else {
                    " started"
                })?;
                code
            }
        };
        match code {
            Some(c) if c < 0 => match signal_name(-c) {
                Some(name) => write!(f, " exitcode=-{name}")?,
                None => write!(f, " exitcode={c}")?,
            },
            Some(c) => write!(f, " exitcode={c}")?,
            None => {}
        }
        if self.opts.daemon {
            f.write_str(" daemon")?;
        }
        f.write_str(">")
    }
}

/// `SIGTERM` for 15: the names Python's `repr` uses for deaths by signal.
fn signal_name(sig: i32) -> Option<&'static str> {
    const NAMES: [&str; 31] = [
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    usize::try_from(sig)
        .ok()
        .and_then(|s| s.checked_sub(1))
        .and_then(|i| NAMES.get(i).copied())
}

fn encode<A: Serialize>(a: &A) -> std::result::Result<Vec<u8>, String> {
    postcard::to_stdvec(a).map_err(|e| e.to_string())
}

impl Process {
    /// A process that will run `target(args)`; see [`Process::builder`] for options.
    pub fn new<F, A, R>(target: F, args: A) -> Process
    where
        F: Fn(A) -> R + Copy + 'static,
        A: Serialize + DeserializeOwned,
    {
        Self::builder(target, args).build()
    }

    /// A builder for a process that will run `target(args)`.
    pub fn builder<F, A, R>(target: F, args: A) -> ProcessBuilder
    where
        F: Fn(A) -> R + Copy + 'static,
        A: Serialize + DeserializeOwned,
    {
        assert_zero_sized::<F>();
        let _ = target;
        ProcessBuilder::new(boot_target::<F, A, R>, encode(&args))
    }

    /// A process that will run `obj.run()` on a copy of `obj` in the child.
    pub fn from_run<T: ProcessRun>(obj: T) -> Process {
        Self::run_builder(obj).build()
    }

    /// A builder for a process that will run `obj.run()`.
    pub fn run_builder<T: ProcessRun>(obj: T) -> ProcessBuilder {
        let mut b = ProcessBuilder::new(boot_runnable::<T>, encode(&obj));
        b.prefix = short_type_name::<T>();
        b
    }

    /// The name (`Process-N`, or `MyType-N` for a [`ProcessRun`] type, unless set).
    pub fn name(&self) -> &str {
        &self.opts.name
    }

    /// Whether this is a daemon process.
    pub fn daemon(&self) -> bool {
        self.opts.daemon
    }

    /// The start method this process uses.
    pub fn start_method(&self) -> StartMethod {
        self.opts.method
    }

    /// Starts the child. Returns once it runs the target (spawn: after the
    /// handshake).
    ///
    /// # Errors
    /// - [`Error::InvalidState`] if already started;
    /// - [`Error::Codec`] if the arguments cannot be encoded;
    /// - [`Error::InitMissing`] if the child ended without answering the start handshake;
    /// - [`Error::ForkUnsafe`] for fork in a multithreaded process, not forced;
    /// - [`Error::BuildMismatch`], [`Error::Io`] — see
    ///   [`start_child`](super::spawn::start_child).
    pub fn start(&self) -> Result<()> {
        let mut starting = self.starting.lock().unwrap_or_else(|p| p.into_inner());
        if *starting {
            return Err(Error::InvalidState(format!(
                "process {:?} can only be started once",
                self.opts.name
            )));
        }
        let args = self.args.clone().map_err(Error::Codec)?;
        let child = start_child(self.entry, args, &self.opts)?;
        *starting = true;
        // Cannot fail: `starting` serialises starts and is set only here.
        let _ = self.child.set(child);
        Ok(())
    }

    fn started(&self, what: &str) -> Result<&Child> {
        self.child.get().ok_or_else(|| {
            Error::InvalidState(format!(
                "can only {what} a started process ({:?})",
                self.opts.name
            ))
        })
    }

    /// The child's [`Child`] handle (crate seam), once started.
    #[doc(hidden)]
    pub fn child(&self) -> Option<&Child> {
        self.child.get()
    }

    /// Waits for the process to end; returns its exit code.
    ///
    /// # Errors
    /// [`Error::InvalidState`] if not started; [`Error::Io`] if waiting fails.
    pub fn join(&self) -> Result<i32> {
        Ok(self.started("join")?.wait()?.code())
    }

    /// Waits at most `timeout` for the process to end; returns its exit code.
    ///
    /// # Errors
    /// [`Error::Timeout`] if it still runs; as [`join`](Process::join).
    pub fn join_timeout(&self, timeout: Duration) -> Result<i32> {
        Ok(self.started("join")?.wait_timeout(timeout)?.code())
    }

    /// `true` from `start` until the process has ended.
    pub fn is_alive(&self) -> bool {
        self.child
            .get()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The pid, once started.
    pub fn pid(&self) -> Option<u32> {
        self.child.get().map(Child::pid)
    }

    /// `None` while running (or not started); then the exit code, `1` after a
    /// panic, `-signal` after death by a signal.
    pub fn exitcode(&self) -> Option<i32> {
        self.child
            .get()
            .and_then(|c| c.try_wait().ok().flatten())
            .map(|s| s.code())
    }

    /// Sends SIGTERM (Python's `terminate`). A no-op once the process has been
    /// joined.
    ///
    /// # Errors
    /// [`Error::InvalidState`] if not started.
    pub fn terminate(&self) -> Result<()> {
        self.started("terminate")?.terminate()
    }

    /// Sends SIGKILL (Python's `kill`).
    ///
    /// # Errors
    /// [`Error::InvalidState`] if not started.
    pub fn kill(&self) -> Result<()> {
        self.started("kill")?.kill()
    }
}
