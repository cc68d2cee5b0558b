//! Image points: the VM images a lab can clone (a libvirt snapshot with its `<creationTime>`,
//! every snapshot matching a `nightly-*` pattern, or backup disk files with their newest
//! modification time).

use anyhow::{Context, Result, bail};
use jiff::Timestamp;
use quick_xml::Reader;
use quick_xml::events::Event;

use crate::base::pattern::NamePattern;
use crate::hv::Hypervisor;
use crate::restore::dumps::Timed;
use crate::spec::{VmSource, VmSpec};

/// One VM image a lab can clone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImagePoint {
    /// Snapshot name, or the first disk's file name for backup files.
    pub name: String,
    pub time: Timestamp,
    /// Where it is: `snapshot prod-db/nightly`, or `files vda=/backups/db.qcow2`.
    pub source: String,
}

impl Timed for ImagePoint {
    fn time(&self) -> Timestamp {
        self.time
    }
    fn label(&self) -> String {
        self.name.clone()
    }
}

/// The `<creationTime>` (seconds since 1970) of a `<domainsnapshot>` XML.
pub fn snapshot_creation_time(xml: &str) -> Result<Timestamp> {
    let mut reader = Reader::from_str(xml);
    let mut stack: Vec<String> = Vec::new();
    let mut text: Option<String> = None;
    loop {
        match reader.read_event().context("parsing snapshot xml")? {
            Event::Start(e) => {
                stack.push(e.local_name().as_ref().to_string());
            }
            Event::Text(t) if stack == ["domainsnapshot", "creationTime"] => {
                text.get_or_insert_with(String::new)
                    .push_str(&t.xml10_content());
            }
            Event::End(_) => {
                stack.pop();
            }
            Event::Eof => break,
            _ => {}
        }
    }
    let Some(text) = text else {
        bail!("the snapshot xml has no <creationTime>");
    };
    let seconds: i64 = text
        .trim()
        .parse()
        .with_context(|| format!("the snapshot's <creationTime> {text:?} is not a number"))?;
    Timestamp::from_second(seconds)
        .with_context(|| format!("the snapshot's <creationTime> {seconds} is out of range"))
}

/// Whether snapshot `name` is meant by `pattern`: the same name, or, where the pattern has
/// `*` (any run of characters), a match of the whole name. Other characters, `%` among them,
/// are literal; the matching is [`NamePattern`]'s.
pub fn snapshot_matches(pattern: &str, name: &str) -> bool {
    if !pattern.contains('*') {
        return pattern == name;
    }
    NamePattern::parse(&pattern.replace('%', "%%"), false).is_ok_and(|p| p.matches(name))
}

/// The image points of a VM: its snapshot, or every snapshot matching its pattern (needs the
/// hypervisor), or its backup files (dated by their newest modification time).
pub fn image_points(vm: &VmSpec, hv: Option<&dyn Hypervisor>) -> Result<Vec<ImagePoint>> {
    match &vm.source {
        VmSource::Domain { domain, snapshot } => {
            let Some(hv) = hv else {
                bail!(
                    "vm {}: its image is snapshot {snapshot} of domain {domain}, and reading its time needs the hypervisor",
                    vm.name
                );
            };
            let names = hv
                .list_snapshots(domain)
                .with_context(|| format!("vm {}: listing the snapshots of {domain}", vm.name))?;
            // A name with `*` is a pattern: every matching snapshot is an image point.
            let chosen: Vec<&String> = names
                .iter()
                .filter(|n| snapshot_matches(snapshot, n))
                .collect();
            if chosen.is_empty() {
                bail!(
                    "vm {}: domain {domain} has no snapshot {}{snapshot}; it has: {}",
                    vm.name,
                    if snapshot.contains('*') {
                        "matching "
                    } else {
                        ""
                    },
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                );
            }
            chosen
                .into_iter()
                .map(|name| {
                    let xml = hv.snapshot_xml(domain, name).with_context(|| {
                        format!("vm {}: reading snapshot {name} of {domain}", vm.name)
                    })?;
                    let time = snapshot_creation_time(&xml).with_context(|| {
                        format!("vm {}: reading snapshot {name} of {domain}", vm.name)
                    })?;
                    Ok(ImagePoint {
                        name: name.clone(),
                        time,
                        source: format!("snapshot {domain}/{name}"),
                    })
                })
                .collect()
        }
        VmSource::Virtnbdbackup { dir, zone, .. } => {
            let chain = crate::restore::virtnbdbackup::scan(dir, zone.as_deref(), &vm.name)?;
            for w in &chain.warnings {
                eprintln!("reclab: warning: {w}");
            }
            let n = chain.checkpoints.len();
            Ok(chain
                .checkpoints
                .iter()
                .map(|c| ImagePoint {
                    name: c.name.clone(),
                    time: c.time,
                    source: format!(
                        "virtnbdbackup {} {} {} of {n}",
                        dir.display(),
                        c.kind.as_str(),
                        c.position + 1
                    ),
                })
                .collect())
        }
        VmSource::Files { disks, taken, .. } => {
            if let Some(taken) = taken {
                for path in disks.values() {
                    if !path.exists() {
                        bail!(
                            "vm {}: disk image {} does not exist; check from.disks in the lab file",
                            vm.name,
                            path.display()
                        );
                    }
                }
                return Ok(vec![ImagePoint {
                    name: first_name(disks),
                    time: *taken,
                    source: format!("files {} (taken, from the lab file)", files_list(disks)),
                }]);
            }
            let mut newest: Option<Timestamp> = None;
            for path in disks.values() {
                let modified = std::fs::metadata(path)
                    .and_then(|m| m.modified())
                    .with_context(|| {
                        format!(
                            "vm {}: reading the modification time of disk image {}",
                            vm.name,
                            path.display()
                        )
                    })?;
                let time = Timestamp::try_from(modified).with_context(|| {
                    format!(
                        "vm {}: the time of {} is out of range",
                        vm.name,
                        path.display()
                    )
                })?;
                newest = newest.max(Some(time));
            }
            Ok(vec![ImagePoint {
                name: first_name(disks),
                time: newest.context("the vm has no disks")?,
                source: format!("files {}", files_list(disks)),
            }])
        }
    }
}

fn first_name(disks: &std::collections::BTreeMap<String, std::path::PathBuf>) -> String {
    disks
        .values()
        .next()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn files_list(disks: &std::collections::BTreeMap<String, std::path::PathBuf>) -> String {
    disks
        .iter()
        .map(|(target, path)| format!("{target}={}", path.display()))
        .collect::<Vec<_>>()
        .join(" ")
}
