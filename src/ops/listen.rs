//! `reclab listen`: start drills when MQTT messages ask for them.
//!
//! The listener subscribes to a topic `T` (QoS 1). Each message is JSON:
//! `{"lab": "erp"}` or `{"lab": "site-b/erp.toml", "at": "2h ago"}`, or a bisect (`reclab
//! bisect`, the newest good restore point) `{"lab": "erp", "bisect": {"from": "48h ago"}}`
//! (also `to`, `all`), whose reply carries the bisect's JSON result as `bisect`. `lab` is a lab name
//! (read as `LABS_DIR/NAME.toml`) or a lab file path relative to (and inside) the labs
//! directory; `at` is passed to `reclab run --at`. Replies go to `T/result` as JSON with a
//! `status`:
//!
//! - `queued`: accepted, with its `position` in the queue;
//! - `rejected`: not run, with a `reason` (bad message, unknown or invalid lab file, queue full);
//! - `verified` / `failed` / `error`: the drill ran; `exit_code`, the drill's `summary` (the
//!   history line it appended, when there is one) and the end of its output.
//!
//! At most `queue` drills wait (default 16; more are rejected with a logged reason), at most
//! `parallel` run at once, and never two of the same lab: a request for a lab that is running
//! waits behind it. Each drill is a child process, `RECLAB --state-dir S run LAB [--at AT]`
//! where `RECLAB` is [`ListenOpts::reclab`] (the `reclab listen` command passes its own
//! binary), so a crashing drill cannot take the listener down.

use std::collections::{BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::base::text::last_bytes;
use crate::spec::MqttSpec;

/// Default bound of the queue.
pub const DEFAULT_QUEUE: usize = 16;

/// How the listener runs.
#[derive(Debug, Clone)]
pub struct ListenOpts {
    /// The broker (the `topic` field is the request topic `T`).
    pub mqtt: MqttSpec,
    /// Where lab names and relative lab paths are looked up.
    pub labs_dir: PathBuf,
    /// Passed to every drill as `--state-dir`; their history is read from there.
    pub state_dir: PathBuf,
    pub queue: usize,
    pub parallel: usize,
    /// The program each drill runs as `reclab run`: the reclab binary.
    pub reclab: PathBuf,
}

/// A request as sent on `T`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub lab: String,
    #[serde(default)]
    pub at: Option<String>,
    #[serde(default)]
    pub bisect: Option<BisectRequest>,
}

/// The window of a requested bisect (`reclab bisect --from --to [--all]`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BisectRequest {
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub to: Option<String>,
    #[serde(default)]
    pub all: bool,
}

#[derive(Debug, Clone)]
struct Job {
    lab: String,
    lab_file: PathBuf,
    at: Option<String>,
    bisect: Option<BisectRequest>,
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<Job>,
    running: BTreeSet<String>,
}

/// A reply on `T/result`.
#[derive(Debug, Clone, Serialize)]
pub struct Reply {
    pub status: String,
    pub lab: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lab_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_tail: Option<String>,
    /// A bisect's result (`reclab.bisect/1`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bisect: Option<serde_json::Value>,
}

impl Reply {
    fn new(status: &str, lab: &str) -> Self {
        Reply {
            status: status.into(),
            lab: lab.into(),
            lab_file: None,
            at: None,
            position: None,
            reason: None,
            exit_code: None,
            summary: None,
            output_tail: None,
            bisect: None,
        }
    }
}

/// Resolves a request's `lab` to (lab name, lab file) inside `labs_dir`, validating the file.
pub fn resolve_lab(labs_dir: &Path, lab: &str) -> Result<(String, PathBuf)> {
    let root = labs_dir
        .canonicalize()
        .with_context(|| format!("opening the labs directory {}", labs_dir.display()))?;
    let candidate = if lab.ends_with(".toml") || lab.contains('/') {
        root.join(lab)
    } else {
        root.join(format!("{lab}.toml"))
    };
    let file = candidate
        .canonicalize()
        .with_context(|| format!("no lab file {} for {lab:?}", candidate.display()))?;
    if !file.starts_with(&root) {
        bail!(
            "lab file {} is outside the labs directory {}; only labs there can be run",
            file.display(),
            root.display()
        );
    }
    let spec = crate::spec::load(&file)?;
    Ok((spec.name, file))
}

