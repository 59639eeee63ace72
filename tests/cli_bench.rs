//! `normjit bench`: the JSON contract, the table and the SVG chart on one
//! small pipeline, and user mistakes exiting 1 with a message before
//! anything is measured. Small sizes and `--quick` keep it fast; nothing
//! here checks speed (that is the benchmark's job, not a test's).

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_normjit"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("bench")
        .args(args)
        .output()
        .unwrap()
}

/// A fresh directory for one test.
fn tmpdir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("normjit-cli-bench-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

fn positive(v: &Value, what: &str) -> f64 {
    let x = v.as_f64().unwrap_or_else(|| panic!("{what} is not a number: {v}"));
    assert!(x.is_finite() && x > 0.0, "{what} = {x}");
    x
}

/// Checks that `text` is well-formed XML as far as elements go: every tag
/// closed in order, attributes quoted, nothing after the root.
fn assert_xmlish(text: &str) {
    let mut stack: Vec<String> = Vec::new();
    let mut rest = text.trim();
    assert!(rest.starts_with("<svg"), "{}", &rest[..rest.len().min(80)]);
    let mut closed_root = false;
    while let Some(i) = rest.find('<') {
        assert!(!closed_root, "content after the root element");
        let text_before = &rest[..i];
        assert!(!text_before.contains('>'), "stray `>` in text: {text_before}");
        let end = rest[i..].find('>').expect("an unterminated tag") + i;
        let tag = &rest[i + 1..end];
        assert!(tag.matches('"').count().is_multiple_of(2), "unbalanced quotes in <{tag}>");
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(stack.pop().as_deref(), Some(name.trim()), "mismatched </{name}>");
            closed_root = stack.is_empty();
        } else if !tag.ends_with('/') {
            let name = tag.split_whitespace().next().unwrap().to_string();
            stack.push(name);
        }
        rest = &rest[end + 1..];
    }
    assert!(stack.is_empty() && closed_root, "unclosed elements: {stack:?}");
    assert!(!rest.contains('<') && rest.trim().is_empty(), "trailing content: {rest}");
}

