//! The executor: runs a [`Compiled`] kernel's functions in plan order,
//! splitting loops into the plan's chunks across a thread pool, and
//! combining per-chunk partial reductions in chunk order (so results do not
//! depend on the thread count).

use crate::layout::EntryFn;
use crate::{Compiled, Unit};
use normjit_ir::Reduce;
// The executor combines partials with the loop IR's own ⊕, so the JIT
// and the loop-IR interpreter share one definition of it.
use normjit_lower::exec::{combine, identity};
use normjit_lower::{AccId, Split};
use rayon::prelude::*;

/// Raw pointers handed to worker threads.
#[derive(Clone, Copy)]
struct Ptrs {
    tensors: *const *mut f32,
    params: *const u32,
}
// SAFETY: `Ptrs` only carries the caller's pointers across threads for the
// duration of `execute`, whose contract makes concurrent use sound: chunks
// write disjoint parts of the outputs, and inputs are only read.
unsafe impl Send for Ptrs {}
unsafe impl Sync for Ptrs {}

impl Ptrs {
    /// Calls a generated function. (A method, so closures capture the whole
    /// `Ptrs`, which is `Send`, rather than its raw-pointer fields.)
    ///
    /// # Safety
    /// The contract of [`Compiled::execute`], plus `scratch`/`partial`
    /// sized by the layout for this call.
    unsafe fn call(self, f: EntryFn, scratch: *mut f32, partial: *mut f32, lo: usize, hi: usize) {
        f(self.tensors, self.params, scratch, partial, lo as i64, hi as i64)
    }
}

impl Compiled {
    /// Runs the kernel once.
    ///
    /// # Safety
    /// - `tensors` has one pointer per kernel tensor (by index); each points
    ///   to at least as many f32s as the tensor has at the compiled sizes,
    ///   readable, and writable for `out`/`inout` tensors;
    /// - no `out`/`inout` buffer overlaps any other tensor's buffer;
    /// - `params` has one word per kernel param: f32 bits, or the u32 value.
    pub unsafe fn execute(&self, tensors: &[*mut f32], params: &[u32], pool: Option<&rayon::ThreadPool>) {
        assert_eq!(tensors.len(), self.plan.kernel.tensors.len(), "one pointer per tensor");
        assert_eq!(params.len(), self.plan.kernel.params.len(), "one word per param");
        let ptrs = Ptrs { tensors: tensors.as_ptr(), params: params.as_ptr() };
        let run = |f: &(dyn Fn() + Sync)| match pool {
            Some(p) => p.install(f),
            None => f(),
        };
        if let Some(split) = &self.plan.group_split {
            let (_, f) = self.units[0];
            let total = self.layout.scratch_total;
            let chunks = self.chunks(split);
            run(&|| {
                let body = |(lo, hi): (usize, usize)| {
                    let mut scratch = vec![0.0f32; total];
                    // SAFETY: per the contract of `execute`; each chunk runs
                    // distinct group iterations, which touch disjoint output
                    // elements, and has its own scratch.
                    unsafe { ptrs.call(f, scratch.as_mut_ptr(), std::ptr::null_mut(), lo, hi) };
                };
                if pool.is_some() && chunks.len() > 1 {
                    chunks.par_iter().copied().for_each(body);
                } else {
                    chunks.iter().copied().for_each(body);
                }
            });
            return;
        }
        let mut scratch = vec![0.0f32; self.layout.scratch_total];
        for &(ref unit, f) in &self.units {
            match *unit {
                Unit::Phase(p) => self.phase(p, f, ptrs, &mut scratch, pool),
                Unit::Stores(_) | Unit::Group => {
                    // SAFETY: per the contract of `execute`; a store unit
                    // writes one element of a 0-dim tensor.
                    unsafe { ptrs.call(f, scratch.as_mut_ptr(), std::ptr::null_mut(), 0, 0) }
                }
            }
        }
    }

    fn chunks(&self, split: &Split) -> Vec<(usize, usize)> {
        let n = self.plan.dims[split.axis.index()];
        (0..n).step_by(split.chunk.max(1)).map(|lo| (lo, (lo + split.chunk).min(n))).collect()
    }

    fn phase(&self, p: usize, f: EntryFn, ptrs: Ptrs, scratch: &mut [f32], pool: Option<&rayon::ThreadPool>) {
        let plan = &self.plan;
        let ph = &plan.phases[p];
        let lay = &self.layout;
        for &AccId(a) in &ph.accums {
            let a = a as usize;
            let id = identity(plan.accums[a].op);
            scratch[lay.scratch_offset[a]..][..lay.scratch_len[a]].fill(id);
        }
        let split = ph.split.as_ref().expect("a phase without a group is split");
        let chunks = self.chunks(split);
        let plen = lay.partial_len[p];
        let mut partial = vec![0.0f32; plen * chunks.len()];
        for c in 0..chunks.len() {
            for &AccId(a) in &split.partials {
                let a = a as usize;
                let off = c * plen + lay.partial_offset[p][a];
                partial[off..][..lay.scratch_len[a]].fill(identity(plan.accums[a].op));
            }
        }
        let sp = scratch.as_mut_ptr() as usize;
        let pp = partial.as_mut_ptr() as usize;
        let body = |(c, &(lo, hi)): (usize, &(usize, usize))| {
            let part = (pp as *mut f32).wrapping_add(c * plen);
            // SAFETY: per the contract of `execute`. Chunks write disjoint
            // output elements and disjoint scratch elements (accumulators
            // they do not reduce over the split axis are indexed by it);
            // each has its own partial area.
            unsafe { ptrs.call(f, sp as *mut f32, part, lo, hi) };
        };
        match pool {
            Some(pl) if chunks.len() > 1 => pl.install(|| chunks.par_iter().enumerate().for_each(body)),
            _ => chunks.iter().enumerate().for_each(body),
        }
        // Combine partials in chunk order, then finish means.
        for &AccId(a) in &split.partials {
            let a = a as usize;
            let op = plan.accums[a].op;
            for c in 0..chunks.len() {
                let src = &partial[c * plen + lay.partial_offset[p][a]..][..lay.scratch_len[a]];
                for (t, s) in scratch[lay.scratch_offset[a]..][..lay.scratch_len[a]].iter_mut().zip(src) {
                    *t = combine(op, *t, *s);
                }
            }
        }
        for &AccId(a) in &ph.accums {
            let acc = &plan.accums[a as usize];
            if acc.op == Reduce::Mean {
                let count: f32 = acc.reduced.iter().map(|d| plan.dims[d.index()] as f32).product();
                for s in &mut scratch[lay.scratch_offset[a as usize]..][..lay.scratch_len[a as usize]] {
                    *s /= count;
                }
            }
        }
    }
}
