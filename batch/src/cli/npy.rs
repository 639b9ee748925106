//! `.npy` headers, read and written through the `npyz` crate, for
//! little-endian C-order arrays of any shape and of every [`Dtype`] (`|b1`,
//! `|i1` to `<i8`, `|u1` to `<u8`, `<f4`, `<f8`). Big-endian data, Fortran
//! order and other dtypes are rejected with a message that says what was
//! found and what to do.
//!
//! What is ours is the zero-copy part around it: the data is never read
//! through `npyz` but mapped (see `files.rs`), so this module only finds
//! where the data starts and checks that the file holds exactly the
//! elements the header announces. The framing (magic, version, header
//! length) is checked here before `npyz` sees the header, so that a header
//! length larger than the file is an error and not an allocation of that
//! size.

use npyz::{DType, Endianness, Order, TypeStr, WriterBuilder};
use shmproc_kernels::Dtype;

const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// What a header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct NpyHeader {
    pub(super) dtype: Dtype,
    /// Elements in total (the product of the shape).
    pub(super) len: usize,
    /// The shape (C order).
    pub(super) shape: Vec<usize>,
    /// Byte offset of the first element.
    pub(super) data_offset: usize,
}

/// The byte offset where the header of `bytes` ends, from the magic,
/// version and header length (versions 1.0, 2.0 and 3.0).
fn header_end(bytes: &[u8]) -> Result<usize, String> {
    if bytes.len() < 6 || &bytes[..6] != MAGIC {
        return Err("not a .npy file (bad magic)".to_owned());
    }
    let (major, minor) = match bytes.get(6..8) {
        Some(&[major, minor]) => (major, minor),
        _ => return Err("truncated .npy header".to_owned()),
    };
    let (len_bytes, start): (usize, usize) = match major {
        1 => (2, 10),
        2 | 3 => (4, 12),
        _ => return Err(format!("unsupported .npy format version {major}.{minor}")),
    };
    let hlen = bytes
        .get(8..8 + len_bytes)
        .map(|b| b.iter().rev().fold(0usize, |a, &x| a << 8 | usize::from(x)))
        .ok_or("truncated .npy header")?;
    start
        .checked_add(hlen)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| {
            format!(
                "truncated .npy header: it announces {hlen} bytes but the file has {}",
                bytes.len().saturating_sub(start)
            )
        })
}

/// Parses the header at the start of `bytes` (the whole file) and checks
/// that the file holds exactly the elements it announces after it.
pub(super) fn parse(bytes: &[u8]) -> Result<NpyHeader, String> {
    parse_prefix(bytes, bytes.len() as u64)
}

/// Like [`parse`], from the file's first bytes (at least the whole header)
/// and its size: the data is not read.
pub(super) fn parse_prefix(bytes: &[u8], file_len: u64) -> Result<NpyHeader, String> {
    let end = header_end(bytes)?;
    let Some(head) = bytes.get(..end) else {
        return Err("truncated .npy header".to_owned());
    };
    let header = read_header(head)?;
    let dtype = match header.dtype() {
        DType::Plain(ty) => dtype_of(&ty)?,
        other => {
            return Err(format!(
                "unsupported .npy dtype {}: a structured dtype; only bool, i8 to i64, u8 to u64, \
                 f32 and f64 are read",
                other.descr()
            ))
        }
    };
    if header.order() == Order::Fortran {
        return Err(
            "unsupported .npy array: fortran_order is True; only C order is read \
             (save it with np.save(path, np.ascontiguousarray(a)))"
                .into(),
        );
    }
    let shape = header
        .shape()
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<Vec<usize>, _>>()
        .map_err(|_| {
            format!(
                "malformed .npy header: shape {:?} is too large",
                header.shape()
            )
        })?;
    let too_large = || format!("malformed .npy header: shape {shape:?} is too large");
    let len = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(too_large)?;
    let want = len.checked_mul(dtype.size()).ok_or_else(too_large)?;
    let data = usize::try_from(file_len.saturating_sub(end as u64)).unwrap_or(usize::MAX);
    if data != want {
        return Err(format!(
            "{} .npy data: the header says {len} elements ({want} bytes) but {data} bytes follow",
            if data < want {
                "truncated"
            } else {
                "oversized"
            }
        ));
    }
    Ok(NpyHeader {
        dtype,
        len,
        shape,
        data_offset: end,
    })
}

/// `npyz`'s reading of a header whose framing [`header_end`] checked.
fn read_header(mut header: &[u8]) -> Result<npyz::NpyHeader, String> {
    // npyz 0.9.1 multiplies the dimensions without a check (a panic in a
    // debug build for a shape whose product overflows); such a header is
    // malformed, whatever the build.
    let read = std::panic::catch_unwind(move || npyz::NpyHeader::from_reader(&mut header));
    match read {
        Ok(Ok(h)) => Ok(h),
        Ok(Err(e)) => Err(format!("malformed .npy header: {e}")),
        Err(_) => Err("malformed .npy header: the shape's product overflows".to_owned()),
    }
}

