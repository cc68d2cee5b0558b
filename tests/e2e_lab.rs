//! The lab lifecycle against a real libvirtd, QEMU and qemu-guest-agent, with the demo estate
//! running as production next to the labs.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn write_lab(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(&p, text).unwrap();
    p
}

fn example_as(name: &str) -> String {
    std::fs::read_to_string(repo().join("examples/erp.toml"))
        .unwrap()
        .replace("name = \"erp\"", &format!("name = \"{name}\""))
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `up --json` and return the run id.
fn up(sb: &Sandbox, lab: &Path) -> serde_json::Value {
    let out = sb.reclab(&["up", "--json", lab.to_str().unwrap()]);
    check(&out, "reclab up");
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("up --json");
    sb.remember_run(v["run"].as_str().unwrap());
    v
}

fn domain_of(v: &serde_json::Value, vm: &str) -> String {
    v["vms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == vm)
        .unwrap()["domain"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
#[ignore = "end-to-end: needs root and a private libvirtd; scripts/test runs it"]
fn lab_lifecycle_on_the_demo_estate() {
    let mut sb = Sandbox::start("lab");
    let estate = sb.create_estate(&[]);
    let hv = sb.hv();
    // An address of the hypervisor that is outside the lab, which no lab VM may reach.
    // (A veth pair inside the sandbox: this kernel has no dummy links.)
    for args in [
        &[
            "ip", "link", "add", "outside0", "type", "veth", "peer", "name", "outside1",
        ][..],
        &["ip", "addr", "add", "10.99.0.1/24", "dev", "outside0"],
        &["ip", "link", "set", "outside0", "up"],
        &["ip", "link", "set", "outside1", "up"],
    ] {
        check(&sb.exec(args), "outside link");
    }

    let images = estate.backup_images();
    let sums_before: Vec<String> = images.iter().map(|p| sha256_file(p)).collect();
    let at_snapshot = estate.json["snapshot"]["database_at_snapshot"]["invoices"]
        .as_u64()
        .unwrap();

    // check resolves every source without creating anything.
    let lab1 = write_lab(&estate.dir, "erp", &example_as("erp"));
    let out = sb.reclab(&["check", lab1.to_str().unwrap()]);
    check(&out, "reclab check");
    assert!(
        stdout(&out).contains("lab erp: ok (3 vms"),
        "{}",
        stdout(&out)
    );
    sb.assert_nothing_left();

    // Production's client is paused during the drill, so the production app's access log
    // would only grow if the lab reached production.
    let (_, log_before) = guest_sh(&hv, "prod-app", "wc -l < /var/log/erp-web/access.log");
    check(
        &sb.exec(&["virsh", "suspend", "prod-client"]),
        "suspend prod-client",
    );

    // The 3-VM lab comes up, tiers in order, on the production addresses.
    let a = up(&sb, &lab1);
    // Without --at the newest dump is restored into db on top of the nightly image.
    let restored = a["injections"][0]["manifest"]["rows"]["invoices"]
        .as_u64()
        .unwrap();
    assert!(restored > at_snapshot, "the dump is newer than the image");
    let tiers: Vec<(String, u64)> = a["vms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["name"].as_str().unwrap().to_string(),
                v["tier"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        tiers,
        vec![("db".into(), 1), ("app".into(), 2), ("client".into(), 3)]
    );
    let isolation: Vec<String> = a["isolation"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect();
    assert!(
        isolation
            .iter()
            .any(|i| i.contains("cannot reach hypervisor address 10.99.0.1")),
        "{isolation:?}"
    );
    let app1 = domain_of(&a, "app");
    let db1 = domain_of(&a, "db");

    // The app reaches db by production hostname and by IP, and sees the backup's data.
    let (rc, by_name) = guest_sh(
        &hv,
        &app1,
        "timeout 10 wget -q -O - http://db.prod.example/cgi-bin/stats",
    );
    assert_eq!(rc, 0, "lab app reaches lab db by name");
    let (rc, by_ip) = guest_sh(
        &hv,
        &app1,
        "timeout 10 wget -q -O - http://10.20.0.10/cgi-bin/stats",
    );
    assert_eq!(rc, 0, "lab app reaches lab db by ip");
    assert_eq!(by_name, by_ip);
    assert!(
        by_name.contains(&format!("invoices={restored} ")),
        "lab data is the restored latest dump's ({restored} invoices), not production's: {by_name}"
    );
    let (_, mac) = guest_sh(&hv, &db1, "cat /sys/class/net/eth0/address");
    assert_eq!(mac.trim(), "52:54:00:20:00:10", "production MAC kept");
    let (_, host) = guest_sh(&hv, &db1, "hostname");
    assert_eq!(host.trim(), "db");

    // Nothing outside the lab is reachable from inside: the hypervisor's address, by IP.
    let (rc, _) = guest_sh(&hv, &db1, "ping -c 1 -W 2 10.99.0.1");
    assert_ne!(rc, 0, "lab db must not reach 10.99.0.1");

    // `reclab exec` runs a command in a lab VM through its agent; `reclab verify` runs the
    // lab file's checks on the running lab and writes a report.
    let out = sb.reclab(&["exec", "erp", "db", "--", "hostname"]);
    check(&out, "reclab exec");
    assert_eq!(stdout(&out).trim(), "db");
    let out = sb.reclab(&["exec", "erp", "nosuchvm", "--", "true"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("its vms: db, app, client"),
        "{}",
        stderr(&out)
    );
    let out = sb.reclab(&["verify", "erp"]);
    check(&out, "reclab verify");
    assert!(stdout(&out).contains("VERIFIED"), "{}", stdout(&out));

    // A second lab with identical IPs and MACs runs side by side; each app sees only its db.
    let lab2 = write_lab(&estate.dir, "erp2", &example_as("erp2"));
    let b = up(&sb, &lab2);
    let app2 = domain_of(&b, "app");
    let db2 = domain_of(&b, "db");
    let (rc, _) = guest_sh(
        &hv,
        &db1,
        "sqlite3 /var/lib/erp/erp.db \"insert into invoices values (999999, 1, 1, '2030-01-01T00:00:00Z')\"",
    );
    assert_eq!(rc, 0);
    let (_, s1) = guest_sh(
        &hv,
        &app1,
        "timeout 10 wget -q -O - http://db.prod.example/cgi-bin/stats",
    );
    let (_, s2) = guest_sh(
        &hv,
        &app2,
        "timeout 10 wget -q -O - http://db.prod.example/cgi-bin/stats",
    );
    assert!(
        s1.contains("max_no=999999"),
        "lab 1 app sees lab 1 db: {s1}"
    );
    assert!(
        !s2.contains("max_no=999999"),
        "lab 2 app must not see lab 1 db: {s2}"
    );
    let (_, mac2) = guest_sh(&hv, &db2, "cat /sys/class/net/eth0/address");
    assert_eq!(mac2.trim(), "52:54:00:20:00:10");

    // status shows both labs with their VMs, addresses and consoles.
    let out = sb.reclab(&["status", "--json"]);
    check(&out, "reclab status");
    let st: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(st.as_array().unwrap().len(), 2);
    for lab in st.as_array().unwrap() {
        for vm in lab["vms"].as_array().unwrap() {
            assert_eq!(vm["state"], "running", "{vm}");
            assert!(
                vm["console"]
                    .as_str()
                    .unwrap()
                    .starts_with("vnc://127.0.0.1:"),
                "{vm}"
            );
        }
    }

    // down is idempotent and leaves nothing; production was never written or contacted.
    for lab in ["erp", "erp2"] {
        check(&sb.reclab(&["down", lab]), "reclab down");
        let again = sb.reclab(&["down", lab]);
        check(&again, "second reclab down");
        assert!(stdout(&again).contains("nothing to tear down"));
    }
    sb.assert_nothing_left();
    let (_, log_after) = guest_sh(&hv, "prod-app", "wc -l < /var/log/erp-web/access.log");
    assert_eq!(
        log_before.trim(),
        log_after.trim(),
        "production app got requests during the drill"
    );
    check(
        &sb.exec(&["virsh", "resume", "prod-client"]),
        "resume prod-client",
    );
    let sums_after: Vec<String> = images.iter().map(|p| sha256_file(p)).collect();
    assert_eq!(sums_before, sums_after, "production images unchanged");

    // kill -9 of reclab in the middle of `up`, then gc: nothing left.
    let lab3 = write_lab(&estate.dir, "erp3", &example_as("erp3"));
    let mut child = std::process::Command::new(repo().join("scripts/sandbox"))
        .args([
            "exec",
            &sb.name,
            "env",
            &format!("RECLAB_CONNECT={}", sb.uri),
        ])
        .arg(env!("CARGO_BIN_EXE_reclab"))
        .arg("--state-dir")
        .arg(&sb.state_dir)
        .args(["up", lab3.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (run_dir, pid) = wait_for("a booting run", Duration::from_secs(60), || {
        let runs = std::fs::read_dir(sb.state_dir.join("runs")).ok()?;
        for e in runs.flatten() {
            let journal =
                std::fs::read_to_string(e.path().join("journal.jsonl")).unwrap_or_default();
            if journal.contains("\"kind\":\"domain\"") {
                let rec: serde_json::Value =
                    serde_json::from_str(&std::fs::read_to_string(e.path().join("run.json")).ok()?)
                        .ok()?;
                return Some((e.path(), rec["owner_pid"].as_u64()? as i32));
            }
        }
        None
    });
    sb.remember_run(&run_dir.file_name().unwrap().to_string_lossy());
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let _ = child.wait();
    let out = sb.reclab(&["gc"]);
    check(&out, "reclab gc");
    assert!(stdout(&out).contains("orphaned"), "{}", stdout(&out));
    sb.assert_nothing_left();
}

#[test]
#[ignore = "end-to-end: needs root and a private libvirtd; scripts/test runs it"]
fn a_failure_at_every_step_of_up_leaves_nothing_behind() {
    let mut sb = Sandbox::start("fault");
    let estate = sb.create_estate(&[]);
    let tmp = tempfile::tempdir().unwrap();
    // One VM from the files a backup tool restores: domain XML plus image.
    let db = estate.domain("db");
    let lab = write_lab(
        tmp.path(),
        "one",
        &format!(
            r#"name = "one"
accel = "tcg"
[segment.lan]
production = ["prod"]
hosts = {{ "db.prod.example" = "10.20.0.10" }}
[segment.lan.services]
address = "10.20.0.1/24"
dns = true
[[vm]]
name = "db"
from = {{ xml = "{}", disks = {{ vda = "{}" }} }}
ready = {{ timeout = "3m" }}
"#,
            db["backup_domain_xml"].as_str().unwrap(),
            db["disks"]["vda"]["backup_image"].as_str().unwrap()
        ),
    );
    let out = sb.reclab(&["check", "--json", lab.to_str().unwrap()]);
    check(&out, "reclab check");
    let plan: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let steps = plan["steps"].as_array().unwrap().len();
    assert!(steps >= 7, "{plan}");
    for k in 1..=steps {
        let out = std::process::Command::new(repo().join("scripts/sandbox"))
            .args([
                "exec",
                &sb.name,
                "env",
                &format!("RECLAB_CONNECT={}", sb.uri),
            ])
            .arg(format!("RECLAB_FAULT_AFTER_STEP={k}"))
            .arg(env!("CARGO_BIN_EXE_reclab"))
            .arg("--state-dir")
            .arg(&sb.state_dir)
            .args(["up", lab.to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "fault after step {k}: {}",
            stderr(&out)
        );
        assert!(
            stderr(&out).contains(&format!("injected fault after step {k}")),
            "{}",
            stderr(&out)
        );
        sb.assert_nothing_left();
    }
}

#[test]
#[ignore = "end-to-end: needs root and a private libvirtd; scripts/test runs it"]
fn bad_sources_are_clear_errors_with_exit_code_2_and_leave_nothing() {
    let sb = Sandbox::start("bad");
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("disk.img");
    std::fs::write(&raw, vec![0u8; 1 << 20]).unwrap();
    let xml = tmp.path().join("vm.xml");
    std::fs::write(
        &xml,
        "<domain type='kvm'><name>vm</name><memory>65536</memory><os><type>hvm</type></os>\
         <devices><disk type='file' device='disk'><driver name='qemu' type='vmdk'/>\
         <source file='/nowhere.vmdk'/><target dev='vda'/></disk></devices></domain>",
    )
    .unwrap();
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "missing domain",
            r#"from = { domain = "no-such-vm", snapshot = "nightly" }"#.into(),
            "no-such-vm",
        ),
        (
            "missing image",
            format!(
                r#"from = {{ xml = "{}", disks = {{ vda = "/nonexistent/db.qcow2" }} }}"#,
                xml.display()
            ),
            "/nonexistent/db.qcow2",
        ),
        (
            "unsupported format",
            format!(
                r#"from = {{ xml = "{}", disks = {{ vda = "{}" }} }}"#,
                xml.display(),
                raw.display()
            ),
            "format vmdk",
        ),
        (
            "missing xml file",
            r#"from = { xml = "/nonexistent/vm.xml", disks = { vda = "/x" } }"#.into(),
            "/nonexistent/vm.xml",
        ),
    ];
    for (what, from, expect) in cases {
        let lab = write_lab(
            tmp.path(),
            "bad",
            &format!(
                "name = \"bad\"\naccel = \"tcg\"\n[segment.lan]\n[[vm]]\nname = \"vm\"\n{from}\n"
            ),
        );
        for cmd in ["check", "up"] {
            let out = sb.reclab(&[cmd, lab.to_str().unwrap()]);
            assert_eq!(
                out.status.code(),
                Some(2),
                "{what} ({cmd}): {}",
                stderr(&out)
            );
            assert!(
                stderr(&out).contains(expect),
                "{what} ({cmd}): {}",
                stderr(&out)
            );
        }
        sb.assert_nothing_left();
    }
    // An unreachable URI names the URI.
    let lab = write_lab(
        tmp.path(),
        "bad",
        "name = \"bad\"\n[segment.lan]\n[[vm]]\nname = \"vm\"\nfrom = { domain = \"x\", snapshot = \"y\" }\n",
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_reclab"))
        .args(["--state-dir", sb.state_dir.to_str().unwrap()])
        .args([
            "--connect",
            "qemu:///system?socket=/nonexistent/libvirt-sock",
            "up",
            lab.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("/nonexistent/libvirt-sock"),
        "{}",
        stderr(&out)
    );
}
