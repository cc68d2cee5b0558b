//! Operations against real servers the tests start on 127.0.0.1 and stop by PID: a mosquitto
//! broker (plain and TLS with a CA made by openssl here), an aiosmtpd SMTP server that
//! requires STARTTLS, and a Python HTTP receiver; plus systemd unit files checked with
//! `systemd-analyze verify`, and `reclab metrics` parsed back.
//!
//! A test whose program is missing skips with a message, except in CI and scripts/test, where
//! it fails (`common::need`; scripts/setup installs them all).

mod common;

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use reclab::ops::notify;
use reclab::report::{DrillResult, HISTORY_SCHEMA, Summary};
use reclab::spec::{EmailSpec, MqttSpec, NotifySpec, WebhookSpec};

const RECLAB: &str = env!("CARGO_BIN_EXE_reclab");
const PYTHON: &str = "/usr/bin/python3";

/// Whether `program` (a path or a name on PATH) is there; if not, skip or fail as documented.
fn have(program: &str, package: &str) -> bool {
    common::need_program(
        program,
        &format!("Debian package {package}; scripts/setup installs it"),
    )
}

fn have_aiosmtpd() -> bool {
    if !have(PYTHON, "python3") {
        return false;
    }
    let ok = Command::new(PYTHON)
        .args(["-c", "import aiosmtpd"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    common::need(
        ok,
        "python module aiosmtpd",
        "Debian package python3-aiosmtpd; scripts/setup installs it",
    )
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A server process this test started; killed (by its PID) and reaped on drop.
struct Server {
    child: Child,
    name: &'static str,
}

impl Server {
    /// Starts `cmd` and waits until 127.0.0.1:`port` accepts connections (at most 15 s).
    fn start(name: &'static str, mut cmd: Command, port: u16) -> Server {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        let mut server = Server { child, name };
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                let mut err = String::new();
                let _ = server.child.stderr.take().unwrap().read_to_string(&mut err);
                panic!("{name} exited ({status}) before listening: {err}");
            }
            assert!(
                Instant::now() < deadline,
                "{name} did not listen on {port} within 15 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        eprintln!("stopped {} (pid {})", self.name, self.child.id());
    }
}

fn sh(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a server certificate for 127.0.0.1, made with openssl: (ca.pem, server.pem, server.key).
fn make_ca(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let p = |f: &str| dir.join(f);
    sh(Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=reclab test CA"])
        .arg("-keyout")
        .arg(p("ca.key"))
        .arg("-out")
        .arg(p("ca.pem")));
    sh(Command::new("openssl")
        .args([
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
        ])
        .arg("-keyout")
        .arg(p("server.key"))
        .arg("-out")
        .arg(p("server.csr")));
    std::fs::write(
        p("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    sh(Command::new("openssl")
        .args(["x509", "-req", "-days", "2", "-CAcreateserial"])
        .arg("-in")
        .arg(p("server.csr"))
        .arg("-CA")
        .arg(p("ca.pem"))
        .arg("-CAkey")
        .arg(p("ca.key"))
        .arg("-extfile")
        .arg(p("ext.cnf"))
        .arg("-out")
        .arg(p("server.pem")));
    (p("ca.pem"), p("server.pem"), p("server.key"))
}

fn summary(lab: &str, result: DrillResult) -> Summary {
    Summary {
        schema: HISTORY_SCHEMA.into(),
        lab: lab.into(),
        run: "5f3a9c21".into(),
        started_at: Timestamp::now(),
        at: None,
        result,
        checks: 7,
        checks_failed: if result == DrillResult::Verified {
            0
        } else {
            3
        },
        recovery_time: (result == DrillResult::Verified).then(|| Duration::from_secs(412)),
        data_age: Some(SignedDuration::from_secs(3 * 3600)),
        report_dir: Some("/var/lib/reclab/labs/erp/reports/5f3a9c21".into()),
        answer: None,
    }
}

fn mosquitto(dir: &Path, tls: Option<(&Path, &Path, &Path)>) -> (Server, u16) {
    let port = free_port();
    let mut conf = format!(
        "user root\npersistence false\nlog_dest stderr\nlistener {port} 127.0.0.1\nallow_anonymous true\n"
    );
    if let Some((ca, cert, key)) = tls {
        conf.push_str(&format!(
            "cafile {}\ncertfile {}\nkeyfile {}\n",
            ca.display(),
            cert.display(),
            key.display()
        ));
    }
    let conf_path = dir.join(format!("mosquitto-{port}.conf"));
    std::fs::write(&conf_path, conf).unwrap();
    let mut cmd = Command::new("mosquitto");
    cmd.arg("-c").arg(&conf_path);
    (Server::start("mosquitto", cmd, port), port)
}

/// `mosquitto_sub` waiting for `count` messages on `topic` (at most `secs`); returns its child.
fn subscribe(port: u16, topic: &str, count: usize, secs: u64, ca: Option<&Path>) -> Child {
    let mut cmd = Command::new("mosquitto_sub");
    cmd.args([
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-t",
        topic,
        "-q",
        "1",
    ])
    .args(["-C", &count.to_string(), "-W", &secs.to_string()]);
    if let Some(ca) = ca {
        cmd.arg("--cafile").arg(ca);
    }
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting mosquitto_sub");
    // Give the subscription a moment to reach the broker before anything is published.
    std::thread::sleep(Duration::from_millis(400));
    child
}

fn messages(child: Child) -> Vec<serde_json::Value> {
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

fn mqtt_spec(port: u16, tls: bool, topic: &str, ca: Option<&Path>) -> MqttSpec {
    MqttSpec {
        url: format!("{}://127.0.0.1:{port}", if tls { "mqtts" } else { "mqtt" }),
        host: "127.0.0.1".into(),
        port,
        tls,
        topic: topic.into(),
        ca_file: ca.map(Path::to_path_buf),
        user: None,
        password_file: None,
    }
}

#[test]
fn mqtt_notification_arrives_at_a_real_broker_plain_and_over_tls() {
    if !have("mosquitto", "mosquitto")
        || !have("mosquitto_sub", "mosquitto-clients")
        || !have("openssl", "openssl")
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_ca(dir.path());
    for tls in [false, true] {
        let (_broker, port) = mosquitto(
            dir.path(),
            tls.then_some((ca.as_path(), cert.as_path(), key.as_path())),
        );
        let sub = subscribe(port, "dr/erp", 1, 15, tls.then_some(ca.as_path()));
        let s = summary("erp", DrillResult::Failed);
        let spec = NotifySpec {
            mqtt: Some(mqtt_spec(port, tls, "dr/erp", tls.then_some(ca.as_path()))),
            ..Default::default()
        };
        let outcomes = notify::send_all(&spec, &s);
        assert_eq!(outcomes.len(), 1);
        assert!(outcomes[0].ok, "tls={tls}: {}", outcomes[0].line());
        let got = messages(sub);
        assert_eq!(got.len(), 1, "tls={tls}: the subscriber got {got:?}");
        assert_eq!(got[0], serde_json::to_value(&s).unwrap());
    }
}

#[test]
fn mqtt_over_tls_refuses_a_broker_whose_certificate_it_does_not_trust() {
    if !have("mosquitto", "mosquitto") || !have("openssl", "openssl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_ca(dir.path());
    let other = tempfile::tempdir().unwrap();
    let (other_ca, _, _) = make_ca(other.path());
    let (_broker, port) = mosquitto(dir.path(), Some((&ca, &cert, &key)));
    let spec = NotifySpec {
        mqtt: Some(mqtt_spec(port, true, "dr/erp", Some(&other_ca))),
        ..Default::default()
    };
    let outcomes = notify::send_all(&spec, &summary("erp", DrillResult::Verified));
    assert!(!outcomes[0].ok);
    let error = outcomes[0].error.as_deref().unwrap();
    assert!(error.contains(&port.to_string()), "{error}");
}

#[test]
fn email_arrives_at_a_real_smtp_server_over_starttls() {
    if !have("openssl", "openssl") || !have_aiosmtpd() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_ca(dir.path());
    let port = free_port();
    let mailbox = dir.path().join("mailbox.jsonl");
    let mut cmd = Command::new(PYTHON);
    cmd.arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/servers/smtp_server.py"
    ))
    .arg(port.to_string())
    .args([&cert, &key, &mailbox]);
    let _smtp = Server::start("aiosmtpd", cmd, port);

    let s = summary("erp", DrillResult::Failed);
    let spec = NotifySpec {
        email: Some(EmailSpec {
            to: vec![
                "ops@example.com".into(),
                "Backup Team <backup@example.com>".into(),
            ],
            from: "reclab@example.com".into(),
            server: format!("smtp://127.0.0.1:{port}"),
            host: "127.0.0.1".into(),
            port,
            implicit_tls: false,
            starttls: true,
            user: None,
            password_file: None,
            ca_file: Some(ca.clone()),
        }),
        ..Default::default()
    };
    let outcomes = notify::send_all(&spec, &s);
    assert!(outcomes[0].ok, "{}", outcomes[0].line());

    let text = std::fs::read_to_string(&mailbox).unwrap();
    let mails: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(mails.len(), 1);
    let mail = &mails[0];
    assert_eq!(mail["tls"], true, "the message went over STARTTLS");
    assert_eq!(mail["from"], "reclab@example.com");
    assert_eq!(
        mail["to"],
        serde_json::json!(["ops@example.com", "backup@example.com"])
    );
    let data = mail["data"].as_str().unwrap();
    assert!(
        data.contains("Subject: reclab erp: FAILED (7 checks, 3 failed)"),
        "{data}"
    );
    assert!(data.contains("result          failed"), "{data}");
    assert!(data.contains("data age        3h"), "{data}");
    assert!(
        data.contains("/var/lib/reclab/labs/erp/reports/5f3a9c21"),
        "{data}"
    );
}

#[test]
fn email_without_starttls_is_refused_by_a_server_that_requires_it() {
    if !have("openssl", "openssl") || !have_aiosmtpd() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_, cert, key) = make_ca(dir.path());
    let port = free_port();
    let mailbox = dir.path().join("mailbox.jsonl");
    let mut cmd = Command::new(PYTHON);
    cmd.arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/servers/smtp_server.py"
    ))
    .arg(port.to_string())
    .args([&cert, &key, &mailbox]);
    let _smtp = Server::start("aiosmtpd", cmd, port);
    let spec = NotifySpec {
        email: Some(EmailSpec {
            to: vec!["ops@example.com".into()],
            from: "reclab@example.com".into(),
            server: format!("smtp://127.0.0.1:{port}"),
            host: "127.0.0.1".into(),
            port,
            implicit_tls: false,
            starttls: false,
            user: None,
            password_file: None,
            ca_file: None,
        }),
        ..Default::default()
    };
    let outcomes = notify::send_all(&spec, &summary("erp", DrillResult::Verified));
    assert!(
        !outcomes[0].ok,
        "a server requiring STARTTLS must refuse plain text"
    );
    assert!(!mailbox.exists(), "nothing was delivered");
}

#[test]
fn webhook_posts_the_summary_to_a_real_http_receiver() {
    if !have(PYTHON, "python3") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let posts = dir.path().join("posts.jsonl");
    let mut cmd = Command::new(PYTHON);
    cmd.arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/servers/http_receiver.py"
    ))
    .arg(port.to_string())
    .arg(&posts);
    let _http = Server::start("http receiver", cmd, port);

    let s = summary("erp", DrillResult::Verified);
    let spec = NotifySpec {
        webhook: Some(WebhookSpec {
            url: format!("http://127.0.0.1:{port}/hooks/reclab"),
            headers: [("Authorization".to_string(), "Bearer t0ken".to_string())].into(),
        }),
        ..Default::default()
    };
    let outcomes = notify::send_all(&spec, &s);
    assert!(outcomes[0].ok, "{}", outcomes[0].line());
    let text = std::fs::read_to_string(&posts).unwrap();
    let post: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(post["path"], "/hooks/reclab");
    assert_eq!(post["headers"]["authorization"], "Bearer t0ken");
    assert_eq!(post["headers"]["content-type"], "application/json");
    let body: serde_json::Value = serde_json::from_str(post["body"].as_str().unwrap()).unwrap();
    assert_eq!(body, serde_json::to_value(&s).unwrap());
}

