//! `[segment.NAME]` and `[segment.NAME.services]`.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use toml::Spanned;

use crate::spec::model::{Ipv4Cidr, MAX_SEGMENT_NAME, SegmentSpec, ServicesSpec};
use crate::spec::problems::{Problems, join_key};
use crate::spec::wire::{Text, WireSegment, WireServices};

use super::fields::{parse_ipv4, plain_name, valid_dns_name, valid_name};

const SEGMENT_NAME_RULE: &str = "use 1 to 8 characters: a lowercase letter, then lowercase letters or digits (the segment name goes into the lab bridge name, and Linux limits interface names to 15 characters)";

/// Why a services address such as `10.20.0.1/24` is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum CidrError {
    #[error("{text:?} has no prefix length; write the address in CIDR form, like \"10.20.0.1/24\"")]
    NoPrefix { text: String },
    #[error(
        "{address:?} is not an IPv4 address; write the address in CIDR form, like \"10.20.0.1/24\""
    )]
    Address { address: String },
    #[error("prefix length {prefix:?} is not usable; use 1 to 30 so the subnet has host addresses")]
    Prefix { prefix: String },
    #[error(
        "{} is the network address of {}/{}; give the host address the lab services answer at (usually the production gateway or DNS server)",
        .0.address, .0.network(), .0.prefix
    )]
    Network(Ipv4Cidr),
    #[error(
        "{} is the broadcast address of {}/{}; give the host address the lab services answer at (usually the production gateway or DNS server)",
        .0.address, .0.network(), .0.prefix
    )]
    Broadcast(Ipv4Cidr),
}

/// A host address with its prefix length, `10.20.0.1/24`.
fn parse_cidr(text: &str) -> Result<Ipv4Cidr, CidrError> {
    let Some((address, prefix)) = text.split_once('/') else {
        return Err(CidrError::NoPrefix { text: text.into() });
    };
    let Ok(address) = address.parse::<Ipv4Addr>() else {
        return Err(CidrError::Address {
            address: address.into(),
        });
    };
    let prefix: u8 = match prefix.parse() {
        Ok(p @ 1..=30) => p,
        _ => {
            return Err(CidrError::Prefix {
                prefix: prefix.into(),
            });
        }
    };
    let cidr = Ipv4Cidr { address, prefix };
    if address == cidr.network() {
        return Err(CidrError::Network(cidr));
    }
    if address == cidr.broadcast() {
        return Err(CidrError::Broadcast(cidr));
    }
    Ok(cidr)
}

/// Checks the segments; the flag says whether all of them are valid.
pub(super) fn validate_segments(
    wire: &[(Text, Spanned<WireSegment>)],
    problems: &mut Problems,
) -> (Vec<SegmentSpec>, bool) {
    let several = wire.len() > 1;
    // Production name -> (segment, field) of its first use.
    let mut owners: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut all_ok = true;
    let mut segments = Vec::new();
    for (name, segment) in wire {
        let (spec, ok) = validate_segment(name, segment, several, &mut owners, problems);
        // Invalid segments still go into the list so that VM checks can name them.
        all_ok &= ok;
        segments.push(spec);
    }
    (segments, all_ok)
}

/// One segment, and whether it is valid.
fn validate_segment(
    name: &Text,
    wire: &Spanned<WireSegment>,
    several: bool,
    owners: &mut BTreeMap<String, (String, String)>,
    problems: &mut Problems,
) -> (SegmentSpec, bool) {
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
    let segment = wire.get_ref();
    ok &= production_listed(problems, name, wire, several, &field);
    let (production, production_ok) = production(problems, name, segment, owners, &field);
    ok &= production_ok;
    let services = segment.services.as_ref().and_then(|services| {
        let result = validate_services(services, &format!("{field}.services"), problems);
        ok &= result.is_some();
        result
    });
    let (hosts, hosts_ok) = hosts(problems, segment, services.as_ref(), &field);
    ok &= hosts_ok;
    let spec = SegmentSpec {
        name: name.get_ref().clone(),
        production,
        hosts,
        services,
    };
    (spec, ok)
}

/// With more than one segment, each must list its production networks.
fn production_listed(
    problems: &mut Problems,
    name: &Text,
    wire: &Spanned<WireSegment>,
    several: bool,
    field: &str,
) -> bool {
    if !several {
        return true;
    }
    let span = match &wire.get_ref().production {
        None => name.span(),
        Some(list) if list.is_empty() => wire.span(),
        Some(_) => return true,
    };
    let what = if wire.get_ref().production.is_none() {
        "missing production networks"
    } else {
        "empty production list"
    };
    problems.at(
        span,
        format!("{field}.production"),
        format!(
            "{what}; with more than one segment, list the production libvirt networks or bridges whose interfaces land here, like production = [\"prod\"]"
        ),
    );
    false
}

