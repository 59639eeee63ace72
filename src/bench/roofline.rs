//! Stream kernels: the bandwidth ceiling for a pipeline's memory traffic.
//!
//! [`stream`] reads some buffers, updates some in place and writes others,
//! all of one length, with trivial arithmetic: the mean of the values read
//! at each index. With one buffer read and one written it is a copy. A
//! kernel with the same streams, storing the ordinary way, cannot move its
//! bytes faster than this one, so its effective bandwidth over this one's is
//! how close it gets to the machine. (libc's `memcpy` copies large buffers
//! with non-temporal stores, which skip reading the destination first, and
//! so beats this copy at DRAM sizes; neither the JIT nor these kernels
//! use such stores.)
//!
//! In-place streams are separate from read plus write streams because they
//! cost less: a written line must first be read into the cache (read for
//! ownership), unless it is already there because the same loop just read
//! it. AdamW's `p` is an in-place stream; a copy's destination is not.
//!
//! The loops run over blocks of eight vectors into a local array that
//! lives in registers, so LLVM vectorizes them without runtime alias checks
//! (which it gives up on with many streams), once per (reads, in-place,
//! writes) count, for each ISA.

use super::{multiversion, piece, with_isa, Isa, Lanes};
use rayon::prelude::*;
use rayon::ThreadPool;

/// Most buffers [`stream`] reads.
pub const MAX_READS: usize = 5;
/// Most buffers [`stream`] updates in place.
pub const MAX_INOUTS: usize = 3;
/// Most buffers [`stream`] writes.
pub const MAX_WRITES: usize = 3;

multiversion! {
    /// Streams once over buffers of one length `n`: at each index, the mean
    /// of the values of `reads` and `inouts` there is stored to every buffer
    /// of `inouts` and `writes` (one read and one write: a copy; nothing
    /// read: zeros). The mean rather than the sum, so that repeated runs
    /// keep in-place values in the range they started in.
    ///
    /// With nothing to store, the values read are summed instead (so the
    /// reads cannot be optimized away) and the sum is returned; otherwise
    /// the result is 0.
    ///
    /// # Panics
    /// If the buffers differ in length, or there are more than
    /// [`MAX_READS`], [`MAX_INOUTS`] or [`MAX_WRITES`] of a kind.
    pub fn stream(reads: &[&[f32]], inouts: &mut [&mut [f32]], writes: &mut [&mut [f32]]) -> f32 => stream_body
}

/// [`stream`] with the index range split into one contiguous piece per
/// thread of `pool`; a sum (nothing stored) adds the pieces' sums in order,
/// so it depends on the pool's size but not on scheduling.
///
/// # Panics
/// As [`stream`].
pub fn stream_par(pool: &ThreadPool, reads: &[&[f32]], inouts: &mut [&mut [f32]], writes: &mut [&mut [f32]]) -> f32 {
    let n = common_len(reads, inouts, writes);
    let chunk = piece(n, pool.current_num_threads(), 16);
    let tasks = n.div_ceil(chunk);
    // One set of sub-slices per task: shared pieces of the reads, disjoint
    // pieces of everything written.
    let mut per_task: Vec<Pieces> = (0..tasks).map(|_| (Vec::new(), Vec::new(), Vec::new())).collect();
    for r in reads {
        for (t, c) in per_task.iter_mut().zip(r.chunks(chunk)) {
            t.0.push(c);
        }
    }
    for u in inouts.iter_mut() {
        for (t, c) in per_task.iter_mut().zip(u.chunks_mut(chunk)) {
            t.1.push(c);
        }
    }
    for w in writes.iter_mut() {
        for (t, c) in per_task.iter_mut().zip(w.chunks_mut(chunk)) {
            t.2.push(c);
        }
    }
    let isa = Isa::current();
    let sums: Vec<f32> = pool.install(|| {
        per_task.into_par_iter().map(|(r, mut u, mut w)| with_isa(isa, || stream(&r, &mut u, &mut w))).collect()
    });
    sums.iter().sum()
}

/// One task's pieces of the reads, in-place buffers and writes.
type Pieces<'a> = (Vec<&'a [f32]>, Vec<&'a mut [f32]>, Vec<&'a mut [f32]>);

/// The one length of every buffer; panics on a mismatch or too many.
fn common_len(reads: &[&[f32]], inouts: &[&mut [f32]], writes: &[&mut [f32]]) -> usize {
    assert!(
        reads.len() <= MAX_READS && inouts.len() <= MAX_INOUTS && writes.len() <= MAX_WRITES,
        "stream supports at most {MAX_READS} reads, {MAX_INOUTS} in-place and {MAX_WRITES} writes, not {}, {} and {}",
        reads.len(),
        inouts.len(),
        writes.len()
    );
    let lens =
        reads.iter().map(|s| s.len()).chain(inouts.iter().map(|s| s.len())).chain(writes.iter().map(|s| s.len()));
    let mut n = None;
    for len in lens {
        let first = *n.get_or_insert(len);
        assert_eq!(first, len, "stream buffers differ in length");
    }
    n.unwrap_or(0)
}

#[inline(always)]
fn stream_body<const FMA: bool, const L: usize>(
    reads: &[&[f32]],
    inouts: &mut [&mut [f32]],
    writes: &mut [&mut [f32]],
) -> f32 {
    let n = common_len(reads, inouts, writes);
    by_reads::<L>(reads, inouts, writes, n)
}

