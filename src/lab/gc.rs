//! Tearing runs down: `down` of one lab, and `gc` of expired runs and orphans.

use anyhow::{Context, Result, bail};
use serde::Serialize;
use std::path::Path;

use crate::base::names::{self};
use crate::base::sys;
use crate::hv::Hypervisor;
use crate::lab::execute::progress;
use crate::lab::host::Host;
use crate::lab::journal::RunDir;
use crate::lab::lock::{RunLock, StateLock, TryLock};
use crate::lab::record::{Owner, Resource, RunRecord, RunState};
use crate::lab::runs::find_runs;
use crate::lab::{image, teardown};
use crate::xml;

/// Tear down runs; returns how many were removed. Each run is removed under its lock: a
/// run another process is bringing up, drilling or tearing down is waited for, and one that
/// is gone once its lock is ours (a concurrent `down` removed it) counts as removed.
pub fn down(
    state_dir: &Path,
    which: &str,
    host: &dyn Host,
    open: &dyn Fn(&str) -> Result<Box<dyn Hypervisor>>,
) -> Result<usize> {
    let runs = find_runs(state_dir, Some(which))?;
    let mut n = 0;
    for (dir, _) in runs {
        if let Some(lock) = RunLock::acquire(&dir)? {
            down_held(lock, host, open)?;
        }
        n += 1;
    }
    Ok(n)
}

/// Tear down the run whose lock the caller holds (`reclab run`, which took it in `up`).
pub fn down_held(
    lock: RunLock,
    host: &dyn Host,
    open: &dyn Fn(&str) -> Result<Box<dyn Hypervisor>>,
) -> Result<()> {
    let dir = lock.dir();
    // Read again under the lock: the record may have changed while we waited.
    let rec = dir.load_record()?;
    remove_run(dir, rec, host, open)
}

fn remove_run(
    dir: &RunDir,
    rec: Option<RunRecord>,
    host: &dyn Host,
    open: &dyn Fn(&str) -> Result<Box<dyn Hypervisor>>,
) -> Result<()> {
    let uri = rec.as_ref().map(|r| r.uri.clone());
    let needs_hv = dir
        .resources()?
        .iter()
        .any(|r| matches!(r, Resource::Domain { .. } | Resource::Network { .. }));
    let target = uri.clone().unwrap_or_default();
    let (hv, daemon_gone) = if needs_hv {
        match open(&target) {
            Ok(h) => (Some(h), false),
            Err(e) => {
                daemon_gone(dir, rec.as_ref(), host, &target, e)?;
                (None, true)
            }
        }
    } else {
        (None, false)
    };
    if let Some(mut r) = rec.clone() {
        r.state = RunState::TearingDown;
        let _ = dir.save_record(&r);
    }
    let left = if daemon_gone {
        let bridges: Vec<String> = rec
            .iter()
            .flat_map(|r| r.segments.iter().map(|s| s.bridge.clone()))
            .collect();
        teardown::teardown_without_daemon(host, dir, &bridges)?
    } else {
        teardown::teardown(hv.as_deref(), host, dir)?
    };
    if !left.is_empty() {
        let msgs: Vec<String> = left
            .iter()
            .map(|(r, w)| format!("{}: {w}", r.describe()))
            .collect();
        bail!(
            "could not remove everything of run {}: {}",
            dir.path.display(),
            msgs.join("; ")
        );
    }
    if let Some(r) = rec {
        let changed = image::changed(&r.fingerprints);
        if !changed.is_empty() {
            bail!("{}", changed.join("; "));
        }
        progress(format!(
            "lab {} run {} removed; production images unchanged",
            r.lab,
            r.run_id.short()
        ));
    }
    Ok(())
}

