//! The generator: random kernels decoded from a sequence of `u32` choice
//! words ([`Choices`]), as a proptest [`Strategy`] ([`cases`]) and as a plain
//! decoder ([`Case::decode`]) that fuzzers feed with raw bytes.
//!
//! Every decision takes the next word modulo the number of options, and word
//! `0` always means the simplest option; past the end of the sequence every
//! word reads as `0`. Any sequence therefore decodes to a valid kernel, and
//! proptest's shrinking of the sequence (dropping words, moving them toward 0)
//! shrinks the kernel.
//!
//! What it draws:
//! - 1–4 dims (`I J K L`), sizes from {0, 1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 33},
//!   and for kernels with at most 2 dims sometimes {64, 127, 1000, 1023,
//!   4097}; the product of the non-zero sizes is at most [`MAX_ELEMS`];
//! - second sizes ([`Case::dims2`]), drawn from the input seed (see
//!   [`crate::case`]), at which the JIT check reruns the compiled code;
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
//! - whether a fraction of the inputs is special ([`SPECIALS`]; the values
//!   themselves are drawn from the input seed by [`crate::make_inputs`]);
//! - the chunk size ([`CHUNKS`]: 32768, 1, 7 or 64 elements) and 1–3 threads;
//! - for half the cases, a random legal schedule ([`crate::random_schedule`]).

use crate::case::{second_dims, Case};
use normjit_ir::{
    AxisSet, Binary, Cmp, DType, DimId, KernelBuilder, ParamId, ParamType, Reduce, Role, TensorId, Unary, ValueId,
};
use proptest::prelude::*;

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

/// The proptest strategy of random cases.
pub fn cases() -> impl Strategy<Value = Case> {
    (proptest::collection::vec(any::<u32>(), 0..=400), any::<u64>())
        .prop_map(|(words, seed)| Case::decode(&mut Choices::new(words), seed))
}

impl Case {
    /// Decodes a case from choice words (see the [module docs](crate::gen)).
    pub fn decode(ch: &mut Choices, input_seed: u64) -> Case {
        Gen::new(ch).run(input_seed)
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
        // Storage types per tensor: mostly f32, a third narrow.
        let dtype = if self.ch.flag(33) { [DType::BF16, DType::F16][self.ch.below(2)] } else { DType::F32 };
        self.b.tensor(&name, role, dtype, dims)
    }

    fn run(mut self, input_seed: u64) -> Case {
        // Case-level choices first, so that short choice sequences still
        // vary them.
        let chunk = self.ch.pick(&CHUNKS);
        let threads = 1 + self.ch.below(3);
        // Half the cases run a random legal schedule.
        let sched = if self.ch.flag(50) { 1 + self.ch.below(1 << 30) as u64 } else { 0 };
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
        let dims2 = second_dims(&self.sizes, input_seed);
        Case { kernel, dims: self.sizes, dims2, params: self.params, input_seed, specials, chunk, threads, sched }
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
                match self.ch.below(15) {
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
                    11 => self.un(Unary::Log, a),
                    12 => self.un(Unary::Tanh, a),
                    13 => self.un(Unary::Sigmoid, a),
                    _ => self.un(Unary::Erf, a),
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
