//! virtnbdbackup directories as an image source, against real virtnbdbackup 1.9.15 backups of
//! the demo estate's `prod-db`: a full backup and two incrementals taken under `faketime` hours
//! apart (their stream headers say so, in Europe/Zurich), a drill at a moment that picks the
//! middle incremental, the second drill at that point reusing the restore cache, the backup store
//! never written, and a chain with the middle incremental removed refused before anything is
//! created.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Every file under `dir` with its size, modification time and sha256.
fn fingerprint(dir: &Path) -> BTreeMap<PathBuf, (u64, i128, String)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let m = e.metadata().unwrap();
            if m.is_dir() {
                todo.push(e.path());
            } else {
                out.insert(
                    e.path(),
                    (
                        m.len(),
                        m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
                        sha256_file(&e.path()),
                    ),
                );
            }
        }
    }
    out
}

/// `virtnbdbackup -l LEVEL -z` (lz4-compressed, as many sites run it to save space; the real
/// estate's chains are uncompressed, so both kinds are drilled) of prod-db into `dir`, with the
/// clock of the backup host (and so the stream headers' dates) set `ago` back, in Europe/Zurich.
fn backup(sb: &Sandbox, dir: &Path, level: &str, ago: &str) {
    let out = sb.exec(&[
        "env",
        "TZ=Europe/Zurich",
        "faketime",
        ago,
        "virtnbdbackup",
        "-U",
        &sb.uri,
        "-d",
        "prod-db",
        "-l",
        level,
        "-z",
        "-o",
        dir.to_str().unwrap(),
    ]);
    check(&out, &format!("virtnbdbackup -l {level} ({ago})"));
}

/// The example lab with its database cloned from the backup directory `backups` (relative to
/// the estate directory), without the check that compares the image with the dump: the backups
/// were taken now with their dates set back, so the image holds invoices newer than the dump of
/// its (faked) time, which a real backup of that time would not.
fn lab_file(estate: &Estate, name: &str, backups: &str) -> PathBuf {
    let text = std::fs::read_to_string(repo().join("examples/erp.toml")).unwrap();
    let text = text
        .replace("name = \"erp\"", &format!("name = \"{name}\""))
        .replace(
            "from = { domain = \"prod-db\", snapshot = \"nightly\" }",
            &format!("from = {{ virtnbdbackup = \"{backups}\", zone = \"Europe/Zurich\" }}"),
        );
    assert!(
        text.contains("virtnbdbackup ="),
        "examples/erp.toml changed"
    );
    let at = text.find("[[check]]").unwrap();
    let checks: String = text[at..]
        .split("[[check]]")
        .filter(|c| !c.trim().is_empty() && !c.contains("kind = \"compare\""))
        .map(|c| format!("[[check]]{c}"))
        .collect();
    let p = estate.dir.join(format!("{name}.toml"));
    std::fs::write(&p, format!("{}{checks}", &text[..at])).unwrap();
    p
}

fn drill_in(sb: &Sandbox, cwd: &Path, lab: &str, at: &str) -> (i32, serde_json::Value, Output) {
    let out = sb.reclab_in(cwd, &["run", "--json", "--at", at, lab]);
    let rep = serde_json::from_str(&stdout(&out)).unwrap_or(serde_json::Value::Null);
    if let Some(run) = rep["run"].as_str() {
        sb.remember_run(run);
    }
    (out.status.code().unwrap_or(-1), rep, out)
}

fn cache_entries(sb: &Sandbox) -> Vec<String> {
    std::fs::read_dir(sb.state_dir.join("restore-cache"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != "leases" && n != "lock")
                .collect()
        })
        .unwrap_or_default()
}

