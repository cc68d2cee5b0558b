//! The `reclab` binary's command layer: output to a closed pipe (the rest of the output is
//! dropped; the command ends with its own exit code, not a panic).

use std::process::{Command, Stdio};

/// Runs `reclab ARGS` with a state directory of its own and stdout a pipe whose reader has
/// already gone, as in `reclab status | head` once `head` has exited.
fn run_into_closed_pipe(args: &[&str]) -> std::process::Output {
    let state = tempfile::tempdir().unwrap();
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    Command::new(env!("CARGO_BIN_EXE_reclab"))
        .arg("--state-dir")
        .arg(state.path())
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

#[test]
fn a_closed_stdout_ends_a_command_quietly_with_success() {
    // Each of these prints a line ("no labs", "[]", "no drills recorded ..."), so each write
    // meets the closed pipe.
    for args in [&["status"][..], &["status", "--json"], &["history", "erp"]] {
        let out = run_into_closed_pipe(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "reclab {args:?}: {err}");
        assert_eq!(err, "", "reclab {args:?}");
    }
}

#[test]
fn an_error_still_fails_with_exit_code_2_when_stdout_is_closed() {
    let out = run_into_closed_pipe(&["down"]);
    // clap's own usage error (exit 2) for the missing lab; nothing was printed on stdout.
    assert_eq!(out.status.code(), Some(2));
    let out = run_into_closed_pipe(&["check", "/nonexistent/lab.toml"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("cannot read the lab file"), "{err}");
}

#[test]
fn a_bad_moment_is_refused_before_connecting_to_libvirt() {
    let dir = tempfile::tempdir().unwrap();
    let lab = dir.path().join("erp.toml");
    std::fs::write(
        &lab,
        "name = \"erp\"\n[segment.lan]\n[[vm]]\nname = \"db\"\n\
         from = { domain = \"prod-db\", snapshot = \"nightly\" }\n",
    )
    .unwrap();
    let lab = lab.to_str().unwrap();
    // A URI that cannot be opened (a test-driver file that is not there): no network.
    let unreachable = format!("test://{}/no-such-node.xml", dir.path().display());
    for (args, wrong) in [
        (
            &["up", lab, "--at", "the day before yesterday-ish"][..],
            "--at",
        ),
        (&["run", lab, "--at", "yesterday 25:00"], "--at"),
        (&["points", lab, "--at", "someday"], "--at"),
        (&["up", lab, "--tz", "Mars/Olympus_Mons"], "--tz"),
        (
            &["run", lab, "--at", "2h ago", "--tz", "Nowhere/City"],
            "--tz",
        ),
    ] {
        let state = tempfile::tempdir().unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_reclab"))
            .arg("--state-dir")
            .arg(state.path())
            .arg("--connect")
            .arg(&unreachable)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "reclab {args:?}: {err}");
        assert!(
            err.starts_with(&format!("reclab: error: {wrong}: ")),
            "reclab {args:?}: {err}"
        );
        assert!(
            !err.contains("no-such-node"),
            "reclab {args:?} connected: {err}"
        );
    }
}
