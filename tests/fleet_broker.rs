//! What the broker does with a fleet's requests: Debian 12's mosquitto (2.0.11) on 127.0.0.1,
//! MQTT 5 clients made here with rumqttc as `reclab listen` makes them (shared subscription,
//! receive maximum, manual acknowledgements, persistent session). These tests pin down the
//! broker behaviour docs/fleet.md describes and the listener relies on.

mod common;

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, Publish};
use rumqttc::v5::{Client, Connection, Event, MqttOptions};

fn have(program: &str, package: &str) -> bool {
    common::need_program(
        program,
        &format!("Debian package {package}; scripts/setup installs it"),
    )
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A mosquitto this test started; killed by its PID on drop.
struct Broker {
    child: Child,
    port: u16,
}

impl Broker {
    fn start(dir: &Path) -> Broker {
        let port = free_port();
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!("user root\npersistence false\nlog_dest stderr\nlistener {port} 127.0.0.1\nallow_anonymous true\n"),
        )
        .unwrap();
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting mosquitto");
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "mosquitto did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Broker { child, port }
    }

    fn publish(&self, topic: &str, message: &str) {
        let out = Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-t", topic, "-q", "1", "-m", message])
            .output()
            .unwrap();
        assert!(out.status.success(), "mosquitto_pub: {out:?}");
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A group member as `reclab listen` connects: persistent session, receive maximum 1,
/// manual acknowledgements, subscribed to `$share/g/t` at QoS 1.
struct Member {
    client: Client,
    connection: Connection,
    /// Requests that arrived while waiting for something else.
    early: Vec<Publish>,
}

impl Member {
    fn connect(port: u16, id: &str) -> Member {
        let mut o = MqttOptions::new(id, "127.0.0.1", port);
        o.set_clean_start(false);
        o.set_session_expiry_interval(Some(300));
        o.set_receive_maximum(Some(1));
        o.set_manual_acks(true);
        let (client, connection) = Client::new(o, 16);
        let mut m = Member {
            client,
            connection,
            early: vec![],
        };
        m.until("the subscription", |p| matches!(p, Packet::SubAck(_)), true);
        m
    }

    /// Polls until `f` matches an incoming packet (subscribing after the CONNACK if asked).
    fn until(&mut self, what: &str, f: impl Fn(&Packet) -> bool, subscribe: bool) -> Packet {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            assert!(Instant::now() < deadline, "no {what} within 10 s");
            if let Ok(Ok(Event::Incoming(p))) =
                self.connection.recv_timeout(Duration::from_millis(100))
            {
                if subscribe && matches!(p, Packet::ConnAck(_)) {
                    self.client
                        .subscribe("$share/g/t", QoS::AtLeastOnce)
                        .unwrap();
                }
                if f(&p) {
                    return p;
                }
                if let Packet::Publish(p) = p {
                    self.early.push(p);
                }
            }
        }
    }

    fn request(&mut self) -> Publish {
        if !self.early.is_empty() {
            return self.early.remove(0);
        }
        match self.until("request", |p| matches!(p, Packet::Publish(_)), false) {
            Packet::Publish(p) => p,
            _ => unreachable!(),
        }
    }

    /// Every request that arrives within `window` (acknowledging none).
    fn requests_within(&mut self, window: Duration) -> Vec<Publish> {
        let end = Instant::now() + window;
        let mut got = std::mem::take(&mut self.early);
        while Instant::now() < end {
            if let Ok(Ok(Event::Incoming(Packet::Publish(p)))) =
                self.connection.recv_timeout(Duration::from_millis(100))
            {
                got.push(p);
            }
        }
        got
    }
}

fn body(p: &Publish) -> String {
    String::from_utf8_lossy(&p.payload).into_owned()
}

#[test]
fn a_dead_members_unacknowledged_request_stays_in_its_session_and_comes_back_when_it_returns() {
    if !have("mosquitto", "mosquitto") || !have("mosquitto_pub", "mosquitto-clients") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    let mut a = Member::connect(broker.port, "exp-a");
    let mut b = Member::connect(broker.port, "exp-b");
    for n in 1..=4 {
        broker.publish("t", &format!("r{n}"));
    }
    // Round robin, one in flight each (receive maximum 1): a and b hold one request each.
    let (ra, rb) = (a.request(), b.request());
    eprintln!("a holds {} b holds {}", body(&ra), body(&rb));
    assert_ne!(body(&ra), body(&rb));
    // a dies without a DISCONNECT (as after SIGKILL).
    drop(a);
    // b finishes its request and each next one; what it gets within 3 s is what the broker
    // gives it, now and for requests published after a died.
    b.client.ack(&rb).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    broker.publish("t", "r5");
    broker.publish("t", "r6");
    let mut seen: Vec<String> = vec![];
    let end = Instant::now() + Duration::from_secs(3);
    while Instant::now() < end {
        for p in b.requests_within(Duration::from_millis(300)) {
            seen.push(body(&p));
            b.client.ack(&p).unwrap();
        }
    }
    eprintln!("b got after a died: {seen:?}");
    // OBSERVED (mosquitto 2.0.11): b never gets a's in-flight request (r1) nor the one
    // queued behind it in a's session (r3); and the round robin still counts the dead a's
    // session as a member, so of the two published after a died, b gets one (r6) and the
    // other (r5) waits in a's session.
    assert_eq!(seen, ["r4", "r6"], "b's share");
    // a comes back with the same client id and clean start off: its in-flight request is
    // redelivered (DUP set).
    let mut a = Member::connect(broker.port, "exp-a");
    let mut again = vec![];
    let end = Instant::now() + Duration::from_secs(3);
    while Instant::now() < end {
        for p in a.requests_within(Duration::from_millis(300)) {
            a.client.ack(&p).unwrap();
            again.push(p);
        }
    }
    let again_seen: Vec<(String, bool)> = again.iter().map(|p| (body(p), p.dup)).collect();
    eprintln!("a got on return: {again_seen:?}");
    assert_eq!(
        again_seen,
        [
            ("r1".to_string(), true),
            ("r3".to_string(), false),
            ("r5".to_string(), false)
        ],
        "a's session on return"
    );
}

/// A CA and a server certificate for 127.0.0.1 made with openssl: (ca.pem, server.pem, server.key).
fn make_ca(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let p = |f: &str| dir.join(f);
    let run = |args: &[&str]| {
        let out = Command::new("openssl").args(args).output().unwrap();
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
    };
    let s = |p: std::path::PathBuf| p.display().to_string();
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=fleet test CA",
        "-keyout",
        &s(p("ca.key")),
        "-out",
        &s(p("ca.pem")),
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        &s(p("server.key")),
        "-out",
        &s(p("server.csr")),
    ]);
    std::fs::write(
        p("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-days",
        "2",
        "-CAcreateserial",
        "-in",
        &s(p("server.csr")),
        "-CA",
        &s(p("ca.pem")),
        "-CAkey",
        &s(p("ca.key")),
        "-extfile",
        &s(p("ext.cnf")),
        "-out",
        &s(p("server.pem")),
    ]);
    (p("ca.pem"), p("server.pem"), p("server.key"))
}

