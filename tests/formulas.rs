//! The pipeline library's formulas, checked numerically on the reference
//! interpreter: each test loads an actual file under `ir/` and asserts
//! concrete numbers (with the tolerance stated next to each assertion)
//! against an independent computation in the test, or against a
//! mathematical property the formula must have (seed sections 9.3.x).
//!
//! The f64 interpreter is used for exact checks (there every param stays an
//! f64 and every op is rounded to f64); the f32 one where the point is f32
//! behaviour (dropout's exact scale, loose LayerNorm / spectral-norm checks).

use normjit::ir::{Kernel, Role};
use normjit_interp::{self as interp, Real};
use std::collections::HashMap;
use std::path::Path;

// ---------------------------------------------------------------- helpers

/// Loads a library file by its path relative to the crate root.
fn load(rel: &str) -> Kernel {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    normjit::load_kernel(&p).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `k` with dims and params by name (params through `resolve_params`,
/// so defaults apply) and `in`/`inout` tensors by name; returns every
/// `out`/`inout` result by name. Panics on an unknown or missing name.
fn run<T: Real>(
    k: &Kernel,
    dims: &[(&str, usize)],
    params: &[(&str, f64)],
    inputs: &[(&str, &[T])],
) -> HashMap<String, Vec<T>> {
    let given_dims: Vec<(String, String)> = dims.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
    let dims = normjit_cli::bind::resolve_dims(k, &given_dims, &[]).unwrap_or_else(|e| panic!("{}: {e}", k.name));
    // f64's Display is the shortest text that parses back to the same value.
    let given_params: Vec<(String, String)> = params.iter().map(|(n, v)| (n.to_string(), format!("{v}"))).collect();
    let params = normjit_cli::bind::resolve_params(k, &given_params).unwrap_or_else(|e| panic!("{}: {e}", k.name));
    for (name, _) in inputs {
        let t = k.tensor(name).unwrap_or_else(|| panic!("kernel {} has no tensor {name}", k.name));
        assert_ne!(k.tensors[t].role, Role::Out, "{name} is an out tensor of {}", k.name);
    }
    let slices: Vec<&[T]> = k
        .tensors
        .iter()
        .map(|(_, t)| match inputs.iter().find(|(n, _)| *n == t.name) {
            Some((_, s)) => *s,
            None if t.role == Role::Out => &[][..],
            None => panic!("no value given for {} of {}", t.name, k.name),
        })
        .collect();
    let out = interp::run::<T>(k, &dims, &params, &slices).unwrap_or_else(|e| panic!("{}: {e}", k.name));
    k.tensors
        .iter()
        .filter(|(_, t)| t.role != Role::In)
        .map(|(id, t)| (t.name.clone(), out.get(id).unwrap().to_vec()))
        .collect()
}

/// Deterministic test data (xorshift64*).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
    /// Uniform in [lo, hi).
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }
    /// Roughly standard normal (Irwin–Hall, 12 uniforms).
    fn normal(&mut self) -> f64 {
        (0..12).map(|_| self.unit()).sum::<f64>() - 6.0
    }
    fn normals(&mut self, n: usize) -> Vec<f64> {
        (0..n).map(|_| self.normal()).collect()
    }
}

fn rel_err(got: f64, want: f64) -> f64 {
    if got == want {
        0.0
    } else {
        (got - want).abs() / want.abs().max(f64::MIN_POSITIVE)
    }
}

/// Asserts `|got - want| <= tol * max(|want|, floor)` element by element.
#[track_caller]
fn assert_close(what: &str, got: &[f64], want: &[f64], tol: f64, floor: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let bound = tol * w.abs().max(floor);
        assert!((g - w).abs() <= bound, "{what}[{i}]: got {g:e}, want {w:e} (diff {:e} > {bound:e})", (g - w).abs());
    }
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// Biased (population) variance, two-pass.
fn var_biased(xs: &[f64]) -> f64 {
    let m = mean(xs);
    xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / xs.len() as f64
}

fn norm2(xs: &[f64]) -> f64 {
    xs.iter().map(|x| x * x).sum::<f64>().sqrt()
}

fn to_f32(xs: &[f64]) -> Vec<f32> {
    xs.iter().map(|&x| x as f32).collect()
}

fn to_f64(xs: &[f32]) -> Vec<f64> {
    xs.iter().map(|&x| x as f64).collect()
}

// ---------------------------------------------------- 1. soft threshold

/// softshrink(z, thr) written directly from its cases (9.3.12).
fn softshrink(z: f64, thr: f64) -> f64 {
    if z > thr {
        z - thr
    } else if z < -thr {
        z + thr
    } else {
        0.0
    }
}

#[test]
fn prox_l1_soft_thresholds_at_lr_times_lam() {
    let k = load("ir/optim/prox_l1.nj");
    let (lr, lam) = (0.1, 0.5);
    let thr: f64 = lr * lam; // 0.05
                             // Above, on and inside the threshold, and below it.
    let p = vec![0.3, 2.0, thr + 1e-9, thr, 0.02, 0.0, -0.0, -0.04, -thr, -thr - 1e-9, -0.2, -7.5];
    let g = vec![0.0; p.len()];
    let out = run::<f64>(&k, &[("P", p.len())], &[("lr", lr), ("lam", lam)], &[("p", &p), ("g", &g)]);
    let q = &out["p"];
    for (i, (&pi, &qi)) in p.iter().zip(q).enumerate() {
        if pi > thr {
            // Tolerance: one rounding of the subtraction (1e-15 absolute, values <= 7.5).
            assert!((qi - (pi - thr)).abs() <= 1e-15, "p={pi}: got {qi}, want {}", pi - thr);
            assert!(qi > 0.0);
        } else if pi < -thr {
            assert!((qi - (pi + thr)).abs() <= 1e-15, "p={pi}: got {qi}, want {}", pi + thr);
            assert!(qi < 0.0);
        } else {
            // Inside [-thr, thr] (boundary included): exactly zero.
            assert_eq!(qi, 0.0, "p[{i}]={pi} is inside the threshold but became {qi}");
        }
    }
    // Concrete values: 0.3 -> 0.25, -0.2 -> -0.15, 2 -> 1.95.
    assert!((q[0] - 0.25).abs() <= 1e-15 && (q[10] + 0.15).abs() <= 1e-15 && (q[1] - 1.95).abs() <= 1e-15, "{q:?}");
    // Just outside the threshold by 1e-9 moves by exactly ~1e-9.
    assert!((q[2] - 1e-9).abs() <= 1e-16 && (q[9] + 1e-9).abs() <= 1e-16, "{} {}", q[2], q[9]);
    // Documented deviation: a thresholded negative z gives -0.0 (sign(z) * 0).
    assert!(q[7].is_sign_negative() && q[7] == 0.0, "p=-0.04 gave {:?}", q[7]);
}

