//! The domain rewrite over libvirt's own test domains (`tests/corpus/libvirt-9.0`, about a
//! thousand files nobody on the project wrote). Per file:
//!
//! - the rewrite does not panic;
//! - it refuses only with a clear message of a known kind ([`REFUSALS`]);
//! - no element is lost that is not an edit: every element path of the input is in the
//!   output unless the rewrite edits it ([`edited`]) or reported removing that device;
//! - nothing host-reaching is left: every device and top-level element of the output is
//!   checked against [`check_element`], a table of every class and what becomes of it; an
//!   element the table does not know fails the test;
//! - VNC and SPICE listen on 127.0.0.1 with the lab's password;
//! - the output is valid against libvirt's RNG schema whenever the input was (`xmllint
//!   --relaxng` with the installed `/usr/share/libvirt/schemas/domain.rng`; under `CI=true` a
//!   missing schema or xmllint fails the test);
//! - rewriting the output again changes nothing, and without a directory for private copies
//!   the rewrite either needs none or refuses naming the production file.

use std::collections::{BTreeMap, BTreeSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::Command;

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};
use reclab::xml::domain::{
    Accel, BackingLayer, ChangeKind, DiskPlan, ImageFormat, LabMetadata, LayerKind, NetworkMap,
    RewriteOpts, Rewritten, rewrite_domain,
};

const RUN_DIR: &str = "/var/lib/reclab/runs/c0c0a000";
const LAB_NET: &str = "reclab-c0c0a000-lan";
const PASSWORD: &str = "c0rpus1";
const SCHEMA: &str = "/usr/share/libvirt/schemas/domain.rng";
const QEMU_NS: &str = "http://libvirt.org/schemas/domain/qemu/1.0";

/// Every kind of refusal the corpus may produce: a message must start with one of these.
const REFUSALS: &[&str] = &[
    "parsing the production domain xml",
    "expected a <domain> or <domainsnapshot> document",
    "domain type '",
    "the domain xml has no <name>",
    "disk ",
    "interface ",
    "<nvram type='",
    "the domain has ",
];

/// A small element tree, read with quick-xml independently of the code under test.
#[derive(Debug, Clone)]
struct Node {
    name: String,
    attrs: BTreeMap<String, String>,
    children: Vec<Node>,
    text: String,
}

impl Node {
    fn attr(&self, key: &str) -> Option<&str> {
        self.attrs.get(key).map(String::as_str)
    }
    fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }
    fn all(&self, name: &str) -> impl Iterator<Item = &Node> {
        self.children.iter().filter(move |c| c.name == name)
    }
    fn paths(&self, prefix: &str, out: &mut BTreeSet<String>) {
        let path = format!("{prefix}/{}", self.name);
        for c in &self.children {
            c.paths(&path, out);
        }
        out.insert(path);
    }
}

fn start(e: &BytesStart) -> Node {
    let attrs = e
        .attributes()
        .filter_map(Result::ok)
        .map(|a| {
            let raw: &str = &a.value;
            let value = quick_xml::escape::unescape(raw).map_or(raw.to_string(), |v| v.to_string());
            (a.key.as_ref().to_string(), value)
        })
        .collect();
    Node {
        name: e.name().as_ref().to_string(),
        attrs,
        children: Vec::new(),
        text: String::new(),
    }
}

/// The root element, or `None` when quick-xml cannot read the document.
fn parse(xml: &str) -> Option<Node> {
    let mut reader = Reader::from_str(xml);
    let mut stack: Vec<Node> = Vec::new();
    loop {
        match reader.read_event().ok()? {
            Event::Start(e) => stack.push(start(&e)),
            Event::Empty(e) => {
                let node = start(&e);
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None => return Some(node),
                }
            }
            Event::Text(t) => {
                if let Some(top) = stack.last_mut() {
                    let raw: &str = &t;
                    top.text.push_str(&quick_xml::escape::unescape(raw).ok()?);
                }
            }
            Event::End(_) => {
                let node = stack.pop()?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None => return Some(node),
                }
            }
            Event::Eof => return None,
            _ => {}
        }
    }
}

