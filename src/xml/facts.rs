//! Read-only facts from a production domain XML (or a `<domainsnapshot>` embedding one):
//! its disks and interfaces. Pure; used to resolve sources before planning.

use anyhow::{Context, Result, bail};
use quick_xml::events::{BytesStart, Event};
use quick_xml::reader::Reader;

/// A `<disk>` of the domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskInfo {
    /// `disk`, `cdrom`, `floppy`, `lun`.
    pub device: String,
    /// `file`, `block`, `network`, `volume`…
    pub kind: String,
    pub target: String,
    /// `<source file=…>` or `<source dev=…>`.
    pub source: Option<String>,
    /// `<driver type=…>`.
    pub format: Option<String>,
    pub readonly: bool,
}

/// An `<interface>` of the domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceInfo {
    pub kind: String,
    pub mac: Option<String>,
    /// `<source network=…>` or `<source bridge=…>` or `<source dev=…>`.
    pub source: Option<String>,
    /// `<target dev=…>`: the host tap of a running domain.
    pub target: Option<String>,
}

/// A `<graphics>` of a running domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphicsInfo {
    pub kind: String,
    pub listen: Option<String>,
    pub port: Option<String>,
}

impl GraphicsInfo {
    /// `vnc://127.0.0.1:5900`, when the port is known.
    pub fn endpoint(&self) -> Option<String> {
        let port = self.port.as_deref().filter(|p| *p != "-1")?;
        Some(format!(
            "{}://{}:{port}",
            self.kind,
            self.listen.as_deref().unwrap_or("127.0.0.1")
        ))
    }
}

/// Disks and interfaces of a domain, plus its name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DomainFacts {
    pub name: String,
    pub disks: Vec<DiskInfo>,
    pub interfaces: Vec<InterfaceInfo>,
    /// `<os><nvram>` file, if any.
    pub nvram: Option<String>,
    pub graphics: Vec<GraphicsInfo>,
}

fn attr(e: &BytesStart, key: &str) -> Option<String> {
    e.try_get_attribute(key).ok().flatten().and_then(|a| {
        a.normalized_value(quick_xml::XmlVersion::default())
            .ok()
            .map(|v| v.into_owned())
    })
}

