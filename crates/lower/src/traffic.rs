//! Pass `traffic`: the memory-traffic model `explain` and `bench` report.
//!
//! Establishes, per tensor, how many times a call streams it from and to
//! memory. A tensor read by several steps of one group iteration is counted
//! once when the data one group iteration re-reads fits the cache (the
//! slab stays cached between passes), and once per step otherwise. A tensor
//! that does not vary with the group (LayerNorm's `gamma`) is re-read every
//! group iteration; it counts once if it fits the cache. Without a group,
//! each phase streams what it reads, unless the whole tensor fits the cache.
//! Scratch arrays are assumed cached. `min_bytes` counts each tensor the
//! kernel reads once and each it writes once.

use crate::loopir::*;
use normjit_ir::{AxisSet, DimId, Kernel};

fn mib(b: usize) -> String {
    if b < 1 << 20 {
        format!("{:.1} KiB", b as f64 / 1024.0)
    } else {
        format!("{:.2} MiB", b as f64 / (1 << 20) as f64)
    }
}

#[allow(clippy::too_many_arguments)]
pub fn model(
    k: &Kernel,
    dims: &[usize],
    group: &[DimId],
    block: Option<&Block>,
    nodes: &[LNode],
    phases: &[Phase],
    steps: &[Step],
    cache_bytes: usize,
) -> Traffic {
    let g = group.iter().fold(AxisSet::EMPTY, |s, &d| s.with(d));
    let bytes =
        |t: &normjit_ir::Tensor| t.dims.iter().map(|d| dims[d.index()]).product::<usize>() * t.dtype.size_bytes();
    let group_iters: usize = group.iter().map(|d| dims[d.index()]).product();
    // How many steps of a group iteration load each tensor. After
    // `place`, every group-level value is its own Compute step, so a step
    // loads exactly the tensors of its own Load nodes.
    let mut reads_in: Vec<usize> = vec![0; k.tensors.len()];
    let mut stored = vec![false; k.tensors.len()];
    for s in steps {
        let mut loaded = std::collections::BTreeSet::new();
        let mut note_load = |v: LValue| {
            if let LOp::Load(t) = nodes[v.0 as usize].op {
                loaded.insert(t);
            }
        };
        match s {
            Step::Compute(v) => note_load(*v),
            Step::Store(t, _) => stored[t.index()] = true,
            Step::Phase(p) => {
                for &(v, _) in &phases[*p].nodes {
                    note_load(v);
                }
                for (t, _) in &phases[*p].stores {
                    stored[t.index()] = true;
                }
            }
        }
        for t in loaded {
            reads_in[t.index()] += 1;
        }
    }
    // The slab a group iteration re-reads across steps.
    let mut working_set = 0usize;
    if group_iters > 0 && !group.is_empty() {
        for (id, t) in k.tensors.iter() {
            if reads_in[id.index()] > 1 && g.is_subset(t.axes()) {
                working_set += bytes(t) / group_iters;
            }
        }
    }
    // With column blocking, a block's columns of the tensors over its axis
    // play the group iteration's part.
    let blocked = |t: &normjit_ir::Tensor| block.is_some_and(|b| t.axes().contains(b.axis));
    if let Some(b) = block {
        for (id, t) in k.tensors.iter() {
            if reads_in[id.index()] > 1 && blocked(t) {
                working_set += bytes(t) / dims[b.axis.index()].max(1) * b.size;
            }
        }
    }
    let fits = working_set <= cache_bytes;
    let mut out = Traffic { cache_bytes, group_working_set: working_set, ..Traffic::default() };
    for (id, t) in k.tensors.iter() {
        let n = reads_in[id.index()];
        let size = bytes(t);
        let reads = if n == 0 {
            0
        } else if (!group.is_empty() && g.is_subset(t.axes())) || blocked(t) {
            if fits {
                1
            } else {
                n
            }
        } else if size <= cache_bytes {
            1
        } else if !group.is_empty() {
            // Re-streamed every group iteration of the axes it lacks.
            let lacks: usize = group.iter().filter(|d| !t.axes().contains(**d)).map(|d| dims[d.index()]).product();
            n * lacks.max(1)
        } else {
            n
        };
        let writes = usize::from(stored[id.index()]);
        out.bytes_read += (reads * size) as u64;
        out.bytes_written += (writes * size) as u64;
        out.min_bytes += ((usize::from(n > 0) + writes) * size) as u64;
        out.tensors.push(TensorTraffic { reads, writes, phase_reads: vec![n] });
    }
    if let (Some(b), true) = (block, working_set > 0) {
        let (axis, fit) = (&k.dims[b.axis].name, if fits { "stays" } else { "does NOT stay" });
        out.assumptions.push(format!(
            "one block of {} {axis} columns re-reads {} across its passes; it {fit} in a cache of {}",
            b.size,
            mib(working_set),
            mib(cache_bytes)
        ));
    }
    if !group.is_empty() && working_set > 0 {
        out.assumptions.push(if fits {
            format!(
                "one group iteration re-reads {} across its passes; it stays in a cache of {}",
                mib(working_set),
                mib(cache_bytes)
            )
        } else {
            format!(
                "one group iteration re-reads {} across its passes; it does NOT fit in a cache of {}, so each pass re-reads memory",
                mib(working_set),
                mib(cache_bytes)
            )
        });
    }
    let small: Vec<&str> = k
        .tensors
        .iter()
        .filter(|(id, t)| {
            let n = reads_in[id.index()];
            // Read more than once without being partitioned by the group.
            let reread = if group.is_empty() { n > 1 } else { n > 0 && !g.is_subset(t.axes()) };
            reread && bytes(t) <= cache_bytes
        })
        .map(|(_, t)| t.name.as_str())
        .collect();
    if !small.is_empty() {
        out.assumptions.push(format!(
            "re-read tensors that fit the {} cache stay cached: {}",
            mib(cache_bytes),
            small.join(", ")
        ));
    }
    out
}
