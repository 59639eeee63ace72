//! The `explain --json` rendering of a plan. Field names are a contract.
//! Byte counts are real bytes: elements times the storage type's size.

use normjit_lower::*;
use serde_json::{json, Map, Value};

/// The plan as `{"kernel", "dims", "phases": [{"name", "loops", "reads",
/// "writes", ...}], "bytes_read", "bytes_written", "min_bytes", ...}`.
pub fn plan_json(p: &Plan) -> Value {
    let k = &p.kernel;
    let mut dims = Map::new();
    for (d, dim) in k.dims.iter() {
        dims.insert(dim.name.clone(), json!(p.dims[d.index()]));
    }
    let mut phases = Vec::new();
    let mut group_reads = Map::new();
    let mut group_writes = Map::new();
    let steps = p.steps.iter().map(|s| (s, false)).chain(p.after.iter().map(|s| (s, true)));
    for (s, after) in steps {
        match s {
            Step::Compute(v) => {
                if let LOp::Load(t) = p.node(*v).op {
                    group_reads.insert(k.tensors[t].name.clone(), json!(1));
                }
            }
            Step::Store(t, _) => {
                group_writes.insert(k.tensors[*t].name.clone(), json!(1));
            }
            Step::Phase(pi) => {
                let ph = &p.phases[*pi];
                let mut reads = Map::new();
                for &(v, _) in &ph.nodes {
                    if let LOp::Load(t) = p.node(v).op {
                        reads.insert(k.tensors[t].name.clone(), json!(1));
                    }
                }
                let mut writes = Map::new();
                for (t, _) in &ph.stores {
                    writes.insert(k.tensors[*t].name.clone(), json!(1));
                }
                // Phases after the group loop run outside it.
                let group: &[normjit_ir::DimId] = if after { &[] } else { p.group() };
                let loops: Vec<Value> = group
                    .iter()
                    .chain(&ph.loops)
                    .map(
                        |&d| json!({"axis": p.dim_name(d), "extent": p.dims[d.index()], "group": p.group().contains(&d)}),
                    )
                    .collect();
                let hoisted: Vec<Value> = ph.nodes.iter().filter(|(_, d)| *d < ph.loops.len()).map(|&(v, d)| {
                    json!({"value": p.expr(v), "depth": d, "loop": ph.loops.get(d.wrapping_sub(1)).map(|&x| p.dim_name(x))})
                }).collect();
                phases.push(json!({
                    "name": ph.name,
                    "after_group": after,
                    "loops": loops,
                    "reads": reads,
                    "writes": writes,
                    "flattened": if ph.flat > 1 { ph.loops[ph.loops.len() - ph.flat..].iter().map(|&d| p.dim_name(d)).collect() } else { Vec::new() },
                    "vector_width": ph.width,
                    "unroll": ph.unroll,
                    "accumulators": ph.accums.iter().map(|a| {
                        let acc = &p.accums[a.0 as usize];
                        let op = if acc.is_hoisted() { "hoist" } else { acc.op.name() };
                        json!({"op": op, "of": p.expr(acc.operand), "over": k.axis_names(acc.reduced),
                               "kind": if acc.flush_depth == ph.loops.len() { "array" } else { "registers" },
                               "cross_group": acc.cross,
                               "scratch_dims": acc.scratch_dims.iter().map(|&d| p.dim_name(d)).collect::<Vec<_>>()})
                    }).collect::<Vec<_>>(),
                    "hoisted": hoisted,
                    "parallel": ph.split.as_ref().map(|s| json!({"axis": p.dim_name(s.axis), "chunk": s.chunk(&p.dims), "partials": s.partials.len()})),
                }));
            }
        }
    }
    let per_call: Vec<Value> = p
        .steps
        .iter()
        .filter_map(|s| match s {
            Step::Compute(v) => Some(json!(p.expr(*v))),
            _ => None,
        })
        .collect();
    let tensors: Map<String, Value> = k
        .tensors
        .iter()
        .map(|(id, t)| {
            let tr = &p.traffic.tensors[id.index()];
            let elements: u64 = t.dims.iter().map(|d| p.dims[d.index()] as u64).product();
            let size = t.dtype.size_bytes() as u64;
            let mut v = json!({
                "reads": tr.reads,
                "writes": tr.writes,
                "role": t.role.keyword(),
                "dtype": t.dtype.name(),
                "rounding": "nearest_even",
                "bytes_per_element": size,
                "elements": elements,
                "bytes_read": tr.reads as u64 * elements * size,
                "bytes_written": tr.writes as u64 * elements * size,
            });
            if let normjit::ir::Rounding::Stochastic(seed) = t.rounding {
                v["rounding"] = json!("stochastic");
                v["seed"] = json!(k.params[seed].name);
            }
            (t.name.clone(), v)
        })
        .collect();
    let names = |v: &[normjit::ir::DimId]| v.iter().map(|&d| p.dim_name(d)).collect::<Vec<_>>();
    let s = &p.schedule;
    let schedule = json!({
        "order": names(&s.order),
        "group": names(&s.group),
        "hoist": s.hoist,
        "flatten": s.flatten,
        "onepass": s.onepass,
        "vectorize": s.vectorize,
        "reduce_unroll": s.reduce_unroll,
        "stream_unroll": s.stream_unroll,
        "chunk_elems": s.chunk_elems,
        "prefetch": s.prefetch,
        "block": s.block,
    });
    json!({
        "kernel": k.name,
        "dims": dims,
        "schedule": schedule,
        "loop_order": p.order().iter().map(|&d| p.dim_name(d)).collect::<Vec<_>>(),
        "group": p.group().iter().map(|&d| p.dim_name(d)).collect::<Vec<_>>(),
        "block": p.block.as_ref().map(|b| json!({"axis": p.dim_name(b.axis), "columns": b.size})),
        "group_values": per_call,
        "group_partials": p.group_split.as_ref().map_or(0, |s| s.partials.len()),
        "group_reads": group_reads,
        "group_writes": group_writes,
        "phases": phases,
        "tensors": tensors,
        "bytes_read": p.traffic.bytes_read,
        "bytes_written": p.traffic.bytes_written,
        "min_bytes": p.traffic.min_bytes,
        "cache_bytes": p.traffic.cache_bytes,
        "group_working_set": p.traffic.group_working_set,
        "assumptions": p.traffic.assumptions,
    })
}
