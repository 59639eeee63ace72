//! What kernels compute: layouts, broadcasting, reductions, special values,
//! randomness, and f32 against f64.

use normjit_interp::{run, Outputs, Real};
use normjit_ir::{rng, Kernel};

fn kernel(src: &str) -> Kernel {
    normjit_ir::parse(src).unwrap_or_else(|d| panic!("{}", d.render("test.nj", src)))
}

/// Runs `k` with tensors given by name (the others, `out`s, get `&[]`).
fn eval<T: Real>(k: &Kernel, dims: &[usize], params: &[f64], inputs: &[(&str, &[T])]) -> Outputs<T> {
    let mut tensors: Vec<&[T]> = vec![&[]; k.tensors.len()];
    for &(name, data) in inputs {
        tensors[k.tensor(name).unwrap_or_else(|| panic!("no tensor `{name}`")).index()] = data;
    }
    run(k, dims, params, &tensors).unwrap_or_else(|e| panic!("{e}"))
}

fn get<'o, T>(k: &Kernel, out: &'o Outputs<T>, name: &str) -> &'o [T] {
    out.get(k.tensor(name).unwrap()).unwrap()
}

fn widen(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

#[test]
fn broadcasting_works_along_either_operand_and_into_stores() {
    let k = kernel(
        "kernel bc {
            dims N, D
            in x: f32[N, D]
            in b: f32[D]
            in s: f32[N]
            out row: f32[N, D]
            out row_left: f32[N, D]
            out col: f32[N, D]
            out col_left: f32[N, D]
            out outer: f32[N, D]
            out stored: f32[N, D]
            out scalar: f32[N, D]
            row = x + b
            row_left = b - x
            col = x * s
            col_left = s / x
            outer = s - b
            stored = b
            scalar = 7
        }",
    );
    let x = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
    let (b, s) = ([10.0f32, 20.0, 30.0], [2.0f32, 4.0]);
    let out = eval(&k, &[2, 3], &[], &[("x", &x), ("b", &b), ("s", &s)]);
    assert_eq!(get(&k, &out, "row"), [11.0, 22.0, 33.0, 14.0, 25.0, 36.0]);
    assert_eq!(get(&k, &out, "row_left"), [9.0, 18.0, 27.0, 6.0, 15.0, 24.0]);
    assert_eq!(get(&k, &out, "col"), [2.0, 4.0, 6.0, 16.0, 20.0, 24.0]);
    assert_eq!(get(&k, &out, "col_left"), [2.0, 1.0, 2.0 / 3.0, 1.0, 0.8, 4.0 / 6.0]);
    assert_eq!(get(&k, &out, "outer"), [-8.0, -18.0, -28.0, -6.0, -16.0, -26.0]);
    assert_eq!(get(&k, &out, "stored"), [10.0, 20.0, 30.0, 10.0, 20.0, 30.0]);
    assert_eq!(get(&k, &out, "scalar"), [7.0; 6]);
}

#[test]
fn transposed_tensor_layouts_are_read_and_written_by_dim_name() {
    let k = kernel(
        "kernel nhwc {
            dims N, C, H, W
            in x: f32[N, H, W, C]
            out nchw: f32[N, C, H, W]
            out same: f32[N, H, W, C]
            out odd: f32[C, W, H, N]
            out per_c: f32[C]
            out per_hw: f32[H, W]
            nchw = x
            same = x + 0
            odd = x
            per_c = mean(x, N, H, W)
            per_hw = sum(x, N, C)
        }",
    );
    let (n, c, h, w) = (2, 3, 2, 4);
    let val = |n: usize, c: usize, h: usize, w: usize| (1000 * n + 100 * h + 10 * w + c) as f32;
    let mut x = Vec::new();
    for ni in 0..n {
        for hi in 0..h {
            for wi in 0..w {
                for ci in 0..c {
                    x.push(val(ni, ci, hi, wi));
                }
            }
        }
    }
    let out = eval(&k, &[n, c, h, w], &[], &[("x", &x)]);
    assert_eq!(get(&k, &out, "same"), x);
    let (nchw, odd) = (get(&k, &out, "nchw"), get(&k, &out, "odd"));
    for ni in 0..n {
        for ci in 0..c {
            for hi in 0..h {
                for wi in 0..w {
                    assert_eq!(nchw[((ni * c + ci) * h + hi) * w + wi], val(ni, ci, hi, wi));
                    assert_eq!(odd[((ci * w + wi) * h + hi) * n + ni], val(ni, ci, hi, wi));
                }
            }
        }
    }
    // Small integers: every sum is exact, and so is the division by 16.
    let per_c: Vec<f32> = (0..c)
        .map(|ci| {
            let mut s = 0.0;
            for (ni, hi, wi) in (0..n).flat_map(|a| (0..h).flat_map(move |b| (0..w).map(move |d| (a, b, d)))) {
                s += val(ni, ci, hi, wi);
            }
            s / (n * h * w) as f32
        })
        .collect();
    assert_eq!(get(&k, &out, "per_c"), per_c);
    let per_hw = get(&k, &out, "per_hw");
    for hi in 0..h {
        for wi in 0..w {
            let s: f32 = (0..n).flat_map(|ni| (0..c).map(move |ci| val(ni, ci, hi, wi))).sum();
            assert_eq!(per_hw[hi * w + wi], s);
        }
    }
}

