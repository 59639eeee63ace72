//! Random kernels for differential testing: a generator (a proptest
//! [`Strategy`] and a plain decoder of "choice" words that fuzzers share), the
//! inputs to run them on, a sound numerical oracle, and [`run_case`], which
//! runs one case through every engine and checks them against each other.
//!
//! Self-contained on purpose (it depends on `normjit`, `proptest` and `rayon`
//! only, never on the rest of `tests/common`), so the cargo-fuzz targets in
//! `fuzz/` include this very file with `#[path]`.
//!
//! # The generator
//! A kernel is decoded from a sequence of `u32` choice words ([`Choices`]):
//! every decision takes the next word modulo the number of options, and word
//! `0` always means the simplest option; past the end of the sequence every
//! word reads as `0`. Any sequence therefore decodes to a valid kernel, and
//! proptest's shrinking of the sequence (dropping words, moving them toward 0)
//! shrinks the kernel. [`cases`] is the strategy; [`Case::decode`] the decoder.
//!
//! What it draws (see [`Case::decode`] for the details):
//! - 1–4 dims (`I J K L`), sizes from {0, 1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 33},
//!   and for kernels with at most 2 dims sometimes {64, 127, 1000, 1023,
//!   4097}; the product of the non-zero sizes is at most [`MAX_ELEMS`];
//! - 1–4 loadable tensors (`in`, or `inout` one time in four) over random
//!   subsets of the dims in random order (transposed layouts, 0-dim tensors);
//!   1–3 written tensors in all (`out`, plus the `inout`s); an `out`'s dims
//!   are either drawn up front (the stored value's extra axes are then reduced
//!   away, sometimes in two nested reductions) or drawn afterwards as a random
//!   superset of the value's axes, in random order (a broadcasting store);
//! - 0–3 `f32` params (literal defaults or bound at call time) and sometimes a
//!   `u32` `seed` param for `uniform(seed, axes)`;
//! - 0–4 `let` values and the stores, in random statement order; each is an
//!   expression of depth ≤ 4 over loads, params, constants, earlier `let`s
//!   (total nesting depth ≤ [`MAX_HEIGHT`]), `count`, `uniform`, with
//!   `+ - * / min max`, `pow(e, c)` for a few constants `c`, `neg abs sign
//!   sqrt rsqrt recip exp log` (`sqrt`, `rsqrt` and `log` usually of `abs`,
//!   to stay finite mostly), `select` with every comparison, reductions
//!   `sum mean max min` over random non-empty axis subsets (including
//!   reductions of reductions, and reduced values mixed back into bigger
//!   expressions by broadcasting), and normalization templates that use a
//!   value twice (`e - mean(e)`, RMS, softmax, variance, logsumexp);
//! - constants and param values exactly representable in f32, so that the
//!   f32 and f64 reference interpreters compute from the same numbers;
//! - inputs ([`make_inputs`]) per tensor normal, scaled by 1e-3..1e3, small
//!   integers (ties and exact zeros) or uniform in [0, 1); in half the cases a
//!   fraction (1%, 5% or 25%) of the elements replaced by NaN, ±Inf,
//!   subnormals, ±3e38, ±0 or the smallest normal;
//! - the chunk size (32768, 1, 7 or 64 elements) and 1–3 threads.
//!
//! # The oracle
//! The engines legitimately disagree: the loop IR and the JIT sum in the
//! plan's order (slots, tails, chunks), the reference interpreter pairwise.
//! Different orders round differently, may overflow in one order and not in
//! another (`3e38 + 3e38 - 3e38`), and a rounding difference flips every
//! discontinuous function downstream (`select`, `sign`, `sqrt` of a value
//! near 0, `x / y` for `y` near 0). A tolerance on the output alone cannot be
//! both strict and free of false alarms. So [`Oracle`] evaluates the kernel
//! over *sets*: each element is an [`Av`], a real interval (on the f32 grid,
//! or empty) plus flags for +Inf, -Inf and NaN, which contains every result
//! any f32 engine can produce that rounds each operation once (to nearest)
//! and sums in **any** order. Rules, all sound:
//! - elementwise ops: interval arithmetic on the exact results, rounded
//!   outward on the f32 grid plus one ulp (4 for the libm functions `exp`,
//!   `log`, `pow`); results beyond the overflow threshold 2^128 - 2^103 add
//!   ±Inf; operations involving an infinity are evaluated on representatives
//!   of the other operand's sign classes (their result only depends on it);
//!   zero is unsigned (`x / 0` may give either infinity), since the engines
//!   are allowed to disagree on the sign of a zero sum;
//! - `sum` of n elements: `[Σlo - γ·A, Σhi + γ·A]` with `A = Σmax|x|` and
//!   `γ = (n+2)u / (1 - (n+2)u)`, `u = 2^-24` (the error bound of recursive
//!   summation, valid for every summation tree); +Inf is possible only if
//!   an element may be +Inf or the positive mass plus `γ·A` reaches the
//!   overflow threshold (any partial sum is bounded by it), likewise -Inf;
//!   NaN if an element may be NaN or both infinities are possible; `mean` is
//!   that sum divided by the count;
//! - `max`/`min` (elementwise and reductions) and `select`: hulls; a
//!   comparison is "maybe true" and "maybe false" when the intervals overlap.
//!
//! # The checks ([`run_case`])
//! 1. The JIT equals the loop-IR interpreter **bit for bit** (all NaNs are
//!    equal), always; `in` tensors are left untouched by both.
//! 2. The f32 reference interpreter's output lies in the oracle's set — a
//!    self-test of the oracle (the reference is one of the orders it covers).
//! 3. The loop IR's (hence the JIT's) output lies in the oracle's set. This
//!    is the NaN rule and the tolerance at once:
//!    - where the oracle says NaN is certain (a NaN input propagated through
//!      NaN-propagating ops, any NaN in a reduced set, `inf - inf` of
//!      certain infinities, `0/0`, `sqrt` of a certainly negative value...)
//!      the output **must** be NaN, as the f32 reference's is; where NaN is
//!      impossible it must **not** be NaN. Both strict.
//!    - only where the oracle says "maybe NaN" (the element depends on a sum
//!      that may or may not overflow depending on the order, on a `select`
//!      or comparison whose operands' sets overlap, or on the sign of an
//!      exact zero) may NaN-ness differ from the f32 reference; these
//!      elements and the actual disagreements are counted and printed.
//!    - a finite output must lie in the interval, i.e. within the interval's
//!      width of the f64 reference: the tolerance is `C·eps32·Σ|terms|`
//!      per reduction, propagated through the rest of the expression, and
//!      no looser than that anywhere.
//! 4. The f64 reference interpreter's output lies in the oracle's set
//!    (with a 1e-12 relative slack for f64's own rounding) wherever no value
//!    the element depends on can be infinite in f32 (`Av::ovf`): f64 computes
//!    the exact result up to f64 rounding, and the sets contain the exact
//!    result as long as nothing overflowed f32. So `|engine - f64| ≤ width`.
#![allow(dead_code)]

use normjit::ir::{
    rng, AxisSet, Binary, Cmp, DType, DimId, Kernel, KernelBuilder, Op, ParamId, ParamType, Reduce, Role, Stmt,
    TensorId, Unary, ValueId,
};
use normjit_codegen::{CodegenOptions, Compiled, Isa, IsaChoice};
use normjit_lower::{exec, lower, Options};
use proptest::prelude::*;
use std::fmt;
use std::time::Instant;

// ---------------------------------------------------------------------------
// Choices
// ---------------------------------------------------------------------------

/// A sequence of choice words; reads past the end give 0.
#[derive(Clone, Debug)]
pub struct Choices {
    words: Vec<u32>,
    pos: usize,
}

impl Choices {
    /// Choices from words.
    pub fn new(words: Vec<u32>) -> Self {
        Choices { words, pos: 0 }
    }
    /// Choices from raw bytes (fuzzers): two bytes per word, little endian.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        Choices::new(bytes.chunks(2).map(|c| u32::from(c[0]) | c.get(1).map_or(0, |&b| u32::from(b) << 8)).collect())
    }
    /// Words consumed so far.
    pub fn used(&self) -> usize {
        self.pos
    }
    fn word(&mut self) -> u32 {
        let w = self.words.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        w
    }
    /// A number in `0..n` (0 if `n <= 1`).
    pub fn below(&mut self, n: usize) -> usize {
        if n <= 1 {
            self.pos += 1;
            return 0;
        }
        self.word() as usize % n
    }
    /// True with probability `percent`%; word 0 gives false.
    pub fn flag(&mut self, percent: usize) -> bool {
        self.below(100) >= 100 - percent
    }
    /// An element of `xs` (the first for word 0).
    pub fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }
}

// ---------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------

