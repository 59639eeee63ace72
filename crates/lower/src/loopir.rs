//! The loop IR: what the lowering produces and what code generation and
//! the loop-IR interpreter consume.
//!
//! A [`Plan`] runs a body of [`Step`]s once per iteration of the *group*
//! loops (the axes every reduction keeps, hoisted outermost; possibly none).
//! A step is a group-level computation, a group-level store, or a
//! [`Phase`]: one pass over the phase's loop nest. Values live in their own
//! arena ([`LNode`]); each is computed at the loop depth of its innermost
//! axis, so loop-invariant values are hoisted by construction.
//!
//! # Reduction order (normative)
//! Engines must reproduce this order exactly; it is what lets the JIT be
//! compared bit for bit with the loop-IR interpreter. For an [`Accum`] in a
//! phase with loops `L1..Lk` and `flush_depth = f`:
//! - `f == k` (the innermost loop is a kept axis): each iteration combines
//!   its value into the scratch element of its kept indices, in loop order.
//! - `f < k`: `S = width * unroll` slot accumulators and one tail
//!   accumulator are set to the identity when depth `f` is entered. In each
//!   instance of the innermost loop over `[lo, hi)`, with
//!   `main = (hi - lo) - (hi - lo) % S`, element `lo + i` for `i < main` is
//!   combined into slot `i % S`, the rest into the tail accumulator, in
//!   order. *Folding* the accumulators means: for `u` in `1..unroll`, slot
//!   group 0 lane `l` ⊕= group `u` lane `l`; then lanes
//!   `(l0 ⊕ l2) ⊕ (l1 ⊕ l3)` for width 4 (`l0` for width 1); then ⊕ tail.
//! - Sums and means cascade (see [`crate::exec::cascades`]). To *push*
//!   is to fold the accumulators, reset them to the identity, and put the
//!   value `v` on a pairwise stack: with `c` values pushed so far, for
//!   `j = 0, 1, ...` while bit `j` of `c` is set, `v = level[j] ⊕ v`; then
//!   `level[j] = v` and `c += 1`. (So `level[j]` holds the pairwise sum of
//!   `2^j` consecutive blocks, and the error of a sum grows with the log of
//!   its length, as in numpy's and PyTorch's cascades.) A push happens
//!   after every `B = S * BLOCK_ROUNDS` main elements of an instance
//!   (counted from `lo`); at the end of an instance when `B` or more
//!   elements were combined since the last push (short rows share a
//!   block); and when depth `f` is left, if any element was combined since
//!   the last push. Then the stack's value — starting from the identity,
//!   ⊕ `level[j]` for each set bit `j` of `c`, highest first — is combined
//!   into the scratch element.
//! - Array accumulators (`f == k`) of sums cascade too, where their
//!   scratch is private to one run of the phase ([`Plan::array_cascade`]):
//!   the run counts instances of the innermost loop; after every
//!   `ARRAY_BLOCK_ROWS` of them, the whole scratch array is pushed
//!   elementwise (every element onto its own stack, with one shared count,
//!   by the push rule above) and reset to the identity; at the end of a
//!   run that pushed, a non-empty last block is pushed and each element's
//!   stack value is written back to the scratch element (a run that never
//!   pushed leaves its scratch as it is).
//! - An accumulator over no axes (`reduced` empty: a value the `hoist`
//!   pass keeps in scratch) combines each element exactly once into the
//!   identity, which gives the value itself; engines may store the value
//!   without resetting the scratch first.
//! - Max and min do not cascade (they are exact in any order): when depth
//!   `f` is left, the accumulators are folded and the result is combined
//!   into the scratch element.
//! - Scratch starts at the identity (`+0` for sums, so an empty sum is +0
//!   as in the reference; `-inf`/`+inf` for max/min). ⊕ is `+` for
//!   sum/mean and, for max/min, NaN if either operand is NaN, else
//!   `a > b ? a : b` (`a < b ? a : b`): zeros are not ordered, unlike the
//!   reference's IEEE 754-2019 `maximum`/`minimum` (see ARCHITECTURE.md).
//! - When the phase's outer loop is split into chunks (see [`Split`]), each
//!   chunk accumulates into its own copy of the scratch of every reduction
//!   over the split axis; the copies are combined in a pairwise tree over
//!   the chunks (`exec::combine_chunks`), then into the identity.
//! - After the phase, a mean divides each scratch element by the count of
//!   reduced elements ([`count`]).
//! - *Cross-group* accumulators ([`Accum::cross`]: they reduce over the
//!   group axes, such as LayerNorm backward's `dgamma = sum(dy * xhat, N)`
//!   in a plan grouped by rows) keep one scratch per chunk of the group
//!   split ([`Plan::group_split`]), set to the identity when the chunk
//!   starts and not reset by runs of their phase: each run combines into
//!   it by the rules above (array or register flush). Each run then counts
//!   one row; after every `ARRAY_BLOCK_ROWS` rows the whole scratch is
//!   pushed elementwise onto pairwise stacks, and at the end of the chunk
//!   it is finished as a cascaded array is at the end of a run. The chunks'
//!   scratches are combined in the pairwise tree over chunks, then into the
//!   identity; a mean is divided by its count after that. Only the steps
//!   of [`Plan::after`] read them.

