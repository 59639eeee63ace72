//! A custom fused op built with the Rust builder API: the Lion optimizer
//! (Chen et al. 2023), with decoupled weight decay.
//!
//!   c = beta1 * m + (1 - beta1) * g
//!   p = p * (1 - lr * wd) - lr * sign(c)
//!   m = beta2 * m + (1 - beta2) * g
//!
//! It is compiled once and run over a list of parameter tensors of
//! different lengths in one call (`run_foreach`), then checked against the
//! reference interpreter.
//!
//! Run: `cargo run --release --example lion`

use normjit::ir::{DType, KernelBuilder, Role};
use normjit::{Bindings, Compiler};

fn lion() -> normjit::ir::Kernel {
    let mut b = KernelBuilder::new("lion");
    let n = b.dim("P");
    let p = b.tensor("p", Role::InOut, DType::F32, &[n]);
    let m = b.tensor("m", Role::InOut, DType::F32, &[n]);
    let g = b.tensor("g", Role::In, DType::F32, &[n]);
    let lr = b.param("lr", Some(1e-4));
    let beta1 = b.param("beta1", Some(0.9));
    let beta2 = b.param("beta2", Some(0.99));
    let wd = b.param("wd", Some(0.0));
    let one = b.constant(1.0);
    let (lr, beta1, beta2, wd) = (b.param_value(lr), b.param_value(beta1), b.param_value(beta2), b.param_value(wd));
    let (pv, mv, gv) = (b.load(p), b.load(m), b.load(g));
    // c = beta1 * m + (1 - beta1) * g
    let t = b.mul(beta1, mv);
    let omb1 = b.sub(one, beta1);
    let u = b.mul(omb1, gv);
    let c = b.add(t, u);
    b.let_("c", c);
    // p = p * (1 - lr * wd) - lr * sign(c)
    let lrwd = b.mul(lr, wd);
    let decay = b.sub(one, lrwd);
    let pd = b.mul(pv, decay);
    let s = b.sign(c);
    let step = b.mul(lr, s);
    let p_new = b.sub(pd, step);
    b.store(p, p_new);
    // m = beta2 * m + (1 - beta2) * g
    let t = b.mul(beta2, mv);
    let omb2 = b.sub(one, beta2);
    let u = b.mul(omb2, gv);
    let m_new = b.add(t, u);
    b.store(m, m_new);
    b.finish().expect("a valid kernel")
}

fn data(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        })
        .collect()
}

fn main() {
    let kernel = lion();
    println!("{kernel}");
    let compiler = Compiler::new().expect("a host Cranelift supports");
    let k = compiler.kernel(kernel.clone());

    // Three parameter tensors of a "model", each with its moment and gradient.
    let lens = [4096usize, 1000, 7];
    let mut params: Vec<(Vec<f32>, Vec<f32>, Vec<f32>)> =
        lens.iter().enumerate().map(|(i, &n)| (data(n, i as u64), vec![0.0; n], data(n, 100 + i as u64))).collect();
    let before = params.clone();
    let groups =
        params.iter_mut().map(|(p, m, g)| Bindings::new().output("p", p).output("m", m).input("g", g)).collect();
    let shared = [("lr", 1e-3), ("wd", 0.1)];
    let infos = k.run_foreach(&shared, groups).expect("valid bindings");
    for (info, n) in infos.iter().zip(lens) {
        println!("P={n}: compiled in {:.0} us (0 = reused)", info.compile_us);
    }

    // Check every tensor against the reference interpreter in f64.
    let mut worst = 0.0f64;
    for ((p0, m0, g), (p1, m1, _)) in before.iter().zip(&params) {
        let widen = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<f64>>();
        let (p64, m64, g64) = (widen(p0), widen(m0), widen(g));
        let out = normjit_interp::run::<f64>(&kernel, &[p0.len()], &[1e-3, 0.9, 0.99, 0.1], &[&p64, &m64, &g64])
            .expect("interpreter");
        for (got, t) in [(p1, "p"), (m1, "m")] {
            let want = out.get(kernel.tensor(t).unwrap()).unwrap();
            for (a, b) in got.iter().zip(want) {
                worst = worst.max((*a as f64 - b).abs() / (1.0 + b.abs()));
            }
        }
    }
    println!("max relative error against the f64 interpreter: {worst:.2e}");
    assert!(worst < 1e-6, "JIT and interpreter disagree");
}
