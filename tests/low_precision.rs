//! Low-precision storage end to end, through the safe runtime API with
//! real `half::bf16` / `half::f16` buffers:
//! - every library pipeline with every tensor stored as bf16, and again as
//!   f16: each output is within 1 ulp of the dtype of the f64 reference
//!   (which rounds its f64 result once to the dtype), except where the
//!   output is the small result of a cancellation (`m = 0.9 m + 0.1 g`
//!   with `g ≈ -9 m`, `x - mean` for `x ≈ mean`): there f32 compute itself
//!   is off by more than an ulp of the small result, in every f32 engine,
//!   and the error is held to half an ulp of the dtype at the tensor's
//!   scale (mean magnitude) instead; those elements are counted;
//! - the library's mixed-precision AdamW (`adamw_master`) against an f64
//!   AdamW step on the same inputs;
//! - stochastic rounding: unbiased over 10^6 elements (bounded
//!   statistically), identical for every thread count, identical to the
//!   reference interpreter's, and NaN/Inf kept;
//! - bad storage overrides and buffers of the wrong type are refused with
//!   the reason, before anything is written.

mod common;

use common::*;
use normjit::half::bf16;
use normjit::ir::{parse_storage, DType, Kernel, Role, Storage};
use normjit::{Compiler, CompilerOptions, ErrorKind, Tensor, Threads};

/// Runs `k` on the JIT with entry values `entry` (values of each tensor's
/// type); returns every tensor's final values.
fn jit(c: &Compiler, k: &Kernel, dims: &[usize], params: &[f64], entry: &[Vec<f32>], on: Threads) -> Vec<Vec<f32>> {
    let kern = c.kernel(k.clone());
    let mut bufs: Vec<Buf> = k.tensors.iter().map(|(t, tensor)| Buf::of(tensor.dtype, &entry[t.index()])).collect();
    {
        let views: Vec<Tensor> =
            k.tensors.iter().zip(bufs.iter_mut()).map(|((_, t), b)| b.view(t.role != Role::In)).collect();
        kern.call_with(&views, params, Some(dims), on).unwrap_or_else(|e| panic!("{}: {e}", k.name));
    }
    bufs.iter().map(Buf::values).collect()
}

/// Distance in representable values of `d` between two values of `d`
/// (0: equal; NaN only equals NaN).
fn ulps(d: DType, a: f32, b: f32) -> u32 {
    normjit_cli::storage::ulp_distance(d, a, b).map_or(u32::MAX, |u| u as u32)
}

/// Every library pipeline with all its tensors stored as `d`, at a few
/// shapes: the JIT within 1 ulp of `d` of the f64 reference, and the f32
/// reference interpreter too.
fn every_pipeline_in(d: DType) {
    let c = Compiler::with_options(CompilerOptions { threads: 2, ..Default::default() }).unwrap();
    let mut pick = Pick(0xD7E5_0000 ^ d.size_bytes() as u64 ^ (d == DType::F16) as u64);
    let mut report = Vec::new();
    for (path, k0) in library() {
        let all: Vec<Storage> =
            k0.tensors.iter().map(|(_, t)| Storage { tensor: t.name.clone(), dtype: d, stochastic: None }).collect();
        let k = k0.with_storage(&all).unwrap();
        let params = params(&k);
        let (mut elements, mut exact, mut worst, mut cancelled) = (0usize, 0usize, 0u32, 0usize);
        // Half an ulp of `d` at 1.
        let half_ulp = if d == DType::BF16 { 2f64.powi(-8) } else { 2f64.powi(-11) };
        for case in 0..4 {
            let dims = random_dims(&k, &mut pick);
            let entry: Vec<Vec<f32>> = inputs(&k, &dims, &params, 11 + case, false)
                .into_iter()
                .zip(k.tensors.iter())
                .map(|(v, (_, t))| v.iter().map(|&x| t.dtype.round_f32(x)).collect())
                .collect();
            let got = jit(&c, &k, &dims, &params, &entry, Threads::Default);
            let e64v: Vec<Vec<f64>> = entry.iter().map(|v| v.iter().map(|&x| x as f64).collect()).collect();
            let e64: Vec<&[f64]> = e64v.iter().map(|v| &v[..]).collect();
            let r64 = normjit_interp::run::<f64>(&k, &dims, &params, &e64).unwrap();
            for (t, tensor) in k.tensors.iter() {
                if tensor.role == Role::In {
                    continue;
                }
                let want = r64.get(t).unwrap();
                let finite: Vec<f64> = want.iter().copied().filter(|x| x.is_finite()).collect();
                let scale = finite.iter().map(|x| x.abs()).sum::<f64>() / finite.len().max(1) as f64;
                for (i, (&g, &w)) in got[t.index()].iter().zip(want).enumerate() {
                    // The f64 reference stored a value of `d`: exact in f32.
                    let u = ulps(d, g, w as f32);
                    let small = w.is_finite() && w.abs() < scale && (g as f64 - w).abs() <= half_ulp * scale;
                    cancelled += usize::from(u > 1 && small);
                    assert!(
                        u <= 1 || small,
                        "{} as {}: `{}`[{i}] at {dims:?}: JIT {g:e}, f64 reference rounded to {} {w:e}: {u} ulps",
                        path.display(),
                        d.name(),
                        tensor.name,
                        d.name()
                    );
                    elements += 1;
                    exact += usize::from(u == 0);
                    if u <= 1 || !small {
                        worst = worst.max(u);
                    }
                }
            }
        }
        report.push(format!(
            "{}: {elements} elements, {exact} exact, max {worst} ulp, {cancelled} small results of cancellations",
            k.name
        ));
    }
    eprintln!("{} storage:\n  {}", d.name(), report.join("\n  "));
}