/// The run's libvirt daemon cannot be reached (`err`). Its host-side pieces (namespaces,
/// dnsmasq, veths, rules, files) may go only if its domains are provably dead: the daemon is
/// on this host (a local URI) and no QEMU process runs any of them. Otherwise nothing of the
/// run is touched, so the lab stays fenced, and the error names libvirtd.
fn daemon_gone(
    dir: &RunDir,
    rec: Option<&RunRecord>,
    host: &dyn Host,
    uri: &str,
    err: anyhow::Error,
) -> Result<()> {
    let short = dir
        .path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let shown = if uri.is_empty() {
        "the default URI"
    } else {
        uri
    };
    if !is_local_uri(uri) {
        return Err(err.context(format!(
            "cannot reach libvirtd at {shown} to remove run {short}; nothing of it was removed \
             (its domains may still run there); try again once libvirtd answers"
        )));
    }
    for r in dir.resources()? {
        if let Resource::Domain { name } = r
            && let Some(pid) = host.vm_process(&name)?
        {
            return Err(err.context(format!(
                "cannot reach libvirtd at {shown}, and domain {name} of run {short} still runs \
                 (QEMU pid {pid}): nothing of the run was removed, so the lab stays fenced; try \
                 again once libvirtd answers"
            )));
        }
    }
    let lab = rec.map(|r| r.lab.as_str()).unwrap_or("?");
    progress(format!(
        "libvirtd at {shown} cannot be reached ({err:#}); no QEMU process of lab {lab} run \
         {short} runs on this host, so its domains and networks went with their daemon: \
         removing the rest"
    ));
    Ok(())
}

/// Whether a libvirt URI names a daemon on this host (`qemu:///system`, a socket path; the
/// empty URI is the default, local one) rather than a remote one (`qemu+ssh://host/system`).
fn is_local_uri(uri: &str) -> bool {
    uri.is_empty()
        || uri
            .split_once("://")
            .is_some_and(|(_, rest)| rest.starts_with('/'))
}

/// What `gc` found and did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GcReport {
    pub removed_runs: Vec<String>,
    pub removed_foreign: Vec<String>,
    pub kept: Vec<String>,
}

