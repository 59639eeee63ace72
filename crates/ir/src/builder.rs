//! [`KernelBuilder`]: the one way to make a [`Kernel`], from Rust or from text.
//!
//! Each method infers the new value's type and axes and checks the typing
//! rules of [`Op`] as it goes. Errors do not stop construction: they are
//! collected, the offending value is marked poisoned (so one mistake does
//! not cascade into many), and [`KernelBuilder::finish`] returns them all.
//! The text front end drives this same builder, setting the span of each
//! call with [`KernelBuilder::at`], so the text and the API cannot disagree
//! about what a valid kernel is.

use crate::diag::{Diagnostic, Diagnostics};
use crate::dtype::{DType, Rounding};
use crate::kernel::*;
use crate::span::Span;
use std::collections::HashMap;

/// What a name in a kernel's single namespace refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Symbol {
    /// A dim.
    Dim(DimId),
    /// A tensor.
    Tensor(TensorId),
    /// A param.
    Param(ParamId),
    /// A value bound by `let`.
    Value(ValueId),
}

impl Symbol {
    /// What kind of thing it is, for messages ("a tensor").
    pub fn kind(self) -> &'static str {
        match self {
            Symbol::Dim(_) => "a dim",
            Symbol::Tensor(_) => "a tensor",
            Symbol::Param(_) => "a param",
            Symbol::Value(_) => "a value",
        }
    }
}

/// Builds a verified [`Kernel`].
///
/// ```
/// use normjit_ir::{KernelBuilder, Reduce, Role, DType};
/// let mut b = KernelBuilder::new("rms_norm");
/// let (n, d) = (b.dim("N"), b.dim("D"));
/// let x = b.tensor("x", Role::In, DType::F32, &[n, d]);
/// let y = b.tensor("y", Role::Out, DType::F32, &[n, d]);
/// let eps = b.param("eps", Some(1e-6));
/// let xv = b.load(x);
/// let sq = b.mul(xv, xv);
/// let ms = b.reduce(Reduce::Mean, sq, &[d]);
/// let e = b.param_value(eps);
/// let r = b.add(ms, e);
/// let r = b.rsqrt(r);
/// let out = b.mul(xv, r);
/// b.store(y, out);
/// let kernel = b.finish().unwrap();
/// assert_eq!(kernel.nodes[out].axes, kernel.tensors[y].axes());
/// ```
pub struct KernelBuilder {
    k: Kernel,
    errors: Vec<Diagnostic>,
    span: Span,
    poisoned: Vec<bool>,
    stored: Vec<bool>,
    names: HashMap<String, Symbol>,
}

impl KernelBuilder {
    /// Starts a kernel called `name`.
    pub fn new(name: &str) -> Self {
        let mut b = KernelBuilder {
            k: Kernel {
                name: name.to_string(),
                dims: Default::default(),
                tensors: Default::default(),
                params: Default::default(),
                nodes: Default::default(),
                stmts: Vec::new(),
                spans: Spans::default(),
            },
            errors: Vec::new(),
            span: Span::DUMMY,
            poisoned: Vec::new(),
            stored: Vec::new(),
            names: HashMap::new(),
        };
        if !is_ident(name) {
            b.error(format!("kernel name `{name}` is not an identifier"));
        }
        b
    }

    /// Sets the source span that following calls attach to what they make
    /// and to the errors they report.
    pub fn at(&mut self, span: Span) -> &mut Self {
        self.span = span;
        self
    }

    /// Records the span of the kernel name.
    pub fn set_name_span(&mut self, span: Span) {
        self.k.spans.kernel = span;
    }

    /// Reports an error at the current span.
    pub fn error(&mut self, msg: impl Into<String>) {
        self.errors.push(Diagnostic::new(self.span, msg));
    }

    /// Reports a prepared diagnostic.
    pub fn push_diagnostic(&mut self, d: Diagnostic) {
        self.errors.push(d);
    }

    /// True once any error has been reported.
    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// Number of errors reported so far.
    pub(crate) fn error_count(&self) -> usize {
        self.errors.len()
    }

    /// The errors reported since there were `n`, to annotate them.
    pub(crate) fn errors_since(&mut self, n: usize) -> &mut [Diagnostic] {
        let n = n.min(self.errors.len());
        &mut self.errors[n..]
    }

    /// Makes `name` refer to the value `v` for later lookups, without a
    /// statement: the text front end's `repeat` rebinds source names this
    /// way while the kernel's `Let`s carry fresh generated names. Does
    /// nothing if `name` is bound to anything but a value.
    pub(crate) fn rebind(&mut self, name: &str, v: ValueId) {
        if matches!(self.names.get(name), None | Some(Symbol::Value(_))) {
            self.names.insert(name.to_string(), Symbol::Value(v));
        }
    }

