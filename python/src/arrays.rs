//! Tensor arguments from Python, without copying: which kind of object an
//! argument is (numpy array, PyTorch tensor, another DLPack producer), how
//! its memory is reached, and allocating the outputs a call was not given
//! (numpy arrays, or torch tensors when any argument is one).
//!
//! Every path goes through DLPack ([`crate::dlpack`]): `ndarray.__dlpack__()`
//! for numpy (a C method, ~60 ns), `torch.utils.dlpack.to_dlpack` for
//! PyTorch (a C function, ~250 ns; `Tensor.__dlpack__` is Python code and
//! costs ~2 µs), `__dlpack_device__` + `__dlpack__` for anything else. One
//! path describes device, dtype, shape, strides and byte offset alike for
//! every producer, and the capsule keeps the producer's memory alive while
//! the kernel runs with the GIL released. numpy arrays DLPack cannot
//! describe (read-only arrays under the legacy protocol, `ml_dtypes`
//! bfloat16) fall back to `__array_interface__`, also zero-copy.

use crate::dlpack::{self, View};
use pyo3::exceptions::{PyBufferError, PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};
use smallvec::SmallVec;

/// What allocated outputs should be.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Flavor {
    /// numpy arrays.
    Numpy,
    /// torch tensors (on the CPU).
    Torch,
}