#[test]
fn json_table_and_plot() {
    let dir = tmpdir("json");
    let (json, svg) = (dir.join("out.json"), dir.join("out.svg"));
    let out =
        bench(&["ir/norm/layer_norm.nj", "--dims", "N=64,D=32", "--quick", "--json", &s(&json), "--plot", &s(&svg)]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    // The table: a line per thread count, the notes, the call overhead.
    assert!(stdout.contains("jit/roof") && stdout.contains("jit/interp"), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("layer_norm") && l.contains("N=64,D=32")), "{stdout}");
    assert!(stdout.contains("shared"), "the output says the machine is noisy: {stdout}");
    assert!(stdout.contains("us per call"), "{stdout}");

    let v: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let m = &v["machine"];
    assert!(m["cpu"].as_str().is_some_and(|c| !c.is_empty()), "{m}");
    assert!(m["cores"].as_u64().is_some_and(|c| c >= 1), "{m}");
    assert!(m["jit_isa_flags"].is_string() && m["l2_bytes"].as_u64().is_some_and(|b| b > 0), "{m}");

    let results = v["results"].as_array().unwrap();
    let mut engines = Vec::new();
    for r in results {
        assert_eq!(r["kernel"], "layer_norm", "{r}");
        assert_eq!(r["dims"], serde_json::json!({"N": 64, "D": 32}), "{r}");
        assert_eq!(r["size"], "custom", "{r}");
        let threads = r["threads"].as_u64().unwrap();
        assert!(threads >= 1, "{r}");
        let engine = r["engine"].as_str().unwrap();
        assert!(["jit", "interp", "rustc", "roofline"].contains(&engine), "{r}");
        let t = positive(&r["median_s"], "median_s");
        let gbs = positive(&r["gbs"], "gbs");
        let min_bytes = positive(&r["min_bytes"], "min_bytes");
        // x, gamma, beta read, y written: (2 * 64 * 32 + 2 * 32) * 4 bytes.
        assert_eq!(min_bytes, 16640.0, "{r}");
        if engine == "roofline" {
            let bytes = positive(&r["bytes"], "bytes");
            assert!((gbs - bytes / t / 1e9).abs() <= 1e-9 * gbs, "{r}");
            assert_eq!(r["streams"], serde_json::json!({"read": 1, "inout": 0, "write": 1}), "{r}");
        } else {
            assert!((gbs - min_bytes / t / 1e9).abs() <= 1e-9 * gbs, "{r}");
        }
        if engine == "jit" {
            positive(&r["compile_us"], "compile_us");
            positive(&r["vs_roofline"], "vs_roofline");
            positive(&r["vs_rustc"], "vs_rustc");
            if threads == 1 {
                positive(&r["vs_interp"], "vs_interp");
            }
        } else {
            assert!(r["compile_us"].is_null(), "{r}");
        }
        assert_eq!(r["finite"], true, "{r}");
        assert_eq!(r["placement"], "staggered", "{r}");
        engines.push((engine.to_string(), threads));
    }
    for e in ["jit", "interp", "rustc", "roofline"] {
        assert!(engines.contains(&(e.to_string(), 1)), "no {e} row at 1 thread: {engines:?}");
    }
    assert!(!engines.iter().any(|(e, t)| e == "interp" && *t != 1), "the interpreter is single-threaded");
    let o = &v["call_overhead"];
    positive(&o["jit_us"], "call_overhead.jit_us");
    positive(&o["tiny_jit_us"], "call_overhead.tiny_jit_us");
    assert_eq!(o["dims"], serde_json::json!({"N": 8, "D": 4096}));

    let text = std::fs::read_to_string(&svg).unwrap();
    assert_xmlish(&text);
    assert!(text.contains("layer_norm") && text.contains("GB/s"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn optimizer_with_threads() {
    let dir = tmpdir("optim");
    let json = dir.join("out.json");
    let out = bench(&["ir/optim/prox_l1.nj", "--dims", "P=5000", "--quick", "--threads", "1", "--json", &s(&json)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let results = v["results"].as_array().unwrap();
    assert!(results.iter().all(|r| r["threads"] == 1 && r["kernel"] == "prox_l1"), "{results:?}");
    // p in place, g read: the roofline has the same streams.
    let roof = results.iter().find(|r| r["engine"] == "roofline").unwrap();
    assert_eq!(roof["streams"], serde_json::json!({"read": 1, "inout": 1, "write": 0}));
    assert!(v["call_overhead"].is_null());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `bench ARGS`, expecting exit code 1 and an error naming `needle`.
fn fails(args: &[&str], needle: &str) {
    let out = bench(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
    assert!(stderr.contains("error") && stderr.contains(needle), "{args:?}: {stderr}");
    assert!(out.stdout.is_empty(), "{args:?}: nothing is measured");
}

#[test]
fn mistakes_exit_1() {
    let dir = tmpdir("mistakes");
    fails(&["no/such/kernel.nj", "--quick"], "no/such/kernel.nj");
    let bad = dir.join("bad.nj");
    std::fs::write(&bad, "kernel k {\n  dims N\n  in x: f32[N]\n  out y: f32[N]\n  y = x * nope\n}\n").unwrap();
    fails(&[&s(&bad), "--quick"], "nope");
    fails(&["ir/optim/prox_l1.nj", "--dims", "Q=5", "--quick"], "Q");
    fails(&["ir/optim/prox_l1.nj", "--dims", "P=abc", "--quick"], "P=abc");
    fails(&["ir/optim/prox_l1.nj", "--dims", "P", "--quick"], "NAME=VALUE");
    // Every dim of every kernel must be given.
    fails(&["ir/norm/layer_norm.nj", "--dims", "N=4", "--quick"], "D");
    fails(&["ir/optim/prox_l1.nj", "--dims", "P=64", "--threads", "0"], "--threads");
    let nowhere = dir.join("no/such/dir/out.json");
    fails(&["ir/optim/prox_l1.nj", "--dims", "P=64", "--json", &s(&nowhere)], "--json");
    let _ = std::fs::remove_dir_all(&dir);
}
