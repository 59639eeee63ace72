//! Weight decay: L2 in the gradient versus decoupled decay (Loshchilov &
//! Hutter, "Decoupled Weight Decay Regularization").
//!
//!   L2 (coupled):  g' = g + λp, then the optimizer step on g'
//!   decoupled:     p ← p·(1 − ηλ), then the optimizer step on g
//!
//! For plain SGD the two are the same update, p ← p(1 − ηλ) − ηg, so they
//! agree to rounding. For Adam they are not: the coupled term λp passes
//! through the moments and is divided by √v̂, so parameters with large
//! gradients are decayed less. AdamW is decoupled: it equals "decay, then
//! Adam without decay".
//!
//! Kernels: `ir/optim/sgd.nj` (params lr, momentum, dampening, wd),
//! `ir/optim/adam.nj` (coupled, wd), `ir/optim/adamw.nj` (decoupled, wd),
//! and a one-line decay kernel compiled from source. Every call binds by
//! name (`Kernel::run`); unnamed params take the file's defaults.
//!
//! Run: `cargo run --release --example weight_decay_equivalence`

use normjit::{Bindings, Compiler, Error, Kernel};
use std::path::Path;

/// The decoupled decay on its own.
pub const DECAY: &str = "
kernel decay {
  dims P
  inout p: f32[P]
  param lr, wd

  p = p * (1 - lr * wd)
}
";

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

fn library(compiler: &Compiler, rel: &str) -> Result<Kernel, Error> {
    compiler.compile_file(&Path::new(env!("CARGO_MANIFEST_DIR")).join(rel))
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).abs()).fold(0.0, f64::max)
}

/// Max |difference| between the two variants after each step.
pub struct Row {
    /// Step t (1-based).
    pub step: usize,
    /// SGD with `wd` in the gradient vs decay-then-SGD (momentum 0).
    pub sgd: f64,
    /// The same with momentum 0.9: not equal (the decay enters the buffer).
    pub sgd_momentum: f64,
    /// Adam (coupled L2) vs AdamW (decoupled).
    pub adam_vs_adamw: f64,
    /// AdamW vs decay-then-Adam(wd = 0).
    pub adamw_vs_decay_adam: f64,
    /// Max |p_t − p_0| of AdamW: the scale of the movement.
    pub moved: f64,
}

/// Runs `steps` steps of every variant on the same parameters and
/// gradients (`n` elements), step size `lr`, decay `wd`.
pub fn compare(compiler: &Compiler, n: usize, steps: usize, lr: f64, wd: f64) -> Result<Vec<Row>, Error> {
    let sgd = library(compiler, "ir/optim/sgd.nj")?;
    let adam = library(compiler, "ir/optim/adam.nj")?;
    let adamw = library(compiler, "ir/optim/adamw.nj")?;
    let decay = compiler.compile_source(DECAY)?;
    let p0 = uniform(n, 1);
    // Parameter copies and optimizer state: [coupled, decoupled] per optimizer.
    let mut sp = [p0.clone(), p0.clone()];
    let mut sbuf = [vec![0.0; n], vec![0.0; n]];
    let mut mp = [p0.clone(), p0.clone()];
    let mut mbuf = [vec![0.0; n], vec![0.0; n]];
    let mut ap = [p0.clone(), p0.clone(), p0.clone()]; // adam, adamw, decay + adam(wd=0)
    let mut am = [vec![0.0; n], vec![0.0; n], vec![0.0; n]];
    let mut av = [vec![0.0; n], vec![0.0; n], vec![0.0; n]];
    let mut rows = Vec::new();
    for t in 1..=steps {
        // Gradients of very different sizes per element: 1e-3 to 1.
        let g: Vec<f32> =
            uniform(n, 100 + t as u64).iter().enumerate().map(|(i, &u)| u * 10f32.powi(-((i % 4) as i32))).collect();
        for (momentum, p, buf) in [(0.0, &mut sp, &mut sbuf), (0.9, &mut mp, &mut mbuf)] {
            let ([p_l2, p_dec], [b_l2, b_dec]) = (p, buf);
            let run = |p: &mut [f32], buf: &mut [f32], wd: f64| {
                sgd.run(
                    Bindings::new()
                        .output("p", p)
                        .output("buf", buf)
                        .input("g", &g)
                        .param("lr", lr)
                        .param("momentum", momentum)
                        .param("wd", wd),
                )
            };
            run(p_l2, b_l2, wd)?;
            decay.run(Bindings::new().output("p", p_dec).param("lr", lr).param("wd", wd))?;
            run(p_dec, b_dec, 0.0)?;
        }
        let [a_l2, a_w, a_dec] = &mut ap;
        let [m_l2, m_w, m_dec] = &mut am;
        let [v_l2, v_w, v_dec] = &mut av;
        let step = |k: &Kernel, p: &mut [f32], m: &mut [f32], v: &mut [f32], wd: f64| {
            k.run(
                Bindings::new()
                    .output("p", p)
                    .output("m", m)
                    .output("v", v)
                    .input("g", &g)
                    .param("lr", lr)
                    .param("wd", wd)
                    .param("t", t as f64),
            )
        };
        step(&adam, a_l2, m_l2, v_l2, wd)?;
        step(&adamw, a_w, m_w, v_w, wd)?;
        decay.run(Bindings::new().output("p", a_dec).param("lr", lr).param("wd", wd))?;
        step(&adam, a_dec, m_dec, v_dec, 0.0)?;
        rows.push(Row {
            step: t,
            sgd: max_abs_diff(&sp[0], &sp[1]),
            sgd_momentum: max_abs_diff(&mp[0], &mp[1]),
            adam_vs_adamw: max_abs_diff(&ap[0], &ap[1]),
            adamw_vs_decay_adam: max_abs_diff(&ap[1], &ap[2]),
            moved: max_abs_diff(&ap[1], &p0),
        });
    }
    Ok(rows)
}

fn main() -> Result<(), Error> {
    let (n, lr, wd) = (100_000, 1e-2, 0.1);
    let compiler = Compiler::new()?;
    let rows = compare(&compiler, n, 8, lr, wd)?;
    println!("P={n} params in [-1, 1), gradients of magnitude 1e-3..1, lr={lr}, wd={wd}; max |difference| of p:");
    println!(
        "{:>4} | {:>15} | {:>19} | {:>14} | {:>17} | {:>12}",
        "step", "SGD: L2 vs dec.", "SGD m=0.9: L2 vs d.", "Adam vs AdamW", "AdamW vs dec+Adam", "AdamW moved"
    );
    for r in &rows {
        println!(
            "{:>4} | {:>15.1e} | {:>19.1e} | {:>14.1e} | {:>17.1e} | {:>12.1e}",
            r.step, r.sgd, r.sgd_momentum, r.adam_vs_adamw, r.adamw_vs_decay_adam, r.moved
        );
    }
    println!("plain SGD: coupled = decoupled up to f32 rounding; with momentum or Adam they differ:");
    println!("Adam's L2 term passes through m and is divided by √v̂: where |g| ≪ wd·|p| it becomes a step of ~lr");
    println!("toward 0, where |g| ≫ wd·|p| it almost vanishes. AdamW's decay is lr·wd·p for every element:");
    println!("it is exactly 'decay, then Adam with wd = 0'.");
    Ok(())
}
