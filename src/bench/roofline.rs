//! Stream kernels: the bandwidth ceiling for a pipeline's memory traffic.
//!
//! [`stream_typed`] reads some buffers, updates some in place and writes others,
//! all of one length, with trivial arithmetic: the mean of the values read
//! at each index. With one buffer read and one written it is a copy. A
//! kernel with the same streams, storing the ordinary way, cannot move its
//! bytes faster than this one, so its effective bandwidth over this one's is
//! how close it gets to the machine. (libc's `memcpy` copies large buffers
//! with non-temporal stores, which skip reading the destination first, and
//! so beats this copy at DRAM sizes; neither the JIT nor these kernels
//! use such stores.)
//!
//! In-place streams are separate from read plus write streams because they
//! cost less: a written line must first be read into the cache (read for
//! ownership), unless it is already there because the same loop just read
//! it. AdamW's `p` is an in-place stream; a copy's destination is not.
//!
//! Each stream has its own element type, f32 or 16 bits: a pipeline whose
//! tensors are stored as bf16 or f16 has the same streams with fewer
//! bytes, and its roofline moves the same bytes. A 16-bit element is
//! widened as a bf16 (a shift) and stored truncated (a shift): the
//! cheapest conversions, since the roofline measures bytes, not conversion
//! cost (the values are only made to be used). One loop serves every mix
//! of types, so f32 and narrow rooflines are measured alike. (An f32-only
//! loop that read all streams side by side, element block by element
//! block, moved AdamW's streams at 2^25 elements at 25–34 GB/s where this
//! one moves them at 41–42: it is gone.) The loops run over blocks of
//! vectors, once per (streams summed, streams stored) count, for each ISA.

use super::{multiversion, piece, with_isa, Isa, Lanes};
use crate::storage::{View, ViewMut};
use normjit::half::slice::HalfFloatSliceExt;
use rayon::prelude::*;
use rayon::ThreadPool;

/// Most buffers [`stream_typed`] reads.
pub const MAX_READS: usize = 5;
/// Most buffers [`stream_typed`] updates in place.
pub const MAX_INOUTS: usize = 3;
/// Most buffers [`stream_typed`] writes.
pub const MAX_WRITES: usize = 3;

// ------------------------------------------------- streams of mixed types

/// A stream that is read: f32, or 16-bit elements.
#[derive(Clone, Copy)]
enum Src<'a> {
    F32(&'a [f32]),
    B16(&'a [u16]),
}

/// A stream that is written (or updated in place).
enum Dst<'a> {
    F32(&'a mut [f32]),
    B16(&'a mut [u16]),
}

impl Src<'_> {
    fn len(&self) -> usize {
        match self {
            Src::F32(s) => s.len(),
            Src::B16(s) => s.len(),
        }
    }
}

impl<'a> Dst<'a> {
    fn len(&self) -> usize {
        match self {
            Dst::F32(s) => s.len(),
            Dst::B16(s) => s.len(),
        }
    }
    fn src(&self) -> Src<'_> {
        match self {
            Dst::F32(s) => Src::F32(s),
            Dst::B16(s) => Src::B16(s),
        }
    }
    fn chunks(self, chunk: usize) -> Vec<Dst<'a>> {
        match self {
            Dst::F32(s) => s.chunks_mut(chunk).map(Dst::F32).collect(),
            Dst::B16(s) => s.chunks_mut(chunk).map(Dst::B16).collect(),
        }
    }
}

impl<'a> From<View<'a>> for Src<'a> {
    fn from(v: View<'a>) -> Src<'a> {
        match v {
            View::F32(s) => Src::F32(s),
            View::BF16(s) => Src::B16(s.reinterpret_cast()),
            View::F16(s) => Src::B16(s.reinterpret_cast()),
        }
    }
}

impl<'a> From<ViewMut<'a>> for Dst<'a> {
    fn from(v: ViewMut<'a>) -> Dst<'a> {
        match v {
            ViewMut::F32(s) => Dst::F32(s),
            ViewMut::BF16(s) => Dst::B16(s.reinterpret_cast_mut()),
            ViewMut::F16(s) => Dst::B16(s.reinterpret_cast_mut()),
        }
    }
}

