//! Emission: one plan unit (the group body, one phase, or one group-level
//! store) to a Cranelift function.
//!
//! Scalar values live in a scoped map while their loop runs; the innermost
//! loop of a phase is emitted twice — a main loop over whole
//! `width × unroll` blocks (F32X4 vectors when the phase is vectorized) and
//! a scalar tail — and routes reductions into slot accumulators exactly as
//! the loop IR's normative order says, so results match the loop-IR
//! interpreter bit for bit.
//!
//! Addresses: tensor elements are as wide as the tensor's storage type (4
//! or 2 bytes; loads widen and stores round through `ops::load` and
//! `ops::store`), while scratch, partials and cascade stacks are always
//! f32. Random values keep `uniform`'s integer bits next to the float, so
//! stochastic rounding takes its 16 bits from them directly.

use crate::layout;
use crate::ops::{self, Libm, W};
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{types, InstBuilder, MemFlagsData, StackSlot, StackSlotData, StackSlotKind, Value};
use cranelift_frontend::{FunctionBuilder, Variable};
use normjit_ir::{DType, DimId, Reduce, TensorId};
use normjit_lower::exec::{cascades, ARRAY_BLOCK_ROWS, BLOCK_ROUNDS, CASCADE_LEVELS};
use normjit_lower::{AccId, Accum, LOp, LValue, Plan, Step};
use std::collections::HashMap;

/// What one generated function runs.
#[derive(Clone, Debug, PartialEq)]
pub enum Unit {
    /// The whole group body, for group iterations `lo..hi` of the
    /// outermost group loop.
    Group,
    /// Phase `p`, for iterations `lo..hi` of its split loop.
    Phase(usize),
    /// Group-level stores (0-dim tensors when there is no group, or after
    /// the group loop), which the plan puts last: every value is computed
    /// before any store.
    Stores(Vec<(TensorId, LValue)>),
}

impl Unit {
    /// What the unit runs, for listings.
    pub fn describe(&self, plan: &Plan) -> String {
        match self {
            Unit::Group => "the group body (all phases, per group iteration)".to_string(),
            Unit::Phase(p) if plan.after.contains(&Step::Phase(*p)) => {
                format!("phase {p} \"{}\", after the group loop", plan.phases[*p].name)
            }
            Unit::Phase(p) => format!("phase {p} \"{}\"", plan.phases[*p].name),
            Unit::Stores(list) => {
                let names: Vec<&str> = list.iter().map(|(t, _)| plan.kernel.tensors[*t].name.as_str()).collect();
                format!("group-level stores of {}", names.join(", "))
            }
        }
    }
}

pub(crate) struct Args {
    /// The `Frame` pointer.
    pub frame: Value,
    pub scratch: Value,
    pub partial: Value,
    pub lo: Value,
    pub hi: Value,
}

/// A size or stride: a constant when the code is specialized to the sizes
/// (or the value is structurally known, like a contiguous stride of 1),
/// otherwise a value computed once in the entry block.
#[derive(Clone, Copy, Debug)]
enum Sv {
    Const(i64),
    Dyn(Value),
}

pub(crate) struct Fx<'a, 'b> {
    pub p: &'a Plan,
    pub b: &'a mut FunctionBuilder<'b>,
    pub a: Args,
    pub libm: Libm,
    /// Current index of each dim's loop (i64).
    idx: Vec<Option<Value>>,
    /// Scalar values in scope.
    sc: HashMap<LValue, Value>,
    /// The random bits (i32) of the `uniform` values in `sc`.
    sc_bits: HashMap<LValue, Value>,
    /// Tensor base pointers.
    base: HashMap<TensorId, Value>,
    /// Phase being emitted (for partial accumulators).
    phase: Option<usize>,
    /// Emitting the group body (cross-group accumulators are partials).
    in_group: bool,
    /// Frame fields, loaded in the entry block.
    tensors: Option<Value>,
    params: Option<Value>,
    /// Each dim's size.
    dims: Vec<Sv>,
    /// Row-major strides of every index list used (tensors, scratch
    /// arrays, random domains), computed in the entry block.
    strides: HashMap<Vec<DimId>, Vec<Sv>>,
    /// Per accumulator: base address in scratch, and in the partial area.
    acc_bases: Vec<(Value, Value)>,
    /// Per accumulator: the offset (bytes) of its cascade stacks from the
    /// start of its area (a chunk's partial area, or the scratch).
    levels_off: Vec<Value>,
    /// The cascaded array accumulators of the phase being emitted, with
    /// their push count and the innermost-loop instances since the last
    /// push.
    arrays: Vec<(AccId, Variable, Variable)>,
    /// The same for the cascaded cross-group accumulators, whose rows are
    /// group iterations (the group body only).
    cross: Vec<(AccId, Variable, Variable)>,
    /// Bake the planned sizes in as constants.
    specialize: bool,
    /// Per-call scalars, computed in f64 in the entry block, and rounded
    /// to f32 (masks stay i8) for their users.
    per_call: HashMap<LValue, Value>,
    /// The conversions' constant table (set in the entry block).
    consts: Option<ops::Consts>,
    /// The table's imported symbol.
    table: cranelift_codegen::ir::GlobalValue,
    /// With column blocking: the blocked axis, and this call's block of
    /// columns (`Frame::block_lo..block_hi`), loaded in the entry block.
    block: Option<(DimId, Value, Value)>,
}

/// Flags of every load and store: they cannot trap (the runtime checked
/// every bound), but they are NOT marked aligned. Tensors need only f32
/// alignment, and an "aligned" flag lets Cranelift fold a vector load into
/// an SSE memory operand, which faults on a 4-byte-aligned address.
fn flags() -> MemFlagsData {
    MemFlagsData::new().with_notrap()
}

impl<'a, 'b> Fx<'a, 'b> {
    pub fn new(
        p: &'a Plan,
        b: &'a mut FunctionBuilder<'b>,
        a: Args,
        libm: Libm,
        table: cranelift_codegen::ir::GlobalValue,
        specialize: bool,
    ) -> Self {
        let idx = vec![None; p.dims.len()];
        Fx {
            p,
            b,
            a,
            libm,
            idx,
            sc: HashMap::new(),
            sc_bits: HashMap::new(),
            base: HashMap::new(),
            phase: None,
            in_group: false,
            tensors: None,
            params: None,
            dims: Vec::new(),
            strides: HashMap::new(),
            acc_bases: Vec::new(),
            levels_off: Vec::new(),
            arrays: Vec::new(),
            cross: Vec::new(),
            specialize,
            per_call: HashMap::new(),
            consts: None,
            table,
            block: None,
        }
    }

    fn params(&self) -> Value {
        self.params.expect("loaded in the entry block")
    }

    fn consts(&self) -> ops::Consts {
        self.consts.expect("made in the entry block")
    }

    /// `v` as a value (materializing a constant where used).
    fn sv(&mut self, v: Sv) -> Value {
        match v {
            Sv::Const(c) => self.iconst(c),
            Sv::Dyn(x) => x,
        }
    }

    fn mul_sv(&mut self, a: Sv, b: Sv) -> Sv {
        match (a, b) {
            (Sv::Const(x), Sv::Const(y)) => Sv::Const(x.wrapping_mul(y)),
            (Sv::Const(1), o) | (o, Sv::Const(1)) => o,
            (Sv::Const(c), Sv::Dyn(v)) | (Sv::Dyn(v), Sv::Const(c)) => Sv::Dyn(self.b.ins().imul_imm_s(v, c)),
            (Sv::Dyn(x), Sv::Dyn(y)) => Sv::Dyn(self.b.ins().imul(x, y)),
        }
    }

    /// `i * s` for an index value `i`.
    fn scale(&mut self, i: Value, s: Sv) -> Value {
        match s {
            Sv::Const(1) => i,
            Sv::Const(c) => self.b.ins().imul_imm_s(i, c),
            Sv::Dyn(v) => self.b.ins().imul(i, v),
        }
    }

    /// The size of dim `d`.
    fn dim(&mut self, d: DimId) -> Value {
        let v = self.dims[d.index()];
        self.sv(v)
    }

    /// Product of the sizes of `dims`.
    fn extent(&mut self, dims: &[DimId]) -> Sv {
        dims.iter().fold(Sv::Const(1), |n, d| {
            let s = self.dims[d.index()];
            self.mul_sv(n, s)
        })
    }

