//! Data disks: read-only disk images that carry dumps into a lab VM through the hypervisor.
//!
//! An image holds the chosen dump files, their manifests, and a `SHA256SUMS` listing every
//! file's sha256 so that the guest can verify what it received (`sha256sum -c SHA256SUMS` in
//! the mount point). It is built without root and without mounting anything:
//!
//! - **ext4** (the default): `mke2fs -t ext4 -d STAGING` makes the file system with an empty
//!   inode per file (and `SHA256SUMS`). No journal (the guest mounts it read-only), no reserved
//!   blocks, the root directory owned by root, label `RECLAB`; the size is the content plus
//!   slack. Then `debugfs` allocates each file's blocks (`fallocate`, marked written) and sets
//!   its size, and the bytes go straight into the image at those blocks with `copy_file_range`,
//!   as fast as `cp` (`mke2fs -d` copying them itself writes block by block, about 5x slower);
//!   holes in a sparse dump are skipped, so they stay holes in the image. `e2fsck -fn` checks
//!   the file system before the data goes in. A name debugfs cannot take (a `"`, `\` or
//!   control character) falls back to `mke2fs -d` copying the files.
//! - **iso**: ISO 9660 with Rock Ridge and Joliet, level 3 (files above 4 GiB), label
//!   `RECLAB`, built with `xorriso` (Debian package `xorriso`) or else `genisoimage`.
//!
//! The staging directory next to the image holds the placeholders (ext4), or hard links to the
//! dumps where the file system allows it (no copy), else copies; it is removed when the image is
//! done, and a failed build leaves no image.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::restore::manifest::sha256_file;
use crate::spec::DiskFormat;

/// The volume label of every data disk; guests can find it as `/dev/disk/by-label/RECLAB`.
pub const LABEL: &str = "RECLAB";
/// The checksum file written into every data disk.
pub const SUMS: &str = "SHA256SUMS";

pub use crate::restore::record::DataDiskFile;
use crate::restore::record::{DataDisk, DiskEntry};

/// Builds a data disk image at `image` (replacing any file there) holding `files` and a
/// `SHA256SUMS` of them.
pub fn build_data_disk(
    files: &[DataDiskFile],
    format: DiskFormat,
    image: &Path,
) -> Result<DataDisk> {
    let mut names: Vec<&str> = Vec::new();
    for file in files {
        let name = file.name.as_str();
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            bail!("cannot put {name:?} on a data disk: use a plain file name");
        }
        if name == SUMS {
            bail!("cannot put a file named {SUMS} on a data disk: reclab writes its own");
        }
        if names.contains(&name) {
            bail!("cannot put two files named {name:?} on one data disk");
        }
        names.push(name);
    }
    let parent = image
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let staging = tempfile::Builder::new()
        .prefix(".reclab-datadisk-")
        .tempdir_in(parent)
        .with_context(|| format!("creating a staging directory in {}", parent.display()))?;

    // ext4 places the file data itself (see `fill_ext4`) unless a name cannot be handed to
    // debugfs; then, like ISO, the staging directory holds the files for the image builder.
    let placed = format == DiskFormat::Ext4 && files.iter().all(|f| debugfs_safe(&f.name));
    let mut entries = Vec::new();
    let mut sources = Vec::new();
    let mut content = 0u64;
    for file in files {
        let meta = std::fs::metadata(&file.source)
            .with_context(|| format!("reading dump file {}", file.source.display()))?;
        if !meta.is_file() {
            bail!(
                "cannot put {} on a data disk: it is not a regular file",
                file.source.display()
            );
        }
        let staged = staging.path().join(&file.name);
        if placed {
            // An empty placeholder with the dump's modification time: mke2fs -d makes the
            // inode, fill_ext4 gives it the data.
            let placeholder = std::fs::File::create(&staged)
                .with_context(|| format!("creating {} in the staging directory", file.name))?;
            if let Ok(mtime) = meta.modified() {
                let _ = placeholder.set_modified(mtime);
            }
        } else if std::fs::hard_link(&file.source, &staged).is_err() {
            std::fs::copy(&file.source, &staged).with_context(|| {
                format!(
                    "copying {} into the data disk staging directory",
                    file.source.display()
                )
            })?;
        }
        let sha256 = match &file.sha256 {
            Some(known) => known.to_ascii_lowercase(),
            None => sha256_file(&file.source)?.sha256,
        };
        content += meta.len();
        entries.push(DiskEntry {
            name: file.name.clone(),
            sha256,
            bytes: meta.len(),
        });
        sources.push(file.source.clone());
    }
    let sums: String = {
        let mut sorted: Vec<&DiskEntry> = entries.iter().collect();
        sorted.sort_by(|a, b| a.name.cmp(&b.name));
        sorted
            .iter()
            .map(|e| format!("{}  {}\n", e.sha256, e.name))
            .collect()
    };
    std::fs::write(staging.path().join(SUMS), &sums)
        .with_context(|| format!("writing {SUMS} into the data disk staging directory"))?;
    content += sums.len() as u64;

    if image.exists() {
        std::fs::remove_file(image)
            .with_context(|| format!("removing the old data disk {}", image.display()))?;
    }
    let built = match format {
        DiskFormat::Ext4 => {
            make_ext4(staging.path(), image, content, files.len() + 1).and_then(|()| {
                if placed {
                    let placing: Vec<Placed> = entries
                        .iter()
                        .zip(&sources)
                        .map(|(e, source)| Placed {
                            name: &e.name,
                            source,
                            bytes: e.bytes,
                        })
                        .collect();
                    fill_ext4(image, &placing)
                } else {
                    Ok(())
                }
            })
        }
        DiskFormat::Iso => make_iso(staging.path(), image),
    };
    if let Err(err) = built {
        let _ = std::fs::remove_file(image);
        return Err(err);
    }
    let bytes = std::fs::metadata(image)
        .with_context(|| format!("reading the size of data disk {}", image.display()))?
        .len();
    staging
        .close()
        .context("removing the data disk staging directory")?;
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(DataDisk {
        path: image.to_path_buf(),
        format,
        bytes,
        files: entries,
    })
}

