//! `[notify]` and `[metrics]`: what happens after every drill of the lab.
//!
//! ```toml
//! [notify]
//! email = { to = ["ops@example.com"], from = "reclab@example.com", server = "smtp://mail.example.com:587", starttls = true, user = "reclab", password_file = "/etc/reclab/smtp.pw" }
//! webhook = { url = "https://hooks.example.com/reclab", headers = { Authorization = "Bearer 123" } }
//! mqtt = { url = "mqtts://broker.example.com:8883", topic = "dr/erp", ca_file = "/etc/reclab/ca.pem" }
//!
//! [metrics]
//! textfile = "/var/lib/node_exporter/textfile/reclab.prom"
//! ```
//!
//! ## `[notify]`
//!
//! Every channel is optional; each one is tried after every drill, and a channel that fails is
//! reported next to the drill's result without changing it.
//!
//! **`email`**: `to` (one or more addresses, required), `from` (required), `server` (required:
//! `smtp://host[:port]`, port 587 by default, or `smtps://host[:port]` for TLS from the first
//! byte, port 465 by default), `starttls` (default `true`: with `smtp://`, refuse to send unless
//! the server upgrades the connection with STARTTLS; `false` sends in the clear, only sensible on
//! loopback), `user` and `password_file` (both or neither: SMTP authentication, the password is
//! the file's first line), `ca_file` (PEM certificates to trust instead of the system's).
//!
//! **`webhook`**: `url` (`http://` or `https://`, required) receives the drill summary as a JSON
//! POST; `headers` is a table of extra request headers.
//!
//! **`mqtt`**: `url` (`mqtt://host[:port]`, port 1883 by default, or `mqtts://host[:port]` for
//! TLS, port 8883 by default; required), `topic` (required, no wildcards) receives the drill
//! summary as JSON, QoS 1; `ca_file` (PEM certificates to trust instead of the system's, TLS only);
//! `user` and `password_file` (both or neither).
//!
//! Relative paths are relative to the lab file's directory.
//!
//! ## `[metrics]`
//!
//! **`textfile`**: a Prometheus textfile that gets the lab's latest figures after every drill
//! (written atomically; the other labs' samples in the file are kept). The `--metrics-file`
//! option overrides it.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// `[notify]`: channels tried after every drill.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NotifySpec {
    pub email: Option<EmailSpec>,
    pub webhook: Option<WebhookSpec>,
    pub mqtt: Option<MqttSpec>,
}

/// `[notify] email`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailSpec {
    pub to: Vec<String>,
    pub from: String,
    /// The `server` URL as written.
    pub server: String,
    pub host: String,
    pub port: u16,
    /// `smtps://`: TLS from the first byte.
    pub implicit_tls: bool,
    /// With `smtp://`: require STARTTLS.
    pub starttls: bool,
    pub user: Option<String>,
    pub password_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
}

/// `[notify] webhook`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSpec {
    pub url: String,
    pub headers: BTreeMap<String, String>,
}

/// `[notify] mqtt`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttSpec {
    /// The `url` as written.
    pub url: String,
    pub host: String,
    pub port: u16,
    /// `mqtts://`.
    pub tls: bool,
    pub topic: String,
    pub ca_file: Option<PathBuf>,
    pub user: Option<String>,
    pub password_file: Option<PathBuf>,
}

/// `[metrics]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsSpec {
    pub textfile: PathBuf,
}
