//! `[segment.NAME]` and `[segment.NAME.services]`.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use toml::Spanned;

use crate::spec::model::{Ipv4Cidr, MAX_SEGMENT_NAME, SegmentSpec, ServicesSpec};
use crate::spec::problems::{Problems, join_key};
use crate::spec::wire::{Text, WireSegment, WireServices};

use super::fields::{parse_ipv4, plain_name, valid_dns_name, valid_name};

const SEGMENT_NAME_RULE: &str = "use 1 to 8 characters: a lowercase letter, then lowercase letters or digits (the segment name goes into the lab bridge name, and Linux limits interface names to 15 characters)";

pub(super) fn parse_cidr(text: &str) -> Result<Ipv4Cidr, String> {
    let Some((address, prefix)) = text.split_once('/') else {
        return Err(format!(
            "{text:?} has no prefix length; write the address in CIDR form, like \"10.20.0.1/24\""
        ));
    };
    let address: Ipv4Addr = address.parse().map_err(|_| {
        format!("{address:?} is not an IPv4 address; write the address in CIDR form, like \"10.20.0.1/24\"")
    })?;
    let prefix: u8 = match prefix.parse() {
        Ok(p @ 1..=30) => p,
        _ => {
            return Err(format!(
                "prefix length {prefix:?} is not usable; use 1 to 30 so the subnet has host addresses"
            ));
        }
    };
    let cidr = Ipv4Cidr { address, prefix };
    if address == cidr.network() {
        return Err(format!(
            "{address} is the network address of {}/{prefix}; give the host address the lab services answer at (usually the production gateway or DNS server)",
            cidr.network()
        ));
    }
    if address == cidr.broadcast() {
        return Err(format!(
            "{address} is the broadcast address of {}/{prefix}; give the host address the lab services answer at (usually the production gateway or DNS server)",
            cidr.network()
        ));
    }
    Ok(cidr)
}

/// Checks the segments; the flag says whether all of them are valid.
pub(super) fn validate_segments(
    wire: &[(Text, Spanned<WireSegment>)],
    problems: &mut Problems,
) -> (Vec<SegmentSpec>, bool) {
    let mut all_ok = true;
    let several = wire.len() > 1;
    // Production name -> (segment, field) of its first use.
    let mut owners: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut segments = Vec::new();
    for (name, segment) in wire {
        let field = join_key("segment", name.get_ref());
        let mut ok = true;
        if !valid_name(name.get_ref(), MAX_SEGMENT_NAME, false) {
            problems.at(
                name.span(),
                &field,
                format!(
                    "{:?} is not a valid segment name; {SEGMENT_NAME_RULE}",
                    name.get_ref()
                ),
            );
            ok = false;
        }
        let wire_segment = segment.get_ref();

        let mut production = Vec::new();
        match &wire_segment.production {
            None if several => {
                problems.at(
                    name.span(),
                    format!("{field}.production"),
                    "missing production networks; with more than one segment, list the production libvirt networks or bridges whose interfaces land here, like production = [\"prod\"]",
                );
                ok = false;
            }
            Some(list) if list.is_empty() && several => {
                problems.at(
                    segment.span(),
                    format!("{field}.production"),
                    "empty production list; with more than one segment, list the production libvirt networks or bridges whose interfaces land here, like production = [\"prod\"]",
                );
                ok = false;
            }
            _ => {}
        }
        for (i, entry) in wire_segment.production.iter().flatten().enumerate() {
            let entry_field = format!("{field}.production[{i}]");
            let Some(network) = plain_name(problems, entry, &entry_field, "production network")
            else {
                ok = false;
                continue;
            };
            if let Some((owner, owner_field)) = owners.get(&network) {
                let message = if *owner == *name.get_ref() {
                    format!(
                        "production network {network:?} is listed twice (also at {owner_field}); list it once"
                    )
                } else {
                    format!(
                        "production network {network:?} is already mapped to segment {owner:?} ({owner_field}); an interface can land in only one segment, so remove one of them"
                    )
                };
                problems.at(entry.span(), entry_field, message);
                ok = false;
                continue;
            }
            owners.insert(network.clone(), (name.get_ref().clone(), entry_field));
            production.push(network);
        }

        let services = match &wire_segment.services {
            None => None,
            Some(services) => {
                let result = validate_services(services, &format!("{field}.services"), problems);
                ok &= result.is_some();
                result
            }
        };

        let mut hosts = BTreeMap::new();
        for (host, address) in wire_segment.hosts.iter().flatten() {
            let host_field = join_key(&format!("{field}.hosts"), host.get_ref());
            if !valid_dns_name(host.get_ref()) {
                problems.at(
                    host.span(),
                    &host_field,
                    format!(
                        "{:?} is not a valid host name; use letters, digits and '-' in dot-separated labels, like \"db.prod.example\"",
                        host.get_ref()
                    ),
                );
                ok = false;
            }
            let Some(ip) = parse_ipv4(problems, address, &host_field) else {
                ok = false;
                continue;
            };
            if let Some(services) = &services
                && !services.address.contains(ip)
            {
                problems.at(
                    address.span(),
                    &host_field,
                    format!(
                        "{ip} is outside the services subnet {}/{}; fix the address, or the services prefix if the production subnet is larger",
                        services.address.network(),
                        services.address.prefix
                    ),
                );
                ok = false;
            }
            hosts.insert(host.get_ref().trim_end_matches('.').to_string(), ip);
        }

        // Invalid segments still go into the list so that VM checks can name them.
        all_ok &= ok;
        segments.push(SegmentSpec {
            name: name.get_ref().clone(),
            production,
            hosts,
            services,
        });
    }
    (segments, all_ok)
}