/// Remove expired and orphaned runs, then sweep tagged leftovers no run knows about.
pub fn gc(
    state_dir: &Path,
    dry_run: bool,
    sweep_uri: Option<&str>,
    host: &dyn Host,
    open: &dyn Fn(&str) -> Result<Box<dyn Hypervisor>>,
) -> Result<GcReport> {
    let now = jiff::Timestamp::now();
    let mut rep = GcReport::default();
    // List and decide under the state directory's lock (an `up` creates and locks its run
    // directory under it), taking the lock of every run to remove; a run whose lock is held
    // is alive (being brought up, drilled or torn down) and kept.
    let state_lock = StateLock::acquire(state_dir)?;
    let mut doomed = Vec::new();
    for (dir, _) in find_runs(state_dir, None)? {
        let short = dir
            .path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let lock = match RunLock::try_acquire(&dir)? {
            TryLock::Locked(lock) => lock,
            TryLock::Busy => {
                rep.kept.push(format!("run {short}"));
                continue;
            }
            TryLock::Gone => continue,
        };
        // Read again under the lock: its holder may have changed it.
        let rec = dir.load_record()?;
        match why_remove(rec.as_ref(), now) {
            Some(why) => doomed.push((short, why, lock, rec)),
            None => rep.kept.push(format!("run {short}")),
        }
    }
    drop(state_lock);
    let mut removed = Vec::new();
    for (short, why, lock, rec) in doomed {
        let label = format!("run {short} ({why})");
        if !dry_run {
            remove_run(lock.dir(), rec, host, open)
                .with_context(|| format!("removing run {short}"))?;
        }
        rep.removed_runs.push(label);
        removed.push(short);
    }
    #[cfg(feature = "test-hooks")]
    crate::lab::hooks::gc_before_sweep(state_dir)?;
    // The sweep decides under the state directory's lock again, against the runs there are
    // now: a run created meanwhile is known, not a leftover.
    let _state_lock = StateLock::acquire(state_dir)?;
    let known: Vec<String> = RunDir::all(state_dir)?
        .iter()
        .filter_map(|d| d.path.file_name().map(|f| f.to_string_lossy().into_owned()))
        .filter(|short| !removed.contains(short))
        .collect();
    // A run unknown here may be another state directory's: registered on this host to a run
    // directory that exists. What it owns is left alone (named once in `kept`); a run whose
    // registered directory is gone is lost, and swept.
    let mut elsewhere = std::collections::BTreeMap::<String, bool>::new();
    let mut owned_elsewhere = |short: &str, rep: &mut GcReport| -> Result<bool> {
        if let Some(owned) = elsewhere.get(short) {
            return Ok(*owned);
        }
        let owner = host.owner_of(short)?.filter(|d| d.is_dir());
        if let Some(d) = &owner {
            rep.kept.push(format!(
                "run {short} (owned by {}, another state directory's run)",
                d.display()
            ));
        }
        elsewhere.insert(short.to_string(), owner.is_some());
        Ok(owner.is_some())
    };
    // Sweep: anything carrying reclab's tag or name whose run is unknown.
    let mut swept = std::collections::BTreeSet::<String>::new();
    if let Some(hv) = sweep_uri.and_then(|uri| open(uri).ok()) {
        {
            for d in hv.list_domains()? {
                let Some(meta) = hv.domain_metadata(&d.name, xml::domain::RECLAB_NS)? else {
                    continue;
                };
                let Some(m) = xml::domain::parse_lab_metadata(&meta) else {
                    continue;
                };
                let short: String = m.run.chars().take(8).collect();
                if known.contains(&short) || owned_elsewhere(&short, &mut rep)? {
                    continue;
                }
                if !dry_run {
                    teardown::undo(
                        Some(hv.as_ref()),
                        host,
                        &Resource::Domain {
                            name: d.name.clone(),
                        },
                    )?;
                }
                swept.insert(short);
                rep.removed_foreign.push(format!("domain {}", d.name));
            }
            for n in hv.list_networks()? {
                let Some(short) = tagged_short(&n.name) else {
                    continue;
                };
                if known.contains(&short) || owned_elsewhere(&short, &mut rep)? {
                    continue;
                }
                if !dry_run {
                    hv.destroy_network(&n.name)?;
                }
                rep.removed_foreign.push(format!("network {}", n.name));
                swept.insert(short);
            }
        }
    }
    // Network namespaces are not swept by name alone: /run/netns is shared by every state
    // directory and every libvirt daemon on the host, and each namespace reclab creates is in
    // its run's journal first. Only the lab-services namespaces (with their dnsmasq, and the
    // veths whose peer they hold) of a run whose domains or networks were just swept from this
    // hypervisor go: that run's directory is lost.
    if !swept.is_empty() {
        // The host side of each services veth first, as teardown does: the kernel would remove
        // it with its namespace, but only once that namespace is really gone (asynchronously).
        for short in &swept {
            let run = names::RunId(short.clone());
            for index in 0..100 {
                let link = names::services_link(&run, index);
                if known.contains(short) || !host.link_exists(&link)? {
                    continue;
                }
                if !dry_run {
                    teardown::undo(None, host, &Resource::Link { name: link.clone() })?;
                }
                rep.removed_foreign.push(format!("link {link}"));
            }
        }
        for ns in host.netns_list()? {
            let Some(short) = tagged_short(&ns) else {
                continue;
            };
            if !swept.contains(&short) || known.contains(&short) {
                continue;
            }
            if !dry_run {
                teardown::undo(None, host, &Resource::Netns { name: ns.clone() })?;
            }
            rep.removed_foreign.push(format!("network namespace {ns}"));
        }
    }
    for program in ["iptables", "ip6tables"] {
        let Ok(rules) = host.firewall_rules(program) else {
            continue;
        };
        for line in rules.lines() {
            let Some(pos) = line.find("reclab:") else {
                continue;
            };
            let short: String = line[pos + 7..].chars().take(8).collect();
            if known.contains(&short)
                || !line.starts_with("-A ")
                || owned_elsewhere(&short, &mut rep)?
            {
                continue;
            }
            let mut parts: Vec<String> = shell_split(&line[3..]);
            if parts.is_empty() {
                continue;
            }
            let chain = parts.remove(0);
            if !dry_run {
                teardown::undo(
                    None,
                    host,
                    &Resource::Firewall {
                        program: program.into(),
                        chain,
                        rule: parts,
                    },
                )?;
            }
            rep.removed_foreign.push(format!("{program} rule {line}"));
            swept.insert(short);
        }
    }
    // A swept run's registration names a run directory that is gone: it goes too.
    if !dry_run {
        for short in &swept {
            if let Some(d) = host.owner_of(short)?
                && !d.exists()
            {
                // Its leases on the restore cache of its own state directory go with it.
                if let Some(its_state) = d.parent().and_then(Path::parent) {
                    crate::lab::restore_cache::drop_stale_leases(its_state, Some(short))?;
                }
                host.owner_remove(short, &d)?;
            }
        }
        crate::lab::restore_cache::drop_stale_leases(state_dir, None)?;
    }
    Ok(rep)
}

