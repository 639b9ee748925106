//! Runs across MPI ranks (cargo feature `mpi`, over the system's Open MPI
//! through the `mpi` crate): each rank runs its share of a run's chunks on
//! its own node-local process pool over shared memory, and rank 0 combines
//! what every chunk computed, in chunk order, so the result is bit for bit
//! what one run on one node gives.
//!
//! # How a run is shared out
//!
//! The chunks are the single-node run's ([`default_chunk`] of the whole
//! index space unless a chunk size is given), so partials, checksums and
//! rounding are the same. A [`Schedule`] decides which rank runs which
//! chunks:
//!
//! - [`Schedule::Static`]: rank `r` of `R` runs the `r`-th of `R` equal
//!   blocks of consecutive chunks; nothing is exchanged until the end, and a
//!   rank touches (and maps) only its block of the input.
//! - [`Schedule::Dynamic`]: rank 0 hands out batches of consecutive chunks
//!   on request (a thread of rank 0 answers; a rank asks again when its batch
//!   is done), so an uneven kernel keeps every rank busy. Needs
//!   `MPI_THREAD_MULTIPLE`; without it the run is static.
//!
//! Every rank then takes part in the same two steps, whatever happened:
//! [`Cluster::agree`] (did every rank succeed? if not, which one failed
//! first, and why) and the gather of the per-chunk results to rank 0. A rank
//! that waits for the others sleeps between polls instead of spinning in
//! MPI's progress loop, so it leaves its CPUs to the ranks still computing.
//!
//! ```no_run
//! use shmproc_batch::backend::{run_chunks, Backend, Job, KernelRef, RunOptions};
//! use shmproc_batch::mpi::{Cluster, Schedule};
//! use shmproc_kernels::{Dtype, Power};
//!
//! let cluster = Cluster::init()?;
//! let power = KernelRef::new(Power);
//! let n = 1_000_000;
//! let chunk = shmproc_batch::backend::default_chunk(n);
//! let opts = RunOptions { workers: cluster.workers(), chunk: Some(chunk), ..RunOptions::default() };
//! let all = cluster.run(Schedule::Static, n.div_ceil(chunk), |chunks| {
//!     // This rank's indices: chunks.start * chunk .. chunks.end * chunk.
//!     let first = chunks.start * chunk;
//!     let len = (chunks.end * chunk).min(n) - first;
//!     let job = Job::iota(&power, power.defaults(), len, Dtype::U64).at(first);
//!     run_chunks(Backend::Processes, &job, None, &opts)
//! })?;
//! if let Some(all) = all {
//!     println!("checksum {}", all.checksum()); // rank 0 only
//! }
//! # Ok::<(), shmproc_batch::mpi::MpiError>(())
//! ```
//!
//! [`default_chunk`]: crate::backend::default_chunk

use crate::backend::{ChunkResults, RunError};
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use mpi::Threading;
use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Tag of a rank's request for chunks (to rank 0).
const TAG_ASK: i32 = 0x5301;
/// Tag of rank 0's answer: a batch `[start, end)` of chunk indices.
const TAG_GRANT: i32 = 0x5302;
/// Tag of a rank's chunk results (to rank 0).
const TAG_RESULTS: i32 = 0x5303;
/// A request: "give me chunks".
const ASK_MORE: u64 = 0;
/// A request: "I failed; hand nothing more out to anyone".
const ASK_ABORT: u64 = 1;

/// How long a waiting rank sleeps between polls of a pending exchange.
const POLL: Duration = Duration::from_micros(100);
/// The longest pause of rank 0's dispenser between polls.
const IDLE_POLL: Duration = Duration::from_millis(1);