/// Size for an ext4 image: content in 4 KiB blocks, plus 10 % and 4 MiB for metadata, at
/// least 8 MiB, in whole MiB.
pub fn ext4_size(content: u64, files: usize) -> u64 {
    const MIB: u64 = 1 << 20;
    let blocks = content.div_ceil(4096) * 4096 + files as u64 * 4096;
    let size = (blocks + blocks / 10 + 4 * MIB).max(8 * MIB);
    size.div_ceil(MIB) * MIB
}

/// The ext4 block size of every data disk.
const BLOCK: u64 = 4096;

fn make_ext4(staging: &Path, image: &Path, content: u64, files: usize) -> Result<()> {
    let mut size = ext4_size(content, files);
    // A size estimate that proves too small gets one more try at twice the size.
    for attempt in 0..2 {
        let output = e2fsprogs(
            Command::new("mke2fs")
                .args([
                    "-q", "-F", "-t", "ext4", "-b", "4096", "-L", LABEL, "-m", "0",
                ])
                .args(["-O", "^has_journal", "-E", "root_owner=0:0", "-d"])
                .arg(staging)
                .arg(image)
                .arg(format!("{}k", size / 1024)),
        )?;
        if output.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
        let _ = std::fs::remove_file(image);
        let full = stderr.contains("Could not allocate block")
            || stderr.contains("No space left")
            || stderr.contains("Could not allocate inode");
        if attempt == 0 && full {
            size *= 2;
            continue;
        }
        bail!(
            "mke2fs could not build data disk {} ({} MiB): {}",
            image.display(),
            size >> 20,
            if stderr.is_empty() {
                output.status.to_string()
            } else {
                stderr
            }
        );
    }
    unreachable!("the loop returns or fails")
}

/// Runs an e2fsprogs tool in the C locale; a missing tool says which package to install.
fn e2fsprogs(command: &mut Command) -> Result<std::process::Output> {
    let tool = command.get_program().to_string_lossy().into_owned();
    command
        .env("LC_ALL", "C")
        .output()
        .map_err(|err| match err.kind() {
            std::io::ErrorKind::NotFound => anyhow::anyhow!(
                "{tool} is not installed; install e2fsprogs (apt-get install e2fsprogs) to build ext4 data disks"
            ),
            _ => anyhow::anyhow!("running {tool}: {err}"),
        })
}