#[test]
fn f32_sums_are_pairwise_and_much_closer_than_a_naive_loop() {
    let k = kernel("kernel s { dims N\n in x: f32[N]\n out s: f32[]\n s = sum(x, N) }");
    let x = vec![0.1f32; 1_000_000];
    let exact = 1e6 * f64::from(0.1f32);
    let naive = x.iter().fold(0.0f32, |a, &b| a + b);
    let got = f64::from(eval(&k, &[x.len()], &[], &[("x", &x)]).into_vec()[1].as_ref().unwrap()[0]);
    assert!((f64::from(naive) - exact).abs() > 500.0, "naive f32 summation should drift; got {naive}");
    assert!((got - exact).abs() < 0.05, "pairwise f32 sum {got} vs exact {exact}");
    // The f64 reference sums the same f32 inputs nearly exactly.
    let xw = widen(&x);
    let got = eval(&k, &[x.len()], &[], &[("x", &xw)]).into_vec()[1].as_ref().unwrap()[0];
    assert!((got - exact).abs() < 1e-6, "f64 sum {got} vs {exact}");
}

#[test]
fn f32_mode_rounds_every_op_to_f32() {
    let k = kernel("kernel r { dims N\n in x: f32[N]\n out y: f32[N]\n y = (x + 100000000) - 100000000 }");
    // 1e8 + 1 is not an f32 (the spacing there is 8), so f32 loses the 1.
    assert_eq!(eval::<f32>(&k, &[1], &[], &[("x", &[1.0])]).into_vec()[1], Some(vec![0.0]));
    assert_eq!(eval::<f64>(&k, &[1], &[], &[("x", &[1.0])]).into_vec()[1], Some(vec![1.0]));
}

#[test]
fn empty_dims_give_empty_values_zero_sums_and_nan_means() {
    let k = kernel(
        "kernel e {
            dims N, D
            in x: f32[N, D]
            param seed: u32
            out s: f32[D]
            out m: f32[D]
            out hi: f32[D]
            out lo: f32[D]
            out rs: f32[N]
            out rm: f32[N]
            out y: f32[N, D]
            out all: f32[]
            out cnt: f32[]
            out u: f32[N, D]
            s = sum(x, N)
            m = mean(x, N)
            hi = max(x, N)
            lo = min(x, N)
            rs = sum(x, D)
            rm = mean(x, D)
            y = x * 2
            all = mean(x, N, D)
            cnt = count(N, D)
            u = uniform(seed, N, D)
        }",
    );
    // N = 0: the reductions over N are over nothing.
    let out = eval::<f32>(&k, &[0, 3], &[1.0], &[("x", &[])]);
    let s = get(&k, &out, "s");
    assert_eq!(s, [0.0; 3]);
    assert!(s.iter().all(|v| v.is_sign_positive()));
    assert!(get(&k, &out, "m").iter().all(|v| v.is_nan()) && get(&k, &out, "m").len() == 3);
    assert_eq!(get(&k, &out, "hi"), [f32::NEG_INFINITY; 3]);
    assert_eq!(get(&k, &out, "lo"), [f32::INFINITY; 3]);
    assert!(get(&k, &out, "rs").is_empty() && get(&k, &out, "rm").is_empty());
    assert!(get(&k, &out, "y").is_empty() && get(&k, &out, "u").is_empty());
    assert!(get(&k, &out, "all")[0].is_nan());
    assert_eq!(get(&k, &out, "cnt"), [0.0]);
    // D = 0: now the row reductions are empty, in f64 too.
    let out = eval::<f64>(&k, &[2, 0], &[1.0], &[("x", &[])]);
    assert_eq!(get(&k, &out, "rs"), [0.0; 2]);
    assert!(get(&k, &out, "rm").iter().all(|v| v.is_nan()) && get(&k, &out, "rm").len() == 2);
    assert!(get(&k, &out, "s").is_empty() && get(&k, &out, "m").is_empty());
    assert!(get(&k, &out, "all")[0].is_nan());
}