use normjit_ir::{AxisSet, Binary, Cmp, DimId, Kernel, ParamId, Reduce, TensorId, Unary, ValueType};
use std::fmt;

/// `count(axes)` at sizes `dims`, as every engine computes it: the product
/// of the sizes in 64-bit integers (wrapping; the runtime refuses sizes
/// whose product overflows), rounded once to f32.
pub fn count(dims: &[usize], axes: AxisSet) -> f32 {
    axes.iter().fold(1u64, |n, d| n.wrapping_mul(dims[d.index()] as u64)) as i64 as f32
}

/// Samples of a [`LOp::Pivot`]: the shift is their mean, so `(mean - shift)^2`
/// is a variance over 8 (chi-squared with one degree of freedom, over 8),
/// which keeps the cancellation of one-pass statistics to about a bit.
pub const PIVOT_SAMPLES: u64 = 8;

/// Id of a loop-IR value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LValue(pub u32);

/// Id of a reduction accumulator (and its scratch array).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccId(pub u32);

/// Loop-IR operations. Same meaning as the kernel IR's, but a reduction is
/// read back through its accumulator.
#[derive(Clone, Debug, PartialEq)]
pub enum LOp {
    /// A constant (a per-call scalar: f64, rounded to f32 where per-element
    /// math uses it).
    Const(f64),
    /// A param (a per-call scalar, f64).
    Param(ParamId),
    /// The entry value of a tensor at the current indices.
    Load(TensorId),
    /// The shift of one-pass statistics (see [`crate::Schedule::onepass`]):
    /// the mean of [`PIVOT_SAMPLES`] entry values of tensor `.0`, at the
    /// current indices of the axes `.1` (the node's) and, for sample `j` in
    /// `0..8`, index `(j * n) >> 3` along each other dim of extent `n` (a
    /// diagonal through the tensor's other dims; no divisions): summed in
    /// `j` order starting from the first, then multiplied by 1/8. `+0`
    /// when one of the other dims is empty. Only computed once per group
    /// iteration, before the passes.
    Pivot(TensorId, AxisSet),
    /// Elementwise unary.
    Unary(Unary, LValue),
    /// Elementwise binary.
    Binary(Binary, LValue, LValue),
    /// A fused multiply-add of `a * b` and `c` (`.1`, `.2`, `.3`) with one
    /// rounding, as [`Fused`] says: contracted from `a * b ± c` where the
    /// target has FMA ([`crate::Options::fma`]).
    Fma(Fused, LValue, LValue, LValue),
    /// Comparison (a mask).
    Compare(Cmp, LValue, LValue),
    /// `select(c, a, b)`.
    Select(LValue, LValue, LValue),
    /// The finalized result of a reduction at the current kept indices.
    Reduced(AccId),
    /// Number of elements in the axes (product of their runtime sizes).
    Count(AxisSet),
    /// `uniform(seed, axes)` at the current indices, from stream `.2`: 0
    /// is the seed's own stream (the IR's `uniform`); `t + 1` is the stream
    /// that stochastic rounding of tensor `t` draws from, whose seed is
    /// [`normjit_ir::rng::rounding_seed`]`(seed, t)`.
    Uniform(ParamId, AxisSet, u32),
    /// `x` (`.0`) stochastically rounded to a bf16 value, with the random
    /// bits `floor(u * 2^16)` of the uniform `u` (`.1`), as
    /// [`normjit_ir::dtype::stochastic_bf16_f32`] defines it. The store
    /// that follows rounds a bf16 value to itself.
    StochasticRound(LValue, LValue),
}

