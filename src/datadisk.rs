//! Data disks: read-only disk images that carry dumps into a lab VM through the hypervisor.
//!
//! An image holds the chosen dump files, their manifests, and a `SHA256SUMS` listing every
//! file's sha256 so that the guest can verify what it received (`sha256sum -c SHA256SUMS` in
//! the mount point). It is built without root and without mounting anything:
//!
//! - **ext4** (the default): `mke2fs -t ext4 -d STAGING`, which copies a directory tree into
//!   the new file system. No journal (the guest mounts it read-only), no reserved blocks, the
//!   root directory owned by root, label `RECLAB`. The size is the content plus slack.
//! - **iso**: ISO 9660 with Rock Ridge and Joliet, level 3 (files above 4 GiB), label
//!   `RECLAB`, built with `xorriso` (Debian package `xorriso`) or else `genisoimage`.
//!
//! The staging directory next to the image holds hard links to the dumps where the file
//! system allows it (no copy), else copies; it is removed when the image is done.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::points::sha256_file;
use crate::spec::DiskFormat;

/// The volume label of every data disk; guests can find it as `/dev/disk/by-label/RECLAB`.
pub const LABEL: &str = "RECLAB";
/// The checksum file written into every data disk.
pub const SUMS: &str = "SHA256SUMS";

/// A file to put on a data disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDiskFile {
    /// Name on the disk (a plain file name, no directories).
    pub name: String,
    pub source: PathBuf,
    /// The file's sha256 if already known (from the host-side verification), to avoid hashing
    /// it twice.
    pub sha256: Option<String>,
}

/// One file on a built data disk.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DiskEntry {
    pub name: String,
    pub sha256: String,
    pub bytes: u64,
}

/// A built data disk.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DataDisk {
    pub path: PathBuf,
    pub format: DiskFormat,
    /// Size of the image file.
    pub bytes: u64,
    /// The files on it, `SHA256SUMS` excluded, by name.
    pub files: Vec<DiskEntry>,
}

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

    let mut entries = Vec::new();
    let mut content = 0u64;
    for file in files {
        let staged = staging.path().join(&file.name);
        if std::fs::hard_link(&file.source, &staged).is_err() {
            std::fs::copy(&file.source, &staged).with_context(|| {
                format!(
                    "copying {} into the data disk staging directory",
                    file.source.display()
                )
            })?;
        }
        let bytes = std::fs::metadata(&staged)
            .with_context(|| format!("reading the size of {}", file.source.display()))?
            .len();
        let sha256 = match &file.sha256 {
            Some(known) => known.to_ascii_lowercase(),
            None => sha256_file(&staged)?.sha256,
        };
        content += bytes;
        entries.push(DiskEntry {
            name: file.name.clone(),
            sha256,
            bytes,
        });
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    let sums: String = entries
        .iter()
        .map(|e| format!("{}  {}\n", e.sha256, e.name))
        .collect();
    std::fs::write(staging.path().join(SUMS), &sums)
        .with_context(|| format!("writing {SUMS} into the data disk staging directory"))?;
    content += sums.len() as u64;

    if image.exists() {
        std::fs::remove_file(image)
            .with_context(|| format!("removing the old data disk {}", image.display()))?;
    }
    match format {
        DiskFormat::Ext4 => make_ext4(staging.path(), image, content, files.len() + 1)?,
        DiskFormat::Iso => make_iso(staging.path(), image)?,
    }
    let bytes = std::fs::metadata(image)
        .with_context(|| format!("reading the size of data disk {}", image.display()))?
        .len();
    staging
        .close()
        .context("removing the data disk staging directory")?;
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

fn make_ext4(staging: &Path, image: &Path, content: u64, files: usize) -> Result<()> {
    let mut size = ext4_size(content, files);
    // A size estimate that proves too small gets one more try at twice the size.
    for attempt in 0..2 {
        let output = Command::new("mke2fs")
            .args(["-q", "-F", "-t", "ext4", "-L", LABEL, "-m", "0", "-O", "^has_journal"])
            .args(["-E", "root_owner=0:0", "-d"])
            .arg(staging)
            .arg(image)
            .arg(format!("{}k", size / 1024))
            .env("LC_ALL", "C")
            .output()
            .map_err(|err| match err.kind() {
                std::io::ErrorKind::NotFound => anyhow::anyhow!(
                    "mke2fs is not installed; install e2fsprogs (apt-get install e2fsprogs) to build ext4 data disks"
                ),
                _ => anyhow::anyhow!("running mke2fs: {err}"),
            })?;
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

    fn debugfs(image: &Path, request: &str) -> String {
        let output = Command::new("debugfs")
            .args(["-R", request])
            .arg(image)
            .output()
            .expect("debugfs (e2fsprogs) is needed for this test");
        assert!(output.status.success(), "debugfs {request}: {output:?}");
        String::from_utf8(output.stdout).unwrap()
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
        assert!(format!("{err:#}").contains("copying"), "{err:#}");
    }
}
