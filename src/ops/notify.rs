//! Notifications after a drill: e-mail (SMTP, STARTTLS or implicit TLS), a webhook (JSON POST)
//! and MQTT (QoS 1 publish, optionally over TLS), as configured in the lab file's `[notify]`.
//!
//! **Invariant:** notifying never changes a drill's result. [`send_all`] does not return an
//! error: every channel's outcome, success or failure with its cause, is in the returned list,
//! for the caller to print and record next to the (unchanged) drill result. Each channel runs
//! on its own thread with a deadline, so a hanging server delays the drill's end by at most
//! [`TIMEOUT`] plus a little, and no async runtime of the caller is involved.
//!
//! The webhook and MQTT payload is the drill's [`Summary`] as JSON (its `schema` field says
//! `reclab.history/1`). The e-mail has the subject `reclab LAB: RESULT (…)` and a plain-text
//! body with the same figures.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::report::{DrillResult, Summary, human};
use crate::spec::{EmailSpec, MqttSpec, NotifySpec, WebhookSpec};

/// The longest any one channel may take (connect, TLS, send, acknowledgement).
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// What happened on one channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotifyOutcome {
    /// `email`, `webhook` or `mqtt`.
    pub channel: String,
    /// Where it went: the server and recipients, the URL, the broker and topic.
    pub target: String,
    pub ok: bool,
    /// Why it failed, with its causes; `None` when it worked.
    pub error: Option<String>,
    pub elapsed_ms: u64,
}

impl NotifyOutcome {
    /// One line for the terminal: `notify email smtp://…: sent` or `…: FAILED: cause`.
    pub fn line(&self) -> String {
        match &self.error {
            None => format!("notify {} {}: sent", self.channel, self.target),
            Some(e) => format!("notify {} {}: FAILED: {e}", self.channel, self.target),
        }
    }
}

/// Sends the summary on every configured channel, in parallel, and reports each outcome.
/// Never fails and never panics on a channel's behalf; see the module documentation.
pub fn send_all(spec: &NotifySpec, summary: &Summary) -> Vec<NotifyOutcome> {
    type Job = (String, String, Box<dyn FnOnce() -> Result<()> + Send>);
    let mut jobs: Vec<Job> = Vec::new();
    if let Some(e) = &spec.email {
        let (e2, s) = (e.clone(), summary.clone());
        jobs.push((
            "email".into(),
            format!("{} to {}", e.server, e.to.join(", ")),
            Box::new(move || send_email(&e2, &s)),
        ));
    }
    if let Some(w) = &spec.webhook {
        let (w2, s) = (w.clone(), summary.clone());
        jobs.push((
            "webhook".into(),
            w.url.clone(),
            Box::new(move || send_webhook(&w2, &s)),
        ));
    }
    if let Some(m) = &spec.mqtt {
        let (m2, s) = (m.clone(), summary.clone());
        jobs.push((
            "mqtt".into(),
            format!("{} topic {}", m.url, m.topic),
            Box::new(move || {
                let payload = serde_json::to_vec(&s).context("serializing the summary")?;
                publish_mqtt(&m2, &m2.topic, &payload, TIMEOUT)
            }),
        ));
    }
    let started = Instant::now();
    let handles: Vec<_> = jobs
        .into_iter()
        .map(|(channel, target, job)| {
            let (tx, rx) = std::sync::mpsc::channel();
            let spawned = std::thread::Builder::new()
                .name(format!("notify-{channel}"))
                .spawn(move || {
                    let t0 = Instant::now();
                    let result = job();
                    let _ = tx.send((result, t0.elapsed()));
                });
            (channel, target, rx, spawned)
        })
        .collect();
    let mut out = Vec::new();
    for (channel, target, rx, spawned) in handles {
        // Every channel has its own timeouts; this deadline only catches a library that
        // ignores them. A thread past it is left to finish on its own.
        let deadline = (TIMEOUT + Duration::from_secs(5)).saturating_sub(started.elapsed());
        let (error, elapsed) = match spawned {
            Err(e) => (Some(format!("cannot start a thread: {e}")), Duration::ZERO),
            Ok(_) => match rx.recv_timeout(deadline) {
                Ok((Ok(()), d)) => (None, d),
                Ok((Err(e), d)) => (Some(format!("{e:#}")), d),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => (
                    Some(format!("no answer within {}s", TIMEOUT.as_secs() + 5)),
                    started.elapsed(),
                ),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    (Some("the sender panicked".into()), started.elapsed())
                }
            },
        };
        let outcome = NotifyOutcome {
            channel,
            target,
            ok: error.is_none(),
            error,
            elapsed_ms: elapsed.as_millis() as u64,
        };
        match &outcome.error {
            None => {
                tracing::info!(channel = %outcome.channel, target = %outcome.target, "notified")
            }
            Some(e) => {
                tracing::warn!(channel = %outcome.channel, target = %outcome.target, cause = %e, "notification failed")
            }
        }
        out.push(outcome);
    }
    out
}

