//! Running a case: [`run_case`] sends one [`Case`] through lowering (with
//! plan verification), the loop-IR interpreter, the Cranelift JIT, both
//! reference interpreters and the [`Oracle`], at its sizes and again at its
//! second sizes, and checks them against each other.
//!
//! # The checks
//! At the case's sizes ([`Case::dims`]):
//! 1. The JIT equals the loop-IR interpreter **bit for bit** (all NaNs are
//!    equal), always; `in` tensors are left untouched by both.
//! 2. The f32 reference interpreter's output lies in the oracle's set — a
//!    self-test of the oracle (the reference is one of the orders it covers).
//! 3. The loop IR's (hence the JIT's) output lies in the oracle's set. This
//!    is the NaN rule and the tolerance at once:
//!    - where the oracle says NaN is certain (a NaN input propagated through
//!      NaN-propagating ops, any NaN in a reduced set, `inf - inf` of
//!      certain infinities, `0/0`, `sqrt` of a certainly negative value...)
//!      the output **must** be NaN, as the f32 reference's is; where NaN is
//!      impossible it must **not** be NaN. Both strict.
//!    - only where the oracle says "maybe NaN" (the element depends on a sum
//!      that may or may not overflow depending on the order, on a `select`
//!      or comparison whose operands' sets overlap, or on the sign of an
//!      exact zero) may NaN-ness differ from the f32 reference; these
//!      elements and the actual disagreements are counted ([`Stats`]).
//!    - a finite output must lie in the interval, i.e. within the interval's
//!      width of the f64 reference: the tolerance is `C·eps32·Σ|terms|`
//!      per reduction, propagated through the rest of the expression, and
//!      no looser than that anywhere.
//! 4. The f64 reference interpreter's output lies in the oracle's set
//!    (with a 1e-12 relative slack for f64's own rounding) wherever no value
//!    the element depends on can be infinite in f32 (`Av::ovf`): f64 computes
//!    the exact result up to f64 rounding, and the sets contain the exact
//!    result as long as nothing overflowed f32. So `|engine - f64| ≤ width`.
//!
//! Then at the second sizes ([`Case::dims2`]), with the JIT: the kernel is
//! lowered again; if the new plan's [`normjit_lower::Plan::schedule_key`]
//! equals the first plan's, the code compiled at the first sizes runs
//! unchanged at the second ones (compiled code reads the sizes at run
//! time: [`normjit::unstable::execute_at`]), otherwise the new plan is
//! compiled. Checks 1–4 apply there too, on inputs drawn for those sizes.
//! [`Stats::reused`] counts the cases whose code was reused.

use crate::case::{decode, encode, make_inputs, param_words, Case};
use crate::oracle::Oracle;
use normjit_codegen::{CodegenOptions, Compiled, Isa, IsaChoice};
use normjit_ir::{Kernel, Op, Role, TensorId, ValueId};
use normjit_lower::{exec, lower, lower_with, schedule, LowerError, Options, Plan, Schedule};
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

/// What a case run needs that is costly to make: the ISA and thread pools.
pub struct Env {
    /// The ISA the JIT compiles for (native).
    pub isa: Isa,
    /// Pools of 2 and 3 threads, for cases with `threads` 2 and 3.
    pub pools: Vec<rayon::ThreadPool>,
    /// Lowering options (with plan verification); each case sets its chunk
    /// size.
    pub opts: Options,
}

impl Env {
    /// The native ISA, pools of 2 and 3 threads, verifying lowering.
    pub fn new() -> Env {
        let pools = (2..=3).map(|n| rayon::ThreadPoolBuilder::new().num_threads(n).build().unwrap()).collect();
        let isa = Isa::new(IsaChoice::Native).unwrap();
        let opts = Options { verify: true, fma: isa.has_fma(), ..Options::default() };
        Env { isa, pools, opts }
    }
}

impl Default for Env {
    fn default() -> Self {
        Env::new()
    }
}

