//! The safe runtime API: binding by name, validation before any write,
//! foreach, concurrency, and code memory released with the last kernel.

mod common;

use normjit::{Bindings, Compiler, CompilerOptions, Error, Tensor};
use std::path::Path;

fn load(rel: &str) -> normjit::ir::Kernel {
    normjit::load_kernel(&Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap()
}

fn compiler(threads: usize) -> Compiler {
    Compiler::with_options(CompilerOptions { threads, ..Default::default() }).unwrap()
}

fn layer_norm_ref(x: &[f32], g: &[f32], b: &[f32], d: usize) -> Vec<f64> {
    let mut y = Vec::new();
    for row in x.chunks(d) {
        let mu = row.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
        let var = row.iter().map(|&v| (v as f64 - mu).powi(2)).sum::<f64>() / d as f64;
        let r = 1.0 / (var + 1e-5).sqrt();
        y.extend(row.iter().zip(g).zip(b).map(|((&v, &g), &b)| (v as f64 - mu) * r * g as f64 + b as f64));
    }
    y
}

fn data(n: usize, seed: u32) -> Vec<f32> {
    (0..n).map(|i| ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) % 1000) as f32 / 250.0 - 2.0).collect()
}

#[test]
fn layer_norm_by_name_with_inferred_dims() {
    let k = compiler(2).kernel(load("ir/norm/layer_norm.nj"));
    let (n, d) = (37, 1023);
    let (x, g, b) = (data(n * d, 1), data(d, 2), data(d, 3));
    let mut y = vec![0.0f32; n * d];
    let info = k.run(Bindings::new().input("x", &x).input("gamma", &g).input("beta", &b).output("y", &mut y)).unwrap();
    assert_eq!(info.dims, vec![n, d]);
    assert!(info.compile_us > 0.0);
    let want = layer_norm_ref(&x, &g, &b, d);
    for (i, (&a, &w)) in y.iter().zip(&want).enumerate() {
        assert!((a as f64 - w).abs() < 1e-5 * (1.0 + w.abs()), "y[{i}] = {a}, want {w}");
    }
    // The second run reuses the code.
    let info = k.run(Bindings::new().input("x", &x).input("gamma", &g).input("beta", &b).output("y", &mut y)).unwrap();
    assert_eq!(info.compile_us, 0.0);
}

#[test]
fn every_misuse_is_an_error_before_anything_is_written() {
    let k = compiler(1).kernel(load("ir/norm/layer_norm.nj"));
    let (x, g, b) = (data(12, 1), data(4, 2), data(4, 3));
    let fresh = || vec![7.0f32; 12];
    let mut y = fresh();
    let mut cases: Vec<(&str, Result<normjit::RunInfo, Error>)> = Vec::new();
    cases.push((
        "wrong length",
        k.run(Bindings::new().input("x", &x[..11]).input("gamma", &g).input("beta", &b).output("y", &mut y)),
    ));
    cases.push(("missing", k.run(Bindings::new().input("x", &x).input("gamma", &g).output("y", &mut y))));
    cases.push((
        "extra",
        k.run(Bindings::new().input("x", &x).input("gamma", &g).input("beta", &b).input("z", &b).output("y", &mut y)),
    ));
    cases.push((
        "twice",
        k.run(Bindings::new().input("x", &x).input("x", &x).input("gamma", &g).input("beta", &b).output("y", &mut y)),
    ));
    cases.push(("role", k.run(Bindings::new().input("x", &x).input("gamma", &g).input("beta", &b).input("y", &x))));
    cases.push((
        "param",
        k.run(
            Bindings::new()
                .input("x", &x)
                .input("gamma", &g)
                .input("beta", &b)
                .output("y", &mut y)
                .param("eps", f64::NAN),
        ),
    ));
    cases.push((
        "unknown param",
        k.run(Bindings::new().input("x", &x).input("gamma", &g).input("beta", &b).output("y", &mut y).param("lr", 1.0)),
    ));
    cases.push((
        "dims",
        k.run(Bindings::new().input("x", &x).input("gamma", &g).input("beta", &b).output("y", &mut y).dim("N", 5)),
    ));
    cases.push((
        "overflow",
        k.run(
            Bindings::new()
                .input("x", &x)
                .input("gamma", &g)
                .input("beta", &b)
                .output("y", &mut y)
                .dim("N", usize::MAX / 2)
                .dim("D", 4),
        ),
    ));
    let expect = [
        "has 11 elements, expected 12",
        "`beta` is not bound",
        "no tensor `z`",
        "`x` is given twice",
        "is `out`: bind it with `output`",
        "must be finite",
        "no param `lr`",
        "not a multiple of 5",
        "overflows",
    ];
    for ((what, r), want) in cases.into_iter().zip(expect) {
        let e = r.expect_err(what).to_string();
        assert!(e.contains(want), "{what}: {e}");
    }
    assert!(y.iter().all(|&v| v == 7.0), "a failed run wrote to y");
    // An inout bound twice, in adamw.
    let a = compiler(1).kernel(load("ir/optim/adamw.nj"));
    let (mut p, mut m, mut v, mut p2, gg) = (data(8, 1), vec![0.0; 8], vec![0.0; 8], data(8, 1), data(8, 2));
    let e = a
        .run(
            Bindings::new()
                .output("p", &mut p)
                .output("p", &mut p2)
                .output("m", &mut m)
                .output("v", &mut v)
                .input("g", &gg)
                .param("t", 1.0),
        )
        .unwrap_err();
    assert!(e.to_string().contains("`p` is given twice"), "{e}");
    let e =
        a.run(Bindings::new().output("p", &mut p).output("m", &mut m).output("v", &mut v).input("g", &gg)).unwrap_err();
    assert!(e.to_string().contains("param `t` has no default"), "{e}");
    assert_eq!(p, data(8, 1));
}

