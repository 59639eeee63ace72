//! [`Signature`]: how a kernel is called — its tensors in order with role,
//! dtype and dims, its params with defaults, its dims.

use normjit_ir::{DType, Kernel, ParamType, Role};

/// One tensor of a kernel's signature.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorSig {
    /// Its name.
    pub name: String,
    /// `in`, `out` or `inout`.
    pub role: Role,
    /// Its storage type.
    pub dtype: DType,
    /// Its dims, outermost first, as indices into [`Signature::dims`].
    pub dims: Vec<usize>,
}

/// One param of a kernel's signature.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamSig {
    /// Its name.
    pub name: String,
    /// f32 (any finite value) or u32 (a seed).
    pub ty: ParamType,
    /// Its default, if it has one.
    pub default: Option<f64>,
}

/// The calling convention of a kernel: positional calls pass tensors in
/// the order of [`Signature::tensors`] and params in the order of
/// [`Signature::params`].
#[derive(Clone, Debug, PartialEq)]
pub struct Signature {
    /// The kernel's name.
    pub name: String,
    /// Dim names, by index.
    pub dims: Vec<String>,
    /// Tensors, in declaration order.
    pub tensors: Vec<TensorSig>,
    /// Params, in declaration order.
    pub params: Vec<ParamSig>,
}

impl Signature {
    /// The signature of `k`.
    pub fn of(k: &Kernel) -> Signature {
        Signature {
            name: k.name.clone(),
            dims: k.dims.iter().map(|(_, d)| d.name.clone()).collect(),
            tensors: k
                .tensors
                .iter()
                .map(|(_, t)| TensorSig {
                    name: t.name.clone(),
                    role: t.role,
                    dtype: t.dtype,
                    dims: t.dims.iter().map(|d| d.index()).collect(),
                })
                .collect(),
            params: k
                .params
                .iter()
                .map(|(_, p)| ParamSig { name: p.name.clone(), ty: p.ty, default: p.default })
                .collect(),
        }
    }

    /// Position of the tensor named `name`.
    pub fn tensor(&self, name: &str) -> Option<usize> {
        self.tensors.iter().position(|t| t.name == name)
    }

    /// Position of the param named `name`.
    pub fn param(&self, name: &str) -> Option<usize> {
        self.params.iter().position(|p| p.name == name)
    }

    /// Every param's default (NaN where there is none: a call must then
    /// give it).
    pub fn defaults(&self) -> Vec<f64> {
        self.params.iter().map(|p| p.default.unwrap_or(f64::NAN)).collect()
    }

    /// `f32[N, D]`: how tensor `t` is declared.
    pub fn declared(&self, t: usize) -> String {
        let ts = &self.tensors[t];
        let dims: Vec<&str> = ts.dims.iter().map(|&d| self.dims[d].as_str()).collect();
        format!("{}[{}]", ts.dtype.name(), dims.join(", "))
    }
}
