//! Bulk copies in and out of shared arrays against `memcpy` of the same size
//! (the owned `SharedArray` copies with one `memcpy`; a `SharedView`, which
//! other processes may write meanwhile, element by element with atomics).
//!
//! `cargo bench --bench array [-- --quick]`: 256 MiB of u64 (`--quick`: 8 MiB),
//! medians of 7 runs (3 with `--quick`), each contender right after the other.

use std::time::Instant;

use shmproc::{SharedArray, SharedView};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let bytes: usize = if quick { 8 << 20 } else { 256 << 20 };
    let runs = if quick { 3 } else { 7 };
    let n = bytes / 8;
    let data: Vec<u64> = (0..n as u64).collect();
    let mut dst = vec![0u64; n];
    let mut arr = SharedArray::<u64>::new(n).expect("shared array");
    let view = SharedView::<u64>::new(n).expect("shared view");
    // Touch every page of the destinations once, outside the timings.
    arr.copy_from_slice(&data);
    dst.copy_from_slice(&data);
    view.copy_from_slice(&data);

    let (mut memcpy_in, mut arr_in, mut memcpy_out, mut arr_out, mut view_out) =
        (vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..runs {
        let t = Instant::now();
        dst.copy_from_slice(&data);
        memcpy_in.push(t.elapsed().as_secs_f64());
        std::hint::black_box(&dst);

        let t = Instant::now();
        arr.copy_from_slice(&data);
        arr_in.push(t.elapsed().as_secs_f64());
        std::hint::black_box(&arr);

        let t = Instant::now();
        let v = data.to_vec();
        memcpy_out.push(t.elapsed().as_secs_f64());
        drop(std::hint::black_box(v));

        let t = Instant::now();
        let v = arr.to_vec();
        arr_out.push(t.elapsed().as_secs_f64());
        drop(std::hint::black_box(v));

        let t = Instant::now();
        let v = view.to_vec();
        view_out.push(t.elapsed().as_secs_f64());
        drop(std::hint::black_box(v));
    }
    let gbs = |s: f64| bytes as f64 / s / 1e9;
    let (mi, ai, mo, ao, vo) = (
        median(memcpy_in),
        median(arr_in),
        median(memcpy_out),
        median(arr_out),
        median(view_out),
    );
    println!("{} MiB of u64, medians of {runs}", bytes >> 20);
    println!("copy in:  memcpy {:6.2} GB/s   SharedArray::copy_from_slice {:6.2} GB/s   ratio {:.2}x   (target >= 0.9x)", gbs(mi), gbs(ai), mi / ai);
    println!("copy out: Vec::to_vec {:6.2} GB/s   SharedArray::to_vec {:6.2} GB/s   ratio {:.2}x   (target >= 0.9x)", gbs(mo), gbs(ao), mo / ao);
    println!(
        "          SharedView::to_vec (atomic loads) {:6.2} GB/s   {:.2}x memcpy",
        gbs(vo),
        mo / vo
    );
}