#[test]
fn an_output_aliasing_an_input_is_refused() {
    let k = compiler(1).kernel(load("ir/norm/rms_norm.nj"));
    let mut buf = data(10, 5);
    let before = buf.clone();
    let g = data(4, 6);
    let ptr = buf.as_mut_ptr();
    // SAFETY: `buf` (10 elements) outlives the bindings and nothing else
    // touches it; the overlap between `x` and `y` is what the run must
    // refuse (it creates no Rust references, so the aliasing itself is not
    // undefined).
    let raw = |p: *mut f32, n: usize, w: bool| unsafe { Tensor::raw(p.cast(), n, w, Some(normjit::DType::F32), "") };
    // Partial overlap: x = buf[0..8], y = buf[2..10], both of the right length.
    let b = Bindings::new()
        .tensor("x", raw(ptr, 8, false))
        .input("gamma", &g)
        .tensor("y", raw(ptr.wrapping_add(2), 8, true));
    let e = k.run(b.dim("N", 2)).unwrap_err();
    assert!(matches!(e, Error::Alias { ref a, ref b } if a == "y" && b == "x"), "{e}");
    // Same lengths, full overlap.
    let b = Bindings::new().tensor("x", raw(ptr, 8, false)).input("gamma", &g).tensor("y", raw(ptr, 8, true));
    let e = k.run(b).unwrap_err();
    assert!(matches!(e, Error::Alias { .. }), "{e}");
    assert_eq!(buf, before);
}

#[test]
fn foreach_matches_separate_runs() {
    let c = compiler(2);
    let k = c.kernel(load("ir/optim/adamw.nj"));
    let lens = [1usize, 7, 1000, 4097];
    let mut state: Vec<(Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>)> = lens
        .iter()
        .map(|&n| {
            (
                data(n, 1),
                data(n, 2).iter().map(|x| x * 0.1).collect(),
                data(n, 3).iter().map(|x| x.abs()).collect(),
                data(n, 4),
            )
        })
        .collect();
    let mut separate = state.clone();
    for (p, m, v, g) in &mut separate {
        k.run(
            Bindings::new()
                .output("p", p)
                .output("m", m)
                .output("v", v)
                .input("g", g)
                .param("t", 5.0)
                .param("lr", 0.01),
        )
        .unwrap();
    }
    let groups: Vec<Bindings> = state
        .iter_mut()
        .map(|(p, m, v, g)| Bindings::new().output("p", p).output("m", m).output("v", v).input("g", g))
        .collect();
    let infos = k.run_foreach(&[("t", 5.0), ("lr", 0.01)], groups).unwrap();
    assert_eq!(infos.len(), 4);
    for ((a, b), n) in state.iter().zip(&separate).zip(lens) {
        assert_eq!(a.0, b.0, "p of length {n}");
        assert_eq!(a.1, b.1, "m of length {n}");
        assert_eq!(a.2, b.2, "v of length {n}");
    }
}