#[test]
fn every_pipeline_stored_as_bf16_is_within_one_ulp_of_the_f64_reference() {
    every_pipeline_in(DType::BF16);
}

#[test]
fn every_pipeline_stored_as_f16_is_within_one_ulp_of_the_f64_reference() {
    every_pipeline_in(DType::F16);
}

/// `y = x` stored as bf16 with stochastic rounding.
fn sr_kernel() -> Kernel {
    normjit::ir::parse(
        "kernel sr {\n dims N\n in x: f32[N]\n out y: bf16[N] stochastic(seed)\n param seed: u32\n y = x\n}\n",
    )
    .unwrap()
}

#[test]
fn stochastic_rounding_is_unbiased_and_independent_of_threads() {
    let k = sr_kernel();
    let n = 1_000_000usize;
    // Values with every dropped fraction: x = 1 + (i mod 2^16) * 2^-23,
    // so the ulp of bf16 near 1 is 2^-7 and the dropped part is uniform.
    let x: Vec<f32> =
        (0..n).map(|i| f32::from_bits(0x3F80_0000 | ((i as u32).wrapping_mul(40_503) & 0xFFFF))).collect();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
    let c = Compiler::with_options(CompilerOptions { threads: 3, parallel_min_work: 1, ..Default::default() }).unwrap();
    let run = |seed: u32, on: Threads| jit(&c, &k, &[n], &[f64::from(seed)], &[x.clone(), vec![0.0; n]], on)[1].clone();
    let one = run(5, Threads::CallingThread);
    assert_eq!(one, run(5, Threads::Pool(&pool)), "3 threads differ from 1");
    assert_eq!(one, run(5, Threads::Default), "the compiler's pool differs from 1 thread");
    // The reference interpreter draws the same noise.
    let r = normjit_interp::run::<f32>(&k, &[n], &[5.0], &[&x, &[]]).unwrap();
    let want = r.get(k.tensor("y").unwrap()).unwrap();
    assert!(one.iter().zip(want).all(|(a, b)| a.to_bits() == b.to_bits()), "JIT and interpreter draw different noise");
    // Unbiased: the mean error, in ulps of bf16 at 1 (2^-7), has standard
    // deviation at most 0.5 / sqrt(n) = 5e-4; 5 sigma is 2.5e-3.
    let ulp = 2f64.powi(-7);
    let mean_err =
        |y: &[f32], x: &[f32]| y.iter().zip(x).map(|(&a, &b)| (a as f64 - b as f64) / ulp).sum::<f64>() / n as f64;
    let m = mean_err(&one, &x);
    assert!(m.abs() < 2.5e-3, "mean error {m} ulps over {n} elements");
    // Every result is one of the two neighbours.
    assert!(one
        .iter()
        .zip(&x)
        .all(|(&y, &x)| y.to_bits() == x.to_bits() & 0xFFFF_0000
            || y.to_bits() == (x.to_bits() & 0xFFFF_0000) + 0x1_0000));
    // A fixed fraction 0.3 of an ulp: rounded up with probability 0.3
    // (standard deviation sqrt(0.21 / n) = 4.6e-4; 5 sigma).
    let x3 = vec![f32::from_bits(0x3F80_4CCD); n];
    let frac = f64::from(0x4CCD) / 65536.0;
    let y3 = jit(&c, &k, &[n], &[9.0], &[x3.clone(), vec![0.0; n]], Threads::Default)[1].clone();
    let up = y3.iter().filter(|&&y| y > 1.0).count() as f64 / n as f64;
    assert!((up - frac).abs() < 5.0 * (frac * (1.0 - frac) / n as f64).sqrt(), "rounded up {up}, want {frac}");
    // Round to nearest would always round 0.3 down: the bias SR removes.
    assert!(up > 0.25);
    // Another seed gives other noise.
    assert_ne!(one, run(6, Threads::CallingThread));
}

