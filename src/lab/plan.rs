//! The plan: everything a run will create, decided before anything is created.
//!
//! **Invariant:** `plan` does no IO. It takes the validated lab file, the resolved sources
//! (XML and backing chains, read beforehand by `resolve`), the run id, the clock reading and
//! the per-VM console secrets, and returns names, bridges, MACs, paths, domain and network XML,
//! boot tiers and the ordered [`Step`]s. Each step names the resources it creates: those are
//! its undo, journaled by the executor before the step runs.

use anyhow::{Context, Result, bail};
use core::net::Ipv4Addr;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::base::names::{self, RunId};
use crate::lab::record::{PublishedPort, Resource};
use crate::lab::resolved::{BackupRestore, Layer, ResolvedVm};
use crate::lab::services::rules::{ServicesPlan, hardening_rules};
use crate::restore::record::PlannedInjection;
use crate::spec::model::{Accel, DiskFormat, LabSpec};
use crate::xml;

/// One lab segment: a transient isolated libvirt network, and maybe lab services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentPlan {
    pub name: String,
    pub network: String,
    pub bridge: String,
    pub network_xml: String,
    pub services: Option<ServicesPlan>,
}

/// A thin overlay for one disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayPlan {
    pub vm: String,
    pub target: String,
    pub path: PathBuf,
    pub backing: Layer,
}

/// One lab VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmPlan {
    pub name: String,
    pub domain: String,
    pub tier: usize,
    pub overlays: Vec<OverlayPlan>,
    /// Copy of the production nvram (source, copy): the lab must never write production's.
    pub nvram: Option<(PathBuf, PathBuf)>,
    /// Private copies of other production state the domain would write (a writable firmware
    /// loader, TPM state, pmem files), made in the run directory before it boots.
    pub copies: Vec<xml::domain::PrivateCopy>,
    pub xml: String,
    /// What the rewrite removed or changed, for the output.
    pub changes: Vec<String>,
    pub macs: Vec<String>,
    pub addresses: Vec<Ipv4Addr>,
    pub serial_log: PathBuf,
    pub console_password: String,
    pub ready_timeout: Duration,
    pub ready_tcp: Option<u16>,
    /// The read-only data disk carrying this VM's dumps, if it gets any.
    pub data_disk: Option<PathBuf>,
    /// With `dumps.attach = "hotplug"`: the data disk's `<disk>` element, plugged into the
    /// running domain once its agent answers (otherwise the disk is in `xml`).
    pub hotplug_disk: Option<String>,
    /// Its image restored from a virtnbdbackup chain into the restore cache, first.
    pub backup: Option<BackupRestore>,
}

/// The restore of a VM's image from a virtnbdbackup chain into the restore cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestorePlan {
    pub vm: String,
    pub restore: BackupRestore,
    /// Where it is restored before being renamed to the entry (removed if the run fails).
    pub tmp: PathBuf,
    /// The run's lease on the entry (removed by the run's teardown).
    pub lease: PathBuf,
}

/// A unit of work of `up`, in order. Its undo is the resources it journals first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    CreateRunDir,
    /// Restore a VM's image into the restore cache, or reuse the entry there.
    RestoreImage(RestorePlan),
    CreateOverlay(OverlayPlan),
    CopyNvram {
        vm: String,
        from: PathBuf,
        to: PathBuf,
    },
    /// A private copy of production state (a file, or a directory copied whole). With
    /// `missing_ok`, an absent `from` is no error: the lab starts without that state, and the
    /// output says so.
    CopyPrivate {
        vm: String,
        what: String,
        from: PathBuf,
        to: PathBuf,
        dir: bool,
        missing_ok: bool,
    },
    /// Build the data disk of `injections[index]`.
    BuildDataDisk {
        injection: usize,
    },
    CreateNetwork {
        segment: usize,
    },
    HardenBridge {
        segment: usize,
    },
    StartServices {
        segment: usize,
    },
    VerifyNetworks,
    BootTier {
        tier: usize,
        vms: Vec<usize>,
    },
    VerifyIsolation,
}

