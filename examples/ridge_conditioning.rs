//! Ridge (L2) regularization as preconditioning: λ shifts every eigenvalue
//! of the Hessian, so it shrinks the condition number and gradient descent
//! converges in fewer steps.
//!
//!   f(θ) = ½‖Xθ − y‖²/M + ½λ‖θ‖²,   Hessian A + λI with A = XᵀX/M
//!   κ(λ) = (λ_max + λ) / (λ_min + λ)
//!   GD, step 1/(λ_max + λ):  ‖θ_k − θ*‖ ≤ (1 − 1/κ)^k ‖θ_0 − θ*‖,  so k ≈ κ·ln(1/tol)
//!
//! λ_max and λ_min come from power iteration (λ_min from power iteration on
//! λ_max·I − A). The gradient of the data term, g = Aθ − Xᵀy/M, is computed
//! in plain Rust; the step θ ← θ − lr·(g + λθ) is a three-line `.nj` kernel
//! compiled from source. The exact θ* (for the stopping test) comes from a
//! Cholesky solve in f64.
//!
//! Run: `cargo run --release --example ridge_conditioning`

use normjit::{Compiler, Error, Kernel, Tensor};

/// The GD step with the ridge term: `g` is the data term's gradient.
pub const RIDGE_STEP: &str = "
kernel ridge_step {
  dims K
  inout theta: f32[K]
  in    g: f32[K]
  param lr, lam

  theta = theta - lr * (g + lam * theta)
}
";

/// A least-squares problem in normal-equation form.
pub struct Problem {
    /// Features.
    pub k: usize,
    /// A = XᵀX/M, row-major K×K.
    pub a: Vec<f64>,
    /// b = Xᵀy/M.
    pub b: Vec<f64>,
}

/// Deterministic uniform numbers in [-1, 1) (xorshift).
fn uniform(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 11) as f64 / (1u64 << 52) as f64 - 1.0
        })
        .collect()
}

/// X is M×K with column j scaled by 10^(−j/(K−1)) (from 1 down to 0.1), so
/// A = XᵀX/M is ill-conditioned; y = X·1 + noise.
pub fn problem(m: usize, k: usize) -> Problem {
    let z = uniform(m * k, 7);
    let noise = uniform(m, 8);
    let scale: Vec<f64> = (0..k).map(|j| 10f64.powf(-(j as f64) / (k - 1) as f64)).collect();
    let x: Vec<f64> = (0..m * k).map(|i| z[i] * 3f64.sqrt() * scale[i % k]).collect();
    let y: Vec<f64> = (0..m).map(|i| (0..k).map(|j| x[i * k + j]).sum::<f64>() + 0.1 * noise[i]).collect();
    let a =
        (0..k * k).map(|ij| (0..m).map(|r| x[r * k + ij / k] * x[r * k + ij % k]).sum::<f64>() / m as f64).collect();
    let b = (0..k).map(|j| (0..m).map(|r| x[r * k + j] * y[r]).sum::<f64>() / m as f64).collect();
    Problem { k, a, b }
}

fn matvec(a: &[f64], v: &[f64]) -> Vec<f64> {
    a.chunks(v.len()).map(|row| row.iter().zip(v).map(|(x, y)| x * y).sum()).collect()
}

/// The dominant eigenvalue of the symmetric matrix `a` by power iteration
/// (the Rayleigh quotient of the last iterate).
pub fn power_iteration(a: &[f64], iters: usize) -> f64 {
    let k = (a.len() as f64).sqrt() as usize;
    let mut v: Vec<f64> = (0..k).map(|j| 1.0 + 0.1 * j as f64).collect();
    let mut lam = 0.0;
    for _ in 0..iters {
        let w = matvec(a, &v);
        lam = w.iter().zip(&v).map(|(x, y)| x * y).sum::<f64>() / v.iter().map(|x| x * x).sum::<f64>();
        let norm = w.iter().map(|x| x * x).sum::<f64>().sqrt();
        v = w.iter().map(|x| x / norm).collect();
    }
    lam
}

/// (λ_max, λ_min) of A: power iteration on A, then on λ_max·I − A, whose
/// dominant eigenvalue is λ_max − λ_min.
pub fn extreme_eigenvalues(p: &Problem) -> (f64, f64) {
    let lmax = power_iteration(&p.a, 5000);
    let shifted: Vec<f64> = (0..p.k * p.k).map(|ij| if ij / p.k == ij % p.k { lmax } else { 0.0 } - p.a[ij]).collect();
    (lmax, lmax - power_iteration(&shifted, 20000))
}