/// Upper bound on the product of the non-zero dim sizes of a case.
pub const MAX_ELEMS: usize = 50_000;
/// Deepest nesting of a generated expression, counting through `let`s.
pub const MAX_HEIGHT: u32 = 8;
/// Dim names, in declaration order.
pub const DIM_NAMES: [&str; 4] = ["I", "J", "K", "L"];
const SMALL: [usize; 12] = [1, 3, 2, 5, 7, 0, 4, 17, 33, 8, 9, 16];
const LARGE: [usize; 5] = [64, 127, 1023, 1000, 4097];
/// Chunk sizes (elements per thread chunk) the cases lower with.
pub const CHUNKS: [usize; 4] = [32768, 1, 7, 64];
/// Fractions (1 in N) of special input values; 0 = none.
pub const SPECIALS: [usize; 4] = [0, 100, 20, 4];

/// Constants: all exactly representable in f32 (so the f32 and the f64
/// reference compute from the same numbers).
fn constants() -> [f64; 14] {
    [
        1.0,
        2.0,
        0.5,
        -1.0,
        0.0,
        3.0,
        -0.25,
        1e-5f32 as f64,
        0.1f32 as f64,
        1000.0,
        -7.5,
        1e-30f32 as f64,
        1e30f32 as f64,
        0.999f32 as f64,
    ]
}
/// Param values (f32-exact).
fn param_values() -> [f64; 10] {
    [0.5, 2.0, 1e-5f32 as f64, -1.5, 0.9f32 as f64, 1000.0, 0.0, 3.0, -0.25, 1e-3f32 as f64]
}
/// Exponents of `pow(e, c)`.
const EXPONENTS: [f64; 7] = [2.0, 0.5, 3.0, -1.0, 1.5, -2.0, -0.5];

/// One generated test case: a kernel and everything needed to run it.
#[derive(Clone, Debug)]
pub struct Case {
    /// The kernel.
    pub kernel: Kernel,
    /// Size of each dim, by dim index.
    pub dims: Vec<usize>,
    /// Value of each param, by param index (defaults applied).
    pub params: Vec<f64>,
    /// Seed of the input values ([`make_inputs`]).
    pub input_seed: u64,
    /// One element in `specials` is special (NaN, Inf...); 0 = none.
    pub specials: usize,
    /// `Options::chunk_elems`.
    pub chunk: usize,
    /// Threads the JIT runs with (1 = no pool).
    pub threads: usize,
}

/// The proptest strategy of random cases.
pub fn cases() -> impl Strategy<Value = Case> {
    (proptest::collection::vec(any::<u32>(), 0..=400), any::<u64>())
        .prop_map(|(words, seed)| Case::decode(&mut Choices::new(words), seed))
}

impl Case {
    /// Decodes a case from choice words (see the module docs).
    pub fn decode(ch: &mut Choices, input_seed: u64) -> Case {
        Gen::new(ch).run(input_seed)
    }

    /// `dims=… params=… seed=… specials=… chunk=… threads=…`: everything
    /// but the kernel, in the form [`Case::from_spec`] reads.
    pub fn spec(&self) -> String {
        let list = |v: Vec<String>| if v.is_empty() { "-".to_string() } else { v.join(",") };
        format!(
            "dims={} params={} seed={} specials={} chunk={} threads={}",
            list(self.dims.iter().map(|d| d.to_string()).collect()),
            list(self.params.iter().map(|p| format!("{p:?}")).collect()),
            self.input_seed,
            self.specials,
            self.chunk,
            self.threads
        )
    }

    /// A case from a kernel and a [`Case::spec`] line.
    pub fn from_spec(kernel: Kernel, spec: &str) -> Result<Case, String> {
        let mut c =
            Case { kernel, dims: vec![], params: vec![], input_seed: 0, specials: 0, chunk: CHUNKS[0], threads: 1 };
        for kv in spec.split_whitespace() {
            let (key, val) = kv.split_once('=').ok_or_else(|| format!("`{kv}`: expected key=value"))?;
            let list = |v: &str| -> Result<Vec<f64>, String> {
                if v == "-" {
                    return Ok(vec![]);
                }
                v.split(',').map(|x| x.parse::<f64>().map_err(|e| format!("`{x}`: {e}"))).collect()
            };
            let int = |v: &str| v.parse::<u64>().map_err(|e| format!("`{v}`: {e}"));
            match key {
                "dims" => c.dims = list(val)?.into_iter().map(|x| x as usize).collect(),
                "params" => c.params = list(val)?,
                "seed" => c.input_seed = int(val)?,
                "specials" => c.specials = int(val)? as usize,
                "chunk" => c.chunk = int(val)? as usize,
                "threads" => c.threads = int(val)? as usize,
                _ => return Err(format!("unknown key `{key}`")),
            }
        }
        if c.dims.len() != c.kernel.dims.len() || c.params.len() != c.kernel.params.len() {
            return Err("dims or params do not match the kernel".into());
        }
        Ok(c)
    }

    /// Elements of the largest value the case can make (product of all
    /// non-zero sizes).
    pub fn volume(&self) -> usize {
        self.dims.iter().filter(|&&d| d > 0).product()
    }
}

impl fmt::Display for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let named: Vec<String> =
            self.kernel.dims.iter().map(|(d, dim)| format!("{}={}", dim.name, self.dims[d.index()])).collect();
        writeln!(f, "# sizes {}", named.join(", "))?;
        writeln!(f, "# case: {}", self.spec())?;
        write!(f, "{}", self.kernel)
    }
}

/// A generated value and its nesting height.
#[derive(Clone, Copy)]
struct Val {
    id: ValueId,
    h: u32,
}

struct Gen<'c> {
    ch: &'c mut Choices,
    b: KernelBuilder,
    dims: Vec<DimId>,
    sizes: Vec<usize>,
    loadable: Vec<TensorId>,
    fparams: Vec<ParamId>,
    seed: Option<ParamId>,
    lets: Vec<Val>,
    named: Vec<ValueId>,
    params: Vec<f64>,
    n_tensors: usize,
}

impl<'c> Gen<'c> {
    fn new(ch: &'c mut Choices) -> Self {
        Gen {
            ch,
            b: KernelBuilder::new("rk"),
            dims: vec![],
            sizes: vec![],
            loadable: vec![],
            fparams: vec![],
            seed: None,
            lets: vec![],
            named: vec![],
            params: vec![],
            n_tensors: 0,
        }
    }

    fn axes(&self, v: Val) -> AxisSet {
        self.b.kernel().nodes[v.id].axes
    }

    /// A random ordering of a random subset of `of` (word 0: all, in order).
    fn subset_order(&mut self, of: &[DimId]) -> Vec<DimId> {
        let mut v = of.to_vec();
        for i in 0..v.len() {
            let j = i + self.ch.below(v.len() - i);
            v.swap(i, j);
        }
        let drop = self.ch.below(v.len() + 1);
        v.truncate(v.len() - drop);
        v
    }

    /// A random non-empty subset of `axes` (which must be non-empty).
    fn nonempty_subset(&mut self, axes: AxisSet) -> Vec<DimId> {
        let all: Vec<DimId> = axes.iter().collect();
        let mut s: Vec<DimId> = all.iter().copied().filter(|_| !self.ch.flag(50)).collect();
        if s.is_empty() {
            s.push(all[self.ch.below(all.len())]);
        }
        s
    }

    fn tensor(&mut self, prefix: &str, role: Role, dims: &[DimId]) -> TensorId {
        let name = format!("{prefix}{}", self.n_tensors);
        self.n_tensors += 1;
        self.b.tensor(&name, role, DType::F32, dims)
    }

