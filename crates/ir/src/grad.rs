//! Reverse-mode differentiation of kernels: [`grad`] turns a kernel into its
//! backward kernel, an ordinary [`Kernel`] made with the
//! [`KernelBuilder`] that prints as `.nj` text a user can read and edit.
//!
//! This module owns the adjoint rule of every [`Op`], the signature and
//! naming convention of backward kernels, and what a backward recomputes
//! (by default everything it needs from the forward; optionally, named
//! forward values are taken as inputs instead, [`GradOptions::saved`]).
//!
//! # What the backward computes
//!
//! For a kernel with `in` tensors `x_i` and `out` tensors `y_j = f_j(x)`,
//! the backward takes a cotangent `dy_j` per output and stores, for each
//! tensor `x` named in `wrt`, the vector-Jacobian product
//! `dx = Σ_j (∂y_j/∂x)ᵀ dy_j`. With `dy_j = ∂L/∂y_j` for some loss `L`,
//! `dx = ∂L/∂x`, as `torch.autograd.grad(y, x, dy)` gives.
//!
//! # Signature and names
//!
//! For a kernel `K`, the backward is called `K_grad` and declares, in order:
//! - the dims of `K`, in order;
//! - every `in` tensor of `K`, unchanged (a stable signature: the caller
//!   passes what it passed to the forward), even those the backward does
//!   not read (`normjit check` then warns that they are unused; set
//!   [`GradOptions::prune_unused`] to leave them out);
//! - one `in` cotangent per `out` tensor of `K`, named `d` + its name
//!   (`dy` for `y`), with that tensor's dims and storage type;
//! - one `in` tensor per saved value ([`GradOptions::saved`]), named as
//!   the value, `f32` over the value's axes in dim declaration order;
//! - one `out` gradient per `wrt` tensor, in `wrt` order, named `d` + its
//!   name (`dx`, `dgamma`), with that tensor's dims and storage type;
//! - every param of `K`, with its type and default, in order.
//!
//! A generated tensor name (`dy`, `dx`, a saved value's name) that would
//! collide with another name of the signature is an error: rename the
//! forward's tensor. Names of intermediate values are free: the backward
//! names the values it recomputes as the forward's `let`s do (`mu`, `xc`),
//! the adjoint of a `let` value `v` is bound as `dv` (`dxc`) unless
//! folding merged it into another expression, and other values used more
//! than once (or nested too deeply to print inline) get `OPk` (a forward
//! value: `rsqrt1`), `dOPk` (its adjoint: `dmul1`) or `tk`. Where such a
//! name is already taken, a suffix `_1`, `_2`, ... makes it unique.
//!
//! # Adjoint rules
//!
//! `g` is the adjoint of the node's result `r`; operands stand for their
//! primal values (recomputed, or loaded when saved). "none" means no
//! gradient flows to the operands. `a + a`, `a - a` and `a * a` also cover
//! two operands that compute the same value (the text's `x * x` loads `x`
//! twice).
//!
//! | op | adjoint to the operands |
//! |---|---|
//! | `const`, param, `count`, `uniform` | none (`uniform` has no gradient, but its value is recomputed where a rule needs it: dropout's mask comes back from the same seed and index) |
//! | load of `x` | `g` is added into `dx` |
//! | `-a` | `a += -g` |
//! | `abs(a)` | `a += g * sign(a)` (subgradient 0 at `a = 0`) |
//! | `sign(a)` | none (0, also at 0) |
//! | `sqrt(a)` | `a += 0.5 * g / r` (inf at `a = 0`, as PyTorch) |
//! | `rsqrt(a)` | `a += -0.5 * g * (r * r * r)` |
//! | `exp(a)` | `a += g * r` |
//! | `log(a)` | `a += g / a` |
//! | `recip(a)` | `a += -(g * (r * r))` |
//! | `tanh(a)` | `a += g * (1 - r * r)` |
//! | `sigmoid(a)` | `a += g * (r * (1 - r))` |
//! | `erf(a)` | `a += g * (1.1283791670955126 * exp(-(a * a)))` (`2 / sqrt(pi)`) |
//! | `a + b` | `a += g`, `b += g` (`a + a`: `a += 2 * g`) |
//! | `a - b` | `a += g`, `b -= g` (`a - a`: none) |
//! | `a * b` | `a += g * b`, `b += g * a` (`a * a`: `a += 2 * (g * a)`) |
//! | `a / b` | `a += g / b`, `b -= g / b * r` |
//! | `a ^ b` | `a += g * (b * a ^ (b - 1))`; `b += g * (r * log(a))`. A constant `b` is folded (`a ^ 2` gives `2 * (g * a)`, `a ^ 1` gives `g`, `a ^ 0` nothing). At `a = 0` with `b < 1` the first is ±inf or NaN, and for `a < 0` with a non-integer `b` NaN, as the forward; the second is NaN for `a < 0` (log of a negative) and for `a = 0` (`0 * -inf`), where PyTorch masks `a = 0, b ≥ 0` to 0 |
//! | `min(a, b)` | `c = a <= b`; `a += select(c, g, 0)`, `b += select(c, 0, g)`: ties (`a == b`, including `-0` and `+0`) go to `a`; where either is NaN the comparison is false and it goes to `b` |
//! | `max(a, b)` | the same with `c = a >= b` |
//! | comparisons | none |
//! | `select(c, a, b)` | `a += select(c, g, 0)`, `b += select(c, 0, g)`; `c` gets none |
//! | `sum(a, R)` | `a += g` (broadcast over `R`) |
//! | `mean(a, R)` | `a += g / count(R)` |
//! | `max(a, R)`, `min(a, R)` | `h = a == r`; `a += select(h, g / sum(select(h, 1, 0), R), 0)`: tied extrema share `g` evenly, as `torch.amax`/`amin` do. So the derivative is exact where ties are structural (a value constant along `R`). If the reduced elements hold a NaN, `r` is NaN, no element equals it, and no gradient flows |
//!
//! **Broadcasting.** Elementwise results have the union of their operands'
//! axes; the adjoint of an operand that lacks some of the result's axes `S`
//! is the sum of its contribution over `S` (`sum(e, S)`), times `count(S')`
//! for the axes `S'` the contribution itself lacks (it is constant along
//! them). A store that broadcasts a value over missing dims of its tensor
//! gives the value `sum(dy, those dims)`.
//!
//! **Non-smooth and non-finite points.** The rules above are the
//! documented subgradients; at a kink the gradient is one element of the
//! subdifferential, which finite differences do not check. As in PyTorch,
//! a non-finite local derivative on a branch `select` did not choose still
//! poisons the gradient: `select(x > 0, sqrt(x), 0)` at `x < 0` gives
//! `0 * 0.5 / sqrt(x) = NaN`. Stores round to the storage type; the
//! backward treats that rounding as the identity (straight through).
//!
//! # Recompute or saved
//!
//! By default the backward recomputes every forward value it needs from
//! the forward inputs (a LayerNorm backward recomputes the row mean and
//! variance): nothing is saved between the forward and backward calls.
//! Rules are written in terms of the result `r` where possible (`exp`,
//! `sqrt`, `rsqrt`, `recip`, `/`, `^`), so that a saved value spares the
//! recomputation of its operands. [`GradOptions::saved`] names forward
//! `let` values (`mu`, `var`) that become `in` tensors of the backward,
//! loaded instead of recomputed; gradients still flow through their
//! definitions (through `mu = mean(x, D)` to `x`). The caller must pass the
//! values the forward computed (the backward does not check them).
//!
//! # Form of the result
//!
//! Adjoints are folded as they are built: nothing is added to a zero
//! adjoint (no `0 + x`), multiplications by 1 and -1 and constant
//! arithmetic fold (in f64, as per-call scalars are evaluated), negations
//! move outward (`a - -b` is `a + b`), `x + x` is `2 * x`, and identical
//! subexpressions are shared; these are exact in IEEE arithmetic up to the
//! sign of a zero, and are all that recomputed forward values get, so the
//! backward sees the forward's values bit for bit. In adjoints, constant
//! factors also move outward through products, quotients and the non-zero
//! branch of a `select` until they meet (`2 * (0.5 * g / r * a)` becomes
//! `g / r * a`), which reassociates and so may round differently. Adjoint
//! sums use linearity: a factor constant along the summed axes moves out,
//! and a sum of two terms that both vary along every summed axis splits
//! (never one constant along them, which would cancel), so that no
//! reduction waits for a complete adjoint it could run alongside. A `wrt`
//! tensor whose gradient is zero (it reaches no output) is stored `0` over
//! its dims, not refused.
//!
//! The returned kernel is canonical: it is the parse of its own printed
//! text, so `parse(&k.to_string())` equals it.
//!
//! # Refused kernels
//!
//! A kernel with an `inout` tensor (an optimizer step) is refused: its
//! state update is not a function from inputs to outputs. Two kinds of
//! `inout` tensors are differentiable when named: state
//! ([`GradOptions::state`]: BatchNorm's running statistics, whose updates
//! the backward ignores, as PyTorch ignores its buffers) and results
//! computed in place ([`GradOptions::inplace`]: a residual stream `r`
//! updated to `r + x`, whose update becomes the output `r_out`, with
//! cotangent `dr_out`, while its entry value is an input with gradient
//! `dr`). `wrt` must name
//! distinct `in` tensors; unknown names, `out` tensors, params and dims are
//! errors that say so. Errors are `String`s; nothing here panics.

use crate::builder::KernelBuilder;
use crate::dtype::DType;
use crate::kernel::*;
use std::collections::{HashMap, HashSet};