#[test]
fn prox_l1_with_gradient_thresholds_the_gradient_step() {
    let k = load("ir/optim/prox_l1.nj");
    let (lr, lam) = (0.05, 2.0); // thr = 0.1
    let thr = lr * lam;
    let mut r = Rng(17);
    let n = 200;
    let p: Vec<f64> = (0..n).map(|_| r.range(-0.5, 0.5)).collect();
    let g: Vec<f64> = (0..n).map(|_| r.range(-4.0, 4.0)).collect();
    let out = run::<f64>(&k, &[("P", n)], &[("lr", lr), ("lam", lam)], &[("p", &p), ("g", &g)]);
    let mut cases = [0usize; 3];
    for i in 0..n {
        let z = p[i] - lr * g[i];
        let want = softshrink(z, thr);
        cases[if z > thr {
            0
        } else if z < -thr {
            2
        } else {
            1
        }] += 1;
        // Tolerance 1e-15 absolute (|z| < 1): same roundings as the formula.
        assert!(
            (out["p"][i] - want).abs() <= 1e-15,
            "i={i} p={} g={} z={z}: got {}, want {want}",
            p[i],
            g[i],
            out["p"][i]
        );
        if want == 0.0 {
            assert_eq!(out["p"][i], 0.0, "z={z} inside the threshold");
        }
    }
    assert!(cases.iter().all(|&c| c >= 20), "test data should cover all three cases: {cases:?}");
    // A hand case where the gradient step lands inside: p=0.5, g=9 -> z=0.05 -> 0;
    // and one where it crosses zero: p=0.1, g=10 -> z=-0.4 -> -0.3.
    let out = run::<f64>(&k, &[("P", 2)], &[("lr", lr), ("lam", lam)], &[("p", &[0.5, 0.1]), ("g", &[9.0, 10.0])]);
    assert_eq!(out["p"][0], 0.0);
    assert!((out["p"][1] + 0.3).abs() <= 1e-15, "{}", out["p"][1]);
}

// ------------------------------------------------ 2. pure weight decay

#[test]
fn adamw_with_zero_gradient_is_pure_decay() {
    let k = load("ir/optim/adamw.nj");
    let (lr, wd) = (0.01, 0.5); // 1 - lr*wd = 0.995
    let steps = 10;
    let p0 = vec![1.0, -2.5, 3e-3, -1e6, 0.0, 42.0];
    let n = p0.len();
    let g = vec![0.0; n];
    let (mut p, mut m, mut v) = (p0.clone(), vec![0.0; n], vec![0.0; n]);
    for t in 1..=steps {
        let out = run::<f64>(
            &k,
            &[("P", n)],
            &[("lr", lr), ("wd", wd), ("t", t as f64)],
            &[("p", &p), ("m", &m), ("v", &v), ("g", &g)],
        );
        p = out["p"].clone();
        m = out["m"].clone();
        v = out["v"].clone();
        // g = 0 keeps the moments exactly 0, so the Adam term is 0 / (0 + eps) = 0.
        assert!(m.iter().chain(&v).all(|&x| x == 0.0), "t={t}: moments left 0: m={m:?} v={v:?}");
    }
    let c = (1.0f64 - lr * wd).powi(steps);
    let want: Vec<f64> = p0.iter().map(|x| x * c).collect();
    // 10 sequential roundings vs powi: 1e-12 relative.
    assert_close("adamw p_T", &p, &want, 1e-12, 0.0);
    assert!((p[0] - 0.995f64.powi(10)).abs() < 1e-12 && (p[0] - 0.9511101304657719).abs() < 1e-12, "p_T[0] = {}", p[0]);
}

#[test]
fn sgd_with_zero_gradient_is_pure_decay() {
    let k = load("ir/optim/sgd.nj");
    let (lr, wd) = (0.1, 0.3); // 1 - lr*wd = 0.97
    let steps = 10;
    let p0 = vec![1.0, -2.5, 3e-3, -1e6, 0.0, 42.0];
    let n = p0.len();
    let g = vec![0.0; n];
    let (mut p, mut buf) = (p0.clone(), vec![0.0; n]);
    for _ in 0..steps {
        let params = [("lr", lr), ("wd", wd), ("momentum", 0.0), ("dampening", 0.0)];
        let out = run::<f64>(&k, &[("P", n)], &params, &[("p", &p), ("buf", &buf), ("g", &g)]);
        // With momentum 0 the buffer is just the decayed gradient wd * p (1e-15 relative).
        let want_buf: Vec<f64> = p.iter().map(|x| wd * x).collect();
        assert_close("sgd buf", &out["buf"], &want_buf, 1e-15, 0.0);
        p = out["p"].clone();
        buf = out["buf"].clone();
    }
    let c = (1.0f64 - lr * wd).powi(steps);
    let want: Vec<f64> = p0.iter().map(|x| x * c).collect();
    // p - lr*(wd*p) vs p*(1 - lr*wd): a few roundings per step, 1e-12 relative.
    assert_close("sgd p_T", &p, &want, 1e-12, 0.0);
    assert!((p[0] - 0.97f64.powi(10)).abs() < 1e-12, "p_T[0] = {}", p[0]);
}

// ------------------------------------------------------- 3. LayerNorm

/// Random rows of different scales and offsets, including small-variance
/// rows where the eps effect var / (var + eps) is clearly below 1.
fn layer_norm_rows(n: usize, d: usize) -> Vec<f64> {
    let mut r = Rng(3);
    let scales = [1.0, 0.01, 5.0, 0.003, 0.2];
    let offsets = [0.0, 0.5, -3.0, 1.0, 10.0];
    (0..n).flat_map(|i| (0..d).map(|_| offsets[i % 5] + scales[i % 5] * r.normal()).collect::<Vec<_>>()).collect()
}

