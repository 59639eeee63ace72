//! Running a kernel: C tensor descriptors (`nj_tensor`) are checked at the
//! boundary (NULL arrays, negative or overflowing shapes, alignment) and
//! turned into `normjit::Tensor` views, writable exactly when the signature
//! says the kernel writes the tensor (`out`/`inout`); the rest of the
//! validation, and the run, is `normjit`'s.

use crate::args::{c_array, c_str};
use crate::handle;
use crate::kernel::{nj_kernel, NJ_DTYPE_BF16, NJ_DTYPE_F16, NJ_DTYPE_F32, NJ_DTYPE_F64, NJ_DTYPE_I32, NJ_DTYPE_I64};
use crate::status::{
    guard, nj_error, Fail, NJ_ERR_BUFFER, NJ_ERR_INVALID_ARGUMENT, NJ_ERR_NEGATIVE_SHAPE, NJ_ERR_NULL_ARGUMENT,
};
use normjit::{Bindings, DType, Tensor, Threads};
use std::ffi::{c_char, c_void};
use std::ops::Range;

/// Run on the compiler's thread pool (on the calling thread only if it has
/// none, or for calls too small to split).
pub const NJ_THREADS_DEFAULT: i32 = 0;
/// Run on the calling thread only.
pub const NJ_THREADS_CALLING: i32 = 1;

/// A tensor argument: a dense row-major buffer (last dim contiguous) and
/// its shape.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct nj_tensor {
    /// The elements: `product(shape)` values of `dtype`, aligned for it.
    /// Read for `in` tensors (never written, even though the pointer is not
    /// `const`); read and/or written for `out`/`inout` ones. May be NULL
    /// only when the tensor has no elements.
    pub data: *mut c_void,
    /// The element type of `data` (`NJ_DTYPE_*`); must match the
    /// signature's.
    pub dtype: i32,
    /// The number of entries of `shape`; must match the signature's rank.
    pub rank: i32,
    /// `rank` sizes, outermost first (required; may be NULL only when
    /// `rank` is 0). Sizes must not be negative and must agree with every
    /// other tensor's about each dim.
    pub shape: *const i64,
}

/// A descriptor checked at the boundary, before it becomes a `Tensor`.
struct View {
    ptr: *mut f32,
    len: usize,
    writable: bool,
    dtype: Option<DType>,
    dtype_name: &'static str,
    /// Its sizes, in `Views::shapes`.
    shape: Range<usize>,
}

/// Every descriptor of a call, checked.
struct Views {
    views: Vec<View>,
    shapes: Vec<usize>,
}

impl Views {
    fn tensors(&self) -> Vec<Tensor<'_>> {
        self.views
            .iter()
            .map(|v| {
                // SAFETY: `check` made this view from a descriptor whose
                // `data` the caller of `nj_kernel_run*` promised (its
                // contract) to be valid for reads of `len` elements of its
                // dtype, and for writes when `writable` (the tensor is
                // `out`/`inout`), until the call returns, and not accessed
                // by anything else meanwhile when written; it is non-null
                // unless `len` is 0 (checked) and aligned (checked).
                // normjit refuses overlap before writing.
                let t = unsafe { Tensor::raw(v.ptr.cast(), v.len, v.writable, v.dtype, v.dtype_name) };
                t.shaped(&self.shapes[v.shape.clone()])
            })
            .collect()
    }
}

/// The normjit type, name and size of a dtype code.
fn dtype_of(code: i32) -> (Option<DType>, &'static str, usize) {
    match code {
        NJ_DTYPE_F32 => (Some(DType::F32), "f32", 4),
        NJ_DTYPE_F64 => (None, "f64", 8),
        NJ_DTYPE_F16 => (Some(DType::F16), "f16", 2),
        NJ_DTYPE_BF16 => (Some(DType::BF16), "bf16", 2),
        NJ_DTYPE_I32 => (None, "i32", 4),
        NJ_DTYPE_I64 => (None, "i64", 8),
        _ => (None, "<unknown dtype code>", 1),
    }
}

