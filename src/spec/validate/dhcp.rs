//! `vm.dhcp`: reservations answered by a segment's lab services.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use toml::Spanned;

use crate::spec::model::{DhcpReservation, MacAddr, SegmentSpec};
use crate::spec::problems::{Problems, list, suggestion};
use crate::spec::wire::{WireDhcp, WireLab};

use super::fields::parse_ipv4;
use super::vm::PartialVm;

pub(super) fn validate_dhcp(
    wire: &Spanned<WireDhcp>,
    field: &str,
    vm_name: Option<&str>,
    segments: Option<&[SegmentSpec]>,
    problems: &mut Problems,
) -> Option<DhcpReservation> {
    let dhcp = wire.get_ref();
    let mac = match &dhcp.mac {
        None => Some(None),
        Some(text) => match text.get_ref().trim().parse::<MacAddr>() {
            Ok(mac) if mac.0[0] & 1 == 1 || mac.0 == [0; 6] => {
                problems.at(
                    text.span(),
                    format!("{field}.mac"),
                    format!(
                        "{mac} is not a unicast MAC address; copy the interface's MAC from the production domain XML"
                    ),
                );
                None
            }
            Ok(mac) => Some(Some(mac)),
            Err(()) => {
                problems.at(
                    text.span(),
                    format!("{field}.mac"),
                    format!(
                        "{:?} is not a MAC address; write it like \"52:54:00:20:00:10\", or drop it to use the MAC from the production domain XML",
                        text.get_ref()
                    ),
                );
                None
            }
        },
    };
    let ip_text = match &dhcp.ip {
        None => {
            problems.at(
                wire.span(),
                format!("{field}.ip"),
                "missing ip; give the address the lab DHCP hands to this vm, like ip = \"10.20.0.10\"",
            );
            return None;
        }
        Some(ip) => ip,
    };
    let ip = parse_ipv4(problems, ip_text, &format!("{field}.ip"))?;
    // With a broken segment, finding the reservation's segment would only repeat its problems.
    let segments = segments?;

    let serves = |segment: &SegmentSpec| {
        segment
            .services
            .as_ref()
            .is_some_and(|s| s.dhcp && s.address.contains(ip))
    };
    let segment = match &dhcp.segment {
        Some(name) => {
            let Some(segment) = segments.iter().find(|s| s.name == *name.get_ref()) else {
                problems.at(
                    name.span(),
                    format!("{field}.segment"),
                    format!(
                        "unknown segment {:?}{}; known segments: {}",
                        name.get_ref(),
                        suggestion(name.get_ref(), segments.iter().map(|s| s.name.as_str())),
                        list(segments.iter().map(|s| &s.name))
                    ),
                );
                return None;
            };
            match &segment.services {
                Some(services) if services.dhcp && services.address.contains(ip) => segment,
                Some(services) if services.dhcp => {
                    problems.at(
                        ip_text.span(),
                        format!("{field}.ip"),
                        format!(
                            "{ip} is outside the subnet {}/{} of segment {:?}; fix the address or the segment",
                            services.address.network(),
                            services.address.prefix,
                            segment.name
                        ),
                    );
                    return None;
                }
                _ => {
                    problems.at(
                        name.span(),
                        format!("{field}.segment"),
                        format!(
                            "segment {:?} has no lab dhcp; add dhcp = true to [segment.{}.services]",
                            segment.name, segment.name
                        ),
                    );
                    return None;
                }
            }
        }
        None => {
            let candidates: Vec<&SegmentSpec> = segments.iter().filter(|s| serves(s)).collect();
            match candidates.as_slice() {
                [segment] => *segment,
                [] => {
                    let without_dhcp = segments
                        .iter()
                        .find(|s| s.services.as_ref().is_some_and(|s| s.address.contains(ip)));
                    let message = match without_dhcp {
                        Some(segment) => format!(
                            "segment {:?} contains {ip} but its services have no dhcp; add dhcp = true to [segment.{}.services]",
                            segment.name, segment.name
                        ),
                        None => format!(
                            "no segment with lab dhcp contains {ip}; add a [segment.NAME.services] table with dhcp = true and a subnet containing it"
                        ),
                    };
                    problems.at(ip_text.span(), format!("{field}.ip"), message);
                    return None;
                }
                several => {
                    problems.at(
                        ip_text.span(),
                        format!("{field}.ip"),
                        format!(
                            "{ip} is in the dhcp subnets of segments {}; add segment = \"NAME\" to say which one",
                            list(several.iter().map(|s| &s.name))
                        ),
                    );
                    return None;
                }
            }
        }
    };
    let services = segment.services.as_ref()?;
    if ip == services.address.address {
        problems.at(
            ip_text.span(),
            format!("{field}.ip"),
            format!(
                "{ip} is the services address of segment {:?}, where the lab services answer; a vm cannot use it",
                segment.name
            ),
        );
        return None;
    }
    if ip == services.address.network() || ip == services.address.broadcast() {
        problems.at(
            ip_text.span(),
            format!("{field}.ip"),
            format!(
                "{ip} is the network or broadcast address of {}/{}; give a host address",
                services.address.network(),
                services.address.prefix
            ),
        );
        return None;
    }
    // Prefer the host name that starts with the vm name, then the alphabetically first one.
    let names_for_ip: Vec<&String> = segment
        .hosts
        .iter()
        .filter(|(_, host_ip)| **host_ip == ip)
        .map(|(host, _)| host)
        .collect();
    let hostname = names_for_ip
        .iter()
        .find(|host| vm_name.is_some_and(|vm| host.split('.').next() == Some(vm)))
        .or(names_for_ip.first())
        .map(|host| host.to_string())
        .or_else(|| vm_name.map(str::to_string))?;
    Some(DhcpReservation {
        segment: segment.name.clone(),
        mac: mac?,
        ip,
        hostname,
    })
}

