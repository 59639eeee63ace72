//! The JIT's storage-type conversions against their definitions in
//! `normjit_ir::dtype` and `normjit_ir::rng`, directly (not through the
//! loop IR), on both code paths of a phase (4-lane vectors, and the scalar
//! code of short rows) and on both ISAs:
//! - every bf16 and f16 bit pattern widens exactly (subnormals, ±0, ±inf,
//!   NaN payloads);
//! - f32 values round to bf16 and f16 exactly as `DType::encode`: every
//!   sign/exponent/top-fraction pattern with the low bits at each rounding
//!   boundary, plus random patterns;
//! - stochastic rounding stores `stochastic_bf16_f32(x, rounding_bits(..))`
//!   for every element, whatever the thread count.

use normjit::ir::{dtype, parse, rng, DType, Kernel};
use normjit_codegen::{CodegenOptions, Compiled, Isa, IsaChoice};
use normjit_lower::{lower, Options};

/// `y = x` over `N` (1-D: vector loop plus a tail) or over `[R, 3]` (rows
/// of 3: only the scalar code), in the text format with the given storage
/// types (and `stochastic(seed)` on y).
fn copy_kernel(rows_of_3: bool, x: DType, y: DType, stochastic: bool) -> Kernel {
    let shape = if rows_of_3 { "R, C" } else { "N" };
    let sr = if stochastic { " stochastic(seed)" } else { "" };
    let (x, y) = (x.name(), y.name());
    let src = format!(
        "kernel copy {{\n  dims {shape}\n  in x: {x}[{shape}]\n  out y: {y}[{shape}]{sr}\n  param seed: u32 = 0\n  y = x\n}}\n"
    );
    parse(&src).unwrap_or_else(|e| panic!("{e:?}"))
}

/// Sizes for `n` elements: `[n]`, or `[ceil(n / 3), 3]` (the caller pads).
fn sizes(rows_of_3: bool, n: usize) -> Vec<usize> {
    if rows_of_3 {
        vec![n.div_ceil(3), 3]
    } else {
        vec![n]
    }
}

/// Runs `k` by the JIT on raw element bits (`x` in x's type, `y` of y's
/// type and length) and returns y's bits.
fn jit(k: &Kernel, dims: &[usize], isa: &Isa, threads: usize, x: &[u32], seed: u32) -> Vec<u32> {
    let opts = Options { chunk_elems: 4096, verify: true, fma: isa.has_fma(), ..Options::default() };
    let plan = lower(k, dims, &opts).unwrap();
    let code = std::sync::Arc::new(Compiled::new(&plan, isa, &CodegenOptions::default()).unwrap());
    let n: usize = dims.iter().product();
    assert_eq!(x.len(), n);
    let (xt, yt) = (k.tensors.iter().next().unwrap().1.dtype, k.tensors.iter().nth(1).unwrap().1.dtype);
    // Buffers of the storage types, with a guard element after y that a
    // store past the end would change.
    let mut xw: Vec<u32> = x.to_vec();
    let mut xh: Vec<u16> = x.iter().map(|&b| b as u16).collect();
    let mut yw = vec![0xDEAD_BEEFu32; n + 1];
    let mut yh = vec![0xBEEFu16; n + 1];
    let xp: *mut u8 = if xt.is_narrow() { xh.as_mut_ptr().cast() } else { xw.as_mut_ptr().cast() };
    let yp: *mut u8 = if yt.is_narrow() { yh.as_mut_ptr().cast() } else { yw.as_mut_ptr().cast() };
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    // SAFETY: x and y hold at least the tensors' element counts at `dims`
    // in their storage types, in distinct allocations; the one param is
    // the u32 seed.
    unsafe {
        normjit::unstable::execute_at(&code, dims, &[xp, yp], &[u64::from(seed)], (threads > 1).then_some(&pool))
    };
    if yt.is_narrow() {
        assert_eq!(yh[n], 0xBEEF, "a store past the end of y");
        yh[..n].iter().map(|&h| u32::from(h)).collect()
    } else {
        assert_eq!(yw[n], 0xDEAD_BEEF, "a store past the end of y");
        yw[..n].to_vec()
    }
}

fn isas() -> [Isa; 2] {
    [Isa::new(IsaChoice::Native).unwrap(), Isa::new(IsaChoice::Baseline).unwrap()]
}

/// The first mismatch of `got` against `want(input)`, as a message.
fn first_mismatch(what: &str, input: &[u32], got: &[u32], want: impl Fn(usize, u32) -> u32) -> Result<(), String> {
    let bad = (0..input.len()).filter(|&i| got[i] != want(i, input[i])).collect::<Vec<_>>();
    match bad.first() {
        None => Ok(()),
        Some(&i) => Err(format!(
            "{what}: {} of {} wrong; first: input {:#x} gave {:#x}, want {:#x}",
            bad.len(),
            input.len(),
            input[i],
            got[i],
            want(i, input[i])
        )),
    }
}