pub(super) fn validate_services(
    wire: &Spanned<WireServices>,
    field: &str,
    problems: &mut Problems,
) -> Option<ServicesSpec> {
    let services = wire.get_ref();
    let dns = services.dns.unwrap_or(true);
    let dhcp = services.dhcp.unwrap_or(false);
    let mut ok = true;
    if !dns && !dhcp {
        problems.at(
            wire.span(),
            field,
            "services with neither dns nor dhcp do nothing; set dns = true or dhcp = true, or remove the services table",
        );
        ok = false;
    }
    let address = match &services.address {
        None => {
            problems.at(
                wire.span(),
                format!("{field}.address"),
                "missing services address; give the production gateway or DNS address with its prefix, like address = \"10.20.0.1/24\"",
            );
            None
        }
        Some(text) => match parse_cidr(text.get_ref().trim()) {
            Ok(cidr) => Some(cidr),
            Err(message) => {
                problems.at(text.span(), format!("{field}.address"), message);
                None
            }
        },
    };
    let domain = match &services.domain {
        None => None,
        Some(domain) if !valid_dns_name(domain.get_ref()) => {
            problems.at(
                domain.span(),
                format!("{field}.domain"),
                format!(
                    "{:?} is not a valid domain name; use letters, digits and '-' in dot-separated labels, like \"prod.example\"",
                    domain.get_ref()
                ),
            );
            ok = false;
            None
        }
        Some(domain) => Some(domain.get_ref().trim_end_matches('.').to_string()),
    };
    let mut dhcp_range = None;
    if let Some(range) = &services.dhcp_range {
        let range_field = format!("{field}.dhcp_range");
        if !dhcp {
            problems.at(
                range.span(),
                &range_field,
                "a dhcp range needs dhcp = true in the same services table; enable dhcp or remove the range",
            );
            ok = false;
        }
        match range.get_ref().as_slice() {
            [start, end] => {
                let start_ip = parse_ipv4(problems, start, &format!("{range_field}[0]"));
                let end_ip = parse_ipv4(problems, end, &format!("{range_field}[1]"));
                match (start_ip, end_ip) {
                    (Some(start_ip), Some(end_ip)) => {
                        if u32::from(start_ip) > u32::from(end_ip) {
                            problems.at(
                                range.span(),
                                &range_field,
                                format!(
                                    "range starts at {start_ip} after it ends at {end_ip}; put the lower address first"
                                ),
                            );
                            ok = false;
                        }
                        if let Some(address) = address {
                            for (i, (ip, at)) in
                                [(start_ip, start), (end_ip, end)].into_iter().enumerate()
                            {
                                if !address.contains(ip)
                                    || ip == address.network()
                                    || ip == address.broadcast()
                                {
                                    problems.at(
                                        at.span(),
                                        format!("{range_field}[{i}]"),
                                        format!(
                                            "{ip} is not a host address of the services subnet {}/{}; keep the range inside it",
                                            address.network(),
                                            address.prefix
                                        ),
                                    );
                                    ok = false;
                                }
                            }
                            let (low, high) = (u32::from(start_ip), u32::from(end_ip));
                            if (low..=high).contains(&u32::from(address.address)) {
                                problems.at(
                                    range.span(),
                                    &range_field,
                                    format!(
                                        "the range includes the services address {}; start the range above it or end it below",
                                        address.address
                                    ),
                                );
                                ok = false;
                            }
                        }
                        dhcp_range = Some((start_ip, end_ip));
                    }
                    _ => ok = false,
                }
            }
            _ => {
                problems.at(
                    range.span(),
                    &range_field,
                    "a dhcp range is two addresses, like dhcp_range = [\"10.20.0.100\", \"10.20.0.199\"]",
                );
                ok = false;
            }
        }
    }
    let address = address?;
    ok.then_some(ServicesSpec {
        address,
        dns,
        dhcp,
        dhcp_range,
        domain,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_arithmetic() {
        let cidr = parse_cidr("10.20.0.1/24").unwrap();
        assert_eq!(cidr.to_string(), "10.20.0.1/24");
        assert_eq!(cidr.network(), Ipv4Addr::new(10, 20, 0, 0));
        assert_eq!(cidr.broadcast(), Ipv4Addr::new(10, 20, 0, 255));
        assert_eq!(cidr.netmask(), Ipv4Addr::new(255, 255, 255, 0));
        assert!(cidr.contains(Ipv4Addr::new(10, 20, 0, 200)));
        assert!(!cidr.contains(Ipv4Addr::new(10, 20, 1, 1)));
        let wide = parse_cidr("172.16.5.4/12").unwrap();
        assert_eq!(wide.network(), Ipv4Addr::new(172, 16, 0, 0));
        assert!(parse_cidr("10.20.0.1/31").is_err());
        assert!(parse_cidr("10.20.0.1/0").is_err());
        assert!(parse_cidr("10.20.0.1/x").is_err());
        assert!(parse_cidr("10.20.0/24").is_err());
    }
}