/// A file whose data `fill_ext4` places into the image.
struct Placed<'a> {
    name: &'a str,
    source: &'a Path,
    bytes: u64,
}

/// Whether debugfs can be given this name in double quotes.
fn debugfs_safe(name: &str) -> bool {
    !name
        .chars()
        .any(|c| c == '"' || c == '\\' || c.is_control())
}

/// One leaf extent of a file in an ext4 image, in blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Extent {
    logical: u64,
    physical: u64,
    len: u64,
    uninit: bool,
}

/// The leaf extents in the output of debugfs `ex` (lines like
/// ` 1/ 1   2/  9  27790 -  60556  32919 -  65685  32767 Uninit`, or `0/ 0 1/ 1 0 8 1` for a
/// one-block extent); index nodes are skipped.
fn parse_extents(text: &str) -> Result<Vec<Extent>> {
    let mut out = Vec::new();
    for line in text.lines() {
        let spaced = line.replace('/', " / ");
        let tokens: Vec<&str> = spaced.split_whitespace().collect();
        if tokens.first().is_none_or(|t| t.parse::<u64>().is_err()) {
            continue; // the header
        }
        let bad = || anyhow::anyhow!("unexpected debugfs extent line {line:?}");
        let level: u64 = tokens[0].parse()?;
        let depth: u64 = tokens.get(2).and_then(|t| t.parse().ok()).ok_or_else(bad)?;
        if level != depth {
            continue;
        }
        let rest = tokens.get(6..).ok_or_else(bad)?;
        let uninit = rest.last() == Some(&"Uninit");
        let numbers: Vec<u64> = rest
            .iter()
            .filter(|t| **t != "-" && **t != "Uninit")
            .map(|t| t.parse::<u64>().map_err(|_| bad()))
            .collect::<Result<_>>()?;
        let (logical, physical, len) = match numbers[..] {
            [l, _, p, _, n] => (l, p, n),
            [l, p, n] => (l, p, n),
            _ => return Err(bad()),
        };
        out.push(Extent {
            logical,
            physical,
            len,
            uninit,
        });
    }
    Ok(out)
}

/// Runs debugfs commands on `image` in one session; returns each command's standard output.
/// Any message on standard error (debugfs reports failed commands there and still exits 0) is
/// an error.
fn debugfs(image: &Path, commands: &[String]) -> Result<Vec<String>> {
    let mut script = tempfile::NamedTempFile::new().context("creating a debugfs script")?;
    {
        use std::io::Write;
        for c in commands {
            writeln!(script, "{c}").context("writing a debugfs script")?;
        }
        script.flush().context("writing a debugfs script")?;
    }
    let output = e2fsprogs(
        Command::new("debugfs")
            .arg("-w")
            .arg("-f")
            .arg(script.path())
            .arg(image),
    )?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let complaints: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("debugfs "))
        .collect();
    if !output.status.success() || !complaints.is_empty() {
        bail!(
            "debugfs failed on data disk {}: {}",
            image.display(),
            if complaints.is_empty() {
                output.status.to_string()
            } else {
                complaints.join("; ")
            }
        );
    }
    // With -f, debugfs echoes each command as "debugfs: COMMAND" before its output.
    let mut outputs: Vec<String> = Vec::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        if line.starts_with("debugfs: ") || line.starts_with("debugfs (") {
            outputs.push(String::new());
        } else if let Some(current) = outputs.last_mut() {
            current.push_str(line);
            current.push('\n');
        }
    }
    if outputs.len() != commands.len() {
        bail!(
            "debugfs ran {} of {} commands on data disk {}",
            outputs.len(),
            commands.len(),
            image.display()
        );
    }
    Ok(outputs)
}

/// Checks that `extents` map blocks `0..blocks` of a file exactly once, in order.
fn covers(extents: &[Extent], blocks: u64) -> bool {
    let mut next = 0;
    for e in extents {
        if e.logical != next || e.len == 0 {
            return false;
        }
        next += e.len;
    }
    next == blocks
}