    fn iconst(&mut self, v: i64) -> Value {
        self.b.ins().iconst(types::I64, v)
    }

    fn tensor_base(&mut self, t: TensorId) -> Value {
        if let Some(&v) = self.base.get(&t) {
            return v;
        }
        // Loaded where first needed; callers make sure that is the entry
        // block (see `preload`).
        let tensors = self.tensors.expect("loaded in the entry block");
        let v = self.b.ins().load(types::I64, flags(), tensors, (t.index() * 8) as i32);
        self.base.insert(t, v);
        v
    }

    /// Loads, in the entry block (so they dominate every use), everything
    /// the body addresses with: the frame's fields, every dim's size, the
    /// strides of every index list, every tensor base pointer and every
    /// accumulator's base addresses.
    pub fn preload(&mut self) {
        let f = self.a.frame;
        let ld = |b: &mut FunctionBuilder, off: i32| b.ins().load(types::I64, flags(), f, off);
        self.tensors = Some(ld(self.b, layout::FRAME_TENSORS));
        self.consts = Some(ops::Consts::new(self.b, self.table));
        self.params = Some(ld(self.b, layout::FRAME_PARAMS));
        let dims_ptr = ld(self.b, layout::FRAME_DIMS);
        let offsets = ld(self.b, layout::FRAME_OFFSETS);
        if let Some(b) = &self.p.block {
            let (lo, hi) = (ld(self.b, layout::FRAME_BLOCK_LO), ld(self.b, layout::FRAME_BLOCK_HI));
            self.block = Some((b.axis, lo, hi));
        }
        for d in 0..self.p.dims.len() {
            let v = if self.specialize {
                Sv::Const(self.p.dims[d] as i64)
            } else {
                Sv::Dyn(self.b.ins().load(types::I64, flags(), dims_ptr, (d * 8) as i32))
            };
            self.dims.push(v);
        }
        let mut lists: Vec<Vec<DimId>> = self.p.kernel.tensors.iter().map(|(_, t)| t.dims.clone()).collect();
        lists.extend(self.p.accums.iter().map(|a| a.scratch_dims.clone()));
        for n in &self.p.nodes {
            if let LOp::Uniform(_, axes, _) = n.op {
                lists.push(axes.iter().collect());
            }
        }
        for l in lists {
            if self.strides.contains_key(&l) {
                continue;
            }
            let mut s = vec![Sv::Const(0); l.len()];
            let mut acc = Sv::Const(1);
            for i in (0..l.len()).rev() {
                s[i] = acc;
                let n = self.dims[l[i].index()];
                acc = self.mul_sv(acc, n);
            }
            self.strides.insert(l, s);
        }
        for (t, _) in self.p.kernel.tensors.iter() {
            self.tensor_base(t);
        }
        // Per-call scalars: once, in f64, in node order (operands first).
        let mut s64: HashMap<LValue, Value> = HashMap::new();
        for (i, n) in self.p.nodes.iter().enumerate() {
            if !n.per_call {
                continue;
            }
            let v = LValue(i as u32);
            let x = match &n.op {
                LOp::Count(axes) => {
                    let dims: Vec<DimId> = axes.iter().collect();
                    match self.extent(&dims) {
                        Sv::Const(c) => self.b.ins().f64const(c as f64),
                        Sv::Dyn(c) => self.b.ins().fcvt_from_sint(types::F64, c),
                    }
                }
                op => {
                    let args: Vec<Value> = op.operands().iter().map(|o| s64[o]).collect();
                    let params = self.params();
                    ops::compute64(self.b, &self.libm, op, &args, params)
                }
            };
            s64.insert(v, x);
            let r = if n.ty == normjit_ir::ValueType::Bool { x } else { self.b.ins().fdemote(types::F32, x) };
            self.per_call.insert(v, r);
        }
        let na = self.p.accums.len();
        for a in 0..na {
            let so = self.b.ins().load(types::I64, flags(), offsets, (a * 8) as i32);
            let po = self.b.ins().load(types::I64, flags(), offsets, ((na + a) * 8) as i32);
            let s = self.addr(self.a.scratch, so);
            let p = self.addr(self.a.partial, po);
            self.acc_bases.push((s, p));
            let lo = self.b.ins().load(types::I64, flags(), offsets, ((2 * na + a) * 8) as i32);
            let lo = self.b.ins().ishl_imm_u(lo, 2);
            self.levels_off.push(lo);
        }
    }

    /// Row-major strides (in elements) of `dims` (precomputed).
    fn strides(&self, dims: &[DimId]) -> Vec<Sv> {
        self.strides.get(dims).cloned().expect("strides precomputed in the entry block")
    }

    /// Element offset of `dims` at the current indices, leaving out `skip`.
    fn offset(&mut self, dims: &[DimId], skip: Option<DimId>) -> Value {
        let strides = self.strides(dims);
        let mut off = self.iconst(0);
        for (d, s) in dims.iter().zip(strides) {
            if Some(*d) == skip || matches!(s, Sv::Const(0)) {
                continue;
            }
            let i = self.idx[d.index()].expect("index of an enclosing loop");
            let t = self.scale(i, s);
            off = self.b.ins().iadd(off, t);
        }
        off
    }

    fn stride_of(&self, dims: &[DimId], d: DimId) -> Sv {
        let s = self.strides(dims);
        dims.iter().position(|x| *x == d).map_or(Sv::Const(0), |i| s[i])
    }

    /// Byte address of element `off` of an f32 array at `base`.
    /// Combines `x` into the scratch element(s) of `acc` at `ad + off`; a
    /// hoisted value is stored as is (the identity ⊕ `x` is `x`, so its
    /// scratch is never reset).
    fn combine_into(&mut self, acc: &Accum, w: W, ad: Value, off: i32, x: Value) {
        let r = if acc.is_hoisted() {
            x
        } else {
            let s = self.b.ins().load(w.f32(), flags(), ad, off);
            ops::combine(self.b, acc.op, w, s, x)
        };
        self.b.ins().store(flags(), r, ad, off);
    }

    fn addr(&mut self, base: Value, off: Value) -> Value {
        self.addr_of(base, off, 4)
    }

    /// Byte address of element `off` of an array of `size`-byte elements.
    fn addr_of(&mut self, base: Value, off: Value, size: i64) -> Value {
        let bytes = self.b.ins().ishl_imm_u(off, i64::from(size.trailing_zeros()));
        self.b.ins().iadd(base, bytes)
    }

    /// Storage type of tensor `t`.
    fn dtype(&self, t: TensorId) -> DType {
        self.p.kernel.tensors[t].dtype
    }

    /// Storage type of a stream: its tensor's, f32 for scratch.
    fn access_dtype(&self, a: Access) -> DType {
        match a {
            Access::Tensor(t) => self.dtype(t),
            Access::Acc(_) => DType::F32,
        }
    }

    /// Whether storing `v` to `t` may drop the low half without rounding:
    /// `v` is a stochastic rounding (already a bf16 value) and `t` is bf16.
    fn exact_store(&self, t: TensorId, v: LValue) -> bool {
        self.dtype(t) == DType::BF16 && matches!(self.p.node(v).op, LOp::StochasticRound(..))
    }

    /// Base pointer of accumulator `a`'s array: the chunk's private copy
    /// when the current phase keeps a partial of it.
    fn acc_base(&mut self, a: AccId) -> Value {
        let ai = a.0 as usize;
        // Cross-group accumulators live in the group chunk's partial area
        // (inside the group body; after it, the runtime has combined them
        // into the scratch).
        let cross = self.p.accums[ai].cross && self.in_group;
        let partial = cross
            || self.phase.is_some_and(|ph| {
                self.p.phases[ph].split.as_ref().is_some_and(|s| s.partials.contains(&a)) && self.p.group().is_empty()
            });
        if partial {
            self.acc_bases[ai].1
        } else {
            self.acc_bases[ai].0
        }
    }

    /// `count(axes)` at the run's sizes, as [`normjit_lower::count`] defines it.
    fn count(&mut self, axes: normjit_ir::AxisSet) -> Value {
        let dims: Vec<DimId> = axes.iter().collect();
        match self.extent(&dims) {
            Sv::Const(n) => self.b.ins().f32const(n as f32),
            Sv::Dyn(n) => self.b.ins().fcvt_from_sint(types::F32, n),
        }
    }

