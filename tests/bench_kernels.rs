//! The baselines `normjit bench` measures the JIT against (`normjit_cli::bench`):
//! - every hand-fused reference kernel against the f64 reference interpreter
//!   on its own library file, at odd sizes (0, 1, lengths around multiples
//!   of 16 and 64), with defaults and other params, on every ISA variant
//!   this CPU runs, serial and on a pool (which must agree bit for bit);
//! - the roofline stream kernels against what they claim to compute;
//! - the buffer placement: offsets distinct modulo 4 KiB (staggered) or all
//!   0 (page-aligned), and the data put in them.
//!
//! Tolerance: each element of each `out`/`inout` tensor within `TOL` (1e-5)
//! times the tensor's scale (its largest magnitude under the interpreter),
//! NaN exactly where the interpreter has NaN. The kernels compute in f32
//! (some with FMA), the interpreter in f64, so this leaves about 80 f32 ulps
//! of the scale.
//!
//! `speed` (ignored; run with `cargo test --release --test bench_kernels --
//! --ignored --nocapture`) prints informal bandwidth figures.

use normjit::ir::{Kernel, Role};
use normjit_cli::bench::reference::{self, Pipeline, Reference};
use normjit_cli::bench::{roofline, with_isa, Buffers, Isa, Placement};
use std::path::Path;

const TOL: f64 = 1e-5;

fn load(rel: &str) -> Kernel {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("ir").join(rel);
    normjit::load_kernel(&p).unwrap_or_else(|e| panic!("{e}"))
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Dims (by name) to test each pipeline at.
fn shapes(p: Pipeline) -> Vec<Vec<(&'static str, usize)>> {
    let nd = |v: &[(usize, usize)]| v.iter().map(|&(n, d)| vec![("N", n), ("D", d)]).collect();
    match p {
        Pipeline::LayerNorm | Pipeline::RmsNorm | Pipeline::Softmax => {
            nd(&[(0, 5), (3, 0), (1, 1), (2, 15), (1, 17), (3, 33), (2, 63), (3, 129), (5, 300), (2, 1023), (1, 4097)])
        }
        // Also several of the blocks of rows dgamma and dbeta are summed by
        // (about 2^15 elements, at least a row): three, the last one short
        // (70 x 1023); two (301 x 129); a row each (5 x 40000).
        Pipeline::LayerNormGrad => nd(&[
            (0, 5),
            (3, 0),
            (1, 1),
            (2, 15),
            (1, 17),
            (3, 33),
            (2, 63),
            (3, 129),
            (5, 300),
            (2, 1023),
            (1, 4097),
            (70, 1023),
            (301, 129),
            (5, 40000),
        ]),
        Pipeline::BatchNormTrain | Pipeline::BatchNormTrainNhwc => [
            (2, 3, 5, 7),
            (3, 4, 1, 17),
            (1, 2, 33, 3),
            (4, 5, 0, 3),
            (2, 0, 3, 3),
            (0, 3, 2, 2),
            (1, 1, 1, 1),
            (2, 3, 16, 17),
            (5, 7, 9, 13),
        ]
        .iter()
        .map(|&(n, c, h, w)| vec![("N", n), ("C", c), ("H", h), ("W", w)])
        .collect(),
        Pipeline::AdamW | Pipeline::Sgd | Pipeline::ProxL1 => {
            [0, 1, 2, 15, 16, 17, 31, 33, 127, 129, 1000, 1023, 4097].iter().map(|&n| vec![("P", n)]).collect()
        }
        Pipeline::Dropout => {
            [0, 1, 2, 15, 16, 17, 31, 33, 127, 129, 1000, 1023, 4097].iter().map(|&n| vec![("N", n)]).collect()
        }
    }
}

/// Param sets (by name) to test each pipeline with: the defaults, and
/// values that exercise every term.
fn param_sets(p: Pipeline) -> Vec<Vec<(String, String)>> {
    let sets: &[&[(&str, &str)]] = match p {
        Pipeline::LayerNorm | Pipeline::LayerNormGrad => &[&[], &[("eps", "0.1")]],
        Pipeline::RmsNorm => &[&[], &[("eps", "0.5")]],
        Pipeline::BatchNormTrain | Pipeline::BatchNormTrainNhwc => &[&[], &[("eps", "0.01"), ("momentum", "0.3")]],
        Pipeline::Softmax => &[&[]],
        // A seed above 2^31 (it must not go through f32).
        Pipeline::Dropout => &[&[], &[("p", "0.5"), ("seed", "3000000001")]],
        Pipeline::AdamW => &[&[("t", "1")], &[("lr", "0.01"), ("t", "7"), ("wd", "0.1"), ("eps", "1e-3")]],
        Pipeline::Sgd => {
            &[&[("lr", "0.01")], &[("lr", "0.1"), ("momentum", "0.5"), ("dampening", "0.25"), ("wd", "0.01")]]
        }
        // A threshold of 0.05 and one of 0.5 (zeroes about a third).
        Pipeline::ProxL1 => &[&[("lr", "0.1"), ("lam", "0.5")], &[("lr", "0.1"), ("lam", "5")]],
    };
    sets.iter().map(|s| pairs(s)).collect()
}

/// Asserts `got` (f32) is within `TOL` of the tensor's scale of `want`.
fn assert_close(what: &str, got: &[f32], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().filter(|w| w.is_finite()).fold(0.0f64, |m, w| m.max(w.abs())).max(f64::MIN_POSITIVE);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let g = g as f64;
        if w.is_nan() || g.is_nan() {
            assert!(w.is_nan() && g.is_nan(), "{what}[{i}]: got {g}, want {w}");
            continue;
        }
        assert!((g - w).abs() <= TOL * scale, "{what}[{i}]: got {g}, want {w} (scale {scale})");
    }
}

