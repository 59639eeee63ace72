//! Dense layouts and strided loop nests: the one piece of machinery behind
//! loads, stores and elementwise ops.
//!
//! Every interpreter value is a dense row-major array over its axes in dim
//! declaration order. An operation writes a dense output and reads each
//! input through one stride per output axis (0 where the input does not
//! vary, which is how named-axis broadcasting and transposed tensor layouts
//! are both expressed). [`Nest`] drops size-1 axes and merges adjacent axes
//! whose strides line up, so "same axes" becomes one contiguous loop and a
//! broadcast operand becomes a scalar or repeated row of the inner loop.

use crate::error::{Error, Result};
use normjit_ir::AxisSet;

/// The number of elements of a dense array of these sizes: 0 if any size
/// is 0 (whatever the others), `None` if the product overflows.
pub(crate) fn element_count(sizes: impl IntoIterator<Item = usize>) -> Option<usize> {
    let mut acc = Some(1usize);
    for s in sizes {
        if s == 0 {
            return Some(0);
        }
        acc = acc.and_then(|a| a.checked_mul(s));
    }
    acc
}

/// [`element_count`] of the dims in `axes`.
pub(crate) fn axes_count(axes: AxisSet, sizes: &[usize]) -> Option<usize> {
    element_count(axes.iter().map(|d| sizes[d.index()]))
}

/// A `Vec` with room for `n` elements, or an [`Error::Alloc`] naming `what`.
pub(crate) fn alloc<T>(n: usize, what: impl FnOnce() -> String) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| Error::Alloc { what: what(), elements: n })?;
    Ok(v)
}

/// The sizes of `axes` in declaration order.
pub(crate) fn shape(axes: AxisSet, sizes: &[usize]) -> Vec<usize> {
    axes.iter().map(|d| sizes[d.index()]).collect()
}

/// The stride of each dim (by dim index) in a dense row-major array over
/// `of` in declaration order; 0 for dims not in `of`.
///
/// Wrapping arithmetic: strides only overflow when some size is 0, and then
/// nothing is ever indexed.
pub(crate) fn dim_strides(of: AxisSet, sizes: &[usize]) -> [usize; 64] {
    let mut by_dim = [0usize; 64];
    let mut acc = 1usize;
    let dims: Vec<usize> = of.iter().map(|d| d.index()).collect();
    for &d in dims.iter().rev() {
        by_dim[d] = acc;
        acc = acc.wrapping_mul(sizes[d]);
    }
    by_dim
}

/// For each axis of `over` (declaration order), its stride in a dense
/// row-major array over `of`, or 0 if `of` lacks it.
pub(crate) fn strides_in(of: AxisSet, over: AxisSet, sizes: &[usize]) -> Vec<usize> {
    let by_dim = dim_strides(of, sizes);
    over.iter().map(|d| by_dim[d.index()]).collect()
}

/// The strides of a row-major array with these sizes (wrapping, as above).
pub(crate) fn row_major_strides(shape: &[usize]) -> Vec<usize> {
    let mut st = vec![0; shape.len()];
    let mut acc = 1usize;
    for i in (0..shape.len()).rev() {
        st[i] = acc;
        acc = acc.wrapping_mul(shape[i]);
    }
    st
}

/// A loop nest writing a dense row-major output of some shape while reading
/// `K` inputs through strides. The innermost (merged) axis is left to the
/// caller as a tight loop: [`Nest::for_each_row`] hands out the inputs'
/// offsets at the start of each row.
pub(crate) struct Nest<const K: usize> {
    /// Total number of output elements.
    len: usize,
    /// Length of the inner loop.
    pub inner: usize,
    /// Each input's stride along the inner loop.
    pub inner_strides: [usize; K],
    /// The outer loops, outermost first: (size, stride of each input).
    outer: Vec<(usize, [usize; K])>,
}

impl<const K: usize> Nest<K> {
    /// The nest over `shape` with input `k` read at `strides[k]` (one stride
    /// per axis of `shape`).
    pub fn new(shape: &[usize], strides: [&[usize]; K]) -> Self {
        let len = element_count(shape.iter().copied()).unwrap_or(0);
        if len == 0 {
            return Nest { len: 0, inner: 0, inner_strides: [0; K], outer: Vec::new() };
        }
        // Built innermost first; an axis merges into the one inside it when
        // every input steps over the inner axis exactly once per step of it.
        let mut axes: Vec<(usize, [usize; K])> = Vec::with_capacity(shape.len());
        for i in (0..shape.len()).rev() {
            if shape[i] == 1 {
                continue;
            }
            let st: [usize; K] = std::array::from_fn(|k| strides[k][i]);
            if let Some((n, inner)) = axes.last_mut() {
                if (0..K).all(|k| st[k] == inner[k] * *n) {
                    *n *= shape[i];
                    continue;
                }
            }
            axes.push((shape[i], st));
        }
        let (inner, inner_strides) = if axes.is_empty() { (1, [0; K]) } else { axes.remove(0) };
        axes.reverse();
        Nest { len, inner, inner_strides, outer: axes }
    }

    /// Calls `row` with each input's offset at the start of every inner
    /// row, in output order.
    pub fn for_each_row(&self, mut row: impl FnMut([usize; K])) {
        if self.len == 0 {
            return;
        }
        let mut idx = vec![0usize; self.outer.len()];
        let mut off = [0usize; K];
        let rows = self.len / self.inner;
        for _ in 0..rows {
            row(off);
            // Odometer step: bump the innermost outer axis, carrying outwards.
            for d in (0..self.outer.len()).rev() {
                let (n, st) = &self.outer[d];
                idx[d] += 1;
                if idx[d] < *n {
                    for k in 0..K {
                        off[k] += st[k];
                    }
                    break;
                }
                idx[d] = 0;
                for k in 0..K {
                    off[k] -= st[k] * (n - 1);
                }
            }
        }
    }
}

