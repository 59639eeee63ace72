//! Target facts the CLI reads from the host and the environment, and passes
//! to the library (which reads neither): the per-core L2 size
//! (`NORMJIT_CACHE_BYTES` overrides it), the last-level cache size, the
//! `--schedule` overrides and whether to dump the plan after
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

/// Compiler options for this host: the library defaults plus the cache
/// sizes found here, and the `--schedule` overrides.
pub fn compiler_options() -> normjit::CompilerOptions {
    normjit::CompilerOptions {
        cache_bytes: cache_bytes(),
        llc_bytes: llc_bytes(),
        schedule: schedule(),
        ..Default::default()
    }
}

/// Lowering options for this host and `isa` (for `explain`, `asm` and the
/// loop-IR engine of `run`): fused multiply-adds where it has FMA, as the
/// compiler plans.
pub fn lower_options(isa: &normjit::unstable::codegen::Isa) -> normjit::unstable::lower::Options {
    let dump = std::env::var_os("NORMJIT_DUMP_PASSES").is_some();
    normjit::unstable::lower::Options { dump, ..compiler_options().lower_options(isa) }
}

/// `NORMJIT_CACHE_BYTES`, or the per-core L2 size.
pub fn cache_bytes() -> usize {
    std::env::var("NORMJIT_CACHE_BYTES").ok().and_then(|s| s.parse().ok()).unwrap_or_else(l2_bytes)
}

/// The per-core L2 size from sysfs, or 1 MiB.
pub fn l2_bytes() -> usize {
    cache_level_bytes(2).unwrap_or(1 << 20)
}

/// The last-level (L3) cache size from sysfs, or the library's default.
pub fn llc_bytes() -> usize {
    cache_level_bytes(3).unwrap_or(normjit::CompilerOptions::default().llc_bytes)
}

/// The size of CPU 0's cache at `level` from sysfs, if it says.
pub fn cache_level_bytes(level: u32) -> Option<usize> {
    for i in 0..8 {
        let base = format!("/sys/devices/system/cpu/cpu0/cache/index{i}");
        let l = std::fs::read_to_string(format!("{base}/level")).ok()?;
        if l.trim() != level.to_string() {
            continue;
        }
        let size = std::fs::read_to_string(format!("{base}/size")).ok()?;
        let s = size.trim();
        let (num, mult) = match (s.strip_suffix('K'), s.strip_suffix('M')) {
            (Some(n), _) => (n, 1 << 10),
            (_, Some(n)) => (n, 1 << 20),
            _ => (s, 1),
        };
        return num.parse::<usize>().ok().map(|n| n * mult);
    }
    None
}
