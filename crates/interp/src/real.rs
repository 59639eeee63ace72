//! The element types the interpreter computes in, and the scalar semantics
//! of every op that is not plain IEEE arithmetic.

/// An element type the interpreter computes in: `f32` (the eager baseline,
/// every op rounded to f32 as PyTorch eager does) or `f64` (the accuracy
/// reference). Sealed: these two are the only implementations.
pub trait Real: sealed::Float {}

impl Real for f32 {}
impl Real for f64 {}

pub(crate) use sealed::Float;

mod sealed {
    use std::fmt::Debug;
    use std::ops::{Add, Div, Mul, Neg, Sub};

    /// The arithmetic the interpreter needs, over both element types.
    /// Lives in a private module so that [`Real`](super::Real) is sealed.
    pub trait Float:
        Copy
        + PartialOrd
        + Debug
        + Send
        + Sync
        + 'static
        + Add<Output = Self>
        + Sub<Output = Self>
        + Mul<Output = Self>
        + Div<Output = Self>
        + Neg<Output = Self>
    {
        /// `+0.0`.
        const ZERO: Self;
        /// `1.0`.
        const ONE: Self;
        /// `+inf`.
        const INFINITY: Self;
        /// `-inf`.
        const NEG_INFINITY: Self;
        /// `x` correctly rounded to this type.
        fn from_f64(x: f64) -> Self;
        /// `x` exactly (a widening for f64).
        fn from_f32(x: f32) -> Self;
        /// `n` correctly rounded to this type.
        fn from_usize(n: usize) -> Self;
        /// Correctly rounded square root.
        fn sqrt(self) -> Self;
        /// `e^x`.
        fn exp(self) -> Self;
        /// Natural logarithm.
        fn ln(self) -> Self;
        /// Hyperbolic tangent.
        fn tanh(self) -> Self;
        /// The logistic function, as `normjit_ir::math` defines it.
        fn sigmoid(self) -> Self;
        /// The error function, as `normjit_ir::math` defines it.
        fn erf(self) -> Self;
        /// `self^e`, as C `pow`/`powf`.
        fn powf(self, e: Self) -> Self;
        /// `|x|`.
        fn abs(self) -> Self;
        /// True if the sign bit is set (including `-0.0` and negative NaNs).
        fn is_sign_negative(self) -> bool;
        /// `self` rounded to storage type `d`, exactly as the one rounding
        /// `DType` defines (from this type's value, with no intermediate
        /// rounding).
        fn store_as(self, d: normjit_ir::DType) -> Self;
        /// `self` stochastically rounded to bf16 with random bits `r`.
        fn stochastic_bf16(self, r: u32) -> Self;
    }

    macro_rules! float_impl {
        ($t:ty, $round:ident, $sr:path, $sigmoid:path, $erf:path) => {
            impl Float for $t {
                const ZERO: Self = 0.0;
                const ONE: Self = 1.0;
                const INFINITY: Self = <$t>::INFINITY;
                const NEG_INFINITY: Self = <$t>::NEG_INFINITY;
                #[inline]
                fn from_f64(x: f64) -> Self {
                    x as $t
                }
                #[inline]
                fn from_f32(x: f32) -> Self {
                    x as $t
                }
                #[inline]
                fn from_usize(n: usize) -> Self {
                    n as $t
                }
                #[inline]
                fn sqrt(self) -> Self {
                    <$t>::sqrt(self)
                }
                #[inline]
                fn exp(self) -> Self {
                    <$t>::exp(self)
                }
                #[inline]
                fn ln(self) -> Self {
                    <$t>::ln(self)
                }
                #[inline]
                fn tanh(self) -> Self {
                    <$t>::tanh(self)
                }
                #[inline]
                fn sigmoid(self) -> Self {
                    $sigmoid(self)
                }
                #[inline]
                fn erf(self) -> Self {
                    $erf(self)
                }
                #[inline]
                fn powf(self, e: Self) -> Self {
                    <$t>::powf(self, e)
                }
                #[inline]
                fn abs(self) -> Self {
                    <$t>::abs(self)
                }
                #[inline]
                fn is_sign_negative(self) -> bool {
                    <$t>::is_sign_negative(self)
                }
                #[inline]
                fn store_as(self, d: normjit_ir::DType) -> Self {
                    d.$round(self)
                }
                #[inline]
                fn stochastic_bf16(self, r: u32) -> Self {
                    $sr(self, r)
                }
            }
        };
    }
    float_impl!(
        f32,
        round_f32,
        normjit_ir::dtype::stochastic_bf16_f32,
        normjit_ir::math::sigmoid_f32,
        normjit_ir::math::erf_f32
    );
    float_impl!(
        f64,
        round_f64,
        normjit_ir::dtype::stochastic_bf16_f64,
        normjit_ir::math::sigmoid,
        normjit_ir::math::erf
    );
}

/// `sign(x)`: 1 for x > 0, -1 for x < 0, `+0.0` for `±0`, NaN for NaN.
#[inline]
pub(crate) fn sign<T: Float>(x: T) -> T {
    if x > T::ZERO {
        T::ONE
    } else if x < T::ZERO {
        -T::ONE
    } else if x == T::ZERO {
        T::ZERO
    } else {
        x
    }
}

/// IEEE 754-2019 `maximum`: NaN if either operand is NaN, and `+0 > -0`.
/// Unlike a plain `a > b ? a : b` it is commutative, so a max reduction does
/// not depend on the order it visits elements in.
#[inline]
pub(crate) fn max<T: Float>(a: T, b: T) -> T {
    if a > b {
        a
    } else if b > a {
        b
    } else if a == b {
        // Equal: only ±0 can differ; prefer +0.
        if a.is_sign_negative() {
            b
        } else {
            a
        }
    } else {
        // Unordered: at least one is NaN, and so is the sum.
        a + b
    }
}

/// IEEE 754-2019 `minimum`: NaN if either operand is NaN, and `-0 < +0`.
#[inline]
pub(crate) fn min<T: Float>(a: T, b: T) -> T {
    if a < b {
        a
    } else if b < a {
        b
    } else if a == b {
        if a.is_sign_negative() {
            a
        } else {
            b
        }
    } else {
        a + b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_min_are_nan_propagating_and_order_signed_zeros() {
        for (a, b) in [(f32::NAN, 1.0), (1.0, f32::NAN), (f32::NAN, f32::NAN), (f32::NAN, f32::INFINITY)] {
            assert!(max(a, b).is_nan() && min(a, b).is_nan(), "{a} {b}");
        }
        assert_eq!(max(2.0f32, -3.0), 2.0);
        assert_eq!(min(2.0f32, -3.0), -3.0);
        for (a, b) in [(0.0f64, -0.0), (-0.0, 0.0)] {
            assert!(max(a, b).is_sign_positive() && max(a, b) == 0.0);
            assert!(min(a, b).is_sign_negative() && min(a, b) == 0.0);
        }
    }

    #[test]
    fn sign_values() {
        assert_eq!(sign(3.5f32), 1.0);
        assert_eq!(sign(-1e-40f32), -1.0);
        assert_eq!(sign(-0.0f64).to_bits(), 0.0f64.to_bits());
        assert_eq!(sign(0.0f64).to_bits(), 0.0f64.to_bits());
        assert!(sign(f32::NAN).is_nan());
        assert_eq!(sign(f64::NEG_INFINITY), -1.0);
    }
}