/// Gives each placeholder inode (made empty by mke2fs -d) its data, without copying it through
/// e2fsprogs' block-by-block writer: debugfs allocates the blocks (`fallocate`), marks the
/// extents initialised and sets the size; then the bytes are copied straight into the image at
/// those blocks with `copy_file_range` (at the speed of `cp`). `e2fsck -fn` checks the file
/// system before the data is copied.
fn fill_ext4(image: &Path, files: &[Placed]) -> Result<()> {
    let path = |f: &Placed| format!("\"/{}\"", f.name);
    let blocks = |f: &Placed| f.bytes.div_ceil(BLOCK);
    let data: Vec<&Placed> = files.iter().filter(|f| f.bytes > 0).collect();
    if data.is_empty() {
        return Ok(());
    }
    let mut commands: Vec<String> = data
        .iter()
        .map(|f| format!("fallocate {} 0 {}", path(f), blocks(f) - 1))
        .collect();
    commands.extend(data.iter().map(|f| format!("ex {}", path(f))));
    let out = debugfs(image, &commands)?;
    let mut maps = Vec::new();
    for (f, text) in data.iter().zip(&out[data.len()..]) {
        let extents = parse_extents(text)
            .with_context(|| format!("reading the blocks of {} on the data disk", f.name))?;
        if !covers(&extents, blocks(f)) {
            bail!(
                "debugfs did not allocate {} blocks for {} on data disk {} (got {extents:?})",
                blocks(f),
                f.name,
                image.display()
            );
        }
        maps.push(extents);
    }

    // fallocate leaves the extents "uninitialised" (read as zeros); mark them written.
    let mut commands = Vec::new();
    for (f, extents) in data.iter().zip(&maps) {
        commands.push(format!("eo {}", path(f)));
        for e in extents.iter().filter(|e| e.uninit) {
            commands.push(format!("goto {}", e.logical));
            commands.push(format!(
                "replace_node {} {} {}",
                e.logical, e.len, e.physical
            ));
        }
        commands.push("ec".to_string());
        commands.push(format!("sif {} size {}", path(f), f.bytes));
    }
    let first_check = commands.len();
    commands.extend(data.iter().map(|f| format!("ex {}", path(f))));
    let out = debugfs(image, &commands)?;
    for ((f, text), before) in data.iter().zip(&out[first_check..]).zip(&maps) {
        let after = parse_extents(text)
            .with_context(|| format!("reading the blocks of {} on the data disk", f.name))?;
        let same = after.len() == before.len()
            && after.iter().zip(before).all(|(a, b)| {
                !a.uninit && (a.logical, a.physical, a.len) == (b.logical, b.physical, b.len)
            });
        if !same {
            bail!(
                "debugfs did not mark the blocks of {} written on data disk {} (got {after:?})",
                f.name,
                image.display()
            );
        }
    }

    // The metadata is final now; check it before the data goes in (e2fsck flushes the image
    // file when it opens it, which would cost a write-back of all the data afterwards).
    let check = e2fsprogs(Command::new("e2fsck").args(["-f", "-n"]).arg(image))?;
    if !check.status.success() {
        bail!(
            "the data disk {} failed e2fsck once its files were allocated: {}",
            image.display(),
            String::from_utf8_lossy(&check.stdout).trim()
        );
    }
    let target = std::fs::OpenOptions::new()
        .write(true)
        .open(image)
        .with_context(|| format!("opening data disk {} for writing", image.display()))?;
    for (f, extents) in data.iter().zip(&maps) {
        let source = std::fs::File::open(f.source)
            .with_context(|| format!("opening dump file {}", f.source.display()))?;
        for e in extents {
            let from = e.logical * BLOCK;
            let len = (e.len * BLOCK).min(f.bytes - from);
            copy_data(&source, from, &target, e.physical * BLOCK, len).with_context(|| {
                format!(
                    "copying {} into data disk {}",
                    f.source.display(),
                    image.display()
                )
            })?;
        }
    }
    drop(target);

    Ok(())
}

