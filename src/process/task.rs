//! Task identity: which function a child runs, named by its offset from an anchor
//! symbol in the same executable image.
//!
//! # Trust model
//!
//! An offset is only meaningful in a process that runs the *very same file* as the
//! process that computed it. Under the spawn start method the child re-execs
//! `/proc/self/exe` (or, when shmproc lives in a shared object loaded by another
//! program, preloads that very file) and, before resolving any offset, checks
//! the build identity sent by its parent: the device and inode of the file the
//! anchor's code is mapped from (the executable or the shared object) and the
//! anchor-relative offset of a canary function ([`BuildIdentity`]). A mismatch is
//! [`Error::BuildMismatch`](crate::Error::BuildMismatch), never a jump into the
//! unknown. Under the fork start method the child shares the parent's image, so
//! offsets are valid by construction.
//!
//! After that check, offsets ([`FnId`], [`Entry`]) are trusted like code: whoever
//! can write them can make a worker call any function of the same shape in the
//! binary. They only travel through the handshake pipe and through control
//! segments created mode 0600 (same user only), so an attacker who can write them
//! could already ptrace the worker.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The fixed point offsets are measured from. Never inlined, so it has an address.
#[inline(never)]
fn anchor() -> u64 {
    std::hint::black_box(0x5348_4d50_524f_4331) // "SHMPROC1"
}

/// A second fixed function; its offset from [`anchor`] is part of the build identity.
#[inline(never)]
fn canary() -> u64 {
    std::hint::black_box(0x4341_4e41_5259_2121) // "CANARY!!"
}

pub(crate) fn anchor_addr() -> usize {
    let f: fn() -> u64 = anchor;
    f as usize
}

fn offset_of_addr(addr: usize) -> i64 {
    // Wrapping arithmetic: the difference of two addresses in one image always
    // fits in an i64 on 64-bit Linux.
    addr.wrapping_sub(anchor_addr()) as i64
}

fn addr_of_offset(off: i64) -> usize {
    anchor_addr().wrapping_add(off as usize)
}

/// What a child compares with its own image before trusting any offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct BuildIdentity {
    /// Device `(major, minor)` of the file shmproc's code is mapped from.
    pub dev: (u32, u32),
    /// Its inode.
    pub ino: u64,
    /// Offset of the canary function from the anchor.
    pub canary: i64,
}

/// The file shmproc's code runs from: the executable, or the shared object
/// (a `cdylib`) another program loaded.
pub(crate) fn image() -> crate::Result<crate::sys::proc::MappedFile> {
    crate::sys::proc::mapped_file_at(anchor_addr())
        .map_err(|e| crate::Error::io("finding shmproc's code in /proc/self/maps", e))
}

impl BuildIdentity {
    /// The identity of the running image.
    pub fn current() -> crate::Result<Self> {
        let img = image()?;
        let c: fn() -> u64 = canary;
        Ok(BuildIdentity {
            dev: img.dev,
            ino: img.ino,
            canary: offset_of_addr(c as usize),
        })
    }

    /// `Ok` if `self` (sent by the parent) names the running image.
    pub fn check(&self) -> crate::Result<()> {
        let mine = Self::current()?;
        if *self == mine {
            Ok(())
        } else {
            Err(crate::Error::BuildMismatch(format!(
                "parent runs image (dev {}:{}, inode {}) with canary offset {:#x}; \
                 this child runs (dev {}:{}, inode {}) with canary offset {:#x}",
                self.dev.0,
                self.dev.1,
                self.ino,
                self.canary,
                mine.dev.0,
                mine.dev.1,
                mine.ino,
                mine.canary
            )))
        }
    }
}

/// The boot function of a child: it gets the argument bytes and returns the exit code.
pub type BootFn = fn(&[u8]) -> i32;

/// Identity of a [`BootFn`] (a non-generic or monomorphized `fn(&[u8]) -> i32`)
/// that travels to a child as an anchor-relative offset.
///
/// An `Entry` can only be made from a real function ([`Entry::new`]); it has
/// no public way to be built from bytes or an integer, so safe code cannot
/// make a child jump anywhere else. On the wire it travels as the
/// crate-private `EntryWire`.
///
/// ```compile_fail
/// // An Entry cannot be decoded from bytes (it has no Deserialize):
/// fn decodable<T: serde::de::DeserializeOwned>() {}
/// decodable::<shmproc::process::spawn::Entry>();
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Entry(i64);

/// How an [`Entry`] travels to a child (crate-private: decoding one is only
/// done by the child side of the handshake, after the build identity check).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct EntryWire(i64);

impl From<Entry> for EntryWire {
    fn from(e: Entry) -> Self {
        EntryWire(e.0)
    }
}

impl From<EntryWire> for Entry {
    fn from(w: EntryWire) -> Self {
        Entry(w.0)
    }
}

impl Entry {
    /// The entry for `f`.
    pub fn new(f: BootFn) -> Self {
        Entry(offset_of_addr(f as usize))
    }

    /// The offset that travels.
    pub fn offset(self) -> i64 {
        self.0
    }

