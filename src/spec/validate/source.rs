//! `vm.from`: a libvirt domain snapshot or backup files.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;

use crate::spec::model::VmSource;
use crate::spec::problems::{Problems, join_key};
use crate::spec::wire::{Text, WireFrom};

use super::fields::{not_blank, plain_name, present};

pub(super) fn validate_source(
    wire: &Spanned<WireFrom>,
    field: &str,
    base: &Path,
    problems: &mut Problems,
) -> Option<VmSource> {
    let from = wire.get_ref();
    let domain_form = from.domain.is_some() || from.snapshot.is_some();
    let files_form = from.xml.is_some() || from.disks.is_some() || from.taken.is_some();
    let backup_form = from.virtnbdbackup.is_some() || from.zone.is_some();
    let forms = [domain_form, files_form, backup_form]
        .iter()
        .filter(|f| **f)
        .count();
    match forms {
        0 => {
            problems.at(
                wire.span(),
                field,
                "empty source; use { domain = \"prod-db\", snapshot = \"nightly\" }, { xml = \"db.xml\", disks = { vda = \"db.qcow2\" } } or { virtnbdbackup = \"backups/vm/db\" }",
            );
            None
        }
        1 if domain_form => domain_source(problems, from, wire.span(), field),
        1 if files_form => files_source(problems, from, wire.span(), field, base),
        1 => backup_source(problems, from, wire.span(), field, base),
        _ => {
            problems.at(
                wire.span(),
                field,
                "source mixes forms; use one of { domain, snapshot } for a libvirt domain, { xml, disks, taken } for backup files or { virtnbdbackup, zone } for a virtnbdbackup directory",
            );
            None
        }
    }
}

/// `{ virtnbdbackup, zone }`: a virtnbdbackup backup directory, its header dates in `zone`.
fn backup_source(
    problems: &mut Problems,
    from: &WireFrom,
    at: Range<usize>,
    field: &str,
    base: &Path,
) -> Option<VmSource> {
    let dir_field = format!("{field}.virtnbdbackup");
    let dir = present(
        problems,
        &from.virtnbdbackup,
        at,
        &dir_field,
        "missing virtnbdbackup; give the backup directory virtnbdbackup -o wrote, like virtnbdbackup = \"backups/vm/db\"",
    )
    .and_then(|d| {
        not_blank(
            problems,
            d,
            &dir_field,
            "empty virtnbdbackup path; give the backup directory virtnbdbackup -o wrote, like \"backups/vm/db\"",
        )
    })
    .map(|d| base.join(d.get_ref()));
    let mut zone_ok = true;
    let zone = from.zone.as_ref().map(|z| {
        if jiff::tz::TimeZone::get(z.get_ref()).is_err() {
            problems.at(
                z.span(),
                format!("{field}.zone"),
                format!(
                    "unknown time zone {:?}; use the IANA name of the backup host's zone, like \"Europe/Zurich\" (the names are in /usr/share/zoneinfo), or drop zone for the system's",
                    z.get_ref()
                ),
            );
            zone_ok = false;
        }
        z.get_ref().clone()
    });
    Some(VmSource::Virtnbdbackup {
        dir: dir?,
        zone: if zone_ok { zone } else { return None },
        checkpoint: None,
    })
}

/// `taken`: an RFC 3339 time with its offset, like `2026-11-30T22:00:00+01:00`.
fn taken(
    problems: &mut Problems,
    value: &Option<Text>,
    field: &str,
) -> Result<Option<jiff::Timestamp>, ()> {
    let Some(text) = value else {
        return Ok(None);
    };
    match text.get_ref().parse::<jiff::Timestamp>() {
        Ok(t) => Ok(Some(t)),
        Err(_) => {
            problems.at(
                text.span(),
                field,
                format!(
                    "{:?} is not a time with its offset; write when the images were taken like \"2026-11-30T22:00:00+01:00\" or \"2026-11-30T21:00:00Z\", or drop taken to use the images' modification time",
                    text.get_ref()
                ),
            );
            Err(())
        }
    }
}

