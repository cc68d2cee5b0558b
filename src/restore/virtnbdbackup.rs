//! virtnbdbackup backup directories as an image source (`from = { virtnbdbackup = DIR }`).
//!
//! A directory holds one checkpoint chain as virtnbdbackup 1.9.15 writes it:
//! `<disk>.full.data`, `<disk>.inc.<checkpoint>.data`, `checkpoints/<checkpoint>.xml`,
//! `<vm>.cpt` (a JSON list of the checkpoint names in order), `vmconfig.<checkpoint>.xml` and
//! copies of the boot files (`<file name>.<checkpoint>`: loader, nvram, kernel, initrd). Each
//! `.data` file is a *sparse stream* that starts with a `meta` frame,
//! `meta START LENGTH\r\n<json>\r\n` (START and LENGTH 16 hex digits), whose JSON says which
//! disk and checkpoint it holds, its parent, and when it was taken (`date`: the backup host's
//! local time without zone, read here in the lab file's `zone`).
//!
//! [`scan`] reads the headers and checks the whole chain before anything is created: a full
//! backup first, every incremental's parent the checkpoint before it, the checkpoint list,
//! `checkpoints/*.xml` and the data files agreeing, every disk at every checkpoint. Each
//! checkpoint is a restore point; [`cache_key`] names the restored image of one in the restore
//! cache.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use serde::Deserialize;

/// Length of a sparse-stream frame header: `kind START LENGTH\r\n`.
pub const FRAME_LEN: usize = 4 + 1 + 16 + 1 + 16 + 2;
/// Largest meta frame read (virtnbdbackup writes a few hundred bytes).
const MAX_META: u64 = 64 * 1024;

/// The `meta` frame of a sparse stream.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamHeader {
    pub virtual_size: u64,
    pub data_size: u64,
    /// ISO 8601 local time without zone, as `datetime.now().isoformat()` writes it.
    pub date: String,
    pub disk_name: String,
    pub disk_format: String,
    pub checkpoint_name: String,
    /// virtnbdbackup writes `false`, or with `--compress` the lz4 level (`2` by default).
    #[serde(deserialize_with = "flag_or_level")]
    pub compressed: bool,
    #[serde(default)]
    pub compression_method: Option<String>,
    #[serde(default)]
    pub parent_checkpoint: Option<String>,
    pub incremental: bool,
    pub stream_version: u64,
}

/// `false`/`true`, or a compression level where 0 means uncompressed.
fn flag_or_level<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum FlagOrLevel {
        Flag(bool),
        Level(u64),
    }
    Ok(match FlagOrLevel::deserialize(d)? {
        FlagOrLevel::Flag(b) => b,
        FlagOrLevel::Level(n) => n != 0,
    })
}

/// Reads the `meta` frame at the start of a sparse stream.
pub fn parse_header(bytes: &[u8]) -> Result<StreamHeader> {
    let frame = bytes
        .get(..FRAME_LEN)
        .context("shorter than a sparse-stream frame header")?;
    let frame = std::str::from_utf8(frame).context("the frame header is not text")?;
    let Some(frame) = frame.strip_suffix("\r\n") else {
        bail!("the frame header does not end with CRLF");
    };
    let mut parts = frame.split(' ');
    let (Some(kind), Some(start), Some(length), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        bail!("the frame header is not `kind START LENGTH`");
    };
    if kind != "meta" {
        bail!("the first frame is {kind:?}, not a meta frame");
    }
    let hex = |s: &str| {
        (s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| u64::from_str_radix(s, 16).ok())
            .flatten()
    };
    let (Some(_start), Some(length)) = (hex(start), hex(length)) else {
        bail!("the meta frame's start or length is not 16 hex digits");
    };
    if length > MAX_META {
        bail!("the meta frame claims {length} bytes; a virtnbdbackup header has a few hundred");
    }
    let end = FRAME_LEN + length as usize;
    let json = bytes
        .get(FRAME_LEN..end)
        .context("the file ends inside the meta frame")?;
    if bytes.get(end..end + 2) != Some(b"\r\n") {
        bail!("the meta frame does not end with CRLF");
    }
    let header: StreamHeader =
        serde_json::from_slice(json).context("the meta frame is not virtnbdbackup's JSON")?;
    Ok(header)
}

