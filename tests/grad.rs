//! Backward kernels from `normjit_ir::grad`, checked numerically.
//!
//! - **Gradient checks** against central finite differences of the f64
//!   reference interpreter, for every differentiable library kernel (and
//!   a few user-style kernels: softmax, log-softmax, DyT, LayerNorm + GELU,
//!   a `repeat` power iteration, spectral norm, `std`) at odd shapes (every
//!   dim 1, 3 or 5; LayerNorm at 3 x 1023, dropout at 1023), with respect
//!   to every `in` tensor, at every element. Step `h = 1e-6 · max(|x|,
//!   0.1)`. The difference of the loss `L = Σ dy · y` is summed over the
//!   outputs that moved (`Σ dy · (y(x+h) − y(x−h)) / 2h`), so outputs that
//!   did not move add no rounding. Tolerance per element: `|fd − g| ≤ 1e-6
//!   · (|g| + mean|g|) + 10 · noise`, where `noise = Σ |dy| · (|y+| + |y0| +
//!   |y−|) · eps64 / h` over the moved outputs bounds the rounding of the
//!   difference (it dominates where a gradient is small against its
//!   outputs: RMSNorm's dx at D = 1 is 1e-5 from cancelling terms of order
//!   1). Measured: worst relative error 4e-9 where the tolerance governs.
//! - **Refusals**: every library kernel with an `inout` tensor (the
//!   optimizer steps, add_rms_norm's residual, BatchNorm-train's running
//!   statistics, spectral norm's u and v) is refused, naming the tensor.
//! - **Closed forms**: LayerNorm, RMSNorm and BatchNorm backward (training
//!   statistics, written here without the running-statistics update, and
//!   inference) by the standard formulas, against the generated kernels in
//!   f64, to 1e-12 relative.
//! - **Saved statistics**: LayerNorm's backward taking `mu` and `var` as
//!   inputs equals the recomputing one.
//! - **The text**: LayerNorm's backward prints the expected statements,
//!   parses back equal, and `normjit_ir::check` accepts it (one warning:
//!   `beta` is not read; none with `prune_unused`), as it does every
//!   library backward.
//! - **The JIT**: every library backward compiled with `Compiler::kernel`
//!   agrees with the f64 interpreter within f32 tolerance (`common::compare`:
//!   1e-5 of the scale, or 4x the f32 interpreter's own error), and equals
//!   the loop-IR interpreter bit for bit at chunk sizes 1, 7, 64 and 32768
//!   on 1–3 threads (f32 storage). Backward kernels of random kernels pass
//!   the testkit's `run_case` (JIT = loop IR bit for bit at two sizes,
//!   oracle, both references), with the generator's storage types and
//!   NaN/Inf inputs.
//! - **Random kernels** from `normjit-testkit` (tensors stored f32 so that
//!   loads do not round the step away, sizes 1–5): 1,000 kernels
//!   (`NORMJIT_GRAD_CASES`) without `inout` tensors or constants of
//!   magnitude 1e30 (which absorb any step in f64: `x − 1e30`), each
//!   differentiated with respect to every `in` tensor and checked at 6
//!   sampled elements per tensor, with normal inputs and cotangents;
//!   kernels whose sampled gradients are all exactly 0 do not count. Outputs that are not finite, or
//!   where the f32 reference is off by more than 1e-3 (ill-conditioned,
//!   like the log of a rounding residue), get cotangent 0. Step `h = 1e-5 ·
//!   max(|x|, 0.1)`. A sampled element is skipped, and counted, where the
//!   kernel is not smooth or the check cannot resolve it: an output turns
//!   non-finite within ±h or the gradient is not finite; the one-sided
//!   differences disagree (`|fd+ − fd−| > 1e-3 · (|fd+| + |fd−|)` plus
//!   noise: a kink or a jump); the central differences at h and 2h
//!   disagree, or the gradient moves by more than 1e-3 between x and x + h
//!   (rounding-dominated). Skipped elements must stay under 25% of those
//!   sampled (measured: 5%, nearly all non-finite). The others must
//!   satisfy `|fd − g| ≤ 1e-6 · (|g| + |fd| + mean|g|) + 10 · noise +
//!   floor`, with `noise` as above but counting intermediates of order 1
//!   and the outputs that did not move, and `floor = 1e-12 · Σ |dy| ·
//!   max(|y|, 1)` for gradients that are 0 in exact arithmetic (`x / x`);
//!   fewer than 5% of the non-zero ones may have an allowance looser than
//!   1e-5 relative. Measured over 30,000 kernels: worst relative error
//!   3e-7.
//! - **Robustness**: `grad` never panics on random kernels (with `inout`
//!   tensors too) and random, partly invalid `wrt` and saved lists.

mod common;

use common::*;
use normjit::ir::{grad, grad_with, parse, GradOptions, Kernel, Role, Storage};
use normjit_testkit::{Case, Choices};
use std::collections::HashMap;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Roughly standard normal numbers (Box–Muller), deterministic.
struct Gauss(Pick);