/// Options of [`grad_with`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GradOptions {
    /// Forward values bound by `let` (by name: `mu`, `var`) that the
    /// backward takes as `in` tensors, named as the value and `f32` over
    /// its axes, instead of recomputing them. Empty by default: the
    /// backward recomputes what it needs.
    pub saved: Vec<String>,
    /// Leave out of the signature the forward `in` tensors, cotangents,
    /// saved values and params the backward never reads. Off by default,
    /// so that the signature depends only on the forward's and `wrt`; on,
    /// the backward passes `normjit check --deny-warnings`.
    pub prune_unused: bool,
    /// `inout` tensors whose update is state, not a result (BatchNorm's
    /// running statistics, as PyTorch's buffers): the backward reads their
    /// entry values like `in` tensors and ignores their updates.
    pub state: Vec<String>,
    /// `inout` tensors updated in place with a differentiable result (the
    /// residual stream of a fused residual add): the update is an output
    /// named `NAME_out`, with a cotangent `dNAME_out`, and the entry value an
    /// input like an `in` tensor (its gradient is `dNAME`).
    pub inplace: Vec<String>,
}

/// The backward of `kernel` with respect to the `in` tensors named in
/// `wrt`, recomputing the forward values it needs (see the
/// [module docs](mod@crate::grad) for the signature, names and adjoint rules).
///
/// ```
/// let k = normjit_ir::parse("kernel scale { dims N\n in x: f32[N]\n out y: f32[N]\n param a = 2\n y = a * x * x }").unwrap();
/// let g = normjit_ir::grad(&k, &["x"]).unwrap();
/// assert_eq!(g.name, "scale_grad");
/// assert!(g.to_string().contains("dx = "));
/// assert_eq!(normjit_ir::parse(&g.to_string()).unwrap(), g);
/// ```
pub fn grad(kernel: &Kernel, wrt: &[&str]) -> Result<Kernel, String> {
    grad_with(kernel, wrt, &GradOptions::default())
}

/// [`grad`] with options: saved forward values, pruning of unused inputs.
pub fn grad_with(kernel: &Kernel, wrt: &[&str], opts: &GradOptions) -> Result<Kernel, String> {
    crate::verify(kernel).map_err(|e| format!("`{}` is not a valid kernel: {e}", kernel.name))?;
    // The backward is returned in its text form; a forward that has none
    // (a builder-made literal beyond f32's range) has no backward either.
    let text = kernel.to_string();
    if let Err(d) = crate::parse(&text) {
        return Err(format!(
            "`{}` does not print as text that parses back, so neither would its backward:\n{}",
            kernel.name,
            d.render(&format!("{}.nj", kernel.name), &text)
        ));
    }
    let pure = functional(kernel, opts)?;
    for w in wrt {
        if opts.state.iter().any(|s| s == w) {
            return Err(format!("`{w}` is state (`state`): its update is not differentiated, nor is it"));
        }
    }
    let kernel = &pure;
    let plan = Plan::new(kernel, wrt, &opts.saved)?;
    let mut ad = Ad::new(kernel, &plan);
    ad.reverse();
    let built = ad.emit(&plan, opts.prune_unused)?;
    canonical(built)
}

/// `k` as the function from inputs to outputs that [`grad_with`]
/// differentiates: each `inout` tensor named in [`GradOptions::state`]
/// becomes `in` (its update dropped), each named in
/// [`GradOptions::inplace`] becomes `in` with its update stored to a new
/// `out` tensor `NAME_out`. Any other `inout` tensor is refused: an
/// optimizer step is not a differentiable kernel. (`grad_with(k, ..)`
/// equals `grad(functional(k, ..), ..)`; tests check one against finite
/// differences of the other.)
pub fn functional(k: &Kernel, opts: &GradOptions) -> Result<Kernel, String> {
    for (list, what) in [(&opts.state, "state"), (&opts.inplace, "in place")] {
        for (i, n) in list.iter().enumerate() {
            match k.tensor(n) {
                Some(t) if k.tensors[t].role == Role::InOut => {}
                _ => return Err(format!("`{n}` is listed as {what} but is not an inout tensor of `{}`", k.name)),
            }
            if list[..i].contains(n) {
                return Err(format!("`{n}` is listed twice as {what}"));
            }
        }
    }
    if let Some(n) = opts.state.iter().find(|n| opts.inplace.contains(n)) {
        return Err(format!("`{n}` is listed both as state and as updated in place"));
    }
    let mut out = k.clone();
    // The tensors again (an arena is append-only): inout ones named become
    // `in`; updates in place get their `out` tensors after all the others.
    let mut tensors = crate::entity::Arena::new();
    let mut added: Vec<(TensorId, Tensor)> = Vec::new();
    for (t, tensor) in k.tensors.iter() {
        let mut tensor = tensor.clone();
        if tensor.role == Role::InOut {
            let name = tensor.name.clone();
            if opts.state.contains(&name) {
                // Drop its store, and the store's span (spans stay by index).
                let keep: Vec<bool> =
                    out.stmts.iter().map(|s| !matches!(s, Stmt::Store { tensor, .. } if *tensor == t)).collect();
                if out.spans.stmts.len() == keep.len() {
                    let mut i = 0;
                    out.spans.stmts.retain(|_| (keep[i], i += 1).0);
                }
                let mut i = 0;
                out.stmts.retain(|_| (keep[i], i += 1).0);
            } else if opts.inplace.contains(&name) {
                let new = format!("{name}_out");
                if k.tensor(&new).is_some() || k.param(&new).is_some() || k.dim(&new).is_some() {
                    return Err(format!(
                        "the update of `{name}` would be named `{new}`, but that name is taken in `{}`",
                        k.name
                    ));
                }
                added.push((t, Tensor { name: new, role: Role::Out, ..tensor.clone() }));
            } else {
                return Err(format!(
                    "`{name}` is inout: optimizer steps are not differentiable kernels (`grad` takes kernels \
                     whose tensors are all `in` or `out`; `{}` updates state in place). If `{name}`'s update is \
                     state, such as running statistics, name it as state (`--state {name}`); if it is a result \
                     computed in place, such as a residual stream, name it as updated in place \
                     (`--inplace {name}`)",
                    k.name
                ));
            }
            tensor.role = Role::In;
        }
        tensors.push(tensor);
    }
    for (t, tensor) in added {
        let id = tensors.push(tensor);
        for s in &mut out.stmts {
            if let Stmt::Store { tensor, .. } = s {
                if *tensor == t {
                    *tensor = id;
                }
            }
        }
        if out.spans.tensors.len() + 1 == tensors.len() {
            out.spans.tensors.push(Default::default());
        }
    }
    out.tensors = tensors;
    Ok(out)
}

/// The parse of `k`'s printed text, checked to be a fixed point. A
/// builder-made kernel may differ from the parse of its text (in node
/// order, say); the parse prints back to itself exactly, which is the
/// promise made about the result.
fn canonical(k: Kernel) -> Result<Kernel, String> {
    let text = k.to_string();
    let parsed = crate::parse(&text).map_err(|d| {
        format!("internal error: the backward kernel does not parse back:\n{}{text}", d.render("grad.nj", &text))
    })?;
    match crate::parse(&parsed.to_string()) {
        Ok(again) if again == parsed => Ok(parsed),
        _ => Err(format!("internal error: the backward kernel does not print back to itself:\n{text}")),
    }
}

// ---------------------------------------------------------------------------
// The signature
// ---------------------------------------------------------------------------

/// A backward `in` tensor, by what it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Slot {
    /// A forward `in` tensor.
    Input(TensorId),
    /// The cotangent of a forward `out` tensor.
    Cotangent(TensorId),
    /// A saved forward value, by index into [`Plan::saved`].
    Saved(usize),
}

struct Input {
    slot: Slot,
    name: String,
    dtype: DType,
    dims: Vec<DimId>,
}

/// The backward's tensors, decided (and their names checked) before any
/// value is built.
struct Plan {
    /// `in` tensors in declaration order.
    inputs: Vec<Input>,
    /// Saved forward values, in the order given.
    saved: Vec<ValueId>,
    /// Gradients: the forward tensor and the name of its `out`, in `wrt` order.
    grads: Vec<(TensorId, String)>,
}

