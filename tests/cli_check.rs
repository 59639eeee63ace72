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
fn check_reports_a_missing_file() {
    let out = normjit().args(["check", "no/such/file.nj"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}
