//! Vector math: the definition of `exp`, `log`, `tanh`, `sigmoid` and
//! `erf` on f32 lanes, as every plan engine computes them.
//!
//! Each function is one fixed, branch-free sequence of lane operations
//! (range reduction, a polynomial, rescaling, and selects for the special
//! cases), written once against the [`Lanes`] trait. The loop-IR
//! interpreter runs it on scalar lanes ([`Scalar`]); code generation
//! implements [`Lanes`] with F32X4 instructions. Both therefore compute
//! the same bits by construction, for vectors and scalar tails alike. Only
//! IEEE operations are used (no estimates). Each `a * b + c` of a
//! polynomial or a range reduction is a [`Lanes::mul_add`]: fused (one
//! rounding) in plans for ISAs with FMA, a product and a sum otherwise, so
//! a function has two variants, each exact across engines; the bounds
//! below hold for both.
//!
//! Accuracy, measured against the correctly rounded value over every f32
//! input (`cargo test --release -p normjit-lower vmath -- --ignored`), and
//! enforced on a dense sweep plus the edges by the unit tests below:
//! see [`MAX_ULP`]. Special cases follow IEEE and C99: NaN in gives NaN
//! out, `exp` overflows to `+inf` and underflows through the subnormals
//! to `+0`, `log` of a negative number is NaN, `log(±0) = -inf`,
//! `tanh(±inf) = ±1`, `sigmoid(-inf) = 0`, `erf(±inf) = ±1`.
//!
//! Coefficients are least-squares minimax fits (in the relative or the
//! absolute error, as noted) made with 40-digit arithmetic, rounded to f32.

#![allow(clippy::excessive_precision)] // coefficients as printed by the fit

/// Operations on a vector of f32 lanes (`F`) and of i32 lanes (`I`; also
/// masks: all ones for true, zero for false).
pub trait Lanes {
    /// f32 lanes.
    type F: Copy;
    /// i32 lanes.
    type I: Copy;
    /// Every lane `c`.
    fn splat(&mut self, c: f32) -> Self::F;
    /// Every lane `c`.
    fn isplat(&mut self, c: i32) -> Self::I;
    /// `a + b`.
    fn add(&mut self, a: Self::F, b: Self::F) -> Self::F;
    /// `a - b`.
    fn sub(&mut self, a: Self::F, b: Self::F) -> Self::F;
    /// `a * b`.
    fn mul(&mut self, a: Self::F, b: Self::F) -> Self::F;
    /// `a * b + c`: fused (one rounding) when the lanes are, else `a * b`
    /// rounded, then the sum.
    fn mul_add(&mut self, a: Self::F, b: Self::F, c: Self::F) -> Self::F;
    /// `a / b`.
    fn div(&mut self, a: Self::F, b: Self::F) -> Self::F;
    /// An i32 converted to f32 (exact below 2^24).
    fn to_float(&mut self, a: Self::I) -> Self::F;
    /// `a + b` (wrapping).
    fn iadd(&mut self, a: Self::I, b: Self::I) -> Self::I;
    /// `a - b` (wrapping).
    fn isub(&mut self, a: Self::I, b: Self::I) -> Self::I;
    /// `a << n`.
    fn shl(&mut self, a: Self::I, n: u32) -> Self::I;
    /// `a >> n`, arithmetic.
    fn sar(&mut self, a: Self::I, n: u32) -> Self::I;
    /// `a >> n`, logical.
    fn shr(&mut self, a: Self::I, n: u32) -> Self::I;
    /// `a & b`.
    fn and(&mut self, a: Self::I, b: Self::I) -> Self::I;
    /// `a | b`.
    fn or(&mut self, a: Self::I, b: Self::I) -> Self::I;
    /// The bits of `a`.
    fn bits(&mut self, a: Self::F) -> Self::I;
    /// The f32 with bits `a`.
    fn from_bits(&mut self, a: Self::I) -> Self::F;
    /// `a < b` (false if either is NaN).
    fn lt(&mut self, a: Self::F, b: Self::F) -> Self::I;
    /// `a == b` (false if either is NaN).
    fn eq(&mut self, a: Self::F, b: Self::F) -> Self::I;
    /// `a` is NaN.
    fn is_nan(&mut self, a: Self::F) -> Self::I;
    /// `m ? a : b` per lane.
    fn select(&mut self, m: Self::I, a: Self::F, b: Self::F) -> Self::F;
}

