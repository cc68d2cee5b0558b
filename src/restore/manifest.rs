//! A dump's expected checksum (from its manifest or a `SHA256SUMS` file) and the host-side
//! check of the dump against it. These functions only read.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use crate::base::template::expand;
use crate::spec::DumpsSpec;

/// What a dump must hash to, and who says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// Lowercase hex.
    pub sha256: String,
    pub bytes: Option<u64>,
    /// The file that says so (a manifest or a SHA256SUMS file), for messages.
    pub source: PathBuf,
}

/// The sha256 and size of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDigest {
    /// Lowercase hex.
    pub sha256: String,
    pub bytes: u64,
}

/// A dump's manifest path: the source's `manifest` template with `{file}` filled in.
pub fn manifest_path(dumps: &DumpsSpec, file: &str) -> Option<PathBuf> {
    let template = dumps.manifest.as_ref()?;
    let name = expand(template, &[("file", file)]).ok()?;
    Some(dumps.dir.join(name))
}

fn valid_sha256(text: &str) -> Option<String> {
    (text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| text.to_ascii_lowercase())
}

/// Reads a dump manifest (a JSON object with at least `sha256`; `bytes` and `file` are checked
/// when present; everything else is kept as written) for the dump named `file`.
pub fn read_manifest(path: &Path, file: &str) -> Result<(serde_json::Value, Expected)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading manifest {} of dump {file}", path.display()))?;
    let value: serde_json::Value = serde_json::from_str(&text).with_context(|| {
        format!(
            "manifest {} of dump {file} is not valid json",
            path.display()
        )
    })?;
    let Some(object) = value.as_object() else {
        bail!(
            "manifest {} of dump {file} is not a json object; it needs at least {{\"sha256\": \"...\"}}",
            path.display()
        );
    };
    let sha256 = match object.get("sha256").and_then(|v| v.as_str()) {
        Some(text) => valid_sha256(text).with_context(|| {
            format!(
                "manifest {} of dump {file}: sha256 {text:?} is not 64 hex digits",
                path.display()
            )
        })?,
        None => bail!(
            "manifest {} of dump {file} has no sha256; the dump cannot be verified without it",
            path.display()
        ),
    };
    if let Some(named) = object.get("file").and_then(|v| v.as_str()) {
        let named_base = named.rsplit('/').next().unwrap_or(named);
        if named_base != file {
            bail!(
                "manifest {} describes {named:?}, not dump {file}; check dumps.manifest in the lab file",
                path.display()
            );
        }
    }
    let bytes = match object.get("bytes") {
        None => None,
        Some(v) => Some(v.as_u64().with_context(|| {
            format!(
                "manifest {} of dump {file}: bytes {v} is not a size",
                path.display()
            )
        })?),
    };
    Ok((
        value,
        Expected {
            sha256,
            bytes,
            source: path.to_path_buf(),
        },
    ))
}

/// Reads the line for `file` from a `sha256sum`-style file (`HEX  NAME` or `HEX *NAME`).
pub fn read_sha256sums(path: &Path, file: &str) -> Result<Expected> {
    let reader =
        BufReader::new(File::open(path).with_context(|| {
            format!("opening checksum file {} for dump {file}", path.display())
        })?);
    for line in reader.lines() {
        let line = line.with_context(|| format!("reading checksum file {}", path.display()))?;
        let Some((hash, name)) = line.split_once(' ') else {
            continue;
        };
        let name = name.trim_start_matches(' ').trim_start_matches('*');
        let name = name.strip_prefix("./").unwrap_or(name);
        if name == file
            && let Some(sha256) = valid_sha256(hash)
        {
            return Ok(Expected {
                sha256,
                bytes: None,
                source: path.to_path_buf(),
            });
        }
    }
    bail!(
        "checksum file {} has no line for dump {file}; the dump cannot be verified",
        path.display()
    )
}

/// Streams a file through sha256.
pub fn sha256_file(path: &Path) -> Result<FileDigest> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    // Non-blocking open, so that a FIFO named like a dump does not hang the drill; it is then
    // refused with everything else that is not a regular file.
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let kind = file
        .metadata()
        .with_context(|| format!("reading the type of {}", path.display()))?
        .file_type();
    if !kind.is_file() {
        let what = if kind.is_dir() {
            "a directory"
        } else if kind.is_fifo() {
            "a named pipe"
        } else if kind.is_socket() {
            "a socket"
        } else if kind.is_block_device() || kind.is_char_device() {
            "a device"
        } else {
            "not a regular file"
        };
        bail!(
            "{} is {what}, not a dump file; remove it from the dump directory or narrow the pattern",
            path.display()
        );
    }
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = file
            .read(&mut buffer)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        bytes += n as u64;
    }
    Ok(FileDigest {
        sha256: hex::encode(hasher.finalize()),
        bytes,
    })
}

