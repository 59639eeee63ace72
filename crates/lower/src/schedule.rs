//! The schedule: every choice of the lowering that changes how a kernel
//! runs (loop order, group, which passes apply, vector width, unrolls,
//! thread chunks), in one object, chosen by one function.
//!
//! [`choose`] decides the schedule from the kernel, the sizes it is planned
//! for and the target ([`Options`]); the passes of [`crate::pipeline`] then
//! apply it mechanically. Any schedule that [`validate`] accepts gives a
//! correct plan, so tests draw random ones (`lower_with`), and the JIT must
//! stay bit-exact with the loop-IR interpreter under each. Results may
//! differ between schedules: unrolls and chunks set the reduction order,
//! and the group decides whether reductions run in registers or arrays.

use crate::loopir::{Accum, LNode};
use crate::{group, order, LowerError, Options};
use normjit_ir::{AxisSet, DimId, Kernel, TensorId};

/// Lanes of the vectors used: the 128-bit vectors Cranelift lowers on x86-64.
pub const WIDTH: usize = 4;
/// Unroll (= independent accumulators) of register reductions: one
/// accumulator runs at a third of the speed of four (add latency).
pub const REDUCE_UNROLL: usize = 4;
/// Unroll of streaming loops.
pub const STREAM_UNROLL: usize = 2;
/// Largest unroll a schedule may ask for: 16 vector registers hold the
/// accumulators and the values of one round.
pub const MAX_UNROLL: usize = 8;

/// How a kernel runs at the sizes it is planned for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Schedule {
    /// Every dim, outermost loop first.
    pub order: Vec<DimId>,
    /// The group axes, in loop order: they run outermost, and every pass
    /// runs inside one iteration of them. Empty: no group.
    pub group: Vec<DimId>,
    /// Pass `hoist` applies: costly values go to scratch arrays.
    pub hoist: bool,
    /// Pass `flatten` applies: contiguous innermost loops run as one.
    pub flatten: bool,
    /// One-pass statistics: a variance `mean((x - mean(x))^2)` whose kept
    /// axes the group holds is computed from shifted sums, `mean(x - s)`
    /// and `mean((x - s)^2)` with `s` the group iteration's first element
    /// of `x`, in the same pass as the mean (see `import`): LayerNorm and
    /// BatchNorm read their input twice instead of three times. Never
    /// chosen: measured slower on this machine (the third accumulator
    /// halves the unroll, and so doubles the pairwise pushes of every sum:
    /// BatchNorm at 32x64x112x112 took 17 ms against 12.5 ms in two
    /// passes; LayerNorm 256x1024 in cache 78 against 74 us); set it with
    /// [`Overrides`] (`onepass=on`).
    pub onepass: bool,
    /// Inner loops that can be vectorized are, [`WIDTH`] lanes wide.
    pub vectorize: bool,
    /// Unroll of inner loops with register reductions (their number of
    /// independent accumulators), 1..=[`MAX_UNROLL`].
    pub reduce_unroll: usize,
    /// Unroll of the other inner loops, 1..=[`MAX_UNROLL`].
    pub stream_unroll: usize,
    /// Elements of work per thread chunk.
    pub chunk_elems: usize,
    /// Pass `prefetch` applies: the last pass touches the next group
    /// iteration's input.
    pub prefetch: bool,
    /// Pass `block` applies, with this many columns (indices of the
    /// innermost axis) per block: plans without a group whose passes all
    /// loop innermost over that axis run them a block at a time. Never
    /// chosen (measured slower here: see the `block` pass); set it with
    /// [`Overrides`] (`block=64`).
    pub block: Option<usize>,
}

/// What [`choose`] and [`validate`] read of the imported kernel.
pub(crate) struct Imported<'a> {
    pub nodes: &'a [LNode],
    pub accums: &'a [Accum],
    pub stores: &'a [(TensorId, crate::loopir::LValue)],
}

/// The schedule for `kernel` at sizes `dims` on the target of `opts`.
pub(crate) fn choose(kernel: &Kernel, dims: &[usize], opts: &Options, im: &Imported) -> Schedule {
    // Loop in the memory order of the largest tensor.
    let order = order::reference_order(kernel, dims);
    // Hoist the axes every reduction keeps outermost (or that cross-group
    // reductions reduce over), when that keeps the inner loop contiguous.
    let group = group::choose_group(kernel, dims, &order, im.nodes, im.accums, im.stores);
    let prefetch = reads_outweigh_writes(kernel, dims, &group) && streams_from_memory(kernel, dims, opts);
    Schedule {
        order,
        group,
        hoist: true,
        flatten: true,
        // Measured slower here (see `onepass`): opt-in.
        onepass: false,
        vectorize: true,
        reduce_unroll: REDUCE_UNROLL,
        stream_unroll: STREAM_UNROLL,
        chunk_elems: opts.chunk_elems,
        prefetch,
        // Measured slower than re-streaming on this machine (see `block`).
        block: None,
    }
}

