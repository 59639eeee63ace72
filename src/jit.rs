//! The safe runtime API: [`Compiler`], [`Kernel`] and [`Bindings`].
//!
//! A [`Kernel`] is a parsed kernel plus the machine code compiled for each
//! set of sizes it has been run at. Running binds tensors by name as
//! slices and params by name, infers and checks every dim and length,
//! refuses aliasing and missing or extra bindings — all before anything is
//! written — then calls the generated code through the one `unsafe` call
//! in this crate. Code is specialized to the sizes (they are baked in as
//! constants); the cache key is the kernel's IR hash, the sizes and the ISA
//! flags. Code memory is released when the last kernel using it is dropped.

use normjit_codegen::{CodegenOptions, Compiled, Isa, IsaChoice};
use normjit_ir::{Kernel as IrKernel, ParamType, Role};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

/// Why a kernel could not be compiled or run. Each names what is wrong;
/// when one is returned from [`Kernel::run`], nothing was written.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// A binding names no tensor of the kernel.
    #[error("kernel `{kernel}` has no tensor `{name}` (it has: {known})")]
    UnknownTensor {
        /// The kernel.
        kernel: String,
        /// The name bound.
        name: String,
        /// Its tensors.
        known: String,
    },
    /// A tensor bound twice.
    #[error("tensor `{0}` is bound twice")]
    BoundTwice(String),
    /// A tensor bound the wrong way: `in` tensors with `input`, `out` and
    /// `inout` ones (updated in place) with `output`.
    #[error("tensor `{name}` is `{role}`: bind it with `{want}`")]
    WrongRole {
        /// The tensor.
        name: String,
        /// Its role.
        role: &'static str,
        /// The method to use.
        want: &'static str,
    },
    /// A tensor left unbound.
    #[error("tensor `{0}` is not bound")]
    Unbound(String),
    /// A param the kernel does not declare.
    #[error("kernel `{kernel}` has no param `{name}` (it has: {known})")]
    UnknownParam {
        /// The kernel.
        kernel: String,
        /// The name bound.
        name: String,
        /// Its params.
        known: String,
    },
    /// A param without default left unbound.
    #[error("param `{0}` has no default and is not bound")]
    MissingParam(String),
    /// A param value the kernel cannot use.
    #[error("param `{name}` = {value}: {why}")]
    BadParam {
        /// The param.
        name: String,
        /// The value.
        value: f64,
        /// Why.
        why: String,
    },
    /// A dim the kernel does not declare.
    #[error("kernel `{kernel}` has no dim `{name}`")]
    UnknownDim {
        /// The kernel.
        kernel: String,
        /// The name.
        name: String,
    },
    /// Dims that no binding determines.
    #[error("dims {0} cannot be inferred from the bound lengths; give them with `Bindings::dim`")]
    UninferredDims(String),
    /// A tensor's length that fits no sizes.
    #[error("tensor `{tensor}` has {found} elements, expected {expected} ({shape})")]
    Length {
        /// The tensor.
        tensor: String,
        /// Its length at the inferred sizes.
        expected: usize,
        /// The length bound.
        found: usize,
        /// Its dims and their sizes.
        shape: String,
    },
    /// A tensor's length that is no multiple of its other dims' sizes.
    #[error("tensor `{tensor}` has {found} elements, which is not a multiple of {known} (the product of its other dims' sizes)")]
    NotMultiple {
        /// The tensor.
        tensor: String,
        /// The length bound.
        found: usize,
        /// The product of the known sizes.
        known: usize,
    },
    /// Sizes whose product overflows.
    #[error("the size of tensor `{0}` overflows usize")]
    Overflow(String),
    /// An output that overlaps another binding.
    #[error("output `{a}` overlaps `{b}` in memory; outputs must not alias any other binding")]
    Alias {
        /// The output.
        a: String,
        /// The other binding.
        b: String,
    },
    /// A random-number domain too large for the generated code.
    #[error("`uniform` over {axes} has {elements} elements; at most 2^32 are supported")]
    RandomDomain {
        /// The axes.
        axes: String,
        /// Their element count.
        elements: u128,
    },
    /// Lowering or code generation failed: a bug in normjit.
    #[error("{0}")]
    Internal(String),
}