    /// Scalar value of `v` at the current indices, computing it (and its
    /// operands) if it is not in scope.
    pub fn scalar(&mut self, v: LValue) -> Value {
        if let Some(&x) = self.sc.get(&v).or_else(|| self.per_call.get(&v)) {
            return x;
        }
        let node = self.p.node(v).clone();
        let x = match &node.op {
            LOp::Load(t) => {
                let dims = self.p.kernel.tensors[*t].dims.clone();
                let dtype = self.dtype(*t);
                let base = self.tensor_base(*t);
                let off = self.offset(&dims, None);
                let a = self.addr_of(base, off, dtype.size_bytes() as i64);
                ops::load(self.b, W::S, self.consts(), dtype, flags(), a, 0)
            }
            LOp::Reduced(acc) => {
                let dims = self.p.accums[acc.0 as usize].scratch_dims.clone();
                let base = self.acc_base(*acc);
                let off = self.offset(&dims, None);
                let a = self.addr(base, off);
                self.b.ins().load(types::F32, flags(), a, 0)
            }
            LOp::Pivot(t, axes) => self.pivot(*t, *axes),
            LOp::Uniform(seed, axes, stream) => {
                let dims: Vec<DimId> = axes.iter().collect();
                let index = self.offset(&dims, None);
                let params = self.params();
                let s = self.b.ins().load(types::I32, flags(), params, (seed.index() * 8) as i32);
                let s = ops::stream_seed(self.b, self.consts(), s, *stream);
                let (bits, u) = ops::uniform(self.b, self.consts(), s, index);
                self.sc_bits.insert(v, bits);
                u
            }
            LOp::StochasticRound(x, u) => {
                let (x, uv) = (self.scalar(*x), self.scalar(*u));
                let bits = self.sc_bits.get(u).copied();
                let r = ops::rounding_bits(self.b, W::S, self.consts(), bits, uv);
                ops::stochastic_bf16(self.b, W::S, self.consts(), x, r)
            }
            LOp::Count(axes) => self.count(*axes),
            op => {
                let args: Vec<Value> = op.operands().iter().map(|&o| self.scalar(o)).collect();
                let known = self.known(op);
                ops::compute(self.b, &self.libm, self.consts(), self.p.fma, op, W::S, &args, &known)
            }
        };
        self.sc.insert(v, x);
        x
    }

    /// The shift of one-pass statistics, as [`LOp::Pivot`] defines it: the
    /// mean of 8 samples of tensor `t` along a diagonal through its dims
    /// outside `axes`, at the current indices of `axes`. With an empty
    /// such dim every sample reads the frame instead (its value is not
    /// used) and the result is `+0`.
    fn pivot(&mut self, t: TensorId, axes: normjit_ir::AxisSet) -> Value {
        let dims = self.p.kernel.tensors[t].dims.clone();
        let dtype = self.dtype(t);
        let base = self.tensor_base(t);
        let strides = self.strides(&dims);
        let mut row = self.iconst(0);
        let mut others = Vec::new();
        for (d, s) in dims.iter().zip(strides) {
            if axes.contains(*d) {
                if !matches!(s, Sv::Const(0)) {
                    let i = self.idx[d.index()].expect("index of an enclosing group loop");
                    let t = self.scale(i, s);
                    row = self.b.ins().iadd(row, t);
                }
            } else {
                others.push((*d, s));
            }
        }
        let flat: Vec<DimId> = others.iter().map(|o| o.0).collect();
        let n = match self.extent(&flat) {
            Sv::Const(c) => self.iconst(c),
            Sv::Dyn(v) => v,
        };
        let some = self.b.ins().icmp_imm_s(IntCC::NotEqual, n, 0);
        let mut sum = None;
        for j in 0..normjit_lower::PIVOT_SAMPLES as i64 {
            let mut off = row;
            for &(d, s) in &others {
                let i = match self.dims[d.index()] {
                    Sv::Const(c) => self.iconst(((j as u64).wrapping_mul(c as u64) >> 3) as i64),
                    Sv::Dyn(v) => {
                        let je = self.b.ins().imul_imm_s(v, j);
                        self.b.ins().ushr_imm_u(je, 3)
                    }
                };
                let t = self.scale(i, s);
                off = self.b.ins().iadd(off, t);
            }
            let a = self.addr_of(base, off, dtype.size_bytes() as i64);
            let a = self.b.ins().select(some, a, self.a.frame);
            let x = ops::load(self.b, W::S, self.consts(), dtype, flags(), a, 0);
            sum = Some(match sum {
                None => x,
                Some(acc) => self.b.ins().fadd(acc, x),
            });
        }
        let eighth = self.b.ins().f32const(0.125);
        let mean = self.b.ins().fmul(sum.expect("8 samples"), eighth);
        let zero = self.b.ins().f32const(0.0);
        self.b.ins().select(some, mean, zero)
    }

    /// Per operand of `op`, its value if it is a constant (in f32, as
    /// per-element math uses it).
    fn known(&self, op: &LOp) -> Vec<Option<f32>> {
        op.operands()
            .iter()
            .map(|&o| match self.p.node(o).op {
                LOp::Const(c) => Some(c as f32),
                _ => None,
            })
            .collect()
    }

    /// Emits the group-level stores `list`: all values first, then all
    /// stores (so stores reading each other see entry values).
    pub fn stores(&mut self, list: &[(TensorId, LValue)]) {
        for &(_, v) in list {
            self.scalar(v);
        }
        for &(t, v) in list {
            self.store_scalar(t, v);
        }
    }

    /// Emits a group-level store of `v` to `t` at the current indices.
    pub fn store_scalar(&mut self, t: TensorId, v: LValue) {
        let x = self.scalar(v);
        let dims = self.p.kernel.tensors[t].dims.clone();
        let dtype = self.dtype(t);
        let base = self.tensor_base(t);
        let off = self.offset(&dims, None);
        let a = self.addr_of(base, off, dtype.size_bytes() as i64);
        let exact = self.exact_store(t, v);
        ops::store(self.b, W::S, self.consts(), dtype, flags(), x, a, 0, exact);
    }

    /// A counted loop `for i in (lo..hi).step_by(step)`, with `body`
    /// emitted inside. Bottom-tested (one branch per iteration), behind a
    /// guard for the empty range.
    fn counted<F: FnMut(&mut Self, Value)>(&mut self, lo: Value, hi: Value, step: i64, mut body: F) {
        let i = self.b.declare_var(types::I64);
        self.b.def_var(i, lo);
        let block = self.b.create_block();
        let exit = self.b.create_block();
        let c = self.b.ins().icmp(IntCC::SignedLessThan, lo, hi);
        self.b.ins().brif(c, block, &[], exit, &[]);
        self.b.switch_to_block(block);
        let saved = (self.sc.clone(), self.sc_bits.clone());
        let iv = self.b.use_var(i);
        body(self, iv);
        (self.sc, self.sc_bits) = saved;
        let next = self.b.ins().iadd_imm_s(iv, step);
        self.b.def_var(i, next);
        let c = self.b.ins().icmp(IntCC::SignedLessThan, next, hi);
        self.b.ins().brif(c, block, &[], exit, &[]);
        self.b.switch_to_block(exit);
    }

    /// The group body: group loops around every step. The cascades of
    /// cross-group accumulators run across the chunk's group iterations.
    pub fn group(&mut self) {
        self.in_group = true;
        for a in 0..self.p.accums.len() {
            let acc = &self.p.accums[a];
            if acc.cross && cascades(acc.op) {
                let (count, rows) = (self.b.declare_var(types::I64), self.b.declare_var(types::I64));
                let zero = self.iconst(0);
                self.b.def_var(count, zero);
                self.b.def_var(rows, zero);
                self.cross.push((AccId(a as u32), count, rows));
            }
        }
        self.group_level(0);
        let cross = std::mem::take(&mut self.cross);
        self.finish_list(cross);
        self.in_group = false;
    }

