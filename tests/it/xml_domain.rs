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
        tpm_state_dir: None,
        metadata: LabMetadata {
            lab: "nightly-restore".to_string(),
            run: RUN.to_string(),
            vm: vm.to_string(),
            created: "2026-11-26T20:00:00Z".to_string(),
            expires: "2026-11-26T22:00:00Z".to_string(),
        },
        memory: None,
        vcpus: None,
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

/// Two segments: the macvtap's host interface is named by the backup segment's `production`
/// list, the other interfaces go by MAC or to the default. Every private copy is planned.
fn host_reaching_opts() -> RewriteOpts {
    let mut o = opts(
        "ledger01",
        vec![plan(
            "ledger01",
            "vda",
            vec![qcow2("/srv/backup/ledger01/vda.qcow2")],
        )],
    );
    o.networks = NetworkMap {
        bridges: [("eno1".to_string(), BACKUP_NET.to_string())].into(),
        by_mac: [("52:54:00:6b:01:02".to_string(), BACKUP_NET.to_string())].into(),
        default: Some(LAN.to_string()),
        ..NetworkMap::default()
    };
    o.private_dir = Some(format!("/var/lib/reclab/runs/{RUN}"));
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
            // The same domain sized for a small lab host (`memory = "1GiB"`, `vcpus = 1`).
            "debian-server-sized",
            RewriteOpts {
                memory: Some(1 << 30),
                vcpus: Some(1),
                ..debian_opts()
            },
            expect_file!["../golden/domain/debian-server-sized.lab.xml"],
            expect_file!["../golden/domain/debian-server-sized.changes.txt"],
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
        (
            "host-reaching",
            host_reaching_opts(),
            expect_file!["../golden/domain/host-reaching.lab.xml"],
            expect_file!["../golden/domain/host-reaching.changes.txt"],
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
    "memory",
    "pstore",
    "lease",
    "audio",
];

fn modelled(path: &str) -> bool {
    let parts: Vec<&str> = path.split('/').collect();
    match parts.as_slice() {
        ["domain"] => true,
        [
            "domain",
            "name" | "uuid" | "cpu" | "seclabel" | "qemu:commandline" | "qemu:override"
            | "qemu:capabilities" | "qemu:deprecation",
            ..,
        ] => true,
        ["domain", "os", "loader", ..] => true,
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
                // The driver of a host PCI function (`vfio`) is not that of a network port.
                let host_driver = child == "driver"
                    && attr(&child_raw, "name").is_some_and(|d| d != "qemu" && d != "vhost");
                if kept.contains(&child.as_str()) && !host_driver {
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
        for qemu in [
            "qemu:commandline",
            "qemu:override",
            "qemu:capabilities",
            "qemu:deprecation",
        ] {
            assert!(!xml.contains(qemu), "{name}: {qemu} remains");
        }
        for (_, raw) in subtrees(xml, "domain")
            .into_iter()
            .filter(|(n, _)| n == "seclabel")
        {
            assert_eq!(
                attr(&raw, "type").as_deref(),
                Some("dynamic"),
                "{name}: {raw}"
            );
        }
        for (_, raw) in subtrees(xml, "domain/os")
            .into_iter()
            .filter(|(n, _)| n == "loader")
        {
            if attr(&raw, "readonly").as_deref() != Some("yes") {
                assert!(raw.contains(">/var/lib/reclab/runs/"), "{name}: {raw}");
            }
        }
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
                "tpm" => {
                    assert!(!raw.contains("passthrough"), "{name}: {raw}");
                    if let Some(path) = raw.split(" path='").nth(1) {
                        assert!(path.starts_with("/var/lib/reclab/runs/"), "{name}: {raw}");
                    }
                }
                "pstore" | "lease" => panic!("{name}: {raw} remains"),
                "smartcard" => assert!(!raw.contains("host-certificates"), "{name}: {raw}"),
                "audio" => assert!(matches!(ty.as_str(), "none" | "spice"), "{name}: {raw}"),
                "memory" => {
                    if let Some(path) = raw.split("<path>").nth(1)
                        && attr(&raw, "access").as_deref() != Some("private")
                    {
                        assert!(path.starts_with("/var/lib/reclab/runs/"), "{name}: {raw}");
                    }
                }
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
    assert_eq!(parse_lab_metadata(&fragment), Some(opts.metadata.clone()));
    // What virDomainGetMetadata really returns: libvirt strips the namespace altogether.
    let bare = "<lab><name>nightly-restore</name><run>RUN</run><vm>db01</vm>\
                <created>2026-11-26T20:00:00Z</created><expires>2026-11-26T22:00:00Z</expires></lab>"
        .replace("RUN", RUN);
    assert_eq!(parse_lab_metadata(&bare), Some(opts.metadata));
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

/// The rewrite of a domain around one device, its error as text.
fn rewrite_one(device: &str, opts: &RewriteOpts) -> Result<Rewritten, String> {
    rewrite_domain(&with_device(device), opts).map_err(|e| format!("{e:#}"))
}

fn private_opts() -> RewriteOpts {
    let mut o = opts("x", vec![]);
    o.private_dir = Some(format!("/var/lib/reclab/runs/{RUN}"));
    o
}

#[test]
fn every_kind_of_nic_moves_to_a_lab_segment_with_its_mac_and_model() {
    let cases = [
        (
            "direct",
            "<source dev='eno1' mode='vepa'/><backend tap='/dev/net/tun' vhost='/dev/vhost-net'/>",
            "direct 'eno1'",
        ),
        (
            "bridge",
            "<source bridge='br0'/><target dev='vnet3'/>",
            "bridge 'br0'",
        ),
        (
            "ethernet",
            "<target dev='tap7' managed='no'/><script path='/etc/qemu-ifup'/>",
            "ethernet",
        ),
        (
            "user",
            "<backend type='passt'/><ip address='10.0.2.15' family='ipv4' prefix='24'/>",
            "user",
        ),
        (
            "vhostuser",
            "<source type='unix' path='/run/vhu0' mode='server'><reconnect enabled='yes' timeout='10'/></source>",
            "vhostuser '/run/vhu0'",
        ),
        (
            "hostdev",
            "<driver name='vfio'/><source><address type='pci' domain='0x0000' bus='0x3b' slot='0x02' function='0x1'/></source>",
            "hostdev '0000:3b:02.1'",
        ),
        (
            "vdpa",
            "<source dev='/dev/vhost-vdpa-0'/>",
            "vdpa '/dev/vhost-vdpa-0'",
        ),
        (
            "mcast",
            "<source address='230.0.0.1' port='5558'/>",
            "mcast '230.0.0.1:5558'",
        ),
    ];
    for (kind, inner, described) in cases {
        let nic = format!(
            "<interface type='{kind}'><mac address='52:54:00:AB:00:01'/>{inner}<model type='e1000e'/></interface>"
        );
        let out = rewrite_one(&nic, &opts("x", vec![])).unwrap_or_else(|e| panic!("{kind}: {e}"));
        let (_, raw) = subtrees(&out.xml, "domain/devices")
            .into_iter()
            .find(|(n, _)| n == "interface")
            .unwrap_or_else(|| panic!("{kind}: the interface was dropped"));
        let raw: String = raw.lines().map(str::trim).collect();
        assert_eq!(
            raw,
            format!(
                "<interface type='network'><mac address='52:54:00:AB:00:01'/><source network='{LAN}'/><model type='e1000e'/></interface>"
            ),
            "{kind}"
        );
        assert_eq!(
            out.interfaces,
            vec![reclab::xml::domain::LabInterface {
                mac: "52:54:00:ab:00:01".to_string(),
                network: LAN.to_string()
            }],
            "{kind}"
        );
        assert!(
            out.changes.iter().any(|c| c.to_string()
                == format!("changed interface 52:54:00:ab:00:01 ({described}) to lab network '{LAN}': lab guests keep their production mac on an isolated network")),
            "{kind}: {:?}",
            out.changes
        );
    }
}

#[test]
fn a_macvtap_goes_to_the_segment_that_names_its_host_interface_or_is_refused_by_name() {
    let nic = "<interface type='direct'><mac address='52:54:00:ab:00:02'/><source dev='eno2' mode='bridge'/></interface>";
    let mut o = opts("x", vec![]);
    o.networks = NetworkMap {
        bridges: [("eno2".to_string(), BACKUP_NET.to_string())].into(),
        ..NetworkMap::default()
    };
    assert_eq!(
        rewrite_one(nic, &o).unwrap().interfaces[0].network,
        BACKUP_NET
    );
    o.networks.bridges = [("eno1".to_string(), BACKUP_NET.to_string())].into();
    assert_eq!(
        rewrite_one(nic, &o).unwrap_err(),
        "interface 52:54:00:ab:00:02 (direct 'eno2') is not mapped to a lab network"
    );
}

#[test]
fn writable_firmware_tpm_state_and_pmem_use_private_copies_or_are_refused() {
    let loader = "<domain type='kvm'><name>x</name><os><type>hvm</type>\
        <loader type='pflash'>/var/lib/libvirt/qemu/nvram/x-bios.fd</loader></os><devices/></domain>";
    let tpm = "<tpm model='tpm-crb'><backend type='emulator' version='2.0'>\
        <source type='file' path='/var/lib/swtpm/x.state'/></backend></tpm>";
    let pmem = "<memory model='virtio-pmem' access='shared'><source><path>/srv/pmem/x.img</path></source>\
        <target><size unit='KiB'>1024</size></target></memory>";
    let dir = format!("/var/lib/reclab/runs/{RUN}");

    let out = rewrite_domain(loader, &private_opts()).unwrap();
    assert!(
        out.xml
            .contains(&format!("<loader type='pflash'>{dir}/x-loader.fd</loader>"))
    );
    assert_eq!(
        out.copies,
        vec![reclab::xml::domain::PrivateCopy {
            what: "writable firmware <loader>".to_string(),
            from: "/var/lib/libvirt/qemu/nvram/x-bios.fd".to_string(),
            to: format!("{dir}/x-loader.fd"),
            dir: false,
            missing_ok: false,
        }]
    );
    let out = rewrite_one(tpm, &private_opts()).unwrap();
    assert!(
        out.xml
            .contains(&format!("<source type='file' path='{dir}/x-tpm.state'/>"))
    );
    assert_eq!(out.copies[0].from, "/var/lib/swtpm/x.state");
    let out = rewrite_one(pmem, &private_opts()).unwrap();
    assert!(out.xml.contains(&format!("<path>{dir}/x-pmem0.img</path>")));
    assert_eq!(out.copies[0].to, format!("{dir}/x-pmem0.img"));
    // The copies already in use are not copied again.
    let again = rewrite_domain(&out.xml, &private_opts()).unwrap();
    assert_eq!((again.xml, again.copies), (out.xml, vec![]));

    let o = opts("x", vec![]);
    assert_eq!(
        format!("{:#}", rewrite_domain(loader, &o).unwrap_err()),
        "the domain has writable firmware <loader> /var/lib/libvirt/qemu/nvram/x-bios.fd but no \
         private copy was planned: the lab would write production's file"
    );
    assert_eq!(
        rewrite_one(tpm, &o).unwrap_err(),
        "the domain has tpm state /var/lib/swtpm/x.state but no private copy was planned: the lab \
         would write production's file"
    );
    assert_eq!(
        rewrite_one(pmem, &o).unwrap_err(),
        "the domain has <memory model='virtio-pmem'> 0 /srv/pmem/x.img but no private copy was \
         planned: the lab would write production's file"
    );
    // Read-only firmware, private pmem and default tpm state need no copy.
    let ro = loader.replace("<loader ", "<loader readonly='yes' ");
    assert!(rewrite_domain(&ro, &o).unwrap().copies.is_empty());
    let private = pmem.replace("'shared'", "'private'");
    assert!(rewrite_one(&private, &o).is_ok());
    let default_tpm = "<tpm model='tpm-crb'><backend type='emulator' version='2.0'/></tpm>";
    assert!(
        rewrite_one(default_tpm, &o)
            .unwrap()
            .xml
            .contains(default_tpm)
    );
    let persistent = default_tpm.replace("version=", "persistent_state='yes' version=");
    let out = rewrite_one(&persistent, &o).unwrap();
    assert!(out.xml.contains(default_tpm), "{}", out.xml);
    assert_eq!(
        out.changes[0].to_string(),
        "changed tpm persistent_state='yes' to the default: the lab's tpm state goes with the lab"
    );
}

#[test]
fn host_audio_becomes_none_keeping_its_id() {
    for audio in [
        "<audio id='1' type='pulseaudio' serverName='tcp:10.1.1.1'><input name='in'/></audio>",
        "<audio id='1' type='jack'><output serverName='srv' clientName='c'/></audio>",
        "<audio id='1' type='file' path='/tmp/out.wav'/>",
        "<audio id='1' type='alsa'><input dev='/dev/dsp0'/></audio>",
        "<audio id='1' type='oss'><output dev='/dev/dsp'/></audio>",
    ] {
        let out = rewrite_one(audio, &opts("x", vec![])).unwrap();
        let (_, raw) = subtrees(&out.xml, "domain/devices").remove(0);
        let raw = raw.replace("></audio>", "/>");
        assert_eq!(raw, "<audio id='1' type='none'/>", "{audio}");
        assert!(
            out.changes[0]
                .to_string()
                .starts_with("changed <audio id='1'"),
            "{audio}"
        );
    }
    for kept in [
        "<audio id='1' type='none'/>",
        "<audio id='1' type='spice'/>",
    ] {
        let out = rewrite_one(kept, &opts("x", vec![])).unwrap();
        assert!(out.xml.contains(kept), "{kept}");
    }
}

#[test]
fn host_displays_locks_stores_certificates_and_labels_are_removed() {
    let removed = [
        (
            "<graphics type='sdl' display=':0' xauth='/root/.Xauthority'/>",
            "opens a window on a host display",
        ),
        (
            "<graphics type='dbus' address='unix:path=/run/bus'/>",
            "connects to a d-bus outside the lab",
        ),
        (
            "<pstore backend='acpi-erst'><path>/var/lib/x.pstore</path><size unit='KiB'>8</size></pstore>",
            "writes production's persistent store (a host file)",
        ),
        (
            "<lease><lockspace>s</lockspace><key>k</key><target path='/var/lib/sanlock/s'/></lease>",
            "the lab would take production's lock",
        ),
        (
            "<smartcard mode='host-certificates'><certificate>a</certificate><certificate>b</certificate><certificate>c</certificate><database>/etc/pki/nssdb</database></smartcard>",
            "uses the host's certificate database",
        ),
    ];
    for (dev, why) in removed {
        let out = rewrite_one(dev, &opts("x", vec![])).unwrap();
        let name = dev[1..].split(' ').next().unwrap();
        assert!(!out.xml.contains(&format!("<{name} ")), "{dev}");
        assert_eq!(
            out.changes[0].kind,
            reclab::xml::domain::ChangeKind::Removed,
            "{dev}"
        );
        assert_eq!(out.changes[0].why, why, "{dev}");
    }
    let labels = "<domain type='kvm'><name>x</name><devices/>\
        <seclabel type='static' model='selinux'><label>system_u:system_r:svirt_t:s0:c1,c2</label></seclabel>\
        <seclabel type='static' model='dac' relabel='no'><label>+0:+0</label></seclabel>\
        <seclabel type='none' model='apparmor'/>\
        <seclabel type='dynamic' model='selinux'><baselabel>svirt_t</baselabel></seclabel></domain>";
    let out = rewrite_domain(labels, &opts("x", vec![])).unwrap();
    assert_eq!(out.xml.matches("<seclabel").count(), 1, "{}", out.xml);
    assert!(
        out.xml
            .contains("<seclabel type='dynamic' model='selinux'>")
    );
    let removed: Vec<String> = out
        .changes
        .iter()
        .filter(|c| c.what.starts_with("<seclabel"))
        .map(|c| c.what.clone())
        .collect();
    assert_eq!(
        removed,
        [
            "<seclabel type='static' model='selinux'> (system_u:system_r:svirt_t:s0:c1,c2)",
            "<seclabel type='static' model='dac' relabel='no'> (+0:+0)",
            "<seclabel type='none' model='apparmor'>",
        ]
    );
}

#[test]
fn qemu_overrides_capabilities_and_deprecation_are_removed() {
    let xml = "<domain type='kvm' xmlns:q='http://libvirt.org/schemas/domain/qemu/1.0'><name>x</name><devices/>\
        <q:override><q:device alias='net0'/></q:override><q:capabilities><q:add capability='blockdev'/></q:capabilities>\
        <q:deprecation behavior='crash'/></domain>";
    let out = rewrite_domain(xml, &opts("x", vec![])).unwrap();
    assert!(!out.xml.contains("<q:"), "{}", out.xml);
    let removed: Vec<String> = out.changes.iter().take(3).map(|c| c.what.clone()).collect();
    assert_eq!(
        removed,
        ["<q:override>", "<q:capabilities>", "<q:deprecation>"]
    );
}

#[test]
fn a_tpm_with_default_state_gets_a_copy_of_production_state_under_the_lab_uuid() {
    let tpm = "<tpm model='tpm-crb'><backend type='emulator' version='2.0'/></tpm>";
    let production = with_device(tpm).replace(
        "<name>x</name>",
        "<name>x</name>\n  <uuid>5B0F2B9E-6A3C-4D1E-9A57-0C1D2E3F4A5B</uuid>",
    );
    let mut o = opts("x", vec![]);
    o.tpm_state_dir = Some("/srv/libvirt/swtpm/".to_string());
    let out = rewrite_domain(&production, &o).unwrap();
    // libvirt names the state directory by the lower-case uuid; the XML stays as it was (libvirt
    // 9 has no <source> for it): the lab uuid is what points libvirt at the copy.
    let (from, to) = (
        "/srv/libvirt/swtpm/5b0f2b9e-6a3c-4d1e-9a57-0c1d2e3f4a5b".to_string(),
        format!("/srv/libvirt/swtpm/{}", o.uuid),
    );
    assert_eq!(
        out.copies,
        vec![reclab::xml::domain::PrivateCopy {
            what: "tpm state".to_string(),
            from: from.clone(),
            to: to.clone(),
            dir: true,
            missing_ok: true,
        }]
    );
    assert!(out.xml.contains(tpm), "{}", out.xml);
    assert!(
        out.changes.iter().any(|c| c.to_string()
            == format!(
                "changed tpm state {from} to the private copy {to}: the lab must not write production's files"
            )),
        "{:?}",
        out.changes
    );
    // The lab domain's own state is not copied again.
    let again = rewrite_domain(&out.xml, &o).unwrap();
    assert_eq!((again.xml, again.copies), (out.xml, vec![]));

    // Without a production uuid or a known state directory, the lab's tpm starts empty, and the
    // changes say so.
    let empty = |out: &Rewritten| {
        out.copies.is_empty()
            && out.changes.iter().any(|c| {
                c.to_string().starts_with("changed tpm state to an empty one: ")
                    && c.to_string().ends_with(
                        "; a guest that seals secrets to its tpm (bitlocker, luks with tpm) will not unlock",
                    )
            })
    };
    let no_uuid = rewrite_domain(&with_device(tpm), &o).unwrap();
    assert!(empty(&no_uuid), "{:?}", no_uuid.changes);
    assert!(
        no_uuid.changes.iter().any(|c| c
            .why
            .starts_with("the production domain has no <uuid>, so its tpm state cannot be found")),
        "{:?}",
        no_uuid.changes
    );
    o.tpm_state_dir = None;
    let unknown = rewrite_domain(&production, &o).unwrap();
    assert!(empty(&unknown), "{:?}", unknown.changes);
    // A relative state directory is refused like every other path of the options.
    o.tpm_state_dir = Some("swtpm".to_string());
    assert_eq!(
        format!("{:#}", rewrite_domain(&production, &o).unwrap_err()),
        "'swtpm' is not an absolute path"
    );
}
