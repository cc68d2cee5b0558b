//! Consoles for people against a real lab: the serial console, the VNC proxy (checked with a
//! small RFB client doing real VNC authentication), and `reclab serve` in a real headless
//! Chromium (noVNC shows the client VM's screen, a sign-off is recorded, wrong and expired
//! tokens are refused, keys typed into db's console run a query whose answer OCR reads off the
//! screen). Every console ends when the lab expires.
//!
//! reclab runs here in the host's root network namespace, not in the sandbox's: libvirt hands
//! over the console streams and graphics sockets through its UNIX socket, so consoles work
//! although the lab's VNC servers listen on 127.0.0.1 inside the sandbox.

mod common;

use common::browser::{
    BrowserConsole, Children, Serve, browser_tools, lines_of, next_line_with, node, reclab_host,
};
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{ChildStdout, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use reclab::lab::journal::RunDir;

/// Raw bytes of a child's stdout, through a channel.
fn bytes_of(mut out: ChildStdout) -> Receiver<Vec<u8>> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    rx
}

// ---------------------------------------------------------------------------------------------
// A minimal RFB (VNC) client: version 3.8, VNC authentication, raw framebuffer update.

fn read_exact(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    s.read_exact(&mut b).expect("rfb read");
    b
}

fn be16(b: &[u8]) -> usize {
    u16::from_be_bytes([b[0], b[1]]) as usize
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// VNC authentication's response: the challenge DES-encrypted with the password (at most 8
/// bytes, zero padded) as key, each key byte's bits reversed (RFC 6143, 7.2.2).
fn vnc_response(password: &str, challenge: &[u8]) -> Vec<u8> {
    use des::cipher::{BlockCipherEncrypt, KeyInit};
    let mut key = [0u8; 8];
    for (k, p) in key.iter_mut().zip(password.bytes()) {
        *k = p.reverse_bits();
    }
    let cipher = des::Des::new_from_slice(&key).unwrap();
    let mut out = Vec::new();
    for chunk in challenge.chunks(8) {
        let mut block = des::cipher::Block::<des::Des>::try_from(chunk).unwrap();
        cipher.encrypt_block(&mut block);
        out.extend_from_slice(&block);
    }
    out
}

/// Connect, authenticate with `password`; `Err(reason)` when the server refuses.
fn rfb_login(port: u16, password: &str) -> Result<TcpStream, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the vnc proxy");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let banner = read_exact(&mut s, 12);
    assert_eq!(&banner, b"RFB 003.008\n", "server banner");
    s.write_all(b"RFB 003.008\n").unwrap();
    let n = read_exact(&mut s, 1)[0] as usize;
    assert!(n > 0, "the server offered no security type");
    let types = read_exact(&mut s, n);
    assert!(
        types.contains(&2),
        "a lab console must ask for the password (VNC authentication), offered {types:?}"
    );
    s.write_all(&[2]).unwrap();
    let challenge = read_exact(&mut s, 16);
    s.write_all(&vnc_response(password, &challenge)).unwrap();
    let result = be32(&read_exact(&mut s, 4));
    if result != 0 {
        let len = be32(&read_exact(&mut s, 4)) as usize;
        return Err(String::from_utf8_lossy(&read_exact(&mut s, len)).into_owned());
    }
    Ok(s)
}