/// Which fused multiply-add an [`LOp::Fma`] is (each rounds once).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fused {
    /// `a * b + c`.
    Add,
    /// `a * b - c`.
    Sub,
    /// `c - a * b`.
    SubFrom,
}

impl Fused {
    /// `a * b ± c` rounded once, in f32 (`mul_add` is exact, then rounds).
    pub fn eval(self, a: f32, b: f32, c: f32) -> f32 {
        match self {
            Fused::Add => a.mul_add(b, c),
            Fused::Sub => a.mul_add(b, -c),
            Fused::SubFrom => (-a).mul_add(b, c),
        }
    }
    /// The same in f64.
    pub fn eval64(self, a: f64, b: f64, c: f64) -> f64 {
        match self {
            Fused::Add => a.mul_add(b, c),
            Fused::Sub => a.mul_add(b, -c),
            Fused::SubFrom => (-a).mul_add(b, c),
        }
    }
    /// Its name in plan dumps: `fma(a, b, c)` is `a * b + c`, `fms` is
    /// `a * b - c`, `fnma` is `c - a * b`.
    pub fn name(self) -> &'static str {
        match self {
            Fused::Add => "fma",
            Fused::Sub => "fms",
            Fused::SubFrom => "fnma",
        }
    }
}

impl LOp {
    /// Value operands.
    pub fn operands(&self) -> Vec<LValue> {
        match *self {
            LOp::Unary(_, a) => vec![a],
            LOp::Binary(_, a, b) | LOp::Compare(_, a, b) | LOp::StochasticRound(a, b) => vec![a, b],
            LOp::Select(c, a, b) => vec![c, a, b],
            LOp::Fma(_, a, b, c) => vec![a, b, c],
            _ => vec![],
        }
    }
}

/// A loop-IR value with its type and axes.
#[derive(Clone, Debug, PartialEq)]
pub struct LNode {
    /// Operation.
    pub op: LOp,
    /// f32 or bool (mask).
    pub ty: ValueType,
    /// Axes it varies over.
    pub axes: AxisSet,
    /// A per-call scalar (see `normjit_ir::Kernel::per_call_scalars`):
    /// engines evaluate it in f64 and round it to f32 where other values
    /// use it.
    pub per_call: bool,
}

/// A reduction: accumulated in one phase, read back by later ones.
#[derive(Clone, Debug, PartialEq)]
pub struct Accum {
    /// Which reduction.
    pub op: Reduce,
    /// The value reduced (computed at the phase's innermost depth).
    pub operand: LValue,
    /// The reduced axes.
    pub reduced: AxisSet,
    /// The kept axes outside the group, in loop order: the scratch array's
    /// dims (empty: one element per group iteration).
    pub scratch_dims: Vec<DimId>,
    /// The phase that accumulates it.
    pub phase: usize,
    /// Loop depth whose iterations each own one scratch element (the depth
    /// of the innermost kept loop; 0 if no kept axis is a phase loop).
    pub flush_depth: usize,
    /// It reduces over the group axes: accumulated across group
    /// iterations into per-chunk partials, complete only after the group
    /// loop (see the reduction order).
    pub cross: bool,
}

impl Accum {
    /// A value the `hoist` pass keeps in scratch: it reduces over no axes,
    /// so each scratch element is combined once into the identity, which
    /// gives the value itself (engines may store it without a reset).
    pub fn is_hoisted(&self) -> bool {
        self.reduced.is_empty()
    }
}

/// How a phase's (or the group's) outer loop is split into chunks for
/// threads. Chunk boundaries depend only on the sizes, never on the thread
/// count, so results are bit-identical for any number of threads.
#[derive(Clone, Debug, PartialEq)]
pub struct Split {
    /// The loop split.
    pub axis: DimId,
    /// The loops inside `axis` whose sizes make up one iteration's work.
    pub inner: Vec<DimId>,
    /// Vector width of a split innermost loop (chunks keep whole vectors).
    pub width: usize,
    /// Target elements of work per chunk.
    pub target: usize,
    /// Accumulators that need a private scratch per chunk (they reduce over
    /// `axis`), combined in chunk order.
    pub partials: Vec<AccId>,
    /// The scratch dims of each of `partials`: chunks grow so that their
    /// work is at least [`WORK_PER_PARTIAL`] times their partials' size.
    pub partial_dims: Vec<Vec<DimId>>,
}

/// Elements of work a chunk does per element of its partials, at least, so
/// that combining partials stays a small fraction of a call (LayerNorm
/// backward's `dgamma`/`dbeta` partials are two rows per chunk).
pub const WORK_PER_PARTIAL: usize = 64;

