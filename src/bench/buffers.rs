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
//! Buffers hold their tensor's storage type (f32, bf16 or f16), so a
//! kernel with 16-bit tensors streams half the bytes for them; the
//! placement is the same for every type (a 2-byte buffer also starts on a
//! cache line at its staggered offset).
//!
//! The placement is done safely: each buffer is a `Vec` of its element type
//! over-allocated by just under 4 KiB, exposed from the element whose
//! address has the wanted offset. A `Vec` never moves its storage unless it
//! grows, and these never grow.

use crate::storage::{Elements, View, ViewMut};
use normjit_ir::{DType, Kernel};

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
    storage: Elements,
    start: usize,
    len: usize,
}

impl Buffer {
    /// A zero-filled buffer of `len` elements of `dtype` whose first
    /// element sits at `offset` (a multiple of 64) modulo 4 KiB.
    fn new(len: usize, offset: usize, dtype: DType) -> Buffer {
        let size = dtype.size_bytes();
        let slack = PAGE / size - 1;
        let storage = Elements::zeros(dtype, len + slack);
        // The allocation is aligned to the element size, and so is
        // `offset`: some start in 0..PAGE / size elements puts the first
        // element at it.
        let addr = match storage.view() {
            View::F32(v) => v.as_ptr() as usize,
            View::BF16(v) => v.as_ptr() as usize,
            View::F16(v) => v.as_ptr() as usize,
        };
        let start = (offset + PAGE - addr % PAGE) % PAGE / size;
        Buffer { storage, start, len }
    }
    fn view(&self) -> View<'_> {
        let r = self.start..self.start + self.len;
        match &self.storage {
            Elements::F32(v) => View::F32(&v[r]),
            Elements::BF16(v) => View::BF16(&v[r]),
            Elements::F16(v) => View::F16(&v[r]),
        }
    }
    fn view_mut(&mut self) -> ViewMut<'_> {
        let r = self.start..self.start + self.len;
        match &mut self.storage {
            Elements::F32(v) => ViewMut::F32(&mut v[r]),
            Elements::BF16(v) => ViewMut::BF16(&mut v[r]),
            Elements::F16(v) => ViewMut::F16(&mut v[r]),
        }
    }
    fn get(&self) -> &[f32] {
        match self.view() {
            View::F32(v) => v,
            other => panic!("a {} buffer is not f32", other.dtype().name()),
        }
    }
    fn get_mut(&mut self) -> &mut [f32] {
        match self.view_mut() {
            ViewMut::F32(v) => v,
            other => panic!("a {} buffer is not f32", other.view().dtype().name()),
        }
    }
}

/// A set of buffers for one benchmark, each in its element type, starting
/// at its [`Placement`] offset modulo 4 KiB and 64-byte aligned.
///
/// Every element is written when the set is made (zeros included), so the
/// pages are mapped before anything is timed. The f32 accessors
/// ([`Buffers::get`], [`Buffers::slices`], ...) are for sets of f32
/// buffers, and panic on a 16-bit one; the views work on every type.
#[derive(Debug)]
pub struct Buffers {
    bufs: Vec<Buffer>,
    placement: Placement,
}

impl Buffers {
    /// `lens.len()` f32 buffers of the given lengths, filled with
    /// deterministic values uniform in `[-1, 1)` (a different sequence per
    /// buffer).
    pub fn new(lens: &[usize], placement: Placement) -> Buffers {
        let specs: Vec<(usize, DType)> = lens.iter().map(|&n| (n, DType::F32)).collect();
        Buffers::new_typed(&specs, placement)
    }

    /// One buffer per `(length, type)`, filled as [`Buffers::new`] fills
    /// them, each value rounded to its buffer's type.
    pub fn new_typed(specs: &[(usize, DType)], placement: Placement) -> Buffers {
        let n = specs.len();
        let bufs = specs
            .iter()
            .enumerate()
            .map(|(i, &(len, dtype))| {
                let mut state = 0x5EED_0000_0000_0000 ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                let values: Vec<f32> = (0..len)
                    .map(|_| (splitmix64(&mut state) >> 40) as f32 * (2.0 / (1u64 << 24) as f32) - 1.0)
                    .collect();
                let mut b = Buffer::new(len, placement.offset(i, n), dtype);
                b.view_mut().copy_from(Elements::encode(dtype, &values).view());
                b
            })
            .collect();
        Buffers { bufs, placement }
    }

    /// One f32 buffer per vector, holding a copy of it. Each vector is
    /// dropped as soon as it is copied, so the peak memory is the data plus
    /// one buffer.
    pub fn from_data(data: Vec<Vec<f32>>, placement: Placement) -> Buffers {
        Buffers::from_values(data.into_iter().map(|v| (DType::F32, v)).collect(), placement)
    }

    /// One buffer per `(type, values)`, holding the values stored in the
    /// type (rounded to nearest even: exact for values of the type). Each
    /// vector is dropped as soon as it is stored.
    pub fn from_values(data: Vec<(DType, Vec<f32>)>, placement: Placement) -> Buffers {
        let n = data.len();
        let bufs = data
            .into_iter()
            .enumerate()
            .map(|(i, (dtype, v))| {
                let mut b = Buffer::new(v.len(), placement.offset(i, n), dtype);
                match b.view_mut() {
                    ViewMut::F32(d) => d.copy_from_slice(&v),
                    mut d => d.copy_from(Elements::encode(dtype, &v).view()),
                }
                b
            })
            .collect();
        Buffers { bufs, placement }
    }

