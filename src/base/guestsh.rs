//! Shell snippets that run inside any guest, a busybox initrd or a full distribution: the one
//! place that knows which of a guest's tools to use for a TCP connect and an HTTP GET.
//!
//! A Debian or Ubuntu server has bash (essential) but often neither `nc` nor `wget`; a busybox
//! guest has `nc` and `wget` but no bash. Each snippet tries what works and exits 127 when the
//! guest has none of the tools, so callers can say what to install.

use crate::base::template::sh_quote;

/// Connects to `host:port` within about `secs` seconds: exit 0 when the port accepts, 1 when it
/// does not, 127 when the guest has no tool to try with (bash's `/dev/tcp`, or `nc`).
pub fn tcp_connect(host: &str, port: u16, secs: u64) -> String {
    let host = sh_quote(host);
    format!(
        "if command -v bash >/dev/null 2>&1; then \
           timeout {secs} bash -c 'exec 3<>\"/dev/tcp/$0/$1\"' {host} {port}; exit $?; \
         fi; \
         command -v nc >/dev/null 2>&1 || exit 127; \
         nc -z -w {secs} {host} {port} 2>/dev/null && exit 0; \
         nc -w {secs} {host} {port} </dev/null >/dev/null"
    )
}

/// GETs `url`: the body on stdout, the response's status line(s) `HTTP/x.y NNN ...` on stderr
/// (busybox or GNU `wget -S`, else `curl -D`); 127 when the guest has neither.
pub fn http_get(url: &str) -> String {
    let url = sh_quote(url);
    format!(
        "if command -v wget >/dev/null 2>&1; then exec wget -S -q -O - {url}; fi; \
         command -v curl >/dev/null 2>&1 || exit 127; \
         exec curl -sS -m 30 -D /dev/stderr -o - {url}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::process::{Command, Stdio};

    fn sh(script: &str) -> (i32, String, String) {
        let out = Command::new("/bin/sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    #[test]
    fn a_listening_port_accepts_and_a_closed_one_does_not() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert_eq!(sh(&tcp_connect("127.0.0.1", port, 2)).0, 0);
        drop(listener);
        assert_eq!(sh(&tcp_connect("127.0.0.1", port, 2)).0, 1);
    }

    #[test]
    fn without_any_tool_the_probes_exit_127() {
        // A PATH with only the shell's builtins and `timeout`-less: nothing to connect with.
        let empty = tempfile::tempdir().unwrap();
        let path = empty.path().display();
        assert_eq!(
            sh(&format!("PATH={path}; {}", tcp_connect("127.0.0.1", 1, 1))).0,
            127
        );
        assert_eq!(
            sh(&format!("PATH={path}; {}", http_get("http://127.0.0.1:1/"))).0,
            127
        );
    }

    #[test]
    fn an_http_get_prints_the_body_and_the_status_line_on_stderr() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let _ = std::io::Read::read(&mut s, &mut buf);
            s.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nConnection: close\r\n\r\nerp-web 3.1.0",
            )
            .unwrap();
        });
        let (code, body, stderr) = sh(&http_get(&format!("http://127.0.0.1:{port}/")));
        server.join().unwrap();
        assert_eq!(code, 0, "{stderr}");
        assert_eq!(body, "erp-web 3.1.0");
        assert!(stderr.contains("HTTP/1.1 200 OK"), "{stderr}");
    }
}