impl Split {
    /// Iterations of `axis` per chunk at sizes `dims`: a function of the
    /// sizes alone (never the thread count), so that code compiled once
    /// splits every shape the same way the loop-IR interpreter does.
    pub fn chunk(&self, dims: &[usize]) -> usize {
        let size = |ds: &[DimId]| ds.iter().map(|d| dims[d.index()]).fold(1usize, |a, b| a.saturating_mul(b));
        let per_iter = size(&self.inner).max(1);
        let partials = self.partial_dims.iter().map(|ds| size(ds)).fold(0usize, |a, b| a.saturating_add(b));
        let target = self.target.max(partials.saturating_mul(WORK_PER_PARTIAL));
        let mut chunk = target.div_ceil(per_iter).max(1);
        // A split innermost loop keeps whole vectors per chunk.
        if per_iter == 1 && self.width > 1 {
            chunk = chunk.next_multiple_of(64);
        }
        chunk.min(dims[self.axis.index()].max(1))
    }

    /// Number of chunks at sizes `dims`.
    pub fn chunks(&self, dims: &[usize]) -> usize {
        dims[self.axis.index()].div_ceil(self.chunk(dims))
    }
}

/// One pass over memory.
#[derive(Clone, Debug, PartialEq)]
pub struct Phase {
    /// Short description (`"stats: sum(x)"`).
    pub name: String,
    /// Its loops, outermost first (the group loops enclose them).
    pub loops: Vec<DimId>,
    /// Values computed in the phase, in evaluation order, with the loop
    /// depth each is computed at (0 = before the first loop).
    pub nodes: Vec<(LValue, usize)>,
    /// Reductions accumulated here.
    pub accums: Vec<AccId>,
    /// Tensors written here (at the innermost depth), with their values.
    pub stores: Vec<(TensorId, LValue)>,
    /// Vector width along the innermost loop (1 = scalar).
    pub width: usize,
    /// Unroll factor of the innermost loop; with a reduction, also the
    /// number of independent vector accumulators.
    pub unroll: usize,
    /// Thread split of the outer loop, when the group is empty.
    pub split: Option<Split>,
    /// How many innermost loops run as one (1: none merged). With `f > 1`,
    /// loops `k-f..k` are contiguous in every tensor the phase touches
    /// (BatchNorm's `H, W`) and run as one loop over the product of their
    /// extents: the indices of all but the last stay 0 and the last runs
    /// over the flat index, which addresses every tensor the same way. That
    /// loop is "the innermost loop" of the reduction order.
    pub flat: usize,
}

/// What a group iteration does, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Compute a group-level value (axes within the group).
    Compute(LValue),
    /// Store a group-level value to a tensor whose dims are all group axes.
    Store(TensorId, LValue),
    /// Run a phase.
    Phase(usize),
}

/// Memory traffic of one tensor: how many times it is streamed from and to
/// memory per call.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct TensorTraffic {
    /// Full reads from memory.
    pub reads: usize,
    /// Full writes to memory.
    pub writes: usize,
    /// Reads per phase (phase index, count of passes), before cache credit.
    pub phase_reads: Vec<usize>,
}

/// The memory-traffic model of a plan.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Traffic {
    /// Per tensor (by index).
    pub tensors: Vec<TensorTraffic>,
    /// Bytes read per call.
    pub bytes_read: u64,
    /// Bytes written per call.
    pub bytes_written: u64,
    /// Each tensor the kernel reads counted once, each written once.
    pub min_bytes: u64,
    /// The cache size assumed to keep a group iteration's data between
    /// phases.
    pub cache_bytes: usize,
    /// Bytes a group iteration re-reads across phases (must fit the cache
    /// for the re-reads to be free).
    pub group_working_set: usize,
    /// Human-readable statements of each assumption made.
    pub assumptions: Vec<String>,
}

/// Touching the next group iteration's data during the last phase, so its
/// reads from memory overlap this iteration's writes. (A row kernel's
/// statistics pass only reads and its normalize pass only writes; without
/// this, the two streams never overlap and DRAM bandwidth goes idle.)
/// Cranelift has no prefetch instruction, so engines that act on it issue
/// plain loads whose values are unused; it has no effect on results.
#[derive(Clone, Debug, PartialEq)]
pub struct Prefetch {
    /// The phase that touches (the last one).
    pub phase: usize,
    /// The innermost group axis: the next iteration is one step along it.
    pub axis: DimId,
    /// Tensors the first phase streams from memory.
    pub tensors: Vec<TensorId>,
}

