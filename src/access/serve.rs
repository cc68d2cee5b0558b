//! `reclab serve`: a small web server for the people who look at a lab, customers included.
//!
//! One page per running lab (`/lab/<run8>?token=…`): its VMs and their state, the latest check
//! results and report (when the run has `report/report.json`), a browser console per VM
//! (noVNC, vendored from npm by `scripts/novnc`, served from `/novnc/`), and a sign-off form
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

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Form, Path as UrlPath, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use jiff::Timestamp;
use serde::Deserialize;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::access::console::{self, Lease};
use crate::hv::{DomState, Hypervisor};
use crate::lab::journal::RunDir;
use crate::lab::record::RunRecord;
use crate::report::signoff::{self, SignOff};

/// Opens (or reuses) a hypervisor connection for a run's URI.
pub type Opener = Arc<dyn Fn(&str) -> Result<Arc<dyn Hypervisor>> + Send + Sync>;

/// The server's shared state.
pub struct App {
    state_dir: PathBuf,
    novnc: Option<PathBuf>,
    open: Opener,
    hvs: Mutex<HashMap<String, Arc<dyn Hypervisor>>>,
    signoff_lock: Mutex<()>,
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
        })
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

/// Where noVNC is looked for when neither `--novnc` nor `RECLAB_NOVNC_DIR` names it: where
/// `scripts/novnc` puts it.
pub fn default_novnc_dir() -> PathBuf {
    let dev = std::env::var_os("RECLAB_DEV_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/reclab-dev"));
    dev.join("novnc/node_modules/@novnc/novnc")
}

/// Whether `dir` holds noVNC.
pub fn novnc_present(dir: &Path) -> bool {
    dir.join("core/rfb.js").is_file()
}

// ---------------------------------------------------------------------------------------------
// Access.

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// No such run, no token given, or not its token: nothing is revealed.
    BadLink,
    /// The token is right but the lab expired.
    Expired { lab: String, at: Timestamp },
}

/// A request that may see a run.
#[derive(Debug, Clone)]
pub struct Access {
    pub dir: RunDir,
    pub rec: RunRecord,
    pub run8: String,
    pub token: String,
}

fn valid_run8(run8: &str) -> bool {
    run8.len() == 8
        && run8
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Check a token for a run at `now`.
pub fn authorize(
    state_dir: &Path,
    run8: &str,
    token: Option<&str>,
    now: Timestamp,
) -> std::result::Result<Access, Denied> {
    if !valid_run8(run8) {
        return Err(Denied::BadLink);
    }
    let token = token.ok_or(Denied::BadLink)?;
    let dir = RunDir {
        path: RunDir::runs_root(state_dir).join(run8),
    };
    let expected = console::read_token(&dir)
        .ok()
        .flatten()
        .ok_or(Denied::BadLink)?;
    if !console::token_matches(&expected, token) {
        return Err(Denied::BadLink);
    }
    let rec = dir.load_record().ok().flatten().ok_or(Denied::BadLink)?;
    let at = console::expires(&rec).map_err(|_| Denied::BadLink)?;
    if at <= now {
        return Err(Denied::Expired {
            lab: rec.lab.clone(),
            at,
        });
    }
    Ok(Access {
        dir,
        rec,
        run8: run8.to_string(),
        token: token.to_string(),
    })
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        let body = match self {
            Denied::BadLink => page(
                "Access refused",
                "<h1>Access refused</h1><p>This link is not valid: it is incomplete, or the lab \
                 it was made for has been removed. Ask the person who sent it for a new link.</p>",
            ),
            Denied::Expired { lab, at } => page(
                "Lab expired",
                &format!(
                    "<h1>This lab has expired</h1><p>The restore lab <b>{}</b> expired at {} and \
                     its consoles are closed. Ask the person who sent the link to extend the lab \
                     or to start a new one.</p>",
                    esc(&lab),
                    esc(&at.to_string())
                ),
            ),
        };
        (StatusCode::FORBIDDEN, secure(Html(body).into_response())).into_response()
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
        .route("/", get(index))
        .route("/lab/{run}", get(lab_page))
        .route("/lab/{run}/console/{vm}", get(console_page))
        .route("/lab/{run}/ws/{vm}", get(console_ws))
        .route("/lab/{run}/report", get(report_page))
        .route("/lab/{run}/signoff", post(signoff_form))
        .route("/novnc/{*path}", get(novnc_file))
        .route("/static/console.js", get(console_js))
        .route("/favicon.ico", get(favicon))
        .with_state(app)
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

fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    let body = page(
        title,
        &format!("<h1>{}</h1><p>{}</p>", esc(title), esc(message)),
    );
    (status, secure(Html(body).into_response())).into_response()
}

async fn index() -> Response {
    secure(
        Html(page(
            "reclab",
            "<h1>reclab restore labs</h1><p>Open the link you were given for your lab.</p>",
        ))
        .into_response(),
    )
}

/// What the lab page shows about one VM.
struct VmView {
    name: String,
    state: String,
    addresses: Vec<String>,
}

fn state_label(s: Result<Option<DomState>>) -> &'static str {
    match s {
        Ok(Some(DomState::Running)) => "running",
        Ok(Some(DomState::Paused)) => "paused",
        Ok(Some(DomState::ShutOff)) => "shut off",
        Ok(Some(DomState::Crashed)) => "crashed",
        Ok(Some(DomState::Other)) => "other",
        Ok(None) => "absent",
        Err(_) => "unknown",
    }
}

