//! Input and output files of `shmproc run`: `.npy`, raw little-endian, text.
//!
//! Inputs must be regular files; binary ones are memory-mapped and read in
//! place. Binary outputs are a memory-mapped temporary file in the
//! destination's directory ([`TempOutput`]: unnamed where the filesystem
//! allows), put in place only when the run succeeded, so a failed or killed
//! run leaves no partial output. Text is parsed into (or formatted from)
//! memory.
//!
//! # The contract of mapped files
//!
//! `shmproc run` reads its binary inputs and writes its binary outputs in
//! place, through shared mappings that every worker process maps too. Like
//! every memory-mapped program (and memmap2's `unsafe` mapping functions), it
//! relies on nobody else changing the files while a run lasts: another program
//! that writes an input during a run makes the results meaningless. One that
//! truncates it ends the run with an error: a fault in a mapped input is
//! caught ([`crate::signal::Watched`]) in this process, a worker that faults
//! dies and its run fails, and every run checks at the end that its inputs
//! kept their size. The output is a temporary file that only this run knows
//! until it is put into place.

#![allow(unsafe_code)] // the two SharedValues::from_region calls, under the contract above

use super::tempout::TempOutput;
use super::{mapped, npy, CliError};
use crate::backend::SharedValues;
use crate::signal::Watched;
use shmproc::Segment;
use shmproc_kernels::{Dtype, Kernel, Slice, SliceMut, Values};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// File format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum Format {
    /// numpy `.npy`: any shape in C order, every dtype (little-endian).
    Npy,
    /// Raw little-endian elements, 1-D (`--dtype` says which type).
    Raw,
    /// One number per line, 1-D.
    Text,
}

impl Format {
    /// `.npy` → npy; `.txt`, `.text`, `.csv` → text; anything else → raw.
    pub(super) fn from_path(path: &Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("npy") => Format::Npy,
            Some(e)
                if ["txt", "text", "csv"]
                    .iter()
                    .any(|t| e.eq_ignore_ascii_case(t)) =>
            {
                Format::Text
            }
            _ => Format::Raw,
        }
    }
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> CliError {
    CliError::new(format!("{what} {}: {e}", path.display()))
}

/// An input array: a read-only shared map of a binary file (which worker
/// processes map too), or parsed text, with its shape.
#[derive(Debug)]
pub(super) struct Loaded {
    data: Data,
    /// The shape (C order); 1-D for raw and text files.
    pub(super) shape: Vec<usize>,
    /// A mapped file: its path, its size when mapped, and the watch on its
    /// mapping (dropped with it).
    source: Option<(PathBuf, u64, Watched)>,
}

#[derive(Debug)]
enum Data {
    /// A file mapping (worker processes map the same file).
    Shared(SharedValues),
    /// Values held in memory.
    Owned(Values),
}

impl Loaded {
    fn owned(v: Values) -> Self {
        Loaded {
            shape: vec![v.len()],
            data: Data::Owned(v),
            source: None,
        }
    }

    /// An error if the mapped file shrank since it was mapped (the run's
    /// numbers are then not the file's).
    pub(super) fn check_intact(&self) -> Result<(), CliError> {
        let (Some((path, size, _)), Data::Shared(v)) = (&self.source, &self.data) else {
            return Ok(());
        };
        match v.segment_file_len() {
            Some(now) if now >= *size => Ok(()),
            _ => Err(CliError::new(crate::signal::shrank_message(path, *size))),
        }
    }

    pub(super) fn dtype(&self) -> Dtype {
        self.as_slice().dtype()
    }

    pub(super) fn as_slice(&self) -> Slice<'_> {
        match &self.data {
            Data::Owned(v) => v.as_slice(),
            Data::Shared(v) => v.as_slice(),
        }
    }
}

fn absolute(path: &Path) -> Result<PathBuf, CliError> {
    std::fs::canonicalize(path).map_err(|e| io_err("cannot resolve", path, e))
}

