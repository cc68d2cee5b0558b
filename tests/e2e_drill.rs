//! Restore points, injection, verification and reports against the demo estate, including the
//! generator's planted defects.

mod common;

use common::*;
use std::path::PathBuf;
use std::process::Output;

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The example lab file next to the estate's backups/ (its paths are relative).
fn lab_file(estate: &Estate, name: &str, edit: impl Fn(String) -> String) -> PathBuf {
    let text = std::fs::read_to_string(repo().join("examples/erp.toml")).unwrap();
    let p = estate.dir.join(format!("{name}.toml"));
    std::fs::write(&p, edit(text)).unwrap();
    p
}

/// An external disk-only snapshot of a production domain, taken now.
fn snapshot_now(sb: &Sandbox, domain: &str, name: &str) {
    check(
        &sb.exec(&[
            "virsh",
            "snapshot-create-as",
            domain,
            name,
            "--disk-only",
            "--atomic",
        ]),
        &format!("snapshot {name} of {domain}"),
    );
}

/// A lab of one VM cloned from `domain`'s `snapshot`, restoring the estate's dumps with
/// `restore`.
fn one_vm_lab(
    estate: &Estate,
    lab: &str,
    vm: &str,
    domain: &str,
    snapshot: &str,
    restore: &str,
) -> PathBuf {
    let p = estate.dir.join(format!("{lab}.toml"));
    std::fs::write(
        &p,
        format!(
            r#"name = "{lab}"
accel = "tcg"
[segment.lan]
production = ["prod"]
[[vm]]
name = "{vm}"
from = {{ domain = "{domain}", snapshot = "{snapshot}" }}
ready = {{ timeout = "3m" }}
[vm.dumps]
dir = "backups/dumps"
pattern = "erp-%Y%m%d-%H%M.sql"
restore = ["{restore}"]
"#
        ),
    )
    .unwrap();
    p
}

/// Rewrite the estate's dump set with these planted defects; returns defects.json.
fn regenerate_dumps(estate: &Estate, defects: &[&str]) -> serde_json::Value {
    let dir = estate.dumps_dir();
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::create_dir_all(&dir).unwrap();
    let mut cmd = std::process::Command::new(repo().join("scripts/gen-dumps"));
    cmd.args(["--now", estate.json["now"].as_str().unwrap()])
        .args(["--seed", &estate.json["seed"].to_string()])
        .arg("--out")
        .arg(&dir);
    for d in defects {
        cmd.args(["--defect", d]);
    }
    check(&cmd.output().unwrap(), "gen-dumps");
    serde_json::from_str(&std::fs::read_to_string(dir.join("defects.json")).unwrap()).unwrap()
}

/// One minute after a dump's time (`erp-YYYYMMDD-HHMM.sql`): the drill must choose that dump.
fn just_after(file: &str) -> String {
    let dt = jiff::civil::DateTime::strptime("erp-%Y%m%d-%H%M.sql", file).unwrap();
    let t = dt.in_tz("UTC").unwrap().timestamp();
    t.checked_add(jiff::SignedDuration::from_secs(60))
        .unwrap()
        .to_string()
}