    /// What `name` refers to so far.
    pub fn lookup(&self, name: &str) -> Option<Symbol> {
        self.names.get(name).copied()
    }

    /// The kernel as built so far (for reading declarations).
    pub fn kernel(&self) -> &Kernel {
        &self.k
    }

    /// True if `v` came from an erroneous operation.
    pub fn is_poisoned(&self, v: ValueId) -> bool {
        self.poisoned.get(v.index()).copied().unwrap_or(true)
    }

    fn declare(&mut self, name: &str, sym: Symbol) -> bool {
        if !is_ident(name) {
            self.error(format!("`{name}` is not an identifier"));
            return false;
        }
        if let Some(prev) = self.names.get(name) {
            let what = match sym {
                Symbol::Value(_) => "bound",
                _ => "declared",
            };
            let msg = match (prev, sym) {
                (Symbol::Tensor(_), Symbol::Value(_))
                | (Symbol::Param(_), Symbol::Value(_))
                | (Symbol::Dim(_), Symbol::Value(_)) => {
                    format!("cannot bind `{name}`: it is already {}", prev.kind())
                }
                (Symbol::Value(_), Symbol::Value(_)) => {
                    format!("`{name}` is bound twice; values are single-assignment, pick a new name")
                }
                _ => format!("`{name}` is {what} twice (first as {})", prev.kind()),
            };
            self.error(msg);
            return false;
        }
        self.names.insert(name.to_string(), sym);
        true
    }

    /// Declares a dim. At most [`MAX_DIMS`] per kernel.
    pub fn dim(&mut self, name: &str) -> DimId {
        if self.k.dims.len() == MAX_DIMS {
            self.error(format!("too many dims: a kernel may declare at most {MAX_DIMS}"));
            // Reuse the last dim so the id stays valid; the kernel is rejected anyway.
            return DimId::from_raw(MAX_DIMS as u32 - 1);
        }
        let id = self.k.dims.push(Dim { name: name.to_string() });
        self.k.spans.dims.push(self.span);
        self.declare(name, Symbol::Dim(id));
        id
    }

    /// Declares a tensor with its role, storage type and dims (memory order).
    pub fn tensor(&mut self, name: &str, role: Role, dtype: DType, dims: &[DimId]) -> TensorId {
        let mut seen = AxisSet::EMPTY;
        let mut ok_dims = Vec::with_capacity(dims.len());
        for &d in dims {
            if self.k.dims.get(d).is_none() {
                self.error(format!("tensor `{name}` uses a dim id {d:?} not declared in this kernel"));
            } else if seen.contains(d) {
                let dn = self.k.dims[d].name.clone();
                self.push_diagnostic(
                    Diagnostic::new(self.span, format!("dim `{dn}` appears twice in tensor `{name}`"))
                        .note("a square matrix needs two dims (e.g. `M, K`) bound to the same size"),
                );
            } else {
                seen = seen.with(d);
                ok_dims.push(d);
            }
        }
        let id = self.k.tensors.push(Tensor {
            name: name.to_string(),
            role,
            dtype,
            rounding: Rounding::NearestEven,
            dims: ok_dims,
        });
        self.k.spans.tensors.push(self.span);
        self.stored.push(false);
        self.declare(name, Symbol::Tensor(id));
        id
    }

    /// Makes stores to `t` round stochastically with the `u32` param `seed`
    /// ([`Rounding::Stochastic`]): only for a written `bf16` tensor.
    pub fn stochastic(&mut self, t: TensorId, seed: ParamId) {
        let (Some(tensor), Some(param)) = (self.k.tensors.get(t), self.k.params.get(seed)) else {
            self.error(format!("stochastic rounding of an undeclared tensor {t:?} or param {seed:?}"));
            return;
        };
        let (name, pname) = (tensor.name.clone(), param.name.clone());
        if param.ty != ParamType::U32 {
            self.error(format!("the seed of `stochastic` must be a u32 param, and `{pname}` is f32"));
        } else if tensor.dtype != DType::BF16 {
            self.push_diagnostic(
                Diagnostic::new(
                    self.span,
                    format!("stochastic rounding is for `bf16` storage, and `{name}` is `{}`", tensor.dtype.name()),
                )
                .note("f32 and f16 stores round to nearest even"),
            );
        } else if !tensor.role.is_written() {
            self.error(format!("`{name}` is an `in` tensor: it is never stored, so it has no rounding"));
        } else {
            if let Some(t) = self.k.tensors.get_mut(t) {
                t.rounding = Rounding::Stochastic(seed);
            }
        }
    }