    fn group_level(&mut self, level: usize) {
        if level == self.p.group().len() {
            for si in 0..self.p.steps.len() {
                match self.p.steps[si] {
                    Step::Compute(v) => {
                        self.scalar(v);
                    }
                    Step::Store(t, v) => self.store_scalar(t, v),
                    Step::Phase(ph) => self.phase(ph, None, true),
                }
            }
            return;
        }
        let d = self.p.group()[level];
        let (lo, hi) = if level == 0 { (self.a.lo, self.a.hi) } else { (self.iconst(0), self.dim(d)) };
        self.counted(lo, hi, 1, |fx, i| {
            fx.idx[d.index()] = Some(i);
            fx.group_level(level + 1);
        });
    }

    /// Group-level values phase `ph` reads, in evaluation order.
    fn group_inputs(&self, ph: usize) -> Vec<LValue> {
        let phase = &self.p.phases[ph];
        let local: std::collections::HashSet<LValue> = phase.nodes.iter().map(|n| n.0).collect();
        let mut out: Vec<LValue> = Vec::new();
        let mut add = |v: LValue| {
            if !local.contains(&v) && !out.contains(&v) {
                out.push(v);
            }
        };
        for &(v, _) in &phase.nodes {
            for o in self.p.node(v).op.operands() {
                add(o);
            }
        }
        for a in &phase.accums {
            add(self.p.accums[a.0 as usize].operand);
        }
        for &(_, v) in &phase.stores {
            add(v);
        }
        out.sort();
        out
    }

    /// Emits phase `ph`. `outer` restricts its first loop (a chunk);
    /// `own_scratch` makes the code initialize and finalize its
    /// accumulators itself (inside a group; otherwise the runtime does).
    pub fn phase(&mut self, ph: usize, outer: Option<(Value, Value)>, own_scratch: bool) {
        self.phase = Some(ph);
        for v in self.group_inputs(ph) {
            self.scalar(v);
        }
        let accs = self.p.phases[ph].accums.clone();
        if own_scratch {
            for &a in &accs {
                if self.p.accums[a.0 as usize].cross {
                    // Set to the identity per chunk, by the runtime.
                    continue;
                }
                if self.p.accums[a.0 as usize].is_hoisted() {
                    // Stored as is (`combine_into`): no identity needed.
                    continue;
                }
                let op = self.p.accums[a.0 as usize].op;
                let dims = self.p.accums[a.0 as usize].scratch_dims.clone();
                let n = self.extent(&dims);
                let base = self.acc_base(a);
                let id = ops::identity(self.b, op);
                self.for_each_elem(base, n, |fx, ad| {
                    fx.b.ins().store(flags(), id, ad, 0);
                });
            }
        }
        let regs = self.declare_regs(ph);
        self.arrays = self.begin_arrays(ph);
        self.level(ph, 0, outer, &regs);
        self.finish_arrays();
        // A run of the phase is one row of its cross-group accumulators.
        let rows: Vec<_> = self.cross.iter().filter(|c| accs.contains(&c.0)).copied().collect();
        self.rows_done(&rows);
        if own_scratch {
            for &a in &accs {
                let acc = &self.p.accums[a.0 as usize];
                if acc.op != Reduce::Mean || acc.cross {
                    continue;
                }
                let (reduced, dims) = (acc.reduced, acc.scratch_dims.clone());
                let c = self.count(reduced);
                let n = self.extent(&dims);
                let base = self.acc_base(a);
                self.for_each_elem(base, n, |fx, ad| {
                    let s = fx.b.ins().load(types::F32, flags(), ad, 0);
                    let q = fx.b.ins().fdiv(s, c);
                    fx.b.ins().store(flags(), q, ad, 0);
                });
            }
        }
        self.phase = None;
    }

    /// Runs `f` on the address of each of `n` f32s from `base`: unrolled for
    /// the short scratch arrays of per-group statistics, a loop otherwise.
    fn for_each_elem<F: FnMut(&mut Self, Value)>(&mut self, base: Value, n: Sv, mut f: F) {
        if let Sv::Const(n @ 0..=4) = n {
            for i in 0..n {
                let ad = self.b.ins().iadd_imm_s(base, 4 * i);
                f(self, ad);
            }
        } else {
            let (z, hi) = (self.iconst(0), self.sv(n));
            self.counted(z, hi, 1, |fx, i| {
                let ad = fx.addr(base, i);
                f(fx, ad);
            });
        }
    }

    /// Slot and tail variables of every register accumulator of a phase,
    /// and the cascade state of its sums.
    fn declare_regs(&mut self, ph: usize) -> Regs {
        let phase = &self.p.phases[ph];
        let k = phase.loops.len();
        let lane = if phase.width > 1 { types::F32X4 } else { types::F32 };
        let mut regs = HashMap::new();
        for &a in &phase.accums {
            let acc = &self.p.accums[a.0 as usize];
            if acc.flush_depth < k {
                let slots = (0..phase.unroll).map(|_| self.b.declare_var(lane)).collect();
                let tail = self.b.declare_var(types::F32);
                let cascade = cascades(acc.op).then(|| {
                    let size = (CASCADE_LEVELS * 4) as u32;
                    let stack =
                        self.b.create_sized_stack_slot(StackSlotData::new(StackSlotKind::ExplicitSlot, size, 2));
                    Cascade { count: self.b.declare_var(types::I64), since: self.b.declare_var(types::I64), stack }
                });
                regs.insert(a, RegAcc { slots, tail, cascade });
            }
        }
        regs
    }

    /// Sets accumulator `a`'s slots and tail to the identity.
    fn reset_regs(&mut self, ph: usize, a: AccId, r: &RegAcc) {
        let wide = self.p.phases[ph].width > 1;
        let id = ops::identity(self.b, self.p.accums[a.0 as usize].op);
        let v = if wide { self.b.ins().splat(types::F32X4, id) } else { id };
        for &s in &r.slots {
            self.b.def_var(s, v);
        }
        self.b.def_var(r.tail, id);
    }

    fn init_regs(&mut self, ph: usize, depth: usize, regs: &Regs) {
        let mut list: Vec<_> = regs.iter().collect();
        list.sort_by_key(|(a, _)| **a);
        for (&a, r) in list {
            if self.p.accums[a.0 as usize].flush_depth != depth {
                continue;
            }
            self.reset_regs(ph, a, r);
            if let Some(c) = r.cascade {
                let zero = self.iconst(0);
                self.b.def_var(c.count, zero);
                self.b.def_var(c.since, zero);
            }
        }
    }

    /// Folds accumulator `a`'s slots and tail into one scalar, in the
    /// normative order.
    fn fold_regs(&mut self, ph: usize, a: AccId, r: &RegAcc) -> Value {
        let wide = self.p.phases[ph].width > 1;
        let op = self.p.accums[a.0 as usize].op;
        let w = if wide { W::V } else { W::S };
        let mut folded = self.b.use_var(r.slots[0]);
        for &s in &r.slots[1..] {
            let x = self.b.use_var(s);
            folded = ops::combine(self.b, op, w, folded, x);
        }
        let h = if wide {
            let l: Vec<Value> = (0..4u8).map(|i| self.b.ins().extractlane(folded, i)).collect();
            let a02 = ops::combine(self.b, op, W::S, l[0], l[2]);
            let a13 = ops::combine(self.b, op, W::S, l[1], l[3]);
            ops::combine(self.b, op, W::S, a02, a13)
        } else {
            folded
        };
        let t = self.b.use_var(r.tail);
        ops::combine(self.b, op, W::S, h, t)
    }

    /// Folds, resets and pushes every cascaded sum of the phase.
    fn push_sums(&mut self, ph: usize, regs: &Regs) {
        let mut list: Vec<_> = regs.iter().filter(|(_, r)| r.cascade.is_some()).collect();
        list.sort_by_key(|(a, _)| **a);
        for (&a, r) in list {
            self.push_one(ph, a, r);
        }
    }

    /// The normative order's *push* of one cascaded sum: fold and reset its
    /// accumulators; `v = level[j] ⊕ v` while bit `j` of the count is set,
    /// then `level[j] = v`, count + 1; nothing pending since.
    fn push_one(&mut self, ph: usize, a: AccId, r: &RegAcc) {
        let Some(Cascade { count, since, stack: slot }) = r.cascade else { return };
        let op = self.p.accums[a.0 as usize].op;
        let v0 = self.fold_regs(ph, a, r);
        self.reset_regs(ph, a, r);
        let zero = self.iconst(0);
        self.b.def_var(since, zero);
        let c = self.b.use_var(count);
        self.stack_push(op, c, v0, &|fx, j| {
            let base = fx.b.ins().stack_addr(types::I64, slot, 0);
            fx.addr(base, j)
        });
        let nc = self.b.ins().iadd_imm_s(c, 1);
        self.b.def_var(count, nc);
    }

