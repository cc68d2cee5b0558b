//! The restore cache: VM images restored from virtnbdbackup chains, under
//! `STATE/restore-cache/<key>/` (one image per disk target, named by the target), so that a
//! later drill at the same checkpoint reuses them instead of restoring again.
//!
//! - An entry is made in `.tmp-<key>-<run8>` and renamed into place when complete: an
//!   interrupted restore never leaves a half entry (the temporary directory is in the run's
//!   journal and goes with the run).
//! - A run that uses an entry holds a lease, `leases/<key>@<run8>`, journaled like every other
//!   resource and removed by the run's teardown (or `gc`). An entry with a lease whose run
//!   directory still exists is never evicted: a live lab's overlays sit on it.
//! - The cache is bounded ([`max_bytes`]: `RECLAB_RESTORE_CACHE_MAX`, default 50 GiB); after a
//!   restore, the least recently used entries without a live lease go until it fits. Use is
//!   the modification time of the entry's `entry.json`, touched by every hit.
//! - Lookups, leases and eviction happen under `restore-cache/lock` (an `flock`); the restore
//!   itself runs outside it.

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[cfg(test)]
use crate::base::names::RunId;
use crate::lab::host::Host;
use crate::lab::journal::RunDir;
use crate::lab::plan::RestorePlan;
use crate::lab::record::RestoreRecord;

/// The cache bound when `RECLAB_RESTORE_CACHE_MAX` is not set: 50 GiB.
pub const DEFAULT_MAX: u64 = 50 << 30;
/// The environment variable that bounds the cache: bytes, or with a K, M, G or T suffix
/// (powers of 1024), like `20G`.
pub const MAX_ENV: &str = "RECLAB_RESTORE_CACHE_MAX";
/// The file that marks a complete entry and records where it came from.
const ENTRY_FILE: &str = "entry.json";

/// What an entry records about itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct EntryInfo {
    dir: PathBuf,
    checkpoint: String,
    disks: Vec<String>,
    created: String,
}

/// The cache bound: [`MAX_ENV`] or [`DEFAULT_MAX`].
pub fn max_bytes() -> Result<u64> {
    match std::env::var(MAX_ENV) {
        Ok(text) => parse_size(&text).with_context(|| format!("{MAX_ENV}={text:?}")),
        Err(_) => Ok(DEFAULT_MAX),
    }
}

/// `123`, `500M`, `20G`, `1T` (powers of 1024).
pub fn parse_size(text: &str) -> Result<u64> {
    let t = text.trim();
    let (num, shift) = match t.char_indices().last() {
        Some((i, 'K' | 'k')) => (&t[..i], 10),
        Some((i, 'M' | 'm')) => (&t[..i], 20),
        Some((i, 'G' | 'g')) => (&t[..i], 30),
        Some((i, 'T' | 't')) => (&t[..i], 40),
        _ => (t, 0),
    };
    let n: u64 = num
        .trim()
        .parse()
        .ok()
        .context("not a size; write bytes or a number with K, M, G or T, like 20G")?;
    n.checked_mul(1u64 << shift)
        .context("the size is too large")
}

/// Held while the cache is looked up, leased or evicted (the `flock` goes with the file).
struct CacheLock(#[allow(dead_code)] std::fs::File);

fn lock(cache: &Path) -> Result<CacheLock> {
    std::fs::create_dir_all(cache.join("leases"))
        .with_context(|| format!("creating the restore cache {}", cache.display()))?;
    let path = cache.join("lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: flock on a file descriptor we own; blocks until the lock is ours.
    if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&f), libc::LOCK_EX) } != 0 {
        bail!(
            "locking {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
    }
    Ok(CacheLock(f))
}

fn complete(entry: &Path) -> bool {
    entry.join(ENTRY_FILE).is_file()
}

fn touch(path: &Path) -> Result<()> {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    f.set_modified(std::time::SystemTime::now())
        .with_context(|| format!("touching {}", path.display()))
}

fn write_lease(r: &RestorePlan) -> Result<()> {
    std::fs::write(&r.lease, r.vm.as_bytes())
        .with_context(|| format!("writing the lease {}", r.lease.display()))
}

