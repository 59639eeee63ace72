//! The loop-IR interpreter: runs a [`Plan`] with scalar f32 arithmetic,
//! exactly as the plan says — group loops, phases, placement depths, the
//! normative reduction order (slots, tails, chunk partials), and `inout`
//! tensors updated in place. It tests the lowering on its own (against the
//! reference interpreter) and is the bit-exact model the JIT is held to.
//! It shares no code with the reference interpreter.

use crate::loopir::*;
use crate::vmath;
use normjit_ir::{rng, Binary, Cmp, DimId, ParamType, Reduce, Unary};

/// Why a plan could not run.
#[derive(Debug, Clone, PartialEq)]
pub enum ExecError {
    /// Wrong number of dims, params or tensors.
    Arity(String),
    /// A tensor's length does not match its dims.
    Length {
        /// Its name.
        tensor: String,
        /// Product of its dims.
        expected: usize,
        /// Length given.
        found: usize,
    },
    /// Dims whose product overflows.
    Overflow(String),
    /// A u32 param that is not a whole number in range.
    BadSeed(String),
}

impl std::fmt::Display for ExecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExecError::Arity(s) | ExecError::Overflow(s) | ExecError::BadSeed(s) => f.write_str(s),
            ExecError::Length { tensor, expected, found } => {
                write!(f, "tensor `{tensor}` has {found} elements, expected {expected}")
            }
        }
    }
}

impl std::error::Error for ExecError {}

/// Runs `plan` at sizes `dims`. `tensors` holds every tensor's buffer (by
/// tensor index), as f32 values whatever the storage type: entry values
/// for `in`/`inout` (each a value of the tensor's type), anything of the
/// right length for `out`. `out` and `inout` buffers are updated in place
/// with every stored value rounded to the tensor's type
/// ([`normjit_ir::DType::round_f32`]), so encoding them is exact.
pub fn exec(plan: &Plan, dims: &[usize], params: &[f64], tensors: &mut [Vec<f32>]) -> Result<(), ExecError> {
    let k = &plan.kernel;
    if dims.len() != k.dims.len() || params.len() != k.params.len() || tensors.len() != k.tensors.len() {
        return Err(ExecError::Arity(format!(
            "expected {} dims, {} params, {} tensors; got {}, {}, {}",
            k.dims.len(),
            k.params.len(),
            k.tensors.len(),
            dims.len(),
            params.len(),
            tensors.len()
        )));
    }
    for (id, t) in k.tensors.iter() {
        let mut n = 1usize;
        for d in &t.dims {
            n = n
                .checked_mul(dims[d.index()])
                .ok_or_else(|| ExecError::Overflow(format!("the dims of `{}` overflow", t.name)))?;
        }
        let found = tensors[id.index()].len();
        if found != n {
            return Err(ExecError::Length { tensor: t.name.clone(), expected: n, found });
        }
    }
    let mut pv = Vec::with_capacity(params.len());
    for (id, p) in k.params.iter() {
        let v = params[id.index()];
        if p.ty == ParamType::U32 && !(v >= 0.0 && v <= u32::MAX as f64 && v.fract() == 0.0) {
            return Err(ExecError::BadSeed(format!(
                "param `{}` must be a whole number in 0..=4294967295, got {v}",
                p.name
            )));
        }
        pv.push(v);
    }
    let mut m = Machine::new(plan, dims, &pv);
    // Group loops: iterate every index tuple, outermost first.
    let mut idx = vec![0usize; dims.len()];
    if plan.has_cross() {
        m.cross_group(tensors, &mut idx);
    } else {
        m.group(tensors, &mut idx, 0);
    }
    m.steps(&plan.after, tensors, &mut idx);
    Ok(())
}

