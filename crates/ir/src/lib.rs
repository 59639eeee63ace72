//! `normjit-ir`: the kernel IR — data model, text format, builder and verifier.
//!
//! This crate owns what a normjit kernel *is*. It depends on nothing of
//! normjit's; the interpreter, the lowering and the code generator all read
//! the [`Kernel`] it produces, and must never need anything else.
//!
//! # The text format (`.nj`)
//!
//! One kernel per file. `#` starts a comment to the end of the line.
//! Statements end at a newline or `;`; newlines inside `()` and `[]` are
//! ignored, so long expressions may wrap inside parentheses.
//!
//! ```text
//! # LayerNorm (9.3.1): y = (x - mean) / sqrt(var + eps) * gamma + beta
//! kernel layer_norm {
//!   dims N, D
//!   in  x: f32[N, D]
//!   in  gamma: f32[D]
//!   in  beta: f32[D]
//!   out y: f32[N, D]
//!   param eps = 1e-5
//!
//!   mu  = mean(x, D)                 # axes {N}
//!   xc  = x - mu                     # axes {N, D}
//!   var = mean(xc * xc, D)           # axes {N}
//!   y   = xc * rsqrt(var + eps) * gamma + beta
//! }
//! ```
//!
//! Declarations (any order, but before use):
//! - `dims A, B, ...`: named sizes, bound at call time (at most 64).
//! - `in|out|inout NAME: DTYPE[DIM, ...] [stochastic(SEED)]`: a tensor,
//!   row-major, last dim contiguous; `f32[]` is a 0-dim (scalar) tensor. A
//!   dim appears at most once per tensor. DTYPE is the storage type, `f32`,
//!   `bf16` or `f16` ([`DType`]): arithmetic is f32 whatever it is, loads
//!   widen exactly and stores round to nearest even. `stochastic(SEED)`, on
//!   a written `bf16` tensor with SEED a `u32` param, makes its store round
//!   stochastically instead ([`Rounding`]). A caller can override the
//!   storage of a kernel's tensors per compilation
//!   ([`Kernel::with_storage`]).
//! - `param NAME [: f32|u32] [= LITERAL], ...`: runtime scalars, `f32` unless
//!   typed; a `u32` param is only usable as the seed of `uniform`.
//!
//! Statements:
//! - `NAME = EXPR` with a fresh NAME binds a value (SSA: no rebinding,
//!   except inside `repeat`).
//! - `T = EXPR` with T an `out` or `inout` tensor stores its final value;
//!   each is stored exactly once; EXPR's axes must be a subset of T's dims
//!   (missing ones broadcast). Reading an `inout` anywhere yields its value
//!   at entry, even after the statement that stores it (a warning says so:
//!   bind the new value to a name, store that, and read the name); an `out`
//!   cannot be read.
//! - `repeat K { STATEMENTS }`, K an integer literal from 1 to 64: the
//!   statements run K times, unrolled by the front end into SSA. In the
//!   body, an assignment to a value name rebinds it: a name bound before
//!   the loop and assigned in the body is carried (iteration `i` reads the
//!   value of iteration `i - 1`, the first reads the one from before the
//!   loop), and after the loop every name assigned in the body refers to
//!   its value from the last iteration. A name first bound in the body must
//!   be bound before it is read in each iteration. The body holds only
//!   `NAME = EXPR` statements: no declarations, no stores to `out`/`inout`
//!   tensors (those are stored exactly once; store the carried name after
//!   the loop), and no nested `repeat`. Diagnostics point into the body as
//!   written; one first seen in a later iteration names the iteration and
//!   the carried values whose axes changed.
//!
//! Power iteration, three steps (compare `ir/reg/spectral_norm.nj`, one step):
//!
//! ```text
//! kernel power_iteration {
//!   dims M, K
//!   in    w: f32[M, K]
//!   inout u: f32[M]
//!   out   sigma: f32[]
//!
//!   un = u                              # carried: bound before the loop
//!   repeat 3 {
//!     v  = sum(w * un, M)               # W^T u, axes {K}
//!     v  = v / sqrt(sum(v * v, K))      # rebinding inside the body is fine
//!     wv = sum(w * v, K)                # W v, axes {M}
//!     un = wv / sqrt(sum(wv * wv, M))
//!   }
//!   u = un                              # the last iteration's value
//!   sigma = sum(un * wv, M)             # body names stay visible after the loop
//! }
//! ```
//!
//! A kernel holds the unrolled statements, so printing it (`Display`)
//! shows the expanded SSA: each assignment in the body becomes a binding
//! with a generated name (`v_1`, `v_2`, ..., `un_3`, avoiding every name
//! in the source), and the printed text parses back to the same kernel.
//!
//! Expressions, loosest binding first: comparisons `< <= > >= == !=` (not
//! chainable); `+ -`; `* /`; unary `-`; `^` (power, right-associative, so
//! `-x^2 = -(x^2)` and `2^-1` is allowed); then literals (Rust syntax:
//! `1e-5`, `0.999`, `3`), names and calls:
//! - `sqrt rsqrt abs sign exp log neg recip tanh sigmoid erf` (one
//!   argument). Generated code computes `exp log tanh sigmoid erf` with
//!   inline vector polynomials whose error bounds, measured over every f32,
//!   are stated in `normjit_lower::vmath` (at most 1 ulp for `exp` and
//!   `log`, 2 for `tanh`, 3 for `sigmoid` and `erf`); `x ^ n` with a literal
//!   integer `2 <= |n| <= 4` becomes multiplications;
//! - `pow(a, b)`, `min(a, b)`, `max(a, b)` (elementwise, NaN-propagating);
//! - `select(cond, a, b)` with `cond` a comparison;
//! - `sum|mean|max|min(EXPR, AXIS, ...)`: reduction over the named dims;
//!   `max`/`min` are reductions when every argument after the first is a dim;
//! - `var(EXPR, AXIS, ...)`: the biased variance over the dims (the one the
//!   norms use: `torch.var(x, AXES, unbiased=False)`, `correction=0`; note
//!   that `torch.var` itself defaults to the unbiased estimate). The front end
//!   expands it to the two-pass form `mean((x - m) * (x - m), AXES)` with
//!   `m = mean(x, AXES)` computed once. Two passes are deliberate: the
//!   one-pass `mean(x * x) - mean(x)^2` cancels catastrophically on offset
//!   data (for `x = 1e4 + N(0, 1)` in f32 it loses every digit). The printer
//!   writes this shape back as `var(...)`;
//! - `std(EXPR, AXIS, ...)`: `sqrt(var(EXPR, AXIS, ...))`;
//! - `count(AXIS, ...)`: the number of elements in those dims;
//! - `uniform(SEED, AXIS, ...)`: a counter-based uniform random number in
//!   `[0, 1)` per element of the dims (see [`rng`]). It is a pure function
//!   of the seed and the element index: two draws with one seed, or a draw
//!   inside `repeat`, give the same numbers (both are warned about).
//!
//! Arguments are positional: there are no keyword arguments (`dim=`,
//! `keepdim=`) and no tuples; a reduction lists its axes, `sum(x, N, D)`,
//! and removes them (no `keepdim`: broadcasting is by name). There are no
//! module prefixes or methods (`torch.rsqrt`, `x.mean(D)`). Unknown
//! PyTorch/NumPy names (`clamp`, `where`, `softmax`, ...) are errors that
//! say how normjit writes them.
//!
//! Every value has an axis set: a load has its tensor's dims, elementwise
//! operations take the union of their operands' axes (named-axis
//! broadcasting, never positional), a reduction removes its axes. The
//! typing rule of each operation is documented on [`Op`].
//!
//! # Numerics
//!
//! Per-element arithmetic is f32. *Per-call scalars* — values over no axes
//! computed only from literals, params and `count`s, i.e. hyper-parameter
//! arithmetic such as `1 - beta2` or `lr / (1 - beta1 ^ t)` — are evaluated
//! once per call in f64 and rounded to f32 once, where per-element math
//! uses them or they are stored, as PyTorch does with Python floats
//! ([`Kernel::per_call_scalars`]). Params are given as f64. Values derived
//! from tensor data (loads, reductions, `uniform`) stay f32 even over no
//! axes. Sums are accumulated in a cascade (the engines) or pairwise (the
//! reference interpreter), so their error grows with the log of the length.
//!
//! # Warnings
//!
//! A valid kernel may still get warnings ([`parse_with_warnings`],
//! [`check`]; `normjit check` prints them, and fails on them with
//! `--deny-warnings`). They never stop compilation, and are computed only
//! for kernels without errors:
//! - an `inout` tensor read after the statement that stores it (the read
//!   sees the entry value);
//! - a value, param or `in` tensor that is never read. A name starting with
//!   `_` (`_unused`) silences this one;
//! - a `uniform` seed used by two draws, or a `uniform` inside a `repeat`
//!   of more than one iteration (the numbers repeat).
//!
//! # Backward kernels
//!
//! [`grad()`] differentiates a kernel in reverse mode: `grad(&k, &["x",
//! "gamma"])` is a kernel `K_grad` that takes `K`'s `in` tensors and a
//! cotangent `dy` per `out` tensor `y`, and stores a gradient `dx` per
//! tensor named (the vector-Jacobian product). It is an ordinary kernel
//! that prints as `.nj` text. It recomputes the forward values it needs,
//! or takes named `let` values as inputs ([`grad_with`],
//! [`GradOptions::saved`]). Kernels with `inout` tensors (optimizer steps)
//! are refused. The adjoint rule of every op, the subgradients chosen at
//! non-smooth points and the naming convention are listed in the docs of
//! the [`grad` module](mod@grad).
//!
//! # Using it
//!
//! ```
//! let src = "kernel scale { dims N\n in x: f32[N]\n out y: f32[N]\n param a = 2\n y = a * x }";
//! let k = normjit_ir::parse(src).expect("valid kernel");
//! assert_eq!(k.name, "scale");
//! // The printer's output parses back to the same kernel.
//! assert_eq!(normjit_ir::parse(&k.to_string()).unwrap(), k);
//! ```
#![warn(missing_docs)]