struct Numpy {
    ndarray: Py<PyType>,
    empty: Py<PyAny>,
    /// numpy dtype objects by normjit dtype name.
    dtypes: Vec<(&'static str, Py<PyAny>)>,
}

struct Torch {
    tensor: Py<PyType>,
    parameter: Py<PyType>,
    to_dlpack: Py<PyAny>,
    empty: Py<PyAny>,
    /// `dtype=..., device=cpu` keywords of `torch.empty`, by normjit dtype.
    empty_kwargs: Vec<(&'static str, Py<PyDict>)>,
    strided: Py<PyAny>,
    /// `torch._C._increment_version` (what
    /// `torch.autograd.graph.increment_version` calls), if this torch has it.
    increment_version: Option<Py<PyAny>>,
}

static NUMPY: PyOnceLock<Numpy> = PyOnceLock::new();
static TORCH: PyOnceLock<Torch> = PyOnceLock::new();

fn numpy(py: Python<'_>) -> PyResult<&'static Numpy> {
    NUMPY.get_or_try_init(py, || {
        let np = py.import("numpy")?;
        let dtypes = [("f32", "float32"), ("f16", "float16"), ("f64", "float64")]
            .into_iter()
            .map(|(n, a)| Ok((n, np.getattr(a)?.unbind())))
            .collect::<PyResult<_>>()?;
        Ok(Numpy {
            ndarray: np.getattr("ndarray")?.cast_into::<PyType>()?.unbind(),
            empty: np.getattr("empty")?.unbind(),
            dtypes,
        })
    })
}

/// PyTorch's entry points, once `torch` has been imported by someone
/// (normjit never imports it itself: numpy users do not pay for it).
fn torch(py: Python<'_>) -> PyResult<Option<&'static Torch>> {
    if let Some(t) = TORCH.get(py) {
        return Ok(Some(t));
    }
    let modules = py.import("sys")?.getattr("modules")?;
    if !modules.contains("torch")? {
        return Ok(None);
    }
    TORCH
        .get_or_try_init(py, || {
            let torch = py.import("torch")?;
            let dl = py.import("torch.utils.dlpack")?;
            let cpu = torch.getattr("device")?.call1(("cpu",))?;
            let empty_kwargs = [("f32", "float32"), ("f16", "float16"), ("bf16", "bfloat16"), ("f64", "float64")]
                .into_iter()
                .map(|(n, a)| {
                    let kw = PyDict::new(py);
                    kw.set_item("dtype", torch.getattr(a)?)?;
                    kw.set_item("device", &cpu)?;
                    Ok((n, kw.unbind()))
                })
                .collect::<PyResult<_>>()?;
            Ok(Torch {
                empty_kwargs,
                tensor: torch.getattr("Tensor")?.cast_into::<PyType>()?.unbind(),
                parameter: torch.getattr("nn")?.getattr("Parameter")?.cast_into::<PyType>()?.unbind(),
                to_dlpack: dl.getattr("to_dlpack")?.unbind(),
                empty: torch.getattr("empty")?.unbind(),
                strided: torch.getattr("strided")?.unbind(),
                increment_version: torch.getattr("_C")?.getattr("_increment_version").ok().map(Bound::unbind),
            })
        })
        .map(Some)
}

/// Reads argument `obj` for tensor `tname`: a zero-copy view of its memory,
/// and whether it is a torch tensor.
pub fn read<'py>(obj: &Bound<'py, PyAny>, tname: &str) -> PyResult<(View<'py>, bool)> {
    let py = obj.py();
    let np = numpy(py)?;
    let ty = obj.get_type();
    let ndarray = np.ndarray.bind(py);
    if ty.is(ndarray) {
        return Ok((read_numpy(obj, tname)?, false));
    }
    if let Some(t) = torch(py)? {
        if ty.is(t.tensor.bind(py)) || ty.is(t.parameter.bind(py)) || obj.is_instance(t.tensor.bind(py))? {
            return Ok((read_torch(t, obj, tname)?, true));
        }
    }
    if obj.is_instance(ndarray)? {
        return Ok((read_numpy(obj, tname)?, false));
    }
    if obj.hasattr(intern!(py, "__dlpack__"))? {
        return Ok((read_dlpack(obj, tname)?, false));
    }
    Err(PyTypeError::new_err(format!(
        "tensor `{tname}`: expected a numpy array or a torch tensor (or another CPU DLPack producer), got {}",
        ty.name()?
    )))
}

fn read_numpy<'py>(obj: &Bound<'py, PyAny>, tname: &str) -> PyResult<View<'py>> {
    let py = obj.py();
    match obj.call_method0(intern!(py, "__dlpack__")) {
        Ok(cap) => dlpack::from_capsule(cap, tname),
        // Read-only arrays (the legacy capsule cannot say so), dtypes
        // DLPack lacks (ml_dtypes' bfloat16), non-native byte order.
        Err(e) if e.is_instance_of::<PyBufferError>(py) => read_array_interface(obj, tname),
        Err(e) => Err(e),
    }
}

fn read_torch<'py>(t: &Torch, obj: &Bound<'py, PyAny>, tname: &str) -> PyResult<View<'py>> {
    let py = obj.py();
    match t.to_dlpack.bind(py).call1((obj,)) {
        Ok(cap) => dlpack::from_capsule(cap, tname),
        Err(e) => {
            // Say what kind of tensor cannot be read, in PyTorch's terms.
            let device = obj.getattr(intern!(py, "device"))?;
            let kind: String = device.getattr(intern!(py, "type"))?.extract()?;
            if kind == "meta" {
                return Err(PyValueError::new_err(format!(
                    "tensor `{tname}` is a meta tensor: it has no data; normjit runs on CPU memory"
                )));
            }
            if kind != "cpu" {
                return Err(PyValueError::new_err(format!(
                    "tensor `{tname}` is on {}; normjit runs on the CPU: pass `{tname}.cpu()`",
                    device.str()?
                )));
            }
            let layout = obj.getattr(intern!(py, "layout"))?;
            if !layout.is(t.strided.bind(py)) {
                return Err(PyValueError::new_err(format!(
                    "tensor `{tname}` has layout {}; normjit needs a dense (strided) tensor",
                    layout.str()?
                )));
            }
            Err(PyValueError::new_err(format!("tensor `{tname}`: PyTorch cannot export its memory: {e}")))
        }
    }
}

