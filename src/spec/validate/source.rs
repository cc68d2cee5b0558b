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
    let files_form = from.xml.is_some() || from.disks.is_some();
    match (domain_form, files_form) {
        (true, true) => {
            problems.at(
                wire.span(),
                field,
                "source mixes both forms; use either { domain, snapshot } for a libvirt domain or { xml, disks } for backup files, not both",
            );
            None
        }
        (false, false) => {
            problems.at(
                wire.span(),
                field,
                "empty source; use { domain = \"prod-db\", snapshot = \"nightly\" } or { xml = \"db.xml\", disks = { vda = \"db.qcow2\" } }",
            );
            None
        }
        (true, false) => domain_source(problems, from, wire.span(), field),
        (false, true) => files_source(problems, from, wire.span(), field, base),
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
    Some(VmSource::Files {
        xml: xml?,
        disks: disks?,
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
