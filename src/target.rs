//! Target facts the CLI passes to the compiler: the host's cache sizes
//! (`normjit::CompilerOptions::host`; `NORMJIT_CACHE_BYTES` overrides the
//! L2), the `--schedule` overrides and whether to dump the plan after
//! every lowering pass (`NORMJIT_DUMP_PASSES`).

/// The schedule overrides of this process (`--schedule`), set once by the
/// command that runs.
static SCHEDULE: std::sync::OnceLock<normjit::unstable::lower::Overrides> = std::sync::OnceLock::new();

/// Parses `--schedule KEY=VALUE,...` and makes it this process's schedule
/// overrides (the options below carry them).
pub fn set_schedule(spec: &str) -> Result<(), String> {
    let o = normjit::unstable::lower::Overrides::parse(spec).map_err(|e| format!("--schedule: {e}"))?;
    SCHEDULE.set(o).map_err(|_| "--schedule given twice".to_string())
}

fn schedule() -> normjit::unstable::lower::Overrides {
    SCHEDULE.get().cloned().unwrap_or_default()
}

/// Compiler options for this host (`normjit::CompilerOptions::host`: the
/// cache sizes found here), and the `--schedule` overrides.
pub fn compiler_options() -> normjit::CompilerOptions {
    normjit::CompilerOptions { schedule: schedule(), ..normjit::CompilerOptions::host() }
}

/// Lowering options for this host and `isa` (for `explain`, `asm` and the
/// loop-IR engine of `run`): fused multiply-adds where it has FMA, as the
/// compiler plans.
pub fn lower_options(isa: &normjit::unstable::codegen::Isa) -> normjit::unstable::lower::Options {
    let dump = std::env::var_os("NORMJIT_DUMP_PASSES").is_some();
    normjit::unstable::lower::Options { dump, ..compiler_options().lower_options(isa) }
}
