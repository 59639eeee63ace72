//! Pass `block`: column blocking of plans without a group.
//!
//! Establishes [`Plan::block`] when the schedule asks for it
//! ([`crate::Schedule::block`]) and it is legal and useful: the plan has no
//! group; every phase loops innermost over the same axis, unflattened; no
//! reduction reduces over that axis (so its columns are independent), and
//! every accumulator's array has it as its last dim; the
//! block is narrower than the axis at the planned sizes; and some tensor
//! is loaded by more than one phase (else there is nothing to keep in
//! cache). The engines then run all phases on one block of columns before
//! the next: a column reduction over the rows (a softmax over `N` of
//! `x[N, D]`) reads `x` from memory once instead of once per pass. No
//! result changes (see [`Block`]).

use crate::loopir::*;

pub fn plan(p: &Plan, size: Option<usize>) -> Option<Block> {
    let size = size?;
    if !p.group().is_empty() || p.phases.is_empty() {
        return None;
    }
    let axis = *p.phases[0].loops.last()?;
    if size >= p.dims[axis.index()] {
        return None;
    }
    let innermost = |ph: &Phase| ph.loops.last() == Some(&axis) && ph.flat <= 1;
    // Every array accumulator has the axis as its last dim (the engines
    // address a block's elements of an array as `lo..hi` of each row).
    let columns = |a: &Accum| !a.reduced.contains(axis) && a.scratch_dims.last() == Some(&axis);
    if !p.phases.iter().all(innermost) || !p.accums.iter().all(columns) {
        return None;
    }
    let mut loads = vec![0usize; p.kernel.tensors.len()];
    for ph in &p.phases {
        let mut seen = vec![false; loads.len()];
        for &(v, _) in &ph.nodes {
            if let LOp::Load(t) = p.node(v).op {
                if !std::mem::replace(&mut seen[t.index()], true) {
                    loads[t.index()] += 1;
                }
            }
        }
    }
    loads.iter().any(|&n| n > 1).then_some(Block { axis, size })
}
