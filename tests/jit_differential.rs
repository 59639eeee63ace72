//! Every library pipeline through the public API (`Compiler`, `Kernel`,
//! `Bindings`): the JIT agrees with the reference interpreter at dims 0, 1,
//! 3, 4, 5, 7, 1023 and 4097 (and mixes), with NaN and Inf inputs, and its
//! results are bit-identical with 1, 2 and 3 threads.
//!
//! Tolerance: relative 1e-5 of the output's scale against the f64
//! reference, or 4x the f32 interpreter's own error where that is larger
//! (see `common::compare`); NaN exactly where the f32 interpreter has NaN.

mod common;

use common::*;
use normjit::ir::{Kernel, Role};
use normjit::{Bindings, Compiler, CompilerOptions};

fn run_jit(c: &Compiler, k: &Kernel, dims: &[usize], params: &[f64], inputs: &[Vec<f32>]) -> Vec<Vec<f32>> {
    let kernel = c.kernel(k.clone());
    let mut bufs: Vec<Buf> = k.tensors.iter().map(|(id, t)| Buf::of(t.dtype, &inputs[id.index()])).collect();
    let mut b = Bindings::new();
    for ((_, t), buf) in k.tensors.iter().zip(bufs.iter_mut()) {
        b = b.tensor(&t.name, buf.view(t.role != Role::In));
    }
    for (p, param) in k.params.iter() {
        b = b.param(&param.name, params[p.index()]);
    }
    for (d, dim) in k.dims.iter() {
        b = b.dim(&dim.name, dims[d.index()]);
    }
    kernel.run(b).unwrap_or_else(|e| panic!("{} {dims:?}: {e}", k.name));
    bufs.iter().map(Buf::values).collect()
}

/// The comparison's relative tolerance for a tensor: 1e-5 of the scale,
/// or an ulp of a narrow storage type.
fn tolerance(d: normjit::DType) -> f64 {
    match d {
        normjit::DType::BF16 => 2f64.powi(-8),
        normjit::DType::F16 => 2f64.powi(-11),
        _ => 1e-5,
    }
}

fn shapes(k: &Kernel) -> Vec<Vec<usize>> {
    let n = k.dims.len();
    let mut out = Vec::new();
    for &s in &[0usize, 1, 3, 4, 5, 7, 1023, 4097] {
        // Every dim at `s` where that stays small; otherwise `s` on one dim
        // and small odd sizes on the others.
        if s.pow(n as u32) <= 70_000 {
            out.push(vec![s; n]);
        }
        for i in 0..n {
            let mut d = vec![3; n];
            d[i] = s;
            if n >= 3 {
                d[(i + 1) % n] = 5;
            }
            out.push(d);
        }
    }
    out.sort();
    out.dedup();
    out
}

#[test]
fn jit_agrees_with_the_interpreter_at_odd_shapes_with_nan_and_inf() {
    let c = Compiler::with_options(CompilerOptions { threads: 2, ..Default::default() }).unwrap();
    let mut failures = Vec::new();
    let mut runs = 0;
    for (_, k) in library() {
        let params = params(&k);
        for dims in shapes(&k) {
            for specials in [false, true] {
                runs += 1;
                let inputs = inputs(&k, &dims, &params, 99 + runs, specials);
                let got = run_jit(&c, &k, &dims, &params, &inputs);
                let s32: Vec<&[f32]> = inputs.iter().map(|v| v.as_slice()).collect();
                let in64: Vec<Vec<f64>> = inputs.iter().map(|v| v.iter().map(|&x| x as f64).collect()).collect();
                let s64: Vec<&[f64]> = in64.iter().map(|v| v.as_slice()).collect();
                let r32 = normjit_interp::run::<f32>(&k, &dims, &params, &s32).unwrap();
                let r64 = normjit_interp::run::<f64>(&k, &dims, &params, &s64).unwrap();
                for (id, t) in k.tensors.iter().filter(|(_, t)| t.role != Role::In) {
                    let what = format!("{} {dims:?} specials={specials} `{}`", k.name, t.name);
                    if let Err(e) =
                        compare(&what, &got[id.index()], r64.get(id).unwrap(), r32.get(id).unwrap(), tolerance(t.dtype))
                    {
                        failures.push(e);
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures in {runs} runs:\n{}",
        failures.len(),
        failures[..failures.len().min(20)].join("\n")
    );
}

#[test]
fn results_are_bit_identical_for_1_2_and_3_threads() {
    let compilers: Vec<Compiler> = [1, 2, 3]
        .iter()
        .map(|&t| Compiler::with_options(CompilerOptions { threads: t, ..Default::default() }).unwrap())
        .collect();
    for (_, k) in library() {
        let params = params(&k);
        // Large enough for several thread chunks.
        let dims: Vec<usize> = match k.dims.len() {
            1 => vec![300_001],
            2 => vec![67, 4099],
            3 => vec![9, 33, 1031],
            _ => vec![5, 17, 33, 65],
        };
        let inputs = inputs(&k, &dims, &params, 7, false);
        let results: Vec<Vec<Vec<f32>>> = compilers.iter().map(|c| run_jit(c, &k, &dims, &params, &inputs)).collect();
        for (id, t) in k.tensors.iter().filter(|(_, t)| t.role != Role::In) {
            let bits = |r: &Vec<Vec<f32>>| r[id.index()].iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert!(
                bits(&results[0]) == bits(&results[1]) && bits(&results[1]) == bits(&results[2]),
                "{} `{}` differs across thread counts",
                k.name,
                t.name
            );
        }
    }
}
