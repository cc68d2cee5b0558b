//! `LibvirtHv` against libvirt's in-process test driver: no daemon, no VMs.
//!
//! Each test opens `test:///<abs path>/tests/fixtures/hv-node.xml`, which gives every
//! connection its own fresh copy of the fixture (unlike `test:///default`, whose state is
//! shared by the whole process), so the tests can run in parallel.

use std::sync::Arc;

use reclab::hv::libvirt::LibvirtHv;
use reclab::hv::{DomState, HvError, Hypervisor};

const RUN_NS: &str = "https://reclab.example/ns/run/1";

fn fixture_hv() -> LibvirtHv {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/hv-node.xml");
    LibvirtHv::open(&format!("test://{path}")).expect("opening the test driver")
}

fn lab_domain(name: &str) -> String {
    format!(
        "<domain type='test'>
           <name>{name}</name>
           <memory>65536</memory>
           <os><type arch='x86_64'>hvm</type></os>
           <metadata><reclab:run xmlns:reclab='{RUN_NS}' id='run-{name}'/></metadata>
         </domain>"
    )
}

fn lab_network(name: &str, bridge: &str) -> String {
    format!("<network><name>{name}</name><bridge name='{bridge}'/></network>")
}

fn domain_names(hv: &dyn Hypervisor) -> Vec<String> {
    hv.list_domains()
        .unwrap()
        .into_iter()
        .map(|d| d.name)
        .collect()
}

#[test]
fn transient_domain_lives_until_destroyed_and_destroy_is_idempotent() {
    let hv = fixture_hv();
    hv.create_domain(&lab_domain("lab-db")).unwrap();

    let info = hv
        .list_domains()
        .unwrap()
        .into_iter()
        .find(|d| d.name == "lab-db")
        .unwrap();
    assert!(info.active && !info.persistent, "{info:?}");
    assert_eq!(hv.domain_state("lab-db").unwrap(), Some(DomState::Running));
    assert!(
        hv.domain_xml("lab-db", false)
            .unwrap()
            .contains("<name>lab-db</name>")
    );
    // The transient domain has no persistent definition to remove.
    assert!(!hv.undefine_domain("lab-db").unwrap());

    assert!(hv.destroy_domain("lab-db").unwrap());
    assert!(!domain_names(&hv).contains(&"lab-db".to_string()));
    assert_eq!(hv.domain_state("lab-db").unwrap(), None);
    assert!(
        !hv.destroy_domain("lab-db").unwrap(),
        "second destroy is a no-op"
    );
    assert!(!hv.undefine_domain("lab-db").unwrap());
}

#[test]
fn lookups_of_absent_objects_are_typed_not_found() {
    let hv = fixture_hv();
    let err = hv.domain_xml("no-such-vm", false).unwrap_err();
    match err.downcast_ref::<HvError>() {
        Some(HvError::NotFound {
            kind: "domain",
            name,
        }) => assert_eq!(name, "no-such-vm"),
        other => panic!("expected domain not found, got {other:?}: {err:#}"),
    }
    // The libvirt message stays in the chain.
    assert!(
        format!("{err:#}").contains("Domain not found [code=nodomain"),
        "{err:#}"
    );

    let err = hv.network_xml("no-such-net").unwrap_err();
    assert!(
        matches!(
            err.downcast_ref(),
            Some(HvError::NotFound {
                kind: "network",
                ..
            })
        ),
        "{err:#}"
    );
    let err = hv.snapshot_xml("prod-db", "no-such-snap").unwrap_err();
    assert!(
        matches!(
            err.downcast_ref(),
            Some(HvError::NotFound {
                kind: "snapshot",
                ..
            })
        ),
        "{err:#}"
    );
    let err = hv.list_snapshots("no-such-vm").unwrap_err();
    assert!(HvError::is_not_found(&err), "{err:#}");
    assert!(HvError::is_not_found(
        &hv.domain_metadata("no-such-vm", RUN_NS).unwrap_err()
    ));
}

#[test]
fn transient_network_is_created_listed_and_destroyed_once() {
    let hv = fixture_hv();
    hv.create_network(&lab_network("lab-net", "lbr-t1"))
        .unwrap();
    let net = hv
        .list_networks()
        .unwrap()
        .into_iter()
        .find(|n| n.name == "lab-net")
        .unwrap();
    assert_eq!(net.bridge.as_deref(), Some("lbr-t1"));
    assert!(net.active && !net.persistent, "{net:?}");
    assert!(hv.network_xml("lab-net").unwrap().contains("lbr-t1"));

    assert!(hv.destroy_network("lab-net").unwrap());
    assert!(
        hv.list_networks()
            .unwrap()
            .iter()
            .all(|n| n.name != "lab-net")
    );
    assert!(
        !hv.destroy_network("lab-net").unwrap(),
        "second destroy is a no-op"
    );
}

#[test]
fn destroy_network_also_undefines_a_persistent_network() {
    let hv = fixture_hv();
    let prod = hv
        .list_networks()
        .unwrap()
        .into_iter()
        .find(|n| n.name == "prod-net")
        .unwrap();
    assert!(prod.active && prod.persistent, "{prod:?}");
    assert!(hv.destroy_network("prod-net").unwrap());
    assert!(
        hv.list_networks()
            .unwrap()
            .iter()
            .all(|n| n.name != "prod-net"),
        "defined network left behind"
    );
    assert!(!hv.destroy_network("prod-net").unwrap());
}

