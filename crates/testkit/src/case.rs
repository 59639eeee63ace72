//! A test case — a kernel with its sizes, params, input seed, chunk size,
//! threads and schedule — in memory and as text, and the inputs it runs on.
//!
//! A case prints ([`fmt::Display`]) as a `.nj` file whose comment lines hold
//! everything but the kernel (`# case: dims=… dims2=… params=… seed=…
//! specials=… chunk=… threads=… sched=…`); [`Case::from_text`] reads it back, so a
//! failure report is a reproducer.
//!
//! Each case has two sets of sizes: [`Case::dims`], which the schedule is
//! lowered and compiled at, and [`Case::dims2`], at which the same compiled
//! code runs again (compiled code reads the sizes at run time). The second
//! sizes are drawn from the input seed ([`second_dims`]): each dim from
//! {0, 1, 2, 3, 5, 7, 9, 11, 13, 16, 17, 31, 33, 63, 65, 127, 1001, 4097},
//! with at most [`MAX_ELEMS2`] elements (product of the non-zero sizes), and
//! never all equal to the first sizes.
//!
//! Inputs ([`make_inputs`]) are drawn from the input seed: per tensor normal,
//! scaled by 1e-3..1e3, small integers (ties and exact zeros) or uniform in
//! [0, 1); with [`Case::specials`] a fraction (1%, 5% or 25%) of the
//! elements replaced by NaN, ±Inf, subnormals, ±3e38, ±0 or the smallest
//! normal ([`SPECIAL_VALUES`]); `out` tensors hold [`SENTINEL`].

use crate::gen::CHUNKS;
use normjit_ir::{Kernel, ParamType, Role};
use std::fmt;

/// One generated test case: a kernel and everything needed to run it.
#[derive(Clone, Debug)]
pub struct Case {
    /// The kernel.
    pub kernel: Kernel,
    /// Size of each dim, by dim index: the sizes the case is lowered and
    /// compiled at.
    pub dims: Vec<usize>,
    /// Second sizes, by dim index ([`second_dims`]): the code compiled at
    /// `dims` runs again at these.
    pub dims2: Vec<usize>,
    /// Value of each param, by param index (defaults applied).
    pub params: Vec<f64>,
    /// Seed of the input values ([`make_inputs`]) and of `dims2`.
    pub input_seed: u64,
    /// One element in `specials` is special (NaN, Inf...); 0 = none.
    pub specials: usize,
    /// `Options::chunk_elems`.
    pub chunk: usize,
    /// Threads the JIT runs with (1 = no pool).
    pub threads: usize,
    /// 0: the schedule the lowering chooses; otherwise the seed of a random
    /// legal schedule ([`crate::random_schedule`]).
    pub sched: u64,
}

impl Case {
    /// `dims=… dims2=… params=… seed=… specials=… chunk=… threads=… sched=…`:
    /// everything but the kernel, in the form [`Case::from_spec`] reads.
    pub fn spec(&self) -> String {
        let list = |v: Vec<String>| if v.is_empty() { "-".to_string() } else { v.join(",") };
        let sizes = |d: &[usize]| list(d.iter().map(|d| d.to_string()).collect());
        format!(
            "dims={} dims2={} params={} seed={} specials={} chunk={} threads={} sched={}",
            sizes(&self.dims),
            sizes(&self.dims2),
            list(self.params.iter().map(|p| format!("{p:?}")).collect()),
            self.input_seed,
            self.specials,
            self.chunk,
            self.threads,
            self.sched
        )
    }

    /// A case from a kernel and a [`Case::spec`] line. Without `dims2`, the
    /// second sizes are drawn from the seed as the generator does.
    pub fn from_spec(kernel: Kernel, spec: &str) -> Result<Case, String> {
        let mut c = Case {
            kernel,
            dims: vec![],
            dims2: vec![],
            params: vec![],
            input_seed: 0,
            specials: 0,
            chunk: CHUNKS[0],
            threads: 1,
            sched: 0,
        };
        let mut dims2 = None;
        for kv in spec.split_whitespace() {
            let (key, val) = kv.split_once('=').ok_or_else(|| format!("`{kv}`: expected key=value"))?;
            let list = |v: &str| -> Result<Vec<f64>, String> {
                if v == "-" {
                    return Ok(vec![]);
                }
                v.split(',').map(|x| x.parse::<f64>().map_err(|e| format!("`{x}`: {e}"))).collect()
            };
            let int = |v: &str| v.parse::<u64>().map_err(|e| format!("`{v}`: {e}"));
            match key {
                "dims" => c.dims = list(val)?.into_iter().map(|x| x as usize).collect(),
                "dims2" => dims2 = Some(list(val)?.into_iter().map(|x| x as usize).collect()),
                "params" => c.params = list(val)?,
                "seed" => c.input_seed = int(val)?,
                "specials" => c.specials = int(val)? as usize,
                "chunk" => c.chunk = int(val)? as usize,
                "threads" => c.threads = int(val)? as usize,
                "sched" => c.sched = int(val)?,
                _ => return Err(format!("unknown key `{key}`")),
            }
        }
        c.dims2 = dims2.unwrap_or_else(|| second_dims(&c.dims, c.input_seed));
        if c.dims.len() != c.kernel.dims.len()
            || c.dims2.len() != c.kernel.dims.len()
            || c.params.len() != c.kernel.params.len()
        {
            return Err("dims, dims2 or params do not match the kernel".into());
        }
        Ok(c)
    }

