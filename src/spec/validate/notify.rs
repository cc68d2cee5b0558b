//! `[notify]` and `[metrics]`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use toml::Spanned;

use crate::spec::model::{EmailSpec, MetricsSpec, MqttSpec, NotifySpec, WebhookSpec};
use crate::spec::problems::Problems;
use crate::spec::wire::{Text, WireMetrics, WireNotify};

/// Splits `scheme://host[:port][/]` into its parts; the scheme must be one of `schemes`
/// (name, default port).
pub(super) fn server_url(
    text: &str,
    schemes: &[(&str, u16)],
) -> Result<(String, String, u16), String> {
    let wanted = schemes
        .iter()
        .map(|(s, _)| format!("{s}://"))
        .collect::<Vec<_>>()
        .join(" or ");
    let (scheme, rest) = text
        .split_once("://")
        .ok_or_else(|| format!("{text:?} is not a URL; write it like {wanted}HOST:PORT"))?;
    let default_port = schemes
        .iter()
        .find(|(s, _)| *s == scheme)
        .map(|(_, p)| *p)
        .ok_or_else(|| format!("unsupported scheme {scheme:?}; use {wanted}"))?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains('/') || rest.contains('@') || rest.contains('?') {
        return Err(format!(
            "{text:?} has a path, query or user part; give only {wanted}HOST[:PORT] (credentials go in user and password_file)"
        ));
    }
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("{text:?} has an unclosed '['"))?;
        (host.to_string(), after.strip_prefix(':'))
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (rest.to_string(), None),
        }
    };
    if host.is_empty() || host.chars().any(char::is_whitespace) {
        return Err(format!(
            "{text:?} has no host; write it like {wanted}HOST:PORT"
        ));
    }
    let port = match port {
        None => default_port,
        Some(p) => match p.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => return Err(format!("port {p:?} is not a port number (1 to 65535)")),
        },
    };
    Ok((scheme.to_string(), host, port))
}

