//! People's consoles in tests: `reclab serve` run from the host, and a real headless Chromium
//! (Debian's, driven by playwright-core through `tests/browser/console.cjs`) on its pages.
//!
//! reclab runs here in the host's root network namespace, not in the sandbox's: libvirt hands
//! over the console streams and graphics sockets through its UNIX socket, so consoles work
//! although the lab's VNC servers listen on 127.0.0.1 inside the sandbox.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use super::{Sandbox, check, dev_dir, repo};

/// Children killed (by PID) when the test ends, also when it panics.
#[derive(Default)]
pub struct Children(pub Vec<Child>);

impl Children {
    pub fn add(&mut self, c: Child) -> usize {
        self.0.push(c);
        self.0.len() - 1
    }

    /// Wait for child `i` to exit, up to `timeout`; its exit code.
    pub fn wait(&mut self, i: usize, timeout: Duration) -> Option<i32> {
        let t = Instant::now();
        while t.elapsed() < timeout {
            if let Some(st) = self.0[i].try_wait().unwrap() {
                return Some(st.code().unwrap_or(-1));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }

    /// Stop child `i` with SIGTERM (by PID); its exit code.
    pub fn terminate(&mut self, i: usize, timeout: Duration) -> Option<i32> {
        unsafe {
            libc::kill(self.0[i].id() as i32, libc::SIGTERM);
        }
        self.wait(i, timeout)
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            if c.try_wait().ok().flatten().is_none() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// reclab in the host's root network namespace, talking to the sandbox's libvirtd.
pub fn reclab_host(sb: &Sandbox) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_reclab"));
    cmd.env("RECLAB_CONNECT", &sb.uri)
        .arg("--state-dir")
        .arg(&sb.state_dir);
    cmd
}

/// Lines of a child's stdout, delivered through a channel by a reader thread.
pub fn lines_of(out: ChildStdout) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

pub fn next_line_with(rx: &Receiver<String>, needle: &str, timeout: Duration) -> String {
    let t = Instant::now();
    let mut seen = Vec::new();
    while t.elapsed() < timeout {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(l) if l.contains(needle) => return l,
            Ok(l) => seen.push(l),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(_) => break,
        }
    }
    panic!("no line with {needle:?} within {timeout:?}; saw {seen:?}");
}

/// The browser's tools: noVNC and playwright-core from npm into the dev directory
/// (`scripts/novnc --test-tools`, idempotent). The noVNC directory to serve and the NODE_PATH.
pub fn browser_tools() -> (PathBuf, PathBuf) {
    let out = Command::new(repo().join("scripts/novnc"))
        .arg("--test-tools")
        .output()
        .unwrap();
    check(&out, "scripts/novnc --test-tools");
    let novnc = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    (novnc, dev_dir().join("novnc/node_modules"))
}

/// `reclab serve` on a loopback port of the host, with noVNC.
pub struct Serve {
    /// Index in the [`Children`] it was added to.
    pub child: usize,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// Its stdout, after the `listening on` line.
    pub lines: Receiver<String>,
}

impl Serve {
    pub fn start(sb: &Sandbox, children: &mut Children, novnc: &Path) -> Serve {
        let mut serve = reclab_host(sb)
            .args(["serve", "--listen", "127.0.0.1:0", "--novnc"])
            .arg(novnc)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let lines = lines_of(serve.stdout.take().unwrap());
        let child = children.add(serve);
        let listening = next_line_with(
            &lines,
            "listening on http://127.0.0.1:",
            Duration::from_secs(30),
        );
        let base = listening.rsplit(' ').next().unwrap().to_string();
        Serve { child, base, lines }
    }

    /// The lab page link of `lab`'s run `run8`, as the server prints it.
    pub fn link(&self, lab: &str, run8: &str) -> String {
        let printed = next_line_with(
            &self.lines,
            &format!("lab {lab} run {run8}:"),
            Duration::from_secs(5),
        );
        printed.rsplit(' ').next().unwrap().to_string()
    }
}

/// `node tests/browser/console.cjs ARGS...` to its end; the JSON it printed.
pub fn node(args: &[&str], node_path: &Path) -> serde_json::Value {
    let mut cmd = Command::new("timeout");
    cmd.arg("180")
        .arg("node")
        .arg(repo().join("tests/browser/console.cjs"))
        .args(args)
        .env("NODE_PATH", node_path);
    let out = cmd.output().expect("node");
    check(&out, &format!("node console.cjs {}", args[0]));
    serde_json::from_slice(&out.stdout).expect("console.cjs prints json")
}

/// A VM's console open in the browser (`console.cjs drive`): keys typed into it, screenshots of
/// its noVNC canvas taken on demand. The browser is closed on drop.
pub struct BrowserConsole {
    child: Child,
    stdin: Option<ChildStdin>,
    answers: Receiver<String>,
    pub vm: String,
}

impl BrowserConsole {
    /// Open the lab page `link`, then `vm`'s console; returns once noVNC is connected.
    pub fn open(link: &str, vm: &str, node_path: &Path) -> BrowserConsole {
        let mut child = Command::new("node")
            .arg(repo().join("tests/browser/console.cjs"))
            .args(["drive", link, vm])
            .env("NODE_PATH", node_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node");
        let stdin = child.stdin.take();
        let answers = lines_of(child.stdout.take().unwrap());
        let mut c = BrowserConsole {
            child,
            stdin,
            answers,
            vm: vm.to_string(),
        };
        let hello = c.answer("open the console", Duration::from_secs(120));
        assert_eq!(hello["connected"], "connected", "{hello}");
        c
    }

    fn answer(&mut self, what: &str, timeout: Duration) -> serde_json::Value {
        match self.answers.recv_timeout(timeout) {
            Ok(line) => {
                let v: serde_json::Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("console.cjs said {line:?}: {e}"));
                assert_eq!(v["ok"], true, "{what}: {v}");
                v
            }
            Err(e) => {
                let status = self.child.try_wait().ok().flatten();
                panic!(
                    "{what} on {}'s console: no answer ({e}); browser: {status:?}",
                    self.vm
                )
            }
        }
    }

    fn order(
        &mut self,
        order: serde_json::Value,
        what: &str,
        timeout: Duration,
    ) -> serde_json::Value {
        let stdin = self.stdin.as_mut().expect("the console is open");
        writeln!(stdin, "{order}").expect("write to console.cjs");
        stdin.flush().unwrap();
        self.answer(what, timeout)
    }

    /// Type `text` with real key events ("\n" is Enter).
    pub fn type_text(&mut self, text: &str) {
        let what = format!("type {text:?}");
        self.order(
            serde_json::json!({ "op": "type", "text": text }),
            &what,
            Duration::from_secs(60 + text.len() as u64),
        );
    }

    /// Write the console's canvas (the VM's screen at its own resolution) to `path` as PNG.
    pub fn shot(&mut self, path: &Path) {
        let v = self.order(
            serde_json::json!({ "op": "shot", "path": path }),
            "screenshot",
            Duration::from_secs(60),
        );
        assert_eq!(
            v["errors"],
            serde_json::json!([]),
            "script errors in the page"
        );
        assert!(v["width"].as_u64().unwrap() >= 320, "canvas {v}");
    }

    /// Close the browser; it must end cleanly.
    pub fn close(mut self) {
        let _ = self.order(
            serde_json::json!({ "op": "quit" }),
            "quit",
            Duration::from_secs(30),
        );
        drop(self.stdin.take());
        let st = self.child.wait().unwrap();
        assert!(st.success(), "console.cjs drive ended with {st}");
    }
}

impl Drop for BrowserConsole {
    fn drop(&mut self) {
        // Without orders node closes the browser and ends; killed (by PID) if it does not.
        drop(self.stdin.take());
        let t = Instant::now();
        while self.child.try_wait().ok().flatten().is_none() {
            if t.elapsed() > Duration::from_secs(15) {
                let _ = self.child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.wait();
    }
}
