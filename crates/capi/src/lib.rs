//! `normjit-capi`: the C ABI of the normjit runtime (`include/normjit.h`).
//!
//! A thin layer over the `normjit` crate: every entry point validates its
//! arguments at the boundary (NULL pointers, UTF-8, negative or overflowing
//! shapes, live handles), translates them to the Rust API and calls it; the
//! kernel-level validation (dtypes, ranks, dim agreement, aliasing, params)
//! and the errors it reports are `normjit`'s own.
//!
//! Conventions, for every function (the header repeats them):
//! - **Status.** A fallible function returns an `int32_t` status: `NJ_OK`
//!   (0), a `normjit::ErrorKind` code (1..=14), or a code of the C layer
//!   (100..). Its last parameter is an optional `nj_error** err`: when not
//!   NULL it receives NULL on success and a new error object (code and
//!   message) on failure, which the caller frees with `nj_error_free`.
//! - **No panic crosses the boundary**: each body runs under
//!   `catch_unwind`; a panic becomes `NJ_ERR_INTERNAL` with its message.
//! - **Handles** are opaque tokens checked against a registry on every
//!   call, so freed, double-freed, foreign and mistyped handles are reported
//!   as `NJ_ERR_INVALID_HANDLE` instead of being undefined behaviour (see
//!   [`handle`]).
//! - **Strings** the library returns are owned by the object they come from
//!   (a kernel's names by the kernel, a message by its error), valid until
//!   that object is freed; the caller never frees a string.
//!
//! The Rust functions are callable from Rust too (`unsafe`), which is how
//! the tests exercise them.
#![allow(non_camel_case_types)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs, clippy::undocumented_unsafe_blocks)]

mod args;
mod compiler;
mod handle;
mod kernel;
mod run;
mod status;

pub use compiler::*;
pub use kernel::*;
pub use run::*;
pub use status::*;

use std::ffi::c_char;

/// The version of the library, e.g. `"0.1.0"`: a static string (never
/// freed).
#[no_mangle]
pub extern "C" fn nj_version() -> *const c_char {
    // A constant; wrapped like every entry point all the same.
    std::panic::catch_unwind(|| concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()).unwrap_or(c"?".as_ptr())
}