    /// Turns the entry back into a callable function.
    ///
    /// # Safety
    /// - `self` must have been made by [`Entry::new`] in a process running the same
    ///   executable image (checked by the spawn handshake's build identity, or a fork).
    pub unsafe fn resolve(self) -> BootFn {
        let addr = addr_of_offset(self.0) as *const ();
        // SAFETY: by the caller's contract the offset was computed from a `BootFn`
        // in this very image, so anchor + offset is that function's address.
        unsafe { std::mem::transmute::<*const (), BootFn>(addr) }
    }
}

/// The pool's task trampoline: decode the argument, call, encode the result; a
/// panic or a codec error comes back as `Err`.
pub(crate) type RawCall = fn(&[u8]) -> Result<Vec<u8>, TaskFailure>;

/// Why a task produced no result (travels from a worker to its parent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum TaskFailure {
    /// The task's function panicked.
    Panic(crate::error::TaskPanic),
    /// Its arguments or result could not be decoded or encoded.
    Codec(String),
}

impl TaskFailure {
    pub(crate) fn codec(what: &str, e: impl std::fmt::Display) -> Self {
        TaskFailure::Codec(format!("{what}: {e}"))
    }

    /// The error the parent reports.
    pub(crate) fn into_error(self) -> crate::Error {
        match self {
            TaskFailure::Panic(p) => crate::Error::TaskPanicked(p),
            TaskFailure::Codec(m) => crate::Error::Codec(m),
        }
    }
}

impl std::fmt::Display for TaskFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TaskFailure::Panic(p) => write!(f, "panicked: {p}"),
            TaskFailure::Codec(m) => f.write_str(m),
        }
    }
}

std::thread_local! {
    /// Where the last panic of this thread happened (set by the hook below).
    static PANIC_AT: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
    /// Inside [`catch_task_panic`]: the panic is reported to the parent, so the
    /// hook does not print it.
    static IN_TASK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

static HOOK: std::sync::Once = std::sync::Once::new();

/// Installs (once per process) a panic hook that records each panic's
/// `file:line` for [`catch_task_panic`] and stays quiet for panics inside
/// tasks, whose parent reports them; other panics go to the previous hook.
pub(crate) fn install_panic_hook() {
    HOOK.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let at = info
                .location()
                .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
            let _ = PANIC_AT.try_with(|p| *p.borrow_mut() = at);
            if !IN_TASK.try_with(|t| t.get()).unwrap_or(false) {
                prev(info);
            }
        }));
    });
}

/// Runs `f`, turning a panic into a [`TaskPanic`](crate::error::TaskPanic)
/// with its message and, when the hook of [`install_panic_hook`] is in place,
/// its location.
pub(crate) fn catch_task_panic<R>(f: impl FnOnce() -> R) -> Result<R, crate::error::TaskPanic> {
    let _ = PANIC_AT.try_with(|p| p.borrow_mut().take());
    let was = IN_TASK.with(|t| t.replace(true));
    let r = catch_unwind(AssertUnwindSafe(f));
    IN_TASK.with(|t| t.set(was));
    r.map_err(|p| crate::error::TaskPanic {
        message: panic_message(&*p),
        location: PANIC_AT.try_with(|l| l.borrow_mut().take()).ok().flatten(),
        item: None,
    })
}

/// Serializable identity of a [`RawCall`]: its offset from the anchor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct FnId(pub(crate) i64);

impl FnId {
    /// The id of `f`.
    pub fn of(f: RawCall) -> Self {
        FnId(offset_of_addr(f as usize))
    }

    /// The id of the trampoline of the zero-sized function `F`.
    #[cfg(test)]
    pub fn of_fn<F, A, R>(_f: F) -> Self
    where
        F: Fn(A) -> R + Copy + 'static,
        A: DeserializeOwned,
        R: Serialize,
    {
        Self::of(raw_call::<F, A, R>())
    }

    /// Turns the id back into the trampoline.
    ///
    /// # Safety
    /// - `self` must have been made by [`FnId::of`] in a process running the same
    ///   executable image: a child after the handshake's identity check, a forked
    ///   child, or the same process. See the module's trust model.
    pub unsafe fn resolve(self) -> RawCall {
        let addr = addr_of_offset(self.0) as *const ();
        // SAFETY: by the caller's contract the offset was computed from a
        // `RawCall` in this very image.
        unsafe { std::mem::transmute::<*const (), RawCall>(addr) }
    }
}

/// Compile-time check that `F` captures nothing. A post-monomorphization error:
/// it fires where a capturing closure is handed to a generic function that calls it.
#[inline(always)]
pub(crate) fn assert_zero_sized<F>() {
    const {
        assert!(
            std::mem::size_of::<F>() == 0,
            "shmproc: a process target must be a fn item or a non-capturing closure \
             (it is named by its code address in the child; captured state cannot travel, \
             pass it as an argument instead)"
        )
    }
}

