//! Criterion benchmarks of the library pipelines that have a hand-fused
//! rustc reference kernel, at small sizes (about 1 MiB per largest tensor,
//! in cache): the JIT through the safe API, the reference interpreter in f32
//! and the rustc kernel, on one thread, all on the same staggered buffers.
//!
//! `cargo bench --bench kernels` (add `-- layer_norm` to pick one). The
//! throughput criterion prints is the kernel's minimal traffic (each tensor
//! read once, each written once) per second. `normjit bench` is the full
//! comparison (DRAM sizes, all cores, the stream roofline); these exist so
//! that criterion's statistics and history are at hand while working on
//! one kernel.
//!
//! Optimizer state (`inout` tensors) is updated in place call after call,
//! as in training; the updates keep it finite over many more calls than a
//! run makes.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use normjit::ir::{Kernel, Role};
use normjit::{Bindings, Compiler, CompilerOptions};
use normjit_cli::bench::reference::{Pipeline, Reference};
use normjit_cli::bench::{Buffers, Placement};
use normjit_cli::bind::{example_params, resolve_dims, resolve_params};
use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

/// Each pipeline and its small size.
const CASES: [(Pipeline, &[(&str, &str)]); 6] = [
    (Pipeline::LayerNorm, &[("N", "256"), ("D", "1024")]),
    (Pipeline::RmsNorm, &[("N", "256"), ("D", "1024")]),
    (Pipeline::BatchNormTrain, &[("N", "32"), ("C", "64"), ("H", "11"), ("W", "11")]),
    (Pipeline::AdamW, &[("P", "262144")]),
    (Pipeline::Sgd, &[("P", "262144")]),
    (Pipeline::ProxL1, &[("P", "262144")]),
];

/// One JIT call, binding every tensor by name as a user would, with the
/// params that differ from their defaults and the dims (which the lengths
/// alone do not always determine, e.g. BatchNorm's N, H and W).
fn jit_call(k: &Kernel, kernel: &normjit::Kernel, params: &[(&str, f64)], dims: &[usize], bufs: &mut [&mut [f32]]) {
    let mut b = Bindings::new();
    for ((_, t), s) in k.tensors.iter().zip(bufs.iter_mut()) {
        b = if t.role == Role::In { b.input(&t.name, s) } else { b.output(&t.name, s) };
    }
    for &(n, v) in params {
        b = b.param(n, v);
    }
    for (d, dim) in k.dims.iter() {
        b = b.dim(&dim.name, dims[d.index()]);
    }
    black_box(kernel.run(b).expect("the kernel runs"));
}

fn kernels(c: &mut Criterion) {
    let compiler = Compiler::with_options(CompilerOptions { threads: 1, ..Default::default() }).expect("a compiler");
    for (pipeline, dims) in CASES {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("ir").join(pipeline.path());
        let k = normjit::load_kernel(&file).unwrap_or_else(|e| panic!("{e}"));
        let given: Vec<(String, String)> = dims.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
        let dims = resolve_dims(&k, &given, &[]).expect("the dims fit");
        let params = resolve_params(&k, &example_params(&k)).expect("the params fit");
        let min_bytes = normjit_lower::lower(&k, &dims, &Default::default()).expect("lowers").traffic.min_bytes;
        let mut bufs = Buffers::for_kernel(&k, &dims, &params, 0, Placement::Staggered);

        let mut g = c.benchmark_group(k.name.clone());
        g.throughput(Throughput::Bytes(min_bytes))
            .sample_size(20)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(1));

        let kernel = compiler.kernel(k.clone());
        kernel.prepare(&dims).expect("compiles");
        let named: Vec<(&str, f64)> = k
            .params
            .iter()
            .filter(|(p, param)| param.default != Some(params[p.index()]))
            .map(|(p, param)| (param.name.as_str(), params[p.index()]))
            .collect();
        g.bench_function("jit", |b| {
            let mut sl = bufs.slices_mut();
            b.iter(|| jit_call(&k, &kernel, &named, &dims, &mut sl))
        });

        let reference = Reference::for_kernel(&k).expect("a reference kernel");
        g.bench_function("rustc", |b| {
            b.iter(|| {
                reference.run(&dims, &params, &mut bufs, None);
                black_box(&mut bufs);
            })
        });

        g.bench_function("interp", |b| {
            let slices = bufs.slices();
            b.iter(|| black_box(normjit_interp::run::<f32>(&k, &dims, &params, &slices).expect("the interpreter runs")))
        });
        g.finish();
    }
}

criterion_group!(benches, kernels);
criterion_main!(benches);
