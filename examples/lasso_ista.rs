//! The Lasso by proximal gradient (ISTA) against the plain L1 subgradient
//! method: the proximal step lands on exact zeros, the subgradient step
//! never does.
//!
//!   minimize  F(θ) = ½‖Xθ − y‖²/M + λ‖θ‖₁,        ∇f(θ) = Xᵀ(Xθ − y)/M
//!   ISTA:     θ ← S(θ − η∇f(θ), ηλ),  S(z, τ) = sign(z)·max(|z| − τ, 0)   (ir/optim/prox_l1.nj)
//!   subgrad:  θ ← θ − η(∇f(θ) + λ·sign(θ))                                 (ir/optim/l1_subgrad.nj)
//!
//! The data are synthetic and deterministic: X is M×K Gaussian, the true θ
//! has 5 nonzeros, y = Xθ + noise. The gradient is computed in plain Rust;
//! the JIT does the update (a positional `Kernel::call`). Both methods use
//! the step η = 1/L, L the largest eigenvalue of XᵀX/M.
//!
//! Run: `cargo run --release --example lasso_ista`

use normjit::{Compiler, Error, Kernel, Tensor};
use std::path::Path;

/// Where the true θ is nonzero, and its values there.
pub const TRUE_SUPPORT: [usize; 5] = [3, 11, 24, 36, 47];
const TRUE_VALUES: [f64; 5] = [1.5, -2.0, 1.0, -1.2, 2.5];

/// A synthetic sparse regression.
pub struct Problem {
    /// Samples.
    pub m: usize,
    /// Features (at least 48: the true support goes up to index 47).
    pub k: usize,
    /// The design, row-major M×K.
    pub x: Vec<f64>,
    /// The targets.
    pub y: Vec<f64>,
    /// The L1 weight λ.
    pub lam: f64,
    /// The step η = 1/L.
    pub lr: f64,
}

/// Deterministic standard normal numbers (xorshift + Box–Muller).
pub fn gaussian(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut uniform = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    (0..n).map(|_| (-2.0 * uniform().ln()).sqrt() * (std::f64::consts::TAU * uniform()).cos()).collect()
}

/// The regression: X Gaussian, y = Xθ_true + 0.01·noise.
pub fn problem(m: usize, k: usize, lam: f64) -> Problem {
    assert!(k > TRUE_SUPPORT[4], "K must cover the true support");
    let x = gaussian(m * k, 1);
    let noise = gaussian(m, 2);
    let y = (0..m)
        .map(|i| TRUE_SUPPORT.iter().zip(TRUE_VALUES).map(|(&j, v)| x[i * k + j] * v).sum::<f64>() + 0.01 * noise[i])
        .collect();
    let mut p = Problem { m, k, x, y, lam, lr: 0.0 };
    p.lr = 1.0 / largest_eigenvalue(&p);
    p
}

/// λ_max(XᵀX/M) by power iteration.
fn largest_eigenvalue(p: &Problem) -> f64 {
    let mut v = vec![1.0; p.k];
    let mut lam = 0.0;
    for _ in 0..500 {
        let xv: Vec<f64> = (0..p.m).map(|i| (0..p.k).map(|j| p.x[i * p.k + j] * v[j]).sum()).collect();
        let w: Vec<f64> =
            (0..p.k).map(|j| (0..p.m).map(|i| p.x[i * p.k + j] * xv[i]).sum::<f64>() / p.m as f64).collect();
        lam = w.iter().zip(&v).map(|(a, b)| a * b).sum::<f64>() / v.iter().map(|a| a * a).sum::<f64>();
        let norm = w.iter().map(|a| a * a).sum::<f64>().sqrt();
        v = w.iter().map(|a| a / norm).collect();
    }
    lam
}

/// Xθ − y.
fn residual(p: &Problem, theta: &[f32]) -> Vec<f64> {
    (0..p.m).map(|i| (0..p.k).map(|j| p.x[i * p.k + j] * theta[j] as f64).sum::<f64>() - p.y[i]).collect()
}

/// ∇f(θ) = Xᵀ(Xθ − y)/M, in f64, rounded to f32 for the kernel.
pub fn gradient(p: &Problem, theta: &[f32]) -> Vec<f32> {
    let r = residual(p, theta);
    (0..p.k).map(|j| ((0..p.m).map(|i| p.x[i * p.k + j] * r[i]).sum::<f64>() / p.m as f64) as f32).collect()
}