/// Every reference kernel, every shape and param set, every available ISA,
/// serial and on a pool of 3, against the f64 interpreter on its file.
#[test]
fn reference_kernels_match_the_interpreter() {
    let pool = pool(3);
    for pipeline in Pipeline::ALL {
        let k = load(pipeline.path());
        let r = Reference::for_kernel(&k).unwrap_or_else(|| panic!("{}: not recognized", pipeline.path()));
        assert_eq!(r.pipeline(), pipeline);
        for dims in shapes(pipeline) {
            let given: Vec<(String, String)> = dims.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
            let dims = normjit_cli::bind::resolve_dims(&k, &given, &[]).unwrap();
            for given in param_sets(pipeline) {
                let params = normjit_cli::bind::resolve_params(&k, &given).unwrap();
                let inputs = normjit_cli::inputs::generate(&k, &dims, &params, 7);
                let wide: Vec<Vec<f64>> = inputs.iter().map(|t| t.iter().map(|&x| x as f64).collect()).collect();
                let slices: Vec<&[f64]> = wide.iter().map(Vec::as_slice).collect();
                let want = normjit_interp::run::<f64>(&k, &dims, &params, &slices).unwrap();
                for isa in Isa::ALL.into_iter().filter(|i| i.is_available()) {
                    let case = format!("{} dims {dims:?} params {given:?} on {}", k.name, isa.name());
                    let mut serial = Buffers::from_data(inputs.clone(), Placement::Staggered);
                    let mut par = Buffers::from_data(inputs.clone(), Placement::PageAligned);
                    with_isa(isa, || {
                        r.run(&dims, &params, &mut serial, None);
                        r.run(&dims, &params, &mut par, Some(&pool));
                    });
                    for (id, t) in k.tensors.iter() {
                        let i = id.index();
                        if t.role == Role::In {
                            assert_eq!(serial.get(i), &inputs[i][..], "{case}: input {} changed", t.name);
                            continue;
                        }
                        assert_close(&format!("{case}: {}", t.name), serial.get(i), want.get(id).unwrap());
                        let same = serial.get(i).iter().zip(par.get(i)).all(|(a, b)| a.to_bits() == b.to_bits());
                        assert!(same, "{case}: {} differs between serial and pool", t.name);
                    }
                }
            }
        }
    }
}

