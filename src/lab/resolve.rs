//! Resolve a lab file's sources: read production domain/snapshot XML and image chains,
//! refuse what cannot be cloned safely. Reads only; creates nothing.

use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::hv::Hypervisor;
use crate::lab::image;
use crate::lab::resolved::{BackupRestore, Layer, ResolvedDisk, ResolvedVm};
use crate::spec::{LabSpec, VmSource};
use crate::xml::facts::{self, DiskInfo};

/// Where restored virtnbdbackup images are cached under a state directory.
pub fn restore_cache_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("restore-cache")
}

/// Resolve every VM of the lab; virtnbdbackup sources are restored into `restore_cache`.
pub fn resolve(
    spec: &LabSpec,
    hv: &dyn Hypervisor,
    restore_cache: &Path,
) -> Result<Vec<ResolvedVm>> {
    let writers = open_for_writing(hv)?;
    let mut out = Vec::new();
    for vm in &spec.vms {
        if let VmSource::Virtnbdbackup {
            dir,
            zone,
            checkpoint,
        } = &vm.source
        {
            out.push(resolve_backup(
                &vm.name,
                dir,
                zone.as_deref(),
                checkpoint.as_deref(),
                restore_cache,
            )?);
            continue;
        }
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
            VmSource::Files { xml, disks, .. } => {
                let text = std::fs::read_to_string(xml).with_context(|| {
                    format!(
                        "vm {}: cannot read domain XML file {}",
                        vm.name,
                        xml.display()
                    )
                })?;
                // A backup tool's XML is often the live one: no ids, aliases, ports, chains.
                let (text, _) = crate::xml::runtime::clean_runtime(&text)
                    .with_context(|| format!("vm {}: file {}", vm.name, xml.display()))?;
                (text, format!("file {}", xml.display()), disks.clone())
            }
            VmSource::Virtnbdbackup { .. } => unreachable!("resolved above"),
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
            boot_files: Vec::new(),
            backup: None,
        });
    }
    Ok(out)
}

