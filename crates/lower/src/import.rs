//! Pass `import`: kernel IR to loop-IR values.
//!
//! Establishes: one [`LNode`] per distinct computation (loads of the same
//! tensor and identical expressions are merged), per-call scalars marked
//! (evaluated in f64), every reduction turned into an [`Accum`] read back through
//! [`LOp::Reduced`], and only values that reach a store kept. With `fma`,
//! per-element `a * b ± c` are contracted to [`LOp::Fma`]. The variances
//! of `onepass` pairs are computed from shifted sums (see
//! [`crate::onepass`]).

use crate::loopir::*;
use crate::onepass::Pair;
use normjit_ir::{AxisSet, Binary, Cmp, Kernel, Op, Reduce, Rounding, Stmt, TensorId, Unary, ValueId, ValueType};
use std::collections::HashMap;

/// Imported values plus the kernel's stores, in statement order.
pub struct Imported {
    pub nodes: Vec<LNode>,
    pub accums: Vec<Accum>,
    pub stores: Vec<(TensorId, LValue)>,
    /// The user's name of each value, where a `let` gave it one (the first).
    pub names: Vec<Option<String>>,
}

#[derive(Hash, PartialEq, Eq)]
enum Key {
    Const(u64),
    Op(String),
}

pub fn import(k: &Kernel, fma: bool, onepass: &[Pair]) -> Imported {
    // Reachability from stores: dead values are not lowered. A one-pass
    // variance reads `x` (through the shifted sums), not `(x - mu)^2`.
    let mut live = vec![false; k.nodes.len()];
    for s in &k.stmts {
        if let Stmt::Store { value, .. } = s {
            live[value.index()] = true;
        }
    }
    for (id, node) in k.nodes.iter().rev() {
        if live[id.index()] {
            match onepass.iter().find(|p| p.var == id) {
                Some(p) => {
                    live[p.x.index()] = true;
                    live[p.mu.index()] = true;
                }
                None => node.op.operands().for_each(|o| live[o.index()] = true),
            }
        }
    }
    // Per one-pass pair (by index): what its mean made for its variance.
    let mut shifted: Vec<Option<Shifted>> = vec![None; onepass.len()];
    // Only the per-element work (values over every axis) is contracted: a
    // statistic's arithmetic runs once per row or channel, where fusing
    // saves nothing and, in a formula that cancels, changes which roundings
    // cancel (the one-pass variance `ms - mu * mu` at D = 2 lost half an
    // order of magnitude against the f32 reference).
    let all_axes = k.nodes.iter().fold(AxisSet::EMPTY, |s, (_, n)| s.union(n.axes));
    let mut out = Imported { nodes: Vec::new(), accums: Vec::new(), stores: Vec::new(), names: Vec::new() };
    let mut map: Vec<Option<LValue>> = vec![None; k.nodes.len()];
    let mut memo: HashMap<Key, LValue> = HashMap::new();
    let mut acc_memo: HashMap<String, AccId> = HashMap::new();
    for (id, node) in k.nodes.iter() {
        if !live[id.index()] {
            continue;
        }
        let m = |v: ValueId| map[v.index()].expect("operands come first");
        // A one-pass variance, from the shifted sums its mean made.
        if let Some(i) = onepass.iter().position(|p| p.var == id) {
            let sh = shifted[i].expect("the mean of a pair comes before its variance");
            map[id.index()] = Some(variance(&mut out, &mut memo, &mut acc_memo, sh, node.axes));
            continue;
        }
        let op = match &node.op {
            Op::Const(c) => LOp::Const(*c),
            Op::Param(p) => LOp::Param(*p),
            Op::Load(t) => LOp::Load(*t),
            Op::Unary(u, a) => LOp::Unary(*u, m(*a)),
            Op::Binary(b, x, y) => LOp::Binary(*b, m(*x), m(*y)),
            Op::Compare(c, x, y) => LOp::Compare(*c, m(*x), m(*y)),
            Op::Select(c, x, y) => LOp::Select(m(*c), m(*x), m(*y)),
            Op::Count(ax) => LOp::Count(*ax),
            Op::Uniform(p, ax) => LOp::Uniform(*p, *ax, 0),
            Op::Reduce(r, a, axes) => LOp::Reduced(accum(&mut out, &mut acc_memo, *r, m(*a), *axes)),
        };
        // `x / s` with `s` a per-call scalar and `x` per-element: `x * (1 /
        // s)`, the reciprocal a per-call scalar too (f64, rounded to f32
        // once), so each element costs a multiply instead of a divide —
        // the divider is what bounds optimizer steps like AdamW's
        // `sqrt(v) / bc2`. Within 1.5 ulp of the f32 divide, except where
        // `1 / s` overflows f32 (|s| < 2.9e-39).
        let op = match op {
            LOp::Binary(Binary::Div, x, y) if out.nodes[y.0 as usize].per_call && !out.nodes[x.0 as usize].per_call => {
                let r = intern(&mut out, &mut memo, LOp::Unary(Unary::Recip, y), ValueType::F32, AxisSet::EMPTY, true);
                LOp::Binary(Binary::Mul, x, r)
            }
            op => op,
        };
        // `x ^ n` for a literal integer 2 <= |n| <= 4 and a per-element `x`:
        // multiplications (and a reciprocal for n < 0), where `pow` is a
        // library call per lane. Correctly rounded for n = 2, within 2 ulp
        // of `powf` otherwise; `x ^ -n` is `1 / x^n`, so it is 0 (not a tiny
        // subnormal) once `x^n` overflows.
        let op = match op {
            LOp::Binary(Binary::Pow, x, y) if !out.nodes[x.0 as usize].per_call => match out.nodes[y.0 as usize].op {
                LOp::Const(c) if c.fract() == 0.0 && (1.0..=4.0).contains(&c.abs()) && c != 1.0 => {
                    power(&mut out, &mut memo, x, c as i32)
                }
                _ => op,
            },
            op => op,
        };
        let op = if fma && node.axes == all_axes { contract(&out, op) } else { op };
        let per_call = node.axes.is_empty()
            && match &op {
                LOp::Const(_) | LOp::Param(_) | LOp::Count(_) => true,
                LOp::Unary(..) | LOp::Binary(..) | LOp::Compare(..) | LOp::Select(..) | LOp::Fma(..) => {
                    op.operands().iter().all(|o| out.nodes[o.0 as usize].per_call)
                }
                LOp::Load(_) | LOp::Pivot(..) | LOp::Reduced(_) | LOp::Uniform(..) | LOp::StochasticRound(..) => false,
            };
        let v = intern(&mut out, &mut memo, op, node.ty, node.axes, per_call);
        map[id.index()] = Some(v);
        // The mean of a one-pass pair stays as it is (the same bits as in
        // two passes); its pass also sums `x - s`, for the variance.
        if let Some(i) = onepass.iter().position(|p| p.mu == id) {
            let Op::Reduce(_, x, r) = node.op else { unreachable!("a pair's mean is a reduction") };
            let (x, x_axes, kept) = (map[x.index()].expect("operands come first"), k.nodes[x].axes, node.axes);
            let s = intern(&mut out, &mut memo, LOp::Pivot(onepass[i].tensor, kept), ValueType::F32, kept, false);
            let d = intern(&mut out, &mut memo, LOp::Binary(Binary::Sub, x, s), ValueType::F32, x_axes, false);
            let a1 = mean(&mut out, &mut memo, &mut acc_memo, d, r, kept);
            shifted[i] = Some(Shifted { x, d, a1, reduced: r });
        }
    }
    out.names = vec![None; out.nodes.len()];
    for s in &k.stmts {
        match s {
            Stmt::Store { tensor, value } => {
                let mut v = map[value.index()].expect("stored values are live");
                let t = &k.tensors[*tensor];
                if let Rounding::Stochastic(seed) = t.rounding {
                    // The noise varies over every element stored, so the
                    // rounded value has the tensor's axes even where the
                    // value broadcasts.
                    let axes = t.axes();
                    let stream = tensor.index() as u32 + 1;
                    let mk = |op: LOp, out: &mut Imported| {
                        out.nodes.push(LNode { op, ty: ValueType::F32, axes, per_call: false });
                        out.names.push(None);
                        LValue(out.nodes.len() as u32 - 1)
                    };
                    let u = mk(LOp::Uniform(seed, axes, stream), &mut out);
                    v = mk(LOp::StochasticRound(v, u), &mut out);
                }
                out.stores.push((*tensor, v));
            }
            Stmt::Let { name, value } => {
                if let Some(v) = map[value.index()] {
                    out.names[v.0 as usize].get_or_insert_with(|| name.clone());
                }
            }
        }
    }
    out
}