#[test]
fn a_webhook_that_answers_an_error_status_is_a_failed_notification() {
    if !have(PYTHON, "python3") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut cmd = Command::new(PYTHON);
    cmd.arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/servers/http_receiver.py"
    ))
    .arg(port.to_string())
    .arg(dir.path().join("posts.jsonl"))
    .arg("503");
    let _http = Server::start("http receiver", cmd, port);
    let spec = NotifySpec {
        webhook: Some(WebhookSpec {
            url: format!("http://127.0.0.1:{port}/"),
            headers: Default::default(),
        }),
        ..Default::default()
    };
    let outcomes = notify::send_all(&spec, &summary("erp", DrillResult::Verified));
    assert!(!outcomes[0].ok);
    assert!(outcomes[0].error.as_deref().unwrap().contains("503"));
}

#[test]
fn unreachable_servers_are_reported_and_the_drill_summary_is_untouched() {
    // Nothing listens on these ports: every channel must fail quickly and say so.
    let (smtp, http, mqtt) = (free_port(), free_port(), free_port());
    let spec = NotifySpec {
        email: Some(EmailSpec {
            to: vec!["ops@example.com".into()],
            from: "reclab@example.com".into(),
            server: format!("smtp://127.0.0.1:{smtp}"),
            host: "127.0.0.1".into(),
            port: smtp,
            implicit_tls: false,
            starttls: true,
            user: None,
            password_file: None,
            ca_file: None,
        }),
        webhook: Some(WebhookSpec {
            url: format!("http://127.0.0.1:{http}/"),
            headers: Default::default(),
        }),
        mqtt: Some(mqtt_spec(mqtt, false, "dr/erp", None)),
    };
    let s = summary("erp", DrillResult::Verified);
    let before = s.clone();
    let t0 = Instant::now();
    let outcomes = notify::send_all(&spec, &s);
    assert!(
        t0.elapsed() < notify::TIMEOUT,
        "refused connections fail fast"
    );
    assert_eq!(s, before, "notifying never changes the drill's result");
    let channels: Vec<&str> = outcomes.iter().map(|o| o.channel.as_str()).collect();
    assert_eq!(channels, ["email", "webhook", "mqtt"]);
    for o in &outcomes {
        assert!(!o.ok, "{}", o.line());
        let line = o.line();
        assert!(line.contains("FAILED"), "{line}");
    }
    assert!(
        outcomes[0]
            .error
            .as_deref()
            .unwrap()
            .contains(&smtp.to_string())
    );
    assert!(
        outcomes[2]
            .error
            .as_deref()
            .unwrap()
            .contains(&mqtt.to_string())
    );
}

