//! Files written whole or not at all.

use anyhow::{Context, Result};
use std::fs;
use std::io::Write;
use std::path::Path;

/// Write a file atomically: a temp file in the same directory, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = path.parent().context("path without parent")?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating temp file in {}", dir.display()))?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_data()?;
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(mode))?;
    tmp.persist(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Copies directory `from` with everything in it to `to`, which must not exist yet: files by
/// content (the source is only read), directories recursively; a symbolic link is refused
/// rather than followed out of the tree.
pub fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir(to).with_context(|| format!("creating {}", to.display()))?;
    for entry in fs::read_dir(from).with_context(|| format!("listing {}", from.display()))? {
        let entry = entry.with_context(|| format!("listing {}", from.display()))?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let kind = entry
            .file_type()
            .with_context(|| format!("reading {}", src.display()))?;
        if kind.is_dir() {
            copy_tree(&src, &dst)?;
        } else if kind.is_file() {
            fs::copy(&src, &dst).with_context(|| format!("copying {}", src.display()))?;
        } else {
            anyhow::bail!(
                "{} is neither a file nor a directory; refusing to copy it",
                src.display()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_is_copied_whole_and_a_link_in_it_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("tpm");
        fs::create_dir_all(src.join("sub")).unwrap();
        fs::write(src.join("tpm2-00.permall"), b"state").unwrap();
        fs::write(src.join("sub/x"), b"more").unwrap();
        copy_tree(&src, &tmp.path().join("copy")).unwrap();
        assert_eq!(
            fs::read(tmp.path().join("copy/tpm2-00.permall")).unwrap(),
            b"state"
        );
        assert_eq!(fs::read(tmp.path().join("copy/sub/x")).unwrap(), b"more");
        assert!(
            copy_tree(&src, &tmp.path().join("copy")).is_err(),
            "the target must be new"
        );

        std::os::unix::fs::symlink("/etc/passwd", src.join("link")).unwrap();
        let err = copy_tree(&src, &tmp.path().join("again")).unwrap_err();
        assert!(
            format!("{err:#}").contains("neither a file nor a directory"),
            "{err:#}"
        );
    }
}