/// The `<domain>` of a document (a snapshot's embedded one).
fn domain_of(root: Node) -> Option<Node> {
    if root.name == "domain" {
        return Some(root);
    }
    root.children.into_iter().find(|c| c.name == "domain")
}

/// Where the corpus's hypervisor keeps software TPM state.
const TPM_STATE_DIR: &str = "/var/lib/libvirt/swtpm";

fn overlay(dev: &str) -> String {
    format!("{RUN_DIR}/vm-{dev}.qcow2")
}

/// Options as a plan would make them: an overlay for every disk target, one lab segment,
/// every private copy planned. Odd files run under TCG, even ones under KVM.
fn options(domain: Option<&Node>, tcg: bool) -> RewriteOpts {
    let mut disks = BTreeMap::new();
    if let Some(devices) = domain.and_then(|d| d.child("devices")) {
        for disk in devices.all("disk") {
            if let Some(dev) = disk.child("target").and_then(|t| t.attr("dev")) {
                disks.insert(
                    dev.to_string(),
                    DiskPlan {
                        overlay: overlay(dev),
                        chain: vec![BackingLayer {
                            path: format!("/srv/backup/{dev}.qcow2"),
                            format: ImageFormat::Qcow2,
                            kind: LayerKind::File,
                        }],
                    },
                );
            }
        }
    }
    RewriteOpts {
        name: "reclab-c0c0a000-vm".into(),
        uuid: "6c1e5b9e-3f0a-4d7e-9a51-0c0c0a000001".into(),
        accel: if tcg { Accel::Tcg } else { Accel::Kvm },
        disks,
        networks: NetworkMap::single(LAB_NET),
        graphics_password: PASSWORD.into(),
        graphics_valid_to: "2026-12-01T22:00:00Z".parse().unwrap(),
        serial_log: Some(format!("{RUN_DIR}/vm-serial.log")),
        nvram_path: Some(format!("{RUN_DIR}/vm_VARS.fd")),
        private_dir: Some(RUN_DIR.into()),
        tpm_state_dir: Some(TPM_STATE_DIR.into()),
        metadata: LabMetadata {
            lab: "corpus".into(),
            run: "c0c0a000".into(),
            vm: "vm".into(),
            created: "2026-12-01T20:00:00Z".into(),
            expires: "2026-12-01T22:00:00Z".into(),
        },

        memory: None,
        vcpus: None,
    }
}

/// Element paths (below `domain`) the rewrite replaces or drops as part of an edit.
fn edited(path: &str) -> bool {
    let p: Vec<&str> = path.split('/').skip(2).collect();
    match p.as_slice() {
        ["cpu", ..] | ["features", "hyperv", _, ..] => true,
        ["os", "nvram", ..] => true,
        ["metadata", child, ..] => child.starts_with("reclab:"),
        [
            "devices",
            "disk",
            "source" | "backingStore" | "mirror" | "shareable" | "auth",
            ..,
        ] => true,
        [
            "devices",
            "interface",
            "source" | "target" | "virtualport" | "vlan" | "ip" | "route" | "script" | "downscript"
            | "portForward" | "backend"
            // `<driver name='vfio'/>` of a host PCI function, empty once its name goes.
            | "driver",
            ..,
        ] => true,
        [
            "devices",
            "serial" | "console" | "channel" | "parallel",
            "source" | "protocol" | "log",
            ..,
        ] => true,
        ["devices", "graphics", "listen", ..] => true,
        ["devices", "audio", "input" | "output", ..] => true,
        ["devices", "rng", "backend", "source" | "protocol", ..] => true,
        _ => false,
    }
}

