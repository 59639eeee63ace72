//! Pass `split`: how the outer loop is divided among threads.
//!
//! Establishes: with a group, the outermost group loop is split (group
//! iterations are independent). Without one, each phase's outer loop is;
//! reductions over that loop then keep one partial per chunk, combined in
//! chunk order. Chunk sizes depend only on the sizes ([`CHUNK_ELEMS`]
//! elements of work per chunk), so results are bit-identical for every
//! thread count.

use crate::loopir::*;
use normjit_ir::DimId;

/// Target elements of work per chunk: large enough to amortize scheduling,
/// small enough to balance 2–64 threads on the large sizes.
pub const CHUNK_ELEMS: usize = 1 << 15;

fn chunk_for(target: usize, dims: &[usize], axis: DimId, inner: impl Iterator<Item = DimId>, width: usize) -> usize {
    let per_iter: usize = inner.map(|d| dims[d.index()]).product::<usize>().max(1);
    let mut chunk = target.div_ceil(per_iter).max(1);
    // A split innermost loop keeps whole vectors per chunk.
    if per_iter == 1 && width > 1 {
        chunk = chunk.next_multiple_of(64);
    }
    chunk.min(dims[axis.index()].max(1))
}

pub fn split(
    target: usize,
    dims: &[usize],
    order: &[DimId],
    group: &[DimId],
    accums: &[Accum],
    phases: &mut [Phase],
) -> Option<Split> {
    if let Some(&axis) = group.first() {
        let inner = order.iter().copied().filter(|&d| d != axis);
        return Some(Split { axis, chunk: chunk_for(target, dims, axis, inner, 1), partials: Vec::new() });
    }
    for ph in phases.iter_mut() {
        let Some(&axis) = ph.loops.first() else { continue };
        let partials = ph.accums.iter().copied().filter(|a| accums[a.0 as usize].reduced.contains(axis)).collect();
        let chunk = chunk_for(target, dims, axis, ph.loops[1..].iter().copied(), ph.width);
        ph.split = Some(Split { axis, chunk, partials });
    }
    None
}