impl Plan {
    fn new(k: &Kernel, wrt: &[&str], saved: &[String]) -> Result<Plan, String> {
        let ins: Vec<&str> =
            k.tensors.iter().filter(|(_, t)| t.role == Role::In).map(|(_, t)| t.name.as_str()).collect();
        let in_list =
            if ins.is_empty() { "it has none".to_string() } else { format!("its `in` tensors: {}", ins.join(", ")) };
        if wrt.is_empty() {
            return Err(format!(
                "nothing to differentiate with respect to: name at least one `in` tensor of `{}` ({in_list})",
                k.name
            ));
        }
        let mut wrt_ids = Vec::with_capacity(wrt.len());
        for (i, &w) in wrt.iter().enumerate() {
            if wrt[..i].contains(&w) {
                return Err(format!("`{w}` is listed twice in the tensors to differentiate with respect to"));
            }
            match k.tensor(w) {
                Some(t) if k.tensors[t].role == Role::In => wrt_ids.push(t),
                Some(_) => {
                    return Err(format!(
                        "`{w}` is an `out` tensor of `{}`: it is what the kernel computes; gradients are taken \
                         with respect to `in` tensors ({in_list})",
                        k.name
                    ))
                }
                None if k.param(w).is_some() => {
                    return Err(format!(
                        "`{w}` is a param of `{}`, not a tensor: gradients are taken with respect to `in` \
                         tensors ({in_list})",
                        k.name
                    ))
                }
                None if k.dim(w).is_some() => {
                    return Err(format!("`{w}` is a dim of `{}`, not a tensor ({in_list})", k.name))
                }
                None => return Err(format!("`{}` has no tensor `{w}` ({in_list})", k.name)),
            }
        }

        let mut saved_ids: Vec<ValueId> = Vec::with_capacity(saved.len());
        for (i, s) in saved.iter().enumerate() {
            if saved[..i].contains(s) {
                return Err(format!("`{s}` is listed twice in the saved values"));
            }
            let found = k.stmts.iter().find_map(|st| match st {
                Stmt::Let { name, value } if name == s => Some(*value),
                _ => None,
            });
            let Some(v) = found else {
                let lets: Vec<&str> = k
                    .stmts
                    .iter()
                    .filter_map(|st| match st {
                        Stmt::Let { name, .. } => Some(name.as_str()),
                        _ => None,
                    })
                    .collect();
                let what = if k.tensor(s).is_some() || k.param(s).is_some() || k.dim(s).is_some() {
                    "names a tensor, param or dim, not a value bound by `let`"
                } else {
                    "is not a value bound by `let`"
                };
                let list = if lets.is_empty() {
                    "it binds none".to_string()
                } else {
                    format!("its values: {}", lets.join(", "))
                };
                return Err(format!("cannot save `{s}`: it {what} in `{}` ({list})", k.name));
            };
            if k.nodes[v].ty != ValueType::F32 {
                return Err(format!("cannot save `{s}`: it is a comparison; only f32 values can be saved"));
            }
            if let Some(j) = saved_ids.iter().position(|&u| u == v) {
                return Err(format!("cannot save `{s}`: it is the same value as `{}`, saved already", saved[j]));
            }
            saved_ids.push(v);
        }

        // Names: the forward's declarations, then each generated one, which
        // must be new.
        let mut taken: HashMap<String, String> = HashMap::new();
        for (_, d) in k.dims.iter() {
            taken.insert(d.name.clone(), "a dim".into());
        }
        for (_, t) in k.tensors.iter() {
            taken.insert(t.name.clone(), "a tensor".into());
        }
        for (_, p) in k.params.iter() {
            taken.insert(p.name.clone(), "a param".into());
        }
        let claim = |name: String, what: String, taken: &mut HashMap<String, String>| -> Result<String, String> {
            if let Some(prev) = taken.get(&name) {
                return Err(format!(
                    "{what} would be named `{name}`, but that is already the name of {prev} in the backward of \
                     `{}`; rename it in the forward kernel",
                    k.name
                ));
            }
            taken.insert(name.clone(), what);
            Ok(name)
        };
        let mut inputs: Vec<Input> = k
            .tensors
            .iter()
            .filter(|(_, t)| t.role == Role::In)
            .map(|(id, t)| Input { slot: Slot::Input(id), name: t.name.clone(), dtype: t.dtype, dims: t.dims.clone() })
            .collect();
        for (id, t) in k.tensors.iter().filter(|(_, t)| t.role == Role::Out) {
            let name = claim(format!("d{}", t.name), format!("the cotangent of `{}`", t.name), &mut taken)?;
            inputs.push(Input { slot: Slot::Cotangent(id), name, dtype: t.dtype, dims: t.dims.clone() });
        }
        for (i, (&v, s)) in saved_ids.iter().zip(saved).enumerate() {
            let name = claim(s.clone(), format!("the saved value `{s}`"), &mut taken)?;
            let dims: Vec<DimId> = k.nodes[v].axes.iter().collect();
            inputs.push(Input { slot: Slot::Saved(i), name, dtype: DType::F32, dims });
        }
        let mut grads = Vec::with_capacity(wrt_ids.len());
        for &t in &wrt_ids {
            let n = &k.tensors[t].name;
            grads.push((t, claim(format!("d{n}"), format!("the gradient of `{n}`"), &mut taken)?));
        }
        Ok(Plan { inputs, saved: saved_ids, grads })
    }
}

// ---------------------------------------------------------------------------
// The backward graph
// ---------------------------------------------------------------------------

/// Index of a node of the backward graph.
type B = u32;

/// An operation of the backward graph: the IR's ops over [`B`] nodes, with
/// constants by their bits so that equal nodes hash equal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum BOp {
    Const(u64),
    Param(ParamId),
    Load(Slot),
    Count(AxisSet),
    Uniform(ParamId, AxisSet),
    Unary(Unary, B),
    Binary(Binary, B, B),
    Compare(Cmp, B, B),
    Select(B, B, B),
    Reduce(Reduce, B, AxisSet),
}

impl BOp {
    fn operands(self) -> impl Iterator<Item = B> {
        let (a, b, c) = match self {
            BOp::Const(_) | BOp::Param(_) | BOp::Load(_) | BOp::Count(_) | BOp::Uniform(..) => (None, None, None),
            BOp::Unary(_, a) | BOp::Reduce(_, a, _) => (Some(a), None, None),
            BOp::Binary(_, a, b) | BOp::Compare(_, a, b) => (Some(a), Some(b), None),
            BOp::Select(c, a, b) => (Some(c), Some(a), Some(b)),
        };
        a.into_iter().chain(b).chain(c)
    }

    /// Leaves are written in place at each use, as the text front end
    /// makes them: they are never bound to names.
    fn is_leaf(self) -> bool {
        matches!(self, BOp::Const(_) | BOp::Param(_) | BOp::Load(_) | BOp::Count(_))
    }
}

/// What a node might be called, if it gets a name.
#[derive(Clone, Debug)]
enum Hint {
    /// Nothing known: a temporary (`tk`).
    Temp,
    /// The recomputed value of an unnamed forward value.
    Primal(ValueId),
    /// The adjoint of a forward value.
    Adjoint(ValueId),
    /// A forward `let` name.
    Named(String),
}

/// Strength of a hint: a stronger one replaces a weaker one. From
/// [`FORCED`] on, the node is bound to its name even when used once.
const WEAK: u8 = 1;
const FORCED: u8 = 2;
const FORWARD_NAME: u8 = 3;

/// Inline expressions deeper than this get a name (the printer would
/// otherwise name them `_tN` past its own limit of 64).
const MAX_INLINE: u32 = 32;

/// The backward as a hash-consed graph, built through simplifying
/// constructors. Nodes are created operands first, so index order is a
/// valid evaluation order.
struct Graph {
    ops: Vec<BOp>,
    axes: Vec<AxisSet>,
    hints: Vec<(u8, Hint)>,
    memo: HashMap<BOp, B>,
    slot_axes: HashMap<Slot, AxisSet>,
    /// Building recomputed forward values: only simplifications that are
    /// exact (up to the sign of a zero) apply, so the backward sees the
    /// forward's values bit for bit.
    exact: bool,
}

impl Graph {
    fn node(&mut self, op: BOp) -> B {
        if let Some(&b) = self.memo.get(&op) {
            return b;
        }
        let ax = |g: &Graph, b: B| g.axes[b as usize];
        // The IR's axis rules (see `Op`); the builder re-checks them.
        let axes = match op {
            BOp::Const(_) | BOp::Param(_) | BOp::Count(_) => AxisSet::EMPTY,
            BOp::Load(s) => self.slot_axes.get(&s).copied().unwrap_or(AxisSet::EMPTY),
            BOp::Uniform(_, r) => r,
            BOp::Unary(_, a) => ax(self, a),
            BOp::Binary(_, a, b) | BOp::Compare(_, a, b) => ax(self, a).union(ax(self, b)),
            BOp::Select(c, a, b) => ax(self, c).union(ax(self, a)).union(ax(self, b)),
            BOp::Reduce(_, a, r) => ax(self, a).minus(r),
        };
        let b = self.ops.len() as B;
        self.ops.push(op);
        self.axes.push(axes);
        self.hints.push((0, Hint::Temp));
        self.memo.insert(op, b);
        b
    }

    fn op(&self, b: B) -> BOp {
        self.ops[b as usize]
    }

    fn axes_of(&self, b: B) -> AxisSet {
        self.axes[b as usize]
    }

    fn hint(&mut self, b: B, strength: u8, h: Hint) {
        if !self.op(b).is_leaf() && strength > self.hints[b as usize].0 {
            self.hints[b as usize] = (strength, h);
        }
    }

    fn konst(&mut self, c: f64) -> B {
        self.node(BOp::Const(c.to_bits()))
    }

    fn as_const(&self, b: B) -> Option<f64> {
        match self.op(b) {
            BOp::Const(bits) => Some(f64::from_bits(bits)),
            _ => None,
        }
    }

    fn is_const(&self, b: B, c: f64) -> bool {
        self.as_const(b) == Some(c)
    }

    /// `f(a, b)` of two constants as a constant, when it can be a literal. Per-call scalars are evaluated in f64,
    /// so folding in f64 computes what the engines would.
    fn fold2(&mut self, a: B, b: B, f: impl Fn(f64, f64) -> f64) -> Option<B> {
        let r = f(self.as_const(a)?, self.as_const(b)?);
        literal(r).then(|| self.konst(r))
    }

    /// `c * x` as `(c, x)`.
    fn const_factor(&self, b: B) -> Option<(f64, B)> {
        match self.op(b) {
            BOp::Binary(Binary::Mul, c, x) => Some((self.as_const(c)?, x)),
            _ => None,
        }
    }

    fn negated(&self, b: B) -> Option<B> {
        match self.op(b) {
            BOp::Unary(Unary::Neg, x) => Some(x),
            _ => None,
        }
    }

    fn unary(&mut self, u: Unary, a: B) -> B {
        if u == Unary::Neg {
            return self.neg(a);
        }
        if let Some(c) = self.as_const(a) {
            let r = u.eval64(c);
            if literal(r) {
                return self.konst(r);
            }
        }
        self.node(BOp::Unary(u, a))
    }

    fn neg(&mut self, a: B) -> B {
        if let Some(c) = self.as_const(a) {
            return self.konst(-c);
        }
        if let Some(x) = self.negated(a) {
            return x;
        }
        self.node(BOp::Unary(Unary::Neg, a))
    }

    fn binary(&mut self, op: Binary, a: B, b: B) -> B {
        match op {
            Binary::Add => self.add(a, b),
            Binary::Sub => self.sub(a, b),
            Binary::Mul => self.mul(a, b),
            Binary::Div => self.div(a, b),
            Binary::Pow => self.pow(a, b),
            Binary::Min | Binary::Max => {
                let f = if op == Binary::Min { f64::min } else { f64::max };
                // Constants are finite, so f64's min/max equal the IR's.
                self.fold2(a, b, f).unwrap_or_else(|| self.node(BOp::Binary(op, a, b)))
            }
        }
    }

