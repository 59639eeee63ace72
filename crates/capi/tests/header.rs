//! `include/normjit.h` is generated from this crate by cbindgen and checked
//! in; this test regenerates it in memory and fails when the checked-in
//! file differs. With `NORMJIT_BLESS=1` it writes the file instead.

use std::path::Path;

const STALE: &str =
    "include/normjit.h is stale; regenerate with: NORMJIT_BLESS=1 cargo test -p normjit-capi --test header";

fn generate() -> String {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config =
        cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("crates/capi/cbindgen.toml parses");
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(crate_dir.join("src/lib.rs"))
        .generate()
        .expect("cbindgen generates the header");
    let mut out = Vec::new();
    bindings.write(&mut out);
    String::from_utf8(out).expect("the header is UTF-8")
}

#[test]
fn header_is_up_to_date() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../include/normjit.h");
    let fresh = generate();
    if std::env::var_os("NORMJIT_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&path, &fresh).expect("write include/normjit.h");
        return;
    }
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    if current != fresh {
        let first = current.lines().zip(fresh.lines()).position(|(a, b)| a != b).unwrap_or(0);
        panic!(
            "{STALE}\n(first difference at line {}: checked in {:?}, generated {:?})",
            first + 1,
            current.lines().nth(first).unwrap_or("<end of file>"),
            fresh.lines().nth(first).unwrap_or("<end of file>")
        );
    }
}

#[test]
fn header_declares_the_api() {
    let h = generate();
    for item in [
        "typedef struct nj_compiler nj_compiler;",
        "typedef struct nj_kernel nj_kernel;",
        "typedef struct nj_error nj_error;",
        "int32_t nj_kernel_run(",
        "int32_t nj_kernel_run_named(",
        "#define NJ_ERR_INVALID_HANDLE 103",
        "Thread safety.",
    ] {
        assert!(h.contains(item), "the generated header lacks `{item}`");
    }
}