/// Column blocking (pass `block`): a plan without a group whose every pass
/// loops innermost over `axis`, which no reduction reduces, runs all its
/// passes on one block of `size` consecutive indices of `axis` (columns)
/// before the next, so that a block's data stays in cache from one pass to
/// the next. Columns are independent, so no result changes: each element
/// is computed, and each array accumulator element combined, exactly as
/// without blocking (chunks are sized as without it), and the loop-IR
/// interpreter runs such plans unblocked.
#[derive(Clone, Debug, PartialEq)]
pub struct Block {
    /// The blocked axis: the innermost loop of every phase.
    pub axis: DimId,
    /// Indices of `axis` per block, at the planned sizes.
    pub size: usize,
}

/// A lowered kernel.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The source kernel.
    pub kernel: Kernel,
    /// Sizes the schedule was chosen for (the code is valid for any sizes).
    pub dims: Vec<usize>,
    /// Thread split of the group loop (when the group is not empty).
    pub group_split: Option<Split>,
    /// Loop-IR values.
    pub nodes: Vec<LNode>,
    /// Reductions.
    pub accums: Vec<Accum>,
    /// Phases, referenced by [`Step::Phase`].
    pub phases: Vec<Phase>,
    /// The body of one group iteration.
    pub steps: Vec<Step>,
    /// Steps run once per call after every group iteration: the stores of
    /// tensors without group axes (results of cross-group reductions, such
    /// as `dgamma`). Empty unless the plan has cross-group accumulators.
    pub after: Vec<Step>,
    /// Memory traffic.
    pub traffic: Traffic,
    /// Software prefetch of the next group iteration, if any.
    pub prefetch: Option<Prefetch>,
    /// Column blocking, if any.
    pub block: Option<Block>,
    /// The user's name of each value (by [`LValue`]), where a `let` gave
    /// it one: explanations print these instead of value numbers.
    pub names: Vec<Option<String>>,
    /// Planned for an ISA with FMA ([`crate::Options::fma`]): besides the
    /// [`LOp::Fma`] values, the vector math functions fuse their
    /// `a * b + c` ([`crate::vmath::Lanes::mul_add`]).
    pub fma: bool,
    /// The schedule it was lowered with.
    pub schedule: crate::Schedule,
}

impl Plan {
    /// A hash of everything code generation reads except the sizes: plans
    /// of one kernel with equal keys run the same code, each at its own
    /// sizes. (The sizes only choose the schedule: loop order, group,
    /// prefetch; chunk sizes and scratch lengths are computed from the
    /// sizes at run time.)
    pub fn schedule_key(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        let text = format!(
            "{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
            self.order(),
            self.group(),
            self.group_split,
            self.nodes,
            self.accums,
            self.phases,
            self.steps,
            self.after,
            self.prefetch,
            // Whether and along which axis, not the size: the code reads
            // each block's bounds at run time.
            self.block.as_ref().map(|b| b.axis)
        );
        text.hash(&mut h);
        h.finish()
    }

    /// Every dim, outermost loop first ([`crate::Schedule::order`]).
    pub fn order(&self) -> &[DimId] {
        &self.schedule.order
    }

    /// The group loops, outermost first ([`crate::Schedule::group`]).
    pub fn group(&self) -> &[DimId] {
        &self.schedule.group
    }

