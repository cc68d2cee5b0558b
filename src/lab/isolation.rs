//! The isolation checks of a running lab: every network isolated, nothing of the host
//! reachable from inside.

use anyhow::{Context, Result, bail};
use std::time::Duration;

use crate::hv::Hypervisor;
use crate::hv::agent;
use crate::lab::host::Host;
use crate::lab::record::RunRecord;
use crate::xml;

/// Static and dynamic isolation checks of a running lab; an error if anything reaches outside.
/// Used after boot by `up` and as the built-in `isolation` check of `verify`.
pub fn verify_isolation(
    rec: &RunRecord,
    hv: &dyn Hypervisor,
    host: &dyn Host,
) -> Result<Vec<String>> {
    let mut found = Vec::new();
    // Only lab interfaces on the bridges: the VMs' taps and reclab's services links.
    let mut ours: Vec<String> = rec
        .segments
        .iter()
        .filter_map(|s| s.services_link.clone())
        .collect();
    for vm in &rec.vms {
        if let Ok(f) = hv
            .domain_xml(&vm.domain, false)
            .and_then(|x| crate::xml::facts::facts(&x))
        {
            ours.extend(f.interfaces.into_iter().filter_map(|i| i.target));
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
    let probes: Vec<String> = host
        .host_addresses()?
        .into_iter()
        .filter(|a| !served.contains(a))
        .collect();
    let Some(prober) = rec.vms.first() else {
        return Ok(found);
    };
    for addr in probes {
        let out = agent::sh(
            hv,
            &prober.domain,
            &format!("ping -c 1 -W 2 {addr}"),
            Duration::from_secs(10),
        )
        .with_context(|| format!("probing {addr} from {}", prober.name))?;
        if out.exit_code == 0 {
            bail!(
                "isolation breach: {} reached hypervisor address {addr} from inside the lab",
                prober.name
            );
        }
        found.push(format!(
            "{} cannot reach hypervisor address {addr}",
            prober.name
        ));
    }
    Ok(found)
}
