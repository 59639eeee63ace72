//! `normjit-cli`: the `normjit` command-line tool and what it needs beyond
//! the embeddable runtime (the `normjit` crate): `NAME=VALUE` binding text,
//! `.npy` files, tensor storage types (`--dtype` overrides, buffers in a
//! tensor's own type), generated inputs, the benchmark harness with its
//! rustc reference kernels and stream roofline, and the host facts (cache
//! size) read from the system and the environment.
#![warn(missing_docs)]

pub mod bench;
pub mod bind;
pub mod inputs;
pub mod npy;
pub mod storage;
pub mod target;
