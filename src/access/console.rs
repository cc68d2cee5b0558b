//! Human access to a running lab's VMs: `reclab console` (the serial console in the
//! terminal, or a loopback VNC proxy), plus what `serve` shares with it: finding a lab VM,
//! per-lab access tokens and the lease that ends every console when the lab expires.
//!
//! Every console goes through libvirt ([`Hypervisor::open_console`] and
//! [`Hypervisor::open_graphics`]): lab VNC servers listen on 127.0.0.1 inside the lab's network
//! namespace with a per-run password, so nothing outside can reach them directly.

use anyhow::{Context, Result, bail};
use jiff::Timestamp;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::hv::{ConsoleStream, Hypervisor};
use crate::lab::journal::RunDir;
use crate::lab::record::RunRecord;

/// The key that detaches from a serial console: Ctrl-] (like `virsh console` and telnet).
pub const ESCAPE: u8 = 0x1d;

/// How often a console re-reads the run record for its expiry (`reclab extend` moves it,
/// `reclab down` removes it).
const LEASE_RECHECK: Duration = Duration::from_secs(5);

/// The name of the file in a run directory that holds its access token.
pub const TOKEN_FILE: &str = "access-token";

pub use crate::lab::{find_run, find_vm};

/// When the run expires.
pub fn expires(rec: &RunRecord) -> Result<Timestamp> {
    rec.expires.parse::<Timestamp>().with_context(|| {
        format!(
            "run {} has an unreadable expiry {:?}",
            rec.run_id.short(),
            rec.expires
        )
    })
}

/// An error when the run has expired at `now`.
pub fn ensure_alive(rec: &RunRecord, now: Timestamp) -> Result<Timestamp> {
    let exp = expires(rec)?;
    if exp <= now {
        bail!(
            "lab {} (run {}) expired at {exp}; its consoles are closed (extend it with \
             `reclab extend`, or remove it with `reclab gc`)",
            rec.lab,
            rec.run_id.short()
        );
    }
    Ok(exp)
}

/// Whether a console may stay open: the run still exists and has not expired. Re-reads the run
/// record every few seconds so that `extend` and `down` take effect on open consoles.
#[derive(Debug)]
pub struct Lease {
    record: PathBuf,
    expires: Timestamp,
    checked: Instant,
}

impl Lease {
    pub fn new(dir: &RunDir, rec: &RunRecord) -> Result<Lease> {
        let expires = ensure_alive(rec, Timestamp::now())?;
        Ok(Lease {
            record: dir.record_path(),
            expires,
            checked: Instant::now(),
        })
    }

    /// The expiry as last read.
    pub fn expires(&self) -> Timestamp {
        self.expires
    }

    /// Whether the console may stay open now.
    pub fn valid(&mut self) -> bool {
        if self.checked.elapsed() >= LEASE_RECHECK {
            self.checked = Instant::now();
            let reread = std::fs::read_to_string(&self.record)
                .ok()
                .and_then(|t| serde_json::from_str::<RunRecord>(&t).ok())
                .and_then(|r| expires(&r).ok());
            match reread {
                Some(e) => self.expires = e,
                // The run is gone (torn down): the console ends.
                None => return false,
            }
        }
        Timestamp::now() < self.expires
    }
}

// ---------------------------------------------------------------------------------------------
// Access tokens.

/// A new random access token (32 bytes, hex).
fn new_token() -> String {
    use rand::RngExt;
    let mut bytes = [0u8; 32];
    rand::rng().fill(&mut bytes[..]);
    hex::encode(bytes)
}

/// The run's access token for `reclab serve`, created on first use (mode 0600). It is valid as
/// long as the run exists and has not expired.
pub fn access_token(dir: &RunDir) -> Result<String> {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.file(TOKEN_FILE);
    if let Some(t) = read_token(dir)? {
        return Ok(t);
    }
    let token = new_token();
    let mut tmp = tempfile::NamedTempFile::new_in(&dir.path)
        .with_context(|| format!("creating a temporary file in {}", dir.path.display()))?;
    tmp.write_all(token.as_bytes())
        .and_then(|_| tmp.as_file().sync_data())
        .and_then(|_| {
            tmp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o600))
        })
        .context("writing the access token")?;
    // A hard link creates the file only if nobody else did meanwhile: the first token wins.
    match std::fs::hard_link(tmp.path(), &path) {
        Ok(()) => Ok(token),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            read_token(dir)?.context("the access token vanished while it was created")
        }
        Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
    }
}

