//! Eager evaluation of a validated call: each node over whole tensors, in
//! node order, each result a dense temporary freed after its last use (as
//! an unfused framework's reference counting would), then the stores.

use crate::error::{Error, Result};
use crate::layout::{
    alloc, axes_count, dim_strides, element_count, gather, row_major_strides, shape, strides_in, zip2, zip3,
};
use crate::real::{self, Float};
use crate::reduce::reduce;
use normjit_ir::{rng, AxisSet, Binary, Cmp, Kernel, Op, Reduce, Rounding, Stmt, TensorId, Unary, ValueId};
use std::borrow::Cow;

/// A node's value: dense row-major over its axes in dim declaration order.
enum Val<'a, T: Clone> {
    /// Not computed yet, or past its last use.
    Freed,
    /// An `f32` value; borrowed when it is a tensor already in that layout.
    Real(Cow<'a, [T]>),
    /// A comparison result.
    Bool(Vec<bool>),
}

/// Buffers of freed temporaries, reused by later values of the same run.
///
/// A fresh large allocation is mapped lazily by the OS and page-faults on
/// first touch, which would otherwise cost more than the arithmetic of an
/// elementwise op; framework allocators cache blocks for the same reason.
/// Small buffers go straight to the allocator, which is fast for them.
struct Pool<T> {
    free: Vec<Vec<T>>,
}

/// Buffers under this many elements are not pooled.
const MIN_POOLED: usize = 4096;

impl<T: Clone> Pool<T> {
    /// An empty buffer with room for `n` elements: the smallest pooled one
    /// that fits without wasting more than half of it, or a new one.
    fn take(&mut self, n: usize, what: impl FnOnce() -> String) -> Result<Vec<T>> {
        if n >= MIN_POOLED {
            let fits = |v: &Vec<T>| v.capacity() >= n && v.capacity() / 2 <= n;
            let best = self.free.iter().enumerate().filter(|(_, v)| fits(v)).min_by_key(|(_, v)| v.capacity());
            if let Some((i, _)) = best {
                let mut v = self.free.swap_remove(i);
                v.clear();
                return Ok(v);
            }
        }
        alloc(n, what)
    }

    /// Returns a value's buffer to the pool.
    fn put(&mut self, v: Val<'_, T>) {
        if let Val::Real(Cow::Owned(buf)) = v {
            if buf.capacity() >= MIN_POOLED {
                self.free.push(buf);
            }
        }
    }
}

/// One evaluation. The call has been validated: counts, lengths, sizes and
/// seeds are all known good, and the kernel passed verification.
pub(crate) struct Eval<'k, 'a, T: Clone> {
    pub k: &'k Kernel,
    pub sizes: &'k [usize],
    pub params: &'k [f64],
    pub tensors: &'k [&'a [T]],
}

/// The f64 value of a per-call scalar (see
/// [`Kernel::per_call_scalars`](normjit_ir::Kernel::per_call_scalars)).
#[derive(Clone, Copy)]
enum Scalar {
    Real(f64),
    Bool(bool),
}

/// Evaluates every per-call scalar of `k` once, in f64.
fn per_call_scalars(k: &Kernel, sizes: &[usize], params: &[f64]) -> Vec<Option<Scalar>> {
    let which = k.per_call_scalars();
    let mut out: Vec<Option<Scalar>> = vec![None; k.nodes.len()];
    for (id, node) in k.nodes.iter() {
        if !which[id.index()] {
            continue;
        }
        let r = |v: ValueId| match out[v.index()] {
            Some(Scalar::Real(x)) => x,
            _ => f64::NAN,
        };
        let s = match node.op {
            Op::Const(c) => Scalar::Real(c),
            Op::Param(p) => Scalar::Real(params[p.index()]),
            Op::Count(axes) => Scalar::Real(axes.iter().map(|d| sizes[d.index()] as f64).product()),
            Op::Unary(op, a) => {
                let x = r(a);
                Scalar::Real(op.eval64(x))
            }
            Op::Binary(op, a, b) => {
                let (x, y) = (r(a), r(b));
                Scalar::Real(match op {
                    Binary::Add => x + y,
                    Binary::Sub => x - y,
                    Binary::Mul => x * y,
                    Binary::Div => x / y,
                    Binary::Pow => x.powf(y),
                    Binary::Min => real::min(x, y),
                    Binary::Max => real::max(x, y),
                })
            }
            Op::Compare(op, a, b) => {
                let (x, y) = (r(a), r(b));
                Scalar::Bool(match op {
                    Cmp::Lt => x < y,
                    Cmp::Le => x <= y,
                    Cmp::Gt => x > y,
                    Cmp::Ge => x >= y,
                    Cmp::Eq => x == y,
                    Cmp::Ne => x != y,
                })
            }
            Op::Select(c, a, b) => {
                let c = matches!(out[c.index()], Some(Scalar::Bool(true)));
                Scalar::Real(if c { r(a) } else { r(b) })
            }
            Op::Load(_) | Op::Reduce(..) | Op::Uniform(..) => continue,
        };
        out[id.index()] = Some(s);
    }
    out
}