/// Counts from one case (summed over cases by the caller).
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Cases run.
    pub cases: usize,
    /// Of those, cases run through the JIT.
    pub jit_cases: usize,
    /// Of those, cases also checked at their second sizes.
    pub second_sizes: usize,
    /// Of those, cases whose code compiled at the first sizes ran at the
    /// second sizes (equal schedule keys); the others were recompiled.
    pub reused: usize,
    /// Output elements checked (at both sizes).
    pub elements: usize,
    /// Elements the oracle says must be NaN (strict).
    pub must_nan: usize,
    /// Elements that may or may not be NaN (relaxed NaN rule).
    pub maybe_nan: usize,
    /// Of those, where the loop IR / JIT and the f32 reference disagree on
    /// NaN-ness (legitimately).
    pub nan_disagree: usize,
    /// Elements whose f64 check is skipped because an input to them may be
    /// infinite in f32.
    pub f64_skipped: usize,
    /// Elements where the engine and the f32 reference are zeros of opposite
    /// signs (allowed: zero is unsigned in the oracle).
    pub zero_sign: usize,
    /// Elements whose set is a finite interval narrower than 1e-3 relative to
    /// `|f64| + scale` (`scale`: the tensor's mean `|f64|`): well-conditioned.
    pub tight: usize,
    /// Largest `|engine - f64| / (|f64| + scale)` over the tight elements.
    pub tight_max_err: f64,
    /// Elements whose set is wider (cancellation, discontinuities, possible
    /// overflow...): only membership in the set is checked.
    pub loose: usize,
    /// Seconds spent lowering, in the loop-IR interpreter, compiling and
    /// running the JIT, in the reference interpreters, in the oracle.
    pub secs: [f64; 5],
}

impl Stats {
    /// Adds `o`'s counts to these.
    pub fn add(&mut self, o: &Stats) {
        self.cases += o.cases;
        self.jit_cases += o.jit_cases;
        self.second_sizes += o.second_sizes;
        self.reused += o.reused;
        self.elements += o.elements;
        self.must_nan += o.must_nan;
        self.maybe_nan += o.maybe_nan;
        self.nan_disagree += o.nan_disagree;
        self.f64_skipped += o.f64_skipped;
        self.zero_sign += o.zero_sign;
        self.tight += o.tight;
        self.tight_max_err = self.tight_max_err.max(o.tight_max_err);
        self.loose += o.loose;
        for i in 0..5 {
            self.secs[i] += o.secs[i];
        }
    }
}

/// A failed check.
#[derive(Clone, Debug)]
pub struct Failure {
    /// Which check (`"jit != loop IR"`, `"loop IR/JIT outside the oracle's
    /// set"`, ...).
    pub kind: &'static str,
    /// Details.
    pub msg: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.msg)
    }
}

fn fail<T>(kind: &'static str, msg: String) -> Result<T, Failure> {
    Err(Failure { kind, msg })
}

/// Which engines [`run_case`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engines {
    /// Lowering, loop IR, JIT (at both sizes), references, oracle.
    All,
    /// Everything but the JIT, at the case's sizes only.
    NoJit,
}

/// Runs `case` through lowering, the loop-IR interpreter, the JIT (with
/// `Engines::All`, at both sizes), both reference interpreters and the
/// oracle, and checks them (see the [module docs](crate::run)).
pub fn run_case(case: &Case, env: &Env, engines: Engines) -> Result<Stats, Failure> {
    let mut stats = Stats { cases: 1, ..Stats::default() };
    let code = run_at(case, env, engines, None, &mut stats)?;
    if let Some(first) = code {
        stats.jit_cases = 1;
        stats.second_sizes = 1;
        let second = case.at_second_sizes();
        run_at(&second, env, engines, Some(&first), &mut stats).map_err(|mut f| {
            f.msg = format!("at the second sizes {:?} (first sizes {:?}): {}", case.dims2, case.dims, f.msg);
            f
        })?;
    }
    Ok(stats)
}

