//! A user's own kernels on every shmproc backend, with `run` and `bench`:
//!
//! * `collatz`: the number of Collatz steps (`n -> n/2` or `3n+1`) each
//!   element takes to reach 1, for every unsigned type (a map whose work per
//!   element varies, unlike any built-in kernel);
//! * `user_power`: the same repeated squaring as the built-in `power`,
//!   written here, to measure what going through the trait from another
//!   crate costs. Like the built-in, it squares a block of 64 elements at a
//!   time (so the compiler vectorizes across elements) and runs compiled
//!   for the CPU's best vector instructions through
//!   [`shmproc_kernels::multiversion!`].
//!
//! ```sh
//! cargo run --release -p shmproc-example-custom-kernel -- run collatz --n 1000000 --dtype u32
//! cargo run --release -p shmproc-example-custom-kernel -- bench --kernel collatz,power
//! ```

use serde::{Deserialize, Serialize};
use shmproc_kernels::simd::Level;
use shmproc_kernels::{
    for_same_numeric, multiversion, Chunk, Dtype, Kernel, KernelError, Num, ParamSpec, Params,
    Signature, Slice, SliceMut,
};

/// Collatz steps to 1 (0 for 0 and 1), capped at `max_steps`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Collatz;

fn collatz_steps(mut n: u64, max_steps: u64) -> u64 {
    let mut steps = 0;
    while n > 1 && steps < max_steps {
        n = if n.is_multiple_of(2) {
            n / 2
        } else {
            n.wrapping_mul(3).wrapping_add(1)
        };
        steps += 1;
    }
    steps
}

macro_rules! collatz_for {
    ($x:expr, $out:expr, $max:expr, $($v:ident),*) => {
        match ($x, $out) {
            $((Slice::$v(x), SliceMut::$v(o)) => {
                for (o, &v) in o.iter_mut().zip(x) {
                    // The count fits the element type: it is capped below.
                    *o = collatz_steps(v as u64, $max) as _;
                }
                Ok(())
            })*
            _ => Err(KernelError::Failed {
                kernel: "collatz",
                message: "input and output types differ".into(),
            }),
        }
    };
}

impl Kernel for Collatz {
    fn name(&self) -> &'static str {
        "collatz"
    }
    fn summary(&self) -> &'static str {
        "Collatz steps of each element to reach 1 (capped at max_steps; unsigned types)"
    }
    fn params(&self) -> &'static [ParamSpec] {
        const P: &[ParamSpec] = &[ParamSpec::new(
            "max_steps",
            "255",
            "cap on the count (at most 255)",
        )];
        P
    }
    fn signature(&self) -> Signature {
        Signature::map(&[Dtype::U8, Dtype::U16, Dtype::U32, Dtype::U64])
    }
    fn check(&self, p: &Params) -> Result<(), KernelError> {
        match p.uint::<u64>("max_steps")? {
            0..=255 => Ok(()),
            v => Err(shmproc_kernels::bad(
                "max_steps",
                &v.to_string(),
                "at most 255 (fits u8)",
            )),
        }
    }
    fn run(&self, p: &Params, c: Chunk<'_>) -> Result<(), KernelError> {
        let max = p.uint::<u64>("max_steps")?;
        collatz_for!(c.x()?, c.out, max, U8, U16, U32, U64)
    }
}

/// The built-in power's loop, in a crate of its own.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct UserPower;

#[inline(always)]
fn square_times_body<T: Num>(x: &[T], out: &mut [T], times: u32) {
    const BLOCK: usize = 64;
    let mut blocks = out.chunks_exact_mut(BLOCK);
    for (o, x) in (&mut blocks).zip(x.chunks_exact(BLOCK)) {
        let mut v = [T::ZERO; BLOCK];
        v.copy_from_slice(x);
        for _ in 0..times {
            for e in &mut v {
                *e = e.mul(*e);
            }
        }
        o.copy_from_slice(&v);
    }
    let done = x.len() - blocks.into_remainder().len();
    for (o, &v) in out[done..].iter_mut().zip(&x[done..]) {
        let mut v = v;
        for _ in 0..times {
            v = v.mul(v);
        }
        *o = v;
    }
}

multiversion!(fn square_times<T: Num>(x: &[T], out: &mut [T], times: u32) => square_times_body);

impl Kernel for UserPower {
    fn name(&self) -> &'static str {
        "user_power"
    }
    fn summary(&self) -> &'static str {
        "repeated squaring, `times` times, written in this example crate"
    }
    fn params(&self) -> &'static [ParamSpec] {
        const P: &[ParamSpec] = &[ParamSpec::new("times", "4", "number of squarings")];
        P
    }
    fn signature(&self) -> Signature {
        Signature::map(&Dtype::NUMERIC)
    }
    fn run(&self, p: &Params, c: Chunk<'_>) -> Result<(), KernelError> {
        let times = p.uint::<u32>("times")?;
        let x = c.x()?;
        let level = Level::current();
        for_same_numeric!(x, c.out, |x, o| square_times(level, x, o, times), else => {
            return Err(KernelError::Failed { kernel: "user_power", message: "type mismatch".into() })
        });
        Ok(())
    }
}

fn main() {
    shmproc_batch::App::new()
        .kernel(Collatz)
        .kernel(UserPower)
        .main()
}
