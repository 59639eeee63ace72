//! DLPack, the array exchange format numpy and PyTorch both export: the C
//! structs of `dlpack.h` (v1), reading a `"dltensor"` or
//! `"dltensor_versioned"` capsule into a [`View`], and the names of DLPack
//! devices and dtypes for error messages.
//!
//! A capsule is borrowed, not consumed: it is kept alive (in
//! [`View::keep`]) until the kernel call returns, and not renamed, so its
//! destructor (run when the last reference drops, with the GIL held)
//! releases the producer's tensor. While it lives the producer keeps the
//! memory alive.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyCapsule;
use smallvec::SmallVec;
use std::ffi::c_void;

/// `DLDevice`.
#[repr(C)]
#[derive(Clone, Copy)]
struct DLDevice {
    device_type: i32,
    device_id: i32,
}

/// `DLDataType`.
#[repr(C)]
#[derive(Clone, Copy)]
struct DLDataType {
    code: u8,
    bits: u8,
    lanes: u16,
}

/// `DLTensor`.
#[repr(C)]
struct DLTensor {
    data: *mut c_void,
    device: DLDevice,
    ndim: i32,
    dtype: DLDataType,
    shape: *const i64,
    strides: *const i64,
    byte_offset: u64,
}

/// `DLManagedTensor` (the legacy, unversioned capsule `"dltensor"`).
#[repr(C)]
struct DLManagedTensor {
    dl_tensor: DLTensor,
    manager_ctx: *mut c_void,
    deleter: Option<unsafe extern "C" fn(*mut DLManagedTensor)>,
}

/// `DLPackVersion`.
#[repr(C)]
#[derive(Clone, Copy)]
struct DLPackVersion {
    major: u32,
    minor: u32,
}

/// `DLManagedTensorVersioned` (the capsule `"dltensor_versioned"`).
#[repr(C)]
struct DLManagedTensorVersioned {
    version: DLPackVersion,
    manager_ctx: *mut c_void,
    deleter: Option<unsafe extern "C" fn(*mut DLManagedTensorVersioned)>,
    flags: u64,
    dl_tensor: DLTensor,
}

/// `DLPACK_FLAG_BITMASK_READ_ONLY`.
const FLAG_READ_ONLY: u64 = 1;
/// `DLPACK_FLAG_BITMASK_IS_COPIED`.
const FLAG_IS_COPIED: u64 = 2;

/// `kDLCPU`.
pub const DEVICE_CPU: i32 = 1;
/// `kDLCUDAHost`: page-locked host memory, readable from the CPU.
const DEVICE_CUDA_HOST: i32 = 3;
/// `kDLROCMHost`: page-locked host memory, readable from the CPU.
const DEVICE_ROCM_HOST: i32 = 11;

/// True for devices whose memory the CPU addresses directly.
pub fn host_device(device_type: i32) -> bool {
    matches!(device_type, DEVICE_CPU | DEVICE_CUDA_HOST | DEVICE_ROCM_HOST)
}

/// `cuda:0`, `meta`, ...: a DLPack device as PyTorch would print it.
pub fn device_name(device_type: i32, id: i32) -> String {
    let kind = match device_type {
        1 => "cpu",
        2 => "cuda",
        3 => "cuda_host",
        4 => "opencl",
        7 => "vulkan",
        8 => "metal (mps)",
        9 => "vpi",
        10 => "rocm",
        11 => "rocm_host",
        12 => "ext_dev",
        13 => "cuda_managed",
        14 => "oneapi (xpu)",
        15 => "webgpu",
        16 => "hexagon",
        17 => "maia",
        _ => return format!("DLPack device type {device_type}"),
    };
    format!("{kind}:{id}")
}