/// The device or top-level element a path belongs to: `hostdev` for
/// `/domain/devices/hostdev/source`, `seclabel` for `/domain/seclabel/label`.
fn owner(path: &str) -> Option<&str> {
    let p: Vec<&str> = path.split('/').skip(2).collect();
    match p.as_slice() {
        ["devices", dev, ..] => Some(dev),
        [top, ..] => Some(top),
        [] => None,
    }
}

/// Whether `what` of a removal names an element called `name`.
fn names(what: &str, name: &str) -> bool {
    what.starts_with(&format!("<{name} ")) || what.starts_with(&format!("<{name}>"))
}

fn check_lost(input: &Node, out: &Node, r: &Rewritten) -> Result<(), String> {
    let (mut before, mut after) = (BTreeSet::new(), BTreeSet::new());
    input.paths("", &mut before);
    out.paths("", &mut after);
    let removed: Vec<&str> = r
        .changes
        .iter()
        .filter(|c| c.kind == ChangeKind::Removed)
        .map(|c| c.what.as_str())
        .collect();
    let removed_of = |name: &str| removed.iter().filter(|w| names(w, name)).count();
    for path in before.difference(&after) {
        if edited(path) {
            continue;
        }
        if owner(path).is_some_and(|o| removed_of(o) > 0) {
            continue;
        }
        return Err(format!("element {path} lost and no removal reported"));
    }
    let count = |d: &Node| {
        let mut m: BTreeMap<String, usize> = BTreeMap::new();
        for c in d.child("devices").iter().flat_map(|d| d.children.iter()) {
            *m.entry(c.name.clone()).or_default() += 1;
        }
        m
    };
    let (b, a) = (count(input), count(out));
    for (dev, n) in &b {
        let kept = a.get(dev).copied().unwrap_or(0);
        if kept + removed_of(dev) < *n {
            return Err(format!(
                "{n} <{dev}> in, {kept} out, {} removals reported",
                removed_of(dev)
            ));
        }
    }
    Ok(())
}

