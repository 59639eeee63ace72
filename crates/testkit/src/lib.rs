//! `normjit-testkit`: random kernels and a sound interval oracle for
//! differential testing, shared by normjit's `random_kernels` test and its
//! cargo-fuzz `jit` target.
//!
//! - [`gen`]: the generator — a proptest strategy ([`cases`]) and a plain
//!   decoder of "choice" words ([`Case::decode`], [`Choices::from_bytes`]
//!   for fuzzers);
//! - [`case`]: a [`Case`] (kernel, sizes, params, input seed, chunk size,
//!   threads), its text form (a `.nj` file that reproduces it), and the
//!   inputs it runs on ([`make_inputs`]);
//! - [`oracle`]: [`Oracle`], the kernel evaluated over sets ([`Av`]) that
//!   contain every result any f32 engine may produce, in any summation
//!   order;
//! - [`run`]: [`run_case`], one case through lowering, the loop-IR
//!   interpreter, the JIT (at the case's sizes and again, with the same
//!   code when the schedule allows, at its second sizes), both reference
//!   interpreters and the oracle, with the checks that tie them together.
//!
//! ```
//! use normjit_testkit::{run_case, Case, Choices, Engines, Env};
//! let case = Case::decode(&mut Choices::from_bytes(&[7, 0, 3, 1]), 42);
//! let stats = run_case(&case, &Env::new(), Engines::All).unwrap_or_else(|f| panic!("{f}\n{case}"));
//! assert_eq!(stats.cases, 1);
//! ```
#![warn(missing_docs)]

pub mod case;
pub mod gen;
pub mod oracle;
pub mod run;

pub use case::{decode, encode, make_inputs, param_words, second_dims, Case, MAX_ELEMS2, SENTINEL, SPECIAL_VALUES};
pub use gen::{cases, Choices, CHUNKS, DIM_NAMES, MAX_ELEMS, MAX_HEIGHT, SPECIALS};
pub use oracle::{Av, Oracle};
pub use run::{inout_store_cycle, lower_case, lower_random, random_schedule, run_case, Engines, Env, Failure, Stats};
