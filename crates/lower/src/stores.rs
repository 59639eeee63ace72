//! Pass `stores`: keep `inout` semantics across phases.
//!
//! Establishes: a store to a tensor comes no earlier than the last step
//! that reads it, so every read sees the entry value. A store that would
//! overwrite data a later pass still reads (AddRMSNorm's `residual`, read by
//! the statistics pass and by the normalize pass) moves to the latest such
//! pass with its domain, or to a new pass after it.

use crate::loopir::*;
use normjit_ir::{AxisSet, DimId, Kernel, TensorId};
use std::collections::BTreeSet;

/// Tensors loaded by the values `roots` (stopping at reduction results,
/// which were computed in earlier steps).
pub fn loads(nodes: &[LNode], roots: impl IntoIterator<Item = LValue>) -> BTreeSet<TensorId> {
    let mut seen = vec![false; nodes.len()];
    let mut todo: Vec<LValue> = roots.into_iter().collect();
    let mut out = BTreeSet::new();
    while let Some(v) = todo.pop() {
        if std::mem::replace(&mut seen[v.0 as usize], true) {
            continue;
        }
        match &nodes[v.0 as usize].op {
            LOp::Load(t) => {
                out.insert(*t);
            }
            op => todo.extend(op.operands()),
        }
    }
    out
}

fn step_loads(nodes: &[LNode], accums: &[Accum], phases: &[Phase], s: &Step) -> BTreeSet<TensorId> {
    match s {
        Step::Compute(v) | Step::Store(_, v) => loads(nodes, [*v]),
        Step::Phase(p) => {
            let ph = &phases[*p];
            let roots = ph.accums.iter().map(|a| accums[a.0 as usize].operand).chain(ph.stores.iter().map(|s| s.1));
            loads(nodes, roots)
        }
    }
}

/// Moves stores after the last read of their tensor. Two `inout` tensors
/// stored from each other's entry values in different steps (a swap) would
/// need a temporary copy; normjit does not make one, and says so.
pub fn order_inout_stores(
    k: &Kernel,
    order: &[DimId],
    group: AxisSet,
    nodes: &[LNode],
    accums: &[Accum],
    phases: &mut Vec<Phase>,
    steps: &mut Vec<Step>,
) -> Result<(), String> {
    // Group-level stores go last, and `place` computes all their values
    // before the first of them, so they read entry values even when they
    // read each other (a swap); their reads count at the first store.
    let (mut group_stores, rest): (Vec<Step>, Vec<Step>) = steps.drain(..).partition(|s| matches!(s, Step::Store(..)));
    *steps = rest;
    steps.append(&mut group_stores);
    // Without a cycle every store moves at most once per other step; more
    // moves than that mean stores chase each other.
    let mut budget = (steps.len() + 1) * (k.tensors.len() + 1) * 4;
    'again: loop {
        if budget == 0 {
            let names: Vec<&str> = k
                .tensors
                .iter()
                .filter(|(_, t)| t.role == normjit_ir::Role::InOut)
                .map(|(_, t)| t.name.as_str())
                .collect();
            return Err(format!(
                "the stores of inout tensors ({}) read each other's entry values in different passes; \
                 this needs a temporary copy, which normjit does not make yet: bind the entry value \
                 you read to a separate `in` tensor",
                names.join(", ")
            ));
        }
        budget -= 1;
        let mut loads: Vec<BTreeSet<TensorId>> = steps.iter().map(|s| step_loads(nodes, accums, phases, s)).collect();
        if let Some(first) = steps.iter().position(|s| matches!(s, Step::Store(..))) {
            for i in first + 1..steps.len() {
                let moved = std::mem::take(&mut loads[i]);
                loads[first].extend(moved);
            }
        }
        for si in 0..steps.len() {
            let stored: Vec<(TensorId, LValue)> = match &steps[si] {
                Step::Store(t, v) => vec![(*t, *v)],
                Step::Phase(p) => phases[*p].stores.clone(),
                Step::Compute(_) => vec![],
            };
            for (t, v) in stored {
                let Some(last) = (0..steps.len()).rev().find(|&j| loads[j].contains(&t)) else { continue };
                if last <= si {
                    continue;
                }
                // Move the store after (or into) step `last`.
                match steps[si] {
                    Step::Store(..) => {
                        let s = steps.remove(si);
                        steps.insert(last, s);
                    }
                    Step::Phase(p) => {
                        phases[p].stores.retain(|&(tt, _)| tt != t);
                        let domain = k.tensors[t].axes().minus(group);
                        let target = (last..steps.len()).find_map(|j| match steps[j] {
                            Step::Phase(q) if phases[q].loops == crate::phases::loops_for(order, domain) => Some(q),
                            _ => None,
                        });
                        match target {
                            Some(q) => phases[q].stores.push((t, v)),
                            None => {
                                phases.push(Phase {
                                    name: format!("write {}", k.tensors[t].name),
                                    loops: crate::phases::loops_for(order, domain),
                                    nodes: Vec::new(),
                                    accums: Vec::new(),
                                    stores: vec![(t, v)],
                                    width: 1,
                                    unroll: 1,
                                    split: None,
                                    flat: 1,
                                });
                                steps.insert(last + 1, Step::Phase(phases.len() - 1));
                            }
                        }
                    }
                    Step::Compute(_) => unreachable!(),
                }
                continue 'again;
            }
        }
        // Drop phases left with nothing to do.
        steps.retain(|s| match s {
            Step::Phase(p) => !phases[*p].accums.is_empty() || !phases[*p].stores.is_empty(),
            _ => true,
        });
        return Ok(());
    }
}