fn vm_views(app: &App, rec: &RunRecord) -> Vec<VmView> {
    let hv = app.hv(&rec.uri).ok();
    rec.vms
        .iter()
        .map(|v| {
            let state = match &hv {
                Some(hv) => {
                    let s = hv.domain_state(&v.domain);
                    if s.is_err() {
                        app.forget(&rec.uri);
                    }
                    state_label(s)
                }
                None => "unreachable",
            };
            VmView {
                name: v.name.clone(),
                state: state.to_string(),
                addresses: v.addresses.clone(),
            }
        })
        .collect()
}

/// The run's report (`report/report.json`), read loosely: another part of reclab writes it.
fn read_report(dir: &RunDir) -> Option<Result<serde_json::Value>> {
    let path = dir.path.join("report").join("report.json");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            Some(serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display())))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => Some(Err(e).with_context(|| format!("reading {}", path.display()))),
    }
}

async fn lab_page(
    State(app): State<Arc<App>>,
    UrlPath(run): UrlPath<String>,
    Query(q): Query<TokenQuery>,
) -> Response {
    let access = match authorize(&app.state_dir, &run, q.token.as_deref(), Timestamp::now()) {
        Ok(a) => a,
        Err(d) => return d.into_response(),
    };
    let app2 = app.clone();
    let a2 = access.clone();
    let gathered = blocking(move || {
        let vms = vm_views(&app2, &a2.rec);
        let report = read_report(&a2.dir);
        let signoffs = signoff::load(&a2.dir.path);
        (vms, report, signoffs)
    })
    .await;
    let (vms, report, signoffs) = match gathered {
        Ok(x) => x,
        Err(e) => {
            return error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Error",
                &format!("{e:#}"),
            );
        }
    };
    let html = render_lab_page(
        &access,
        &vms,
        report.as_ref(),
        &signoffs.unwrap_or_default(),
        q.signed.is_some(),
        Timestamp::now(),
    );
    secure(Html(html).into_response())
}

