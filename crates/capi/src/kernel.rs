//! `nj_kernel`: compiling kernel source, loading `.nj` files and library
//! pipelines, freeing, and querying a kernel's signature.

use crate::args::{c_path, c_str, out_ptr};
use crate::handle::{self, Kind, Object};
use crate::status::{c_string, guard, nj_error, Fail, NJ_ERR_INVALID_ARGUMENT};
use normjit::{DType, ParamType, Role};
use std::ffi::{c_char, CString};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// Tensor role: read only.
pub const NJ_ROLE_IN: i32 = 0;
/// Tensor role: written, never read.
pub const NJ_ROLE_OUT: i32 = 1;
/// Tensor role: updated in place (read at entry, then written).
pub const NJ_ROLE_INOUT: i32 = 2;

/// Element type code: IEEE binary32 (`float`).
pub const NJ_DTYPE_F32: i32 = 1;
/// Element type code: IEEE binary64 (`double`). Not accepted by any kernel
/// yet (runs give `NJ_ERR_DTYPE`).
pub const NJ_DTYPE_F64: i32 = 2;
/// Element type code: IEEE binary16, as `uint16_t` bits; for tensors
/// stored as `f16` (see [`nj_kernel_with_storage`]).
pub const NJ_DTYPE_F16: i32 = 3;
/// Element type code: bfloat16, as `uint16_t` bits (the high half of an
/// IEEE binary32); for tensors stored as `bf16`.
pub const NJ_DTYPE_BF16: i32 = 4;
/// Element type code: `int32_t`. Not accepted by any kernel yet.
pub const NJ_DTYPE_I32: i32 = 5;
/// Element type code: `int64_t`. Not accepted by any kernel yet.
pub const NJ_DTYPE_I64: i32 = 6;

/// Param type: a float scalar (any finite value).
pub const NJ_PARAM_F32: i32 = 0;
/// Param type: an unsigned 32-bit integer (a random seed), passed as a
/// whole-number double.
pub const NJ_PARAM_U32: i32 = 1;

/// A compiled kernel. Create with `nj_kernel_compile`, `nj_kernel_load_file`
/// or `nj_kernel_load_library`; free with `nj_kernel_free`. Any number of
/// threads may run one kernel at once. Strings and arrays returned by its
/// signature queries are owned by it and valid until it is freed.
pub struct nj_kernel {
    _opaque: [u8; 0],
}

/// One tensor of a kernel's signature (see `nj_kernel_tensor_info`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct nj_tensor_info {
    /// Its name (owned by the kernel).
    pub name: *const c_char,
    /// `NJ_ROLE_IN`, `NJ_ROLE_OUT` or `NJ_ROLE_INOUT`.
    pub role: i32,
    /// Its element type (`NJ_DTYPE_*`).
    pub dtype: i32,
    /// Its number of dims.
    pub rank: i32,
    /// `rank` dim indices (into `nj_kernel_dim_name`), outermost first
    /// (owned by the kernel; not to be read when `rank` is 0).
    pub dims: *const usize,
}

/// One param of a kernel's signature (see `nj_kernel_param_info`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct nj_param_info {
    /// Its name (owned by the kernel).
    pub name: *const c_char,
    /// `NJ_PARAM_F32` or `NJ_PARAM_U32`.
    pub param_type: i32,
    /// Whether it has a default (a call may then omit it by name).
    pub has_default: bool,
    /// Its default, when `has_default`; NaN otherwise.
    pub default_value: f64,
}

/// What an `nj_kernel` token stands for: the kernel and the C strings of
/// its signature, made once.
pub(crate) struct KernelObj {
    pub kernel: normjit::Kernel,
    name: CString,
    tensor_names: Vec<CString>,
    param_names: Vec<CString>,
    dim_names: Vec<CString>,
}

impl KernelObj {
    fn new(kernel: normjit::Kernel) -> KernelObj {
        let sig = kernel.signature();
        KernelObj {
            name: c_string(&sig.name),
            tensor_names: sig.tensors.iter().map(|t| c_string(&t.name)).collect(),
            param_names: sig.params.iter().map(|p| c_string(&p.name)).collect(),
            dim_names: sig.dims.iter().map(|d| c_string(d)).collect(),
            kernel,
        }
    }
}

