//! One lowering per (operation, lane width): the arithmetic of the loop IR
//! in Cranelift instructions, scalar (`W::S`, f32) or 4-wide (`W::V`,
//! F32X4). Every rule reproduces the loop-IR interpreter's semantics bit
//! for bit: no contraction into FMA, `rsqrt` as a divide by a correctly
//! rounded root, NaN-propagating `min`/`max` that otherwise return
//! `a < b ? a : b`, and the libm calls the interpreter makes for `exp`,
//! `log` and `pow`.
//!
//! It also owns the element conversions of the storage types
//! (`normjit_ir::dtype`): loads that widen bf16/f16 exactly, stores that
//! round f32 to nearest even (integer sequences with selects, no branches:
//! Cranelift has no f16 conversions), `uniform`'s random bits (with the
//! stochastic-rounding streams' seeds) and the stochastic bf16 rounding.
//! Each is the same steps on one lane or four, so the scalar tail and the
//! vector body agree with each other and with the definitions.

use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{types, Endianness, FuncRef, InstBuilder, MemFlagsData, Type, Value};
use cranelift_frontend::FunctionBuilder;
use normjit_ir::{Binary, Cmp, DType, Reduce, Unary, ValueType};
use normjit_lower::vmath;
use normjit_lower::{Fused, LOp};

/// Lane width of an emitted operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum W {
    /// One f32.
    S,
    /// Four f32 lanes.
    V,
}

impl W {
    /// The float type.
    pub fn f32(self) -> Type {
        match self {
            W::S => types::F32,
            W::V => types::F32X4,
        }
    }

    /// The 32-bit integer type of the same lanes.
    pub fn i32(self) -> Type {
        match self {
            W::S => types::I32,
            W::V => types::I32X4,
        }
    }
}

/// Imported scalar math functions.
#[derive(Clone, Copy)]
pub struct Libm {
    /// `powf`
    pub powf: FuncRef,
    /// f64 `pow`, for per-call scalars.
    pub pow: FuncRef,
    /// f64 `exp`.
    pub exp: FuncRef,
    /// f64 `log`.
    pub log: FuncRef,
    /// f64 `tanh`.
    pub tanh: FuncRef,
    /// f64 `sigmoid` (`normjit_ir::math`).
    pub sigmoid: FuncRef,
    /// f64 `erf` (`normjit_ir::math`).
    pub erf: FuncRef,
}

/// A per-call scalar in f64 (masks as i8), from its operands' f64 values:
/// the loop-IR interpreter's `eval64`, operation for operation.
pub fn compute64(b: &mut FunctionBuilder, libm: &Libm, op: &LOp, a: &[Value], params: Value) -> Value {
    let call = |b: &mut FunctionBuilder, f: FuncRef, args: &[Value]| {
        let c = b.ins().call(f, args);
        b.inst_results(c)[0]
    };
    let pick64 = |b: &mut FunctionBuilder, max: bool, x: Value, y: Value| {
        let cc = if max { FloatCC::GreaterThan } else { FloatCC::LessThan };
        let c = b.ins().fcmp(cc, x, y);
        let r = b.ins().select(c, x, y);
        let eq = b.ins().fcmp(FloatCC::Equal, x, y);
        let (xi, yi) =
            (b.ins().bitcast(types::I64, MemFlagsData::new(), x), b.ins().bitcast(types::I64, MemFlagsData::new(), y));
        let zi = if max { b.ins().band(xi, yi) } else { b.ins().bor(xi, yi) };
        let z = b.ins().bitcast(types::F64, MemFlagsData::new(), zi);
        let r = b.ins().select(eq, z, r);
        let uno = b.ins().fcmp(FloatCC::Unordered, x, y);
        let nan = b.ins().f64const(f64::NAN);
        b.ins().select(uno, nan, r)
    };
    match *op {
        LOp::Const(c) => b.ins().f64const(c),
        LOp::Param(pid) => {
            b.ins().load(types::F64, MemFlagsData::new().with_notrap(), params, (pid.index() * 8) as i32)
        }
        LOp::Unary(u, _) => {
            let x = a[0];
            match u {
                Unary::Neg => b.ins().fneg(x),
                Unary::Abs => b.ins().fabs(x),
                Unary::Sqrt => b.ins().sqrt(x),
                Unary::Rsqrt => {
                    let r = b.ins().sqrt(x);
                    let one = b.ins().f64const(1.0);
                    b.ins().fdiv(one, r)
                }
                Unary::Recip => {
                    let one = b.ins().f64const(1.0);
                    b.ins().fdiv(one, x)
                }
                Unary::Sign => {
                    let (zero, one, mone) = (b.ins().f64const(0.0), b.ins().f64const(1.0), b.ins().f64const(-1.0));
                    let gt = b.ins().fcmp(FloatCC::GreaterThan, x, zero);
                    let lt = b.ins().fcmp(FloatCC::LessThan, x, zero);
                    let neg = b.ins().select(lt, mone, zero);
                    let r = b.ins().select(gt, one, neg);
                    let nan = b.ins().fcmp(FloatCC::Unordered, x, x);
                    b.ins().select(nan, x, r)
                }
                Unary::Exp => call(b, libm.exp, &[x]),
                Unary::Log => call(b, libm.log, &[x]),
                Unary::Tanh => call(b, libm.tanh, &[x]),
                Unary::Sigmoid => call(b, libm.sigmoid, &[x]),
                Unary::Erf => call(b, libm.erf, &[x]),
            }
        }
        LOp::Binary(op, ..) => {
            let (x, y) = (a[0], a[1]);
            match op {
                Binary::Add => b.ins().fadd(x, y),
                Binary::Sub => b.ins().fsub(x, y),
                Binary::Mul => b.ins().fmul(x, y),
                Binary::Div => b.ins().fdiv(x, y),
                Binary::Pow => call(b, libm.pow, &[x, y]),
                Binary::Min => pick64(b, false, x, y),
                Binary::Max => pick64(b, true, x, y),
            }
        }
        LOp::Fma(f, ..) => fused(b, f, a),
        LOp::Compare(c, ..) => b.ins().fcmp(float_cc(c), a[0], a[1]),
        LOp::Select(..) => b.ins().select(a[0], a[1], a[2]),
        LOp::Count(_)
        | LOp::Load(_)
        | LOp::Pivot(..)
        | LOp::Reduced(_)
        | LOp::Uniform(..)
        | LOp::StochasticRound(..) => {
            unreachable!("counts, addressed and random operations are emitted by the caller")
        }
    }
}

