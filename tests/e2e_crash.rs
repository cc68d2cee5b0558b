//! Crash safety against a real libvirtd, QEMU and qemu-guest-agent: reclab killed with
//! SIGKILL after every journaled step of `up`, libvirtd restarted in the middle of a drill
//! (also during `up`'s boot wait, which rides it out), a guest that never answers, a full state
//! disk, parallel downs, a drill killed during verify, a lost run directory, libvirtd and QEMU
//! killed or the whole sandbox stopped under a lab (then `scripts/collect-labs`), and `gc`
//! from a second state directory while a lab runs. After each, nothing of the run may be left
//! and production's image must be byte for byte what it was.
//!
//! To keep CI time down the labs have one VM, and production is not the whole demo estate
//! but what a backup tool restores: a domain XML and a copy of the `db` guest image.

mod common;

use common::*;
use reclab::hv::Hypervisor;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// A restored backup of the `db` VM: domain XML plus image, in a temporary directory.
struct Backup {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    xml: PathBuf,
    image: PathBuf,
}

impl Backup {
    /// `image` overrides the disk (for a guest that cannot boot).
    fn restore(image: Option<&Path>) -> Backup {
        let tmp = tempfile::tempdir_in(dev_dir()).unwrap();
        let dir = tmp.path().to_path_buf();
        let guests = dev_dir().join("guests");
        let meta: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(guests.join("guests.json"))
                .expect("guest images missing: run scripts/build-guests"),
        )
        .unwrap();
        let disk = dir.join("prod-db.qcow2");
        std::fs::copy(image.unwrap_or(&guests.join("db.qcow2")), &disk).unwrap();
        let template = std::fs::read_to_string(repo().join("templates/estate-domain.xml")).unwrap();
        let values = [
            ("NAME", "prod-db".to_string()),
            ("ROLE", "db".into()),
            ("HOSTNAME", "db".into()),
            ("ASSET_ID", "ERP-PROD-DB-101".into()),
            ("KERNEL", guests.join("vmlinuz").display().to_string()),
            ("INITRD", guests.join("initrd.img").display().to_string()),
            ("CMDLINE", meta["cmdline"].as_str().unwrap().to_string()),
            ("DISK", disk.display().to_string()),
            (
                "MAC",
                meta["roles"]["db"]["mac"].as_str().unwrap().to_string(),
            ),
            ("NETWORK", "prod".into()),
            (
                "SERIAL_LOG",
                dir.join("prod-db.serial.log").display().to_string(),
            ),
        ];
        let mut xml = template;
        for (key, value) in values {
            xml = xml.replace(&format!("@{key}@"), &value);
        }
        let xml_path = dir.join("prod-db.xml");
        std::fs::write(&xml_path, xml).unwrap();
        Backup {
            _tmp: tmp,
            dir,
            xml: xml_path,
            image: disk,
        }
    }

    /// A one-VM lab of this backup with lab services (so a namespace, a veth and dnsmasq are
    /// among what a crash can leave behind).
    fn lab(&self, name: &str, ready_timeout: &str) -> PathBuf {
        let lab = self.dir.join(format!("{name}.toml"));
        std::fs::write(
            &lab,
            format!(
                r#"name = "{name}"
accel = "tcg"
[segment.lan]
production = ["prod"]
hosts = {{ "db.prod.example" = "10.20.0.10" }}
[segment.lan.services]
address = "10.20.0.1/24"
dns = true
[[vm]]
name = "db"
from = {{ xml = "{}", disks = {{ vda = "{}" }} }}
ready = {{ timeout = "{ready_timeout}" }}
"#,
                self.xml.display(),
                self.image.display()
            ),
        )
        .unwrap();
        lab
    }

    fn fingerprint(&self) -> String {
        sha256_file(&self.image)
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `reclab up LAB` in the sandbox with extra environment, not waited for.
fn spawn_up(sb: &Sandbox, lab: &Path, env: &[(&str, String)]) -> Child {
    let mut cmd = Command::new(repo().join("scripts/sandbox"));
    cmd.args([
        "exec",
        &sb.name,
        "env",
        &format!("RECLAB_CONNECT={}", sb.uri),
    ]);
    for (k, v) in env {
        cmd.arg(format!("{k}={v}"));
    }
    cmd.arg(env!("CARGO_BIN_EXE_reclab"))
        .arg("--state-dir")
        .arg(&sb.state_dir)
        .args(["up", lab.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn reclab up")
}

/// The only run directory of the sandbox's state dir, once it exists.
fn the_run_dir(sb: &Sandbox) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(sb.state_dir.join("runs"))
        .ok()?
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(dirs.len() <= 1, "several runs at once: {dirs:?}");
    dirs.pop()
}

fn owner_pid(run_dir: &Path) -> Option<i32> {
    let rec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("run.json")).ok()?).ok()?;
    Some(rec["owner_pid"].as_u64()? as i32)
}

/// Everything the crash tests promise after a cleanup: no trace of the run anywhere and
/// production unchanged.
fn assert_clean(sb: &Sandbox, run_dir: &Path, backup: &Backup, fingerprint: &str, what: &str) {
    sb.assert_nothing_left();
    let procs = processes_mentioning(&run_dir.display().to_string());
    assert!(
        procs.is_empty(),
        "{what}: processes of the run left: {procs:?}"
    );
    assert_eq!(
        backup.fingerprint(),
        fingerprint,
        "{what}: production image changed"
    );
}

