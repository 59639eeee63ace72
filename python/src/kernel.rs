//! `normjit.Kernel`: a kernel called from Python with keyword arguments.
//!
//! A call binds keywords to positional slots (names are interned once, so
//! a keyword is found by pointer comparison), reads every tensor without
//! copying ([`crate::arrays`]), allocates the `out` tensors it was not
//! given, and runs the runtime's positional path with the GIL released.
//! `foreach` does the same over lists of tensors (the runtime's
//! `call_foreach`). Everything that can be wrong with an argument is
//! reported before the kernel runs, so a failing call writes nothing.
//! `explain` and `asm` lower and compile at given sizes for inspection.

use crate::arrays::{self, Flavor};
use crate::dlpack::View;
use crate::errors;
use crate::host;
use crate::signature::Signature;
use normjit::{DType, Role, Tensor};
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyTuple};
use smallvec::SmallVec;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// A tensor of the signature, as the binder needs it.
struct TensorSlot {
    name: String,
    role: Role,
    dtype: DType,
    /// Dim indices, outermost first.
    dims: Vec<usize>,
    /// `f32[N, D]`.
    declared: String,
}

/// A param of the signature.
struct ParamSlot {
    name: String,
    default: Option<f64>,
}

/// Keyword arguments bound to slots: tensor objects by position (None:
/// not given), param values by position (defaults filled in).
type BoundArgs<'py> = (SmallVec<[Option<Bound<'py, PyAny>>; 8]>, SmallVec<[f64; 8]>);

/// A compiled normjit kernel. Call it with its tensors and params as
/// keyword arguments: `y = layer_norm(x=x, gamma=g, beta=b, eps=1e-5)`.
///
/// - Tensors are numpy arrays or CPU torch tensors (any dense row-major
///   DLPack producer), read and written in place without copying, of the
///   declared rank (a tensor declared with one dim takes any contiguous
///   array of the right length, read flat).
/// - `inout` tensors are updated in place; `out` tensors not given are
///   allocated (torch tensors if any argument is a torch tensor, numpy
///   arrays otherwise). The call returns the `out` tensors (given or
///   allocated): None, one, or a tuple in declaration order.
/// - Params not given take their defaults.
/// - The GIL is released while the kernel runs.
///
/// `foreach(...)` runs it over lists of tensors (one optimizer step over
/// every parameter), `signature` describes it, `explain(**dims)` prints
/// the fused plan and `asm(**dims)` the generated code.
#[pyclass(frozen, module = "normjit")]
pub struct Kernel {
    inner: normjit::Kernel,
    origin: String,
    source: String,
    /// Interned names: the tensors', then the params', by position.
    names: Vec<Py<PyString>>,
    tensors: Vec<TensorSlot>,
    params: Vec<ParamSlot>,
    dims: Vec<String>,
    signature: Py<Signature>,
}

impl Kernel {
    /// Wraps a runtime kernel; `origin` says where it came from (a path,
    /// `library:NAME`, `<source>`), `source` is its text.
    pub fn wrap(py: Python<'_>, inner: normjit::Kernel, origin: String, source: String) -> PyResult<Kernel> {
        let sig = inner.signature().clone();
        let tensors: Vec<TensorSlot> = sig
            .tensors
            .iter()
            .enumerate()
            .map(|(t, ts)| TensorSlot {
                name: ts.name.clone(),
                role: ts.role,
                dtype: ts.dtype,
                dims: ts.dims.clone(),
                declared: sig.declared(t),
            })
            .collect();
        let params: Vec<ParamSlot> =
            sig.params.iter().map(|p| ParamSlot { name: p.name.clone(), default: p.default }).collect();
        let names = tensors
            .iter()
            .map(|t| t.name.as_str())
            .chain(params.iter().map(|p| p.name.as_str()))
            .map(|n| PyString::intern(py, n).unbind())
            .collect();
        let signature = Py::new(py, Signature::new(py, &sig)?)?;
        Ok(Kernel { inner, origin, source, names, tensors, params, dims: sig.dims.clone(), signature })
    }

    fn name(&self) -> &str {
        &self.inner.signature().name
    }

    /// `it takes tensors x, y and params eps`.
    fn takes(&self) -> String {
        let t: Vec<&str> = self.tensors.iter().map(|t| t.name.as_str()).collect();
        let p: Vec<&str> = self.params.iter().map(|p| p.name.as_str()).collect();
        match (t.is_empty(), p.is_empty()) {
            (_, true) => format!("it takes tensors {}", t.join(", ")),
            (true, false) => format!("it takes params {}", p.join(", ")),
            (false, false) => format!("it takes tensors {} and params {}", t.join(", "), p.join(", ")),
        }
    }