/// The functions themselves, called directly (not through `Reference`),
/// agree with the binding on one case each.
#[test]
fn direct_calls_match_the_binding() {
    let pool = pool(2);
    let (x, gamma, beta): (Vec<f32>, Vec<f32>, Vec<f32>) =
        ((0..6 * 37).map(|i| (i as f32 * 0.37).sin()).collect(), vec![1.5; 37], vec![-0.25; 37]);
    let mut y = vec![0.0; x.len()];
    let mut y_par = vec![0.0; x.len()];
    reference::layer_norm(&x, &gamma, &beta, &mut y, 1e-5);
    reference::layer_norm_par(&pool, &x, &gamma, &beta, &mut y_par, 1e-5);
    assert_eq!(y, y_par);
    let k = load(Pipeline::LayerNorm.path());
    let mut bufs = Buffers::from_data(vec![x, gamma, beta, vec![0.0; 6 * 37]], Placement::Staggered);
    Reference::for_kernel(&k).unwrap().run(&[6, 37], &[1e-5], &mut bufs, None);
    assert_eq!(bufs.get(3), &y[..]);
    // Each row of y is normalized: mean 0, variance 1 before the affine.
    for row in y.chunks(37) {
        let z: Vec<f64> = row.iter().map(|&v| (v as f64 + 0.25) / 1.5).collect();
        let mean = z.iter().sum::<f64>() / 37.0;
        let var = z.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 37.0;
        assert!(mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-3, "mean {mean} var {var}");
    }

    let mut p = vec![0.3f32, -0.3, 0.01, -0.01, 2.0];
    let g = vec![1.0f32, -1.0, 0.0, 0.0, 0.0];
    reference::prox_l1(&mut p, &g, reference::ProxL1Params { lr: 0.1, lam: 1.0 });
    // z = p - 0.1 g = [0.2, -0.2, 0.01, -0.01, 2]; threshold 0.1.
    let want = [0.1f32, -0.1, 0.0, -0.0, 1.9];
    for (a, b) in p.iter().zip(want) {
        assert!((a - b).abs() < 1e-6, "{p:?}");
    }
}

#[test]
#[should_panic(expected = "not a multiple of gamma")]
fn layer_norm_rejects_a_partial_row() {
    let mut y = vec![0.0; 10];
    reference::layer_norm(&[0.0; 10], &[1.0; 3], &[0.0; 3], &mut y, 1e-5);
}

#[test]
#[should_panic(expected = "g and p differ in length")]
fn adamw_rejects_mismatched_lengths() {
    let a = reference::AdamWParams { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, wd: 0.01, t: 1.0 };
    let (mut p, mut m, mut v) = (vec![0.0; 4], vec![0.0; 4], vec![0.0; 4]);
    reference::adamw(&mut p, &mut m, &mut v, &[0.0; 5], a);
}

/// Only the library kernels themselves get a reference: not BatchNorm
/// inference (same names, other math), not a variant of LayerNorm's math.
#[test]
fn reference_binds_only_the_library_math() {
    assert!(Reference::for_kernel(&load("norm/batch_norm_infer.nj")).is_none());
    assert!(Reference::for_kernel(&load("optim/adam.nj")).is_none());
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("ir/norm/layer_norm.nj")).unwrap();
    let outside = text.replace("rsqrt(var + eps)", "(rsqrt(var) + eps)");
    assert_ne!(outside, text);
    assert!(Reference::for_kernel(&normjit::ir::parse(&outside).unwrap()).is_none());
    // Comments and spacing do not matter.
    let plain: String = text.lines().filter(|l| !l.starts_with('#')).map(|l| format!("{}\n", l.trim())).collect();
    assert!(Reference::for_kernel(&normjit::ir::parse(&plain).unwrap()).is_some());
}

// ------------------------------------------------------------- roofline

/// What `stream` stores at one index: the values read, added in order
/// (reads, then in-place), times 1/count when more than one.
fn expected_value(values: &[f32]) -> f32 {
    let Some((&first, rest)) = values.split_first() else { return 0.0 };
    let s = rest.iter().fold(first, |s, &x| s + x);
    if values.len() > 1 {
        s * (1.0 / values.len() as f32)
    } else {
        s
    }
}

