//! Disk images: inspecting production sources (read-only, `-U`), thin qcow2 overlays whose cost
//! does not depend on the source size, and fingerprints that prove production was not written.
//!
//! **Invariant:** production images are only ever opened read-only. `qemu-img info -U` reads
//! headers with a shared lock; overlays are created with `-u` and an explicit size, so the
//! backing file is not even opened.

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::base::sys;
use crate::lab::record::Fingerprint;
use crate::lab::resolved::Layer;

/// Image formats reclab clones.
pub const SUPPORTED_FORMATS: &[&str] = &["qcow2", "raw"];

#[derive(Deserialize)]
struct QemuImgInfo {
    filename: String,
    format: String,
    #[serde(rename = "virtual-size")]
    virtual_size: u64,
    #[serde(rename = "backing-filename-format")]
    backing_format: Option<String>,
    #[serde(rename = "full-backing-filename")]
    full_backing: Option<String>,
}

/// Read the whole backing chain of a source image without writing or locking it.
/// `format` is the format production declares for it (never probed when known).
pub fn chain(path: &Path, format: Option<&str>) -> Result<Vec<Layer>> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("source image {} is not readable", path.display()))?;
    let mut args = vec!["info", "-U", "--output=json", "--backing-chain"];
    if let Some(f) = format {
        if !SUPPORTED_FORMATS.contains(&f) {
            bail!(
                "source image {} has format {f}; reclab clones {} images (convert it first)",
                path.display(),
                SUPPORTED_FORMATS.join(" and ")
            );
        }
        args.extend(["-f", f]);
    }
    let p = path.to_str().context("image path is not UTF-8")?;
    args.push(p);
    let out = sys::run_stdout("qemu-img", &args)
        .with_context(|| format!("inspecting source image {}", path.display()))?;
    let infos: Vec<QemuImgInfo> = serde_json::from_str(&out)
        .with_context(|| format!("parsing qemu-img info for {}", path.display()))?;
    let mut layers = Vec::new();
    for (i, info) in infos.iter().enumerate() {
        if !SUPPORTED_FORMATS.contains(&info.format.as_str()) {
            bail!(
                "image {} has format {}; reclab clones {} images",
                info.filename,
                info.format,
                SUPPORTED_FORMATS.join(" and ")
            );
        }
        if info.full_backing.is_some() && info.backing_format.is_none() {
            bail!(
                "image {} has a backing file without a recorded format; fix it with \
                 `qemu-img rebase -u -F FORMAT -b BACKING {}` on a copy",
                info.filename,
                info.filename
            );
        }
        let lpath = PathBuf::from(&info.filename);
        let block = if i == 0 {
            meta.file_type().is_block_device()
        } else {
            std::fs::metadata(&lpath)
                .map(|m| m.file_type().is_block_device())
                .unwrap_or(false)
        };
        layers.push(Layer {
            path: lpath,
            format: info.format.clone(),
            block,
            virtual_size: info.virtual_size,
        });
    }
    Ok(layers)
}

use std::os::unix::fs::FileTypeExt;

/// Create a qcow2 overlay over `backing` without opening it (`-u` with the known size).
pub fn create_overlay(overlay: &Path, backing: &Layer) -> Result<()> {
    let size = backing.virtual_size.to_string();
    let b = backing.path.to_str().context("backing path is not UTF-8")?;
    let o = overlay.to_str().context("overlay path is not UTF-8")?;
    sys::run(
        "qemu-img",
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-u",
            "-F",
            &backing.format,
            "-b",
            b,
            o,
            &size,
        ],
    )
    .with_context(|| format!("creating overlay {o} over {b}"))?;
    Ok(())
}

/// Fingerprint a production file: identity, size, mtime and a hash of its first MiB.
pub fn fingerprint(path: &Path) -> Result<Fingerprint> {
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0;
    while n < buf.len() {
        let k = f
            .read(&mut buf[n..])
            .with_context(|| format!("reading {}", path.display()))?;
        if k == 0 {
            break;
        }
        n += k;
    }
    Ok(Fingerprint {
        path: path.to_path_buf(),
        size: meta.len(),
        mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
        inode: meta.ino(),
        head_sha256: hex::encode(Sha256::digest(&buf[..n])),
    })
}

/// Compare fingerprints taken before the run with the files now; describe every change.
pub fn changed(before: &[Fingerprint]) -> Vec<String> {
    let mut out = Vec::new();
    for fp in before {
        match fingerprint(&fp.path) {
            Ok(now) if now == *fp => {}
            Ok(_) => out.push(format!(
                "production image {} changed during the run",
                fp.path.display()
            )),
            Err(e) => out.push(format!("production image {}: {e:#}", fp.path.display())),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qemu_img_available() -> bool {
        std::process::Command::new("qemu-img")
            .arg("--version")
            .output()
            .is_ok()
    }

    #[test]
    fn overlay_is_thin_and_chain_reads_back_without_writing_the_source() {
        if !qemu_img_available() {
            eprintln!("skipped: qemu-img missing (scripts/setup installs it)");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src.qcow2");
        sys::run(
            "qemu-img",
            &["create", "-q", "-f", "qcow2", src.to_str().unwrap(), "1G"],
        )
        .unwrap();
        let before = fingerprint(&src).unwrap();
        let layers = chain(&src, Some("qcow2")).unwrap();
        assert_eq!(layers.len(), 1);
        assert_eq!(layers[0].virtual_size, 1 << 30);
        let ovl = tmp.path().join("ovl.qcow2");
        create_overlay(&ovl, &layers[0]).unwrap();
        let ovl_chain = chain(&ovl, Some("qcow2")).unwrap();
        assert_eq!(ovl_chain.len(), 2);
        assert_eq!(ovl_chain[1].path, src);
        assert!(std::fs::metadata(&ovl).unwrap().len() < 1 << 20);
        assert!(changed(&[before]).is_empty());
    }

    #[test]
    fn unsupported_format_is_refused_with_advice() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("disk.vmdk");
        std::fs::write(&src, b"x").unwrap();
        let err = chain(&src, Some("vmdk")).unwrap_err().to_string();
        assert!(err.contains("format vmdk"), "{err}");
        assert!(err.contains("convert"), "{err}");
    }

    #[test]
    fn a_modified_file_is_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("x.raw");
        std::fs::write(&f, b"aaaa").unwrap();
        let fp = fingerprint(&f).unwrap();
        std::fs::write(&f, b"bbbb").unwrap();
        assert_eq!(changed(&[fp]).len(), 1);
    }
}
