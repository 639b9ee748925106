//! # shmproc-batch
//!
//! The batch engine and command line of shmproc: any [`Kernel`] over an
//! index space on one of five backends — sequential, `std` threads, rayon,
//! worker processes on shared memory (zero copy), or worker processes that
//! copy each chunk like Python's `Pool.map` ([`backend`]) — and the `shmproc`
//! command (`run`, `bench`, `kernels`, `info`, `clean`) over `.npy`, raw and
//! text files of every numpy dtype.
//!
//! The command line is open: a crate that depends on this one gets `run` and
//! `bench` for its own kernels with a three-line `main` ([`App`]):
//!
//! ```no_run
//! use shmproc_kernels::{Chunk, Dtype, Kernel, KernelError, Params, Signature, Slice, SliceMut};
//!
//! /// Adds one to every u32.
//! #[derive(Clone, serde::Serialize, serde::Deserialize)]
//! struct Increment;
//!
//! impl Kernel for Increment {
//!     fn name(&self) -> &'static str { "increment" }
//!     fn summary(&self) -> &'static str { "x + 1, wrapping" }
//!     fn signature(&self) -> Signature { Signature::map(&[Dtype::U32]) }
//!     fn run(&self, _: &Params, c: Chunk<'_>) -> Result<(), KernelError> {
//!         if let (Slice::U32(x), SliceMut::U32(o)) = (c.x()?, c.out) {
//!             for (o, &v) in o.iter_mut().zip(x) { *o = v.wrapping_add(1) }
//!         }
//!         Ok(())
//!     }
//! }
//!
//! fn main() {
//!     shmproc_batch::App::new().kernel(Increment).main()
//! }
//! ```
//!
//! The embedding library is the `shmproc` crate; the kernels and the
//! [`Kernel`] trait are in `shmproc-kernels`.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod backend;
mod cli;
pub mod compare;
#[cfg(feature = "mpi")]
pub mod mpi;
#[allow(unsafe_code)]
mod signal;

use backend::KernelRef;
use serde::de::DeserializeOwned;
use serde::Serialize;
use shmproc_kernels::{Kernel, KernelError};

/// The kernels a command line knows, by name.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    kernels: Vec<KernelRef>,
}

impl Registry {
    /// No kernels.
    pub fn new() -> Self {
        Self::default()
    }

    /// The built-in kernels of `shmproc-kernels`.
    pub fn builtins() -> Self {
        use shmproc_kernels as k;
        let mut r = Registry::new();
        r.push(KernelRef::new(k::Power));
        r.push(KernelRef::new(k::Sum));
        r.push(KernelRef::new(k::Dot));
        r.push(KernelRef::new(k::Saxpy));
        r.push(KernelRef::new(k::Histogram));
        r.push(KernelRef::new(k::NormalizeRows));
        r.push(KernelRef::new(k::Mandelbrot));
        r.push(KernelRef::new(k::MonteCarloPi));
        r.push(KernelRef::new(k::CountPrimes));
        r
    }

    /// Adds a kernel; one of the same name is replaced.
    pub fn push(&mut self, kernel: KernelRef) {
        match self.kernels.iter().position(|k| k.name() == kernel.name()) {
            Some(i) => self.kernels[i] = kernel,
            None => self.kernels.push(kernel),
        }
    }

    /// The kernel called `name`.
    pub fn find(&self, name: &str) -> Option<&KernelRef> {
        self.kernels.iter().find(|k| k.name() == name)
    }

    /// Like [`find`](Registry::find), with an error for an unknown name.
    ///
    /// # Errors
    /// [`KernelError::UnknownKernel`].
    pub fn lookup(&self, name: &str) -> Result<&KernelRef, KernelError> {
        self.find(name)
            .ok_or_else(|| KernelError::UnknownKernel(name.to_owned()))
    }

    /// Every kernel, in registration order.
    pub fn iter(&self) -> impl Iterator<Item = &KernelRef> {
        self.kernels.iter()
    }
}

/// The `shmproc` command line with the built-in kernels and yours.
///
/// `main` is the program: it runs the command line and exits with its
/// status. (Pool workers never get here: shmproc's worker entry takes over a
/// process started as a worker before `main`.)
#[derive(Debug, Clone)]
pub struct App {
    registry: Registry,
}

impl Default for App {
    fn default() -> Self {
        Self::new()
    }
}

impl App {
    /// The command line with the built-in kernels.
    pub fn new() -> Self {
        App {
            registry: Registry::builtins(),
        }
    }

    /// Adds `kernel` (replacing a built-in of the same name). Its type must
    /// be serializable: the worker processes receive the value.
    pub fn kernel<K>(mut self, kernel: K) -> Self
    where
        K: Kernel + Clone + Serialize + DeserializeOwned,
    {
        self.registry.push(KernelRef::new(kernel));
        self
    }

    /// The kernels.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Runs the command line (arguments from the environment) and returns its
    /// exit status, without exiting.
    pub fn run(&self) -> i32 {
        cli::main(&self.registry)
    }

    /// Runs the command line and exits with its status.
    pub fn main(&self) -> ! {
        let code = self.run();
        std::process::exit(code)
    }
}
