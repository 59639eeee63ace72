//! `normjit explain --json`: the plan's contract fields, and the fusion
//! result that matters — kernels whose data fit the cache assumption move
//! exactly their minimum bytes (each input read once, each output written
//! once). The cache size is pinned to 2 MiB so the plans do not depend on
//! the machine running the test. With `--dtype`, each tensor's storage
//! type shows and traffic counts its real bytes.

use serde_json::Value;
use std::process::Command;

fn explain(file: &str, dims: &str) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_normjit"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["explain", file, "--dims", dims, "--json", "--cache-bytes", "2097152"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn total(v: &Value) -> (u64, u64) {
    (v["bytes_read"].as_u64().unwrap() + v["bytes_written"].as_u64().unwrap(), v["min_bytes"].as_u64().unwrap())
}

#[test]
fn fused_kernels_move_their_minimum_bytes() {
    let cases = [
        ("ir/norm/layer_norm.nj", "N=4096,D=1024"),
        ("ir/norm/rms_norm.nj", "N=4096,D=4096"),
        ("ir/norm/add_rms_norm.nj", "N=2048,D=8192"),
        ("ir/norm/instance_norm.nj", "N=16,C=64,S=3136"),
        ("ir/norm/group_norm.nj", "N=16,G=32,K=8,S=3136"),
        ("ir/norm/batch_norm_infer.nj", "N=32,C=64,H=112,W=112"),
        ("ir/norm/batch_norm_train.nj", "N=32,C=64,H=112,W=112"),
        ("ir/optim/sgd.nj", "P=33554432"),
        ("ir/optim/sgd_nesterov.nj", "P=33554432"),
        ("ir/optim/adam.nj", "P=33554432"),
        ("ir/optim/adamw.nj", "P=33554432"),
        ("ir/optim/l1_subgrad.nj", "P=33554432"),
        ("ir/optim/prox_l1.nj", "P=33554432"),
        ("ir/optim/elastic_net.nj", "P=33554432"),
        ("ir/reg/dropout.nj", "N=33554432"),
        // Cross-group reductions: dgamma/dbeta over the rows, the ridge
        // gradient over the samples, accumulated while the row is in cache.
        ("ir/grad/layer_norm_grad.nj", "N=16384,D=4096"),
        ("ir/grad/rms_norm_grad.nj", "N=16384,D=4096"),
        ("ir/optim/ridge_step.nj", "M=1048576,K=64"),
    ];
    for (file, dims) in cases {
        let v = explain(file, dims);
        let (moved, min) = total(&v);
        assert!(min > 0, "{file}");
        assert_eq!(moved, min, "{file} at {dims} moves {moved} bytes, minimum {min}:\n{v:#}");
    }
}

#[test]
fn layer_norm_backward_runs_in_one_group_pass_with_cross_group_partials() {
    let v = explain("ir/grad/layer_norm_grad.nj", "N=16384,D=4096");
    assert_eq!(v["group"], serde_json::json!(["N"]));
    // dgamma and dbeta: one partial array per chunk of rows.
    assert_eq!(v["group_partials"], 2);
    let phases = v["phases"].as_array().unwrap();
    let cross: Vec<&Value> = phases
        .iter()
        .flat_map(|p| p["accumulators"].as_array().unwrap())
        .filter(|a| a["cross_group"] == true)
        .collect();
    assert_eq!(cross.len(), 2, "{v:#}");
    assert!(cross.iter().all(|a| a["over"] == "N" && a["kind"] == "array"));
    // Their stores run once, after the group loop.
    let after: Vec<&Value> = phases.iter().filter(|p| p["after_group"] == true).collect();
    assert_eq!(after.len(), 2);
    assert!(after.iter().all(|p| p["reads"].as_object().unwrap().is_empty()));
    // x and dy are read from memory once.
    assert_eq!(v["tensors"]["x"]["reads"], 1);
    assert_eq!(v["tensors"]["dy"]["reads"], 1);
}

#[test]
fn ridge_step_reads_x_once() {
    let v = explain("ir/optim/ridge_step.nj", "M=1048576,K=64");
    assert_eq!(v["group"], serde_json::json!(["M"]));
    // The residual pass and the gradient pass both read X, from cache.
    let phases = v["phases"].as_array().unwrap();
    assert_eq!(phases.iter().filter(|p| p["reads"].get("X").is_some()).count(), 2);
    assert_eq!(v["tensors"]["X"]["reads"], 1);
    // theta is written once, after every row has been accumulated.
    let writes: Vec<&Value> = phases.iter().filter(|p| p["writes"].get("theta").is_some()).collect();
    assert_eq!(writes.len(), 1);
    assert_eq!(writes[0]["after_group"], true);
}