/// Copies the data of `len` bytes of `source` at `from` to `target` at `to`, skipping the
/// source's holes (`SEEK_DATA`/`SEEK_HOLE`): the image is new, so what is not written reads as
/// zeros and a sparse dump stays sparse on the disk, as with `mke2fs -d`.
fn copy_data(
    source: &std::fs::File,
    from: u64,
    target: &std::fs::File,
    to: u64,
    len: u64,
) -> Result<()> {
    use std::os::fd::AsRawFd;
    let seek = |pos: u64, whence: libc::c_int| -> std::io::Result<u64> {
        // SAFETY: lseek on an open descriptor; no memory is passed.
        let r = unsafe { libc::lseek(source.as_raw_fd(), pos as libc::off_t, whence) };
        if r < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(r as u64)
        }
    };
    let end = from + len;
    let mut pos = from;
    while pos < end {
        let data = match seek(pos, libc::SEEK_DATA) {
            Ok(data) => data,
            // No data after pos: the rest is a hole.
            Err(err) if err.raw_os_error() == Some(libc::ENXIO) => break,
            // A file system without SEEK_DATA: copy everything.
            Err(_) => return copy_range(source, pos, target, to + (pos - from), end - pos),
        };
        if data >= end {
            break;
        }
        let hole = seek(data, libc::SEEK_HOLE).unwrap_or(end).min(end);
        copy_range(source, data, target, to + (data - from), hole - data)?;
        pos = hole;
    }
    Ok(())
}

/// Copies `len` bytes from `source` at `from` to `target` at `to`: `copy_file_range` (in the
/// kernel, no round trip through user space), else reads and writes.
fn copy_range(
    source: &std::fs::File,
    mut from: u64,
    target: &std::fs::File,
    mut to: u64,
    mut len: u64,
) -> Result<()> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::FileExt;
    while len > 0 {
        let mut off_in = from as libc::loff_t;
        let mut off_out = to as libc::loff_t;
        let chunk = len.min(1 << 30) as usize;
        // SAFETY: both descriptors are open for the call's duration and the offsets are
        // valid pointers to locals.
        let n = unsafe {
            libc::copy_file_range(
                source.as_raw_fd(),
                &mut off_in,
                target.as_raw_fd(),
                &mut off_out,
                chunk,
                0,
            )
        };
        if n > 0 {
            from += n as u64;
            to += n as u64;
            len -= n as u64;
            continue;
        }
        if n == 0 {
            bail!("the file ended {len} bytes early (was it truncated while reclab read it?)");
        }
        let err = std::io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EXDEV | libc::ENOSYS | libc::EOPNOTSUPP | libc::EINVAL) => {
                let mut buf = vec![0u8; 1 << 20];
                while len > 0 {
                    let want = (len as usize).min(buf.len());
                    let got = source.read_at(&mut buf[..want], from)?;
                    if got == 0 {
                        bail!(
                            "the file ended {len} bytes early (was it truncated while reclab read it?)"
                        );
                    }
                    target.write_all_at(&buf[..got], to)?;
                    from += got as u64;
                    to += got as u64;
                    len -= got as u64;
                }
            }
            _ => return Err(err.into()),
        }
    }
    Ok(())
}

/// The ISO builder found on this host: `xorriso` (as mkisofs) or `genisoimage`.
pub fn iso_tool() -> Option<(&'static str, &'static [&'static str])> {
    let found = |name: &str| {
        std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(name).is_file()))
    };
    if found("xorriso") {
        Some(("xorriso", &["-as", "mkisofs"]))
    } else if found("genisoimage") {
        Some(("genisoimage", &[]))
    } else {
        None
    }
}

