//! Code generation, checked against the loop-IR interpreter bit for bit:
//! every library pipeline as declared, then with its tensors stored as
//! bf16, as f16, as random mixes of f32/bf16/f16, and with its written
//! tensors rounded stochastically to bf16; random odd shapes, chunkings,
//! NaN/Inf/subnormal inputs (f16 subnormals and values past f16's range
//! too), native and baseline (no AVX/FMA) ISAs, 1 to 3 threads. Plans fuse
//! `a * b ± c` where the ISA has FMA, as the compiler's do; every other
//! baseline case compiles such a plan anyway (Cranelift then calls `fmaf`
//! per lane), which must give the same bits. Then again under random legal
//! schedules (`normjit_testkit::random_schedule`: loop order, group,
//! passes, unrolls).
//!
//! The JIT runs on real buffers of each tensor's storage type; the loop IR
//! on f32 holders of the same values. A narrow result must have exactly
//! the bits `DType::encode` gives the loop IR's value, NaN included: both
//! engines store the type's positive canonical NaN. An f32 result must have
//! the same bits, or be NaN where the loop IR has NaN: the sign of a NaN
//! that arithmetic produces is not reproducible across engines (x86
//! returns the first operand's NaN when both are NaN, and compilers commute
//! `a + b` freely; seen on spectral_norm, where a sum meets an input NaN
//! and the negative default NaN of `inf - inf`: 0xFFC00000 against
//! 0x7FC00000). That is why the narrow types' canonical NaNs carry no sign.

mod common;

use common::*;
use normjit::ir::{DType, Kernel, ParamType, Role, Storage, DTYPES};
use normjit_codegen::{CodegenOptions, Compiled, Isa, IsaChoice};
use normjit_lower::{exec, lower, Options};
use normjit_testkit::{lower_random, param_words};

/// The schedule a case lowers with.
enum Sched {
    /// The one the lowering chooses.
    Chosen,
    /// A random legal one, from this seed.
    Random(u64),
    /// The chosen one with these changes.
    Given(normjit_lower::Overrides),
}

/// One tensor's buffer in its storage type, 4- or 2-byte aligned like the
/// runtime's typed buffers.
enum Buf {
    Wide(Vec<u32>),
    Narrow(Vec<u16>),
}

impl Buf {
    /// `values` (each a value of `d`) encoded in `d`.
    fn encode(d: DType, values: &[f32]) -> Buf {
        if d.is_narrow() {
            Buf::Narrow(values.iter().map(|&x| d.encode(x) as u16).collect())
        } else {
            Buf::Wide(values.iter().map(|x| x.to_bits()).collect())
        }
    }

    fn ptr(&mut self) -> *mut u8 {
        match self {
            Buf::Wide(v) => v.as_mut_ptr().cast(),
            Buf::Narrow(v) => v.as_mut_ptr().cast(),
        }
    }

    /// The element bits (the low 16 for a narrow type).
    fn bits(&self, i: usize) -> u32 {
        match self {
            Buf::Wide(v) => v[i],
            Buf::Narrow(v) => u32::from(v[i]),
        }
    }

    fn len(&self) -> usize {
        match self {
            Buf::Wide(v) => v.len(),
            Buf::Narrow(v) => v.len(),
        }
    }
}

/// Values narrow types handle specially: f16 subnormals and the smallest
/// normal, halfway cases of both types, f16's overflow boundary (65504 is
/// the largest finite, 65520 rounds to inf), bf16 subnormals.
const NARROW_SPECIALS: [f32; 12] = [
    5.9604645e-8,  // smallest f16 subnormal
    -2.9802322e-8, // half of it: rounds to -0 (ties to even)
    3.0e-6,
    6.097555e-5, // largest f16 subnormal
    -6.1035156e-5,
    65504.0,
    65519.0,
    -65520.0,
    70000.0,
    1.0039062, // 1 + 2^-8: a bf16 tie
    1.0009766, // 1 + 2^-10: an f16 ulp
    -1.0e-39,  // a bf16 subnormal
];