/// Parse the facts. For a `<domainsnapshot>` the embedded `<domain>` is read.
pub fn facts(xml: &str) -> Result<DomainFacts> {
    let mut r = Reader::from_str(xml);
    let mut path: Vec<String> = Vec::new();
    let mut out = DomainFacts::default();
    let mut disk: Option<DiskInfo> = None;
    let mut iface: Option<InterfaceInfo> = None;
    let mut in_domain_name = false;
    let mut in_nvram = false;
    // libvirt's snapshot XML of a running domain also carries an <inactiveDomain>: skip it.
    let mut skip: usize = 0;
    loop {
        let ev = r.read_event().context("parsing domain XML")?;
        if skip > 0 || matches!(&ev, Event::Start(e) if e.local_name().as_ref() == "inactiveDomain")
        {
            match &ev {
                Event::Start(_) => skip += 1,
                Event::End(_) => skip -= 1,
                Event::Eof => break,
                _ => {}
            }
            continue;
        }
        let (e, empty) = match &ev {
            Event::Start(e) => (Some(e.clone()), false),
            Event::Empty(e) => (Some(e.clone()), true),
            _ => (None, false),
        };
        if let Some(e) = e {
            let name = e.local_name().as_ref().to_string();
            let parent = path.last().map(String::as_str);
            let in_devices = parent == Some("devices");
            match name.as_str() {
                "disk" if in_devices => {
                    disk = Some(DiskInfo {
                        device: attr(&e, "device").unwrap_or_else(|| "disk".into()),
                        kind: attr(&e, "type").unwrap_or_else(|| "file".into()),
                        target: String::new(),
                        source: None,
                        format: None,
                        readonly: false,
                    })
                }
                "interface" if in_devices => {
                    iface = Some(InterfaceInfo {
                        kind: attr(&e, "type").unwrap_or_default(),
                        mac: None,
                        source: None,
                        target: None,
                    })
                }
                "source" if parent == Some("disk") => {
                    if let Some(d) = disk.as_mut() {
                        d.source = attr(&e, "file").or_else(|| attr(&e, "dev"));
                    }
                }
                "target" if parent == Some("disk") => {
                    if let Some(d) = disk.as_mut() {
                        d.target = attr(&e, "dev").unwrap_or_default();
                    }
                }
                "driver" if parent == Some("disk") => {
                    if let Some(d) = disk.as_mut() {
                        d.format = attr(&e, "type");
                    }
                }
                "readonly" if parent == Some("disk") => {
                    if let Some(d) = disk.as_mut() {
                        d.readonly = true;
                    }
                }
                "mac" if parent == Some("interface") => {
                    if let Some(i) = iface.as_mut() {
                        i.mac = attr(&e, "address").map(|m| m.to_ascii_lowercase());
                    }
                }
                "source" if parent == Some("interface") => {
                    if let Some(i) = iface.as_mut() {
                        i.source = attr(&e, "network")
                            .or_else(|| attr(&e, "bridge"))
                            .or_else(|| attr(&e, "dev"));
                    }
                }
                "target" if parent == Some("interface") => {
                    if let Some(i) = iface.as_mut() {
                        i.target = attr(&e, "dev");
                    }
                }
                "graphics" if in_devices => out.graphics.push(GraphicsInfo {
                    kind: attr(&e, "type").unwrap_or_default(),
                    listen: attr(&e, "listen"),
                    port: attr(&e, "port"),
                }),
                "name" if parent == Some("domain") => in_domain_name = !empty,
                "nvram" if parent == Some("os") => in_nvram = !empty,
                _ => {}
            }
            if !empty {
                path.push(name);
            } else {
                close(&name, &mut path, &mut disk, &mut iface, &mut out, true);
            }
            continue;
        }
        match ev {
            Event::Text(t) if in_domain_name => {
                out.name = t.xml10_content().trim().to_string();
            }
            Event::Text(t) if in_nvram => {
                out.nvram = Some(t.xml10_content().trim().to_string());
            }
            Event::End(e) => {
                let name = e.local_name().as_ref().to_string();
                in_domain_name = false;
                in_nvram = false;
                close(&name, &mut path, &mut disk, &mut iface, &mut out, false);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(out)
}

fn close(
    name: &str,
    path: &mut Vec<String>,
    disk: &mut Option<DiskInfo>,
    iface: &mut Option<InterfaceInfo>,
    out: &mut DomainFacts,
    empty: bool,
) {
    if !empty {
        path.pop();
    }
    if path.last().map(String::as_str) != Some("devices") {
        return;
    }
    match name {
        "disk" => out.disks.extend(disk.take()),
        "interface" => out.interfaces.extend(iface.take()),
        _ => {}
    }
}

/// Refuses two interfaces with one MAC address on one lab network: the lab bridge would deliver
/// their frames to one of them only (the other sees 100 % packet loss). `domains` are the
/// rewritten XMLs as (vm, XML); `segments` name each lab network as (network, segment).
pub fn refuse_shared_macs(domains: &[(&str, &str)], segments: &[(&str, &str)]) -> Result<()> {
    // (network, mac) -> the first vm seen with it.
    let mut seen: std::collections::BTreeMap<(String, String), &str> = Default::default();
    for (vm, xml) in domains {
        let f = facts(xml).with_context(|| format!("vm {vm}: reading the rewritten XML"))?;
        for i in &f.interfaces {
            let (Some(mac), Some(net)) = (&i.mac, &i.source) else {
                continue;
            };
            let Some(first) = seen.insert((net.clone(), mac.clone()), vm) else {
                continue;
            };
            let segment = segments
                .iter()
                .find(|(n, _)| n == net)
                .map_or(net.as_str(), |(_, s)| s);
            if first == *vm {
                bail!(
                    "vm {vm} has two interfaces with MAC {mac} on segment {segment}; the lab \
                     network would deliver their frames to one of them only: put them on \
                     different segments"
                );
            }
            bail!(
                "vms {first} and {vm} both have MAC {mac} on segment {segment} (their production \
                 XMLs carry the same address); the lab network would deliver their frames to one \
                 of them only: put them on different segments"
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SNAP: &str = r#"<domainsnapshot>
  <name>nightly</name>
  <disks><disk name='vda' snapshot='external' type='file'><source file='/img/db.nightly'/></disk></disks>
  <domain type='qemu'>
    <name>prod-db</name>
    <devices>
      <disk type='file' device='disk'>
        <driver name='qemu' type='qcow2'/>
        <source file='/img/db.qcow2'/>
        <target dev='vda' bus='virtio'/>
      </disk>
      <disk type='file' device='cdrom'><target dev='sda' bus='sata'/><readonly/></disk>
      <interface type='network'>
        <mac address='52:54:00:20:00:10'/>
        <source network='prod'/>
      </interface>
    </devices>
  </domain>
  <inactiveDomain type='qemu'>
    <name>prod-db</name>
    <devices>
      <disk type='file' device='disk'><source file='/img/other.qcow2'/><target dev='vda'/></disk>
    </devices>
  </inactiveDomain>
</domainsnapshot>"#;

    #[test]
    fn snapshot_facts_come_from_the_embedded_domain() {
        let f = facts(SNAP).unwrap();
        assert_eq!(f.name, "prod-db");
        assert_eq!(f.disks.len(), 2, "snapshot <disks> must not count");
        assert_eq!(f.disks[0].source.as_deref(), Some("/img/db.qcow2"));
        assert_eq!(f.disks[0].format.as_deref(), Some("qcow2"));
        assert_eq!(f.disks[0].target, "vda");
        assert!(f.disks[1].readonly);
        assert_eq!(f.interfaces[0].mac.as_deref(), Some("52:54:00:20:00:10"));
        assert_eq!(f.interfaces[0].source.as_deref(), Some("prod"));
    }

    fn nics(name: &str, nics: &[(&str, Option<&str>)]) -> String {
        let mut devices = String::new();
        for (net, mac) in nics {
            let mac = mac.map_or(String::new(), |m| format!("<mac address='{m}'/>"));
            devices.push_str(&format!(
                "<interface type='network'>{mac}<source network='{net}'/></interface>"
            ));
        }
        format!("<domain><name>{name}</name><devices>{devices}</devices></domain>")
    }

    const SEGMENTS: &[(&str, &str)] = &[("lab-r1-lan", "lan"), ("lab-r1-dmz", "dmz")];

    #[test]
    fn one_mac_on_two_segments_or_no_mac_at_all_is_fine() {
        let a = nics(
            "a",
            &[
                ("lab-r1-lan", Some("52:54:00:00:00:01")),
                ("lab-r1-lan", None),
            ],
        );
        let b = nics(
            "b",
            &[
                ("lab-r1-dmz", Some("52:54:00:00:00:01")),
                ("lab-r1-lan", None),
            ],
        );
        refuse_shared_macs(&[("a", &a), ("b", &b)], SEGMENTS).unwrap();
    }

    #[test]
    fn one_mac_twice_on_a_segment_is_refused_naming_the_vms_and_the_segment() {
        let a = nics("a", &[("lab-r1-lan", Some("52:54:00:00:00:01"))]);
        let b = nics("b", &[("lab-r1-dmz", Some("52:54:00:00:00:02"))]);
        let c = nics("c", &[("lab-r1-dmz", Some("52:54:00:00:00:02"))]);
        let err = refuse_shared_macs(&[("a", &a), ("b", &b), ("c", &c)], SEGMENTS).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("vms b and c both have MAC 52:54:00:00:00:02 on segment dmz"),
            "{err}"
        );
        assert!(
            !err.to_string().contains("  "),
            "one space between words: {err}"
        );
        // Case does not hide a clash: facts lowercase MACs.
        let d = nics(
            "d",
            &[
                ("lab-r1-lan", Some("52:54:00:00:00:AA")),
                ("lab-r1-lan", Some("52:54:00:00:00:aa")),
            ],
        );
        let err = refuse_shared_macs(&[("d", &d)], SEGMENTS).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("vm d has two interfaces with MAC 52:54:00:00:00:aa on segment lan"),
            "{err}"
        );
    }
}
