//! A fleet of lab hosts on one MQTT broker (see docs/fleet.md): the retained status every
//! listener publishes, the admission decision (does this lab fit here, elsewhere, nowhere?),
//! the host's memory, and `reclab fleet`.
//!
//! Everything here but [`read_meminfo`], [`this_host`] and [`collect`] is pure, so the protocol
//! decisions are unit-tested without a broker.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::spec::MqttSpec;

/// The schema of a status message.
pub const STATUS_SCHEMA: &str = "reclab.fleet/1";
/// Default memory a host keeps for itself (1 GiB).
pub const DEFAULT_RESERVE: u64 = 1 << 30;

/// The topic of `host`'s retained status under request topic `topic`.
pub fn status_topic(topic: &str, host: &str) -> String {
    format!("{topic}/status/{host}")
}

/// The shared subscription every listener of `group` joins for request topic `topic`.
pub fn shared_topic(group: &str, topic: &str) -> String {
    format!("$share/{group}/{topic}")
}

/// This host's name in the fleet: `RECLAB_HOST` if set, else the kernel's host name.
pub fn this_host() -> String {
    if let Ok(h) = std::env::var("RECLAB_HOST")
        && !h.trim().is_empty()
    {
        return h.trim().to_string();
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Why a host name cannot name a host in topics and client ids, if it cannot.
pub fn host_problem(host: &str) -> Option<String> {
    if host.is_empty() || host.len() > 64 {
        return Some("a host name has 1 to 64 characters".into());
    }
    if !host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Some(format!(
            "{host:?} may contain only letters, digits, '-', '_' and '.' (it is part of topics and the MQTT client id)"
        ));
    }
    None
}

/// The retained status of one listener, on `T/status/HOST`. The last will is the same with
/// `online: false`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub schema: String,
    pub host: String,
    pub online: bool,
    /// Drill slots (`--parallel`).
    #[serde(default)]
    pub slots: usize,
    /// Labs whose drills run now.
    #[serde(default)]
    pub running: Vec<String>,
    /// Memory a new lab may have now (bytes), after the reserve and the running labs.
    #[serde(default)]
    pub free_memory: u64,
    /// Memory the largest lab may ever have here (bytes): total minus reserve.
    #[serde(default)]
    pub capacity: u64,
    #[serde(default)]
    pub total_memory: u64,
    #[serde(default)]
    pub reserve: u64,
    #[serde(default)]
    pub version: String,
    /// When this status was published (RFC 3339); empty in a last will.
    #[serde(default)]
    pub updated: String,
}

impl Status {
    /// The last will of `host`: offline, nothing else known.
    pub fn offline(host: &str) -> Status {
        Status {
            schema: STATUS_SCHEMA.into(),
            host: host.into(),
            online: false,
            slots: 0,
            running: vec![],
            free_memory: 0,
            capacity: 0,
            total_memory: 0,
            reserve: 0,
            version: env!("CARGO_PKG_VERSION").into(),
            updated: String::new(),
        }
    }
}

/// The host's memory as `/proc/meminfo` says: (total, available), bytes.
pub fn parse_meminfo(text: &str) -> Result<(u64, u64)> {
    let field = |name: &str| -> Result<u64> {
        let line = text
            .lines()
            .find(|l| l.split(':').next() == Some(name))
            .with_context(|| format!("/proc/meminfo has no {name}"))?;
        let kib: u64 = line
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("/proc/meminfo: cannot read {line:?}"))?;
        Ok(kib * 1024)
    };
    Ok((field("MemTotal")?, field("MemAvailable")?))
}

/// [`parse_meminfo`] of this host.
pub fn read_meminfo() -> Result<(u64, u64)> {
    parse_meminfo(&std::fs::read_to_string("/proc/meminfo").context("reading /proc/meminfo")?)
}

/// What a host has for labs, from its memory, its reserve and what its running labs were
/// promised (`committed`): (capacity, free). A booting VM has not touched all its memory yet,
/// so the running labs count with what they were promised, not with what they use.
pub fn room(total: u64, available: u64, reserve: u64, committed: u64) -> (u64, u64) {
    let capacity = total.saturating_sub(reserve);
    let free = available
        .min(total.saturating_sub(committed))
        .saturating_sub(reserve);
    (capacity, free)
}

