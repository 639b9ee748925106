//! The only module that calls the operating system. Everything above it uses
//! the safe wrappers defined here.
//!
//! - [`shm`]: POSIX shared memory objects, memfd, ftruncate/fallocate, mapping,
//!   random names, `/proc` liveness (pid + start time);
//! - [`futex`]: shared (not private) futex wait and wake with timeouts;
//! - [`mutex`]: robust, process-shared pthread mutexes;
//! - [`proc`]: processes: pipes, fork/exec, pidfd, signals, waits;
//! - [`signal`]: a flag-setting SIGINT handler for the CLI, SIGINT ignored in pool workers.

pub(crate) mod futex;
pub(crate) mod mutex;
pub(crate) mod proc;
pub(crate) mod shm;
pub(crate) mod signal;
