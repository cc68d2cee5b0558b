//! Running host commands (qemu-img, ip, iptables, dnsmasq) with context on every failure.

use anyhow::{Context, Result, bail};
use std::process::{Command, Output};

use crate::base::text::tail;

/// Run a program to completion; a non-zero exit is an error that quotes the command and
/// the end of its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<Output> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program} (is it installed?)"))?;
    if !out.status.success() {
        bail!(
            "{} {} failed ({}): {}",
            program,
            args.join(" "),
            out.status,
            tail(&String::from_utf8_lossy(&out.stderr), 5)
        );
    }
    Ok(out)
}

/// Like [`run`] but returns stdout as a string.
pub fn run_stdout(program: &str, args: &[&str]) -> Result<String> {
    Ok(String::from_utf8_lossy(&run(program, args)?.stdout).into_owned())
}

/// Start time of a process in clock ticks since boot (field 22 of /proc/PID/stat), used to
/// make sure a recorded PID still names the process reclab started.
pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// Whether a process with this PID and start time is alive. A zombie is not: it has exited,
/// and only waits for its parent (or an init that may never reap it) to collect its status.
pub fn process_alive(pid: u32, start_time: u64) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let Some(after) = stat.rfind(')').and_then(|i| stat.get(i + 2..)) else {
        return false;
    };
    let mut fields = after.split_whitespace();
    let state = fields.next().unwrap_or("");
    let start = fields.nth(18).and_then(|f| f.parse::<u64>().ok());
    !matches!(state, "Z" | "X" | "x") && start == Some(start_time)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::cancel::Cancel;
    use crate::base::wait::Poll;
    use std::time::{Duration, Instant};

    #[test]
    fn own_process_start_time_is_readable_and_stable() {
        let me = std::process::id();
        let t = process_start_time(me).expect("own stat");
        assert!(process_alive(me, t));
        assert!(!process_alive(me, t + 1));
    }

    #[test]
    fn a_zombie_is_not_alive() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let start = process_start_time(pid).expect("child stat");
        // Not reaped yet: once `true` has exited, it is a zombie until `wait`.
        crate::base::wait::until(
            Instant::now() + Duration::from_secs(5),
            Poll::every(Duration::from_millis(10)),
            &Cancel::never(),
            || Ok((!process_alive(pid, start)).then_some(())),
        )
        .unwrap();
        assert!(
            !process_alive(pid, start),
            "an exited, unreaped child counts as dead"
        );
        assert!(process_start_time(pid).is_some(), "it is still a zombie");
        child.wait().unwrap();
    }

    #[test]
    fn failing_command_error_names_the_command_and_stderr() {
        let err = run("sh", &["-c", "echo boom >&2; exit 3"]).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("sh -c"), "{msg}");
        assert!(msg.contains("boom"), "{msg}");
    }
}