struct Machine<'a> {
    p: &'a Plan,
    dims: &'a [usize],
    params: &'a [f64],
    /// Current value of every loop-IR value (masks as 0/1).
    vals: Vec<f32>,
    /// The f64 value of every per-call scalar.
    vals64: Vec<f64>,
    /// Scratch per accumulator.
    scratch: Vec<Vec<f32>>,
    /// Register accumulator state per accumulator: slots then tail.
    regs: Vec<Vec<f32>>,
    /// Cascade state per sum accumulator: the pairwise stack of block sums
    /// and how many blocks were pushed.
    stacks: Vec<(Vec<f32>, u64)>,
    /// Per sum accumulator: elements combined since its last push.
    since: Vec<usize>,
    /// Per cascaded array accumulator: its stacks (level-major, one level
    /// per scratch element), pushes so far, and innermost-loop instances
    /// since the last push.
    arrays: Vec<(Vec<f32>, u64, usize)>,
}

/// The identity of a reduction's ⊕ (see the loop IR's reduction order).
pub fn identity(r: Reduce) -> f32 {
    match r {
        Reduce::Sum | Reduce::Mean => 0.0,
        Reduce::Max => f32::NEG_INFINITY,
        Reduce::Min => f32::INFINITY,
    }
}

/// A reduction's ⊕: `+`, or the NaN-propagating `max`/`min`.
pub fn combine(r: Reduce, a: f32, b: f32) -> f32 {
    match r {
        Reduce::Sum | Reduce::Mean => a + b,
        Reduce::Max => max(a, b),
        Reduce::Min => min(a, b),
    }
}

/// NaN if either is NaN, else `a < b ? a : b` (see the loop IR's
/// reduction order: zeros are not ordered).
fn min(a: f32, b: f32) -> f32 {
    if a.is_nan() || b.is_nan() {
        f32::NAN
    } else if a < b {
        a
    } else {
        b
    }
}

/// NaN if either is NaN, else `a > b ? a : b`.
fn max(a: f32, b: f32) -> f32 {
    if a.is_nan() || b.is_nan() {
        f32::NAN
    } else if a > b {
        a
    } else {
        b
    }
}

fn min64(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else if a < b {
        a
    } else {
        b
    }
}

fn max64(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else if a > b {
        a
    } else {
        b
    }
}

fn sign(x: f32) -> f32 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else if x.is_nan() {
        x
    } else {
        0.0
    }
}

impl<'a> Machine<'a> {
    fn new(p: &'a Plan, dims: &'a [usize], params: &'a [f64]) -> Self {
        let scratch = p
            .accums
            .iter()
            .map(|a| vec![identity(a.op); a.scratch_dims.iter().map(|d| dims[d.index()]).product()])
            .collect();
        let regs = p
            .accums
            .iter()
            .map(|a| {
                let ph = &p.phases[a.phase];
                vec![identity(a.op); ph.width * ph.unroll + 1]
            })
            .collect();
        let stacks = p.accums.iter().map(|_| (vec![0.0; CASCADE_LEVELS], 0)).collect();
        let (vals, vals64) = (vec![0.0; p.nodes.len()], vec![0.0; p.nodes.len()]);
        let since = vec![0; p.accums.len()];
        let arrays = p
            .accums
            .iter()
            .map(|a| {
                let n: usize = a.scratch_dims.iter().map(|d| dims[d.index()]).product();
                (vec![0.0; if cascades(a.op) { n * ARRAY_LEVELS } else { 0 }], 0, 0)
            })
            .collect();
        Machine { p, dims, params, vals, vals64, scratch, regs, stacks, since, arrays }
    }

    fn extent(&self, d: DimId) -> usize {
        self.dims[d.index()]
    }

    /// Row-major offset of `dims` at the current indices.
    fn offset(&self, dims: &[DimId], idx: &[usize]) -> usize {
        dims.iter().fold(0, |o, d| o * self.extent(*d) + idx[d.index()])
    }

    fn group(&mut self, t: &mut [Vec<f32>], idx: &mut [usize], level: usize) {
        if level < self.p.group().len() {
            let d = self.p.group()[level];
            for i in 0..self.extent(d) {
                idx[d.index()] = i;
                self.group(t, idx, level + 1);
            }
            return;
        }
        self.steps(&self.p.steps, t, idx);
    }

