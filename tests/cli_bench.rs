//! `normjit bench`: the JSON contract, the table and the SVG chart on one
//! small pipeline, 16-bit storage (`--dtype`, `--compare-dtypes`: real
//! bytes, the roofline's streams in the tensors' types, the comparison of
//! elements per second), and user mistakes exiting 1 with a message before
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
    // Storage overrides.
    fails(
        &["ir/optim/prox_l1.nj", "--dims", "P=64", "--compare-dtypes"],
        "error: --compare-dtypes compares each kernel with its --dtype overrides: pass --dtype too",
    );
    fails(
        &["ir/optim/prox_l1.nj", "--dims", "P=64", "--dtype", "p=bf15"],
        "error: --dtype: `p=bf15`: unknown dtype `bf15`; expected f32, bf16 or f16",
    );
    fails(
        &["ir/optim/prox_l1.nj", "--dims", "P=64", "--dtype", "lr=bf16"],
        "error: --dtype: `lr` is a param: params are f64 scalars at the call and take no storage dtype",
    );
    fails(
        &["ir/optim/prox_l1.nj", "--dims", "P=64", "--dtype", "p=u32"],
        "error: --dtype: `p=u32`: `u32` is a param type, not a tensor storage type",
    );
    fails(
        &["ir/optim/prox_l1.nj", "--dims", "P=64", "--dtype", "x=bf16"],
        "error: --dtype: kernel `prox_l1` has no tensor `x` (its tensors: p, g)",
    );
    // Over several kernels, a name must be a tensor of one of them; a
    // param of one is refused there.
    fails(
        &["ir/optim/prox_l1.nj", "ir/optim/sgd.nj", "--dims", "P=64", "--dtype", "x=bf16"],
        "error: --dtype: no kernel benched has a tensor `x` (kernels: prox_l1, sgd)",
    );
    fails(
        &["ir/optim/prox_l1.nj", "ir/optim/sgd.nj", "--dims", "P=64", "--dtype", "p=bf16,momentum=bf16"],
        "error: --dtype: ir/optim/sgd.nj: `momentum` is a param",
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// bf16 activations for RMSNorm and bf16 params and grads for AdamW, each
/// next to its f32 self: rows per storage, real bytes, the roofline's
/// streams in the same types, and the comparison.
#[test]
fn storage_overrides_and_comparison() {
    let dir = tmpdir("dtype");
    let json = dir.join("out.json");
    let out = bench(&[
        "ir/norm/rms_norm.nj",
        "ir/optim/adamw.nj",
        "ir/optim/prox_l1.nj",
        "--size",
        "small",
        "--quick",
        "--threads",
        "1",
        "--dtype",
        "x=bf16,y=bf16,p=bf16,g=bf16",
        "--compare-dtypes",
        "--json",
        &s(&json),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("storage  --dtype x=bf16,y=bf16,p=bf16,g=bf16"), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("rms_norm") && l.contains(" x=bf16,y=bf16 ")), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("rms_norm") && l.contains(" f32 ")), "{stdout}");
    assert!(stdout.contains("storage comparison"), "{stdout}");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["dtype_overrides"], "x=bf16,y=bf16,p=bf16,g=bf16");
    let rows = v["results"].as_array().unwrap();
    let find = |kernel: &str, storage: &str, engine: &str| {
        rows.iter()
            .find(|r| r["kernel"] == kernel && r["storage"] == storage && r["engine"] == engine)
            .unwrap_or_else(|| panic!("no {kernel} {storage} {engine} row"))
    };
    // RMSNorm at the small size: N = 256, D = 1024.
    let elems = 256 * 1024u64;
    let jit = find("rms_norm", "x=bf16,y=bf16", "jit");
    assert_eq!(jit["as_written"], false);
    assert_eq!(jit["elements"], elems);
    // x read and y written in bf16, gamma in f32.
    assert_eq!(jit["min_bytes"].as_u64().unwrap(), 4 * elems + 4 * 1024);
    assert_eq!(find("rms_norm", "f32", "jit")["min_bytes"].as_u64().unwrap(), 8 * elems + 4 * 1024);
    let eps = positive(&jit["elements_per_s"], "elements_per_s");
    assert!((eps - elems as f64 / positive(&jit["median_s"], "median_s")).abs() <= 1e-9 * eps);
    let roof = find("rms_norm", "x=bf16,y=bf16", "roofline");
    assert_eq!(roof["stream_dtypes"], serde_json::json!({"read": ["bf16"], "inout": [], "write": ["bf16"]}));
    assert_eq!(roof["bytes"].as_u64().unwrap(), 4 * elems);
    assert_eq!(find("rms_norm", "f32", "roofline")["bytes"].as_u64().unwrap(), 8 * elems);
    // The rustc kernels are f32: no row with overrides.
    assert!(!rows.iter().any(|r| r["engine"] == "rustc" && r["storage"] != "f32"), "{rows:?}");
    find("rms_norm", "f32", "rustc");
    // AdamW: p and g in bf16, m and v in f32.
    let roof = find("adamw", "p=bf16,g=bf16", "roofline");
    assert_eq!(
        roof["stream_dtypes"],
        serde_json::json!({"read": ["bf16"], "inout": ["bf16", "f32", "f32"], "write": []})
    );
    let p = 1u64 << 18;
    assert_eq!(roof["bytes"].as_u64().unwrap(), 22 * p);
    assert_eq!(find("adamw", "p=bf16,g=bf16", "jit")["min_bytes"].as_u64().unwrap(), 22 * p);
    assert!(rows.iter().all(|r| r["finite"] == true), "{rows:?}");
    // The comparison: one per kernel the overrides change.
    let cmp = v["storage_comparison"].as_array().unwrap();
    let kernels: Vec<&str> = cmp.iter().map(|c| c["kernel"].as_str().unwrap()).collect();
    assert_eq!(kernels, ["rms_norm", "adamw", "prox_l1"]);
    for c in cmp {
        assert_eq!(c["base_storage"], "f32");
        let ratio = positive(&c["ratio"], "ratio");
        let want = positive(&c["elements_per_s"], "elements_per_s") / positive(&c["base_elements_per_s"], "base");
        assert!((ratio - want).abs() <= 1e-9 * ratio, "{c}");
        positive(&c["vs_roofline"], "vs_roofline");
        positive(&c["base_vs_roofline"], "base_vs_roofline");
    }
    assert!(
        (cmp[0]["byte_ratio"].as_f64().unwrap() - (8 * elems + 4096) as f64 / (4 * elems + 4096) as f64).abs() < 1e-12
    );
    assert!((cmp[1]["byte_ratio"].as_f64().unwrap() - 28.0 / 22.0).abs() < 1e-12);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Without `--compare-dtypes`, only the kernels with overrides are benched;