#[test]
fn stochastic_rounding_keeps_nan_and_infinities() {
    let k = sr_kernel();
    let x = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, f32::MAX, -f32::MAX, 0.0, -0.0, 1e-40];
    let c = Compiler::new().unwrap();
    for seed in 0..20u32 {
        let y =
            jit(&c, &k, &[x.len()], &[f64::from(seed)], &[x.to_vec(), vec![0.0; x.len()]], Threads::Default)[1].clone();
        assert!(y[0].is_nan() && DType::BF16.encode(y[0]) == 0x7FC0);
        assert_eq!(&y[1..3], &[f32::INFINITY, f32::NEG_INFINITY]);
        // f32::MAX lies between bf16's largest finite value and 2^128: it
        // rounds to one of them.
        assert!(y[3] == f32::INFINITY || y[3] == bf16::MAX.to_f32());
        assert!(y[4] == f32::NEG_INFINITY || y[4] == bf16::MIN.to_f32());
        assert_eq!((y[5].to_bits(), y[6].to_bits()), (0, 0x8000_0000));
        assert!(y[7] >= 0.0 && y[7] <= 2f32.powi(-133) * 2.0);
    }
}

/// One AdamW step in f64 on the master copy: what `adamw_master` computes
/// before it rounds (the f64 per-call scalars as PyTorch's Python floats).
#[test]
fn mixed_precision_adamw_matches_an_f64_step_on_the_master_copy() {
    let k = normjit::load_kernel(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("ir/optim/adamw_master.nj"))
        .unwrap();
    let n = 4099;
    let (lr, b1, b2, eps, wd, t) = (1e-3, 0.9, 0.999, 1e-8, 0.01, 7.0);
    let mut pick = Pick(77);
    let mut unit = || (pick.below(2_000_001) as f64 - 1e6) / 1e6;
    let master: Vec<f32> = (0..n).map(|_| unit() as f32).collect();
    let g: Vec<f32> = (0..n).map(|_| DType::BF16.round_f32(unit() as f32 * 0.1)).collect();
    let m: Vec<f32> = (0..n).map(|_| unit() as f32 * 0.01).collect();
    let v: Vec<f32> = (0..n).map(|_| (unit() as f32 * 0.01).abs()).collect();
    let order = ["master", "p", "m", "v", "g"];
    let sig: Vec<&str> = k.tensors.iter().map(|(_, t)| t.name.as_str()).collect();
    assert_eq!(sig, order);
    let params = [lr, b1, b2, eps, wd, t];
    let c = Compiler::new().unwrap();
    let out =
        jit(&c, &k, &[n], &params, &[master.clone(), vec![0.0; n], m.clone(), v.clone(), g.clone()], Threads::Default);
    let mut worst = (0.0f64, 0u32);
    for i in 0..n {
        let (p0, g0, m0, v0) = (master[i] as f64, g[i] as f64, m[i] as f64, v[i] as f64);
        let m1 = b1 * m0 + (1.0 - b1) * g0;
        let v1 = b2 * v0 + (1.0 - b2) * g0 * g0;
        let step = lr / (1.0 - b1.powf(t));
        let bc2 = (1.0 - b2.powf(t)).sqrt();
        let want = p0 * (1.0 - lr * wd) - step * m1 / (v1.sqrt() / bc2 + eps);
        let rel = (out[0][i] as f64 - want).abs() / want.abs().max(1e-3);
        assert!(rel < 1e-5, "master[{i}] = {} vs f64 {want}", out[0][i]);
        let u = ulps(DType::BF16, out[1][i], DType::BF16.round_f64(want) as f32);
        assert!(u <= 1, "p[{i}] = {} vs bf16(f64 step) {}", out[1][i], DType::BF16.round_f64(want));
        // p is exactly the master copy rounded to nearest even.
        assert_eq!(out[1][i], DType::BF16.round_f32(out[0][i]));
        worst = (worst.0.max(rel), worst.1.max(u));
    }
    eprintln!("adamw_master: master max rel error {:.2e}, p max {} ulp", worst.0, worst.1);
}

