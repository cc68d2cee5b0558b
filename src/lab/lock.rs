//! Locks that make concurrent reclab commands serialize per run: an exclusive `flock(2)` on the
//! run directory itself ([`RunLock`]: held by `up` from the directory's creation to its end, by
//! `run` for the whole drill, by `down` and by `gc` for each run it removes), and a brief one on
//! `STATE/runs.lock` ([`StateLock`]: held while `up` creates a run directory and while `gc`
//! lists runs and decides).
//!
//! The kernel drops a lock when its holder dies, so a lock that can be taken also says that no
//! live process is working on the run. A run directory is removed while locked: whoever waited
//! for the lock finds it gone and has nothing to do ([`RunLock::acquire`] returns `None`).

use anyhow::{Context, Result};
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;

use crate::lab::journal::RunDir;

/// An exclusive lock on a run directory, released when dropped (or when the process dies).
#[derive(Debug)]
pub struct RunLock {
    _file: File,
    dir: RunDir,
}

/// What trying a run's lock found.
#[derive(Debug)]
pub enum TryLock {
    Locked(RunLock),
    /// Another process (or another lock in this one) holds it.
    Busy,
    /// The run directory is gone.
    Gone,
}

impl RunLock {
    /// Wait for the run's lock; `None` when the run directory is gone (before or while waiting).
    pub fn acquire(dir: &RunDir) -> Result<Option<RunLock>> {
        let Some(file) = open_dir(&dir.path)? else {
            return Ok(None);
        };
        flock(&file, &dir.path, libc::LOCK_EX)?;
        Ok(still_there(&file, &dir.path).then(|| RunLock {
            _file: file,
            dir: dir.clone(),
        }))
    }

    /// Take the run's lock if nobody holds it.
    pub fn try_acquire(dir: &RunDir) -> Result<TryLock> {
        let Some(file) = open_dir(&dir.path)? else {
            return Ok(TryLock::Gone);
        };
        // SAFETY: flock(2) on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Ok(TryLock::Busy);
            }
            return Err(e).with_context(|| format!("locking {}", dir.path.display()));
        }
        Ok(if still_there(&file, &dir.path) {
            TryLock::Locked(RunLock {
                _file: file,
                dir: dir.clone(),
            })
        } else {
            TryLock::Gone
        })
    }

    /// The locked run's directory.
    pub fn dir(&self) -> &RunDir {
        &self.dir
    }
}

/// The state directory's lock (on `STATE/runs.lock`), released when dropped.
#[derive(Debug)]
pub struct StateLock {
    _file: File,
}

impl StateLock {
    /// Wait for the state directory's lock, creating `STATE/runs/` if need be.
    pub fn acquire(state_dir: &Path) -> Result<StateLock> {
        use std::os::unix::fs::OpenOptionsExt;
        let root = RunDir::runs_root(state_dir);
        std::fs::create_dir_all(&root)
            .with_context(|| format!("creating state directory {}", root.display()))?;
        let path = state_dir.join("runs.lock");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        flock(&file, &path, libc::LOCK_EX)?;
        Ok(StateLock { _file: file })
    }
}

fn open_dir(path: &Path) -> Result<Option<File>> {
    match File::open(path) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("opening {}", path.display())),
    }
}

fn flock(file: &File, path: &Path, op: libc::c_int) -> Result<()> {
    loop {
        // SAFETY: flock(2) on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e).with_context(|| format!("locking {}", path.display()));
        }
    }
}

/// Whether the locked directory is still the one at `path` (not removed meanwhile).
fn still_there(file: &File, path: &Path) -> bool {
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino() && a.nlink() > 0,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::names::RunId;

    #[test]
    fn a_held_run_lock_is_busy_for_others_and_free_once_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = RunDir::new(tmp.path(), &RunId::new());
        dir.create().unwrap();
        let held = RunLock::acquire(&dir)
            .unwrap()
            .expect("the directory exists");
        assert!(matches!(RunLock::try_acquire(&dir).unwrap(), TryLock::Busy));
        drop(held);
        assert!(matches!(
            RunLock::try_acquire(&dir).unwrap(),
            TryLock::Locked(_)
        ));
    }

    #[test]
    fn a_waiter_finds_a_run_removed_while_it_waited_gone() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = RunDir::new(tmp.path(), &RunId::new());
        dir.create().unwrap();
        let held = RunLock::acquire(&dir).unwrap().unwrap();
        let waiter = {
            let dir = dir.clone();
            std::thread::spawn(move || RunLock::acquire(&dir).unwrap().is_none())
        };
        // The waiter blocks on the lock until the holder has removed the run and let go.
        while !waiting_on(&dir) {
            std::thread::yield_now();
        }
        std::fs::remove_dir_all(&dir.path).unwrap();
        drop(held);
        assert!(waiter.join().unwrap(), "the waiter saw the run as gone");
        assert!(matches!(RunLock::try_acquire(&dir).unwrap(), TryLock::Gone));
    }

    /// Whether some process waits for a lock on `dir` (from /proc/locks: a `->` line).
    fn waiting_on(dir: &RunDir) -> bool {
        let ino = std::fs::metadata(&dir.path).unwrap().ino();
        std::fs::read_to_string("/proc/locks")
            .unwrap_or_default()
            .lines()
            .any(|l| l.contains("->") && l.contains(&format!(":{ino} ")))
    }
}