    /// A case from the text it prints as: `.nj` source with a `# case:`
    /// comment line (a saved failure, or the panic message of the fuzz
    /// target).
    pub fn from_text(text: &str) -> Result<Case, String> {
        let spec = text.lines().find_map(|l| l.strip_prefix("# case: ")).ok_or("no `# case:` line")?;
        let kernel = normjit_ir::parse(text).map_err(|d| d.render("case.nj", text).to_string())?;
        Case::from_spec(kernel, spec)
    }

    /// The same case at its second sizes: `dims2` as `dims` (and `dims` as
    /// `dims2`).
    pub fn at_second_sizes(&self) -> Case {
        Case { dims: self.dims2.clone(), dims2: self.dims.clone(), ..self.clone() }
    }

    /// Elements of the largest value the case can make (product of all
    /// non-zero sizes).
    pub fn volume(&self) -> usize {
        self.dims.iter().filter(|&&d| d > 0).product()
    }
}

impl fmt::Display for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let named = |sizes: &[usize]| -> String {
            let v: Vec<String> =
                self.kernel.dims.iter().map(|(d, dim)| format!("{}={}", dim.name, sizes[d.index()])).collect();
            v.join(", ")
        };
        writeln!(f, "# sizes {}; second sizes {}", named(&self.dims), named(&self.dims2))?;
        writeln!(f, "# case: {}", self.spec())?;
        write!(f, "{}", self.kernel)
    }
}

/// Sizes the second sizes are drawn from: 0, 1, odd sizes, a few even ones
/// (repeats make 1 and 3 likelier).
const SIZES2: [usize; 20] = [0, 1, 1, 2, 3, 3, 5, 7, 9, 11, 13, 16, 17, 31, 33, 63, 65, 127, 1001, 4097];
/// Upper bound on the product of the non-zero second sizes (they are run
/// through every engine and the oracle too, so they stay small).
pub const MAX_ELEMS2: usize = 4096;

/// The second sizes of a case whose first sizes are `dims`, drawn from its
/// input seed: each dim from a list of small, mostly odd sizes (0 and 1
/// included), at most [`MAX_ELEMS2`] elements, different from `dims`.
pub fn second_dims(dims: &[usize], input_seed: u64) -> Vec<usize> {
    let mut rng = Rng(input_seed ^ 0x2d1a_5eed_5ec0_d000);
    let n = dims.len();
    let mut d: Vec<usize> = (0..n).map(|_| SIZES2[rng.below(SIZES2.len())]).collect();
    while d.iter().filter(|&&s| s > 0).product::<usize>() > MAX_ELEMS2 {
        let i = (0..n).max_by_key(|&i| d[i]).unwrap();
        d[i] = (d[i] / 3) | 1;
    }
    if d == dims && n > 0 {
        let i = rng.below(n);
        d[i] = if d[i] < 3 { d[i] + 1 } else { d[i] - 2 };
    }
    d
}

/// splitmix64.
pub(crate) struct Rng(pub(crate) u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
    }
    fn normal(&mut self) -> f32 {
        let s: f32 = (0..4).map(|_| self.unit()).sum();
        (s - 2.0) * 1.732_050_8
    }
}

/// What an `out` buffer holds before a run: a value no engine computes by
/// accident, so a missed store is caught by the oracle.
pub const SENTINEL: f32 = -1.234_567e30;

/// Special input values.
pub const SPECIAL_VALUES: [f32; 12] =
    [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1e-40, -3e-42, 3e38, -3e38, 0.0, -0.0, f32::MIN_POSITIVE, 3e38, -3e38];

/// Entry values of every tensor of `case` (by tensor index), each a value
/// of its tensor's storage type; `out` tensors hold [`SENTINEL`].
pub fn make_inputs(case: &Case) -> Vec<Vec<f32>> {
    let k = &case.kernel;
    let mut rng = Rng(case.input_seed);
    k.tensors
        .iter()
        .map(|(_, t)| {
            let n: usize = t.dims.iter().map(|d| case.dims[d.index()]).product();
            if t.role == Role::Out {
                return vec![SENTINEL; n];
            }
            let style = rng.below(6);
            let scale = [1.0f32, 1e-3, 1e3, 0.1, 10.0][rng.below(5)];
            (0..n)
                .map(|_| {
                    if case.specials > 0 && rng.below(case.specials) == 0 {
                        return t.dtype.round_f32(SPECIAL_VALUES[rng.below(SPECIAL_VALUES.len())]);
                    }
                    let x = match style {
                        0..=2 => rng.normal() * scale,
                        3 => rng.below(7) as f32 - 3.0,
                        4 => rng.unit(),
                        _ => rng.normal(),
                    };
                    t.dtype.round_f32(x)
                })
                .collect()
        })
        .collect()
}

