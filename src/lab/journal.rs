//! The run's state directory and its journal (the IO; the records themselves are
//! [`crate::lab::record`]).
//!
//! **Invariant:** every resource is appended (and fsynced) to the run's journal *before* it is
//! created, so a crash at any point leaves a journal that names everything that may exist.
//! Undoing a resource that does not exist is a success, so replaying a journal is idempotent.
//!
//! Layout: `STATE/runs/<run8>/` holds `run.json` (the [`RunRecord`]), `journal.jsonl` (one
//! [`Resource`] per line) and the run's files (overlays, serial logs, lab-services config).

use anyhow::{Context, Result};
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use crate::base::fs::write_atomic;
use crate::base::names::RunId;
use crate::lab::record::{Resource, RunRecord};

/// A run's directory.
#[derive(Debug, Clone)]
pub struct RunDir {
    pub path: PathBuf,
}

impl RunDir {
    pub fn runs_root(state_dir: &Path) -> PathBuf {
        state_dir.join("runs")
    }

    pub fn new(state_dir: &Path, run: &RunId) -> Self {
        RunDir {
            path: Self::runs_root(state_dir).join(run.short()),
        }
    }

    /// Every run directory under the state dir.
    pub fn all(state_dir: &Path) -> Result<Vec<RunDir>> {
        let root = Self::runs_root(state_dir);
        let mut out = Vec::new();
        match fs::read_dir(&root) {
            Ok(entries) => {
                for e in entries {
                    let e = e.with_context(|| format!("reading {}", root.display()))?;
                    if e.path().is_dir() {
                        out.push(RunDir { path: e.path() });
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("reading {}", root.display())),
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    pub fn journal_path(&self) -> PathBuf {
        self.path.join("journal.jsonl")
    }

    pub fn record_path(&self) -> PathBuf {
        self.path.join("run.json")
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Create the directory (0700).
    pub fn create(&self) -> Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.path)
            .with_context(|| format!("creating run directory {}", self.path.display()))
    }

    /// Append a resource to the journal and fsync it. Call before creating the resource.
    pub fn journal(&self, r: &Resource) -> Result<()> {
        let path = self.journal_path();
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening journal {}", path.display()))?;
        let mut line = serde_json::to_string(r)?;
        line.push('\n');
        f.write_all(line.as_bytes())
            .and_then(|_| f.sync_data())
            .with_context(|| format!("writing journal {}", path.display()))?;
        tracing::debug!(resource = %r.describe(), "journaled");
        Ok(())
    }

    /// The journal's resources in creation order. A torn last line (crash while writing)
    /// is ignored: its resource was not created yet.
    pub fn resources(&self) -> Result<Vec<Resource>> {
        let path = self.journal_path();
        let f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
        };
        let mut out = Vec::new();
        for line in BufReader::new(f).lines() {
            let line = line.with_context(|| format!("reading {}", path.display()))?;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str(&line) {
                Ok(r) => out.push(r),
                Err(e) => tracing::warn!(cause = %e, "ignoring torn journal line"),
            }
        }
        Ok(out)
    }

    /// Write `run.json` atomically (temp file + rename), mode 0600.
    pub fn save_record(&self, rec: &RunRecord) -> Result<()> {
        write_atomic(&self.record_path(), &serde_json::to_vec_pretty(rec)?, 0o600)
    }

    pub fn load_record(&self) -> Result<Option<RunRecord>> {
        let path = self.record_path();
        match fs::read(&path) {
            Ok(b) => Ok(Some(
                serde_json::from_slice(&b)
                    .with_context(|| format!("parsing {}", path.display()))?,
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_round_trips_and_ignores_a_torn_last_line() {
        let tmp = tempfile::tempdir().unwrap();
        let run = RunId::new();
        let dir = RunDir::new(tmp.path(), &run);
        dir.create().unwrap();
        let a = Resource::Network {
            name: "reclab-x-lan".into(),
        };
        let b = Resource::Firewall {
            program: "iptables".into(),
            chain: "INPUT".into(),
            rule: vec!["-i".into(), "rlx".into(), "-j".into(), "DROP".into()],
        };
        dir.journal(&a).unwrap();
        dir.journal(&b).unwrap();
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.journal_path())
            .unwrap();
        f.write_all(b"{\"kind\":\"domain\",\"na").unwrap();
        assert_eq!(dir.resources().unwrap(), vec![a, b]);
        assert_eq!(RunDir::all(tmp.path()).unwrap().len(), 1);
    }

    #[test]
    fn missing_journal_means_nothing_was_created() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = RunDir::new(tmp.path(), &RunId::new());
        assert!(dir.resources().unwrap().is_empty());
        assert!(dir.load_record().unwrap().is_none());
    }
}
