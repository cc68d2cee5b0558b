//! Injection of the chosen dumps through the hypervisor, never over a network.
//!
//! Host side, before anything is created: pick the restore point for `--at`
//! ([`choose_injections`]) and verify each chosen dump against its manifest / `SHA256SUMS`, so a
//! corrupt dump stops the drill naming the file before any restore. Then the plan puts a
//! read-only data disk (ext4, built at the speed of `cp`, or ISO) holding the dump, its
//! manifest and a `SHA256SUMS` into the lab domain (cold-plugged, serial `reclab-data`; or,
//! with `attach = "hotplug"`, plugged in once the agent answers). Guest side, once the VM's
//! agent answers ([`inject_in_guest`]): check the agent allows `guest-exec`, find and mount
//! the disk read-only, verify the checksums inside the guest, run the restore commands one by
//! one (each bounded, output capped); the first failure stops with its exit code and the end of
//! its output.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::base::cancel::Cancel;
use crate::base::wait::{self, Poll};
use crate::base::when::When;
use crate::hv::Hypervisor;
use crate::hv::agent;
use crate::restore::datadisk::{DataDiskFile, build_data_disk};
use crate::restore::{self, CommandRecord, InjectionRecord};
use crate::spec::{DiskFormat, DumpsSpec, LabSpec};

/// Serial of the data disk, how the guest finds it.
pub const DISK_SERIAL: &str = "reclab-data";

/// One VM's planned injection: what goes on its data disk and what runs in the guest.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedInjection {
    pub vm: String,
    pub dumps: DumpsSpec,
    pub files: Vec<DataDiskFile>,
    pub commands: Vec<String>,
    pub record: InjectionRecord,
}

/// Choose every VM's restore point for `when` and verify the chosen dumps on the host. Reads
/// only. `now` bounds `--at`. Returns every VM's choice and the injections of those with dumps.
pub fn choose_injections(
    spec: &LabSpec,
    hv: &dyn Hypervisor,
    when: &When,
    now: jiff::Timestamp,
    tz: &jiff::tz::TimeZone,
) -> Result<(Vec<restore::Choice>, Vec<PlannedInjection>)> {
    let points = restore::lab_points(spec, Some(hv))?;
    let choices = restore::choose(&points, when, now, spec.max_skew, tz)
        .map_err(|e| anyhow::anyhow!("no restore point for --at {:?}:\n{e}", when.text))?;
    let mut out = Vec::new();
    for choice in &choices {
        let Some(vm) = spec.vm(&choice.vm) else {
            continue;
        };
        let (Some(dumps), Some(dump)) = (vm.dumps.as_ref(), choice.dump.as_ref()) else {
            continue;
        };
        let t = Instant::now();
        let (digest, sources, manifest) = restore::verify_chosen(dumps, dump)
            .with_context(|| format!("vm {}: dump {} failed verification", vm.name, dump.file))?;
        let mut record = InjectionRecord::planned(
            choice,
            when,
            dumps,
            &digest,
            sources,
            manifest,
            spec.max_skew,
        )
        .with_context(|| format!("vm {}: no skew for the chosen dump", vm.name))?;
        record.durations.verify_host_ms = Some(t.elapsed().as_millis() as u64);
        let mut files = vec![DataDiskFile {
            name: dump.file.clone(),
            source: dumps.dir.join(&dump.file),
            sha256: Some(digest.sha256.clone()),
        }];
        if let Some(m) = crate::restore::manifest::manifest_path(dumps, &dump.file)
            && let Some(name) = m.file_name()
        {
            files.push(DataDiskFile {
                name: name.to_string_lossy().into_owned(),
                source: m.clone(),
                sha256: None,
            });
        }
        let commands = crate::restore::commands::restore_commands(dumps, &dump.file)
            .with_context(|| format!("vm {}: restore commands", vm.name))?;
        out.push(PlannedInjection {
            vm: vm.name.clone(),
            dumps: dumps.clone(),
            files,
            commands,
            record,
        });
    }
    Ok((choices, out))
}

/// The data disk's `<disk>` element for the lab domain: read-only, raw, virtio, with a serial
/// the guest finds it by. Pure.
pub fn disk_xml(image: &Path, target: &str) -> String {
    format!(
        "<disk type='file' device='disk'>\n      <driver name='qemu' type='raw'/>\n      \
         <source file='{}'/>\n      <target dev='{target}' bus='virtio'/>\n      <readonly/>\n      \
         <serial>{DISK_SERIAL}</serial>\n    </disk>",
        quick_xml::escape::escape(image.display().to_string())
    )
}

