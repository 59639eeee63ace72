//! The runnable examples' claims, checked: each example's logic is a set of
//! `pub fn`s in `examples/NAME.rs`, included here as a module (its `main`
//! is unused), run at small sizes.

#[allow(dead_code)]
#[path = "../examples/lasso_ista.rs"]
mod lasso_ista;

#[allow(dead_code)]
#[path = "../examples/ridge_conditioning.rs"]
mod ridge_conditioning;

#[allow(dead_code)]
#[path = "../examples/weight_decay_equivalence.rs"]
mod weight_decay_equivalence;

#[allow(dead_code)]
#[path = "../examples/spectral_norm_layer.rs"]
mod spectral_norm_layer;

#[allow(dead_code)]
#[path = "../examples/custom_ops.rs"]
mod custom_ops;

use normjit::Compiler;

fn compiler() -> Compiler {
    Compiler::new().expect("a host Cranelift supports")
}

/// Eigenvalues of the symmetric n×n matrix `a` (row-major) by cyclic
/// Jacobi rotations, in f64, ascending.
fn jacobi_eigenvalues(mut a: Vec<f64>, n: usize) -> Vec<f64> {
    for _sweep in 0..100 {
        let off: f64 = (0..n * n).filter(|ij| ij / n != ij % n).map(|ij| a[ij] * a[ij]).sum();
        if off < 1e-30 {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq == 0.0 {
                    continue;
                }
                // The rotation that zeroes a[p][q] (Golub & Van Loan 8.5.2).
                let tau = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = tau.signum() / (tau.abs() + (1.0 + tau * tau).sqrt());
                let t = if tau == 0.0 { 1.0 } else { t };
                let c = 1.0 / (1.0 + t * t).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (akp, akq) = (a[k * n + p], a[k * n + q]);
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[p * n + k], a[q * n + k]);
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
            }
        }
    }
    let mut e: Vec<f64> = (0..n).map(|i| a[i * n + i]).collect();
    e.sort_by(f64::total_cmp);
    e
}

#[test]
fn jacobi_is_right_on_a_known_matrix() {
    // [[2, 1], [1, 2]] has eigenvalues 1 and 3; diag(1..4) plus a rotation-free check.
    let e = jacobi_eigenvalues(vec![2.0, 1.0, 1.0, 2.0], 2);
    assert!((e[0] - 1.0).abs() < 1e-12 && (e[1] - 3.0).abs() < 1e-12, "{e:?}");
    let a = vec![4.0, 1.0, 0.0, 1.0, 3.0, 1.0, 0.0, 1.0, 2.0];
    let e = jacobi_eigenvalues(a, 3);
    // Trace 9, determinant 18: 3 - sqrt(3), 3, 3 + sqrt(3).
    let want = [3.0 - 3f64.sqrt(), 3.0, 3.0 + 3f64.sqrt()];
    for (x, w) in e.iter().zip(want) {
        assert!((x - w).abs() < 1e-12, "{e:?}");
    }
}

#[test]
fn lasso_ista_recovers_the_support_and_beats_the_subgradient_method() {
    let p = lasso_ista::problem(200, 50, 0.1);
    let out = lasso_ista::solve(&compiler(), &p, 300, &[]).unwrap();
    assert_eq!(lasso_ista::support(&out.ista), lasso_ista::TRUE_SUPPORT.to_vec(), "ISTA's exact nonzeros");
    let last = out.rows.last().unwrap();
    assert_eq!(last.iter, 300);
    assert!(last.ista_obj <= last.sub_obj, "ISTA {} vs subgradient {}", last.ista_obj, last.sub_obj);
    // The subgradient iterate has no exact zeros off the support (it
    // oscillates around them).
    assert!(last.sub_nnz > lasso_ista::TRUE_SUPPORT.len(), "subgradient nnz {}", last.sub_nnz);
    assert_eq!(last.sub_nnz, lasso_ista::support(&out.subgrad).len());
}

#[test]
fn ridge_shrinks_kappa_and_gd_iterations_as_theory_predicts() {
    let p = ridge_conditioning::problem(200, 12);
    // Power iteration agrees with the exact eigenvalues.
    let exact = jacobi_eigenvalues(p.a.clone(), p.k);
    let (lmax, lmin) = ridge_conditioning::extreme_eigenvalues(&p);
    assert!((lmax - exact[p.k - 1]).abs() <= 1e-9 * lmax, "λ_max {lmax} vs {}", exact[p.k - 1]);
    assert!((lmin - exact[0]).abs() <= 1e-6 * lmax, "λ_min {lmin} vs {}", exact[0]);

    let lams = [0.0, 0.01, 0.1];
    let (_, _, rows) = ridge_conditioning::table(&compiler(), &p, &lams, 1e-4).unwrap();
    let mut prev = usize::MAX;
    for r in &rows {
        let m = r.measured.unwrap_or_else(|| panic!("λ={}: no convergence within the cap", r.lam));
        let ratio = m as f64 / r.predicted;
        assert!((0.5..=2.0).contains(&ratio), "λ={}: {m} steps vs κ·ln(1/tol) = {:.0}", r.lam, r.predicted);
        assert!(m < prev, "λ={} should need fewer steps than a smaller ridge: {m} vs {prev}", r.lam);
        prev = m;
    }
    assert!(rows[0].kappa > 2.0 * rows[2].kappa, "ridge should shrink κ: {} vs {}", rows[0].kappa, rows[2].kappa);
}

