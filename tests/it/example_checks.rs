//! The example lab's data checks (`examples/erp.toml`), run with this host's sqlite3 against
//! databases restored well and badly: none may pass when the restore produced nothing.
//!
//! The guest's `/var/lib/erp` is a temporary directory here; the restore commands and the
//! checks' commands are the example's, run by `sh -c` as the guest agent runs them, and judged
//! by reclab's own evaluation (a side that exits non-zero is not a pass, as in a drill).

use std::path::Path;
use std::process::Command;

use reclab::spec::{self, CheckKind, LabSpec};
use reclab::verify::Status;
use reclab::verify::eval::{
    eval_compare, eval_expect_from_manifest, eval_freshness, eval_sequence,
};

fn example() -> LabSpec {
    spec::load(Path::new("examples/erp.toml")).unwrap_or_else(|err| panic!("{err}"))
}

/// `script` with the guest's database directory moved to `dir`, run by `sh -c`.
fn sh(dir: &Path, script: &str) -> (bool, String) {
    let script = script.replace("/var/lib/erp", dir.to_str().unwrap());
    let out = Command::new("sh")
        .args(["-c", &script])
        .output()
        .expect("sh");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// SQL for an invoices table with invoices `numbers` (invoice N created at N:00).
fn invoices(numbers: std::ops::RangeInclusive<u32>) -> String {
    let mut sql =
        String::from("create table invoices (no integer, created_at text, amount integer);\n");
    for no in numbers {
        sql.push_str(&format!(
            "insert into invoices values ({no}, '2026-01-31 {no:02}:00:00', {});\n",
            no * 10
        ));
    }
    sql
}

/// The VM image's database from `image_sql`, then the example's restore commands with a dump
/// of `dump_sql`; returns each data check of vm db and whether it passed.
fn drill(image_sql: &str, dump_sql: &str) -> Vec<(String, Status)> {
    let lab = example();
    let db = lab.vm("db").unwrap();
    let dumps = db.dumps.as_ref().unwrap();
    let guest = tempfile::tempdir().unwrap();
    let dir = guest.path();
    let image = dir.join("erp.db");
    let made = Command::new("sqlite3")
        .arg(&image)
        .arg(image_sql)
        .output()
        .expect("sqlite3 (scripts/setup installs it)");
    assert!(made.status.success(), "{made:?}");
    let dump = dir.join("dump.sql");
    std::fs::write(&dump, dump_sql).unwrap();
    let restore_as = dumps.restore_as.as_deref().unwrap();
    for command in &dumps.restore {
        let command = command
            .replace("{as}", restore_as)
            .replace("{dump}", dump.to_str().unwrap());
        let (ok, _) = sh(dir, &command);
        assert!(ok, "restore command {command}");
    }
    let manifest = serde_json::json!({ "rows": { "invoices": 7 } });
    let restore_point: jiff::Timestamp = "2026-01-31T08:00:00Z".parse().unwrap();
    let mut outcomes = Vec::new();
    for check in lab.checks.iter().filter(|c| c.vm == "db") {
        let status = match &check.kind {
            CheckKind::Sequence { command } => match sh(dir, command) {
                (true, out) => eval_sequence(&out).status,
                (false, _) => Status::Error,
            },
            CheckKind::Freshness { command, max_age } => match sh(dir, command) {
                (true, out) => eval_freshness(&out, restore_point, *max_age).status,
                (false, _) => Status::Error,
            },
            CheckKind::ExpectFromManifest { command, field, .. } => match sh(dir, command) {
                (true, out) => eval_expect_from_manifest(&out, &manifest, field).status,
                (false, _) => Status::Error,
            },
            CheckKind::Compare { a, b } => match (sh(dir, &a.command), sh(dir, &b.command)) {
                ((true, a), (true, b)) => eval_compare(&a, &b, "a", "b").status,
                _ => Status::Error,
            },
            CheckKind::Heartbeat => continue,
            other => panic!("the example has a new db check {other:?}: add it here"),
        };
        outcomes.push((check.name.clone(), status));
    }
    assert_eq!(outcomes.len(), 4, "{outcomes:?}");
    outcomes
}

#[test]
fn the_example_checks_pass_on_a_good_restore() {
    for (name, status) in drill(&invoices(1..=5), &invoices(1..=7)) {
        assert_eq!(status, Status::Pass, "{name}");
    }
}

#[test]
fn no_example_check_passes_when_the_restore_produced_an_empty_database() {
    // A dump that restores to a database without tables.
    let nothing = "create table t (x); drop table t;";
    for (name, status) in drill(&invoices(1..=5), nothing) {
        assert_ne!(status, Status::Pass, "{name} passed on an empty database");
    }
}

#[test]
fn no_example_check_passes_on_empty_tables() {
    // The table without its rows.
    let empty = invoices(1..=1).lines().next().unwrap().to_string();
    for (name, status) in drill(&empty, &empty) {
        assert_ne!(status, Status::Pass, "{name} passed on empty tables");
    }
}

#[test]
fn the_image_check_fails_when_the_dump_changed_an_old_invoice() {
    let changed = invoices(1..=7).replace("values (3, ", "values (3000, ");
    let outcomes = drill(&invoices(1..=5), &changed);
    let agree = outcomes
        .iter()
        .find(|(n, _)| n == "image-and-dump-agree")
        .unwrap();
    assert_eq!(agree.1, Status::Fail, "{outcomes:?}");
}