/// The accumulator of `op(operand, reduced)`, made if no equal one exists.
fn accum(
    out: &mut Imported,
    acc_memo: &mut HashMap<String, AccId>,
    op: Reduce,
    operand: LValue,
    reduced: AxisSet,
) -> AccId {
    let key = format!("{op:?} {} {}", operand.0, reduced.bits());
    *acc_memo.entry(key).or_insert_with(|| {
        out.accums.push(Accum {
            op,
            operand,
            reduced,
            scratch_dims: Vec::new(),
            phase: usize::MAX,
            flush_depth: 0,
            cross: false,
        });
        AccId(out.accums.len() as u32 - 1)
    })
}

/// `mean(operand, r)`, read back over the `kept` axes.
fn mean(
    out: &mut Imported,
    memo: &mut HashMap<Key, LValue>,
    acc_memo: &mut HashMap<String, AccId>,
    operand: LValue,
    r: AxisSet,
    kept: AxisSet,
) -> LValue {
    let acc = accum(out, acc_memo, Reduce::Mean, operand, r);
    intern(out, memo, LOp::Reduced(acc), ValueType::F32, kept, false)
}

/// What the mean of a one-pass pair makes for its variance: the load `x`,
/// the shifted value `d = x - s`, `a1 = mean(d)`, and the reduced axes.
#[derive(Clone, Copy)]
struct Shifted {
    x: LValue,
    d: LValue,
    a1: LValue,
    reduced: AxisSet,
}