    /// The group loops, in chunks of the group split, for a plan with
    /// cross-group accumulators: each chunk accumulates them into its own
    /// scratch (cascading one row per run of their phase); the chunks'
    /// scratches are then combined in the pairwise tree over chunks, and
    /// means finished.
    fn cross_group(&mut self, t: &mut [Vec<f32>], idx: &mut [usize]) {
        let split = self.p.group_split.as_ref().expect("a group plan has a group split");
        let cross: Vec<usize> = (0..self.p.accums.len()).filter(|&a| self.p.accums[a].cross).collect();
        let (n, chunk) = (self.extent(split.axis), split.chunk(self.dims));
        let mut parts: Vec<Vec<Vec<f32>>> = vec![Vec::new(); cross.len()];
        let mut lo = 0;
        while lo < n {
            let hi = (lo + chunk).min(n);
            for &a in &cross {
                self.scratch[a].fill(identity(self.p.accums[a].op));
                (self.arrays[a].1, self.arrays[a].2) = (0, 0);
            }
            for i in lo..hi {
                idx[split.axis.index()] = i;
                self.group(t, idx, 1);
            }
            for (j, &a) in cross.iter().enumerate() {
                self.finish_array(a);
                parts[j].push(self.scratch[a].clone());
            }
            lo = hi;
        }
        for (j, &a) in cross.iter().enumerate() {
            let acc = &self.p.accums[a];
            let chunks = &parts[j];
            for (e, s) in self.scratch[a].iter_mut().enumerate() {
                *s = combine(acc.op, identity(acc.op), combine_chunks(acc.op, chunks.len(), &|c| chunks[c][e]));
            }
            if acc.op == Reduce::Mean {
                let count = count(self.dims, acc.reduced);
                self.scratch[a].iter_mut().for_each(|s| *s /= count);
            }
        }
    }

    /// Runs `steps` (the group body, or the steps after it) at `idx`.
    fn steps(&mut self, steps: &'a [Step], t: &mut [Vec<f32>], idx: &mut [usize]) {
        for s in steps {
            match *s {
                Step::Compute(v) => self.eval(v, t, idx),
                Step::Store(tensor, v) => {
                    let tn = &self.p.kernel.tensors[tensor];
                    let o = self.offset(&tn.dims, idx);
                    t[tensor.index()][o] = tn.dtype.round_f32(self.vals[v.0 as usize]);
                }
                Step::Phase(ph) => self.phase(ph, t, idx),
            }
        }
    }

    /// Evaluates a per-call scalar in f64 (masks as 0/1), from its
    /// operands' f64 values.
    fn eval64(&self, v: LValue) -> f64 {
        let val = |x: LValue| self.vals64[x.0 as usize];
        match &self.p.node(v).op {
            LOp::Const(c) => *c,
            LOp::Param(p) => self.params[p.index()],
            LOp::Count(ax) => ax.iter().fold(1u64, |n, d| n.wrapping_mul(self.dims[d.index()] as u64)) as i64 as f64,
            LOp::Unary(u, a) => u.eval64(val(*a)),
            LOp::Binary(b, x, y) => {
                let (x, y) = (val(*x), val(*y));
                match b {
                    Binary::Add => x + y,
                    Binary::Sub => x - y,
                    Binary::Mul => x * y,
                    Binary::Div => x / y,
                    Binary::Pow => x.powf(y),
                    Binary::Min => min64(x, y),
                    Binary::Max => max64(x, y),
                }
            }
            LOp::Fma(f, a, b, c) => f.eval64(val(*a), val(*b), val(*c)),
            LOp::Compare(c, x, y) => {
                let (x, y) = (val(*x), val(*y));
                let b = match c {
                    Cmp::Lt => x < y,
                    Cmp::Le => x <= y,
                    Cmp::Gt => x > y,
                    Cmp::Ge => x >= y,
                    Cmp::Eq => x == y,
                    Cmp::Ne => x != y,
                };
                f64::from(u8::from(b))
            }
            LOp::Select(c, x, y) => {
                if val(*c) != 0.0 {
                    val(*x)
                } else {
                    val(*y)
                }
            }
            LOp::Load(_) | LOp::Pivot(..) | LOp::Reduced(_) | LOp::Uniform(..) | LOp::StochasticRound(..) => f64::NAN,
        }
    }

