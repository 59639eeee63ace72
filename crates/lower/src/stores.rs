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

pub fn order_inout_stores(
    k: &Kernel,
    order: &[DimId],
    group: AxisSet,
    nodes: &[LNode],
    accums: &[Accum],
    phases: &mut Vec<Phase>,
    steps: &mut Vec<Step>,
) {
    // Each move only goes later and the number of steps is bounded by the
    // number of stores, so this terminates.
    'again: loop {
        let loads: Vec<BTreeSet<TensorId>> = steps.iter().map(|s| step_loads(nodes, accums, phases, s)).collect();
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
        return;
    }
}