#[test]
fn layer_norm_rows_have_mean_zero_and_variance_var_over_var_plus_eps_f64() {
    let k = load("ir/norm/layer_norm.nj");
    let (n, d) = (5, 37);
    let eps = 1e-5; // the file's default; checked to be in effect below
    let x = layer_norm_rows(n, d);
    let ones = vec![1.0; d];
    let zeros = vec![0.0; d];
    let out = run::<f64>(&k, &[("N", n), ("D", d)], &[], &[("x", &x), ("gamma", &ones), ("beta", &zeros)]);
    let y = &out["y"];
    let mut smallest_ratio = 1.0f64;
    for i in 0..n {
        let xr = &x[i * d..(i + 1) * d];
        let yr = &y[i * d..(i + 1) * d];
        let var = var_biased(xr);
        let ratio = var / (var + eps);
        smallest_ratio = smallest_ratio.min(ratio);
        // Mean: |mean(y)| < 1e-12.
        assert!(mean(yr).abs() < 1e-12, "row {i}: mean(y) = {:e}", mean(yr));
        // Biased variance of y = var / (var + eps), within 1e-12 absolute.
        let vy = var_biased(yr);
        assert!((vy - ratio).abs() < 1e-12, "row {i}: var(y) = {vy}, want var/(var+eps) = {ratio} (var = {var:e})");
        // Normalizing by the unbiased variance instead would give var(y) =
        // var / (var * d/(d-1) + eps), 2.7% lower: far outside the tolerance.
        let unbiased = var * d as f64 / (d as f64 - 1.0);
        assert!((var / (unbiased + eps) - ratio).abs() > 1e-3);
        // Each element: (x - mu) / sqrt(var + eps), 1e-13 relative to the row's scale.
        let mu = mean(xr);
        for j in 0..d {
            let want = (xr[j] - mu) / (var + eps).sqrt();
            assert!((yr[j] - want).abs() <= 1e-13, "row {i} col {j}: got {}, want {want}", yr[j]);
        }
    }
    // The 0.003-scale row has var ~9e-6 ~ eps: the eps effect is visible.
    assert!(smallest_ratio < 0.6, "test data should have a row where eps matters: {smallest_ratio}");
}

#[test]
fn layer_norm_rows_have_mean_zero_and_unit_variance_f32() {
    let k = load("ir/norm/layer_norm.nj");
    let (n, d) = (5, 37);
    let eps = 1e-5f64;
    let x = to_f32(&layer_norm_rows(n, d));
    let ones = vec![1.0f32; d];
    let zeros = vec![0.0f32; d];
    let out = run::<f32>(&k, &[("N", n), ("D", d)], &[("eps", eps)], &[("x", &x), ("gamma", &ones), ("beta", &zeros)]);
    let y = to_f64(&out["y"]);
    for i in 0..n {
        // Statistics of the f32 inputs, computed in f64.
        let xr = to_f64(&x[i * d..(i + 1) * d]);
        let yr = &y[i * d..(i + 1) * d];
        let var = var_biased(&xr);
        let ratio = var / (var + eps as f32 as f64);
        // Loose f32 tolerance: 1e-5 absolute on the mean and the variance.
        assert!(mean(yr).abs() < 1e-5, "row {i}: mean(y) = {:e}", mean(yr));
        assert!((var_biased(yr) - ratio).abs() < 1e-5, "row {i}: var(y) = {}, want {ratio}", var_biased(yr));
    }
}

// ------------------------------------------------------- 4. BatchNorm

struct BnCase {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    x_nchw: Vec<f64>,
    gamma: Vec<f64>,
    beta: Vec<f64>,
    rm: Vec<f64>,
    rv: Vec<f64>,
}

fn bn_case() -> BnCase {
    let (n, c, h, w) = (3, 4, 2, 5); // n*h*w = 30 per channel: unbiased factor 30/29
    let mut r = Rng(11);
    let mut x = vec![0.0; n * c * h * w];
    for ni in 0..n {
        for ci in 0..c {
            for s in 0..h * w {
                x[(ni * c + ci) * h * w + s] = (ci as f64 - 1.5) * 2.0 + (0.5 + ci as f64) * r.normal();
            }
        }
    }
    let gamma = (0..c).map(|_| r.range(0.5, 2.0)).collect();
    let beta = (0..c).map(|_| r.range(-1.0, 1.0)).collect();
    let rm = (0..c).map(|_| r.range(-1.0, 1.0)).collect();
    let rv = (0..c).map(|_| r.range(0.5, 2.0)).collect();
    BnCase { n, c, h, w, x_nchw: x, gamma, beta, rm, rv }
}

impl BnCase {
    fn channel(&self, ci: usize) -> Vec<f64> {
        let hw = self.h * self.w;
        (0..self.n).flat_map(|ni| self.x_nchw[(ni * self.c + ci) * hw..(ni * self.c + ci + 1) * hw].to_vec()).collect()
    }
    fn nhwc(&self, nchw: &[f64]) -> Vec<f64> {
        let (n, c, h, w) = (self.n, self.c, self.h, self.w);
        let mut out = vec![0.0; nchw.len()];
        for ni in 0..n {
            for ci in 0..c {
                for hi in 0..h {
                    for wi in 0..w {
                        out[((ni * h + hi) * w + wi) * c + ci] = nchw[((ni * c + ci) * h + hi) * w + wi];
                    }
                }
            }
        }
        out
    }
    fn run(&self, file: &str, momentum: f64) -> HashMap<String, Vec<f64>> {
        let k = load(file);
        let nhwc = file.ends_with("_nhwc.nj");
        let x = if nhwc { self.nhwc(&self.x_nchw) } else { self.x_nchw.clone() };
        let dims = [("N", self.n), ("C", self.c), ("H", self.h), ("W", self.w)];
        let ins = [
            ("x", &x[..]),
            ("gamma", &self.gamma),
            ("beta", &self.beta),
            ("running_mean", &self.rm),
            ("running_var", &self.rv),
        ];
        let mut out = run::<f64>(&k, &dims, &[("momentum", momentum)], &ins);
        if nhwc {
            // Bring y back to NCHW so both layouts compare directly.
            let y = out["y"].clone();
            let (n, c, h, w) = (self.n, self.c, self.h, self.w);
            let mut back = vec![0.0; y.len()];
            for ni in 0..n {
                for ci in 0..c {
                    for hi in 0..h {
                        for wi in 0..w {
                            back[((ni * c + ci) * h + hi) * w + wi] = y[((ni * h + hi) * w + wi) * c + ci];
                        }
                    }
                }
            }
            out.insert("y".into(), back);
        }
        out
    }
}

