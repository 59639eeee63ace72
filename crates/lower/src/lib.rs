//! `normjit-lower`: fusion — lowering a kernel to the loop IR.
//!
//! This crate owns the schedule: which loops run in which order, which
//! values are computed at which loop level, how reductions split the work
//! into passes over memory and fuse within them, and what each pass costs
//! in memory traffic. Its output, the [`Plan`] (see [`loopir`]), is what code
//! generation compiles and what [`exec`] interprets. It depends only on the
//! IR crate; it never knows about code generation or the CLI.
//!
//! The choices are one [`Schedule`], made by one function
//! ([`schedule()`]); the passes, listed in order in [`pipeline`], apply it.
#![warn(missing_docs)]

mod block;
mod check;
pub mod exec;
mod flatten;
mod group;
mod hoist;
mod import;
mod onepass;

pub mod loopir;
mod order;
mod phases;
pub mod pipeline;
mod place;
mod prefetch;
pub mod schedule;
mod split;
mod stores;
mod traffic;
mod vectorize;
pub mod vmath;

pub use exec::{exec, ExecError};

pub use loopir::*;
pub use pipeline::{lower, lower_with, schedule};
pub use schedule::{Overrides, Schedule};
pub use split::CHUNK_ELEMS;

/// Lowering options: the target facts the schedule depends on, given by
/// the caller. (The lowering reads no environment variables and no system
/// files; the CLI does, and passes what it found here.)
#[derive(Clone, Debug)]
pub struct Options {
    /// Cache bytes a group iteration's data may occupy and still be re-read
    /// for free by later passes: the per-core L2. Default 1 MiB.
    pub cache_bytes: usize,
    /// Bytes of the last-level cache: a call whose tensors take more
    /// streams them from memory. Default 32 MiB.
    pub llc_bytes: usize,
    /// Print the plan after every pass to stderr.
    pub dump: bool,
    /// Verify the plan even in release builds.
    pub verify: bool,
    /// Elements of work per thread chunk ([`CHUNK_ELEMS`] by
    /// default). Results depend on it (partials are combined per chunk) but
    /// never on the thread count; tests lower it to exercise many chunks.
    pub chunk_elems: usize,
    /// Contract `a * b ± c` into fused multiply-adds ([`LOp::Fma`]): for
    /// targets with FMA (the plan, like the cache key, is per ISA). Off by
    /// default; the runtime sets it from the ISA it compiles for.
    pub fma: bool,
    /// Changes to the schedule the lowering chooses (none by default): an
    /// expert's knob, and a way to measure one choice against another.
    pub schedule: Overrides,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            cache_bytes: 1 << 20,
            llc_bytes: 32 << 20,
            dump: false,
            verify: false,
            chunk_elems: split::CHUNK_ELEMS,
            fma: false,
            schedule: Overrides::default(),
        }
    }
}

/// Why a kernel could not be lowered.
#[derive(Debug, Clone, PartialEq)]
pub enum LowerError {
    /// The sizes do not fit the kernel.
    Dims(String),
    /// A kernel shape the lowering cannot handle yet (the message says why
    /// and what to do instead).
    Unsupported(String),
    /// A schedule given to [`lower_with`] that is not legal for the kernel.
    Schedule(String),
    /// A pass produced an invalid plan: a bug in normjit.
    Internal(String),
}

impl std::fmt::Display for LowerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LowerError::Dims(s) | LowerError::Unsupported(s) => f.write_str(s),
            LowerError::Schedule(s) => write!(f, "illegal schedule: {s}"),
            LowerError::Internal(s) => write!(f, "internal error in lowering (a normjit bug): {s}"),
        }
    }
}

impl std::error::Error for LowerError {}
