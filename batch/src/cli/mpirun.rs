//! `mpirun -np R shmproc run KERNEL ...` (feature `mpi`): the same run
//! shared out across MPI ranks, each on a node-local pool
//! ([`crate::mpi`]).
//!
//! Every rank reads the command line and the inputs' headers, runs its share
//! of the chunks and takes part in every collective step, whatever happened
//! on it; a failure anywhere becomes the same error on every rank (rank 0
//! prints it). The steps:
//!
//! 1. **Setup**: each rank finds the inputs' shape from their headers (it
//!    maps no data yet); rank 0 creates the output's temporary file and
//!    tells the others its path; all agree that this worked.
//! 2. **Run**: each part of chunks maps only its bytes of the inputs and
//!    runs on the rank's pool. Its output elements go into the temporary
//!    file (on a filesystem that every rank sees): on one node, the workers
//!    write them in place through a mapping of the part; across nodes, into
//!    a shared buffer that the rank then writes at their offset (`pwrite`).
//!    Text output goes to rank 0 instead, which writes the text.
//! 3. **Combine**: rank 0 gathers every chunk's checksum and partial
//!    accumulator and combines them in chunk order, bit for bit as one
//!    node does.
//! 4. **Finish**: every rank flushes its writes (`fdatasync`); only when
//!    every rank succeeded does rank 0 rename the temporary file into place,
//!    and all agree on that too. Until then every
//!    rank knows the temporary file and its marker: a rank stopped by a
//!    signal (mpirun sends SIGTERM to every rank when one dies) removes both.

use super::files::{
    check_output, map_output_part, probe, start_binary_output, Format, Loaded, Probed, Sink,
};
use super::run::{check_args, json_values, print_summary, text_values, Summary, DEFAULT_N};
use super::tempout::TempOutput;
use super::{CliError, RunArgs};
use crate::backend::{default_chunk, run_chunks, ChunkResults, Job, RunOptions, SharedValues};
use crate::mpi::{Binding, Cluster, MpiError, Schedule};
use crate::Registry;
use mpi::traits::*;
use shmproc_kernels::{Dtype, Kind, Layout, Slice, Values};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

/// Tag of a rank's text output parts (to rank 0).
const TAG_TEXT: i32 = 0x5311;

/// The schedule without `--schedule` (measured in docs/SCALING.md).
const DEFAULT_SCHEDULE: Schedule = Schedule::Dynamic;

impl From<MpiError> for CliError {
    fn from(e: MpiError) -> Self {
        CliError::new(e.to_string())
    }
}

/// A map kernel's output file, which every rank writes its part of.
struct SharedFile {
    /// The temporary file (rank 0 owns it: removed unless renamed).
    tmp: Option<TempOutput>,
    /// This rank's descriptor of it.
    file: File,
    /// Its path, and its marker's, which this rank removes if stopped.
    paths: Vec<PathBuf>,
    /// Bytes before the first element (the `.npy` header).
    header: u64,
    dest: PathBuf,
    /// Every rank is on this node: each maps its part of the file and its
    /// workers write it in place (one page cache). Across nodes a rank
    /// computes its part in shared memory and writes it with `pwrite`
    /// (pages at the ends of parts are shared, and a network filesystem does
    /// not keep two nodes' mappings of one page coherent).
    in_place: bool,
}

/// Where a run's output goes.
enum Output {
    /// Nowhere (a map run for its checksum).
    None,
    /// A reduction's accumulator (rank 0 holds the sink).
    Reduce(Option<Sink>),
    /// A binary map output in a file every rank writes.
    File(SharedFile),
    /// A text map output: parts gathered by rank 0, which holds the sink.
    Text {
        sink: Option<Sink>,
        parts: Mutex<Vec<(u64, Values)>>,
    },
}

