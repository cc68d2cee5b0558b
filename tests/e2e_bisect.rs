//! `reclab bisect` on the small demo estate with `--defect corrupt-since=5h`: the newest good
//! restore point found with real drills of a lab of just the db VM, `--all` over a small
//! window, a non-monotonic dump set reported as a contradiction (with `--jobs 2`), and a bisect
//! requested over MQTT from `reclab listen`. One sandbox and one estate for all of it.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn text(o: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A lab of the db VM alone, restoring the dumps of `dumps` (relative to the estate), with
/// the gap and manifest checks.
fn db_lab(estate: &Estate, name: &str, dumps: &str) -> PathBuf {
    let p = estate.dir.join(format!("{name}.toml"));
    std::fs::write(
        &p,
        format!(
            r#"name = "{name}"
accel = "tcg"
ttl = "1h"
max_skew = "36h"
[segment.lan]
production = ["prod"]
[[vm]]
name = "db"
from = {{ domain = "prod-db", snapshot = "nightly" }}
ready = {{ timeout = "3m" }}
[vm.dumps]
dir = "{dumps}"
pattern = "erp-%Y%m%d-%H%M.sql"
manifest = "{{file}}.manifest.json"
sha256sums = "SHA256SUMS"
restore = ["sqlite3 /var/lib/erp/erp-new.db < {{dump}} && mv /var/lib/erp/erp-new.db /var/lib/erp/erp.db"]
[[check]]
name = "invoice-numbers-without-gaps"
vm = "db"
kind = "sequence"
command = "sqlite3 /var/lib/erp/erp.db 'select no from invoices order by no'"
[[check]]
name = "invoice-count-matches-the-dump-manifest"
vm = "db"
kind = "expect_from_manifest"
command = "sqlite3 /var/lib/erp/erp.db 'select count(*) from invoices'"
field = "rows.invoices"
"#
        ),
    )
    .unwrap();
    p
}

/// `reclab bisect --json ARGS LAB` → (exit code, result, output); every drill's run is
/// remembered for the leftover check.
fn bisect(sb: &Sandbox, lab: &Path, args: &[&str]) -> (i32, serde_json::Value, Output) {
    let t = Instant::now();
    let mut all = vec!["bisect", "--json"];
    all.extend_from_slice(args);
    all.push(lab.to_str().unwrap());
    let out = sb.reclab(&all);
    let rep: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    remember(sb, &rep);
    eprintln!(
        "bisect {args:?}: {} drills in {:.1}s",
        rep["drills"],
        t.elapsed().as_secs_f64()
    );
    (out.status.code().unwrap_or(-1), rep, out)
}

fn remember(sb: &Sandbox, rep: &serde_json::Value) {
    for p in rep["points"].as_array().into_iter().flatten() {
        if let Some(run) = p["drill"]["run"].as_str() {
            sb.remember_run(run);
        }
    }
}