/// The variance of a one-pass pair from its shifted values, over the
/// `kept` axes: with `a2 = mean(d * d)`, `max(a2 - a1 * a1, 0)` while `a2`
/// is finite; else `a2 + mean(x - x)`, which is `+inf` where finite data
/// overflowed the squares or the sums (as the two passes' sum of `(x -
/// mu)^2` does) and NaN where `x` holds an infinity or a NaN (the two
/// passes' `inf - inf`). (`a2 - a1 * a1` would give NaN for both; `a1` and
/// `mu` overflow for both.)
fn variance(
    out: &mut Imported,
    memo: &mut HashMap<Key, LValue>,
    acc_memo: &mut HashMap<String, AccId>,
    sh: Shifted,
    kept: AxisSet,
) -> LValue {
    let f32 = ValueType::F32;
    let Shifted { x, d, a1, reduced: r } = sh;
    let x_axes = out.nodes[x.0 as usize].axes;
    let q = intern(out, memo, LOp::Binary(Binary::Mul, d, d), f32, x_axes, false);
    let a2 = mean(out, memo, acc_memo, q, r, kept);
    let a1a1 = intern(out, memo, LOp::Binary(Binary::Mul, a1, a1), f32, kept, false);
    let diff = intern(out, memo, LOp::Binary(Binary::Sub, a2, a1a1), f32, kept, false);
    let zero = intern(out, memo, LOp::Const(0.0), f32, AxisSet::EMPTY, true);
    let var = intern(out, memo, LOp::Binary(Binary::Max, diff, zero), f32, kept, false);
    let inf = intern(out, memo, LOp::Const(f64::INFINITY), f32, AxisSet::EMPTY, true);
    let finite = intern(out, memo, LOp::Compare(Cmp::Lt, a2, inf), ValueType::Bool, kept, false);
    let zero_or_nan = intern(out, memo, LOp::Binary(Binary::Sub, x, x), f32, x_axes, false);
    let finite_x = mean(out, memo, acc_memo, zero_or_nan, r, kept);
    let overflow = intern(out, memo, LOp::Binary(Binary::Add, a2, finite_x), f32, kept, false);
    intern(out, memo, LOp::Select(finite, var, overflow), f32, kept, false)
}