/// The drill command: `reclab --state-dir S run LAB [--at AT]`.
fn drill_command(reclab: &Path, state_dir: &Path, job: &Job) -> std::process::Command {
    let mut cmd = std::process::Command::new(reclab);
    cmd.arg("--state-dir").arg(state_dir);
    if let Some(b) = &job.bisect {
        cmd.arg("bisect").arg(&job.lab_file).arg("--json");
        for (flag, value) in [("--from", &b.from), ("--to", &b.to)] {
            if let Some(v) = value {
                cmd.arg(flag).arg(v);
            }
        }
        if b.all {
            cmd.arg("--all");
        }
        return cmd;
    }
    cmd.arg("run").arg(&job.lab_file);
    if let Some(at) = &job.at {
        cmd.arg("--at").arg(at);
    }
    cmd
}

/// Runs one drill to its end and builds the reply.
fn run_drill(reclab: &Path, state_dir: &Path, job: &Job) -> Reply {
    let mut reply = Reply::new("error", &job.lab);
    reply.lab_file = Some(job.lab_file.display().to_string());
    reply.at = job.at.clone();
    let started = jiff::Timestamp::now();
    let output = drill_command(reclab, state_dir, job)
        .stdin(std::process::Stdio::null())
        .output()
        .context("starting the drill");
    match output {
        Err(e) => reply.reason = Some(format!("{e:#}")),
        Ok(out) => {
            let code = out.status.code();
            reply.exit_code = code;
            reply.status = match code {
                Some(0) => "verified",
                Some(1) => "failed",
                _ => "error",
            }
            .into();
            if code.is_none() {
                reply.reason = Some(format!("the drill process ended by {}", out.status));
            }
            if job.bisect.is_some() {
                reply.bisect = serde_json::from_slice(&out.stdout).ok();
            }
            let mut both = out.stdout.clone();
            both.extend_from_slice(&out.stderr);
            reply.output_tail = Some(last_bytes(&String::from_utf8_lossy(&both), 2000).to_string());
            // The drill appends its summary to the lab's history; take it if it is this one.
            if let Ok(history) =
                crate::report::history(&crate::report::history_path(state_dir, &job.lab))
                && let Some(last) = history.last()
                && last.started_at >= started
            {
                reply.summary = serde_json::to_value(last).ok();
            }
        }
    }
    reply
}