/// each override applies where its name is a tensor (dropout's `p` is a
/// param, left alone; sgd's `p` is a tensor).
#[test]
fn overrides_alone_replace_the_f32_kernels() {
    let dir = tmpdir("dtype-only");
    let json = dir.join("out.json");
    let out = bench(&[
        "ir/norm/layer_norm.nj",
        "ir/optim/sgd.nj",
        "ir/reg/dropout.nj",
        "ir/reg/spectral_norm.nj",
        "--size",
        "small",
        "--quick",
        "--threads",
        "1",
        "--dtype",
        "x=f16,y=f16,p=bf16",
        "--json",
        &s(&json),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let rows = v["results"].as_array().unwrap();
    let storage = |k: &str| {
        let mut s: Vec<&str> =
            rows.iter().filter(|r| r["kernel"] == k).map(|r| r["storage"].as_str().unwrap()).collect();
        s.dedup();
        s
    };
    assert_eq!(storage("layer_norm"), ["x=f16,y=f16"]);
    assert_eq!(storage("dropout"), ["x=f16,y=f16"]);
    assert_eq!(storage("sgd"), ["p=bf16"]);
    assert_eq!(storage("spectral_norm"), ["f32"]);
    assert!(rows.iter().filter(|r| r["kernel"] == "spectral_norm").all(|r| r["as_written"] == true));
    assert!(v["storage_comparison"].as_array().unwrap().is_empty());
    let roof = rows.iter().find(|r| r["kernel"] == "layer_norm" && r["engine"] == "roofline").unwrap();
    assert_eq!(roof["stream_dtypes"], serde_json::json!({"read": ["f16"], "inout": [], "write": ["f16"]}));
    let _ = std::fs::remove_dir_all(&dir);
}