    fn add(&mut self, a: B, b: B) -> B {
        if let Some(r) = self.fold2(a, b, |x, y| x + y) {
            return r;
        }
        if self.is_const(a, 0.0) {
            return b;
        }
        if self.is_const(b, 0.0) {
            return a;
        }
        if a == b {
            let two = self.konst(2.0);
            return self.mul(two, a);
        }
        if let Some(x) = self.negated(b) {
            return self.sub(a, x);
        }
        if let Some(x) = self.negated(a) {
            return self.sub(b, x);
        }
        self.node(BOp::Binary(Binary::Add, a, b))
    }

    fn sub(&mut self, a: B, b: B) -> B {
        if let Some(r) = self.fold2(a, b, |x, y| x - y) {
            return r;
        }
        if self.is_const(b, 0.0) {
            return a;
        }
        if self.is_const(a, 0.0) {
            return self.neg(b);
        }
        if let Some(x) = self.negated(b) {
            return self.add(a, x);
        }
        self.node(BOp::Binary(Binary::Sub, a, b))
    }

    fn mul(&mut self, a: B, b: B) -> B {
        if let Some(r) = self.fold2(a, b, |x, y| x * y) {
            return r;
        }
        // Constants on the left: `-0.5 * g`.
        let (a, b) = if self.as_const(b).is_some() { (b, a) } else { (a, b) };
        if self.is_const(a, 1.0) {
            return b;
        }
        if self.is_const(a, -1.0) {
            return self.neg(b);
        }
        if !self.exact {
            // Constant factors move outward and meet: `2 * (0.5 * g / r * a)`
            // is `g / r * a`. Reassociation rounds differently, so not in
            // recomputed forward values.
            match (self.as_const(a), self.const_factor(a), self.const_factor(b)) {
                (Some(c), _, Some((d, y))) if literal(c * d) => {
                    let cd = self.konst(c * d);
                    return self.mul(cd, y);
                }
                (None, Some((c, x)), _) => {
                    let m = self.mul(x, b);
                    let c = self.konst(c);
                    return self.mul(c, m);
                }
                (None, None, Some((c, y))) => {
                    let m = self.mul(a, y);
                    let c = self.konst(c);
                    return self.mul(c, m);
                }
                _ => {}
            }
        }
        if let Some(x) = self.negated(a) {
            let m = self.mul(x, b);
            return self.neg(m);
        }
        if let Some(y) = self.negated(b) {
            let m = self.mul(a, y);
            return self.neg(m);
        }
        self.node(BOp::Binary(Binary::Mul, a, b))
    }

    fn div(&mut self, a: B, b: B) -> B {
        if let Some(r) = self.fold2(a, b, |x, y| x / y) {
            return r;
        }
        if self.is_const(b, 1.0) {
            return a;
        }
        if self.is_const(b, -1.0) {
            return self.neg(a);
        }
        if let Some(x) = self.negated(a) {
            let d = self.div(x, b);
            return self.neg(d);
        }
        if let (false, Some((c, x))) = (self.exact, self.const_factor(a)) {
            let d = self.div(x, b);
            let c = self.konst(c);
            return self.mul(c, d);
        }
        self.node(BOp::Binary(Binary::Div, a, b))
    }

    fn pow(&mut self, a: B, b: B) -> B {
        if let Some(r) = self.fold2(a, b, f64::powf) {
            return r;
        }
        // Exact for every `a`, NaN included (C's `powf(x, 1) = x`,
        // `powf(x, 0) = 1`).
        if self.is_const(b, 1.0) {
            return a;
        }
        // Not when `a` has axes: the constant would lose them, and a
        // recomputed value must keep its axes for the reductions over it.
        if self.is_const(b, 0.0) && self.axes_of(a).is_empty() {
            return self.konst(1.0);
        }
        self.node(BOp::Binary(Binary::Pow, a, b))
    }

    fn compare(&mut self, c: Cmp, a: B, b: B) -> B {
        self.node(BOp::Compare(c, a, b))
    }

    fn select(&mut self, c: B, a: B, b: B) -> B {
        // Only where that keeps the axes (see `pow`).
        if a == b && self.axes_of(c).is_subset(self.axes_of(a)) {
            return a;
        }
        // Adjoints: a constant factor or a negation of the one non-zero
        // branch moves out (`select(c, -0.5 * g, 0)` is `-0.5 * select(c,
        // g, 0)`, up to the sign of a zero), to meet other constants.
        if !self.exact {
            let factor = |g: &Graph, x: B| g.const_factor(x).or_else(|| g.negated(x).map(|y| (-1.0, y)));
            let pulled = match (self.as_const(a) == Some(0.0), self.as_const(b) == Some(0.0)) {
                (false, true) => factor(self, a).map(|(k, x)| (k, x, b)),
                (true, false) => factor(self, b).map(|(k, y)| (k, a, y)),
                _ => None,
            };
            if let Some((k, x, y)) = pulled {
                let s = self.select(c, x, y);
                let k = self.konst(k);
                return self.mul(k, s);
            }
        }
        self.node(BOp::Select(c, a, b))
    }

    fn reduce(&mut self, r: Reduce, a: B, axes: AxisSet) -> B {
        if r == Reduce::Sum {
            if let Some(x) = self.negated(a) {
                let s = self.reduce(r, x, axes);
                return self.neg(s);
            }
            if !self.exact {
                if let Some(s) = self.linear_sum(a, axes) {
                    return s;
                }
            }
        }
        self.node(BOp::Reduce(r, a, axes))
    }

    /// Adjoint sums by linearity, so that they need no pass of their own:
    /// a factor constant along the summed axes moves out (`sum(g * r, D)`
    /// is `r * sum(g, D)` for a per-row `r`), and a sum or difference of
    /// two terms that both vary along every summed axis splits
    /// (`sum(g * r - k * xc, D)` is `r * sum(g, D) - k * sum(xc, D)`, whose
    /// sums fuse with the others of their pass, where `sum(dxc, D)` needed
    /// the complete `dxc` first: LayerNorm's backward makes three passes
    /// over a row instead of four). A term that is constant along them
    /// (`x - mu`) is never split off: `sum(x) - D * mu` would cancel.
    fn linear_sum(&mut self, a: B, axes: AxisSet) -> Option<B> {
        let varies = |g: &Graph, x: B| axes.is_subset(g.axes_of(x));
        match self.op(a) {
            BOp::Binary(Binary::Mul, x, y) => {
                let (c, v) = if self.axes_of(x).intersect(axes).is_empty() {
                    (x, y)
                } else if self.axes_of(y).intersect(axes).is_empty() {
                    (y, x)
                } else {
                    return None;
                };
                if !varies(self, v) {
                    return None;
                }
                let s = self.reduce(Reduce::Sum, v, axes);
                Some(self.mul(c, s))
            }
            BOp::Binary(op @ (Binary::Add | Binary::Sub), x, y) if varies(self, x) && varies(self, y) => {
                let sx = self.reduce(Reduce::Sum, x, axes);
                let sy = self.reduce(Reduce::Sum, y, axes);
                Some(if op == Binary::Add { self.add(sx, sy) } else { self.sub(sx, sy) })
            }
            _ => None,
        }
    }

    fn count(&mut self, axes: AxisSet) -> B {
        self.node(BOp::Count(axes))
    }

    /// The contribution `e` of a result over `full` to an operand over
    /// `target` (`e`'s axes are within `full`): summed over the result's
    /// axes the operand lacks, times their size for those `e` lacks too.
    fn unbroadcast(&mut self, e: B, full: AxisSet, target: AxisSet) -> B {
        let extra = full.minus(target);
        let have = self.axes_of(e);
        let mut r = e;
        let summed = extra.intersect(have);
        if !summed.is_empty() {
            r = self.reduce(Reduce::Sum, r, summed);
        }
        let constant = extra.minus(have);
        if !constant.is_empty() {
            let n = self.count(constant);
            r = self.mul(r, n);
        }
        r
    }
}

// ---------------------------------------------------------------------------
// Reverse mode
// ---------------------------------------------------------------------------

struct Ad<'k> {
    k: &'k Kernel,
    g: Graph,
    /// Per forward value: its primal in the backward graph, once made.
    primal: Vec<Option<B>>,
    /// Per forward value: the slot it is loaded from, if saved.
    saved: Vec<Option<Slot>>,
    /// Per forward value: the first `let` name bound to it.
    names: Vec<Option<String>>,
    /// Per forward value: depends on a `wrt` tensor through ops that carry
    /// gradients.
    active: Vec<bool>,
    /// Per forward value: its adjoint so far (`None`: zero).
    adj: Vec<Option<B>>,
    /// Per forward tensor: its gradient so far.
    grads: Vec<Option<B>>,
}