impl Gauss {
    fn unit(&mut self) -> f64 {
        ((self.0.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.unit(), self.unit());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

fn elems(k: &Kernel, t: normjit::ir::TensorId, dims: &[usize]) -> usize {
    k.tensors[t].dims.iter().map(|d| dims[d.index()]).product()
}

/// A forward kernel at given sizes, params, inputs and cotangents.
struct Problem {
    fwd: Kernel,
    dims: Vec<usize>,
    params: Vec<f64>,
    /// By forward tensor index: the entry values of `in` tensors (empty for `out`).
    inputs: Vec<Vec<f64>>,
    /// By forward tensor index: the cotangent of each `out` tensor (empty for `in`).
    cot: Vec<Vec<f64>>,
}

impl Problem {
    /// Plausible inputs (the CLI's generator; tensors it makes non-negative,
    /// such as a running variance under `rsqrt`, are moved to [0.5, 1.5) so
    /// that they stay away from 0) and normal cotangents.
    fn library(fwd: &Kernel, dims: &[usize], seed: u64) -> Problem {
        let params = params(fwd);
        let gen = inputs(fwd, dims, &params, seed, false);
        let mut g = Gauss(Pick(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1));
        let mut inputs = Vec::new();
        let mut cot = Vec::new();
        for (id, t) in fwd.tensors.iter() {
            let v = &gen[id.index()];
            if t.role == Role::Out {
                inputs.push(vec![]);
                cot.push((0..elems(fwd, id, dims)).map(|_| g.normal()).collect());
            } else {
                let nonneg = v.iter().all(|&x| x >= 0.0) && v.len() > 1;
                inputs.push(v.iter().map(|&x| if nonneg { 0.5 + x as f64 } else { x as f64 }).collect());
                cot.push(vec![]);
            }
        }
        Problem { fwd: fwd.clone(), dims: dims.to_vec(), params, inputs, cot }
    }

    /// Every output of the forward in f64, by tensor index.
    fn forward(&self, inputs: &[Vec<f64>]) -> Vec<Vec<f64>> {
        let s: Vec<&[f64]> = inputs.iter().map(|v| v.as_slice()).collect();
        let out = normjit_interp::run::<f64>(&self.fwd, &self.dims, &self.params, &s)
            .unwrap_or_else(|e| panic!("{}: {e}", self.fwd.name));
        self.fwd.tensors.iter().map(|(id, _)| out.get(id).map(<[f64]>::to_vec).unwrap_or_default()).collect()
    }

    /// The backward's tensors by its own index: forward inputs, cotangents
    /// and `saved` values by name; empty for its outputs.
    fn backward_tensors(&self, bwd: &Kernel, saved: &HashMap<String, Vec<f64>>) -> Vec<Vec<f64>> {
        bwd.tensors
            .iter()
            .map(|(_, t)| {
                if t.role == Role::Out {
                    return vec![];
                }
                if let Some(f) = self.fwd.tensor(&t.name) {
                    return self.inputs[f.index()].clone();
                }
                if let Some(f) = t.name.strip_prefix('d').and_then(|n| self.fwd.tensor(n)) {
                    return self.cot[f.index()].clone();
                }
                saved.get(&t.name).cloned().unwrap_or_else(|| panic!("no value for `{}`", t.name))
            })
            .collect()
    }

    fn backward_params(&self, bwd: &Kernel) -> Vec<f64> {
        bwd.params.iter().map(|(_, p)| self.params[self.fwd.param(&p.name).unwrap().index()]).collect()
    }

    /// The gradients the backward stores, by name, from the f32
    /// interpreter on the inputs and cotangents rounded to f32.
    fn backward32(&self, bwd: &Kernel) -> HashMap<String, Vec<f32>> {
        let t: Vec<Vec<f32>> =
            self.backward_tensors(bwd, &HashMap::new()).iter().map(|v| v.iter().map(|&x| x as f32).collect()).collect();
        let s: Vec<&[f32]> = t.iter().map(|v| v.as_slice()).collect();
        let out = normjit_interp::run::<f32>(bwd, &self.dims, &self.backward_params(bwd), &s)
            .unwrap_or_else(|e| panic!("{}: {e}", bwd.name));
        bwd.tensors
            .iter()
            .filter(|(_, t)| t.role == Role::Out)
            .map(|(id, t)| (t.name.clone(), out.get(id).unwrap().to_vec()))
            .collect()
    }

    /// The gradients the backward stores, by name, in f64.
    fn backward(&self, bwd: &Kernel, saved: &HashMap<String, Vec<f64>>) -> HashMap<String, Vec<f64>> {
        let t = self.backward_tensors(bwd, saved);
        let s: Vec<&[f64]> = t.iter().map(|v| v.as_slice()).collect();
        let out = normjit_interp::run::<f64>(bwd, &self.dims, &self.backward_params(bwd), &s)
            .unwrap_or_else(|e| panic!("{}: {e}", bwd.name));
        bwd.tensors
            .iter()
            .filter(|(_, t)| t.role == Role::Out)
            .map(|(id, t)| (t.name.clone(), out.get(id).unwrap().to_vec()))
            .collect()
    }
}

/// What a gradient check saw.
#[derive(Default, Debug)]
struct Fd {
    checked: usize,
    kinks: usize,
    nonfinite: usize,
    /// Skipped where the central differences at h and 2h disagree.
    unresolved: usize,
    /// Checked elements where the outputs' rounding noise, not the
    /// relative tolerance, set the allowed error.
    noise_limited: usize,
    /// Checked elements whose gradient is exactly 0 both ways.
    zero: usize,
    /// Largest relative error among the others.
    max_err: f64,
    /// Largest relative error of all.
    max_all: f64,
}

impl Fd {
    fn add(&mut self, o: &Fd) {
        self.checked += o.checked;
        self.kinks += o.kinks;
        self.nonfinite += o.nonfinite;
        self.unresolved += o.unresolved;
        self.noise_limited += o.noise_limited;
        self.zero += o.zero;
        self.max_err = self.max_err.max(o.max_err);
        self.max_all = self.max_all.max(o.max_all);
    }
}

/// How strict a gradient check is.
#[derive(Clone, Copy)]
enum Mode<'a> {
    /// Library kernels: every element smooth and finite; relative error
    /// `≤ tol` of `|g| + mean|g|`.
    Strict(f64),
    /// Random kernels, with their backward: kinks, non-finite values and
    /// ill-conditioned points are skipped (counted).
    Lenient(&'a Kernel),
}

/// Central finite differences of the f64 forward against the gradients
/// `grads` for each tensor in `wrt`: at every element, or at `sample`
/// random ones.
fn fd_check(
    p: &Problem,
    grads: &HashMap<String, Vec<f64>>,
    wrt: &[&str],
    sample: Option<usize>,
    pick: &mut Pick,
    mode: Mode<'_>,
) -> Result<Fd, String> {
    let mut fd = Fd::default();
    let y0 = p.forward(&p.inputs);
    let outs: Vec<usize> =
        p.fwd.tensors.iter().filter(|(_, t)| t.role == Role::Out).map(|(id, _)| id.index()).collect();
    // Random kernels: a gradient that is 0 in exact arithmetic (`x / x`)
    // comes out of f64 as rounding, of the order of eps times the loss's
    // terms; below this, any two values agree.
    let floor = 1e-12
        * outs
            .iter()
            .flat_map(|&o| y0[o].iter().zip(&p.cot[o]))
            .filter(|(y, _)| y.is_finite())
            .map(|(y, dy)| dy.abs() * y.abs().max(1.0))
            .sum::<f64>();
    let grads32 = match mode {
        Mode::Lenient(bwd) => p.backward32(bwd),
        Mode::Strict(_) => HashMap::new(),
    };
    for w in wrt {
        let t = p.fwd.tensor(w).unwrap().index();
        let g = &grads[&format!("d{w}")];
        let n = p.inputs[t].len();
        assert_eq!(g.len(), n, "d{w}");
        let finite: Vec<f64> = g.iter().copied().filter(|x| x.is_finite()).collect();
        let scale = finite.iter().map(|x| x.abs()).sum::<f64>() / finite.len().max(1) as f64;
        let idx: Vec<usize> = match sample {
            Some(s) if s < n => (0..s).map(|_| pick.below(n)).collect(),
            _ => (0..n).collect(),
        };
        for i in idx {
            let x = p.inputs[t][i];
            let h = match mode {
                Mode::Strict(_) => 1e-6,
                // A larger step for random kernels: 10x less rounding noise
                // (whose bound sums over every output), and their curvature
                // is caught by the checks at 2h.
                Mode::Lenient(_) => 1e-5,
            } * x.abs().max(0.1);
            let at = |v: f64| {
                let mut inputs = p.inputs.clone();
                inputs[t][i] = v;
                p.forward(&inputs)
            };
            // Σ dy·Δy over the outputs at x ± step: the one-sided and
            // central differences, their rounding noise, and whether every
            // output stayed finite (or constant).
            let diffs = |step: f64| {
                let (xp, xm) = (x + step, x - step);
                let (yp, ym) = (at(xp), at(xm));
                let (mut up, mut down, mut noise, mut noise1) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
                let mut smooth = true;
                for &o in &outs {
                    for j in 0..y0[o].len() {
                        let (a, b, c) = (yp[o][j], y0[o][j], ym[o][j]);
                        if a.is_finite() && b.is_finite() && c.is_finite() {
                            let dy = p.cot[o][j];
                            up += dy * (a - b);
                            down += dy * (b - c);
                            // Outputs that did not move add nothing, not
                            // even rounding error.
                            if a != b || b != c {
                                noise += dy.abs() * (a.abs() + b.abs() + c.abs()) * f64::EPSILON;
                                // The same with intermediates of order 1 at
                                // least: an output that cancels (`x - (x -
                                // m)`) keeps their rounding.
                                noise1 += dy.abs() * 3.0 * a.abs().max(b.abs()).max(c.abs()).max(1.0) * f64::EPSILON;
                            } else {
                                // An output that did not move may still
                                // depend on x below its rounding (`x0 +
                                // 1e-10 * x1` absorbs the change of x1).
                                noise1 += dy.abs() * b.abs() * f64::EPSILON;
                            }
                        } else if !(a.to_bits() == b.to_bits() && b.to_bits() == c.to_bits()
                            || a.is_nan() && b.is_nan() && c.is_nan())
                        {
                            smooth = false;
                        }
                    }
                }
                let (fp, fm) = (up / (xp - x), down / (x - xm));
                (fp, fm, (up + down) / (xp - xm), noise / step, noise1 / step, smooth)
            };
            let (fp, fm, central, noise, noise1, smooth_outputs) = diffs(h);
            let an = g[i];
            let what = || {
                format!(
                    "{} {:?}: d{w}[{i}] = {an:e}, central difference {central:e} (one-sided {fp:e}, {fm:e})",
                    p.fwd.name, p.dims
                )
            };
            match mode {
                Mode::Strict(tol) => {
                    if !smooth_outputs || !an.is_finite() || !central.is_finite() {
                        return Err(format!("non-finite: {}", what()));
                    }
                    // Where the gradient is small against the outputs (RMSNorm
                    // at D = 1: dx ~ 1e-5 from cancelling terms of order 1),
                    // the rounding of the outputs, divided by h, dominates.
                    let rel = tol * (an.abs() + scale);
                    let err = (central - an).abs() / (an.abs() + scale).max(1e-300);
                    if (central - an).abs() > rel + 10.0 * noise {
                        return Err(format!("error {err:.2e} > {tol:e} (rounding noise {noise:.1e}): {}", what()));
                    }
                    fd.record(err, 10.0 * noise > rel);
                }
                Mode::Lenient(bwd) => {
                    let noise = noise1;
                    if !smooth_outputs || !an.is_finite() || !central.is_finite() {
                        fd.nonfinite += 1;
                        continue;
                    }
                    if (fp - fm).abs() > 1e-3 * (fp.abs() + fm.abs()) + 10.0 * noise {
                        fd.kinks += 1;
                        continue;
                    }
                    // The difference must have converged: at 2h it gives the
                    // same (rounding in intermediates that cancel, like
                    // `mean(x - mean(x))`, is invisible in the outputs'
                    // noise but not here).
                    let (_, _, central2, _, noise2, smooth2) = diffs(2.0 * h);
                    let agree = LENIENT * (central.abs() + central2.abs() + scale) + 10.0 * (noise + noise2) + floor;
                    if !smooth2 || !central2.is_finite() || (central - central2).abs() > agree {
                        fd.unresolved += 1;
                        continue;
                    }
                    // The gradient itself must be well conditioned: where
                    // it is f64 rounding of huge terms (the adjoint of
                    // `log(abs(r))` with `r` a rounding residue), it jumps
                    // between x and x + h while the forward does not move.
                    let mut moved = p.inputs.clone();
                    moved[t][i] = x + h;
                    let an2 = Problem {
                        inputs: moved,
                        fwd: p.fwd.clone(),
                        dims: p.dims.clone(),
                        params: p.params.clone(),
                        cot: p.cot.clone(),
                    }
                    .backward(bwd, &HashMap::new())[&format!("d{w}")][i];
                    if !an2.is_finite() || (an2 - an).abs() > 1e-3 * (an.abs() + an2.abs()) + 10.0 * noise + floor {
                        fd.unresolved += 1;
                        continue;
                    }
                    // The f64 gradient's own rounding: where the backward
                    // cancels huge terms (an adjoint of 1e15 through
                    // `rsqrt(mean((x - x)^2) + 1e-30)`), the f32 backward
                    // is off by its rounding of them, and f64's is
                    // eps64/eps32 = 2^-29 of that (1e-8: with a margin).
                    let g32 = grads32[&format!("d{w}")][i] as f64;
                    let cond = if g32.is_finite() { 1e-8 * (g32 - an).abs() } else { 0.0 };
                    let rel = LENIENT * (an.abs() + central.abs() + scale);
                    let allowed = rel + 10.0 * noise + floor + cond;
                    if (central - an).abs() > allowed {
                        return Err(format!("error {:.2e} > {allowed:.2e}: {}", (central - an).abs(), what()));
                    }
                    let err = if an == 0.0 && central == 0.0 {
                        0.0
                    } else {
                        (central - an).abs() / (an.abs() + central.abs() + scale).max(1e-300)
                    };
                    // Noise-limited: the allowance is looser than 1e-5 relative.
                    fd.record(err, allowed > 10.0 * rel);
                }
            }
        }
    }
    Ok(fd)
}

impl Fd {
    fn record(&mut self, err: f64, noise_limited: bool) {
        self.checked += 1;
        self.max_all = self.max_all.max(err);
        if err == 0.0 {
            self.zero += 1;
        } else if noise_limited {
            self.noise_limited += 1;
        } else {
            self.max_err = self.max_err.max(err);
        }
    }
}

/// The relative tolerance of the random-kernel gradient check.
const LENIENT: f64 = 1e-6;

fn in_names(k: &Kernel) -> Vec<&str> {
    k.tensors.iter().filter(|(_, t)| t.role == Role::In).map(|(_, t)| t.name.as_str()).collect()
}

fn lib(name: &str) -> Kernel {
    library().into_iter().find(|(_, k)| k.name == name).unwrap_or_else(|| panic!("no library kernel {name}")).1
}

/// Odd shapes: every dim 1, 3 or 5, in a few arrangements.
fn odd_shapes(n: usize) -> Vec<Vec<usize>> {
    let sizes = [1usize, 3, 5];
    let mut out: Vec<Vec<usize>> = (0..3).map(|r| (0..n).map(|i| sizes[(i + r) % 3]).collect()).collect();
    out.push(vec![1; n]);
    out.push((0..n).map(|i| sizes[(2 * i + 1) % 3]).collect());
    out.sort();
    out.dedup();
    out
}

// ---------------------------------------------------------------------------
// Library kernels
// ---------------------------------------------------------------------------

const DIFFERENTIABLE: [&str; 9] = [
    "batch_norm_infer",
    "dropout",
    "dyt",
    "group_norm",
    "instance_norm",
    "layer_norm",
    "layer_norm_onepass",
    "rms_norm",
    "softmax",
];

#[test]
fn kernels_with_inout_tensors_are_refused_and_the_others_differentiate() {
    let mut refused = Vec::new();
    let mut ok = Vec::new();
    for (_, k) in library() {
        let ins = in_names(&k);
        let inout = k.tensors.iter().find(|(_, t)| t.role == Role::InOut).map(|(_, t)| t.name.clone());
        match (grad(&k, &ins), inout) {
            (Err(e), Some(t)) => {
                assert!(
                    e.starts_with(&format!("`{t}` is inout: optimizer steps are not differentiable kernels")),
                    "{}: {e}",
                    k.name
                );
                refused.push(k.name.clone());
            }
            (Ok(g), None) => {
                assert_eq!(g.name, format!("{}_grad", k.name));
                ok.push(k.name.clone());
            }
            (r, inout) => panic!("{}: inout {inout:?} but grad gave {:?}", k.name, r.map(|g| g.to_string())),
        }
    }
    ok.sort();
    assert_eq!(ok, DIFFERENTIABLE, "the differentiable library kernels");
    for name in ["add_rms_norm", "batch_norm_train", "batch_norm_train_nhwc", "spectral_norm", "adamw", "sgd"] {
        assert!(refused.iter().any(|r| r == name), "{name} is not refused: {refused:?}");
    }
}

#[test]
fn gradient_check_of_every_differentiable_library_kernel_at_odd_shapes() {
    let mut pick = Pick(0x6AD1_E27C_0000_0013);
    let mut report = Vec::new();
    for name in DIFFERENTIABLE {
        let k = lib(name);
        let wrt = in_names(&k);
        let bwd = grad(&k, &wrt).unwrap();
        let mut shapes = odd_shapes(k.dims.len());
        if name == "layer_norm" {
            shapes.push(vec![3, 1023]);
        }
        if name == "dropout" {
            shapes.push(vec![1023]);
        }
        let mut total = Fd::default();
        for (s, dims) in shapes.iter().enumerate() {
            let p = Problem::library(&k, dims, 17 + s as u64);
            let grads = p.backward(&bwd, &HashMap::new());
            let fd = fd_check(&p, &grads, &wrt, None, &mut pick, Mode::Strict(1e-6)).unwrap_or_else(|e| panic!("{e}"));
            total.add(&fd);
        }
        report.push(format!(
            "{name}: {} elements at {} shapes, max relative error {:.2e} ({:.2e} where not limited by rounding noise, \
             {} elements are)",
            total.checked,
            shapes.len(),
            total.max_all,
            total.max_err,
            total.noise_limited
        ));
    }
    eprintln!("{}", report.join("\n"));
}

/// The library kernels with `inout` tensors that differentiate when told
/// what the tensors are: state (running statistics) or a result updated in
/// place (the residual stream).
fn stateful_library() -> Vec<(&'static str, Vec<&'static str>, GradOptions)> {
    let state = || GradOptions { state: vec!["running_mean".into(), "running_var".into()], ..Default::default() };
    vec![
        (
            "add_rms_norm",
            vec!["x", "gamma", "residual"],
            GradOptions { inplace: vec!["residual".into()], ..Default::default() },
        ),
        ("batch_norm_train", vec!["x", "gamma", "beta"], state()),
        ("batch_norm_train_nhwc", vec!["x", "gamma", "beta"], state()),
    ]
}

#[test]
fn gradient_check_of_library_kernels_with_state_or_updates_in_place() {
    let mut pick = Pick(0x6AD1_E27C_0000_0031);
    for (name, wrt, opts) in stateful_library() {
        let k = lib(name);
        let f = normjit::ir::grad::functional(&k, &opts).unwrap();
        assert!(f.tensors.iter().all(|(_, t)| t.role != Role::InOut), "{name}");
        let bwd = grad_with(&k, &wrt, &opts).unwrap();
        assert_eq!(bwd, grad(&f, &wrt).unwrap(), "{name}: the backward is that of its functional form");
        let mut total = Fd::default();
        for (s, dims) in odd_shapes(k.dims.len()).iter().enumerate() {
            let p = Problem::library(&f, dims, 41 + s as u64);
            let grads = p.backward(&bwd, &HashMap::new());
            let fd = fd_check(&p, &grads, &wrt, None, &mut pick, Mode::Strict(1e-6)).unwrap_or_else(|e| panic!("{e}"));
            total.add(&fd);
        }
        assert!(total.checked > 0, "{name}");
        eprintln!("{name}: {} elements, max relative error {:.2e}", total.checked, total.max_all);
    }
    // The residual's update is an output with its own cotangent, which
    // flows into the entry value's gradient; running statistics do not.
    let add = grad_with(&lib("add_rms_norm"), &["x", "residual"], &stateful_library()[0].2).unwrap();
    assert!(add.tensor("dresidual_out").is_some() && add.tensor("dresidual").is_some());
    let bn = grad_with(&lib("batch_norm_train"), &["x"], &stateful_library()[1].2).unwrap();
    assert!(bn.tensor("drunning_mean").is_none() && bn.tensor("running_mean").is_some());
    // Misuse is an error that says what to do.
    let err = |k: &str, wrt: &[&str], opts: GradOptions| grad_with(&lib(k), wrt, &opts).unwrap_err();
    let e = err("add_rms_norm", &["x"], GradOptions::default());
    assert!(e.contains("--inplace residual") && e.contains("--state residual"), "{e}");
    let e = err("batch_norm_train", &["running_mean"], stateful_library()[1].2.clone());
    assert!(e.contains("`running_mean` is state"), "{e}");
    let e = err("layer_norm", &["x"], GradOptions { state: vec!["gamma".into()], ..Default::default() });
    assert!(e.contains("not an inout tensor"), "{e}");
    let e = err(
        "add_rms_norm",
        &["x"],
        GradOptions { state: vec!["residual".into()], inplace: vec!["residual".into()], ..Default::default() },
    );
    assert!(e.contains("both"), "{e}");
}

/// Kernels beyond the library, as users write them (the `custom_ops`
/// example's, a power iteration unrolled by `repeat`, spectral norm with
/// its vectors as inputs, `var` sugar): the same strict gradient check.
const CUSTOM: [&str; 9] = [
    "kernel gelu_silu { dims N, D\n in x: f32[N, D]\n out g: f32[N, D]\n out s: f32[N, D]
       g = 0.5 * x * (1 + erf(x * 0.7071067811865476))\n s = x * sigmoid(x) }",
    "kernel dyt_tanh { dims N, D\n in x: f32[N, D]\n in gamma: f32[D]\n in beta: f32[D]\n out y: f32[N, D]
       param alpha = 0.5\n y = gamma * tanh(alpha * x) + beta }",
    "kernel softmax { dims N, D\n in x: f32[N, D]\n out y: f32[N, D]\n e = exp(x - max(x, D))\n y = e / sum(e, D) }",
    "kernel log_softmax { dims N, D\n in x: f32[N, D]\n out y: f32[N, D]\n xm = x - max(x, D)\n y = xm - log(sum(exp(xm), D)) }",
    "kernel dyt { dims N, D\n in x: f32[N, D]\n in gamma: f32[D]\n in beta: f32[D]\n out y: f32[N, D]\n param alpha = 0.5
       t = 1 - 2 / (exp(2 * alpha * x) + 1)\n y = gamma * t + beta }",
    "kernel layer_norm_gelu { dims N, D\n in x: f32[N, D]\n in gamma: f32[D]\n in beta: f32[D]\n out y: f32[N, D]
       param eps = 1e-5
       xc = x - mean(x, D)
       h = xc * rsqrt(mean(xc * xc, D) + eps) * gamma + beta
       z = 0.7978845608028654 * (h + 0.044715 * h * h * h)
       y = h / (1 + exp(-2 * z)) }",
    "kernel power_iteration { dims M, K\n in w: f32[M, K]\n in u: f32[M]\n out sigma: f32[]\n out u_next: f32[M]
       un = u
       repeat 3 {
         v = sum(w * un, M)
         v = v / sqrt(sum(v * v, K))
         wv = sum(w * v, K)
         un = wv / sqrt(sum(wv * wv, M))
       }
       u_next = un
       sigma = sum(un * wv, M) }",
    "kernel spectral_norm_fn { dims M, K\n in w: f32[M, K]\n in u: f32[M]\n out w_sn: f32[M, K]\n param eps = 1e-12
       wtu = sum(w * u, M)
       v1 = wtu / max(sqrt(sum(wtu * wtu, K)), eps)
       wv = sum(w * v1, K)
       u1 = wv / max(sqrt(sum(wv * wv, M)), eps)
       w_sn = w / sum(u1 * wv, M) }",
    "kernel ln_var { dims N, D\n in x: f32[N, D]\n out y: f32[N, D]\n y = (x - mean(x, D)) / std(x, D) + pow(abs(x) + 1, 1.5) }",
];