#[test]
fn many_threads_share_kernels_and_get_identical_results() {
    let c = compiler(2);
    let ln = std::sync::Arc::new(c.kernel(load("ir/norm/layer_norm.nj")));
    let rms = std::sync::Arc::new(c.kernel(load("ir/norm/rms_norm.nj")));
    let (x, g, b) = (data(64 * 257, 1), data(257, 2), data(257, 3));
    let mut want_ln = vec![0.0f32; x.len()];
    ln.run(Bindings::new().input("x", &x).input("gamma", &g).input("beta", &b).output("y", &mut want_ln)).unwrap();
    let mut want_rms = vec![0.0f32; x.len()];
    rms.run(Bindings::new().input("x", &x).input("gamma", &g).output("y", &mut want_rms)).unwrap();
    std::thread::scope(|s| {
        for t in 0..8 {
            let (ln, rms, x, g, b, want_ln, want_rms) = (ln.clone(), rms.clone(), &x, &g, &b, &want_ln, &want_rms);
            let c = c.clone();
            s.spawn(move || {
                for i in 0..20 {
                    let mut y = vec![0.0f32; x.len()];
                    if (t + i) % 2 == 0 {
                        ln.run(Bindings::new().input("x", x).input("gamma", g).input("beta", b).output("y", &mut y))
                            .unwrap();
                        assert_eq!(&y, want_ln);
                    } else {
                        // A fresh handle on the same IR compiles or reuses shared code.
                        let k = c.kernel(rms.ir().clone());
                        k.run(Bindings::new().input("x", x).input("gamma", g).output("y", &mut y)).unwrap();
                        assert_eq!(&y, want_rms);
                    }
                }
            });
        }
    });
}

/// The positional path's bad-input catalogue: each call is refused with the
/// named error before anything is written.
#[test]
fn positional_misuse_is_refused_before_anything_is_written() {
    let k = compiler(2).kernel(load("ir/norm/layer_norm.nj"));
    let (n, d) = (3, 4);
    let (x, g, b) = (data(n * d, 1), data(d, 2), data(d, 3));
    let mut y = vec![7.0f32; n * d];
    let yp = y.as_mut_ptr();
    // SAFETY (for `raw`): every raw view below points into a live Vec of at
    // least the length given, or is null with the length the case needs.
    let raw = |p: *mut f32, len: usize, w: bool, dt: Option<normjit::DType>, name: &'static str| unsafe {
        Tensor::raw(p.cast(), len, w, dt, name)
    };
    let f32t = Some(normjit::DType::F32);
    let xs = [n, d];
    let (flat, d3) = ([n * d], [3usize]);
    // (what, tensors, params, dims, expected message)
    type Case<'a> = (&'a str, Vec<Tensor<'a>>, Vec<f64>, Option<Vec<usize>>, &'a str);
    let cases: Vec<Case> = vec![
        ("too few tensors", vec![Tensor::input(&x)], vec![1e-5], None, "takes 4 tensors, 1 given"),
        (
            "too many params",
            vec![Tensor::input(&x), Tensor::input(&g), Tensor::input(&b), raw(yp, n * d, true, f32t, "")],
            vec![1e-5, 2.0],
            None,
            "takes 1 params, 2 given",
        ),
        (
            "null buffer",
            vec![
                raw(std::ptr::null_mut(), n * d, false, f32t, ""),
                Tensor::input(&g),
                Tensor::input(&b),
                raw(yp, n * d, true, f32t, ""),
            ],
            vec![1e-5],
            None,
            "tensor `x` has a null data pointer",
        ),
        (
            "short buffer",
            vec![
                Tensor::input(&x[..n * d - 1]).shaped(&xs),
                Tensor::input(&g),
                Tensor::input(&b),
                raw(yp, n * d, true, f32t, ""),
            ],
            vec![1e-5],
            None,
            "tensor `x` has 11 elements, expected 12",
        ),
        (
            "wrong dtype",
            vec![
                raw(x.as_ptr() as *mut f32, n * d, false, None, "f64"),
                Tensor::input(&g),
                Tensor::input(&b),
                raw(yp, n * d, true, f32t, ""),
            ],
            vec![1e-5],
            None,
            "declared f32 but a f64 buffer was given",
        ),
        (
            "wrong rank",
            vec![Tensor::input(&x).shaped(&flat), Tensor::input(&g), Tensor::input(&b), raw(yp, n * d, true, f32t, "")],
            vec![1e-5],
            None,
            "declared f32[N, D] but the given array has shape [12]",
        ),
        (
            "contradicting dims",
            vec![
                Tensor::input(&x).shaped(&xs),
                Tensor::input(&g[..3]).shaped(&d3),
                Tensor::input(&b),
                raw(yp, n * d, true, f32t, ""),
            ],
            vec![1e-5],
            None,
            "dim `D` is 4 from the shape of `x` but 3 from the shape of `gamma`",
        ),
        (
            "read-only output",
            vec![Tensor::input(&x), Tensor::input(&g), Tensor::input(&b), raw(yp, n * d, false, f32t, "")],
            vec![1e-5],
            None,
            "tensor `y` is `out`",
        ),
        (
            "output aliases an input",
            vec![raw(yp, n * d, false, f32t, ""), Tensor::input(&g), Tensor::input(&b), raw(yp, n * d, true, f32t, "")],
            vec![1e-5],
            None,
            "output `y` overlaps `x`",
        ),
        (
            "NaN param",
            vec![Tensor::input(&x), Tensor::input(&g), Tensor::input(&b), raw(yp, n * d, true, f32t, "")],
            vec![f64::NAN],
            None,
            "param `eps` = NaN: must be finite",
        ),
        (
            "dims contradicting lengths",
            vec![Tensor::input(&x), Tensor::input(&g), Tensor::input(&b), raw(yp, n * d, true, f32t, "")],
            vec![1e-5],
            Some(vec![4, 4]),
            "tensor `x` has 12 elements, expected 16",
        ),
        (
            "dims whose product overflows",
            vec![Tensor::input(&x), Tensor::input(&g), Tensor::input(&b), raw(yp, n * d, true, f32t, "")],
            vec![1e-5],
            Some(vec![usize::MAX / 2, 4]),
            "overflows",
        ),
        (
            "wrong number of dims",
            vec![Tensor::input(&x), Tensor::input(&g), Tensor::input(&b), raw(yp, n * d, true, f32t, "")],
            vec![1e-5],
            Some(vec![3]),
            "takes 2 dims, 1 given",
        ),
    ];
    for (what, tensors, params, dims, want) in cases {
        let e = k.call_with(&tensors, &params, dims.as_deref(), normjit::Threads::Default).expect_err(what);
        assert!(e.to_string().contains(want), "{what}: `{e}` does not contain `{want}`");
    }
    assert!(y.iter().all(|&v| v == 7.0), "a refused call wrote to y");
    // And the same views, right, do run.
    let ok = [Tensor::input(&x).shaped(&xs), Tensor::input(&g), Tensor::input(&b), Tensor::output(&mut y)];
    k.call(&ok, &[1e-5]).unwrap();
    let want = layer_norm_ref(&x, &g, &b, d);
    assert!(y.iter().zip(&want).all(|(a, b)| (*a as f64 - b).abs() < 1e-5), "{y:?}");
}