/// After login: ClientInit, ServerInit, one full raw framebuffer update. Returns (width,
/// height, bytes per pixel, pixels).
fn rfb_framebuffer(s: &mut TcpStream) -> (usize, usize, usize, Vec<u8>) {
    s.write_all(&[1]).unwrap(); // Shared.
    let init = read_exact(s, 24);
    let (w, h) = (be16(&init[0..2]), be16(&init[2..4]));
    let bpp = init[4] as usize / 8;
    let name_len = be32(&init[20..24]) as usize;
    let _name = read_exact(s, name_len);
    // SetEncodings: raw only.
    s.write_all(&[2, 0, 0, 1, 0, 0, 0, 0]).unwrap();
    // FramebufferUpdateRequest, not incremental, the whole screen.
    let mut req = vec![3, 0, 0, 0, 0, 0];
    req.extend_from_slice(&(w as u16).to_be_bytes());
    req.extend_from_slice(&(h as u16).to_be_bytes());
    s.write_all(&req).unwrap();
    let mut fb = vec![0u8; w * h * bpp];
    loop {
        let kind = read_exact(s, 1)[0];
        match kind {
            0 => {
                let hdr = read_exact(s, 3);
                let rects = be16(&hdr[1..3]);
                for _ in 0..rects {
                    let r = read_exact(s, 12);
                    let (x, y, rw, rh) = (
                        be16(&r[0..2]),
                        be16(&r[2..4]),
                        be16(&r[4..6]),
                        be16(&r[6..8]),
                    );
                    let enc = be32(&r[8..12]);
                    assert_eq!(enc, 0, "only raw encoding was asked for");
                    let data = read_exact(s, rw * rh * bpp);
                    for row in 0..rh {
                        let dst = ((y + row) * w + x) * bpp;
                        fb[dst..dst + rw * bpp]
                            .copy_from_slice(&data[row * rw * bpp..(row + 1) * rw * bpp]);
                    }
                }
                return (w, h, bpp, fb);
            }
            2 => {} // Bell.
            3 => {
                let hdr = read_exact(s, 7);
                let len = be32(&hdr[3..7]) as usize;
                let _ = read_exact(s, len);
            }
            other => panic!("unexpected rfb server message {other}"),
        }
    }
}

