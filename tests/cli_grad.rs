//! `normjit grad`: prints a backward kernel that `check` accepts (written
//! with `-o` too), and refuses what cannot be differentiated with exit 1
//! and the reason.

use std::process::Command;

fn normjit() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_normjit"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

#[test]
fn layer_norm_backward_is_printed_and_checks() {
    let out = normjit().args(["grad", "ir/norm/layer_norm.nj", "--wrt", "x,gamma,beta"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("# The backward of `layer_norm`"), "{text}");
    for decl in
        ["kernel layer_norm_grad {", "in dy: f32[N, D]", "out dx: f32[N, D]", "out dgamma: f32[D]", "out dbeta: f32[D]"]
    {
        assert!(text.contains(decl), "missing `{decl}` in\n{text}");
    }
    // Written with -o and pruned: `check --deny-warnings` accepts it.
    let dir = std::env::temp_dir().join(format!("normjit-cli-grad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("layer_norm_grad.nj");
    let out = normjit()
        .args(["grad", "ir/norm/layer_norm.nj", "--wrt", "x,gamma,beta", "--prune", "-o"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = normjit().arg("check").arg("--deny-warnings").arg(&file).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Saved statistics become inputs.
    let out = normjit().args(["grad", "ir/norm/layer_norm.nj", "--wrt", "x", "--saved", "mu,var"]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("in mu: f32[N]") && text.contains("in var: f32[N]"), "{text}");
}

#[test]
fn what_cannot_be_differentiated_is_refused_with_the_reason() {
    for (args, want) in [
        (&["ir/optim/adamw.nj", "--wrt", "g"][..], "`p` is inout: optimizer steps are not differentiable kernels"),
        (&["ir/norm/layer_norm.nj", "--wrt", "x,q"][..], "`layer_norm` has no tensor `q`"),
        (&["ir/norm/layer_norm.nj", "--wrt", "y"][..], "`y` is an `out` tensor of `layer_norm`"),
    ] {
        let out = normjit().arg("grad").args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
    }
}