#[test]
fn scheduled_drill_units_pass_systemd_analyze_verify() {
    if !have("systemd-analyze", "systemd") {
        return;
    }
    let units = tempfile::tempdir().unwrap();
    let lab = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/erp.toml");
    let reclab = |args: &[&str]| {
        Command::new(RECLAB)
            .args(args)
            .arg("--unit-dir")
            .arg(units.path())
            .output()
            .unwrap()
    };
    let out = reclab(&[
        "schedule",
        "install",
        lab,
        "--on",
        "Sun 03:00",
        "--at",
        "2h ago",
        "--name",
        "erp-weekly",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = reclab(&["schedule", "install", lab, "--on", "daily 02:30"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let service = units.path().join("reclab-drill-erp-weekly.service");
    let timer = units.path().join("reclab-drill-erp-weekly.timer");
    let service_text = std::fs::read_to_string(&service).unwrap();
    let timer_text = std::fs::read_to_string(&timer).unwrap();
    assert!(
        service_text.contains(&format!("ExecStart={RECLAB} run {lab} --at \"2h ago\"\n")),
        "{service_text}"
    );
    assert!(service_text.contains("Type=oneshot\n"));
    assert!(service_text.contains("StandardOutput=journal\n"));
    assert!(
        timer_text.contains("OnCalendar=Sun *-*-* 03:00:00\n"),
        "{timer_text}"
    );
    assert!(timer_text.contains("Persistent=true\n"));
    assert!(timer_text.contains("RandomizedDelaySec=15m\n"));
    let daily = std::fs::read_to_string(units.path().join("reclab-drill-erp.timer")).unwrap();
    assert!(daily.contains("OnCalendar=*-*-* 02:30:00\n"), "{daily}");

    // systemd's own checker: unknown keys, bad values and a missing ExecStart binary fail it.
    let mut all: Vec<PathBuf> = std::fs::read_dir(units.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    all.sort();
    assert_eq!(all.len(), 4);
    let verify = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&all)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&verify.stderr);
    assert!(
        verify.status.success() && said.trim().is_empty(),
        "systemd-analyze verify: {said}"
    );

    let list = reclab(&["schedule", "list", "--json"]);
    let listed: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["erp", "erp-weekly"]);

    let removed = reclab(&["schedule", "remove", "erp-weekly"]);
    assert!(removed.status.success());
    assert!(!service.exists() && !timer.exists());
}

#[test]
fn bad_schedules_are_refused_with_exit_code_2_and_nothing_written() {
    if !have("systemd-analyze", "systemd") {
        return;
    }
    let units = tempfile::tempdir().unwrap();
    let lab = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/erp.toml");
    for (args, why) in [
        (
            vec!["install", lab, "--on", "Sunday 25:00"],
            "bad schedule --on \"Sunday 25:00\"",
        ),
        (
            vec!["install", lab, "--on", "every full moon"],
            "systemd-analyze calendar says",
        ),
        (
            vec!["install", lab, "--on", "daily", "--name", "Bad Name"],
            "cannot name a schedule",
        ),
        (
            vec!["install", "/nonexistent/lab.toml", "--on", "daily"],
            "cannot read the lab file",
        ),
        (vec!["remove", "nope"], "no schedule \"nope\""),
    ] {
        let out = Command::new(RECLAB)
            .arg("schedule")
            .args(&args)
            .arg("--unit-dir")
            .arg(units.path())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(why), "{args:?}: {err}");
    }
    assert_eq!(std::fs::read_dir(units.path()).unwrap().count(), 0);
}

#[test]
fn metrics_command_writes_every_labs_latest_drill() {
    let state = tempfile::tempdir().unwrap();
    let mut old = summary("erp", DrillResult::Failed);
    old.started_at = "2026-11-01T03:00:00Z".parse().unwrap();
    let mut new = summary("erp", DrillResult::Verified);
    new.started_at = "2026-11-08T03:00:00Z".parse().unwrap();
    let crm = summary("crm", DrillResult::Error);
    for s in [&old, &new, &crm] {
        reclab::report::append_history(&reclab::report::history_path(state.path(), &s.lab), s)
            .unwrap();
    }
    let file = state.path().join("textfile/reclab.prom");
    let out = Command::new(RECLAB)
        .arg("--state-dir")
        .arg(state.path())
        .args(["metrics", "--metrics-file"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let samples = reclab::ops::metrics::parse(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let get = |m: &str, lab: &str| {
        samples
            .iter()
            .find(|s| s.metric == m && s.lab == lab)
            .map(|s| s.value)
    };
    assert_eq!(
        get("reclab_last_run_timestamp_seconds", "erp"),
        Some(new.started_at.as_second() as f64)
    );
    assert_eq!(get("reclab_last_run_success", "erp"), Some(1.0));
    assert_eq!(get("reclab_recovery_time_seconds", "erp"), Some(412.0));
    assert_eq!(get("reclab_data_age_seconds", "erp"), Some(10800.0));
    assert_eq!(get("reclab_last_run_success", "crm"), Some(0.0));
    assert_eq!(get("reclab_checks_failed", "crm"), Some(3.0));
}

/// A lab directory with two lab files, and a fake `reclab run` that logs when each drill
/// starts and ends, sleeps, and exits 0 (or 1 for labs named `crm`).
fn listen_fixture(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let labs = dir.join("labs");
    std::fs::create_dir_all(&labs).unwrap();
    // erp takes production's memory (unknown: admitted); crm is sized; huge fits no host.
    for (name, memory) in [
        ("erp", ""),
        ("crm", "memory = \"64MiB\"\nvcpus = 1\n"),
        ("huge", "memory = \"16TiB\"\n"),
    ] {
        std::fs::write(
            labs.join(format!("{name}.toml")),
            format!("name = \"{name}\"\n\n[[vm]]\nname = \"db\"\nfrom = {{ domain = \"prod-db\", snapshot = \"nightly\" }}\n{memory}"),
        )
        .unwrap();
    }
    let log = dir.join("drills.log");
    let script = dir.join("fake-reclab-run");
    std::fs::write(
        &script,
        format!(
            "#!/bin/bash\nset -euo pipefail\n# Fake `reclab [--state-dir S] run LAB [--at AT]` (and `gc`) for the listen tests.\nif [[ $3 == gc ]]; then echo \"gc $(date +%s.%N)\" >> {log}; exit 0; fi\nwhile [[ $1 != run ]]; do shift; done\nlab=$(basename \"$2\" .toml)\necho \"start $lab $(date +%s.%N) $*\" >> {log}\nsleep ${{FAKE_DRILL_SECONDS:-1}}\necho \"end $lab $(date +%s.%N)\" >> {log}\necho \"drill of $lab done\"\n[[ $lab != crm ]]\n",
            log = log.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    (labs, script, log)
}

fn publish(port: u16, topic: &str, message: &str) {
    sh(Command::new("mosquitto_pub").args([
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-t",
        topic,
        "-q",
        "1",
        "-m",
        message,
    ]));
}

/// Runs the listener in this process, its drills being `script`, and waits until it answers
/// requests (a probe for a lab that does not exist gets its rejection). It runs until the test
/// process ends; its broker going away only makes it retry.
fn start_listener(dir: &Path, port: u16, labs: &Path, script: &Path, parallel: usize) {
    let opts = reclab::ops::listen::ListenOpts {
        mqtt: mqtt_spec(port, false, "dr/run", None),
        labs_dir: labs.to_path_buf(),
        state_dir: dir.join("state"),
        parallel,
        reclab: script.to_path_buf(),
        host: "test-host".into(),
        group: reclab::ops::listen::DEFAULT_GROUP.into(),
        reserve: reclab::ops::fleet::DEFAULT_RESERVE,
        session_expiry: 300,
    };
    let listener = std::thread::spawn(move || reclab::ops::listen::run(&opts));
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        assert!(
            !listener.is_finished(),
            "listen ended: {:?}",
            listener.join()
        );
        assert!(
            Instant::now() < deadline,
            "listen did not answer within 15 s"
        );
        let probe = subscribe(port, "dr/run/result", 1, 2, None);
        publish(port, "dr/run", r#"{"lab": "readiness-probe"}"#);
        if let [reply] = messages(probe).as_slice() {
            assert_eq!(reply["status"], "rejected", "{reply}");
            assert_eq!(reply["lab"], "readiness-probe", "{reply}");
            return;
        }
    }
}

#[test]
fn listen_runs_requested_drills_one_per_lab_and_publishes_results() {
    if !have("mosquitto", "mosquitto") || !have("mosquitto_pub", "mosquitto-clients") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (labs, script, log) = listen_fixture(dir.path());
    let (_broker, port) = mosquitto(dir.path(), None);
    start_listener(dir.path(), port, &labs, &script, 2);
    // Three started + three finished + two rejected.
    let sub = subscribe(port, "dr/run/result", 8, 30, None);
    publish(port, "dr/run", r#"{"lab": "erp", "at": "2h ago"}"#);
    publish(port, "dr/run", r#"{"lab": "erp"}"#);
    publish(port, "dr/run", r#"{"lab": "crm.toml"}"#);
    publish(port, "dr/run", r#"{"lab": "../../etc/passwd"}"#);
    publish(port, "dr/run", "not json");
    let replies = messages(sub);
    let count = |status: &str| replies.iter().filter(|r| r["status"] == status).count();
    assert_eq!(count("started"), 3, "{replies:#?}");
    assert!(
        replies.iter().all(|r| r["host"] == "test-host"),
        "{replies:#?}"
    );
    assert_eq!(count("verified"), 2, "{replies:#?}");
    assert_eq!(count("failed"), 1, "{replies:#?}");
    assert_eq!(count("rejected"), 2, "{replies:#?}");
    let first = replies
        .iter()
        .find(|r| r["status"] == "verified" && r["at"] == "2h ago")
        .expect("the --at request ran");
    assert_eq!(first["exit_code"], 0);
    assert!(
        first["output_tail"]
            .as_str()
            .unwrap()
            .contains("drill of erp done")
    );
    let crm = replies.iter().find(|r| r["status"] == "failed").unwrap();
    assert_eq!(crm["lab"], "crm");
    assert_eq!(crm["exit_code"], 1);
    assert!(
        replies.iter().any(|r| r["status"] == "rejected"
            && r["reason"].as_str().unwrap().contains("not a request"))
    );

    // The drill command got the lab file and --at; two erp drills never overlapped.
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(
        log.contains(&format!(
            "run {} --at 2h ago",
            labs.join("erp.toml").canonicalize().unwrap().display()
        )),
        "{log}"
    );
    let times = |kind: &str| -> Vec<f64> {
        log.lines()
            .filter(|l| l.starts_with(&format!("{kind} erp ")))
            .map(|l| l.split_whitespace().nth(2).unwrap().parse().unwrap())
            .collect()
    };
    let (starts, ends) = (times("start"), times("end"));
    assert_eq!(starts.len(), 2);
    assert!(
        starts[1] >= ends[0],
        "the second erp drill started before the first ended: {log}"
    );
    // crm ran alongside erp (two workers, different labs).
    assert!(log.lines().any(|l| l.starts_with("start crm")));
}

#[test]
fn listen_takes_no_more_than_its_slots_and_rejects_a_lab_that_fits_no_host() {
    if !have("mosquitto", "mosquitto") || !have("mosquitto_pub", "mosquitto-clients") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (labs, script, log) = listen_fixture(dir.path());
    let (_broker, port) = mosquitto(dir.path(), None);
    start_listener(dir.path(), port, &labs, &script, 1);
    // gc ran before the listener took work.
    assert!(std::fs::read_to_string(&log).unwrap().starts_with("gc "));
    // Three drills and a rejection: 3 started + 3 finished + 1 rejected.
    let sub = subscribe(port, "dr/run/result", 7, 30, None);
    publish(port, "dr/run", r#"{"lab": "erp"}"#);
    publish(port, "dr/run", r#"{"lab": "crm"}"#);
    publish(port, "dr/run", r#"{"lab": "huge"}"#);
    publish(port, "dr/run", r#"{"lab": "crm"}"#);
    let replies = messages(sub);
    let count = |status: &str| replies.iter().filter(|r| r["status"] == status).count();
    assert_eq!(count("started"), 3, "{replies:#?}");
    assert_eq!(count("verified") + count("failed"), 3, "{replies:#?}");
    let huge = replies
        .iter()
        .find(|r| r["status"] == "rejected")
        .expect("huge rejected");
    assert_eq!(huge["lab"], "huge");
    let why = huge["reason"].as_str().unwrap();
    assert!(
        why.contains("needs 16384 GiB") && why.contains("fits no host"),
        "{why}"
    );
    // One slot: the broker held the others back, so no two drills overlapped.
    let log = std::fs::read_to_string(&log).unwrap();
    let mut last_end = 0.0f64;
    let mut ran = 0;
    for l in log.lines().filter(|l| !l.starts_with("gc ")) {
        let t: f64 = l.split_whitespace().nth(2).unwrap().parse().unwrap();
        if l.starts_with("start ") {
            assert!(
                t >= last_end,
                "a drill started before the previous ended: {log}"
            );
            ran += 1;
        } else {
            last_end = t;
        }
    }
    assert_eq!(ran, 3, "{log}");
}

/// A run directory with a `run.json` of lab `erp` that expires at `expires`.
fn fake_run(state: &Path, expires: Timestamp) -> reclab::lab::journal::RunDir {
    use reclab::lab::journal::RunDir;
    use reclab::lab::record::{RunRecord, RunState, VmRecord};
    let run = reclab::base::names::RunId::new();
    let dir = RunDir::new(state, &run);
    dir.create().unwrap();
    dir.save_record(&RunRecord {
        schema: 1,
        lab: "erp".into(),
        run_id: run.clone(),
        lab_file: "/labs/erp.toml".into(),
        uri: "test:///nowhere".into(),
        created: Timestamp::now().to_string(),
        expires: expires.to_string(),
        state: RunState::Up,
        owner: Default::default(),
        owner_pid: std::process::id(),
        owner_start: 0,
        vms: vec![VmRecord {
            name: "db".into(),
            domain: format!("reclab-{}-db", run.short()),
            tier: 0,
            macs: vec![],
            addresses: vec![],
            serial_log: "/dev/null".into(),
            console_password: "x".into(),
        }],
        networks: vec![],
        segments: vec![],
        fingerprints: vec![],
        changes: vec![],
        injections: vec![],
        at: None,
        at_time: None,
        restores: Vec::new(),
        publish: Vec::new(),
    })
    .unwrap();
    dir
}

#[test]
fn extend_moves_the_expiry_in_run_json_and_reports_metadata_it_could_not_update() {
    let state = tempfile::tempdir().unwrap();
    let now = Timestamp::now();
    let expires = now + SignedDuration::from_secs(600);
    let dir = fake_run(state.path(), expires);
    let open = |_: &str| -> anyhow::Result<Box<dyn reclab::hv::Hypervisor>> {
        Ok(Box::new(reclab::hv::fake::FakeHv::new()))
    };
    let done =
        reclab::ops::expiry::extend(state.path(), "erp", Duration::from_secs(7200), now, &open)
            .unwrap();
    let want = expires + SignedDuration::from_secs(7200);
    assert_eq!(done.new_expires, want.to_string());
    assert_eq!(done.old_expires, expires.to_string());
    let rec = dir.load_record().unwrap().unwrap();
    assert_eq!(
        rec.expires.parse::<Timestamp>().unwrap(),
        want,
        "run.json is authoritative"
    );
    // The fake hypervisor has no such domain: reported, not fatal.
    assert_eq!(done.metadata_failed.len(), 1, "{done:?}");
    assert!(done.metadata_updated.is_empty());
}

#[test]
fn extend_takes_the_run_lock_and_leaves_a_run_another_process_holds_alone() {
    let state = tempfile::tempdir().unwrap();
    let now = Timestamp::now();
    let dir = fake_run(state.path(), now + SignedDuration::from_secs(600));
    let before = std::fs::read_to_string(dir.record_path()).unwrap();
    let open = |_: &str| -> anyhow::Result<Box<dyn reclab::hv::Hypervisor>> {
        Ok(Box::new(reclab::hv::fake::FakeHv::new()))
    };
    // A `down`, `gc` or `reclab run` of this run holds its lock.
    let held = reclab::lab::lock::RunLock::acquire(&dir).unwrap().unwrap();
    let err =
        reclab::ops::expiry::extend(state.path(), "erp", Duration::from_secs(7200), now, &open)
            .unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("is busy") && msg.contains("holds its lock"),
        "{msg}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.record_path()).unwrap(),
        before,
        "run.json untouched while another process holds the run"
    );
    // The same through the command: exit code 2.
    let out = Command::new(RECLAB)
        .arg("--state-dir")
        .arg(state.path())
        .args(["extend", "erp", "2h"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(held);
    reclab::ops::expiry::extend(state.path(), "erp", Duration::from_secs(7200), now, &open)
        .expect("free once the holder let go");
    assert_ne!(std::fs::read_to_string(dir.record_path()).unwrap(), before);
}

#[test]
fn extending_an_expired_or_unknown_lab_fails_with_exit_code_2() {
    let state = tempfile::tempdir().unwrap();
    let dir = fake_run(
        state.path(),
        Timestamp::now() - SignedDuration::from_secs(60),
    );
    let before = std::fs::read_to_string(dir.record_path()).unwrap();
    for (args, why) in [
        (["extend", "erp", "2h"], "expired at"),
        (["extend", "crm", "2h"], "no running lab \"crm\""),
        (["extend", "erp", "two hours"], "write it like"),
    ] {
        let out = Command::new(RECLAB)
            .arg("--state-dir")
            .arg(state.path())
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(why), "{args:?}: {err}");
    }
    assert_eq!(
        std::fs::read_to_string(dir.record_path()).unwrap(),
        before,
        "nothing changed"
    );
}