/// Code compiled for a case, with the schedule key of its plan.
struct Code {
    key: u64,
    code: Arc<Compiled>,
}

/// Runs `case` at its sizes `case.dims`. With the JIT, `first` is the code
/// compiled at other sizes: it runs here if its schedule key is this plan's
/// (counted in `stats.reused`). Returns the code the JIT ran.
fn run_at(
    case: &Case,
    env: &Env,
    engines: Engines,
    first: Option<&Code>,
    stats: &mut Stats,
) -> Result<Option<Code>, Failure> {
    let k = &case.kernel;
    let dims = &case.dims;
    let inputs = make_inputs(case);
    let opts = Options { chunk_elems: case.chunk, ..env.opts.clone() };
    let t = Instant::now();
    let plan = match lower_case(case, dims, &opts) {
        Ok(p) => p,
        Err(e) => return fail("lower", e.to_string()),
    };
    stats.secs[0] += t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut looped = inputs.clone();
    if let Err(e) = exec(&plan, dims, &case.params, &mut looped) {
        return fail("loop-IR exec", e.to_string());
    }
    stats.secs[1] += t.elapsed().as_secs_f64();
    let code = if engines == Engines::All {
        let t = Instant::now();
        let key = plan.schedule_key();
        let reuse = first.filter(|c| c.key == key);
        stats.reused += usize::from(reuse.is_some());
        let code = match reuse {
            Some(c) => c.code.clone(),
            None => compile(&plan, env)?,
        };
        jit_check(case, env, &code, &inputs, &looped, reuse.is_some())?;
        stats.secs[2] += t.elapsed().as_secs_f64();
        Some(Code { key, code })
    } else {
        None
    };
    for (id, t) in k.tensors.iter() {
        if t.role == Role::In
            && looped[id.index()].iter().zip(&inputs[id.index()]).any(|(a, b)| a.to_bits() != b.to_bits())
        {
            return fail("input modified", format!("`{}` was written", t.name));
        }
    }
    check_outputs(case, &inputs, &looped, stats)?;
    Ok(code)
}

/// Lowers `case` at `dims`: with the chosen schedule, or with `case.sched`
/// != 0 the random one drawn from that seed ([`lower_random`]).
pub fn lower_case(case: &Case, dims: &[usize], opts: &Options) -> Result<Plan, LowerError> {
    match case.sched {
        0 => lower(&case.kernel, dims, opts),
        seed => lower_random(&case.kernel, dims, opts, seed),
    }
}

/// Lowers `k` at `dims` with the random schedule drawn from `seed`
/// ([`random_schedule`]). A drawn group the kernel cannot have is replaced
/// by the chosen group; anything else the lowering refuses is an error.
pub fn lower_random(k: &Kernel, dims: &[usize], opts: &Options, seed: u64) -> Result<Plan, LowerError> {
    let chosen = schedule(k, dims, opts)?;
    let drawn = random_schedule(&chosen, seed);
    match lower_with(k, dims, opts, &drawn) {
        Err(LowerError::Schedule(_)) => lower_with(k, dims, opts, &Schedule { group: chosen.group, ..drawn }),
        r => r,
    }
}

