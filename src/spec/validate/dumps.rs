//! `[vm.dumps]`: where a VM's database dumps are and how they are restored.

use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;

use crate::base::pattern::NamePattern;
use crate::base::template::{expand, uses};
use crate::spec::model::{
    DEFAULT_MOUNT, DEFAULT_RESTORE_TIMEOUT, DiskAttach, DiskFormat, DumpTime, DumpsSpec,
};
use crate::spec::problems::Problems;
use crate::spec::wire::{Text, WireDumps};

use super::fields::{duration_or, not_blank, one_of, present};

/// Why a file name given relative to `dumps.dir` does not stay inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum NotInside {
    #[error("is empty")]
    Empty,
    #[error("is absolute; give a name relative to dumps.dir")]
    Absolute,
    #[error("leaves dumps.dir with '..'; give a name inside it")]
    Parent,
}

/// A relative path inside the dump directory: not empty, not absolute, no `..`.
fn relative_inside(text: &str) -> Result<(), NotInside> {
    if text.trim().is_empty() {
        Err(NotInside::Empty)
    } else if text.starts_with('/') {
        Err(NotInside::Absolute)
    } else if text.split('/').any(|part| part == "..") {
        Err(NotInside::Parent)
    } else {
        Ok(())
    }
}

pub(super) fn validate_dumps(
    wire: &Spanned<WireDumps>,
    field: &str,
    base: &Path,
    problems: &mut Problems,
) -> Option<DumpsSpec> {
    let dumps = wire.get_ref();
    let at = wire.span();
    let f = |key: &str| format!("{field}.{key}");

    let dir = dump_dir(problems, &dumps.dir, at.clone(), &f("dir"), base);
    let time = time_source(problems, &dumps.time, &f("time"));
    let from_mtime = matches!(time, Some(DumpTime::Mtime));
    let pattern = name_pattern(problems, &dumps.pattern, at, &f("pattern"), from_mtime);
    let time = time_zone(problems, time, &dumps.tz, pattern.as_ref(), &f("tz"));
    let manifest = manifest(problems, &dumps.manifest, &f("manifest"));
    let sha256sums = sha256sums(problems, &dumps.sha256sums, &f("sha256sums"));
    let restore_as = restore_as(problems, &dumps.restore_as, &f("restore_as"));
    let restore = restore_commands(problems, dumps, field);
    let as_used = restore_as_used(problems, dumps, &f("restore_as"));
    let format = one_of(
        problems,
        &dumps.format,
        &f("format"),
        DiskFormat::Ext4,
        &[("ext4", DiskFormat::Ext4), ("iso", DiskFormat::Iso)],
        |other| {
            format!(
                "unknown data disk format {other:?}; use \"ext4\" (the default) or \"iso\" (for guests without ext4)"
            )
        },
    );
    let mount = mount_point(problems, &dumps.mount, &f("mount"));
    let attach = one_of(
        problems,
        &dumps.attach,
        &f("attach"),
        DiskAttach::Boot,
        &[("boot", DiskAttach::Boot), ("hotplug", DiskAttach::Hotplug)],
        |other| {
            format!(
                "unknown attach mode {other:?}; use \"boot\" (the default: the disk is there from boot) or \"hotplug\" (plugged in once the guest agent answers)"
            )
        },
    );
    let timeout = duration_or(
        problems,
        &dumps.timeout,
        &f("timeout"),
        DEFAULT_RESTORE_TIMEOUT,
    );

    as_used?;
    Some(DumpsSpec {
        dir: dir?,
        pattern: pattern?,
        time: time?,
        manifest: manifest?,
        sha256sums: sha256sums?,
        restore: restore?,
        restore_as: restore_as?,
        format: format?,
        mount: mount?,
        attach: attach?,
        timeout: timeout?,
    })
}

