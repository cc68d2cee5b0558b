//! The isolation checks of a running lab: every network isolated, nothing of the host
//! reachable from inside.

use anyhow::{Context, Result, bail};
use std::time::Duration;

use crate::hv::Hypervisor;
use crate::hv::agent;
use crate::lab::host::Host;
use crate::lab::record::RunRecord;
use crate::xml;

/// What the isolation checks found: one line per thing checked, and the addresses outside the
/// lab that were probed from inside and did not answer. No probe at all means the dynamic part
/// is not tested (`verify` reports that as an error, never a pass).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Isolation {
    pub found: Vec<String>,
    pub probed: Vec<String>,
}

/// Static and dynamic isolation checks of a running lab; an error if anything reaches outside.
/// Used after boot by `up` and as the built-in `isolation` check of `verify`.
///
/// From inside the lab it pings (a) the hypervisor's IPv4 addresses, except those the lab's
/// own services also hold (a ping there is answered by the services, which proves nothing),
/// and (b) from each VM, the IPv6 link-local address of its own tap on the hypervisor: a tap
/// enslaved to the lab bridge never answers (the bridge takes its frames), an unbridged tap
/// or one on a production bridge does.
pub fn verify_isolation(
    rec: &RunRecord,
    hv: &dyn Hypervisor,
    host: &dyn Host,
) -> Result<Isolation> {
    let mut found = Vec::new();
    // Only lab interfaces on the bridges: the VMs' taps and reclab's services links.
    let mut ours: Vec<String> = rec
        .segments
        .iter()
        .filter_map(|s| s.services_link.clone())
        .collect();
    // Each VM's taps and their MACs, as the running domain says.
    let mut taps: Vec<(&str, &str, String, String)> = Vec::new();
    for vm in &rec.vms {
        if let Ok(f) = hv
            .domain_xml(&vm.domain, false)
            .and_then(|x| crate::xml::facts::facts(&x))
        {
            for i in f.interfaces {
                if let (Some(tap), Some(mac)) = (&i.target, &i.mac) {
                    taps.push((&vm.name, &vm.domain, tap.clone(), mac.to_ascii_lowercase()));
                }
                ours.extend(i.target);
            }
        }
    }
    for s in &rec.segments {
        let live = hv.network_xml(&s.network)?;
        if let Err(problems) = xml::network::check_isolated(&live, &s.bridge) {
            bail!(
                "lab network {} is not isolated: {}",
                s.network,
                problems.join("; ")
            );
        }
        found.push(format!(
            "network {}: no forward, no host address",
            s.network
        ));
        let members = host.bridge_members(&s.bridge)?;
        let foreign: Vec<&String> = members.iter().filter(|m| !ours.contains(m)).collect();
        if !foreign.is_empty() {
            bail!(
                "bridge {} has interfaces that are not the lab's: {foreign:?}",
                s.bridge
            );
        }
        found.push(format!(
            "bridge {}: only lab interfaces ({})",
            s.bridge,
            members.join(", ")
        ));
    }
    // From inside the lab: the hypervisor's own addresses must not answer.
    let served: Vec<String> = rec
        .segments
        .iter()
        .filter_map(|s| s.services_address.clone())
        .collect();
    let mut probes: Vec<Probe> = Vec::new();
    let Some(prober) = rec.vms.first() else {
        return Ok(Isolation {
            found,
            probed: vec![],
        });
    };
    for addr in host.host_addresses()? {
        if served.contains(&addr) {
            found.push(format!(
                "not probed: hypervisor address {addr} (the lab services answer there)"
            ));
            continue;
        }
        probes.push(Probe {
            vm: &prober.name,
            domain: &prober.domain,
            what: format!("hypervisor address {addr}"),
            script: probe_script(&addr.to_string(), false),
        });
    }
    for (vm, domain, tap, mac) in &taps {
        let Some(ll) = host.link_local_address(tap)? else {
            found.push(format!(
                "not probed: tap {tap} of {vm} (it has no IPv6 link-local address)"
            ));
            continue;
        };
        // The guest's interface with that MAC (a tap's MAC differs from its VM's only in the
        // first byte) scopes the link-local address.
        let ifname = format!(
            "$(for i in /sys/class/net/*; do [ \"$(cat $i/address)\" = {mac} ] && echo ${{i##*/}}; done)"
        );
        probes.push(Probe {
            vm,
            domain,
            what: format!("its tap {tap} at {ll}"),
            script: probe_script(&format!("{ll}%{ifname}"), true),
        });
    }
    let mut probed = Vec::new();
    for p in probes {
        let out = agent::sh(hv, p.domain, &p.script, Duration::from_secs(10))
            .with_context(|| format!("probing {} from {}", p.what, p.vm))?;
        match classify(&out) {
            Probed::Reached => bail!(
                "isolation breach: {} reached {} from inside the lab",
                p.vm,
                p.what
            ),
            Probed::Unreached(how) => {
                found.push(format!("{} cannot reach {} ({how})", p.vm, p.what));
                probed.push(p.what);
            }
            Probed::Not(why) => found.push(format!(
                "not probed: {} ({} on {}, exit status {}: {})",
                p.what,
                why,
                p.vm,
                out.exit_code,
                String::from_utf8_lossy(&out.stderr).trim()
            )),
        }
    }
    Ok(Isolation { found, probed })
}

