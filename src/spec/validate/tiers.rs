//! `vm.after` and `vm.tier`: the boot order.

use std::collections::BTreeMap;
use std::ops::Range;

use crate::spec::problems::{Problems, list, suggestion};
use crate::spec::wire::WireLab;

/// Checks `after` references and cycles, then derives every VM's boot tier (file order).
pub(super) fn derive_tiers(
    wire: &WireLab,
    names: &[Option<String>],
    problems: &mut Problems,
) -> Option<Vec<u32>> {
    let index_of: BTreeMap<&str, usize> = names
        .iter()
        .enumerate()
        .rev()
        .filter_map(|(i, name)| name.as_deref().map(|n| (n, i)))
        .collect();
    let known: Vec<&str> = names.iter().flatten().map(String::as_str).collect();
    let mut ok = true;
    // Dependencies by VM index, with the span of each `after` entry.
    let mut deps: Vec<Vec<(usize, Range<usize>)>> = vec![Vec::new(); wire.vms.len()];
    for (index, vm) in wire.vms.iter().enumerate() {
        for (j, after) in vm.get_ref().after.iter().flatten().enumerate() {
            let field = format!("vm[{index}].after[{j}]");
            let target = after.get_ref().as_str();
            match index_of.get(target) {
                None => {
                    problems.at(
                        after.span(),
                        field,
                        format!(
                            "unknown vm {target:?}{}; known vms: {}",
                            suggestion(target, known.iter().copied()),
                            list(&known)
                        ),
                    );
                    ok = false;
                }
                Some(&dep) if dep == index => {
                    problems.at(
                        after.span(),
                        field,
                        format!("vm {target:?} cannot boot after itself; remove it from its own after list"),
                    );
                    ok = false;
                }
                Some(&dep) => {
                    if deps[index].iter().any(|(d, _)| *d == dep) {
                        problems.at(
                            after.span(),
                            field,
                            format!("{target:?} is listed twice; list it once"),
                        );
                        ok = false;
                    }
                    deps[index].push((dep, after.span()));
                }
            }
        }
    }
    for cycle in find_cycles(&deps) {
        let path: Vec<&str> = cycle
            .iter()
            .chain(cycle.first())
            .map(|&i| names[i].as_deref().unwrap_or("?"))
            .collect();
        let first = cycle[0];
        let span = deps[first]
            .iter()
            .find(|(d, _)| *d == cycle[1 % cycle.len()])
            .map(|(_, span)| span.clone())
            .unwrap_or_else(|| wire.vms[first].span());
        problems.at(
            span,
            format!("vm[{first}].after"),
            format!(
                "after cycle {} (each vm waits for the next); remove one of these after entries",
                path.join(" -> ")
            ),
        );
        ok = false;
    }
    if !ok || names.iter().any(Option::is_none) {
        return None;
    }

    // Levels in dependency order: a VM's tier is at least one above each of its dependencies.
    let explicit: Vec<Option<u32>> = wire
        .vms
        .iter()
        .map(|vm| {
            vm.get_ref()
                .tier
                .as_ref()
                .and_then(|t| u32::try_from(*t.get_ref()).ok())
        })
        .collect();
    let mut tiers: Vec<Option<u32>> = vec![None; wire.vms.len()];
    fn level(
        i: usize,
        deps: &[Vec<(usize, Range<usize>)>],
        explicit: &[Option<u32>],
        tiers: &mut [Option<u32>],
    ) -> u32 {
        if let Some(t) = tiers[i] {
            return t;
        }
        let needed = deps[i]
            .iter()
            .map(|(d, _)| level(*d, deps, explicit, tiers) + 1)
            .max()
            .unwrap_or(1);
        let tier = explicit[i].unwrap_or(1).max(needed);
        tiers[i] = Some(tier);
        tier
    }
    for i in 0..wire.vms.len() {
        level(i, &deps, &explicit, &mut tiers);
    }
    let tiers: Vec<u32> = tiers.into_iter().map(|t| t.unwrap_or(1)).collect();
    for (index, vm) in wire.vms.iter().enumerate() {
        let (Some(tier), Some(wire_tier)) = (explicit[index], vm.get_ref().tier.as_ref()) else {
            continue;
        };
        if let Some((dep, _)) = deps[index].iter().max_by_key(|(d, _)| tiers[*d])
            && tiers[*dep] >= tier
        {
            let dep_name = names[*dep].as_deref().unwrap_or("?");
            problems.at(
                wire_tier.span(),
                format!("vm[{index}].tier"),
                format!(
                    "tier {tier} does not come after {dep_name:?}, which boots in tier {}; raise the tier above {} or drop it to derive it from after",
                    tiers[*dep], tiers[*dep]
                ),
            );
            ok = false;
        }
    }
    ok.then_some(tiers)
}

/// Cycles in a dependency graph, each once, as VM indices starting from the lowest.
pub(super) fn find_cycles(deps: &[Vec<(usize, Range<usize>)>]) -> Vec<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    fn visit(
        node: usize,
        deps: &[Vec<(usize, Range<usize>)>],
        marks: &mut [Mark],
        stack: &mut Vec<usize>,
        cycles: &mut Vec<Vec<usize>>,
    ) {
        marks[node] = Mark::Active;
        stack.push(node);
        for (next, _) in &deps[node] {
            match marks[*next] {
                Mark::New => visit(*next, deps, marks, stack, cycles),
                Mark::Active => {
                    let start = stack.iter().position(|n| n == next).unwrap_or(0);
                    let mut cycle = stack[start..].to_vec();
                    let lowest = (0..cycle.len()).min_by_key(|&i| cycle[i]).unwrap_or(0);
                    cycle.rotate_left(lowest);
                    if !cycles.contains(&cycle) {
                        cycles.push(cycle);
                    }
                }
                Mark::Done => {}
            }
        }
        stack.pop();
        marks[node] = Mark::Done;
    }
    let mut marks = vec![Mark::New; deps.len()];
    let mut cycles = Vec::new();
    for node in 0..deps.len() {
        if marks[node] == Mark::New {
            visit(node, deps, &mut marks, &mut Vec::new(), &mut cycles);
        }
    }
    cycles
}