#[test]
fn max_and_min_propagate_nan_elementwise_and_in_reductions() {
    let k = kernel(
        "kernel mm {
            dims N, D
            in x: f32[N, D]
            out rmax: f32[N]
            out rmin: f32[N]
            out cmax: f32[D]
            out cmin: f32[D]
            out relu: f32[N, D]
            out clamp: f32[N, D]
            rmax = max(x, D)
            rmin = min(x, D)
            cmax = max(x, N)
            cmin = min(x, N)
            relu = max(x, 0)
            clamp = min(1, x)
        }",
    );
    let nan = f32::NAN;
    let x = [1.0, nan, -3.0, 4.0, -5.0, 6.0];
    let out = eval(&k, &[2, 3], &[], &[("x", &x)]);
    let rmax = get(&k, &out, "rmax");
    assert!(rmax[0].is_nan() && rmax[1] == 6.0);
    let rmin = get(&k, &out, "rmin");
    assert!(rmin[0].is_nan() && rmin[1] == -5.0);
    let (cmax, cmin) = (get(&k, &out, "cmax"), get(&k, &out, "cmin"));
    assert!(cmax[0] == 4.0 && cmax[1].is_nan() && cmax[2] == 6.0);
    assert!(cmin[0] == 1.0 && cmin[1].is_nan() && cmin[2] == -3.0);
    let relu = get(&k, &out, "relu");
    assert!(relu[1].is_nan());
    assert_eq!([relu[0], relu[2], relu[3], relu[4], relu[5]], [1.0, 0.0, 4.0, 0.0, 6.0]);
    let clamp = get(&k, &out, "clamp");
    assert!(clamp[1].is_nan());
    assert_eq!([clamp[0], clamp[2], clamp[3], clamp[4], clamp[5]], [1.0, -3.0, 1.0, -5.0, 1.0]);
    // A long row with one NaN deep inside: still NaN, in every strategy.
    let mut long = vec![1.0f32; 3 * 1000];
    long[1777] = nan;
    let out = eval(&k, &[3, 1000], &[], &[("x", &long)]);
    let rmax = get(&k, &out, "rmax");
    assert!(rmax[0] == 1.0 && rmax[1].is_nan() && rmax[2] == 1.0);
    assert!(get(&k, &out, "cmin")[777].is_nan());
}

#[test]
fn sign_is_zero_at_both_zeros_and_nan_at_nan() {
    let k = kernel("kernel s { dims N\n in x: f32[N]\n out y: f32[N]\n y = sign(x) }");
    let x = [-0.0f32, 0.0, f32::NAN, -2.5, 3.0, f32::NEG_INFINITY, 1e-45];
    let y = eval(&k, &[x.len()], &[], &[("x", &x)]).into_vec()[1].take().unwrap();
    assert_eq!(y[0].to_bits(), 0.0f32.to_bits());
    assert_eq!(y[1].to_bits(), 0.0f32.to_bits());
    assert!(y[2].is_nan());
    assert_eq!(&y[3..], [-1.0, 1.0, -1.0, 1.0]);
    let y = eval(&k, &[x.len()], &[], &[("x", &widen(&x))]).into_vec()[1].take().unwrap();
    assert_eq!(y[0].to_bits(), 0.0f64.to_bits());
    assert!(y[2].is_nan());
    assert_eq!(&y[3..], [-1.0, 1.0, -1.0, 1.0]);
}