/// The element type of a raw file without `--dtype`: `u64` if the kernel
/// takes it, else `f64` if it takes that, else its first type.
pub(super) fn raw_default(kernel: &dyn Kernel) -> Dtype {
    let sig = kernel.signature();
    [Dtype::U64, Dtype::F64]
        .into_iter()
        .find(|&d| sig.accepts(d))
        .or_else(|| sig.dtypes.first().copied())
        .unwrap_or(Dtype::U64)
}

/// Reads `path`. `dtype` is `--dtype`: it decides the element type of raw and
/// text input, and must agree with a `.npy` file's. Without it, raw input has
/// the type [`raw_default`] gives and text input follows the text rule
/// ([`parse_text`]).
pub(super) fn load(
    path: &Path,
    format: Option<Format>,
    dtype: Option<Dtype>,
    kernel: &dyn Kernel,
) -> Result<Loaded, CliError> {
    if cfg!(target_endian = "big") {
        return Err(CliError::new(
            "binary formats are little-endian; this host is not",
        ));
    }
    let format = format.unwrap_or_else(|| Format::from_path(path));
    let mut file = open_input(path)?;
    if format == Format::Text {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut file, &mut text)
            .map_err(|e| io_err("cannot read", path, e))?;
        return parse_text(&text, dtype)
            .map(Loaded::owned)
            .map_err(|e| CliError::new(format!("{}: {e}", path.display())));
    }
    let size = nonempty_size(&file, path)?;
    let map = mapped::map_read(&file).map_err(|e| io_err("cannot map", path, e))?;
    // Reading the header (or copying misaligned data) may fault if the file
    // shrinks meanwhile: watched too.
    let watch = Watched::new(map.as_ptr(), map.len(), path.to_owned(), size);
    let (offset, shape, dtype) = match format {
        Format::Npy => {
            let h =
                npy::parse(&map).map_err(|e| CliError::new(format!("{}: {e}", path.display())))?;
            check_npy_dtype(path, h.dtype, dtype)?;
            (h.data_offset, h.shape, h.dtype)
        }
        _ => {
            let dtype = dtype.unwrap_or_else(|| raw_default(kernel));
            if map.len() % dtype.size() != 0 {
                return Err(CliError::new(format!(
                    "{}: raw input of {} bytes is not a whole number of {}-byte {dtype} elements",
                    path.display(),
                    map.len(),
                    dtype.size()
                )));
            }
            (0, vec![map.len() / dtype.size()], dtype)
        }
    };
    let len: usize = shape.iter().product();
    let bytes = &map[offset..offset + len * dtype.size()];
    if !(bytes.as_ptr() as usize).is_multiple_of(dtype.size()) {
        // Misaligned data (a header length that is not a multiple of the
        // element size): copy.
        let values = values_from_le(dtype, bytes);
        drop(watch);
        return Ok(Loaded {
            data: Data::Owned(values),
            shape,
            source: None,
        });
    }
    drop(watch);
    drop(map);
    // The data as a shared segment: worker processes map the same file.
    let seg = Segment::map_file(&absolute(path)?, false)
        .map_err(|e| CliError::new(format!("cannot map {}: {e}", path.display())))?;
    let watch = Watched::new(seg.as_ptr(), seg.len(), path.to_owned(), size);
    // SAFETY: the contract of mapped files (module docs): nothing else writes
    // the input during the run (a truncation is caught: `watch`); this
    // process only reads it.
    let values = unsafe { SharedValues::from_region(Arc::new(seg), offset, len, dtype) }
        .map_err(|e| CliError::new(format!("{}: {e}", path.display())))?;
    Ok(Loaded {
        data: Data::Shared(values),
        shape,
        source: Some((path.to_owned(), size, watch)),
    })
}