fn float_cc(c: Cmp) -> FloatCC {
    match c {
        Cmp::Lt => FloatCC::LessThan,
        Cmp::Le => FloatCC::LessThanOrEqual,
        Cmp::Gt => FloatCC::GreaterThan,
        Cmp::Ge => FloatCC::GreaterThanOrEqual,
        Cmp::Eq => FloatCC::Equal,
        Cmp::Ne => FloatCC::NotEqual,
    }
}

fn fconst(b: &mut FunctionBuilder, w: W, x: f32) -> Value {
    let c = b.ins().f32const(x);
    match w {
        W::S => c,
        W::V => b.ins().splat(types::F32X4, c),
    }
}

/// A float vector view of a comparison mask (lanes all-ones or zero).
fn mask_f(b: &mut FunctionBuilder, m: Value) -> Value {
    b.ins().bitcast(types::F32X4, MemFlagsData::new(), m)
}

/// `c ? x : y` for a mask `c` of width `w`.
fn pick(b: &mut FunctionBuilder, w: W, c: Value, x: Value, y: Value) -> Value {
    match w {
        W::S => b.ins().select(c, x, y),
        W::V => {
            let m = mask_f(b, c);
            b.ins().bitselect(m, x, y)
        }
    }
}

/// `min`/`max` of the loop IR.
fn minmax(b: &mut FunctionBuilder, w: W, max: bool, x: Value, y: Value) -> Value {
    // `x < y ? x : y` (`y < x ? x : y`): on vectors, exactly the pattern
    // Cranelift turns into one `vminps` (`vmaxps`), which returns `y` when
    // either is NaN: right when `y` is NaN, so only a NaN `x` needs fixing,
    // by returning `x` itself (one compare and one blend, no NaN constant;
    // which NaN comes out is not specified, only that one does). prox_l1
    // in cache went from 81.3 to 76.6 µs.
    let r = minmax_bare(b, w, max, x, y);
    let x_nan = b.ins().fcmp(FloatCC::Unordered, x, x);
    pick(b, w, x_nan, x, r)
}

/// `min`/`max` of the loop IR (`x < y ? x : y`, NaN if either is NaN)
/// where an operand may be a known constant `c` that is not NaN: then
/// `minmax_bare(c, other)` (one `vminps`/`vmaxps`, which returns `other`
/// when it is NaN) is exact for `c` first; for `c` second it differs only
/// where `x == c` and so only in the sign of a zero `c`: exact for `c !=
/// 0`, and for `c = +0` after adding `+0` (which turns the `-0` it may
/// return into `+0` and changes nothing else). Two operations or one for
/// a ReLU-like `max(x, 0)` instead of three.
fn minmax_known(
    b: &mut FunctionBuilder,
    w: W,
    k: Consts,
    max: bool,
    x: Value,
    y: Value,
    known: &[Option<f32>],
) -> Value {
    let konst = |i: usize| known.get(i).copied().flatten().filter(|c| !c.is_nan());
    match (konst(0), konst(1)) {
        (Some(_), _) => minmax_bare(b, w, max, x, y),
        (None, Some(c)) if c != 0.0 => minmax_bare(b, w, max, y, x),
        (None, Some(c)) if c.is_sign_positive() => {
            let r = minmax_bare(b, w, max, y, x);
            let zero = kf32(b, w, k, 0.0);
            b.ins().fadd(r, zero)
        }
        _ => minmax(b, w, max, x, y),
    }
}

/// `x < y ? x : y` (`y < x ? x : y`), `y` if either is NaN: one
/// `vminps` (`vmaxps`) on vectors.
fn minmax_bare(b: &mut FunctionBuilder, w: W, max: bool, x: Value, y: Value) -> Value {
    let c = if max { b.ins().fcmp(FloatCC::LessThan, y, x) } else { b.ins().fcmp(FloatCC::LessThan, x, y) };
    pick(b, w, c, x, y)
}

/// The reduction identity as a scalar.
pub fn identity(b: &mut FunctionBuilder, op: Reduce) -> Value {
    b.ins().f32const(match op {
        Reduce::Sum | Reduce::Mean => 0.0f32,
        Reduce::Max => f32::NEG_INFINITY,
        Reduce::Min => f32::INFINITY,
    })
}

