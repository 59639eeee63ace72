//! The text front end's sugar and checks: `repeat` unrolling, `var`/`std`,
//! warnings, and the hints for PyTorch spellings.

use normjit_ir::*;
use proptest::prelude::*;

fn ok(src: &str) -> Kernel {
    parse(src).unwrap_or_else(|d| panic!("{}", d.render("t.nj", src)))
}

fn errors(src: &str) -> String {
    parse(src).expect_err("must be rejected").render("t.nj", src)
}

fn warnings(src: &str) -> Diagnostics {
    let (_, w) = parse_with_warnings(src).unwrap_or_else(|d| panic!("{}", d.render("t.nj", src)));
    assert!(w.iter().all(|d| d.is_warning()));
    w
}

/// Parses, checks the printer round trip (equal kernel, fixed point) and
/// returns the kernel and its printed form.
fn round_trip(src: &str) -> (Kernel, String) {
    let k = ok(src);
    verify(&k).unwrap();
    let printed = k.to_string();
    let k2 = parse(&printed).unwrap_or_else(|d| panic!("{}", d.render("printed", &printed)));
    assert_eq!(k2, k, "printed:\n{printed}");
    assert_eq!(k2.to_string(), printed);
    (k, printed)
}

const POWER: &str = "kernel power_iteration {
  dims M, K
  in    w: f32[M, K]
  inout u: f32[M]
  out   sigma: f32[]

  un = u
  repeat 3 {
    v  = sum(w * un, M)
    v  = v / sqrt(sum(v * v, K))
    wv = sum(w * v, K)
    un = wv / sqrt(sum(wv * wv, M))
  }
  u = un
  sigma = sum(un * wv, M)
}
";

#[test]
fn repeat_unrolls_to_the_hand_written_ssa() {
    let mut unrolled = String::from(
        "kernel power_iteration {\n  dims M, K\n  in w: f32[M, K]\n  inout u: f32[M]\n  out sigma: f32[]\n\n  un = u\n",
    );
    let mut prev_u = "un".to_string();
    for i in 1..=3 {
        let (v1, v2, wv, un) =
            (format!("v_{}", 2 * i - 1), format!("v_{}", 2 * i), format!("wv_{i}"), format!("un_{i}"));
        unrolled.push_str(&format!("  {v1} = sum(w * {prev_u}, M)\n"));
        unrolled.push_str(&format!("  {v2} = {v1} / sqrt(sum({v1} * {v1}, K))\n"));
        unrolled.push_str(&format!("  {wv} = sum(w * {v2}, K)\n"));
        unrolled.push_str(&format!("  {un} = {wv} / sqrt(sum({wv} * {wv}, M))\n"));
        prev_u = un;
    }
    unrolled.push_str("  u = un_3\n  sigma = sum(un_3 * wv_3, M)\n}\n");
    let (k, printed) = round_trip(POWER);
    assert_eq!(printed, unrolled);
    assert_eq!(k, ok(&unrolled));
    assert!(warnings(POWER).is_empty(), "{}", warnings(POWER));
}