    /// Declares an `f32` param with an optional default.
    pub fn param(&mut self, name: &str, default: Option<f64>) -> ParamId {
        self.typed_param(name, ParamType::F32, default)
    }

    /// Declares a param of type `ty` with an optional default.
    pub fn typed_param(&mut self, name: &str, ty: ParamType, default: Option<f64>) -> ParamId {
        if let Some(v) = default {
            match ty {
                ParamType::F32 if !v.is_finite() || v.abs() > f32::MAX as f64 => {
                    self.error(format!("default of `{name}` is out of range for f32"))
                }
                ParamType::U32 if !(v >= 0.0 && v <= u32::MAX as f64 && v.fract() == 0.0) => {
                    self.error(format!("default of u32 param `{name}` must be a whole number in 0..=4294967295"))
                }
                _ => {}
            }
        }
        let id = self.k.params.push(Param { name: name.to_string(), ty, default });
        self.k.spans.params.push(self.span);
        self.declare(name, Symbol::Param(id));
        id
    }

    fn node(&mut self, op: Op, ty: ValueType, axes: AxisSet, poisoned: bool) -> ValueId {
        let id = self.k.nodes.push(Node { op, ty, axes });
        self.k.spans.nodes.push(self.span);
        self.poisoned.push(poisoned);
        id
    }

    fn poison(&mut self) -> ValueId {
        self.node(Op::Const(0.0), ValueType::F32, AxisSet::EMPTY, true)
    }

    /// A placeholder for a value whose error was already reported; it
    /// suppresses follow-on errors from its users.
    pub(crate) fn poison_value(&mut self) -> ValueId {
        self.poison()
    }

    /// Checks that `v` exists, is not poisoned and has type `want`; reports
    /// a type error naming `what` otherwise. Returns false if unusable.
    fn operand(&mut self, v: ValueId, want: ValueType, what: &str) -> bool {
        let Some(n) = self.k.nodes.get(v) else {
            self.error(format!("value id {v:?} does not belong to this kernel"));
            return false;
        };
        if self.poisoned[v.index()] {
            return false;
        }
        if n.ty != want {
            let found = n.ty;
            let hint = match found {
                ValueType::Bool => "; a comparison can only be the condition of `select`",
                ValueType::F32 => "; write a comparison such as `x > 0`",
            };
            self.error(format!("type mismatch: {what} must be {}, found {}{hint}", want.name(), found.name()));
            return false;
        }
        true
    }

    /// A literal. Must be finite.
    pub fn constant(&mut self, v: f64) -> ValueId {
        if !v.is_finite() {
            self.error("a constant must be finite");
            return self.poison();
        }
        self.node(Op::Const(v), ValueType::F32, AxisSet::EMPTY, false)
    }

    /// The value of an `f32` param.
    pub fn param_value(&mut self, p: ParamId) -> ValueId {
        let Some(param) = self.k.params.get(p) else {
            self.error(format!("param id {p:?} does not belong to this kernel"));
            return self.poison();
        };
        if param.ty != ParamType::F32 {
            let n = param.name.clone();
            self.error(format!(
                "type mismatch: `{n}` is a u32 param; it can only be the seed of `uniform`, not a value"
            ));
            return self.poison();
        }
        self.node(Op::Param(p), ValueType::F32, AxisSet::EMPTY, false)
    }

    /// The entry value of an `in` or `inout` tensor.
    pub fn load(&mut self, t: TensorId) -> ValueId {
        let Some(tensor) = self.k.tensors.get(t) else {
            self.error(format!("tensor id {t:?} does not belong to this kernel"));
            return self.poison();
        };
        if tensor.role == Role::Out {
            let n = tensor.name.clone();
            self.push_diagnostic(
                Diagnostic::new(self.span, format!("cannot read `{n}`: an `out` tensor has no value at kernel entry"))
                    .note(format!("declare it `inout` to read its entry value, or bind the value you store to `{n}` to a name and use that")),
            );
            return self.poison();
        }
        let axes = tensor.axes();
        self.node(Op::Load(t), ValueType::F32, axes, false)
    }

    /// An elementwise unary function.
    pub fn unary(&mut self, op: Unary, a: ValueId) -> ValueId {
        if !self.operand(a, ValueType::F32, &format!("the operand of `{}`", op.name())) {
            return self.poison();
        }
        let axes = self.k.nodes[a].axes;
        self.node(Op::Unary(op, a), ValueType::F32, axes, false)
    }

