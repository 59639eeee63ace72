//! Pass `hoist`: costly values that inner loops would recompute go to a
//! scratch array, computed once.
//!
//! Establishes: in a plan without a group, a value that costs a divide, a
//! square root or a vector math function (or is computed from one over the
//! same axes), that varies along the innermost loop but not along some loop
//! outside it, and that a value over more axes uses, is computed once per
//! element of its own axes into a scratch array, which the values over more
//! axes read back. (Varying along an outer loop only, it is already
//! computed outside the innermost loop, by `place`.)
//! NHWC BatchNorm's `rsqrt(var[C] + eps)` is the case: `C` is innermost,
//! so `place` can only put it inside the `N, H, W` loops, where it costs a
//! square root and a divide per element.
//!
//! With a group, a costly value that two passes of a group iteration need
//! (a row softmax's `e = exp(x - max)`: in the pass summing it and in the
//! pass writing `e / sum`) is computed once, in the first, into a scratch
//! array of one group iteration ([`ROW_BYTES`] at most, so that it stays in
//! cache), and read back by the second.
//!
//! The array is an accumulator that reduces over no axes ([`Accum`] with
//! `reduced` empty and op `max`): its phase runs over the value's axes and
//! combines each value once into the identity, `max(-inf, v) = v` exactly
//! (NaN stays NaN, `-0` stays `-0`: see the reduction order), and users
//! read it through [`LOp::Reduced`] like any reduction.

use crate::loopir::*;
use normjit_ir::{AxisSet, Binary, DimId, Kernel, Reduce, TensorId, Unary, ValueType};

/// Largest scratch array of one group iteration, in bytes (at the sizes
/// the plan is made for).
pub const ROW_BYTES: usize = 64 << 10;

