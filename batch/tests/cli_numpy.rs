//! `shmproc run` against numpy: every dtype and n-D shapes written by numpy,
//! run through the binary, and the outputs compared with what numpy computes
//! on the same arrays. Needs python3 with numpy (`python3 -m pip install
//! numpy`; `.ci/run` installs it).

use std::process::Command;

/// The checks, in Python: `sys.argv[1]` is a scratch directory, `argv[2]` the
/// shmproc binary. Prints one line per check; raises on the first mismatch.
const SCRIPT: &str = r#"
import json, math, os, subprocess, sys
import numpy as np

d, exe = sys.argv[1], sys.argv[2]
np.seterr(all="ignore")
rng = np.random.default_rng(7)

def run(*args, ok=True):
    p = subprocess.run([exe, "run", *args], capture_output=True, text=True)
    if ok and p.returncode != 0:
        raise SystemExit(f"{args} failed: {p.stderr}")
    if not ok and p.returncode == 0:
        raise SystemExit(f"{args} succeeded: {p.stdout}")
    return p

def values(dtype, shape):
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return rng.uniform(-2, 2, size=shape).astype(dt)
    if dt.kind == "b":
        return rng.integers(0, 2, size=shape).astype(bool)
    info = np.iinfo(dt)
    return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dt)

INTS = ["i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8"]
FLOATS = ["f4", "f8"]
checks = 0

# power: every numeric dtype, 1-D and 2-D; numpy's x*x wraps for integers.
for dtype in INTS + FLOATS:
    for shape in [(1001,), (3, 50)]:
        a = values(dtype, shape)
        src, out = os.path.join(d, f"p_{dtype}.npy"), os.path.join(d, f"po_{dtype}.npy")
        np.save(src, a)
        for backend in ["processes", "rayon"]:
            run("power", "--input", src, "--output", out, "--param", "times=3",
                "--backend", backend, "--workers", "2", "--chunk", "100", "--quiet")
            got = np.load(out)
            want = a.copy()
            for _ in range(3):
                want = want * want
            assert got.dtype == a.dtype and got.shape == a.shape, (dtype, got.dtype, got.shape)
            assert np.array_equal(got, want, equal_nan=True), (dtype, backend, shape)
            checks += 1

# sum: integer sums accumulate in int64 / uint64 (wrapping), bools count, floats in f64.
for dtype in INTS + FLOATS + ["?"]:
    a = values(dtype, (4099,))
    src = os.path.join(d, f"s_{dtype}.npy")
    np.save(src, a)
    r = json.loads(run("sum", "--input", src, "--json", "--backend", "processes").stdout)
    got = r["result"][0]
    if a.dtype.kind == "b":
        want = int(np.count_nonzero(a))
    elif a.dtype.kind == "i":
        want = int(a.sum(dtype=np.int64))
    elif a.dtype.kind == "u":
        want = int(a.sum(dtype=np.uint64))
    else:
        want = math.fsum(a.astype(np.float64))
        assert abs(got - want) <= 1e-12 * max(1.0, abs(want)), (dtype, got, want)
        want = got
    assert got == want, (dtype, got, want)
    assert r["dtype"] == {"?": "bool"}.get(dtype, r["dtype"])
    checks += 1

# dot of two arrays of one type.
for dtype in ["i4", "u2", "f4", "f8"]:
    a, b = values(dtype, (777,)), values(dtype, (777,))
    pa, pb = os.path.join(d, f"da_{dtype}.npy"), os.path.join(d, f"db_{dtype}.npy")
    np.save(pa, a); np.save(pb, b)
    r = json.loads(run("dot", "--input", pa, "--input2", pb, "--json", "--backend", "rayon").stdout)
    got = r["result"][0]
    if a.dtype.kind in "iu":
        acc = np.int64 if a.dtype.kind == "i" else np.uint64
        want = int(np.dot(a.astype(acc), b.astype(acc)))
        assert got == want, (dtype, got, want)
    else:
        want = math.fsum(a.astype(np.float64) * b.astype(np.float64))
        assert abs(got - want) <= 1e-12 * max(1.0, abs(want)), (dtype, got, want)
    checks += 1

# histogram over integer input: the counts of numpy's histogram (all values
# below hi, so its closed last bin does not matter), nothing under, over, NaN.
a = values("u1", (5000,))
src = os.path.join(d, "h.npy")
np.save(src, a)
r = json.loads(run("histogram", "--input", src, "--param", "lo=0", "--param", "hi=256",
                   "--param", "bins=16", "--json").stdout)
want, _ = np.histogram(a, bins=16, range=(0, 256))
assert r["result"] == list(map(int, want)) + [0, 0, 0], (r["result"], want)
checks += 1

# normalize_rows: a row kernel over 2-D input, shape kept.
for dtype in FLOATS:
    a = values(dtype, (37, 53))
    a[5] = 0
    src, out = os.path.join(d, f"n_{dtype}.npy"), os.path.join(d, f"no_{dtype}.npy")
    np.save(src, a)
    run("normalize_rows", "--input", src, "--output", out, "--chunk", "4", "--backend", "processes",
        "--quiet")
    got = np.load(out)
    norms = np.linalg.norm(a.astype(np.float64), axis=1, keepdims=True)
    want = np.where(norms > 0, a / np.where(norms > 0, norms, 1), 0)
    assert got.dtype == a.dtype and got.shape == a.shape
    tol = 1e-6 if dtype == "f4" else 1e-14
    assert np.allclose(got, want, rtol=tol, atol=tol), dtype
    checks += 1

# Refused with a clear message: Fortran order, big-endian.
f = os.path.join(d, "fortran.npy")
np.save(f, np.asfortranarray(values("f8", (3, 4))))
e = run("power", "--input", f, ok=False).stderr
assert "fortran_order" in e and "ascontiguousarray" in e, e
b = os.path.join(d, "big.npy")
np.save(b, values("f8", (5,)).astype(">f8"))
e = run("power", "--input", b, ok=False).stderr
assert "big-endian" in e, e
checks += 2

# Text: the stated rule, and the summary names the dtype used.
t = os.path.join(d, "t.txt")
for text, dtype in [("1\n2\n", "u64"), ("1\n-2\n", "i64"), ("1\n2.5\n", "f64")]:
    open(t, "w").write(text)
    s = run("sum", "--input", t).stdout
    assert f"dtype:    {dtype}" in s, (text, s)
    checks += 1
open(t, "w").write("1\n2\n")
out = os.path.join(d, "t_out.npy")
run("power", "--input", t, "--dtype", "i16", "--output", out, "--quiet")
assert np.load(out).dtype == np.int16
checks += 1
print(f"{checks} checks against numpy", np.__version__)
"#;

#[test]
fn outputs_match_numpy_for_every_dtype_and_shape() {
    let dir = tempfile::tempdir().expect("temp dir");
    let have_numpy = Command::new("python3")
        .args(["-c", "import numpy"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        have_numpy,
        "this test compares with numpy: install it with `python3 -m pip install numpy`"
    );
    let out = Command::new("python3")
        .args(["-c", SCRIPT])
        .arg(dir.path())
        .arg(env!("CARGO_BIN_EXE_shmproc"))
        .output()
        .expect("run python3");
    let (so, se) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "numpy checks failed:\n{so}\n{se}");
    eprintln!("{so}");
}