/// `acc ⊕ x` for a reduction.
pub fn combine(b: &mut FunctionBuilder, op: Reduce, w: W, acc: Value, x: Value) -> Value {
    match op {
        Reduce::Sum | Reduce::Mean => b.ins().fadd(acc, x),
        Reduce::Max => minmax(b, w, true, acc, x),
        Reduce::Min => minmax(b, w, false, acc, x),
    }
}

/// Broadcasts a scalar value (f32, or an i8 bool) to 4 lanes.
pub fn splat(b: &mut FunctionBuilder, ty: ValueType, s: Value) -> Value {
    match ty {
        ValueType::F32 => b.ins().splat(types::F32X4, s),
        ValueType::Bool => {
            let ones = b.ins().iconst(types::I32, -1);
            let zero = b.ins().iconst(types::I32, 0);
            let m = b.ins().select(s, ones, zero);
            b.ins().splat(types::I32X4, m)
        }
    }
}

/// `a * b ± c` rounded once ([`normjit_lower::Fused`]): one `vfmadd`,
/// `vfmsub` or `vfnmadd` where the ISA has FMA (Cranelift folds the
/// negations into the instruction); plans contract only for those ISAs, and
/// elsewhere Cranelift calls `fmaf` per lane, with the same result.
fn fused(b: &mut FunctionBuilder, f: Fused, a: &[Value]) -> Value {
    let (x, y, z) = (a[0], a[1], a[2]);
    match f {
        Fused::Add => b.ins().fma(x, y, z),
        Fused::Sub => {
            let z = b.ins().fneg(z);
            b.ins().fma(x, y, z)
        }
        Fused::SubFrom => {
            let x = b.ins().fneg(x);
            b.ins().fma(x, y, z)
        }
    }
}

fn libcall(b: &mut FunctionBuilder, w: W, f: FuncRef, args: &[Value]) -> Value {
    match w {
        W::S => {
            let call = b.ins().call(f, args);
            b.inst_results(call)[0]
        }
        W::V => {
            // No vector libm: one call per lane, written over a copy of the
            // first (vector) argument.
            let mut out = args[0];
            for lane in 0..4u8 {
                let lane_args: Vec<Value> = args.iter().map(|&a| b.ins().extractlane(a, lane)).collect();
                let call = b.ins().call(f, &lane_args);
                let r = b.inst_results(call)[0];
                out = b.ins().insertlane(out, r, lane);
            }
            out
        }
    }
}

/// Computes an elementwise operation (not loads, reductions or random
/// values, which need addresses) on already-computed operands.
///
/// `fma`: the plan's (`Plan::fma`): the vector math fuses its `a * b + c`.
/// `known`: per operand, its value if it is a constant of the plan
/// (`LOp::Const`, in f32), for cheaper `min`/`max`.
#[allow(clippy::too_many_arguments)] // the emitter's context, passed through
pub fn compute(
    b: &mut FunctionBuilder,
    libm: &Libm,
    k: Consts,
    fma: bool,
    op: &LOp,
    w: W,
    a: &[Value],
    known: &[Option<f32>],
) -> Value {
    match *op {
        LOp::Const(c) => fconst(b, w, c as f32),
        LOp::Param(_) => unreachable!("params are per-call scalars, emitted by the caller"),
        LOp::Count(_) => unreachable!("counts need the sizes: the emitter computes them"),
        LOp::Unary(u, _) => {
            let x = a[0];
            match u {
                // The sign bit from the constant table: one `vxorps` with a
                // memory operand (`fneg` builds the mask each time).
                Unary::Neg if w == W::V => {
                    let m = kf32(b, w, k, f32::from_bits(0x8000_0000));
                    b.ins().bxor(x, m)
                }
                Unary::Neg => b.ins().fneg(x),
                // The magnitude mask from the constant table: one `vandps`
                // with a memory operand (`fabs` builds the mask each time).
                Unary::Abs if w == W::V => {
                    let m = kf32(b, w, k, f32::from_bits(0x7FFF_FFFF));
                    b.ins().band(x, m)
                }
                Unary::Abs => b.ins().fabs(x),
                Unary::Sqrt => b.ins().sqrt(x),
                Unary::Rsqrt => {
                    let r = b.ins().sqrt(x);
                    let one = fconst(b, w, 1.0);
                    b.ins().fdiv(one, r)
                }
                Unary::Recip => {
                    let one = fconst(b, w, 1.0);
                    b.ins().fdiv(one, x)
                }
                Unary::Sign if w == W::V => {
                    // 1.0 with x's sign bit where x is not zero (a NaN is
                    // not equal to zero either, and is returned last).
                    let sign_bit = kf32(b, w, k, f32::from_bits(0x8000_0000));
                    let s = b.ins().band(x, sign_bit);
                    let one = kf32(b, w, k, 1.0);
                    let unit = b.ins().bor(s, one);
                    let zero = kf32(b, w, k, 0.0);
                    let nonzero = b.ins().fcmp(FloatCC::NotEqual, x, zero);
                    let nz = mask_f(b, nonzero);
                    let r = b.ins().band(unit, nz);
                    let nan = b.ins().fcmp(FloatCC::Unordered, x, x);
                    pick(b, w, nan, x, r)
                }
                Unary::Sign => {
                    let zero = fconst(b, w, 0.0);
                    let one = fconst(b, w, 1.0);
                    let mone = fconst(b, w, -1.0);
                    let gt = b.ins().fcmp(FloatCC::GreaterThan, x, zero);
                    let lt = b.ins().fcmp(FloatCC::LessThan, x, zero);
                    let neg = pick(b, w, lt, mone, zero);
                    let r = pick(b, w, gt, one, neg);
                    let nan = b.ins().fcmp(FloatCC::Unordered, x, x);
                    pick(b, w, nan, x, r)
                }
                Unary::Exp => vector_math(b, w, k, fma, u, x),
                Unary::Log => vector_math(b, w, k, fma, u, x),
                Unary::Tanh => vector_math(b, w, k, fma, u, x),
                Unary::Sigmoid => vector_math(b, w, k, fma, u, x),
                Unary::Erf => vector_math(b, w, k, fma, u, x),
            }
        }
        LOp::Binary(op, ..) => {
            let (x, y) = (a[0], a[1]);
            match op {
                Binary::Add => b.ins().fadd(x, y),
                Binary::Sub => b.ins().fsub(x, y),
                Binary::Mul => b.ins().fmul(x, y),
                Binary::Div => b.ins().fdiv(x, y),
                Binary::Pow => libcall(b, w, libm.powf, &[x, y]),
                Binary::Min => minmax_known(b, w, k, false, x, y, known),
                Binary::Max => minmax_known(b, w, k, true, x, y, known),
            }
        }
        LOp::Fma(f, ..) => fused(b, f, a),
        LOp::Compare(c, ..) => b.ins().fcmp(float_cc(c), a[0], a[1]),
        LOp::Select(..) => pick(b, w, a[0], a[1], a[2]),
        LOp::Load(_) | LOp::Pivot(..) | LOp::Reduced(_) | LOp::Uniform(..) | LOp::StochasticRound(..) => {
            unreachable!("addressed and random operations are emitted by the caller")
        }
    }
}