#[test]
#[ignore = "end-to-end: needs root and a private libvirtd; scripts/test runs it"]
fn sigkill_after_every_step_of_up_then_gc_leaves_nothing() {
    let sb = Sandbox::start("crash-kill");
    let backup = Backup::restore(None);
    let fingerprint = backup.fingerprint();
    let lab = backup.lab("kill", "3m");
    let out = sb.reclab(&["check", "--json", lab.to_str().unwrap()]);
    check(&out, "reclab check");
    let plan: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let steps: Vec<String> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    assert!(steps.len() >= 7, "{steps:?}");

    for (k, step) in steps.iter().enumerate().map(|(i, s)| (i + 1, s)) {
        let what = format!("killed after step {k} ({step})");
        let mut child = spawn_up(&sb, &lab, &[("RECLAB_PAUSE_AFTER_STEP", k.to_string())]);
        let run_dir = wait_for(&what, Duration::from_secs(180), || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("{what}: reclab up ended early ({status})");
            }
            let dir = the_run_dir(&sb)?;
            let paused = std::fs::read_to_string(dir.join("paused-after-step")).ok()?;
            assert_eq!(paused.trim(), k.to_string());
            Some(dir)
        });
        sb.remember_run(&run_dir.file_name().unwrap().to_string_lossy());
        let pid = owner_pid(&run_dir).expect("run.json names its reclab process");
        // SAFETY: kill(2) of the reclab process this test started.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0, "{what}");
        let status = child.wait().unwrap();
        assert!(!status.success(), "{what}: {status}");

        let out = sb.reclab(&["gc"]);
        check(&out, &format!("reclab gc ({what})"));
        assert!(
            stdout(&out).contains("orphaned: its reclab process"),
            "{what}: gc output: {}",
            stdout(&out)
        );
        assert_clean(&sb, &run_dir, &backup, &fingerprint, &what);
    }
}

#[test]
#[ignore = "end-to-end: needs root and a private libvirtd; scripts/test runs it"]
fn a_lab_whose_run_directory_is_lost_is_swept_by_gc() {
    let sb = Sandbox::start("crash-lost");
    let backup = Backup::restore(None);
    let fingerprint = backup.fingerprint();
    let lab = backup.lab("lost", "3m");
    check(&sb.reclab(&["up", lab.to_str().unwrap()]), "reclab up");
    let run_dir = the_run_dir(&sb).expect("up made a run directory");
    let run8 = run_dir.file_name().unwrap().to_string_lossy().into_owned();
    sb.remember_run(&run8);
    let netns = || {
        String::from_utf8_lossy(
            &Command::new("ip")
                .args(["netns", "list"])
                .output()
                .unwrap()
                .stdout,
        )
        .into_owned()
    };
    assert!(
        netns().contains(&format!("reclab-{run8}-lan")),
        "{}",
        netns()
    );
    // The state directory loses the run: only the tags on the resources are left.
    std::fs::remove_dir_all(&run_dir).unwrap();

    let out = sb.reclab(&["gc"]);
    check(&out, "reclab gc");
    let said = stdout(&out);
    for removed in [
        format!("removed domain reclab-lost-{run8}-db"),
        format!("removed network reclab-{run8}-lan"),
        format!("removed network namespace reclab-{run8}-lan"),
        format!("reclab:{run8}"),
    ] {
        assert!(said.contains(&removed), "gc said:\n{said}");
    }
    // Domains, networks, links, rules, dnsmasq and the namespace are gone.
    assert_clean(
        &sb,
        &run_dir,
        &backup,
        &fingerprint,
        "gc of a lost run directory",
    );
    let again = sb.reclab(&["gc"]);
    check(&again, "a second reclab gc");
    assert_eq!(stdout(&again), "", "nothing is left for a second gc");
}

#[test]
#[ignore = "end-to-end: needs root and a private libvirtd; scripts/test runs it"]
fn libvirtd_restarted_in_the_middle_of_a_drill() {
    let sb = Sandbox::start("crash-lvd");
    let backup = Backup::restore(None);
    let fingerprint = backup.fingerprint();
    let lab = backup.lab("restart", "3m");
    let restart = || {
        let out = Command::new(repo().join("scripts/sandbox"))
            .args(["restart-daemon", &sb.name])
            .output()
            .unwrap();
        check(&out, "scripts/sandbox restart-daemon");
    };

    // While the lab is up: the guest keeps running, reclab still sees it, and down removes it.
    let out = sb.reclab(&["up", "--json", lab.to_str().unwrap()]);
    check(&out, "reclab up");
    let up: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let run = up["run"].as_str().unwrap().to_string();
    sb.remember_run(&run);
    let run_dir = sb.state_dir.join("runs").join(&run);
    let domain = up["vms"][0]["domain"].as_str().unwrap().to_string();
    restart();
    let out = sb.reclab(&["status", "--json", "restart"]);
    check(&out, "reclab status after the restart");
    let st: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(st[0]["vms"][0]["state"], "running", "{st}");
    let (rc, host) = guest_sh(&sb.hv(), &domain, "hostname");
    assert_eq!((rc, host.trim()), (0, "db"));
    check(
        &sb.reclab(&["down", "restart"]),
        "reclab down after the restart",
    );
    assert_clean(&sb, &run_dir, &backup, &fingerprint, "restart while up");

    // While `up` waits for the guest agent: reclab notices the closed connection, reconnects
    // and carries on; the lab comes up, and its own down removes it.
    let mut child = spawn_up(&sb, &lab, &[]);
    let run_dir = wait_for("a booting run", Duration::from_secs(120), || {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("reclab up ended early ({status})");
        }
        let dir = the_run_dir(&sb)?;
        // The guest prints on its serial console: libvirt has started it and `up`, past
        // creating the domain, waits for its agent.
        let serial = std::fs::metadata(dir.join("db-serial.log")).ok()?;
        (serial.len() > 0).then_some(dir)
    });
    sb.remember_run(&run_dir.file_name().unwrap().to_string_lossy());
    restart();
    wait_for("reclab up to end", Duration::from_secs(240), || {
        child.try_wait().unwrap()
    });
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "up rides out a libvirtd restart during its boot wait:\n{err}"
    );
    assert!(
        !err.contains("qemu-ga") && !err.contains("not ready after"),
        "the agent is not blamed: {err}"
    );
    let out = sb.reclab(&["status", "--json", "restart"]);
    check(&out, "reclab status after up rode out the restart");
    let st: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(st[0]["state"], "up", "{st}");
    assert_eq!(st[0]["vms"][0]["state"], "running", "{st}");
    check(&sb.reclab(&["down", "restart"]), "reclab down");
    assert_clean(&sb, &run_dir, &backup, &fingerprint, "restart during up");
}

