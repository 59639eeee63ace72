//! `normjit bench --runtime-shapes`: one kernel called with a new shape on
//! every call, as a runtime with variable sequence lengths calls it.
//!
//! LayerNorm with D = 4096 and N drawn at random from 1..=16384 on every
//! call: how many compilations the stream of shapes causes, and, at N = 256
//! and N = 16384, the throughput of the code that reads its sizes at run
//! time next to code specialized to those sizes (measured alternately in
//! the same run, on the same buffers).

use normjit::{Compiler, CompilerOptions, Tensor, Threads};
use std::hint::black_box;
use std::time::Instant;

const D: usize = 4096;
const MAX_N: usize = 16384;

/// Runs the benchmark with `calls` random shapes; prints a report.
pub fn run(calls: usize, threads: usize) -> Result<(), String> {
    let k = normjit::load_kernel(std::path::Path::new("ir/norm/layer_norm.nj")).map_err(|e| e.to_string())?;
    let opts = CompilerOptions { threads, ..normjit_cli::target::compiler_options() };
    let runtime = Compiler::with_options(opts.clone()).map_err(|e| e.to_string())?;
    let special = Compiler::with_options(CompilerOptions { specialize: true, ..opts }).map_err(|e| e.to_string())?;
    // Staggered within the 4 KiB page, so the streams do not alias.
    let mut x = vec![0.0f32; MAX_N * D + 1024];
    let mut y = vec![0.0f32; MAX_N * D + 1024];
    for (i, v) in x.iter_mut().enumerate() {
        *v = ((i * 7919) % 1000) as f32 * 1e-3 - 0.5;
    }
    let (g, b) = (vec![1.0f32; D], vec![0.0f32; D]);
    let params = [1e-5];
    let (xo, yo) = (0, 304);
    let call = |kern: &normjit::Kernel, x: &[f32], y: &mut [f32], n: usize| -> Result<(), String> {
        let t = [
            Tensor::input(&x[xo..xo + n * D]),
            Tensor::input(&g),
            Tensor::input(&b),
            Tensor::output(&mut y[yo..yo + n * D]),
        ];
        kern.call_with(&t, &params, None, Threads::Default).map(|_| ()).map_err(|e| e.to_string())
    };

    // The stream of shapes.
    let kern = runtime.kernel(k.clone());
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut seen = std::collections::HashSet::new();
    let t0 = Instant::now();
    for i in 0..calls {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let n = 1 + (rng % MAX_N as u64) as usize;
        seen.insert(n);
        call(&kern, &x, &mut y, n)?;
        if i % 500 == 0 && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            eprint!("\r  runtime shapes: {i}/{calls} calls");
        }
    }
    let stream_s = t0.elapsed().as_secs_f64();
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        eprint!("\r\x1b[2K");
    }
    println!("runtime shapes: layer_norm, D = {D}, N random in 1..={MAX_N}, {threads} thread(s)");
    println!(
        "  {calls} calls, {} distinct shapes, {} compilation(s), {:.1} s, shapes kept {} (LRU)",
        seen.len(),
        kern.compiles(),
        stream_s,
        kern.shapes_cached()
    );

    // Fixed shapes: runtime sizes vs specialized code, alternating.
    println!("  {:>6}  {:>14}  {:>14}  {:>8}", "N", "runtime GB/s", "special GB/s", "ratio");
    for n in [256usize, MAX_N] {
        let kr = runtime.kernel(k.clone());
        let ks = special.kernel(k.clone());
        // Every tensor of the library's layer_norm is f32.
        let bytes = ((2 * n * D + 2 * D) * std::mem::size_of::<f32>()) as f64;
        let reps = if n <= 256 { 400 } else { 12 };
        let (mut tr, mut ts) = (Vec::new(), Vec::new());
        call(&kr, &x, &mut y, n)?;
        call(&ks, &x, &mut y, n)?;
        for _ in 0..reps {
            for (kern, out) in [(&kr, &mut tr), (&ks, &mut ts)] {
                let t = Instant::now();
                call(kern, black_box(&x), &mut y, n)?;
                out.push(t.elapsed().as_secs_f64());
            }
        }
        let med = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let (r, s) = (bytes / med(&mut tr) / 1e9, bytes / med(&mut ts) / 1e9);
        println!("  {n:>6}  {r:>14.1}  {s:>14.1}  {:>8.2}", r / s);
    }
    Ok(())
}
