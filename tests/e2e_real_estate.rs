//! The real estate (`scripts/estate create --kind real`): Debian 12 production VMs backed up by
//! Debian's virtnbdbackup over a simulated timeline, hourly `pg_dump`s taken inside the database
//! VM and archives of the web app's state; `destroy` leaves nothing, checkpoints included.

mod common;

use common::*;
use reclab::hv::{DomState, Hypervisor};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

#[test]
#[ignore = "end-to-end: needs root and a private libvirtd; scripts/test runs it"]
fn real_estate_has_checkpoint_chains_dumps_and_leaves_nothing() {
    for p in ["virtnbdbackup", "virtnbdrestore", "faketime", "qemu-img"] {
        if !need_program(
            p,
            "scripts/setup installs virtnbdbackup, faketime and qemu-utils",
        ) {
            return;
        }
    }
    let mut sb = Sandbox::start("real-estate");
    let estate = sb.create_real_estate(&["--defect", "missing-invoice", "--defect", "partial"]);
    let e = &estate.json;
    let hv = sb.hv();
    assert_eq!(e["kind"], "real");

    // Production: three running domains on disks the estate owns, agents answering; pg boots
    // UEFI from its own NVRAM file.
    for role in ["pg", "web", "client"] {
        let d = estate.domain(role);
        let name = d["name"].as_str().unwrap();
        assert_eq!(
            hv.domain_state(name).unwrap(),
            Some(DomState::Running),
            "{name}"
        );
        reclab::hv::agent::ping(&hv, name, Duration::from_secs(5)).expect("agent answers");
        let disk = Path::new(d["disk"].as_str().unwrap());
        assert!(
            disk.starts_with(&estate.dir) && disk.is_file(),
            "{name}: {disk:?}"
        );
    }
    let pg = estate.domain("pg");
    assert_eq!(pg["firmware"], "uefi");
    let nvram = Path::new(pg["nvram"].as_str().unwrap());
    assert!(
        nvram.starts_with(&estate.dir) && nvram.is_file(),
        "{nvram:?}"
    );
    let xml = hv.domain_xml("prod-pg", true).unwrap();
    assert!(
        xml.contains(&nvram.display().to_string()),
        "prod-pg's NVRAM is the estate's file"
    );
    let (_, efi) = guest_sh(&hv, "prod-pg", "test -d /sys/firmware/efi && echo uefi");
    assert_eq!(efi.trim(), "uefi");

    // The timeline: a full backup and >= 3 incrementals, points ordered and spaced an hour.
    let points = e["points"].as_array().unwrap();
    assert!(points.len() >= 4, "{} points", points.len());
    assert_eq!(points[0]["level"], "full");
    assert!(points[1..].iter().all(|p| p["level"] == "inc"));
    let ages: Vec<i64> = points
        .iter()
        .map(|p| p["hours_before_now"].as_i64().unwrap())
        .collect();
    assert!(
        ages.windows(2).all(|w| w[0] == w[1] + 1) && *ages.last().unwrap() == 1,
        "hourly points up to 1 h before now: {ages:?}"
    );
    assert!(
        ages.contains(&3) && ages[0] > 3,
        "3h ago is an incremental in the middle"
    );
    let mut last = 0;
    for p in points {
        let n = p["dump"]["rows"]["invoices"].as_u64().unwrap();
        assert!(n > last, "invoices grow from dump to dump");
        last = n;
        let during = &p["invoices_during_backup"];
        assert!(
            during["after"][1].as_u64() >= during["before"][1].as_u64(),
            "erp-load runs while backing up"
        );
    }

    // The defects are named where a test's check can find them.
    let defects = e["defects"].as_array().unwrap();
    let missing = defects
        .iter()
        .find(|d| d["kind"] == "missing-invoice")
        .expect("missing-invoice defect");
    assert!(missing["details"]["invoice_no"].as_u64().is_some());
    assert!(missing["file"].as_str().unwrap().ends_with(".dump"));
    let partial = defects.iter().find(|d| d["kind"] == "partial").unwrap();
    assert!(estate.dir.join(partial["file"].as_str().unwrap()).is_file());

    // The estate's self-test: chain headers, a restore at the middle checkpoint, manifests,
    // SHA256SUMS, every dump restored inside prod-pg against production's rows, fingerprints.
    let out = Command::new(repo().join("scripts/estate-real-selftest"))
        .arg(&sb.name)
        .output()
        .expect("scripts/estate-real-selftest");
    let summary = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("{summary}");
    check(&out, "scripts/estate-real-selftest");
    assert!(summary.contains(" passed, 0 failed"), "{summary}");

    let status = Command::new(repo().join("scripts/estate"))
        .args(["status", &sb.name])
        .output()
        .unwrap();
    check(&status, "scripts/estate status");
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("kind: real") && text.contains(&format!("points: {}", points.len())),
        "{text}"
    );

    // destroy leaves no domain (so no checkpoint), no network, no estate dir.
    let out = Command::new(repo().join("scripts/estate"))
        .args(["destroy", &sb.name])
        .output()
        .unwrap();
    check(&out, "scripts/estate destroy");
    let doms: Vec<String> = hv
        .list_domains()
        .unwrap()
        .into_iter()
        .map(|d| d.name)
        .collect();
    assert!(
        doms.iter().all(|d| !d.starts_with("prod-")),
        "domains left: {doms:?}"
    );
    let net = e["network"]["name"].as_str().unwrap();
    let nets: Vec<String> = hv
        .list_networks()
        .unwrap()
        .into_iter()
        .map(|n| n.name)
        .collect();
    assert!(!nets.iter().any(|n| n == net), "networks left: {nets:?}");
    assert!(!estate.dir.exists(), "{:?} left", estate.dir);
}