/// Runs the listener until the process is stopped.
pub fn run(opts: &ListenOpts) -> Result<()> {
    use rumqttc::{Event, Packet, QoS};
    if opts.queue == 0 || opts.parallel == 0 {
        bail!("--queue and --parallel must be at least 1");
    }
    let topic = opts.mqtt.topic.clone();
    let result_topic = format!("{topic}/result");
    let id = format!(
        "reclab-listen-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let (client, mut connection) =
        rumqttc::Client::new(crate::ops::notify::mqtt_options(&opts.mqtt, &id)?, 64);
    let queue = Arc::new((Mutex::new(Queue::default()), Condvar::new()));

    let publish = {
        let client = client.clone();
        let result_topic = result_topic.clone();
        move |reply: &Reply| {
            tracing::info!(lab = %reply.lab, status = %reply.status, reason = ?reply.reason, "reply");
            eprintln!(
                "reclab listen: {} {}{}",
                reply.lab,
                reply.status,
                reply
                    .reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            );
            match serde_json::to_vec(reply) {
                Ok(body) => {
                    if let Err(e) = client.publish(&result_topic, QoS::AtLeastOnce, false, body) {
                        tracing::warn!(cause = %e, "cannot queue a reply");
                    }
                }
                Err(e) => tracing::warn!(cause = %e, "cannot serialize a reply"),
            }
        }
    };

    for n in 0..opts.parallel {
        let queue = Arc::clone(&queue);
        let publish = publish.clone();
        let state_dir = opts.state_dir.clone();
        let reclab = opts.reclab.clone();
        std::thread::Builder::new()
            .name(format!("drill-{n}"))
            .spawn(move || {
                loop {
                    let job = {
                        let (lock, cvar) = &*queue;
                        let mut q = lock.lock().expect("queue lock");
                        loop {
                            let free = q.waiting.iter().position(|j| !q.running.contains(&j.lab));
                            if let Some(i) = free {
                                let job = q.waiting.remove(i).expect("index in range");
                                q.running.insert(job.lab.clone());
                                break job;
                            }
                            q = cvar.wait(q).expect("queue lock");
                        }
                    };
                    let reply = run_drill(&reclab, &state_dir, &job);
                    {
                        let (lock, cvar) = &*queue;
                        lock.lock().expect("queue lock").running.remove(&job.lab);
                        cvar.notify_all();
                    }
                    publish(&reply);
                }
            })
            .context("starting a drill thread")?;
    }

    eprintln!(
        "reclab listen: waiting for requests on {} topic {topic} (replies on {result_topic})",
        opts.mqtt.url
    );
    let mut failures = 0u32;
    loop {
        match connection.recv_timeout(Duration::from_secs(1)) {
            Err(_) => continue,
            Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => {
                failures = 0;
                client
                    .subscribe(&topic, QoS::AtLeastOnce)
                    .context("subscribing")?;
                tracing::info!(%topic, "connected and subscribed");
            }
            Ok(Ok(Event::Incoming(Packet::Publish(p)))) if p.topic == topic => {
                let reply = accept(opts, &queue, &p.payload);
                publish(&reply);
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                failures += 1;
                eprintln!(
                    "reclab listen: connection to {} failed: {e}; retrying",
                    opts.mqtt.url
                );
                // Back off up to 30 s; the next poll reconnects.
                std::thread::sleep(Duration::from_secs(u64::from(failures.min(30))));
            }
        }
    }
}

/// Checks a request and queues it; the reply says `queued` or `rejected`.
fn accept(opts: &ListenOpts, queue: &Arc<(Mutex<Queue>, Condvar)>, payload: &[u8]) -> Reply {
    let request: Request = match serde_json::from_slice(payload) {
        Ok(r) => r,
        Err(e) => {
            let mut r = Reply::new("rejected", "");
            r.reason = Some(format!(
                "the message is not a request like {{\"lab\": \"erp\", \"at\": \"2h ago\"}}: {e}"
            ));
            return r;
        }
    };
    let mut reply = Reply::new("rejected", &request.lab);
    reply.at = request.at.clone();
    let (lab, lab_file) = match resolve_lab(&opts.labs_dir, &request.lab) {
        Ok(x) => x,
        Err(e) => {
            reply.reason = Some(format!("{e:#}"));
            return reply;
        }
    };
    reply.lab = lab.clone();
    reply.lab_file = Some(lab_file.display().to_string());
    let (lock, cvar) = &**queue;
    let mut q = lock.lock().expect("queue lock");
    if q.waiting.len() >= opts.queue {
        reply.reason = Some(format!(
            "the queue is full ({} drills waiting); try again later",
            q.waiting.len()
        ));
        return reply;
    }
    q.waiting.push_back(Job {
        lab,
        lab_file,
        at: request.at,
        bisect: request.bisect,
    });
    reply.status = "queued".into();
    reply.position = Some(q.waiting.len());
    cvar.notify_all();
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bisect_request_runs_reclab_bisect_with_its_window() {
        let r: Request =
            serde_json::from_str(r#"{"lab": "erp", "bisect": {"from": "48h ago"}}"#).unwrap();
        let job = Job {
            lab: r.lab,
            lab_file: "/labs/erp.toml".into(),
            at: r.at,
            bisect: r.bisect,
        };
        let cmd = drill_command(Path::new("/usr/bin/reclab"), Path::new("/state"), &job);
        let args: Vec<_> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "--state-dir",
                "/state",
                "bisect",
                "/labs/erp.toml",
                "--json",
                "--from",
                "48h ago"
            ]
        );
        // A plain request is still a drill; an unknown bisect field is refused.
        let plain: Request = serde_json::from_str(r#"{"lab": "erp"}"#).unwrap();
        assert!(plain.bisect.is_none());
        assert!(
            serde_json::from_str::<Request>(r#"{"lab": "erp", "bisect": {"since": "2h"}}"#)
                .is_err()
        );
    }
}