/// Pixels that differ clearly from the first one.
fn differing_pixels(bpp: usize, fb: &[u8]) -> usize {
    let first = &fb[..bpp];
    fb.chunks(bpp)
        .filter(|px| {
            px.iter()
                .zip(first)
                .map(|(a, b)| (*a as i32 - *b as i32).abs())
                .sum::<i32>()
                > 48
        })
        .count()
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP and websocket.

/// Open the console websocket of `vm`; returns the stream after the 101 response and the first
/// bytes of the RFB banner.
fn open_console_ws(base: &str, run8: &str, vm: &str, token: &str) -> TcpStream {
    let hostport = base.trim_start_matches("http://");
    let mut s = TcpStream::connect(hostport).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    write!(
        s,
        "GET /lab/{run8}/ws/{vm}?token={token} HTTP/1.1\r\nHost: {hostport}\r\n\
         Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: binary\r\n\r\n"
    )
    .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.windows(11).any(|w| w == b"RFB 003.008") {
        let n = s.read(&mut buf).expect("websocket read");
        assert!(n > 0, "websocket closed: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got.starts_with(b"HTTP/1.1 101"));
    s
}

fn http_status(base: &str, path: &str) -> u16 {
    let hostport = base.trim_start_matches("http://");
    let mut s = TcpStream::connect(hostport).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------

#[test]
#[ignore = "end-to-end: needs root and a private libvirtd; scripts/test runs it"]
fn consoles_for_people_on_a_real_lab() {
    // noVNC and playwright-core from npm, into the dev directory (idempotent).
    let (novnc, node_path) = browser_tools();
    if !common::ocr::have_tesseract() {
        return;
    }

    let mut sb = Sandbox::start("consoles");
    let estate = sb.create_estate(&[]);
    // The example lab file, next to the estate's backups (its paths may be relative).
    let lab_file = estate.dir.join("erp.toml");
    std::fs::copy(repo().join("examples/erp.toml"), &lab_file).unwrap();
    let out = sb.reclab(&["up", "--json", lab_file.to_str().unwrap()]);
    check(&out, "reclab up");
    let up: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let run8 = up["run"].as_str().unwrap().to_string();
    sb.remember_run(&run8);
    let dir = RunDir {
        path: sb.state_dir.join("runs").join(&run8),
    };
    let rec = dir.load_record().unwrap().unwrap();
    let password = rec
        .vms
        .iter()
        .find(|v| v.name == "client")
        .unwrap()
        .console_password
        .clone();
    let mut children = Children::default();

    // Unknown VMs are refused with the lab's VMs named.
    let out = reclab_host(&sb)
        .args(["console", "erp", "nosuchvm"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("its vms: db, app, client"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // (1) The serial console: a command typed into the client's shell on ttyS0 runs, and
    // Ctrl-] detaches.
    let mut serial = reclab_host(&sb)
        .args(["console", "erp", "client"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = serial.stdin.take().unwrap();
    let output = bytes_of(serial.stdout.take().unwrap());
    let s1 = children.add(serial);
    let mut seen = Vec::new();
    let t = Instant::now();
    while !String::from_utf8_lossy(&seen).contains("console-42-ok") {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the shell on the serial console did not answer; saw {:?}",
            String::from_utf8_lossy(&seen)
        );
        stdin.write_all(b"\necho console-$((6*7))-ok\n").unwrap();
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until {
            if let Ok(b) = output.recv_timeout(Duration::from_millis(200)) {
                seen.extend_from_slice(&b);
            }
        }
    }
    stdin.write_all(&[0x1d]).unwrap();
    assert_eq!(
        children.wait(s1, Duration::from_secs(10)),
        Some(0),
        "Ctrl-] ends the console"
    );

    // (2) The VNC proxy on a loopback port of the root namespace: real VNC authentication with
    // the lab's one-time password, then a framebuffer that is not blank.
    let mut vnc = reclab_host(&sb)
        .args(["console", "--vnc", "erp", "client"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let vnc_lines = lines_of(vnc.stdout.take().unwrap());
    let vnc_i = children.add(vnc);
    let first = next_line_with(
        &vnc_lines,
        "VNC console on 127.0.0.1:",
        Duration::from_secs(30),
    );
    let port: u16 = first
        .split("127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {first:?}"));
    next_line_with(
        &vnc_lines,
        &format!("vncviewer 127.0.0.1::{port}"),
        Duration::from_secs(5),
    );
    let pw_line = next_line_with(&vnc_lines, "one-time password:", Duration::from_secs(5));
    assert_eq!(pw_line.trim(), format!("one-time password: {password}"));

    let wrong = rfb_login(port, "wrong123").err();
    assert!(wrong.is_some(), "a wrong password must be refused");
    let mut s = rfb_login(port, &password).expect("the one-time password is accepted");
    let (w, h, bpp, fb) = rfb_framebuffer(&mut s);
    let differing = differing_pixels(bpp, &fb);
    eprintln!("vnc framebuffer {w}x{h}x{bpp}: {differing} pixels differ from the first");
    assert!(w >= 320 && h >= 200, "framebuffer {w}x{h}");
    assert!(differing > 200, "the client's screen is blank over vnc");
    drop(s);

    // (3) reclab serve in the root namespace, on loopback, and a real headless Chromium.
    let serve = Serve::start(&sb, &mut children, &novnc);
    let base = serve.base.clone();
    let link = serve.link("erp", &run8);
    let out = reclab_host(&sb)
        .args(["console", "--link", "erp", "--base", &base])
        .output()
        .unwrap();
    check(&out, "reclab console --link");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        link,
        "one token per lab"
    );
    let token = link.rsplit("token=").next().unwrap().to_string();

    let shot = sb.state_dir.join("browser-console.png");
    let seen = node(
        &["visit", &link, "client", shot.to_str().unwrap()],
        &node_path,
    );
    eprintln!("browser saw: {seen}");
    assert_eq!(seen["labStatus"], 200);
    assert_eq!(seen["labTitle"], "Restore lab erp");
    assert_eq!(seen["vms"], serde_json::json!(["db", "app", "client"]));
    assert_eq!(seen["consoleStatus"], "connected");
    assert!(
        seen["canvas"]["differing"].as_u64().unwrap() > 200,
        "the noVNC canvas shows the client's screen: {}",
        seen["canvas"]
    );
    assert!(
        !png_is_blank(&std::fs::read(&shot).unwrap()),
        "page screenshot is blank"
    );
    assert!(
        seen["signed"]
            .as_str()
            .unwrap()
            .contains("sign-off was recorded")
    );
    assert!(
        seen["signoffs"][0]
            .as_str()
            .unwrap()
            .contains("Ann Customer (client)")
    );
    assert_eq!(
        seen["errors"],
        serde_json::json!([]),
        "no script errors in the page"
    );

    // The sign-off is in the run and in the lab's history.
    let stored = reclab::report::signoff::load(&dir.path).unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].name, "Ann Customer");
    assert_eq!(stored[0].vm.as_deref(), Some("client"));
    let history = reclab::report::history_path(&sb.state_dir, "erp");
    let in_history = reclab::report::signoff::history_signoffs(&history).unwrap();
    assert_eq!(in_history, vec![(run8.clone(), stored[0].clone())]);

    // A wrong token is refused.
    let wrong_link = link.replace(&token, &"0".repeat(token.len()));
    let refused = node(&["refused", &wrong_link], &node_path);
    assert_eq!(refused["status"], 403);
    assert_eq!(refused["heading"], "Access refused");

    // (4) Keys typed in the browser reach the VM, and the screen is read back by OCR: on db's
    // VGA console (a shell on tty1) a shifted-key arithmetic and a query of the lab's database,
    // whose answer the guest agent gives too.
    let db_domain = rec
        .vms
        .iter()
        .find(|v| v.name == "db")
        .unwrap()
        .domain
        .clone();
    let query = "sqlite3 /var/lib/erp/erp.db 'select no from invoices order by no desc limit 3'";
    let (rc, newest) = guest_sh(&sb.hv(), &db_domain, query);
    assert_eq!(rc, 0, "{newest}");
    let newest: Vec<&str> = newest.lines().collect();
    assert_eq!(newest.len(), 3, "{newest:?}");
    let shots = sb.state_dir.join("typed");
    std::fs::create_dir_all(&shots).unwrap();
    let t = Instant::now();
    let mut db = BrowserConsole::open(&link, "db", &node_path);
    db.type_text("\nclear; echo typed-$((6*7))-ok\n");
    common::ocr::wait_for_screen(
        "typed-42-ok",
        &shots,
        "db-echo",
        Duration::from_secs(60),
        |p| db.shot(p),
        |text| common::ocr::has_line(text, "typed-42-ok"),
    );
    // Not cleared first: the command line stays on the screen above its answer.
    db.type_text(&format!("{query}\n"));
    let (text, _) = common::ocr::wait_for_screen(
        &format!("invoices {newest:?}"),
        &shots,
        "db-invoices",
        Duration::from_secs(60),
        |p| db.shot(p),
        |text| newest.iter().all(|n| common::ocr::has_line(text, n)),
    );
    assert!(
        text.contains("select no from invoices order by"),
        "the typed command is on the screen as typed:\n{text}"
    );
    db.close();
    eprintln!(
        "typed and read back through the browser console in {:.1}s",
        t.elapsed().as_secs_f64()
    );

    // (5) The lab expires: open consoles close, new ones and the page are refused.
    let mut ws = open_console_ws(&base, &run8, "client", &token);
    let mut serial = reclab_host(&sb)
        .args(["console", "erp", "client"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _keep_stdin_open = serial.stdin.take();
    let s2 = children.add(serial);
    std::thread::sleep(Duration::from_secs(1));
    let mut expired = dir.load_record().unwrap().unwrap();
    expired.expires = (jiff::Timestamp::now() - jiff::SignedDuration::from_secs(1)).to_string();
    dir.save_record(&expired).unwrap();

    ws.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let t = Instant::now();
    let mut sink = Vec::new();
    let _ = ws.read_to_end(&mut sink);
    assert!(
        t.elapsed() < Duration::from_secs(14),
        "the browser console closed at expiry"
    );
    assert_eq!(
        children.wait(vnc_i, Duration::from_secs(15)),
        Some(2),
        "the vnc proxy ends at expiry"
    );
    assert_eq!(
        children.wait(s2, Duration::from_secs(15)),
        Some(2),
        "the serial console ends at expiry"
    );
    let out = reclab_host(&sb)
        .args(["console", "erp", "client"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("expired at"));
    let refused = node(&["refused", &link], &node_path);
    assert_eq!(refused["status"], 403);
    assert_eq!(refused["heading"], "This lab has expired");
    assert_eq!(
        http_status(&base, &format!("/lab/{run8}?token={token}")),
        403
    );

    // Stop the server (SIGTERM, by PID) and remove the lab.
    assert_eq!(
        children.terminate(serve.child, Duration::from_secs(10)),
        Some(0)
    );
    check(&sb.reclab(&["down", &run8]), "reclab down");
    sb.assert_nothing_left();
}