#[test]
fn gradient_check_of_custom_kernels() {
    let mut pick = Pick(0xC057_0000_0000_0001);
    for src in CUSTOM {
        let k = parse(src).unwrap_or_else(|d| panic!("{}", d.render("k.nj", src)));
        let wrt = in_names(&k);
        let bwd = grad(&k, &wrt).unwrap();
        assert_eq!(parse(&bwd.to_string()).as_ref(), Ok(&bwd));
        let mut total = Fd::default();
        for (s, dims) in odd_shapes(k.dims.len()).iter().enumerate() {
            // `std` and the power iteration divide by a norm: keep rows of
            // more than one element, as their users would.
            if dims.contains(&1) && (k.name == "ln_var" || k.name.contains("power") || k.name.contains("spectral")) {
                continue;
            }
            let p = Problem::library(&k, dims, 31 + s as u64);
            let grads = p.backward(&bwd, &HashMap::new());
            total.add(
                &fd_check(&p, &grads, &wrt, None, &mut pick, Mode::Strict(1e-6))
                    .unwrap_or_else(|e| panic!("{e}\n{bwd}")),
            );
        }
        assert!(total.checked > 0, "{}", k.name);
        eprintln!("{}: {} elements, max relative error {:.2e}", k.name, total.checked, total.max_all);
    }
}

