//! A small, strict reader and writer of `.npy` headers (format versions 1.0,
//! 2.0 and 3.0) for little-endian C-order arrays of any shape and of every
//! [`Dtype`] (`|b1`, `|i1` to `<i8`, `|u1` to `<u8`, `<f4`, `<f8`).
//! Big-endian data, Fortran order and other dtypes are rejected with a message
//! that says what was found and what to do.
//!
//! Layout: the magic `\x93NUMPY`, major and minor version bytes, the header
//! length (u16 LE for 1.0, u32 LE for 2.0/3.0), then a Python dict literal
//! such as `{'descr': '<u8', 'fortran_order': False, 'shape': (10,), }` padded
//! with spaces and a final newline so that the data starts at a multiple of 64.

use shmproc_kernels::Dtype;

const MAGIC: &[u8; 6] = b"\x93NUMPY";
/// The data offset is padded to a multiple of this (as numpy does).
const ALIGN: usize = 64;

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

/// Parses the header at the start of `bytes` (the whole file or at least its
/// header) and checks that the file holds exactly `len` elements after it.
pub(super) fn parse(bytes: &[u8]) -> Result<NpyHeader, String> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(if bytes.len() < 6 || &bytes[..6] != MAGIC {
            "not a .npy file (bad magic)".to_owned()
        } else {
            "truncated .npy header".to_owned()
        });
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let (hlen, start): (usize, usize) = match major {
        1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err("truncated .npy header".to_owned());
            }
            let l = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
            (l as usize, 12)
        }
        _ => return Err(format!("unsupported .npy format version {major}.{minor}")),
    };
    let end = start
        .checked_add(hlen)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| {
            format!(
                "truncated .npy header: it announces {hlen} bytes but the file has {}",
                bytes.len().saturating_sub(start)
            )
        })?;
    let text = std::str::from_utf8(&bytes[start..end])
        .map_err(|_| "malformed .npy header: not text".to_owned())?;
    let dict = parse_dict(text).map_err(|e| format!("malformed .npy header: {e}"))?;
    let descr = dict.descr.ok_or("malformed .npy header: no 'descr'")?;
    let fortran = dict
        .fortran_order
        .ok_or("malformed .npy header: no 'fortran_order'")?;
    let shape = dict.shape.ok_or("malformed .npy header: no 'shape'")?;
    let dtype = parse_descr(&descr)?;
    if fortran {
        return Err(
            "unsupported .npy array: fortran_order is True; only C order is read \
             (save it with np.save(path, np.ascontiguousarray(a)))"
                .into(),
        );
    }
    let len = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| format!("malformed .npy header: shape {shape:?} is too large"))?;
    let data = bytes.len() - end;
    let want = len
        .checked_mul(dtype.size())
        .ok_or_else(|| format!("malformed .npy header: shape {shape:?} is too large"))?;
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

/// The [`Dtype`] of a numpy type string such as `<f4` or `|u1`.
fn parse_descr(descr: &str) -> Result<Dtype, String> {
    let mut c = descr.chars();
    let (order, kind) = (c.next(), c.next());
    let size: Option<usize> = c.as_str().parse().ok();
    let (Some(order), Some(kind), Some(size)) = (order, kind, size) else {
        return Err(format!(
            "unsupported .npy dtype {descr:?}: not a plain numeric type"
        ));
    };
    let Some(dtype) = Dtype::from_numpy_kind(kind, size) else {
        return Err(format!(
            "unsupported .npy dtype {descr:?}: only bool, i8 to i64, u8 to u64, f32 and f64 are read"
        ));
    };
    match order {
        '<' | '|' | '=' => Ok(dtype),
        '>' if size == 1 => Ok(dtype),
        '>' => Err(format!(
            "unsupported .npy dtype {descr:?}: big-endian data is not read; convert it with \
             np.save(path, a.astype(a.dtype.newbyteorder('<')))"
        )),
        _ => Err(format!("unsupported .npy dtype {descr:?}")),
    }
}

/// The header for an array of `dtype` and `shape`: version 1.0 when it fits, else 2.0.
pub(super) fn header(dtype: Dtype, shape: &[usize]) -> Vec<u8> {
    let descr = dtype.numpy();
    let dims = match shape {
        [n] => format!("{n},"),
        dims => dims
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(", "),
    };
    let dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': ({dims}), }}");
    let build = |prefix: usize| {
        // dict + spaces + '\n', total (prefix + hlen) a multiple of ALIGN.
        let hlen = (prefix + dict.len() + 1).div_ceil(ALIGN) * ALIGN - prefix;
        let mut text = dict.clone().into_bytes();
        text.resize(hlen - 1, b' ');
        text.push(b'\n');
        text
    };
    let text = build(10);
    let mut out = MAGIC.to_vec();
    if let Ok(h) = u16::try_from(text.len()) {
        out.extend([1, 0]);
        out.extend(h.to_le_bytes());
        out.extend(text);
    } else {
        let text = build(12);
        out.extend([2, 0]);
        out.extend((text.len() as u32).to_le_bytes());
        out.extend(text);
    }
    out
}

