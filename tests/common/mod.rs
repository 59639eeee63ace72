//! Shared helpers for the differential tests: the library, random sizes,
//! plausible inputs with NaN/Inf injected, the comparison rule, and
//! buffers of each storage type.
#![allow(dead_code)]

use normjit::half::{bf16, f16};
use normjit::ir::{DType, Kernel};
use normjit::Tensor;
use std::path::{Path, PathBuf};

/// Every forward library kernel with its path: the generated backward
/// kernels of `ir/grad` are left out, since the tolerance rules here are
/// for forward pipelines (a backward's `x - mean(x)` of terms that overflow
/// f32 in one summation order and not in another, or its cancellations in
/// f16, need the interval oracle of the random-kernel tests and the
/// gradient checks of `tests/grad.rs`, which cover them).
pub fn library() -> Vec<(PathBuf, Kernel)> {
    library_with_backward().into_iter().filter(|(f, _)| !f.components().any(|c| c.as_os_str() == "grad")).collect()
}

/// Every library kernel with its path, the backward kernels of `ir/grad`
/// included (for the checks that hold for any kernel: the JIT against the
/// loop IR bit for bit).
pub fn library_with_backward() -> Vec<(PathBuf, Kernel)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("ir");
    normjit::collect_nj_files(&root)
        .unwrap()
        .into_iter()
        .map(|f| {
            let k = normjit::load_kernel(&f).unwrap_or_else(|e| panic!("{e}"));
            (f, k)
        })
        .collect()
}

/// The Python the tests run (`.npy` interoperability, pytest):
/// `NORMJIT_PYTHON`, or the environment `scripts/python-env` makes
/// (`NORMJIT_VENV`, default the checkout's `.venv`: NumPy, ml_dtypes, torch
/// and the package), or `python3`.
pub fn python() -> String {
    if let Ok(p) = std::env::var("NORMJIT_PYTHON") {
        return p;
    }
    let venv = std::env::var_os("NORMJIT_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv"));
    let py = venv.join("bin/python");
    if py.exists() {
        return py.display().to_string();
    }
    "python3".to_string()
}

/// Param values: defaults, with example values for required ones.
pub fn params(k: &Kernel) -> Vec<f64> {
    normjit_cli::bind::resolve_params(k, &normjit_cli::bind::example_params(k)).unwrap()
}

/// Small deterministic generator for test choices.
pub struct Pick(pub u64);
impl Pick {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Random sizes for `k`: each dim from the odd-shape list, larger ones for
/// kernels with few dims, total elements bounded.
pub fn random_dims(k: &Kernel, pick: &mut Pick) -> Vec<usize> {
    const SMALL: [usize; 12] = [0, 1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 33];
    const LARGE: [usize; 4] = [127, 1023, 4097, 5000];
    let n = k.dims.len();
    loop {
        let dims: Vec<usize> = (0..n)
            .map(|_| if n <= 2 && pick.below(3) == 0 { LARGE[pick.below(4)] } else { SMALL[pick.below(12)] })
            .collect();
        let largest =
            k.tensors.iter().map(|(_, t)| t.dims.iter().map(|d| dims[d.index()]).product::<usize>()).max().unwrap_or(0);
        if largest <= 60_000 {
            return dims;
        }
    }
}

/// Plausible inputs, each a value of its tensor's storage type; with
/// `specials`, some elements become NaN, ±Inf, subnormal or huge.
pub fn inputs(k: &Kernel, dims: &[usize], params: &[f64], seed: u64, specials: bool) -> Vec<Vec<f32>> {
    let mut t = normjit_cli::inputs::generate(k, dims, params, seed);
    if specials {
        let mut pick = Pick(seed | 1);
        for (id, tensor) in k.tensors.iter() {
            if tensor.role == normjit::ir::Role::Out || t[id.index()].is_empty() {
                continue;
            }
            let buf = &mut t[id.index()];
            for _ in 0..1 + buf.len() / 50 {
                let i = pick.below(buf.len());
                buf[i] = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1e-40, -3e38][pick.below(5)];
            }
        }
    }
    for (id, tensor) in k.tensors.iter() {
        for x in &mut t[id.index()] {
            *x = tensor.dtype.round_f32(*x);
        }
    }
    t
}

