//! End-to-end harness: real libvirtd + QEMU (TCG) + qemu-guest-agent in a private sandbox.
//!
//! A test binary starts its own sandbox (`scripts/sandbox`: a libvirtd in its own network and
//! mount namespaces) and, if it needs one, the demo estate (`scripts/estate`). Both are torn
//! down when the [`Sandbox`] is dropped, also when a test panics. reclab itself runs inside the
//! sandbox's network namespace (`scripts/sandbox exec`), where the lab bridges live.
//!
//! End-to-end tests are `#[ignore = "end-to-end: needs root and a private libvirtd; scripts/test
//! runs it"]` (tests/tidy.rs holds them to it): plain `cargo test` lists them as ignored,
//! `scripts/test` runs them with `--ignored`, one at a time.
//!
//! Tests that need a tool (openssl, curl, mosquitto, chromium, ...) use [`need`]: where tools are
//! required ([`tools_required`]: CI and full `scripts/test` runs) a missing tool fails the test;
//! elsewhere the test says it is skipped and returns.

#![allow(dead_code)]

pub mod browser;
pub mod ocr;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use reclab::hv::Hypervisor;
use reclab::hv::libvirt::LibvirtHv;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn dev_dir() -> PathBuf {
    std::env::var_os("RECLAB_DEV_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/reclab-dev"))
}

/// Whether a missing tool fails a test instead of skipping it: in CI (`CI` set to anything but
/// `false`, `0` or nothing) and in full `scripts/test` runs (`RECLAB_E2E=1`), both of which
/// install every tool first.
pub fn tools_required() -> bool {
    let ci = std::env::var("CI").is_ok_and(|v| !matches!(v.trim(), "" | "0" | "false"));
    ci || std::env::var("RECLAB_E2E").as_deref() == Ok("1")
}

