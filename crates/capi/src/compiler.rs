//! `nj_compiler`: creating and freeing a compiler (a `normjit::Compiler`)
//! from a C options struct.

use crate::handle::{self, Kind, Object};
use crate::status::{guard, nj_error, Fail, NJ_ERR_INVALID_ARGUMENT, NJ_ERR_NULL_ARGUMENT};
use normjit::{CompilerOptions, IsaChoice};

/// Use every ISA extension the host has (AVX, AVX2, FMA, AVX-512).
pub const NJ_ISA_NATIVE: i32 = 0;
/// SSE4.2 only: no AVX, AVX2, FMA or AVX-512.
pub const NJ_ISA_BASELINE: i32 = 1;

/// A compiler: compiles kernels for this host and owns the thread pool and
/// the code cache they share. Create with `nj_compiler_new`, free with
/// `nj_compiler_free`. Kernels keep what they need of it alive: a kernel
/// stays usable after its compiler is freed.
pub struct nj_compiler {
    _opaque: [u8; 0],
}

/// Compiler settings. Initialize with `nj_compiler_options_default`, then
/// change the fields you care about.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct nj_compiler_options {
    /// `NJ_ISA_NATIVE` or `NJ_ISA_BASELINE`.
    pub isa: i32,
    /// Threads of the compiler's own pool; 1 means no pool (every run on the
    /// calling thread); 0 means the available parallelism.
    pub threads: usize,
    /// Shapes each kernel remembers compiled code for (least recently used
    /// evicted first); 0 means the default (64).
    pub shape_cache: usize,
    /// Bake each shape's sizes into its code: one compilation per shape.
    /// Off by default.
    pub specialize: bool,
}

/// Fills `*options` with the defaults: native ISA, as many threads as the
/// host has, a shape cache of 64, no specialization.
///
/// # Safety
/// `options` is NULL or valid for writing an `nj_compiler_options`; `err`
/// is NULL or valid for writing one pointer.
#[no_mangle]
pub unsafe extern "C" fn nj_compiler_options_default(
    options: *mut nj_compiler_options,
    err: *mut *mut nj_error,
) -> i32 {
    let body = || {
        if options.is_null() {
            return Err(Fail::new(NJ_ERR_NULL_ARGUMENT, "nj_compiler_options_default: options is NULL"));
        }
        let d = CompilerOptions::default();
        let value = nj_compiler_options {
            isa: NJ_ISA_NATIVE,
            threads: d.threads,
            shape_cache: d.shape_cache,
            specialize: d.specialize,
        };
        // SAFETY: `options` is non-null and writable (the contract).
        unsafe { options.write(value) };
        Ok(())
    };
    // SAFETY: `err` is NULL or writable (this function's contract).
    unsafe { guard(err, body) }
}

/// The Rust options for C `options` (NULL: the defaults).
fn rust_options(options: Option<&nj_compiler_options>) -> Result<CompilerOptions, Fail> {
    let mut opts = CompilerOptions::default();
    let Some(o) = options else { return Ok(opts) };
    opts.isa = match o.isa {
        NJ_ISA_NATIVE => IsaChoice::Native,
        NJ_ISA_BASELINE => IsaChoice::Baseline,
        other => {
            return Err(Fail::new(
                NJ_ERR_INVALID_ARGUMENT,
                format!("nj_compiler_new: isa {other} is neither NJ_ISA_NATIVE (0) nor NJ_ISA_BASELINE (1)"),
            ))
        }
    };
    if o.threads != 0 {
        opts.threads = o.threads;
    }
    if o.shape_cache != 0 {
        opts.shape_cache = o.shape_cache;
    }
    opts.specialize = o.specialize;
    Ok(opts)
}

/// Creates a compiler with `options` (NULL: the defaults) and stores it in
/// `*out` (NULL on failure).
///
/// Errors: `NJ_ERR_NULL_ARGUMENT` (out is NULL), `NJ_ERR_INVALID_ARGUMENT`
/// (unknown isa code), `NJ_ERR_CONFIG` (the host lacks the ISA, or the
/// thread pool cannot start).
///
/// # Safety
/// `options` is NULL or points to an initialized `nj_compiler_options`;
/// `out` is NULL or valid for writing one pointer; `err` is NULL or valid
/// for writing one pointer.
#[no_mangle]
pub unsafe extern "C" fn nj_compiler_new(
    options: *const nj_compiler_options,
    out: *mut *mut nj_compiler,
    err: *mut *mut nj_error,
) -> i32 {
    let body = || {
        if out.is_null() {
            return Err(Fail::new(NJ_ERR_NULL_ARGUMENT, "nj_compiler_new: out is NULL"));
        }
        // SAFETY: `out` is non-null and writable (the contract).
        unsafe { out.write(std::ptr::null_mut()) };
        // SAFETY: `options` is NULL or points to an initialized struct
        // (the contract), which is read only during this call.
        let opts = rust_options(unsafe { options.as_ref() })?;
        let compiler = normjit::Compiler::with_options(opts)?;
        let token = handle::register(Object::Compiler(compiler))?;
        // SAFETY: as above.
        unsafe { out.write(handle::to_ptr(token)) };
        Ok(())
    };
    // SAFETY: `err` is NULL or writable (this function's contract).
    unsafe { guard(err, body) }
}

/// Frees a compiler. NULL is a no-op returning `NJ_OK`. A handle already
/// freed is detected (`NJ_ERR_INVALID_HANDLE`), as is any pointer that is
/// not a live `nj_compiler*`. Kernels made by it stay valid.
///
/// # Safety
/// `err` is NULL or valid for writing one pointer. No other thread may
/// still use `compiler` (the library stays memory-safe if one does, but
/// whether that call sees the compiler or `NJ_ERR_INVALID_HANDLE` is a
/// race).
#[no_mangle]
pub unsafe extern "C" fn nj_compiler_free(compiler: *mut nj_compiler, err: *mut *mut nj_error) -> i32 {
    let body = || {
        if compiler.is_null() {
            return Ok(());
        }
        let obj = handle::release(compiler.addr(), Kind::Compiler, "nj_compiler_free")?;
        drop(obj);
        Ok(())
    };
    // SAFETY: `err` is NULL or writable (this function's contract).
    unsafe { guard(err, body) }
}