/// The normjit name (`f32`, as in `DType::name`) and the numpy/PyTorch
/// name (`float32`) of a DLPack dtype.
pub fn dtype_names(code: u8, bits: u8, lanes: u16) -> (&'static str, &'static str) {
    if lanes != 1 {
        return ("vector", "a vector dtype");
    }
    match (code, bits) {
        (2, 16) => ("f16", "float16"),
        (2, 32) => ("f32", "float32"),
        (2, 64) => ("f64", "float64"),
        (4, 16) => ("bf16", "bfloat16"),
        (0, 8) => ("i8", "int8"),
        (0, 16) => ("i16", "int16"),
        (0, 32) => ("i32", "int32"),
        (0, 64) => ("i64", "int64"),
        (1, 8) => ("u8", "uint8"),
        (1, 16) => ("u16", "uint16"),
        (1, 32) => ("u32", "uint32"),
        (1, 64) => ("u64", "uint64"),
        (5, 64) => ("c64", "complex64"),
        (5, 128) => ("c128", "complex128"),
        (6, 8) => ("bool", "bool"),
        (7..=13, 8) => ("f8", "float8"),
        _ => ("unknown", "an unknown dtype"),
    }
}

/// A tensor argument read from Python: where its elements are, how many,
/// its shape and dtype, and the object that keeps the memory alive.
pub struct View<'py> {
    /// The first element (data + byte offset).
    pub ptr: *mut c_void,
    /// Elements (the product of `shape`).
    pub numel: usize,
    /// Sizes, outermost first.
    pub shape: SmallVec<[usize; 4]>,
    /// normjit's name of the element type (`f32`), compared with
    /// `DType::name()` of the signature.
    pub dtype: &'static str,
    /// numpy's / PyTorch's name of it (`float32`), for messages.
    pub py_dtype: &'static str,
    /// The producer marked the memory read-only.
    pub readonly: bool,
    /// The capsule (or array) keeping the memory alive until the call ends
    /// (held for its `Drop`, never read).
    #[allow(dead_code)]
    pub keep: Bound<'py, PyAny>,
}

/// Checks that `shape` with element `strides` (outermost first) is dense
/// row-major: the last dim contiguous and each stride the product of the
/// sizes inside it. Dims of size 1 may have any stride; an empty tensor is
/// always dense.
pub fn row_major(shape: &[usize], strides: &[i64]) -> bool {
    if shape.contains(&0) {
        return true;
    }
    let mut expect: i64 = 1;
    for (&n, &s) in shape.iter().zip(strides).rev() {
        if n != 1 && s != expect {
            return false;
        }
        expect = expect.saturating_mul(n as i64);
    }
    true
}

/// A contiguity error naming the tensor, with its shape and strides and
/// how to fix it.
pub fn not_contiguous(tname: &str, shape: &[usize], strides: &[i64]) -> PyErr {
    PyValueError::new_err(format!(
        "tensor `{tname}` is not contiguous (shape {shape:?}, strides {strides:?} in elements): normjit reads \
         dense row-major memory; pass `{tname}.contiguous()` (torch) or `np.ascontiguousarray({tname})` (numpy)"
    ))
}