/// Every count of reads, in-place and written buffers, at lengths around
/// the block size, serial and on a pool, against a plain computation; the
/// sum (nothing stored) within tolerance of the f64 sum.
#[test]
fn stream_computes_what_it_claims() {
    let pool = pool(3);
    for n in [0usize, 1, 15, 63, 64, 65, 200, 1000, 4099] {
        for r in 0..=roofline::MAX_READS {
            for u in 0..=roofline::MAX_INOUTS {
                for w in 0..=roofline::MAX_WRITES {
                    let case = format!("n {n}, {r} reads, {u} in place, {w} writes");
                    let mut bufs = Buffers::new(&vec![n; r + u + w], Placement::Staggered);
                    let entry: Vec<Vec<f32>> = bufs.slices().iter().map(|s| s.to_vec()).collect();
                    let want: Vec<f32> = (0..n)
                        .map(|j| expected_value(&entry[..r + u].iter().map(|b| b[j]).collect::<Vec<_>>()))
                        .collect();
                    let mut par = Buffers::from_data(entry.clone(), Placement::Staggered);
                    for (bufs, pool) in [(&mut bufs, None), (&mut par, Some(&pool))] {
                        let mut all = bufs.slices_mut();
                        let (reads, rest) = all.split_at_mut(r);
                        let (inouts, writes) = rest.split_at_mut(u);
                        let reads: Vec<&[f32]> = reads.iter().map(|s| &**s).collect();
                        let got = match pool {
                            None => roofline::stream(&reads, inouts, writes),
                            Some(pool) => roofline::stream_par(pool, &reads, inouts, writes),
                        };
                        if u + w == 0 {
                            let exact: f64 = entry.iter().flatten().map(|&x| x as f64).sum();
                            let mass: f64 = entry.iter().flatten().map(|&x| (x as f64).abs()).sum();
                            assert!(
                                (got as f64 - exact).abs() <= TOL * mass.max(1.0),
                                "{case}: sum {got}, want {exact}"
                            );
                        } else {
                            assert_eq!(got, 0.0, "{case}");
                        }
                    }
                    for (i, (s, p)) in bufs.slices().iter().zip(par.slices()).enumerate() {
                        let expect: &[f32] = if i < r { &entry[i] } else { &want };
                        assert_eq!(*s, expect, "{case}: buffer {i}");
                        assert_eq!(p, expect, "{case}: buffer {i} on the pool");
                    }
                }
            }
        }
    }
}

#[test]
fn stream_with_one_read_and_one_write_is_an_exact_copy() {
    let src = [1.5f32, -0.0, f32::NAN, f32::INFINITY, 1e-40, -3.25].repeat(30);
    let mut dst = vec![7.0f32; src.len()];
    for isa in Isa::ALL.into_iter().filter(|i| i.is_available()) {
        dst.fill(7.0);
        with_isa(isa, || roofline::stream(&[&src], &mut [], &mut [&mut dst]));
        assert!(src.iter().zip(&dst).all(|(a, b)| a.to_bits() == b.to_bits()), "{}", isa.name());
    }
}

#[test]
#[should_panic(expected = "differ in length")]
fn stream_rejects_mismatched_lengths() {
    let mut w = vec![0.0; 4];
    roofline::stream(&[&[0.0; 5]], &mut [], &mut [&mut w]);
}

#[test]
#[should_panic(expected = "at most")]
fn stream_rejects_too_many_reads() {
    let a = [0.0f32; 4];
    roofline::stream(&[&a[..]; 6], &mut [], &mut []);
}

// -------------------------------------------------------------- buffers

/// The distance from page offset `a` up to `b`, modulo 4 KiB.
fn up(a: usize, b: usize) -> usize {
    (b + 4096 - a) % 4096
}