/// Reads the header of one `.data` file.
pub fn read_header(path: &Path) -> Result<StreamHeader> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(FRAME_LEN as u64 + MAX_META + 2)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {}", path.display()))?;
    parse_header(&bytes).with_context(|| {
        format!(
            "{} is not a virtnbdbackup sparse stream (its first frame)",
            path.display()
        )
    })
}

/// The header's `date` read as wall-clock time in `zone`.
pub fn header_time(date: &str, zone: &TimeZone) -> Result<Timestamp> {
    let civil: DateTime = date
        .parse()
        .with_context(|| format!("date {date:?} is not an ISO 8601 local time"))?;
    zone.to_timestamp(civil)
        .with_context(|| format!("date {date:?} does not exist in the zone"))
}

/// Full backup or incremental.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Full,
    Inc,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Full => "full",
            Kind::Inc => "inc",
        }
    }
}

/// One `.data` file of the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataFile {
    /// File name in the backup directory.
    pub file: String,
    pub header: StreamHeader,
    pub bytes: u64,
    /// Modification time, nanoseconds since 1970 (for the cache key).
    pub mtime_ns: i128,
}

/// One checkpoint of the chain: a restore point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub name: String,
    pub kind: Kind,
    /// 0 for the full backup.
    pub position: usize,
    /// The newest header date of its disks.
    pub time: Timestamp,
    /// Its data file per disk target.
    pub files: BTreeMap<String, DataFile>,
    /// `vmconfig.<checkpoint>.xml`.
    pub vmconfig: PathBuf,
}

/// A checked chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub dir: PathBuf,
    /// Disk targets.
    pub disks: Vec<String>,
    /// Oldest (the full backup) first.
    pub checkpoints: Vec<Checkpoint>,
    /// What was ignored (`*.partial` files of a running backup), said once per scan.
    pub warnings: Vec<String>,
}

impl Chain {
    pub fn checkpoint(&self, name: &str) -> Option<&Checkpoint> {
        self.checkpoints.iter().find(|c| c.name == name)
    }

    /// The data files of one disk from the full backup up to and including `checkpoint`, in
    /// restore order.
    pub fn sequence(&self, disk: &str, checkpoint: &str) -> Vec<&DataFile> {
        let mut out = Vec::new();
        for c in &self.checkpoints {
            out.extend(c.files.get(disk));
            if c.name == checkpoint {
                break;
            }
        }
        out
    }

    /// The saved copy of a boot file (`<file name>.<checkpoint>`), if virtnbdbackup made one.
    pub fn boot_copy(&self, production: &str, checkpoint: &str) -> Option<PathBuf> {
        let name = Path::new(production).file_name()?.to_string_lossy();
        let copy = self.dir.join(format!("{name}.{checkpoint}"));
        copy.is_file().then_some(copy)
    }
}

/// What a data file's name says: disk and level (`full`, `inc.<checkpoint>`).
enum FileName {
    Full { disk: String },
    Inc { disk: String, checkpoint: String },
    Copy,
    Diff,
}

fn file_name(name: &str) -> Option<FileName> {
    let stem = name.strip_suffix(".data")?;
    let (disk, rest) = stem.split_once('.')?;
    let disk = disk.to_string();
    match rest {
        "full" => Some(FileName::Full { disk }),
        "copy" => Some(FileName::Copy),
        _ => {
            if let Some(cp) = rest.strip_prefix("inc.") {
                Some(FileName::Inc {
                    disk,
                    checkpoint: cp.to_string(),
                })
            } else if rest.starts_with("diff.") {
                Some(FileName::Diff)
            } else {
                None
            }
        }
    }
}

const FIX: &str = "restore the missing files from where the backups are stored, or start a new chain (virtnbdbackup -l full into an empty directory)";