/// Where an input's elements are, found without mapping its data: an MPI
/// rank maps only its part ([`Probed::part`]). Text input is parsed whole
/// (it has no byte offsets to map).
#[cfg(feature = "mpi")]
#[derive(Debug)]
pub(super) struct Probed {
    pub(super) dtype: Dtype,
    /// The shape (C order); 1-D for raw and text files.
    pub(super) shape: Vec<usize>,
    /// A binary file: its absolute path, size and the data's byte offset.
    file: Option<(PathBuf, PathBuf, u64, u64)>,
    /// Parsed text.
    text: Option<Values>,
}

/// The most of a `.npy` file's start that is read to find its header.
#[cfg(feature = "mpi")]
const HEADER_PEEK: u64 = 1 << 20;

/// Reads `path`'s header (a binary file) or its text, as [`load`] would,
/// without mapping the data.
#[cfg(feature = "mpi")]
pub(super) fn probe(
    path: &Path,
    format: Option<Format>,
    dtype: Option<Dtype>,
    kernel: &dyn Kernel,
) -> Result<Probed, CliError> {
    let format = format.unwrap_or_else(|| Format::from_path(path));
    if format == Format::Text {
        let l = load(path, Some(format), dtype, kernel)?;
        let values = l.as_slice().to_values();
        return Ok(Probed {
            dtype: values.dtype(),
            shape: vec![values.len()],
            file: None,
            text: Some(values),
        });
    }
    if cfg!(target_endian = "big") {
        return Err(CliError::new(
            "binary formats are little-endian; this host is not",
        ));
    }
    let file = open_input(path)?;
    let size = nonempty_size(&file, path)?;
    let (offset, shape, dtype) = match format {
        Format::Npy => {
            use std::os::unix::fs::FileExt;
            let mut head = vec![0u8; usize::try_from(size.min(HEADER_PEEK)).unwrap_or(0)];
            file.read_exact_at(&mut head, 0)
                .map_err(|e| io_err("cannot read", path, e))?;
            let h = npy::parse_prefix(&head, size)
                .map_err(|e| CliError::new(format!("{}: {e}", path.display())))?;
            check_npy_dtype(path, h.dtype, dtype)?;
            (h.data_offset as u64, h.shape, h.dtype)
        }
        _ => {
            let dtype = dtype.unwrap_or_else(|| raw_default(kernel));
            if !size.is_multiple_of(dtype.size() as u64) {
                return Err(CliError::new(format!(
                    "{}: raw input of {size} bytes is not a whole number of {}-byte {dtype} elements",
                    path.display(),
                    dtype.size()
                )));
            }
            let len = usize::try_from(size / dtype.size() as u64)
                .map_err(|_| CliError::new(format!("{}: too large", path.display())))?;
            (0, vec![len], dtype)
        }
    };
    Ok(Probed {
        dtype,
        shape,
        file: Some((path.to_owned(), absolute(path)?, size, offset)),
        text: None,
    })
}

#[cfg(feature = "mpi")]
impl Probed {
    /// Elements in total.
    pub(super) fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Elements `elems` of the input: only the pages that hold them are
    /// mapped (by this process and by its workers), or a part of the text.
    pub(super) fn part(&self, elems: std::ops::Range<usize>) -> Result<Loaded, CliError> {
        let Some((path, abs, size, offset)) = &self.file else {
            let text = self.text.as_ref().map_or_else(
                || Values::zeros(self.dtype, 0),
                |t| t.as_slice().slice(elems.clone()).to_values(),
            );
            return Ok(Loaded::owned(text));
        };
        let esize = self.dtype.size() as u64;
        let start = offset + elems.start as u64 * esize;
        let bytes = elems.len() as u64 * esize;
        if elems.is_empty() {
            return Ok(Loaded::owned(Values::zeros(self.dtype, 0)));
        }
        let page = shmproc::segment::page_size() as u64;
        let aligned = start - start % page;
        let lead = usize::try_from(start - aligned).unwrap_or(0);
        let len = usize::try_from(bytes)
            .ok()
            .and_then(|b| b.checked_add(lead))
            .ok_or_else(|| CliError::new(format!("{}: part too large", path.display())))?;
        let seg = Segment::map_file_range(abs, aligned, len, false)
            .map_err(|e| CliError::new(format!("cannot map {}: {e}", path.display())))?;
        let watch = Watched::new(seg.as_ptr(), seg.len(), path.clone(), *size);
        if !(seg.as_ptr() as usize + lead).is_multiple_of(self.dtype.size()) {
            // SAFETY: `lead..lead + bytes` lies inside the mapping (mapped
            // for exactly that); the file is only read (contract above).
            let raw = unsafe { std::slice::from_raw_parts(seg.as_ptr().add(lead), len - lead) };
            let values = values_from_le(self.dtype, raw);
            drop(watch);
            return Ok(Loaded::owned(values));
        }
        // SAFETY: the contract of mapped files (module docs): nothing else
        // writes the input during the run (a truncation is caught: `watch`);
        // this process only reads it.
        let values =
            unsafe { SharedValues::from_region(Arc::new(seg), lead, elems.len(), self.dtype) }
                .map_err(|e| CliError::new(format!("{}: {e}", path.display())))?;
        Ok(Loaded {
            data: Data::Shared(values),
            shape: vec![elems.len()],
            source: Some((path.clone(), *size, watch)),
        })
    }
}

