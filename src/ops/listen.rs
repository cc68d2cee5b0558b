//! `reclab listen`: start drills when MQTT messages ask for them, as one host of a fleet.
//!
//! The listener joins the MQTT 5 shared subscription `$share/GROUP/T` (QoS 1), so each
//! request on topic `T` goes to one listener of the group (docs/fleet.md). Each message is
//! JSON: `{"lab": "erp"}` or `{"lab": "site-b/erp.toml", "at": "2h ago"}`, or a bisect (`reclab
//! bisect`, the newest good restore point) `{"lab": "erp", "bisect": {"from": "48h ago"}}`
//! (also `to`, `all`), whose reply carries the bisect's JSON result as `bisect`. `lab` is a lab name
//! (read as `LABS_DIR/NAME.toml`) or a lab file path relative to (and inside) the labs
//! directory; `at` is passed to `reclab run --at`. Replies go to `T/result` as JSON with a
//! `status` and the `host` that answered:
//!
//! - `started`: the drill runs on `host`;
//! - `rejected`: not run, with a `reason` (bad message, unknown or invalid lab file, a lab
//!   that fits no host of the fleet);
//! - `verified` / `failed` / `error`: the drill ran; `exit_code`, the drill's `summary` (the
//!   history line it appended, when there is one), the end of its output, `started_at` and
//!   `finished_at`.
//!
//! **Work is taken only as it can be done.** The session asks the broker for at most
//! `parallel` unacknowledged requests (MQTT 5 receive maximum) and acknowledges a request
//! only after its result (or rejection) is published, so the broker keeps every request not
//! finished. The session is persistent (client id `reclab-listen-HOST`, session expiry
//! `session_expiry`): a listener that dies and starts again gets its unfinished requests
//! redelivered and runs them again, after `gc` removed what its dead drills left. Never two
//! drills of the same lab run at once on one host: a request for a lab that is running waits
//! behind it.
//!
//! **Sized to fit**: a drill is admitted when the lab's memory fits what this host has free
//! after its reserve ([`fleet::admit`]); otherwise it is published again for the other hosts,
//! held here until memory frees, or rejected when no host of the fleet could ever hold it.
//! Each listener keeps a retained status on `T/status/HOST` (last will: offline) and reads
//! the others'.
//!
//! Each drill is a child process, `RECLAB --state-dir S run LAB [--at AT]` where `RECLAB` is
//! [`ListenOpts::reclab`] (the `reclab listen` command passes its own binary, or
//! `--drill-program`), with `RECLAB_HOST` set to the host name; it gets SIGTERM (and unwinds)
//! if the listener dies.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{ConnAck, ConnectReturnCode, LastWill, Packet, Publish};
use rumqttc::v5::{Client, Event};
use serde::{Deserialize, Serialize};

use crate::base::text::last_bytes;
use crate::ops::fleet::{self, Admission, Status};
use crate::spec::MqttSpec;

/// Default shared-subscription group.
pub const DEFAULT_GROUP: &str = "reclab";
/// Default session expiry: how long the broker keeps a dead listener's unfinished requests.
pub const DEFAULT_SESSION_EXPIRY: u32 = 24 * 3600;
/// How often held requests are looked at again (memory may have freed).
const RECHECK: Duration = Duration::from_secs(5);

/// How the listener runs.
#[derive(Debug, Clone)]
pub struct ListenOpts {
    /// The broker (the `topic` field is the request topic `T`).
    pub mqtt: MqttSpec,
    /// Where lab names and relative lab paths are looked up.
    pub labs_dir: PathBuf,
    /// Passed to every drill as `--state-dir`; their history is read from there.
    pub state_dir: PathBuf,
    /// Drill slots: drills at once, and the receive maximum.
    pub parallel: usize,
    /// The program each drill runs as `reclab run`: the reclab binary.
    pub reclab: PathBuf,
    /// This host's name in the fleet (topics, client id, results).
    pub host: String,
    /// The shared-subscription group.
    pub group: String,
    /// Memory (bytes) this host keeps for itself.
    pub reserve: u64,
    /// Session expiry (seconds).
    pub session_expiry: u32,
}

/// A request as sent on `T`. `hops` and `passed_by` are added by listeners that passed the
/// request on (see [`fleet::admit`]).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub lab: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub hops: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub passed_by: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bisect: Option<BisectRequest>,
}