/// The scalar lanes of the loop-IR interpreter; `fused` as the plan's
/// [`crate::Plan::fma`].
pub struct Scalar {
    /// `mul_add` rounds once.
    pub fused: bool,
}

impl Lanes for Scalar {
    type F = f32;
    type I = i32;
    fn splat(&mut self, c: f32) -> f32 {
        c
    }
    fn isplat(&mut self, c: i32) -> i32 {
        c
    }
    fn add(&mut self, a: f32, b: f32) -> f32 {
        a + b
    }
    fn sub(&mut self, a: f32, b: f32) -> f32 {
        a - b
    }
    fn mul(&mut self, a: f32, b: f32) -> f32 {
        a * b
    }
    fn mul_add(&mut self, a: f32, b: f32, c: f32) -> f32 {
        if self.fused {
            a.mul_add(b, c)
        } else {
            a * b + c
        }
    }
    fn div(&mut self, a: f32, b: f32) -> f32 {
        a / b
    }
    fn to_float(&mut self, a: i32) -> f32 {
        a as f32
    }
    fn iadd(&mut self, a: i32, b: i32) -> i32 {
        a.wrapping_add(b)
    }
    fn isub(&mut self, a: i32, b: i32) -> i32 {
        a.wrapping_sub(b)
    }
    fn shl(&mut self, a: i32, n: u32) -> i32 {
        a << n
    }
    fn sar(&mut self, a: i32, n: u32) -> i32 {
        a >> n
    }
    fn shr(&mut self, a: i32, n: u32) -> i32 {
        ((a as u32) >> n) as i32
    }
    fn and(&mut self, a: i32, b: i32) -> i32 {
        a & b
    }
    fn or(&mut self, a: i32, b: i32) -> i32 {
        a | b
    }
    fn bits(&mut self, a: f32) -> i32 {
        a.to_bits() as i32
    }
    fn from_bits(&mut self, a: i32) -> f32 {
        f32::from_bits(a as u32)
    }
    fn lt(&mut self, a: f32, b: f32) -> i32 {
        -i32::from(a < b)
    }
    fn eq(&mut self, a: f32, b: f32) -> i32 {
        -i32::from(a == b)
    }
    fn is_nan(&mut self, a: f32) -> i32 {
        -i32::from(a.is_nan())
    }
    fn select(&mut self, m: i32, a: f32, b: f32) -> f32 {
        if m != 0 {
            a
        } else {
            b
        }
    }
}

/// The bound on each function's error in units in the last place, over
/// every f32 input, which the unit tests enforce on a sweep. Measured over
/// all 2^32 inputs (2026-11-29), unfused: exp 0.957 (at -59.90), log 0.856
/// (at 0.7070), tanh 1.330 (at 0.6283), sigmoid 2.825 (at -1.954), erf
/// 2.762 (at 0.4769); fused: exp 0.987 (at -59.94), log 0.852 (at 0.7068),
/// tanh 1.330, sigmoid 2.825, erf 2.762 (at the same inputs as unfused).
pub const MAX_ULP: [(&str, f64); 5] = [("exp", 1.0), ("log", 1.0), ("tanh", 2.0), ("sigmoid", 3.0), ("erf", 3.0)];