/// The probe of `addr` from inside a guest: one ping where the guest has ping (busybox, most
/// servers); else, where it has bash (a Debian minimal server has no ping), a TCP connect to
/// port 22 through bash's `/dev/tcp`: a refused connection is an answer too (the kernel at
/// `addr` sent a reset), a timeout or "no route to host" (no neighbour answered) is none.
fn probe_script(addr: &str, v6: bool) -> String {
    let ping = if v6 { "ping -6" } else { "ping" };
    format!(
        "if command -v ping >/dev/null 2>&1; then exec {ping} -c 1 -W 2 \"{addr}\"; fi; \
         command -v bash >/dev/null 2>&1 || exit 127; echo {TCP_MARK}; \
         exec timeout 4 bash -c 'exec 3<>\"/dev/tcp/$0/22\"' \"{addr}\""
    )
}

/// What the probe script prints first when it probes by TCP.
const TCP_MARK: &str = "tcp-probe";

/// What one probe found.
#[derive(Debug, PartialEq, Eq)]
enum Probed {
    /// Something at the address answered: isolation is broken.
    Reached,
    /// The probe went out and nothing answered (how it was probed).
    Unreached(&'static str),
    /// Nothing went out (why), so nothing was tested.
    Not(&'static str),
}

fn classify(out: &agent::ExecOutput) -> Probed {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stdout.starts_with(TCP_MARK) {
        return match out.exit_code {
            0 => Probed::Reached,
            _ if stderr.contains("Connection refused") => Probed::Reached,
            124 => Probed::Unreached("tcp connect timed out"),
            _ if stderr.contains("No route to host") => {
                Probed::Unreached("tcp connect: no route to host")
            }
            _ => Probed::Not("tcp connect could not be sent"),
        };
    }
    // Exit status 1 is also busybox's "bad address" or "network unreachable": only a ping that
    // sent its packet and got nothing back counts as probed.
    match out.exit_code {
        0 => Probed::Reached,
        1 if stdout.contains("1 packets transmitted") => Probed::Unreached("ping unanswered"),
        127 => Probed::Not("the guest has neither ping nor bash"),
        _ => Probed::Not("ping sent nothing"),
    }
}

/// One probe from inside the lab.
struct Probe<'a> {
    vm: &'a str,
    domain: &'a str,
    what: String,
    script: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hv::fake::FakeHv;
    use crate::lab::fake::FakeHost;
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD as B64;
    use serde_json::{Value, json};
    use std::sync::{Arc, Mutex};

    const TAP_LL: &str = "fe80::fc54:ff:fe12:3456";

    /// A running one-VM lab on one segment whose services hold 10.20.0.1, as `up` records it.
    fn lab() -> (RunRecord, FakeHv) {
        let rec: RunRecord = serde_json::from_value(json!({
            "schema": 1, "lab": "demo", "run_id": "0123abcd4567ef890123abcd4567ef89",
            "lab_file": "/labs/demo.toml", "uri": "fake:///",
            "created": "2026-12-01T10:00:00Z", "expires": "2026-12-01T18:00:00Z",
            "state": "up", "owner_pid": 1, "owner_start": 0,
            "vms": [{ "name": "db", "domain": "reclab-demo-0123abcd-db", "tier": 1,
                      "macs": ["52:54:00:12:34:56"], "addresses": ["10.20.0.10"],
                      "serial_log": "/tmp/db.log", "console_password": "x" }],
            "networks": ["reclab-0123abcd-lan"],
            "segments": [{ "name": "lan", "network": "reclab-0123abcd-lan",
                           "bridge": "rl0123abcds0", "services_link": null,
                           "services_address": "10.20.0.1" }],
            "fingerprints": [], "changes": []
        }))
        .unwrap();
        let hv = FakeHv::new();
        hv.add_network(
            "<network><name>reclab-0123abcd-lan</name><bridge name='rl0123abcds0'/></network>",
            false,
            true,
        )
        .unwrap();
        hv.add_domain(
            "<domain type='kvm'><name>reclab-demo-0123abcd-db</name><devices>\
             <interface type='network'><mac address='52:54:00:12:34:56'/>\
             <source network='reclab-0123abcd-lan'/><target dev='vnet7'/></interface>\
             </devices></domain>",
            false,
            true,
        )
        .unwrap();
        (rec, hv)
    }

    /// A guest agent whose `ping` exits with `code(script)`; returns the scripts it ran.
    fn guest(hv: &FakeHv, code: fn(&str) -> i64) -> Arc<Mutex<Vec<String>>> {
        let ran: Arc<Mutex<Vec<String>>> = Arc::default();
        let log = ran.clone();
        hv.set_agent(move |_, req| {
            let mut ran = log.lock().unwrap();
            let ret = match req["execute"].as_str().unwrap_or("") {
                "guest-ping" => json!({}),
                "guest-exec" => {
                    ran.push(req["arguments"]["arg"][1].as_str().unwrap().to_string());
                    json!({ "pid": ran.len() })
                }
                "guest-exec-status" => {
                    let pid = req["arguments"]["pid"].as_u64().unwrap() as usize;
                    let code = code(&ran[pid - 1]);
                    // What the guests' busybox ping prints; nothing when it could not send.
                    let out = match code {
                        0 => "1 packets transmitted, 1 packets received, 0% packet loss\n",
                        1 => "1 packets transmitted, 0 packets received, 100% packet loss\n",
                        _ => "",
                    };
                    json!({ "exited": true, "exitcode": code.min(1),
                            "out-data": B64.encode(out), "err-data": B64.encode("ping: bad address") })
                }
                other => anyhow::bail!("the fake guest's agent does not know {other}"),
            };
            Ok::<Value, anyhow::Error>(json!({ "return": ret }))
        });
        ran
    }

    #[test]
    fn with_only_the_services_address_on_the_hypervisor_nothing_is_probed() {
        let (rec, hv) = lab();
        let ran = guest(&hv, |_| 1);
        let host = FakeHost::new();
        host.set_addresses(&["10.20.0.1"]);
        let got = verify_isolation(&rec, &hv, &host).unwrap();
        assert_eq!(got.probed, Vec::<String>::new());
        assert!(ran.lock().unwrap().is_empty(), "{:?}", ran.lock().unwrap());
        assert!(
            got.found.contains(
                &"not probed: hypervisor address 10.20.0.1 (the lab services answer there)"
                    .to_string()
            ),
            "{:?}",
            got.found
        );
        assert!(
            got.found
                .iter()
                .any(|l| l.starts_with("not probed: tap vnet7 of db")),
            "{:?}",
            got.found
        );
    }

    #[test]
    fn each_vm_pings_the_link_local_address_of_its_own_tap() {
        let (rec, hv) = lab();
        let ran = guest(&hv, |_| 1);
        let host = FakeHost::new();
        host.set_addresses(&["10.20.0.1", "10.99.0.1"]);
        host.set_link_local("vnet7", TAP_LL);
        let got = verify_isolation(&rec, &hv, &host).unwrap();
        assert_eq!(
            got.probed,
            vec![
                "hypervisor address 10.99.0.1".to_string(),
                format!("its tap vnet7 at {TAP_LL}")
            ]
        );
        assert!(got.found.contains(&format!(
            "db cannot reach its tap vnet7 at {TAP_LL} (ping unanswered)"
        )));
        let ran = ran.lock().unwrap();
        assert!(
            ran[0].contains("exec ping -c 1 -W 2 \"10.99.0.1\""),
            "{}",
            ran[0]
        );
        assert!(
            ran[1].contains(&format!("exec ping -6 -c 1 -W 2 \"{TAP_LL}%$(")),
            "{}",
            ran[1]
        );
        assert!(ran[1].contains("= 52:54:00:12:34:56 ]"), "{}", ran[1]);
    }

    #[test]
    fn a_tap_that_answers_is_a_breach() {
        let (rec, hv) = lab();
        guest(&hv, |script| if script.contains("-6") { 0 } else { 1 });
        let host = FakeHost::new();
        host.set_link_local("vnet7", TAP_LL);
        let err = verify_isolation(&rec, &hv, &host).unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            format!("isolation breach: db reached its tap vnet7 at {TAP_LL} from inside the lab")
        );
    }