/// The C code of a role.
pub(crate) fn role_code(r: Role) -> i32 {
    match r {
        Role::In => NJ_ROLE_IN,
        Role::Out => NJ_ROLE_OUT,
        Role::InOut => NJ_ROLE_INOUT,
    }
}

/// The C code of a stored element type (0 for one this version of the C
/// API does not name).
pub(crate) fn dtype_code(d: DType) -> i32 {
    match d {
        DType::F32 => NJ_DTYPE_F32,
        DType::BF16 => NJ_DTYPE_BF16,
        DType::F16 => NJ_DTYPE_F16,
        _ => 0,
    }
}

/// Registers `kernel` and stores its handle in `*out`.
///
/// # Safety
/// `out` is non-null and valid for writing one pointer.
unsafe fn publish(kernel: normjit::Kernel, out: *mut *mut nj_kernel) -> Result<(), Fail> {
    let token = handle::register(Object::Kernel(Arc::new(KernelObj::new(kernel))))?;
    // SAFETY: `out` is non-null and writable (the contract).
    unsafe { out.write(handle::to_ptr(token)) };
    Ok(())
}

/// Checks and clears `*out`, and finds the compiler.
///
/// # Safety
/// `out` is NULL or valid for writing one pointer.
unsafe fn begin(
    compiler: *const crate::compiler::nj_compiler,
    out: *mut *mut nj_kernel,
    func: &str,
) -> Result<normjit::Compiler, Fail> {
    out_ptr(out, func, "out")?;
    // SAFETY: `out` is non-null and writable (the contract).
    unsafe { out.write(std::ptr::null_mut()) };
    handle::compiler(compiler.addr(), func)
}

/// Compiles kernel source text (NUL-terminated UTF-8) and stores the kernel
/// in `*out` (NULL on failure). `name` names the source in diagnostics
/// (NULL: `"<source>"`).
///
/// Errors: `NJ_ERR_SOURCE` for source that does not parse or verify: the
/// error message is then the rendered diagnostics,
/// `name:line:col: error: ...` followed by the source line and a caret
/// under the fault. `NJ_ERR_INVALID_UTF8`, `NJ_ERR_NULL_ARGUMENT`,
/// `NJ_ERR_INVALID_HANDLE`.
///
/// # Safety
/// `source` and `name` are NULL or NUL-terminated strings; `out` and `err`
/// are NULL or valid for writing one pointer.
#[no_mangle]
pub unsafe extern "C" fn nj_kernel_compile(
    compiler: *const crate::compiler::nj_compiler,
    source: *const c_char,
    name: *const c_char,
    out: *mut *mut nj_kernel,
    err: *mut *mut nj_error,
) -> i32 {
    const F: &str = "nj_kernel_compile";
    let body = || {
        // SAFETY: `out` is NULL or writable (the contract).
        let compiler = unsafe { begin(compiler, out, F) }?;
        // SAFETY: `source` is NULL or NUL-terminated (the contract).
        let source = unsafe { c_str(source, F, "source") }?;
        let name = if name.is_null() {
            "<source>"
        } else {
            // SAFETY: `name` is NUL-terminated (the contract).
            unsafe { c_str(name, F, "name") }?
        };
        let kernel = compiler.compile_named_source(name, source)?;
        // SAFETY: `out` was checked non-null by `begin`.
        unsafe { publish(kernel, out) }
    };
    // SAFETY: `err` is NULL or writable (this function's contract).
    unsafe { guard(err, body) }
}