    fn eval(&mut self, v: LValue, t: &[Vec<f32>], idx: &[usize]) {
        if self.p.node(v).per_call {
            // Once per call in f64, rounded to f32 for its users.
            let x = self.eval64(v);
            self.vals64[v.0 as usize] = x;
            self.vals[v.0 as usize] = x as f32;
            return;
        }
        let k = &self.p.kernel;
        let val = |x: LValue| self.vals[x.0 as usize];
        let r = match &self.p.node(v).op {
            LOp::Const(c) => *c as f32,
            LOp::Param(p) => self.params[p.index()] as f32,
            LOp::Load(tn) => t[tn.index()][self.offset(&k.tensors[*tn].dims, idx)],
            LOp::Pivot(tn, axes) => {
                let dims = &k.tensors[*tn].dims;
                let others: Vec<DimId> = dims.iter().copied().filter(|d| !axes.contains(*d)).collect();
                if others.iter().any(|d| self.extent(*d) == 0) {
                    0.0
                } else {
                    let mut at = idx.to_vec();
                    let mut sum = 0.0f32;
                    for j in 0..PIVOT_SAMPLES {
                        for d in &others {
                            at[d.index()] = (j.wrapping_mul(self.extent(*d) as u64) >> 3) as usize;
                        }
                        let x = t[tn.index()][self.offset(dims, &at)];
                        sum = if j == 0 { x } else { sum + x };
                    }
                    sum * 0.125
                }
            }
            LOp::Unary(u, a) => {
                let x = val(*a);
                match u {
                    Unary::Neg => -x,
                    Unary::Abs => x.abs(),
                    Unary::Sign => sign(x),
                    Unary::Sqrt => x.sqrt(),
                    Unary::Rsqrt => 1.0 / x.sqrt(),
                    // The vector math sequences, as generated code runs them.
                    Unary::Exp => vmath::exp(&mut vmath::Scalar { fused: self.p.fma }, x),
                    Unary::Log => vmath::log(&mut vmath::Scalar { fused: self.p.fma }, x),
                    Unary::Tanh => vmath::tanh(&mut vmath::Scalar { fused: self.p.fma }, x),
                    Unary::Sigmoid => vmath::sigmoid(&mut vmath::Scalar { fused: self.p.fma }, x),
                    Unary::Erf => vmath::erf(&mut vmath::Scalar { fused: self.p.fma }, x),
                    Unary::Recip => 1.0 / x,
                }
            }
            LOp::Binary(b, x, y) => {
                let (x, y) = (val(*x), val(*y));
                match b {
                    Binary::Add => x + y,
                    Binary::Sub => x - y,
                    Binary::Mul => x * y,
                    Binary::Div => x / y,
                    Binary::Pow => x.powf(y),
                    Binary::Min => min(x, y),
                    Binary::Max => max(x, y),
                }
            }
            LOp::Fma(f, a, b, c) => f.eval(val(*a), val(*b), val(*c)),
            LOp::Compare(c, x, y) => {
                let (x, y) = (val(*x), val(*y));
                let b = match c {
                    Cmp::Lt => x < y,
                    Cmp::Le => x <= y,
                    Cmp::Gt => x > y,
                    Cmp::Ge => x >= y,
                    Cmp::Eq => x == y,
                    Cmp::Ne => x != y,
                };
                f32::from(u8::from(b))
            }
            LOp::Select(c, x, y) => {
                if val(*c) != 0.0 {
                    val(*x)
                } else {
                    val(*y)
                }
            }
            LOp::Reduced(a) => {
                let acc = &self.p.accums[a.0 as usize];
                self.scratch[a.0 as usize][self.offset(&acc.scratch_dims, idx)]
            }
            LOp::Count(ax) => count(self.dims, *ax),
            LOp::Uniform(p, ax, stream) => {
                let dims: Vec<DimId> = ax.iter().collect();
                let i = self.offset(&dims, idx) as u64;
                let seed = self.params[p.index()] as u32;
                let seed = if *stream == 0 { seed } else { rng::rounding_seed(seed, stream - 1) };
                rng::uniform(seed, i)
            }
            LOp::StochasticRound(x, u) => normjit_ir::dtype::stochastic_bf16_f32(val(*x), (val(*u) * 65536.0) as u32),
        };
        self.vals[v.0 as usize] = r;
    }