    /// The node for `v`.
    pub fn node(&self, v: LValue) -> &LNode {
        &self.nodes[v.0 as usize]
    }
    /// Name of a dim.
    pub fn dim_name(&self, d: DimId) -> &str {
        &self.kernel.dims[d].name
    }
    /// Names of dims, comma separated.
    pub fn dim_list(&self, dims: &[DimId]) -> String {
        dims.iter().map(|&d| self.dim_name(d)).collect::<Vec<_>>().join(", ")
    }
    /// Product of the planned sizes of `dims`.
    pub fn extent(&self, dims: impl IntoIterator<Item = DimId>) -> usize {
        dims.into_iter().map(|d| self.dims[d.index()]).product()
    }
    /// Renders the definition of `v` one level deep (`v3 = v1 * v2`), as
    /// plan listings show it.
    pub fn def(&self, v: LValue) -> String {
        let k = &self.kernel;
        let r = |x: &LValue| format!("v{}", x.0);
        match &self.node(v).op {
            LOp::Const(c) => format!("{c:?}"),
            LOp::Param(p) => format!("param {}", k.params[*p].name),
            LOp::Load(t) => {
                let t = &k.tensors[*t];
                format!("load {}[{}]", t.name, self.dim_list(&t.dims))
            }
            LOp::Pivot(t, axes) => {
                let t = &k.tensors[*t];
                let idx: Vec<&str> =
                    t.dims.iter().map(|&d| if axes.contains(d) { self.dim_name(d) } else { ":" }).collect();
                format!("mean of 8 samples of {}[{}]  # the shift", t.name, idx.join(", "))
            }
            LOp::Unary(u, a) => format!("{}({})", u.name(), r(a)),
            LOp::Binary(b @ (Binary::Min | Binary::Max), x, y) => format!("{}({}, {})", b.name(), r(x), r(y)),
            LOp::Binary(b, x, y) => format!("{} {} {}", r(x), b.name(), r(y)),
            LOp::Compare(c, x, y) => format!("{} {} {}", r(x), c.name(), r(y)),
            LOp::Select(c, x, y) => format!("select({}, {}, {})", r(c), r(x), r(y)),
            LOp::Fma(f, a, b, c) => format!("{}({}, {}, {})", f.name(), r(a), r(b), r(c)),
            LOp::Reduced(a) => {
                let acc = &self.accums[a.0 as usize];
                if acc.scratch_dims.is_empty() {
                    format!("acc{}", a.0)
                } else {
                    format!("acc{}[{}]", a.0, self.dim_list(&acc.scratch_dims))
                }
            }
            LOp::Count(ax) => format!("count({})", k.axis_names(*ax)),
            LOp::Uniform(p, ax, 0) => format!("uniform({}, {})", k.params[*p].name, k.axis_names(*ax)),
            LOp::Uniform(p, ax, s) => {
                format!(
                    "uniform({}, {}) of the rounding stream of {}",
                    k.params[*p].name,
                    k.axis_names(*ax),
                    k.tensors[normjit_ir::TensorId::from_raw(s - 1)].name
                )
            }
            LOp::StochasticRound(x, u) => format!("stochastic_bf16({}, {})", r(x), r(u)),
        }
    }

    /// Whether the plan has cross-group accumulators.
    pub fn has_cross(&self) -> bool {
        self.accums.iter().any(|a| a.cross)
    }

    /// Whether accumulator `a` is an array accumulator (its innermost loop
    /// is a kept axis) whose sum cascades: every
    /// [`ARRAY_BLOCK_ROWS`](crate::exec::ARRAY_BLOCK_ROWS) instances of the
    /// innermost loop, its scratch is pushed elementwise onto pairwise
    /// stacks. Only where its scratch is private to one run of the phase
    /// (a group iteration, or a chunk's partial).
    pub fn array_cascade(&self, a: AccId) -> bool {
        let acc = &self.accums[a.0 as usize];
        let ph = &self.phases[acc.phase];
        crate::exec::cascades(acc.op)
            && !acc.cross
            && !ph.loops.is_empty()
            && acc.flush_depth == ph.loops.len()
            && (!self.group().is_empty() || ph.split.as_ref().is_some_and(|s| s.partials.contains(&a)))
    }

    /// The user's name of `v`, if a `let` gave it one.
    pub fn name(&self, v: LValue) -> Option<&str> {
        self.names.get(v.0 as usize).and_then(|n| n.as_deref())
    }