#[test]
fn carried_names_read_the_previous_iteration() {
    let src = "kernel k { dims N\n in x: f32[N]\n out y: f32[N]\n a = x\n repeat 3 { a = a * 2 }\n y = a\n}";
    let (k, printed) = round_trip(src);
    assert!(printed.contains("a_1 = a * 2.0\n  a_2 = a_1 * 2.0\n  a_3 = a_2 * 2.0\n  y = a_3\n"), "{printed}");
    let names: Vec<&str> = k
        .stmts
        .iter()
        .filter_map(|s| match s {
            Stmt::Let { name, .. } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(names, ["a", "a_1", "a_2", "a_3"]);
    // `repeat 1` is the body once.
    let one = ok("kernel k { dims N\n in x: f32[N]\n out y: f32[N]\n a = x\n repeat 1 { a = a * 2 }\n y = a\n}");
    assert_eq!(one, ok("kernel k { dims N\n in x: f32[N]\n out y: f32[N]\n a = x\n a_1 = a * 2\n y = a_1\n}"));
}

#[test]
fn generated_names_avoid_every_source_name() {
    // `a_1` and `a_2` are the user's own names (one bound after the loop).
    let src = "kernel k { dims N\n in x: f32[N]\n in a_1: f32[N]\n out y: f32[N]\n a = x\n repeat 2 { a = a + a_1 }\n a_2 = a\n y = a_2\n}";
    let (_, printed) = round_trip(src);
    assert!(printed.contains("a_3 = a + a_1\n  a_4 = a_3 + a_1\n  a_2 = a_4\n"), "{printed}");
}

#[test]
fn var_is_the_two_pass_biased_variance_with_one_inner_mean() {
    let src = "kernel k {\n  dims N, D\n  in x: f32[N, D]\n  out y: f32[N]\n  out s: f32[N]\n\n  y = var(x, D)\n  s = std(x * 2, D)\n}\n";
    let (k, printed) = round_trip(src);
    assert!(printed.contains("y = var(x, D)\n  s = sqrt(var(x * 2.0, D))\n"), "{printed}");
    // The same nodes as the builder's two-pass form, the inner mean once.
    let mut b = KernelBuilder::new("k");
    let (_, d) = (b.dim("N"), b.dim("D"));
    let n = DimId::from_raw(0);
    let x = b.tensor("x", Role::In, DType::F32, &[n, d]);
    let y = b.tensor("y", Role::Out, DType::F32, &[n]);
    let s = b.tensor("s", Role::Out, DType::F32, &[n]);
    let xv = b.load(x);
    let m = b.reduce(Reduce::Mean, xv, &[d]);
    let xc = b.sub(xv, m);
    let sq = b.mul(xc, xc);
    let v = b.reduce(Reduce::Mean, sq, &[d]);
    b.store(y, v);
    let xv = b.load(x);
    let two = b.constant(2.0);
    let x2 = b.mul(xv, two);
    let m = b.reduce(Reduce::Mean, x2, &[d]);
    let xc = b.sub(x2, m);
    let sq = b.mul(xc, xc);
    let v = b.reduce(Reduce::Mean, sq, &[d]);
    let sd = b.sqrt(v);
    b.store(s, sd);
    let built = b.finish().unwrap();
    assert_eq!(built, k);
    // The builder kernel has the same shape, so it prints as `var` too.
    assert_eq!(built.to_string(), printed);
    let means = k.nodes.iter().filter(|(_, n)| matches!(n.op, Op::Reduce(Reduce::Mean, ..))).count();
    assert_eq!(means, 4);
}

#[test]
fn var_of_a_named_or_shared_operand_round_trips() {
    // The operand is an expression (printed inline once) and a name.
    let src = "kernel k {\n  dims N, D\n  in x: f32[N, D]\n  in g: f32[D]\n  out y: f32[N, D]\n\n  xg = x * g\n  v = var(xg + 1, D) + var(xg, D, N)\n  y = (x - mean(x, D)) * rsqrt(var(x, D) + 1e-5) + v\n}\n";
    round_trip(src);
    let e = errors("kernel k { dims N, D\n in x: f32[N]\n out y: f32[]\n y = var(x, D)\n}");
    assert!(e.contains("cannot reduce over D: the value has axes {N}"), "{e}");
    assert_eq!(e.matches("error").count(), 1, "{e}");
}

#[test]
fn stores_inside_repeat_are_errors_without_follow_ups() {
    let e = errors("kernel k { dims N\n inout p: f32[N]\n out y: f32[N]\n repeat 2 {\n p = p * 2\n y = p\n }\n}");
    assert!(e.contains("cannot assign `p` inside `repeat`: an `inout` tensor is stored exactly once"), "{e}");
    assert!(e.contains("cannot assign `y` inside `repeat`: an `out` tensor is stored exactly once"), "{e}");
    assert!(!e.contains("never assigned"), "{e}");
    assert_eq!(e.matches(": error: ").count(), 2, "{e}");
}

#[test]
fn body_errors_are_reported_once_and_do_not_cascade() {
    let src = "kernel k { dims N\n in x: f32[N]\n out y: f32[N]\n a = x\n repeat 5 {\n t = a * zz\n a = t + 1\n }\n y = a + t\n}";
    let e = errors(src);
    assert_eq!(e.matches(": error: ").count(), 1, "{e}");
    assert!(e.contains("t.nj:6:10: error: unknown name `zz`"), "{e}");
}

#[test]
fn an_error_first_seen_in_a_later_iteration_names_it() {
    let src = "kernel k { dims M, K\n in w: f32[M, K]\n in v0: f32[K]\n out y: f32[M]\n v = v0\n repeat 4 {\n n = sum(v, K)\n v = sum(w * v, K) / n\n }\n y = v\n}";
    let e = errors(src);
    assert_eq!(e.matches(": error: ").count(), 1, "{e}");
    assert!(e.contains("t.nj:7:6: error: cannot reduce over K: the value has axes {M}"), "{e}");
    assert!(
        e.contains("= note: in iteration 2 of 4 of the `repeat` on line 6; iteration 1 changed `v` from {K} to {M}"),
        "{e}"
    );
}

#[test]
fn repeat_syntax_errors() {
    for (body, want) in [
        ("repeat 0 { a = x }", "found `0`"),
        ("repeat 65 { a = x }", "found `65`"),
        ("repeat 2.5 { a = x }", "found `2.5`"),
        ("repeat 3.0 { a = x }", "found `3.0`"),
        ("repeat { a = x }", "found `{`"),
        ("repeat 2\n a = x", "expected `{` to open the `repeat` body"),
        ("repeat 2 { dims Q }", "declarations cannot be inside `repeat`"),
        ("repeat 2 { repeat 2 { a = x } }", "`repeat` cannot be nested"),
    ] {
        let src = format!("kernel k {{ dims N\n in x: f32[N]\n out y: f32[N]\n {body}\n y = x\n}}");
        let e = errors(&src);
        assert!(e.contains(want), "{body}: {e}");
    }
    // `repeat` is still usable as a value name.
    ok("kernel k { dims N\n in x: f32[N]\n out y: f32[N]\n repeat = x * 2\n y = repeat\n}");
    // Statements may share a line with `;`, and the body may be empty.
    ok("kernel k { dims N\n in x: f32[N]\n out y: f32[N]\n a = x; repeat 2 { a = a + 1; a = a * 2 }; repeat 3 {}\n y = a\n}");
}

#[test]
fn binding_a_body_name_again_after_the_loop_is_an_error() {
    let e = errors("kernel k { dims N\n in x: f32[N]\n out y: f32[N]\n repeat 2 { t = x }\n t = x * 2\n y = t\n}");
    assert!(e.contains("`t` is bound twice"), "{e}");
    let e = errors("kernel k { dims N\n in x: f32[N]\n out y: f32[N]\n repeat 2 { t = x }\n param t\n y = t\n}");
    assert!(e.contains("`t` is declared twice (first as a value)"), "{e}");
}

#[test]
fn inout_read_after_store_warns_at_the_read() {
    let src = "kernel adagrad {\n dims P\n inout p: f32[P]\n inout s: f32[P]\n in g: f32[P]\n param lr = 0.01, eps = 1e-10\n s = s + g * g\n p = p - lr * g / (sqrt(s) + eps)\n}";
    // The plain API accepts it.
    ok(src);
    let w = warnings(src);
    assert_eq!(w.len(), 1, "{w}");
    let r = w.render("a.nj", src);
    assert!(r.starts_with("a.nj:8:25: warning: `s` is read after it is stored (line 7)"), "{r}");
    assert!(r.contains("`s1 = s + g * g`, then `s = s1`, and read `s1` here"), "{r}");
    // The fixed program, and reads before the store, do not warn.
    let fixed = "kernel adagrad {\n dims P\n inout p: f32[P]\n inout s: f32[P]\n in g: f32[P]\n param lr = 0.01, eps = 1e-10\n s1 = s + g * g\n s = s1\n p = p - lr * g / (sqrt(s1) + eps)\n}";
    assert!(warnings(fixed).is_empty());
    // A suggested name already in use is skipped.
    let src2 = src.replace("in g: f32[P]", "in g: f32[P]\n in s1: f32[P]").replace("g * g", "g * g * s1");
    let r = warnings(&src2).render("a.nj", &src2);
    assert!(r.contains("`s_new = s + g * g * s1`"), "{r}");
}

#[test]
fn unused_names_warn_unless_underscored() {
    let src = "kernel k {\n dims N\n in x: f32[N]\n in m: f32[N]\n in _m2: f32[N]\n out y: f32[N]\n param a, _b\n t = x * 2\n _u = x * 3\n y = x\n}";
    let w = warnings(src);
    let msgs: Vec<&str> = w.iter().map(|d| d.message.as_str()).collect();
    assert_eq!(msgs, ["`in` tensor `m` is never read", "param `a` is never used", "value `t` is never used"], "{w}");
    // Only-stored and seed-only uses count as uses.
    assert!(warnings("kernel k { dims N\n out y: f32[N]\n param s: u32\n t = uniform(s, N)\n y = t\n}").is_empty());
}

#[test]
fn uniform_seed_reuse_warns() {
    let w = warnings(
        "kernel k { dims N\n in x: f32[N]\n out y: f32[N]\n param s: u32\n y = uniform(s, N) * x + uniform(s, N)\n}",
    );
    assert_eq!(w.len(), 1, "{w}");
    assert!(w.0[0].message.contains("reuses the seed `s` of the draw on line 5"), "{w}");
    // One draw bound to a name and used twice is fine; so are two seeds.
    assert!(warnings(
        "kernel k { dims N\n in x: f32[N]\n out y: f32[N]\n param s: u32\n u = uniform(s, N)\n y = u * x + u\n}"
    )
    .is_empty());
    let w = warnings("kernel k { dims N\n in x: f32[N]\n out y: f32[N]\n param s: u32\n a = x\n repeat 3 { a = a * uniform(s, N) }\n y = a\n}");
    assert_eq!(w.len(), 1, "{w}");
    assert!(w.0[0].message.contains("same numbers in each of the 3 iterations"), "{w}");
}

#[test]
fn pytorch_spellings_get_hints() {
    let head = "kernel k { dims N, D\n in x: f32[N, D]\n out y: f32[N]\n";
    for (stmt, want) in [
        ("y = mean(x, dim=D)", "help: write `mean(x, D)`"),
        ("y = sum(x * x, dim=(D,), keepdim=True)", "help: write `sum(x * x, D)`"),
        ("y = mean(x, axis=-1)", "name the dims: `mean(x, D)`"),
        ("y = mean(x, D, keepdims=True)", "`mean` has no `keepdim`"),
        ("y = std(x, D, correction=0)", "always the biased variance"),
        ("y = softmax(x, dim=-1)", "unknown function `softmax`"),
        ("y = sum(clamp(x, 0, 1), D)", "`min(max(x, lo), hi)`"),
        ("y = torch.amax(x, D)", "`max(x, D)`"),
        ("y = F.layer_norm(x, D)", "ir/norm/layer_norm.nj"),
        ("y = x.sum(D)", "`sum(x, ...)`"),
        ("y = sum(x ** 2, D)", "`x ^ 2`"),
        ("y = sum(x, (N, D))", "there are no tuples"),
        ("y = select(x > 0, x, 0, out=x)", "`select` takes positional arguments only"),
    ] {
        let src = format!("{head} {stmt}\n}}");
        let r = parse(&src);
        let e = r.as_ref().map(|_| String::new()).unwrap_or_else(|d| d.render("t.nj", &src));
        assert!(e.contains(want), "{stmt}: {e}");
    }
}

const VOCAB: &[&str] = &[
    "kernel",
    "k",
    "{",
    "}",
    "\n",
    ";",
    "dims",
    "N",
    "D",
    ",",
    "in",
    "out",
    "inout",
    "param",
    "x",
    "y",
    "a",
    ":",
    "f32",
    "u32",
    "[",
    "]",
    "(",
    ")",
    "=",
    "+",
    "-",
    "*",
    "/",
    "^",
    ">",
    "sum",
    "mean",
    "var",
    "std",
    "max",
    "uniform",
    "seed",
    "select",
    "sqrt",
    "repeat",
    "3",
    "64",
    "0",
    "dim",
    "keepdim",
    "True",
    "torch",
    ".",
    "x.mean",
    "torch.rsqrt",
    "clamp",
    "_t",
    "a_1",
    " ",
];

const GOOD: &str = "kernel k {\n dims N, D\n in x: f32[N, D]\n inout a: f32[N]\n out y: f32[N, D]\n param seed: u32\n b = mean(x, D)\n repeat 3 {\n b = b * 0.5 + var(x, D)\n c = std(x - b, D, N)\n }\n a = b + c\n y = x * uniform(seed, N, D)\n}\n";

fn no_panic(src: &[u8]) {
    let (k, d) = check(src);
    let _ = d.render("fuzz.nj", &String::from_utf8_lossy(src));
    match k {
        Some(k) => {
            assert!(!d.has_errors());
            verify(&k).unwrap();
            let printed = k.to_string();
            let k2 = parse(&printed).unwrap_or_else(|e| panic!("printed kernel does not parse:\n{printed}\n{e}"));
            assert_eq!(k, k2, "{printed}");
        }
        None => assert!(d.has_errors()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn check_never_panics_on_token_soup(toks in proptest::collection::vec(0..VOCAB.len(), 0..120)) {
        let src: String = toks.iter().map(|&i| VOCAB[i]).collect::<Vec<_>>().join(" ");
        no_panic(src.as_bytes());
    }

    #[test]
    fn check_never_panics_on_mutations_of_a_repeat_kernel(
        edits in proptest::collection::vec((0usize..3, any::<prop::sample::Index>(), 0usize..VOCAB.len()), 1..5),
    ) {
        let mut src = GOOD.as_bytes().to_vec();
        for (kind, at, tok) in edits {
            let i = at.index(src.len().max(1)).min(src.len());
            match kind {
                0 => { if i < src.len() { src.remove(i); } }
                1 => { src.splice(i..i, VOCAB[tok].bytes()); }
                _ => { let end = (i + 8).min(src.len()); src.drain(i..end); }
            }
        }
        no_panic(&src);
    }
}

#[test]
fn the_mutation_seed_is_valid_and_warning_free() {
    let (k, d) = check(GOOD.as_bytes());
    assert!(k.is_some() && d.is_empty(), "{}", d.render("good.nj", GOOD));
}
