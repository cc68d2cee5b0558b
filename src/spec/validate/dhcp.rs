//! `vm.dhcp`: reservations answered by a segment's lab services.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::ops::Range;

use toml::Spanned;

use crate::spec::model::{DhcpReservation, MacAddr, MacAddrError, SegmentSpec};
use crate::spec::problems::{Problems, list, suggestion};
use crate::spec::wire::{Text, WireDhcp, WireLab};

use super::fields::{parse_ipv4, present};
use super::vm::PartialVm;

pub(super) fn validate_dhcp(
    wire: &Spanned<WireDhcp>,
    field: &str,
    vm_name: Option<&str>,
    segments: Option<&[SegmentSpec]>,
    problems: &mut Problems,
) -> Option<DhcpReservation> {
    let dhcp = wire.get_ref();
    let ip_field = format!("{field}.ip");
    let mac = reservation_mac(problems, &dhcp.mac, &format!("{field}.mac"));
    let ip_text = present(
        problems,
        &dhcp.ip,
        wire.span(),
        &ip_field,
        "missing ip; give the address the lab DHCP hands to this vm, like ip = \"10.20.0.10\"",
    )?;
    let ip = parse_ipv4(problems, ip_text, &ip_field)?;
    // With a broken segment, finding the reservation's segment would only repeat its problems.
    let segments = segments?;
    let at_ip = Place {
        span: ip_text.span(),
        field: &ip_field,
    };
    let segment = match &dhcp.segment {
        Some(name) => named_segment(problems, segments, name, ip, &at_ip, field)?,
        None => segment_serving(problems, segments, ip, &at_ip)?,
    };
    host_address(problems, segment, ip, &at_ip)?;
    Some(DhcpReservation {
        segment: segment.name.clone(),
        mac: mac?,
        ip,
        hostname: hostname(segment, ip, vm_name)?,
    })
}

/// Where the reservation's `ip` is, for problems about the address.
struct Place<'a> {
    span: Range<usize>,
    field: &'a str,
}

impl Place<'_> {
    fn problem<T>(&self, problems: &mut Problems, message: String) -> Option<T> {
        problems.at(self.span.clone(), self.field, message);
        None
    }
}

/// `dhcp.mac`: a unicast MAC; `None` takes the interface's MAC from the production XML.
fn reservation_mac(
    problems: &mut Problems,
    value: &Option<Text>,
    field: &str,
) -> Option<Option<MacAddr>> {
    let Some(text) = value else {
        return Some(None);
    };
    let message = match text.get_ref().trim().parse::<MacAddr>() {
        Ok(mac) if mac.0[0] & 1 == 1 || mac.0 == [0; 6] => format!(
            "{mac} is not a unicast MAC address; copy the interface's MAC from the production domain XML"
        ),
        Ok(mac) => return Some(Some(mac)),
        Err(MacAddrError) => format!(
            "{:?} is not a MAC address; write it like \"52:54:00:20:00:10\", or drop it to use the MAC from the production domain XML",
            text.get_ref()
        ),
    };
    problems.at(text.span(), field, message);
    None
}
/// The segment named by `dhcp.segment`; its lab services must hand out `ip`.
fn named_segment<'s>(
    problems: &mut Problems,
    segments: &'s [SegmentSpec],
    name: &Text,
    ip: Ipv4Addr,
    at_ip: &Place,
    field: &str,
) -> Option<&'s SegmentSpec> {
    let segment_field = format!("{field}.segment");
    let Some(segment) = segments.iter().find(|s| s.name == *name.get_ref()) else {
        problems.at(
            name.span(),
            segment_field,
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
        Some(services) if services.dhcp && services.address.contains(ip) => Some(segment),
        Some(services) if services.dhcp => at_ip.problem(
            problems,
            format!(
                "{ip} is outside the subnet {}/{} of segment {:?}; fix the address or the segment",
                services.address.network(),
                services.address.prefix,
                segment.name
            ),
        ),
        _ => {
            problems.at(
                name.span(),
                segment_field,
                format!(
                    "segment {:?} has no lab dhcp; add dhcp = true to [segment.{}.services]",
                    segment.name, segment.name
                ),
            );
            None
        }
    }
}

/// Without `dhcp.segment`: the one segment whose lab dhcp serves `ip`.
fn segment_serving<'s>(
    problems: &mut Problems,
    segments: &'s [SegmentSpec],
    ip: Ipv4Addr,
    at_ip: &Place,
) -> Option<&'s SegmentSpec> {
    let serves = |segment: &SegmentSpec| {
        segment
            .services
            .as_ref()
            .is_some_and(|s| s.dhcp && s.address.contains(ip))
    };
    let candidates: Vec<&SegmentSpec> = segments.iter().filter(|s| serves(s)).collect();
    match candidates.as_slice() {
        [segment] => Some(*segment),
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
            at_ip.problem(problems, message)
        }
        several => at_ip.problem(
            problems,
            format!(
                "{ip} is in the dhcp subnets of segments {}; add segment = \"NAME\" to say which one",
                list(several.iter().map(|s| &s.name))
            ),
        ),
    }
}

/// `ip` must be a host address of the segment's subnet other than the services' own.
fn host_address(
    problems: &mut Problems,
    segment: &SegmentSpec,
    ip: Ipv4Addr,
    at_ip: &Place,
) -> Option<()> {
    let services = segment.services.as_ref()?;
    if ip == services.address.address {
        return at_ip.problem(
            problems,
            format!(
                "{ip} is the services address of segment {:?}, where the lab services answer; a vm cannot use it",
                segment.name
            ),
        );
    }
    if ip == services.address.network() || ip == services.address.broadcast() {
        return at_ip.problem(
            problems,
            format!(
                "{ip} is the network or broadcast address of {}/{}; give a host address",
                services.address.network(),
                services.address.prefix
            ),
        );
    }
    Some(())
}

/// The reservation's host name: the segment's host name for `ip` that starts with the vm
/// name, else its alphabetically first one, else the vm name.
fn hostname(segment: &SegmentSpec, ip: Ipv4Addr, vm_name: Option<&str>) -> Option<String> {
    let names_for_ip: Vec<&String> = segment
        .hosts
        .iter()
        .filter(|(_, host_ip)| **host_ip == ip)
        .map(|(host, _)| host)
        .collect();
    names_for_ip
        .iter()
        .find(|host| vm_name.is_some_and(|vm| host.split('.').next() == Some(vm)))
        .or(names_for_ip.first())
        .map(|host| host.to_string())
        .or_else(|| vm_name.map(str::to_string))
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
