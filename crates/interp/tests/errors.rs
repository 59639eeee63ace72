//! Every way a call can be wrong is an `Error` with an actionable message,
//! found before anything is computed; nothing panics.

use normjit_interp::{run, Error};
use normjit_ir::Kernel;
use proptest::prelude::*;

fn kernel(src: &str) -> Kernel {
    normjit_ir::parse(src).unwrap_or_else(|d| panic!("{}", d.render("test.nj", src)))
}

fn layer_norm() -> Kernel {
    kernel(
        "kernel layer_norm {
            dims N, D
            in x: f32[N, D]
            in gamma: f32[D]
            out y: f32[N, D]
            param eps = 1e-5
            xc = x - mean(x, D)
            y = xc * rsqrt(mean(xc * xc, D) + eps) * gamma
        }",
    )
}

#[test]
fn wrong_argument_counts_name_what_is_declared() {
    let k = layer_norm();
    let (x, g) = ([0.0f32; 6], [0.0f32; 3]);
    let err = run::<f32>(&k, &[2], &[1e-5], &[&x, &g, &[]]).unwrap_err();
    assert_eq!(err, Error::DimCount { kernel: "layer_norm".into(), expected: 2, found: 1, names: "N, D".into() });
    assert!(err.to_string().contains("declares 2 dims (N, D) but 1 sizes were given"), "{err}");
    let err = run::<f32>(&k, &[2, 3], &[], &[&x, &g, &[]]).unwrap_err();
    assert_eq!(err, Error::ParamCount { kernel: "layer_norm".into(), expected: 1, found: 0, names: "eps".into() });
    assert!(err.to_string().contains("defaults already applied"), "{err}");
    let err = run::<f32>(&k, &[2, 3], &[1e-5], &[&x, &g]).unwrap_err();
    assert_eq!(
        err,
        Error::TensorCount { kernel: "layer_norm".into(), expected: 3, found: 2, names: "x, gamma, y".into() }
    );
}

#[test]
fn a_wrong_tensor_length_names_the_tensor_and_both_sizes() {
    let k = layer_norm();
    let err = run::<f32>(&k, &[2, 3], &[1e-5], &[&[0.0; 6], &[0.0; 4], &[]]).unwrap_err();
    assert_eq!(err, Error::TensorLength { tensor: "gamma".into(), shape: "D=3".into(), expected: 3, found: 4 });
    assert_eq!(err.to_string(), "tensor `gamma` has 4 elements, but its shape [D=3] needs 3");
    let err = run::<f64>(&k, &[2, 3], &[1e-5], &[&[0.0; 5], &[0.0; 3], &[]]).unwrap_err();
    assert!(err.to_string().contains("tensor `x` has 5 elements, but its shape [N=2, D=3] needs 6"), "{err}");
    // The slice of an `out` tensor is ignored, whatever its length.
    assert!(run::<f32>(&k, &[2, 3], &[1e-5], &[&[1.0; 6], &[1.0; 3], &[9.0; 17]]).is_ok());
}

#[test]
fn sizes_that_overflow_usize_are_refused_by_name() {
    let k = layer_norm();
    let big = usize::MAX / 2 + 1;
    let err = run::<f32>(&k, &[big, 2], &[1e-5], &[&[], &[0.0, 0.0], &[]]).unwrap_err();
    assert_eq!(err, Error::SizeOverflow { what: "tensor `x`".into(), dims: format!("N={big}, D=2") });
    // No tensor spans both dims, but a value does.
    let k = kernel(
        "kernel u {
            dims A, B
            param seed: u32
            out y: f32[]
            noise = uniform(seed, A, B)
            y = sum(noise, A, B)
        }",
    );
    let err = run::<f32>(&k, &[1 << 33, 1 << 33], &[0.0], &[&[]]).unwrap_err();
    assert_eq!(
        err,
        Error::SizeOverflow { what: "value `noise`".into(), dims: format!("A={}, B={}", 1u64 << 33, 1u64 << 33) }
    );
    assert!(err.to_string().contains("more than usize::MAX elements"), "{err}");
}

