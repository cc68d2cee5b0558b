//! Published web apps (`[[publish]] kind = "http"`): HTTP and websockets proxied to a lab VM's
//! port, behind the lab's access token.
//!
//! **Each published app gets its own host name**, `<name>-<run8>.<domain>` on the server's port
//! (`--publish-domain`, by default `localhost`, which browsers resolve to the loopback address
//! themselves). Why a host and not a path prefix or a port:
//!
//! - The app sits at the root of its own origin, so its root-relative links (`/cgi-bin/latest`),
//!   redirects, scripts and cookies work as in production without rewriting HTML or scripts; a
//!   path prefix needs every link, redirect and script-built URL rewritten, and misses some.
//! - The restored app is untrusted code in the customer's browser: on its own origin its scripts
//!   cannot read the lab page, its token, or post sign-offs. Under a path prefix they could.
//!   Cookies are kept per host too (they are not per port, so a port per app would mix them).
//! - One listener and one TLS certificate (a wildcard for `*.<domain>`, one label deep) cover
//!   every lab and app; ports would have to be opened and firewalled as labs come and go.
//!
//! The link on the lab page carries the token once (`?reclab_token=`); the answer sets it as an
//! HttpOnly cookie of that host and redirects to the same address without it. Every request is
//! authorized again (expiry, teardown); the cookie is removed before the request goes to the VM.
//! The request keeps the public `Host`, so an app that builds absolute URLs from it links to the
//! published host; redirects (`Location`) and links in HTML pages that name the VM by its lab
//! address or lab DNS name are rewritten to the published host.
//!
//! Connections to the VM are opened from inside the segment's lab-services namespace
//! ([`crate::lab::services::connect`]), never from the host's.

use anyhow::{Context, Result};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use super::auth::{Access, authorize};
use super::pages::error_page;
use super::{App, blocking};
use crate::access::console::Lease;
use crate::lab::journal::RunDir;
use crate::lab::record::{PublishKind, PublishedPort};

/// The query parameter that carries the token on the first visit.
pub const TOKEN_PARAM: &str = "reclab_token";
/// The cookie that carries it afterwards (HttpOnly, this host only).
pub const COOKIE: &str = "reclab_lab_token";
/// Largest HTML page whose links are rewritten; bigger ones pass unchanged.
const MAX_REWRITE: usize = 8 << 20;

/// Opens a TCP connection to a published port (the lab-services namespace in production).
pub type Connector = Arc<dyn Fn(&RunDir, &PublishedPort) -> Result<TcpStream> + Send + Sync>;

/// The connector of `reclab serve` and `reclab forward`: from inside the VM's segment's
/// lab-services namespace.
pub fn netns_connector() -> Connector {
    Arc::new(|dir: &RunDir, p: &PublishedPort| {
        crate::lab::services::connect::connect_published(&dir.path, p, Duration::from_secs(10))
    })
}

/// Where published apps are served: `scheme://<name>-<run8>.<domain>:<port>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicOrigin {
    pub scheme: String,
    pub domain: String,
    /// `None` for the scheme's default port.
    pub port: Option<u16>,
}

impl Default for PublicOrigin {
    fn default() -> Self {
        PublicOrigin {
            scheme: "http".into(),
            domain: "localhost".into(),
            port: None,
        }
    }
}

impl PublicOrigin {
    pub fn host(&self, name: &str, run8: &str) -> String {
        format!("{name}-{run8}.{}", self.domain)
    }

    /// `http://erp-0123abcd.localhost:8080` (no trailing slash).
    pub fn origin(&self, name: &str, run8: &str) -> String {
        match self.port {
            Some(p) => format!("{}://{}:{p}", self.scheme, self.host(name, run8)),
            None => format!("{}://{}", self.scheme, self.host(name, run8)),
        }
    }

    /// The link people open: the app's root with the token, once.
    pub fn link(&self, name: &str, run8: &str, token: &str) -> String {
        format!(
            "{}/?{TOKEN_PARAM}={}",
            self.origin(name, run8),
            super::pages::urlenc(token)
        )
    }