/// Dropout's backward recomputes the mask from the same seed: `dx = dy`
/// scaled where kept, exactly 0 where dropped.
#[test]
fn dropout_backward_reuses_the_mask() {
    let k = lib("dropout");
    let bwd = grad(&k, &["x"]).unwrap();
    let dims = [1000];
    let p = Problem::library(&k, &dims, 5);
    let y = p.forward(&p.inputs);
    let dx = &p.backward(&bwd, &HashMap::new())["dx"];
    let (x, yv, dy) = (&p.inputs[0], &y[1], &p.cot[1]);
    let scale = 1.0 / (1.0 - p.params[0]);
    let mut dropped = 0;
    for i in 0..1000 {
        if yv[i] == 0.0 && x[i] != 0.0 {
            dropped += 1;
            assert_eq!(dx[i], 0.0);
        } else {
            assert!((dx[i] - dy[i] * scale).abs() <= 1e-15 * dy[i].abs(), "{i}: {} vs {}", dx[i], dy[i] * scale);
        }
    }
    assert!((50..150).contains(&dropped), "{dropped} of 1000 dropped at p = 0.1");
}

// ---------------------------------------------------------------------------
// Closed forms
// ---------------------------------------------------------------------------

/// `got` within `tol` of `want`, relative to `|want| + mean|want| +
/// terms`, where `terms` is the size of the terms the formulas add up (a
/// result that cancels, like RMSNorm's dx at D = 1, is exact only to
/// their rounding).
fn close(what: &str, got: &[f64], want: &[f64], terms: f64, tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}");
    let scale = want.iter().map(|x| x.abs()).sum::<f64>() / want.len().max(1) as f64;
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol * (w.abs() + scale + terms), "{what}[{i}]: {g} vs {w}");
    }
}

