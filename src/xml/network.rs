//! The lab network: an isolated libvirt bridge, and the check that a live network still is one.
//! Pure: no IO.
//!
//! A lab network is pure layer 2. It has no `<forward>` (any forward mode connects to the LAN),
//! no `<ip>` (that would give the hypervisor an address on the lab bridge, start dnsmasq, and
//! offer the host's DNS and SSH to restored, untrusted guests) and no `<dns>` (it would forward
//! unknown names to the host's resolver). DHCP and DNS, if the lab needs them, come from cloned
//! production servers on the segment.
//!
//! # Ownership
//!
//! libvirt 9.0 has no `<metadata>` for networks, so reclab recognises its networks by name
//! prefix (the plan derives every name from the run id) and by bridge name, never by a tag in
//! the XML.

use anyhow::{Result, bail};
use quick_xml::escape::escape;

use super::tree::{self, Elem};

/// The longest bridge name Linux accepts (`IFNAMSIZ` is 16 including the terminating NUL).
pub const MAX_BRIDGE_NAME: usize = 15;

/// The XML namespace of dnsmasq passthrough options in network XML.
pub const DNSMASQ_NS: &str = "http://libvirt.org/schemas/network/dnsmasq/1.0";

/// The XML of an isolated, address-less lab network on bridge `bridge`.
pub fn isolated_network_xml(name: &str, bridge: &str, uuid: &str) -> String {
    format!(
        "<network>\n  <name>{}</name>\n  <uuid>{}</uuid>\n  <bridge name='{}' stp='off' delay='0'/>\n</network>\n",
        escape(name),
        escape(uuid),
        escape(bridge)
    )
}

/// Checks that a bridge name fits Linux (at most 15 characters) and uses only ASCII letters,
/// digits, `-` and `_`.
pub fn validate_bridge_name(name: &str) -> Result<()> {
    if name.is_empty() {
        bail!("bridge name is empty");
    }
    if name.len() > MAX_BRIDGE_NAME {
        bail!(
            "bridge name '{name}' has {} characters, linux allows at most {MAX_BRIDGE_NAME}",
            name.len()
        );
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        bail!("bridge name '{name}' contains '{bad}', use only letters, digits, '-' and '_'");
    }
    Ok(())
}

/// Re-reads the XML of a live network and lists every way it is not an isolated lab network
/// on `expected_bridge`. An empty list means isolated.
pub fn check_isolated(live_xml: &str, expected_bridge: &str) -> Result<(), Vec<String>> {
    let doc = match tree::parse(live_xml) {
        Ok(doc) => doc,
        Err(err) => return Err(vec![format!("cannot parse the network xml: {err:#}")]),
    };
    let net = &doc.root;
    if net.name() != "network" {
        return Err(vec![format!(
            "expected a <network>, found <{}>",
            net.name()
        )]);
    }
    let mut problems = Vec::new();
    let name = net.child("name").map(Elem::text).unwrap_or_default();
    let mut problem = |p: String| problems.push(format!("network '{name}' {p}"));
    match net.child("bridge").and_then(|b| b.attr("name")) {
        None => problem("has no bridge".to_string()),
        Some(bridge) if bridge != expected_bridge => problem(format!(
            "uses bridge '{bridge}' instead of '{expected_bridge}'"
        )),
        Some(_) => {}
    }
    for child in net.elems() {
        match child.name().as_str() {
            "forward" => problem(format!(
                "has <forward mode='{}'>: the lab would reach outside",
                child.attr("mode").unwrap_or_else(|| "nat".to_string())
            )),
            "ip" => problem(format!(
                "has <ip address='{}'>: the host would have an address on the lab bridge",
                child.attr("address").unwrap_or_default()
            )),
            "route" => problem("has a <route>: the host would route lab traffic".to_string()),
            "virtualport" => problem(format!(
                "has <virtualport type='{}'>: the bridge is not a plain linux bridge",
                child.attr("type").unwrap_or_default()
            )),
            "dns" => {
                if child.elems().any(|e| e.name() == "forwarder") {
                    problem("has dns <forwarder>s: names would be resolved outside".to_string());
                }
                if child.attr("forwardPlainNames").as_deref() == Some("yes") {
                    problem("forwards plain dns names outside".to_string());
                }
            }
            "portgroup" if child.child("virtualport").is_some() => problem(format!(
                "has <portgroup name='{}'> with a <virtualport>",
                child.attr("name").unwrap_or_default()
            )),
            _ => {}
        }
        if child.local_name() == "options"
            && child.namespace(&net.ns_decls()).as_deref() == Some(DNSMASQ_NS)
        {
            problem("passes raw options to dnsmasq".to_string());
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_network_passes_its_own_check() {
        let xml = isolated_network_xml(
            "reclab-1a2b3c4d-lan",
            "rl1a2b3c4d0",
            "0f0e0d0c-0b0a-4908-8706-050403020100",
        );
        assert_eq!(check_isolated(&xml, "rl1a2b3c4d0"), Ok(()));
    }
}
