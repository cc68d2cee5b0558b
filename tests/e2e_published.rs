//! Published ports for real (issue #19): the demo estate's db and app in a lab whose file
//! publishes the app's web page (`kind = "http"`) and db's HTTP port (`kind = "tcp"`).
//! The customer opens the lab page in a real headless Chromium, reads which restore point each
//! machine came from (times in the browser's zone), follows "open erp" and sees the restored
//! invoices and the app's version; the operator reaches db through `reclab forward`. A lab VM
//! still reaches nothing outside; an expired lab and a torn-down lab refuse both ways in.
//!
//! One lab for every case; reclab runs in the host's root network namespace (as people's tools
//! do), and its connections enter the lab from the lab-services namespace.

mod common;

use common::browser::{
    Children, Serve, browser_tools, lines_of, next_line_with, node, reclab_host,
};
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::{Duration, Instant};

use reclab::lab::journal::RunDir;

/// The example lab without the client (and its checks), with two published ports.
fn lab_text() -> String {
    let example = std::fs::read_to_string(repo().join("examples/erp.toml")).unwrap();
    let (head, _) = example
        .split_once("# The client checks the application from inside the lab")
        .expect("examples/erp.toml has its client vm");
    format!(
        "{}{}",
        head.replace("name = \"erp\"\n", "name = \"pub\"\n"),
        r#"
[[check]]
name = "invoice-numbers-without-gaps"
vm = "db"
kind = "sequence"
command = "sqlite3 /var/lib/erp/erp.db 'select no from invoices order by no'"

[[check]]
name = "newest-invoice-is-fresh"
vm = "db"
kind = "freshness"
command = "sqlite3 /var/lib/erp/erp.db 'select max(created_at) from invoices'"
max_age = "2h"

[[publish]]
name = "erp"
vm = "app"
port = 80
kind = "http"

[[publish]]
name = "db-web"
vm = "db"
port = 80
kind = "tcp"
"#
    )
}

