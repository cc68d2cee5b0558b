//! The surgical rewrite of production domain XML: golden files, properties that must hold for
//! every input, and the refusals.

use std::collections::BTreeMap;

use expect_test::{ExpectFile, expect_file};
use quick_xml::Reader;
use quick_xml::events::Event;
use reclab::xml::domain::{
    Accel, BackingLayer, DiskPlan, ImageFormat, LabMetadata, LayerKind, NetworkMap, RECLAB_NS,
    RewriteOpts, Rewritten, parse_lab_metadata, rewrite_domain,
};

const RUN: &str = "1a2b3c4d";
const LAN: &str = "reclab-1a2b3c4d-lan";
const BACKUP_NET: &str = "reclab-1a2b3c4d-bk";

fn golden_input(name: &str) -> String {
    let path = format!(
        "{}/tests/golden/domain/{name}.xml",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

fn qcow2(path: &str) -> BackingLayer {
    BackingLayer {
        path: path.to_string(),
        format: ImageFormat::Qcow2,
        kind: LayerKind::File,
    }
}

fn plan(vm: &str, dev: &str, chain: Vec<BackingLayer>) -> (String, DiskPlan) {
    (
        dev.to_string(),
        DiskPlan {
            overlay: format!("/var/lib/reclab/runs/{RUN}/{vm}-{dev}.qcow2"),
            chain,
        },
    )
}

/// Options as the plan would produce them for `vm`, with a single lab segment, TCG, a serial
/// log and no nvram copy; each case adjusts what it needs.
fn opts(vm: &str, disks: Vec<(String, DiskPlan)>) -> RewriteOpts {
    RewriteOpts {
        name: format!("reclab-{RUN}-{vm}"),
        uuid: "0d9c8b7a-6f5e-4d3c-8b2a-190817263544".to_string(),
        accel: Accel::Tcg,
        disks: disks.into_iter().collect(),
        networks: NetworkMap::single(LAN),
        graphics_password: "Xk4#p9Qz".to_string(),
        graphics_valid_to: "2026-11-26T22:00:00Z".parse().unwrap(),
        serial_log: Some(format!("/var/lib/reclab/runs/{RUN}/{vm}-serial.log")),
        nvram_path: None,
        private_dir: None,
        metadata: LabMetadata {
            lab: "nightly-restore".to_string(),
            run: RUN.to_string(),
            vm: vm.to_string(),
            created: "2026-11-26T20:00:00Z".to_string(),
            expires: "2026-11-26T22:00:00Z".to_string(),
        },
    }
}

fn debian_opts() -> RewriteOpts {
    let mut o = opts(
        "db01",
        vec![
            plan(
                "db01",
                "vda",
                vec![
                    qcow2("/srv/backup/db01/vda.2026-11-25.inc.qcow2"),
                    qcow2("/srv/backup/db01/vda.2026-11-20.full.qcow2"),
                ],
            ),
            plan(
                "db01",
                "vdb",
                vec![BackingLayer {
                    path: "/dev/vg_prod/db01_pgdata_snap".to_string(),
                    format: ImageFormat::Raw,
                    kind: LayerKind::Block,
                }],
            ),
        ],
    );
    o.accel = Accel::Kvm;
    o.networks = NetworkMap {
        networks: [("prod-lan".to_string(), LAN.to_string())].into(),
        bridges: [("br-backup".to_string(), BACKUP_NET.to_string())].into(),
        ..NetworkMap::default()
    };
    o.nvram_path = Some(format!("/var/lib/reclab/runs/{RUN}/db01_VARS.fd"));
    o
}

fn windows_opts() -> RewriteOpts {
    let mut o = opts(
        "win11-cad",
        vec![plan(
            "win11-cad",
            "sda",
            vec![qcow2("/srv/backup/win11-cad/sda.qcow2")],
        )],
    );
    o.networks = NetworkMap {
        // The segment's `production` list names the bridge and the host interface of the
        // macvtap.
        bridges: [
            ("br0".to_string(), LAN.to_string()),
            ("enp3s0".to_string(), LAN.to_string()),
        ]
        .into(),
        ..NetworkMap::default()
    };
    o.nvram_path = Some(format!("/var/lib/reclab/runs/{RUN}/win11-cad_VARS.fd"));
    o
}

fn nova_opts() -> RewriteOpts {
    let mut o = opts(
        "web2",
        vec![plan(
            "web2",
            "vda",
            vec![qcow2("/srv/backup/nova/instance-0000a1b2/vda.qcow2")],
        )],
    );
    o.accel = Accel::Kvm;
    o
}

fn demo_opts() -> RewriteOpts {
    let mut o = opts(
        "db",
        vec![plan(
            "db",
            "vda",
            vec![qcow2("/var/tmp/reclab-dev/guests/prod-db.qcow2")],
        )],
    );
    o.serial_log = None;
    o
}

fn snapshot_opts() -> RewriteOpts {
    let mut o = opts(
        "app01",
        vec![plan(
            "app01",
            "vda",
            vec![qcow2("/var/lib/libvirt/images/app01.qcow2")],
        )],
    );
    o.networks = NetworkMap {
        by_mac: [
            ("52:54:00:C4:11:02".to_string(), LAN.to_string()),
            ("52:54:00:c4:11:03".to_string(), LAN.to_string()),
        ]
        .into(),
        ..NetworkMap::default()
    };
    o
}

/// The golden cases: input file, options, expected XML, expected report.
fn cases() -> Vec<(&'static str, RewriteOpts, ExpectFile, ExpectFile)> {
    vec![
        (
            "debian-server",
            debian_opts(),
            expect_file!["../golden/domain/debian-server.lab.xml"],
            expect_file!["../golden/domain/debian-server.changes.txt"],
        ),
        (
            "windows-workstation",
            windows_opts(),
            expect_file!["../golden/domain/windows-workstation.lab.xml"],
            expect_file!["../golden/domain/windows-workstation.changes.txt"],
        ),
        (
            "nova-instance",
            nova_opts(),
            expect_file!["../golden/domain/nova-instance.lab.xml"],
            expect_file!["../golden/domain/nova-instance.changes.txt"],
        ),
        (
            "demo-direct-kernel",
            demo_opts(),
            expect_file!["../golden/domain/demo-direct-kernel.lab.xml"],
            expect_file!["../golden/domain/demo-direct-kernel.changes.txt"],
        ),
        (
            "app-snapshot",
            snapshot_opts(),
            expect_file!["../golden/domain/app-snapshot.lab.xml"],
            expect_file!["../golden/domain/app-snapshot.changes.txt"],
        ),
    ]
}

fn report(r: &Rewritten) -> String {
    let mut s = String::from("changes:\n");
    for c in &r.changes {
        s.push_str(&format!("- {c}\n"));
    }
    s.push_str("interfaces:\n");
    for i in &r.interfaces {
        s.push_str(&format!("- {} on {}\n", i.mac, i.network));
    }
    s.push_str(&format!("nvram_source: {:?}\n", r.nvram_source));
    if !r.copies.is_empty() {
        s.push_str("copies:\n");
        for c in &r.copies {
            let kind = if c.dir { "dir" } else { "file" };
            s.push_str(&format!("- {} ({kind}) {} -> {}\n", c.what, c.from, c.to));
        }
    }
    s
}

#[test]
fn golden_rewrites_of_production_domains() {
    for (name, opts, xml, changes) in cases() {
        let out =
            rewrite_domain(&golden_input(name), &opts).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        xml.assert_eq(&out.xml);
        changes.assert_eq(&report(&out));
    }
}

#[test]
fn rewriting_a_lab_domain_again_changes_nothing() {
    for (name, opts, _, _) in cases() {
        let once = rewrite_domain(&golden_input(name), &opts).unwrap();
        let twice = rewrite_domain(&once.xml, &opts)
            .unwrap_or_else(|e| panic!("{name}: second rewrite failed: {e:#}"));
        assert_eq!(twice.xml, once.xml, "{name}: second rewrite differs");
        assert_eq!(twice.interfaces, once.interfaces, "{name}");
    }
}

/// Every element below `domain` as (path, raw start tag), read with a plain quick-xml reader
/// (independent of the code under test). Paths start at the `<domain>` element.
fn elements(xml: &str) -> Vec<(String, String)> {
    let mut reader = Reader::from_str(xml);
    let mut stack: Vec<String> = Vec::new();
    let mut out = Vec::new();
    loop {
        let event = reader.read_event().expect("output must be well-formed");
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let name = e.name().as_ref().to_string();
                stack.push(name);
                let path = domain_path(&stack);
                if let Some(path) = path {
                    out.push((path, e.as_ref().trim_end().to_string()));
                }
                if matches!(event, Event::Empty(_)) {
                    stack.pop();
                }
            }
            Event::End(_) => {
                stack.pop();
            }
            Event::Eof => break,
            _ => {}
        }
    }
    out
}

