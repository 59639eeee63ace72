//! [`Error`]: every way compiling or calling a kernel can fail, with a
//! message that names the tensor, dim or param at fault. When a call
//! returns an error, nothing was written.

/// The kind of an [`Error`], as a stable code (the C ABI returns these).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum ErrorKind {
    /// Kernel source that does not parse or verify.
    Source = 1,
    /// A file that cannot be read.
    Io = 2,
    /// A tensor, param or dim name the kernel does not have.
    UnknownName = 3,
    /// A tensor missing, given twice, or given the wrong way (input vs output).
    Binding = 4,
    /// A wrong number of tensors or params in a positional call.
    Arity = 5,
    /// A null pointer, or a buffer shorter or longer than its shape.
    Buffer = 6,
    /// A wrong rank, a shape that contradicts another, or dims that cannot be inferred.
    Shape = 7,
    /// A tensor of the wrong element type.
    DType = 8,
    /// An output that overlaps another binding.
    Alias = 9,
    /// A param that is missing or not a valid value (NaN, out of range).
    Param = 10,
    /// Sizes whose product overflows.
    Overflow = 11,
    /// A host or setting normjit cannot use: an unsupported ISA, a thread pool that failed.
    Config = 12,
    /// A kernel shape the compiler does not support.
    Unsupported = 13,
    /// A broken invariant: a bug in normjit.
    Internal = 14,
}

/// Why a kernel could not be compiled or run. Each names what is wrong;
/// when one is returned from a call, nothing was written.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// Source text that does not parse or verify: the rendered diagnostics
    /// (`file:line:col: error: ...`, the source line and a caret).
    #[error("{0}")]
    Source(String),
    /// A file that could not be read.
    #[error("{path}: cannot read: {why}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        why: String,
    },
    /// A name the kernel does not declare.
    #[error("kernel `{kernel}` has no {what} `{name}` ({known})")]
    Unknown {
        /// The kernel.
        kernel: String,
        /// "tensor", "param" or "dim".
        what: &'static str,
        /// The name given.
        name: String,
        /// The names it does have.
        known: String,
    },
    /// A tensor, dim or param given twice.
    #[error("{what} `{name}` is given twice")]
    Duplicate {
        /// "tensor", "dim" or "param".
        what: &'static str,
        /// The name.
        name: String,
    },
    /// A tensor bound the wrong way: `in` tensors as inputs, `out` and
    /// `inout` ones (updated in place) as writable outputs.
    #[error("tensor `{name}` is `{role}`: {want}")]
    WrongRole {
        /// The tensor.
        name: String,
        /// Its role.
        role: &'static str,
        /// How to bind it.
        want: &'static str,
    },
    /// A tensor left unbound.
    #[error("tensor `{0}` is not bound")]
    Unbound(String),
    /// A positional call with the wrong number of tensors or params.
    #[error("kernel `{kernel}` takes {expected} {what}, {found} given")]
    Arity {
        /// The kernel.
        kernel: String,
        /// "tensors" or "params".
        what: &'static str,
        /// How many it takes.
        expected: usize,
        /// How many were given.
        found: usize,
    },
    /// A null data pointer for a tensor with elements.
    #[error("tensor `{0}` has a null data pointer")]
    Null(String),
    /// A tensor of the wrong element type.
    #[error("tensor `{tensor}` is declared {expected} but a {found} buffer was given{}", storage_hint(tensor, found))]
    DType {
        /// The tensor.
        tensor: String,
        /// Its declared dtype.
        expected: &'static str,
        /// The dtype given.
        found: String,
    },
    /// A storage override ([`crate::Storage`]) the kernel refuses: an
    /// unknown tensor, a param given a dtype, stochastic rounding of a
    /// tensor that cannot have it.
    #[error("{0}")]
    Storage(String),
    /// A tensor given with the wrong rank.
    #[error("tensor `{tensor}` is declared {declared} but the given array has shape {shape:?}")]
    Rank {
        /// The tensor.
        tensor: String,
        /// Its declaration, e.g. `f32[N, D]`.
        declared: String,
        /// The shape given.
        shape: Vec<usize>,
    },
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
    /// Dims that no binding determines.
    #[error("dims {0} cannot be inferred from the tensors given; give their sizes")]
    UninferredDims(String),
    /// A dim neither given nor inferable from an input's shape (CLI wording).
    #[error("dim `{0}` is not given and no input shape fixes it; pass --dims {0}=SIZE")]
    MissingDim(String),
    /// A tensor's length that fits no sizes.
    #[error("tensor `{tensor}` has {found} elements, expected {expected} ({shape})")]
    Length {
        /// The tensor.
        tensor: String,
        /// Its length at the inferred sizes.
        expected: usize,
        /// The length given.
        found: usize,
        /// Its dims and their sizes.
        shape: String,
    },
    /// A tensor's length that is no multiple of its other dims' sizes.
    #[error("tensor `{tensor}` has {found} elements, which is not a multiple of {known} (the product of its other dims' sizes)")]
    NotMultiple {
        /// The tensor.
        tensor: String,
        /// The length given.
        found: usize,
        /// The product of the known sizes.
        known: usize,
    },
    /// Sizes whose product overflows.
    #[error("the size of {0} overflows")]
    Overflow(String),
    /// An output that overlaps another binding.
    #[error("output `{a}` overlaps `{b}` in memory; outputs must not alias any other binding")]
    Alias {
        /// The output.
        a: String,
        /// The other binding.
        b: String,
    },
    /// A param without default left unbound.
    #[error("param `{0}` has no default and is not given")]
    MissingParam(String),
    /// A param value the kernel cannot use.
    #[error("param `{name}` = {value}: {why}")]
    BadParam {
        /// The param.
        name: String,
        /// The value.
        value: f64,
        /// Why.
        why: String,
    },
    /// A random-number domain too large for the generated code.
    #[error("`uniform` over {axes} has {elements} elements; at most 2^32 are supported")]
    RandomDomain {
        /// The axes.
        axes: String,
        /// Their element count.
        elements: u128,
    },
    /// A host or setting normjit cannot use.
    #[error("{0}")]
    Config(String),
    /// A kernel shape the compiler does not handle (the message says why).
    #[error("{0}")]
    Unsupported(String),
    /// A broken invariant: a bug in normjit.
    #[error("internal error (a normjit bug): {0}")]
    Internal(String),
}

