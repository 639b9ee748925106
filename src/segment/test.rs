use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::*;

fn shm_path(name: &str) -> PathBuf {
    Path::new(sys::SHM_DIR).join(name)
}

#[test]
fn create_open_drop_unlinks() {
    let seg = Segment::create(1000).unwrap();
    let name = seg.name().unwrap().to_owned();
    assert_eq!(seg.len(), HEADER_SIZE + 1000);
    assert_eq!(parse_name(&name).map(|p| p.0), Some(std::process::id()));
    let meta = std::fs::metadata(shm_path(&name)).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let other = Segment::open(&name).unwrap();
    assert!(!other.is_owner());
    assert_eq!(other.kind(), kind::RAW);
    assert_eq!(other.creator_pid(), Some(std::process::id()));
    drop(other);
    assert!(shm_path(&name).exists(), "a non-owner must not unlink");
    drop(seg);
    assert!(!shm_path(&name).exists());
    assert!(matches!(
        Segment::open(&name),
        Err(Error::SegmentNotFound(_))
    ));
}

#[test]
fn second_create_of_same_name_fails() {
    let name = generate_name().unwrap();
    let a = Segment::builder().name(name.clone()).create(64).unwrap();
    let b = Segment::builder().name(name.clone()).create(64);
    assert!(
        matches!(b, Err(Error::SegmentExists(ref n)) if *n == name),
        "{b:?}"
    );
    drop(a);
}

