//! Long reductions are accurate: the loop IR's normative order cascades
//! sums (pairwise over blocks), so the JIT's error against f64 grows with
//! the log of the reduction length, like the reference interpreter's
//! pairwise sums, and stays right on offset data where plain lane
//! accumulators went wrong (LayerNorm at D = 2^20, x = 1e4 + N(0,1) had a
//! max error of 4.19 before).
//!
//! For each case: the JIT's max abs error against the f64 interpreter on
//! every output must be at most 2x the f32 interpreter's (plus 1 ulp of
//! the output's scale, so that exact agreement is not a failure).

use normjit::{Compiler, CompilerOptions, Tensor, Threads};
use normjit_ir::{Kernel, Role};
use std::path::Path;

fn load(rel: &str) -> Kernel {
    normjit::load_kernel(&Path::new(env!("CARGO_MANIFEST_DIR")).join("ir").join(rel)).unwrap()
}

/// Deterministic N(0,1) samples (Box-Muller on a xorshift stream).
fn normal(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed | 1;
    let mut u = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    (0..n).map(|_| (-2.0 * u().ln()).sqrt() * (2.0 * std::f64::consts::PI * u()).cos()).collect()
}

/// Inputs: `x`-like tensors (the largest) are `offset + N(0,1)`, gamma 1,
/// beta 0, running statistics 0 and 1, other tensors N(0,1).
fn inputs(k: &Kernel, dims: &[usize], offset: f64) -> Vec<Vec<f32>> {
    k.tensors
        .iter()
        .map(|(t, tensor)| {
            let n: usize = tensor.dims.iter().map(|d| dims[d.index()]).product();
            match tensor.name.as_str() {
                "gamma" | "running_var" => vec![1.0; n],
                "beta" | "running_mean" => vec![0.0; n],
                _ if tensor.role == Role::Out => vec![0.0; n],
                _ => normal(n, 7 + t.index() as u64).iter().map(|v| (offset + v) as f32).collect(),
            }
        })
        .collect()
}

fn check(rel: &str, dims: &[usize], offset: f64) {
    check_with(rel, dims, offset, "");
}

/// [`check`] with schedule overrides (`onepass=on`).
fn check_with(rel: &str, dims: &[usize], offset: f64, schedule: &str) {
    let k = load(rel);
    let params: Vec<f64> = k.params.iter().map(|(_, p)| p.default.unwrap_or(0.5)).collect();
    let entry = inputs(&k, dims, offset);
    let schedule = normjit_lower::Overrides::parse(schedule).unwrap();
    let c = Compiler::with_options(CompilerOptions { threads: 2, schedule, ..Default::default() }).unwrap();
    let kern = c.kernel(k.clone());
    let mut got = entry.clone();
    {
        let tensors: Vec<Tensor> = k
            .tensors
            .iter()
            .zip(got.iter_mut())
            .map(|((_, t), v)| if t.role == Role::In { Tensor::input(v) } else { Tensor::output(v) })
            .collect();
        kern.call_with(&tensors, &params, Some(dims), Threads::Default).unwrap();
    }
    let e32: Vec<&[f32]> = entry.iter().map(|v| &v[..]).collect();
    let e64v: Vec<Vec<f64>> = entry.iter().map(|v| v.iter().map(|&x| x as f64).collect()).collect();
    let e64: Vec<&[f64]> = e64v.iter().map(|v| &v[..]).collect();
    let r32 = normjit_interp::run::<f32>(&k, dims, &params, &e32).unwrap();
    let r64 = normjit_interp::run::<f64>(&k, dims, &params, &e64).unwrap();
    for (t, tensor) in k.tensors.iter() {
        if tensor.role == Role::In {
            continue;
        }
        let (want, interp) = (r64.get(t).unwrap(), r32.get(t).unwrap());
        let err = |v: &[f32]| v.iter().zip(want).map(|(&a, &b)| (a as f64 - b).abs()).fold(0.0, f64::max);
        let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let (ej, ei) = (err(&got[t.index()]), err(interp));
        let bound = 2.0 * ei + scale * f32::EPSILON as f64;
        eprintln!("{rel} {dims:?} offset {offset}: `{}` jit {ej:.3e}, interp f32 {ei:.3e}", tensor.name);
        assert!(
            ej <= bound,
            "{rel} {dims:?} offset {offset}: `{}`: JIT error {ej:e} > 2 x interp's {ei:e}",
            tensor.name
        );
    }
}