/// Fixes the number of reads as a constant, then of in-place buffers, then
/// of writes: one specialized loop per combination.
#[inline(always)]
fn by_reads<const L: usize>(r: &[&[f32]], u: &mut [&mut [f32]], w: &mut [&mut [f32]], n: usize) -> f32 {
    match r.len() {
        0 => by_inouts::<L, 0>(r, u, w, n),
        1 => by_inouts::<L, 1>(r, u, w, n),
        2 => by_inouts::<L, 2>(r, u, w, n),
        3 => by_inouts::<L, 3>(r, u, w, n),
        4 => by_inouts::<L, 4>(r, u, w, n),
        5 => by_inouts::<L, 5>(r, u, w, n),
        _ => unreachable!("checked by common_len"),
    }
}

#[inline(always)]
fn by_inouts<const L: usize, const R: usize>(
    r: &[&[f32]],
    u: &mut [&mut [f32]],
    w: &mut [&mut [f32]],
    n: usize,
) -> f32 {
    match u.len() {
        0 => by_writes::<L, R, 0>(r, u, w, n),
        1 => by_writes::<L, R, 1>(r, u, w, n),
        2 => by_writes::<L, R, 2>(r, u, w, n),
        3 => by_writes::<L, R, 3>(r, u, w, n),
        _ => unreachable!("checked by common_len"),
    }
}

#[inline(always)]
fn by_writes<const L: usize, const R: usize, const U: usize>(
    r: &[&[f32]],
    u: &mut [&mut [f32]],
    w: &mut [&mut [f32]],
    n: usize,
) -> f32 {
    let r: [&[f32]; R] = std::array::from_fn(|i| &r[i][..n]);
    let mut u_it = u.iter_mut();
    let u: [&mut [f32]; U] = std::array::from_fn(|_| &mut u_it.next().expect("checked by common_len")[..n]);
    match w.len() {
        0 => run::<L, R, U, 0>(r, u, [], n),
        1 => run::<L, R, U, 1>(r, u, [&mut w[0][..n]], n),
        2 => {
            let [a, b] = w else { unreachable!("two writes") };
            run::<L, R, U, 2>(r, u, [&mut a[..n], &mut b[..n]], n)
        }
        3 => {
            let [a, b, c] = w else { unreachable!("three writes") };
            run::<L, R, U, 3>(r, u, [&mut a[..n], &mut b[..n], &mut c[..n]], n)
        }
        _ => unreachable!("checked by common_len"),
    }
}

/// The loop for fixed counts; every slice has length `n`. A block is `L`
/// elements, eight vector registers.
#[inline(always)]
fn run<const L: usize, const R: usize, const U: usize, const W: usize>(
    r: [&[f32]; R],
    u: [&mut [f32]; U],
    w: [&mut [f32]; W],
    n: usize,
) -> f32 {
    if U + W == 0 {
        return sum::<L, R>(r, n);
    }
    let scale = 1.0 / (R + U).max(1) as f32;
    // The value stored at one index, from the sum there; a copy (one
    // stream read) stores the value itself.
    let mean = |s: f32| if R + U > 1 { s * scale } else { s };
    let full = n / L * L;
    let mut j = 0;
    while j < full {
        let mut s = [0.0f32; L];
        // Stream k of the reads, then of the in-place buffers. `k` runs
        // over a constant range, so the loop unrolls and `k == 0` folds.
        for k in 0..R + U {
            let q = if k < R { &r[k][j..j + L] } else { &u[k - R][j..j + L] };
            let q: &[f32; L] = q.try_into().expect("a whole block");
            if k == 0 {
                s = *q;
            } else {
                for l in 0..L {
                    s[l] += q[l];
                }
            }
        }
        // Element by element, not `copy_from_slice`, which would make a
        // memcpy from `s` spilled to the stack.
        for k in 0..U + W {
            let q = if k < U { &mut u[k][j..j + L] } else { &mut w[k - U][j..j + L] };
            let q: &mut [f32; L] = q.try_into().expect("a whole block");
            for l in 0..L {
                q[l] = mean(s[l]);
            }
        }
        j += L;
    }
    for j in full..n {
        let mut s = 0.0;
        for k in 0..R + U {
            let x = if k < R { r[k][j] } else { u[k - R][j] };
            s = if k == 0 { x } else { s + x };
        }
        for k in 0..U + W {
            let q = if k < U { &mut u[k][j] } else { &mut w[k - U][j] };
            *q = mean(s);
        }
    }
    0.0
}

/// The sum of every element of `r`, all streams read side by side.
#[inline(always)]
fn sum<const L: usize, const R: usize>(r: [&[f32]; R], n: usize) -> f32 {
    let mut acc = Lanes::<L>::new();
    let full = n / L * L;
    let mut j = 0;
    while j < full {
        for q in &r {
            let q: &[f32; L] = q[j..j + L].try_into().expect("a whole block");
            for (a, &x) in acc.0.iter_mut().zip(q) {
                *a += x;
            }
        }
        j += L;
    }
    for q in &r {
        for (a, &x) in acc.0.iter_mut().zip(&q[full..]) {
            *a += x;
        }
    }
    acc.total()
}