/// Streams once over buffers of any storage type, all of one length `n`:
/// at each index, the mean of the values of `reads` and `inouts` there is
/// stored to every buffer of `inouts` and `writes` (one read and one write:
/// a copy; nothing read: zeros), each moving its own type's bytes. The mean
/// rather than the sum, so that repeated runs keep in-place values in the
/// range they started in. With nothing to store, the values read are
/// summed instead (so the reads cannot be optimized away) and the sum is
/// returned; otherwise the result is 0.
///
/// # Panics
/// If the buffers differ in length, or there are more than
/// [`MAX_READS`], [`MAX_INOUTS`] or [`MAX_WRITES`] of a kind.
pub fn stream_typed(reads: &[View<'_>], inouts: Vec<ViewMut<'_>>, writes: Vec<ViewMut<'_>>) -> f32 {
    let (r, mut u, mut w) = typed(reads, inouts, writes);
    stream_mixed(&r, &mut u, &mut w)
}

/// [`stream_typed`] over f32 buffers.
///
/// # Panics
/// As [`stream_typed`].
pub fn stream(reads: &[&[f32]], inouts: &mut [&mut [f32]], writes: &mut [&mut [f32]]) -> f32 {
    let (r, u, w) = f32_views(reads, inouts, writes);
    stream_typed(&r, u, w)
}

/// [`stream_typed_par`] over f32 buffers.
///
/// # Panics
/// As [`stream_typed`].
pub fn stream_par(pool: &ThreadPool, reads: &[&[f32]], inouts: &mut [&mut [f32]], writes: &mut [&mut [f32]]) -> f32 {
    let (r, u, w) = f32_views(reads, inouts, writes);
    stream_typed_par(pool, &r, u, w)
}

/// f32 buffers as typed views.
#[allow(clippy::type_complexity)]
fn f32_views<'a>(
    reads: &[&'a [f32]],
    inouts: &'a mut [&mut [f32]],
    writes: &'a mut [&mut [f32]],
) -> (Vec<View<'a>>, Vec<ViewMut<'a>>, Vec<ViewMut<'a>>) {
    (
        reads.iter().map(|&s| View::F32(s)).collect(),
        inouts.iter_mut().map(|s| ViewMut::F32(s)).collect(),
        writes.iter_mut().map(|s| ViewMut::F32(s)).collect(),
    )
}

/// [`stream_typed`] with the index range split into one contiguous piece
/// per thread of `pool`; a sum (nothing stored) adds the pieces' sums in
/// order, so it depends on the pool's size but not on scheduling.
///
/// # Panics
/// As [`stream_typed`].
pub fn stream_typed_par(
    pool: &ThreadPool,
    reads: &[View<'_>],
    inouts: Vec<ViewMut<'_>>,
    writes: Vec<ViewMut<'_>>,
) -> f32 {
    let (r, u, w) = typed(reads, inouts, writes);
    let n = mixed_len(&r, &u, &w);
    // 32 elements: a cache line of 16-bit ones, so that two threads write
    // the same line only where an f32 stream's pieces meet mid-line (never:
    // 32 f32s are two whole lines).
    let chunk = piece(n, pool.current_num_threads(), 32);
    let tasks = n.div_ceil(chunk).max(1);
    let mut per_task: Vec<MixedPieces> = (0..tasks).map(|_| (Vec::new(), Vec::new(), Vec::new())).collect();
    for s in &r {
        let parts: Vec<Src> = match *s {
            Src::F32(x) => x.chunks(chunk).map(Src::F32).collect(),
            Src::B16(x) => x.chunks(chunk).map(Src::B16).collect(),
        };
        for (t, c) in per_task.iter_mut().zip(parts) {
            t.0.push(c);
        }
    }
    for d in u {
        for (t, c) in per_task.iter_mut().zip(d.chunks(chunk)) {
            t.1.push(c);
        }
    }
    for d in w {
        for (t, c) in per_task.iter_mut().zip(d.chunks(chunk)) {
            t.2.push(c);
        }
    }
    let isa = Isa::current();
    let sums: Vec<f32> = pool.install(|| {
        per_task.into_par_iter().map(|(r, mut u, mut w)| with_isa(isa, || stream_mixed(&r, &mut u, &mut w))).collect()
    });
    sums.iter().sum()
}

/// One task's pieces of mixed streams.
type MixedPieces<'a> = (Vec<Src<'a>>, Vec<Dst<'a>>, Vec<Dst<'a>>);

/// The streams of each kind, typed.
fn typed<'a>(reads: &[View<'a>], inouts: Vec<ViewMut<'a>>, writes: Vec<ViewMut<'a>>) -> MixedPieces<'a> {
    (
        reads.iter().map(|&v| Src::from(v)).collect(),
        inouts.into_iter().map(Dst::from).collect(),
        writes.into_iter().map(Dst::from).collect(),
    )
}