/// The [`Dtype`] of a numpy type string such as `<f4` or `|u1`.
fn dtype_of(ty: &TypeStr) -> Result<Dtype, String> {
    let size = usize::try_from(ty.size_field()).unwrap_or(usize::MAX);
    let kind = ty.type_char().to_str().chars().next().unwrap_or('?');
    let dtype = ty
        .num_bytes()
        .filter(|&n| n == size)
        .and_then(|_| Dtype::from_numpy_kind(kind, size));
    let Some(dtype) = dtype else {
        return Err(format!(
            "unsupported .npy dtype \"{ty}\": only bool, i8 to i64, u8 to u64, f32 and f64 are read"
        ));
    };
    if ty.endianness() == Endianness::Big && size > 1 {
        return Err(format!(
            "unsupported .npy dtype \"{ty}\": big-endian data is not read; convert it with \
             np.save(path, a.astype(a.dtype.newbyteorder('<')))"
        ));
    }
    Ok(dtype)
}

/// The header for a C-order array of `dtype` and `shape` (written by `npyz`:
/// version 1.0 when it fits, the data offset a multiple of 64 as numpy's).
pub(super) fn header(dtype: Dtype, shape: &[usize]) -> Result<Vec<u8>, String> {
    let ty: TypeStr = dtype
        .numpy()
        .parse()
        .map_err(|e| format!("the numpy type of {dtype} ({}): {e}", dtype.numpy()))?;
    let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    let mut out = Vec::new();
    npyz::WriteOptions::new_header_only()
        .dtype(DType::Plain(ty))
        .shape(&shape)
        .writer(&mut out)
        .write_header_only()
        .map_err(|e| format!("writing a .npy header: {e}"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The data offset `npyz` aligns to, as numpy does.
    const ALIGN: usize = 64;

    fn file(dtype: Dtype, len: usize) -> Vec<u8> {
        let mut f = header(dtype, &[len]).unwrap();
        f.resize(f.len() + len * dtype.size(), 0);
        f
    }

    #[test]
    fn header_round_trips_and_aligns() {
        for (dtype, len) in [(Dtype::U64, 0), (Dtype::F64, 3), (Dtype::U64, 1000)] {
            let h = parse(&file(dtype, len)).unwrap();
            assert_eq!((h.dtype, h.len, h.data_offset % ALIGN), (dtype, len, 0));
        }
        let big = header(Dtype::U64, &[123_456_789_012]).unwrap();
        assert_eq!(big.len() % ALIGN, 0);
        assert_eq!(big.last(), Some(&b'\n'));
        let f = file(Dtype::F64, 3);
        assert_eq!(
            parse(&f),
            Ok(NpyHeader {
                dtype: Dtype::F64,
                len: 3,
                shape: vec![3],
                data_offset: 128 // as numpy writes it too
            })
        );
    }

    #[test]
    fn every_dtype_and_shape_round_trips() {
        for dtype in Dtype::ALL {
            for shape in [vec![5], vec![2, 3], vec![2, 1, 4], vec![0, 3], vec![]] {
                let len: usize = shape.iter().product();
                let mut f = header(dtype, &shape).unwrap();
                assert_eq!(f.len() % ALIGN, 0);
                f.resize(f.len() + len * dtype.size(), 0);
                let h = parse(&f).unwrap();
                assert_eq!((h.dtype, &h.shape, h.len), (dtype, &shape, len), "{dtype}");
            }
        }
        // Big-endian one-byte types are the same bytes: read.
        let dict = "{'descr': '>u1', 'fortran_order': False, 'shape': (2,), }";
        let mut f = b"\x93NUMPY\x01\x00".to_vec();
        f.extend((dict.len() as u16).to_le_bytes());
        f.extend(dict.as_bytes());
        f.extend([1, 2]);
        assert_eq!(parse(&f).unwrap().dtype, Dtype::U8);
    }

    /// A header exactly as numpy 1.x writes it for `np.arange(3, dtype='<u8')`.
    #[test]
    fn reads_numpy_written_headers() {
        let dict = b"{'descr': '<u8', 'fortran_order': False, 'shape': (3,), }";
        let mut text = dict.to_vec();
        text.resize(118 - 1, b' ');
        text.push(b'\n');
        let mut f = b"\x93NUMPY\x01\x00".to_vec();
        f.extend((text.len() as u16).to_le_bytes());
        f.extend(&text);
        for v in 0u64..3 {
            f.extend(v.to_le_bytes());
        }
        let h = parse(&f).unwrap();
        assert_eq!((h.dtype, h.len, h.data_offset), (Dtype::U64, 3, 128));
        // Version 2.0 with a u32 length and double quotes.
        let dict = br#"{"shape": (2,), "fortran_order": False, "descr": "<f8"}"#;
        let mut f = b"\x93NUMPY\x02\x00".to_vec();
        f.extend((dict.len() as u32).to_le_bytes());
        f.extend(dict);
        f.extend([0u8; 16]);
        assert_eq!(parse(&f).map(|h| (h.dtype, h.len)), Ok((Dtype::F64, 2)));
    }

    #[test]
    fn rejects_what_it_does_not_read() {
        let with = |dict: &str, data: usize| {
            let mut f = b"\x93NUMPY\x01\x00".to_vec();
            f.extend((dict.len() as u16).to_le_bytes());
            f.extend(dict.as_bytes());
            f.resize(f.len() + data, 0);
            parse(&f).unwrap_err()
        };
        let e = with(
            "{'descr': '>u8', 'fortran_order': False, 'shape': (1,), }",
            8,
        );
        assert!(
            e.contains("unsupported .npy dtype \">u8\"") && e.contains("big-endian"),
            "{e}"
        );
        let e = with(
            "{'descr': '<c16', 'fortran_order': False, 'shape': (1,), }",
            16,
        );
        assert!(e.contains("<c16") && e.contains("only bool"), "{e}");
        let e = with(
            "{'descr': '<U3', 'fortran_order': False, 'shape': (1,), }",
            12,
        );
        assert!(e.contains("<U3"), "{e}");
        let e = with(
            "{'descr': '<f8', 'fortran_order': True, 'shape': (1,), }",
            8,
        );
        assert!(e.contains("fortran_order"), "{e}");
        let e = with(
            "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), }",
            16,
        );
        assert!(e.contains("truncated .npy data"), "{e}");
        let e = with(
            "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }",
            16,
        );
        assert!(e.contains("truncated .npy data"), "{e}");
        let e = with(
            "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }",
            32,
        );
        assert!(e.contains("oversized"), "{e}");
        let e = with("{'descr': '<f8', 'shape': (3,), }", 24);
        assert!(
            e.contains("malformed") && e.contains("'fortran_order'"),
            "{e}"
        );
        let e = with("{'descr': '<f8' 'shape'", 0);
        assert!(e.contains("malformed"), "{e}");
        assert!(parse(b"PK\x03\x04zipfile")
            .unwrap_err()
            .contains("bad magic"));
        assert!(parse(b"\x93NUMPY\x01").unwrap_err().contains("truncated"));
        let mut f = b"\x93NUMPY\x01\x00".to_vec();
        f.extend(200u16.to_le_bytes());
        f.extend(b"{'descr'");
        assert!(parse(&f).unwrap_err().contains("truncated .npy header"));
        assert!(parse(b"\x93NUMPY\x09\x00\x00\x00")
            .unwrap_err()
            .contains("version 9.0"));
    }

    mod props {
        //! Random and mutated headers never panic: each is rejected, or
        //! accepted with a data area that is exactly the rest of the file.
        use super::*;
        use proptest::prelude::*;

        fn config() -> ProptestConfig {
            ProptestConfig {
                cases: 300,
                failure_persistence: None,
                ..ProptestConfig::default()
            }
        }

        fn check(bytes: &[u8]) {
            if let Ok(h) = parse(bytes) {
                assert!(h.data_offset <= bytes.len());
                assert_eq!(bytes.len() - h.data_offset, h.len * 8, "{h:?}");
            }
        }

        proptest! {
            #![proptest_config(config())]

            #[test]
            fn random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..160)) {
                check(&bytes);
            }

            #[test]
            fn random_text_after_a_valid_prefix(
                major in 0u8..5,
                text in "[ -~]{0,120}",
                data in 0usize..40,
            ) {
                let mut f = MAGIC.to_vec();
                f.extend([major, 0]);
                if major == 1 {
                    f.extend((text.len() as u16).to_le_bytes());
                } else {
                    f.extend((text.len() as u32).to_le_bytes());
                }
                f.extend(text.as_bytes());
                f.resize(f.len() + data, 0);
                check(&f);
            }

            #[test]
            fn mutated_valid_files(
                f64s in any::<bool>(),
                len in 0usize..100,
                flips in prop::collection::vec((any::<usize>(), any::<u8>()), 0..6),
                cut in prop::option::of(any::<usize>()),
                extra in 0usize..20,
            ) {
                let dtype = if f64s { Dtype::F64 } else { Dtype::U64 };
                let valid = file(dtype, len);
                prop_assert_eq!(parse(&valid).map(|h| (h.dtype, h.len)), Ok((dtype, len)));
                let mut f = valid.clone();
                let hlen = header(dtype, &[len]).unwrap().len();
                for (i, b) in flips {
                    f[i % hlen] ^= b;
                }
                if let Some(c) = cut {
                    f.truncate(c % (f.len() + 1));
                }
                f.resize(f.len() + extra, 0);
                check(&f);
            }
        }
    }
}