/// Every constant the functions use (as bits), which code generation
/// keeps in its constant table.
pub const CONSTANT_BITS: [u32; 63] = [
    0x0000_0000,
    0x0000_007F,
    0x0000_00FF,
    0x007F_FFFF,
    0x0080_0000,
    0x38EC_139F,
    0x3950_BEF9,
    0x395E_8083,
    0x3984_B1C6,
    0x3AB6_A18C,
    0x3B16_AAF6,
    0x3B83_F4E5,
    0x3BAB_1479,
    0x3C08_8856,
    0x3CB2_5925,
    0x3D1B_A5B5,
    0x3D24_7E83,
    0x3D2A_AA75,
    0x3D96_2B13,
    0x3DE7_1784,
    0x3DEE_4738,
    0x3E08_8876,
    0x3E11_EE8C,
    0x3E2A_AAAB,
    0x3E4C_CE9B,
    0x3EAA_AAAA,
    0x3EF6_3DB8,
    0x3F00_0000,
    0x3F0F_2F52,
    0x3F20_0000,
    0x3F31_8000,
    0x3F80_0000,
    0x3F90_6EBB,
    0x3FB5_04F3,
    0x3FB8_AA3B,
    0x4000_0000,
    0x4080_0000,
    0x42B2_0000,
    0x4B00_0000,
    0x4B40_0000,
    0x7F80_0000,
    0x7FC0_0000,
    0x7FFF_FFFF,
    0x8000_0000,
    0xB721_C2BA,
    0xB95E_8083,
    0xBA5E_5F5E,
    0xBC08_CEC6,
    0xBC3A_5D59,
    0xBCDC_14D4,
    0xBD5D_04B2,
    0xBDEE_CB62,
    0xBDFD_E273,
    0xBE2A_B12E,
    0xBE60_53C2,
    0xBE7F_FFF3,
    0xBEAA_AAAB,
    0xBEC0_93A3,
    0xBEED_E8DC,
    0xBF31_8000,
    0xC1B8_0000,
    0xC2D0_0000,
    0xFF80_0000,
];

/// `c0 + x * (c1 + x * (...))`, Horner's rule.
fn poly<L: Lanes>(l: &mut L, x: L::F, c: &[f32]) -> L::F {
    let mut acc = l.splat(c[c.len() - 1]);
    for &k in c[..c.len() - 1].iter().rev() {
        let k = l.splat(k);
        acc = l.mul_add(acc, x, k);
    }
    acc
}

/// `|a|`, by clearing the sign bit.
fn abs<L: Lanes>(l: &mut L, a: L::F) -> L::F {
    let b = l.bits(a);
    let m = l.isplat(0x7fff_ffff);
    let r = l.and(b, m);
    l.from_bits(r)
}

/// `|a|` with the sign of `s`.
fn with_sign_of<L: Lanes>(l: &mut L, a: L::F, s: L::F) -> L::F {
    let sb = l.bits(s);
    let sign = l.isplat(i32::MIN);
    let sb = l.and(sb, sign);
    let ab = l.bits(a);
    let r = l.or(ab, sb);
    l.from_bits(r)
}

/// `x < c ? a : b`-style clamps: `x` below `lo` becomes `lo`, above `hi`
/// becomes `hi`; NaN stays NaN.
fn clamp<L: Lanes>(l: &mut L, x: L::F, lo: f32, hi: f32) -> L::F {
    let (lo, hi) = (l.splat(lo), l.splat(hi));
    let below = l.lt(x, lo);
    let x = l.select(below, lo, x);
    let above = l.lt(hi, x);
    l.select(above, hi, x)
}

/// `2^n` for an integer `n` in -126..=127, as an f32.
fn pow2<L: Lanes>(l: &mut L, n: L::I) -> L::F {
    let bias = l.isplat(127);
    let e = l.iadd(n, bias);
    let b = l.shl(e, 23);
    l.from_bits(b)
}

/// `ln 2` in two parts: `N * LN2_HI` is exact for |N| < 2^9.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;

/// `e^x`: `x = n ln2 + r` with `|r| <= ln2 / 2`, `e^r` by a degree-7
/// polynomial, times `2^n` in two steps (so results underflow through the
/// subnormals with one rounding).
pub fn exp<L: Lanes>(l: &mut L, x: L::F) -> L::F {
    // e^x overflows above 88.73 and is below half the least subnormal
    // under -103.98: clamping there changes no result and keeps n in range.
    let xc = clamp(l, x, -104.0, 89.0);
    let log2e = l.splat(std::f32::consts::LOG2_E);
    let t = l.mul(xc, log2e);
    // n = t rounded to the nearest integer (ties to even), by adding
    // 1.5 * 2^23: the sum's last bit is the units place (|t| < 2^22); the
    // sum's low bits minus the magic number's are n as an integer.
    let magic = l.splat(12_582_912.0);
    let tm = l.add(t, magic);
    let n = l.sub(tm, magic);
    let (tb, mb) = (l.bits(tm), l.bits(magic));
    let ni = l.isub(tb, mb);
    // r = x - n ln2, as x - n hi - n lo.
    let mhi = l.splat(-LN2_HI);
    let mlo = l.splat(-LN2_LO);
    let r = l.mul_add(n, mhi, xc);
    let r = l.mul_add(n, mlo, r);
    // e^r = 1 + r + r^2 q(r), q fitted in the absolute error on [-ln2/2, ln2/2].
    let q = poly(
        l,
        r,
        &[
            0.5,
            0.1666666716337204,
            0.04166646674275398,
            0.00833328627049923,
            0.0013933642767369747,
            0.00019907568639609963,
        ],
    );
    let r2 = l.mul(r, r);
    let rr = l.mul_add(r2, q, r);
    let one = l.splat(1.0);
    let p = l.add(one, rr);
    // 2^n = 2^n1 * 2^n2, n1 = floor(n / 2): both factors are normal.
    let n1 = l.sar(ni, 1);
    let n2 = l.isub(ni, n1);
    let s1 = pow2(l, n1);
    let s2 = pow2(l, n2);
    let y = l.mul(p, s1);
    let y = l.mul(y, s2);
    let nan = l.is_nan(x);
    l.select(nan, x, y)
}