#[derive(Debug, Default)]
struct Dict {
    descr: Option<String>,
    fortran_order: Option<bool>,
    shape: Option<Vec<usize>>,
}

/// Parses the dict literal numpy writes (string keys; string, bool or
/// int-tuple values), tolerating any whitespace and a trailing comma.
fn parse_dict(text: &str) -> Result<Dict, String> {
    let mut p = Lexer {
        s: text.as_bytes(),
        i: 0,
    };
    let mut dict = Dict::default();
    p.expect(b'{')?;
    loop {
        p.skip_ws();
        if p.eat(b'}') {
            break;
        }
        let key = p.string()?;
        p.expect(b':')?;
        p.skip_ws();
        match key.as_str() {
            "descr" => dict.descr = Some(p.string()?),
            "fortran_order" => dict.fortran_order = Some(p.boolean()?),
            "shape" => dict.shape = Some(p.tuple()?),
            other => return Err(format!("unexpected key {other:?}")),
        }
        p.skip_ws();
        if !p.eat(b',') {
            p.expect(b'}')?;
            break;
        }
    }
    p.skip_ws();
    if p.i != p.s.len() {
        return Err("text after the dict".to_owned());
    }
    Ok(dict)
}

struct Lexer<'a> {
    s: &'a [u8],
    i: usize,
}

impl Lexer<'_> {
    fn skip_ws(&mut self) {
        while self.s.get(self.i).is_some_and(|c| c.is_ascii_whitespace()) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.skip_ws();
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(format!("expected '{}' at byte {}", c as char, self.i))
        }
    }

    fn string(&mut self) -> Result<String, String> {
        self.skip_ws();
        let quote = match self.s.get(self.i) {
            Some(&q @ (b'\'' | b'"')) => q,
            _ => return Err(format!("expected a string at byte {}", self.i)),
        };
        let start = self.i + 1;
        let len = self.s[start..]
            .iter()
            .position(|&c| c == quote)
            .ok_or("unterminated string")?;
        self.i = start + len + 1;
        Ok(String::from_utf8_lossy(&self.s[start..start + len]).into_owned())
    }

    fn boolean(&mut self) -> Result<bool, String> {
        for (word, v) in [(&b"True"[..], true), (&b"False"[..], false)] {
            if self.s[self.i..].starts_with(word) {
                self.i += word.len();
                return Ok(v);
            }
        }
        Err(format!("expected True or False at byte {}", self.i))
    }

    fn tuple(&mut self) -> Result<Vec<usize>, String> {
        self.expect(b'(')?;
        let mut items = Vec::new();
        loop {
            if self.eat(b')') {
                return Ok(items);
            }
            self.skip_ws();
            let start = self.i;
            while self.s.get(self.i).is_some_and(u8::is_ascii_digit) {
                self.i += 1;
            }
            let digits = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("");
            let v = digits
                .parse()
                .map_err(|_| format!("expected a dimension at byte {start}"))?;
            items.push(v);
            if !self.eat(b',') {
                self.expect(b')')?;
                return Ok(items);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dtype: Dtype, len: usize) -> Vec<u8> {
        let mut f = header(dtype, &[len]);
        f.resize(f.len() + len * dtype.size(), 0);
        f
    }

    #[test]
    fn header_round_trips_and_aligns() {
        for (dtype, len) in [(Dtype::U64, 0), (Dtype::F64, 3), (Dtype::U64, 1000)] {
            let h = parse(&file(dtype, len)).unwrap();
            assert_eq!((h.dtype, h.len, h.data_offset % ALIGN), (dtype, len, 0));
        }
        let big = header(Dtype::U64, &[123_456_789_012]);
        assert_eq!(big.len() % ALIGN, 0);
        assert_eq!(big.last(), Some(&b'\n'));
        let f = file(Dtype::F64, 3);
        assert_eq!(
            parse(&f),
            Ok(NpyHeader {
                dtype: Dtype::F64,
                len: 3,
                shape: vec![3],
                data_offset: 128 // as numpy writes it
            })
        );
    }

    #[test]
    fn every_dtype_and_shape_round_trips() {
        for dtype in Dtype::ALL {
            for shape in [vec![5], vec![2, 3], vec![2, 1, 4], vec![0, 3], vec![]] {
                let len: usize = shape.iter().product();
                let mut f = header(dtype, &shape);
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
        assert!(e.contains("no 'fortran_order'"), "{e}");
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
                let hlen = header(dtype, &[len]).len();
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
