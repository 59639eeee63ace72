//! `normjit explain FILE --dims ...`: the lowering's plan — phases, loops,
//! hoisting, accumulators, parallel split and memory traffic.

use crate::cli::fail;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `explain`.
#[derive(clap::Args)]
pub struct Args {
    /// The kernel file.
    file: PathBuf,
    /// Sizes, as `N=64,D=1000`.
    #[arg(long, default_value = "")]
    dims: String,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Cache bytes assumed to hold a group iteration between passes
    /// (default: the per-core L2 size).
    #[arg(long)]
    cache_bytes: Option<usize>,
}

pub fn main(a: Args) -> ExitCode {
    let (kernel, dims) = match crate::cli::kernel_and_dims(&a.file, &a.dims) {
        Ok(kd) => kd,
        Err(code) => return code,
    };
    let mut opts = normjit_cli::target::lower_options();
    if let Some(c) = a.cache_bytes {
        opts.cache_bytes = c;
    }
    let plan = match normjit_lower::lower(&kernel, &dims, &opts) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&crate::cli::plan_json::plan_json(&plan)).expect("JSON values serialize")
        );
    } else {
        print!("{plan}");
    }
    ExitCode::SUCCESS
}