/// `ln x`: `x = m 2^e` with `m` in `[sqrt(1/2), sqrt(2))`, `ln m = f - f^2/2
/// + f^3 Q(f)` with `f = m - 1` (exact), plus `e ln2` in two parts.
pub fn log<L: Lanes>(l: &mut L, x: L::F) -> L::F {
    // Subnormals: scale into the normal range first.
    let tiny = l.splat(f32::MIN_POSITIVE);
    let sub = l.lt(x, tiny);
    let big = l.splat(8_388_608.0); // 2^23
    let xs_scaled = l.mul(x, big);
    let xs = l.select(sub, xs_scaled, x);
    let m23 = l.splat(-23.0);
    let z = l.splat(0.0);
    let eadj = l.select(sub, m23, z);
    let b = l.bits(xs);
    let eb = l.shr(b, 23);
    let ff = l.isplat(0xff);
    let eb = l.and(eb, ff);
    let bias = l.isplat(127);
    let e = l.isub(eb, bias);
    let mant = l.isplat(0x007f_ffff);
    let mb = l.and(b, mant);
    let oneb = l.isplat(0x3f80_0000);
    let mb = l.or(mb, oneb);
    let m = l.from_bits(mb); // [1, 2)
    let sqrt2 = l.splat(std::f32::consts::SQRT_2);
    let over = l.lt(sqrt2, m);
    let half = l.splat(0.5);
    let mh = l.mul(m, half);
    let m = l.select(over, mh, m);
    let one = l.splat(1.0);
    let ef = l.to_float(e);
    let ef = l.add(ef, eadj);
    let ef1 = l.add(ef, one);
    let ef = l.select(over, ef1, ef);
    let f = l.sub(m, one);
    // Q fitted in the absolute error of f^3 Q(f) on [sqrt(1/2) - 1, sqrt(2) - 1].
    let q = poly(
        l,
        f,
        &[
            0.3333333134651184,
            -0.24999980628490448,
            0.2000068873167038,
            -0.16669151186943054,
            0.1425115466117859,
            -0.12396707385778427,
            0.11634677648544312,
            -0.11659885942935944,
            0.07332434505224228,
        ],
    );
    let f2 = l.mul(f, f);
    let f3 = l.mul(f2, f);
    let y = l.mul(f3, q);
    let hf2 = l.mul(half, f2);
    let lo = l.splat(LN2_LO);
    let t = l.mul_add(ef, lo, y);
    let t = l.sub(t, hf2);
    let t = l.add(t, f);
    let hi = l.splat(LN2_HI);
    let r = l.mul_add(ef, hi, t);
    // Special cases, last to first in priority.
    let inf = l.splat(f32::INFINITY);
    let is_inf = l.eq(x, inf);
    let r = l.select(is_inf, inf, r);
    let is_zero = l.eq(x, z);
    let ninf = l.splat(f32::NEG_INFINITY);
    let r = l.select(is_zero, ninf, r);
    let neg = l.lt(x, z);
    let nan = l.splat(f32::NAN);
    let r = l.select(neg, nan, r);
    let is_nan = l.is_nan(x);
    l.select(is_nan, x, r)
}

