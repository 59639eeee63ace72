//! The process-wide compiler and thread setting of the Python package.
//!
//! One `normjit::Compiler` serves every kernel made from Python, so kernels
//! with the same IR share compiled code. Its options are the host's
//! (`CompilerOptions::host`: the cache sizes from sysfs, `NORMJIT_CACHE_BYTES`
//! overriding the L2, as for the CLI) and a pool of as many threads as the
//! host has. `set_num_threads` picks
//! where calls run, like `torch.set_num_threads`: 1 keeps them on the
//! calling thread, the host's count uses the compiler's pool, any other
//! count a pool of that size made on demand.

use normjit::{Compiler, CompilerOptions, Threads};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::PyResult;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

static COMPILER: OnceLock<Result<Compiler, String>> = OnceLock::new();
/// Threads calls use; 0 until set (then the compiler's count).
static NUM_THREADS: AtomicUsize = AtomicUsize::new(0);
/// The pool for a count other than 1 and the compiler's.
static POOL: Mutex<Option<(usize, Arc<rayon::ThreadPool>)>> = Mutex::new(None);

/// The shared compiler (made at first use).
pub fn compiler() -> PyResult<&'static Compiler> {
    COMPILER
        .get_or_init(|| Compiler::with_options(CompilerOptions::host()).map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| PyRuntimeError::new_err(format!("normjit cannot compile for this host: {e}")))
}

/// Lowering options matching the compiler's (for `explain` and `asm`).
pub fn lower_options() -> PyResult<normjit::unstable::lower::Options> {
    let c = compiler()?;
    Ok(c.options().lower_options(c.isa()))
}

/// Where a call runs; holds its pool alive for the call.
pub enum On {
    /// The calling thread.
    Calling,
    /// The compiler's pool.
    Default,
    /// A pool of another size.
    Pool(Arc<rayon::ThreadPool>),
}

impl On {
    /// As the runtime's choice.
    pub fn threads(&self) -> Threads<'_> {
        match self {
            On::Calling => Threads::CallingThread,
            On::Default => Threads::Default,
            On::Pool(p) => Threads::Pool(p),
        }
    }
}

/// Threads calls use now.
pub fn num_threads() -> PyResult<usize> {
    match NUM_THREADS.load(Ordering::Relaxed) {
        0 => Ok(compiler()?.threads()),
        n => Ok(n),
    }
}

/// Sets the threads calls use (≥ 1).
pub fn set_num_threads(n: usize) -> PyResult<()> {
    if n == 0 {
        return Err(PyValueError::new_err("set_num_threads: the count must be at least 1"));
    }
    let default = compiler()?.threads();
    if n != 1 && n != default {
        let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
        if pool.as_ref().is_none_or(|(m, _)| *m != n) {
            let p = rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .map_err(|e| PyRuntimeError::new_err(format!("cannot start a pool of {n} threads: {e}")))?;
            *pool = Some((n, Arc::new(p)));
        }
    }
    NUM_THREADS.store(n, Ordering::Relaxed);
    Ok(())
}

/// Where the next call runs.
pub fn on() -> On {
    let n = NUM_THREADS.load(Ordering::Relaxed);
    if n == 1 {
        return On::Calling;
    }
    if n == 0 {
        return On::Default;
    }
    match &*POOL.lock().unwrap_or_else(|e| e.into_inner()) {
        Some((m, p)) if *m == n => On::Pool(p.clone()),
        _ => On::Default,
    }
}