impl<'k> Ad<'k> {
    fn new(k: &'k Kernel, plan: &Plan) -> Ad<'k> {
        let n = k.nodes.len();
        let mut slot_axes = HashMap::new();
        for i in &plan.inputs {
            let axes = i.dims.iter().fold(AxisSet::EMPTY, |s, &d| s.with(d));
            slot_axes.insert(i.slot, axes);
        }
        let mut saved = vec![None; n];
        for (i, &v) in plan.saved.iter().enumerate() {
            saved[v.index()] = Some(Slot::Saved(i));
        }
        let mut names: Vec<Option<String>> = vec![None; n];
        for s in &k.stmts {
            if let Stmt::Let { name, value } = s {
                names[value.index()].get_or_insert_with(|| name.clone());
            }
        }
        let mut wrt = vec![false; k.tensors.len()];
        for &(t, _) in &plan.grads {
            wrt[t.index()] = true;
        }
        let mut active = vec![false; n];
        for (id, node) in k.nodes.iter() {
            active[id.index()] = match node.op {
                Op::Load(t) => wrt[t.index()],
                // Comparisons carry no gradient, and a `select` gets none
                // through its condition.
                Op::Compare(..) => false,
                Op::Select(_, a, b) => active[a.index()] || active[b.index()],
                _ => node.op.operands().any(|o| active[o.index()]),
            };
        }
        Ad {
            k,
            g: Graph {
                ops: Vec::new(),
                axes: Vec::new(),
                hints: Vec::new(),
                memo: HashMap::new(),
                slot_axes,
                exact: false,
            },
            primal: vec![None; n],
            saved,
            names,
            active,
            adj: vec![None; n],
            grads: vec![None; k.tensors.len()],
        }
    }

    /// The primal value of forward value `v` in the backward graph, made
    /// (with whatever it depends on) on first use. Iterative: forward
    /// chains can be long.
    fn p(&mut self, v: ValueId) -> B {
        self.g.exact = true;
        let b = self.primal_of(v);
        self.g.exact = false;
        b
    }

    fn primal_of(&mut self, v: ValueId) -> B {
        let mut stack = vec![v];
        while let Some(&u) = stack.last() {
            let i = u.index();
            if self.primal[i].is_some() {
                stack.pop();
                continue;
            }
            if let Some(slot) = self.saved[i] {
                self.primal[i] = Some(self.g.node(BOp::Load(slot)));
                stack.pop();
                continue;
            }
            let k = self.k;
            let op = &k.nodes[u].op;
            let before = stack.len();
            stack.extend(op.operands().filter(|o| self.primal[o.index()].is_none()));
            if stack.len() > before {
                continue;
            }
            stack.pop();
            let pm = |o: ValueId, ad: &Ad| ad.primal[o.index()].unwrap_or(0);
            let b = match *op {
                Op::Const(c) => self.g.konst(c),
                Op::Param(p) => self.g.node(BOp::Param(p)),
                Op::Load(t) => self.g.node(BOp::Load(Slot::Input(t))),
                Op::Count(axes) => self.g.count(axes),
                Op::Uniform(p, axes) => self.g.node(BOp::Uniform(p, axes)),
                Op::Unary(f, a) => {
                    let a = pm(a, self);
                    self.g.unary(f, a)
                }
                Op::Binary(f, a, b) => {
                    let (a, b) = (pm(a, self), pm(b, self));
                    self.g.binary(f, a, b)
                }
                Op::Compare(c, a, b) => {
                    let (a, b) = (pm(a, self), pm(b, self));
                    self.g.compare(c, a, b)
                }
                Op::Select(c, a, b) => {
                    let (c, a, b) = (pm(c, self), pm(a, self), pm(b, self));
                    self.g.select(c, a, b)
                }
                Op::Reduce(r, a, axes) => {
                    let a = pm(a, self);
                    self.g.reduce(r, a, axes)
                }
            };
            match &self.names[i] {
                Some(n) => self.g.hint(b, FORWARD_NAME, Hint::Named(n.clone())),
                None => self.g.hint(b, WEAK, Hint::Primal(u)),
            }
            self.primal[i] = Some(b);
        }
        self.primal[v.index()].unwrap_or(0)
    }

    fn active(&self, v: ValueId) -> bool {
        self.active[v.index()]
    }

    /// Adds (or, `negate`, subtracts) contribution `e`, over a result with
    /// axes `full`, to the adjoint of operand `target`.
    fn acc(&mut self, target: ValueId, e: B, full: AxisSet, negate: bool) {
        if !self.active(target) {
            return;
        }
        let u = self.g.unbroadcast(e, full, self.k.nodes[target].axes);
        let i = target.index();
        self.adj[i] = Some(match (self.adj[i], negate) {
            (None, false) => u,
            (None, true) => self.g.neg(u),
            (Some(p), false) => self.g.add(p, u),
            (Some(p), true) => self.g.sub(p, u),
        });
    }

    /// The whole reverse pass: cotangents into the stored values, then
    /// every value in reverse order passes its adjoint to its operands.
    fn reverse(&mut self) {
        let k = self.k;
        for s in &k.stmts {
            if let Stmt::Store { tensor, value } = *s {
                if self.active(value) {
                    let dy = self.g.node(BOp::Load(Slot::Cotangent(tensor)));
                    self.acc(value, dy, k.tensors[tensor].axes(), false);
                }
            }
        }
        for v in k.nodes.ids().rev() {
            let Some(g) = self.adj[v.index()] else { continue };
            if !matches!(k.nodes[v].op, Op::Load(_)) {
                let strength = if self.names[v.index()].is_some() { FORCED } else { WEAK };
                self.g.hint(g, strength, Hint::Adjoint(v));
            }
            self.rule(v, g);
        }
    }

    /// The adjoint rule of `v` (see the table in the module docs).
    fn rule(&mut self, v: ValueId, g: B) {
        let k = self.k;
        let full = k.nodes[v].axes;
        match k.nodes[v].op {
            Op::Const(_) | Op::Param(_) | Op::Count(_) | Op::Uniform(..) | Op::Compare(..) => {}
            Op::Load(t) => {
                let i = t.index();
                self.grads[i] = Some(match self.grads[i] {
                    None => g,
                    Some(p) => self.g.add(p, g),
                });
            }
            Op::Unary(f, a) => {
                if !self.active(a) {
                    return;
                }
                let e = match f {
                    Unary::Neg => {
                        self.acc(a, g, full, true);
                        return;
                    }
                    Unary::Sign => return,
                    Unary::Abs => {
                        let pa = self.p(a);
                        let s = self.g.unary(Unary::Sign, pa);
                        self.g.mul(g, s)
                    }
                    Unary::Sqrt => {
                        let r = self.p(v);
                        let half = self.g.konst(0.5);
                        let hg = self.g.mul(half, g);
                        self.g.div(hg, r)
                    }
                    Unary::Rsqrt => {
                        let r = self.p(v);
                        let r2 = self.g.mul(r, r);
                        let r3 = self.g.mul(r2, r);
                        let c = self.g.konst(-0.5);
                        let cg = self.g.mul(c, g);
                        self.g.mul(cg, r3)
                    }
                    Unary::Exp => {
                        let r = self.p(v);
                        self.g.mul(g, r)
                    }
                    Unary::Log => {
                        let pa = self.p(a);
                        self.g.div(g, pa)
                    }
                    Unary::Tanh => {
                        // 1 - r^2
                        let r = self.p(v);
                        let r2 = self.g.mul(r, r);
                        let one = self.g.konst(1.0);
                        let d = self.g.sub(one, r2);
                        self.g.mul(g, d)
                    }
                    Unary::Sigmoid => {
                        // r (1 - r)
                        let r = self.p(v);
                        let one = self.g.konst(1.0);
                        let c = self.g.sub(one, r);
                        let d = self.g.mul(r, c);
                        self.g.mul(g, d)
                    }
                    Unary::Erf => {
                        // 2 / sqrt(pi) e^{-a^2}
                        let pa = self.p(a);
                        let a2 = self.g.mul(pa, pa);
                        let na2 = self.g.neg(a2);
                        let e = self.g.unary(Unary::Exp, na2);
                        let c = self.g.konst(std::f64::consts::FRAC_2_SQRT_PI);
                        let d = self.g.mul(c, e);
                        self.g.mul(g, d)
                    }
                    Unary::Recip => {
                        let r = self.p(v);
                        let r2 = self.g.mul(r, r);
                        let e = self.g.mul(g, r2);
                        self.acc(a, e, full, true);
                        return;
                    }
                };
                self.acc(a, e, full, false);
            }
            Op::Binary(f, a, b) => self.binary_rule(v, f, a, b, g, full),
            Op::Select(c, a, b) => {
                let pc = self.p(c);
                self.route(pc, a, b, g, full);
            }
            Op::Reduce(r, a, axes) => {
                if !self.active(a) {
                    return;
                }
                let of = k.nodes[a].axes;
                let e = match r {
                    Reduce::Sum => g,
                    Reduce::Mean => {
                        let n = self.g.count(axes);
                        self.g.div(g, n)
                    }
                    Reduce::Max | Reduce::Min => {
                        // Tied extrema share the adjoint evenly.
                        let (pa, pr) = (self.p(a), self.p(v));
                        let hit = self.g.compare(Cmp::Eq, pa, pr);
                        let (one, zero) = (self.g.konst(1.0), self.g.konst(0.0));
                        let ind = self.g.select(hit, one, zero);
                        let ties = self.g.reduce(Reduce::Sum, ind, axes);
                        let share = self.g.div(g, ties);
                        self.g.select(hit, share, zero)
                    }
                };
                self.acc(a, e, of, false);
            }
        }
    }

    fn binary_rule(&mut self, v: ValueId, f: Binary, a: ValueId, b: ValueId, g: B, full: AxisSet) {
        let (act_a, act_b) = (self.active(a), self.active(b));
        match f {
            Binary::Add | Binary::Sub => {
                if act_a && act_b && self.p(a) == self.p(b) {
                    // `x - x` (two copies of one value) is constant: no
                    // gradient, rather than two that cancel in rounding;
                    // `x + x` gives one operand `2 * g`.
                    if f == Binary::Add {
                        let two = self.g.konst(2.0);
                        let e = self.g.mul(two, g);
                        self.acc(a, e, full, false);
                    }
                    return;
                }
                self.acc(a, g, full, false);
                self.acc(b, g, full, f == Binary::Sub);
            }
            Binary::Mul => {
                let (pa, pb) = (self.p(a), self.p(b));
                if act_a && act_b && pa == pb {
                    // `a * a` (or two copies of one value, as the text makes
                    // `x * x`): both operands have the same derivative, so
                    // one of them takes `2 * g * a`.
                    let ga = self.g.mul(g, pa);
                    let two = self.g.konst(2.0);
                    let e = self.g.mul(two, ga);
                    self.acc(a, e, full, false);
                    return;
                }
                if act_a {
                    let e = self.g.mul(g, pb);
                    self.acc(a, e, full, false);
                }
                if act_b {
                    let e = self.g.mul(g, pa);
                    self.acc(b, e, full, false);
                }
            }
            Binary::Div => {
                let pb = self.p(b);
                let ga = self.g.div(g, pb);
                self.acc(a, ga, full, false);
                if act_b {
                    let r = self.p(v);
                    let e = self.g.mul(ga, r);
                    self.acc(b, e, full, true);
                }
            }
            Binary::Pow => {
                if act_a {
                    let (pa, pb) = (self.p(a), self.p(b));
                    // A constant exponent 0 makes a constant: no gradient
                    // (and no `0 * inf` at a = 0); exponent 1 passes `g`.
                    if self.g.is_const(pb, 1.0) {
                        self.acc(a, g, full, false);
                    } else if !self.g.is_const(pb, 0.0) {
                        let one = self.g.konst(1.0);
                        let bm1 = self.g.sub(pb, one);
                        let pw = self.g.pow(pa, bm1);
                        let d = self.g.mul(pb, pw);
                        let e = self.g.mul(g, d);
                        self.acc(a, e, full, false);
                    }
                }
                if act_b {
                    let (pa, r) = (self.p(a), self.p(v));
                    let l = self.g.unary(Unary::Log, pa);
                    let d = self.g.mul(r, l);
                    let e = self.g.mul(g, d);
                    self.acc(b, e, full, false);
                }
            }
            Binary::Min | Binary::Max => {
                if !(act_a || act_b) {
                    return;
                }
                // Ties go to the first operand.
                let (pa, pb) = (self.p(a), self.p(b));
                let c = self.g.compare(if f == Binary::Min { Cmp::Le } else { Cmp::Ge }, pa, pb);
                self.route(c, a, b, g, full);
            }
        }
    }

    /// `a` gets `g` where `c`, `b` where not.
    fn route(&mut self, c: B, a: ValueId, b: ValueId, g: B, full: AxisSet) {
        let zero = self.g.konst(0.0);
        if self.active(a) {
            let e = self.g.select(c, g, zero);
            self.acc(a, e, full, false);
        }
        if self.active(b) {
            let e = self.g.select(c, zero, g);
            self.acc(b, e, full, false);
        }
    }

    // -----------------------------------------------------------------------
    // Emission
    // -----------------------------------------------------------------------

    /// Builds the backward kernel: declarations, then every live non-leaf
    /// node in graph order (bound to a name where it is shared, deep, or
    /// named after a forward `let`), then the gradient stores.
    fn emit(self, plan: &Plan, prune: bool) -> Result<Kernel, String> {
        let k = self.k;
        let n = self.g.ops.len();
        let roots: Vec<Option<B>> = plan.grads.iter().map(|&(t, _)| self.grads[t.index()]).collect();
        let mut live = vec![false; n];
        let mut uses = vec![0u32; n];
        for &r in roots.iter().flatten() {
            live[r as usize] = true;
            uses[r as usize] += 1;
        }
        for b in (0..n).rev() {
            if live[b] {
                for o in self.g.ops[b].operands() {
                    live[o as usize] = true;
                    uses[o as usize] += 1;
                }
            }
        }
        let mut read_slots = HashSet::new();
        let mut read_params = HashSet::new();
        for (b, op) in self.g.ops.iter().enumerate() {
            match *op {
                BOp::Load(s) if live[b] => {
                    read_slots.insert(s);
                }
                BOp::Param(p) | BOp::Uniform(p, _) if live[b] => {
                    read_params.insert(p);
                }
                _ => {}
            }
        }

        let mut kb = KernelBuilder::new(&format!("{}_grad", k.name));
        for (_, d) in k.dims.iter() {
            kb.dim(&d.name);
        }
        let mut tensors: HashMap<Slot, TensorId> = HashMap::new();
        for i in &plan.inputs {
            if !prune || read_slots.contains(&i.slot) {
                tensors.insert(i.slot, kb.tensor(&i.name, Role::In, i.dtype, &i.dims));
            }
        }
        let outs: Vec<TensorId> = plan
            .grads
            .iter()
            .map(|(t, name)| kb.tensor(name, Role::Out, k.tensors[*t].dtype, &k.tensors[*t].dims))
            .collect();
        let mut params: HashMap<ParamId, ParamId> = HashMap::new();
        for (id, p) in k.params.iter() {
            if !prune || read_params.contains(&id) {
                params.insert(id, kb.typed_param(&p.name, p.ty, p.default));
            }
        }

        let mut names = Names::new(k, plan);
        // Which nodes get a `let`: shared, forced by their hint, or too
        // deep to print inline (the printer's rule, with a lower limit).
        let mut bind = vec![false; n];
        let mut depth = vec![0u32; n];
        for b in 0..n {
            let op = self.g.ops[b];
            if !live[b] || op.is_leaf() {
                continue;
            }
            let d = 1 + op.operands().map(|o| if bind[o as usize] { 0 } else { depth[o as usize] }).max().unwrap_or(0);
            bind[b] = uses[b] > 1 || self.g.hints[b].0 >= FORCED || d > MAX_INLINE;
            depth[b] = d;
        }

        // The recomputed forward values first, then the adjoints, each in
        // graph order (a topological order): the text reads like the
        // forward followed by its backward.
        let mut adjoint = vec![false; n];
        for b in 0..n {
            let op = self.g.ops[b];
            adjoint[b] = matches!(op, BOp::Load(Slot::Cotangent(_))) || op.operands().any(|o| adjoint[o as usize]);
        }
        let order = (0..n).filter(|&b| !adjoint[b]).chain((0..n).filter(|&b| adjoint[b]));
        let mut values: Vec<Option<ValueId>> = vec![None; n];
        let ctx = Emit { tensors: &tensors, params: &params };
        for b in order {
            let op = self.g.ops[b];
            if !live[b] || op.is_leaf() {
                continue;
            }
            let arg = |o: B, kb: &mut KernelBuilder| ctx.value(o, &self.g, &values, kb);
            let v = match op {
                BOp::Uniform(p, axes) => match params.get(&p) {
                    Some(&p) => kb.uniform(p, &axes.iter().collect::<Vec<_>>()),
                    None => return Err(internal(k, "a `uniform` seed param was left out")),
                },
                BOp::Unary(f, a) => {
                    let a = arg(a, &mut kb)?;
                    kb.unary(f, a)
                }
                BOp::Binary(f, a, c) => {
                    let (a, c) = (arg(a, &mut kb)?, arg(c, &mut kb)?);
                    kb.binary(f, a, c)
                }
                BOp::Compare(f, a, c) => {
                    let (a, c) = (arg(a, &mut kb)?, arg(c, &mut kb)?);
                    kb.compare(f, a, c)
                }
                BOp::Select(c, a, e) => {
                    let (c, a, e) = (arg(c, &mut kb)?, arg(a, &mut kb)?, arg(e, &mut kb)?);
                    kb.select(c, a, e)
                }
                BOp::Reduce(r, a, axes) => {
                    let a = arg(a, &mut kb)?;
                    kb.reduce(r, a, &axes.iter().collect::<Vec<_>>())
                }
                BOp::Const(_) | BOp::Param(_) | BOp::Load(_) | BOp::Count(_) => continue,
            };
            values[b] = Some(v);
            if bind[b] {
                let hint = self.g.hints[b].1.clone();
                let name = names.for_hint(&hint, k, &self.names);
                kb.let_(&name, v);
            }
        }
        for (i, &t) in outs.iter().enumerate() {
            let v = match roots[i] {
                Some(r) => ctx.value(r, &self.g, &values, &mut kb)?,
                // No path to an output: the gradient is zero.
                None => kb.constant(0.0),
            };
            kb.store(t, v);
        }
        kb.finish().map_err(|d| internal(k, &format!("the builder refused the backward: {d}")))
    }
}

/// True when `c` can be written as a literal: finite and within f32's
/// range, as the text format requires.
fn literal(c: f64) -> bool {
    c.is_finite() && c.abs() <= f32::MAX as f64
}

fn internal(k: &Kernel, what: &str) -> String {
    format!("internal error differentiating `{}`: {what}", k.name)
}

/// What emitting a node's operand needs: where tensors and params went.
struct Emit<'a> {
    tensors: &'a HashMap<Slot, TensorId>,
    params: &'a HashMap<ParamId, ParamId>,
}

