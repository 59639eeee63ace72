//! Tensor storage types on the command line.
//!
//! - The `--dtype` overrides (`x=bf16,y=bf16,p=bf16:stochastic(seed)`):
//!   parsed and applied by the IR crate ([`normjit::ir::parse_storage`],
//!   [`Kernel::with_storage`]), with the flag named in every error; for a
//!   set of kernels (`bench`), each override applies to the kernels that
//!   have a tensor of its name.
//! - Buffers in a tensor's own storage type ([`Elements`], and the borrowed
//!   [`View`] / [`ViewMut`]): what the JIT binds. The interpreters take f32
//!   values for every tensor whatever its type; a narrow tensor's values
//!   convert to and from its bits exactly ([`normjit::ir::DType::decode`]),
//!   since every bf16 and f16 value is an f32.
//! - The distance between two values in units in the last place of their
//!   storage type ([`ulp_distance`]), in which the accuracy of narrow
//!   outputs is stated: a bf16 or f16 output rounded to nearest even is
//!   within 1 ulp of the f64 reference rounded to its type.

use normjit::half::{bf16, f16};
use normjit::ir::{parse_storage, DType, Kernel, Rounding};
use normjit::Tensor;
use std::path::Path;

/// `k` with the `--dtype` overrides in `spec` applied (none if `spec` is
/// empty). Errors start with `--dtype: ` and name the problem: an unknown
/// dtype, a param or unknown tensor given a dtype, a `u32` dtype,
/// stochastic rounding where it cannot be.
pub fn apply(k: &Kernel, spec: &str) -> Result<Kernel, String> {
    let overrides = parse_storage(spec).map_err(|e| format!("--dtype: {e}"))?;
    if overrides.is_empty() {
        return Ok(k.clone());
    }
    k.with_storage(&overrides).map_err(|e| format!("--dtype: {e}"))
}

/// The `--dtype` overrides in `spec` applied to each of `kernels` (file,
/// kernel) that has a tensor of an override's name; a kernel with none of
/// them is returned unchanged. So one spec serves a set of pipelines
/// (`x=bf16,y=bf16,p=bf16,g=bf16` covers the norms and the optimizers, and
/// leaves dropout's param `p` alone).
///
/// Still refused: what [`apply`] refuses in a kernel that has the tensor,
/// and a name that is a tensor of none of them (with the reason the first
/// kernel that has the name otherwise gives: a dtype on a param, say).
pub fn apply_to_each(kernels: &[(&Path, &Kernel)], spec: &str) -> Result<Vec<Kernel>, String> {
    let overrides = parse_storage(spec).map_err(|e| format!("--dtype: {e}"))?;
    if let [(_, k)] = kernels {
        // One kernel: its own errors, which list its tensors.
        return Ok(vec![apply(k, spec)?]);
    }
    for o in &overrides {
        if kernels.iter().any(|(_, k)| k.tensor(&o.tensor).is_some()) {
            continue;
        }
        let has_name = |k: &Kernel| k.param(&o.tensor).is_some() || k.dims.iter().any(|(_, d)| d.name == o.tensor);
        if let Some((file, k)) = kernels.iter().find(|(_, k)| has_name(k)) {
            let e = k.with_storage(std::slice::from_ref(o)).err().unwrap_or_default();
            return Err(format!("--dtype: {}: {e}", file.display()));
        }
        let names: Vec<&str> = kernels.iter().map(|(_, k)| k.name.as_str()).collect();
        return Err(format!("--dtype: no kernel benched has a tensor `{}` (kernels: {})", o.tensor, names.join(", ")));
    }
    let mut out = Vec::with_capacity(kernels.len());
    for (file, k) in kernels {
        let mine: Vec<_> = overrides.iter().filter(|o| k.tensor(&o.tensor).is_some()).cloned().collect();
        if mine.is_empty() {
            out.push((*k).clone());
            continue;
        }
        out.push(k.with_storage(&mine).map_err(|e| format!("--dtype: {}: {e}", file.display()))?);
    }
    Ok(out)
}