    #[test]
    fn a_ping_that_sent_nothing_probes_nothing() {
        let (rec, hv) = lab();
        guest(&hv, |_| 2);
        let host = FakeHost::new();
        host.set_link_local("vnet7", TAP_LL);
        let got = verify_isolation(&rec, &hv, &host).unwrap();
        assert_eq!(got.probed, Vec::<String>::new());
        assert!(
            got.found.iter().any(|l| l.starts_with(&format!(
                "not probed: its tap vnet7 at {TAP_LL} (ping sent nothing on db, exit status 1: \
                 ping: bad address)"
            ))),
            "{:?}",
            got.found
        );
    }

    /// A guest without ping (a Debian minimal server): the probe script says it probes by TCP,
    /// then bash exits with `code` and says `err`.
    fn guest_without_ping(hv: &FakeHv, code: i64, err: &'static str) {
        let ran: Arc<Mutex<Vec<String>>> = Arc::default();
        hv.set_agent(move |_, req| {
            let mut ran = ran.lock().unwrap();
            let ret = match req["execute"].as_str().unwrap_or("") {
                "guest-ping" => json!({}),
                "guest-exec" => {
                    ran.push(req["arguments"]["arg"][1].as_str().unwrap().to_string());
                    json!({ "pid": ran.len() })
                }
                "guest-exec-status" => json!({ "exited": true, "exitcode": code,
                    "out-data": B64.encode(format!("{TCP_MARK}\n")), "err-data": B64.encode(err) }),
                other => anyhow::bail!("the fake guest's agent does not know {other}"),
            };
            Ok::<Value, anyhow::Error>(json!({ "return": ret }))
        });
    }

