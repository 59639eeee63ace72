//! Reductions over an axis subset of a dense value, with one fixed
//! combination order whatever the layout.
//!
//! The order is numpy's pairwise summation, applied to the reduced elements
//! of each output in row-major order (reduced axes in dim declaration
//! order): a run of at most [`BLOCK`] elements is a *leaf*, folded with
//! eight interleaved accumulators (element `i` into accumulator `i % 8`,
//! then `((a0+a1)+(a2+a3))+((a4+a5)+(a6+a7))`, then the `< 8` leftover
//! elements left to right; a leaf under 8 elements is a plain left fold);
//! a longer run splits at `h = n/2` rounded down to a multiple of 8 and
//! combines the two halves. The error of an f32 sum then grows with
//! `log n`, not `n`. `max`/`min` use the same tree with their own combine.
//!
//! Three evaluation strategies give bit-identical results (the same tree
//! with the same leaves), chosen by where the reduced axes sit in memory:
//! - reduced axes innermost (LayerNorm rows): each output's elements are
//!   one contiguous slice;
//! - innermost axis reduced, others interleaved (BatchNorm over NCHW): each
//!   leaf is gathered into a small buffer first;
//! - innermost axis kept (column sums, BatchNorm over NHWC): whole rows of
//!   the kept inner axis are combined at once, in column blocks that stay in
//!   cache, so memory is read in order.

use crate::layout::{axes_count, strides_in, Nest};
use normjit_ir::AxisSet;

/// Most elements in a leaf of the summation tree.
pub(crate) const BLOCK: usize = 128;
/// Width of the column blocks of the kept-inner strategy.
const COLS: usize = 64;

/// Where the tree splits a run of `n > BLOCK` elements.
#[inline]
fn split(n: usize) -> usize {
    let h = n / 2;
    h - h % 8
}

/// The leaf fold of at most [`BLOCK`] elements (any length works).
#[inline]
pub(crate) fn leaf<T: Copy>(a: &[T], id: T, f: &impl Fn(T, T) -> T) -> T {
    if a.len() < 8 {
        return match a.split_first() {
            None => id,
            Some((&first, rest)) => rest.iter().fold(first, |s, &x| f(s, x)),
        };
    }
    let mut r: [T; 8] = std::array::from_fn(|j| a[j]);
    let full = a.len() - a.len() % 8;
    for c in a[8..full].chunks_exact(8) {
        for j in 0..8 {
            r[j] = f(r[j], c[j]);
        }
    }
    let s = f(f(f(r[0], r[1]), f(r[2], r[3])), f(f(r[4], r[5]), f(r[6], r[7])));
    a[full..].iter().fold(s, |s, &x| f(s, x))
}

/// The tree over a contiguous run.
pub(crate) fn tree<T: Copy>(a: &[T], id: T, f: &impl Fn(T, T) -> T) -> T {
    if a.len() <= BLOCK {
        leaf(a, id, f)
    } else {
        let h = split(a.len());
        f(tree(&a[..h], id, f), tree(&a[h..], id, f))
    }
}

/// The tree over positions `start..start + n` of a sequence whose leaves
/// `leaf_at(start, len)` computes.
fn tree_by<T: Copy>(start: usize, n: usize, leaf_at: &mut impl FnMut(usize, usize) -> T, f: &impl Fn(T, T) -> T) -> T {
    if n <= BLOCK {
        leaf_at(start, n)
    } else {
        let h = split(n);
        let a = tree_by(start, h, leaf_at, f);
        let b = tree_by(start + h, n - h, leaf_at, f);
        f(a, b)
    }
}

/// A maximal run of adjacent non-unit axes that are all reduced or all kept,
/// merged into one axis (they are contiguous in a dense array).
#[derive(Clone, Copy)]
struct Group {
    size: usize,
    stride: usize,
    reduced: bool,
}

/// Row-major positions over some axes (outermost first), as offsets.
struct Seq {
    shape: Vec<usize>,
    strides: Vec<usize>,
}

/// A position in a [`Seq`] that steps forward one element at a time.
struct Cursor {
    idx: [usize; 64],
    off: usize,
}

impl Seq {
    fn new(groups: &[Group]) -> Self {
        Seq { shape: groups.iter().map(|g| g.size).collect(), strides: groups.iter().map(|g| g.stride).collect() }
    }