/// The first virtio disk target the domain does not use. Pure.
pub fn free_target(used_targets: &[String]) -> Result<String> {
    ('b'..='z')
        .map(|c| format!("vd{c}"))
        .find(|t| !used_targets.contains(t))
        .context("no free virtio disk target for the data disk")
}

/// Add the data disk to a lab domain XML, before `</devices>`. Pure.
pub fn add_disk(domain_xml: &str, image: &Path, used_targets: &[String]) -> Result<String> {
    let target = free_target(used_targets)?;
    let at = domain_xml
        .rfind("</devices>")
        .context("lab domain XML has no </devices>")?;
    let mut out = String::with_capacity(domain_xml.len() + 300);
    out.push_str(&domain_xml[..at]);
    out.push_str("  ");
    out.push_str(&disk_xml(image, &target));
    out.push_str("\n  ");
    out.push_str(&domain_xml[at..]);
    Ok(out)
}

/// Build the data disk image for a planned injection.
pub fn build_disk(p: &mut PlannedInjection, image: &Path) -> Result<()> {
    let t = Instant::now();
    let disk = build_data_disk(&p.files, p.dumps.format, image)
        .with_context(|| format!("vm {}: building the data disk {}", p.vm, image.display()))?;
    p.record.data_disk = Some(disk);
    p.record.durations.build_disk_ms = Some(t.elapsed().as_millis() as u64);
    Ok(())
}

const OUTPUT_TAIL: usize = 2000;

fn tail(out: &agent::ExecOutput) -> String {
    let mut text = out.stdout_lossy();
    let err = out.stderr_lossy();
    if !err.trim().is_empty() {
        text.push_str(&err);
    }
    let lines = crate::base::text::tail(&text, 10);
    crate::base::text::last_bytes(&lines, OUTPUT_TAIL).to_string()
}

/// The shell script that finds the data disk by serial (or label) and mounts it read-only.
pub fn mount_script(mount: &str, format: DiskFormat) -> String {
    let fstype = match format {
        DiskFormat::Ext4 => "ext4",
        DiskFormat::Iso => "iso9660",
    };
    format!(
        "dev=''; for b in /sys/block/*; do \
           [ \"$(cat \"$b/serial\" 2>/dev/null)\" = '{DISK_SERIAL}' ] && dev=/dev/${{b##*/}}; done; \
         [ -n \"$dev\" ] || dev=$(findfs LABEL={label} 2>/dev/null || blkid -L {label} 2>/dev/null); \
         [ -n \"$dev\" ] || {{ echo 'reclab data disk not found in the guest' >&2; exit 3; }}; \
         mkdir -p {m} && {{ mountpoint -q {m} || mount -o ro -t {fstype} \"$dev\" {m}; }}",
        label = crate::restore::datadisk::LABEL,
        m = crate::base::template::sh_quote(mount),
    )
}

