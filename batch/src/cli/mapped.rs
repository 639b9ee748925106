//! Memory maps of input and output files: the only `unsafe` in the CLI.
#![allow(unsafe_code)]

use memmap2::Mmap;
use std::fs::File;
use std::io;

/// Maps `file` read-only.
///
/// The map is only sound while nobody truncates or rewrites the file; that is
/// the usual contract of a memory-mapped input (memmap2 documents it), and the
/// CLI accepts it for its input files: a concurrent writer can change the
/// numbers read, or truncate the file and cause SIGBUS, but it cannot make the
/// CLI write anywhere it should not.
pub(super) fn map_read(file: &File) -> io::Result<Mmap> {
    // SAFETY: see above; the file was opened read-only by us and the map lives
    // no longer than the run.
    unsafe { Mmap::map(file) }
}