/// Reads and checks the chain in `dir`. `vm` is for messages; `zone` is the backup host's
/// (the system's when `None`).
pub fn scan(dir: &Path, zone: Option<&str>, vm: &str) -> Result<Chain> {
    let zone = match zone {
        Some(z) => TimeZone::get(z).with_context(|| format!("vm {vm}: unknown zone {z:?}"))?,
        None => TimeZone::system(),
    };
    let at = format!("vm {vm}: virtnbdbackup directory {}", dir.display());
    if !dir.is_dir() {
        bail!("{at} does not exist; check from.virtnbdbackup in the lab file");
    }
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("{at}: listing it"))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();

    let mut warnings = Vec::new();
    let partial: Vec<&String> = names.iter().filter(|n| n.ends_with(".partial")).collect();
    if !partial.is_empty() {
        warnings.push(format!(
            "{at}: ignoring {} of a backup still running (or aborted): {}",
            if partial.len() == 1 {
                "a file"
            } else {
                "files"
            },
            partial
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }

    // The checkpoint list.
    let cpts: Vec<&String> = names.iter().filter(|n| n.ends_with(".cpt")).collect();
    let cpt = match cpts.as_slice() {
        [one] => (*one).clone(),
        [] => bail!(
            "{at} has no <domain>.cpt checkpoint list; reclab reads full and incremental chains (virtnbdbackup -l full, then -l inc); a -l copy backup has none: restore it with virtnbdrestore and use from = {{ xml, disks, taken }}"
        ),
        many => bail!(
            "{at} has several checkpoint lists ({}); one directory holds one domain's chain",
            many.iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let order: Vec<String> = serde_json::from_slice(
        &std::fs::read(dir.join(&cpt)).with_context(|| format!("{at}: reading {cpt}"))?,
    )
    .with_context(|| format!("{at}: {cpt} is not a JSON list of checkpoint names"))?;
    if order.is_empty() {
        bail!("{at}: {cpt} lists no checkpoint; {FIX}");
    }
    let listed: BTreeSet<&str> = order.iter().map(|s| s.as_str()).collect();
    if listed.len() != order.len() {
        bail!("{at}: {cpt} lists a checkpoint twice: {order:?}");
    }

    // checkpoints/*.xml must be the listed ones.
    let xmls: BTreeSet<String> = match std::fs::read_dir(dir.join("checkpoints")) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                e.file_name()
                    .to_string_lossy()
                    .strip_suffix(".xml")
                    .map(str::to_string)
            })
            .collect(),
        Err(_) => BTreeSet::new(),
    };
    for name in &order {
        if !xmls.contains(name) {
            bail!(
                "{at}: checkpoint {name} is listed in {cpt} but checkpoints/{name}.xml is missing; {FIX}"
            );
        }
    }
    if let Some(extra) = xmls.iter().find(|x| !listed.contains(x.as_str())) {
        bail!(
            "{at}: checkpoints/{extra}.xml is not in {cpt} ({}); the directory mixes chains: {FIX}",
            order.join(", ")
        );
    }

    // The data files, by checkpoint and disk.
    let mut by_cp: BTreeMap<String, BTreeMap<String, DataFile>> = BTreeMap::new();
    for name in names.iter().filter(|n| n.ends_with(".data")) {
        let (disk, claimed) = match file_name(name) {
            Some(FileName::Full { disk }) => (disk, None),
            Some(FileName::Inc { disk, checkpoint }) => (disk, Some(checkpoint)),
            Some(FileName::Copy) => bail!(
                "{at}: {name} is a -l copy backup, which has no checkpoints; restore it with virtnbdrestore and use from = {{ xml, disks, taken }}, or back up with -l full and -l inc"
            ),
            Some(FileName::Diff) => bail!(
                "{at}: {name} is a -l diff backup; reclab restores full + incremental chains only: back up with -l inc, or restore it with virtnbdrestore and use from = {{ xml, disks, taken }}"
            ),
            None => bail!(
                "{at}: {name} is not a virtnbdbackup data file name (<disk>.full.data or <disk>.inc.<checkpoint>.data)"
            ),
        };
        let path = dir.join(name);
        let header = read_header(&path).with_context(|| at.clone())?;
        let meta = std::fs::metadata(&path).with_context(|| format!("{at}: reading {name}"))?;
        let mtime_ns = meta
            .modified()
            .ok()
            .and_then(|m| Timestamp::try_from(m).ok())
            .map(|t| t.as_nanosecond())
            .unwrap_or(0);
        if header.disk_name != disk {
            bail!(
                "{at}: {name} holds disk {} by its header, not {disk}; the file was renamed: {FIX}",
                header.disk_name
            );
        }
        if let Some(claimed) = &claimed
            && &header.checkpoint_name != claimed
        {
            bail!(
                "{at}: {name} holds checkpoint {} by its header, not {claimed}; the file was renamed: {FIX}",
                header.checkpoint_name
            );
        }
        if header.incremental != claimed.is_some() {
            bail!(
                "{at}: {name}'s header says incremental = {}, its name says otherwise; {FIX}",
                header.incremental
            );
        }
        if header.compressed && header.compression_method.as_deref().unwrap_or("lz4") != "lz4" {
            bail!(
                "{at}: {name} is compressed with {:?}; virtnbdrestore 1.9.15 reads lz4 only",
                header.compression_method
            );
        }
        if !listed.contains(header.checkpoint_name.as_str()) {
            bail!(
                "{at}: {name} holds checkpoint {}, which {cpt} does not list ({}); the directory mixes chains: {FIX}",
                header.checkpoint_name,
                order.join(", ")
            );
        }
        let cp = by_cp.entry(header.checkpoint_name.clone()).or_default();
        if cp.contains_key(&disk) {
            bail!(
                "{at}: two data files hold disk {disk} at checkpoint {}",
                header.checkpoint_name
            );
        }
        cp.insert(
            disk,
            DataFile {
                file: name.clone(),
                header,
                bytes: meta.len(),
                mtime_ns,
            },
        );
    }
    let Some(first) = by_cp.get(&order[0]) else {
        bail!(
            "{at}: the full backup (checkpoint {}, first in {cpt}) has no data file; {FIX}",
            order[0]
        );
    };
    let disks: Vec<String> = first.keys().cloned().collect();

    let mut checkpoints = Vec::new();
    'chain: for (position, name) in order.iter().enumerate() {
        let n = order.len();
        let files = by_cp.remove(name).unwrap_or_default();
        for disk in &disks {
            let Some(f) = files.get(disk) else {
                let expected = if position == 0 {
                    format!("{disk}.full.data")
                } else {
                    format!("{disk}.inc.{name}.data")
                };
                // The newest checkpoint of a backup still running (or aborted): virtnbdbackup
                // has listed it and writes its data into `.partial`. It is no restore point;
                // the chain before it is whole.
                let running = names.contains(&format!("{expected}.partial"))
                    && order[position + 1..]
                        .iter()
                        .all(|later| !by_cp.contains_key(later));
                if position > 0 && running {
                    warnings.push(format!(
                        "{at}: checkpoint {name} ({} of {n} in {cpt}) is a backup still running (or aborted): its data is only in {expected}.partial, so it is no restore point",
                        position + 1
                    ));
                    break 'chain;
                }
                bail!(
                    "{at}: checkpoint {name} ({} of {n} in {cpt}) has no data file {expected}; the chain is broken there and no checkpoint from {name} on can be restored: {FIX}",
                    position + 1
                );
            };
            let kind = if f.header.incremental {
                Kind::Inc
            } else {
                Kind::Full
            };
            match (position, kind) {
                (0, Kind::Inc) => bail!(
                    "{at}: the chain starts with incremental {} ({}), not a full backup; {FIX}",
                    f.file,
                    name
                ),
                (p, Kind::Full) if p > 0 => bail!(
                    "{at}: {} is a full backup at position {} of {n} ({name}); a chain has one full backup, first",
                    f.file,
                    p + 1
                ),
                _ => {}
            }
            if position > 0 {
                let want = &order[position - 1];
                if f.header.parent_checkpoint.as_deref() != Some(want.as_str()) {
                    bail!(
                        "{at}: incremental {} (checkpoint {name}) has parent {} but the checkpoint before it in {cpt} is {want}; an incremental is missing or out of order: {FIX}",
                        f.file,
                        f.header.parent_checkpoint.as_deref().unwrap_or("none")
                    );
                }
            }
        }
        if let Some(extra) = files.keys().find(|d| !disks.contains(d)) {
            bail!(
                "{at}: checkpoint {name} has disk {extra}, which the full backup does not have; {FIX}"
            );
        }
        let mut time: Option<Timestamp> = None;
        for f in files.values() {
            let t = header_time(&f.header.date, &zone)
                .with_context(|| format!("{at}: the header of {}", f.file))?;
            time = time.max(Some(t));
        }
        let vmconfig = dir.join(format!("vmconfig.{name}.xml"));
        if !vmconfig.is_file() {
            bail!(
                "{at}: checkpoint {name} has no vmconfig.{name}.xml (the domain XML virtnbdbackup saved with it); {FIX}"
            );
        }
        checkpoints.push(Checkpoint {
            name: name.clone(),
            kind: if position == 0 { Kind::Full } else { Kind::Inc },
            position,
            time: time.context("a checkpoint without disks")?,
            files,
            vmconfig,
        });
    }
    for pair in checkpoints.windows(2) {
        if pair[1].time < pair[0].time {
            bail!(
                "{at}: checkpoint {} ({}) is dated before {} ({}) by their headers; the chain is out of order: {FIX}",
                pair[1].name,
                pair[1].time,
                pair[0].name,
                pair[0].time
            );
        }
    }
    Ok(Chain {
        dir: dir.to_path_buf(),
        disks,
        checkpoints,
        warnings,
    })
}

