//! Plausible generated inputs, for runs without data (`run` without
//! `--input`, `bench`, tests).
//!
//! Signed tensors get roughly standard-normal values. A tensor gets
//! non-negative values (uniform in `[0, 1)`) when the kernel needs it to:
//! when it reaches the argument of a `sqrt`, `rsqrt` or `log` through
//! operations that preserve sign (so Adam's `v` under `sqrt(v1)`, and
//! BatchNorm-inference's `running_var`), or when it is `inout` state whose
//! update keeps it non-negative if it starts so (second moments, running
//! variances). This is a small sign analysis over the kernel, not a table
//! of names.
//!
//! A tensor stored in a 16-bit type gets those values rounded to its type
//! (to nearest even, as a store rounds), so that every engine reads the
//! same values: the JIT the encoded elements, the interpreters the values.

use normjit_ir::{Binary, Kernel, Op, Reduce, Role, Unary, ValueId};
use std::collections::HashMap;

/// Deterministic generator (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
    }
    /// Approximately standard normal (sum of 4 uniforms, rescaled).
    fn normal(&mut self) -> f32 {
        let s: f32 = (0..4).map(|_| self.unit()).sum();
        (s - 2.0) * 1.732_050_8
    }
}

/// Generated entry values for every tensor (by index): `in` and `inout`
/// filled from `seed`, `out` zero-filled, each of the length its dims give
/// and each a value of its tensor's storage type. The caller has checked
/// that the sizes do not overflow.
pub fn generate(k: &Kernel, dims: &[usize], params: &[f64], seed: u64) -> Vec<Vec<f32>> {
    let nonneg = nonneg_tensors(k, dims, params);
    k.tensors
        .iter()
        .map(|(id, t)| {
            let n: usize = t.dims.iter().map(|d| dims[d.index()]).product();
            if t.role == Role::Out {
                return vec![0.0; n];
            }
            let mut rng = Rng(seed ^ (id.index() as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03));
            let round = |x: f32| t.dtype.round_f32(x);
            if nonneg[id.index()] {
                (0..n).map(|_| round(rng.unit())).collect()
            } else {
                (0..n).map(|_| round(rng.normal())).collect()
            }
        })
        .collect()
}

/// Values of load-free, axis-free nodes (constants, params, counts and
/// what is computed from them).
fn const_values(k: &Kernel, dims: &[usize], params: &[f64]) -> Vec<Option<f64>> {
    let mut c: Vec<Option<f64>> = vec![None; k.nodes.len()];
    for (id, n) in k.nodes.iter() {
        let g = |v: ValueId| c[v.index()];
        c[id.index()] = match n.op {
            Op::Const(x) => Some(x),
            Op::Param(p) => Some(params[p.index()]),
            Op::Count(ax) => Some(ax.iter().map(|d| dims[d.index()] as f64).product()),
            Op::Unary(u, a) => g(a).map(|x| u.eval64(x)),
            Op::Binary(b, x, y) => match (g(x), g(y)) {
                (Some(x), Some(y)) => Some(match b {
                    Binary::Add => x + y,
                    Binary::Sub => x - y,
                    Binary::Mul => x * y,
                    Binary::Div => x / y,
                    Binary::Pow => x.powf(y),
                    Binary::Min => x.min(y),
                    Binary::Max => x.max(y),
                }),
                _ => None,
            },
            _ => None,
        };
    }
    c
}

/// A key under which two nodes compute the same thing for the square test
/// (`g * g` loads `g` twice).
fn key(k: &Kernel, v: ValueId) -> String {
    match k.nodes[v].op {
        Op::Load(t) => format!("load{}", t.index()),
        _ => format!("v{}", v.index()),
    }
}

/// Leaves of a product tree.
fn factors(k: &Kernel, v: ValueId, out: &mut Vec<ValueId>) {
    match k.nodes[v].op {
        Op::Binary(Binary::Mul, a, b) if out.len() < 64 => {
            factors(k, a, out);
            factors(k, b, out);
        }
        _ => out.push(v),
    }
}