#[test]
fn invalid_names_are_rejected() {
    for bad in ["", "a/b", "x\0y", &"n".repeat(300)] {
        assert!(
            matches!(Segment::open(bad), Err(Error::InvalidName(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn missing_name_is_not_found() {
    let name = generate_name().unwrap();
    assert!(matches!(Segment::open(&name), Err(Error::SegmentNotFound(n)) if n == name));
}

/// Creates a raw shm object with arbitrary bytes, as a foreign program would.
fn foreign(bytes: &[u8]) -> String {
    let name = generate_name().unwrap();
    let f = sys::shm_create(&name, bytes.len() as u64).unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(bytes, 0).unwrap();
    name
}

struct Unlink(String);
impl Drop for Unlink {
    fn drop(&mut self) {
        let _ = sys::shm_unlink(&self.0);
    }
}

#[test]
fn wrong_magic_is_bad_magic() {
    let n = Unlink(foreign(&[7u8; 4096]));
    assert!(matches!(Segment::open(&n.0), Err(Error::BadMagic { .. })));
    let short = Unlink(foreign(&[0u8; 16]));
    assert!(matches!(
        Segment::open(&short.0),
        Err(Error::BadMagic { .. })
    ));
}

#[test]
fn wrong_version_kind_and_size_are_distinct_errors() {
    let seg = Segment::builder().kind(kind::QUEUE).create(256).unwrap();
    let name = seg.name().unwrap().to_owned();

    assert!(matches!(
        Segment::builder().kind(kind::ARRAY).open(&name),
        Err(Error::KindMismatch { found, expected, .. }) if found == kind::QUEUE && expected == kind::ARRAY
    ));

    seg.header().version.store(99, Ordering::Relaxed);
    assert!(matches!(
        Segment::open(&name),
        Err(Error::VersionMismatch { found: 99, .. })
    ));
    seg.header()
        .version
        .store(LAYOUT_VERSION, Ordering::Relaxed);

    seg.header().size.store(1 << 40, Ordering::Relaxed);
    assert!(matches!(
        Segment::open(&name),
        Err(Error::SizeMismatch { .. })
    ));
}

#[test]
fn too_big_for_shm_is_no_space_not_sigbus() {
    // 1 PiB cannot be reserved on any tmpfs this runs on.
    let r = Segment::create(1 << 50);
    assert!(matches!(r, Err(Error::NoSpace { .. })), "{r:?}");
    // Nothing may be left behind by the failed create.
    let mine: Vec<_> = list()
        .unwrap()
        .into_iter()
        .filter(|s| s.creator_pid == Some(std::process::id()) && s.size > 1 << 40)
        .collect();
    assert!(mine.is_empty(), "{mine:?}");
}

#[test]
fn alloc_is_aligned_and_bounded() {
    let seg = Segment::create(1024).unwrap();
    let a = seg.alloc(10, 64).unwrap();
    let b = seg.alloc(10, 64).unwrap();
    assert_eq!(a % 64, 0);
    assert_eq!(b % 64, 0);
    assert!(b >= a + 10);
    assert!(a >= HEADER_SIZE);
    assert!(matches!(seg.alloc(4096, 8), Err(Error::SegmentFull { .. })));
    assert!(matches!(seg.alloc(8, 3), Err(Error::InvalidArgument(_))));
}

#[test]
fn memfd_segment_opens_through_its_handle() {
    let seg = Segment::builder()
        .memfd()
        .kind(kind::ARRAY)
        .create(4096)
        .unwrap();
    assert!(seg.name().is_none());
    let h = seg.handle();
    assert!(matches!(h, SegmentHandle::Memfd { .. }));
    let other = Segment::open_handle(&h).unwrap();
    assert_eq!(other.kind(), kind::ARRAY);
    // Writes through one mapping are seen through the other.
    let off = seg.alloc(8, 8).unwrap();
    let arr = SharedView::<u64>::from_region(Arc::new(other), off, 1).unwrap();
    let arr0 = SharedView::<u64>::from_region(Arc::new(seg), off, 1).unwrap();
    arr0.set(0, 77);
    assert_eq!(arr.get(0), Some(77));
}

#[test]
fn array_handle_checks_type_len_offset() {
    let a = SharedView::<u64>::new(16).unwrap();
    let h = a.handle();
    assert_eq!(SharedView::<u64>::attach(&h).unwrap().len(), 16);

    assert!(matches!(
        SharedView::<f64>::attach(&h),
        Err(Error::TypeMismatch { .. })
    ));
    assert!(matches!(
        SharedView::<u32>::attach(&h),
        Err(Error::TypeMismatch { .. })
    ));
    let mut long = h.clone();
    long.len = 1 << 40;
    assert!(matches!(
        SharedView::<u64>::attach(&long),
        Err(Error::OutOfBounds { .. })
    ));
    let mut far = h.clone();
    far.offset = 1 << 30;
    assert!(matches!(
        SharedView::<u64>::attach(&far),
        Err(Error::OutOfBounds { .. })
    ));
    let mut overflow = h.clone();
    overflow.offset = u64::MAX - 4;
    assert!(matches!(
        SharedView::<u64>::attach(&overflow),
        Err(Error::OutOfBounds { .. })
    ));
    let mut misaligned = h.clone();
    misaligned.offset += 1;
    assert!(matches!(
        SharedView::<u64>::attach(&misaligned),
        Err(Error::OutOfBounds { .. })
    ));
    let mut in_header = h;
    in_header.offset = 8;
    in_header.len = 1;
    assert!(matches!(
        SharedView::<u64>::attach(&in_header),
        Err(Error::OutOfBounds { .. })
    ));
}

#[test]
fn array_round_trips_through_serde() {
    let a = SharedView::<f64>::from_slice(&[1.5, 2.5]).unwrap();
    let bytes = postcard::to_allocvec(&a).unwrap();
    let b: SharedView<f64> = postcard::from_bytes(&bytes).unwrap();
    b.set(0, 9.0);
    assert_eq!(a.to_vec(), vec![9.0, 2.5]);
    let s = a.slice(1..2);
    assert_eq!(s.to_vec(), vec![2.5]);
    assert_eq!(a.get(2), None);
}

#[test]
fn raw_file_mapping_is_shared_and_bounded() {
    let dir = std::env::temp_dir().join(format!("shmproc-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("raw.bin");
    let seg = Arc::new(Segment::create_raw_file(&path, 64).unwrap());
    assert!(!seg.has_header());
    let a = SharedView::<u64>::from_region(Arc::clone(&seg), 0, 8).unwrap();
    a.copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
    let ro = Segment::map_file(&path, false).unwrap();
    let b = SharedView::<u64>::from_region(Arc::new(ro), 0, 8).unwrap();
    assert_eq!(b.to_vec(), vec![1, 2, 3, 4, 5, 6, 7, 8]);
    assert!(SharedView::<u64>::from_region(seg, 8, 8).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sweep_removes_dead_creators_only() {
    // A segment named as if made by a process that no longer exists: pid 1 with
    // a start time it never had.
    let dead = format!(
        "{NAME_PREFIX}.1.999999999.{:016x}",
        sys::random_u64().unwrap()
    );
    let f = sys::shm_create(&dead, 64).unwrap();
    drop(f);
    let live = Segment::create(64).unwrap();
    let live_name = live.name().unwrap().to_owned();

    let stale = sweep(true).unwrap();
    assert!(stale.iter().any(|s| s.name == dead));
    assert!(shm_path(&dead).exists(), "dry run removed something");

    let removed = sweep(false).unwrap();
    assert!(removed.iter().any(|s| s.name == dead));
    assert!(!removed.iter().any(|s| s.name == live_name));
    assert!(!shm_path(&dead).exists());
    assert!(shm_path(&live_name).exists());
}

#[test]
fn parse_name_accepts_only_generated_names() {
    let n = generate_name().unwrap();
    assert_eq!(parse_name(&n).map(|p| p.0), Some(std::process::id()));
    assert_eq!(parse_name("shmproc.12.34.0123456789abcdef"), Some((12, 34)));
    assert_eq!(parse_name("shmproc.12.34.short"), None);
    assert_eq!(parse_name("other.12.34.0123456789abcdef"), None);
    assert_eq!(parse_name("shmproc.x.34.0123456789abcdef"), None);
}

#[test]
fn start_time_identifies_this_process() {
    let me = std::process::id();
    let t = sys::process_start_time(me).unwrap();
    assert!(sys::process_alive(me, t));
    assert!(!sys::process_alive(me, t + 1));
}

#[test]
fn handles_are_send_and_sync() {
    fn both<T: Send + Sync>() {}
    both::<Segment>();
    both::<SharedView<u64>>();
    both::<crate::sync::Mutex<u64>>();
    both::<crate::sync::Semaphore>();
    both::<crate::sync::Event>();
    both::<crate::sync::Barrier>();
    both::<crate::Pool>();
}

#[test]
fn a_memfd_larger_than_memory_is_no_space_not_an_oom() {
    let r = Segment::builder().memfd().create(1 << 50);
    assert!(matches!(r, Err(Error::NoSpace { .. })), "{r:?}");
    let r = SharedView::<u64>::new(1 << 47);
    assert!(matches!(r, Err(Error::NoSpace { .. })), "{r:?}");
}

#[test]
fn prefault_keeps_contents_and_remembers_the_pages_it_did() {
    let seg = Arc::new(Segment::builder().memfd().create(64 * 4096).unwrap());
    let a = SharedView::<u64>::new_in(&seg, 8 * 4096).unwrap();
    a.copy_from_slice(&(0..8 * 4096u64).collect::<Vec<_>>());
    let other = Arc::new(Segment::open_handle(&seg.handle()).unwrap());
    let b = SharedView::<u64>::attach_in(Arc::clone(&other), &a.handle()).unwrap();
    // A chunk in the middle: pages 4..=9 of the array's region, say.
    b.raw().prefault(2048..5000, false);
    b.raw().prefault(2048..5000, true);
    assert_eq!(b.to_vec(), (0..8 * 4096u64).collect::<Vec<_>>());
    let pages_of = |write: bool| -> Vec<usize> {
        let bits = other.populated[write as usize].get().expect("bitmap made");
        (0..bits.len() * 64)
            .filter(|p| bits[p / 64].load(Ordering::Relaxed) & (1 << (p % 64)) != 0)
            .collect()
    };
    let first = (b.offset() + 2048 * 8) / 4096;
    let last = (b.offset() + 5000 * 8).div_ceil(4096);
    assert_eq!(pages_of(false), (first..last).collect::<Vec<_>>());
    assert_eq!(pages_of(true), (first..last).collect::<Vec<_>>());
    // Out-of-range requests are clipped, empty ones ignored.
    b.raw().prefault(5000..5000, false);
    b.raw().prefault(0..usize::MAX, false);
    assert_eq!(pages_of(false).len(), other.len().div_ceil(4096));
}

#[test]
fn an_owned_array_gives_safe_slices_and_refuses_views() {
    let mut a = crate::segment::SharedArray::<u64>::from_slice(&[1, 2, 3]).unwrap();
    a[0] = 10;
    a.as_mut_slice()[2] = 30;
    assert_eq!(a.to_vec(), vec![10, 2, 30]);
    // No view attaches to an owned array's segment, by handle or by region.
    let h = a.raw().handle();
    assert!(matches!(
        SharedView::<u64>::attach(&h),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        SharedView::<u64>::from_region(Arc::clone(a.raw().segment()), h.offset as usize, 1),
        Err(Error::InvalidArgument(_))
    ));
    // Once it is a view, it attaches like any view.
    let v = a.into_view();
    let w = SharedView::<u64>::attach(&v.handle()).unwrap();
    w.set(1, 20);
    assert_eq!(v.to_vec(), vec![10, 20, 30]);
}

#[test]
fn atomic_elements_of_every_width() {
    let a = SharedView::<u8>::from_slice(&[1, 2]).unwrap();
    a.set(1, 200);
    assert_eq!(a.to_vec(), vec![1, 200]);
    let b = SharedView::<i16>::from_slice(&[-1, 2]).unwrap();
    b.set(0, -300);
    assert_eq!(b.get(0), Some(-300));
    let c = SharedView::<f32>::from_slice(&[1.5]).unwrap();
    c.set(0, -2.25);
    assert_eq!(c.get(0), Some(-2.25));
    let d = SharedView::<f64>::new(3).unwrap();
    d.copy_from_slice(&[0.5, f64::NAN, -0.0]);
    let got = d.to_vec();
    assert_eq!(got[0], 0.5);
    assert!(got[1].is_nan());
    assert!(got[2] == 0.0 && got[2].is_sign_negative());
    let e = SharedView::<i64>::from_slice(&[i64::MIN]).unwrap();
    assert_eq!(e.get(0), Some(i64::MIN));
}

/// The `THPeligible` line of the mapping that holds `addr`, in this
/// process's /proc/self/smaps.
fn thp_eligible(addr: usize) -> Option<bool> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
    let mut inside = false;
    for line in smaps.lines() {
        if let Some((range, _)) = line.split_once(' ') {
            if let Some((a, b)) = range.split_once('-') {
                if let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
                {
                    inside = a <= addr && addr < b;
                    continue;
                }
            }
        }
        if inside {
            if let Some(v) = line.strip_prefix("THPeligible:") {
                return Some(v.trim() == "1");
            }
        }
    }
    None
}

#[test]
fn large_segments_ask_for_huge_pages_and_work_where_the_kernel_refuses_them() {
    // The shared-memory THP setting decides; `never` and `deny` refuse the
    // advice (the fallback: 4 KiB pages), the others honour it.
    let setting = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/shmem_enabled")
        .unwrap_or_default();
    let chosen = setting
        .split_whitespace()
        .find(|w| w.starts_with('['))
        .map(|w| w.trim_matches(|c| c == '[' || c == ']').to_owned());
    for seg in [
        Segment::builder().memfd().create(8 << 20).unwrap(),
        Segment::create(8 << 20).unwrap(),
    ] {
        let seg = Arc::new(seg);
        let n = (8 << 20) / 8 - 1024;
        let a = SharedView::<u64>::new_in(&seg, n).unwrap();
        a.copy_from_slice(&(0..n as u64).collect::<Vec<_>>());
        let other = Arc::new(Segment::open_handle(&seg.handle()).unwrap());
        let b = SharedView::<u64>::attach_in(Arc::clone(&other), &a.handle()).unwrap();
        assert_eq!(b.to_vec(), (0..n as u64).collect::<Vec<_>>());
        let eligible = thp_eligible(seg.as_ptr() as usize);
        match chosen.as_deref() {
            Some("never") | Some("deny") => assert_eq!(eligible, Some(false), "{setting}"),
            Some(_) if eligible.is_some() => assert_eq!(eligible, Some(true), "{setting}"),
            _ => {} // no THP in this kernel: nothing to check beyond the data
        }
    }
}

#[test]
fn a_file_range_maps_only_its_part_and_travels_by_handle() {
    let dir = std::env::temp_dir().join(format!("shmproc-range-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("data.bin");
    let page = crate::segment::page_size();
    let values: Vec<u64> = (0..(3 * page / 8) as u64).collect();
    std::fs::write(&path, bytemuck::cast_slice::<u64, u8>(&values)).unwrap();
    let seg = Segment::map_file_range(&path, page as u64, page, false).unwrap();
    assert_eq!(seg.len(), page);
    let h = seg.handle();
    assert!(
        matches!(h, SegmentHandle::FileRange { offset, len, .. } if offset == page as u64 && len == page as u64)
    );
    let again = Segment::open_handle(&h).unwrap();
    let a = SharedView::<u64>::from_region(Arc::new(again), 0, page / 8).unwrap();
    // SAFETY: nothing writes the file meanwhile.
    assert_eq!(unsafe { a.as_slice() }[0], (page / 8) as u64);
    // A misaligned offset, and a part past the end, are errors.
    assert!(matches!(
        Segment::map_file_range(&path, 8, 64, false),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        Segment::map_file_range(&path, 2 * page as u64, page + 1, false),
        Err(Error::OutOfBounds { .. })
    ));
    // Writable parts write the file.
    let w = Segment::map_file_range(&path, 0, page, true).unwrap();
    let wv = SharedView::<u64>::from_region(Arc::new(w), 0, 1).unwrap();
    wv.copy_from_slice(&[42]);
    drop(wv);
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(u64::from_le_bytes(bytes[..8].try_into().unwrap()), 42);
    std::fs::remove_dir_all(&dir).unwrap();
}
