//! `[[vm]]`: names, then each VM's own keys.

use std::collections::BTreeMap;
use std::path::Path;

use toml::Spanned;

use crate::spec::model::{
    DEFAULT_READY_TIMEOUT, DhcpReservation, DumpsSpec, MAX_TIER, MAX_VM_NAME, ReadySpec,
    SegmentSpec, VmSource,
};
use crate::spec::problems::Problems;
use crate::spec::wire::{WireLab, WireVm};

use super::dhcp::validate_dhcp;
use super::dumps::validate_dumps;
use super::fields::{duration_field, valid_name};
use super::source::validate_source;

const VM_NAME_RULE: &str = "use 1 to 16 characters: a lowercase letter, then lowercase letters, digits or '-' (the vm name is part of the lab domain name)";

/// Checks VM names and their uniqueness; returns the names by index (`None` if invalid).
pub(super) fn validate_vm_names(wire: &WireLab, problems: &mut Problems) -> Vec<Option<String>> {
    let mut first_use: BTreeMap<&str, usize> = BTreeMap::new();
    let mut names = Vec::new();
    for (index, vm) in wire.vms.iter().enumerate() {
        let field = format!("vm[{index}].name");
        let name = match &vm.get_ref().name {
            None => {
                problems.at(
                    vm.span(),
                    field,
                    "missing vm name; add a line like name = \"db\" to this [[vm]] table",
                );
                None
            }
            Some(name) if !valid_name(name.get_ref(), MAX_VM_NAME, true) => {
                problems.at(
                    name.span(),
                    field,
                    format!(
                        "{:?} is not a valid vm name; {VM_NAME_RULE}",
                        name.get_ref()
                    ),
                );
                None
            }
            Some(name) => {
                if let Some(first) = first_use.get(name.get_ref().as_str()) {
                    problems.at(
                        name.span(),
                        field,
                        format!(
                            "duplicate vm name {:?} (also vm[{first}]); give every vm a unique name",
                            name.get_ref()
                        ),
                    );
                } else {
                    first_use.insert(name.get_ref(), index);
                }
                Some(name.get_ref().clone())
            }
        };
        names.push(name);
    }
    names
}

/// A VM without its boot tier and `after` list, which need the whole lab.
pub(super) struct PartialVm {
    pub(super) name: String,
    pub(super) source: VmSource,
    pub(super) ready: ReadySpec,
    pub(super) dhcp: Option<DhcpReservation>,
    pub(super) dumps: Option<DumpsSpec>,
}

pub(super) fn validate_vm(
    index: usize,
    wire: &Spanned<WireVm>,
    base: &Path,
    segments: &[SegmentSpec],
    segments_ok: bool,
    problems: &mut Problems,
) -> Option<PartialVm> {
    let vm = wire.get_ref();
    let field = format!("vm[{index}]");
    let name = vm.name.as_ref().map(|n| n.get_ref().clone());

    let source = match &vm.from {
        None => {
            problems.at(
                wire.span(),
                format!("{field}.from"),
                "missing source; add from = { domain = \"prod-db\", snapshot = \"nightly\" } or from = { xml = \"db.xml\", disks = { vda = \"db.qcow2\" } }",
            );
            None
        }
        Some(from) => validate_source(from, &format!("{field}.from"), base, problems),
    };

    let ready = match &vm.ready {
        None => Some(ReadySpec {
            timeout: DEFAULT_READY_TIMEOUT,
            tcp: None,
        }),
        Some(ready) => {
            let timeout = match &ready.timeout {
                None => Some(DEFAULT_READY_TIMEOUT),
                Some(t) => duration_field(problems, t, &format!("{field}.ready.timeout")),
            };
            let tcp = match &ready.tcp {
                None => Some(None),
                Some(port) => match u16::try_from(*port.get_ref()) {
                    Ok(p) if p > 0 => Some(Some(p)),
                    _ => {
                        problems.at(
                            port.span(),
                            format!("{field}.ready.tcp"),
                            format!(
                                "tcp port {} is out of range; use a port from 1 to 65535",
                                port.get_ref()
                            ),
                        );
                        None
                    }
                },
            };
            Some(ReadySpec {
                timeout: timeout?,
                tcp: tcp?,
            })
        }
    };

    if let Some(tier) = &vm.tier
        && !(1..=i64::from(MAX_TIER)).contains(tier.get_ref())
    {
        problems.at(
            tier.span(),
            format!("{field}.tier"),
            format!(
                "tier {} is out of range; use 1 to {MAX_TIER} (tier 1 boots first)",
                tier.get_ref()
            ),
        );
    }

    let dhcp = match &vm.dhcp {
        None => Some(None),
        Some(dhcp) => validate_dhcp(
            dhcp,
            &format!("{field}.dhcp"),
            name.as_deref(),
            segments_ok.then_some(segments),
            problems,
        )
        .map(Some),
    };

    let dumps = match &vm.dumps {
        None => Some(None),
        Some(dumps) => validate_dumps(dumps, &format!("{field}.dumps"), base, problems).map(Some),
    };

    Some(PartialVm {
        name: name?,
        source: source?,
        ready: ready?,
        dhcp: dhcp?,
        dumps: dumps?,
    })
}