    /// The cursor at position `pos`, with offsets relative to `base`.
    fn cursor(&self, base: usize, mut pos: usize) -> Cursor {
        let mut c = Cursor { idx: [0; 64], off: base };
        for a in (0..self.shape.len()).rev() {
            c.idx[a] = pos % self.shape[a];
            pos /= self.shape[a];
            c.off += c.idx[a] * self.strides[a];
        }
        c
    }

    /// Returns the cursor's offset and moves it to the next position.
    #[inline]
    fn next(&self, c: &mut Cursor) -> usize {
        let here = c.off;
        for a in (0..self.shape.len()).rev() {
            c.idx[a] += 1;
            c.off += self.strides[a];
            if c.idx[a] < self.shape[a] {
                break;
            }
            c.off -= self.shape[a] * self.strides[a];
            c.idx[a] = 0;
        }
        here
    }

    /// Copies positions `start..start + buf.len()` (relative to `base`) into
    /// `buf`, a contiguous run of the innermost axis at a time.
    fn fetch<T: Copy>(&self, src: &[T], base: usize, start: usize, buf: &mut [T]) {
        let last = self.shape.len() - 1;
        let (n_in, s_in) = (self.shape[last], self.strides[last]);
        let mut c = self.cursor(base, start);
        let mut filled = 0;
        while filled < buf.len() {
            let take = (buf.len() - filled).min(n_in - c.idx[last]);
            let dst = &mut buf[filled..filled + take];
            if s_in == 1 {
                dst.copy_from_slice(&src[c.off..c.off + take]);
            } else {
                for (j, d) in dst.iter_mut().enumerate() {
                    *d = src[c.off + j * s_in];
                }
            }
            filled += take;
            // Move to the last element taken, then one step on (carrying).
            c.idx[last] += take - 1;
            c.off += (take - 1) * s_in;
            self.next(&mut c);
        }
    }
}

/// Appends to `out` the reduction of `src` (dense over `axes`) over `red`:
/// one result per kept element, dense over `axes - red`. `id` is the result
/// over an empty domain, `f` the combine.
pub(crate) fn reduce<T: Copy>(
    src: &[T],
    axes: AxisSet,
    red: AxisSet,
    sizes: &[usize],
    id: T,
    f: impl Fn(T, T) -> T,
    out: &mut Vec<T>,
) {
    // Validated: the operand's count fits, so the kept count does; the
    // reduced count only overflows when some kept size is 0.
    let kept_n = axes_count(axes.minus(red), sizes).unwrap_or(0);
    let m = axes_count(red, sizes).unwrap_or(0);
    if kept_n == 0 {
        return;
    }
    if m == 0 {
        out.extend(std::iter::repeat_n(id, kept_n));
        return;
    }
    let strides = strides_in(axes, axes, sizes);
    let mut groups: Vec<Group> = Vec::new();
    for (d, &stride) in axes.iter().zip(&strides) {
        let size = sizes[d.index()];
        if size == 1 {
            continue;
        }
        let reduced = red.contains(d);
        match groups.last_mut() {
            Some(g) if g.reduced == reduced => {
                g.size *= size;
                g.stride = stride;
            }
            _ => groups.push(Group { size, stride, reduced }),
        }
    }
    let red_groups: Vec<Group> = groups.iter().copied().filter(|g| g.reduced).collect();
    let kept_groups: Vec<Group> = groups.iter().copied().filter(|g| !g.reduced).collect();
    let inner_kept = groups.last().is_some_and(|g| !g.reduced);

    if !inner_kept && red_groups.len() <= 1 {
        // Reduced axes innermost: each output reads one contiguous slice.
        out.extend(src.chunks_exact(m).map(|row| tree(row, id, &f)));
    } else if !inner_kept {
        let seq = Seq::new(&red_groups);
        let kept_shape: Vec<usize> = kept_groups.iter().map(|g| g.size).collect();
        let kept_strides: Vec<usize> = kept_groups.iter().map(|g| g.stride).collect();
        let nest = Nest::new(&kept_shape, [&kept_strides]);
        let mut buf = [id; BLOCK];
        nest.for_each_row(|[o]| {
            for i in 0..nest.inner {
                let base = o + i * nest.inner_strides[0];
                let mut leaf_at = |s: usize, n: usize| {
                    seq.fetch(src, base, s, &mut buf[..n]);
                    leaf(&buf[..n], id, &f)
                };
                out.push(tree_by(0, m, &mut leaf_at, &f));
            }
        });
    } else {
        // Innermost axis kept: combine whole rows of it, column block by block.
        let (inner, outer) = kept_groups.split_last().expect("inner_kept implies a kept group");
        let outer_shape: Vec<usize> = outer.iter().map(|g| g.size).collect();
        let outer_strides: Vec<usize> = outer.iter().map(|g| g.stride).collect();
        let nest = Nest::new(&outer_shape, [&outer_strides]);
        let rows = Rows { src, seq: Seq::new(&red_groups), id, f: &f };
        let mut block = [id; COLS];
        nest.for_each_row(|[o]| {
            for i in 0..nest.inner {
                let base = o + i * nest.inner_strides[0];
                for c0 in (0..inner.size).step_by(COLS) {
                    let w = COLS.min(inner.size - c0);
                    rows.tree(base + c0, 0, m, &mut block[..w]);
                    out.extend_from_slice(&block[..w]);
                }
            }
        });
    }
}

