//! A positional call allocates nothing in steady state: counted by a
//! global allocator, on the calling thread and on a pool, for a group
//! kernel (LayerNorm), a streaming optimizer step (AdamW) and a kernel
//! with per-chunk partial reductions (a global sum of squares).
//!
//! One test in its own binary, so no other test allocates meanwhile.

use normjit::{Compiler, CompilerOptions, Tensor, Threads};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator, counting calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is `System.alloc`'s.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static A: Counting = Counting;

const CALLS: usize = 2000;

fn allocs_per_calls(mut f: impl FnMut()) -> usize {
    for _ in 0..50 {
        f();
    }
    let before = ALLOCS.load(Ordering::SeqCst);
    for _ in 0..CALLS {
        f();
    }
    ALLOCS.load(Ordering::SeqCst) - before
}

const SUMSQ: &str = "kernel sumsq {\n dims N\n in x: f32[N]\n out s: f32[]\n s = sum(x * x, N)\n}\n";

#[test]
fn positional_calls_allocate_nothing_in_steady_state() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("ir");
    // Every call goes to the pool, however small (to test that path).
    let opts = CompilerOptions { threads: 2, parallel_min_work: 0, chunk_elems: 1024, ..Default::default() };
    let c = Compiler::with_options(opts).unwrap();
    let ln = c.compile_file(&root.join("norm/layer_norm.nj")).unwrap();
    let adamw = c.compile_file(&root.join("optim/adamw.nj")).unwrap();
    let sumsq = c.compile_source(SUMSQ).unwrap();

    let (n, d) = (64, 256);
    let x: Vec<f32> = (0..n * d).map(|i| (i % 17) as f32 * 0.1).collect();
    let (g, b) = (vec![1.0f32; d], vec![0.0f32; d]);
    let mut y = vec![0.0f32; n * d];
    let p_len = 20_000;
    let (mut p, gr, mut m, mut v) =
        (vec![0.5f32; p_len], vec![0.01f32; p_len], vec![0.0f32; p_len], vec![0.0f32; p_len]);
    let mut s = [0.0f32];
    let lr_params: Vec<f64> = adamw.signature().params.iter().map(|q| q.default.unwrap_or(1.0)).collect();

    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    // Threads allocate as they start (thread-locals, rayon's per-worker
    // state), and start when the OS schedules them: on a loaded machine
    // that can be inside a measured window, on any thread, and the counter
    // is global. So every pool's workers run a job before anything is
    // counted: this pool's, and the compiler's own (`Threads::Default`).
    pool.broadcast(|_| ());
    {
        let ss = [Tensor::input(&x), Tensor::output(&mut s)];
        for _ in 0..50 {
            sumsq.call_with(&ss, &[], None, Threads::Default).unwrap();
        }
    }
    for (name, on) in [("calling thread", Threads::CallingThread), ("pool", Threads::Pool(&pool))] {
        let a = {
            let ln_args = [Tensor::input(&x), Tensor::input(&g), Tensor::input(&b), Tensor::output(&mut y)];
            allocs_per_calls(|| ln.call_with(&ln_args, &[1e-5], None, on).map(|_| ()).unwrap())
        };
        let mut results = vec![(format!("layer_norm on the {name}"), a)];
        let aw = [Tensor::output(&mut p), Tensor::input(&gr), Tensor::output(&mut m), Tensor::output(&mut v)];
        let order: Vec<usize> = adamw
            .signature()
            .tensors
            .iter()
            .map(|t| ["p", "g", "m", "v"].iter().position(|n| *n == t.name).unwrap())
            .collect();
        let mut aw: Vec<Option<Tensor>> = aw.into_iter().map(Some).collect();
        let aw: Vec<Tensor> = order.iter().map(|&i| aw[i].take().unwrap()).collect();
        results.push((
            format!("adamw on the {name}"),
            allocs_per_calls(|| adamw.call_with(&aw, &lr_params, None, on).map(|_| ()).unwrap()),
        ));
        drop(aw);
        let ss = [Tensor::input(&x), Tensor::output(&mut s)];
        results.push((
            format!("sum of squares on the {name}"),
            allocs_per_calls(|| sumsq.call_with(&ss, &[], None, on).map(|_| ()).unwrap()),
        ));
        // A runtime whose own loop runs inside the pool: rayon's jobs then
        // go to the worker's own deque, and nothing allocates.
        if matches!(on, Threads::Pool(_)) {
            let inside = pool.install(|| allocs_per_calls(|| sumsq.call_with(&ss, &[], None, on).map(|_| ()).unwrap()));
            results.push(("sum of squares from inside the pool".into(), inside));
        }
        for (what, n) in results {
            println!("{what}: {n} allocations in {CALLS} calls");
            // From outside a pool, rayon's injector queue allocates one block
            // per 63 injected jobs (crossbeam's `Injector`; the window may
            // start inside a block, hence one more); that is the only
            // allocation allowed, amortized. Everything of normjit's is zero.
            let allowed = if what.contains("on the pool") { CALLS.div_ceil(63) + 1 } else { 0 };
            assert!(n <= allowed, "{what}: {n} allocations in {CALLS} calls (allowed {allowed})");
        }
    }
}
