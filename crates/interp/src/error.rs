//! The interpreter's one error enum.

/// Why [`run`](crate::run) refused a call. Every variant but
/// [`Error::InvalidKernel`] is a mistake in the call's arguments, and its
/// message says what was expected.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Error {
    /// `dims` does not have one size per declared dim.
    #[error("kernel `{kernel}` declares {expected} dims ({names}) but {found} sizes were given")]
    DimCount {
        /// The kernel's name.
        kernel: String,
        /// Declared dims.
        expected: usize,
        /// Sizes given.
        found: usize,
        /// The dim names, in declaration order.
        names: String,
    },
    /// `params` does not have one value per declared param.
    #[error(
        "kernel `{kernel}` declares {expected} params ({names}) but {found} values were given; \
         pass one per param in declaration order, with defaults already applied"
    )]
    ParamCount {
        /// The kernel's name.
        kernel: String,
        /// Declared params.
        expected: usize,
        /// Values given.
        found: usize,
        /// The param names, in declaration order.
        names: String,
    },
    /// `tensors` does not have one slice per declared tensor.
    #[error(
        "kernel `{kernel}` declares {expected} tensors ({names}) but {found} were given; \
         pass one slice per tensor in declaration order (an empty one for `out` tensors)"
    )]
    TensorCount {
        /// The kernel's name.
        kernel: String,
        /// Declared tensors.
        expected: usize,
        /// Slices given.
        found: usize,
        /// The tensor names, in declaration order.
        names: String,
    },
    /// An `in`/`inout` slice's length is not the product of its tensor's dims.
    #[error("tensor `{tensor}` has {found} elements, but its shape [{shape}] needs {expected}")]
    TensorLength {
        /// The tensor's name.
        tensor: String,
        /// Its dims with their bound sizes, e.g. `N=2, D=3`.
        shape: String,
        /// The product of those sizes.
        expected: usize,
        /// The slice's length.
        found: usize,
    },
    /// The element count of a tensor or an intermediate value overflows `usize`.
    #[error("{what} has more than usize::MAX elements: the sizes of its dims ({dims}) multiply past it")]
    SizeOverflow {
        /// What needed that many elements, e.g. "tensor `x`" or "value `xc`".
        what: String,
        /// Its dims with their bound sizes.
        dims: String,
    },
    /// A `u32` param (a `uniform` seed) got a value that is not a `u32`.
    #[error("param `{param}` is a u32 seed, but {value} is not a whole number in 0..=4294967295")]
    BadSeed {
        /// The param's name.
        param: String,
        /// The value given.
        value: f64,
    },
    /// Memory for a tensor or an intermediate value could not be allocated.
    #[error("cannot allocate {elements} elements for {what}")]
    Alloc {
        /// What needed the memory.
        what: String,
        /// How many elements.
        elements: usize,
    },
    /// The kernel breaks an IR invariant. Kernels from
    /// [`normjit_ir::parse`] or [`normjit_ir::KernelBuilder`] never do; this
    /// is a bug in whatever built or edited it.
    #[error("kernel fails IR verification (a bug in whatever built it): {0}")]
    InvalidKernel(String),
}

/// Result with the interpreter's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