/// Whether a group iteration reads more bytes than it writes (of the
/// tensors over the group axes, at sizes `dims`): the case where touching
/// the next iteration's input during the last pass paid off when measured
/// (1 thread, beyond the last-level cache: see [`streams_from_memory`]).
/// LayerNorm and RMSNorm backward (reading `x` and `dy`, writing `dx`)
/// ran 5–9% faster with it; the forward norms and softmax, which write as
/// much as they read, ran 4–15% slower (the touches are loads that take
/// issue slots, and their misses hold up retirement, while the hardware
/// prefetcher already follows one read stream).
fn reads_outweigh_writes(kernel: &Kernel, dims: &[usize], group: &[DimId]) -> bool {
    let g = group.iter().fold(AxisSet::EMPTY, |g, &d| g.with(d));
    let (mut read, mut written) = (0usize, 0usize);
    for (_, t) in kernel.tensors.iter() {
        if !g.is_empty() && g.is_subset(t.axes()) {
            let per_iteration = t.axes().minus(g).iter().fold(1usize, |n, d| n.saturating_mul(dims[d.index()]));
            let size = t.dtype.size_bytes().saturating_mul(per_iteration);
            read = read.saturating_add(if t.role == normjit_ir::Role::Out { 0 } else { size });
            written = written.saturating_add(if t.role.is_written() { size } else { 0 });
        }
    }
    read > written
}

/// Whether the tensors of a call at sizes `dims` take more than the
/// last-level cache, so that its reads come from memory. Touches of data
/// already in cache only cost issue slots: LayerNorm backward at 2048 x
/// 1024 (24 MiB of tensors, in this machine's 32 MiB L3) ran 6% slower
/// with them, and 10% faster at 1024 x 4096 (48 MiB).
fn streams_from_memory(kernel: &Kernel, dims: &[usize], opts: &Options) -> bool {
    let bytes = kernel.tensors.iter().fold(0usize, |b, (_, t)| {
        let n = t.dims.iter().fold(1usize, |n, d| n.saturating_mul(dims[d.index()]));
        b.saturating_add(n.saturating_mul(t.dtype.size_bytes()))
    });
    bytes > opts.llc_bytes
}

/// Checks that `s` is a legal schedule for `kernel`, and puts its group in
/// loop order.
pub(crate) fn validate(kernel: &Kernel, s: &mut Schedule, im: &Imported) -> Result<(), LowerError> {
    let bad = |m: String| Err(LowerError::Schedule(m));
    // Dims the kernel has, as a set (checked before it is made).
    let set = |v: &[DimId]| {
        v.iter().all(|d| d.index() < kernel.dims.len()).then(|| v.iter().fold(AxisSet::EMPTY, |a, &d| a.with(d)))
    };
    let all = set(&kernel.dims.ids().collect::<Vec<_>>());
    if s.order.len() != kernel.dims.len() || set(&s.order) != all {
        return bad(format!("order {:?} is not a permutation of the kernel's dims", s.order));
    }
    let Some(g) = set(&s.group).filter(|g| g.iter().count() == s.group.len()) else {
        return bad(format!("group {:?} repeats a dim or names one the kernel lacks", s.group));
    };
    if !g.is_empty() && !group::legal(kernel, im.nodes, im.accums, im.stores, g) {
        let names = kernel.axis_names(g);
        return bad(format!("group {names}: a reduction neither keeps nor reduces all of it, or a store covers part"));
    }
    s.group = s.order.iter().copied().filter(|d| g.contains(*d)).collect();
    for (what, u) in [("reduce_unroll", s.reduce_unroll), ("stream_unroll", s.stream_unroll)] {
        if !(1..=MAX_UNROLL).contains(&u) {
            return bad(format!("{what} {u} is not in 1..={MAX_UNROLL}"));
        }
    }
    if s.chunk_elems == 0 {
        return bad("chunk_elems is 0".into());
    }
    if s.block == Some(0) {
        return bad("block is 0 columns".into());
    }
    Ok(())
}

impl Schedule {
    /// One line for `explain`: `order N, D; group N; 4-wide, unroll 4
    /// (reductions) 2 (streams); hoist, flatten, prefetch; thread chunks of
    /// 32768 elements of work`; `names` gives each dim's name.
    pub fn describe(&self, names: impl Fn(DimId) -> String) -> String {
        let list = |v: &[DimId]| v.iter().map(|&d| names(d)).collect::<Vec<_>>().join(", ");
        let group = if self.group.is_empty() { "none".to_string() } else { list(&self.group) };
        let width = if self.vectorize { format!("{WIDTH}-wide") } else { "scalar".to_string() };
        let passes: Vec<&str> = [
            ("hoist", self.hoist),
            ("flatten", self.flatten),
            ("one-pass statistics", self.onepass),
            ("prefetch", self.prefetch),
        ]
        .iter()
        .filter(|p| p.1)
        .map(|p| p.0)
        .collect();
        let mut passes = if passes.is_empty() {
            "no hoist, flatten, one-pass statistics or prefetch".to_string()
        } else {
            passes.join(", ")
        };
        if let Some(b) = self.block {
            passes += &format!(", blocks of {b} columns");
        }
        format!(
            "order {}; group {group}; {width}, unroll {} (reductions) {} (streams); {passes}; thread chunks of {} elements of work",
            list(&self.order),
            self.reduce_unroll,
            self.stream_unroll,
            self.chunk_elems
        )
    }
}

