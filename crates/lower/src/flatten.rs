//! Pass `flatten`: run contiguous innermost loops as one.
//!
//! Establishes [`Phase::flat`]. A phase whose innermost loops are short
//! (BatchNorm at `H = W = 11` runs 121-element channel planes as 11 loops
//! of 11) vectorizes only whole `width x unroll` blocks of its innermost
//! loop and leaves the rest to a scalar tail. Where the trailing loops
//! `L[j..k]` are the trailing dims, in order, of every tensor the phase
//! loads or stores that has any of them (so an element's offset is the
//! same function of the flat index `h * W + w`), no value is computed
//! between them, and every reduction of the phase flushes outside them,
//! they run as one loop over the product of their extents. Random values
//! and array accumulators inside the loops keep the loops apart (their
//! element numbering is not checked here), as does the first loop (the
//! thread split's).

use crate::loopir::*;
use normjit_ir::{AxisSet, Kernel};

pub fn flatten(k: &Kernel, nodes: &[LNode], accums: &[Accum], phases: &mut [Phase]) {
    for ph in phases.iter_mut() {
        let n = ph.loops.len();
        // Try the longest run first: loops[j..n] for j = 1, 2, ...
        for j in 1..n.saturating_sub(1) {
            if can_merge(k, nodes, accums, ph, j) {
                ph.flat = n - j;
                break;
            }
        }
    }
}

fn can_merge(k: &Kernel, nodes: &[LNode], accums: &[Accum], ph: &Phase, j: usize) -> bool {
    let n = ph.loops.len();
    let run = &ph.loops[j..];
    let set = run.iter().fold(AxisSet::EMPTY, |s, &d| s.with(d));
    // Tensors: none of the run, or all of it as their trailing dims.
    let mut tensors: Vec<normjit_ir::TensorId> = ph.stores.iter().map(|s| s.0).collect();
    for &(v, depth) in &ph.nodes {
        let node = &nodes[v.0 as usize];
        // Nothing computed between the merged loops; no random numbers or
        // scratch reads inside them.
        if depth > j && depth < n {
            return false;
        }
        if depth == n {
            match node.op {
                LOp::Load(t) => tensors.push(t),
                LOp::Uniform(..) | LOp::Reduced(_) => return false,
                _ => {}
            }
            if !set.is_subset(node.axes) {
                return false;
            }
        }
    }
    for t in tensors {
        let dims = &k.tensors[t].dims;
        let has = dims.iter().filter(|d| set.contains(**d)).count();
        if has != 0 && (has != run.len() || !dims.ends_with(run)) {
            return false;
        }
    }
    // Reductions flush outside the merged loops (registers).
    ph.accums.iter().all(|a| accums[a.0 as usize].flush_depth <= j)
}