/// Makes a value of the zero-sized, `Copy` function type `F` out of nothing.
pub(crate) fn conjure<F: Copy + 'static>() -> F {
    assert_zero_sized::<F>();
    // SAFETY: `F` is zero-sized (checked at compile time), so reading it touches
    // no memory and a dangling, well-aligned pointer is a valid source. `F: Copy`
    // means duplicating a value of it is allowed; fn items and non-capturing
    // closures (the only `Fn` types of size zero in practice) have no invariants.
    unsafe { std::ptr::NonNull::<F>::dangling().as_ptr().read() }
}

/// The message of a panic payload.
pub(crate) fn panic_message(p: &(dyn Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&'static str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "Box<dyn Any>".to_string()
    }
}

fn call_trampoline<F, A, R>(bytes: &[u8]) -> Result<Vec<u8>, TaskFailure>
where
    F: Fn(A) -> R + Copy + 'static,
    A: DeserializeOwned,
    R: Serialize,
{
    let args: A =
        postcard::from_bytes(bytes).map_err(|e| TaskFailure::codec("decoding arguments", e))?;
    let f = conjure::<F>();
    let r = catch_task_panic(move || f(args)).map_err(TaskFailure::Panic)?;
    postcard::to_stdvec(&r).map_err(|e| TaskFailure::codec("encoding result", e))
}

/// The monomorphized trampoline for the zero-sized function `F: Fn(A) -> R`.
pub(crate) fn raw_call<F, A, R>() -> RawCall
where
    F: Fn(A) -> R + Copy + 'static,
    A: DeserializeOwned,
    R: Serialize,
{
    assert_zero_sized::<F>();
    call_trampoline::<F, A, R>
}

/// Boot function of a [`Process`](crate::process::Process) target `F: Fn(A) -> R`:
/// decode `A`, call, ignore the result; exit code 0, or 1 after a panic (the
/// panic hook has printed the message to stderr).
pub(crate) fn boot_target<F, A, R>(bytes: &[u8]) -> i32
where
    F: Fn(A) -> R + Copy + 'static,
    A: DeserializeOwned,
{
    // Decoding attaches the queues, pipes and arrays among the arguments; only
    // then does the parent's `start` return (see `ChildOptions::announce`).
    let args: A = match postcard::from_bytes(bytes) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("shmproc: cannot decode the process arguments: {e}");
            crate::process::announce_failure(&crate::Error::Codec(format!(
                "the child could not decode its arguments: {e}"
            )));
            return 1;
        }
    };
    crate::process::announce_ready();
    let f = conjure::<F>();
    match catch_unwind(AssertUnwindSafe(move || f(args))) {
        Ok(_) => 0,
        Err(_) => 1,
    }
}

/// Boot function of a [`Runnable`](crate::process::ProcessRun) object `T`.
pub(crate) fn boot_runnable<T: crate::process::ProcessRun>(bytes: &[u8]) -> i32 {
    let mut obj: T = match postcard::from_bytes(bytes) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("shmproc: cannot decode the process object: {e}");
            crate::process::announce_failure(&crate::Error::Codec(format!(
                "the child could not decode its process object: {e}"
            )));
            return 1;
        }
    };
    crate::process::announce_ready();
    match catch_unwind(AssertUnwindSafe(move || obj.run())) {
        Ok(()) => 0,
        Err(_) => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn double(x: u32) -> u32 {
        x * 2
    }

    fn boot_seven(_: &[u8]) -> i32 {
        7
    }

    #[test]
    fn entry_round_trip() {
        let e = Entry::new(boot_seven);
        // SAFETY: made in this very process.
        let f = unsafe { e.resolve() };
        assert_eq!(f(&[]), 7);
    }

    #[test]
    fn fn_id_round_trip_and_panic() {
        let id = FnId::of_fn(double);
        // SAFETY: made in this very process.
        let call = unsafe { id.resolve() };
        let out = call(&postcard::to_stdvec(&21u32).expect("encode")).expect("call");
        assert_eq!(postcard::from_bytes::<u32>(&out).expect("decode"), 42);

        let boom = FnId::of_fn(|x: u32| -> u32 {
            if x > 0 {
                panic!("boom {x}")
            }
            x
        });
        // SAFETY: made in this very process.
        let call = unsafe { boom.resolve() };
        install_panic_hook();
        let err = call(&postcard::to_stdvec(&3u32).expect("encode")).expect_err("panics");
        match err {
            TaskFailure::Panic(p) => {
                assert_eq!(p.message, "boom 3");
                let at = p.location.expect("the hook records the location");
                assert!(at.starts_with("src/process/task.rs:"), "{at}");
            }
            other => panic!("expected a panic, got {other:?}"),
        }
        let err = call(&[0xff, 0xff]).expect_err("bad bytes");
        assert!(err.to_string().contains("decoding"), "{err}");
    }

    #[test]
    fn identity_is_stable() {
        let a = BuildIdentity::current().expect("identity");
        a.check().expect("same image");
        let mut b = a;
        b.canary += 16;
        assert!(matches!(b.check(), Err(crate::Error::BuildMismatch(_))));
    }
}
