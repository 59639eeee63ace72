//! `normjit`: the embeddable runtime of a JIT compiler for fused
//! normalization and regularized-update kernels.
//!
//! This crate is what a runtime links. It owns the safe API — [`Compiler`],
//! [`Kernel`], the positional [`Tensor`] call path and the named
//! [`Bindings`] built on it, the [`Signature`] of a kernel, [`Error`] — and
//! the executor: thread chunks, partial reductions, reusable scratch. It
//! depends on the compiler crates, `rayon` and `thiserror`, and on nothing a
//! command-line tool needs (no argument parsing, file formats or JSON).
//!
//! ```
//! use normjit::{Compiler, Tensor};
//! let compiler = Compiler::new()?;
//! let k = compiler.compile_source(
//!     "kernel scale {\n dims N\n in x: f32[N]\n out y: f32[N]\n param a = 2.0\n y = a * x\n}\n",
//! )?;
//! let x = [1.0f32, 2.0, 3.0];
//! let mut y = [0.0f32; 3];
//! k.call(&[Tensor::input(&x), Tensor::output(&mut y)], &[2.0])?;
//! assert_eq!(y, [2.0, 4.0, 6.0]);
//! # Ok::<(), normjit::Error>(())
//! ```
//!
//! Compiled code reads the sizes at run time, so one compilation serves
//! every shape with the same schedule; a kernel keeps a bounded LRU of the
//! shapes it has seen ([`CompilerOptions::shape_cache`]). A positional call
//! looks nothing up by name and, in steady state, allocates nothing.
//!
//! The IR ([`ir`]) is the language kernels are written in and is part of
//! this API. The lowering and code-generation crates are not: raw access to
//! them is in [`unstable`], which may change in any release.
#![warn(missing_docs)]

mod bind;
mod error;
mod exec;
pub mod host;
mod kernel;
mod shapes;
mod signature;
mod source;

pub use bind::{resolve_dims, resolve_params, Bindings, Element, Tensor};
pub use error::{Error, ErrorKind};
pub use half;
pub use kernel::{Compiler, CompilerOptions, Kernel, RunInfo, Threads};
pub use normjit_codegen::IsaChoice;
pub use normjit_ir as ir;
pub use normjit_ir::{DType, ParamType, Role, Rounding, Storage};
pub use signature::{ParamSig, Signature, TensorSig};
pub use source::{collect_nj_files, load_kernel, LoadError, SourceFile};

/// Raw access to the compiler's internals: the loop IR, the lowering, code
/// generation. Not part of the stable API; for tools (the `normjit` CLI,
/// tests) that inspect plans and generated code.
pub mod unstable {
    pub use normjit_codegen as codegen;
    pub use normjit_lower as lower;

    /// Runs compiled code at sizes `dims` with the executor, as a call does
    /// after validation (for tests that hold plans and code directly).
    ///
    /// # Safety
    /// - `code` runs at `dims`: it was compiled from a plan of the same
    ///   kernel whose [`lower::Plan::schedule_key`] equals that of the plan
    ///   lowered at `dims` (with the same options), and is not specialized
    ///   to other sizes;
    /// - `tensors` has one pointer per kernel tensor, to as many elements
    ///   of its storage type as the tensor has at `dims`, readable, and
    ///   writable for written tensors; no written buffer overlaps another;
    /// - `params` has one word per param (f64 bits, or the u32 value).
    pub unsafe fn execute_at(
        code: &std::sync::Arc<codegen::Compiled>,
        dims: &[usize],
        tensors: &[*mut u8],
        params: &[u64],
        pool: Option<&rayon::ThreadPool>,
    ) {
        let shape = crate::shapes::Shape::new(code.clone(), dims, None);
        // SAFETY: the caller's contract is `execute`'s.
        unsafe { crate::exec::execute(&shape, tensors, params, pool) }
    }
}
