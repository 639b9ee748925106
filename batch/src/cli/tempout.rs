//! The temporary file an output is written into before it appears whole.
//!
//! # How an output appears whole or not at all
//!
//! - Where the filesystem supports it (ext4, xfs, btrfs, tmpfs...), the
//!   output is an **unnamed** file in the destination's directory
//!   (`O_TMPFILE`). Worker processes map it through `/proc/<pid>/fd/<n>`. If
//!   the run dies, however it dies (SIGKILL included), the kernel frees the
//!   file with the last descriptor: nothing is left. On success it is linked
//!   under a temporary name and renamed over the destination.
//! - Elsewhere it is a **named** temporary `.shmproc-out.<pid>.<start>.<rand>`
//!   in that directory (pid and start time of the run), and a *marker* of the
//!   same name in `/dev/shm` records its path. A run that is stopped removes
//!   both; after a SIGKILL, `shmproc clean` finds the marker, sees that the
//!   run is dead and removes both. The same marker covers the instant between
//!   the link and the rename of an unnamed output.
//!
//! `SHMPROC_NO_TMPFILE=1` makes every output take the named path (to test it,
//! or for a filesystem that claims `O_TMPFILE` but mishandles it).

#![allow(unsafe_code)] // getrandom(2) and linkat(2), each with its SAFETY note

use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Where markers live.
const MARKER_DIR: &str = "/dev/shm";
/// The name prefix of temporary outputs and their markers.
const PREFIX: &str = ".shmproc-out.";

/// A temporary output file, removed on drop unless [`TempOutput::persist`]
/// linked it into place.
#[derive(Debug)]
pub(super) struct TempOutput {
    file: File,
    dir: PathBuf,
    /// The name in `dir` (named temporaries only).
    named: Option<PathBuf>,
    /// The marker in /dev/shm (named temporaries only).
    marker: Option<PathBuf>,
}

/// This process's start time in clock ticks since boot (field 22 of
/// `/proc/<pid>/stat`), as in segment names.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')')
        .next()?
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

fn random_hex() -> io::Result<String> {
    let mut b = [0u8; 8];
    // SAFETY: getrandom writes at most b.len() bytes into `b`.
    let r = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if r != b.len() as isize {
        return Err(io::Error::last_os_error());
    }
    Ok(format!("{:016x}", u64::from_le_bytes(b)))
}

/// A fresh temporary name for this process.
fn fresh_name() -> io::Result<String> {
    let pid = std::process::id();
    Ok(format!(
        "{PREFIX}{pid}.{}.{}",
        start_time(pid).unwrap_or(0),
        random_hex()?
    ))
}

/// The run (pid, start time) a temporary name belongs to.
fn parse_name(name: &str) -> Option<(u32, u64)> {
    let rest = name.strip_prefix(PREFIX)?;
    let mut parts = rest.split('.');
    let pid = parts.next()?.parse().ok()?;
    let start = parts.next()?.parse().ok()?;
    let rand = parts.next()?;
    (rand.len() == 16 && parts.next().is_none()).then_some((pid, start))
}

fn write_marker(name: &str, target: &Path) -> io::Result<PathBuf> {
    let marker = Path::new(MARKER_DIR).join(name);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&marker)
        .and_then(|mut f| io::Write::write_all(&mut f, target.as_os_str().as_bytes()))?;
    Ok(marker)
}

impl TempOutput {
    /// A temporary file in `dir` (see the module docs).
    pub(super) fn create(dir: &Path) -> io::Result<Self> {
        Self::create_with(dir, true)
    }

    /// A named temporary file in `dir` (with its marker), which other
    /// processes, on other hosts too, open by its [`path`](Self::path): the
    /// output of an MPI run, which every rank writes its part of.
    #[cfg_attr(not(feature = "mpi"), allow(dead_code))]
    pub(super) fn create_named(dir: &Path) -> io::Result<Self> {
        Self::create_with(dir, false)
    }