/// The lab page. Pure, for tests.
fn render_lab_page(
    a: &Access,
    vms: &[VmView],
    report: Option<&Result<serde_json::Value>>,
    signoffs: &[SignOff],
    just_signed: bool,
    now: Timestamp,
) -> String {
    let t = urlenc(&a.token);
    let run = &a.run8;
    let mut h = String::new();
    let left = console::expires(&a.rec)
        .map(|e| (e.as_second() - now.as_second()).max(0) / 60)
        .unwrap_or(0);
    let _ = write!(
        h,
        "<h1>Restore lab {lab}</h1><p class=sub>run {run} &middot; available until {exp} \
         ({left} minutes left)</p>",
        lab = esc(&a.rec.lab),
        exp = esc(&a.rec.expires),
    );
    if just_signed {
        h.push_str("<p class=ok id=signed>Thank you: your sign-off was recorded.</p>");
    }
    h.push_str("<h2>Machines</h2><table id=vms><tr><th>machine</th><th>state</th><th>addresses</th><th>console</th></tr>");
    for v in vms {
        let _ = write!(
            h,
            "<tr><td>{name}</td><td>{state}</td><td>{addr}</td><td>\
             <a class=console href=\"/lab/{run}/console/{uname}?token={t}\">open console</a></td></tr>",
            name = esc(&v.name),
            state = esc(&v.state),
            addr = esc(&v.addresses.join(", ")),
            uname = urlenc(&v.name),
        );
    }
    h.push_str("</table>");
    h.push_str("<h2>Checks</h2>");
    match report {
        None => h.push_str("<p id=checks>No check results yet for this lab.</p>"),
        Some(Err(e)) => {
            let _ = write!(
                h,
                "<p id=checks>The report could not be read: {}</p>",
                esc(&format!("{e:#}"))
            );
        }
        Some(Ok(r)) => {
            let _ = write!(
                h,
                "<p id=checks>Result: <b>{}</b> &middot; <a href=\"/lab/{run}/report?token={t}\">full report</a></p>",
                esc(r["result"].as_str().unwrap_or("unknown"))
            );
            h.push_str("<table><tr><th>check</th><th>machine</th><th>result</th></tr>");
            for c in r["checks"].as_array().into_iter().flatten() {
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(c["name"].as_str().unwrap_or("?")),
                    esc(c["vm"].as_str().unwrap_or("")),
                    esc(c["status"].as_str().unwrap_or("?")),
                );
            }
            h.push_str("</table>");
        }
    }
    h.push_str("<h2>Sign-off</h2>");
    if signoffs.is_empty() {
        h.push_str("<p>Nobody has signed off yet.</p>");
    } else {
        h.push_str("<ul id=signoffs>");
        for s in signoffs {
            let _ = write!(
                h,
                "<li><b>{}</b>{} at {}: {}</li>",
                esc(&s.name),
                s.vm.as_deref()
                    .map(|v| format!(" ({})", esc(v)))
                    .unwrap_or_default(),
                esc(&s.at.to_string()),
                esc(&s.comment)
            );
        }
        h.push_str("</ul>");
    }
    let _ = write!(
        h,
        "<form id=signoff method=post action=\"/lab/{run}/signoff\">\
         <p>When you have looked at your restored data, confirm it here.</p>\
         <input type=hidden name=token value=\"{tok}\">\
         <label>Your name <input id=name name=name required maxlength={mn}></label>\
         <label>Machine <select id=vm name=vm><option value=\"\">the whole lab</option>{opts}</select></label>\
         <label>Comment <textarea id=comment name=comment maxlength={mc} rows=3></textarea></label>\
         <button type=submit id=sign>I saw my data</button></form>",
        tok = esc(&a.token),
        mn = signoff::MAX_NAME,
        mc = signoff::MAX_COMMENT,
        opts = vms
            .iter()
            .map(|v| format!("<option value=\"{n}\">{n}</option>", n = esc(&v.name)))
            .collect::<String>(),
    );
    page(&format!("Restore lab {}", a.rec.lab), &h)
}