/// Solves (A + λI)θ = b by Cholesky.
pub fn ridge_solution(p: &Problem, lam: f64) -> Vec<f64> {
    let k = p.k;
    let mut l = vec![0.0; k * k];
    for i in 0..k {
        for j in 0..=i {
            let mut s = p.a[i * k + j] + if i == j { lam } else { 0.0 };
            for q in 0..j {
                s -= l[i * k + q] * l[j * k + q];
            }
            l[i * k + j] = if i == j { s.sqrt() } else { s / l[j * k + j] };
        }
    }
    let mut z = p.b.clone();
    for i in 0..k {
        for q in 0..i {
            z[i] -= l[i * k + q] * z[q];
        }
        z[i] /= l[i * k + i];
    }
    for i in (0..k).rev() {
        for q in i + 1..k {
            z[i] -= l[q * k + i] * z[q];
        }
        z[i] /= l[i * k + i];
    }
    z
}

/// One line of the table.
pub struct Row {
    /// The ridge weight.
    pub lam: f64,
    /// κ = (λ_max + λ)/(λ_min + λ).
    pub kappa: f64,
    /// κ·ln(1/tol).
    pub predicted: f64,
    /// GD steps until ‖θ − θ*‖ ≤ tol·‖θ_0 − θ*‖ (None: not within the cap).
    pub measured: Option<usize>,
}

/// Steps of GD (from θ = 0, step 1/(λ_max + λ), the JIT doing each update)
/// until ‖θ − θ*‖ ≤ tol·‖θ*‖, at most `cap`.
pub fn gd_iterations(
    step: &Kernel,
    p: &Problem,
    lmax: f64,
    lam: f64,
    tol: f64,
    cap: usize,
) -> Result<Option<usize>, Error> {
    let star = ridge_solution(p, lam);
    let dist = |t: &[f32]| star.iter().zip(t).map(|(s, &t)| (s - t as f64).powi(2)).sum::<f64>().sqrt();
    let mut theta = vec![0.0f32; p.k];
    let target = tol * dist(&theta);
    let lr = 1.0 / (lmax + lam);
    for it in 0..cap {
        if dist(&theta) <= target {
            return Ok(Some(it));
        }
        let t64: Vec<f64> = theta.iter().map(|&t| t as f64).collect();
        let g: Vec<f32> = matvec(&p.a, &t64).iter().zip(&p.b).map(|(x, b)| (x - b) as f32).collect();
        step.call(&[Tensor::output(&mut theta), Tensor::input(&g)], &[lr, lam])?;
    }
    Ok(None)
}

/// The table for each ridge weight in `lams`.
pub fn table(compiler: &Compiler, p: &Problem, lams: &[f64], tol: f64) -> Result<(f64, f64, Vec<Row>), Error> {
    let step = compiler.compile_source(RIDGE_STEP)?;
    let (lmax, lmin) = extreme_eigenvalues(p);
    let mut rows = Vec::new();
    for &lam in lams {
        let kappa = (lmax + lam) / (lmin + lam);
        let predicted = kappa * (1.0 / tol).ln();
        let measured = gd_iterations(&step, p, lmax, lam, tol, (4.0 * predicted) as usize + 10)?;
        rows.push(Row { lam, kappa, predicted, measured });
    }
    Ok((lmax, lmin, rows))
}

fn main() -> Result<(), Error> {
    let p = problem(400, 20);
    let tol = 1e-4;
    let compiler = Compiler::new()?;
    let (lmax, lmin, rows) = table(&compiler, &p, &[0.0, 0.001, 0.01, 0.1], tol)?;
    println!("A = XᵀX/M, K={}: λ_max = {lmax:.4}, λ_min = {lmin:.5} (power iteration)", p.k);
    println!("GD with step 1/(λ_max+λ) from θ=0 until ‖θ−θ*‖ ≤ {tol:.0e}·‖θ*‖:");
    println!("{:>7} | {:>8} | {:>16} | {:>14}", "λ", "κ", "κ·ln(1/tol)", "measured steps");
    for r in &rows {
        let m = r.measured.map_or("> cap".to_string(), |n| n.to_string());
        println!("{:>7} | {:>8.2} | {:>16.0} | {:>14}", r.lam, r.kappa, r.predicted, m);
    }
    println!("(ridge also moves the solution θ*: it trades bias for conditioning)");
    Ok(())
}
