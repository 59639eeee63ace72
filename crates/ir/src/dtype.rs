//! Storage types of tensor elements and their exact conversions: the
//! definition every engine rounds by.
//!
//! Compute is f32 (f64 in the reference interpreter) whatever a tensor is
//! stored as: a load widens exactly, a store rounds to nearest, ties to
//! even, with IEEE overflow to ±inf. NaN stays NaN, as the positive
//! canonical quiet NaN: bf16 `0x7FC0` (as PyTorch's `c10::BFloat16`
//! conversion gives), f16 `0x7E00` (`c10::Half` keeps the NaN's sign; we
//! drop it, because the sign of a NaN that arithmetic produces is not
//! reproducible: x86 returns the first operand's NaN and compilers commute
//! `a + b`, so keeping it would make stored bits depend on the engine). A
//! store may instead round a bf16 tensor stochastically
//! ([`Rounding::Stochastic`]).
//!
//! Two implementations of each rounding live here, and the tests hold them
//! to each other: [`DType::round_f64`], a format-generic rounding of an f64
//! (what the f64 reference interpreter stores), and the bit-level f32
//! conversions ([`f32_to_bf16`], [`f32_to_f16`]) that the f32 engines use
//! and code generation emits as integer sequences.

use crate::ParamId;

/// Storage type of a tensor element.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DType {
    /// IEEE binary32.
    F32,
    /// bfloat16: f32's sign and 8-bit exponent, 7 fraction bits.
    BF16,
    /// IEEE binary16: 5-bit exponent, 10 fraction bits.
    F16,
}

/// Every storage type, in the order errors list them.
pub const DTYPES: [DType; 3] = [DType::F32, DType::BF16, DType::F16];

impl DType {
    /// The name of the text format.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::BF16 => "bf16",
            DType::F16 => "f16",
        }
    }

    /// The storage type named `name` in the text format.
    pub fn from_name(name: &str) -> Option<DType> {
        DTYPES.into_iter().find(|d| d.name() == name)
    }

    /// Bytes per element in memory.
    pub fn size_bytes(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::BF16 | DType::F16 => 2,
        }
    }

    /// True for the 16-bit types, which loads widen and stores round.
    pub fn is_narrow(self) -> bool {
        self != DType::F32
    }

    /// `x` rounded to this type (nearest, ties to even; overflow to ±inf;
    /// NaN to this type's canonical NaN), as the f64 it stands for. Exact
    /// for every f64, with no intermediate rounding: this is what the f64
    /// reference stores.
    pub fn round_f64(self, x: f64) -> f64 {
        match self {
            DType::F32 => x as f32 as f64,
            DType::BF16 if x.is_nan() => f64::NAN,
            DType::BF16 => round_format(x, 7, -126, 127),
            DType::F16 if x.is_nan() => f64::NAN,
            DType::F16 => round_format(x, 10, -14, 15),
        }
    }

    /// `x` rounded to this type, as an f32 (every bf16 and f16 value is
    /// one). Equal to `round_f64(x as f64) as f32`, by bit operations.
    pub fn round_f32(self, x: f32) -> f32 {
        match self {
            DType::F32 => x,
            DType::BF16 => bf16_to_f32(f32_to_bf16(x)),
            DType::F16 => f16_to_f32(f32_to_f16(x)),
        }
    }

    /// The 16-bit pattern of `x` in a narrow type (rounded as
    /// [`DType::round_f32`]); the f32 bits for `F32`.
    pub fn encode(self, x: f32) -> u32 {
        match self {
            DType::F32 => x.to_bits(),
            DType::BF16 => u32::from(f32_to_bf16(x)),
            DType::F16 => u32::from(f32_to_f16(x)),
        }
    }

    /// The value of the element bits `bits` (the low 16 for a narrow type).
    pub fn decode(self, bits: u32) -> f32 {
        match self {
            DType::F32 => f32::from_bits(bits),
            DType::BF16 => bf16_to_f32(bits as u16),
            DType::F16 => f16_to_f32(bits as u16),
        }
    }
}

/// How a store rounds to a narrow storage type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Rounding {
    /// To nearest, ties to even.
    #[default]
    NearestEven,
    /// bf16 only: up or down at random, with probability proportional to
    /// the distance, so the stored value is unbiased. The 16 random bits of
    /// element `i` are [`crate::rng::rounding_bits`]`(seed, tensor, i)`,
    /// `seed` being this `u32` param's value: a pure function of the seed
    /// and the element, independent of threads and vector width.
    Stochastic(ParamId),
}