    /// `(name, run8)` if `host` (a `Host` header, maybe with a port) is a published app's.
    pub fn parse(&self, host: &str) -> Option<(String, String)> {
        let host = host.to_ascii_lowercase();
        let host = match host.rsplit_once(':') {
            Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h.to_string(),
            _ => host,
        };
        let label = host.strip_suffix(&format!(".{}", self.domain.to_ascii_lowercase()))?;
        let (name, run8) = label.rsplit_once('-')?;
        let ok = !name.is_empty()
            && !label.contains('.')
            && run8.len() == 8
            && run8
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        ok.then(|| (name.to_string(), run8.to_string()))
    }
}

/// Middleware in front of every route: requests for a published app's host go to the app.
pub(super) async fn route_published(
    State(app): State<Arc<App>>,
    req: Request,
    next: Next,
) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()));
    match host.and_then(|h| app.public().parse(&h)) {
        Some((name, run8)) => published(app, name, run8, req).await,
        None => next.run(req).await,
    }
}

/// The token of a request: the query parameter (first visit) or the cookie.
fn token_of(req: &Request) -> (Option<String>, bool) {
    if let Some(q) = req.uri().query() {
        for pair in q.split('&') {
            if let Some(v) = pair.strip_prefix(&format!("{TOKEN_PARAM}=")) {
                return (Some(percent_decode(v)), true);
            }
        }
    }
    (cookie_value(req.headers(), COOKIE), false)
}

fn cookie_value(h: &HeaderMap, name: &str) -> Option<String> {
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            c.trim()
                .strip_prefix(&format!("{name}="))
                .map(str::to_string)
        })
}

/// The `Cookie` headers without reclab's own cookie (the VM never sees the token).
fn strip_cookie(h: &mut HeaderMap, name: &str) {
    let kept: Vec<String> = h
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|c| !c.is_empty() && !c.starts_with(&format!("{name}=")))
        .map(str::to_string)
        .collect();
    h.remove(header::COOKIE);
    if !kept.is_empty()
        && let Ok(v) = HeaderValue::from_str(&kept.join("; "))
    {
        h.insert(header::COOKIE, v);
    }
}

/// The request's path and query without the token parameter.
fn without_token(uri: &Uri) -> String {
    let path = uri.path();
    let rest: Vec<&str> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with(&format!("{TOKEN_PARAM}=")))
        .collect();
    if rest.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", rest.join("&"))
    }
}

async fn published(app: Arc<App>, name: String, run8: String, req: Request) -> Response {
    let (token, in_query) = token_of(&req);
    let access = match authorize(&app.state_dir, &run8, token.as_deref(), Timestamp::now()) {
        Ok(a) => a,
        Err(d) => return d.into_response(),
    };
    let Some(port) = access.rec.publish.iter().find(|p| p.name == name).cloned() else {
        return error_page(
            StatusCode::NOT_FOUND,
            "Not published",
            &format!("Lab {} publishes nothing named {name}.", access.rec.lab),
        );
    };
    if port.kind != PublishKind::Http {
        return error_page(
            StatusCode::NOT_FOUND,
            "Not a web application",
            &format!(
                "{name} is a tcp port of {}; the operator reaches it with reclab forward.",
                port.vm
            ),
        );
    }
    if in_query {
        // Trade the token in the address for a cookie of this host, and drop it from the
        // address (history, the app's logs and its Referer headers never see it).
        let secure = if app.public().scheme == "https" {
            "; Secure"
        } else {
            ""
        };
        let cookie = format!(
            "{COOKIE}={}; Path=/; HttpOnly; SameSite=Lax{secure}",
            access.token
        );
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::SEE_OTHER;
        let h = r.headers_mut();
        if let (Ok(c), Ok(l)) = (
            HeaderValue::from_str(&cookie),
            HeaderValue::from_str(&without_token(req.uri())),
        ) {
            h.insert(header::SET_COOKIE, c);
            h.insert(header::LOCATION, l);
        }
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        return r;
    }
    match forward(&app, &access, &port, &run8, req).await {
        Ok(r) => r,
        Err(e) => {
            tracing::info!(publish = %port.name, error = %format!("{e:#}"), "proxying failed");
            error_page(
                StatusCode::BAD_GATEWAY,
                "Cannot reach the application",
                &format!(
                    "{} ({}:{} in lab {}) does not answer: {e:#}",
                    port.name, port.vm, port.port, access.rec.lab
                ),
            )
        }
    }
}