async fn console_page(
    State(app): State<Arc<App>>,
    UrlPath((run, vm)): UrlPath<(String, String)>,
    Query(q): Query<TokenQuery>,
) -> Response {
    let access = match authorize(&app.state_dir, &run, q.token.as_deref(), Timestamp::now()) {
        Ok(a) => a,
        Err(d) => return d.into_response(),
    };
    if console::find_vm(&access.rec, &vm).is_err() {
        return error_page(
            StatusCode::NOT_FOUND,
            "No such machine",
            &format!("Lab {} has no machine {vm}.", access.rec.lab),
        );
    }
    let novnc = app.novnc.as_deref().is_some_and(novnc_present);
    secure(Html(render_console_page(&access, &vm, novnc)).into_response())
}

/// The console page of one VM. Pure, for tests.
fn render_console_page(a: &Access, vm: &str, novnc: bool) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<header class=bar><a href=\"/lab/{run}?token={t}\">&larr; lab {lab}</a> \
         <b>{vm}</b> <span id=status>connecting&hellip;</span> \
         <button id=cad type=button>Send Ctrl-Alt-Del</button></header>",
        run = a.run8,
        t = urlenc(&a.token),
        lab = esc(&a.rec.lab),
        vm = esc(vm),
    );
    if novnc {
        let _ = write!(
            h,
            "<div id=screen data-ws=\"/lab/{run}/ws/{uvm}\"></div>\
             <script type=module src=\"/static/console.js\"></script>",
            run = a.run8,
            uvm = urlenc(vm),
        );
    } else {
        h.push_str(
            "<p id=screen>The browser console is not installed on this server (the operator \
             runs <code>scripts/novnc</code>).</p>",
        );
    }
    page(&format!("{vm}: console of lab {}", a.rec.lab), &h)
}

/// The console page's script: noVNC's RFB client on the page's websocket.
const CONSOLE_JS: &str = r#"import RFB from '/novnc/core/rfb.js';

const screen = document.getElementById('screen');
const status = document.getElementById('status');
const token = new URLSearchParams(location.search).get('token') || '';
const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
const url = `${scheme}//${location.host}${screen.dataset.ws}?token=${encodeURIComponent(token)}`;

function show(state, text) {
    document.body.dataset.state = state;
    status.textContent = text;
}

try {
    const rfb = new RFB(screen, url);
    rfb.scaleViewport = true;
    rfb.background = '#202124';
    rfb.addEventListener('connect', () => show('connected', 'connected'));
    rfb.addEventListener('disconnect', (e) => show('disconnected',
        e.detail.clean ? 'disconnected (the lab may have expired)' : 'connection lost'));
    rfb.addEventListener('credentialsrequired', () => show('error', 'the console asked for a password'));
    rfb.addEventListener('desktopname', (e) => { document.title = `${e.detail.name}: reclab console`; });
    document.getElementById('cad').addEventListener('click', () => rfb.sendCtrlAltDel());
    window.reclabConsole = rfb;
} catch (e) {
    show('error', `cannot start the console: ${e}`);
}
"#;

async fn console_js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        CONSOLE_JS,
    )
        .into_response()
}

/// A small icon, so that browsers do not log a missing one: a green disk ("restored").
async fn favicon() -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "max-age=86400"),
        ],
        "<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'>\
         <circle cx='8' cy='8' r='7' fill='#1e7d32'/></svg>",
    )
        .into_response()
}

async fn console_ws(
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

async fn report_page(
    State(app): State<Arc<App>>,
    UrlPath(run): UrlPath<String>,
    Query(q): Query<TokenQuery>,
) -> Response {
    let access = match authorize(&app.state_dir, &run, q.token.as_deref(), Timestamp::now()) {
        Ok(a) => a,
        Err(d) => return d.into_response(),
    };
    match tokio::fs::read(access.dir.path.join("report").join("report.html")).await {
        Ok(bytes) => {
            secure(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], bytes).into_response())
        }
        Err(_) => error_page(
            StatusCode::NOT_FOUND,
            "No report yet",
            "This lab has no report yet.",
        ),
    }
}

#[derive(Debug, Deserialize)]
struct SignOffForm {
    token: String,
    name: String,
    #[serde(default)]
    comment: String,
    #[serde(default)]
    vm: String,
}

