//! # shmproc
//!
//! Python's `multiprocessing` model rebuilt on shared memory: worker processes
//! attach to mmap'd shared segments, synchronise with cross-process mutexes,
//! semaphores, events and barriers that live inside those segments, and run
//! CPU-bound kernels over data that is never copied between processes.
//!
//! The layers, each depending only on the ones before it:
//!
//! | module | what it holds |
//! |---|---|
//! | `sys` (private) | every call into the OS: shm, memfd, fallocate, futex, robust pthread mutex, /proc |
//! | [`segment`] | named and memfd-backed shared segments with a validated header; [`SharedArray`] |
//! | [`sync`] | cross-process [`Mutex`](sync::Mutex), [`Semaphore`](sync::Semaphore), [`Event`](sync::Event), [`Barrier`](sync::Barrier), robust to the death of a participant |
//! | [`ipc`] | queues and pipes over shared-memory rings |
//! | [`process`] | [`Process`], start methods, task identity, [`init`] |
//! | [`pool`] | the process pool |
//!
//! Linux only.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod error;
#[allow(unsafe_code)]
pub mod ipc;
#[allow(unsafe_code)]
pub mod pool;
#[allow(unsafe_code)]
pub mod process;
#[allow(unsafe_code)]
pub mod segment;
#[allow(unsafe_code)]
pub mod sync;
#[allow(unsafe_code)]
pub(crate) mod sys;

pub use error::{Error, Result, TaskPanic};
pub use ipc::{pipe, Connection, JoinableQueue, Pipe, Queue, SimpleQueue};
pub use pool::{AsyncResult, Pool, PoolBuilder, TaskOptions};
pub use process::{
    active_children, cpu_count, cpu_quota, current_process, init, parent_process, Process,
    ProcessBuilder, ProcessRun, StartMethod,
};
pub use segment::{Segment, SharedArray, SharedView};

/// The README's code, compiled by `cargo test` (so it stays true).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