#[test]
fn batch_norm_train_reads_x_once_from_a_cached_channel_slab() {
    let v = explain("ir/norm/batch_norm_train.nj", "N=32,C=64,H=112,W=112");
    assert_eq!(v["group"], serde_json::json!(["C"]));
    // Three passes over each channel's slab (mean, variance, normalize)...
    let phases = v["phases"].as_array().unwrap();
    assert_eq!(phases.iter().filter(|p| p["reads"].get("x").is_some()).count(), 3);
    // ...but x counts once: the 1.53 MiB slab stays in the assumed cache.
    assert_eq!(v["tensors"]["x"]["reads"], 1);
    let ws = v["group_working_set"].as_u64().unwrap();
    assert_eq!(ws, 32 * 112 * 112 * 4);
    assert!(v["assumptions"].as_array().unwrap().iter().any(|a| a.as_str().unwrap().contains("stays in")));
    // With a smaller cache, the model says so and counts the re-reads.
    let out = Command::new(env!("CARGO_BIN_EXE_normjit"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "explain",
            "ir/norm/batch_norm_train.nj",
            "--dims",
            "N=32,C=64,H=112,W=112",
            "--json",
            "--cache-bytes",
            "1048576",
        ])
        .output()
        .unwrap();
    let small: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(small["tensors"]["x"]["reads"], 3);
    let (moved, min) = total(&small);
    assert!(moved > min);
}

#[test]
fn adamw_clip_needs_a_second_pass_over_g() {
    // The global norm must be complete before any update: g is read twice.
    let v = explain("ir/optim/adamw_clip.nj", "P=33554432");
    assert_eq!(v["phases"].as_array().unwrap().len(), 2);
    assert_eq!(v["tensors"]["g"]["reads"], 2);
    let (moved, min) = total(&v);
    assert_eq!(moved - min, 33554432 * 4);
}

#[test]
fn json_contract_fields() {
    let v = explain("ir/norm/layer_norm.nj", "N=64,D=1000");
    assert_eq!(v["kernel"], "layer_norm");
    assert_eq!(v["dims"]["N"], 64);
    assert_eq!(v["dims"]["D"], 1000);
    for p in v["phases"].as_array().unwrap() {
        assert!(p["name"].is_string());
        assert!(p["loops"].is_array());
        assert!(p["reads"].is_object());
        assert!(p["writes"].is_object());
    }
    assert_eq!(v["phases"][2]["writes"]["y"], 1);
    for f in ["bytes_read", "bytes_written", "min_bytes"] {
        assert!(v[f].is_u64(), "{f}");
    }
    // Per-row statistics are hoisted out of the inner loop: the per-call
    // and per-row values are listed as group values.
    assert!(v["group_values"].as_array().unwrap().iter().any(|x| x.as_str().unwrap().contains("rsqrt")));
}

#[test]
fn batch_norm_inference_is_a_per_channel_scale_and_shift() {
    let v = explain("ir/norm/batch_norm_infer.nj", "N=8,C=64,H=56,W=56");
    assert_eq!(v["phases"].as_array().unwrap().len(), 1);
    // The scale (with its rsqrt) and the shift are computed in the C loop,
    // outside the H, W loops: per channel, never per element.
    let hoisted = v["phases"][0]["hoisted"].as_array().unwrap();
    let at_c: Vec<&Value> = hoisted.iter().filter(|h| h["loop"] == "C").collect();
    assert!(at_c.iter().any(|h| h["value"].as_str().unwrap().contains("rsqrt")), "{hoisted:?}");
    assert!(hoisted.iter().all(|h| h["loop"] != "W"));
}

#[test]
fn one_pass_statistics_fuse_sum_and_sum_of_squares() {
    // Written in the IR text (E[x^2] - E[x]^2): both sums share a pass, so
    // the row is read twice instead of three times.
    let two = explain("ir/norm/layer_norm.nj", "N=4096,D=1024");
    let one = explain("ir/norm/layer_norm_onepass.nj", "N=4096,D=1024");
    assert_eq!(two["phases"].as_array().unwrap().len(), 3);
    assert_eq!(one["phases"].as_array().unwrap().len(), 2);
    assert_eq!(one["phases"][0]["accumulators"].as_array().unwrap().len(), 2);
}

