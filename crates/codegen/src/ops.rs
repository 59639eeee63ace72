//! One lowering per (operation, lane width): the arithmetic of the loop IR
//! in Cranelift instructions, scalar (`W::S`, f32) or 4-wide (`W::V`,
//! F32X4). Every rule reproduces the loop-IR interpreter's semantics bit
//! for bit: no contraction into FMA, `rsqrt` as a divide by a correctly
//! rounded root, NaN-propagating `min`/`max` that otherwise return
//! `a < b ? a : b`, and the libm calls the interpreter makes for `exp`,
//! `log` and `pow`.

use cranelift_codegen::ir::condcodes::FloatCC;
use cranelift_codegen::ir::{types, FuncRef, InstBuilder, MemFlagsData, Type, Value};
use cranelift_frontend::FunctionBuilder;
use normjit_ir::{Binary, Cmp, Reduce, Unary, ValueType};
use normjit_lower::LOp;

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
}

/// Imported scalar math functions.
#[derive(Clone, Copy)]
pub struct Libm {
    /// `powf`
    pub powf: FuncRef,
    /// `expf`
    pub expf: FuncRef,
    /// `logf`
    pub logf: FuncRef,
    /// f64 `pow`, for per-call scalars.
    pub pow: FuncRef,
    /// f64 `exp`.
    pub exp: FuncRef,
    /// f64 `log`.
    pub log: FuncRef,
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
        LOp::Compare(c, ..) => b.ins().fcmp(float_cc(c), a[0], a[1]),
        LOp::Select(..) => b.ins().select(a[0], a[1], a[2]),
        LOp::Count(_) | LOp::Load(_) | LOp::Reduced(_) | LOp::Uniform(..) => {
            unreachable!("counts and addressed operations are emitted by the caller")
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

/// NaN if either operand is NaN, else `r`.
fn nan_if_unordered(b: &mut FunctionBuilder, w: W, x: Value, y: Value, r: Value) -> Value {
    let uno = b.ins().fcmp(FloatCC::Unordered, x, y);
    let nan = fconst(b, w, f32::NAN);
    pick(b, w, uno, nan, r)
}

/// `min`/`max` of the loop IR.
fn minmax(b: &mut FunctionBuilder, w: W, max: bool, x: Value, y: Value) -> Value {
    let cc = if max { FloatCC::GreaterThan } else { FloatCC::LessThan };
    let c = b.ins().fcmp(cc, x, y);
    let r = pick(b, w, c, x, y);
    nan_if_unordered(b, w, x, y, r)
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
pub fn compute(b: &mut FunctionBuilder, libm: &Libm, op: &LOp, w: W, a: &[Value]) -> Value {
    match *op {
        LOp::Const(c) => fconst(b, w, c as f32),
        LOp::Param(_) => unreachable!("params are per-call scalars, emitted by the caller"),
        LOp::Count(_) => unreachable!("counts need the sizes: the emitter computes them"),
        LOp::Unary(u, _) => {
            let x = a[0];
            match u {
                Unary::Neg => b.ins().fneg(x),
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
                Unary::Exp => libcall(b, w, libm.expf, &[x]),
                Unary::Log => libcall(b, w, libm.logf, &[x]),
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
                Binary::Min => minmax(b, w, false, x, y),
                Binary::Max => minmax(b, w, true, x, y),
            }
        }
        LOp::Compare(c, ..) => b.ins().fcmp(float_cc(c), a[0], a[1]),
        LOp::Select(..) => pick(b, w, a[0], a[1], a[2]),
        LOp::Load(_) | LOp::Reduced(_) | LOp::Uniform(..) => {
            unreachable!("addressed operations are emitted by the caller")
        }
    }
}

/// lowbias32 on i32 or I32X4.
fn hash32(b: &mut FunctionBuilder, w: W, x: Value) -> Value {
    let mul = |b: &mut FunctionBuilder, x: Value, c: u32| {
        let k = b.ins().iconst(types::I32, c as i32 as i64);
        let k = match w {
            W::S => k,
            W::V => b.ins().splat(types::I32X4, k),
        };
        b.ins().imul(x, k)
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
pub fn uniform_keys(b: &mut FunctionBuilder, seed: Value) -> (Value, Value) {
    let h0 = normjit_ir::rng::hash32(0x9E37_79B9);
    let k1 = xor_const(b, seed, h0);
    let k1 = hash32(b, W::S, k1);
    let k2 = xor_const(b, k1, 0x85EB_CA6B);
    let k2 = hash32(b, W::S, k2);
    (k1, k2)
}

/// `uniform` for the i32 element index `lo` (one per lane for vectors,
/// with keys splatted for vectors): `hash32(hash32(lo ^ k1) ^ k2) >> 8`,
/// scaled to `[0, 1)`.
pub fn uniform_bits(b: &mut FunctionBuilder, w: W, k1: Value, k2: Value, lo: Value) -> Value {
    let x = b.ins().bxor(lo, k1);
    let x = hash32(b, w, x);
    let x = b.ins().bxor(x, k2);
    let bits = hash32(b, w, x);
    let top = b.ins().ushr_imm_u(bits, 8);
    let f = match w {
        W::S => b.ins().fcvt_from_sint(types::F32, top),
        W::V => b.ins().fcvt_from_sint(types::F32X4, top),
    };
    let scale = fconst(b, w, 1.0 / 16_777_216.0);
    b.ins().fmul(f, scale)
}

/// Scalar `uniform(seed, index)` for an i64 index below 2^32.
pub fn uniform(b: &mut FunctionBuilder, seed: Value, index: Value) -> Value {
    let (k1, k2) = uniform_keys(b, seed);
    let lo = b.ins().ireduce(types::I32, index);
    uniform_bits(b, W::S, k1, k2, lo)
}
