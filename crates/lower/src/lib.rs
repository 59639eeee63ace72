//! `normjit-lower`: fusion — lowering a kernel to the loop IR.
//!
//! This crate owns the schedule: which loops run in which order, which
//! values are computed at which loop level, how reductions split the work
//! into passes over memory and fuse within them, and what each pass costs
//! in memory traffic. Its output, the [`Plan`] (see [`loopir`]), is what code
//! generation compiles and what [`exec`] interprets. It depends only on the
//! IR crate; it never knows about code generation or the CLI.
//!
//! The passes are listed in order in [`pipeline`].
#![warn(missing_docs)]

mod check;
pub mod exec;
mod group;
mod import;
mod json;
pub mod loopir;
mod order;
mod phases;
pub mod pipeline;
mod place;
mod prefetch;
mod split;
mod stores;
mod traffic;
mod vectorize;

pub use exec::{exec, ExecError};
pub use json::plan_json;
pub use loopir::*;
pub use pipeline::lower;
pub use split::CHUNK_ELEMS;

/// Lowering options.
#[derive(Clone, Debug)]
pub struct Options {
    /// Cache bytes a group iteration's data may occupy and still be re-read
    /// for free by later passes: the per-core L2 by default (from sysfs,
    /// 1 MiB if unknown), or `NORMJIT_CACHE_BYTES`.
    pub cache_bytes: usize,
    /// Print the plan after every pass to stderr (`NORMJIT_DUMP_PASSES=1`).
    pub dump: bool,
    /// Verify the plan even in release builds.
    pub verify: bool,
    /// Elements of work per thread chunk ([`CHUNK_ELEMS`] by
    /// default). Results depend on it (partials are combined per chunk) but
    /// never on the thread count; tests lower it to exercise many chunks.
    pub chunk_elems: usize,
}

impl Default for Options {
    fn default() -> Self {
        let cache_bytes =
            std::env::var("NORMJIT_CACHE_BYTES").ok().and_then(|s| s.parse().ok()).unwrap_or_else(l2_bytes);
        Options {
            cache_bytes,
            dump: std::env::var_os("NORMJIT_DUMP_PASSES").is_some(),
            verify: false,
            chunk_elems: split::CHUNK_ELEMS,
        }
    }
}

/// The per-core L2 size from sysfs, or 1 MiB.
pub fn l2_bytes() -> usize {
    for i in 0..8 {
        let base = format!("/sys/devices/system/cpu/cpu0/cache/index{i}");
        let level = std::fs::read_to_string(format!("{base}/level")).unwrap_or_default();
        if level.trim() != "2" {
            continue;
        }
        let size = std::fs::read_to_string(format!("{base}/size")).unwrap_or_default();
        let s = size.trim();
        let (num, mult) = match s.strip_suffix('K') {
            Some(n) => (n, 1024),
            None => match s.strip_suffix('M') {
                Some(n) => (n, 1 << 20),
                None => (s, 1),
            },
        };
        if let Ok(n) = num.parse::<usize>() {
            return n * mult;
        }
    }
    1 << 20
}

/// Why a kernel could not be lowered.
#[derive(Debug, Clone, PartialEq)]
pub enum LowerError {
    /// The sizes do not fit the kernel.
    Dims(String),
    /// A kernel shape the lowering cannot handle yet (the message says why
    /// and what to do instead).
    Unsupported(String),
    /// A pass produced an invalid plan: a bug in normjit.
    Internal(String),
}

impl std::fmt::Display for LowerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LowerError::Dims(s) | LowerError::Unsupported(s) => f.write_str(s),
            LowerError::Internal(s) => write!(f, "internal error in lowering (a normjit bug): {s}"),
        }
    }
}

impl std::error::Error for LowerError {}