/// The window of a requested bisect (`reclab bisect --from --to [--all]`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BisectRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(default)]
    pub all: bool,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A request taken from the broker, not yet acknowledged.
#[derive(Debug, Clone)]
struct Job {
    lab: String,
    lab_file: PathBuf,
    request: Request,
    /// Memory the lab needs (bytes), when known.
    need: Option<u64>,
    /// The message, to acknowledge; replaced when the broker redelivers it.
    message: Publish,
    /// The connection it came on ([`State::generation`]).
    generation: u64,
}

#[derive(Default)]
struct State {
    waiting: VecDeque<Job>,
    /// Running drills by job number.
    running: BTreeMap<u64, Job>,
    next_job: u64,
    /// Other listeners' statuses (and this one's last retained one).
    fleet: BTreeMap<String, Status>,
    /// Incremented at every CONNACK: acknowledgements belong to a connection.
    generation: u64,
    /// Payloads of finished requests whose acknowledgement could not be sent on the
    /// connection they came on; a redelivery of one is acknowledged at once.
    done_unacked: Vec<Vec<u8>>,
}

/// A reply on `T/result`.
#[derive(Debug, Clone, Serialize)]
pub struct Reply {
    pub status: String,
    pub lab: String,
    /// The host that answered.
    pub host: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lab_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_tail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// A bisect's result (`reclab.bisect/1`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bisect: Option<serde_json::Value>,
}

impl Reply {
    fn new(status: &str, lab: &str, host: &str) -> Self {
        Reply {
            status: status.into(),
            lab: lab.into(),
            host: host.into(),
            lab_file: None,
            at: None,
            reason: None,
            exit_code: None,
            summary: None,
            output_tail: None,
            started_at: None,
            finished_at: None,
            bisect: None,
        }
    }
}

/// Resolves a request's `lab` to (lab name, lab file) inside `labs_dir`, validating the file.
pub fn resolve_lab(labs_dir: &Path, lab: &str) -> Result<(String, PathBuf)> {
    let (spec, file) = resolve_lab_spec(labs_dir, lab)?;
    Ok((spec.name, file))
}

/// [`resolve_lab`] with the validated lab file.
pub fn resolve_lab_spec(labs_dir: &Path, lab: &str) -> Result<(crate::spec::LabSpec, PathBuf)> {
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
    Ok((spec, file))
}

/// The memory a lab needs for admission: the sum of its VMs' `memory`, when every VM names
/// one; `None` (unknown: admitted) when a VM takes production's memory.
pub fn lab_memory(spec: &crate::spec::LabSpec) -> Option<u64> {
    spec.vms.iter().map(|vm| vm.memory).sum()
}

/// MQTT 5 connection options for a broker; `client_id` must be unique per connection.
pub fn mqtt5_options(spec: &MqttSpec, client_id: &str) -> Result<rumqttc::v5::MqttOptions> {
    let mut options = rumqttc::v5::MqttOptions::new(client_id, spec.host.clone(), spec.port);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_max_packet_size(Some(1 << 20));
    if spec.tls {
        let config = crate::ops::notify::rustls_config(spec.ca_file.as_deref())?;
        options.set_transport(rumqttc::Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(config),
        ));
    }
    if let (Some(user), Some(file)) = (&spec.user, &spec.password_file) {
        options.set_credentials(user.clone(), crate::ops::notify::read_password(file)?);
    }
    Ok(options)
}

/// Fails when the broker refused the connection, naming its reason.
pub fn check_connack(spec: &MqttSpec, ack: &ConnAck) -> Result<()> {
    if ack.code != ConnectReturnCode::Success {
        let hint = match ack.code {
            ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized => {
                "; check --user and --password-file"
            }
            _ => "",
        };
        bail!(
            "the broker {}:{} refused the connection: {:?}{hint}",
            spec.host,
            spec.port,
            ack.code
        );
    }
    Ok(())
}

/// The drill command: `reclab --state-dir S run LAB [--at AT]`, or for a bisect request
/// `reclab --state-dir S bisect LAB --json [--from F] [--to T] [--all]`.
fn drill_command(opts: &ListenOpts, job: &Job) -> std::process::Command {
    let mut cmd = std::process::Command::new(&opts.reclab);
    cmd.arg("--state-dir").arg(&opts.state_dir);
    cmd.args(drill_args(&job.request, &job.lab_file));
    cmd.env("RECLAB_HOST", &opts.host);
    terminate_with_parent(&mut cmd);
    cmd
}

