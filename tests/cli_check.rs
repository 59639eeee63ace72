//! `normjit check`: exit 0 on the library, exit 1 (never a panic's 101) with
//! a diagnostic on bad files.

use std::path::PathBuf;
use std::process::Command;

fn normjit() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_normjit"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

fn tmp(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("normjit-cli-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn check_accepts_the_whole_library() {
    let out = normjit().args(["check", "ir"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains(", 0 invalid"), "{stderr}");
    assert!(!stderr.contains("warning"), "the library must be free of warnings:\n{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.lines().filter(|l| l.starts_with("ok ")).count() >= 18, "{stdout}");
}

#[test]
fn check_rejects_bad_files_with_exit_1() {
    let mut random = vec![0u8; 4096];
    let mut s = 0x2545_f491_4f6c_dd1du64;
    for b in &mut random {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        *b = s as u8;
    }
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty.nj", vec![], "no kernel found"),
        ("random.nj", random, "error"),
        ("utf8.nj", b"kernel k {\xff}".to_vec(), "not valid UTF-8"),
        (
            "long.nj",
            format!("kernel k {{ dims N\n out y: f32[N]\n y = {}1\n}}", "1 + ".repeat(260_000)).into_bytes(),
            "nested too deeply",
        ),
        (
            "parens.nj",
            format!("kernel k {{ dims N\n out y: f32[N]\n y = {}1{}\n}}", "(".repeat(100_000), ")".repeat(100_000))
                .into_bytes(),
            "nested too deeply",
        ),
    ];
    for (name, bytes, want) in cases {
        let p = tmp(name, &bytes);
        let out = normjit().arg("check").arg(&p).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
        assert!(stderr.contains(want), "{name}: {stderr}");
        assert!(stderr.contains(&format!("{}:", p.display())), "{name}: no file:line:col in {stderr}");
    }
}

#[test]
fn check_accepts_the_whole_library_with_deny_warnings() {
    let out = normjit().args(["check", "--deny-warnings", "ir"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn warnings_are_printed_and_exit_0_unless_denied() {
    let file = "tests/warnings/adagrad_inout_read_after_store.nj";
    let out = normjit().args(["check", file]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains(&format!("{file}:13:26: warning: `s` is read after it is stored")), "{stderr}");
    assert!(stderr.contains("= help: to use the new value, bind it to a name: `s1 = s + g * g`"), "{stderr}");
    assert!(stderr.contains("1 valid, 0 invalid, 1 warning\n"), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok "), "a kernel with warnings is valid");

    let out = normjit().args(["check", "--deny-warnings", file]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("warning: `s` is read after it is stored"), "{stderr}");
    assert!(stderr.contains("(denied by --deny-warnings)"), "{stderr}");

    // The whole warning corpus: exit 0, one summary counting every warning.
    let out = normjit().args(["check", "tests/warnings"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let n = stderr.lines().filter(|l| l.contains(": warning: ")).count();
    assert!(n >= 7, "{stderr}");
    assert!(stderr.contains(&format!(", 0 invalid, {n} warnings")), "{stderr}");
}

#[test]
fn errors_are_not_mixed_with_warnings() {
    // An invalid file reports its errors only (and fails without --deny-warnings).
    let p = tmp("bad_and_unused.nj", b"kernel k {\n dims N\n in x: f32[N]\n out y: f32[N]\n param a\n y = z\n}\n");
    let out = normjit().arg("check").arg(&p).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("error: unknown name `z`"), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
}

#[test]
fn check_reports_a_missing_file() {
    let out = normjit().args(["check", "no/such/file.nj"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}
