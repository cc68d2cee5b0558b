//! Wire types to the validated model: every problem at once, in the order of the file.

use std::path::{Path, PathBuf};

use crate::spec::model::{
    Accel, DEFAULT_CONNECT, DEFAULT_TPM_STATE_DIR, DEFAULT_TTL, LabSpec, MAX_LAB_NAME, VmSpec,
};
use crate::spec::problems::Problems;
use crate::spec::wire::{Text, WireLab};

use dhcp::check_reservations;
use fields::{duration_field, duration_or, not_blank, one_of, valid_name};
use segments::validate_segments;
use tiers::derive_tiers;
pub use vm::parse_memory;
use vm::{PartialVm, validate_vm, validate_vm_names};

mod checks;
mod dhcp;
mod dumps;
mod fields;
pub(super) mod notify;
mod publish;
mod segments;
mod source;
mod tiers;
mod vm;

const LAB_NAME_RULE: &str = "use 1 to 20 characters: a lowercase letter, then lowercase letters, digits or '-' (the lab name is part of every libvirt domain, network and volume name reclab derives)";

/// Validates the whole lab; `None` if there is any problem (all of them are in `problems`).
pub(super) fn validate(wire: WireLab, path: &Path, problems: &mut Problems) -> Option<LabSpec> {
    // Relative paths in the file are relative to its directory, made absolute now (from the
    // directory's canonical path): libvirt and the rewrite need absolute image paths, and the
    // lab's files must be the same whatever the working directory of later steps.
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    let dir = dir.unwrap_or(Path::new("."));
    let base_buf = std::fs::canonicalize(dir)
        .or_else(|_| std::path::absolute(dir))
        .unwrap_or_else(|_| dir.to_path_buf());
    let base = base_buf.as_path();
    let top = &wire.top;

    let name = lab_name(problems, &top.name);
    let connect = connect_uri(problems, &top.connect);
    let ttl = duration_or(problems, &top.ttl, "ttl", DEFAULT_TTL);
    let accel = one_of(
        problems,
        &top.accel,
        "accel",
        Accel::Kvm,
        &[("kvm", Accel::Kvm), ("tcg", Accel::Tcg)],
        |other| {
            format!(
                "unknown accelerator {other:?}; use \"kvm\" (hardware virtualization) or \"tcg\" (software emulation, where kvm is unavailable)"
            )
        },
    );
    let state_dir = state_dir(problems, &top.state_dir, base);
    let tpm_state_dir = tpm_state_dir(problems, &top.tpm_state_dir, base);
    let max_skew = match &top.max_skew {
        None => Some(None),
        Some(skew) => duration_field(problems, skew, "max_skew").map(Some),
    };

    let (segments, segments_ok) = validate_segments(&wire.segments, problems);
    let vm_names = validate_vm_names(&wire, problems);
    let vms: Vec<Option<PartialVm>> = wire
        .vms
        .iter()
        .enumerate()
        .map(|(index, vm)| validate_vm(index, vm, base, &segments, segments_ok, problems))
        .collect();
    check_reservations(&wire, &vms, problems);
    let tiers = derive_tiers(&wire, &vm_names, problems);
    let checks = checks::validate_checks(&wire.checks, &vm_names, problems);
    let notify = wire
        .notify
        .as_ref()
        .map(|n| notify::validate_notify(n, base, problems));
    let metrics = wire
        .metrics
        .as_ref()
        .map(|m| notify::validate_metrics(m, base, problems));
    let publish = publish::validate_publish(&wire.publish, &vm_names, &segments, problems);
    if wire.vms.is_empty() {
        problems.push(
            None,
            "vm".into(),
            "the lab has no vms; add at least one [[vm]] table with a name and a from".into(),
        );
    }

    if !problems.is_empty() {
        return None;
    }
    Some(LabSpec {
        // Absolute too: runs record it, and `reclab verify` reloads it from anywhere.
        path: path
            .file_name()
            .map_or_else(|| path.to_path_buf(), |file| base.join(file)),
        name: name?,
        connect: connect?,
        ttl: ttl?,
        accel: accel?,
        state_dir,
        tpm_state_dir: tpm_state_dir?,
        segments: segments.into_iter().map(|s| (s.name.clone(), s)).collect(),
        vms: complete_vms(&wire, vms, tiers?)?,
        checks: checks?,
        max_skew: max_skew?,
        notify: notify.map(|n| n.expect("no problems, so notify is valid")),
        metrics: metrics.map(|m| m.expect("no problems, so metrics is valid")),
        publish: publish?,
    })
}