#[test]
fn elementwise_functions_match_the_scalar_definitions() {
    let k = kernel(
        "kernel f {
            dims N
            in x: f32[N]
            in e: f32[N]
            out r: f32[N]
            out q: f32[N]
            out p: f32[N]
            out a: f32[N]
            out n: f32[N]
            out s: f32[N]
            out l: f32[N]
            out ex: f32[N]
            r = rsqrt(x)
            q = recip(x)
            p = x ^ e
            a = abs(x)
            n = -x
            s = sqrt(x)
            l = log(x)
            ex = exp(x)
        }",
    );
    let x = [4.0f32, 0.3, -2.0, 0.0, 17.5, 1e-3, 88.0, f32::INFINITY];
    let e = [0.5f32, 2.0, 3.0, -1.0, -0.25, 1.5, 0.1, 2.0];
    let out = eval(&k, &[x.len()], &[], &[("x", &x), ("e", &e)]);
    let check = |name: &str, f: &dyn Fn(f32, f32) -> f32| {
        let got = get(&k, &out, name);
        for i in 0..x.len() {
            let want = f(x[i], e[i]);
            assert!(
                got[i].to_bits() == want.to_bits() || (got[i].is_nan() && want.is_nan()),
                "{name}({}) = {}, want {want}",
                x[i],
                got[i]
            );
        }
    };
    check("r", &|x, _| 1.0 / x.sqrt());
    check("q", &|x, _| 1.0 / x);
    check("p", &|x, e| x.powf(e));
    check("a", &|x, _| x.abs());
    check("n", &|x, _| -x);
    check("s", &|x, _| x.sqrt());
    check("l", &|x, _| x.ln());
    check("ex", &|x, _| x.exp());
    assert_eq!(get(&k, &out, "r")[0], 0.5);
    assert!(get(&k, &out, "s")[2].is_nan());
}

#[test]
fn comparisons_are_ieee_and_select_picks_elementwise() {
    let k = kernel(
        "kernel c {
            dims N
            in x: f32[N]
            in y: f32[N]
            out lt: f32[N]
            out le: f32[N]
            out gt: f32[N]
            out ge: f32[N]
            out eq: f32[N]
            out ne: f32[N]
            out pick: f32[N]
            lt = select(x < y, 1, 0)
            le = select(x <= y, 1, 0)
            gt = select(x > y, 1, 0)
            ge = select(x >= y, 1, 0)
            eq = select(x == y, 1, 0)
            ne = select(x != y, 1, 0)
            pick = select(x > 0, x, y * 10)
        }",
    );
    let nan = f32::NAN;
    let x = [1.0f32, 3.0, 2.0, nan, 1.0];
    let y = [2.0f32, 3.0, 1.0, 1.0, nan];
    let out = eval(&k, &[5], &[], &[("x", &x), ("y", &y)]);
    assert_eq!(get(&k, &out, "lt"), [1.0, 0.0, 0.0, 0.0, 0.0]);
    assert_eq!(get(&k, &out, "le"), [1.0, 1.0, 0.0, 0.0, 0.0]);
    assert_eq!(get(&k, &out, "gt"), [0.0, 0.0, 1.0, 0.0, 0.0]);
    assert_eq!(get(&k, &out, "ge"), [0.0, 1.0, 1.0, 0.0, 0.0]);
    assert_eq!(get(&k, &out, "eq"), [0.0, 1.0, 0.0, 0.0, 0.0]);
    assert_eq!(get(&k, &out, "ne"), [1.0, 0.0, 1.0, 1.0, 1.0]);
    let pick = get(&k, &out, "pick");
    assert_eq!(pick[..3], [1.0, 3.0, 2.0]);
    assert_eq!(pick[3], 10.0); // NaN > 0 is false: picks y * 10
    assert_eq!(pick[4], 1.0);
}

#[test]
fn constants_and_params_round_once_to_the_element_type() {
    let k = kernel("kernel c { dims N\n out y: f32[N]\n param p\n y = 0.1 + p }");
    let y32 = eval::<f32>(&k, &[1], &[0.2], &[]).into_vec()[0].take().unwrap();
    assert_eq!(y32, [0.1f32 + 0.2f32]);
    let y64 = eval::<f64>(&k, &[1], &[0.2], &[]).into_vec()[0].take().unwrap();
    assert_eq!(y64, [0.1f64 + 0.2f64]);
}

