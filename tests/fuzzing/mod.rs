//! The two fuzz targets and their invariants, shared by the property tests
//! (`tests/fuzz_props.rs`, run by `cargo test`) and the libFuzzer targets (`fuzz/`, run by
//! `scripts/fuzz`). Each target takes arbitrary bytes and returns `Err` with a description
//! when an invariant is broken; a panic inside reclab is a finding too.
//!
//! - `lab_file`: `reclab::spec::parse` never panics; every error names the file; an accepted
//!   lab has unique VM names and boot tiers that hold each VM exactly once.
//! - `domain_xml`: `reclab::xml::domain::rewrite_domain` never panics; what it accepts becomes
//!   well-formed XML with no device that could reach outside the lab (interfaces only on lab
//!   networks, no host device, shared folder or shared memory, consoles on loopback only,
//!   disks only on their overlays, no raw QEMU arguments); every element it does not model
//!   survives with its attributes and text; rewriting the result again changes nothing.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};
use reclab::xml::domain::{
    Accel, BackingLayer, DiskPlan, ImageFormat, LabMetadata, LayerKind, NetworkMap, QEMU_NS,
    RECLAB_NS, RewriteOpts, rewrite_domain,
};

/// The lab networks of the options the domain target rewrites with.
pub const LAB_NETWORKS: [&str; 2] = ["reclab-f00dcafe-lan", "reclab-f00dcafe-bk"];

/// Fuzz target: the lab-file parser.
pub fn lab_file(data: &[u8]) -> Result<(), String> {
    let Ok(text) = std::str::from_utf8(data) else {
        return Ok(());
    };
    match reclab::spec::parse(text, Path::new("fuzz.toml")) {
        Err(e) => {
            let msg = e.to_string();
            if e.problems.is_empty() {
                return Err(format!("an error without problems: {msg:?}"));
            }
            if !msg.starts_with("fuzz.toml") {
                return Err(format!("an error that does not name the file: {msg:?}"));
            }
            Ok(())
        }
        Ok(spec) => {
            let mut names: Vec<&str> = spec.vms.iter().map(|v| v.name.as_str()).collect();
            names.sort_unstable();
            let n = names.len();
            names.dedup();
            if names.len() != n {
                return Err(format!("accepted duplicate vm names: {names:?}"));
            }
            let mut tiered: Vec<String> = spec.boot_tiers().into_iter().flatten().collect();
            tiered.sort();
            if tiered != names {
                return Err(format!(
                    "boot tiers {tiered:?} do not hold every vm once: {names:?}"
                ));
            }
            Ok(())
        }
    }
}

/// The options `domain_xml` rewrites with: an overlay for every disk target the input names,
/// production network `prod` and bridge `br0` mapped to the second lab network, everything
/// else to the first.
pub fn options(xml: &str) -> RewriteOpts {
    let mut disks = BTreeMap::new();
    let mut reader = Reader::from_str(xml);
    let mut in_disk = 0usize;
    let mut depth = 0usize;
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) => {
                depth += 1;
                if e.local_name().as_ref() == "disk" && in_disk == 0 {
                    in_disk = depth;
                }
                target_dev(&e, in_disk, &mut disks);
            }
            Ok(Event::Empty(e)) => target_dev(&e, in_disk, &mut disks),
            Ok(Event::End(_)) => {
                if depth == in_disk {
                    in_disk = 0;
                }
                depth = depth.saturating_sub(1);
            }
            Ok(Event::Eof) | Err(_) => break,
            Ok(_) => {}
        }
    }
    RewriteOpts {
        name: "reclab-fuzz-f00dcafe-vm".into(),
        uuid: "0d9c8b7a-6f5e-4d3c-8b2a-190817263544".into(),
        accel: Accel::Tcg,
        disks,
        networks: NetworkMap {
            networks: [("prod".to_string(), LAB_NETWORKS[1].to_string())].into(),
            bridges: [("br0".to_string(), LAB_NETWORKS[1].to_string())].into(),
            by_mac: BTreeMap::new(),
            default: Some(LAB_NETWORKS[0].into()),
        },
        graphics_password: "pw4Lab".into(),
        graphics_valid_to: "2026-11-26T22:00:00Z".parse().unwrap(),
        serial_log: Some("/var/lib/reclab/runs/f00dcafe/vm-serial.log".into()),
        nvram_path: Some("/var/lib/reclab/runs/f00dcafe/vm_VARS.fd".into()),
        private_dir: Some("/var/lib/reclab/runs/f00dcafe".into()),
        tpm_state_dir: Some("/var/lib/libvirt/swtpm".into()),
        metadata: LabMetadata {
            lab: "fuzz".into(),
            run: "f00dcafe".into(),
            vm: "vm".into(),
            created: "2026-11-26T20:00:00Z".into(),
            expires: "2026-11-26T22:00:00Z".into(),
        },

        memory: None,
        vcpus: None,
    }
}

