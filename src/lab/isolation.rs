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
            script: format!("ping -c 1 -W 2 {addr}"),
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
            script: format!("ping -6 -c 1 -W 2 \"{ll}%{ifname}\""),
        });
    }
    let mut probed = Vec::new();
    for p in probes {
        let out = agent::sh(hv, p.domain, &p.script, Duration::from_secs(10))
            .with_context(|| format!("probing {} from {}", p.what, p.vm))?;
        // Exit status 1 is also busybox's "bad address" or "network unreachable": only a ping
        // that sent its packet and got nothing back counts as probed.
        let sent = String::from_utf8_lossy(&out.stdout).contains("1 packets transmitted");
        match out.exit_code {
            0 => bail!(
                "isolation breach: {} reached {} from inside the lab",
                p.vm,
                p.what
            ),
            1 if sent => {
                found.push(format!("{} cannot reach {}", p.vm, p.what));
                probed.push(p.what);
            }
            code => found.push(format!(
                "not probed: {} (ping on {} sent nothing, exit status {code}: {})",
                p.what,
                p.vm,
                String::from_utf8_lossy(&out.stderr).trim()
            )),
        }
    }
    Ok(Isolation { found, probed })
}

/// One ping from inside the lab.
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
        assert!(
            got.found
                .contains(&format!("db cannot reach its tap vnet7 at {TAP_LL}"))
        );
        let ran = ran.lock().unwrap();
        assert_eq!(ran[0], "ping -c 1 -W 2 10.99.0.1");
        assert!(
            ran[1].starts_with(&format!("ping -6 -c 1 -W 2 \"{TAP_LL}%$(")),
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
                "not probed: its tap vnet7 at {TAP_LL} (ping on db sent nothing, exit status 1: \
                 ping: bad address)"
            ))),
            "{:?}",
            got.found
        );
    }
}