/// Everything `up` will do.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub lab: String,
    pub run: RunId,
    pub uri: String,
    pub lab_file: PathBuf,
    pub run_dir: PathBuf,
    pub created: jiff::Timestamp,
    pub expires: jiff::Timestamp,
    pub segments: Vec<SegmentPlan>,
    pub vms: Vec<VmPlan>,
    /// Dumps going into VMs, chosen and verified on the host before planning.
    pub injections: Vec<PlannedInjection>,
    /// The published ports and the lab-services namespace each one enters the lab from.
    pub publish: Vec<PublishedPort>,
    pub steps: Vec<Step>,
}

impl Plan {
    /// The resources a step creates, in creation order (what is journaled before it runs).
    pub fn resources(&self, step: &Step) -> Vec<Resource> {
        match step {
            Step::CreateRunDir | Step::VerifyNetworks | Step::VerifyIsolation => vec![],
            Step::CreateOverlay(o) => vec![Resource::File {
                path: o.path.clone(),
            }],
            // The entry itself outlives the run (that is the cache); the run owns only its
            // unfinished restore and its lease.
            Step::RestoreImage(r) => vec![
                Resource::Dir {
                    path: r.tmp.clone(),
                },
                Resource::File {
                    path: r.lease.clone(),
                },
            ],
            Step::CopyNvram { to, .. } => vec![Resource::File { path: to.clone() }],
            Step::CopyPrivate { to, dir: true, .. } => vec![Resource::Dir { path: to.clone() }],
            Step::CopyPrivate { to, dir: false, .. } => vec![Resource::File { path: to.clone() }],
            Step::BuildDataDisk { injection } => {
                let vm = &self.injections[*injection].vm;
                let v = self.vms.iter().find(|v| &v.name == vm).expect("planned vm");
                vec![Resource::File {
                    path: v.data_disk.clone().expect("planned data disk"),
                }]
            }
            Step::CreateNetwork { segment } => {
                vec![Resource::Network {
                    name: self.segments[*segment].network.clone(),
                }]
            }
            Step::HardenBridge { segment } => hardening_rules(
                &self.segments[*segment].bridge,
                &names::firewall_tag(&self.run),
            ),
            Step::StartServices { segment } => {
                let s = self.segments[*segment]
                    .services
                    .as_ref()
                    .expect("services planned");
                vec![
                    Resource::Netns {
                        name: s.netns.clone(),
                    },
                    Resource::Link {
                        name: s.link.clone(),
                    },
                    Resource::Process {
                        pidfile: self.run_dir.join(format!("services-{}.pid", s.segment)),
                        netns: s.netns.clone(),
                    },
                ]
            }
            Step::BootTier { vms, .. } => vms
                .iter()
                .map(|&i| Resource::Domain {
                    name: self.vms[i].domain.clone(),
                })
                .collect(),
        }
    }
}

/// Inputs of [`plan`] that come from the outside world, read by the caller.
pub struct PlanInputs<'a> {
    pub spec: &'a LabSpec,
    pub resolved: &'a [ResolvedVm],
    pub run: &'a RunId,
    pub uri: &'a str,
    pub run_dir: &'a Path,
    pub now: jiff::Timestamp,
    pub ttl: Duration,
    /// One console password per VM (≤ 8 characters: libvirt's VNC limit), in spec order.
    pub passwords: &'a [String],
    /// Chosen and host-verified dumps per VM.
    pub injections: &'a [PlannedInjection],
}

