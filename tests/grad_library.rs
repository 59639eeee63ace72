//! `ir/grad/` holds the generated backward kernels of the library's
//! differentiable norms, exactly as `normjit grad --prune` prints them; this
//! test fails when one is stale. Regenerate them all with
//! `NORMJIT_BLESS=1 cargo test --test grad_library`.

use std::path::Path;
use std::process::Command;

/// (forward file, the `grad` arguments after it, generated file).
const GENERATED: &[(&str, &[&str], &str)] = &[
    ("ir/norm/layer_norm.nj", &["--wrt", "x,gamma,beta"], "ir/grad/layer_norm_grad.nj"),
    ("ir/norm/rms_norm.nj", &["--wrt", "x,gamma"], "ir/grad/rms_norm_grad.nj"),
    (
        "ir/norm/add_rms_norm.nj",
        &["--wrt", "x,gamma,residual", "--inplace", "residual"],
        "ir/grad/add_rms_norm_grad.nj",
    ),
    (
        "ir/norm/batch_norm_train.nj",
        &["--wrt", "x,gamma,beta", "--state", "running_mean,running_var"],
        "ir/grad/batch_norm_train_grad.nj",
    ),
    (
        "ir/norm/batch_norm_train_nhwc.nj",
        &["--wrt", "x,gamma,beta", "--state", "running_mean,running_var"],
        "ir/grad/batch_norm_train_nhwc_grad.nj",
    ),
    ("ir/norm/group_norm.nj", &["--wrt", "x,gamma,beta"], "ir/grad/group_norm_grad.nj"),
    ("ir/norm/instance_norm.nj", &["--wrt", "x,gamma,beta"], "ir/grad/instance_norm_grad.nj"),
];

#[test]
fn generated_backward_kernels_are_current() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bless = std::env::var_os("NORMJIT_BLESS").is_some();
    let mut stale = Vec::new();
    for (forward, args, generated) in GENERATED {
        let out = Command::new(env!("CARGO_BIN_EXE_normjit"))
            .current_dir(root)
            .args(["grad", forward])
            .args(*args)
            .arg("--prune")
            .output()
            .unwrap();
        assert!(out.status.success(), "{forward}: {}", String::from_utf8_lossy(&out.stderr));
        let want = String::from_utf8(out.stdout).unwrap();
        let path = root.join(generated);
        if bless {
            std::fs::write(&path, &want).unwrap();
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(have) if have == want => {}
            Ok(_) => {
                stale.push(format!("{generated} differs from `normjit grad {forward} {} --prune`", args.join(" ")))
            }
            Err(e) => stale.push(format!("{generated}: {e}")),
        }
    }
    assert!(stale.is_empty(), "{}\nregenerate with: NORMJIT_BLESS=1 cargo test --test grad_library", stale.join("\n"));
    // Every file in ir/grad is one of these.
    let mut files: Vec<String> = std::fs::read_dir(root.join("ir/grad"))
        .unwrap()
        .map(|e| format!("ir/grad/{}", e.unwrap().file_name().to_string_lossy()))
        .collect();
    files.sort();
    let mut listed: Vec<String> = GENERATED.iter().map(|g| g.2.to_string()).collect();
    listed.sort();
    assert_eq!(files, listed, "ir/grad holds a file this test does not generate");
}
