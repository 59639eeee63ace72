//! Benchmark buffers placed at chosen offsets within a 4 KiB page.
//!
//! Why placement matters: to run loads ahead of older stores, the CPU
//! guesses whether a load depends on an in-flight store by comparing only
//! address bits 11:0. A load whose address equals an older store's modulo
//! 4 KiB is held back ("4K aliasing") until the full addresses are checked,
//! although the two touch different memory. In a streaming loop over index
//! `j`, a load from buffer `a` collides with the stores to buffer `b` that
//! lie `d` bytes back in `b`'s stream, where `d` is the distance from `a`'s
//! page offset up to `b`'s, modulo 4 KiB: with `d = 0` (equal offsets) the
//! stores of the same iteration, which compilers freely place before some
//! of its loads; with small `d` those of the last few iterations, still in
//! flight. Exact 2^k-byte allocations all start at the same page offset (the
//! allocator hands out fresh pages plus a fixed header), which is the worst
//! case: AdamW at 2^25 elements was measured to drop from ~40 to 12 GB/s
//! that way on a Zen 4 machine.
//!
//! [`Placement::Staggered`] therefore spreads the buffers of one set evenly
//! over the page, and [`Placement::PageAligned`] puts every buffer at page
//! offset 0, to show what aliasing costs. In both, every buffer starts on a
//! 64-byte cache line, so the two differ in aliasing only and never in
//! split-line vector loads.
//!
//! The placement is done safely: each buffer is a `Vec<f32>` over-allocated
//! by just under 4 KiB, exposed from the element whose address has the wanted
//! offset. A `Vec` never moves its storage unless it grows, and these never
//! grow.

use normjit_ir::Kernel;

/// Bytes in the window addresses alias within.
pub const PAGE: usize = 4096;
/// Cache-line size: every buffer starts on a multiple of it.
pub const LINE: usize = 64;

/// Where the buffers of a set start within a 4 KiB page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Placement {
    /// Buffer `i` of `n` starts at page offset `i * stride`, with `stride`
    /// the largest multiple of 64 bytes not above `4096 / n`. Evenly spread
    /// offsets make the smallest distance `d` (see the module doc) between
    /// any two buffers, in either order, as large as it can be: `stride`
    /// bytes, e.g. 1024 for four streams. (A fixed stride such as 1088 would
    /// keep offsets distinct too, but bring the fifth buffer within 256
    /// bytes of the first.) Distinct for up to 64 buffers; beyond that they
    /// wrap around.
    Staggered,
    /// Every buffer starts at page offset 0, as exact 2^k-byte allocations
    /// do: the aliasing worst case, for comparison.
    PageAligned,
}

impl Placement {
    /// The page offset, in bytes, of buffer `i` of a set of `n`.
    pub fn offset(self, i: usize, n: usize) -> usize {
        match self {
            Placement::PageAligned => 0,
            Placement::Staggered => {
                let stride = (PAGE / n.max(1) / LINE * LINE).max(LINE);
                i * stride % PAGE
            }
        }
    }
}

/// One buffer: `len` elements of `storage` starting at `start`.
#[derive(Debug)]
struct Buffer {
    storage: Vec<f32>,
    start: usize,
    len: usize,
}

impl Buffer {
    /// A zero-filled buffer of `len` elements whose first element sits at
    /// `offset` (a multiple of 4) modulo 4 KiB.
    fn new(len: usize, offset: usize) -> Buffer {
        const SLACK: usize = PAGE / 4 - 1;
        let storage = vec![0.0f32; len + SLACK];
        // The allocation of an f32 array is 4-aligned, and so is `offset`:
        // some start in 0..1024 elements puts the first element at it.
        let addr = storage.as_ptr() as usize;
        let start = (offset + PAGE - addr % PAGE) % PAGE / 4;
        Buffer { storage, start, len }
    }
    fn get(&self) -> &[f32] {
        &self.storage[self.start..self.start + self.len]
    }
    fn get_mut(&mut self) -> &mut [f32] {
        &mut self.storage[self.start..self.start + self.len]
    }
}