#[test]
fn layer_norm_long_rows() {
    check("norm/layer_norm.nj", &[2, 1 << 20], 0.0);
    check("norm/layer_norm.nj", &[2, 1 << 20], 1e4);
    check("norm/layer_norm.nj", &[16, 65536], 1e3);
}

/// One-pass statistics (`onepass=on`: the variance from shifted sums) on
/// zero-mean data, where the cancellation in `mean((x - s)^2) - mean(x -
/// s)^2` is largest relative to the variance (many rows, so that the max
/// error sees rows whose shift falls far from their mean), and on offset
/// data, up to 2^20 elements per statistic.
#[test]
fn one_pass_statistics_on_zero_mean_and_offset_data() {
    let on = "onepass=on";
    for offset in [0.0, 1e4] {
        check_with("norm/layer_norm.nj", &[256, 4096], offset, on);
        check_with("norm/layer_norm.nj", &[1024, 1000], offset, on);
        check_with("norm/layer_norm.nj", &[2, 1 << 20], offset, on);
        check_with("norm/batch_norm_train.nj", &[8, 64, 28, 28], offset, on);
        check_with("norm/batch_norm_train.nj", &[16, 2, 128, 128], offset, on);
        check_with("norm/group_norm.nj", &[4, 32, 8, 1000], offset, on);
        check_with("norm/instance_norm.nj", &[8, 64, 3000], offset, on);
        check_with("grad/layer_norm_grad.nj", &[256, 1024], offset, on);
    }
}

#[test]
fn rms_norm_and_add_rms_norm_long_rows() {
    check("norm/rms_norm.nj", &[2, 1 << 20], 1e4);
    check("norm/add_rms_norm.nj", &[2, 1 << 19], 1e3);
}

#[test]
fn batch_group_instance_norm_long_reductions() {
    // BatchNorm NCHW: 2^18 elements per channel over N, H, W.
    check("norm/batch_norm_train.nj", &[16, 2, 128, 128], 1e4);
    check("norm/group_norm.nj", &[2, 2, 8, 32768], 1e4);
    check("norm/instance_norm.nj", &[2, 2, 1 << 18], 1e4);
}

#[test]
fn plain_sums_up_to_2_pow_20() {
    let src = "kernel total {\n dims N\n in x: f32[N]\n out s: f32[]\n s = sum(x, N)\n}\n";
    let k = normjit_ir::parse(src).unwrap();
    for (n, offset) in [(1usize << 20, 0.0), (1 << 20, 1e4), (1000, 1e4), (1 << 16, 1.0)] {
        let x: Vec<f32> = normal(n, 3).iter().map(|v| (offset + v) as f32).collect();
        let want: f64 = x.iter().map(|&v| v as f64).sum();
        let c = Compiler::new().unwrap();
        let kern = c.kernel(k.clone());
        let mut s = [0.0f32];
        kern.call(&[Tensor::input(&x), Tensor::output(&mut s)], &[]).unwrap();
        let interp = normjit_interp::run::<f32>(&k, &[n], &[], &[&x, &[]]).unwrap();
        let i = interp.get(k.tensor("s").unwrap()).unwrap()[0];
        let (ej, ei) = ((s[0] as f64 - want).abs(), (i as f64 - want).abs());
        eprintln!("sum of {n} at offset {offset}: jit {ej:.3e}, interp f32 {ei:.3e}");
        assert!(ej <= 2.0 * ei + want.abs() * f32::EPSILON as f64, "sum of {n}: JIT error {ej:e}, interp {ei:e}");
    }
}

#[test]
fn batch_norm_nhwc_long_reductions() {
    // C innermost: the statistics are array accumulators over N, H, W
    // (2^18 elements per channel). 16 channels, so that the max error over
    // them reflects the error's distribution rather than one rounding of
    // one mean (as with the 16 rows of LayerNorm above).
    check("norm/batch_norm_train_nhwc.nj", &[16, 128, 128, 16], 1e4);
}