/// What a host does with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Run it here now.
    Run,
    /// Publish it again for the others (with one more hop); the reason is logged.
    PassOn(String),
    /// Keep it (and its slot) and decide again when memory frees.
    Hold(String),
    /// Answer `rejected`: it fits no host.
    Reject(String),
}

/// Decides a request needing `need` bytes (`None`: unknown, run it) on host `me`, knowing the
/// other online hosts' statuses `others`, after `hops` passes between hosts.
///
/// - It runs here when it fits `me.free_memory`.
/// - A lab larger than every known host's capacity (total minus reserve) fits nowhere:
///   rejected, naming the largest host.
/// - Otherwise it is passed on to the others when one of them could take it (capacity, or
///   free memory and a free slot now), at most `2 × hosts` hops; past that, or when nobody
///   could, a lab that fits here some time is held here and one that never fits here is
///   rejected.
pub fn admit(need: Option<u64>, me: &Status, others: &[Status], hops: u32) -> Admission {
    let Some(need) = need else {
        return Admission::Run;
    };
    if need <= me.free_memory {
        return Admission::Run;
    }
    let others: Vec<&Status> = others
        .iter()
        .filter(|s| s.online && s.host != me.host)
        .collect();
    let hop_limit = 2 * (others.len() as u32 + 1);
    let may_pass = hops < hop_limit;
    if need > me.capacity {
        let largest = others
            .iter()
            .copied()
            .chain(std::iter::once(me))
            .max_by_key(|s| s.capacity)
            .expect("me is there");
        if largest.capacity < need || !may_pass {
            return Admission::Reject(format!(
                "the lab needs {} of memory and fits no host of the fleet: the largest, {}, has {} after its reserve; give the lab's VMs less memory (memory = \"...\" per VM) or add a larger host",
                bytes(need),
                largest.host,
                bytes(largest.capacity)
            ));
        }
        return Admission::PassOn(format!(
            "the lab needs {}, more than this host ever has ({}); left to the others",
            bytes(need),
            bytes(me.capacity)
        ));
    }
    let someone_now = others
        .iter()
        .any(|s| s.free_memory >= need && s.running.len() < s.slots);
    if someone_now && may_pass {
        return Admission::PassOn(format!(
            "the lab needs {} and this host has {} free now; left to the others",
            bytes(need),
            bytes(me.free_memory)
        ));
    }
    Admission::Hold(format!(
        "the lab needs {} and this host has {} free now; waiting here until memory frees",
        bytes(need),
        bytes(me.free_memory)
    ))
}

/// Bytes for people: `2 GiB`, `512 MiB`, `1.5 GiB`.
pub fn bytes(n: u64) -> String {
    const GIB: f64 = (1u64 << 30) as f64;
    const MIB: f64 = (1u64 << 20) as f64;
    let f = n as f64;
    if f >= GIB {
        let g = f / GIB;
        if (g - g.round()).abs() < 0.05 {
            format!("{} GiB", g.round())
        } else {
            format!("{g:.1} GiB")
        }
    } else {
        format!("{} MiB", (f / MIB).round())
    }
}

/// The fleet table of `reclab fleet`.
pub fn render(statuses: &[Status]) -> String {
    let mut out = String::new();
    let rows: Vec<[String; 6]> = statuses
        .iter()
        .map(|s| {
            [
                s.host.clone(),
                if s.online { "online" } else { "offline" }.into(),
                if s.online {
                    format!("{}/{}", s.running.len(), s.slots)
                } else {
                    "-".into()
                },
                if s.online {
                    bytes(s.free_memory)
                } else {
                    "-".into()
                },
                if s.running.is_empty() {
                    "-".into()
                } else {
                    s.running.join(",")
                },
                s.version.clone(),
            ]
        })
        .collect();
    let head = ["HOST", "STATE", "RUNNING", "FREE", "LABS", "VERSION"];
    let mut width = head.map(str::len);
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: &[&str]| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                l.push_str(&format!("{c:<w$}  ", w = width[i]));
            }
        }
        l.trim_end().to_string() + "\n"
    };
    out.push_str(&line(&head));
    for r in &rows {
        out.push_str(&line(&r.each_ref().map(String::as_str)));
    }
    if rows.is_empty() {
        out.push_str("(no listener has published a status on this topic)\n");
    }
    out
}