/// `tanh x`: an odd polynomial below 0.625, else `1 - 2 / (e^{2|x|} + 1)`
/// with the sign of `x`.
pub fn tanh<L: Lanes>(l: &mut L, x: L::F) -> L::F {
    let a = abs(l, x);
    let small_lim = l.splat(0.625);
    let small = l.lt(a, small_lim);
    // tanh x = x + x^3 P(x^2), P fitted in the relative error on [0, 0.625].
    let x2 = l.mul(x, x);
    let p = poly(
        l,
        x2,
        &[
            -0.3333333432674408,
            0.13333305716514587,
            -0.05395955592393875,
            0.0217710230499506,
            -0.008350079879164696,
            0.0022990084253251553,
        ],
    );
    let x3 = l.mul(x2, x);
    let ys = l.mul_add(x3, p, x);
    // (-0 + +0 is +0: give the small branch the sign of x.)
    let ys = with_sign_of(l, ys, x);
    let two = l.splat(2.0);
    let a2 = l.mul(a, two);
    let e = exp(l, a2);
    let one = l.splat(1.0);
    let e1 = l.add(e, one);
    let q = l.div(two, e1);
    let yl = l.sub(one, q);
    let yl = with_sign_of(l, yl, x);
    let y = l.select(small, ys, yl);
    let nan = l.is_nan(x);
    l.select(nan, x, y)
}

/// `1 / (1 + e^{-x})`, from `e = e^{-|x|}` (never overflows): `1 / (1 + e)`
/// for `x >= 0`, `e / (1 + e)` below (so tiny results keep their digits).
pub fn sigmoid<L: Lanes>(l: &mut L, x: L::F) -> L::F {
    let a = abs(l, x);
    let z = l.splat(0.0);
    let na = l.sub(z, a);
    let e = exp(l, na);
    let one = l.splat(1.0);
    let d = l.add(one, e);
    let pos = l.div(one, d);
    let neg = l.mul(e, pos);
    let m = l.lt(x, z);
    l.select(m, neg, pos)
}