/// The run's access token, if one was created.
pub fn read_token(dir: &RunDir) -> Result<Option<String>> {
    let path = dir.file(TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => Ok(Some(t.trim().to_string())),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Compares two tokens in time independent of where they differ.
pub fn token_matches(expected: &str, given: &str) -> bool {
    let (a, b) = (expected.as_bytes(), given.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The link to a lab's page on `reclab serve` at `base` (e.g. `http://127.0.0.1:8443`).
pub fn lab_link(base: &str, run8: &str, token: &str) -> String {
    format!("{}/lab/{run8}?token={token}", base.trim_end_matches('/'))
}

// ---------------------------------------------------------------------------------------------
// Serial console.

/// Why a serial console session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    /// The user pressed Ctrl-].
    Detached,
    /// The lab expired or was torn down.
    Expired,
    /// The console closed (the VM stopped).
    Closed,
    /// The input ended (stdin is not a terminal and reached its end).
    InputEnded,
}

/// How long the output is still shown after the input ended.
const DRAIN_AFTER_INPUT: Duration = Duration::from_secs(2);

/// Copy between a console and the user until Ctrl-], expiry (`alive` returns false), the
/// console closing or the input ending. `input` delivers what the user typed (`None` = end).
pub fn serial_session(
    console: &mut dyn ConsoleStream,
    input: &Receiver<Option<Vec<u8>>>,
    output: &mut dyn Write,
    alive: &mut dyn FnMut() -> bool,
) -> Result<SessionEnd> {
    let mut buf = vec![0u8; 16 * 1024];
    let mut to_send: Vec<u8> = Vec::new();
    let mut input_ended: Option<Instant> = None;
    loop {
        if !alive() {
            return Ok(SessionEnd::Expired);
        }
        let mut busy = false;
        if input_ended.is_none() {
            loop {
                match input.try_recv() {
                    Ok(Some(bytes)) => {
                        if let Some(pos) = bytes.iter().position(|&b| b == ESCAPE) {
                            to_send.extend_from_slice(&bytes[..pos]);
                            send_all(console, &mut to_send)?;
                            return Ok(SessionEnd::Detached);
                        }
                        to_send.extend_from_slice(&bytes);
                    }
                    Ok(None) | Err(TryRecvError::Disconnected) => {
                        input_ended = Some(Instant::now());
                        break;
                    }
                    Err(TryRecvError::Empty) => break,
                }
            }
        }
        if !to_send.is_empty() {
            let n = console.send(&to_send)?;
            to_send.drain(..n);
            busy |= n > 0;
        }
        match console.recv(&mut buf)? {
            Some(0) => return Ok(SessionEnd::Closed),
            Some(n) => {
                output
                    .write_all(&buf[..n])
                    .and_then(|_| output.flush())
                    .context("writing the console output")?;
                busy = true;
            }
            None => {}
        }
        if let Some(t) = input_ended
            && to_send.is_empty()
            && t.elapsed() >= DRAIN_AFTER_INPUT
        {
            return Ok(SessionEnd::InputEnded);
        }
        if !busy {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn send_all(console: &mut dyn ConsoleStream, data: &mut Vec<u8>) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !data.is_empty() && Instant::now() < deadline {
        let n = console.send(data)?;
        data.drain(..n);
        if n == 0 {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    Ok(())
}

/// The terminal in raw mode while this lives; restored on drop (also on panic and errors).
pub struct RawTerminal {
    fd: i32,
    saved: libc::termios,
}

impl RawTerminal {
    /// Raw mode for `fd` if it is a terminal; `None` otherwise (a pipe, say).
    pub fn enable(fd: i32) -> Result<Option<RawTerminal>> {
        // SAFETY: isatty/tcgetattr/tcsetattr only read and write the termios we pass.
        unsafe {
            if libc::isatty(fd) != 1 {
                return Ok(None);
            }
            let mut saved: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(fd, &mut saved) != 0 {
                return Err(std::io::Error::last_os_error())
                    .context("reading the terminal settings");
            }
            let mut raw = saved;
            libc::cfmakeraw(&mut raw);
            if libc::tcsetattr(fd, libc::TCSANOW, &raw) != 0 {
                return Err(std::io::Error::last_os_error())
                    .context("switching the terminal to raw mode");
            }
            Ok(Some(RawTerminal { fd, saved }))
        }
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        // SAFETY: restores the settings read in `enable`.
        unsafe {
            libc::tcsetattr(self.fd, libc::TCSANOW, &self.saved);
        }
    }
}

/// Whether the domain's XML has a serial port or console libvirt can attach to.
pub fn has_serial(domain_xml: &str) -> bool {
    has_device(domain_xml, &["serial", "console"])
}

/// Whether the domain's XML has a VNC graphics device.
pub fn has_vnc(domain_xml: &str) -> bool {
    crate::xml::facts::facts(domain_xml)
        .map(|f| f.graphics.iter().any(|g| g.kind == "vnc"))
        .unwrap_or(false)
}

fn has_device(xml: &str, names: &[&str]) -> bool {
    use quick_xml::events::Event;
    let mut r = quick_xml::Reader::from_str(xml);
    let mut path: Vec<String> = Vec::new();
    loop {
        match r.read_event() {
            Ok(Event::Start(e)) => {
                let name = e.name().as_ref().to_string();
                if is_device(&path, &name, names) {
                    return true;
                }
                path.push(name);
            }
            Ok(Event::Empty(e)) if is_device(&path, e.name().as_ref(), names) => return true,
            Ok(Event::End(_)) => {
                path.pop();
            }
            Ok(Event::Eof) | Err(_) => return false,
            _ => {}
        }
    }
}

fn is_device(path: &[String], name: &str, names: &[&str]) -> bool {
    path.len() == 2 && path[0] == "domain" && path[1] == "devices" && names.contains(&name)
}

/// `reclab console LAB VM`: the serial console in this terminal until Ctrl-] or expiry.
pub fn attach_serial(hv: &dyn Hypervisor, dir: &RunDir, rec: &RunRecord, vm: &str) -> Result<()> {
    let vmrec = find_vm(rec, vm)?;
    let mut lease = Lease::new(dir, rec)?;
    let xml = hv.domain_xml(&vmrec.domain, false)?;
    if !has_serial(&xml) {
        bail!(
            "vm {vm} of lab {} has no serial console (its domain {} has no <serial> or \
             <console>); try `reclab console --vnc {} {vm}`",
            rec.lab,
            vmrec.domain,
            rec.lab
        );
    }
    let mut console = hv.open_console(&vmrec.domain)?;
    eprintln!(
        "reclab: connected to the serial console of {vm} (lab {}, run {}) until {}; \
         press Ctrl-] to quit",
        rec.lab,
        rec.run_id.short(),
        lease.expires()
    );
    let (tx, rx) = std::sync::mpsc::channel();
    // Reading stdin blocks, so it has its own thread; it ends with the process.
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = [0u8; 1024];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = tx.send(None);
                    break;
                }
                Ok(n) => {
                    if tx.send(Some(buf[..n].to_vec())).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let raw = RawTerminal::enable(libc::STDIN_FILENO)?;
    let mut stdout = std::io::stdout();
    let end = serial_session(console.as_mut(), &rx, &mut stdout, &mut || lease.valid());
    drop(raw);
    let _ = console.close();
    match end? {
        SessionEnd::Detached | SessionEnd::InputEnded => {
            eprintln!("\r\nreclab: console closed");
            Ok(())
        }
        SessionEnd::Closed => {
            eprintln!("\r\nreclab: the console of {vm} closed (the vm stopped?)");
            Ok(())
        }
        SessionEnd::Expired => bail!(
            "lab {} expired at {} (or was torn down): console closed",
            rec.lab,
            lease.expires()
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// VNC proxy.

/// What `reclab console --vnc` prints for the user.
pub fn vnc_instructions(port: u16, password: &str, expires: Timestamp) -> String {
    format!(
        "VNC console on 127.0.0.1:{port} until {expires}\n\
         \x20 vncviewer 127.0.0.1::{port}\n\
         \x20 remote-viewer vnc://127.0.0.1:{port}\n\
         one-time password: {password}\n\
         (Ctrl-C ends the proxy)"
    )
}

/// Accept VNC clients on `listener` and proxy each to the VM's graphics through the
/// hypervisor (with VNC authentication: the lab's one-time password), until `alive` turns
/// false; then every connection is cut.
pub fn vnc_proxy(
    hv: &dyn Hypervisor,
    domain: &str,
    listener: TcpListener,
    alive: &mut dyn FnMut() -> bool,
) -> Result<()> {
    listener
        .set_nonblocking(true)
        .context("making the listener non-blocking")?;
    let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    std::thread::scope(|scope| -> Result<()> {
        let result = loop {
            if !alive() {
                break Ok(());
            }
            match listener.accept() {
                Ok((client, peer)) => {
                    tracing::info!(%peer, domain, "vnc client connected");
                    let graphics = match hv.open_graphics(domain, false) {
                        Ok(fd) => UnixStream::from(fd),
                        Err(e) => {
                            eprintln!("reclab: cannot reach the graphics of {domain}: {e:#}");
                            continue;
                        }
                    };
                    if let Err(e) = client.set_nonblocking(false) {
                        eprintln!("reclab: vnc client {peer}: {e}");
                        continue;
                    }
                    if let Ok(c) = client.try_clone() {
                        open.lock().unwrap_or_else(|e| e.into_inner()).push(c);
                    }
                    scope.spawn(move || pump(client, graphics));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => break Err(e).context("accepting a vnc client"),
            }
        };
        for c in open.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = c.shutdown(Shutdown::Both);
        }
        result
    })
}

/// Copy both ways between a client and the graphics socket until either side closes.
fn pump(client: TcpStream, graphics: UnixStream) {
    let (Ok(mut c2), Ok(mut g2)) = (client.try_clone(), graphics.try_clone()) else {
        return;
    };
    let up = std::thread::spawn(move || {
        let mut client = client;
        let mut graphics = graphics;
        let _ = std::io::copy(&mut client, &mut graphics);
        let _ = graphics.shutdown(Shutdown::Both);
        let _ = client.shutdown(Shutdown::Both);
    });
    let _ = std::io::copy(&mut g2, &mut c2);
    let _ = c2.shutdown(Shutdown::Both);
    let _ = g2.shutdown(Shutdown::Both);
    let _ = up.join();
}

/// `reclab console --vnc LAB VM [--port P]`.
pub fn serve_vnc(
    hv: &dyn Hypervisor,
    dir: &RunDir,
    rec: &RunRecord,
    vm: &str,
    port: u16,
) -> Result<()> {
    let vmrec = find_vm(rec, vm)?;
    let mut lease = Lease::new(dir, rec)?;
    let xml = hv.domain_xml(&vmrec.domain, false)?;
    if !has_vnc(&xml) {
        bail!(
            "vm {vm} of lab {} has no vnc graphics (domain {}); try `reclab console {} {vm}` \
             for its serial console",
            rec.lab,
            vmrec.domain,
            rec.lab
        );
    }
    let listener = TcpListener::bind(("127.0.0.1", port))
        .with_context(|| format!("listening on 127.0.0.1:{port}"))?;
    let port = listener
        .local_addr()
        .context("reading the listen port")?
        .port();
    println!(
        "{}",
        vnc_instructions(port, &vmrec.console_password, lease.expires())
    );
    std::io::stdout().flush().ok();
    vnc_proxy(hv, &vmrec.domain, listener, &mut || lease.valid())?;
    bail!(
        "lab {} expired at {} (or was torn down): vnc proxy closed",
        rec.lab,
        lease.expires()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hv::fake::{FAKE_RFB_BANNER, FakeHv};
    use std::sync::mpsc::channel;

    const DOMAIN_WITH_CONSOLES: &str = "<domain type='qemu'><name>reclab-erp-0123abcd-client</name>\
        <devices><serial type='pty'><target port='0'/></serial>\
        <graphics type='vnc' port='5900' autoport='yes'><listen type='address' address='127.0.0.1'/></graphics>\
        </devices></domain>";
    const DOMAIN_WITHOUT: &str = "<domain type='qemu'><name>reclab-erp-0123abcd-db</name>\
        <devices><disk type='file'/></devices><description>serial console graphics</description></domain>";

    #[test]
    fn serial_and_vnc_are_found_only_among_devices() {
        assert!(has_serial(DOMAIN_WITH_CONSOLES));
        assert!(has_vnc(DOMAIN_WITH_CONSOLES));
        assert!(!has_serial(DOMAIN_WITHOUT));
        assert!(!has_vnc(DOMAIN_WITHOUT));
    }

    #[test]
    fn tokens_match_only_exactly() {
        let t = new_token();
        assert_eq!(t.len(), 64);
        assert!(token_matches(&t, &t.clone()));
        assert!(!token_matches(&t, &t[..63]));
        assert!(!token_matches(&t, &new_token()));
        assert!(!token_matches(&t, ""));
    }

    #[test]
    fn the_access_token_is_created_once_and_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = RunDir {
            path: tmp.path().to_path_buf(),
        };
        assert_eq!(read_token(&dir).unwrap(), None);
        let first = access_token(&dir).unwrap();
        assert_eq!(access_token(&dir).unwrap(), first);
        assert_eq!(read_token(&dir).unwrap(), Some(first));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.file(TOKEN_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    /// Runs a session on the fake's echoing console; returns how it ended, what it showed, and
    /// what the VM received (read back from the echo after the session).
    fn session_on_fake(
        typed: Vec<Option<Vec<u8>>>,
        alive: &mut dyn FnMut() -> bool,
    ) -> (SessionEnd, String, String) {
        let hv = FakeHv::new();
        hv.add_domain(DOMAIN_WITH_CONSOLES, false, true).unwrap();
        let mut console = hv.open_console("reclab-erp-0123abcd-client").unwrap();
        let (tx, rx) = channel();
        for t in typed {
            tx.send(t).unwrap();
        }
        let mut out = Vec::new();
        let end = serial_session(console.as_mut(), &rx, &mut out, alive).unwrap();
        let mut received = vec![0u8; 1024];
        let n = console.recv(&mut received).unwrap().unwrap_or(0);
        (
            end,
            String::from_utf8(out).unwrap(),
            String::from_utf8_lossy(&received[..n]).into_owned(),
        )
    }

    #[test]
    fn ctrl_bracket_detaches_and_what_was_typed_before_it_is_sent() {
        let (end, _, received) = session_on_fake(
            vec![
                Some(b"echo hi\r".to_vec()),
                Some(b"ls\x1dnot sent".to_vec()),
            ],
            &mut || true,
        );
        assert_eq!(end, SessionEnd::Detached);
        assert_eq!(received, "echo hi\rls");
    }

    #[test]
    fn a_session_ends_when_the_lab_expires() {
        let mut left = 3;
        let (end, _, _) = session_on_fake(vec![], &mut || {
            left -= 1;
            left > 0
        });
        assert_eq!(end, SessionEnd::Expired);
    }

    #[test]
    fn the_end_of_piped_input_ends_the_session_after_the_output() {
        let (end, out, _) = session_on_fake(vec![Some(b"uptime\n".to_vec()), None], &mut || true);
        assert_eq!(end, SessionEnd::InputEnded);
        assert_eq!(out, "uptime\n");
    }

    #[test]
    fn a_vm_without_serial_console_is_refused() {
        let hv = FakeHv::new();
        hv.add_domain(DOMAIN_WITHOUT, false, true).unwrap();
        let err = hv.open_console("reclab-erp-0123abcd-db").err().unwrap();
        assert!(format!("{err:#}").contains("character device"), "{err:#}");
    }

    #[test]
    fn the_vnc_proxy_connects_clients_to_the_graphics_and_stops_at_expiry() {
        let hv = FakeHv::new();
        hv.add_domain(DOMAIN_WITH_CONSOLES, false, true).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let expired = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = expired.clone();
        let client = std::thread::spawn(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut banner = [0u8; 12];
            s.read_exact(&mut banner).unwrap();
            s.write_all(b"RFB 003.008\n").unwrap();
            let mut echo = [0u8; 12];
            s.read_exact(&mut echo).unwrap();
            // The lab expires: the proxy must cut this connection.
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
            let mut rest = Vec::new();
            let closed = s.read_to_end(&mut rest);
            (banner, echo, closed.is_ok())
        });
        let t = Instant::now();
        vnc_proxy(&hv, "reclab-erp-0123abcd-client", listener, &mut || {
            !expired.load(std::sync::atomic::Ordering::SeqCst) && t.elapsed().as_secs() < 20
        })
        .unwrap();
        let (banner, echo, closed) = client.join().unwrap();
        assert_eq!(&banner, FAKE_RFB_BANNER);
        assert_eq!(&echo, b"RFB 003.008\n");
        assert!(closed, "the connection was cut at expiry");
        assert!(t.elapsed().as_secs() < 20, "the proxy ended at expiry");
        assert!(
            hv.calls()
                .contains(&"open_graphics reclab-erp-0123abcd-client".to_string()),
            "vnc clients use password authentication: {:?}",
            hv.calls()
        );
    }

    #[test]
    fn an_expired_run_is_refused_with_its_expiry() {
        let rec: RunRecord = serde_json::from_value(serde_json::json!({
            "schema": 1, "lab": "erp", "run_id": "0123abcd0123abcd0123abcd0123abcd",
            "lab_file": "/x/erp.toml", "uri": "fake:///", "created": "2026-01-01T00:00:00Z",
            "expires": "2026-01-01T08:00:00Z", "state": "up", "owner_pid": 1, "owner_start": 0,
            "vms": [], "networks": [], "fingerprints": [], "changes": []
        }))
        .unwrap();
        let later: Timestamp = "2026-01-01T08:00:01Z".parse().unwrap();
        let earlier: Timestamp = "2026-01-01T07:59:59Z".parse().unwrap();
        let err = ensure_alive(&rec, later).unwrap_err();
        assert!(
            format!("{err:#}").contains("expired at 2026-01-01T08:00:00Z"),
            "{err:#}"
        );
        assert!(ensure_alive(&rec, earlier).is_ok());
    }
}
