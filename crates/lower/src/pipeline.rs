//! The lowering pipeline: the passes in order, one line each.
//!
//! Set `NORMJIT_DUMP_PASSES=1` (or [`Options::dump`]) to print the plan
//! after every pass to stderr.

use crate::loopir::*;
use crate::schedule::{self, Imported, Schedule};
use crate::{
    block, check, flatten, hoist, import, onepass, phases, place, prefetch, split, stores, traffic, vectorize,
};
use crate::{LowerError, Options};
use normjit_ir::{AxisSet, Kernel};

/// Lowers `kernel` to a [`Plan`] with the schedule [`schedule`] chooses
/// for sizes `dims` (by dim index). The plan is correct for any sizes;
/// `dims` only inform the schedule and the traffic model.
pub fn lower(kernel: &Kernel, dims: &[usize], opts: &Options) -> Result<Plan, LowerError> {
    lower_impl(kernel, dims, opts, None)
}

/// The schedule [`lower`] uses for `kernel` at sizes `dims`: the one
/// chosen for them, with [`Options::schedule`]'s overrides applied.
pub fn schedule(kernel: &Kernel, dims: &[usize], opts: &Options) -> Result<Schedule, LowerError> {
    check_dims(kernel, dims)?;
    let imported = import::import(kernel, opts.fma, &[]);
    let im = Imported { nodes: &imported.nodes, accums: &imported.accums, stores: &imported.stores };
    overridden(kernel, dims, opts, &im)
}

/// The chosen schedule with the overrides of `opts` applied and checked.
fn overridden(kernel: &Kernel, dims: &[usize], opts: &Options, im: &Imported) -> Result<Schedule, LowerError> {
    let chosen = schedule::choose(kernel, dims, opts, im);
    if opts.schedule.is_empty() {
        return Ok(chosen);
    }
    let mut s = opts.schedule.apply(kernel, &chosen)?;
    schedule::validate(kernel, &mut s, im)?;
    Ok(s)
}

/// Lowers `kernel` with the given schedule (any schedule that is legal for
/// the kernel, else [`LowerError::Schedule`]; [`Options::schedule`] is not
/// applied): for tests, which draw random ones, and for experiments.
pub fn lower_with(kernel: &Kernel, dims: &[usize], opts: &Options, s: &Schedule) -> Result<Plan, LowerError> {
    lower_impl(kernel, dims, opts, Some(s))
}

fn check_dims(kernel: &Kernel, dims: &[usize]) -> Result<(), LowerError> {
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
    Ok(())
}

fn lower_impl(kernel: &Kernel, dims: &[usize], opts: &Options, given: Option<&Schedule>) -> Result<Plan, LowerError> {
    check_dims(kernel, dims)?;
    // Kernel values become loop-IR values; duplicates merge; reductions become accumulators;
    // `a * b ± c` contracts to fused multiply-adds where the target has them.
    let imported = import::import(kernel, opts.fma, &[]);
    let im = Imported { nodes: &imported.nodes, accums: &imported.accums, stores: &imported.stores };
    // The schedule: loop order, group, passes, widths, unrolls, chunks.
    let sched = match given {
        Some(s) => {
            let mut s = s.clone();
            schedule::validate(kernel, &mut s, &im)?;
            s
        }
        None => overridden(kernel, dims, opts, &im)?,
    };
    let g = sched.group.iter().fold(AxisSet::EMPTY, |s, &d| s.with(d));
    // Variances whose statistics the group holds: from shifted sums, in the mean's pass.
    let imported = if sched.onepass {
        let pairs = onepass::pairs(kernel, g);
        if pairs.is_empty() {
            imported
        } else {
            import::import(kernel, opts.fma, &pairs)
        }
    } else {
        imported
    };
    let mut p = Plan {
        kernel: kernel.clone(),
        dims: dims.to_vec(),
        group_split: None,
        nodes: Vec::new(),
        accums: Vec::new(),
        phases: Vec::new(),
        steps: Vec::new(),
        after: Vec::new(),
        traffic: Traffic::default(),
        prefetch: None,
        block: None,
        names: Vec::new(),
        fma: opts.fma,
        schedule: sched,
    };
    let dump = |name: &str, p: &Plan| {
        if opts.dump {
            eprintln!("=== after {name} ===\n{p}");
        }
    };
    (p.nodes, p.accums, p.names) = (imported.nodes, imported.accums, imported.names);
    let mut stores = imported.stores;
    // Costly values that inner loops or later passes would recompute go to scratch arrays.
    if p.schedule.hoist {
        hoist::hoist(
            kernel,
            dims,
            &p.schedule.order,
            &p.schedule.group,
            &mut p.nodes,
            &mut p.accums,
            &mut stores,
            &mut p.names,
        );
    }
    // Reductions split the group body into passes; fuse those of one level and domain.
    let phased = phases::build(kernel, &p.schedule.order, &p.schedule.group, &p.nodes, &mut p.accums, &stores);
    (p.phases, p.steps, p.after) = (phased.phases, phased.steps, phased.after);
    dump("phases", &p);
    // Stores to inout tensors wait until the last pass that reads them.
    for steps in [&mut p.steps, &mut p.after] {
        stores::order_inout_stores(kernel, &p.schedule.order, g, &p.nodes, &p.accums, &mut p.phases, steps)
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
    // Contiguous innermost loops (BatchNorm's H, W) run as one (not where columns are blocked).
    if p.schedule.flatten && p.schedule.block.is_none() {
        flatten::flatten(kernel, &p.nodes, &p.accums, &mut p.phases);
    }
    // Vectors along contiguous inner loops; independent accumulators for reductions.
    vectorize::vectorize(&p.schedule, kernel, &p.nodes, &p.accums, &mut p.phases);
    // Thread chunks that depend only on the sizes.
    p.group_split =
        split::split(p.schedule.chunk_elems, &p.schedule.order, &p.schedule.group, &p.accums, &mut p.phases, &p.after);
    dump("vectorize and split", &p);
    // Without a group: all passes one block of columns at a time (no effect on results).
    p.block = block::plan(&p, p.schedule.block);
    // What each pass costs in memory traffic.
    let all_steps: Vec<Step> = p.steps.iter().chain(&p.after).cloned().collect();
    p.traffic = traffic::model(
        kernel,
        dims,
        &p.schedule.group,
        p.block.as_ref(),
        &p.nodes,
        &p.phases,
        &all_steps,
        opts.cache_bytes,
    );
    dump("traffic", &p);
    // The last pass touches the next group iteration's input (no effect on results).
    p.prefetch = if p.schedule.prefetch { prefetch::plan(&p) } else { None };
    dump("prefetch", &p);
    if cfg!(debug_assertions) || opts.verify {
        check::check(&p).map_err(LowerError::Internal)?;
    }
    Ok(p)
}