    fn phase(&mut self, pi: usize, t: &mut [Vec<f32>], idx: &mut [usize]) {
        let ph = &self.p.phases[pi];
        for a in &ph.accums {
            let acc = &self.p.accums[a.0 as usize];
            if !acc.cross {
                self.scratch[a.0 as usize].fill(identity(acc.op));
            }
        }
        match &ph.split {
            Some(split) if !ph.loops.is_empty() => {
                let n = self.extent(split.axis);
                let chunk = split.chunk(self.dims);
                // Every chunk's partials, combined below in a pairwise tree.
                let mut parts: Vec<Vec<Vec<f32>>> = vec![Vec::new(); split.partials.len()];
                let mut lo = 0;
                while lo < n {
                    let hi = (lo + chunk).min(n);
                    for a in &split.partials {
                        let acc = &self.p.accums[a.0 as usize];
                        self.scratch[a.0 as usize].fill(identity(acc.op));
                    }
                    self.begin_arrays(pi);
                    self.nest(pi, t, idx, 0, Some((lo, hi)));
                    self.finish_arrays(pi);
                    for (j, a) in split.partials.iter().enumerate() {
                        parts[j].push(self.scratch[a.0 as usize].clone());
                    }
                    lo = hi;
                }
                for (j, a) in split.partials.iter().enumerate() {
                    let op = self.p.accums[a.0 as usize].op;
                    let chunks = &parts[j];
                    for (e, s) in self.scratch[a.0 as usize].iter_mut().enumerate() {
                        *s = combine(op, identity(op), combine_chunks(op, chunks.len(), &|c| chunks[c][e]));
                    }
                }
            }
            _ => {
                self.begin_arrays(pi);
                self.nest(pi, t, idx, 0, None);
                self.finish_arrays(pi);
            }
        }
        for a in &ph.accums {
            let acc = &self.p.accums[a.0 as usize];
            if acc.cross {
                if !cascades(acc.op) {
                    continue;
                }
                // One more row of a cross-group sum.
                let st = &mut self.arrays[a.0 as usize];
                st.2 += 1;
                if st.2 == ARRAY_BLOCK_ROWS {
                    self.push_array(a.0 as usize);
                }
            } else if acc.op == Reduce::Mean {
                let count = count(self.dims, acc.reduced);
                for s in &mut self.scratch[a.0 as usize] {
                    *s /= count;
                }
            }
        }
    }

