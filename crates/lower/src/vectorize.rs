//! Pass `vectorize`: vector width and unroll of each phase's inner loop.
//!
//! Establishes: with [`Schedule::vectorize`], a phase is vectorized
//! [`WIDTH`] lanes wide along its innermost loop when every tensor that
//! loop touches has that axis as its contiguous last dim, and every random
//! value numbers its elements consecutively along it. Phases with a
//! register reduction unroll by [`Schedule::reduce_unroll`] (as many
//! independent vector accumulators per reduction), but at most
//! [`ACC_VECTORS`] accumulators in all (so a pass with three reductions,
//! such as one-pass statistics, unrolls by 2); the others by
//! [`Schedule::stream_unroll`]. (Not less for short loops: the schedule
//! would then depend on the sizes, and one compilation should serve every
//! shape. `flatten` lengthens the short loops that can be.)

use crate::loopir::*;
use crate::schedule::{Schedule, WIDTH};
use normjit_ir::{AxisSet, Kernel};

/// Vector accumulators a pass keeps in registers, at most (when its
/// reductions are unrolled less than [`Schedule::reduce_unroll`]): with the
/// shift, the loaded value and the temporaries of one round they fill the
/// 16 vector registers Cranelift allocates on x86-64. One-pass LayerNorm
/// statistics with 3 x 4 accumulators spilled 6 of them to the stack in
/// the loop, and ran 30% slower than two passes.
pub const ACC_VECTORS: usize = 8;

pub fn vectorize(s: &Schedule, k: &Kernel, nodes: &[LNode], accums: &[Accum], phases: &mut [Phase]) {
    for ph in phases.iter_mut() {
        let Some(&inner) = ph.loops.last() else { continue };
        let depth = ph.loops.len();
        let contiguous = |axes: AxisSet, last: Option<normjit_ir::DimId>| !axes.contains(inner) || last == Some(inner);
        let mut ok = ph.stores.iter().all(|(t, _)| k.tensors[*t].dims.last() == Some(&inner));
        for &(v, d) in &ph.nodes {
            if d != depth {
                continue;
            }
            let n = &nodes[v.0 as usize];
            ok &= match &n.op {
                LOp::Load(t) => contiguous(k.tensors[*t].axes(), k.tensors[*t].dims.last().copied()),
                LOp::Uniform(_, ax, _) => contiguous(*ax, ax.iter().last()),
                // Scratch arrays are laid out in phase loop order.
                _ => true,
            };
        }
        let registers = ph.accums.iter().filter(|a| accums[a.0 as usize].flush_depth < depth).count();
        ph.width = if ok && s.vectorize { WIDTH } else { 1 };
        ph.unroll = match registers {
            0 => s.stream_unroll,
            k => s.reduce_unroll.min((ACC_VECTORS / k).max(1)),
        };
    }
}