    fn run(mut self, input_seed: u64) -> Case {
        // Case-level choices first, so that short choice sequences still
        // vary them.
        let chunk = self.ch.pick(&CHUNKS);
        let threads = 1 + self.ch.below(3);
        let specials = if self.ch.flag(50) { self.ch.pick(&SPECIALS[1..]) } else { 0 };
        // Dims and sizes.
        let nd = 1 + self.ch.below(4);
        for name in &DIM_NAMES[..nd] {
            let d = self.b.dim(name);
            self.dims.push(d);
        }
        for _ in 0..nd {
            let s = if nd <= 2 && self.ch.flag(15) { self.ch.pick(&LARGE) } else { self.ch.pick(&SMALL) };
            self.sizes.push(s);
        }
        while self.sizes.iter().filter(|&&s| s > 0).product::<usize>() > MAX_ELEMS {
            let i = (0..nd).max_by_key(|&i| self.sizes[i]).unwrap();
            self.sizes[i] = (self.sizes[i] / 3) | 1;
        }
        let all = self.dims.clone();

        // Loadable tensors, then `out` tensors whose dims are fixed up front.
        let n_in = 1 + self.ch.below(4);
        let mut written: Vec<TensorId> = vec![];
        for _ in 0..n_in {
            let dims = self.subset_order(&all);
            let inout = written.len() < 3 && self.ch.flag(25);
            let t = if inout { self.tensor("s", Role::InOut, &dims) } else { self.tensor("x", Role::In, &dims) };
            self.loadable.push(t);
            if inout {
                written.push(t);
            }
        }
        let min_out = usize::from(written.is_empty());
        let n_out = min_out + self.ch.below(3 - written.len() - min_out + 1);
        // `None`: the dims are drawn after the value, as a superset of its axes.
        let mut outs: Vec<Option<TensorId>> = vec![];
        for _ in 0..n_out {
            if self.ch.flag(35) {
                outs.push(None);
            } else {
                let dims = self.subset_order(&all);
                outs.push(Some(self.tensor("y", Role::Out, &dims)));
            }
        }

        // Params.
        let n_fp = self.ch.below(4);
        for i in 0..n_fp {
            let v = self.ch.pick(&param_values());
            let default = if self.ch.flag(40) { None } else { Some(v) };
            let p = self.b.param(&format!("p{i}"), default);
            self.fparams.push(p);
            self.params.push(v);
        }
        if self.ch.flag(30) {
            let v = self.ch.below(1 << 16) as f64;
            let default = if self.ch.flag(50) { None } else { Some(v) };
            self.seed = Some(self.b.typed_param("seed", ParamType::U32, default));
            self.params.push(v);
        }

        // Statements: lets and stores, in random order.
        enum St {
            Let,
            Fixed(TensorId),
            Later,
        }
        let mut stmts: Vec<St> = (0..self.ch.below(5)).map(|_| St::Let).collect();
        stmts.extend(written.iter().map(|&t| St::Fixed(t)));
        stmts.extend(outs.iter().map(|o| o.map_or(St::Later, St::Fixed)));
        for i in 0..stmts.len() {
            let j = i + self.ch.below(stmts.len() - i);
            stmts.swap(i, j);
        }
        let mut n_let = 0;
        for st in stmts {
            let max_depth = 1 + self.ch.below(4) as u32;
            let v = self.expr(0, max_depth);
            match st {
                St::Let => {
                    if !self.named.contains(&v.id) {
                        self.b.let_(&format!("t{n_let}"), v.id);
                        n_let += 1;
                        self.named.push(v.id);
                        self.lets.push(v);
                    }
                }
                St::Fixed(t) => {
                    let want = self.b.kernel().tensors[t].axes();
                    let v = self.fit(v, want);
                    self.b.store(t, v.id);
                }
                St::Later => {
                    let have = self.axes(v);
                    let mut dims: Vec<DimId> = have.iter().collect();
                    let rest: Vec<DimId> = all.iter().copied().filter(|d| !have.contains(*d)).collect();
                    dims.extend(rest.into_iter().filter(|_| self.ch.flag(40)));
                    for i in 0..dims.len() {
                        let j = i + self.ch.below(dims.len() - i);
                        dims.swap(i, j);
                    }
                    let t = self.tensor("y", Role::Out, &dims);
                    self.b.store(t, v.id);
                }
            }
        }
        let kernel = match self.b.finish() {
            Ok(k) => k,
            Err(d) => panic!("the generator built an invalid kernel: {d:?}"),
        };
        Case { kernel, dims: self.sizes, params: self.params, input_seed, specials, chunk, threads }
    }

    /// Reduces the axes of `v` outside `want` away (in one or two nested
    /// reductions).
    fn fit(&mut self, v: Val, want: AxisSet) -> Val {
        let extra = self.axes(v).minus(want);
        if extra.is_empty() {
            return v;
        }
        let ops = [Reduce::Sum, Reduce::Mean, Reduce::Max, Reduce::Min];
        let axes: Vec<DimId> = extra.iter().collect();
        if axes.len() >= 2 && self.ch.flag(30) {
            let cut = 1 + self.ch.below(axes.len() - 1);
            let op = self.ch.pick(&ops);
            let inner = self.b.reduce(op, v.id, &axes[..cut]);
            let op = self.ch.pick(&ops);
            let outer = self.b.reduce(op, inner, &axes[cut..]);
            return Val { id: outer, h: v.h + 2 };
        }
        let op = self.ch.pick(&ops);
        Val { id: self.b.reduce(op, v.id, &axes), h: v.h + 1 }
    }

    fn constant(&mut self) -> Val {
        let c = self.ch.pick(&constants());
        Val { id: self.b.constant(c), h: 0 }
    }

    fn leaf(&mut self, depth: u32) -> Val {
        match self.ch.below(10) {
            0..=3 => {
                let t = self.ch.pick(&self.loadable.clone());
                Val { id: self.b.load(t), h: 0 }
            }
            4 => self.constant(),
            5 if !self.fparams.is_empty() => {
                let p = self.ch.pick(&self.fparams.clone());
                Val { id: self.b.param_value(p), h: 0 }
            }
            6 | 7 if !self.lets.is_empty() => {
                let v = self.ch.pick(&self.lets.clone());
                if v.h + depth <= MAX_HEIGHT {
                    v
                } else {
                    self.constant()
                }
            }
            8 => {
                let axes = self.nonempty_subset(AxisSet::from_bits((1u64 << self.dims.len()) - 1));
                Val { id: self.b.count(&axes), h: 0 }
            }
            9 if self.seed.is_some() => {
                let axes = self.nonempty_subset(AxisSet::from_bits((1u64 << self.dims.len()) - 1));
                Val { id: self.b.uniform(self.seed.unwrap(), &axes), h: 0 }
            }
            _ => {
                let t = self.loadable[0];
                Val { id: self.b.load(t), h: 0 }
            }
        }
    }

    fn un(&mut self, op: Unary, a: Val) -> Val {
        Val { id: self.b.unary(op, a.id), h: a.h + 1 }
    }
    fn bin(&mut self, op: Binary, a: Val, b: Val) -> Val {
        Val { id: self.b.binary(op, a.id, b.id), h: a.h.max(b.h) + 1 }
    }
    fn red(&mut self, op: Reduce, a: Val, axes: &[DimId]) -> Val {
        Val { id: self.b.reduce(op, a.id, axes), h: a.h + 1 }
    }

    /// An expression at nesting `depth` of at most `max` levels.
    fn expr(&mut self, depth: u32, max: u32) -> Val {
        if depth >= max || depth >= MAX_HEIGHT {
            return self.leaf(depth);
        }
        let d = depth + 1;
        match self.ch.below(17) {
            0..=2 => self.leaf(depth),
            3..=4 => {
                let a = self.expr(d, max);
                match self.ch.below(12) {
                    0 => self.un(Unary::Neg, a),
                    1 => self.un(Unary::Abs, a),
                    2 => {
                        let a = self.un(Unary::Abs, a);
                        self.un(Unary::Sqrt, a)
                    }
                    3 => {
                        let a = self.un(Unary::Abs, a);
                        let c = self.constant();
                        let s = self.bin(Binary::Add, a, c);
                        self.un(Unary::Rsqrt, s)
                    }
                    4 => self.un(Unary::Sign, a),
                    5 => self.un(Unary::Sqrt, a),
                    6 => self.un(Unary::Rsqrt, a),
                    7 => self.un(Unary::Recip, a),
                    8 => {
                        let a = self.un(Unary::Abs, a);
                        let a = self.un(Unary::Neg, a);
                        self.un(Unary::Exp, a)
                    }
                    9 => {
                        let a = self.un(Unary::Abs, a);
                        self.un(Unary::Log, a)
                    }
                    10 => self.un(Unary::Exp, a),
                    _ => self.un(Unary::Log, a),
                }
            }
            5..=8 => {
                let a = self.expr(d, max);
                let b = self.expr(d, max);
                let op = self.ch.pick(&[Binary::Add, Binary::Sub, Binary::Mul, Binary::Div, Binary::Min, Binary::Max]);
                self.bin(op, a, b)
            }
            9 => {
                let a = self.expr(d, max);
                let c = self.ch.pick(&EXPONENTS);
                let c = Val { id: self.b.constant(c), h: 0 };
                self.bin(Binary::Pow, a, c)
            }
            10..=11 => {
                let x = self.expr(d, max);
                let y = self.expr(d, max);
                let op = self.ch.pick(&[Cmp::Gt, Cmp::Lt, Cmp::Ge, Cmp::Le, Cmp::Eq, Cmp::Ne]);
                let c = self.b.compare(op, x.id, y.id);
                let a = self.expr(d, max);
                let b = self.expr(d, max);
                Val { id: self.b.select(c, a.id, b.id), h: [x.h, y.h, a.h, b.h].into_iter().max().unwrap() + 1 }
            }
            12..=14 => {
                let a = self.expr(d, max);
                let have = self.axes(a);
                if have.is_empty() {
                    return a;
                }
                let axes = self.nonempty_subset(have);
                let op = self.ch.pick(&[Reduce::Sum, Reduce::Mean, Reduce::Max, Reduce::Min]);
                self.red(op, a, &axes)
            }
            _ => self.template(d, max),
        }
    }