/// A random variation of the schedule `chosen`, drawn from `seed`: a
/// random loop order (a quarter of the time); the chosen group, none, or a
/// random set of dims (which may not be legal for the kernel); each of
/// hoist, flatten, vectorize and prefetch off a quarter of the time;
/// column blocking off, as chosen, or 1 to 40 columns per block; unrolls
/// from 1 to the maximum; one-pass statistics on half the time. The chunk
/// size stays the case's.
pub fn random_schedule(chosen: &Schedule, seed: u64) -> Schedule {
    let mut rng = crate::case::Rng(seed);
    let mut next = |n: usize| rng.below(n);
    let mut s = chosen.clone();
    if next(4) == 0 {
        for i in (1..s.order.len()).rev() {
            let j = next(i + 1);
            s.order.swap(i, j);
        }
    }
    s.group = match next(4) {
        0 => Vec::new(),
        1 => s.order.iter().copied().filter(|_| next(2) == 0).collect(),
        _ => s.order.iter().copied().filter(|d| chosen.group.contains(d)).collect(),
    };
    s.hoist = next(4) != 0;
    s.flatten = next(4) != 0;
    s.vectorize = next(4) != 0;
    s.prefetch = next(4) != 0;
    s.block = match next(4) {
        0 => None,
        1 => chosen.block,
        _ => Some(1 + next(40)),
    };
    s.reduce_unroll = 1 + next(normjit_lower::schedule::MAX_UNROLL);
    s.stream_unroll = 1 + next(normjit_lower::schedule::MAX_UNROLL);
    s.onepass = next(2) == 0;
    s
}

/// True when the stores of `inout` tensors read each other in a cycle (the
/// stored value of `a` loads `b`, and `b`'s loads `a`): the shape of the
/// kernels whose lowering once did not terminate; the differential test
/// lowers them in a child process with a timeout first.
pub fn inout_store_cycle(k: &Kernel) -> bool {
    let inouts: Vec<TensorId> = k.tensors.iter().filter(|(_, t)| t.role == Role::InOut).map(|(id, _)| id).collect();
    if inouts.len() < 2 {
        return false;
    }
    let reads = |t: TensorId| -> Vec<usize> {
        let mut seen = vec![false; k.nodes.len()];
        let mut todo: Vec<ValueId> = k.stored_value(t).into_iter().collect();
        let mut out = vec![];
        while let Some(v) = todo.pop() {
            if std::mem::replace(&mut seen[v.index()], true) {
                continue;
            }
            match k.nodes[v].op {
                Op::Load(u) if u != t => out.extend(inouts.iter().position(|&x| x == u)),
                ref op => todo.extend(op.operands()),
            }
        }
        out
    };
    let edges: Vec<Vec<usize>> = inouts.iter().map(|&t| reads(t)).collect();
    // A cycle exists iff some node reaches itself.
    (0..inouts.len()).any(|start| {
        let mut seen = vec![false; inouts.len()];
        let mut todo = edges[start].clone();
        while let Some(n) = todo.pop() {
            if n == start {
                return true;
            }
            if !std::mem::replace(&mut seen[n], true) {
                todo.extend(&edges[n]);
            }
        }
        false
    })
}

/// Compiles `plan` (not specialized: the code reads the sizes at run time).
fn compile(plan: &Plan, env: &Env) -> Result<Arc<Compiled>, Failure> {
    match Compiled::new(plan, &env.isa, &CodegenOptions::default()) {
        Ok(c) => Ok(Arc::new(c)),
        Err(e) => fail("codegen", e.to_string()),
    }
}

