//! The structural verifier: re-checks every [`Kernel`] invariant from
//! scratch.
//!
//! The builder already enforces these as it goes; this independent check
//! runs after construction in debug builds and in tests, so a builder bug
//! shows up as a failed verification instead of a miscompile later. A
//! failure here is an internal error, not a user error.

use crate::dtype::{DType, Rounding};
use crate::kernel::*;
use std::collections::HashSet;

/// Checks `k`'s invariants; the error names the first one broken.
pub fn verify(k: &Kernel) -> Result<(), String> {
    if k.dims.len() > MAX_DIMS {
        return Err(format!("{} dims, more than {MAX_DIMS}", k.dims.len()));
    }
    let mut names = HashSet::new();
    let decl_names = k
        .dims
        .iter()
        .map(|(_, d)| &d.name)
        .chain(k.tensors.iter().map(|(_, t)| &t.name))
        .chain(k.params.iter().map(|(_, p)| &p.name));
    for n in decl_names {
        if !names.insert(n.as_str()) {
            return Err(format!("name `{n}` declared twice"));
        }
    }
    for (id, t) in k.tensors.iter() {
        let mut seen = AxisSet::EMPTY;
        for &d in &t.dims {
            if k.dims.get(d).is_none() || seen.contains(d) {
                return Err(format!("tensor {id:?} has a bad or repeated dim {d:?}"));
            }
            seen = seen.with(d);
        }
        if let Rounding::Stochastic(p) = t.rounding {
            let seed_ok = k.params.get(p).is_some_and(|p| p.ty == ParamType::U32);
            if !seed_ok || t.dtype != DType::BF16 || !t.role.is_written() {
                return Err(format!(
                    "tensor {id:?} rounds stochastically but is not a written bf16 tensor with a u32 seed"
                ));
            }
        }
    }
    let all_dims = AxisSet::from_bits(if k.dims.len() == 64 { u64::MAX } else { (1u64 << k.dims.len()) - 1 });
    for (id, node) in k.nodes.iter() {
        for o in node.op.operands() {
            if o >= id {
                return Err(format!("node {id:?} uses {o:?}, which does not come before it"));
            }
        }
        let ty = |v: ValueId| k.nodes[v].ty;
        let ax = |v: ValueId| k.nodes[v].axes;
        let f32s = |vs: &[ValueId]| vs.iter().all(|&v| ty(v) == ValueType::F32);
        let (want_ty, want_axes) = match node.op {
            Op::Const(c) if c.is_finite() => (ValueType::F32, AxisSet::EMPTY),
            Op::Param(p) if k.params.get(p).is_some_and(|p| p.ty == ParamType::F32) => (ValueType::F32, AxisSet::EMPTY),
            Op::Load(t) if k.tensors.get(t).is_some_and(|t| t.role != Role::Out) => {
                (ValueType::F32, k.tensors[t].axes())
            }
            Op::Unary(_, a) if f32s(&[a]) => (ValueType::F32, ax(a)),
            Op::Binary(_, a, b) if f32s(&[a, b]) => (ValueType::F32, ax(a).union(ax(b))),
            Op::Compare(_, a, b) if f32s(&[a, b]) => (ValueType::Bool, ax(a).union(ax(b))),
            Op::Select(c, a, b) if ty(c) == ValueType::Bool && f32s(&[a, b]) => {
                (ValueType::F32, ax(c).union(ax(a)).union(ax(b)))
            }
            Op::Reduce(_, a, r) if f32s(&[a]) && !r.is_empty() && r.is_subset(ax(a)) => {
                (ValueType::F32, ax(a).minus(r))
            }
            Op::Count(r) if !r.is_empty() && r.is_subset(all_dims) => (ValueType::F32, AxisSet::EMPTY),
            Op::Uniform(p, r)
                if k.params.get(p).is_some_and(|p| p.ty == ParamType::U32)
                    && !r.is_empty()
                    && r.is_subset(all_dims) =>
            {
                (ValueType::F32, r)
            }
            _ => return Err(format!("node {id:?} is ill-typed: {:?}", node.op)),
        };
        if node.ty != want_ty || node.axes != want_axes {
            return Err(format!(
                "node {id:?} has type {:?} axes {:?}, expected {want_ty:?} {want_axes:?}",
                node.ty, node.axes
            ));
        }
    }
    let mut stored = vec![0u32; k.tensors.len()];
    for s in &k.stmts {
        match *s {
            Stmt::Let { ref name, value } => {
                if k.nodes.get(value).is_none() || !names.insert(name.as_str()) {
                    return Err(format!("let `{name}` is unbound or rebinds a name"));
                }
            }
            Stmt::Store { tensor, value } => {
                let (Some(t), Some(v)) = (k.tensors.get(tensor), k.nodes.get(value)) else {
                    return Err("store of a foreign tensor or value".into());
                };
                if !t.role.is_written() || v.ty != ValueType::F32 || !v.axes.is_subset(t.axes()) {
                    return Err(format!("bad store to `{}`", t.name));
                }
                stored[tensor.index()] += 1;
            }
        }
    }
    for (id, t) in k.tensors.iter() {
        let want = u32::from(t.role.is_written());
        if stored[id.index()] != want {
            return Err(format!("`{}` is stored {} times, expected {want}", t.name, stored[id.index()]));
        }
    }
    Ok(())
}
