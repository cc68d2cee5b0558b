//! Network-level pieces of a lab segment that libvirt does not provide:
//!
//! - **Hardening** of the lab bridge in reclab's own namespace: no IPv6 link-local address, no
//!   ARP answers for the host's addresses, and firewall rules that drop anything arriving from
//!   the bridge for the host, so a restored (untrusted) guest cannot reach the hypervisor.
//! - **Lab services**: DNS with the production hostnames and DHCP reservations, answered at the
//!   production gateway/DNS address by a dnsmasq in a per-segment network namespace joined to
//!   the bridge by a veth. The host gets no address on the segment and dnsmasq has no upstream
//!   resolver (`no-resolv`), so no query ever leaves the lab.

pub mod connect;
pub mod rules;

use anyhow::{Context, Result};
use std::path::PathBuf;

use crate::lab::host::Host;
use crate::lab::journal::RunDir;
use crate::lab::record::Resource;
use crate::lab::services::rules::{INNER_LINK, ServicesPlan, dnsmasq_conf, hardening_rules};

/// Harden a lab bridge that libvirt has just created: journal and insert the firewall rules,
/// switch off IPv6 and ARP answers on the bridge.
pub fn harden_bridge(host: &dyn Host, dir: &RunDir, bridge: &str, tag: &str) -> Result<()> {
    for r in hardening_rules(bridge, tag) {
        dir.journal(&r)?;
        if let Resource::Firewall {
            program,
            chain,
            rule,
        } = &r
        {
            host.firewall_insert(program, chain, rule)
                .with_context(|| format!("isolating bridge {bridge}"))?;
        }
    }
    host.quiet_bridge(bridge)
}

/// Start a segment's lab services. Every resource is journaled before it is created.
pub fn start(host: &dyn Host, dir: &RunDir, p: &ServicesPlan) -> Result<()> {
    let ns = p.netns.as_str();
    dir.journal(&Resource::Netns { name: ns.into() })?;
    host.netns_add(ns)?;

    dir.journal(&Resource::Link {
        name: p.link.clone(),
    })?;
    let cidr = format!("{}/{}", p.address, p.prefix);
    host.veth_add(&p.link, &p.bridge, ns, INNER_LINK, &cidr)
        .with_context(|| format!("creating veth {} for lab services of {}", p.link, p.segment))?;

    let (conf, hosts) = dnsmasq_conf(p, &dir.path);
    let conf_path = dir.file(&format!("services-{}.conf", p.segment));
    std::fs::write(&conf_path, conf).with_context(|| format!("writing {}", conf_path.display()))?;
    let hosts_path = dir.file(&format!("services-{}.hosts", p.segment));
    std::fs::write(&hosts_path, hosts)
        .with_context(|| format!("writing {}", hosts_path.display()))?;
    let pidfile: PathBuf = dir.file(&format!("services-{}.pid", p.segment));
    dir.journal(&Resource::Process {
        pidfile: pidfile.clone(),
        netns: ns.into(),
    })?;
    host.start_dnsmasq(ns, &conf_path)
        .with_context(|| format!("starting lab services (dnsmasq) for segment {}", p.segment))?;
    Ok(())
}
