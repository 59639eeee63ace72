//! `normjit run`: the JSON and text reports, `--input`/`--output` npy round
//! trips checked against independent computations, `inout` and 0-dim
//! outputs, 16-bit storage (`--dtype`: bf16 and f16 outputs within 1 ulp of
//! the f64 reference, the JIT equal to the loop IR bit for bit, bf16 and
//! f16 files in and out), and every user mistake exiting 1 with a message
//! that names it and writing nothing.

mod common;

use common::python;
use normjit::ir::DType;
use normjit_cli::npy::{self, read_as, read_f32, write_f32, Bf16Format};
use normjit_cli::storage::{ulp_distance, Elements};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn normjit() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_normjit"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

/// Runs `normjit run ARGS`.
fn run(args: &[&str]) -> Output {
    normjit().arg("run").args(args).output().unwrap()
}

/// A fresh directory for one test.
fn tmpdir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("normjit-cli-run-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// Runs with `--json`, expecting success and exactly one JSON object on stdout.
fn run_json(args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = run(&all);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{args:?}: {stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let v: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert!(v.is_object(), "{stdout}");
    v
}

/// Deterministic values in about [-2, 2] (or [0, 1) when `nonneg`).
fn values(n: usize, seed: u64, nonneg: bool) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let u = (s >> 40) as f32 / (1u64 << 24) as f32;
            if nonneg {
                u
            } else {
                4.0 * u - 2.0
            }
        })
        .collect()
}

/// The bytes of an npy file with the given header dict, padded as NumPy
/// pads it, followed by `data`.
fn npy_file(dict: &str, data: &[u8]) -> Vec<u8> {
    let mut header = dict.as_bytes().to_vec();
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(b' ');
    }
    header.push(b'\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header);
    out.extend(data);
    out
}

fn f4(shape: &str, data: &[f32]) -> Vec<u8> {
    npy_file(
        &format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}"),
        &data.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<_>>(),
    )
}

/// Layer norm in f64, row by row.
fn layer_norm(x: &[f32], gamma: &[f32], beta: &[f32], eps: f64) -> Vec<f64> {
    let d = gamma.len();
    let mut y = Vec::new();
    for row in x.chunks(d) {
        let mu = row.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
        let var = row.iter().map(|&v| (v as f64 - mu).powi(2)).sum::<f64>() / d as f64;
        let r = 1.0 / (var + eps).sqrt();
        y.extend(row.iter().zip(gamma).zip(beta).map(|((&v, &g), &b)| (v as f64 - mu) * r * g as f64 + b as f64));
    }
    y
}

fn assert_close(got: &[f32], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!((g as f64 - w).abs() <= tol * (1.0 + w.abs()), "{what}[{i}]: {g} vs {w}");
    }
}

#[test]
fn json_report_for_layer_norm() {
    let v = run_json(&["ir/norm/layer_norm.nj", "--dims", "N=64,D=1000"]);
    assert_eq!(v["kernel"], "layer_norm");
    assert_eq!(v["dims"]["N"], 64);
    assert_eq!(v["dims"]["D"], 1000);
    assert_eq!(v["engine"], "both");
    assert_eq!(v["seed"], 0);
    assert!(v["compile_us"].as_f64().unwrap() > 0.0);
    for e in ["jit", "interp", "jit_vs_interp"] {
        let rel = v["outputs"]["y"][e]["max_rel_err"].as_f64().unwrap();
        assert!(rel < 1e-4, "{e}: {rel}");
    }
    assert_eq!(v["params"]["eps"].as_f64().unwrap(), 1e-5);
    assert_eq!(v["inputs"]["x"]["generated"], true);
    let outputs = v["outputs"].as_object().unwrap();
    assert_eq!(outputs.keys().collect::<Vec<_>>(), ["y"]);
    let y = &outputs["y"];
    assert_eq!(y["shape"], serde_json::json!([64, 1000]));
    let abs = y["max_abs_err"].as_f64().unwrap();
    let rel = y["max_rel_err"].as_f64().unwrap();
    // f32 against f64 over 64 000 elements: rounding shows, but is small.
    assert!(abs > 0.0 && abs < 1e-4, "{abs}");
    assert!(rel > 0.0 && rel < 1e-4, "{rel}");
    assert!(y["rel_err_floor"].as_f64().unwrap() > 0.5);
    let t = v["time_s"].as_f64().unwrap();
    assert!(t > 0.0 && t < 1.0, "{t}");
    let reps = v["reps"].as_u64().unwrap();
    assert!((1..=50).contains(&reps), "{reps}");
}

