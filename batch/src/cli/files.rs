//! Input and output files of `shmproc run`: `.npy`, raw little-endian, text.
//!
//! Binary inputs are memory-mapped and read in place; binary outputs are a
//! memory-mapped temporary file in the destination's directory, renamed over
//! the destination only when the run succeeded, so a failed run leaves no
//! partial output. Text is parsed into (or formatted from) memory.
//!
//! # The contract of mapped files
//!
//! `shmproc run` reads its binary inputs and writes its binary outputs in
//! place, through shared mappings that every worker process maps too. Like
//! every memory-mapped program (and memmap2's `unsafe` mapping functions), it
//! relies on nobody else changing the files while a run lasts: another program
//! that writes an input during a run makes the results meaningless, and one
//! that truncates it breaks the run. The output is a temporary file that only
//! this run knows until it is renamed into place.

#![allow(unsafe_code)] // the two SharedValues::from_region calls, under the contract above

use super::{mapped, npy, CliError};
use crate::backend::SharedValues;
use crate::kernels::{Acc, Dtype, Input, KernelInfo, Output, Values};
use crate::segment::Segment;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tempfile::NamedTempFile;

/// File format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum Format {
    /// numpy `.npy`, 1-D, `<u8` or `<f8`.
    Npy,
    /// Raw little-endian 8-byte elements (`--dtype` says which).
    Raw,
    /// One number per line.
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

/// `--dtype`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum DtypeArg {
    /// Unsigned 64-bit integers.
    U64,
    /// 64-bit floats.
    F64,
}

impl From<DtypeArg> for Dtype {
    fn from(d: DtypeArg) -> Self {
        match d {
            DtypeArg::U64 => Dtype::U64,
            DtypeArg::F64 => Dtype::F64,
        }
    }
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> CliError {
    CliError::new(format!("{what} {}: {e}", path.display()))
}

/// An input array: a read-only shared map of a binary file (which worker
/// processes map too), values in shared memory, or parsed text.
#[derive(Debug)]
pub(super) enum Loaded {
    /// A file mapping (worker processes map the same file).
    Shared(SharedValues),
    /// Values held in memory.
    Owned(Values),
}

impl Loaded {
    pub(super) fn dtype(&self) -> Dtype {
        match self {
            Loaded::Shared(v) => v.dtype(),
            Loaded::Owned(v) => v.dtype(),
        }
    }

    pub(super) fn len(&self) -> usize {
        match self {
            Loaded::Shared(v) => v.len(),
            Loaded::Owned(v) => v.len(),
        }
    }

    /// `f64` elements, if that is the type.
    pub(super) fn f64s(&self) -> Option<&[f64]> {
        match self.as_input() {
            Input::F64(s) => Some(s),
            _ => None,
        }
    }

    pub(super) fn as_input(&self) -> Input<'_> {
        match self {
            Loaded::Owned(v) => v.as_input(),
            Loaded::Shared(v) => v.as_input(),
        }
    }
}

fn absolute(path: &Path) -> Result<PathBuf, CliError> {
    std::fs::canonicalize(path).map_err(|e| io_err("cannot resolve", path, e))
}