fn domain_path(stack: &[String]) -> Option<String> {
    let start = stack.iter().position(|n| n == "domain")?;
    Some(stack[start..].join("/"))
}

/// Device and top-level elements the rewrite edits or removes; everything else must survive.
const MODELLED_DEVICES: &[&str] = &[
    "disk",
    "interface",
    "graphics",
    "serial",
    "console",
    "channel",
    "parallel",
    "rng",
    "hostdev",
    "redirdev",
    "filesystem",
    "smartcard",
    "tpm",
    "shmem",
    "input",
    "vsock",
];

fn modelled(path: &str) -> bool {
    let parts: Vec<&str> = path.split('/').collect();
    match parts.as_slice() {
        ["domain"] => true,
        ["domain", "name" | "uuid" | "cpu" | "qemu:commandline", ..] => true,
        ["domain", "sysinfo", "system", "entry", ..] => true,
        ["domain", "features", "hyperv", _, ..] => true,
        ["domain", "os", "nvram", ..] => true,
        ["domain", "metadata", child, ..] => child.starts_with("reclab:"),
        ["domain", "devices", device, ..] => MODELLED_DEVICES.contains(device),
        _ => false,
    }
}

#[test]
fn everything_reclab_does_not_model_survives_verbatim() {
    for (name, opts, _, _) in cases() {
        let input = golden_input(name);
        let out = rewrite_domain(&input, &opts).unwrap();
        let mut have = elements(&out.xml);
        for (path, tag) in elements(&input).into_iter().filter(|(p, _)| !modelled(p)) {
            let found = have.iter().position(|(p, t)| *p == path && *t == tag);
            match found {
                Some(i) => {
                    have.remove(i);
                }
                None => panic!("{name}: <{tag}> at {path} is missing from the output"),
            }
        }
    }
}

