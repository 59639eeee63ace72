//! One module per subcommand, plus the error exit they share.

pub mod asm;
pub mod bench;
pub mod check;
pub mod explain;
pub mod grad;
pub mod plan_json;
pub mod run;
pub mod shapes;

use normjit::ir::Kernel;
use normjit::SourceFile;
use normjit_cli::bind::{parse_pairs, resolve_dims};
use std::path::Path;
use std::process::ExitCode;

/// Reads and verifies `file`, applies the `--dtype` storage overrides and
/// binds `--dims` text to every dim: what the commands that plan a kernel
/// (`explain`, `asm`) start with.
pub fn kernel_and_dims(file: &Path, dtype: &str, dims: &str) -> Result<(Kernel, Vec<usize>), ExitCode> {
    let kernel = SourceFile::read(file).and_then(|s| s.kernel()).map_err(fail)?;
    let kernel = normjit_cli::storage::apply(&kernel, dtype).map_err(fail)?;
    let dims = parse_pairs(dims).and_then(|given| resolve_dims(&kernel, &given, &[])).map_err(fail)?;
    Ok((kernel, dims))
}

/// Prints `err` as `error: ...` (or as already-rendered diagnostics) and
/// returns exit code 1.
pub fn fail(err: impl std::fmt::Display) -> ExitCode {
    let s = err.to_string();
    if s.contains(": error: ") {
        eprint!("{s}");
        if !s.ends_with('\n') {
            eprintln!();
        }
    } else {
        eprintln!("error: {s}");
    }
    ExitCode::from(1)
}

/// `--schedule`, for the commands that lower a kernel.
#[derive(clap::Args)]
pub struct ScheduleArg {
    /// Change the schedule the compiler chooses, as
    /// `reduce_unroll=8,prefetch=off,group=none`. Keys: hoist, flatten,
    /// onepass, vectorize, prefetch (on/off); reduce_unroll, stream_unroll (1..=8);
    /// chunk_elems; group (none, or dim names joined by `+`); block (off,
    /// or columns per block).
    #[arg(long, value_name = "KEY=VALUE,...", default_value = "")]
    pub schedule: String,
}

impl ScheduleArg {
    /// Makes the overrides this process's (`normjit_cli::target::set_schedule`).
    pub fn set(&self) -> Result<(), String> {
        normjit_cli::target::set_schedule(&self.schedule)
    }
}