/// `erf x`: `x P(x^2)` below 1; else `1 - e^{-x^2} R(1/|x|)` with the sign
/// of `x` (`R(1/a) = erfc(a) e^{a^2}`), which is 1 in f32 from 3.92 on.
pub fn erf<L: Lanes>(l: &mut L, x: L::F) -> L::F {
    let a = abs(l, x);
    let one = l.splat(1.0);
    let small = l.lt(a, one);
    // erf x / x as a polynomial in x^2, fitted in the relative error on [0, 1].
    let x2 = l.mul(x, x);
    let p = poly(
        l,
        x2,
        &[
            1.128379225730896,
            -0.37612637877464294,
            0.11283782124519348,
            -0.0268654003739357,
            0.00522094639018178,
            -0.0008482838748022914,
            0.00011257011647103354,
            -9.641686119721271e-06,
        ],
    );
    let ys = l.mul(x, p);
    // The tail on [1, 4] (clamped: erf is 1 in f32 beyond 3.92).
    let ac = clamp(l, a, 1.0, 4.0);
    let u = l.div(one, ac);
    // R fitted in the relative error as a polynomial in 1/a on a in [1, 4].
    let r = poly(
        l,
        u,
        &[
            0.00025309453485533595,
            0.5593158006668091,
            0.040159713476896286,
            -0.4646672010421753,
            0.4809396266937256,
            -0.21906951069831848,
            0.004026996437460184,
            0.03799982741475105,
            -0.011374794878065586,
        ],
    );
    let ac2 = l.mul(ac, ac);
    let z = l.splat(0.0);
    let nac2 = l.sub(z, ac2);
    let e = exp(l, nac2);
    let er = l.mul(e, r);
    let yl = l.sub(one, er);
    let yl = with_sign_of(l, yl, x);
    let y = l.select(small, ys, yl);
    let nan = l.is_nan(x);
    l.select(nan, x, y)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unfused scalar lanes.
    fn plain() -> Scalar {
        Scalar { fused: false }
    }

    /// Lanes that record every constant a sequence uses.
    struct Record(Vec<u32>);
    impl Lanes for Record {
        type F = f32;
        type I = i32;
        fn splat(&mut self, c: f32) -> f32 {
            self.0.push(c.to_bits());
            c
        }
        fn isplat(&mut self, c: i32) -> i32 {
            self.0.push(c as u32);
            c
        }
        fn add(&mut self, a: f32, b: f32) -> f32 {
            plain().add(a, b)
        }
        fn sub(&mut self, a: f32, b: f32) -> f32 {
            plain().sub(a, b)
        }
        fn mul(&mut self, a: f32, b: f32) -> f32 {
            plain().mul(a, b)
        }
        fn mul_add(&mut self, a: f32, b: f32, c: f32) -> f32 {
            plain().mul_add(a, b, c)
        }
        fn div(&mut self, a: f32, b: f32) -> f32 {
            plain().div(a, b)
        }
        fn to_float(&mut self, a: i32) -> f32 {
            plain().to_float(a)
        }
        fn iadd(&mut self, a: i32, b: i32) -> i32 {
            plain().iadd(a, b)
        }
        fn isub(&mut self, a: i32, b: i32) -> i32 {
            plain().isub(a, b)
        }
        fn shl(&mut self, a: i32, n: u32) -> i32 {
            plain().shl(a, n)
        }
        fn sar(&mut self, a: i32, n: u32) -> i32 {
            plain().sar(a, n)
        }
        fn shr(&mut self, a: i32, n: u32) -> i32 {
            plain().shr(a, n)
        }
        fn and(&mut self, a: i32, b: i32) -> i32 {
            plain().and(a, b)
        }
        fn or(&mut self, a: i32, b: i32) -> i32 {
            plain().or(a, b)
        }
        fn bits(&mut self, a: f32) -> i32 {
            plain().bits(a)
        }
        fn from_bits(&mut self, a: i32) -> f32 {
            plain().from_bits(a)
        }
        fn lt(&mut self, a: f32, b: f32) -> i32 {
            plain().lt(a, b)
        }
        fn eq(&mut self, a: f32, b: f32) -> i32 {
            plain().eq(a, b)
        }
        fn is_nan(&mut self, a: f32) -> i32 {
            plain().is_nan(a)
        }
        fn select(&mut self, m: i32, a: f32, b: f32) -> f32 {
            plain().select(m, a, b)
        }
    }

    /// Code generation keeps [`CONSTANT_BITS`] in its constant table, so
    /// that each constant is a memory operand rather than an instruction.
    #[test]
    fn every_constant_is_in_the_table() {
        let mut r = Record(Vec::new());
        for f in [exp::<Record>, log, tanh, sigmoid, erf] {
            f(&mut r, 0.5);
        }
        let mut missing: Vec<u32> = r.0.iter().copied().filter(|b| !CONSTANT_BITS.contains(b)).collect();
        missing.sort();
        missing.dedup();
        assert!(missing.is_empty(), "add to CONSTANT_BITS: {missing:#010x?}");
        let unused: Vec<&u32> = CONSTANT_BITS.iter().filter(|b| !r.0.contains(b)).collect();
        assert!(unused.is_empty(), "unused in CONSTANT_BITS: {unused:#010x?}");
    }

    /// Distance in ulps between `got` and the exact `want` (f64), in units
    /// of the f32 spacing at `want` (subnormal spacing below the normals).
    fn ulps(got: f32, want: f64) -> f64 {
        if want.is_nan() {
            return if got.is_nan() { 0.0 } else { f64::INFINITY };
        }
        // A result beyond f32's range rounds to an infinity.
        if got.is_infinite() || want.is_infinite() {
            return if got == want as f32 { 0.0 } else { f64::INFINITY };
        }
        let w = want.abs().clamp(f32::MIN_POSITIVE as f64, f32::MAX as f64);
        let spacing = 2f64.powi(w.log2().floor() as i32 - 23);
        (got as f64 - want).abs() / spacing
    }

    fn reference(name: &str, x: f64) -> f64 {
        match name {
            "exp" => x.exp(),
            "log" => x.ln(),
            "tanh" => x.tanh(),
            "sigmoid" => 1.0 / (1.0 + (-x).exp()),
            "erf" => libm::erf(x),
            _ => unreachable!(),
        }
    }

    fn f(name: &str, fused: bool, x: f32) -> f32 {
        let mut s = Scalar { fused };
        match name {
            "exp" => exp(&mut s, x),
            "log" => log(&mut s, x),
            "tanh" => tanh(&mut s, x),
            "sigmoid" => sigmoid(&mut s, x),
            "erf" => erf(&mut s, x),
            _ => unreachable!(),
        }
    }

    /// Max ulp error of `name` (fused or not) over the inputs `xs`, and
    /// where.
    fn worst(name: &str, fused: bool, xs: impl Iterator<Item = f32>) -> (f64, f32) {
        let mut w = (0.0, 0.0);
        for x in xs {
            let e = ulps(f(name, fused, x), reference(name, x as f64));
            if e > w.0 || e.is_nan() {
                w = (e, x);
            }
        }
        w
    }

    /// Every 97th f32 bit pattern (about 44 million inputs: all exponents,
    /// both signs, subnormals, infinities, NaNs), plus the edges.
    fn sweep() -> impl Iterator<Item = f32> {
        let edges = [
            0.0,
            -0.0,
            f32::MIN_POSITIVE,
            1e-45,
            -1e-45,
            f32::MAX,
            f32::MIN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            88.72283,
            88.72284,
            -87.33654,
            -103.972,
            -103.973,
            0.625,
            -0.625,
            1.0,
            -1.0,
            3.92,
            4.0,
            9.01,
        ];
        (0..=u32::MAX / 97).map(|i| f32::from_bits(i * 97)).chain(edges)
    }

    #[test]
    fn every_function_is_within_its_ulp_bound_on_a_dense_sweep() {
        for fused in [false, true] {
            for (name, bound) in MAX_ULP {
                let (e, x) = worst(name, fused, sweep());
                eprintln!("{name} (fused {fused}): max {e:.3} ulp at {x:e} ({:#010x})", x.to_bits());
                assert!(e <= bound, "{name} (fused {fused}): {e} ulp at {x:e} ({:#010x}), bound {bound}", x.to_bits());
            }
        }
    }

    #[test]
    fn special_values() {
        for fused in [false, true] {
            special_values_of(fused);
        }
    }

    fn special_values_of(fused: bool) {
        let mut s = Scalar { fused };
        assert_eq!(exp(&mut s, f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(&mut s, f32::INFINITY), f32::INFINITY);
        assert_eq!(exp(&mut s, 100.0), f32::INFINITY);
        assert_eq!(exp(&mut s, 0.0), 1.0);
        assert!(exp(&mut s, -100.0) > 0.0, "underflows through the subnormals");
        assert_eq!(log(&mut s, 1.0), 0.0);
        assert_eq!(log(&mut s, 0.0), f32::NEG_INFINITY);
        assert_eq!(log(&mut s, -0.0), f32::NEG_INFINITY);
        assert!(log(&mut s, -1.0).is_nan());
        assert_eq!(log(&mut s, f32::INFINITY), f32::INFINITY);
        assert!(log(&mut s, f32::NEG_INFINITY).is_nan());
        assert_eq!(tanh(&mut s, f32::INFINITY), 1.0);
        assert_eq!(tanh(&mut s, f32::NEG_INFINITY), -1.0);
        assert_eq!(tanh(&mut s, -0.0).to_bits(), (-0.0f32).to_bits());
        assert_eq!(sigmoid(&mut s, f32::NEG_INFINITY), 0.0);
        assert_eq!(sigmoid(&mut s, f32::INFINITY), 1.0);
        assert_eq!(erf(&mut s, f32::INFINITY), 1.0);
        assert_eq!(erf(&mut s, f32::NEG_INFINITY), -1.0);
        assert_eq!(erf(&mut s, -0.0).to_bits(), (-0.0f32).to_bits());
        for name in ["exp", "log", "tanh", "sigmoid", "erf"] {
            assert!(f(name, fused, f32::NAN).is_nan(), "{name}(NaN)");
        }
    }

    /// Every f32 input (4.3 billion per function; minutes in release):
    /// `cargo test --release -p normjit-lower vmath -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn every_function_is_within_its_ulp_bound_on_every_f32() {
        for fused in [false, true] {
            for (name, bound) in MAX_ULP {
                let (e, x) = worst(name, fused, (0..=u32::MAX).map(f32::from_bits));
                eprintln!("{name} (fused {fused}): max {e:.3} ulp over every f32, at {x:e} ({:#010x})", x.to_bits());
                assert!(e <= bound, "{name} (fused {fused}): {e} ulp at {x:e}");
            }
        }
    }
}