/// lowbias32 on i32 or I32X4. The vector multipliers come from the
/// constant table: one load each (the xorshifts use each product twice, so
/// they cannot fold), where a splat of an `iconst` costs three
/// instructions in the loop.
fn hash32(b: &mut FunctionBuilder, w: W, k: Consts, x: Value) -> Value {
    let mul = |b: &mut FunctionBuilder, x: Value, c: u32| {
        let kv = kint(b, w, k, c);
        b.ins().imul(x, kv)
    };
    let xs = |b: &mut FunctionBuilder, x: Value, s: i64| {
        let t = b.ins().ushr_imm_u(x, s);
        b.ins().bxor(x, t)
    };
    let x = xs(b, x, 16);
    let x = mul(b, x, 0x7feb_352d);
    let x = xs(b, x, 15);
    let x = mul(b, x, 0x846c_a68b);
    xs(b, x, 16)
}

fn xor_const(b: &mut FunctionBuilder, x: Value, c: u32) -> Value {
    let k = b.ins().iconst(types::I32, c as i32 as i64);
    b.ins().bxor(x, k)
}

/// The two keys of `uniform` for a seed, for element indices below 2^32
/// (the runtime refuses larger random domains), so they are computed once
/// per call: `k1 = hash32(seed ^ hash32(0 ^ 0x9E3779B9))`,
/// `k2 = hash32(k1 ^ 0x85EBCA6B)` (see `normjit_ir::rng`).
pub fn uniform_keys(b: &mut FunctionBuilder, k: Consts, seed: Value) -> (Value, Value) {
    let h0 = normjit_ir::rng::hash32(0x9E37_79B9);
    let k1 = xor_const(b, seed, h0);
    let k1 = hash32(b, W::S, k, k1);
    let k2 = xor_const(b, k1, 0x85EB_CA6B);
    let k2 = hash32(b, W::S, k, k2);
    (k1, k2)
}

/// The seed of `uniform`'s stream `stream` for the seed param's value
/// `seed` (i32): the seed itself for stream 0; for stream `t + 1` (the
/// stochastic rounding of tensor `t`), `hash32(seed ^ rounding_salt(t))`
/// with the salt a compile-time constant (see `normjit_ir::rng`).
pub fn stream_seed(b: &mut FunctionBuilder, k: Consts, seed: Value, stream: u32) -> Value {
    match stream.checked_sub(1) {
        None => seed,
        Some(t) => {
            let x = xor_const(b, seed, normjit_ir::rng::rounding_salt(t));
            hash32(b, W::S, k, x)
        }
    }
}

/// `uniform`'s 32 random bits for the i32 element index `lo` (one per lane
/// for vectors, with the keys splatted): `hash32(hash32(lo ^ k1) ^ k2)`.
pub fn uniform_hash(b: &mut FunctionBuilder, w: W, k: Consts, k1: Value, k2: Value, lo: Value) -> Value {
    let x = b.ins().bxor(lo, k1);
    let x = hash32(b, w, k, x);
    let x = b.ins().bxor(x, k2);
    hash32(b, w, k, x)
}

/// The uniform value in `[0, 1)` of the random bits `bits`: the top 24
/// scaled by 2^-24 (exact).
pub fn unit_float(b: &mut FunctionBuilder, w: W, bits: Value) -> Value {
    let top = b.ins().ushr_imm_u(bits, 8);
    let f = b.ins().fcvt_from_sint(w.f32(), top);
    let scale = fconst(b, w, 1.0 / 16_777_216.0);
    b.ins().fmul(f, scale)
}

/// Scalar `uniform(seed, index)` for an i64 index below 2^32: the random
/// bits and the value.
pub fn uniform(b: &mut FunctionBuilder, k: Consts, seed: Value, index: Value) -> (Value, Value) {
    let (k1, k2) = uniform_keys(b, k, seed);
    let lo = b.ins().ireduce(types::I32, index);
    let bits = uniform_hash(b, W::S, k, k1, k2, lo);
    (bits, unit_float(b, W::S, bits))
}