mod builder;
mod diag;
pub mod dtype;
mod entity;
pub mod grad;
mod hints;
mod kernel;
mod lexer;
pub mod math;
mod parser;
mod printer;
mod resolve;
pub mod rng;
mod span;
mod storage;
mod verify;

pub use builder::KernelBuilder;
pub use diag::{Diagnostic, Diagnostics, Severity};
pub use dtype::{DType, Rounding, DTYPES};
pub use entity::{Arena, Id};
pub use grad::{grad, grad_with, GradOptions};
pub use kernel::*;
pub use span::Span;
pub use storage::{dtype_named, parse_storage, Storage};
pub use verify::verify;

/// Parses and verifies one kernel from `.nj` source text.
///
/// Never panics, whatever the input; every problem found is in the returned
/// [`Diagnostics`] (render them with [`Diagnostics::render`]). Warnings do
/// not make it fail and are not returned; use [`parse_with_warnings`] or
/// [`check`] to see them.
pub fn parse(source: &str) -> Result<Kernel, Diagnostics> {
    parse_with_warnings(source).map(|(k, _)| k)
}

/// Parses and verifies raw bytes, reporting invalid UTF-8 as a diagnostic.
pub fn parse_bytes(source: &[u8]) -> Result<Kernel, Diagnostics> {
    parse_bytes_with_warnings(source).map(|(k, _)| k)
}