/// The e-mail subject for a drill.
pub fn subject(s: &Summary) -> String {
    let result = match s.result {
        DrillResult::Verified => "VERIFIED",
        DrillResult::Failed => "FAILED",
        DrillResult::Error => "ERROR",
    };
    format!(
        "reclab {}: {result} ({} checks, {} failed)",
        s.lab, s.checks, s.checks_failed
    )
}

/// The plain-text e-mail body for a drill.
pub fn body(s: &Summary) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<15} {v}\n"));
    line("lab", s.lab.clone());
    line("run", s.run.clone());
    line("result", s.result.as_str().to_string());
    line("started", s.started_at.to_string());
    line(
        "moment",
        s.at.map(|t| t.to_string())
            .unwrap_or_else(|| "latest restore point".into()),
    );
    line(
        "checks",
        format!("{} ({} failed)", s.checks, s.checks_failed),
    );
    line(
        "recovery time",
        s.recovery_time.map(human).unwrap_or_else(|| "-".into()),
    );
    line(
        "data age",
        s.data_age
            .map(|d| {
                let t = human(d.unsigned_abs());
                if d.is_negative() { format!("-{t}") } else { t }
            })
            .unwrap_or_else(|| "-".into()),
    );
    if let Some(dir) = &s.report_dir {
        line("report", dir.clone());
    }
    if let Some(answer) = &s.answer {
        line("answer", answer.clone());
    }
    out
}

pub(crate) fn read_password(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the password file {}", path.display()))?;
    Ok(text.lines().next().unwrap_or_default().to_string())
}

/// DER certificates from a PEM file.
fn pem_certificates(path: &Path) -> Result<Vec<rustls_pki_types::CertificateDer<'static>>> {
    use rustls_pki_types::pem::PemObject;
    let bytes =
        std::fs::read(path).with_context(|| format!("reading the CA file {}", path.display()))?;
    let certs = rustls_pki_types::CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing the CA file {} as PEM", path.display()))?;
    if certs.is_empty() {
        bail!("the CA file {} holds no PEM certificate", path.display());
    }
    Ok(certs)
}

fn send_email(spec: &EmailSpec, summary: &Summary) -> Result<()> {
    use lettre::message::{Mailbox, header::ContentType};
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
    use lettre::{SmtpTransport, Transport};

    let from: Mailbox = spec
        .from
        .parse()
        .with_context(|| format!("parsing the sender address {:?}", spec.from))?;
    let mut message = lettre::Message::builder()
        .from(from)
        .subject(subject(summary))
        .header(ContentType::TEXT_PLAIN);
    for to in &spec.to {
        message = message.to(to
            .parse()
            .with_context(|| format!("parsing the recipient address {to:?}"))?);
    }
    let message = message.body(body(summary)).context("building the e-mail")?;

    let tls = if spec.implicit_tls || spec.starttls {
        let mut params = TlsParameters::builder(spec.host.clone());
        if let Some(ca) = &spec.ca_file {
            for der in pem_certificates(ca)? {
                params = params.add_root_certificate(
                    Certificate::from_der(der.to_vec()).context("loading a CA certificate")?,
                );
            }
        }
        let params = params.build_rustls().context("setting up TLS")?;
        if spec.implicit_tls {
            Tls::Wrapper(params)
        } else {
            Tls::Required(params)
        }
    } else {
        Tls::None
    };
    let mut transport = SmtpTransport::builder_dangerous(spec.host.clone())
        .port(spec.port)
        .tls(tls)
        .timeout(Some(TIMEOUT));
    if let (Some(user), Some(file)) = (&spec.user, &spec.password_file) {
        transport = transport.credentials(Credentials::new(user.clone(), read_password(file)?));
    }
    transport
        .build()
        .send(&message)
        .with_context(|| format!("sending e-mail through {}", spec.server))?;
    Ok(())
}

