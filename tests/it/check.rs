//! `reclab check` on labs restored from files (the libvirt test driver, no daemon): relative
//! paths and MAC addresses shared across VMs.

use std::path::Path;
use std::process::{Command, Output, Stdio};

/// A domain XML with one qcow2 disk and one NIC on production network `prod`.
fn domain_xml(name: &str, mac: &str) -> String {
    format!(
        "<domain type='kvm'>
  <name>{name}</name>
  <memory unit='MiB'>256</memory>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/nonexistent/{name}.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='network'>
      <mac address='{mac}'/>
      <source network='prod'/>
      <model type='virtio'/>
    </interface>
  </devices>
</domain>
"
    )
}

/// Writes `NAME.xml` and `NAME.qcow2` for each (name, mac) and a lab file naming them by
/// paths relative to its own directory.
fn write_lab(dir: &Path, vms: &[(&str, &str)]) {
    let mut lab = String::from(
        "name = \"files\"\nconnect = \"test:///default\"\naccel = \"tcg\"\n\
         [segment.lan]\nproduction = [\"prod\"]\n",
    );
    for (name, mac) in vms {
        std::fs::write(dir.join(format!("{name}.xml")), domain_xml(name, mac)).unwrap();
        let img = dir.join(format!("{name}.qcow2"));
        let made = Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(&img)
            .arg("16M")
            .output()
            .expect("qemu-img (scripts/setup installs it)");
        assert!(made.status.success(), "{made:?}");
        lab.push_str(&format!(
            "[[vm]]\nname = \"{name}\"\n\
             from = {{ xml = \"{name}.xml\", disks = {{ vda = \"{name}.qcow2\" }} }}\n"
        ));
    }
    std::fs::write(dir.join("lab.toml"), lab).unwrap();
}

/// `reclab check LAB` run in `cwd`, with a state directory of its own.
fn check(cwd: &Path, lab: &str) -> Output {
    let state = tempfile::tempdir().unwrap();
    check_in(cwd, state.path(), lab)
}

fn check_in(cwd: &Path, state: &Path, lab: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_reclab"))
        .current_dir(cwd)
        .arg("--state-dir")
        .arg(state)
        .args(["check", lab])
        .env_remove("RECLAB_CONNECT")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn a_lab_file_given_by_a_relative_path_resolves_its_files_from_anywhere() {
    let top = tempfile::tempdir().unwrap();
    let dir = std::fs::canonicalize(top.path()).unwrap().join("labs");
    std::fs::create_dir(&dir).unwrap();
    write_lab(&dir, &[("db", "52:54:00:10:00:01")]);
    // From the lab's directory, from its parent and by absolute path: the same plan.
    for (cwd, lab) in [
        (dir.clone(), "lab.toml".to_string()),
        (dir.join(".."), "labs/lab.toml".to_string()),
        (dir.clone(), "../labs/./lab.toml".to_string()),
        (
            Path::new("/").to_path_buf(),
            dir.join("lab.toml").display().to_string(),
        ),
    ] {
        let out = check(&cwd, &lab);
        assert_eq!(
            out.status.code(),
            Some(0),
            "check {lab} in {cwd:?}: {}",
            text(&out)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("lab files: ok (1 vm"), "{stdout}");
        let image = dir.join("db.qcow2").display().to_string();
        assert!(
            stdout.contains(&image),
            "the backing image by its absolute path: {stdout}"
        );
    }
}

#[test]
fn a_relative_state_dir_is_taken_from_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    let dir = std::fs::canonicalize(dir.path()).unwrap();
    write_lab(&dir, &[("db", "52:54:00:10:00:01")]);
    let out = check_in(&dir, Path::new("state"), "lab.toml");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let overlays = dir.join("state/runs").display().to_string();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&overlays),
        "the overlay in {overlays}: {stdout}"
    );
}

#[test]
fn two_vms_with_one_production_mac_on_one_segment_are_refused_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    write_lab(
        dir.path(),
        &[
            ("db", "52:54:00:10:00:01"),
            ("app", "52:54:00:10:00:02"),
            ("web", "52:54:00:10:00:01"),
        ],
    );
    let out = check(dir.path(), dir.path().join("lab.toml").to_str().unwrap());
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("vms db and web both have MAC 52:54:00:10:00:01 on segment lan"),
        "{err}"
    );
    assert!(!err.contains("app"), "app's MAC is its own: {err}");
}

#[test]
fn distinct_macs_on_one_segment_pass() {
    let dir = tempfile::tempdir().unwrap();
    write_lab(
        dir.path(),
        &[("db", "52:54:00:10:00:01"), ("app", "52:54:00:10:00:02")],
    );
    let out = check(dir.path(), dir.path().join("lab.toml").to_str().unwrap());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}