/// One HTTP/1.0 GET to `addr` with `Host: host`; the whole answer (status line, headers, body).
fn http_get(addr: &str, host: &str, path: &str, cookie: Option<&str>) -> String {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let cookie = cookie
        .map(|c| format!("Cookie: {c}\r\n"))
        .unwrap_or_default();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n{cookie}\r\n").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// The status code of an answer from [`http_get`].
fn status(answer: &str) -> u16 {
    answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"))
}

#[test]
#[ignore = "end-to-end: needs root and a private libvirtd; scripts/test runs it"]
fn published_app_and_forward_on_a_real_lab() {
    let t0 = Instant::now();
    let (novnc, node_path) = browser_tools();
    let mut sb = Sandbox::start("published");
    let estate = sb.create_estate(&[]);
    let lab_file = estate.dir.join("pub.toml");
    std::fs::write(&lab_file, lab_text()).unwrap();

    let out = sb.reclab(&["up", "--json", lab_file.to_str().unwrap()]);
    check(&out, "reclab up");
    let up: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let run8 = up["run"].as_str().unwrap().to_string();
    sb.remember_run(&run8);
    let dir = RunDir {
        path: sb.state_dir.join("runs").join(&run8),
    };
    let rec = dir.load_record().unwrap().unwrap();
    let domain_of = |vm: &str| {
        rec.vms
            .iter()
            .find(|v| v.name == vm)
            .unwrap()
            .domain
            .clone()
    };
    assert_eq!(rec.publish.len(), 2, "{:?}", rec.publish);
    assert_eq!(rec.publish[0].address, "10.20.0.11");
    eprintln!("up: {:.1}s", t0.elapsed().as_secs_f64());

    // The checks, so that the lab page has results to put in words; the isolation check names
    // what is published.
    let out = sb.reclab(&["verify", "--json", &run8]);
    let rep: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("verify json: {e}: {}", String::from_utf8_lossy(&out.stderr)));
    let isolation = check_result(&rep, "isolation");
    assert_eq!(isolation["status"], "pass", "{isolation}");
    let details = isolation["details"].to_string();
    assert!(
        details.contains(
            "published: erp (http app:80 at 10.20.0.11), db-web (tcp db:80 at 10.20.0.10)"
        ),
        "{details}"
    );

    // What the lab's db holds: the newest invoice.
    let hv = sb.hv();
    let (rc, max_no) = guest_sh(
        &hv,
        &domain_of("db"),
        "sqlite3 /var/lib/erp/erp.db 'select max(no) from invoices'",
    );
    assert_eq!(rc, 0);
    let max_no = max_no.trim().to_string();

    let mut children = Children::default();
    let serve = Serve::start(&sb, &mut children, &novnc);
    let link = serve.link("pub", &run8);
    let addr = serve.base.trim_start_matches("http://").to_string();
    let port = addr.rsplit(':').next().unwrap().to_string();

    // (1) The customer in the browser: the lab page's restore points, then the app.
    let t_browser = Instant::now();
    let seen = node(&["app", &link, "erp"], &node_path);
    eprintln!(
        "browser: {:.1}s: {seen:#}",
        t_browser.elapsed().as_secs_f64()
    );
    assert_eq!(seen["labStatus"], 200);
    let points = seen["points"].as_array().unwrap();
    assert_eq!(points.len(), 2, "{seen:#}");
    let db_row = points.iter().find(|r| r[0] == "db").expect("a row for db");
    let inj = &rec.injections[0];
    assert!(
        db_row[1].as_str().unwrap().contains(&inj.image.name),
        "{db_row}"
    );
    assert!(
        db_row[2].as_str().unwrap().contains(&inj.dump.name),
        "{db_row}"
    );
    assert!(
        db_row[3]
            .as_str()
            .unwrap()
            .contains("before the moment the lab was made"),
        "{db_row}"
    );
    let app_row = points
        .iter()
        .find(|r| r[0] == "app")
        .expect("a row for app");
    assert!(!app_row[1].as_str().unwrap().is_empty(), "{app_row}");
    // Every time was formatted by the browser, none shows seconds' fractions or RFC 3339.
    for t in seen["times"].as_array().unwrap() {
        assert_eq!(t["local"], true, "{t}");
        let text = t["text"].as_str().unwrap();
        assert!(!text.contains('T') || !text.contains('Z'), "{t}");
        assert!(!t["datetime"].as_str().unwrap().contains('.'), "{t}");
    }
    let results = seen["results"].as_array().unwrap();
    let gaps = results
        .iter()
        .find(|r| r[0] == "invoice-numbers-without-gaps")
        .unwrap();
    assert_eq!(gaps[3], format!("complete up to no. {max_no}"), "{gaps}");
    let fresh = results
        .iter()
        .find(|r| r[0] == "newest-invoice-is-fresh")
        .unwrap();
    assert!(fresh[3].as_str().unwrap().contains("newest "), "{fresh}");
    // The app, on its own host, shows its version and the restored invoices.
    assert_eq!(seen["linkText"], "open erp");
    assert_eq!(seen["appStatus"], 200, "{seen:#}");
    let app_url = seen["appUrl"].as_str().unwrap();
    assert_eq!(
        app_url,
        format!("http://erp-{run8}.localhost:{port}/cgi-bin/latest"),
        "the token left the address and the app's redirect stayed on the published host"
    );
    assert_eq!(seen["version"], "erp-web 2.4.1");
    assert!(
        seen["stats"]
            .as_str()
            .unwrap()
            .contains(&format!("max_no={max_no}")),
        "{seen:#}"
    );
    let invoices = seen["invoices"].as_array().unwrap();
    assert_eq!(invoices.len(), 10, "{seen:#}");
    assert_eq!(invoices[0][0], max_no.as_str(), "{seen:#}");
    let cookies = seen["cookies"].as_array().unwrap();
    assert!(
        cookies.iter().any(|c| c["name"] == "reclab_lab_token"
            && c["httpOnly"] == true
            && c["domain"] == format!("erp-{run8}.localhost")),
        "{cookies:?}"
    );
    // The app saw the request from the lab-services address, never from the host.
    let (_, log) = guest_sh(
        &hv,
        &domain_of("app"),
        "tail -n 5 /var/log/erp-web/access.log",
    );
    assert!(log.contains("10.20.0.1 GET /cgi-bin/latest"), "{log}");

    // (2) The operator: reclab forward to db's HTTP port, from the host side.
    let mut fwd = reclab_host(&sb)
        .args(["forward", &run8, "db:80"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let fwd_lines = lines_of(fwd.stdout.take().unwrap());
    let fwd_i = children.add(fwd);
    let line = next_line_with(&fwd_lines, "forwarding 127.0.0.1:", Duration::from_secs(30));
    let fwd_addr = line.split(' ').nth(1).unwrap().to_string();
    let health = http_get(&fwd_addr, "db.prod.example", "/cgi-bin/health", None);
    assert!(health.contains("ok db"), "{health}");
    let stats = http_get(&fwd_addr, "db.prod.example", "/cgi-bin/stats", None);
    assert!(stats.contains(&format!("max_no={max_no}")), "{stats}");
    // A non-loopback listener is refused.
    let out = reclab_host(&sb)
        .args(["forward", &run8, "db:80", "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback only"));

    // (3) From inside the lab nothing leads out: not to the forward's or the server's port at
    // the lab-services address (nothing listens there), not to production's db (the lab has
    // its own 10.20.0.10), not to the host's addresses outside the lab.
    let (rc, probe) = guest_sh(
        &hv,
        &domain_of("app"),
        &format!(
            "for p in {port} {fp} 80 22; do if nc -z -w 3 10.20.0.1 $p; then echo open $p; fi; done; \
             ping -c 1 -W 2 10.20.0.1 >/dev/null && echo ping-services; echo done",
            fp = fwd_addr.rsplit(':').next().unwrap()
        ),
    );
    assert_eq!(rc, 0, "{probe}");
    assert!(
        probe.trim_end().ends_with("done") && !probe.contains("open "),
        "{probe}"
    );

    // (4) The lab expires: the forward closes, the app's link and cookie are refused.
    let mut expired = dir.load_record().unwrap().unwrap();
    let kept = expired.expires.clone();
    expired.expires = (jiff::Timestamp::now() - jiff::SignedDuration::from_secs(1)).to_string();
    dir.save_record(&expired).unwrap();
    assert_eq!(
        children.wait(fwd_i, Duration::from_secs(15)),
        Some(2),
        "forward ends at expiry"
    );
    let token = reclab::access::console::access_token(&dir).unwrap();
    let host = format!("erp-{run8}.localhost:{port}");
    let r = http_get(&addr, &host, &format!("/?reclab_token={token}"), None);
    assert!(
        status(&r) == 403 && r.contains("This lab has expired"),
        "{r}"
    );
    let cookie = format!("reclab_lab_token={token}");
    let r = http_get(&addr, &host, "/cgi-bin/latest", Some(&cookie));
    assert!(status(&r) == 403, "{r}");

    // (5) Torn down: a forward opened before `down` closes, the app is refused.
    let mut back = dir.load_record().unwrap().unwrap();
    back.expires = kept;
    dir.save_record(&back).unwrap();
    let r = http_get(&addr, &host, "/cgi-bin/latest", Some(&cookie));
    assert!(status(&r) == 200 && r.contains("erp-web 2.4.1"), "{r}");
    let mut fwd2 = reclab_host(&sb)
        .args(["forward", &run8, "db:80"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let fwd2_lines = lines_of(fwd2.stdout.take().unwrap());
    let fwd2_i = children.add(fwd2);
    next_line_with(
        &fwd2_lines,
        "forwarding 127.0.0.1:",
        Duration::from_secs(30),
    );
    check(&sb.reclab(&["down", &run8]), "reclab down");
    assert_eq!(
        children.wait(fwd2_i, Duration::from_secs(15)),
        Some(2),
        "forward ends at down"
    );
    let r = http_get(&addr, &host, "/cgi-bin/latest", Some(&cookie));
    assert!(
        status(&r) == 403 && r.contains("This link is not valid"),
        "{r}"
    );

    assert_eq!(
        children.terminate(serve.child, Duration::from_secs(10)),
        Some(0)
    );
    sb.assert_nothing_left();
    eprintln!("published ports e2e: {:.1}s", t0.elapsed().as_secs_f64());
}
