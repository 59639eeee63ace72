//! The IR data model: a [`Kernel`] of dims, tensors, params, value nodes and
//! statements, all in arenas with typed ids.
//!
//! Invariants every `Kernel` satisfies (established by the
//! [`KernelBuilder`](crate::KernelBuilder), re-checked by [`verify`](crate::verify)):
//! - nodes are stored operands-before-users, so a forward walk over
//!   `nodes` is a valid evaluation order;
//! - every node's `ty` and `axes` follow the typing rules documented on [`Op`];
//! - every `out`/`inout` tensor is stored exactly once, `in` tensors never;
//! - no `out` tensor is loaded (it has no value at entry).

use crate::dtype::{DType, Rounding};
use crate::entity::{Arena, Id};
use crate::span::Span;
use std::fmt;

/// Id of a [`Dim`].
pub type DimId = Id<Dim>;
/// Id of a [`Tensor`].
pub type TensorId = Id<Tensor>;
/// Id of a [`Param`].
pub type ParamId = Id<Param>;
/// Id of a value [`Node`].
pub type ValueId = Id<Node>;

/// Most dims a kernel may declare: an [`AxisSet`] is a 64-bit mask.
pub const MAX_DIMS: usize = 64;

/// A named size (`N`, `C`, `D`, ...), bound at call time.
#[derive(Clone, Debug, PartialEq)]
pub struct Dim {
    /// The name as written.
    pub name: String,
}

/// How a kernel uses a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Read only.
    In,
    /// Written exactly once, never read.
    Out,
    /// State updated in place: every read sees the value at kernel entry,
    /// and it is stored exactly once.
    InOut,
}

impl Role {
    /// The keyword of the text format.
    pub fn keyword(self) -> &'static str {
        match self {
            Role::In => "in",
            Role::Out => "out",
            Role::InOut => "inout",
        }
    }
    /// True for `out` and `inout`: the kernel writes it.
    pub fn is_written(self) -> bool {
        !matches!(self, Role::In)
    }
}

/// A tensor argument of the kernel: row-major over `dims`, last dim contiguous.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    /// The name as written.
    pub name: String,
    /// How the kernel uses it.
    pub role: Role,
    /// Element storage type.
    pub dtype: DType,
    /// How stores round to `dtype` (nearest even unless stochastic).
    pub rounding: Rounding,
    /// The dims in memory order (outermost first). Empty for a 0-dim tensor.
    pub dims: Vec<DimId>,
}

impl Tensor {
    /// The set of axes a load of this tensor has.
    pub fn axes(&self) -> AxisSet {
        self.dims.iter().fold(AxisSet::EMPTY, |s, &d| s.with(d))
    }
}

/// Type of a runtime scalar param.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ParamType {
    /// A float scalar, usable anywhere a value is.
    F32,
    /// An unsigned integer; only usable as the seed of [`Op::Uniform`].
    U32,
}

impl ParamType {
    /// The name of the text format.
    pub fn name(self) -> &'static str {
        match self {
            ParamType::F32 => "f32",
            ParamType::U32 => "u32",
        }
    }
}

/// A runtime scalar (`lr`, `eps`, `t`, `seed`), with an optional default.
#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    /// The name as written.
    pub name: String,
    /// Its type.
    pub ty: ParamType,
    /// The value used when the caller binds none.
    pub default: Option<f64>,
}

/// The type of a value node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValueType {
    /// A float, computed in f32 (f64 in the reference interpreter).
    F32,
    /// A comparison result; only usable as the condition of `select`.
    Bool,
}

impl ValueType {
    /// Name used in diagnostics.
    pub fn name(self) -> &'static str {
        match self {
            ValueType::F32 => "f32",
            ValueType::Bool => "bool",
        }
    }
}

/// A set of dims, as a bitmask over [`DimId`] indices. Iteration is in dim
/// declaration order.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct AxisSet(u64);

