//! The customer's view, for real (issue #12): a lab of the real estate's guests (Debian 12,
//! systemd, PostgreSQL 15 on `pg`, the ERP web app on `web`, a console machine `client`), the
//! lab page in a real headless Chromium, the customer logging in on the client's VGA console
//! by typing (playwright keyboard → noVNC → RFB key events → QEMU → getty on tty1), and the
//! invoice list their login shows read back from the screenshot by OCR (tesseract) and
//! compared with what the lab's PostgreSQL holds (asked through the guest agent).
//!
//! The lab comes from files, as a backup tool restores them (`from = { xml, disks }`): each
//! guest's domain XML rendered from the real estate's templates and its built image
//! (`scripts/build-real-guests`), which the lab only reads (its overlay sits on it; the sha256
//! of each image is the same after `down`), pg with its UEFI variable store. Not yet from the
//! real estate's virtnbdbackup chains (`scripts/estate create --kind real`), which needs
//! reclab's virtnbdbackup source.

mod common;

use common::browser::{BrowserConsole, Children, Serve, browser_tools};
use common::ocr;
use common::*;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reclab::lab::journal::RunDir;

/// The real guests, as `scripts/build-real-guests` (run by `scripts/setup`) left them, and their
/// description. Not rebuilt here: other labs and estates may be running on these images.
fn real_guests() -> (PathBuf, serde_json::Value) {
    let dir = dev_dir().join("real-guests");
    let text = std::fs::read_to_string(dir.join("real-guests.json")).unwrap_or_else(|e| {
        panic!(
            "{}/real-guests.json: {e}: build the real guests with scripts/build-real-guests \
             (scripts/setup does)",
            dir.display()
        )
    });
    (dir, serde_json::from_str(&text).unwrap())
}

/// `role`'s domain XML as its backup holds it: the real estate's template for its firmware with
/// its placeholders filled (as `scripts/estate` fills them), the disk at `disk`.
fn domain_xml(guests: &serde_json::Value, role: &str, disk: &Path, dir: &Path) -> String {
    let g = &guests["guests"][role];
    let firmware = g["firmware"].as_str().unwrap();
    let template = repo().join(guests["templates"][firmware].as_str().unwrap());
    let mut text = std::fs::read_to_string(&template).unwrap();
    let mut values = vec![
        ("NAME", format!("prod-{role}")),
        ("ROLE", role.to_string()),
        ("HOSTNAME", g["hostname"].as_str().unwrap().to_string()),
        ("ASSET_ID", format!("ERP-REAL-{}", role.to_uppercase())),
        ("MEMORY_MIB", g["memory_mib"].to_string()),
        ("DISK", disk.display().to_string()),
        ("MAC", g["mac"].as_str().unwrap().to_string()),
        (
            "NETWORK",
            guests["network"]["name"].as_str().unwrap().to_string(),
        ),
        (
            "SERIAL_LOG",
            dir.join(format!("{role}.serial.log")).display().to_string(),
        ),
    ];
    if firmware == "uefi" {
        // The backup's UEFI variable store: a fresh copy of the OVMF template, as the estate
        // gives each UEFI guest.
        let vars = g["ovmf_vars_template"].as_str().unwrap();
        let nvram = dir.join(format!("{role}_VARS.fd"));
        std::fs::copy(vars, &nvram).unwrap();
        values.push(("OVMF_CODE", g["ovmf_code"].as_str().unwrap().to_string()));
        values.push(("OVMF_VARS_TEMPLATE", vars.to_string()));
        values.push(("NVRAM", nvram.display().to_string()));
    }
    for (k, v) in values {
        text = text.replace(&format!("@{k}@"), &v);
    }
    let body = text.split_once("-->").map_or(text.as_str(), |(_, b)| b);
    let placeholder = body
        .split('@')
        .skip(1)
        .find(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_uppercase() || c == '_'));
    assert!(
        placeholder.is_none(),
        "unfilled placeholder in {}:\n{body}",
        template.display()
    );
    text
}