fn overlay(dev: &str) -> String {
    format!("/var/lib/reclab/runs/f00dcafe/vm-{dev}.qcow2")
}

fn target_dev(e: &BytesStart, in_disk: usize, disks: &mut BTreeMap<String, DiskPlan>) {
    if in_disk == 0 || e.local_name().as_ref() != "target" {
        return;
    }
    let Some(dev) = attr_of(e, "dev") else {
        return;
    };
    disks.insert(
        dev.clone(),
        DiskPlan {
            overlay: overlay(&dev),
            chain: vec![BackingLayer {
                path: format!("/srv/backup/{dev}.qcow2"),
                format: ImageFormat::Qcow2,
                kind: LayerKind::File,
            }],
        },
    );
}

fn attr_of(e: &BytesStart, key: &str) -> Option<String> {
    e.attributes().flatten().find_map(|a| {
        (a.key.as_ref() == key).then(|| {
            #[allow(deprecated)]
            let value = a.unescape_value();
            value
                .map(|v| v.into_owned())
                .unwrap_or_else(|_| a.value.to_string())
        })
    })
}

/// An element of a parsed document, flattened: its path of names from the root, attributes
/// (without namespace declarations), direct text (its characters in sorted order: the rewrite
/// may move or merge stray text of a mixed-content element around the devices it removes or
/// adds), and the namespaces in scope.
#[derive(Debug, Clone)]
pub struct Node {
    pub path: Vec<String>,
    pub attrs: Vec<(String, String)>,
    pub text: String,
    pub ns: BTreeMap<String, String>,
}

impl Node {
    fn name(&self) -> &str {
        self.path.last().map(String::as_str).unwrap_or("")
    }

    fn local(&self) -> &str {
        local(self.name())
    }