impl AxisSet {
    /// No axes: a value computed once per call.
    pub const EMPTY: AxisSet = AxisSet(0);
    /// The raw mask.
    pub fn bits(self) -> u64 {
        self.0
    }
    /// The set with raw mask `bits`.
    pub fn from_bits(bits: u64) -> Self {
        AxisSet(bits)
    }
    /// This set plus `d`.
    pub fn with(self, d: DimId) -> Self {
        AxisSet(self.0 | 1u64 << d.index())
    }
    /// True when `d` is in the set.
    pub fn contains(self, d: DimId) -> bool {
        d.index() < 64 && self.0 & (1u64 << d.index()) != 0
    }
    /// Union.
    pub fn union(self, o: AxisSet) -> Self {
        AxisSet(self.0 | o.0)
    }
    /// Intersection.
    pub fn intersect(self, o: AxisSet) -> Self {
        AxisSet(self.0 & o.0)
    }
    /// The axes of `self` not in `o`.
    pub fn minus(self, o: AxisSet) -> Self {
        AxisSet(self.0 & !o.0)
    }
    /// True when every axis of `self` is in `o`.
    pub fn is_subset(self, o: AxisSet) -> bool {
        self.0 & !o.0 == 0
    }
    /// True for the empty set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    /// Number of axes.
    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }
    /// The dims in declaration order.
    pub fn iter(self) -> impl Iterator<Item = DimId> {
        let bits = self.0;
        (0..64u32).filter(move |i| bits & (1u64 << i) != 0).map(DimId::from_raw)
    }
}

impl fmt::Debug for AxisSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter().map(|d| d.index())).finish()
    }
}

/// Elementwise unary functions. Each keeps its operand's axes; operand and
/// result are `f32`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Unary {
    /// `-x` (also `neg(x)`).
    Neg,
    /// `abs(x)`.
    Abs,
    /// `sign(x)`: -1, 0 or 1; `sign(±0) = 0`, `sign(NaN) = NaN`.
    Sign,
    /// `sqrt(x)`; NaN for x < 0.
    Sqrt,
    /// `rsqrt(x) = 1 / sqrt(x)`, correctly rounded division of the root
    /// (no hardware estimate).
    Rsqrt,
    /// `exp(x)`.
    Exp,
    /// `log(x)`, natural logarithm.
    Log,
    /// `recip(x) = 1 / x`.
    Recip,
    /// `tanh(x)`, the hyperbolic tangent.
    Tanh,
    /// `sigmoid(x) = 1 / (1 + exp(-x))`, the logistic function.
    Sigmoid,
    /// `erf(x)`, the error function (`gelu(x) = 0.5 * x * (1 + erf(x / sqrt(2)))`).
    Erf,
}

impl Unary {
    /// All unary functions.
    pub const ALL: [Unary; 11] = [
        Unary::Neg,
        Unary::Abs,
        Unary::Sign,
        Unary::Sqrt,
        Unary::Rsqrt,
        Unary::Exp,
        Unary::Log,
        Unary::Recip,
        Unary::Tanh,
        Unary::Sigmoid,
        Unary::Erf,
    ];
    /// Function name in the text format.
    pub fn name(self) -> &'static str {
        match self {
            Unary::Neg => "neg",
            Unary::Abs => "abs",
            Unary::Sign => "sign",
            Unary::Sqrt => "sqrt",
            Unary::Rsqrt => "rsqrt",
            Unary::Exp => "exp",
            Unary::Log => "log",
            Unary::Recip => "recip",
            Unary::Tanh => "tanh",
            Unary::Sigmoid => "sigmoid",
            Unary::Erf => "erf",
        }
    }

    /// The function at `x` in f64: what the f64 reference computes, and
    /// every engine for a per-call scalar (`Kernel::per_call_scalars`).
    /// `sign` is 0 at ±0 and NaN for NaN.
    pub fn eval64(self, x: f64) -> f64 {
        match self {
            Unary::Neg => -x,
            Unary::Abs => x.abs(),
            Unary::Sign if x.is_nan() => x,
            Unary::Sign => f64::from(u8::from(x > 0.0)) - f64::from(u8::from(x < 0.0)),
            Unary::Sqrt => x.sqrt(),
            Unary::Rsqrt => 1.0 / x.sqrt(),
            Unary::Exp => x.exp(),
            Unary::Log => x.ln(),
            Unary::Recip => 1.0 / x,
            Unary::Tanh => x.tanh(),
            Unary::Sigmoid => crate::math::sigmoid(x),
            Unary::Erf => crate::math::erf(x),
        }
    }
}

/// Elementwise binary functions. The result has the union of the operands'
/// axes (named-axis broadcasting); operands and result are `f32`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Binary {
    /// `a + b`.
    Add,
    /// `a - b`.
    Sub,
    /// `a * b`.
    Mul,
    /// `a / b`.
    Div,
    /// `a ^ b` or `pow(a, b)`, as C `powf`.
    Pow,
    /// `min(a, b)`; NaN if either is NaN (as `torch.minimum`).
    Min,
    /// `max(a, b)`; NaN if either is NaN (as `torch.maximum`).
    Max,
}

