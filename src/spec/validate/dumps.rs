//! `[vm.dumps]`: where a VM's database dumps are and how they are restored.

use std::path::Path;

use toml::Spanned;

use crate::base::pattern::NamePattern;
use crate::base::template::{expand, uses};

use crate::spec::model::{
    DEFAULT_MOUNT, DEFAULT_RESTORE_TIMEOUT, DiskAttach, DiskFormat, DumpTime, DumpsSpec,
};
use crate::spec::problems::Problems;
use crate::spec::wire::WireDumps;

use super::fields::duration_field;

/// A relative path inside the dump directory: not empty, not absolute, no `..`.
pub(super) fn relative_inside(text: &str) -> Result<(), &'static str> {
    if text.trim().is_empty() {
        Err("is empty")
    } else if text.starts_with('/') {
        Err("is absolute; give a name relative to dumps.dir")
    } else if text.split('/').any(|part| part == "..") {
        Err("leaves dumps.dir with '..'; give a name inside it")
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
    let mut ok = true;

    let dir = match &dumps.dir {
        None => {
            problems.at(
                wire.span(),
                format!("{field}.dir"),
                "missing dump directory; give the directory the dumps are in, relative to the lab file, like dir = \"backups/dumps\"",
            );
            None
        }
        Some(dir) if dir.get_ref().trim().is_empty() => {
            problems.at(
                dir.span(),
                format!("{field}.dir"),
                "empty dump directory; give the directory the dumps are in, like dir = \"backups/dumps\"",
            );
            None
        }
        Some(dir) => Some(base.join(dir.get_ref())),
    };

    let time = match &dumps.time {
        None => Some(DumpTime::Name { tz: None }),
        Some(time) => match time.get_ref().as_str() {
            "name" => Some(DumpTime::Name { tz: None }),
            "mtime" => Some(DumpTime::Mtime),
            other => {
                problems.at(
                    time.span(),
                    format!("{field}.time"),
                    format!(
                        "unknown time source {other:?}; use \"name\" (read the time from the file name with the pattern, the default) or \"mtime\" (the file's modification time)"
                    ),
                );
                None
            }
        },
    };
    let from_mtime = matches!(time, Some(DumpTime::Mtime));

    let pattern = match &dumps.pattern {
        None => {
            problems.at(
                wire.span(),
                format!("{field}.pattern"),
                "missing pattern; give the dump file names with their time fields, like pattern = \"erp-%Y%m%d-%H%M.sql\"",
            );
            None
        }
        Some(text) => match NamePattern::parse(text.get_ref(), !from_mtime) {
            Ok(pattern) => Some(pattern),
            Err(err) => {
                problems.at(text.span(), format!("{field}.pattern"), err.to_string());
                None
            }
        },
    };

    let time = match (time, &dumps.tz) {
        (time, None) => time,
        (Some(DumpTime::Mtime), Some(tz)) => {
            problems.at(
                tz.span(),
                format!("{field}.tz"),
                "tz applies to times read from file names, but time = \"mtime\"; drop tz (modification times are absolute)",
            );
            None
        }
        (time, Some(tz)) => {
            if pattern.as_ref().is_some_and(NamePattern::has_zone) {
                problems.at(
                    tz.span(),
                    format!("{field}.tz"),
                    "the pattern's %s or %z already fixes the time zone of the names; drop tz",
                );
                None
            } else if jiff::tz::TimeZone::get(tz.get_ref()).is_err() {
                problems.at(
                    tz.span(),
                    format!("{field}.tz"),
                    format!(
                        "unknown time zone {:?}; use an IANA name like \"Europe/Berlin\" (the names are in /usr/share/zoneinfo), or drop tz for UTC",
                        tz.get_ref()
                    ),
                );
                None
            } else {
                time.map(|_| DumpTime::Name {
                    tz: Some(tz.get_ref().clone()),
                })
            }
        }
    };

    let manifest = match &dumps.manifest {
        None => None,
        Some(text) => {
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
            if let Some(problem) = problem {
                problems.at(text.span(), format!("{field}.manifest"), problem);
                ok = false;
            }
            Some(template.clone())
        }
    };

    let sha256sums = match &dumps.sha256sums {
        None => None,
        Some(text) => {
            if let Err(why) = relative_inside(text.get_ref()) {
                problems.at(
                    text.span(),
                    format!("{field}.sha256sums"),
                    format!("checksum file {why}"),
                );
                ok = false;
            }
            Some(text.get_ref().clone())
        }
    };

    let restore_as = match &dumps.restore_as {
        None => None,
        Some(text) if text.get_ref().trim().is_empty() || text.get_ref().contains('\n') => {
            problems.at(
                text.span(),
                format!("{field}.restore_as"),
                "restore_as is empty or spans lines; give the second database name or path, like \"/var/lib/erp/restored.db\"",
            );
            ok = false;
            None
        }
        Some(text) => Some(text.get_ref().clone()),
    };

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
            "manifest" => manifest.is_some(),
            "as" => dumps.restore_as.is_some(),
            _ => true,
        })
        .collect();
    let mut restore = Vec::new();
    for (i, command) in dumps.restore.iter().flatten().enumerate() {
        let command_field = format!("{field}.restore[{i}]");
        let text = command.get_ref();
        let problem = if text.trim().is_empty() {
            Some("restore command is empty; give a shell command or remove the entry".to_string())
        } else if let Err(why) = expand(text, &all) {
            Some(format!("restore command {why}"))
        } else if let Err(why) = expand(text, &offered) {
            if uses(text, "as") && dumps.restore_as.is_none() {
                Some("restore command uses {as}, but the dumps have no restore_as; add restore_as = \"NAME\" or drop {as}".to_string())
            } else if uses(text, "manifest") && manifest.is_none() {
                Some("restore command uses {manifest}, but the dumps have no manifest; add manifest = \"{file}.manifest.json\" or drop {manifest}".to_string())
            } else {
                Some(format!("restore command {why}"))
            }
        } else {
            None
        };
        if let Some(problem) = problem {
            problems.at(command.span(), command_field, problem);
            ok = false;
        }
        restore.push(text.clone());
    }
    if let Some(text) = &dumps.restore_as
        && !restore.iter().any(|command| uses(command, "as"))
    {
        problems.at(
            text.span(),
            format!("{field}.restore_as"),
            "no restore command uses {as}; write the commands that restore under the second name with {as}, like \"sqlite3 {as} < {dump}\"",
        );
        ok = false;
    }

    let format = match &dumps.format {
        None => Some(DiskFormat::Ext4),
        Some(text) => match text.get_ref().as_str() {
            "ext4" => Some(DiskFormat::Ext4),
            "iso" => Some(DiskFormat::Iso),
            other => {
                problems.at(
                    text.span(),
                    format!("{field}.format"),
                    format!(
                        "unknown data disk format {other:?}; use \"ext4\" (the default) or \"iso\" (for guests without ext4)"
                    ),
                );
                None
            }
        },
    };

    let mount = match &dumps.mount {
        None => Some(DEFAULT_MOUNT.to_string()),
        Some(text) => {
            let mount = text.get_ref();
            let valid = mount.starts_with('/')
                && !mount.trim_end_matches('/').is_empty()
                && !mount
                    .chars()
                    .any(|c| c.is_whitespace() || c == '\'' || c == '"')
                && !mount.split('/').any(|part| part == "..");
            if valid {
                Some(mount.clone())
            } else {
                problems.at(
                    text.span(),
                    format!("{field}.mount"),
                    format!(
                        "{mount:?} is not a usable mount point; give an absolute directory other than / without whitespace or quotes, like \"/mnt/reclab\""
                    ),
                );
                None
            }
        }
    };

    let attach = match &dumps.attach {
        None => Some(DiskAttach::Boot),
        Some(text) => match text.get_ref().as_str() {
            "boot" => Some(DiskAttach::Boot),
            "hotplug" => Some(DiskAttach::Hotplug),
            other => {
                problems.at(
                    text.span(),
                    format!("{field}.attach"),
                    format!(
                        "unknown attach mode {other:?}; use \"boot\" (the default: the disk is there from boot) or \"hotplug\" (plugged in once the guest agent answers)"
                    ),
                );
                None
            }
        },
    };

    let timeout = match &dumps.timeout {
        None => Some(DEFAULT_RESTORE_TIMEOUT),
        Some(t) => duration_field(problems, t, &format!("{field}.timeout")),
    };

    if !ok {
        return None;
    }
    Some(DumpsSpec {
        dir: dir?,
        pattern: pattern?,
        time: time?,
        manifest,
        sha256sums,
        restore,
        restore_as,
        format: format?,
        mount: mount?,
        attach: attach?,
        timeout: timeout?,
    })
}