/// The one length of every mixed stream; panics on a mismatch or too many.
fn mixed_len(reads: &[Src], inouts: &[Dst], writes: &[Dst]) -> usize {
    assert!(
        reads.len() <= MAX_READS && inouts.len() <= MAX_INOUTS && writes.len() <= MAX_WRITES,
        "stream supports at most {MAX_READS} reads, {MAX_INOUTS} in-place and {MAX_WRITES} writes, not {}, {} and {}",
        reads.len(),
        inouts.len(),
        writes.len()
    );
    let lens = reads.iter().map(Src::len).chain(inouts.iter().map(Dst::len)).chain(writes.iter().map(Dst::len));
    let mut n = None;
    for len in lens {
        let first = *n.get_or_insert(len);
        assert_eq!(first, len, "stream buffers differ in length");
    }
    n.unwrap_or(0)
}

/// Elements per block of a stream loop that stores, for streams that fit
/// the caches and for longer ones. Each block's sum is an array the
/// compiler may keep on the stack; measured on the development VM (1
/// thread, copies), 64-element blocks ran at 85–88 GB/s in cache but 20
/// GB/s from DRAM, 16-element blocks at 62 and 22–24, and a plain rustc
/// loop at 25–26 from DRAM. (With one block size, 128 elements, kernels
/// showed up 1.3–1.4x "above the roofline" at DRAM sizes.) Loops that only
/// read keep blocks of the reduction width, for their independent
/// accumulators.
const BLOCK_CACHE: usize = 64;
const BLOCK_DRAM: usize = 16;
/// Elements per stream from which a loop uses [`BLOCK_DRAM`]: 8 MiB of f32.
const DRAM_ELEMS: usize = 1 << 21;

multiversion! {
    /// The loop of [`stream_typed`], for each ISA.
    fn stream_mixed(reads: &[Src<'_>], inouts: &mut [Dst<'_>], writes: &mut [Dst<'_>]) -> f32 => mixed_body
}

#[inline(always)]
fn mixed_body<const FMA: bool, const L: usize>(r: &[Src<'_>], u: &mut [Dst<'_>], w: &mut [Dst<'_>]) -> f32 {
    let n = mixed_len(r, u, w);
    // The number of streams summed and of streams stored, as constants:
    // the per-stream loops unroll; each stream's type is a branch per
    // block, always taken the same way.
    macro_rules! by_stored {
        ($s:literal) => {
            match u.len() + w.len() {
                0 => mixed_run::<L, $s, 0>(r, u, w, n),
                t if n >= DRAM_ELEMS => by_block!(BLOCK_DRAM, $s, t),
                t => by_block!(BLOCK_CACHE, $s, t),
            }
        };
    }
    macro_rules! by_block {
        ($b:expr, $s:literal, $t:expr) => {
            match $t {
                1 => mixed_run::<{ $b }, $s, 1>(r, u, w, n),
                2 => mixed_run::<{ $b }, $s, 2>(r, u, w, n),
                3 => mixed_run::<{ $b }, $s, 3>(r, u, w, n),
                4 => mixed_run::<{ $b }, $s, 4>(r, u, w, n),
                5 => mixed_run::<{ $b }, $s, 5>(r, u, w, n),
                6 => mixed_run::<{ $b }, $s, 6>(r, u, w, n),
                _ => unreachable!("checked by mixed_len"),
            }
        };
    }
    match r.len() + u.len() {
        0 => by_stored!(0),
        1 => by_stored!(1),
        2 => by_stored!(2),
        3 => by_stored!(3),
        4 => by_stored!(4),
        5 => by_stored!(5),
        6 => by_stored!(6),
        7 => by_stored!(7),
        8 => by_stored!(8),
        _ => unreachable!("checked by mixed_len"),
    }
}

/// Summed stream `k`: a read, or after the reads an in-place stream.
#[inline(always)]
fn src_of<'x>(r: &[Src<'x>], u: &'x [Dst<'_>], k: usize) -> Src<'x> {
    if k < r.len() {
        r[k]
    } else {
        u[k - r.len()].src()
    }
}