/// The raw text of every element whose parent path is `parent`, e.g. `domain/devices`.
fn subtrees(xml: &str, parent: &str) -> Vec<(String, String)> {
    let mut reader = Reader::from_str(xml);
    let mut stack: Vec<(String, u64)> = Vec::new();
    let mut out = Vec::new();
    loop {
        let pos = reader.buffer_position();
        let event = reader.read_event().unwrap();
        let path = |stack: &[(String, u64)]| {
            let names: Vec<String> = stack.iter().map(|(n, _)| n.clone()).collect();
            domain_path(&names)
        };
        match event {
            Event::Start(e) => stack.push((e.name().as_ref().to_string(), pos)),
            Event::Empty(e) if path(&stack).as_deref() == Some(parent) => {
                let end = reader.buffer_position() as usize;
                out.push((
                    e.name().as_ref().to_string(),
                    xml[pos as usize..end].to_string(),
                ));
            }
            Event::End(_) => {
                let (name, start) = stack.pop().unwrap();
                if path(&stack).as_deref() == Some(parent) {
                    let end = reader.buffer_position() as usize;
                    out.push((name, xml[start as usize..end].to_string()));
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    out
}

fn attr(raw: &str, key: &str) -> Option<String> {
    let mut reader = Reader::from_str(raw);
    loop {
        match reader.read_event().unwrap() {
            Event::Start(e) | Event::Empty(e) => {
                return e
                    .try_get_attribute(key)
                    .unwrap()
                    .map(|a| quick_xml::escape::unescape(&a.value).unwrap().into_owned());
            }
            Event::Eof => return None,
            _ => {}
        }
    }
}

/// Raw child elements of a device, by name.
fn device_children(raw: &str) -> Vec<(String, String)> {
    let wrapped = format!("<domain><devices>{raw}</devices></domain>");
    let (_, inner) = subtrees(&wrapped, "domain/devices").remove(0);
    let root_name = inner[1..]
        .split(|c: char| c.is_whitespace() || c == '>' || c == '/')
        .next()
        .unwrap()
        .to_string();
    subtrees(
        &format!("<domain>{inner}</domain>"),
        &format!("domain/{root_name}"),
    )
}

#[test]
fn kept_disks_and_interfaces_keep_their_unmodelled_children() {
    for (name, opts, _, _) in cases() {
        let input = golden_input(name);
        let out = rewrite_domain(&input, &opts).unwrap();
        let before = subtrees(&input, "domain/devices");
        let after = subtrees(&out.xml, "domain/devices");
        for (kind, raw) in &before {
            let (key_child, key_attr, kept): (&str, &str, &[&str]) = match kind.as_str() {
                "disk" => (
                    "target",
                    "dev",
                    &["target", "address", "boot", "serial", "alias", "readonly"],
                ),
                "interface" => (
                    "mac",
                    "address",
                    &[
                        "model",
                        "address",
                        "driver",
                        "boot",
                        "link",
                        "mtu",
                        "rom",
                        "bandwidth",
                        "filterref",
                        "alias",
                    ],
                ),
                _ => continue,
            };
            let key_of = |raw: &str| {
                device_children(raw)
                    .into_iter()
                    .find(|(n, _)| n == key_child)
                    .and_then(|(_, c)| attr(&c, key_attr))
                    .map(|k| k.to_ascii_lowercase())
            };
            let key = key_of(raw);
            let Some(now) = after.iter().find(|(k, r)| k == kind && key_of(r) == key) else {
                continue; // Removed devices are checked by the forbidden-device test.
            };
            let now_children = device_children(&now.1);
            for (child, child_raw) in device_children(raw) {
                if kept.contains(&child.as_str()) {
                    assert!(
                        now_children.iter().any(|(_, r)| *r == child_raw),
                        "{name}: {kind} {key:?} lost {child_raw}"
                    );
                }
            }
        }
    }
}

const SAFE_CHARDEV: &[&str] = &[
    "pty",
    "null",
    "vc",
    "stdio",
    "spicevmc",
    "spiceport",
    "qemu-vdagent",
    "dbus",
];

#[test]
fn no_device_that_could_reach_outside_remains() {
    for (name, opts, _, _) in cases() {
        let out = rewrite_domain(&golden_input(name), &opts).unwrap();
        let xml = &out.xml;
        assert!(
            !xml.contains("qemu:commandline"),
            "{name}: raw qemu arguments remain"
        );
        let mut logs = 0;
        for (kind, raw) in subtrees(xml, "domain/devices") {
            let ty = attr(&raw, "type").unwrap_or_default();
            let children = device_children(&raw);
            let child_attr = |child: &str, key: &str| {
                children
                    .iter()
                    .find(|(n, _)| n == child)
                    .and_then(|(_, r)| attr(r, key))
            };
            match kind.as_str() {
                "hostdev" | "redirdev" | "filesystem" | "shmem" => {
                    panic!("{name}: {raw} remains")
                }
                "interface" => {
                    assert_eq!(ty, "network", "{name}: {raw}");
                    let net = child_attr("source", "network").unwrap();
                    assert!(net.starts_with("reclab-"), "{name}: {raw}");
                    assert!(child_attr("mac", "address").is_some(), "{name}: {raw}");
                }
                "disk" => {
                    let device = attr(&raw, "device").unwrap_or_else(|| "disk".into());
                    if device == "disk" {
                        let src = child_attr("source", "file").unwrap();
                        assert!(src.starts_with("/var/lib/reclab/runs/"), "{name}: {raw}");
                        assert!(
                            raw.contains("<backingStore/>"),
                            "{name}: chain not terminated: {raw}"
                        );
                        assert!(!raw.contains("<shareable"), "{name}: {raw}");
                    } else {
                        assert!(
                            child_attr("source", "file").is_none(),
                            "{name}: media kept: {raw}"
                        );
                    }
                }
                "graphics" => {
                    assert!(matches!(ty.as_str(), "vnc" | "spice"), "{name}: {raw}");
                    assert_eq!(attr(&raw, "listen").as_deref(), Some("127.0.0.1"), "{name}");
                    assert_eq!(attr(&raw, "passwd").as_deref(), Some("Xk4#p9Qz"), "{name}");
                    assert_eq!(
                        attr(&raw, "passwdValidTo").as_deref(),
                        Some("2026-11-26T22:00:00")
                    );
                    assert!(attr(&raw, "port").is_none() && attr(&raw, "socket").is_none());
                    for (child, c) in &children {
                        if child == "listen" {
                            assert_eq!(attr(c, "address").as_deref(), Some("127.0.0.1"), "{name}");
                        }
                    }
                }
                "serial" | "console" | "channel" | "parallel" => {
                    let unix_auto = ty == "unix" && child_attr("source", "path").is_none();
                    assert!(
                        SAFE_CHARDEV.contains(&ty.as_str()) || unix_auto,
                        "{name}: {raw}"
                    );
                    if let Some(file) = child_attr("log", "file") {
                        logs += 1;
                        assert_eq!(Some(file), opts.serial_log, "{name}: production log kept");
                    }
                }
                "rng" => assert!(!raw.contains("egd"), "{name}: {raw}"),
                "tpm" => assert!(!raw.contains("passthrough"), "{name}: {raw}"),
                _ => {}
            }
        }
        assert_eq!(
            logs,
            usize::from(opts.serial_log.is_some()),
            "{name}: serial logs"
        );
        assert_eq!(
            xml.matches("name='org.qemu.guest_agent.0'").count()
                + xml.matches("name=\"org.qemu.guest_agent.0\"").count(),
            1,
            "{name}: exactly one guest agent channel"
        );
    }
}

#[test]
fn the_lab_metadata_reads_back_from_the_domain_and_from_a_fragment() {
    let opts = debian_opts();
    let out = rewrite_domain(&golden_input("debian-server"), &opts).unwrap();
    assert_eq!(parse_lab_metadata(&out.xml), Some(opts.metadata.clone()));
    // virDomainGetMetadata returns the element alone, possibly with another prefix.
    let fragment = format!(
        "<lab xmlns=\"{RECLAB_NS}\"><name>nightly-restore</name><run>{RUN}</run><vm>db01</vm>\
         <created>2026-11-26T20:00:00Z</created><expires>2026-11-26T22:00:00Z</expires></lab>"
    );
    assert_eq!(parse_lab_metadata(&fragment), Some(opts.metadata));
    assert_eq!(parse_lab_metadata(&golden_input("debian-server")), None);
    let other_ns = "<x:lab xmlns:x='https://example.com/other'><x:name>a</x:name></x:lab>";
    assert_eq!(parse_lab_metadata(other_ns), None);
}

#[test]
fn a_previous_reclab_element_is_replaced_not_duplicated() {
    let opts = demo_opts();
    let first = rewrite_domain(&golden_input("demo-direct-kernel"), &opts).unwrap();
    let mut later = opts.clone();
    later.metadata.run = "99aa88bb".to_string();
    let second = rewrite_domain(&first.xml, &later).unwrap();
    assert_eq!(second.xml.matches("<reclab:lab ").count(), 1);
    assert_eq!(parse_lab_metadata(&second.xml).unwrap().run, "99aa88bb");
}

fn err(xml: &str, opts: &RewriteOpts) -> String {
    format!("{:#}", rewrite_domain(xml, opts).unwrap_err())
}

/// A small domain around one device, for the refusals.
fn with_device(device: &str) -> String {
    format!(
        "<domain type='kvm'>\n  <name>x</name>\n  <devices>\n    {device}\n  </devices>\n</domain>\n"
    )
}

#[test]
fn a_network_disk_is_refused_by_name() {
    let xml = with_device(
        "<disk type='network' device='disk'><driver name='qemu' type='raw'/>\
         <source protocol='rbd' name='volumes/volume-8e1c'><host name='ceph-mon1' port='6789'/></source>\
         <target dev='vdb' bus='virtio'/></disk>",
    );
    assert_eq!(
        err(&xml, &opts("x", vec![])),
        "disk vdb has type 'network' (rbd 'volumes/volume-8e1c'), which reclab does not support yet: \
         the lab would open production storage over the network"
    );
}

#[test]
fn a_volume_disk_and_a_lun_are_refused_by_name() {
    let volume = with_device(
        "<disk type='volume' device='disk'><source pool='default' volume='x.qcow2'/><target dev='vdc'/></disk>",
    );
    assert_eq!(
        err(&volume, &opts("x", vec![])),
        "disk vdc has type 'volume' (pool 'default', volume 'x.qcow2'), which reclab does not support yet: \
         plan it by its file path"
    );
    let lun = with_device(
        "<disk type='block' device='lun'><source dev='/dev/sdz'/><target dev='sdb' bus='scsi'/></disk>",
    );
    assert_eq!(
        err(&lun, &opts("x", vec![])),
        "disk sdb has device 'lun' (scsi passthrough of a host device), which reclab does not support"
    );
}

#[test]
fn an_interface_without_a_mac_is_refused() {
    let xml = with_device(
        "<interface type='bridge'><source bridge='br0'/><model type='virtio'/></interface>",
    );
    assert_eq!(
        err(&xml, &opts("x", vec![])),
        "interface 1 (bridge 'br0') has no <mac>: the lab keeps production mac addresses, so the domain \
         xml must carry them (use the xml libvirt reports for the domain)"
    );
}

#[test]
fn an_unmapped_interface_is_refused_with_its_mac_and_source() {
    let mut o = debian_opts();
    o.networks.bridges.clear();
    assert_eq!(
        err(&golden_input("debian-server"), &o),
        "interface 52:54:00:3a:7c:12 (bridge 'br-backup') is not mapped to a lab network"
    );
}

#[test]
fn an_unplanned_disk_is_refused_with_its_path() {
    let mut o = debian_opts();
    o.disks.remove("vdb");
    assert_eq!(
        err(&golden_input("debian-server"), &o),
        "disk vdb (/dev/vg_prod/db01_pgdata) has no overlay planned"
    );
}

#[test]
fn an_nvram_file_without_a_planned_copy_is_refused() {
    let mut o = windows_opts();
    o.nvram_path = None;
    assert_eq!(
        err(&golden_input("windows-workstation"), &o),
        "the domain has <nvram> /var/lib/libvirt/qemu/nvram/win11-cad_VARS.fd but no nvram copy was \
         planned: the lab would write production's uefi variables"
    );
}

#[test]
fn unusable_options_are_refused_before_reading_the_xml() {
    let mut o = demo_opts();
    o.graphics_password = "longer-than-8".to_string();
    assert_eq!(
        err("<domain/>", &o),
        "the console password must have 1 to 8 characters (libvirt rejects longer ones), got 13"
    );
    let mut o = demo_opts();
    o.disks.get_mut("vda").unwrap().chain.insert(
        0,
        BackingLayer {
            path: "/dev/vg/raw".to_string(),
            format: ImageFormat::Raw,
            kind: LayerKind::Block,
        },
    );
    assert_eq!(
        err("<domain/>", &o),
        "backing layer '/dev/vg/raw' of disk vda is raw but is not the last layer"
    );
}

#[test]
fn other_documents_and_hypervisors_are_refused() {
    let o = demo_opts();
    assert_eq!(
        err("<network><name>x</name></network>", &o),
        "expected a <domain> or <domainsnapshot> document, found <network>"
    );
    assert_eq!(
        err("<domain type='lxc'><name>x</name></domain>", &o),
        "domain type 'lxc' is not supported: reclab clones qemu/kvm domains only"
    );
    assert_eq!(
        err("<domainsnapshot><name>s</name></domainsnapshot>", &o),
        "the domain snapshot xml has no embedded <domain>"
    );
    assert!(
        err("<domain type='kvm'><name>x</domain>", &o)
            .starts_with("parsing the production domain xml")
    );
}

#[test]
fn the_default_lab_network_catches_interfaces_the_maps_miss() {
    let mut o = debian_opts();
    o.networks.bridges = BTreeMap::new();
    o.networks.default = Some(BACKUP_NET.to_string());
    let out = rewrite_domain(&golden_input("debian-server"), &o).unwrap();
    let nets: Vec<(&str, &str)> = out
        .interfaces
        .iter()
        .map(|i| (i.mac.as_str(), i.network.as_str()))
        .collect();
    assert_eq!(
        nets,
        vec![
            ("52:54:00:3a:7c:11", LAN),
            ("52:54:00:3a:7c:12", BACKUP_NET)
        ]
    );
}