/// `a * b + c`, `a * b - c` or `c - a * b` as one fused multiply-add (for a
/// value over every axis), when the product is computed in f32 (not a
/// per-call scalar, which is f64):
/// one rounding instead of two, and one instruction instead of two. The
/// other users of `a * b` keep it. With two products (`a * b + c * d`) the
/// left one fuses. Accumulations (`sum(a * b)`) are not contracted: the
/// reduction order combines rounded element values.
fn contract(out: &Imported, op: LOp) -> LOp {
    let product = |v: LValue| match out.nodes[v.0 as usize] {
        LNode { op: LOp::Binary(Binary::Mul, a, b), per_call: false, .. } => Some((a, b)),
        _ => None,
    };
    match op {
        LOp::Binary(Binary::Add, x, y) => match (product(x), product(y)) {
            (Some((a, b)), _) => LOp::Fma(Fused::Add, a, b, y),
            (None, Some((a, b))) => LOp::Fma(Fused::Add, a, b, x),
            _ => op,
        },
        LOp::Binary(Binary::Sub, x, y) => match (product(x), product(y)) {
            (Some((a, b)), _) => LOp::Fma(Fused::Sub, a, b, y),
            (None, Some((a, b))) => LOp::Fma(Fused::SubFrom, a, b, x),
            _ => op,
        },
        op => op,
    }
}

/// `x ^ n` for `n` in `-4..=4` but 0 and 1, as the operation computing it:
/// the last multiplication of `x * x`, `(x * x) * x` or `s * s` with `s =
/// x * x`, or the reciprocal of that product (of `x` itself for -1).
fn power(out: &mut Imported, memo: &mut HashMap<Key, LValue>, x: LValue, n: i32) -> LOp {
    let axes = out.nodes[x.0 as usize].axes;
    let mul = |a: LValue, b: LValue| LOp::Binary(Binary::Mul, a, b);
    let last = match n.abs() {
        1 => None,
        2 => Some(mul(x, x)),
        3 => Some(mul(intern(out, memo, mul(x, x), ValueType::F32, axes, false), x)),
        _ => {
            let s = intern(out, memo, mul(x, x), ValueType::F32, axes, false);
            Some(mul(s, s))
        }
    };
    match (last, n < 0) {
        (Some(op), false) => op,
        (Some(op), true) => LOp::Unary(Unary::Recip, intern(out, memo, op, ValueType::F32, axes, false)),
        (None, _) => LOp::Unary(Unary::Recip, x),
    }
}

/// The value computing `op`, made if no equal one exists.
fn intern(
    out: &mut Imported,
    memo: &mut HashMap<Key, LValue>,
    op: LOp,
    ty: ValueType,
    axes: AxisSet,
    per_call: bool,
) -> LValue {
    let key = match &op {
        LOp::Const(c) => Key::Const(c.to_bits()),
        other => Key::Op(format!("{other:?}")),
    };
    *memo.entry(key).or_insert_with(|| {
        out.nodes.push(LNode { op, ty, axes, per_call });
        LValue(out.nodes.len() as u32 - 1)
    })
}
