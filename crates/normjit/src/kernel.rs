//! [`Compiler`] and [`Kernel`]: compiling kernels for this host and calling
//! them.
//!
//! A [`Kernel`] is a parsed kernel plus, per shape it has been called
//! with, the code that runs it (see [`crate::shapes`]). Code reads the sizes
//! at run time, so shapes whose plans share a schedule share one
//! compilation; the compiler's cache key is the kernel's IR hash, the
//! schedule key (plus the sizes when [`CompilerOptions::specialize`] is
//! set) and the ISA flags. Code memory is released when the last shape
//! using it is evicted or its kernel dropped.

use crate::bind::{validate, Bindings, Small, Tensor};
use crate::exec::execute;
use crate::shapes::{Lru, Shape};
use crate::signature::Signature;
use crate::Error;
use normjit_codegen::{CodegenOptions, Compiled, Isa, IsaChoice};
use normjit_ir::Kernel as IrKernel;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Instant;

/// Compiler settings. Every target fact the schedule depends on is here:
/// the compiler reads no environment variables and no system files
/// ([`CompilerOptions::host`] reads this host's, for tools that want them).
#[derive(Clone, Debug)]
pub struct CompilerOptions {
    /// Which ISA extensions to use.
    pub isa: IsaChoice,
    /// Threads of the compiler's own pool (1: no pool; calls run on the
    /// calling thread unless given a pool). Default: the available
    /// parallelism.
    pub threads: usize,
    /// Bytes of cache a group iteration's data may occupy and still be
    /// re-read for free by later passes: the per-core L2. Default 1 MiB.
    pub cache_bytes: usize,
    /// Bytes of the last-level cache: calls whose tensors take more stream
    /// from memory (the schedule differs). Default 32 MiB.
    pub llc_bytes: usize,
    /// Elements of work per thread chunk. Results depend on it (partials
    /// combine per chunk) but never on the thread count.
    pub chunk_elems: usize,
    /// Shapes each kernel remembers (least recently used evicted first).
    /// Default 64.
    pub shape_cache: usize,
    /// Bake each shape's sizes into its code: one compilation per shape
    /// (bounded by `shape_cache`). Off by default; for measuring what
    /// runtime sizes cost.
    pub specialize: bool,
    /// Verify every plan, even in release builds.
    pub verify: bool,
    /// Changes to the schedule the compiler chooses for each kernel and
    /// shape (`normjit_lower::Overrides`, as `reduce_unroll=8,prefetch=off`;
    /// none by default). A change that is not legal for a kernel (a group
    /// it cannot have, a dim it lacks) is an [`Error::Config`] at its first
    /// call.
    pub schedule: normjit_lower::Overrides,
    /// Elements of work below which a call runs on the calling thread even
    /// when a pool is available (splitting smaller calls costs more than it
    /// gains). Results do not depend on it.
    pub parallel_min_work: u64,
}

impl Default for CompilerOptions {
    fn default() -> Self {
        CompilerOptions {
            isa: IsaChoice::Native,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cache_bytes: 1 << 20,
            llc_bytes: 32 << 20,
            chunk_elems: normjit_lower::CHUNK_ELEMS,
            shape_cache: 64,
            specialize: false,
            verify: false,
            schedule: normjit_lower::Overrides::default(),
            parallel_min_work: crate::exec::PARALLEL_MIN_WORK,
        }
    }
}

impl CompilerOptions {
    /// The lowering options these settings mean for `isa`: what the
    /// compiler plans with (for tools that lower and explain plans
    /// themselves, so that they see the compiler's plans).
    pub fn lower_options(&self, isa: &Isa) -> normjit_lower::Options {
        normjit_lower::Options {
            fma: isa.has_fma(),
            cache_bytes: self.cache_bytes,
            llc_bytes: self.llc_bytes,
            chunk_elems: self.chunk_elems,
            verify: self.verify,
            dump: false,
            schedule: self.schedule.clone(),
        }
    }
}