/// The bytes of `s` (little-endian: binary formats are checked to be).
fn bytes_of(s: Slice<'_>) -> &[u8] {
    match s {
        Slice::Bool(v) | Slice::U8(v) => v,
        Slice::I8(v) => bytemuck::cast_slice(v),
        Slice::I16(v) => bytemuck::cast_slice(v),
        Slice::I32(v) => bytemuck::cast_slice(v),
        Slice::I64(v) => bytemuck::cast_slice(v),
        Slice::U16(v) => bytemuck::cast_slice(v),
        Slice::U32(v) => bytemuck::cast_slice(v),
        Slice::U64(v) => bytemuck::cast_slice(v),
        Slice::F32(v) => bytemuck::cast_slice(v),
        Slice::F64(v) => bytemuck::cast_slice(v),
    }
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> CliError {
    CliError::new(format!("{what} {}: {e}", path.display()))
}

/// Rank 0: the temporary output file of `len` elements of `dtype` (shape
/// `shape`) beside `dest`, sized, with its header written.
fn create_shared(
    dest: &Path,
    format: Format,
    dtype: Dtype,
    shape: &[usize],
) -> Result<(TempOutput, u64), CliError> {
    check_output(dest)?;
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let tmp =
        TempOutput::create_named(dir).map_err(|e| io_err("cannot create the output in", dir, e))?;
    let header = start_binary_output(tmp.file(), dest, format, dtype, shape)?;
    Ok((tmp, header as u64))
}

/// Broadcasts rank 0's `bytes` (its value elsewhere is ignored).
fn broadcast_bytes(cluster: &Cluster, bytes: &mut Vec<u8>) {
    let root = cluster.world().process_at_rank(0);
    let mut len = bytes.len() as u64;
    root.broadcast_into(&mut len);
    bytes.resize(usize::try_from(len).unwrap_or(0), 0);
    root.broadcast_into(&mut bytes[..]);
}

/// The output of a run, set up on every rank (collective).
fn setup_output(
    cluster: &Cluster,
    args: &RunArgs,
    reduce: bool,
    dtype: Dtype,
    shape: &[usize],
) -> Result<Output, CliError> {
    let Some(dest) = &args.output else {
        if reduce {
            let sink = cluster
                .is_root()
                .then(|| Sink::create(None, None, dtype, shape))
                .transpose();
            return Ok(Output::Reduce(cluster.agree(sink)?));
        }
        return Ok(Output::None);
    };
    let format = args.format.unwrap_or_else(|| Format::from_path(dest));
    if reduce || format == Format::Text {
        let sink = cluster
            .is_root()
            .then(|| Sink::create(Some(dest), Some(format), dtype, shape))
            .transpose();
        let sink = cluster.agree(sink)?;
        return Ok(if reduce {
            Output::Reduce(sink)
        } else {
            Output::Text {
                sink,
                parts: Mutex::new(Vec::new()),
            }
        });
    }
    let created = cluster
        .is_root()
        .then(|| create_shared(dest, format, dtype, shape))
        .transpose();
    let (tmp, header) = match cluster.agree(created)? {
        Some((t, h)) => (Some(t), h),
        None => (None, 0),
    };
    let mut path = tmp
        .as_ref()
        .map(|t| t.path().into_os_string().into_encoded_bytes())
        .unwrap_or_default();
    broadcast_bytes(cluster, &mut path);
    let mut head = header.to_le_bytes().to_vec();
    broadcast_bytes(cluster, &mut head);
    let header = u64::from_le_bytes(head.try_into().unwrap_or([0; 8]));
    // Bytes rank 0 took from its path.
    let path = PathBuf::from(String::from_utf8_lossy(&path).into_owned());
    let opened = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(|e| io_err("cannot open the temporary output", &path, e));
    let file = cluster.agree(opened)?;
    let mut paths = vec![path.clone()];
    paths.extend(TempOutput::marker_of(&path));
    if tmp.is_none() {
        // Rank 0 registered them when it created them.
        for p in &paths {
            crate::signal::remove_on_stop(p.clone());
        }
    }
    Ok(Output::File(SharedFile {
        tmp,
        file,
        paths,
        header,
        dest: dest.clone(),
        in_place: cluster.nodes() == 1,
    }))
}

/// `shmproc run` on every rank of an MPI job (see the module docs).
pub(super) fn run(args: &RunArgs, kernels: &Registry, cluster: &Cluster) -> Result<(), CliError> {
    let kr = kernels.lookup(&args.kernel)?;
    let kernel = kr.kernel();
    let sig = kernel.signature();
    let params = check_args(args, kr)?;
    if args.progress {
        return Err(CliError::usage(
            "--progress is not available in an MPI run (ranks report nothing until the end)",
        ));
    }
    let schedule = args.schedule.unwrap_or(DEFAULT_SCHEDULE);
    let schedule = if schedule == Schedule::Dynamic && !cluster.supports_dynamic() {
        if cluster.is_root() {
            eprintln!(
                "shmproc: warning: MPI does not provide MPI_THREAD_MULTIPLE; the schedule is static"
            );
        }
        Schedule::Static
    } else {
        schedule
    };
    let workers = args.workers.unwrap_or_else(|| cluster.workers());
    let binding = cluster.make_room(workers);

    // 1. Setup: the inputs' headers (no data is mapped yet).
    let probed = (|| -> Result<(Option<Probed>, Option<Probed>), CliError> {
        let Some(path) = &args.input else {
            return Ok((None, None));
        };
        let x = probe(path, args.input_format, args.dtype, kernel)?;
        let y = match &args.input2 {
            Some(p) => Some(probe(
                p,
                args.input_format,
                args.dtype.or(Some(x.dtype)),
                kernel,
            )?),
            None => None,
        };
        if !sig.accepts(x.dtype) {
            return Err(CliError::new(format!(
                "{}: {} (use --dtype to read the file as another type)",
                path.display(),
                shmproc_kernels::check_inputs(kernel, Some(x.dtype), sig.inputs)
                    .err()
                    .map_or_else(String::new, |e| e.to_string())
            )));
        }
        if let Some(y) = &y {
            if y.len() != x.len() || y.dtype != x.dtype {
                return Err(CliError::new(format!(
                    "--input has {} {} elements but --input2 has {} {}",
                    x.len(),
                    x.dtype,
                    y.len(),
                    y.dtype
                )));
            }
        }
        Ok((Some(x), y))
    })();
    let (x, y) = cluster.agree(probed)?;
    let iota = match &x {
        None if sig.inputs > 0 => Some(
            args.dtype
                .unwrap_or_else(|| super::files::raw_default(kernel)),
        ),
        _ => None,
    };
    let in_dtype = x.as_ref().map(|x| x.dtype).or(iota);
    let in_shape = match &x {
        Some(x) => x.shape.clone(),
        None if sig.inputs == 0 => {
            vec![args.n.or(kernel.natural_len(&params)).unwrap_or(DEFAULT_N)]
        }
        None => vec![args.n.unwrap_or(DEFAULT_N)],
    };
    let elements: usize = in_shape.iter().product();
    let row_len = match sig.layout {
        Layout::Rows => in_shape.last().copied().unwrap_or(1).max(1),
        _ => 1,
    };
    let n = elements / row_len;
    let chunk = args
        .chunk
        .unwrap_or_else(|| (default_chunk(elements) / row_len).max(1));
    let chunks = n.div_ceil(chunk);
    // Every rank must have found the same inputs (a file changed between
    // the ranks' probes, or nodes that see different files at one path,
    // would share out different chunks).
    let seen = serde_json::json!([in_shape, in_dtype.map(Dtype::name), n, chunk]).to_string();
    let fingerprint = seen.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let (mut low, mut high) = (0u64, 0u64);
    let world = cluster.world();
    world.all_reduce_into(
        &fingerprint,
        &mut low,
        mpi::collective::SystemOperation::min(),
    );
    world.all_reduce_into(
        &fingerprint,
        &mut high,
        mpi::collective::SystemOperation::max(),
    );
    let same = if low == high {
        Ok(())
    } else {
        Err(CliError::new(format!(
            "the ranks found different inputs (this rank: shape {in_shape:?}); \
             every rank must see the same files"
        )))
    };
    cluster.agree(same)?;
    if n > kernel.max_len(&params) {
        return Err(CliError::new(format!(
            "kernel {} covers at most {} indices, not {n}",
            kernel.name(),
            kernel.max_len(&params)
        )));
    }

    let reduce = sig.kind == Kind::Reduce;
    let out_dtype = kernel.output_dtype(in_dtype);
    let out_shape = if reduce {
        vec![kernel.acc_len(&params)]
    } else {
        in_shape.clone()
    };
    let mut output = setup_output(cluster, args, reduce, out_dtype, &out_shape)?;
    let want_elements = matches!(output, Output::File(_) | Output::Text { .. });

    let mut total_workers = 0u64;
    cluster.world().all_reduce_into(
        &(workers as u64),
        &mut total_workers,
        mpi::collective::SystemOperation::sum(),
    );
    let narrow = u8::from(matches!(binding, Binding::Narrow { .. }));
    let mut any_narrow = 0u8;
    cluster.world().all_reduce_into(
        &narrow,
        &mut any_narrow,
        mpi::collective::SystemOperation::max(),
    );
    if any_narrow > 0 && cluster.is_root() && !args.quiet {
        eprintln!(
            "shmproc: warning: a rank is bound to fewer CPUs than its workers \
             (mpirun --bind-to ...); its workers share them: use --bind-to none"
        );
    }

    // 2. Run. Every rank starts together, so the elapsed time is the run's.
    cluster.barrier();
    let started = Instant::now();
    let opts = RunOptions {
        workers,
        chunk: Some(chunk),
        progress: None,
    };
    let output_ref = &output;
    let run_part = |cr: std::ops::Range<usize>| -> Result<ChunkResults, crate::backend::RunError> {
        let ir = cr.start * chunk..(cr.end * chunk).min(n);
        let er = ir.start * row_len..ir.end * row_len;
        let part = |p: &Option<Probed>| -> Result<Option<Loaded>, crate::backend::RunError> {
            p.as_ref()
                .map(|p| p.part(er.clone()))
                .transpose()
                .map_err(|e| crate::backend::RunError::Invalid(e.message))
        };
        let xl = part(&x)?;
        let yl = part(&y)?;
        let xs = xl.as_ref().map(Loaded::as_slice);
        let ys = match (sig.inputs, &yl, xs) {
            (2, Some(y), _) => Some(y.as_slice()),
            (2, None, xs) => xs,
            _ => None,
        };
        let job = Job {
            kernel: kr,
            params: params.clone(),
            n: ir.len(),
            first: ir.start,
            row_len,
            x: xs,
            y: ys,
            iota,
        };
        let esize = out_dtype.size() as u64;
        let mut out = match output_ref {
            Output::File(f) if f.in_place && !er.is_empty() => Some(
                map_output_part(
                    &f.paths[0],
                    f.header + er.start as u64 * esize,
                    er.len(),
                    out_dtype,
                )
                .map_err(|e| crate::backend::RunError::Invalid(e.message))?,
            ),
            _ if want_elements => Some(SharedValues::zeros(out_dtype, er.len())?),
            _ => None,
        };
        let res = run_chunks(
            args.backend,
            &job,
            out.as_mut().map(SharedValues::as_slice_mut).transpose()?,
            &opts,
        )?;
        for l in [&xl, &yl].into_iter().flatten() {
            l.check_intact()
                .map_err(|e| crate::backend::RunError::Invalid(e.message))?;
        }
        match (output_ref, &out) {
            (Output::File(f), Some(values)) if !f.in_place => {
                let at = f.header + er.start as u64 * esize;
                let write = f.file.write_all_at(bytes_of(values.as_slice()), at);
                write.map_err(|e| {
                    crate::backend::RunError::Invalid(format!(
                        "cannot write the output {}: {e}",
                        f.dest.display()
                    ))
                })?;
            }
            (Output::Text { parts, .. }, Some(values)) => parts
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((er.start as u64, values.to_values())),
            _ => {}
        }
        Ok(res)
    };
    let all = cluster.run(schedule, chunks, run_part)?;

    // 3. Combine (rank 0), text parts gathered.
    if let Output::Text { sink, parts } = &mut output {
        let mine = std::mem::take(parts.get_mut().unwrap_or_else(|p| p.into_inner()));
        let gathered = gather_text(cluster, mine, sink.as_mut());
        cluster.agree(gathered)?;
    }
    // Rank 0 alone combines; whether that worked is agreed like the rest.
    let combined = match (&all, &mut output) {
        (Some(all), Output::Reduce(Some(sink))) => sink
            .output()
            .and_then(|o| all.combine_into(kernel, o).map_err(CliError::from))
            .map(|sum| {
                Some((
                    sum,
                    Some((json_values(sink.values()), text_values(sink.values()))),
                ))
            }),
        (Some(all), _) => Ok(Some((all.checksum(), None))),
        (None, _) => Ok(None),
    };
    let summary = cluster.agree(combined)?;
    let elapsed = started.elapsed().as_secs_f64();

    // 4. Finish: rank 0 puts the output in place; every rank learns whether
    // that worked.
    let finished = match output {
        Output::File(f) => {
            // Every rank's writes reach the disk before rank 0 renames.
            let synced = f.file.sync_data().map_err(|e| {
                CliError::new(format!("cannot write the output {}: {e}", f.dest.display()))
            });
            // Every rank takes the same branch: agree's answer is the same.
            let done = match cluster.agree(synced) {
                Ok(()) => {
                    let renamed = match f.tmp {
                        Some(tmp) => finish_shared(tmp, &f.dest),
                        None => Ok(()),
                    };
                    cluster.agree(renamed)
                }
                // Rank 0 drops the temporary file: it is removed.
                Err(e) => Err(e),
            };
            for p in &f.paths {
                crate::signal::keep_on_stop(p);
            }
            done
        }
        Output::Reduce(Some(sink))
        | Output::Text {
            sink: Some(sink), ..
        } => cluster.agree(sink.finish()),
        Output::Reduce(None) | Output::Text { sink: None, .. } | Output::None => {
            cluster.agree(Ok::<(), CliError>(()))
        }
    };
    finished?;
    let Some((sum, result)) = summary else {
        return Ok(());
    };
    let mut more = serde_json::Map::new();
    more.insert("ranks".into(), cluster.size().into());
    more.insert("nodes".into(), cluster.nodes().into());
    more.insert("schedule".into(), schedule.name().into());
    more.insert("workers_total".into(), total_workers.into());
    let line = format!(
        "{} on {} node{} ({schedule} schedule)",
        cluster.size(),
        cluster.nodes(),
        if cluster.nodes() == 1 { "" } else { "s" }
    );
    print_summary(
        args,
        &Summary {
            kernel: kernel.name(),
            items: elements,
            in_dtype,
            in_shape: &in_shape,
            out_dtype,
            reduce,
            workers_json: serde_json::json!(workers),
            workers_text: format!("{workers} per rank, {total_workers} in all"),
            placement: Some((more, line)),
            elapsed,
            checksum: sum,
            result,
        },
    );
    Ok(())
}

/// Rank 0: every rank's writes are on disk (each synced, then all agreed);
/// the file becomes the output.
fn finish_shared(tmp: TempOutput, dest: &Path) -> Result<(), CliError> {
    use std::os::unix::fs::PermissionsExt;
    tmp.file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .map_err(|e| io_err("cannot set permissions of", dest, e))?;
    tmp.file()
        .sync_all()
        .map_err(|e| io_err("cannot write", dest, e))?;
    check_output(dest)?;
    tmp.persist(dest)
        .map_err(|e| io_err("cannot put the output in place at", dest, e))
}

/// Sends this rank's text output parts to rank 0, which copies every
/// rank's into its sink. Collective.
fn gather_text(
    cluster: &Cluster,
    mine: Vec<(u64, Values)>,
    sink: Option<&mut Sink>,
) -> Result<(), CliError> {
    let world = cluster.world();
    let Some(sink) = sink else {
        // Something is sent whatever happens: rank 0 waits for it.
        let encoded = postcard::to_stdvec(&mine)
            .map_err(|e| CliError::new(format!("cannot encode the output: {e}")));
        let bytes = encoded.as_deref().unwrap_or_default();
        world.process_at_rank(0).send_with_tag(bytes, TAG_TEXT);
        return encoded.map(drop);
    };
    let mut parts = mine;
    let mut failed = None;
    for r in 1..cluster.size() {
        let rank = i32::try_from(r).unwrap_or(i32::MAX);
        let bytes = crate::mpi::receive_bytes(world, rank, TAG_TEXT);
        match postcard::from_bytes::<Vec<(u64, Values)>>(&bytes) {
            Ok(theirs) => parts.extend(theirs),
            Err(e) => {
                failed.get_or_insert_with(|| {
                    CliError::new(format!("the output of rank {r} does not decode: {e}"))
                });
            }
        }
    }
    if let Some(e) = failed {
        return Err(e);
    }
    let mut out = sink.output()?;
    for (start, v) in parts {
        let start = start as usize;
        out.reborrow()
            .into_range(start..start + v.len())
            .copy_from(v.as_slice())
            .map_err(CliError::new)?;
    }
    Ok(())
}