/// A blank disk in `dir`: the kernel boots, finds no root file system, and no agent ever
/// starts.
fn blank_disk(dir: &Path) -> PathBuf {
    let blank = dir.join("blank.qcow2");
    let out = Command::new("qemu-img")
        .args([
            "create",
            "-q",
            "-f",
            "qcow2",
            blank.to_str().unwrap(),
            "256M",
        ])
        .output()
        .unwrap();
    check(&out, "qemu-img create");
    blank
}

#[test]
#[ignore = "end-to-end: needs root and a private libvirtd; scripts/test runs it"]
fn a_guest_that_never_answers_is_named_with_its_console_and_leaves_nothing() {
    let sb = Sandbox::start("crash-mute");
    let scratch = tempfile::tempdir_in(dev_dir()).unwrap();
    let blank = blank_disk(scratch.path());
    let backup = Backup::restore(Some(&blank));
    let fingerprint = backup.fingerprint();
    let lab = backup.lab("mute", "25s");
    let out = sb.reclab(&["up", lab.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("vm db (reclab-"), "names the vm: {err}");
    assert!(
        err.contains("not ready after 25s"),
        "says what timed out: {err}"
    );
    assert!(err.contains("guest-ping"), "says what it waited for: {err}");
    let serial = err
        .split("last serial console lines: ")
        .nth(1)
        .unwrap_or_else(|| panic!("shows the console: {err}"));
    assert!(
        serial.contains("cannot mount /dev/vda"),
        "the console lines are the guest's own: {serial}"
    );
    let run_dir = the_run_dir(&sb).map(|d| d.display().to_string());
    assert_eq!(run_dir, None, "the failed run removed its directory");
    sb.assert_nothing_left();
    assert_eq!(backup.fingerprint(), fingerprint);
}

#[test]
#[ignore = "end-to-end: needs root and a private libvirtd; scripts/test runs it"]
fn a_full_state_disk_fails_cleanly_with_exit_code_2() {
    let sb = Sandbox::start("crash-full");
    let backup = Backup::restore(None);
    let fingerprint = backup.fingerprint();
    let lab = backup.lab("full", "3m");
    // The state directory is a 64 KiB tmpfs mounted in a private mount namespace, so nothing
    // outside this one reclab process ever sees it: the run record and journal fit, the first
    // overlay does not.
    let state = tempfile::tempdir_in(dev_dir()).unwrap();
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--", "sh", "-euc"])
        .arg(
            r#"mount -t tmpfs -o size=64k,mode=0700 reclab-full "$1"; shift
               exec "$@""#,
        )
        .arg("sh")
        .arg(state.path())
        .arg(repo().join("scripts/sandbox"))
        .args([
            "exec",
            &sb.name,
            "env",
            &format!("RECLAB_CONNECT={}", sb.uri),
        ])
        .arg(env!("CARGO_BIN_EXE_reclab"))
        .arg("--state-dir")
        .arg(state.path())
        .args(["up", lab.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("No space left on device"), "says why: {err}");
    assert!(
        err.contains("removing what was created"),
        "unwinds what it did: {err}"
    );
    assert!(
        !err.contains("could not remove"),
        "unwinding removed everything: {err}"
    );
    sb.assert_nothing_left();
    let left: Vec<_> = std::fs::read_dir(state.path()).unwrap().flatten().collect();
    assert!(left.is_empty(), "the tmpfs never leaked out: {left:?}");
    assert_eq!(backup.fingerprint(), fingerprint);
}

/// Send `signal` to the reclab process of a run (named in its run.json), once `ready` says the
/// run got far enough; returns reclab's exit code, its stderr and the run's directory.
fn interrupt_up(
    sb: &Sandbox,
    lab: &Path,
    env: &[(&str, String)],
    signal: i32,
    ready: impl Fn(&Path) -> bool,
) -> (Option<i32>, String, PathBuf) {
    let mut child = spawn_up(sb, lab, env);
    let run_dir = wait_for(
        "the run to get far enough",
        Duration::from_secs(180),
        || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("reclab up ended early ({status})");
            }
            the_run_dir(sb).filter(|d| ready(d))
        },
    );
    sb.remember_run(&run_dir.file_name().unwrap().to_string_lossy());
    let pid = owner_pid(&run_dir).expect("run.json names its reclab process");
    // SAFETY: kill(2) of the reclab process this test started.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    // The unwind destroys the domain and removes the network and services: seconds.
    wait_for(
        "reclab up to unwind and exit",
        Duration::from_secs(120),
        || child.try_wait().unwrap(),
    );
    let out = child.wait_with_output().unwrap();
    (out.status.code(), stderr(&out), run_dir)
}

#[test]
#[ignore = "end-to-end: needs root and a private libvirtd; scripts/test runs it"]
fn ctrl_c_or_sigterm_during_up_unwinds_everything_and_exits_130_or_143() {
    let sb = Sandbox::start("crash-int");
    let scratch = tempfile::tempdir_in(dev_dir()).unwrap();
    let blank = blank_disk(scratch.path());
    // A guest that never answers: without the signal, up would wait the full three minutes.
    let backup = Backup::restore(Some(&blank));
    let fingerprint = backup.fingerprint();
    let lab = backup.lab("int", "3m");
    let hv = sb.hv();

    // Ctrl-C while the tier boots: the domain runs and reclab waits for its agent.
    let (code, err, run_dir) = interrupt_up(&sb, &lab, &[], libc::SIGINT, |_| {
        hv.list_domains()
            .unwrap()
            .iter()
            .any(|d| d.name.starts_with("reclab-"))
    });
    assert!(err.contains("interrupted by SIGINT"), "says why: {err}");
    assert!(
        err.contains("removing what was created"),
        "unwinds what it did: {err}"
    );
    assert!(
        !err.contains("could not remove"),
        "removed everything: {err}"
    );
    assert!(!err.contains("not ready after"), "not a timeout: {err}");
    assert_clean(&sb, &run_dir, &backup, &fingerprint, "SIGINT");
    assert_eq!(the_run_dir(&sb), None, "the run directory is gone");

    // SIGTERM between steps: while the test hook pauses after step 5 (network, firewall rules
    // and lab services exist by then).
    let (code_term, err_term, run_dir) = interrupt_up(
        &sb,
        &lab,
        &[("RECLAB_PAUSE_AFTER_STEP", "5".into())],
        libc::SIGTERM,
        |d| d.join("paused-after-step").exists(),
    );
    assert!(err_term.contains("interrupted by SIGTERM"), "{err_term}");
    assert!(!err_term.contains("could not remove"), "{err_term}");
    assert_clean(&sb, &run_dir, &backup, &fingerprint, "SIGTERM");

    // The shell's convention for "ended by a signal" (main maps `Interrupted` to 128 + signal).
    assert_eq!(code, Some(130), "{err}");
    assert_eq!(code_term, Some(143), "{err_term}");
}