/// Runs `code` at the case's sizes; it must equal the loop IR's `looped`
/// bit for bit. `reused`: the code was compiled at other sizes.
fn jit_check(
    case: &Case,
    env: &Env,
    code: &Arc<Compiled>,
    inputs: &[Vec<f32>],
    looped: &[Vec<f32>],
    reused: bool,
) -> Result<(), Failure> {
    let k = &case.kernel;
    // Real buffers of each tensor's storage type. The loop IR's values are
    // values of the type, so encoding them is exact, and comparing the
    // decoded JIT results bit for bit compares the stored bits.
    let mut bufs: Vec<Vec<u8>> = k.tensors.iter().map(|(id, t)| encode(t.dtype, &inputs[id.index()])).collect();
    let ptrs: Vec<*mut u8> = bufs.iter_mut().map(|v| v.as_mut_ptr()).collect();
    let words = param_words(k, &case.params);
    let pool = if case.threads > 1 { env.pools.get(case.threads - 2) } else { None };
    // SAFETY: `code` was compiled, unspecialized, from a plan of this kernel
    // lowered with this case's options, at these sizes or at others whose
    // plan has the same schedule key as the plan at these sizes (`run_at`
    // compares the keys); one buffer per tensor, each of its tensor's length
    // at `case.dims` (`make_inputs`), all distinct allocations; one word
    // per param.
    unsafe { normjit::unstable::execute_at(code, &case.dims, &ptrs, &words, pool) };
    let got: Vec<Vec<f32>> = k.tensors.iter().map(|(id, t)| decode(t.dtype, &bufs[id.index()])).collect();
    for (id, t) in k.tensors.iter() {
        let (g, w) = (&got[id.index()], &looped[id.index()]);
        if let Some(i) = (0..g.len()).find(|&i| g[i].to_bits() != w[i].to_bits() && !(g[i].is_nan() && w[i].is_nan())) {
            let kind = if reused { "jit != loop IR, code compiled at other sizes" } else { "jit != loop IR" };
            return fail(
                kind,
                format!(
                    "`{}`[{i}]: JIT {:e} ({:#010x}), loop IR {:e} ({:#010x})",
                    t.name,
                    g[i],
                    g[i].to_bits(),
                    w[i],
                    w[i].to_bits()
                ),
            );
        }
    }
    Ok(())
}