/// `len` elements of `dtype` at byte `offset` of the output file `path`,
/// mapped writable on their own (with the page around their ends): an MPI
/// rank's part of the output, which its workers write in place.
#[cfg(feature = "mpi")]
pub(super) fn map_output_part(
    path: &Path,
    offset: u64,
    len: usize,
    dtype: Dtype,
) -> Result<SharedValues, CliError> {
    let page = shmproc::segment::page_size() as u64;
    let aligned = offset - offset % page;
    let lead = usize::try_from(offset - aligned).unwrap_or(0);
    let bytes = len
        .checked_mul(dtype.size())
        .and_then(|b| b.checked_add(lead))
        .ok_or_else(|| CliError::new("output part too large"))?;
    let seg = Segment::map_file_range(path, aligned, bytes, true)
        .map_err(|e| CliError::new(format!("cannot map the output {}: {e}", path.display())))?;
    // SAFETY: a temporary output this run created under a fresh name; each
    // element is written by the one rank whose part it is, through this
    // mapping alone (other ranks' mappings may share a page at either end,
    // never these bytes), and nothing reads the file before the run ends.
    unsafe { SharedValues::from_region(Arc::new(seg), lead, len, dtype) }
        .map_err(|e| CliError::new(format!("cannot map the output {}: {e}", path.display())))
}

/// The size of an input file, which must not be empty.
fn nonempty_size(file: &File, path: &Path) -> Result<u64, CliError> {
    let size = file
        .metadata()
        .map_err(|e| io_err("cannot stat", path, e))?
        .len();
    if size == 0 {
        return Err(CliError::new(format!(
            "{}: the file is empty",
            path.display()
        )));
    }
    Ok(size)
}

/// `--dtype` must agree with a `.npy` file's type.
fn check_npy_dtype(path: &Path, holds: Dtype, dtype: Option<Dtype>) -> Result<(), CliError> {
    match dtype.filter(|&d| d != holds) {
        Some(d) => Err(CliError::new(format!(
            "{}: the file holds {holds} but --dtype says {d}",
            path.display()
        ))),
        None => Ok(()),
    }
}

/// Writes the header of a binary output of `dtype` and `shape` (`.npy`, or
/// nothing for raw) into `file`, after reserving the whole file's bytes;
/// returns the header's length.
pub(super) fn start_binary_output(
    file: &File,
    dest: &Path,
    format: Format,
    dtype: Dtype,
    shape: &[usize],
) -> Result<usize, CliError> {
    let len = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| CliError::new("output too large"))?;
    let header = match format {
        Format::Npy => npy::header(dtype, shape).map_err(CliError::new)?,
        _ => Vec::new(),
    };
    let bytes = len
        .checked_mul(dtype.size())
        .and_then(|b| b.checked_add(header.len()))
        .ok_or_else(|| CliError::new("output too large"))?;
    reserve(file, bytes as u64).map_err(|e| {
        io_err(
            &format!("cannot reserve {bytes} bytes for the output"),
            dest,
            e,
        )
    })?;
    use std::os::unix::fs::FileExt;
    file.write_all_at(&header, 0)
        .map_err(|e| io_err("cannot write", dest, e))?;
    Ok(header.len())
}

