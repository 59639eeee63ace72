//! The executor: runs a kernel's generated functions at one [`Shape`], in
//! plan order, splitting loops into the plan's chunks (a function of the
//! sizes alone) and combining per-chunk partial reductions in a fixed
//! pairwise tree over the chunks,
//! so results never depend on the thread count. It runs on the calling
//! thread unless the call has enough work to repay a dispatch to the pool.
//! Scratch and partials live in per-thread buffers reused across calls, so
//! a call allocates nothing in steady state.

use crate::shapes::Shape;
use normjit_codegen::{EntryFn, Frame, Unit};
use normjit_ir::Reduce;
// The executor combines partials with the loop IR's own ⊕, so the JIT
// and the loop-IR interpreter share one definition of it.
use normjit_lower::exec::{combine, identity};
use normjit_lower::{count, AccId};
use rayon::prelude::*;
use std::cell::RefCell;

/// Elements of work below which a call stays on the calling thread by
/// default ([`crate::CompilerOptions::parallel_min_work`]): a dispatch to
/// the pool and back costs several microseconds, which a kernel this small
/// does not repay (measured with `normjit bench`).
pub(crate) const PARALLEL_MIN_WORK: u64 = 1 << 18;

thread_local! {
    /// This thread's scratch (accumulator arrays) and partials.
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    static PARTIAL: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on this thread's buffer `key` of at least `len` f32s (a fresh
/// one if it is in use further up this thread's stack).
fn with_buf<R>(
    key: &'static std::thread::LocalKey<RefCell<Vec<f32>>>,
    len: usize,
    f: impl FnOnce(&mut [f32]) -> R,
) -> R {
    key.with(|cell| match cell.try_borrow_mut() {
        Ok(mut v) => {
            if v.len() < len {
                v.resize(len, 0.0);
            }
            f(&mut v[..len])
        }
        Err(_) => f(&mut vec![0.0; len]),
    })
}

/// The frame pointer handed to worker threads.
#[derive(Clone, Copy)]
struct FramePtr(*const Frame);
// SAFETY: `FramePtr` only carries the caller's frame across threads for the
// duration of `execute`, whose contract makes concurrent use sound: chunks
// write disjoint parts of the outputs and of the scratch, inputs are only
// read, and the frame itself is only read.
unsafe impl Send for FramePtr {}
unsafe impl Sync for FramePtr {}

impl FramePtr {
    /// Calls a generated function. (A method, so closures capture the whole
    /// `FramePtr`, which is `Send`, rather than its raw-pointer field.)
    ///
    /// # Safety
    /// The contract of [`execute`], plus `scratch`/`partial` sized by the
    /// shape's layout.
    unsafe fn call(self, f: EntryFn, scratch: *mut f32, partial: *mut f32, lo: usize, hi: usize) {
        f(self.0, scratch, partial, lo as i64, hi as i64)
    }
}

/// Runs the kernel once at `shape`, on `pool` if one is given.
///
/// # Safety
/// - `tensors` has one pointer per kernel tensor (by index); each points
///   to as many elements of the tensor's storage type as it has at the
///   shape's sizes, readable, and writable for `out`/`inout` tensors;
/// - no `out`/`inout` buffer overlaps any other tensor's buffer;
/// - `params` has one word per kernel param: f64 bits, or the u32 value.
pub(crate) unsafe fn execute(shape: &Shape, tensors: &[*mut u8], params: &[u64], pool: Option<&rayon::ThreadPool>) {
    let code = &shape.code;
    let plan = code.plan();
    let lay = &shape.layout;
    let frame = Frame {
        tensors: tensors.as_ptr(),
        params: params.as_ptr(),
        dims: shape.dims.as_ptr(),
        offsets: lay.offsets.as_ptr(),
        block_lo: 0,
        block_hi: 0,
    };
    let fp = FramePtr(&frame);
    let dims: &[usize] = &sizes(shape);
    if let Some(split) = &plan.group_split {
        let (_, f) = code.units()[0];
        let (n, chunk) = (dims[split.axis.index()], split.chunk(dims));
        let chunks = split.chunks(dims);
        let total = lay.scratch_total;
        let glen = lay.group_partial_len;
        // Cross-group accumulators: one partial area per chunk, each set
        // to the identity, combined in chunk order after the group loop.
        with_buf(&PARTIAL, glen * chunks, |partial| {
            reset_partials(shape, split, partial, glen, chunks, None);
            let pp = partial.as_mut_ptr() as usize;
            let body = |c: usize| {
                let (lo, hi) = (c * chunk, ((c + 1) * chunk).min(n));
                let part = (pp as *mut f32).wrapping_add(c * glen);
                // SAFETY: per the contract of `execute`; each chunk runs
                // distinct group iterations, which touch disjoint output
                // elements, and has its own scratch (group code initializes
                // it itself) and its own partial area.
                with_buf(&SCRATCH, total, |s| unsafe { fp.call(f, s.as_mut_ptr(), part, lo, hi) });
            };
            match pool {
                Some(p) if chunks > 1 => p.install(|| (0..chunks).into_par_iter().for_each(body)),
                _ => (0..chunks).for_each(body),
            }
            if split.partials.is_empty() {
                return;
            }
            with_buf(&SCRATCH, total, |scratch| {
                for &AccId(a) in &split.partials {
                    let a = a as usize;
                    scratch[lay.scratch_offset[a]..][..lay.scratch_len[a]].fill(identity(plan.accums[a].op));
                }
                combine_partials(shape, split, partial, glen, chunks, scratch, None);
                finish_means(shape, dims, &split.partials, scratch, None);
                // The steps after the group loop.
                for &(ref unit, f) in &code.units()[1..] {
                    run_unit(shape, dims, unit, f, fp, scratch, pool, None);
                }
            });
        });
        return;
    }
    with_buf(&SCRATCH, lay.scratch_total, |scratch| {
        let (Some(b), Some(size)) = (&plan.block, shape.block) else {
            for &(ref unit, f) in code.units() {
                run_unit(shape, dims, unit, f, fp, scratch, pool, None);
            }
            return;
        };
        // Column blocking: every phase on one block of columns, then the
        // next; the stores of 0-dim tensors once, last.
        let n = dims[b.axis.index()];
        for lo in (0..n).step_by(size) {
            let cols = Cols { n, lo, hi: (lo + size).min(n) };
            let frame = Frame { block_lo: cols.lo as i64, block_hi: cols.hi as i64, ..frame };
            for &(ref unit, f) in code.units().iter().filter(|u| matches!(u.0, Unit::Phase(_))) {
                run_unit(shape, dims, unit, f, FramePtr(&frame), scratch, pool, Some(cols));
            }
        }
        for &(ref unit, f) in code.units().iter().filter(|u| !matches!(u.0, Unit::Phase(_))) {
            run_unit(shape, dims, unit, f, fp, scratch, pool, None);
        }
    });
}

/// A block of columns: indices `lo..hi` of the blocked axis, of `n`. An
/// array accumulator of a blocked plan has that axis last, so the block's
/// elements of an array of `len` are `lo..hi` of each row of `n`.
#[derive(Clone, Copy)]
struct Cols {
    n: usize,
    lo: usize,
    hi: usize,
}

/// The index ranges of the elements `cols` selects in an array of `len`
/// (all of it without blocking).
fn ranges(len: usize, cols: Option<Cols>) -> impl Iterator<Item = std::ops::Range<usize>> {
    let (rows, n, lo, hi) = match cols {
        Some(c) if c.n > 0 => (len / c.n, c.n, c.lo, c.hi),
        Some(_) => (0, 0, 0, 0),
        None => (1, len, 0, len),
    };
    (0..rows).map(move |r| r * n + lo..r * n + hi)
}

/// Sets the elements `cols` selects of an accumulator's array to the
/// identity of `op`.
fn reset(array: &mut [f32], op: Reduce, cols: Option<Cols>) {
    for r in ranges(array.len(), cols) {
        array[r].fill(identity(op));
    }
}

/// Runs one unit of a group-less plan (on the block `cols` of columns, with
/// column blocking), or one after the group loop.
#[allow(clippy::too_many_arguments)]
fn run_unit(
    shape: &Shape,
    dims: &[usize],
    unit: &Unit,
    f: EntryFn,
    fp: FramePtr,
    scratch: &mut [f32],
    pool: Option<&rayon::ThreadPool>,
    cols: Option<Cols>,
) {
    match *unit {
        Unit::Phase(p) => phase(shape, dims, p, f, fp, scratch, pool, cols),
        Unit::Stores(_) | Unit::Group => {
            // SAFETY: per the contract of `execute`; a store unit
            // writes one element of each 0-dim tensor it stores.
            unsafe { fp.call(f, scratch.as_mut_ptr(), std::ptr::null_mut(), 0, 0) }
        }
    }
}

/// Combines chunks `lo..hi` of an accumulator's partials (chunk `c` at
/// `c * plen + off`, `len` elements) into chunk `lo`, in the tree of
/// `combine_chunks`: halves split at the middle, left ⊕ right.
fn tree_in_place(op: Reduce, p: &mut [f32], plen: usize, off: usize, len: usize, lo: usize, hi: usize) {
    if hi - lo <= 1 {
        return;
    }
    let mid = lo + (hi - lo) / 2;
    tree_in_place(op, p, plen, off, len, lo, mid);
    tree_in_place(op, p, plen, off, len, mid, hi);
    let (left, right) = p.split_at_mut(mid * plen + off);
    for (l, r) in left[lo * plen + off..][..len].iter_mut().zip(&right[..len]) {
        *l = combine(op, *l, *r);
    }
}

/// The sizes of `shape` as `usize`s, on the stack for ordinary kernels.
fn sizes(shape: &Shape) -> crate::bind::Small<usize, 16> {
    let mut d = crate::bind::Small::filled(0usize, shape.dims.len());
    for (o, s) in d.iter_mut().zip(shape.sizes()) {
        *o = s;
    }
    d
}

/// Runs phase `p` (on the columns `cols` only, with column blocking).
#[allow(clippy::too_many_arguments)]
fn phase(
    shape: &Shape,
    dims: &[usize],
    p: usize,
    f: EntryFn,
    fp: FramePtr,
    scratch: &mut [f32],
    pool: Option<&rayon::ThreadPool>,
    cols: Option<Cols>,
) {
    let plan = shape.code.plan();
    let ph = &plan.phases[p];
    let lay = &shape.layout;
    for &AccId(a) in &ph.accums {
        let a = a as usize;
        reset(&mut scratch[lay.scratch_offset[a]..][..lay.scratch_len[a]], plan.accums[a].op, cols);
    }
    let Some(split) = ph.split.as_ref() else {
        // SAFETY: per the contract of `execute`; an unsplit phase has no loops.
        unsafe { fp.call(f, scratch.as_mut_ptr(), std::ptr::null_mut(), 0, 0) };
        return;
    };
    if let (Some(c), Some(b)) = (cols, &plan.block) {
        if split.axis == b.axis {
            // A phase whose only loop is the blocked axis: the block is its
            // range. Nothing reduces over it, so it keeps no partials.
            // SAFETY: per the contract of `execute`.
            unsafe { fp.call(f, scratch.as_mut_ptr(), std::ptr::null_mut(), c.lo, c.hi) };
            finish_means(shape, dims, &ph.accums, scratch, cols);
            return;
        }
    }
    let (n, chunk) = (dims[split.axis.index()], split.chunk(dims));
    let chunks = split.chunks(dims);
    let plen = lay.partial_len[p];
    with_buf(&PARTIAL, plen * chunks, |partial| {
        reset_partials(shape, split, partial, plen, chunks, cols);
        let sp = scratch.as_mut_ptr() as usize;
        let pp = partial.as_mut_ptr() as usize;
        let body = |c: usize| {
            let (lo, hi) = (c * chunk, ((c + 1) * chunk).min(n));
            let part = (pp as *mut f32).wrapping_add(c * plen);
            // SAFETY: per the contract of `execute`. Chunks write disjoint
            // output elements and disjoint scratch elements (accumulators
            // they do not reduce over the split axis are indexed by it);
            // each has its own partial area.
            unsafe { fp.call(f, sp as *mut f32, part, lo, hi) };
        };
        match pool {
            Some(pl) if chunks > 1 => pl.install(|| (0..chunks).into_par_iter().for_each(body)),
            _ => (0..chunks).for_each(body),
        }
        combine_partials(shape, split, partial, plen, chunks, scratch, cols);
    });
    finish_means(shape, dims, &ph.accums, scratch, cols);
}

/// Sets each of `chunks` partial areas (`plen` f32s apart) of the
/// accumulators `split` keeps partials of to their identity.
fn reset_partials(
    shape: &Shape,
    split: &normjit_lower::Split,
    partial: &mut [f32],
    plen: usize,
    chunks: usize,
    cols: Option<Cols>,
) {
    let (plan, lay) = (shape.code.plan(), &shape.layout);
    // Accumulators outermost: a group plan without cross-group reductions
    // (most of them) does no work here.
    for &AccId(a) in &split.partials {
        let a = a as usize;
        for c in 0..chunks {
            reset(&mut partial[c * plen + lay.partial_offset[a]..][..lay.scratch_len[a]], plan.accums[a].op, cols);
        }
    }
}

/// Combines the chunks' partials in the normative pairwise tree over
/// chunks (`normjit_lower::exec::combine_chunks`), whole arrays at a time,
/// in place (the left half's result lands in its first chunk), then into
/// each accumulator's scratch (⊕ into what it holds).
fn combine_partials(
    shape: &Shape,
    split: &normjit_lower::Split,
    partial: &mut [f32],
    plen: usize,
    chunks: usize,
    scratch: &mut [f32],
    cols: Option<Cols>,
) {
    let (plan, lay) = (shape.code.plan(), &shape.layout);
    for &AccId(a) in &split.partials {
        let a = a as usize;
        let op = plan.accums[a].op;
        let (off, len) = (lay.partial_offset[a], lay.scratch_len[a]);
        for r in ranges(len, cols) {
            tree_in_place(op, partial, plen, off + r.start, r.len(), 0, chunks);
            if chunks > 0 {
                let src = &partial[off + r.start..][..r.len()];
                for (t, s) in scratch[lay.scratch_offset[a] + r.start..][..r.len()].iter_mut().zip(src) {
                    *t = combine(op, *t, *s);
                }
            }
        }
    }
}

/// Divides each mean among `accs` by its count.
fn finish_means(shape: &Shape, dims: &[usize], accs: &[AccId], scratch: &mut [f32], cols: Option<Cols>) {
    let (plan, lay) = (shape.code.plan(), &shape.layout);
    for &AccId(a) in accs {
        let acc = &plan.accums[a as usize];
        if acc.op == Reduce::Mean {
            let c = count(dims, acc.reduced);
            let array = &mut scratch[lay.scratch_offset[a as usize]..][..lay.scratch_len[a as usize]];
            for r in ranges(array.len(), cols) {
                array[r].iter_mut().for_each(|s| *s /= c);
            }
        }
    }
}