fn private(path: &str) -> bool {
    path.starts_with(&format!("{RUN_DIR}/"))
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

/// Devices that reach nothing outside QEMU and stay as they are.
const INERT_DEVICES: &[&str] = &[
    "emulator",
    "controller",
    "video",
    "sound",
    "memballoon",
    "watchdog",
    "panic",
    "hub",
    "iommu",
    "nvram",
    "crypto",
    // Filters USB redirection, which is removed with every <redirdev>.
    "redirfilter",
];

/// Top-level elements that reach nothing outside QEMU.
const INERT_TOP: &[&str] = &[
    "name",
    "uuid",
    "title",
    "description",
    "genid",
    "metadata",
    "memory",
    "currentMemory",
    "maxMemory",
    "memoryBacking",
    "vcpu",
    "vcpus",
    "iothreads",
    "iothreadids",
    "defaultiothread",
    "cputune",
    "numatune",
    "resource",
    "sysinfo",
    "bootloader",
    "bootloader_args",
    "idmap",
    "features",
    "clock",
    "on_poweroff",
    "on_reboot",
    "on_crash",
    "on_lockfailure",
    "pm",
    "perf",
    "blkiotune",
    "memtune",
    "keywrap",
    "launchSecurity",
    "throttlegroups",
    "cpu",
];

/// The table: what may remain of each element class in a lab domain.
fn check_device(dev: &Node, opts: &RewriteOpts) -> Result<(), String> {
    let ty = dev.attr("type").unwrap_or_default();
    let fail = |why: &str| Err(format!("<{} type='{ty}'>: {why}", dev.name));
    match dev.name.as_str() {
        "disk" => match dev.attr("device").unwrap_or("disk") {
            "disk" => {
                let src = dev.child("source").and_then(|s| s.attr("file"));
                let target = dev.child("target").and_then(|t| t.attr("dev"));
                if ty != "file" || src.is_none() || src.map(str::to_string) != target.map(overlay) {
                    return fail("does not write to its planned overlay");
                }
                let mut bs = dev.child("backingStore");
                while let Some(b) = bs {
                    if b.attrs.is_empty() && b.children.is_empty() {
                        break;
                    }
                    bs = b.child("backingStore");
                }
                if bs.is_none() {
                    return fail("backing chain not terminated");
                }
                if dev.child("shareable").is_some() || dev.child("mirror").is_some() {
                    return fail("shareable or mirrored");
                }
            }
            "cdrom" | "floppy" => {
                if dev.child("source").is_some() {
                    return fail("production media kept");
                }
            }
            other => return fail(&format!("device '{other}'")),
        },
        "interface" => {
            let net = dev.child("source").and_then(|s| s.attr("network"));
            if ty != "network" || net != Some(LAB_NET) {
                return fail("not on the lab network");
            }
            if dev.child("mac").and_then(|m| m.attr("address")).is_none() {
                return fail("no production mac");
            }
            for c in ["backend", "target", "script", "virtualport", "portForward"] {
                if dev.child(c).is_some() {
                    return fail(&format!("keeps <{c}>"));
                }
            }
            if let Some(d) = dev.child("driver").and_then(|d| d.attr("name"))
                && d != "qemu"
                && d != "vhost"
            {
                return fail(&format!("driver '{d}'"));
            }
        }
        "graphics" => match ty {
            "vnc" | "spice" => {
                if dev.attr("listen") != Some("127.0.0.1") {
                    return fail("does not listen on 127.0.0.1");
                }
                if dev.attr("passwd") != Some(opts.graphics_password.as_str()) {
                    return fail("no lab password");
                }
                if dev.attr("port").is_some() || dev.attr("socket").is_some() {
                    return fail("fixed port or socket");
                }
                for l in dev.all("listen") {
                    if l.attr("type") != Some("address") || l.attr("address") != Some("127.0.0.1") {
                        return fail("a <listen> not on 127.0.0.1");
                    }
                }
            }
            "egl-headless" => {}
            "dbus" if dev.attr("address").is_none() => {}
            _ => return fail("graphics that reach a host display or the network"),
        },
        "serial" | "console" | "channel" | "parallel" => {
            let ty = dev.attr("type").unwrap_or("pty");
            let unix_auto =
                ty == "unix" && dev.child("source").and_then(|s| s.attr("path")).is_none();
            if !SAFE_CHARDEV.contains(&ty) && !unix_auto {
                return fail("a character device that reaches the host or network");
            }
            if let Some(log) = dev.child("log").and_then(|l| l.attr("file"))
                && Some(log) != opts.serial_log.as_deref()
            {
                return fail("writes a production log file");
            }
        }
        "hostdev" | "redirdev" | "filesystem" | "shmem" | "pstore" | "lease" | "smartcard" => {
            return fail("must be removed");
        }
        "input" => {
            if ty == "passthrough" || ty == "evdev" {
                return fail("a host input device");
            }
        }
        "tpm" => {
            let backend = dev.child("backend");
            match backend.and_then(|b| b.attr("type")) {
                Some("emulator") | None => {}
                Some(_) => return fail("the host's tpm"),
            }
            if backend.and_then(|b| b.attr("persistent_state")) == Some("yes") {
                return fail("tpm state that outlives the lab");
            }
            if let Some(p) = backend
                .and_then(|b| b.child("source"))
                .and_then(|s| s.attr("path"))
                && !private(p)
            {
                return fail("production's tpm state");
            }
        }
        "rng" => {
            if dev.child("backend").and_then(|b| b.attr("model")) == Some("egd") {
                return fail("an egd socket");
            }
        }
        "vsock" => {
            let cid = dev.child("cid");
            if cid.is_some_and(|c| c.attr("auto") != Some("yes") || c.attr("address").is_some()) {
                return fail("a fixed cid");
            }
        }
        "memory" => {
            let model = dev.attr("model").unwrap_or_default();
            let path = dev
                .child("source")
                .and_then(|s| s.child("path"))
                .map(|p| p.text.trim());
            if (model == "nvdimm" || model == "virtio-pmem")
                && dev.attr("access") != Some("private")
                && path.is_some_and(|p| !private(p))
            {
                return fail("writes production's persistent memory file");
            }
        }
        "audio" => {
            if ty != "none" && ty != "spice" {
                return fail("an audio backend that reaches the host");
            }
        }
        other if INERT_DEVICES.contains(&other) => {}
        other => return Err(format!("<{other}>: a device the table does not know")),
    }
    Ok(())
}

fn check_output(out: &Node, opts: &RewriteOpts) -> Result<(), String> {
    for top in &out.children {
        match top.name.as_str() {
            "devices" => {
                for dev in &top.children {
                    check_device(dev, opts)?;
                }
            }
            "os" => {
                if let Some(l) = top.child("loader") {
                    let writable = l.attr("readonly") == Some("no")
                        || (l.attr("type") == Some("pflash") && l.attr("readonly").is_none());
                    let path = l.text.trim();
                    if writable && !path.is_empty() && !private(path) {
                        return Err(format!("writable firmware {path} is production's"));
                    }
                }
                if let Some(n) = top.child("nvram") {
                    let path = n
                        .child("source")
                        .and_then(|s| s.attr("file"))
                        .unwrap_or(n.text.trim());
                    if !path.is_empty() && !private(path) {
                        return Err(format!("nvram {path} is production's"));
                    }
                }
            }
            "seclabel" => {
                if top.attr("type") != Some("dynamic") {
                    return Err(format!("seclabel type {:?} remains", top.attr("type")));
                }
            }
            name if name.contains(':') => {
                let prefix = name.split(':').next().unwrap_or_default();
                let uri = out.attr(&format!("xmlns:{prefix}"));
                if uri == Some(QEMU_NS) {
                    return Err(format!("<{name}> remains"));
                }
            }
            name if INERT_TOP.contains(&name) => {}
            name => {
                return Err(format!(
                    "<{name}>: a top-level element the table does not know"
                ));
            }
        }
    }
    Ok(())
}

/// Which of `files` validate against libvirt's schema; `None` when xmllint or the schema is
/// missing (allowed outside CI only).
fn valid(files: &[PathBuf]) -> Option<BTreeSet<PathBuf>> {
    let usable = Path::new(SCHEMA).exists()
        && Command::new("xmllint")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
    if !usable {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "xmllint or {SCHEMA} missing (scripts/setup installs both)"
        );
        eprintln!("schema check skipped: xmllint or {SCHEMA} missing");
        return None;
    }
    let mut ok = BTreeSet::new();
    for chunk in files.chunks(200) {
        let out = Command::new("xmllint")
            .args(["--noout", "--relaxng", SCHEMA])
            .args(chunk)
            .output()
            .expect("running xmllint");
        let stderr = String::from_utf8_lossy(&out.stderr);
        for line in stderr.lines() {
            if let Some(f) = line.strip_suffix(" validates") {
                ok.insert(PathBuf::from(f));
            }
        }
    }
    Some(ok)
}