/// The arguments after `--state-dir S`: `run LAB [--at AT]`, or for a bisect request
/// `bisect LAB --json [--from F] [--to T] [--all]`.
fn drill_args(request: &Request, lab_file: &Path) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = Vec::new();
    if let Some(b) = &request.bisect {
        args.extend(["bisect".into(), lab_file.into(), "--json".into()]);
        for (flag, value) in [("--from", &b.from), ("--to", &b.to)] {
            if let Some(v) = value {
                args.extend([flag.into(), v.into()]);
            }
        }
        if b.all {
            args.push("--all".into());
        }
    } else {
        args.extend(["run".into(), lab_file.into()]);
        if let Some(at) = &request.at {
            args.extend(["--at".into(), at.into()]);
        }
    }
    args
}

/// The child gets SIGTERM when the thread that started it (a drill thread, which lives as
/// long as the listener) ends, so a dead listener's drill unwinds its lab.
fn terminate_with_parent(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches only the child's own attributes.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Runs one drill to its end and builds the reply.
fn run_drill(opts: &ListenOpts, job: &Job) -> Reply {
    let mut reply = Reply::new("error", &job.lab, &opts.host);
    reply.lab_file = Some(job.lab_file.display().to_string());
    reply.at = job.request.at.clone();
    let started = jiff::Timestamp::now();
    reply.started_at = Some(started.to_string());
    let output = drill_command(opts, job)
        .stdin(std::process::Stdio::null())
        .output()
        .context("starting the drill");
    reply.finished_at = Some(jiff::Timestamp::now().to_string());
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
            if job.request.bisect.is_some() {
                reply.bisect = serde_json::from_slice(&out.stdout).ok();
            }
            let mut both = out.stdout.clone();
            both.extend_from_slice(&out.stderr);
            reply.output_tail = Some(last_bytes(&String::from_utf8_lossy(&both), 2000).to_string());
            // The drill appends its summary to the lab's history; take it if it is this one.
            if let Ok(history) =
                crate::report::history(&crate::report::history_path(&opts.state_dir, &job.lab))
                && let Some(last) = history.last()
                && last.started_at >= started
            {
                reply.summary = serde_json::to_value(last).ok();
            }
        }
    }
    reply
}

/// Removes what dead drills of this state directory left (`RECLAB --state-dir S gc`), before
/// the listener takes work: their requests come back and run again.
fn collect_orphans(opts: &ListenOpts) {
    let mut cmd = std::process::Command::new(&opts.reclab);
    cmd.arg("--state-dir")
        .arg(&opts.state_dir)
        .arg("gc")
        .env("RECLAB_HOST", &opts.host)
        .stdin(std::process::Stdio::null());
    match cmd.output() {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            if !text.trim().is_empty() {
                eprintln!("reclab listen: gc: {}", text.trim());
            }
        }
        Ok(out) => eprintln!(
            "reclab listen: warning: gc failed ({}): {}",
            out.status,
            last_bytes(&String::from_utf8_lossy(&out.stderr), 500)
        ),
        Err(e) => eprintln!("reclab listen: warning: cannot run gc: {e}"),
    }
}

