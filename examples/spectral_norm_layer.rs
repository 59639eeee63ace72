//! Spectral normalization (Miyato et al. 2018): divide a weight by its
//! largest singular value σ(W), estimated by power iteration with the
//! vectors u, v carried from call to call (as `torch.nn.utils.spectral_norm`
//! carries them from one training step to the next).
//!
//!   v ← Wᵀu/‖Wᵀu‖,  u ← Wv/‖Wv‖,  σ ≈ uᵀWv,  W_sn = W/σ     (ir/reg/spectral_norm.nj)
//!
//! The estimate converges to σ(W) geometrically, with ratio (σ₂/σ₁)² per
//! step. Once it has, W_sn has spectral norm 1: running the same kernel on
//! W_sn gives σ ≈ 1.
//!
//! Run: `cargo run --release --example spectral_norm_layer`

use normjit::{Compiler, Error, Kernel, Tensor};
use std::path::Path;

/// Deterministic uniform numbers in [-1, 1) (xorshift).
pub fn uniform(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

/// The library kernel: `in w: f32[M, K]`, `inout u: f32[M]`,
/// `inout v: f32[K]`, `out w_sn: f32[M, K]`, `out sigma: f32[]`, param eps.
pub fn kernel(compiler: &Compiler) -> Result<Kernel, Error> {
    compiler.compile_file(&Path::new(env!("CARGO_MANIFEST_DIR")).join("ir/reg/spectral_norm.nj"))
}

/// `iters` power-iteration steps on the M×K matrix `w` from a random u:
/// σ after each step, and the last W_sn.
pub fn power_iteration(k: &Kernel, w: &[f32], m: usize, n: usize, iters: usize) -> Result<(Vec<f32>, Vec<f32>), Error> {
    let mut u = uniform(m, 99);
    let mut v = vec![0.0f32; n]; // overwritten before it is read
    let mut w_sn = vec![0.0f32; m * n];
    let mut sigma = [0.0f32];
    let mut sigmas = Vec::with_capacity(iters);
    let shape = [m, n];
    for _ in 0..iters {
        k.call(
            &[
                Tensor::input(w).shaped(&shape),
                Tensor::output(&mut u),
                Tensor::output(&mut v),
                Tensor::output(&mut w_sn),
                Tensor::output(&mut sigma),
            ],
            &[1e-12],
        )?;
        sigmas.push(sigma[0]);
    }
    Ok((sigmas, w_sn))
}

fn main() -> Result<(), Error> {
    let (m, n) = (64, 48);
    let w = uniform(m * n, 1);
    let compiler = Compiler::new()?;
    let k = kernel(&compiler)?;
    let (sigmas, w_sn) = power_iteration(&k, &w, m, n, 40)?;
    println!("W: {m}x{n}, uniform in [-1, 1); one power-iteration step per call");
    println!("{:>5} | {:>12} | {:>14}", "step", "σ estimate", "|Δσ| / σ");
    let mut prev = f32::NAN;
    for (i, &s) in sigmas.iter().enumerate() {
        if i < 10 || (i + 1) % 5 == 0 {
            let change = if i == 0 { "-".to_string() } else { format!("{:.2e}", ((s - prev) / s).abs()) };
            println!("{:>5} | {:>12.6} | {:>14}", i + 1, s, change);
        }
        prev = s;
    }
    let (again, _) = power_iteration(&k, &w_sn, m, n, 40)?;
    println!("σ(W_sn) by the same iteration on W_sn = W/σ: {:.6}", again.last().unwrap());
    Ok(())
}