/// `dumps.dir`, joined to the lab file's directory.
fn dump_dir(
    problems: &mut Problems,
    value: &Option<Text>,
    at: Range<usize>,
    field: &str,
    base: &Path,
) -> Option<PathBuf> {
    let dir = present(
        problems,
        value,
        at,
        field,
        "missing dump directory; give the directory the dumps are in, relative to the lab file, like dir = \"backups/dumps\"",
    )?;
    let dir = not_blank(
        problems,
        dir,
        field,
        "empty dump directory; give the directory the dumps are in, like dir = \"backups/dumps\"",
    )?;
    Some(base.join(dir.get_ref()))
}

/// `dumps.time`: where a dump's time comes from; the time zone is filled in by [`time_zone`].
fn time_source(problems: &mut Problems, value: &Option<Text>, field: &str) -> Option<DumpTime> {
    let name = DumpTime::Name { tz: None };
    one_of(
        problems,
        value,
        field,
        name.clone(),
        &[("name", name), ("mtime", DumpTime::Mtime)],
        |other| {
            format!(
                "unknown time source {other:?}; use \"name\" (read the time from the file name with the pattern, the default) or \"mtime\" (the file's modification time)"
            )
        },
    )
}

/// `dumps.pattern`; it must have time fields unless the times are modification times.
fn name_pattern(
    problems: &mut Problems,
    value: &Option<Text>,
    at: Range<usize>,
    field: &str,
    from_mtime: bool,
) -> Option<NamePattern> {
    let text = present(
        problems,
        value,
        at,
        field,
        "missing pattern; give the dump file names with their time fields, like pattern = \"erp-%Y%m%d-%H%M.sql\"",
    )?;
    match NamePattern::parse(text.get_ref(), !from_mtime) {
        Ok(pattern) => Some(pattern),
        Err(err) => {
            problems.at(text.span(), field, err.to_string());
            None
        }
    }
}

/// `dumps.tz`: the zone of wall-clock times in file names, put into `time`.
fn time_zone(
    problems: &mut Problems,
    time: Option<DumpTime>,
    value: &Option<Text>,
    pattern: Option<&NamePattern>,
    field: &str,
) -> Option<DumpTime> {
    let Some(tz) = value else {
        return time;
    };
    let problem = if matches!(time, Some(DumpTime::Mtime)) {
        "tz applies to times read from file names, but time = \"mtime\"; drop tz (modification times are absolute)".to_string()
    } else if pattern.is_some_and(NamePattern::has_zone) {
        "the pattern's %s or %z already fixes the time zone of the names; drop tz".to_string()
    } else if jiff::tz::TimeZone::get(tz.get_ref()).is_err() {
        format!(
            "unknown time zone {:?}; use an IANA name like \"Europe/Berlin\" (the names are in /usr/share/zoneinfo), or drop tz for UTC",
            tz.get_ref()
        )
    } else {
        return time.map(|_| DumpTime::Name {
            tz: Some(tz.get_ref().clone()),
        });
    };
    problems.at(tz.span(), field, problem);
    None
}

/// `dumps.manifest`: a name template with `{file}`, inside the dump directory.
fn manifest(problems: &mut Problems, value: &Option<Text>, field: &str) -> Option<Option<String>> {
    let Some(text) = value else {
        return Some(None);
    };
    let template = text.get_ref();
    let problem = match relative_inside(template) {
        Err(why) => Some(format!("manifest {why}")),
        Ok(()) => match expand(template, &[("file", "x")]) {
            Err(why) => Some(format!("manifest {why}")),
            Ok(_) if !uses(template, "file") => Some(
                "manifest has no {file}, so every dump would share one manifest; write it like \"{file}.manifest.json\""
                    .to_string(),
            ),
            Ok(_) => None,
        },
    };
    match problem {
        Some(problem) => {
            problems.at(text.span(), field, problem);
            None
        }
        None => Some(Some(template.clone())),
    }
}

/// `dumps.sha256sums`: a checksum file inside the dump directory.
fn sha256sums(
    problems: &mut Problems,
    value: &Option<Text>,
    field: &str,
) -> Option<Option<String>> {
    let Some(text) = value else {
        return Some(None);
    };
    match relative_inside(text.get_ref()) {
        Err(why) => {
            problems.at(text.span(), field, format!("checksum file {why}"));
            None
        }
        Ok(()) => Some(Some(text.get_ref().clone())),
    }
}