// ---------------------------------------------------------------------------
// Storage types.

/// The lane patterns of the vector constants of the conversions below
/// (looked up by value; a pattern missing here becomes a `vconst`).
const TABLE_BITS: [u32; 17] = [
    // f16 load: sign and shifted magnitude, 2^112, magnitude, its limit
    // below exponent 0x1F, the inf/NaN exponent.
    0x8FFF_FFFF,
    0x7780_0000,
    0x0FFF_FFFF,
    0x0F7F_FFFF,
    0x7F80_0000,
    // bf16 store: the kept lsb, the rounding bias.
    1,
    0x7FFF,
    // f16 store: |x|, the rebias plus rounding, inf, 0.5 (its bits too),
    // the subnormal limit, the quiet bit.
    0x7FFF_FFFF,
    0xC800_0FFF,
    0x7C00,
    0x3F00_0000,
    0x387F_FFFF,
    0x200,
    // Stochastic rounding: the kept half; the canonical bf16 NaN (bf16
    // stores too).
    0xFFFF_0000,
    0x7FC0_0000,
    // hash32's multipliers (`uniform`).
    0x7FEB_352D,
    0x846C_A68B,
];

/// `pshufb` masks gathering bytes 0,1 (row 0) or 2,3 (row 1) of each
/// 32-bit lane into the low 8 bytes (the high 8 repeat them).
const PACK_ROWS: [[u32; 4]; 2] =
    [[0x0504_0100, 0x0D0C_0908, 0x0504_0100, 0x0D0C_0908], [0x0706_0302, 0x0F0E_0B0A, 0x0706_0302, 0x0F0E_0B0A]];

/// Where the vector math constants start in the table.
const VMATH_ROW: usize = TABLE_BITS.len() + PACK_ROWS.len();

/// [`TABLE_BITS`] splatted to 16-byte rows, then [`PACK_ROWS`], then the
/// vector math constants (`vmath::CONSTANT_BITS`) splatted; aligned so that
/// SSE too can use a row as a memory operand.
#[repr(C, align(16))]
struct Table([[u32; 4]; VMATH_ROW + vmath::CONSTANT_BITS.len()]);

static TABLE: Table = {
    let mut rows = [[0u32; 4]; VMATH_ROW + vmath::CONSTANT_BITS.len()];
    let mut i = 0;
    while i < TABLE_BITS.len() {
        rows[i] = [TABLE_BITS[i]; 4];
        i += 1;
    }
    rows[i] = PACK_ROWS[0];
    rows[i + 1] = PACK_ROWS[1];
    let mut j = 0;
    while j < vmath::CONSTANT_BITS.len() {
        rows[VMATH_ROW + j] = [vmath::CONSTANT_BITS[j]; 4];
        j += 1;
    }
    Table(rows)
};

/// The symbol under which generated code imports the constant table.
pub const TABLE_SYMBOL: &str = "nj_consts";

/// The address of the constant table, for the JIT's symbol lookup. It is a
/// `static`, so it stays valid as long as the process, which outlives any
/// generated code.
pub fn table_address() -> *const u8 {
    std::ptr::addr_of!(TABLE).cast()
}

/// The address of the conversions' constant table, in a register.
///
/// Cranelift never folds a `vconst` into an operand: each costs a separate
/// load (`movdqu`) per use in the loop, and hoisting them all into
/// registers would spill. A plain load from a table, emitted right before
/// its user, is folded into that user as a memory operand (`vpand xmm,
/// xmm, [table + k]`), so the constant costs no instruction, only this one
/// general register. Cranelift folds a load only where no value it feeds,
/// transitively, is used twice; the sequences below keep their own
/// intermediate values single-use where they can (one mask of the f16
/// store cannot be), but a widened value used twice downstream (`x * x`)
/// un-folds its loads' constants, which then cost one `movdqu` each, as a
/// `vconst` would. (Passing values through block parameters to cut that
/// propagation does not survive Cranelift's constant-phi removal.) The
/// address comes from an imported symbol, not an `iconst`, because
/// Cranelift rematerializes an integer constant (a 10-byte `movabs`) at
/// every use.
#[derive(Clone, Copy)]
pub struct Consts(Value);

impl Consts {
    /// The table's address from its imported symbol `gv` (made in the
    /// entry block, so that it dominates every use; unused, it costs
    /// nothing).
    pub fn new(b: &mut FunctionBuilder, gv: cranelift_codegen::ir::GlobalValue) -> Consts {
        Consts(b.ins().symbol_value(types::I64, gv))
    }
}

/// The 32-bit pattern `c` in every lane of width `w`.
fn kint(b: &mut FunctionBuilder, w: W, k: Consts, c: u32) -> Value {
    match w {
        W::S => b.ins().iconst(types::I32, i64::from(c as i32)),
        W::V => vconst32(b, k, types::I32X4, c),
    }
}

/// The f32 `x` in every lane of width `w`.
fn kf32(b: &mut FunctionBuilder, w: W, k: Consts, x: f32) -> Value {
    match w {
        W::S => b.ins().f32const(x),
        W::V => vconst32(b, k, types::F32X4, x.to_bits()),
    }
}

