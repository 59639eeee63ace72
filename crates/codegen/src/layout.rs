//! Where compiled code finds its data: the argument convention shared by
//! every generated function, and the scratch layout shared with the
//! runtime that calls them.

use normjit_lower::{AccId, Plan};

/// Signature of every generated function:
/// `(tensors, params, scratch, partial, lo, hi)`.
/// - `tensors`: one base pointer per tensor, by tensor index;
/// - `params`: one 32-bit word per param (f32 bits, or the u32 seed);
/// - `scratch`: the accumulator arrays, at [`Layout::scratch_offset`];
/// - `partial`: this chunk's private copies of the accumulators a split
///   phase reduces over its split axis, at [`Layout::partial_offset`];
/// - `lo..hi`: the range of the split loop this call runs.
pub type EntryFn = unsafe extern "C" fn(*const *mut f32, *const u32, *mut f32, *mut f32, i64, i64);

/// Scratch layout of a plan, in f32 elements, for the sizes it was
/// compiled for.
#[derive(Clone, Debug, PartialEq)]
pub struct Layout {
    /// Offset of each accumulator's array in the scratch area.
    pub scratch_offset: Vec<usize>,
    /// Elements of each accumulator's array.
    pub scratch_len: Vec<usize>,
    /// Total scratch elements.
    pub scratch_total: usize,
    /// Per phase: offset of each of its partial accumulators in a chunk's
    /// partial area (indexed by accumulator; `usize::MAX` if not partial).
    pub partial_offset: Vec<Vec<usize>>,
    /// Per phase: elements of one chunk's partial area.
    pub partial_len: Vec<usize>,
}

impl Layout {
    /// The layout of `plan`.
    pub fn new(plan: &Plan) -> Layout {
        let mut scratch_offset = Vec::new();
        let mut scratch_len = Vec::new();
        let mut total = 0;
        for a in &plan.accums {
            let n = plan.extent(a.scratch_dims.iter().copied());
            scratch_offset.push(total);
            scratch_len.push(n);
            total += n;
        }
        let mut partial_offset = Vec::new();
        let mut partial_len = Vec::new();
        for ph in &plan.phases {
            let mut offs = vec![usize::MAX; plan.accums.len()];
            let mut len = 0;
            if let Some(s) = &ph.split {
                for &AccId(a) in &s.partials {
                    offs[a as usize] = len;
                    len += scratch_len[a as usize];
                }
            }
            partial_offset.push(offs);
            partial_len.push(len);
        }
        Layout { scratch_offset, scratch_len, scratch_total: total, partial_offset, partial_len }
    }
}