impl<'a, T: Float> Eval<'_, 'a, T> {
    /// Runs the kernel; the result has the final value of every `out` and
    /// `inout` tensor, by tensor index.
    pub fn run(&self) -> Result<Vec<Option<Vec<T>>>> {
        let k = self.k;
        // Remaining uses of each node; a store counts as one.
        let mut uses = vec![0usize; k.nodes.len()];
        for (_, node) in k.nodes.iter() {
            for o in node.op.operands() {
                uses[o.index()] += 1;
            }
        }
        for s in &k.stmts {
            if let Stmt::Store { value, .. } = *s {
                uses[value.index()] += 1;
            }
        }
        let mut vals: Vec<Val<'a, T>> = (0..k.nodes.len()).map(|_| Val::Freed).collect();
        let mut pool = Pool { free: Vec::new() };
        // Per-call scalars: once, in f64; rounded to T once, where used.
        let scalars = per_call_scalars(k, self.sizes, self.params);
        for (id, node) in k.nodes.iter() {
            let v = match scalars[id.index()] {
                Some(Scalar::Real(x)) => Val::Real(Cow::Owned(vec![T::from_f64(x)])),
                Some(Scalar::Bool(b)) => Val::Bool(vec![b]),
                None => self.node(&vals, &mut pool, id)?,
            };
            vals[id.index()] = v;
            for o in node.op.operands() {
                uses[o.index()] -= 1;
                if uses[o.index()] == 0 {
                    pool.put(std::mem::replace(&mut vals[o.index()], Val::Freed));
                }
            }
            if uses[id.index()] == 0 {
                // Computed (eagerly, as written) but never used.
                pool.put(std::mem::replace(&mut vals[id.index()], Val::Freed));
            }
        }
        let mut outs: Vec<Option<Vec<T>>> = (0..k.tensors.len()).map(|_| None).collect();
        for s in &k.stmts {
            if let Stmt::Store { tensor, value } = *s {
                uses[value.index()] -= 1;
                let last = uses[value.index()] == 0;
                let mut out = self.store(&mut vals, &mut pool, tensor, value, last)?;
                self.round(tensor, &mut out);
                outs[tensor.index()] = Some(out);
            }
        }
        Ok(outs)
    }

    fn real<'v>(&self, vals: &'v [Val<'a, T>], v: ValueId) -> Result<&'v [T]> {
        match vals.get(v.index()) {
            Some(Val::Real(x)) => Ok(x),
            _ => Err(self.bug(v, "an f32 value")),
        }
    }

    fn boolean<'v>(&self, vals: &'v [Val<'a, T>], v: ValueId) -> Result<&'v [bool]> {
        match vals.get(v.index()) {
            Some(Val::Bool(x)) => Ok(x),
            _ => Err(self.bug(v, "a bool value")),
        }
    }

    /// Unreachable for a verified kernel; reported, not panicked on.
    fn bug(&self, v: ValueId, want: &str) -> Error {
        Error::InvalidKernel(format!("node {v:?} is used as {want} but is not one, or not yet computed"))
    }

    fn axes(&self, v: ValueId) -> AxisSet {
        self.k.nodes[v].axes
    }

    fn node(&self, vals: &[Val<'a, T>], pool: &mut Pool<T>, id: ValueId) -> Result<Val<'a, T>> {
        let (k, sizes) = (self.k, self.sizes);
        let node = &k.nodes[id];
        let n = axes_count(node.axes, sizes).unwrap_or(0);
        let what = || crate::value_name(k, id);
        let sh = shape(node.axes, sizes);
        let strides = |v: ValueId| strides_in(self.axes(v), node.axes, sizes);
        Ok(match node.op {
            Op::Const(c) => Val::Real(Cow::Owned(vec![T::from_f64(c)])),
            Op::Param(p) => Val::Real(Cow::Owned(vec![T::from_f64(self.params[p.index()])])),
            Op::Load(t) => self.load(pool, t)?,
            Op::Unary(op, a) => {
                let x = self.real(vals, a)?;
                let mut out = pool.take(n, what)?;
                macro_rules! map {
                    ($f:expr) => {
                        out.extend(x.iter().map(|&v| $f(v)))
                    };
                }
                match op {
                    Unary::Neg => map!(|v: T| -v),
                    Unary::Abs => map!(T::abs),
                    Unary::Sign => map!(real::sign),
                    Unary::Sqrt => map!(T::sqrt),
                    Unary::Rsqrt => map!(|v: T| T::ONE / v.sqrt()),
                    Unary::Exp => map!(T::exp),
                    Unary::Log => map!(T::ln),
                    Unary::Recip => map!(|v: T| T::ONE / v),
                    Unary::Tanh => map!(T::tanh),
                    Unary::Sigmoid => map!(T::sigmoid),
                    Unary::Erf => map!(T::erf),
                }
                Val::Real(Cow::Owned(out))
            }
            Op::Binary(op, a, b) => {
                let (x, y) = (self.real(vals, a)?, self.real(vals, b)?);
                let (sa, sb) = (strides(a), strides(b));
                let mut out = pool.take(n, what)?;
                macro_rules! zip {
                    ($f:expr) => {
                        zip2(&sh, (x, &sa), (y, &sb), &mut out, $f)
                    };
                }
                match op {
                    Binary::Add => zip!(|p: T, q: T| p + q),
                    Binary::Sub => zip!(|p: T, q: T| p - q),
                    Binary::Mul => zip!(|p: T, q: T| p * q),
                    Binary::Div => zip!(|p: T, q: T| p / q),
                    Binary::Pow => zip!(T::powf),
                    Binary::Min => zip!(real::min),
                    Binary::Max => zip!(real::max),
                }
                Val::Real(Cow::Owned(out))
            }
            Op::Compare(op, a, b) => {
                let (x, y) = (self.real(vals, a)?, self.real(vals, b)?);
                let (sa, sb) = (strides(a), strides(b));
                let mut out = alloc(n, what)?;
                macro_rules! zip {
                    ($f:expr) => {
                        zip2(&sh, (x, &sa), (y, &sb), &mut out, $f)
                    };
                }
                match op {
                    Cmp::Lt => zip!(|p: T, q: T| p < q),
                    Cmp::Le => zip!(|p: T, q: T| p <= q),
                    Cmp::Gt => zip!(|p: T, q: T| p > q),
                    Cmp::Ge => zip!(|p: T, q: T| p >= q),
                    Cmp::Eq => zip!(|p: T, q: T| p == q),
                    Cmp::Ne => zip!(|p: T, q: T| p != q),
                }
                Val::Bool(out)
            }
            Op::Select(c, a, b) => {
                let (cv, x, y) = (self.boolean(vals, c)?, self.real(vals, a)?, self.real(vals, b)?);
                let (sc, sa, sb) = (strides(c), strides(a), strides(b));
                let mut out = pool.take(n, what)?;
                zip3(&sh, (cv, &sc), (x, &sa), (y, &sb), &mut out, |c, p, q| if c { p } else { q });
                Val::Real(Cow::Owned(out))
            }
            Op::Reduce(op, a, red) => {
                let x = self.real(vals, a)?;
                let ax = self.axes(a);
                let mut out = pool.take(n, what)?;
                match op {
                    Reduce::Sum => reduce(x, ax, red, sizes, T::ZERO, |p, q| p + q, &mut out),
                    Reduce::Mean => {
                        reduce(x, ax, red, sizes, T::ZERO, |p, q| p + q, &mut out);
                        // 0/0 = NaN over an empty domain, as PyTorch.
                        let m = axes_count(red, sizes).map_or(T::INFINITY, T::from_usize);
                        out.iter_mut().for_each(|v| *v = *v / m);
                    }
                    Reduce::Max => reduce(x, ax, red, sizes, T::NEG_INFINITY, real::max, &mut out),
                    Reduce::Min => reduce(x, ax, red, sizes, T::INFINITY, real::min, &mut out),
                }
                Val::Real(Cow::Owned(out))
            }
            Op::Count(axes) => {
                // A count of dims no value spans may pass usize::MAX; it is
                // then only approximate, but still a number.
                let c = match axes_count(axes, sizes) {
                    Some(c) => T::from_usize(c),
                    None => T::from_f64(axes.iter().map(|d| sizes[d.index()] as f64).product()),
                };
                Val::Real(Cow::Owned(vec![c]))
            }
            Op::Uniform(p, _) => {
                // Validated: a whole number in u32 range.
                let seed = self.params[p.index()] as u32;
                let mut out = pool.take(n, what)?;
                uniform_range(seed, 0, n as u64, &mut out);
                Val::Real(Cow::Owned(out))
            }
        })
    }

    /// A tensor's entry value, transposed into dim declaration order unless
    /// it already is in it (then it is borrowed, not copied).
    fn load(&self, pool: &mut Pool<T>, t: TensorId) -> Result<Val<'a, T>> {
        let tensor = &self.k.tensors[t];
        let data: &'a [T] = self.tensors[t.index()];
        if tensor.dtype.is_narrow() {
            // The tensor holds values of its type: an entry value that is
            // not one reads as its rounding (the identity for callers that
            // pass values of the type).
            let mut held = pool.take(data.len(), || format!("the entry value of `{}`", tensor.name))?;
            held.extend(data.iter().map(|x| x.store_as(tensor.dtype)));
            return self.laid_out(pool, tensor, Cow::Owned(held));
        }
        self.laid_out(pool, tensor, Cow::Borrowed(data))
    }

    /// `data`, a tensor's contents in its own layout, transposed into dim
    /// declaration order unless it already is in it.
    fn laid_out(&self, pool: &mut Pool<T>, tensor: &normjit_ir::Tensor, data: Cow<'a, [T]>) -> Result<Val<'a, T>> {
        if tensor.dims.windows(2).all(|w| w[0] < w[1]) {
            return Ok(Val::Real(data));
        }
        let tshape: Vec<usize> = tensor.dims.iter().map(|d| self.sizes[d.index()]).collect();
        let tstrides = row_major_strides(&tshape);
        let mut by_dim = [0usize; 64];
        for (&d, &s) in tensor.dims.iter().zip(&tstrides) {
            by_dim[d.index()] = s;
        }
        let axes = tensor.axes();
        let strides: Vec<usize> = axes.iter().map(|d| by_dim[d.index()]).collect();
        let mut out = pool.take(data.len(), || format!("the transposed load of `{}`", tensor.name))?;
        gather(&data, &shape(axes, self.sizes), &strides, &mut out);
        if let Cow::Owned(v) = data {
            pool.put(Val::Real(Cow::Owned(v)));
        }
        Ok(Val::Real(Cow::Owned(out)))
    }

    /// Rounds the final contents of `tensor` (in its own layout) to its
    /// storage type: to nearest even, or stochastically with the noise of
    /// each element at its row-major index over the tensor's axes in dim
    /// declaration order.
    fn round(&self, tensor: TensorId, out: &mut [T]) {
        let t = &self.k.tensors[tensor];
        match t.rounding {
            Rounding::NearestEven if t.dtype.is_narrow() => {
                for x in out.iter_mut() {
                    *x = x.store_as(t.dtype);
                }
            }
            Rounding::NearestEven => {}
            Rounding::Stochastic(seed) => {
                let seed = rng::rounding_seed(self.params[seed.index()] as u32, tensor.index() as u32);
                let axes = t.axes();
                // The noise in declaration order (`rng::rounding_bits`: the
                // top 16 bits of the stream's uniform, exactly `u * 2^16`),
                // then laid out like the tensor (the transposition a store
                // does).
                let mut u: Vec<f64> = Vec::with_capacity(out.len());
                uniform_range(seed, 0, out.len() as u64, &mut u);
                let noise: Vec<u32> = u.iter().map(|&u| (u * 65536.0) as u32).collect();
                let by_dim = dim_strides(axes, self.sizes);
                let strides: Vec<usize> = t.dims.iter().map(|d| by_dim[d.index()]).collect();
                let tshape: Vec<usize> = t.dims.iter().map(|d| self.sizes[d.index()]).collect();
                let mut laid = Vec::with_capacity(noise.len());
                gather(&noise, &tshape, &strides, &mut laid);
                for (x, r) in out.iter_mut().zip(laid) {
                    *x = x.stochastic_bf16(r);
                }
            }
        }
    }

    /// The final contents of `tensor`: `value` broadcast and laid out in the
    /// tensor's own dim order. Moves the value's buffer when it already has
    /// that layout and this is its last use.
    fn store(
        &self,
        vals: &mut [Val<'a, T>],
        pool: &mut Pool<T>,
        tensor: TensorId,
        value: ValueId,
        last: bool,
    ) -> Result<Vec<T>> {
        let t = &self.k.tensors[tensor];
        let vaxes = self.axes(value);
        let tshape: Vec<usize> = t.dims.iter().map(|d| self.sizes[d.index()]).collect();
        let n = element_count(tshape.iter().copied()).unwrap_or(0);
        let what = || format!("output tensor `{}`", t.name);
        let same_layout = vaxes == t.axes() && t.dims.windows(2).all(|w| w[0] < w[1]);
        if same_layout && last {
            if let Val::Real(cow) = std::mem::replace(&mut vals[value.index()], Val::Freed) {
                return match cow {
                    Cow::Owned(v) => Ok(v),
                    Cow::Borrowed(s) => {
                        let mut v = pool.take(s.len(), what)?;
                        v.extend_from_slice(s);
                        Ok(v)
                    }
                };
            }
            return Err(self.bug(value, "an f32 value"));
        }
        let src = self.real(vals, value)?;
        // Stride of each tensor dim in the value's layout; 0 broadcasts.
        let by_dim = dim_strides(vaxes, self.sizes);
        let strides: Vec<usize> = t.dims.iter().map(|d| by_dim[d.index()]).collect();
        let mut out = pool.take(n, what)?;
        gather(src, &tshape, &strides, &mut out);
        Ok(out)
    }
}

/// Appends `uniform(seed, i)` for `i` in `start..end`, as [`normjit_ir::rng`]
/// defines it, computing the per-2^32-elements keys once per block.
pub(crate) fn uniform_range<T: Float>(seed: u32, start: u64, end: u64, out: &mut Vec<T>) {
    use normjit_ir::rng::{bits, keys};
    let mut i = start;
    while i < end {
        let hi = (i >> 32) as u32;
        let block_end = (u64::from(hi) + 1).checked_mul(1 << 32).map_or(end, |b| end.min(b));
        let (k1, k2) = keys(seed, hi);
        out.extend((i..block_end).map(|j| T::from_f32((bits(j as u32, k1, k2) >> 8) as f32 * (1.0 / 16_777_216.0))));
        i = block_end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_range_matches_the_definition_across_the_high_word() {
        let start = (1u64 << 32) - 5;
        let mut got: Vec<f32> = Vec::new();
        uniform_range(42, start, start + 10, &mut got);
        let want: Vec<f32> = (start..start + 10).map(|i| normjit_ir::rng::uniform(42, i)).collect();
        assert_eq!(got, want);
        let mut wide: Vec<f64> = Vec::new();
        uniform_range(42, start, start + 10, &mut wide);
        assert!(wide.iter().zip(&want).all(|(&w, &n)| w == f64::from(n)));
    }
}
