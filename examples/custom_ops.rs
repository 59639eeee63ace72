//! Custom fused ops written as `.nj` source text, compiled at run time,
//! checked against the reference interpreter in f64 and timed against it
//! in f32 (both on one thread).
//!
//!   DyT (Zhu et al. 2025):  y = γ·tanh(αx) + β,  tanh(z) = 1 − 2/(e^{2z} + 1)
//!   softmax over D:         y = e^{x − max x} / Σ_D e^{x − max x}
//!   log-softmax over D:     y = (x − max x) − ln Σ_D e^{x − max x}
//!   LayerNorm + GELU:       h = LN(x)·γ + β,  y = h·σ(2z) = h / (1 + e^{−2z}),
//!                           z = √(2/π)(h + 0.044715h³)   (GELU's tanh form, since
//!                           ½(1 + tanh z) = σ(2z), written without cancellation)
//!
//! The IR has no `tanh` yet, so it is spelled with `exp`; `exp` and `log`
//! are scalar libm calls per lane in the JIT today (no vector libm), which
//! makes these kernels compute-bound and slow: a known open item.
//!
//! Run: `cargo run --release --example custom_ops`

use normjit::{Compiler, Error, Kernel, Role, Tensor, Threads};
use std::time::Instant;

/// One op: its name, its source, and the floor of |ref| in the error
/// measure |jit − ref| / max(|ref|, floor) (1: absolute error below 1).
pub struct Op {
    /// Short name.
    pub name: &'static str,
    /// `.nj` source.
    pub source: &'static str,
    /// See the struct doc.
    pub floor: f64,
}

/// The four ops.
pub const OPS: [Op; 4] = [
    Op {
        name: "dyt",
        source: "
kernel dyt {
  dims N, D
  in  x: f32[N, D]
  in  gamma: f32[D]
  in  beta: f32[D]
  out y: f32[N, D]
  param alpha = 0.5

  t = 1 - 2 / (exp(2 * alpha * x) + 1)     # tanh(alpha * x)
  y = gamma * t + beta
}
",
        floor: 1.0,
    },
    Op {
        name: "softmax",
        source: "
kernel softmax {
  dims N, D
  in  x: f32[N, D]
  out y: f32[N, D]

  e = exp(x - max(x, D))                   # axes {N, D}; the row max is {N}
  y = e / sum(e, D)
}
",
        floor: 0.0,
    },
    Op {
        name: "log_softmax",
        source: "
kernel log_softmax {
  dims N, D
  in  x: f32[N, D]
  out y: f32[N, D]

  xm = x - max(x, D)
  y  = xm - log(sum(exp(xm), D))
}
",
        floor: 1.0,
    },
    Op {
        name: "layer_norm_gelu",
        source: "
kernel layer_norm_gelu {
  dims N, D
  in  x: f32[N, D]
  in  gamma: f32[D]
  in  beta: f32[D]
  out y: f32[N, D]
  param eps = 1e-5

  xc = x - mean(x, D)
  h  = xc * rsqrt(mean(xc * xc, D) + eps) * gamma + beta
  z  = 0.7978845608028654 * (h + 0.044715 * h * h * h)   # sqrt(2/pi) * (...)
  y  = h / (1 + exp(-2 * z))                              # h * (1 + tanh(z)) / 2
}
",
        floor: 1.0,
    },
];

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

/// A buffer per tensor of `k` at sizes N=n, D=d: x in [-3, 3), γ in
/// [0.8, 1.2), β in [-0.2, 0.2), outputs zero.
pub fn buffers(k: &Kernel, n: usize, d: usize) -> Vec<Vec<f32>> {
    let sig = k.signature();
    let sizes = [n, d];
    sig.tensors
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let len = t.dims.iter().map(|&j| sizes[j]).product();
            let u = uniform(len, 1 + i as u64);
            match (t.role, t.name.as_str()) {
                (Role::Out, _) => vec![0.0; len],
                (_, "gamma") => u.iter().map(|v| 1.0 + 0.2 * v).collect(),
                (_, "beta") => u.iter().map(|v| 0.2 * v).collect(),
                _ => u.iter().map(|v| 3.0 * v).collect(),
            }
        })
        .collect()
}