#[test]
fn text_report_for_layer_norm() {
    let out = run(&["ir/norm/layer_norm.nj", "--dims", "N=8,D=100", "--param", "eps=1e-4"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("kernel   layer_norm (ir/norm/layer_norm.nj)\n"), "{text}");
    assert!(text.contains("dims     N=8, D=100\n"), "{text}");
    assert!(text.contains("params   eps=1e-4\n"), "{text}");
    assert!(text.contains("engine   both (threads "), "{text}");
    assert!(text.contains("time     jit "), "{text}");
    assert!(text.contains("time     interp "), "{text}");
    assert!(text.contains(" per call (median of "), "{text}");
    let head = text.lines().find(|l| l.starts_with("output")).unwrap();
    assert!(head.contains("shape") && head.contains("max abs/rel error"), "{text}");
    assert!(text.contains("dtypes   x f32, gamma f32, beta f32, y f32\n"), "{text}");
    let head = text.lines().find(|l| l.starts_with("output")).unwrap();
    assert!(head.contains("dtype"), "{text}");
    let row: Vec<&str> = text.lines().find(|l| l.starts_with("y ")).unwrap().split_whitespace().collect();
    assert_eq!(row[..5], ["y", "f32", "[8,", "100]", "jit"], "{text}");
    for (i, engine) in [(5, "jit"), (7, "interp"), (9, "jit-vs-interp")] {
        assert_eq!(row[i - 1], engine, "{text}");
        let rel: f64 = row[i].split('/').nth(1).unwrap().parse().unwrap();
        assert!(rel < 1e-4, "{engine}: {text}");
    }
    // f32 against f64: no ulp count (the rule is the relative error); the
    // engines against each other: bits that differ.
    assert!(!row[5].ends_with("ulp") && row[6] == "interp", "{text}");
    assert!(text.contains(" differ"), "{text}");
}

#[test]
fn input_and_output_files_round_trip() {
    let dir = tmpdir("round-trip");
    let (n, d) = (7, 33);
    let x = values(n * d, 1, false);
    let gamma = values(d, 2, false);
    let beta = values(d, 3, false);
    let (a, g, b, y) = (dir.join("a.npy"), dir.join("g.npy"), dir.join("beta.npy"), dir.join("b.npy"));
    write_f32(&a, &[n, d], &x).unwrap();
    write_f32(&g, &[d], &gamma).unwrap();
    write_f32(&b, &[d], &beta).unwrap();
    // No --dims: N and D come from the shapes.
    let v = run_json(&[
        "ir/norm/layer_norm.nj",
        "--input",
        &format!("x={}", s(&a)),
        "--input",
        &format!("gamma={}", s(&g)),
        "--input",
        &format!("beta={}", s(&b)),
        "--output",
        &format!("y={}", s(&y)),
        "--param",
        "eps=1e-4",
    ]);
    assert_eq!((v["dims"]["N"].as_u64(), v["dims"]["D"].as_u64()), (Some(7), Some(33)));
    assert_eq!(v["inputs"]["x"]["path"], s(&a));
    assert_eq!(v["outputs"]["y"]["path"], s(&y));
    let out = read_f32(&y).unwrap();
    assert_eq!(out.shape, vec![n, d]);
    assert_close(&out.data, &layer_norm(&x, &gamma, &beta, 1e-4), 1e-5, "y");
    // The reported error is that of the file's values against f64.
    let want = layer_norm(&x, &gamma, &beta, 1e-4);
    let max_abs = out.data.iter().zip(&want).map(|(&g, &w)| (g as f64 - w).abs()).fold(0.0, f64::max);
    let reported = v["outputs"]["y"]["max_abs_err"].as_f64().unwrap();
    assert!((reported - max_abs).abs() <= 1e-7 + 1e-3 * max_abs, "{reported} vs {max_abs}");
    // Only the inputs and the output are in the directory (no temp files).
    let mut names: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["a.npy", "b.npy", "beta.npy", "g.npy"]);
}

#[test]
fn generated_inputs_follow_the_seed() {
    let dir = tmpdir("seed");
    let out = |seed: &str, name: &str| {
        let p = dir.join(name);
        run_json(&["ir/norm/rms_norm.nj", "--dims", "N=4,D=16", "--seed", seed, "--output", &format!("y={}", s(&p))]);
        read_f32(&p).unwrap().data
    };
    let a = out("1", "a.npy");
    assert_eq!(a.len(), 64);
    assert_eq!(a, out("1", "b.npy"));
    assert_ne!(a, out("2", "c.npy"));
    // A given input replaces only its own generated tensor.
    let x = dir.join("x.npy");
    write_f32(&x, &[4, 16], &values(64, 9, false)).unwrap();
    let v = run_json(&["ir/norm/rms_norm.nj", "--input", &format!("x={}", s(&x))]);
    assert_eq!(v["inputs"]["x"]["path"], s(&x));
    assert_eq!(v["inputs"]["gamma"]["generated"], true);
}

/// AdamW in f64 with the kernel's defaults: the new (p, m, v).
fn adamw(p: &[f32], m: &[f32], v: &[f32], g: &[f32], t: f64) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (lr, b1, b2, eps, wd) = (1e-3, 0.9, 0.999, 1e-8, 0.01);
    let step = lr / (1.0 - f64::powf(b1, t));
    let bc2 = (1.0 - f64::powf(b2, t)).sqrt();
    let mut out = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..p.len() {
        let (p, m, v, g) = (p[i] as f64, m[i] as f64, v[i] as f64, g[i] as f64);
        let m1 = b1 * m + (1.0 - b1) * g;
        let v1 = b2 * v + (1.0 - b2) * g * g;
        out.0.push(p * (1.0 - lr * wd) - step * m1 / (v1.sqrt() / bc2 + eps));
        out.1.push(m1);
        out.2.push(v1);
    }
    out
}

