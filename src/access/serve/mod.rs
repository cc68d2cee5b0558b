//! `reclab serve`: a small web server for the people who look at a lab, customers included.
//!
//! One page per running lab (`/lab/<run8>?token=…`): its VMs and their state, the latest check
//! results and report (when the run has `report/report.json`), a browser console per VM
//! (noVNC, served from `/novnc/` out of `--novnc DIR`, by default [`DEFAULT_NOVNC_DIR`] where
//! Debian's `novnc` package installs it), and a sign-off form
//! ("I saw my data"). The consoles' websockets (`/lab/<run8>/ws/<vm>`) are proxied to the VM's
//! graphics through libvirt, which authenticates the connection itself (`skip_auth`): the
//! customer never sees the VNC password.
//!
//! Access: every request carries the run's access token ([`console::access_token`]); a wrong
//! token, or a lab that expired or was torn down, gets 403 and a page that says so. Open
//! consoles are closed when the lab expires. Loopback by default; a non-loopback address is
//! only served with TLS.
//!
//! Routes:
//!
//! ```text
//! GET  /                              a note: open the link you were given
//! GET  /lab/{run}?token=T             the lab page
//! GET  /lab/{run}/console/{vm}?token  the browser console of one VM
//! GET  /lab/{run}/ws/{vm}?token       websocket (binary frames) <-> the VM's VNC server
//! GET  /lab/{run}/report?token        the run's HTML report, if there is one
//! POST /lab/{run}/signoff             form: token, name, comment, vm
//! GET  /novnc/{path}                  noVNC's files
//! GET  /static/console.js             the console page's script
//! GET  /favicon.ico                   an icon
//! ```

//!
//! Layout: this file holds the server's state, the router and the listener; [`auth`] checks
//! tokens, `pages` renders the HTML, `ws` proxies the consoles, `files` serves noVNC's files.

mod auth;
mod files;
mod pages;
pub mod proxy;
mod ws;

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use axum::routing::{get, post};
use jiff::Timestamp;
use serde::Deserialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::access::console;
use crate::hv::Hypervisor;

pub use auth::{Access, Denied, authorize};
pub use files::{DEFAULT_NOVNC_DIR, novnc_present};

/// Opens (or reuses) a hypervisor connection for a run's URI.
pub type Opener = Arc<dyn Fn(&str) -> Result<Arc<dyn Hypervisor>> + Send + Sync>;

/// The server's shared state.
pub struct App {
    state_dir: PathBuf,
    novnc: Option<PathBuf>,
    open: Opener,
    hvs: Mutex<HashMap<String, Arc<dyn Hypervisor>>>,
    signoff_lock: Mutex<()>,
    /// Opens connections to published ports (into the lab-services namespace).
    connector: proxy::Connector,
    /// Where published web apps are served (set once the listener is bound).
    public: std::sync::OnceLock<proxy::PublicOrigin>,
}

impl App {
    /// `novnc` is the noVNC package root (holding `core/rfb.js`), if installed.
    pub fn new(state_dir: PathBuf, novnc: Option<PathBuf>, open: Opener) -> Arc<App> {
        Arc::new(App {
            state_dir,
            novnc,
            open,
            hvs: Mutex::new(HashMap::new()),
            signoff_lock: Mutex::new(()),
            connector: proxy::netns_connector(),
            public: std::sync::OnceLock::new(),
        })
    }

    /// The same, with another connector for published ports (tests).
    pub fn with_connector(
        state_dir: PathBuf,
        novnc: Option<PathBuf>,
        open: Opener,
        connector: proxy::Connector,
    ) -> Arc<App> {
        Arc::new(App {
            state_dir,
            novnc,
            open,
            hvs: Mutex::new(HashMap::new()),
            signoff_lock: Mutex::new(()),
            connector,
            public: std::sync::OnceLock::new(),
        })
    }

    /// Where published web apps are served.
    pub fn public(&self) -> &proxy::PublicOrigin {
        self.public.get_or_init(proxy::PublicOrigin::default)
    }

    /// Set where published web apps are served (once, before serving).
    pub fn set_public(&self, origin: proxy::PublicOrigin) {
        let _ = self.public.set(origin);
    }