    /// Runs depth `depth` of phase `pi`: evaluates that depth's values, then
    /// the next loop (or, at the innermost depth, accumulates and stores).
    /// `range` restricts the outermost loop (a chunk).
    fn nest(&mut self, pi: usize, t: &mut [Vec<f32>], idx: &mut [usize], depth: usize, range: Option<(usize, usize)>) {
        let ph = &self.p.phases[pi];
        // Entering depth `depth`: register accumulators flushed here start over.
        for a in &ph.accums {
            let acc = &self.p.accums[a.0 as usize];
            if acc.flush_depth == depth && depth < ph.loops.len() {
                self.regs[a.0 as usize].fill(identity(acc.op));
                self.stacks[a.0 as usize].1 = 0;
                self.since[a.0 as usize] = 0;
            }
        }
        for &(v, d) in &ph.nodes {
            if d == depth {
                self.eval(v, t, idx);
            }
        }
        if depth == ph.loops.len() {
            for a in &ph.accums {
                let acc = &self.p.accums[a.0 as usize];
                if acc.flush_depth == depth {
                    let o = self.offset(&acc.scratch_dims, idx);
                    let x = self.vals[acc.operand.0 as usize];
                    let s = &mut self.scratch[a.0 as usize][o];
                    *s = combine(acc.op, *s, x);
                }
            }
            for &(tensor, v) in &ph.stores {
                let tn = &self.p.kernel.tensors[tensor];
                let o = self.offset(&tn.dims, idx);
                t[tensor.index()][o] = tn.dtype.round_f32(self.vals[v.0 as usize]);
            }
            return;
        }
        let k = ph.loops.len();
        // Flattened innermost loops run as one, over the last one's index.
        let flat = ph.flat > 1 && depth == k - ph.flat;
        let d = if flat { ph.loops[k - 1] } else { ph.loops[depth] };
        let (lo, hi) = match (depth, range) {
            (0, Some(r)) => r,
            _ if flat => (0, ph.loops[depth..].iter().map(|&e| self.extent(e)).product()),
            _ => (0, self.extent(d)),
        };
        if flat {
            for &e in &ph.loops[depth..k - 1] {
                idx[e.index()] = 0;
            }
        }
        let innermost = depth + 1 == k || flat;
        let slots = ph.width * ph.unroll;
        let main = (hi - lo) - (hi - lo) % slots;
        let block = slots * BLOCK_ROUNDS;
        let next = if flat { k } else { depth + 1 };
        for i in lo..hi {
            idx[d.index()] = i;
            self.nest(pi, t, idx, next, None);
            if innermost {
                // Route this element into its register slot.
                for a in &ph.accums {
                    let acc = &self.p.accums[a.0 as usize];
                    if acc.flush_depth < ph.loops.len() {
                        let x = self.vals[acc.operand.0 as usize];
                        let slot = if i - lo < main { (i - lo) % slots } else { slots };
                        let r = &mut self.regs[a.0 as usize][slot];
                        *r = combine(acc.op, *r, x);
                        self.since[a.0 as usize] += 1;
                        // A whole block of a sum: push its folded value.
                        if cascades(acc.op) && i - lo < main && (i - lo + 1) % block == 0 {
                            self.push(a.0 as usize, ph.width, ph.unroll);
                        }
                    }
                }
            }
        }
        if innermost {
            for a in &ph.accums {
                if self.p.array_cascade(*a) {
                    let st = &mut self.arrays[a.0 as usize];
                    st.2 += 1;
                    if st.2 == ARRAY_BLOCK_ROWS {
                        self.push_array(a.0 as usize);
                    }
                }
            }
            // The end of an instance of the innermost loop: a sum with a
            // block's worth of elements since its last push pushes them.
            for a in &ph.accums {
                let acc = &self.p.accums[a.0 as usize];
                if acc.flush_depth < ph.loops.len() && cascades(acc.op) && self.since[a.0 as usize] >= block {
                    self.push(a.0 as usize, ph.width, ph.unroll);
                }
            }
        }
        // Leaving depth `depth`: fold and flush register accumulators.
        for a in &ph.accums {
            let acc = &self.p.accums[a.0 as usize];
            if acc.flush_depth == depth {
                let total = if cascades(acc.op) {
                    if self.since[a.0 as usize] > 0 {
                        self.push(a.0 as usize, ph.width, ph.unroll);
                    }
                    collapse(acc.op, &self.stacks[a.0 as usize])
                } else {
                    fold(acc.op, &self.regs[a.0 as usize], ph.width, ph.unroll)
                };
                let o = self.offset(&acc.scratch_dims, idx);
                let s = &mut self.scratch[a.0 as usize][o];
                *s = combine(acc.op, *s, total);
            }
        }
    }

    /// A run of phase `pi` starts: its cascaded arrays have pushed nothing.
    fn begin_arrays(&mut self, pi: usize) {
        for a in &self.p.phases[pi].accums {
            if self.p.array_cascade(*a) {
                let st = &mut self.arrays[a.0 as usize];
                (st.1, st.2) = (0, 0);
            }
        }
    }

    /// A run of phase `pi` ends: each cascaded array that pushed a block
    /// pushes its last one (if any rows went into it) and takes its
    /// stacks' values; one that never pushed keeps its scratch as it is.
    fn finish_arrays(&mut self, pi: usize) {
        for a in &self.p.phases[pi].accums {
            if self.p.array_cascade(*a) {
                self.finish_array(a.0 as usize);
            }
        }
    }

    /// Finishes cascaded array `a` (see `finish_arrays`).
    fn finish_array(&mut self, a: usize) {
        if self.arrays[a].1 == 0 {
            // Not a block's worth of rows: the scratch is the sum.
            return;
        }
        if self.arrays[a].2 > 0 {
            self.push_array(a);
        }
        let op = self.p.accums[a].op;
        let n = self.scratch[a].len();
        let (levels, count, _) = &self.arrays[a];
        for (e, s) in self.scratch[a].iter_mut().enumerate() {
            let mut r = identity(op);
            let mut c = *count;
            while c != 0 {
                let j = 63 - c.leading_zeros() as usize;
                r = combine(op, r, levels[j * n + e]);
                c &= !(1u64 << j);
            }
            *s = r;
        }
    }

