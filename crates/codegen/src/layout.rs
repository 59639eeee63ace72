//! Where compiled code finds its data: the argument convention shared by
//! every generated function, and the scratch layout the runtime computes
//! for each shape it calls the code with.

use normjit_lower::exec::{cascades, ARRAY_BLOCK_ROWS};
use normjit_lower::{AccId, Plan};

/// What every generated function reads its data through. The runtime fills
/// one per call; the code loads each field once, in its entry block.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Frame {
    /// One base pointer per tensor, by tensor index.
    pub tensors: *const *mut u8,
    /// One 64-bit word per param: f64 bits, or the u32 seed.
    pub params: *const u64,
    /// Each dim's size, by dim index (ignored by code specialized to sizes).
    pub dims: *const i64,
    /// Per accumulator, its offset (in f32s) in the scratch area; then per
    /// accumulator, its offset in a chunk's partial area; then per
    /// accumulator, the offset of its cascade stacks from the same base
    /// ([`Layout::offsets`]).
    pub offsets: *const i64,
    /// With column blocking ([`normjit_lower::Block`]): the columns of this
    /// block, `block_lo..block_hi` of the blocked axis (ignored otherwise).
    pub block_lo: i64,
    /// See `block_lo`.
    pub block_hi: i64,
}

pub(crate) const FRAME_TENSORS: i32 = 0;
pub(crate) const FRAME_PARAMS: i32 = 8;
pub(crate) const FRAME_DIMS: i32 = 16;
pub(crate) const FRAME_OFFSETS: i32 = 24;
pub(crate) const FRAME_BLOCK_LO: i32 = 32;
pub(crate) const FRAME_BLOCK_HI: i32 = 40;
const _: () = assert!(std::mem::size_of::<Frame>() == 48 && std::mem::size_of::<*const u8>() == 8);

/// Signature of every generated function:
/// `(frame, scratch, partial, lo, hi)`.
/// - `frame`: the call's [`Frame`];
/// - `scratch`: the accumulator arrays, at [`Layout::scratch_offset`];
/// - `partial`: this chunk's private copies of the accumulators a split
///   phase reduces over its split axis, at [`Layout::partial_offset`];
/// - `lo..hi`: the range of the split loop this call runs.
pub type EntryFn = unsafe extern "C" fn(*const Frame, *mut f32, *mut f32, i64, i64);

/// Scratch layout of a plan at one set of sizes, in f32 elements.
#[derive(Clone, Debug, PartialEq)]
pub struct Layout {
    /// Offset of each accumulator's array in the scratch area.
    pub scratch_offset: Vec<usize>,
    /// Elements of each accumulator's array.
    pub scratch_len: Vec<usize>,
    /// Total scratch elements.
    pub scratch_total: usize,
    /// Offset of each accumulator in a chunk's partial area of its phase
    /// (`usize::MAX` if its phase keeps no partial of it).
    pub partial_offset: Vec<usize>,
    /// Per phase: elements of one chunk's partial area.
    pub partial_len: Vec<usize>,
    /// Elements of one group chunk's partial area: the cross-group
    /// accumulators and their cascade stacks (0 without them).
    pub group_partial_len: usize,
    /// Offset of each cascaded array accumulator's stacks, in the scratch
    /// area (group plans) or its chunk's partial area (group-less plans, and
    /// cross-group accumulators) (`usize::MAX` if none; see
    /// `Plan::array_cascade`).
    pub levels_offset: Vec<usize>,
    /// [`Frame::offsets`]: `scratch_offset`, `partial_offset`,
    /// `levels_offset` (0 where none), as i64.
    pub offsets: Vec<i64>,
}

impl Layout {
    /// The layout of `plan` at sizes `dims` (by dim index).
    pub fn new(plan: &Plan, dims: &[usize]) -> Layout {
        let mut scratch_offset = Vec::new();
        let mut scratch_len = Vec::new();
        let mut total = 0;
        for a in &plan.accums {
            let n: usize = a.scratch_dims.iter().map(|d| dims[d.index()]).product();
            scratch_offset.push(total);
            scratch_len.push(n);
            total += n;
        }
        // A cascaded array's stacks: as many levels as the pushes of one
        // run of its phase need (none when a run has fewer rows than a
        // block: it never pushes, and its code never touches the stacks).
        let levels = |a: usize| -> usize {
            let ph = &plan.phases[plan.accums[a].phase];
            let k = ph.loops.len();
            let rows: usize = match (&ph.split, &plan.group_split) {
                // A cross-group accumulator counts a row per group iteration.
                (_, Some(gs)) if plan.accums[a].cross => {
                    plan.group()[1..].iter().map(|d| dims[d.index()]).product::<usize>() * gs.chunk(dims)
                }
                (Some(sp), _) if plan.group().is_empty() && k >= 2 => {
                    ph.loops[1..k - 1].iter().map(|d| dims[d.index()]).product::<usize>() * sp.chunk(dims)
                }
                _ => ph.loops[..k.saturating_sub(1)].iter().map(|d| dims[d.index()]).product(),
            };
            if rows < ARRAY_BLOCK_ROWS {
                return 0;
            }
            let pushes = rows.div_ceil(ARRAY_BLOCK_ROWS);
            (usize::BITS - pushes.leading_zeros()) as usize + 1
        };
        let mut levels_offset = vec![usize::MAX; plan.accums.len()];
        if !plan.group().is_empty() {
            for a in 0..plan.accums.len() {
                if plan.array_cascade(AccId(a as u32)) {
                    levels_offset[a] = total;
                    total += scratch_len[a] * levels(a);
                }
            }
        }
        let mut partial_offset = vec![usize::MAX; plan.accums.len()];
        let mut partial_len = Vec::new();
        for ph in &plan.phases {
            let mut len = 0;
            if let Some(s) = &ph.split {
                for &AccId(a) in &s.partials {
                    partial_offset[a as usize] = len;
                    len += scratch_len[a as usize];
                }
                for &AccId(a) in &s.partials {
                    if plan.group().is_empty() && plan.array_cascade(AccId(a)) {
                        levels_offset[a as usize] = len;
                        len += scratch_len[a as usize] * levels(a as usize);
                    }
                }
            }
            partial_len.push(len);
        }
        let mut group_partial_len = 0;
        if let Some(gs) = &plan.group_split {
            for &AccId(a) in &gs.partials {
                partial_offset[a as usize] = group_partial_len;
                group_partial_len += scratch_len[a as usize];
            }
            for &AccId(a) in &gs.partials {
                if cascades(plan.accums[a as usize].op) {
                    levels_offset[a as usize] = group_partial_len;
                    group_partial_len += scratch_len[a as usize] * levels(a as usize);
                }
            }
        }
        let z = |o: &usize| if *o == usize::MAX { 0 } else { *o as i64 };
        let mut offsets: Vec<i64> = scratch_offset.iter().map(|&o| o as i64).collect();
        offsets.extend(partial_offset.iter().map(z));
        offsets.extend(levels_offset.iter().map(z));
        Layout {
            scratch_offset,
            scratch_len,
            scratch_total: total,
            partial_offset,
            partial_len,
            group_partial_len,
            levels_offset,
            offsets,
        }
    }
}
