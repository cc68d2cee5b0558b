//! `[[vm]]`: names, then each VM's own keys.

use std::collections::BTreeMap;
use std::path::Path;

use toml::Spanned;

use crate::spec::model::{
    DEFAULT_READY_TIMEOUT, DhcpReservation, DumpsSpec, MAX_TIER, MAX_VM_NAME, ReadySpec,
    SegmentSpec, VmSource,
};
use crate::spec::problems::Problems;
use crate::spec::wire::{WireLab, WireReady, WireVm};

use super::dhcp::validate_dhcp;
use super::dumps::validate_dumps;
use super::fields::{duration_or, present, valid_name};
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
    pub(super) memory: Option<u64>,
    pub(super) vcpus: Option<u32>,
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
    let from_field = format!("{field}.from");
    let source = present(
        problems,
        &vm.from,
        wire.span(),
        &from_field,
        "missing source; add from = { domain = \"prod-db\", snapshot = \"nightly\" } or from = { xml = \"db.xml\", disks = { vda = \"db.qcow2\" } }",
    )
    .and_then(|from| validate_source(from, &from_field, base, problems));
    // A problem in `ready` ends this VM's checks here, as it always has: its tier, dhcp and
    // dumps are looked at once `ready` is fixed.
    let ready = match &vm.ready {
        None => ReadySpec {
            timeout: DEFAULT_READY_TIMEOUT,
            tcp: None,
        },
        Some(ready) => validate_ready(ready, &format!("{field}.ready"), problems)?,
    };
    tier_in_range(problems, &vm.tier, &format!("{field}.tier"));
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
    let memory = match &vm.memory {
        None => Some(None),
        Some(m) => validate_memory(m, &format!("{field}.memory"), problems).map(Some),
    };
    let vcpus = match &vm.vcpus {
        None => Some(None),
        Some(v) => match u32::try_from(*v.get_ref()) {
            Ok(n) if (1..=MAX_VCPUS).contains(&n) => Some(Some(n)),
            _ => {
                problems.at(
                    v.span(),
                    format!("{field}.vcpus"),
                    format!(
                        "vcpus {} is out of range; use 1 to {MAX_VCPUS} (the lab VM's virtual CPUs)",
                        v.get_ref()
                    ),
                );
                None
            }
        },
    };
    Some(PartialVm {
        name: name?,
        source: source?,
        ready,
        dhcp: dhcp?,
        dumps: dumps?,
        memory: memory?,
        vcpus: vcpus?,
    })
}

/// Most virtual CPUs a lab VM may have.
const MAX_VCPUS: u32 = 512;
/// Smallest and largest lab VM memory: 16 MiB, 16 TiB.
const MIN_MEMORY: u64 = 16 << 20;
const MAX_MEMORY: u64 = 16 << 40;

/// `vm.memory`: `"2GiB"`, `"512MiB"` (binary units KiB, MiB, GiB, TiB) → bytes.
fn validate_memory(
    text: &crate::spec::wire::Text,
    field: &str,
    problems: &mut Problems,
) -> Option<u64> {
    const RULE: &str =
        "write a size like \"2GiB\" or \"512MiB\" (units KiB, MiB, GiB, TiB), from 16MiB to 16TiB";
    match parse_memory(text.get_ref()) {
        Some(n) if (MIN_MEMORY..=MAX_MEMORY).contains(&n) => Some(n),
        Some(_) => {
            problems.at(
                text.span(),
                field,
                format!("memory {:?} is out of range; {RULE}", text.get_ref()),
            );
            None
        }
        None => {
            problems.at(
                text.span(),
                field,
                format!("memory {:?} is not a size; {RULE}", text.get_ref()),
            );
            None
        }
    }
}

/// `"2GiB"` → 2147483648; `None` for anything else (no unit, a decimal unit, a fraction).
pub fn parse_memory(text: &str) -> Option<u64> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(digits);
    let n: u64 = number.parse().ok()?;
    let shift = match unit.trim() {
        "KiB" => 10,
        "MiB" => 20,
        "GiB" => 30,
        "TiB" => 40,
        _ => return None,
    };
    n.checked_mul(1u64 << shift)
}

/// `vm.ready`: how long to wait, and an optional TCP port that must accept.
fn validate_ready(ready: &WireReady, field: &str, problems: &mut Problems) -> Option<ReadySpec> {
    let timeout = duration_or(
        problems,
        &ready.timeout,
        &format!("{field}.timeout"),
        DEFAULT_READY_TIMEOUT,
    );
    let tcp = match &ready.tcp {
        None => Some(None),
        Some(port) => match u16::try_from(*port.get_ref()) {
            Ok(p) if p > 0 => Some(Some(p)),
            _ => {
                problems.at(
                    port.span(),
                    format!("{field}.tcp"),
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

/// `vm.tier`, if given, is 1 to [`MAX_TIER`]; `derive_tiers` takes it from there.
fn tier_in_range(problems: &mut Problems, tier: &Option<Spanned<i64>>, field: &str) {
    if let Some(tier) = tier
        && !(1..=i64::from(MAX_TIER)).contains(tier.get_ref())
    {
        problems.at(
            tier.span(),
            field,
            format!(
                "tier {} is out of range; use 1 to {MAX_TIER} (tier 1 boots first)",
                tier.get_ref()
            ),
        );
    }
}