/// A virtnbdbackup source: the chain checked again (nothing is created before), the chosen
/// checkpoint's vmconfig cleaned of runtime state, its boot files taken from the copies
/// virtnbdbackup saved, its disks sitting on the restore cache entry of the checkpoint.
fn resolve_backup(
    vm: &str,
    dir: &Path,
    zone: Option<&str>,
    checkpoint: Option<&str>,
    cache: &Path,
) -> Result<ResolvedVm> {
    use crate::restore::virtnbdbackup as vnbd;
    let chain = vnbd::scan(dir, zone, vm)?;
    let cp = match checkpoint {
        Some(name) => chain.checkpoint(name).with_context(|| {
            format!(
                "vm {vm}: virtnbdbackup directory {} has no checkpoint {name}",
                dir.display()
            )
        })?,
        None => chain
            .checkpoints
            .last()
            .context("a chain without checkpoints")?,
    };
    let origin = format!("virtnbdbackup {} checkpoint {}", dir.display(), cp.name);
    let raw = std::fs::read_to_string(&cp.vmconfig)
        .with_context(|| format!("vm {vm}: reading {}", cp.vmconfig.display()))?;
    let (cleaned, _) = crate::xml::runtime::clean_runtime(&raw)
        .with_context(|| format!("vm {vm}: {}", cp.vmconfig.display()))?;
    let mut nvram = None;
    let mut boot_files = Vec::new();
    for (kind, path) in crate::xml::runtime::boot_files(&cleaned)? {
        let Some(copy) = chain.boot_copy(&path, &cp.name) else {
            let what = if kind == "nvram" {
                "its UEFI variables (nvram)".to_string()
            } else {
                format!("its {kind} (direct kernel boot)")
            };
            bail!(
                "vm {vm}: {origin}: the domain needs {what} {path}, and the backup has no copy of it ({}.{}); reclab never uses production's file: back up with a virtnbdbackup that saves boot files, or copy it into the backup directory under that name",
                Path::new(&path)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                cp.name
            );
        };
        if kind == "nvram" {
            nvram = Some(copy);
        } else {
            boot_files.push((kind, copy));
        }
    }
    // The domain names the backup's copy of its nvram, never production's file (the plan
    // copies it into the run directory).
    let cleaned = match &nvram {
        Some(copy) => {
            crate::xml::runtime::replace_boot_files(&cleaned, |kind, _| {
                (kind == "nvram").then(|| copy.display().to_string())
            })?
            .0
        }
        None => cleaned,
    };
    let facts = facts::facts(&cleaned).with_context(|| format!("vm {vm}: {origin}"))?;
    let key = vnbd::cache_key(&chain, &cp.name)?;
    let entry = cache.join(&key);
    let mut disks = Vec::new();
    let mut sequences = Vec::new();
    let mut bytes = 0;
    let mut reads = vec![cp.vmconfig.clone()];
    for d in facts.disks.iter().filter(|d| d.device == "disk") {
        let Some(file) = cp.files.get(&d.target) else {
            bail!(
                "vm {vm}: {origin}: disk {} has no backup in the chain (it has {}); virtnbdbackup left it out (-x?) or it is not a qcow2/raw disk",
                d.target,
                chain.disks.join(", ")
            );
        };
        let seq = chain.sequence(&d.target, &cp.name);
        bytes += seq.iter().map(|f| f.bytes).sum::<u64>();
        reads.extend(seq.iter().map(|f| dir.join(&f.file)));
        sequences.push((
            d.target.clone(),
            seq.iter().map(|f| f.file.clone()).collect(),
        ));
        disks.push(ResolvedDisk {
            target: d.target.clone(),
            chain: vec![Layer {
                path: entry.join(&d.target),
                format: file.header.disk_format.clone(),
                block: false,
                virtual_size: file.header.virtual_size,
            }],
        });
    }
    Ok(ResolvedVm {
        name: vm.to_string(),
        origin,
        xml: cleaned,
        facts,
        disks,
        nvram,
        boot_files,
        backup: Some(BackupRestore {
            dir: dir.to_path_buf(),
            checkpoint: cp.name.clone(),
            key,
            cache: cache.to_path_buf(),
            disks: sequences,
            bytes,
            reads,
        }),
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hv::fake::FakeHv;
    use crate::restore::virtnbdbackup::tests::chain_dir;

    fn lab(dir: &Path) -> LabSpec {
        crate::spec::parse(
            "name = \"vnbd\"\n[[vm]]\nname = \"db\"\nfrom = { virtnbdbackup = \"backups/db\", zone = \"UTC\" }\n",
            &dir.join("lab.toml"),
        )
        .unwrap()
    }

    fn vmconfig(kernel: bool, nvram: bool) -> String {
        let kernel = if kernel {
            "<kernel>/boot/vmlinuz</kernel>"
        } else {
            ""
        };
        let nvram = if nvram {
            "<nvram>/var/lib/libvirt/qemu/nvram/db_VARS.fd</nvram>"
        } else {
            ""
        };
        format!(
            "<domain type='kvm' id='7'>\n  <name>prod-db</name>\n  <os>\n    <type>hvm</type>{kernel}{nvram}\n  </os>\n  <devices>\n    <disk type='file' device='disk'>\n      <driver name='qemu' type='qcow2'/>\n      <source file='/prod/db.qcow2' index='2'/>\n      <backingStore type='file' index='1'><format type='qcow2'/><source file='/prod/base.qcow2'/><backingStore/></backingStore>\n      <target dev='vda' bus='virtio'/>\n      <alias name='virtio-disk0'/>\n    </disk>\n  </devices>\n</domain>\n"
        )
    }

    #[test]
    fn a_backup_source_sits_on_its_cache_entry_with_the_backups_boot_files() {
        let tmp = tempfile::tempdir().unwrap();
        let backups = tmp.path().join("backups/db");
        chain_dir(&backups, &["vda"], 3);
        for n in 0..3 {
            std::fs::write(
                backups.join(format!("vmconfig.virtnbdbackup.{n}.xml")),
                vmconfig(true, true),
            )
            .unwrap();
        }
        std::fs::write(backups.join("vmlinuz.virtnbdbackup.1"), "kernel").unwrap();
        std::fs::write(backups.join("db_VARS.fd.virtnbdbackup.1"), "vars").unwrap();
        let mut spec = lab(tmp.path());
        if let VmSource::Virtnbdbackup { checkpoint, .. } = &mut spec.vms[0].source {
            *checkpoint = Some("virtnbdbackup.1".into());
        }
        let cache = tmp.path().join("state/restore-cache");
        let resolved = resolve(&spec, &FakeHv::new(), &cache).unwrap();
        let r = &resolved[0];
        let b = r.backup.as_ref().unwrap();
        assert_eq!(b.checkpoint, "virtnbdbackup.1");
        assert_eq!(
            b.disks,
            [(
                "vda".to_string(),
                vec![
                    "vda.full.data".to_string(),
                    "vda.inc.virtnbdbackup.1.data".to_string()
                ]
            )]
        );
        assert_eq!(r.disks[0].chain[0].path, b.entry().join("vda"));
        assert_eq!(r.disks[0].chain[0].virtual_size, 1 << 30);
        assert_eq!(r.nvram, Some(backups.join("db_VARS.fd.virtnbdbackup.1")));
        assert_eq!(
            r.boot_files,
            [(
                "kernel".to_string(),
                backups.join("vmlinuz.virtnbdbackup.1")
            )]
        );
        assert!(
            !r.xml.contains("id='7'")
                && !r.xml.contains("/prod/base.qcow2")
                && !r.xml.contains("<alias"),
            "{}",
            r.xml
        );
        assert!(!cache.exists(), "resolving creates nothing");

        // Without the backup's copy of a boot file the lab is refused, naming it.
        std::fs::remove_file(backups.join("db_VARS.fd.virtnbdbackup.1")).unwrap();
        let err = format!("{:#}", resolve(&spec, &FakeHv::new(), &cache).unwrap_err());
        assert!(
            err.contains("needs its UEFI variables (nvram) /var/lib/libvirt/qemu/nvram/db_VARS.fd"),
            "{err}"
        );
        assert!(err.contains("db_VARS.fd.virtnbdbackup.1"), "{err}");
        assert!(!cache.exists());
    }
}