/// Hashes a dump and checks it against everything that describes it. The error names the
/// file, who expected what, and what the file has.
pub fn verify_dump(path: &Path, expected: &[Expected]) -> Result<FileDigest> {
    let digest = sha256_file(path).with_context(|| format!("verifying dump {}", path.display()))?;
    for want in expected {
        if let Some(bytes) = want.bytes
            && bytes != digest.bytes
        {
            bail!(
                "dump {} is corrupt or truncated: {} says {bytes} bytes, the file has {}",
                path.display(),
                want.source.display(),
                digest.bytes
            );
        }
        if want.sha256 != digest.sha256 {
            bail!(
                "dump {} is corrupt: {} says sha256 {}, the file has {}",
                path.display(),
                want.source.display(),
                want.sha256,
                digest.sha256
            );
        }
    }
    Ok(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, content: &[u8]) {
        std::fs::write(path, content).unwrap();
    }

    const HELLO_SHA: &str = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";

    #[test]
    fn a_dump_matching_its_manifest_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let dump = dir.path().join("erp-20261126-1300.sql");
        write(&dump, b"hello\n");
        let manifest = dir.path().join("erp-20261126-1300.sql.manifest.json");
        write(
            &manifest,
            format!(r#"{{"schema":1,"file":"erp-20261126-1300.sql","sha256":"{}","bytes":6,"rows":{{"invoices":7}}}}"#, HELLO_SHA.to_uppercase()).as_bytes(),
        );
        let (value, expected) = read_manifest(&manifest, "erp-20261126-1300.sql").unwrap();
        assert_eq!(value["rows"]["invoices"], 7);
        assert_eq!(expected.sha256, HELLO_SHA);
        let sums = dir.path().join("SHA256SUMS");
        write(
            &sums,
            format!(
                "{}  other.sql\n{HELLO_SHA} *erp-20261126-1300.sql\n",
                "0".repeat(64)
            )
            .as_bytes(),
        );
        let from_sums = read_sha256sums(&sums, "erp-20261126-1300.sql").unwrap();
        let digest = verify_dump(&dump, &[expected, from_sums]).unwrap();
        assert_eq!(
            digest,
            FileDigest {
                sha256: HELLO_SHA.into(),
                bytes: 6
            }
        );
    }

    #[test]
    fn a_corrupt_dump_names_the_file_and_both_checksums() {
        let dir = tempfile::tempdir().unwrap();
        let dump = dir.path().join("erp.sql");
        write(&dump, b"hellO\n");
        let expected = Expected {
            sha256: HELLO_SHA.into(),
            bytes: Some(6),
            source: dir.path().join("erp.sql.manifest.json"),
        };
        let err = verify_dump(&dump, std::slice::from_ref(&expected))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!("dump {} is corrupt: ", dump.display())),
            "{err}"
        );
        assert!(
            err.contains(&format!("erp.sql.manifest.json says sha256 {HELLO_SHA}")),
            "{err}"
        );
        assert!(
            err.contains(&format!(
                "the file has {}",
                sha256_file(&dump).unwrap().sha256
            )),
            "{err}"
        );
        write(&dump, b"hel");
        let err = verify_dump(&dump, &[expected]).unwrap_err().to_string();
        assert!(err.contains("is corrupt or truncated"), "{err}");
        assert!(err.contains("says 6 bytes, the file has 3"), "{err}");
    }

    #[test]
    fn bad_manifests_and_checksum_files_are_clear() {
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path().join("m.json");
        let check = |content: &str, why: &str| {
            write(&m, content.as_bytes());
            let err = format!("{:#}", read_manifest(&m, "erp.sql").unwrap_err());
            assert!(err.contains(why), "{content}: {err}");
        };
        check("{", "is not valid json");
        check("[]", "is not a json object");
        check(r#"{"bytes":3}"#, "has no sha256");
        check(r#"{"sha256":"abc"}"#, "is not 64 hex digits");
        check(
            &format!(r#"{{"sha256":"{HELLO_SHA}","file":"other.sql"}}"#),
            "describes \"other.sql\", not dump erp.sql",
        );
        check(
            &format!(r#"{{"sha256":"{HELLO_SHA}","bytes":-1}}"#),
            "is not a size",
        );
        let err = format!(
            "{:#}",
            read_manifest(&dir.path().join("missing.json"), "erp.sql").unwrap_err()
        );
        assert!(err.starts_with("reading manifest"), "{err}");
        let sums = dir.path().join("SHA256SUMS");
        write(&sums, b"garbage\n");
        let err = read_sha256sums(&sums, "erp.sql").unwrap_err().to_string();
        assert!(err.contains("has no line for dump erp.sql"), "{err}");
    }

    #[test]
    fn a_pipe_or_directory_named_like_a_dump_is_refused_without_hanging() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("erp-20261126-1300.sql");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let err = format!("{:#}", verify_dump(&fifo, &[]).unwrap_err());
        assert!(err.contains("is a named pipe, not a dump file"), "{err}");
        let sub = dir.path().join("erp-20261126-1400.sql");
        std::fs::create_dir(&sub).unwrap();
        let err = format!("{:#}", verify_dump(&sub, &[]).unwrap_err());
        assert!(err.contains("is a directory, not a dump file"), "{err}");
        let dangling = dir.path().join("erp-20261126-1500.sql");
        std::os::unix::fs::symlink(dir.path().join("gone.sql"), &dangling).unwrap();
        let err = format!("{:#}", verify_dump(&dangling, &[]).unwrap_err());
        assert!(
            err.starts_with(&format!("verifying dump {}: opening", dangling.display())),
            "{err}"
        );
    }

    #[test]
    fn an_unreadable_dump_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("erp-20261126-1300.sql");
        let err = format!("{:#}", verify_dump(&missing, &[]).unwrap_err());
        assert!(
            err.starts_with(&format!("verifying dump {}: opening", missing.display())),
            "{err}"
        );
    }
}