    /// Renders `v` as an expression, for explanations: operands with a
    /// user's name print as that name.
    pub fn expr(&self, v: LValue) -> String {
        let mut s = String::new();
        self.expr_into(&mut s, v, 0);
        s
    }
    fn expr_into(&self, s: &mut String, v: LValue, depth: usize) {
        use std::fmt::Write;
        if depth > 0 {
            if let Some(n) = self.name(v) {
                s.push_str(n);
                return;
            }
        }
        if depth > 6 {
            let _ = write!(s, "v{}", v.0);
            return;
        }
        let k = &self.kernel;
        match &self.node(v).op {
            LOp::Const(c) => {
                let _ = write!(s, "{c:?}");
            }
            LOp::Param(p) => s.push_str(&k.params[*p].name),
            LOp::Load(t) => s.push_str(&k.tensors[*t].name),
            LOp::Pivot(t, _) => {
                let _ = write!(s, "sample_mean({})", k.tensors[*t].name);
            }
            LOp::Unary(u, a) => {
                let _ = write!(s, "{}(", u.name());
                self.expr_into(s, *a, depth + 1);
                s.push(')');
            }
            LOp::Binary(b @ (Binary::Min | Binary::Max), x, y) => {
                let _ = write!(s, "{}(", b.name());
                self.expr_into(s, *x, depth + 1);
                s.push_str(", ");
                self.expr_into(s, *y, depth + 1);
                s.push(')');
            }
            LOp::Binary(b, x, y) => {
                s.push('(');
                self.expr_into(s, *x, depth + 1);
                let _ = write!(s, " {} ", b.name());
                self.expr_into(s, *y, depth + 1);
                s.push(')');
            }
            LOp::Compare(c, x, y) => {
                s.push('(');
                self.expr_into(s, *x, depth + 1);
                let _ = write!(s, " {} ", c.name());
                self.expr_into(s, *y, depth + 1);
                s.push(')');
            }
            LOp::Fma(f, a, b, c) => {
                let _ = write!(s, "{}(", f.name());
                for (i, x) in [a, b, c].into_iter().enumerate() {
                    if i > 0 {
                        s.push_str(", ");
                    }
                    self.expr_into(s, *x, depth + 1);
                }
                s.push(')');
            }
            LOp::Select(c, x, y) => {
                s.push_str("select(");
                self.expr_into(s, *c, depth + 1);
                s.push_str(", ");
                self.expr_into(s, *x, depth + 1);
                s.push_str(", ");
                self.expr_into(s, *y, depth + 1);
                s.push(')');
            }
            LOp::Reduced(a) => {
                let _ = write!(s, "acc{}", a.0);
            }
            LOp::Count(ax) => {
                let _ = write!(s, "count({})", k.axis_names(*ax));
            }
            LOp::Uniform(p, ax, _) => {
                let _ = write!(s, "uniform({}, {})", k.params[*p].name, k.axis_names(*ax));
            }
            LOp::StochasticRound(x, _) => {
                s.push_str("stochastic_bf16(");
                self.expr_into(s, *x, depth + 1);
                s.push(')');
            }
        }
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let k = &self.kernel;
        let sizes: Vec<String> =
            k.dims.iter().map(|(d, dim)| format!("{}={}", dim.name, self.dims[d.index()])).collect();
        writeln!(f, "plan {} [{}]", k.name, sizes.join(", "))?;
        writeln!(f, "  schedule: {}", self.schedule.describe(|d| self.dim_name(d).to_string()))?;
        for (i, a) in self.accums.iter().enumerate() {
            let per = if a.cross {
                "per call, accumulated across the group in per-chunk partials"
            } else if self.group().is_empty() {
                "per call"
            } else {
                "per group iteration"
            };
            let dims = if a.scratch_dims.is_empty() {
                format!("one value {per}")
            } else {
                format!("array [{}] {per}", self.dim_list(&a.scratch_dims))
            };
            // The name the user gave the reduction's result, if any.
            let named = (0..self.nodes.len() as u32)
                .map(LValue)
                .find(|&v| self.node(v).op == LOp::Reduced(AccId(i as u32)))
                .and_then(|v| self.name(v))
                .map_or(String::new(), |n| format!("{n} = "));
            if a.is_hoisted() {
                writeln!(f, "  acc{i} = {named}{} -> {dims}, hoisted", self.expr(a.operand))?;
                continue;
            }
            let (op, axes) = (a.op.name(), k.axis_names(a.reduced));
            writeln!(f, "  acc{i} = {named}{op}({}, {axes}) -> {dims}", self.expr(a.operand))?;
        }
        let mut indent = String::from("  ");
        if !self.group().is_empty() {
            write!(f, "  for {} {{", self.dim_list(self.group()))?;
            if let Some(s) = &self.group_split {
                write!(f, "  # parallel over {} in chunks of {}", self.dim_name(s.axis), s.chunk(&self.dims))?;
                if !s.partials.is_empty() {
                    let ps: Vec<String> = s.partials.iter().map(|a| format!("acc{}", a.0)).collect();
                    write!(f, " with per-chunk partials of {}", ps.join(", "))?;
                }
            }
            writeln!(f)?;
            indent.push_str("  ");
        }
        for step in &self.steps {
            match step {
                Step::Compute(v) => writeln!(f, "{indent}v{} = {}{}", v.0, self.def(*v), self.name_note(*v))?,
                Step::Store(t, v) => writeln!(f, "{indent}store {} = v{}", k.tensors[*t].name, v.0)?,
                Step::Phase(p) => self.fmt_phase(f, *p, &indent)?,
            }
        }
        if !self.group().is_empty() {
            writeln!(f, "  }}")?;
        }
        if !self.after.is_empty() {
            writeln!(f, "  after the group loop (partials combined in chunk order):")?;
            for step in &self.after {
                match step {
                    Step::Compute(v) => writeln!(f, "    v{} = {}{}", v.0, self.def(*v), self.name_note(*v))?,
                    Step::Store(t, v) => writeln!(f, "    store {} = v{}", k.tensors[*t].name, v.0)?,
                    Step::Phase(p) => self.fmt_phase(f, *p, "    ")?,
                }
            }
        }
        if let Some(b) = &self.block {
            let axis = self.dim_name(b.axis);
            writeln!(
                f,
                "  blocked: every phase runs on {} {axis} columns at a time (columns are independent)",
                b.size
            )?;
        }
        if let Some(pf) = &self.prefetch {
            let names: Vec<&str> = pf.tensors.iter().map(|t| k.tensors[*t].name.as_str()).collect();
            writeln!(
                f,
                "  prefetch: phase {} touches the next {} iteration of {}",
                pf.phase,
                self.dim_name(pf.axis),
                names.join(", ")
            )?;
        }
        let t = &self.traffic;
        writeln!(f, "  traffic: read {} B, written {} B, minimum {} B", t.bytes_read, t.bytes_written, t.min_bytes)?;
        for a in &t.assumptions {
            writeln!(f, "  assumes: {a}")?;
        }
        Ok(())
    }
}