/// Changes a user asks for to the schedule [`choose`] makes, in the form
/// `reduce_unroll=8,stream_unroll=4,prefetch=off,group=none`: keys
/// `hoist`, `flatten`, `onepass`, `vectorize`, `prefetch` (`on`/`off`),
/// `reduce_unroll`, `stream_unroll` (1..=[`MAX_UNROLL`]), `chunk_elems`,
/// `group` (`none`, or dim names joined by `+`: `group=N`, `group=N+C`)
/// and `block` (`off`, or columns per block).
/// The result must still be legal for the kernel ([`crate::lower_with`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Overrides {
    /// `hoist=on|off`.
    pub hoist: Option<bool>,
    /// `flatten=on|off`.
    pub flatten: Option<bool>,
    /// `onepass=on|off`.
    pub onepass: Option<bool>,
    /// `vectorize=on|off`.
    pub vectorize: Option<bool>,
    /// `prefetch=on|off`.
    pub prefetch: Option<bool>,
    /// `reduce_unroll=N`.
    pub reduce_unroll: Option<usize>,
    /// `stream_unroll=N`.
    pub stream_unroll: Option<usize>,
    /// `chunk_elems=N`.
    pub chunk_elems: Option<usize>,
    /// `group=none|A+B`: the group's dim names.
    pub group: Option<Vec<String>>,
    /// `block=off|N`: column blocking off, or `N` columns per block.
    pub block: Option<Option<usize>>,
}

impl Overrides {
    /// Parses `key=value,...` (empty: no overrides).
    pub fn parse(spec: &str) -> Result<Overrides, String> {
        let mut o = Overrides::default();
        for kv in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (key, val) = kv.split_once('=').ok_or_else(|| format!("`{kv}`: expected key=value"))?;
            let (key, val) = (key.trim(), val.trim());
            let switch = || match val {
                "on" => Ok(Some(true)),
                "off" => Ok(Some(false)),
                _ => Err(format!("`{kv}`: expected on or off")),
            };
            let number =
                || val.parse::<usize>().map(Some).map_err(|_| format!("`{kv}`: expected a non-negative integer"));
            match key {
                "hoist" => o.hoist = switch()?,
                "flatten" => o.flatten = switch()?,
                "onepass" => o.onepass = switch()?,
                "vectorize" => o.vectorize = switch()?,
                "prefetch" => o.prefetch = switch()?,
                "reduce_unroll" => o.reduce_unroll = number()?,
                "stream_unroll" => o.stream_unroll = number()?,
                "chunk_elems" => o.chunk_elems = number()?,
                "block" if val == "off" => o.block = Some(None),
                "block" => o.block = Some(number()?),
                "group" if val == "none" => o.group = Some(Vec::new()),
                "group" => o.group = Some(val.split('+').map(|d| d.trim().to_string()).collect()),
                _ => {
                    return Err(format!(
                        "unknown schedule key `{key}` (known: hoist, flatten, onepass, vectorize, prefetch, \
                         reduce_unroll, stream_unroll, chunk_elems, group, block)"
                    ))
                }
            }
        }
        Ok(o)
    }

    /// True when nothing is overridden.
    pub fn is_empty(&self) -> bool {
        *self == Overrides::default()
    }

    /// `s` with these overrides applied (dim names resolved in `kernel`).
    pub fn apply(&self, kernel: &Kernel, s: &Schedule) -> Result<Schedule, LowerError> {
        let mut s = s.clone();
        for (field, v) in [
            (&mut s.hoist, self.hoist),
            (&mut s.flatten, self.flatten),
            (&mut s.onepass, self.onepass),
            (&mut s.vectorize, self.vectorize),
            (&mut s.prefetch, self.prefetch),
        ] {
            if let Some(v) = v {
                *field = v;
            }
        }
        for (field, v) in [
            (&mut s.reduce_unroll, self.reduce_unroll),
            (&mut s.stream_unroll, self.stream_unroll),
            (&mut s.chunk_elems, self.chunk_elems),
        ] {
            if let Some(v) = v {
                *field = v;
            }
        }
        if let Some(b) = self.block {
            s.block = b;
        }
        if let Some(names) = &self.group {
            s.group = names
                .iter()
                .map(|n| {
                    kernel.dims.iter().find(|(_, d)| d.name == *n).map(|(id, _)| id).ok_or_else(|| {
                        LowerError::Schedule(format!("group: kernel `{}` has no dim `{n}`", kernel.name))
                    })
                })
                .collect::<Result<_, _>>()?;
        }
        Ok(s)
    }
}
