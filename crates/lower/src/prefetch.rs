//! Pass `prefetch`: overlap the next group iteration's reads with this
//! one's writes.
//!
//! Establishes [`Plan::prefetch`] when the schedule asks for it
//! ([`crate::Schedule::prefetch`]: chosen where a group iteration reads
//! more than it writes, as backward kernels do, and the tensors exceed the
//! last-level cache), the plan has a group and
//! at least two phases, and the group's re-read data fits the cache (so
//! later phases read from cache and the first phase is the one that
//! streams from memory). The last phase then touches the first phase's
//! tensors one group iteration ahead.

use crate::loopir::*;

pub fn plan(p: &Plan) -> Option<Prefetch> {
    let axis = *p.group().last()?;
    let phases: Vec<usize> =
        p.steps.iter().filter_map(|s| if let Step::Phase(q) = s { Some(*q) } else { None }).collect();
    let (&first, &last) = (phases.first()?, phases.last()?);
    if first == last || p.traffic.group_working_set > p.traffic.cache_bytes {
        return None;
    }
    let g = p.group().iter().fold(normjit_ir::AxisSet::EMPTY, |s, &d| s.with(d));
    let mut tensors = Vec::new();
    // The touch is addressed with the last phase's loop indices, so every
    // non-group dim of a touched tensor must be one of its loops.
    let last_loops = p.phases[last].loops.iter().fold(g, |s, &d| s.with(d));
    for &(v, _) in &p.phases[first].nodes {
        if let LOp::Load(t) = p.node(v).op {
            let axes = p.kernel.tensors[t].axes();
            if g.is_subset(axes) && axes.is_subset(last_loops) && !tensors.contains(&t) {
                tensors.push(t);
            }
        }
    }
    // Only when the last phase streams along the same inner axis (the
    // touches follow its loop).
    let inner_last = p.phases[last].loops.last();
    let inner_first = p.phases[first].loops.last();
    if tensors.is_empty() || inner_last != inner_first || p.phases[last].width == 1 {
        return None;
    }
    Some(Prefetch { phase: last, axis, tensors })
}