/// The kept-inner strategy: the tree over rows, each row `w` contiguous
/// elements starting at `base + offset of the row`.
struct Rows<'a, T, F> {
    src: &'a [T],
    seq: Seq,
    id: T,
    f: &'a F,
}

impl<T: Copy, F: Fn(T, T) -> T> Rows<'_, T, F> {
    fn tree(&self, base: usize, start: usize, n: usize, out: &mut [T]) {
        if n <= BLOCK {
            return self.leaf(base, start, n, out);
        }
        let h = split(n);
        self.tree(base, start, h, out);
        let mut right = [self.id; COLS];
        let right = &mut right[..out.len()];
        self.tree(base, start + h, n - h, right);
        for (o, &r) in out.iter_mut().zip(right.iter()) {
            *o = (self.f)(*o, r);
        }
    }

    /// [`leaf`], a column at a time: row `i` goes into accumulator `i % 8`.
    fn leaf(&self, base: usize, start: usize, n: usize, out: &mut [T]) {
        let (w, f) = (out.len(), self.f);
        let mut c = self.seq.cursor(base, start);
        let mut row = || {
            let o = self.seq.next(&mut c);
            &self.src[o..o + w]
        };
        let fold_into = |acc: &mut [T], r: &[T]| {
            for (a, &x) in acc.iter_mut().zip(r) {
                *a = f(*a, x);
            }
        };
        if n < 8 {
            out.copy_from_slice(row());
            for _ in 1..n {
                fold_into(out, row());
            }
            return;
        }
        let mut acc = [[self.id; COLS]; 8];
        for a in acc.iter_mut() {
            a[..w].copy_from_slice(row());
        }
        let full = n - n % 8;
        for _ in (8..full).step_by(8) {
            for a in acc.iter_mut() {
                fold_into(&mut a[..w], row());
            }
        }
        for (j, o) in out.iter_mut().enumerate() {
            let a = |k: usize| acc[k][j];
            *o = f(f(f(a(0), a(1)), f(a(2), a(3))), f(f(a(4), a(5)), f(a(6), a(7))));
        }
        for _ in full..n {
            fold_into(out, row());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{gather, shape};
    use normjit_ir::DimId;
    use proptest::prelude::*;

    /// The definition: gather each output's reduced elements in row-major
    /// order, then run the tree over them.
    fn reference(
        src: &[f32],
        axes: AxisSet,
        red: AxisSet,
        sizes: &[usize],
        f: impl Fn(f32, f32) -> f32,
        id: f32,
    ) -> Vec<f32> {
        let kept = axes.minus(red);
        // Transpose to [kept..., reduced...], so each output's run is contiguous.
        let order: Vec<DimId> = kept.iter().chain(red.iter()).collect();
        let all = strides_in(axes, axes, sizes);
        let pos = |d: DimId| axes.iter().position(|a| a == d).unwrap();
        let sh: Vec<usize> = order.iter().map(|&d| sizes[d.index()]).collect();
        let st: Vec<usize> = order.iter().map(|&d| all[pos(d)]).collect();
        let mut t = Vec::new();
        gather(src, &sh, &st, &mut t);
        let m: usize = shape(red, sizes).iter().product();
        let k: usize = shape(kept, sizes).iter().product();
        (0..k).map(|i| tree(&t[i * m..(i + 1) * m], id, &f)).collect()
    }

    fn data(n: usize, seed: u32) -> Vec<f32> {
        // Values of mixed magnitude, so a different order would show.
        (0..n as u64).map(|i| (normjit_ir::rng::uniform(seed, i) - 0.3) * 10f32.powi((i % 7) as i32 - 3)).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn every_strategy_matches_the_definition_bit_for_bit(
            sizes in proptest::collection::vec(
                prop_oneof![1 => Just(0usize), 2 => Just(1), 6 => 2usize..6, 2 => 60usize..300], 1..6),
            axes_bits in 1u64..64, red_bits in 1u64..64, seed in 0u32..1000,
        ) {
            let nd = sizes.len() as u32;
            let axes = AxisSet::from_bits(axes_bits & ((1 << nd) - 1));
            let red = AxisSet::from_bits(red_bits).intersect(axes);
            prop_assume!(!red.is_empty());
            let n: usize = shape(axes, &sizes).iter().product();
            prop_assume!(n <= 300_000);
            let src = data(n, seed);
            let sum = |a: f32, b: f32| a + b;
            let mut got = Vec::new();
            reduce(&src, axes, red, &sizes, 0.0, sum, &mut got);
            let want = reference(&src, axes, red, &sizes, sum, 0.0);
            prop_assert_eq!(got.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), want.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
            let mut got = Vec::new();
            reduce(&src, axes, red, &sizes, f32::NEG_INFINITY, crate::real::max, &mut got);
            let want = reference(&src, axes, red, &sizes, crate::real::max, f32::NEG_INFINITY);
            prop_assert_eq!(got, want);
        }

        // Interleaved reduced and kept axes, long enough runs for several leaves.
        #[test]
        fn interleaved_axes_match_the_definition_bit_for_bit(
            sizes in proptest::collection::vec(prop_oneof![4 => 2usize..7, 1 => 20usize..90], 3..6),
            red_bits in 1u64..64, seed in 0u32..1000,
        ) {
            let nd = sizes.len() as u32;
            let axes = AxisSet::from_bits((1 << nd) - 1);
            let red = AxisSet::from_bits(red_bits).intersect(axes);
            prop_assume!(!red.is_empty());
            let n: usize = sizes.iter().product();
            let src = data(n, seed);
            let mut got = Vec::new();
            reduce(&src, axes, red, &sizes, 0.0, |a, b| a + b, &mut got);
            let want = reference(&src, axes, red, &sizes, |a, b| a + b, 0.0);
            prop_assert_eq!(got.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), want.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
        }
    }

    #[test]
    fn tree_is_exact_on_small_runs_and_pairwise_on_long_ones() {
        let ones = vec![1.0f32; 1000];
        assert_eq!(tree(&ones, 0.0, &|a, b| a + b), 1000.0);
        assert_eq!(tree(&[], 0.0f32, &|a, b| a + b), 0.0);
        // A single -0.0 sums to itself; the empty sum is +0.0.
        assert!(tree(&[-0.0f32], 0.0, &|a, b| a + b).is_sign_negative());
        // 2^24 followed by 4095 ones: a left fold in f32 loses every one
        // (2^24 + 1 rounds back to 2^24); the tree loses only the 15 ones
        // that share the big element's accumulator in the first leaf.
        let mut v = vec![1.0f32; 4096];
        v[0] = 16_777_216.0;
        let naive = v.iter().fold(0.0f32, |a, &b| a + b);
        assert_eq!(naive, 16_777_216.0);
        assert_eq!(tree(&v, 0.0, &|a, b| a + b), 16_777_216.0 + 4095.0 - 15.0);
    }

    #[test]
    fn kept_inner_reduction_reads_columns() {
        // x[N=3, D=2] = [[1, 2], [3, 4], [5, 6]], sum over N -> [9, 12].
        let src = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
        let (axes, n) = (AxisSet::EMPTY.with(DimId::from_raw(0)).with(DimId::from_raw(1)), DimId::from_raw(0));
        let mut out = Vec::new();
        reduce(&src, axes, AxisSet::EMPTY.with(n), &[3, 2], 0.0, |a, b| a + b, &mut out);
        assert_eq!(out, [9.0, 12.0]);
        out.clear();
        reduce(&src, axes, AxisSet::EMPTY.with(DimId::from_raw(1)), &[3, 2], 0.0, |a, b| a + b, &mut out);
        assert_eq!(out, [3.0, 7.0, 11.0]);
    }
}
