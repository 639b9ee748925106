//! Property tests over every decoder of bytes that come from shared memory or
//! files (public API; the CLI's `.npy` and text readers have their own
//! proptests in `src/cli/npy.rs` and `src/cli/files.rs`). Random and mutated
//! inputs never panic and never reach out of bounds: each is rejected with an
//! error, or accepted and then consistent with the memory it describes.

mod common;

use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;
use shmproc::ipc::{ConnectionHandle, Message, Pods, QueueHandle, Raw};
use shmproc::segment::{kind, ArrayHandle, Segment, SegmentHandle, HEADER_SIZE};
use shmproc::sync::{Barrier, Event, Mutex, Semaphore, SyncHandle};
use shmproc::SharedView;

const CASES: u32 = 200;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: CASES,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Byte flips, a truncation and an extension applied to `valid`.
#[derive(Debug, Clone)]
struct Mutation {
    flips: Vec<(usize, u8)>,
    truncate: Option<usize>,
    extend: Vec<u8>,
}

fn mutation() -> impl Strategy<Value = Mutation> {
    (
        prop::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        prop::option::of(any::<usize>()),
        prop::collection::vec(any::<u8>(), 0..4),
    )
        .prop_map(|(flips, truncate, extend)| Mutation {
            flips,
            truncate,
            extend,
        })
}

impl Mutation {
    fn apply(&self, valid: &[u8]) -> Vec<u8> {
        let mut v = valid.to_vec();
        if !v.is_empty() {
            for &(i, b) in &self.flips {
                let n = v.len();
                v[i % n] ^= b;
            }
        }
        if let Some(t) = self.truncate {
            v.truncate(t % (v.len() + 1));
        }
        v.extend_from_slice(&self.extend);
        v
    }

    /// Only the flips, kept inside `[0, len)`.
    fn flip_within(&self, bytes: &mut [u8], len: usize) {
        for &(i, b) in &self.flips {
            bytes[i % len] ^= b;
        }
    }
}

/// Decodes `bytes` as `T` through the message codec; must not panic.
fn decode<T: Message>(bytes: &[u8]) -> shmproc::Result<T> {
    T::decode(&mut bytes.to_vec())
}

/// Valid encodings of each frame type the codec decodes from a ring.
fn valid_frames() -> Vec<Vec<u8>> {
    let mut s = Vec::new();
    let mut enc = |v: &dyn Fn(&mut Vec<u8>) -> Vec<u8>| v(&mut s);
    vec![
        enc(&|s| ("hello".to_string(), 7u32).encode(s).unwrap().to_vec()),
        enc(&|s| vec![1u64, 2, u64::MAX].encode(s).unwrap().to_vec()),
        enc(&|s| Some((3u8, "x".to_string())).encode(s).unwrap().to_vec()),
        enc(&|s| Pods(vec![1.5f64, 2.5]).encode(s).unwrap().to_vec()),
        enc(&|s| Raw([1u32, 2, 3, 4]).encode(s).unwrap().to_vec()),
        enc(&|s| {
            SegmentHandle::Memfd {
                pid: 1,
                start_time: 2,
                fd: 3,
                ino: 4,
            }
            .encode(s)
            .unwrap()
            .to_vec()
        }),
    ]
}

/// Every decoder the codec has, over the same bytes.
fn decode_all(bytes: &[u8]) {
    let _ = decode::<(String, u32)>(bytes);
    let _ = decode::<Vec<u64>>(bytes);
    let _ = decode::<Option<(u8, String)>>(bytes);
    let _ = decode::<Vec<String>>(bytes);
    let _ = decode::<Pods<f64>>(bytes);
    let _ = decode::<Pods<u8>>(bytes);
    let _ = decode::<Raw<[u32; 4]>>(bytes);
    let _ = decode::<Raw<u64>>(bytes);
    let _ = decode::<SegmentHandle>(bytes);
    let _ = decode::<ArrayHandle>(bytes);
    let _ = decode::<SyncHandle>(bytes);
    let _ = decode::<QueueHandle>(bytes);
    let _ = decode::<ConnectionHandle>(bytes);
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn codec_random_bytes_are_decoded_or_rejected(bytes in prop::collection::vec(any::<u8>(), 0..96)) {
        decode_all(&bytes);
        // Pod decoders accept exactly the right lengths.
        prop_assert_eq!(decode::<Raw<u64>>(&bytes).is_ok(), bytes.len() == 8);
        prop_assert_eq!(decode::<Pods<f64>>(&bytes).is_ok(), bytes.len() % 8 == 0);
    }

    #[test]
    fn codec_mutated_frames_are_decoded_or_rejected(m in mutation(), which in 0usize..6) {
        let frames = valid_frames();
        let bytes = m.apply(&frames[which]);
        decode_all(&bytes);
    }

    #[test]
    fn codec_valid_frames_round_trip(s in ".{0,20}", n in any::<u32>(), v in prop::collection::vec(any::<u64>(), 0..20)) {
        let mut scratch = Vec::new();
        let bytes = (s.clone(), n).encode(&mut scratch).unwrap().to_vec();
        prop_assert_eq!(decode::<(String, u32)>(&bytes).unwrap(), (s, n));
        let bytes = v.encode(&mut scratch).unwrap().to_vec();
        prop_assert_eq!(decode::<Vec<u64>>(&bytes).unwrap(), v.clone());
        let bytes = Pods(v.clone()).encode(&mut scratch).unwrap().to_vec();
        prop_assert_eq!(decode::<Pods<u64>>(&bytes).unwrap().0, v);
    }
}