fn check_batch_norm_train(file: &str) {
    let bn = bn_case();
    let cnt = (bn.n * bn.h * bn.w) as f64;
    let eps = 1e-5;
    let mus: Vec<f64> = (0..bn.c).map(|ci| mean(&bn.channel(ci))).collect();
    let vars: Vec<f64> = (0..bn.c).map(|ci| var_biased(&bn.channel(ci))).collect();
    let unbiased: Vec<f64> = vars.iter().map(|v| v * cnt / (cnt - 1.0)).collect();

    // momentum = 1: the running stats become the batch stats (1e-13 relative).
    let out = bn.run(file, 1.0);
    assert_close(&format!("{file} running_mean (momentum 1)"), &out["running_mean"], &mus, 1e-13, 1e-3);
    assert_close(&format!("{file} running_var (momentum 1)"), &out["running_var"], &unbiased, 1e-13, 0.0);
    for ci in 0..bn.c {
        // Distinguish biased from unbiased: they differ by a factor 30/29.
        assert!(rel_err(out["running_var"][ci], vars[ci]) > 0.03, "{file}: running_var[{ci}] is the biased variance");
    }

    // momentum = 0.1: the blend (1 - m) * old + m * batch (1e-13 relative).
    let m = 0.1;
    let out = bn.run(file, m);
    let want_rm: Vec<f64> = (0..bn.c).map(|ci| (1.0 - m) * bn.rm[ci] + m * mus[ci]).collect();
    let want_rv: Vec<f64> = (0..bn.c).map(|ci| (1.0 - m) * bn.rv[ci] + m * unbiased[ci]).collect();
    assert_close(&format!("{file} running_mean (momentum 0.1)"), &out["running_mean"], &want_rm, 1e-13, 1e-3);
    assert_close(&format!("{file} running_var (momentum 0.1)"), &out["running_var"], &want_rv, 1e-13, 0.0);

    // y normalizes with the BIASED variance (1e-13 relative, floor 1).
    let hw = bn.h * bn.w;
    let want_y: Vec<f64> = (0..bn.x_nchw.len())
        .map(|i| {
            let ci = (i / hw) % bn.c;
            (bn.x_nchw[i] - mus[ci]) / (vars[ci] + eps).sqrt() * bn.gamma[ci] + bn.beta[ci]
        })
        .collect();
    assert_close(&format!("{file} y"), &out["y"], &want_y, 1e-13, 1.0);
    // The unbiased variance would give y off by ~1.7% somewhere: make sure that is detectable.
    let max_dev = (0..want_y.len())
        .map(|i| {
            let ci = (i / hw) % bn.c;
            ((bn.x_nchw[i] - mus[ci]) / (unbiased[ci] + eps).sqrt() * bn.gamma[ci] + bn.beta[ci] - out["y"][i]).abs()
        })
        .fold(0.0, f64::max);
    assert!(max_dev > 1e-3, "{file}: y is indistinguishable from the unbiased-variance version");
}

#[test]
fn batch_norm_train_nchw_running_var_is_unbiased_and_y_uses_biased() {
    check_batch_norm_train("ir/norm/batch_norm_train.nj");
}

#[test]
fn batch_norm_train_nhwc_running_var_is_unbiased_and_y_uses_biased() {
    check_batch_norm_train("ir/norm/batch_norm_train_nhwc.nj");
}

#[test]
fn batch_norm_train_nchw_and_nhwc_agree_on_the_same_logical_data() {
    let bn = bn_case();
    for m in [1.0, 0.1] {
        let a = bn.run("ir/norm/batch_norm_train.nj", m);
        let b = bn.run("ir/norm/batch_norm_train_nhwc.nj", m);
        // Same math, same reduction order over (N, H, W): 1e-14 relative (floor 1).
        for name in ["y", "running_mean", "running_var"] {
            assert_close(&format!("nhwc vs nchw {name} (momentum {m})"), &b[name], &a[name], 1e-14, 1.0);
        }
    }
}

// --------------------------------------------------------- 5. RMSNorm

#[test]
fn rms_norm_is_scale_invariant_with_eps_zero() {
    let k = load("ir/norm/rms_norm.nj");
    let (n, d) = (4, 29);
    let mut r = Rng(5);
    let x = r.normals(n * d);
    let gamma: Vec<f64> = (0..d).map(|_| r.range(0.5, 1.5)).collect();
    let y_of = |x: &[f64], eps: f64| {
        run::<f64>(&k, &[("N", n), ("D", d)], &[("eps", eps)], &[("x", x), ("gamma", &gamma)])["y"].clone()
    };
    // eps = 0 makes the invariance exact in real arithmetic; f64 rounding
    // leaves a few ulps: 1e-14 relative (floor 1e-3 for entries near 0).
    let y = y_of(&x, 0.0);
    for c in [3.7, 1e-3] {
        let xc: Vec<f64> = x.iter().map(|v| c * v).collect();
        assert_close(&format!("rms_norm y({c} x) vs y(x), eps=0"), &y_of(&xc, 0.0), &y, 1e-14, 1e-3);
    }
    // y itself: x / rms(x) * gamma, 1e-14 relative (floor 1e-3).
    let want: Vec<f64> = (0..n * d)
        .map(|i| {
            let row = &x[i / d * d..(i / d + 1) * d];
            x[i] / (row.iter().map(|v| v * v).sum::<f64>() / d as f64).sqrt() * gamma[i % d]
        })
        .collect();
    assert_close("rms_norm y, eps=0", &y, &want, 1e-14, 1e-3);

    // With the default eps (1e-6, inside the root) the invariance breaks for
    // small c exactly as predicted: y(c x) = y(x) * sqrt(ms / (ms + eps / c^2)),
    // with ms = mean(x^2) (here ms ~ 1, so c = 1e-3 shrinks y by ~1/sqrt(2)).
    let eps = 1e-6;
    let c = 1e-3;
    let y_eps = y_of(&x, eps);
    let xc: Vec<f64> = x.iter().map(|v| c * v).collect();
    let yc_eps = y_of(&xc, eps);
    for i in 0..n {
        let row = &x[i * d..(i + 1) * d];
        let ms = row.iter().map(|v| v * v).sum::<f64>() / d as f64;
        let factor = ((ms + eps) / (ms + eps / (c * c))).sqrt();
        assert!(factor < 0.8, "the eps effect should be large here: {factor}");
        let want: Vec<f64> = y_eps[i * d..(i + 1) * d].iter().map(|v| v * factor).collect();
        assert_close(&format!("rms_norm eps effect row {i}"), &yc_eps[i * d..(i + 1) * d], &want, 1e-13, 1e-3);
    }
}