/// Calls the JIT on one thread at N=n, D=d with `bufs` (inputs read,
/// outputs written); returns the compile time in µs (0 once compiled).
pub fn call_jit(k: &Kernel, bufs: &mut [Vec<f32>], n: usize, d: usize) -> Result<f64, Error> {
    let sig = k.signature();
    let tensors: Vec<Tensor<'_>> = bufs
        .iter_mut()
        .zip(&sig.tensors)
        .map(|(b, t)| if t.role == Role::In { Tensor::input(b) } else { Tensor::output(b) })
        .collect();
    // Sizes given: softmax's tensors are all [N, D], so lengths alone
    // cannot tell N from D (`.shaped(&[n, d])` on x would do as well).
    k.call_with(&tensors, &sig.defaults(), Some(&[n, d]), Threads::CallingThread)
}

/// The reference interpreter's outputs at element type `T` (one per
/// tensor; inputs give empty vectors).
pub fn call_interp<T: normjit_interp::Real>(k: &Kernel, bufs: &[Vec<T>], n: usize, d: usize) -> Vec<Vec<T>> {
    let views: Vec<&[T]> = bufs.iter().map(|b| &b[..]).collect();
    let out = normjit_interp::run::<T>(k.ir(), &[n, d], &k.signature().defaults(), &views).expect("interpreter");
    out.into_vec().into_iter().map(Option::unwrap_or_default).collect()
}

/// Runs the JIT and the f64 interpreter at N=n, D=d: the JIT's output `y`
/// and the max of |jit − ref| / max(|ref|, floor) over it.
pub fn check(k: &Kernel, floor: f64, n: usize, d: usize) -> Result<(Vec<f32>, f64), Error> {
    let mut bufs = buffers(k, n, d);
    let wide: Vec<Vec<f64>> = bufs.iter().map(|b| b.iter().map(|&v| v as f64).collect()).collect();
    call_jit(k, &mut bufs, n, d)?;
    let want = call_interp::<f64>(k, &wide, n, d);
    let y = k.signature().tensor("y").expect("every op writes y");
    let err = bufs[y]
        .iter()
        .zip(&want[y])
        .map(|(&a, &b)| (a as f64 - b).abs() / b.abs().max(floor).max(f64::MIN_POSITIVE))
        .fold(0.0, f64::max);
    Ok((bufs[y].clone(), err))
}

fn median_us(reps: usize, mut f: impl FnMut()) -> f64 {
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[reps / 2]
}

/// Median µs per call of the JIT and of the f32 interpreter at N=n, D=d.
pub fn bench(k: &Kernel, n: usize, d: usize, reps: usize) -> Result<(f64, f64), Error> {
    let mut bufs = buffers(k, n, d);
    call_jit(k, &mut bufs, n, d)?; // compile outside the timing
    let jit = median_us(reps, || {
        call_jit(k, &mut bufs, n, d).expect("valid call");
    });
    let interp = median_us(reps, || {
        std::hint::black_box(call_interp::<f32>(k, &bufs, n, d));
    });
    Ok((jit, interp))
}

fn main() -> Result<(), Error> {
    let (n, d) = (64, 4096);
    let compiler = Compiler::new()?;
    println!("N={n}, D={d}, f32, one thread; error = max |jit − f64 ref| / max(|ref|, floor);");
    println!("times are medians of 15 calls; interp/jit > 1 means the JIT is faster");
    println!(
        "{:>16} | {:>10} | {:>5} | {:>9} | {:>10} | {:>10} | {:>9}",
        "op", "compile µs", "floor", "max error", "jit µs", "interp µs", "interp/jit"
    );
    for op in &OPS {
        let k = compiler.compile_named_source(op.name, op.source)?;
        let compile_us = call_jit(&k, &mut buffers(&k, n, d), n, d)?;
        let (_, err) = check(&k, op.floor, n, d)?;
        let (jit, interp) = bench(&k, n, d, 15)?;
        println!(
            "{:>16} | {:>10.0} | {:>5} | {:>9.1e} | {:>10.0} | {:>10.0} | {:>9.2}",
            op.name,
            compile_us,
            op.floor,
            err,
            jit,
            interp,
            interp / jit
        );
    }
    println!("note: `exp` and `log` are one scalar libm call per lane in the JIT today (no vector libm),");
    println!("so these ops are bound by those calls, not by memory: a known open item. softmax pays twice:");
    println!("its fused plan recomputes exp(x - max) in the write pass rather than store it (`normjit explain`).");
    Ok(())
}
