//! Code generation, checked against the loop-IR interpreter bit for bit:
//! every library pipeline, random odd shapes, chunkings, NaN/Inf inputs,
//! native and baseline (no AVX/FMA) ISAs, 1 to 3 threads.

mod common;

use common::*;
use normjit::ir::Kernel;
use normjit_codegen::{CodegenOptions, Compiled, Isa, IsaChoice};
use normjit_lower::{exec, lower, Options};
use normjit_testkit::param_words;

fn check(
    k: &Kernel,
    dims: &[usize],
    seed: u64,
    specials: bool,
    chunk: usize,
    isa: &Isa,
    threads: usize,
) -> Result<(), String> {
    let params = params(k);
    let inputs = inputs(k, dims, &params, seed, specials);
    let opts = Options { chunk_elems: chunk, verify: true, ..Options::default() };
    let plan = lower(k, dims, &opts).map_err(|e| e.to_string())?;
    let mut want = inputs.clone();
    exec(&plan, dims, &params, &mut want).map_err(|e| e.to_string())?;
    let code = std::sync::Arc::new(Compiled::new(&plan, isa, &CodegenOptions::default()).map_err(|e| e.to_string())?);
    let mut got = inputs.clone();
    let ptrs: Vec<*mut f32> = got.iter_mut().map(|v| v.as_mut_ptr()).collect();
    let words = param_words(k, &params);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    // SAFETY: each buffer has its tensor's length at `dims` (the plan's
    // sizes) and they are distinct allocations.
    unsafe { normjit::unstable::execute_at(&code, dims, &ptrs, &words, if threads > 1 { Some(&pool) } else { None }) };
    for (id, t) in k.tensors.iter() {
        let (g, w) = (&got[id.index()], &want[id.index()]);
        if let Some(i) = (0..g.len()).find(|&i| g[i].to_bits() != w[i].to_bits() && !(g[i].is_nan() && w[i].is_nan())) {
            return Err(format!(
                "{} {:?} chunk {chunk} {:?} threads {threads}: `{}`[{i}] = {} but the loop IR gives {}",
                k.name, dims, isa.choice, t.name, g[i], w[i]
            ));
        }
    }
    Ok(())
}

#[test]
fn jit_matches_the_loop_ir_bit_for_bit() {
    let native = Isa::new(IsaChoice::Native).unwrap();
    let baseline = Isa::new(IsaChoice::Baseline).unwrap();
    let cases: usize = std::env::var("NORMJIT_DIFF_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(12);
    let mut pick = Pick(0xC0DE_6E11_0000_0001);
    let mut failures = Vec::new();
    let mut runs = 0;
    for (_, k) in library() {
        for case in 0..cases {
            let dims = random_dims(&k, &mut pick);
            let chunk = [1, 7, 64, 1 << 15][pick.below(4)];
            let isa = if case % 3 == 2 { &baseline } else { &native };
            let threads = 1 + case % 3;
            runs += 1;
            if let Err(e) = check(&k, &dims, pick.next(), case % 4 == 3, chunk, isa, threads) {
                failures.push(e);
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {runs} failed:\n{}",
        failures.len(),
        failures[..failures.len().min(15)].join("\n")
    );
}