impl Binary {
    /// Operator or function name in the text format.
    pub fn name(self) -> &'static str {
        match self {
            Binary::Add => "+",
            Binary::Sub => "-",
            Binary::Mul => "*",
            Binary::Div => "/",
            Binary::Pow => "^",
            Binary::Min => "min",
            Binary::Max => "max",
        }
    }
}

/// Comparisons. Operands are `f32`, the result `bool` over the union of the
/// operands' axes. Any comparison with NaN is false, except `!=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cmp {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `==`
    Eq,
    /// `!=`
    Ne,
}

impl Cmp {
    /// Operator in the text format.
    pub fn name(self) -> &'static str {
        match self {
            Cmp::Lt => "<",
            Cmp::Le => "<=",
            Cmp::Gt => ">",
            Cmp::Ge => ">=",
            Cmp::Eq => "==",
            Cmp::Ne => "!=",
        }
    }
    /// Applies the comparison with IEEE semantics.
    pub fn apply<T: PartialOrd>(self, a: T, b: T) -> bool {
        match self {
            Cmp::Lt => a < b,
            Cmp::Le => a <= b,
            Cmp::Gt => a > b,
            Cmp::Ge => a >= b,
            Cmp::Eq => a == b,
            Cmp::Ne => a != b,
        }
    }
}

/// Reductions over an axis set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reduce {
    /// Sum; 0 over an empty domain.
    Sum,
    /// Sum / count; NaN over an empty domain (as PyTorch).
    Mean,
    /// Maximum; NaN if any element is NaN; -inf over an empty domain.
    Max,
    /// Minimum; NaN if any element is NaN; +inf over an empty domain.
    Min,
}

impl Reduce {
    /// Function name in the text format.
    pub fn name(self) -> &'static str {
        match self {
            Reduce::Sum => "sum",
            Reduce::Mean => "mean",
            Reduce::Max => "max",
            Reduce::Min => "min",
        }
    }
}

/// A value-producing operation. The typing rule of each variant is stated
/// on it; "axes" is the set of dims the value varies over.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// A literal. Axes `{}`, type `f32`. Stored as f64 (finite); f32 engines
    /// round it once.
    Const(f64),
    /// An `f32` param. Axes `{}`, type `f32`.
    Param(ParamId),
    /// The value of an `in` or `inout` tensor at kernel entry. Axes: the
    /// tensor's dims; type `f32`.
    Load(TensorId),
    /// Elementwise function: axes of the operand; `f32 -> f32`.
    Unary(Unary, ValueId),
    /// Elementwise function: union of the axes; `f32, f32 -> f32`.
    Binary(Binary, ValueId, ValueId),
    /// Comparison: union of the axes; `f32, f32 -> bool`.
    Compare(Cmp, ValueId, ValueId),
    /// `select(cond, a, b)`: `a` where `cond`, else `b`. Union of all three
    /// axes; `bool, f32, f32 -> f32`.
    Select(ValueId, ValueId, ValueId),
    /// Reduction of an `f32` operand over a non-empty subset of its axes;
    /// the result's axes are the operand's minus the reduced ones.
    Reduce(Reduce, ValueId, AxisSet),
    /// `count(AXES)`: the number of elements in the axes (product of their
    /// sizes). Axes `{}`, type `f32`.
    Count(AxisSet),
    /// `uniform(seed, AXES)`: a uniform random number in `[0, 1)` per
    /// element of AXES, a pure function of the `u32` param `seed` and the
    /// element's row-major index over AXES in dim declaration order; see
    /// [`crate::rng`]. Axes: AXES; type `f32`.
    Uniform(ParamId, AxisSet),
}

impl Op {
    /// The value operands, in order.
    pub fn operands(&self) -> impl Iterator<Item = ValueId> {
        let (a, b, c) = match *self {
            Op::Const(_) | Op::Param(_) | Op::Load(_) | Op::Count(_) | Op::Uniform(..) => (None, None, None),
            Op::Unary(_, a) | Op::Reduce(_, a, _) => (Some(a), None, None),
            Op::Binary(_, a, b) | Op::Compare(_, a, b) => (Some(a), Some(b), None),
            Op::Select(c, a, b) => (Some(c), Some(a), Some(b)),
        };
        a.into_iter().chain(b).chain(c)
    }
}

/// A value node: an op with its inferred type and axes.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// What computes it.
    pub op: Op,
    /// Its type.
    pub ty: ValueType,
    /// The dims it varies over.
    pub axes: AxisSet,
}