/// Reads `path`. `dtype` is `--dtype`; when absent, raw input takes the kernel's
/// first accepted type and text input is read as u64 if the kernel takes u64
/// and every line is an integer, else as f64.
pub(super) fn load(
    path: &Path,
    format: Option<Format>,
    dtype: Option<Dtype>,
    kernel: &KernelInfo,
) -> Result<Loaded, CliError> {
    if cfg!(target_endian = "big") {
        return Err(CliError::new(
            "binary formats are little-endian; this host is not",
        ));
    }
    let format = format.unwrap_or_else(|| Format::from_path(path));
    let preferred = if kernel.accepts(Dtype::U64) {
        Dtype::U64
    } else {
        Dtype::F64
    };
    if format == Format::Text {
        let text = std::fs::read_to_string(path).map_err(|e| io_err("cannot read", path, e))?;
        return parse_text(&text, dtype, kernel.accepts(Dtype::U64))
            .map(Loaded::Owned)
            .map_err(|e| CliError::new(format!("{}: {e}", path.display())));
    }
    let file = File::open(path).map_err(|e| io_err("cannot open", path, e))?;
    let map = mapped::map_read(&file).map_err(|e| io_err("cannot map", path, e))?;
    let (offset, len, dtype) = match format {
        Format::Npy => {
            let h =
                npy::parse(&map).map_err(|e| CliError::new(format!("{}: {e}", path.display())))?;
            if let Some(d) = dtype.filter(|&d| d != h.dtype) {
                return Err(CliError::new(format!(
                    "{}: the file holds {} but --dtype says {d}",
                    path.display(),
                    h.dtype
                )));
            }
            (h.data_offset, h.len, h.dtype)
        }
        _ => {
            if map.len() % 8 != 0 {
                return Err(CliError::new(format!(
                    "{}: raw input of {} bytes is not a whole number of 8-byte elements",
                    path.display(),
                    map.len()
                )));
            }
            (0, map.len() / 8, dtype.unwrap_or(preferred))
        }
    };
    let bytes = &map[offset..offset + len * 8];
    if bytemuck::try_cast_slice::<u8, u64>(bytes).is_err() {
        // Misaligned data (a header length that is not a multiple of 8): copy.
        let words = bytes.chunks_exact(8).map(|c| {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            w
        });
        let values = match dtype {
            Dtype::U64 => Values::U64(words.map(u64::from_le_bytes).collect()),
            Dtype::F64 => Values::F64(words.map(f64::from_le_bytes).collect()),
        };
        return Ok(Loaded::Owned(values));
    }
    drop(map);
    // The data as a shared segment: worker processes map the same file.
    let seg = Segment::map_file(&absolute(path)?, false)
        .map_err(|e| CliError::new(format!("cannot map {}: {e}", path.display())))?;
    // SAFETY: the contract of mapped files (module docs): nothing else writes
    // the input during the run; this process only reads it.
    let values = unsafe { SharedValues::from_region(Arc::new(seg), offset, len, dtype) }
        .map_err(|e| CliError::new(format!("{}: {e}", path.display())))?;
    Ok(Loaded::Shared(values))
}

/// One number per line (surrounding whitespace and blank lines ignored).
fn parse_text(text: &str, dtype: Option<Dtype>, prefer_u64: bool) -> Result<Values, String> {
    let lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty());
    let want = match dtype {
        Some(d) => d,
        None if prefer_u64 && lines.clone().all(|(_, l)| l.parse::<u64>().is_ok()) => Dtype::U64,
        None => Dtype::F64,
    };
    match want {
        Dtype::U64 => lines
            .map(|(n, l)| {
                l.parse::<u64>()
                    .map_err(|_| format!("line {n}: {l:?} is not an unsigned 64-bit integer"))
            })
            .collect::<Result<_, _>>()
            .map(Values::U64),
        Dtype::F64 => lines
            .map(|(n, l)| {
                l.parse::<f64>()
                    .map_err(|_| format!("line {n}: {l:?} is not a number"))
            })
            .collect::<Result<_, _>>()
            .map(Values::F64),
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
        tmp: NamedTempFile,
        data: SharedValues,
        dest: PathBuf,
    },
    /// Values in memory, written as text to the temporary file on success.
    Text {
        tmp: NamedTempFile,
        values: Values,
        dest: PathBuf,
    },
}

