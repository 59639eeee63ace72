//! Pass `group`: which axes become the outermost group loops.
//!
//! Establishes: the group axes G. Running all phases inside one iteration
//! of G (one row of a LayerNorm, one channel slab of an NCHW BatchNorm)
//! lets later phases re-read data the first phase brought into cache, so
//! the input is read from memory once.
//!
//! G is the set of axes every reduction keeps and every store covers. When
//! that is empty, G may instead be axes that some reductions reduce over
//! entirely: the *cross-group* reductions of a backward kernel
//! (`dgamma = sum(dy * xhat, N)` next to per-row statistics over `D`), or of
//! a regression gradient (`g = sum(r * X, M)` after the per-row residual
//! `r`). They accumulate across group iterations into per-chunk partials,
//! and their results are stored once, after the group loop. That is legal
//! when nothing inside the group reads them, every other reduction keeps
//! G, and every store either covers G or has none of its axes.
//!
//! Either way, G is dropped when it would hoist the contiguous axis out
//! (BatchNorm over NHWC keeps C, the contiguous axis: there, arrays of
//! accumulators vectorized along C are better), or when the contiguous run
//! left under it is shorter than [`MIN_RUN`] elements.

use crate::loopir::{Accum, LNode, LOp, LValue};
use normjit_ir::{AxisSet, DimId, Kernel, TensorId};

/// Shortest contiguous run worth looping over inside a group iteration.
pub const MIN_RUN: usize = 16;

pub fn choose_group(
    k: &Kernel,
    dims: &[usize],
    order: &[DimId],
    nodes: &[LNode],
    accums: &[Accum],
    stores: &[(TensorId, LValue)],
) -> Vec<DimId> {
    if accums.is_empty() {
        return Vec::new();
    }
    let all = order.iter().fold(AxisSet::EMPTY, |s, &d| s.with(d));
    let g = kept_by_all(k, nodes, accums, stores).intersect(all);
    if !g.is_empty() {
        return if worth_it(dims, order, g) { in_order(order, g) } else { Vec::new() };
    }
    // No axis is kept by every reduction: look for a group with
    // cross-group reductions, the most axes first (then the outermost).
    let axes: Vec<DimId> = order.to_vec();
    let mut best: Option<AxisSet> = None;
    for bits in 1u64..(1u64 << axes.len().min(16)) {
        let g =
            axes.iter().enumerate().filter(|(i, _)| bits >> i & 1 == 1).fold(AxisSet::EMPTY, |s, (_, &d)| s.with(d));
        if best.is_some_and(|b| b.iter().count() >= g.iter().count()) {
            continue;
        }
        if cross_group_legal(k, nodes, accums, stores, g) && worth_it(dims, order, g) {
            best = Some(g);
        }
    }
    best.map_or_else(Vec::new, |g| in_order(order, g))
}

/// The axes every reduction keeps and every store covers: any subset of
/// them is a legal group.
fn kept_by_all(k: &Kernel, nodes: &[LNode], accums: &[Accum], stores: &[(TensorId, LValue)]) -> AxisSet {
    let mut g = k.dims.ids().fold(AxisSet::EMPTY, |s, d| s.with(d));
    for a in accums {
        let operand_axes = nodes[a.operand.0 as usize].axes;
        g = g.intersect(operand_axes.minus(a.reduced));
    }
    for (t, _) in stores {
        g = g.intersect(k.tensors[*t].axes());
    }
    g
}

/// Whether `g` (not empty) may be the group of a plan: every reduction and
/// store keeps it, or it is a legal cross-group set (see
/// [`cross_group_legal`]). Whether it is worth it is another question.
pub fn legal(k: &Kernel, nodes: &[LNode], accums: &[Accum], stores: &[(TensorId, LValue)], g: AxisSet) -> bool {
    !accums.is_empty()
        && (g.is_subset(kept_by_all(k, nodes, accums, stores)) || cross_group_legal(k, nodes, accums, stores, g))
}

/// `g`'s axes in reference order.
fn in_order(order: &[DimId], g: AxisSet) -> Vec<DimId> {
    order.iter().copied().filter(|d| g.contains(*d)).collect()
}

/// Whether hoisting `g` keeps a contiguous inner loop worth running.
fn worth_it(dims: &[usize], order: &[DimId], g: AxisSet) -> bool {
    let innermost = *order.last().expect("a kernel with reductions has dims");
    if g.contains(innermost) {
        return false;
    }
    // Contiguous run under the innermost group axis, in reference order.
    let last_g = order.iter().rposition(|d| g.contains(*d)).expect("g is not empty");
    let run: usize = order[last_g + 1..].iter().filter(|d| !g.contains(**d)).map(|d| dims[d.index()]).product();
    let reordered =
        order[last_g + 1..].iter().all(|d| !g.contains(*d)) && order[..last_g].iter().all(|d| g.contains(*d));
    reordered || run >= MIN_RUN
}

/// Whether `g` can group a plan whose reductions over `g` are cross-group:
/// - a reduction either reduces over all of `g` (cross-group) or keeps all
///   of it (per group iteration), and at least one is cross-group;
/// - no reduction's operand depends on a cross-group result (they are
///   complete only after the group loop);
/// - a store either covers `g` (inside the group; its value must not
///   depend on a cross-group result) or has none of its axes (after the
///   group loop);
/// - what is stored after the group loop reads no tensor stored inside it
///   (an `inout` tensor's entry value would be gone).
fn cross_group_legal(k: &Kernel, nodes: &[LNode], accums: &[Accum], stores: &[(TensorId, LValue)], g: AxisSet) -> bool {
    let mut cross = vec![false; accums.len()];
    for (i, a) in accums.iter().enumerate() {
        if g.is_subset(a.reduced) {
            cross[i] = true;
        } else if !g.is_subset(nodes[a.operand.0 as usize].axes.minus(a.reduced)) {
            return false;
        }
    }
    if !cross.iter().any(|&c| c) {
        return false;
    }
    // Values that depend on a cross-group result.
    let mut late = vec![false; nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        late[i] = match n.op {
            LOp::Reduced(a) => cross[a.0 as usize],
            ref op => op.operands().iter().any(|o| late[o.0 as usize]),
        };
    }
    if accums.iter().any(|a| late[a.operand.0 as usize]) {
        return false;
    }
    let mut inside_stored = Vec::new();
    let mut after_values = Vec::new();
    for &(t, v) in stores {
        let axes = k.tensors[t].axes();
        if g.is_subset(axes) && !late[v.0 as usize] {
            inside_stored.push(t);
        } else if axes.intersect(g).is_empty() {
            after_values.push(v);
        } else {
            return false;
        }
    }
    let read_after = crate::stores::loads(nodes, after_values);
    !inside_stored.iter().any(|t| read_after.contains(t))
}