/// Rounds `x` (not NaN) to the binary format with `frac` fraction bits,
/// minimum normal exponent `emin` (subnormals below it) and maximum
/// exponent `emax`, to nearest with ties to even, overflowing to ±inf.
fn round_format(x: f64, frac: i32, emin: i32, emax: i32) -> f64 {
    let a = x.abs();
    if a == 0.0 || a.is_infinite() {
        return x;
    }
    let limit = pow2(emax + 1);
    if a >= limit {
        return f64::INFINITY.copysign(x);
    }
    // The exponent of `a` (f64 subnormals are far below every subnormal of
    // the narrow formats and clamp to `emin` like them).
    let e = (((a.to_bits() >> 52) & 0x7ff) as i32 - 1023).max(emin);
    let ulp = pow2(e - frac);
    // Dividing by a power of two is exact here (the quotient is a normal
    // f64), so the one rounding is `round_ties_even`.
    let q = (a / ulp).round_ties_even() * ulp;
    if q >= limit {
        f64::INFINITY.copysign(x)
    } else {
        q.copysign(x)
    }
}

fn pow2(e: i32) -> f64 {
    f64::from_bits(((e + 1023) as u64) << 52)
}

/// `x` as bf16 bits, rounded to nearest even (NaN: `0x7FC0`).
pub fn f32_to_bf16(x: f32) -> u16 {
    if x.is_nan() {
        return 0x7FC0;
    }
    let b = x.to_bits();
    // Adding 0x7FFF plus the kept lsb carries into the kept half exactly
    // when the dropped half is above one half, or equal to it with an odd
    // kept half; a carry out of the largest finite value gives inf.
    ((b + 0x7FFF + ((b >> 16) & 1)) >> 16) as u16
}

/// The value of bf16 bits `h` (exact).
pub fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits(u32::from(h) << 16)
}

/// `x` as IEEE binary16 bits, rounded to nearest even (NaN: `0x7E00`). Branch-free in spirit: code generation emits the same
/// steps on four lanes with selects.
pub fn f32_to_f16(x: f32) -> u16 {
    let b = x.to_bits();
    let sign = b & 0x8000_0000;
    let a = b ^ sign;
    if a > 0x7F80_0000 {
        return 0x7E00;
    }
    let o = if a >= 0x4780_0000 {
        // |x| >= 65536, or inf: inf.
        0x7C00
    } else if a < 0x3880_0000 {
        // |x| < 2^-14: an f16 subnormal or zero. Adding 0.5 puts the f16
        // subnormal's ulp (2^-24) at the f32 ulp of 0.5, so the FPU's own
        // round-to-nearest-even rounds it; the low bits are the result.
        (f32::from_bits(a) + 0.5).to_bits() - 0x3F00_0000
    } else {
        // Normal: rebias the exponent (127 -> 15), round the 13 dropped
        // bits to nearest even, shift. A carry into the exponent is the
        // correct rounding, up to inf at 65520.
        let odd = (a >> 13) & 1;
        (a.wrapping_add(0xC800_0FFF) + odd) >> 13
    };
    (o | (sign >> 16)) as u16
}

/// The value of f16 bits `h` (exact).
pub fn f16_to_f32(h: u16) -> f32 {
    let h = u32::from(h);
    let sign = (h & 0x8000) << 16;
    let e = (h >> 10) & 0x1F;
    let m = h & 0x3FF;
    let mag = match e {
        0x1F => 0x7F80_0000 | (m << 13),
        // Subnormal or zero: m * 2^-24, exact in f32.
        0 => (m as f32 * (1.0 / 16_777_216.0)).to_bits(),
        _ => ((e + 112) << 23) | (m << 13),
    };
    f32::from_bits(sign | mag)
}

/// `x` stochastically rounded to bf16 with the 16 random bits `r`
/// (`0..65536`): rounded up in magnitude when the dropped fraction of an
/// ulp, times 2^16, plus `r` reaches 2^16, else truncated. NaN: `0x7FC0`'s
/// value. Overflow past the largest finite bf16 gives ±inf.
pub fn stochastic_bf16_f32(x: f32, r: u32) -> f32 {
    if x.is_nan() {
        return bf16_to_f32(0x7FC0);
    }
    f32::from_bits((x.to_bits() + (r & 0xFFFF)) & 0xFFFF_0000)
}

