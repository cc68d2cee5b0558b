//! The test bed itself: the demo estate boots in a sandbox and is what a real shop would have.

mod common;

use common::*;
use reclab::hv::{DomState, Hypervisor};
use std::time::Duration;

#[test]
#[ignore = "end-to-end: needs root and a private libvirtd; scripts/test runs it"]
fn demo_estate_boots_serves_invoices_and_has_verifiable_backups() {
    let mut sb = Sandbox::start("estate");
    let estate = sb.create_estate(&[]);
    let hv = sb.hv();

    // The estate boots: three production VMs running, each answering its guest agent.
    for role in ["db", "app", "client"] {
        let dom = estate.domain(role)["name"].as_str().unwrap().to_string();
        assert_eq!(
            hv.domain_state(&dom).unwrap(),
            Some(DomState::Running),
            "{dom}"
        );
        reclab::hv::agent::ping(&hv, &dom, Duration::from_secs(5)).expect("agent answers");
        let (_, host) = guest_sh(&hv, &dom, "hostname");
        assert_eq!(host.trim(), role, "identity on its own disk");
    }

    // app shows invoices that it read from db over the production network, by name.
    let (rc, stats) = guest_sh(
        &hv,
        "prod-app",
        "timeout 10 wget -q -O - http://db.prod.example/cgi-bin/stats",
    );
    assert_eq!(rc, 0, "app reaches db by name");
    let (_, local) = guest_sh(
        &hv,
        "prod-db",
        "sqlite3 /var/lib/erp/erp.db 'select count(*) from invoices'",
    );
    assert!(
        stats.contains(&format!("invoices={}", local.trim())),
        "stats {stats:?} vs db {local:?}"
    );
    let (rc, page) = guest_sh(
        &hv,
        "prod-app",
        "timeout 10 wget -q -O - http://127.0.0.1/cgi-bin/latest",
    );
    assert_eq!(rc, 0);
    assert!(page.contains("erp-web 2.4.1"), "version on the page");
    let (_, newest) = guest_sh(
        &hv,
        "prod-db",
        "sqlite3 /var/lib/erp/erp.db 'select max(no) from invoices'",
    );
    assert!(
        page.contains(newest.trim()),
        "newest invoice {newest} on the app page"
    );

    // The client's VGA console shows the page: a screenshot that is not blank.
    let png = wait_for("a non-blank client screen", Duration::from_secs(60), || {
        let png = hv.screenshot("prod-client").ok()?;
        (!png_is_blank(&png)).then_some(png)
    });
    std::fs::write(sb.state_dir.join("client.png"), &png).unwrap();

    // The backups: a nightly external snapshot per VM and 24 hourly dumps whose manifests verify.
    for role in ["db", "app", "client"] {
        let dom = estate.domain(role)["name"].as_str().unwrap().to_string();
        let snaps = hv.list_snapshots(&dom).unwrap();
        assert!(
            snaps.contains(&"nightly".to_string()),
            "{dom} snapshots {snaps:?}"
        );
        let xml = hv.snapshot_xml(&dom, "nightly").unwrap();
        assert!(
            xml.contains("<state>disk-snapshot</state>"),
            "external disk-only"
        );
    }
    let dumps = estate.dumps_dir();
    let mut n = 0;
    let mut last_invoices = 0;
    let mut names: Vec<_> = std::fs::read_dir(&dumps)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|f| f.ends_with(".sql"))
        .collect();
    names.sort();
    for name in &names {
        let manifest: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dumps.join(format!("{name}.manifest.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(
            manifest["sha256"].as_str().unwrap(),
            sha256_file(&dumps.join(name)),
            "{name}"
        );
        let invoices = manifest["rows"]["invoices"].as_u64().unwrap();
        assert!(
            invoices > last_invoices,
            "invoices grow from dump to dump ({name})"
        );
        last_invoices = invoices;
        n += 1;
    }
    assert_eq!(n, 24, "24 hourly dumps");

    // The estate's own self-test (scripts/estate-selftest): production-like domain XML, the
    // snapshot's date, the frozen images unchanged while production writes, the backup images'
    // contents, the client screen following a new invoice, ...
    let out = std::process::Command::new(repo().join("scripts/estate-selftest"))
        .args([&sb.name, "--wait", "20"])
        .output()
        .expect("scripts/estate-selftest");
    check(&out, "scripts/estate-selftest");
    let summary = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        summary.contains(" passed, 0 failed"),
        "estate-selftest:\n{summary}"
    );

    // With the database down, the app says so: HTTP 502 and "db unreachable" (busybox wget
    // prints no body on an error status, so plain HTTP over nc).
    assert!(hv.destroy_domain("prod-db").unwrap(), "prod-db was running");
    let answer = wait_for(
        "the app to notice the db is down",
        Duration::from_secs(90),
        || {
            let (_, got) = guest_sh(
                &hv,
                "prod-app",
                r"printf 'GET /cgi-bin/latest.txt HTTP/1.0\r\n\r\n' | timeout 30 nc 127.0.0.1 80",
            );
            got.contains(" 502 ").then_some(got)
        },
    );
    assert!(
        answer.contains("db unreachable"),
        "app with db down: {answer}"
    );

    // Stopping the sandbox leaves no process, namespace or mount behind.
    let pids = String::from_utf8_lossy(
        &std::process::Command::new("ip")
            .args(["netns", "pids", &format!("reclab-sbx-{}", sb.name)])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    assert!(!pids.trim().is_empty(), "the sandbox runs processes");
    drop(hv);
    let name = sb.name.clone();
    drop(sb);
    let netns = String::from_utf8_lossy(
        &std::process::Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    assert!(
        !netns.contains(&format!("reclab-sbx-{name}")),
        "namespace left: {netns}"
    );
    for pid in pids.split_whitespace() {
        // A zombie holds no resources: only its parent has yet to reap it.
        wait_for(
            &format!("process {pid} to end"),
            Duration::from_secs(10),
            || {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                let state = stat
                    .rsplit(')')
                    .next()
                    .and_then(|r| r.split_whitespace().next());
                matches!(state, None | Some("Z")).then_some(())
            },
        );
    }
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    assert!(!mounts.contains(&format!("sandbox/{name}")), "mount left");
}