/// Runs `k` at `dims` in both engines and compares every tensor.
#[allow(clippy::too_many_arguments)]
fn check(
    k: &Kernel,
    what: &str,
    dims: &[usize],
    seed: u64,
    specials: bool,
    chunk: usize,
    isa: &Isa,
    fma: bool,
    threads: usize,
    sched: &Sched,
) -> Result<(), String> {
    let mut params = params(k);
    let mut pick = Pick(seed | 1);
    for (id, p) in k.params.iter() {
        if p.ty == ParamType::U32 {
            params[id.index()] = f64::from(pick.next() as u32);
        }
    }
    let mut inputs = inputs(k, dims, &params, seed, specials);
    for (id, t) in k.tensors.iter() {
        let buf = &mut inputs[id.index()];
        if specials && t.role != Role::Out && !buf.is_empty() {
            for _ in 0..1 + buf.len() / 50 {
                let i = pick.below(buf.len());
                buf[i] = NARROW_SPECIALS[pick.below(NARROW_SPECIALS.len())];
            }
        }
        // The loop IR takes entry values of the tensor's type.
        for x in buf.iter_mut() {
            *x = t.dtype.round_f32(*x);
        }
    }
    let opts = Options { chunk_elems: chunk, verify: true, fma, ..Options::default() };
    let plan = match sched {
        Sched::Chosen => lower(k, dims, &opts),
        Sched::Random(seed) => lower_random(k, dims, &opts, *seed),
        Sched::Given(o) => lower(k, dims, &Options { schedule: o.clone(), ..opts }),
    };
    let plan = plan.map_err(|e| e.to_string())?;
    let mut want = inputs.clone();
    exec(&plan, dims, &params, &mut want).map_err(|e| e.to_string())?;
    let code = std::sync::Arc::new(Compiled::new(&plan, isa, &CodegenOptions::default()).map_err(|e| e.to_string())?);
    let mut got: Vec<Buf> = k.tensors.iter().map(|(id, t)| Buf::encode(t.dtype, &inputs[id.index()])).collect();
    let ptrs: Vec<*mut u8> = got.iter_mut().map(Buf::ptr).collect();
    let words = param_words(k, &params);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    // SAFETY: each buffer holds its tensor's element count at `dims` (the
    // plan's sizes) in its storage type, and they are distinct allocations.
    unsafe { normjit::unstable::execute_at(&code, dims, &ptrs, &words, if threads > 1 { Some(&pool) } else { None }) };
    for (id, t) in k.tensors.iter() {
        let (g, w) = (&got[id.index()], &want[id.index()]);
        assert_eq!(g.len(), w.len());
        let same = |i: usize| {
            let (gb, wb) = (g.bits(i), t.dtype.encode(w[i]));
            let nan = t.dtype.decode(gb).is_nan() && w[i].is_nan();
            gb == wb || (nan && t.dtype == DType::F32)
        };
        if let Some(i) = (0..g.len()).find(|&i| !same(i)) {
            return Err(format!(
                "{} ({what}) {:?} chunk {chunk} {:?} threads {threads} fma {fma}, schedule {}: `{}`: {}[{i}] has bits \
                 {:#x} ({}) but the loop IR gives {:#x} ({})",
                k.name,
                dims,
                isa.choice,
                plan.schedule.describe(|d| k.dims[d].name.clone()),
                t.name,
                t.dtype.name(),
                g.bits(i),
                t.dtype.decode(g.bits(i)),
                t.dtype.encode(w[i]),
                w[i]
            ));
        }
    }
    Ok(())
}

/// How a case stores the library kernel's tensors.
#[derive(Clone, Copy, Debug)]
enum Storing {
    /// As the `.nj` file declares.
    Declared,
    /// Every tensor in this type.
    All(DType),
    /// Each tensor in a random type.
    Mixed,
    /// Each tensor in a random type, every written one bf16 rounded
    /// stochastically with the u32 param `seed` (the kernel's own, where
    /// it has one, as dropout does).
    Stochastic,
}

/// `k` with the storage of `how`.
fn stored(k: &Kernel, how: Storing, pick: &mut Pick) -> Kernel {
    let over: Vec<Storage> = k
        .tensors
        .iter()
        .map(|(_, t)| {
            let written = t.role != Role::In;
            let (dtype, stochastic) = match how {
                Storing::Declared => (t.dtype, None),
                Storing::All(d) => (d, None),
                Storing::Mixed => (DTYPES[pick.below(3)], None),
                Storing::Stochastic if written => (DType::BF16, Some("seed".to_string())),
                Storing::Stochastic => (DTYPES[pick.below(3)], None),
            };
            Storage { tensor: t.name.clone(), dtype, stochastic }
        })
        .collect();
    k.with_storage(&over).unwrap_or_else(|e| panic!("{}: {how:?}: {e}", k.name))
}