impl Emit<'_> {
    /// The builder value for operand `o`: a leaf written afresh, or the
    /// value emitted for it.
    fn value(&self, o: B, g: &Graph, values: &[Option<ValueId>], kb: &mut KernelBuilder) -> Result<ValueId, String> {
        let missing = || "internal error in grad: an operand was not emitted before its user".to_string();
        Ok(match g.op(o) {
            BOp::Const(bits) => kb.constant(f64::from_bits(bits)),
            BOp::Param(p) => kb.param_value(*self.params.get(&p).ok_or_else(missing)?),
            BOp::Load(s) => kb.load(*self.tensors.get(&s).ok_or_else(missing)?),
            BOp::Count(axes) => kb.count(&axes.iter().collect::<Vec<_>>()),
            _ => values[o as usize].ok_or_else(missing)?,
        })
    }
}

/// The names of the backward's `let`s: unique, and never one of the
/// signature's names.
struct Names {
    /// Names in use: declarations and `let`s bound so far.
    taken: HashSet<String>,
    /// The forward's `let` names: generated names avoid them, so that a
    /// recomputed value keeps its forward name.
    reserved: HashSet<String>,
    /// Generated stems of unnamed forward values (`rsqrt1`).
    stems: HashMap<ValueId, String>,
    counters: HashMap<&'static str, u32>,
    temps: u32,
}