#[test]
fn inout_tensors_can_be_saved_and_updated_in_place() {
    let dir = tmpdir("inout");
    let n = 257;
    let (p, m, v, g) = (values(n, 11, false), values(n, 12, false), values(n, 13, true), values(n, 14, false));
    let path = |name: &str| dir.join(name);
    for (name, data) in [("p.npy", &p), ("m.npy", &m), ("v.npy", &v), ("g.npy", &g)] {
        write_f32(&path(name), &[n], data).unwrap();
    }
    let inputs = |pfile: &str| {
        vec![
            "--input".to_string(),
            format!("p={}", s(&path(pfile))),
            "--input".into(),
            format!("m={}", s(&path("m.npy"))),
            "--input".into(),
            format!("v={}", s(&path("v.npy"))),
            "--input".into(),
            format!("g={}", s(&path("g.npy"))),
        ]
    };
    let (p1, m1, v1) = adamw(&p, &m, &v, &g, 3.0);
    let mut args = vec!["ir/optim/adamw.nj".to_string(), "--param".into(), "t=3".into()];
    args.extend(inputs("p.npy"));
    args.extend([
        "--output".into(),
        format!("p={}", s(&path("p1.npy"))),
        "--output".into(),
        format!("m={}", s(&path("m1.npy"))),
    ]);
    args.extend(["--output".into(), format!("v={}", s(&path("v1.npy")))]);
    let j = run_json(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(j["outputs"].as_object().unwrap().len(), 3);
    assert!(j["outputs"]["p"]["max_rel_err"].as_f64().unwrap() < 1e-5, "{j}");
    let got = read_f32(&path("p1.npy")).unwrap();
    assert_eq!(got.shape, vec![n]);
    assert_close(&got.data, &p1, 1e-6, "p");
    assert_close(&read_f32(&path("m1.npy")).unwrap().data, &m1, 1e-6, "m");
    assert_close(&read_f32(&path("v1.npy")).unwrap().data, &v1, 1e-6, "v");
    // The parameter file updated in place: read as input, replaced as output.
    let mut args = vec!["ir/optim/adamw.nj".to_string(), "--param".into(), "t=3".into()];
    args.extend(inputs("p.npy"));
    args.extend(["--output".into(), format!("p={}", s(&path("p.npy")))]);
    run_json(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(read_f32(&path("p.npy")).unwrap().data, got.data);
}

#[test]
fn zero_dim_and_zero_length_outputs() {
    let dir = tmpdir("shapes");
    // spectral_norm's sigma is a 0-dim tensor: u1 . (W v1) after one step.
    let (mm, kk) = (5, 3);
    let w = values(mm * kk, 21, false);
    let u = values(mm, 22, false);
    let v = values(kk, 23, false);
    let (wp, up, vp, sp) = (dir.join("w.npy"), dir.join("u.npy"), dir.join("v.npy"), dir.join("sigma.npy"));
    write_f32(&wp, &[mm, kk], &w).unwrap();
    write_f32(&up, &[mm], &u).unwrap();
    write_f32(&vp, &[kk], &v).unwrap();
    let j = run_json(&[
        "ir/reg/spectral_norm.nj",
        "--input",
        &format!("w={}", s(&wp)),
        "--input",
        &format!("u={}", s(&up)),
        "--input",
        &format!("v={}", s(&vp)),
        "--output",
        &format!("sigma={}", s(&sp)),
    ]);
    assert_eq!(j["outputs"]["sigma"]["shape"], serde_json::json!([]));
    let w64 = |i: usize, k: usize| w[i * kk + k] as f64;
    let wtu: Vec<f64> = (0..kk).map(|k| (0..mm).map(|i| w64(i, k) * u[i] as f64).sum()).collect();
    let nv = wtu.iter().map(|x| x * x).sum::<f64>().sqrt();
    let v1: Vec<f64> = wtu.iter().map(|x| x / nv).collect();
    let wv: Vec<f64> = (0..mm).map(|i| (0..kk).map(|k| w64(i, k) * v1[k]).sum()).collect();
    let nu = wv.iter().map(|x| x * x).sum::<f64>().sqrt();
    let sigma: f64 = wv.iter().map(|x| x / nu * x).sum();
    let got = read_f32(&sp).unwrap();
    assert_eq!(got.shape, Vec::<usize>::new());
    assert_close(&got.data, &[sigma], 1e-5, "sigma");
    // Zero rows: an empty output of shape (0, 4).
    let yp = dir.join("y.npy");
    let j = run_json(&["ir/norm/layer_norm.nj", "--dims", "N=0,D=4", "--output", &format!("y={}", s(&yp))]);
    assert_eq!(j["outputs"]["y"]["max_abs_err"], 0.0);
    let got = read_f32(&yp).unwrap();
    assert_eq!((got.shape, got.data.len()), (vec![0, 4], 0));
}

/// RMSNorm in f64, row by row.
fn rms_norm(x: &[f32], gamma: &[f32], eps: f64) -> Vec<f64> {
    let d = gamma.len();
    let mut y = Vec::new();
    for row in x.chunks(d) {
        let ms = row.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / d as f64;
        let r = 1.0 / (ms + eps).sqrt();
        y.extend(row.iter().zip(gamma).map(|(&v, &g)| v as f64 * r * g as f64));
    }
    y
}

/// The done-when report of the issue, at a test's size: bf16 x and y, every
/// engine; the JSON states the dtypes, ulps and agreement.
#[test]
fn bf16_outputs_are_within_one_ulp_and_the_jit_equals_the_loop_ir() {
    let v = run_json(&[
        "ir/norm/rms_norm.nj",
        "--dtype",
        "x=bf16,y=bf16",
        "--dims",
        "N=64,D=1000",
        "--engine",
        "all",
        "--threads",
        "2",
    ]);
    assert_eq!(v["dtypes"], serde_json::json!({"x": "bf16", "gamma": "f32", "y": "bf16"}));
    assert_eq!(v["inputs"]["x"]["dtype"], "bf16");
    assert_eq!(v["inputs"]["gamma"]["dtype"], "f32");
    let y = &v["outputs"]["y"];
    assert_eq!(y["dtype"], "bf16");
    assert_eq!(y["ulp_tolerance"], 1);
    assert_eq!(y["within_tolerance"], true, "{y}");
    for e in ["jit", "interp", "loop"] {
        let ulp = y[e]["max_ulp"].as_u64().unwrap_or_else(|| panic!("{e}: {y}"));
        assert!(ulp <= 1, "{e}: {y}");
        // Errors are bf16's: about 2^-8 relative, not f32's 1e-7.
        let rel = y[e]["max_rel_err"].as_f64().unwrap();
        assert!(rel > 1e-4 && rel < 1e-2, "{e}: {y}");
    }
    assert_eq!(y["max_ulp"], y["jit"]["max_ulp"]);
    // The JIT runs the loop IR's plan: the same bits.
    assert_eq!(y["jit_vs_loop"]["identical"], true, "{y}");
    assert_eq!(y["jit_vs_loop"]["mismatches"], 0, "{y}");
    assert_eq!(y["jit_vs_loop"]["max_ulp"], 0, "{y}");
    // The interpreter sums in another order: at most a few elements round
    // the other way, by one ulp.
    assert!(y["jit_vs_interp"]["max_ulp"].as_u64().unwrap() <= 1, "{y}");
    assert!(y["jit_vs_interp"]["mismatches"].as_u64().unwrap() < 64 * 1000 / 100, "{y}");
    assert!(v["time_s_loop"].as_f64().unwrap() > 0.0);

    // The text says the same.
    let out = run(&["ir/norm/rms_norm.nj", "--dtype", "x=bf16,y=bf16", "--dims", "N=8,D=100", "--engine", "all"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("dtypes   x bf16, gamma f32, y bf16\n"), "{text}");
    let row: Vec<&str> = text.lines().find(|l| l.starts_with("y ")).unwrap().split_whitespace().collect();
    assert_eq!(row[..5], ["y", "bf16", "[8,", "100]", "jit"], "{text}");
    assert!(row[6] == "0ulp" || row[6] == "1ulp", "{text}");
    let jl = row.iter().position(|w| *w == "jit-vs-loop").unwrap();
    assert_eq!(row[jl + 2..jl + 5], ["0ulp", "0", "differ"], "{text}");
    assert!(text.contains("tolerance 1 ulp"), "{text}");
}

#[test]
fn f16_and_stochastic_bf16_outputs() {
    let v = run_json(&["ir/norm/layer_norm.nj", "--dtype", "x=f16,y=f16", "--dims", "N=16,D=300", "--engine", "all"]);
    let y = &v["outputs"]["y"];
    assert_eq!(y["dtype"], "f16");
    assert!(y["max_ulp"].as_u64().unwrap() <= 1, "{y}");
    assert_eq!(y["jit_vs_loop"]["identical"], true, "{y}");
    // f16 has 10 fraction bits: errors near 2^-11 relative.
    assert!(y["max_rel_err"].as_f64().unwrap() < 2e-3, "{y}");

    // AdamW with bf16 parameters rounded stochastically and bf16 grads;
    // the seed is a param the override adds, so it must be given.
    let args = |seed: &str| {
        run_json(&[
            "ir/optim/adamw.nj",
            "--dtype",
            "p=bf16:stochastic(seed),g=bf16",
            "--dims",
            "P=20000",
            "--param",
            &format!("t=1,lr=0.01,seed={seed}"),
            "--engine",
            "all",
        ])
    };
    let v = args("7");
    assert_eq!(v["dtypes"]["p"], "bf16:stochastic(seed)");
    assert_eq!(v["dtypes"]["m"], "f32");
    assert_eq!(v["params"]["seed"], 7.0);
    let p = &v["outputs"]["p"];
    assert_eq!((p["dtype"].as_str(), p["rounding"].as_str()), (Some("bf16"), Some("stochastic(seed)")));
    // The reference rounds with the same random bits.
    assert!(p["max_ulp"].as_u64().unwrap() <= 1, "{p}");
    assert_eq!(p["jit_vs_loop"]["identical"], true, "{p}");
    for t in ["m", "v"] {
        assert_eq!(v["outputs"][t]["dtype"], "f32");
        assert!(v["outputs"][t].get("max_ulp").is_none(), "f32 against f64: no ulps");
        assert_eq!(v["outputs"][t]["jit_vs_loop"]["identical"], true);
    }
}

#[test]
fn bf16_and_f16_files_in_and_out() {
    let dir = tmpdir("narrow-files");
    let (n, d) = (6, 40);
    // bf16 x (values of the type), f32 gamma.
    let x: Vec<f32> = values(n * d, 31, false).iter().map(|&v| DType::BF16.round_f32(v)).collect();
    let gamma = values(d, 32, false);
    let (xb, xu, g) = (dir.join("x_bf16.npy"), dir.join("x_u2.npy"), dir.join("g.npy"));
    npy::write(&xb, &[n, d], Elements::encode(DType::BF16, &x).view(), Bf16Format::MlDtypes).unwrap();
    npy::write(&xu, &[n, d], Elements::encode(DType::BF16, &x).view(), Bf16Format::RawU2).unwrap();
    write_f32(&g, &[d], &gamma).unwrap();
    let (yb, yu) = (dir.join("y_bf16.npy"), dir.join("y_u2.npy"));
    let go = |xfile: &Path, yfile: &Path, extra: &[&str]| {
        let mut a = vec![
            "ir/norm/rms_norm.nj".to_string(),
            "--dtype".into(),
            "x=bf16,y=bf16".into(),
            "--input".into(),
            format!("x={}", s(xfile)),
            "--input".into(),
            format!("gamma={}", s(&g)),
            "--output".into(),
            format!("y={}", s(yfile)),
        ];
        a.extend(extra.iter().map(|e| e.to_string()));
        run_json(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let v = go(&xb, &yb, &[]);
    assert_eq!(v["inputs"]["x"]["path"], s(&xb));
    assert_eq!(v["inputs"]["x"]["dtype"], "bf16");
    // The output file is bf16 as np.save writes ml_dtypes.bfloat16.
    let bytes = std::fs::read(&yb).unwrap();
    assert!(String::from_utf8_lossy(&bytes[..128]).contains("'descr': '<V2'"), "{:?}", &bytes[..128]);
    let y = read_as(&yb, DType::BF16, "y", Bf16Format::MlDtypes).unwrap();
    assert_eq!(y.shape, vec![n, d]);
    assert_eq!(y.data.dtype(), DType::BF16);
    // Within one bf16 ulp of an independent f64 computation, rounded.
    let want = rms_norm(&x, &gamma, 1e-6);
    for (i, (&got, &w)) in y.data.values().iter().zip(&want).enumerate() {
        let w = DType::BF16.round_f64(w) as f32;
        assert!(ulp_distance(DType::BF16, got, w).is_some_and(|u| u <= 1), "y[{i}]: {got} vs {w}");
    }
    // Raw bits, in and out: the same bits, as uint16.
    go(&xu, &yu, &["--bf16-as-u2"]);
    let bytes = std::fs::read(&yu).unwrap();
    assert!(String::from_utf8_lossy(&bytes[..128]).contains("'descr': '<u2'"));
    let yu_data = read_as(&yu, DType::BF16, "y", Bf16Format::RawU2).unwrap();
    assert_eq!(yu_data.data, y.data);

    // f16: a float16 file in, float16 out.
    let xh: Vec<f32> = x.iter().map(|&v| DType::F16.round_f32(v)).collect();
    let (xf, yf) = (dir.join("x_f16.npy"), dir.join("y_f16.npy"));
    npy::write(&xf, &[n, d], Elements::encode(DType::F16, &xh).view(), Bf16Format::MlDtypes).unwrap();
    let mut a = vec![
        "ir/norm/rms_norm.nj".to_string(),
        "--dtype".into(),
        "x=f16,y=f16".into(),
        "--input".into(),
        format!("x={}", s(&xf)),
        "--input".into(),
        format!("gamma={}", s(&g)),
        "--output".into(),
        format!("y={}", s(&yf)),
    ];
    a.push("--engine".into());
    a.push("interp".into());
    let v = run_json(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(v["outputs"]["y"]["dtype"], "f16");
    let bytes = std::fs::read(&yf).unwrap();
    assert!(String::from_utf8_lossy(&bytes[..128]).contains("'descr': '<f2'"));
    let y = read_as(&yf, DType::F16, "y", Bf16Format::MlDtypes).unwrap();
    let want = rms_norm(&xh, &gamma, 1e-6);
    for (i, (&got, &w)) in y.data.values().iter().zip(&want).enumerate() {
        let w = DType::F16.round_f64(w) as f32;
        assert!(ulp_distance(DType::F16, got, w).is_some_and(|u| u <= 1), "y[{i}]: {got} vs {w}");
    }
}

/// Every mistake: exit 1, `error: ` and the expected words on stderr, and
/// no output file (nor temporary file) created, an existing one untouched.
#[test]
fn every_mistake_exits_1_and_writes_nothing() {
    let dir = tmpdir("errors");
    let f = |name: &str| s(&dir.join(name));
    let x45 = values(20, 1, false);
    write_f32(&dir.join("x45.npy"), &[4, 5], &x45).unwrap();
    write_f32(&dir.join("g6.npy"), &[6], &values(6, 2, false)).unwrap();
    write_f32(&dir.join("flat.npy"), &[20], &x45).unwrap();
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("trunc_data.npy", f4("(4, 5)", &x45)[..140].to_vec()),
        ("trunc_header.npy", f4("(4, 5)", &x45)[..30].to_vec()),
        ("corrupt.npy", npy_file("{'descr': '<f4', 'fortran_order': False}", &[0; 80])),
        ("huge.npy", b"\x93NUMPY\x02\x00\xff\xff\xff\x7f{'descr'".to_vec()),
        ("f8.npy", npy_file("{'descr': '<f8', 'fortran_order': False, 'shape': (4, 5), }", &[0; 160])),
        ("i4.npy", npy_file("{'descr': '<i4', 'fortran_order': False, 'shape': (4, 5), }", &[0; 80])),
        ("fortran.npy", npy_file("{'descr': '<f4', 'fortran_order': True, 'shape': (4, 5), }", &[0; 80])),
        ("text.npy", b"x,y\n1,2\n".to_vec()),
        ("f2.npy", npy_file("{'descr': '<f2', 'fortran_order': False, 'shape': (4, 5), }", &[0; 40])),
        ("v2.npy", npy_file("{'descr': '<V2', 'fortran_order': False, 'shape': (4, 5), }", &[0; 40])),
        ("u2.npy", npy_file("{'descr': '<u2', 'fortran_order': False, 'shape': (4, 5), }", &[0; 40])),
        ("v2_short.npy", npy_file("{'descr': '<V2', 'fortran_order': False, 'shape': (4, 5), }", &[0; 38])),
    ];
    for (name, bytes) in &files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    // An existing output that a failed run must leave alone.
    write_f32(&dir.join("keep.npy"), &[1], &[42.0]).unwrap();
    let keep = std::fs::read(dir.join("keep.npy")).unwrap();
    let ln = "ir/norm/layer_norm.nj";
    let inp = |spec: &str| format!("x={}", f(spec));
    let cases: Vec<(Vec<String>, Vec<String>)> = vec![
        (vec![ln.into(), "--input".into(), inp("nope.npy")], vec![f("nope.npy"), "no such file".into()]),
        (vec![ln.into(), "--input".into(), inp("trunc_data.npy")], vec![f("trunc_data.npy"), "truncated data".into()]),
        (
            vec![ln.into(), "--input".into(), inp("trunc_header.npy")],
            vec![f("trunc_header.npy"), "truncated header".into()],
        ),
        (
            vec![ln.into(), "--input".into(), inp("corrupt.npy")],
            vec![f("corrupt.npy"), "corrupt header".into(), "shape".into()],
        ),
        (vec![ln.into(), "--input".into(), inp("huge.npy")], vec![f("huge.npy"), "2147483647 bytes".into()]),
        (vec![ln.into(), "--input".into(), inp("f8.npy")], vec![f("f8.npy"), "'<f8' (float64)".into()]),
        (vec![ln.into(), "--input".into(), inp("i4.npy")], vec![f("i4.npy"), "'<i4' (int32)".into()]),
        (vec![ln.into(), "--input".into(), inp("fortran.npy")], vec![f("fortran.npy"), "Fortran order".into()]),
        (vec![ln.into(), "--input".into(), inp("text.npy")], vec![f("text.npy"), "not an npy file".into()]),
        (vec![ln.into(), "--input".into(), format!("x={}", s(&dir))], vec![s(&dir), "cannot read".into()]),
        // Storage types: of the tensor (--dtype) against the file's.
        (
            vec![ln.into(), "--input".into(), inp("f2.npy")],
            vec![format!(
                "--input x: {}: the array is float16 ('<f2'), but tensor `x` is stored as f32; \
                 pass --dtype x=f16 to store `x` as f16, or convert the array first, e.g. with a.astype(numpy.float32)",
                f("f2.npy")
            )],
        ),
        (
            vec![ln.into(), "--input".into(), inp("v2.npy")],
            vec![format!(
                "--input x: {}: the array is bfloat16 ('<V2', as np.save writes ml_dtypes.bfloat16), but tensor `x` \
                 is stored as f32; pass --dtype x=bf16 to store `x` as bf16",
                f("v2.npy")
            )],
        ),
        (
            vec![ln.into(), "--dtype".into(), "x=bf16".into(), "--input".into(), inp("x45.npy")],
            vec![format!(
                "{}: the array is float32 ('<f4'), but tensor `x` is stored as bf16; pass --dtype x=f32 to store `x` \
                 as f32, or convert the array first, e.g. with a.astype(ml_dtypes.bfloat16)",
                f("x45.npy")
            )],
        ),
        (
            vec![ln.into(), "--dtype".into(), "x=f16".into(), "--input".into(), inp("v2.npy")],
            vec!["the array is bfloat16 ('<V2'".into(), "stored as f16; pass --dtype x=bf16".into()],
        ),
        (
            vec![ln.into(), "--dtype".into(), "x=bf16".into(), "--input".into(), inp("u2.npy")],
            vec![format!(
                "{}: the array has dtype '<u2' (uint16), but tensor `x` is stored as bf16; if it holds raw bfloat16 \
                 bits, pass --bf16-as-u2",
                f("u2.npy")
            )],
        ),
        (
            vec![ln.into(), "--bf16-as-u2".into(), "--input".into(), inp("u2.npy")],
            vec!["the array is raw bfloat16 bits ('<u2', under --bf16-as-u2), but tensor `x` is stored as f32; \
                  pass --dtype x=bf16"
                .into()],
        ),
        (
            vec![ln.into(), "--dtype".into(), "x=bf16".into(), "--input".into(), inp("f8.npy")],
            vec![
                "'<f8' (float64), but normjit reads float32 ('<f4'), float16 ('<f2') and bfloat16 ('<V2'".into(),
                "a.astype(ml_dtypes.bfloat16)".into(),
            ],
        ),
        (
            vec![ln.into(), "--dtype".into(), "x=bf16".into(), "--input".into(), inp("v2_short.npy")],
            vec![f("v2_short.npy"), "needs 40 bytes of bfloat16 data, but the file has 38".into()],
        ),
        // --dtype itself.
        (
            vec![ln.into(), "--dims".into(), "N=4,D=5".into(), "--dtype".into(), "x=bf17".into()],
            vec!["error: --dtype: `x=bf17`: unknown dtype `bf17`; expected f32, bf16 or f16".into()],
        ),
        (
            vec![ln.into(), "--dims".into(), "N=4,D=5".into(), "--dtype".into(), "eps=bf16".into()],
            vec![
                "error: --dtype: `eps` is a param: params are f64 scalars at the call and take no storage dtype".into()
            ],
        ),
        (
            vec![ln.into(), "--dims".into(), "N=4,D=5".into(), "--dtype".into(), "x=u32".into()],
            vec!["error: --dtype: `x=u32`: `u32` is a param type, not a tensor storage type".into()],
        ),
        (
            vec![ln.into(), "--dims".into(), "N=4,D=5".into(), "--dtype".into(), "z=bf16".into()],
            vec!["error: --dtype: kernel `layer_norm` has no tensor `z` (its tensors: x, gamma, beta, y)".into()],
        ),
        (
            vec![ln.into(), "--dims".into(), "N=4,D=5".into(), "--dtype".into(), "x=bf16:stochastic(seed)".into()],
            vec!["error: --dtype: `x` is an `in` tensor: it is never stored, so it has no rounding".into()],
        ),
        (
            vec![ln.into(), "--dims".into(), "N=4,D=5".into(), "--dtype".into(), "y=f16:stochastic(seed)".into()],
            vec!["error: --dtype: `y`: stochastic rounding is for bf16 storage, not f16".into()],
        ),
        (
            vec![ln.into(), "--dims".into(), "N=4,D=5".into(), "--dtype".into(), "y=bf16:stochastic(seed)".into()],
            vec!["error: param `seed` has no default; pass --param seed=VALUE".into()],
        ),
        (
            vec![ln.into(), "--dims".into(), "N=4,D=5".into(), "--dtype".into(), "x".into()],
            vec!["error: --dtype: `x`: expected TENSOR=DTYPE".into()],
        ),
        // Shapes against --dims, against the declaration, against each other.
        (
            vec![ln.into(), "--dims".into(), "N=4,D=6".into(), "--input".into(), inp("x45.npy")],
            vec!["dim `D` is 6 from --dims but 5 from the shape of `x` in".into(), f("x45.npy")],
        ),
        (
            vec![ln.into(), "--input".into(), inp("flat.npy")],
            vec![f("flat.npy"), "`x` is declared f32[N, D]".into(), "[20]".into()],
        ),
        (
            vec![ln.into(), "--input".into(), inp("x45.npy"), "--input".into(), format!("gamma={}", f("g6.npy"))],
            vec!["dim `D` is 5 from the shape of `x` in".into(), f("x45.npy"), f("g6.npy")],
        ),
        // Names.
        (
            vec![ln.into(), "--input".into(), format!("z={}", f("x45.npy"))],
            vec!["no tensor `z`".into(), "x, gamma, beta".into()],
        ),
        (vec![ln.into(), "--input".into(), format!("y={}", f("x45.npy"))], vec!["`y` is an `out` tensor".into()]),
        (vec![ln.into(), "--input".into(), "x".into()], vec!["--input `x`: expected NAME=PATH.npy".into()]),
        (
            vec![ln.into(), "--input".into(), inp("x45.npy"), "--input".into(), inp("x45.npy")],
            vec!["tensor `x` is given twice".into()],
        ),
        (
            vec![ln.into(), "--dims".into(), "N=4,D=5".into(), "--output".into(), format!("x={}", f("x.npy"))],
            vec!["`x` is an `in` tensor".into()],
        ),
        (
            vec![ln.into(), "--dims".into(), "N=4,D=5".into(), "--output".into(), format!("q={}", f("q.npy"))],
            vec!["no tensor `q`".into(), "takes: y".into()],
        ),
        (
            vec![
                ln.into(),
                "--dims".into(),
                "N=4,D=5".into(),
                "--output".into(),
                format!("y={}", f("no/such/dir/y.npy")),
            ],
            vec!["no/such/dir".into(), "does not exist".into()],
        ),
        (
            vec![ln.into(), "--dims".into(), "N=4,D=5".into(), "--output".into(), format!("y={}", s(&dir))],
            vec!["is a directory".into()],
        ),
        // Params and dims.
        (
            vec![ln.into(), "--dims".into(), "N=4,D=5".into(), "--param".into(), "lr=0.1".into()],
            vec!["no param `lr`".into(), "eps".into()],
        ),
        (
            vec![ln.into(), "--dims".into(), "N=4,D=5".into(), "--param".into(), "eps=abc".into()],
            vec!["param `eps` = abc: not a number".into()],
        ),
        (
            vec![ln.into(), "--dims".into(), "N=4,D=5".into(), "--param".into(), "eps=1,eps=2".into()],
            vec!["`eps` is given twice".into()],
        ),
        (vec![ln.into(), "--dims".into(), "N=4".into()], vec!["dim `D` is not given".into(), "--dims D=SIZE".into()]),
        (vec![ln.into()], vec!["dim `N` is not given".into()]),
        (vec![ln.into(), "--dims".into(), "N=4,Q=5".into()], vec!["no dim `Q`".into()]),
        (vec![ln.into(), "--dims".into(), "N=four,D=5".into()], vec!["--dims".into(), "N=four".into()]),
        (
            vec!["ir/optim/adamw.nj".into(), "--dims".into(), "P=8".into()],
            vec!["param `t` has no default; pass --param t=VALUE".into()],
        ),
        (
            vec!["no/such/kernel.nj".into(), "--dims".into(), "N=4".into()],
            vec!["no/such/kernel.nj".into(), "cannot read".into()],
        ),
        (
            vec![ln.into(), "--dims".into(), "N=4294967296,D=4294967296".into()],
            vec!["more".into(), "N=4294967296".into()],
        ),
    ];
    for (args, wants) in cases {
        // Each case also asks for outputs that must not appear or change.
        let mut all = args.clone();
        let (out_new, out_keep) = (f("new.npy"), f("keep.npy"));
        let written = if args[0] == ln { "y" } else { "p" };
        if !args.iter().any(|a| a.starts_with(&format!("{written}="))) && !args.contains(&"--output".to_string()) {
            all.extend(["--output".into(), format!("{written}={out_new}")]);
        }
        for json in [false, true] {
            let mut a = all.clone();
            if json {
                a.push("--json".into());
            }
            let out = normjit().arg("run").args(&a).output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{a:?}: {stderr}");
            assert!(stderr.starts_with("error: "), "{a:?}: {stderr}");
            for w in &wants {
                assert!(stderr.contains(w.as_str()), "{a:?}: expected `{w}` in {stderr}");
            }
            assert!(out.stdout.is_empty(), "{a:?}: {}", String::from_utf8_lossy(&out.stdout));
            assert!(!Path::new(&out_new).exists(), "{a:?} wrote {out_new}");
            assert_eq!(std::fs::read(&out_keep).unwrap(), keep);
        }
    }
    // Nothing but the fixtures is in the directory: no temporary files.
    let n = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(n, 3 + files.len() + 1);
}

#[test]
fn a_failing_run_leaves_existing_outputs_alone() {
    let dir = tmpdir("keep");
    let keep = dir.join("y.npy");
    write_f32(&keep, &[1], &[42.0]).unwrap();
    let before = std::fs::read(&keep).unwrap();
    // The first output is valid, the second's directory is missing.
    let out = run(&[
        "ir/optim/adamw.nj",
        "--dims",
        "P=8",
        "--param",
        "t=1",
        "--output",
        &format!("p={}", s(&keep)),
        "--output",
        &format!("m={}", s(&dir.join("missing/m.npy"))),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--output m") && stderr.contains("does not exist"), "{stderr}");
    assert_eq!(std::fs::read(&keep).unwrap(), before);
    // Two tensors to one file, and one tensor to two files.
    let same = s(&dir.join("same.npy"));
    let out = run(&[
        "ir/optim/adamw.nj",
        "--dims",
        "P=8",
        "--param",
        "t=1",
        "--output",
        &format!("p={same}"),
        "--output",
        &format!("m={same}"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("also the destination of `p`"));
    let out = run(&[
        "ir/optim/adamw.nj",
        "--dims",
        "P=8",
        "--param",
        "t=1",
        "--output",
        &format!("p={same}"),
        "--output",
        "p=other.npy",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("tensor `p` is given twice"));
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
}

/// Interoperability with NumPy itself (from the test environment).
#[test]
fn numpy_reads_and_writes_our_files() {
    let has_numpy = Command::new(python()).args(["-c", "import numpy"]).output().is_ok_and(|o| o.status.success());
    assert!(has_numpy, "numpy is needed for this test: run scripts/python-env (the test command does)");
    let dir = tmpdir("numpy");
    let ours = dir.join("ours.npy");
    let data: Vec<f32> = (0..6).map(|i| i as f32 * 0.5 - 1.0).collect();
    write_f32(&ours, &[2, 3], &data).unwrap();
    write_f32(&dir.join("scalar.npy"), &[], &[2.5]).unwrap();
    let script = format!(
        r#"
import numpy as np
a = np.load({ours:?})
assert a.dtype == np.float32 and a.shape == (2, 3), (a.dtype, a.shape)
assert a.tolist() == [[-1.0, -0.5, 0.0], [0.5, 1.0, 1.5]], a
s = np.load({scalar:?})
assert s.shape == () and s.dtype == np.float32 and float(s) == 2.5
np.save({theirs:?}, np.arange(12, dtype=np.float32).reshape(3, 4) / 4)
np.save({f8:?}, np.zeros((2, 2)))
np.save({fort:?}, np.asfortranarray(np.ones((2, 3), dtype=np.float32)))
"#,
        ours = s(&ours),
        scalar = s(&dir.join("scalar.npy")),
        theirs = s(&dir.join("theirs.npy")),
        f8 = s(&dir.join("f8.npy")),
        fort = s(&dir.join("fort.npy")),
    );
    let out = Command::new(python()).args(["-c", &script]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let theirs = read_f32(&dir.join("theirs.npy")).unwrap();
    assert_eq!(theirs.shape, vec![3, 4]);
    assert_eq!(theirs.data, (0..12).map(|i| i as f32 / 4.0).collect::<Vec<_>>());
    assert!(read_f32(&dir.join("f8.npy")).unwrap_err().to_string().contains("float64"));
    assert!(read_f32(&dir.join("fort.npy")).unwrap_err().to_string().contains("Fortran order"));
}

#[test]
fn engine_choice_and_thread_counts_give_identical_files() {
    let dir = tmpdir("threads");
    let mut files = Vec::new();
    for threads in ["1", "2", "3"] {
        let out = dir.join(format!("y{threads}.npy"));
        let r = run(&[
            "ir/norm/batch_norm_train.nj",
            "--dims",
            "N=4,C=8,H=33,W=17",
            "--engine",
            "jit",
            "--threads",
            threads,
            "--output",
            &format!("y={}", out.display()),
        ]);
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        files.push(std::fs::read(&out).unwrap());
    }
    assert!(files.len() == 3 && files[0] == files[1] && files[1] == files[2], "thread counts disagree");
    let v = run_json(&["ir/optim/adamw.nj", "--dims", "P=1000", "--param", "t=3", "--engine", "interp"]);
    assert_eq!(v["engine"], "interp");
    assert!(v.get("compile_us").is_none());
    assert!(v["outputs"]["p"]["jit"].is_null());
    let v = run_json(&["ir/optim/adamw.nj", "--dims", "P=1000", "--param", "t=3", "--engine", "jit", "--threads", "1"]);
    assert_eq!(v["engine"], "jit");
    assert_eq!(v["threads"], 1);
    assert!(v["outputs"]["p"]["jit"]["max_rel_err"].as_f64().unwrap() < 1e-5);
}
