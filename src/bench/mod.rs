//! What `normjit bench` measures the JIT against, on the same buffers:
//!
//! - [`reference`](mod@reference): hand-fused kernels compiled by rustc,
//!   one per library pipeline, written the way a good engineer would
//!   (two-pass statistics, several accumulators, FMA where the ISA has it);
//! - [`roofline`]: stream kernels with a pipeline's read and write streams
//!   (each in its tensor's storage type: f32, or 16 bits for bf16 and f16)
//!   and trivial arithmetic, whose bandwidth is what any kernel with those
//!   streams can hope for on this machine;
//! - [`buffers`]: the buffers both run on, in each tensor's storage type,
//!   staggered within the 4 KiB page so that 4K aliasing does not halve
//!   everyone's bandwidth (or, on request, page-aligned to show what it
//!   costs);
//! - [`report`]: the table, JSON and chart of a run, with bytes counted in
//!   each tensor's type and elements per second to compare storage types.
//!
//! Both kernel modules are multiversioned: each kernel is compiled for
//! AVX-512F, for AVX2+FMA and for the crate's baseline target, and the best
//! one the CPU supports is picked at run time ([`with_isa`] picks another).
//! Each also has a variant that splits the work across a given rayon pool,
//! for all-cores measurements.

pub mod buffers;
pub mod reference;
pub mod report;
pub mod roofline;

pub use buffers::{Buffers, Placement};

use std::cell::Cell;

/// An instruction set the kernels here are compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Isa {
    /// x86-64 AVX-512F (with FMA): 512-bit vectors.
    Avx512,
    /// x86-64 AVX2 with FMA: 256-bit vectors.
    Avx2Fma,
    /// The crate's baseline target (SSE2 on x86-64): 128-bit vectors, no
    /// FMA, like the JIT's `F32X4` code.
    Baseline,
}

thread_local! {
    /// The ISA [`with_isa`] forces on this thread; only ever an available one.
    static FORCED: Cell<Option<Isa>> = const { Cell::new(None) };
}