async fn signoff_form(
    State(app): State<Arc<App>>,
    UrlPath(run): UrlPath<String>,
    Form(f): Form<SignOffForm>,
) -> Response {
    let access = match authorize(&app.state_dir, &run, Some(&f.token), Timestamp::now()) {
        Ok(a) => a,
        Err(d) => return d.into_response(),
    };
    if !f.vm.is_empty() && console::find_vm(&access.rec, &f.vm).is_err() {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Sign-off not recorded",
            &format!("Lab {} has no machine {}.", access.rec.lab, f.vm),
        );
    }
    let s = match SignOff::new(&f.name, &f.comment, Some(&f.vm), Timestamp::now()) {
        Ok(s) => s,
        Err(e) => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "Sign-off not recorded",
                &format!("{e:#}"),
            );
        }
    };
    let app2 = app.clone();
    let a2 = access.clone();
    let s2 = s.clone();
    let saved = blocking(move || {
        let _guard = app2.signoff_lock.lock().unwrap_or_else(|e| e.into_inner());
        signoff::record(&app2.state_dir, &a2.dir.path, &a2.rec.lab, &a2.run8, &s2)
    })
    .await
    .and_then(|r| r);
    match saved {
        Ok(()) => {
            tracing::info!(lab = %access.rec.lab, run = %access.run8, name = %s.name, "sign-off recorded");
            Redirect::to(&format!(
                "/lab/{}?token={}&signed=1",
                access.run8,
                urlenc(&access.token)
            ))
            .into_response()
        }
        Err(e) => error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Sign-off not recorded",
            &format!("{e:#}"),
        ),
    }
}

/// A relative path inside the noVNC directory, or `None` if it tries to leave it.
fn safe_relative(path: &str) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for part in path.split('/') {
        if part.is_empty() || part == "." || part == ".." || part.contains('\\') {
            return None;
        }
        out.push(part);
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "html" => "text/html; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "wasm" => "application/wasm",
        _ => "application/octet-stream",
    }
}

async fn novnc_file(State(app): State<Arc<App>>, UrlPath(path): UrlPath<String>) -> Response {
    let (Some(root), Some(rel)) = (app.novnc.as_ref(), safe_relative(&path)) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let full = root.join(&rel);
    match tokio::fs::read(&full).await {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, content_type(&full)),
                (header::CACHE_CONTROL, "max-age=3600"),
            ],
            bytes,
        )
            .into_response(),
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

// ---------------------------------------------------------------------------------------------
// HTML helpers.

const CSS: &str = "body{font:15px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1f2328;background:#f6f8fa}\
main{max-width:960px;margin:0 auto;padding:20px}\
h1{margin:0 0 4px}.sub{color:#57606a}\
table{border-collapse:collapse;width:100%;background:#fff}\
th,td{border:1px solid #d8dee4;padding:6px 8px;text-align:left}th{background:#eef1f4}\
.ok{background:#dafbe1;border:1px solid #1e7d32;padding:8px;border-radius:6px}\
form{background:#fff;border:1px solid #d8dee4;border-radius:8px;padding:12px;display:grid;gap:8px;max-width:560px}\
label{display:grid;gap:2px}button{padding:8px 14px;font-weight:600}\
.bar{background:#24292f;color:#fff;padding:6px 12px;display:flex;gap:14px;align-items:center}\
.bar a{color:#9ecbff}#screen{height:calc(100vh - 44px);background:#202124}";

fn page(title: &str, body: &str) -> String {
    let main = if body.starts_with("<header") {
        body.to_string()
    } else {
        format!("<main>{body}</main>")
    };
    format!(
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>\
         <meta name=viewport content=\"width=device-width,initial-scale=1\">\
         <link rel=icon href=\"/favicon.ico\" type=\"image/svg+xml\">\
         <title>{}</title><style>{CSS}</style></head><body>{main}</body></html>\n",
        esc(title)
    )
}

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn urlenc(s: &str) -> String {
    let mut o = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            o.push(b as char);
        } else {
            let _ = write!(o, "%{b:02X}");
        }
    }
    o
}