impl Plan {
    /// `  # name` for a value with a user's name.
    fn name_note(&self, v: LValue) -> String {
        self.name(v).map_or(String::new(), |n| format!("  # {n}"))
    }

    fn fmt_phase(&self, f: &mut fmt::Formatter<'_>, p: usize, indent: &str) -> fmt::Result {
        let ph = &self.phases[p];
        let k = &self.kernel;
        write!(f, "{indent}phase {p} \"{}\": width {} unroll {}", ph.name, ph.width, ph.unroll)?;
        if let Some(s) = &ph.split {
            write!(f, ", parallel over {} in chunks of {}", self.dim_name(s.axis), s.chunk(&self.dims))?;
            if !s.partials.is_empty() {
                let ps: Vec<String> = s.partials.iter().map(|a| format!("acc{}", a.0)).collect();
                write!(f, " with per-chunk partials of {}", ps.join(", "))?;
            }
        }
        writeln!(f)?;
        for depth in 0..=ph.loops.len() {
            let pad = format!("{indent}  {}", "  ".repeat(depth));
            if depth > 0 {
                let d = ph.loops[depth - 1];
                let inner = depth == ph.loops.len();
                let mut how = String::new();
                if inner && ph.width > 1 {
                    how = format!("  # f32x{} x{}, scalar tail", ph.width, ph.unroll);
                }
                if inner && ph.flat > 1 {
                    let merged = self.dim_list(&ph.loops[ph.loops.len() - ph.flat..]);
                    how.push_str(&format!("  # flattened: {merged} as one loop"));
                }
                writeln!(
                    f,
                    "{indent}  {}for {} in 0..{}{how}",
                    "  ".repeat(depth - 1),
                    self.dim_name(d),
                    self.dims[d.index()]
                )?;
            }
            for &(v, dep) in &ph.nodes {
                if dep == depth {
                    writeln!(f, "{pad}v{} = {}{}", v.0, self.def(v), self.name_note(v))?;
                }
            }
            if depth == ph.loops.len() {
                for &a in &ph.accums {
                    let acc = &self.accums[a.0 as usize];
                    let how = match (acc.flush_depth == ph.loops.len(), acc.cross) {
                        (true, false) => "array",
                        (false, false) => "registers",
                        (true, true) => "array, across the group",
                        (false, true) => "registers, then across the group",
                    };
                    writeln!(f, "{pad}acc{} {}= v{}  # {how}", a.0, acc_sym(acc.op), acc.operand.0)?;
                }
                for &(t, v) in &ph.stores {
                    writeln!(f, "{pad}store {} = v{}", k.tensors[t].name, v.0)?;
                }
            }
        }
        Ok(())
    }
}

fn acc_sym(r: Reduce) -> &'static str {
    match r {
        Reduce::Sum | Reduce::Mean => "+",
        Reduce::Max => "max",
        Reduce::Min => "min",
    }
}