/// Reads the retained statuses under `spec.topic` from the broker: connects, subscribes to
/// `T/status/+`, and takes what arrives until `quiet` passes without a message (at most
/// `timeout`). Sorted by host.
pub fn collect(spec: &MqttSpec, quiet: Duration, timeout: Duration) -> Result<Vec<Status>> {
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::mqttbytes::v5::Packet;
    use rumqttc::v5::{Client, Event};
    let id = format!(
        "reclab-fleet-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let (client, mut connection) = Client::new(crate::ops::listen::mqtt5_options(spec, &id)?, 16);
    let wildcard = format!("{}/status/+", spec.topic);
    let deadline = Instant::now() + timeout;
    let mut subscribed_at: Option<Instant> = None;
    let mut last = Instant::now();
    let mut found = BTreeMap::new();
    loop {
        let now = Instant::now();
        if now >= deadline {
            if subscribed_at.is_none() {
                bail!(
                    "no answer from the broker {}:{} within {}s",
                    spec.host,
                    spec.port,
                    timeout.as_secs()
                );
            }
            break;
        }
        if subscribed_at.is_some() && now.duration_since(last) >= quiet {
            break;
        }
        match connection.recv_timeout(Duration::from_millis(100)) {
            Err(_) => continue,
            Ok(Ok(Event::Incoming(Packet::ConnAck(ack)))) => {
                crate::ops::listen::check_connack(spec, &ack)?;
                client
                    .subscribe(wildcard.clone(), QoS::AtMostOnce)
                    .context("subscribing to the fleet's statuses")?;
            }
            Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => {
                subscribed_at = Some(Instant::now());
                last = Instant::now();
            }
            Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                last = Instant::now();
                if p.payload.is_empty() {
                    continue;
                }
                match serde_json::from_slice::<Status>(&p.payload) {
                    Ok(s) => {
                        found.insert(s.host.clone(), s);
                    }
                    Err(e) => tracing::warn!(topic = ?p.topic, cause = %e, "not a fleet status"),
                }
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                return Err(anyhow::Error::new(e))
                    .with_context(|| format!("reading the fleet from {}", spec.url));
            }
        }
    }
    let _ = client.disconnect();
    let _ = connection.recv_timeout(Duration::from_millis(300));
    Ok(found.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn host(name: &str, slots: usize, running: usize, free: u64, capacity: u64) -> Status {
        Status {
            schema: STATUS_SCHEMA.into(),
            host: name.into(),
            online: true,
            slots,
            running: (0..running).map(|i| format!("lab{i}")).collect(),
            free_memory: free,
            capacity,
            total_memory: capacity + GIB,
            reserve: GIB,
            version: "0.1.0".into(),
            updated: String::new(),
        }
    }

    #[test]
    fn a_lab_that_fits_free_memory_runs_and_an_unknown_need_runs() {
        let me = host("a", 1, 0, 4 * GIB, 8 * GIB);
        assert_eq!(admit(Some(4 * GIB), &me, &[], 0), Admission::Run);
        assert_eq!(admit(None, &me, &[], 0), Admission::Run);
    }

    #[test]
    fn a_lab_larger_than_every_host_is_rejected_naming_the_largest() {
        let me = host("a", 1, 0, 4 * GIB, 8 * GIB);
        let others = [host("b", 1, 0, 2 * GIB, 16 * GIB)];
        let Admission::Reject(why) = admit(Some(32 * GIB), &me, &others, 0) else {
            panic!("not rejected")
        };
        assert!(why.contains("needs 32 GiB"), "{why}");
        assert!(why.contains("the largest, b, has 16 GiB"), "{why}");
        // Alone, the host is its own largest.
        let Admission::Reject(why) = admit(Some(9 * GIB), &me, &[], 0) else {
            panic!("not rejected")
        };
        assert!(why.contains("the largest, a, has 8 GiB"), "{why}");
    }

    #[test]
    fn a_lab_too_large_here_but_not_for_another_host_is_passed_on_and_offline_hosts_do_not_count() {
        let me = host("a", 1, 0, 4 * GIB, 8 * GIB);
        let b = host("b", 1, 1, 0, 16 * GIB);
        assert!(matches!(
            admit(Some(12 * GIB), &me, std::slice::from_ref(&b), 0),
            Admission::PassOn(_)
        ));
        let mut gone = b.clone();
        gone.online = false;
        assert!(matches!(
            admit(Some(12 * GIB), &me, &[gone], 0),
            Admission::Reject(_)
        ));
        // The host's own old status in the list does not count as another host.
        let mut me_old = me.clone();
        me_old.capacity = 64 * GIB;
        assert!(matches!(
            admit(Some(12 * GIB), &me, &[me_old], 0),
            Admission::Reject(_)
        ));
        // Past the hop limit (2 × 2 hosts) it is rejected instead of circling.
        assert!(matches!(
            admit(Some(12 * GIB), &me, &[b], 4),
            Admission::Reject(_)
        ));
    }

    #[test]
    fn a_lab_that_fits_here_later_is_passed_to_a_host_with_room_now_else_held() {
        let me = host("a", 2, 1, GIB, 8 * GIB);
        let idle = host("b", 1, 0, 6 * GIB, 8 * GIB);
        let busy = host("c", 1, 1, 6 * GIB, 8 * GIB);
        let small = host("d", 1, 0, GIB, 8 * GIB);
        assert!(matches!(
            admit(Some(4 * GIB), &me, std::slice::from_ref(&idle), 0),
            Admission::PassOn(_)
        ));
        // No other host has a free slot with room: wait here.
        assert!(matches!(
            admit(Some(4 * GIB), &me, &[busy, small], 0),
            Admission::Hold(_)
        ));
        // Past the hop limit it stays here even if someone has room.
        assert!(matches!(
            admit(Some(4 * GIB), &me, &[idle], 4),
            Admission::Hold(_)
        ));
    }

    #[test]
    fn room_counts_what_running_labs_were_promised_and_the_reserve() {
        // 16 GiB host, 12 GiB available, 1 GiB reserve, nothing running.
        assert_eq!(room(16 * GIB, 12 * GIB, GIB, 0), (15 * GIB, 11 * GIB));
        // A booting lab promised 8 GiB but the kernel still shows 12 GiB available.
        assert_eq!(room(16 * GIB, 12 * GIB, GIB, 8 * GIB), (15 * GIB, 7 * GIB));
        // A reserve larger than what is there leaves nothing, not an underflow.
        assert_eq!(room(GIB, GIB, 2 * GIB, 0), (0, 0));
    }

    #[test]
    fn meminfo_is_read_in_bytes() {
        let text = "MemTotal:       24576000 kB\nMemFree:          900000 kB\nMemAvailable:   23000000 kB\n";
        assert_eq!(
            parse_meminfo(text).unwrap(),
            (24_576_000 * 1024, 23_000_000 * 1024)
        );
        assert!(
            parse_meminfo("MemTotal: 1 kB\n")
                .unwrap_err()
                .to_string()
                .contains("MemAvailable")
        );
    }

    #[test]
    fn statuses_round_trip_and_the_table_shows_each_host() {
        let a = host("lab-a", 2, 1, 3 * GIB, 8 * GIB);
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<Status>(&json).unwrap(), a);
        let will: Status =
            serde_json::from_str(&serde_json::to_string(&Status::offline("lab-b")).unwrap())
                .unwrap();
        assert!(!will.online);
        let table = render(&[a, will]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        assert!(lines[1].starts_with("lab-a  online"), "{table}");
        assert!(
            lines[1].contains("1/2") && lines[1].contains("3 GiB"),
            "{table}"
        );
        assert!(lines[2].starts_with("lab-b  offline"), "{table}");
        assert!(render(&[]).contains("no listener"));
    }

    #[test]
    fn host_names_must_fit_topics() {
        assert_eq!(host_problem("lab-host-1.example"), None);
        assert!(host_problem("a/b").is_some());
        assert!(host_problem("a+").is_some());
        assert!(host_problem("").is_some());
        assert_eq!(shared_topic("reclab", "dr/run"), "$share/reclab/dr/run");
        assert_eq!(status_topic("dr/run", "a"), "dr/run/status/a");
        assert_eq!(bytes(2 * GIB), "2 GiB");
        assert_eq!(bytes(512 << 20), "512 MiB");
        assert_eq!(bytes(3 * GIB / 2), "1.5 GiB");
    }
}