    /// Normalization patterns; each uses its operand twice.
    fn template(&mut self, d: u32, max: u32) -> Val {
        let e = self.expr(d, max);
        let have = self.axes(e);
        if have.is_empty() || e.h + 4 > MAX_HEIGHT {
            return e;
        }
        let ax = self.nonempty_subset(have);
        match self.ch.below(5) {
            0 => {
                let m = self.red(Reduce::Mean, e, &ax);
                self.bin(Binary::Sub, e, m)
            }
            1 => {
                let sq = self.bin(Binary::Mul, e, e);
                let ms = self.red(Reduce::Mean, sq, &ax);
                let c = self.constant();
                let c = self.un(Unary::Abs, c);
                let s = self.bin(Binary::Add, ms, c);
                let r = self.un(Unary::Rsqrt, s);
                self.bin(Binary::Mul, e, r)
            }
            2 => {
                let m = self.red(Reduce::Max, e, &ax);
                let z = self.bin(Binary::Sub, e, m);
                let t = self.un(Unary::Exp, z);
                let s = self.red(Reduce::Sum, t, &ax);
                self.bin(Binary::Div, t, s)
            }
            3 => {
                let m = self.red(Reduce::Mean, e, &ax);
                let c = self.bin(Binary::Sub, e, m);
                let sq = self.bin(Binary::Mul, c, c);
                self.red(Reduce::Mean, sq, &ax)
            }
            _ => {
                let m = self.red(Reduce::Max, e, &ax);
                let z = self.bin(Binary::Sub, e, m);
                let t = self.un(Unary::Exp, z);
                let s = self.red(Reduce::Sum, t, &ax);
                let l = self.un(Unary::Log, s);
                self.bin(Binary::Add, m, l)
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------

/// splitmix64.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
    }
    fn normal(&mut self) -> f32 {
        let s: f32 = (0..4).map(|_| self.unit()).sum();
        (s - 2.0) * 1.732_050_8
    }
}

/// What an `out` buffer holds before a run: a value no engine computes by
/// accident, so a missed store is caught by the oracle.
pub const SENTINEL: f32 = -1.234_567e30;

/// Special input values.
pub const SPECIAL_VALUES: [f32; 12] =
    [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1e-40, -3e-42, 3e38, -3e38, 0.0, -0.0, f32::MIN_POSITIVE, 3e38, -3e38];

/// Entry values of every tensor of `case` (by tensor index); `out` tensors
/// hold [`SENTINEL`].
pub fn make_inputs(case: &Case) -> Vec<Vec<f32>> {
    let k = &case.kernel;
    let mut rng = Rng(case.input_seed);
    k.tensors
        .iter()
        .map(|(_, t)| {
            let n: usize = t.dims.iter().map(|d| case.dims[d.index()]).product();
            if t.role == Role::Out {
                return vec![SENTINEL; n];
            }
            let style = rng.below(6);
            let scale = [1.0f32, 1e-3, 1e3, 0.1, 10.0][rng.below(5)];
            (0..n)
                .map(|_| {
                    if case.specials > 0 && rng.below(case.specials) == 0 {
                        return SPECIAL_VALUES[rng.below(SPECIAL_VALUES.len())];
                    }
                    match style {
                        0..=2 => rng.normal() * scale,
                        3 => rng.below(7) as f32 - 3.0,
                        4 => rng.unit(),
                        _ => rng.normal(),
                    }
                })
                .collect()
        })
        .collect()
}

/// The words the JIT takes for `params`: f32 bits, or the u32 value.
pub fn param_words(k: &Kernel, params: &[f64]) -> Vec<u32> {
    k.params
        .iter()
        .map(|(id, p)| match p.ty {
            ParamType::F32 => (params[id.index()] as f32).to_bits(),
            ParamType::U32 => params[id.index()] as u32,
        })
        .collect()
}

// ---------------------------------------------------------------------------
// The oracle: abstract values
// ---------------------------------------------------------------------------

const MAX32: f64 = f32::MAX as f64;
/// The smallest real that rounds to +Inf in f32: 2^128 - 2^103.
const OVF: f64 = 3.402_823_567_797_336_6e38;
const OVF_LO: f64 = OVF * (1.0 - 1e-12);
const OVF_HI: f64 = OVF * (1.0 + 1e-12);

/// A set of f32 values: the reals in `[lo, hi]` (when `fin`; both bounds on
/// the f32 grid), and/or +Inf, -Inf, NaN. Zero is unsigned. `ovf`: some value
/// this one depends on (or this one) may be infinite in f32.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Av {
    pub lo: f64,
    pub hi: f64,
    pub fin: bool,
    pub pinf: bool,
    pub ninf: bool,
    pub nan: bool,
    pub ovf: bool,
}

impl Av {
    const EMPTY: Av = Av { lo: 0.0, hi: 0.0, fin: false, pinf: false, ninf: false, nan: false, ovf: false };
    const NAN: Av = Av { nan: true, ..Av::EMPTY };
    const TOP: Av = Av { lo: -MAX32, hi: MAX32, fin: true, pinf: true, ninf: true, nan: true, ovf: true };

    /// Exactly the value `v` (an f32 value, possibly widened to f64).
    fn point(v: f64) -> Av {
        if v.is_nan() {
            Av::NAN
        } else if v == f64::INFINITY {
            Av { pinf: true, ovf: true, ..Av::EMPTY }
        } else if v == f64::NEG_INFINITY {
            Av { ninf: true, ovf: true, ..Av::EMPTY }
        } else {
            Av { lo: v, hi: v, fin: true, ..Av::EMPTY }
        }
    }

    /// Every f32 rounding (to nearest, then `ulps` more) of an exact result
    /// in `[lo, hi]` (extended reals).
    fn real(lo: f64, hi: f64, ulps: u32) -> Av {
        if lo.is_nan() || hi.is_nan() || lo > hi {
            return Av::TOP;
        }
        let mut r = Av::EMPTY;
        r.pinf = hi >= OVF_LO;
        r.ninf = lo <= -OVF_LO;
        if lo < OVF_HI && hi > -OVF_HI {
            r.fin = true;
            r.lo = down32(lo.max(-MAX32), ulps);
            r.hi = up32(hi.min(MAX32), ulps);
        }
        r.ovf = r.pinf || r.ninf;
        r
    }

    /// The hull `[lo, hi]` of extended reals, exactly.
    fn hull_set(lo: f64, hi: f64) -> Av {
        let mut r = Av::EMPTY;
        r.ninf = lo == f64::NEG_INFINITY;
        r.pinf = hi == f64::INFINITY;
        if lo <= MAX32 && hi >= -MAX32 {
            r.fin = true;
            r.lo = lo.max(-MAX32);
            r.hi = hi.min(MAX32);
        }
        r.ovf = r.pinf || r.ninf;
        r
    }

    /// The hull of the non-NaN values, over the extended reals.
    fn hull(&self) -> Option<(f64, f64)> {
        if !(self.fin || self.pinf || self.ninf) {
            return None;
        }
        let lo = if self.ninf {
            f64::NEG_INFINITY
        } else if self.fin {
            self.lo
        } else {
            f64::INFINITY
        };
        let hi = if self.pinf {
            f64::INFINITY
        } else if self.fin {
            self.hi
        } else {
            f64::NEG_INFINITY
        };
        Some((lo, hi))
    }

    fn union(self, o: Av) -> Av {
        let (lo, hi, fin) = match (self.fin, o.fin) {
            (true, true) => (self.lo.min(o.lo), self.hi.max(o.hi), true),
            (true, false) => (self.lo, self.hi, true),
            (false, true) => (o.lo, o.hi, true),
            (false, false) => (0.0, 0.0, false),
        };
        Av {
            lo,
            hi,
            fin,
            pinf: self.pinf || o.pinf,
            ninf: self.ninf || o.ninf,
            nan: self.nan || o.nan,
            ovf: self.ovf || o.ovf,
        }
    }

    fn with_ovf(mut self, ovf: bool) -> Av {
        self.ovf |= ovf || self.pinf || self.ninf;
        self
    }

    fn pieces(&self) -> impl Iterator<Item = Piece> {
        let p = [
            self.fin.then_some(Piece::Fin(self.lo, self.hi)),
            self.pinf.then_some(Piece::Pinf),
            self.ninf.then_some(Piece::Ninf),
            self.nan.then_some(Piece::Nan),
        ];
        p.into_iter().flatten()
    }