    fn create_with(dir: &Path, unnamed: bool) -> io::Result<Self> {
        let dir = std::fs::canonicalize(dir)?;
        if unnamed
            && std::env::var_os("SHMPROC_NO_TMPFILE").is_none_or(|v| v.is_empty() || v == "0")
        {
            match std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_TMPFILE)
                .mode(0o600)
                .open(&dir)
            {
                Ok(file) => {
                    return Ok(TempOutput {
                        file,
                        dir,
                        named: None,
                        marker: None,
                    })
                }
                // Not supported here: a named temporary instead.
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL | libc::ENOENT)
                    ) => {}
                Err(e) => return Err(e),
            }
        }
        let name = fresh_name()?;
        let path = dir.join(&name);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        crate::signal::remove_on_stop(path.clone());
        let marker = write_marker(&name, &path).ok();
        if let Some(m) = &marker {
            crate::signal::remove_on_stop(m.clone());
        }
        Ok(TempOutput {
            file,
            dir,
            named: Some(path),
            marker,
        })
    }

    /// The marker of the named temporary at `path` (another process's, on
    /// this host): where [`create_named`](Self::create_named) put it.
    #[cfg_attr(not(feature = "mpi"), allow(dead_code))]
    pub(super) fn marker_of(path: &Path) -> Option<PathBuf> {
        let name = path.file_name()?.to_str()?;
        parse_name(name)?;
        Some(Path::new(MARKER_DIR).join(name))
    }

    /// The open file.
    pub(super) fn file(&self) -> &File {
        &self.file
    }

    /// A path worker processes open the file by.
    pub(super) fn path(&self) -> PathBuf {
        match &self.named {
            Some(p) => p.clone(),
            None => PathBuf::from(format!(
                "/proc/{}/fd/{}",
                std::process::id(),
                self.file.as_raw_fd()
            )),
        }
    }

    /// Whether the file has no name (`O_TMPFILE`).
    #[cfg(test)]
    pub(super) fn is_unnamed(&self) -> bool {
        self.named.is_none()
    }

    /// Puts the file at `dest` (replacing a regular file there), atomically.
    pub(super) fn persist(mut self, dest: &Path) -> io::Result<()> {
        let named = match self.named.take() {
            Some(p) => p,
            None => {
                let name = fresh_name()?;
                let path = self.dir.join(&name);
                // The marker covers the instant between link and rename.
                self.marker = write_marker(&name, &path).ok();
                if let Some(m) = &self.marker {
                    crate::signal::remove_on_stop(m.clone());
                }
                crate::signal::remove_on_stop(path.clone());
                let from =
                    std::ffi::CString::new(format!("/proc/self/fd/{}", self.file.as_raw_fd()))
                        .map_err(io::Error::other)?;
                let to = std::ffi::CString::new(path.as_os_str().as_bytes())
                    .map_err(io::Error::other)?;
                // SAFETY: two NUL-terminated paths; linkat with
                // AT_SYMLINK_FOLLOW links the file /proc/self/fd/N refers to
                // (an O_TMPFILE file opened without O_EXCL may be linked).
                let r = unsafe {
                    libc::linkat(
                        libc::AT_FDCWD,
                        from.as_ptr(),
                        libc::AT_FDCWD,
                        to.as_ptr(),
                        libc::AT_SYMLINK_FOLLOW,
                    )
                };
                if r != 0 {
                    let e = io::Error::last_os_error();
                    crate::signal::keep_on_stop(&path);
                    return Err(e);
                }
                path
            }
        };
        let renamed = std::fs::rename(&named, dest);
        if renamed.is_err() {
            // Drop removes it.
            self.named = Some(named);
            return renamed;
        }
        crate::signal::keep_on_stop(&named);
        Ok(())
    }
}

impl Drop for TempOutput {
    fn drop(&mut self) {
        if let Some(p) = self.named.take() {
            let _ = std::fs::remove_file(&p);
            crate::signal::keep_on_stop(&p);
        }
        if let Some(m) = self.marker.take() {
            let _ = std::fs::remove_file(&m);
            crate::signal::keep_on_stop(&m);
        }
    }
}

/// A temporary output of a run, found through its marker.
#[derive(Debug)]
pub(super) struct Leftover {
    /// The marker in /dev/shm.
    pub(super) marker: PathBuf,
    /// The temporary output it names.
    pub(super) path: PathBuf,
    /// The run's pid.
    pub(super) pid: u32,
    /// Whether that run still runs.
    pub(super) alive: bool,
    /// The temporary output's size (0 if it is gone).
    pub(super) size: u64,
}

/// This user's temporary outputs, through their markers.
pub(super) fn leftovers() -> io::Result<Vec<Leftover>> {
    let uid = std::fs::metadata("/proc/self")?.uid();
    let mut out = Vec::new();
    for e in std::fs::read_dir(MARKER_DIR)?.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some((pid, start)) = parse_name(name) else {
            continue;
        };
        let marker = e.path();
        match std::fs::symlink_metadata(&marker) {
            Ok(m) if m.uid() == uid && m.is_file() => {}
            _ => continue,
        }
        let Ok(bytes) = std::fs::read(&marker) else {
            continue;
        };
        let path = PathBuf::from(OsString::from_vec(bytes));
        // The marker may only name a temporary of its own name.
        if path.file_name().and_then(|n| n.to_str()) != Some(name) || !path.is_absolute() {
            continue;
        }
        let alive = start_time(pid) == Some(start);
        let size = std::fs::symlink_metadata(&path).map_or(0, |m| m.len());
        out.push(Leftover {
            marker,
            path,
            pid,
            alive,
            size,
        });
    }
    out.sort_by(|a, b| a.marker.cmp(&b.marker));
    Ok(out)
}

/// Removes a dead run's temporary output and its marker.
pub(super) fn remove(l: &Leftover) -> io::Result<()> {
    match std::fs::symlink_metadata(&l.path) {
        Ok(m) if m.is_file() && m.uid() == std::fs::metadata("/proc/self")?.uid() => {
            std::fs::remove_file(&l.path)?
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    match std::fs::remove_file(&l.marker) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_run_and_parse_back() {
        let n = fresh_name().unwrap();
        let (pid, start) = parse_name(&n).unwrap();
        assert_eq!(pid, std::process::id());
        assert_eq!(Some(start), start_time(pid));
        assert_eq!(parse_name(".shmproc-out.1.2.3"), None);
        assert_eq!(parse_name("shmproc.1.2.0123456789abcdef"), None);
    }

    #[test]
    fn an_unnamed_output_leaves_nothing_unless_persisted() {
        let d = tempfile::tempdir().unwrap();
        let t = TempOutput::create(d.path()).unwrap();
        assert!(t.is_unnamed(), "ext4 and tmpfs support O_TMPFILE");
        std::os::unix::fs::FileExt::write_all_at(t.file(), b"abc", 0).unwrap();
        assert_eq!(std::fs::read(t.path()).unwrap(), b"abc");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
        drop(t);
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
        let t = TempOutput::create(d.path()).unwrap();
        std::os::unix::fs::FileExt::write_all_at(t.file(), b"xyz", 0).unwrap();
        let dest = d.path().join("out");
        std::fs::write(&dest, b"old").unwrap();
        t.persist(&dest).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"xyz");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }
}