#[test]
#[ignore = "end-to-end: needs root and a private libvirtd; scripts/test runs it"]
fn a_drill_restores_the_chosen_checkpoint_of_a_real_compressed_virtnbdbackup_chain() {
    if !need_program("virtnbdbackup", "apt-get install virtnbdbackup")
        || !need_program("faketime", "apt-get install faketime")
    {
        return;
    }
    let mut sb = Sandbox::start("vnbd");
    let estate = sb.create_estate(&[]);
    let store = estate.dir.join("backups/vnbd/prod-db");
    std::fs::create_dir_all(store.parent().unwrap()).unwrap();
    backup(&sb, &store, "full", "5 hours ago");
    backup(&sb, &store, "inc", "3 hours ago");
    backup(&sb, &store, "inc", "1 hour ago");
    // virtnbdbackup leaves persistent checkpoints on the domain; without them the estate can
    // be destroyed again (the backup directory keeps its own copies).
    for n in (0..3).rev() {
        check(
            &sb.exec(&[
                "virsh",
                "-c",
                &sb.uri,
                "checkpoint-delete",
                "prod-db",
                &format!("virtnbdbackup.{n}"),
                "--metadata",
            ]),
            "virsh checkpoint-delete --metadata",
        );
    }
    // The streams are lz4-compressed: their metadata header (the JSON at the start of each data
    // file) says so.
    for data in ["vda.full.data", "vda.inc.virtnbdbackup.1.data"] {
        let head = std::fs::read(store.join(data)).unwrap();
        let head = String::from_utf8_lossy(&head[..head.len().min(4096)]).replace(' ', "");
        assert!(
            // virtnbdbackup writes the lz4 level there (2 by default), `false` when uncompressed.
            head.contains("\"compressed\":")
                && !head.contains("\"compressed\":false")
                && !head.contains("\"compressed\":0,")
                && head.contains("\"compressionMethod\":\"lz4\""),
            "{data} is not lz4-compressed: {head:.400}"
        );
    }
    let before = fingerprint(&store);
    let lab = lab_file(&estate, "vnbd", "backups/vnbd/prod-db");

    // The points are the three checkpoints, dated by their headers (hours apart); "2h ago"
    // picks the middle one.
    let out = sb.reclab(&["points", "--json", "--at", "2h ago", lab.to_str().unwrap()]);
    check(&out, "reclab points");
    let points: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let images = points["vms"][0]["images"].as_array().unwrap().clone();
    let names: Vec<&str> = images.iter().map(|i| i["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["virtnbdbackup.0", "virtnbdbackup.1", "virtnbdbackup.2"],
        "{points}"
    );
    let times: Vec<jiff::Timestamp> = images
        .iter()
        .map(|i| i["time"].as_str().unwrap().parse().unwrap())
        .collect();
    for pair in times.windows(2) {
        let apart = pair[1].duration_since(pair[0]).as_secs();
        assert!(
            (2 * 3600 - 600..2 * 3600 + 600).contains(&apart),
            "the headers' dates are two hours apart: {times:?}"
        );
    }
    assert_eq!(
        points["at"]["choices"][0]["image"], "virtnbdbackup.1",
        "{points}"
    );

    // The drill: VERIFIED on the middle incremental, restored (a cache miss). The lab file is
    // given relative to the working directory (issue #12: that once needed an absolute path).
    let (code, rep, out) = drill_in(&sb, &estate.dir, "vnbd.toml", "2h ago");
    assert_eq!(code, 0, "first drill: {}\n{}", stderr(&out), stdout(&out));
    assert_eq!(rep["result"], "verified", "{rep}");
    let restores = rep["image_restores"].as_array().unwrap();
    assert_eq!(restores.len(), 1, "{rep}");
    assert_eq!(restores[0]["checkpoint"], "virtnbdbackup.1");
    assert_eq!(restores[0]["cache"], "miss");
    assert!(
        rep["restore_points"][0]["image"]["source"]
            .as_str()
            .unwrap()
            .contains("virtnbdbackup.1"),
        "{rep}"
    );
    assert!(
        stderr(&out).contains("restoring checkpoint virtnbdbackup.1"),
        "{}",
        stderr(&out)
    );
    sb.assert_nothing_left();
    let entries = cache_entries(&sb);
    assert_eq!(entries.len(), 1, "{entries:?}");

    // The second drill at the same point reuses the cache entry.
    let (code, rep, out) = drill_in(&sb, Path::new("/"), lab.to_str().unwrap(), "2h ago");
    assert_eq!(code, 0, "second drill: {}\n{}", stderr(&out), stdout(&out));
    assert_eq!(rep["image_restores"][0]["cache"], "hit", "{rep}");
    assert_eq!(rep["image_restores"][0]["entry"], restores[0]["entry"]);
    assert_eq!(cache_entries(&sb), entries);
    sb.assert_nothing_left();

    // The backup store was only read.
    assert_eq!(fingerprint(&store), before, "the backup store changed");

    // A chain without its middle incremental: refused before anything is created, naming the
    // file and the checkpoint.
    let broken = estate.dir.join("backups/vnbd/broken");
    check(
        &std::process::Command::new("cp")
            .args(["-a", store.to_str().unwrap(), broken.to_str().unwrap()])
            .output()
            .unwrap(),
        "cp -a",
    );
    std::fs::remove_file(broken.join("vda.inc.virtnbdbackup.1.data")).unwrap();
    let lab = lab_file(&estate, "vnbd-broken", "backups/vnbd/broken");
    let out = sb.reclab(&["up", lab.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("checkpoint virtnbdbackup.1 (2 of 3 in prod-db.cpt) has no data file vda.inc.virtnbdbackup.1.data"),
        "{err}"
    );
    assert!(
        err.contains("virtnbdbackup -l full into an empty directory"),
        "{err}"
    );
    let (code, rep, _) = drill_in(&sb, &estate.dir, "vnbd-broken.toml", "2h ago");
    assert_eq!(code, 2, "{rep}");
    assert!(
        rep["errors"][0]
            .as_str()
            .unwrap()
            .contains("vda.inc.virtnbdbackup.1.data"),
        "{rep}"
    );
    sb.assert_nothing_left();
    assert_eq!(
        cache_entries(&sb),
        entries,
        "the broken chain left a cache entry"
    );
}
