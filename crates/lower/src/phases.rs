//! Pass `phases`: split the group body into passes over memory.
//!
//! Establishes: every reduction and every store belongs to one step. A
//! value's *level* is the number of reductions on its longest dependency
//! chain; a reduction's operand must be complete before the reduction's
//! result can be used, so reductions whose operands share a level and a
//! domain accumulate in the same pass (sum and sum of squares together),
//! and a level-`L` pass runs after every level-`L-1` pass. Stores join the
//! pass of their level and domain; stores of group-only tensors (running
//! statistics, scalars) become group-level steps. Reductions over the group
//! axes are cross-group ([`Accum::cross`]); the stores of tensors without
//! group axes (their results) go to passes after the group loop
//! ([`Plan::after`]), by the same rules.

use crate::loopir::*;
use normjit_ir::{AxisSet, DimId, Kernel, TensorId};

/// Level of every value (see the module doc).
pub fn levels(nodes: &[LNode], accums: &[Accum]) -> Vec<u32> {
    let mut level = vec![0u32; nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        level[i] = match &n.op {
            LOp::Reduced(a) => level[accums[a.0 as usize].operand.0 as usize] + 1,
            op => op.operands().iter().map(|o| level[o.0 as usize]).max().unwrap_or(0),
        };
    }
    level
}

/// Loop order of a phase over `domain`: the reference order restricted.
pub fn loops_for(order: &[DimId], domain: AxisSet) -> Vec<DimId> {
    order.iter().copied().filter(|d| domain.contains(*d)).collect()
}

/// The phases (with their levels) and steps of a plan.
pub struct Phased {
    pub phases: Vec<Phase>,
    pub steps: Vec<Step>,
    pub after: Vec<Step>,
}

pub fn build(
    k: &Kernel,
    order: &[DimId],
    group: &[DimId],
    nodes: &[LNode],
    accums: &mut [Accum],
    stores: &[(TensorId, LValue)],
) -> Phased {
    let g = group.iter().fold(AxisSet::EMPTY, |s, &d| s.with(d));
    let level = levels(nodes, accums);
    let mut phases: Vec<Phase> = Vec::new();
    let mut phase_level: Vec<u32> = Vec::new();
    let mut phase_domain: Vec<AxisSet> = Vec::new();
    let mut phase_after: Vec<bool> = Vec::new();
    let mut find_or_add = |phases: &mut Vec<Phase>, lvl: u32, domain: AxisSet, after: bool| -> usize {
        if let Some(i) =
            (0..phases.len()).find(|&i| phase_level[i] == lvl && phase_domain[i] == domain && phase_after[i] == after)
        {
            return i;
        }
        phases.push(Phase {
            name: String::new(),
            loops: loops_for(order, domain),
            nodes: Vec::new(),
            accums: Vec::new(),
            stores: Vec::new(),
            width: 1,
            unroll: 1,
            split: None,
            flat: 1,
        });
        phase_level.push(lvl);
        phase_domain.push(domain);
        phase_after.push(after);
        phases.len() - 1
    };
    for (i, a) in accums.iter_mut().enumerate() {
        let axes = nodes[a.operand.0 as usize].axes;
        a.cross = !g.is_empty() && g.is_subset(a.reduced);
        let p = find_or_add(&mut phases, level[a.operand.0 as usize], axes.minus(g), false);
        a.phase = p;
        phases[p].accums.push(AccId(i as u32));
    }
    let mut group_stores: Vec<(u32, TensorId, LValue, bool)> = Vec::new();
    for &(t, v) in stores {
        let axes = k.tensors[t].axes();
        // A tensor without group axes is written once, after the group loop.
        let after = !g.is_empty() && axes.intersect(g).is_empty();
        let domain = axes.minus(g);
        if domain.is_empty() {
            group_stores.push((level[v.0 as usize], t, v, after));
        } else {
            let p = find_or_add(&mut phases, level[v.0 as usize], domain, after);
            phases[p].stores.push((t, v));
        }
    }
    // Phases were created in sink order; run them by level, keeping that
    // order within a level.
    let max_level = phase_level.iter().chain(group_stores.iter().map(|s| &s.0)).copied().max().unwrap_or(0);
    let (mut steps, mut after) = (Vec::new(), Vec::new());
    for lvl in 0..=max_level {
        for &(l, t, v, a) in &group_stores {
            if l == lvl {
                if a { &mut after } else { &mut steps }.push(Step::Store(t, v));
            }
        }
        for (p, &l) in phase_level.iter().enumerate() {
            if l == lvl {
                if phase_after[p] { &mut after } else { &mut steps }.push(Step::Phase(p));
            }
        }
    }
    Phased { phases, steps, after }
}

/// Sets each accumulator's scratch dims and flush depth from its phase's
/// loops, and names the phases.
pub fn finish_accums(k: &Kernel, nodes: &[LNode], accums: &mut [Accum], phases: &mut [Phase]) {
    for a in accums.iter_mut() {
        let loops = &phases[a.phase].loops;
        let kept = nodes[a.operand.0 as usize].axes.minus(a.reduced);
        a.scratch_dims = loops.iter().copied().filter(|d| kept.contains(*d)).collect();
        a.flush_depth = loops.iter().rposition(|d| kept.contains(*d)).map_or(0, |i| i + 1);
    }
    for ph in phases.iter_mut() {
        let mut parts: Vec<String> = ph
            .accums
            .iter()
            .map(|a| {
                let acc = &accums[a.0 as usize];
                if acc.is_hoisted() {
                    let over: Vec<&str> = acc.scratch_dims.iter().map(|d| k.dims[*d].name.as_str()).collect();
                    format!("hoist over {}", over.join(", "))
                } else {
                    format!("{} over {}", acc.op.name(), k.axis_names(acc.reduced))
                }
            })
            .collect();
        parts.extend(ph.stores.iter().map(|(t, _)| format!("write {}", k.tensors[*t].name)));
        ph.name = parts.join(", ");
    }
}

/// Renumbers phases in execution order, dropping unreferenced ones.
pub fn compact(phases: &mut Vec<Phase>, steps: &mut [Step], after: &mut [Step], accums: &mut [Accum]) {
    let mut map = vec![usize::MAX; phases.len()];
    let mut out = Vec::new();
    for s in steps.iter_mut().chain(after.iter_mut()) {
        if let Step::Phase(p) = s {
            map[*p] = out.len();
            out.push(phases[*p].clone());
            *p = map[*p];
        }
    }
    for a in accums.iter_mut() {
        a.phase = map[a.phase];
    }
    *phases = out;
}
