//! The headline drill on the real estate (`scripts/estate create --kind real`): Debian 12 VMs
//! with systemd, PostgreSQL 15 booting UEFI, nginx, backed up hourly by Debian's
//! virtnbdbackup, with hourly `pg_dump -Fc` dumps. `examples/real.toml` drilled at "3h ago"
//! restores the incremental of three hours ago and the dump of three hours ago with
//! `pg_restore` and is VERIFIED; at "2h ago" the planted missing invoice fails, named.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Bytes and sha256 of every file under `dir` (the backup store is only read).
fn fingerprint(dir: &Path) -> BTreeMap<PathBuf, (u64, String)> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.insert(p.clone(), (e.metadata().unwrap().len(), sha256_file(&p)));
            }
        }
    }
    out
}

fn drill(sb: &Sandbox, lab: &Path, at: &str) -> (i32, serde_json::Value, Output) {
    let out = sb.reclab(&["run", "--json", "--at", at, lab.to_str().unwrap()]);
    let rep = serde_json::from_str(&stdout(&out)).unwrap_or(serde_json::Value::Null);
    if let Some(run) = rep["run"].as_str() {
        sb.remember_run(run);
    }
    (out.status.code().unwrap_or(-1), rep, out)
}

fn check_named<'a>(rep: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    rep["checks"]
        .as_array()
        .unwrap_or_else(|| panic!("no checks in the report: {rep}"))
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in the report: {rep}"))
}

#[test]
#[ignore = "end-to-end: needs root and a private libvirtd; scripts/test runs it"]
fn the_real_estate_drilled_at_three_hours_ago_is_verified_and_a_missing_invoice_is_named() {
    for p in ["virtnbdbackup", "virtnbdrestore", "faketime"] {
        if !need_program(p, "scripts/setup installs virtnbdbackup and faketime") {
            return;
        }
    }
    let mut sb = Sandbox::start("real-drill");
    let estate = sb.create_real_estate(&["--hours", "4", "--defect", "missing-invoice"]);
    let store = estate.dir.join("backups");
    let before = fingerprint(&store);
    // The example lab file, next to the estate's backups/ as the demo puts it.
    let lab = estate.dir.join("real.toml");
    std::fs::copy(repo().join("examples/real.toml"), &lab).unwrap();

    // "3h ago": the incremental of three hours ago (not the full, not the newest) for each VM,
    // and the dump of three hours ago.
    let (code, rep, out) = drill(&sb, &lab, "3h ago");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(code, 0, "the drill at 3h ago is VERIFIED: {rep:#}");
    assert_eq!(rep["result"], "verified", "{rep:#}");
    let failed: Vec<&serde_json::Value> = rep["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] != "pass")
        .collect();
    assert!(failed.is_empty(), "every check passes: {failed:#?}");
    for name in [
        "pg-agent",
        "invoice-numbers-without-gaps",
        "invoice-count-matches-the-dump-manifest",
        "newest-invoice-is-fresh",
        "image-and-dump-agree",
        "uploads-match-the-archive-manifest",
        "web-shows-its-version-to-the-client",
        "client-reaches-pg",
        "client-screen",
    ] {
        assert_eq!(check_named(&rep, name)["status"], "pass", "{name}");
    }
    let restores = rep["image_restores"].as_array().expect("image_restores");
    assert_eq!(restores.len(), 3, "one restore per VM: {restores:#?}");
    for r in restores {
        assert_eq!(r["cache"], "miss", "the first drill restores: {r}");
        // Four points (a full backup 4 h ago, then hourly incrementals): 3 h ago is the
        // first incremental, in the middle of the chain.
        assert_eq!(r["checkpoint"], "virtnbdbackup.1", "{r}");
    }
    let text = rep.to_string();
    let points = estate.json["points"].as_array().expect("points");
    let three_h = points
        .iter()
        .find(|p| p["hours_before_now"] == 3)
        .unwrap_or_else(|| panic!("no point of 3 h ago in estate.json: {points:#?}"));
    let dump = three_h["dump"]["file"].as_str().unwrap();
    assert!(
        text.contains(dump),
        "the dump of three hours ago ({dump}) was restored"
    );
    // The invoice count restored is the dump manifest's.
    let count = check_named(&rep, "invoice-count-matches-the-dump-manifest");
    assert!(
        count
            .to_string()
            .contains(&three_h["dump"]["rows"]["invoices"].to_string()),
        "{count}"
    );

    // At "2h ago" the dump lacks an invoice: the sequence check fails naming it.
    let missing = estate.json["defects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["kind"] == "missing-invoice")
        .map(|d| d["details"]["invoice_no"].as_i64().unwrap())
        .expect("the planted missing invoice");
    let (code, rep, _) = drill(&sb, &lab, "2h ago");
    assert_eq!(code, 1, "the drill at 2h ago fails verification: {rep:#}");
    let seq = check_named(&rep, "invoice-numbers-without-gaps");
    assert_eq!(seq["status"], "fail", "{seq}");
    assert!(
        seq.to_string().contains(&missing.to_string()),
        "the failing check names invoice {missing}: {seq}"
    );

    // The backup store was only read, and nothing of either drill is left.
    assert_eq!(fingerprint(&store), before, "the backup store is unchanged");
    sb.assert_nothing_left();
}