/// The words the JIT takes for `params`: f64 bits, or the u32 value.
pub fn param_words(k: &Kernel, params: &[f64]) -> Vec<u64> {
    k.params
        .iter()
        .map(|(id, p)| match p.ty {
            ParamType::F32 => params[id.index()].to_bits(),
            ParamType::U32 => params[id.index()] as u32 as u64,
        })
        .collect()
}

/// `values` (each a value of `dtype`) as the bytes a buffer of `dtype`
/// holds, for the JIT.
pub fn encode(dtype: normjit_ir::DType, values: &[f32]) -> Vec<u8> {
    match dtype.size_bytes() {
        2 => values.iter().flat_map(|&x| (dtype.encode(x) as u16).to_le_bytes()).collect(),
        _ => values.iter().flat_map(|&x| dtype.encode(x).to_le_bytes()).collect(),
    }
}

/// The values in a buffer of `dtype` (the inverse of [`encode`]).
pub fn decode(dtype: normjit_ir::DType, bytes: &[u8]) -> Vec<f32> {
    match dtype.size_bytes() {
        2 => bytes.chunks_exact(2).map(|b| dtype.decode(u32::from(u16::from_le_bytes([b[0], b[1]])))).collect(),
        _ => bytes.chunks_exact(4).map(|b| dtype.decode(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gen::Choices;

    fn case(i: u32) -> Case {
        let words = (0..200u32).map(|j| (j ^ i).wrapping_mul(2_654_435_761).rotate_left(i % 32)).collect();
        Case::decode(&mut Choices::new(words), u64::from(i) * 0x9E37_79B9)
    }

    #[test]
    fn a_case_reads_back_from_its_text() {
        for i in 0..200 {
            let c = case(i);
            let back = Case::from_text(&c.to_string()).unwrap_or_else(|e| panic!("{e}\n{c}"));
            assert_eq!(back.kernel.to_string(), c.kernel.to_string());
            assert_eq!(back.spec(), c.spec());
        }
    }

    #[test]
    fn a_spec_without_dims2_draws_them_from_the_seed() {
        let c = case(7);
        let spec = c.spec().split_whitespace().filter(|kv| !kv.starts_with("dims2=")).collect::<Vec<_>>().join(" ");
        let back = Case::from_spec(c.kernel.clone(), &spec).unwrap();
        assert_eq!(back.dims2, c.dims2);
    }

    #[test]
    fn bad_specs_are_errors() {
        let c = case(3);
        let k = || c.kernel.clone();
        assert!(Case::from_spec(k(), "dims=1").unwrap_err().contains("do not match"), "{c}");
        assert!(Case::from_spec(k(), "size=3").unwrap_err().contains("unknown key"));
        assert!(Case::from_spec(k(), "seed=x").unwrap_err().contains("`x`"));
        assert!(Case::from_text("kernel k {}").unwrap_err().contains("no `# case:` line"));
    }

    #[test]
    fn second_sizes_differ_stay_small_and_cover_the_edges() {
        let (mut zero, mut one, mut odd) = (false, false, false);
        for seed in 0..2000u64 {
            let dims: Vec<usize> =
                (0..1 + seed as usize % 4).map(|i| [0, 1, 3, 1023][(seed as usize + i) % 4]).collect();
            let d = second_dims(&dims, seed);
            assert_eq!(d.len(), dims.len());
            assert_ne!(d, dims);
            assert_eq!(d, second_dims(&dims, seed), "deterministic");
            assert!(d.iter().filter(|&&s| s > 0).product::<usize>() <= MAX_ELEMS2, "{d:?}");
            zero |= d.contains(&0);
            one |= d.contains(&1);
            odd |= d.iter().any(|&s| s > 1 && s % 2 == 1);
        }
        assert!(zero && one && odd);
    }

    #[test]
    fn inputs_have_the_tensor_lengths_and_out_tensors_the_sentinel() {
        for i in 0..100 {
            let c = case(i);
            for (id, t) in c.kernel.tensors.iter() {
                let buf = &make_inputs(&c)[id.index()];
                let n: usize = t.dims.iter().map(|d| c.dims[d.index()]).product();
                assert_eq!(buf.len(), n);
                if t.role == Role::Out {
                    assert!(buf.iter().all(|&x| x == SENTINEL));
                }
            }
        }
    }
}
