//! The plan verifier: every value is available where it is used, and
//! one-pass shifts are loaded once per group iteration, before the passes.
//!
//! Runs after lowering in debug builds (and when [`crate::Options::verify`]
//! is set). A failure is a bug in a pass, never a user error.

use crate::loopir::*;

pub fn check(p: &Plan) -> Result<(), String> {
    let mut acc_done = vec![false; p.accums.len()];
    // Inside the group loop, cross-group accumulators are never complete.
    let cross_pending: Vec<bool> = p.accums.iter().map(|a| a.cross).collect();
    check_steps(p, &p.steps, &mut acc_done, &cross_pending)?;
    if p.group().is_empty() && !p.after.is_empty() {
        return Err("steps after the group loop without a group".into());
    }
    for (a, acc) in p.accums.iter().enumerate() {
        if acc.cross
            && (p.group().is_empty() || !p.group_split.as_ref().is_some_and(|s| s.partials.contains(&AccId(a as u32))))
        {
            return Err(format!("cross-group acc{a} has no per-chunk partial"));
        }
    }
    check_steps(p, &p.after, &mut acc_done, &vec![false; p.accums.len()])?;
    // Every write happens exactly once.
    let mut written = vec![0; p.kernel.tensors.len()];
    for s in p.steps.iter().chain(&p.after) {
        match s {
            Step::Store(t, _) => written[t.index()] += 1,
            Step::Phase(pi) => p.phases[*pi].stores.iter().for_each(|(t, _)| written[t.index()] += 1),
            _ => {}
        }
    }
    for (id, t) in p.kernel.tensors.iter() {
        if written[id.index()] != usize::from(t.role.is_written()) {
            return Err(format!("tensor `{}` is written {} times", t.name, written[id.index()]));
        }
    }
    Ok(())
}

/// Checks one list of steps (the group body, or the steps after it).
fn check_steps(p: &Plan, steps: &[Step], acc_done: &mut [bool], pending: &[bool]) -> Result<(), String> {
    let mut group_ready = vec![false; p.nodes.len()];
    let done = |acc_done: &[bool], a: AccId| acc_done[a.0 as usize] && !pending[a.0 as usize];
    for (si, s) in steps.iter().enumerate() {
        match s {
            Step::Compute(v) => {
                for o in p.node(*v).op.operands() {
                    if !group_ready[o.0 as usize] {
                        return Err(format!("step {si}: v{} uses v{} before it is computed", v.0, o.0));
                    }
                }
                if let LOp::Reduced(a) = p.node(*v).op {
                    if !done(acc_done, a) {
                        return Err(format!("step {si}: acc{} read before its phase ran", a.0));
                    }
                }
                group_ready[v.0 as usize] = true;
            }
            Step::Store(_, v) => {
                if !group_ready[v.0 as usize] {
                    return Err(format!("step {si}: stores v{} before it is computed", v.0));
                }
            }
            Step::Phase(pi) => {
                let ph = &p.phases[*pi];
                let mut at: Vec<Option<usize>> = vec![None; p.nodes.len()];
                for &(v, d) in &ph.nodes {
                    if d == 0 || d > ph.loops.len() {
                        return Err(format!("phase {pi}: v{} at depth {d}", v.0));
                    }
                    let n = p.node(v);
                    if let LOp::Pivot(..) = n.op {
                        return Err(format!("phase {pi}: the shift v{} is computed inside a pass", v.0));
                    }
                    for o in n.op.operands() {
                        let ok = group_ready[o.0 as usize] || at[o.0 as usize].is_some_and(|od| od <= d);
                        if !ok {
                            return Err(format!("phase {pi}: v{} uses v{}, not available at depth {d}", v.0, o.0));
                        }
                    }
                    if let LOp::Reduced(a) = n.op {
                        if !done(acc_done, a) {
                            return Err(format!("phase {pi}: reads acc{} before it is complete", a.0));
                        }
                    }
                    at[v.0 as usize] = Some(d);
                }
                let inner = ph.loops.len();
                let avail = |v: LValue| group_ready[v.0 as usize] || at[v.0 as usize].is_some();
                for a in &ph.accums {
                    let acc = &p.accums[a.0 as usize];
                    if acc.phase != *pi || !avail(acc.operand) || acc.flush_depth > inner {
                        return Err(format!("phase {pi}: acc{} is malformed", a.0));
                    }
                }
                for (t, v) in &ph.stores {
                    if !avail(*v) {
                        return Err(format!("phase {pi}: store to tensor {} of unavailable v{}", t.index(), v.0));
                    }
                }
                for a in &ph.accums {
                    acc_done[a.0 as usize] = true;
                }
            }
        }
    }
    Ok(())
}