impl Isa {
    /// Every ISA, best first.
    pub const ALL: [Isa; 3] = [Isa::Avx512, Isa::Avx2Fma, Isa::Baseline];

    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "avx512",
            Isa::Avx2Fma => "avx2+fma",
            Isa::Baseline => "baseline",
        }
    }

    /// True if this CPU can run code compiled for it.
    pub fn is_available(self) -> bool {
        match self {
            Isa::Baseline => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => Isa::Avx2Fma.is_available() && std::arch::is_x86_feature_detected!("avx512f"),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The best ISA this CPU has, or the one `NORMJIT_RUSTC_ISA` names
    /// (`avx512`, `avx2+fma`, `baseline`) when this CPU has it: to tell
    /// the vector width apart from the code, run the references at the
    /// JIT's 128 bits (`baseline`).
    /// Decided once per process: every reference kernel's dispatch asks.
    pub fn best() -> Isa {
        static BEST: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
        *BEST.get_or_init(|| {
            let forced = std::env::var("NORMJIT_RUSTC_ISA").ok();
            let named = Isa::ALL.into_iter().find(|i| forced.as_deref() == Some(i.name()) && i.is_available());
            named.unwrap_or_else(|| Isa::ALL.into_iter().find(|i| i.is_available()).unwrap_or(Isa::Baseline))
        })
    }

    /// The ISA the kernels run on this thread: the one [`with_isa`] forces,
    /// else [`Isa::best`]. Always an available one.
    pub fn current() -> Isa {
        FORCED.get().unwrap_or_else(Isa::best)
    }
}

/// Runs `f` with the kernels of this module on `isa` instead of the best
/// one, on this thread and in the pools the `_par` variants it calls use;
/// for comparing ISAs and testing every variant.
///
/// # Panics
/// If this CPU does not have `isa`.
pub fn with_isa<R>(isa: Isa, f: impl FnOnce() -> R) -> R {
    assert!(isa.is_available(), "this CPU cannot run {} code", isa.name());
    /// Restores the previous choice, also when `f` panics.
    struct Restore(Option<Isa>);
    impl Drop for Restore {
        fn drop(&mut self) {
            FORCED.set(self.0);
        }
    }
    let _restore = Restore(FORCED.replace(Some(isa)));
    f()
}

/// Defines a safe function `$name` that runs `$body::<FMA, LANES>` compiled
/// for [`Isa::current`]: AVX-512F (FMA, 128 lanes), AVX2 + FMA (FMA, 64
/// lanes) or the crate's baseline target (plain multiply-add, 32 lanes).
/// `$body` is an `#[inline(always)]` generic function, so each variant gets
/// its own copy, vectorized by LLVM for that ISA. `LANES` is the number of
/// independent accumulators a reduction keeps: eight vector registers' worth
/// on every ISA, enough to hide the add latency.
macro_rules! multiversion {
    (
        $(#[$attr:meta])*
        $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? => $body:ident
    ) => {
        $(#[$attr])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx2,fma")]
            fn avx512($($arg: $ty),*) $(-> $ret)? {
                $body::<true, 128>($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            fn avx2($($arg: $ty),*) $(-> $ret)? {
                $body::<true, 64>($($arg),*)
            }
            match $crate::bench::Isa::current() {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `Isa::current` only returns an ISA this CPU has,
                // and `Avx512` means AVX-512F, AVX2 and FMA.
                $crate::bench::Isa::Avx512 => unsafe { avx512($($arg),*) },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: as above; `Avx2Fma` means AVX2 and FMA.
                $crate::bench::Isa::Avx2Fma => unsafe { avx2($($arg),*) },
                _ => $body::<false, 32>($($arg),*),
            }
        }
    };
}
pub(crate) use multiversion;

/// `a * b + c`: one fused, singly rounded operation when the variant has FMA
/// (without it `mul_add` would be a slow library call).
#[inline(always)]
fn fmadd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// `L` independent partial results of a reduction, one per lane, so that
/// LLVM can keep them in vector registers without reassociating anything.
struct Lanes<const L: usize>([f32; L]);

impl<const L: usize> Lanes<L> {
    #[inline(always)]
    fn new() -> Self {
        Lanes([0.0; L])
    }

    /// `acc = f(acc, x)` for every `x` of `xs`, element `i` into lane
    /// `i % L`.
    #[inline(always)]
    fn feed(&mut self, xs: &[f32], f: impl Fn(f32, f32) -> f32) {
        let chunks = xs.chunks_exact(L);
        let tail = chunks.remainder();
        for c in chunks {
            for (a, &x) in self.0.iter_mut().zip(c) {
                *a = f(*a, x);
            }
        }
        for (a, &x) in self.0.iter_mut().zip(tail) {
            *a = f(*a, x);
        }
    }

    /// Every lane `c`: the identity of a reduction other than a sum (`-inf`
    /// for a maximum).
    #[inline(always)]
    fn splat(c: f32) -> Self {
        Lanes([c; L])
    }

    /// The lanes added up, pairwise.
    #[inline(always)]
    fn total(self) -> f32 {
        self.reduce(|a, b| a + b)
    }

    /// The lanes combined with `f`, pairwise: lane `l` with lane `l + w`
    /// for halving `w`, as [`Lanes::total`] adds them.
    #[inline(always)]
    fn reduce(mut self, f: impl Fn(f32, f32) -> f32) -> f32 {
        let mut w = L;
        while w > 1 {
            w /= 2;
            for l in 0..w {
                self.0[l] = f(self.0[l], self.0[l + w]);
            }
        }
        self.0[0]
    }
}

/// The length of each of `parts` contiguous pieces of `n` units, rounded up
/// to a multiple of `align` units (a cache line of f32s, so that two threads
/// never write the same line), and never 0 (chunking by 0 panics).
fn piece(n: usize, parts: usize, align: usize) -> usize {
    let per = n.div_ceil(parts.max(1));
    (per.div_ceil(align) * align).max(align)
}