/// `reclab ARGS` in the sandbox, not waited for.
fn spawn_reclab(sb: &Sandbox, args: &[&str]) -> Child {
    Command::new(repo().join("scripts/sandbox"))
        .args([
            "exec",
            &sb.name,
            "env",
            &format!("RECLAB_CONNECT={}", sb.uri),
        ])
        .arg(env!("CARGO_BIN_EXE_reclab"))
        .arg("--state-dir")
        .arg(&sb.state_dir)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn reclab")
}

#[test]
#[ignore = "end-to-end: needs root and a private libvirtd; scripts/test runs it"]
fn two_parallel_downs_of_one_lab_both_succeed_and_leave_nothing() {
    let sb = Sandbox::start("crash-downs");
    let backup = Backup::restore(None);
    let fingerprint = backup.fingerprint();
    let lab = backup.lab("downs", "3m");
    let out = sb.reclab(&["up", "--json", lab.to_str().unwrap()]);
    check(&out, "reclab up");
    let up: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let run = up["run"].as_str().unwrap().to_string();
    sb.remember_run(&run);
    let run_dir = sb.state_dir.join("runs").join(&run);
    let downs: Vec<Child> = (0..2)
        .map(|_| spawn_reclab(&sb, &["down", "downs"]))
        .collect();
    for (k, child) in downs.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        check(&out, &format!("reclab down #{}", k + 1));
    }
    assert_clean(&sb, &run_dir, &backup, &fingerprint, "two parallel downs");
}

#[test]
#[ignore = "end-to-end: needs root and a private libvirtd; scripts/test runs it"]
fn run_killed_during_verify_is_collected_by_the_next_gc() {
    let sb = Sandbox::start("crash-drill");
    let backup = Backup::restore(None);
    let fingerprint = backup.fingerprint();
    let lab = backup.lab("drill", "3m");
    // A check that keeps the drill in verify long enough to be killed there.
    let mut text = std::fs::read_to_string(&lab).unwrap();
    text.push_str(
        "\n[[check]]\nname = \"slow\"\nvm = \"db\"\nkind = \"exec\"\n\
         command = \"sleep 170\"\ntimeout = \"3m\"\n",
    );
    std::fs::write(&lab, text).unwrap();
    let mut child = spawn_reclab(&sb, &["run", lab.to_str().unwrap()]);
    let hv = sb.hv();
    // In verify: the lab is up and the slow check's `sleep` runs in the guest.
    let run_dir = wait_for("the drill to verify", Duration::from_secs(240), || {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("reclab run ended early ({status})");
        }
        let dir = the_run_dir(&sb)?;
        let rec: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("run.json")).ok()?).ok()?;
        if rec["state"] != "up" {
            return None;
        }
        assert_eq!(rec["owner"], "run", "the drill owns its lab: {rec}");
        let domain = rec["vms"][0]["domain"].as_str()?.to_string();
        let (_, ps) = guest_sh(&hv, &domain, "ps -o args 2>/dev/null || ps");
        ps.contains("sleep 170").then_some(dir)
    });
    sb.remember_run(&run_dir.file_name().unwrap().to_string_lossy());
    let pid = owner_pid(&run_dir).expect("run.json names its reclab process");
    // SAFETY: kill(2) of the reclab process this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let status = child.wait().unwrap();
    assert!(!status.success(), "{status}");
    assert!(run_dir.exists(), "the killed drill left its lab");

    let out = sb.reclab(&["gc"]);
    check(&out, "reclab gc after the killed drill");
    assert!(
        stdout(&out).contains("orphaned: its reclab process")
            && stdout(&out).contains("reclab run"),
        "gc output: {}",
        stdout(&out)
    );
    assert_clean(
        &sb,
        &run_dir,
        &backup,
        &fingerprint,
        "run killed during verify",
    );
}

/// `scripts/collect-labs`, the step with which `scripts/test`, `scripts/demo` and the harness
/// remove what an interrupted run left in a state directory.
fn collect_labs(sb: &Sandbox) -> Output {
    Command::new(repo().join("scripts/collect-labs"))
        .arg(&sb.state_dir)
        .arg(&sb.name)
        .env("RECLAB", env!("CARGO_BIN_EXE_reclab"))
        .output()
        .expect("scripts/collect-labs")
}

/// `ip ARGS` in the sandbox's network namespace, whether or not its libvirtd runs.
fn in_sandbox_ns(sb: &Sandbox, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", &format!("reclab-sbx-{}", sb.name)])
        .args(args)
        .output()
        .unwrap();
    check(&out, &format!("{args:?} in the sandbox's namespace"));
    stdout(&out)
}

/// A lab of `lab` brought up in `sb`: its run id, and the PID of its dnsmasq.
fn up_with_services(sb: &Sandbox, lab: &Path) -> (String, i32) {
    let out = sb.reclab(&["up", "--json", lab.to_str().unwrap()]);
    check(&out, "reclab up");
    let up: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let run = up["run"].as_str().unwrap().to_string();
    sb.remember_run(&run);
    let pidfile = sb
        .state_dir
        .join("runs")
        .join(&run)
        .join("services-lan.pid");
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(alive(pid), "dnsmasq runs");
    (run, pid)
}