#[test]
fn staggered_buffers_sit_at_distinct_offsets_modulo_4k() {
    // 2^k-byte lengths, the allocations that alias when left alone, and
    // odd ones; small (heap) and large (mmap) alike.
    for n in 1..=8 {
        for len in [0usize, 1, 1000, 1 << 10, 1 << 18, (1 << 18) + 3] {
            let bufs = Buffers::new(&vec![len; n], Placement::Staggered);
            assert_eq!(bufs.len(), n);
            let offs: Vec<usize> = (0..n).map(|i| bufs.page_offset(i)).collect();
            for (i, &o) in offs.iter().enumerate() {
                assert_eq!(o % 64, 0, "n {n}, len {len}: buffer {i} at {o} is not on a cache line");
                assert_eq!(o, Placement::Staggered.offset(i, n));
                assert_eq!(bufs.get(i).len(), len);
                for (j, &p) in offs.iter().enumerate() {
                    if i != j {
                        // Evenly spread: at least 4096 / n (to a line) apart either way.
                        assert!(up(o, p) >= 4096 / n / 64 * 64, "n {n}, len {len}: offsets {offs:?}");
                    }
                }
            }
        }
    }
    // Offsets stay distinct up to 64 buffers.
    let offs: Vec<usize> = (0..64).map(|i| Placement::Staggered.offset(i, 64)).collect();
    let mut sorted = offs.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 64, "{offs:?}");
}

#[test]
fn page_aligned_buffers_all_start_a_page() {
    for len in [0usize, 1, 1000, 1 << 10, 1 << 18] {
        let mut bufs = Buffers::new(&[len, len, len, len], Placement::PageAligned);
        assert_eq!(bufs.placement(), Placement::PageAligned);
        for i in 0..4 {
            assert_eq!(bufs.page_offset(i), 0, "len {len}, buffer {i}");
        }
        let ptrs = bufs.as_mut_ptrs();
        for (i, p) in ptrs.iter().enumerate() {
            assert_eq!(*p as usize, bufs.get(i).as_ptr() as usize);
        }
    }
}

#[test]
fn buffers_hold_deterministic_plausible_data() {
    let a = Buffers::new(&[1000, 1000, 3], Placement::Staggered);
    let b = Buffers::new(&[1000, 1000, 3], Placement::PageAligned);
    assert_eq!(a.slices(), b.slices(), "the same values whatever the placement");
    assert_ne!(a.get(0), a.get(1), "each buffer its own sequence");
    let all: Vec<f32> = a.slices().concat();
    assert!(all.iter().all(|x| (-1.0..1.0).contains(x)));
    let mean = all.iter().map(|&x| x as f64).sum::<f64>() / all.len() as f64;
    assert!(mean.abs() < 0.1, "mean {mean}");

    let data = vec![vec![1.0f32, 2.0, 3.0], vec![], vec![-4.0; 5000]];
    let mut c = Buffers::from_data(data.clone(), Placement::Staggered);
    assert_eq!(c.slices(), data.iter().map(Vec::as_slice).collect::<Vec<_>>());
    c.get_mut(0)[1] = 9.0;
    assert_eq!(c.get(0), &[1.0, 9.0, 3.0]);
    assert!(!c.is_empty());

    let k = load("optim/adamw.nj");
    let params = normjit_cli::bind::resolve_params(&k, &pairs(&[("t", "3")])).unwrap();
    let bufs = Buffers::for_kernel(&k, &[777], &params, 5, Placement::Staggered);
    let want = normjit_cli::inputs::generate(&k, &[777], &params, 5);
    assert_eq!(bufs.slices(), want.iter().map(Vec::as_slice).collect::<Vec<_>>());
}

// ---------------------------------------------------------------- speed