fn read_dlpack<'py>(obj: &Bound<'py, PyAny>, tname: &str) -> PyResult<View<'py>> {
    let py = obj.py();
    if obj.hasattr(intern!(py, "__dlpack_device__"))? {
        let (kind, id): (i32, i32) = obj.call_method0(intern!(py, "__dlpack_device__"))?.extract()?;
        if !dlpack::host_device(kind) {
            return Err(PyValueError::new_err(format!(
                "tensor `{tname}` is on {}; normjit runs on the CPU",
                dlpack::device_name(kind, id)
            )));
        }
    }
    let cap = obj.call_method0(intern!(py, "__dlpack__"))?;
    dlpack::from_capsule(cap, tname)
}

/// numpy's `__array_interface__` (version 3): the fallback for arrays the
/// DLPack export refuses. The array itself keeps the memory alive.
fn read_array_interface<'py>(obj: &Bound<'py, PyAny>, tname: &str) -> PyResult<View<'py>> {
    let py = obj.py();
    let ai = obj.getattr(intern!(py, "__array_interface__"))?;
    let (addr, readonly): (usize, bool) = ai.get_item("data")?.extract()?;
    let shape: Vec<usize> = ai.get_item("shape")?.extract()?;
    let typestr: String = ai.get_item("typestr")?.extract()?;
    let bytes = typestr.get(1..).and_then(|s| s.get(1..)).and_then(|s| s.parse::<usize>().ok()).unwrap_or(0);
    let order = typestr.chars().next().unwrap_or('|');
    if order == '>' && cfg!(target_endian = "little") || order == '<' && cfg!(target_endian = "big") {
        return Err(PyTypeError::new_err(format!(
            "tensor `{tname}` has non-native byte order ({typestr}); pass `{tname}.astype({tname}.dtype.newbyteorder('='))`"
        )));
    }
    let kind = typestr.chars().nth(1).unwrap_or('?');
    let (dtype, py_dtype) = match (kind, bytes) {
        ('f', 2) => ("f16", "float16"),
        ('f', 4) => ("f32", "float32"),
        ('f', 8) => ("f64", "float64"),
        ('i', 4) => ("i32", "int32"),
        ('i', 8) => ("i64", "int64"),
        ('u', 1) => ("u8", "uint8"),
        ('b', 1) => ("bool", "bool"),
        ('c', 8) => ("c64", "complex64"),
        ('c', 16) => ("c128", "complex128"),
        _ => {
            // Extension dtypes (ml_dtypes' bfloat16 is `<V2`) by name.
            let name: String = obj.getattr(intern!(py, "dtype"))?.getattr(intern!(py, "name"))?.extract()?;
            match name.as_str() {
                "bfloat16" => ("bf16", "bfloat16"),
                _ => ("unknown", "an unsupported numpy dtype"),
            }
        }
    };
    let strides: Option<Vec<i64>> = ai.get_item("strides")?.extract()?;
    if let Some(s) = strides {
        let elem = bytes.max(1) as i64;
        if s.iter().any(|b| b % elem != 0) {
            return Err(dlpack::not_contiguous(tname, &shape, &s));
        }
        let s: Vec<i64> = s.iter().map(|b| b / elem).collect();
        if !dlpack::row_major(&shape, &s) {
            return Err(dlpack::not_contiguous(tname, &shape, &s));
        }
    }
    let numel = shape
        .iter()
        .try_fold(1usize, |a, &n| a.checked_mul(n))
        .ok_or_else(|| PyValueError::new_err(format!("tensor `{tname}`: the product of its shape overflows")))?;
    if numel > 0 && (addr == 0 || !addr.is_multiple_of(bytes.max(1))) {
        return Err(PyValueError::new_err(format!(
            "tensor `{tname}`: its data pointer {addr:#x} is not aligned to its {bytes}-byte elements"
        )));
    }
    Ok(View {
        ptr: addr as *mut std::ffi::c_void,
        numel,
        shape: SmallVec::from_vec(shape),
        dtype,
        py_dtype,
        readonly,
        keep: obj.clone(),
    })
}