#[test]
fn count_is_the_product_of_bound_sizes() {
    let k = kernel(
        "kernel c {
            dims N, D, E
            in x: f32[N, D]
            out c: f32[]
            out m1: f32[]
            out m2: f32[]
            c = count(N, E)
            m1 = sum(x, N, D) / count(N, D)
            m2 = mean(x, N, D)
        }",
    );
    let x: Vec<f32> = (0..15).map(|i| (i as f32 * 0.37).sin()).collect();
    let out = eval(&k, &[3, 5, 7], &[], &[("x", &x)]);
    assert_eq!(get(&k, &out, "c"), [21.0]);
    assert_eq!(get(&k, &out, "m1"), get(&k, &out, "m2"));
    assert!((get(&k, &out, "m2")[0] - x.iter().sum::<f32>() / 15.0).abs() < 1e-6);
}

#[test]
fn uniform_is_reproducible_and_the_same_in_f32_and_f64() {
    let k = kernel(
        "kernel u {
            dims A, B
            param seed: u32
            out u: f32[B, A]
            u = uniform(seed, A, B)
        }",
    );
    let (a, b) = (5, 7);
    let u32s = eval::<f32>(&k, &[a, b], &[123.0], &[]).into_vec()[0].take().unwrap();
    // Row-major index over (A, B), the declaration order, whatever the layout.
    for ai in 0..a {
        for bi in 0..b {
            assert_eq!(u32s[bi * a + ai], rng::uniform(123, (ai * b + bi) as u64));
        }
    }
    assert_eq!(eval::<f32>(&k, &[a, b], &[123.0], &[]).into_vec()[0].as_deref(), Some(&u32s[..]));
    let u64s = eval::<f64>(&k, &[a, b], &[123.0], &[]).into_vec()[0].take().unwrap();
    assert_eq!(u64s, widen(&u32s));
    let other = eval::<f32>(&k, &[a, b], &[124.0], &[]).into_vec()[0].take().unwrap();
    assert!(other.iter().zip(&u32s).filter(|(p, q)| p != q).count() > 30);
    assert!(u32s.iter().all(|v| (0.0..1.0).contains(v)));
    // The largest seed is accepted.
    eval::<f32>(&k, &[a, b], &[4294967295.0], &[]);
}

#[test]
fn inout_reads_see_the_entry_value() {
    let k = kernel(
        "kernel sgd {
            dims P
            inout p: f32[P]
            in g: f32[P]
            out before: f32[P]
            param lr = 0.5
            p = p - lr * g
            before = p * 1
        }",
    );
    let p = [1.0f32, 2.0, 3.0];
    let g = [2.0f32, 2.0, -2.0];
    let out = eval(&k, &[3], &[0.5], &[("p", &p), ("g", &g)]);
    assert_eq!(get(&k, &out, "p"), [0.0, 1.0, 4.0]);
    assert_eq!(get(&k, &out, "before"), [1.0, 2.0, 3.0]);
    assert_eq!(p, [1.0, 2.0, 3.0]);
    assert_eq!(out.get(k.tensor("g").unwrap()), None);
}

/// LayerNorm in f64, written out by hand (two-pass, biased variance).
fn layer_norm_f64(x: &[f64], gamma: &[f64], beta: &[f64], d: usize, eps: f64) -> Vec<f64> {
    let mut y = Vec::new();
    for row in x.chunks(d) {
        let mu = row.iter().sum::<f64>() / d as f64;
        let var = row.iter().map(|v| (v - mu) * (v - mu)).sum::<f64>() / d as f64;
        let r = 1.0 / (var + eps).sqrt();
        y.extend(row.iter().zip(gamma).zip(beta).map(|((v, g), b)| (v - mu) * r * g + b));
    }
    y
}