/// Factors of `v` that appear an odd number of times (the others pair up
/// into squares).
fn odd_factors(k: &Kernel, v: ValueId) -> Vec<ValueId> {
    let mut f = Vec::new();
    factors(k, v, &mut f);
    let mut count: HashMap<String, (usize, ValueId)> = HashMap::new();
    for x in f {
        count.entry(key(k, x)).or_insert((0, x)).0 += 1;
    }
    let mut odd: Vec<ValueId> = count.into_values().filter(|(n, _)| n % 2 == 1).map(|(_, v)| v).collect();
    odd.sort();
    odd
}

/// Which values are known non-negative (or NaN), given which tensors are.
fn nonneg_values(k: &Kernel, consts: &[Option<f64>], tensors: &[bool]) -> Vec<bool> {
    let mut nn = vec![false; k.nodes.len()];
    for (id, n) in k.nodes.iter() {
        let g = |v: ValueId| nn[v.index()];
        nn[id.index()] = if let Some(c) = consts[id.index()] {
            c >= 0.0 || c.is_nan()
        } else {
            match n.op {
                Op::Load(t) => tensors[t.index()],
                Op::Count(_) | Op::Uniform(..) => true,
                Op::Unary(Unary::Abs | Unary::Sqrt | Unary::Rsqrt | Unary::Exp | Unary::Sigmoid, _) => true,
                Op::Unary(Unary::Recip | Unary::Sign | Unary::Tanh | Unary::Erf, a) => g(a),
                Op::Binary(Binary::Mul, ..) => odd_factors(k, id).iter().all(|&f| g(f)),
                Op::Binary(Binary::Add | Binary::Div | Binary::Min, a, b) => g(a) && g(b),
                Op::Binary(Binary::Max, a, b) => g(a) || g(b),
                Op::Binary(Binary::Pow, a, _) => g(a),
                Op::Select(_, a, b) => g(a) && g(b),
                Op::Reduce(Reduce::Sum | Reduce::Mean | Reduce::Max | Reduce::Min, a, _) => g(a),
                _ => false,
            }
        };
    }
    nn
}

/// Which tensors must be non-negative for the kernel to make sense.
pub fn nonneg_tensors(k: &Kernel, dims: &[usize], params: &[f64]) -> Vec<bool> {
    let consts = const_values(k, dims, params);
    let mut t = vec![false; k.tensors.len()];
    // Rule 1: reaching a root's argument through sign-preserving operations.
    loop {
        let nn = nonneg_values(k, &consts, &t);
        let mut changed = false;
        for (_, n) in k.nodes.iter() {
            let root = match n.op {
                Op::Unary(Unary::Sqrt | Unary::Rsqrt | Unary::Log, a) if !nn[a.index()] => a,
                _ => continue,
            };
            let mut todo = vec![root];
            let mut steps = 0;
            while let Some(v) = todo.pop() {
                steps += 1;
                if nn[v.index()] || steps > 10_000 {
                    continue;
                }
                match k.nodes[v].op {
                    Op::Load(x) if !t[x.index()] => {
                        t[x.index()] = true;
                        changed = true;
                    }
                    Op::Binary(Binary::Add | Binary::Min | Binary::Max, a, b) | Op::Select(_, a, b) => {
                        todo.extend([a, b])
                    }
                    Op::Binary(Binary::Div | Binary::Pow, a, _) | Op::Reduce(_, a, _) | Op::Unary(Unary::Recip, a) => {
                        todo.push(a)
                    }
                    Op::Binary(Binary::Mul, ..) => todo.extend(odd_factors(k, v)),
                    _ => {}
                }
            }
        }
        if !changed {
            break;
        }
    }
    // Rule 2: state whose update keeps it non-negative.
    for (id, tensor) in k.tensors.iter() {
        if tensor.role != Role::InOut || t[id.index()] {
            continue;
        }
        let mut assumed = t.clone();
        assumed[id.index()] = true;
        let nn = nonneg_values(k, &consts, &assumed);
        if k.stored_value(id).is_some_and(|v| nn[v.index()]) {
            t[id.index()] = true;
        }
    }
    t
}
