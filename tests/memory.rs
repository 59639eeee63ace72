//! Code memory is released with the last kernel that uses it: compile /
//! run / drop cycles keep RSS flat. In its own test binary so that no other
//! test allocates in the same process while it measures.

use normjit::{Bindings, Compiler, CompilerOptions};
use std::path::Path;

fn load(rel: &str) -> normjit::ir::Kernel {
    normjit::load_kernel(&Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap()
}

fn data(n: usize, seed: u32) -> Vec<f32> {
    (0..n).map(|i| ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) % 1000) as f32 / 250.0 - 2.0).collect()
}

fn compiler(threads: usize) -> Compiler {
    Compiler::with_options(CompilerOptions { threads, ..Default::default() }).unwrap()
}

fn rss_kib() -> usize {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = s.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4
}

#[test]
fn compile_run_drop_cycles_keep_memory_flat() {
    let cycles: usize = std::env::var("NORMJIT_RSS_CYCLES").ok().and_then(|s| s.parse().ok()).unwrap_or(1000);
    let c = compiler(1);
    let ir = load("ir/optim/adamw.nj");
    let mut p = data(1000, 1);
    let (mut m, mut v, g) = (vec![0.0f32; 1000], vec![0.0f32; 1000], data(1000, 2));
    let mut cycle = || {
        let k = c.kernel(ir.clone());
        let info = k
            .run(
                Bindings::new()
                    .output("p", &mut p)
                    .output("m", &mut m)
                    .output("v", &mut v)
                    .input("g", &g)
                    .param("t", 1.0),
            )
            .unwrap();
        assert!(info.compile_us > 0.0, "each cycle compiles afresh");
    };
    for _ in 0..100 {
        cycle();
    }
    let before = rss_kib();
    for i in 0..cycles {
        cycle();
        if std::env::var_os("TRACE").is_some() && i % (cycles / 10).max(1) == 0 {
            eprintln!("{i} {}", rss_kib());
        }
    }
    let after = rss_kib();
    assert_eq!(c.cached(), 0, "dropped kernels keep no code alive");
    // A leak of one code page per compile would be 4 MB here.
    assert!(after < before + 2048, "RSS grew from {before} KiB to {after} KiB over {cycles} compile/run/drop cycles");
    eprintln!("RSS before {before} KiB, after {cycles} cycles {after} KiB");
}