fn alive(pid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // A zombie has ended.
    !stat.is_empty() && !stat.contains(") Z ")
}

/// The PID in a sandbox daemon's pid file.
fn daemon_pid(sb: &Sandbox, daemon: &str) -> i32 {
    let f = dev_dir()
        .join("sandbox")
        .join(&sb.name)
        .join(format!("{daemon}.pid"));
    std::fs::read_to_string(&f)
        .unwrap_or_else(|e| panic!("{}: {e}", f.display()))
        .trim()
        .parse()
        .unwrap()
}

/// The host-side pieces of run `run8` reclab made: its lab-services namespace, its dnsmasq
/// and any process naming its run directory are gone.
fn assert_host_side_gone(sb: &Sandbox, run8: &str, dnsmasq: i32, what: &str) {
    let handle = Path::new("/run/netns").join(format!("reclab-{run8}-lan"));
    assert!(!handle.exists(), "{what}: {} left", handle.display());
    assert!(!alive(dnsmasq), "{what}: dnsmasq {dnsmasq} still runs");
    let procs = processes_mentioning(&sb.state_dir.display().to_string());
    assert!(
        procs.is_empty(),
        "{what}: processes of the run left: {procs:?}"
    );
    let runs = sb.state_dir.join("runs").join(run8);
    assert!(!runs.exists(), "{what}: the run directory is left");
}

#[test]
#[ignore = "end-to-end: needs root and a private libvirtd; scripts/test runs it"]
fn host_side_pieces_of_a_run_go_once_its_libvirtd_and_guests_are_gone() {
    let backup = Backup::restore(None);
    let fingerprint = backup.fingerprint();
    let lab = backup.lab("gone", "3m");

    // libvirtd killed by its PID: the guest's QEMU keeps running, so the collection refuses,
    // naming libvirtd, and leaves the lab fenced (rules, veth, services all kept).
    let sb = Sandbox::start("crash-gone");
    let (run8, dnsmasq) = up_with_services(&sb, &lab);
    let lvd = daemon_pid(&sb, "libvirtd");
    // SAFETY: kill(2) of the sandbox's libvirtd, which this test started.
    assert_eq!(unsafe { libc::kill(lvd, libc::SIGKILL) }, 0);
    wait_for("libvirtd to die", Duration::from_secs(10), || {
        (!alive(lvd)).then_some(())
    });
    let out = collect_labs(&sb);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("cannot reach libvirtd") && err.contains("still runs (QEMU pid"),
        "names libvirtd and the running guest: {err}"
    );
    assert!(
        in_sandbox_ns(&sb, &["iptables", "-w", "-S"]).contains(&format!("reclab:{run8}")),
        "the bridge's rules are kept"
    );
    assert!(in_sandbox_ns(&sb, &["ip", "-o", "link"]).contains(&format!("rv{run8}s0")));
    assert!(alive(dnsmasq));
    // The guest's QEMU ends too (killed by its PID): now the collection removes every
    // host-side piece, with no daemon to ask.
    let qemu: i32 = err
        .split("QEMU pid ")
        .nth(1)
        .and_then(|t| t.split(')').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("the QEMU pid is named: {err}"));
    // SAFETY: kill(2) of the guest's QEMU, started by the sandbox this test started.
    assert_eq!(unsafe { libc::kill(qemu, libc::SIGKILL) }, 0);
    wait_for("QEMU to die", Duration::from_secs(10), || {
        (!alive(qemu)).then_some(())
    });
    let out = collect_labs(&sb);
    check(&out, "scripts/collect-labs once the guest is gone");
    let rules = in_sandbox_ns(&sb, &["iptables", "-w", "-S"])
        + &in_sandbox_ns(&sb, &["ip6tables", "-w", "-S"]);
    assert!(!rules.contains("reclab:"), "rules left:\n{rules}");
    let links = in_sandbox_ns(&sb, &["ip", "-o", "link"]);
    assert!(!links.contains(&format!("rv{run8}")), "veth left:\n{links}");
    assert_host_side_gone(&sb, &run8, dnsmasq, "libvirtd and QEMU killed");
    drop(sb);

    // The whole sandbox stopped under a lab, as a killed `scripts/test` leaves it: the
    // lab-services namespace and dnsmasq outlive it; the collection, on the host, removes them.
    let sb = Sandbox::start("crash-gone");
    let (run8, dnsmasq) = up_with_services(&sb, &lab);
    let out = Command::new(repo().join("scripts/sandbox"))
        .args(["stop", &sb.name])
        .output()
        .unwrap();
    check(&out, "scripts/sandbox stop under a running lab");
    assert!(alive(dnsmasq), "dnsmasq outlives the sandbox");
    let out = collect_labs(&sb);
    check(&out, "scripts/collect-labs after the sandbox stopped");
    assert!(
        stderr(&out).contains("cannot be reached"),
        "says why it removed without libvirtd: {}",
        stderr(&out)
    );
    assert_host_side_gone(&sb, &run8, dnsmasq, "sandbox stopped");
    assert_eq!(
        backup.fingerprint(),
        fingerprint,
        "production image changed"
    );
}