/// Runs every library kernel in each of `modes`; with `random_schedules`,
/// each case under a random legal schedule instead of the chosen one.
fn run(modes: &[Storing], salt: u64, random_schedules: bool) {
    let native = Isa::new(IsaChoice::Native).unwrap();
    let baseline = Isa::new(IsaChoice::Baseline).unwrap();
    let cases: usize = std::env::var("NORMJIT_DIFF_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(12);
    let mut pick = Pick(0xC0DE_6E11_0000_0001 ^ salt);
    let mut failures = Vec::new();
    let mut runs = 0;
    for (_, k) in library_with_backward() {
        for &how in modes {
            for case in 0..cases {
                let kk = stored(&k, how, &mut pick);
                let dims = random_dims(&kk, &mut pick);
                let chunk = [1, 7, 64, 1 << 15][pick.below(4)];
                let isa = if case % 3 == 2 { &baseline } else { &native };
                let threads = 1 + case % 3;
                // The plan the compiler makes for the ISA (fused where it has
                // FMA), and every other baseline case a fused one all the same.
                let fma = isa.has_fma() || case % 6 == 5;
                runs += 1;
                let what = format!("{how:?}");
                let sched = if random_schedules { Sched::Random(pick.next() | 1) } else { Sched::Chosen };
                if let Err(e) = check(&kk, &what, &dims, pick.next(), case % 4 == 3, chunk, isa, fma, threads, &sched) {
                    failures.push(e);
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {runs} failed:\n{}",
        failures.len(),
        failures[..failures.len().min(15)].join("\n")
    );
}

#[test]
fn jit_matches_the_loop_ir_bit_for_bit() {
    run(&[Storing::Declared], 0, false);
}

#[test]
fn jit_matches_the_loop_ir_with_bf16_storage() {
    run(&[Storing::All(DType::BF16)], 1, false);
}

#[test]
fn jit_matches_the_loop_ir_with_f16_storage() {
    run(&[Storing::All(DType::F16)], 2, false);
}

#[test]
fn jit_matches_the_loop_ir_with_mixed_storage_and_stochastic_rounding() {
    run(&[Storing::Mixed, Storing::Stochastic], 3, false);
}

#[test]
fn jit_matches_the_loop_ir_under_random_schedules() {
    run(&[Storing::Declared, Storing::Mixed], 4, true);
}

/// Kernels whose reductions run over outer axes (column reductions), the
/// shape column blocking applies to.
const COLUMN_KERNELS: [&str; 4] = [
    "kernel colsoftmax {
       dims N, D
       in x: f32[N, D]
       out y: f32[N, D]
       m = max(x, N)
       e = exp(x - m)
       y = e / sum(e, N)
     }",
    "kernel bn1d {
       dims N, F
       in x: f32[N, F]
       in gamma: f32[F]
       in beta: f32[F]
       out y: f32[N, F]
       out mean: f32[F]
       out var: f32[F]
       param eps = 1e-5
       mu = mean(x, N)
       xc = x - mu
       v = mean(xc * xc, N)
       y = xc * rsqrt(v + eps) * gamma + beta
       mean = mu
       var = v
     }",
    "kernel center3 {
       dims N, C, D
       in x: f32[N, C, D]
       out y: f32[N, C, D]
       param p = 0.25, seed: u32 = 7
       m = mean(x, N, C)
       y = select(uniform(seed, N, C, D) >= p, x - m, 0)
     }",
    "kernel recenter {
       dims N, D
       inout v: f32[N, D]
       in w: f32[N, D]
       s = sum(v * w, N)
       v = v - s * w / count(N)
     }",
];

/// Column blocking (`block=N`, never chosen, so forced here): the JIT runs
/// every pass a block of columns at a time, and must give exactly the loop
/// IR's bits (which runs such plans unblocked: blocking changes no result),
/// at odd sizes, block widths and thread counts, in f32 and bf16.
#[test]
fn column_blocking_is_bit_exact_with_the_loop_ir() {
    let native = Isa::new(IsaChoice::Native).unwrap();
    let mut pick = Pick(0xB10C_0000_0000_0001);
    let mut failures = Vec::new();
    let mut blocked = 0;
    for text in COLUMN_KERNELS {
        let k = normjit::ir::parse(text).unwrap_or_else(|d| panic!("{}", d.render("test.nj", text)));
        for case in 0..24 {
            let kk = if case % 3 == 2 { stored(&k, Storing::All(DType::BF16), &mut pick) } else { k.clone() };
            let dims = random_dims(&kk, &mut pick);
            let cols = [1, 3, 4, 5, 16, 100][pick.below(6)];
            let o = normjit_lower::Overrides::parse(&format!("block={cols}")).unwrap();
            let opts = Options { schedule: o.clone(), fma: true, ..Options::default() };
            blocked += usize::from(lower(&kk, &dims, &opts).unwrap().block.is_some());
            let chunk = [1, 7, 64, 1 << 15][pick.below(4)];
            let threads = 1 + case % 3;
            if let Err(e) = check(
                &kk,
                "blocked",
                &dims,
                pick.next(),
                case % 4 == 3,
                chunk,
                &native,
                true,
                threads,
                &Sched::Given(o),
            ) {
                failures.push(e);
            }
        }
    }
    assert!(failures.is_empty(), "{} failed:\n{}", failures.len(), failures.join("\n"));
    assert!(blocked >= 40, "only {blocked} of 96 cases were blocked");
}