/// A block of `L` elements of a stream from index `j`, as f32.
#[inline(always)]
fn load<const L: usize>(s: Src<'_>, j: usize) -> [f32; L] {
    match s {
        Src::F32(x) => *<&[f32; L]>::try_from(&x[j..j + L]).expect("a whole block"),
        Src::B16(x) => {
            let q: &[u16; L] = x[j..j + L].try_into().expect("a whole block");
            std::array::from_fn(|l| f32::from_bits(u32::from(q[l]) << 16))
        }
    }
}

/// Element `j` of a stream, as f32.
#[inline(always)]
fn load1(s: Src<'_>, j: usize) -> f32 {
    match s {
        Src::F32(x) => x[j],
        Src::B16(x) => f32::from_bits(u32::from(x[j]) << 16),
    }
}

/// Stores `f(s)` for the block `s` at `j`: truncated to the upper 16 bits
/// in a 16-bit stream. Element by element, not `copy_from_slice`, which
/// would make a memcpy from `s` spilled to the stack.
#[inline(always)]
fn store<const L: usize>(d: &mut Dst<'_>, j: usize, s: &[f32; L], f: impl Fn(f32) -> f32) {
    match d {
        Dst::F32(x) => {
            let q: &mut [f32; L] = (&mut x[j..j + L]).try_into().expect("a whole block");
            for l in 0..L {
                q[l] = f(s[l]);
            }
        }
        Dst::B16(x) => {
            let q: &mut [u16; L] = (&mut x[j..j + L]).try_into().expect("a whole block");
            for l in 0..L {
                q[l] = (f(s[l]).to_bits() >> 16) as u16;
            }
        }
    }
}

/// Stores `v` at `j`: truncated to the upper 16 bits in a 16-bit stream.
#[inline(always)]
fn store1(d: &mut Dst<'_>, j: usize, v: f32) {
    match d {
        Dst::F32(x) => x[j] = v,
        Dst::B16(x) => x[j] = (v.to_bits() >> 16) as u16,
    }
}

