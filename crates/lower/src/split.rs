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

pub fn split(target: usize, order: &[DimId], group: &[DimId], accums: &[Accum], phases: &mut [Phase]) -> Option<Split> {
    if let Some(&axis) = group.first() {
        let inner = order.iter().copied().filter(|&d| d != axis).collect();
        return Some(Split { axis, inner, width: 1, target, partials: Vec::new() });
    }
    for ph in phases.iter_mut() {
        let Some(&axis) = ph.loops.first() else { continue };
        let partials = ph.accums.iter().copied().filter(|a| accums[a.0 as usize].reduced.contains(axis)).collect();
        ph.split = Some(Split { axis, inner: ph.loops[1..].to_vec(), width: ph.width, target, partials });
    }
    None
}
