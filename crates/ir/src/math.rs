//! The reference definitions of the transcendental functions that Rust's
//! standard library lacks or computes in more than one way: `sigmoid` and
//! `erf`, in f64 (the accuracy reference, and every per-call scalar) and
//! in f32 (the eager interpreter). Every engine that evaluates these in
//! f64 calls these functions, so per-call scalars agree bit for bit.
//! (Vectorized f32 code computes its own approximations, with documented
//! error bounds: `normjit_lower::vmath`.)

/// `1 / (1 + e^{-x})`, without overflow: `e^{x} / (1 + e^{x})` for `x < 0`.
pub fn sigmoid(x: f64) -> f64 {
    if x < 0.0 {
        let e = x.exp();
        e / (1.0 + e)
    } else {
        1.0 / (1.0 + (-x).exp())
    }
}

/// [`sigmoid`] in f32 arithmetic.
pub fn sigmoid_f32(x: f32) -> f32 {
    if x < 0.0 {
        let e = x.exp();
        e / (1.0 + e)
    } else {
        1.0 / (1.0 + (-x).exp())
    }
}

/// The error function (`libm`'s `erf`, within 1 ulp).
pub fn erf(x: f64) -> f64 {
    libm::erf(x)
}

/// The error function in f32 (`libm`'s `erff`).
pub fn erf_f32(x: f32) -> f32 {
    libm::erff(x)
}
