//! Storage overrides: a caller's choice, per compilation, of how a
//! kernel's tensors are stored, so one `.nj` file serves f32, bf16 and f16
//! callers. The spec syntax (`x=bf16,y=bf16,p=bf16:stochastic(seed)`) is
//! shared by the CLI's `--dtype`, the C ABI and the Python package.

use crate::dtype::{DType, Rounding};
use crate::kernel::{Kernel, Param, ParamType};

/// How one tensor is to be stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Storage {
    /// The tensor's name.
    pub tensor: String,
    /// Its storage type.
    pub dtype: DType,
    /// With stochastic rounding (bf16 only), the name of its `u32` seed
    /// param; added to the kernel, with no default, if it has none by that
    /// name.
    pub stochastic: Option<String>,
}

/// Parses `NAME=DTYPE[:stochastic(SEED)]` entries separated by commas.
pub fn parse_storage(spec: &str) -> Result<Vec<Storage>, String> {
    let mut out = Vec::new();
    for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let Some((name, rest)) = entry.split_once('=') else {
            return Err(format!("`{entry}`: expected TENSOR=DTYPE, as in `x=bf16`"));
        };
        let (dt, rounding) = match rest.split_once(':') {
            Some((d, r)) => (d.trim(), Some(r.trim())),
            None => (rest.trim(), None),
        };
        let dtype = dtype_named(dt).map_err(|e| format!("`{entry}`: {e}"))?;
        let stochastic = match rounding {
            None => None,
            Some(r) => {
                let seed = r
                    .strip_prefix("stochastic(")
                    .and_then(|s| s.strip_suffix(')'))
                    .map(str::trim)
                    .filter(|s| is_ident(s))
                    .ok_or_else(|| format!("`{entry}`: expected `:stochastic(SEED)` after the dtype"))?;
                Some(seed.to_string())
            }
        };
        out.push(Storage { tensor: name.trim().to_string(), dtype, stochastic });
    }
    Ok(out)
}

/// The storage type called `name`, or an error listing the ones there are.
pub fn dtype_named(name: &str) -> Result<DType, String> {
    DType::from_name(name).ok_or_else(|| match name {
        "u32" => "`u32` is a param type, not a tensor storage type; expected f32, bf16 or f16".to_string(),
        "f64" => "`f64` storage is not supported; expected f32, bf16 or f16".to_string(),
        _ => format!("unknown dtype `{name}`; expected f32, bf16 or f16"),
    })
}

fn is_ident(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') && c.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Kernel {
    /// This kernel with `overrides` applied: each named tensor stored as
    /// given. Refuses (naming the problem) an unknown tensor, a name that is
    /// a param or a dim, a tensor named twice, stochastic rounding of a
    /// non-bf16 or `in` tensor, and a seed name that is an `f32` param.
    pub fn with_storage(&self, overrides: &[Storage]) -> Result<Kernel, String> {
        let mut k = self.clone();
        let mut seen: Vec<&str> = Vec::new();
        for o in overrides {
            if seen.contains(&o.tensor.as_str()) {
                return Err(format!("tensor `{}` is given a dtype twice", o.tensor));
            }
            seen.push(&o.tensor);
            let Some(t) = k.tensor(&o.tensor) else {
                if k.param(&o.tensor).is_some() {
                    return Err(format!(
                        "`{}` is a param: params are f64 scalars at the call and take no storage dtype",
                        o.tensor
                    ));
                }
                let names: Vec<&str> = k.tensors.iter().map(|(_, t)| t.name.as_str()).collect();
                return Err(format!(
                    "kernel `{}` has no tensor `{}` (its tensors: {})",
                    k.name,
                    o.tensor,
                    names.join(", ")
                ));
            };
            let Some(tensor) = k.tensors.get_mut(t) else { unreachable!("id from this kernel") };
            tensor.dtype = o.dtype;
            tensor.rounding = Rounding::NearestEven;
            let Some(seed) = &o.stochastic else { continue };
            if o.dtype != DType::BF16 {
                return Err(format!(
                    "`{}`: stochastic rounding is for bf16 storage, not {} (f32 and f16 stores round to nearest even)",
                    o.tensor,
                    o.dtype.name()
                ));
            }
            if !tensor.role.is_written() {
                return Err(format!("`{}` is an `in` tensor: it is never stored, so it has no rounding", o.tensor));
            }
            let p = match k.param(seed) {
                Some(p) if k.params[p].ty == ParamType::U32 => p,
                Some(_) => return Err(format!("the seed of `stochastic` must be a u32 param, and `{seed}` is f32")),
                None if k.tensor(seed).is_some() || k.dims.iter().any(|(_, d)| &d.name == seed) => {
                    return Err(format!("the seed `{seed}` names a tensor or dim of `{}`, not a param", k.name));
                }
                None => {
                    let p = k.params.push(Param { name: seed.clone(), ty: ParamType::U32, default: None });
                    k.spans.params.push(crate::Span::default());
                    p
                }
            };
            if let Some(tensor) = k.tensors.get_mut(t) {
                tensor.rounding = Rounding::Stochastic(p);
            }
        }
        crate::verify(&k).map_err(|e| format!("internal error: an override broke the kernel: {e}"))?;
        Ok(k)
    }
}
