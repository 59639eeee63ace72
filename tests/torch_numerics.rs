//! Adam and AdamW follow `torch.optim` to within f32 rounding: the
//! hyper-parameter arithmetic (`1 - beta2`, `1 - beta2^t`, `lr / (1 -
//! beta1^t)`, `1 - lr * wd`) is done once per call in f64 and rounded once
//! where it meets the tensors, as PyTorch does with Python floats.
//!
//! The reference is torch's update (`_single_tensor_adam`: coupled L2 for
//! Adam, `param.mul_(1 - lr * weight_decay)` first for AdamW; `exp_avg.lerp_
//! (grad, 1 - beta1)`, `exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 -
//! beta2)`, `step_size = lr / (1 - beta1**step)`, `denom = sqrt(exp_avg_sq) /
//! sqrt(1 - beta2**step) + eps`, `param.addcdiv_(exp_avg, denom,
//! value=-step_size)`) written out in f64, with its hyper-parameter
//! arithmetic in torch's order. At t = 1, 10 and 1000 with beta2 = 0.999,
//! `m`, `v` and `p` must be within 1e-6 relative to each tensor's scale. (With f32 hyper-parameter
//! arithmetic, `1 - f32(0.999)` alone put `v` 1.3e-5 off.)

use normjit::{Bindings, Compiler};
use std::path::Path;

fn data(n: usize, seed: u32, scale: f32, offset: f32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let h = (i as u32 ^ seed).wrapping_mul(2654435761).rotate_left(13).wrapping_mul(2246822519);
            ((h >> 8) as f32 / 16_777_216.0 - 0.5) * scale + offset
        })
        .collect()
}

struct State {
    p: Vec<f32>,
    m: Vec<f32>,
    v: Vec<f32>,
    g: Vec<f32>,
}

/// torch's step in f64 from the f32 state; returns (p, m, v). (Takes
/// torch's hyper-parameters one by one, as `torch.optim.Adam` does.)
#[allow(clippy::too_many_arguments)]
fn torch_step(s: &State, lr: f64, b1: f64, b2: f64, eps: f64, wd: f64, t: f64, decoupled: bool) -> [Vec<f64>; 3] {
    let n = s.p.len();
    let (mut p, mut m, mut v) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
    let bias_correction1 = 1.0 - b1.powf(t);
    let bias_correction2 = 1.0 - b2.powf(t);
    let step_size = lr / bias_correction1;
    let bias_correction2_sqrt = bias_correction2.sqrt();
    for i in 0..n {
        let mut param = s.p[i] as f64;
        let mut grad = s.g[i] as f64;
        if decoupled {
            param *= 1.0 - lr * wd;
        } else {
            grad += wd * param;
        }
        let exp_avg = s.m[i] as f64 + (1.0 - b1) * (grad - s.m[i] as f64);
        let exp_avg_sq = s.v[i] as f64 * b2 + (1.0 - b2) * grad * grad;
        let denom = exp_avg_sq.sqrt() / bias_correction2_sqrt + eps;
        p[i] = param - step_size * exp_avg / denom;
        m[i] = exp_avg;
        v[i] = exp_avg_sq;
    }
    [p, m, v]
}

fn check(file: &str, decoupled: bool, wd: f64) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("ir/optim");
    let k = Compiler::new().unwrap().compile_file(&root.join(file)).unwrap();
    let n = 4099;
    let (lr, b1, b2, eps) = (1e-3, 0.9, 0.999, 1e-8);
    for t in [1.0, 10.0, 1000.0] {
        let s = State {
            p: data(n, 1, 2.0, 0.0),
            m: data(n, 2, 0.02, 0.0),
            v: data(n, 3, 1e-4, 1e-4),
            g: data(n, 4, 0.2, 0.01),
        };
        let want = torch_step(&s, lr, b1, b2, eps, wd, t, decoupled);
        let (mut p, mut m, mut v) = (s.p.clone(), s.m.clone(), s.v.clone());
        k.run(
            Bindings::new()
                .output("p", &mut p)
                .output("m", &mut m)
                .output("v", &mut v)
                .input("g", &s.g)
                .param("lr", lr)
                .param("beta1", b1)
                .param("beta2", b2)
                .param("eps", eps)
                .param("wd", wd)
                .param("t", t),
        )
        .unwrap();
        for (name, got, want) in [("p", &p, &want[0]), ("m", &m, &want[1]), ("v", &v, &want[2])] {
            // Relative to the tensor's scale (max |element|): elements that
            // cancel to near 0 (m = beta1 m + (1 - beta1) g) have no
            // meaningful elementwise relative error in any f32 engine.
            let scale = want.iter().fold(0.0f64, |s, b| s.max(b.abs()));
            let worst = got.iter().zip(want.iter()).map(|(&a, &b)| (a as f64 - b).abs()).fold(0.0, f64::max) / scale;
            eprintln!("{file} t={t}: `{name}` max relative error {worst:.2e}");
            assert!(worst <= 1e-6, "{file} t={t}: `{name}` is {worst:e} relative off torch's update");
        }
    }
}

#[test]
fn adamw_matches_torch_at_steps_1_10_1000() {
    check("adamw.nj", true, 0.01);
}

#[test]
fn adam_with_l2_matches_torch_at_steps_1_10_1000() {
    check("adam.nj", false, 0.01);
}
