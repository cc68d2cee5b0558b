//! A production VM with the devices a lab must never share with production, against real
//! libvirt: UEFI firmware (OVMF) with a writable NVRAM, an emulated TPM (swtpm) with libvirt's
//! default state under its uuid, and a `direct` (macvtap) NIC on a host interface. The lab
//! boots verified from private copies of the NVRAM and the TPM state, its NIC moves to the lab
//! segment with production's MAC, and production runs on untouched.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use reclab::hv::Hypervisor;

const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE.fd";
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS.fd";
const PROD_UUID: &str = "5b0f2b9e-6a3c-4d1e-9a57-0c1d2e3f4a5b";
const PROD_MAC: &str = "52:54:00:20:00:10";
/// The host interface production's macvtap NIC sits on (one end of a veth pair inside the
/// sandbox's network namespace, never in the host's).
const HOST_IFACE: &str = "prodlan0";

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// sha256 of every file below `dir`, by path relative to it.
fn tree_fingerprint(dir: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().display().to_string();
                out.insert(rel, sha256_file(&p));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// The production domain: the demo db guest (direct kernel boot) under OVMF with its own
/// variable store, an emulated TPM 2.0 with libvirt's default state, and a macvtap NIC.
fn production_xml(dir: &Path, guests: &Path, cmdline: &str) -> String {
    format!(
        "<domain type='qemu'>
  <name>prod-db</name>
  <uuid>{PROD_UUID}</uuid>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <loader readonly='yes' type='pflash'>{OVMF_CODE}</loader>
    <nvram>{dir}/prod-db_VARS.fd</nvram>
    <kernel>{guests}/vmlinuz</kernel>
    <initrd>{guests}/initrd.img</initrd>
    <cmdline>{cmdline}</cmdline>
  </os>
  <features><acpi/></features>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='{dir}/prod-db.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='direct'>
      <mac address='{PROD_MAC}'/>
      <source dev='{HOST_IFACE}' mode='bridge'/>
      <model type='virtio'/>
    </interface>
    <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>
    <serial type='pty'><log file='{dir}/prod-db-serial.log'/><target port='0'/></serial>
    <console type='pty'><target type='serial' port='0'/></console>
    <tpm model='tpm-crb'><backend type='emulator' version='2.0'/></tpm>
    <graphics type='vnc' autoport='yes' listen='127.0.0.1'/>
    <video><model type='vga'/></video>
    <memballoon model='none'/>
  </devices>
</domain>
",
        dir = dir.display(),
        guests = guests.display(),
    )
}

fn lab_file(dir: &Path, tpm_state_dir: &Path) -> PathBuf {
    let p = dir.join("devices.toml");
    std::fs::write(
        &p,
        format!(
            r#"name = "devices"
accel = "tcg"
tpm_state_dir = "{}"

[segment.lan]
production = ["{HOST_IFACE}"]
hosts = {{ "db.prod.example" = "10.20.0.10" }}

[segment.lan.services]
address = "10.20.0.1/24"
dns = true
domain = "prod.example"

[[vm]]
name = "db"
from = {{ domain = "prod-db", snapshot = "nightly" }}
ready = {{ timeout = "3m" }}

[[check]]
name = "db-agent"
vm = "db"
kind = "heartbeat"

# Through the NIC that was production's macvtap: the lab services on the lab segment.
[[check]]
name = "db-reaches-lab-services"
vm = "db"
kind = "ping"
host = "10.20.0.1"

# The lab DNS on the segment answers for db.prod.example; the db answers on its address.
[[check]]
name = "db-stats"
vm = "db"
kind = "http"
url = "http://db.prod.example/cgi-bin/stats"
status = 200
"#,
            tpm_state_dir.display()
        ),
    )
    .unwrap();
    p
}

/// What the test compares of production before and after the drill.
#[derive(Debug, PartialEq, Eq)]
struct Production {
    nvram: String,
    tpm: BTreeMap<String, String>,
    backup: String,
    live_xml: String,
    id: String,
}

fn production(sb: &Sandbox, dir: &Path, tpm: &Path) -> Production {
    let id = sb.exec(&["virsh", "domid", "prod-db"]);
    check(&id, "virsh domid prod-db");
    Production {
        nvram: sha256_file(&dir.join("prod-db_VARS.fd")),
        tpm: tree_fingerprint(tpm),
        backup: sha256_file(&dir.join("prod-db.qcow2")),
        live_xml: sb.hv().domain_xml("prod-db", false).unwrap(),
        id: stdout(&id).trim().to_string(),
    }
}

fn macvtaps(sb: &Sandbox) -> Vec<String> {
    let out = sb.exec(&["ip", "-o", "link", "show", "type", "macvtap"]);
    check(&out, "ip link show type macvtap");
    stdout(&out)
        .lines()
        .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        .collect()
}

#[test]
#[ignore = "end-to-end: needs root and a private libvirtd; scripts/test runs it"]
fn uefi_nvram_tpm_state_and_a_macvtap_nic_become_private_to_the_lab() {
    if !(need_program("swtpm", "apt-get install swtpm swtpm-tools (scripts/setup)")
        && need_program("swtpm_setup", "apt-get install swtpm-tools (scripts/setup)")
        && need(
            Path::new(OVMF_CODE).exists() && Path::new(OVMF_VARS).exists(),
            OVMF_CODE,
            "apt-get install ovmf (scripts/setup)",
        ))
    {
        return;
    }
    let sb = Sandbox::start("devices");
    let guests = dev_dir().join("guests");
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(guests.join("guests.json")).unwrap())
            .unwrap();
    assert_eq!(info["roles"]["db"]["mac"], PROD_MAC, "the db guest's mac");
    let dir = dev_dir().join("e2e-devices");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();

    // Production: its own disk on the guest image, a variable store from OVMF's template, the
    // macvtap's host interface in the sandbox's namespace.
    check(
        &std::process::Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
            .arg(guests.join("db.qcow2"))
            .arg(dir.join("prod-db.qcow2"))
            .output()
            .unwrap(),
        "qemu-img create",
    );
    std::fs::copy(OVMF_VARS, dir.join("prod-db_VARS.fd")).unwrap();
    for args in [
        vec![
            "ip", "link", "add", HOST_IFACE, "type", "veth", "peer", "name", "prodlan1",
        ],
        vec!["ip", "link", "set", HOST_IFACE, "up"],
        vec!["ip", "link", "set", "prodlan1", "up"],
    ] {
        check(&sb.exec(&args), &args.join(" "));
    }
    let xml = dir.join("prod-db.xml");
    std::fs::write(
        &xml,
        production_xml(&dir, &guests, info["cmdline"].as_str().unwrap()),
    )
    .unwrap();
    check(
        &sb.exec(&["virsh", "define", xml.to_str().unwrap()]),
        "virsh define prod-db",
    );
    check(
        &sb.exec(&["virsh", "start", "prod-db"]),
        "virsh start prod-db",
    );
    let hv = sb.hv();
    wait_for("prod-db's agent", Duration::from_secs(180), || {
        reclab::hv::agent::ping(&hv, "prod-db", Duration::from_secs(5)).ok()
    });
    // The nightly backup: the pre-snapshot disk is frozen, production writes to the overlay.
    check(
        &sb.exec(&[
            "virsh",
            "snapshot-create-as",
            "prod-db",
            "nightly",
            "--disk-only",
            "--atomic",
        ]),
        "snapshot nightly",
    );

    // libvirt keeps production's TPM state under its uuid in the sandbox's state directory
    // (/var/lib/libvirt/swtpm in the daemon's mount namespace). A marker only production's
    // state has (swtpm ignores other files) shows where the lab's came from.
    let swtpm_dir = dev_dir().join("sandbox").join(&sb.name).join("lib/swtpm");
    let prod_tpm = swtpm_dir.join(PROD_UUID);
    assert!(
        prod_tpm.join("tpm2/tpm2-00.permall").exists(),
        "production's tpm state is not in {}",
        prod_tpm.display()
    );
    std::fs::write(prod_tpm.join("tpm2/reclab-e2e-marker"), PROD_UUID).unwrap();
    let before = production(&sb, &dir, &prod_tpm);
    assert_eq!(macvtaps(&sb).len(), 1, "production's macvtap");

    let lab = lab_file(&dir, &swtpm_dir);
    let check_out = sb.reclab(&["check", lab.to_str().unwrap()]);
    check(&check_out, "reclab check");
    assert!(
        stdout(&check_out).contains(&format!("tpm state {}", prod_tpm.display())),
        "{}",
        stdout(&check_out)
    );

    let out = sb.reclab(&["up", "--json", lab.to_str().unwrap()]);
    check(&out, "reclab up");
    let up: serde_json::Value = serde_json::from_str(&stdout(&out))
        .unwrap_or_else(|e| panic!("up --json: {e}\n{}", stdout(&out)));
    let run = up["run"].as_str().unwrap().to_string();
    sb.remember_run(&run);
    let run_dir = PathBuf::from(up["run_dir"].as_str().unwrap());
    let changes: Vec<String> = up["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    assert!(
        !changes
            .iter()
            .any(|c| c.contains("not found") || c.contains("empty")),
        "production's tpm state was not used: {changes:?}\n{}",
        stderr(&out)
    );
    let domain = up["vms"][0]["domain"].as_str().unwrap().to_string();
    let live = hv.domain_xml(&domain, false).unwrap();
    let facts = reclab::xml::facts::facts(&live).unwrap();

    // NVRAM: the lab's own copy in the run directory; the firmware itself is read-only.
    let lab_nvram = run_dir.join("db-nvram.fd");
    assert!(
        live.contains(&format!("<nvram>{}</nvram>", lab_nvram.display())),
        "{live}"
    );
    assert!(lab_nvram.exists());
    assert!(
        live.contains(&format!(
            "<loader readonly='yes' type='pflash'>{OVMF_CODE}</loader>"
        )),
        "{live}"
    );

    // TPM: a copy of production's state under the lab's uuid, journaled, used as it was
    // (libvirt did not manufacture a fresh TPM for the lab).
    let lab_uuid = hv
        .list_domains()
        .unwrap()
        .into_iter()
        .find(|d| d.name == domain)
        .unwrap()
        .uuid;
    assert_ne!(lab_uuid, PROD_UUID);
    let lab_tpm = swtpm_dir.join(&lab_uuid);
    assert_eq!(
        std::fs::read_to_string(lab_tpm.join("tpm2/reclab-e2e-marker")).unwrap(),
        PROD_UUID,
        "the lab's tpm state is not production's"
    );
    assert!(changes.iter().any(|c| c
        == &format!(
            "db: changed tpm state {} to the private copy {}: the lab must not write production's files",
            prod_tpm.display(),
            lab_tpm.display()
        )), "{changes:?}");
    let journal = std::fs::read_to_string(run_dir.join("journal.jsonl")).unwrap();
    assert!(
        journal.contains(&format!("\"{}\"", lab_tpm.display())),
        "{journal}"
    );
    let swtpm_log = dev_dir()
        .join("sandbox")
        .join(&sb.name)
        .join(format!("log/swtpm/libvirt/qemu/{domain}-swtpm.log"));
    let log = std::fs::read_to_string(&swtpm_log).unwrap_or_default();
    assert!(
        !log.contains("manufacturing"),
        "libvirt set up a fresh tpm for the lab:\n{log}"
    );
    // The lab's swtpm runs on the lab's state (a path in the daemon's mount namespace).
    let procs = processes_mentioning(&format!("swtpm/{lab_uuid}/tpm2"));
    assert!(
        procs.iter().any(|p| p.contains("swtpm socket")),
        "no swtpm of the lab: {procs:?}"
    );

    // The macvtap NIC: on the lab segment with production's MAC; no macvtap of the lab's.
    assert_eq!(facts.interfaces.len(), 1, "{live}");
    let nic = &facts.interfaces[0];
    assert_eq!(nic.kind, "network", "{live}");
    assert_eq!(nic.mac.as_deref(), Some(PROD_MAC));
    // `networks` reads "reclab-<run8>-lan (bridge rl<run8>s0)".
    let network = up["networks"][0].as_str().unwrap().split(' ').next();
    assert_eq!(nic.source.as_deref(), network, "{live}");
    assert_eq!(macvtaps(&sb).len(), 1, "the lab made a macvtap");

    // The isolation check pings the tap's IPv6 link-local address from the guest: wait until
    // the guest's own link-local address has left duplicate address detection.
    let mut inet6 = String::new();
    let ready = (0..120).any(|_| {
        let (_, out) = guest_sh(&hv, &domain, "cat /proc/net/if_inet6");
        inet6 = out;
        let usable = inet6.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() == 6
                && f[0].starts_with("fe80")
                && u8::from_str_radix(f[4], 16).is_ok_and(|flags| flags & 0x40 == 0)
        });
        if !usable {
            std::thread::sleep(Duration::from_millis(500));
        }
        usable
    });
    assert!(
        ready,
        "the lab guest has no usable link-local address:\n{inet6}"
    );

    // Verified: the checks went through the lab segment.
    let out = sb.reclab(&["verify", "--json", &run]);
    let report: serde_json::Value = serde_json::from_str(&stdout(&out))
        .unwrap_or_else(|e| panic!("verify --json: {e}\n{}\n{}", stdout(&out), stderr(&out)));
    assert_eq!(out.status.code(), Some(0), "{report:#}\n{}", stderr(&out));
    assert_eq!(report["result"], "verified", "{report:#}");
    for name in [
        "db-agent",
        "db-reaches-lab-services",
        "db-stats",
        "isolation",
    ] {
        let c = report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no check {name}: {report:#}"));
        assert_eq!(c["status"], "pass", "{c:#}");
    }

    check(&sb.reclab(&["down", &run]), "reclab down");
    assert!(!lab_tpm.exists(), "the lab's tpm state outlived the lab");
    assert!(!run_dir.exists(), "the run directory outlived the lab");
    sb.assert_nothing_left();

    // Production: the same running domain (not restarted), files unchanged, agent answering.
    let after = production(&sb, &dir, &prod_tpm);
    assert_eq!(before, after, "production changed during the drill");
    reclab::hv::agent::ping(&hv, "prod-db", Duration::from_secs(10)).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