#[test]
fn bad_storage_and_buffers_of_the_wrong_type_are_refused_before_writing() {
    let c = Compiler::new().unwrap();
    let rms =
        normjit::load_kernel(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("ir/norm/rms_norm.nj")).unwrap();
    let kern = c.kernel(rms.clone());
    let cases: &[(&str, &str)] = &[
        ("x=fp8", "unknown dtype `fp8`; expected f32, bf16 or f16"),
        ("x=u32", "`u32` is a param type, not a tensor storage type"),
        ("eps=bf16", "`eps` is a param"),
        ("z=bf16", "kernel `rms_norm` has no tensor `z` (its tensors: x, gamma, y)"),
        ("y=f16:stochastic(seed)", "stochastic rounding is for bf16 storage, not f16"),
        ("x=bf16:stochastic(seed)", "`x` is an `in` tensor"),
        ("y=bf16:stochastic(eps)", "the seed of `stochastic` must be a u32 param, and `eps` is f32"),
        ("y=bf16:round(seed)", "expected `:stochastic(SEED)` after the dtype"),
        ("x=bf16,x=f16", "tensor `x` is given a dtype twice"),
        ("x", "expected TENSOR=DTYPE"),
    ];
    for (spec, want) in cases {
        let err = match parse_storage(spec) {
            Err(e) => e,
            Ok(list) => {
                let e = kern.with_storage(&list).err().unwrap_or_else(|| panic!("`{spec}` was accepted"));
                assert_eq!(e.kind(), ErrorKind::DType, "{spec}");
                e.to_string()
            }
        };
        assert!(err.contains(want), "`{spec}`: got `{err}`, want `{want}`");
    }
    // A stochastic seed the kernel lacks is added as a u32 param without
    // a default: every call must pass it.
    let sr = kern.with_storage(&parse_storage("x=bf16,y=bf16:stochastic(step)").unwrap()).unwrap();
    let last = sr.signature().params.last().unwrap();
    assert_eq!((last.name.as_str(), last.default), ("step", None));
    // A bf16 buffer for an f32 tensor, and the reverse: refused, untouched.
    let x = vec![bf16::from_f32(1.0); 8];
    let gamma = vec![1.0f32; 4];
    let mut y = vec![7.0f32; 8];
    let e = kern.call(&[Tensor::input(&x), Tensor::input(&gamma), Tensor::output(&mut y)], &[1e-6]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::DType);
    assert!(e.to_string().contains("`x` is declared f32 but a bf16 buffer was given"), "{e}");
    assert!(e.to_string().contains("storage override `x=bf16`"), "{e}");
    assert!(y.iter().all(|&v| v == 7.0));
    let half_k = kern.with_storage(&parse_storage("x=bf16,y=bf16").unwrap()).unwrap();
    let xf = vec![1.0f32; 8];
    let mut yb = vec![bf16::from_f32(7.0); 8];
    let e = half_k.call(&[Tensor::input(&xf), Tensor::input(&gamma), Tensor::output(&mut yb)], &[1e-6]).unwrap_err();
    assert!(e.to_string().contains("`x` is declared bf16 but a f32 buffer was given"), "{e}");
    assert!(yb.iter().all(|v| v.to_f32() == 7.0));
    // Overlap is measured in bytes: a bf16 output overlapping the second
    // half of a bf16 input's bytes is refused.
    let mut both = vec![bf16::from_f32(1.0); 16];
    let base = both.as_mut_ptr();
    // SAFETY: both views lie inside `both` (x: elements 0..8, y: 6..14),
    // which nothing else touches during the call; the call refuses the
    // overlap before it reads or writes either.
    let (xv, yv) = unsafe {
        (
            Tensor::raw(base as *mut std::ffi::c_void, 8, false, Some(DType::BF16), ""),
            Tensor::raw(base.add(6) as *mut std::ffi::c_void, 8, true, Some(DType::BF16), ""),
        )
    };
    let e = half_k.call(&[xv, Tensor::input(&gamma), yv], &[1e-6]);
    assert_eq!(e.unwrap_err().kind(), ErrorKind::Alias);
    assert!(both.iter().all(|v| v.to_f32() == 1.0));
    // And a bf16 output right after a bf16 input (adjacent, no overlap) runs.
    let mut adj = [bf16::from_f32(1.0); 16];
    let (xa, ya) = adj.split_at_mut(8);
    half_k.call(&[Tensor::input(&*xa), Tensor::input(&gamma), Tensor::output(ya)], &[1e-6]).unwrap();
}