/// Mount, verify and restore inside the guest; fills the record. `domain` is the lab domain;
/// `hotplug` the data disk's `<disk>` element if it is to be plugged in now (`attach =
/// "hotplug"`), after the agent check. `cancel` calls off the waits (a sibling VM failed, or
/// a signal); a command already started in the guest may go on there.
pub fn inject_in_guest(
    hv: &dyn Hypervisor,
    domain: &str,
    hotplug: Option<&str>,
    p: &mut PlannedInjection,
    cancel: &Cancel,
) -> Result<()> {
    let vm = p.vm.clone();
    agent::require(hv, domain, &["guest-exec", "guest-exec-status"])
        .with_context(|| format!("vm {vm}: cannot restore the dump through the guest agent"))?;
    let t = Instant::now();
    if let Some(disk) = hotplug {
        hv.attach_disk(domain, disk, true).with_context(|| {
            format!("vm {vm}: hot-plugging the data disk into the running domain {domain}")
        })?;
    }
    let script = mount_script(&p.dumps.mount, p.dumps.format);
    // The disk may still be settling right after boot: retry the mount, 20 attempts of at
    // most 30 s each, half a second apart (the deadline only bounds those attempts).
    const ATTEMPTS: u32 = 20;
    let attempt = agent::ExecOpts::with_timeout(Duration::from_secs(30)).cancelled_by(cancel);
    let (mut failed, mut last) = (0, String::new());
    let mounted = wait::until(
        Instant::now() + ATTEMPTS * (attempt.timeout + Duration::from_millis(500)),
        Poll::every(Duration::from_millis(500)),
        cancel,
        || {
            // Some(true): mounted; Some(false): out of attempts.
            let out = agent::sh_opts(hv, domain, &script, &attempt)?;
            if out.exit_code == 0 {
                return Ok(Some(true));
            }
            failed += 1;
            last = tail(&out);
            Ok((failed >= ATTEMPTS).then_some(false))
        },
    )
    .with_context(|| format!("vm {vm}: mounting the data disk"))?;
    if mounted != Some(true) {
        bail!(
            "vm {vm}: could not mount the data disk at {}: {last}",
            p.dumps.mount
        );
    }
    p.record.durations.attach_ms = Some(t.elapsed().as_millis() as u64);

    let t = Instant::now();
    let verify = format!(
        "cd {} && sha256sum -c {}",
        crate::base::template::sh_quote(&p.dumps.mount),
        crate::restore::datadisk::SUMS
    );
    let bounded = agent::ExecOpts::with_timeout(p.dumps.timeout).cancelled_by(cancel);
    let out = agent::sh_opts(hv, domain, &verify, &bounded)
        .with_context(|| format!("vm {vm}: verifying the dump checksums in the guest"))?;
    if out.exit_code != 0 {
        let bad: Vec<String> = out
            .stdout_lossy()
            .lines()
            .filter(|l| !l.ends_with(": OK"))
            .map(String::from)
            .collect();
        bail!(
            "vm {vm}: checksum verification inside the guest failed (exit {}): {}",
            out.exit_code,
            if bad.is_empty() {
                tail(&out)
            } else {
                bad.join("; ")
            }
        );
    }
    p.record.durations.verify_guest_ms = Some(t.elapsed().as_millis() as u64);

    let t = Instant::now();
    for cmd in p.commands.clone() {
        let c = Instant::now();
        let out = agent::sh_opts(hv, domain, &cmd, &bounded)
            .with_context(|| format!("vm {vm}: restore command `{cmd}`"))?;
        p.record.commands.push(CommandRecord {
            command: cmd.clone(),
            exit_code: Some(out.exit_code),
            duration_ms: c.elapsed().as_millis() as u64,
            output_tail: tail(&out),
        });
        if out.exit_code != 0 {
            bail!(
                "vm {vm}: restore command `{cmd}` failed with exit code {}: {}",
                out.exit_code,
                tail(&out)
            );
        }
    }
    p.record.durations.restore_ms = Some(t.elapsed().as_millis() as u64);
    Ok(())
}

/// Where a VM's data disk image goes in the run directory.
pub fn image_path(run_dir: &Path, vm: &str, format: DiskFormat) -> PathBuf {
    run_dir.join(match format {
        DiskFormat::Ext4 => format!("{vm}-data.img"),
        DiskFormat::Iso => format!("{vm}-data.iso"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_disk_goes_before_the_end_of_devices_on_a_free_target() {
        let xml = "<domain>\n  <devices>\n    <disk><target dev='vda'/></disk>\n  </devices>\n</domain>\n";
        let out = add_disk(xml, Path::new("/run/x/db-data.img"), &["vda".into()]).unwrap();
        assert!(out.contains("<target dev='vdb' bus='virtio'/>"), "{out}");
        assert!(out.contains("<readonly/>"));
        assert!(out.contains("<serial>reclab-data</serial>"));
        assert!(out.find("reclab-data").unwrap() < out.find("</devices>").unwrap());
    }

    #[test]
    fn a_hotplugged_data_disk_takes_the_first_free_target() {
        assert_eq!(free_target(&["vda".into(), "vdb".into()]).unwrap(), "vdc");
        let all: Vec<String> = ('a'..='z').map(|c| format!("vd{c}")).collect();
        assert!(
            free_target(&all)
                .unwrap_err()
                .to_string()
                .contains("no free virtio disk target")
        );
        let xml = disk_xml(Path::new("/run/x/db-data.img"), "vdc");
        assert!(xml.contains("<target dev='vdc' bus='virtio'/>"), "{xml}");
        assert!(xml.contains("<readonly/>") && xml.contains("<serial>reclab-data</serial>"));
        assert!(xml.contains("<source file='/run/x/db-data.img'/>"), "{xml}");
    }

    #[test]
    fn mount_script_looks_for_the_serial_then_the_label() {
        let s = mount_script("/mnt/reclab", DiskFormat::Ext4);
        assert!(s.contains("reclab-data"));
        assert!(s.contains("LABEL=RECLAB"));
        assert!(s.contains("-t ext4"));
        assert!(s.contains("mount -o ro"));
    }
}