/// Checks descriptors: shapes (NULL, negative, overflowing), NULL data with
/// elements, alignment. `name(i)` names tensor `i` in errors; `writable(i)`
/// says whether the kernel writes it.
///
/// # Safety
/// Each descriptor's `shape` is NULL or points to `rank` readable `i64`s.
unsafe fn check<'n>(
    descs: &[nj_tensor],
    func: &str,
    name: impl Fn(usize) -> &'n str,
    writable: impl Fn(usize) -> bool,
) -> Result<Views, Fail> {
    let mut shapes = Vec::new();
    let mut views = Vec::with_capacity(descs.len());
    for (i, d) in descs.iter().enumerate() {
        let tname = name(i);
        let rank = usize::try_from(d.rank).map_err(|_| {
            Fail::new(NJ_ERR_NEGATIVE_SHAPE, format!("{func}: tensor `{tname}` has a negative rank ({})", d.rank))
        })?;
        if d.shape.is_null() && rank > 0 {
            return Err(Fail::new(
                NJ_ERR_NULL_ARGUMENT,
                format!("{func}: tensor `{tname}` has a NULL shape but rank {rank}"),
            ));
        }
        // SAFETY: `shape` points to `rank` i64s (the contract), or rank is 0.
        let sizes = unsafe { c_array(d.shape, rank, func, "shape") }?;
        let start = shapes.len();
        for &n in sizes {
            let n = usize::try_from(n).map_err(|_| {
                if n < 0 {
                    let why = format!("{func}: tensor `{tname}` has shape {sizes:?}: size {n} is negative");
                    Fail::new(NJ_ERR_NEGATIVE_SHAPE, why)
                } else {
                    // Only where `usize` is narrower than 64 bits.
                    normjit::Error::Overflow(format!("tensor `{tname}` (shape {sizes:?})")).into()
                }
            })?;
            shapes.push(n);
        }
        let shape = start..shapes.len();
        let (dtype, dtype_name, elem) = dtype_of(d.dtype);
        let overflow =
            || -> Fail { normjit::Error::Overflow(format!("tensor `{tname}` (shape {sizes:?}, {dtype_name})")).into() };
        let len = shapes[shape.clone()].iter().try_fold(1usize, |a, &n| a.checked_mul(n)).ok_or_else(overflow)?;
        if len.checked_mul(elem).is_none_or(|bytes| bytes > isize::MAX as usize) {
            return Err(overflow());
        }
        if d.data.is_null() && len > 0 {
            return Err(normjit::Error::Null(tname.to_string()).into());
        }
        if d.data.align_offset(elem) != 0 && len > 0 {
            return Err(Fail::new(
                NJ_ERR_BUFFER,
                format!("{func}: tensor `{tname}`'s data {:p} is not aligned for {dtype_name}", d.data),
            ));
        }
        views.push(View { ptr: d.data.cast(), len, writable: writable(i), dtype, dtype_name, shape });
    }
    Ok(Views { views, shapes })
}

fn threads(code: i32, func: &str) -> Result<Threads<'static>, Fail> {
    match code {
        NJ_THREADS_DEFAULT => Ok(Threads::Default),
        NJ_THREADS_CALLING => Ok(Threads::CallingThread),
        other => Err(Fail::new(
            NJ_ERR_INVALID_ARGUMENT,
            format!("{func}: threads {other} is neither NJ_THREADS_DEFAULT (0) nor NJ_THREADS_CALLING (1)"),
        )),
    }
}

/// Runs a kernel with tensors and params by position: `tensors[i]` is the
/// signature's tensor `i` (`nj_kernel_tensor_info`), `params[j]` its param
/// `j` (every param, defaults included: see `nj_kernel_param_info`).
/// `threads` is `NJ_THREADS_DEFAULT` or `NJ_THREADS_CALLING`. Sizes come
/// from the shapes. The first run at a new shape compiles code (cached per
/// kernel).
///
/// Every argument is checked before anything is written: on any error no
/// output buffer has been touched. Errors: `NJ_ERR_NULL_ARGUMENT`,
/// `NJ_ERR_INVALID_HANDLE`, `NJ_ERR_INVALID_ARGUMENT` (threads),
/// `NJ_ERR_ARITY`, `NJ_ERR_NEGATIVE_SHAPE`, `NJ_ERR_OVERFLOW`,
/// `NJ_ERR_DTYPE`, `NJ_ERR_SHAPE` (rank, contradicting sizes),
/// `NJ_ERR_BUFFER` (NULL or misaligned data with elements), `NJ_ERR_ALIAS`
/// (an output overlapping another tensor), `NJ_ERR_PARAM` (NaN, infinite,
/// out of range).
///
/// Thread safety: any number of threads may run the same kernel at once
/// (with distinct output buffers).
///
/// # Safety
/// `tensors` is NULL or points to `n_tensors` descriptors, each with a
/// `shape` of `rank` sizes and `data` valid as its documentation says for
/// the duration of the call (no other thread may access an output buffer
/// meanwhile); `params` is NULL or points to `n_params` doubles; `err` is
/// NULL or valid for writing one pointer.
#[no_mangle]
pub unsafe extern "C" fn nj_kernel_run(
    kernel: *const nj_kernel,
    tensors: *const nj_tensor,
    n_tensors: usize,
    params: *const f64,
    n_params: usize,
    threads: i32,
    err: *mut *mut nj_error,
) -> i32 {
    const F: &str = "nj_kernel_run";
    let body = || {
        let k = handle::kernel(kernel.addr(), F)?;
        let on = self::threads(threads, F)?;
        let sig = k.kernel.signature();
        // SAFETY: `tensors` points to `n_tensors` descriptors (the
        // contract).
        let descs = unsafe { c_array(tensors, n_tensors, F, "tensors") }?;
        if descs.len() != sig.tensors.len() {
            return Err(normjit::Error::Arity {
                kernel: sig.name.clone(),
                what: "tensors",
                expected: sig.tensors.len(),
                found: descs.len(),
            }
            .into());
        }
        // SAFETY: `params` points to `n_params` doubles (the contract).
        let params = unsafe { c_array(params, n_params, F, "params") }?;
        // SAFETY: each descriptor's shape has `rank` sizes (the
        // contract).
        let views = unsafe { check(descs, F, |i| &sig.tensors[i].name, |i| sig.tensors[i].role.is_written()) }?;
        k.kernel.call_with(&views.tensors(), params, None, on)?;
        Ok(())
    };
    // SAFETY: `err` is NULL or writable (this function's contract).
    unsafe { guard(err, body) }
}