/// Best-of-`reps` seconds per call of `f`, after one warm-up call.
fn best_time(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    (0..reps)
        .map(|_| {
            let t = std::time::Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

/// Informal figures, not assertions (timings on shared machines are noise
/// for tests): at DRAM size (2^25 elements), the roofline copy next to
/// libc's memcpy, an in-place roofline and the reference AdamW, staggered
/// and page-aligned; in cache, the reference LayerNorm and its backward at
/// 256 x 1024 next to the roofline copy of the same bytes, on every ISA.
#[test]
#[ignore = "prints bandwidth figures; run in release with --nocapture"]
fn speed() {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let all = pool(threads);
    let gbs = |bytes: usize, s: f64| bytes as f64 / s / 1e9;
    println!("best ISA {}, {threads} threads; GB/s of minimal traffic, best of 10", Isa::best().name());
    let n = 1 << 25;
    for placement in [Placement::Staggered, Placement::PageAligned] {
        let mut b = Buffers::new(&[n, n], placement);
        let mut copy = |how: u8| {
            best_time(10, || {
                let mut s = b.slices_mut();
                let (r, w) = s.split_at_mut(1);
                match how {
                    0 => w[0].copy_from_slice(r[0]),
                    1 => _ = roofline::stream(&[&*r[0]], &mut [], w),
                    _ => _ = roofline::stream_par(&all, &[&*r[0]], &mut [], w),
                }
            })
        };
        let (memcpy, one, par) = (copy(0), copy(1), copy(2));
        println!(
            "{placement:?} copy 2^25: memcpy {:.1}, stream {:.1}, stream_par {:.1}",
            gbs(8 * n, memcpy),
            gbs(8 * n, one),
            gbs(8 * n, par)
        );
        let mut b = Buffers::new(&[n, n], placement);
        let t = best_time(10, || {
            let mut s = b.slices_mut();
            let (r, u) = s.split_at_mut(1);
            roofline::stream(&[&*r[0]], u, &mut []);
        });
        println!("{placement:?} read 1 + update 1 in place 2^25: stream {:.1}", gbs(12 * n, t));
        let mut b = Buffers::new(&[n; 7], placement);
        let t = best_time(10, || {
            let mut s = b.slices_mut();
            let (r, u) = s.split_at_mut(4);
            roofline::stream(&[&*r[0]], &mut u[..3], &mut []);
        });
        println!("{placement:?} AdamW's streams (1 read, 3 in place) 2^25: stream {:.1}", gbs(28 * n, t));
        let k = load("optim/adamw.nj");
        let params = normjit_cli::bind::resolve_params(&k, &pairs(&[("t", "10")])).unwrap();
        let r = Reference::for_kernel(&k).unwrap();
        let mut b = Buffers::for_kernel(&k, &[n], &params, 1, placement);
        let one = best_time(10, || r.run(&[n], &params, &mut b, None));
        let par = best_time(10, || r.run(&[n], &params, &mut b, Some(&all)));
        println!("{placement:?} adamw 2^25: reference {:.1}, reference_par {:.1}", gbs(28 * n, one), gbs(28 * n, par));
    }
    for isa in Isa::ALL.into_iter().filter(|i| i.is_available()) {
        let (rows, d) = (256, 1024);
        let k = load("norm/layer_norm.nj");
        let r = Reference::for_kernel(&k).unwrap();
        let mut b = Buffers::for_kernel(&k, &[rows, d], &[1e-5], 1, Placement::Staggered);
        let t = with_isa(isa, || best_time(200, || r.run(&[rows, d], &[1e-5], &mut b, None)));
        let bytes = 4 * (2 * rows * d + 2 * d);
        let mut c = Buffers::new(&[rows * d, rows * d], Placement::Staggered);
        let tc = with_isa(isa, || {
            best_time(200, || {
                let mut s = c.slices_mut();
                let (r, w) = s.split_at_mut(1);
                roofline::stream(&[&*r[0]], &mut [], w);
            })
        });
        let k = load("grad/layer_norm_grad.nj");
        let r = Reference::for_kernel(&k).unwrap();
        let mut b = Buffers::for_kernel(&k, &[rows, d], &[1e-5], 1, Placement::Staggered);
        let tg = with_isa(isa, || best_time(200, || r.run(&[rows, d], &[1e-5], &mut b, None)));
        let grad_bytes = 4 * (3 * rows * d + 3 * d);
        println!(
            "{} 256x1024: layer_norm {:.1}, layer_norm_grad {:.1}, stream copy {:.1}",
            isa.name(),
            gbs(bytes, t),
            gbs(grad_bytes, tg),
            gbs(8 * rows * d, tc)
        );
    }
}
