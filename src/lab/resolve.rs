//! Resolve a lab file's sources: read production domain/snapshot XML and image chains,
//! refuse what cannot be cloned safely. Reads only; creates nothing.

use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::hv::Hypervisor;
use crate::lab::image;
use crate::lab::resolved::{ResolvedDisk, ResolvedVm};
use crate::spec::{LabSpec, VmSource};
use crate::xml::facts::{self, DiskInfo};

/// Resolve every VM of the lab.
pub fn resolve(spec: &LabSpec, hv: &dyn Hypervisor) -> Result<Vec<ResolvedVm>> {
    let writers = open_for_writing(hv)?;
    let mut out = Vec::new();
    for vm in &spec.vms {
        let (xml, origin, overrides) = match &vm.source {
            VmSource::Domain { domain, snapshot } => {
                let snaps = hv.list_snapshots(domain).with_context(|| {
                    format!(
                        "vm {}: production domain {domain} not found on {}",
                        vm.name,
                        hv.uri()
                    )
                })?;
                if !snaps.iter().any(|s| s == snapshot) {
                    bail!(
                        "vm {}: domain {domain} has no snapshot {snapshot:?}; it has: {}",
                        vm.name,
                        if snaps.is_empty() {
                            "none".to_string()
                        } else {
                            snaps.join(", ")
                        }
                    );
                }
                let xml = hv.snapshot_xml(domain, snapshot)?;
                if !xml.contains("<state>disk-snapshot</state>") {
                    bail!(
                        "vm {}: snapshot {snapshot} of {domain} is not an external disk-only \
                         snapshot; reclab clones the frozen backing files of such snapshots \
                         (virsh snapshot-create-as {domain} NAME --disk-only --atomic)",
                        vm.name
                    );
                }
                (
                    xml,
                    format!("domain {domain} snapshot {snapshot}"),
                    BTreeMap::new(),
                )
            }
            VmSource::Files { xml, disks } => {
                let text = std::fs::read_to_string(xml).with_context(|| {
                    format!(
                        "vm {}: cannot read domain XML file {}",
                        vm.name,
                        xml.display()
                    )
                })?;
                (text, format!("file {}", xml.display()), disks.clone())
            }
        };
        let facts = facts::facts(&xml).with_context(|| format!("vm {}: {origin}", vm.name))?;
        let mut disks = Vec::new();
        for d in facts.disks.iter().filter(|d| d.device == "disk") {
            let path = disk_path(&vm.name, &origin, d, &overrides)?;
            if let Some(w) = writers.get(&path) {
                bail!(
                    "vm {}: image {} is open for writing by running domain {w}; clone a \
                     snapshot's frozen backing file or a backup image instead",
                    vm.name,
                    path.display()
                );
            }
            let chain = image::chain(&path, d.format.as_deref())
                .with_context(|| format!("vm {}: disk {}", vm.name, d.target))?;
            disks.push(ResolvedDisk {
                target: d.target.clone(),
                chain,
            });
        }
        for t in overrides.keys() {
            if !facts
                .disks
                .iter()
                .any(|d| &d.target == t && d.device == "disk")
            {
                bail!(
                    "vm {}: disks.{t}: the domain XML has no disk with target {t}; its disks: {}",
                    vm.name,
                    facts
                        .disks
                        .iter()
                        .map(|d| d.target.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
        out.push(ResolvedVm {
            name: vm.name.clone(),
            origin,
            nvram: facts.nvram.clone().map(PathBuf::from),
            xml,
            facts,
            disks,
        });
    }
    Ok(out)
}

fn disk_path(
    vm: &str,
    origin: &str,
    d: &DiskInfo,
    overrides: &BTreeMap<String, PathBuf>,
) -> Result<PathBuf> {
    if let Some(p) = overrides.get(&d.target) {
        return Ok(p.clone());
    }
    if !overrides.is_empty() {
        bail!(
            "vm {vm}: disks: no image given for disk {} of {origin}; add `{} = \"PATH\"`",
            d.target,
            d.target
        );
    }
    match d.kind.as_str() {
        "file" | "block" => {}
        other => bail!(
            "vm {vm}: disk {} of {origin} is of type {other}; reclab clones file and block \
             disks only",
            d.target
        ),
    }
    d.source
        .as_ref()
        .map(PathBuf::from)
        .with_context(|| format!("vm {vm}: disk {} of {origin} has no source", d.target))
}

/// Top-layer images that running domains have open for writing, with the domain name.
fn open_for_writing(hv: &dyn Hypervisor) -> Result<BTreeMap<PathBuf, String>> {
    let mut out = BTreeMap::new();
    for d in hv.list_domains()?.into_iter().filter(|d| d.active) {
        let Ok(xml) = hv.domain_xml(&d.name, false) else {
            continue;
        };
        let Ok(f) = facts::facts(&xml) else {
            continue;
        };
        for disk in f.disks.iter().filter(|x| !x.readonly) {
            if let Some(s) = &disk.source {
                out.insert(PathBuf::from(s), d.name.clone());
            }
        }
    }
    Ok(out)
}
