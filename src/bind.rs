//! Binding a kernel's dims and params by name: what the CLI and the API
//! share. Every mistake is an error that names the dim or param and says
//! what to do; nothing here panics.

use normjit_ir::{Kernel, ParamType, TensorId};

/// A binding mistake, with a message a user can act on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BindError {
    /// `NAME=VALUE` lists that do not parse.
    #[error("cannot parse `{text}`: {why}")]
    Syntax {
        /// The offending text.
        text: String,
        /// What is wrong.
        why: String,
    },
    /// A dim, param or tensor name the kernel does not declare.
    #[error("kernel `{kernel}` has no {what} `{name}`{hint}")]
    Unknown {
        /// The kernel.
        kernel: String,
        /// "dim", "param" or "tensor".
        what: &'static str,
        /// The name given.
        name: String,
        /// The names it does have.
        hint: String,
    },
    /// The same name given twice.
    #[error("{what} `{name}` is given twice")]
    Duplicate {
        /// "dim" or "param".
        what: &'static str,
        /// The name.
        name: String,
    },
    /// A dim neither given nor inferable from an input's shape.
    #[error("dim `{0}` is not given and no input shape fixes it; pass --dims {0}=SIZE")]
    MissingDim(String),
    /// Two sources disagree about a dim's size.
    #[error("dim `{dim}` is {a} from {a_src} but {b} from {b_src}")]
    DimConflict {
        /// The dim.
        dim: String,
        /// One size.
        a: usize,
        /// Where it came from.
        a_src: String,
        /// The other size.
        b: usize,
        /// Where it came from.
        b_src: String,
    },
    /// A tensor's shape has the wrong rank for its declaration.
    #[error("tensor `{tensor}` is declared {declared} but the given array has shape {shape:?}")]
    Rank {
        /// The tensor.
        tensor: String,
        /// Its declaration, e.g. `f32[N, D]`.
        declared: String,
        /// The shape given.
        shape: Vec<usize>,
    },
    /// A param with no default that was not given.
    #[error("param `{0}` has no default; pass --param {0}=VALUE")]
    MissingParam(String),
    /// A param value that is invalid for its type.
    #[error("param `{name}` = {value}: {why}")]
    BadParam {
        /// The param.
        name: String,
        /// The value given.
        value: String,
        /// What is wrong.
        why: String,
    },
}

/// Parses `A=1,B=2` into pairs (empty text gives none).
pub fn parse_pairs(text: &str) -> Result<Vec<(String, String)>, BindError> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((k, v)) = part.split_once('=') else {
            return Err(BindError::Syntax { text: part.to_string(), why: "expected NAME=VALUE".into() });
        };
        let (k, v) = (k.trim(), v.trim());
        if k.is_empty() || v.is_empty() {
            return Err(BindError::Syntax { text: part.to_string(), why: "expected NAME=VALUE".into() });
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

fn names<'a>(it: impl Iterator<Item = &'a str>) -> String {
    let v: Vec<&str> = it.collect();
    if v.is_empty() {
        " (it has none)".to_string()
    } else {
        format!(" (it has: {})", v.join(", "))
    }
}