#[test]
fn libvirts_test_domains_become_isolated_valid_lab_domains() {
    let dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/libvirt-9.0/qemuxml2argvdata");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "xml"))
        .collect();
    files.sort();
    assert!(files.len() > 1000, "the corpus holds {} files", files.len());

    let out_dir = std::env::temp_dir().join(format!("reclab-corpus-{}", std::process::id()));
    std::fs::create_dir_all(&out_dir).unwrap();
    let mut failures = Vec::new();
    let mut refusals: BTreeMap<String, usize> = BTreeMap::new();
    let mut outputs: Vec<(PathBuf, PathBuf)> = Vec::new();
    let mut removed: BTreeMap<String, usize> = BTreeMap::new();
    for (i, file) in files.iter().enumerate() {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let xml = std::fs::read_to_string(file).unwrap();
        let input = parse(&xml).and_then(domain_of);
        let opts = options(input.as_ref(), i % 2 == 1);
        let result = catch_unwind(AssertUnwindSafe(|| rewrite_domain(&xml, &opts)));
        let r = match result {
            Err(_) => {
                failures.push(format!("{name}: the rewrite panicked"));
                continue;
            }
            Ok(Err(e)) => {
                let msg = format!("{e:#}");
                let known = REFUSALS.iter().find(|k| msg.starts_with(*k));
                let lower = msg.chars().next().is_some_and(|c| !c.is_uppercase());
                match known {
                    Some(k) if lower => *refusals.entry(k.to_string()).or_default() += 1,
                    _ => failures.push(format!("{name}: unclear refusal: {msg}")),
                }
                continue;
            }
            Ok(Ok(r)) => r,
        };
        for c in r.changes.iter().filter(|c| c.kind == ChangeKind::Removed) {
            let what = c.what.split([' ', '>']).next().unwrap_or_default();
            *removed.entry(what.to_string()).or_default() += 1;
        }
        let Some(out) = parse(&r.xml) else {
            failures.push(format!("{name}: the output is not well-formed"));
            continue;
        };
        if let Some(input) = &input
            && let Err(e) = check_lost(input, &out, &r)
        {
            failures.push(format!("{name}: {e}"));
        }
        if let Err(e) = check_output(&out, &opts) {
            failures.push(format!("{name}: {e}"));
        }
        // A TPM's default state is copied within the swtpm directory, under the lab's uuid.
        for c in r.copies.iter().filter(|c| !c.to.starts_with(RUN_DIR)) {
            let lab_state = format!("{TPM_STATE_DIR}/{}", opts.uuid);
            if !(c.what == "tpm state" && c.missing_ok && c.to == lab_state) {
                failures.push(format!("{name}: a private copy outside the run dir: {c:?}"));
            }
        }
        let run_dir_copies: Vec<_> = r
            .copies
            .iter()
            .filter(|c| c.to.starts_with(RUN_DIR))
            .collect();
        // Without a run directory for private copies: the same result, or a refusal that
        // names the production file.
        let no_copies = RewriteOpts {
            private_dir: None,
            ..opts.clone()
        };
        match rewrite_domain(&xml, &no_copies) {
            Ok(o) if run_dir_copies.is_empty() && o.xml == r.xml => {}
            Ok(_) if run_dir_copies.is_empty() => failures.push(format!(
                "{name}: the output depends on an unused private_dir"
            )),
            Ok(_) => failures.push(format!("{name}: private copies made without a private_dir")),
            Err(e) => {
                let msg = format!("{e:#}");
                let named = run_dir_copies.iter().any(|c| msg.contains(&c.from));
                if !(msg.starts_with("the domain has ") && named) {
                    failures.push(format!("{name}: without private_dir: {msg}"));
                }
            }
        }
        match rewrite_domain(&r.xml, &opts) {
            Ok(again) if again.xml == r.xml => {}
            Ok(_) => failures.push(format!("{name}: a second rewrite changes the output")),
            Err(e) => failures.push(format!("{name}: a second rewrite fails: {e:#}")),
        }
        let lab = out_dir.join(&name);
        std::fs::write(&lab, &r.xml).unwrap();
        outputs.push((file.clone(), lab));
    }

    let rewritten = outputs.len();
    if let Some(ok) = valid(&outputs.iter().map(|(f, _)| f.clone()).collect::<Vec<_>>()) {
        let must: Vec<PathBuf> = outputs
            .iter()
            .filter(|(f, _)| ok.contains(f))
            .map(|(_, o)| o.clone())
            .collect();
        let ok_out = valid(&must).expect("xmllint ran once already");
        let before = failures.len();
        for o in &must {
            if !ok_out.contains(o) {
                failures.push(format!(
                    "{}: the input is valid for libvirt's schema, the output is not (kept in {})",
                    o.file_name().unwrap().to_string_lossy(),
                    o.display()
                ));
            }
        }
        eprintln!(
            "{} inputs valid for libvirt's schema, {} outputs of them invalid",
            must.len(),
            failures.len() - before
        );
    }
    eprintln!(
        "{} files: {rewritten} rewritten, refused {refusals:?}; removed {removed:?}",
        files.len()
    );
    if failures.is_empty() {
        std::fs::remove_dir_all(&out_dir).unwrap();
    }
    assert!(
        failures.is_empty(),
        "{} of {} files fail:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
    assert!(
        rewritten * 2 > files.len(),
        "most of the corpus must be rewritten, not refused: {rewritten} of {}",
        files.len()
    );
}

/// The table is not vacuous: a lab domain that kept production's devices fails it.
#[test]
fn the_table_rejects_what_reaches_outside() {
    let opts = options(None, false);
    let bad = [
        "<hostdev mode='subsystem' type='pci'/>",
        "<graphics type='vnc' listen='0.0.0.0' passwd='c0rpus1'/>",
        "<graphics type='vnc' listen='127.0.0.1'/>",
        "<graphics type='sdl' display=':0'/>",
        "<interface type='direct'><mac address='52:54:00:00:00:01'/><source dev='eth0'/></interface>",
        "<interface type='network'><mac address='52:54:00:00:00:01'/><source network='reclab-c0c0a000-lan'/><backend tap='/dev/net/tun'/></interface>",
        "<serial type='tcp'><source mode='bind' host='0.0.0.0' service='1'/></serial>",
        "<memory model='nvdimm' access='shared'><source><path>/prod/pmem</path></source></memory>",
        "<tpm model='tpm-crb'><backend type='emulator'><source type='dir' path='/var/lib/swtpm/prod'/></backend></tpm>",
        "<audio id='1' type='pulseaudio' serverName='tcp:10.0.0.1'/>",
        "<lease><lockspace>s</lockspace><key>k</key><target path='/x'/></lease>",
        "<disk type='file' device='disk'><source file='/prod/vda.qcow2'/><target dev='vda'/></disk>",
        "<teleporter/>",
    ];
    for dev in bad {
        let xml = format!("<domain type='kvm'><devices>{dev}</devices></domain>");
        let node = parse(&xml).unwrap();
        assert!(check_output(&node, &opts).is_err(), "accepted: {dev}");
    }
    for top in [
        "<seclabel type='static' model='selinux'><label>system_u:system_r:svirt_t:s0:c1</label></seclabel>",
        "<os><loader readonly='no' type='pflash'>/usr/share/OVMF/OVMF.fd</loader></os>",
        "<qemu:override xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'/>",
    ] {
        let xml = format!("<domain type='kvm'>{top}</domain>");
        let xml = xml.replacen(
            "<qemu:override xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'/>",
            "<qemu:override/>",
            1,
        );
        let xml = if top.contains("qemu:") {
            xml.replacen(
                "<domain ",
                "<domain xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0' ",
                1,
            )
        } else {
            xml
        };
        let node = parse(&xml).unwrap();
        assert!(check_output(&node, &opts).is_err(), "accepted: {top}");
    }
    let good = "<domain type='kvm'><name>x</name><devices>\
        <graphics type='vnc' listen='127.0.0.1' passwd='c0rpus1'><listen type='address' address='127.0.0.1'/></graphics>\
        <interface type='network'><mac address='52:54:00:00:00:01'/><source network='reclab-c0c0a000-lan'/></interface>\
        </devices></domain>";
    assert_eq!(check_output(&parse(good).unwrap(), &opts), Ok(()));
}