/// Hop-by-hop headers, never forwarded (RFC 9110 §7.6.1), except `Upgrade`/`Connection` of a
/// websocket handshake.
const HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn is_upgrade(h: &HeaderMap) -> bool {
    h.get(header::UPGRADE).is_some()
        && h.get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
}

fn strip_hop(h: &mut HeaderMap, keep_upgrade: bool) {
    let upgrade = h.get(header::UPGRADE).cloned();
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for n in named {
        h.remove(n);
    }
    for n in HOP {
        h.remove(*n);
    }
    if keep_upgrade && let Some(u) = upgrade {
        h.insert(header::UPGRADE, u);
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// The origins a VM's own links and redirects use: its address and lab DNS names, on its port.
pub fn vm_origins(p: &PublishedPort) -> Vec<String> {
    let mut out = Vec::new();
    for host in std::iter::once(&p.address).chain(p.names.iter()) {
        let host = host.trim_end_matches('.');
        out.push(format!("http://{host}:{}", p.port));
        if p.port == 80 {
            out.push(format!("http://{host}"));
        }
    }
    out
}

/// `text` with every occurrence of one of the `from` origins (followed by the end, `/`, `?`,
/// `#`, a quote, `<` or white space, so that `http://app.example.evil` stays) replaced by `to`.
pub fn rewrite_origins(text: &str, from: &[String], to: &str) -> String {
    let ends = |rest: &str| {
        rest.chars().next().is_none_or(|c| {
            matches!(c, '/' | '?' | '#' | '"' | '\'' | '<' | '>' | ')') || c.is_whitespace()
        })
    };
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let lower = text.to_ascii_lowercase();
    'outer: while i < text.len() {
        if lower[i..].starts_with("http://") {
            // Longest origin first: `http://h:80` before `http://h`.
            let mut best: Option<&String> = None;
            for f in from {
                if lower[i..].starts_with(&f.to_ascii_lowercase())
                    && ends(&text[i + f.len()..])
                    && best.is_none_or(|b| f.len() > b.len())
                {
                    best = Some(f);
                }
            }
            if let Some(f) = best {
                out.push_str(to);
                i += f.len();
                continue 'outer;
            }
        }
        let c = text[i..].chars().next().expect("in bounds");
        out.push(c);
        i += c.len_utf8();
    }
    out
}

/// A redirect's `Location` rewritten to the published origin if it names the VM.
pub fn rewrite_location(location: &str, p: &PublishedPort, public: &str) -> String {
    rewrite_origins(location, &vm_origins(p), public)
}

async fn forward(
    app: &Arc<App>,
    access: &Access,
    port: &PublishedPort,
    run8: &str,
    mut req: Request,
) -> Result<Response> {
    let upgrade = is_upgrade(req.headers());
    let connector = app.connector.clone();
    let (dir, p) = (access.dir.clone(), port.clone());
    let tcp = blocking(move || connector(&dir, &p)).await??;
    tcp.set_nonblocking(true)
        .context("making the socket non-blocking")?;
    let tcp = tokio::net::TcpStream::from_std(tcp).context("registering the socket")?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .context("starting http")?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "upstream connection ended");
        }
    });

    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    strip_hop(&mut parts.headers, upgrade);
    strip_cookie(&mut parts.headers, COOKIE);
    // Identity bodies, so that HTML links can be rewritten.
    parts.headers.remove(header::ACCEPT_ENCODING);
    let public = app.public().origin(&port.name, run8);
    let host = app.public().host(&port.name, run8);
    let host_header = match app.public().port {
        Some(p) => format!("{host}:{p}"),
        None => host,
    };
    if let Ok(v) = HeaderValue::from_str(&host_header) {
        parts.headers.insert(header::HOST, v.clone());
        parts.headers.insert("x-forwarded-host", v);
    }
    if let Ok(v) = HeaderValue::from_str(&app.public().scheme) {
        parts.headers.insert("x-forwarded-proto", v);
    }
    let path = parts
        .uri
        .path_and_query()
        .map(|pq| pq.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    parts.uri = path.parse().context("the request path")?;
    let upstream = hyper::Request::from_parts(parts, body);
    let mut resp = sender
        .send_request(upstream)
        .await
        .context("sending the request")?;

    if resp.status() == StatusCode::SWITCHING_PROTOCOLS
        && let Some(client_upgrade) = client_upgrade
    {
        let server_upgrade = hyper::upgrade::on(&mut resp);
        let lease = Lease::new(&access.dir, &access.rec).ok();
        let vm = port.vm.clone();
        tokio::spawn(async move {
            if let Err(e) = splice_upgraded(client_upgrade, server_upgrade, lease).await {
                tracing::info!(vm, error = %format!("{e:#}"), "published websocket ended");
            }
        });
        let (parts, _) = resp.into_parts();
        return Ok(Response::from_parts(parts, Body::empty()));
    }

    let (mut parts, body) = resp.into_parts();
    strip_hop(&mut parts.headers, false);
    if let Some(loc) = parts
        .headers
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
    {
        let new = rewrite_location(loc, port, &public);
        if let Ok(v) = HeaderValue::from_str(&new) {
            parts.headers.insert(header::LOCATION, v);
        }
    }
    let html = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.to_ascii_lowercase().starts_with("text/html"));
    let encoded = parts.headers.contains_key(header::CONTENT_ENCODING);
    let small = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_none_or(|n| n <= MAX_REWRITE);
    if html && !encoded && small {
        let bytes = axum::body::to_bytes(Body::new(body), MAX_REWRITE)
            .await
            .context("reading the page")?;
        let text = String::from_utf8_lossy(&bytes);
        let rewritten = rewrite_origins(&text, &vm_origins(port), &public);
        parts.headers.remove(header::CONTENT_LENGTH);
        return Ok(Response::from_parts(parts, Body::from(rewritten)));
    }
    Ok(Response::from_parts(parts, Body::new(body)))
}