    /// `if cond { push_sums }`.
    fn push_sums_if(&mut self, ph: usize, regs: &Regs, cond: Value) {
        let (push, done) = (self.b.create_block(), self.b.create_block());
        self.b.ins().brif(cond, push, &[], done, &[]);
        self.b.switch_to_block(push);
        self.push_sums(ph, regs);
        self.b.ins().jump(done, &[]);
        self.b.switch_to_block(done);
    }

    /// `if cond { push_one }`.
    fn push_if(&mut self, ph: usize, a: AccId, r: &RegAcc, cond: Value) {
        let (push, done) = (self.b.create_block(), self.b.create_block());
        self.b.ins().brif(cond, push, &[], done, &[]);
        self.b.switch_to_block(push);
        self.push_one(ph, a, r);
        self.b.ins().jump(done, &[]);
        self.b.switch_to_block(done);
    }

    /// The value of a cascaded sum's stack: the identity ⊕ `level[j]` for
    /// each set bit `j` of the count, highest first.
    fn collapse(&mut self, a: AccId, r: &RegAcc) -> Value {
        let Cascade { count, stack: slot, .. } = r.cascade.expect("a cascaded sum");
        let op = self.p.accums[a.0 as usize].op;
        let c = self.b.use_var(count);
        self.stack_value(op, c, &|fx, j| {
            let base = fx.b.ins().stack_addr(types::I64, slot, 0);
            fx.addr(base, j)
        })
    }

    /// The push loop of the normative order, for a stack of `c` values
    /// whose level `j` is at address `level(j)`: `v = level[j] ⊕ v` while
    /// bit `j` of `c` is set, then `level[j] = v`.
    fn stack_push(&mut self, op: Reduce, c: Value, v0: Value, level: &dyn Fn(&mut Self, Value) -> Value) {
        let (j, v) = (self.b.declare_var(types::I64), self.b.declare_var(types::F32));
        let zero = self.iconst(0);
        self.b.def_var(j, zero);
        self.b.def_var(v, v0);
        let (head, merge, done) = (self.b.create_block(), self.b.create_block(), self.b.create_block());
        self.b.ins().jump(head, &[]);
        self.b.switch_to_block(head);
        let jv = self.b.use_var(j);
        let bit = self.b.ins().ushr(c, jv);
        let bit = self.b.ins().band_imm_u(bit, 1);
        self.b.ins().brif(bit, merge, &[], done, &[]);
        self.b.switch_to_block(merge);
        let jv = self.b.use_var(j);
        let ad = level(self, jv);
        let lv = self.b.ins().load(types::F32, flags(), ad, 0);
        let vv = self.b.use_var(v);
        let nv = ops::combine(self.b, op, W::S, lv, vv);
        self.b.def_var(v, nv);
        let nj = self.b.ins().iadd_imm_s(jv, 1);
        self.b.def_var(j, nj);
        self.b.ins().jump(head, &[]);
        self.b.switch_to_block(done);
        let jv = self.b.use_var(j);
        let ad = level(self, jv);
        let vv = self.b.use_var(v);
        self.b.ins().store(flags(), vv, ad, 0);
    }

    /// The value of a stack of `c` values (level `j` at `level(j)`): the
    /// identity ⊕ `level[j]` for each set bit `j` of `c`, highest first.
    fn stack_value(&mut self, op: Reduce, c0: Value, level: &dyn Fn(&mut Self, Value) -> Value) -> Value {
        let (c, acc) = (self.b.declare_var(types::I64), self.b.declare_var(types::F32));
        self.b.def_var(c, c0);
        let id = ops::identity(self.b, op);
        self.b.def_var(acc, id);
        let (head, body, done) = (self.b.create_block(), self.b.create_block(), self.b.create_block());
        self.b.ins().jump(head, &[]);
        self.b.switch_to_block(head);
        let cv = self.b.use_var(c);
        self.b.ins().brif(cv, body, &[], done, &[]);
        self.b.switch_to_block(body);
        let cv = self.b.use_var(c);
        let lz = self.b.ins().clz(cv);
        let c63 = self.iconst(63);
        let j = self.b.ins().isub(c63, lz);
        let ad = level(self, j);
        let lv = self.b.ins().load(types::F32, flags(), ad, 0);
        let av = self.b.use_var(acc);
        let na = ops::combine(self.b, op, W::S, av, lv);
        self.b.def_var(acc, na);
        let one = self.iconst(1);
        let bit = self.b.ins().ishl(one, j);
        let nc = self.b.ins().band_not(cv, bit);
        self.b.def_var(c, nc);
        self.b.ins().jump(head, &[]);
        self.b.switch_to_block(done);
        self.b.use_var(acc)
    }

    fn flush_regs(&mut self, ph: usize, depth: usize, regs: &Regs) {
        let mut list: Vec<_> = regs.iter().collect();
        list.sort_by_key(|(a, _)| **a);
        for (&a, r) in list {
            let acc = self.p.accums[a.0 as usize].clone();
            if acc.flush_depth != depth {
                continue;
            }
            let total = match r.cascade {
                Some(c) => {
                    // Anything combined since the last push is pushed first.
                    let since = self.b.use_var(c.since);
                    self.push_if(ph, a, r, since);
                    self.collapse(a, r)
                }
                None => self.fold_regs(ph, a, r),
            };
            let base = self.acc_base(a);
            let off = self.offset(&acc.scratch_dims, None);
            let ad = self.addr(base, off);
            let s = self.b.ins().load(types::F32, flags(), ad, 0);
            let v = ops::combine(self.b, acc.op, W::S, s, total);
            self.b.ins().store(flags(), v, ad, 0);
        }
    }

    /// The cascaded array accumulators of phase `ph`, their counters set
    /// to 0 (a run of the phase starts).
    fn begin_arrays(&mut self, ph: usize) -> Vec<(AccId, Variable, Variable)> {
        let mut out = Vec::new();
        for &a in &self.p.phases[ph].accums.clone() {
            if self.p.array_cascade(a) {
                let (count, rows) = (self.b.declare_var(types::I64), self.b.declare_var(types::I64));
                let zero = self.iconst(0);
                self.b.def_var(count, zero);
                self.b.def_var(rows, zero);
                out.push((a, count, rows));
            }
        }
        out
    }

    /// Accumulator `a`'s scratch array: base address, length (elements),
    /// and its stacks' base address.
    fn array_parts(&mut self, a: AccId) -> (Value, Value, Value) {
        let base = self.acc_base(a);
        let dims = self.p.accums[a.0 as usize].scratch_dims.clone();
        let n = self.extent(&dims);
        let n = self.sv(n);
        // The stacks' offset is from the start of the area the array lives
        // in: a chunk's partial area (group-less plans, cross-group
        // accumulators) or the scratch.
        let in_partial = self.p.group().is_empty() || self.p.accums[a.0 as usize].cross;
        let area = if in_partial { self.a.partial } else { self.a.scratch };
        let levels = self.b.ins().iadd(area, self.levels_off[a.0 as usize]);
        (base, n, levels)
    }

    /// Pushes array accumulator `a`'s scratch elementwise onto its stacks
    /// (level `j` of element `e` at `levels + (j * n + e) * 4`), resets it,
    /// counts the push.
    fn push_array(&mut self, a: AccId, count: Variable, rows: Variable) {
        let op = self.p.accums[a.0 as usize].op;
        let (base, n, levels) = self.array_parts(a);
        let c = self.b.use_var(count);
        self.array_elems(n, |fx, e| {
            let ad = fx.addr(base, e);
            let v0 = fx.b.ins().load(types::F32, flags(), ad, 0);
            // Element `e`'s level `j` is at `levels + (j * n + e) * 4`.
            fx.stack_push(op, c, v0, &|fx, j| {
                let jn = fx.b.ins().imul(j, n);
                let idx = fx.b.ins().iadd(jn, e);
                fx.addr(levels, idx)
            });
            let id = ops::identity(fx.b, op);
            fx.b.ins().store(flags(), id, ad, 0);
        });
        let nc = self.b.ins().iadd_imm_s(c, 1);
        self.b.def_var(count, nc);
        let zero = self.iconst(0);
        self.b.def_var(rows, zero);
    }