/// What a file type is called in messages.
fn file_kind(t: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_symlink() {
        "a symbolic link"
    } else {
        "not a regular file"
    }
}

/// Opens an input, which must be a regular file (never blocking on a FIFO:
/// it is opened non-blocking, then checked).
fn open_input(path: &Path) -> Result<File, CliError> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| io_err("cannot open", path, e))?;
    let meta = file
        .metadata()
        .map_err(|e| io_err("cannot stat", path, e))?;
    if !meta.is_file() {
        return Err(CliError::new(format!(
            "{} is {}; --input takes regular files only",
            path.display(),
            file_kind(meta.file_type())
        )));
    }
    Ok(file)
}

/// Refuses an output path that exists and is not a regular file (a device,
/// FIFO, socket or directory would be replaced by the rename; a symbolic link
/// would be replaced while its target stays as it was).
pub(super) fn check_output(dest: &Path) -> Result<(), CliError> {
    match std::fs::symlink_metadata(dest) {
        Ok(m) if m.file_type().is_symlink() => Err(CliError::new(format!(
            "--output {} is a symbolic link; shmproc does not write through links (give the target's path)",
            dest.display()
        ))),
        Ok(m) if !m.is_file() => Err(CliError::new(format!(
            "--output {} exists and is {}; shmproc only replaces regular files",
            dest.display(),
            file_kind(m.file_type())
        ))),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("cannot stat", dest, e)),
    }
}

/// Reserves `len` bytes of `file` on disk (so a full disk is an error now,
/// not a SIGBUS while workers write their chunks), or only sizes it where
/// the filesystem cannot reserve.
pub(super) fn reserve(file: &File, len: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    if len == 0 {
        return Ok(());
    }
    let off = libc::off_t::try_from(len).map_err(std::io::Error::other)?;
    // SAFETY: fallocate(2) on a descriptor we own; no memory is passed.
    let r = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, off) };
    if r == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EOPNOTSUPP | libc::ENOSYS | libc::EINVAL) => file.set_len(len),
        _ => Err(e),
    }
}

/// Little-endian `bytes` as values of `dtype` (a copy).
fn values_from_le(dtype: Dtype, bytes: &[u8]) -> Values {
    macro_rules! decode {
        ($($v:ident($t:ty)),*) => {
            match dtype {
                Dtype::Bool => Values::Bool(bytes.to_vec()),
                $(Dtype::$v => Values::$v(
                    bytes
                        .chunks_exact(std::mem::size_of::<$t>())
                        .map(|c| {
                            let mut w = [0u8; std::mem::size_of::<$t>()];
                            w.copy_from_slice(c);
                            <$t>::from_le_bytes(w)
                        })
                        .collect(),
                ),)*
            }
        };
    }
    decode!(
        I8(i8),
        I16(i16),
        I32(i32),
        I64(i64),
        U8(u8),
        U16(u16),
        U32(u32),
        U64(u64),
        F32(f32),
        F64(f64)
    )
}

/// The element type text input gets without `--dtype`: a file whose every
/// line is an integer is integers — `u64` when none has a minus sign, `i64`
/// otherwise — and a file with any other number is `f64`.
///
/// This is the whole rule: the type never depends on the kernel, so the same
/// file gives the same type (and output type) with every kernel, and the
/// summary prints it.
pub(super) fn text_dtype(text: &str) -> Dtype {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let mut negative = false;
    let integers = lines.all(|l| {
        let digits = l.strip_prefix(['-', '+']).unwrap_or(l);
        negative |= l.starts_with('-');
        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
    });
    match (integers, negative) {
        (true, false) => Dtype::U64,
        (true, true) => Dtype::I64,
        (false, _) => Dtype::F64,
    }
}

