//! The HTML pages: the lab page (VMs, checks, sign-offs), a VM's console page, the run's
//! report, and the sign-off form's handler. Rendering is pure (`render_*`); the style sheet is
//! `assets/serve.css`.

use anyhow::{Context, Result};
use axum::extract::{Form, Path as UrlPath, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use jiff::Timestamp;
use serde::Deserialize;
use std::fmt::Write as _;
use std::sync::Arc;

use super::auth::{Access, authorize};
use super::files::novnc_present;
use super::{App, TokenQuery, blocking, secure};
use crate::access::console;
use crate::base::text::html_escape as esc;
use crate::hv::DomState;
use crate::lab::journal::RunDir;
use crate::lab::record::RunRecord;
use crate::report::signoff::{self, SignOff};
use crate::report::store::{REPORT_HTML, REPORT_JSON, run_report_dir};

const CSS: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/serve.css"));

pub(super) fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    let body = page(
        title,
        &format!("<h1>{}</h1><p>{}</p>", esc(title), esc(message)),
    );
    (status, secure(Html(body).into_response())).into_response()
}

pub(super) async fn index() -> Response {
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
    let path = run_report_dir(&dir.path).join(REPORT_JSON);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            Some(serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display())))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => Some(Err(e).with_context(|| format!("reading {}", path.display()))),
    }
}

