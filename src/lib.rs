//! `normjit`: a JIT compiler for fused normalization and regularized-update
//! kernels. This crate is the facade: it ties the IR, the reference
//! interpreter, the lowering (and, later, code generation) into one API and
//! the `normjit` command-line tool.
//!
//! Nothing below this crate knows about files or the CLI; everything a user
//! touches — loading `.nj` files, binding tensors by name, errors a user can
//! act on — lives here.
#![warn(missing_docs)]

pub mod bench;
pub mod bind;
pub mod inputs;
pub mod jit;
pub mod npy;
pub mod source;

pub use jit::{Bindings, Compiler, CompilerOptions, Error, Kernel, RunInfo};
pub use normjit_codegen as codegen;
pub use normjit_interp as interp;
pub use normjit_ir as ir;
pub use normjit_lower as lower;
pub use source::{load_kernel, LoadError, SourceFile};