/// Runs a kernel with tensors and params by name: `tensors[i]` is the tensor
/// named `tensor_names[i]`, in any order, each given once, all given;
/// `param_values[j]` is the value of the param named `param_names[j]`;
/// params not given take their defaults (a param without a default must be
/// given). Otherwise as `nj_kernel_run`.
///
/// Additional errors: `NJ_ERR_UNKNOWN_NAME` (a name the kernel does not
/// have), `NJ_ERR_BINDING` (a tensor given twice or not at all),
/// `NJ_ERR_PARAM` (a param without default not given),
/// `NJ_ERR_INVALID_UTF8` (a name).
///
/// # Safety
/// As `nj_kernel_run`; besides, `tensor_names` is NULL or points to
/// `n_tensors` NUL-terminated strings, and `param_names` and `param_values`
/// are NULL or point to `n_params` strings and doubles.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn nj_kernel_run_named(
    kernel: *const nj_kernel,
    tensor_names: *const *const c_char,
    tensors: *const nj_tensor,
    n_tensors: usize,
    param_names: *const *const c_char,
    param_values: *const f64,
    n_params: usize,
    threads: i32,
    err: *mut *mut nj_error,
) -> i32 {
    const F: &str = "nj_kernel_run_named";
    let body = || {
        let k = handle::kernel(kernel.addr(), F)?;
        let on = self::threads(threads, F)?;
        let sig = k.kernel.signature();
        // SAFETY: the arrays have `n_tensors` and `n_params` elements
        // (the contract).
        let (descs, tnames, pnames, values) = unsafe {
            (
                c_array(tensors, n_tensors, F, "tensors")?,
                c_array(tensor_names, n_tensors, F, "tensor_names")?,
                c_array(param_names, n_params, F, "param_names")?,
                c_array(param_values, n_params, F, "param_values")?,
            )
        };
        let names = |ptrs: &[*const c_char], what: &str| -> Result<Vec<&str>, Fail> {
            ptrs.iter()
                .enumerate()
                // SAFETY: each name is NULL or NUL-terminated (the
                // contract).
                .map(|(i, &p)| unsafe { c_str(p, F, &format!("{what}[{i}]")) })
                .collect()
        };
        let tnames = names(tnames, "tensor_names")?;
        let pnames = names(pnames, "param_names")?;
        // A name the kernel lacks is reported by normjit's binder; its
        // view is made read-only meanwhile.
        let written = |i: usize| sig.tensor(tnames[i]).is_some_and(|t| sig.tensors[t].role.is_written());
        // SAFETY: each descriptor's shape has `rank` sizes (the
        // contract).
        let views = unsafe { check(descs, F, |i| tnames[i], written) }?;
        let mut b = Bindings::new();
        for (&name, t) in tnames.iter().zip(views.tensors()) {
            b = b.tensor(name, t);
        }
        for (&name, &v) in pnames.iter().zip(values) {
            b = b.param(name, v);
        }
        k.kernel.run_on(b, on)?;
        Ok(())
    };
    // SAFETY: `err` is NULL or writable (this function's contract).
    unsafe { guard(err, body) }
}