/// Reads, parses and verifies the kernel in the `.nj` file at `path` and
/// stores it in `*out` (NULL on failure).
///
/// Errors: `NJ_ERR_IO` (the file cannot be read; the message names it and
/// the OS error), `NJ_ERR_SOURCE` (diagnostics rendered against the file),
/// `NJ_ERR_NULL_ARGUMENT`, `NJ_ERR_INVALID_HANDLE`.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string (bytes on Unix, UTF-8
/// elsewhere); `out` and `err` are NULL or valid for writing one pointer.
#[no_mangle]
pub unsafe extern "C" fn nj_kernel_load_file(
    compiler: *const crate::compiler::nj_compiler,
    path: *const c_char,
    out: *mut *mut nj_kernel,
    err: *mut *mut nj_error,
) -> i32 {
    const F: &str = "nj_kernel_load_file";
    let body = || {
        // SAFETY: `out` is NULL or writable (the contract).
        let compiler = unsafe { begin(compiler, out, F) }?;
        // SAFETY: `path` is NULL or NUL-terminated (the contract).
        let path = unsafe { c_path(path, F, "path") }?;
        let kernel = compiler.compile_file(path)?;
        // SAFETY: `out` was checked non-null by `begin`.
        unsafe { publish(kernel, out) }
    };
    // SAFETY: `err` is NULL or writable (this function's contract).
    unsafe { guard(err, body) }
}

/// `root/name.nj` for a library pipeline `name` such as `norm/layer_norm`.
fn library_path(root: &Path, name: &str) -> Result<PathBuf, Fail> {
    let rel = Path::new(name);
    // Every `/`-separated segment a plain name (`components` would hide an
    // inner `.` and an empty segment).
    let plain = name.split('/').all(|s| !s.is_empty() && s != "." && s != "..")
        && rel.components().all(|c| matches!(c, Component::Normal(_)));
    if !plain {
        return Err(Fail::new(
            NJ_ERR_INVALID_ARGUMENT,
            format!(
                "nj_kernel_load_library: pipeline name `{name}` must be a relative path such as \
                 `norm/layer_norm`, without `.`, `..` or a leading `/`"
            ),
        ));
    }
    if rel.extension().is_some_and(|e| e == "nj") {
        return Ok(root.join(rel));
    }
    let mut file = root.join(rel).into_os_string();
    file.push(".nj");
    Ok(PathBuf::from(file))
}

/// Loads a library pipeline: the kernel in `root/name.nj`, where `root` is
/// the library's root directory (the repository's `ir/`) and `name` a
/// relative name such as `"norm/layer_norm"` or `"optim/adamw"` (a trailing
/// `.nj` is allowed). Stores it in `*out` (NULL on failure).
///
/// Errors: `NJ_ERR_INVALID_ARGUMENT` (a name that is empty, absolute or has
/// `.`/`..` components), `NJ_ERR_IO` (no such pipeline), `NJ_ERR_SOURCE`,
/// `NJ_ERR_INVALID_UTF8` (name), `NJ_ERR_NULL_ARGUMENT`,
/// `NJ_ERR_INVALID_HANDLE`.
///
/// # Safety
/// `root` and `name` are NULL or NUL-terminated strings; `out` and `err`
/// are NULL or valid for writing one pointer.
#[no_mangle]
pub unsafe extern "C" fn nj_kernel_load_library(
    compiler: *const crate::compiler::nj_compiler,
    root: *const c_char,
    name: *const c_char,
    out: *mut *mut nj_kernel,
    err: *mut *mut nj_error,
) -> i32 {
    const F: &str = "nj_kernel_load_library";
    let body = || {
        // SAFETY: `out` is NULL or writable (the contract).
        let compiler = unsafe { begin(compiler, out, F) }?;
        // SAFETY: `root` and `name` are NULL or NUL-terminated (the
        // contract).
        let (root, name) = unsafe { (c_path(root, F, "root")?, c_str(name, F, "name")?) };
        let kernel = compiler.compile_file(&library_path(root, name)?)?;
        // SAFETY: `out` was checked non-null by `begin`.
        unsafe { publish(kernel, out) }
    };
    // SAFETY: `err` is NULL or writable (this function's contract).
    unsafe { guard(err, body) }
}