    /// True when `v` (an f32 result) is in the set.
    pub fn contains(&self, v: f32) -> bool {
        if v.is_nan() {
            self.nan
        } else if v == f32::INFINITY {
            self.pinf
        } else if v == f32::NEG_INFINITY {
            self.ninf
        } else {
            self.fin && self.lo <= v as f64 && v as f64 <= self.hi
        }
    }

    /// True when the f64 result `v` is in the set, up to f64's own rounding.
    pub fn contains64(&self, v: f64) -> bool {
        if v.is_nan() {
            self.nan
        } else if v.is_infinite() {
            if v > 0.0 {
                self.pinf
            } else {
                self.ninf
            }
        } else {
            let slack = 1e-12 * self.lo.abs().max(self.hi.abs()) + 1e-300;
            self.fin && self.lo - slack <= v && v <= self.hi + slack
        }
    }

    /// Only NaN is possible.
    pub fn must_nan(&self) -> bool {
        self.nan && !(self.fin || self.pinf || self.ninf)
    }
    /// NaN is possible, and so is something else.
    pub fn maybe_nan(&self) -> bool {
        self.nan && (self.fin || self.pinf || self.ninf)
    }
}

impl fmt::Display for Av {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = vec![];
        if self.fin {
            parts.push(format!("[{:e}, {:e}]", self.lo, self.hi));
        }
        if self.pinf {
            parts.push("+inf".into());
        }
        if self.ninf {
            parts.push("-inf".into());
        }
        if self.nan {
            parts.push("NaN".into());
        }
        write!(f, "{{{}}}", parts.join(" ∪ "))
    }
}

#[derive(Clone, Copy, Debug)]
enum Piece {
    Fin(f64, f64),
    Pinf,
    Ninf,
    Nan,
}

fn next_up32(x: f32) -> f32 {
    if x.is_nan() || x == f32::INFINITY {
        x
    } else if x == 0.0 {
        f32::from_bits(1)
    } else if x > 0.0 {
        f32::from_bits(x.to_bits() + 1)
    } else {
        f32::from_bits(x.to_bits() - 1)
    }
}
fn next_down32(x: f32) -> f32 {
    -next_up32(-x)
}
/// The f32 `ulps` steps below the largest f32 ≤ `x` (`x` in f32 range).
fn down32(x: f64, ulps: u32) -> f64 {
    let mut f = x as f32;
    if f as f64 > x {
        f = next_down32(f);
    }
    for _ in 0..ulps {
        f = next_down32(f);
    }
    (f as f64).max(-MAX32)
}
/// The f32 `ulps` steps above the smallest f32 ≥ `x` (`x` in f32 range).
fn up32(x: f64, ulps: u32) -> f64 {
    let mut f = x as f32;
    if (f as f64) < x {
        f = next_up32(f);
    }
    for _ in 0..ulps {
        f = next_up32(f);
    }
    (f as f64).min(MAX32)
}

/// Representatives of a piece's sign classes, for operations with an
/// infinite operand (whose result depends only on the other's sign class).
fn reps(p: Piece) -> Vec<f64> {
    match p {
        Piece::Fin(lo, hi) => {
            let mut v = vec![];
            if lo < 0.0 {
                v.push(-1.0);
            }
            if lo <= 0.0 && hi >= 0.0 {
                v.extend([0.0, -0.0]);
            }
            if hi > 0.0 {
                v.push(1.0);
            }
            v
        }
        Piece::Pinf => vec![f64::INFINITY],
        Piece::Ninf => vec![f64::NEG_INFINITY],
        Piece::Nan => vec![f64::NAN],
    }
}

fn union_all(it: impl IntoIterator<Item = Av>) -> Av {
    it.into_iter().fold(Av::EMPTY, Av::union)
}

fn apply_arith(op: Binary, x: f64, y: f64) -> f64 {
    match op {
        Binary::Add => x + y,
        Binary::Sub => x - y,
        Binary::Mul => x * y,
        Binary::Div => x / y,
        _ => unreachable!("arith only"),
    }
}

/// `+ - * /`.
fn arith(op: Binary, a: Av, b: Av) -> Av {
    let mut r = Av::EMPTY;
    for pa in a.pieces() {
        for pb in b.pieces() {
            let x = match (pa, pb) {
                (Piece::Nan, _) | (_, Piece::Nan) => Av::NAN,
                (Piece::Fin(al, ah), Piece::Fin(bl, bh)) => fin_arith(op, al, ah, bl, bh),
                _ => union_all(
                    reps(pa)
                        .into_iter()
                        .flat_map(|x| reps(pb).into_iter().map(move |y| Av::point(apply_arith(op, x, y)))),
                ),
            };
            r = r.union(x);
        }
    }
    r.with_ovf(a.ovf || b.ovf)
}

fn fin_arith(op: Binary, al: f64, ah: f64, bl: f64, bh: f64) -> Av {
    let ends = |f: fn(f64, f64) -> f64| {
        let c = [f(al, bl), f(al, bh), f(ah, bl), f(ah, bh)];
        (c.iter().copied().fold(f64::INFINITY, f64::min), c.iter().copied().fold(f64::NEG_INFINITY, f64::max))
    };
    match op {
        Binary::Add => Av::real(al + bl, ah + bh, 1),
        Binary::Sub => Av::real(al - bh, ah - bl, 1),
        Binary::Mul => {
            let (lo, hi) = ends(|x, y| x * y);
            Av::real(lo, hi, 1)
        }
        Binary::Div => {
            if bl <= 0.0 && bh >= 0.0 {
                let a_zero = al <= 0.0 && ah >= 0.0;
                let a_nonzero = al < 0.0 || ah > 0.0;
                let mut r = Av::EMPTY;
                r.nan = a_zero;
                if a_nonzero {
                    r.pinf = true;
                    r.ninf = true;
                    if !(bl == 0.0 && bh == 0.0) {
                        r = r.union(Av { lo: -MAX32, hi: MAX32, fin: true, ..Av::EMPTY });
                    }
                }
                if a_zero && !(bl == 0.0 && bh == 0.0) {
                    r = r.union(Av::point(0.0));
                }
                r
            } else {
                let (lo, hi) = ends(|x, y| x / y);
                Av::real(lo, hi, 1)
            }
        }
        _ => unreachable!("arith only"),
    }
}

/// Elementwise `min`/`max` (NaN-propagating): hulls.
fn minmax(is_max: bool, a: Av, b: Av) -> Av {
    let mut r = Av::EMPTY;
    if let (Some((al, ah)), Some((bl, bh))) = (a.hull(), b.hull()) {
        r = if is_max { Av::hull_set(al.max(bl), ah.max(bh)) } else { Av::hull_set(al.min(bl), ah.min(bh)) };
    }
    r.nan = a.nan || b.nan;
    r.with_ovf(a.ovf || b.ovf)
}

/// `pow(a, c)`; exact sets only for a point exponent `c`.
fn pow(a: Av, b: Av) -> Av {
    let c = match b {
        Av { fin: true, pinf: false, ninf: false, nan: false, lo, hi, .. } if lo == hi => lo,
        _ => return Av::TOP,
    };
    let mut r = Av::EMPTY;
    for p in a.pieces() {
        let x = match p {
            Piece::Nan => Av::point(f32::NAN.powf(c as f32) as f64),
            Piece::Pinf => Av::point(f32::INFINITY.powf(c as f32) as f64),
            Piece::Ninf => Av::point(f32::NEG_INFINITY.powf(c as f32) as f64),
            Piece::Fin(mut lo, hi) => {
                let mut s = Av::EMPTY;
                if lo < 0.0 && c.fract() != 0.0 {
                    s.nan = true;
                    if hi < 0.0 {
                        r = r.union(s);
                        continue;
                    }
                    lo = 0.0;
                }
                let mut cands = vec![lo.powf(c), hi.powf(c)];
                if lo <= 0.0 && hi >= 0.0 {
                    cands.extend([0.0f64.powf(c), (-0.0f64).powf(c)]);
                }
                let mn = cands.iter().copied().fold(f64::INFINITY, f64::min);
                let mx = cands.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                s.union(Av::real(mn, mx, 4))
            }
        };
        r = r.union(x);
    }
    r.with_ovf(a.ovf)
}

/// A monotone non-decreasing function on its domain `[dom_lo, inf)`; below
/// the domain it gives NaN.
fn monotone(a: Av, f: fn(f64) -> f64, f32f: fn(f32) -> f32, dom_lo: Option<f64>, ulps: u32) -> Av {
    let mut r = Av::EMPTY;
    for p in a.pieces() {
        let x = match p {
            Piece::Nan => Av::NAN,
            Piece::Pinf => Av::point(f32f(f32::INFINITY) as f64),
            Piece::Ninf => Av::point(f32f(f32::NEG_INFINITY) as f64),
            Piece::Fin(mut lo, hi) => {
                let mut s = Av::EMPTY;
                if let Some(d) = dom_lo {
                    if lo < d {
                        s.nan = true;
                        if hi < d {
                            r = r.union(s);
                            continue;
                        }
                        lo = d;
                    }
                }
                s.union(Av::real(f(lo), f(hi), ulps))
            }
        };
        r = r.union(x);
    }
    r.with_ovf(a.ovf)
}

