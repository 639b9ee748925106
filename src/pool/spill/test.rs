//! Spill references come from task slots, which any worker can scribble on:
//! each malformed one is an error, and nothing is unlinked.

use std::path::Path;

use super::*;
use crate::segment::{self, kind, Segment, SegmentBuilder, SegmentHandle};

fn owner() -> SpillOwner {
    SpillOwner::new_for_this_process().unwrap()
}

fn exists(name: &str) -> bool {
    Path::new("/dev/shm").join(name).exists()
}

/// Every checked reader refuses `r`; `name`, if any, is still in /dev/shm.
fn refused(r: &SpillRef, o: SpillOwner, name: Option<&str>) {
    assert!(read_spill_of(r, o).is_err(), "read_spill_of({r:?})");
    assert!(take_spill_of(r, o).is_err(), "take_spill_of({r:?})");
    if let Some(n) = name {
        assert!(exists(n), "{n} was unlinked");
    }
}

#[test]
fn a_spill_of_this_pool_round_trips_and_take_unlinks_it() {
    let o = owner();
    let r = write_spill(b"hello spill", o).unwrap();
    let SegmentHandle::Shm { name } = r.handle.clone() else {
        panic!("{r:?}");
    };
    assert_eq!(Segment::open(&name).unwrap().kind(), kind::SPILL);
    assert_eq!(read_spill_of(&r, o).unwrap(), b"hello spill");
    assert!(exists(&name));
    assert_eq!(take_spill_of(&r, o).unwrap(), b"hello spill");
    assert!(!exists(&name));
}

#[test]
fn a_ref_to_another_name_is_refused_and_not_unlinked() {
    let o = owner();
    // A segment of this process that is no spill.
    let other = Segment::create(64).unwrap();
    let name = other.name().unwrap().to_owned();
    let r = SpillRef {
        handle: other.handle(),
        len: 8,
    };
    refused(&r, o, Some(&name));
    assert!(take_spill_of(&r, o).is_err() && exists(&name));
    // A spill of another pool of this process (another tag).
    let mut stranger = o;
    stranger.tag = o.tag.wrapping_add(1);
    let (seg, r) = create_spill(b"not yours", stranger).unwrap();
    refused(&r, o, seg.name());
    drop(seg);
    // Names that are not generated, or try to leave /dev/shm.
    for name in [
        "victim",
        "../../home/victim",
        &format!("{}/../x", segment::tagged_prefix(o.pid, o.start, o.tag)),
        &format!("{}0000000", segment::tagged_prefix(o.pid, o.start, o.tag)),
        &format!("{}000000000", segment::tagged_prefix(o.pid, o.start, o.tag)),
        &format!("{}0000000g", segment::tagged_prefix(o.pid, o.start, o.tag)),
    ] {
        let r = SpillRef {
            handle: SegmentHandle::Shm { name: name.into() },
            len: 0,
        };
        refused(&r, o, None);
        assert!(read_spill_of(&r, o).is_err() && take_spill_of(&r, o).is_err());
    }
}

#[test]
fn a_ref_to_a_file_or_a_memfd_is_refused() {
    let o = owner();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("victim");
    std::fs::write(&path, [0u8; 4096]).unwrap();
    for header in [false, true] {
        let r = SpillRef {
            handle: SegmentHandle::File {
                path: path.clone(),
                header,
                writable: true,
            },
            len: 16,
        };
        refused(&r, o, None);
        assert!(read_spill_of(&r, o).is_err() && take_spill_of(&r, o).is_err());
        assert!(path.exists());
    }
    let memfd = SegmentBuilder::new()
        .kind(kind::SPILL)
        .memfd()
        .create(64)
        .unwrap();
    let r = SpillRef {
        handle: memfd.handle(),
        len: 16,
    };
    refused(&r, o, None);
    assert!(read_spill_of(&r, o).is_err() && take_spill_of(&r, o).is_err());
}

#[test]
fn a_ref_with_the_wrong_kind_is_refused_and_not_unlinked() {
    let o = owner();
    let name = segment::generate_tagged_name(o.pid, o.start, o.tag).unwrap();
    let seg = SegmentBuilder::new()
        .kind(kind::RAW)
        .name(name.clone())
        .create(64)
        .unwrap();
    let r = SpillRef {
        handle: seg.handle(),
        len: 8,
    };
    refused(&r, o, Some(&name));
    assert!(matches!(
        read_spill_of(&r, o),
        Err(Error::KindMismatch { .. })
    ));
    assert!(take_spill_of(&r, o).is_err() && exists(&name));
}

#[test]
fn a_ref_with_a_length_past_the_segment_is_refused_and_not_unlinked() {
    let o = owner();
    let (seg, mut r) = create_spill(&[7u8; 100], o).unwrap();
    let name = seg.name().unwrap().to_owned();
    let size = seg.len() as u64;
    for len in [size, size - HEADER_SIZE as u64 + 1, u64::MAX, 1 << 40] {
        r.len = len;
        refused(&r, o, Some(&name));
        assert!(matches!(
            read_spill_of(&r, o),
            Err(Error::OutOfBounds { .. })
        ));
        assert!(take_spill_of(&r, o).is_err() && exists(&name));
    }
    // The exact length still reads.
    r.len = size - HEADER_SIZE as u64;
    assert_eq!(read_spill_of(&r, o).unwrap().len() as u64, r.len);
}