    /// The slot of keyword `key` (tensors first, then params).
    fn slot(&self, key: &Bound<'_, PyAny>) -> PyResult<usize> {
        let p = key.as_ptr();
        if let Some(i) = self.names.iter().position(|n| n.as_ptr() == p) {
            return Ok(i);
        }
        // A key that is not the interned string (built at run time).
        for (i, n) in self.names.iter().enumerate() {
            if n.bind(key.py()).as_any().eq(key)? {
                return Ok(i);
            }
        }
        Err(PyTypeError::new_err(format!(
            "{}() got an unexpected keyword argument `{}`: {}",
            self.name(),
            key.str()?,
            self.takes()
        )))
    }

    /// Binds keyword arguments to slots; checks params are numbers and
    /// that params without defaults are given.
    fn bind<'py>(
        &self,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
        method: &str,
    ) -> PyResult<BoundArgs<'py>> {
        if !args.is_empty() {
            return Err(PyTypeError::new_err(format!(
                "{}{method}() takes tensors and params by keyword only ({} positional given): {}",
                self.name(),
                args.len(),
                self.takes()
            )));
        }
        let nt = self.tensors.len();
        let mut objs: SmallVec<[Option<Bound<'py, PyAny>>; 8]> = SmallVec::from_elem(None, nt);
        let mut params: SmallVec<[f64; 8]> = self.params.iter().map(|p| p.default.unwrap_or(f64::NAN)).collect();
        let mut given: SmallVec<[bool; 8]> = SmallVec::from_elem(false, self.params.len());
        if let Some(kw) = kwargs {
            for (k, v) in kw.iter() {
                let i = self.slot(&k)?;
                if i < nt {
                    objs[i] = Some(v);
                } else {
                    let j = i - nt;
                    params[j] = v.extract::<f64>().map_err(|_| {
                        let ty = v.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "?".into());
                        PyTypeError::new_err(format!(
                            "{}: param `{}` must be a number, got {ty}",
                            self.name(),
                            self.params[j].name
                        ))
                    })?;
                    given[j] = true;
                }
            }
        }
        for (j, p) in self.params.iter().enumerate() {
            if p.default.is_none() && !given[j] {
                return Err(PyTypeError::new_err(format!(
                    "{}{method}() missing param `{}` (it has no default)",
                    self.name(),
                    p.name
                )));
            }
        }
        Ok((objs, params))
    }

    /// Reads tensor `t`'s argument and checks what the runtime cannot see:
    /// the producer's dtype by name and read-only memory.
    fn read<'py>(&self, t: usize, obj: &Bound<'py, PyAny>) -> PyResult<(View<'py>, bool)> {
        let slot = &self.tensors[t];
        let (v, is_torch) = arrays::read(obj, &slot.name)?;
        if v.dtype != slot.dtype.name() {
            return Err(PyTypeError::new_err(format!(
                "{}: tensor `{}` is declared {} but a {} {} was given",
                self.name(),
                slot.name,
                slot.declared,
                v.py_dtype,
                if is_torch { "tensor" } else { "array" }
            )));
        }
        if slot.role.is_written() && v.readonly {
            return Err(PyValueError::new_err(format!(
                "{}: tensor `{}` is read-only, but the kernel writes it (`{}`)",
                self.name(),
                slot.name,
                slot.role.keyword()
            )));
        }
        Ok((v, is_torch))
    }

    /// Each dim's size from the shapes of the tensors given (None where no
    /// tensor fixes it), reporting ranks and conflicts as the runtime
    /// would.
    fn infer_dims<'v, 'py: 'v>(
        &self,
        views: impl Iterator<Item = Option<&'v View<'py>>>,
    ) -> PyResult<SmallVec<[Option<usize>; 8]>> {
        let mut size: SmallVec<[Option<(usize, usize)>; 8]> = SmallVec::from_elem(None, self.dims.len());
        for (t, v) in views.enumerate() {
            let Some(v) = v else { continue };
            let slot = &self.tensors[t];
            // A tensor declared with one dim (or none) is read flat.
            let flat = [v.numel];
            let shape: &[usize] = if slot.dims.len() <= 1 { &flat[..slot.dims.len()] } else { &v.shape };
            if shape.len() != slot.dims.len() || slot.dims.is_empty() && v.numel != 1 {
                return Err(PyValueError::new_err(format!(
                    "{}: tensor `{}` is declared {} but the given array has shape {:?}",
                    self.name(),
                    slot.name,
                    slot.declared,
                    &v.shape[..]
                )));
            }
            for (&d, &n) in slot.dims.iter().zip(shape) {
                match size[d] {
                    None => size[d] = Some((n, t)),
                    Some((m, u)) if m != n => {
                        return Err(PyValueError::new_err(format!(
                            "{}: dim `{}` is {m} from the shape of `{}` but {n} from the shape of `{}`",
                            self.name(),
                            self.dims[d],
                            self.tensors[u].name,
                            slot.name
                        )))
                    }
                    Some(_) => {}
                }
            }
        }
        Ok(size.iter().map(|s| s.map(|s| s.0)).collect())
    }

    /// Runs the kernel on `views` (one per tensor, in order) with the GIL
    /// released; a panic becomes a `RuntimeError`.
    fn run(&self, py: Python<'_>, views: &[View<'_>], params: &[f64]) -> PyResult<()> {
        let tensors: SmallVec<[Tensor<'_>; 8]> = views.iter().zip(&self.tensors).map(|(v, s)| tensor(v, s)).collect();
        let on = host::on();
        let r =
            py.detach(|| catch_unwind(AssertUnwindSafe(|| self.inner.call_with(&tensors, params, None, on.threads()))));
        match r {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(errors::to_py(e, Some(self.name()))),
            Err(p) => Err(errors::panicked(p)),
        }
    }

    /// Sizes of every dim from `NAME=size` keywords (all required).
    fn dims_from(&self, kwargs: Option<&Bound<'_, PyDict>>, method: &str) -> PyResult<Vec<usize>> {
        let mut dims: Vec<Option<usize>> = vec![None; self.dims.len()];
        if let Some(kw) = kwargs {
            for (k, v) in kw.iter() {
                let k: String = k.extract()?;
                let d = self.dims.iter().position(|d| *d == k).ok_or_else(|| {
                    PyTypeError::new_err(format!(
                        "{}.{method}() got an unexpected keyword argument `{k}`: the dims are {}",
                        self.name(),
                        self.dims.join(", ")
                    ))
                })?;
                dims[d] = Some(v.extract::<usize>().map_err(|_| {
                    PyValueError::new_err(format!("{}.{method}(): dim `{k}` must be a size (an int ≥ 0)", self.name()))
                })?);
            }
        }
        let missing: Vec<&str> =
            self.dims.iter().zip(&dims).filter(|(_, n)| n.is_none()).map(|(d, _)| d.as_str()).collect();
        if !missing.is_empty() {
            return Err(PyTypeError::new_err(format!(
                "{}.{method}() needs the size of every dim; missing {} (e.g. {}={})",
                self.name(),
                missing.join(", "),
                missing[0],
                64
            )));
        }
        Ok(dims.into_iter().map(|d| d.unwrap_or(0)).collect())
    }

    fn plan(&self, dims: &[usize]) -> PyResult<normjit::unstable::lower::Plan> {
        normjit::unstable::lower::lower(self.inner.ir(), dims, &host::lower_options()?)
            .map_err(|e| errors::to_py(normjit::Error::from(e), Some(self.name())))
    }
}