/// Whether `program` (a path, or a name on PATH) is there.
pub fn on_path(program: &str) -> bool {
    if program.contains('/') {
        return Path::new(program).exists();
    }
    Command::new("sh")
        .args(["-c", &format!("command -v '{program}'")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// For a test that needs `what`: true when it is `found`. When it is not, the test fails where
/// tools are required ([`tools_required`]); elsewhere this prints that the test is skipped and
/// why, and the caller returns. `install` says how to get it.
pub fn need(found: bool, what: &str, install: &str) -> bool {
    if found {
        return true;
    }
    assert!(
        !tools_required(),
        "{what} is missing ({install}); in CI and scripts/test that is a failure, not a skip"
    );
    eprintln!("skipped: {what} is missing ({install})");
    false
}

/// [`need`] for a program (a path, or a name on PATH).
pub fn need_program(program: &str, install: &str) -> bool {
    need(on_path(program), program, install)
}

fn script(name: &str) -> Command {
    Command::new(repo().join("scripts").join(name))
}

pub fn check(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A private libvirtd; stopped on drop.
pub struct Sandbox {
    pub name: String,
    pub uri: String,
    pub state_dir: PathBuf,
    estate: bool,
}

impl Sandbox {
    /// Start a sandbox named `e2e-<name>` with a fresh reclab state directory.
    pub fn start(name: &str) -> Sandbox {
        let name = format!("e2e-{name}");
        let state_dir = dev_dir().join("e2e-state").join(&name);
        // A leftover from an earlier, killed run must not leak into this one: its labs (with
        // its daemon, then without: their lab-services namespaces and dnsmasq outlive the
        // sandbox), its estate, its daemon.
        let collect = || {
            script("collect-labs")
                .arg(&state_dir)
                .arg(&name)
                .env("RECLAB", env!("CARGO_BIN_EXE_reclab"))
                .output()
        };
        let _ = collect();
        let _ = script("estate").args(["destroy", &name]).output();
        let _ = script("sandbox").args(["stop", &name]).output();
        let _ = collect();
        let out = script("sandbox")
            .args(["start", &name])
            .output()
            .expect("scripts/sandbox");
        check(&out, "scripts/sandbox start");
        let uri = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let _ = std::fs::remove_dir_all(&state_dir);
        std::fs::create_dir_all(&state_dir).unwrap();
        Sandbox {
            name,
            uri,
            state_dir,
            estate: false,
        }
    }

    /// Create the demo estate inside the sandbox, with planted defects.
    pub fn create_estate(&mut self, defects: &[&str]) -> Estate {
        let mut cmd = script("estate");
        cmd.args(["create", &self.name]);
        for d in defects {
            cmd.args(["--defect", d]);
        }
        let t = Instant::now();
        let out = cmd.output().expect("scripts/estate");
        check(&out, "scripts/estate create");
        self.estate = true;
        eprintln!("estate created in {:.1}s", t.elapsed().as_secs_f64());
        Estate::load(&self.name)
    }

    /// Create the real estate (`scripts/estate create NAME --kind real ARGS...`: Debian guests,
    /// virtnbdbackup chains, pg_dump dumps) inside the sandbox.
    pub fn create_real_estate(&mut self, args: &[&str]) -> Estate {
        let t = Instant::now();
        let out = script("estate")
            .args(["create", &self.name, "--kind", "real"])
            .args(args)
            .output()
            .expect("scripts/estate");
        self.estate = true;
        check(&out, "scripts/estate create --kind real");
        eprintln!("real estate created in {:.1}s", t.elapsed().as_secs_f64());
        Estate::load(&self.name)
    }

    pub fn hv(&self) -> LibvirtHv {
        LibvirtHv::open(&self.uri).expect("connect to the sandbox")
    }

    /// `reclab run --json --at AT LAB` → (exit code, report, output); the run is remembered
    /// for the leftover check.
    pub fn drill(&self, lab: &Path, at: &str) -> (i32, serde_json::Value, Output) {
        let out = self.reclab(&["run", "--json", "--at", at, lab.to_str().unwrap()]);
        let rep = serde_json::from_str(&String::from_utf8_lossy(&out.stdout))
            .unwrap_or(serde_json::Value::Null);
        if let Some(run) = rep["run"].as_str() {
            self.remember_run(run);
        }
        (out.status.code().unwrap_or(-1), rep, out)
    }

    /// Run reclab inside the sandbox's network namespace.
    pub fn reclab(&self, args: &[&str]) -> Output {
        self.reclab_in(Path::new("."), args)
    }

    pub fn reclab_in(&self, cwd: &Path, args: &[&str]) -> Output {
        let mut cmd = script("sandbox");
        cmd.current_dir(cwd)
            .args([
                "exec",
                &self.name,
                "env",
                &format!("RECLAB_CONNECT={}", self.uri),
            ])
            .arg(env!("CARGO_BIN_EXE_reclab"))
            .arg("--state-dir")
            .arg(&self.state_dir)
            .args(args);
        cmd.output().expect("run reclab")
    }

    /// Run a command in the sandbox's network namespace.
    pub fn exec(&self, args: &[&str]) -> Output {
        script("sandbox")
            .args(["exec", &self.name])
            .args(args)
            .output()
            .expect("sandbox exec")
    }

    /// Assert that no trace of any reclab run is left: no domain, network, namespace, link,
    /// firewall rule or run directory.
    pub fn assert_nothing_left(&self) {
        let hv = self.hv();
        let doms: Vec<String> = hv
            .list_domains()
            .unwrap()
            .into_iter()
            .map(|d| d.name)
            .collect();
        assert!(
            doms.iter().all(|d| !d.starts_with("reclab-")),
            "domains left: {doms:?}"
        );
        let nets: Vec<String> = hv
            .list_networks()
            .unwrap()
            .into_iter()
            .map(|n| n.name)
            .collect();
        assert!(
            nets.iter().all(|n| !n.starts_with("reclab-")),
            "networks left: {nets:?}"
        );
        let links = String::from_utf8_lossy(&self.exec(&["ip", "-o", "link"]).stdout).into_owned();
        for l in links.lines() {
            let name = l.split(':').nth(1).unwrap_or("").trim();
            assert!(
                !(name.starts_with("rl") || name.starts_with("rv")),
                "link left in the sandbox: {name}"
            );
        }
        for prog in ["iptables", "ip6tables"] {
            let rules =
                String::from_utf8_lossy(&self.exec(&[prog, "-w", "-S"]).stdout).into_owned();
            assert!(!rules.contains("reclab:"), "{prog} rules left:\n{rules}");
        }
        // QEMU names its overlay and dnsmasq its configuration, both in the run directory.
        let procs = processes_mentioning(&self.state_dir.display().to_string());
        assert!(procs.is_empty(), "processes of a run left: {procs:?}");
        let runs = self.state_dir.join("runs");
        let left: Vec<_> = std::fs::read_dir(&runs)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "run directories left: {left:?}");
        // Lab services namespaces are named reclab-<run8>-<segment>.
        let netns = String::from_utf8_lossy(
            &Command::new("ip")
                .args(["netns", "list"])
                .output()
                .unwrap()
                .stdout,
        )
        .into_owned();
        for known in self.known_run_ids() {
            assert!(
                !netns.contains(&format!("reclab-{known}-")),
                "namespace of run {known} left:\n{netns}"
            );
        }
    }

    fn known_run_ids(&self) -> Vec<String> {
        std::fs::read_to_string(self.state_dir.join("seen-runs"))
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    /// Remember a run id so that [`assert_nothing_left`] checks its namespaces too.
    pub fn remember_run(&self, run: &str) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.state_dir.join("seen-runs"))
            .unwrap();
        writeln!(f, "{run}").unwrap();
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // Remove labs first (their namespaces live outside the sandbox's), then the estate and
        // the daemon.
        let _ = self.reclab(&["gc"]);
        let runs = self.state_dir.join("runs");
        if let Ok(d) = std::fs::read_dir(&runs) {
            for e in d.flatten() {
                let id = e.file_name().to_string_lossy().into_owned();
                let _ = self.reclab(&["down", &id]);
            }
        }
        if self.estate {
            let _ = script("estate").args(["destroy", &self.name]).output();
        }
        let _ = script("sandbox").args(["stop", &self.name]).output();
    }
}

/// The demo estate as described by its `estate.json`.
pub struct Estate {
    pub dir: PathBuf,
    pub json: serde_json::Value,
}

impl Estate {
    pub fn load(sandbox: &str) -> Estate {
        let dir = dev_dir().join("estate").join(sandbox);
        let text = std::fs::read_to_string(dir.join("estate.json")).expect("estate.json");
        Estate {
            dir,
            json: serde_json::from_str(&text).unwrap(),
        }
    }

    pub fn domain(&self, role: &str) -> &serde_json::Value {
        self.json["domains"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["role"] == role)
            .unwrap_or_else(|| panic!("no {role} in estate.json"))
    }

    /// The frozen backup images (sources of a lab).
    pub fn backup_images(&self) -> Vec<PathBuf> {
        self.json["domains"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| PathBuf::from(d["disks"]["vda"]["backup_image"].as_str().unwrap()))
            .collect()
    }

    pub fn dumps_dir(&self) -> PathBuf {
        PathBuf::from(self.json["dumps"]["dir"].as_str().unwrap())
    }
}

/// Processes (other than this one) whose command line mentions `needle`.
pub fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let me = std::process::id().to_string();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let pid = e.file_name().to_string_lossy().into_owned();
        if !pid.chars().all(|c| c.is_ascii_digit()) || pid == me {
            continue;
        }
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle) {
            found.push(format!("{pid}: {cmdline}"));
        }
    }
    found
}