#[test]
#[ignore = "end-to-end: needs root and a private libvirtd; scripts/test runs it"]
fn gc_from_a_second_state_directory_leaves_a_running_lab_alone() {
    let sb = Sandbox::start("crash-other");
    let backup = Backup::restore(None);
    let fingerprint = backup.fingerprint();
    let lab = backup.lab("other", "3m");
    let (run8, dnsmasq) = up_with_services(&sb, &lab);
    let run_dir = sb.state_dir.join("runs").join(&run8);
    let domain = format!("reclab-other-{run8}-db");
    let rules = || {
        in_sandbox_ns(&sb, &["iptables", "-w", "-S"])
            + &in_sandbox_ns(&sb, &["ip6tables", "-w", "-S"])
    };
    let before = rules();
    assert!(before.contains(&format!("reclab:{run8}")), "{before}");

    // A second reclab with its own state directory, on the same hypervisor and host.
    let other = tempfile::tempdir_in(dev_dir()).unwrap();
    let out = Command::new(repo().join("scripts/sandbox"))
        .args([
            "exec",
            &sb.name,
            "env",
            &format!("RECLAB_CONNECT={}", sb.uri),
        ])
        .arg(env!("CARGO_BIN_EXE_reclab"))
        .arg("--state-dir")
        .arg(other.path())
        .arg("gc")
        .output()
        .unwrap();
    check(&out, "reclab gc with a second state directory");
    let said = stdout(&out);
    assert!(
        said.contains(&format!("kept run {run8} (owned by {}", run_dir.display())),
        "says whose it is: {said}"
    );
    assert!(!said.contains("removed"), "removes nothing: {said}");

    // The lab keeps working: its guest runs and reaches its lab services, and its network,
    // firewall rules and dnsmasq are all still there.
    assert_eq!(rules(), before, "the lab's firewall rules are untouched");
    let nets: Vec<String> = sb
        .hv()
        .list_networks()
        .unwrap()
        .into_iter()
        .map(|n| n.name)
        .collect();
    assert!(nets.contains(&format!("reclab-{run8}-lan")), "{nets:?}");
    assert!(alive(dnsmasq), "the lab's dnsmasq runs");
    let (rc, host) = guest_sh(&sb.hv(), &domain, "hostname");
    assert_eq!((rc, host.trim()), (0, "db"));
    let (rc, ping) = guest_sh(&sb.hv(), &domain, "ping -c 1 -W 3 10.20.0.1");
    assert_eq!(rc, 0, "the lab services answer inside the lab: {ping}");
    let out = sb.reclab(&["status", "--json", "other"]);
    check(&out, "reclab status");
    let st: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(st[0]["vms"][0]["state"], "running", "{st}");

    check(
        &sb.reclab(&["down", "other"]),
        "reclab down by its own state directory",
    );
    assert_clean(
        &sb,
        &run_dir,
        &backup,
        &fingerprint,
        "gc from a second state dir",
    );
    let owner = Path::new("/run/reclab/owners").join(&run8);
    assert!(!owner.exists(), "{} left", owner.display());
}

/// The PID of the QEMU process running `domain` (`-name guest=DOMAIN,…`), if any.
fn qemu_of(domain: &str) -> Option<i32> {
    let want = format!("guest={domain},");
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        cmdline
            .split(|b| *b == 0)
            .any(|a| a.starts_with(want.as_bytes()))
            .then_some(pid)
    })
}

#[test]
#[ignore = "end-to-end: needs root and a private libvirtd; scripts/test runs it"]
fn up_fails_naming_libvirtd_when_it_stays_away_and_leaves_the_lab_fenced() {
    let sb = Sandbox::start("crash-away");
    let backup = Backup::restore(None);
    let fingerprint = backup.fingerprint();
    let lab = backup.lab("away", "3m");
    let mut child = spawn_up(&sb, &lab, &[]);
    // In the boot wait (the guest prints on its console), libvirtd is killed for good.
    let run_dir = wait_for("a booting run", Duration::from_secs(120), || {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("reclab up ended early ({status})");
        }
        let dir = the_run_dir(&sb)?;
        let serial = std::fs::metadata(dir.join("db-serial.log")).ok()?;
        (serial.len() > 0).then_some(dir)
    });
    let run8 = run_dir.file_name().unwrap().to_string_lossy().into_owned();
    sb.remember_run(&run8);
    let dnsmasq: i32 = std::fs::read_to_string(run_dir.join("services-lan.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let lvd = daemon_pid(&sb, "libvirtd");
    // SAFETY: kill(2) of the sandbox's libvirtd, which this test started.
    assert_eq!(unsafe { libc::kill(lvd, libc::SIGKILL) }, 0);
    // Up gives up after its reconnect bound (30 s), well before the guest's 3 minutes.
    wait_for("reclab up to end", Duration::from_secs(170), || {
        child.try_wait().unwrap()
    });
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("lost the connection to libvirtd at")
            && err.contains("is the libvirt daemon running?"),
        "names libvirtd: {err}"
    );
    assert!(
        !err.contains("qemu-ga") && !err.contains("not ready after"),
        "the agent is not blamed: {err}"
    );
    // Its unwind could not destroy the domain: it kept the rest, so the lab stays fenced.
    assert!(err.contains("stays fenced"), "{err}");
    let rules = || {
        in_sandbox_ns(&sb, &["iptables", "-w", "-S"])
            + &in_sandbox_ns(&sb, &["ip6tables", "-w", "-S"])
    };
    assert!(rules().contains(&format!("reclab:{run8}")), "rules kept");
    assert!(alive(dnsmasq));
    // Once its QEMU is gone too, the collection removes the rest without libvirtd.
    let domain = format!("reclab-away-{run8}-db");
    let qemu = qemu_of(&domain).expect("the guest's QEMU outlives libvirtd");
    // SAFETY: kill(2) of the guest's QEMU, started by the sandbox this test started.
    assert_eq!(unsafe { libc::kill(qemu, libc::SIGKILL) }, 0);
    wait_for("QEMU to die", Duration::from_secs(10), || {
        (!alive(qemu)).then_some(())
    });
    check(&collect_labs(&sb), "scripts/collect-labs");
    assert!(!rules().contains("reclab:"), "rules left:\n{}", rules());
    let links = in_sandbox_ns(&sb, &["ip", "-o", "link"]);
    assert!(!links.contains(&run8), "bridge or veth left:\n{links}");
    assert_host_side_gone(&sb, &run8, dnsmasq, "libvirtd gone for good during up");
    assert_eq!(
        backup.fingerprint(),
        fingerprint,
        "production image changed"
    );
}