/// The runtime's view of `v` for tensor `s`.
fn tensor<'a>(v: &'a View<'_>, s: &TensorSlot) -> Tensor<'a> {
    // SAFETY: `v` was read from a live DLPack capsule or numpy array that
    // `v.keep` holds until after the call: `v.ptr` addresses `v.numel`
    // elements of `s.dtype` (the dtype was checked against the signature
    // by name, the layout checked dense row-major, the pointer non-null
    // and aligned when there are elements), and written tensors are not
    // read-only (checked in `Kernel::read`). The runtime refuses outputs
    // that overlap any other argument before writing. Other Python threads
    // may touch the same buffers while the GIL is released — as with
    // numpy's own GIL-releasing operations, that is the caller's race; the
    // kernel still only reads and writes inside these live buffers.
    let t = unsafe { Tensor::raw(v.ptr as _, v.numel, s.role.is_written(), Some(s.dtype), "") };
    // A tensor declared with one dim (or none) is read flat: any
    // contiguous array of the right length (an optimizer's parameters,
    // whatever their shape); the runtime infers its size from the length.
    if s.dims.len() <= 1 {
        t
    } else {
        t.shaped(&v.shape)
    }
}

/// The same exception type with `prefix` before its message.
fn prefixed(py: Python<'_>, e: PyErr, prefix: &str) -> PyErr {
    let msg = e.value(py).str().map(|s| s.to_string()).unwrap_or_default();
    PyErr::from_type(e.get_type(py), format!("{prefix}{msg}"))
}