/// Stores in `*out` (NULL on failure) a new kernel: `kernel` with its
/// tensors stored as `storage` says, a NUL-terminated list of
/// `TENSOR=DTYPE` entries separated by commas, the dtypes `f32`, `bf16`
/// and `f16`; a bf16 output may add `:stochastic(SEED)` for stochastic
/// rounding with the `u32` param SEED (added to the kernel, without a
/// default, if it has none by that name). For example `"x=bf16,y=bf16"`.
/// The kernel it derives from is unchanged and stays valid; the new one
/// has its own handle, to free with [`nj_kernel_free`]. Buffers of the new
/// kernel's narrow tensors hold `uint16_t` bit patterns (`NJ_DTYPE_BF16`,
/// `NJ_DTYPE_F16` in `nj_tensor.dtype`).
///
/// Errors: `NJ_ERR_DTYPE` (an unknown dtype, a name that is not one of
/// the kernel's tensors, a param given a dtype, stochastic rounding of a
/// non-bf16 or input tensor; the message names it), `NJ_ERR_INVALID_UTF8`,
/// `NJ_ERR_NULL_ARGUMENT`, `NJ_ERR_INVALID_HANDLE`.
///
/// # Safety
/// `storage` is NULL or a NUL-terminated string; `out` and `err` are NULL
/// or valid for writing one pointer.
#[no_mangle]
pub unsafe extern "C" fn nj_kernel_with_storage(
    kernel: *const nj_kernel,
    storage: *const c_char,
    out: *mut *mut nj_kernel,
    err: *mut *mut nj_error,
) -> i32 {
    const F: &str = "nj_kernel_with_storage";
    let body = || {
        out_ptr(out, F, "out")?;
        // SAFETY: `out` is non-null and writable (the contract).
        unsafe { out.write(std::ptr::null_mut()) };
        let k = handle::kernel(kernel.addr(), F)?;
        // SAFETY: `storage` is NULL or NUL-terminated (the contract).
        let spec = unsafe { c_str(storage, F, "storage") }?;
        let list = normjit::ir::parse_storage(spec).map_err(|e| normjit::Error::Storage(format!("{F}: {e}")))?;
        let derived = k.kernel.with_storage(&list).map_err(|e| match e {
            normjit::Error::Storage(m) => normjit::Error::Storage(format!("{F}: {m}")),
            other => other,
        })?;
        // SAFETY: `out` was checked non-null above.
        unsafe { publish(derived, out) }
    };
    // SAFETY: `err` is NULL or writable (this function's contract).
    unsafe { guard(err, body) }
}

/// Frees a kernel (its code is released once no run is using it). NULL is
/// a no-op returning `NJ_OK`. A handle already freed is detected
/// (`NJ_ERR_INVALID_HANDLE`), as is any pointer that is not a live
/// `nj_kernel*`. Strings and arrays from its signature queries are invalid
/// afterwards.
///
/// # Safety
/// `err` is NULL or valid for writing one pointer. No other thread may
/// still use `kernel` (the library stays memory-safe if one does: a run in
/// flight completes; but whether a concurrent call sees the kernel or
/// `NJ_ERR_INVALID_HANDLE` is a race).
#[no_mangle]
pub unsafe extern "C" fn nj_kernel_free(kernel: *mut nj_kernel, err: *mut *mut nj_error) -> i32 {
    let body = || {
        if kernel.is_null() {
            return Ok(());
        }
        let obj = handle::release(kernel.addr(), Kind::Kernel, "nj_kernel_free")?;
        drop(obj);
        Ok(())
    };
    // SAFETY: `err` is NULL or writable (this function's contract).
    unsafe { guard(err, body) }
}

/// Runs a signature query: finds the kernel, computes a value, stores it.
///
/// # Safety
/// `out` is NULL or valid for writing a `T`; `err` is NULL or valid for
/// writing one pointer.
unsafe fn query<T>(
    kernel: *const nj_kernel,
    out: *mut T,
    err: *mut *mut nj_error,
    func: &str,
    get: impl FnOnce(&KernelObj) -> Result<T, Fail>,
) -> i32 {
    let body = || {
        out_ptr(out, func, "out")?;
        let k = handle::kernel(kernel.addr(), func)?;
        let v = get(&k)?;
        // SAFETY: `out` is non-null and writable (the contract).
        unsafe { out.write(v) };
        Ok(())
    };
    // SAFETY: `err` is NULL or writable (the contract).
    unsafe { guard(err, body) }
}