/// Why `gc` removes a run it holds the lock of (`None`: keep it). A run is removed only when
/// provably dead: expired; or its owner is gone while it was still being created or torn
/// down; or, for a lab a `reclab run` owns, its drill is gone. An `up` hands its lab over, so
/// a lab it left up is kept until its expiry.
fn why_remove(rec: Option<&RunRecord>, now: jiff::Timestamp) -> Option<String> {
    let Some(r) = rec else {
        return Some("no run record (crashed while starting)".to_string());
    };
    let expired = r
        .expires
        .parse::<jiff::Timestamp>()
        .map(|e| e <= now)
        .unwrap_or(true);
    if expired {
        return Some(format!("expired at {}", r.expires));
    }
    let owned =
        matches!(r.state, RunState::Creating | RunState::TearingDown) || r.owner == Owner::Run;
    (owned && !sys::process_alive(r.owner_pid, r.owner_start)).then(|| match r.owner {
        Owner::Up => format!("orphaned: its reclab process {} is gone", r.owner_pid),
        Owner::Run => format!(
            "orphaned: its reclab process {} (reclab run) is gone",
            r.owner_pid
        ),
    })
}

/// The run short id in a `reclab-<8 hex>-…` name.
fn tagged_short(name: &str) -> Option<String> {
    let rest = name.strip_prefix(names::PREFIX)?;
    let short = rest.get(..8)?;
    (short.chars().all(|c| c.is_ascii_hexdigit()) && rest.get(8..9) == Some("-"))
        .then(|| short.to_string())
}

