//! `[[publish]]`: ports of lab VMs that people open through `reclab serve` or `reclab forward`.

use std::collections::BTreeMap;

use toml::Spanned;

use crate::spec::model::{MAX_PUBLISH_NAME, PublishKind, PublishSpec, SegmentSpec};
use crate::spec::problems::{Problems, list, suggestion};
use crate::spec::wire::WirePublish;

use super::fields::{one_of, required, valid_name};

const PUBLISH_NAME_RULE: &str = "use 1 to 20 characters: a lowercase letter, then lowercase letters, digits or '-', not ending in '-' (reclab serve names the service's host <name>-<run>)";

/// Validates every `[[publish]]`; `None` if any of them has a problem.
pub(super) fn validate_publish(
    wire: &[Spanned<WirePublish>],
    vm_names: &[Option<String>],
    segments: &[SegmentSpec],
    problems: &mut Problems,
) -> Option<Vec<PublishSpec>> {
    let known: Vec<&str> = vm_names.iter().flatten().map(String::as_str).collect();
    let mut first_use: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = Vec::new();
    let mut ok = true;
    if !wire.is_empty() && !segments.iter().any(|s| s.services.is_some()) {
        problems.at(
            wire[0].span(),
            "publish[0]",
            "published ports enter the lab through its lab-services namespace, and this lab has \
             none; add a [segment.NAME.services] table with the production gateway's address to \
             the segment of the published vm",
        );
        ok = false;
    }
    for (index, p) in wire.iter().enumerate() {
        let field = format!("publish[{index}]");
        let w = p.get_ref();
        let name = required(
            problems,
            &w.name,
            p.span(),
            &format!("{field}.name"),
            "name",
        );
        let name = name.and_then(|n| {
            let span = w.name.as_ref().map(|t| t.span()).unwrap_or(p.span());
            if !valid_name(&n, MAX_PUBLISH_NAME, true) || n.ends_with('-') {
                problems.at(
                    span,
                    format!("{field}.name"),
                    format!("invalid publish name {n:?}; {PUBLISH_NAME_RULE}"),
                );
                return None;
            }
            if let Some(first) = first_use.get(&n) {
                problems.at(
                    span,
                    format!("{field}.name"),
                    format!(
                        "duplicate publish name {n:?} (also publish[{first}]); give every \
                         published port a unique name"
                    ),
                );
                return None;
            }
            first_use.insert(n.clone(), index);
            Some(n)
        });
        let vm = required(problems, &w.vm, p.span(), &format!("{field}.vm"), "vm");
        let vm = vm.and_then(|vm| {
            if known.contains(&vm.as_str()) {
                return Some(vm);
            }
            let span = w.vm.as_ref().map(|t| t.span()).unwrap_or(p.span());
            problems.at(
                span,
                format!("{field}.vm"),
                format!(
                    "unknown vm {vm:?}{}; known vms: {}",
                    suggestion(&vm, known.iter().copied()),
                    list(&known)
                ),
            );
            None
        });
        let port = match &w.port {
            None => {
                problems.at(
                    p.span(),
                    format!("{field}.port"),
                    "missing port; give the vm's tcp port, for example port = 80",
                );
                None
            }
            Some(port) => match u16::try_from(*port.get_ref()) {
                Ok(n) if n > 0 => Some(n),
                _ => {
                    problems.at(
                        port.span(),
                        format!("{field}.port"),
                        format!(
                            "port {} is out of range; use a tcp port from 1 to 65535",
                            port.get_ref()
                        ),
                    );
                    None
                }
            },
        };
        let kind = one_of(
            problems,
            &w.kind,
            &format!("{field}.kind"),
            PublishKind::Http,
            &[("http", PublishKind::Http), ("tcp", PublishKind::Tcp)],
            |other| {
                format!(
                    "unknown publish kind {other:?}; use \"http\" (a web application, opened \
                     through reclab serve) or \"tcp\" (any tcp service, for reclab forward)"
                )
            },
        );
        match (name, vm, port, kind) {
            (Some(name), Some(vm), Some(port), Some(kind)) => out.push(PublishSpec {
                name,
                vm,
                port,
                kind,
            }),
            _ => ok = false,
        }
    }
    ok.then_some(out)
}
