//! The pipeline library under `ir/` is valid, round-trips through the
//! printer, and keeps its public contract (file paths, tensor and param
//! names, roles).

use normjit::ir::{self, Kernel, ParamType, Role};
use std::path::{Path, PathBuf};

fn library() -> Vec<(PathBuf, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("ir");
    let files = normjit::collect_nj_files(&root).unwrap();
    assert!(files.len() >= 18, "library has {} files", files.len());
    files
        .into_iter()
        .map(|f| {
            let s = std::fs::read_to_string(&f).unwrap();
            (f, s)
        })
        .collect()
}

fn load(rel: &str) -> Kernel {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    normjit::load_kernel(&p).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn every_library_file_parses_prints_and_reparses_to_the_same_kernel() {
    for (path, src) in library() {
        let k = ir::parse(&src).unwrap_or_else(|d| panic!("{}", d.render(&path.display().to_string(), &src)));
        ir::verify(&k).unwrap();
        let printed = k.to_string();
        let k2 = ir::parse(&printed)
            .unwrap_or_else(|d| panic!("reparse of {}:\n{}", path.display(), d.render("printed", &printed)));
        assert_eq!(k, k2, "{} does not round-trip; printed:\n{printed}", path.display());
        assert_eq!(printed, k2.to_string(), "printing is not a fixed point for {}", path.display());
    }
}

#[test]
fn every_library_file_opens_with_a_comment_naming_its_convention() {
    for (path, src) in library() {
        let header: Vec<&str> = src.lines().take_while(|l| l.starts_with('#')).collect();
        assert!(header.len() >= 2, "{} has no header comment", path.display());
        let text = header.join("\n");
        assert!(text.contains("PyTorch"), "{} header does not name the PyTorch convention", path.display());
    }
}

/// The file paths, tensor names/roles and param names are a public contract.
#[test]
fn library_contract() {
    use Role::*;
    let f32p = ParamType::F32;
    type Tensors = &'static [(&'static str, Role, &'static [&'static str])];
    type Params = &'static [(&'static str, Option<f64>)];
    let table: &[(&str, Tensors, Params)] = &[
        (
            "ir/norm/layer_norm.nj",
            &[("x", In, &["N", "D"]), ("gamma", In, &["D"]), ("beta", In, &["D"]), ("y", Out, &["N", "D"])],
            &[("eps", Some(1e-5))],
        ),
        (
            "ir/norm/rms_norm.nj",
            &[("x", In, &["N", "D"]), ("gamma", In, &["D"]), ("y", Out, &["N", "D"])],
            &[("eps", Some(1e-6))],
        ),
        (
            "ir/norm/add_rms_norm.nj",
            &[("x", In, &["N", "D"]), ("gamma", In, &["D"]), ("residual", InOut, &["N", "D"]), ("y", Out, &["N", "D"])],
            &[("eps", Some(1e-6))],
        ),
        (
            "ir/norm/batch_norm_train.nj",
            &[
                ("x", In, &["N", "C", "H", "W"]),
                ("gamma", In, &["C"]),
                ("beta", In, &["C"]),
                ("running_mean", InOut, &["C"]),
                ("running_var", InOut, &["C"]),
                ("y", Out, &["N", "C", "H", "W"]),
            ],
            &[("eps", Some(1e-5)), ("momentum", Some(0.1))],
        ),
        (
            "ir/norm/batch_norm_train_nhwc.nj",
            &[
                ("x", In, &["N", "H", "W", "C"]),
                ("gamma", In, &["C"]),
                ("beta", In, &["C"]),
                ("running_mean", InOut, &["C"]),
                ("running_var", InOut, &["C"]),
                ("y", Out, &["N", "H", "W", "C"]),
            ],
            &[("eps", Some(1e-5)), ("momentum", Some(0.1))],
        ),
        (
            "ir/norm/batch_norm_infer.nj",
            &[
                ("x", In, &["N", "C", "H", "W"]),
                ("gamma", In, &["C"]),
                ("beta", In, &["C"]),
                ("running_mean", In, &["C"]),
                ("running_var", In, &["C"]),
                ("y", Out, &["N", "C", "H", "W"]),
            ],
            &[("eps", Some(1e-5))],
        ),
        (
            "ir/norm/group_norm.nj",
            &[
                ("x", In, &["N", "G", "K", "S"]),
                ("gamma", In, &["G", "K"]),
                ("beta", In, &["G", "K"]),
                ("y", Out, &["N", "G", "K", "S"]),
            ],
            &[("eps", Some(1e-5))],
        ),
        (
            "ir/norm/instance_norm.nj",
            &[("x", In, &["N", "C", "S"]), ("gamma", In, &["C"]), ("beta", In, &["C"]), ("y", Out, &["N", "C", "S"])],
            &[("eps", Some(1e-5))],
        ),
        (
            "ir/optim/sgd.nj",
            &[("p", InOut, &["P"]), ("buf", InOut, &["P"]), ("g", In, &["P"])],
            &[("lr", None), ("momentum", Some(0.9)), ("dampening", Some(0.0)), ("wd", Some(0.0))],
        ),
        (
            "ir/optim/sgd_nesterov.nj",
            &[("p", InOut, &["P"]), ("buf", InOut, &["P"]), ("g", In, &["P"])],
            &[("lr", None), ("momentum", Some(0.9)), ("dampening", Some(0.0)), ("wd", Some(0.0))],
        ),
        (
            "ir/optim/adam.nj",
            &[("p", InOut, &["P"]), ("m", InOut, &["P"]), ("v", InOut, &["P"]), ("g", In, &["P"])],
            &[
                ("lr", Some(1e-3)),
                ("beta1", Some(0.9)),
                ("beta2", Some(0.999)),
                ("eps", Some(1e-8)),
                ("wd", Some(0.0)),
                ("t", None),
            ],
        ),
        (
            "ir/optim/adamw.nj",
            &[("p", InOut, &["P"]), ("m", InOut, &["P"]), ("v", InOut, &["P"]), ("g", In, &["P"])],
            &[
                ("lr", Some(1e-3)),
                ("beta1", Some(0.9)),
                ("beta2", Some(0.999)),
                ("eps", Some(1e-8)),
                ("wd", Some(0.01)),
                ("t", None),
            ],
        ),
        (
            "ir/optim/adamw_master.nj",
            &[
                ("master", InOut, &["P"]),
                ("p", Out, &["P"]),
                ("m", InOut, &["P"]),
                ("v", InOut, &["P"]),
                ("g", In, &["P"]),
            ],
            &[
                ("lr", Some(1e-3)),
                ("beta1", Some(0.9)),
                ("beta2", Some(0.999)),
                ("eps", Some(1e-8)),
                ("wd", Some(0.01)),
                ("t", None),
            ],
        ),
        (
            "ir/optim/adamw_clip.nj",
            &[("p", InOut, &["P"]), ("m", InOut, &["P"]), ("v", InOut, &["P"]), ("g", In, &["P"])],
            &[
                ("lr", Some(1e-3)),
                ("beta1", Some(0.9)),
                ("beta2", Some(0.999)),
                ("eps", Some(1e-8)),
                ("wd", Some(0.01)),
                ("t", None),
                ("max_norm", None),
            ],
        ),
        ("ir/optim/l1_subgrad.nj", &[("p", InOut, &["P"]), ("g", In, &["P"])], &[("lr", None), ("lam", None)]),
        ("ir/optim/prox_l1.nj", &[("p", InOut, &["P"]), ("g", In, &["P"])], &[("lr", None), ("lam", None)]),
        (
            "ir/optim/elastic_net.nj",
            &[("p", InOut, &["P"]), ("g", In, &["P"])],
            &[("lr", None), ("l1", None), ("l2", None)],
        ),
        ("ir/norm/softmax.nj", &[("x", In, &["N", "D"]), ("y", Out, &["N", "D"])], &[]),
        (
            "ir/norm/dyt.nj",
            &[("x", In, &["N", "D"]), ("gamma", In, &["D"]), ("beta", In, &["D"]), ("y", Out, &["N", "D"])],
            &[("alpha", Some(0.5))],
        ),
        (
            "ir/optim/ridge_step.nj",
            &[("X", In, &["M", "K"]), ("y", In, &["M"]), ("theta", InOut, &["K"])],
            &[("lr", None), ("lambda", Some(0.0))],
        ),
        ("ir/reg/dropout.nj", &[("x", In, &["N"]), ("y", Out, &["N"])], &[("p", Some(0.1))]),
        (
            "ir/reg/spectral_norm.nj",
            &[
                ("w", In, &["M", "K"]),
                ("u", InOut, &["M"]),
                ("v", InOut, &["K"]),
                ("w_sn", Out, &["M", "K"]),
                ("sigma", Out, &[]),
            ],
            &[],
        ),
    ];
    for (file, tensors, params) in table {
        let k = load(file);
        for (name, role, dims) in *tensors {
            let t = k.tensor(name).unwrap_or_else(|| panic!("{file}: no tensor `{name}`"));
            let t = &k.tensors[t];
            assert_eq!(t.role, *role, "{file}: role of `{name}`");
            let got: Vec<&str> = t.dims.iter().map(|&d| k.dims[d].name.as_str()).collect();
            assert_eq!(&got, dims, "{file}: dims of `{name}`");
        }
        for (name, default) in *params {
            let p = k.param(name).unwrap_or_else(|| panic!("{file}: no param `{name}`"));
            assert_eq!(k.params[p].ty, f32p, "{file}: type of `{name}`");
            assert_eq!(k.params[p].default, *default, "{file}: default of `{name}`");
        }
    }
    // Storage types are part of the contract too: every tensor is f32
    // (callers override per compilation) except the mixed-precision
    // optimizer's model-side tensors.
    for (file, _, _) in table {
        let k = load(file);
        for (_, t) in k.tensors.iter() {
            let want = if file.ends_with("adamw_master.nj") && (t.name == "p" || t.name == "g") {
                normjit::DType::BF16
            } else {
                normjit::DType::F32
            };
            assert_eq!(t.dtype, want, "{file}: dtype of `{}`", t.name);
        }
    }
    let d = load("ir/reg/dropout.nj");
    let seed = d.param("seed").expect("dropout has a seed param");
    assert_eq!(d.params[seed].ty, ParamType::U32);
}