/// `bits` in every lane of a vector of type `ty`: a load from the table
/// (a `vconst` for a pattern it lacks, which is correct, only slower).
fn vconst32(b: &mut FunctionBuilder, k: Consts, ty: Type, bits: u32) -> Value {
    let row = TABLE_BITS
        .iter()
        .position(|&t| t == bits)
        .or_else(|| vmath::CONSTANT_BITS.iter().position(|&t| t == bits).map(|j| VMATH_ROW + j));
    match row {
        Some(row) => {
            // The table is immutable, 16-byte aligned and always mapped.
            let flags = MemFlagsData::trusted().with_readonly();
            b.ins().load(ty, flags, k.0, (row * 16) as i32)
        }
        None => {
            let data: Vec<u8> = bits.to_le_bytes().repeat(4);
            let c = b.func.dfg.constants.insert(data.into());
            b.ins().vconst(ty, c)
        }
    }
}

/// F32X4 / I32X4 lanes for the vector math sequences: each `Lanes`
/// operation is one instruction, so generated code computes exactly what
/// the loop-IR interpreter computes with `vmath::Scalar`.
struct Vec4<'a, 'b> {
    b: &'a mut FunctionBuilder<'b>,
    /// The constant table: each constant is a load folded into its user.
    k: Consts,
    /// `mul_add` is one `vfmadd` (the plan is for an ISA with FMA).
    fused: bool,
}

impl vmath::Lanes for Vec4<'_, '_> {
    type F = Value;
    type I = Value;
    fn splat(&mut self, c: f32) -> Value {
        kf32(self.b, W::V, self.k, c)
    }
    fn isplat(&mut self, c: i32) -> Value {
        kint(self.b, W::V, self.k, c as u32)
    }
    fn add(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().fadd(a, b)
    }
    fn sub(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().fsub(a, b)
    }
    fn mul(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().fmul(a, b)
    }
    fn mul_add(&mut self, a: Value, b: Value, c: Value) -> Value {
        if self.fused {
            self.b.ins().fma(a, b, c)
        } else {
            let m = self.b.ins().fmul(a, b);
            self.b.ins().fadd(m, c)
        }
    }
    fn div(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().fdiv(a, b)
    }
    fn to_float(&mut self, a: Value) -> Value {
        self.b.ins().fcvt_from_sint(types::F32X4, a)
    }
    fn iadd(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().iadd(a, b)
    }
    fn isub(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().isub(a, b)
    }
    fn shl(&mut self, a: Value, n: u32) -> Value {
        let n = self.b.ins().iconst(types::I32, n as i64);
        self.b.ins().ishl(a, n)
    }
    fn sar(&mut self, a: Value, n: u32) -> Value {
        let n = self.b.ins().iconst(types::I32, n as i64);
        self.b.ins().sshr(a, n)
    }
    fn shr(&mut self, a: Value, n: u32) -> Value {
        let n = self.b.ins().iconst(types::I32, n as i64);
        self.b.ins().ushr(a, n)
    }
    fn and(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().band(a, b)
    }
    fn or(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().bor(a, b)
    }
    fn bits(&mut self, a: Value) -> Value {
        to_int(self.b, W::V, a)
    }
    fn from_bits(&mut self, a: Value) -> Value {
        to_float(self.b, W::V, a)
    }
    fn lt(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().fcmp(FloatCC::LessThan, a, b)
    }
    fn eq(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().fcmp(FloatCC::Equal, a, b)
    }
    fn is_nan(&mut self, a: Value) -> Value {
        self.b.ins().fcmp(FloatCC::Unordered, a, a)
    }
    fn select(&mut self, m: Value, a: Value, b: Value) -> Value {
        pick(self.b, W::V, m, a, b)
    }
}

/// The vector math function `u` (`normjit_lower::vmath`) of `x`: on
/// F32X4 lanes, or for a scalar in lane 0 of a vector (the same bits).
fn vector_math(b: &mut FunctionBuilder, w: W, k: Consts, fused: bool, u: Unary, x: Value) -> Value {
    let f = |l: &mut Vec4<'_, '_>, x: Value| match u {
        Unary::Exp => vmath::exp(l, x),
        Unary::Log => vmath::log(l, x),
        Unary::Tanh => vmath::tanh(l, x),
        Unary::Sigmoid => vmath::sigmoid(l, x),
        Unary::Erf => vmath::erf(l, x),
        _ => unreachable!("{u:?} is not a vector math function"),
    };
    match w {
        W::V => f(&mut Vec4 { b, k, fused }, x),
        W::S => {
            let v = b.ins().splat(types::F32X4, x);
            let r = f(&mut Vec4 { b, k, fused }, v);
            b.ins().extractlane(r, 0)
        }
    }
}

/// The bits of an f32 value (lanes keep their count: no endianness needed).
fn to_int(b: &mut FunctionBuilder, w: W, x: Value) -> Value {
    b.ins().bitcast(w.i32(), MemFlagsData::new(), x)
}

fn to_float(b: &mut FunctionBuilder, w: W, x: Value) -> Value {
    b.ins().bitcast(w.f32(), MemFlagsData::new(), x)
}

/// `m ? x : y` on integer lanes, for a comparison mask `m` (an i8 for
/// scalars; lanes all-ones or zero for vectors, which makes `bitselect` a
/// single blend).
fn isel(b: &mut FunctionBuilder, w: W, m: Value, x: Value, y: Value) -> Value {
    match w {
        W::S => b.ins().select(m, x, y),
        W::V => b.ins().bitselect(m, x, y),
    }
}