/// Compiler settings.
#[derive(Clone, Debug)]
pub struct CompilerOptions {
    /// Which ISA extensions to use.
    pub isa: IsaChoice,
    /// Threads for a run (1: the caller's thread only).
    pub threads: usize,
    /// Lowering options (cache size assumptions, chunk size).
    pub lower: normjit_lower::Options,
}

impl Default for CompilerOptions {
    fn default() -> Self {
        CompilerOptions {
            isa: IsaChoice::Native,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            lower: normjit_lower::Options::default(),
        }
    }
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    ir_hash: u64,
    dims: Vec<usize>,
    isa_flags: String,
}

struct Inner {
    isa: Isa,
    opts: CompilerOptions,
    pool: Option<rayon::ThreadPool>,
    /// Shared code, held weakly: it lives as long as some kernel uses it.
    cache: Mutex<HashMap<CacheKey, Weak<Compiled>>>,
}

/// Compiles kernels for this host. Cheap to clone; clones share the cache
/// and the thread pool.
#[derive(Clone)]
pub struct Compiler(Arc<Inner>);

impl Compiler {
    /// A compiler for the host with default options.
    pub fn new() -> Result<Compiler, Error> {
        Compiler::with_options(CompilerOptions::default())
    }

    /// A compiler with `opts`.
    pub fn with_options(opts: CompilerOptions) -> Result<Compiler, Error> {
        let isa = Isa::new(opts.isa).map_err(Error::Internal)?;
        let pool = if opts.threads > 1 {
            Some(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(opts.threads)
                    .build()
                    .map_err(|e| Error::Internal(e.to_string()))?,
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

    /// Threads used per run.
    pub fn threads(&self) -> usize {
        self.0.opts.threads
    }

    /// A runnable handle on `kernel`. Compilation happens at the first run
    /// with each set of sizes (or with [`Kernel::prepare`]).
    pub fn kernel(&self, kernel: IrKernel) -> Kernel {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        kernel.to_string().hash(&mut h);
        Kernel { ir: Arc::new(kernel), ir_hash: h.finish(), compiler: self.clone(), specs: Mutex::new(HashMap::new()) }
    }

    /// Kernels compiled and still alive in the cache.
    pub fn cached(&self) -> usize {
        self.0.cache.lock().unwrap_or_else(|e| e.into_inner()).values().filter(|w| w.strong_count() > 0).count()
    }
}

/// A kernel ready to run. `Send + Sync`: many threads may run it at once.
pub struct Kernel {
    ir: Arc<IrKernel>,
    ir_hash: u64,
    compiler: Compiler,
    /// The code this kernel has used, by sizes.
    specs: Mutex<HashMap<Vec<usize>, Arc<Compiled>>>,
}

/// What a run did.
#[derive(Clone, Debug, PartialEq)]
pub struct RunInfo {
    /// The sizes run at, by dim index.
    pub dims: Vec<usize>,
    /// Microseconds spent lowering and compiling in this call (0 when the
    /// code came from the cache).
    pub compile_us: f64,
}

/// Tensors and params bound by name for one run.
///
/// Slices are held as pointer and length so that raw buffers (from C) can
/// be bound too; the lifetime `'a` keeps borrowed slices borrowed until
/// the bindings are dropped.
#[derive(Default)]
pub struct Bindings<'a> {
    inputs: Vec<(&'a str, *const f32, usize)>,
    outputs: Vec<(&'a str, *mut f32, usize)>,
    params: Vec<(&'a str, f64)>,
    dims: Vec<(&'a str, usize)>,
    _borrows: std::marker::PhantomData<&'a mut [f32]>,
}

// SAFETY: the pointers come from `&'a [f32]` / `&'a mut [f32]` borrows (or
// from an `unsafe` caller promising the same), so sending the bindings to
// another thread is like sending those borrows.
unsafe impl Send for Bindings<'_> {}

impl<'a> Bindings<'a> {
    /// No bindings yet.
    pub fn new() -> Self {
        Self::default()
    }
    /// Binds an `in` tensor.
    pub fn input(mut self, name: &'a str, data: &'a [f32]) -> Self {
        self.inputs.push((name, data.as_ptr(), data.len()));
        self
    }
    /// Binds an `out` tensor, or an `inout` tensor (holding its entry
    /// value, updated in place).
    pub fn output(mut self, name: &'a str, data: &'a mut [f32]) -> Self {
        self.outputs.push((name, data.as_mut_ptr(), data.len()));
        self
    }
    /// Binds an `in` tensor from a raw buffer (for foreign callers).
    ///
    /// # Safety
    /// `data` must be valid for reads of `len` f32s until the bindings are
    /// dropped. It may overlap other bindings' buffers only if none of them
    /// is an output: a run refuses overlapping outputs before writing.
    pub unsafe fn input_raw(mut self, name: &'a str, data: *const f32, len: usize) -> Self {
        self.inputs.push((name, data, len));
        self
    }
    /// Binds an `out`/`inout` tensor from a raw buffer (for foreign callers).
    ///
    /// # Safety
    /// `data` must be valid for reads and writes of `len` f32s until the
    /// bindings are dropped, and not accessed by anything else meanwhile.
    /// Overlap with another binding is detected and refused before writing.
    pub unsafe fn output_raw(mut self, name: &'a str, data: *mut f32, len: usize) -> Self {
        self.outputs.push((name, data, len));
        self
    }
    /// Binds a param (overriding its default).
    pub fn param(mut self, name: &'a str, value: f64) -> Self {
        self.params.push((name, value));
        self
    }
    /// Gives a dim's size, for dims the lengths do not determine.
    pub fn dim(mut self, name: &'a str, size: usize) -> Self {
        self.dims.push((name, size));
        self
    }
}

fn names<'k>(it: impl Iterator<Item = &'k str>) -> String {
    it.collect::<Vec<_>>().join(", ")
}

/// A validated binding: pointers by tensor index and param words.
struct Bound {
    dims: Vec<usize>,
    ptrs: Vec<*mut f32>,
    words: Vec<u32>,
}

impl Kernel {
    /// The kernel's IR.
    pub fn ir(&self) -> &IrKernel {
        &self.ir
    }

    /// Compiles (or fetches from the cache) the code for sizes `dims` (by
    /// dim index) without running it; returns it and the compile time in
    /// microseconds (0 if cached).
    pub fn prepare(&self, dims: &[usize]) -> Result<(Arc<Compiled>, f64), Error> {
        if let Some(c) = self.specs.lock().unwrap_or_else(|e| e.into_inner()).get(dims) {
            return Ok((c.clone(), 0.0));
        }
        let inner = &self.compiler.0;
        let key = CacheKey { ir_hash: self.ir_hash, dims: dims.to_vec(), isa_flags: inner.isa.flags.clone() };
        let cached = inner.cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key).and_then(Weak::upgrade);
        let (code, us) = match cached {
            Some(c) if c.plan().kernel == *self.ir => (c, 0.0),
            _ => {
                let t = Instant::now();
                let plan = normjit_lower::lower(&self.ir, dims, &inner.opts.lower)
                    .map_err(|e| Error::Internal(e.to_string()))?;
                let code = Arc::new(
                    Compiled::new(&plan, &inner.isa, &CodegenOptions::default())
                        .map_err(|e| Error::Internal(e.to_string()))?,
                );
                let us = t.elapsed().as_secs_f64() * 1e6;
                let mut cache = inner.cache.lock().unwrap_or_else(|e| e.into_inner());
                cache.retain(|_, w| w.strong_count() > 0);
                cache.insert(key, Arc::downgrade(&code));
                (code, us)
            }
        };
        self.specs.lock().unwrap_or_else(|e| e.into_inner()).insert(dims.to_vec(), code.clone());
        Ok((code, us))
    }

    /// Runs the kernel on `b`, with the compiler's threads.
    pub fn run(&self, b: Bindings<'_>) -> Result<RunInfo, Error> {
        self.run_with(b, self.compiler.0.pool.as_ref())
    }

    fn run_with(&self, b: Bindings<'_>, pool: Option<&rayon::ThreadPool>) -> Result<RunInfo, Error> {
        let bound = self.bind(&b)?;
        let (code, compile_us) = self.prepare(&bound.dims)?;
        // SAFETY: `bind` checked that every tensor of the kernel is bound
        // exactly once to a slice whose length is the product of its dims
        // at `bound.dims` (the sizes `code` was compiled for), that writable
        // tensors come from `&mut` slices, that no output overlaps any other
        // binding, and that there is one word per param. The buffers are
        // borrowed (or promised valid, for raw bindings) for the life of
        // `b`, which lives until this call returns.
        unsafe { code.execute(&bound.ptrs, &bound.words, pool) };
        drop(b);
        Ok(RunInfo { dims: bound.dims, compile_us })
    }

    /// Runs the kernel over several tensor groups that share `params`
    /// (PyTorch's `foreach`): one optimizer step over every parameter
    /// tensor of a model, each of its own length. Params bound inside a
    /// group override the shared ones. Every group is validated before any
    /// runs.
    pub fn run_foreach(&self, params: &[(&str, f64)], groups: Vec<Bindings<'_>>) -> Result<Vec<RunInfo>, Error> {
        let mut bound = Vec::with_capacity(groups.len());
        let mut groups = groups;
        for g in &mut groups {
            let mut shared: Vec<(&str, f64)> =
                params.iter().filter(|(n, _)| !g.params.iter().any(|(m, _)| m == n)).copied().collect();
            shared.extend(g.params.iter().copied());
            g.params = shared;
            bound.push(self.bind(g)?);
        }
        // Outputs of different groups must not overlap either.
        let mut spans: Vec<(usize, usize, usize)> = Vec::new();
        for (gi, g) in groups.iter().enumerate() {
            for &(_, o, n) in &g.outputs {
                let (s, e) = (o as usize, o as usize + n * 4);
                if let Some(&(_, _, gj)) = spans.iter().find(|&&(a, z, _)| s < z && a < e && s < e) {
                    return Err(Error::Alias { a: format!("group {gi} output"), b: format!("group {gj} output") });
                }
                spans.push((s, e, gi));
            }
        }
        let mut codes = Vec::with_capacity(bound.len());
        for bd in &bound {
            codes.push(self.prepare(&bd.dims)?);
        }
        let pool = self.compiler.0.pool.as_ref();
        for (bd, (code, _)) in bound.iter().zip(&codes) {
            // SAFETY: as in `run_with`: each group was validated by `bind`,
            // and no output overlaps another group's output (checked above);
            // the slices are borrowed by `groups`, alive until we return.
            unsafe { code.execute(&bd.ptrs, &bd.words, pool) };
        }
        drop(groups);
        Ok(bound.into_iter().zip(codes).map(|(bd, (_, us))| RunInfo { dims: bd.dims, compile_us: us }).collect())
    }

    /// Checks every binding; infers the sizes.
    fn bind(&self, b: &Bindings<'_>) -> Result<Bound, Error> {
        let k = &*self.ir;
        let nt = k.tensors.len();
        let mut slot: Vec<Option<(*mut f32, usize, bool)>> = vec![None; nt];
        let unknown = |name: &str| Error::UnknownTensor {
            kernel: k.name.clone(),
            name: name.to_string(),
            known: names(k.tensors.iter().map(|(_, t)| t.name.as_str())),
        };
        for &(name, ptr, len) in &b.inputs {
            let t = k.tensor(name).ok_or_else(|| unknown(name))?;
            let tensor = &k.tensors[t];
            if tensor.role != Role::In {
                return Err(Error::WrongRole { name: name.to_string(), role: tensor.role.keyword(), want: "output" });
            }
            if slot[t.index()].is_some() {
                return Err(Error::BoundTwice(name.to_string()));
            }
            slot[t.index()] = Some((ptr as *mut f32, len, false));
        }
        for &(name, ptr, len) in &b.outputs {
            let t = k.tensor(name).ok_or_else(|| unknown(name))?;
            let tensor = &k.tensors[t];
            if tensor.role == Role::In {
                return Err(Error::WrongRole { name: name.to_string(), role: "in", want: "input" });
            }
            if slot[t.index()].is_some() {
                return Err(Error::BoundTwice(name.to_string()));
            }
            slot[t.index()] = Some((ptr, len, true));
        }
        let mut lens = Vec::with_capacity(nt);
        for (t, tensor) in k.tensors.iter() {
            match slot[t.index()] {
                Some(s) => lens.push(s),
                None => return Err(Error::Unbound(tensor.name.clone())),
            }
        }
        // Sizes: given ones, then solve tensors with one unknown dim.
        let mut dims: Vec<Option<usize>> = vec![None; k.dims.len()];
        for &(name, size) in &b.dims {
            let d = k.dim(name).ok_or_else(|| Error::UnknownDim { kernel: k.name.clone(), name: name.to_string() })?;
            dims[d.index()] = Some(size);
        }
        loop {
            let mut progress = false;
            for (t, tensor) in k.tensors.iter() {
                let unknown: Vec<_> = tensor.dims.iter().filter(|d| dims[d.index()].is_none()).collect();
                if unknown.len() != 1 {
                    continue;
                }
                let known: usize = tensor.dims.iter().filter_map(|d| dims[d.index()]).product();
                let len = lens[t.index()].1;
                if known == 0 {
                    continue;
                }
                if len % known != 0 {
                    return Err(Error::NotMultiple { tensor: tensor.name.clone(), found: len, known });
                }
                dims[unknown[0].index()] = Some(len / known);
                progress = true;
            }
            if !progress {
                break;
            }
        }
        let missing: Vec<&str> =
            k.dims.iter().filter(|(d, _)| dims[d.index()].is_none()).map(|(_, d)| d.name.as_str()).collect();
        if !missing.is_empty() {
            return Err(Error::UninferredDims(missing.join(", ")));
        }
        let dims: Vec<usize> = dims.into_iter().map(|d| d.unwrap_or(0)).collect();
        for (t, tensor) in k.tensors.iter() {
            let expected = tensor
                .dims
                .iter()
                .try_fold(1usize, |n, d| n.checked_mul(dims[d.index()]))
                .ok_or_else(|| Error::Overflow(tensor.name.clone()))?;
            let found = lens[t.index()].1;
            if found != expected {
                let shape = tensor
                    .dims
                    .iter()
                    .map(|d| format!("{}={}", k.dims[*d].name, dims[d.index()]))
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(Error::Length {
                    tensor: tensor.name.clone(),
                    expected,
                    found,
                    shape: if shape.is_empty() { "a 0-dim tensor".into() } else { shape },
                });
            }
        }
        // The generated code numbers random elements in 32 bits.
        for (_, n) in k.nodes.iter() {
            if let normjit_ir::Op::Uniform(_, axes) = n.op {
                let elements: u128 = axes.iter().map(|d| dims[d.index()] as u128).product();
                if elements > 1 << 32 {
                    return Err(Error::RandomDomain { axes: k.axis_names(axes), elements });
                }
            }
        }
        // No output may overlap any other binding.
        for (t, &(p, n, writable)) in lens.iter().enumerate() {
            if !writable || n == 0 {
                continue;
            }
            let (s, e) = (p as usize, p as usize + n * 4);
            for (u, &(q, m, _)) in lens.iter().enumerate() {
                if u == t || m == 0 {
                    continue;
                }
                let (s2, e2) = (q as usize, q as usize + m * 4);
                if s < e2 && s2 < e {
                    return Err(Error::Alias {
                        a: k.tensors.iter().nth(t).map(|(_, x)| x.name.clone()).unwrap_or_default(),
                        b: k.tensors.iter().nth(u).map(|(_, x)| x.name.clone()).unwrap_or_default(),
                    });
                }
            }
        }
        // Params: given over defaults; finite f32s, whole u32s.
        let mut vals: Vec<Option<f64>> = k.params.iter().map(|(_, p)| p.default).collect();
        for &(name, v) in &b.params {
            let p = k.param(name).ok_or_else(|| Error::UnknownParam {
                kernel: k.name.clone(),
                name: name.to_string(),
                known: names(k.params.iter().map(|(_, p)| p.name.as_str())),
            })?;
            vals[p.index()] = Some(v);
        }
        let mut words = Vec::with_capacity(vals.len());
        for (p, param) in k.params.iter() {
            let v = vals[p.index()].ok_or_else(|| Error::MissingParam(param.name.clone()))?;
            let why = crate::bind::check_param(param.ty, v).err();
            if let Some(why) = why {
                let why = if param.ty == ParamType::F32 {
                    format!("{why}: a NaN or infinite `{}` would poison every output", param.name)
                } else {
                    why
                };
                return Err(Error::BadParam { name: param.name.clone(), value: v, why });
            }
            words.push(match param.ty {
                ParamType::F32 => (v as f32).to_bits(),
                ParamType::U32 => v as u32,
            });
        }
        Ok(Bound { dims, ptrs: lens.iter().map(|s| s.0).collect(), words })
    }
}

// The raw pointers in `Bound` never leave a call; `Kernel` itself holds only
// shareable data.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Kernel>();
    assert_send_sync::<Compiler>();
};
