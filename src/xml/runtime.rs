//! Runtime state out of a domain XML that a backup tool captured from a running domain
//! (virtnbdbackup's `vmconfig.*.xml`, or `virsh dumpxml` of a live VM given as `xml`): what
//! libvirt assigned when it started the domain and would refuse, or misuse, in a new one.
//!
//! Removed: the domain's `id=`; every `<alias>`; VNC/SPICE `port`/`tlsPort`/`websocket`
//! (with `autoport='yes'` back on); the `tty`/`path` of `pty` character devices; the `path`
//! of unix-socket channels libvirt generated under its own directories and channels' target
//! `state`; the `<target dev>` of
//! interfaces (tap names such as `vnet3`) and the `portid`/`bridge` libvirt added to network
//! interfaces' `<source>`; disks' `<backingStore>` chains (into production's files) and
//! source `index=`; the `<label>`/`<imagelabel>` of dynamic `<seclabel>`s. Everything else is
//! kept byte for byte ([`super::tree`]).

use anyhow::{Context, Result};

use super::tree::{self, Elem};

/// Directories under which libvirt creates the sockets of channels it was not given a path for.
const GENERATED_SOCKETS: &[&str] = &[
    "/var/lib/libvirt/qemu/",
    "/run/libvirt/",
    "/var/run/libvirt/",
];

/// The XML without runtime state, and one line per kind of thing removed.
pub fn clean_runtime(xml: &str) -> Result<(String, Vec<String>)> {
    let mut doc = tree::parse(xml).context("parsing the domain xml")?;
    let mut changes = Vec::new();
    let root = &mut doc.root;
    if root.name() == "domain" && root.remove_attr("id") {
        changes.push("removed the runtime domain id".to_string());
    }
    let mut aliases = 0;
    strip(root, &mut aliases);
    if aliases > 0 {
        changes.push(format!("removed {aliases} runtime <alias> elements"));
    }
    if let Some(devices) = root.child_mut("devices") {
        devices_runtime(devices, &mut changes);
    }
    let mut labels = 0;
    for sec in root.elems_mut().filter(|e| e.name() == "seclabel") {
        if sec.attr("type").as_deref() == Some("dynamic") {
            labels += sec
                .remove_where(|e| e.name() == "label" || e.name() == "imagelabel")
                .len();
        }
    }
    if labels > 0 {
        changes.push(format!("removed {labels} runtime security labels"));
    }
    Ok((doc.to_xml(), changes))
}

/// Removes every `<alias>` below `e`, counting them.
fn strip(e: &mut Elem, aliases: &mut usize) {
    *aliases += e.remove_where(|c| c.name() == "alias").len();
    for c in e.elems_mut() {
        strip(c, aliases);
    }
}

fn devices_runtime(devices: &mut Elem, changes: &mut Vec<String>) {
    let mut ports = 0;
    let mut ptys = 0;
    let mut sockets = 0;
    let mut taps = 0;
    let mut backing = 0;
    for dev in devices.elems_mut() {
        match dev.name().as_str() {
            "graphics" => {
                let mut any = false;
                for a in ["port", "tlsPort", "websocket"] {
                    any |= dev.remove_attr(a);
                }
                if any {
                    dev.set_attr("autoport", "yes");
                    ports += 1;
                }
            }
            "serial" | "console" | "parallel" | "channel" => {
                let kind = dev.attr("type").unwrap_or_default();
                if kind == "pty" {
                    let mut any = dev.remove_attr("tty");
                    for s in dev.elems_mut().filter(|s| s.name() == "source") {
                        any |= s.remove_attr("path");
                    }
                    dev.remove_where(|s| s.name() == "source" && s.attrs().is_empty());
                    ptys += usize::from(any);
                }
                // The guest agent's `state='connected'` is what libvirt saw, not config.
                for t in dev.elems_mut().filter(|t| t.name() == "target") {
                    t.remove_attr("state");
                }
                if kind == "unix" {
                    for s in dev.elems_mut().filter(|s| s.name() == "source") {
                        if s.attr("mode").as_deref() == Some("bind")
                            && s.attr("path")
                                .is_some_and(|p| GENERATED_SOCKETS.iter().any(|d| p.starts_with(d)))
                        {
                            s.remove_attr("path");
                            sockets += 1;
                        }
                    }
                }
            }
            "interface" => {
                if !dev
                    .remove_where(|t| t.name() == "target" && t.has_attr("dev"))
                    .is_empty()
                {
                    taps += 1;
                }
                if let Some(s) = dev.child_mut("source")
                    && s.has_attr("network")
                {
                    s.remove_attr("portid");
                    s.remove_attr("bridge");
                }
            }
            "disk" => {
                let removed = dev.remove_where(|b| {
                    b.name() == "backingStore"
                        && (b.elems().next().is_some() || !b.attrs().is_empty())
                });
                backing += removed.len();
                if let Some(s) = dev.child_mut("source") {
                    s.remove_attr("index");
                }
            }
            _ => {}
        }
    }
    for (n, what) in [
        (ports, "runtime graphics ports (autoport back on)"),
        (ptys, "runtime pty paths"),
        (sockets, "generated channel socket paths"),
        (taps, "runtime tap device names"),
        (backing, "disk <backingStore> chains into production"),
    ] {
        if n > 0 {
            changes.push(format!("removed {n} {what}"));
        }
    }
}

/// One boot file pointed elsewhere: `(kind, old path, new path)`.
pub type BootChange = (String, String, String);

/// Points `<os>`'s `<kernel>`, `<initrd>` and `<nvram>` at other files: `map(kind, path)`
/// returns the new path, or `None` to keep it. Returns the XML and `(kind, old, new)` per change.
pub fn replace_boot_files(
    xml: &str,
    mut map: impl FnMut(&str, &str) -> Option<String>,
) -> Result<(String, Vec<BootChange>)> {
    let mut doc = tree::parse(xml).context("parsing the domain xml")?;
    let mut changed = Vec::new();
    if let Some(os) = doc.root.child_mut("os") {
        for e in os.elems_mut() {
            let kind = e.name();
            if !["kernel", "initrd", "nvram"].contains(&kind.as_str()) {
                continue;
            }
            let old = e.text().trim().to_string();
            if old.is_empty() {
                continue;
            }
            if let Some(new) = map(&kind, &old) {
                e.set_text(&new);
                changed.push((kind, old, new));
            }
        }
    }
    Ok((doc.to_xml(), changed))
}

/// The `<kernel>`, `<initrd>` and `<nvram>` paths of a domain's `<os>`: `(kind, path)`.
pub fn boot_files(xml: &str) -> Result<Vec<(String, String)>> {
    let doc = tree::parse(xml).context("parsing the domain xml")?;
    let mut out = Vec::new();
    if let Some(os) = doc.root.child("os") {
        for e in os.elems() {
            let kind = e.name();
            let path = e.text().trim().to_string();
            if ["kernel", "initrd", "nvram"].contains(&kind.as_str()) && !path.is_empty() {
                out.push((kind, path));
            }
        }
    }
    Ok(out)
}