/// `m ? k : 0` for a comparison mask `m`.
fn mask_and(b: &mut FunctionBuilder, w: W, k: Consts, m: Value, c: u32) -> Value {
    let kv = kint(b, w, k, c);
    match w {
        W::S => {
            let zero = b.ins().iconst(types::I32, 0);
            b.ins().select(m, kv, zero)
        }
        W::V => b.ins().band(m, kv),
    }
}

/// Loads one element (`W::S`) or four consecutive elements (`W::V`) of
/// storage type `dtype` at `addr + off`, widened exactly to f32 (as
/// `DType::decode`). A narrow vector load reads exactly 8 bytes.
pub fn load(
    b: &mut FunctionBuilder,
    w: W,
    k: Consts,
    dtype: DType,
    flags: MemFlagsData,
    addr: Value,
    off: i32,
) -> Value {
    if !dtype.is_narrow() {
        return b.ins().load(w.f32(), flags, addr, off);
    }
    // The 16-bit patterns, zero-extended to 32-bit lanes: `movzx`, or
    // `pmovzxwd` from memory for vectors.
    let h = match w {
        W::S => b.ins().uload16(types::I32, flags, addr, off),
        W::V => b.ins().uload16x4(flags, addr, off),
    };
    if dtype == DType::F16 {
        return f16_to_f32(b, w, k, h);
    }
    // bf16 is the top half of an f32.
    let x = b.ins().ishl_imm_u(h, 16);
    to_float(b, w, x)
}

/// `normjit_ir::dtype::f16_to_f32` of the zero-extended f16 patterns `h`.
/// With `t = h << 16` (the sign at bit 31), an arithmetic shift right by 3
/// gives `sign` in bits 31..28 over `(h & 0x7FFF) << 13`; masking bits
/// 30..28 leaves the f16 exponent and fraction in an f32 whose exponent is
/// 112 too small, with the sign. Multiplying by 2^112 rebiases it exactly,
/// subnormal f16s included (they are f32 subnormals whose product is a
/// normal f32; this assumes the default MXCSR, no denormals-are-zero, as
/// all f32 arithmetic here does) and the sign carried through (±0 stay
/// ±0). Exponent 0x1F (inf, NaN) came out as exponent 143 with the fraction
/// untouched; OR-ing in 0x7F800000 makes it 0xFF, payload and sign kept.
fn f16_to_f32(b: &mut FunctionBuilder, w: W, k: Consts, h: Value) -> Value {
    let t = b.ins().ishl_imm_u(h, 16);
    let s3 = b.ins().sshr_imm_u(t, 3);
    let m = kint(b, w, k, 0x8FFF_FFFF);
    let x = b.ins().band(s3, m);
    let xf = to_float(b, w, x);
    let scale = kf32(b, w, k, f32::from_bits((127 + 112) << 23));
    let f = b.ins().fmul(xf, scale);
    // The magnitude bits from `s3`, not `x`: each mask then has one user
    // and folds into it.
    let em = kint(b, w, k, 0x0FFF_FFFF);
    let mag = b.ins().band(s3, em);
    let lim = kint(b, w, k, 0x0F7F_FFFF);
    let special = b.ins().icmp(IntCC::SignedGreaterThan, mag, lim);
    let fix = mask_and(b, w, k, special, 0x7F80_0000);
    let fi = to_int(b, w, f);
    let r = b.ins().bor(fi, fix);
    to_float(b, w, r)
}

/// `normjit_ir::dtype::f32_to_bf16` of `x`, in the HIGH 16 bits of each
/// 32-bit lane (the low half is garbage): round to nearest even by adding
/// `0x7FFF` plus the kept lsb (a carry out of the largest finite value
/// gives inf); NaN is `0x7FC0`.
fn bf16_bits_high(b: &mut FunctionBuilder, w: W, k: Consts, x: Value) -> Value {
    let xb = to_int(b, w, x);
    let hi = b.ins().ushr_imm_u(xb, 16);
    let one = kint(b, w, k, 1);
    let lsb = b.ins().band(hi, one);
    let half = kint(b, w, k, 0x7FFF);
    let t = b.ins().iadd(xb, half);
    let t = b.ins().iadd(t, lsb);
    let nan = b.ins().fcmp(FloatCC::Unordered, x, x);
    let qnan = kint(b, w, k, 0x7FC0_0000);
    isel(b, w, nan, qnan, t)
}

