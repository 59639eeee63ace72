//! The `normjit` command-line tool.

mod cli;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// normjit: a JIT compiler for fused normalization and optimizer kernels.
#[derive(Parser)]
#[command(name = "normjit", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Parse and verify kernel files (default: every .nj file under ./ir).
    Check(cli::check::Args),
    /// Show how a kernel is lowered: phases, loops, hoisting, traffic.
    Explain(cli::explain::Args),
    /// Show the generated machine code (and Cranelift IR).
    Asm(cli::asm::Args),
    /// Run a kernel on given or generated inputs; report accuracy against f64 and time per call.
    Run(cli::run::Args),
    /// Benchmark pipelines: JIT vs interpreter vs hand-fused rustc kernels vs the stream roofline.
    Bench(cli::bench::Args),
    /// Print the backward kernel of a kernel (reverse-mode differentiation of its IR).
    Grad(cli::grad::Args),
}

fn main() -> ExitCode {
    quiet_on_closed_stdout();
    let cli = Cli::parse();
    match cli.command {
        Command::Check(a) => cli::check::main(a),
        Command::Explain(a) => cli::explain::main(a),
        Command::Asm(a) => cli::asm::main(a),
        Command::Run(a) => cli::run::main(a),
        Command::Bench(a) => cli::bench::main(a),
        Command::Grad(a) => cli::grad::main(a),
    }
}

/// `normjit explain k.nj | head` closes stdout early: Rust's `print!` then
/// panics with "failed printing to stdout". That is the reader's choice,
/// not an error: exit quietly with the shell's SIGPIPE status instead of a
/// panic message.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}