/// Decide everything. Pure.
pub fn plan(i: &PlanInputs) -> Result<Plan> {
    let spec = i.spec;
    let run = i.run;
    let expires = i
        .now
        .checked_add(jiff::SignedDuration::try_from(i.ttl).context("ttl out of range")?)
        .context("ttl out of range")?;
    let created = i.now;

    let mut segments = plan_segments(spec, run);
    let tiers = spec.boot_tiers();
    let vms = (0..spec.vms.len())
        .map(|vi| plan_vm(i, vi, &tiers, &segments, (created, expires)))
        .collect::<Result<Vec<_>>>()?;
    xml::facts::refuse_shared_macs(
        &vms.iter()
            .map(|v| (&v.name[..], &v.xml[..]))
            .collect::<Vec<_>>(),
        &segments
            .iter()
            .map(|s| (&s.network[..], &s.name[..]))
            .collect::<Vec<_>>(),
    )?;
    add_reservations(i, &vms, &mut segments)?;
    let steps = plan_steps(run, &vms, &segments, i.injections.len(), tiers.len());
    let publish = plan_publish(spec, &vms, &segments)?;

    Ok(Plan {
        lab: spec.name.clone(),
        run: run.clone(),
        uri: i.uri.to_string(),
        lab_file: spec.path.clone(),
        run_dir: i.run_dir.to_path_buf(),
        created,
        expires,
        segments,
        vms,
        injections: i.injections.to_vec(),
        publish,
        steps,
    })
}

