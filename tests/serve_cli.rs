//! `reclab serve` as a process, without libvirt: TLS with a certificate made by openssl, the
//! refusal of plain HTTP on a non-loopback address, clean exit on SIGTERM.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The server process, killed by PID if the test fails before stopping it.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn reclab(state: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_reclab"));
    cmd.arg("--state-dir").arg(state);
    cmd
}

#[test]
fn serve_speaks_tls_with_the_given_certificate_and_stops_on_sigterm() {
    let install = "Debian packages openssl and curl; scripts/setup installs them";
    if !common::need_program("openssl", install) || !common::need_program("curl", install) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (cert, key) = (tmp.path().join("cert.pem"), tmp.path().join("key.pem"));
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut child = reclab(tmp.path())
        .args(["serve", "--listen", "127.0.0.1:0", "--tls-cert"])
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut server = Server(child);
    let mut first = String::new();
    BufReader::new(stdout).read_line(&mut first).unwrap();
    let base = first
        .trim()
        .strip_prefix("reclab serve: listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_string();
    assert!(base.starts_with("https://127.0.0.1:"), "{base}");

    // The certificate verifies (curl trusts it as its CA) and the pages answer.
    let curl = |path: &str| {
        let out = Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "10",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
            ])
            .arg("--cacert")
            .arg(&cert)
            .arg(format!("{base}{path}"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(curl("/"), "200");
    assert_eq!(curl("/lab/0123abcd?token=guess"), "403");

    // A plain-HTTP client on the TLS port gets no page.
    let plain = Command::new("curl")
        .args(["-sS", "--max-time", "5"])
        .arg(base.replace("https://", "http://"))
        .output()
        .unwrap();
    assert!(!plain.status.success());
    // The server survives the failed handshake.
    assert_eq!(curl("/"), "200");

    unsafe {
        libc::kill(server.0.id() as i32, libc::SIGTERM);
    }
    let t = Instant::now();
    let status = loop {
        if let Some(st) = server.0.try_wait().unwrap() {
            break st;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "serve ignored SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status}");
}

#[test]
fn serve_refuses_plain_http_beyond_loopback() {
    let tmp = tempfile::tempdir().unwrap();
    let out = reclab(tmp.path())
        .args(["serve", "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("without tls"), "{err}");
}

#[test]
fn console_of_an_unknown_lab_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = reclab(tmp.path())
        .args(["console", "nosuchlab", "client"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no running lab \"nosuchlab\""), "{err}");
}