/// Within a segment, reservation MACs and IPs must be unique.
pub(super) fn check_reservations(
    wire: &WireLab,
    vms: &[Option<PartialVm>],
    problems: &mut Problems,
) {
    let mut macs: BTreeMap<(&str, MacAddr), usize> = BTreeMap::new();
    let mut ips: BTreeMap<(&str, Ipv4Addr), usize> = BTreeMap::new();
    for (index, vm) in vms.iter().enumerate() {
        let Some(dhcp) = vm.as_ref().and_then(|vm| vm.dhcp.as_ref()) else {
            continue;
        };
        let wire_dhcp = wire.vms[index].get_ref().dhcp.as_ref().map(|d| d.get_ref());
        if let Some(mac) = dhcp.mac {
            if let Some(first) = macs.get(&(dhcp.segment.as_str(), mac)) {
                let span = wire_dhcp
                    .and_then(|d| d.mac.as_ref())
                    .map(|m| m.span())
                    .unwrap_or_else(|| wire.vms[index].span());
                problems.at(
                    span,
                    format!("vm[{index}].dhcp.mac"),
                    format!(
                        "duplicate mac {mac} in segment {:?} (also vm[{first}]); every interface in a segment needs its own mac",
                        dhcp.segment
                    ),
                );
            } else {
                macs.insert((dhcp.segment.as_str(), mac), index);
            }
        }
        if let Some(first) = ips.get(&(dhcp.segment.as_str(), dhcp.ip)) {
            let span = wire_dhcp
                .and_then(|d| d.ip.as_ref())
                .map(|ip| ip.span())
                .unwrap_or_else(|| wire.vms[index].span());
            problems.at(
                span,
                format!("vm[{index}].dhcp.ip"),
                format!(
                    "duplicate dhcp address {} in segment {:?} (also vm[{first}]); give each vm its own address",
                    dhcp.ip, dhcp.segment
                ),
            );
        } else {
            ips.insert((dhcp.segment.as_str(), dhcp.ip), index);
        }
    }
}
