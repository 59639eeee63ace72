//! `normjit check FILE...`: parse and verify; print errors and warnings;
//! exit 1 on any invalid file (or, with `--deny-warnings`, on any warning).

use normjit::{collect_nj_files, SourceFile};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `check`.
#[derive(clap::Args)]
pub struct Args {
    /// Files or directories to check (directories are searched for .nj files).
    #[arg(default_value = "ir")]
    paths: Vec<PathBuf>,
    /// Print each valid kernel in canonical form.
    #[arg(long)]
    print: bool,
    /// Treat warnings as errors: exit 1 if any file has a warning.
    #[arg(long)]
    deny_warnings: bool,
}

pub fn main(args: Args) -> ExitCode {
    let (mut ok, mut bad, mut warnings) = (0usize, 0usize, 0usize);
    for p in &args.paths {
        let files = match collect_nj_files(p) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("{}: cannot read: {e}", p.display());
                bad += 1;
                continue;
            }
        };
        for f in files {
            let src = match SourceFile::read(&f) {
                Ok(s) => s,
                Err(e) => {
                    bad += 1;
                    eprintln!("{e}");
                    continue;
                }
            };
            let (kernel, diags) = normjit_ir::check(&src.bytes);
            if !diags.is_empty() {
                eprint!("{}", diags.render(&f.display().to_string(), &String::from_utf8_lossy(&src.bytes)));
            }
            match kernel {
                Some(k) => {
                    ok += 1;
                    warnings += diags.warning_count();
                    if args.print {
                        print!("{k}");
                    } else {
                        println!("ok {} ({})", f.display(), k.name);
                    }
                }
                None => bad += 1,
            }
        }
    }
    if ok + bad == 0 {
        eprintln!("error: no .nj files found");
        return ExitCode::from(1);
    }
    let mut summary = format!("checked {} file(s): {ok} valid, {bad} invalid", ok + bad);
    if warnings > 0 {
        let s = if warnings == 1 { "" } else { "s" };
        summary.push_str(&format!(", {warnings} warning{s}"));
        if args.deny_warnings {
            summary.push_str(" (denied by --deny-warnings)");
        }
    }
    eprintln!("{summary}");
    if bad == 0 && !(args.deny_warnings && warnings > 0) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
