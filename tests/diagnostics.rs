//! The diagnostic corpora.
//!
//! - `tests/errors/`: every program is rejected, and its full rendered
//!   diagnostic matches the golden `.stderr` file beside it.
//! - `tests/warnings/`: every program is accepted (warnings never stop
//!   compilation), has at least one warning and no other diagnostic, and its
//!   rendered warnings match the golden `.stderr` file beside it.
//!
//! `NORMJIT_BLESS=1 cargo test --test diagnostics` rewrites the goldens.

use std::path::{Path, PathBuf};

fn corpus(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "nj"))
        .collect();
    files.sort();
    files
}

/// Compares `rendered` with the golden beside `f` (or rewrites it).
fn golden(f: &Path, name: &str, rendered: &str, failures: &mut Vec<String>) {
    let golden = f.with_extension("stderr");
    if std::env::var_os("NORMJIT_BLESS").is_some() {
        std::fs::write(&golden, rendered).unwrap();
        return;
    }
    match std::fs::read_to_string(&golden) {
        Ok(want) if want == rendered => {}
        Ok(want) => failures.push(format!("{name}: diagnostic changed\n--- golden\n{want}--- got\n{rendered}")),
        Err(_) => failures.push(format!("{name}: no golden file (run with NORMJIT_BLESS=1)\n{rendered}")),
    }
}

#[test]
fn must_fail_corpus_matches_golden_diagnostics() {
    let files = corpus("tests/errors");
    assert!(files.len() >= 30, "only {} must-fail programs", files.len());
    let mut failures = Vec::new();
    for f in &files {
        let name = format!("tests/errors/{}", f.file_name().unwrap().to_string_lossy());
        let bytes = std::fs::read(f).unwrap();
        let rendered = match normjit::ir::parse_bytes(&bytes) {
            Ok(_) => {
                failures.push(format!("{name}: accepted, but it must fail"));
                continue;
            }
            Err(d) => {
                assert!(d.iter().all(|d| d.is_error()), "{name}: a warning among the errors");
                d.render(&name, &String::from_utf8_lossy(&bytes))
            }
        };
        // `check` reports exactly the same errors, and no kernel.
        let (k, d) = normjit::ir::check(&bytes);
        assert!(k.is_none(), "{name}: check accepted it");
        assert_eq!(d.render(&name, &String::from_utf8_lossy(&bytes)), rendered, "{name}: check differs");
        golden(f, &name, &rendered, &mut failures);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn warning_corpus_compiles_and_matches_golden_warnings() {
    let files = corpus("tests/warnings");
    assert!(files.len() >= 5, "only {} warning programs", files.len());
    let mut failures = Vec::new();
    for f in &files {
        let name = format!("tests/warnings/{}", f.file_name().unwrap().to_string_lossy());
        let bytes = std::fs::read(f).unwrap();
        // Warnings do not stop compilation: the plain API accepts the kernel.
        let plain = normjit::ir::parse_bytes(&bytes).unwrap_or_else(|d| {
            panic!("{name}: rejected, but warnings must not stop compilation:\n{d}");
        });
        let (k, d) = normjit::ir::check(&bytes);
        assert_eq!(k.as_ref(), Some(&plain), "{name}: check gives another kernel");
        if d.warning_count() == 0 || d.has_errors() {
            failures.push(format!("{name}: expected only warnings, got {} diagnostic(s):\n{d}", d.len()));
            continue;
        }
        let src = String::from_utf8_lossy(&bytes);
        let (k2, w) = normjit::ir::parse_with_warnings(&src).unwrap();
        assert_eq!((k2, &w), (plain, &d), "{name}: parse_with_warnings differs from check");
        golden(f, &name, &d.render(&name, &src), &mut failures);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