#[test]
fn every_bf16_and_f16_pattern_widens_exactly() {
    // All 2^16 patterns, then a few more so the vector loop has a tail.
    let pats: Vec<u32> = (0..=0xFFFFu32).chain([0x7C01, 0xFE01, 0x0001]).collect();
    let mut errs = Vec::new();
    for isa in &isas() {
        for d in [DType::BF16, DType::F16] {
            for rows in [false, true] {
                let mut input = pats.clone();
                input.resize(sizes(rows, pats.len()).iter().product(), 0x3C00);
                let k = copy_kernel(rows, d, DType::F32, false);
                let got = jit(&k, &sizes(rows, input.len()), isa, 1, &input, 0);
                let what = format!("{} -> f32, {:?}, rows of 3: {rows}", d.name(), isa.choice);
                errs.extend(first_mismatch(&what, &input, &got, |_, h| d.decode(h).to_bits()).err());
            }
        }
    }
    assert!(errs.is_empty(), "{}", errs.join("\n"));
}

/// f32 patterns: every top half with the low half at each bf16 and f16
/// rounding boundary, and random patterns.
fn f32_samples() -> Vec<u32> {
    const LOW: [u32; 14] =
        [0, 1, 0x0FFF, 0x1000, 0x1001, 0x2FFF, 0x3000, 0x3001, 0x7FFF, 0x8000, 0x8001, 0xBFFF, 0xC000, 0xFFFF];
    let mut v = Vec::with_capacity(65536 * LOW.len() + 100_003);
    for hi in 0..=0xFFFFu32 {
        v.extend(LOW.iter().map(|lo| hi << 16 | lo));
    }
    let mut s = 0x9E37_79B9u32;
    for _ in 0..100_003 {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        v.push(s);
    }
    v
}

#[test]
fn f32_values_round_to_bf16_and_f16_exactly() {
    let samples = f32_samples();
    let mut errs = Vec::new();
    for isa in &isas() {
        for d in [DType::BF16, DType::F16] {
            for rows in [false, true] {
                let mut input = samples.clone();
                input.resize(sizes(rows, samples.len()).iter().product(), 0);
                let k = copy_kernel(rows, DType::F32, d, false);
                let got = jit(&k, &sizes(rows, input.len()), isa, 2, &input, 0);
                let what = format!("f32 -> {}, {:?}, rows of 3: {rows}", d.name(), isa.choice);
                errs.extend(first_mismatch(&what, &input, &got, |_, b| d.encode(f32::from_bits(b))).err());
            }
        }
    }
    assert!(errs.is_empty(), "{}", errs.join("\n"));
}

#[test]
fn narrow_to_narrow_copies_are_exact() {
    // f16 -> bf16 rounds (f16 has 10 fraction bits); bf16 -> f16 rounds
    // and overflows; same-type copies keep every non-NaN pattern.
    let pats: Vec<u32> = (0..=0xFFFFu32).collect();
    let mut errs = Vec::new();
    for isa in &isas() {
        for (from, to) in [(DType::F16, DType::BF16), (DType::BF16, DType::F16), (DType::F16, DType::F16)] {
            let k = copy_kernel(false, from, to, false);
            let got = jit(&k, &[pats.len()], isa, 1, &pats, 0);
            let what = format!("{} -> {}, {:?}", from.name(), to.name(), isa.choice);
            errs.extend(first_mismatch(&what, &pats, &got, |_, h| to.encode(from.decode(h))).err());
        }
    }
    assert!(errs.is_empty(), "{}", errs.join("\n"));
}

#[test]
fn stochastic_rounding_adds_the_defined_random_bits() {
    // Random patterns and the edge cases (NaN, ±inf, ±max, ±0, subnormals,
    // exact bf16 values).
    let mut input: Vec<u32> = vec![
        0x7FC0_0000,
        0xFFC0_0001,
        0x7F80_0001,
        0x7F80_0000,
        0xFF80_0000,
        0x7F7F_FFFF,
        0xFF7F_FFFF,
        0,
        0x8000_0000,
        1,
        0x8000_FFFF,
        0x3F80_0000,
        0x3F80_8000,
    ];
    let mut s = 0x1234_5678u32;
    for _ in 0..50_000 {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        input.push(s);
    }
    let mut errs = Vec::new();
    for isa in &isas() {
        for rows in [false, true] {
            for (threads, seed) in [(1, 0u32), (3, 0xDEAD_BEEF), (2, 7)] {
                let mut input = input.clone();
                input.resize(sizes(rows, input.len()).iter().product(), 0x4049_0FDB);
                let k = copy_kernel(rows, DType::F32, DType::BF16, true);
                let y = k.tensor("y").unwrap().index() as u32;
                let got = jit(&k, &sizes(rows, input.len()), isa, threads, &input, seed);
                let what = format!("stochastic bf16, {:?}, rows of 3: {rows}, seed {seed}", isa.choice);
                let want = |i: usize, b: u32| {
                    let r = rng::rounding_bits(seed, y, i as u64);
                    dtype::stochastic_bf16_f32(f32::from_bits(b), r).to_bits() >> 16
                };
                errs.extend(first_mismatch(&what, &input, &got, want).err());
            }
        }
    }
    assert!(errs.is_empty(), "{}", errs.join("\n"));
}