impl Sink {
    /// A sink for `len` zeroed elements of `dtype`, at `dest` if given. The
    /// temporary file is created now, so an unwritable destination fails
    /// before any work is done.
    pub(super) fn create(
        dest: Option<&Path>,
        format: Option<Format>,
        dtype: Dtype,
        len: usize,
    ) -> Result<Self, CliError> {
        let Some(dest) = dest else {
            return Ok(Sink::Memory(Values::zeros(dtype, len)));
        };
        let format = format.unwrap_or_else(|| Format::from_path(dest));
        let dir = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let tmp = tempfile::Builder::new()
            .prefix(".shmproc-out-")
            .tempfile_in(dir)
            .map_err(|e| io_err("cannot create the output in", dir, e))?;
        if format == Format::Text {
            return Ok(Sink::Text {
                tmp,
                values: Values::zeros(dtype, len),
                dest: dest.to_owned(),
            });
        }
        let header = match format {
            Format::Npy => npy::header(dtype, len),
            _ => Vec::new(),
        };
        let bytes = len
            .checked_mul(8)
            .and_then(|b| b.checked_add(header.len()))
            .ok_or_else(|| CliError::new("output too large"))?;
        tmp.as_file()
            .set_len(bytes as u64)
            .map_err(|e| io_err("cannot size the output", dest, e))?;
        use std::os::unix::fs::FileExt;
        tmp.as_file()
            .write_all_at(&header, 0)
            .map_err(|e| io_err("cannot write", dest, e))?;
        let seg = Segment::map_file(&absolute(tmp.path())?, true)
            .map_err(|e| CliError::new(format!("cannot map the output {}: {e}", dest.display())))?;
        // The npy header is a multiple of 64 bytes: the data is aligned.
        // SAFETY: a temporary file this run just created under a fresh name,
        // mapped once; nothing else knows it until it is renamed into place.
        let data = unsafe { SharedValues::from_region(Arc::new(seg), header.len(), len, dtype) }
            .map_err(|e| CliError::new(format!("cannot map the output {}: {e}", dest.display())))?;
        Ok(Sink::Mapped {
            tmp,
            data,
            dest: dest.to_owned(),
        })
    }

    /// The elements, for the kernel to write.
    pub(super) fn output(&mut self) -> Result<Output<'_>, CliError> {
        match self {
            Sink::Memory(v) | Sink::Text { values: v, .. } => Ok(v.as_output()),
            Sink::Mapped { data, .. } => data
                .as_output()
                .map_err(|e| CliError::new(format!("output: {e}"))),
        }
    }

    /// The elements, read-only.
    pub(super) fn values(&self) -> Acc<'_> {
        let input = match self {
            Sink::Memory(v) | Sink::Text { values: v, .. } => v.as_input(),
            Sink::Mapped { data, .. } => data.as_input(),
        };
        match input {
            Input::U64(s) => Acc::U64(s),
            Input::F64(s) => Acc::F64(s),
            _ => Acc::U64(&[]),
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
                let mut w = BufWriter::new(tmp.as_file());
                let written = match &values {
                    Values::U64(v) => v.iter().try_for_each(|x| writeln!(w, "{x}")),
                    Values::F64(v) => v.iter().try_for_each(|x| writeln!(w, "{x:?}")),
                };
                written
                    .and_then(|()| w.flush())
                    .map_err(|e| io_err("cannot write", &dest, e))?;
                drop(w);
                (tmp, dest)
            }
        };
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(|e| io_err("cannot set permissions of", &dest, e))?;
        tmp.as_file()
            .sync_all()
            .map_err(|e| io_err("cannot write", &dest, e))?;
        tmp.persist(&dest)
            .map_err(|e| io_err("cannot rename the output to", &dest, e.error))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_parsing_detects_types_and_reports_lines() {
        assert_eq!(
            parse_text("1\n 2 \n\n3\n", None, true),
            Ok(Values::U64(vec![1, 2, 3]))
        );
        assert_eq!(
            parse_text("1\n2.5\n", None, true),
            Ok(Values::F64(vec![1.0, 2.5]))
        );
        assert_eq!(
            parse_text("1\n2\n", None, false),
            Ok(Values::F64(vec![1.0, 2.0]))
        );
        assert_eq!(
            parse_text("1\n\n2\nabc\n", None, false),
            Err("line 4: \"abc\" is not a number".to_owned())
        );
        let e = parse_text("1\n-2\n", Some(Dtype::U64), true).unwrap_err();
        assert!(e.starts_with("line 2:"), "{e}");
    }

    #[test]
    fn checksum_wraps_and_uses_bit_patterns() {
        use crate::backend::checksum;
        assert_eq!(checksum(Acc::U64(&[u64::MAX, 2])), 1);
        assert_eq!(checksum(Acc::F64(&[1.0])), 1.0f64.to_bits());
        assert_ne!(checksum(Acc::F64(&[0.0])), checksum(Acc::F64(&[-0.0])));
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
            for dtype in [None, Some(Dtype::U64), Some(Dtype::F64)] {
                for prefer_u64 in [false, true] {
                    match parse_text(text, dtype, prefer_u64) {
                        Ok(Values::U64(v)) => assert_eq!(v.len(), lines),
                        Ok(Values::F64(v)) => assert_eq!(v.len(), lines),
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
