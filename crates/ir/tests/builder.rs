//! The builder API makes the same IR as the text, reports the same errors
//! without panicking, and the printer copes with builder-only shapes
//! (shared unnamed values, very deep chains).

use normjit_ir::*;

#[test]
fn builder_and_text_give_the_same_kernel() {
    let text = "kernel layer_norm {
  dims N, D
  in x: f32[N, D]
  in gamma: f32[D]
  in beta: f32[D]
  out y: f32[N, D]
  param eps = 1e-5

  mu = mean(x, D)
  xc = x - mu
  var = mean(xc * xc, D)
  y = xc * rsqrt(var + eps) * gamma + beta
}
";
    let mut b = KernelBuilder::new("layer_norm");
    let (n, d) = (b.dim("N"), b.dim("D"));
    let x = b.tensor("x", Role::In, DType::F32, &[n, d]);
    let gamma = b.tensor("gamma", Role::In, DType::F32, &[d]);
    let beta = b.tensor("beta", Role::In, DType::F32, &[d]);
    let y = b.tensor("y", Role::Out, DType::F32, &[n, d]);
    let eps = b.param("eps", Some(1e-5));
    let xv = b.load(x);
    let mu = b.reduce(Reduce::Mean, xv, &[d]);
    b.let_("mu", mu);
    let xv2 = b.load(x);
    let xc = b.sub(xv2, mu);
    b.let_("xc", xc);
    let sq = b.mul(xc, xc);
    let var = b.reduce(Reduce::Mean, sq, &[d]);
    b.let_("var", var);
    let e = b.param_value(eps);
    let ve = b.add(var, e);
    let r = b.rsqrt(ve);
    let t = b.mul(xc, r);
    let g = b.load(gamma);
    let t = b.mul(t, g);
    let bb = b.load(beta);
    let out = b.add(t, bb);
    b.store(y, out);
    let built = b.finish().unwrap();
    let parsed = parse(text).unwrap();
    assert_eq!(built, parsed);
    assert_eq!(built.to_string(), text);
    assert_eq!(
        parsed.nodes[parsed.stored_value(parsed.tensor("y").unwrap()).unwrap()].axes,
        parsed.tensors[parsed.tensor("y").unwrap()].axes()
    );
}

#[test]
fn builder_errors_are_collected_not_panics() {
    let mut b = KernelBuilder::new("bad");
    let n = b.dim("N");
    let d = b.dim("D");
    let x = b.tensor("x", Role::In, DType::F32, &[n]);
    let y = b.tensor("y", Role::Out, DType::F32, &[n]);
    let _unused_out = b.tensor("z", Role::Out, DType::F32, &[n]);
    let xv = b.load(x);
    let bad = b.reduce(Reduce::Sum, xv, &[d]); // x has no axis D
    let follow = b.add(bad, xv); // poisoned: no second error
    b.store(y, follow);
    b.store(x, xv); // assigning an `in`
    let foreign = ValueId::from_raw(9999);
    b.store(y, foreign); // assigned twice
    let c = b.constant(f64::NAN);
    let _ = c;
    let errs = b.finish().unwrap_err();
    let msgs: Vec<&str> = errs.iter().map(|d| d.message.as_str()).collect();
    assert!(msgs.iter().any(|m| m.contains("cannot reduce over D")), "{msgs:?}");
    assert!(msgs.iter().any(|m| m.contains("cannot assign `x`")), "{msgs:?}");
    assert!(msgs.iter().any(|m| m.contains("assigned twice")), "{msgs:?}");
    assert!(msgs.iter().any(|m| m.contains("finite")), "{msgs:?}");
    assert!(msgs.iter().any(|m| m.contains("`z` is never assigned")), "{msgs:?}");
    assert_eq!(msgs.len(), 5, "{msgs:?}");
    // Without a source, Display still names each problem.
    assert!(errs.to_string().contains("error: cannot reduce over D"));
}

#[test]
fn printer_names_shared_values_and_cuts_deep_chains() {
    let mut b = KernelBuilder::new("chain");
    let n = b.dim("N");
    let x = b.tensor("x", Role::In, DType::F32, &[n]);
    let y = b.tensor("y", Role::Out, DType::F32, &[n]);
    let xv = b.load(x);
    let shared = b.mul(xv, xv);
    let mut acc = b.add(shared, shared);
    for _ in 0..10_000 {
        let one = b.constant(1.0);
        acc = b.add(acc, one);
    }
    b.store(y, acc);
    let k = b.finish().unwrap();
    let printed = k.to_string();
    // The shared product is printed once, under a temporary name.
    assert_eq!(printed.matches("x * x").count(), 1, "{printed}");
    let k2 = parse(&printed).unwrap_or_else(|d| panic!("{}", d.render("p", &printed)));
    verify(&k2).unwrap();
    // Printing is a fixed point after the first round.
    assert_eq!(k2.to_string(), printed);
    // Same computation; the one shared load of `x` becomes two loads.
    assert_eq!(k2.nodes.len(), k.nodes.len() + 1);
}

#[test]
fn negative_literals_and_powers_round_trip() {
    let src = "kernel k {\n  dims N\n  in x: f32[N]\n  out y: f32[N]\n\n  y = -x ^ 2 + (-2) ^ 2 + 2 ^ -1 - -3 + neg(3) + -(x - 1) * -0.5\n}\n";
    let k = parse(src).unwrap();
    let printed = k.to_string();
    assert_eq!(parse(&printed).unwrap(), k, "{printed}");
    // `-x ^ 2` is `-(x ^ 2)`.
    let y = k.stored_value(k.tensor("y").unwrap()).unwrap();
    let mut v = y;
    while let Op::Binary(Binary::Add | Binary::Sub, a, _) = k.nodes[v].op {
        v = a;
    }
    assert!(
        matches!(k.nodes[v].op, Op::Unary(Unary::Neg, inner) if matches!(k.nodes[inner].op, Op::Binary(Binary::Pow, ..)))
    );
}

#[test]
fn axes_follow_named_broadcasting() {
    let k = parse(
        "kernel k { dims N, C, H\n in x: f32[N, C, H]\n in g: f32[C]\n out s: f32[C]\n out y: f32[N, C, H]\n m = mean(x, N, H)\n s = m\n y = (x - m) * g + count(N, H)\n}",
    )
    .unwrap();
    let m = match &k.stmts[0] {
        Stmt::Let { value, .. } => *value,
        _ => unreachable!(),
    };
    let c = k.dim("C").unwrap();
    assert_eq!(k.nodes[m].axes, AxisSet::EMPTY.with(c));
    let y = k.stored_value(k.tensor("y").unwrap()).unwrap();
    assert_eq!(k.nodes[y].axes.len(), 3);
}
