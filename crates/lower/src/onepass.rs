//! Pass `onepass` (applied by `import`): which variances become one-pass
//! statistics.
//!
//! Finds `mu = mean(x, R)` and `var = mean((x - mu)^2, R)` (the square
//! written `xc * xc` or `xc ^ 2`) where `x` is an `in` tensor and the
//! group holds every axis the two keep. `import` then computes them from shifted
//! sums in one pass: with `s = x` at the group iteration's first element
//! (index 0 along `R`),
//!
//! ```text
//! a1 = mean(x - s, R)     a2 = mean((x - s)^2, R)
//! mu = s + a1             var = max(a2 - a1 * a1, 0)
//! ```
//!
//! `x - s` is exact for `x` within a factor of 2 of `s` (Sterbenz), so an
//! offset shared by the whole row (`x = 1e4 + N(0, 1)`) costs nothing, as
//! it does in the two-pass form; the cancellation in `a2 - a1 * a1` loses
//! `log2(1 + (mu - s)^2 / var)` bits, which is small unless the first
//! element is an outlier of the row (see ARCHITECTURE.md for the measured
//! error). A constant row gives `x - s = 0` everywhere: exactly `var = 0`.
//! Schedules without a group holding the kept axes keep two passes: the
//! shift must be one value per group iteration, loaded before its passes.

use normjit_ir::{AxisSet, Binary, Kernel, Op, Reduce, Role, TensorId, ValueId};

/// One variance to compute from shifted sums.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pair {
    /// `mean(x, R)`.
    pub mu: ValueId,
    /// `mean((x - mu)^2, R)`.
    pub var: ValueId,
    /// The load of `x`.
    pub x: ValueId,
    /// `x`'s tensor.
    pub tensor: TensorId,
}

/// The pairs of `k` whose kept axes `group` holds (at most one per mean).
pub fn pairs(k: &Kernel, group: AxisSet) -> Vec<Pair> {
    let mut out: Vec<Pair> = Vec::new();
    for (var, node) in k.nodes.iter() {
        let Op::Reduce(Reduce::Mean, sq, r) = node.op else { continue };
        if r.is_empty() || !node.axes.is_subset(group) {
            continue;
        }
        let xc = match k.nodes[sq].op {
            Op::Binary(Binary::Mul, a, b) if a == b => a,
            Op::Binary(Binary::Pow, a, e) if matches!(k.nodes[e].op, Op::Const(c) if c == 2.0) => a,
            _ => continue,
        };
        let Op::Binary(Binary::Sub, x, mu) = k.nodes[xc].op else { continue };
        let (Op::Load(tensor), Op::Reduce(Reduce::Mean, x2, r2)) = (&k.nodes[x].op, &k.nodes[mu].op) else {
            continue;
        };
        // The same tensor (loads are not merged in the kernel IR).
        let same = *x2 == x || k.nodes[*x2].op == Op::Load(*tensor);
        // Only `in` tensors: the shift is read outside the passes, where
        // the ordering of `inout` stores after their last reads does not
        // look (and a plan without a group may evaluate it once per
        // thread chunk of a pass that stores the tensor).
        if !same || *r2 != r || k.tensors[*tensor].role != Role::In || out.iter().any(|p| p.mu == mu) {
            continue;
        }
        out.push(Pair { mu, var, x, tensor: *tensor });
    }
    out
}
