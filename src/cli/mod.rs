//! One module per subcommand, plus the error exit they share.

pub mod asm;
pub mod check;
pub mod explain;
pub mod run;

use std::process::ExitCode;

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