/// sha256 of a whole file (hex).
pub fn sha256_file(p: &Path) -> String {
    use sha2::{Digest, Sha256};
    let bytes = std::fs::read(p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()));
    hex::encode(Sha256::digest(&bytes))
}

/// Run a shell command in a domain through its guest agent; returns (exit code, stdout).
pub fn guest_sh(hv: &dyn Hypervisor, domain: &str, script: &str) -> (i32, String) {
    let out = reclab::hv::agent::sh(hv, domain, script, Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("agent exec in {domain}: {e:#}"));
    (
        out.exit_code,
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Poll `f` until it returns Some or the timeout passes.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let t = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            t.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Whether a PNG is blank (every pixel almost the same colour).
pub fn png_is_blank(png: &[u8]) -> bool {
    let decoder = png::Decoder::new(std::io::Cursor::new(png));
    let mut reader = decoder.read_info().expect("png header");
    let mut buf = vec![0; reader.output_buffer_size().expect("png size")];
    let info = reader.next_frame(&mut buf).expect("png frame");
    let data = &buf[..info.buffer_size()];
    let first = &data[..3];
    let differing = data.chunks(info.color_type.samples()).filter(|px| {
        px.iter()
            .zip(first)
            .any(|(a, b)| (*a as i32 - *b as i32).abs() > 16)
    });
    differing.count() < 50
}

/// The result of check `name` in a drill's JSON report.
pub fn check_result<'a>(rep: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    rep["checks"]
        .as_array()
        .unwrap_or_else(|| panic!("no checks in {rep}"))
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {rep}"))
}