/// Checks `got` (an f32 engine) against the f64 reference `want64` and the
/// f32 reference `want32`:
/// - where the f64 reference and the f32 reference are finite, `got` must
///   be within `rel` of the f64 value, relative to `|want| + mean|want|`
///   (the tensor's scale), or within 4x the f32 reference's own error; it
///   may overflow only near the f32 range (or when huge inputs cancel);
/// - where the f64 reference is finite but the f32 reference is not (some
///   intermediate overflowed f32), nothing is required: the JIT fuses `a *
///   b ± c` into one rounding where the ISA has FMA, so its intermediates
///   overflow elsewhere, or not at all (`ms - mu * mu` with `mu * mu` past
///   the f32 range is NaN unfused, `inf - 4e38 = inf` fused);
/// - where the f64 reference is infinite or NaN, `got` must be non-finite
///   too. Which non-finite value comes out there can depend on summation
///   order: a sum with huge terms may overflow to +inf and then meet -inf
///   (NaN) in one order and not in another, so f32 engines need not agree.
///
/// Returns the max error seen.
pub fn compare(what: &str, got: &[f32], want64: &[f64], want32: &[f32], rel: f64) -> Result<f64, String> {
    if got.len() != want64.len() {
        return Err(format!("{what}: length {} vs {}", got.len(), want64.len()));
    }
    let finite: Vec<f64> = want64.iter().copied().filter(|x| x.is_finite()).collect();
    let scale = if finite.is_empty() { 1.0 } else { finite.iter().map(|x| x.abs()).sum::<f64>() / finite.len() as f64 };
    let mut worst = 0.0f64;
    for i in 0..got.len() {
        let (g, w, w32) = (got[i] as f64, want64[i], want32[i] as f64);
        if !w.is_finite() {
            if g.is_finite() {
                return Err(format!("{what}[{i}]: got {g}, but the f64 reference is {w}"));
            }
            continue;
        }
        if !w32.is_finite() {
            // The f32 reference overflowed where f64 did not: fused and
            // unfused operations overflow differently (see above).
            continue;
        }
        if !g.is_finite() {
            // Near the f32 range (or when huge inputs cancel) whether a sum
            // overflows depends on its order; elsewhere it must not.
            let overflow_regime = w.abs() > f32::MAX as f64 / 16.0 || scale > 1e30;
            if !overflow_regime {
                return Err(format!("{what}[{i}]: got {g}, f32 reference {w32}, f64 reference {w}"));
            }
            continue;
        }
        // Where f32 itself cannot represent the answer well (the f32
        // reference is off), only require the same ballpark.
        let ref_err = (w32 - w).abs() / (w.abs() + scale);
        let err = (g - w).abs() / (w.abs() + scale);
        let allowed = rel.max(4.0 * ref_err);
        if err > allowed {
            return Err(format!(
                "{what}[{i}]: got {g}, f64 reference {w}, f32 reference {w32}: error {err:.3e} > {allowed:.3e}"
            ));
        }
        worst = worst.max(err);
    }
    Ok(worst)
}

/// A buffer of one tensor's storage type.
pub enum Buf {
    F32(Vec<f32>),
    BF16(Vec<bf16>),
    F16(Vec<f16>),
}

impl Buf {
    /// `values` (each a value of `d`) in a buffer of `d`.
    pub fn of(d: DType, values: &[f32]) -> Buf {
        match d {
            DType::BF16 => Buf::BF16(values.iter().map(|&x| bf16::from_bits(d.encode(x) as u16)).collect()),
            DType::F16 => Buf::F16(values.iter().map(|&x| f16::from_bits(d.encode(x) as u16)).collect()),
            _ => Buf::F32(values.to_vec()),
        }
    }
    pub fn values(&self) -> Vec<f32> {
        match self {
            Buf::F32(v) => v.clone(),
            Buf::BF16(v) => v.iter().map(|x| DType::BF16.decode(u32::from(x.to_bits()))).collect(),
            Buf::F16(v) => v.iter().map(|x| DType::F16.decode(u32::from(x.to_bits()))).collect(),
        }
    }
    pub fn view(&mut self, writable: bool) -> Tensor<'_> {
        match (self, writable) {
            (Buf::F32(v), false) => Tensor::input(v),
            (Buf::F32(v), true) => Tensor::output(v),
            (Buf::BF16(v), false) => Tensor::input(v),
            (Buf::BF16(v), true) => Tensor::output(v),
            (Buf::F16(v), false) => Tensor::input(v),
            (Buf::F16(v), true) => Tensor::output(v),
        }
    }
}
