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