/// The restore cache's name for `checkpoint` of `chain`: a hash of the canonical directory,
/// the checkpoint and the name, size and modification time of every data file up to it, so
/// that a changed or replaced file makes a new entry.
pub fn cache_key(chain: &Chain, checkpoint: &str) -> Result<String> {
    use sha2::{Digest, Sha256};
    let dir = std::fs::canonicalize(&chain.dir)
        .with_context(|| format!("resolving {}", chain.dir.display()))?;
    let mut h = Sha256::new();
    h.update(b"reclab.restore-cache/1\0");
    h.update(dir.as_os_str().as_encoded_bytes());
    h.update(b"\0");
    h.update(checkpoint.as_bytes());
    h.update(b"\0");
    for disk in &chain.disks {
        for f in chain.sequence(disk, checkpoint) {
            h.update(format!("{}\0{}\0{}\0", f.file, f.bytes, f.mtime_ns).as_bytes());
        }
    }
    let hex: String = h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(hex)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A sparse stream's first frames as virtnbdbackup writes them.
    pub(crate) fn stream(disk: &str, cp: &str, parent: Option<&str>, date: &str) -> Vec<u8> {
        let json = serde_json::json!({
            "virtualSize": 1u64 << 30, "dataSize": 4096, "date": date, "diskName": disk,
            "diskFormat": "qcow2", "checkpointName": cp, "compressed": false,
            "compressionMethod": "lz4", "parentCheckpoint": parent,
            "incremental": parent.is_some(), "streamVersion": 2
        });
        let json = serde_json::to_string_pretty(&json).unwrap();
        let mut out = format!("meta {:016x} {:016x}\r\n", 0, json.len()).into_bytes();
        out.extend(json.as_bytes());
        out.extend(b"\r\n");
        out.extend(format!("data {:016x} {:016x}\r\n", 0, 4).as_bytes());
        out.extend(b"abcd\r\nstop 0000000000000000 0000000000000000\r\n");
        out
    }

    /// A chain directory: `cps` checkpoints `virtnbdbackup.N`, hourly from 22:00, disks `disks`.
    pub(crate) fn chain_dir(dir: &Path, disks: &[&str], cps: usize) {
        std::fs::create_dir_all(dir.join("checkpoints")).unwrap();
        let names: Vec<String> = (0..cps).map(|i| format!("virtnbdbackup.{i}")).collect();
        std::fs::write(
            dir.join("prod-db.cpt"),
            serde_json::to_string(&names).unwrap(),
        )
        .unwrap();
        for (i, name) in names.iter().enumerate() {
            let date = "2026-11-30T22:00:00"
                .parse::<DateTime>()
                .unwrap()
                .checked_add(jiff::SignedDuration::from_hours(i as i64))
                .unwrap()
                .strftime("%Y-%m-%dT%H:%M:%S.123456")
                .to_string();
            for disk in disks {
                let (file, parent) = if i == 0 {
                    (format!("{disk}.full.data"), None)
                } else {
                    (
                        format!("{disk}.inc.{name}.data"),
                        Some(names[i - 1].as_str()),
                    )
                };
                std::fs::write(dir.join(file), stream(disk, name, parent, &date)).unwrap();
            }
            std::fs::write(
                dir.join(format!("checkpoints/{name}.xml")),
                "<domaincheckpoint/>",
            )
            .unwrap();
            std::fs::write(dir.join(format!("vmconfig.{name}.xml")), "<domain/>").unwrap();
        }
    }

    #[test]
    fn the_header_of_a_stream_is_read() {
        let h = parse_header(&stream(
            "vda",
            "virtnbdbackup.1",
            Some("virtnbdbackup.0"),
            "2026-11-30T23:00:00.5",
        ))
        .unwrap();
        assert_eq!(h.disk_name, "vda");
        assert_eq!(h.checkpoint_name, "virtnbdbackup.1");
        assert_eq!(h.parent_checkpoint.as_deref(), Some("virtnbdbackup.0"));
        assert!(h.incremental);
        assert_eq!(h.virtual_size, 1 << 30);
        let zurich = TimeZone::get("Europe/Zurich").unwrap();
        assert_eq!(
            header_time(&h.date, &zurich).unwrap(),
            "2026-11-30T22:00:00.5Z".parse::<Timestamp>().unwrap()
        );
    }

    #[test]
    fn headers_virtnbdbackup_wrote_are_read() {
        // The meta frames of a real chain of the demo prod-db (tests/fixtures/virtnbdbackup),
        // taken with the backup host's clock in Europe/Zurich.
        let full = parse_header(include_bytes!(
            "../../tests/fixtures/virtnbdbackup/vda.full.meta"
        ))
        .unwrap();
        assert_eq!(full.checkpoint_name, "virtnbdbackup.0");
        // A full backup has no parent: virtnbdbackup writes "".
        assert_eq!(full.parent_checkpoint.as_deref(), Some(""));
        assert!(!full.incremental && !full.compressed);
        assert_eq!(full.virtual_size, 256 << 20);
        // `virtnbdbackup -z` writes the lz4 level, not a flag (found by the e2e test's
        // compressed chain; the fixture is the uncompressed header with that one field).
        let lz4 = parse_header(include_bytes!(
            "../../tests/fixtures/virtnbdbackup/vda.full.compressed.meta"
        ))
        .unwrap();
        assert!(lz4.compressed);
        assert_eq!(lz4.compression_method.as_deref(), Some("lz4"));
        let inc = parse_header(include_bytes!(
            "../../tests/fixtures/virtnbdbackup/vda.inc.virtnbdbackup.2.meta"
        ))
        .unwrap();
        assert_eq!(inc.checkpoint_name, "virtnbdbackup.2");
        assert_eq!(inc.parent_checkpoint.as_deref(), Some("virtnbdbackup.1"));
        assert_eq!(inc.date, "2026-12-01T18:00:38.612990");
        assert_eq!(inc.stream_version, 2);
        let zurich = TimeZone::get("Europe/Zurich").unwrap();
        assert_eq!(
            header_time(&inc.date, &zurich).unwrap(),
            "2026-12-01T17:00:38.61299Z".parse::<Timestamp>().unwrap()
        );
    }

    #[test]
    fn malformed_headers_are_errors_never_panics() {
        let good = stream("vda", "virtnbdbackup.0", None, "2026-11-30T22:00:00");
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (Vec::new(), "shorter than"),
            (b"meta".to_vec(), "shorter than"),
            (good[..30].to_vec(), "shorter than"),
            (
                [b"data".as_slice(), &good[4..]].concat(),
                "not a meta frame",
            ),
            (
                [&good[..21], b"x".as_slice(), &good[22..]].concat(),
                "not `kind START LENGTH`",
            ),
            (
                [&good[..5], b"000000000000000g".as_slice(), &good[21..]].concat(),
                "16 hex digits",
            ),
            (
                [&good[..22], b"ffffffffffffffff".as_slice(), &good[38..]].concat(),
                "claims",
            ),
            (good[..FRAME_LEN + 10].to_vec(), "ends inside"),
            (
                [&good[..38], b"\n\n".as_slice(), &good[40..]].concat(),
                "CRLF",
            ),
        ];
        for (bytes, want) in cases {
            let err = format!("{:#}", parse_header(&bytes).unwrap_err());
            assert!(err.contains(want), "{want}: {err}");
        }
        // Bad JSON inside a well-formed frame.
        let json = br#"{"virtualSize": "big"}"#;
        let mut bad = format!("meta {:016x} {:016x}\r\n", 0, json.len()).into_bytes();
        bad.extend(json);
        bad.extend(b"\r\n");
        let err = format!("{:#}", parse_header(&bad).unwrap_err());
        assert!(err.contains("not virtnbdbackup's JSON"), "{err}");
        // Every truncation and every single-byte change of a good header: an answer, no panic.
        for n in 0..good.len() {
            let _ = parse_header(&good[..n]);
            for b in [0u8, b' ', b'\r', b'f', 0xff] {
                let mut changed = good.clone();
                changed[n] = b;
                let _ = parse_header(&changed);
            }
        }
        assert!(header_time("yesterday", &TimeZone::UTC).is_err());
    }

    #[test]
    fn the_newest_checkpoint_of_a_running_backup_is_no_point_and_the_chain_before_it_stands() {
        let tmp = tempfile::tempdir().unwrap();
        chain_dir(tmp.path(), &["vda"], 4);
        // virtnbdbackup has listed virtnbdbackup.3 and writes its data into .partial.
        let data = tmp.path().join("vda.inc.virtnbdbackup.3.data");
        std::fs::rename(
            &data,
            tmp.path().join("vda.inc.virtnbdbackup.3.data.partial"),
        )
        .unwrap();
        let chain = scan(tmp.path(), Some("Europe/Zurich"), "db").unwrap();
        let names: Vec<&str> = chain.checkpoints.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            ["virtnbdbackup.0", "virtnbdbackup.1", "virtnbdbackup.2"]
        );
        assert!(
            chain
                .warnings
                .iter()
                .any(|w| w.contains("checkpoint virtnbdbackup.3 (4 of 4")
                    && w.contains("still running")),
            "{:?}",
            chain.warnings
        );
        // A missing middle incremental with no .partial is still a broken chain.
        std::fs::remove_file(tmp.path().join("vda.inc.virtnbdbackup.1.data")).unwrap();
        assert!(scan(tmp.path(), Some("Europe/Zurich"), "db").is_err());
    }

    #[test]
    fn a_good_chain_gives_one_point_per_checkpoint() {
        let tmp = tempfile::tempdir().unwrap();
        chain_dir(tmp.path(), &["vda", "vdb"], 3);
        std::fs::write(tmp.path().join("vda.inc.virtnbdbackup.3.data.partial"), "x").unwrap();
        let chain = scan(tmp.path(), Some("Europe/Zurich"), "db").unwrap();
        assert_eq!(chain.disks, ["vda", "vdb"]);
        let names: Vec<&str> = chain.checkpoints.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            ["virtnbdbackup.0", "virtnbdbackup.1", "virtnbdbackup.2"]
        );
        assert_eq!(chain.checkpoints[0].kind, Kind::Full);
        assert_eq!(chain.checkpoints[2].kind, Kind::Inc);
        assert_eq!(
            chain.checkpoints[0].time,
            "2026-11-30T21:00:00.123456Z".parse::<Timestamp>().unwrap()
        );
        assert_eq!(
            chain.checkpoints[2].time,
            "2026-11-30T23:00:00.123456Z".parse::<Timestamp>().unwrap()
        );
        assert_eq!(chain.warnings.len(), 1);
        assert!(chain.warnings[0].contains("vda.inc.virtnbdbackup.3.data.partial"));
        let seq: Vec<&str> = chain
            .sequence("vdb", "virtnbdbackup.1")
            .iter()
            .map(|f| f.file.as_str())
            .collect();
        assert_eq!(seq, ["vdb.full.data", "vdb.inc.virtnbdbackup.1.data"]);
    }

    fn broken(edit: impl Fn(&Path)) -> String {
        let tmp = tempfile::tempdir().unwrap();
        chain_dir(tmp.path(), &["vda"], 3);
        edit(tmp.path());
        format!("{:#}", scan(tmp.path(), Some("UTC"), "db").unwrap_err())
    }

    #[test]
    fn a_broken_chain_is_refused_naming_the_file_and_the_checkpoint() {
        let err = broken(|d| std::fs::remove_file(d.join("vda.inc.virtnbdbackup.1.data")).unwrap());
        assert!(
            err.contains("checkpoint virtnbdbackup.1 (2 of 3 in prod-db.cpt) has no data file vda.inc.virtnbdbackup.1.data"),
            "{err}"
        );
        assert!(
            err.contains("virtnbdbackup -l full into an empty directory"),
            "{err}"
        );
        let err = broken(|d| std::fs::remove_file(d.join("vda.full.data")).unwrap());
        assert!(
            err.contains("the full backup (checkpoint virtnbdbackup.0"),
            "{err}"
        );
        // The middle incremental gone from the list as well: the next one's parent is missing.
        let err = broken(|d| {
            std::fs::remove_file(d.join("vda.inc.virtnbdbackup.1.data")).unwrap();
            std::fs::remove_file(d.join("checkpoints/virtnbdbackup.1.xml")).unwrap();
            std::fs::write(
                d.join("prod-db.cpt"),
                r#"["virtnbdbackup.0","virtnbdbackup.2"]"#,
            )
            .unwrap();
        });
        assert!(
            err.contains("incremental vda.inc.virtnbdbackup.2.data (checkpoint virtnbdbackup.2) has parent virtnbdbackup.1 but the checkpoint before it in prod-db.cpt is virtnbdbackup.0"),
            "{err}"
        );
        // The list out of order.
        let err = broken(|d| {
            std::fs::write(
                d.join("prod-db.cpt"),
                r#"["virtnbdbackup.0","virtnbdbackup.2","virtnbdbackup.1"]"#,
            )
            .unwrap()
        });
        assert!(
            err.contains("an incremental is missing or out of order"),
            "{err}"
        );
        let err =
            broken(|d| std::fs::remove_file(d.join("checkpoints/virtnbdbackup.2.xml")).unwrap());
        assert!(
            err.contains("checkpoints/virtnbdbackup.2.xml is missing"),
            "{err}"
        );
        let err =
            broken(|d| std::fs::write(d.join("checkpoints/virtnbdbackup.9.xml"), "").unwrap());
        assert!(
            err.contains("checkpoints/virtnbdbackup.9.xml is not in prod-db.cpt"),
            "{err}"
        );
        let err = broken(|d| std::fs::remove_file(d.join("prod-db.cpt")).unwrap());
        assert!(err.contains("has no <domain>.cpt"), "{err}");
        let err = broken(|d| std::fs::write(d.join("vda.copy.data"), "").unwrap());
        assert!(err.contains("vda.copy.data is a -l copy backup"), "{err}");
        let err = broken(|d| std::fs::write(d.join("vda.diff.1764540000.data"), "").unwrap());
        assert!(err.contains("is a -l diff backup"), "{err}");
        let err = broken(|d| {
            std::fs::rename(
                d.join("vda.inc.virtnbdbackup.2.data"),
                d.join("vda.inc.virtnbdbackup.1.data"),
            )
            .unwrap()
        });
        assert!(
            err.contains("holds checkpoint virtnbdbackup.2 by its header, not virtnbdbackup.1"),
            "{err}"
        );
        let err = broken(|d| std::fs::remove_file(d.join("vmconfig.virtnbdbackup.1.xml")).unwrap());
        assert!(err.contains("has no vmconfig.virtnbdbackup.1.xml"), "{err}");
        let err =
            broken(|d| std::fs::write(d.join("vda.inc.virtnbdbackup.2.data"), "garbage").unwrap());
        assert!(
            err.contains("vda.inc.virtnbdbackup.2.data is not a virtnbdbackup sparse stream"),
            "{err}"
        );
        let err = format!(
            "{:#}",
            scan(Path::new("/nonexistent/r3"), None, "db").unwrap_err()
        );
        assert!(
            err.contains("does not exist; check from.virtnbdbackup"),
            "{err}"
        );
    }

    #[test]
    fn the_cache_key_changes_with_the_checkpoint_and_the_files_up_to_it() {
        let tmp = tempfile::tempdir().unwrap();
        chain_dir(tmp.path(), &["vda"], 3);
        let chain = scan(tmp.path(), Some("UTC"), "db").unwrap();
        let k1 = cache_key(&chain, "virtnbdbackup.1").unwrap();
        assert_eq!(k1, cache_key(&chain, "virtnbdbackup.1").unwrap());
        assert_ne!(k1, cache_key(&chain, "virtnbdbackup.2").unwrap());
        assert_eq!(k1.len(), 32);
        // A later file changing does not touch an earlier point; an earlier one does.
        let later = tmp.path().join("vda.inc.virtnbdbackup.2.data");
        let mut bytes = std::fs::read(&later).unwrap();
        bytes.extend(b"more");
        std::fs::write(&later, &bytes).unwrap();
        let rescanned = scan(tmp.path(), Some("UTC"), "db").unwrap();
        assert_eq!(k1, cache_key(&rescanned, "virtnbdbackup.1").unwrap());
        let earlier = tmp.path().join("vda.full.data");
        let mut bytes = std::fs::read(&earlier).unwrap();
        bytes.extend(b"more");
        std::fs::write(&earlier, &bytes).unwrap();
        let rescanned = scan(tmp.path(), Some("UTC"), "db").unwrap();
        assert_ne!(k1, cache_key(&rescanned, "virtnbdbackup.1").unwrap());
    }
}