impl Names {
    fn new(k: &Kernel, plan: &Plan) -> Names {
        let mut taken: HashSet<String> = HashSet::new();
        taken.insert(format!("{}_grad", k.name));
        taken.extend(k.dims.iter().map(|(_, d)| d.name.clone()));
        taken.extend(k.params.iter().map(|(_, p)| p.name.clone()));
        taken.extend(plan.inputs.iter().map(|i| i.name.clone()));
        taken.extend(plan.grads.iter().map(|(_, n)| n.clone()));
        let reserved = k
            .stmts
            .iter()
            .filter_map(|s| match s {
                Stmt::Let { name, .. } => Some(name.clone()),
                _ => None,
            })
            .collect();
        Names { taken, reserved, stems: HashMap::new(), counters: HashMap::new(), temps: 0 }
    }

    fn free(&self, n: &str) -> bool {
        !self.taken.contains(n) && !self.reserved.contains(n)
    }

    /// `base`, or `base_1`, `base_2`, ...: the first not taken (a forward
    /// name may be its own; generated names avoid every forward name).
    fn unique(&mut self, base: &str, forward: bool) -> String {
        let ok = |s: &Names, n: &str, own: bool| !s.taken.contains(n) && (own || !s.reserved.contains(n));
        let mut name = base.to_string();
        let mut i = 0;
        while !ok(self, &name, forward && i == 0) {
            i += 1;
            name = format!("{base}_{i}");
        }
        self.taken.insert(name.clone());
        name
    }

    /// The stem of forward value `v`: its `let` name, or `OPk`.
    fn stem(&mut self, v: ValueId, k: &Kernel, fwd: &[Option<String>]) -> String {
        if let Some(n) = &fwd[v.index()] {
            return n.clone();
        }
        if let Some(s) = self.stems.get(&v) {
            return s.clone();
        }
        let word = match k.nodes[v].op {
            Op::Unary(f, _) => f.name(),
            Op::Binary(f, ..) => match f {
                Binary::Add => "add",
                Binary::Sub => "sub",
                Binary::Mul => "mul",
                Binary::Div => "div",
                Binary::Pow => "pow",
                Binary::Min => "min",
                Binary::Max => "max",
            },
            Op::Compare(..) => "cmp",
            Op::Select(..) => "select",
            Op::Reduce(r, ..) => r.name(),
            Op::Uniform(..) => "uniform",
            Op::Count(_) => "count",
            Op::Load(_) | Op::Const(_) | Op::Param(_) => "v",
        };
        let s = loop {
            let c = self.counters.entry(word).or_insert(0);
            *c += 1;
            let s = format!("{word}{c}");
            if self.free(&s) && !self.stems.values().any(|t| *t == s) {
                break s;
            }
        };
        self.stems.insert(v, s.clone());
        s
    }