    #[test]
    fn without_ping_a_tcp_connect_that_times_out_or_finds_no_route_is_a_probe() {
        for (code, err, how) in [
            (124, "", "tcp connect timed out"),
            (
                1,
                "bash: connect: No route to host",
                "tcp connect: no route to host",
            ),
        ] {
            let (rec, hv) = lab();
            guest_without_ping(&hv, code, err);
            let host = FakeHost::new();
            host.set_addresses(&["10.20.0.1"]);
            host.set_link_local("vnet7", TAP_LL);
            let got = verify_isolation(&rec, &hv, &host).unwrap();
            assert_eq!(got.probed, vec![format!("its tap vnet7 at {TAP_LL}")]);
            assert!(
                got.found.contains(&format!(
                    "db cannot reach its tap vnet7 at {TAP_LL} ({how})"
                )),
                "{:?}",
                got.found
            );
        }
    }

    #[test]
    fn without_ping_a_refused_tcp_connect_is_an_answer_and_a_breach() {
        let (rec, hv) = lab();
        guest_without_ping(&hv, 1, "bash: connect: Connection refused");
        let host = FakeHost::new();
        host.set_addresses(&["10.20.0.1"]);
        host.set_link_local("vnet7", TAP_LL);
        let err = verify_isolation(&rec, &hv, &host).unwrap_err();
        assert!(format!("{err:#}").starts_with("isolation breach: db reached its tap vnet7"));
    }

    #[test]
    fn without_ping_a_tcp_connect_that_could_not_be_sent_probes_nothing() {
        let (rec, hv) = lab();
        guest_without_ping(&hv, 1, "bash: connect: Network is unreachable");
        let host = FakeHost::new();
        host.set_addresses(&["10.20.0.1"]);
        host.set_link_local("vnet7", TAP_LL);
        let got = verify_isolation(&rec, &hv, &host).unwrap();
        assert!(got.probed.is_empty(), "{:?}", got.probed);
    }
}