    /// An elementwise binary function over the union of the axes.
    pub fn binary(&mut self, op: Binary, a: ValueId, b: ValueId) -> ValueId {
        let ok_a = self.operand(a, ValueType::F32, &format!("the left operand of `{}`", op.name()));
        let ok_b = self.operand(b, ValueType::F32, &format!("the right operand of `{}`", op.name()));
        if !(ok_a && ok_b) {
            return self.poison();
        }
        let axes = self.k.nodes[a].axes.union(self.k.nodes[b].axes);
        self.node(Op::Binary(op, a, b), ValueType::F32, axes, false)
    }

    /// A comparison, giving a `bool` over the union of the axes.
    pub fn compare(&mut self, op: Cmp, a: ValueId, b: ValueId) -> ValueId {
        let ok_a = self.operand(a, ValueType::F32, &format!("the left operand of `{}`", op.name()));
        let ok_b = self.operand(b, ValueType::F32, &format!("the right operand of `{}`", op.name()));
        if !(ok_a && ok_b) {
            return self.poison();
        }
        let axes = self.k.nodes[a].axes.union(self.k.nodes[b].axes);
        self.node(Op::Compare(op, a, b), ValueType::Bool, axes, false)
    }

    /// `select(cond, a, b)`.
    pub fn select(&mut self, cond: ValueId, a: ValueId, b: ValueId) -> ValueId {
        let ok_c = self.operand(cond, ValueType::Bool, "the condition of `select`");
        let ok_a = self.operand(a, ValueType::F32, "the second argument of `select`");
        let ok_b = self.operand(b, ValueType::F32, "the third argument of `select`");
        if !(ok_c && ok_a && ok_b) {
            return self.poison();
        }
        let n = &self.k.nodes;
        let axes = n[cond].axes.union(n[a].axes).union(n[b].axes);
        self.node(Op::Select(cond, a, b), ValueType::F32, axes, false)
    }

    /// Checks an axis list (non-empty, declared, no repeats) and returns it
    /// as a set.
    fn axis_list(&mut self, axes: &[DimId], what: &str) -> Option<AxisSet> {
        if axes.is_empty() {
            self.error(format!("`{what}` needs at least one axis"));
            return None;
        }
        let mut set = AxisSet::EMPTY;
        for &d in axes {
            let Some(dim) = self.k.dims.get(d) else {
                self.error(format!("dim id {d:?} does not belong to this kernel"));
                return None;
            };
            if set.contains(d) {
                let n = dim.name.clone();
                self.error(format!("axis `{n}` is listed twice in `{what}`"));
                return None;
            }
            set = set.with(d);
        }
        Some(set)
    }

    /// A reduction of `a` over `axes`, which must all be axes of `a`.
    pub fn reduce(&mut self, op: Reduce, a: ValueId, axes: &[DimId]) -> ValueId {
        let set = self.axis_list(axes, op.name());
        let ok = self.operand(a, ValueType::F32, &format!("the operand of `{}`", op.name()));
        let (Some(set), true) = (set, ok) else {
            return self.poison();
        };
        let have = self.k.nodes[a].axes;
        if !set.is_subset(have) {
            let missing = self.k.axis_names(set.minus(have));
            let has = self.k.axis_names(have);
            self.error(format!("cannot reduce over {missing}: the value has axes {{{has}}}"));
            return self.poison();
        }
        self.node(Op::Reduce(op, a, set), ValueType::F32, have.minus(set), false)
    }

    /// `count(axes)`: the number of elements in `axes`.
    pub fn count(&mut self, axes: &[DimId]) -> ValueId {
        match self.axis_list(axes, "count") {
            Some(set) => self.node(Op::Count(set), ValueType::F32, AxisSet::EMPTY, false),
            None => self.poison(),
        }
    }

    /// `uniform(seed, axes)`: counter-based uniform random numbers.
    pub fn uniform(&mut self, seed: ParamId, axes: &[DimId]) -> ValueId {
        let set = self.axis_list(axes, "uniform");
        let Some(param) = self.k.params.get(seed) else {
            self.error(format!("param id {seed:?} does not belong to this kernel"));
            return self.poison();
        };
        if param.ty != ParamType::U32 {
            let n = param.name.clone();
            self.push_diagnostic(
                Diagnostic::new(
                    self.span,
                    format!("type mismatch: the seed of `uniform` must be a u32 param, and `{n}` is f32"),
                )
                .note(format!("declare it as `param {n}: u32`")),
            );
            return self.poison();
        }
        match set {
            Some(set) => self.node(Op::Uniform(seed, set), ValueType::F32, set, false),
            None => self.poison(),
        }
    }