// --------------------------------------------------- 6. spectral norm

#[test]
fn spectral_norm_power_iteration_converges_to_the_largest_singular_value() {
    let k = load("ir/reg/spectral_norm.nj");
    let (m_, k_) = (3, 4);
    // U: 3x3 Householder I - 2 a a^T / |a|^2 with a = (1, 2, 2): (1/9) * integers.
    let u_mat =
        [[7.0 / 9.0, -4.0 / 9.0, -4.0 / 9.0], [-4.0 / 9.0, 1.0 / 9.0, -8.0 / 9.0], [-4.0 / 9.0, -8.0 / 9.0, 1.0 / 9.0]];
    // V: 4x4 Householder I - (1/2) ones (exact in binary); its first 3 columns.
    let v_mat = |i: usize, j: usize| if i == j { 0.5 } else { -0.5 };
    let s = [5.0, 2.0, 1.0];
    let mut w = vec![0.0; m_ * k_];
    for i in 0..m_ {
        for j in 0..k_ {
            w[i * k_ + j] = (0..3).map(|l| u_mat[i][l] * s[l] * v_mat(j, l)).sum();
        }
    }
    // Sanity of the construction: U orthonormal (1e-15).
    for a in 0..3 {
        for b in 0..3 {
            let dot: f64 = (0..3).map(|i| u_mat[i][a] * u_mat[i][b]).sum();
            assert!((dot - if a == b { 1.0 } else { 0.0 }).abs() < 1e-15);
        }
    }

    let mut u = vec![1.0, 0.0, 0.0];
    let mut v = vec![0.0; k_]; // never read: the step recomputes v from u
    let mut sigma = 0.0;
    let mut w_sn = Vec::new();
    for it in 0..50 {
        let out = run::<f64>(&k, &[("M", m_), ("K", k_)], &[], &[("w", &w), ("u", &u), ("v", &v)]);
        u = out["u"].clone();
        v = out["v"].clone();
        assert_eq!(out["sigma"].len(), 1);
        let s_new = out["sigma"][0];
        // sigma = u . W v with unit u, v never exceeds sigma_max (Rayleigh bound).
        assert!(s_new <= 5.0 + 1e-12, "iteration {it}: sigma = {s_new} > 5");
        if it == 0 {
            assert!(s_new < 5.0 - 1e-3, "first step should not already be converged: {s_new}");
        }
        sigma = s_new;
        w_sn = out["w_sn"].clone();
        // Every step: w_sn = w / sigma of that step (1e-15 relative, floor 1e-3).
        let want: Vec<f64> = w.iter().map(|x| x / sigma).collect();
        assert_close(&format!("w_sn at iteration {it}"), &w_sn, &want, 1e-15, 1e-3);
    }
    // Converged to 5 within 1e-9 (the error decays like (2/5)^(2*2*it)).
    assert!((sigma - 5.0).abs() < 1e-9, "sigma = {sigma}");
    // w_sn = w / sigma (1e-15 relative, floor 1e-3 for near-zero entries).
    let want: Vec<f64> = w.iter().map(|x| x / sigma).collect();
    assert_close("w_sn", &w_sn, &want, 1e-15, 1e-3);
    // u, v unit vectors (1e-14), aligned with the top singular vectors up to sign (1e-9).
    assert!(
        (norm2(&u) - 1.0).abs() < 1e-14 && (norm2(&v) - 1.0).abs() < 1e-14,
        "|u| = {}, |v| = {}",
        norm2(&u),
        norm2(&v)
    );
    let su = u.iter().zip(0..3).map(|(x, i)| x * u_mat[i][0]).sum::<f64>().signum();
    let sv = v.iter().zip(0..4).map(|(x, j)| x * v_mat(j, 0)).sum::<f64>().signum();
    for i in 0..3 {
        assert!((u[i] - su * u_mat[i][0]).abs() < 1e-9, "u = {u:?}");
    }
    for j in 0..4 {
        assert!((v[j] - sv * v_mat(j, 0)).abs() < 1e-9, "v = {v:?}");
    }
    // W v = sigma u for the converged pair (1e-9).
    for i in 0..3 {
        let wv: f64 = (0..4).map(|j| w[i * k_ + j] * v[j]).sum();
        assert!((wv - sigma * u[i]).abs() < 1e-9);
    }

    // The f32 interpreter converges too: 1e-5 relative.
    let w32 = to_f32(&w);
    let mut u32_ = vec![1.0f32, 0.0, 0.0];
    let mut v32 = vec![0.0f32; k_];
    let mut s32 = 0.0f32;
    for _ in 0..50 {
        let out = run::<f32>(&k, &[("M", m_), ("K", k_)], &[], &[("w", &w32), ("u", &u32_), ("v", &v32)]);
        u32_ = out["u"].clone();
        v32 = out["v"].clone();
        s32 = out["sigma"][0];
    }
    assert!(((s32 as f64) - 5.0).abs() < 5e-5, "f32 sigma = {s32}");
}

// --------------------------------------------------------- 7. dropout