/// A `reclab listen` process of host `host`, its drills the fake script; killed on drop.
struct Listener(Child);

impl Listener {
    fn start(dir: &Path, port: u16, host: &str) -> Listener {
        let child = Command::new(env!("CARGO_BIN_EXE_reclab"))
            .arg("--state-dir")
            .arg(dir.join(format!("state-{host}")))
            .args([
                "listen",
                "--mqtt",
                &format!("mqtts://127.0.0.1:{port}"),
                "--topic",
                "dr/run",
            ])
            .arg("--ca-file")
            .arg(dir.join("ca.pem"))
            .args(["--user", "lab"])
            .arg("--password-file")
            .arg(dir.join("password"))
            .arg("--labs-dir")
            .arg(dir.join("labs"))
            .args(["--host", host, "--parallel", "1"])
            .arg("--drill-program")
            .arg(dir.join("fake-reclab"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting reclab listen");
        Listener(child)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sub_args(port: u16, dir: &Path) -> Vec<String> {
    vec![
        "-h".into(),
        "127.0.0.1".into(),
        "-p".into(),
        port.to_string(),
        "--cafile".into(),
        dir.join("ca.pem").display().to_string(),
        "-u".into(),
        "lab".into(),
        "-P".into(),
        "s3cret pass".into(),
        "-q".into(),
        "1".into(),
    ]
}

/// Two lab hosts (two `reclab listen` processes, one slot each) on a mosquitto with TLS and a
/// password file: six requests all finish, both hosts run some, never two at once on one
/// host; a listener SIGKILLed in the middle of a drill gets that request back when it starts
/// again (after its gc) and runs it; `reclab fleet --json` shows both hosts; a wrong
/// password is refused with a message naming it.
#[test]
fn two_listeners_share_six_requests_over_tls_and_a_killed_one_runs_its_request_on_return() {
    if !have("mosquitto", "mosquitto")
        || !have("mosquitto_pub", "mosquitto-clients")
        || !have("mosquitto_passwd", "mosquitto")
        || !have("openssl", "openssl")
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ca, cert, key) = make_ca(d);
    let passwd = d.join("passwd");
    let out = Command::new("mosquitto_passwd")
        .args(["-c", "-b"])
        .arg(&passwd)
        .args(["lab", "s3cret pass"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    std::fs::write(d.join("password"), "s3cret pass\n").unwrap();
    let port = free_port();
    let conf = d.join("tls.conf");
    std::fs::write(
        &conf,
        format!(
            "user root\npersistence false\nlog_dest stderr\nlistener {port} 127.0.0.1\nallow_anonymous false\npassword_file {}\ncafile {}\ncertfile {}\nkeyfile {}\n",
            passwd.display(), ca.display(), cert.display(), key.display()
        ),
    )
    .unwrap();
    let child = Command::new("mosquitto")
        .arg("-c")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _broker = Broker { child, port };
    let deadline = Instant::now() + Duration::from_secs(15);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "mosquitto did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    let labs = d.join("labs");
    std::fs::create_dir_all(&labs).unwrap();
    for n in 1..=6 {
        std::fs::write(
            labs.join(format!("lab{n}.toml")),
            format!("name = \"lab{n}\"\n[[vm]]\nname = \"db\"\nfrom = {{ domain = \"prod-db\", snapshot = \"nightly\" }}\nmemory = \"64MiB\"\n"),
        )
        .unwrap();
    }
    // The fake drill logs start/end with its host; lab3 on its first run waits for a kill.
    let log = d.join("drills.log");
    let script = d.join("fake-reclab");
    std::fs::write(
        &script,
        format!(
            "#!/bin/bash\nset -eu\nif [[ $3 == gc ]]; then echo \"gc $RECLAB_HOST\" >> {log}; exit 0; fi\nlab=$(basename \"$4\" .toml)\necho \"start $lab $RECLAB_HOST $(date +%s.%N)\" >> {log}\nif [[ $lab == lab3 && ! -e {d}/lab3-once ]]; then touch {d}/lab3-once; exec sleep 60; fi\nsleep 1\necho \"end $lab $RECLAB_HOST $(date +%s.%N)\" >> {log}\n",
            log = log.display(),
            d = d.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();

    // A wrong password: the listener ends at once with the broker's reason.
    std::fs::write(d.join("wrong"), "nope\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_reclab"))
        .arg("--state-dir")
        .arg(d.join("state-x"))
        .args([
            "listen",
            "--mqtt",
            &format!("mqtts://127.0.0.1:{port}"),
            "--topic",
            "dr/run",
            "--host",
            "x",
        ])
        .arg("--ca-file")
        .arg(&ca)
        .args(["--user", "lab"])
        .arg("--password-file")
        .arg(d.join("wrong"))
        .arg("--labs-dir")
        .arg(&labs)
        .arg("--drill-program")
        .arg(&script)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refused the connection") && err.contains("--password-file"),
        "{err}"
    );

    let results = Command::new("mosquitto_sub")
        .args(sub_args(port, d))
        .args(["-t", "dr/run/result", "-C", "13", "-W", "120"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let a = Listener::start(d, port, "host-a");
    let _b = Listener::start(d, port, "host-b");
    // Both joined (each published its retained status) before any request goes out.
    let fleet = || -> serde_json::Value {
        let out = Command::new(env!("CARGO_BIN_EXE_reclab"))
            .args([
                "fleet",
                "--json",
                "--mqtt",
                &format!("mqtts://127.0.0.1:{port}"),
                "--topic",
                "dr/run",
            ])
            .arg("--ca-file")
            .arg(&ca)
            .args(["--user", "lab"])
            .arg("--password-file")
            .arg(d.join("password"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let f = fleet();
        if f.as_array()
            .unwrap()
            .iter()
            .filter(|s| s["online"] == true)
            .count()
            == 2
        {
            assert_eq!(f[0]["host"], "host-a");
            assert_eq!(f[1]["slots"], 1);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the fleet did not show two hosts: {f}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let mut pub_args = sub_args(port, d);
    pub_args.extend(["-t".into(), "dr/run".into()]);
    for n in 1..=6 {
        let out = Command::new("mosquitto_pub")
            .args(&pub_args)
            .args(["-m", &format!("{{\"lab\": \"lab{n}\"}}")])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    // lab3 hangs on its first run: kill the listener that runs it (and its drill) like a
    // host that dies, then start that host's listener again.
    let deadline = Instant::now() + Duration::from_secs(60);
    let host3 = loop {
        if let Some(l) = read_log().lines().find(|l| l.starts_with("start lab3 ")) {
            break l.split_whitespace().nth(2).unwrap().to_string();
        }
        assert!(
            Instant::now() < deadline,
            "lab3 did not start: {}",
            read_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let (mut a, _keep) = if host3 == "host-a" {
        (a, None)
    } else {
        (_b, Some(a))
    };
    let pid = a.0.id() as i32;
    // SAFETY: kill of a child this test started, by its PID.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let _ = a.0.wait();
    std::mem::forget(a);
    let _again = Listener::start(d, port, &host3);

    // 6 finished + 6 started + 1 started again (lab3) = 13.
    let out = results.wait_with_output().unwrap();
    let replies: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let finished: Vec<&serde_json::Value> = replies
        .iter()
        .filter(|r| r["status"] == "verified")
        .collect();
    let mut labs_done: Vec<&str> = finished
        .iter()
        .map(|r| r["lab"].as_str().unwrap())
        .collect();
    labs_done.sort();
    assert_eq!(
        labs_done,
        ["lab1", "lab2", "lab3", "lab4", "lab5", "lab6"],
        "{replies:#?}"
    );
    let log = read_log();
    // lab3 ran to its end on its host's return, after that host's gc.
    let gcs: Vec<usize> = log
        .lines()
        .enumerate()
        .filter(|(_, l)| *l == format!("gc {host3}"))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(gcs.len(), 2, "{log}");
    let end3 = log
        .lines()
        .position(|l| l.starts_with(&format!("end lab3 {host3}")))
        .expect("lab3 finished on its host");
    assert!(end3 > gcs[1], "{log}");
    // Both hosts ran drills, and never two at once on one host.
    for host in ["host-a", "host-b"] {
        let mut running = 0;
        let mut ran = 0;
        for l in log.lines() {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() >= 3 && f[2] == host {
                match f[0] {
                    "start" => {
                        // The killed lab3 never ended: its host's next start is after the kill.
                        if f[1] != "lab3" || running == 0 {
                            assert_eq!(running, 0, "two drills at once on {host}: {log}");
                        }
                        running = 1;
                        ran += 1;
                    }
                    "end" => running = 0,
                    _ => {}
                }
            }
            if l == format!("gc {host}") {
                running = 0;
            }
        }
        assert!(ran >= 1, "{host} ran nothing: {log}");
    }
    assert!(
        finished
            .iter()
            .all(|r| r["host"] == "host-a" || r["host"] == "host-b")
    );
}