    fn attr(&self, key: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn namespace(&self) -> Option<&str> {
        let name = self.name();
        let prefix = name.split_once(':').map(|(p, _)| p).unwrap_or("");
        self.ns.get(prefix).map(String::as_str)
    }

    /// `domain/devices/disk/...` → `devices/disk/...` (the path below the root).
    fn below_root(&self) -> Vec<&str> {
        self.path.iter().skip(1).map(String::as_str).collect()
    }
}

fn local(name: &str) -> &str {
    name.rsplit_once(':').map(|(_, l)| l).unwrap_or(name)
}

/// Parse a whole document strictly (matching end tags); every element in document order.
pub fn nodes(xml: &str) -> Result<Vec<Node>, String> {
    let mut reader = Reader::from_str(xml);
    reader.config_mut().check_end_names = true;
    let mut out: Vec<Node> = Vec::new();
    let mut fragments: Vec<Vec<String>> = Vec::new();
    let mut open: Vec<usize> = Vec::new();
    let mut roots = 0;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| format!("at byte {}: {e}", reader.buffer_position()))?;
        match event {
            Event::Start(_) | Event::Empty(_) if open.is_empty() && roots > 0 => {
                return Err("more than one root element".into());
            }
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(event, Event::Empty(_));
                let parent = open.last().map(|&i| &out[i]);
                let mut path = parent.map(|p| p.path.clone()).unwrap_or_default();
                let mut ns = parent.map(|p| p.ns.clone()).unwrap_or_default();
                path.push(e.name().as_ref().to_string());
                let mut attrs = Vec::new();
                for a in e.attributes() {
                    let a = a.map_err(|e| format!("attribute: {e}"))?;
                    let key = a.key.as_ref().to_string();
                    #[allow(deprecated)]
                    let value = a
                        .unescape_value()
                        .map_err(|e| format!("attribute {key}: {e}"))?
                        .into_owned();
                    if key == "xmlns" {
                        ns.insert(String::new(), value);
                    } else if let Some(p) = key.strip_prefix("xmlns:") {
                        ns.insert(p.to_string(), value);
                    } else {
                        attrs.push((key, value));
                    }
                }
                attrs.sort();
                if open.is_empty() {
                    roots += 1;
                }
                out.push(Node {
                    path,
                    attrs,
                    text: String::new(),
                    ns,
                });
                fragments.push(Vec::new());
                if !empty {
                    open.push(out.len() - 1);
                }
            }
            Event::End(_) => {
                open.pop();
            }
            Event::Text(t) => {
                if let Some(&i) = open.last() {
                    // Text on both sides of a removed device merges into one: compare the
                    // characters, not how they are split.
                    fragments[i].extend(
                        t.as_ref()
                            .chars()
                            .filter(|c| !c.is_whitespace())
                            .map(String::from),
                    );
                }
            }
            Event::CData(t) => {
                if let Some(&i) = open.last() {
                    fragments[i].push(format!("<![CDATA[{}]]>", t.as_ref()));
                }
            }
            Event::GeneralRef(r) => {
                if let Some(&i) = open.last() {
                    fragments[i].push(format!("&{};", r.as_ref()));
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !open.is_empty() {
        return Err("unclosed elements at the end".into());
    }
    for (node, mut texts) in out.iter_mut().zip(fragments) {
        texts.sort();
        node.text = texts.join("\u{1}");
    }
    if roots == 0 {
        return Err("no root element".into());
    }
    Ok(out)
}

/// Devices reclab edits or removes: their whole subtree is the rewrite's business.
const MODELLED_DEVICES: &[&str] = &[
    "disk",
    "interface",
    "graphics",
    "hostdev",
    "redirdev",
    "filesystem",
    "shmem",
    "input",
    "smartcard",
    "tpm",
    "rng",
    "vsock",
    "serial",
    "console",
    "channel",
    "parallel",
    "memory",
    "pstore",
    "lease",
    "audio",
];

/// Whether an element of a `<domain>` lies in a part the rewrite models.
fn modelled(n: &Node) -> bool {
    let p = n.below_root();
    if n.path.len() <= 1 {
        return true;
    }
    // Anything in reclab's namespace, and raw QEMU arguments, are rewritten or removed.
    if n.namespace() == Some(RECLAB_NS) || n.namespace() == Some(QEMU_NS) {
        return true;
    }
    match p.as_slice() {
        ["name" | "uuid" | "cpu" | "seclabel", ..] => true,
        ["os", "loader", ..] => true,
        ["features", "hyperv", ..] => true,
        ["os", "nvram", ..] => true,
        ["sysinfo", "system", "entry"] => n.attr("name") == Some("uuid"),
        // The uuid entry's content is replaced; entries hold only text anyway.
        ["sysinfo", "system", "entry", _, ..] => true,
        ["devices", dev, ..] => MODELLED_DEVICES.contains(&local(dev)),
        _ => false,
    }
}

fn unmodelled(nodes: &[Node]) -> BTreeMap<String, usize> {
    let mut inside_ns: Vec<usize> = Vec::new();
    let mut count = BTreeMap::new();
    for n in nodes {
        // Descendants of an element in reclab's or QEMU's namespace belong to it.
        inside_ns.retain(|&d| d < n.path.len());
        if inside_ns.iter().any(|&d| d < n.path.len()) {
            continue;
        }
        if n.namespace() == Some(RECLAB_NS) || n.namespace() == Some(QEMU_NS) {
            inside_ns.push(n.path.len());
            continue;
        }
        if modelled(n) {
            continue;
        }
        let key = format!("{} {:?} {:?}", n.path.join("/"), n.attrs, n.text);
        *count.entry(key).or_insert(0) += 1;
    }
    count
}

/// Fuzz target: the domain XML rewrite.
pub fn domain_xml(data: &[u8]) -> Result<(), String> {
    let Ok(xml) = std::str::from_utf8(data) else {
        return Ok(());
    };
    let opts = options(xml);
    let Ok(rewritten) = rewrite_domain(xml, &opts) else {
        return Ok(());
    };
    let out = &rewritten.xml;
    let after =
        nodes(out).map_err(|e| format!("the rewrite produced malformed xml ({e}):\n{out}"))?;
    let root = after
        .first()
        .map(|n| n.name().to_string())
        .unwrap_or_default();
    if root != "domain" {
        return Err(format!(
            "the rewrite produced <{root}>, not <domain>:\n{out}"
        ));
    }
    // The type of the graphics device whose children are being read (document order).
    let mut graphics = String::new();
    // Whether that device maps its backing file privately (`<memory access='private'>`).
    let mut private_access = false;
    for n in &after {
        let p = n.below_root();
        let violation = match p.as_slice() {
            ["devices", dev] => {
                graphics = n.attr("type").unwrap_or_default().to_string();
                private_access = n.attr("access") == Some("private");
                forbidden_device(local(dev), n)
            }
            ["devices", dev, "source"] if local(dev) == "interface" => {
                let net = n.attr("network").unwrap_or_default();
                (!LAB_NETWORKS.contains(&net))
                    .then(|| format!("an interface on '{net}', not a lab network"))
            }
            ["devices", dev, "source"] if local(dev) == "disk" => {
                let file = n.attr("file");
                let ok = file.is_some_and(|f| f.starts_with("/var/lib/reclab/runs/f00dcafe/"));
                let cdrom = n.attrs.is_empty();
                (!ok && !cdrom)
                    .then(|| format!("a disk source outside the overlays: {:?}", n.attrs))
            }
            // Only VNC and SPICE listen on sockets (libvirt ignores listens of other types).
            ["devices", dev, "listen"]
                if local(dev) == "graphics" && (graphics == "vnc" || graphics == "spice") =>
            {
                let ok =
                    n.attr("type") == Some("address") && n.attr("address") == Some("127.0.0.1");
                (!ok).then(|| format!("a console listening on {:?}", n.attrs))
            }
            [c, ..] if n.namespace() == Some(QEMU_NS) && p.len() == 1 => {
                Some(format!("<{c}> (qemu passthrough)"))
            }
            ["seclabel"] if n.attr("type") != Some("dynamic") => {
                Some(format!("a seclabel of type {:?}", n.attr("type")))
            }
            ["devices", dev, "source", "path"] if local(dev) == "memory" => {
                let ok = n.text.starts_with("/var/lib/reclab/runs/f00dcafe/")
                    || n.text.is_empty()
                    || private_access;
                (!ok).then(|| format!("a pmem file outside the run directory: {}", n.text))
            }
            ["devices", dev, "backend"] if local(dev) == "interface" => {
                Some("a moved interface's host backend".into())
            }
            _ => None,
        };
        if let Some(v) = violation {
            return Err(format!("the rewrite kept {v}:\n{out}"));
        }
    }
    // Disk sources that are <source> of a planned disk must be its overlay.
    let before = match nodes(xml) {
        Ok(b) => b,
        Err(_) => return Ok(()), // The rewrite's parser is more lenient; nothing to compare.
    };
    if before.first().map(|n| n.name()) == Some("domain") {
        let (b, a) = (unmodelled(&before), unmodelled(&after));
        for (key, n) in &b {
            let m = a.get(key).copied().unwrap_or(0);
            if m < *n {
                return Err(format!(
                    "the rewrite lost an element it does not model ({n} in, {m} out): {key}\n\
                     input:\n{xml}\noutput:\n{out}"
                ));
            }
        }
    }
    // Idempotence is checked on content: whitespace next to text that does not belong in a
    // domain (text directly inside <metadata>, which libvirt drops) may grow by a line per
    // rewrite; that is cosmetic and libvirt ignores it.
    let content = |nodes: &[Node]| -> Vec<String> {
        nodes
            .iter()
            .map(|n| format!("{} {:?} {:?}", n.path.join("/"), n.attrs, n.text))
            .collect()
    };
    match rewrite_domain(out, &opts) {
        Ok(again) if again.xml == *out => Ok(()),
        Ok(again) if nodes(&again.xml).is_ok_and(|a| content(&a) == content(&after)) => Ok(()),
        Ok(again) => Err(format!(
            "rewriting the result again changed it:\nfirst:\n{out}\nsecond:\n{}",
            again.xml
        )),
        Err(e) => Err(format!("the rewrite refused its own output: {e:#}\n{out}")),
    }
}

/// Why a device directly under `<devices>` of the lab domain is forbidden, if it is.
fn forbidden_device(dev: &str, n: &Node) -> Option<String> {
    let kind = n.attr("type").unwrap_or("");
    match dev {
        "hostdev" | "redirdev" | "filesystem" | "shmem" | "pstore" | "lease" => {
            Some(format!("a <{dev}>"))
        }
        "interface" if kind != "network" => Some(format!("an interface of type '{kind}'")),
        "graphics" if matches!(kind, "rdp" | "sdl" | "desktop") => Some(format!("{kind} graphics")),
        "graphics" if kind == "dbus" && n.attr("address").is_some() => {
            Some("d-bus graphics with an address".into())
        }
        "audio" if kind != "none" && kind != "spice" => Some(format!("{kind} audio")),
        "smartcard" if n.attr("mode") == Some("host-certificates") => {
            Some("a smartcard on host certificates".into())
        }
        "graphics"
            if (kind == "vnc" || kind == "spice") && n.attr("listen") != Some("127.0.0.1") =>
        {
            Some(format!(
                "{kind} graphics listening on {:?}",
                n.attr("listen")
            ))
        }
        "input" if kind == "passthrough" || kind == "evdev" => Some(format!("a {kind} input")),
        "disk" if n.attr("type").is_some_and(|t| t != "file") => {
            Some(format!("a disk of type '{kind}'"))
        }
        _ => None,
    }
}

/// The seed corpus of a target: every file in `fuzz/corpus/<target>/`.
pub fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| std::fs::read(&p).unwrap())
        .collect()
}
