//! Binding `NAME=VALUE` text (the CLI's `--dims` and `--param` lists) to a
//! kernel's dims and params. Only the text is parsed here; the binding
//! itself — names, conflicts with input shapes, param checks — is the
//! library's one binder ([`normjit::resolve_dims`],
//! [`normjit::resolve_params`]).

use normjit::ir::{Kernel, ParamType, TensorId};

/// A binding mistake: text that does not parse, or what the binder found.
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
    /// A param value that is not a number.
    #[error("param `{name}` = {text}: not a number")]
    NotANumber {
        /// The param.
        name: String,
        /// The text given.
        text: String,
    },
    /// A param with no default that was not given.
    #[error("param `{0}` has no default; pass --param {0}=VALUE")]
    MissingParam(String),
    /// What the binder refused.
    #[error("{0}")]
    Bind(#[from] normjit::Error),
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

/// Sizes of every dim, by dim index: from `given` (`NAME=SIZE`) and from the
/// shapes of tensors supplied as arrays, which must agree.
pub fn resolve_dims(
    k: &Kernel,
    given: &[(String, String)],
    shapes: &[(TensorId, Vec<usize>)],
) -> Result<Vec<usize>, BindError> {
    let mut sizes = Vec::new();
    for (name, value) in given {
        let v: usize = value.parse().map_err(|_| BindError::Syntax {
            text: format!("{name}={value}"),
            why: "a dim size is a non-negative whole number".into(),
        })?;
        sizes.push((name.as_str(), v));
    }
    let shapes: Vec<(usize, &[usize])> = shapes.iter().map(|(t, s)| (t.index(), &s[..])).collect();
    Ok(normjit::resolve_dims(k, &sizes, &shapes)?)
}

/// Value of every param, by param index: `given` (`NAME=VALUE`) over the
/// defaults. f32 params must be finite; u32 params whole numbers in range.
pub fn resolve_params(k: &Kernel, given: &[(String, String)]) -> Result<Vec<f64>, BindError> {
    let mut vals = Vec::new();
    for (name, text) in given {
        let v: f64 = text.parse().map_err(|_| BindError::NotANumber { name: name.clone(), text: text.clone() })?;
        vals.push((name.as_str(), v));
    }
    normjit::resolve_params(k, &vals).map_err(|e| match e {
        normjit::Error::MissingParam(p) => BindError::MissingParam(p),
        e => BindError::Bind(e),
    })
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
