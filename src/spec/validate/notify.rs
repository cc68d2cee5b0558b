//! `[notify]` and `[metrics]`.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;

use crate::spec::model::{EmailSpec, MetricsSpec, MqttSpec, NotifySpec, WebhookSpec};
use crate::spec::problems::Problems;
use crate::spec::wire::{Text, WireEmail, WireMetrics, WireMqtt, WireNotify, WireWebhook};

use super::fields::required;

/// What is wrong with a server URL such as `smtp://mail.example.com:587`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("{text:?} is not a URL; write it like {wanted}HOST:PORT")]
    NotAUrl { text: String, wanted: String },
    #[error("unsupported scheme {scheme:?}; use {wanted}")]
    Scheme { scheme: String, wanted: String },
    #[error(
        "{text:?} has a path, query or user part; give only {wanted}HOST[:PORT] (credentials go in user and password_file)"
    )]
    MoreThanAServer { text: String, wanted: String },
    #[error("{text:?} has an unclosed '['")]
    UnclosedBracket { text: String },
    #[error("{text:?} has no host; write it like {wanted}HOST:PORT")]
    NoHost { text: String, wanted: String },
    #[error("port {port:?} is not a port number (1 to 65535)")]
    Port { port: String },
}

/// A server URL split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ServerUrl {
    scheme: String,
    host: String,
    port: u16,
}

/// Splits `scheme://host[:port][/]` into its parts; the scheme must be one of `schemes`
/// (name, default port).
fn server_url(text: &str, schemes: &[(&str, u16)]) -> Result<ServerUrl, UrlError> {
    let wanted = schemes
        .iter()
        .map(|(s, _)| format!("{s}://"))
        .collect::<Vec<_>>()
        .join(" or ");
    let Some((scheme, rest)) = text.split_once("://") else {
        return Err(UrlError::NotAUrl {
            text: text.into(),
            wanted,
        });
    };
    let Some(default_port) = schemes.iter().find(|(s, _)| *s == scheme).map(|(_, p)| *p) else {
        return Err(UrlError::Scheme {
            scheme: scheme.into(),
            wanted,
        });
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains('/') || rest.contains('@') || rest.contains('?') {
        return Err(UrlError::MoreThanAServer {
            text: text.into(),
            wanted,
        });
    }
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let Some((host, after)) = v6.split_once(']') else {
            return Err(UrlError::UnclosedBracket { text: text.into() });
        };
        (host.to_string(), after.strip_prefix(':'))
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (rest.to_string(), None),
        }
    };
    if host.is_empty() || host.chars().any(char::is_whitespace) {
        return Err(UrlError::NoHost {
            text: text.into(),
            wanted,
        });
    }
    let port = match port {
        None => default_port,
        Some(p) => match p.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => return Err(UrlError::Port { port: p.into() }),
        },
    };
    Ok(ServerUrl {
        scheme: scheme.to_string(),
        host,
        port,
    })
}

/// Splits an MQTT broker URL (`mqtt://host[:port]` or `mqtts://host[:port]`) into
/// (TLS, host, port).
pub fn mqtt_url(url: &str) -> Result<(bool, String, u16), UrlError> {
    let url = server_url(url, &[("mqtt", 1883), ("mqtts", 8883)])?;
    Ok((url.scheme == "mqtts", url.host, url.port))
}

/// Why an MQTT topic cannot be published to, if it cannot.
pub fn topic_problem(topic: &str) -> Option<String> {
    if topic.is_empty() {
        Some("the topic is empty".into())
    } else if topic.contains(['+', '#']) {
        Some(format!(
            "{topic:?} contains a wildcard (+ or #); publish to a plain topic like \"dr/erp\""
        ))
    } else if topic.contains('\0') || topic.len() > 65535 {
        Some(format!("{topic:?} is not a valid MQTT topic"))
    } else {
        None
    }
}

pub(super) fn validate_notify(
    wire: &Spanned<WireNotify>,
    base: &Path,
    problems: &mut Problems,
) -> Option<NotifySpec> {
    let before = problems.len();
    let notify = wire.get_ref();
    let spec = NotifySpec {
        email: notify
            .email
            .as_ref()
            .and_then(|email| validate_email(email, base, problems)),
        webhook: notify
            .webhook
            .as_ref()
            .and_then(|hook| validate_webhook(hook, problems)),
        mqtt: notify
            .mqtt
            .as_ref()
            .and_then(|mqtt| validate_mqtt(mqtt, base, problems)),
    };
    (problems.len() == before).then_some(spec)
}

pub(super) fn validate_metrics(
    wire: &Spanned<WireMetrics>,
    base: &Path,
    problems: &mut Problems,
) -> Option<MetricsSpec> {
    let m = wire.get_ref();
    let textfile = required(
        problems,
        &m.textfile,
        wire.span(),
        "metrics.textfile",
        "textfile; add textfile = \"/var/lib/node_exporter/textfile/reclab.prom\"",
    )?;
    if !textfile.ends_with(".prom") {
        let v = m.textfile.as_ref().expect("textfile given");
        problems.at(v.span(), "metrics.textfile", format!("{textfile:?} does not end in .prom; node_exporter's textfile collector only reads *.prom files"));
        return None;
    }
    Some(MetricsSpec {
        textfile: base.join(textfile),
    })
}