/// Mean of `|a · b|` elementwise, `b` repeated: the size of a formula's terms.
fn terms(a: &[f64], b: &[f64]) -> f64 {
    a.iter().enumerate().map(|(i, x)| (x * b[i % b.len()]).abs()).sum::<f64>() / a.len().max(1) as f64
}

/// Per-row statistics and the standard LayerNorm / RMSNorm backward.
#[test]
fn layer_norm_and_rms_norm_backward_match_the_closed_forms() {
    for (n, d) in [(1, 1), (3, 5), (4, 1023)] {
        // LayerNorm: xhat = (x - mu) * rstd; dxhat = dy * gamma;
        // dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat));
        // dgamma = Σ_n dy * xhat; dbeta = Σ_n dy.
        let k = lib("layer_norm");
        let p = Problem::library(&k, &[n, d], 3);
        let g = p.backward(&grad(&k, &["x", "gamma", "beta"]).unwrap(), &HashMap::new());
        let (x, gamma, dy, eps) = (&p.inputs[0], &p.inputs[1], &p.cot[3], p.params[0]);
        let (mut dx, mut dgamma, mut dbeta) = (vec![0.0; n * d], vec![0.0; d], vec![0.0; d]);
        for r in 0..n {
            let row = &x[r * d..(r + 1) * d];
            let mu = row.iter().sum::<f64>() / d as f64;
            let var = row.iter().map(|v| (v - mu) * (v - mu)).sum::<f64>() / d as f64;
            let rstd = 1.0 / (var + eps).sqrt();
            let xhat: Vec<f64> = row.iter().map(|v| (v - mu) * rstd).collect();
            let dxhat: Vec<f64> = (0..d).map(|j| dy[r * d + j] * gamma[j]).collect();
            let m1 = dxhat.iter().sum::<f64>() / d as f64;
            let m2 = (0..d).map(|j| dxhat[j] * xhat[j]).sum::<f64>() / d as f64;
            for j in 0..d {
                dx[r * d + j] = rstd * (dxhat[j] - m1 - xhat[j] * m2);
                dgamma[j] += dy[r * d + j] * xhat[j];
                dbeta[j] += dy[r * d + j];
            }
        }
        let t = terms(dy, gamma) / eps.sqrt();
        close("layer_norm dx", &g["dx"], &dx, t, 1e-12);
        close("layer_norm dgamma", &g["dgamma"], &dgamma, 0.0, 1e-12);
        close("layer_norm dbeta", &g["dbeta"], &dbeta, 0.0, 1e-12);

        // RMSNorm: r = rsqrt(mean(x^2) + eps); dxhat = dy * gamma;
        // dx = r * dxhat - x * r^3 * mean(dxhat * x); dgamma = Σ_n dy * x * r.
        let k = lib("rms_norm");
        let p = Problem::library(&k, &[n, d], 4);
        let g = p.backward(&grad(&k, &["x", "gamma"]).unwrap(), &HashMap::new());
        let (x, gamma, dy, eps) = (&p.inputs[0], &p.inputs[1], &p.cot[2], p.params[0]);
        let (mut dx, mut dgamma) = (vec![0.0; n * d], vec![0.0; d]);
        for r in 0..n {
            let row = &x[r * d..(r + 1) * d];
            let rs = 1.0 / (row.iter().map(|v| v * v).sum::<f64>() / d as f64 + eps).sqrt();
            let m = (0..d).map(|j| dy[r * d + j] * gamma[j] * row[j]).sum::<f64>() / d as f64;
            for j in 0..d {
                dx[r * d + j] = rs * dy[r * d + j] * gamma[j] - row[j] * rs * rs * rs * m;
                dgamma[j] += dy[r * d + j] * row[j] * rs;
            }
        }
        let t = terms(dy, gamma) / terms(x, &[1.0]);
        close("rms_norm dx", &g["dx"], &dx, t, 1e-12);
        close("rms_norm dgamma", &g["dgamma"], &dgamma, 0.0, 1e-12);
    }
}