impl Error {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Source(_) => ErrorKind::Source,
            Error::Io { .. } => ErrorKind::Io,
            Error::Unknown { .. } => ErrorKind::UnknownName,
            Error::Duplicate { .. } | Error::WrongRole { .. } | Error::Unbound(_) => ErrorKind::Binding,
            Error::Arity { .. } => ErrorKind::Arity,
            Error::Null(_) | Error::Length { .. } | Error::NotMultiple { .. } => ErrorKind::Buffer,
            Error::Rank { .. } | Error::DimConflict { .. } | Error::UninferredDims(_) | Error::MissingDim(_) => {
                ErrorKind::Shape
            }
            Error::DType { .. } | Error::Storage(_) => ErrorKind::DType,
            Error::Alias { .. } => ErrorKind::Alias,
            Error::MissingParam(_) | Error::BadParam { .. } => ErrorKind::Param,
            Error::Overflow(_) | Error::RandomDomain { .. } => ErrorKind::Overflow,
            Error::Config(_) => ErrorKind::Config,
            Error::Unsupported(_) => ErrorKind::Unsupported,
            Error::Internal(_) => ErrorKind::Internal,
        }
    }
}

impl From<normjit_lower::LowerError> for Error {
    fn from(e: normjit_lower::LowerError) -> Self {
        use normjit_lower::LowerError as L;
        match e {
            L::Dims(s) => Error::Overflow(s),
            L::Unsupported(s) => Error::Unsupported(s),
            L::Internal(s) => Error::Internal(s),
            // A schedule override that does not fit the kernel.
            L::Schedule(s) => Error::Config(format!("illegal schedule: {s}")),
        }
    }
}

/// For a buffer of another storage type: how to compile the kernel for it.
fn storage_hint(tensor: &str, found: &str) -> String {
    match normjit_ir::DType::from_name(found) {
        Some(_) => {
            format!(" (to store it as {found}, compile the kernel with the storage override `{tensor}={found}`)")
        }
        None => String::new(),
    }
}