fn unary(op: Unary, a: Av) -> Av {
    match op {
        Unary::Neg => Av { lo: -a.hi, hi: -a.lo, pinf: a.ninf, ninf: a.pinf, ..a },
        Unary::Abs => {
            let mut r = Av { pinf: a.pinf || a.ninf, ninf: false, ..a };
            if a.fin {
                (r.lo, r.hi) = if a.lo >= 0.0 {
                    (a.lo, a.hi)
                } else if a.hi <= 0.0 {
                    (-a.hi, -a.lo)
                } else {
                    (0.0, a.hi.max(-a.lo))
                };
            }
            r
        }
        Unary::Sign => {
            let mut r = Av { nan: a.nan, ovf: a.ovf, ..Av::EMPTY };
            if a.pinf || (a.fin && a.hi > 0.0) {
                r = r.union(Av::point(1.0));
            }
            if a.ninf || (a.fin && a.lo < 0.0) {
                r = r.union(Av::point(-1.0));
            }
            if a.fin && a.lo <= 0.0 && a.hi >= 0.0 {
                r = r.union(Av::point(0.0));
            }
            r
        }
        Unary::Sqrt => monotone(a, f64::sqrt, f32::sqrt, Some(0.0), 1),
        Unary::Rsqrt => arith(Binary::Div, Av::point(1.0), unary(Unary::Sqrt, a)),
        Unary::Recip => arith(Binary::Div, Av::point(1.0), a),
        Unary::Exp => monotone(a, f64::exp, f32::exp, None, 4),
        Unary::Log => monotone(a, f64::ln, f32::ln, Some(0.0), 4),
    }
}

/// A comparison's possible outcomes.
#[derive(Clone, Copy, Debug, Default)]
struct Cond {
    t: bool,
    f: bool,
    ovf: bool,
}

fn compare(op: Cmp, a: Av, b: Av) -> Cond {
    let mut c = Cond { ovf: a.ovf || b.ovf, ..Cond::default() };
    if a.nan || b.nan {
        if op == Cmp::Ne {
            c.t = true;
        } else {
            c.f = true;
        }
    }
    if let (Some((al, ah)), Some((bl, bh))) = (a.hull(), b.hull()) {
        let overlap = al <= bh && bl <= ah;
        let same_point = al == ah && bl == bh && al == bl;
        let (t, f) = match op {
            Cmp::Lt => (al < bh, ah >= bl),
            Cmp::Le => (al <= bh, ah > bl),
            Cmp::Gt => (ah > bl, al <= bh),
            Cmp::Ge => (ah >= bl, al < bh),
            Cmp::Eq => (overlap, !same_point),
            Cmp::Ne => (!same_point, overlap),
        };
        c.t |= t;
        c.f |= f;
    }
    c
}

/// Accumulates a `sum` over a set of elements (see the module docs).
#[derive(Clone, Copy, Default)]
struct SumAcc {
    n: usize,
    l: f64,
    h: f64,
    abs: f64,
    pos: f64,
    neg: f64,
    all_fin: bool,
    all_fin_or_pinf: bool,
    all_fin_or_ninf: bool,
    any_pinf: bool,
    any_ninf: bool,
    any_nan: bool,
    must_nan: bool,
    ovf: bool,
}

impl SumAcc {
    fn new() -> Self {
        SumAcc { all_fin: true, all_fin_or_pinf: true, all_fin_or_ninf: true, ..Default::default() }
    }
    fn add(&mut self, a: &Av) {
        self.n += 1;
        self.ovf |= a.ovf;
        self.any_nan |= a.nan;
        self.must_nan |= a.must_nan();
        self.any_pinf |= a.pinf;
        self.any_ninf |= a.ninf;
        self.all_fin &= a.fin;
        self.all_fin_or_pinf &= a.fin || a.pinf;
        self.all_fin_or_ninf &= a.fin || a.ninf;
        if a.fin {
            self.l += a.lo;
            self.h += a.hi;
            self.abs += a.lo.abs().max(a.hi.abs());
            self.pos += a.hi.max(0.0);
            self.neg += (-a.lo).max(0.0);
        }
    }
    fn finish(&self) -> Av {
        if self.n == 0 {
            return Av::point(0.0);
        }
        if self.must_nan {
            return Av::NAN.with_ovf(self.ovf);
        }
        let k = (self.n + 2) as f64 * f64::powi(2.0, -24);
        let gamma = k / (1.0 - k);
        let err = gamma * self.abs * (1.0 + 1e-12);
        let pos_reach = self.any_pinf || self.pos + err >= OVF_LO;
        let neg_reach = self.any_ninf || self.neg + err >= OVF_LO;
        let mut r = Av::EMPTY;
        r.pinf = self.all_fin_or_pinf && pos_reach;
        r.ninf = self.all_fin_or_ninf && neg_reach;
        r.nan = self.any_nan || (pos_reach && neg_reach);
        if self.all_fin {
            let slack = 1e-12 * self.abs;
            let fin = Av::real(self.l - err - slack, self.h + err + slack, 1);
            r = r.union(Av { pinf: false, ninf: false, ovf: false, ..fin });
        }
        r.with_ovf(self.ovf)
    }
}

/// Element values of one node.
enum Vals {
    F(Vec<Av>),
    B(Vec<Cond>),
}

/// Strides of the dense row-major layout of `axes` (declaration order), by
/// dim index; 0 for dims not in `axes`.
fn strides(axes: AxisSet, sizes: &[usize]) -> Vec<usize> {
    let mut s = vec![0; sizes.len()];
    let mut acc = 1;
    for d in (0..sizes.len()).rev() {
        if axes.contains(DimId::from_raw(d as u32)) {
            s[d] = acc;
            acc *= sizes[d];
        }
    }
    s
}

fn dims_of(axes: AxisSet) -> Vec<usize> {
    axes.iter().map(|d| d.index()).collect()
}

/// Calls `f` with the index (by dim index) of every element over `order`
/// (outermost first), in row-major order.
fn odometer(order: &[usize], sizes: &[usize], mut f: impl FnMut(&[usize])) {
    let total: usize = order.iter().map(|&d| sizes[d]).product();
    let mut idx = vec![0usize; sizes.len()];
    for _ in 0..total {
        f(&idx);
        for &d in order.iter().rev() {
            idx[d] += 1;
            if idx[d] < sizes[d] {
                break;
            }
            idx[d] = 0;
        }
    }
}

fn dot(idx: &[usize], s: &[usize]) -> usize {
    idx.iter().zip(s).map(|(i, s)| i * s).sum()
}

/// Evaluates a kernel over [`Av`] sets (see the module docs).
pub struct Oracle;

