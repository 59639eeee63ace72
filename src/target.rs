//! Target facts the CLI reads from the host and the environment, and passes
//! to the library (which reads neither): the per-core L2 size
//! (`NORMJIT_CACHE_BYTES` overrides it) and whether to dump the plan after
//! every lowering pass (`NORMJIT_DUMP_PASSES`).

/// Compiler options for this host: the library defaults plus the cache
/// size found here.
pub fn compiler_options() -> normjit::CompilerOptions {
    normjit::CompilerOptions { cache_bytes: cache_bytes(), ..Default::default() }
}

/// Lowering options for this host and `isa` (for `explain`, `asm` and the
/// loop-IR engine of `run`): fused multiply-adds where it has FMA, as the
/// compiler plans.
pub fn lower_options(isa: &normjit::unstable::codegen::Isa) -> normjit::unstable::lower::Options {
    normjit::unstable::lower::Options {
        cache_bytes: cache_bytes(),
        fma: isa.has_fma(),
        dump: std::env::var_os("NORMJIT_DUMP_PASSES").is_some(),
        ..Default::default()
    }
}

/// `NORMJIT_CACHE_BYTES`, or the per-core L2 size.
pub fn cache_bytes() -> usize {
    std::env::var("NORMJIT_CACHE_BYTES").ok().and_then(|s| s.parse().ok()).unwrap_or_else(l2_bytes)
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
