//! Parsing and verification never panic and never overflow the stack, on
//! any input: random bytes, token soup, mutations of the library files, and
//! the pathological cases named in the IR issue. Whatever parses must also
//! verify and round-trip through the printer.
//!
//! Case counts: `PROPTEST_CASES` (default 2000 per property here).

use normjit::ir;
use proptest::prelude::*;
use std::path::Path;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(2000)
}

/// Parse; if it succeeds, the kernel must verify and print to text that
/// parses back to the same kernel.
fn check_no_panic(bytes: &[u8]) {
    match ir::parse_bytes(bytes) {
        Ok(k) => {
            ir::verify(&k).unwrap();
            let printed = k.to_string();
            let k2 = ir::parse(&printed).unwrap_or_else(|d| panic!("printed kernel does not parse:\n{printed}\n{d}"));
            assert_eq!(k, k2);
        }
        Err(d) => {
            assert!(!d.0.is_empty());
            // Rendering must not panic either, even on odd spans.
            let _ = d.render("fuzz.nj", &String::from_utf8_lossy(bytes));
        }
    }
}

fn library_sources() -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("ir");
    normjit::collect_nj_files(&root).unwrap().iter().map(|f| std::fs::read(f).unwrap()).collect()
}

const VOCAB: &[&str] = &[
    "kernel", "k", "{", "}", "\n", ";", "dims", "N", "D", ",", "in", "out", "inout", "param", "x", "y", ":", "f32",
    "u32", "[", "]", "(", ")", "=", "+", "-", "*", "/", "^", "<", ">=", "==", "!=", "sum", "mean", "max", "min",
    "count", "uniform", "select", "sqrt", "rsqrt", "1e-5", "0", "2.5", "1e39", "eps", "seed", "#c\n", " ",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        check_no_panic(&bytes);
    }

    #[test]
    fn token_soup_never_panics(toks in proptest::collection::vec(0..VOCAB.len(), 0..120)) {
        let src: String = toks.iter().map(|&i| VOCAB[i]).collect::<Vec<_>>().join(" ");
        check_no_panic(src.as_bytes());
    }

    #[test]
    fn mutated_library_files_never_panic(
        file in 0usize..18,
        edits in proptest::collection::vec((0usize..4, any::<prop::sample::Index>(), 0usize..VOCAB.len(), any::<u8>()), 1..6),
    ) {
        let lib = library_sources();
        let mut src = lib[file % lib.len()].clone();
        for (kind, at, tok, byte) in edits {
            let i = if src.is_empty() { 0 } else { at.index(src.len()) };
            match kind {
                0 => { src.remove(i.min(src.len().saturating_sub(1)).min(src.len())); }
                1 => { src.splice(i..i, VOCAB[tok].bytes()); }
                2 => { if i < src.len() { src[i] = byte; } }
                _ => { let end = (i + 16).min(src.len()); src.drain(i..end); }
            }
        }
        check_no_panic(&src);
    }
}

fn must_fail(src: &[u8]) -> String {
    let d = ir::parse_bytes(src).expect_err("must be rejected");
    d.render("case.nj", &String::from_utf8_lossy(src))
}

const HEAD: &str = "kernel k {\n dims N\n in x: f32[N]\n out y: f32[N]\n y = ";

#[test]
fn pathological_inputs_are_errors_not_crashes() {
    assert!(must_fail(b"").contains("no kernel found"));
    assert!(must_fail(&[0xff, 0xfe, 0x00, 0x80]).contains("not valid UTF-8"));
    // 100k nested parentheses.
    let deep = format!("{HEAD}{}x{}\n}}", "(".repeat(100_000), ")".repeat(100_000));
    assert!(must_fail(deep.as_bytes()).contains("nested too deeply"));
    // 100k unary minus, and a 100k-long right-associative power chain.
    let negs = format!("{HEAD}{}x\n}}", "-".repeat(100_000));
    assert!(must_fail(negs.as_bytes()).contains("nested too deeply"));
    let pows = format!("{HEAD}{}x\n}}", "x ^ ".repeat(100_000));
    assert!(must_fail(pows.as_bytes()).contains("nested too deeply"));
    // A 1 MB line of a left-associative sum: deep tree, no recursion in the parser.
    let long = format!("{HEAD}{}x\n}}", "x + ".repeat(250_000));
    assert!(long.len() > 1_000_000);
    assert!(must_fail(long.as_bytes()).contains("nested too deeply"));
    // A 1 MB line of garbage.
    let junk = "@".repeat(1_000_000);
    let r = must_fail(junk.as_bytes());
    assert!(r.len() < 10_000, "diagnostics for 1 MB of junk are {} bytes", r.len());
    // Out-of-range literals, in expressions and defaults.
    assert!(must_fail(format!("{HEAD}x * 1e39\n}}").as_bytes()).contains("out of range"));
    assert!(must_fail(b"kernel k {\n param a = 1e999999\n}").contains("out of range"));
    assert!(must_fail(b"kernel k {\n param s: u32 = 5000000000\n}").contains("whole number"));
}

#[test]
fn deep_but_legal_nesting_parses() {
    let src = format!("{HEAD}{}x{}\n}}", "(".repeat(200), ")".repeat(200));
    ir::parse(&src).unwrap();
}