pub(super) fn path_field(
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

pub(super) fn required(
    problems: &mut Problems,
    value: &Option<Text>,
    at: std::ops::Range<usize>,
    field: &str,
    what: &str,
) -> Option<String> {
    match value {
        None => {
            problems.at(at, field, format!("missing {what}"));
            None
        }
        Some(v) if v.get_ref().trim().is_empty() => {
            problems.at(v.span(), field, format!("{what} is empty; write it out"));
            None
        }
        Some(v) => Some(v.get_ref().clone()),
    }
}

/// `user` and `password_file` come together.
pub(super) fn credentials(
    base: &Path,
    user: &Option<Text>,
    password_file: &Option<Text>,
    at: std::ops::Range<usize>,
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

pub(super) fn plausible_address(a: &str) -> bool {
    let a = a.trim();
    let bare = a
        .rsplit_once('<')
        .map_or(a, |(_, r)| r.trim_end_matches('>'));
    matches!(bare.split_once('@'), Some((l, d)) if !l.is_empty() && !d.is_empty() && !d.contains('@') && !bare.contains(char::is_whitespace))
}

pub(super) fn validate_notify(
    wire: &Spanned<WireNotify>,
    base: &Path,
    problems: &mut Problems,
) -> Option<NotifySpec> {
    let before = problems.len();
    let n = wire.get_ref();
    let mut spec = NotifySpec::default();

    if let Some(email) = &n.email {
        let at = email.span();
        let e = email.get_ref();
        let f = "notify.email";
        let to = match &e.to {
            None => {
                problems.at(
                    at.clone(),
                    format!("{f}.to"),
                    "missing to; add to = [\"ops@example.com\"]",
                );
                None
            }
            Some(list) if list.get_ref().is_empty() => {
                problems.at(
                    list.span(),
                    format!("{f}.to"),
                    "no recipients; give at least one address",
                );
                None
            }
            Some(list) => {
                let mut ok = Vec::new();
                for (i, a) in list.get_ref().iter().enumerate() {
                    if plausible_address(a.get_ref()) {
                        ok.push(a.get_ref().clone());
                    } else {
                        problems.at(
                            a.span(),
                            format!("{f}.to[{i}]"),
                            format!(
                                "{:?} is not an e-mail address; write it like \"ops@example.com\"",
                                a.get_ref()
                            ),
                        );
                    }
                }
                Some(ok)
            }
        };
        let from = required(
            problems,
            &e.from,
            at.clone(),
            &format!("{f}.from"),
            "from; add from = \"reclab@example.com\" (the sender address)",
        );
        if let (Some(from), Some(v)) = (&from, &e.from)
            && !plausible_address(from)
        {
            problems.at(
                v.span(),
                format!("{f}.from"),
                format!("{from:?} is not an e-mail address; write it like \"reclab@example.com\""),
            );
        }
        let server = required(
            problems,
            &e.server,
            at.clone(),
            &format!("{f}.server"),
            "server; add server = \"smtp://mail.example.com:587\"",
        );
        let parsed =
            server
                .as_ref()
                .and_then(|s| match server_url(s, &[("smtp", 587), ("smtps", 465)]) {
                    Ok(p) => Some(p),
                    Err(why) => {
                        problems.at(
                            e.server.as_ref().expect("server given").span(),
                            format!("{f}.server"),
                            why,
                        );
                        None
                    }
                });
        let creds = credentials(base, &e.user, &e.password_file, at.clone(), f, problems);
        let ca_file = path_field(base, &e.ca_file, problems, &format!("{f}.ca_file"));
        if let (
            Some(to),
            Some(from),
            Some(server),
            Some((scheme, host, port)),
            Some((user, password_file)),
            Some(ca_file),
        ) = (to, from, server, parsed, creds, ca_file)
        {
            spec.email = Some(EmailSpec {
                to,
                from,
                server,
                host,
                port,
                implicit_tls: scheme == "smtps",
                starttls: e.starttls.unwrap_or(true),
                user,
                password_file,
                ca_file,
            });
        }
    }

    if let Some(hook) = &n.webhook {
        let h = hook.get_ref();
        let f = "notify.webhook";
        let url = required(
            problems,
            &h.url,
            hook.span(),
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
        let mut headers = BTreeMap::new();
        for (k, v) in h.headers.iter().flatten() {
            let name = k.get_ref();
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
            {
                problems.at(
                    k.span(),
                    format!("{f}.headers"),
                    format!("{name:?} is not an HTTP header name"),
                );
            } else if v.get_ref().contains(['\r', '\n']) {
                problems.at(
                    v.span(),
                    format!("{f}.headers.{name}"),
                    "a header value cannot contain a line break",
                );
            } else {
                headers.insert(name.clone(), v.get_ref().clone());
            }
        }
        if let Some(url) = url {
            spec.webhook = Some(WebhookSpec { url, headers });
        }
    }

    if let Some(mqtt) = &n.mqtt {
        let at = mqtt.span();
        let m = mqtt.get_ref();
        let f = "notify.mqtt";
        let url = required(
            problems,
            &m.url,
            at.clone(),
            &format!("{f}.url"),
            "url; add url = \"mqtts://broker.example.com:8883\"",
        );
        let parsed =
            url.as_ref().and_then(
                |u| match server_url(u, &[("mqtt", 1883), ("mqtts", 8883)]) {
                    Ok(p) => Some(p),
                    Err(why) => {
                        problems.at(
                            m.url.as_ref().expect("url given").span(),
                            format!("{f}.url"),
                            why,
                        );
                        None
                    }
                },
            );
        let topic = required(
            problems,
            &m.topic,
            at.clone(),
            &format!("{f}.topic"),
            "topic; add topic = \"dr/LAB\"",
        );
        let topic = topic.and_then(|t| match topic_problem(&t) {
            None => Some(t),
            Some(why) => {
                problems.at(
                    m.topic.as_ref().expect("topic given").span(),
                    format!("{f}.topic"),
                    why,
                );
                None
            }
        });
        let creds = credentials(base, &m.user, &m.password_file, at.clone(), f, problems);
        let ca_file = path_field(base, &m.ca_file, problems, &format!("{f}.ca_file"));
        if let (Some((scheme, _, _)), Some(Some(_)), Some(v)) = (&parsed, &ca_file, &m.ca_file)
            && scheme == "mqtt"
        {
            problems.at(
                v.span(),
                format!("{f}.ca_file"),
                "ca_file needs TLS; use an mqtts:// url or drop ca_file",
            );
        }
        if let (
            Some(url),
            Some((scheme, host, port)),
            Some(topic),
            Some((user, password_file)),
            Some(ca_file),
        ) = (url, parsed, topic, creds, ca_file)
        {
            spec.mqtt = Some(MqttSpec {
                url,
                host,
                port,
                tls: scheme == "mqtts",
                topic,
                ca_file,
                user,
                password_file,
            });
        }
    }
    (problems.len() == before).then_some(spec)
}

/// Splits an MQTT broker URL (`mqtt://host[:port]` or `mqtts://host[:port]`) into
/// (TLS, host, port).
pub fn mqtt_url(url: &str) -> Result<(bool, String, u16), String> {
    let (scheme, host, port) = server_url(url, &[("mqtt", 1883), ("mqtts", 8883)])?;
    Ok((scheme == "mqtts", host, port))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_split_into_scheme_host_and_port() {
        let smtp = [("smtp", 587), ("smtps", 465)];
        assert_eq!(
            server_url("smtp://mail.example.com", &smtp).unwrap(),
            ("smtp".into(), "mail.example.com".into(), 587)
        );
        assert_eq!(
            server_url("smtps://127.0.0.1:2465/", &smtp).unwrap(),
            ("smtps".into(), "127.0.0.1".into(), 2465)
        );
        assert_eq!(
            server_url("smtp://[::1]:25", &smtp).unwrap(),
            ("smtp".into(), "::1".into(), 25)
        );
        for (bad, why) in [
            ("mail.example.com", "is not a URL"),
            ("http://mail.example.com", "unsupported scheme"),
            ("smtp://user:pw@mail.example.com", "user part"),
            ("smtp://mail.example.com:0", "not a port number"),
            ("smtp://:25", "has no host"),
        ] {
            let err = server_url(bad, &smtp).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}