fn validate_email(
    wire: &Spanned<WireEmail>,
    base: &Path,
    problems: &mut Problems,
) -> Option<EmailSpec> {
    let at = wire.span();
    let e = wire.get_ref();
    let f = "notify.email";
    let to = recipients(problems, &e.to, at.clone(), &format!("{f}.to"));
    let from = sender(problems, &e.from, at.clone(), &format!("{f}.from"));
    let server = required(
        problems,
        &e.server,
        at.clone(),
        &format!("{f}.server"),
        "server; add server = \"smtp://mail.example.com:587\"",
    );
    let parsed = server.as_ref().and_then(|server| {
        url_in(
            problems,
            server,
            &e.server,
            &format!("{f}.server"),
            &[("smtp", 587), ("smtps", 465)],
        )
    });
    let creds = credentials(base, &e.user, &e.password_file, at, f, problems);
    let ca_file = path_field(base, &e.ca_file, problems, &format!("{f}.ca_file"));
    let parsed = parsed?;
    let (user, password_file) = creds?;
    Some(EmailSpec {
        to: to?,
        from: from?,
        server: server?,
        host: parsed.host,
        port: parsed.port,
        implicit_tls: parsed.scheme == "smtps",
        starttls: e.starttls.unwrap_or(true),
        user,
        password_file,
        ca_file: ca_file?,
    })
}

/// `email.to`: at least one address. Bad addresses are problems, left out of the list.
fn recipients(
    problems: &mut Problems,
    value: &Option<Spanned<Vec<Text>>>,
    at: Range<usize>,
    field: &str,
) -> Option<Vec<String>> {
    let Some(list) = value else {
        problems.at(at, field, "missing to; add to = [\"ops@example.com\"]");
        return None;
    };
    if list.get_ref().is_empty() {
        problems.at(
            list.span(),
            field,
            "no recipients; give at least one address",
        );
        return None;
    }
    let mut to = Vec::new();
    for (i, a) in list.get_ref().iter().enumerate() {
        if plausible_address(a.get_ref()) {
            to.push(a.get_ref().clone());
        } else {
            problems.at(
                a.span(),
                format!("{field}[{i}]"),
                format!(
                    "{:?} is not an e-mail address; write it like \"ops@example.com\"",
                    a.get_ref()
                ),
            );
        }
    }
    Some(to)
}

/// `email.from`: one address. A bad address is a problem but stays in the spec.
fn sender(
    problems: &mut Problems,
    value: &Option<Text>,
    at: Range<usize>,
    field: &str,
) -> Option<String> {
    let from = required(
        problems,
        value,
        at,
        field,
        "from; add from = \"reclab@example.com\" (the sender address)",
    );
    if let (Some(from), Some(v)) = (&from, value)
        && !plausible_address(from)
    {
        problems.at(
            v.span(),
            field,
            format!("{from:?} is not an e-mail address; write it like \"reclab@example.com\""),
        );
    }
    from
}

fn validate_webhook(wire: &Spanned<WireWebhook>, problems: &mut Problems) -> Option<WebhookSpec> {
    let h = wire.get_ref();
    let f = "notify.webhook";
    let url = required(
        problems,
        &h.url,
        wire.span(),
        &format!("{f}.url"),
        "url; add url = \"https://hooks.example.com/reclab\"",
    );
    if let (Some(url), Some(v)) = (&url, &h.url)
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        problems.at(
            v.span(),
            format!("{f}.url"),
            format!("{url:?} is not an http:// or https:// URL"),
        );
    }
    let headers = headers(problems, &h.headers, &format!("{f}.headers"));
    Some(WebhookSpec { url: url?, headers })
}

/// `webhook.headers`: valid header names, one-line values. Bad ones are problems, left out.
fn headers(
    problems: &mut Problems,
    value: &Option<BTreeMap<Text, Text>>,
    field: &str,
) -> BTreeMap<String, String> {
    let mut headers = BTreeMap::new();
    for (k, v) in value.iter().flatten() {
        let name = k.get_ref();
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        {
            problems.at(
                k.span(),
                field,
                format!("{name:?} is not an HTTP header name"),
            );
        } else if v.get_ref().contains(['\r', '\n']) {
            problems.at(
                v.span(),
                format!("{field}.{name}"),
                "a header value cannot contain a line break",
            );
        } else {
            headers.insert(name.clone(), v.get_ref().clone());
        }
    }
    headers
}