/// Checks the loop IR's outputs `looped` and both references against the
/// oracle.
fn check_outputs(case: &Case, inputs: &[Vec<f32>], looped: &[Vec<f32>], stats: &mut Stats) -> Result<(), Failure> {
    let (k, dims) = (&case.kernel, &case.dims);
    let t = Instant::now();
    let s32: Vec<&[f32]> = inputs.iter().map(|v| v.as_slice()).collect();
    let in64: Vec<Vec<f64>> = inputs.iter().map(|v| v.iter().map(|&x| x as f64).collect()).collect();
    let s64: Vec<&[f64]> = in64.iter().map(|v| v.as_slice()).collect();
    let r32 = match normjit_interp::run::<f32>(k, dims, &case.params, &s32) {
        Ok(r) => r,
        Err(e) => return fail("interp f32", e.to_string()),
    };
    let r64 = match normjit_interp::run::<f64>(k, dims, &case.params, &s64) {
        Ok(r) => r,
        Err(e) => return fail("interp f64", e.to_string()),
    };
    stats.secs[3] += t.elapsed().as_secs_f64();
    let t = Instant::now();
    let sets = Oracle::eval(k, dims, &case.params, inputs);
    stats.secs[4] += t.elapsed().as_secs_f64();
    for (id, t) in k.tensors.iter() {
        if !t.role.is_written() {
            continue;
        }
        let set = sets[id.index()].as_ref().expect("every written tensor is stored");
        let (w32, w64) = (r32.get(id).unwrap(), r64.get(id).unwrap());
        let got = &looped[id.index()];
        let finite: Vec<f64> = w64.iter().copied().filter(|x| x.is_finite()).collect();
        let scale =
            if finite.is_empty() { 1.0 } else { finite.iter().map(|x| x.abs()).sum::<f64>() / finite.len() as f64 };
        for i in 0..got.len() {
            let (a, g, r, r64v) = (&set[i], got[i], w32[i], w64[i]);
            let at = || {
                format!("`{}`[{i}]: loop IR/JIT {g:e}, f32 reference {r:e}, f64 reference {r64v:e}, oracle {a}", t.name)
            };
            if !a.contains(r) {
                return fail("f32 reference outside the oracle's set (oracle or interpreter bug)", at());
            }
            if !a.contains(g) {
                let kind = if a.must_nan() {
                    "NaN expected (certain NaN) but not produced"
                } else if g.is_nan() && !a.nan {
                    "NaN produced where none is possible"
                } else {
                    "loop IR/JIT outside the oracle's set"
                };
                return fail(kind, at());
            }
            stats.elements += 1;
            stats.must_nan += usize::from(a.must_nan());
            if a.maybe_nan() {
                stats.maybe_nan += 1;
                stats.nan_disagree += usize::from(g.is_nan() != r.is_nan());
            }
            if g == 0.0 && r == 0.0 && g.is_sign_negative() != r.is_sign_negative() {
                stats.zero_sign += 1;
            }
            if a.ovf {
                stats.f64_skipped += 1;
                stats.loose += 1;
                continue;
            }
            if !a.contains64(r64v) {
                return fail("f64 reference outside the oracle's set (oracle or interpreter bug)", at());
            }
            let den = r64v.abs() + scale + 1e-30;
            if a.fin && !a.nan && r64v.is_finite() && g.is_finite() && (a.hi - a.lo) / den <= 1e-3 {
                stats.tight += 1;
                stats.tight_max_err = stats.tight_max_err.max((g as f64 - r64v).abs() / den);
            } else {
                stats.loose += 1;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gen::Choices;

    /// A case with a written tensor whose first element is certainly finite
    /// and not NaN, its inputs and loop-IR outputs, and that tensor's index.
    fn finite_case() -> (Case, Vec<Vec<f32>>, Vec<Vec<f32>>, usize) {
        let env = Env::new();
        for i in 0..1000u32 {
            let words = (0..100u32).map(|j| (j ^ i).wrapping_mul(2_654_435_761)).collect();
            let case = Case::decode(&mut Choices::new(words), u64::from(i));
            let inputs = make_inputs(&case);
            let Ok(plan) = lower(&case.kernel, &case.dims, &env.opts) else { continue };
            let mut looped = inputs.clone();
            exec(&plan, &case.dims, &case.params, &mut looped).unwrap();
            let sets = Oracle::eval(&case.kernel, &case.dims, &case.params, &inputs);
            let found = sets.iter().position(|s| {
                s.as_ref().and_then(|s| s.first()).is_some_and(|a| a.fin && !a.nan && !a.pinf && !a.ninf)
            });
            if let Some(t) = found {
                return (case, inputs, looped, t);
            }
        }
        panic!("no case with a finite output among 1000");
    }

    #[test]
    fn the_oracle_check_rejects_wrong_results() {
        let (case, inputs, looped, t) = finite_case();
        let mut stats = Stats::default();
        check_outputs(&case, &inputs, &looped, &mut stats).unwrap_or_else(|f| panic!("{f}\n{case}"));
        assert!(stats.elements > 0);
        let with = |v: f32| {
            let mut bad = looped.clone();
            bad[t][0] = v;
            check_outputs(&case, &inputs, &bad, &mut Stats::default()).expect_err("a wrong result passed").kind
        };
        assert_eq!(with(f32::NAN), "NaN produced where none is possible");
        assert_eq!(with(f32::INFINITY), "loop IR/JIT outside the oracle's set");
        let v = looped[t][0];
        assert_eq!(with(if v.abs() < 1e30 { 1e31 } else { 0.5 }), "loop IR/JIT outside the oracle's set");
    }

    #[test]
    fn the_jit_check_rejects_one_differing_bit() {
        let env = Env::new();
        let (case, inputs, looped, t) = finite_case();
        let plan = lower(&case.kernel, &case.dims, &env.opts).unwrap();
        let code = compile(&plan, &env).unwrap();
        jit_check(&case, &env, &code, &inputs, &looped, false).unwrap_or_else(|f| panic!("{f}\n{case}"));
        let mut bad = looped.clone();
        bad[t][0] = f32::from_bits(bad[t][0].to_bits() ^ 1);
        let f = jit_check(&case, &env, &code, &inputs, &bad, true).expect_err("a differing bit passed");
        assert_eq!(f.kind, "jit != loop IR, code compiled at other sizes");
    }
}