// ---- segment headers ------------------------------------------------------------

/// Checks what an accepted segment claims against the file behind it.
fn consistent(seg: &Segment, file_len: u64) {
    assert_eq!(seg.len() as u64, file_len);
    assert!(seg.has_header());
    // An allocation never overlaps the header nor runs past the end, whatever
    // the cursor in shared memory says.
    if let Ok(off) = seg.alloc(16, 8) {
        assert!(
            off >= HEADER_SIZE && off + 16 <= seg.len(),
            "alloc at {off}"
        );
    }
}

fn valid_segment_file(dir: &Path) -> (std::path::PathBuf, Vec<u8>) {
    let path = dir.join("valid.seg");
    let seg = Segment::create_file(&path, kind::RAW, 512).unwrap();
    seg.alloc(24, 8).unwrap();
    seg.set_root(HEADER_SIZE as u64);
    drop(seg);
    let bytes = std::fs::read(&path).unwrap();
    (path, bytes)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn segment_files_with_random_or_mutated_headers_open_or_fail(
        m in mutation(),
        random in prop::collection::vec(any::<u8>(), 0..300),
        use_random in any::<bool>(),
        header_only in any::<bool>(),
        field in 0usize..9,
        value in prop_oneof![any::<u64>(), 0u64..1024],
    ) {
        let dir = common::TempDir::new("decoders-seg");
        let (_, valid) = valid_segment_file(dir.path());
        let bytes = if use_random {
            random
        } else if header_only {
            let mut v = valid.clone();
            m.flip_within(&mut v, HEADER_SIZE);
            // One field of the header (see src/segment/header.rs) set to an
            // arbitrary value: 8-byte fields at 0, 16, 32, 40, 48; 4-byte ones
            // at 8, 12, 24, 28.
            let (at, width) = [(0, 8), (8, 4), (12, 4), (16, 8), (24, 4), (28, 4), (32, 8), (40, 8), (48, 8)][field];
            v[at..at + width].copy_from_slice(&value.to_le_bytes()[..width]);
            v
        } else {
            m.apply(&valid)
        };
        let path = dir.path().join("mutated.seg");
        std::fs::write(&path, &bytes).unwrap();
        if let Ok(seg) = Segment::open_file(&path) {
            consistent(&seg, bytes.len() as u64);
        }
        let h = SegmentHandle::File { path: path.clone(), header: true, writable: true };
        if let Ok(seg) = Segment::open_handle(&h) {
            consistent(&seg, bytes.len() as u64);
        }
    }

    #[test]
    fn memfds_with_mutated_headers_open_or_fail(m in mutation(), random in any::<bool>()) {
        let seg = Segment::builder().memfd().create(4096).unwrap();
        let h = seg.handle();
        let p = seg.as_ptr();
        // SAFETY: the header bytes of our own fresh segment; no other thread
        // or process uses it while we scribble, and every index is < HEADER_SIZE.
        unsafe {
            for &(i, b) in &m.flips {
                let at = p.add(i % HEADER_SIZE);
                at.write_volatile(if random { b } else { at.read_volatile() ^ b });
            }
        }
        if let Ok(other) = Segment::open_handle(&h) {
            consistent(&other, seg.len() as u64);
        }
    }
}

// ---- handles and their attach checks -------------------------------------------

/// Arrays to mutate the handles of: in a memfd, a named segment and a raw file.
struct Arrays {
    _dir: common::TempDir,
    _named: Arc<Segment>,
    handles: Vec<ArrayHandle>,
}

