//! Embeds the pipeline library (`ir/**/*.nj` of the checkout) in the
//! extension: `normjit.library("norm/layer_norm")` must work wherever the
//! package is installed, without a checkout. Writes `$OUT_DIR/library.rs`,
//! a sorted table of (contract name, source text) pairs, one
//! `include_str!` per file, so cargo rebuilds when a file changes.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read the kernel library {}: {e}", dir.display()))
        .map(|e| e.expect("a readable directory entry").path())
        .collect();
    entries.sort();
    for e in entries {
        if e.is_dir() {
            collect(&e, out);
        } else if e.extension().is_some_and(|x| x == "nj") {
            out.push(e);
        }
    }
}

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let ir = manifest.join("..").join("ir");
    let ir = ir.canonicalize().unwrap_or_else(|e| {
        panic!(
            "the kernel library {} is missing ({e}): build the Python package from a checkout of normjit \
             (pip install ./python)",
            ir.display()
        )
    });
    println!("cargo:rerun-if-changed={}", ir.display());
    let mut files = Vec::new();
    collect(&ir, &mut files);
    assert!(!files.is_empty(), "no .nj files under {}", ir.display());
    let mut code = String::from(
        "/// The pipeline library: (contract name, source text), sorted by name.\n\
         pub static LIBRARY: &[(&str, &str)] = &[\n",
    );
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
        let rel = f.strip_prefix(&ir).expect("files are under ir/").with_extension("");
        let name: Vec<String> = rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
        let path = f.to_str().unwrap_or_else(|| panic!("non-UTF-8 path {}", f.display()));
        writeln!(code, "    ({:?}, include_str!({:?})),", name.join("/"), path).expect("writing to a String");
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("library.rs");
    std::fs::write(&out, code).unwrap_or_else(|e| panic!("cannot write {}: {e}", out.display()));
}