/// Sizes of every dim, by dim index: from `given` (`NAME=SIZE`) and from the
/// shapes of tensors supplied as arrays, which must agree.
pub fn resolve_dims(
    k: &Kernel,
    given: &[(String, String)],
    shapes: &[(TensorId, Vec<usize>)],
) -> Result<Vec<usize>, BindError> {
    let mut size: Vec<Option<(usize, String)>> = vec![None; k.dims.len()];
    for (name, value) in given {
        let d = k.dim(name).ok_or_else(|| BindError::Unknown {
            kernel: k.name.clone(),
            what: "dim",
            name: name.clone(),
            hint: names(k.dims.iter().map(|(_, d)| d.name.as_str())),
        })?;
        if size[d.index()].is_some() {
            return Err(BindError::Duplicate { what: "dim", name: name.clone() });
        }
        let v: usize = value.parse().map_err(|_| BindError::Syntax {
            text: format!("{name}={value}"),
            why: "a dim size is a non-negative whole number".into(),
        })?;
        size[d.index()] = Some((v, "--dims".into()));
    }
    for (t, shape) in shapes {
        let tensor = &k.tensors[*t];
        if shape.len() != tensor.dims.len() {
            let dims: Vec<&str> = tensor.dims.iter().map(|d| k.dims[*d].name.as_str()).collect();
            return Err(BindError::Rank {
                tensor: tensor.name.clone(),
                declared: format!("{}[{}]", tensor.dtype.name(), dims.join(", ")),
                shape: shape.clone(),
            });
        }
        for (d, &n) in tensor.dims.iter().zip(shape) {
            let src = format!("the shape of `{}`", tensor.name);
            match &size[d.index()] {
                Some((m, from)) if *m != n => {
                    return Err(BindError::DimConflict {
                        dim: k.dims[*d].name.clone(),
                        a: *m,
                        a_src: from.clone(),
                        b: n,
                        b_src: src,
                    })
                }
                Some(_) => {}
                None => size[d.index()] = Some((n, src)),
            }
        }
    }
    k.dims
        .iter()
        .map(|(d, dim)| size[d.index()].as_ref().map(|s| s.0).ok_or_else(|| BindError::MissingDim(dim.name.clone())))
        .collect()
}

/// Value of every param, by param index: `given` (`NAME=VALUE`) over the
/// defaults. f32 params must be finite; u32 params whole numbers in range.
pub fn resolve_params(k: &Kernel, given: &[(String, String)]) -> Result<Vec<f64>, BindError> {
    let mut vals: Vec<Option<f64>> = k.params.iter().map(|(_, p)| p.default).collect();
    let mut seen = vec![false; k.params.len()];
    for (name, text) in given {
        let p = k.param(name).ok_or_else(|| BindError::Unknown {
            kernel: k.name.clone(),
            what: "param",
            name: name.clone(),
            hint: names(k.params.iter().map(|(_, p)| p.name.as_str())),
        })?;
        if std::mem::replace(&mut seen[p.index()], true) {
            return Err(BindError::Duplicate { what: "param", name: name.clone() });
        }
        let bad = |why: &str| BindError::BadParam { name: name.clone(), value: text.clone(), why: why.to_string() };
        let v: f64 = text.parse().map_err(|_| bad("not a number"))?;
        vals[p.index()] = Some(check_param(k.params[p].ty, v).map_err(|w| bad(&w))?);
    }
    k.params
        .iter()
        .map(|(p, param)| vals[p.index()].ok_or_else(|| BindError::MissingParam(param.name.clone())))
        .collect()
}

/// Checks a param value against its type.
pub fn check_param(ty: ParamType, v: f64) -> Result<f64, String> {
    match ty {
        ParamType::F32 if !v.is_finite() => Err("must be finite".into()),
        ParamType::F32 if v.abs() > f32::MAX as f64 => Err("out of range for f32".into()),
        ParamType::U32 if !(v >= 0.0 && v <= u32::MAX as f64 && v.fract() == 0.0) => {
            Err("must be a whole number in 0..=4294967295".into())
        }
        _ => Ok(v),
    }
}

/// Example values for params without defaults, for runs that must work
/// without user input (bench, tests): typical magnitudes of each name.
pub fn example_params(k: &Kernel) -> Vec<(String, String)> {
    k.params
        .iter()
        .filter(|(_, p)| p.default.is_none())
        .map(|(_, p)| {
            let v = match p.name.as_str() {
                "lr" => "0.01",
                "t" => "10",
                "lam" | "l1" => "0.001",
                "l2" => "0.01",
                "max_norm" => "1.0",
                _ if p.ty == ParamType::U32 => "42",
                _ => "0.5",
            };
            (p.name.clone(), v.to_string())
        })
        .collect()
}