#[pymethods]
impl Kernel {
    #[pyo3(signature = (*args, **kwargs))]
    fn __call__<'py>(
        &self,
        py: Python<'py>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        let (objs, params) = self.bind(args, kwargs, "")?;
        let nt = self.tensors.len();
        let mut views: SmallVec<[Option<View<'py>>; 8]> = SmallVec::with_capacity(nt);
        let mut torch = false;
        // Written torch tensors given: autograd learns they changed.
        let mut written_torch: SmallVec<[Bound<'py, PyAny>; 4]> = SmallVec::new();
        for (t, o) in objs.iter().enumerate() {
            match o {
                Some(o) => {
                    let (v, is_torch) = self.read(t, o)?;
                    torch |= is_torch;
                    if is_torch && self.tensors[t].role.is_written() {
                        written_torch.push(o.clone());
                    }
                    views.push(Some(v));
                }
                None if self.tensors[t].role == Role::Out => views.push(None),
                None => {
                    let s = &self.tensors[t];
                    return Err(PyTypeError::new_err(format!(
                        "{}() missing tensor `{}` ({} {}{})",
                        self.name(),
                        s.name,
                        s.role.keyword(),
                        s.declared,
                        if s.role == Role::InOut { ", updated in place" } else { "" }
                    )));
                }
            }
        }
        let mut allocated: SmallVec<[Option<Bound<'py, PyAny>>; 4]> = SmallVec::from_elem(None, nt);
        if views.iter().any(Option::is_none) {
            let dims = self.infer_dims(views.iter().map(Option::as_ref))?;
            let flavor = if torch { Flavor::Torch } else { Flavor::Numpy };
            for t in 0..nt {
                if views[t].is_some() {
                    continue;
                }
                let s = &self.tensors[t];
                let mut shape: SmallVec<[usize; 4]> = SmallVec::new();
                for &d in &s.dims {
                    shape.push(dims[d].ok_or_else(|| {
                        PyValueError::new_err(format!(
                            "{}: cannot allocate output `{}`: no tensor given fixes dim `{}`; pass `{}`",
                            self.name(),
                            s.name,
                            self.dims[d],
                            s.name
                        ))
                    })?);
                }
                let arr = arrays::alloc(py, flavor, &shape, s.dtype.name(), &s.name)?;
                let v = self.read(t, &arr)?.0;
                if flavor == Flavor::Torch {
                    arrays::advise_huge_pages(v.ptr, v.numel.saturating_mul(s.dtype.size_bytes()));
                }
                views[t] = Some(v);
                allocated[t] = Some(arr);
            }
        }
        let views: SmallVec<[View<'py>; 8]> = views.into_iter().flatten().collect();
        self.run(py, &views, &params)?;
        drop(views);
        arrays::bump_versions(py, written_torch.into_vec())?;
        let mut outs: SmallVec<[Bound<'py, PyAny>; 4]> = SmallVec::new();
        for (t, s) in self.tensors.iter().enumerate() {
            if s.role == Role::Out {
                match (&allocated[t], &objs[t]) {
                    (Some(a), _) | (None, Some(a)) => outs.push(a.clone()),
                    (None, None) => {
                        return Err(PyRuntimeError::new_err(format!(
                            "internal error (a normjit bug): output `{}` was neither given nor allocated",
                            s.name
                        )))
                    }
                }
            }
        }
        Ok(match outs.len() {
            0 => py.None(),
            1 => outs.pop().map(Bound::unbind).unwrap_or_else(|| py.None()),
            _ => PyTuple::new(py, outs)?.into_any().unbind(),
        })
    }

    /// Runs the kernel over groups of tensors that share params: every
    /// tensor keyword takes a list (or tuple) of tensors, all lists of the
    /// same length, group `i` made of each list's element `i` (PyTorch's
    /// foreach: one optimizer step over every parameter of a model). Every
    /// tensor, outputs included, must be given. Every group is validated
    /// before any runs. Returns None.
    #[pyo3(signature = (*args, **kwargs))]
    fn foreach<'py>(
        &self,
        py: Python<'py>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<()> {
        let (objs, params) = self.bind(args, kwargs, ".foreach")?;
        let nt = self.tensors.len();
        let mut lists: SmallVec<[Bound<'py, PyList>; 8]> = SmallVec::with_capacity(nt);
        for (t, o) in objs.into_iter().enumerate() {
            let s = &self.tensors[t];
            let o = o.ok_or_else(|| {
                PyTypeError::new_err(format!(
                    "{}.foreach() missing tensor list `{}` (foreach allocates nothing: give every tensor)",
                    self.name(),
                    s.name
                ))
            })?;
            let list = match o.cast_into::<PyList>() {
                Ok(l) => l,
                Err(e) => {
                    let o = e.into_inner();
                    if o.is_instance_of::<PyTuple>() {
                        PyList::new(py, o.cast_into::<PyTuple>()?.iter())?
                    } else {
                        return Err(PyTypeError::new_err(format!(
                            "{}.foreach(): `{}` must be a list or tuple of tensors, got {}",
                            self.name(),
                            s.name,
                            o.get_type().name()?
                        )));
                    }
                }
            };
            if let Some(first) = lists.first() {
                if list.len() != first.len() {
                    return Err(PyValueError::new_err(format!(
                        "{}.foreach(): `{}` has {} tensors but `{}` has {}",
                        self.name(),
                        s.name,
                        list.len(),
                        self.tensors[0].name,
                        first.len()
                    )));
                }
            }
            lists.push(list);
        }
        let groups = lists.first().map_or(0, |l| l.len());
        if groups == 0 {
            return Ok(());
        }
        let mut views: Vec<View<'py>> = Vec::with_capacity(groups * nt);
        let mut written_torch: Vec<Bound<'py, PyAny>> = Vec::new();
        for g in 0..groups {
            for (t, l) in lists.iter().enumerate() {
                let o = l.get_item(g)?;
                let (v, is_torch) = self.read(t, &o).map_err(|e| prefixed(py, e, &format!("foreach group {g}: ")))?;
                if is_torch && self.tensors[t].role.is_written() {
                    written_torch.push(o);
                }
                views.push(v);
            }
            self.infer_dims(views[g * nt..].iter().map(Some))
                .map_err(|e| prefixed(py, e, &format!("foreach group {g}: ")))?;
        }
        let tensors: Vec<Tensor<'_>> =
            views.chunks(nt).flat_map(|g| g.iter().zip(&self.tensors).map(|(v, s)| tensor(v, s))).collect();
        let groups: Vec<&[Tensor<'_>]> = tensors.chunks(nt).collect();
        let on = host::on();
        let r =
            py.detach(|| catch_unwind(AssertUnwindSafe(|| self.inner.call_foreach(&groups, &params, on.threads()))));
        drop(groups);
        drop(tensors);
        drop(views);
        match r {
            Ok(Ok(())) => arrays::bump_versions(py, written_torch),
            Ok(Err(e)) => Err(errors::to_py(e, Some(self.name()))),
            Err(p) => Err(errors::panicked(p)),
        }
    }

    /// This kernel with its tensors stored as `storage` says, e.g.
    /// `k.with_storage("x=bf16,y=bf16")` or
    /// `"p=bf16:stochastic(seed),g=bf16"` (a seed param the kernel lacks is
    /// added, without a default). The new kernel takes torch.bfloat16 /
    /// torch.float16 tensors, numpy float16 or ml_dtypes.bfloat16 arrays
    /// for those tensors; this one is unchanged.
    fn with_storage(&self, py: Python<'_>, storage: &str) -> PyResult<Kernel> {
        let list = normjit::ir::parse_storage(storage).map_err(|e| {
            pyo3::exceptions::PyValueError::new_err(format!("{}: storage `{storage}`: {e}", self.name()))
        })?;
        let derived = self.inner.with_storage(&list).map_err(|e| match e {
            normjit::Error::Storage(m) => pyo3::exceptions::PyValueError::new_err(format!("{}: {m}", self.name())),
            other => errors::to_py(other, Some(self.name())),
        })?;
        let source = derived.ir().to_string();
        Kernel::wrap(py, derived, format!("{} with storage {storage}", self.origin), source)
    }

    /// The backward of this kernel, as `normjit grad` makes it:
    /// `k.grad(["x", "gamma"])` takes this kernel's `in` tensors and a
    /// cotangent `dy` per `out` tensor `y`, and returns a gradient `dx` per
    /// tensor of `wrt`. `saved` names `let` values the backward takes as
    /// inputs instead of recomputing them. `inout` tensors must be named
    /// as `state` (running statistics: entry values read, updates ignored)
    /// or `inplace` (a result updated in place: the update becomes the
    /// output `NAME_out`, with cotangent `dNAME_out`); an optimizer step,
    /// an unknown name, or a `wrt` tensor that is not `in` raises
    /// ValueError.
    #[pyo3(signature = (wrt, saved = None, state = None, inplace = None))]
    fn grad(
        &self,
        py: Python<'_>,
        wrt: Vec<String>,
        saved: Option<Vec<String>>,
        state: Option<Vec<String>>,
        inplace: Option<Vec<String>>,
    ) -> PyResult<Kernel> {
        let opts = normjit::ir::grad::GradOptions {
            saved: saved.unwrap_or_default(),
            state: state.unwrap_or_default(),
            inplace: inplace.unwrap_or_default(),
            prune_unused: false,
        };
        let names: Vec<&str> = wrt.iter().map(String::as_str).collect();
        let ir = normjit::ir::grad::grad_with(self.inner.ir(), &names, &opts)
            .map_err(|e| pyo3::exceptions::PyValueError::new_err(format!("{}: grad: {e}", self.name())))?;
        let source = ir.to_string();
        let derived = crate::host::compiler()?.kernel(ir);
        Kernel::wrap(py, derived, format!("grad of {} with respect to {}", self.origin, wrt.join(", ")), source)
    }

    /// The fused plan at the given sizes (`explain(N=64, D=1000)`): passes
    /// over memory, loops, hoisting, accumulators, thread split, traffic —
    /// what `normjit explain` prints.
    #[pyo3(signature = (**dims))]
    fn explain(&self, dims: Option<&Bound<'_, PyDict>>) -> PyResult<String> {
        let dims = self.dims_from(dims, "explain")?;
        Ok(self.plan(&dims)?.to_string())
    }

    /// The generated machine code at the given sizes (`asm(N=64,
    /// D=1000)`), one listing per function; with `clif=True` also the
    /// Cranelift IR of each — what `normjit asm` prints.
    #[pyo3(signature = (clif = false, **dims))]
    fn asm(&self, clif: bool, dims: Option<&Bound<'_, PyDict>>) -> PyResult<String> {
        use normjit::unstable::codegen::{CodegenOptions, Compiled, Isa, IsaChoice};
        use std::fmt::Write as _;
        let dims = self.dims_from(dims, "asm")?;
        let plan = self.plan(&dims)?;
        let isa = Isa::new(IsaChoice::Native).map_err(PyRuntimeError::new_err)?;
        let code = Compiled::new(&plan, &isa, &CodegenOptions { listing: true, ..Default::default() })
            .map_err(|e| PyRuntimeError::new_err(format!("{}: code generation failed: {}", self.name(), e.0)))?;
        let mut s = format!("; kernel {} for {} ({})\n", self.name(), isa.triple(), isa.flags);
        for l in code.listings() {
            let what = l.unit.describe(&plan);
            let _ = writeln!(s, "\n; ===== {what} =====");
            if clif {
                let _ = writeln!(s, "{}", l.clif);
            }
            let _ = writeln!(s, "{}", l.asm);
        }
        Ok(s)
    }

    /// The kernel's name.
    #[getter(name)]
    fn py_name(&self) -> &str {
        self.name()
    }

    /// Its calling convention (`normjit.Signature`).
    #[getter]
    fn signature(&self, py: Python<'_>) -> Py<Signature> {
        self.signature.clone_ref(py)
    }

    /// The source text it was compiled from.
    #[getter]
    fn source(&self) -> &str {
        &self.source
    }

    /// Where it came from: `library:norm/layer_norm`, a file path, or
    /// `<source>`.
    #[getter]
    fn origin(&self) -> &str {
        &self.origin
    }

    /// The kernel's IR, printed as `.nj` text (normalized: no comments).
    #[getter]
    fn ir(&self) -> String {
        self.inner.ir().to_string()
    }

    /// Code generations this kernel caused so far (shapes share code when
    /// their schedules agree).
    #[getter]
    fn compiles(&self) -> usize {
        self.inner.compiles()
    }

    fn __repr__(&self) -> String {
        let mut args: Vec<String> = self.tensors.iter().map(|t| t.name.clone()).collect();
        args.extend(self.params.iter().map(|p| match p.default {
            Some(d) => format!("{}={d:?}", p.name),
            None => p.name.clone(),
        }));
        format!("<normjit.Kernel {}({}) from {}>", self.name(), args.join(", "), self.origin)
    }
}
