//! `normjit asm FILE --dims ...`: the machine code of each generated
//! function (and, with `--clif`, the Cranelift IR it came from), for the
//! kernel as declared or with `--dtype` storage overrides.

use crate::cli::fail;
use normjit_codegen::{CodegenOptions, Compiled, Isa, IsaChoice};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `asm`.
#[derive(clap::Args)]
pub struct Args {
    /// The kernel file.
    file: PathBuf,
    /// Sizes, as `N=64,D=1000` (code is specialized to them).
    #[arg(long, default_value = "")]
    dims: String,
    /// Store tensors as bf16 or f16 instead of as declared, as
    /// `x=bf16,y=bf16` (see `normjit run --help`).
    #[arg(long, default_value = "", value_name = "TENSOR=DTYPE,...")]
    dtype: String,
    /// Also print the Cranelift IR of each function.
    #[arg(long)]
    clif: bool,
    /// Compile for the SSE4.2 baseline instead of the host (no AVX/FMA).
    #[arg(long)]
    baseline: bool,
    #[command(flatten)]
    schedule: crate::cli::ScheduleArg,
}

pub fn main(a: Args) -> ExitCode {
    if let Err(e) = a.schedule.set() {
        return fail(e);
    }
    let (kernel, dims) = match crate::cli::kernel_and_dims(&a.file, &a.dtype, &a.dims) {
        Ok(kd) => kd,
        Err(code) => return code,
    };
    let isa = match Isa::new(if a.baseline { IsaChoice::Baseline } else { IsaChoice::Native }) {
        Ok(i) => i,
        Err(e) => return fail(e),
    };
    let plan = match normjit_lower::lower(&kernel, &dims, &normjit_cli::target::lower_options(&isa)) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    let code = match Compiled::new(&plan, &isa, &CodegenOptions { listing: true, ..Default::default() }) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    println!("; kernel {} for {} ({})", kernel.name, isa.triple(), isa.flags);
    for l in code.listings() {
        let what = l.unit.describe(&plan);
        println!("\n; ===== {what} =====");
        if a.clif {
            println!("{}", l.clif);
        }
        println!("{}", l.asm);
    }
    ExitCode::SUCCESS
}