#[test]
fn dropout_keeps_about_one_minus_p_and_scales_exactly() {
    let k = load("ir/reg/dropout.nj");
    let n = 100_000;
    // Nonzero x everywhere, so a kept element is never 0.
    let x: Vec<f32> = (0..n).map(|i| 0.005 + (i % 1000) as f32 * 0.01 - if i % 3 == 0 { 7.0 } else { 0.0 }).collect();
    assert!(x.iter().all(|&v| v != 0.0));
    let p = 0.3;
    let seed = 1234u32;
    let y_for =
        |p: f64, seed: u32| run::<f32>(&k, &[("N", n)], &[("p", p), ("seed", seed as f64)], &[("x", &x)])["y"].clone();
    let y = y_for(p, seed);
    // The file computes scale = 1 / (1 - p) once in f32, then x * scale.
    let scale = 1.0f32 / (1.0f32 - 0.3f32);
    let mut kept = 0usize;
    for i in 0..n {
        let keep = normjit::ir::rng::uniform(seed, i as u64) >= 0.3f32;
        if keep {
            kept += 1;
            // Exact f32 equality with x * (1 / (1 - p)).
            assert_eq!(
                y[i].to_bits(),
                (x[i] * scale).to_bits(),
                "i={i}: kept {} -> {}, want {}",
                x[i],
                y[i],
                x[i] * scale
            );
        } else {
            // Dropped: exactly +0.0.
            assert_eq!(y[i].to_bits(), 0, "i={i}: dropped but y = {}", y[i]);
        }
    }
    // Kept fraction within 0.01 of 0.7.
    let frac = kept as f64 / n as f64;
    assert!((frac - 0.7).abs() < 0.01, "kept fraction {frac}");
    // The mask read off y agrees with the count (x != 0, scale != 0).
    assert_eq!(y.iter().filter(|&&v| v != 0.0).count(), kept);

    // Same seed: same output bits. Different seed: a different mask (two
    // independent masks disagree on ~2 * 0.3 * 0.7 = 42% of elements; > 35%).
    assert_eq!(
        y_for(p, seed).iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        y.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
    let y2 = y_for(p, seed + 1);
    let differ = y.iter().zip(&y2).filter(|(a, b)| (**a == 0.0) != (**b == 0.0)).count();
    assert!(
        differ as f64 > 0.35 * n as f64 && (differ as f64) < 0.49 * n as f64,
        "masks of seeds {seed} and {} differ in {differ} of {n}",
        seed + 1
    );

    // p = 0 keeps everything unscaled (scale = 1 / 1 = 1): y == x bit for bit.
    let y0 = y_for(0.0, seed);
    assert!(y0.iter().zip(&x).all(|(a, b)| a.to_bits() == b.to_bits()), "p = 0 changed values");
    // p = 1 keeps nothing (u < 1): y = 0 everywhere.
    let y1 = y_for(1.0, seed);
    assert!(y1.iter().all(|v| v.to_bits() == 0), "p = 1 kept something");
}

// --------------------------------------------------- 8. AdamW vs Adam-L2

struct AdamCase {
    p: Vec<f64>,
    m: Vec<f64>,
    v: Vec<f64>,
    g: Vec<f64>,
}

fn adam_case(n: usize) -> AdamCase {
    let mut r = Rng(23);
    let p = r.normals(n);
    let m: Vec<f64> = (0..n).map(|_| 0.1 * r.normal()).collect();
    let v: Vec<f64> = (0..n).map(|_| r.range(1e-4, 1e-2)).collect();
    let g: Vec<f64> = (0..n).map(|_| 0.1 * r.normal()).collect();
    AdamCase { p, m, v, g }
}

fn run_adam(file: &str, c: &AdamCase, params: &[(&str, f64)]) -> HashMap<String, Vec<f64>> {
    let k = load(file);
    run::<f64>(&k, &[("P", c.p.len())], params, &[("p", &c.p), ("m", &c.m), ("v", &c.v), ("g", &c.g)])
}

#[test]
fn adamw_decouples_decay_from_the_moments_and_adam_couples_it() {
    let n = 64;
    let c = adam_case(n);
    let (lr, wd, t, b1, b2) = (1e-3, 0.1, 5.0, 0.9, 0.999);
    let base = [("lr", lr), ("t", t), ("beta1", b1), ("beta2", b2)];
    let with = |wd: f64| {
        let mut v = base.to_vec();
        v.push(("wd", wd));
        v
    };
    let adam0 = run_adam("ir/optim/adam.nj", &c, &with(0.0));
    let adam = run_adam("ir/optim/adam.nj", &c, &with(wd));
    let adamw0 = run_adam("ir/optim/adamw.nj", &c, &with(0.0));
    let adamw = run_adam("ir/optim/adamw.nj", &c, &with(wd));

    // AdamW's moments do not see wd: exactly Adam's at wd = 0 (and AdamW's at wd = 0).
    for name in ["m", "v"] {
        assert_eq!(adamw[name], adam0[name], "adamw(wd) {name} != adam(wd=0) {name}");
        assert_eq!(adamw[name], adamw0[name], "adamw(wd) {name} != adamw(wd=0) {name}");
    }
    // At wd = 0 both files are the same update, bit for bit.
    assert_eq!(adam0["p"], adamw0["p"], "adam and adamw differ at wd = 0");

    // Adam's moments see g + wd * p (1e-14 relative).
    let g1: Vec<f64> = (0..n).map(|i| c.g[i] + wd * c.p[i]).collect();
    let want_m: Vec<f64> = (0..n).map(|i| b1 * c.m[i] + (1.0 - b1) * g1[i]).collect();
    let want_v: Vec<f64> = (0..n).map(|i| b2 * c.v[i] + (1.0 - b2) * g1[i] * g1[i]).collect();
    assert_close("adam(wd) m", &adam["m"], &want_m, 1e-14, 0.0);
    assert_close("adam(wd) v", &adam["v"], &want_v, 1e-14, 0.0);
    assert!((0..n).all(|i| adam["m"][i] != adam0["m"][i]), "adam's m should move with wd");
    // Adam's p: the bias-corrected update on those moments (1e-14 relative).
    let bc1 = 1.0 - b1.powf(t);
    let bc2 = (1.0 - b2.powf(t)).sqrt();
    let want_p: Vec<f64> = (0..n).map(|i| c.p[i] - lr / bc1 * want_m[i] / (want_v[i].sqrt() / bc2 + 1e-8)).collect();
    assert_close("adam(wd) p", &adam["p"], &want_p, 1e-14, 0.0);

    // AdamW's p: p_adamw(wd) = p_adamw(0) - lr * wd * p, up to a few roundings:
    // 1e-15 relative to |p| + |update|.
    for i in 0..n {
        let upd = c.p[i] - adamw0["p"][i];
        let want = adamw0["p"][i] - lr * wd * c.p[i];
        let bound = 1e-15 * (c.p[i].abs() + upd.abs());
        assert!(
            (adamw["p"][i] - want).abs() <= bound,
            "i={i}: adamw p {} vs {want} (diff {:e} > {bound:e})",
            adamw["p"][i],
            (adamw["p"][i] - want).abs()
        );
    }
    // And the decay really is applied: p_adamw(wd) - p_adamw(0) = -lr*wd*p ~ 1e-4 * p.
    assert!((0..n).all(|i| (adamw["p"][i] - adamw0["p"][i] + lr * wd * c.p[i]).abs() < 1e-12
        && (adamw["p"][i] != adamw0["p"][i] || c.p[i] == 0.0)));

    // The two decays give different parameters: > 1e-6 apart for most elements.
    let far = (0..n).filter(|&i| (adam["p"][i] - adamw["p"][i]).abs() > 1e-6).count();
    let max_diff = (0..n).map(|i| (adam["p"][i] - adamw["p"][i]).abs()).fold(0.0, f64::max);
    assert!(
        far * 4 >= n * 3 && max_diff > 1e-5,
        "adam(wd) and adamw(wd) p differ by > 1e-6 in only {far} of {n} (max {max_diff:e})"
    );
}

// ------------------------------------------------------------ extras

#[test]
fn l1_subgrad_uses_sign_zero_equals_zero() {
    let k = load("ir/optim/l1_subgrad.nj");
    let (lr, lam) = (0.1, 0.2);
    let p = vec![0.0, -0.0, 0.0, 1.0, -1.0, 0.01];
    let g = vec![0.5, -0.3, 0.0, 0.5, 0.5, 0.0];
    let out = run::<f64>(&k, &[("P", p.len())], &[("lr", lr), ("lam", lam)], &[("p", &p), ("g", &g)]);
    let q = &out["p"];
    // p = 0 (either sign) moves only by -lr * g: exactly.
    assert_eq!(q[0], -lr * 0.5);
    assert_eq!(q[1], lr * 0.3);
    assert_eq!(q[2], 0.0, "p = 0, g = 0 must stay 0");
    // p != 0 gets the lam * sign(p) term (1e-15 absolute).
    assert!((q[3] - (1.0 - lr * (0.5 + lam))).abs() <= 1e-15, "{}", q[3]); // 0.93
    assert!((q[4] - (-1.0 - lr * (0.5 - lam))).abs() <= 1e-15, "{}", q[4]); // -1.03
                                                                            // The subgradient step overshoots zero instead of landing on it: 0.01 - 0.02 = -0.01.
    assert!((q[5] + 0.01).abs() <= 1e-15, "{}", q[5]);
}

#[test]
fn elastic_net_step_minimizes_its_proximal_objective() {
    let k = load("ir/optim/elastic_net.nj");
    let (lr, l1, l2) = (0.1, 1.5, 3.0); // lr * l1 = 0.15
    let mut r = Rng(29);
    let n = 300;
    let p: Vec<f64> = (0..n).map(|_| r.range(-1.0, 1.0)).collect();
    let g: Vec<f64> = (0..n).map(|_| r.range(-3.0, 3.0)).collect();
    let out = run::<f64>(&k, &[("P", n)], &[("lr", lr), ("l1", l1), ("l2", l2)], &[("p", &p), ("g", &g)]);
    let q = &out["p"];
    // F(q) = (q - z)^2 / (2 lr) + l1 |q| + l2 / 2 q^2 is strongly convex with
    // modulus mu = 1/lr + l2, so at its minimizer q*: F(q* +- d) >= F(q*) + mu/2 d^2.
    // Check with d = 1e-4 and a 1% margin on mu/2 d^2 (= 6.5e-8, far above f64 rounding).
    let mu = 1.0 / lr + l2;
    let d = 1e-4;
    let mut zeros = 0;
    for i in 0..n {
        let z = p[i] - lr * g[i];
        let f = |q: f64| (q - z) * (q - z) / (2.0 * lr) + l1 * q.abs() + l2 / 2.0 * q * q;
        for qq in [q[i] - d, q[i] + d] {
            assert!(
                f(qq) - f(q[i]) >= 0.99 * mu / 2.0 * d * d,
                "i={i} z={z}: F({qq}) - F({}) = {:e}",
                q[i],
                f(qq) - f(q[i])
            );
        }
        if q[i] == 0.0 {
            zeros += 1;
            assert!(z.abs() <= lr * l1, "z={z} was zeroed");
        }
    }
    assert!(
        zeros >= 10 && zeros <= n - 100,
        "test data should include thresholded and surviving entries: {zeros} zeros"
    );
    // l2 = 0 reduces to prox_l1 with lam = l1, bit for bit.
    let en = run::<f64>(&k, &[("P", n)], &[("lr", lr), ("l1", l1), ("l2", 0.0)], &[("p", &p), ("g", &g)]);
    let pl = run::<f64>(&load("ir/optim/prox_l1.nj"), &[("P", n)], &[("lr", lr), ("lam", l1)], &[("p", &p), ("g", &g)]);
    assert_eq!(en["p"], pl["p"]);
}

#[test]
fn softmax_and_dyt_follow_their_formulas() {
    let (n, d) = (5, 37);
    let mut r = Rng(41);
    // Offset rows: the max shift keeps exp finite.
    let x: Vec<f64> = (0..n * d).map(|i| r.range(-3.0, 3.0) + 100.0 * (i / d) as f64).collect();
    let out = run::<f64>(&load("ir/norm/softmax.nj"), &[("N", n), ("D", d)], &[], &[("x", &x)]);
    let mut want = vec![0.0; n * d];
    for row in 0..n {
        let xs = &x[row * d..][..d];
        let m = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let s: f64 = xs.iter().map(|v| (v - m).exp()).sum();
        for j in 0..d {
            want[row * d + j] = (xs[j] - m).exp() / s;
        }
        let total: f64 = out["y"][row * d..][..d].iter().sum();
        assert!((total - 1.0).abs() <= 1e-14, "row {row} sums to {total}");
    }
    assert_close("softmax", &out["y"], &want, 1e-14, 1e-300);
    let (gamma, beta) = (r.normals(d), r.normals(d));
    let out = run::<f64>(
        &load("ir/norm/dyt.nj"),
        &[("N", n), ("D", d)],
        &[("alpha", 0.7)],
        &[("x", &x), ("gamma", &gamma), ("beta", &beta)],
    );
    let want: Vec<f64> = (0..n * d).map(|i| gamma[i % d] * (0.7 * x[i]).tanh() + beta[i % d]).collect();
    assert_close("dyt", &out["y"], &want, 1e-15, 1e-15);
}

#[test]
fn ridge_step_is_a_gradient_step_on_the_ridge_objective() {
    let k = load("ir/optim/ridge_step.nj");
    let (m, kk, lr, lambda) = (203, 7, 0.05, 0.3);
    let mut r = Rng(37);
    let x = r.normals(m * kk);
    let y = r.normals(m);
    let theta = r.normals(kk);
    let out = run::<f64>(
        &k,
        &[("M", m), ("K", kk)],
        &[("lr", lr), ("lambda", lambda)],
        &[("X", &x), ("y", &y), ("theta", &theta)],
    );
    // Independently: the gradient of J(t) = |X t - y|^2 / (2M) + lambda/2 |t|^2.
    let j = |t: &[f64]| -> f64 {
        let mut s = 0.0;
        for i in 0..m {
            let ri: f64 = (0..kk).map(|c| x[i * kk + c] * t[c]).sum::<f64>() - y[i];
            s += ri * ri;
        }
        s / (2.0 * m as f64) + lambda / 2.0 * t.iter().map(|v| v * v).sum::<f64>()
    };
    let mut want = theta.clone();
    for c in 0..kk {
        // Central difference of J along c (J is quadratic: exact up to rounding).
        let h = 1e-3;
        let (mut a, mut b) = (theta.clone(), theta.clone());
        a[c] += h;
        b[c] -= h;
        let g = (j(&a) - j(&b)) / (2.0 * h);
        want[c] = theta[c] - lr * g;
    }
    assert_close("theta", &out["theta"], &want, 1e-8, 1e-12);
    // A small enough step decreases the objective.
    assert!(j(&out["theta"]) < j(&theta));
}

#[test]
fn adamw_clip_clips_the_gradient_to_max_norm() {
    let clip = load("ir/optim/adamw_clip.nj");
    let plain = load("ir/optim/adamw.nj");
    let n = 50;
    let mut r = Rng(31);
    let p = r.normals(n);
    let m0 = vec![0.0; n];
    let v0 = vec![0.0; n];
    let (lr, wd, t, b1, max_norm) = (1e-2, 0.05, 1.0, 0.9, 1.0);
    for gscale in [2.0, 0.01] {
        let g: Vec<f64> = (0..n).map(|_| gscale * r.normal()).collect();
        let total = norm2(&g);
        let params = [("lr", lr), ("wd", wd), ("t", t), ("beta1", b1)];
        let mut cp = params.to_vec();
        cp.push(("max_norm", max_norm));
        let got = run::<f64>(&clip, &[("P", n)], &cp, &[("p", &p), ("m", &m0), ("v", &v0), ("g", &g)]);
        if total > max_norm {
            // The effective gradient, read off m1 = (1 - beta1) * gc on zero m, has norm max_norm
            // (up to the 1e-6 guard in the denominator: relative 1e-6 / total < 1e-6).
            let gc: Vec<f64> = got["m"].iter().map(|x| x / (1.0 - b1)).collect();
            assert!((norm2(&gc) - max_norm).abs() < 1e-6, "|g| = {total}: clipped norm {}", norm2(&gc));
            assert!(total > 5.0, "test should clip substantially: |g| = {total}");
        }
        // Equal to adamw on the pre-clipped g: coef = min(max_norm / (|g| + 1e-6), 1), 1e-14 relative.
        let coef = (max_norm / (total + 1e-6)).min(1.0);
        let gc: Vec<f64> = g.iter().map(|x| x * coef).collect();
        let want = run::<f64>(&plain, &[("P", n)], &params, &[("p", &p), ("m", &m0), ("v", &v0), ("g", &gc)]);
        for name in ["p", "m", "v"] {
            assert_close(&format!("adamw_clip {name} (|g| = {total})"), &got[name], &want[name], 1e-14, 0.0);
        }
        if total <= max_norm {
            // No clipping: exactly adamw on g.
            assert_eq!(coef, 1.0);
            let unclipped = run::<f64>(&plain, &[("P", n)], &params, &[("p", &p), ("m", &m0), ("v", &v0), ("g", &g)]);
            assert_eq!(got["p"], unclipped["p"]);
        }
    }
}

#[test]
fn sgd_nesterov_matches_pytorch_update() {
    let k = load("ir/optim/sgd_nesterov.nj");
    let plain = load("ir/optim/sgd.nj");
    let n = 40;
    let mut r = Rng(37);
    let p = r.normals(n);
    let buf = r.normals(n);
    let g = r.normals(n);
    let (lr, mom, damp, wd) = (0.05, 0.9, 0.1, 0.01);
    let params = [("lr", lr), ("momentum", mom), ("dampening", damp), ("wd", wd)];
    let out = run::<f64>(&k, &[("P", n)], &params, &[("p", &p), ("buf", &buf), ("g", &g)]);
    let sgd = run::<f64>(&plain, &[("P", n)], &params, &[("p", &p), ("buf", &buf), ("g", &g)]);
    // torch.optim.SGD(nesterov=True): d_p = g + wd p; buf = mom buf + (1 - damp) d_p;
    // p -= lr (d_p + mom buf). 1e-14 relative (floor 1e-3).
    let mut want_buf = vec![0.0; n];
    let mut want_p = vec![0.0; n];
    for i in 0..n {
        let dp = g[i] + wd * p[i];
        want_buf[i] = mom * buf[i] + (1.0 - damp) * dp;
        want_p[i] = p[i] - lr * (dp + mom * want_buf[i]);
    }
    assert_close("nesterov buf", &out["buf"], &want_buf, 1e-14, 1e-3);
    assert_close("nesterov p", &out["p"], &want_p, 1e-14, 1e-3);
    // Same buffer as plain SGD; p differs (Nesterov looks ahead).
    assert_eq!(out["buf"], sgd["buf"]);
    assert!((0..n).filter(|&i| (out["p"][i] - sgd["p"][i]).abs() > 1e-3).count() > n / 2);
}
