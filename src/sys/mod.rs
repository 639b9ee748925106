//! The only module that calls the operating system. Everything above it uses
//! the safe wrappers defined here.
//!
//! - [`shm`]: POSIX shared memory objects, memfd, ftruncate/fallocate, mapping,
//!   random names, `/proc` liveness (pid + start time);
//! - [`futex`]: shared (not private) futex wait and wake with timeouts;
//! - [`mutex`]: robust, process-shared pthread mutexes;
//! - [`proc`]: processes: pipes, fork/exec, pidfd, signals, waits;

pub(crate) mod futex;
pub(crate) mod mutex;
pub(crate) mod proc;
pub(crate) mod shm;