/// One number per line (surrounding whitespace and blank lines ignored), as
/// `dtype`, or as [`text_dtype`] says without it. `bool` lines are `0`, `1`,
/// `true` or `false`.
pub(super) fn parse_text(text: &str, dtype: Option<Dtype>) -> Result<Values, String> {
    let lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty());
    let want = dtype.unwrap_or_else(|| text_dtype(text));
    macro_rules! parse {
        ($($v:ident($t:ty)),*) => {
            match want {
                Dtype::Bool => lines
                    .map(|(n, l)| match l {
                        "0" | "false" | "False" => Ok(0u8),
                        "1" | "true" | "True" => Ok(1u8),
                        _ => Err(format!("line {n}: {l:?} is not a bool (0, 1, true, false)")),
                    })
                    .collect::<Result<_, _>>()
                    .map(Values::Bool),
                $(Dtype::$v => lines
                    .map(|(n, l)| {
                        l.parse::<$t>().map_err(|_| {
                            format!("line {n}: {l:?} is not {}", describe(Dtype::$v))
                        })
                    })
                    .collect::<Result<_, _>>()
                    .map(Values::$v),)*
            }
        };
    }
    parse!(
        I8(i8),
        I16(i16),
        I32(i32),
        I64(i64),
        U8(u8),
        U16(u16),
        U32(u32),
        U64(u64),
        F32(f32),
        F64(f64)
    )
}

fn describe(d: Dtype) -> String {
    match d {
        d if d.is_float() => format!("a number ({d})"),
        d if d.is_signed() => format!("a {}-bit integer", d.size() * 8),
        d => format!("an unsigned {}-bit integer", d.size() * 8),
    }
}

/// Formats `values` one per line: integers as integers, floats so that they
/// read back exactly, bools as 0 or 1.
fn write_text(w: &mut impl Write, values: Slice<'_>) -> std::io::Result<()> {
    match values {
        Slice::Bool(v) => v
            .iter()
            .try_for_each(|x| writeln!(w, "{}", u8::from(*x != 0))),
        Slice::F32(v) => v.iter().try_for_each(|x| {
            if x.is_finite() {
                writeln!(w, "{x:?}")
            } else {
                writeln!(w, "{}", super::run::float_text(f64::from(*x)))
            }
        }),
        Slice::F64(v) => v
            .iter()
            .try_for_each(|x| writeln!(w, "{}", super::run::float_text(*x))),
        Slice::I8(v) => v.iter().try_for_each(|x| writeln!(w, "{x}")),
        Slice::I16(v) => v.iter().try_for_each(|x| writeln!(w, "{x}")),
        Slice::I32(v) => v.iter().try_for_each(|x| writeln!(w, "{x}")),
        Slice::I64(v) => v.iter().try_for_each(|x| writeln!(w, "{x}")),
        Slice::U8(v) => v.iter().try_for_each(|x| writeln!(w, "{x}")),
        Slice::U16(v) => v.iter().try_for_each(|x| writeln!(w, "{x}")),
        Slice::U32(v) => v.iter().try_for_each(|x| writeln!(w, "{x}")),
        Slice::U64(v) => v.iter().try_for_each(|x| writeln!(w, "{x}")),
    }
}

/// Where results go.
#[derive(Debug)]
pub(super) enum Sink {
    /// Nowhere but memory (no `--output`: a reduction's accumulator).
    Memory(Values),
    /// A shared map of a temporary binary file (worker processes map it too),
    /// renamed to `dest` on success.
    Mapped {
        tmp: TempOutput,
        data: SharedValues,
        dest: PathBuf,
    },
    /// Values in memory, written as text to the temporary file on success.
    Text {
        tmp: TempOutput,
        values: Values,
        dest: PathBuf,
    },
}