/// Copy between the browser's and the VM's upgraded connections until either closes or the
/// lab expires or is torn down.
async fn splice_upgraded(
    client: hyper::upgrade::OnUpgrade,
    server: hyper::upgrade::OnUpgrade,
    mut lease: Option<Lease>,
) -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let client = client.await.context("upgrading the browser's connection")?;
    let server = server.await.context("upgrading the vm's connection")?;
    let mut client = hyper_util::rt::TokioIo::new(client);
    let mut server = hyper_util::rt::TokioIo::new(server);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let (mut a, mut b) = (vec![0u8; 32 * 1024], vec![0u8; 32 * 1024]);
    loop {
        tokio::select! {
            n = client.read(&mut a) => {
                let n = n.context("reading from the browser")?;
                if n == 0 { break; }
                server.write_all(&a[..n]).await.context("writing to the vm")?;
            }
            n = server.read(&mut b) => {
                let n = n.context("reading from the vm")?;
                if n == 0 { break; }
                client.write_all(&b[..n]).await.context("writing to the browser")?;
            }
            _ = tick.tick() => {
                if !lease.as_mut().is_some_and(|l| l.valid()) {
                    anyhow::bail!("the lab expired or was torn down");
                }
            }
        }
    }
    Ok(())
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Links of a lab's published web apps: `(name, vm, port, link)`.
pub fn published_links(app: &App, a: &Access) -> Vec<(String, String, u16, Option<String>)> {
    a.rec
        .publish
        .iter()
        .map(|p| {
            let link = (p.kind == PublishKind::Http)
                .then(|| app.public().link(&p.name, &a.run8, &a.token));
            (p.name.clone(), p.vm.clone(), p.port, link)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::serve::router;
    use crate::access::serve::tests::{fixture, in_an_hour};
    use crate::hv::Hypervisor;
    use crate::hv::fake::FakeHv;
    use axum::extract::ws::{Message, WebSocketUpgrade};
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tower::ServiceExt;

    const HOST: &str = "erp-0123abcd.localhost:8080";
    const PUBLIC: &str = "http://erp-0123abcd.localhost:8080";

    /// A stand-in for the lab VM's web app: a redirect to its production name, a page with
    /// absolute links to its own names, what it was sent, and a websocket echo.
    fn upstream_app() -> axum::Router {
        axum::Router::new()
            .route(
                "/",
                get(|| async {
                    (
                        StatusCode::FOUND,
                        [(
                            header::LOCATION,
                            "http://app.prod.example/cgi-bin/latest?n=10",
                        )],
                    )
                }),
            )
            .route(
                "/cgi-bin/latest",
                get(|h: HeaderMap| async move {
                    let host = h[header::HOST].to_str().unwrap().to_string();
                    let cookie = h
                        .get(header::COOKIE)
                        .map(|c| c.to_str().unwrap().to_string())
                        .unwrap_or_default();
                    (
                        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                        format!(
                            "<a href=\"http://10.20.0.11/version\">v</a> \
                             <a href=\"http://app.prod.example:80/x\">x</a> \
                             <a href=\"http://app.prod.example.evil/\">evil</a> \
                             <a href=\"/cgi-bin/latest\">here</a> \
                             <p id=host>{host}</p><p id=cookie>{cookie}</p>"
                        ),
                    )
                }),
            )
            .route(
                "/ws",
                get(|ws: WebSocketUpgrade| async move {
                    ws.on_upgrade(|mut s| async move {
                        while let Some(Ok(m)) = s.recv().await {
                            if let Message::Text(t) = m {
                                let _ = s.send(Message::Text(format!("echo {t}").into())).await;
                            }
                        }
                    })
                }),
            )
    }

    /// The serve fixture's lab with `erp` (http, app:80) and `db-sql` (tcp) published, and an
    /// app whose connector reaches [`upstream_app`] on a loopback port.
    async fn published_fixture(
        expires: &str,
    ) -> (
        tempfile::TempDir,
        Arc<App>,
        String,
        tokio::task::JoinHandle<()>,
    ) {
        let (state, _app, _hv, token) = fixture(expires);
        let run_json = state.path().join("runs/0123abcd/run.json");
        let mut rec: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&run_json).unwrap()).unwrap();
        rec["publish"] = serde_json::json!([
            {"name": "erp", "vm": "client", "port": 80, "kind": "http", "address": "10.20.0.11",
             "names": ["app.prod.example"], "segment": "lan", "netns": "reclab-0123abcd-lan"},
            {"name": "db-sql", "vm": "client", "port": 5432, "kind": "tcp",
             "address": "10.20.0.11", "segment": "lan", "netns": "reclab-0123abcd-lan"}
        ]);
        std::fs::write(&run_json, rec.to_string()).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(listener, upstream_app()).await.unwrap();
        });
        let connector: Connector = Arc::new(move |_dir: &RunDir, p: &PublishedPort| {
            assert_eq!((p.name.as_str(), p.port), ("erp", 80));
            Ok(TcpStream::connect(addr)?)
        });
        let hv = Arc::new(FakeHv::new());
        let open: super::super::Opener = Arc::new(move |_| Ok(hv.clone() as Arc<dyn Hypervisor>));
        let app = App::with_connector(state.path().to_path_buf(), None, open, connector);
        app.set_public(PublicOrigin {
            scheme: "http".into(),
            domain: "localhost".into(),
            port: Some(8080),
        });
        (state, app, token, server)
    }

    async fn send(
        app: &Arc<App>,
        uri: &str,
        cookie: Option<&str>,
    ) -> (StatusCode, HeaderMap, String) {
        let mut req = axum::http::Request::get(uri).header(header::HOST, HOST);
        if let Some(c) = cookie {
            req = req.header(header::COOKIE, c);
        }
        let resp = router(app.clone())
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, headers, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn the_token_in_the_link_becomes_a_cookie_of_the_apps_host_only() {
        let (_state, app, token, server) = published_fixture(&in_an_hour()).await;
        let (status, h, _) = send(&app, &format!("/?a=1&{TOKEN_PARAM}={token}&b=2"), None).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert_eq!(h[header::LOCATION], "/?a=1&b=2");
        let cookie = h[header::SET_COOKIE].to_str().unwrap();
        assert_eq!(
            cookie,
            format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax")
        );
        // Without the cookie, with a wrong one, or with a wrong token in the link: refused,
        // and the app is never asked.
        for (uri, c) in [
            ("/cgi-bin/latest".to_string(), None),
            (
                "/cgi-bin/latest".to_string(),
                Some(format!("{COOKIE}=x{token}")),
            ),
            (format!("/?{TOKEN_PARAM}=nope"), None),
        ] {
            let (status, _, body) = send(&app, &uri, c.as_deref()).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{uri} {c:?}");
            assert!(body.contains("This link is not valid"), "{body}");
        }
        // A name the lab does not publish, and a tcp port, are no web apps.
        let resp = router(app.clone())
            .oneshot(
                axum::http::Request::get("/")
                    .header(header::HOST, "db-sql-0123abcd.localhost:8080")
                    .header(header::COOKIE, format!("{COOKIE}={token}"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        server.abort();
    }

    #[tokio::test]
    async fn an_expired_lab_refuses_its_published_app() {
        let (_state, app, token, server) = published_fixture("2020-01-01T00:00:00Z").await;
        let (status, _, body) = send(&app, "/", Some(&format!("{COOKIE}={token}"))).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(body.contains("This lab has expired"), "{body}");
        server.abort();
    }

    #[tokio::test]
    async fn redirects_and_links_to_the_vms_names_point_at_the_published_host() {
        let (_state, app, token, server) = published_fixture(&in_an_hour()).await;
        let cookie = format!("theme=dark; {COOKIE}={token}; session=42");
        let (status, h, _) = send(&app, "/", Some(&cookie)).await;
        assert_eq!(status, StatusCode::FOUND);
        assert_eq!(h[header::LOCATION], format!("{PUBLIC}/cgi-bin/latest?n=10"));
        let (status, _, body) = send(&app, "/cgi-bin/latest", Some(&cookie)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(
            body.contains(&format!("href=\"{PUBLIC}/version\"")),
            "{body}"
        );
        assert!(body.contains(&format!("href=\"{PUBLIC}/x\"")), "{body}");
        assert!(
            body.contains("href=\"http://app.prod.example.evil/\""),
            "{body}"
        );
        assert!(body.contains("href=\"/cgi-bin/latest\""), "{body}");
        // The app sees the public host, its own cookies, and never the token.
        assert!(body.contains(&format!("<p id=host>{HOST}</p>")), "{body}");
        assert!(
            body.contains("<p id=cookie>theme=dark; session=42</p>"),
            "{body}"
        );
        assert!(!body.contains(&token), "{body}");
        server.abort();
    }

    #[tokio::test]
    async fn websockets_of_the_app_are_carried_through() {
        let (_state, app, token, server) = published_fixture(&in_an_hour()).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let serve = tokio::spawn(axum::serve(listener, router(app)).into_future());
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!(
            "GET /ws HTTP/1.1\r\nHost: {HOST}\r\nCookie: {COOKIE}={token}\r\n\
             Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = tokio::time::timeout_at(deadline, s.read(&mut buf))
                .await
                .expect("an answer within 10 s")
                .unwrap();
            assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 101"), "{text}");
        // One masked text frame "hi" (RFC 6455 §5.3), then the echo, unmasked.
        let mask = [1u8, 2, 3, 4];
        let mut frame = vec![0x81, 0x80 | 2];
        frame.extend_from_slice(&mask);
        frame.extend(b"hi".iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        s.write_all(&frame).await.unwrap();
        let mut echo = Vec::new();
        while echo.len() < 2 + 7 {
            let n = tokio::time::timeout_at(deadline, s.read(&mut buf))
                .await
                .expect("the echo within 10 s")
                .unwrap();
            assert!(n > 0, "closed before the echo");
            echo.extend_from_slice(&buf[..n]);
        }
        assert_eq!(&echo[..9], b"\x81\x07echo hi");
        serve.abort();
        server.abort();
    }

    #[tokio::test]
    async fn the_lab_page_links_to_the_published_app_and_names_the_tcp_port() {
        let (_state, app, token, server) = published_fixture(&in_an_hour()).await;
        let resp = router(app.clone())
            .oneshot(
                axum::http::Request::get(format!("/lab/0123abcd?token={token}"))
                    .header(header::HOST, "127.0.0.1:8080")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        let body = String::from_utf8_lossy(&body);
        assert!(
            body.contains(&format!(
                "<a class=publish id=\"open-erp\" href=\"{PUBLIC}/?{TOKEN_PARAM}={token}\""
            )),
            "{body}"
        );
        assert!(body.contains(">open erp</a>"), "{body}");
        assert!(body.contains("db-sql: tcp port 5432 of client"), "{body}");
        server.abort();
    }

    #[test]
    fn published_hosts_are_name_dash_run_under_the_domain() {
        let o = PublicOrigin::default();
        assert_eq!(
            o.parse("erp-0123abcd.localhost:8443"),
            Some(("erp".into(), "0123abcd".into()))
        );
        assert_eq!(
            o.parse("DB-WEB-0123ABCD.LOCALHOST"),
            Some(("db-web".into(), "0123abcd".into()))
        );
        for not in [
            "127.0.0.1:8443",
            "localhost",
            "erp-0123abcd.example.com",
            "a.erp-0123abcd.localhost",
            "erp-0123abcx.localhost",
            "-0123abcd.localhost",
        ] {
            assert_eq!(o.parse(not), None, "{not}");
        }
        assert_eq!(o.origin("erp", "0123abcd"), "http://erp-0123abcd.localhost");
    }

    #[test]
    fn only_whole_origins_of_the_vm_are_rewritten() {
        let p = PublishedPort {
            name: "erp".into(),
            vm: "app".into(),
            port: 80,
            kind: PublishKind::Http,
            address: "10.20.0.11".into(),
            names: vec!["app.prod.example".into()],
            segment: "lan".into(),
            netns: "n".into(),
        };
        let to = "https://erp-0123abcd.labs.example";
        for (from, want) in [
            ("http://app.prod.example", to.to_string()),
            ("http://APP.prod.example/a?b", format!("{to}/a?b")),
            ("http://app.prod.example:80/x", format!("{to}/x")),
            ("http://10.20.0.11/", format!("{to}/")),
            ("http://10.20.0.110/", "http://10.20.0.110/".into()),
            (
                "http://app.prod.example.evil/",
                "http://app.prod.example.evil/".into(),
            ),
            (
                "http://app.prod.example:8080/",
                "http://app.prod.example:8080/".into(),
            ),
            ("/relative", "/relative".into()),
            (
                "https://elsewhere.example/",
                "https://elsewhere.example/".into(),
            ),
        ] {
            assert_eq!(rewrite_location(from, &p, to), want, "{from}");
        }
        assert_eq!(
            rewrite_origins(
                "<a href='http://10.20.0.11'>é</a> http://app.prod.example)",
                &vm_origins(&p),
                to
            ),
            format!("<a href='{to}'>é</a> {to})")
        );
    }

    #[test]
    fn hop_by_hop_headers_and_the_token_cookie_stay_here() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-private"),
        );
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(header::ACCEPT, HeaderValue::from_static("text/html"));
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("reclab_lab_token=secret; a=1"),
        );
        strip_hop(&mut h, false);
        strip_cookie(&mut h, COOKIE);
        assert!(h.get("x-private").is_none() && h.get(header::TE).is_none());
        assert!(h.get(header::CONNECTION).is_none());
        assert_eq!(h[header::ACCEPT], "text/html");
        assert_eq!(h[header::COOKIE], "a=1");
        assert_eq!(percent_decode("a%2Fb+c"), "a/b c");
    }
}
