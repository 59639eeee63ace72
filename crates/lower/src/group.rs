//! Pass `group`: which axes become the outermost group loops.
//!
//! Establishes: the group axes G, which every reduction keeps and every
//! store covers. Running all phases inside one iteration of G (one row of a
//! LayerNorm, one channel slab of an NCHW BatchNorm) lets later phases
//! re-read data the first phase brought into cache, so the input is read
//! from memory once. G is dropped when it would hoist the contiguous axis
//! out (BatchNorm over NHWC keeps C, the contiguous axis: there, arrays of
//! accumulators vectorized along C are better), or when the contiguous run
//! left under it is shorter than [`MIN_RUN`] elements.

use crate::loopir::Accum;
use crate::loopir::LNode;
use normjit_ir::{AxisSet, DimId, Kernel, TensorId};

/// Shortest contiguous run worth looping over inside a group iteration.
pub const MIN_RUN: usize = 16;

pub fn choose_group(
    k: &Kernel,
    dims: &[usize],
    order: &[DimId],
    nodes: &[LNode],
    accums: &[Accum],
    stores: &[(TensorId, crate::loopir::LValue)],
) -> Vec<DimId> {
    if accums.is_empty() {
        return Vec::new();
    }
    let all = order.iter().fold(AxisSet::EMPTY, |s, &d| s.with(d));
    let mut g = all;
    for a in accums {
        let operand_axes = nodes[a.operand.0 as usize].axes;
        g = g.intersect(operand_axes.minus(a.reduced));
    }
    for (t, _) in stores {
        g = g.intersect(k.tensors[*t].axes());
    }
    if g.is_empty() {
        return Vec::new();
    }
    let innermost = *order.last().expect("a kernel with reductions has dims");
    if g.contains(innermost) {
        return Vec::new();
    }
    // Contiguous run under the innermost group axis, in reference order.
    let last_g = order.iter().rposition(|d| g.contains(*d)).expect("g is not empty");
    let run: usize = order[last_g + 1..].iter().filter(|d| !g.contains(**d)).map(|d| dims[d.index()]).product();
    let reordered =
        order[last_g + 1..].iter().all(|d| !g.contains(*d)) && order[..last_g].iter().all(|d| g.contains(*d));
    if !reordered && run < MIN_RUN {
        return Vec::new();
    }
    order.iter().copied().filter(|d| g.contains(*d)).collect()
}