impl Sink {
    /// A sink for a zeroed array of `dtype` and `shape`, at `dest` if given.
    /// The temporary file is created now, so an unwritable destination fails
    /// before any work is done.
    pub(super) fn create(
        dest: Option<&Path>,
        format: Option<Format>,
        dtype: Dtype,
        shape: &[usize],
    ) -> Result<Self, CliError> {
        let len = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| CliError::new("output too large"))?;
        let Some(dest) = dest else {
            return Ok(Sink::Memory(Values::zeros(dtype, len)));
        };
        let format = format.unwrap_or_else(|| Format::from_path(dest));
        check_output(dest)?;
        let dir = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let tmp =
            TempOutput::create(dir).map_err(|e| io_err("cannot create the output in", dir, e))?;
        if format == Format::Text {
            return Ok(Sink::Text {
                tmp,
                values: Values::zeros(dtype, len),
                dest: dest.to_owned(),
            });
        }
        let header = start_binary_output(tmp.file(), dest, format, dtype, shape)?;
        let seg = Segment::map_file(&tmp.path(), true)
            .map_err(|e| CliError::new(format!("cannot map the output {}: {e}", dest.display())))?;
        // The npy header is a multiple of 64 bytes: the data is aligned.
        // SAFETY: a temporary file this run just created under a fresh name,
        // mapped once; nothing else knows it until it is renamed into place.
        let data = unsafe { SharedValues::from_region(Arc::new(seg), header, len, dtype) }
            .map_err(|e| CliError::new(format!("cannot map the output {}: {e}", dest.display())))?;
        Ok(Sink::Mapped {
            tmp,
            data,
            dest: dest.to_owned(),
        })
    }

    /// The elements, for the kernel to write.
    pub(super) fn output(&mut self) -> Result<SliceMut<'_>, CliError> {
        match self {
            Sink::Memory(v) | Sink::Text { values: v, .. } => Ok(v.as_slice_mut()),
            Sink::Mapped { data, .. } => data
                .as_slice_mut()
                .map_err(|e| CliError::new(format!("output: {e}"))),
        }
    }

    /// The elements, read-only.
    pub(super) fn values(&self) -> Slice<'_> {
        match self {
            Sink::Memory(v) | Sink::Text { values: v, .. } => v.as_slice(),
            Sink::Mapped { data, .. } => data.as_slice(),
        }
    }

    /// Flushes and renames the temporary file over the destination.
    pub(super) fn finish(self) -> Result<(), CliError> {
        let (tmp, dest) = match self {
            Sink::Memory(_) => return Ok(()),
            Sink::Mapped { tmp, data, dest } => {
                // The shared mapping's pages are written back by sync_all below.
                drop(data);
                (tmp, dest)
            }
            Sink::Text { tmp, values, dest } => {
                let mut w = BufWriter::new(tmp.file());
                write_text(&mut w, values.as_slice())
                    .and_then(|()| w.flush())
                    .map_err(|e| io_err("cannot write", &dest, e))?;
                drop(w);
                (tmp, dest)
            }
        };
        use std::os::unix::fs::PermissionsExt;
        tmp.file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(|e| io_err("cannot set permissions of", &dest, e))?;
        tmp.file()
            .sync_all()
            .map_err(|e| io_err("cannot write", &dest, e))?;
        // What is at the destination may have changed during the run.
        check_output(&dest)?;
        tmp.persist(&dest)
            .map_err(|e| io_err("cannot put the output in place at", &dest, e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_parsing_follows_the_stated_rule_and_reports_lines() {
        assert_eq!(
            parse_text("1\n 2 \n\n3\n", None),
            Ok(Values::U64(vec![1, 2, 3]))
        );
        assert_eq!(parse_text("1\n-2\n", None), Ok(Values::I64(vec![1, -2])));
        assert_eq!(parse_text("-0\n2\n", None), Ok(Values::I64(vec![0, 2])));
        assert_eq!(
            parse_text("1\n2.5\n", None),
            Ok(Values::F64(vec![1.0, 2.5]))
        );
        assert_eq!(
            parse_text("1\n1e3\n", None),
            Ok(Values::F64(vec![1.0, 1000.0]))
        );
        assert_eq!(
            parse_text("1\n2\n", Some(Dtype::F32)),
            Ok(Values::F32(vec![1.0, 2.0]))
        );
        assert_eq!(
            parse_text("1\n0\ntrue\n", Some(Dtype::Bool)),
            Ok(Values::Bool(vec![1, 0, 1]))
        );
        assert_eq!(
            parse_text("1\n\n2\nabc\n", None),
            Err("line 4: \"abc\" is not a number (f64)".to_owned())
        );
        let e = parse_text("1\n-2\n", Some(Dtype::U64)).unwrap_err();
        assert!(e.starts_with("line 2:"), "{e}");
        let e = parse_text("1\n300\n", Some(Dtype::I8)).unwrap_err();
        assert!(e.starts_with("line 2:") && e.contains("8-bit"), "{e}");
    }

    #[test]
    fn text_round_trips_every_dtype() {
        for d in Dtype::ALL {
            let v = parse_text("0\n1\n", Some(d)).unwrap();
            let mut out = Vec::new();
            write_text(&mut out, v.as_slice()).unwrap();
            let back = parse_text(std::str::from_utf8(&out).unwrap(), Some(d)).unwrap();
            assert_eq!(back, v, "{d}");
        }
    }

    #[test]
    fn little_endian_decoding_of_every_dtype() {
        assert_eq!(
            values_from_le(Dtype::I16, &[0xff, 0xff, 2, 0]),
            Values::I16(vec![-1, 2])
        );
        assert_eq!(
            values_from_le(Dtype::F32, &1.5f32.to_le_bytes()),
            Values::F32(vec![1.5])
        );
        assert_eq!(
            values_from_le(Dtype::Bool, &[0, 2]),
            Values::Bool(vec![0, 2])
        );
    }

    #[test]
    fn formats_from_extensions() {
        assert_eq!(Format::from_path(Path::new("a/b.NPY")), Format::Npy);
        assert_eq!(Format::from_path(Path::new("x.txt")), Format::Text);
        assert_eq!(Format::from_path(Path::new("x.bin")), Format::Raw);
        assert_eq!(Format::from_path(Path::new("x")), Format::Raw);
    }

    mod props {
        //! Random text never panics: it parses to one value per non-blank
        //! line, or fails naming a line that exists.
        use super::*;
        use proptest::prelude::*;

        fn config() -> ProptestConfig {
            ProptestConfig {
                cases: 300,
                failure_persistence: None,
                ..ProptestConfig::default()
            }
        }

        fn check(text: &str) {
            let lines = text.lines().filter(|l| !l.trim().is_empty()).count();
            for dtype in [None, Some(Dtype::U64), Some(Dtype::F64), Some(Dtype::I8)] {
                {
                    match parse_text(text, dtype) {
                        Ok(v) => assert_eq!(v.len(), lines),
                        Err(e) => {
                            let n: usize = e
                                .strip_prefix("line ")
                                .and_then(|r| r.split(':').next())
                                .and_then(|n| n.parse().ok())
                                .unwrap_or_else(|| panic!("no line number in {e:?}"));
                            assert!(n >= 1 && n <= text.lines().count(), "{e}");
                        }
                    }
                }
            }
        }

        proptest! {
            #![proptest_config(config())]

            #[test]
            fn random_text(text in "(?s).{0,200}") {
                check(&text);
            }

            #[test]
            fn number_like_lines(lines in prop::collection::vec(
                "[ \\t]{0,2}[-+]?[0-9]{0,25}(\\.[0-9]{0,5})?([eE][-+]?[0-9]{1,3})?[ \\t\\r]{0,2}|inf|NaN|-|\\.|",
                0..30,
            )) {
                check(&lines.join("\n"));
            }
        }
    }
}
