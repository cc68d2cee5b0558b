//! `vm.after` and `vm.tier`: the boot order.

use std::collections::BTreeMap;
use std::ops::Range;

use crate::spec::problems::{Problems, list, suggestion};
use crate::spec::wire::WireLab;

/// A VM's dependencies: the VM indices of its `after` entries, with each entry's span.
type Deps = Vec<Vec<(usize, Range<usize>)>>;

/// Checks `after` references and cycles, then derives every VM's boot tier (file order).
pub(super) fn derive_tiers(
    wire: &WireLab,
    names: &[Option<String>],
    problems: &mut Problems,
) -> Option<Vec<u32>> {
    let (deps, refs_ok) = dependencies(wire, names, problems);
    let acyclic = report_cycles(wire, names, &deps, problems);
    if !refs_ok || !acyclic || names.iter().any(Option::is_none) {
        return None;
    }
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
    let tiers = levels(&deps, &explicit);
    explicit_tiers_fit(wire, names, &deps, &explicit, &tiers, problems).then_some(tiers)
}

/// Resolves every `after` entry to a VM index; the flag says whether all of them are valid.
fn dependencies(wire: &WireLab, names: &[Option<String>], problems: &mut Problems) -> (Deps, bool) {
    let index_of: BTreeMap<&str, usize> = names
        .iter()
        .enumerate()
        .rev()
        .filter_map(|(i, name)| name.as_deref().map(|n| (n, i)))
        .collect();
    let known: Vec<&str> = names.iter().flatten().map(String::as_str).collect();
    let mut ok = true;
    let mut deps: Deps = vec![Vec::new(); wire.vms.len()];
    for (index, vm) in wire.vms.iter().enumerate() {
        for (j, after) in vm.get_ref().after.iter().flatten().enumerate() {
            let field = format!("vm[{index}].after[{j}]");
            let target = after.get_ref().as_str();
            let problem = match index_of.get(target) {
                None => Some(format!(
                    "unknown vm {target:?}{}; known vms: {}",
                    suggestion(target, known.iter().copied()),
                    list(&known)
                )),
                Some(&dep) if dep == index => Some(format!(
                    "vm {target:?} cannot boot after itself; remove it from its own after list"
                )),
                Some(&dep) => {
                    let twice = deps[index].iter().any(|(d, _)| *d == dep);
                    deps[index].push((dep, after.span()));
                    twice.then(|| format!("{target:?} is listed twice; list it once"))
                }
            };
            if let Some(problem) = problem {
                problems.at(after.span(), field, problem);
                ok = false;
            }
        }
    }
    (deps, ok)
}

/// Reports every `after` cycle once; `true` if there is none.
fn report_cycles(
    wire: &WireLab,
    names: &[Option<String>],
    deps: &Deps,
    problems: &mut Problems,
) -> bool {
    let cycles = find_cycles(deps);
    for cycle in &cycles {
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
    }
    cycles.is_empty()
}

/// Tiers in dependency order: a VM's tier is its explicit tier (or 1), raised to one above
/// each of its dependencies. The graph has no cycles.
fn levels(deps: &Deps, explicit: &[Option<u32>]) -> Vec<u32> {
    fn level(i: usize, deps: &Deps, explicit: &[Option<u32>], tiers: &mut [Option<u32>]) -> u32 {
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
    let mut tiers: Vec<Option<u32>> = vec![None; deps.len()];
    for i in 0..deps.len() {
        level(i, deps, explicit, &mut tiers);
    }
    tiers.into_iter().map(|t| t.unwrap_or(1)).collect()
}

/// An explicit `tier` must come after the tiers of the VM's dependencies.
fn explicit_tiers_fit(
    wire: &WireLab,
    names: &[Option<String>],
    deps: &Deps,
    explicit: &[Option<u32>],
    tiers: &[u32],
    problems: &mut Problems,
) -> bool {
    let mut ok = true;
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
    ok
}

/// Cycles in a dependency graph, each once, as VM indices starting from the lowest.
fn find_cycles(deps: &Deps) -> Vec<Vec<usize>> {
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