fn arrays() -> Arrays {
    let dir = common::TempDir::new("decoders-arr");
    let a = SharedView::<u64>::from_slice(&[1, 2, 3, 4]).unwrap();
    let named = Arc::new(Segment::create(4096).unwrap());
    let b = SharedView::<u32>::new_in(&named, 10).unwrap();
    let path = dir.path().join("raw.bin");
    std::fs::write(&path, [0u8; 256]).unwrap();
    let raw = Arc::new(Segment::map_file(&path, false).unwrap());
    let c = SharedView::<f64>::from_region(raw, 64, 8).unwrap();
    let handles = vec![a.handle(), b.handle(), c.handle()];
    // The arrays' segments stay alive through the memfd's creator (us), the
    // named segment (held) and the file (in the dir).
    std::mem::forget(a);
    Arrays {
        _dir: dir,
        _named: named,
        handles,
    }
}

/// Attaches `h` as `T`; when that works, the view lies inside its segment.
fn attach_checked<T: shmproc::segment::AtomicElement>(h: &ArrayHandle) {
    if let Ok(a) = SharedView::<T>::attach(h) {
        let end = a.offset() + a.len() * std::mem::size_of::<T>();
        assert!(end <= a.segment().len(), "{h:?} attached past the end");
        assert_eq!(a.offset() % std::mem::align_of::<T>(), 0);
        if a.segment().has_header() {
            assert!(a.offset() >= HEADER_SIZE);
        }
        let _ = a.to_vec();
    }
}

fn mutate_handle(h: &ArrayHandle, field: u8, x: u64) -> ArrayHandle {
    let mut h = h.clone();
    match field % 6 {
        0 => h.offset = x,
        1 => h.len = x,
        2 => h.offset = h.offset.wrapping_add(x % 64),
        3 => h.len = h.len.wrapping_add(x % 64),
        4 => h.elem_size = x as u32,
        _ => {
            if let SegmentHandle::Memfd { fd, .. } = &mut h.segment {
                *fd = fd.wrapping_add(x as i32 % 8);
            }
        }
    }
    h
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn mutated_array_handles_attach_in_bounds_or_fail(which in 0usize..3, field in any::<u8>(), x in any::<u64>(), m in mutation()) {
        let arrays = arrays();
        let h = mutate_handle(&arrays.handles[which], field, x);
        attach_checked::<u64>(&h);
        attach_checked::<u32>(&h);
        attach_checked::<f64>(&h);
        // The same through the bytes of the handle, mutated.
        let mut s = Vec::new();
        let bytes = m.apply(h.encode(&mut s).unwrap());
        if let Ok(h) = decode::<ArrayHandle>(&bytes) {
            attach_checked::<u64>(&h);
            attach_checked::<u32>(&h);
        }
        let _ = decode::<SharedView<u64>>(&bytes);
    }

    #[test]
    fn mutated_sync_handles_attach_or_fail(field in any::<u8>(), x in any::<u64>(), m in mutation()) {
        let seg = Arc::new(Segment::builder().memfd().create(1 << 14).unwrap());
        let handles = [
            Mutex::new_in(&seg, 0u64).unwrap().handle(),
            Semaphore::new_in(&seg, 1).unwrap().handle(),
            Event::new_in(&seg).unwrap().handle(),
            Barrier::new_in(&seg, 2).unwrap().handle(),
        ];
        for h in &handles {
            let mut h = h.clone();
            match field % 3 {
                0 => h.offset = x,
                1 => h.offset = h.offset.wrapping_add(x % 256),
                _ => h.tag ^= x as u32,
            }
            // Attach may succeed only where a real block of that type is.
            if let Ok(m) = Mutex::<u64>::attach(&h) {
                prop_assert_eq!(h.offset, handles[0].offset);
                drop(m.lock());
            }
            if Semaphore::attach(&h).is_ok() {
                prop_assert_eq!(h.offset, handles[1].offset);
            }
            if Event::attach(&h).is_ok() {
                prop_assert_eq!(h.offset, handles[2].offset);
            }
            if Barrier::attach(&h).is_ok() {
                prop_assert_eq!(h.offset, handles[3].offset);
            }
            let mut s = Vec::new();
            let bytes = m.apply(h.encode(&mut s).unwrap());
            let _ = decode::<Mutex<u64>>(&bytes);
            let _ = decode::<Semaphore>(&bytes);
            let _ = decode::<Event>(&bytes);
            let _ = decode::<Barrier>(&bytes);
        }
    }
}