/// `normjit_ir::dtype::f32_to_f16` of `x`, in the low 16 bits of each
/// 32-bit lane, all three cases computed and selected:
/// - normal: `(a + 0xC8000FFF + odd) >> 13` on the magnitude bits `a`
///   (wrapping), then at most 0x7C00 (inf). For `a >= 0x47800000`
///   (|x| >= 65536, inf, NaN: up to 0x7FFFFFFF) the wrapped sum is
///   `a - 0x37FFF001 + odd`, in `0x0F800FFF..=0x48000FFF`, so the shifted
///   value is at least 0x7C00 and the minimum makes it inf exactly;
/// - |x| < 2^-14: the bits of `|x| + 0.5` minus those of 0.5 (the FPU's
///   own rounding to the f16 subnormal ulp);
/// - NaN (a > 0x7F800000): inf | 0x200 = 0x7E00, without the sign;
///
/// then the sign OR'ed in.
fn f16_bits(b: &mut FunctionBuilder, w: W, k: Consts, x: Value) -> Value {
    let xb = to_int(b, w, x);
    let abs = kint(b, w, k, 0x7FFF_FFFF);
    let a = b.ins().band(xb, abs);
    let sign = b.ins().bxor(xb, a);
    let odd = b.ins().ushr_imm_u(a, 13);
    let one = kint(b, w, k, 1);
    let odd = b.ins().band(odd, one);
    let bias = kint(b, w, k, 0xC800_0FFF);
    let n = b.ins().iadd(a, bias);
    let n = b.ins().iadd(n, odd);
    let n = b.ins().ushr_imm_u(n, 13);
    let inf16 = kint(b, w, k, 0x7C00);
    let n = b.ins().umin(n, inf16);
    let af = to_float(b, w, a);
    let half = kf32(b, w, k, 0.5);
    let s = b.ins().fadd(af, half);
    let s = to_int(b, w, s);
    let halfbits = kint(b, w, k, 0x3F00_0000);
    let s = b.ins().isub(s, halfbits);
    let lim = kint(b, w, k, 0x387F_FFFF);
    let normal = b.ins().icmp(IntCC::SignedGreaterThan, a, lim);
    let o = isel(b, w, normal, n, s);
    let inf = kint(b, w, k, 0x7F80_0000);
    let nan = b.ins().icmp(IntCC::SignedGreaterThan, a, inf);
    let quiet = mask_and(b, w, k, nan, 0x200);
    let o = b.ins().bor(o, quiet);
    // The sign, except on NaN (the canonical NaN is positive).
    let sh = b.ins().ushr_imm_u(sign, 16);
    let zero = kint(b, w, k, 0);
    let sh = isel(b, w, nan, zero, sh);
    b.ins().bor(o, sh)
}

/// Stores `x` (f32 lanes) to one element or four consecutive elements of
/// storage type `dtype` at `addr + off`, rounded as `DType::encode`. With
/// `exact`, `x` is known to be a bf16 value (or the canonical NaN), as
/// stochastic rounding leaves it, so a bf16 store only drops the low half.
/// A narrow vector store writes exactly 8 bytes: the four 16-bit results
/// gathered into the low 8 bytes by one `pshufb` (its mask a folded
/// constant), stored from lane 0 of an F64X2 view (`movsd`).
#[allow(clippy::too_many_arguments)]
pub fn store(
    b: &mut FunctionBuilder,
    w: W,
    k: Consts,
    dtype: DType,
    flags: MemFlagsData,
    x: Value,
    addr: Value,
    off: i32,
    exact: bool,
) {
    // The 32-bit lanes holding the results, and which half holds them.
    let (bits, high) = match dtype {
        DType::BF16 if exact => (to_int(b, w, x), true),
        DType::BF16 => (bf16_bits_high(b, w, k, x), true),
        DType::F16 => (f16_bits(b, w, k, x), false),
        _ => {
            b.ins().store(flags, x, addr, off);
            return;
        }
    };
    match w {
        W::S => {
            let bits = if high { b.ins().ushr_imm_u(bits, 16) } else { bits };
            b.ins().istore16(flags, bits, addr, off);
        }
        W::V => {
            // Bytes 0,1 (or 2,3) of each lane to the low 8 bytes; the high
            // 8 repeat them and are not stored. The lane count changes,
            // so the bitcasts name their byte order.
            // (`x86_pshufb`, not `shuffle(v, v)`: a value used twice would
            // keep the constants of its computation out of the memory
            // operands, see `Consts`.)
            let le = MemFlagsData::new().with_endianness(Endianness::Little);
            let bytes = b.ins().bitcast(types::I8X16, le, bits);
            let row = TABLE_BITS.len() + usize::from(high);
            let mask = b.ins().load(types::I8X16, MemFlagsData::trusted().with_readonly(), k.0, (row * 16) as i32);
            let packed = b.ins().x86_pshufb(bytes, mask);
            let d = b.ins().bitcast(types::F64X2, le, packed);
            let lo = b.ins().extractlane(d, 0);
            b.ins().store(flags, lo, addr, off);
        }
    }
}

/// `normjit_ir::dtype::stochastic_bf16_f32(x, r)` for 32-bit lanes `r` of
/// random bits in `0..65536`: `(bits(x) + r) & 0xFFFF0000`, NaN
/// `0x7FC00000`.
pub fn stochastic_bf16(b: &mut FunctionBuilder, w: W, k: Consts, x: Value, r: Value) -> Value {
    let xb = to_int(b, w, x);
    let t = b.ins().iadd(xb, r);
    let hi = kint(b, w, k, 0xFFFF_0000);
    let t = b.ins().band(t, hi);
    let nan = b.ins().fcmp(FloatCC::Unordered, x, x);
    let qnan = kint(b, w, k, 0x7FC0_0000);
    let t = isel(b, w, nan, qnan, t);
    to_float(b, w, t)
}

/// The 16 random bits stochastic rounding uses from a uniform value:
/// `floor(u * 2^16)`, from `uniform`'s random bits when known (their top
/// 16, which is exactly that for `u = (bits >> 8) * 2^-24`), else from `u`
/// itself as the loop IR computes it (`(u * 65536) as u32 & 0xFFFF`,
/// saturating like Rust's `as`).
pub fn rounding_bits(b: &mut FunctionBuilder, w: W, k: Consts, bits: Option<Value>, u: Value) -> Value {
    if let Some(bits) = bits {
        return b.ins().ushr_imm_u(bits, 16);
    }
    let scale = fconst(b, w, 65536.0);
    let s = b.ins().fmul(u, scale);
    let r = b.ins().fcvt_to_uint_sat(w.i32(), s);
    let m = kint(b, w, k, 0xFFFF);
    b.ins().band(r, m)
}