/// The same call on the calling thread, on the compiler's pool and on a
/// pool the caller passes in gives bit-identical results, at shapes that
/// change from call to call (one compilation serves them all).
#[test]
fn calling_thread_and_pools_agree_bit_for_bit_at_runtime_shapes() {
    let opts = CompilerOptions { threads: 3, parallel_min_work: 0, chunk_elems: 512, ..Default::default() };
    let c = Compiler::with_options(opts).unwrap();
    let k = c.kernel(load("ir/norm/layer_norm.nj"));
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    for (n, d) in [(1, 5), (37, 1023), (3, 4096), (64, 17)] {
        let (x, g, b) = (data(n * d, 1), data(d, 2), data(d, 3));
        let mut outs = Vec::new();
        for on in [normjit::Threads::CallingThread, normjit::Threads::Default, normjit::Threads::Pool(&pool)] {
            let mut y = vec![0.0f32; n * d];
            let t = [Tensor::input(&x), Tensor::input(&g), Tensor::input(&b), Tensor::output(&mut y)];
            k.call_with(&t, &[1e-5], None, on).unwrap();
            outs.push(y.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
        }
        assert!(outs.windows(2).all(|w| w[0] == w[1]), "{n}x{d}: results differ across threads");
    }
    assert_eq!(k.compiles(), 1, "one compilation serves every shape");
}

/// `call_foreach` over many small parameter tensors (spread over the pool)
/// and a large one (split on its own) equals one call per tensor on the
/// calling thread, bit for bit.
#[test]
fn call_foreach_on_a_pool_equals_separate_calls() {
    let c =
        Compiler::with_options(CompilerOptions { threads: 3, parallel_min_work: 4096, ..Default::default() }).unwrap();
    let k = c.kernel(load("ir/optim/adamw.nj"));
    let order: Vec<&str> = k.signature().tensors.iter().map(|t| t.name.as_str()).collect();
    let params: Vec<f64> =
        k.signature().params.iter().map(|p| if p.name == "t" { 3.0 } else { p.default.unwrap_or(0.01) }).collect();
    let lens: Vec<usize> = (0..40).map(|i| 1 + i * 37 % 500).chain([20_000]).collect();
    let state = |seed: u32| -> Vec<[Vec<f32>; 4]> {
        lens.iter()
            .enumerate()
            .map(|(i, &n)| {
                let s = seed + 10 * i as u32;
                [
                    data(n, s),
                    data(n, s + 1),
                    data(n, s + 2).iter().map(|x| x * 0.1).collect(),
                    data(n, s + 3).iter().map(|x| x * x).collect(),
                ]
            })
            .collect()
    };
    // Tensor order p, g, m, v in the state arrays; the signature's order may differ.
    let slot = |name: &str| ["p", "g", "m", "v"].iter().position(|n| *n == name).unwrap();
    let mut a = state(1);
    let mut b = state(1);
    {
        let mut groups: Vec<Vec<Tensor>> = Vec::new();
        for st in a.iter_mut() {
            let mut parts: Vec<Option<&mut Vec<f32>>> = st.iter_mut().map(Some).collect();
            groups.push(
                order
                    .iter()
                    .map(|n| {
                        let v = parts[slot(n)].take().unwrap();
                        if *n == "g" {
                            Tensor::input(v)
                        } else {
                            Tensor::output(v)
                        }
                    })
                    .collect(),
            );
        }
        let refs: Vec<&[Tensor]> = groups.iter().map(|g| &g[..]).collect();
        k.call_foreach(&refs, &params, normjit::Threads::Default).unwrap();
    }
    for st in b.iter_mut() {
        let mut parts: Vec<Option<&mut Vec<f32>>> = st.iter_mut().map(Some).collect();
        let g: Vec<Tensor> = order
            .iter()
            .map(|n| {
                let v = parts[slot(n)].take().unwrap();
                if *n == "g" {
                    Tensor::input(v)
                } else {
                    Tensor::output(v)
                }
            })
            .collect();
        k.call_with(&g, &params, None, normjit::Threads::CallingThread).unwrap();
    }
    for (x, y) in a.iter().zip(&b) {
        for (u, w) in x.iter().zip(y) {
            assert!(u.iter().zip(w).all(|(p, q)| p.to_bits() == q.to_bits()), "foreach differs from separate calls");
        }
    }
    assert_ne!(a[0][0], state(1)[0][0], "the step changed p");
}

/// `CompilerOptions::schedule`: a legal change runs (and still computes
/// LayerNorm); one that does not fit the kernel is a configuration error at
/// the first call, before anything is written.
#[test]
fn schedule_overrides_apply_or_are_refused_before_anything_is_written() {
    let (n, d) = (9, 1001);
    let (x, g, b) = (data(n * d, 1), data(d, 2), data(d, 3));
    let want = layer_norm_ref(&x, &g, &b, d);
    let overrides =
        normjit::unstable::lower::Overrides::parse("group=none,reduce_unroll=3,stream_unroll=5,prefetch=on").unwrap();
    let opts = CompilerOptions { threads: 1, schedule: overrides, ..Default::default() };
    let k = Compiler::with_options(opts).unwrap().kernel(load("ir/norm/layer_norm.nj"));
    let (code, _) = k.prepare(&[n, d]).unwrap();
    let plan = code.plan();
    assert!(plan.group().is_empty() && plan.schedule.reduce_unroll == 3 && plan.schedule.stream_unroll == 5);
    let mut y = vec![0.0f32; n * d];
    k.run(Bindings::new().input("x", &x).input("gamma", &g).input("beta", &b).output("y", &mut y)).unwrap();
    for (i, (&a, &w)) in y.iter().zip(&want).enumerate() {
        assert!((a as f64 - w).abs() < 1e-5 * (1.0 + w.abs()), "y[{i}] = {a}, want {w}");
    }
    for bad in ["group=D", "group=Q", "reduce_unroll=0", "stream_unroll=9", "chunk_elems=0"] {
        let overrides = normjit::unstable::lower::Overrides::parse(bad).unwrap();
        let opts = CompilerOptions { threads: 1, schedule: overrides, ..Default::default() };
        let k = Compiler::with_options(opts).unwrap().kernel(load("ir/norm/layer_norm.nj"));
        let mut y = vec![7.0f32; n * d];
        let r = k.run(Bindings::new().input("x", &x).input("gamma", &g).input("beta", &b).output("y", &mut y));
        match r {
            Err(e @ Error::Config(_)) => assert!(e.to_string().contains("illegal schedule"), "{bad}: {e}"),
            other => panic!("{bad}: expected a configuration error, got {other:?}"),
        }
        assert!(y.iter().all(|&v| v == 7.0), "{bad}: the output was written");
    }
    for bad in ["unroll=2", "hoist=yes", "reduce_unroll=x", "group"] {
        assert!(normjit::unstable::lower::Overrides::parse(bad).is_err(), "{bad} parsed");
    }
}