fn validate_mqtt(
    wire: &Spanned<WireMqtt>,
    base: &Path,
    problems: &mut Problems,
) -> Option<MqttSpec> {
    let at = wire.span();
    let m = wire.get_ref();
    let f = "notify.mqtt";
    let url = required(
        problems,
        &m.url,
        at.clone(),
        &format!("{f}.url"),
        "url; add url = \"mqtts://broker.example.com:8883\"",
    );
    let parsed = url.as_ref().and_then(|url| {
        url_in(
            problems,
            url,
            &m.url,
            &format!("{f}.url"),
            &[("mqtt", 1883), ("mqtts", 8883)],
        )
    });
    let topic = topic(problems, &m.topic, at.clone(), &format!("{f}.topic"));
    let creds = credentials(base, &m.user, &m.password_file, at, f, problems);
    let ca_file = path_field(base, &m.ca_file, problems, &format!("{f}.ca_file"));
    if let (Some(parsed), Some(Some(_)), Some(v)) = (&parsed, &ca_file, &m.ca_file)
        && parsed.scheme == "mqtt"
    {
        problems.at(
            v.span(),
            format!("{f}.ca_file"),
            "ca_file needs TLS; use an mqtts:// url or drop ca_file",
        );
    }
    let parsed = parsed?;
    let (user, password_file) = creds?;
    Some(MqttSpec {
        url: url?,
        host: parsed.host,
        port: parsed.port,
        tls: parsed.scheme == "mqtts",
        topic: topic?,
        ca_file: ca_file?,
        user,
        password_file,
    })
}

/// `mqtt.topic`: present and publishable.
fn topic(
    problems: &mut Problems,
    value: &Option<Text>,
    at: Range<usize>,
    field: &str,
) -> Option<String> {
    let topic = required(problems, value, at, field, "topic; add topic = \"dr/LAB\"")?;
    match topic_problem(&topic) {
        None => Some(topic),
        Some(why) => {
            problems.at(value.as_ref().expect("topic given").span(), field, why);
            None
        }
    }
}

/// A server URL given as `value` (whose text is `url`), with one of `schemes`.
fn url_in(
    problems: &mut Problems,
    url: &str,
    value: &Option<Text>,
    field: &str,
    schemes: &[(&str, u16)],
) -> Option<ServerUrl> {
    match server_url(url, schemes) {
        Ok(parsed) => Some(parsed),
        Err(why) => {
            problems.at(
                value.as_ref().expect("url given").span(),
                field,
                why.to_string(),
            );
            None
        }
    }
}

fn path_field(
    base: &Path,
    value: &Option<Text>,
    problems: &mut Problems,
    field: &str,
) -> Option<Option<PathBuf>> {
    match value {
        None => Some(None),
        Some(v) if v.get_ref().trim().is_empty() => {
            problems.at(
                v.span(),
                field,
                "the path is empty; give a file or drop the key",
            );
            None
        }
        Some(v) => Some(Some(base.join(v.get_ref()))),
    }
}

/// `user` and `password_file` come together.
fn credentials(
    base: &Path,
    user: &Option<Text>,
    password_file: &Option<Text>,
    at: Range<usize>,
    field: &str,
    problems: &mut Problems,
) -> Option<(Option<String>, Option<PathBuf>)> {
    let file = path_field(
        base,
        password_file,
        problems,
        &format!("{field}.password_file"),
    )?;
    match (user, file) {
        (None, None) => Some((None, None)),
        (Some(u), _) if u.get_ref().trim().is_empty() => {
            problems.at(
                u.span(),
                format!("{field}.user"),
                "the user is empty; write it out or drop user and password_file",
            );
            None
        }
        (Some(u), Some(f)) => Some((Some(u.get_ref().clone()), Some(f))),
        (Some(u), None) => {
            problems.at(u.span(), format!("{field}.user"), "user without password_file; add password_file = \"/etc/reclab/NAME.pw\" (a file whose first line is the password) or drop user");
            None
        }
        (None, Some(_)) => {
            problems.at(
                at,
                format!("{field}.password_file"),
                "password_file without user; add user = \"NAME\" or drop password_file",
            );
            None
        }
    }
}

fn plausible_address(a: &str) -> bool {
    let a = a.trim();
    let bare = a
        .rsplit_once('<')
        .map_or(a, |(_, r)| r.trim_end_matches('>'));
    matches!(bare.split_once('@'), Some((l, d)) if !l.is_empty() && !d.is_empty() && !d.contains('@') && !bare.contains(char::is_whitespace))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_split_into_scheme_host_and_port() {
        let smtp = [("smtp", 587), ("smtps", 465)];
        let url = |scheme: &str, host: &str, port| ServerUrl {
            scheme: scheme.into(),
            host: host.into(),
            port,
        };
        assert_eq!(
            server_url("smtp://mail.example.com", &smtp).unwrap(),
            url("smtp", "mail.example.com", 587)
        );
        assert_eq!(
            server_url("smtps://127.0.0.1:2465/", &smtp).unwrap(),
            url("smtps", "127.0.0.1", 2465)
        );
        assert_eq!(
            server_url("smtp://[::1]:25", &smtp).unwrap(),
            url("smtp", "::1", 25)
        );
        for (bad, why) in [
            ("mail.example.com", "is not a URL"),
            ("http://mail.example.com", "unsupported scheme"),
            ("smtp://user:pw@mail.example.com", "user part"),
            ("smtp://mail.example.com:0", "not a port number"),
            ("smtp://:25", "has no host"),
        ] {
            let err = server_url(bad, &smtp).unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}
