//! The must-fail corpus: every program in `tests/errors/` is rejected, and
//! its full rendered diagnostic matches the golden `.stderr` file beside it.
//! `NORMJIT_BLESS=1 cargo test --test diagnostics` rewrites the goldens.

use std::path::Path;

#[test]
fn must_fail_corpus_matches_golden_diagnostics() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/errors");
    let bless = std::env::var_os("NORMJIT_BLESS").is_some();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "nj"))
        .collect();
    files.sort();
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
            Err(d) => d.render(&name, &String::from_utf8_lossy(&bytes)),
        };
        let golden = f.with_extension("stderr");
        if bless {
            std::fs::write(&golden, &rendered).unwrap();
            continue;
        }
        match std::fs::read_to_string(&golden) {
            Ok(want) if want == rendered => {}
            Ok(want) => failures.push(format!("{name}: diagnostic changed\n--- golden\n{want}--- got\n{rendered}")),
            Err(_) => failures.push(format!("{name}: no golden file (run with NORMJIT_BLESS=1)\n{rendered}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