/// The shared state and the broker client.
struct Shared {
    opts: ListenOpts,
    state: Mutex<State>,
    wake: Condvar,
    client: Client,
    result_topic: String,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("listener state lock")
    }

    fn publish_reply(&self, reply: &Reply) {
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
                if let Err(e) =
                    self.client
                        .publish(self.result_topic.clone(), QoS::AtLeastOnce, false, body)
                {
                    tracing::warn!(cause = %e, "cannot queue a reply");
                }
            }
            Err(e) => tracing::warn!(cause = %e, "cannot serialize a reply"),
        }
    }

    /// Acknowledges a finished job's message if it came on this connection; otherwise
    /// remembers it, so its redelivery is acknowledged without running it again.
    fn ack(&self, state: &mut State, job: &Job) {
        if job.generation == state.generation {
            if let Err(e) = self.client.ack(&job.message) {
                tracing::warn!(cause = %e, "cannot queue an acknowledgement");
            }
        } else {
            state.done_unacked.push(job.message.payload.to_vec());
        }
    }

    /// This host's status now.
    fn status(&self, state: &State) -> Status {
        let committed: u64 = state.running.values().filter_map(|j| j.need).sum();
        let (total, available) = fleet::read_meminfo().unwrap_or((0, 0));
        let (capacity, free_memory) = fleet::room(total, available, self.opts.reserve, committed);
        Status {
            schema: fleet::STATUS_SCHEMA.into(),
            host: self.opts.host.clone(),
            online: true,
            slots: self.opts.parallel,
            running: state.running.values().map(|j| j.lab.clone()).collect(),
            free_memory,
            capacity,
            total_memory: total,
            reserve: self.opts.reserve,
            version: env!("CARGO_PKG_VERSION").into(),
            updated: jiff::Timestamp::now().to_string(),
        }
    }

    fn publish_status(&self, state: &State) {
        let status = self.status(state);
        let topic = fleet::status_topic(&self.opts.mqtt.topic, &self.opts.host);
        match serde_json::to_vec(&status) {
            Ok(body) => {
                if let Err(e) = self.client.publish(topic, QoS::AtLeastOnce, true, body) {
                    tracing::warn!(cause = %e, "cannot queue the status");
                }
            }
            Err(e) => tracing::warn!(cause = %e, "cannot serialize the status"),
        }
    }

    /// Takes the first waiting job that may run now; passes on or rejects the ones that
    /// should not wait here (their messages acknowledged after the new message or the reply
    /// is queued).
    fn next_job(&self, state: &mut State) -> Option<(u64, Job)> {
        let me = self.status(state);
        let others: Vec<Status> = state.fleet.values().cloned().collect();
        let mut i = 0;
        while i < state.waiting.len() {
            let job = &state.waiting[i];
            if state.running.values().any(|r| r.lab == job.lab) {
                i += 1;
                continue;
            }
            match fleet::admit(job.need, &me, &others, job.request.hops) {
                Admission::Run => {
                    let job = state.waiting.remove(i).expect("index in range");
                    state.next_job += 1;
                    return Some((state.next_job, job));
                }
                Admission::Hold(why) => {
                    tracing::info!(lab = %job.lab, %why, "held");
                    i += 1;
                }
                Admission::PassOn(why) => {
                    let job = state.waiting.remove(i).expect("index in range");
                    eprintln!("reclab listen: {} passed on: {why}", job.lab);
                    let mut request = job.request.clone();
                    request.hops += 1;
                    request.passed_by.push(self.opts.host.clone());
                    match serde_json::to_vec(&request) {
                        Ok(body) => {
                            if let Err(e) = self.client.publish(
                                self.opts.mqtt.topic.clone(),
                                QoS::AtLeastOnce,
                                false,
                                body,
                            ) {
                                tracing::warn!(cause = %e, "cannot pass a request on");
                            }
                        }
                        Err(e) => tracing::warn!(cause = %e, "cannot serialize a request"),
                    }
                    self.ack(state, &job);
                }
                Admission::Reject(why) => {
                    let job = state.waiting.remove(i).expect("index in range");
                    let mut reply = Reply::new("rejected", &job.lab, &self.opts.host);
                    reply.lab_file = Some(job.lab_file.display().to_string());
                    reply.at = job.request.at.clone();
                    reply.reason = Some(why);
                    self.publish_reply(&reply);
                    self.ack(state, &job);
                }
            }
        }
        None
    }

    /// A drill thread: runs jobs until the process ends.
    fn work(&self) {
        loop {
            let (id, job) = {
                let mut state = self.lock();
                loop {
                    if let Some(found) = self.next_job(&mut state) {
                        break found;
                    }
                    state = self
                        .wake
                        .wait_timeout(state, RECHECK)
                        .expect("listener state lock")
                        .0;
                }
            };
            {
                let mut state = self.lock();
                state.running.insert(id, job.clone());
                self.publish_status(&state);
            }
            let mut started = Reply::new("started", &job.lab, &self.opts.host);
            started.lab_file = Some(job.lab_file.display().to_string());
            started.at = job.request.at.clone();
            self.publish_reply(&started);
            let reply = run_drill(&self.opts, &job);
            // The result first, then the acknowledgement, on the same connection: the broker
            // has the result before it forgets the request.
            self.publish_reply(&reply);
            let mut state = self.lock();
            let job = state.running.remove(&id).unwrap_or(job);
            self.ack(&mut state, &job);
            self.publish_status(&state);
            drop(state);
            self.wake.notify_all();
        }
    }

    /// A request message arrived.
    fn received(&self, message: Publish) {
        let payload = message.payload.to_vec();
        let mut state = self.lock();
        let generation = state.generation;
        if message.dup {
            // A redelivery (after a reconnect) of a request this listener has.
            if let Some(i) = state.done_unacked.iter().position(|p| *p == payload) {
                state.done_unacked.remove(i);
                if let Err(e) = self.client.ack(&message) {
                    tracing::warn!(cause = %e, "cannot queue an acknowledgement");
                }
                return;
            }
            let State {
                waiting, running, ..
            } = &mut *state;
            let known = waiting
                .iter_mut()
                .chain(running.values_mut())
                .find(|j| j.generation != generation && *j.message.payload == *payload);
            if let Some(job) = known {
                job.message = message;
                job.generation = generation;
                return;
            }
        }
        drop(state);
        match self.check(&payload) {
            Ok(job) => {
                let mut state = self.lock();
                state.waiting.push_back(Job {
                    message,
                    generation,
                    ..job
                });
                drop(state);
                self.wake.notify_all();
            }
            Err(reply) => {
                self.publish_reply(&reply);
                let mut state = self.lock();
                let job = Job {
                    lab: reply.lab.clone(),
                    lab_file: PathBuf::new(),
                    request: Request {
                        lab: reply.lab.clone(),
                        at: None,
                        hops: 0,
                        passed_by: vec![],
                        bisect: None,
                    },
                    need: None,
                    message,
                    generation,
                };
                self.ack(&mut state, &job);
            }
        }
    }

    /// Checks a request: a job (its message still to be set) or the `rejected` reply.
    fn check(&self, payload: &[u8]) -> std::result::Result<Job, Box<Reply>> {
        let host = &self.opts.host;
        let request: Request = serde_json::from_slice(payload).map_err(|e| {
            let mut r = Reply::new("rejected", "", host);
            r.reason = Some(format!(
                "the message is not a request like {{\"lab\": \"erp\", \"at\": \"2h ago\"}}: {e}"
            ));
            Box::new(r)
        })?;
        let mut reply = Reply::new("rejected", &request.lab, host);
        reply.at = request.at.clone();
        let (spec, lab_file) =
            resolve_lab_spec(&self.opts.labs_dir, &request.lab).map_err(|e| {
                reply.reason = Some(format!("{e:#}"));
                reply.clone()
            })?;
        Ok(Job {
            lab: spec.name.clone(),
            lab_file,
            need: lab_memory(&spec),
            request,
            message: Publish::new("", QoS::AtLeastOnce, Vec::new(), None),
            generation: 0,
        })
    }
}