/// Where each published port enters the lab: the lab-services namespace of the segment that
/// holds the VM's address. A VM without an address on a segment with lab services cannot be
/// published (the host is never given a way onto a lab segment).
fn plan_publish(
    spec: &LabSpec,
    vms: &[VmPlan],
    segments: &[SegmentPlan],
) -> Result<Vec<PublishedPort>> {
    let mut out = Vec::new();
    for p in &spec.publish {
        let vm = vms
            .iter()
            .find(|v| v.name == p.vm)
            .with_context(|| format!("publish {}: no vm {} in the plan", p.name, p.vm))?;
        let found = vm.addresses.iter().find_map(|a| {
            segments.iter().find_map(|s| {
                let sv = s.services.as_ref()?;
                let cidr = crate::spec::model::Ipv4Cidr {
                    address: sv.address,
                    prefix: sv.prefix,
                };
                cidr.contains(*a).then_some((a, s, sv))
            })
        });
        let Some((address, segment, services)) = found else {
            bail!(
                "publish {}: vm {} has no known address on a segment with lab services (its \
                 addresses: {}); give the vm a dhcp = {{ ip = \"...\" }} reservation or a hosts \
                 entry inside a segment's services network",
                p.name,
                p.vm,
                if vm.addresses.is_empty() {
                    "none".to_string()
                } else {
                    vm.addresses
                        .iter()
                        .map(|a| a.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            );
        };
        let mut names: Vec<String> = services
            .hosts
            .iter()
            .filter(|(_, a)| a == address)
            .map(|(n, _)| n.clone())
            .chain(
                services
                    .reservations
                    .iter()
                    .filter(|(_, a, _)| a == address)
                    .map(|(_, _, n)| n.clone()),
            )
            .filter(|n| !n.is_empty())
            .collect();
        names.sort();
        names.dedup();
        out.push(PublishedPort {
            name: p.name.clone(),
            vm: p.vm.clone(),
            port: p.port,
            kind: p.kind,
            address: address.to_string(),
            names,
            segment: segment.name.clone(),
            netns: services.netns.clone(),
        });
    }
    Ok(out)
}

/// One segment per `[segment.NAME]`: its isolated network, bridge and lab services.
fn plan_segments(spec: &LabSpec, run: &RunId) -> Vec<SegmentPlan> {
    let mut segments = Vec::new();
    for (index, (name, seg)) in spec.segments.iter().enumerate() {
        let network = names::network_name(run, name);
        let bridge = names::bridge_name(run, index);
        let uuid = uuid_for(run, &format!("net:{name}"));
        let network_xml = xml::network::isolated_network_xml(&network, &bridge, &uuid);
        let services = seg.services.as_ref().map(|svc| ServicesPlan {
            segment: name.clone(),
            netns: names::services_netns(run, name),
            link: names::services_link(run, index),
            bridge: bridge.clone(),
            address: svc.address.address,
            prefix: svc.address.prefix,
            dns: svc.dns,
            dhcp: svc.dhcp,
            domain: svc.domain.clone(),
            hosts: seg.hosts.iter().map(|(h, ip)| (h.clone(), *ip)).collect(),
            reservations: Vec::new(),
        });
        segments.push(SegmentPlan {
            name: name.clone(),
            network,
            bridge,
            network_xml,
            services,
        });
    }
    segments
}

/// One lab VM: its overlays, its network map, the rewrite of its production XML, its data disk.
fn plan_vm(
    i: &PlanInputs,
    vi: usize,
    tiers: &[Vec<String>],
    segments: &[SegmentPlan],
    (created, expires): (jiff::Timestamp, jiff::Timestamp),
) -> Result<VmPlan> {
    let (spec, run, vm) = (i.spec, i.run, &i.spec.vms[vi]);
    let res = i
        .resolved
        .iter()
        .find(|r| r.name == vm.name)
        .with_context(|| format!("vm {} was not resolved", vm.name))?;
    let domain = names::domain_name(&spec.name, run, &vm.name);
    let tier = tiers
        .iter()
        .position(|t| t.contains(&vm.name))
        .with_context(|| format!("vm {} has no boot tier", vm.name))?;

    let (overlays, disks) = plan_disks(i.run_dir, &vm.name, res)?;
    let networks = network_map(spec, res, segments);
    let serial_log = i.run_dir.join(format!("{}-serial.log", vm.name));
    let nvram = res
        .nvram
        .as_ref()
        .map(|src| (src.clone(), i.run_dir.join(format!("{}-nvram.fd", vm.name))));
    let password = i
        .passwords
        .get(vi)
        .with_context(|| format!("no console password for vm {}", vm.name))?
        .clone();
    let opts = xml::domain::RewriteOpts {
        name: domain.clone(),
        uuid: uuid_for(run, &format!("vm:{}", vm.name)),
        accel: match spec.accel {
            Accel::Kvm => xml::domain::Accel::Kvm,
            Accel::Tcg => xml::domain::Accel::Tcg,
        },
        disks,
        networks,
        graphics_password: password.clone(),
        graphics_valid_to: expires,
        serial_log: Some(serial_log.display().to_string()),
        nvram_path: nvram.as_ref().map(|(_, to)| to.display().to_string()),
        private_dir: Some(i.run_dir.display().to_string()),
        tpm_state_dir: Some(spec.tpm_state_dir.display().to_string()),
        metadata: xml::domain::LabMetadata {
            lab: spec.name.clone(),
            run: run.0.clone(),
            vm: vm.name.clone(),
            created: created.to_string(),
            expires: expires.to_string(),
        },
        memory: vm.memory,
        vcpus: vm.vcpus,
    };
    // Boot files a backup saved (direct kernel boot): private copies in the run directory.
    let boot_copies: Vec<xml::domain::PrivateCopy> = res
        .boot_files
        .iter()
        .map(|(kind, from)| xml::domain::PrivateCopy {
            what: kind.clone(),
            from: from.display().to_string(),
            to: i
                .run_dir
                .join(format!("{}-{kind}", vm.name))
                .display()
                .to_string(),
            dir: false,
            missing_ok: false,
        })
        .collect();
    let source_xml = if boot_copies.is_empty() {
        res.xml.clone()
    } else {
        xml::runtime::replace_boot_files(&res.xml, |kind, _| {
            boot_copies
                .iter()
                .find(|c| c.what == kind)
                .map(|c| c.to.clone())
        })
        .with_context(|| format!("vm {}: pointing it at its boot file copies", vm.name))?
        .0
    };
    let rewritten = xml::domain::rewrite_domain(&source_xml, &opts)
        .with_context(|| format!("vm {}: rewriting the XML of {}", vm.name, res.origin))?;
    let injection = i.injections.iter().find(|p| p.vm == vm.name);
    let data_disk = injection.map(|p| {
        let extension = match p.dumps.format {
            DiskFormat::Ext4 => "img",
            DiskFormat::Iso => "iso",
        };
        names::data_disk_image(i.run_dir, &vm.name, extension)
    });
    let used: Vec<String> = res.facts.disks.iter().map(|d| d.target.clone()).collect();
    let (xml, hotplug_disk) = match (&data_disk, injection) {
        (Some(img), Some(p)) if p.dumps.attach == crate::spec::model::DiskAttach::Hotplug => {
            let target = xml::disk::free_target(&used)
                .with_context(|| format!("vm {}: adding the data disk", vm.name))?;
            (
                rewritten.xml.clone(),
                Some(xml::disk::disk_xml(img, &target)),
            )
        }
        (Some(img), _) => (
            xml::disk::add_disk(&rewritten.xml, img, &used)
                .with_context(|| format!("vm {}: adding the data disk", vm.name))?,
            None,
        ),
        (None, _) => (rewritten.xml.clone(), None),
    };
    // The lab domain's interfaces, not production's: what `up` and `status` list is what
    // the lab VM has.
    let macs: Vec<String> = rewritten.interfaces.iter().map(|i| i.mac.clone()).collect();
    let addresses = addresses_for(spec, &macs, &vm.name);
    Ok(VmPlan {
        name: vm.name.clone(),
        domain,
        tier,
        overlays,
        nvram,
        copies: boot_copies
            .into_iter()
            .chain(rewritten.copies.iter().cloned())
            .collect(),
        xml,
        changes: rewritten.changes.iter().map(|c| c.to_string()).collect(),
        macs,
        addresses,
        serial_log,
        console_password: password,
        ready_timeout: vm.ready.timeout,
        ready_tcp: vm.ready.tcp,
        data_disk,
        hotplug_disk,
        backup: res.backup.clone(),
    })
}

/// The thin overlay of each disk, and the disk plans the rewrite needs (overlay and full chain).
fn plan_disks(
    run_dir: &Path,
    vm: &str,
    res: &ResolvedVm,
) -> Result<(Vec<OverlayPlan>, BTreeMap<String, xml::domain::DiskPlan>)> {
    let mut overlays = Vec::new();
    let mut disks = BTreeMap::new();
    for d in &res.disks {
        let path = run_dir.join(format!("{}-{}.qcow2", vm, d.target));
        let backing =
            d.chain.first().cloned().with_context(|| {
                format!("vm {}: disk {} has an empty backing chain", vm, d.target)
            })?;
        disks.insert(
            d.target.clone(),
            xml::domain::DiskPlan {
                overlay: path.display().to_string(),
                chain: d
                    .chain
                    .iter()
                    .map(|l| {
                        Ok(xml::domain::BackingLayer {
                            path: l.path.display().to_string(),
                            format: match l.format.as_str() {
                                "qcow2" => xml::domain::ImageFormat::Qcow2,
                                "raw" => xml::domain::ImageFormat::Raw,
                                other => bail!(
                                    "vm {}: disk {}: unsupported format {other}",
                                    vm,
                                    d.target
                                ),
                            },
                            kind: if l.block {
                                xml::domain::LayerKind::Block
                            } else {
                                xml::domain::LayerKind::File
                            },
                        })
                    })
                    .collect::<Result<Vec<_>>>()?,
            },
        );
        overlays.push(OverlayPlan {
            vm: vm.to_string(),
            target: d.target.clone(),
            path,
            backing,
        });
    }
    Ok((overlays, disks))
}

/// Which lab network each production network, bridge or host interface of a VM goes to.
fn network_map(
    spec: &LabSpec,
    res: &ResolvedVm,
    segments: &[SegmentPlan],
) -> xml::domain::NetworkMap {
    let mut networks = xml::domain::NetworkMap::default();
    for iface in &res.facts.interfaces {
        let Some(src) = iface.source.as_deref() else {
            continue;
        };
        if let Some(seg) = spec.segment_for_production(src) {
            let sp = segments
                .iter()
                .find(|s| s.name == seg.name)
                .expect("segment planned");
            // A macvtap (`direct`) interface is found by its host interface, like a bridge.
            let map = if iface.kind == "bridge" || iface.kind == "direct" {
                &mut networks.bridges
            } else {
                &mut networks.networks
            };
            map.insert(src.to_string(), sp.network.clone());
        }
    }
    if segments.len() == 1 && spec.segments.values().all(|s| s.production.is_empty()) {
        networks.default = Some(segments[0].network.clone());
    }
    networks
}

/// DHCP reservations: explicit ones, with the VM's MAC on that segment when not given.
fn add_reservations(i: &PlanInputs, vms: &[VmPlan], segments: &mut [SegmentPlan]) -> Result<()> {
    let spec = i.spec;
    for seg in segments.iter_mut() {
        let Some(svc) = seg.services.as_mut() else {
            continue;
        };
        for (vm, r) in spec.dhcp_reservations(&seg.name) {
            let mac = match &r.mac {
                Some(m) => m.to_string(),
                None => {
                    let planned = vms.iter().find(|v| v.name == vm.name).expect("vm planned");
                    let res = i
                        .resolved
                        .iter()
                        .find(|x| x.name == vm.name)
                        .expect("resolved");
                    let on_seg = res.facts.interfaces.iter().find(|f| {
                        f.source
                            .as_deref()
                            .and_then(|s| spec.segment_for_production(s))
                            .map(|s| &s.name)
                            == Some(&seg.name)
                    });
                    match on_seg
                        .and_then(|f| f.mac.clone())
                        .or_else(|| planned.macs.first().cloned())
                    {
                        Some(m) => m,
                        None => bail!(
                            "vm {}: no interface on segment {} for its DHCP reservation",
                            vm.name,
                            seg.name
                        ),
                    }
                }
            };
            svc.reservations.push((mac, r.ip, r.hostname.clone()));
        }
    }
    Ok(())
}

/// The steps of `up`, in order: files, then networks, then the boot tiers.
fn plan_steps(
    run: &RunId,
    vms: &[VmPlan],
    segments: &[SegmentPlan],
    injections: usize,
    tiers: usize,
) -> Vec<Step> {
    let mut steps = vec![Step::CreateRunDir];
    for vm in vms {
        if let Some(b) = &vm.backup {
            steps.push(Step::RestoreImage(RestorePlan {
                vm: vm.name.clone(),
                restore: b.clone(),
                tmp: names::restore_tmp(&b.cache, &b.key, run),
                lease: names::restore_lease(&b.cache, &b.key, run),
            }));
        }
        steps.extend(vm.overlays.iter().cloned().map(Step::CreateOverlay));
        if let Some((from, to)) = &vm.nvram {
            steps.push(Step::CopyNvram {
                vm: vm.name.clone(),
                from: from.clone(),
                to: to.clone(),
            });
        }
        for c in &vm.copies {
            steps.push(Step::CopyPrivate {
                vm: vm.name.clone(),
                what: c.what.clone(),
                from: PathBuf::from(&c.from),
                to: PathBuf::from(&c.to),
                dir: c.dir,
                missing_ok: c.missing_ok,
            });
        }
    }
    for k in 0..injections {
        steps.push(Step::BuildDataDisk { injection: k });
    }
    for (s, seg) in segments.iter().enumerate() {
        steps.push(Step::CreateNetwork { segment: s });
        steps.push(Step::HardenBridge { segment: s });
        if seg.services.is_some() {
            steps.push(Step::StartServices { segment: s });
        }
    }
    steps.push(Step::VerifyNetworks);
    for t in 0..tiers {
        let members: Vec<usize> = vms
            .iter()
            .enumerate()
            .filter(|(_, v)| v.tier == t)
            .map(|(i, _)| i)
            .collect();
        steps.push(Step::BootTier {
            tier: t,
            vms: members,
        });
    }
    steps.push(Step::VerifyIsolation);
    steps
}

/// Addresses a VM is known by in the lab file (DHCP reservation, or segment hosts whose
/// first label is the VM name).
fn addresses_for(spec: &LabSpec, _macs: &[String], vm: &str) -> Vec<Ipv4Addr> {
    let mut out = Vec::new();
    if let Some(r) = spec.vm(vm).and_then(|v| v.dhcp.as_ref()) {
        out.push(r.ip);
    }
    for seg in spec.segments.values() {
        for (host, ip) in &seg.hosts {
            if host.split('.').next() == Some(vm) && !out.contains(ip) {
                out.push(*ip);
            }
        }
    }
    out
}

/// A stable UUID for an object of a run (so a plan is reproducible from its inputs).
fn uuid_for(run: &RunId, what: &str) -> String {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(format!("{}:{what}", run.0).as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    uuid::Builder::from_random_bytes(b)
        .into_uuid()
        .hyphenated()
        .to_string()
}