#[test]
fn production_snapshots_and_metadata_are_readable() {
    let hv = fixture_hv();
    assert_eq!(hv.list_snapshots("prod-db").unwrap(), ["nightly"]);
    let snap = hv.snapshot_xml("prod-db", "nightly").unwrap();
    assert!(
        snap.starts_with("<domainsnapshot>") && snap.contains("<name>prod-db</name>"),
        "{snap}"
    );

    // libvirt hands the element back without its namespace prefix.
    assert_eq!(
        hv.domain_metadata("prod-db", RUN_NS).unwrap().as_deref(),
        Some("<run id=\"prod-fixture\"/>")
    );
    assert_eq!(
        hv.domain_metadata("prod-db", "https://example.com/other")
            .unwrap(),
        None
    );

    hv.create_domain(&lab_domain("lab-app")).unwrap();
    assert_eq!(
        hv.domain_metadata("lab-app", RUN_NS).unwrap().as_deref(),
        Some("<run id=\"run-lab-app\"/>")
    );
    assert!(hv.destroy_domain("lab-app").unwrap());
}

#[test]
fn persistent_domain_is_stopped_by_destroy_and_removed_by_undefine() {
    let hv = fixture_hv();
    assert!(hv.destroy_domain("prod-app").unwrap());
    assert_eq!(
        hv.domain_state("prod-app").unwrap(),
        Some(DomState::ShutOff)
    );
    assert!(!hv.destroy_domain("prod-app").unwrap(), "already shut off");
    assert!(hv.undefine_domain("prod-app").unwrap());
    assert_eq!(hv.domain_state("prod-app").unwrap(), None);
    assert!(
        !hv.undefine_domain("prod-app").unwrap(),
        "second undefine is a no-op"
    );
}

#[test]
fn undefine_refuses_to_drop_snapshot_metadata() {
    let hv = fixture_hv();
    assert!(hv.destroy_domain("prod-db").unwrap());
    let err = hv.undefine_domain("prod-db").unwrap_err();
    assert!(
        format!("{err:#}").contains("undefining domain prod-db"),
        "{err:#}"
    );
    assert_eq!(
        hv.list_snapshots("prod-db").unwrap(),
        ["nightly"],
        "the snapshot survives"
    );
}

#[test]
fn agent_commands_never_block_and_fail_cleanly_without_an_agent() {
    let hv = fixture_hv();
    for forbidden in [0, -1, -2] {
        let err = hv
            .agent_command("prod-db", r#"{"execute":"guest-ping"}"#, forbidden)
            .unwrap_err();
        assert!(err.to_string().contains("at least 1 second"), "{err:#}");
    }
    // The test driver has no guest agent support at all: an error, but not "unavailable".
    let err = hv
        .agent_command("prod-db", r#"{"execute":"guest-ping"}"#, 1)
        .unwrap_err();
    assert!(!HvError::is_agent_unavailable(&err), "{err:#}");
}

#[test]
fn open_failure_names_the_uri_and_what_to_check() {
    let uri = "qemu:///system?socket=/nonexistent/reclab-test/libvirt-sock";
    let err = LibvirtHv::open(uri).err().expect("no daemon listens there");
    let msg = format!("{err:#}");
    assert!(
        msg.contains(uri) && msg.contains("is the libvirt daemon running"),
        "{msg}"
    );
}

#[test]
fn one_connection_serves_several_threads() {
    let hv = Arc::new(fixture_hv());
    let workers: Vec<_> = (0..4)
        .map(|i| {
            let hv = hv.clone();
            std::thread::spawn(move || {
                let name = format!("lab-par-{i}");
                hv.create_domain(&lab_domain(&name)).unwrap();
                assert_eq!(hv.domain_state(&name).unwrap(), Some(DomState::Running));
                assert!(hv.destroy_domain(&name).unwrap());
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let mut left = domain_names(hv.as_ref());
    left.sort();
    assert_eq!(left, ["prod-app", "prod-db"]);
}

#[test]
fn screenshot_streams_a_decodable_png() {
    let hv = fixture_hv();
    // The test driver sends a PNG itself; QEMU's PPM path is covered by hv::ppm unit tests
    // and by tests/hv_real_libvirt.rs.
    let png_bytes = hv.screenshot("prod-db").unwrap();
    let mut reader = png::Decoder::new(std::io::Cursor::new(png_bytes))
        .read_info()
        .unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let frame = reader.next_frame(&mut buf).unwrap();
    assert!(frame.width > 0 && frame.height > 0);
    assert!(HvError::is_not_found(
        &hv.screenshot("no-such-vm").unwrap_err()
    ));
}

#[test]
fn reclab_lab_metadata_reads_back_through_libvirt_without_its_prefix() {
    use reclab::xml::domain::{RECLAB_NS, parse_lab_metadata};
    let hv = fixture_hv();
    let xml = format!(
        "<domain type='test'>
           <name>lab-meta</name>
           <memory>65536</memory>
           <os><type arch='x86_64'>hvm</type></os>
           <metadata><reclab:lab xmlns:reclab='{RECLAB_NS}'><reclab:name>demo</reclab:name>\
             <reclab:run>0123abcd</reclab:run><reclab:vm>db</reclab:vm>\
             <reclab:created>2026-12-01T10:00:00Z</reclab:created>\
             <reclab:expires>2026-12-01T18:00:00Z</reclab:expires></reclab:lab></metadata>
         </domain>"
    );
    hv.create_domain(&xml).unwrap();
    let md = hv.domain_metadata("lab-meta", RECLAB_NS).unwrap().unwrap();
    assert!(md.starts_with("<lab>"), "libvirt returned {md}");
    let m = parse_lab_metadata(&md).expect("the metadata as libvirt returns it parses");
    assert_eq!(
        (m.lab.as_str(), m.run.as_str(), m.vm.as_str()),
        ("demo", "0123abcd", "db")
    );
}