/// The loop for `S` streams summed (reads, then in-place) and `T` stored
/// (in-place, then writes); every slice has length `n`.
#[inline(always)]
fn mixed_run<const L: usize, const S: usize, const T: usize>(
    r: &[Src<'_>],
    u: &mut [Dst<'_>],
    w: &mut [Dst<'_>],
    n: usize,
) -> f32 {
    let nu = u.len();
    if T == 0 {
        let mut acc = Lanes::<L>::new();
        let full = n / L * L;
        let mut j = 0;
        while j < full {
            for k in 0..S {
                let q = load::<L>(src_of(r, u, k), j);
                for (a, &x) in acc.0.iter_mut().zip(&q) {
                    *a += x;
                }
            }
            j += L;
        }
        let mut tail = 0.0;
        for j in full..n {
            for k in 0..S {
                tail += load1(src_of(r, u, k), j);
            }
        }
        return acc.total() + tail;
    }
    let scale = 1.0 / S.max(1) as f32;
    let mean = |s: f32| if S > 1 { s * scale } else { s };
    let full = n / L * L;
    let mut j = 0;
    while j < full {
        let mut s = [0.0f32; L];
        for k in 0..S {
            let q = load::<L>(src_of(r, u, k), j);
            if k == 0 {
                s = q;
            } else {
                for l in 0..L {
                    s[l] += q[l];
                }
            }
        }
        for k in 0..T {
            if k < nu {
                store::<L>(&mut u[k], j, &s, mean);
            } else {
                store::<L>(&mut w[k - nu], j, &s, mean);
            }
        }
        j += L;
    }
    for j in full..n {
        let mut s = 0.0;
        for k in 0..S {
            let x = load1(src_of(r, u, k), j);
            s = if k == 0 { x } else { s + x };
        }
        for k in 0..T {
            if k < nu {
                store1(&mut u[k], j, mean(s));
            } else {
                store1(&mut w[k - nu], j, mean(s));
            }
        }
    }
    0.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::{Buffers, Placement};
    use normjit_ir::DType;

    /// Runs `stream_typed` (serially, and on a pool of 3) over fresh
    /// buffers of the given types and returns every buffer's values after.
    fn run(types: &[DType], reads: usize, inouts: usize, n: usize, isa: Isa) -> [Vec<Vec<f32>>; 2] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        [false, true].map(|par| {
            let specs: Vec<(usize, DType)> = types.iter().map(|&d| (n, d)).collect();
            let mut b = Buffers::new_typed(&specs, Placement::Staggered);
            {
                let mut all = b.views_mut().into_iter();
                let rs: Vec<View> = all.by_ref().take(reads).map(ViewMut::into_view).collect();
                let us: Vec<ViewMut> = all.by_ref().take(inouts).collect();
                let ws: Vec<ViewMut> = all.collect();
                with_isa(isa, || if par { stream_typed_par(&pool, &rs, us, ws) } else { stream_typed(&rs, us, ws) });
            }
            (0..types.len()).map(|i| b.values(i)).collect()
        })
    }

    #[test]
    fn mixed_streams_store_the_mean_in_each_type() {
        let (f, h) = (DType::F32, DType::BF16);
        // One bf16 read, an f32 and a bf16 stream in place, a bf16 write.
        let types = [h, f, h, h];
        for n in [0, 1, 37, 1000] {
            let before: Vec<Vec<f32>> = {
                let specs: Vec<(usize, DType)> = types.iter().map(|&d| (n, d)).collect();
                let b = Buffers::new_typed(&specs, Placement::Staggered);
                (0..types.len()).map(|i| b.values(i)).collect()
            };
            for isa in Isa::ALL.into_iter().filter(|i| i.is_available()) {
                let [serial, par] = run(&types, 1, 2, n, isa);
                assert_eq!(serial, par, "n {n}, {}: the pool changes nothing", isa.name());
                for j in 0..n {
                    // The kernel multiplies by the reciprocal.
                    let mean = (before[0][j] + before[1][j] + before[2][j]) * (1.0 / 3.0);
                    // f32 streams store the mean; 16-bit ones its upper
                    // half (truncated), as a bf16.
                    let narrow = f32::from_bits(mean.to_bits() & 0xFFFF_0000);
                    assert_eq!(serial[0][j], before[0][j], "the read stream is unchanged");
                    assert_eq!(serial[1][j], mean, "f32 in place, n {n} j {j}");
                    assert_eq!(serial[2][j], narrow, "bf16 in place, n {n} j {j}");
                    assert_eq!(serial[3][j], narrow, "bf16 write, n {n} j {j}");
                }
            }
        }
    }

    #[test]
    fn a_bf16_copy_widens_and_f32_streams_store_the_mean() {
        let n = 300;
        let [copy, _] = run(&[DType::BF16, DType::F32], 1, 0, n, Isa::current());
        assert_eq!(copy[0], copy[1], "a copy from bf16 to f32 is exact");
        let [f, _] = run(&[DType::F32, DType::F32, DType::F32], 2, 0, n, Isa::current());
        for (j, ((a, b), c)) in f[0].iter().zip(&f[1]).zip(&f[2]).enumerate() {
            assert_eq!(*c, (a + b) * 0.5, "j {j}");
        }
        // Reads only: the sum of every element, 16-bit ones widened.
        let specs = [(n, DType::BF16), (n, DType::F16)];
        let b = Buffers::new_typed(&specs, Placement::Staggered);
        let want: f64 = (0..n)
            .map(|j| {
                f64::from(b.values(0)[j])
                    + f64::from(f32::from_bits(
                        u32::from(match b.view(1) {
                            View::F16(v) => v[j].to_bits(),
                            _ => unreachable!(),
                        }) << 16,
                    ))
            })
            .sum();
        let got = stream_typed(&[b.view(0), b.view(1)], vec![], vec![]);
        assert!((f64::from(got) - want).abs() < 1e-3 * want.abs().max(1.0), "{got} vs {want}");
    }
}