fn index_error(func: &str, what: &str, i: usize, n: usize) -> Fail {
    Fail::new(NJ_ERR_INVALID_ARGUMENT, format!("{func}: {what} index {i} is out of range (the kernel has {n})"))
}

/// Stores the kernel's name in `*out` (owned by the kernel).
///
/// # Safety
/// `out` and `err` are NULL or valid for writing one pointer.
#[no_mangle]
pub unsafe extern "C" fn nj_kernel_name(
    kernel: *const nj_kernel,
    out: *mut *const c_char,
    err: *mut *mut nj_error,
) -> i32 {
    // SAFETY: the contract is `query`'s.
    unsafe { query(kernel, out, err, "nj_kernel_name", |k| Ok(k.name.as_ptr())) }
}

/// Stores the number of tensors (the length of a positional call's tensor
/// array) in `*out`.
///
/// # Safety
/// `out` is NULL or valid for writing a `size_t`; `err` is NULL or valid
/// for writing one pointer.
#[no_mangle]
pub unsafe extern "C" fn nj_kernel_num_tensors(
    kernel: *const nj_kernel,
    out: *mut usize,
    err: *mut *mut nj_error,
) -> i32 {
    // SAFETY: the contract is `query`'s.
    unsafe { query(kernel, out, err, "nj_kernel_num_tensors", |k| Ok(k.tensor_names.len())) }
}

/// Stores the number of params (the length of a positional call's param
/// array) in `*out`.
///
/// # Safety
/// `out` is NULL or valid for writing a `size_t`; `err` is NULL or valid
/// for writing one pointer.
#[no_mangle]
pub unsafe extern "C" fn nj_kernel_num_params(
    kernel: *const nj_kernel,
    out: *mut usize,
    err: *mut *mut nj_error,
) -> i32 {
    // SAFETY: the contract is `query`'s.
    unsafe { query(kernel, out, err, "nj_kernel_num_params", |k| Ok(k.param_names.len())) }
}

/// Stores the number of dims in `*out`.
///
/// # Safety
/// `out` is NULL or valid for writing a `size_t`; `err` is NULL or valid
/// for writing one pointer.
#[no_mangle]
pub unsafe extern "C" fn nj_kernel_num_dims(kernel: *const nj_kernel, out: *mut usize, err: *mut *mut nj_error) -> i32 {
    // SAFETY: the contract is `query`'s.
    unsafe { query(kernel, out, err, "nj_kernel_num_dims", |k| Ok(k.dim_names.len())) }
}

/// Describes tensor `index` (its position in a positional call) in `*out`.
/// `NJ_ERR_INVALID_ARGUMENT` when `index` is out of range.
///
/// # Safety
/// `out` is NULL or valid for writing an `nj_tensor_info`; `err` is NULL or
/// valid for writing one pointer.
#[no_mangle]
pub unsafe extern "C" fn nj_kernel_tensor_info(
    kernel: *const nj_kernel,
    index: usize,
    out: *mut nj_tensor_info,
    err: *mut *mut nj_error,
) -> i32 {
    const F: &str = "nj_kernel_tensor_info";
    let get = |k: &KernelObj| {
        let sig = k.kernel.signature();
        let t = sig.tensors.get(index).ok_or_else(|| index_error(F, "tensor", index, sig.tensors.len()))?;
        Ok(nj_tensor_info {
            name: k.tensor_names[index].as_ptr(),
            role: role_code(t.role),
            dtype: dtype_code(t.dtype),
            rank: t.dims.len() as i32,
            dims: t.dims.as_ptr(),
        })
    };
    // SAFETY: the contract is `query`'s.
    unsafe { query(kernel, out, err, F, get) }
}