/// A set of f32 buffers for one benchmark, each starting at its
/// [`Placement`] offset modulo 4 KiB and 64-byte aligned.
///
/// Every element is written when the set is made (zeros included), so the
/// pages are mapped before anything is timed.
#[derive(Debug)]
pub struct Buffers {
    bufs: Vec<Buffer>,
    placement: Placement,
}

impl Buffers {
    /// `lens.len()` buffers of the given lengths, filled with deterministic
    /// values uniform in `[-1, 1)` (a different sequence per buffer).
    pub fn new(lens: &[usize], placement: Placement) -> Buffers {
        let n = lens.len();
        let bufs = lens
            .iter()
            .enumerate()
            .map(|(i, &len)| {
                let mut b = Buffer::new(len, placement.offset(i, n));
                let mut state = 0x5EED_0000_0000_0000 ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                for x in b.get_mut() {
                    *x = (splitmix64(&mut state) >> 40) as f32 * (2.0 / (1u64 << 24) as f32) - 1.0;
                }
                b
            })
            .collect();
        Buffers { bufs, placement }
    }

    /// One buffer per vector, holding a copy of it. Each vector is dropped
    /// as soon as it is copied, so the peak memory is the data plus one
    /// buffer.
    pub fn from_data(data: Vec<Vec<f32>>, placement: Placement) -> Buffers {
        let n = data.len();
        let bufs = data
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                let mut b = Buffer::new(v.len(), placement.offset(i, n));
                b.get_mut().copy_from_slice(&v);
                b
            })
            .collect();
        Buffers { bufs, placement }
    }

    /// One buffer per tensor of `k` (by tensor index), with the entry
    /// values [`crate::inputs::generate`] makes for these dims, params (by
    /// index, as [`crate::bind::resolve_params`] gives them) and seed:
    /// plausible values for `in`/`inout` tensors, zeros for `out` ones.
    /// The caller has checked that the sizes do not overflow.
    pub fn for_kernel(k: &Kernel, dims: &[usize], params: &[f64], seed: u64, placement: Placement) -> Buffers {
        Buffers::from_data(crate::inputs::generate(k, dims, params, seed), placement)
    }

    /// Number of buffers.
    pub fn len(&self) -> usize {
        self.bufs.len()
    }

    /// True if the set has no buffers.
    pub fn is_empty(&self) -> bool {
        self.bufs.is_empty()
    }

    /// How the buffers were placed.
    pub fn placement(&self) -> Placement {
        self.placement
    }

    /// Buffer `i`. Panics if `i >= self.len()`.
    pub fn get(&self, i: usize) -> &[f32] {
        self.bufs[i].get()
    }

    /// Buffer `i`, writable. Panics if `i >= self.len()`.
    pub fn get_mut(&mut self, i: usize) -> &mut [f32] {
        self.bufs[i].get_mut()
    }

    /// Every buffer, in order.
    pub fn slices(&self) -> Vec<&[f32]> {
        self.bufs.iter().map(Buffer::get).collect()
    }

    /// Every buffer, writable, in order: the borrows are disjoint, so a
    /// kernel can read some and write others at once.
    pub fn slices_mut(&mut self) -> Vec<&mut [f32]> {
        self.bufs.iter_mut().map(Buffer::get_mut).collect()
    }

    /// The start of every buffer, in order, for an executor that takes raw
    /// pointers (the JIT's). They stay valid while `self` lives and is not
    /// otherwise borrowed.
    pub fn as_mut_ptrs(&mut self) -> Vec<*mut f32> {
        self.bufs.iter_mut().map(|b| b.get_mut().as_mut_ptr()).collect()
    }

    /// The address of buffer `i`'s first element modulo 4096, in bytes.
    pub fn page_offset(&self, i: usize) -> usize {
        self.get(i).as_ptr() as usize % PAGE
    }
}

/// The splitmix64 generator: one step.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
