//! The read-only data disk of a lab domain: its `<disk>` element, and adding it to the domain
//! through the [`super::tree`] tree (so it lands inside `<devices>`, indented like its
//! siblings, whatever the document's layout). Pure.

use anyhow::{Context, Result};
use std::path::Path;

use super::tree::{self, Elem, Style};

/// Serial of the data disk, how the guest finds it.
pub const DISK_SERIAL: &str = "reclab-data";

/// The first virtio disk target the domain does not use.
pub fn free_target(used_targets: &[String]) -> Result<String> {
    ('b'..='z')
        .map(|c| format!("vd{c}"))
        .find(|t| !used_targets.contains(t))
        .context("no free virtio disk target for the data disk")
}

/// The data disk's `<disk>` element: read-only, raw, virtio, with the serial the guest finds
/// it by. `depth` is where it goes (1: a child of `<devices>` of a `<domain>` root).
fn disk_elem(image: &Path, target: &str, depth: usize, style: &Style) -> Elem {
    let mut disk = Elem::new("disk")
        .with_attr("type", "file")
        .with_attr("device", "disk");
    let children = [
        Elem::new("driver")
            .with_attr("name", "qemu")
            .with_attr("type", "raw"),
        Elem::new("source").with_attr("file", &image.display().to_string()),
        Elem::new("target")
            .with_attr("dev", target)
            .with_attr("bus", "virtio"),
        Elem::new("readonly"),
        Elem::new("serial").with_text(DISK_SERIAL),
    ];
    for child in children {
        disk.append(child, depth, style);
    }
    disk
}

/// The data disk's `<disk>` element on its own, for hot-plugging into a running domain.
pub fn disk_xml(image: &Path, target: &str) -> String {
    let style = Style {
        unit: Some("  ".into()),
        quote: '\'',
    };
    disk_elem(image, target, 0, &style).to_xml()
}

/// Adds the data disk to a lab domain XML, as the last child of `<devices>`, on the first free
/// virtio target.
pub fn add_disk(domain_xml: &str, image: &Path, used_targets: &[String]) -> Result<String> {
    let target = free_target(used_targets)?;
    let mut doc = tree::parse(domain_xml).context("parsing the lab domain xml")?;
    let style = doc.style();
    let devices = doc
        .root
        .child_mut("devices")
        .context("lab domain XML has no <devices>")?;
    devices.append(disk_elem(image, &target, 2, &style), 1, &style);
    Ok(doc.to_xml())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_disk_is_the_last_device_on_a_free_target_indented_like_its_siblings() {
        let xml = "<domain type='kvm'>\n  <name>x</name>\n  <devices>\n    <disk type='file' device='disk'>\n      <target dev='vda'/>\n    </disk>\n  </devices>\n</domain>\n";
        let out = add_disk(xml, Path::new("/run/x/db-data.img"), &["vda".into()]).unwrap();
        expect_test::expect![[r#"
            <domain type='kvm'>
              <name>x</name>
              <devices>
                <disk type='file' device='disk'>
                  <target dev='vda'/>
                </disk>
                <disk type='file' device='disk'>
                  <driver name='qemu' type='raw'/>
                  <source file='/run/x/db-data.img'/>
                  <target dev='vdb' bus='virtio'/>
                  <readonly/>
                  <serial>reclab-data</serial>
                </disk>
              </devices>
            </domain>
        "#]]
        .assert_eq(&out);
    }

    #[test]
    fn a_path_is_escaped_and_a_domain_without_devices_is_refused() {
        let out = add_disk(
            "<domain>\n  <devices/>\n</domain>",
            Path::new("/run/it's&x.img"),
            &[],
        )
        .unwrap();
        assert!(out.contains("file='/run/it&apos;s&amp;x.img'"), "{out}");
        // What the tree writes parses back with the path intact.
        let back = tree::parse(&out).unwrap();
        let disk = back.root.child("devices").unwrap().child("disk").unwrap();
        assert_eq!(
            disk.child("source").unwrap().attr("file").as_deref(),
            Some("/run/it's&x.img")
        );
        let err = add_disk("<domain/>", Path::new("/x.img"), &[]).unwrap_err();
        assert!(err.to_string().contains("no <devices>"), "{err}");
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
        expect_test::expect![[r#"
            <disk type='file' device='disk'>
              <driver name='qemu' type='raw'/>
              <source file='/run/x/db-data.img'/>
              <target dev='vdc' bus='virtio'/>
              <readonly/>
              <serial>reclab-data</serial>
            </disk>"#]]
        .assert_eq(&disk_xml(Path::new("/run/x/db-data.img"), "vdc"));
    }
}