    fn hv(&self, uri: &str) -> Result<Arc<dyn Hypervisor>> {
        let mut hvs = self.hvs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(hv) = hvs.get(uri) {
            return Ok(hv.clone());
        }
        let hv = (self.open)(uri)?;
        hvs.insert(uri.to_string(), hv.clone());
        Ok(hv)
    }

    /// Forget a connection that failed, so the next request opens a fresh one.
    fn forget(&self, uri: &str) {
        self.hvs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(uri);
    }
}

#[derive(Debug, Deserialize)]
struct TokenQuery {
    token: Option<String>,
    signed: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Router.

/// All routes. See the module documentation.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(pages::index))
        .route("/lab/{run}", get(pages::lab_page))
        .route("/lab/{run}/console/{vm}", get(pages::console_page))
        .route("/lab/{run}/ws/{vm}", get(ws::console_ws))
        .route("/lab/{run}/report", get(pages::report_page))
        .route("/lab/{run}/signoff", post(pages::signoff_form))
        .route("/novnc/{*path}", get(files::novnc_file))
        .route("/static/console.js", get(files::console_js))
        .route("/favicon.ico", get(files::favicon))
        .route("/static/lab.js", get(files::lab_js))
        .fallback(not_found)
        // Requests for a published app's host (any path, any method) go to the app.
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            proxy::route_published,
        ))
        .with_state(app)
}

async fn not_found() -> Response {
    pages::error_page(
        axum::http::StatusCode::NOT_FOUND,
        "Not found",
        "There is no such page.",
    )
}

/// Headers every page gets: no caching (links carry tokens), no referrer, no framing.
fn secure(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; \
             script-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'self'",
        ),
    );
    r
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .context("a worker thread failed")
}

// ---------------------------------------------------------------------------------------------
// Listening.

/// Options of `reclab serve`.
#[derive(Debug, Clone)]
pub struct ServeOpts {
    pub listen: SocketAddr,
    pub tls: Option<(PathBuf, PathBuf)>,
    pub novnc: Option<PathBuf>,
    /// Published web apps are served at `<name>-<run8>.<publish_domain>` on the same port.
    pub publish_domain: String,
}

