//! Arbitrary bytes into a random kernel (the generator of
//! `tests/common/gen.rs`: the first 8 bytes seed the inputs, each further
//! pair of bytes is one choice word), run through lowering, the loop-IR
//! interpreter, the JIT and both reference interpreters, and checked as the
//! `random_kernels` test does: JIT == loop IR bit for bit, NaN agreement
//! with the reference where it is order-independent, and every result
//! inside the oracle's set.
//!
//! Known, still open bugs (`gen::KNOWN_BUGS`, none today) are excluded as
//! in the test unless `NORMJIT_STRICT=1`: a case whose JIT fails with one is
//! rerun without the JIT. A lowering that does not terminate shows up as a
//! libFuzzer timeout (`-timeout=N`, default 1200 s).
#![no_main]

#[path = "../../tests/common/gen.rs"]
mod gen;

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

static ENV: OnceLock<gen::Env> = OnceLock::new();

fn strict() -> bool {
    std::env::var_os("NORMJIT_STRICT").is_some_and(|v| v != "0")
}

fuzz_target!(|data: &[u8]| {
    let (seed, rest) = match data.split_first_chunk::<8>() {
        Some((s, rest)) => (u64::from_le_bytes(*s), rest),
        None => (0, data),
    };
    let case = gen::Case::decode(&mut gen::Choices::from_bytes(rest), seed);
    let env = ENV.get_or_init(gen::Env::new);
    match gen::run_case(&case, env, gen::Engines::All) {
        Ok(_) => {}
        Err(f) if !strict() && gen::known_bug(&f).is_some() => {
            if let Err(f) = gen::run_case(&case, env, gen::Engines::NoJit) {
                panic!("{f}\n{case}");
            }
        }
        Err(f) => panic!("{f}\n{case}"),
    }
});
