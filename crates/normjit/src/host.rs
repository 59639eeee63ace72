//! This host's cache sizes, for tools that want the compiler to plan for
//! the machine it runs on ([`CompilerOptions::host`]): the CLI and the
//! Python package. The compiler itself never calls this module; its
//! options carry every target fact.

use crate::CompilerOptions;

/// The size of CPU 0's cache at `level` from sysfs, if it says.
pub fn cache_level_bytes(level: u32) -> Option<usize> {
    for i in 0..8 {
        let base = format!("/sys/devices/system/cpu/cpu0/cache/index{i}");
        if std::fs::read_to_string(format!("{base}/level")).ok()?.trim() != level.to_string() {
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

/// The per-core L2 size from sysfs, or 1 MiB.
pub fn l2_bytes() -> usize {
    cache_level_bytes(2).unwrap_or(1 << 20)
}

impl CompilerOptions {
    /// The default options with this host's cache sizes:
    /// [`CompilerOptions::cache_bytes`] from `NORMJIT_CACHE_BYTES`, else
    /// the per-core L2 from sysfs, else 1 MiB;
    /// [`CompilerOptions::llc_bytes`] from the L3 in sysfs, else the
    /// default.
    pub fn host() -> CompilerOptions {
        let d = CompilerOptions::default();
        let cache_bytes =
            std::env::var("NORMJIT_CACHE_BYTES").ok().and_then(|s| s.parse().ok()).unwrap_or_else(l2_bytes);
        CompilerOptions { cache_bytes, llc_bytes: cache_level_bytes(3).unwrap_or(d.llc_bytes), ..d }
    }
}