#[test]
fn layer_norm_in_f32_agrees_with_f64_within_2e_5() {
    let k = kernel(
        "kernel layer_norm {
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
        }",
    );
    let (n, d) = (16, 1000);
    let u = |seed: u32, len: usize| (0..len as u64).map(move |i| rng::uniform(seed, i));
    // Rows with a large offset relative to their spread: the hard case for f32.
    let x: Vec<f32> = u(1, n * d).enumerate().map(|(i, v)| 8.0 * v - 4.0 + (i / d) as f32 * 10.0).collect();
    let gamma: Vec<f32> = u(2, d).map(|v| 0.5 + v).collect();
    let beta: Vec<f32> = u(3, d).map(|v| v - 0.5).collect();
    let y32 = eval::<f32>(&k, &[n, d], &[1e-5], &[("x", &x), ("gamma", &gamma), ("beta", &beta)]).into_vec()[3]
        .take()
        .unwrap();
    let (xw, gw, bw) = (widen(&x), widen(&gamma), widen(&beta));
    let y64 =
        eval::<f64>(&k, &[n, d], &[1e-5], &[("x", &xw), ("gamma", &gw), ("beta", &bw)]).into_vec()[3].take().unwrap();
    let want = layer_norm_f64(&xw, &gw, &bw, d, 1e-5);
    let err64 = y64.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(err64 < 1e-12, "f64 interpreter vs hand-written f64: {err64}");
    let err32 = y32.iter().zip(&y64).map(|(&a, &b)| (f64::from(a) - b).abs()).fold(0.0, f64::max);
    assert!(err32 < 2e-5, "f32 vs f64 max abs error {err32}");
    assert!(err32 > 0.0, "f32 mode must actually round to f32");
}

#[test]
fn dropout_masks_by_the_random_stream() {
    let k = kernel(
        "kernel dropout {
            dims N, D
            in x: f32[N, D]
            out y: f32[N, D]
            param seed: u32, p = 0.25
            y = select(uniform(seed, N, D) < p, 0, x / (1 - p))
        }",
    );
    let (n, d) = (3, 5000);
    let x: Vec<f32> = (0..n * d).map(|i| i as f32).collect();
    let y = eval::<f32>(&k, &[n, d], &[9.0, 0.25], &[("x", &x)]).into_vec()[1].take().unwrap();
    for (i, (&yi, &xi)) in y.iter().zip(&x).enumerate() {
        let want = if rng::uniform(9, i as u64) < 0.25 { 0.0 } else { xi / 0.75 };
        assert_eq!(yi, want, "element {i}");
    }
    let dropped = y.iter().zip(&x).filter(|(&yi, &xi)| yi == 0.0 && xi != 0.0).count();
    assert!((3000..4500).contains(&dropped), "{dropped} of 15000 dropped at p = 0.25");
}

#[test]
fn adamw_in_f32_matches_a_scalar_loop_bit_for_bit() {
    // Large enough that temporaries are recycled between ops.
    let k = kernel(
        "kernel adamw {
            dims P
            inout p: f32[P]
            in g: f32[P]
            inout m: f32[P]
            inout v: f32[P]
            param lr, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, wd = 0.01, t
            m1 = beta1 * m + (1 - beta1) * g
            v1 = beta2 * v + (1 - beta2) * g * g
            m = m1
            v = v1
            p = p * (1 - lr * wd) - lr / (1 - beta1 ^ t) * m1 / (sqrt(v1 / (1 - beta2 ^ t)) + eps)
        }",
    );
    let n = 20_000;
    let u = |seed: u32| (0..n as u64).map(move |i| rng::uniform(seed, i) - 0.5).collect::<Vec<f32>>();
    let (p, g, m) = (u(1), u(2), u(3));
    let v: Vec<f32> = u(4).iter().map(|x| x * x).collect();
    let params = [1e-3, 0.9, 0.999, 1e-8, 0.01, 7.0];
    let out = eval::<f32>(&k, &[n], &params, &[("p", &p), ("g", &g), ("m", &m), ("v", &v)]);
    // Hyper-parameter arithmetic (per-call scalars) is f64, rounded to f32
    // once where it meets the tensors.
    let [lr, b1, b2, eps, wd, t] = params;
    let scale = (lr / (1.0 - b1.powf(t))) as f32;
    let corr = (1.0 - b2.powf(t)) as f32;
    let decay = (1.0 - lr * wd) as f32;
    let (c1, c2) = ((1.0 - b1) as f32, (1.0 - b2) as f32);
    let (b1, b2, eps) = (b1 as f32, b2 as f32, eps as f32);
    for i in 0..n {
        let m1 = b1 * m[i] + c1 * g[i];
        let v1 = b2 * v[i] + c2 * g[i] * g[i];
        let p1 = p[i] * decay - scale * m1 / ((v1 / corr).sqrt() + eps);
        assert_eq!(get(&k, &out, "m")[i], m1);
        assert_eq!(get(&k, &out, "v")[i], v1);
        assert_eq!(get(&k, &out, "p")[i], p1, "p[{i}]");
    }
}