/// Like [`parse`], and also returns the warnings about a valid kernel (in
/// source order; empty when there are none). On failure, only the errors
/// are returned: warnings are computed for valid kernels only.
///
/// ```
/// let src = "kernel k { dims N\n in x: f32[N]\n out y: f32[N]\n param unused = 1\n y = x }";
/// let (k, warnings) = normjit_ir::parse_with_warnings(src).unwrap();
/// assert_eq!(k.name, "k");
/// assert_eq!(warnings.warning_count(), 1);
/// assert!(warnings.render("k.nj", src).starts_with("k.nj:4:8: warning: param `unused` is never used"));
/// ```
pub fn parse_with_warnings(source: &str) -> Result<(Kernel, Diagnostics), Diagnostics> {
    let ast = parser::parse(source)?;
    let (k, warnings) = resolve::resolve(&ast, source)?;
    Ok((k, Diagnostics(warnings)))
}

/// [`parse_with_warnings`] on raw bytes, reporting invalid UTF-8 as an error.
pub fn parse_bytes_with_warnings(source: &[u8]) -> Result<(Kernel, Diagnostics), Diagnostics> {
    match std::str::from_utf8(source) {
        Ok(s) => parse_with_warnings(s),
        Err(e) => {
            let at = e.valid_up_to();
            let byte = source[at];
            Err(Diagnostics(vec![Diagnostic::new(
                Span::new(at, at + 1),
                format!("source is not valid UTF-8 (byte 0x{byte:02x} at offset {at})"),
            )]))
        }
    }
}

/// Checks a kernel source the way `normjit check` does: the kernel if it is
/// valid, and every diagnostic, in source order — the errors of an invalid
/// kernel, or the warnings of a valid one. Never panics.
pub fn check(source: &[u8]) -> (Option<Kernel>, Diagnostics) {
    match parse_bytes_with_warnings(source) {
        Ok((k, w)) => (Some(k), w),
        Err(e) => (None, e),
    }
}