/// Runs the listener until the process is stopped.
pub fn run(opts: &ListenOpts) -> Result<()> {
    if opts.parallel == 0 || opts.parallel > usize::from(u16::MAX) {
        bail!("--parallel must be between 1 and 65535");
    }
    if let Some(why) = fleet::host_problem(&opts.host) {
        bail!("--host: {why}");
    }
    if let Some(why) = fleet::host_problem(&opts.group) {
        bail!("--group: {}", why.replace("host name", "group name"));
    }
    let topic = opts.mqtt.topic.clone();
    let result_topic = format!("{topic}/result");
    let shared_topic = fleet::shared_topic(&opts.group, &topic);
    let status_wildcard = format!("{topic}/status/+");
    let my_status = fleet::status_topic(&topic, &opts.host);

    collect_orphans(opts);

    let mut options = mqtt5_options(&opts.mqtt, &format!("reclab-listen-{}", opts.host))?;
    options.set_clean_start(false);
    options.set_session_expiry_interval(Some(opts.session_expiry));
    options.set_receive_maximum(Some(opts.parallel as u16));
    options.set_manual_acks(true);
    options.set_last_will(LastWill::new(
        my_status.clone(),
        serde_json::to_vec(&Status::offline(&opts.host))?,
        QoS::AtLeastOnce,
        true,
        None,
    ));
    let (client, mut connection) = Client::new(options, 64);
    let shared = Arc::new(Shared {
        opts: opts.clone(),
        state: Mutex::new(State::default()),
        wake: Condvar::new(),
        client: client.clone(),
        result_topic: result_topic.clone(),
    });
    for n in 0..opts.parallel {
        let shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name(format!("drill-{n}"))
            .spawn(move || shared.work())
            .context("starting a drill thread")?;
    }

    eprintln!(
        "reclab listen: host {} waiting for requests on {} topic {shared_topic} (replies on {result_topic}, status on {my_status})",
        opts.host, opts.mqtt.url
    );
    let mut failures = 0u32;
    loop {
        match connection.recv_timeout(Duration::from_secs(1)) {
            Err(_) => continue,
            Ok(Ok(Event::Incoming(Packet::ConnAck(ack)))) => {
                // A refusal (bad password, not authorized) does not heal by retrying.
                check_connack(&opts.mqtt, &ack)?;
                failures = 0;
                let mut state = shared.lock();
                state.generation += 1;
                // Subscriptions are part of the session; subscribing again is harmless and
                // needed when the broker lost the session.
                client
                    .subscribe(status_wildcard.clone(), QoS::AtMostOnce)
                    .context("subscribing to the fleet's statuses")?;
                client
                    .subscribe(shared_topic.clone(), QoS::AtLeastOnce)
                    .context("subscribing")?;
                shared.publish_status(&state);
                tracing::info!(%shared_topic, session_present = ack.session_present, "connected and subscribed");
            }
            Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                let topic_of = String::from_utf8_lossy(&p.topic).into_owned();
                if topic_of == topic {
                    shared.received(p);
                } else if topic_of.starts_with(&format!("{topic}/status/")) {
                    let host = topic_of.rsplit('/').next().unwrap_or_default().to_string();
                    let mut state = shared.lock();
                    match serde_json::from_slice::<Status>(&p.payload) {
                        Ok(s) => {
                            state.fleet.insert(host, s);
                        }
                        Err(_) => {
                            state.fleet.remove(&host);
                        }
                    }
                    drop(state);
                    shared.wake.notify_all();
                }
            }
            Ok(Ok(_)) => {}
            Ok(Err(rumqttc::v5::ConnectionError::ConnectionRefused(code))) => {
                // A refusal (bad password, not authorized) does not heal by retrying.
                let hint = match code {
                    ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized => {
                        "; check --user and --password-file"
                    }
                    _ => "",
                };
                bail!(
                    "the broker {}:{} refused the connection: {code:?}{hint}",
                    opts.mqtt.host,
                    opts.mqtt.port
                );
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_passed_on_carry_their_hops_and_plain_requests_stay_plain() {
        let r: Request = serde_json::from_str(r#"{"lab": "erp", "at": "2h ago"}"#).unwrap();
        assert_eq!(r.hops, 0);
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"lab":"erp","at":"2h ago"}"#
        );
        let mut r = r;
        r.hops = 1;
        r.passed_by.push("lab-a".into());
        let back: Request = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!((back.hops, back.passed_by), (1, vec!["lab-a".to_string()]));
        assert!(serde_json::from_str::<Request>(r#"{"lab": "erp", "lbs": 1}"#).is_err());
    }

    #[test]
    fn a_bisect_request_runs_reclab_bisect_with_its_window() {
        let r: Request =
            serde_json::from_str(r#"{"lab": "erp", "bisect": {"from": "48h ago"}}"#).unwrap();
        let args: Vec<_> = drill_args(&r, Path::new("/labs/erp.toml"))
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            ["bisect", "/labs/erp.toml", "--json", "--from", "48h ago"]
        );
        // Passed on to another host, it stays a bisect.
        let back: Request = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back.bisect.unwrap().from.as_deref(), Some("48h ago"));
        // A plain request is still a drill; an unknown bisect field is refused.
        let plain: Request = serde_json::from_str(r#"{"lab": "erp", "at": "2h ago"}"#).unwrap();
        assert!(plain.bisect.is_none());
        let args: Vec<_> = drill_args(&plain, Path::new("/labs/erp.toml"))
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(args, ["run", "/labs/erp.toml", "--at", "2h ago"]);
        assert!(
            serde_json::from_str::<Request>(r#"{"lab": "erp", "bisect": {"since": "2h"}}"#)
                .is_err()
        );
    }
}
