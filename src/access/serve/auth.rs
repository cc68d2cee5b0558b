//! Who may see a run: the run's access token, checked on every request, and the lab's expiry.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use jiff::Timestamp;
use std::path::Path;

use super::pages::page;
use super::secure;
use crate::access::console;
use crate::base::text::html_escape as esc;
use crate::lab::journal::RunDir;
use crate::lab::record::RunRecord;

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
                    super::pages::time_html(&at.to_string(), false)
                ),
            ),
        };
        (StatusCode::FORBIDDEN, secure(Html(body).into_response())).into_response()
    }
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::*;
    use crate::access::serve::tests::{fixture, get, in_an_hour};

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

    #[test]
    fn run_ids_in_urls_are_eight_hex_digits() {
        assert!(valid_run8("0123abcd"));
        assert!(!valid_run8("0123ABCD"));
        assert!(!valid_run8("../../x1"));
        assert!(!valid_run8("0123abc"));
    }
}