/// `dumps.restore_as`: the second name to restore under, one line.
fn restore_as(
    problems: &mut Problems,
    value: &Option<Text>,
    field: &str,
) -> Option<Option<String>> {
    let Some(text) = value else {
        return Some(None);
    };
    if text.get_ref().trim().is_empty() || text.get_ref().contains('\n') {
        problems.at(
            text.span(),
            field,
            "restore_as is empty or spans lines; give the second database name or path, like \"/var/lib/erp/restored.db\"",
        );
        return None;
    }
    Some(Some(text.get_ref().clone()))
}

/// `dumps.restore`: shell commands whose placeholders the dumps offer.
fn restore_commands(
    problems: &mut Problems,
    dumps: &WireDumps,
    field: &str,
) -> Option<Vec<String>> {
    // Every placeholder a command may use, and the ones this source offers.
    let all = [
        ("dump", "x"),
        ("dir", "x"),
        ("file", "x"),
        ("manifest", "x"),
        ("as", "x"),
    ];
    let offered: Vec<(&str, &str)> = all
        .iter()
        .copied()
        .filter(|(name, _)| match *name {
            "manifest" => dumps.manifest.is_some(),
            "as" => dumps.restore_as.is_some(),
            _ => true,
        })
        .collect();
    let mut ok = true;
    let mut restore = Vec::new();
    for (i, command) in dumps.restore.iter().flatten().enumerate() {
        let text = command.get_ref();
        let problem = if text.trim().is_empty() {
            Some("restore command is empty; give a shell command or remove the entry".to_string())
        } else if let Err(why) = expand(text, &all) {
            Some(format!("restore command {why}"))
        } else if let Err(why) = expand(text, &offered) {
            if uses(text, "as") && dumps.restore_as.is_none() {
                Some("restore command uses {as}, but the dumps have no restore_as; add restore_as = \"NAME\" or drop {as}".to_string())
            } else if uses(text, "manifest") && dumps.manifest.is_none() {
                Some("restore command uses {manifest}, but the dumps have no manifest; add manifest = \"{file}.manifest.json\" or drop {manifest}".to_string())
            } else {
                Some(format!("restore command {why}"))
            }
        } else {
            None
        };
        if let Some(problem) = problem {
            problems.at(command.span(), format!("{field}.restore[{i}]"), problem);
            ok = false;
        }
        restore.push(text.clone());
    }
    ok.then_some(restore)
}

/// With `restore_as`, some restore command must use `{as}`.
fn restore_as_used(problems: &mut Problems, dumps: &WireDumps, field: &str) -> Option<()> {
    let Some(text) = &dumps.restore_as else {
        return Some(());
    };
    if dumps
        .restore
        .iter()
        .flatten()
        .any(|command| uses(command.get_ref(), "as"))
    {
        return Some(());
    }
    problems.at(
        text.span(),
        field,
        "no restore command uses {as}; write the commands that restore under the second name with {as}, like \"sqlite3 {as} < {dump}\"",
    );
    None
}

/// `dumps.mount`: an absolute directory other than `/`, safe to put in a shell command.
fn mount_point(problems: &mut Problems, value: &Option<Text>, field: &str) -> Option<String> {
    let Some(text) = value else {
        return Some(DEFAULT_MOUNT.to_string());
    };
    let mount = text.get_ref();
    let valid = mount.starts_with('/')
        && !mount.trim_end_matches('/').is_empty()
        && !mount
            .chars()
            .any(|c| c.is_whitespace() || c == '\'' || c == '"')
        && !mount.split('/').any(|part| part == "..");
    if valid {
        return Some(mount.clone());
    }
    problems.at(
        text.span(),
        field,
        format!(
            "{mount:?} is not a usable mount point; give an absolute directory other than / without whitespace or quotes, like \"/mnt/reclab\""
        ),
    );
    None
}