#[test]
#[ignore = "end-to-end: needs root and a private libvirtd; scripts/test runs it"]
fn drills_restore_the_requested_moment_and_catch_planted_defects() {
    let mut sb = Sandbox::start("drill");
    let estate = sb.create_estate(&[]);
    let lab = lab_file(&estate, "erp", |t| t);

    // A clean restore point passes every example check; the lab holds the dump of two hours
    // ago (its manifest's invoice count), not the latest one.
    let (code, rep, out) = sb.drill(&lab, "2h ago");
    assert_eq!(code, 0, "clean drill: {}\n{}", stderr(&out), stdout(&out));
    assert_eq!(rep["schema"], "reclab.report/1");
    assert_eq!(rep["result"], "verified");
    // The isolation check passed because it probed something: each VM pinged its own tap on
    // the hypervisor (which answers only if the tap left the lab bridge).
    let isolation = check_result(&rep, "isolation");
    assert_eq!(isolation["status"], "pass", "{isolation}");
    let probed: Vec<&str> = isolation["details"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d.as_str())
        .filter(|d| d.contains(" cannot reach its tap "))
        .collect();
    assert!(!probed.is_empty(), "{isolation}");
    let rp = &rep["restore_points"][0];
    assert_eq!(rp["vm"], "db");
    assert_eq!(rp["dump"]["attach"], "boot");
    let chosen = rp["dump"]["file"].as_str().unwrap().to_string();
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(estate.dumps_dir().join(format!("{chosen}.manifest.json")))
            .unwrap(),
    )
    .unwrap();
    let count = check_result(&rep, "invoice-count-matches-the-dump-manifest");
    assert_eq!(count["status"], "pass");
    assert_eq!(
        count["got"].as_str().unwrap().trim(),
        manifest["rows"]["invoices"].to_string()
    );
    let latest = std::fs::read_dir(estate.dumps_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|f| f.ends_with(".sql"))
        .max()
        .unwrap();
    assert_ne!(
        chosen, latest,
        "--at 2h ago must not restore the latest dump"
    );
    let now = jiff::Timestamp::now();
    let taken: jiff::Timestamp = rp["dump"]["taken_at"].as_str().unwrap().parse().unwrap();
    let age = now.duration_since(taken).as_secs();
    assert!(
        (2 * 3600..3 * 3600 + 60).contains(&age),
        "dump age {age}s for --at 2h ago"
    );
    assert!(rep["recovery_time_ms"].as_u64().unwrap() > 0);
    assert!(rep["data_age_ms"].as_i64().unwrap() >= 0);
    // The report files exist; the JUnit has one test case per check.
    let dir = sb
        .state_dir
        .join("labs/erp/reports")
        .join(rep["run"].as_str().unwrap());
    let junit = std::fs::read_to_string(dir.join("junit.xml")).unwrap();
    assert_eq!(
        junit.matches("<testcase").count(),
        rep["checks"].as_array().unwrap().len()
    );
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(
        html.contains("data:image/png;base64,"),
        "screenshots embedded"
    );
    let hist = sb.reclab(&["history", "erp"]);
    check(&hist, "reclab history");
    assert!(
        stdout(&hist).contains(rep["run"].as_str().unwrap()),
        "{}",
        stdout(&hist)
    );
    sb.assert_nothing_left();

    // A missing invoice number: the sequence check names it. This lab hot-plugs the data disk
    // once the agent answers (attach = "hotplug") instead of booting with it.
    let hotplug = lab_file(&estate, "erp-hotplug", |t| {
        let out = t.replace(
            "sha256sums = \"SHA256SUMS\"\n",
            "sha256sums = \"SHA256SUMS\"\nattach = \"hotplug\"\n",
        );
        assert!(
            out.contains("attach = \"hotplug\""),
            "examples/erp.toml changed"
        );
        out
    });
    let d = regenerate_dumps(&estate, &["missing-invoice"]);
    let defect = &d["defects"][0];
    let missing = defect["details"]["invoice_no"].as_u64().unwrap();
    let at = just_after(defect["file"].as_str().unwrap());
    let (code, rep, out) = sb.drill(&hotplug, &at);
    assert_eq!(code, 1, "missing invoice: {}", stderr(&out));
    assert_eq!(rep["restore_points"][0]["dump"]["attach"], "hotplug");
    assert_eq!(
        check_result(&rep, "invoice-count-matches-the-dump-manifest")["status"],
        "pass",
        "the hot-plugged dump was restored"
    );
    let seq = check_result(&rep, "invoice-numbers-without-gaps");
    assert_eq!(seq["status"], "fail");
    assert!(
        seq.to_string().contains(&missing.to_string()),
        "names {missing}: {seq}"
    );
    sb.assert_nothing_left();

    // A corrupt dump: caught by the checksum step before any restore; the drill names the file.
    let d = regenerate_dumps(&estate, &["corrupt-dump"]);
    let file = d["defects"][0]["file"].as_str().unwrap().to_string();
    let (code, rep, out) = sb.drill(&lab, &just_after(&file));
    assert_eq!(code, 2, "corrupt dump: {}", stderr(&out));
    assert_eq!(rep["result"], "error");
    assert!(
        rep["errors"].to_string().contains(&file),
        "names {file}: {}",
        rep["errors"]
    );
    assert!(
        rep["errors"].to_string().contains("sha256"),
        "{}",
        rep["errors"]
    );
    sb.assert_nothing_left();

    // A stale dump set: freshness fails.
    regenerate_dumps(&estate, &["stale"]);
    let (code, rep, out) = sb.drill(&lab, "2h ago");
    assert_eq!(code, 1, "stale: {}", stderr(&out));
    assert_eq!(
        check_result(&rep, "newest-invoice-is-fresh")["status"],
        "fail"
    );
    assert_eq!(
        check_result(&rep, "invoice-numbers-without-gaps")["status"],
        "pass"
    );
    sb.assert_nothing_left();
    regenerate_dumps(&estate, &[]);

    // A restore command that fails shows its exit code and the end of its output.
    let bad = lab_file(&estate, "failing", |t| {
        t.replace(
            "\"cp /var/lib/erp/erp.db /var/lib/erp/erp-image.db\",",
            "\"echo restore exploded >&2; exit 7\",",
        )
    });
    let (code, rep, out) = sb.drill(&bad, "2h ago");
    assert_eq!(code, 2, "{}", stderr(&out));
    let errors = rep["errors"].to_string();
    assert!(
        errors.contains("exit code 7") && errors.contains("restore exploded"),
        "{errors}"
    );
    // The report says how far the drill got: what was chosen for the db, with its checksum,
    // each finished step of `up` and the one it stopped in.
    let points = rep["restore_points"].as_array().expect("restore points");
    assert_eq!(points.len(), 1, "{rep:#}");
    assert_eq!(points[0]["vm"], "db");
    assert!(
        points[0]["dump"]["sha256"]
            .as_str()
            .is_some_and(|s| s.len() == 64),
        "{rep:#}"
    );
    let phases: Vec<(String, bool)> = rep["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["ok"].as_bool().unwrap(),
            )
        })
        .collect();
    assert!(
        phases.contains(&("up: clone db/vda".into(), true)),
        "{phases:?}"
    );
    assert!(
        phases.contains(&("up: boot tier 1".into(), false)),
        "{phases:?}"
    );
    assert_eq!(phases.last(), Some(&("up".into(), false)), "{phases:?}");
    sb.assert_nothing_left();

    // An unreadable dump: a copy of the dump directory (as symbolic links) whose newest dump
    // points nowhere, as when a backup store is half gone.
    let unreadable = estate.dir.join("backups/unreadable");
    std::fs::create_dir_all(&unreadable).unwrap();
    let mut newest = String::new();
    for entry in std::fs::read_dir(estate.dumps_dir()).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.starts_with("erp-") && name.ends_with(".sql") && name > newest {
            newest = name.clone();
        }
        std::os::unix::fs::symlink(estate.dumps_dir().join(&name), unreadable.join(&name)).unwrap();
    }
    std::fs::remove_file(unreadable.join(&newest)).unwrap();
    std::os::unix::fs::symlink(
        "/nonexistent/backup-store/dump.sql",
        unreadable.join(&newest),
    )
    .unwrap();

    // Bad --at and dump sources: clear messages, exit code 2, nothing created.
    let cases: Vec<(PathBuf, &str, &str)> = vec![
        (
            lab_file(&estate, "unreadable", |t| {
                t.replace("dir = \"backups/dumps\"", "dir = \"backups/unreadable\"")
            }),
            "latest",
            newest.as_str(),
        ),
        (lab.clone(), "next week", "--at"),
        (lab.clone(), "2099-01-01T00:00:00Z", "future"),
        (lab.clone(), "2001-01-01T00:00:00Z", "before"),
        (
            lab_file(&estate, "nomatch", |t| {
                t.replace("erp-%Y%m%d-%H%M.sql", "nothing-%Y%m%d-%H%M.sql")
            }),
            "latest",
            "matches",
        ),
        (
            lab_file(&estate, "nodir", |t| {
                t.replace("dir = \"backups/dumps\"", "dir = \"backups/nope\"")
            }),
            "latest",
            "backups/nope",
        ),
    ];
    for (file, at, expect) in cases {
        let out = sb.reclab(&["up", "--at", at, file.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{at}: {}", stderr(&out));
        assert!(
            stderr(&out).to_lowercase().contains(expect),
            "{at}: expected {expect:?} in {}",
            stderr(&out)
        );
        sb.assert_nothing_left();
    }

    // A guest whose agent does not allow guest-exec gets a clear error. The production app's
    // agent is reconfigured and snapshotted; the lab restores a dump into that app.
    let hv = sb.hv();
    let (rc, _) = guest_sh(
        &hv,
        "prod-app",
        "sed -i 's|/usr/sbin/qemu-ga -m|/usr/sbin/qemu-ga -b guest-exec,guest-exec-status -m|' /usr/lib/reclab/qemu-ga-run && grep -q -e '-b guest-exec' /usr/lib/reclab/qemu-ga-run && sync",
    );
    assert_eq!(rc, 0);
    snapshot_now(&sb, "prod-app", "noexec");
    let noexec = one_vm_lab(&estate, "noexec", "app", "prod-app", "noexec", "true");
    let out = sb.reclab(&["up", noexec.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("does not allow guest-exec"),
        "{}",
        stderr(&out)
    );
    sb.assert_nothing_left();

    // A snapshot pattern: every matching snapshot of prod-db is an image point; "2h ago"
    // still picks the nightly of the night before, latest picks the snapshot taken now, and
    // the lab really boots from it.
    snapshot_now(&sb, "prod-db", "nightly-now");
    let pattern = one_vm_lab(
        &estate,
        "pattern",
        "db",
        "prod-db",
        "nightly*",
        "test -s {dump}",
    );
    let out = sb.reclab(&[
        "points",
        "--json",
        "--at",
        "2h ago",
        pattern.to_str().unwrap(),
    ]);
    check(&out, "reclab points on a snapshot pattern");
    let points: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let images: Vec<&str> = points["vms"][0]["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(images, ["nightly", "nightly-now"], "{points}");
    assert_eq!(points["at"]["choices"][0]["image"], "nightly", "{points}");
    let out = sb.reclab(&["up", "--json", pattern.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let up: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(up["injections"][0]["image"]["name"], "nightly-now", "{up}");
    check(
        &sb.reclab(&["down", up["run"].as_str().unwrap()]),
        "reclab down",
    );
    sb.assert_nothing_left();

    // The estate with a wrong app version in its backup: the http check fails.
    drop(hv);
    drop(sb);
    let mut sb = Sandbox::start("drill");
    let estate = sb.create_estate(&["app-version"]);
    let lab = lab_file(&estate, "erp", |t| t);
    let (code, rep, out) = sb.drill(&lab, "2h ago");
    assert_eq!(code, 1, "{}", stderr(&out));
    let http = check_result(&rep, "app-shows-its-version-to-the-client");
    assert_eq!(http["status"], "fail");
    assert!(http.to_string().contains("erp-web 2.4.1"), "{http}");
    sb.assert_nothing_left();
}