fn send_webhook(spec: &WebhookSpec, summary: &Summary) -> Result<()> {
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .timeout_global(Some(TIMEOUT))
            .http_status_as_error(false)
            .build(),
    );
    let body = serde_json::to_vec(summary).context("serializing the summary")?;
    let mut request = agent.post(&spec.url);
    for (k, v) in &spec.headers {
        request = request.header(k, v);
    }
    let response = request
        .content_type("application/json")
        .send(&body[..])
        .with_context(|| format!("posting to {}", spec.url))?;
    let status = response.status();
    if !status.is_success() {
        bail!("{} answered HTTP {status}", spec.url);
    }
    Ok(())
}

/// A rustls client configuration with the ring provider: the CA file's certificates, or the
/// system's trusted roots.
pub fn rustls_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(ca) => {
            for der in pem_certificates(ca)? {
                roots
                    .add(der)
                    .with_context(|| format!("adding a certificate of {}", ca.display()))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for der in found.certs {
                let _ = roots.add(der);
            }
            if roots.is_empty() {
                bail!(
                    "no trusted CA certificates found on this system; install ca-certificates or give ca_file"
                );
            }
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("setting up TLS")?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

/// MQTT connection options for a broker; `client_id` must be unique per connection.
pub fn mqtt_options(spec: &MqttSpec, client_id: &str) -> Result<rumqttc::MqttOptions> {
    let mut options = rumqttc::MqttOptions::new(client_id, spec.host.clone(), spec.port);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_max_packet_size(1 << 20, 1 << 20);
    if spec.tls {
        let config = rustls_config(spec.ca_file.as_deref())?;
        options.set_transport(rumqttc::Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(config),
        ));
    }
    if let (Some(user), Some(file)) = (&spec.user, &spec.password_file) {
        options.set_credentials(user.clone(), read_password(file)?);
    }
    Ok(options)
}

/// Connects, publishes one QoS 1 message, waits for the broker's acknowledgement, disconnects.
pub fn publish_mqtt(spec: &MqttSpec, topic: &str, payload: &[u8], timeout: Duration) -> Result<()> {
    use rumqttc::{Event, Packet, QoS};
    let id = format!(
        "reclab-notify-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let (client, mut connection) = rumqttc::Client::new(mqtt_options(spec, &id)?, 10);
    client
        .publish(topic, QoS::AtLeastOnce, false, payload.to_vec())
        .context("queueing the MQTT message")?;
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!(
                "no acknowledgement from the broker {}:{} within {}s",
                spec.host,
                spec.port,
                timeout.as_secs()
            );
        }
        match connection.recv_timeout(left) {
            Ok(Ok(Event::Incoming(Packet::ConnAck(ack)))) => {
                if ack.code != rumqttc::ConnectReturnCode::Success {
                    bail!(
                        "the broker {}:{} refused the connection: {:?}",
                        spec.host,
                        spec.port,
                        ack.code
                    );
                }
            }
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => break,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                return Err(anyhow::Error::new(e)).with_context(|| {
                    format!("publishing to the broker {}:{}", spec.host, spec.port)
                });
            }
            Err(_) => continue,
        }
    }
    let _ = client.disconnect();
    // Let the event loop send the DISCONNECT; an error here means it is gone, which is fine.
    let _ = connection.recv_timeout(Duration::from_millis(500));
    Ok(())
}

/// What [`after_drill`] did besides the drill itself.
#[derive(Debug, Clone, Serialize)]
pub struct AfterDrill {
    pub notifications: Vec<NotifyOutcome>,
    /// The metrics textfile written, if any.
    pub metrics_file: Option<std::path::PathBuf>,
    /// Why the metrics textfile could not be written.
    pub metrics_error: Option<String>,
}

/// Everything that follows a drill: update the metrics textfile (`metrics_file` overrides the
/// lab file's `[metrics] textfile`) and send the `[notify]` notifications. Like [`send_all`] it
/// never fails: problems are in the result, for the caller to print; the drill's result and
/// exit code stay what they were.
pub fn after_drill(
    spec: &crate::spec::LabSpec,
    summary: &Summary,
    metrics_file: Option<&Path>,
) -> AfterDrill {
    let metrics_file = metrics_file
        .map(Path::to_path_buf)
        .or_else(|| spec.metrics.as_ref().map(|m| m.textfile.clone()));
    let metrics_error = metrics_file.as_deref().and_then(|path| {
        crate::ops::metrics::update(path, summary)
            .err()
            .map(|e| format!("{e:#}"))
    });
    let notifications = spec
        .notify
        .as_ref()
        .map(|n| send_all(n, summary))
        .unwrap_or_default();
    AfterDrill {
        notifications,
        metrics_file,
        metrics_error,
    }
}