/// How tensor `t` of `k` is stored, as `--dtype` spells it: `f32`, `bf16`,
/// `bf16:stochastic(seed)`.
pub fn tensor_storage(k: &Kernel, t: normjit::ir::TensorId) -> String {
    let tensor = &k.tensors[t];
    match tensor.rounding {
        Rounding::Stochastic(p) => format!("{}:stochastic({})", tensor.dtype.name(), k.params[p].name),
        _ => tensor.dtype.name().to_string(),
    }
}

/// The tensors of `k` not stored as plain f32, as a `--dtype` spec
/// (`x=bf16,y=bf16`), or `f32` if there are none: a label for reports.
pub fn label(k: &Kernel) -> String {
    let parts: Vec<String> = k
        .tensors
        .iter()
        .filter(|(_, t)| t.dtype != DType::F32 || t.rounding != Rounding::NearestEven)
        .map(|(id, t)| format!("{}={}", t.name, tensor_storage(k, id)))
        .collect();
    if parts.is_empty() {
        "f32".to_string()
    } else {
        parts.join(",")
    }
}

/// True if some tensor of `k` is stored in a 16-bit type.
pub fn has_narrow(k: &Kernel) -> bool {
    k.tensors.iter().any(|(_, t)| t.dtype.is_narrow())
}

/// A tensor's elements in its storage type. Two are equal if they hold
/// the same type and the same bits (so NaN equals the same NaN, and `-0`
/// differs from `+0`): what a file or buffer holds.
#[derive(Clone, Debug)]
pub enum Elements {
    /// f32 elements.
    F32(Vec<f32>),
    /// bf16 elements.
    BF16(Vec<bf16>),
    /// f16 elements.
    F16(Vec<f16>),
}

impl PartialEq for Elements {
    fn eq(&self, other: &Elements) -> bool {
        let (a, b) = (self.view(), other.view());
        a.dtype() == b.dtype() && a.len() == b.len() && (0..a.len()).all(|i| a.bits(i) == b.bits(i))
    }
}

impl Elements {
    /// `n` zeros of `dtype`.
    pub fn zeros(dtype: DType, n: usize) -> Elements {
        match dtype {
            DType::BF16 => Elements::BF16(vec![bf16::from_bits(0); n]),
            DType::F16 => Elements::F16(vec![f16::from_bits(0); n]),
            _ => Elements::F32(vec![0.0; n]),
        }
    }

    /// `values` stored as `dtype`, each rounded to nearest even as a store
    /// does ([`DType::encode`]); exact for values of the type.
    pub fn encode(dtype: DType, values: &[f32]) -> Elements {
        match dtype {
            DType::BF16 => Elements::BF16(values.iter().map(|&x| bf16::from_bits(dtype.encode(x) as u16)).collect()),
            DType::F16 => Elements::F16(values.iter().map(|&x| f16::from_bits(dtype.encode(x) as u16)).collect()),
            _ => Elements::F32(values.to_vec()),
        }
    }

    /// The storage type.
    pub fn dtype(&self) -> DType {
        self.view().dtype()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.view().len()
    }

    /// True if there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every element's value, exactly.
    pub fn values(&self) -> Vec<f32> {
        self.view().values()
    }

    /// A shared view of every element.
    pub fn view(&self) -> View<'_> {
        match self {
            Elements::F32(v) => View::F32(v),
            Elements::BF16(v) => View::BF16(v),
            Elements::F16(v) => View::F16(v),
        }
    }

    /// The elements as a tensor argument: `in` (read-only) unless
    /// `writable` (`out`, or `inout` holding its entry value).
    pub fn tensor(&mut self, writable: bool) -> Tensor<'_> {
        match (self, writable) {
            (Elements::F32(v), true) => Tensor::output(v),
            (Elements::BF16(v), true) => Tensor::output(v),
            (Elements::F16(v), true) => Tensor::output(v),
            (Elements::F32(v), false) => Tensor::input(v),
            (Elements::BF16(v), false) => Tensor::input(v),
            (Elements::F16(v), false) => Tensor::input(v),
        }
    }

    /// A writable view of every element.
    pub fn view_mut(&mut self) -> ViewMut<'_> {
        match self {
            Elements::F32(v) => ViewMut::F32(v),
            Elements::BF16(v) => ViewMut::BF16(v),
            Elements::F16(v) => ViewMut::F16(v),
        }
    }
}

