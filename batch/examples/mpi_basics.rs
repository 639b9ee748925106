//! The basics of mpi4py, in Rust, with the local work of each rank on a
//! shmproc pool: point-to-point send and receive, broadcast, scatter,
//! gather and reduce.
//!
//! ```text
//! cargo build --release -p shmproc-batch --features mpi --example mpi_basics
//! mpirun -np 3 target/release/examples/mpi_basics
//! ```
//!
//! | mpi4py | here |
//! |---|---|
//! | `comm.send(data, dest=1)` / `comm.recv(source=0)` | `send` / `receive_vec` of postcard bytes |
//! | `comm.bcast(data, root=0)` | `broadcast_into` |
//! | `comm.scatter(blocks, root=0)` | `scatter_into_root` / `scatter_into` |
//! | `comm.gather(x, root=0)` | `gather_into_root` / `gather_into` |
//! | `comm.reduce(x, op=MPI.SUM, root=0)` | `reduce_into_root` / `reduce_into` |

use mpi::collective::SystemOperation;
use mpi::traits::*;
use serde::{Deserialize, Serialize};
use shmproc_batch::backend::{
    default_chunk, run_checksum, run_chunks, Backend, Job, KernelRef, RunOptions,
};
use shmproc_batch::mpi::Cluster;
use shmproc_kernels::{CountPrimes, Dtype, Power, SliceMut};

/// mpi4py's tutorial sends the dict `{'a': 7, 'b': 3.14}`.
#[derive(Debug, Serialize, Deserialize)]
struct Data {
    a: i32,
    b: f64,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cluster = Cluster::init()?;
    let world = cluster.world();
    let (rank, size) = (cluster.rank(), cluster.size());
    let root = world.process_at_rank(0);

    // Point to point: rank 0 sends, rank 1 receives.
    if size > 1 {
        if rank == 0 {
            // The tutorial's 3.14 (not meant as pi).
            #[allow(clippy::approx_constant)]
            let bytes = postcard::to_stdvec(&Data { a: 7, b: 3.14 })?;
            world.process_at_rank(1).send(&bytes[..]);
        } else if rank == 1 {
            let (bytes, status) = world.process_at_rank(0).receive_vec::<u8>();
            let d: Data = postcard::from_bytes(&bytes)?;
            println!(
                "rank 1 received {{'a': {}, 'b': {}}} from rank {}",
                d.a,
                d.b,
                status.source_rank()
            );
        }
    }

    // Broadcast: the parameters, from rank 0 to every rank.
    let mut params = [0u64; 2];
    if rank == 0 {
        params = [3_000_000, 4];
    }
    root.broadcast_into(&mut params[..]);
    let [n, times] = params;
    let n = n as usize;
    if rank == 0 {
        println!("broadcast: every rank has n = {n}, times = {times}");
    }

    // Scatter: rank 0 cuts the run's chunks into one block per rank.
    let chunk = default_chunk(n);
    let chunks = n.div_ceil(chunk);
    let mut mine = [0u64; 2];
    if rank == 0 {
        let blocks: Vec<u64> = (0..size)
            .flat_map(|r| {
                let b = cluster.block_of(r, chunks);
                [b.start as u64, b.end as u64]
            })
            .collect();
        let text: Vec<String> = blocks
            .chunks(2)
            .enumerate()
            .map(|(r, b)| {
                format!(
                    "{}{}..{}",
                    if r == 0 { "rank 0 takes chunks " } else { "" },
                    b[0],
                    b[1]
                )
            })
            .collect();
        let text: Vec<String> = text
            .into_iter()
            .enumerate()
            .map(|(r, t)| if r == 0 { t } else { format!("rank {r} {t}") })
            .collect();
        println!("scatter: {}", text.join(", "));
        root.scatter_into_root(&blocks[..], &mut mine[..]);
    } else {
        root.scatter_into(&mut mine[..]);
    }
    let first = mine[0] as usize * chunk;
    let end = (mine[1] as usize * chunk).min(n);

    // Each rank's part on its own pool of worker processes.
    let opts = RunOptions {
        workers: cluster.workers(),
        chunk: Some(chunk),
        progress: None,
    };
    let power = KernelRef::new(Power);
    let power_params = power.params([format!("times={times}")])?;
    let part = Job::iota(&power, power_params.clone(), end - first, Dtype::U64).at(first);
    let local = run_chunks(Backend::Processes, &part, None, &opts)?.checksum();

    // Gather: every rank's checksum to rank 0.
    if rank == 0 {
        let mut all = vec![0u64; size];
        root.gather_into_root(&local, &mut all[..]);
        let total = all.iter().fold(0u64, |a, &c| a.wrapping_add(c));
        let whole = Job::iota(&power, power_params, n, Dtype::U64);
        let single = run_checksum(Backend::Processes, &whole, None, &opts)?;
        println!("gather: {} partial checksums, total {total}", all.len());
        println!("checksum equals the single-pool run: {}", total == single);
    } else {
        root.gather_into(&local);
    }

    // Reduce: primes in each rank's part of 0..n, added up on rank 0.
    let primes = KernelRef::new(CountPrimes);
    let count = Job::generated(&primes, primes.defaults(), end - first).at(first);
    let mut acc = [0u64];
    run_checksum(
        Backend::Processes,
        &count,
        Some(SliceMut::U64(&mut acc)),
        &opts,
    )?;
    if rank == 0 {
        let mut total = 0u64;
        root.reduce_into_root(&acc[0], &mut total, SystemOperation::sum());
        let whole = Job::generated(&primes, primes.defaults(), n);
        let mut one = [0u64];
        run_checksum(
            Backend::Processes,
            &whole,
            Some(SliceMut::U64(&mut one)),
            &opts,
        )?;
        let agree = if total == one[0] {
            ", as one pool counts them".to_owned()
        } else {
            format!(", but one pool counts {}", one[0])
        };
        println!("reduce: primes below {n} = {total}{agree}");
    } else {
        root.reduce_into(&acc[0], SystemOperation::sum());
    }
    shmproc_batch::backend::shutdown_pools();
    Ok(())
}