/// The numpy dtype object for normjit dtype `dtype` (`bf16` from
/// ml_dtypes, as numpy has none).
fn numpy_dtype<'py>(py: Python<'py>, dtype: &str, tname: &str) -> PyResult<Bound<'py, PyAny>> {
    let np = numpy(py)?;
    if let Some((_, d)) = np.dtypes.iter().find(|(n, _)| *n == dtype) {
        return Ok(d.bind(py).clone());
    }
    if dtype == "bf16" {
        let ml = py.import("ml_dtypes").map_err(|_| {
            PyTypeError::new_err(format!(
                "output `{tname}` is bf16 and numpy has no bfloat16: install ml_dtypes, or pass `{tname}`"
            ))
        })?;
        return ml.getattr("bfloat16");
    }
    Err(PyTypeError::new_err(format!(
        "output `{tname}` has dtype {dtype}, which normjit cannot allocate: pass `{tname}`"
    )))
}

/// A new uninitialized array (numpy) or CPU tensor (torch) of `shape` and
/// normjit dtype `dtype` (a `DType::name()`), for output `tname`.
pub fn alloc<'py>(
    py: Python<'py>,
    flavor: Flavor,
    shape: &[usize],
    dtype: &str,
    tname: &str,
) -> PyResult<Bound<'py, PyAny>> {
    match flavor {
        Flavor::Numpy => {
            let d = numpy_dtype(py, dtype, tname)?;
            numpy(py)?.empty.bind(py).call1((PyTuple::new(py, shape)?, d))
        }
        Flavor::Torch => {
            let t = torch(py)?.ok_or_else(|| PyTypeError::new_err("torch is not imported"))?;
            let kw = t.empty_kwargs.iter().find(|(n, _)| *n == dtype).ok_or_else(|| {
                PyTypeError::new_err(format!(
                    "output `{tname}` has dtype {dtype}, which normjit cannot allocate: pass `{tname}`"
                ))
            })?;
            // `torch.empty(*shape, dtype=..., device=cpu)`: sizes as
            // separate arguments parse faster than a tuple.
            t.empty.bind(py).call(PyTuple::new(py, shape)?, Some(kw.1.bind(py)))
        }
    }
}

/// Tells autograd that the kernel wrote `tensors` in place (their version
/// counters), as PyTorch's own in-place operations do, so a backward pass
/// that saved one of them raises instead of using modified values.
pub fn bump_versions<'py>(py: Python<'py>, tensors: Vec<Bound<'py, PyAny>>) -> PyResult<()> {
    if tensors.is_empty() {
        return Ok(());
    }
    if let Some(f) = torch(py)?.and_then(|t| t.increment_version.as_ref()) {
        f.bind(py).call1((PyTuple::new(py, tensors)?,))?;
    }
    Ok(())
}

/// Asks Linux to back a large freshly allocated output with transparent
/// huge pages before the kernel first touches it, as numpy does for its own
/// allocations (PyTorch's CPU allocator does not): page-faulting a new
/// 256 MiB output in 4 KiB pages costs ~120 ms on the development VM, in
/// 2 MiB pages ~30 ms. Advisory; errors are ignored. Below 4 MiB (numpy's
/// threshold) it does nothing.
pub fn advise_huge_pages(ptr: *mut std::ffi::c_void, bytes: usize) {
    #[cfg(target_os = "linux")]
    {
        const MIN: usize = 4 << 20;
        const PAGE: usize = 4096;
        if bytes < MIN {
            return;
        }
        let start = (ptr as usize).next_multiple_of(PAGE);
        let end = (ptr as usize + bytes) & !(PAGE - 1);
        if end > start {
            // SAFETY: madvise only changes how the kernel backs the pages
            // of [start, end), a page-aligned range inside the output's
            // allocation (which is alive and not yet touched); MADV_HUGEPAGE
            // neither reads, writes nor unmaps memory.
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (ptr, bytes);
}