    /// Runs `f` on each element index `e` of an array accumulator of `n`
    /// elements: all of them, or with column blocking only this block's
    /// (the blocked axis is the array's last dim: `lo..hi` of each row).
    fn array_elems<F: FnMut(&mut Self, Value)>(&mut self, n: Value, mut f: F) {
        let zero = self.iconst(0);
        let Some((axis, lo, hi)) = self.block else {
            self.counted(zero, n, 1, f);
            return;
        };
        // Rows of the axis's extent (none when it is 0).
        let d = self.dim(axis);
        let one = self.iconst(1);
        let nonzero = self.b.ins().icmp_imm_s(IntCC::NotEqual, d, 0);
        let div = self.b.ins().select(nonzero, d, one);
        let rows = self.b.ins().udiv(n, div);
        let rows = self.b.ins().select(nonzero, rows, zero);
        self.counted(zero, rows, 1, |fx, r| {
            let row = fx.b.ins().imul(r, d);
            fx.counted(lo, hi, 1, |fx, c| {
                let e = fx.b.ins().iadd(row, c);
                f(fx, e);
            });
        });
    }

    /// The end of an instance of the innermost loop: each cascaded array
    /// counts it, and pushes after `ARRAY_BLOCK_ROWS` of them.
    fn array_row_done(&mut self) {
        let arrays = self.arrays.clone();
        self.rows_done(&arrays);
    }

    /// Counts a row of each array in `list`; pushes after `ARRAY_BLOCK_ROWS`.
    fn rows_done(&mut self, list: &[(AccId, Variable, Variable)]) {
        for &(a, count, rows) in list {
            let r = self.b.use_var(rows);
            let r1 = self.b.ins().iadd_imm_s(r, 1);
            self.b.def_var(rows, r1);
            let full = self.b.ins().icmp_imm_s(IntCC::Equal, r1, ARRAY_BLOCK_ROWS as i64);
            let (push, done) = (self.b.create_block(), self.b.create_block());
            self.b.ins().brif(full, push, &[], done, &[]);
            self.b.switch_to_block(push);
            self.push_array(a, count, rows);
            self.b.ins().jump(done, &[]);
            self.b.switch_to_block(done);
        }
    }

    /// The end of a run of the phase: each cascaded array that pushed
    /// pushes a non-empty last block and takes its stacks' values.
    fn finish_arrays(&mut self) {
        let arrays = std::mem::take(&mut self.arrays);
        self.finish_list(arrays);
    }

    /// Finishes each cascaded array of `list` (see `finish_arrays`).
    fn finish_list(&mut self, list: Vec<(AccId, Variable, Variable)>) {
        for (a, count, rows) in list {
            // A run that never pushed keeps its scratch as it is.
            let (finish, end) = (self.b.create_block(), self.b.create_block());
            let c = self.b.use_var(count);
            self.b.ins().brif(c, finish, &[], end, &[]);
            self.b.switch_to_block(finish);
            let r = self.b.use_var(rows);
            let (push, done) = (self.b.create_block(), self.b.create_block());
            self.b.ins().brif(r, push, &[], done, &[]);
            self.b.switch_to_block(push);
            self.push_array(a, count, rows);
            self.b.ins().jump(done, &[]);
            self.b.switch_to_block(done);
            let op = self.p.accums[a.0 as usize].op;
            let (base, n, levels) = self.array_parts(a);
            let c0 = self.b.use_var(count);
            self.array_elems(n, |fx, e| {
                let r = fx.stack_value(op, c0, &|fx, j| {
                    let jn = fx.b.ins().imul(j, n);
                    let idx = fx.b.ins().iadd(jn, e);
                    fx.addr(levels, idx)
                });
                let ad = fx.addr(base, e);
                fx.b.ins().store(flags(), r, ad, 0);
            });
            self.b.ins().jump(end, &[]);
            self.b.switch_to_block(end);
        }
    }

    fn level(&mut self, ph: usize, depth: usize, range: Option<(Value, Value)>, regs: &Regs) {
        let phase = self.p.phases[ph].clone();
        let k = phase.loops.len();
        if k == 0 {
            // A phase without loops (a cross-group reduction of a value that
            // varies only with the group): one element per group iteration,
            // into the scratch element of its kept indices.
            for &a in &phase.accums {
                let acc = self.p.accums[a.0 as usize].clone();
                let x = self.scalar(acc.operand);
                let base = self.acc_base(a);
                let off = self.offset(&acc.scratch_dims, None);
                let ad = self.addr(base, off);
                self.combine_into(&acc, W::S, ad, 0, x);
            }
            return;
        }
        if depth >= 1 {
            for &(v, d) in &phase.nodes {
                if d == depth {
                    self.scalar(v);
                }
            }
        }
        self.init_regs(ph, depth, regs);
        // Flattened innermost loops run as one, over the last one's index
        // (the others stay at 0).
        let flat = phase.flat > 1 && depth == k - phase.flat;
        let d = if flat { phase.loops[k - 1] } else { phase.loops[depth] };
        let blocked = self.block.filter(|&(axis, ..)| depth > 0 && depth + 1 == k && axis == d);
        let (lo, hi) = match (range, blocked) {
            (Some(r), _) => r,
            // Column blocking: the innermost loop runs over this block.
            (None, Some((_, lo, hi))) => (lo, hi),
            (None, None) if flat => {
                let n = self.extent(&phase.loops[depth..]);
                (self.iconst(0), self.sv(n))
            }
            (None, None) => (self.iconst(0), self.dim(d)),
        };
        if flat {
            for &e in &phase.loops[depth..k - 1] {
                self.idx[e.index()] = Some(self.iconst(0));
            }
        }
        if depth + 1 == k || flat {
            self.inner(ph, lo, hi, range.is_none() && blocked.is_none(), regs);
        } else {
            self.counted(lo, hi, 1, |fx, i| {
                fx.idx[d.index()] = Some(i);
                fx.level(ph, depth + 1, None, regs);
            });
        }
        self.flush_regs(ph, depth, regs);
    }