/// The dump file a point restores.
fn dump_of(rep: &serde_json::Value, index: &serde_json::Value) -> String {
    let i = index.as_u64().unwrap_or_else(|| panic!("no point: {rep}")) as usize;
    rep["points"][i]["choices"][0]["dump"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A process started in the sandbox's namespace, killed (by its PID) when dropped.
struct Started(Child);

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn in_sandbox(sb: &Sandbox, args: &[&str]) -> Command {
    let mut cmd = Command::new(repo().join("scripts/sandbox"));
    cmd.args(["exec", &sb.name]).args(args);
    cmd
}

#[test]
#[ignore = "end-to-end: needs root and a private libvirtd; scripts/test runs it"]
fn bisect_finds_the_newest_good_dump_and_reports_contradictions() {
    let t0 = Instant::now();
    let mut sb = Sandbox::start("bisect");
    let estate = sb.create_estate(&["corrupt-since=5h"]);
    let defect = estate.json["defects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["kind"] == "corrupt-since")
        .expect("the corrupt-since defect in estate.json")
        .clone();
    let first_bad = defect["details"]["first_bad"].as_str().unwrap();
    let newest_good = defect["details"]["newest_good_before"].as_str().unwrap();
    let (low, high) = (
        defect["details"]["missing"][0].as_u64().unwrap(),
        defect["details"]["missing"][1].as_u64().unwrap(),
    );
    let lab = db_lab(&estate, "bis", "backups/dumps");

    // The whole window: 24 hourly points, the dump of 6 hours ago is the newest good one.
    let (code, rep, out) = bisect(&sb, &lab, &[]);
    assert_eq!(code, 0, "{}", text(&out));
    assert_eq!(rep["schema"], "reclab.bisect/1");
    assert_eq!(rep["points"].as_array().unwrap().len(), 24, "{rep}");
    assert_eq!(dump_of(&rep, &rep["newest_good"]), newest_good, "{rep}");
    assert_eq!(dump_of(&rep, &rep["first_bad"]), first_bad, "{rep}");
    let drills = rep["drills"].as_u64().unwrap();
    assert!(drills <= 6, "{drills} drills: {rep}");
    let drilled = rep["points"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| !p["drill"].is_null())
        .count() as u64;
    assert_eq!(drilled, drills);
    let missing = format!("missing {} numbers: {low}-{high}", high - low + 1);
    let wrong = rep["first_bad_wrong"].to_string();
    assert!(
        wrong.contains("invoice-numbers-without-gaps") && wrong.contains(&missing),
        "{wrong}"
    );
    assert!(rep["answer"].as_str().unwrap().contains(&missing), "{rep}");
    assert!(rep["contradictions"].as_array().unwrap().is_empty());
    // Each drill has its own report; the timeline links them.
    let dir = sb
        .state_dir
        .join("labs/bis/reports")
        .join(rep["id"].as_str().unwrap());
    let html = std::fs::read_to_string(dir.join("bisect.html")).unwrap();
    for p in rep["points"].as_array().unwrap() {
        if let Some(run) = p["drill"]["run"].as_str() {
            assert!(
                html.contains(&format!("href=\"../{run}/report.html\"")),
                "{run}"
            );
            assert!(
                sb.state_dir
                    .join("labs/bis/reports")
                    .join(run)
                    .join("report.html")
                    .is_file()
            );
        }
    }
    assert!(html.contains("untested"));
    let stored: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("bisect.json")).unwrap()).unwrap();
    assert_eq!(stored, rep);
    // The drills are in the lab's history.
    let history = std::fs::read_to_string(sb.state_dir.join("labs/bis/history.jsonl")).unwrap();
    assert_eq!(history.lines().count() as u64, drills);
    sb.assert_nothing_left();

    // --all over two points: the newest good and the first bad, both drilled.
    let (code, all, out) = bisect(&sb, &lab, &["--all", "--from", "6h ago", "--to", "5h ago"]);
    assert_eq!(code, 0, "{}", text(&out));
    let statuses: Vec<&str> = all["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["good", "bad"], "{all}");
    assert_eq!(dump_of(&all, &all["first_bad"]), first_bad);
    sb.assert_nothing_left();

    // Not monotonic: the block is missing from the dump of 5 hours ago through that of 3
    // hours ago only. Two drills at once split the 8 points of the window; the older fails,
    // the newer passes: reported, and the answer is the newer.
    let heal = estate.dir.join("backups/dumps-heal");
    let mut generate = Command::new(repo().join("scripts/gen-dumps"));
    generate
        .args(["--now", estate.json["now"].as_str().unwrap()])
        .args(["--seed", &estate.json["seed"].to_string()])
        .arg("--out")
        .arg(&heal)
        .args(["--defect", "corrupt-between=5h..3h"]);
    check(&generate.output().unwrap(), "gen-dumps corrupt-between");
    let heal_lab = db_lab(&estate, "bisheal", "backups/dumps-heal");
    let (code, c, out) = bisect(&sb, &heal_lab, &["--from", "7h ago", "--jobs", "2"]);
    assert_eq!(code, 0, "{}", text(&out));
    let contradictions = c["contradictions"].as_array().unwrap();
    assert_eq!(contradictions.len(), 1, "{c}");
    let older = dump_of(&c, &contradictions[0]["older_bad"]);
    let newer = dump_of(&c, &contradictions[0]["newer_good"]);
    assert!(older < newer, "{older} {newer}");
    assert!(
        contradictions[0]["message"]
            .as_str()
            .unwrap()
            .contains("not monotonic"),
        "{c}"
    );
    assert_eq!(dump_of(&c, &c["newest_good"]), newer);
    // Both drills of the first round ran at once.
    let rounds: Vec<u64> = c["points"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["drill"]["round"].as_u64())
        .collect();
    assert_eq!(rounds, [1, 1], "{c}");
    assert!(stdout_has(&out, "\"contradictions\""));
    sb.assert_nothing_left();

    // Over MQTT: `reclab listen` runs the bisect a request asks for and replies with it.
    if !need_program("mosquitto", "apt-get install mosquitto")
        || !need_program("mosquitto_pub", "apt-get install mosquitto-clients")
    {
        return;
    }
    let port = 18830u16;
    let conf = estate.dir.join("mosquitto.conf");
    let broker_log = estate.dir.join("mosquitto.log");
    std::fs::write(
        &conf,
        format!(
            "user root\npersistence false\nlistener {port} 127.0.0.1\nallow_anonymous true\n\
             log_dest file {}\nlog_type subscribe\n",
            broker_log.display()
        ),
    )
    .unwrap();
    let _broker = Started(
        in_sandbox(&sb, &["mosquitto", "-c", conf.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let url = format!("mqtt://127.0.0.1:{port}");
    let listener_log = estate.dir.join("listen.log");
    let _listener = Started(
        in_sandbox(
            &sb,
            &[
                "env",
                &format!("RECLAB_CONNECT={}", sb.uri),
                env!("CARGO_BIN_EXE_reclab"),
                "--state-dir",
                sb.state_dir.to_str().unwrap(),
                "listen",
                "--mqtt",
                &url,
                "--topic",
                "reclab/drill",
                "--labs-dir",
                estate.dir.to_str().unwrap(),
            ],
        )
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&listener_log).unwrap())
        .spawn()
        .unwrap(),
    );
    let request = r#"{"lab": "bis", "bisect": {"from": "2h ago", "to": "2h ago"}}"#;
    // The listener runs gc before it subscribes: give it time on a loaded machine. Only then
    // is the broker surely up for mosquitto_sub, which (unlike the listener) does not retry.
    let subscribed = |topic: &str| {
        std::fs::read_to_string(&broker_log)
            .unwrap_or_default()
            .lines()
            .any(|l| l.ends_with(topic))
    };
    let t_sub = Instant::now();
    while !subscribed(" $share/reclab/reclab/drill") && t_sub.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(200));
    }
    let port_s = port.to_string();
    let sub = in_sandbox(
        &sb,
        &[
            "mosquitto_sub",
            "-h",
            "127.0.0.1",
            "-p",
            &port_s,
            "-t",
            "reclab/drill/result",
            "-q",
            "1",
            "-C",
            "2",
            "-W",
            "240",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    while !subscribed(" reclab/drill/result") && t_sub.elapsed() < Duration::from_secs(150) {
        std::thread::sleep(Duration::from_millis(200));
    }
    wait_for(
        "the listener's and the subscriber's subscriptions",
        Duration::from_secs(1),
        || {
            // The listener joins the fleet's shared subscription ($share/GROUP/T).
            let ok =
                subscribed(" $share/reclab/reclab/drill") && subscribed(" reclab/drill/result");
            if !ok {
                eprintln!(
                    "broker log:\n{}\nlistener:\n{}",
                    std::fs::read_to_string(&broker_log).unwrap_or_default(),
                    std::fs::read_to_string(&listener_log).unwrap_or_default()
                );
            }
            ok.then_some(())
        },
    );
    check(
        &in_sandbox(
            &sb,
            &[
                "mosquitto_pub",
                "-h",
                "127.0.0.1",
                "-p",
                &port_s,
                "-t",
                "reclab/drill",
                "-q",
                "1",
                "-m",
                request,
            ],
        )
        .output()
        .unwrap(),
        "mosquitto_pub",
    );
    let replies = sub.wait_with_output().unwrap();
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&replies.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{}", text(&replies));
    assert_eq!(lines[0]["status"], "started", "{lines:?}");
    let reply = &lines[1];
    let b = &reply["bisect"];
    remember(&sb, b);
    // The one point of the window (the dump of 2 hours ago) lacks the block: none is good.
    assert_eq!(reply["exit_code"], 1, "{reply}");
    assert_eq!(b["schema"], "reclab.bisect/1", "{reply}");
    assert_eq!(b["points"].as_array().unwrap().len(), 1);
    assert!(b["newest_good"].is_null());
    assert!(
        b["first_bad_wrong"].to_string().contains(&missing),
        "{reply}"
    );
    drop(_listener);
    drop(_broker);
    sb.assert_nothing_left();
    eprintln!("e2e_bisect: {:.1}s in all", t0.elapsed().as_secs_f64());
}

fn stdout_has(o: &Output, needle: &str) -> bool {
    String::from_utf8_lossy(&o.stdout).contains(needle)
}