/// Why a distributed run failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MpiError {
    /// MPI could not be initialised (already initialised in this process,
    /// or the launcher failed).
    #[error("MPI: {0}")]
    Init(String),
    /// A rank failed; every rank returns this same error.
    #[error("{}", rank_failed(*.rank, *.failed, *.ranks, .reason))]
    RankFailed {
        /// The first rank (lowest number) that failed.
        rank: usize,
        /// Its error.
        reason: String,
        /// How many ranks failed.
        failed: usize,
        /// How many ranks there are.
        ranks: usize,
    },
    /// The results that came back do not make a whole run (a bug).
    #[error("MPI: {0}")]
    Protocol(String),
}

fn rank_failed(rank: usize, failed: usize, ranks: usize, reason: &str) -> String {
    match failed {
        f if f == ranks && ranks > 1 => format!("{reason} (on every rank)"),
        1 => format!("rank {rank} failed: {reason}"),
        f => format!("rank {rank} failed: {reason} (and {} more ranks)", f - 1),
    }
}

/// How the chunks are shared out among the ranks (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// Equal blocks of consecutive chunks, one per rank.
    Static,
    /// Batches handed out by rank 0 on request.
    Dynamic,
}

impl Schedule {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Schedule::Static => "static",
            Schedule::Dynamic => "dynamic",
        }
    }
}