/// Borrowed elements in their storage type.
#[derive(Clone, Copy, Debug)]
pub enum View<'a> {
    /// f32 elements.
    F32(&'a [f32]),
    /// bf16 elements.
    BF16(&'a [bf16]),
    /// f16 elements.
    F16(&'a [f16]),
}

impl<'a> View<'a> {
    /// The storage type.
    pub fn dtype(&self) -> DType {
        match self {
            View::F32(_) => DType::F32,
            View::BF16(_) => DType::BF16,
            View::F16(_) => DType::F16,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            View::F32(v) => v.len(),
            View::BF16(v) => v.len(),
            View::F16(v) => v.len(),
        }
    }

    /// True if there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `i`'s bits (the low 16 for a narrow type).
    pub fn bits(&self, i: usize) -> u32 {
        match self {
            View::F32(v) => v[i].to_bits(),
            View::BF16(v) => u32::from(v[i].to_bits()),
            View::F16(v) => u32::from(v[i].to_bits()),
        }
    }

    /// A copy of the elements.
    pub fn to_elements(&self) -> Elements {
        match self {
            View::F32(v) => Elements::F32(v.to_vec()),
            View::BF16(v) => Elements::BF16(v.to_vec()),
            View::F16(v) => Elements::F16(v.to_vec()),
        }
    }

    /// Every element's value, exactly ([`DType::decode`]).
    pub fn values(&self) -> Vec<f32> {
        match self {
            View::F32(v) => v.to_vec(),
            View::BF16(v) => v.iter().map(|h| DType::BF16.decode(u32::from(h.to_bits()))).collect(),
            View::F16(v) => v.iter().map(|h| DType::F16.decode(u32::from(h.to_bits()))).collect(),
        }
    }

    /// True if every element is finite (not NaN or infinite).
    pub fn all_finite(&self) -> bool {
        match self {
            View::F32(v) => v.iter().all(|x| x.is_finite()),
            View::BF16(v) => v.iter().all(|x| x.is_finite()),
            View::F16(v) => v.iter().all(|x| x.is_finite()),
        }
    }

    /// The view as an `in` tensor argument.
    pub fn tensor(self) -> Tensor<'a> {
        match self {
            View::F32(v) => Tensor::input(v),
            View::BF16(v) => Tensor::input(v),
            View::F16(v) => Tensor::input(v),
        }
    }
}

/// Borrowed writable elements in their storage type.
#[derive(Debug)]
pub enum ViewMut<'a> {
    /// f32 elements.
    F32(&'a mut [f32]),
    /// bf16 elements.
    BF16(&'a mut [bf16]),
    /// f16 elements.
    F16(&'a mut [f16]),
}

impl<'a> ViewMut<'a> {
    /// The same elements, read-only, for as long as the borrow.
    pub fn into_view(self) -> View<'a> {
        match self {
            ViewMut::F32(v) => View::F32(v),
            ViewMut::BF16(v) => View::BF16(v),
            ViewMut::F16(v) => View::F16(v),
        }
    }

    /// The same elements, read-only.
    pub fn view(&self) -> View<'_> {
        match self {
            ViewMut::F32(v) => View::F32(v),
            ViewMut::BF16(v) => View::BF16(v),
            ViewMut::F16(v) => View::F16(v),
        }
    }

    /// Copies `src` in.
    ///
    /// # Panics
    /// If `src` differs in storage type or length.
    pub fn copy_from(&mut self, src: View<'_>) {
        match (self, src) {
            (ViewMut::F32(d), View::F32(s)) => d.copy_from_slice(s),
            (ViewMut::BF16(d), View::BF16(s)) => d.copy_from_slice(s),
            (ViewMut::F16(d), View::F16(s)) => d.copy_from_slice(s),
            (d, s) => panic!("copy of {} elements into {}", s.dtype().name(), d.view().dtype().name()),
        }
    }

    /// The view as a tensor argument: `in` (read-only) unless `writable`
    /// (`out`, or `inout` holding its entry value).
    pub fn tensor(&mut self, writable: bool) -> Tensor<'_> {
        match (self, writable) {
            (ViewMut::F32(v), true) => Tensor::output(v),
            (ViewMut::BF16(v), true) => Tensor::output(v),
            (ViewMut::F16(v), true) => Tensor::output(v),
            (ViewMut::F32(v), false) => Tensor::input(v),
            (ViewMut::BF16(v), false) => Tensor::input(v),
            (ViewMut::F16(v), false) => Tensor::input(v),
        }
    }
}