    /// The innermost loop: whole blocks, then the scalar tail.
    fn inner(&mut self, ph: usize, lo: Value, hi: Value, from_zero: bool, regs: &Regs) {
        let phase = self.p.phases[ph].clone();
        let k = phase.loops.len();
        let d = phase.loops[k - 1];
        let (width, unroll) = (phase.width, phase.unroll);
        let block = (width * unroll) as i64;
        // End of the whole blocks: lo + (hi - lo) - (hi - lo) % block.
        let extent = self.extent(&phase.loops[k - phase.flat..]);
        let main_end = if let (true, Sv::Const(n)) = (from_zero, extent) {
            self.iconst(n - n % block)
        } else if from_zero && (block as u64).is_power_of_two() {
            self.b.ins().band_imm_s(hi, -block)
        } else {
            let n = self.b.ins().isub(hi, lo);
            let r = self.b.ins().urem_imm_u(n, block);
            let m = self.b.ins().isub(n, r);
            self.b.ins().iadd(lo, m)
        };
        let inner_nodes: Vec<LValue> = phase.nodes.iter().filter(|n| n.1 == k).map(|n| n.0).collect();
        // Per-access base pointers at index 0 of the inner loop, and the
        // inner stride (elements) of each.
        let mut pre: HashMap<Access, (Value, Sv)> = HashMap::new();
        let mut sizes: HashMap<Access, i64> = HashMap::new();
        let mut streams: Vec<Access> = Vec::new();
        for &v in &inner_nodes {
            match self.p.node(v).op {
                LOp::Load(t) => streams.push(Access::Tensor(t)),
                LOp::Reduced(a) => streams.push(Access::Acc(a)),
                _ => {}
            }
        }
        streams.extend(phase.stores.iter().map(|&(t, _)| Access::Tensor(t)));
        for &a in &phase.accums {
            if self.p.accums[a.0 as usize].flush_depth == k {
                streams.push(Access::Acc(a));
            }
        }
        for s in streams {
            if pre.contains_key(&s) {
                continue;
            }
            let (dims, base) = match s {
                Access::Tensor(t) => (self.p.kernel.tensors[t].dims.clone(), self.tensor_base(t)),
                Access::Acc(a) => (self.p.accums[a.0 as usize].scratch_dims.clone(), self.acc_base(a)),
            };
            let size = self.access_dtype(s).size_bytes() as i64;
            let off = self.offset(&dims, Some(d));
            let p0 = self.addr_of(base, off, size);
            pre.insert(s, (p0, self.stride_of(&dims, d)));
            sizes.insert(s, size);
        }
        // Uniform values: keys, the i32 index at inner position 0, the
        // inner stride, and (for vectors) the lane offsets, all hoisted.
        let mut ubase: HashMap<LValue, UniformPre> = HashMap::new();
        for &v in &inner_nodes {
            if let LOp::Uniform(seed, axes, stream) = self.p.node(v).op {
                let dims: Vec<DimId> = axes.iter().collect();
                let off = self.offset(&dims, Some(d));
                let base = self.b.ins().ireduce(types::I32, off);
                let stride = match self.stride_of(&dims, d) {
                    Sv::Const(c) => Sv::Const(c),
                    Sv::Dyn(v) => Sv::Dyn(self.b.ins().ireduce(types::I32, v)),
                };
                let params = self.params();
                let s = self.b.ins().load(types::I32, flags(), params, (seed.index() * 8) as i32);
                let s = ops::stream_seed(self.b, self.consts(), s, stream);
                let (k1, k2) = ops::uniform_keys(self.b, self.consts(), s);
                let (vk1, vk2) = (self.b.ins().splat(types::I32X4, k1), self.b.ins().splat(types::I32X4, k2));
                let zero = self.b.ins().iconst(types::I32, 0);
                let mut lanes = self.b.ins().splat(types::I32X4, zero);
                for l in 1..4u8 {
                    let x = match stride {
                        Sv::Const(c) => self.b.ins().iconst(types::I32, l as i64 * c),
                        Sv::Dyn(v) => self.b.ins().imul_imm_s(v, l as i64),
                    };
                    lanes = self.b.ins().insertlane(lanes, x, l);
                }
                ubase.insert(v, UniformPre { base, stride, k1, k2, vk1, vk2, lanes });
            }
        }
        let wide = width > 1;
        // Splat scalar operands once, before the loop.
        let mut splats: HashMap<LValue, Value> = HashMap::new();
        if wide {
            let mut outer: Vec<LValue> = Vec::new();
            for &v in &inner_nodes {
                for o in self.p.node(v).op.operands() {
                    if !inner_nodes.contains(&o) && !outer.contains(&o) {
                        outer.push(o);
                    }
                }
            }
            for &(_, v) in &phase.stores {
                if !inner_nodes.contains(&v) && !outer.contains(&v) {
                    outer.push(v);
                }
            }
            for &a in &phase.accums {
                let v = self.p.accums[a.0 as usize].operand;
                if !inner_nodes.contains(&v) && !outer.contains(&v) {
                    outer.push(v);
                }
            }
            for o in outer {
                let s = self.scalar(o);
                splats.insert(o, ops::splat(self.b, self.p.node(o).ty, s));
            }
        }
        // Software prefetch (see `normjit_lower::Prefetch`): a base pointer
        // one group iteration ahead for each touched tensor, or this
        // iteration's again on the last one (never out of bounds).
        let mut touch: Vec<(Value, Sv, i64)> = Vec::new();
        if let Some(pf) = self.p.prefetch.clone().filter(|pf| pf.phase == ph && wide) {
            let gi = self.idx[pf.axis.index()].expect("inside the group loop");
            let gn = self.dim(pf.axis);
            for t in pf.tensors {
                let dims = self.p.kernel.tensors[t].dims.clone();
                let size = self.dtype(t).size_bytes() as i64;
                let off = self.offset(&dims, Some(d));
                let base = self.tensor_base(t);
                let p0 = self.addr_of(base, off, size);
                let next = self.b.ins().iadd_imm_s(gi, 1);
                let more = self.b.ins().icmp(cranelift_codegen::ir::condcodes::IntCC::SignedLessThan, next, gn);
                let ahead = self.stride_of(&dims, pf.axis);
                let ahead = self.mul_sv(ahead, Sv::Const(size));
                let ahead = self.sv(ahead);
                let zero = self.iconst(0);
                let shift = self.b.ins().select(more, ahead, zero);
                touch.push((self.b.ins().iadd(p0, shift), self.stride_of(&dims, d), size));
            }
        }
        let ctx = Inner { inner_nodes: &inner_nodes, pre: &pre, sizes: &sizes, ubase: &ubase, splats: &splats };
        // Main loop over whole rounds of the slots; with a cascaded sum, in
        // blocks of `BLOCK_ROUNDS` rounds, each pushed when done: one loop
        // over the blocks whose last one may be partial (its elements stay
        // pending), so the rounds' code is emitted once.
        let w = if wide { W::V } else { W::S };
        let cascade = regs.values().any(|r| r.cascade.is_some());
        let rounds_from = if cascade {
            let cascade_block = block * BLOCK_ROUNDS as i64;
            let n = self.b.ins().isub(main_end, lo);
            let r = self.b.ins().urem_imm_u(n, cascade_block);
            let whole = self.b.ins().isub(main_end, r);
            self.counted(lo, main_end, cascade_block, |fx, b0| {
                let b1 = fx.b.ins().iadd_imm_s(b0, cascade_block);
                let full = fx.b.ins().icmp(IntCC::SignedLessThanOrEqual, b1, main_end);
                let b1 = fx.b.ins().select(full, b1, main_end);
                fx.round_loop(ph, &ctx, w, &touch, regs, b0, b1);
                fx.push_sums_if(ph, regs, full);
            });
            Some(whole)
        } else {
            self.round_loop(ph, &ctx, w, &touch, regs, lo, main_end);
            None
        };
        // Scalar tail.
        self.counted(main_end, hi, 1, |fx, i| {
            let addrs = fx.stream_addrs(&ctx, i);
            let at = At { i, addrs: &addrs, elem: 0 };
            let vals = fx.eval_inner(&ctx, W::S, &at);
            fx.sink(ph, &ctx, W::S, &at, &vals, regs, None);
        });
        // The end of this instance: the elements since each sum's last push
        // (those after this instance's last whole block, or all of them
        // plus the earlier ones if it had none); a block's worth is pushed.
        if let Some(whole) = rounds_from {
            let cascade_block = block * BLOCK_ROUNDS as i64;
            let pushed = self.b.ins().icmp(IntCC::SignedGreaterThan, whole, lo);
            let after = self.b.ins().isub(hi, whole);
            let n = self.b.ins().isub(hi, lo);
            let mut list: Vec<_> = regs.iter().filter(|(_, r)| r.cascade.is_some()).collect();
            list.sort_by_key(|(a, _)| **a);
            for (&a, r) in list {
                let Some(c) = r.cascade else { continue };
                let old = self.b.use_var(c.since);
                let added = self.b.ins().iadd(old, n);
                let since = self.b.ins().select(pushed, after, added);
                self.b.def_var(c.since, since);
                let full = self.b.ins().icmp_imm_s(IntCC::SignedGreaterThanOrEqual, since, cascade_block);
                self.push_if(ph, a, r, full);
            }
        }
        self.array_row_done();
    }

    /// Whole rounds of the slots (`width × unroll` elements each) over
    /// `[from, to)`, with the prefetch touches.
    #[allow(clippy::too_many_arguments)]
    fn round_loop(
        &mut self,
        ph: usize,
        ctx: &Inner,
        w: W,
        touch: &[(Value, Sv, i64)],
        regs: &Regs,
        from: Value,
        to: Value,
    ) {
        let phase = &self.p.phases[ph];
        let (width, unroll) = (phase.width, phase.unroll);
        let block = (width * unroll) as i64;
        self.counted(from, to, block, |fx, i| {
            for &(tp, stride, size) in touch {
                let sb = fx.mul_sv(stride, Sv::Const(size));
                let b = fx.scale(i, sb);
                let a = fx.b.ins().iadd(tp, b);
                // The value is unused: the load only brings the line in.
                // It reads one element, never past the buffer.
                if size == 2 {
                    fx.b.ins().uload16(types::I32, flags(), a, 0);
                } else {
                    fx.b.ins().load(types::F32, flags(), a, 0);
                }
            }
            let addrs = fx.stream_addrs(ctx, i);
            for u in 0..unroll {
                let at = At { i, addrs: &addrs, elem: (u * width) as i64 };
                let vals = fx.eval_inner(ctx, w, &at);
                fx.sink(ph, ctx, w, &at, &vals, regs, Some(u));
            }
        });
    }