    fn for_hint(&mut self, h: &Hint, k: &Kernel, fwd: &[Option<String>]) -> String {
        match h {
            Hint::Named(n) => self.unique(n, true),
            Hint::Primal(v) => {
                let s = self.stem(*v, k, fwd);
                self.unique(&s, false)
            }
            Hint::Adjoint(v) => {
                let s = self.stem(*v, k, fwd);
                self.unique(&format!("d{s}"), false)
            }
            Hint::Temp => loop {
                self.temps += 1;
                let t = format!("t{}", self.temps);
                if self.free(&t) && !self.stems.values().any(|s| *s == t) {
                    break self.unique(&t, false);
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(src: &str) -> Kernel {
        crate::parse(src).unwrap_or_else(|d| panic!("{}", d.render("t.nj", src)))
    }

    const LN: &str = include_str!("../../../ir/norm/layer_norm.nj");

    /// The statements of `g`'s text (after the declarations).
    fn body(g: &Kernel) -> Vec<String> {
        let text = g.to_string();
        let mut lines: Vec<String> =
            text.lines().skip_while(|l| !l.is_empty()).skip(1).map(|l| l.trim().to_string()).collect();
        lines.pop(); // `}`
        lines
    }

    fn grads(src: &str, wrt: &[&str]) -> Vec<String> {
        let g = grad(&k(src), wrt).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(crate::parse(&g.to_string()).unwrap(), g, "{g}");
        body(&g)
    }

    const XY: &str = "kernel f { dims N, D\n in x: f32[N, D]\n in w: f32[D]\n in z: f32[N]\n out y: f32[N, D]\n";

    #[test]
    fn signature_names_and_order() {
        let g = grad(&k(LN), &["gamma", "x"]).unwrap();
        assert_eq!(g.name, "layer_norm_grad");
        let sig: Vec<(&str, Role)> = g.tensors.iter().map(|(_, t)| (t.name.as_str(), t.role)).collect();
        assert_eq!(
            sig,
            [
                ("x", Role::In),
                ("gamma", Role::In),
                ("beta", Role::In),
                ("dy", Role::In),
                ("dgamma", Role::Out),
                ("dx", Role::Out)
            ]
        );
        assert_eq!(
            g.params.iter().map(|(_, p)| (p.name.as_str(), p.default)).collect::<Vec<_>>(),
            [("eps", Some(1e-5))]
        );
        assert_eq!(g.dims.iter().map(|(_, d)| d.name.as_str()).collect::<Vec<_>>(), ["N", "D"]);
    }

    #[test]
    fn layer_norm_backward_reads_like_the_forward_then_its_adjoints() {
        let g = grad(&k(LN), &["x", "gamma", "beta"]).unwrap();
        assert_eq!(
            body(&g),
            [
                "mu = mean(x, D)",
                "xc = x - mu",
                "var = mean(xc * xc, D)",
                "rsqrt1 = rsqrt(var + eps)",
                "dmul1 = dy * gamma",
                "t1 = sum(dmul1 * xc, D) * (rsqrt1 * rsqrt1 * rsqrt1) / count(D)",
                "dxc = dmul1 * rsqrt1 - t1 * xc",
                // `sum(dxc, D)` by linearity: its sums run with the others.
                "dx = dxc - (rsqrt1 * sum(dmul1, D) - t1 * sum(xc, D)) / count(D)",
                "dgamma = sum(dy * (xc * rsqrt1), N)",
                "dbeta = sum(dy, N)",
            ]
        );
    }

    #[test]
    fn elementwise_rules_fold_their_constants() {
        let y = |e: &str, wrt: &str| grads(&format!("{XY} y = {e} }}"), &[wrt]);
        assert_eq!(y("2 * x", "x"), ["dx = 2.0 * dy"]);
        assert_eq!(y("-x", "x"), ["dx = -dy"]);
        assert_eq!(y("x - z", "z"), ["dz = -sum(dy, D)"]);
        assert_eq!(y("x * x", "x"), ["dx = 2.0 * (dy * x)"]);
        assert_eq!(y("x + x", "x"), ["dx = 2.0 * dy"]);
        assert_eq!(y("x - x + z", "x"), ["dx = 0.0"]);
        assert_eq!(y("x ^ 2", "x"), ["dx = 2.0 * (dy * x)"]);
        assert_eq!(y("x ^ 3", "x"), ["dx = 3.0 * (dy * x ^ 2.0)"]);
        assert_eq!(y("x ^ 1", "x"), ["dx = dy"]);
        assert_eq!(y("x ^ 0 + w", "x"), ["dx = 0.0"]);
        assert_eq!(y("exp(x)", "x"), ["dx = dy * exp(x)"]);
        assert_eq!(y("log(x)", "x"), ["dx = dy / x"]);
        assert_eq!(y("sqrt(x)", "x"), ["dx = 0.5 * (dy / sqrt(x))"]);
        assert_eq!(y("recip(x)", "x"), ["recip1 = recip(x)", "dx = -(dy * (recip1 * recip1))"]);
        assert_eq!(y("abs(x)", "x"), ["dx = dy * sign(x)"]);
        assert_eq!(y("sign(x) + w", "x"), ["dx = 0.0"]);
        assert_eq!(y("x / w", "w"), ["dw = -sum(dy / w * (x / w), N)"]);
        assert_eq!(y("x / z", "x"), ["dx = dy / z"]);
        assert_eq!(y("min(x, w)", "x"), ["dx = select(x <= w, dy, 0.0)"]);
        assert_eq!(y("max(x, 0)", "x"), ["dx = select(x >= 0.0, dy, 0.0)"]);
        assert_eq!(y("max(x, w)", "w"), ["dw = sum(select(x >= w, 0.0, dy), N)"],);
        assert_eq!(y("select(z > 0, x, w)", "x"), ["dx = select(z > 0.0, dy, 0.0)"]);
        assert_eq!(y("x ^ w", "w"), ["dw = sum(dy * (x ^ w * log(x)), N)"]);
        // Nothing adds to a zero adjoint, multiplies by 1 or subtracts a
        // negation.
        for e in ["x + z * 1", "1 * x - -w", "x - (0 - z)", "x * 1 + 0"] {
            for g in y(e, "x").iter().chain(&y(e, "z")).chain(&y(e, "w")) {
                for bad in ["0.0 +", "+ 0.0", "1.0 *", "* 1.0", "- -", "+ -", "--"] {
                    assert!(!g.contains(bad), "`{e}`: {g}");
                }
            }
        }
    }

    #[test]
    fn broadcasts_and_reductions() {
        let y = |e: &str, wrt: &[&str]| grads(&format!("{XY} y = {e} }}"), wrt);
        assert_eq!(y("z * w", &["z", "w"]), ["dz = sum(dy * w, D)", "dw = sum(dy * z, N)"]);
        // A store broadcasting over D, and a value constant along D summed
        // over it: the adjoint is multiplied by the count.
        assert_eq!(y("z", &["z"]), ["dz = sum(dy, D)"]);
        assert_eq!(
            grads(
                "kernel f { dims N, D\n in z: f32[N]\n in w: f32[D]\n out s: f32[N]\n s = sum(z + w, D) }",
                &["z", "w"]
            ),
            ["dz = ds * count(D)", "dw = sum(ds, N)"]
        );
        assert_eq!(
            grads("kernel f { dims N, D\n in x: f32[N, D]\n out s: f32[N]\n s = mean(x, D) }", &["x"]),
            ["dx = ds / count(D)"]
        );
        // Max reductions share the adjoint among tied maxima.
        assert_eq!(
            grads("kernel f { dims N, D\n in x: f32[N, D]\n out s: f32[N]\n s = max(x, D) }", &["x"]),
            ["t1 = x == max(x, D)", "dx = select(t1, ds / sum(select(t1, 1.0, 0.0), D), 0.0)"]
        );
    }

    #[test]
    fn uniform_is_recomputed_and_dropout_reuses_its_mask() {
        let src = include_str!("../../../ir/reg/dropout.nj");
        let g = grad(&k(src), &["x"]).unwrap();
        assert_eq!(body(&g), ["scale = 1.0 / (1.0 - p)", "dx = select(uniform(seed, N) >= p, dy, 0.0) * scale"]);
        assert_eq!(g.params.iter().map(|(_, p)| p.name.as_str()).collect::<Vec<_>>(), ["p", "seed"]);
    }

    #[test]
    fn zero_gradients_are_stored_as_zero() {
        let src = "kernel f { dims N\n in x: f32[N]\n in u: f32[N]\n out y: f32[N]\n y = x + sign(u) }";
        assert_eq!(grads(src, &["u", "x"]), ["du = 0.0", "dx = dy"]);
        let src = "kernel f { dims N\n in x: f32[N]\n in u: f32[N]\n out y: f32[N]\n y = x * 2 }";
        assert_eq!(grads(src, &["u"]), ["du = 0.0"]);
    }

    #[test]
    fn inout_kernels_are_refused() {
        let src = "kernel sgd { dims P\n inout p: f32[P]\n in g: f32[P]\n param lr = 0.1\n p = p - lr * g }";
        let e = grad(&k(src), &["g"]).unwrap_err();
        assert!(e.starts_with("`p` is inout: optimizer steps are not differentiable kernels"), "{e}");
    }

    #[test]
    fn bad_wrt_lists_are_refused_with_what_they_name() {
        let f = k(LN);
        let err = |wrt: &[&str]| grad(&f, wrt).unwrap_err();
        assert!(err(&[]).starts_with("nothing to differentiate with respect to"), "{}", err(&[]));
        assert_eq!(err(&["x", "x"]), "`x` is listed twice in the tensors to differentiate with respect to");
        assert_eq!(err(&["q"]), "`layer_norm` has no tensor `q` (its `in` tensors: x, gamma, beta)");
        assert!(err(&["y"]).starts_with("`y` is an `out` tensor of `layer_norm`"), "{}", err(&["y"]));
        assert!(err(&["eps"]).starts_with("`eps` is a param of `layer_norm`, not a tensor"), "{}", err(&["eps"]));
        assert!(err(&["D"]).starts_with("`D` is a dim of `layer_norm`"), "{}", err(&["D"]));
        assert!(err(&["mu"]).starts_with("`layer_norm` has no tensor `mu`"), "{}", err(&["mu"]));
    }

    #[test]
    fn generated_tensor_names_must_be_new() {
        let src = "kernel f { dims N\n in x: f32[N]\n in dy: f32[N]\n out y: f32[N]\n y = x * dy }";
        let e = grad(&k(src), &["x"]).unwrap_err();
        assert!(
            e.starts_with("the cotangent of `y` would be named `dy`, but that is already the name of a tensor"),
            "{e}"
        );
        let src = "kernel f { dims N\n in x: f32[N]\n out dx: f32[N]\n out y: f32[N]\n dx = x\n y = x }";
        let e = grad(&k(src), &["x"]).unwrap_err();
        assert!(
            e.starts_with("the gradient of `x` would be named `dx`, but that is already the name of a tensor"),
            "{e}"
        );
        let opts = GradOptions { saved: vec!["dx".into()], ..Default::default() };
        let src = "kernel f { dims N\n in x: f32[N]\n out y: f32[N]\n dx = exp(x)\n y = dx * dx }";
        let e = grad_with(&k(src), &["x"], &opts).unwrap_err();
        assert!(
            e.starts_with(
                "the gradient of `x` would be named `dx`, but that is already the name of the saved value `dx`"
            ),
            "{e}"
        );
        // A forward `let` named like a gradient is renamed in the backward.
        assert_eq!(grads(src, &["x"]), ["dx_1 = exp(x)", "dx = 2.0 * (dy * dx_1 * dx_1)"]);
    }

    #[test]
    fn saved_values_become_inputs() {
        let opts = GradOptions { saved: vec!["mu".into(), "var".into()], ..Default::default() };
        let g = grad_with(&k(LN), &["x"], &opts).unwrap();
        let ins: Vec<String> = g
            .tensors
            .iter()
            .filter(|(_, t)| t.role == Role::In)
            .map(|(_, t)| {
                format!("{}{:?}", t.name, t.dims.iter().map(|d| g.dims[*d].name.as_str()).collect::<Vec<_>>())
            })
            .collect();
        assert_eq!(
            ins,
            ["x[\"N\", \"D\"]", "gamma[\"D\"]", "beta[\"D\"]", "dy[\"N\", \"D\"]", "mu[\"N\"]", "var[\"N\"]"]
        );
        let b = body(&g);
        assert!(!b.iter().any(|l| l.starts_with("mu =") || l.starts_with("var =") || l.contains("mean(")), "{b:?}");
        assert_eq!(crate::parse(&g.to_string()).unwrap(), g);
    }

    #[test]
    fn bad_saved_lists_are_refused() {
        let f = k(
            "kernel f { dims N\n in x: f32[N]\n out y: f32[N]\n c = x > 0\n a = x * 2\n b = a\n y = select(c, a, b) }",
        );
        let err = |s: &[&str]| {
            let opts = GradOptions { saved: s.iter().map(|s| s.to_string()).collect(), ..Default::default() };
            grad_with(&f, &["x"], &opts).unwrap_err()
        };
        assert_eq!(err(&["q"]), "cannot save `q`: it is not a value bound by `let` in `f` (its values: c, a, b)");
        assert!(err(&["x"]).starts_with("cannot save `x`: it names a tensor, param or dim"), "{}", err(&["x"]));
        assert_eq!(err(&["c"]), "cannot save `c`: it is a comparison; only f32 values can be saved");
        assert_eq!(err(&["a", "b"]), "cannot save `b`: it is the same value as `a`, saved already");
        assert_eq!(err(&["a", "a"]), "`a` is listed twice in the saved values");
    }

    #[test]
    fn pruning_drops_what_the_backward_does_not_read() {
        let opts = GradOptions { prune_unused: true, ..Default::default() };
        let g = grad_with(&k(LN), &["beta"], &opts).unwrap();
        assert_eq!(g.tensors.iter().map(|(_, t)| t.name.as_str()).collect::<Vec<_>>(), ["dy", "dbeta"]);
        assert!(g.params.is_empty());
        let src = "kernel f { dims N\n in x: f32[N]\n out y: bf16[N] stochastic(seed)\n param seed: u32\n y = x * 3 }";
        let g = grad(&k(src), &["x"]).unwrap();
        assert_eq!(
            g.tensors.iter().map(|(_, t)| (t.name.as_str(), t.dtype)).collect::<Vec<_>>(),
            [("x", DType::F32), ("dy", DType::BF16), ("dx", DType::F32)]
        );
        assert_eq!(g.params.len(), 1);
        assert!(grad_with(&k(src), &["x"], &opts).unwrap().params.is_empty());
    }

    #[test]
    fn repeat_and_var_kernels_round_trip() {
        let src = "kernel power_iteration {
          dims M, K
          in w: f32[M, K]
          in u: f32[M]
          out sigma: f32[]
          un = u
          repeat 3 {
            v  = sum(w * un, M)
            v  = v / sqrt(sum(v * v, K))
            wv = sum(w * v, K)
            un = wv / sqrt(sum(wv * wv, M))
          }
          sigma = sum(un * wv, M)
        }";
        let g = grad(&k(src), &["w", "u"]).unwrap();
        assert_eq!(crate::parse(&g.to_string()).unwrap(), g);
        let src = "kernel ln { dims N, D\n in x: f32[N, D]\n out y: f32[N, D]\n y = (x - mean(x, D)) * rsqrt(var(x, D) + 1e-5) }";
        let g = grad(&k(src), &["x"]).unwrap();
        assert_eq!(crate::parse(&g.to_string()).unwrap(), g);
    }

    /// Long chains: the backward of a 2,000-step chain builds without deep
    /// recursion and prints with names instead of over-deep expressions.
    #[test]
    fn a_forward_without_a_text_form_is_refused() {
        let mut b = KernelBuilder::new("huge");
        let n = b.dim("N");
        let x = b.tensor("x", Role::In, DType::F32, &[n]);
        let y = b.tensor("y", Role::Out, DType::F32, &[n]);
        let (xv, c) = (b.load(x), b.constant(1e300));
        let v = b.mul(xv, c);
        b.store(y, v);
        let e = grad(&b.finish().unwrap(), &["x"]).unwrap_err();
        assert!(e.starts_with("`huge` does not print as text that parses back"), "{e}");
    }

    #[test]
    fn long_chains() {
        let mut b = KernelBuilder::new("chain");
        let n = b.dim("N");
        let x = b.tensor("x", Role::In, DType::F32, &[n]);
        let y = b.tensor("y", Role::Out, DType::F32, &[n]);
        let mut v = b.load(x);
        for i in 0..2000 {
            let c = b.constant(1.0 + (i % 7) as f64);
            v = if i % 2 == 0 { b.mul(v, c) } else { b.sub(v, c) };
            let e = b.exp(v);
            v = b.add(v, e);
        }
        b.store(y, v);
        let f = b.finish().unwrap();
        let g = grad(&f, &["x"]).unwrap();
        assert_eq!(crate::parse(&g.to_string()).unwrap(), g);
    }
}
