//! Runtime state out of a domain XML a backup tool captured from a running domain: golden
//! files from real `vmconfig.*.xml` files virtnbdbackup 1.9.15 wrote of the demo estate's
//! `prod-db` (tests/fixtures/virtnbdbackup), and what must never survive the cleaning.

use expect_test::expect_file;
use reclab::xml::runtime::{boot_files, clean_runtime, replace_boot_files};

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/virtnbdbackup/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

#[test]
fn a_virtnbdbackup_vmconfig_loses_its_runtime_state() {
    for name in ["vmconfig.virtnbdbackup.0", "vmconfig.virtnbdbackup.1"] {
        let live = fixture(&format!("{name}.xml"));
        // The fixture is what the issue describes: the live XML.
        for runtime in [
            "id='1'",
            "<alias ",
            "port='5900'",
            "/dev/pts/",
            "<backingStore type=",
            "portid=",
            "vnet0",
            "domain-1-prod-db",
            "<label>",
        ] {
            assert!(
                live.contains(runtime),
                "{name}: the fixture has no {runtime}"
            );
        }
        let (clean, changes) = clean_runtime(&live).unwrap();
        for runtime in [
            "<domain type='qemu' id=",
            "<alias ",
            "port='5900'",
            "/dev/pts/",
            "<backingStore",
            "portid=",
            "vnet0",
            "domain-1-prod-db",
            "<label>",
            "state='connected'",
            "qcow2' index='",
        ] {
            assert!(
                !clean.contains(runtime),
                "{name}: {runtime} survived:\n{clean}"
            );
        }
        // What is configuration stays: the disk, the MAC, the serial log, the agent channel.
        for kept in [
            "<mac address='52:54:00:20:00:10'/>",
            "prod-db.nightly-overlay.qcow2",
            "<log file=",
            "org.qemu.guest_agent.0",
            "autoport='yes'",
            "<cmdb:id>ERP-PROD-DB-101</cmdb:id>",
        ] {
            assert!(clean.contains(kept), "{name}: lost {kept}");
        }
        // Cleaning is idempotent.
        assert_eq!(clean_runtime(&clean).unwrap(), (clean.clone(), vec![]));
        expect_file![format!("../golden/runtime/{name}.clean.xml")].assert_eq(&clean);
        expect_file![format!("../golden/runtime/{name}.changes.txt")]
            .assert_eq(&format!("{}\n", changes.join("\n")));
    }
}

#[test]
fn boot_files_are_listed_and_pointed_elsewhere() {
    let live = fixture("vmconfig.virtnbdbackup.1.xml");
    assert_eq!(
        boot_files(&live).unwrap(),
        [
            (
                "kernel".to_string(),
                "/var/tmp/reclab-dev/guests/vmlinuz".to_string()
            ),
            (
                "initrd".to_string(),
                "/var/tmp/reclab-dev/guests/initrd.img".to_string()
            ),
        ]
    );
    let (xml, changed) = replace_boot_files(&live, |kind, _| {
        (kind == "kernel").then(|| "/run/lab/db-kernel".to_string())
    })
    .unwrap();
    assert_eq!(changed.len(), 1);
    assert!(xml.contains("<kernel>/run/lab/db-kernel</kernel>"));
    assert!(xml.contains("<initrd>/var/tmp/reclab-dev/guests/initrd.img</initrd>"));
    let nvram = "<domain><os><type>hvm</type><nvram>/var/lib/libvirt/qemu/nvram/db_VARS.fd</nvram></os></domain>";
    assert_eq!(
        boot_files(nvram).unwrap(),
        [(
            "nvram".to_string(),
            "/var/lib/libvirt/qemu/nvram/db_VARS.fd".to_string()
        )]
    );
}