/// Appends to `out` the dense row-major array of `shape` whose element at
/// index `i` is `src[offset(i)]`, with `strides` per axis of `shape`:
/// transposes and broadcasts.
pub(crate) fn gather<T: Copy>(src: &[T], shape: &[usize], strides: &[usize], out: &mut Vec<T>) {
    let nest = Nest::new(shape, [strides]);
    let (n, [s]) = (nest.inner, nest.inner_strides);
    nest.for_each_row(|[o]| match s {
        1 => out.extend_from_slice(&src[o..o + n]),
        0 => out.extend(std::iter::repeat_n(src[o], n)),
        _ => out.extend((0..n).map(|i| src[o + i * s])),
    });
}

/// Appends `f(a, b)` over `shape` to `out`, reading `a` and `b` at the given
/// strides per axis of `shape`.
pub(crate) fn zip2<A: Copy, B: Copy, R>(
    shape: &[usize],
    (a, sa): (&[A], &[usize]),
    (b, sb): (&[B], &[usize]),
    out: &mut Vec<R>,
    f: impl Fn(A, B) -> R,
) {
    let nest = Nest::new(shape, [sa, sb]);
    let (n, [ia, ib]) = (nest.inner, nest.inner_strides);
    nest.for_each_row(|[oa, ob]| match (ia, ib) {
        (1, 1) => out.extend(a[oa..oa + n].iter().zip(&b[ob..ob + n]).map(|(&x, &y)| f(x, y))),
        (1, 0) => {
            let y = b[ob];
            out.extend(a[oa..oa + n].iter().map(|&x| f(x, y)))
        }
        (0, 1) => {
            let x = a[oa];
            out.extend(b[ob..ob + n].iter().map(|&y| f(x, y)))
        }
        _ => out.extend((0..n).map(|i| f(a[oa + i * ia], b[ob + i * ib]))),
    });
}

/// Appends `f(a, b, c)` over `shape` to `out`, as [`zip2`].
pub(crate) fn zip3<A: Copy, B: Copy, C: Copy, R>(
    shape: &[usize],
    (a, sa): (&[A], &[usize]),
    (b, sb): (&[B], &[usize]),
    (c, sc): (&[C], &[usize]),
    out: &mut Vec<R>,
    f: impl Fn(A, B, C) -> R,
) {
    let nest = Nest::new(shape, [sa, sb, sc]);
    let (n, [ia, ib, ic]) = (nest.inner, nest.inner_strides);
    nest.for_each_row(|[oa, ob, oc]| match (ia, ib, ic) {
        (1, 1, 1) => {
            let it = a[oa..oa + n].iter().zip(&b[ob..ob + n]).zip(&c[oc..oc + n]);
            out.extend(it.map(|((&x, &y), &z)| f(x, y, z)))
        }
        // `select(mask, x, 0)`, as in dropout.
        (1, 1, 0) => {
            let z = c[oc];
            out.extend(a[oa..oa + n].iter().zip(&b[ob..ob + n]).map(|(&x, &y)| f(x, y, z)))
        }
        _ => out.extend((0..n).map(|i| f(a[oa + i * ia], b[ob + i * ib], c[oc + i * ic]))),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nest_merges_contiguous_axes_and_drops_unit_ones() {
        // Same layout everywhere: one loop.
        let n = Nest::new(&[2, 3, 4], [&[12, 4, 1], &[12, 4, 1]]);
        assert_eq!((n.inner, n.inner_strides, n.outer.len()), (24, [1, 1], 0));
        // A row vector broadcast along the outer axis: two loops.
        let n = Nest::new(&[5, 1, 7], [&[7, 7, 1], &[0, 0, 1]]);
        assert_eq!((n.inner, n.inner_strides), (7, [1, 1]));
        assert_eq!(n.outer, vec![(5, [7, 0])]);
        // No axes at all: one element.
        let n = Nest::<1>::new(&[], [&[]]);
        assert_eq!((n.len, n.inner), (1, 1));
    }

    #[test]
    fn gather_transposes_and_broadcasts() {
        // src is 2x3 row-major; read it as its 3x2 transpose.
        let src = [0, 1, 2, 3, 4, 5];
        let mut out = Vec::new();
        gather(&src, &[3, 2], &[1, 3], &mut out);
        assert_eq!(out, [0, 3, 1, 4, 2, 5]);
        // Broadcast a length-2 vector to 3x2 and to 2x3 (along the inner axis).
        out.clear();
        gather(&[7, 8], &[3, 2], &[0, 1], &mut out);
        assert_eq!(out, [7, 8, 7, 8, 7, 8]);
        out.clear();
        gather(&[7, 8], &[2, 3], &[1, 0], &mut out);
        assert_eq!(out, [7, 7, 7, 8, 8, 8]);
        // Zero-size shapes produce nothing, even with absurd strides.
        out.clear();
        gather(&src, &[0, usize::MAX], &[usize::MAX, 1], &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn element_count_handles_zero_and_overflow() {
        assert_eq!(element_count([2usize, 3]), Some(6));
        assert_eq!(element_count([usize::MAX, usize::MAX, 0]), Some(0));
        assert_eq!(element_count([usize::MAX, 2]), None);
        assert_eq!(element_count(std::iter::empty()), Some(1));
    }
}