/// A TLS listener for axum: TCP accept, then the handshake (bounded), retried on failure.
struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (stream, peer) = match self.tcp.accept().await {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            match tokio::time::timeout(Duration::from_secs(10), self.acceptor.accept(stream)).await
            {
                Ok(Ok(tls)) => return (tls, peer),
                Ok(Err(e)) => tracing::info!(%peer, error = %e, "tls handshake failed"),
                Err(_) => tracing::info!(%peer, "tls handshake timed out"),
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// A TLS acceptor from PEM files (certificate chain, private key).
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<tokio_rustls::TlsAcceptor> {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading the tls certificate {}", cert.display()))?
        .collect::<std::result::Result<_, _>>()
        .with_context(|| format!("parsing the tls certificate {}", cert.display()))?;
    if certs.is_empty() {
        bail!("{} holds no certificate", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("reading the tls key {}", key.display()))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("setting up tls")?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .context("the tls certificate and key do not fit together")?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// The base URL links point at.
pub fn base_url(opts: &ServeOpts) -> String {
    let scheme = if opts.tls.is_some() { "https" } else { "http" };
    format!("{scheme}://{}", opts.listen)
}

/// Links of every running, unexpired lab (creating their tokens): `(lab, run8, link)`.
pub fn lab_links(state_dir: &Path, base: &str) -> Result<Vec<(String, String, String)>> {
    let now = Timestamp::now();
    let mut out = Vec::new();
    for (dir, rec) in crate::lab::find_runs(state_dir, None)? {
        let Some(rec) = rec else { continue };
        if console::ensure_alive(&rec, now).is_err() {
            continue;
        }
        let token = console::access_token(&dir)?;
        let run8 = rec.run_id.short().to_string();
        out.push((
            rec.lab.clone(),
            run8.clone(),
            console::lab_link(base, &run8, &token),
        ));
    }
    Ok(out)
}

/// Run the server until Ctrl-C / SIGTERM.
pub fn run(state_dir: &Path, opts: &ServeOpts, open: Opener) -> Result<()> {
    if !opts.listen.ip().is_loopback() && opts.tls.is_none() {
        bail!(
            "refusing to serve lab links without tls on {} (not a loopback address): give \
             --tls-cert and --tls-key, or listen on 127.0.0.1 behind a tls proxy",
            opts.listen
        );
    }
    let novnc = opts
        .novnc
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_NOVNC_DIR));
    let novnc = if novnc_present(&novnc) {
        Some(novnc)
    } else {
        eprintln!(
            "reclab: warning: noVNC not found in {} (install it, for example Debian's novnc \
             package, or give --novnc DIR): pages work, browser consoles do not",
            novnc.display()
        );
        None
    };
    let acceptor = match &opts.tls {
        Some((cert, key)) => Some(tls_acceptor(cert, key)?),
        None => None,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let app = App::new(state_dir.to_path_buf(), novnc, open);
    rt.block_on(async move {
        let tcp = tokio::net::TcpListener::bind(opts.listen)
            .await
            .with_context(|| format!("listening on {}", opts.listen))?;
        let bound = ServeOpts {
            listen: tcp.local_addr().context("reading the listen address")?,
            ..opts.clone()
        };
        let base = base_url(&bound);
        app.set_public(proxy::PublicOrigin {
            scheme: if bound.tls.is_some() { "https" } else { "http" }.into(),
            domain: bound.publish_domain.clone(),
            port: match (bound.tls.is_some(), bound.listen.port()) {
                (true, 443) | (false, 80) => None,
                (_, p) => Some(p),
            },
        });
        println!("reclab serve: listening on {base}");
        for (lab, run8, link) in lab_links(state_dir, &base)? {
            println!("lab {lab} run {run8}: {link}");
        }
        use std::io::Write as _;
        std::io::stdout().flush().ok();
        let shutdown = async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("installing a SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        };
        let routes = router(app.clone());
        match acceptor {
            Some(acceptor) => axum::serve(TlsListener { tcp, acceptor }, routes)
                .with_graceful_shutdown(shutdown)
                .await
                .context("serving https")?,
            None => axum::serve(tcp, routes)
                .with_graceful_shutdown(shutdown)
                .await
                .context("serving http")?,
        }
        Ok(())
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use axum::http::StatusCode;

    use crate::hv::fake::FakeHv;
    use crate::lab::journal::RunDir;
    use crate::lab::record::RunRecord;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    const CLIENT_XML: &str = "<domain type='qemu'><name>reclab-erp-0123abcd-client</name>\
        <devices><serial type='pty'/><graphics type='vnc' port='5900'/></devices></domain>";

    /// A state directory with one run of lab erp (VM client) expiring at `expires`.
    pub(crate) fn fixture(expires: &str) -> (tempfile::TempDir, Arc<App>, Arc<FakeHv>, String) {
        let state = tempfile::tempdir().unwrap();
        let dir = RunDir {
            path: state.path().join("runs").join("0123abcd"),
        };
        dir.create().unwrap();
        let rec: RunRecord = serde_json::from_value(serde_json::json!({
            "schema": 1, "lab": "erp", "run_id": "0123abcd0123abcd0123abcd0123abcd",
            "lab_file": "/x/erp.toml", "uri": "fake:///", "created": "2026-01-01T00:00:00Z",
            "expires": expires, "state": "up", "owner_pid": 1, "owner_start": 0,
            "vms": [{"name": "client", "domain": "reclab-erp-0123abcd-client", "tier": 2,
                     "macs": [], "addresses": ["10.20.0.12"], "serial_log": "/x/log",
                     "console_password": "abcdefgh"}],
            "networks": [], "fingerprints": [], "changes": []
        }))
        .unwrap();
        dir.save_record(&rec).unwrap();
        let token = console::access_token(&dir).unwrap();
        let hv = Arc::new(FakeHv::new());
        hv.add_domain(CLIENT_XML, false, true).unwrap();
        let hv2 = hv.clone();
        let open: Opener = Arc::new(move |_uri| Ok(hv2.clone() as Arc<dyn Hypervisor>));
        let app = App::new(state.path().to_path_buf(), None, open);
        (state, app, hv, token)
    }

    pub(crate) fn in_an_hour() -> String {
        (Timestamp::now() + jiff::SignedDuration::from_hours(1)).to_string()
    }

    pub(crate) async fn get(app: &Arc<App>, uri: &str) -> (StatusCode, String) {
        let resp = router(app.clone())
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }
}