/// How far apart `a` and `b`, values of `dtype`, are in units in the last
/// place of `dtype`: the number of representable values from one to the
/// other (0 for equal values, also `+0` and `-0`; 1 between the largest
/// finite value and infinity). Both NaN: 0. NaN and a number: `None`
/// (no distance).
///
/// Values not of `dtype` are first rounded to it, as a store would.
pub fn ulp_distance(dtype: DType, a: f32, b: f32) -> Option<u64> {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => return Some(0),
        (true, false) | (false, true) => return None,
        _ => {}
    }
    // The bit patterns of a sign-magnitude format, mapped onto a line on
    // which consecutive values are consecutive integers.
    let sign = 1u64 << (dtype.size_bytes() * 8 - 1);
    let line = |x: f32| -> i64 {
        let bits = u64::from(dtype.encode(x));
        let mag = (bits & (sign - 1)) as i64;
        if bits & sign != 0 {
            -mag
        } else {
            mag
        }
    };
    Some(line(a).abs_diff(line(b)))
}

/// True if `a` and `b`, values of `dtype`, are stored as the same bits,
/// counting every NaN as one (the engines store one canonical NaN per
/// type, but an f32 NaN read from a file keeps its payload).
pub fn same_bits(dtype: DType, a: f32, b: f32) -> bool {
    (a.is_nan() && b.is_nan()) || dtype.encode(a) == dtype.encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulps_count_representable_values() {
        let bf = DType::BF16;
        assert_eq!(ulp_distance(bf, 1.0, 1.0), Some(0));
        assert_eq!(ulp_distance(bf, 0.0, -0.0), Some(0));
        // bf16 has 7 fraction bits: 1 + 2^-7 is the next value after 1.
        assert_eq!(ulp_distance(bf, 1.0, 1.0 + 1.0 / 128.0), Some(1));
        assert_eq!(ulp_distance(bf, 1.0, 2.0), Some(128));
        // Across zero: the smallest subnormals on either side are 2 apart.
        let tiny = bf.decode(1);
        assert_eq!(ulp_distance(bf, tiny, -tiny), Some(2));
        // The largest finite value and infinity are neighbours.
        assert_eq!(ulp_distance(bf, bf.decode(0x7F7F), f32::INFINITY), Some(1));
        assert_eq!(ulp_distance(bf, f32::NAN, f32::NAN), Some(0));
        assert_eq!(ulp_distance(bf, f32::NAN, 1.0), None);
        // f16: 10 fraction bits; f32: 23.
        assert_eq!(ulp_distance(DType::F16, 1.0, 1.0 + 1.0 / 1024.0), Some(1));
        assert_eq!(ulp_distance(DType::F16, -1.0, 1.0), Some(2 * 0x3C00));
        assert_eq!(ulp_distance(DType::F32, 1.0, 1.0 + f32::EPSILON), Some(1));
        assert!(same_bits(bf, f32::NAN, -f32::NAN) && !same_bits(bf, 0.0, -0.0));
    }

    #[test]
    fn elements_round_trip_exactly() {
        let vals = [0.0, -0.0, 1.5, -2.25, f32::INFINITY, 1e-3];
        for dt in [DType::F32, DType::BF16, DType::F16] {
            let rounded: Vec<f32> = vals.iter().map(|&x| dt.round_f32(x)).collect();
            let e = Elements::encode(dt, &rounded);
            assert_eq!(e.dtype(), dt);
            assert_eq!(e.len(), vals.len());
            let back: Vec<u32> = e.values().iter().map(|x| x.to_bits()).collect();
            assert_eq!(back, rounded.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), "{}", dt.name());
            assert_eq!(Elements::zeros(dt, 3).values(), vec![0.0; 3]);
            // Equal means the same bits.
            assert_eq!(Elements::encode(dt, &[f32::NAN]), Elements::encode(dt, &[f32::NAN]));
            assert_ne!(Elements::encode(dt, &[0.0]), Elements::encode(dt, &[-0.0]));
        }
        assert_ne!(Elements::zeros(DType::BF16, 1), Elements::zeros(DType::F16, 1));
        // Encoding rounds to nearest even: 1 + 2^-8 is halfway in bf16.
        assert_eq!(Elements::encode(DType::BF16, &[1.0 + 1.0 / 256.0]).values(), vec![1.0]);
    }

    #[test]
    fn overrides_are_applied_with_the_flag_named() {
        let k = normjit::ir::parse(
            "kernel k {\n dims N\n in x: f32[N]\n out y: f32[N]\n param eps = 1e-5\n y = x + eps\n}\n",
        )
        .unwrap();
        let b = apply(&k, "x=bf16,y=f16").unwrap();
        assert_eq!(label(&b), "x=bf16,y=f16");
        assert_eq!(label(&k), "f32");
        assert!(has_narrow(&b) && !has_narrow(&k));
        assert_eq!(apply(&k, "").unwrap(), k);
        let e = apply(&k, "x=bf17").unwrap_err();
        assert!(e.starts_with("--dtype: ") && e.contains("unknown dtype `bf17`"), "{e}");
        let e = apply(&k, "eps=bf16").unwrap_err();
        assert!(e.contains("`eps` is a param"), "{e}");
        let s = apply(&k, "y=bf16:stochastic(seed)").unwrap();
        assert_eq!(tensor_storage(&s, s.tensor("y").unwrap()), "bf16:stochastic(seed)");
        // Over several kernels: each takes the names it has.
        let k2 = normjit::ir::parse("kernel j {\n dims P\n inout p: f32[P]\n p = p * 2\n}\n").unwrap();
        let (a, b) = (Path::new("a.nj"), Path::new("b.nj"));
        let both = apply_to_each(&[(a, &k), (b, &k2)], "x=bf16,p=bf16").unwrap();
        assert_eq!((label(&both[0]), label(&both[1])), ("x=bf16".to_string(), "p=bf16".to_string()));
        let e = apply_to_each(&[(a, &k), (b, &k2)], "z=bf16").unwrap_err();
        assert!(e.contains("no kernel benched has a tensor `z`"), "{e}");
        let e = apply_to_each(&[(a, &k), (b, &k2)], "eps=bf16").unwrap_err();
        assert!(e.starts_with("--dtype: a.nj: `eps` is a param"), "{e}");
        // A name that is a tensor of one kernel and a param of another
        // applies to the tensor only.
        let k3 =
            normjit::ir::parse("kernel d {\n dims N\n in x: f32[N]\n out y: f32[N]\n param p = 0.5\n y = x * p\n}\n")
                .unwrap();
        let c = Path::new("c.nj");
        let both = apply_to_each(&[(b, &k2), (c, &k3)], "p=bf16").unwrap();
        assert_eq!((label(&both[0]), label(&both[1])), ("p=bf16".to_string(), "f32".to_string()));
        // Errors of a kernel that has the tensor still stop it.
        let e = apply_to_each(&[(a, &k), (b, &k2)], "x=bf16:stochastic(seed)").unwrap_err();
        assert!(e.starts_with("--dtype: a.nj: `x` is an `in` tensor"), "{e}");
    }
}