/// The restore step of `up`: reuse the entry (a hit), or restore the checkpoint with
/// `virtnbdrestore` into a temporary directory renamed into place (a miss); either way the
/// run takes a lease on it. `uri` is the lab's libvirt connection (virtnbdrestore needs one).
pub fn restore(host: &dyn Host, r: &RestorePlan, uri: &str) -> Result<RestoreRecord> {
    let b = &r.restore;
    let entry = b.entry();
    let t = Instant::now();
    let record = |hit: bool, t: Instant| RestoreRecord {
        vm: r.vm.clone(),
        backup: b.dir.display().to_string(),
        checkpoint: b.checkpoint.clone(),
        entry: entry.display().to_string(),
        cache: if hit { "hit".into() } else { "miss".into() },
        seconds: t.elapsed().as_secs_f64(),
        bytes: b.bytes,
    };
    {
        let _lock = lock(&b.cache)?;
        write_lease(r)?;
        if complete(&entry) {
            touch(&entry.join(ENTRY_FILE))?;
            crate::lab::execute::progress(format!(
                "{}: checkpoint {} of {}: reusing the restore cache entry {}",
                r.vm,
                b.checkpoint,
                b.dir.display(),
                entry.display()
            ));
            return Ok(record(true, t));
        }
    }
    crate::lab::execute::progress(format!(
        "{}: restoring checkpoint {} of {} with virtnbdrestore ({} MiB of backup data; this takes seconds to minutes)",
        r.vm,
        b.checkpoint,
        b.dir.display(),
        b.bytes >> 20
    ));
    match std::fs::remove_dir_all(&r.tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing {}", r.tmp.display())),
    }
    std::fs::create_dir(&r.tmp).with_context(|| format!("creating {}", r.tmp.display()))?;
    for (disk, files) in &b.disks {
        let d = Instant::now();
        host.restore_backup(uri, &b.dir, &r.tmp, disk, files)
            .with_context(|| {
                format!(
                    "vm {}: restoring disk {disk} at checkpoint {} from {}",
                    r.vm,
                    b.checkpoint,
                    b.dir.display()
                )
            })?;
        let image = r.tmp.join(disk);
        if !image.is_file() {
            bail!(
                "vm {}: virtnbdrestore finished but wrote no {}; see its output above",
                r.vm,
                image.display()
            );
        }
        crate::lab::execute::progress(format!(
            "{}: disk {disk} restored in {:.1} s",
            r.vm,
            d.elapsed().as_secs_f64()
        ));
    }
    let info = EntryInfo {
        dir: b.dir.clone(),
        checkpoint: b.checkpoint.clone(),
        disks: b.disks.iter().map(|(d, _)| d.clone()).collect(),
        created: jiff::Timestamp::now().to_string(),
    };
    std::fs::write(
        r.tmp.join(ENTRY_FILE),
        serde_json::to_vec_pretty(&info).expect("entry info serializes"),
    )
    .with_context(|| format!("writing {}", r.tmp.join(ENTRY_FILE).display()))?;
    let _lock = lock(&b.cache)?;
    if complete(&entry) {
        // Another run restored the same point meanwhile: use its entry.
        std::fs::remove_dir_all(&r.tmp).with_context(|| format!("removing {}", r.tmp.display()))?;
        touch(&entry.join(ENTRY_FILE))?;
        return Ok(record(true, t));
    }
    let _ = std::fs::remove_dir_all(&entry);
    std::fs::rename(&r.tmp, &entry)
        .with_context(|| format!("renaming {} to {}", r.tmp.display(), entry.display()))?;
    let rec = record(false, t);
    let state_dir = b.cache.parent().context("the restore cache has a parent")?;
    let evicted = evict(&b.cache, state_dir, max_bytes()?)?;
    for e in evicted {
        crate::lab::execute::progress(format!("restore cache: evicted {}", e.display()));
    }
    Ok(rec)
}

/// One entry as eviction sees it.
#[derive(Debug)]
struct Entry {
    path: PathBuf,
    key: String,
    bytes: u64,
    used: std::time::SystemTime,
}

/// Bytes a directory takes on disk (allocated blocks: restored images are sparse).
fn du(path: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(path) {
        for e in rd.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => total += du(&e.path()),
                Ok(m) => total += m.blocks() * 512,
                Err(_) => {}
            }
        }
    }
    total
}

/// The keys with a lease of a run whose directory still exists; stale leases are removed.
fn leased(cache: &Path, state_dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(cache.join("leases")) else {
        return out;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some((key, run)) = name.split_once('@') else {
            continue;
        };
        if RunDir::runs_root(state_dir).join(run).exists() {
            out.push(key.to_string());
        } else {
            let _ = std::fs::remove_file(e.path());
        }
    }
    out
}

/// Evicts the least recently used entries without a live lease until the cache holds at most
/// `max` bytes; returns the entries removed. Call with the cache lock held.
fn evict(cache: &Path, state_dir: &Path, max: u64) -> Result<Vec<PathBuf>> {
    let leased = leased(cache, state_dir);
    let mut entries: Vec<Entry> = std::fs::read_dir(cache)
        .with_context(|| format!("listing {}", cache.display()))?
        .flatten()
        .filter(|e| complete(&e.path()))
        .map(|e| {
            let path = e.path();
            let used = std::fs::metadata(path.join(ENTRY_FILE))
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            Entry {
                key: e.file_name().to_string_lossy().into_owned(),
                bytes: du(&path),
                used,
                path,
            }
        })
        .collect();
    let mut total: u64 = entries.iter().map(|e| e.bytes).sum();
    entries.sort_by_key(|e| e.used);
    let mut removed = Vec::new();
    for e in entries {
        if total <= max {
            break;
        }
        if leased.contains(&e.key) {
            continue;
        }
        std::fs::remove_dir_all(&e.path)
            .with_context(|| format!("evicting {}", e.path.display()))?;
        total = total.saturating_sub(e.bytes);
        removed.push(e.path);
    }
    if total > max {
        eprintln!(
            "reclab: warning: the restore cache {} holds {} MiB, over its bound of {} MiB ({MAX_ENV}), and every entry left is in use by a lab",
            cache.display(),
            total >> 20,
            max >> 20
        );
    }
    Ok(removed)
}