/// BatchNorm with batch statistics (the training forward, written without
/// the running-statistics update, which makes the library kernel
/// refused) and BatchNorm inference, against the standard formulas:
/// training `dx = rstd/m · (m·dxhat − Σdxhat − xhat·Σ(dxhat·xhat))` per
/// channel over m = N·H·W; inference `dx = dy·gamma·rstd`,
/// `drunning_mean = −Σ dy·gamma·rstd`,
/// `drunning_var = −½ Σ dy·gamma·(x − rm)·rstd³`.
#[test]
fn batch_norm_backward_matches_the_closed_forms() {
    let k = parse(
        "kernel bn { dims N, C, H, W
           in x: f32[N, C, H, W]
           in gamma: f32[C]
           in beta: f32[C]
           out y: f32[N, C, H, W]
           param eps = 1e-5
           mu = mean(x, N, H, W)
           xc = x - mu
           var = mean(xc * xc, N, H, W)
           y = xc * rsqrt(var + eps) * gamma + beta }",
    )
    .unwrap();
    let dims = [3, 2, 5, 3];
    let (n, c, hw) = (3, 2, 15);
    let at = |i: usize, ch: usize, s: usize| (i * c + ch) * hw + s;
    let p = Problem::library(&k, &dims, 8);
    let g = p.backward(&grad(&k, &["x", "gamma", "beta"]).unwrap(), &HashMap::new());
    let (x, gamma, dy, eps) = (&p.inputs[0], &p.inputs[1], &p.cot[3], p.params[0]);
    let m = (n * hw) as f64;
    let (mut dx, mut dgamma, mut dbeta) = (vec![0.0; x.len()], vec![0.0; c], vec![0.0; c]);
    for ch in 0..c {
        let idx: Vec<usize> = (0..n).flat_map(|i| (0..hw).map(move |s| at(i, ch, s))).collect();
        let mu = idx.iter().map(|&j| x[j]).sum::<f64>() / m;
        let var = idx.iter().map(|&j| (x[j] - mu) * (x[j] - mu)).sum::<f64>() / m;
        let rstd = 1.0 / (var + eps).sqrt();
        let s1: f64 = idx.iter().map(|&j| dy[j] * gamma[ch]).sum();
        let s2: f64 = idx.iter().map(|&j| dy[j] * gamma[ch] * (x[j] - mu) * rstd).sum();
        for &j in &idx {
            let xhat = (x[j] - mu) * rstd;
            dx[j] = rstd / m * (m * dy[j] * gamma[ch] - s1 - xhat * s2);
            dgamma[ch] += dy[j] * xhat;
            dbeta[ch] += dy[j];
        }
    }
    close("bn dx", &g["dx"], &dx, 0.0, 1e-12);
    close("bn dgamma", &g["dgamma"], &dgamma, 0.0, 1e-12);
    close("bn dbeta", &g["dbeta"], &dbeta, 0.0, 1e-12);

    let k = lib("batch_norm_infer");
    let p = Problem::library(&k, &dims, 9);
    let g = p.backward(&grad(&k, &in_names(&k)).unwrap(), &HashMap::new());
    let (x, gamma, rm, rv, dy, eps) = (&p.inputs[0], &p.inputs[1], &p.inputs[3], &p.inputs[4], &p.cot[5], p.params[0]);
    let (mut dx, mut dgamma, mut drm, mut drv) = (vec![0.0; x.len()], vec![0.0; c], vec![0.0; c], vec![0.0; c]);
    for ch in 0..c {
        let rstd = 1.0 / (rv[ch] + eps).sqrt();
        for i in 0..n {
            for s in 0..hw {
                let j = at(i, ch, s);
                dx[j] = dy[j] * gamma[ch] * rstd;
                dgamma[ch] += dy[j] * (x[j] - rm[ch]) * rstd;
                drm[ch] -= dy[j] * gamma[ch] * rstd;
                drv[ch] -= 0.5 * dy[j] * gamma[ch] * (x[j] - rm[ch]) * rstd * rstd * rstd;
            }
        }
    }
    close("bn_infer dx", &g["dx"], &dx, 0.0, 1e-12);
    close("bn_infer dgamma", &g["dgamma"], &dgamma, 0.0, 1e-12);
    close("bn_infer drunning_mean", &g["drunning_mean"], &drm, 0.0, 1e-12);
    close("bn_infer drunning_var", &g["drunning_var"], &drv, 0.0, 1e-12);
}

#[test]
fn layer_norm_backward_with_saved_statistics_equals_the_recomputing_one() {
    let k = lib("layer_norm");
    let wrt = ["x", "gamma", "beta"];
    let opts = GradOptions { saved: vec!["mu".into(), "var".into()], ..Default::default() };
    let saved_bwd = grad_with(&k, &wrt, &opts).unwrap();
    let text = saved_bwd.to_string();
    assert!(text.contains("in mu: f32[N]") && text.contains("in var: f32[N]"), "{text}");
    assert!(
        !text.contains("mean(x, D)") && !text.lines().any(|l| l.starts_with("  mu =") || l.starts_with("  var =")),
        "{text}"
    );
    for dims in [[3, 5], [2, 1023]] {
        let (n, d) = (dims[0], dims[1]);
        let p = Problem::library(&k, &dims, 11);
        let x = &p.inputs[0];
        let mu: Vec<f64> = (0..n).map(|r| x[r * d..(r + 1) * d].iter().sum::<f64>() / d as f64).collect();
        let var: Vec<f64> = (0..n)
            .map(|r| x[r * d..(r + 1) * d].iter().map(|v| (v - mu[r]) * (v - mu[r])).sum::<f64>() / d as f64)
            .collect();
        let saved = HashMap::from([("mu".to_string(), mu), ("var".to_string(), var)]);
        let want = p.backward(&grad(&k, &wrt).unwrap(), &HashMap::new());
        let got = p.backward(&saved_bwd, &saved);
        for w in ["dx", "dgamma", "dbeta"] {
            close(w, &got[w], &want[w], 0.0, 1e-13);
        }
    }
}

// ---------------------------------------------------------------------------
// The text
// ---------------------------------------------------------------------------

#[test]
fn layer_norm_backward_text_parses_back_and_check_accepts_it() {
    let k = lib("layer_norm");
    let bwd = grad(&k, &["x", "gamma", "beta"]).unwrap();
    let text = bwd.to_string();
    eprintln!("{text}");
    for line in [
        "kernel layer_norm_grad {",
        "  in dy: f32[N, D]",
        "  out dx: f32[N, D]",
        "  out dgamma: f32[D]",
        "  param eps = 1e-5",
        "  mu = mean(x, D)",
        "  xc = x - mu",
        "  dbeta = sum(dy, N)",
    ] {
        assert!(text.lines().any(|l| l == line), "missing `{line}` in\n{text}");
    }
    assert_eq!(parse(&text).unwrap(), bwd);
    let (checked, diags) = normjit::ir::check(text.as_bytes());
    assert_eq!(checked.as_ref(), Some(&bwd), "{}", diags.render("layer_norm_grad.nj", &text));
    // The stable signature keeps `beta`, which the backward never reads.
    assert_eq!(diags.warning_count(), 1, "{}", diags.render("layer_norm_grad.nj", &text));
    assert!(diags.render("g.nj", &text).contains("`in` tensor `beta` is never read"));

    let pruned =
        grad_with(&k, &["x", "gamma", "beta"], &GradOptions { prune_unused: true, ..Default::default() }).unwrap();
    let ptext = pruned.to_string();
    let (checked, diags) = normjit::ir::check(ptext.as_bytes());
    assert!(checked.is_some() && diags.is_empty(), "{}", diags.render("g.nj", &ptext));
    assert!(!ptext.contains("in beta:"), "{ptext}");
}