pub(super) async fn lab_page(
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
    let apps = super::proxy::published_links(&app, &access);
    let html = render_lab_page(
        &access,
        &apps,
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
    apps: &[(String, String, u16, Option<String>)],
    vms: &[VmView],
    report: Option<&Result<serde_json::Value>>,
    signoffs: &[SignOff],
    just_signed: bool,
    now: Timestamp,
) -> String {
    let body = [
        lab_heading(a, just_signed, now),
        published(apps),
        machines(a, vms),
        restore_points(a, report),
        checks(a, report),
        signoff_list(signoffs),
        signoff_form_html(a, vms),
        "<script src=\"/static/lab.js\" defer></script>".to_string(),
    ]
    .concat();
    page(&format!("Restore lab {}", a.rec.lab), &body)
}

/// A time for people: `<time>` with the RFC 3339 value, which the page's script shows in the
/// reader's time zone; the text without it is UTC to the minute. `clock`: the time of day only.
pub(super) fn time_html(rfc3339: &str, clock: bool) -> String {
    match rfc3339.parse::<Timestamp>() {
        Ok(t) => {
            let text = if clock {
                t.strftime("%H:%M UTC").to_string()
            } else {
                t.strftime("%Y-%m-%d %H:%M UTC").to_string()
            };
            format!(
                "<time datetime=\"{}\"{}>{text}</time>",
                t.round(jiff::Unit::Second).unwrap_or(t),
                if clock { " class=clock" } else { "" }
            )
        }
        Err(_) => esc(rfc3339),
    }
}

/// A duration for people: "3 days 2 hours", "57 minutes", "less than a minute".
fn human_age(seconds: i64) -> String {
    let s = seconds.unsigned_abs();
    let (d, h, m) = (s / 86400, s % 86400 / 3600, s % 3600 / 60);
    let unit = |n: u64, one: &str| format!("{n} {one}{}", if n == 1 { "" } else { "s" });
    match (d, h, m) {
        (0, 0, 0) => "less than a minute".into(),
        (0, 0, m) => unit(m, "minute"),
        (0, h, 0) => unit(h, "hour"),
        (0, h, m) => format!("{} {}", unit(h, "hour"), unit(m, "minute")),
        (d, 0, _) => unit(d, "day"),
        (d, h, _) => format!("{} {}", unit(d, "day"), unit(h, "hour")),
    }
}

/// The published web apps and tcp ports of the lab.
fn published(apps: &[(String, String, u16, Option<String>)]) -> String {
    if apps.is_empty() {
        return String::new();
    }
    let items: String = apps
        .iter()
        .map(|(name, vm, port, link)| match link {
            Some(link) => format!(
                "<li><a class=publish id=\"open-{n}\" href=\"{l}\" target=_blank rel=noopener>open {n}</a> \
                 <span class=sub>(the web application on {vm}, port {port})</span></li>",
                n = esc(name),
                l = esc(link),
                vm = esc(vm),
            ),
            None => format!(
                "<li>{n}: tcp port {port} of {vm}, for the operator \
                 (<code>reclab forward</code>)</li>",
                n = esc(name),
                vm = esc(vm),
            ),
        })
        .collect();
    format!("<h2>Applications</h2><ul id=apps>{items}</ul>")
}

/// What each machine was restored from, and how old its data is against the requested moment.
fn restore_points(a: &Access, report: Option<&Result<serde_json::Value>>) -> String {
    let (reference, against) = match a.rec.at_time.as_deref() {
        Some(t) => (t.to_string(), "the requested moment"),
        None => (a.rec.created.clone(), "the moment the lab was made"),
    };
    let intro = match a.rec.at_time.as_deref() {
        Some(t) => format!(
            "<p id=moment>You are looking at the backups for {} (asked for: {}).</p>",
            time_html(t, false),
            esc(a.rec.at.as_deref().unwrap_or("")),
        ),
        None => format!(
            "<p id=moment>You are looking at the latest backups, as of {}.</p>",
            time_html(&a.rec.created, false)
        ),
    };
    let reference_ts = reference.parse::<Timestamp>().ok();
    let age = |newest: Option<&str>| -> String {
        let (Some(r), Some(n)) = (
            reference_ts,
            newest.and_then(|n| n.parse::<Timestamp>().ok()),
        ) else {
            return String::new();
        };
        let secs = r.as_second() - n.as_second();
        if secs >= 0 {
            format!("{} before {against}", human_age(secs))
        } else {
            format!("{} after {against}", human_age(secs))
        }
    };
    let mut rows = String::new();
    for v in &a.rec.vms {
        if let Some(i) = a.rec.injections.iter().find(|i| i.vm == v.name) {
            let newest = if i.dump.time >= i.image.time {
                &i.dump.time
            } else {
                &i.image.time
            };
            let _ = write!(
                rows,
                "<tr><td>{vm}</td><td>{img} ({src}), taken {it}</td><td>{dump}, taken {dt}</td><td>{age}</td></tr>",
                vm = esc(&v.name),
                img = esc(&i.image.name),
                src = esc(&i.image.source),
                it = time_html(&i.image.time, false),
                dump = esc(&i.dump.name),
                dt = time_html(&i.dump.time, false),
                age = age(Some(newest)),
            );
            continue;
        }
        // Without a dump: the image, as the report names it (if there is one yet).
        let from_report = report
            .and_then(|r| r.as_ref().ok())
            .and_then(|r| r["restore_points"].as_array().cloned())
            .into_iter()
            .flatten()
            .find(|p| p["vm"] == v.name.as_str());
        let (img, taken) = match &from_report {
            Some(p) => (
                p["image"]["source"].as_str().unwrap_or("?").to_string(),
                p["image"]["taken_at"].as_str().map(str::to_string),
            ),
            None => (
                a.rec
                    .restores
                    .iter()
                    .find(|r| r.vm == v.name)
                    .map(|r| format!("{} checkpoint {}", r.backup, r.checkpoint))
                    .unwrap_or_else(|| "its production image".into()),
                None,
            ),
        };
        let _ = write!(
            rows,
            "<tr><td>{vm}</td><td>{img}{taken}</td><td>no dump</td><td>{age}</td></tr>",
            vm = esc(&v.name),
            img = esc(&img),
            taken = taken
                .as_deref()
                .map(|t| format!(", taken {}", time_html(t, false)))
                .unwrap_or_default(),
            age = age(taken.as_deref()),
        );
    }
    format!(
        "<h2>Restore point</h2>{intro}<table id=points><tr><th>machine</th><th>disk image</th>\
         <th>database dump</th><th>data age</th></tr>{rows}</table>"
    )
}

/// A check's result in words a customer reads.
fn check_words(c: &serde_json::Value) -> String {
    let got = c["got"].as_str().unwrap_or("");
    let status = c["status"].as_str().unwrap_or("");
    if status == "error" {
        return format!("could not be checked: {}", esc(got));
    }
    match c["kind"].as_str().unwrap_or("") {
        "sequence" => {
            // "N numbers, N distinct, from L to H"
            let high = got
                .rsplit(" to ")
                .next()
                .filter(|h| h.parse::<i64>().is_ok());
            match (status, high) {
                ("pass", Some(h)) => format!("complete up to no. {}", esc(h)),
                (_, Some(h)) => format!("numbers missing or doubled, up to no. {}", esc(h)),
                _ => esc(got),
            }
        }
        "freshness" => {
            // "newest record at TS, AGE before the restore point"
            let ts = got
                .strip_prefix("newest record at ")
                .and_then(|r| r.split(',').next());
            match ts {
                Some(ts) if status == "pass" => format!("newest {}", time_html(ts, true)),
                Some(ts) => format!("too old: newest {}", time_html(ts, false)),
                None => esc(got),
            }
        }
        "expect_from_manifest" if status == "pass" => {
            format!("{} as the backup says", esc(got))
        }
        "isolation" if status == "pass" => "the lab is cut off from everything else".into(),
        _ if status == "pass" => "as expected".into(),
        _ => format!("not as expected: {}", esc(got)),
    }
}

/// The lab's name, run and time left, and the thanks after a sign-off.
fn lab_heading(a: &Access, just_signed: bool, now: Timestamp) -> String {
    let left = console::expires(&a.rec)
        .map(|e| (e.as_second() - now.as_second()).max(0) / 60)
        .unwrap_or(0);
    format!(
        "<h1>Restore lab {lab}</h1><p class=sub>run {run} &middot; available until {exp} \
         ({left} minutes left)</p>{thanks}",
        lab = esc(&a.rec.lab),
        run = a.run8,
        exp = time_html(&a.rec.expires, false),
        thanks = if just_signed {
            "<p class=ok id=signed>Thank you: your sign-off was recorded.</p>"
        } else {
            ""
        },
    )
}

/// The VMs with their state, addresses and console links.
fn machines(a: &Access, vms: &[VmView]) -> String {
    let rows: String = vms
        .iter()
        .map(|v| {
            format!(
                "<tr><td>{name}</td><td>{state}</td><td>{addr}</td><td>\
                 <a class=console href=\"/lab/{run}/console/{uname}?token={t}\">open console</a></td></tr>",
                name = esc(&v.name),
                state = esc(&v.state),
                addr = esc(&v.addresses.join(", ")),
                run = a.run8,
                uname = urlenc(&v.name),
                t = urlenc(&a.token),
            )
        })
        .collect();
    format!(
        "<h2>Machines</h2><table id=vms><tr><th>machine</th><th>state</th><th>addresses</th>\
         <th>console</th></tr>{rows}</table>"
    )
}

/// The latest check results, from the run's report if there is one.
fn checks(a: &Access, report: Option<&Result<serde_json::Value>>) -> String {
    let section = match report {
        None => "<p id=checks>No check results yet for this lab.</p>".to_string(),
        Some(Err(e)) => format!(
            "<p id=checks>The report could not be read: {}</p>",
            esc(&format!("{e:#}"))
        ),
        Some(Ok(r)) => {
            let rows: String = r["checks"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| {
                    format!(
                        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                        esc(c["name"].as_str().unwrap_or("?")),
                        esc(c["vm"].as_str().unwrap_or("")),
                        esc(c["status"].as_str().unwrap_or("?")),
                        check_words(c),
                    )
                })
                .collect();
            format!(
                "<p id=checks>Result: <b>{}</b> &middot; <a href=\"/lab/{run}/report?token={t}\">full report</a></p>\
                 <table id=results><tr><th>check</th><th>machine</th><th>result</th><th>what it found</th></tr>{rows}</table>",
                esc(r["result"].as_str().unwrap_or("unknown")),
                run = a.run8,
                t = urlenc(&a.token),
            )
        }
    };
    format!("<h2>Checks</h2>{section}")
}

/// The sign-offs recorded so far.
fn signoff_list(signoffs: &[SignOff]) -> String {
    if signoffs.is_empty() {
        return "<h2>Sign-off</h2><p>Nobody has signed off yet.</p>".to_string();
    }
    let items: String = signoffs
        .iter()
        .map(|s| {
            format!(
                "<li><b>{}</b>{} at {}: {}</li>",
                esc(&s.name),
                s.vm.as_deref()
                    .map(|v| format!(" ({})", esc(v)))
                    .unwrap_or_default(),
                esc(&s.at.to_string()),
                esc(&s.comment)
            )
        })
        .collect();
    format!("<h2>Sign-off</h2><ul id=signoffs>{items}</ul>")
}

/// The sign-off form ("I saw my data").
fn signoff_form_html(a: &Access, vms: &[VmView]) -> String {
    format!(
        "<form id=signoff method=post action=\"/lab/{run}/signoff\">\
         <p>When you have looked at your restored data, confirm it here.</p>\
         <input type=hidden name=token value=\"{tok}\">\
         <label>Your name <input id=name name=name required maxlength={mn}></label>\
         <label>Machine <select id=vm name=vm><option value=\"\">the whole lab</option>{opts}</select></label>\
         <label>Comment <textarea id=comment name=comment maxlength={mc} rows=3></textarea></label>\
         <button type=submit id=sign>I saw my data</button></form>",
        run = a.run8,
        tok = esc(&a.token),
        mn = signoff::MAX_NAME,
        mc = signoff::MAX_COMMENT,
        opts = vms
            .iter()
            .map(|v| format!("<option value=\"{n}\">{n}</option>", n = esc(&v.name)))
            .collect::<String>(),
    )
}

pub(super) async fn console_page(
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
    let bar = format!(
        "<header class=bar><a href=\"/lab/{run}?token={t}\">&larr; lab {lab}</a> \
         <b>{vm}</b> <span id=status>connecting&hellip;</span> \
         <button id=cad type=button>Send Ctrl-Alt-Del</button></header>",
        run = a.run8,
        t = urlenc(&a.token),
        lab = esc(&a.rec.lab),
        vm = esc(vm),
    );
    let screen = if novnc {
        format!(
            "<div id=screen data-ws=\"/lab/{run}/ws/{uvm}\"></div>\
             <script type=module src=\"/static/console.js\"></script>",
            run = a.run8,
            uvm = urlenc(vm),
        )
    } else {
        "<p id=screen>The browser console is not installed on this server (the operator \
         installs noVNC, or gives <code>reclab serve --novnc DIR</code>).</p>"
            .to_string()
    };
    page(
        &format!("{vm}: console of lab {}", a.rec.lab),
        &(bar + &screen),
    )
}

pub(super) async fn report_page(
    State(app): State<Arc<App>>,
    UrlPath(run): UrlPath<String>,
    Query(q): Query<TokenQuery>,
) -> Response {
    let access = match authorize(&app.state_dir, &run, q.token.as_deref(), Timestamp::now()) {
        Ok(a) => a,
        Err(d) => return d.into_response(),
    };
    match tokio::fs::read(run_report_dir(&access.dir.path).join(REPORT_HTML)).await {
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
pub(super) struct SignOffForm {
    token: String,
    name: String,
    #[serde(default)]
    comment: String,
    #[serde(default)]
    vm: String,
}

pub(super) async fn signoff_form(
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

/// A whole page around `body` (in `<main>`, unless it starts with its own `<header>`).
pub(super) fn page(title: &str, body: &str) -> String {
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

pub(super) fn urlenc(s: &str) -> String {
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

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;
    use crate::access::serve::router;
    use crate::access::serve::tests::{fixture, get, in_an_hour};

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
        assert!(
            body.contains("The browser console is not installed"),
            "{body}"
        );
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

    #[test]
    fn urls_are_percent_encoded() {
        assert_eq!(urlenc("a b&c"), "a%20b%26c");
        assert_eq!(urlenc("x-y_z.~"), "x-y_z.~");
    }
}
