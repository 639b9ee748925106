//! The only module that calls the operating system. Everything above it uses
//! safe wrappers from here.

pub(crate) mod proc;
