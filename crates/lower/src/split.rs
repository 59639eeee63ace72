//! Pass `split`: how the outer loop is divided among threads.
//!
//! Establishes: with a group, the outermost group loop is split (group
//! iterations are independent; cross-group reductions keep one partial per
//! chunk), and so is the outer loop of each phase after the group loop.
//! Without a group, each phase's outer loop is;
//! reductions over that loop then keep one partial per chunk, combined in
//! chunk order. Chunk sizes depend only on the sizes ([`CHUNK_ELEMS`]
//! elements of work per chunk), so results are bit-identical for every
//! thread count.

use crate::loopir::*;
use normjit_ir::DimId;

/// Target elements of work per chunk: large enough to amortize scheduling,
/// small enough to balance 2–64 threads on the large sizes.
pub const CHUNK_ELEMS: usize = 1 << 15;

pub fn split(
    target: usize,
    order: &[DimId],
    group: &[DimId],
    accums: &[Accum],
    phases: &mut [Phase],
    after: &[Step],
) -> Option<Split> {
    if let Some(&axis) = group.first() {
        let inner = order.iter().copied().filter(|&d| d != axis).collect();
        let partials: Vec<AccId> = (0..accums.len()).filter(|&a| accums[a].cross).map(|a| AccId(a as u32)).collect();
        let partial_dims = partials.iter().map(|a| accums[a.0 as usize].scratch_dims.clone()).collect();
        // Phases after the group loop reduce nothing: plain splits.
        for s in after {
            if let Step::Phase(p) = s {
                let ph = &mut phases[*p];
                if let Some(&axis) = ph.loops.first() {
                    let inner = ph.loops[1..].to_vec();
                    ph.split = Some(Split {
                        axis,
                        inner,
                        width: ph.width,
                        target,
                        partials: Vec::new(),
                        partial_dims: Vec::new(),
                    });
                }
            }
        }
        return Some(Split { axis, inner, width: 1, target, partials, partial_dims });
    }
    for ph in phases.iter_mut() {
        let Some(&axis) = ph.loops.first() else { continue };
        let partials: Vec<AccId> =
            ph.accums.iter().copied().filter(|a| accums[a.0 as usize].reduced.contains(axis)).collect();
        let partial_dims = partials.iter().map(|a| accums[a.0 as usize].scratch_dims.clone()).collect();
        ph.split = Some(Split { axis, inner: ph.loops[1..].to_vec(), width: ph.width, target, partials, partial_dims });
    }
    None
}