impl Oracle {
    /// The set of possible final values of every written tensor, by tensor
    /// index, in the tensor's memory order.
    pub fn eval(k: &Kernel, sizes: &[usize], params: &[f64], inputs: &[Vec<f32>]) -> Vec<Option<Vec<Av>>> {
        let mut vals: Vec<Vals> = Vec::with_capacity(k.nodes.len());
        for (_, node) in k.nodes.iter() {
            let axes = node.axes;
            let n: usize = axes.iter().map(|d| sizes[d.index()]).product();
            let order = dims_of(axes);
            fn f<'v>(k: &Kernel, sizes: &[usize], vals: &'v [Vals], v: ValueId) -> (&'v [Av], Vec<usize>) {
                match &vals[v.index()] {
                    Vals::F(x) => (x, strides(k.nodes[v].axes, sizes)),
                    Vals::B(_) => unreachable!("f32 operand expected"),
                }
            }
            let out = match &node.op {
                Op::Const(c) => Vals::F(vec![Av::point(*c as f32 as f64)]),
                Op::Param(p) => Vals::F(vec![Av::point(params[p.index()] as f32 as f64)]),
                Op::Count(ax) => {
                    let c: usize = ax.iter().map(|d| sizes[d.index()]).product();
                    Vals::F(vec![Av::point(c as f32 as f64)])
                }
                Op::Uniform(p, _) => {
                    let seed = params[p.index()] as u32;
                    Vals::F((0..n).map(|i| Av::point(rng::uniform(seed, i as u64) as f64)).collect())
                }
                Op::Load(t) => {
                    let tensor = &k.tensors[*t];
                    let mut ts = vec![0; sizes.len()];
                    let mut acc = 1;
                    for d in tensor.dims.iter().rev() {
                        ts[d.index()] = acc;
                        acc *= sizes[d.index()];
                    }
                    let buf = &inputs[t.index()];
                    let mut v = Vec::with_capacity(n);
                    odometer(&order, sizes, |idx| v.push(Av::point(buf[dot(idx, &ts)] as f64)));
                    Vals::F(v)
                }
                Op::Unary(u, a) => {
                    let (x, s) = f(k, sizes, &vals, *a);
                    let mut v = Vec::with_capacity(n);
                    odometer(&order, sizes, |idx| v.push(unary(*u, x[dot(idx, &s)])));
                    Vals::F(v)
                }
                Op::Binary(b, a, c) => {
                    let (x, sx) = f(k, sizes, &vals, *a);
                    let (y, sy) = f(k, sizes, &vals, *c);
                    let mut v = Vec::with_capacity(n);
                    odometer(&order, sizes, |idx| {
                        let (p, q) = (x[dot(idx, &sx)], y[dot(idx, &sy)]);
                        v.push(match b {
                            Binary::Add | Binary::Sub | Binary::Mul | Binary::Div => arith(*b, p, q),
                            Binary::Min => minmax(false, p, q),
                            Binary::Max => minmax(true, p, q),
                            Binary::Pow => pow(p, q),
                        })
                    });
                    Vals::F(v)
                }
                Op::Compare(cmp, a, c) => {
                    let (x, sx) = f(k, sizes, &vals, *a);
                    let (y, sy) = f(k, sizes, &vals, *c);
                    let mut v = Vec::with_capacity(n);
                    odometer(&order, sizes, |idx| v.push(compare(*cmp, x[dot(idx, &sx)], y[dot(idx, &sy)])));
                    Vals::B(v)
                }
                Op::Select(c, a, b) => {
                    let (cv, sc) = match &vals[c.index()] {
                        Vals::B(x) => (x, strides(k.nodes[*c].axes, sizes)),
                        Vals::F(_) => unreachable!("condition expected"),
                    };
                    let (x, sx) = f(k, sizes, &vals, *a);
                    let (y, sy) = f(k, sizes, &vals, *b);
                    let mut v = Vec::with_capacity(n);
                    odometer(&order, sizes, |idx| {
                        let c = cv[dot(idx, &sc)];
                        let mut r = Av::EMPTY;
                        if c.t {
                            r = r.union(x[dot(idx, &sx)]);
                        }
                        if c.f {
                            r = r.union(y[dot(idx, &sy)]);
                        }
                        v.push(r.with_ovf(c.ovf));
                    });
                    Vals::F(v)
                }
                Op::Reduce(r, a, red) => {
                    let (x, _) = f(k, sizes, &vals, *a);
                    let in_axes = k.nodes[*a].axes;
                    let so = strides(axes, sizes);
                    let in_order = dims_of(in_axes);
                    let cnt: usize = red.iter().map(|d| sizes[d.index()]).product();
                    match r {
                        Reduce::Sum | Reduce::Mean => {
                            let mut acc = vec![SumAcc::new(); n];
                            let mut i = 0;
                            odometer(&in_order, sizes, |idx| {
                                acc[dot(idx, &so)].add(&x[i]);
                                i += 1;
                            });
                            let count = Av::point(cnt as f32 as f64);
                            Vals::F(
                                acc.iter()
                                    .map(|a| {
                                        let s = a.finish();
                                        if *r == Reduce::Mean {
                                            arith(Binary::Div, s, count)
                                        } else {
                                            s
                                        }
                                    })
                                    .collect(),
                            )
                        }
                        Reduce::Max | Reduce::Min => {
                            let is_max = *r == Reduce::Max;
                            let id = Av::point(if is_max { f64::NEG_INFINITY } else { f64::INFINITY });
                            let mut acc = vec![Av { ovf: false, ..id }; n];
                            let mut i = 0;
                            odometer(&in_order, sizes, |idx| {
                                let o = dot(idx, &so);
                                acc[o] = minmax(is_max, acc[o], x[i]);
                                i += 1;
                            });
                            Vals::F(acc)
                        }
                    }
                }
            };
            debug_assert!(match &out {
                Vals::F(v) => v.len() == n || matches!(node.op, Op::Const(_) | Op::Param(_) | Op::Count(_)),
                Vals::B(v) => v.len() == n,
            });
            vals.push(out);
        }
        let mut outs: Vec<Option<Vec<Av>>> = k.tensors.iter().map(|_| None).collect();
        for s in &k.stmts {
            if let Stmt::Store { tensor, value } = s {
                let t = &k.tensors[*tensor];
                let Vals::F(x) = &vals[value.index()] else { unreachable!("stores are f32") };
                let sv = strides(k.nodes[*value].axes, sizes);
                let order: Vec<usize> = t.dims.iter().map(|d| d.index()).collect();
                let mut v = Vec::new();
                odometer(&order, sizes, |idx| v.push(x[dot(idx, &sv)]));
                outs[tensor.index()] = Some(v);
            }
        }
        outs
    }
}

// ---------------------------------------------------------------------------
// Running a case
// ---------------------------------------------------------------------------

/// What a case run needs that is costly to make: the ISA and thread pools.
pub struct Env {
    pub isa: Isa,
    pub pools: Vec<rayon::ThreadPool>,
    pub opts: Options,
}

impl Env {
    pub fn new() -> Env {
        let pools = (2..=3).map(|n| rayon::ThreadPoolBuilder::new().num_threads(n).build().unwrap()).collect();
        Env { isa: Isa::new(IsaChoice::Native).unwrap(), pools, opts: Options { verify: true, ..Options::default() } }
    }
}

impl Default for Env {
    fn default() -> Self {
        Env::new()
    }
}

/// Counts from one case (summed over cases by the caller).
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub cases: usize,
    pub jit_cases: usize,
    /// Output elements checked.
    pub elements: usize,
    /// Elements the oracle says must be NaN (strict).
    pub must_nan: usize,
    /// Elements that may or may not be NaN (relaxed NaN rule).
    pub maybe_nan: usize,
    /// Of those, where the loop IR / JIT and the f32 reference disagree on
    /// NaN-ness (legitimately).
    pub nan_disagree: usize,
    /// Elements whose f64 check is skipped because an input to them may be
    /// infinite in f32.
    pub f64_skipped: usize,
    /// Elements where the engine and the f32 reference are zeros of opposite
    /// signs (allowed: zero is unsigned in the oracle).
    pub zero_sign: usize,
    /// Elements whose set is a finite interval narrower than 1e-3 relative to
    /// `|f64| + scale` (`scale`: the tensor's mean `|f64|`): well-conditioned.
    pub tight: usize,
    /// Largest `|engine - f64| / (|f64| + scale)` over the tight elements.
    pub tight_max_err: f64,
    /// Elements whose set is wider (cancellation, discontinuities, possible
    /// overflow...): only membership in the set is checked.
    pub loose: usize,
    /// Seconds spent lowering, in the loop-IR interpreter, compiling and
    /// running the JIT, in the reference interpreters, in the oracle.
    pub secs: [f64; 5],
}

impl Stats {
    pub fn add(&mut self, o: &Stats) {
        self.cases += o.cases;
        self.jit_cases += o.jit_cases;
        self.elements += o.elements;
        self.must_nan += o.must_nan;
        self.maybe_nan += o.maybe_nan;
        self.nan_disagree += o.nan_disagree;
        self.f64_skipped += o.f64_skipped;
        self.zero_sign += o.zero_sign;
        self.tight += o.tight;
        self.tight_max_err = self.tight_max_err.max(o.tight_max_err);
        self.loose += o.loose;
        for i in 0..5 {
            self.secs[i] += o.secs[i];
        }
    }
}

/// A failed check.
#[derive(Clone, Debug)]
pub struct Failure {
    /// Which check (`"jit != loop"`, `"loop outside oracle"`, ...).
    pub kind: &'static str,
    /// Details.
    pub msg: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.msg)
    }
}

fn fail<T>(kind: &'static str, msg: String) -> Result<T, Failure> {
    Err(Failure { kind, msg })
}