/// Every run directory of the sandbox's state dir.
fn run_dirs(sb: &Sandbox) -> Vec<PathBuf> {
    std::fs::read_dir(sb.state_dir.join("runs"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// `reclab ARGS` in the sandbox with extra environment, not waited for.
fn spawn_reclab_with(sb: &Sandbox, env: &[(&str, &str)], args: &[&str]) -> Child {
    let mut cmd = Command::new(repo().join("scripts/sandbox"));
    cmd.args([
        "exec",
        &sb.name,
        "env",
        &format!("RECLAB_CONNECT={}", sb.uri),
    ]);
    for (k, v) in env {
        cmd.arg(format!("{k}={v}"));
    }
    cmd.arg(env!("CARGO_BIN_EXE_reclab"))
        .arg("--state-dir")
        .arg(&sb.state_dir)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn reclab")
}

/// An orphan: an `up` killed with SIGKILL once it paused after step 5 (its domain defined,
/// network, firewall rules and lab services created). Returns its run directory.
fn orphan(sb: &Sandbox, lab: &Path) -> PathBuf {
    let before = run_dirs(sb);
    let mut child = spawn_up(sb, lab, &[("RECLAB_PAUSE_AFTER_STEP", "5".into())]);
    let dir = wait_for("an up to pause", Duration::from_secs(120), || {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("reclab up ended early ({status})");
        }
        run_dirs(sb)
            .into_iter()
            .find(|d| !before.contains(d) && d.join("paused-after-step").exists())
    });
    sb.remember_run(&dir.file_name().unwrap().to_string_lossy());
    let pid = owner_pid(&dir).expect("run.json names its reclab process");
    // SAFETY: kill(2) of the reclab process this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    assert!(!child.wait().unwrap().success());
    dir
}

#[test]
#[ignore = "end-to-end: needs root and a private libvirtd; scripts/test runs it"]
fn gc_busy_with_an_orphan_never_takes_a_new_up_for_a_leftover() {
    let sb = Sandbox::start("crash-race");
    let backup = Backup::restore(None);
    let fingerprint = backup.fingerprint();
    let lab = backup.lab("race", "3m");
    let marker = sb.state_dir.join("gc-paused-before-sweep");
    let rules = || {
        in_sandbox_ns(&sb, &["iptables", "-w", "-S"])
            + &in_sandbox_ns(&sb, &["ip6tables", "-w", "-S"])
    };
    let networks = || -> Vec<String> {
        sb.hv()
            .list_networks()
            .unwrap()
            .into_iter()
            .map(|n| n.name)
            .collect()
    };
    // Three tries: `gc` has removed an orphan and, held by its test hook before the sweep,
    // lets it sweep once the new `up` has its run directory, then once it has its network
    // and firewall rules too, then once it boots its guest.
    for point in ["run directory", "network and rules", "boot"] {
        let what = format!("gc released at the up's {point}");
        let dead = orphan(&sb, &lab);
        let dead8 = dead.file_name().unwrap().to_string_lossy().into_owned();
        let gc = spawn_reclab_with(&sb, &[("RECLAB_PAUSE_BEFORE_SWEEP", "1")], &["gc"]);
        wait_for(
            "gc to pause before its sweep",
            Duration::from_secs(60),
            || marker.exists().then_some(()),
        );
        assert!(!dead.exists(), "{what}: gc removed the orphan first");
        let mut up = spawn_up(&sb, &lab, &[]);
        let dir = wait_for(
            &format!("the up's {point}"),
            Duration::from_secs(120),
            || {
                if let Ok(Some(status)) = up.try_wait() {
                    panic!("{what}: reclab up ended early ({status})");
                }
                let dir = run_dirs(&sb).pop()?;
                dir.join("run.json").exists().then_some(())?;
                let run8 = dir.file_name()?.to_string_lossy().into_owned();
                let ready = match point {
                    "run directory" => true,
                    "network and rules" => {
                        networks().contains(&format!("reclab-{run8}-lan"))
                            && rules().contains(&format!("reclab:{run8}"))
                    }
                    _ => std::fs::metadata(dir.join("db-serial.log")).is_ok_and(|m| m.len() > 0),
                };
                ready.then_some(dir)
            },
        );
        let run8 = dir.file_name().unwrap().to_string_lossy().into_owned();
        sb.remember_run(&run8);
        std::fs::remove_file(&marker).unwrap();
        let out = gc.wait_with_output().unwrap();
        check(&out, &format!("reclab gc ({what})"));
        let said = stdout(&out);
        assert!(
            said.contains(&format!("run {dead8} (orphaned: its reclab process")),
            "{what}: gc removed the orphan: {said}"
        );
        assert!(
            !said.contains(&run8),
            "{what}: gc left the new run alone: {said}"
        );

        wait_for("reclab up to end", Duration::from_secs(240), || {
            up.try_wait().unwrap()
        });
        let out = up.wait_with_output().unwrap();
        check(&out, &format!("reclab up ({what})"));
        assert!(
            networks().contains(&format!("reclab-{run8}-lan")),
            "{what}: the network survived"
        );
        assert!(
            rules().contains(&format!("reclab:{run8}")),
            "{what}: the rules survived"
        );
        let (rc, host) = guest_sh(&sb.hv(), &format!("reclab-race-{run8}-db"), "hostname");
        assert_eq!((rc, host.trim()), (0, "db"), "{what}");
        check(
            &sb.reclab(&["down", &run8]),
            &format!("reclab down ({what})"),
        );
        assert_clean(&sb, &dir, &backup, &fingerprint, &what);
    }
}

#[test]
#[ignore = "end-to-end: needs root and a private libvirtd; scripts/test runs it"]
fn a_killed_test_run_leaves_nothing_once_the_next_run_collected() {
    let sb = Sandbox::start("crash-tkill");
    let backup = Backup::restore(None);
    let fingerprint = backup.fingerprint();
    let lab = backup.lab("tkill", "3m");
    // A test in the middle of an `up`: its guest boots.
    let mut child = spawn_up(&sb, &lab, &[]);
    let run_dir = wait_for("a booting run", Duration::from_secs(120), || {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("reclab up ended early ({status})");
        }
        let dir = the_run_dir(&sb)?;
        let serial = std::fs::metadata(dir.join("db-serial.log")).ok()?;
        (serial.len() > 0).then_some(dir)
    });
    let run8 = run_dir.file_name().unwrap().to_string_lossy().into_owned();
    sb.remember_run(&run8);
    let dnsmasq: i32 = std::fs::read_to_string(run_dir.join("services-lan.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let domain = format!("reclab-tkill-{run8}-db");
    let qemu = qemu_of(&domain).expect("the guest's QEMU runs");
    // `kill -9` of the test run: its reclab, and (the worst case) the sandbox's daemons, each
    // by its PID. The guest's QEMU and the lab's dnsmasq are left running.
    let reclab = owner_pid(&run_dir).expect("run.json names its reclab process");
    for pid in [
        reclab,
        daemon_pid(&sb, "libvirtd"),
        daemon_pid(&sb, "virtlogd"),
    ] {
        // SAFETY: kill(2) of processes this test (and its sandbox) started.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0, "pid {pid}");
    }
    assert!(!child.wait().unwrap().success());
    assert!(alive(qemu) && alive(dnsmasq), "what a killed run leaves");

    // The next `scripts/test` run starts with this collection step.
    let out = Command::new(repo().join("scripts/collect-e2e"))
        .arg(&sb.name)
        .env("RECLAB", env!("CARGO_BIN_EXE_reclab"))
        .output()
        .unwrap();
    check(&out, "scripts/collect-e2e");
    assert!(!alive(qemu), "the guest's QEMU {qemu} is gone");
    assert_host_side_gone(&sb, run8.as_str(), dnsmasq, "the collection");
    // Rules, bridges and veths lived in the sandbox's namespace: it is gone, with its daemons.
    let sandbox_ns = Path::new("/run/netns").join(format!("reclab-sbx-{}", sb.name));
    assert!(!sandbox_ns.exists(), "{} left", sandbox_ns.display());
    let listed = Command::new(repo().join("scripts/sandbox"))
        .arg("list")
        .output()
        .unwrap();
    assert!(
        !stdout(&listed).lines().any(|l| l == sb.name),
        "the sandbox still runs"
    );
    let sandbox_dir = dev_dir().join("sandbox").join(&sb.name);
    let procs = processes_mentioning(&sandbox_dir.display().to_string());
    assert!(procs.is_empty(), "processes of the sandbox left: {procs:?}");
    let links = stdout(&Command::new("ip").args(["-o", "link"]).output().unwrap());
    assert!(
        !links.contains(&run8),
        "a link of the run on the host:\n{links}"
    );
    assert!(qemu_of(&domain).is_none(), "no QEMU runs the lab's domain");
    assert_eq!(
        backup.fingerprint(),
        fingerprint,
        "production image changed"
    );
}

/// Sends SIGCONT to a stopped process when dropped (also when the test fails).
struct Resume(i32);

impl Drop for Resume {
    fn drop(&mut self) {
        // SAFETY: kill(2) of the sandbox's libvirtd, which this test stopped.
        unsafe { libc::kill(self.0, libc::SIGCONT) };
    }
}

#[test]
#[ignore = "end-to-end: needs root and a private libvirtd; scripts/test runs it"]
fn up_notices_a_hung_libvirtd_names_it_and_leaves_the_lab_fenced() {
    let sb = Sandbox::start("crash-hung");
    let backup = Backup::restore(None);
    let fingerprint = backup.fingerprint();
    let lab = backup.lab("hung", "3m");
    let mut child = spawn_up(&sb, &lab, &[]);
    // In the boot wait (the guest prints on its console), libvirtd stops answering: SIGSTOP.
    let run_dir = wait_for("a booting run", Duration::from_secs(120), || {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("reclab up ended early ({status})");
        }
        let dir = the_run_dir(&sb)?;
        let serial = std::fs::metadata(dir.join("db-serial.log")).ok()?;
        (serial.len() > 0).then_some(dir)
    });
    let run8 = run_dir.file_name().unwrap().to_string_lossy().into_owned();
    sb.remember_run(&run8);
    let dnsmasq: i32 = std::fs::read_to_string(run_dir.join("services-lan.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let lvd = daemon_pid(&sb, "libvirtd");
    // SAFETY: kill(2) of the sandbox's libvirtd, which this test started.
    assert_eq!(unsafe { libc::kill(lvd, libc::SIGSTOP) }, 0);
    let resume = Resume(lvd);
    // Keepalive closes the connection (~30 s), one reconnect finds the daemon taking the
    // connection without answering (10 s), and the unwind's fresh connection too: well
    // before the guest's 3 minutes.
    wait_for("reclab up to end", Duration::from_secs(170), || {
        child.try_wait().unwrap()
    });
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("lost the connection to libvirtd at")
            && err.contains("took the connection but did not answer"),
        "names libvirtd and how it failed: {err}"
    );
    assert!(
        !err.contains("qemu-ga") && !err.contains("not ready after"),
        "the agent is not blamed: {err}"
    );
    // Its unwind could not destroy the domain: it kept the rest, so the lab stays fenced.
    assert!(err.contains("stays fenced"), "{err}");
    let rules = || {
        in_sandbox_ns(&sb, &["iptables", "-w", "-S"])
            + &in_sandbox_ns(&sb, &["ip6tables", "-w", "-S"])
    };
    assert!(rules().contains(&format!("reclab:{run8}")), "rules kept");
    assert!(alive(dnsmasq));
    assert!(
        qemu_of(&format!("reclab-hung-{run8}-db")).is_some(),
        "the guest still runs"
    );
    // libvirtd answers again: the collection removes the whole lab through it.
    drop(resume);
    check(
        &collect_labs(&sb),
        "scripts/collect-labs once libvirtd answers",
    );
    assert_clean(&sb, &run_dir, &backup, &fingerprint, "a hung libvirtd");
}
