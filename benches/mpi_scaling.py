#!/usr/bin/env python3
"""Processes vs pure MPI vs hybrid on one node, and static vs dynamic schedules.

Runs every configuration in turn (A B C ... A B C ...), `--repeat` times, and
prints the median of the elapsed time each run reports (from the start of
the run to the result on rank 0), with its ratio to the plain run of the
same kernel. Every configuration's checksum must equal the plain run's.

    cargo build --release -p shmproc-batch --features mpi
    python3 benches/mpi_scaling.py --repeat 5

Used for docs/SCALING.md.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "shmproc")
MPIRUN = ["mpirun", "--allow-run-as-root", "--oversubscribe"]


def configs(cpus):
    """(label, launcher prefix, extra args) for one node of `cpus` CPUs."""
    return [
        ("processes: 1 process, %d workers" % cpus, [], ["--workers", str(cpus)]),
        ("hybrid: 1 rank x %d workers" % cpus, MPIRUN + ["-np", "1"], ["--workers", str(cpus)]),
        ("pure MPI: %d ranks x 1 worker" % cpus, MPIRUN + ["-np", str(cpus)], ["--workers", "1"]),
    ]


def schedules(cpus):
    out = []
    for ranks in (cpus, cpus + 1):
        for sched in ("static", "dynamic"):
            out.append((
                "%d ranks x 1 worker, %s" % (ranks, sched),
                MPIRUN + ["-np", str(ranks)],
                ["--workers", "1", "--schedule", sched],
            ))
    return out


def run(prefix, args):
    cmd = prefix + [BIN, "run"] + args + ["--json"]
    p = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if p.returncode != 0:
        sys.exit("failed: %s\n%s" % (" ".join(cmd), p.stderr))
    line = [l for l in p.stdout.splitlines() if l.startswith("{")][-1]
    d = json.loads(line)
    return d["elapsed_s"], d["checksum"]


def table(title, kernel_args, rows, repeat):
    times = {label: [] for label, _, _ in rows}
    sums = {}
    for _ in range(repeat):
        for label, prefix, extra in rows:
            t, c = run(prefix, kernel_args + extra)
            times[label].append(t)
            sums.setdefault(label, set()).add(c)
    base = statistics.median(times[rows[0][0]])
    ref = sums[rows[0][0]]
    print("\n%s: `shmproc run %s`\n" % (title, " ".join(kernel_args)))
    print("| configuration | median elapsed (s) | min | max | vs first row |")
    print("|---|---|---|---|---|")
    for label, _, _ in rows:
        m = statistics.median(times[label])
        print("| %s | %.4f | %.4f | %.4f | %.3f |" % (
            label, m, min(times[label]), max(times[label]), m / base))
        if sums[label] != ref:
            sys.exit("checksums differ: %s %s vs %s" % (label, sums[label], ref))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--cpus", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    ap.add_argument("--out-dir", default="/tmp", help="where the output test file goes")
    ap.add_argument("--bin", help="the shmproc binary (default: target/release/shmproc)")
    a = ap.parse_args()
    global BIN
    if a.bin:
        BIN = os.path.abspath(a.bin)
    n = "10000000" if a.quick else "1000000000"
    table("power", ["power", "--times", "4", "--n", n], configs(a.cpus), a.repeat)
    table("sum", ["sum", "--dtype", "f64", "--n", n], configs(a.cpus), a.repeat)
    size = ["width=400", "height=300"] if a.quick else ["width=4096", "height=2048"]
    mandel = ["mandelbrot", "--param", size[0], "--param", size[1]]
    first = [("1 process, %d workers" % a.cpus, [], ["--workers", str(a.cpus)])]
    table("mandelbrot (uneven)", mandel, first + schedules(a.cpus), a.repeat)
    # The cost of handing chunks out: many small chunks of a cheap kernel.
    many = ["power", "--n", "200000" if a.quick else "4000000", "--chunk", "2048"]
    table("handing out 1954 chunks" if not a.quick else "handing out chunks",
          many, first + schedules(a.cpus)[:2], a.repeat)
    # Output writes: each rank writes its part of the file.
    out = os.path.join(a.out_dir, "mpi_scaling_out.npy")
    write = ["power", "--n", "10000000" if a.quick else "100000000", "--output", out]
    table("writing the output (%s)" % a.out_dir, write, configs(a.cpus), a.repeat)
    os.remove(out)


if __name__ == "__main__":
    main()