/// Reads a DLPack capsule (legacy or versioned) for tensor `tname`: checks
/// the device, the shape, contiguity and alignment. `keep` becomes the
/// capsule's owner in the view.
pub fn from_capsule<'py>(capsule: Bound<'py, PyAny>, tname: &str) -> PyResult<View<'py>> {
    let cap = capsule
        .cast::<PyCapsule>()
        .map_err(|_| PyTypeError::new_err(format!("tensor `{tname}`: `__dlpack__()` did not return a PyCapsule")))?;
    let (t, readonly): (*const DLTensor, bool) = if cap.is_valid_checked(Some(c"dltensor")) {
        let m = cap.pointer_checked(Some(c"dltensor"))?.as_ptr() as *const DLManagedTensor;
        // SAFETY: a valid capsule named "dltensor" holds a non-null
        // `DLManagedTensor*` (the DLPack protocol), alive while the capsule
        // is alive and unconsumed; we only take the address of its field.
        (unsafe { &raw const (*m).dl_tensor }, false)
    } else if cap.is_valid_checked(Some(c"dltensor_versioned")) {
        let m = cap.pointer_checked(Some(c"dltensor_versioned"))?.as_ptr() as *const DLManagedTensorVersioned;
        // SAFETY: a valid capsule named "dltensor_versioned" holds a
        // non-null `DLManagedTensorVersioned*` (the DLPack protocol), alive
        // while the capsule is; the version is read before anything else.
        let (version, flags) = unsafe { ((*m).version, (*m).flags) };
        if version.major != 1 {
            return Err(PyTypeError::new_err(format!(
                "tensor `{tname}`: DLPack version {}.{} is not supported (normjit reads version 1)",
                version.major, version.minor
            )));
        }
        if flags & FLAG_IS_COPIED != 0 {
            return Err(PyValueError::new_err(format!(
                "tensor `{tname}`: its producer exported a copy, not its memory; normjit needs zero-copy access"
            )));
        }
        // SAFETY: as above; major version 1 has this layout.
        (unsafe { &raw const (*m).dl_tensor }, flags & FLAG_READ_ONLY != 0)
    } else {
        return Err(PyTypeError::new_err(format!(
            "tensor `{tname}`: `__dlpack__()` returned a capsule that is neither \"dltensor\" nor \
             \"dltensor_versioned\" (already consumed?)"
        )));
    };
    // SAFETY: `t` points into the managed tensor held by `capsule`, which
    // is alive (we hold it) and which nothing else mutates while we hold
    // the GIL.
    let t = unsafe { &*t };
    if !host_device(t.device.device_type) {
        let dev = device_name(t.device.device_type, t.device.device_id);
        return Err(PyValueError::new_err(format!(
            "tensor `{tname}` is on {dev}; normjit runs on the CPU: pass `{tname}.cpu()`"
        )));
    }
    let ndim = usize::try_from(t.ndim)
        .map_err(|_| PyValueError::new_err(format!("tensor `{tname}`: DLPack reports {} dims", t.ndim)))?;
    if ndim > 0 && t.shape.is_null() {
        return Err(PyValueError::new_err(format!("tensor `{tname}`: DLPack shape is NULL")));
    }
    let raw_shape: &[i64] = if ndim == 0 {
        &[]
    } else {
        // SAFETY: a DLTensor's `shape` points to `ndim` sizes (checked
        // non-null), owned by the managed tensor we keep alive.
        unsafe { std::slice::from_raw_parts(t.shape, ndim) }
    };
    let mut shape: SmallVec<[usize; 4]> = SmallVec::with_capacity(ndim);
    for &n in raw_shape {
        shape.push(
            usize::try_from(n)
                .map_err(|_| PyValueError::new_err(format!("tensor `{tname}` has a negative size {n}")))?,
        );
    }
    let numel = shape
        .iter()
        .try_fold(1usize, |a, &n| a.checked_mul(n))
        .ok_or_else(|| PyValueError::new_err(format!("tensor `{tname}`: the product of its shape overflows")))?;
    if !t.strides.is_null() && ndim > 0 {
        // SAFETY: non-null `strides` points to `ndim` strides (DLPack).
        let strides = unsafe { std::slice::from_raw_parts(t.strides, ndim) };
        if !row_major(&shape, strides) {
            return Err(not_contiguous(tname, &shape, strides));
        }
    }
    let (dtype, py_dtype) = dtype_names(t.dtype.code, t.dtype.bits, t.dtype.lanes);
    let ptr = (t.data as *mut u8).wrapping_add(t.byte_offset as usize) as *mut c_void;
    let align = (usize::from(t.dtype.bits) / 8).max(1);
    if numel > 0 && (ptr.is_null() || !(ptr as usize).is_multiple_of(align)) {
        return Err(PyValueError::new_err(format!(
            "tensor `{tname}`: its data pointer {ptr:p} is not aligned to its {align}-byte elements"
        )));
    }
    Ok(View { ptr, numel, shape, dtype, py_dtype, readonly, keep: capsule })
}