// ---------------------------------------------------------------------------------------------
// Listening.

/// Options of `reclab serve`.
#[derive(Debug, Clone)]
pub struct ServeOpts {
    pub listen: SocketAddr,
    pub tls: Option<(PathBuf, PathBuf)>,
    pub novnc: Option<PathBuf>,
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
    let novnc = opts.novnc.clone().unwrap_or_else(default_novnc_dir);
    let novnc = if novnc_present(&novnc) {
        Some(novnc)
    } else {
        eprintln!(
            "reclab: warning: noVNC not found in {} (run scripts/novnc, or give --novnc DIR): \
             pages work, browser consoles do not",
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
        let routes = router(app);
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
mod tests {
    use super::*;
    use crate::hv::fake::{FAKE_RFB_BANNER, FakeHv};
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    const CLIENT_XML: &str = "<domain type='qemu'><name>reclab-erp-0123abcd-client</name>\
        <devices><serial type='pty'/><graphics type='vnc' port='5900'/></devices></domain>";

    /// A state directory with one run of lab erp (VM client) expiring at `expires`.
    fn fixture(expires: &str) -> (tempfile::TempDir, Arc<App>, Arc<FakeHv>, String) {
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

    fn in_an_hour() -> String {
        (Timestamp::now() + jiff::SignedDuration::from_hours(1)).to_string()
    }

    async fn get(app: &Arc<App>, uri: &str) -> (StatusCode, String) {
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

    #[tokio::test]
    async fn the_lab_page_needs_the_right_token() {
        let (_state, app, _hv, token) = fixture(&in_an_hour());
        let (status, body) = get(&app, &format!("/lab/0123abcd?token={token}")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("Restore lab erp"), "{body}");
        assert!(
            body.contains("<td>client</td><td>running</td><td>10.20.0.12</td>"),
            "{body}"
        );
        assert!(body.contains("No check results yet"), "{body}");

        for bad in [
            "/lab/0123abcd".to_string(),
            "/lab/0123abcd?token=".to_string(),
            format!("/lab/0123abcd?token={}", &token[..63]),
            format!("/lab/0123abce?token={token}"),
            format!("/lab/..%2F..%2Fx?token={token}"),
            format!("/lab/0123abcd/console/client?token=x{token}"),
            "/lab/0123abcd/ws/client?token=nope".to_string(),
        ] {
            let (status, body) = get(&app, &bad).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{bad}");
            assert!(body.contains("This link is not valid"), "{bad}: {body}");
        }
    }

    #[tokio::test]
    async fn an_expired_lab_is_refused_with_a_clear_page() {
        let (_state, app, _hv, token) = fixture("2020-01-01T00:00:00Z");
        let (status, body) = get(&app, &format!("/lab/0123abcd?token={token}")).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(body.contains("This lab has expired"), "{body}");
        assert!(body.contains("2020-01-01T00:00:00Z"), "{body}");
        let (status, _) = get(&app, &format!("/lab/0123abcd/ws/client?token={token}")).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }

    #[tokio::test]
    async fn the_lab_page_shows_the_report_when_there_is_one() {
        let (state, app, _hv, token) = fixture(&in_an_hour());
        let report = state.path().join("runs/0123abcd/report");
        std::fs::create_dir_all(&report).unwrap();
        std::fs::write(
            report.join("report.json"),
            r#"{"result":"verified","checks":[{"name":"invoices","vm":"db","status":"pass"}]}"#,
        )
        .unwrap();
        std::fs::write(report.join("report.html"), "<html>the report</html>").unwrap();
        let (_, body) = get(&app, &format!("/lab/0123abcd?token={token}")).await;
        assert!(body.contains("Result: <b>verified</b>"), "{body}");
        assert!(
            body.contains("<td>invoices</td><td>db</td><td>pass</td>"),
            "{body}"
        );
        let (status, body) = get(&app, &format!("/lab/0123abcd/report?token={token}")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "<html>the report</html>");
    }

    #[tokio::test]
    async fn console_pages_exist_only_for_the_labs_vms() {
        let (_state, app, _hv, token) = fixture(&in_an_hour());
        let (status, body) =
            get(&app, &format!("/lab/0123abcd/console/client?token={token}")).await;
        assert_eq!(status, StatusCode::OK);
        // No noVNC in this fixture: the page says so instead of loading a missing script.
        assert!(body.contains("scripts/novnc"), "{body}");
        let (status, _) = get(&app, &format!("/lab/0123abcd/console/db?token={token}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn a_signoff_from_the_form_is_stored_and_shown() {
        let (state, app, _hv, token) = fixture(&in_an_hour());
        let form = format!("token={token}&name=Ann+Smith&comment=May+invoices+are+there&vm=client");
        let resp = router(app.clone())
            .oneshot(
                Request::post("/lab/0123abcd/signoff")
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(Body::from(form))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::SEE_OTHER);
        let to = resp.headers()[header::LOCATION]
            .to_str()
            .unwrap()
            .to_string();
        assert_eq!(to, format!("/lab/0123abcd?token={token}&signed=1"));
        let (_, body) = get(&app, &to).await;
        assert!(body.contains("your sign-off was recorded"), "{body}");
        assert!(body.contains("<b>Ann Smith</b> (client)"), "{body}");
        let dir = RunDir {
            path: state.path().join("runs/0123abcd"),
        };
        let stored = signoff::load(&dir.path).unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].comment, "May invoices are there");
        let history = crate::report::history_path(state.path(), "erp");
        assert_eq!(signoff::history_signoffs(&history).unwrap().len(), 1);

        // A forged form (wrong token) records nothing.
        let resp = router(app.clone())
            .oneshot(
                Request::post("/lab/0123abcd/signoff")
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(Body::from("token=forged&name=Mallory"))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        assert_eq!(signoff::load(&dir.path).unwrap().len(), 1);
    }

    #[tokio::test]
    async fn novnc_files_are_served_from_its_directory_only() {
        let (state, _app, hv, _token) = fixture(&in_an_hour());
        let novnc = state.path().join("novnc");
        std::fs::create_dir_all(novnc.join("core")).unwrap();
        std::fs::write(novnc.join("core/rfb.js"), "export default class RFB {}").unwrap();
        std::fs::write(state.path().join("secret"), "no").unwrap();
        let hv2 = hv.clone();
        let open: Opener = Arc::new(move |_uri| Ok(hv2.clone() as Arc<dyn Hypervisor>));
        let app = App::new(state.path().to_path_buf(), Some(novnc), open);
        let resp = router(app.clone())
            .oneshot(
                Request::get("/novnc/core/rfb.js")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(
            resp.headers()[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        for bad in [
            "/novnc/../secret",
            "/novnc/core/../../secret",
            "/novnc/%2E%2E/secret",
        ] {
            let (status, _) = get(&app, bad).await;
            assert_ne!(status, StatusCode::OK, "{bad}");
        }
        assert_eq!(safe_relative("core/../x"), None);
        assert_eq!(
            safe_relative("core/rfb.js"),
            Some(PathBuf::from("core/rfb.js"))
        );
    }

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

    #[test]
    fn run_ids_in_urls_are_eight_hex_digits() {
        assert!(valid_run8("0123abcd"));
        assert!(!valid_run8("0123ABCD"));
        assert!(!valid_run8("../../x1"));
        assert!(!valid_run8("0123abc"));
    }

    #[test]
    fn escaping_keeps_markup_out() {
        assert_eq!(esc("<b a=\"x\">&'"), "&lt;b a=&quot;x&quot;&gt;&amp;&#39;");
        assert_eq!(urlenc("a b&c"), "a%20b%26c");
    }
}