#[test]
fn weight_decay_sgd_equivalent_adam_not() {
    let rows = weight_decay_equivalence::compare(&compiler(), 1000, 6, 1e-2, 0.1).unwrap();
    for r in &rows {
        // Plain SGD: the same update, rounded differently: at most a few
        // ulps of |p| < 1 per step.
        let rounding = r.step as f64 * 4.0 * f32::EPSILON as f64;
        assert!(r.sgd <= rounding, "step {}: SGD coupled vs decoupled differ by {:e}", r.step, r.sgd);
        // AdamW is "decay, then Adam(wd = 0)", up to rounding.
        assert!(r.adamw_vs_decay_adam <= rounding, "step {}: AdamW vs decay+Adam {:e}", r.step, r.adamw_vs_decay_adam);
        // Adam's coupled L2 is a different update: far above rounding.
        assert!(r.adam_vs_adamw >= 1e-4, "step {}: Adam vs AdamW only {:e}", r.step, r.adam_vs_adamw);
        assert!(r.sgd_momentum >= 1e-6 || r.step == 1, "step {}: momentum SGD {:e}", r.step, r.sgd_momentum);
    }
    // The difference grows over the steps.
    assert!(rows.last().unwrap().adam_vs_adamw > rows[0].adam_vs_adamw);
}

#[test]
fn spectral_norm_converges_to_the_largest_singular_value() {
    let (m, n) = (8, 6);
    let w = spectral_norm_layer::uniform(m * n, 1);
    // σ₁² is the largest eigenvalue of WᵀW.
    let wtw: Vec<f64> =
        (0..n * n).map(|ij| (0..m).map(|r| w[r * n + ij / n] as f64 * w[r * n + ij % n] as f64).sum()).collect();
    let eig = jacobi_eigenvalues(wtw, n);
    let sigma = eig[n - 1].sqrt();
    let c = compiler();
    let k = spectral_norm_layer::kernel(&c).unwrap();
    let (sigmas, w_sn) = spectral_norm_layer::power_iteration(&k, &w, m, n, 200).unwrap();
    let got = *sigmas.last().unwrap() as f64;
    assert!((got - sigma).abs() <= 1e-4 * sigma, "σ estimate {got} vs exact {sigma}");
    // Never above σ₁ (up to rounding): uᵀWv ≤ σ₁ for unit u, v.
    assert!(sigmas.iter().all(|&s| s as f64 <= sigma * (1.0 + 1e-5)));
    // W_sn = W/σ has spectral norm 1.
    let (again, _) = spectral_norm_layer::power_iteration(&k, &w_sn, m, n, 200).unwrap();
    assert!((*again.last().unwrap() as f64 - 1.0).abs() <= 1e-4, "σ(W_sn) = {}", again.last().unwrap());
}

#[test]
fn custom_ops_agree_with_the_f64_interpreter() {
    let c = compiler();
    // A D with a scalar tail, and one of whole vector blocks.
    for (n, d) in [(3, 67), (8, 256)] {
        for op in &custom_ops::OPS {
            let k = c.compile_named_source(op.name, op.source).unwrap();
            let (y, err) = custom_ops::check(&k, op.floor, n, d).unwrap();
            assert!(err <= 1e-5, "{} at N={n}, D={d}: error {err:e}", op.name);
            if op.name == "softmax" {
                for row in y.chunks(d) {
                    let s: f64 = row.iter().map(|&v| v as f64).sum();
                    assert!((s - 1.0).abs() <= 1e-5, "softmax row sums to {s}");
                }
            }
        }
    }
}

#[test]
fn custom_ops_bench_runs() {
    // The bench path at a tiny size: both sides run and time something.
    let c = compiler();
    let op = &custom_ops::OPS[0];
    let k = c.compile_named_source(op.name, op.source).unwrap();
    let (jit, interp) = custom_ops::bench(&k, 2, 64, 3).unwrap();
    assert!(jit > 0.0 && interp > 0.0);
}
