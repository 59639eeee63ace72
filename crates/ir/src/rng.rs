//! The counter-based random function behind [`Op::Uniform`](crate::Op::Uniform).
//!
//! This is the definition, not an implementation detail: every engine must
//! produce these exact bits, so results do not depend on thread count,
//! vector width or evaluation order. Each engine carries its own copy (the
//! interpreter calls this one; codegen emits the same integer ops), and the
//! differential tests hold them to it.
//!
//! `uniform(seed, i)`, for a 64-bit element index `i = hi:lo`:
//! ```text
//! k1 = hash32(seed ^ hash32(hi ^ 0x9E3779B9))   // once per 2^32 elements
//! k2 = hash32(k1 ^ 0x85EBCA6B)
//! h  = hash32(hash32(lo ^ k1) ^ k2)
//! u  = (h >> 8) * 2^-24                         // 24 random bits, in [0, 1)
//! ```
//! `hash32` is the "lowbias32" integer finalizer (a bijection on u32).

/// The lowbias32 finalizer: xorshift-multiply mixing, a bijection on `u32`.
pub fn hash32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^= x >> 16;
    x
}

/// The two per-call keys for `seed` and the high half of the index.
pub fn keys(seed: u32, hi: u32) -> (u32, u32) {
    let k1 = hash32(seed ^ hash32(hi ^ 0x9E37_79B9));
    (k1, hash32(k1 ^ 0x85EB_CA6B))
}

/// The random bits for low index half `lo` under keys `(k1, k2)`.
pub fn bits(lo: u32, k1: u32, k2: u32) -> u32 {
    hash32(hash32(lo ^ k1) ^ k2)
}

/// The seed of the stream that stochastic rounding of tensor number
/// `tensor` (its declaration index) draws from: `hash32(seed ^ salt)` with
/// `salt = hash32(tensor ^ 0x53520000)`, so that it differs from the
/// `uniform` stream of the same seed and from other tensors' streams.
pub fn rounding_seed(seed: u32, tensor: u32) -> u32 {
    hash32(seed ^ rounding_salt(tensor))
}

/// The per-tensor constant of [`rounding_seed`].
pub fn rounding_salt(tensor: u32) -> u32 {
    hash32(tensor ^ 0x5352_0000)
}

/// The 16 random bits stochastic rounding adds when it stores element
/// `index` of tensor number `tensor` (`index` is row-major over the
/// tensor's axes in dim declaration order, as for `uniform`):
/// `floor(uniform(rounding_seed(seed, tensor), index) * 2^16)`.
pub fn rounding_bits(seed: u32, tensor: u32, index: u64) -> u32 {
    let (k1, k2) = keys(rounding_seed(seed, tensor), (index >> 32) as u32);
    bits(index as u32, k1, k2) >> 16
}

/// The uniform value in `[0, 1)` for `seed` and element index `index`.
pub fn uniform(seed: u32, index: u64) -> f32 {
    let (k1, k2) = keys(seed, (index >> 32) as u32);
    (bits(index as u32, k1, k2) >> 8) as f32 * (1.0 / 16_777_216.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_unit_interval_and_roughly_uniform() {
        let n = 100_000u64;
        let mut below_tenth = 0;
        let mut sum = 0.0f64;
        for i in 0..n {
            let u = uniform(7, i);
            assert!((0.0..1.0).contains(&u));
            sum += u as f64;
            below_tenth += (u < 0.1) as u32;
        }
        assert!((sum / n as f64 - 0.5).abs() < 0.01);
        assert!((below_tenth as f64 / n as f64 - 0.1).abs() < 0.01);
    }

    #[test]
    fn rounding_bits_are_the_top_of_the_salted_uniform() {
        for i in [0u64, 1, 77, (1 << 32) + 3] {
            let u = uniform(rounding_seed(9, 2), i);
            assert_eq!(rounding_bits(9, 2, i), (u * 65536.0) as u32);
        }
        assert_ne!(rounding_seed(9, 0), rounding_seed(9, 1));
        assert_ne!(rounding_seed(9, 0), 9);
    }

    #[test]
    fn depends_on_seed_and_high_index_bits() {
        assert_ne!(uniform(1, 5), uniform(2, 5));
        assert_ne!(uniform(1, 5), uniform(1, 5 + (1 << 32)));
        assert_eq!(uniform(3, 9), uniform(3, 9));
    }
}
