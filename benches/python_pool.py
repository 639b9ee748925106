#!/usr/bin/env python3
"""Python's multiprocessing.Pool on the four measures of benches/pool.rs.

1. power (times = 4, wrapping u64) over N u64 in shared memory, 2 workers:
   each task gets a chunk range of two multiprocessing.shared_memory arrays
   (numpy views when numpy is installed, else memoryview and a Python loop).
   One process doing the same, for scale. Items/s.
2. apply_async round trip (submit one trivial task, get): median and p99 in us.
3. 100,000 trivial apply_async submissions, then gather all: tasks/s.
4. Pool(2) start to first result, spawn and fork: median ms.

    python3 benches/python_pool.py [--quick]
"""

import multiprocessing as mp
import statistics
import sys
import time
from multiprocessing import shared_memory


def numpy():
    """numpy if installed, else None (the pure-Python kernel is ~100x slower).

    Imported lazily, so spawned workers (which re-import this module) do not
    pay for it in the start-up measure."""
    try:
        import numpy as np
    except ImportError:
        return None
    return np

TIMES = 4
WORKERS = 2
MASK = (1 << 64) - 1

QUICK = "--quick" in sys.argv
ITEMS = 200_000 if QUICK else 10_000_000
MAP_RUNS = 3 if QUICK else 9
ROUNDS = 200 if QUICK else 2_000
TASKS = 5_000 if QUICK else 100_000
TASK_RUNS = 2 if QUICK else 5
STARTS = 3 if QUICK else 10


def trivial(x):
    return x + 1


def power_chunk(args):
    """Power kernel over [lo, hi) of the shared input, into the shared output."""
    in_name, out_name, n, lo, hi = args
    np = numpy()
    src = shared_memory.SharedMemory(name=in_name)
    dst = shared_memory.SharedMemory(name=out_name)
    try:
        if np is not None:
            x = np.ndarray((n,), dtype=np.uint64, buffer=src.buf)[lo:hi]
            y = np.ndarray((n,), dtype=np.uint64, buffer=dst.buf)[lo:hi]
            np.copyto(y, x)
            for _ in range(TIMES):
                np.multiply(y, y, out=y)  # wraps modulo 2**64
            del x, y
        else:
            x = src.buf.cast("Q")
            y = dst.buf.cast("Q")
            for i in range(lo, hi):
                v = x[i]
                for _ in range(TIMES):
                    v = (v * v) & MASK
                y[i] = v
            x.release()
            y.release()
    finally:
        src.close()
        dst.close()


def power_one(x):
    for _ in range(TIMES):
        x = (x * x) & MASK
    return x


def pct(sorted_values, p):
    i = round((len(sorted_values) - 1) * p)
    return sorted_values[min(i, len(sorted_values) - 1)]


def start_to_first_result(method, runs):
    ctx = mp.get_context(method)
    out = []
    for i in range(runs):
        t = time.perf_counter()
        pool = ctx.Pool(WORKERS)
        r = pool.apply(trivial, (i,))
        out.append((time.perf_counter() - t) * 1e3)
        assert r == i + 1
        pool.close()
        pool.join()
    return out


def map_shared(pool, n):
    size = n * 8
    np = numpy()
    src = shared_memory.SharedMemory(create=True, size=size)
    dst = shared_memory.SharedMemory(create=True, size=size)
    try:
        if np is not None:
            np.ndarray((n,), dtype=np.uint64, buffer=src.buf)[:] = np.arange(n, dtype=np.uint64)
        else:
            v = src.buf.cast("Q")
            for i in range(n):
                v[i] = i
            v.release()
        chunk = -(-n // (4 * WORKERS))
        tasks = [(src.name, dst.name, n, lo, min(lo + chunk, n)) for lo in range(0, n, chunk)]
        times = []
        for run in range(MAP_RUNS + 1):
            t = time.perf_counter()
            pool.map(power_chunk, tasks, chunksize=1)
            if run > 0:
                times.append(time.perf_counter() - t)
        # Check a sample of the results.
        out = dst.buf.cast("Q")
        for i in list(range(0, n, max(1, n // 1000))) + [n - 1]:
            assert out[i] == power_one(i), i
        out.release()
        # One process, same code, for scale.
        seq = []
        for run in range(min(MAP_RUNS, 3) + 1):
            t = time.perf_counter()
            power_chunk((src.name, dst.name, n, 0, n))
            if run > 0:
                seq.append(time.perf_counter() - t)
        return n / statistics.median(times), n / statistics.median(seq)
    finally:
        src.close()
        dst.close()
        src.unlink()
        dst.unlink()


def main():
    np = numpy()
    print(
        "Python %s multiprocessing pool bench%s: %d CPUs, %d workers, %s"
        % (
            sys.version.split()[0],
            " (--quick)" if QUICK else "",
            mp.cpu_count(),
            WORKERS,
            "numpy %s" % np.__version__ if np is not None else "no numpy (pure Python kernel)",
        )
    )
    fork = start_to_first_result("fork", 1 + STARTS)[1:]
    spawn = start_to_first_result("spawn", 1 + STARTS)[1:]

    # The default context on Linux (fork before 3.14, forkserver after).
    with mp.Pool(WORKERS) as pool:
        for i in range(100):
            pool.apply_async(trivial, (i,)).get()
        rt = []
        for i in range(ROUNDS):
            t = time.perf_counter()
            v = pool.apply_async(trivial, (i,)).get()
            rt.append((time.perf_counter() - t) * 1e6)
            assert v == i + 1
        rt.sort()

        tput = []
        for _ in range(TASK_RUNS):
            t = time.perf_counter()
            results = [pool.apply_async(trivial, (i,)) for i in range(TASKS)]
            total = sum(r.get() for r in results)
            tput.append(TASKS / (time.perf_counter() - t))
            assert total == TASKS * (TASKS + 1) // 2

        shm, seq = map_shared(pool, ITEMS)

    rows = [
        ("power over %d u64 in shared memory, 2 workers (items/s)" % ITEMS, "%.3e" % shm),
        ("one process, for scale (items/s)", "%.3e" % seq),
        ("apply_async round trip, %d rounds: median (us)" % ROUNDS, "%.1f" % pct(rt, 0.5)),
        ("apply_async round trip: p99 (us)", "%.1f" % pct(rt, 0.99)),
        ("%d apply_async then gather (tasks/s)" % TASKS, "%.0f" % statistics.median(tput)),
        ("Pool(2) start to first result, spawn (ms, %d runs)" % STARTS, "%.2f" % statistics.median(spawn)),
        ("Pool(2) start to first result, fork (ms, %d runs)" % STARTS, "%.2f" % statistics.median(fork)),
    ]
    print()
    print("%-60s %16s" % ("measure", "result"))
    for name, value in rows:
        print("%-60s %16s" % (name, value))


if __name__ == "__main__":
    main()