impl std::str::FromStr for Schedule {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "static" => Ok(Schedule::Static),
            "dynamic" => Ok(Schedule::Dynamic),
            _ => Err(format!(
                "unknown schedule {s:?} (expected static or dynamic)"
            )),
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether this process was started by an MPI launcher (`mpirun`,
/// `mpiexec`, `srun`): the variables Open MPI, PMIx and MPICH's Hydra set.
pub fn launched() -> bool {
    ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"]
        .iter()
        .any(|v| std::env::var_os(v).is_some())
}

/// This process's place among the ranks of an MPI job: the world, and the
/// ranks that share its node. MPI is finalised when it is dropped.
pub struct Cluster {
    world: SimpleCommunicator,
    rank: usize,
    size: usize,
    node_rank: usize,
    node_size: usize,
    nodes: usize,
    multiple: bool,
    // Last: finalises MPI after the communicators are gone.
    _universe: Universe,
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster")
            .field("rank", &self.rank)
            .field("size", &self.size)
            .field("node_rank", &self.node_rank)
            .field("node_size", &self.node_size)
            .field("nodes", &self.nodes)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Initialises MPI (asking for `MPI_THREAD_MULTIPLE`, which
    /// [`Schedule::Dynamic`] needs) and finds the ranks that share this
    /// node (`MPI_Comm_split_type(MPI_COMM_TYPE_SHARED)`). Collective: every
    /// rank calls it. Without a launcher, this process is a job of one rank.
    ///
    /// # Errors
    /// [`MpiError::Init`] if MPI was initialised before in this process.
    pub fn init() -> Result<Cluster, MpiError> {
        let (universe, threading) = mpi::initialize_with_threading(Threading::Multiple)
            .ok_or_else(|| MpiError::Init("MPI is already initialised in this process".into()))?;
        let world = universe.world();
        let node = world.split_shared(world.rank());
        let rank = usize::try_from(world.rank()).unwrap_or(0);
        let size = usize::try_from(world.size()).unwrap_or(1);
        let node_rank = usize::try_from(node.rank()).unwrap_or(0);
        let node_size = usize::try_from(node.size()).unwrap_or(1);
        // One leader per node: the nodes are the leaders.
        let leader = i32::from(node_rank == 0);
        let mut nodes = 0i32;
        world.all_reduce_into(&leader, &mut nodes, mpi::collective::SystemOperation::sum());
        // The dynamic schedule needs every rank to have MPI_THREAD_MULTIPLE.
        let mine = i32::from(threading == Threading::Multiple);
        let mut every = 0i32;
        world.all_reduce_into(&mine, &mut every, mpi::collective::SystemOperation::min());
        Ok(Cluster {
            world,
            rank,
            size,
            node_rank,
            node_size,
            nodes: usize::try_from(nodes).unwrap_or(1).max(1),
            multiple: every == 1,
            _universe: universe,
        })
    }

    /// The world communicator, for messages of your own (see the
    /// `mpi-basics` example).
    pub fn world(&self) -> &SimpleCommunicator {
        &self.world
    }

    /// This rank's number, `0..size()`.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Number of ranks.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Whether this is rank 0, which combines the results.
    pub fn is_root(&self) -> bool {
        self.rank == 0
    }

    /// Number of nodes (groups of ranks that share memory).
    pub fn nodes(&self) -> usize {
        self.nodes
    }

    /// This rank's number among the ranks on its node.
    pub fn node_rank(&self) -> usize {
        self.node_rank
    }

    /// Ranks on this node.
    pub fn node_size(&self) -> usize {
        self.node_size
    }

    /// Whether [`Schedule::Dynamic`] is available (MPI provided
    /// `MPI_THREAD_MULTIPLE`).
    pub fn supports_dynamic(&self) -> bool {
        self.multiple
    }

    /// The default worker count of this rank: the node's CPUs (online, and
    /// within the cgroup quota, whatever CPUs `mpirun` bound this rank to)
    /// divided among the ranks on the node, the first ones taking one more
    /// when it does not divide; at least 1.
    pub fn workers(&self) -> usize {
        share_of(node_cpus(), self.node_size, self.node_rank)
    }

    /// The CPUs this rank may run on (its affinity mask, which `mpirun`'s
    /// `--bind-to` narrows).
    pub fn bound_cpus(&self) -> usize {
        shmproc::cpu_count()
    }

    /// Makes room for `workers` pool workers on this rank's CPUs: when
    /// `mpirun` bound the rank by its default policy (Open MPI binds to a
    /// core when there are at most two ranks, without being asked) to fewer
    /// CPUs than `workers`, the rank's affinity is widened to every online
    /// CPU of the node, so its workers (which inherit it) are not all queued
    /// on one core. A binding asked for (`--bind-to`) is kept.
    pub fn make_room(&self, workers: usize) -> Binding {
        let bound = self.bound_cpus();
        if bound >= workers {
            return Binding::Enough { cpus: bound };
        }
        let asked = std::env::var_os("OMPI_MCA_hwloc_base_binding_policy").is_some();
        let by_default = std::env::var_os("OMPI_MCA_orte_bound_at_launch").is_some() && !asked;
        if by_default && unbind() {
            return Binding::Widened {
                from: bound,
                to: self::cpus_now(),
            };
        }
        Binding::Narrow { cpus: bound }
    }

    /// The static block of chunk indices of rank `rank` among `chunks`.
    pub fn block_of(&self, rank: usize, chunks: usize) -> Range<usize> {
        block(chunks, self.size, rank)
    }

    /// Waits, without spinning, until every rank has come here (a polled
    /// `MPI_Ibarrier`).
    pub fn barrier(&self) {
        let mut req = self.world.immediate_barrier();
        let mut pause = POLL;
        loop {
            match req.test() {
                Ok(_) => return,
                Err(r) => {
                    req = r;
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(IDLE_POLL);
                }
            }
        }
    }

    /// Whether every rank's `outcome` is `Ok`. Collective. Every rank gets
    /// its own value back if all succeeded, and otherwise the same
    /// [`MpiError::RankFailed`] naming the lowest rank that failed and its
    /// message.
    ///
    /// # Errors
    /// [`MpiError::RankFailed`].
    pub fn agree<T, E: fmt::Display>(&self, outcome: Result<T, E>) -> Result<T, MpiError> {
        self.barrier();
        let size = i32::try_from(self.size).unwrap_or(i32::MAX);
        let mine = match &outcome {
            Ok(_) => size,
            Err(_) => self.world.rank(),
        };
        let mut first = size;
        self.world
            .all_reduce_into(&mine, &mut first, mpi::collective::SystemOperation::min());
        let mut failed = 0i32;
        self.world.all_reduce_into(
            &i32::from(outcome.is_err()),
            &mut failed,
            mpi::collective::SystemOperation::sum(),
        );
        if first == size {
            return outcome.map_err(|e| MpiError::Protocol(format!("rank failed unseen: {e}")));
        }
        let mut reason = match &outcome {
            Err(e) if self.world.rank() == first => e.to_string().into_bytes(),
            _ => Vec::new(),
        };
        let root = self.world.process_at_rank(first);
        let mut len = reason.len() as u64;
        root.broadcast_into(&mut len);
        reason.resize(usize::try_from(len).unwrap_or(0), 0);
        root.broadcast_into(&mut reason[..]);
        Err(MpiError::RankFailed {
            rank: usize::try_from(first).unwrap_or(0),
            reason: String::from_utf8_lossy(&reason).into_owned(),
            failed: usize::try_from(failed).unwrap_or(1),
            ranks: self.size,
        })
    }

    /// Runs a distributed job of `chunks` chunks: `run_part` runs a range of
    /// chunk indices on this rank (its node-local pool) and returns what
    /// each of those chunks computed. Collective. Returns on rank 0 the
    /// results of every chunk in chunk order (`None` on the other ranks),
    /// once every rank succeeded.
    ///
    /// With [`Schedule::Static`], `run_part` is called once (not at all for
    /// an empty block); with [`Schedule::Dynamic`], once per batch handed
    /// to this rank, with increasing chunk indices.
    ///
    /// # Errors
    /// [`MpiError::RankFailed`] on every rank if one rank's `run_part`
    /// failed: the lowest failing rank and its error.
    pub fn run<F>(
        &self,
        schedule: Schedule,
        chunks: usize,
        mut run_part: F,
    ) -> Result<Option<ChunkResults>, MpiError>
    where
        F: FnMut(Range<usize>) -> Result<ChunkResults, RunError>,
    {
        let mut mine: Vec<(u64, ChunkResults)> = Vec::new();
        let mut run_range = |r: Range<usize>, mine: &mut Vec<(u64, ChunkResults)>| {
            let start = r.start;
            let len = r.len();
            let res = run_part(r)?;
            if res.len() != len {
                return Err(RunError::Invalid(format!(
                    "a part of {len} chunks returned {} chunk results",
                    res.len()
                )));
            }
            mine.push((start as u64, res));
            Ok(())
        };
        let outcome: Result<(), RunError> =
            if schedule == Schedule::Dynamic && self.multiple && self.size > 1 {
                self.run_dynamic(chunks, |r| run_range(r, &mut mine))
            } else {
                let b = block(chunks, self.size, self.rank);
                if b.is_empty() {
                    Ok(())
                } else {
                    run_range(b, &mut mine)
                }
            };
        self.agree(outcome)?;
        // Rank 0 alone can find the results wanting; all learn it.
        let gathered = self.gather(chunks, mine);
        self.agree(gathered)
    }

    /// The dynamic schedule: batches from rank 0's dispenser until none is
    /// left (see the module docs).
    fn run_dynamic(
        &self,
        chunks: usize,
        mut run_range: impl FnMut(Range<usize>) -> Result<(), RunError>,
    ) -> Result<(), RunError> {
        // A batch: as many chunks as this rank has workers, about a quarter
        // of an even share at most, so that the last batches even out.
        let even = chunks.div_ceil(self.size).div_ceil(4).max(1);
        let batch = self.workers().clamp(1, even);
        if self.is_root() {
            let next = Arc::new(AtomicUsize::new(0));
            let abort = Arc::new(AtomicBool::new(false));
            let others = self.size - 1;
            let (n2, a2) = (Arc::clone(&next), Arc::clone(&abort));
            let server = match std::thread::Builder::new()
                .name("shmproc-mpi-dispenser".into())
                .spawn(move || dispense(chunks, others, &n2, &a2))
            {
                Ok(s) => s,
                Err(e) => {
                    // The others have asked already: answer every one with
                    // "nothing left" here, then fail.
                    abort.store(true, Ordering::SeqCst);
                    dispense(chunks, others, &next, &abort);
                    return Err(RunError::Invalid(format!(
                        "cannot start the chunk dispenser: {e}"
                    )));
                }
            };
            let mut result = Ok(());
            loop {
                if abort.load(Ordering::SeqCst) {
                    break;
                }
                let start = next.fetch_add(batch, Ordering::SeqCst);
                if start >= chunks {
                    break;
                }
                if let Err(e) = run_range(start..(start + batch).min(chunks)) {
                    abort.store(true, Ordering::SeqCst);
                    result = Err(e);
                    break;
                }
            }
            let served = server.join();
            if served.is_err() && result.is_ok() {
                result = Err(RunError::Invalid("the chunk dispenser panicked".into()));
            }
            return result;
        }
        // The next batch is asked for before this one runs, so that the
        // answer is there when it is needed.
        let root = self.world.process_at_rank(0);
        root.send_with_tag(&[ASK_MORE, batch as u64][..], TAG_ASK);
        loop {
            let mut grant = [0u64; 2];
            wait_receive(&self.world, 0, TAG_GRANT, &mut grant);
            let (start, end) = (grant[0] as usize, grant[1] as usize);
            if start >= end {
                // Rank 0 counts this rank as finished; nothing is pending.
                return Ok(());
            }
            root.send_with_tag(&[ASK_MORE, batch as u64][..], TAG_ASK);
            if let Err(e) = run_range(start..end) {
                // The pending request's answer first: an empty one means
                // rank 0 already counts this rank as finished.
                let mut pending = [0u64; 2];
                wait_receive(&self.world, 0, TAG_GRANT, &mut pending);
                if pending[0] < pending[1] {
                    root.send_with_tag(&[ASK_ABORT, 0][..], TAG_ASK);
                    let mut last = [0u64; 2];
                    wait_receive(&self.world, 0, TAG_GRANT, &mut last);
                }
                return Err(e);
            }
        }
    }

    /// Sends this rank's results to rank 0, which puts every rank's in
    /// chunk order and checks that they cover `chunks` chunks exactly once.
    fn gather(
        &self,
        chunks: usize,
        mine: Vec<(u64, ChunkResults)>,
    ) -> Result<Option<ChunkResults>, MpiError> {
        if !self.is_root() {
            // Something is sent whatever happens: rank 0 waits for it (an
            // empty message does not decode, which rank 0 reports).
            let encoded = postcard::to_stdvec(&mine)
                .map_err(|e| MpiError::Protocol(format!("cannot encode the results: {e}")));
            self.world
                .process_at_rank(0)
                .send_with_tag(encoded.as_deref().unwrap_or_default(), TAG_RESULTS);
            return encoded.map(|_| None);
        }
        let mut parts = mine;
        let mut undecoded = None;
        for r in 1..self.size {
            let rank = i32::try_from(r).unwrap_or(i32::MAX);
            let bytes = receive_bytes(&self.world, rank, TAG_RESULTS);
            match postcard::from_bytes::<Vec<(u64, ChunkResults)>>(&bytes) {
                Ok(theirs) => parts.extend(theirs),
                Err(e) => {
                    undecoded.get_or_insert_with(|| {
                        MpiError::Protocol(format!("the results of rank {r} do not decode: {e}"))
                    });
                }
            }
        }
        if let Some(e) = undecoded {
            return Err(e);
        }
        parts.sort_by_key(|(start, _)| *start);
        let mut all: Option<ChunkResults> = None;
        let mut expect = 0u64;
        for (start, res) in parts {
            if start != expect {
                return Err(MpiError::Protocol(format!(
                    "chunk {expect} is missing or came twice (the next part starts at {start})"
                )));
            }
            expect += res.len() as u64;
            match &mut all {
                None => all = Some(res),
                Some(a) => a
                    .extend(res)
                    .map_err(|e| MpiError::Protocol(e.to_string()))?,
            }
        }
        if expect != chunks as u64 {
            return Err(MpiError::Protocol(format!(
                "{expect} chunk results for {chunks} chunks"
            )));
        }
        Ok(Some(all.unwrap_or(ChunkResults {
            checksums: Vec::new(),
            partials: None,
        })))
    }
}

/// Rank 0's dispenser thread: answers the other ranks' requests until each
/// has been told that nothing is left. Polls with a sleep (a blocking
/// receive would spin a CPU in MPI's progress loop).
fn dispense(chunks: usize, others: usize, next: &AtomicUsize, abort: &AtomicBool) {
    let world = SimpleCommunicator::world();
    let mut finished = 0;
    // The pause between polls doubles while nobody asks, up to IDLE_POLL:
    // the ranks ask for their next batch ahead, so a slow answer costs
    // nothing, and a rank that polls less leaves more CPU to the workers.
    let mut pause = POLL;
    while finished < others {
        let Some(status) = world.any_process().immediate_probe_with_tag(TAG_ASK) else {
            std::thread::sleep(pause);
            pause = (pause * 2).min(IDLE_POLL);
            continue;
        };
        pause = POLL;
        let from = status.source_rank();
        let (ask, _) = world
            .process_at_rank(from)
            .receive_vec_with_tag::<u64>(TAG_ASK);
        let want = ask.get(1).copied().unwrap_or(1).max(1) as usize;
        if ask.first() == Some(&ASK_ABORT) {
            abort.store(true, Ordering::SeqCst);
        }
        let start = if abort.load(Ordering::SeqCst) {
            chunks
        } else {
            next.fetch_add(want, Ordering::SeqCst).min(chunks)
        };
        let end = (start + want).min(chunks);
        if start >= end {
            finished += 1;
        }
        world
            .process_at_rank(from)
            .send_with_tag(&[start as u64, end as u64][..], TAG_GRANT);
    }
}

/// Waits until a message of `tag` from `from` is there, polling with a
/// sleep (doubling up to [`IDLE_POLL`]) instead of spinning in MPI's
/// progress loop.
fn wait_message(world: &SimpleCommunicator, from: i32, tag: i32) {
    let mut pause = POLL;
    while world
        .process_at_rank(from)
        .immediate_probe_with_tag(tag)
        .is_none()
    {
        std::thread::sleep(pause);
        pause = (pause * 2).min(IDLE_POLL);
    }
}

/// The bytes of the next message of `tag` from `from` (waiting as
/// [`wait_message`] does).
pub(crate) fn receive_bytes(world: &SimpleCommunicator, from: i32, tag: i32) -> Vec<u8> {
    wait_message(world, from, tag);
    world
        .process_at_rank(from)
        .receive_vec_with_tag::<u8>(tag)
        .0
}

/// Receives the next message of `tag` from `from` into `buf` (waiting as
/// [`wait_message`] does).
fn wait_receive(world: &SimpleCommunicator, from: i32, tag: i32, buf: &mut [u64]) {
    wait_message(world, from, tag);
    world.process_at_rank(from).receive_into_with_tag(buf, tag);
}

/// What [`Cluster::make_room`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    /// The rank may run on this many CPUs, enough for its workers.
    Enough {
        /// CPUs in the rank's affinity mask.
        cpus: usize,
    },
    /// `mpirun` had bound the rank by default; it now runs on every CPU.
    Widened {
        /// CPUs it was bound to.
        from: usize,
        /// CPUs it may run on now.
        to: usize,
    },
    /// The rank is bound (as asked, or it could not be widened) to fewer
    /// CPUs than it has workers.
    Narrow {
        /// CPUs in the rank's affinity mask.
        cpus: usize,
    },
}

fn cpus_now() -> usize {
    shmproc::cpu_count()
}

/// Sets this process's affinity to every CPU (the kernel keeps those that
/// are online and allowed by the cpuset). Whether it succeeded.
#[allow(unsafe_code)] // sched_setaffinity(2)
fn unbind() -> bool {
    // SAFETY: cpu_set_t is plain bits; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for cpu in 0..libc::CPU_SETSIZE as usize {
        // SAFETY: `cpu` is below CPU_SETSIZE, the set's capacity.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: `set` is a valid cpu_set_t of the size passed; pid 0 is the
    // calling thread, and threads started later (the pool's, its workers)
    // inherit its mask.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0 }
}

/// Block `rank` of `ranks` equal blocks of `0..chunks` (the first blocks one
/// longer when it does not divide).
///
/// ```
/// use shmproc_batch::mpi::block;
/// assert_eq!([block(10, 3, 0), block(10, 3, 1), block(10, 3, 2)], [0..4, 4..7, 7..10]);
/// assert_eq!(block(2, 3, 2), 2..2);
/// ```
pub fn block(chunks: usize, ranks: usize, rank: usize) -> Range<usize> {
    let ranks = ranks.max(1);
    let (base, extra) = (chunks / ranks, chunks % ranks);
    let start = rank * base + rank.min(extra);
    let len = base + usize::from(rank < extra);
    start.min(chunks)..(start + len).min(chunks)
}

/// Share `index` of `cpus` divided among `parts`: at least 1.
fn share_of(cpus: usize, parts: usize, index: usize) -> usize {
    let parts = parts.max(1);
    (cpus / parts + usize::from(index < cpus % parts)).max(1)
}

/// CPUs of this node: online CPUs within the cgroup's quota (not this
/// rank's affinity mask, which `mpirun` may have narrowed to one core).
fn node_cpus() -> usize {
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online")
        .ok()
        .and_then(|t| count_cpu_list(&t))
        .unwrap_or_else(shmproc::cpu_count);
    online
        .min(shmproc::cpu_quota().unwrap_or(usize::MAX))
        .max(1)
}

/// The number of CPUs in a kernel CPU list such as `0-3,8,10-11`.
fn count_cpu_list(text: &str) -> Option<usize> {
    let mut n = 0;
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        n += match part.split_once('-') {
            Some((a, b)) => {
                b.parse::<usize>()
                    .ok()?
                    .checked_sub(a.parse::<usize>().ok()?)?
                    + 1
            }
            None => part.parse::<usize>().map(|_| 1).ok()?,
        };
    }
    (n > 0).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_cover_every_chunk_once() {
        for chunks in 0..40 {
            for ranks in 1..6 {
                let mut next = 0;
                for r in 0..ranks {
                    let b = block(chunks, ranks, r);
                    assert_eq!(b.start, next);
                    assert!(b.len() <= chunks.div_ceil(ranks));
                    next = b.end;
                }
                assert_eq!(next, chunks);
            }
        }
    }

    #[test]
    fn cpus_are_divided_among_the_ranks_of_a_node() {
        assert_eq!(
            (0..2).map(|i| share_of(2, 2, i)).collect::<Vec<_>>(),
            [1, 1]
        );
        assert_eq!(
            (0..3).map(|i| share_of(2, 3, i)).collect::<Vec<_>>(),
            [1, 1, 1]
        );
        assert_eq!(
            (0..3).map(|i| share_of(8, 3, i)).collect::<Vec<_>>(),
            [3, 3, 2]
        );
        assert_eq!(share_of(2, 1, 0), 2);
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(count_cpu_list("0-1\n"), Some(2));
        assert_eq!(count_cpu_list("0-3,8,10-11"), Some(7));
        assert_eq!(count_cpu_list("garbage"), None);
    }

    #[test]
    fn schedules_parse() {
        assert_eq!("static".parse::<Schedule>(), Ok(Schedule::Static));
        assert_eq!("dynamic".parse::<Schedule>(), Ok(Schedule::Dynamic));
        assert!("round-robin".parse::<Schedule>().is_err());
    }
}
