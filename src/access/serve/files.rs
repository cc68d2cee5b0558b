//! Static files: noVNC's, from the directory it is installed in, and the console page's script
//! and the icon, built in.

use axum::extract::{Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::App;

/// Where noVNC is looked for when neither `--novnc` nor `RECLAB_NOVNC_DIR` names it: where
/// Debian's and Ubuntu's `novnc` package installs it.
pub const DEFAULT_NOVNC_DIR: &str = "/usr/share/novnc";

/// The console page's script: noVNC's RFB client on the page's websocket.
const CONSOLE_JS: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/console.js"));

/// The lab page's script: times in the reader's time zone.
const LAB_JS: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/lab.js"));

pub(super) async fn lab_js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        LAB_JS,
    )
        .into_response()
}

/// Whether `dir` holds noVNC.
pub fn novnc_present(dir: &Path) -> bool {
    dir.join("core/rfb.js").is_file()
}

pub(super) async fn console_js() -> Response {
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
pub(super) async fn favicon() -> Response {
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

pub(super) async fn novnc_file(
    State(app): State<Arc<App>>,
    UrlPath(path): UrlPath<String>,
) -> Response {
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

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;
    use crate::access::serve::tests::{fixture, get, in_an_hour};
    use crate::access::serve::{Opener, router};
    use crate::hv::Hypervisor;

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
}