/// `{ domain, snapshot }`: a production domain and its external disk-only snapshot.
fn domain_source(
    problems: &mut Problems,
    from: &WireFrom,
    at: Range<usize>,
    field: &str,
) -> Option<VmSource> {
    let domain_field = format!("{field}.domain");
    let domain = present(
        problems,
        &from.domain,
        at.clone(),
        &domain_field,
        "missing domain; name the production libvirt domain whose snapshot the lab clones",
    )
    .and_then(|d| plain_name(problems, d, &domain_field, "domain name"));
    let snapshot_field = format!("{field}.snapshot");
    let snapshot = present(
        problems,
        &from.snapshot,
        at,
        &snapshot_field,
        "missing snapshot; name the external disk-only snapshot whose frozen backing files the lab clones (virsh snapshot-list DOMAIN lists them)",
    )
    .and_then(|s| plain_name(problems, s, &snapshot_field, "snapshot name"));
    Some(VmSource::Domain {
        domain: domain?,
        snapshot: snapshot?,
    })
}

/// `{ xml, disks }`: a domain XML file and an image per disk target.
fn files_source(
    problems: &mut Problems,
    from: &WireFrom,
    at: Range<usize>,
    field: &str,
    base: &Path,
) -> Option<VmSource> {
    let xml_field = format!("{field}.xml");
    let xml = present(
        problems,
        &from.xml,
        at.clone(),
        &xml_field,
        "missing xml; give the domain XML file that goes with the disks, like xml = \"backups/db.xml\"",
    )
    .and_then(|xml| {
        not_blank(
            problems,
            xml,
            &xml_field,
            "empty xml path; give the domain XML file, like xml = \"backups/db.xml\"",
        )
    })
    .map(|xml| base.join(xml.get_ref()));
    let disks = disks(problems, &from.disks, at, &format!("{field}.disks"), base);
    let taken = taken(problems, &from.taken, &format!("{field}.taken"));
    Some(VmSource::Files {
        xml: xml?,
        disks: disks?,
        taken: taken.ok()?,
    })
}

/// `disks`: at least one, target dev names to image paths joined to the lab file's directory.
fn disks(
    problems: &mut Problems,
    value: &Option<Spanned<BTreeMap<Text, Text>>>,
    at: Range<usize>,
    field: &str,
    base: &Path,
) -> Option<BTreeMap<String, PathBuf>> {
    let disks = present(
        problems,
        value,
        at,
        field,
        "missing disks; map each disk target to its image, like disks = { vda = \"backups/db.qcow2\" }",
    )?;
    if disks.get_ref().is_empty() {
        problems.at(
            disks.span(),
            field,
            "no disks; map each disk target to its image, like disks = { vda = \"backups/db.qcow2\" }",
        );
        return None;
    }
    let mut ok = true;
    let mut map = BTreeMap::new();
    for (target, image) in disks.get_ref() {
        let disk_field = join_key(field, target.get_ref());
        if !valid_target(target.get_ref()) {
            problems.at(
                target.span(),
                &disk_field,
                format!(
                    "{:?} is not a disk target; use the target dev from the domain XML, like vda or sdb",
                    target.get_ref()
                ),
            );
            ok = false;
        }
        if image.get_ref().trim().is_empty() {
            problems.at(
                image.span(),
                &disk_field,
                "empty image path; give the disk image file, like \"backups/db.qcow2\"",
            );
            ok = false;
        }
        map.insert(target.get_ref().clone(), base.join(image.get_ref()));
    }
    ok.then_some(map)
}

/// A disk target dev such as `vda`: a lowercase letter, then lowercase letters or digits.
fn valid_target(target: &str) -> bool {
    let mut chars = target.chars();
    matches!(chars.next(), Some('a'..='z'))
        && target.len() <= 16
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
}