/// Split an `iptables -S` line (quotes only appear around comments).
fn shell_split(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '"' => quoted = !quoted,
            ' ' if !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hv::fake::FakeHv;
    use crate::lab::fake::FakeHost;
    use crate::xml::domain::{RECLAB_NS, RECLAB_PREFIX};

    /// A domain as `up` defines it: reclab's metadata under its prefix, as the rewrite writes it.
    fn lab_domain(name: &str, run: &str) -> String {
        let p = RECLAB_PREFIX;
        format!(
            "<domain type='kvm'><name>{name}</name><metadata>\
             <{p}:lab xmlns:{p}='{RECLAB_NS}'><{p}:name>demo</{p}:name><{p}:run>{run}</{p}:run>\
             <{p}:vm>db</{p}:vm><{p}:created>2026-12-01T10:00:00Z</{p}:created>\
             <{p}:expires>2026-12-01T18:00:00Z</{p}:expires></{p}:lab></metadata></domain>"
        )
    }

    #[test]
    fn the_sweep_removes_the_domains_network_and_rules_of_a_lost_run_directory() {
        let state = tempfile::tempdir().unwrap();
        let hv = FakeHv::new();
        let host = FakeHost::new();
        let lost = "0123abcd4567ef890123abcd4567ef89";
        hv.add_domain(&lab_domain("reclab-demo-0123abcd-db", lost), false, true)
            .unwrap();
        hv.add_domain(
            "<domain type='kvm'><name>prod-db</name></domain>",
            true,
            true,
        )
        .unwrap();
        hv.add_network(
            "<network><name>reclab-0123abcd-lan</name><bridge name='rl0123abcds0'/></network>",
            false,
            true,
        )
        .unwrap();
        let rule: Vec<String> = ["-i", "rl0123abcds0", "-m", "comment", "--comment"]
            .iter()
            .map(|w| w.to_string())
            .chain(["reclab:0123abcd".to_string(), "-j".into(), "DROP".into()])
            .collect();
        host.firewall_insert("iptables", "FORWARD", &rule).unwrap();
        // Its lab services: a namespace with dnsmasq and a veth onto the lab bridge; and the
        // services of a run of another reclab (another state directory or daemon).
        let conf = state.path().join("dnsmasq.conf");
        std::fs::write(&conf, "").unwrap();
        for ns in ["reclab-0123abcd-lan", "reclab-99999999-lan"] {
            host.netns_add(ns).unwrap();
            host.start_dnsmasq(ns, &conf).unwrap();
        }
        host.veth_add(
            "rv0123abcds0",
            "rl0123abcds0",
            "reclab-0123abcd-lan",
            "eth0",
            "10.20.0.1/24",
        )
        .unwrap();
        // What the sweep reads is what libvirt returns: the element without its prefix.
        let meta = hv
            .domain_metadata("reclab-demo-0123abcd-db", RECLAB_NS)
            .unwrap()
            .unwrap();
        assert!(meta.starts_with("<lab>"), "{meta}");

        let open = |_: &str| -> Result<Box<dyn Hypervisor>> { Ok(Box::new(hv.clone())) };
        let dry = gc(state.path(), true, Some("fake:///"), &host, &open).unwrap();
        assert_eq!(hv.domain_names().len(), 2, "a dry run removes nothing");
        let rep = gc(state.path(), false, Some("fake:///"), &host, &open).unwrap();
        assert_eq!(dry.removed_foreign, rep.removed_foreign);
        assert_eq!(
            rep.removed_foreign[..2],
            [
                "domain reclab-demo-0123abcd-db".to_string(),
                "network reclab-0123abcd-lan".to_string()
            ]
        );
        assert_eq!(rep.removed_foreign.len(), 5, "{rep:?}");
        assert_eq!(
            rep.removed_foreign[2..4],
            [
                "link rv0123abcds0".to_string(),
                "network namespace reclab-0123abcd-lan".to_string()
            ]
        );
        assert!(rep.removed_foreign[4].starts_with("iptables rule -A FORWARD"));
        assert_eq!(hv.domain_names(), vec!["prod-db".to_string()]);
        assert_eq!(hv.network_names(), Vec::<String>::new());
        assert_eq!(host.rules(), vec![]);
        assert_eq!(host.namespaces(), vec!["reclab-99999999-lan".to_string()]);
        assert!(host.links().is_empty(), "{:?}", host.links());
        assert_eq!(
            host.daemons().keys().collect::<Vec<_>>(),
            ["reclab-99999999-lan"]
        );
    }

    #[test]
    fn only_a_uri_without_a_host_is_local() {
        assert!(is_local_uri(""));
        assert!(is_local_uri("qemu:///system"));
        assert!(is_local_uri(
            "qemu:///system?socket=/var/tmp/reclab-dev/sandbox/x/run/libvirt-sock"
        ));
        assert!(!is_local_uri("qemu+ssh://hv1.example/system"));
        assert!(!is_local_uri("qemu+tcp://10.0.0.5/system"));
    }

    #[test]
    fn tagged_names_yield_their_run() {
        assert_eq!(
            tagged_short("reclab-0123abcd-lan").as_deref(),
            Some("0123abcd")
        );
        assert_eq!(tagged_short("reclab-sbx-e2e"), None);
        assert_eq!(tagged_short("prod"), None);
    }

    #[test]
    fn iptables_lines_split_with_quoted_comments() {
        assert_eq!(
            shell_split(r#"INPUT -i rl1s0 -m comment --comment "reclab:0123abcd" -j DROP"#),
            vec![
                "INPUT",
                "-i",
                "rl1s0",
                "-m",
                "comment",
                "--comment",
                "reclab:0123abcd",
                "-j",
                "DROP"
            ]
        );
    }
}
