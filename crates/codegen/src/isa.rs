//! The target ISA: the host's (with every extension Cranelift detects), or
//! a baseline without AVX/FMA, to test that path too. Its flags are part of
//! every kernel cache key.

use cranelift_codegen::isa::OwnedTargetIsa;
use cranelift_codegen::settings::{self, Configurable};

/// Which instruction set extensions to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IsaChoice {
    /// Everything the host has (AVX, AVX2, FMA, AVX-512 on this machine).
    Native,
    /// SSE4.2 only: no AVX, AVX2, FMA or AVX-512.
    Baseline,
}

/// A configured target.
#[derive(Clone)]
pub struct Isa {
    pub(crate) target: OwnedTargetIsa,
    /// The choice it was made from.
    pub choice: IsaChoice,
    /// Its enabled flags, as text (part of cache keys).
    pub flags: String,
}

impl std::fmt::Debug for Isa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Isa({:?}: {})", self.choice, self.flags)
    }
}

impl Isa {
    /// Builds the ISA for `choice` on this host.
    pub fn new(choice: IsaChoice) -> Result<Isa, String> {
        let mut shared = settings::builder();
        let set = |b: &mut settings::Builder, k: &str, v: &str| b.set(k, v).map_err(|e| format!("{k}={v}: {e}"));
        // The emitter already places every value at its loop depth and
        // hoists invariants itself. Cranelift's e-graph pass ("speed") added
        // nothing measurable to that and sank hoisted address arithmetic
        // back into inner loops (constants are rematerialized at their use,
        // which pins their users inside the loop), while costing ~30% more
        // compile time; so the mid-end optimizer stays off.
        set(&mut shared, "opt_level", "none")?;
        // The verifier doubles compile time; debug builds keep it.
        set(&mut shared, "enable_verifier", if cfg!(debug_assertions) { "true" } else { "false" })?;
        let mut isa = cranelift_native::builder().map_err(|e| e.to_string())?;
        if choice == IsaChoice::Baseline {
            for f in [
                "has_avx",
                "has_avx2",
                "has_fma",
                "has_avx512f",
                "has_avx512vl",
                "has_avx512dq",
                "has_avx512bitalg",
                "has_avx512vbmi",
            ] {
                isa.set(f, "false").map_err(|e| format!("{f}: {e}"))?;
            }
        }
        let target = isa.finish(settings::Flags::new(shared)).map_err(|e| e.to_string())?;
        let mut flags: Vec<String> =
            target.isa_flags().iter().filter(|v| v.as_bool() == Some(true)).map(|v| v.name.to_string()).collect();
        flags.sort();
        Ok(Isa { target, choice, flags: flags.join(",") })
    }

    /// It has fused multiply-add: plans for it contract `a * b ± c`
    /// (`normjit_lower::Options::fma`).
    pub fn has_fma(&self) -> bool {
        self.flags.split(',').any(|f| f == "has_fma")
    }

    /// The target triple.
    pub fn triple(&self) -> String {
        self.target.triple().to_string()
    }
}