/// Hoists (see the module doc), renumbering values so that operands still
/// come before their users.
#[allow(clippy::too_many_arguments)]
pub fn hoist(
    k: &Kernel,
    dims: &[usize],
    order: &[DimId],
    group: &[DimId],
    nodes: &mut Vec<LNode>,
    accums: &mut Vec<Accum>,
    stores: &mut [(TensorId, LValue)],
    names: &mut Vec<Option<String>>,
) {
    let n = nodes.len();
    // Costly: an expensive operation, or computed over the same axes from
    // a costly value (so the whole expression moves, not just its leaf).
    let mut costly = vec![false; n];
    for (i, node) in nodes.iter().enumerate() {
        let expensive = matches!(
            node.op,
            LOp::Unary(
                Unary::Sqrt
                    | Unary::Rsqrt
                    | Unary::Recip
                    | Unary::Exp
                    | Unary::Log
                    | Unary::Tanh
                    | Unary::Sigmoid
                    | Unary::Erf,
                _
            ) | LOp::Binary(Binary::Div | Binary::Pow, ..)
        );
        costly[i] = expensive
            || node.op.operands().iter().any(|o| costly[o.0 as usize] && nodes[o.0 as usize].axes == node.axes);
    }
    // Broadcast: used by a value, or stored to a tensor, over more axes.
    let mut broadcast = vec![false; n];
    for node in nodes.iter() {
        for o in node.op.operands() {
            broadcast[o.0 as usize] |= nodes[o.0 as usize].axes != node.axes;
        }
    }
    for &(t, v) in stores.iter() {
        broadcast[v.0 as usize] |= k.tensors[t].axes() != nodes[v.0 as usize].axes;
    }
    // Recomputed per element: it varies along the innermost loop, and some
    // loop outside is not one of its axes.
    let recomputed =
        |axes: AxisSet| order.last().is_some_and(|&d| axes.contains(d)) && order.iter().any(|d| !axes.contains(*d));
    // With a group: needed by a pass that accumulates it (at its own level)
    // and again by a later one (a value of a higher level uses it).
    let level = crate::phases::levels(nodes, accums);
    let mut feeds_acc = vec![false; n];
    for a in accums.iter() {
        feeds_acc[a.operand.0 as usize] = true;
    }
    for i in (0..n).rev() {
        if feeds_acc[i] {
            for o in nodes[i].op.operands() {
                feeds_acc[o.0 as usize] |= level[o.0 as usize] == level[i];
            }
        }
    }
    let mut used_later = vec![false; n];
    for (i, node) in nodes.iter().enumerate() {
        for o in node.op.operands() {
            used_later[o.0 as usize] |= level[i] > level[o.0 as usize];
        }
    }
    let g = group.iter().fold(AxisSet::EMPTY, |s, &d| s.with(d));
    let row_bytes = |axes: AxisSet| axes.minus(g).iter().fold(4usize, |b, d| b.saturating_mul(dims[d.index()]));
    let hoisted: Vec<bool> = (0..n)
        .map(|i| {
            let node = &nodes[i];
            let wanted = if group.is_empty() {
                broadcast[i] && recomputed(node.axes)
            } else {
                feeds_acc[i] && used_later[i] && row_bytes(node.axes) <= ROW_BYTES && !node.axes.minus(g).is_empty()
            };
            wanted && costly[i] && !node.per_call && node.ty == ValueType::F32 && !matches!(node.op, LOp::Reduced(_))
        })
        .collect();
    if !hoisted.contains(&true) {
        return;
    }
    // New arena: each hoisted value followed by its read-back. Values over
    // more axes or of a higher level, and stores over more axes, use the
    // read-back; the others and accumulators (whose phases run over the
    // value's axes) the value, so that a chain of hoisted values fills its
    // arrays in one pass.
    let existing = accums.len();
    let mut value = vec![LValue(0); n];
    let mut read = vec![LValue(0); n];
    let mut out: Vec<LNode> = Vec::with_capacity(n + 4);
    let mut out_names = Vec::with_capacity(n + 4);
    for (i, node) in nodes.iter().enumerate() {
        let mut node = node.clone();
        let (axes, lvl) = (node.axes, level[i]);
        let operand = |o: LValue| {
            let j = o.0 as usize;
            if nodes[j].axes == axes && level[j] == lvl {
                value[j]
            } else {
                read[j]
            }
        };
        node.op = remap(&node.op, operand);
        out.push(node);
        out_names.push(names[i].clone());
        value[i] = LValue(out.len() as u32 - 1);
        read[i] = value[i];
        if hoisted[i] {
            accums.push(Accum {
                op: Reduce::Max,
                operand: value[i],
                reduced: AxisSet::EMPTY,
                scratch_dims: Vec::new(),
                phase: usize::MAX,
                flush_depth: 0,
                cross: false,
            });
            let acc = AccId(accums.len() as u32 - 1);
            out.push(LNode { op: LOp::Reduced(acc), ty: ValueType::F32, axes, per_call: false });
            out_names.push(names[i].clone());
            read[i] = LValue(out.len() as u32 - 1);
        }
    }
    for a in &mut accums[..existing] {
        a.operand = value[a.operand.0 as usize];
    }
    for (t, v) in stores.iter_mut() {
        let same = k.tensors[*t].axes() == nodes[v.0 as usize].axes;
        *v = if same { value[v.0 as usize] } else { read[v.0 as usize] };
    }
    *nodes = out;
    *names = out_names;
}

/// `op` with its operands renumbered by `map`.
fn remap(op: &LOp, map: impl Fn(LValue) -> LValue) -> LOp {
    let m = |v: &LValue| map(*v);
    match op {
        LOp::Unary(u, a) => LOp::Unary(*u, m(a)),
        LOp::Binary(b, x, y) => LOp::Binary(*b, m(x), m(y)),
        LOp::Fma(f, a, b, c) => LOp::Fma(*f, m(a), m(b), m(c)),
        LOp::Compare(c, x, y) => LOp::Compare(*c, m(x), m(y)),
        LOp::Select(c, x, y) => LOp::Select(m(c), m(x), m(y)),
        LOp::StochasticRound(x, u) => LOp::StochasticRound(m(x), m(u)),
        LOp::Const(_)
        | LOp::Param(_)
        | LOp::Load(_)
        | LOp::Pivot(..)
        | LOp::Reduced(_)
        | LOp::Count(_)
        | LOp::Uniform(..) => op.clone(),
    }
}
