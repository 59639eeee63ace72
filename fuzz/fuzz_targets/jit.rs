//! Arbitrary bytes into a random kernel (the generator of the
//! `normjit-testkit` crate: the first 8 bytes seed the inputs and the
//! second sizes, each further pair of bytes is one choice word), run through
//! lowering, the loop-IR interpreter, the JIT and both reference
//! interpreters, and checked as the `random_kernels` test does: JIT == loop
//! IR bit for bit, also when the code compiled at the case's sizes runs at
//! its second sizes; NaN where the oracle says it is certain and only where
//! it is possible; every result inside the oracle's set.
//!
//! A lowering that does not terminate shows up as a libFuzzer timeout
//! (`-timeout=N`, default 1200 s).
#![no_main]

use libfuzzer_sys::fuzz_target;
use normjit_testkit::{run_case, Case, Choices, Engines, Env};
use std::sync::OnceLock;

static ENV: OnceLock<Env> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let (seed, rest) = match data.split_first_chunk::<8>() {
        Some((s, rest)) => (u64::from_le_bytes(*s), rest),
        None => (0, data),
    };
    let case = Case::decode(&mut Choices::from_bytes(rest), seed);
    let env = ENV.get_or_init(Env::new);
    if let Err(f) = run_case(&case, env, Engines::All) {
        panic!("{f}\n{case}");
    }
});
