//! The lowering, checked on its own: every library pipeline, lowered and
//! run by the loop-IR interpreter, agrees with the reference interpreter
//! across random odd shapes (0, 1, 3, 4, 5, 1023, ...), chunkings and
//! NaN/Inf inputs, planned with and without fused multiply-adds (every
//! other case fused, as for an ISA with FMA). Tolerance: 1e-5 of the
//! tensor's scale against f64, or 4x the f32 reference's own error (see
//! `common::compare`).

mod common;

use common::*;
use normjit::ir::Role;
use normjit_lower::{exec, lower, Options};

fn check_one(
    k: &normjit::ir::Kernel,
    dims: &[usize],
    seed: u64,
    specials: bool,
    chunk: usize,
    fma: bool,
) -> Result<f64, String> {
    let params = params(k);
    let inputs = inputs(k, dims, &params, seed, specials);
    let opts = Options { chunk_elems: chunk, verify: true, fma, ..Options::default() };
    let plan = lower(k, dims, &opts).map_err(|e| e.to_string())?;
    let mut bufs = inputs.clone();
    exec(&plan, dims, &params, &mut bufs).map_err(|e| e.to_string())?;
    let slices32: Vec<&[f32]> = inputs.iter().map(|v| v.as_slice()).collect();
    let in64: Vec<Vec<f64>> = inputs.iter().map(|v| v.iter().map(|&x| x as f64).collect()).collect();
    let slices64: Vec<&[f64]> = in64.iter().map(|v| v.as_slice()).collect();
    let r32 = normjit_interp::run::<f32>(k, dims, &params, &slices32).map_err(|e| e.to_string())?;
    let r64 = normjit_interp::run::<f64>(k, dims, &params, &slices64).map_err(|e| e.to_string())?;
    let mut worst = 0.0f64;
    for (id, t) in k.tensors.iter() {
        if t.role == Role::In {
            let same = bufs[id.index()].iter().zip(&inputs[id.index()]).all(|(a, b)| a.to_bits() == b.to_bits());
            if !same {
                return Err(format!("{}: input `{}` was modified", k.name, t.name));
            }
            continue;
        }
        let what = format!("{} {:?} chunk {chunk} fma {fma} seed {seed}: `{}`", k.name, dims, t.name);
        worst = worst.max(compare(&what, &bufs[id.index()], r64.get(id).unwrap(), r32.get(id).unwrap(), 1e-5)?);
    }
    Ok(worst)
}

#[test]
fn loop_ir_agrees_with_the_reference_on_every_pipeline() {
    let cases: usize = std::env::var("NORMJIT_DIFF_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(40);
    let mut pick = Pick(0x5EED_1234_ABCD_0001);
    let mut failures = Vec::new();
    let mut runs = 0;
    for (path, k) in library() {
        for case in 0..cases {
            let dims = random_dims(&k, &mut pick);
            let chunk = [1, 7, 64, 1 << 15][pick.below(4)];
            let specials = case % 4 == 3;
            runs += 1;
            if let Err(e) = check_one(&k, &dims, pick.next(), specials, chunk, case % 2 == 1) {
                failures.push(format!("{}: {e}", path.display()));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {runs} cases failed:\n{}",
        failures.len(),
        failures[..failures.len().min(20)].join("\n")
    );
}

#[test]
fn fixed_odd_shapes() {
    for (_, k) in library() {
        for &n in &[0usize, 1, 3, 4, 5, 7, 1023] {
            let dims: Vec<usize> = k.dims.iter().map(|_| if k.dims.len() > 2 { n.min(9) } else { n }).collect();
            check_one(&k, &dims, n as u64 + 7, false, 1 << 15, false).unwrap();
            check_one(&k, &dims, n as u64 + 9, true, 3, true).unwrap();
        }
    }
}

#[test]
fn fused_multiply_adds_are_a_lowering_option() {
    let (_, k) = library().into_iter().find(|(_, k)| k.name == "layer_norm").unwrap();
    let is_fma = |p: &normjit_lower::Plan| p.nodes.iter().any(|n| matches!(n.op, normjit_lower::LOp::Fma(..)));
    let fused = lower(&k, &[4, 8], &Options { fma: true, ..Options::default() }).unwrap();
    let plain = lower(&k, &[4, 8], &Options::default()).unwrap();
    assert!(fused.fma && is_fma(&fused), "{fused}");
    assert!(!plain.fma && !is_fma(&plain), "{plain}");
}