/// `production`: network or bridge names, each mapped to one segment only.
fn production(
    problems: &mut Problems,
    name: &Text,
    segment: &WireSegment,
    owners: &mut BTreeMap<String, (String, String)>,
    field: &str,
) -> (Vec<String>, bool) {
    let mut ok = true;
    let mut production = Vec::new();
    for (i, entry) in segment.production.iter().flatten().enumerate() {
        let entry_field = format!("{field}.production[{i}]");
        let Some(network) = plain_name(problems, entry, &entry_field, "production network") else {
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
    (production, ok)
}

/// `hosts`: DNS names with addresses, inside the services subnet if there is one.
fn hosts(
    problems: &mut Problems,
    segment: &WireSegment,
    services: Option<&ServicesSpec>,
    field: &str,
) -> (BTreeMap<String, Ipv4Addr>, bool) {
    let mut ok = true;
    let mut hosts = BTreeMap::new();
    for (host, address) in segment.hosts.iter().flatten() {
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
        if let Some(services) = services
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
    (hosts, ok)
}

fn validate_services(
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
    let address = services_address(problems, wire, &format!("{field}.address"));
    let domain = domain(problems, &services.domain, &format!("{field}.domain"));
    let dhcp_range = match &services.dhcp_range {
        None => Some(None),
        Some(range) => dhcp_range(
            problems,
            range,
            &format!("{field}.dhcp_range"),
            dhcp,
            address,
        )
        .map(Some),
    };
    let address = address?;
    if !ok {
        return None;
    }
    Some(ServicesSpec {
        address,
        dns,
        dhcp,
        dhcp_range: dhcp_range?,
        domain: domain?,
    })
}

/// `services.address`: the address the services answer at, with the subnet's prefix.
fn services_address(
    problems: &mut Problems,
    wire: &Spanned<WireServices>,
    field: &str,
) -> Option<Ipv4Cidr> {
    let Some(text) = &wire.get_ref().address else {
        problems.at(
            wire.span(),
            field,
            "missing services address; give the production gateway or DNS address with its prefix, like address = \"10.20.0.1/24\"",
        );
        return None;
    };
    match parse_cidr(text.get_ref().trim()) {
        Ok(cidr) => Some(cidr),
        Err(err) => {
            problems.at(text.span(), field, err.to_string());
            None
        }
    }
}

/// `services.domain`: a DNS domain, without the trailing dot.
fn domain(problems: &mut Problems, value: &Option<Text>, field: &str) -> Option<Option<String>> {
    let Some(domain) = value else {
        return Some(None);
    };
    if !valid_dns_name(domain.get_ref()) {
        problems.at(
            domain.span(),
            field,
            format!(
                "{:?} is not a valid domain name; use letters, digits and '-' in dot-separated labels, like \"prod.example\"",
                domain.get_ref()
            ),
        );
        return None;
    }
    Some(Some(domain.get_ref().trim_end_matches('.').to_string()))
}

/// `services.dhcp_range`: two host addresses of the subnet, low first, around neither the
/// services address; only with `dhcp = true`.
fn dhcp_range(
    problems: &mut Problems,
    range: &Spanned<Vec<Text>>,
    field: &str,
    dhcp: bool,
    address: Option<Ipv4Cidr>,
) -> Option<(Ipv4Addr, Ipv4Addr)> {
    let mut ok = true;
    if !dhcp {
        problems.at(
            range.span(),
            field,
            "a dhcp range needs dhcp = true in the same services table; enable dhcp or remove the range",
        );
        ok = false;
    }
    let [start, end] = range.get_ref().as_slice() else {
        problems.at(
            range.span(),
            field,
            "a dhcp range is two addresses, like dhcp_range = [\"10.20.0.100\", \"10.20.0.199\"]",
        );
        return None;
    };
    let start_ip = parse_ipv4(problems, start, &format!("{field}[0]"));
    let end_ip = parse_ipv4(problems, end, &format!("{field}[1]"));
    let (start_ip, end_ip) = (start_ip?, end_ip?);
    if u32::from(start_ip) > u32::from(end_ip) {
        problems.at(
            range.span(),
            field,
            format!(
                "range starts at {start_ip} after it ends at {end_ip}; put the lower address first"
            ),
        );
        ok = false;
    }
    if let Some(address) = address {
        ok &= range_in_subnet(
            problems,
            range,
            [(start_ip, start), (end_ip, end)],
            address,
            field,
        );
    }
    ok.then_some((start_ip, end_ip))
}

/// Both ends are host addresses of the services subnet, and the range leaves out the
/// services address.
fn range_in_subnet(
    problems: &mut Problems,
    range: &Spanned<Vec<Text>>,
    ends: [(Ipv4Addr, &Text); 2],
    address: Ipv4Cidr,
    field: &str,
) -> bool {
    let mut ok = true;
    for (i, (ip, at)) in ends.into_iter().enumerate() {
        if !address.contains(ip) || ip == address.network() || ip == address.broadcast() {
            problems.at(
                at.span(),
                format!("{field}[{i}]"),
                format!(
                    "{ip} is not a host address of the services subnet {}/{}; keep the range inside it",
                    address.network(),
                    address.prefix
                ),
            );
            ok = false;
        }
    }
    let (low, high) = (u32::from(ends[0].0), u32::from(ends[1].0));
    if (low..=high).contains(&u32::from(address.address)) {
        problems.at(
            range.span(),
            field,
            format!(
                "the range includes the services address {}; start the range above it or end it below",
                address.address
            ),
        );
        ok = false;
    }
    ok
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
        assert!(matches!(
            parse_cidr("10.20.0.1/31"),
            Err(CidrError::Prefix { .. })
        ));
        assert!(matches!(
            parse_cidr("10.20.0.1/0"),
            Err(CidrError::Prefix { .. })
        ));
        assert!(matches!(
            parse_cidr("10.20.0.1/x"),
            Err(CidrError::Prefix { .. })
        ));
        assert!(matches!(
            parse_cidr("10.20.0/24"),
            Err(CidrError::Address { .. })
        ));
        assert!(matches!(
            parse_cidr("10.20.0.1"),
            Err(CidrError::NoPrefix { .. })
        ));
        assert!(matches!(
            parse_cidr("10.20.0.0/24"),
            Err(CidrError::Network { .. })
        ));
        assert!(matches!(
            parse_cidr("10.20.0.255/24"),
            Err(CidrError::Broadcast { .. })
        ));
    }
}
