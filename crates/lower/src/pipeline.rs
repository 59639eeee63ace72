//! The lowering pipeline: the passes in order, one line each.
//!
//! Set `NORMJIT_DUMP_PASSES=1` (or [`Options::dump`]) to print the plan
//! after every pass to stderr.

use crate::loopir::*;
use crate::{
    check, flatten, group, hoist, import, order, phases, place, prefetch, split, stores, traffic, vectorize,
    LowerError, Options,
};
use normjit_ir::{AxisSet, Kernel};

/// Lowers `kernel` to a [`Plan`], choosing the schedule for sizes `dims`
/// (by dim index). The plan is correct for any sizes; `dims` only informs
/// choices such as the group, chunk sizes and the traffic model.
pub fn lower(kernel: &Kernel, dims: &[usize], opts: &Options) -> Result<Plan, LowerError> {
    if dims.len() != kernel.dims.len() {
        return Err(LowerError::Dims(format!(
            "kernel `{}` has {} dims, {} sizes given",
            kernel.name,
            kernel.dims.len(),
            dims.len()
        )));
    }
    for (_, t) in kernel.tensors.iter() {
        t.dims
            .iter()
            .try_fold(1usize, |n, d| n.checked_mul(dims[d.index()]))
            .ok_or_else(|| LowerError::Dims(format!("the size of tensor `{}` overflows", t.name)))?;
    }
    let mut p = Plan {
        kernel: kernel.clone(),
        dims: dims.to_vec(),
        order: Vec::new(),
        group: Vec::new(),
        group_split: None,
        nodes: Vec::new(),
        accums: Vec::new(),
        phases: Vec::new(),
        steps: Vec::new(),
        after: Vec::new(),
        traffic: Traffic::default(),
        prefetch: None,
        names: Vec::new(),
        fma: opts.fma,
    };
    let dump = |name: &str, p: &Plan| {
        if opts.dump {
            eprintln!("=== after {name} ===\n{p}");
        }
    };
    // Kernel values become loop-IR values; duplicates merge; reductions become accumulators;
    // `a * b ± c` contracts to fused multiply-adds where the target has them.
    let imported = import::import(kernel, opts.fma);
    (p.nodes, p.accums, p.names) = (imported.nodes, imported.accums, imported.names);
    let stores = imported.stores;
    // Loop in the memory order of the largest tensor.
    p.order = order::reference_order(kernel, dims);
    // Hoist the axes every reduction keeps outermost (or that cross-group reductions reduce over),
    // when that keeps the inner loop contiguous.
    p.group = group::choose_group(kernel, dims, &p.order, &p.nodes, &p.accums, &stores);
    let g = p.group.iter().fold(AxisSet::EMPTY, |s, &d| s.with(d));
    // Costly values that inner loops or later passes would recompute go to scratch arrays.
    let mut stores = stores;
    hoist::hoist(kernel, dims, &p.order, &p.group, &mut p.nodes, &mut p.accums, &mut stores, &mut p.names);
    // Reductions split the group body into passes; fuse those of one level and domain.
    let phased = phases::build(kernel, &p.order, &p.group, &p.nodes, &mut p.accums, &stores);
    (p.phases, p.steps, p.after) = (phased.phases, phased.steps, phased.after);
    dump("phases", &p);
    // Stores to inout tensors wait until the last pass that reads them.
    for steps in [&mut p.steps, &mut p.after] {
        stores::order_inout_stores(kernel, &p.order, g, &p.nodes, &p.accums, &mut p.phases, steps)
            .map_err(LowerError::Unsupported)?;
    }
    phases::compact(&mut p.phases, &mut p.steps, &mut p.after, &mut p.accums);
    phases::finish_accums(kernel, &p.nodes, &mut p.accums, &mut p.phases);
    dump("stores", &p);
    // Each value at the depth of its innermost axis; group values once per group iteration.
    for steps in [&mut p.steps, &mut p.after] {
        place::place(g, &p.nodes, &p.accums, &mut p.phases, steps);
    }
    dump("place", &p);
    // Contiguous innermost loops (BatchNorm's H, W) run as one.
    flatten::flatten(kernel, &p.nodes, &p.accums, &mut p.phases);
    // 4-wide vectors along contiguous inner loops; 4 accumulators for reductions.
    vectorize::vectorize(kernel, &p.nodes, &p.accums, &mut p.phases);
    // Thread chunks that depend only on the sizes.
    p.group_split = split::split(opts.chunk_elems, &p.order, &p.group, &p.accums, &mut p.phases, &p.after);
    dump("vectorize and split", &p);
    // What each pass costs in memory traffic.
    let all_steps: Vec<Step> = p.steps.iter().chain(&p.after).cloned().collect();
    p.traffic = traffic::model(kernel, dims, &p.group, &p.nodes, &p.phases, &all_steps, opts.cache_bytes);
    dump("traffic", &p);
    // The last pass touches the next group iteration's input (no effect on results).
    p.prefetch = prefetch::plan(&p);
    dump("prefetch", &p);
    if cfg!(debug_assertions) || opts.verify {
        check::check(&p).map_err(LowerError::Internal)?;
    }
    Ok(p)
}