/// The lab file: the three real guests from their files, on an isolated copy of the production
/// LAN whose lab services answer DNS for the production names at the gateway's address.
fn lab_file(guests: &serde_json::Value, dir: &Path) -> PathBuf {
    let net = &guests["network"];
    let mut hosts = Vec::new();
    let mut vms = String::new();
    for role in ["pg", "web", "client"] {
        let g = &guests["guests"][role];
        let image = PathBuf::from(g["path"].as_str().unwrap());
        let xml = domain_xml(guests, role, &image, dir);
        std::fs::write(dir.join(format!("{role}.xml")), xml).unwrap();
        hosts.push(format!(
            "{:?} = {:?}",
            g["fqdn"].as_str().unwrap(),
            g["ip"].as_str().unwrap()
        ));
        // Ready when the agent answers (`ready.tcp` probes with nc, which these guests lack).
        let ready = "{ timeout = \"12m\" }";
        vms.push_str(&format!(
            "\n[[vm]]\nname = \"{role}\"\nfrom = {{ xml = \"{role}.xml\", disks = {{ vda = {:?} }} }}\nready = {ready}\n",
            image.display().to_string()
        ));
    }
    let text = format!(
        r#"# The real estate's three guests from their files; all boot together (the web app and the
# customer's login ask PostgreSQL only when asked).
name = "custview"
ttl = "2h"
accel = "tcg"

[segment.lan]
production = [{network:?}]
hosts = {{ {hosts} }}

[segment.lan.services]
address = "{gw}/{prefix}"
dns = true
domain = {domain:?}
{vms}"#,
        network = net["name"].as_str().unwrap(),
        hosts = hosts.join(", "),
        gw = net["gateway"].as_str().unwrap(),
        prefix = net["prefix"],
        domain = net["domain"].as_str().unwrap(),
    );
    let p = dir.join("custview.toml");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
#[ignore = "end-to-end: needs root and a private libvirtd; scripts/test runs it"]
fn the_customer_logs_in_on_the_client_console_and_sees_the_invoices() {
    let t0 = Instant::now();
    let (novnc, node_path) = browser_tools();
    if !ocr::have_tesseract() {
        return;
    }
    let (_, guests) = real_guests();
    let customer = &guests["guests"]["client"]["customer"];
    let (user, password) = (
        customer["user"].as_str().unwrap(),
        customer["password"].as_str().unwrap(),
    );
    let version = guests["guests"]["web"]["app"]["version"].as_str().unwrap();

    let sb = Sandbox::start("custview");
    let dir = sb.state_dir.join("backup");
    std::fs::create_dir_all(&dir).unwrap();
    let lab = lab_file(&guests, &dir);
    let images: Vec<PathBuf> = ["pg", "web", "client"]
        .iter()
        .map(|r| PathBuf::from(guests["guests"][r]["path"].as_str().unwrap()))
        .collect();
    let before: Vec<String> = images.iter().map(|p| sha256_file(p)).collect();

    let t_up = Instant::now();
    let out = sb.reclab(&["up", "--json", lab.to_str().unwrap()]);
    check(&out, "reclab up");
    eprintln!(
        "reclab up of the 3 real guests: {:.1}s",
        t_up.elapsed().as_secs_f64()
    );
    let up: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let run8 = up["run"].as_str().unwrap().to_string();
    sb.remember_run(&run8);
    let rec = RunDir {
        path: sb.state_dir.join("runs").join(&run8),
    }
    .load_record()
    .unwrap()
    .unwrap();
    let domain_of = |vm: &str| {
        rec.vms
            .iter()
            .find(|v| v.name == vm)
            .unwrap()
            .domain
            .clone()
    };

    // The customer's login asks the web app once: wait until it answers the client (and has
    // reached pg) before they log in.
    let hv = sb.hv();
    let page = wait_for(
        "the web app's invoice page, fetched in the client",
        Duration::from_secs(300),
        || {
            let (rc, page) = guest_sh(
                &hv,
                &domain_of("client"),
                "curl -fsS --max-time 15 http://web.prod.example/",
            );
            (rc == 0 && page.contains(version)).then_some(page)
        },
    );
    eprintln!("the web app answers the client:\n{page}");

    let mut children = Children::default();
    let serve = Serve::start(&sb, &mut children, &novnc);
    let link = serve.link("custview", &run8);
    let shots = sb.state_dir.join("screens");
    std::fs::create_dir_all(&shots).unwrap();

    // The customer at the client's console: the login prompt, their name, the password prompt,
    // their password, and what their login shows.
    let t_login = Instant::now();
    let mut client = BrowserConsole::open(&link, "client", &node_path);
    client.type_text("\n");
    ocr::wait_for_screen(
        "the login prompt",
        &shots,
        "client-login",
        Duration::from_secs(180),
        |p| client.shot(p),
        |text| text.contains("client login:"),
    );
    client.type_text(&format!("{user}\n"));
    ocr::wait_for_screen(
        "the password prompt",
        &shots,
        "client-password",
        Duration::from_secs(120),
        |p| client.shot(p),
        |text| text.lines().any(|l| l.trim_end().ends_with("Password:")),
    );
    client.type_text(&format!("{password}\n"));
    let (text, shot) = ocr::wait_for_screen(
        "the invoice list",
        &shots,
        "client-invoices",
        Duration::from_secs(180),
        |p| client.shot(p),
        |text| {
            text.contains(version) && text.lines().any(|l| l.contains(&format!("{user}@client")))
        },
    );
    client.close();
    let login_secs = t_login.elapsed().as_secs_f64();

    // What the lab's PostgreSQL holds, asked after the screenshot (a running load would only add
    // newer invoices).
    let (rc, rows) = guest_sh(
        &sb.hv(),
        &domain_of("pg"),
        "runuser -u postgres -- psql -d erp -AtF ' ' -c \
         'select no, amount from invoices order by no desc limit 30'",
    );
    assert_eq!(rc, 0, "psql in the lab's pg: {rows}");
    let rows: Vec<(String, String)> = rows
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(n, a)| (n.to_string(), a.to_string()))
        .collect();
    assert!(rows.len() >= 10, "the lab's pg holds {rows:?}");
    let seen: Vec<&(String, String)> = rows
        .iter()
        .filter(|(no, amount)| ocr::has_row(&text, no, amount))
        .collect();
    eprintln!(
        "the customer's screen ({}) shows {} of the lab's invoices: {seen:?}",
        shot.display(),
        seen.len()
    );
    assert!(
        seen.len() >= 2,
        "the customer's screen shows fewer than 2 of the lab's invoices {rows:?}; it reads:\n{text}"
    );
    // The newest row on the screen is the newest invoice the database had then, or one of the
    // ones it got since.
    let newest_shown: u64 = seen.iter().map(|(n, _)| n.parse().unwrap()).max().unwrap();
    assert!(
        rows.iter()
            .take_while(|(n, _)| n.parse::<u64>().unwrap() >= newest_shown)
            .count()
            <= 20,
        "the screen shows invoice {newest_shown}, long before the newest {:?}",
        rows[0]
    );
    let keep = sb.state_dir.join("customer-view.png");
    std::fs::copy(&shot, &keep).unwrap();

    assert_eq!(
        children.terminate(serve.child, Duration::from_secs(10)),
        Some(0)
    );
    check(&sb.reclab(&["down", &run8]), "reclab down");
    sb.assert_nothing_left();
    let after: Vec<String> = images.iter().map(|p| sha256_file(p)).collect();
    assert_eq!(before, after, "the lab wrote to the guests' images");
    eprintln!(
        "customer's view: login to invoice list {login_secs:.1}s, whole test {:.1}s; screenshot {}",
        t0.elapsed().as_secs_f64(),
        keep.display()
    );
}
