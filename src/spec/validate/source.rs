//! `vm.from`: a libvirt domain snapshot or backup files.

use std::collections::BTreeMap;
use std::path::Path;

use toml::Spanned;

use crate::spec::model::VmSource;
use crate::spec::problems::{Problems, join_key};
use crate::spec::wire::WireFrom;

use super::fields::plain_name;

pub(super) fn validate_source(
    wire: &Spanned<WireFrom>,
    field: &str,
    base: &Path,
    problems: &mut Problems,
) -> Option<VmSource> {
    let from = wire.get_ref();
    let domain_form = from.domain.is_some() || from.snapshot.is_some();
    let files_form = from.xml.is_some() || from.disks.is_some();
    if domain_form && files_form {
        problems.at(
            wire.span(),
            field,
            "source mixes both forms; use either { domain, snapshot } for a libvirt domain or { xml, disks } for backup files, not both",
        );
        return None;
    }
    if !domain_form && !files_form {
        problems.at(
            wire.span(),
            field,
            "empty source; use { domain = \"prod-db\", snapshot = \"nightly\" } or { xml = \"db.xml\", disks = { vda = \"db.qcow2\" } }",
        );
        return None;
    }
    if domain_form {
        let domain = match &from.domain {
            None => {
                problems.at(
                    wire.span(),
                    format!("{field}.domain"),
                    "missing domain; name the production libvirt domain whose snapshot the lab clones",
                );
                None
            }
            Some(d) => plain_name(problems, d, &format!("{field}.domain"), "domain name"),
        };
        let snapshot = match &from.snapshot {
            None => {
                problems.at(
                    wire.span(),
                    format!("{field}.snapshot"),
                    "missing snapshot; name the external disk-only snapshot whose frozen backing files the lab clones (virsh snapshot-list DOMAIN lists them)",
                );
                None
            }
            Some(s) => plain_name(problems, s, &format!("{field}.snapshot"), "snapshot name"),
        };
        return Some(VmSource::Domain {
            domain: domain?,
            snapshot: snapshot?,
        });
    }

    let xml = match &from.xml {
        None => {
            problems.at(
                wire.span(),
                format!("{field}.xml"),
                "missing xml; give the domain XML file that goes with the disks, like xml = \"backups/db.xml\"",
            );
            None
        }
        Some(xml) if xml.get_ref().trim().is_empty() => {
            problems.at(
                xml.span(),
                format!("{field}.xml"),
                "empty xml path; give the domain XML file, like xml = \"backups/db.xml\"",
            );
            None
        }
        Some(xml) => Some(base.join(xml.get_ref())),
    };
    let disks = match &from.disks {
        None => {
            problems.at(
                wire.span(),
                format!("{field}.disks"),
                "missing disks; map each disk target to its image, like disks = { vda = \"backups/db.qcow2\" }",
            );
            None
        }
        Some(disks) if disks.get_ref().is_empty() => {
            problems.at(
                disks.span(),
                format!("{field}.disks"),
                "no disks; map each disk target to its image, like disks = { vda = \"backups/db.qcow2\" }",
            );
            None
        }
        Some(disks) => {
            let mut ok = true;
            let mut map = BTreeMap::new();
            for (target, image) in disks.get_ref() {
                let disk_field = join_key(&format!("{field}.disks"), target.get_ref());
                let valid_target = {
                    let mut chars = target.get_ref().chars();
                    matches!(chars.next(), Some('a'..='z'))
                        && target.get_ref().len() <= 16
                        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
                };
                if !valid_target {
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
    };
    Some(VmSource::Files {
        xml: xml?,
        disks: disks?,
    })
}