/// Where a call runs.
#[derive(Clone, Copy)]
pub enum Threads<'p> {
    /// The compiler's pool (the calling thread only, if it has none).
    Default,
    /// The calling thread only.
    CallingThread,
    /// This pool.
    Pool(&'p rayon::ThreadPool),
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct CodeKey {
    ir_hash: u64,
    schedule: u64,
    dims: Option<Vec<usize>>,
}

struct Inner {
    isa: Isa,
    opts: CompilerOptions,
    pool: Option<rayon::ThreadPool>,
    /// Shared code, held weakly: it lives as long as some shape uses it.
    cache: Mutex<HashMap<CodeKey, Weak<Compiled>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these locks cannot leave their maps invalid.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Compiles kernels for this host. Cheap to clone; clones share the code
/// cache and the thread pool. `Send + Sync`.
#[derive(Clone)]
pub struct Compiler(Arc<Inner>);

impl Compiler {
    /// A compiler for the host with default options.
    pub fn new() -> Result<Compiler, Error> {
        Compiler::with_options(CompilerOptions::default())
    }

    /// A compiler with `opts`.
    pub fn with_options(opts: CompilerOptions) -> Result<Compiler, Error> {
        let isa = Isa::new(opts.isa).map_err(Error::Config)?;
        let pool = if opts.threads > 1 {
            Some(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(opts.threads)
                    .build()
                    .map_err(|e| Error::Config(format!("cannot start a pool of {} threads: {e}", opts.threads)))?,
            )
        } else {
            None
        };
        Ok(Compiler(Arc::new(Inner { isa, opts, pool, cache: Mutex::new(HashMap::new()) })))
    }

    /// The target ISA.
    pub fn isa(&self) -> &Isa {
        &self.0.isa
    }

    /// The options.
    pub fn options(&self) -> &CompilerOptions {
        &self.0.opts
    }

    /// Threads of the compiler's pool.
    pub fn threads(&self) -> usize {
        self.0.opts.threads
    }

    /// A runnable handle on `kernel` with its tensors stored as `storage`
    /// says (`x` as bf16, say): one library kernel serves callers of every
    /// storage type. The code cache tells the variants apart (its key is
    /// the kernel's text, which includes every dtype).
    pub fn kernel_with_storage(&self, kernel: IrKernel, storage: &[normjit_ir::Storage]) -> Result<Kernel, Error> {
        Ok(self.kernel(kernel.with_storage(storage).map_err(Error::Storage)?))
    }

    /// A runnable handle on `kernel` (already verified: kernels come from
    /// the parser or the builder). Compilation happens at the first call
    /// with each schedule (or with [`Kernel::prepare`]).
    pub fn kernel(&self, kernel: IrKernel) -> Kernel {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        kernel.to_string().hash(&mut h);
        Kernel {
            sig: Signature::of(&kernel),
            ir: Arc::new(kernel),
            ir_hash: h.finish(),
            compiler: self.clone(),
            shapes: Mutex::new(Lru::new(self.0.opts.shape_cache)),
            compiles: AtomicUsize::new(0),
        }
    }

    /// Parses, verifies and wraps kernel source text. Bad source gives
    /// [`Error::Source`] with the rendered diagnostics.
    pub fn compile_source(&self, source: &str) -> Result<Kernel, Error> {
        self.compile_named_source("<source>", source)
    }

    /// Like [`Compiler::compile_source`], naming the source `name` in
    /// diagnostics (`name:line:col: error: ...`).
    pub fn compile_named_source(&self, name: &str, source: &str) -> Result<Kernel, Error> {
        let k = normjit_ir::parse(source).map_err(|d| Error::Source(d.render(name, source)))?;
        Ok(self.kernel(k))
    }

    /// Reads, parses and wraps the kernel in `path`.
    pub fn compile_file(&self, path: &std::path::Path) -> Result<Kernel, Error> {
        let k = crate::source::load_kernel(path).map_err(|e| match e {
            crate::LoadError::Io { path, err } => Error::Io { path, why: err.to_string() },
            crate::LoadError::Invalid(s) => Error::Source(s),
        })?;
        Ok(self.kernel(k))
    }

    /// Kernels' compiled code alive in the cache.
    pub fn cached(&self) -> usize {
        lock(&self.0.cache).values().filter(|w| w.strong_count() > 0).count()
    }

    fn pool<'p>(&'p self, on: Threads<'p>) -> Option<&'p rayon::ThreadPool> {
        match on {
            Threads::Default => self.0.pool.as_ref(),
            Threads::CallingThread => None,
            Threads::Pool(p) => Some(p),
        }
    }
}

/// A kernel ready to call. `Send + Sync`: many threads may call it at once.
pub struct Kernel {
    ir: Arc<IrKernel>,
    sig: Signature,
    ir_hash: u64,
    compiler: Compiler,
    /// The shapes this kernel has run, most recent kept.
    shapes: Mutex<Lru<Arc<Shape>>>,
    /// Compilations this kernel caused.
    compiles: AtomicUsize,
}

/// What a named call did.
#[derive(Clone, Debug, PartialEq)]
pub struct RunInfo {
    /// The sizes run at, by dim index.
    pub dims: Vec<usize>,
    /// Microseconds spent lowering and compiling in this call (0 when the
    /// code came from a cache).
    pub compile_us: f64,
}

impl Kernel {
    /// The kernel's IR.
    pub fn ir(&self) -> &IrKernel {
        &self.ir
    }

    /// How to call it: tensors, params and dims in positional order.
    pub fn signature(&self) -> &Signature {
        &self.sig
    }

    /// This kernel with its tensors stored as `storage` says, on the same
    /// compiler (see [`Compiler::kernel_with_storage`]).
    pub fn with_storage(&self, storage: &[normjit_ir::Storage]) -> Result<Kernel, Error> {
        self.compiler.kernel_with_storage((*self.ir).clone(), storage)
    }

    /// Code generations this kernel has caused (shapes with a schedule
    /// already compiled, by it or another kernel with the same IR, cost
    /// none).
    pub fn compiles(&self) -> usize {
        self.compiles.load(Ordering::Relaxed)
    }

    /// Shapes remembered now.
    pub fn shapes_cached(&self) -> usize {
        lock(&self.shapes).len()
    }

    /// The compiled code for sizes `dims` (by dim index), compiling it if
    /// needed, without running it; with the compile time in microseconds
    /// (0 if cached).
    pub fn prepare(&self, dims: &[usize]) -> Result<(Arc<Compiled>, f64), Error> {
        if dims.len() != self.sig.dims.len() {
            return Err(Error::Arity {
                kernel: self.sig.name.clone(),
                what: "dims",
                expected: self.sig.dims.len(),
                found: dims.len(),
            });
        }
        let (s, us) = self.shape(dims)?;
        Ok((s.code.clone(), us))
    }

    /// The shape entry for `dims`, from the LRU or made now.
    fn shape(&self, dims: &[usize]) -> Result<(Arc<Shape>, f64), Error> {
        if let Some(s) = lock(&self.shapes).get(dims) {
            return Ok((s, 0.0));
        }
        let inner = &self.compiler.0;
        let t = Instant::now();
        let plan = normjit_lower::lower(&self.ir, dims, &inner.opts.lower_options(&inner.isa))?;
        let key = CodeKey {
            ir_hash: self.ir_hash,
            schedule: plan.schedule_key(),
            dims: inner.opts.specialize.then(|| dims.to_vec()),
        };
        let cached = lock(&inner.cache).get(&key).and_then(Weak::upgrade).filter(|c| c.plan().kernel == *self.ir);
        let (code, us) = match cached {
            Some(c) => (c, 0.0),
            None => {
                let opts = CodegenOptions { specialize: inner.opts.specialize, ..Default::default() };
                let code =
                    Arc::new(Compiled::new(&plan, &inner.isa, &opts).map_err(|e| Error::Internal(e.to_string()))?);
                self.compiles.fetch_add(1, Ordering::Relaxed);
                let mut cache = lock(&inner.cache);
                cache.retain(|_, w| w.strong_count() > 0);
                cache.insert(key, Arc::downgrade(&code));
                (code, t.elapsed().as_secs_f64() * 1e6)
            }
        };
        let shape = Arc::new(Shape::new(code, dims, plan.block.as_ref().map(|b| b.size)));
        lock(&self.shapes).insert(dims, shape.clone());
        Ok((shape, us))
    }

    /// Calls the kernel with tensors and params by position (the order of
    /// [`Kernel::signature`]), on the compiler's pool. Sizes come from the
    /// tensors' shapes or, without shapes, are inferred from their lengths.
    /// Looks nothing up by name; allocates nothing in steady state.
    pub fn call(&self, tensors: &[Tensor<'_>], params: &[f64]) -> Result<(), Error> {
        self.call_with(tensors, params, None, Threads::Default).map(|_| ())
    }

    /// [`Kernel::call`] with the sizes given (by dim index; they must agree
    /// with every shape and length) and a choice of threads. Returns the
    /// microseconds spent compiling (0 when the code was cached).
    pub fn call_with(
        &self,
        tensors: &[Tensor<'_>],
        params: &[f64],
        dims: Option<&[usize]>,
        on: Threads<'_>,
    ) -> Result<f64, Error> {
        let mut given = Small::<Option<usize>, 16>::filled(None, self.sig.dims.len());
        if let Some(d) = dims {
            if d.len() != given.len() {
                return Err(Error::Arity {
                    kernel: self.sig.name.clone(),
                    what: "dims",
                    expected: given.len(),
                    found: d.len(),
                });
            }
            for (g, &n) in given.iter_mut().zip(d) {
                *g = Some(n);
            }
        }
        self.call_given(tensors, params, &given, on).map(|r| r.0)
    }

    /// Validates and runs; returns the compile time and the sizes.
    fn call_given(
        &self,
        tensors: &[Tensor<'_>],
        params: &[f64],
        given: &[Option<usize>],
        on: Threads<'_>,
    ) -> Result<(f64, Small<usize, 16>), Error> {
        let b = validate(&self.ir, &self.sig, tensors, params, given)?;
        // SAFETY: `b` was just validated from `tensors`, which borrow their
        // buffers for this call.
        unsafe { self.call_bound(b, on) }
    }

    /// Runs a validated call.
    ///
    /// # Safety
    /// `b` comes from `validate` on tensors whose borrows are still live.
    unsafe fn call_bound(&self, b: crate::bind::Bound, on: Threads<'_>) -> Result<(f64, Small<usize, 16>), Error> {
        let (shape, us) = self.shape(&b.dims)?;
        let pool = self.compiler.pool(on).filter(|_| shape.work >= self.compiler.0.opts.parallel_min_work);
        // SAFETY: `validate` checked that there is one pointer per tensor,
        // to a buffer (borrowed by `tensors` for this call) of exactly the
        // tensor's element count at `b.dims` — the sizes `shape` was made
        // for — readable, and writable for written tensors; that no output
        // overlaps any other binding; and that there is one word per param.
        unsafe { execute(&shape, &b.ptrs, &b.words, pool) };
        Ok((us, b.dims))
    }

    /// Calls the kernel with tensors, params and dims bound by name, on the
    /// compiler's pool.
    pub fn run(&self, b: Bindings<'_>) -> Result<RunInfo, Error> {
        self.run_on(b, Threads::Default)
    }

    /// [`Kernel::run`] with a choice of threads.
    pub fn run_on(&self, b: Bindings<'_>, on: Threads<'_>) -> Result<RunInfo, Error> {
        let (tensors, params, given) = b.positional(&self.sig)?;
        let (compile_us, dims) = self.call_given(&tensors, &params, &given, on)?;
        Ok(RunInfo { dims: dims.to_vec(), compile_us })
    }

    /// Calls the kernel over several tensor groups that share `params` (by
    /// position): PyTorch's `foreach`, one optimizer step over every
    /// parameter tensor of a model, each of its own length. Every group is
    /// validated, and outputs checked for overlap across groups, before
    /// any runs.
    pub fn call_foreach(&self, groups: &[&[Tensor<'_>]], params: &[f64], on: Threads<'_>) -> Result<(), Error> {
        // Every group validated (once) before any runs.
        let mut bound = Vec::with_capacity(groups.len());
        for g in groups {
            bound.push(validate(&self.ir, &self.sig, g, params, &[])?);
        }
        check_disjoint(&self.sig, groups.iter().map(|g| &g[..]))?;
        // Groups too small to split are spread over the pool, one group per
        // task on the calling thread of that task; a group big enough to
        // split runs alone on the whole pool. (Either way each group's
        // result is what a call on it alone gives: chunks depend on sizes.)
        let min = self.compiler.0.opts.parallel_min_work;
        let big = |g: &[Tensor<'_>]| g.iter().map(|t| t.len as u64).max().unwrap_or(0) >= min;
        // SAFETY (every `call_bound` below): each `Bound` was validated
        // above from its group, whose tensors borrow their buffers until
        // this call returns, and the groups' outputs are disjoint.
        if let Some(pool) = self.compiler.pool(on).filter(|_| groups.len() > 1) {
            let (small, large): (Vec<_>, Vec<_>) = groups.iter().zip(bound).partition(|(g, _)| !big(g));
            pool.install(|| {
                use rayon::prelude::*;
                small
                    .into_par_iter()
                    .try_for_each(|(_, b)| unsafe { self.call_bound(b, Threads::CallingThread) }.map(|_| ()))
            })?;
            for (_, b) in large {
                unsafe { self.call_bound(b, on) }?;
            }
            return Ok(());
        }
        for b in bound {
            unsafe { self.call_bound(b, on) }?;
        }
        Ok(())
    }

    /// [`Kernel::call_foreach`] by name: params shared by every group,
    /// overridden by a group's own.
    pub fn run_foreach(&self, params: &[(&str, f64)], groups: Vec<Bindings<'_>>) -> Result<Vec<RunInfo>, Error> {
        let mut pos = Vec::with_capacity(groups.len());
        for mut g in groups {
            let mut shared: Vec<(&str, f64)> =
                params.iter().filter(|(n, _)| !g.params.iter().any(|(m, _)| m == n)).copied().collect();
            shared.append(&mut g.params);
            g.params = shared;
            let (t, p, d) = g.positional(&self.sig)?;
            validate(&self.ir, &self.sig, &t, &p, &d)?;
            pos.push((t, p, d));
        }
        check_disjoint(&self.sig, pos.iter().map(|g| &g.0[..]))?;
        let mut out = Vec::with_capacity(pos.len());
        for (t, p, d) in &pos {
            let (compile_us, dims) = self.call_given(t, p, d, Threads::Default)?;
            out.push(RunInfo { dims: dims.to_vec(), compile_us });
        }
        Ok(out)
    }
}

thread_local! {
    /// Output spans of a foreach call, reused across calls.
    static SPANS: std::cell::RefCell<Vec<(usize, usize, usize)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Refuses outputs of different groups that overlap (within a group,
/// `validate` already did).
fn check_disjoint<'t, 'a: 't>(sig: &Signature, groups: impl Iterator<Item = &'t [Tensor<'a>]>) -> Result<(), Error> {
    let check = |spans: &mut Vec<(usize, usize, usize)>| {
        spans.clear();
        for (gi, g) in groups.enumerate() {
            for (t, a) in g.iter().enumerate() {
                if sig.tensors[t].role.is_written() && a.len > 0 {
                    spans.push((a.ptr as usize, a.ptr as usize + a.len * 4, gi));
                }
            }
        }
        spans.sort_unstable();
        for w in spans.windows(2) {
            if w[1].0 < w[0].1 && w[0].2 != w[1].2 {
                return Err(Error::Alias {
                    a: format!("group {} output", w[1].2),
                    b: format!("group {} output", w[0].2),
                });
            }
        }
        Ok(())
    };
    SPANS.with(|s| match s.try_borrow_mut() {
        Ok(mut v) => check(&mut v),
        Err(_) => check(&mut Vec::new()),
    })
}

// The raw pointers in a call's arguments never outlive it; `Kernel` and
// `Compiler` hold only shareable data.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Kernel>();
    assert_send_sync::<Compiler>();
};