    /// One buffer per tensor of `k` (by tensor index), in the tensor's
    /// storage type, with the entry values [`crate::inputs::generate`]
    /// makes for these dims, params (by index, as
    /// [`crate::bind::resolve_params`] gives them) and seed: plausible
    /// values for `in`/`inout` tensors, zeros for `out` ones. The caller has
    /// checked that the sizes do not overflow.
    pub fn for_kernel(k: &Kernel, dims: &[usize], params: &[f64], seed: u64, placement: Placement) -> Buffers {
        let values = crate::inputs::generate(k, dims, params, seed);
        Buffers::from_values(k.tensors.iter().map(|(_, t)| t.dtype).zip(values).collect(), placement)
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

    /// The element type of buffer `i`. Panics if `i >= self.len()`.
    pub fn dtype(&self, i: usize) -> DType {
        self.bufs[i].view().dtype()
    }

    /// Buffer `i` in its type. Panics if `i >= self.len()`.
    pub fn view(&self, i: usize) -> View<'_> {
        self.bufs[i].view()
    }

    /// Buffer `i` in its type, writable. Panics if `i >= self.len()`.
    pub fn view_mut(&mut self, i: usize) -> ViewMut<'_> {
        self.bufs[i].view_mut()
    }

    /// Every buffer in its type, writable, in order (disjoint borrows).
    pub fn views_mut(&mut self) -> Vec<ViewMut<'_>> {
        self.bufs.iter_mut().map(Buffer::view_mut).collect()
    }

    /// The values of buffer `i`, as f32 (exact for every type).
    pub fn values(&self, i: usize) -> Vec<f32> {
        self.bufs[i].view().values()
    }

    /// Buffer `i`. Panics if `i >= self.len()` or it is not f32.
    pub fn get(&self, i: usize) -> &[f32] {
        self.bufs[i].get()
    }

    /// Buffer `i`, writable. Panics if `i >= self.len()` or it is not f32.
    pub fn get_mut(&mut self, i: usize) -> &mut [f32] {
        self.bufs[i].get_mut()
    }

    /// Every buffer, in order. Panics if one is not f32.
    pub fn slices(&self) -> Vec<&[f32]> {
        self.bufs.iter().map(Buffer::get).collect()
    }

    /// Every buffer, writable, in order: the borrows are disjoint, so a
    /// kernel can read some and write others at once. Panics if one is not
    /// f32.
    pub fn slices_mut(&mut self) -> Vec<&mut [f32]> {
        self.bufs.iter_mut().map(Buffer::get_mut).collect()
    }

    /// The start of every buffer, in order, for an executor that takes raw
    /// pointers (the JIT's). They stay valid while `self` lives and is not
    /// otherwise borrowed. Panics if one is not f32.
    pub fn as_mut_ptrs(&mut self) -> Vec<*mut f32> {
        self.bufs.iter_mut().map(|b| b.get_mut().as_mut_ptr()).collect()
    }

    /// The address of buffer `i`'s first element modulo 4096, in bytes.
    pub fn page_offset(&self, i: usize) -> usize {
        let addr = match self.view(i) {
            View::F32(v) => v.as_ptr() as usize,
            View::BF16(v) => v.as_ptr() as usize,
            View::F16(v) => v.as_ptr() as usize,
        };
        addr % PAGE
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_buffers_are_staggered_and_hold_rounded_values() {
        let specs = [(1000, DType::F32), (1000, DType::BF16), (999, DType::F16), (5, DType::BF16)];
        for placement in [Placement::Staggered, Placement::PageAligned] {
            let b = Buffers::new_typed(&specs, placement);
            let f = Buffers::new(&[1000, 1000, 999, 5], placement);
            for (i, &(n, dt)) in specs.iter().enumerate() {
                assert_eq!(b.dtype(i), dt);
                assert_eq!(b.view(i).len(), n);
                assert_eq!(b.page_offset(i), placement.offset(i, specs.len()), "buffer {i}");
                assert_eq!(b.page_offset(i) % LINE, 0);
                // The f32 set's values, rounded to the type.
                let want: Vec<f32> = f.get(i).iter().map(|&x| dt.round_f32(x)).collect();
                assert_eq!(b.values(i), want, "buffer {i}");
            }
        }
        let k = normjit_ir::parse("kernel k {\n dims N\n in x: f32[N]\n out y: f32[N]\n y = x * 2\n}\n").unwrap();
        let k = k.with_storage(&normjit_ir::parse_storage("x=bf16,y=f16").unwrap()).unwrap();
        let b = Buffers::for_kernel(&k, &[10], &[], 0, Placement::Staggered);
        assert_eq!((b.dtype(0), b.dtype(1)), (DType::BF16, DType::F16));
        assert!(b.values(1).iter().all(|&v| v == 0.0));
    }

    #[test]
    #[should_panic(expected = "a bf16 buffer is not f32")]
    fn f32_accessors_refuse_16_bit_buffers() {
        let b = Buffers::new_typed(&[(4, DType::BF16)], Placement::Staggered);
        let _ = b.get(0);
    }
}