/// F(θ) = ½‖Xθ − y‖²/M + λ‖θ‖₁.
pub fn objective(p: &Problem, theta: &[f32]) -> f64 {
    let r = residual(p, theta);
    0.5 * r.iter().map(|a| a * a).sum::<f64>() / p.m as f64
        + p.lam * theta.iter().map(|&t| (t as f64).abs()).sum::<f64>()
}

/// Indices of the exact nonzeros.
pub fn support(theta: &[f32]) -> Vec<usize> {
    (0..theta.len()).filter(|&j| theta[j] != 0.0).collect()
}

/// One printed line: the state of both methods after `iter` steps.
pub struct Row {
    /// Steps taken.
    pub iter: usize,
    /// ISTA's objective.
    pub ista_obj: f64,
    /// ISTA's exact nonzeros.
    pub ista_nnz: usize,
    /// The subgradient method's objective.
    pub sub_obj: f64,
    /// The subgradient method's exact nonzeros.
    pub sub_nnz: usize,
}

/// The run: a row every `every` steps, and the final iterates.
pub struct Outcome {
    /// The rows, including step 0 and the last step.
    pub rows: Vec<Row>,
    /// ISTA's final θ.
    pub ista: Vec<f32>,
    /// The subgradient method's final θ.
    pub subgrad: Vec<f32>,
}

/// The library kernel at `rel` (a path under the repository root).
pub fn library(compiler: &Compiler, rel: &str) -> Result<Kernel, Error> {
    compiler.compile_file(&Path::new(env!("CARGO_MANIFEST_DIR")).join(rel))
}

/// Runs `iters` steps of both methods from θ = 0, with a row after each
/// step count in `report` and after the last.
pub fn solve(compiler: &Compiler, p: &Problem, iters: usize, report: &[usize]) -> Result<Outcome, Error> {
    // Both kernels: inout p: f32[P], in g: f32[P]; params lr, lam.
    let prox = library(compiler, "ir/optim/prox_l1.nj")?;
    let subgrad = library(compiler, "ir/optim/l1_subgrad.nj")?;
    let (mut a, mut b) = (vec![0.0f32; p.k], vec![0.0f32; p.k]);
    let mut rows = Vec::new();
    for it in 0..=iters {
        if report.contains(&it) || it == iters {
            rows.push(Row {
                iter: it,
                ista_obj: objective(p, &a),
                ista_nnz: support(&a).len(),
                sub_obj: objective(p, &b),
                sub_nnz: support(&b).len(),
            });
        }
        if it == iters {
            break;
        }
        let g = gradient(p, &a);
        prox.call(&[Tensor::output(&mut a), Tensor::input(&g)], &[p.lr, p.lam])?;
        let g = gradient(p, &b);
        subgrad.call(&[Tensor::output(&mut b), Tensor::input(&g)], &[p.lr, p.lam])?;
    }
    Ok(Outcome { rows, ista: a, subgrad: b })
}

fn main() -> Result<(), Error> {
    let p = problem(200, 50, 0.1);
    let compiler = Compiler::new()?;
    let out = solve(&compiler, &p, 300, &[0, 1, 2, 3, 5, 10, 15, 20, 30, 50, 100, 200])?;
    println!(
        "Lasso: M={} samples, K={} features, true support {TRUE_SUPPORT:?}, λ={}, step η=1/L={:.3}",
        p.m, p.k, p.lam, p.lr
    );
    println!("objective F = ½‖Xθ−y‖²/M + λ‖θ‖₁; nnz = exact nonzeros of θ");
    println!("{:>5} | {:>14} {:>4} | {:>14} {:>4}", "iter", "ISTA (prox) F", "nnz", "subgradient F", "nnz");
    for r in &out.rows {
        println!("{:>5} | {:>14.8} {:>4} | {:>14.8} {:>4}", r.iter, r.ista_obj, r.ista_nnz, r.sub_obj, r.sub_nnz);
    }
    let off = |t: &[f32]| (0..t.len()).filter(|j| !TRUE_SUPPORT.contains(j)).map(|j| t[j].abs()).fold(0.0f32, f32::max);
    println!("ISTA support: {:?}", support(&out.ista));
    println!(
        "largest |θ_j| off the true support: ISTA {:.1e}, subgradient {:.1e} (it oscillates around 0 by ~ηλ={:.3})",
        off(&out.ista),
        off(&out.subgrad),
        p.lr * p.lam
    );
    Ok(())
}