/// A statement. Statements run in order; `Let` only names a value.
#[derive(Clone, Debug, PartialEq)]
pub enum Stmt {
    /// `name = expr`: gives a value a name later statements may use.
    Let {
        /// The name.
        name: String,
        /// The value named.
        value: ValueId,
    },
    /// `tensor = expr`: the final value of an `out`/`inout` tensor; the
    /// value's axes are a subset of the tensor's dims and are broadcast.
    Store {
        /// The tensor written.
        tensor: TensorId,
        /// The value written.
        value: ValueId,
    },
}

/// Source positions of a kernel's parts, for diagnostics. Kept apart from
/// the semantic data so that equality ignores where things were written.
#[derive(Clone, Debug, Default)]
pub struct Spans {
    /// Span of the kernel name.
    pub kernel: Span,
    /// Span of each dim's declaration, by dim index.
    pub dims: Vec<Span>,
    /// Span of each tensor's declaration, by tensor index.
    pub tensors: Vec<Span>,
    /// Span of each param's declaration, by param index.
    pub params: Vec<Span>,
    /// Span of each node's expression, by node index.
    pub nodes: Vec<Span>,
    /// Span of each statement.
    pub stmts: Vec<Span>,
}

/// A verified kernel. Build one with [`KernelBuilder`](crate::KernelBuilder)
/// or [`parse`](crate::parse); print it with `Display`.
#[derive(Clone, Debug)]
pub struct Kernel {
    /// The kernel's name.
    pub name: String,
    /// Declared dims, in declaration order.
    pub dims: Arena<Dim>,
    /// Declared tensors, in declaration order.
    pub tensors: Arena<Tensor>,
    /// Declared params, in declaration order.
    pub params: Arena<Param>,
    /// Value nodes, operands before users.
    pub nodes: Arena<Node>,
    /// Statements in order.
    pub stmts: Vec<Stmt>,
    /// Where each part was written (dummy for builder-made kernels).
    pub spans: Spans,
}

impl PartialEq for Kernel {
    /// Semantic equality: everything but the spans.
    fn eq(&self, o: &Self) -> bool {
        self.name == o.name
            && self.dims == o.dims
            && self.tensors == o.tensors
            && self.params == o.params
            && self.nodes == o.nodes
            && self.stmts == o.stmts
    }
}

impl Kernel {
    /// Which values are *per-call scalars*, by value index: values over no
    /// axes computed only from literals, params and `count`s (through any
    /// elementwise ops) — hyper-parameter arithmetic such as `1 - beta2`
    /// or `lr / (1 - beta1 ^ t)`. Every engine evaluates these once per
    /// call in f64 and rounds each to f32 only where it meets per-element
    /// math (or is stored), as PyTorch does with Python floats. Values
    /// derived from tensor data (loads, reductions, `uniform`) are never
    /// per-call scalars, even over no axes.
    pub fn per_call_scalars(&self) -> Vec<bool> {
        let mut out = vec![false; self.nodes.len()];
        for (id, n) in self.nodes.iter() {
            out[id.index()] = n.axes.is_empty()
                && match n.op {
                    Op::Const(_) | Op::Param(_) | Op::Count(_) => true,
                    Op::Unary(..) | Op::Binary(..) | Op::Compare(..) | Op::Select(..) => {
                        n.op.operands().all(|o| out[o.index()])
                    }
                    Op::Load(_) | Op::Reduce(..) | Op::Uniform(..) => false,
                };
        }
        out
    }

    /// The dim named `name`.
    pub fn dim(&self, name: &str) -> Option<DimId> {
        self.dims.iter().find(|(_, d)| d.name == name).map(|(id, _)| id)
    }
    /// The tensor named `name`.
    pub fn tensor(&self, name: &str) -> Option<TensorId> {
        self.tensors.iter().find(|(_, t)| t.name == name).map(|(id, _)| id)
    }
    /// The param named `name`.
    pub fn param(&self, name: &str) -> Option<ParamId> {
        self.params.iter().find(|(_, p)| p.name == name).map(|(id, _)| id)
    }
    /// The value stored to `tensor`, if any.
    pub fn stored_value(&self, tensor: TensorId) -> Option<ValueId> {
        self.stmts.iter().find_map(|s| match *s {
            Stmt::Store { tensor: t, value } if t == tensor => Some(value),
            _ => None,
        })
    }
    /// Names of the axes in `axes`, comma separated, for messages.
    pub fn axis_names(&self, axes: AxisSet) -> String {
        let names: Vec<&str> = axes.iter().map(|d| self.dims[d].name.as_str()).collect();
        names.join(", ")
    }
}
