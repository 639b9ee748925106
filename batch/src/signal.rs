//! SIGINT: a flag-setting handler for the CLI, and ignoring it in pool workers.

use std::sync::atomic::{AtomicBool, Ordering};

/// Set by the SIGINT handler; read between chunks.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_sig: libc::c_int) {
    // Only async-signal-safe operations here: an atomic swap and `_exit`.
    if INTERRUPTED.swap(true, Ordering::SeqCst) {
        // A second Ctrl-C: leave at once (the next pool start sweeps leftovers).
        // SAFETY: _exit is async-signal-safe and never returns.
        unsafe { libc::_exit(130) }
    }
}

/// Installs a SIGINT handler that sets the flag [`interrupted`] reports (a
/// second SIGINT exits at once with status 130).
pub(crate) fn catch_sigint() -> std::io::Result<()> {
    // SAFETY: an all-zero sigaction is a valid value (empty mask, no flags).
    let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
    sa.sa_sigaction = on_sigint as extern "C" fn(libc::c_int) as libc::sighandler_t;
    sa.sa_flags = libc::SA_RESTART;
    // SAFETY: `sa` is fully initialised; the handler only touches an atomic
    // and calls `_exit`, both async-signal-safe.
    let r = unsafe { libc::sigaction(libc::SIGINT, &sa, std::ptr::null_mut()) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Whether SIGINT arrived since [`catch_sigint`].
pub(crate) fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Ignores SIGINT in this process (pool workers: a terminal's Ctrl-C goes to
/// the whole process group; the parent decides what happens).
pub(crate) fn ignore_sigint() {
    // SAFETY: setting SIGINT's disposition to SIG_IGN has no preconditions.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
    }
}
