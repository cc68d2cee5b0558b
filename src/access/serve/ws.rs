//! The browser console's websocket: binary frames to and from the VM's graphics (VNC), which
//! libvirt opens without the VNC password; closed when the lab expires.

use anyhow::{Context, Result, bail};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::auth::{Denied, authorize};
use super::{App, TokenQuery, blocking};
use crate::access::console::{self, Lease};

pub(super) async fn console_ws(
    ws: std::result::Result<
        WebSocketUpgrade,
        axum::extract::ws::rejection::WebSocketUpgradeRejection,
    >,
    State(app): State<Arc<App>>,
    UrlPath((run, vm)): UrlPath<(String, String)>,
    Query(q): Query<TokenQuery>,
) -> Response {
    let access = match authorize(&app.state_dir, &run, q.token.as_deref(), Timestamp::now()) {
        Ok(a) => a,
        Err(d) => return d.into_response(),
    };
    // The token is checked before anything else is said about the request.
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => return rejection.into_response(),
    };
    let Ok(vmrec) = console::find_vm(&access.rec, &vm) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let domain = vmrec.domain.clone();
    let uri = access.rec.uri.clone();
    let app2 = app.clone();
    let opened = blocking(move || -> Result<OwnedFd> {
        let hv = app2.hv(&uri)?;
        hv.open_graphics(&domain, true)
            .inspect_err(|_| app2.forget(&uri))
    })
    .await
    .and_then(|r| r);
    let fd = match opened {
        Ok(fd) => fd,
        Err(e) => {
            tracing::warn!(vm, error = %format!("{e:#}"), "cannot open the graphics");
            return (
                StatusCode::BAD_GATEWAY,
                format!("cannot reach the console of {vm}: {e:#}"),
            )
                .into_response();
        }
    };
    let lease = match Lease::new(&access.dir, &access.rec) {
        Ok(l) => l,
        Err(_) => {
            return Denied::Expired {
                lab: access.rec.lab.clone(),
                at: console::expires(&access.rec).unwrap_or(Timestamp::UNIX_EPOCH),
            }
            .into_response();
        }
    };
    ws.protocols(["binary"])
        .on_upgrade(move |socket| async move {
            if let Err(e) = proxy_ws(socket, fd, lease).await {
                tracing::info!(vm, error = %format!("{e:#}"), "console websocket ended");
            }
        })
        .into_response()
}

/// Copy between a websocket (binary frames) and a graphics socket until either closes or the
/// lab expires.
async fn proxy_ws(mut socket: WebSocket, fd: OwnedFd, mut lease: Lease) -> Result<()> {
    let std_sock = std::os::unix::net::UnixStream::from(fd);
    std_sock
        .set_nonblocking(true)
        .context("making the graphics socket non-blocking")?;
    let unix = tokio::net::UnixStream::from_std(std_sock).context("registering the socket")?;
    let (mut rd, mut wr) = unix.into_split();
    let mut buf = vec![0u8; 64 * 1024];
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            msg = socket.recv() => match msg {
                Some(Ok(Message::Binary(b))) => wr.write_all(&b).await.context("writing to the graphics")?,
                Some(Ok(Message::Text(t))) => wr.write_all(t.as_bytes()).await.context("writing to the graphics")?,
                Some(Ok(Message::Close(_))) | None => break,
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(anyhow::Error::new(e)).context("reading the websocket"),
            },
            n = rd.read(&mut buf) => {
                let n = n.context("reading the graphics")?;
                if n == 0 {
                    break;
                }
                socket
                    .send(Message::Binary(buf[..n].to_vec().into()))
                    .await
                    .context("writing the websocket")?;
            }
            _ = tick.tick() => {
                if !lease.valid() {
                    let _ = socket.send(Message::Close(None)).await;
                    bail!("the lab expired at {}", lease.expires());
                }
            }
        }
    }
    let _ = socket.send(Message::Close(None)).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::serve::router;
    use crate::access::serve::tests::{fixture, in_an_hour};
    use crate::hv::fake::FAKE_RFB_BANNER;

    #[tokio::test]
    async fn the_websocket_reaches_the_graphics_without_a_vnc_password() {
        let (_state, app, hv, token) = fixture(&in_an_hour());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(axum::serve(listener, router(app)).into_future());
        // A minimal websocket client over a raw TCP stream.
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!(
            "GET /lab/0123abcd/ws/client?token={token} HTTP/1.1\r\nHost: {addr}\r\n\
             Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: binary\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        // Read the 101 response and the first binary frame (the RFB banner).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !got
            .windows(FAKE_RFB_BANNER.len())
            .any(|w| w == FAKE_RFB_BANNER)
        {
            let n = tokio::time::timeout_at(deadline, s.read(&mut buf))
                .await
                .expect("banner within 10 s")
                .unwrap();
            assert!(
                n > 0,
                "connection closed: {}",
                String::from_utf8_lossy(&got)
            );
            got.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 101"), "{text}");
        assert!(
            text.to_lowercase()
                .contains("sec-websocket-protocol: binary"),
            "{text}"
        );
        assert!(
            hv.calls()
                .contains(&"open_graphics reclab-erp-0123abcd-client skipauth".to_string()),
            "{:?}",
            hv.calls()
        );
        server.abort();
    }
}