/// [`stochastic_bf16_f32`] for any f64 (what the f64 reference stores):
/// the same decision, with the dropped fraction taken exactly.
pub fn stochastic_bf16_f64(x: f64, r: u32) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    let a = x.abs();
    if a.is_infinite() || a == 0.0 {
        return x;
    }
    if a >= pow2(128) {
        return f64::INFINITY.copysign(x);
    }
    // Truncate toward zero to bf16, then the dropped fraction of one ulp.
    let e = (((a.to_bits() >> 52) & 0x7ff) as i32 - 1023).max(-126);
    let ulp = pow2(e - 7);
    let lo = (a / ulp).floor() * ulp;
    let frac = (a - lo) / ulp;
    let up = frac * 65536.0 + f64::from(r & 0xFFFF) >= 65536.0;
    let q = if up { lo + ulp } else { lo };
    if q >= pow2(128) {
        f64::INFINITY.copysign(x)
    } else {
        q.copysign(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Edge values plus a spread of random bit patterns.
    fn samples() -> Vec<f32> {
        let mut v: Vec<f32> = vec![
            0.0,
            -0.0,
            1.0,
            -1.0,
            f32::MAX,
            f32::MIN,
            f32::MIN_POSITIVE,
            1e-45,
            -1e-45,
            f32::INFINITY,
            f32::NEG_INFINITY,
            65504.0,
            65519.99,
            65520.0,
            65535.0,
            65536.0,
            6.1035156e-5,
            5.9604645e-8,
            2.9802322e-8,
            2.9802326e-8,
            8.940697e-8,
            3.3895314e38,
            3.3961776e38,
            3.4e38,
        ];
        let mut s = 0x1234_5678u32;
        for _ in 0..200_000 {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            v.push(f32::from_bits(s));
        }
        // Every f16 boundary region: exponents -26..17 with random mantissas.
        for e in -26i32..17 {
            for k in 0..512u32 {
                let m = k.wrapping_mul(0x9E37_79B9) >> 9;
                v.push(f32::from_bits((((e + 127) as u32) << 23) | m));
                v.push(-f32::from_bits((((e + 127) as u32) << 23) | (m & !0x1FFF) | 0x1000));
            }
        }
        v
    }

    #[test]
    fn bit_conversions_round_like_the_generic_rounding() {
        for x in samples() {
            for d in [DType::BF16, DType::F16] {
                let fast = d.round_f32(x);
                let slow = d.round_f64(f64::from(x));
                if x.is_nan() {
                    assert!(fast.is_nan() && slow.is_nan());
                    continue;
                }
                assert_eq!(fast.to_bits(), (slow as f32).to_bits(), "{d:?} of {x:e} ({:#x})", x.to_bits());
            }
        }
    }

    #[test]
    fn nan_is_canonical_and_values_round_trip() {
        assert_eq!(f32_to_bf16(f32::from_bits(0xFF80_0001)), 0x7FC0);
        assert_eq!(f32_to_f16(f32::from_bits(0xFF80_0001)), 0x7E00);
        assert_eq!(f32_to_f16(f32::NAN), 0x7E00);
        for h in 0..=u16::MAX {
            let b = bf16_to_f32(h);
            if !b.is_nan() {
                assert_eq!(f32_to_bf16(b), h);
            }
            let f = f16_to_f32(h);
            if !f.is_nan() {
                assert_eq!(f32_to_f16(f), h, "{h:#x}");
            }
        }
        assert_eq!(f32_to_f16(65520.0), 0x7C00);
        assert_eq!(f32_to_f16(65519.996), 0x7BFF);
        assert_eq!(f32_to_bf16(f32::MAX), 0x7F80);
    }

    #[test]
    fn stochastic_rounding_brackets_and_agrees_across_widths() {
        for x in samples() {
            for r in [0u32, 1, 0x7FFF, 0x8000, 0xFFFF, 0x1234] {
                let a = stochastic_bf16_f32(x, r);
                let b = stochastic_bf16_f64(f64::from(x), r);
                if x.is_nan() {
                    assert!(a.is_nan() && b.is_nan());
                    continue;
                }
                assert_eq!(a.to_bits(), (b as f32).to_bits(), "{x:e} r={r:#x}");
                // Either neighbour of x in bf16, never farther.
                let down = f32::from_bits(x.to_bits() & 0xFFFF_0000);
                assert!(a == down || a.abs() > down.abs() || a.is_infinite());
            }
            // r = 0 truncates; exact values never move.
            assert_eq!(stochastic_bf16_f32(x, 0).to_bits() & 0xFFFF, 0);
            let exact = bf16_to_f32(f32_to_bf16(x));
            if !exact.is_nan() {
                assert_eq!(stochastic_bf16_f32(exact, 0xFFFF), exact);
            }
        }
    }
}