/// `name`: the lab name, part of every libvirt name reclab derives.
fn lab_name(problems: &mut Problems, value: &Option<Text>) -> Option<String> {
    let Some(name) = value else {
        problems.push(
            None,
            "name".into(),
            "missing lab name; add a line like name = \"erp\" at the top of the lab file".into(),
        );
        return None;
    };
    if !valid_name(name.get_ref(), MAX_LAB_NAME, true) {
        problems.at(
            name.span(),
            "name",
            format!(
                "{:?} is not a valid lab name; {LAB_NAME_RULE}",
                name.get_ref()
            ),
        );
        return None;
    }
    Some(name.get_ref().clone())
}

/// `connect`: a libvirt URI, [`DEFAULT_CONNECT`] when absent.
fn connect_uri(problems: &mut Problems, value: &Option<Text>) -> Option<String> {
    let Some(uri) = value else {
        return Some(DEFAULT_CONNECT.to_string());
    };
    let text = uri.get_ref();
    if text.trim().is_empty() || text.chars().any(char::is_whitespace) {
        problems.at(
            uri.span(),
            "connect",
            format!(
                "{text:?} is not a libvirt URI; write one like \"qemu:///system\" or \"qemu+ssh://root@hv1/system\", or drop the key for the default"
            ),
        );
        return None;
    }
    Some(text.clone())
}

/// `state_dir`, joined to the lab file's directory; `None` when absent or empty (a problem).
fn state_dir(problems: &mut Problems, value: &Option<Text>, base: &Path) -> Option<PathBuf> {
    let dir = not_blank(
        problems,
        value.as_ref()?,
        "state_dir",
        "state directory is empty; give a directory or drop the key to use --state-dir",
    )?;
    Some(base.join(dir.get_ref()))
}

/// `tpm_state_dir`, joined to the lab file's directory; [`DEFAULT_TPM_STATE_DIR`] when absent,
/// `None` when empty (a problem).
fn tpm_state_dir(problems: &mut Problems, value: &Option<Text>, base: &Path) -> Option<PathBuf> {
    let Some(value) = value else {
        return Some(PathBuf::from(DEFAULT_TPM_STATE_DIR));
    };
    let dir = not_blank(
        problems,
        value,
        "tpm_state_dir",
        "tpm state directory is empty; give the directory where libvirt keeps software tpm state or drop the key for /var/lib/libvirt/swtpm",
    )?;
    Some(base.join(dir.get_ref()))
}

/// The VMs with their boot tiers and `after` lists, once every VM is valid.
fn complete_vms(
    wire: &WireLab,
    vms: Vec<Option<PartialVm>>,
    tiers: Vec<u32>,
) -> Option<Vec<VmSpec>> {
    vms.into_iter()
        .zip(wire.vms.iter())
        .zip(tiers)
        .map(|((vm, wire_vm), tier)| {
            let vm = vm?;
            let after = wire_vm
                .get_ref()
                .after
                .iter()
                .flatten()
                .map(|a| a.get_ref().clone())
                .collect();
            Some(VmSpec {
                name: vm.name,
                source: vm.source,
                tier,
                after,
                ready: vm.ready,
                dhcp: vm.dhcp,
                dumps: vm.dumps,
                memory: vm.memory,
                vcpus: vm.vcpus,
            })
        })
        .collect()
}