    /// Pushes array accumulator `a`'s scratch elementwise and resets it.
    fn push_array(&mut self, a: usize) {
        let op = self.p.accums[a].op;
        let n = self.scratch[a].len();
        let (levels, count, rows) = &mut self.arrays[a];
        for (e, s) in self.scratch[a].iter_mut().enumerate() {
            let mut v = *s;
            let mut j = 0;
            while *count >> j & 1 == 1 {
                v = combine(op, levels[j * n + e], v);
                j += 1;
            }
            levels[j * n + e] = v;
            *s = identity(op);
        }
        *count += 1;
        *rows = 0;
    }

    /// Folds accumulator `a`'s slots and tail, resets them, and pushes the
    /// value onto its pairwise stack.
    fn push(&mut self, a: usize, width: usize, unroll: usize) {
        let op = self.p.accums[a].op;
        let mut v = fold(op, &self.regs[a], width, unroll);
        self.regs[a].fill(identity(op));
        self.since[a] = 0;
        let (levels, count) = &mut self.stacks[a];
        let mut j = 0;
        while *count >> j & 1 == 1 {
            v = combine(op, levels[j], v);
            j += 1;
        }
        levels[j] = v;
        *count += 1;
    }
}

/// Chunk partials `0..n` (`part(c)`) combined in a pairwise tree: halves
/// split at `n / 2`, left ⊕ right; one chunk is itself, none the identity.
/// (The normative combination of per-chunk partials; the runtime uses it
/// too.)
pub fn combine_chunks(op: Reduce, n: usize, part: &dyn Fn(usize) -> f32) -> f32 {
    fn tree(op: Reduce, lo: usize, hi: usize, part: &dyn Fn(usize) -> f32) -> f32 {
        match hi - lo {
            0 => identity(op),
            1 => part(lo),
            n => {
                let mid = lo + n / 2;
                combine(op, tree(op, lo, mid, part), tree(op, mid, hi, part))
            }
        }
    }
    tree(op, 0, n, part)
}

/// Whether reductions of `op` use the cascade (sums do; max and min are
/// exact in any order).
pub fn cascades(op: Reduce) -> bool {
    matches!(op, Reduce::Sum | Reduce::Mean)
}

/// Rounds of `width × unroll` slots per block of a cascaded sum.
pub const BLOCK_ROUNDS: usize = 64;

/// Levels of a cascade's pairwise stack (enough for 2^64 blocks).
pub const CASCADE_LEVELS: usize = 64;

/// Instances of the innermost loop per block of a cascaded array
/// accumulator.
pub const ARRAY_BLOCK_ROWS: usize = 64;

/// Levels of a cascaded array accumulator's stacks (2^48 blocks).
pub const ARRAY_LEVELS: usize = 48;

/// The value of a pairwise stack: its levels for the set bits of `count`,
/// combined from the highest (the oldest blocks) down, starting from the
/// identity.
fn collapse(op: Reduce, (levels, count): &(Vec<f32>, u64)) -> f32 {
    let mut r = identity(op);
    let mut c = *count;
    while c != 0 {
        let j = 63 - c.leading_zeros() as usize;
        r = combine(op, r, levels[j]);
        c &= !(1u64 << j);
    }
    r
}

/// Folds slot accumulators (and the tail, last) in the normative order.
fn fold(op: Reduce, regs: &[f32], width: usize, unroll: usize) -> f32 {
    let mut lanes: Vec<f32> = regs[..width].to_vec();
    for u in 1..unroll {
        for l in 0..width {
            lanes[l] = combine(op, lanes[l], regs[u * width + l]);
        }
    }
    let h = match width {
        1 => lanes[0],
        4 => combine(op, combine(op, lanes[0], lanes[2]), combine(op, lanes[1], lanes[3])),
        _ => unreachable!("vector width {width}"),
    };
    combine(op, h, regs[width * unroll])
}