fn make_iso(staging: &Path, image: &Path) -> Result<()> {
    let Some((tool, prefix)) = iso_tool() else {
        bail!(
            "cannot build an iso data disk: neither xorriso nor genisoimage is installed; install xorriso (apt-get install xorriso) or use format = \"ext4\""
        );
    };
    let output = Command::new(tool)
        .args(prefix)
        .args(["-quiet", "-iso-level", "3", "-R", "-J", "-V", LABEL, "-o"])
        .arg(image)
        .arg(staging)
        .env("LC_ALL", "C")
        .output()
        .with_context(|| format!("running {tool}"))?;
    if !output.status.success() {
        let _ = std::fs::remove_file(image);
        bail!(
            "{tool} could not build data disk {}: {}",
            image.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn debugfs_bytes(image: &Path, request: &str) -> Vec<u8> {
        let output = Command::new("debugfs")
            .args(["-R", request])
            .arg(image)
            .output()
            .expect("debugfs (e2fsprogs) is needed for this test");
        assert!(output.status.success(), "debugfs {request}: {output:?}");
        output.stdout
    }

    fn debugfs(image: &Path, request: &str) -> String {
        String::from_utf8(debugfs_bytes(image, request)).unwrap()
    }

    fn dump_files(dir: &Path) -> Vec<DataDiskFile> {
        let dump = dir.join("erp-20261126-1300.sql");
        std::fs::write(
            &dump,
            "CREATE TABLE invoices(no INTEGER);\nINSERT INTO invoices VALUES(1);\n",
        )
        .unwrap();
        let manifest = dir.join("erp-20261126-1300.sql.manifest.json");
        std::fs::write(&manifest, r#"{"schema":1,"rows":{"invoices":1}}"#).unwrap();
        vec![
            DataDiskFile {
                name: "erp-20261126-1300.sql".into(),
                source: dump,
                sha256: None,
            },
            DataDiskFile {
                name: "erp-20261126-1300.sql.manifest.json".into(),
                source: manifest,
                sha256: None,
            },
        ]
    }

    #[test]
    fn an_ext4_data_disk_holds_the_dump_its_manifest_and_checksums() {
        let dir = tempfile::tempdir().unwrap();
        let files = dump_files(dir.path());
        let image = dir.path().join("data.img");
        let disk = build_data_disk(&files, DiskFormat::Ext4, &image).unwrap();
        assert_eq!(disk.bytes, 8 << 20);
        assert_eq!(disk.files.len(), 2);

        let listing = debugfs(&image, "ls -l /");
        for name in [
            "erp-20261126-1300.sql",
            "erp-20261126-1300.sql.manifest.json",
            SUMS,
        ] {
            assert!(listing.contains(name), "{name} missing from:\n{listing}");
        }
        let content = debugfs(&image, "cat /erp-20261126-1300.sql");
        assert_eq!(content, std::fs::read_to_string(&files[0].source).unwrap());
        let sums = debugfs(&image, &format!("cat /{SUMS}"));
        let dump_sha = sha256_file(&files[0].source).unwrap().sha256;
        assert!(
            sums.contains(&format!("{dump_sha}  erp-20261126-1300.sql\n")),
            "{sums}"
        );
        assert_eq!(disk.files[0].sha256, dump_sha);
        let stats = debugfs(&image, "stats");
        assert!(
            stats.contains("Filesystem volume name:   RECLAB"),
            "{stats}"
        );
        // Nothing is left behind but the image.
        let left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with(".reclab"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn a_known_sha256_is_trusted_and_written_as_given() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = dump_files(dir.path());
        files.truncate(1);
        files[0].sha256 = Some("AB".repeat(32));
        let image = dir.path().join("data.img");
        let disk = build_data_disk(&files, DiskFormat::Ext4, &image).unwrap();
        assert_eq!(disk.files[0].sha256, "ab".repeat(32));
        let sums = debugfs(&image, &format!("cat /{SUMS}"));
        assert_eq!(
            sums,
            format!("{}  erp-20261126-1300.sql\n", "ab".repeat(32))
        );
    }

    #[test]
    fn a_large_dump_gets_a_disk_big_enough() {
        let dir = tempfile::tempdir().unwrap();
        let dump = dir.path().join("big.sql");
        let file = std::fs::File::create(&dump).unwrap();
        // Sparse on the host, but mke2fs copies it, so the file system needs room for it.
        file.set_len(40 << 20).unwrap();
        let image = dir.path().join("data.img");
        let disk = build_data_disk(
            &[DataDiskFile {
                name: "big.sql".into(),
                source: dump,
                sha256: None,
            }],
            DiskFormat::Ext4,
            &image,
        )
        .unwrap();
        assert_eq!(disk.files[0].bytes, 40 << 20);
        assert!(disk.bytes >= 40 << 20 && disk.bytes <= ext4_size(40 << 20, 2));
        let listing = debugfs(&image, "ls -l /");
        assert!(listing.contains(&(40u64 << 20).to_string()), "{listing}");
        fsck_clean(&image);
    }

    #[test]
    fn a_sparse_dump_stays_sparse_and_its_data_lands_where_it_belongs() {
        use std::os::unix::fs::{FileExt, MetadataExt};
        let dir = tempfile::tempdir().unwrap();
        let dump = dir.path().join("sparse.sql");
        let file = std::fs::File::create(&dump).unwrap();
        file.set_len(64 << 20).unwrap();
        // Data at the start, in the middle (not block-aligned) and at the very end.
        file.write_all_at(b"BEGIN;", 0).unwrap();
        file.write_all_at(&noise(10_000, 5), (30 << 20) + 123)
            .unwrap();
        file.write_all_at(b"COMMIT;", (64 << 20) - 7).unwrap();
        drop(file);
        let image = dir.path().join("data.img");
        build_data_disk(
            &[DataDiskFile {
                name: "sparse.sql".into(),
                source: dump.clone(),
                sha256: None,
            }],
            DiskFormat::Ext4,
            &image,
        )
        .unwrap();
        fsck_clean(&image);
        let out = debugfs_bytes(&image, "cat /sparse.sql");
        assert!(out == std::fs::read(&dump).unwrap(), "content differs");
        let used = std::fs::metadata(&image).unwrap().blocks() * 512;
        assert!(
            used < 16 << 20,
            "the image uses {used} bytes for 64 MiB mostly holes"
        );
    }

    #[test]
    fn an_iso_data_disk_holds_the_files_or_says_what_to_install() {
        let dir = tempfile::tempdir().unwrap();
        let files = dump_files(dir.path());
        let image = dir.path().join("data.iso");
        match iso_tool() {
            None => {
                let err = build_data_disk(&files, DiskFormat::Iso, &image).unwrap_err();
                assert!(err.to_string().contains("install xorriso"), "{err}");
            }
            Some(_) => {
                let disk = build_data_disk(&files, DiskFormat::Iso, &image).unwrap();
                let bytes = std::fs::read(&image).unwrap();
                assert_eq!(disk.bytes, bytes.len() as u64);
                // The primary volume descriptor sits at 32 KiB: type 1, "CD001", the label.
                assert_eq!(&bytes[0x8000..0x8006], b"\x01CD001");
                assert_eq!(&bytes[0x8028..0x8028 + LABEL.len()], LABEL.as_bytes());
                let dump = std::fs::read(&files[0].source).unwrap();
                assert!(
                    bytes.windows(dump.len()).any(|w| w == dump),
                    "dump content missing"
                );
            }
        }
    }

    #[test]
    fn bad_file_sets_are_refused_before_anything_is_built() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("data.img");
        let file = |name: &str| DataDiskFile {
            name: name.into(),
            source: dir.path().join("x"),
            sha256: None,
        };
        for (files, why) in [
            (vec![file("a/b")], "use a plain file name"),
            (vec![file(SUMS)], "reclab writes its own"),
            (vec![file("a"), file("a")], "two files named"),
        ] {
            let err = build_data_disk(&files, DiskFormat::Ext4, &image).unwrap_err();
            assert!(err.to_string().contains(why), "{err}");
        }
        assert!(!image.exists());
        let err = build_data_disk(&[file("missing.sql")], DiskFormat::Ext4, &image).unwrap_err();
        assert!(
            format!("{err:#}").contains("reading dump file") && format!("{err:#}").contains("x"),
            "{err:#}"
        );
        assert!(!image.exists());
    }

    fn fsck_clean(image: &Path) {
        let out = Command::new("e2fsck")
            .args(["-f", "-n"])
            .arg(image)
            .output()
            .unwrap();
        assert!(out.status.success(), "e2fsck: {out:?}");
    }

    /// Pseudo-random bytes (no zero blocks a sparse-aware copy could skip).
    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn a_dump_spanning_several_extents_arrives_byte_for_byte() {
        // 300 MiB and 5 bytes: more than two block groups (so several extents), and a last
        // block that is not full.
        let dir = tempfile::tempdir().unwrap();
        let dump = dir.path().join("erp-20261126-1300.sql");
        let bytes = noise((300 << 20) + 5, 7);
        std::fs::write(&dump, &bytes).unwrap();
        let small = dir.path().join("erp-20261126-1300.sql.manifest.json");
        std::fs::write(&small, b"{}").unwrap();
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_790_000_000);
        std::fs::File::options()
            .write(true)
            .open(&dump)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let image = dir.path().join("data.img");
        let files = [
            DataDiskFile {
                name: "erp-20261126-1300.sql".into(),
                source: dump.clone(),
                sha256: None,
            },
            DataDiskFile {
                name: "erp-20261126-1300.sql.manifest.json".into(),
                source: small,
                sha256: None,
            },
        ];
        let disk = build_data_disk(&files, DiskFormat::Ext4, &image).unwrap();
        fsck_clean(&image);
        let extents = parse_extents(&debugfs(&image, "ex /erp-20261126-1300.sql")).unwrap();
        assert!(extents.len() > 2, "{extents:?}");
        assert!(extents.iter().all(|e| !e.uninit), "{extents:?}");
        assert!(covers(&extents, bytes.len().div_ceil(4096) as u64));
        let out = debugfs_bytes(&image, "cat /erp-20261126-1300.sql");
        assert!(out == bytes, "the dump on the disk differs from the source");
        assert_eq!(
            debugfs(&image, "cat /erp-20261126-1300.sql.manifest.json"),
            "{}"
        );
        assert_eq!(disk.files[0].bytes, bytes.len() as u64);
        let stat = debugfs(&image, "stat /erp-20261126-1300.sql");
        assert!(stat.contains(&format!("Size: {}", bytes.len())), "{stat}");
        assert!(stat.contains("mtime: 0x6ab13b80"), "mtime not kept: {stat}");
    }

    #[test]
    fn a_name_debugfs_cannot_take_still_gets_on_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let odd = dir.path().join("odd");
        std::fs::write(&odd, b"SELECT 1;\n").unwrap();
        let image = dir.path().join("data.img");
        let name = "dump \"quoted\".sql";
        assert!(!debugfs_safe(name) && debugfs_safe("erp 2026-11-26 13:00.sql"));
        let disk = build_data_disk(
            &[DataDiskFile {
                name: name.into(),
                source: odd,
                sha256: None,
            }],
            DiskFormat::Ext4,
            &image,
        )
        .unwrap();
        assert_eq!(disk.files[0].name, name);
        fsck_clean(&image);
        assert!(debugfs(&image, "ls -l /").contains("quoted"));
    }

    #[test]
    fn empty_files_and_names_with_spaces_are_placed_too() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, b"").unwrap();
        let spaced = dir.path().join("spaced");
        std::fs::write(&spaced, noise(10_000, 3)).unwrap();
        let image = dir.path().join("data.img");
        build_data_disk(
            &[
                DataDiskFile {
                    name: "empty.sql".into(),
                    source: empty,
                    sha256: None,
                },
                DataDiskFile {
                    name: "erp 2026-11-26 13:00.sql".into(),
                    source: spaced.clone(),
                    sha256: None,
                },
            ],
            DiskFormat::Ext4,
            &image,
        )
        .unwrap();
        fsck_clean(&image);
        let out = debugfs_bytes(&image, "cat \"/erp 2026-11-26 13:00.sql\"");
        assert!(out == std::fs::read(&spaced).unwrap());
        assert_eq!(debugfs(&image, "cat /empty.sql"), "");
    }

    #[test]
    fn debugfs_extent_listings_are_read_leaf_by_leaf() {
        let text = "Level Entries         Logical        Physical Length Flags
 0/ 1   1/  1      0 - 262143 163991          262144
 1/ 1   1/  9      0 -  27789   4978 -  32767  27790 Uninit
 1/ 1   2/  9  27790 -  60556  32919 -  65685  32767 
 1/ 1 100/340  60557          65686              1 Uninit
";
        let got = parse_extents(text).unwrap();
        assert_eq!(
            got,
            vec![
                Extent {
                    logical: 0,
                    physical: 4978,
                    len: 27790,
                    uninit: true
                },
                Extent {
                    logical: 27790,
                    physical: 32919,
                    len: 32767,
                    uninit: false
                },
                Extent {
                    logical: 60557,
                    physical: 65686,
                    len: 1,
                    uninit: true
                },
            ]
        );
        assert!(covers(&got, 60558));
        assert!(!covers(&got, 60559));
        assert!(!covers(&got[1..], 60558));
        assert!(parse_extents(" 0/ 0   1/  1  x - y").is_err());
    }
}
