//! `normjit check FILE...`: parse and verify; exit 1 on any invalid file.

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
}

pub fn main(args: Args) -> ExitCode {
    let (mut ok, mut bad) = (0usize, 0usize);
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
            match SourceFile::read(&f).and_then(|s| s.kernel()) {
                Ok(k) => {
                    ok += 1;
                    if args.print {
                        print!("{k}");
                    } else {
                        println!("ok {} ({})", f.display(), k.name);
                    }
                }
                Err(e) => {
                    bad += 1;
                    eprint!("{e}");
                    if !e.to_string().ends_with('\n') {
                        eprintln!();
                    }
                }
            }
        }
    }
    if ok + bad == 0 {
        eprintln!("error: no .nj files found");
        return ExitCode::from(1);
    }
    eprintln!("checked {} file(s): {ok} valid, {bad} invalid", ok + bad);
    if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