/// Runs `case` through lowering, the loop-IR interpreter, the JIT (when
/// `jit`), both reference interpreters and the oracle, and checks them (see
/// the module docs).
///
/// With `Engines::Reference` (for kernels whose lowering is known not to
/// terminate) only the reference interpreters and the oracle run, and the
/// f32 reference takes the loop IR's place in the checks.
pub fn run_case(case: &Case, env: &Env, engines: Engines) -> Result<Stats, Failure> {
    let k = &case.kernel;
    let dims = &case.dims;
    let inputs = make_inputs(case);
    let mut stats = Stats { cases: 1, ..Stats::default() };
    let looped = if engines == Engines::Reference {
        None
    } else {
        let opts = Options { chunk_elems: case.chunk, ..env.opts.clone() };
        let t = Instant::now();
        let plan = match lower(k, dims, &opts) {
            Ok(p) => p,
            Err(e) => return fail("lower", e.to_string()),
        };
        stats.secs[0] += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let mut looped = inputs.clone();
        if let Err(e) = exec(&plan, dims, &case.params, &mut looped) {
            return fail("loop-IR exec", e.to_string());
        }
        stats.secs[1] += t.elapsed().as_secs_f64();
        if engines == Engines::All {
            let t = Instant::now();
            jit_check(case, env, &plan, &inputs, &looped)?;
            stats.jit_cases = 1;
            stats.secs[2] += t.elapsed().as_secs_f64();
        }
        for (id, t) in k.tensors.iter() {
            if t.role == Role::In
                && looped[id.index()].iter().zip(&inputs[id.index()]).any(|(a, b)| a.to_bits() != b.to_bits())
            {
                return fail("input modified", format!("`{}` was written", t.name));
            }
        }
        Some(looped)
    };
    check_outputs(case, &inputs, looped.as_deref(), &mut stats)?;
    Ok(stats)
}

/// Known bugs in the engines, excluded while they are open (by index: what
/// [`known_bug`] returns). The differential test and the fuzz target rerun
/// a case whose JIT failure matches one without the JIT, and count it.
/// Empty: the three bugs this test found (vector libcalls failing
/// verification, the prefetch using a value from a non-dominating block, the
/// non-terminating reordering of swapped `inout` stores) are fixed. Add an
/// entry and a matcher in [`known_bug`] only while a bug is open.
pub const KNOWN_BUGS: [&str; 0] = [];

/// The known bug (index into [`KNOWN_BUGS`]) a JIT failure is an instance
/// of, so the case can be rerun without the JIT. None are open.
pub fn known_bug(f: &Failure) -> Option<usize> {
    let _ = f;
    None
}

/// True when the stores of `inout` tensors read each other in a cycle (the
/// stored value of `a` loads `b`, and `b`'s loads `a`): the shape of the
/// kernels whose lowering once did not terminate; the differential test
/// lowers them in a child process with a timeout first.
pub fn inout_store_cycle(k: &Kernel) -> bool {
    let inouts: Vec<TensorId> = k.tensors.iter().filter(|(_, t)| t.role == Role::InOut).map(|(id, _)| id).collect();
    if inouts.len() < 2 {
        return false;
    }
    let reads = |t: TensorId| -> Vec<usize> {
        let mut seen = vec![false; k.nodes.len()];
        let mut todo: Vec<ValueId> = k.stored_value(t).into_iter().collect();
        let mut out = vec![];
        while let Some(v) = todo.pop() {
            if std::mem::replace(&mut seen[v.index()], true) {
                continue;
            }
            match k.nodes[v].op {
                Op::Load(u) if u != t => out.extend(inouts.iter().position(|&x| x == u)),
                ref op => todo.extend(op.operands()),
            }
        }
        out
    };
    let edges: Vec<Vec<usize>> = inouts.iter().map(|&t| reads(t)).collect();
    // A cycle exists iff some node reaches itself.
    (0..inouts.len()).any(|start| {
        let mut seen = vec![false; inouts.len()];
        let mut todo = edges[start].clone();
        while let Some(n) = todo.pop() {
            if n == start {
                return true;
            }
            if !std::mem::replace(&mut seen[n], true) {
                todo.extend(&edges[n]);
            }
        }
        false
    })
}

/// Which engines [`run_case`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engines {
    /// Lowering, loop IR, JIT, references, oracle.
    All,
    /// Everything but the JIT.
    NoJit,
    /// References and oracle only.
    Reference,
}

/// Compiles and runs `plan`; it must equal the loop IR's `looped` bit for bit.
fn jit_check(
    case: &Case,
    env: &Env,
    plan: &normjit_lower::Plan,
    inputs: &[Vec<f32>],
    looped: &[Vec<f32>],
) -> Result<(), Failure> {
    let k = &case.kernel;
    let code = match Compiled::new(plan, &env.isa, &CodegenOptions::default()) {
        Ok(c) => std::sync::Arc::new(c),
        Err(e) => return fail("codegen", e.to_string()),
    };
    let mut got = inputs.to_vec();
    let ptrs: Vec<*mut f32> = got.iter_mut().map(|v| v.as_mut_ptr()).collect();
    let words = param_words(k, &case.params);
    let pool = if case.threads > 1 { env.pools.get(case.threads - 2) } else { None };
    // SAFETY: one buffer per tensor, each of its tensor's length at
    // `dims` (the plan's sizes), all distinct allocations.
    unsafe { normjit::unstable::execute_at(&code, &plan.dims, &ptrs, &words, pool) };
    for (id, t) in k.tensors.iter() {
        let (g, w) = (&got[id.index()], &looped[id.index()]);
        if let Some(i) = (0..g.len()).find(|&i| g[i].to_bits() != w[i].to_bits() && !(g[i].is_nan() && w[i].is_nan())) {
            return fail(
                "jit != loop IR",
                format!(
                    "`{}`[{i}]: JIT {:e} ({:#010x}), loop IR {:e} ({:#010x})",
                    t.name,
                    g[i],
                    g[i].to_bits(),
                    w[i],
                    w[i].to_bits()
                ),
            );
        }
    }
    Ok(())
}

/// Checks the loop IR's outputs `looped` (the f32 reference's when `None`)
/// and both references against the oracle.
fn check_outputs(
    case: &Case,
    inputs: &[Vec<f32>],
    looped: Option<&[Vec<f32>]>,
    stats: &mut Stats,
) -> Result<(), Failure> {
    let (k, dims) = (&case.kernel, &case.dims);
    let t = Instant::now();
    let s32: Vec<&[f32]> = inputs.iter().map(|v| v.as_slice()).collect();
    let in64: Vec<Vec<f64>> = inputs.iter().map(|v| v.iter().map(|&x| x as f64).collect()).collect();
    let s64: Vec<&[f64]> = in64.iter().map(|v| v.as_slice()).collect();
    let r32 = match normjit_interp::run::<f32>(k, dims, &case.params, &s32) {
        Ok(r) => r,
        Err(e) => return fail("interp f32", e.to_string()),
    };
    let r64 = match normjit_interp::run::<f64>(k, dims, &case.params, &s64) {
        Ok(r) => r,
        Err(e) => return fail("interp f64", e.to_string()),
    };
    stats.secs[3] += t.elapsed().as_secs_f64();
    let t = Instant::now();
    let sets = Oracle::eval(k, dims, &case.params, inputs);
    stats.secs[4] += t.elapsed().as_secs_f64();
    for (id, t) in k.tensors.iter() {
        if !t.role.is_written() {
            continue;
        }
        let set = sets[id.index()].as_ref().expect("every written tensor is stored");
        let (w32, w64) = (r32.get(id).unwrap(), r64.get(id).unwrap());
        let got = looped.map_or(w32, |l| &l[id.index()]);
        let finite: Vec<f64> = w64.iter().copied().filter(|x| x.is_finite()).collect();
        let scale =
            if finite.is_empty() { 1.0 } else { finite.iter().map(|x| x.abs()).sum::<f64>() / finite.len() as f64 };
        for i in 0..got.len() {
            let (a, g, r, r64v) = (&set[i], got[i], w32[i], w64[i]);
            let at = || {
                format!("`{}`[{i}]: loop IR/JIT {g:e}, f32 reference {r:e}, f64 reference {r64v:e}, oracle {a}", t.name)
            };
            if !a.contains(r) {
                return fail("f32 reference outside the oracle's set (oracle or interpreter bug)", at());
            }
            if !a.contains(g) {
                let kind = if a.must_nan() {
                    "NaN expected (certain NaN) but not produced"
                } else if g.is_nan() && !a.nan {
                    "NaN produced where none is possible"
                } else {
                    "loop IR/JIT outside the oracle's set"
                };
                return fail(kind, at());
            }
            stats.elements += 1;
            stats.must_nan += usize::from(a.must_nan());
            if a.maybe_nan() {
                stats.maybe_nan += 1;
                stats.nan_disagree += usize::from(g.is_nan() != r.is_nan());
            }
            if g == 0.0 && r == 0.0 && g.is_sign_negative() != r.is_sign_negative() {
                stats.zero_sign += 1;
            }
            if a.ovf {
                stats.f64_skipped += 1;
                stats.loose += 1;
                continue;
            }
            if !a.contains64(r64v) {
                return fail("f64 reference outside the oracle's set (oracle or interpreter bug)", at());
            }
            let den = r64v.abs() + scale + 1e-30;
            if a.fin && !a.nan && r64v.is_finite() && g.is_finite() && (a.hi - a.lo) / den <= 1e-3 {
                stats.tight += 1;
                stats.tight_max_err = stats.tight_max_err.max((g as f64 - r64v).abs() / den);
            } else {
                stats.loose += 1;
            }
        }
    }
    Ok(())
}