    /// Binds `v` to `name` for later statements.
    pub fn let_(&mut self, name: &str, v: ValueId) {
        if self.k.nodes.get(v).is_none() {
            self.error(format!("value id {v:?} does not belong to this kernel"));
            return;
        }
        if self.declare(name, Symbol::Value(v)) {
            self.k.stmts.push(Stmt::Let { name: name.to_string(), value: v });
            self.k.spans.stmts.push(self.span);
        }
    }

    /// Stores the final value of an `out` or `inout` tensor.
    pub fn store(&mut self, t: TensorId, v: ValueId) {
        let Some(tensor) = self.k.tensors.get(t) else {
            self.error(format!("tensor id {t:?} does not belong to this kernel"));
            return;
        };
        let name = tensor.name.clone();
        let dims = tensor.axes();
        match tensor.role {
            Role::In => {
                self.push_diagnostic(
                    Diagnostic::new(self.span, format!("cannot assign `{name}`: it is an `in` tensor"))
                        .note("declare it `inout` to update it in place, or bind the value to a new name"),
                );
                return;
            }
            _ if self.stored[t.index()] => {
                self.error(format!("`{name}` is assigned twice; an `out` or `inout` tensor is assigned exactly once"));
                return;
            }
            _ => {}
        }
        self.stored[t.index()] = true;
        if !self.operand(v, ValueType::F32, &format!("the value stored to `{name}`")) {
            return;
        }
        let axes = self.k.nodes[v].axes;
        if !axes.is_subset(dims) {
            let extra = self.k.axis_names(axes.minus(dims));
            self.push_diagnostic(
                Diagnostic::new(
                    self.span,
                    format!("the value stored to `{name}` varies over {extra}, which `{name}` does not have"),
                )
                .note(format!("reduce over {extra} first, or declare `{name}` with those dims")),
            );
            return;
        }
        self.k.stmts.push(Stmt::Store { tensor: t, value: v });
        self.k.spans.stmts.push(self.span);
    }

    /// Checks whole-kernel rules and returns the kernel, or every error found.
    pub fn finish(mut self) -> Result<Kernel, Diagnostics> {
        for (t, tensor) in self.k.tensors.iter() {
            if tensor.role.is_written() && !self.stored[t.index()] {
                let span = self.k.spans.tensors[t.index()];
                self.errors.push(Diagnostic::new(
                    span,
                    format!("`{}` tensor `{}` is never assigned", tensor.role.keyword(), tensor.name),
                ));
            }
        }
        if self.errors.is_empty() {
            debug_assert_eq!(crate::verify(&self.k), Ok(()));
            Ok(self.k)
        } else {
            // Source order; errors without a span last, in report order.
            self.errors.sort_by_key(|d| d.span.lo);
            Err(Diagnostics(self.errors))
        }
    }
}

macro_rules! shortcuts {
    ($($(#[$m:meta])* $name:ident => $method:ident($op:expr, $($arg:ident),*);)*) => {
        impl KernelBuilder {
            $($(#[$m])* pub fn $name(&mut self, $($arg: ValueId),*) -> ValueId { self.$method($op, $($arg),*) })*
        }
    };
}

// Lower-case method names for the common ops, so builder code reads like math.
shortcuts! {
    /// `a + b`
    add => binary(Binary::Add, a, b);
    /// `a - b`
    sub => binary(Binary::Sub, a, b);
    /// `a * b`
    mul => binary(Binary::Mul, a, b);
    /// `a / b`
    div => binary(Binary::Div, a, b);
    /// `a ^ b`
    pow => binary(Binary::Pow, a, b);
    /// `min(a, b)`
    min => binary(Binary::Min, a, b);
    /// `max(a, b)`
    max => binary(Binary::Max, a, b);
    /// `-a`
    neg => unary(Unary::Neg, a);
    /// `abs(a)`
    abs => unary(Unary::Abs, a);
    /// `sign(a)`
    sign => unary(Unary::Sign, a);
    /// `sqrt(a)`
    sqrt => unary(Unary::Sqrt, a);
    /// `rsqrt(a)`
    rsqrt => unary(Unary::Rsqrt, a);
    /// `exp(a)`
    exp => unary(Unary::Exp, a);
    /// `log(a)`
    log => unary(Unary::Log, a);
    /// `recip(a)`
    recip => unary(Unary::Recip, a);
    /// `tanh(a)`
    tanh => unary(Unary::Tanh, a);
    /// `sigmoid(a)`
    sigmoid => unary(Unary::Sigmoid, a);
    /// `erf(a)`
    erf => unary(Unary::Erf, a);
}

/// True for `[A-Za-z_][A-Za-z0-9_]*`.
pub(crate) fn is_ident(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
}
