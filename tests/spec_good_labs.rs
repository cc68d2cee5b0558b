//! Lab files that must be accepted. `examples/erp.toml` is checked field by field; the files
//! in `tests/good-labs/NAME.toml` are compared with the validated result in `NAME.out`
//! (rewritten with `UPDATE_EXPECT=1`).

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reclab::spec::{self, Accel, DhcpReservation, ReadySpec, VmSource};

#[test]
fn the_demo_estate_example_reads_as_documented() {
    let lab = spec::load(Path::new("examples/erp.toml")).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(lab.name, "erp");
    assert_eq!(lab.connect, "qemu:///system");
    assert_eq!(lab.ttl, Duration::from_secs(8 * 3600));
    assert_eq!(lab.accel, Accel::Tcg, "the demo machine has no usable kvm");

    assert_eq!(lab.segments.len(), 1);
    let lan = &lab.segments["lan"];
    assert_eq!(lan.production, ["prod"]);
    let services = lan.services.as_ref().expect("lan has lab services");
    assert_eq!(services.address.to_string(), "10.20.0.1/24");
    assert!(services.dns && services.dhcp);
    assert_eq!(services.domain.as_deref(), Some("prod.example"));
    for (host, last) in [("db", 10), ("app", 11), ("client", 12)] {
        assert_eq!(
            lan.hosts[&format!("{host}.prod.example")],
            Ipv4Addr::new(10, 20, 0, last)
        );
    }
    assert_eq!(
        lab.segment_for_production("prod").map(|s| &s.name[..]),
        Some("lan")
    );
    assert!(lab.segment_for_production("default").is_none());

    assert_eq!(lab.boot_tiers(), [["db"], ["app"], ["client"]]);
    let db = lab.vm("db").unwrap();
    assert_eq!(
        db.source,
        VmSource::Domain {
            domain: "prod-db".into(),
            snapshot: "nightly".into()
        }
    );
    assert_eq!(
        db.ready,
        ReadySpec {
            timeout: Duration::from_secs(300),
            tcp: Some(80)
        }
    );
    assert_eq!(lab.vm("app").unwrap().after, ["db"]);
    assert_eq!(lab.vm("app").unwrap().ready.tcp, Some(80));
    assert_eq!(lab.vm("client").unwrap().ready.tcp, None);
    assert_eq!(
        lab.dhcp_reservations("lan")
            .iter()
            .map(|(vm, dhcp)| (vm.name.as_str(), (*dhcp).clone()))
            .collect::<Vec<_>>(),
        [
            ("db", 10, "db"),
            ("app", 11, "app"),
            ("client", 12, "client")
        ]
        .map(|(vm, last, host)| (
            vm,
            DhcpReservation {
                segment: "lan".into(),
                mac: None,
                ip: Ipv4Addr::new(10, 20, 0, last),
                hostname: format!("{host}.prod.example"),
            }
        ))
    );
}

#[test]
fn every_good_lab_validates_to_its_expected_spec() {
    let update = std::env::var_os("UPDATE_EXPECT").is_some();
    let mut labs: Vec<PathBuf> = fs::read_dir("tests/good-labs")
        .expect("reading tests/good-labs")
        .map(|entry| entry.expect("listing tests/good-labs").path())
        .filter(|path| path.extension().is_some_and(|e| e == "toml"))
        .collect();
    labs.sort();
    assert!(
        labs.len() >= 3,
        "the good-lab corpus shrank to {}",
        labs.len()
    );
    let mut failures = Vec::new();
    for lab in &labs {
        let actual = match spec::load(lab) {
            // Relative paths become absolute (from the lab file's directory); the expected files
            // name them from the checkout.
            Ok(spec) => {
                let checkout = fs::canonicalize(env!("CARGO_MANIFEST_DIR")).unwrap();
                format!("{spec:#?}\n").replace(&format!("{}/", checkout.display()), "")
            }
            Err(err) => format!("rejected:\n{err}\n"),
        };
        let expected_path = lab.with_extension("out");
        if update {
            fs::write(&expected_path, &actual).expect("writing the expected spec");
        } else if fs::read_to_string(&expected_path).ok().as_deref() != Some(actual.as_str()) {
            failures.push(format!("{}:\n{actual}", lab.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "good labs differ from their .out files (UPDATE_EXPECT=1 rewrites them):\n{}",
        failures.join("\n")
    );
}
