//! An unbounded stream of shapes keeps memory flat: a kernel remembers a
//! bounded number of shapes (an LRU), and code specialized to an evicted
//! shape is freed. In its own test binary so that no other test allocates
//! in the same process while it measures.
//!
//! `NORMJIT_SHAPE_CALLS=100000 NORMJIT_SHAPES=10000 cargo test --release
//! --test memory_shapes -- --nocapture` is the long mode.

use normjit::{Compiler, CompilerOptions, Tensor, Threads};

fn rss_kib() -> usize {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = s.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

/// Calls rms_norm at `calls` shapes cycling through `shapes` distinct
/// ones; returns RSS after warm-up and at the end, and the compilations.
fn stream(specialize: bool, calls: usize, shapes: usize) -> (usize, usize, usize) {
    let opts = CompilerOptions { threads: 1, specialize, shape_cache: 32, ..Default::default() };
    let c = Compiler::with_options(opts).unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("ir");
    let k = c.compile_file(&root.join("norm/rms_norm.nj")).unwrap();
    let max_n = 64;
    let d_max = 8 + shapes.div_ceil(max_n);
    let x = vec![0.5f32; max_n * d_max];
    let g = vec![1.0f32; d_max];
    let mut y = vec![0.0f32; max_n * d_max];
    let mut before = 0;
    let warm = calls / 10;
    for i in 0..calls {
        // Shape i mod `shapes`: N in 1..=64, D from 8 up.
        let s = i % shapes;
        let (n, d) = (1 + s % max_n, 8 + s / max_n);
        let t = [Tensor::input(&x[..n * d]), Tensor::input(&g[..d]), Tensor::output(&mut y[..n * d])];
        k.call_with(&t, &[1e-6], Some(&[n, d]), Threads::CallingThread).unwrap();
        assert_eq!(y[0], 0.5 / (0.25f32 + 1e-6).sqrt(), "shape {n}x{d}");
        if i + 1 == warm {
            before = rss_kib();
        }
    }
    assert!(k.shapes_cached() <= 32, "the shape cache is bounded");
    (before, rss_kib(), k.compiles())
}

#[test]
fn a_stream_of_shapes_keeps_memory_flat() {
    let calls = env("NORMJIT_SHAPE_CALLS", 20_000);
    let shapes = env("NORMJIT_SHAPES", 2_000);
    let (before, after, compiles) = stream(false, calls, shapes);
    eprintln!("runtime sizes: {calls} calls, {shapes} shapes, {compiles} compilation(s); RSS {before} -> {after} KiB");
    assert!(compiles <= 2, "one compilation serves every shape ({compiles})");
    assert!(after <= before + 1024, "RSS grew from {before} KiB to {after} KiB");
    // Specialized code: one compilation per shape, freed when evicted.
    let (calls, shapes) = (env("NORMJIT_SPECIAL_CALLS", 600), env("NORMJIT_SPECIAL_SHAPES", 300));
    let (before, after, compiles) = stream(true, calls, shapes);
    eprintln!("specialized: {calls} calls, {shapes} shapes, {compiles} compilation(s); RSS {before} -> {after} KiB");
    // Cycling through more shapes than the LRU holds, every call misses:
    // each compiles, and each evicted shape's code is freed.
    assert_eq!(compiles, calls, "specialized code is per shape");
    assert!(after <= before + 1024, "RSS grew from {before} KiB to {after} KiB");
}