/// Describes param `index` (its position in a positional call) in `*out`.
/// `NJ_ERR_INVALID_ARGUMENT` when `index` is out of range.
///
/// # Safety
/// `out` is NULL or valid for writing an `nj_param_info`; `err` is NULL or
/// valid for writing one pointer.
#[no_mangle]
pub unsafe extern "C" fn nj_kernel_param_info(
    kernel: *const nj_kernel,
    index: usize,
    out: *mut nj_param_info,
    err: *mut *mut nj_error,
) -> i32 {
    const F: &str = "nj_kernel_param_info";
    let get = |k: &KernelObj| {
        let sig = k.kernel.signature();
        let p = sig.params.get(index).ok_or_else(|| index_error(F, "param", index, sig.params.len()))?;
        Ok(nj_param_info {
            name: k.param_names[index].as_ptr(),
            param_type: match p.ty {
                ParamType::F32 => NJ_PARAM_F32,
                ParamType::U32 => NJ_PARAM_U32,
            },
            has_default: p.default.is_some(),
            default_value: p.default.unwrap_or(f64::NAN),
        })
    };
    // SAFETY: the contract is `query`'s.
    unsafe { query(kernel, out, err, F, get) }
}

/// Stores the name of dim `index` in `*out` (owned by the kernel).
/// `NJ_ERR_INVALID_ARGUMENT` when `index` is out of range.
///
/// # Safety
/// `out` and `err` are NULL or valid for writing one pointer.
#[no_mangle]
pub unsafe extern "C" fn nj_kernel_dim_name(
    kernel: *const nj_kernel,
    index: usize,
    out: *mut *const c_char,
    err: *mut *mut nj_error,
) -> i32 {
    const F: &str = "nj_kernel_dim_name";
    let get = |k: &KernelObj| {
        let d = k.dim_names.get(index).ok_or_else(|| index_error(F, "dim", index, k.dim_names.len()))?;
        Ok(d.as_ptr())
    };
    // SAFETY: the contract is `query`'s.
    unsafe { query(kernel, out, err, F, get) }
}

/// Stores the position of the tensor named `name` in `*out`.
/// `NJ_ERR_UNKNOWN_NAME` if the kernel has none.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string; `out` is NULL or valid for
/// writing a `size_t`; `err` is NULL or valid for writing one pointer.
#[no_mangle]
pub unsafe extern "C" fn nj_kernel_tensor_index(
    kernel: *const nj_kernel,
    name: *const c_char,
    out: *mut usize,
    err: *mut *mut nj_error,
) -> i32 {
    const F: &str = "nj_kernel_tensor_index";
    let get = |k: &KernelObj| {
        // SAFETY: `name` is NULL or NUL-terminated (the contract).
        let name = unsafe { c_str(name, F, "name") }?;
        let sig = k.kernel.signature();
        sig.tensor(name).ok_or_else(|| unknown(sig, "tensor", name, sig.tensors.iter().map(|t| &t.name[..])))
    };
    // SAFETY: the contract is `query`'s; `name` is NULL or NUL-terminated.
    unsafe { query(kernel, out, err, F, get) }
}

/// Stores the position of the param named `name` in `*out`.
/// `NJ_ERR_UNKNOWN_NAME` if the kernel has none.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string; `out` is NULL or valid for
/// writing a `size_t`; `err` is NULL or valid for writing one pointer.
#[no_mangle]
pub unsafe extern "C" fn nj_kernel_param_index(
    kernel: *const nj_kernel,
    name: *const c_char,
    out: *mut usize,
    err: *mut *mut nj_error,
) -> i32 {
    const F: &str = "nj_kernel_param_index";
    let get = |k: &KernelObj| {
        // SAFETY: `name` is NULL or NUL-terminated (the contract).
        let name = unsafe { c_str(name, F, "name") }?;
        let sig = k.kernel.signature();
        sig.param(name).ok_or_else(|| unknown(sig, "param", name, sig.params.iter().map(|p| &p.name[..])))
    };
    // SAFETY: the contract is `query`'s; `name` is NULL or NUL-terminated.
    unsafe { query(kernel, out, err, F, get) }
}

fn unknown<'s>(sig: &normjit::Signature, what: &'static str, name: &str, have: impl Iterator<Item = &'s str>) -> Fail {
    let have: Vec<&str> = have.collect();
    let known = if have.is_empty() { "it has none".to_string() } else { format!("it has: {}", have.join(", ")) };
    normjit::Error::Unknown { kernel: sig.name.clone(), what, name: name.to_string(), known }.into()
}