#[test]
fn every_library_backward_prints_parses_back_and_checks_clean_when_pruned() {
    for name in DIFFERENTIABLE {
        let k = lib(name);
        let ins = in_names(&k);
        // Every `wrt` subset of size 1 and the full one.
        let mut lists: Vec<Vec<&str>> = ins.iter().map(|&i| vec![i]).collect();
        lists.push(ins.clone());
        for wrt in lists {
            for prune in [false, true] {
                let g = grad_with(&k, &wrt, &GradOptions { prune_unused: prune, ..Default::default() })
                    .unwrap_or_else(|e| panic!("{name} {wrt:?}: {e}"));
                let text = g.to_string();
                assert_eq!(parse(&text).as_ref(), Ok(&g), "{name} {wrt:?}");
                let (checked, diags) = normjit::ir::check(text.as_bytes());
                assert!(checked.is_some(), "{name} {wrt:?}");
                if prune {
                    assert!(diags.is_empty(), "{name} {wrt:?}: {}", diags.render("g.nj", &text));
                }
                assert!(!text.contains(" _t"), "{name}: printer temporaries in\n{text}");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The JIT
// ---------------------------------------------------------------------------

fn backward_inputs32(bwd: &Kernel, dims: &[usize], seed: u64) -> Vec<Vec<f32>> {
    let mut g = Gauss(Pick(seed | 1));
    let mut v = inputs(bwd, dims, &params(bwd), seed, false);
    // The CLI's generator treats cotangents as any input; make them normal.
    for ((_, t), buf) in bwd.tensors.iter().zip(v.iter_mut()) {
        if t.role == Role::In && t.name.starts_with('d') {
            buf.iter_mut().for_each(|x| *x = g.normal() as f32);
        }
    }
    v
}

#[test]
fn the_jit_runs_every_library_backward_and_agrees_with_the_f64_interpreter() {
    let c = normjit::Compiler::new().unwrap();
    let mut runs = 0;
    for name in DIFFERENTIABLE {
        let k = lib(name);
        let bwd = grad(&k, &in_names(&k)).unwrap();
        let kernel = c.kernel(bwd.clone());
        let params = params(&bwd);
        let mut shapes = odd_shapes(bwd.dims.len());
        shapes.push(match bwd.dims.len() {
            1 => vec![4097],
            2 => vec![7, 1023],
            3 => vec![5, 3, 1023],
            _ => vec![3, 5, 4, 33],
        });
        for dims in shapes {
            runs += 1;
            let inputs = backward_inputs32(&bwd, &dims, 40 + runs);
            let mut bufs: Vec<Buf> = bwd.tensors.iter().map(|(id, t)| Buf::of(t.dtype, &inputs[id.index()])).collect();
            let mut b = normjit::Bindings::new();
            for ((_, t), buf) in bwd.tensors.iter().zip(bufs.iter_mut()) {
                b = b.tensor(&t.name, buf.view(t.role != Role::In));
            }
            for (d, dim) in bwd.dims.iter() {
                b = b.dim(&dim.name, dims[d.index()]);
            }
            kernel.run(b).unwrap_or_else(|e| panic!("{name} {dims:?}: {e}"));
            let got: Vec<Vec<f32>> = bufs.iter().map(Buf::values).collect();
            let s32: Vec<&[f32]> = inputs.iter().map(|v| v.as_slice()).collect();
            let in64: Vec<Vec<f64>> = inputs.iter().map(|v| v.iter().map(|&x| x as f64).collect()).collect();
            let s64: Vec<&[f64]> = in64.iter().map(|v| v.as_slice()).collect();
            let r32 = normjit_interp::run::<f32>(&bwd, &dims, &params, &s32).unwrap();
            let r64 = normjit_interp::run::<f64>(&bwd, &dims, &params, &s64).unwrap();
            for (id, t) in bwd.tensors.iter().filter(|(_, t)| t.role == Role::Out) {
                let what = format!("{} {dims:?} `{}`", bwd.name, t.name);
                compare(&what, &got[id.index()], r64.get(id).unwrap(), r32.get(id).unwrap(), 1e-5)
                    .unwrap_or_else(|e| panic!("{e}"));
            }
        }
    }
}

/// The JIT against the loop-IR interpreter, bit for bit, on the library
/// backward kernels (f32 storage), as `tests/jit_vs_loop.rs` does for the
/// forward ones.
#[test]
fn the_jit_equals_the_loop_ir_bit_for_bit_on_library_backward_kernels() {
    use normjit::unstable::codegen::{CodegenOptions, Compiled, Isa, IsaChoice};
    use normjit::unstable::lower::{exec, lower, Options};
    let isa = Isa::new(IsaChoice::Native).unwrap();
    let pools: Vec<rayon::ThreadPool> =
        (2..=3).map(|n| rayon::ThreadPoolBuilder::new().num_threads(n).build().unwrap()).collect();
    let mut pick = Pick(0xB17E_0000_0000_0001);
    let mut runs = 0;
    for name in DIFFERENTIABLE {
        let k = lib(name);
        let bwd = grad(&k, &in_names(&k)).unwrap();
        let params = params(&bwd);
        let words = normjit_testkit::param_words(&bwd, &params);
        for case in 0..8u64 {
            let dims = random_dims(&bwd, &mut pick);
            let chunk = [1, 7, 64, 1 << 15][case as usize % 4];
            let threads = 1 + (case as usize % 3);
            runs += 1;
            let inputs = backward_inputs32(&bwd, &dims, pick.next());
            let opts = Options { chunk_elems: chunk, verify: true, fma: isa.has_fma(), ..Options::default() };
            let plan = lower(&bwd, &dims, &opts).unwrap_or_else(|e| panic!("{name} {dims:?}: {e}"));
            let mut want = inputs.clone();
            exec(&plan, &dims, &params, &mut want).unwrap();
            let code = std::sync::Arc::new(Compiled::new(&plan, &isa, &CodegenOptions::default()).unwrap());
            let mut got = inputs.clone();
            let ptrs: Vec<*mut u8> = got.iter_mut().map(|v| v.as_mut_ptr().cast()).collect();
            let pool = if threads > 1 { Some(&pools[threads - 2]) } else { None };
            // SAFETY: every buffer is an f32 tensor (the backward of an f32
            // library kernel) with its element count at `dims`, the sizes
            // the plan was lowered and compiled at; the buffers are
            // distinct allocations.
            unsafe { normjit::unstable::execute_at(&code, &dims, &ptrs, &words, pool) };
            for (id, t) in bwd.tensors.iter().filter(|(_, t)| t.role == Role::Out) {
                let (g, w) = (&got[id.index()], &want[id.index()]);
                for i in 0..g.len() {
                    assert!(
                        g[i].to_bits() == w[i].to_bits() || g[i].is_nan() && w[i].is_nan(),
                        "{} {dims:?} chunk {chunk} threads {threads}: {}[{i}] = {} but the loop IR gives {}",
                        bwd.name,
                        t.name,
                        g[i],
                        w[i]
                    );
                }
            }
        }
    }
    assert_eq!(runs, 8 * DIFFERENTIABLE.len());
}

// ---------------------------------------------------------------------------
// Random kernels
// ---------------------------------------------------------------------------

/// How many random kernels the random tests draw: 1,000, or
/// `NORMJIT_GRAD_CASES`.
fn cases() -> usize {
    std::env::var("NORMJIT_GRAD_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(1000)
}

/// A random kernel from the generator, its tensors stored f32 (a narrow
/// load would round the finite-difference step away), at small sizes.
fn random_case(seed: u64) -> Case {
    let mut pick = Pick(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1);
    let words: Vec<u32> = (0..400).map(|_| pick.next() as u32).collect();
    let mut case = Case::decode(&mut Choices::new(words), seed);
    let f32s: Vec<Storage> = case
        .kernel
        .tensors
        .iter()
        .map(|(_, t)| Storage { tensor: t.name.clone(), dtype: normjit::DType::F32, stochastic: None })
        .collect();
    case.kernel = case.kernel.with_storage(&f32s).unwrap();
    case.dims = case.dims.iter().map(|_| [1, 2, 3, 5][pick.below(4)]).collect();
    case
}

#[test]
fn gradient_check_of_random_kernels() {
    let want = cases();
    let (mut kernels, mut tried, mut huge, mut ill, mut outputs, mut trivial) = (0, 0u64, 0, 0usize, 0usize, 0);
    let mut total = Fd::default();
    let mut pick = Pick(0x0DD5_EED5);
    let start = std::time::Instant::now();
    while kernels < want {
        tried += 1;
        let case = random_case(tried);
        let k = &case.kernel;
        if k.tensors.iter().any(|(_, t)| t.role == Role::InOut) {
            continue;
        }
        // A huge constant can absorb the step in f64 (`x - 1e30` is -1e30
        // for every x near 1), anywhere inside the kernel: no finite
        // difference sees the gradient there.
        if k.nodes.iter().any(|(_, n)| matches!(n.op, normjit::ir::Op::Const(c) if c.abs() > 1e15)) {
            huge += 1;
            continue;
        }
        let wrt = in_names(k);
        let bwd = grad(k, &wrt).unwrap_or_else(|e| panic!("{e}\n{k}"));
        assert_eq!(parse(&bwd.to_string()).as_ref(), Ok(&bwd), "{k}");
        // Inputs: normal, so no ties or exact zeros; cotangents normal.
        let mut g = Gauss(Pick(tried | 1));
        let inputs: Vec<Vec<f64>> =
            k.tensors
                .iter()
                .map(|(id, t)| {
                    if t.role == Role::In {
                        (0..elems(k, id, &case.dims)).map(|_| g.normal()).collect()
                    } else {
                        vec![]
                    }
                })
                .collect();
        let cot: Vec<Vec<f64>> =
            k.tensors
                .iter()
                .map(|(id, t)| {
                    if t.role == Role::Out {
                        (0..elems(k, id, &case.dims)).map(|_| g.normal()).collect()
                    } else {
                        vec![]
                    }
                })
                .collect();
        let mut p = Problem { fwd: k.clone(), dims: case.dims.clone(), params: case.params.clone(), inputs, cot };
        // The loss is Σ dy · y over the well-conditioned outputs: a NaN
        // output (`rsqrt` of a negative constant) has no finite difference
        // to compare with, and one where the f32 reference is off by more
        // than 1e-3 (`log(abs(s - mean(s)))` with equal `s`: the log of a
        // rounding residue) has a gradient that is f64 rounding of huge
        // terms. Their cotangents are 0.
        let y0 = p.forward(&p.inputs);
        let in32: Vec<Vec<f32>> = p.inputs.iter().map(|v| v.iter().map(|&x| x as f32).collect()).collect();
        let s32: Vec<&[f32]> = in32.iter().map(|v| v.as_slice()).collect();
        let y32 = normjit_interp::run::<f32>(k, &p.dims, &p.params, &s32).unwrap();
        for (id, _) in k.tensors.iter().filter(|(_, t)| t.role == Role::Out) {
            let (o, r32) = (id.index(), y32.get(id).unwrap());
            let scale =
                y0[o].iter().filter(|v| v.is_finite()).map(|v| v.abs()).sum::<f64>() / y0[o].len().max(1) as f64;
            for (j, &v) in y0[o].iter().enumerate() {
                // (A NaN f32 result fails the comparison: ill-conditioned.)
                let agree = (r32[j] as f64 - v).abs() <= 1e-3 * (v.abs() + scale);
                if !v.is_finite() || !agree {
                    p.cot[o][j] = 0.0;
                    ill += 1;
                }
            }
            outputs += y0[o].len();
        }
        let grads = p.backward(&bwd, &HashMap::new());
        let fd = fd_check(&p, &grads, &wrt, Some(6), &mut pick, Mode::Lenient(&bwd)).unwrap_or_else(|e| {
            panic!(
                "{e}\nforward (case {tried}, dims {:?}, params {:?}):\n{k}\nbackward:\n{bwd}",
                case.dims, case.params
            )
        });
        total.add(&fd);
        // Kernels whose sampled gradients are all exactly 0 (outputs that
        // do not depend on the inputs, `sign`, comparisons) check little:
        // they do not count towards the 1,000.
        if fd.checked > fd.zero {
            kernels += 1;
        } else {
            trivial += 1;
        }
    }
    let sampled = total.checked + total.kinks + total.nonfinite + total.unresolved;
    eprintln!(
        "{kernels} random kernels with a non-zero gradient checked ({tried} drawn; {trivial} with only zero \
         gradients, {huge} with a constant 1e30, the others with inout tensors) in {:.1?}: {} elements checked, \
         {} skipped at kinks, {} as non-finite, {} as unresolved, of {sampled}; max relative error {:.2e} \
         ({} exactly 0 both ways, {} with a tolerance looser than 1e-5 for rounding noise); {ill} of {outputs} \
         outputs non-finite or ill-conditioned",
        start.elapsed(),
        total.checked,
        total.kinks,
        total.nonfinite,
        total.unresolved,
        total.max_err,
        total.zero,
        total.noise_limited
    );
    // Most non-zero gradients are held to 1e-6: the noise allowance must
    // not be what makes this test pass.
    assert!(total.noise_limited * 20 <= total.checked - total.zero, "{total:?}");
    assert!(total.checked * 4 >= sampled * 3, "too many elements skipped: {total:?}");
}

/// `grad` on random kernels (with `inout` tensors too) and random `wrt`
/// lists, some names invalid: an error or a valid kernel, never a panic.
#[test]
fn grad_never_panics_on_random_kernels() {
    let mut pick = Pick(0xFADE_0000_0000_0007);
    let (mut ok, mut err) = (0, 0);
    for seed in 0..1500u64 {
        let k = random_case(seed + 100_000).kernel;
        let names: Vec<String> = k
            .tensors
            .iter()
            .map(|(_, t)| t.name.clone())
            .chain(k.params.iter().map(|(_, p)| p.name.clone()))
            .chain(["I".to_string(), "nope".to_string(), "t0".to_string()])
            .collect();
        // Mostly `in` tensors (some lists repeat one), sometimes anything.
        let ins = in_names(&k);
        let n = pick.below(4);
        let wrt: Vec<&str> = (0..n)
            .map(|_| {
                if pick.below(4) > 0 && !ins.is_empty() {
                    ins[pick.below(ins.len())]
                } else {
                    names[pick.below(names.len())].as_str()
                }
            })
            .collect();
        let saved: Vec<String> = if pick.below(3) == 0 { vec!["t0".into()] } else { vec![] };
        match grad_with(&k, &wrt, &GradOptions { saved, prune_unused: pick.below(2) == 0, ..Default::default() }) {
            Ok(g) => {
                normjit::ir::verify(&g).unwrap();
                assert_eq!(parse(&g.to_string()).as_ref(), Ok(&g));
                ok += 1;
            }
            Err(e) => {
                assert!(!e.contains("internal error"), "{e}\n{k}");
                err += 1;
            }
        }
    }
    eprintln!("{ok} differentiated, {err} refused");
    assert!(ok > 100 && err > 100);
}

/// Backward kernels of random kernels through the testkit's full check
/// (`run_case`): lowering, the loop-IR interpreter, the JIT at two sizes
/// (bit for bit with the loop IR, 1–3 threads, small chunks), both
/// reference interpreters and the interval oracle, with the generator's
/// storage types and special inputs (NaN, Inf). Backward kernels reduce
/// across what would be the forward's group axis (`dgamma = sum(..., N)`).
#[test]
fn random_backward_kernels_pass_the_random_kernel_checks() {
    use normjit_testkit::{run_case, Engines, Env};
    let env = Env::new();
    let (mut n, mut fails) = (0, Vec::new());
    for seed in 0..cases() as u64 {
        let mut pick = Pick(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1);
        let words: Vec<u32> = (0..400).map(|_| pick.next() as u32).collect();
        let case = Case::decode(&mut Choices::new(words), seed);
        if case.kernel.tensors.iter().any(|(_, t)| t.role == Role::InOut) {
            continue;
        }
        let bwd = grad(&case.kernel, &in_names(&case.kernel)).unwrap_or_else(|e| panic!("{e}\n{}", case.kernel));
        let params: Vec<f64> =
            bwd.params.iter().map(|(_, p)| case.params[case.kernel.param(&p.name).unwrap().index()]).collect();
        let c = Case { kernel: bwd, params, ..case.clone() };
        n += 1;
        if let Err(f) = run_case(&c, &env, Engines::All) {
            fails.push(format!("{f}\n{c}"));
        }
    }
    assert!(n >= cases() * 2 / 5, "{n} cases");
    assert!(fails.is_empty(), "{} of {n} failed:\n{}", fails.len(), fails[..fails.len().min(3)].join("\n-----\n"));
}
