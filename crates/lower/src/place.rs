//! Pass `place`: where each value is computed.
//!
//! Establishes placement by axes. Values whose axes all belong to the group
//! (including scalars: `lr / (1 - beta1^t)`) are computed once per group
//! iteration, as [`Step::Compute`] before the first step that needs them.
//! Inside a phase, a value is computed at the depth of its innermost loop
//! axis: a per-channel value in a `C, H, W` nest once per channel, never
//! once per element. Elementwise values needed by several phases are
//! recomputed from their inputs in each (it costs arithmetic, never memory
//! traffic); reduction results are read back from their accumulators.

use crate::loopir::*;
use normjit_ir::AxisSet;

pub fn place(group: AxisSet, nodes: &[LNode], accums: &[Accum], phases: &mut [Phase], steps: &mut Vec<Step>) {
    let is_group = |v: LValue| nodes[v.0 as usize].axes.is_subset(group);
    let mut computed = vec![false; nodes.len()];
    let mut out = Vec::new();
    // All group-level stores come last (see `stores`); their values are all
    // computed before the first of them, so a swap reads entry values.
    let store_values: Vec<LValue> =
        steps.iter().filter_map(|s| if let Step::Store(_, v) = s { Some(*v) } else { None }).collect();
    let mut stores_seen = false;
    for step in steps.iter() {
        let roots: Vec<LValue> = match step {
            Step::Store(..) if !stores_seen => {
                stores_seen = true;
                store_values.clone()
            }
            Step::Compute(v) | Step::Store(_, v) => vec![*v],
            Step::Phase(p) => {
                let ph = &phases[*p];
                ph.accums.iter().map(|a| accums[a.0 as usize].operand).chain(ph.stores.iter().map(|s| s.1)).collect()
            }
        };
        // Closure of the roots, split into group-level and phase values.
        let mut seen = vec![false; nodes.len()];
        let mut todo = roots;
        let mut glue = Vec::new();
        let mut local = Vec::new();
        while let Some(v) = todo.pop() {
            if std::mem::replace(&mut seen[v.0 as usize], true) {
                continue;
            }
            let n = &nodes[v.0 as usize];
            if is_group(v) {
                if !computed[v.0 as usize] {
                    glue.push(v);
                }
            } else {
                local.push(v);
            }
            // Reduction results are leaves: read back, not recomputed.
            if !matches!(n.op, LOp::Reduced(_)) {
                todo.extend(n.op.operands());
            }
        }
        glue.sort();
        for v in glue {
            computed[v.0 as usize] = true;
            out.push(Step::Compute(v));
        }
        if let Step::Phase(p) = step {
            local.sort();
            let ph = &mut phases[*p];
            ph.nodes = local
                .into_iter()
                .map(|v| {
                    let axes = nodes[v.0 as usize].axes;
                    let depth = ph.loops.iter().rposition(|d| axes.contains(*d)).map_or(0, |i| i + 1);
                    (v, depth)
                })
                .collect();
        }
        out.push(step.clone());
    }
    *steps = out;
}
