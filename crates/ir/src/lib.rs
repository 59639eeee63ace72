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
//! - `in|out|inout NAME: DTYPE[DIM, ...]`: a tensor, row-major, last dim
//!   contiguous; `f32[]` is a 0-dim (scalar) tensor. A dim appears at most
//!   once per tensor. Only `f32` storage exists today.
//! - `param NAME [: f32|u32] [= LITERAL], ...`: runtime scalars, `f32` unless
//!   typed; a `u32` param is only usable as the seed of `uniform`.
//!
//! Statements:
//! - `NAME = EXPR` with a fresh NAME binds a value (SSA: no rebinding).
//! - `T = EXPR` with T an `out` or `inout` tensor stores its final value;
//!   each is stored exactly once; EXPR's axes must be a subset of T's dims
//!   (missing ones broadcast). Reading an `inout` anywhere yields its value
//!   at entry; an `out` cannot be read.
//!
//! Expressions, loosest binding first: comparisons `< <= > >= == !=` (not
//! chainable); `+ -`; `* /`; unary `-`; `^` (power, right-associative, so
//! `-x^2 = -(x^2)` and `2^-1` is allowed); then literals (Rust syntax:
//! `1e-5`, `0.999`, `3`), names and calls:
//! - `sqrt rsqrt abs sign exp log neg recip` (one argument);
//! - `pow(a, b)`, `min(a, b)`, `max(a, b)` (elementwise, NaN-propagating);
//! - `select(cond, a, b)` with `cond` a comparison;
//! - `sum|mean|max|min(EXPR, AXIS, ...)`: reduction over the named dims;
//!   `max`/`min` are reductions when every argument after the first is a dim;
//! - `count(AXIS, ...)`: the number of elements in those dims;
//! - `uniform(SEED, AXIS, ...)`: a counter-based uniform random number in
//!   `[0, 1)` per element of the dims (see [`rng`]).
//!
//! Every value has an axis set: a load has its tensor's dims, elementwise
//! operations take the union of their operands' axes (named-axis
//! broadcasting, never positional), a reduction removes its axes. The
//! typing rule of each operation is documented on [`Op`].
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
mod entity;
mod kernel;
mod lexer;
mod parser;
mod printer;
mod resolve;
pub mod rng;
mod span;
mod verify;

pub use builder::KernelBuilder;
pub use diag::{Diagnostic, Diagnostics};
pub use entity::{Arena, Id};
pub use kernel::*;
pub use span::Span;
pub use verify::verify;

/// Parses and verifies one kernel from `.nj` source text.
///
/// Never panics, whatever the input; every problem found is in the returned
/// [`Diagnostics`] (render them with [`Diagnostics::render`]).
pub fn parse(source: &str) -> Result<Kernel, Diagnostics> {
    let ast = parser::parse(source)?;
    resolve::resolve(&ast)
}

/// Parses and verifies raw bytes, reporting invalid UTF-8 as a diagnostic.
pub fn parse_bytes(source: &[u8]) -> Result<Kernel, Diagnostics> {
    match std::str::from_utf8(source) {
        Ok(s) => parse(s),
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