    /// The address of every stream at inner index `i` (element 0 of this
    /// iteration); slots add immediate offsets to it.
    fn stream_addrs(&mut self, c: &Inner, i: Value) -> HashMap<Access, Value> {
        let mut scaled: Vec<(String, Value)> = Vec::new();
        let mut out = HashMap::new();
        let mut keys: Vec<&Access> = c.pre.keys().collect();
        keys.sort_by_key(|k| format!("{k:?}"));
        for key in keys {
            let (p0, stride) = c.pre[key];
            let size = c.sizes[key];
            let id = format!("{stride:?} x{size}");
            let bytes = match scaled.iter().find(|s| s.0 == id) {
                Some(&(_, v)) => v,
                None => {
                    let v = match stride {
                        Sv::Const(1) => self.b.ins().ishl_imm_u(i, i64::from(size.trailing_zeros())),
                        s => {
                            let sb = self.mul_sv(s, Sv::Const(size));
                            self.scale(i, sb)
                        }
                    };
                    scaled.push((id, v));
                    v
                }
            };
            out.insert(*key, self.b.ins().iadd(p0, bytes));
        }
        out
    }

    /// Values of the innermost nodes at position `at` with width `w`.
    fn eval_inner(&mut self, c: &Inner, w: W, at: &At) -> HashMap<LValue, Value> {
        let mut vals: HashMap<LValue, Value> = HashMap::new();
        // The random bits of the `uniform` values in `vals`.
        let mut bits: HashMap<LValue, Value> = HashMap::new();
        for &v in c.inner_nodes {
            let node = self.p.node(v).clone();
            let x = match &node.op {
                LOp::Load(t) => self.inner_load(c, Access::Tensor(*t), w, at),
                LOp::Reduced(a) => self.inner_load(c, Access::Acc(*a), w, at),
                LOp::Uniform(..) => {
                    let u = &c.ubase[&v];
                    let e = self.b.ins().iadd_imm_s(at.i, at.elem);
                    let e = self.b.ins().ireduce(types::I32, e);
                    let se = match u.stride {
                        Sv::Const(1) => e,
                        Sv::Const(c) => self.b.ins().imul_imm_s(e, c),
                        Sv::Dyn(v) => self.b.ins().imul(e, v),
                    };
                    let lo = self.b.ins().iadd(u.base, se);
                    let h = match w {
                        W::S => ops::uniform_hash(self.b, w, self.consts(), u.k1, u.k2, lo),
                        W::V => {
                            let lo = self.b.ins().splat(types::I32X4, lo);
                            let lo = self.b.ins().iadd(lo, u.lanes);
                            ops::uniform_hash(self.b, w, self.consts(), u.vk1, u.vk2, lo)
                        }
                    };
                    bits.insert(v, h);
                    ops::unit_float(self.b, w, h)
                }
                LOp::StochasticRound(x, u) => {
                    let xv = self.operand(c, &vals, *x, w);
                    let uv = self.operand(c, &vals, *u, w);
                    let r = ops::rounding_bits(self.b, w, self.consts(), bits.get(u).copied(), uv);
                    ops::stochastic_bf16(self.b, w, self.consts(), xv, r)
                }
                LOp::Count(axes) => {
                    let n = self.count(*axes);
                    match w {
                        W::S => n,
                        W::V => self.b.ins().splat(types::F32X4, n),
                    }
                }
                op => {
                    let args: Vec<Value> = op.operands().iter().map(|o| self.operand(c, &vals, *o, w)).collect();
                    let known = self.known(op);
                    ops::compute(self.b, &self.libm, self.consts(), self.p.fma, op, w, &args, &known)
                }
            };
            vals.insert(v, x);
        }
        vals
    }

    fn operand(&mut self, c: &Inner, vals: &HashMap<LValue, Value>, o: LValue, w: W) -> Value {
        if let Some(&x) = vals.get(&o) {
            return x;
        }
        match w {
            W::V => c.splats[&o],
            W::S => self.scalar(o),
        }
    }

    /// Address and immediate offset of stream `acc` at `at`.
    fn inner_addr(&mut self, c: &Inner, acc: Access, at: &At) -> (Value, i32) {
        let size = c.sizes[&acc];
        match c.pre[&acc].1 {
            Sv::Const(stride) => (at.addrs[&acc], (at.elem * size * stride) as i32),
            Sv::Dyn(_) if at.elem == 0 => (at.addrs[&acc], 0),
            Sv::Dyn(stride) => {
                let off = self.b.ins().imul_imm_s(stride, at.elem * size);
                (self.b.ins().iadd(at.addrs[&acc], off), 0)
            }
        }
    }

    fn inner_load(&mut self, c: &Inner, acc: Access, w: W, at: &At) -> Value {
        let (ad, off) = self.inner_addr(c, acc, at);
        let dtype = self.access_dtype(acc);
        ops::load(self.b, w, self.consts(), dtype, flags(), ad, off)
    }

    /// Accumulates and stores the innermost values of one element (or one
    /// vector) at inner index `e`; `slot` is the unroll slot in the main
    /// loop, `None` in the tail.
    #[allow(clippy::too_many_arguments)]
    fn sink(
        &mut self,
        ph: usize,
        c: &Inner,
        w: W,
        at: &At,
        vals: &HashMap<LValue, Value>,
        regs: &Regs,
        slot: Option<usize>,
    ) {
        let phase = self.p.phases[ph].clone();
        let k = phase.loops.len();
        for &a in &phase.accums {
            let acc = self.p.accums[a.0 as usize].clone();
            let x = self.operand(c, vals, acc.operand, w);
            if acc.flush_depth == k {
                let (ad, off) = self.inner_addr(c, Access::Acc(a), at);
                self.combine_into(&acc, w, ad, off, x);
            } else {
                let r = &regs[&a];
                let var = match slot {
                    Some(u) => r.slots[u],
                    None => r.tail,
                };
                let cur = self.b.use_var(var);
                let r = ops::combine(self.b, acc.op, w, cur, x);
                self.b.def_var(var, r);
            }
        }
        for &(t, v) in &phase.stores {
            let x = self.operand(c, vals, v, w);
            let (ad, off) = self.inner_addr(c, Access::Tensor(t), at);
            let (dtype, exact) = (self.dtype(t), self.exact_store(t, v));
            ops::store(self.b, w, self.consts(), dtype, flags(), x, ad, off, exact);
        }
    }
}

/// The registers of one register accumulator of a phase: its slots (one
/// vector, or scalar, per unroll slot) and tail, and for a cascaded sum
/// the count of blocks pushed and its pairwise stack.
struct RegAcc {
    slots: Vec<Variable>,
    tail: Variable,
    cascade: Option<Cascade>,
}

/// A cascaded sum's state: blocks pushed, elements since the last push,
/// and the pairwise stack.
#[derive(Clone, Copy)]
struct Cascade {
    count: Variable,
    since: Variable,
    stack: StackSlot,
}

type Regs = HashMap<AccId, RegAcc>;

/// A memory stream of the innermost loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Access {
    Tensor(TensorId),
    Acc(AccId),
}

/// Where in the innermost loop an element (or vector) is: the iteration's
/// index `i`, its stream addresses, and the element offset `elem` of this
/// unroll slot from `i`.
struct At<'c> {
    i: Value,
    addrs: &'c HashMap<Access, Value>,
    elem: i64,
}

/// Hoisted parts of a `uniform` in an innermost loop.
struct UniformPre {
    base: Value,
    stride: Sv,
    k1: Value,
    k2: Value,
    vk1: Value,
    vk2: Value,
    lanes: Value,
}

struct Inner<'c> {
    inner_nodes: &'c [LValue],
    pre: &'c HashMap<Access, (Value, Sv)>,
    /// Bytes per element of each stream.
    sizes: &'c HashMap<Access, i64>,
    ubase: &'c HashMap<LValue, UniformPre>,
    splats: &'c HashMap<LValue, Value>,
}
