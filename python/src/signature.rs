//! `normjit.Signature`, `normjit.TensorSig`, `normjit.ParamSig`: a
//! kernel's calling convention as read-only Python objects (names, roles,
//! dtypes, dims, param defaults), built once per kernel.

use normjit::ParamType;
use pyo3::prelude::*;

/// One tensor of a kernel: `name`, `role` (`"in"`, `"out"`, `"inout"`),
/// `dtype` (`"f32"`), `dims` (dim names, outermost first).
#[pyclass(frozen, module = "normjit", get_all)]
pub struct TensorSig {
    pub name: String,
    pub role: &'static str,
    pub dtype: &'static str,
    pub dims: Vec<String>,
}

#[pymethods]
impl TensorSig {
    fn __repr__(&self) -> String {
        format!("{} {}: {}[{}]", self.role, self.name, self.dtype, self.dims.join(", "))
    }
}

/// One param of a kernel: `name`, `dtype` (`"f32"`, or `"u32"` for a
/// seed), `default` (a float, or None when a call must give it).
#[pyclass(frozen, module = "normjit", get_all)]
pub struct ParamSig {
    pub name: String,
    pub dtype: &'static str,
    pub default: Option<f64>,
}

#[pymethods]
impl ParamSig {
    fn __repr__(&self) -> String {
        match self.default {
            Some(d) => format!("param {}: {} = {d:?}", self.name, self.dtype),
            None => format!("param {}: {}", self.name, self.dtype),
        }
    }
}

/// How a kernel is called: `name`, `dims`, `tensors` and `params` in
/// declaration order.
#[pyclass(frozen, module = "normjit", get_all)]
pub struct Signature {
    pub name: String,
    pub dims: Vec<String>,
    pub tensors: Vec<Py<TensorSig>>,
    pub params: Vec<Py<ParamSig>>,
}

#[pymethods]
impl Signature {
    fn __repr__(&self) -> String {
        let mut s = format!("kernel {}(dims {}", self.name, self.dims.join(", "));
        for t in &self.tensors {
            s.push_str("; ");
            s.push_str(&t.get().__repr__());
        }
        for p in &self.params {
            s.push_str("; ");
            s.push_str(&p.get().__repr__());
        }
        s.push(')');
        s
    }

    /// Names of the tensors the kernel writes (`out` and `inout`).
    #[getter]
    fn outputs(&self) -> Vec<String> {
        self.tensors.iter().map(|t| t.get()).filter(|t| t.role != "in").map(|t| t.name.clone()).collect()
    }
}

impl Signature {
    /// The Python signature of `sig`.
    pub fn new(py: Python<'_>, sig: &normjit::Signature) -> PyResult<Signature> {
        let tensors = sig
            .tensors
            .iter()
            .map(|t| {
                Py::new(
                    py,
                    TensorSig {
                        name: t.name.clone(),
                        role: t.role.keyword(),
                        dtype: t.dtype.name(),
                        dims: t.dims.iter().map(|&d| sig.dims[d].clone()).collect(),
                    },
                )
            })
            .collect::<PyResult<_>>()?;
        let params = sig
            .params
            .iter()
            .map(|p| {
                let dtype = match p.ty {
                    ParamType::F32 => "f32",
                    ParamType::U32 => "u32",
                };
                Py::new(py, ParamSig { name: p.name.clone(), dtype, default: p.default })
            })
            .collect::<PyResult<_>>()?;
        Ok(Signature { name: sig.name.clone(), dims: sig.dims.clone(), tensors, params })
    }
}