/// Runs `normjit explain ARGS`.
fn explain_args(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_normjit"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("explain")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn storage_types_show_and_traffic_counts_real_bytes() {
    let (n, d) = (4096u64, 4096u64);
    let f32s = explain("ir/norm/rms_norm.nj", "N=4096,D=4096");
    let out = explain_args(&[
        "ir/norm/rms_norm.nj",
        "--dims",
        "N=4096,D=4096",
        "--dtype",
        "x=bf16,y=bf16",
        "--json",
        "--cache-bytes",
        "2097152",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let x = &v["tensors"]["x"];
    assert_eq!((x["dtype"].as_str(), x["bytes_per_element"].as_u64()), (Some("bf16"), Some(2)), "{x}");
    assert_eq!((x["elements"].as_u64(), x["bytes_read"].as_u64()), (Some(n * d), Some(2 * n * d)), "{x}");
    assert_eq!(
        (v["tensors"]["y"]["dtype"].as_str(), v["tensors"]["y"]["bytes_written"].as_u64()),
        (Some("bf16"), Some(2 * n * d))
    );
    assert_eq!(
        (v["tensors"]["gamma"]["dtype"].as_str(), v["tensors"]["gamma"]["bytes_read"].as_u64()),
        (Some("f32"), Some(4 * d))
    );
    assert_eq!(v["tensors"]["y"]["rounding"], "nearest_even");
    // x read once, y written once, gamma once: 2 + 2 bytes per element.
    assert_eq!(v["min_bytes"].as_u64().unwrap(), 4 * n * d + 4 * d);
    assert_eq!(f32s["min_bytes"].as_u64().unwrap(), 8 * n * d + 4 * d);
    let (moved, min) = total(&v);
    assert_eq!(moved, min);
    // The f32 plan names f32 everywhere.
    assert!(f32s["tensors"].as_object().unwrap().values().all(|t| t["dtype"] == "f32" && t["bytes_per_element"] == 4));

    // The text: a row per tensor with its type and bytes.
    let out = explain_args(&["ir/norm/rms_norm.nj", "--dims", "N=4096,D=4096", "--dtype", "x=bf16,y=bf16"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let row = |name: &str| -> Vec<String> {
        let l =
            text.lines().find(|l| l.trim_start().starts_with(&format!("{name} "))).unwrap_or_else(|| panic!("{text}"));
        l.split_whitespace().map(String::from).collect()
    };
    assert_eq!(row("x"), ["x", "in", "bf16", "[4096,", "4096]", "2", "B", "read", "1x", "32.0", "MiB"], "{text}");
    assert_eq!(row("gamma"), ["gamma", "in", "f32", "[4096]", "4", "B", "read", "1x", "16.0", "KiB"], "{text}");
    assert_eq!(row("y"), ["y", "out", "bf16", "[4096,", "4096]", "2", "B", "written", "1x", "32.0", "MiB"], "{text}");
    assert!(text.contains(&format!("minimum {} B", 4 * n * d + 4 * d)), "{text}");
}

#[test]
fn stochastic_rounding_and_bf16_adamw() {
    let out =
        explain_args(&["ir/optim/adamw.nj", "--dims", "P=1000", "--dtype", "p=bf16:stochastic(seed),g=bf16", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let p = &v["tensors"]["p"];
    assert_eq!((p["rounding"].as_str(), p["seed"].as_str()), (Some("stochastic"), Some("seed")), "{p}");
    assert_eq!(v["tensors"]["m"]["dtype"], "f32");
    // p and g in bf16, m and v in f32: 2 + 2 + 2 + 4 + 4 + 4 + 4 bytes per element.
    assert_eq!(v["min_bytes"], 22 * 1000);
    let out = explain_args(&["ir/optim/adamw.nj", "--dims", "P=1000", "--dtype", "p=bf16:stochastic(seed)"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.lines().any(|l| l.trim_start().starts_with("p ") && l.contains("bf16:stochastic(seed)")), "{text}");
}

#[test]
fn bad_overrides_exit_1_with_the_reason() {
    let cases = [
        ("lr=bf16", "error: --dtype: `lr` is a param: params are f64 scalars at the call and take no storage dtype"),
        ("p=int8", "error: --dtype: `p=int8`: unknown dtype `int8`; expected f32, bf16 or f16"),
        ("p=u32", "error: --dtype: `p=u32`: `u32` is a param type, not a tensor storage type"),
        ("q=bf16", "error: --dtype: kernel `adamw` has no tensor `q` (its tensors: p, m, v, g)"),
        ("g=bf16:stochastic(seed)", "error: --dtype: `g` is an `in` tensor: it is never stored, so it has no rounding"),
        ("p=bf16,p=f16", "error: --dtype: tensor `p` is given a dtype twice"),
    ];
    for (spec, want) in cases {
        let out = explain_args(&["ir/optim/adamw.nj", "--dims", "P=1000", "--dtype", spec]);
        assert_eq!(out.status.code(), Some(1), "{spec}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.starts_with(want), "{spec}: expected `{want}` in {stderr}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn costly_values_are_hoisted_into_scratch_instead_of_recomputed() {
    // NHWC BatchNorm: `rsqrt(var[C] + eps)` varies along the innermost C
    // loop only; it is computed once per channel into scratch, and the
    // pass writing y reads it back instead of taking a square root and a
    // divide per element.
    let v = explain("ir/norm/batch_norm_train_nhwc.nj", "N=8,H=7,W=7,C=64");
    let phases = v["phases"].as_array().unwrap();
    let at = phases.iter().position(|p| hoist_of(p, "rsqrt")).expect("a phase fills the hoisted array");
    assert_eq!(phases[at]["loops"].as_array().unwrap().len(), 1, "{:?}", phases[at]);
    let y = phases.iter().position(|p| p["writes"].get("y").is_some()).unwrap();
    assert!(at < y);
    // Softmax: `exp(x - m)` is kept for the row by the pass summing it, and
    // the pass writing y neither reads x nor recomputes the exponential.
    let v = explain("ir/norm/softmax.nj", "N=16,D=1000");
    let phases = v["phases"].as_array().unwrap();
    assert_eq!(phases.len(), 3);
    assert!(hoist_of(&phases[1], "exp"), "{:?}", phases[1]);
    assert!(phases[2]["reads"].get("x").is_none(), "{:?}", phases[2]);
}

fn hoist_of(p: &Value, what: &str) -> bool {
    p["accumulators"].as_array().unwrap().iter().any(|a| a["op"] == "hoist" && a["of"].as_str().unwrap().contains(what))
}

/// `--schedule` changes the chosen schedule, which `explain` prints and
/// `--json` carries; a change the kernel cannot have is an error.
#[test]
fn schedule_overrides_show_and_bad_ones_are_errors() {
    let run = |sched: &str| {
        Command::new(env!("CARGO_BIN_EXE_normjit"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["explain", "ir/norm/layer_norm.nj", "--dims", "N=64,D=1024", "--json", "--schedule", sched])
            .output()
            .unwrap()
    };
    let chosen: Value = serde_json::from_slice(&run("").stdout).unwrap();
    assert_eq!(chosen["schedule"]["group"], serde_json::json!(["N"]));
    assert_eq!(chosen["schedule"]["reduce_unroll"], 4);
    let out = run("group=none,reduce_unroll=8,hoist=off");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["schedule"]["group"], serde_json::json!([]));
    assert_eq!(v["group"], serde_json::json!([]));
    assert_eq!(v["schedule"]["reduce_unroll"], 8);
    assert_eq!(v["schedule"]["hoist"], false);
    assert!(v["phases"].as_array().unwrap().iter().any(|p| p["unroll"] == 8));
    // One-pass statistics: off as chosen (three passes), on when asked
    // (two: statistics, then y).
    assert_eq!(chosen["schedule"]["onepass"], false);
    assert_eq!(chosen["phases"].as_array().unwrap().len(), 3);
    let out = run("onepass=on");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["schedule"]["onepass"], true);
    assert_eq!(v["phases"].as_array().unwrap().len(), 2);
    let text = Command::new(env!("CARGO_BIN_EXE_normjit"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["explain", "ir/norm/layer_norm.nj", "--dims", "N=64,D=1024", "--schedule", "onepass=on"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("one-pass statistics") && text.contains("mean of 8 samples of x[N, :]  # the shift"),
        "{text}"
    );
    for (bad, why) in [
        ("group=D", "illegal schedule: group D"),
        ("reduce_unroll=12", "reduce_unroll 12 is not in 1..=8"),
        ("colour=red", "unknown schedule key `colour`"),
    ] {
        let out = run(bad);
        assert!(!out.status.success(), "{bad} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(why), "{bad}: {err}");
    }
}
