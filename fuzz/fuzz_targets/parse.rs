//! Arbitrary bytes into the parser: it must never panic (nor overflow the
//! stack), every error must render, and a kernel that parses must verify
//! and print to text that parses back to an equal kernel.
#![no_main]

use libfuzzer_sys::fuzz_target;
use normjit::ir;

fuzz_target!(|data: &[u8]| {
    match ir::parse_bytes(data) {
        Ok(k) => {
            if let Err(e) = ir::verify(&k) {
                panic!("a parsed kernel does not verify: {e:?}\n{k}");
            }
            let printed = k.to_string();
            let k2 = ir::parse(&printed)
                .unwrap_or_else(|d| panic!("printed kernel does not parse:\n{printed}\n{}", d.render("printed.nj", &printed)));
            assert!(k == k2, "print -> parse changed the kernel:\n{printed}\n{k:?}\n{k2:?}");
        }
        Err(d) => {
            assert!(!d.0.is_empty(), "an error without diagnostics");
            let _ = d.render("fuzz.nj", &String::from_utf8_lossy(data));
        }
    }
});