#[test]
fn an_impossible_allocation_is_an_error() {
    let k =
        kernel("kernel u { dims A\n param seed: u32\n out y: f32[]\n noise = uniform(seed, A)\n y = sum(noise, A) }");
    // 2^62 elements fit in usize but not in memory (nor in isize bytes).
    let err = run::<f32>(&k, &[1 << 62], &[0.0], &[&[]]).unwrap_err();
    assert_eq!(err, Error::Alloc { what: "value `noise`".into(), elements: 1 << 62 });
}

#[test]
fn lengths_are_checked_before_anything_is_computed() {
    // The first node would fail to allocate; the bad length must win.
    let k = kernel(
        "kernel u {
            dims A, N
            in x: f32[N]
            param seed: u32
            out y: f32[N]
            y = x + sum(uniform(seed, A), A)
        }",
    );
    let err = run::<f32>(&k, &[1 << 62, 3], &[0.0], &[&[1.0; 2], &[]]).unwrap_err();
    assert!(matches!(err, Error::TensorLength { ref tensor, expected: 3, found: 2, .. } if tensor == "x"), "{err}");
}

#[test]
fn seeds_must_be_whole_numbers_in_u32_range() {
    let k = kernel("kernel u { dims A\n param seed: u32\n out y: f32[A]\n y = uniform(seed, A) }");
    for bad in [1.5, -1.0, 4294967296.0, f64::NAN, f64::INFINITY] {
        let err = run::<f32>(&k, &[4], &[bad], &[&[]]).unwrap_err();
        assert!(
            matches!(err, Error::BadSeed { ref param, value } if param == "seed" && (value == bad || bad.is_nan())),
            "{err}"
        );
        assert!(err.to_string().contains("not a whole number in 0..=4294967295"), "{err}");
    }
    for good in [0.0, -0.0, 7.0, 4294967295.0] {
        assert!(run::<f64>(&k, &[4], &[good], &[&[]]).is_ok(), "seed {good}");
    }
}

#[test]
fn a_kernel_broken_after_verification_is_reported_not_run() {
    let mut k = layer_norm();
    k.stmts.retain(|s| !matches!(s, normjit_ir::Stmt::Store { .. }));
    let err = run::<f32>(&k, &[2, 3], &[1e-5], &[&[0.0; 6], &[0.0; 3], &[]]).unwrap_err();
    assert!(matches!(err, Error::InvalidKernel(ref m) if m.contains("`y`")), "{err}");
}

proptest! {
    // Random sizes (some 0, some huge), lengths (mostly right) and param
    // values: a result of the right shape or an error, never a panic.
    #[test]
    fn arbitrary_arguments_never_panic(
        dims in proptest::array::uniform3(prop_oneof![8 => 0usize..5, 1 => Just(usize::MAX), 1 => Just(1usize << 62)]),
        wrong_len in proptest::array::uniform3(prop_oneof![8 => Just(None), 1 => (0usize..20).prop_map(Some)]),
        params in proptest::array::uniform2(prop_oneof![1 => any::<f64>(), 3 => (0u32..10).prop_map(f64::from)]),
        drop_dim in proptest::bool::weighted(0.1),
    ) {
        let k = kernel(
            "kernel k {
                dims N, D, E
                in x: f32[D, N]
                inout m: f32[N]
                out y: f32[N, E, D]
                param seed: u32, a
                m = a * m + mean(x, D)
                y = select(uniform(seed, E) < 0.5, max(x, 0) / count(N), sum(x, N) + m)
            }",
        );
        let [n, d, e] = dims;
        let right = [n.checked_mul(d).unwrap_or(0).min(64), n.min(64), 0];
        let bufs: Vec<Vec<f32>> = (0..3)
            .map(|t| (0..wrong_len[t].unwrap_or(right[t])).map(|i| i as f32 - 3.0).collect())
            .collect();
        let tensors: Vec<&[f32]> = bufs.iter().map(|b| &b[..]).collect();
        let dims = if drop_dim { &dims[..2] } else { &dims[..] };
        match run::<f32>(&k, dims, &params, &tensors) {
            Ok(out) => {
                prop_assert_eq!(out.get(k.tensor("y").unwrap()).map(|y| y.len()), Some(n * d * e));
                prop_assert_eq!(out.get(k.tensor("m").unwrap()).map(|m| m.len()), Some(n));
            }
            Err(err) => prop_assert!(!err.to_string().is_empty()),
        }
    }
}