/// Evicts from the restore cache of a state directory down to `max` bytes (see
/// [`crate::lab::resolve::restore_cache_dir`]); returns the entries removed.
pub fn evict_now(state_dir: &Path, max: u64) -> Result<Vec<PathBuf>> {
    let cache = crate::lab::resolve::restore_cache_dir(state_dir);
    if !cache.exists() {
        return Ok(Vec::new());
    }
    let _lock = lock(&cache)?;
    evict(&cache, state_dir, max)
}

/// Removes the leases that a state directory's runs no longer hold: those of run `short`
/// (a run gc swept, whose journal that would have removed them is gone), and every lease of a
/// run whose directory is gone.
pub fn drop_stale_leases(state_dir: &Path, short: Option<&str>) -> Result<()> {
    let cache = crate::lab::resolve::restore_cache_dir(state_dir);
    let leases = cache.join("leases");
    if !leases.exists() {
        return Ok(());
    }
    let _lock = lock(&cache)?;
    if let Some(short) = short {
        for e in std::fs::read_dir(&leases)
            .with_context(|| format!("listing {}", leases.display()))?
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.split_once('@').is_some_and(|(_, run)| run == short) {
                std::fs::remove_file(e.path())
                    .with_context(|| format!("removing the lease {}", e.path().display()))?;
            }
        }
    }
    leased(&cache, state_dir);
    Ok(())
}

/// A lease as [`restore`] writes it, for tests that build entries by hand.
#[cfg(test)]
fn lease_for(cache: &Path, key: &str, run: &RunId) -> PathBuf {
    crate::base::names::restore_lease(cache, key, run)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(cache: &Path, key: &str, bytes: usize, age_s: u64) {
        let e = cache.join(key);
        std::fs::create_dir_all(&e).unwrap();
        std::fs::write(e.join("vda"), vec![1u8; bytes]).unwrap();
        std::fs::write(e.join(ENTRY_FILE), "{}").unwrap();
        let f = std::fs::File::options()
            .write(true)
            .open(e.join(ENTRY_FILE))
            .unwrap();
        f.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(age_s))
            .unwrap();
    }

    #[test]
    fn sizes_read_bytes_and_binary_suffixes() {
        assert_eq!(parse_size("123").unwrap(), 123);
        assert_eq!(parse_size("20G").unwrap(), 20 << 30);
        assert_eq!(parse_size("500m").unwrap(), 500 << 20);
        assert_eq!(parse_size(" 1T ").unwrap(), 1 << 40);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("G").is_err());
        assert!(parse_size("99999999999T").is_err());
    }

    #[test]
    fn eviction_takes_the_least_recently_used_and_never_a_leased_entry() {
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path();
        let cache = state.join("restore-cache");
        std::fs::create_dir_all(cache.join("leases")).unwrap();
        // Oldest first: a (leased by a live run), b, c, d (newest).
        entry(&cache, "a", 1 << 20, 400);
        entry(&cache, "b", 1 << 20, 300);
        entry(&cache, "c", 1 << 20, 200);
        entry(&cache, "d", 1 << 20, 100);
        // A half-made entry (no entry.json) is not an entry.
        std::fs::create_dir_all(cache.join(".tmp-e-12345678")).unwrap();
        let live = RunId::new();
        std::fs::create_dir_all(RunDir::new(state, &live).path).unwrap();
        std::fs::write(lease_for(&cache, "a", &live), "db").unwrap();
        // A lease of a run that is gone protects nothing, and is cleaned up.
        let gone = RunId::new();
        std::fs::write(lease_for(&cache, "b", &gone), "db").unwrap();

        let each = du(&cache.join("a"));
        assert!(each >= 1 << 20, "{each}");
        let removed = evict(&cache, state, 2 * each + each / 2).unwrap();
        let names: Vec<String> = removed
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["b", "c"],
            "the leased a stays although it is oldest"
        );
        assert!(cache.join("a").exists() && cache.join("d").exists());
        assert!(!lease_for(&cache, "b", &gone).exists());
        assert!(lease_for(&cache, "a", &live).exists());
        // Under the bound nothing goes; with every entry leased, nothing goes either.
        assert!(evict(&cache, state, 10 * each).unwrap().is_empty());
        std::fs::write(lease_for(&cache, "d", &live), "db").unwrap();
        assert!(evict(&cache, state, 0).unwrap().is_empty());
        assert!(cache.join("a").exists() && cache.join("d").exists());
        // The run gone, its leases protect nothing.
        std::fs::remove_dir_all(RunDir::new(state, &live).path).unwrap();
        assert_eq!(evict(&cache, state, 0).unwrap().len(), 2);
    }
}
