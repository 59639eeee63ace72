//! Python exceptions for normjit's errors: `normjit.CompileError` (bad
//! source, a `ValueError` carrying the rendered diagnostics),
//! `normjit.UnsupportedError` (a kernel the compiler cannot lower, raised
//! at its first call), and the mapping of every `normjit::Error` kind to
//! `TypeError` (wrong kind of argument: names, roles, dtypes) or
//! `ValueError` (wrong value: shapes, sizes, aliasing, params). Panics are
//! caught at the call and become `RuntimeError`, never a Rust unwind into
//! Python.

use pyo3::create_exception;
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::PyErr;

create_exception!(
    normjit,
    CompileError,
    PyValueError,
    "Kernel source that does not parse or verify. The message is the rendered diagnostics \
     (`file:line:col: error: ...`, the source line, a caret, notes and help)."
);

create_exception!(
    normjit,
    UnsupportedError,
    PyValueError,
    "A kernel that parses but that normjit cannot compile at the sizes of a call (raised by the call, \
     before anything is written)."
);

/// The Python exception for `e`; `kernel` prefixes messages about a call.
pub fn to_py(e: normjit::Error, kernel: Option<&str>) -> PyErr {
    use normjit::ErrorKind as K;
    let msg = match kernel {
        Some(k) if e.kind() != K::Source => format!("{k}: {e}"),
        _ => e.to_string(),
    };
    #[allow(unreachable_patterns)]
    match e.kind() {
        K::Source => CompileError::new_err(msg),
        K::Io => PyOSError::new_err(msg),
        K::UnknownName | K::Binding | K::Arity | K::DType => PyTypeError::new_err(msg),
        K::Buffer | K::Shape | K::Alias | K::Param | K::Overflow => PyValueError::new_err(msg),
        K::Unsupported => UnsupportedError::new_err(msg),
        K::Config | K::Internal => PyRuntimeError::new_err(msg),
        _ => PyRuntimeError::new_err(msg),
    }
}

/// The `RuntimeError` for a panic caught at the boundary.
pub fn panicked(payload: Box<dyn std::any::Any + Send>) -> PyErr {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into());
    PyRuntimeError::new_err(format!("internal error (a normjit bug): {what}"))
}
